//! The agent's TCP path over time: an `origin_dns` answer that changes and a
//! DNS outage, the connection limit, and draining at shutdown. Real peers:
//! dnsmasq and socat origins in `org`, socat and bash clients in `cli`.
use std::time::{Duration, Instant};

use tests::{
    agent::Agent,
    client::{socat, tcp_exchange},
    config::{AppJson, ConfigBuilder, org4},
    netns::{Netns, Topology, addr},
    process::Background,
    servers,
};

/// The agent-path app every test here uses: PROXY v1 on tcp/2000 of the
/// first pool address.
const EDGE: &str = "10.0.100.1";
const PORT: u16 = 2000;

/// The one PROXY v1 app; the test adds its origin.
fn app() -> AppJson {
    AppJson::tcp(PORT, "app.test").proxy_protocol("v1")
}

/// A config with that app toward the echo on `org`:3000.
fn direct_config(edge: ConfigBuilder) -> String {
    edge.app(app().origin_direct([org4("tcp", 3000)])).build()
}

/// The origin's greeting through the app (its first line).
fn greeting(cli: &Netns) -> anyhow::Result<String> {
    let reply = tcp_exchange(cli, EDGE, PORT, "hello")?;
    Ok(reply.lines().next().unwrap_or_default().to_owned())
}

/// How long a change of the origin's DNS answer may take to be followed:
/// the agent asks again on its 5 s floor; this is far above that (a loaded
/// machine's margin) and far below the app's 600 s TTL, which is what the
/// test tells apart.
const FOLLOW_LIMIT: Duration = Duration::from_secs(90);
/// Waits for what must happen soon (a connection through, a count
/// flushed, slots freed): a hang guard, each poll ends once it held.
const SOON: Duration = Duration::from_secs(60);

/// Polls `check` every 200 ms for up to `limit`; true once it held.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn origin_dns_answers_are_followed_and_an_outage_keeps_the_last_one() {
    let Some(topology) = Topology::for_test(
        "origin_dns_answers_are_followed_and_an_outage_keeps_the_last_one",
        "odns",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    // One origin per address, each greeting with its family.
    let _origins: Vec<Background> = [
        format!("TCP4-LISTEN:3100,fork,reuseaddr,bind={}", addr::ORG_V4),
        format!("TCP6-LISTEN:3100,fork,reuseaddr,bind=[{}]", addr::ORG_V6),
    ]
    .iter()
    .zip(["v4", "v6"])
    .map(|(listen, family)| {
        // No colons: socat would split the command at them.
        let greet = format!("SYSTEM:echo origin {family}; exec cat");
        org.spawn("addr-echo", "socat", &[listen, &greet])
            .expect("origin")
    })
    .collect();
    servers::wait_listening(org, "t", 3100).expect("origin listens");
    // dnsmasq gives its records a TTL of 0: the agent asks again every
    // 5 s (its floor), long before the app's ttl of 600 s.
    let dns =
        |answer: &str| servers::dns(org, addr::ORG_V4, "origin.test", &[answer]).expect("dnsmasq");
    let mut server = Some(dns(addr::ORG_V4));
    let config = ConfigBuilder::new()
        .resolver(addr::ORG_V4)
        .app(app().origin_dns("origin.test", 600, 3100))
        .build();
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    let first = greeting(cli).unwrap_or_else(|e| panic!("{e:#}\n{}", agent.log()));
    assert_eq!(first, "origin v4");

    // The answer changes: new connections follow once the record expires.
    drop(server.take());
    server = Some(dns(addr::ORG_V6));
    let changed = Instant::now();
    let followed = eventually(FOLLOW_LIMIT, || {
        greeting(cli).is_ok_and(|line| line == "origin v6")
    });
    assert!(
        followed,
        "still the old origin: {:?}\n{}",
        greeting(cli),
        agent.log()
    );
    // On the agent's 5 s floor, not the app's 600 s TTL.
    assert!(changed.elapsed() < FOLLOW_LIMIT, "{:?}", changed.elapsed());
    assert!(agent.log().contains("origin addresses changed"));

    // DNS goes away: the failed refresh is logged, the last answer stays.
    drop(server.take());
    let failed = eventually(FOLLOW_LIMIT, || agent.log().contains("keeping 1 addresses"));
    assert!(failed, "no failed refresh seen\n{}", agent.log());
    let during = greeting(cli).unwrap_or_else(|e| panic!("{e:#}\n{}", agent.log()));
    assert_eq!(during, "origin v6");

    // DNS is back with another answer: followed again.
    let _server = dns(addr::ORG_V4);
    let followed = eventually(FOLLOW_LIMIT, || {
        greeting(cli).is_ok_and(|line| line == "origin v4")
    });
    assert!(followed, "not followed after the outage\n{}", agent.log());
}

/// A client that connects to the app and holds its connection open,
/// printing what it receives, until the test drops it (or 10 minutes, a
/// hang guard: a hold that ended on its own would free a slot early).
fn holder(cli: &Netns) -> Background {
    let script = format!("exec 3<>/dev/tcp/{EDGE}/{PORT} && exec timeout 600 cat <&3");
    cli.spawn("holder", "bash", &["-c", &script])
        .expect("holder")
}

