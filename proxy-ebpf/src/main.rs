//! The XDP program: one thin entry that reads as the packet path.
//!
//! parse -> listener lookup -> (access rules, NAT: later stages) -> count.
//! Every packet ends with a [`Verdict`] that is counted per app (or in the
//! global row), so operators see why each packet went where it went.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod apps;
#[cfg(target_arch = "bpf")]
mod listener;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod stats;

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
    use aya_log_ebpf::warn;
    use proxy_common::{GLOBAL_SLOT, Verdict};

    use crate::{apps, listener, parse, stats};

    #[xdp]
    pub fn proxy(ctx: XdpContext) -> u32 {
        let frame_len = (ctx.data_end() - ctx.data()) as u64;
        let (slot, verdict) = classify(&ctx);
        stats::count(slot, verdict, frame_len);
        // Every verdict so far hands the packet to the edge's own stack: the
        // agent's sockets (slow path) or the kernel's normal handling.
        xdp_action::XDP_PASS
    }

    /// Decides what a packet is: which app (counter slot) and why.
    #[inline(always)]
    fn classify(ctx: &XdpContext) -> (u32, Verdict) {
        let packet = match parse::parse(ctx) {
            Ok(packet) => packet,
            Err(verdict) => return (GLOBAL_SLOT, verdict),
        };
        let Some(app) = listener::lookup(&packet) else {
            return (GLOBAL_SLOT, Verdict::NoListener);
        };
        if apps::app_for(app, packet.proto).is_none() {
            // Rare: only while the agent rewrites the maps, or on an agent bug.
            warn!(ctx, "listener points at app slot {} with no such app", app);
            return (GLOBAL_SLOT, Verdict::NoListener);
        }
        (app, Verdict::ToAgent)
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
