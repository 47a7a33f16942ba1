//! The agent's UDP path end to end: UDP apps with a PROXY v2 header (first
//! datagram of a flow, or every datagram) and with Simple Proxy Protocol.
//! Clients are socat in `cli`; origins in `org` are `udp-pp-origin`, this
//! crate's own decoder (written from the formats, not the agent's code),
//! which answers with the client and proxy addresses it decoded.
use tests::{
    agent::Agent,
    client::udp_exchange_from,
    config::{AppJson, ConfigBuilder},
    netns::{
        Netns, Topology,
        addr::{self, edge4, edge6},
    },
    process::Background,
    servers,
};

struct Setup {
    topology: Topology,
    agent: Agent,
    _origins: Vec<Background>,
}

/// (protocol, proxy_protocol fields, origin port, origin mode, origin reply)
/// Fields of an app beyond its protocol and origin (key, value).
type Fields = &'static [(&'static str, &'static str)];

const APPS: [(&str, Fields, u16, &str, &str); 7] = [
    // 0: PROXY v2 on the first datagram of each flow (Spectrum's way)
    ("udp/5000", &[("proxy_protocol", "v2")], 7000, "v2", "ok"),
    // 1: PROXY v2 on every datagram
    (
        "udp/5001",
        &[
            ("proxy_protocol", "v2"),
            ("proxy_protocol_udp", "every_datagram"),
        ],
        7001,
        "v2",
        "ok",
    ),
    // 2: SPP both ways
    (
        "udp/5002",
        &[("proxy_protocol", "simple")],
        7002,
        "spp",
        "ok",
    ),
    // 3-5: SPP origins whose replies must be dropped
    (
        "udp/5003",
        &[("proxy_protocol", "simple")],
        7003,
        "spp",
        "short",
    ),
    (
        "udp/5004",
        &[("proxy_protocol", "simple")],
        7004,
        "spp",
        "bad-magic",
    ),
    (
        "udp/5005",
        &[("proxy_protocol", "simple")],
        7005,
        "spp",
        "other-client",
    ),
    // 6: an SPP range: edge 6005 reaches origin 7105 only
    (
        "udp/6000-6010",
        &[("proxy_protocol", "simple")],
        7105,
        "spp",
        "ok",
    ),
];

/// None when the test may not run (see [`Topology::for_test`]).
fn setup(test: &str, tag: &str, edge: ConfigBuilder) -> Option<Setup> {
    let topology = Topology::for_test(test, tag)?;
    let mut origins = Vec::new();
    let mut apps = Vec::new();
    for (i, (protocol, pp, port, mode, reply)) in APPS.iter().enumerate() {
        origins.push(servers::udp_pp_origin(&topology.org, *port, mode, reply).expect("origin"));
        let origin_port = if protocol.contains('-') {
            "7100-7110".to_string()
        } else {
            port.to_string()
        };
        let app = AppJson::new(protocol, &format!("u{i}.test")).origin_dns(
            "origin.test",
            600,
            origin_port,
        );
        apps.push(
            pp.iter()
                .fold(app, |app, (key, value)| app.set(key, *value)),
        );
    }
    // Direct origins would do; a name also shows origin_dns on this path.
    origins.push(
        servers::dns(&topology.org, addr::ORG_V4, "origin.test", &[addr::ORG_V4]).expect("dns"),
    );
    let config = edge.resolver(addr::ORG_V4).apps(apps).build();
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    Some(Setup {
        topology,
        agent,
        _origins: origins,
    })
}

