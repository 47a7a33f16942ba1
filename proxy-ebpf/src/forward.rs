//! Sends a rewritten packet on: route lookup in the kernel's FIB, new MAC
//! addresses, then XDP_TX (same interface) or XDP_REDIRECT through the
//! device map. When the next hop's MAC is not known yet, the packet goes up
//! the kernel's forwarding path, which resolves it: the first packet is not
//! lost.
use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        TC_ACT_OK, bpf_fib_lookup as FibParams, bpf_redir_neigh, xdp_action,
    },
    helpers::{bpf_fib_lookup, bpf_redirect, bpf_redirect_neigh},
    macros::map,
    maps::DevMapHash,
    programs::{TcContext, XdpContext},
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

/// Where a packet leaves to and with which addresses and ports, for the
/// route lookup.
pub struct Leaving<'a> {
    pub src: &'a [u8; 16],
    pub dst: &'a [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    /// The packet's IP length, checked against the egress MTU; 0 leaves
    /// the check to the kernel (TC: a GSO packet is segmented later).
    pub tot_len: u16,
}

impl<'a> Leaving<'a> {
    /// How a packet of `flow` leaves, rewritten.
    #[inline(always)]
    pub fn flow(flow: &'a FlowValue, tot_len: u16) -> Self {
        Self {
            src: &flow.new_src,
            dst: &flow.new_dst,
            src_port: flow.new_src_port,
            dst_port: flow.new_dst_port,
            tot_len,
        }
    }
}

