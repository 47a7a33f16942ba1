//! The RST a SYN-proxied client gets when its origin never answered.
//!
//! The kernel answered the client's handshake itself (a SYN cookie), so
//! the client believes it is connected; when the origin's SYN-ACK never
//! comes, no packet of the flow is left to carry a RST and the kernel
//! cannot time anything out. The flow collector finds the flow idle past
//! `tcp_new` and sends this RST from the edge address and port, at the
//! sequence number the client expects next (the cookie + 1), so the
//! client fails at once instead of waiting out its own timeouts.
//!
//! Both families go out of one `IPPROTO_RAW` socket each, with headers
//! built here (IPv6's `IPPROTO_RAW` implies `IPV6_HDRINCL`): the source is
//! the edge address whichever address the kernel would pick, and the
//! routing table takes the packet to the client.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proxy_common::{DIR_TO_CLIENT, FlowValue, ip_proto};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::conntrack_gc::ip_of;

/// TCP header flag RST.
const TCP_RST: u8 = 0x04;
const TCP_HEADER: usize = 20;
const IPV4_HEADER: usize = 20;
const IPV6_HEADER: usize = 40;
const TTL: u8 = 64;

/// One RST to send: from the edge's side of a flow to its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rst {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub seq: u32,
}

impl Rst {
    /// The RST for a pending SYN-proxied flow, from its to-client half:
    /// that half's packets go from the edge address and port to the client,
    /// and its `seq_adj` is still the cookie (the client acknowledged
    /// cookie + 1, the next sequence number it accepts). None for a
    /// to-origin half, or addresses of two families.
    pub fn for_pending(to_client: &FlowValue) -> Option<Rst> {
        if to_client.direction != DIR_TO_CLIENT {
            return None;
        }
        let from = SocketAddr::new(ip_of(to_client.new_src), to_client.new_src_port);
        let to = SocketAddr::new(ip_of(to_client.new_dst), to_client.new_dst_port);
        (from.is_ipv4() == to.is_ipv4()).then_some(Rst {
            from,
            to,
            seq: to_client.seq_adj.wrapping_add(1),
        })
    }

    /// The whole packet, IP header included. None for mixed families.
    pub fn packet(&self) -> Option<Vec<u8>> {
        match (self.from.ip(), self.to.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => Some(self.ipv4(src, dst)),
            (IpAddr::V6(src), IpAddr::V6(dst)) => Some(self.ipv6(src, dst)),
            _ => None,
        }
    }

    fn ipv4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let mut p = vec![0u8; IPV4_HEADER + TCP_HEADER];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((IPV4_HEADER + TCP_HEADER) as u16).to_be_bytes());
        // DF, no fragment offset; id 0 (the kernel fills it).
        p[6] = 0x40;
        p[8] = TTL;
        p[9] = ip_proto::TCP;
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&dst.octets());
        let ip_sum = fold(sum(&p[..IPV4_HEADER], 0));
        p[10..12].copy_from_slice(&ip_sum.to_be_bytes());
        let mut pseudo = sum(&src.octets(), 0);
        pseudo = sum(&dst.octets(), pseudo);
        pseudo += u32::from(ip_proto::TCP) + TCP_HEADER as u32;
        self.tcp(&mut p[IPV4_HEADER..], pseudo);
        p
    }

    fn ipv6(&self, src: Ipv6Addr, dst: Ipv6Addr) -> Vec<u8> {
        let mut p = vec![0u8; IPV6_HEADER + TCP_HEADER];
        p[0] = 0x60;
        p[4..6].copy_from_slice(&(TCP_HEADER as u16).to_be_bytes());
        p[6] = ip_proto::TCP;
        p[7] = TTL;
        p[8..24].copy_from_slice(&src.octets());
        p[24..40].copy_from_slice(&dst.octets());
        let mut pseudo = sum(&src.octets(), 0);
        pseudo = sum(&dst.octets(), pseudo);
        pseudo += u32::from(ip_proto::TCP) + TCP_HEADER as u32;
        self.tcp(&mut p[IPV6_HEADER..], pseudo);
        p
    }

    /// The TCP header (RST, no ACK, window 0) and its checksum over
    /// `pseudo`, the pseudo header's sum.
    fn tcp(&self, t: &mut [u8], pseudo: u32) {
        t[0..2].copy_from_slice(&self.from.port().to_be_bytes());
        t[2..4].copy_from_slice(&self.to.port().to_be_bytes());
        t[4..8].copy_from_slice(&self.seq.to_be_bytes());
        t[12] = ((TCP_HEADER / 4) as u8) << 4;
        t[13] = TCP_RST;
        let check = fold(sum(&t[..TCP_HEADER], pseudo));
        t[16..18].copy_from_slice(&check.to_be_bytes());
    }
}

/// The one's-complement sum of `bytes` as 16-bit words, onto `acc`.
fn sum(bytes: &[u8], mut acc: u32) -> u32 {
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        acc += u32::from(word);
    }
    acc
}

