//! Zone IP access rules.
use super::*;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccessRule {
    /// As written, or derived from mode, target and value when the file
    /// gives none (see [`AccessRule::derived_id`]).
    pub id: String,
    pub created_on: Option<String>,
    pub modified_on: Option<String>,
    pub action: RuleAction,
    pub target: RuleTarget,
    pub notes: Option<String>,
}

impl AccessRule {
    /// How logs and errors name the rule at `index` of `access_rules`.
    pub fn name(&self, index: usize) -> String {
        format!("access_rules[{index}] (id {})", self.id)
    }

    /// The id of a rule written without one: 32 hex digits from its mode,
    /// target and value (and `nth`, its rank among identical rules), so
    /// the API can name it and a reload finds the same id.
    pub fn derived_id(mode: &str, target: &str, value: &str, nth: usize) -> String {
        let key = format!("{mode}|{target}|{}|{nth}", value.to_ascii_lowercase());
        format!("{:032x}", fnv1a_128(key.as_bytes()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RuleAction {
    Allow,
    Block,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RuleTarget {
    Ip(IpAddr),
    Range(ipnet::IpNet),
    Asn(u32),
    /// ISO 3166-1 alpha-2, uppercase; also `T1` (Tor) and `XX` (unknown).
    Country(String),
}
