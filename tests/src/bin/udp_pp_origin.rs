//! `udp-pp-origin`: a UDP origin for the agent's UDP path that decodes the
//! header the edge puts in front of its datagrams (PROXY v2 or Cloudflare's
//! Simple Proxy Protocol) and answers each datagram with what it read:
//!
//! ```text
//! client=<ip>:<port> proxy=<ip>:<port> headers=<n> payload=<payload>
//! ```
//!
//! The decoders are written from the published formats and share nothing
//! with `proxy-agent`'s `proxy::header` module: a test that passes shows two
//! independent readings of the bytes agree.
//!
//! ```text
//! udp-pp-origin --listen [::]:7000 --mode v2|spp [--reply ok|short|bad-magic|other-client]
//! ```
//!
//! `--reply` shapes the SPP header of the replies (mode `spp` only): `ok`
//! names the request's client and proxy; `short` sends the first 20 bytes
//! of that header alone; `bad-magic` writes magic 0x1234; `other-client`
//! names the client port plus one.
use std::{
    collections::HashMap,
    io::{self, Write as _},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, UdpSocket},
    process::ExitCode,
};

/// The 12 bytes every PROXY v2 header starts with.
const V2_SIGNATURE: [u8; 12] = [
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
];
/// Signature, version/command, family/transport, 2-byte length.
const V2_PREAMBLE_LEN: usize = 16;
/// Version 2, command PROXY (0x20 would be LOCAL).
const V2_PROXY: u8 = 0x21;
/// UDP over IPv4 and over IPv6.
const V2_UDP4: u8 = 0x12;
const V2_UDP6: u8 = 0x22;
/// src(4) dst(4) sport(2) dport(2), and src(16) dst(16) sport(2) dport(2).
const V2_UDP4_ADDRESSES: usize = 12;
const V2_UDP6_ADDRESSES: usize = 36;

const SPP_MAGIC: u16 = 0x56EC;
const SPP_BAD_MAGIC: u16 = 0x1234;
/// Magic(2), client address(16), proxy address(16), client port(2), proxy
/// port(2).
const SPP_LEN: usize = 38;
/// What `--reply short` sends: a header cut off within the proxy address.
const SPP_SHORT_LEN: usize = 20;

const USAGE: &str = "usage: udp-pp-origin --listen <addr:port> --mode v2|spp \
                     [--reply ok|short|bad-magic|other-client]";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    V2,
    Spp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    Ok,
    Short,
    BadMagic,
    OtherClient,
}

#[derive(Debug, PartialEq, Eq)]
struct Args {
    listen: SocketAddr,
    mode: Mode,
    reply: Reply,
}

/// The two ends a header names: the real client and the edge address it
/// reached. Kept as decoded (an SPP IPv4 client stays IPv4-mapped) so a
/// reply header names them with the same bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Endpoints {
    client: SocketAddr,
    proxy: SocketAddr,
}

/// Why a datagram was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Malformed {
    V2Truncated(usize),
    V2VersionCommand(u8),
    V2Family(u8),
    V2LengthBeyondDatagram { length: u16, available: usize },
    V2AddressesTooShort { family: u8, length: u16 },
    SppShort(usize),
    SppMagic(u16),
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::V2Truncated(len) => write!(
                f,
                "PROXY v2 signature in a {len}-byte datagram, shorter than the \
                 {V2_PREAMBLE_LEN}-byte preamble"
            ),
            Self::V2VersionCommand(byte) => write!(
                f,
                "PROXY v2 version/command byte {byte:#04x}, expected {V2_PROXY:#04x} \
                 (version 2, PROXY)"
            ),
            Self::V2Family(byte) => write!(
                f,
                "PROXY v2 family/transport byte {byte:#04x}, expected {V2_UDP4:#04x} \
                 (UDP4) or {V2_UDP6:#04x} (UDP6)"
            ),
            Self::V2LengthBeyondDatagram { length, available } => write!(
                f,
                "PROXY v2 length {length} runs past the datagram ({available} bytes \
                 after the preamble)"
            ),
            Self::V2AddressesTooShort { family, length } => write!(
                f,
                "PROXY v2 length {length} is too short for the addresses of family \
                 {family:#04x}"
            ),
            Self::SppShort(len) => write!(
                f,
                "{len}-byte datagram is shorter than the {SPP_LEN}-byte SPP header"
            ),
            Self::SppMagic(magic) => write!(f, "SPP magic {magic:#06x}, expected {SPP_MAGIC:#06x}"),
        }
    }
}

