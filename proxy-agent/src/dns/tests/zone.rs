//! The zones a config makes: records, serials, reverse zones.

use std::collections::BTreeSet;

use hickory_server::proto::rr::rdata::PTR;

use super::*;

#[test]
fn zone_records_dedupes_and_picks_reverse_zones() {
    let config = test_config();
    let zones = zone_records(&config).expect("zones");
    let mut expected: Vec<&str> = V6_ZONES.to_vec();
    expected.extend([V4_ZONE, ZONE]);
    expected.sort_unstable();
    assert_eq!(zones.origins(), expected);
    let forward = zone_named(&zones, ZONE);
    // Nothing twice (ssh's two apps), the SOA once, the wildcard kept.
    for (k, a) in forward.records.iter().enumerate() {
        for b in &forward.records[k + 1..] {
            assert!(a != b, "duplicate {a}");
        }
    }
    let owners: BTreeSet<String> = forward.records.iter().map(|r| r.name.to_ascii()).collect();
    assert_eq!(
        owners.into_iter().collect::<Vec<_>>(),
        [
            "*.apps.example.test.",
            "example.test.",
            "mail.example.test.",
            "ns.example.test.",
            "ssh.example.test.",
        ]
    );
    // Reverse names: each zone's apex; ssh, mail, and
    // www.elsewhere.test (its PTR is served though its forward zone is
    // not) in the v4 zone and the first v6 one; not the wildcard.
    assert_eq!(zones.names(), 5 + (1 + 3) + (4 + 3));
    for zone in &V6_ZONES[1..] {
        assert_eq!(zone_named(&zones, zone).records.len(), 2, "{zone}: SOA, NS");
    }
    let (v4, _) = app_addrs(&config, "www.elsewhere.test");
    let ptr = reverse_name(IpAddr::V4(v4[0])) + ".";
    let ptr = zone_named(&zones, V4_ZONE)
        .records
        .iter()
        .find(|r| r.name.to_ascii() == ptr);
    assert_eq!(
        ptr.map(|r| r.data.clone()),
        Some(RData::PTR(PTR(name("www.elsewhere.test."))))
    );
    // Same config, same serials; a change moves the serials of the zones
    // it changes.
    let again = zone_records(&test_config()).expect("zones");
    assert_eq!(zones, again);
    let mut json = config_json();
    json["dns_server"]["nameserver"] = serde_json::json!("ns1.example.test");
    let changed = zone_records(&load(&json)).expect("zones");
    for (old, new) in zones.zones.iter().zip(&changed.zones) {
        assert_ne!(old.serial, new.serial, "{}", old.origin);
        assert_eq!(soa_of(&new.records).map(|s| s.serial), Some(new.serial));
    }
    let serial = |z: &ZoneSet, origin: &str| zone_named(z, origin).serial;
    let mut json = config_json();
    json["apps"][0]["dns"]["name"] = serde_json::json!("ssh2.example.test");
    json["apps"][1]["dns"]["name"] = serde_json::json!("ssh2.example.test");
    let renamed = zone_records(&load(&json)).expect("zones");
    for (origin, moves) in [
        (V6_ZONES[0], true), // ssh's v6 PTR
        (V6_ZONES[1], false),
        (V4_ZONE, true), // ssh's v4 PTR
        (ZONE, true),    // ssh's A/AAAA
    ] {
        let (old, new) = (serial(&zones, origin), serial(&renamed, origin));
        assert_eq!(old != new, moves, "{origin}");
    }
    // The wildcard app has no PTR: renaming it moves the forward
    // zone's serial only.
    let mut json = config_json();
    json["apps"][3]["dns"]["name"] = serde_json::json!("*.web.example.test");
    let renamed = zone_records(&load(&json)).expect("zones");
    for origin in V6_ZONES.iter().chain([&V4_ZONE]) {
        assert_eq!(serial(&zones, origin), serial(&renamed, origin), "{origin}");
    }
    assert_ne!(serial(&zones, ZONE), serial(&renamed, ZONE));
    // No dns_server: nothing.
    let mut none = config.clone();
    none.dns_server = None;
    assert_eq!(zone_records(&none).expect("zones"), ZoneSet::default());
}

