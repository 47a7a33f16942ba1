//! Access rules end to end: the client namespace holds several source
//! addresses; real TCP and UDP clients from blocked ones get nothing
//! through (and the origin's stack receives nothing), allowed ones work.
//! ASN and country rules read MaxMind DB files this test writes itself
//! (`tests::mmdb`).
use std::{net::IpAddr, path::Path};

use tests::{
    agent::Agent,
    client::{bracket, tcp_exchange_from, udp_exchange_from},
    config::{AppJson, ConfigBuilder, org_both},
    mmdb,
    netns::{Netns, Topology, addr, snmp_counter},
    scratch_dir, servers,
};

/// Client addresses, beside the namespace's own 10.0.1.2 / fd00:1::2
/// (no rule: allowed).
const BLOCKED_IP4: &str = "10.0.1.10";
const BLOCKED_IP6: &str = "fd00:1::10";
/// In the blocked range 10.0.1.16/28 ...
const IN_RANGE4: &str = "10.0.1.20";
/// ... but allowed by its own rule: allow beats block.
const ALLOWED_IN_RANGE4: &str = "10.0.1.21";
/// Country FR in the test database.
const FRANCE4: &str = "10.0.1.30";
const FRANCE6: &str = "fd00:1::30";
/// AS64512 in the test database.
const ASN4: &str = "10.0.1.40";
const ASN6: &str = "fd00:1::40";
/// Country DE in the test database: no rule names it.
const GERMANY4: &str = "10.0.1.50";

/// Writes the country and ASN databases; returns their paths.
fn databases(tag: &str) -> (String, String) {
    let dir = scratch_dir();
    let mut countries = mmdb::Writer::new("GeoLite2-Country");
    let mut asns = mmdb::Writer::new("GeoLite2-ASN");
    let host = |ip: &str| -> ipnet::IpNet { ip.parse::<IpAddr>().expect("ip").into() };
    countries.insert(host(FRANCE4), mmdb::geolite2_country("FR"));
    countries.insert(host(FRANCE6), mmdb::geolite2_country("FR"));
    // ip-location-db's record shape works as well.
    countries.insert(host(GERMANY4), mmdb::location_db_country("DE"));
    asns.insert(host(ASN4), mmdb::asn(64512, "Test Networks"));
    asns.insert(host(ASN6), mmdb::asn(64512, "Test Networks"));
    let country_db = dir.join(format!("{tag}-country.mmdb"));
    let asn_db = dir.join(format!("{tag}-asn.mmdb"));
    countries.write(&country_db).expect("country db");
    asns.write(&asn_db).expect("asn db");
    let path = |p: &Path| p.to_string_lossy().into_owned();
    (path(&country_db), path(&asn_db))
}

/// app 0 `tcp/22 -> 2222` and app 1 `udp/5300 -> 6300` with
/// `ip_firewall`; app 2 `tcp/23 -> 2222` without. `rules` is the JSON list.
fn config(dbs: &(String, String), rules: &str) -> String {
    let rules: serde_json::Value = serde_json::from_str(rules).expect("rules are JSON");
    ConfigBuilder::new()
        .edge("nat_ports", "20000-29999")
        .edge(
            "geoip",
            serde_json::json!({"country_db": dbs.0, "asn_db": dbs.1}),
        )
        .app(
            AppJson::tcp(22, "ssh.test")
                .ip_firewall(true)
                .origin_direct(org_both("tcp", 2222)),
        )
        .app(
            AppJson::udp(5300, "udp.test")
                .ip_firewall(true)
                .origin_direct(org_both("udp", 6300)),
        )
        .app(
            AppJson::tcp(23, "open.test")
                .ip_firewall(false)
                .origin_direct(org_both("tcp", 2222)),
        )
        .access_rules(rules)
        .build()
}

const RULES: &str = r#"[
    {"id": "ip4", "mode": "block", "configuration": {"target": "ip", "value": "10.0.1.10"}},
    {"id": "ip6", "mode": "block", "configuration": {"target": "ip6", "value": "fd00:1::10"}},
    {"id": "range", "mode": "block", "configuration": {"target": "ip_range", "value": "10.0.1.16/28"}},
    {"id": "pardon", "mode": "whitelist", "configuration": {"target": "ip", "value": "10.0.1.21"}},
    {"id": "asn", "mode": "block", "configuration": {"target": "asn", "value": "AS64512"}},
    {"id": "fr", "mode": "block", "configuration": {"target": "country", "value": "FR"}},
    {"id": "ignored", "mode": "challenge", "configuration": {"target": "ip", "value": "10.0.1.2"}}
]"#;