/// Keeps a route lookup's next hop in the flow entry (for up to a second:
/// `conntrack::touch` clears it).
#[inline(always)]
fn remember_hop(flow: &mut FlowValue, params: &FibParams) {
    flow.hop_dmac = params.dmac;
    flow.hop_smac = params.smac;
    flow.hop_ifindex = params.ifindex;
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

/// The kernel's route lookup for a packet that will leave as `leaving`
/// says, having come in on `ingress`: fills `params` (the answer comes back
/// in it) and returns the `BPF_FIB_LKUP_RET_*` code.
#[inline(always)]
pub fn route(
    params: &mut FibParams,
    ctx: &impl EbpfContext,
    ingress: u32,
    packet: &Packet,
    leaving: &Leaving,
) -> i64 {
    let (src, dst) = (leaving.src, leaving.dst);
    params.family = if packet.ipv6 { AF_INET6 } else { AF_INET };
    params.l4_protocol = packet.proto;
    params.sport = leaving.src_port.to_be();
    params.dport = leaving.dst_port.to_be();
    params.__bindgen_anon_1.tot_len = leaving.tot_len;
    params.ifindex = ingress;
    // Both forms are the address bytes in network order.
    if packet.ipv6 {
        params.__bindgen_anon_3.ipv6_src =
            unsafe { core::mem::transmute::<[u8; 16], [u32; 4]>(*src) };
        params.__bindgen_anon_4.ipv6_dst =
            unsafe { core::mem::transmute::<[u8; 16], [u32; 4]>(*dst) };
    } else {
        params.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes([src[12], src[13], src[14], src[15]]);
        params.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes([dst[12], dst[13], dst[14], dst[15]]);
    }
    unsafe {
        bpf_fib_lookup(
            ctx.as_ptr(),
            params,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    }
}

/// After a successful route lookup: the new MACs, then out of the same
/// interface or redirected to another of ours.
#[inline(always)]
pub fn redirect(
    ctx: &XdpContext,
    ifindex: u32,
    dmac: &[u8; 6],
    smac: &[u8; 6],
) -> (u32, Option<Verdict>) {
    let same_interface = ifindex == ctx.ingress_ifindex() as u32;
    if !same_interface && TX_PORTS.get_ifindex(ifindex).is_none() {
        // Not one of ours (a VLAN device, a tunnel): the kernel sends it,
        // with the MACs as they came (it would drop a frame addressed to
        // another host).
        return (xdp_action::XDP_PASS, Some(Verdict::NoRoute));
    }
    let Ok(eth) = ptr_at::<EthHdr>(ctx, 0) else {
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

/// Returns the XDP action and, when the packet did not leave directly, the
/// verdict that says why. The next hop comes from the flow entry when it
/// has one, else from a route lookup, whose answer the entry then keeps.
#[inline(never)]
pub fn send(ctx: &XdpContext, packet: &Packet, flow: *mut FlowValue) -> (u32, Option<Verdict>) {
    // SAFETY: a flow map entry or this CPU's scratch slot.
    let flow = unsafe { &mut *flow };
    if flow.hop_ifindex != 0 {
        return redirect(ctx, flow.hop_ifindex, &flow.hop_dmac, &flow.hop_smac);
    }
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    let leaving = Leaving::flow(flow, packet.ip_len);
    let rc = route(
        &mut params,
        ctx,
        ctx.ingress_ifindex() as u32,
        packet,
        &leaving,
    );
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        return (xdp_action::XDP_PASS, Some(Verdict::NeighborPending));
    }
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED as i64 {
        return (xdp_action::XDP_PASS, Some(Verdict::TooBig));
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        // No route, a local destination, MTU: the kernel decides.
        return (xdp_action::XDP_PASS, Some(Verdict::NoRoute));
    }
    let sent = redirect(ctx, params.ifindex, &params.dmac, &params.smac);
    if sent.1.is_none() {
        remember_hop(flow, &params);
    }
    sent
}

/// The TC form of [`send`]: the next hop from the flow entry or a route
/// lookup (`tot_len` 0: GSO packets pass, the kernel checks the MTU), new
/// MACs, then `bpf_redirect` out of the egress interface. A next hop whose
/// MAC is not known yet goes by `bpf_redirect_neigh`, which resolves it
/// (the packet waits in the neighbour's queue, not lost).
#[inline(never)]
pub fn send_tc(ctx: &TcContext, packet: &Packet, flow: *mut FlowValue) -> (i32, Option<Verdict>) {
    // SAFETY: a flow map entry or this CPU's scratch slot.
    let flow = unsafe { &mut *flow };
    if flow.hop_ifindex != 0 {
        return redirect_tc(ctx, flow.hop_ifindex, &flow.hop_dmac, &flow.hop_smac);
    }
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    // SAFETY: the context of a TC program.
    let ingress = unsafe { (*ctx.skb.skb).ingress_ifindex };
    let rc = route(&mut params, ctx, ingress, packet, &Leaving::flow(flow, 0));
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        return (
            redirect_neigh(&params) as i32,
            Some(Verdict::NeighborPending),
        );
    }
    // The kernel checks a non-GSO skb against the egress MTU itself.
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED as i64 {
        return (TC_ACT_OK, Some(Verdict::TooBig));
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        // No route, a local destination: the kernel decides.
        return (TC_ACT_OK, Some(Verdict::NoRoute));
    }
    let sent = redirect_tc(ctx, params.ifindex, &params.dmac, &params.smac);
    if sent.1.is_none() {
        remember_hop(flow, &params);
    }
    sent
}

/// New MACs, then out of `ifindex`.
#[inline(always)]
fn redirect_tc(
    ctx: &TcContext,
    ifindex: u32,
    dmac: &[u8; 6],
    smac: &[u8; 6],
) -> (i32, Option<Verdict>) {
    let macs = [
        dmac[0], dmac[1], dmac[2], dmac[3], dmac[4], dmac[5], smac[0], smac[1], smac[2], smac[3],
        smac[4], smac[5],
    ];
    if ctx.store(0, &macs, 0).is_err() {
        return (TC_ACT_OK, Some(Verdict::Malformed));
    }
    (unsafe { bpf_redirect(ifindex, 0) } as i32, None)
}

/// Whether `ifindex` is one of the edge interfaces (those the agent
/// attached XDP to, and so checks access rules on).
#[inline(always)]
pub fn is_edge_interface(ifindex: u32) -> bool {
    TX_PORTS.get_ifindex(ifindex).is_some()
}
