//! The headers that tell an origin who the real client is: PROXY protocol v1
//! and v2 (HAProxy, <https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt>)
//! and Cloudflare's Simple Proxy Protocol for UDP
//! (<https://developers.cloudflare.com/spectrum/reference/simple-proxy-protocol-header/>).
//!
//! Pure functions, no I/O. The encoders build what the agent sends; the
//! decoders read untrusted bytes (test origins, the SPP reply path, operator
//! tools), so they are strict, bounded and never panic.
//!
//! Addresses: an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a
//! dual-stack socket reports for an IPv4 peer) is written as IPv4. If one end
//! is IPv4 and the other IPv6, the IPv4 one is mapped into IPv6 and the header
//! says TCP6 / IPv6, as HAProxy does for both v1 and v2: the origin still
//! learns the client, whereas `UNKNOWN` / `UNSPEC` would make it fall back to
//! the agent's address (and the spec warns that some receivers reject
//! `UNKNOWN`). The decoders report mapped addresses as IPv4, so decoding what
//! the encoders wrote gives back the same endpoints.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The longest v1 line, CRLF included (`PROXY UNKNOWN` with two full IPv6
/// addresses and ports).
pub const V1_MAX_LEN: usize = 107;

/// What a sender writes when it cannot name the endpoints.
pub const V1_UNKNOWN: &str = "PROXY UNKNOWN\r\n";

/// The 12 bytes every v2 header starts with.
pub const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];

/// The longest v2 header the decoder accepts, preamble included. The length
/// field allows 64 KiB, but real headers are far shorter: ours are 28 or 52
/// bytes, and HAProxy with its SSL, authority and unique-ID TLVs stays near
/// 600. The cap stops a hostile length from making a reader buffer 64 KiB.
pub const V2_MAX_LEN: usize = 1024;

/// A v2 LOCAL header: the proxy opened the connection itself (a health
/// check); the receiver uses the socket's own addresses.
pub const V2_LOCAL: [u8; 16] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00,
];

/// Size of the Simple Proxy Protocol header in front of every datagram.
pub const SPP_LEN: usize = 38;

/// First two bytes of every SPP header.
pub const SPP_MAGIC: u16 = 0x56EC;

const V2_PREAMBLE_LEN: usize = 16;
const V2_VERSION: u8 = 0x20;
const V2_CMD_LOCAL: u8 = 0x00;
const V2_CMD_PROXY: u8 = 0x01;
const V2_FAM_INET: u8 = 0x10;
const V2_FAM_INET6: u8 = 0x20;
const V2_FAM_UNIX: u8 = 0x30;
const V2_TRANS_STREAM: u8 = 0x01;
const V2_TRANS_DGRAM: u8 = 0x02;
const V2_ADDR_LEN_INET: usize = 12;
const V2_ADDR_LEN_INET6: usize = 36;
const V2_ADDR_LEN_UNIX: usize = 216;

/// The transport of the proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Udp,
}

/// The two ends of the client's connection to the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Endpoints {
    /// Where the client connected from (the header's source).
    pub client: SocketAddr,
    /// The edge address and port the client reached (the header's
    /// destination).
    pub proxy: SocketAddr,
}

/// What a decoded PROXY header says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proxied {
    /// The header names the real client. Always TCP for v1.
    Relayed {
        endpoints: Endpoints,
        transport: Transport,
    },
    /// v2 LOCAL: the proxy opened the connection itself; use the socket's
    /// own addresses.
    Local,
    /// v1 `UNKNOWN`, or v2 PROXY with no IP addresses (UNSPEC, AF_UNIX): use
    /// the socket's own addresses.
    Unknown,
}

/// A decoded PROXY header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    pub proxied: Proxied,
    /// Bytes the header takes at the start of the buffer (TLVs included);
    /// the payload starts here.
    pub len: usize,
}

/// Why bytes were not accepted as a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Valid so far but cut short: read more bytes and decode again.
    #[error("header incomplete, need more bytes")]
    Incomplete,
    /// Does not start with this header's signature (or SPP magic).
    #[error("not a PROXY protocol / SPP header")]
    NotProxyHeader,
    /// A v1 line without CRLF within 107 bytes, or a v2 header longer than
    /// [`V2_MAX_LEN`].
    #[error("header longer than the protocol allows")]
    TooLong,
    /// v1: a CR or LF that is not part of the closing CRLF.
    #[error("PROXY v1 line not ended by CRLF")]
    BadLineEnding,
    /// v1: not US-ASCII text, or fields not separated by single spaces.
    #[error("PROXY v1 line is not well-formed")]
    BadSyntax,
    /// v1: a protocol other than `TCP4`, `TCP6` or `UNKNOWN`.
    #[error("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN")]
    BadProtocol,
    /// v1: an address that is not canonical text of the announced family.
    #[error("PROXY v1 address is not valid for its family")]
    BadAddress,
    /// v1: a port that is not a decimal 0..=65535 without leading zeros.
    #[error("PROXY v1 port is not a decimal in 0..=65535")]
    BadPort,
    /// v2: a version nibble other than 2 (the byte is given).
    #[error("PROXY v2 version/command byte {0:#04x}: not version 2")]
    BadVersion(u8),
    /// v2: a command other than LOCAL or PROXY (the byte is given).
    #[error("PROXY v2 command byte {0:#04x}: not LOCAL or PROXY")]
    BadCommand(u8),
    /// v2: a family/transport byte the spec does not list.
    #[error("PROXY v2 family/transport byte {0:#04x} is not valid")]
    BadFamily(u8),
    /// v2: the length field is smaller than the announced family's addresses.
    #[error("PROXY v2 length {len} is too short for family/transport {family:#04x}")]
    AddressesTooShort { family: u8, len: u16 },
    /// SPP: a datagram shorter than the 38-byte header (its length is given).
    #[error("datagram of {0} bytes is shorter than the {SPP_LEN}-byte SPP header")]
    ShortDatagram(usize),
}