fn add_client_addresses(cli: &Netns) {
    for ip in [
        BLOCKED_IP4,
        IN_RANGE4,
        ALLOWED_IN_RANGE4,
        FRANCE4,
        ASN4,
        GERMANY4,
    ] {
        cli.run(
            "ip",
            &["addr", "add", &format!("{ip}/32"), "dev", addr::CLI_IF],
        )
        .expect("add v4 client address");
    }
    for ip in [BLOCKED_IP6, FRANCE6, ASN6] {
        cli.run(
            "ip",
            &[
                "-6",
                "addr",
                "add",
                &format!("{ip}/128"),
                "dev",
                addr::CLI_IF,
                "nodad",
            ],
        )
        .expect("add v6 client address");
    }
}

/// What the origin namespace's own stack received, TCP and UDP.
fn origin_received(org: &Netns) -> (u64, u64) {
    (
        snmp_counter(org, "Tcp", "InSegs").expect("org Tcp"),
        snmp_counter(org, "Udp", "InDatagrams").expect("org Udp"),
    )
}

fn edge_ip(from: &str, v4: &str, v6: &str) -> String {
    if from.contains(':') { v6 } else { v4 }.to_owned()
}

#[test]
fn blocked_clients_get_nothing_through_and_allowed_ones_do() {
    let Some(topology) = Topology::for_test(
        "blocked_clients_get_nothing_through_and_allowed_ones_do",
        "acl",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    add_client_addresses(cli);
    let _tcp = servers::tcp_echo(org, 2222).expect("tcp origin");
    let _udp = servers::udp_echo(org, 6300).expect("udp origin");
    let dbs = databases("acl");
    let agent = Agent::start(&topology.edge, &config(&dbs, RULES), "native").expect("agent");
    allowed_clients_reach_both_firewalled_apps(cli, &agent);
    blocked_clients_get_nothing_through_and_are_counted(&topology, &agent);
    every_logged_drop_names_its_rule(&agent);
    // The same blocked clients reach an app without ip_firewall.
    for from in [BLOCKED_IP4, FRANCE6, ASN4] {
        let reply = tcp_exchange_from(cli, Some(from), &edge_ip(from, OPEN4, OPEN6), 23, "hi")
            .unwrap_or_else(|e| panic!("open app from {from}: {e:#}"));
        assert_eq!(reply, "origin 2222\nhi\n");
    }
}

/// The pool gives apps .1, .2, .3 in file order.
const TCP4: &str = "10.0.100.1";
const TCP6: &str = "fd00:100::1";
const UDP4: &str = "10.0.100.2";
const UDP6: &str = "fd00:100::2";
const OPEN4: &str = "10.0.100.3";
const OPEN6: &str = "fd00:100::3";

/// No rule, a whitelisted address in a blocked range, a country no rule
/// names: TCP and UDP answered.
fn allowed_clients_reach_both_firewalled_apps(cli: &Netns, agent: &Agent) {
    let allowed = [addr::CLI_V4, addr::CLI_V6, ALLOWED_IN_RANGE4, GERMANY4];
    for from in allowed {
        let reply = tcp_exchange_from(cli, Some(from), &edge_ip(from, TCP4, TCP6), 22, "hi")
            .unwrap_or_else(|e| panic!("tcp from {from}: {e:#}\n{}", agent.log()));
        assert_eq!(reply, "origin 2222\nhi\n", "tcp from {from}");
        let reply = udp_exchange_from(cli, &bracket(from), &edge_ip(from, UDP4, UDP6), 5300, "q")
            .expect("udp");
        assert_eq!(reply, "origin 6300: q\n", "udp from {from}");
    }
}

/// Each blocked client (address, range, ASN, country) gets no TCP and no
/// UDP answer, the origin's stack receives nothing, and each drop is
/// counted under its reason.
fn blocked_clients_get_nothing_through_and_are_counted(topology: &Topology, agent: &Agent) {
    let (cli, org) = (&topology.cli, &topology.org);
    let blocked = [
        (BLOCKED_IP4, "blocked_ip"),
        (BLOCKED_IP6, "blocked_ip"),
        (IN_RANGE4, "blocked_range"),
        (ASN4, "blocked_asn"),
        (ASN6, "blocked_asn"),
        (FRANCE4, "blocked_country"),
        (FRANCE6, "blocked_country"),
    ];
    let before = origin_received(org);
    // In parallel: each blocked attempt waits out its timeout.
    std::thread::scope(|scope| {
        for (from, _) in blocked {
            let tcp_edge = edge_ip(from, TCP4, TCP6);
            let udp_edge = edge_ip(from, UDP4, UDP6);
            scope.spawn(move || {
                let tcp = tcp_exchange_from(cli, Some(from), &tcp_edge, 22, "hi");
                assert!(tcp.is_err(), "tcp from {from} got through: {tcp:?}");
                let udp = udp_exchange_from(cli, &bracket(from), &udp_edge, 5300, "q")
                    .expect("udp client");
                assert_eq!(udp, "", "udp from {from} got an answer");
            });
        }
    });
    assert_eq!(
        origin_received(org),
        before,
        "the origin received packets from blocked clients"
    );
    for (from, reason) in blocked {
        let tcp = agent.packets(Some(0), reason).expect("stats");
        let udp = agent.packets(Some(1), reason).expect("stats");
        assert!(tcp > 0 && udp > 0, "{reason} ({from}): tcp {tcp} udp {udp}");
    }
}

/// Drops are logged with the client, the app and the rule: sampled, and
/// at most 10 a second, so which rules' events make it varies (the seven
/// blocked clients send at once); every logged one names its rule.
fn every_logged_drop_names_its_rule(agent: &Agent) {
    let log = agent.log();
    let logged: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("blocked by an access rule"))
        .collect();
    assert!(!logged.is_empty(), "{log}");
    assert!(
        logged
            .iter()
            .all(|l| l.contains("rule=access_rules[") && l.contains("(id ") && l.contains("app=")),
        "{log}"
    );
}

