//! A real, full GeoIP country database (ip-location-db's, installed by
//! `cargo xtask setup`): every network of one country expanded, merged,
//! loaded into the kernel's rule trie and enforced by the XDP program.
//! Prints the counts and times (`--nocapture`).
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::Path,
    time::Instant,
};

use ipnet::IpNet;
use maxminddb::{Reader, path};
use proxy_agent::{
    access::geoip::{GeoPrefixes, country_prefixes},
    config::model::Config,
    kernel::rules::compile,
};
use proxy_common::{RULE_BLOCK, RULE_KIND_COUNTRY, Verdict};
use tests::{packet::*, root_or_skip};

mod fixture;

use fixture::{Hook, Tester, XDP_DROP, XDP_PASS};

/// Where `cargo xtask setup` installs it.
const DATABASE: &str = "/usr/local/share/proxy-agent/geoip/geo-whois-asn-country.mmdb";
const BLOCKED: &str = "DE";
/// Its addresses give the control clients, which no rule names.
const OTHER: &str = "FR";

const EDGE4: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 1);
const EDGE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1);

/// One firewalled agent-path app (PROXY headers): a packet the rules let
/// through is passed up (`to_agent`) without needing routes.
fn config() -> Config {
    let text = format!(
        r#"{{
  "edge": {{"interfaces": ["lo"], "geoip": {{"country_db": "{DATABASE}"}}}},
  "apps": [
    {{"protocol": "tcp/80", "dns": {{"type": "ADDRESS", "name": "walled.test"}},
     "edge_ips": {{"type": "static", "ips": ["10.0.100.1", "fd00:100::1"]}},
     "origin_direct": ["tcp://10.0.2.2:80"], "proxy_protocol": "v1", "ip_firewall": true}}
  ],
  "access_rules": [
    {{"mode": "block", "configuration": {{"target": "country", "value": "{BLOCKED}"}}}}
  ]
}}"#
    );
    fixture::config(&text)
}

/// A TCP SYN from `src` to the app.
fn syn_from(src: IpAddr) -> Vec<u8> {
    match src {
        IpAddr::V4(_) => syn(src, EDGE4.into(), 80),
        IpAddr::V6(_) => syn(src, EDGE6.into(), 80),
    }
}

/// The first address of the middle IPv4 and the middle IPv6 network.
fn sample_clients(nets: &[IpNet]) -> Vec<IpAddr> {
    [false, true]
        .into_iter()
        .filter_map(|ipv6| {
            let family: Vec<&IpNet> = nets
                .iter()
                .filter(|n| matches!(n, IpNet::V6(_)) == ipv6)
                .collect();
            family.get(family.len() / 2).map(|n| n.network())
        })
        .collect()
}

/// Whether the database is there; when it is not, the test fails under
/// `cargo xtask test` and is skipped (with a message) otherwise.
fn database_or_skip(test: &str) -> bool {
    if Path::new(DATABASE).exists() {
        return true;
    }
    assert!(
        std::env::var_os("PROXY_TESTS_REQUIRE_ROOT").is_none(),
        "{test}: {DATABASE} is missing: run `cargo xtask setup`"
    );
    eprintln!("skipped {test}: {DATABASE} is missing (`cargo xtask setup` installs it)");
    false
}

#[test]
fn a_whole_country_from_a_full_database_is_blocked_in_xdp() {
    let test = "a_whole_country_from_a_full_database_is_blocked_in_xdp";
    if !root_or_skip(test) || !database_or_skip(test) {
        return;
    }
    let config = config();
    let started = Instant::now();
    let wanted: BTreeSet<String> = [BLOCKED, OTHER].map(String::from).into();
    let mut countries = country_prefixes(Path::new(DATABASE), &wanted).expect("read the database");
    let expansion = started.elapsed();
    let others = countries.remove(OTHER).expect("asked for");
    let geo = GeoPrefixes {
        countries,
        ..Default::default()
    };
    let set = compile(&config.access_rules, &geo).expect("fits in one generation");
    let listed = geo.countries[BLOCKED].len();
    let merged = set.per_rule[0].merged;

    let mut tester = Tester::new(&config, &[Hook::Xdp]);
    let kernel = tester.kernel();
    let loaded = kernel
        .load_rules(&set)
        .expect("load the country's prefixes");
    eprintln!(
        "{BLOCKED}: {listed} networks -> {merged} prefixes; expansion {} ms, kernel load {} ms",
        expansion.as_millis(),
        loaded.elapsed.as_millis()
    );

    assert!(listed >= 1000, "only {listed} networks for {BLOCKED}");
    assert!(merged <= listed && merged > 0, "{listed} -> {merged}");
    assert_eq!((set.len(), loaded.prefixes), (merged, merged));
    assert_eq!(kernel.rule_prefix_count().expect("walk the trie"), merged);

    let reader = Reader::open_readfile(DATABASE).expect("open the database");
    let country_of = |ip: IpAddr| -> Option<String> {
        reader
            .lookup(ip)
            .expect("lookup")
            .decode_path(&path!["country_code"])
            .expect("decode")
    };
    let blocked = sample_clients(&geo.countries[BLOCKED]);
    let allowed = sample_clients(&others);
    assert_eq!((blocked.len(), allowed.len()), (2, 2), "v4 and v6 clients");
    for (clients, country, want_action) in
        [(&blocked, BLOCKED, XDP_DROP), (&allowed, OTHER, XDP_PASS)]
    {
        for &client in clients {
            assert_eq!(country_of(client).as_deref(), Some(country), "{client}");
            let rule = tester
                .kernel()
                .rule_for(client)
                .expect("kernel lookup")
                .map(|(action, value)| (action, value.kind, value.rule));
            let want_rule = (want_action == XDP_DROP).then_some((RULE_BLOCK, RULE_KIND_COUNTRY, 0));
            assert_eq!(rule, want_rule, "{client} ({country})");

            let ran = tester.run_counted(Hook::Xdp, None, &syn_from(client), None);
            let verdict = if want_action == XDP_DROP {
                Verdict::BlockedCountry
            } else {
                Verdict::ToAgent
            };
            assert_eq!(ran.action, want_action, "{client} ({country})");
            assert_eq!(
                ran.moves,
                vec![(Some(0), verdict.name())],
                "{client} ({country})"
            );
        }
    }
}
