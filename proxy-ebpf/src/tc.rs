//! The fast path's NAT at TC ingress, for apps whose `datapath` is `tc`
//! (and TCP apps under `auto`). When XDP has work for their protocol (an
//! app of it has its fast path in XDP, or access rules), it has applied
//! the rules and passed these packets up (`to_tc`); here they arrive after
//! GRO, so one program run moves up to 64 KB of a TCP stream instead of
//! one frame.
//! The same parser, listener and app lookups, conntrack and range offsets
//! as XDP; only the rewrite (the kernel's checksum helpers) and the send
//! (`bpf_redirect`, `bpf_redirect_neigh`) are TC's own.
//!
//! When no app of a protocol needs XDP (`SETTINGS_TC_ONLY_*`), XDP passes
//! that protocol at once, and this program takes every fast-path app of it
//! and counts what it leaves to the stack.
//!
//! parse -> tracked flow? rewrite + send
//!       -> listener -> TC app (or any fast-path app of a protocol TC has
//!          alone) -> open flow (TCP: SYN only), rewrite + send
//!       -> anything else: TC_ACT_OK, counted only for a protocol TC has
//!          alone (otherwise XDP counted it)
use aya_ebpf::{
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    macros::classifier,
    programs::TcContext,
};
use proxy_common::{
    APP_FLAG_FAST_PATH, APP_FLAG_TC, DIR_TO_ORIGIN, FlowValue, GLOBAL_SLOT, HOOK_TC, Verdict,
    ip_proto,
};

use crate::{
    apps, conntrack, forward, listener, nat,
    parse::{self, MAX_HEADER_OFFSET, Packet},
    stats,
};

const PASS: i32 = TC_ACT_OK;

#[classifier]
pub fn proxy_tc(ctx: TcContext) -> i32 {
    match handle(&ctx) {
        Some((slot, verdict, action)) => {
            stats::count(slot, verdict, ctx.len() as u64);
            action
        }
        None => PASS,
    }
}

/// What to do with a packet: (counter slot, verdict, TC action), or None
/// for a packet this hook leaves alone.
#[inline(always)]
fn handle(ctx: &TcContext) -> Option<(u32, Verdict, i32)> {
    // SAFETY: the context of a TC program.
    let vlan_present = unsafe { (*ctx.skb.skb).vlan_present };
    // The kernel strips a VLAN tag into the skb before TC ingress; such
    // packets are not the fast path's (XDP sends them to the agent).
    if vlan_present != 0 {
        return None;
    }
    // Headers in the linear part, where direct access reaches them.
    let _ = ctx.pull_data((MAX_HEADER_OFFSET as u32).min(ctx.len()));
    let packet = parse::parse(ctx).ok()?;
    if let Some(flow) = conntrack::lookup(packet) {
        // Whichever hook opened it. XDP passes up the packets of a flow it
        // does not rewrite: a TC flow's, and all of a protocol TC has alone
        // (flows XDP opened before a live change included). The NAT is the
        // same at both hooks.
        if !conntrack::touch(flow, packet) {
            return None;
        }
        return Some(rewrite_and_send(ctx, packet, flow));
    }
    let alone = apps::tc_only(packet.proto);
    let Some(index) = listener::lookup(packet) else {
        return alone.then_some((GLOBAL_SLOT, Verdict::NoListener, PASS));
    };
    let app = apps::app_for(index, packet.proto)?;
    if app.flags & APP_FLAG_FAST_PATH == 0 {
        return alone.then_some((index, Verdict::ToAgent, PASS));
    }
    // An XDP app's packet, passed up for XDP's own reasons.
    if app.flags & APP_FLAG_TC == 0 && !alone {
        return None;
    }
    if packet.proto == ip_proto::TCP && !packet.is_tcp_open() {
        return Some((index, Verdict::NoFlow, PASS));
    }
    match conntrack::open(packet, index, app, HOOK_TC) {
        Ok(flow) => {
            stats::count(index, Verdict::FlowOpenedTc, 0);
            Some(rewrite_and_send(ctx, packet, flow))
        }
        // As in XDP: no NAT port, no way on.
        Err(Verdict::NatFailed) => Some((index, Verdict::NatFailed, TC_ACT_SHOT)),
        Err(verdict) => Some((index, verdict, PASS)),
    }
}

#[inline(always)]
fn rewrite_and_send(ctx: &TcContext, packet: &Packet, flow: *mut FlowValue) -> (u32, Verdict, i32) {
    // SAFETY: a flow map entry or this CPU's scratch slot.
    let (app, direction) = unsafe { ((*flow).app, (*flow).direction) };
    if let Err(verdict) = nat::rewrite_tc(ctx, packet, unsafe { &*flow }) {
        return (app, verdict, PASS);
    }
    let delivered = if direction == DIR_TO_ORIGIN {
        Verdict::ToOrigin
    } else {
        Verdict::ToClient
    };
    let (action, verdict) = forward::send_tc(ctx, packet, flow);
    (app, verdict.unwrap_or(delivered), action)
}
