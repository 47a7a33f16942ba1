//! Validator tests: access rules.
use super::*;

#[test]
fn access_rule_modes() {
    let (config_, warnings) = accepted(rules(json!([
        {"id": "r1", "mode": "block", "configuration": {"target": "ip", "value": "198.51.100.9"}, "notes": "bad actor"},
        rule("whitelist", "ip6", "2001:db8::9"),
        rule("allow", "country", "ch"),
        rule("challenge", "ip", "192.0.2.1"),
        rule("js_challenge", "asn", "AS13335"),
        rule("managed_challenge", "country", "FR"),
    ])));
    let got: Vec<(RuleAction, RuleTarget)> = config_
        .access_rules
        .iter()
        .map(|r| (r.action, r.target.clone()))
        .collect();
    assert_eq!(
        got,
        [
            (
                RuleAction::Block,
                RuleTarget::Ip("198.51.100.9".parse().unwrap())
            ),
            (
                RuleAction::Allow,
                RuleTarget::Ip("2001:db8::9".parse().unwrap())
            ),
            (RuleAction::Allow, RuleTarget::Country("CH".into())),
        ]
    );
    assert_eq!(config_.access_rules[0].id, "r1");
    assert_eq!(config_.access_rules[0].notes.as_deref(), Some("bad actor"));
    let warned: Vec<(&str, &str)> = warnings
        .iter()
        .map(|w| (w.field.as_str(), w.value.as_str()))
        .collect();
    assert_eq!(
        warned,
        [
            ("access_rules[3].mode", "challenge"),
            ("access_rules[4].mode", "js_challenge"),
            ("access_rules[5].mode", "managed_challenge"),
        ]
    );
    assert!(warnings[0].message.contains("only allow and block"));

    only_error(
        rules(json!([rule("deny", "ip", "192.0.2.1")])),
        None,
        "access_rules[0].mode",
        "deny",
        "unknown mode",
    );
    only_error(
        rules(json!([rule("block", "ip4", "192.0.2.1")])),
        None,
        "access_rules[0].configuration.target",
        "ip4",
        "unknown target",
    );
}

#[test]
fn ip_and_ip6_targets() {
    assert_eq!(
        rule_target("ip", "192.0.2.1"),
        Ok(RuleTarget::Ip("192.0.2.1".parse().unwrap()))
    );
    assert_eq!(
        rule_target("ip6", "2001:db8::1"),
        Ok(RuleTarget::Ip("2001:db8::1".parse().unwrap()))
    );
    rule_value_error("ip", "2001:db8::1", "use target ip6");
    rule_value_error("ip6", "192.0.2.1", "use target ip");
    rule_value_error("ip", "192.0.2.0/24", "use target ip_range");
    rule_value_error("ip", "example.com", "not an IPv4 address");
}

#[test]
fn ip_range_targets() {
    for (value, warned) in [
        ("198.51.0.0/16", false),
        ("198.51.100.0/24", false),
        ("2001:db8::/32", false),
        ("2001:db8:1::/48", false),
        ("2001:db8:1:2::/64", false),
        ("198.51.100.0/25", true),
        ("2001:db8::/56", true),
    ] {
        let (config_, warnings) = accepted(rules(json!([rule("block", "ip_range", value)])));
        assert_eq!(
            config_.access_rules[0].target,
            RuleTarget::Range(value.parse().unwrap())
        );
        assert_eq!(warnings.len(), usize::from(warned), "{value}: {warnings:?}");
        if warned {
            assert_eq!(warnings[0].field, "access_rules[0].configuration.value");
            assert!(warnings[0].message.contains("/16 and /24"));
        }
    }
    rule_value_error(
        "ip_range",
        "198.51.100.1/24",
        "host bits are set; the network is 198.51.100.0/24",
    );
    rule_value_error("ip_range", "198.51.100.1", "needs a prefix length");
    rule_value_error("ip_range", "198.51.100.0/33", "not a network");
}

#[test]
fn asn_and_country_targets() {
    assert_eq!(rule_target("asn", "AS13335"), Ok(RuleTarget::Asn(13335)));
    assert_eq!(rule_target("asn", "as13335"), Ok(RuleTarget::Asn(13335)));
    assert_eq!(rule_target("asn", "13335"), Ok(RuleTarget::Asn(13335)));
    assert_eq!(
        rule_target("asn", "AS4294967295"),
        Ok(RuleTarget::Asn(u32::MAX))
    );
    rule_value_error("asn", "AS0", "outside 1-4294967295");
    rule_value_error("asn", "AS4294967296", "outside 1-4294967295");
    rule_value_error("asn", "AS", "not an AS number");
    rule_value_error("asn", "ASN13335", "not an AS number");
    rule_value_error("asn", "é13335", "not an AS number");
    assert_eq!(
        rule_target("country", "US"),
        Ok(RuleTarget::Country("US".into()))
    );
    assert_eq!(
        rule_target("country", "de"),
        Ok(RuleTarget::Country("DE".into()))
    );
    assert_eq!(
        rule_target("country", "T1"),
        Ok(RuleTarget::Country("T1".into()))
    );
    assert_eq!(
        rule_target("country", "XX"),
        Ok(RuleTarget::Country("XX".into()))
    );
    rule_value_error("country", "USA", "not a country code");
    rule_value_error("country", "U1", "not a country code");
    rule_value_error("country", "", "not a country code");
}

#[test]
fn geo_rules_need_their_database() {
    let mut file = rules(json!([
        {"id": "no-asn", "mode": "block", "configuration": {"target": "asn", "value": "AS64500"}},
        rule("whitelist", "country", "CH"),
        // Left out with a warning, so it needs no database.
        rule("challenge", "asn", "AS64501"),
    ]));
    file["edge"]["geoip"] = json!({});
    let errors = refused(file);
    let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "access_rules[0].configuration.target: \"asn\": access_rules[0] (id \"no-asn\"): \
             asn rules need edge.geoip.asn_db, which is not set",
            "access_rules[1].configuration.target: \"country\": access_rules[1]: country \
             rules need edge.geoip.country_db, which is not set",
        ]
    );
}

#[test]
fn rule_ids_must_fit_in_a_path() {
    for id in ["", "a/b", "has space", &"x".repeat(65)] {
        let rule = json!({"id": id, "mode": "block",
                          "configuration": {"target": "ip", "value": "192.0.2.1"}});
        let mut file = config(vec![]);
        file["access_rules"] = json!([rule]);
        only_error(file, None, "access_rules[0].id", id, "1 to 64 letters");
    }
}