/// The PROXY v1 line for a TCP connection, CRLF included (at most 104 bytes).
pub fn v1(e: &Endpoints) -> String {
    let (client, proxy) = match address_pair(e) {
        AddressPair::V4(c, p) => (IpAddr::V4(c), IpAddr::V4(p)),
        AddressPair::V6(c, p) => (IpAddr::V6(c), IpAddr::V6(p)),
    };
    let family = if client.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {client} {proxy} {} {}\r\n",
        e.client.port(),
        e.proxy.port()
    )
}

/// The PROXY v2 header (command PROXY, no TLVs): 28 bytes for IPv4, 52 for
/// IPv6.
pub fn v2(e: &Endpoints, transport: Transport) -> Vec<u8> {
    let transport = match transport {
        Transport::Tcp => V2_TRANS_STREAM,
        Transport::Udp => V2_TRANS_DGRAM,
    };
    let mut out = Vec::with_capacity(V2_PREAMBLE_LEN + V2_ADDR_LEN_INET6);
    out.extend_from_slice(&V2_SIGNATURE);
    out.push(V2_VERSION | V2_CMD_PROXY);
    match address_pair(e) {
        AddressPair::V4(client, proxy) => {
            out.push(V2_FAM_INET | transport);
            out.extend_from_slice(&(V2_ADDR_LEN_INET as u16).to_be_bytes());
            out.extend_from_slice(&client.octets());
            out.extend_from_slice(&proxy.octets());
        }
        AddressPair::V6(client, proxy) => {
            out.push(V2_FAM_INET6 | transport);
            out.extend_from_slice(&(V2_ADDR_LEN_INET6 as u16).to_be_bytes());
            out.extend_from_slice(&client.octets());
            out.extend_from_slice(&proxy.octets());
        }
    }
    out.extend_from_slice(&e.client.port().to_be_bytes());
    out.extend_from_slice(&e.proxy.port().to_be_bytes());
    out
}

/// The Simple Proxy Protocol header to put in front of a datagram. IPv4
/// addresses are written IPv4-mapped, as SPP requires.
pub fn spp(e: &Endpoints) -> [u8; SPP_LEN] {
    let mut header = [0u8; SPP_LEN];
    header[0..2].copy_from_slice(&SPP_MAGIC.to_be_bytes());
    header[2..18].copy_from_slice(&as_ipv6(e.client.ip()).octets());
    header[18..34].copy_from_slice(&as_ipv6(e.proxy.ip()).octets());
    header[34..36].copy_from_slice(&e.client.port().to_be_bytes());
    header[36..38].copy_from_slice(&e.proxy.port().to_be_bytes());
    header
}

/// Decodes a v1 or v2 header at the start of `buf`, telling them apart by
/// their first byte. Whether a header must be present at all is for the
/// caller's configuration to say, never for the bytes (spec, section 5).
pub fn parse(buf: &[u8]) -> Result<Decoded, HeaderError> {
    match buf.first() {
        None => Err(HeaderError::Incomplete),
        Some(&first) if first == V2_SIGNATURE[0] => parse_v2(buf),
        Some(_) => parse_v1(buf),
    }
}

