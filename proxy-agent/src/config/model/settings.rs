//! The edge-wide settings: the edge, its pools and sources, flow
//! timeouts, the agent paths' limits, the DNS server, the API, GeoIP.
use super::*;

/// `api`: the management API and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    pub listen: std::net::SocketAddr,
    /// Its first line is the bearer token every request must carry.
    pub token_file: PathBuf,
    /// The zone id in the paths (`/zones/{zone}/spectrum/apps`).
    pub zone: String,
    /// HTTPS with this certificate chain and key (PEM files); None: HTTP.
    pub tls: Option<ApiTls>,
}

/// `api.tls_cert` and `api.tls_key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `dns_server`: answers for the apps' `dns.name`s with their edge
/// addresses, and PTR for the edge addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsServer {
    /// UDP and TCP sockets it listens on (port 53 unless written).
    pub listen: Vec<std::net::SocketAddr>,
    /// Zones it is authoritative for: lower case, no trailing dot.
    pub zones: Vec<String>,
    /// The zones' NS target (and SOA MNAME): lower case, no trailing dot.
    /// When it lies in a served zone, its A/AAAA are the listen addresses.
    pub nameserver: String,
    /// TTL of every answer, and the SOA minimum (negative caching).
    pub ttl: u32,
    /// UDP responses a second per client prefix (/24, /56) before
    /// response-rate limiting drops or truncates them; 0: no limit.
    pub responses_per_second: u32,
    /// TCP connections served at once; one more is closed at once.
    pub max_tcp_connections: usize,
}

/// TTL of the embedded DNS server's answers unless `dns_server.ttl` says.
pub const DEFAULT_DNS_TTL: u32 = 30;
/// `dns_server.responses_per_second` unless set: above what one resolver
/// asks of an authoritative server for a handful of names, far below a
/// reflection flood.
pub const DEFAULT_DNS_RESPONSES_PER_SECOND: u32 = 20;
/// `dns_server.max_tcp_connections` unless set.
pub const DEFAULT_DNS_MAX_TCP_CONNECTIONS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub interfaces: Vec<String>,
    pub xdp_mode: Option<XdpMode>,
    /// Where fast-path apps without their own `datapath` are NATed.
    pub datapath: DatapathMode,
    pub address_pool: AddressPool,
    /// Where the pool's leases are kept (`config::leases`); `None` when the
    /// config was not loaded from a file.
    pub lease_file: Option<PathBuf>,
    pub origin_source: OriginSource,
    pub geoip: GeoIp,
    /// Source ports the XDP NAT uses toward origins. Keep it apart from the
    /// kernel's ephemeral range (`net.ipv4.ip_local_port_range`), which the
    /// agent's own origin connections use.
    pub nat_ports: PortRange,
    pub unlisted: Unlisted,
    /// DNS server for `origin_dns` names; `None`: the system's resolver.
    pub resolver: Option<std::net::SocketAddr>,
    pub flow_timeouts: FlowTimeouts,
    pub tcp_proxy: TcpProxy,
    pub udp_proxy: UdpProxy,
    /// The per-client limits of apps without their own.
    pub client_limits: ClientLimits,
    /// `edge.syn_proxy`: the SYN proxy of apps without their own setting.
    pub syn_proxy: bool,
    /// `edge.allow_rx_vlan_offload`: leave the edge interfaces' rx-VLAN
    /// offload as it is (`kernel::offload`).
    pub allow_rx_vlan_offload: bool,
    /// `edge.state_dir`: what the agent writes for itself (PEM from the
    /// API in `tls/`), absolute once loaded from a file.
    pub state_dir: PathBuf,
}

/// `edge.state_dir` unless the config says.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/proxy-agent";

/// Idle time after which a fast-path flow is removed, by protocol and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTimeouts {
    /// TCP: embryonic (SYN seen, handshake not complete). Short: an
    /// embryonic flow holds a NAT port that a SYN flood must not keep.
    pub tcp_new: std::time::Duration,
    pub tcp_established: std::time::Duration,
    /// TCP: FIN or RST seen.
    pub tcp_closing: std::time::Duration,
    /// UDP: the origin replied.
    pub udp: std::time::Duration,
    /// UDP: the origin never replied (embryonic, as `tcp_new`).
    pub udp_unreplied: std::time::Duration,
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        let s = std::time::Duration::from_secs;
        Self {
            tcp_new: s(5),
            tcp_established: s(3600),
            tcp_closing: s(10),
            udp: s(60),
            udp_unreplied: s(5),
        }
    }
}

