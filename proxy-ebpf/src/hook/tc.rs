//! The TC-ingress hook, for apps whose `datapath` is `tc` (and TCP apps
//! under `auto`), and for every fast-path app of a protocol TC has alone
//! (`SettingsFlags::TC_ONLY_*`: no app of it needs XDP, which then passes it at
//! once). Packets arrive here after GRO, so one program run moves up to
//! 64 KB of a TCP stream instead of one frame. The rewrite is the kernel's
//! checksum helpers (`bpf_l3_csum_replace`, `bpf_l4_csum_replace`): only
//! they know a GSO or CHECKSUM_PARTIAL skb, whose TCP/UDP checksum field
//! holds the pseudo-header sum alone. The send is `bpf_redirect`, or
//! `bpf_redirect_neigh` while the next hop's MAC is not known.
use aya_ebpf::{
    bindings::{
        BPF_F_MARK_MANGLED_0, BPF_F_PSEUDO_HDR, BPF_F_RECOMPUTE_CSUM, TC_ACT_OK, TC_ACT_SHOT,
        bpf_fib_lookup as FibParams, bpf_redir_neigh,
    },
    helpers::{
        bpf_clone_redirect, bpf_redirect, bpf_redirect_neigh, bpf_skb_change_tail,
        bpf_skb_load_bytes,
    },
    programs::TcContext,
};
use proxy_common::{AF_INET, FlowValue, HOOK_TC, Verdict, ip_proto};

use super::{Frame, Hook, Outcome, csum_words2, csum_words4};
use crate::{
    nat::{check_offset, low4},
    parse::{MAX_HEADER_OFFSET, Packet},
    synproxy::SYN_PROXY_TC,
};

/// Offsets in the IPv4 header: checksum, source, destination; and of the
/// addresses in the IPv6 header.
const IPV4_CHECK: usize = 10;
const IPV4_SRC: usize = 12;
const IPV4_DST: usize = 16;
const IPV6_SRC: usize = 8;
const IPV6_DST: usize = 24;

impl Frame for TcContext {
    #[inline(always)]
    fn start(&self) -> usize {
        self.data()
    }

    #[inline(always)]
    fn end(&self) -> usize {
        self.data_end()
    }
}

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

/// `bpf_redirect_neigh` to the next hop a route lookup left in `params`
/// (the gateway, or the destination when on link, in the destination
/// field): the kernel resolves its MAC and sends the packet out.
#[inline(always)]
pub fn redirect_neigh(params: &FibParams) -> i64 {
    let mut next_hop = bpf_redir_neigh {
        nh_family: params.family as u32,
        __bindgen_anon_1: unsafe { core::mem::zeroed() },
    };
    unsafe {
        if params.family == AF_INET {
            next_hop.__bindgen_anon_1.ipv4_nh = params.__bindgen_anon_4.ipv4_dst;
        } else {
            next_hop.__bindgen_anon_1.ipv6_nh = params.__bindgen_anon_4.ipv6_dst;
        }
        bpf_redirect_neigh(
            params.ifindex,
            &mut next_hop,
            core::mem::size_of::<bpf_redir_neigh>() as i32,
            0,
        )
    }
}

impl Hook for TcContext {
    type Action = i32;
    const PASS: i32 = TC_ACT_OK;
    const DROP: i32 = TC_ACT_SHOT;
    const HOOK: u8 = HOOK_TC;
    const OPENED: Verdict = Verdict::FlowOpenedTc;
    const FIRST: bool = false;

    #[inline(always)]
    fn frame_len(&self) -> u64 {
        self.len() as u64
    }

    /// The kernel strips a VLAN tag into the skb before TC ingress; such
    /// packets are not the fast path's (XDP sends them to the agent). The
    /// others get their headers pulled into the linear part, where direct
    /// access reaches them.
    #[inline(always)]
    fn takes(&self) -> bool {
        // SAFETY: the context of a TC program.
        let vlan_present = unsafe { (*self.skb.skb).vlan_present };
        if vlan_present != 0 {
            return false;
        }
        let _ = self.pull_data((MAX_HEADER_OFFSET as u32).min(self.len()));
        true
    }