#[test]
fn addresses_outside_the_pools_get_their_24_or_64() {
    let mut config = test_config();
    config.edge.address_pool = config::AddressPool::default();
    let zones = zone_records(&config).expect("zones");
    assert_eq!(zones.origins(), [V6_ZONES[0], V4_ZONE, ZONE]);
    // reverse_zone rounds down to whole labels.
    let v4 = |prefix| reverse_zone("198.51.100.0".parse().expect("ip"), prefix);
    assert_eq!(v4(22), "51.198.in-addr.arpa");
    assert_eq!(v4(31), "100.51.198.in-addr.arpa");
    assert_eq!(v4(32), "0.100.51.198.in-addr.arpa");
    assert_eq!(v4(7), "in-addr.arpa");
    let v6 = |prefix| reverse_zone("2001:db8::".parse().expect("ip"), prefix);
    assert_eq!(v6(32), "8.b.d.0.1.0.0.2.ip6.arpa");
    assert_eq!(v6(35), "8.b.d.0.1.0.0.2.ip6.arpa");
    assert_eq!(v6(36), "0.8.b.d.0.1.0.0.2.ip6.arpa");
}

#[test]
fn pool_reverse_zones_round_up_to_whole_labels() {
    let zones = |net: &str| pool_reverse_zones(net.parse().expect("net"));
    // On a boundary: the one zone.
    assert_eq!(zones("198.51.100.0/24"), ["100.51.198.in-addr.arpa"]);
    assert_eq!(zones("198.51.0.0/16"), ["51.198.in-addr.arpa"]);
    assert_eq!(zones("0.0.0.0/0"), ["in-addr.arpa"]);
    assert_eq!(zones("2001:db8:e::/64"), [V6_ZONES[0]]);
    // A /22: its four /24s, not the /16.
    assert_eq!(
        zones("198.51.100.0/22"),
        [
            "100.51.198.in-addr.arpa",
            "101.51.198.in-addr.arpa",
            "102.51.198.in-addr.arpa",
            "103.51.198.in-addr.arpa",
        ]
    );
    // The network is taken, whatever the host bits say.
    assert_eq!(zones("198.51.101.9/23").len(), 2);
    assert_eq!(zones("198.51.101.9/23")[0], "100.51.198.in-addr.arpa");
    // The most: a /17 is 128 /24s, a /9 128 /16s.
    let v4 = zones("198.51.128.0/17");
    assert_eq!(v4.len(), 128);
    assert_eq!(
        v4.first().map(String::as_str),
        Some("128.51.198.in-addr.arpa")
    );
    assert_eq!(
        v4.last().map(String::as_str),
        Some("255.51.198.in-addr.arpa")
    );
    assert_eq!(zones("10.0.0.0/9").len(), 128);
    // Longer than /24: the /24 (no zone per address).
    for len in [25, 28, 31, 32] {
        assert_eq!(
            zones(&format!("198.51.100.16/{len}")),
            ["100.51.198.in-addr.arpa"],
            "/{len}"
        );
    }
    // IPv6: a /62 is four /64s, a /61 eight, a /63 two.
    assert_eq!(zones("2001:db8:e::/62"), V6_ZONES);
    assert_eq!(zones("2001:db8:e::/61").len(), 8);
    assert_eq!(zones("2001:db8:e:2::/63"), V6_ZONES[2..]);
    assert_eq!(
        zones("2001:db8::/30"),
        [
            "8.b.d.0.1.0.0.2.ip6.arpa",
            "9.b.d.0.1.0.0.2.ip6.arpa",
            "a.b.d.0.1.0.0.2.ip6.arpa",
            "b.b.d.0.1.0.0.2.ip6.arpa"
        ]
    );
}
