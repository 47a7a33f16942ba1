//! Zone IP access rules: mode, target and value.
use super::*;

impl Validator {
    pub(super) fn access_rules(
        &mut self,
        rules: &[AccessRuleFile],
        geoip: &GeoIp,
    ) -> Vec<AccessRule> {
        let mut out = Vec::new();
        let mut ids: HashMap<&str, usize> = HashMap::new();
        for (i, rule) in rules.iter().enumerate() {
            if let Some(id) = rule.id.as_deref() {
                let fits = (1..=64).contains(&id.len())
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
                if !fits {
                    self.error(
                        None,
                        format!("access_rules[{i}].id"),
                        id,
                        "expected 1 to 64 letters, digits, '-', '_', '.' or ':' \
                         (the id is part of the rule's API path)",
                    );
                } else if let Some(&j) = ids.get(id) {
                    self.error(
                        None,
                        format!("access_rules[{i}].id"),
                        id,
                        format!("same id as access_rules[{j}]"),
                    );
                } else {
                    ids.insert(id, i);
                }
            }
            let mode = match rule.mode.as_str() {
                "block" => Mode::Act(RuleAction::Block),
                "whitelist" | "allow" => Mode::Act(RuleAction::Allow),
                "challenge" | "js_challenge" | "managed_challenge" => {
                    self.warn(
                        format!("access_rules[{i}].mode"),
                        &rule.mode,
                        "ignored: Spectrum honours only allow and block rules; \
                         this rule is left out",
                    );
                    Mode::Ignored
                }
                other => {
                    self.error(
                        None,
                        format!("access_rules[{i}].mode"),
                        other,
                        "unknown mode; expected block, whitelist (or allow), challenge, \
                         js_challenge or managed_challenge",
                    );
                    Mode::Invalid
                }
            };
            // An ignored rule is still checked, but needs no GeoIP database.
            let needs_db = !matches!(mode, Mode::Ignored);
            let target = self.rule_target(i, rule, geoip, needs_db);
            if let (Mode::Act(action), Some(target)) = (mode, target) {
                let id = rule.id.clone().unwrap_or_else(|| {
                    let (mode, target, value) = (
                        rule.mode.as_str(),
                        rule.configuration.target.as_str(),
                        rule.configuration.value.as_str(),
                    );
                    let nth = rules[..i]
                        .iter()
                        .filter(|r| {
                            r.id.is_none()
                                && r.mode == mode
                                && r.configuration.target == target
                                && r.configuration.value.eq_ignore_ascii_case(value)
                        })
                        .count();
                    AccessRule::derived_id(mode, target, value, nth)
                });
                out.push(AccessRule {
                    id,
                    created_on: timestamp(rule.created_on.as_ref()),
                    modified_on: timestamp(rule.modified_on.as_ref()),
                    action,
                    target,
                    notes: rule.notes.clone(),
                });
            }
        }
        out
    }

    pub(super) fn rule_target(
        &mut self,
        i: usize,
        rule: &AccessRuleFile,
        geoip: &GeoIp,
        needs_db: bool,
    ) -> Option<RuleTarget> {
        let RuleConfigurationFile { target, value } = &rule.configuration;
        let value_field = format!("access_rules[{i}].configuration.value");
        let target_field = format!("access_rules[{i}].configuration.target");
        let parsed = match target.as_str() {
            "ip" => parse_rule_ip(value, Family::V4).map(RuleTarget::Ip),
            "ip6" => parse_rule_ip(value, Family::V6).map(RuleTarget::Ip),
            "ip_range" => parse_network(value).map(|net| {
                if !accepted_rule_prefix(net) {
                    self.warn(
                        value_field.clone(),
                        value,
                        "accepted, but Cloudflare takes only IPv4 /16 and /24 and IPv6 /32, \
                         /48 and /64 ranges",
                    );
                }
                RuleTarget::Range(net)
            }),
            "asn" => parse_asn(value).map(RuleTarget::Asn),
            "country" => parse_country(value).map(RuleTarget::Country),
            other => {
                self.error(
                    None,
                    target_field,
                    other,
                    "unknown target; expected ip, ip6, ip_range, asn or country",
                );
                return None;
            }
        };
        let target_value = match parsed {
            Ok(t) => t,
            Err(reason) => {
                self.error(None, value_field, value, reason);
                return None;
            }
        };
        let missing_db = match target_value {
            RuleTarget::Asn(_) if geoip.asn_db.is_none() => Some("edge.geoip.asn_db"),
            RuleTarget::Country(_) if geoip.country_db.is_none() => Some("edge.geoip.country_db"),
            _ => None,
        };
        if let (Some(setting), true) = (missing_db, needs_db) {
            let rule_name = match &rule.id {
                Some(id) => format!("access_rules[{i}] (id {id:?})"),
                None => format!("access_rules[{i}]"),
            };
            self.error(
                None,
                target_field,
                target.as_str(),
                format!("{rule_name}: {target} rules need {setting}, which is not set"),
            );
            return None;
        }
        Some(target_value)
    }
}

/// A CIDR network without host bits set.
pub(super) fn parse_network(text: &str) -> Result<IpNet, String> {
    match text.parse::<IpNet>() {
        Ok(net) if net.trunc() == net => Ok(net),
        Ok(net) => Err(format!("host bits are set; the network is {}", net.trunc())),
        Err(_) if text.parse::<IpAddr>().is_ok() => {
            Err("a single address; a network needs a prefix length such as /24".to_string())
        }
        Err(_) => Err("not a network in CIDR notation (e.g. 198.51.100.0/24)".to_string()),
    }
}

pub(super) fn accepted_rule_prefix(net: IpNet) -> bool {
    match net {
        IpNet::V4(n) => matches!(n.prefix_len(), 16 | 24),
        IpNet::V6(n) => matches!(n.prefix_len(), 32 | 48 | 64),
    }
}

pub(super) fn parse_rule_ip(text: &str, family: Family) -> Result<IpAddr, String> {
    match text.parse::<IpAddr>() {
        Ok(ip) if Family::of(ip) == family => Ok(ip),
        Ok(_) => Err(match family {
            Family::V4 => "an IPv6 address; use target ip6".to_string(),
            Family::V6 => "an IPv4 address; use target ip".to_string(),
        }),
        Err(_) if text.contains('/') => Err("a network; use target ip_range".to_string()),
        Err(_) => Err(format!("not an {} address", family.name())),
    }
}

/// `AS13335` or `13335` (the `AS` in any case).
pub(super) fn parse_asn(text: &str) -> Result<u32, String> {
    let digits = match text.get(..2) {
        Some(prefix) if prefix.eq_ignore_ascii_case("as") => &text[2..],
        _ => text,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("not an AS number; expected AS13335 or 13335".to_string());
    }
    match digits.parse::<u32>() {
        Ok(asn) if asn > 0 => Ok(asn),
        _ => Err("AS number outside 1-4294967295".to_string()),
    }
}

/// ISO 3166-1 alpha-2 (any case), or `T1` (Tor); `XX` (unknown) is two letters.
pub(super) fn parse_country(text: &str) -> Result<String, String> {
    let upper = text.to_ascii_uppercase();
    let b = upper.as_bytes();
    if upper == "T1" || (b.len() == 2 && b.iter().all(u8::is_ascii_uppercase)) {
        Ok(upper)
    } else {
        Err("not a country code; expected two letters (ISO 3166-1 alpha-2), T1 or XX".to_string())
    }
}
