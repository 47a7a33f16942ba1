//! The agent's object: the packet path at XDP and at TC ingress (one path,
//! `proxy_ebpf::path`, over each hook) and the sk_lookup program that
//! steers agent-path apps to the agent's sockets. Only these programs'
//! maps are in it.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod steer;

#[cfg(target_arch = "bpf")]
mod program {
    use aya_ebpf::{
        macros::{classifier, xdp},
        programs::{TcContext, XdpContext},
    };
    use proxy_ebpf::path;

    #[xdp]
    pub fn proxy(ctx: XdpContext) -> u32 {
        path::run(&ctx)
    }

    #[classifier]
    pub fn proxy_tc(ctx: TcContext) -> i32 {
        path::run(&ctx)
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
