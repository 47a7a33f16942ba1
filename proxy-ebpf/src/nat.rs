//! Rewrites a packet's addresses and ports to a flow's new tuple and fixes
//! the IPv4 header and TCP/UDP checksums incrementally (RFC 1624, helpers in
//! `proxy_common::csum`).
use aya_ebpf::programs::XdpContext;
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