    /// The prologue left every packet that came tagged.
    #[inline(always)]
    fn tagged(&self, _packet: &Packet) -> bool {
        false
    }

    /// TC is last: it carries on a flow XDP opened (the NAT is the same at
    /// both hooks), and leaves an XDP app's packet, passed up for XDP's own
    /// reasons, to the stack.
    #[inline(always)]
    fn hand_on(_slot: u32) -> Outcome<i32> {
        None
    }

    /// Checksums by the kernel's helpers (which handle GSO and
    /// CHECKSUM_PARTIAL skbs), then the new addresses and ports stored. A
    /// failure part way leaves a packet the stack will drop for its
    /// checksum; the caller passes it on as `Malformed`.
    #[inline(always)]
    fn rewrite(&self, packet: &Packet, flow: &FlowValue) -> Result<(), Verdict> {
        let check = packet.l4_offset + check_offset(packet);
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
                self.l4_csum_replace(
                    check,
                    word(&packet.src, index),
                    word(&flow.new_src, index),
                    pseudo,
                )
                .map_err(failed)?;
                self.l4_csum_replace(
                    check,
                    word(&packet.dst, index),
                    word(&flow.new_dst, index),
                    pseudo,
                )
                .map_err(failed)?;
            }
            self.store(packet.l3_offset + IPV6_SRC, &flow.new_src, 0)
                .map_err(failed)?;
            self.store(packet.l3_offset + IPV6_DST, &flow.new_dst, 0)
                .map_err(failed)?;
        } else {
            let ip_check = packet.l3_offset + IPV4_CHECK;
            for (old, new) in [(&packet.src, &flow.new_src), (&packet.dst, &flow.new_dst)] {
                self.l3_csum_replace(ip_check, word(old, 3), word(new, 3), 4)
                    .map_err(failed)?;
                self.l4_csum_replace(check, word(old, 3), word(new, 3), pseudo)
                    .map_err(failed)?;
            }
            self.store(packet.l3_offset + IPV4_SRC, &low4(&flow.new_src), 0)
                .map_err(failed)?;
            self.store(packet.l3_offset + IPV4_DST, &low4(&flow.new_dst), 0)
                .map_err(failed)?;
        }
        let ports = mangled | 2;
        self.l4_csum_replace(
            check,
            port_word(packet.src_port),
            port_word(flow.new_src_port),
            ports,
        )
        .map_err(failed)?;
        self.l4_csum_replace(
            check,
            port_word(packet.dst_port),
            port_word(flow.new_dst_port),
            ports,
        )
        .map_err(failed)?;
        let src = flow.new_src_port.to_be_bytes();
        let dst = flow.new_dst_port.to_be_bytes();
        self.store(packet.l4_offset, &[src[0], src[1], dst[0], dst[1]], 0)
            .map_err(failed)?;
        Ok(())
    }

    #[inline(always)]
    fn ingress(&self) -> u32 {
        // SAFETY: the context of a TC program.
        unsafe { (*self.skb.skb).ingress_ifindex }
    }

    /// 0: a GSO packet passes the lookup whole; the kernel checks a non-GSO
    /// skb against the egress MTU itself, and segments a GSO one on the way
    /// out.
    #[inline(always)]
    fn route_len(_packet: &Packet) -> u16 {
        0
    }

    /// `bpf_redirect_neigh` resolves the MAC: the packet waits in the
    /// neighbour's queue, not lost.
    #[inline(always)]
    fn neighbor_pending(params: &FibParams) -> i32 {
        redirect_neigh(params) as i32
    }

    /// New MACs, then `bpf_redirect` out of `ifindex`.
    #[inline(always)]
    fn redirect(&self, ifindex: u32, dmac: &[u8; 6], smac: &[u8; 6]) -> (i32, Option<Verdict>) {
        let macs = [
            dmac[0], dmac[1], dmac[2], dmac[3], dmac[4], dmac[5], smac[0], smac[1], smac[2],
            smac[3], smac[4], smac[5],
        ];
        if self.store(0, &macs, 0).is_err() {
            return (TC_ACT_OK, Some(Verdict::Malformed));
        }
        (unsafe { bpf_redirect(ifindex, 0) } as i32, None)
    }

    #[inline(always)]
    fn syn_proxy(&self) {
        // SAFETY: a tail call; on success it does not return.
        unsafe { SYN_PROXY_TC.tail_call(self, 0) };
    }

    #[inline(always)]
    fn load(&self, offset: usize, dst: &mut [u8; 64], len: u32) -> Result<(), Verdict> {
        let len = len.clamp(20, 60);
        let rc = unsafe {
            bpf_skb_load_bytes(
                self.skb.skb as *const _,
                offset as u32,
                dst.as_mut_ptr() as *mut _,
                len,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(Verdict::Malformed)
        }
    }

    #[inline(always)]
    fn set_len(&self, len: u32) -> Result<(), Verdict> {
        if self.len() == len {
            return Ok(());
        }
        let rc = unsafe { bpf_skb_change_tail(self.skb.skb, len, 0) };
        if rc == 0 {
            Ok(())
        } else {
            Err(Verdict::Malformed)
        }
    }

    /// By `bpf_skb_store_bytes`, which keeps a CHECKSUM_COMPLETE skb's sum
    /// right.
    #[inline(always)]
    fn put<const N: usize>(&self, offset: usize, bytes: &[u8; N]) -> Result<(), Verdict> {
        self.store(offset, bytes, BPF_F_RECOMPUTE_CSUM as u64)
            .map_err(|_| Verdict::Malformed)
    }

    #[inline(always)]
    fn replace4(
        &self,
        check: usize,
        offset: usize,
        old: [u8; 4],
        new: [u8; 4],
    ) -> Result<(), Verdict> {
        let (old_sum, new_sum) = csum_words4(offset, old, new);
        let (from, to) = (
            u32::from_ne_bytes(old_sum) as u64,
            u32::from_ne_bytes(new_sum) as u64,
        );
        self.l4_csum_replace(check, from, to, 4)
            .map_err(|_| Verdict::Malformed)?;
        self.store(offset, &new, 0).map_err(|_| Verdict::Malformed)
    }

    #[inline(always)]
    fn replace2(
        &self,
        check: usize,
        offset: usize,
        old: [u8; 2],
        new: [u8; 2],
    ) -> Result<(), Verdict> {
        let (old_sum, new_sum) = csum_words2(offset, old, new);
        let (from, to) = (
            u16::from_ne_bytes(old_sum) as u64,
            u16::from_ne_bytes(new_sum) as u64,
        );
        self.l4_csum_replace(check, from, to, 2)
            .map_err(|_| Verdict::Malformed)?;
        self.store(offset, &new, 0).map_err(|_| Verdict::Malformed)
    }

    /// Out of the ingress interface again, the MACs swapped.
    #[inline(always)]
    fn reply(&self) -> i32 {
        let Ok(macs) = TcContext::load::<[u8; 12]>(self, 0) else {
            return TC_ACT_SHOT;
        };
        let swapped = [
            macs[6], macs[7], macs[8], macs[9], macs[10], macs[11], macs[0], macs[1], macs[2],
            macs[3], macs[4], macs[5],
        ];
        if self.store(0, &swapped, 0).is_err() {
            return TC_ACT_SHOT;
        }
        unsafe { bpf_redirect(self.ingress(), 0) as i32 }
    }

    #[inline(always)]
    fn clone_out(&self, ifindex: u32, dmac: &[u8; 6], smac: &[u8; 6]) {
        let macs = [
            dmac[0], dmac[1], dmac[2], dmac[3], dmac[4], dmac[5], smac[0], smac[1], smac[2],
            smac[3], smac[4], smac[5],
        ];
        if self.store(0, &macs, 0).is_ok() {
            unsafe { bpf_clone_redirect(self.skb.skb, ifindex, 0) };
        }
    }
}
