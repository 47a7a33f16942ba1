//! The XDP hook: the whole frame in place, checksums rewritten
//! incrementally (RFC 1624, helpers in `proxy_common::csum`), the send by
//! XDP_TX or a DEVMAP redirect. Every frame meets XDP first: what no app of
//! a protocol needs here, it leaves to TC ingress at once, and it hands TC's
//! flows and apps up to it (`to_tc`).
use aya_ebpf::{
    bindings::{bpf_fib_lookup as FibParams, xdp_action},
    helpers::{bpf_xdp_adjust_tail, bpf_xdp_load_bytes},
    programs::XdpContext,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};
use proxy_common::{FlowValue, HOOK_XDP, Verdict, csum, ip_proto};

use super::{Frame, Hook, Outcome, csum_words2, csum_words4, ptr_at};
use crate::{
    apps,
    forward::TX_PORTS,
    nat::{check_offset, low4, replace_addr},
    parse::{self, Packet},
    synproxy::SYN_PROXY_XDP,
};

impl Frame for XdpContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }

    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }
}

impl Hook for XdpContext {
    type Action = u32;
    const PASS: u32 = xdp_action::XDP_PASS;
    const DROP: u32 = xdp_action::XDP_DROP;
    const HOOK: u8 = HOOK_XDP;
    const OPENED: Verdict = Verdict::FlowOpened;
    const FIRST: bool = true;

    #[inline(always)]
    fn frame_len(&self) -> u64 {
        (self.data_end() - self.data()) as u64
    }

    /// No app of this protocol needs XDP (no fast path here, no access
    /// rules): TC ingress takes it whole, after GRO, and this frame costs
    /// one read and no lookup. TC leaves tagged frames alone, so they go
    /// on here.
    #[inline(always)]
    fn takes(&self) -> bool {
        !parse::untagged_l4_proto(self).is_some_and(apps::tc_only)
    }

    /// Flows exist for untagged frames only: a tagged frame with the same
    /// tuple is not one of them.
    #[inline(always)]
    fn tagged(&self, packet: &Packet) -> bool {
        !packet.untagged()
    }

    /// Up to TC ingress, which rewrites it (`to_tc`).
    #[inline(always)]
    fn hand_on(slot: u32) -> Outcome<u32> {
        Some((slot, Verdict::ToTc, xdp_action::XDP_PASS))
    }