/// Decodes a PROXY v1 line at the start of `buf`. Only the first
/// [`V1_MAX_LEN`] bytes are ever looked at.
pub fn parse_v1(buf: &[u8]) -> Result<Decoded, HeaderError> {
    const PREFIX: &[u8] = b"PROXY ";
    let seen = buf.len().min(PREFIX.len());
    if buf[..seen] != PREFIX[..seen] {
        return Err(HeaderError::NotProxyHeader);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let mut line_end = None;
    for (i, &byte) in window.iter().enumerate() {
        match byte {
            b'\r' => match window.get(i + 1) {
                Some(b'\n') => {
                    line_end = Some(i);
                    break;
                }
                Some(_) => return Err(HeaderError::BadLineEnding),
                None => break,
            },
            b'\n' => return Err(HeaderError::BadLineEnding),
            b' '..=b'~' => {}
            _ => return Err(HeaderError::BadSyntax),
        }
    }
    let Some(line_end) = line_end else {
        return Err(if buf.len() >= V1_MAX_LEN {
            HeaderError::TooLong
        } else {
            HeaderError::Incomplete
        });
    };
    let len = line_end + 2;
    // Printable ASCII only, checked above.
    let line =
        std::str::from_utf8(&window[PREFIX.len()..line_end]).map_err(|_| HeaderError::BadSyntax)?;
    let mut fields = line.split(' ');
    let ipv6 = match fields.next() {
        // The spec says the receiver ignores whatever follows UNKNOWN.
        Some("UNKNOWN") => {
            return Ok(Decoded {
                proxied: Proxied::Unknown,
                len,
            });
        }
        Some("TCP4") => false,
        Some("TCP6") => true,
        _ => return Err(HeaderError::BadProtocol),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(HeaderError::BadSyntax);
    };
    if [src, dst, sport, dport]
        .iter()
        .any(|field| field.is_empty())
    {
        return Err(HeaderError::BadSyntax);
    }
    let address = |text: &str| -> Result<IpAddr, HeaderError> {
        let parsed = if ipv6 {
            text.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            text.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        parsed.map_err(|_| HeaderError::BadAddress)
    };
    let endpoints = Endpoints {
        client: SocketAddr::new(address(src)?.to_canonical(), v1_port(sport)?),
        proxy: SocketAddr::new(address(dst)?.to_canonical(), v1_port(dport)?),
    };
    Ok(Decoded {
        proxied: Proxied::Relayed {
            endpoints,
            transport: Transport::Tcp,
        },
        len,
    })
}

/// Decodes a PROXY v2 header at the start of `buf`. TLVs are skipped (counted
/// in `len`, not interpreted).
pub fn parse_v2(buf: &[u8]) -> Result<Decoded, HeaderError> {
    let seen = buf.len().min(V2_SIGNATURE.len());
    if buf[..seen] != V2_SIGNATURE[..seen] {
        return Err(HeaderError::NotProxyHeader);
    }
    // Reject bad bytes as soon as they arrive rather than after the block.
    if let Some(&ver_cmd) = buf.get(12) {
        if ver_cmd & 0xF0 != V2_VERSION {
            return Err(HeaderError::BadVersion(ver_cmd));
        }
        if !matches!(ver_cmd & 0x0F, V2_CMD_LOCAL | V2_CMD_PROXY) {
            return Err(HeaderError::BadCommand(ver_cmd));
        }
    }
    if let Some(&family) = buf.get(13) {
        // The seven combinations the spec lists; all other values "must be
        // rejected as invalid by receivers".
        if !matches!(family, 0x00 | 0x11 | 0x12 | 0x21 | 0x22 | 0x31 | 0x32) {
            return Err(HeaderError::BadFamily(family));
        }
    }
    let Some(&[.., ver_cmd, family, len_hi, len_lo]) = buf.first_chunk::<V2_PREAMBLE_LEN>() else {
        return Err(HeaderError::Incomplete);
    };
    let addr_len = u16::from_be_bytes([len_hi, len_lo]);
    let len = V2_PREAMBLE_LEN + usize::from(addr_len);
    if len > V2_MAX_LEN {
        return Err(HeaderError::TooLong);
    }
    let local = ver_cmd & 0x0F == V2_CMD_LOCAL;
    let needed = match family & 0xF0 {
        V2_FAM_INET => V2_ADDR_LEN_INET,
        V2_FAM_INET6 => V2_ADDR_LEN_INET6,
        V2_FAM_UNIX => V2_ADDR_LEN_UNIX,
        _ => 0,
    };
    let too_short = HeaderError::AddressesTooShort {
        family,
        len: addr_len,
    };
    // LOCAL's address block is discarded unread, so its size is not checked.
    if !local && usize::from(addr_len) < needed {
        return Err(too_short);
    }
    let Some(block) = buf.get(V2_PREAMBLE_LEN..len) else {
        return Err(HeaderError::Incomplete);
    };
    if local {
        return Ok(Decoded {
            proxied: Proxied::Local,
            len,
        });
    }
    let transport = if family & 0x0F == V2_TRANS_STREAM {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let proxied = match family & 0xF0 {
        V2_FAM_INET => Proxied::Relayed {
            endpoints: block.first_chunk().map(v4_endpoints).ok_or(too_short)?,
            transport,
        },
        V2_FAM_INET6 => Proxied::Relayed {
            endpoints: block.first_chunk().map(v6_endpoints).ok_or(too_short)?,
            transport,
        },
        // UNSPEC and AF_UNIX carry no IP endpoints; the spec tells receivers
        // to fall back to the socket's addresses.
        _ => Proxied::Unknown,
    };
    Ok(Decoded { proxied, len })
}

/// Splits an SPP datagram into the endpoints its header names and the
/// payload after it. For a reply from an origin, `client` is where the
/// payload goes.
pub fn parse_spp(datagram: &[u8]) -> Result<(Endpoints, &[u8]), HeaderError> {
    let Some((header, payload)) = datagram.split_first_chunk::<SPP_LEN>() else {
        return Err(HeaderError::ShortDatagram(datagram.len()));
    };
    let [magic_hi, magic_lo, addresses @ ..] = header;
    if u16::from_be_bytes([*magic_hi, *magic_lo]) != SPP_MAGIC {
        return Err(HeaderError::NotProxyHeader);
    }
    Ok((v6_endpoints(addresses), payload))
}

/// Reads `client(4) proxy(4) client port(2) proxy port(2)` (v2 over IPv4).
fn v4_endpoints(block: &[u8; V2_ADDR_LEN_INET]) -> Endpoints {
    let address = |at: usize| Ipv4Addr::from(std::array::from_fn::<u8, 4, _>(|i| block[at + i]));
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    Endpoints {
        client: SocketAddr::new(address(0).into(), port(8)),
        proxy: SocketAddr::new(address(4).into(), port(10)),
    }
}

/// Reads `client(16) proxy(16) client port(2) proxy port(2)`, the layout v2
/// over IPv6 and SPP share; mapped addresses come back as IPv4.
fn v6_endpoints(block: &[u8; V2_ADDR_LEN_INET6]) -> Endpoints {
    let address = |at: usize| Ipv6Addr::from(std::array::from_fn::<u8, 16, _>(|i| block[at + i]));
    let port = |at: usize| u16::from_be_bytes([block[at], block[at + 1]]);
    Endpoints {
        client: SocketAddr::new(address(0).to_canonical(), port(32)),
        proxy: SocketAddr::new(address(16).to_canonical(), port(34)),
    }
}

/// A v1 port: decimal digits only (`str::parse` would take a `+`), no leading
/// zero, at most 65535.
fn v1_port(text: &str) -> Result<u16, HeaderError> {
    let digits_only = text.bytes().all(|b| b.is_ascii_digit());
    if !digits_only || (text.len() > 1 && text.starts_with('0')) {
        return Err(HeaderError::BadPort);
    }
    text.parse().map_err(|_| HeaderError::BadPort)
}

enum AddressPair {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

/// Both addresses in one family: IPv4 when both are IPv4 or mapped,
/// otherwise IPv6 with any IPv4 one mapped.
fn address_pair(e: &Endpoints) -> AddressPair {
    match (e.client.ip().to_canonical(), e.proxy.ip().to_canonical()) {
        (IpAddr::V4(client), IpAddr::V4(proxy)) => AddressPair::V4(client, proxy),
        (client, proxy) => AddressPair::V6(as_ipv6(client), as_ipv6(proxy)),
    }
}

fn as_ipv6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sock(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    fn endpoints(client: &str, proxy: &str) -> Endpoints {
        Endpoints {
            client: sock(client),
            proxy: sock(proxy),
        }
    }

    fn relayed(client: &str, proxy: &str, transport: Transport, len: usize) -> Decoded {
        Decoded {
            proxied: Proxied::Relayed {
                endpoints: endpoints(client, proxy),
                transport,
            },
            len,
        }
    }

    // v1 lines from the HAProxy spec (section 2.1) and Cloudflare's Spectrum
    // docs (developers.cloudflare.com/spectrum/getting-started/proxy-protocol),
    // with what they carry.
    const V1_VECTORS: &[(&str, &str, &str)] = &[
        (
            "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
            "192.168.0.1:56324",
            "192.168.0.11:443",
        ),
        (
            "PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
            "255.255.255.255:65535",
            "255.255.255.255:65535",
        ),
        (
            "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
             ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
        ),
        (
            "PROXY TCP4 192.0.2.0 192.0.2.255 42300 443\r\n",
            "192.0.2.0:42300",
            "192.0.2.255:443",
        ),
        (
            "PROXY TCP6 2001:db8:: 2001:db8:ffff:ffff:ffff:ffff:ffff:ffff 42300 443\r\n",
            "[2001:db8::]:42300",
            "[2001:db8:ffff:ffff:ffff:ffff:ffff:ffff]:443",
        ),
    ];

    #[test]
    fn v1_encodes_and_decodes_the_published_lines() {
        for &(line, client, proxy) in V1_VECTORS {
            assert_eq!(v1(&endpoints(client, proxy)), line);
            assert_eq!(
                parse_v1(line.as_bytes()),
                Ok(relayed(client, proxy, Transport::Tcp, line.len())),
                "{line:?}"
            );
        }
    }

    #[test]
    fn v1_spec_maximum_lengths() {
        // Spec: 56 chars for TCP4, 104 for TCP6, 15 for short UNKNOWN and 107
        // for the worst case.
        assert_eq!(V1_VECTORS[1].0.len(), 56);
        assert_eq!(V1_VECTORS[2].0.len(), 104);
        assert_eq!(V1_UNKNOWN.len(), 15);
        let worst = "PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff \
                     ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n";
        assert_eq!(worst.len(), V1_MAX_LEN);
        let unknown = |len| {
            Ok(Decoded {
                proxied: Proxied::Unknown,
                len,
            })
        };
        assert_eq!(parse_v1(worst.as_bytes()), unknown(107));
        assert_eq!(parse_v1(V1_UNKNOWN.as_bytes()), unknown(15));
        assert_eq!(parse_v1(b"PROXY UNKNOWN\r\nSSH-2.0"), unknown(15));
        // One byte over: CRLF ends at byte 108.
        let over = worst.replacen("65535 65535", "65535 655350", 1);
        assert_eq!(parse_v1(over.as_bytes()), Err(HeaderError::TooLong));
    }

    #[test]
    fn v1_header_length_stops_at_crlf() {
        let wire = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET / HTTP/1.1\r\n";
        let decoded = parse_v1(wire).unwrap();
        assert_eq!(decoded.len, 47);
        assert_eq!(&wire[decoded.len..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn v1_writes_mapped_addresses_as_tcp4() {
        let mapped = endpoints("[::ffff:192.0.2.1]:1234", "[::ffff:198.51.100.7]:443");
        assert_eq!(
            v1(&mapped),
            "PROXY TCP4 192.0.2.1 198.51.100.7 1234 443\r\n"
        );
        // One end mapped, the other plain IPv4: still TCP4.
        let half = endpoints("[::ffff:192.0.2.1]:1234", "198.51.100.7:443");
        assert_eq!(v1(&half), "PROXY TCP4 192.0.2.1 198.51.100.7 1234 443\r\n");
    }

    #[test]
    fn v1_maps_ipv4_into_ipv6_when_families_differ() {
        let mixed = endpoints("192.0.2.1:1234", "[2001:db8::1]:443");
        let line = v1(&mixed);
        assert_eq!(line, "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::1 1234 443\r\n");
        // And the decoder hands the client back as IPv4.
        assert_eq!(
            parse_v1(line.as_bytes()),
            Ok(relayed(
                "192.0.2.1:1234",
                "[2001:db8::1]:443",
                Transport::Tcp,
                line.len()
            ))
        );
    }

    #[test]
    fn v1_incomplete_for_every_prefix() {
        for &(line, ..) in V1_VECTORS {
            for cut in 0..line.len() {
                assert_eq!(
                    parse_v1(&line.as_bytes()[..cut]),
                    Err(HeaderError::Incomplete),
                    "{:?}",
                    &line[..cut]
                );
            }
        }
    }

    #[test]
    fn v1_rejects_bad_lines() {
        use HeaderError::*;
        let cases: &[(&[u8], HeaderError)] = &[
            (b"GET / HTTP/1.1\r\n", NotProxyHeader),
            (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", NotProxyHeader),
            (b"PROXY\r\n", NotProxyHeader),
            (b"\x16\x03\x01\x02\x00", NotProxyHeader),
            // Line endings: LF alone, CR alone, CR then something else.
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", BadLineEnding),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX", BadLineEnding),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r\n", BadLineEnding),
            // Protocol.
            (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", BadProtocol),
            (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", BadProtocol),
            (b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", BadProtocol),
            (b"PROXY UNKNOWNX\r\n", BadProtocol),
            (b"PROXY \r\n", BadProtocol),
            // Fields and spacing.
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", BadSyntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", BadSyntax),
            (b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", BadSyntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", BadSyntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n", BadSyntax),
            (b"PROXY TCP4 1.2.3.4  5.6.7.8 1\r\n", BadSyntax),
            (b"PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", BadSyntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.\xff 1 2\r\n", BadSyntax),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\0\r\n", BadSyntax),
            // Addresses.
            (b"PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n", BadAddress),
            (b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", BadAddress),
            (b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", BadAddress),
            (b"PROXY TCP4 1.2.3.4 2001:db8::1 1 2\r\n", BadAddress),
            (b"PROXY TCP6 1.2.3.4 2001:db8::1 1 2\r\n", BadAddress),
            (b"PROXY TCP6 2001:db8::1 2001:db8:::1 1 2\r\n", BadAddress),
            (b"PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n", BadAddress),
            (b"PROXY TCP6 [2001:db8::1] 2001:db8::1 1 2\r\n", BadAddress),
            // Ports.
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", BadPort),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", BadPort),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", BadPort),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n", BadPort),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", BadPort),
            (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 0x50\r\n", BadPort),
            (
                b"PROXY TCP4 1.2.3.4 5.6.7.8 1 000000000000000443\r\n",
                BadPort,
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                parse_v1(input),
                Err(*expected),
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn v1_accepts_edge_values() {
        // Port 0, the zero address, upper-case hex and the embedded-IPv4 form
        // (inet_ntop writes it; HAProxy and the spec's receivers accept it).
        let cases: &[(&str, &str, &str)] = &[
            (
                "PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n",
                "0.0.0.0:0",
                "0.0.0.0:0",
            ),
            ("PROXY TCP6 :: ::1 0 65535\r\n", "[::]:0", "[::1]:65535"),
            (
                "PROXY TCP6 2001:DB8::A 2001:db8::b 1 2\r\n",
                "[2001:db8::a]:1",
                "[2001:db8::b]:2",
            ),
            (
                "PROXY TCP6 ::ffff:192.0.2.1 ::ffff:192.0.2.2 1 2\r\n",
                "192.0.2.1:1",
                "192.0.2.2:2",
            ),
        ];
        for &(line, client, proxy) in cases {
            assert_eq!(
                parse_v1(line.as_bytes()),
                Ok(relayed(client, proxy, Transport::Tcp, line.len())),
                "{line:?}"
            );
        }
    }

    #[test]
    fn v1_too_long_without_crlf() {
        let mut line = b"PROXY UNKNOWN ".to_vec();
        line.resize(V1_MAX_LEN - 1, b'a');
        assert_eq!(parse_v1(&line), Err(HeaderError::Incomplete));
        line.push(b'\r');
        // CR as byte 107 leaves no room for the LF.
        assert_eq!(parse_v1(&line), Err(HeaderError::TooLong));
        line.push(b'\n');
        assert_eq!(parse_v1(&line), Err(HeaderError::TooLong));
        let mut huge = b"PROXY TCP4 ".to_vec();
        huge.resize(10_000, b'1');
        assert_eq!(parse_v1(&huge), Err(HeaderError::TooLong));
    }

    // v2 headers written out by hand from the spec, section 2.2: signature,
    // ver/cmd, family/transport, length, addresses, ports.
    const SIG: [u8; 12] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    ];

    #[rustfmt::skip]
    const V2_TCP4: [u8; 28] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
        0x21, 0x11, 0x00, 0x0C,
        0xC0, 0xA8, 0x00, 0x01, // 192.168.0.1
        0xC0, 0xA8, 0x00, 0x0B, // 192.168.0.11
        0xDC, 0x04,             // 56324
        0x01, 0xBB,             // 443
    ];

    #[rustfmt::skip]
    const V2_UDP4: [u8; 28] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
        0x21, 0x12, 0x00, 0x0C,
        0xCB, 0x00, 0x71, 0x07, // 203.0.113.7
        0xC6, 0x33, 0x64, 0x01, // 198.51.100.1
        0x14, 0xE9,             // 5353
        0x00, 0x35,             // 53
    ];

    #[rustfmt::skip]
    const V2_TCP6: [u8; 52] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
        0x21, 0x21, 0x00, 0x24,
        // 2001:db8::1
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        // 2001:db8::ff
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF,
        0xC3, 0x50, // 50000
        0x01, 0xBB, // 443
    ];

    #[rustfmt::skip]
    const V2_UDP6: [u8; 52] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
        0x21, 0x22, 0x00, 0x24,
        // 2001:db8:1::2
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        // 2001:db8:2::3
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x02, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03,
        0x9C, 0x40, // 40000
        0x00, 0x35, // 53
    ];

    #[rustfmt::skip]
    const V2_TCP6_MIXED: [u8; 52] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
        0x21, 0x21, 0x00, 0x24,
        // ::ffff:192.0.2.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xFF, 0xFF, 0xC0, 0x00, 0x02, 0x01,
        // 2001:db8::1
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0x04, 0xD2, // 1234
        0x01, 0xBB, // 443
    ];

    fn v2_vectors() -> Vec<(&'static [u8], Endpoints, Transport)> {
        vec![
            (
                &V2_TCP4,
                endpoints("192.168.0.1:56324", "192.168.0.11:443"),
                Transport::Tcp,
            ),
            (
                &V2_UDP4,
                endpoints("203.0.113.7:5353", "198.51.100.1:53"),
                Transport::Udp,
            ),
            (
                &V2_TCP6,
                endpoints("[2001:db8::1]:50000", "[2001:db8::ff]:443"),
                Transport::Tcp,
            ),
            (
                &V2_UDP6,
                endpoints("[2001:db8:1::2]:40000", "[2001:db8:2::3]:53"),
                Transport::Udp,
            ),
            (
                &V2_TCP6_MIXED,
                endpoints("192.0.2.1:1234", "[2001:db8::1]:443"),
                Transport::Tcp,
            ),
        ]
    }

    #[test]
    fn v2_encodes_and_decodes_hand_written_headers() {
        assert_eq!(V2_SIGNATURE, SIG);
        for (wire, endpoints, transport) in v2_vectors() {
            assert_eq!(v2(&endpoints, transport), wire, "{endpoints:?}");
            let expected = Decoded {
                proxied: Proxied::Relayed {
                    endpoints,
                    transport,
                },
                len: wire.len(),
            };
            assert_eq!(parse_v2(wire), Ok(expected), "{endpoints:?}");
            assert_eq!(parse(wire), Ok(expected), "{endpoints:?}");
        }
    }

    #[test]
    fn v2_writes_mapped_addresses_as_ipv4() {
        let mapped = endpoints("[::ffff:192.168.0.1]:56324", "[::ffff:192.168.0.11]:443");
        assert_eq!(v2(&mapped, Transport::Tcp), V2_TCP4);
        let mapped_udp = endpoints("[::ffff:203.0.113.7]:5353", "198.51.100.1:53");
        assert_eq!(v2(&mapped_udp, Transport::Udp), V2_UDP4);
    }

    #[test]
    fn v2_payload_follows_header() {
        let mut wire = V2_TCP4.to_vec();
        wire.extend_from_slice(b"SSH-2.0-OpenSSH\r\n");
        let decoded = parse_v2(&wire).unwrap();
        assert_eq!(&wire[decoded.len..], b"SSH-2.0-OpenSSH\r\n");
    }

    #[test]
    fn v2_skips_tlvs() {
        let mut wire = V2_TCP4.to_vec();
        // A NOOP TLV (type 0x04, length 3) and an AUTHORITY TLV "a.io".
        wire.extend_from_slice(&[0x04, 0x00, 0x03, 0, 0, 0]);
        wire.extend_from_slice(&[0x02, 0x00, 0x04, b'a', b'.', b'i', b'o']);
        wire[15] = 12 + 6 + 7;
        wire.extend_from_slice(b"payload");
        let decoded = parse_v2(&wire).unwrap();
        assert_eq!(decoded.len, 16 + 25);
        assert_eq!(
            decoded.proxied,
            Proxied::Relayed {
                endpoints: endpoints("192.168.0.1:56324", "192.168.0.11:443"),
                transport: Transport::Tcp,
            }
        );
        assert_eq!(&wire[decoded.len..], b"payload");
    }

    #[test]
    fn v2_local_unspec_and_unix() {
        // LOCAL, UNSPEC, no addresses.
        assert_eq!(
            parse_v2(&V2_LOCAL),
            Ok(Decoded {
                proxied: Proxied::Local,
                len: 16,
            })
        );
        // LOCAL with an address block: skipped, not read.
        let mut local = V2_TCP4;
        local[12] = 0x20;
        assert_eq!(
            parse_v2(&local),
            Ok(Decoded {
                proxied: Proxied::Local,
                len: 28,
            })
        );
        // PROXY over UNSPEC: the receiver falls back to the socket's addresses.
        let unspec = [&SIG[..], &[0x21, 0x00, 0x00, 0x00]].concat();
        assert_eq!(
            parse_v2(&unspec),
            Ok(Decoded {
                proxied: Proxied::Unknown,
                len: 16,
            })
        );
        // PROXY over AF_UNIX stream: 216 bytes of paths, no IP endpoints.
        let mut unix = [&SIG[..], &[0x21, 0x31, 0x00, 0xD8]].concat();
        unix.resize(16 + 216, 0);
        assert_eq!(
            parse_v2(&unix),
            Ok(Decoded {
                proxied: Proxied::Unknown,
                len: 232,
            })
        );
    }

    #[test]
    fn v2_incomplete_for_every_prefix() {
        for (wire, ..) in v2_vectors() {
            for cut in 0..wire.len() {
                assert_eq!(
                    parse_v2(&wire[..cut]),
                    Err(HeaderError::Incomplete),
                    "cut at {cut}"
                );
            }
        }
        assert_eq!(parse(&[]), Err(HeaderError::Incomplete));
    }

    #[test]
    fn v2_rejects_bad_headers() {
        use HeaderError::*;
        let with = |index: usize, byte: u8| {
            let mut wire = V2_TCP4;
            wire[index] = byte;
            wire
        };
        for (index, byte) in SIG.iter().enumerate() {
            assert_eq!(
                parse_v2(&with(index, byte ^ 0x40)),
                Err(NotProxyHeader),
                "signature byte {index}"
            );
        }
        assert_eq!(parse_v2(b"PROXY TCP4 "), Err(NotProxyHeader));
        assert_eq!(parse_v2(&with(12, 0x11)), Err(BadVersion(0x11)));
        assert_eq!(parse_v2(&with(12, 0x31)), Err(BadVersion(0x31)));
        assert_eq!(parse_v2(&with(12, 0x22)), Err(BadCommand(0x22)));
        assert_eq!(parse_v2(&with(12, 0x2F)), Err(BadCommand(0x2F)));
        for family in [0x01, 0x10, 0x13, 0x20, 0x23, 0x33, 0x41, 0xFF] {
            assert_eq!(parse_v2(&with(13, family)), Err(BadFamily(family)));
        }
        // Bad bytes are reported before the rest of the header arrives.
        assert_eq!(parse_v2(&with(12, 0x22)[..13]), Err(BadCommand(0x22)));
        assert_eq!(parse_v2(&with(13, 0x41)[..14]), Err(BadFamily(0x41)));
        // Length shorter than the family's addresses.
        assert_eq!(
            parse_v2(&with(15, 11)),
            Err(AddressesTooShort {
                family: 0x11,
                len: 11
            })
        );
        let mut short6 = V2_TCP6;
        short6[15] = 12;
        assert_eq!(
            parse_v2(&short6),
            Err(AddressesTooShort {
                family: 0x21,
                len: 12
            })
        );
        let short_unix = [&SIG[..], &[0x21, 0x32, 0x00, 0x24]].concat();
        assert_eq!(
            parse_v2(&short_unix),
            Err(AddressesTooShort {
                family: 0x32,
                len: 36
            })
        );
        // Longer than we accept: refused from the preamble alone.
        let huge = [&SIG[..], &[0x21, 0x11, 0xFF, 0xFF]].concat();
        assert_eq!(parse_v2(&huge), Err(TooLong));
        let just_over = (V2_MAX_LEN - 16 + 1) as u16;
        let over = [&SIG[..], &[0x21, 0x11], &just_over.to_be_bytes()[..]].concat();
        assert_eq!(parse_v2(&over), Err(TooLong));
        // At the limit: valid, waits for the bytes.
        let at_limit = (V2_MAX_LEN - 16) as u16;
        let mut full = [&SIG[..], &[0x21, 0x11], &at_limit.to_be_bytes()[..]].concat();
        assert_eq!(parse_v2(&full), Err(Incomplete));
        full.resize(V2_MAX_LEN, 0);
        assert_eq!(parse_v2(&full).map(|d| d.len), Ok(V2_MAX_LEN));
    }

    // SPP headers written out by hand from Cloudflare's layout
    // (developers.cloudflare.com/spectrum/reference/simple-proxy-protocol-header):
    // magic 0x56EC, client address, proxy address (16 bytes each, IPv4 as
    // IPv4-mapped IPv6, RFC 4291), client port, proxy port, network order.
    #[rustfmt::skip]
    const SPP_V4: [u8; 38] = [
        0x56, 0xEC,
        // ::ffff:192.0.2.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xFF, 0xFF, 0xC0, 0x00, 0x02, 0x01,
        // ::ffff:198.51.100.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xFF, 0xFF, 0xC6, 0x33, 0x64, 0x01,
        0x04, 0xD2, // 1234
        0x00, 0x35, // 53
    ];

    #[rustfmt::skip]
    const SPP_V6: [u8; 38] = [
        0x56, 0xEC,
        // 2001:db8::1
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        // 2001:db8::ff
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF,
        0xC3, 0x50, // 50000
        0x01, 0xBB, // 443
    ];

    #[test]
    fn spp_encodes_and_decodes_hand_written_headers() {
        let v4 = endpoints("192.0.2.1:1234", "198.51.100.1:53");
        let v6 = endpoints("[2001:db8::1]:50000", "[2001:db8::ff]:443");
        assert_eq!(spp(&v4), SPP_V4);
        assert_eq!(spp(&v6), SPP_V6);
        // A dual-stack socket's mapped view of the same IPv4 flow.
        let mapped = endpoints("[::ffff:192.0.2.1]:1234", "[::ffff:198.51.100.1]:53");
        assert_eq!(spp(&mapped), SPP_V4);

        let mut datagram = SPP_V4.to_vec();
        datagram.extend_from_slice(b"\x12\x34query");
        assert_eq!(parse_spp(&datagram), Ok((v4, &b"\x12\x34query"[..])));
        assert_eq!(parse_spp(&SPP_V6), Ok((v6, &[][..])));
    }

    #[test]
    fn spp_rejects_short_datagrams_and_wrong_magic() {
        for len in 0..SPP_LEN {
            assert_eq!(
                parse_spp(&SPP_V4[..len]),
                Err(HeaderError::ShortDatagram(len))
            );
        }
        for (index, byte) in [(0, 0xEC), (1, 0x56), (0, 0x00), (1, 0xED)] {
            let mut datagram = SPP_V4;
            datagram[index] = byte;
            assert_eq!(parse_spp(&datagram), Err(HeaderError::NotProxyHeader));
        }
        // A v2 header is not an SPP header.
        assert_eq!(parse_spp(&V2_UDP6), Err(HeaderError::NotProxyHeader));
    }

    /// Endpoints covering both families, mapped addresses, mixed families
    /// and the port extremes.
    fn sample_endpoints() -> Vec<Endpoints> {
        let clients = [
            "192.0.2.1:1",
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "[::ffff:192.0.2.9]:40000",
            "[2001:db8::1]:65535",
            "[::]:0",
            "[::1]:80",
            "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]:65535",
            "[::102:304]:7",
        ];
        let proxies = [
            "198.51.100.1:443",
            "[::ffff:198.51.100.2]:53",
            "[2001:db8::ff]:0",
        ];
        clients
            .iter()
            .flat_map(|c| proxies.iter().map(move |p| endpoints(c, p)))
            .collect()
    }

    fn canonical(e: Endpoints) -> Endpoints {
        let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
        Endpoints {
            client: canon(e.client),
            proxy: canon(e.proxy),
        }
    }

    #[test]
    fn round_trips() {
        for e in sample_endpoints() {
            let expect = canonical(e);
            let line = v1(&e);
            assert!(line.len() <= 104, "{line:?}");
            assert_eq!(
                parse(line.as_bytes()),
                Ok(Decoded {
                    proxied: Proxied::Relayed {
                        endpoints: expect,
                        transport: Transport::Tcp
                    },
                    len: line.len(),
                }),
                "{line:?}"
            );
            for transport in [Transport::Tcp, Transport::Udp] {
                let header = v2(&e, transport);
                assert_eq!(
                    parse(&header),
                    Ok(Decoded {
                        proxied: Proxied::Relayed {
                            endpoints: expect,
                            transport
                        },
                        len: header.len(),
                    }),
                    "{e:?}"
                );
            }
            assert_eq!(parse_spp(&spp(&e)), Ok((expect, &[][..])), "{e:?}");
        }
    }

    /// A fixed-seed LCG (Knuth's MMIX constants): deterministic bytes.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> u8 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) as u8
        }

        fn below(&mut self, n: usize) -> usize {
            (usize::from(self.next()) << 8 | usize::from(self.next())) % n
        }
    }

    fn check_never_panics(buf: &[u8]) {
        let decoded = [parse(buf), parse_v1(buf), parse_v2(buf)];
        for decoded in decoded.into_iter().flatten() {
            assert!(decoded.len <= buf.len());
            assert!(decoded.len <= V1_MAX_LEN.max(V2_MAX_LEN));
        }
        if let Ok((_, payload)) = parse_spp(buf) {
            assert_eq!(payload.len() + SPP_LEN, buf.len());
        }
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes() {
        let mut rng = Lcg(0x5EED_CAFE_F00D_0001);
        let seeds: Vec<Vec<u8>> = vec![
            V1_VECTORS[2].0.as_bytes().to_vec(),
            b"PROXY UNKNOWN\r\n".to_vec(),
            V2_TCP4.to_vec(),
            V2_UDP6.to_vec(),
            V2_LOCAL.to_vec(),
            SPP_V4.to_vec(),
            SIG.to_vec(),
            b"PROXY ".to_vec(),
            Vec::new(),
        ];
        // Bytes the decoders care about, to reach deeper paths than noise.
        let alphabet =
            b"PROXY TCP46UNKW0123456789abcdef:.\r\n \x0D\x0A\x00\x21\x11\x22\x31\x56\xEC";
        for round in 0..30_000 {
            let mut buf = seeds[round % seeds.len()].clone();
            match rng.below(4) {
                // Pure noise, any length up to past both limits.
                0 => {
                    buf = (0..rng.below(1200)).map(|_| rng.next()).collect();
                }
                // A valid header with a few bytes flipped.
                1 => {
                    for _ in 0..=rng.below(4) {
                        if !buf.is_empty() {
                            let at = rng.below(buf.len());
                            buf[at] = rng.next();
                        }
                    }
                }
                // A header truncated or extended with protocol-ish bytes.
                2 => {
                    buf.truncate(rng.below(buf.len() + 1));
                    for _ in 0..rng.below(120) {
                        buf.push(alphabet[rng.below(alphabet.len())]);
                    }
                }
                // A v2 preamble with a random length field and body.
                _ => {
                    buf = SIG.to_vec();
                    buf.extend_from_slice(&[
                        0x20 | (rng.next() & 1),
                        alphabet[rng.below(alphabet.len())],
                    ]);
                    buf.extend_from_slice(&[rng.next() & 0x07, rng.next()]);
                    for _ in 0..rng.below(2100) {
                        buf.push(rng.next());
                    }
                }
            }
            check_never_panics(&buf);
        }
    }
}