/// Decodes a PROXY v2 header at the start of `datagram`: `Ok(None)` when the
/// datagram does not start with the signature, else the endpoints and the
/// header's length (TLVs included: skipped, not read).
fn decode_v2(datagram: &[u8]) -> Result<Option<(Endpoints, usize)>, Malformed> {
    if !datagram.starts_with(&V2_SIGNATURE) {
        return Ok(None);
    }
    let Some(&[.., version_command, family, len_hi, len_lo]) =
        datagram.first_chunk::<V2_PREAMBLE_LEN>()
    else {
        return Err(Malformed::V2Truncated(datagram.len()));
    };
    if version_command != V2_PROXY {
        return Err(Malformed::V2VersionCommand(version_command));
    }
    let addresses_len = match family {
        V2_UDP4 => V2_UDP4_ADDRESSES,
        V2_UDP6 => V2_UDP6_ADDRESSES,
        other => return Err(Malformed::V2Family(other)),
    };
    let length = u16::from_be_bytes([len_hi, len_lo]);
    let rest = &datagram[V2_PREAMBLE_LEN..];
    if usize::from(length) > rest.len() {
        return Err(Malformed::V2LengthBeyondDatagram {
            length,
            available: rest.len(),
        });
    }
    if usize::from(length) < addresses_len {
        return Err(Malformed::V2AddressesTooShort { family, length });
    }
    let port = |at: usize| u16::from_be_bytes([rest[at], rest[at + 1]]);
    let endpoints = if family == V2_UDP4 {
        Endpoints {
            client: SocketAddr::new(ipv4_at(rest, 0).into(), port(8)),
            proxy: SocketAddr::new(ipv4_at(rest, 4).into(), port(10)),
        }
    } else {
        Endpoints {
            client: SocketAddr::new(ipv6_at(rest, 0).into(), port(32)),
            proxy: SocketAddr::new(ipv6_at(rest, 16).into(), port(34)),
        }
    };
    Ok(Some((endpoints, V2_PREAMBLE_LEN + usize::from(length))))
}

/// Splits an SPP datagram into the endpoints its header names and the
/// payload.
fn decode_spp(datagram: &[u8]) -> Result<(Endpoints, &[u8]), Malformed> {
    if datagram.len() < SPP_LEN {
        return Err(Malformed::SppShort(datagram.len()));
    }
    let (header, payload) = datagram.split_at(SPP_LEN);
    let magic = u16::from_be_bytes([header[0], header[1]]);
    if magic != SPP_MAGIC {
        return Err(Malformed::SppMagic(magic));
    }
    let port = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let endpoints = Endpoints {
        client: SocketAddr::new(ipv6_at(header, 2).into(), port(34)),
        proxy: SocketAddr::new(ipv6_at(header, 18).into(), port(36)),
    };
    Ok((endpoints, payload))
}

/// An SPP header with `magic`; IPv4 addresses are written IPv4-mapped.
fn encode_spp(magic: u16, endpoints: &Endpoints) -> [u8; SPP_LEN] {
    let as_v6 = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let mut header = [0u8; SPP_LEN];
    header[0..2].copy_from_slice(&magic.to_be_bytes());
    header[2..18].copy_from_slice(&as_v6(endpoints.client.ip()).octets());
    header[18..34].copy_from_slice(&as_v6(endpoints.proxy.ip()).octets());
    header[34..36].copy_from_slice(&endpoints.client.port().to_be_bytes());
    header[36..38].copy_from_slice(&endpoints.proxy.port().to_be_bytes());
    header
}