    /// Rewrites the frame in place, or changes nothing: every header it
    /// writes is bounds-checked before the first write.
    #[inline(always)]
    fn rewrite(&self, packet: &Packet, flow: &FlowValue) -> Result<(), Verdict> {
        let ports: *mut [u8; 4] = ptr_at(self, packet.l4_offset)?;
        let check_ptr: *mut [u8; 2] = ptr_at(self, packet.l4_offset + check_offset(packet))?;
        if packet.ipv6 {
            let ip: *mut Ipv6Hdr = ptr_at(self, packet.l3_offset)?;
            unsafe {
                (*ip).src_addr = flow.new_src;
                (*ip).dst_addr = flow.new_dst;
            }
        } else {
            let ip: *mut Ipv4Hdr = ptr_at(self, packet.l3_offset)?;
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

    #[inline(always)]
    fn ingress(&self) -> u32 {
        self.ingress_ifindex() as u32
    }

    /// The whole frame is here: the route lookup checks its length.
    #[inline(always)]
    fn route_len(packet: &Packet) -> u16 {
        packet.ip_len
    }

    /// Up the kernel's forwarding path, which resolves the MAC: the first
    /// packet is not lost.
    #[inline(always)]
    fn neighbor_pending(_params: &FibParams) -> u32 {
        xdp_action::XDP_PASS
    }

    /// Out of the same interface (XDP_TX) or redirected through the device
    /// map to another of ours.
    #[inline(always)]
    fn redirect(&self, ifindex: u32, dmac: &[u8; 6], smac: &[u8; 6]) -> (u32, Option<Verdict>) {
        let same_interface = ifindex == self.ingress_ifindex() as u32;
        if !same_interface && TX_PORTS.get_ifindex(ifindex).is_none() {
            // Not one of ours (a VLAN device, a tunnel): the kernel sends it,
            // with the MACs as they came (it would drop a frame addressed to
            // another host).
            return (xdp_action::XDP_PASS, Some(Verdict::NoRoute));
        }
        let Ok(eth) = ptr_at::<EthHdr>(self, 0) else {
            return (xdp_action::XDP_PASS, Some(Verdict::Malformed));
        };
        unsafe {
            (*eth).dst_addr = *dmac;
            (*eth).src_addr = *smac;
        }
        if same_interface {
            return (xdp_action::XDP_TX, None);
        }
        match TX_PORTS.redirect(ifindex, 0) {
            Ok(action) => (action, None),
            // Removed from the map meanwhile: let the kernel send it.
            Err(_) => (xdp_action::XDP_PASS, Some(Verdict::NoRoute)),
        }
    }

    #[inline(always)]
    fn syn_proxy(&self) {
        // SAFETY: a tail call; on success it does not return.
        unsafe { SYN_PROXY_XDP.tail_call(self, 0) };
    }

    #[inline(always)]
    fn load(&self, offset: usize, dst: &mut [u8; 64], len: u32) -> Result<(), Verdict> {
        let len = len.clamp(20, 60);
        let rc =
            unsafe { bpf_xdp_load_bytes(self.ctx, offset as u32, dst.as_mut_ptr() as *mut _, len) };
        if rc == 0 {
            Ok(())
        } else {
            Err(Verdict::Malformed)
        }
    }

    #[inline(always)]
    fn set_len(&self, len: u32) -> Result<(), Verdict> {
        let delta = len as i64 - (self.data_end() - self.data()) as i64;
        if delta == 0 {
            return Ok(());
        }
        let rc = unsafe { bpf_xdp_adjust_tail(self.ctx, delta as i32) };
        if rc == 0 {
            Ok(())
        } else {
            Err(Verdict::Malformed)
        }
    }

    #[inline(always)]
    fn put<const N: usize>(&self, offset: usize, bytes: &[u8; N]) -> Result<(), Verdict> {
        let at: *mut [u8; N] = ptr_at(self, offset)?;
        unsafe { *at = *bytes };
        Ok(())
    }

    #[inline(always)]
    fn replace4(
        &self,
        check: usize,
        offset: usize,
        old: [u8; 4],
        new: [u8; 4],
    ) -> Result<(), Verdict> {
        let at: *mut [u8; 4] = ptr_at(self, offset)?;
        let sum: *mut [u8; 2] = ptr_at(self, check)?;
        let (old_sum, new_sum) = csum_words4(offset, old, new);
        unsafe {
            let value = csum::replace_4(u16::from_be_bytes(*sum), old_sum, new_sum);
            *sum = value.to_be_bytes();
            *at = new;
        }
        Ok(())
    }

    #[inline(always)]
    fn replace2(
        &self,
        check: usize,
        offset: usize,
        old: [u8; 2],
        new: [u8; 2],
    ) -> Result<(), Verdict> {
        let at: *mut [u8; 2] = ptr_at(self, offset)?;
        let sum: *mut [u8; 2] = ptr_at(self, check)?;
        let (old_sum, new_sum) = csum_words2(offset, old, new);
        unsafe {
            let value = csum::replace_u16(
                u16::from_be_bytes(*sum),
                u16::from_be_bytes(old_sum),
                u16::from_be_bytes(new_sum),
            );
            *sum = value.to_be_bytes();
            *at = new;
        }
        Ok(())
    }

    /// The MACs swapped, then out of the ingress interface through the
    /// device map rather than XDP_TX: on veth, XDP_TX wakes the peer only
    /// when the peer runs XDP itself, and a redirect always does.
    #[inline(always)]
    fn reply(&self) -> u32 {
        let Ok(eth) = ptr_at::<EthHdr>(self, 0) else {
            return xdp_action::XDP_DROP;
        };
        unsafe {
            core::mem::swap(&mut (*eth).dst_addr, &mut (*eth).src_addr);
        }
        TX_PORTS
            .redirect(self.ingress_ifindex() as u32, 0)
            .unwrap_or(xdp_action::XDP_TX)
    }

    #[inline(always)]
    fn clone_out(&self, _ifindex: u32, _dmac: &[u8; 6], _smac: &[u8; 6]) {}
}
