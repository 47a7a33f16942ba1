//! BPF_PROG_TEST_RUN fixtures of the access rules: for each target kind
//! (ip, ip range, ASN, country), IPv4 and IPv6 clients, block, allow,
//! allow over a broader or narrower block, an app with `ip_firewall` off,
//! and no matching rule. The clients are a table (`rows.rs`) the runner
//! (`fixture/`) feeds to the XDP program. ASN and country networks are
//! given directly (the GeoIP database reader has its own tests and the
//! netns suite).
use std::net::{IpAddr, Ipv6Addr};

use proxy_agent::{
    config::model::Config,
    kernel::rules::{RuleSet, compile, decide},
};
use proxy_common::{BlockEvent, RULE_BLOCK, Verdict};
use tests::{
    packet::{PROTO_TCP, PROTO_UDP},
    root_or_skip,
};

#[path = "../fixture/mod.rs"]
mod fixture;
mod rows;

use fixture::{Hook, Tester, XDP_DROP, XDP_PASS};
use rows::{CONFIG, clients, frame, geo, rows};

fn config() -> Config {
    fixture::config(CONFIG)
}

fn rule_set(config: &Config) -> RuleSet {
    compile(&config.access_rules, &geo()).expect("fits")
}

fn loaded(config: &Config) -> Tester {
    Tester::new(config, &[Hook::Xdp])
}

#[test]
fn access_rule_fixtures() {
    if !root_or_skip("access_rule_fixtures") {
        return;
    }
    let config = config();
    let set = rule_set(&config);
    let mut tester = loaded(&config);
    tester.kernel().load_rules(&set).expect("load rules");
    tester.check_rows(Hook::Xdp, &rows());
    the_kernel_and_the_model_agree_on_each_firewalled_client(&mut tester, &set);
}

/// The kernel, the agent's view of the kernel and the pure model agree.
fn the_kernel_and_the_model_agree_on_each_firewalled_client(tester: &mut Tester, set: &RuleSet) {
    let mut failures = Vec::new();
    for client in clients().iter().filter(|client| client.app != 2) {
        let src: IpAddr = client.src.parse().expect("src");
        let kernel = tester.kernel().rule_for(src).expect("lookup").map(|d| d.0);
        let model = decide(set, src).map(|d| d.0);
        let blocked = client.verdict != Verdict::ToAgent;
        if kernel != model || (kernel == Some(RULE_BLOCK)) != blocked {
            failures.push(format!(
                "{}: kernel lookup {kernel:?}, model {model:?}, blocked {blocked}",
                client.name
            ));
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
    let mut tester = loaded(&config);
    let blocked = frame("10.9.0.1".parse().expect("ip"), PROTO_TCP, 80);
    // Before any rules: allowed.
    assert_eq!(tester.run(Hook::Xdp, None, &blocked).0, XDP_PASS);
    let full = rule_set(&config);
    let first = tester.kernel().load_rules(&full).expect("load");
    assert_eq!(tester.run(Hook::Xdp, None, &blocked).0, XDP_DROP);
    // A set without the ip rule: that client passes, the range still blocks.
    let mut fewer = config.clone();
    fewer.access_rules.remove(0);
    let second = tester
        .kernel()
        .load_rules(&rule_set(&fewer))
        .expect("reload");
    assert_ne!(first.generation, second.generation);
    assert_eq!(tester.run(Hook::Xdp, None, &blocked).0, XDP_PASS);
    let range = frame("10.8.3.3".parse().expect("ip"), PROTO_TCP, 80);
    assert_eq!(tester.run(Hook::Xdp, None, &range).0, XDP_DROP);
    // The old generation's prefixes are gone from the trie.
    let entries = tester.kernel().rule_prefix_count().expect("count");
    assert_eq!(entries, rule_set(&fewer).len());
    an_empty_rule_set_allows_everyone(&mut tester, &range);
}

fn an_empty_rule_set_allows_everyone(tester: &mut Tester, range: &[u8]) {
    let kernel = tester.kernel();
    kernel.load_rules(&RuleSet::default()).expect("empty");
    assert_eq!(tester.run(Hook::Xdp, None, range).0, XDP_PASS);
    let kernel = tester.kernel();
    assert_eq!(kernel.rule_prefix_count().expect("count"), 0);
    assert_eq!(
        kernel
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
    let mut tester = loaded(&config);
    tester
        .kernel()
        .load_rules(&rule_set(&config))
        .expect("load");
    let mut ring = tester.kernel().take_block_events().expect("ring");
    let src: IpAddr = "fd07::9".parse().expect("ip");
    for _ in 0..50 {
        assert_eq!(
            tester.run(Hook::Xdp, None, &frame(src, PROTO_UDP, 53)).0,
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
