//! Sends a rewritten packet on: route lookup in the kernel's FIB, new MAC
//! addresses, then XDP_TX (same interface) or XDP_REDIRECT through the
//! device map. When the next hop's MAC is not known yet, the packet goes up
//! the kernel's forwarding path, which resolves it: the first packet is not
//! lost.
use aya_ebpf::{
    EbpfContext as _,
    bindings::{
        BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams,
        xdp_action,
    },
    helpers::bpf_fib_lookup,
    macros::map,
    maps::DevMapHash,
    programs::XdpContext,
};
use network_types::eth::EthHdr;
use proxy_common::{FlowValue, MAX_INTERFACES, Verdict};

use crate::parse::{Packet, ptr_at};

const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Interfaces the program may redirect to, keyed by ifindex (the agent adds
/// every interface it attaches to).
#[map]
static TX_PORTS: DevMapHash = DevMapHash::with_max_entries(MAX_INTERFACES, 0);

/// Returns the XDP action and, when the packet did not leave directly, the
/// verdict that says why.
#[inline(never)]
pub fn send(ctx: &XdpContext, packet: &Packet, flow: &FlowValue) -> (u32, Option<Verdict>) {
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    params.family = if packet.ipv6 { AF_INET6 } else { AF_INET };
    params.l4_protocol = packet.proto;
    params.sport = flow.new_src_port.to_be();
    params.dport = flow.new_dst_port.to_be();
    params.__bindgen_anon_1.tot_len = packet.ip_len;
    params.ifindex = ctx.ingress_ifindex() as u32;
    // Both forms are the address bytes in network order.
    unsafe {
        if packet.ipv6 {
            params.__bindgen_anon_3.ipv6_src =
                core::mem::transmute::<[u8; 16], [u32; 4]>(flow.new_src);
            params.__bindgen_anon_4.ipv6_dst =
                core::mem::transmute::<[u8; 16], [u32; 4]>(flow.new_dst);
        } else {
            params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([
                flow.new_src[12],
                flow.new_src[13],
                flow.new_src[14],
                flow.new_src[15],
            ]);
            params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([
                flow.new_dst[12],
                flow.new_dst[13],
                flow.new_dst[14],
                flow.new_dst[15],
            ]);
        }
    }
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            &mut params,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        return (xdp_action::XDP_PASS, Some(Verdict::NeighborPending));
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        // No route, a local destination, MTU: the kernel decides.
        return (xdp_action::XDP_PASS, Some(Verdict::NoRoute));
    }
    let Ok(eth) = ptr_at::<EthHdr>(ctx, 0) else {
        return (xdp_action::XDP_PASS, Some(Verdict::Malformed));
    };
    unsafe {
        (*eth).dst_addr = params.dmac;
        (*eth).src_addr = params.smac;
    }
    if params.ifindex == ctx.ingress_ifindex() as u32 {
        return (xdp_action::XDP_TX, None);
    }
    match TX_PORTS.redirect(params.ifindex, 0) {
        Ok(action) => (action, None),
        // The egress interface is not one of ours: let the kernel send it.
        Err(_) => (xdp_action::XDP_PASS, Some(Verdict::NoRoute)),
    }
}
