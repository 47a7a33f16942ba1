//! Access rules -> the prefixes of the kernel's `RULES` trie. Pure: no
//! kernel, no I/O (GeoIP databases are read by `crate::access::geoip` beforehand).
//!
//! Each rule becomes a set of prefixes (an IP: one /32 or /128; a range:
//! itself; an ASN or a country: the database's networks), merged where
//! adjacent or overlapping. A prefix named by two rules of the same action
//! keeps the first rule. Allow and block prefixes live apart: the kernel
//! drops a packet when its source is under a block prefix and under no
//! allow prefix, whatever the prefixes' lengths.
use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use proxy_common::{
    MAX_RULE_PREFIXES, RULE_ALLOW, RULE_BLOCK, RULE_KIND_ASN, RULE_KIND_COUNTRY, RULE_KIND_IP,
    RULE_KIND_RANGE, RuleKey, RuleValue,
};

use super::maps::addr16;
use crate::{
    access::geoip::GeoPrefixes,
    config::model::{AccessRule, RuleAction, RuleTarget},
};

/// The prefixes of one rule set, ready for the kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSet {
    pub allow: BTreeMap<IpNet, RuleValue>,
    pub block: BTreeMap<IpNet, RuleValue>,
    /// Per rule (by position in `access_rules`): prefixes before and after
    /// merging, for the log.
    pub per_rule: Vec<RulePrefixes>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RulePrefixes {
    pub listed: usize,
    pub merged: usize,
}

impl RuleSet {
    pub fn len(&self) -> usize {
        self.allow.len() + self.block.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `(action, prefix, value)` for every prefix.
    pub fn entries(&self) -> impl Iterator<Item = (u8, &IpNet, &RuleValue)> {
        let allow = self.allow.iter().map(|(n, v)| (RULE_ALLOW, n, v));
        let block = self.block.iter().map(|(n, v)| (RULE_BLOCK, n, v));
        allow.chain(block)
    }
}

/// More prefixes than one generation of the trie may hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the access rules expand to {prefixes} prefixes; the data path holds at most \
     {MAX_PREFIXES_PER_GENERATION}"
)]
pub struct TooManyPrefixes {
    pub prefixes: usize,
}

/// Half the trie: a new rule set is loaded beside the one in force.
pub const MAX_PREFIXES_PER_GENERATION: usize = MAX_RULE_PREFIXES as usize / 2;

/// The prefixes of `rules`; `geo` holds the networks of the ASNs and
/// countries they name.
pub fn compile(rules: &[AccessRule], geo: &GeoPrefixes) -> Result<RuleSet, TooManyPrefixes> {
    let mut set = RuleSet::default();
    for (index, rule) in rules.iter().enumerate() {
        let (kind, listed): (u8, Vec<IpNet>) = match &rule.target {
            RuleTarget::Ip(ip) => (RULE_KIND_IP, vec![IpNet::from(*ip)]),
            RuleTarget::Range(net) => (RULE_KIND_RANGE, vec![net.trunc()]),
            RuleTarget::Asn(asn) => (
                RULE_KIND_ASN,
                geo.asns.get(asn).cloned().unwrap_or_default(),
            ),
            RuleTarget::Country(code) => (
                RULE_KIND_COUNTRY,
                geo.countries.get(code).cloned().unwrap_or_default(),
            ),
        };
        let merged = IpNet::aggregate(&listed);
        set.per_rule.push(RulePrefixes {
            listed: listed.len(),
            merged: merged.len(),
        });
        let table = match rule.action {
            RuleAction::Allow => &mut set.allow,
            RuleAction::Block => &mut set.block,
        };
        let value = RuleValue {
            rule: index as u32,
            kind,
            _pad: [0; 3],
        };
        for net in merged {
            table.entry(net).or_insert(value);
        }
        if set.len() > MAX_PREFIXES_PER_GENERATION {
            return Err(TooManyPrefixes {
                prefixes: set.len(),
            });
        }
    }
    Ok(set)
}

/// Which rule (if any) decides for `ip`: the allow match if there is one,
/// else the block match (longest prefix of each). What the kernel does;
/// a linear scan, for tests and small sets.
pub fn decide(set: &RuleSet, ip: IpAddr) -> Option<(u8, RuleValue)> {
    let longest = |table: &BTreeMap<IpNet, RuleValue>| {
        table
            .iter()
            .filter(|(net, _)| net.contains(&ip))
            .max_by_key(|(net, _)| net.prefix_len())
            .map(|(_, v)| *v)
    };
    longest(&set.allow)
        .map(|v| (RULE_ALLOW, v))
        .or_else(|| longest(&set.block).map(|v| (RULE_BLOCK, v)))
}

/// `(LPM prefix length, key)` of `net` in a generation's `action` table.
pub fn rule_key(generation: u8, action: u8, net: &IpNet) -> (u32, RuleKey) {
    let ipv6 = matches!(net, IpNet::V6(_));
    (
        RuleKey::prefix_len(ipv6, net.prefix_len()),
        RuleKey::new(generation, action, ipv6, addr16(net.network())),
    )
}

