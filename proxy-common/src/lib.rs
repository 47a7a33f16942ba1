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

/// A `u32` bit set in a map value as a `repr(transparent)` newtype: the
/// bits are named, a flag of one set cannot be tested against another's,
/// and the layout stays a plain `u32`.
macro_rules! flags {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$flag_meta:meta])* const $flag:ident = $bit:expr; )*
        }
    ) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
        pub struct $name(pub u32);

        impl $name {
            pub const NONE: Self = Self(0);
            $( $(#[$flag_meta])* pub const $flag: Self = Self($bit); )*

            /// Whether every bit of `other` is set (true for `NONE`).
            #[inline(always)]
            pub const fn contains(self, other: Self) -> bool {
                self.0 & other.0 == other.0
            }

            /// Whether any bit of `other` is set (false for `NONE`).
            #[inline(always)]
            pub const fn intersects(self, other: Self) -> bool {
                self.0 & other.0 != 0
            }

            /// The bits set in both.
            #[inline(always)]
            pub const fn and(self, other: Self) -> Self {
                Self(self.0 & other.0)
            }
        }

        impl core::ops::BitOr for $name {
            type Output = Self;
            #[inline(always)]
            fn bitor(self, other: Self) -> Self {
                Self(self.0 | other.0)
            }
        }

        impl core::ops::BitOrAssign for $name {
            #[inline(always)]
            fn bitor_assign(&mut self, other: Self) {
                self.0 |= other.0;
            }
        }
    };
}

mod app;
mod client;
pub mod csum;
mod flow;
mod limits;
mod names;
mod net;
mod pool;
mod rule;
mod settings;
mod stats;
mod verdict;

pub use app::*;
pub use client::*;
pub use flow::*;
pub use limits::*;
pub use names::*;
pub use net::*;
pub use pool::*;
pub use rule::*;
pub use settings::*;
pub use stats::*;
pub use verdict::*;
