//! Packet fixtures: Ethernet (with VLAN tags), IPv4 (options, fragments),
//! IPv6, TCP and UDP frames built byte by byte, for BPF_PROG_TEST_RUN.
//! Checksums are computed here in full (RFC 1071, pseudo-header included),
//! never taken from the program under test, so expected frames stay
//! independent of its incremental updates.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

// The wire numbers are written out here rather than taken from
// `proxy_common`: like the checksums, the fixtures' frames must not follow a
// mistake in the code under test.
pub const ETH_P_IPV4: u16 = 0x0800;
pub const ETH_P_IPV6: u16 = 0x86DD;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_8021Q: u16 = 0x8100;
pub const ETH_P_8021AD: u16 = 0x88A8;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMP: u8 = 1;
pub const IPV6_FRAGMENT: u8 = 44;

/// A frame's (destination, source) MAC addresses.
pub type Macs = ([u8; 6], [u8; 6]);
/// The MAC addresses of [`eth`]'s frames.
pub const DEFAULT_MACS: Macs = ([0x02, 0, 0, 0, 0, 0x02], [0x02, 0, 0, 0, 0, 0x01]);
/// The source of [`frame4`] and [`frame6`].
pub const DEFAULT_SRC4: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
pub const DEFAULT_SRC6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);

/// Ethernet header; `vlans` are tag ids, outermost first (802.1ad outer
/// when there are two).
pub fn eth(ether_type: u16, vlans: &[u16]) -> Vec<u8> {
    let mut f = [DEFAULT_MACS.0, DEFAULT_MACS.1].concat();
    for (i, vlan) in vlans.iter().enumerate() {
        let tpid = if i == 0 && vlans.len() > 1 {
            ETH_P_8021AD
        } else {
            ETH_P_8021Q
        };
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&vlan.to_be_bytes());
    }
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

/// IPv4 header with `options` (a multiple of 4 bytes) and the given
/// flags+fragment-offset field; checksum filled in.
pub fn ipv4(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    payload_len: usize,
    options: &[u8],
    frags: u16,
) -> Vec<u8> {
    assert_eq!(options.len() % 4, 0, "IPv4 options come in 32-bit words");
    let header_len = 20 + options.len();
    let total = (header_len + payload_len) as u16;
    let mut h = vec![0x40 | (header_len / 4) as u8, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34]);
    h.extend_from_slice(&frags.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(options);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload_len as u16).to_be_bytes());
    h.extend_from_slice(&[next_header, 64]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h
}

/// A 20-byte TCP header with a SYN (checksum left zero: the parser does not
/// read it).
pub fn tcp(src_port: u16, dst_port: u16) -> Vec<u8> {
    tcp_with_offset(src_port, dst_port, 5)
}

pub fn tcp_with_offset(src_port: u16, dst_port: u16, data_offset_words: u8) -> Vec<u8> {
    let mut h = Vec::with_capacity(20);
    h.extend_from_slice(&src_port.to_be_bytes());
    h.extend_from_slice(&dst_port.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    h.extend_from_slice(&[data_offset_words << 4, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    h
}

pub fn udp(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(8 + payload.len());
    h.extend_from_slice(&src_port.to_be_bytes());
    h.extend_from_slice(&dst_port.to_be_bytes());
    h.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(payload);
    h
}

/// Ethernet (`macs`, untagged) + the IP header of `src`'s family + `l4`
/// (a TCP or UDP header with its payload), whose checksum is left as it is.
pub fn ip_frame(macs: Macs, src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let mut f = eth_macs(macs.0, macs.1, ETH_P_IPV4);
            f.extend(ipv4(src, dst, proto, l4.len(), &[], 0));
            f
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let mut f = eth_macs(macs.0, macs.1, ETH_P_IPV6);
            f.extend(ipv6(src, dst, proto, l4.len()));
            f
        }
        _ => panic!("{src} and {dst} are of different families"),
    };
    f.extend_from_slice(l4);
    f
}

/// Ethernet + IPv4 + `l4` from [`DEFAULT_SRC4`].
pub fn frame4(dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    ip_frame(DEFAULT_MACS, DEFAULT_SRC4.into(), dst.into(), proto, l4)
}

/// Ethernet + IPv6 + `l4` from [`DEFAULT_SRC6`].
pub fn frame6(dst: Ipv6Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    ip_frame(DEFAULT_MACS, DEFAULT_SRC6.into(), dst.into(), proto, l4)
}

/// Ethernet header with the given MAC addresses (no VLAN).
pub fn eth_macs(dst: [u8; 6], src: [u8; 6], ether_type: u16) -> Vec<u8> {
    let mut f = Vec::with_capacity(14);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ether_type.to_be_bytes());
    f
}

