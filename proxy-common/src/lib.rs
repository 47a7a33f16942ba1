//! Every BPF map key and value, defined once for the XDP program and the agent.
//!
//! Layouts are `#[repr(C)]` with explicit padding fields so that both sides
//! agree byte for byte and no uninitialised padding ever reaches a hash key.
//! Addresses are 16 bytes: IPv6 as is, IPv4 mapped into IPv6
//! (`::ffff:a.b.c.d`), always in network byte order. Ports are in host order.
//!
//! One module per concern; every item is re-exported here, so its path is
//! `proxy_common::Item` whichever module holds it.
#![no_std]

#[cfg(test)]
extern crate std;

/// Implements `aya::Pod` for map layouts on the agent side (feature `user`).
macro_rules! user_pod {
    ($($layout:ty),* $(,)?) => {
        $(
            // SAFETY: plain #[repr(C)] data without implicit padding (each
            // module's `layouts_have_no_implicit_padding` test); every bit
            // pattern is a valid value.
            #[cfg(feature = "user")]
            unsafe impl aya::Pod for $layout {}
        )*
    };
}

mod app;
pub mod csum;
mod flow;
mod limits;
mod names;
mod net;
mod rule;
mod settings;
mod stats;
mod verdict;

pub use app::*;
pub use flow::*;
pub use limits::*;
pub use names::*;
pub use net::*;
pub use rule::*;
pub use settings::*;
pub use stats::*;
pub use verdict::*;