/// The 4 bytes at `at` as an IPv4 address (the caller checked the length).
fn ipv4_at(bytes: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3])
}

/// The 16 bytes at `at` as an IPv6 address (the caller checked the length).
fn ipv6_at(bytes: &[u8], at: usize) -> Ipv6Addr {
    let mut octets = [0u8; 16];
    octets.copy_from_slice(&bytes[at..at + 16]);
    Ipv6Addr::from(octets)
}

/// `10.0.1.2:40000` for IPv4 and IPv4-mapped addresses, `[fd00::2]:40000`
/// for IPv6.
fn show(address: SocketAddr) -> String {
    SocketAddr::new(address.ip().to_canonical(), address.port()).to_string()
}

/// What the origin knows of one edge flow (one edge source address).
#[derive(Debug, Default)]
struct Flow {
    endpoints: Option<Endpoints>,
    headers: u64,
}

/// The text every reply carries.
fn reply_body(flow: &Flow, payload: &[u8]) -> String {
    let ends = match flow.endpoints {
        Some(e) => format!("client={} proxy={}", show(e.client), show(e.proxy)),
        None => "client=unknown proxy=unknown".to_owned(),
    };
    let payload = String::from_utf8_lossy(payload);
    let payload = payload.trim_end_matches(['\r', '\n']);
    format!("{ends} headers={} payload={payload}\n", flow.headers)
}

/// What one datagram did: the header it carried, if any, and the reply to
/// send, if any.
#[derive(Debug, PartialEq, Eq)]
struct Handled {
    header: Option<Endpoints>,
    reply: Option<Vec<u8>>,
}

/// Decodes `request` from `source`, updates its flow and builds the reply.
/// A malformed request is reported to the caller, which logs and drops it.
fn handle(
    args: &Args,
    flows: &mut HashMap<SocketAddr, Flow>,
    source: SocketAddr,
    request: &[u8],
) -> Result<Handled, Malformed> {
    match args.mode {
        Mode::V2 => {
            let decoded = decode_v2(request)?;
            let flow = flows.entry(source).or_default();
            let payload = match decoded {
                Some((endpoints, len)) => {
                    flow.endpoints = Some(endpoints);
                    flow.headers += 1;
                    &request[len..]
                }
                None => request,
            };
            Ok(Handled {
                header: decoded.map(|(endpoints, _)| endpoints),
                reply: (!payload.is_empty()).then(|| reply_body(flow, payload).into_bytes()),
            })
        }
        Mode::Spp => {
            let (endpoints, payload) = decode_spp(request)?;
            let flow = flows.entry(source).or_default();
            flow.endpoints = Some(endpoints);
            flow.headers += 1;
            let reply = match args.reply {
                Reply::Ok => spp_reply(SPP_MAGIC, &endpoints, flow, payload),
                Reply::Short => encode_spp(SPP_MAGIC, &endpoints)[..SPP_SHORT_LEN].to_vec(),
                Reply::BadMagic => spp_reply(SPP_BAD_MAGIC, &endpoints, flow, payload),
                Reply::OtherClient => {
                    let client = endpoints.client;
                    let other = Endpoints {
                        client: SocketAddr::new(client.ip(), client.port().wrapping_add(1)),
                        ..endpoints
                    };
                    spp_reply(SPP_MAGIC, &other, flow, payload)
                }
            };
            Ok(Handled {
                header: Some(endpoints),
                reply: Some(reply),
            })
        }
    }
}

/// An SPP header naming `endpoints`, then the reply body.
fn spp_reply(magic: u16, endpoints: &Endpoints, flow: &Flow, payload: &[u8]) -> Vec<u8> {
    let mut reply = encode_spp(magic, endpoints).to_vec();
    reply.extend_from_slice(reply_body(flow, payload).as_bytes());
    reply
}

