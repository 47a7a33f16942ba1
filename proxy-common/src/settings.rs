//! `SETTINGS`: the edge-wide NAT parameters the agent writes once per
//! config, and which hook takes each protocol.

use crate::net::ip_proto;

flags! {
    /// `Settings::flags`.
    pub struct SettingsFlags {
        /// `source_v4` is set (IPv4 origins can be NATed to).
        const HAS_SOURCE_V4 = 1 << 0;
        /// `source_v6` is set.
        const HAS_SOURCE_V6 = 1 << 1;
        /// XDP leaves TCP to TC. No TCP app's fast path runs in XDP and no
        /// TCP app has `ip_firewall`, so XDP has nothing to do for TCP: it
        /// passes TCP at once, without a lookup or a count, and the TC
        /// program takes every TCP fast-path app and counts what it leaves
        /// alone.
        const TC_ONLY_TCP = 1 << 2;
        /// The same for UDP.
        const TC_ONLY_UDP = 1 << 3;
        /// XDP is not attached (no app needs it) and TC is: TC drops every
        /// unlisted packet (`edge.unlisted: drop`), whatever its protocol.
        const UNLISTED_AT_TC = 1 << 4;
    }
}

/// The `TC_ONLY_*` flag of an IP protocol (none for others).
#[inline(always)]
pub const fn tc_only_flag(proto: u8) -> SettingsFlags {
    match proto {
        ip_proto::TCP => SettingsFlags::TC_ONLY_TCP,
        ip_proto::UDP => SettingsFlags::TC_ONLY_UDP,
        _ => SettingsFlags::NONE,
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
    pub flags: SettingsFlags,
    /// `edge.flow_timeouts.tcp_new` and `udp_unreplied` in seconds: an
    /// embryonic flow's reverse half idle this long may be taken over by a
    /// new flow (its NAT port comes back without waiting for the agent).
    pub tcp_new_s: u32,
    pub udp_unreplied_s: u32,
}

user_pod!(Settings);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<Settings>(), 16 + 16 + 2 + 2 + 4 + 4 + 4);
    }

    #[test]
    fn tc_only_flags_are_per_protocol() {
        assert_eq!(tc_only_flag(ip_proto::TCP), SettingsFlags::TC_ONLY_TCP);
        assert_eq!(tc_only_flag(ip_proto::UDP), SettingsFlags::TC_ONLY_UDP);
        assert_eq!(tc_only_flag(crate::net::IPPROTO_ICMP), SettingsFlags::NONE);
        // What XDP asks: `intersects`, so a protocol without a flag is
        // never TC's alone, whatever flags are set.
        let all = SettingsFlags::TC_ONLY_TCP | SettingsFlags::TC_ONLY_UDP;
        assert!(!all.intersects(tc_only_flag(crate::net::IPPROTO_ICMP)));
        assert!(all.contains(SettingsFlags::NONE));
    }
}
