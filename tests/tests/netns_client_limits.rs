//! Per-client limits end to end: one client (`cli`) over its bound is
//! refused and counted (`client_limited`), while another host (`side`)
//! still gets through; on the fast path (the kernel drops the SYN) and on
//! the agent's TCP path (the agent closes the accepted connection).
//! Counts, not timing: the rate check measures its own elapsed time.
use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use serde_json::json;
use tests::{
    agent::Agent,
    client::{tcp_exchange, udp_exchange},
    config::{AppJson, ConfigBuilder},
    netns::{Topology, addr},
    servers,
};

/// A connect that gets no SYN-ACK in this long was refused by the kernel
/// (a dropped SYN is not retransmitted for a second; local veths answer
/// in well under a millisecond even on a loaded machine).
const REFUSED_AFTER: Duration = Duration::from_millis(500);

fn edge(app: usize, port: u16) -> SocketAddr {
    format!("{}:{port}", addr::edge4(app))
        .parse()
        .expect("addr")
}

/// Connects and exchanges one line (`true`), or fails to (`false`):
/// no handshake, or the agent closed the connection without an echo.
fn exchange(to: SocketAddr) -> (bool, Option<TcpStream>) {
    let Ok(mut stream) = TcpStream::connect_timeout(&to, REFUSED_AFTER) else {
        return (false, None);
    };
    // A hang guard only: the echo comes back at once.
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"hello\n").is_err() {
        return (false, None);
    }
    let mut buf = [0u8; 256];
    match stream.read(&mut buf) {
        Ok(n) if n > 0 => (true, Some(stream)),
        _ => (false, None),
    }
}

#[test]
fn concurrent_and_rate_bounds_per_client() {
    let Some(topology) = Topology::for_test(
        "netns_client_limits::concurrent_and_rate_bounds_per_client",
        "clim",
    ) else {
        return;
    };
    let side = topology.side().expect("side host");
    let _echo = servers::tcp_echo(&topology.org, 8080).expect("echo origin");
    let origin = format!("tcp://{}:8080", addr::ORG_V4);
    let concurrent = json!({"concurrent_flows": 3, "new_flows_per_second": 0});
    let rate = json!({"concurrent_flows": 0, "new_flows_per_second": 1, "burst": 3});
    let app = |port: u16, name: &str| {
        AppJson::tcp(port, &format!("{name}.test")).origin_direct([origin.clone()])
    };
    let config = ConfigBuilder::new()
        .edge(
            "interfaces",
            json!([addr::EDGE_CLI_IF, addr::EDGE_ORG_IF, addr::EDGE_SIDE_IF]),
        )
        .apps([
            // 0: fast path, 3 flows at once per client.
            app(7000, "fast").set("client_limits", concurrent.clone()),
            // 1: agent path (PROXY v1), 3 connections at once per client.
            app(7001, "agent")
                .proxy_protocol("v1")
                .set("client_limits", concurrent),
            // 2, 3: the rate, fast path and agent path.
            app(7002, "fastrate").set("client_limits", rate.clone()),
            app(7003, "agentrate")
                .proxy_protocol("v1")
                .set("client_limits", rate),
        ])
        .build();
    let agent = Agent::start(&topology.edge, &config, "skb").expect("agent");
    let enter = topology.cli.enter_handle();
    let (fast, agent_path, fast_rate, agent_rate, _holding) = std::thread::spawn(move || {
        enter().expect("enter cli");
        let (mut results, mut holding) = (Vec::new(), Vec::new());
        for (app, port) in [(0, 7000), (1, 7001)] {
            let held: Vec<TcpStream> = (0..3).filter_map(|_| exchange(edge(app, port)).1).collect();
            let fourth = exchange(edge(app, port)).0;
            results.push((held.len(), fourth));
            // Still open while the other host tries (after the join).
            holding.push(held);
        }
        let mut rates = Vec::new();
        for (app, port) in [(2, 7002), (3, 7003)] {
            let start = Instant::now();
            let attempts = 12;
            let accepted = (0..attempts)
                .filter(|_| exchange(edge(app, port)).0)
                .count();
            rates.push((accepted, attempts, start.elapsed()));
        }
        (results[0], results[1], rates[0], rates[1], holding)
    })
    .join()
    .expect("client thread");
    assert_eq!(fast, (3, false), "fast path: 3 held, the 4th refused");
    assert_eq!(
        agent_path,
        (3, false),
        "agent path: 3 held, the 4th refused"
    );
    for (app, port) in [(0usize, 7000u16), (1, 7001)] {
        let answer = tcp_exchange(&side, &addr::edge4(app), port, "other client");
        assert!(
            answer.as_deref().is_ok_and(|a| a.contains("other client")),
            "another client of app {app} is not affected: {answer:?}"
        );
        let limited = agent
            .packets_settled(Some(app as u64), "client_limited", 1)
            .expect("stats");
        assert!(limited >= 1, "app {app}: the refusal is counted");
    }
    for (app, (accepted, attempts, elapsed)) in [(2u64, fast_rate), (3, agent_rate)] {
        let bound = 3 + elapsed.as_secs_f64().ceil() as usize + 1;
        assert!(
            accepted <= bound,
            "app {app}: {accepted} of {attempts} accepted in {elapsed:?}; at most {bound}"
        );
        assert!(accepted < attempts, "app {app}: some attempt refused");
        let limited = agent
            .packets_settled(Some(app), "client_limited", 1)
            .expect("stats");
        assert!(limited >= 1, "app {app}: the refusals are counted");
    }
    drop(agent);
}

