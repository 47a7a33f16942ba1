//! The XDP program: one thin entry that reads as the packet path.
//!
//! a protocol TC ingress has alone? up to TC, uncounted (`tc.rs`)
//! parse -> tracked flow? rewrite + forward (a TC flow: up to TC, `to_tc`)
//!       -> listener -> app -> access rules (if ip_firewall): blocked? drop
//!                          -> fast path at TC? up to TC ingress (`tc.rs`)
//!                          -> fast path? open flow, rewrite + forward
//!                          -> otherwise hand to the agent (XDP_PASS)
//!
//! Every packet XDP does not leave to TC ends with a [`Verdict`] that is
//! counted per app (or in the global row), so operators see why each packet
//! went where it went.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod apps;
#[cfg(target_arch = "bpf")]
mod conntrack;
#[cfg(target_arch = "bpf")]
mod forward;
#[cfg(target_arch = "bpf")]
mod listener;
#[cfg(target_arch = "bpf")]
mod nat;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod router;
#[cfg(target_arch = "bpf")]
mod rules;
#[cfg(target_arch = "bpf")]
mod sink;
#[cfg(target_arch = "bpf")]
mod stats;
#[cfg(target_arch = "bpf")]
mod steer;
#[cfg(target_arch = "bpf")]
mod tc;
#[cfg(target_arch = "bpf")]
mod tc_router;

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
    use aya_log_ebpf::warn;
    use proxy_common::{
        APP_FLAG_FAST_PATH, APP_FLAG_IP_FIREWALL, APP_FLAG_TC, DIR_TO_ORIGIN, FlowValue,
        GLOBAL_SLOT, HOOK_TC, HOOK_XDP, Verdict,
    };

    use crate::{
        apps, conntrack, forward, listener, nat,
        parse::{self, Packet},
        rules, stats,
    };

    #[xdp]
    pub fn proxy(ctx: XdpContext) -> u32 {
        let frame_len = (ctx.data_end() - ctx.data()) as u64;
        match handle(&ctx) {
            Some((slot, verdict, action)) => {
                stats::count(slot, verdict, frame_len);
                action
            }
            None => xdp_action::XDP_PASS,
        }
    }

    /// Decides what to do with a packet: (counter slot, verdict, XDP
    /// action), or None for a packet left to TC ingress, which counts it.
    #[inline(always)]
    fn handle(ctx: &XdpContext) -> Option<(u32, Verdict, u32)> {
        let pass = xdp_action::XDP_PASS;
        // No app of this protocol needs XDP (no fast path here, no access
        // rules): TC ingress takes it whole, after GRO, and this frame costs
        // one read and no lookup. TC leaves tagged frames alone, so they go
        // on here.
        if parse::untagged_l4_proto(ctx).is_some_and(apps::tc_only) {
            return None;
        }
        let packet = match parse::parse(ctx) {
            Ok(packet) => packet,
            Err(verdict) => return Some((GLOBAL_SLOT, verdict, pass)),
        };
        // Flows exist for untagged frames only: a tagged frame with the same
        // tuple is not one of them.
        let tagged = !packet.untagged();
        if !tagged && let Some(flow) = conntrack::lookup(packet) {
            // SAFETY: a flow map entry.
            let (hook, app) = unsafe { ((*flow).hook, (*flow).app) };
            if hook == HOOK_TC {
                return Some((app, Verdict::ToTc, pass));
            }
            if conntrack::touch(flow, packet) {
                return Some(rewrite_and_send(ctx, packet, flow));
            }
            // Its other half belongs to another flow now: this one is gone.
            return Some((GLOBAL_SLOT, Verdict::NoFlow, pass));
        }
        let Some(index) = listener::lookup(packet) else {
            return Some((GLOBAL_SLOT, Verdict::NoListener, pass));
        };
        let Some(app) = apps::app_for(index, packet.proto) else {
            // Rare: only while the agent rewrites the maps, or on an agent bug.
            warn!(
                ctx,
                "listener points at app slot {} with no such app", index
            );
            return Some((GLOBAL_SLOT, Verdict::NoListener, pass));
        };
        // Before any flow or socket exists. A flow opened earlier is cut by
        // the agent when a new rule set blocks its client.
        if app.flags & APP_FLAG_IP_FIREWALL != 0
            && let Some(verdict) = rules::check(packet, index)
        {
            return Some((index, verdict, xdp_action::XDP_DROP));
        }
        if app.flags & APP_FLAG_FAST_PATH == 0 || tagged {
            return Some((index, Verdict::ToAgent, pass));
        }
        if app.flags & APP_FLAG_TC != 0 {
            return Some((index, Verdict::ToTc, pass));
        }
        if packet.proto == proxy_common::ip_proto::TCP && !packet.is_tcp_open() {
            return Some((index, Verdict::NoFlow, pass));
        }
        Some(match conntrack::open(packet, index, app, HOOK_XDP) {
            Ok(flow) => {
                stats::count(index, Verdict::FlowOpened, 0);
                rewrite_and_send(ctx, packet, flow)
            }
            Err(Verdict::NatFailed) => (index, Verdict::NatFailed, xdp_action::XDP_DROP),
            Err(verdict) => (index, verdict, pass),
        })
    }

    #[inline(always)]
    fn rewrite_and_send(
        ctx: &XdpContext,
        packet: &Packet,
        flow: *mut FlowValue,
    ) -> (u32, Verdict, u32) {
        // SAFETY: a flow map entry or this CPU's scratch slot.
        let (app, direction) = unsafe { ((*flow).app, (*flow).direction) };
        // A failed rewrite has changed nothing: the stack may have it.
        if let Err(verdict) = nat::rewrite(ctx, packet, unsafe { &*flow }) {
            return (app, verdict, xdp_action::XDP_PASS);
        }
        let delivered = if direction == DIR_TO_ORIGIN {
            Verdict::ToOrigin
        } else {
            Verdict::ToClient
        };
        let (action, verdict) = forward::send(ctx, packet, flow);
        (app, verdict.unwrap_or(delivered), action)
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic; this is never called.
    loop {}
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
