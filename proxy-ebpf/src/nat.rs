//! Rewrites a packet's addresses and ports to a flow's new tuple and fixes
//! the IPv4 header and TCP/UDP checksums incrementally. In XDP the frame is
//! complete and written in place (RFC 1624, helpers in `proxy_common::csum`).
//! At TC the kernel's helpers do it (`bpf_l3_csum_replace`,
//! `bpf_l4_csum_replace`): only they know a GSO or CHECKSUM_PARTIAL skb,
//! whose TCP/UDP checksum field holds the pseudo-header sum alone.
use aya_ebpf::{
    bindings::{BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR},
    programs::{TcContext, XdpContext},
};
use network_types::ip::{Ipv4Hdr, Ipv6Hdr};
use proxy_common::{FlowValue, Verdict, csum, ip_proto};

use crate::parse::{Packet, ptr_at};

const TCP_CHECK_OFFSET: usize = 16;
const UDP_CHECK_OFFSET: usize = 6;

#[inline(always)]
fn low4(addr: &[u8; 16]) -> [u8; 4] {
    [addr[12], addr[13], addr[14], addr[15]]
}

/// A checksum covering an address (the pseudo-header), after it changed.
#[inline(always)]
fn replace_addr(check: u16, old: &[u8; 16], new: &[u8; 16], ipv6: bool) -> u16 {
    if ipv6 {
        csum::replace_16(check, old, new)
    } else {
        csum::replace_4(check, low4(old), low4(new))
    }
}

/// Rewrites the packet to the flow's tuple, or changes nothing: every
/// header it writes is bounds-checked before the first write.
#[inline(always)]
pub fn rewrite(ctx: &XdpContext, packet: &Packet, flow: &FlowValue) -> Result<(), Verdict> {
    let ports: *mut [u8; 4] = ptr_at(ctx, packet.l4_offset)?;
    let check_offset = if packet.proto == ip_proto::TCP {
        TCP_CHECK_OFFSET
    } else {
        UDP_CHECK_OFFSET
    };
    let check_ptr: *mut [u8; 2] = ptr_at(ctx, packet.l4_offset + check_offset)?;
    if packet.ipv6 {
        let ip: *mut Ipv6Hdr = ptr_at(ctx, packet.l3_offset)?;
        unsafe {
            (*ip).src_addr = flow.new_src;
            (*ip).dst_addr = flow.new_dst;
        }
    } else {
        let ip: *mut Ipv4Hdr = ptr_at(ctx, packet.l3_offset)?;
        unsafe {
            let mut check = u16::from_be_bytes((*ip).check);
            check = csum::replace_4(check, (*ip).src_addr, low4(&flow.new_src));
            check = csum::replace_4(check, (*ip).dst_addr, low4(&flow.new_dst));
            (*ip).check = check.to_be_bytes();
            (*ip).src_addr = low4(&flow.new_src);
            (*ip).dst_addr = low4(&flow.new_dst);
        }
    }
    // Ports, and the TCP/UDP checksum (it covers addresses and ports).
    let old_check = u16::from_be_bytes(unsafe { *check_ptr });
    // UDP over IPv4 may carry no checksum (0): it stays without one.
    let skip = packet.proto == ip_proto::UDP && !packet.ipv6 && old_check == 0;
    if !skip {
        let mut check = replace_addr(old_check, &packet.src, &flow.new_src, packet.ipv6);
        check = replace_addr(check, &packet.dst, &flow.new_dst, packet.ipv6);
        check = csum::replace_u16(check, packet.src_port, flow.new_src_port);
        check = csum::replace_u16(check, packet.dst_port, flow.new_dst_port);
        if packet.proto == ip_proto::UDP {
            check = csum::udp_nonzero(check);
        }
        unsafe { *check_ptr = check.to_be_bytes() };
    }
    let src = flow.new_src_port.to_be_bytes();
    let dst = flow.new_dst_port.to_be_bytes();
    unsafe { *ports = [src[0], src[1], dst[0], dst[1]] };
    Ok(())
}

