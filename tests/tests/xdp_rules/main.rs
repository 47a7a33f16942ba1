//! BPF_PROG_TEST_RUN fixtures of the access rules: for each target kind
//! (ip, ip range, ASN, country), IPv4 and IPv6 clients, block, allow,
//! allow over a broader or narrower block, an app with `ip_firewall` off,
//! and no matching rule. ASN and country networks are given directly here
//! (the GeoIP database reader has its own tests and the netns suite).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proxy_agent::{
    config::{load_str, model::Config},
    datapath::{
        loader::Datapath,
        maps::map_contents,
        rules::{RuleSet, compile, decide},
    },
    geoip::GeoPrefixes,
};
use proxy_common::{BlockEvent, RULE_BLOCK, Verdict};
mod common;

use common::{counts, moved, run_frame};
use tests::{packet::*, root_or_skip};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

const EDGE4: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 1);
const EDGE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1);

/// Agent-path apps (PROXY headers), so a packet that is not dropped is
/// passed up (`to_agent`) without needing routes: app 0 TCP and app 1 UDP
/// with `ip_firewall`, app 2 TCP without.
const CONFIG: &str = r#"{
  "edge": {"interfaces": ["lo"], "geoip": {"country_db": "unused.mmdb", "asn_db": "unused.mmdb"}},
  "apps": [
    {"protocol": "tcp/80", "dns": {"type": "ADDRESS", "name": "walled.test"},
     "edge_ips": {"type": "static", "ips": ["10.0.100.1", "fd00:100::1"]},
     "origin_direct": ["tcp://10.0.2.2:80"], "proxy_protocol": "v1", "ip_firewall": true},
    {"protocol": "udp/53", "dns": {"type": "ADDRESS", "name": "walled-udp.test"},
     "edge_ips": {"type": "static", "ips": ["10.0.100.1", "fd00:100::1"]},
     "origin_direct": ["udp://10.0.2.2:53"], "proxy_protocol": "v2", "ip_firewall": true},
    {"protocol": "tcp/81", "dns": {"type": "ADDRESS", "name": "open.test"},
     "edge_ips": {"type": "static", "ips": ["10.0.100.1", "fd00:100::1"]},
     "origin_direct": ["tcp://10.0.2.2:81"], "proxy_protocol": "v1", "ip_firewall": false}
  ],
  "access_rules": [
    {"mode": "block", "configuration": {"target": "ip", "value": "10.9.0.1"}},
    {"mode": "block", "configuration": {"target": "ip6", "value": "fd09::1"}},
    {"mode": "block", "configuration": {"target": "ip_range", "value": "10.8.0.0/16"}},
    {"mode": "block", "configuration": {"target": "ip_range", "value": "fd08::/32"}},
    {"mode": "block", "configuration": {"target": "asn", "value": "AS64500"}},
    {"mode": "block", "configuration": {"target": "country", "value": "FR"}},
    {"mode": "whitelist", "configuration": {"target": "ip", "value": "10.8.0.7"}},
    {"mode": "whitelist", "configuration": {"target": "ip_range", "value": "fd06:0:1::/48"}},
    {"mode": "whitelist", "configuration": {"target": "country", "value": "DE"}},
    {"mode": "whitelist", "configuration": {"target": "asn", "value": "64501"}}
  ]
}"#;

fn net(text: &str) -> ipnet::IpNet {
    text.parse().expect("net")
}

/// What the GeoIP databases would say for the rules above.
fn geo() -> GeoPrefixes {
    let mut geo = GeoPrefixes::default();
    geo.asns
        .insert(64500, vec![net("10.7.0.0/16"), net("fd07::/32")]);
    geo.asns.insert(64501, vec![net("fd08:0:1::/48")]);
    geo.countries
        .insert("FR".into(), vec![net("10.6.0.0/16"), net("fd06::/32")]);
    // Inside the blocked 10.8.0.0/16: a narrower allow.
    geo.countries.insert("DE".into(), vec![net("10.8.1.0/24")]);
    geo
}

