//! What the two rewrites share: where the TCP/UDP checksum is, and the
//! pseudo-header's addresses. Each hook rewrites in its own way (`hook::xdp`
//! in place, `hook::tc` by the kernel's checksum helpers); the new tuple is
//! the flow's either way.
use proxy_common::{csum, ip_proto};

use crate::parse::Packet;

const TCP_CHECK_OFFSET: usize = 16;
const UDP_CHECK_OFFSET: usize = 6;

/// Offset of the TCP/UDP checksum in the L4 header.
#[inline(always)]
pub fn check_offset(packet: &Packet) -> usize {
    if packet.proto == ip_proto::TCP {
        TCP_CHECK_OFFSET
    } else {
        UDP_CHECK_OFFSET
    }
}

/// The IPv4 address in the low four bytes of the 16-byte form.
#[inline(always)]
pub fn low4(addr: &[u8; 16]) -> [u8; 4] {
    [addr[12], addr[13], addr[14], addr[15]]
}

/// A checksum covering an address (the pseudo-header), after it changed.
#[inline(always)]
pub fn replace_addr(check: u16, old: &[u8; 16], new: &[u8; 16], ipv6: bool) -> u16 {
    if ipv6 {
        csum::replace_16(check, old, new)
    } else {
        csum::replace_4(check, low4(old), low4(new))
    }
}
