//! The zone's IP access rules: `RULES` (one LPM trie of tagged prefixes),
//! `RULE_STATE` (the generation in force) and the `BLOCK_EVENTS` records
//! of what they dropped.

/// `RuleKey::action`.
pub const RULE_ALLOW: u8 = 1;
pub const RULE_BLOCK: u8 = 2;
/// `RuleKey::family`.
pub const RULE_FAMILY_V4: u8 = 4;
pub const RULE_FAMILY_V6: u8 = 6;
/// Bits of `RuleKey` before the address: generation, action, family, pad.
pub const RULE_KEY_TAG_BITS: u32 = 32;

/// Data of a `RULES` (LPM trie) key. One trie holds every access-rule prefix,
/// tagged: a lookup only matches prefixes of its own generation, action and
/// address family, because the tag is part of every stored prefix. The
/// address is in the 16-byte form (IPv4 mapped), so an IPv4 prefix /p is
/// stored with length `RULE_KEY_TAG_BITS + 96 + p`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RuleKey {
    pub generation: u8,
    pub action: u8,
    pub family: u8,
    pub _pad: u8,
    pub addr: [u8; 16],
}

impl RuleKey {
    #[inline(always)]
    pub const fn new(generation: u8, action: u8, ipv6: bool, addr: [u8; 16]) -> Self {
        Self {
            generation,
            action,
            family: if ipv6 { RULE_FAMILY_V6 } else { RULE_FAMILY_V4 },
            _pad: 0,
            addr,
        }
    }

    /// The LPM prefix length of an address prefix of `bits` (counted in its
    /// own family: 0-32 for IPv4, 0-128 for IPv6).
    #[inline(always)]
    pub const fn prefix_len(ipv6: bool, bits: u8) -> u32 {
        RULE_KEY_TAG_BITS + if ipv6 { 0 } else { 96 } + bits as u32
    }

    /// The prefix length that looks up one full address.
    pub const FULL_LEN: u32 = RULE_KEY_TAG_BITS + 128;
}

/// `RuleValue::kind`: what the matching rule targeted.
pub const RULE_KIND_IP: u8 = 0;
pub const RULE_KIND_RANGE: u8 = 1;
pub const RULE_KIND_ASN: u8 = 2;
pub const RULE_KIND_COUNTRY: u8 = 3;

/// Value of `RULES`: which rule a prefix came from.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RuleValue {
    /// Position of the rule in the config's `access_rules`.
    pub rule: u32,
    pub kind: u8,
    pub _pad: [u8; 3],
}

/// Value of `RULE_STATE` (an array of one): the rule generation in force.
/// Switching generations is one update of this entry, so a half-loaded rule
/// set is never in force.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RuleState {
    pub generation: u8,
    /// Whether the generation has allow / block prefixes at all (a packet
    /// skips the lookups it cannot match).
    pub has_allow: u8,
    pub has_block: u8,
    pub _pad: u8,
}

/// One record of `BLOCK_EVENTS`: a packet dropped by an access rule
/// (sampled: see `BLOCK_EVENT_GAP_NS`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct BlockEvent {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub app: u32,
    pub rule: u32,
    /// The `Verdict` (one of the `Blocked*`).
    pub verdict: u8,
    pub proto: u8,
    pub _pad: [u8; 2],
}

user_pod!(RuleKey, RuleValue, RuleState, BlockEvent);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verdict;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<RuleKey>(), 4 + 16);
        assert_eq!(size_of::<RuleValue>(), 4 + 1 + 3);
        assert_eq!(size_of::<RuleState>(), 4);
        assert_eq!(size_of::<BlockEvent>(), 16 + 16 + 2 + 2 + 4 + 4 + 1 + 1 + 2);
    }

    #[test]
    fn rule_prefixes_cover_the_tag_and_the_family_bits() {
        // An IPv4 /0 rule still pins the tag and the mapped prefix.
        assert_eq!(RuleKey::prefix_len(false, 0), 32 + 96);
        assert_eq!(RuleKey::prefix_len(false, 32), RuleKey::FULL_LEN);
        assert_eq!(RuleKey::prefix_len(true, 128), RuleKey::FULL_LEN);
        for kind in [
            RULE_KIND_IP,
            RULE_KIND_RANGE,
            RULE_KIND_ASN,
            RULE_KIND_COUNTRY,
        ] {
            assert!(Verdict::blocked(kind).name().starts_with("blocked_"));
        }
    }
}
