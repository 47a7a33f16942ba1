//! Sends a rewritten packet on, at either hook: the next hop from the flow
//! entry or the kernel's FIB, then the hook's redirect (new MACs, out of
//! the egress interface). When the next hop's MAC is not known yet, the
//! hook hands the packet to the kernel, which resolves it: the first
//! packet is not lost.
use aya_ebpf::{
    EbpfContext,
    bindings::{
        BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH, BPF_FIB_LKUP_RET_SUCCESS,
        bpf_fib_lookup as FibParams,
    },
    helpers::bpf_fib_lookup,
    macros::map,
    maps::DevMapHash,
};
use proxy_common::{AF_INET, AF_INET6, FlowValue, MAX_INTERFACES, Verdict};

use crate::{hook::Hook, parse::Packet};

/// Interfaces the program may redirect to, keyed by ifindex (the agent adds
/// every interface it attaches to).
#[map]
pub(crate) static TX_PORTS: DevMapHash = DevMapHash::with_max_entries(MAX_INTERFACES, 0);

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

/// Returns the hook's action and, when the packet did not leave directly,
/// the verdict that says why. The next hop comes from the flow entry when
/// it has one, else from a route lookup, whose answer the entry then keeps.
#[inline(always)]
pub(crate) fn send<H: Hook>(
    ctx: &H,
    packet: &Packet,
    flow: *mut FlowValue,
) -> (H::Action, Option<Verdict>) {
    send_as(ctx, packet, flow, H::route_len(packet))
}

/// [`send`] for a packet the SYN proxy built, `ip_len` bytes from the IP
/// header on (the parsed packet's length is the one it replaced).
#[inline(always)]
pub(crate) fn send_built<H: Hook>(
    ctx: &H,
    packet: &Packet,
    flow: *mut FlowValue,
    ip_len: usize,
) -> (H::Action, Option<Verdict>) {
    let len = if H::route_len(packet) == 0 {
        0
    } else {
        ip_len as u16
    };
    send_as(ctx, packet, flow, len)
}

#[inline(never)]
fn send_as<H: Hook>(
    ctx: &H,
    packet: &Packet,
    flow: *mut FlowValue,
    route_len: u16,
) -> (H::Action, Option<Verdict>) {
    // SAFETY: a flow map entry or this CPU's scratch slot.
    let flow = unsafe { &mut *flow };
    if flow.hop_ifindex != 0 {
        return ctx.redirect(flow.hop_ifindex, &flow.hop_dmac, &flow.hop_smac);
    }
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    let leaving = Leaving::flow(flow, route_len);
    let rc = route(&mut params, ctx, ctx.ingress(), packet, &leaving);
    if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 {
        return (H::neighbor_pending(&params), Some(Verdict::NeighborPending));
    }
    if rc == BPF_FIB_LKUP_RET_FRAG_NEEDED as i64 {
        return (H::PASS, Some(Verdict::TooBig));
    }
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        // No route, a local destination: the kernel decides.
        return (H::PASS, Some(Verdict::NoRoute));
    }
    let sent = ctx.redirect(params.ifindex, &params.dmac, &params.smac);
    if sent.1.is_none() {
        remember_hop(flow, &params);
    }
    sent
}

/// Whether `ifindex` is one of the edge interfaces (those the agent
/// attached XDP to, and so checks access rules on).
#[inline(always)]
pub fn is_edge_interface(ifindex: u32) -> bool {
    TX_PORTS.get_ifindex(ifindex).is_some()
}