#[test]
fn connections_over_the_limit_are_refused_counted_and_slots_come_back() {
    let Some(topology) = Topology::for_test(
        "connections_over_the_limit_are_refused_counted_and_slots_come_back",
        "lim",
    ) else {
        return;
    };
    let _origin = servers::tcp_echo(&topology.org, 3000).expect("origin");
    let config = direct_config(
        ConfigBuilder::new().edge("tcp_proxy", serde_json::json!({"max_connections": 2})),
    );
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    let holders = [holder(&topology.cli), holder(&topology.cli)];
    let both_in = eventually(SOON, || {
        holders.iter().all(|h| h.log().contains("origin 3000"))
    });
    assert!(both_in, "holders not through\n{}", agent.log());
    // Bytes are counted as they move: the origin's greetings show while
    // both connections are still open (none closed yet).
    let row = |verdict: &str| {
        agent
            .stats()
            .expect("stats")
            .into_iter()
            .find(|row| row["app"].as_u64() == Some(0) && row["verdict"] == verdict)
    };
    let counted = eventually(SOON, || {
        row("conn_closed").is_some_and(|r| r["bytes"].as_u64() > Some(0))
    });
    assert!(
        counted,
        "no bytes counted for open connections\n{}",
        agent.log()
    );
    let closed = row("conn_closed").map_or(0, |r| r["packets"].as_u64().unwrap_or(0));
    assert_eq!(closed, 0);

    // The third is closed at once by the agent, without reaching the
    // origin: well before the client's own 45 s idle timeout would end it.
    let started = Instant::now();
    let target = format!("TCP:{EDGE}:{PORT},connect-timeout=3");
    let third = socat(&topology.cli, &["-t3", "-T45", "-", &target], b"third\n")
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    assert!(!third.contains("origin"), "{third:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let limited = agent
        .packets_settled(Some(0), "conn_limited", 1)
        .expect("stats");
    assert_eq!(limited, 1, "{}", agent.log());
    assert!(agent.log().contains("over the connection limit"));

    // The holders leave: their slots are free again.
    drop(holders);
    let free = eventually(SOON, || {
        greeting(&topology.cli).is_ok_and(|line| line == "origin 3000")
    });
    assert!(free, "slots not released\n{}", agent.log());
}

#[test]
fn shutdown_refuses_new_connections_and_drains_live_ones() {
    let Some(topology) = Topology::for_test(
        "shutdown_refuses_new_connections_and_drains_live_ones",
        "drn",
    ) else {
        return;
    };
    let _origin = servers::tcp_echo(&topology.org, 3000).expect("origin");
    let config = direct_config(ConfigBuilder::new());
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    // A client that sends a line, waits 3 s, sends another, then closes.
    let script =
        format!("(echo one; sleep 3; echo two) | socat -t5 - TCP:{EDGE}:{PORT},connect-timeout=3");
    let live = topology
        .cli
        .spawn("live", "bash", &["-c", &script])
        .expect("client");
    let connected = eventually(SOON, || live.log().contains("one"));
    assert!(connected, "{}\n{}", live.log(), agent.log());

    agent.terminate().expect("SIGTERM");
    // The agent has the signal, then a moment to close its listener (it
    // logs nothing once it has, so this last wait is a fixed one).
    let signalled = eventually(SOON, || agent.log().contains("SIGTERM received"));
    assert!(signalled, "{}", agent.log());
    std::thread::sleep(Duration::from_millis(500));
    // Draining: new connections are refused, the live one goes on.
    let refused = tcp_exchange(&topology.cli, EDGE, PORT, "late");
    assert!(
        refused
            .as_ref()
            .map_or(true, |reply| !reply.contains("origin")),
        "{refused:?}"
    );
    let (status, out) = live.wait(SOON).expect("client ends");
    assert!(status.success(), "{status}: {out}");
    assert!(out.contains("one\ntwo\n"), "{out:?}");
    let (status, log) = agent.wait(SOON).expect("agent exits");
    assert!(status.success(), "{status}\n{log}");
    assert!(log.contains("TCP path drained"), "{log}");
}

#[test]
fn only_edge_interfaces_and_loopback_reach_the_agent_path() {
    let Some(topology) = Topology::for_test(
        "only_edge_interfaces_and_loopback_reach_the_agent_path",
        "side",
    ) else {
        return;
    };
    let side = topology.side().expect("side host");
    let _origin = servers::tcp_echo(&topology.org, 3000).expect("origin");
    let config = direct_config(ConfigBuilder::new());
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    // Through an edge interface (XDP checked the access rules), and from
    // the edge host itself: proxied.
    for (host, ns) in [("cli", &topology.cli), ("edge", &topology.edge)] {
        let line = greeting(ns).unwrap_or_else(|e| panic!("{host}: {e:#}\n{}", agent.log()));
        assert_eq!(line, "origin 3000", "{host}");
    }
    // Through an interface without XDP, where no access rule ran: not
    // steered to the agent, so nothing listens (refused).
    let reply = tcp_exchange(&side, EDGE, PORT, "hello");
    assert!(
        reply.as_ref().map_or(true, |r| !r.contains("origin")),
        "{reply:?}"
    );
    let accepted = agent
        .packets_settled(Some(0), "conn_accepted", 2)
        .expect("stats");
    assert_eq!(accepted, 2, "{}", agent.log());
}