fn config() -> Config {
    load_str(CONFIG, false).expect("valid test config").config
}

fn rule_set(config: &Config) -> RuleSet {
    compile(&config.access_rules, &geo()).expect("fits")
}

fn datapath(config: &Config) -> Datapath {
    let mut datapath = Datapath::load().expect("load XDP object");
    datapath.program().expect("verifier accepts the program");
    datapath
        .sync(&map_contents(config).expect("fits"))
        .expect("fill maps");
    datapath
}

fn frame(src: IpAddr, proto: u8, dst_port: u16) -> Vec<u8> {
    let (dst, l4) = (
        if src.is_ipv4() {
            EDGE4.into()
        } else {
            EDGE6.into()
        },
        match proto {
            PROTO_TCP => tcp_flags(40000, dst_port, 0x02, b""),
            _ => udp(40000, dst_port, b"query"),
        },
    );
    frame_between(src, dst, proto, l4)
}

struct Row {
    name: &'static str,
    src: &'static str,
    /// App index: 0 TCP firewalled, 1 UDP firewalled, 2 TCP open.
    app: u32,
    verdict: Verdict,
}

fn rows() -> Vec<Row> {
    use Verdict::*;
    let row = |name, src, app, verdict| Row {
        name,
        src,
        app,
        verdict,
    };
    vec![
        row("ip blocks v4", "10.9.0.1", 0, BlockedIp),
        row("ip6 blocks v6", "fd09::1", 0, BlockedIp),
        row("ip: the neighbour address passes", "10.9.0.2", 0, ToAgent),
        row("range blocks v4", "10.8.3.3", 0, BlockedRange),
        row("range blocks v6", "fd08:0:5::1", 0, BlockedRange),
        row("asn blocks v4", "10.7.1.1", 0, BlockedAsn),
        row("asn blocks v6", "fd07::9", 0, BlockedAsn),
        row("country blocks v4", "10.6.200.1", 0, BlockedCountry),
        row("country blocks v6", "fd06::1", 0, BlockedCountry),
        row("allow ip beats a blocked range", "10.8.0.7", 0, ToAgent),
        row(
            "allow range beats a blocked country (v6)",
            "fd06:0:1::5",
            0,
            ToAgent,
        ),
        row(
            "allow country beats a broader blocked range",
            "10.8.1.1",
            0,
            ToAgent,
        ),
        row(
            "allow asn beats a broader blocked range (v6)",
            "fd08:0:1::1",
            0,
            ToAgent,
        ),
        row("no rule matches v4: allowed", "10.5.0.1", 0, ToAgent),
        row("no rule matches v6: allowed", "fd05::1", 0, ToAgent),
        row("UDP app: blocked too", "10.9.0.1", 1, BlockedIp),
        row("UDP app v6, country", "fd06::1", 1, BlockedCountry),
        row("UDP app: allowed client", "10.5.0.1", 1, ToAgent),
        row(
            "ip_firewall off: a blocked ip passes",
            "10.9.0.1",
            2,
            ToAgent,
        ),
        row(
            "ip_firewall off: a blocked country passes",
            "fd06::1",
            2,
            ToAgent,
        ),
    ]
}

fn port_and_proto(app: u32) -> (u16, u8) {
    match app {
        0 => (80, PROTO_TCP),
        1 => (53, PROTO_UDP),
        _ => (81, PROTO_TCP),
    }
}

