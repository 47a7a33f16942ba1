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
    use proxy_ebpf::{path, synproxy};

    #[xdp]
    pub fn proxy(ctx: XdpContext) -> u32 {
        path::run(&ctx)
    }

    #[classifier]
    pub fn proxy_tc(ctx: TcContext) -> i32 {
        path::run(&ctx)
    }

    /// Tail-called from `proxy` (`SYN_PROXY_XDP`).
    #[xdp]
    pub fn syn_proxy(ctx: XdpContext) -> u32 {
        synproxy::run(&ctx)
    }

    /// Tail-called from `proxy_tc` (`SYN_PROXY_TC`).
    #[classifier]
    pub fn syn_proxy_tc(ctx: TcContext) -> i32 {
        synproxy::run(&ctx)
    }
}

// The panic handler and the license section come with the library.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
