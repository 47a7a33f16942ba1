//! A minimal XDP router for the benchmark's baseline: route lookup in the
//! kernel's FIB, new MACs, redirect. No listener, no NAT, no counters: the
//! ceiling any XDP design reaches on a given machine.
use aya_ebpf::{
    bindings::{BPF_FIB_LKUP_RET_SUCCESS, bpf_fib_lookup as FibParams, xdp_action},
    macros::xdp,
    programs::XdpContext,
};

use proxy_ebpf::{forward, hook::Hook as _, parse};

#[xdp]
pub fn router(ctx: XdpContext) -> u32 {
    let Ok(packet) = parse::parse(&ctx) else {
        return xdp_action::XDP_PASS;
    };
    if !packet.untagged() {
        return xdp_action::XDP_PASS;
    }
    let mut params: FibParams = unsafe { core::mem::zeroed() };
    let leaving = forward::Leaving {
        src: &packet.src,
        dst: &packet.dst,
        src_port: packet.src_port,
        dst_port: packet.dst_port,
        tot_len: packet.ip_len,
    };
    let rc = forward::route(
        &mut params,
        &ctx,
        ctx.ingress_ifindex() as u32,
        packet,
        &leaving,
    );
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        return xdp_action::XDP_PASS;
    }
    ctx.redirect(params.ifindex, &params.dmac, &params.smac).0
}

/// Passes every packet: attached beside the TC router, it measures what
/// having any XDP program on an interface costs (on veth, the frames go
/// through the XDP receive path before GRO), which is the ceiling of a TC
/// design that keeps access rules in XDP.
#[xdp]
pub fn pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