#[test]
fn access_rule_fixtures() {
    if !root_or_skip("access_rule_fixtures") {
        return;
    }
    let config = config();
    let set = rule_set(&config);
    let mut datapath = datapath(&config);
    datapath.load_rules(&set).expect("load rules");
    let mut failures = Vec::new();
    for row in rows() {
        let src: IpAddr = row.src.parse().expect("src");
        let (port, proto) = port_and_proto(row.app);
        let before = counts(&mut datapath, 3);
        let action = run_frame(&mut datapath, &frame(src, proto, port));
        let after = counts(&mut datapath, 3);
        let want_action = if row.verdict == Verdict::ToAgent {
            XDP_PASS
        } else {
            XDP_DROP
        };
        let want_moves = vec![(Some(row.app), row.verdict.name())];
        let moves = moved(&before, &after);
        if action != want_action || moves != want_moves {
            failures.push(format!(
                "{} ({}): action {action} (want {want_action}), moved {moves:?} (want {want_moves:?})",
                row.name, row.src
            ));
        }
        // The kernel, the agent's view of the kernel and the pure model agree.
        if row.app != 2 {
            let kernel = datapath.rule_for(src).expect("lookup").map(|d| d.0);
            let model = decide(&set, src).map(|d| d.0);
            let blocked = row.verdict != Verdict::ToAgent;
            if kernel != model || (kernel == Some(RULE_BLOCK)) != blocked {
                failures.push(format!(
                    "{}: kernel lookup {kernel:?}, model {model:?}, blocked {blocked}",
                    row.name
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_new_rule_set_replaces_the_old_one_whole() {
    if !root_or_skip("a_new_rule_set_replaces_the_old_one_whole") {
        return;
    }
    let config = config();
    let mut datapath = datapath(&config);
    let blocked = frame("10.9.0.1".parse().expect("ip"), PROTO_TCP, 80);
    // Before any rules: allowed.
    assert_eq!(run_frame(&mut datapath, &blocked), XDP_PASS);
    let full = rule_set(&config);
    let first = datapath.load_rules(&full).expect("load");
    assert_eq!(run_frame(&mut datapath, &blocked), XDP_DROP);
    // A set without the ip rule: that client passes, the range still blocks.
    let mut fewer = config.clone();
    fewer.access_rules.remove(0);
    let second = datapath.load_rules(&rule_set(&fewer)).expect("reload");
    assert_ne!(first.generation, second.generation);
    assert_eq!(run_frame(&mut datapath, &blocked), XDP_PASS);
    let range = frame("10.8.3.3".parse().expect("ip"), PROTO_TCP, 80);
    assert_eq!(run_frame(&mut datapath, &range), XDP_DROP);
    // The old generation's prefixes are gone from the trie.
    let entries = datapath.rule_prefix_count().expect("count");
    assert_eq!(entries, rule_set(&fewer).len());
    // And an empty set allows everyone.
    datapath.load_rules(&RuleSet::default()).expect("empty");
    assert_eq!(run_frame(&mut datapath, &range), XDP_PASS);
    assert_eq!(datapath.rule_prefix_count().expect("count"), 0);
    assert_eq!(
        datapath
            .rule_for("10.8.3.3".parse().expect("ip"))
            .expect("lookup"),
        None
    );
}

#[test]
fn a_block_is_reported_once_per_sampling_gap() {
    if !root_or_skip("a_block_is_reported_once_per_sampling_gap") {
        return;
    }
    let config = config();
    let mut datapath = datapath(&config);
    datapath.load_rules(&rule_set(&config)).expect("load");
    let mut ring = datapath.take_block_events().expect("ring");
    let src: IpAddr = "fd07::9".parse().expect("ip");
    for _ in 0..50 {
        assert_eq!(
            run_frame(&mut datapath, &frame(src, PROTO_UDP, 53)),
            XDP_DROP
        );
    }
    let mut events = Vec::new();
    while let Some(item) = ring.next() {
        assert!(item.len() >= size_of::<BlockEvent>());
        // SAFETY: long enough; plain data.
        events.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<BlockEvent>()) });
    }
    // 50 drops in far less than the gap per CPU: one event per CPU used
    // (the test runs on one CPU at a time, but may move between runs).
    assert!(
        !events.is_empty() && events.len() < 50,
        "{} events",
        events.len()
    );
    let event = events[0];
    assert_eq!(IpAddr::from(Ipv6Addr::from(event.src)), src);
    assert_eq!((event.src_port, event.dst_port), (40000, 53));
    assert_eq!((event.app, event.rule), (1, 4));
    assert_eq!(event.verdict, Verdict::BlockedAsn as u8);
    assert_eq!(event.proto, PROTO_UDP);
}
