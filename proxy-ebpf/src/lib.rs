//! The stages the eBPF objects share: parsing, the listener, app and flow
//! tables, access rules, NAT and the send, the counters, and the packet
//! path written once over a hook layer ([`hook`]: XDP, TC ingress). The
//! objects are the crate's binaries, one per purpose: `proxy` (the agent's
//! programs and maps) and `bench` (the benchmark's baselines).
#![no_std]

pub mod apps;
pub mod client;
pub mod conntrack;
pub mod forward;
pub mod hook;
pub mod listener;
pub mod nat;
pub mod parse;
pub mod path;
pub mod pools;
pub mod rules;
pub mod stats;
pub mod synproxy;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic; this is never called.
    loop {}
}

/// Every object's license section: GPL-only helpers need a GPL-compatible one.
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
