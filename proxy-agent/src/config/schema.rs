//! The configuration file as written: plain serde data, checked by nothing
//! but its shape. String-valued choices stay `String` here so that
//! `validate()` can name the field and the value when one is wrong.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub edge: EdgeFile,
    #[serde(default)]
    pub apps: Vec<AppFile>,
    #[serde(default)]
    pub access_rules: Vec<AccessRuleFile>,
    #[serde(default)]
    pub dns_server: Option<DnsServerFile>,
    #[serde(default)]
    pub api: Option<ApiFile>,
}

/// The management API.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiFile {
    /// `"127.0.0.1:8080"` or `"[::1]:8080"`.
    #[serde(default)]
    pub listen: Option<String>,
    /// A file whose first line is the bearer token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// The zone id the apps live in (`/zones/{zone}/...`).
    #[serde(default)]
    pub zone: Option<String>,
    /// PEM certificate chain and private key: HTTPS instead of HTTP.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

/// The embedded authoritative DNS server.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsServerFile {
    /// `"192.0.2.53"` (port 53) or `"[2001:db8::53]:5353"`, UDP and TCP.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Zones answered authoritatively, e.g. `"example.com"`.
    #[serde(default)]
    pub zones: Vec<String>,
    /// NS target of the zones; default `ns.<first zone>`.
    #[serde(default)]
    pub nameserver: Option<String>,
    /// Seconds; default 30.
    #[serde(default)]
    pub ttl: Option<u64>,
    /// UDP responses a second per client /24 or /56 (RRL); default 20, 0: off.
    #[serde(default)]
    pub responses_per_second: Option<u64>,
    /// TCP connections at once; default 256.
    #[serde(default)]
    pub max_tcp_connections: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeFile {
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// `native` | `skb`
    #[serde(default)]
    pub xdp_mode: Option<String>,
    /// `xdp` (default) | `tc` | `auto`: where the fast path's NAT runs.
    #[serde(default)]
    pub datapath: Option<String>,
    #[serde(default)]
    pub address_pool: AddressPoolFile,
    #[serde(default)]
    pub origin_source: OriginSourceFile,
    #[serde(default)]
    pub geoip: GeoIpFile,
    /// `"1024-32767"`: source ports the XDP NAT uses toward origins.
    #[serde(default)]
    pub nat_ports: Option<String>,
    /// `drop` (default) | `pass`: packets to a pool address on a port no
    /// app serves.
    #[serde(default)]
    pub unlisted: Option<String>,
    /// `"192.0.2.53"` or `"[2001:db8::53]:5353"`: the DNS server origin_dns
    /// names are resolved with; default: the system's (/etc/resolv.conf).
    #[serde(default)]
    pub resolver: Option<String>,
    /// Idle time (seconds) after which the agent removes a fast-path flow.
    #[serde(default)]
    pub flow_timeouts: FlowTimeoutsFile,
    /// The agent's TCP path (apps with TLS or PROXY headers).
    #[serde(default)]
    pub tcp_proxy: TcpProxyFile,
    /// The agent's UDP path (apps with a PROXY v2 or SPP header).
    #[serde(default)]
    pub udp_proxy: UdpProxyFile,
    /// Per client prefix bounds of every app; an app's `client_limits`
    /// overrides them key by key.
    #[serde(default)]
    pub client_limits: ClientLimitsFile,
    /// `on` (default) | `off`: whether the kernel answers a fast-path TCP
    /// app's SYNs with SYN cookies itself; an app's `syn_proxy` overrides.
    #[serde(default)]
    pub syn_proxy: Option<String>,
    /// `off` (default) | `on`: `on` accepts rx-VLAN offload on the edge
    /// interfaces (left as it is, warned about) instead of the agent turning
    /// it off at attach and refusing an interface that keeps it.
    #[serde(default)]
    pub allow_rx_vlan_offload: Option<String>,
    /// Where the agent keeps what it writes for itself (PEM the API was
    /// given, under `tls/`); default `/var/lib/proxy-agent`.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
}

/// New flows a second, a burst, flows at once, and the prefix lengths
/// that make one client; each absent value keeps the edge's (or default).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientLimitsFile {
    #[serde(default)]
    pub new_flows_per_second: Option<u64>,
    #[serde(default)]
    pub burst: Option<u64>,
    #[serde(default)]
    pub concurrent_flows: Option<u64>,
    #[serde(default)]
    pub prefix_v4: Option<u64>,
    #[serde(default)]
    pub prefix_v6: Option<u64>,
}

/// Seconds, and a flow count; each absent value keeps its default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpProxyFile {
    #[serde(default)]
    pub idle_timeout: Option<u64>,
    #[serde(default)]
    pub max_flows: Option<u64>,
}

/// Seconds, and a connection count; each absent value keeps its default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpProxyFile {
    #[serde(default)]
    pub handshake_timeout: Option<u64>,
    #[serde(default)]
    pub connect_timeout: Option<u64>,
    #[serde(default)]
    pub idle_timeout: Option<u64>,
    #[serde(default)]
    pub max_connections: Option<u64>,
    /// Connections one app may have at once (within `max_connections`).
    #[serde(default)]
    pub max_connections_per_app: Option<u64>,
}

/// Seconds; each absent value keeps its default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowTimeoutsFile {
    #[serde(default)]
    pub tcp_new: Option<u64>,
    #[serde(default)]
    pub tcp_established: Option<u64>,
    #[serde(default)]
    pub tcp_closing: Option<u64>,
    #[serde(default)]
    pub udp: Option<u64>,
    #[serde(default)]
    pub udp_unreplied: Option<u64>,
}

