//! `SETTINGS`: the edge-wide NAT parameters the agent writes once per
//! config, and which hook takes each protocol.

use crate::net::ip_proto;

/// `Settings::flags`: `source_v4` is set (IPv4 origins can be NATed to).
pub const SETTINGS_HAS_SOURCE_V4: u32 = 1 << 0;
/// `Settings::flags`: `source_v6` is set.
pub const SETTINGS_HAS_SOURCE_V6: u32 = 1 << 1;

/// `Settings::flags`: XDP leaves TCP to TC. No TCP app's fast path runs
/// in XDP and no TCP app has `ip_firewall`, so XDP has nothing to do for
/// TCP: it passes TCP at once, without a lookup or a count, and the TC
/// program takes every TCP fast-path app and counts what it leaves alone.
pub const SETTINGS_TC_ONLY_TCP: u32 = 1 << 2;
/// `Settings::flags`: the same for UDP.
pub const SETTINGS_TC_ONLY_UDP: u32 = 1 << 3;

/// The `SETTINGS_TC_ONLY_*` flag of an IP protocol (0 for others).
#[inline(always)]
pub const fn tc_only_flag(proto: u8) -> u32 {
    match proto {
        ip_proto::TCP => SETTINGS_TC_ONLY_TCP,
        ip_proto::UDP => SETTINGS_TC_ONLY_UDP,
        _ => 0,
    }
}

/// Value of `SETTINGS` (an array of one): edge-wide NAT parameters.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Settings {
    /// The edge's origin-facing source addresses (16-byte form).
    pub source_v4: [u8; 16],
    pub source_v6: [u8; 16],
    /// Source ports the NAT may use toward origins (inclusive).
    pub nat_port_min: u16,
    pub nat_port_max: u16,
    pub flags: u32,
}

user_pod!(Settings);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<Settings>(), 16 + 16 + 2 + 2 + 4);
    }

    #[test]
    fn tc_only_flags_are_per_protocol() {
        assert_eq!(tc_only_flag(ip_proto::TCP), SETTINGS_TC_ONLY_TCP);
        assert_eq!(tc_only_flag(ip_proto::UDP), SETTINGS_TC_ONLY_UDP);
        assert_eq!(tc_only_flag(crate::net::IPPROTO_ICMP), 0);
    }
}