/// One stdout line per decoded header, flushed at once so a test reading
/// the log sees it. A closed stdout must not stop the origin.
fn log_header(source: SocketAddr, endpoints: &Endpoints) {
    let mut out = io::stdout().lock();
    let _ = writeln!(
        out,
        "{} -> client={} proxy={}",
        show(source),
        show(endpoints.client),
        show(endpoints.proxy)
    );
    let _ = out.flush();
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, String> {
    let (mut listen, mut mode, mut reply) = (None, None, Reply::Ok);
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--listen" => {
                let address = value
                    .parse::<SocketAddr>()
                    .map_err(|e| format!("--listen {value}: {e} (e.g. [::]:7000)"))?;
                listen = Some(address);
            }
            "--mode" => {
                mode = Some(match value.as_str() {
                    "v2" => Mode::V2,
                    "spp" => Mode::Spp,
                    _ => return Err(format!("--mode {value}: expected v2 or spp")),
                });
            }
            "--reply" => {
                reply = match value.as_str() {
                    "ok" => Reply::Ok,
                    "short" => Reply::Short,
                    "bad-magic" => Reply::BadMagic,
                    "other-client" => Reply::OtherClient,
                    _ => {
                        return Err(format!(
                            "--reply {value}: expected ok, short, bad-magic or other-client"
                        ));
                    }
                };
            }
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    let listen = listen.ok_or("--listen is required")?;
    let mode = mode.ok_or("--mode is required")?;
    if mode == Mode::V2 && reply != Reply::Ok {
        return Err("--reply shapes SPP reply headers: only --reply ok goes with --mode v2".into());
    }
    Ok(Args {
        listen,
        mode,
        reply,
    })
}

/// Binds `address`; the IPv6 unspecified address also receives IPv4
/// (IPV6_V6ONLY off, whatever the system default).
fn bind(address: SocketAddr) -> io::Result<UdpSocket> {
    match address {
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => bind_dual_stack(v6),
        _ => UdpSocket::bind(address),
    }
}

fn bind_dual_stack(address: SocketAddrV6) -> io::Result<UdpSocket> {
    use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a descriptor socket(2) just returned; nothing else owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let off: libc::c_int = 0;
    // SAFETY: the option value points at a live c_int of the length given.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_V6ONLY,
            (&raw const off).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sockaddr_in6 is plain data; all-zero is a valid value.
    let mut sockaddr: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sockaddr.sin6_family = libc::AF_INET6 as libc::sa_family_t;
    sockaddr.sin6_port = address.port().to_be();
    sockaddr.sin6_flowinfo = address.flowinfo();
    sockaddr.sin6_addr.s6_addr = address.ip().octets();
    sockaddr.sin6_scope_id = address.scope_id();
    // SAFETY: the address points at a live sockaddr_in6 of the length given.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&raw const sockaddr).cast(),
            size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UdpSocket::from(socket))
}