/// CIDR strings, one per family.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPoolFile {
    #[serde(default)]
    pub ipv4: Option<String>,
    #[serde(default)]
    pub ipv6: Option<String>,
    /// Where the agent keeps which app holds which pool address; default
    /// `<config stem>.edge-ips.json` beside the config.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
}

/// Address strings per family: one, or a list (each multiplies the NAT
/// port space toward an origin).
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginSourceFile {
    #[serde(default)]
    pub ipv4: Option<OneOrMany>,
    #[serde(default)]
    pub ipv6: Option<OneOrMany>,
}

/// A string or a list of strings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "an address string or a list of them")]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> &[String] {
        match self {
            OneOrMany::One(one) => std::slice::from_ref(one),
            OneOrMany::Many(many) => many,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoIpFile {
    #[serde(default)]
    pub country_db: Option<PathBuf>,
    #[serde(default)]
    pub asn_db: Option<PathBuf>,
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertKeyFile {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// One Spectrum application, in Cloudflare's API shape.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppFile {
    /// 32 hex digits; generated from protocol and dns name when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// `tcp/22`, `udp/53`, `tcp/1000-2000`
    pub protocol: String,
    pub dns: DnsFile,
    /// `tcp://192.0.2.1:22`, `udp://[2001:db8::1]:53`, `tcp://192.0.2.1:3000-4000`
    #[serde(default)]
    pub origin_direct: Option<Vec<String>>,
    #[serde(default)]
    pub origin_dns: Option<OriginDnsFile>,
    #[serde(default)]
    pub origin_port: Option<OriginPortFile>,
    #[serde(default)]
    pub proxy_protocol: Option<ProxyProtocolFile>,
    /// `first_datagram` (Spectrum's way, the default) | `every_datagram`:
    /// where a UDP app's PROXY v2 header goes.
    #[serde(default)]
    pub proxy_protocol_udp: Option<String>,
    /// `off` | `flexible` | `full` | `strict`
    #[serde(default)]
    pub tls: Option<String>,
    #[serde(default)]
    pub ip_firewall: Option<bool>,
    /// `xdp` | `tc` | `auto`: this app's fast path NAT, over `edge.datapath`
    /// (not a Cloudflare field).
    #[serde(default)]
    pub datapath: Option<String>,
    /// Only `direct`.
    #[serde(default)]
    pub traffic_type: Option<String>,
    #[serde(default)]
    pub edge_ips: Option<EdgeIpsFile>,
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// More certificate/key pairs; SNI picks among them and `tls_cert`,
    /// which stays the default.
    #[serde(default)]
    pub tls_sni_certs: Vec<CertKeyFile>,
    #[serde(default)]
    pub origin_sni: Option<String>,
    /// PEM CA bundle that validates the origin's certificate (`tls:
    /// strict`); the system's roots when absent.
    #[serde(default)]
    pub origin_ca: Option<PathBuf>,
    /// Accepted only when false.
    #[serde(default)]
    pub argo_smart_routing: Option<bool>,
    /// Legacy form of `proxy_protocol: simple` (Cloudflare's older API).
    #[serde(default)]
    pub spp: Option<bool>,
    /// Per client prefix bounds for this app, key by key over
    /// `edge.client_limits` (not a Cloudflare field).
    #[serde(default)]
    pub client_limits: Option<ClientLimitsFile>,
    /// `on` | `off`: this app's SYN proxy, over `edge.syn_proxy` (not a
    /// Cloudflare field; only fast-path TCP apps have one).
    #[serde(default)]
    pub syn_proxy: Option<String>,
    /// Read-only fields of an app exported from Cloudflare's API: accepted
    /// and ignored, so an export can be used as it is.
    #[serde(default)]
    pub created_on: Option<serde_json::Value>,
    #[serde(default)]
    pub modified_on: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    /// `CNAME` | `ADDRESS`
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginDnsFile {
    pub name: String,
    /// Seconds; 600 when absent, raised to 600 when lower.
    #[serde(default)]
    pub ttl: Option<u32>,
    /// `""` | `A` | `AAAA`
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// `origin_port`: a number, or a `"start-end"` string.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged, expecting = "a port number or a \"start-end\" string")]
pub enum OriginPortFile {
    /// Wider than u16 so that validate() names an out-of-range value.
    Number(i64),
    Range(String),
}

/// `proxy_protocol`: `off|v1|v2|simple`, or the legacy boolean (true = v1).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(
    untagged,
    expecting = "one of \"off\", \"v1\", \"v2\", \"simple\", or a boolean"
)]
pub enum ProxyProtocolFile {
    Bool(bool),
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeIpsFile {
    /// `dynamic` | `static`
    #[serde(rename = "type")]
    pub kind: String,
    /// With dynamic: `all` (default) | `ipv4` | `ipv6`.
    #[serde(default)]
    pub connectivity: Option<String>,
    /// With static: the addresses.
    #[serde(default)]
    pub ips: Option<Vec<String>>,
}

/// One IP Access Rule, in Cloudflare's API shape.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRuleFile {
    #[serde(default)]
    pub id: Option<String>,
    /// `block` | `whitelist` | `allow` | `challenge` | `js_challenge` | `managed_challenge`
    pub mode: String,
    pub configuration: RuleConfigurationFile,
    #[serde(default)]
    pub notes: Option<String>,
    /// Set by the API (RFC 3339); accepted from Cloudflare exports too.
    #[serde(default)]
    pub created_on: Option<serde_json::Value>,
    #[serde(default)]
    pub modified_on: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfigurationFile {
    /// `ip` | `ip6` | `ip_range` | `asn` | `country`
    pub target: String,
    pub value: String,
}
