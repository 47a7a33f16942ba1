//! The benchmark's object (`bench-helper`, not the agent): the minimal XDP
//! and TC-ingress routers, the XDP pass program and the origin's packet
//! sink. They share the stages they need (parsing, the route lookup, the
//! redirects) from `proxy_ebpf`. The library's maps come with it (bpf-linker
//! keeps every exported map), unused here; the agent's object has none of
//! this one's programs or maps.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

#[cfg(target_arch = "bpf")]
mod router;
#[cfg(target_arch = "bpf")]
mod sink;
#[cfg(target_arch = "bpf")]
mod tc_router;

// The panic handler and the license section come with the library.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
