//! Validator tests: edge addresses: pools, leases, static IPs.
use super::*;

#[test]
fn overlapping_listeners_name_both_apps() {
    let first = json!({
        "id": "11111111111111111111111111111111",
        "protocol": "tcp/1000-2000",
        "dns": {"type": "ADDRESS", "name": "a.example.com"},
        "origin_direct": ["tcp://192.0.2.1:1000-2000"],
        "edge_ips": {"type": "static", "ips": ["198.51.100.7"]}
    });
    let second = json!({
        "id": "22222222222222222222222222222222",
        "protocol": "tcp/1500-2500",
        "dns": {"type": "ADDRESS", "name": "b.example.com"},
        "origin_direct": ["tcp://192.0.2.2:1500-2500"],
        "edge_ips": {"type": "static", "ips": ["198.51.100.8", "198.51.100.7"]}
    });
    only_error(
        config(vec![first.clone(), second.clone()]),
        None,
        "apps[1].protocol",
        "tcp/1500-2500",
        "apps[1] (id 22222222222222222222222222222222) and \
         apps[0] (id 11111111111111111111111111111111) both listen on tcp 198.51.100.7 \
         ports 1500-2000",
    );
    // The same ports over UDP are another listener.
    let udp = with(
        with(second.clone(), "protocol", json!("udp/1500-2500")),
        "origin_direct",
        json!(["udp://192.0.2.2:1500-2500"]),
    );
    accepted(config(vec![first.clone(), udp]));
    // Adjacent ranges do not overlap.
    let adjacent = with(
        with(second, "protocol", json!("tcp/2001-2500")),
        "origin_direct",
        json!(["tcp://192.0.2.2:2001-2500"]),
    );
    accepted(config(vec![first, adjacent]));
}

#[test]
fn dynamic_allocation() {
    let mut file = config(vec![
        static_ips(udp_app(), &["198.51.100.1", "2001:db8:e::1"]),
        tcp_app(),
        dynamic(udp_app(), "ipv4"),
        dynamic(with(tcp_app(), "protocol", json!("tcp/23")), "ipv6"),
    ]);
    file["apps"][3]["origin_direct"] = json!(["tcp://192.0.2.1:23"]);
    let (config_, _) = accepted(file);
    let addrs: Vec<&[IpAddr]> = config_
        .apps
        .iter()
        .map(|a| a.edge_addrs.as_slice())
        .collect();
    assert_eq!(
        addrs,
        [
            &[ip("198.51.100.1"), ip("2001:db8:e::1")][..],
            &[ip("198.51.100.2"), ip("2001:db8:e::2")],
            &[ip("198.51.100.3")],
            &[ip("2001:db8:e::3")],
        ]
    );
}

#[test]
fn dynamic_allocation_exhausts_and_needs_pools() {
    let mut file = config(vec![
        dynamic(tcp_app(), "ipv4"),
        dynamic(udp_app(), "ipv4"),
        dynamic(with(tcp_app(), "protocol", json!("tcp/23")), "ipv4"),
    ]);
    file["apps"][2]["origin_direct"] = json!(["tcp://192.0.2.1:23"]);
    // A /30 holds two hosts.
    file["edge"]["address_pool"]["ipv4"] = json!("198.51.100.0/30");
    only_error(
        file.clone(),
        None,
        "apps[2].edge_ips",
        "ipv4",
        "edge.address_pool.ipv4 198.51.100.0/30 has no free address left",
    );
    file["edge"]["address_pool"] = json!({"ipv6": "2001:db8:e::/64"});
    file["apps"] = json!([tcp_app()]);
    only_error(
        file,
        None,
        "apps[0].edge_ips",
        "all",
        "need an IPv4 address, but edge.address_pool.ipv4 is not configured",
    );
}

#[test]
fn leased_addresses_stay_when_an_app_is_added_in_front() {
    let ssh = tcp_app();
    let dns = udp_app();
    let (before, _) = accepted(config(vec![ssh.clone(), dns.clone()]));
    assert_eq!(
        before.apps[1].edge_addrs,
        [ip("198.51.100.2"), ip("2001:db8:e::2")]
    );
    // Without leases a new first app would shift both; with them it
    // takes the first address nobody holds.
    let mut mail = with(tcp_app(), "protocol", json!("tcp/25"));
    mail["dns"]["name"] = json!("mail.example.com");
    let file = config(vec![mail.clone(), ssh.clone(), dns.clone()]);
    let (shifted, _) = accepted(file.clone());
    assert_ne!(shifted.apps[1].edge_addrs, before.apps[0].edge_addrs);
    let (after, warnings) = with_leases(file, &[(&before, 0), (&before, 1)], &[]);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(after.apps[1].edge_addrs, before.apps[0].edge_addrs);
    assert_eq!(after.apps[2].edge_addrs, before.apps[1].edge_addrs);
    assert_eq!(
        after.apps[0].edge_addrs,
        [ip("198.51.100.3"), ip("2001:db8:e::3")]
    );
    assert!(after.apps.iter().all(|a| a.edge_ips_dynamic));
    // Removing ssh frees .1 for the next new app, while dns keeps .2.
    let (later, _) = with_leases(
        config(vec![dns.clone(), mail]),
        &[(&after, 2), (&after, 0)],
        &[],
    );
    assert_eq!(later.apps[0].edge_addrs, before.apps[1].edge_addrs);
    assert_eq!(later.apps[1].edge_addrs, after.apps[0].edge_addrs);
    let (fresh, _) = with_leases(
        config(vec![dns, with(tcp_app(), "protocol", json!("tcp/2222"))]),
        &[(&after, 2)],
        &[],
    );
    assert_eq!(fresh.apps[1].edge_addrs, before.apps[0].edge_addrs);
}