/// The checksum of a sum: carries folded in, complemented.
fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Raw sockets the RSTs go out of, one per family (a family whose socket
/// could not be opened sends nothing).
pub struct RstSender {
    v4: Option<Socket>,
    v6: Option<Socket>,
}

impl RstSender {
    /// Opens both sockets; the errors of those that did not open (the
    /// agent then only counts the flows).
    pub fn open() -> (RstSender, Vec<std::io::Error>) {
        let mut errors = Vec::new();
        let mut raw = |domain| match Socket::new(
            domain,
            Type::RAW,
            Some(Protocol::from(libc::IPPROTO_RAW)),
        ) {
            Ok(socket) => Some(socket),
            Err(err) => {
                errors.push(err);
                None
            }
        };
        let sender = RstSender {
            v4: raw(Domain::IPV4),
            v6: raw(Domain::IPV6),
        };
        (sender, errors)
    }

    /// Sends `rst`; an error when its family has no socket or the kernel
    /// refused it.
    pub fn send(&self, rst: &Rst) -> std::io::Result<()> {
        let socket = if rst.to.is_ipv4() { &self.v4 } else { &self.v6 };
        let (Some(socket), Some(packet)) = (socket, rst.packet()) else {
            return Err(std::io::Error::other("no raw socket for this family"));
        };
        // The port of a raw socket's address is the protocol: 0, the socket's.
        let to = SockAddr::from(SocketAddr::new(rst.to.ip(), 0));
        socket.send_to(&packet, &to).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proxy_common::{DIR_TO_ORIGIN, v4_mapped};

    /// RFC 1071, written out plainly over a list of 16-bit words: the
    /// independent check of the checksums above.
    fn rfc1071(words: &[u16]) -> u16 {
        let mut acc: u64 = words.iter().map(|&w| u64::from(w)).sum();
        while acc >> 16 != 0 {
            acc = (acc & 0xffff) + (acc >> 16);
        }
        !(acc as u16)
    }

    fn words(bytes: &[u8]) -> Vec<u16> {
        bytes
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    fn to_client(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, cookie: u32) -> FlowValue {
        FlowValue {
            new_src: crate::kernel::maps::addr16(src),
            new_dst: crate::kernel::maps::addr16(dst),
            new_src_port: sport,
            new_dst_port: dport,
            direction: DIR_TO_CLIENT,
            seq_adj: cookie,
            ..FlowValue::default()
        }
    }

    #[test]
    fn the_rst_goes_from_the_edge_to_the_client_at_the_cookie_plus_one() {
        let edge: IpAddr = "198.51.100.7".parse().unwrap();
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let half = to_client(edge, 443, client, 40000, 0xffff_ffff);
        let rst = Rst::for_pending(&half).expect("to-client half");
        assert_eq!(rst.from, SocketAddr::new(edge, 443));
        assert_eq!(rst.to, SocketAddr::new(client, 40000));
        assert_eq!(rst.seq, 0, "wraps");
        // The to-origin half has no cookie: nothing to send from it.
        let origin_half = FlowValue {
            direction: DIR_TO_ORIGIN,
            ..half
        };
        assert_eq!(Rst::for_pending(&origin_half), None);
        // Mixed families cannot be one packet.
        let mixed = FlowValue {
            new_dst: crate::kernel::maps::addr16("2001:db8::9".parse().unwrap()),
            ..half
        };
        assert_eq!(Rst::for_pending(&mixed), None);
        assert_eq!(half.new_src, v4_mapped([198, 51, 100, 7]));
    }

    #[test]
    fn ipv4_rst_headers_and_checksums() {
        let rst = Rst {
            from: "198.51.100.7:443".parse().unwrap(),
            to: "203.0.113.9:40000".parse().unwrap(),
            seq: 0x1234_5678,
        };
        let p = rst.packet().expect("v4");
        assert_eq!(p.len(), 40);
        assert_eq!(&p[..4], &[0x45, 0, 0, 40]);
        assert_eq!((p[6], p[8], p[9]), (0x40, 64, 6), "DF, TTL 64, TCP");
        assert_eq!(&p[12..16], &[198, 51, 100, 7]);
        assert_eq!(&p[16..20], &[203, 0, 113, 9]);
        // A header with a right checksum sums to 0 (complemented).
        assert_eq!(rfc1071(&words(&p[..20])), 0);
        let t = &p[20..];
        assert_eq!(u16::from_be_bytes([t[0], t[1]]), 443);
        assert_eq!(u16::from_be_bytes([t[2], t[3]]), 40000);
        assert_eq!(&t[4..8], &[0x12, 0x34, 0x56, 0x78]);
        assert_eq!(&t[8..12], &[0; 4], "no ACK number");
        assert_eq!((t[12], t[13]), (0x50, 0x04), "20-byte header, RST only");
        // The pseudo header by hand: source, destination, zero + protocol, length.
        let mut pseudo = vec![0xc633, 0x6407, 0xcb00, 0x7109, 0x0006, 20];
        pseudo.extend(words(t));
        assert_eq!(rfc1071(&pseudo), 0);
    }

    #[test]
    fn ipv6_rst_headers_and_checksum() {
        let rst = Rst {
            from: "[2001:db8:e::7]:443".parse().unwrap(),
            to: "[2001:db8:c::9]:40000".parse().unwrap(),
            seq: 7,
        };
        let p = rst.packet().expect("v6");
        assert_eq!(p.len(), 60);
        assert_eq!(p[0] >> 4, 6);
        assert_eq!((&p[4..6], p[6], p[7]), (&[0u8, 20][..], 6, 64));
        let t = &p[40..];
        assert_eq!((t[12], t[13]), (0x50, 0x04));
        let mut pseudo = vec![0x2001, 0x0db8, 0x000e, 0, 0, 0, 0, 0x0007];
        pseudo.extend([0x2001, 0x0db8, 0x000c, 0, 0, 0, 0, 0x0009]);
        pseudo.extend([0, 20, 0, 6]);
        pseudo.extend(words(t));
        assert_eq!(rfc1071(&pseudo), 0);
    }
}
