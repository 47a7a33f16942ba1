//! From the config model to the kernel: map contents (pure), loading and
//! attaching (kernel), counters, flow expiry and the kernel's ring buffers.
//! The packet path through XDP and TC, the maps and the verdicts:
//! `docs/datapath.md`.
pub mod clients;
pub mod conntrack_gc;
pub mod loader;
pub mod maps;
pub mod nat_use;
pub mod offload;
pub mod ring;
pub mod rst;
pub mod rules;
pub mod stats;
pub mod sysctl;