/// A TCP header with the given flags (0x02 SYN, 0x10 ACK, ...) and payload.
pub fn tcp_flags(src_port: u16, dst_port: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = tcp(src_port, dst_port);
    h[13] = flags;
    // Every segment here has sequence number 1, so an ACK acknowledges the
    // other side's 1 + 1: the client's ACK of a SYN-ACK is then the one
    // that completes a handshake.
    if flags & 0x10 != 0 {
        h[8..12].copy_from_slice(&2u32.to_be_bytes());
    }
    h.extend_from_slice(payload);
    h
}

/// A TCP segment from `src` to `dst` (address, port; both of one family)
/// with `flags` and `payload`, checksums filled in.
pub fn tcp_segment(
    macs: Macs,
    src: (impl Into<IpAddr>, u16),
    dst: (impl Into<IpAddr>, u16),
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let l4 = tcp_flags(src.1, dst.1, flags, payload);
    with_l4_checksum(ip_frame(macs, src.0.into(), dst.0.into(), PROTO_TCP, &l4))
}

/// A UDP datagram from `src` to `dst` carrying `payload`; `checksum: false`
/// leaves the checksum 0 ("none", which only IPv4 allows).
pub fn udp_datagram(
    macs: Macs,
    src: (impl Into<IpAddr>, u16),
    dst: (impl Into<IpAddr>, u16),
    payload: &[u8],
    checksum: bool,
) -> Vec<u8> {
    let l4 = udp(src.1, dst.1, payload);
    let f = ip_frame(macs, src.0.into(), dst.0.into(), PROTO_UDP, &l4);
    if checksum { with_l4_checksum(f) } else { f }
}

/// Where the IP header and the L4 header start in an untagged frame, and
/// the L4 protocol.
fn layout(frame: &[u8]) -> (bool, usize, u8) {
    if frame[14] >> 4 == 4 {
        (false, 14 + ((frame[14] & 0x0f) as usize) * 4, frame[23])
    } else {
        (true, 14 + 40, frame[20])
    }
}

/// The sum of the TCP/UDP pseudo-header, unfolded.
fn pseudo_header_sum(frame: &[u8]) -> u32 {
    let (ipv6, l4, proto) = layout(frame);
    let len = (frame.len() - l4) as u32;
    let addrs = if ipv6 { &frame[22..54] } else { &frame[26..34] };
    let mut sum: u32 = addrs
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    sum += u32::from(proto) + (len >> 16) + (len & 0xffff);
    sum
}

