//! The access-rule fixtures as data: the config and what the GeoIP
//! databases would say for it, and a table of clients, each with the app
//! it reaches and the verdict it must get ([`clients`]), which [`rows`]
//! turns into the runner's rows.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proxy_agent::access::geoip::GeoPrefixes;
use proxy_common::Verdict;
use tests::packet::*;

use crate::fixture::{Output::Unchanged, Row, XDP_DROP, XDP_PASS};

const EDGE4: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 1);
const EDGE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1);

/// Agent-path apps (PROXY headers), so a packet that is not dropped is
/// passed up (`to_agent`) without needing routes: app 0 TCP and app 1 UDP
/// with `ip_firewall`, app 2 TCP without.
pub const CONFIG: &str = r#"{
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
pub fn geo() -> GeoPrefixes {
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

pub fn frame(src: IpAddr, proto: u8, dst_port: u16) -> Vec<u8> {
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

/// A client of an app and the verdict the rules give it.
pub struct Client {
    pub name: &'static str,
    pub src: &'static str,
    /// App index: 0 TCP firewalled, 1 UDP firewalled, 2 TCP open.
    pub app: u32,
    pub verdict: Verdict,
}

pub fn clients() -> Vec<Client> {
    use Verdict::*;
    let row = |name, src, app, verdict| Client {
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

/// Each client's SYN or query to its app: passed up (`to_agent`) or
/// dropped, moving the app's verdict counter, the frame unchanged.
pub fn rows() -> Vec<Row> {
    clients()
        .into_iter()
        .map(|client| {
            let (port, proto) = port_and_proto(client.app);
            let src: IpAddr = client.src.parse().expect("src");
            Row {
                name: format!("{} ({})", client.name, client.src),
                ingress: None,
                input: frame(src, proto, port),
                action: if client.verdict == Verdict::ToAgent {
                    XDP_PASS
                } else {
                    XDP_DROP
                },
                moves: vec![(Some(client.app), client.verdict.name())],
                output: Unchanged,
            }
        })
        .collect()
}
