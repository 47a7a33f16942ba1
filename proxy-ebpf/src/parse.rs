//! Bounds-checked parsing of Ethernet (up to two VLAN tags), IPv4, IPv6, TCP
//! and UDP. Returns the fields later stages need, or the verdict that says
//! why the packet is not ours to handle.
use aya_ebpf::programs::XdpContext;
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
};
use proxy_common::{Verdict, ip_proto, v4_mapped};

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const VLAN_HDR_LEN: usize = 4;
/// IPv4 flags+offset: "more fragments" bit and the 13-bit offset.
const IPV4_MF_OR_OFFSET: u16 = 0x3FFF;
const IPV6_NEXT_FRAGMENT: u8 = 44;

/// What the data path needs to know about a TCP or UDP packet. (Source
/// fields and header offsets join when the NAT and access-rule stages read
/// them.)
pub struct Packet {
    pub proto: u8,
    /// Destination in the 16-byte form of `proxy_common` (IPv4 mapped).
    pub dst: [u8; 16],
    /// Destination port in host order.
    pub dst_port: u16,
}

/// Returns a pointer to a `T` at `offset` when the whole `T` is inside the frame.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Result<*const T, Verdict> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + core::mem::size_of::<T>() > end {
        return Err(Verdict::Malformed);
    }
    Ok((start + offset) as *const T)
}

#[inline(always)]
pub fn parse(ctx: &XdpContext) -> Result<Packet, Verdict> {
    let (ether_type, l3_offset) = parse_ethernet(ctx)?;
    match ether_type {
        ETH_P_IPV4 => parse_ipv4(ctx, l3_offset),
        ETH_P_IPV6 => parse_ipv6(ctx, l3_offset),
        _ => Err(Verdict::NotIp),
    }
}

/// Returns the inner ether type and the offset of the L3 header, after at
/// most two VLAN tags (802.1Q, or 802.1ad outer + 802.1Q inner).
#[inline(always)]
fn parse_ethernet(ctx: &XdpContext) -> Result<(u16, usize), Verdict> {
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
fn parse_ipv4(ctx: &XdpContext, l3_offset: usize) -> Result<Packet, Verdict> {
    let ip: *const Ipv4Hdr = ptr_at(ctx, l3_offset)?;
    let (vihl, frags, proto, dst) = unsafe {
        (
            (*ip).vihl,
            u16::from_be_bytes((*ip).frags),
            (*ip).proto,
            (*ip).dst_addr,
        )
    };
    let header_len = ((vihl & 0x0F) as usize) * 4;
    if vihl >> 4 != 4 || header_len < Ipv4Hdr::LEN {
        return Err(Verdict::Malformed);
    }
    if frags & IPV4_MF_OR_OFFSET != 0 {
        return Err(Verdict::Fragment);
    }
    let l4_offset = l3_offset + header_len;
    let dst_port = parse_dst_port(ctx, proto, l4_offset)?;
    Ok(Packet {
        proto,
        dst: v4_mapped(dst),
        dst_port,
    })
}

#[inline(always)]
fn parse_ipv6(ctx: &XdpContext, l3_offset: usize) -> Result<Packet, Verdict> {
    let ip: *const Ipv6Hdr = ptr_at(ctx, l3_offset)?;
    let (version, proto) = unsafe { ((*ip).vcf[0] >> 4, (*ip).next_hdr) };
    if version != 6 {
        return Err(Verdict::Malformed);
    }
    if proto == IPV6_NEXT_FRAGMENT {
        return Err(Verdict::Fragment);
    }
    let l4_offset = l3_offset + Ipv6Hdr::LEN;
    // Extension headers other than fragments end up in OtherProtocol here.
    let dst_port = parse_dst_port(ctx, proto, l4_offset)?;
    Ok(Packet {
        proto,
        dst: unsafe { (*ip).dst_addr },
        dst_port,
    })
}

/// Destination port (host order) of a complete TCP or UDP header.
#[inline(always)]
fn parse_dst_port(ctx: &XdpContext, proto: u8, l4_offset: usize) -> Result<u16, Verdict> {
    match proto {
        ip_proto::TCP => {
            let tcp: *const TcpHdr = ptr_at(ctx, l4_offset)?;
            let (doff, dst) = unsafe { ((*tcp).doff(), (*tcp).dest) };
            if doff < 5 {
                return Err(Verdict::Malformed);
            }
            Ok(u16::from_be_bytes(dst))
        }
        ip_proto::UDP => {
            let udp: *const UdpHdr = ptr_at(ctx, l4_offset)?;
            Ok(u16::from_be_bytes(unsafe { (*udp).dst }))
        }
        _ => Err(Verdict::OtherProtocol),
    }
}