fn serve(args: &Args) -> Result<(), String> {
    let socket = bind(args.listen).map_err(|e| format!("binding UDP {}: {e}", args.listen))?;
    println!(
        "udp-pp-origin: listening on {} (mode {:?}, reply {:?})",
        args.listen, args.mode, args.reply
    );
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, source) = match socket.recv_from(&mut buf) {
            Ok(received) => received,
            // An ICMP error for an earlier reply, or a signal: not fatal.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused
                ) =>
            {
                continue;
            }
            Err(e) => return Err(format!("receiving on {}: {e}", args.listen)),
        };
        match handle(args, &mut flows, source, &buf[..len]) {
            Ok(handled) => {
                if let Some(endpoints) = handled.header {
                    log_header(source, &endpoints);
                }
                if let Some(reply) = handled.reply
                    && let Err(e) = socket.send_to(&reply, source)
                {
                    eprintln!("udp-pp-origin: replying to {}: {e}", show(source));
                }
            }
            Err(malformed) => {
                eprintln!(
                    "udp-pp-origin: dropped {len}-byte datagram from {}: {malformed}",
                    show(source)
                );
            }
        }
    }
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("udp-pp-origin: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match serve(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("udp-pp-origin: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Headers written out by hand from the formats: PROXY v2 (HAProxy's
    // proxy-protocol.txt, section 2.2) and SPP (Cloudflare's Simple Proxy
    // Protocol header), network byte order throughout.

    #[rustfmt::skip]
    const V2_UDP4_HEADER: [u8; 28] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
        0x21,                   // version 2, PROXY
        0x12,                   // UDP over IPv4
        0x00, 0x0C,             // 12 bytes follow
        10, 0, 1, 2,            // client 10.0.1.2
        10, 0, 100, 1,          // proxy 10.0.100.1
        0x9C, 0x40,             // 40000
        0x00, 0x35,             // 53
    ];

    #[rustfmt::skip]
    const V2_UDP6_HEADER: [u8; 52] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
        0x21,
        0x22,                   // UDP over IPv6
        0x00, 0x24,             // 36 bytes follow
        // client fd00:1::2
        0xFD, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
        // proxy fd00:100::1
        0xFD, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        0xC3, 0x50,             // 50000
        0x01, 0xBB,             // 443
    ];

    #[rustfmt::skip]
    const V2_UDP4_WITH_TLV: [u8; 35] = [
        0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
        0x21,
        0x12,
        0x00, 0x13,             // 19 = 12 address bytes + a 7-byte TLV
        192, 0, 2, 1,           // client 192.0.2.1
        198, 51, 100, 1,        // proxy 198.51.100.1
        0x04, 0xD2,             // 1234
        0x1F, 0x90,             // 8080
        0x04,                   // PP2_TYPE_NOOP
        0x00, 0x04,             // 4 bytes of value
        0xDE, 0xAD, 0xBE, 0xEF,
    ];

    #[rustfmt::skip]
    const SPP_V4_MAPPED: [u8; 38] = [
        0x56, 0xEC,
        // client ::ffff:10.0.1.2
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xFF, 0xFF, 0x0A, 0x00, 0x01, 0x02,
        // proxy ::ffff:10.0.100.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0xFF, 0xFF, 0x0A, 0x00, 0x64, 0x01,
        0x9C, 0x40,             // 40000
        0x00, 0x35,             // 53
    ];

    #[rustfmt::skip]
    const SPP_V6: [u8; 38] = [
        0x56, 0xEC,
        // client 2001:db8::1
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
        // proxy 2001:db8::ff
        0x20, 0x01, 0x0D, 0xB8, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xFF,
        0xFF, 0xFF,             // 65535
        0x00, 0x01,             // 1
    ];

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("test address")
    }

    fn ends(client: &str, proxy: &str) -> Endpoints {
        Endpoints {
            client: addr(client),
            proxy: addr(proxy),
        }
    }

    fn with(payload: &[u8], header: &[u8]) -> Vec<u8> {
        [header, payload].concat()
    }

    #[test]
    fn v2_ipv4() {
        let datagram = with(b"query\n", &V2_UDP4_HEADER);
        assert_eq!(
            decode_v2(&datagram),
            Ok(Some((ends("10.0.1.2:40000", "10.0.100.1:53"), 28)))
        );
        assert_eq!(
            decode_v2(&V2_UDP4_HEADER).map(|d| d.map(|(_, len)| len)),
            Ok(Some(28))
        );
    }

    #[test]
    fn v2_ipv6() {
        assert_eq!(
            decode_v2(&V2_UDP6_HEADER),
            Ok(Some((ends("[fd00:1::2]:50000", "[fd00:100::1]:443"), 52)))
        );
    }

    #[test]
    fn v2_tlvs_are_skipped() {
        let datagram = with(b"after", &V2_UDP4_WITH_TLV);
        let (endpoints, len) = decode_v2(&datagram).expect("valid").expect("a header");
        assert_eq!(endpoints, ends("192.0.2.1:1234", "198.51.100.1:8080"));
        assert_eq!(&datagram[len..], b"after");
    }

    #[test]
    fn v2_without_signature_is_payload() {
        assert_eq!(decode_v2(b"plain datagram"), Ok(None));
        assert_eq!(decode_v2(&[]), Ok(None));
        // Eleven bytes of the signature are not a signature.
        assert_eq!(decode_v2(&V2_SIGNATURE[..11]), Ok(None));
    }

    #[test]
    fn v2_rejects_malformed_headers() {
        let changed = |index: usize, byte: u8| {
            let mut header = V2_UDP4_HEADER;
            header[index] = byte;
            header
        };
        assert_eq!(
            decode_v2(&V2_UDP4_HEADER[..15]),
            Err(Malformed::V2Truncated(15))
        );
        assert_eq!(
            decode_v2(&changed(12, 0x20)),
            Err(Malformed::V2VersionCommand(0x20))
        );
        assert_eq!(
            decode_v2(&changed(12, 0x11)),
            Err(Malformed::V2VersionCommand(0x11))
        );
        assert_eq!(
            decode_v2(&changed(12, 0x22)),
            Err(Malformed::V2VersionCommand(0x22))
        );
        for family in [0x00, 0x11, 0x21, 0x31, 0x32, 0x13] {
            assert_eq!(
                decode_v2(&changed(13, family)),
                Err(Malformed::V2Family(family))
            );
        }
        assert_eq!(
            decode_v2(&V2_UDP4_HEADER[..27]),
            Err(Malformed::V2LengthBeyondDatagram {
                length: 12,
                available: 11
            })
        );
        assert_eq!(
            decode_v2(&changed(15, 11)),
            Err(Malformed::V2AddressesTooShort {
                family: 0x12,
                length: 11
            })
        );
        // UDP6 with only an IPv4-sized address block.
        assert_eq!(
            decode_v2(&changed(13, 0x22)),
            Err(Malformed::V2AddressesTooShort {
                family: 0x22,
                length: 12
            })
        );
    }

    #[test]
    fn spp_ipv4_mapped() {
        let datagram = with(b"\x12\x34query", &SPP_V4_MAPPED);
        let (endpoints, payload) = decode_spp(&datagram).expect("valid");
        assert_eq!(
            endpoints,
            ends("[::ffff:10.0.1.2]:40000", "[::ffff:10.0.100.1]:53")
        );
        assert_eq!(payload, b"\x12\x34query");
        assert_eq!(show(endpoints.client), "10.0.1.2:40000");
        assert_eq!(show(endpoints.proxy), "10.0.100.1:53");
        assert_eq!(encode_spp(SPP_MAGIC, &endpoints), SPP_V4_MAPPED);
        // A plain IPv4 endpoint is written mapped.
        let plain = ends("10.0.1.2:40000", "10.0.100.1:53");
        assert_eq!(encode_spp(SPP_MAGIC, &plain), SPP_V4_MAPPED);
    }

    #[test]
    fn spp_ipv6() {
        let (endpoints, payload) = decode_spp(&SPP_V6).expect("valid");
        assert_eq!(endpoints, ends("[2001:db8::1]:65535", "[2001:db8::ff]:1"));
        assert!(payload.is_empty());
        assert_eq!(show(endpoints.client), "[2001:db8::1]:65535");
        assert_eq!(encode_spp(SPP_MAGIC, &endpoints), SPP_V6);
    }

    #[test]
    fn spp_rejects_short_datagrams_and_bad_magic() {
        for len in 0..SPP_LEN {
            assert_eq!(decode_spp(&SPP_V6[..len]), Err(Malformed::SppShort(len)));
        }
        let mut swapped = SPP_V6;
        swapped[..2].copy_from_slice(&[0xEC, 0x56]);
        assert_eq!(decode_spp(&swapped), Err(Malformed::SppMagic(0xEC56)));
        assert_eq!(
            decode_spp(&with(b"......................", &V2_UDP4_HEADER)),
            Err(Malformed::SppMagic(0x0D0A))
        );
    }

    fn args(mode: Mode, reply: Reply) -> Args {
        Args {
            listen: addr("[::]:7000"),
            mode,
            reply,
        }
    }

    #[test]
    fn v2_replies_name_the_flow_and_count_headers() {
        let args = args(Mode::V2, Reply::Ok);
        let mut flows = HashMap::new();
        let edge = addr("[::ffff:10.0.2.1]:61000");
        let other = addr("10.0.2.1:61001");
        let reply = |flows: &mut HashMap<_, _>, source, request: &[u8]| {
            handle(&args, flows, source, request)
                .expect("valid")
                .reply
                .map(|r| String::from_utf8(r).expect("text"))
        };
        // Header alone: no reply.
        assert_eq!(
            handle(&args, &mut flows, edge, &V2_UDP4_HEADER),
            Ok(Handled {
                header: Some(ends("10.0.1.2:40000", "10.0.100.1:53")),
                reply: None
            })
        );
        assert_eq!(
            reply(&mut flows, edge, b"second\n").as_deref(),
            Some("client=10.0.1.2:40000 proxy=10.0.100.1:53 headers=1 payload=second\n")
        );
        assert_eq!(
            reply(&mut flows, edge, &with(b"third\r\n", &V2_UDP6_HEADER)).as_deref(),
            Some("client=[fd00:1::2]:50000 proxy=[fd00:100::1]:443 headers=2 payload=third\n")
        );
        assert_eq!(
            reply(&mut flows, other, b"\xFFhi").as_deref(),
            Some("client=unknown proxy=unknown headers=0 payload=\u{FFFD}hi\n")
        );
        assert!(handle(&args, &mut flows, other, &V2_UDP4_HEADER[..20]).is_err());
    }

    #[test]
    fn spp_reply_shapes() {
        let edge = addr("10.0.2.1:61000");
        let request = with(b"q\n", &SPP_V4_MAPPED);
        let body = b"client=10.0.1.2:40000 proxy=10.0.100.1:53 headers=1 payload=q\n";
        let reply = |shape| {
            let handled = handle(&args(Mode::Spp, shape), &mut HashMap::new(), edge, &request)
                .expect("valid");
            assert_eq!(
                handled.header,
                Some(ends("[::ffff:10.0.1.2]:40000", "[::ffff:10.0.100.1]:53"))
            );
            handled.reply.expect("a reply")
        };
        assert_eq!(reply(Reply::Ok), with(body, &SPP_V4_MAPPED));
        assert_eq!(reply(Reply::Short), SPP_V4_MAPPED[..20]);
        let mut bad_magic = SPP_V4_MAPPED;
        bad_magic[..2].copy_from_slice(&[0x12, 0x34]);
        assert_eq!(reply(Reply::BadMagic), with(body, &bad_magic));
        let mut other_client = SPP_V4_MAPPED;
        other_client[34..36].copy_from_slice(&40001u16.to_be_bytes());
        assert_eq!(reply(Reply::OtherClient), with(body, &other_client));
        // The client port wraps.
        let wrapped = with(b"", &SPP_V6);
        let out = handle(
            &args(Mode::Spp, Reply::OtherClient),
            &mut HashMap::new(),
            edge,
            &wrapped,
        )
        .expect("valid")
        .reply
        .expect("a reply");
        assert_eq!(out[34..36], [0x00, 0x00]);
    }

    #[test]
    fn arguments() {
        let parse = |line: &str| parse_args(line.split_whitespace().map(String::from));
        assert_eq!(
            parse("--listen [::]:7000 --mode spp --reply other-client"),
            Ok(Args {
                listen: addr("[::]:7000"),
                mode: Mode::Spp,
                reply: Reply::OtherClient
            })
        );
        assert_eq!(
            parse("--mode v2 --listen 0.0.0.0:9").map(|a| a.reply),
            Ok(Reply::Ok)
        );
        assert!(parse("--listen [::]:7000").is_err());
        assert!(parse("--listen [::]:7000 --mode v3").is_err());
        assert!(parse("--listen [::]:7000 --mode v2 --reply short").is_err());
        assert!(parse("--listen nowhere --mode v2").is_err());
        assert!(parse("--listen").is_err());
    }
}