fn ones_complement(sum: u32, bytes: &[u8]) -> u16 {
    let mut sum = sum
        + bytes
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum::<u32>();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Fills in the TCP or UDP checksum of an untagged frame (full
/// computation, pseudo-header included).
pub fn with_l4_checksum(mut frame: Vec<u8>) -> Vec<u8> {
    let (_, l4, proto) = layout(&frame);
    let at = l4 + if proto == PROTO_TCP { 16 } else { 6 };
    frame[at] = 0;
    frame[at + 1] = 0;
    let mut check = ones_complement(pseudo_header_sum(&frame), &frame[l4..]);
    if proto == PROTO_UDP && check == 0 {
        check = 0xffff;
    }
    frame[at..at + 2].copy_from_slice(&check.to_be_bytes());
    frame
}

/// Whether an untagged frame's IPv4 header checksum and TCP/UDP checksum
/// verify (a UDP-over-IPv4 checksum of 0 means "none" and passes).
pub fn checksums_verify(frame: &[u8]) -> bool {
    let (ipv6, l4, proto) = layout(frame);
    if !ipv6 && checksum(&frame[14..l4]) != 0 {
        return false;
    }
    let at = l4 + if proto == PROTO_TCP { 16 } else { 6 };
    if proto == PROTO_UDP && !ipv6 && frame[at..at + 2] == [0, 0] {
        return true;
    }
    ones_complement(pseudo_header_sum(frame), &frame[l4..]) == 0
}

/// The Internet checksum (RFC 1071) of `bytes`.
pub fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame carrying `l4` (a TCP or UDP header and payload of
/// protocol `proto`) from `src` to `dst` (both of one family), checksums
/// filled in.
pub fn frame_between(src: IpAddr, dst: IpAddr, proto: u8, l4: Vec<u8>) -> Vec<u8> {
    with_l4_checksum(ip_frame(DEFAULT_MACS, src, dst, proto, &l4))
}

/// A TCP SYN from `src`:40000 to `dst`:`dst_port`.
pub fn syn(src: IpAddr, dst: IpAddr, dst_port: u16) -> Vec<u8> {
    frame_between(src, dst, PROTO_TCP, tcp_flags(40000, dst_port, 0x02, b""))
}

/// A TCP option as [`tcp_header`] writes it and [`parse_tcp`] reads it
/// (kinds and lengths of RFC 9293, 7323 and 2018).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TcpOpt {
    /// End of option list (kind 0): [`tcp_header`] pads with it.
    Eol,
    Nop,
    Mss(u16),
    WScale(u8),
    SackPerm,
    /// SACK blocks: (left edge, right edge).
    Sack(Vec<(u32, u32)>),
    /// (TSval, TSecr).
    Ts(u32, u32),
}

impl TcpOpt {
    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Eol => out.push(0),
            Self::Nop => out.push(1),
            Self::Mss(mss) => {
                out.extend_from_slice(&[2, 4]);
                out.extend_from_slice(&mss.to_be_bytes());
            }
            Self::WScale(shift) => out.extend_from_slice(&[3, 3, *shift]),
            Self::SackPerm => out.extend_from_slice(&[4, 2]),
            Self::Sack(blocks) => {
                out.extend_from_slice(&[5, 2 + 8 * blocks.len() as u8]);
                for (left, right) in blocks {
                    out.extend_from_slice(&left.to_be_bytes());
                    out.extend_from_slice(&right.to_be_bytes());
                }
            }
            Self::Ts(val, ecr) => {
                out.extend_from_slice(&[8, 10]);
                out.extend_from_slice(&val.to_be_bytes());
                out.extend_from_slice(&ecr.to_be_bytes());
            }
        }
    }
}

/// A TCP segment's fields, for [`tcp_header`] to write and [`parse_tcp`]
/// to read back.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Tcp {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// 0x01 FIN, 0x02 SYN, 0x04 RST, 0x08 PSH, 0x10 ACK.
    pub flags: u8,
    pub window: u16,
    /// In wire order; [`tcp_header`] pads them with EOL to 32 bits.
    pub options: Vec<TcpOpt>,
    pub payload: Vec<u8>,
}

pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;

/// `tcp`'s header, options and payload, checksum zero (see
/// [`tcp_frame_of`]).
pub fn tcp_header(tcp: &Tcp) -> Vec<u8> {
    let mut options = Vec::new();
    for option in &tcp.options {
        option.write(&mut options);
    }
    while options.len() % 4 != 0 {
        options.push(0);
    }
    assert!(options.len() <= 40, "TCP options over 40 bytes");
    let mut h = Vec::with_capacity(20 + options.len() + tcp.payload.len());
    h.extend_from_slice(&tcp.src_port.to_be_bytes());
    h.extend_from_slice(&tcp.dst_port.to_be_bytes());
    h.extend_from_slice(&tcp.seq.to_be_bytes());
    h.extend_from_slice(&tcp.ack.to_be_bytes());
    h.extend_from_slice(&[(((20 + options.len()) / 4) as u8) << 4, tcp.flags]);
    h.extend_from_slice(&tcp.window.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]);
    h.extend(options);
    h.extend_from_slice(&tcp.payload);
    h
}

