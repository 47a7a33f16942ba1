//! The agent of a self-hosted Spectrum: turns a config into BPF map contents,
//! loads and attaches the fast path (XDP, TC ingress), and runs the agent
//! path for apps the kernel cannot proxy alone (TLS, PROXY and SPP headers).
//!
//! Dependencies point down: `config` knows nothing of maps or sockets;
//! `datapath::maps` is a pure function of the config model; only
//! `datapath::loader` talks to the kernel.

pub mod access;
pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod datapath;
pub mod dns;
pub mod geoip;
/// The change requests and slot plan under their old path: the API names
/// them `crate::live::…`.
pub mod live {
    pub use crate::agent::plan::*;
}
pub mod metrics;
pub mod origin;
pub mod preflight;
pub mod proxy_header;
pub mod routes;
pub mod tcp;
pub mod tls;
pub mod udp;

/// The agent's eBPF object (`proxy`: XDP, TC ingress and sk_lookup
/// programs and their maps), built from `proxy-ebpf` by this crate's build
/// script. The benchmark's object (`bench`) is built beside it and embedded
/// by `bench-helper` alone.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/proxy"));
