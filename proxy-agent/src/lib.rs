//! The agent of a self-hosted Spectrum: turns a config into BPF map contents,
//! loads and attaches the fast path (XDP, TC ingress), and runs the agent
//! path for apps the kernel cannot proxy alone (TLS, PROXY and SPP headers).
//!
//! The tree is the architecture (README's "Layout" walks through it):
//! `config` (schema -> validated model, edits), `agent` (the run loop and
//! live changes as ordered steps), `kernel` (model -> map contents, loading,
//! counters, flow expiry), `access` (rules and GeoIP), `proxy` (the agent's
//! TCP and UDP paths: TLS, PROXY/SPP headers, origins), `dns`, `api`,
//! `metrics`, `cli`, `files` (the safe reader of files the config
//! names). Dependencies point down: `config` knows nothing of maps
//! or sockets; `kernel::maps` is a pure function of the config model; only
//! `kernel::loader` talks to the kernel.

pub mod access;
pub mod agent;
pub mod api;
pub mod cli;
pub mod config;
pub mod dns;
pub mod files;
pub mod kernel;
pub mod metrics;
pub mod preflight;
pub mod proxy;

/// The agent's eBPF object (`proxy`: XDP, TC ingress and sk_lookup
/// programs and their maps), built from `proxy-ebpf` by this crate's build
/// script. The benchmark's object (`bench`) is built beside it and embedded
/// by `bench-helper` alone.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/proxy"));