/// Sends `line` from `from` (`ip:port`, `[v6]:port`) to `ip:port`;
/// returns the reply's first line ("" when none came within 2 s).
fn exchange(cli: &Netns, from: &str, ip: &str, port: u16, line: &str) -> String {
    udp_exchange_from(cli, from, ip, port, line)
        .unwrap_or_else(|e| panic!("{from} -> {ip}:{port}: {e:#}"))
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn origins_learn_the_real_client_through_proxy_v2_and_spp() {
    let Some(s) = setup(
        "origins_learn_the_real_client_through_proxy_v2_and_spp",
        "udp",
        ConfigBuilder::new(),
    ) else {
        return;
    };
    let cli = &s.topology.cli;
    for (family, client, edge) in [
        ("v4", addr::CLI_V4.to_string(), edge4 as fn(usize) -> String),
        ("v6", format!("[{}]", addr::CLI_V6), edge6),
    ] {
        let bracket = |ip: String| {
            if family == "v6" {
                format!("[{ip}]")
            } else {
                ip
            }
        };
        // Two datagrams of one flow (same client port) per app: the count
        // of headers the origin saw tells first-datagram from every-datagram.
        for (app, port, headers_after_two) in [(0, 5000, 1), (1, 5001, 2), (2, 5002, 2)] {
            let cport = 41000 + app as u16 + if family == "v6" { 100 } else { 0 };
            let from = format!("{client}:{cport}");
            let want = |n: u32, payload: &str| {
                format!(
                    "client={client}:{cport} proxy={}:{port} headers={n} payload={payload}",
                    bracket(edge(app))
                )
            };
            let first = exchange(cli, &from, &edge(app), port, "one");
            assert_eq!(
                first,
                want(1, "one"),
                "app {app} {family}\n{}",
                s.agent.log()
            );
            let second = exchange(cli, &from, &edge(app), port, "two");
            assert_eq!(second, want(headers_after_two, "two"), "app {app} {family}");
        }
        // The SPP range: edge 6005 -> origin 7105, header names 6005.
        let from = format!("{client}:42006");
        let reply = exchange(cli, &from, &edge(6), 6005, "range");
        let want = format!(
            "client={client}:42006 proxy={}:6005 headers=1 payload=range",
            bracket(edge(6))
        );
        assert_eq!(reply, want, "{family}");
    }
    // One flow per (client, app) and family: each app opened two flows.
    for app in [0, 1, 2] {
        let flows = s
            .agent
            .packets_settled(Some(app), "conn_accepted", 2)
            .expect("stats");
        assert_eq!(flows, 2, "app {app}\n{}", s.agent.log());
    }
}

#[test]
fn bad_spp_replies_are_dropped_and_counted() {
    let Some(s) = setup(
        "bad_spp_replies_are_dropped_and_counted",
        "udpbad",
        ConfigBuilder::new(),
    ) else {
        return;
    };
    let cli = &s.topology.cli;
    // Short header, wrong magic, another client named: nothing reaches the
    // client, each is counted.
    for app in [3, 4, 5] {
        let port = 5000 + app as u16;
        let from = format!("{}:{}", addr::CLI_V4, 43000 + app as u16);
        let reply = exchange(cli, &from, &edge4(app), port, "x");
        assert_eq!(reply, "", "app {app} forwarded a bad reply");
        let bad = s
            .agent
            .packets_settled(Some(app as u64), "bad_reply", 1)
            .expect("stats");
        assert_eq!(bad, 1, "app {app}\n{}", s.agent.log());
    }
    // The good app next to them still answers.
    let from = format!("{}:43002", addr::CLI_V4);
    let reply = exchange(cli, &from, &edge4(2), 5002, "ok");
    assert!(reply.ends_with("payload=ok"), "{reply:?}");
}

#[test]
fn udp_flows_end_when_idle_and_the_flow_limit_holds() {
    let Some(s) = setup(
        "udp_flows_end_when_idle_and_the_flow_limit_holds",
        "udplim",
        ConfigBuilder::new().edge(
            "udp_proxy",
            serde_json::json!({"idle_timeout": 6, "max_flows": 2}),
        ),
    ) else {
        return;
    };
    let cli = &s.topology.cli;
    let send = |cport: u16| {
        let from = format!("{}:{cport}", addr::CLI_V4);
        exchange(cli, &from, &edge4(2), 5002, "hi")
    };
    // Both flows open at once, so the third client comes one exchange (2 s)
    // into their 6 s, not two: a loaded machine's delays do not let them
    // expire first.
    std::thread::scope(|scope| {
        let first = scope.spawn(|| send(44001));
        let second = scope.spawn(|| send(44002));
        for flow in [first, second] {
            assert!(flow.join().expect("client thread").ends_with("payload=hi"));
        }
    });
    // A third client while two flows live: dropped, counted.
    assert_eq!(send(44003), "");
    let limited = s
        .agent
        .packets_settled(Some(2), "conn_limited", 1)
        .expect("stats");
    assert_eq!(limited, 1, "{}", s.agent.log());
    // After the idle timeout both flows are gone, and a new one opens.
    let closed = s
        .agent
        .packets_settled(Some(2), "conn_closed", 2)
        .expect("stats");
    assert_eq!(closed, 2, "{}", s.agent.log());
    assert!(send(44003).ends_with("payload=hi"));
}