/// `(LPM prefix length, key)` that looks up `ip` in a generation's `action`
/// table.
pub fn lookup_key(generation: u8, action: u8, ip: IpAddr) -> (u32, RuleKey) {
    let key = RuleKey::new(generation, action, ip.is_ipv6(), addr16(ip));
    (RuleKey::FULL_LEN, key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: RuleAction, target: RuleTarget) -> AccessRule {
        AccessRule {
            id: String::new(),
            created_on: None,
            modified_on: None,
            action,
            target,
            notes: None,
        }
    }

    fn net(text: &str) -> IpNet {
        text.parse().unwrap()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn geo() -> GeoPrefixes {
        let mut geo = GeoPrefixes::default();
        geo.countries.insert(
            "FR".into(),
            vec![net("10.1.0.0/24"), net("10.1.1.0/24"), net("fd00:f::/48")],
        );
        geo.asns
            .insert(64500, vec![net("10.2.0.0/16"), net("10.2.7.0/24")]);
        geo
    }

    #[test]
    fn each_target_kind_becomes_prefixes_with_its_kind() {
        use RuleAction::Block;
        let rules = [
            rule(Block, RuleTarget::Ip(ip("10.0.0.1"))),
            rule(Block, RuleTarget::Ip(ip("fd00::1"))),
            rule(Block, RuleTarget::Range(net("10.3.0.9/16"))),
            rule(Block, RuleTarget::Asn(64500)),
            rule(Block, RuleTarget::Country("FR".into())),
        ];
        let set = compile(&rules, &geo()).unwrap();
        assert!(set.allow.is_empty());
        let kinds: Vec<(String, u8, u32)> = set
            .block
            .iter()
            .map(|(n, v)| (n.to_string(), v.kind, v.rule))
            .collect();
        assert_eq!(
            kinds,
            [
                ("10.0.0.1/32".to_string(), RULE_KIND_IP, 0),
                ("10.1.0.0/23".to_string(), RULE_KIND_COUNTRY, 4),
                ("10.2.0.0/16".to_string(), RULE_KIND_ASN, 3),
                ("10.3.0.0/16".to_string(), RULE_KIND_RANGE, 2),
                ("fd00::1/128".to_string(), RULE_KIND_IP, 1),
                ("fd00:f::/48".to_string(), RULE_KIND_COUNTRY, 4),
            ]
        );
        // Adjacent /24s merged, a /24 inside its /16 folded in.
        assert_eq!(
            set.per_rule[3],
            RulePrefixes {
                listed: 2,
                merged: 1
            }
        );
        assert_eq!(
            set.per_rule[4],
            RulePrefixes {
                listed: 3,
                merged: 2
            }
        );
    }

    #[test]
    fn allow_beats_block_at_any_specificity() {
        let rules = [
            rule(RuleAction::Block, RuleTarget::Ip(ip("10.2.0.5"))),
            rule(RuleAction::Allow, RuleTarget::Asn(64500)),
            rule(RuleAction::Block, RuleTarget::Range(net("10.0.0.0/8"))),
        ];
        let set = compile(&rules, &geo()).unwrap();
        // The /32 block is more specific than the /16 allow: allow still wins.
        assert_eq!(decide(&set, ip("10.2.0.5")).map(|d| d.0), Some(RULE_ALLOW));
        let (action, value) = decide(&set, ip("10.9.0.1")).unwrap();
        assert_eq!(
            (action, value.kind, value.rule),
            (RULE_BLOCK, RULE_KIND_RANGE, 2)
        );
        // No rule: allowed (no decision).
        assert_eq!(decide(&set, ip("192.0.2.1")), None);
        // IPv4 rules say nothing about IPv6 clients.
        assert_eq!(decide(&set, ip("::ffff:10.9.0.1")), None);
    }

    #[test]
    fn same_prefix_in_two_rules_keeps_the_first() {
        let rules = [
            rule(RuleAction::Block, RuleTarget::Range(net("10.1.0.0/23"))),
            rule(RuleAction::Block, RuleTarget::Country("FR".into())),
        ];
        let set = compile(&rules, &geo()).unwrap();
        assert_eq!(set.block[&net("10.1.0.0/23")].rule, 0);
        assert_eq!(set.block[&net("fd00:f::/48")].rule, 1);
    }

    #[test]
    fn unknown_country_or_asn_matches_nothing() {
        let rules = [rule(RuleAction::Block, RuleTarget::Country("NZ".into()))];
        let set = compile(&rules, &geo()).unwrap();
        assert!(set.is_empty());
        assert_eq!(set.per_rule, [RulePrefixes::default()]);
    }

    #[test]
    fn too_many_prefixes_is_refused() {
        let mut geo = GeoPrefixes::default();
        let many: Vec<IpNet> = (0..=MAX_PREFIXES_PER_GENERATION as u32)
            .map(|i| IpNet::from(IpAddr::from((i * 2).to_be_bytes())))
            .collect();
        geo.asns.insert(1, many);
        let err = compile(&[rule(RuleAction::Block, RuleTarget::Asn(1))], &geo).unwrap_err();
        assert!(err.to_string().contains("at most"), "{err}");
    }

    #[test]
    fn kernel_keys_carry_tag_family_and_length() {
        let (len, key) = rule_key(1, RULE_BLOCK, &net("10.1.0.0/16"));
        assert_eq!(len, 32 + 96 + 16);
        assert_eq!((key.generation, key.action, key.family), (1, RULE_BLOCK, 4));
        assert_eq!(key.addr[10..14], [0xff, 0xff, 10, 1]);
        let (len, key) = rule_key(0, RULE_ALLOW, &net("fd00::/8"));
        assert_eq!((len, key.family, key.addr[0]), (32 + 8, 6, 0xfd));
        let (len, key) = lookup_key(0, RULE_ALLOW, ip("10.1.2.3"));
        assert_eq!((len, key.addr[15]), (160, 3));
    }
}
