//! One app: its id, protocol and ports, DNS name, origins, PROXY header
//! and TLS mode.
use super::*;

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
    /// `syn_proxy` as it applies to this app: its own, or `edge.syn_proxy`.
    /// Only in force for a fast-path TCP app ([`App::syn_proxied`]).
    pub syn_proxy: bool,
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

    /// Whether the kernel completes this app's TCP handshakes itself (SYN
    /// cookies, `AppFlags::SYN_PROXY`): a fast-path TCP app with
    /// `syn_proxy` on. Agent-path apps have the kernel's own SYN cookies.
    pub fn syn_proxied(&self) -> bool {
        self.syn_proxy && self.fast_path() && self.protocol == Protocol::Tcp
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