#[test]
fn leases_that_no_longer_fit_are_replaced_with_a_warning() {
    let (base, _) = accepted(config(vec![tcp_app()]));
    let id = base.apps[0].id;
    // Outside the pool now (the pool moved), and taken statically.
    let file = config(vec![tcp_app(), static_ips(udp_app(), &["198.51.100.9"])]);
    let (config_, warnings) = with_leases(file, &[], &[(id, &["203.0.113.7", "2001:db8:e::5"])]);
    assert_eq!(
        config_.apps[0].edge_addrs,
        [ip("198.51.100.1"), ip("2001:db8:e::5")]
    );
    assert!(!config_.apps[1].edge_ips_dynamic);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].field, "apps[0].edge_ips");
    assert!(warnings[0].message.contains("outside the address pool"));
}

#[test]
fn a_static_address_that_an_app_leases_is_refused() {
    let (base, _) = accepted(config(vec![tcp_app()]));
    let id = base.apps[0].id;
    let file: ConfigFile = serde_json::from_value(config(vec![
        tcp_app(),
        static_ips(udp_app(), &["2001:db8:e::9", "198.51.100.9"]),
    ]))
    .unwrap();
    let mut held = Leases::default();
    held.0.insert(id, vec![ip("198.51.100.9")]);
    let errors = validate_with_leases(&file, &held).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0].field, "apps[1].edge_ips.ips");
    assert_eq!(errors[0].value, "198.51.100.9");
    assert!(
        errors[0]
            .reason
            .contains("taken: apps[0] (ssh.example.com, id"),
        "{}",
        errors[0].reason
    );
}

#[test]
fn dns_server_addresses_are_not_handed_out_or_shadowed() {
    let mut file = config(vec![tcp_app(), udp_app()]);
    file["dns_server"] = json!({"listen": ["198.51.100.1", "[2001:db8:e::1]"],
                                "zones": ["example.com"]});
    let (config_, _) = accepted(file.clone());
    assert_eq!(
        config_.apps[0].edge_addrs,
        [ip("198.51.100.2"), ip("2001:db8:e::2")]
    );
    // A static udp/53 app on the server's address would take its queries.
    file["apps"] = json!([static_ips(udp_app(), &["198.51.100.1"])]);
    only_error(
        file.clone(),
        None,
        "dns_server.listen[0]",
        "198.51.100.1:53",
        "apps[0] (static.example.com) listens on udp/53",
    );
    // On another port of that address it may.
    file["apps"][0]["protocol"] = json!("udp/5353");
    file["apps"][0]["origin_direct"] = json!(["udp://192.0.2.53:5353"]);
    accepted(file);
}

#[test]
fn static_ips_checked() {
    only_error(
        config(vec![static_ips(tcp_app(), &["203.0.113.1"])]),
        None,
        "apps[0].edge_ips.ips[0]",
        "203.0.113.1",
        "outside edge.address_pool.ipv4 198.51.100.0/24",
    );
    only_error(
        config(vec![static_ips(tcp_app(), &["198.51.100.1", "nope"])]),
        None,
        "apps[0].edge_ips.ips[1]",
        "nope",
        "not an IP address",
    );
    only_error(
        config(vec![static_ips(tcp_app(), &[])]),
        None,
        "apps[0].edge_ips.ips",
        "",
        "at least one ip",
    );
    // Without pools, static addresses are taken as given.
    let mut file = config(vec![static_ips(tcp_app(), &["203.0.113.1"])]);
    file["edge"]["address_pool"] = json!({});
    let (config_, _) = accepted(file);
    assert_eq!(config_.apps[0].edge_addrs, [ip("203.0.113.1")]);
    only_error(
        config(vec![with(tcp_app(), "edge_ips", json!({"type": "shared"}))]),
        None,
        "apps[0].edge_ips.type",
        "shared",
        "expected dynamic or static",
    );
    only_error(
        config(vec![dynamic(tcp_app(), "ipv5")]),
        None,
        "apps[0].edge_ips.connectivity",
        "ipv5",
        "expected all, ipv4 or ipv6",
    );
}