impl FlowTimeouts {
    pub fn shortest(&self) -> std::time::Duration {
        self.tcp_new
            .min(self.tcp_established)
            .min(self.tcp_closing)
            .min(self.udp)
            .min(self.udp_unreplied)
    }
}

/// `edge.tcp_proxy`: limits of the agent's TCP path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpProxy {
    /// Client TLS handshake, from accept to done.
    pub handshake_timeout: std::time::Duration,
    /// Origin TCP connect (and origin TLS handshake).
    pub connect_timeout: std::time::Duration,
    /// No byte either way for this long: closed. A client that never
    /// speaks is closed after this too.
    pub idle_timeout: std::time::Duration,
    /// Connections proxied at once; more are refused.
    pub max_connections: usize,
    /// Connections one app may have at once: one app's flood leaves the
    /// rest of `max_connections` to the others.
    pub max_connections_per_app: usize,
}

impl Default for TcpProxy {
    fn default() -> Self {
        let s = std::time::Duration::from_secs;
        Self {
            handshake_timeout: s(10),
            connect_timeout: s(10),
            idle_timeout: s(300),
            max_connections: 16_384,
            max_connections_per_app: 8_192,
        }
    }
}

/// `edge.udp_proxy`: limits of the agent's UDP path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpProxy {
    /// No datagram either way for this long: the flow ends.
    pub idle_timeout: std::time::Duration,
    /// Flows per app at once; datagrams that would open more are dropped.
    pub max_flows: usize,
}

impl Default for UdpProxy {
    fn default() -> Self {
        Self {
            idle_timeout: std::time::Duration::from_secs(60),
            max_flows: 16_384,
        }
    }
}

/// Fewer `edge.nat_ports` than this get a warning: each origin source
/// holds at most that many fast-path flows to one origin address and port.
pub const MIN_NAT_PORTS: u32 = 1024;

/// Default `edge.nat_ports`: below Linux's default ephemeral range (32768-60999).
pub const DEFAULT_NAT_PORTS: PortRange = PortRange {
    start: 1024,
    end: 32767,
};

/// Where the fast path's NAT runs (`edge.datapath`, or an app's own
/// `datapath`). Access rules are applied in XDP whichever it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DatapathMode {
    /// In XDP, before the kernel's stack: the fewest cycles per packet.
    #[default]
    Xdp,
    /// At TC ingress, after GRO: one program run per up-to-64 KB TCP
    /// packet, so TCP bulk runs at kernel-forwarding speed.
    Tc,
    /// TCP apps at TC, UDP apps in XDP.
    Auto,
}

impl DatapathMode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "xdp" => Some(Self::Xdp),
            "tc" => Some(Self::Tc),
            "auto" => Some(Self::Auto),
            _ => None,
        }
    }

    /// Whether an app of `protocol` under this mode is NATed at TC.
    pub fn at_tc(self, protocol: Protocol) -> bool {
        match self {
            Self::Xdp => false,
            Self::Tc => true,
            Self::Auto => protocol == Protocol::Tcp,
        }
    }
}

impl fmt::Display for DatapathMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Xdp => "xdp",
            Self::Tc => "tc",
            Self::Auto => "auto",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum XdpMode {
    Native,
    Skb,
}

impl fmt::Display for XdpMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            XdpMode::Native => "native",
            XdpMode::Skb => "skb",
        })
    }
}

/// Networks that edge addresses come from, per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct AddressPool {
    pub ipv4: Option<ipnet::Ipv4Net>,
    pub ipv6: Option<ipnet::Ipv6Net>,
}

/// Source addresses the proxy uses toward origins, per family (at most
/// `MAX_ORIGIN_SOURCES` each): the fast path spreads flows over them by
/// tuple hash; the agent paths leave the choice to the routing table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct OriginSource {
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
}

/// `edge.unlisted`: what happens to a TCP or UDP packet to an edge pool
/// address on a port no app (nor the DNS server or API) listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Unlisted {
    /// Dropped in XDP and counted `unlisted`: no RST or ICMP error
    /// answers a scan or a flood.
    #[default]
    Drop,
    /// Left to the kernel's stack (its RSTs and port unreachables).
    Pass,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GeoIp {
    pub country_db: Option<PathBuf>,
    pub asn_db: Option<PathBuf>,
}
