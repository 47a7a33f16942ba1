//! Bounds-checked parsing of Ethernet (up to two VLAN tags), IPv4, IPv6, TCP
//! and UDP. Returns the fields later stages need, or the verdict that says
//! why the packet is not ours to handle.
use aya_ebpf::{macros::map, maps::PerCpuArray};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};
use proxy_common::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_IPV4, ETH_P_IPV6, IPPROTO_FRAGMENT, IPPROTO_ICMP,
    IPPROTO_ICMPV6, TCP_ACK, TCP_SYN, V4_MAPPED_PREFIX, Verdict, ip_proto, v4_mapped,
};

use crate::hook::{Frame, ptr_at};

const VLAN_HDR_LEN: usize = 4;
/// IPv4 flags+offset: "more fragments" bit and the 13-bit offset.
pub const IPV4_MF_OR_OFFSET: u16 = 0x3FFF;
/// Deepest offset the parser, the NAT and the SYN proxy read at: Ethernet,
/// two VLAN tags, IPv4 with the longest options, and the TCP header with
/// the longest options.
pub const MAX_HEADER_OFFSET: usize = 14 + 8 + 60 + 60;

/// What the data path needs to know about a TCP or UDP packet. It lives in
/// a per-CPU map slot rather than on the 512-byte BPF stack: its addresses,
/// assembled byte by byte, would otherwise fill the stack with spills.
#[repr(C)]
pub struct Packet {
    /// Offset of the IP header in the frame (14 when untagged).
    pub l3_offset: usize,
    /// Offset of the TCP/UDP header in the frame.
    pub l4_offset: usize,
    pub ipv6: bool,
    pub proto: u8,
    /// Addresses in the 16-byte form of `proxy_common` (IPv4 mapped).
    pub src: [u8; 16],
    pub dst: [u8; 16],
    /// Ports in host order.
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags byte (0 for UDP).
    pub tcp_flags: u8,
    /// TCP sequence number, host order (0 for UDP): conntrack judges RSTs
    /// and SYNs by it.
    pub tcp_seq: u32,
    /// TCP acknowledgment number, host order (0 for UDP): a handshake
    /// completes only with the ACK of the origin's SYN-ACK.
    pub tcp_ack: u32,
    /// IP total length (IPv4) or payload length + 40 (IPv6), for the MTU check.
    pub ip_len: u16,
}

impl Packet {
    /// No VLAN tag: the only frames the fast path rewrites.
    #[inline(always)]
    pub fn untagged(&self) -> bool {
        self.l3_offset == EthHdr::LEN
    }

    /// A TCP SYN without ACK: the only packet that may open a TCP flow.
    #[inline(always)]
    pub fn is_tcp_open(&self) -> bool {
        self.proto == ip_proto::TCP && self.tcp_flags & (TCP_SYN | TCP_ACK) == TCP_SYN
    }
}

#[map]
static PACKET: PerCpuArray<Packet> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn parse(ctx: &impl Frame) -> Result<&'static Packet, Verdict> {
    let packet = PACKET.get_ptr_mut(0).ok_or(Verdict::Malformed)?;
    // SAFETY: this CPU's slot, used by this program run alone.
    let packet = unsafe { &mut *packet };
    let (ether_type, l3_offset) = parse_ethernet(ctx)?;
    packet.l3_offset = l3_offset;
    match ether_type {
        ETH_P_IPV4 => parse_ipv4(ctx, packet)?,
        ETH_P_IPV6 => parse_ipv6(ctx, packet)?,
        _ => return Err(Verdict::NotIp),
    }
    Ok(packet)
}

/// The packet [`parse`] parsed last on this CPU: a program tail-called
/// after it finds it there.
#[inline(always)]
pub fn current() -> Option<&'static Packet> {
    let packet = PACKET.get_ptr(0)?;
    // SAFETY: this CPU's slot, used by this program run alone.
    Some(unsafe { &*packet })
}

/// The IP protocol (IPv4) or first next header (IPv6) of an untagged
/// frame, read without parsing further: enough to tell whether a frame is
/// one the XDP program leaves to TC, before [`parse`] fills the slot. None
/// for an IPv4 fragment, which TC could not parse: XDP counts it.
#[inline(always)]
pub fn untagged_l4_proto(ctx: &impl Frame) -> Option<u8> {
    let eth: *const EthHdr = ptr_at(ctx, 0).ok()?;
    match u16::from_be(unsafe { (*eth).ether_type }) {
        ETH_P_IPV4 => {
            let ip: *const Ipv4Hdr = ptr_at(ctx, EthHdr::LEN).ok()?;
            let (frags, proto) = unsafe { (u16::from_be_bytes((*ip).frags), (*ip).proto) };
            (frags & IPV4_MF_OR_OFFSET == 0).then_some(proto)
        }
        ETH_P_IPV6 => {
            let ip: *const Ipv6Hdr = ptr_at(ctx, EthHdr::LEN).ok()?;
            Some(unsafe { (*ip).next_hdr })
        }
        _ => None,
    }
}

/// Returns the inner ether type and the offset of the L3 header, after at
/// most two VLAN tags (802.1Q, or 802.1ad outer + 802.1Q inner).
#[inline(always)]
fn parse_ethernet(ctx: &impl Frame) -> Result<(u16, usize), Verdict> {
    let eth: *const EthHdr = ptr_at(ctx, 0)?;
    let mut ether_type = u16::from_be(unsafe { (*eth).ether_type });
    let mut offset = EthHdr::LEN;
    for _ in 0..2 {
        if ether_type != ETH_P_8021Q && ether_type != ETH_P_8021AD {
            break;
        }
        // The tag is TCI (2 bytes) then the next ether type (2 bytes).
        let next: *const [u8; 2] = ptr_at(ctx, offset + 2)?;
        ether_type = u16::from_be_bytes(unsafe { *next });
        offset += VLAN_HDR_LEN;
    }
    Ok((ether_type, offset))
}

