//! `POOLS`, `UNLISTED_PASS` and `ORIGIN_SOURCES`: which destinations are the
//! edge's own (so a packet to one that no app serves is dropped, not left
//! to the kernel's RSTs and ICMP errors), which of them other listeners of
//! the agent (DNS, API) own, and the origin-facing source addresses the NAT
//! spreads flows over.

use crate::limits::MAX_ORIGIN_SOURCES;

/// Bits of a `POOLS` key before an IPv4 prefix: the 16-byte form maps
/// IPv4 into `::ffff:0:0/96`, so an IPv4 /p is stored as /(96 + p).
pub const POOL_V4_PREFIX_BITS: u32 = 96;

/// Value of `POOLS` (an LPM trie over 16-byte addresses): a prefix the
/// agent's apps take edge addresses from (`edge.address_pool`). Present
/// only when `edge.unlisted` is `drop`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PoolValue {
    /// Unused; a map value cannot be empty.
    pub _reserved: u32,
}

/// `ORIGIN_SOURCES` index of a family's source set.
#[inline(always)]
pub const fn source_index(ipv6: bool) -> u32 {
    ipv6 as u32
}

/// Value of `ORIGIN_SOURCES` (an array of two: IPv4, IPv6): the
/// origin-facing source addresses of one family. A flow takes the one its
/// tuple hash picks, so each address adds a whole NAT port range per
/// (origin, origin port).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SourceSet {
    /// How many of `addrs` are in use (0: this family cannot be NATed).
    pub count: u32,
    pub addrs: [[u8; 16]; MAX_ORIGIN_SOURCES as usize],
}

impl SourceSet {
    /// The address a flow whose tuple hashes to `pick` uses (its high bits
    /// choose, as `scale` does in the kernel), if any.
    #[inline(always)]
    pub fn pick(&self, pick: u32) -> Option<&[u8; 16]> {
        let count = if self.count > MAX_ORIGIN_SOURCES {
            MAX_ORIGIN_SOURCES
        } else {
            self.count
        };
        let slot = ((pick as u64 * count as u64) >> 32) as usize;
        self.addrs.get(slot).filter(|_| count > 0)
    }
}

user_pod!(PoolValue, SourceSet);

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<PoolValue>(), 4);
        assert_eq!(size_of::<SourceSet>(), 4 + 16 * MAX_ORIGIN_SOURCES as usize);
    }

    #[test]
    fn pick_spreads_over_the_sources_in_use_only() {
        let mut set = SourceSet::default();
        assert_eq!(set.pick(0), None);
        set.count = 2;
        set.addrs[0] = [1; 16];
        set.addrs[1] = [2; 16];
        assert_eq!(set.pick(0), Some(&[1; 16]));
        assert_eq!(set.pick(u32::MAX / 2), Some(&[1; 16]));
        assert_eq!(set.pick(u32::MAX / 2 + 1), Some(&[2; 16]));
        assert_eq!(set.pick(u32::MAX), Some(&[2; 16]));
        // A count past the array (an agent bug) stays inside it.
        set.count = 1000;
        assert!(set.pick(u32::MAX).is_some());
    }
}
