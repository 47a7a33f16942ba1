//! The validated configuration: what the rest of the agent works from.
//!
//! Values here have been checked by `validate()`; nothing builds them from
//! the file directly, and nothing changes them in place.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use super::client_limits::ClientLimits;

/// Cloudflare's code: exactly one of origin_direct and origin_dns must be set.
pub const ERR_ORIGIN_CHOICE: u32 = 11000;
/// Cloudflare's code: bad origin_dns.
pub const ERR_ORIGIN_DNS: u32 = 11001;
/// Cloudflare's code: bad origin address in origin_direct.
pub const ERR_ORIGIN_ADDR: u32 = 11002;
/// Cloudflare's code: dns.type does not fit edge_ips.
pub const ERR_DNS_EDGE_IPS: u32 = 11004;

/// Cloudflare's minimum origin_dns TTL, in seconds; lower values are raised.
pub const MIN_ORIGIN_DNS_TTL: u32 = 600;

/// One reason the configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigError {
    /// Cloudflare's error code, where one exists.
    pub code: Option<u32>,
    /// JSON path of the offending field, e.g. `apps[2].origin_direct[0]`.
    pub field: String,
    /// The offending value as written (may be empty).
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            code: None,
            field: field.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    pub fn with_code(
        code: u32,
        field: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        ConfigError {
            code: Some(code),
            ..ConfigError::new(field, value, reason)
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:?}` quotes the value and escapes newlines, so it stays one line.
        write!(f, "{}: {:?}: ", self.field, self.value)?;
        if let Some(code) = self.code {
            write!(f, "error {code}: ")?;
        }
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// Something accepted but worth telling the operator about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Warning {
    pub field: String,
    pub value: String,
    pub message: String,
}

impl Warning {
    pub fn new(
        field: impl Into<String>,
        value: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Warning {
            field: field.into(),
            value: value.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {:?}: warning: {}",
            self.field, self.value, self.message
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub edge: Edge,
    pub apps: Vec<App>,
    pub access_rules: Vec<AccessRule>,
    /// The embedded authoritative DNS server; `None`: not started.
    pub dns_server: Option<DnsServer>,
    /// The management API; `None`: not started.
    pub api: Option<Api>,
}

/// `api`: the management API and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Api {
    pub listen: std::net::SocketAddr,
    /// Its first line is the bearer token every request must carry.
    pub token_file: PathBuf,
    /// The zone id in the paths (`/zones/{zone}/spectrum/apps`).
    pub zone: String,
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
}

/// TTL of the embedded DNS server's answers unless `dns_server.ttl` says.
pub const DEFAULT_DNS_TTL: u32 = 30;

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
    /// DNS server for `origin_dns` names; `None`: the system's resolver.
    pub resolver: Option<std::net::SocketAddr>,
    pub flow_timeouts: FlowTimeouts,
    pub tcp_proxy: TcpProxy,
    pub udp_proxy: UdpProxy,
    /// The per-client limits of apps without their own.
    pub client_limits: ClientLimits,
}

/// Idle time after which a fast-path flow is removed, by protocol and state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowTimeouts {
    /// TCP: SYN seen, no reply yet.
    pub tcp_new: std::time::Duration,
    pub tcp_established: std::time::Duration,
    /// TCP: FIN or RST seen.
    pub tcp_closing: std::time::Duration,
    pub udp: std::time::Duration,
}

impl Default for FlowTimeouts {
    fn default() -> Self {
        let s = std::time::Duration::from_secs;
        Self {
            tcp_new: s(30),
            tcp_established: s(3600),
            tcp_closing: s(10),
            udp: s(60),
        }
    }
}

impl FlowTimeouts {
    pub fn shortest(&self) -> std::time::Duration {
        self.tcp_new
            .min(self.tcp_established)
            .min(self.tcp_closing)
            .min(self.udp)
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

/// Source addresses the proxy uses toward origins, per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct OriginSource {
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct GeoIp {
    pub country_db: Option<PathBuf>,
    pub asn_db: Option<PathBuf>,
}

/// A Spectrum application id: 16 bytes, written as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(pub [u8; 16]);

impl AppId {
    /// The id of an app that has none in the file: FNV-1a 128 over
    /// `"{protocol}/{ports}|{dns name}"`, with the dns name lowercased and
    /// without a trailing dot, so the id stays the same across restarts and
    /// across spellings of the same name.
    pub fn generated(protocol: Protocol, edge_ports: PortRange, dns_name: &str) -> AppId {
        let name = dns_name.strip_suffix('.').unwrap_or(dns_name);
        let key = format!("{protocol}/{edge_ports}|{}", name.to_ascii_lowercase());
        AppId(fnv1a_128(key.as_bytes()).to_be_bytes())
    }
}

/// FNV-1a, 128-bit (offset basis and prime from the published FNV spec).
pub fn fnv1a_128(bytes: &[u8]) -> u128 {
    const OFFSET_BASIS: u128 = 0x6c62272e07bb014262b821756295c58d;
    const PRIME: u128 = 0x0000000001000000000000000000013b;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| {
        (hash ^ u128::from(b)).wrapping_mul(PRIME)
    })
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why a string is not an [`AppId`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseAppIdError;

impl fmt::Display for ParseAppIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an app id is 32 hexadecimal digits")
    }
}

impl std::error::Error for ParseAppIdError {}

impl FromStr for AppId {
    type Err = ParseAppIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.as_bytes();
        if digits.len() != 32 {
            return Err(ParseAppIdError);
        }
        let mut id = [0u8; 16];
        for (byte, pair) in id.iter_mut().zip(digits.chunks_exact(2)) {
            let hi = hex_value(pair[0]).ok_or(ParseAppIdError)?;
            let lo = hex_value(pair[1]).ok_or(ParseAppIdError)?;
            *byte = (hi << 4) | lo;
        }
        Ok(AppId(id))
    }
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|v| u8::try_from(v).ok())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// The IP protocol number (IPPROTO_TCP / IPPROTO_UDP).
    pub fn ip_proto(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// An inclusive port range; a single port has `start == end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub start: u16,
    pub end: u16,
}

