//! A minimal TC-ingress router for the benchmark's baseline, the TC
//! counterpart of [`crate::router`]: route lookup in the kernel's FIB, then
//! `bpf_redirect_neigh`, which resolves the next hop's MAC, writes both MACs
//! and sends the packet out. No NAT, no counters, no maps: the ceiling no
//! eBPF design at TC passes on a given machine.
//!
//! Like the XDP router, it leaves the TTL / hop limit alone.
//!
//! `tot_len` stays 0: the kernel then checks the packet itself against the
//! egress MTU (`is_skb_forwardable`), which lets GSO packets through, so a
//! GRO'd 64 KB packet is forwarded and segmented on the way out. A non-zero
//! `tot_len` would be compared with the MTU and punt such a packet
//! (`BPF_FIB_LKUP_RET_FRAG_NEEDED`).
use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, TC_ACT_OK, bpf_fib_lookup as FibParams,
    },
    helpers::bpf_fib_lookup,
    macros::classifier,
    programs::TcContext,
};
use network_types::{
    eth::EthHdr,
    ip::{Ipv4Hdr, Ipv6Hdr},
};
use proxy_common::{AF_INET, AF_INET6, ETH_P_IPV4, ETH_P_IPV6, ip_proto};
use proxy_ebpf::{hook::tc::redirect_neigh, parse::IPV4_MF_OR_OFFSET};

/// IPv4 version 4, header length 5 words (no options).
const IPV4_NO_OPTIONS: u8 = 0x45;

/// A `T` at `offset` when all of it is in the linear part of the packet.
#[inline(always)]
fn header<T>(ctx: &TcContext, offset: usize) -> Option<*const T> {
    let start = ctx.data();
    if start + offset + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    Some((start + offset) as *const T)
}

/// Source and destination port (network order) of a TCP or UDP header at
/// `offset`, for multipath hashing; zeros when there is none.
#[inline(always)]
fn ports(ctx: &TcContext, proto: u8, offset: usize) -> (u16, u16) {
    if proto != ip_proto::TCP && proto != ip_proto::UDP {
        return (0, 0);
    }
    match header::<[u16; 2]>(ctx, offset) {
        Some(ports) => unsafe { ((*ports)[0], (*ports)[1]) },
        None => (0, 0),
    }
}

#[classifier]
pub fn tc_router(ctx: TcContext) -> i32 {
    let pass = TC_ACT_OK;
    // SAFETY: the context of a TC program.
    let (vlan_present, ingress_ifindex) =
        unsafe { ((*ctx.skb.skb).vlan_present, (*ctx.skb.skb).ingress_ifindex) };
    // The kernel strips a VLAN tag into the skb before TC ingress: the frame
    // then looks untagged, only this says it was not.
    if vlan_present != 0 {
        return pass;
    }
    let Some(eth) = header::<EthHdr>(&ctx, 0) else {
        return pass;
    };
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    params.ifindex = ingress_ifindex;
    match u16::from_be(unsafe { (*eth).ether_type }) {
        ETH_P_IPV4 => {
            let Some(ip) = header::<Ipv4Hdr>(&ctx, EthHdr::LEN) else {
                return pass;
            };
            let (vihl, frags, proto) =
                unsafe { ((*ip).vihl, u16::from_be_bytes((*ip).frags), (*ip).proto) };
            params.family = AF_INET;
            params.l4_protocol = proto;
            unsafe {
                params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes((*ip).src_addr);
                params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes((*ip).dst_addr);
            }
            // A fragment has no ports, or only the first one does.
            if vihl == IPV4_NO_OPTIONS && frags & IPV4_MF_OR_OFFSET == 0 {
                (params.sport, params.dport) = ports(&ctx, proto, EthHdr::LEN + Ipv4Hdr::LEN);
            }
        }
        ETH_P_IPV6 => {
            let Some(ip) = header::<Ipv6Hdr>(&ctx, EthHdr::LEN) else {
                return pass;
            };
            let proto = unsafe { (*ip).next_hdr };
            params.family = AF_INET6;
            params.l4_protocol = proto;
            // Both forms are the address bytes in network order.
            unsafe {
                params.__bindgen_anon_3.ipv6_src =
                    core::mem::transmute::<[u8; 16], [u32; 4]>((*ip).src_addr);
                params.__bindgen_anon_4.ipv6_dst =
                    core::mem::transmute::<[u8; 16], [u32; 4]>((*ip).dst_addr);
            }
            (params.sport, params.dport) = ports(&ctx, proto, EthHdr::LEN + Ipv6Hdr::LEN);
        }
        _ => return pass,
    }
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            &mut params,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    // NO_NEIGH: the route is known, the MAC is not; bpf_redirect_neigh
    // resolves it (the packet waits in the neighbour's queue meanwhile).
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 && rc != BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        // Local, no route, forwarding off, MTU: the kernel decides.
        return pass;
    }
    // The lookup left the next hop in the destination field: handing it
    // over spares bpf_redirect_neigh a second route lookup.
    redirect_neigh(&params) as i32
}