#[inline(always)]
fn parse_ipv4(ctx: &impl Frame, packet: &mut Packet) -> Result<(), Verdict> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, packet.l3_offset)?;
    let (vihl, frags, proto, tot_len) = unsafe {
        (
            (*ip).vihl,
            u16::from_be_bytes((*ip).frags),
            (*ip).proto,
            u16::from_be_bytes((*ip).tot_len),
        )
    };
    let header_len = ((vihl & 0x0F) as usize) * 4;
    if vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN {
        return Err(Verdict::Malformed);
    }
    if frags & IPV4_MF_OR_OFFSET != 0 {
        return Err(Verdict::Fragment);
    }
    let l4_offset = packet.l3_offset + header_len;
    if proto == IPPROTO_ICMP {
        return Err(icmp_verdict(ctx, l4_offset, false));
    }
    unsafe {
        packet.src = v4_mapped((*ip).src_addr);
        packet.dst = v4_mapped((*ip).dst_addr);
    }
    packet.l4_offset = l4_offset;
    packet.ipv6 = false;
    packet.proto = proto;
    packet.ip_len = tot_len;
    parse_l4(ctx, packet)
}

#[inline(always)]
fn parse_ipv6(ctx: &impl Frame, packet: &mut Packet) -> Result<(), Verdict> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, packet.l3_offset)?;
    let (version, proto, payload_len) = unsafe {
        (
            (*ip).vcf[0] >> 4,
            (*ip).next_hdr,
            u16::from_be_bytes((*ip).payload_len),
        )
    };
    if version != 6 {
        return Err(Verdict::Malformed);
    }
    if proto == IPPROTO_FRAGMENT {
        return Err(Verdict::Fragment);
    }
    let l4_offset = packet.l3_offset + Ipv6Hdr::LEN;
    if proto == IPPROTO_ICMPV6 {
        return Err(icmp_verdict(ctx, l4_offset, true));
    }
    unsafe {
        packet.src = (*ip).src_addr;
        packet.dst = (*ip).dst_addr;
    }
    // IPv4-mapped addresses never appear on an IPv6 wire; here they would
    // share the IPv4 key space of listeners and flows.
    if packet.src[..12] == V4_MAPPED_PREFIX || packet.dst[..12] == V4_MAPPED_PREFIX {
        return Err(Verdict::Malformed);
    }
    packet.l4_offset = l4_offset;
    packet.ipv6 = true;
    packet.proto = proto;
    packet.ip_len = payload_len.saturating_add(Ipv6Hdr::LEN as u16);
    // Extension headers other than fragments end up in OtherProtocol here.
    parse_l4(ctx, packet)
}

/// ICMP errors (destination unreachable, time exceeded, ...) are told apart
/// from other ICMP (echo, neighbour discovery), which is just another protocol.
#[inline(always)]
fn icmp_verdict(ctx: &impl Frame, l4_offset: usize, ipv6: bool) -> Verdict {
    // Type and code together: a 1-byte bounds check compiles to a form the
    // verifier cannot follow.
    let Ok(header) = ptr_at::<[u8; 2]>(ctx, l4_offset) else {
        return Verdict::Malformed;
    };
    let kind = unsafe { (*header)[0] };
    let error = if ipv6 {
        // 1 unreachable, 2 packet too big, 3 time exceeded, 4 parameter problem.
        (1..=4).contains(&kind)
    } else {
        // 3 unreachable, 4 source quench, 5 redirect, 11 time exceeded, 12 parameter problem.
        matches!(kind, 3 | 4 | 5 | 11 | 12)
    };
    if error {
        Verdict::IcmpError
    } else {
        Verdict::OtherProtocol
    }
}

/// Source and destination port (host order) and TCP flags of a complete
/// TCP or UDP header.
#[inline(always)]
fn parse_l4(ctx: &impl Frame, packet: &mut Packet) -> Result<(), Verdict> {
    match packet.proto {
        ip_proto::TCP => {
            let tcp: *const TcpHdr = ptr_at(ctx, packet.l4_offset)?;
            // Everything read in one go from the checked pointer: a second
            // pointer to byte 13 would get a 1-byte bounds check, which
            // compiles to a form the verifier cannot follow.
            let (src, dst, seq, ack, data_offset, flags) = unsafe {
                let bytes = &*(tcp as *const [u8; 20]);
                (
                    [bytes[0], bytes[1]],
                    [bytes[2], bytes[3]],
                    [bytes[4], bytes[5], bytes[6], bytes[7]],
                    [bytes[8], bytes[9], bytes[10], bytes[11]],
                    bytes[12] >> 4,
                    bytes[13],
                )
            };
            if data_offset < 5 {
                return Err(Verdict::Malformed);
            }
            packet.src_port = u16::from_be_bytes(src);
            packet.dst_port = u16::from_be_bytes(dst);
            packet.tcp_flags = flags;
            packet.tcp_seq = u32::from_be_bytes(seq);
            packet.tcp_ack = u32::from_be_bytes(ack);
            Ok(())
        }
        ip_proto::UDP => {
            let udp: *const UdpHdr = ptr_at(ctx, packet.l4_offset)?;
            let (src, dst) = unsafe { ((*udp).src, (*udp).dst) };
            packet.src_port = u16::from_be_bytes(src);
            packet.dst_port = u16::from_be_bytes(dst);
            packet.tcp_flags = 0;
            packet.tcp_seq = 0;
            packet.tcp_ack = 0;
            Ok(())
        }
        _ => Err(Verdict::OtherProtocol),
    }
}