/// An untagged frame carrying `tcp` from `src` to `dst` (one family), IPv4
/// as [`ipv4`] builds it, checksums filled in.
pub fn tcp_frame_of(macs: Macs, src: IpAddr, dst: IpAddr, tcp: &Tcp) -> Vec<u8> {
    with_l4_checksum(ip_frame(macs, src, dst, PROTO_TCP, &tcp_header(tcp)))
}

/// An untagged IPv4 frame with its IP header's identification, flags and
/// fragment offset (0x4000: DF), TTL and TOS set, the header checksum
/// computed again (the TCP/UDP checksum does not cover them).
pub fn with_ipv4_fields(mut frame: Vec<u8>, tos: u8, id: u16, frags: u16, ttl: u8) -> Vec<u8> {
    assert_eq!(frame[14] >> 4, 4, "an IPv4 frame");
    let end = 14 + ((frame[14] & 0x0f) as usize) * 4;
    frame[15] = tos;
    frame[18..20].copy_from_slice(&id.to_be_bytes());
    frame[20..22].copy_from_slice(&frags.to_be_bytes());
    frame[22] = ttl;
    frame[24..26].copy_from_slice(&[0, 0]);
    let sum = checksum(&frame[14..end]);
    frame[24..26].copy_from_slice(&sum.to_be_bytes());
    frame
}

/// The TCP segment of an untagged IPv4 or IPv6 frame (no extension
/// headers), its options decoded (None: not TCP, cut short, or an option
/// running past the header). EOL ends the options; the bytes after it are
/// not read.
pub fn parse_tcp(frame: &[u8]) -> Option<Tcp> {
    if frame.len() < 14 + 20 {
        return None;
    }
    let (_, l4, proto) = layout(frame);
    let seg = frame.get(l4..)?;
    if proto != PROTO_TCP || seg.len() < 20 {
        return None;
    }
    let be16 = |at: usize| u16::from_be_bytes([seg[at], seg[at + 1]]);
    let be32 = |b: &[u8], at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let data = usize::from(seg[12] >> 4) * 4;
    let raw = seg.get(20..data)?;
    let mut options = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let kind = raw[at];
        if kind == 0 {
            options.push(TcpOpt::Eol);
            break;
        }
        if kind == 1 {
            options.push(TcpOpt::Nop);
            at += 1;
            continue;
        }
        let len = usize::from(*raw.get(at + 1)?);
        let body = raw.get(at + 2..at + len.max(2))?;
        options.push(match (kind, len) {
            (2, 4) => TcpOpt::Mss(u16::from_be_bytes([body[0], body[1]])),
            (3, 3) => TcpOpt::WScale(body[0]),
            (4, 2) => TcpOpt::SackPerm,
            (5, _) if len >= 10 && (len - 2) % 8 == 0 => {
                TcpOpt::Sack(body.chunks(8).map(|b| (be32(b, 0), be32(b, 4))).collect())
            }
            (8, 10) => TcpOpt::Ts(be32(body, 0), be32(body, 4)),
            _ => return None,
        });
        at += len;
    }
    Some(Tcp {
        src_port: be16(0),
        dst_port: be16(2),
        seq: be32(seg, 4),
        ack: be32(seg, 8),
        flags: seg[13],
        window: be16(14),
        options,
        payload: seg.get(data..)?.to_vec(),
    })
}

