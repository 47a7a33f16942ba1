//! From the config model to the kernel: map contents (pure), loading and
//! attaching (kernel), counters (reading).
pub mod conntrack_gc;
pub mod loader;
pub mod maps;
pub mod ring;
pub mod rules;
pub mod stats;