impl PortRange {
    pub const fn new(start: u16, end: u16) -> PortRange {
        PortRange { start, end }
    }

    pub const fn single(port: u16) -> PortRange {
        PortRange {
            start: port,
            end: port,
        }
    }

    /// Number of ports (u32: 0-65535 holds 65536).
    pub fn len(&self) -> u32 {
        if self.is_empty() {
            0
        } else {
            u32::from(self.end) - u32::from(self.start) + 1
        }
    }

    /// Only a range built with `start > end` is empty; validated ones never are.
    pub fn is_empty(&self) -> bool {
        self.end < self.start
    }

    pub fn contains(&self, port: u16) -> bool {
        self.ports().contains(&port)
    }

    /// Position of `port` within the range (0 for `start`).
    pub fn offset_of(&self, port: u16) -> Option<u16> {
        self.contains(port).then(|| port - self.start)
    }

    pub fn ports(&self) -> RangeInclusive<u16> {
        self.start..=self.end
    }

    /// The ports both ranges hold, if any.
    pub fn intersection(&self, other: &PortRange) -> Option<PortRange> {
        let start = self.start.max(other.start);
        let end = self.end.min(other.end);
        (start <= end).then_some(PortRange { start, end })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.start == self.end {
            write!(f, "{}", self.start)
        } else {
            write!(f, "{}-{}", self.start, self.end)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DnsKind {
    Cname,
    Address,
}

impl fmt::Display for DnsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DnsKind::Cname => "CNAME",
            DnsKind::Address => "ADDRESS",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Dns {
    pub kind: DnsKind,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyProtocol {
    Off,
    V1,
    V2,
    /// Cloudflare's Simple Proxy Protocol (UDP only).
    Simple,
}

impl fmt::Display for ProxyProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProxyProtocol::Off => "off",
            ProxyProtocol::V1 => "v1",
            ProxyProtocol::V2 => "v2",
            ProxyProtocol::Simple => "simple",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TlsMode {
    Off,
    Flexible,
    Full,
    Strict,
}

impl fmt::Display for TlsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsMode::Off => "off",
            TlsMode::Flexible => "flexible",
            TlsMode::Full => "full",
            TlsMode::Strict => "strict",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub id: AppId,
    /// The app's row in the kernel maps (`APPS`, `ORIGINS`, counters):
    /// its position in the file when loaded; a live change keeps the slot
    /// of an unchanged app and gives a new or changed app a fresh one, so
    /// flows of the version they started with keep their row.
    pub slot: u32,
    /// When the API created or last changed the app (RFC 3339), as kept
    /// in the file; not part of what the app does.
    pub created_on: Option<String>,
    pub modified_on: Option<String>,
    pub protocol: Protocol,
    pub edge_ports: PortRange,
    pub dns: Dns,
    /// Static ips, or ones allocated from the address pool; IPv4 first.
    pub edge_addrs: Vec<IpAddr>,
    /// Whether `edge_addrs` came from the pool (and are kept as leases).
    pub edge_ips_dynamic: bool,
    pub origin: Origin,
    pub proxy_protocol: ProxyProtocol,
    /// UDP with `proxy_protocol: v2`: the header in front of every
    /// datagram, not only the first of each flow.
    pub proxy_header_every_datagram: bool,
    pub tls: TlsMode,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// More (certificate, key) pairs SNI picks among; `tls_cert` is the
    /// default.
    pub tls_sni_certs: Vec<(PathBuf, PathBuf)>,
    pub origin_sni: Option<String>,
    /// CA bundle for `tls: strict` (system roots when absent).
    pub origin_ca: Option<PathBuf>,
    pub ip_firewall: bool,
    /// The app's own `datapath`, as written (None: `edge.datapath`).
    pub datapath: Option<DatapathMode>,
    /// Whether its fast path runs at TC ingress (from `datapath` or
    /// `edge.datapath`, and the protocol under `auto`).
    pub nat_at_tc: bool,
    /// `edge.client_limits` with the app's own `client_limits` over them.
    pub client_limits: ClientLimits,
}

impl App {
    /// Origin port for an edge port of this app (None when outside the edge range).
    ///
    /// Ranges map position by position: the n-th edge port goes to the n-th
    /// origin port.
    pub fn origin_port_for(&self, origin_ports: PortRange, edge_port: u16) -> Option<u16> {
        let offset = self.edge_ports.offset_of(edge_port)?;
        let port = origin_ports.start.checked_add(offset)?;
        origin_ports.contains(port).then_some(port)
    }

    /// Whether `other` serves exactly as this app does: every field but
    /// the slot and the timestamps equal.
    pub fn same_service(&self, other: &App) -> bool {
        let mut other = other.clone();
        other.slot = self.slot;
        other.created_on.clone_from(&self.created_on);
        other.modified_on.clone_from(&self.modified_on);
        *self == other
    }

    /// True when the kernel can proxy this app alone: TLS off and no PROXY header.
    pub fn fast_path(&self) -> bool {
        self.tls == TlsMode::Off && self.proxy_protocol == ProxyProtocol::Off
    }

    /// Whether XDP has work for this app: its fast path runs there, or its
    /// clients must pass the access rules (applied in XDP, first).
    pub fn needs_xdp(&self) -> bool {
        (self.fast_path() && !self.nat_at_tc) || self.ip_firewall
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Direct(Vec<OriginAddr>),
    Dns(OriginDns),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OriginAddr {
    pub ip: IpAddr,
    pub ports: PortRange,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OriginDns {
    pub name: String,
    /// Seconds; never below [`MIN_ORIGIN_DNS_TTL`].
    pub ttl: u32,
    pub family: OriginFamily,
    pub ports: PortRange,
}

/// Which records of `OriginDns::name` to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OriginFamily {
    /// `type: ""`: A and AAAA.
    Any,
    V4,
    V6,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccessRule {
    /// As written, or derived from mode, target and value when the file
    /// gives none (see [`AccessRule::derived_id`]).
    pub id: String,
    pub created_on: Option<String>,
    pub modified_on: Option<String>,
    pub action: RuleAction,
    pub target: RuleTarget,
    pub notes: Option<String>,
}

impl AccessRule {
    /// How logs and errors name the rule at `index` of `access_rules`.
    pub fn name(&self, index: usize) -> String {
        format!("access_rules[{index}] (id {})", self.id)
    }

    /// The id of a rule written without one: 32 hex digits from its mode,
    /// target and value (and `nth`, its rank among identical rules), so
    /// the API can name it and a reload finds the same id.
    pub fn derived_id(mode: &str, target: &str, value: &str, nth: usize) -> String {
        let key = format!("{mode}|{target}|{}|{nth}", value.to_ascii_lowercase());
        format!("{:032x}", fnv1a_128(key.as_bytes()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    Allow,
    Block,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RuleTarget {
    Ip(IpAddr),
    Range(ipnet::IpNet),
    Asn(u32),
    /// ISO 3166-1 alpha-2, uppercase; also `T1` (Tor) and `XX` (unknown).
    Country(String),
}

impl Config {
    /// Whether XDP has work: an app whose fast path runs there, or an app
    /// whose clients the access rules (applied in XDP, before anything
    /// else) must check. Without either, XDP stays detached: on some
    /// drivers (veth) merely having an XDP program costs a fifth of TCP
    /// throughput.
    pub fn needs_xdp(&self) -> bool {
        self.apps.iter().any(App::needs_xdp)
    }

    /// Whether TC ingress alone handles `protocol`: some app's fast path
    /// runs at TC (so the TC program is attached) and no app of that
    /// protocol needs XDP. XDP, when attached for the other protocol,
    /// then passes this one at once: on veth, a flow lookup per 1.5 KB
    /// frame costs about 8% of TCP throughput under `auto`.
    pub fn tc_only(&self, protocol: Protocol) -> bool {
        self.needs_tc()
            && !self
                .apps
                .iter()
                .any(|app| app.protocol == protocol && app.needs_xdp())
    }

    /// Whether some app's fast path runs at TC ingress.
    pub fn needs_tc(&self) -> bool {
        self.apps.iter().any(|app| app.fast_path() && app.nat_at_tc)
    }

    /// The app whose kernel rows are slot `slot`, if one runs there.
    pub fn app_in_slot(&self, slot: u32) -> Option<&App> {
        self.apps.iter().find(|app| app.slot == slot)
    }

    /// Makes the relative paths the config names (TLS cert/key, GeoIP
    /// databases) relative to `base`, the directory of the config file, so
    /// a config means the same whatever the agent's working directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let resolve = |path: &mut Option<PathBuf>| {
            if let Some(p) = path.as_mut()
                && p.is_relative()
            {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.edge.geoip.country_db);
        if let Some(api) = &mut self.api
            && api.token_file.is_relative()
        {
            api.token_file = base.join(&api.token_file);
        }
        resolve(&mut self.edge.geoip.asn_db);
        for app in &mut self.apps {
            resolve(&mut app.tls_cert);
            resolve(&mut app.tls_key);
            for (cert, key) in &mut app.tls_sni_certs {
                for path in [cert, key] {
                    if path.is_relative() {
                        *path = base.join(&*path);
                    }
                }
            }
            resolve(&mut app.origin_ca);
        }
    }

    /// Files the config names (TLS cert/key, GeoIP databases) that cannot
    /// be read: one ConfigError each (field = the path field, value = the
    /// path, reason = the io error).
    pub fn check_files(&self) -> Vec<ConfigError> {
        let geoip = [
            (
                "edge.geoip.country_db".to_string(),
                &self.edge.geoip.country_db,
            ),
            ("edge.geoip.asn_db".to_string(), &self.edge.geoip.asn_db),
        ];
        let tls = self.apps.iter().enumerate().flat_map(|(i, app)| {
            let sni = app
                .tls_sni_certs
                .iter()
                .enumerate()
                .flat_map(move |(j, (cert, key))| {
                    [
                        (format!("apps[{i}].tls_sni_certs[{j}].cert"), Some(cert)),
                        (format!("apps[{i}].tls_sni_certs[{j}].key"), Some(key)),
                    ]
                });
            [
                (format!("apps[{i}].tls_cert"), app.tls_cert.as_ref()),
                (format!("apps[{i}].tls_key"), app.tls_key.as_ref()),
                (format!("apps[{i}].origin_ca"), app.origin_ca.as_ref()),
            ]
            .into_iter()
            .chain(sni)
        });
        let geoip = geoip.map(|(field, path)| (field, path.as_ref()));
        let api = (
            "api.token_file".to_string(),
            self.api.as_ref().map(|a| &a.token_file),
        );
        geoip
            .into_iter()
            .chain(std::iter::once(api))
            .chain(tls)
            .filter_map(|(field, path)| {
                let path = path.map(PathBuf::as_path)?;
                let reason = unreadable(path)?;
                Some(ConfigError::new(field, path.display().to_string(), reason))
            })
            .collect()
    }
}

/// Why `path` cannot be read as a file, or None when it can.
fn unreadable(path: &Path) -> Option<String> {
    match std::fs::File::open(path).and_then(|f| f.metadata()) {
        Err(e) => Some(e.to_string()),
        Ok(meta) if !meta.is_file() => Some("not a regular file".to_string()),
        Ok(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_128_published_vectors() {
        assert_eq!(fnv1a_128(b""), 0x6c62272e07bb014262b821756295c58d);
        assert_eq!(fnv1a_128(b"a"), 0xd228cb696f1a8caf78912b704e4a8964);
    }

    #[test]
    fn app_id_round_trip_and_case() {
        let id: AppId = "0123456789ABCDEF0123456789abcdef".parse().unwrap();
        assert_eq!(id.to_string(), "0123456789abcdef0123456789abcdef");
        assert_eq!(format!("{id:?}"), "0123456789abcdef0123456789abcdef");
        assert_eq!(id.0[0], 0x01);
        assert_eq!(id.0[15], 0xef);
        for bad in [
            "",
            "0123",
            "0123456789abcdef0123456789abcdeg",
            "+123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(bad.parse::<AppId>(), Err(ParseAppIdError), "{bad:?}");
        }
        // 32 bytes but not 32 ASCII digits
        assert!("é123456789abcdef0123456789abcde".parse::<AppId>().is_err());
    }

    #[test]
    fn generated_id_normalises_name() {
        let r = PortRange::new(1000, 2000);
        let a = AppId::generated(Protocol::Tcp, r, "Range.Example.com.");
        let b = AppId::generated(Protocol::Tcp, r, "range.example.com");
        assert_eq!(a, b);
        assert_ne!(a, AppId::generated(Protocol::Udp, r, "range.example.com"));
        assert_ne!(
            a,
            AppId::generated(Protocol::Tcp, PortRange::single(1000), "range.example.com")
        );
    }

    #[test]
    fn port_range_basics() {
        let r = PortRange::new(1000, 2000);
        assert_eq!(r.len(), 1001);
        assert!(!r.is_empty());
        assert!(r.contains(1000) && r.contains(2000));
        assert!(!r.contains(999) && !r.contains(2001));
        assert_eq!(r.offset_of(1000), Some(0));
        assert_eq!(r.offset_of(2000), Some(1000));
        assert_eq!(r.offset_of(2001), None);
        assert_eq!(r.to_string(), "1000-2000");
        assert_eq!(PortRange::single(22).to_string(), "22");
        assert_eq!(PortRange::new(0, 65535).len(), 65536);
        assert_eq!(PortRange::new(5, 4).len(), 0);
        assert_eq!(
            r.intersection(&PortRange::new(1500, 2500)),
            Some(PortRange::new(1500, 2000))
        );
        assert_eq!(r.intersection(&PortRange::new(2001, 2500)), None);
        assert_eq!(Protocol::Tcp.ip_proto(), 6);
        assert_eq!(Protocol::Udp.ip_proto(), 17);
    }

    fn app(edge_ports: PortRange, tls: TlsMode, pp: ProxyProtocol) -> App {
        App {
            datapath: None,
            nat_at_tc: false,
            client_limits: ClientLimits::default(),
            slot: 0,
            created_on: None,
            modified_on: None,
            id: AppId([0; 16]),
            protocol: Protocol::Tcp,
            edge_ports,
            dns: Dns {
                kind: DnsKind::Cname,
                name: "a.example.com".into(),
            },
            edge_addrs: vec![],
            edge_ips_dynamic: false,
            origin: Origin::Direct(vec![]),
            proxy_protocol: pp,
            proxy_header_every_datagram: false,
            tls,
            tls_cert: None,
            tls_key: None,
            tls_sni_certs: Vec::new(),
            origin_sni: None,
            origin_ca: None,
            ip_firewall: false,
        }
    }

    #[test]
    fn origin_port_for_maps_both_ends() {
        let a = app(PortRange::new(1000, 2000), TlsMode::Off, ProxyProtocol::Off);
        let origin = PortRange::new(3000, 4000);
        assert_eq!(a.origin_port_for(origin, 1000), Some(3000));
        assert_eq!(a.origin_port_for(origin, 2000), Some(4000));
        assert_eq!(a.origin_port_for(origin, 1500), Some(3500));
        assert_eq!(a.origin_port_for(origin, 999), None);
        assert_eq!(a.origin_port_for(origin, 2001), None);
        // An origin range shorter than the edge range never maps past its end.
        assert_eq!(a.origin_port_for(PortRange::single(3000), 1001), None);
        let top = app(
            PortRange::new(65000, 65535),
            TlsMode::Off,
            ProxyProtocol::Off,
        );
        assert_eq!(
            top.origin_port_for(PortRange::new(65000, 65535), 65535),
            Some(65535)
        );
    }

    #[test]
    fn fast_path_needs_tls_off_and_no_header() {
        let r = PortRange::single(22);
        assert!(app(r, TlsMode::Off, ProxyProtocol::Off).fast_path());
        assert!(!app(r, TlsMode::Full, ProxyProtocol::Off).fast_path());
        assert!(!app(r, TlsMode::Off, ProxyProtocol::V2).fast_path());
    }

    #[test]
    fn display_is_one_line_with_code_field_value() {
        let e = ConfigError::with_code(11000, "apps[0].origin_direct", "a\nb", "exactly one");
        assert_eq!(
            e.to_string(),
            r#"apps[0].origin_direct: "a\nb": error 11000: exactly one"#
        );
        let e = ConfigError::new("edge.interfaces", "", "must not be empty");
        assert_eq!(e.to_string(), r#"edge.interfaces: "": must not be empty"#);
        let w = Warning::new("apps[0].origin_dns.ttl", "60", "raised to 600");
        assert_eq!(
            w.to_string(),
            r#"apps[0].origin_dns.ttl: "60": warning: raised to 600"#
        );
    }

    #[test]
    fn check_files_reports_unreadable_paths() {
        let dir = std::env::temp_dir().join(format!("cfg-check-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        std::fs::write(&cert, "x").unwrap();
        let mut a = app(PortRange::single(443), TlsMode::Full, ProxyProtocol::Off);
        a.tls_cert = Some(cert.clone());
        a.tls_key = Some(dir.join("missing-key.pem"));
        a.tls_sni_certs = vec![(cert.clone(), dir.join("missing-sni-key.pem"))];
        let config = Config {
            edge: Edge {
                interfaces: vec!["eth0".into()],
                xdp_mode: None,
                datapath: DatapathMode::Xdp,
                address_pool: AddressPool::default(),
                lease_file: None,
                origin_source: OriginSource::default(),
                geoip: GeoIp {
                    country_db: Some(dir.clone()),
                    asn_db: None,
                },
                nat_ports: DEFAULT_NAT_PORTS,
                resolver: None,
                flow_timeouts: FlowTimeouts::default(),
                tcp_proxy: TcpProxy::default(),
                udp_proxy: UdpProxy::default(),
                client_limits: ClientLimits::default(),
            },
            apps: vec![a],
            access_rules: vec![],
            dns_server: None,
            api: None,
        };
        let errors = config.check_files();
        std::fs::remove_dir_all(&dir).unwrap();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "edge.geoip.country_db",
                "apps[0].tls_key",
                "apps[0].tls_sni_certs[0].key"
            ]
        );
        assert_eq!(errors[0].reason, "not a regular file");
        assert!(errors[1].value.ends_with("missing-key.pem"));
        assert!(errors[1].reason.contains("No such file"), "{}", errors[1]);
    }
}