#[test]
fn sighup_applies_new_rules_keeps_old_ones_on_bad_input_and_cuts_blocked_flows() {
    let Some(topology) = Topology::for_test(
        "sighup_applies_new_rules_keeps_old_ones_on_bad_input_and_cuts_blocked_flows",
        "aclr",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    add_client_addresses(cli);
    let _udp = servers::udp_echo(org, 6300).expect("udp origin");
    let dbs = databases("aclr");
    let agent = Agent::start(&topology.edge, &config(&dbs, RULES), "native").expect("agent");
    let udp4 = "10.0.100.2";
    let exchange = |from: &str| udp_exchange_from(cli, from, udp4, 5300, "q").expect("udp");

    // An open UDP flow from a fixed source port.
    assert_eq!(exchange("10.0.1.2:40000"), "origin 6300: q\n");
    assert_eq!(exchange(BLOCKED_IP4), "");

    // Unblock 10.0.1.10, block 10.0.1.2: the flow from 10.0.1.2:40000 is cut.
    let swapped = RULES.replace(r#""value": "10.0.1.10""#, r#""value": "10.0.1.2""#);
    assert!(
        agent.reload(&config(&dbs, &swapped)).expect("reload"),
        "{}",
        agent.log()
    );
    assert_eq!(exchange(BLOCKED_IP4), "origin 6300: q\n");
    assert_eq!(
        exchange("10.0.1.2:40000"),
        "",
        "the open flow of a newly blocked client"
    );

    // A rule that does not parse, and a database that is not one: refused,
    // the rules in force stay.
    let bad = swapped.replace(r#""value": "AS64512""#, r#""value": "AS-nope""#);
    assert!(!agent.reload(&config(&dbs, &bad)).expect("reload"));
    let garbage = scratch_dir().join("aclr-garbage.mmdb");
    std::fs::write(&garbage, "not a database").expect("write");
    let broken_db = (garbage.to_string_lossy().into_owned(), dbs.1.clone());
    assert!(!agent.reload(&config(&broken_db, &swapped)).expect("reload"));
    assert_eq!(exchange(BLOCKED_IP4), "origin 6300: q\n");
    assert_eq!(exchange(addr::CLI_V4), "");
    let log = agent.log();
    assert!(
        log.contains("AS-nope") && log.contains("not a MaxMind DB"),
        "{log}"
    );
}