/// The agent's UDP path (PROXY v2 in front of each datagram): one client
/// holds at most three flows (source ports) at once; its fourth gets no
/// answer and is counted, while another host still gets through.
#[test]
fn udp_flows_per_client_on_the_agent_path() {
    let Some(topology) = Topology::for_test(
        "netns_client_limits::udp_flows_per_client_on_the_agent_path",
        "clu",
    ) else {
        return;
    };
    let side = topology.side().expect("side host");
    let _origin = servers::udp_pp_origin(&topology.org, 6300, "v2", "ok").expect("origin");
    let config = ConfigBuilder::new()
        .edge(
            "interfaces",
            json!([addr::EDGE_CLI_IF, addr::EDGE_ORG_IF, addr::EDGE_SIDE_IF]),
        )
        .app(
            AppJson::udp(5300, "udp.test")
                .origin_direct([format!("udp://{}:6300", addr::ORG_V4)])
                .proxy_protocol("v2")
                .set(
                    "client_limits",
                    json!({"concurrent_flows": 3, "new_flows_per_second": 0}),
                ),
        )
        .build();
    let agent = Agent::start(&topology.edge, &config, "skb").expect("agent");
    let edge0 = addr::edge4(0);
    // Each exchange is a new source port: a new flow, answered, so it
    // stays open (its idle timeout is far longer than this test).
    for n in 0..3 {
        let answer = udp_exchange(&topology.cli, &edge0, 5300, &format!("flow {n}"));
        assert!(
            answer.as_deref().is_ok_and(|a| a.contains("payload=flow")),
            "flow {n} of the client: {answer:?}\n{}",
            agent.log()
        );
    }
    let fourth = udp_exchange(&topology.cli, &edge0, 5300, "flow 3");
    assert!(
        fourth.is_err(),
        "the client's 4th flow was answered: {fourth:?}"
    );
    let limited = agent
        .packets_settled(Some(0), "client_limited", 1)
        .expect("stats");
    assert!(limited >= 1, "the refusal is counted\n{}", agent.log());
    let other = udp_exchange(&side, &edge0, 5300, "other client");
    assert!(
        other
            .as_deref()
            .is_ok_and(|a| a.contains("payload=other client")),
        "another client is not affected: {other:?}"
    );
    drop(agent);
}