impl Tcp {
    /// The timestamp option's (TSval, TSecr), if any.
    pub fn timestamps(&self) -> Option<(u32, u32)> {
        self.options.iter().find_map(|option| match option {
            TcpOpt::Ts(val, ecr) => Some((*val, *ecr)),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies_to_zero() {
        let h = ipv4(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(198, 51, 100, 2),
            PROTO_TCP,
            20,
            &[1, 1, 1, 0],
            0,
        );
        assert_eq!(h.len(), 24);
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3 example: the sum is 0xddf2, so the checksum is !0xddf2.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&bytes), !0xddf2);
    }

    #[test]
    fn filled_l4_checksums_verify_and_a_flipped_bit_does_not() {
        for frame in [
            frame4(
                Ipv4Addr::new(10, 0, 0, 1),
                PROTO_TCP,
                &tcp_flags(1, 2, 0x10, b"abc"),
            ),
            frame4(Ipv4Addr::new(10, 0, 0, 1), PROTO_UDP, &udp(1, 2, b"hello")),
            frame6("fd00::1".parse().unwrap(), PROTO_TCP, &tcp(1, 2)),
            frame6("fd00::1".parse().unwrap(), PROTO_UDP, &udp(1, 2, b"x")),
        ] {
            let mut frame = with_l4_checksum(frame);
            assert!(checksums_verify(&frame));
            let last = frame.len() - 1;
            frame[last] ^= 0x40;
            assert!(!checksums_verify(&frame));
        }
    }

    #[test]
    fn frames_have_expected_lengths() {
        assert_eq!(eth(ETH_P_IPV4, &[]).len(), 14);
        assert_eq!(eth(ETH_P_IPV4, &[1, 2]).len(), 22);
        assert_eq!(frame4(Ipv4Addr::LOCALHOST, PROTO_TCP, &tcp(1, 2)).len(), 54);
        assert_eq!(
            frame6(Ipv6Addr::LOCALHOST, PROTO_UDP, &udp(1, 2, b"x")).len(),
            14 + 40 + 9
        );
    }

    #[test]
    fn tcp_options_round_trip_and_checksums_verify() {
        let tcp = Tcp {
            src_port: 25000,
            dst_port: 1000,
            seq: 0xdead_beef,
            ack: 7,
            flags: TCP_SYN | TCP_ACK,
            window: 0,
            options: vec![
                TcpOpt::Mss(1460),
                TcpOpt::SackPerm,
                TcpOpt::Ts(1, 2),
                TcpOpt::Nop,
                TcpOpt::WScale(7),
                TcpOpt::Sack(vec![(10, 20), (30, 40)]),
            ],
            payload: b"x".to_vec(),
        };
        let src: IpAddr = "fd00:1::2".parse().unwrap();
        let dst: IpAddr = "fd00:100::1".parse().unwrap();
        let frame = tcp_frame_of(DEFAULT_MACS, src, dst, &tcp);
        assert!(checksums_verify(&frame));
        // 4 + 2 + 10 + 1 + 3 + 18 = 38 option bytes, padded to 40.
        assert_eq!(frame.len(), 14 + 40 + 60 + 1);
        let mut back = parse_tcp(&frame).expect("a TCP frame");
        assert_eq!(back.options.pop(), Some(TcpOpt::Eol));
        assert_eq!(back, tcp);
        assert_eq!(back.timestamps(), Some((1, 2)));
        let v4 = tcp_frame_of(
            DEFAULT_MACS,
            Ipv4Addr::new(10, 0, 1, 2).into(),
            Ipv4Addr::new(10, 0, 100, 1).into(),
            &tcp,
        );
        let v4 = with_ipv4_fields(v4, 0, 0, 0x4000, 64);
        assert!(checksums_verify(&v4));
        assert_eq!((v4[18..22].to_vec(), v4[22]), (vec![0, 0, 0x40, 0], 64));
    }

    #[test]
    fn the_tcp_checksum_covers_the_pseudo_header() {
        // One hand-summed case: 10.0.0.1 -> 10.0.0.2, a 20-byte header
        // from port 1 to port 2, seq 0, ack 0, data offset 5, SYN, window
        // 0. Sum of the 16-bit words: addresses 0x0a00 + 0x0001 + 0x0a00 +
        // 0x0002, protocol 6, length 20; header 0x0001 + 0x0002 + 0x5002.
        let tcp = Tcp {
            src_port: 1,
            dst_port: 2,
            flags: TCP_SYN,
            ..Tcp::default()
        };
        let frame = tcp_frame_of(
            DEFAULT_MACS,
            Ipv4Addr::new(10, 0, 0, 1).into(),
            Ipv4Addr::new(10, 0, 0, 2).into(),
            &tcp,
        );
        let sum: u32 = 0x0a00 + 0x0001 + 0x0a00 + 0x0002 + 6 + 20 + 0x0001 + 0x0002 + 0x5002;
        assert_eq!(
            frame[14 + 20 + 16..14 + 20 + 18],
            (!(sum as u16)).to_be_bytes()
        );
    }
}