/// Offsets in the IPv4 header: checksum, source, destination; and of the
/// addresses in the IPv6 header.
const IPV4_CHECK: usize = 10;
const IPV4_SRC: usize = 12;
const IPV4_DST: usize = 16;
const IPV6_SRC: usize = 8;
const IPV6_DST: usize = 24;

/// A 4-byte word of an address as the checksum helpers take it (the bytes
/// as they are in the packet).
#[inline(always)]
fn word(addr: &[u8; 16], index: usize) -> u64 {
    let at = index * 4;
    u32::from_ne_bytes([addr[at], addr[at + 1], addr[at + 2], addr[at + 3]]) as u64
}

/// Port as the checksum helpers take it (network order in memory).
#[inline(always)]
fn port_word(port: u16) -> u64 {
    u16::from_ne_bytes(port.to_be_bytes()) as u64
}

/// The TC form of [`rewrite`]: checksums by the kernel's helpers (which
/// handle GSO and CHECKSUM_PARTIAL skbs), then the new addresses and ports
/// stored. A failure part way leaves a packet the stack will drop for its
/// checksum; the caller passes it on as `Malformed`.
#[inline(always)]
pub fn rewrite_tc(ctx: &TcContext, packet: &Packet, flow: &FlowValue) -> Result<(), Verdict> {
    let check = packet.l4_offset
        + if packet.proto == ip_proto::TCP {
            TCP_CHECK_OFFSET
        } else {
            UDP_CHECK_OFFSET
        };
    // UDP: a zero checksum (IPv4 "none") stays zero, a computed zero
    // becomes 0xffff.
    let mangled = if packet.proto == ip_proto::UDP {
        BPF_F_MARK_MANGLED_0 as u64
    } else {
        0
    };
    let pseudo = BPF_F_PSEUDO_HDR as u64 | mangled | 4;
    let failed = |_| Verdict::Malformed;
    if packet.ipv6 {
        for index in 0..4 {
            ctx.l4_csum_replace(
                check,
                word(&packet.src, index),
                word(&flow.new_src, index),
                pseudo,
            )
            .map_err(failed)?;
            ctx.l4_csum_replace(
                check,
                word(&packet.dst, index),
                word(&flow.new_dst, index),
                pseudo,
            )
            .map_err(failed)?;
        }
        ctx.store(packet.l3_offset + IPV6_SRC, &flow.new_src, 0)
            .map_err(failed)?;
        ctx.store(packet.l3_offset + IPV6_DST, &flow.new_dst, 0)
            .map_err(failed)?;
    } else {
        let ip_check = packet.l3_offset + IPV4_CHECK;
        for (old, new) in [(&packet.src, &flow.new_src), (&packet.dst, &flow.new_dst)] {
            ctx.l3_csum_replace(ip_check, word(old, 3), word(new, 3), 4)
                .map_err(failed)?;
            ctx.l4_csum_replace(check, word(old, 3), word(new, 3), pseudo)
                .map_err(failed)?;
        }
        ctx.store(packet.l3_offset + IPV4_SRC, &low4(&flow.new_src), 0)
            .map_err(failed)?;
        ctx.store(packet.l3_offset + IPV4_DST, &low4(&flow.new_dst), 0)
            .map_err(failed)?;
    }
    let ports = mangled | 2;
    ctx.l4_csum_replace(
        check,
        port_word(packet.src_port),
        port_word(flow.new_src_port),
        ports,
    )
    .map_err(failed)?;
    ctx.l4_csum_replace(
        check,
        port_word(packet.dst_port),
        port_word(flow.new_dst_port),
        ports,
    )
    .map_err(failed)?;
    let src = flow.new_src_port.to_be_bytes();
    let dst = flow.new_dst_port.to_be_bytes();
    ctx.store(packet.l4_offset, &[src[0], src[1], dst[0], dst[1]], 0)
        .map_err(failed)?;
    Ok(())
}