/// `config` without the IPv4 pool: static IPv4 addresses are the file's.
fn without_v4_pool(apps: Vec<Value>) -> Value {
    let mut file = config(apps);
    file["edge"]["address_pool"] = json!({"ipv6": "2001:db8:e::/64"});
    file
}

#[test]
fn host_only_addresses_are_refused_as_static_edge_ips_even_without_a_pool() {
    for (text, reason) in [
        ("127.0.0.1", "loopback"),
        ("127.1.2.3", "loopback"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unicast"),
        ("255.255.255.255", "unicast"),
        ("224.0.0.1", "unicast"),
    ] {
        only_error(
            without_v4_pool(vec![static_ips(tcp_app(), &[text])]),
            None,
            "apps[0].edge_ips.ips[0]",
            text,
            reason,
        );
    }
    for (text, reason) in [("::1", "loopback"), ("fe80::1", "link-local")] {
        let mut file = config(vec![static_ips(tcp_app(), &[text])]);
        file["edge"]["address_pool"] = json!({});
        only_error(file, None, "apps[0].edge_ips.ips[0]", text, reason);
    }
    // A routed address outside any pool is still the operator's to name.
    accepted(without_v4_pool(vec![static_ips(
        tcp_app(),
        &["192.0.2.80"],
    )]));
}

#[test]
fn a_static_edge_address_on_a_non_edge_interface_is_refused() {
    let (config, _) = accepted(without_v4_pool(vec![
        static_ips(tcp_app(), &["192.0.2.80"]),
        dynamic(udp_app(), "ipv6"),
    ]));
    let host = |name: &str, text: &str| (name.to_owned(), ip(text));
    // The management interface's address: refused, naming it.
    let errors = host_edge_ips(&config, &[host("mgmt0", "192.0.2.80")]);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        (errors[0].field.as_str(), errors[0].value.as_str()),
        ("apps[0].edge_ips.ips", "192.0.2.80")
    );
    assert!(errors[0].reason.contains("mgmt0"), "{}", errors[0]);
    // On an edge interface (`eth0`) or elsewhere: fine.
    assert!(host_edge_ips(&config, &[host("eth0", "192.0.2.80")]).is_empty());
    assert!(host_edge_ips(&config, &[host("mgmt0", "192.0.2.81")]).is_empty());
    // Pool addresses are the pool's business, not checked here.
    let pool_ip = config.apps[1].edge_addrs[0].to_string();
    assert!(host_edge_ips(&config, &[host("mgmt0", &pool_ip)]).is_empty());
}

#[test]
fn the_api_gives_apps_addresses_of_the_pools_only() {
    let file = |apps: Vec<Value>| accepted(without_v4_pool(apps)).0;
    let ssh = |ips: &[&str]| {
        with(
            static_ips(tcp_app(), ips),
            "id",
            json!("11111111111111111111111111111111"),
        )
    };
    let before = file(vec![ssh(&["192.0.2.80"])]);
    // Left as the operator wrote it: fine, though there is no IPv4 pool.
    assert!(api_edge_ips(&before, &before).is_empty());
    let mut renamed = before.clone();
    renamed.apps[0].dns.name = "other.example.com".into();
    assert!(api_edge_ips(&before, &renamed).is_empty());
    // Moved to another IPv4 address: no pool for IPv4.
    let errors = api_edge_ips(&before, &file(vec![ssh(&["192.0.2.81"])]));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        (errors[0].field.as_str(), errors[0].value.as_str()),
        ("apps[0].edge_ips.ips", "192.0.2.81")
    );
    assert!(
        errors[0].reason.contains("no edge.address_pool.ipv4"),
        "{}",
        errors[0]
    );
    // A new app in the IPv6 pool is fine; outside it, refused naming it.
    let empty = file(vec![]);
    assert!(api_edge_ips(&empty, &file(vec![ssh(&["2001:db8:e::9"])])).is_empty());
    // (The file's own check refuses that too: built by hand here.)
    let mut outside = file(vec![ssh(&["2001:db8:e::9"])]);
    outside.apps[0].edge_addrs = vec![ip("2001:db8:f::9")];
    let errors = api_edge_ips(&empty, &outside);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0]
            .to_string()
            .contains("\"2001:db8:f::9\": outside edge.address_pool.ipv6 2001:db8:e::/64"),
        "{}",
        errors[0]
    );
    // Dynamic addresses come from the pool by construction.
    assert!(api_edge_ips(&empty, &file(vec![dynamic(udp_app(), "ipv6")])).is_empty());
}
