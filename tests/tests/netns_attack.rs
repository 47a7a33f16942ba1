//! The edge under attack (issue 20): SYN floods from one client and from
//! spoofed sources, blind RSTs, origin-side SYNs, spoofed UDP floods and
//! scans of unlisted ports, each against the test's own namespaces. Every
//! flood is bounded by a count (and paced); every wait has a hang guard.
//! What is asserted is behaviour: other clients still get through, flows
//! are not cut, nothing answers a scan; never how fast.
//!
//! Fast-path TCP apps answer SYNs with cookies (the SYN proxy, issue 22,
//! on by default): a SYN flood then opens no flow at all. Tests whose
//! point is the flow table under a flood of embryonic flows run with
//! `"syn_proxy": "off"`; the flood tests run both ways.
//!
//! Attackers send from addresses no host owns (`flood` module comment):
//! the edge's answers reach `cli`'s NIC and die there, so no handshake of
//! theirs completes and no reset of theirs frees anything.
use std::{
    net::{Ipv4Addr, SocketAddr},
    time::{Duration, Instant},
};

use serde_json::json;
use tests::{
    agent::Agent,
    client::{tcp_exchange, udp_exchange},
    config::{AppJson, ConfigBuilder, org4},
    flood::{self, Bound, Flood, RawTcp, Seen, SynCapture},
    netns::{Netns, Topology, addr, snmp_counter},
    packet::Macs,
    scratch_dir, servers,
};

/// One client that floods: an address of cli's subnet no host owns.
const FLOODER: &str = "10.0.1.50";
/// The raw TCP client's address (no host owns it either).
const RAW: &str = "10.0.1.60";
/// Spoofed sources: 10.1.0.0/16, routed back to cli, which drops them.
const SPOOFED: &str = "10.1.0.0/16";
const SPOOFED_FIRST: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

/// Hang guards sized for a loaded two-core machine, not expectations.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);
const ECHO_LIMIT: Duration = Duration::from_secs(10);

const ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const TOKEN: &str = "attack-token-0123456789";
const API_PORT: u16 = 8080;

/// The embryonic flow budget (issue 20: embryonic flows have their own
/// table).
const EMBRYONIC_BUDGET: f64 = proxy_common::MAX_NEW_FLOW_ENTRIES as f64;

/// The topology and what the attackers need to know of it.
struct Range {
    topology: Topology,
    /// Frames from cli's eth0 to the edge.
    cli_to_edge: Macs,
    /// Frames from org's eth0 to the edge.
    org_to_edge: Macs,
}

impl Range {
    /// A topology whose edge sends what goes to [`FLOODER`], [`RAW`] and
    /// [`SPOOFED`] to cli's NIC, where it dies unanswered.
    fn new(test: &str, tag: &str) -> Option<Self> {
        let topology = Topology::for_test(test, tag)?;
        let (cli, edge, org) = (&topology.cli, &topology.edge, &topology.org);
        let cli_to_edge = flood::macs_toward(cli, addr::CLI_IF, edge, addr::EDGE_CLI_IF)
            .expect("cli -> edge MACs");
        let org_to_edge = flood::macs_toward(org, addr::ORG_IF, edge, addr::EDGE_ORG_IF)
            .expect("org -> edge MACs");
        for ip in [FLOODER, RAW] {
            flood::deliver_to(edge, addr::EDGE_CLI_IF, ip, cli_to_edge.1).expect("neighbour");
        }
        flood::route_to(edge, SPOOFED, addr::CLI_V4).expect("route to the spoofed range");
        Some(Self {
            topology,
            cli_to_edge,
            org_to_edge,
        })
    }

    fn cli(&self) -> &Netns {
        &self.topology.cli
    }

    /// A flood out of cli's eth0.
    fn flood_from_cli(
        &self,
        bound: Bound,
        frames: impl FnMut(u64) -> Vec<u8> + Send + 'static,
    ) -> Flood {
        Flood::start(self.cli(), addr::CLI_IF, bound, frames).expect("flood")
    }

    /// The raw client from [`RAW`]:`port` to `dst`, handshake done.
    fn raw_client(&self, port: u16, dst: SocketAddr) -> RawTcp {
        let local = SocketAddr::new(RAW.parse().expect("ip"), port);
        RawTcp::connect(
            self.cli(),
            addr::CLI_IF,
            self.cli_to_edge,
            local,
            dst,
            CONNECT_LIMIT,
        )
        .expect("raw client handshake")
    }
}

fn sock(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("ip"), port)
}

/// An ordinary client (socat from cli's own address) through the echo app
/// at `ip`:`port` whose origin greets with `origin <origin_port>`.
fn legit_tcp(cli: &Netns, ip: &str, port: u16, origin_port: u16, what: &str) -> Result<(), String> {
    match tcp_exchange(cli, ip, port, what) {
        Ok(reply) if reply == format!("origin {origin_port}\n{what}\n") => Ok(()),
        Ok(reply) => Err(format!("{what}: unexpected reply {reply:?}")),
        Err(e) => Err(format!("{what}: {e:#}")),
    }
}

/// `edge.syn_proxy` off when `syn_proxy` is false (on is the default).
fn syn_proxy(config: ConfigBuilder, syn_proxy: bool) -> ConfigBuilder {
    if syn_proxy {
        config
    } else {
        config.edge("syn_proxy", "off")
    }
}

/// `tcp/7000` -> the echo origin on org:3000, NAT ports 20000-20063 (the
/// issue's tiny range), on top of `config`.
fn syn_flood_config(config: ConfigBuilder) -> ConfigBuilder {
    config
        .edge("nat_ports", "20000-20063")
        // One client may hold a quarter of this tiny NAT range at once:
        // the defence against one flooding client (the default, 4096,
        // suits the default range of 31,744 ports).
        .edge("client_limits", json!({"concurrent_flows": 16}))
        .app(AppJson::tcp(7000, "flooded.test").origin_direct([org4("tcp", 3000)]))
}

/// Runs `flood` and an ordinary client: during the flood (at its middle,
/// while it still sends) and at once after it; `late` runs after the
/// clients during the flood, while it still sends. Returns every failure
/// and how many connections the client tried.
fn legit_client_during_and_after(
    range: &Range,
    flood: Flood,
    count: u64,
    late: impl FnOnce(&Flood),
) -> (Vec<String>, u64) {
    let cli = range.cli();
    let mut failures = Vec::new();
    let mut during = 0;
    for round in 0..3 {
        // Each attempt starts while the flood still sends, else it is not
        // "during" and is not made.
        if !flood.wait_sent(count / 2 + round * count / 8) {
            break;
        }
        during += 1;
        if let Err(e) = legit_tcp(cli, &addr::edge4(0), 7000, 3000, &format!("during {round}")) {
            failures.push(e);
        }
    }
    assert!(during > 0, "the flood ended before any client tried");
    late(&flood);
    let sent = flood.wait().expect("flood");
    assert_eq!(sent, count, "the flood sent its count");
    for round in 0..3 {
        if let Err(e) = legit_tcp(cli, &addr::edge4(0), 7000, 3000, &format!("after {round}")) {
            failures.push(e);
        }
    }
    (failures, during + 3)
}

/// 100k unanswered SYNs to the flooded app, made by `syns` (given the
/// cli -> edge MACs): another client connects during the flood and after.
/// With the SYN proxy off, the per-client limits are what protects it.
fn syn_flood_locks_nobody_out<F>(
    test: &str,
    tag: &str,
    with_syn_proxy: bool,
    syns: impl FnOnce(Macs) -> F,
) where
    F: FnMut(u64) -> Vec<u8> + Send + 'static,
{
    let Some(range) = Range::new(test, tag) else {
        return;
    };
    let _origin = servers::tcp_echo(&range.topology.org, 3000).expect("origin");
    let config = syn_flood_config(syn_proxy(ConfigBuilder::new(), with_syn_proxy)).build();
    let agent = Agent::start(&range.topology.edge, &config, "native").expect("agent");
    legit_tcp(range.cli(), &addr::edge4(0), 7000, 3000, "before").expect("before the flood");
    const COUNT: u64 = 100_000;
    let flood = range.flood_from_cli(
        Bound {
            count: COUNT,
            per_second: Some(20_000),
        },
        syns(range.cli_to_edge),
    );
    let (failures, _) = legit_client_during_and_after(&range, flood, COUNT, |_| {});
    assert!(
        failures.is_empty(),
        "another client was locked out: {failures:#?}\n{}",
        agent.log()
    );
    agent.stop().expect("stop");
}

/// SYNs from one address, distinct source ports, never completed.
fn syns_from_the_flooder(macs: Macs) -> impl FnMut(u64) -> Vec<u8> + Send + 'static {
    flood::syns_from_one(
        macs,
        FLOODER.parse().expect("ip"),
        sock(&addr::edge4(0), 7000),
    )
}

#[test]
fn syn_flood_from_one_client_does_not_lock_out_others() {
    syn_flood_locks_nobody_out(
        "syn_flood_from_one_client_does_not_lock_out_others",
        "atk1",
        true,
        syns_from_the_flooder,
    );
}

/// The same flood with the SYN proxy off: each SYN opens an embryonic
/// flow, and the per-client limits keep the flooder to its share.
#[test]
fn syn_flood_from_one_client_does_not_lock_out_others_without_the_syn_proxy() {
    syn_flood_locks_nobody_out(
        "syn_flood_from_one_client_does_not_lock_out_others_without_the_syn_proxy",
        "atk1o",
        false,
        syns_from_the_flooder,
    );
}

/// The headline: 100k SYNs from 10k spoofed sources (10 ports
/// each) at the flooded app, whose tiny NAT range they would hold for
/// `tcp_new` were they flows. The SYN proxy answers each with a cookie and
/// keeps nothing: none of them reaches the origin (its own
/// `/proc/net/snmp`, and a capture of SYNs on its NIC), the flow table
/// holds none of them, and another client connects during and after.
#[test]
fn syn_flood_from_spoofed_sources_does_not_lock_out_others() {
    let Some(range) = Range::new(
        "syn_flood_from_spoofed_sources_does_not_lock_out_others",
        "atk2",
    ) else {
        return;
    };
    let (cli, org) = (range.cli(), &range.topology.org);
    let _origin = servers::tcp_echo(org, 3000).expect("origin");
    let config = syn_flood_config(with_api(&range.topology)).build();
    let agent = Agent::start(&range.topology.edge, &config, "native").expect("agent");
    legit_tcp(cli, &addr::edge4(0), 7000, 3000, "before").expect("before the flood");

    let tcp_mib = |field| snmp_counter(org, "Tcp", field).expect("org /proc/net/snmp");
    let (segs_before, opens_before) = (tcp_mib("InSegs"), tcp_mib("PassiveOpens"));
    // A hang guard: the capture ends when stopped below.
    let capture = SynCapture::start(
        org,
        addr::ORG_IF,
        sock(addr::ORG_V4, 3000),
        Duration::from_secs(300),
    )
    .expect("capture");
    const COUNT: u64 = 100_000;
    let flood = range.flood_from_cli(
        Bound {
            count: COUNT,
            per_second: Some(20_000),
        },
        flood::syns_from_many(
            range.cli_to_edge,
            SPOOFED_FIRST,
            10_000,
            vec![sock(&addr::edge4(0), 7000)],
        ),
    );
    let mut entries = None;
    let (failures, legit) = legit_client_during_and_after(&range, flood, COUNT, |flood| {
        let seen = (
            flow_entries(cli, "embryonic"),
            flow_entries(cli, "established"),
        );
        entries = Some((seen, flood.running()));
    });
    let seen = capture.stop().expect("capture");
    let (segs, opens) = (
        tcp_mib("InSegs") - segs_before,
        tcp_mib("PassiveOpens") - opens_before,
    );
    let cookies = agent.packets(Some(0), "syn_cookie_sent").expect("stats");

    assert!(
        failures.is_empty(),
        "another client was locked out: {failures:#?}\n{}",
        agent.log()
    );
    // The origin heard the legitimate client's connections only: one
    // attempt (NAT source and ISN) each, and a handful of segments each.
    assert_eq!(
        seen.attempts.len() as u64,
        legit,
        "SYNs at the origin beyond the {legit} legitimate ones: {} SYNs, {} segments",
        seen.syns,
        seen.tcp
    );
    assert_eq!(opens, legit, "the origin's PassiveOpens");
    assert!(
        segs <= 30 * legit,
        "the origin's stack received {segs} segments for {legit} connections"
    );
    // The flood met the SYN proxy (a veth ring may drop some of it on a
    // loaded machine: half is plenty to tell).
    assert!(
        cookies >= COUNT / 2,
        "{cookies} syn_cookie_sent for {COUNT} SYNs; counters: {:?}",
        agent.stats().map(|rows| rows
            .into_iter()
            .filter(|row| row["packets"].as_u64().unwrap_or(0) > 0)
            .map(|row| format!("{}/{}={}", row["app"], row["verdict"], row["packets"]))
            .collect::<Vec<_>>())
    );
    let ((embryonic, established), during) = entries.expect("read during the flood");
    assert!(during, "the flow table was read after the flood ended");
    let embryonic = embryonic.expect("no spectrum_flow_entries{state=\"embryonic\"} in /metrics");
    let established =
        established.expect("no spectrum_flow_entries{state=\"established\"} in /metrics");
    assert_eq!(embryonic, 0.0, "the flood left embryonic flows");
    // The legitimate client's flows so far (before, during): two halves each.
    assert!(
        established <= 2.0 * (legit - 3 + 1) as f64,
        "{established} established entries during the flood"
    );
    agent.stop().expect("stop");
}

/// curl in `cli` against the agent's API: (HTTP status, body).
fn curl(cli: &Netns, path: &str) -> (u16, String) {
    let url = format!("http://{}:{API_PORT}{path}", addr::EDGE_CLI_V4);
    let auth = format!("Authorization: Bearer {TOKEN}");
    // -m 60: a hang guard.
    let args = ["-s", "-m", "60", "-w", "\n%{http_code}", "-H", &auth, &url];
    let out = cli
        .run("curl", &args)
        .unwrap_or_else(|e| panic!("curl {path}: {e:#}"));
    let (body, status) = out.rsplit_once('\n').unwrap_or(("", &out));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// `spectrum_flow_entries{state}` from /metrics; None when there is none.
fn flow_entries(cli: &Netns, state: &str) -> Option<f64> {
    let (status, text) = curl(cli, "/metrics");
    assert_eq!(status, 200, "{text}");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("unparsable metrics ({e}):\n{text}"));
    scrape
        .samples
        .iter()
        .find(|s| s.metric == "spectrum_flow_entries" && s.labels.get("state") == Some(state))
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// The API's token file and a config builder with the API on.
fn with_api(topology: &Topology) -> ConfigBuilder {
    let token_file = scratch_dir().join(format!("{}-token", topology.edge.name()));
    tests::config::write_token_file(&token_file, TOKEN);
    ConfigBuilder::new().api(API_PORT, &token_file, ZONE)
}

/// With the SYN proxy off, the flood's SYNs are embryonic flows, more
/// than their table holds: the budget is what is tested.
#[test]
fn a_100_mb_transfer_arrives_byte_exact_during_a_syn_flood_and_embryonic_flows_stay_in_budget() {
    transfer_during_a_syn_flood(
        "a_100_mb_transfer_arrives_byte_exact_during_a_syn_flood_and_embryonic_flows_stay_in_budget",
        "atk3",
        false,
    );
}

/// With the SYN proxy (the default), the flood opens no flow at all.
#[test]
fn a_100_mb_transfer_arrives_byte_exact_during_a_syn_flood_that_opens_no_flow() {
    transfer_during_a_syn_flood(
        "a_100_mb_transfer_arrives_byte_exact_during_a_syn_flood_that_opens_no_flow",
        "atk3s",
        true,
    );
}

/// App 0 `tcp/7000-7009` (flooded; origin ports 3000-3009, ten NAT port
/// spaces of the default `nat_ports`: more flows than the flow table
/// holds), app 1 `tcp/7100` -> the sink on org:3100.
fn transfer_during_a_syn_flood(test: &str, tag: &str, with_syn_proxy: bool) {
    let Some(range) = Range::new(test, tag) else {
        return;
    };
    let (cli, org) = (range.cli(), &range.topology.org);
    let dir = scratch_dir();
    let sent = dir.join(format!("{}-sent.bin", range.topology.edge.name()));
    let received = dir.join(format!("{}-received.bin", range.topology.edge.name()));
    let sent_arg = sent.to_string_lossy().into_owned();
    cli.run(
        "sh",
        &[
            "-c",
            &format!("head -c 100000000 /dev/urandom > {sent_arg}"),
        ],
    )
    .expect("make 100 MB");
    let _echo = servers::tcp_echo(org, 3000).expect("echo origin");
    let sink = servers::tcp_sink(org, 3100, &received.to_string_lossy()).expect("sink origin");
    let config = syn_proxy(with_api(&range.topology), with_syn_proxy)
        .app(AppJson::tcp("7000-7009", "flooded.test").origin_direct([org4("tcp", "3000-3009")]))
        .app(AppJson::tcp(7100, "transfer.test").origin_direct([org4("tcp", 3100)]))
        .build();
    let agent = Agent::start(&range.topology.edge, &config, "native").expect("agent");

    // Up to 1M SYNs from 10k spoofed sources over the ten ports; stopped
    // once the transfer is done.
    let dsts = (7000..7010).map(|p| sock(&addr::edge4(0), p)).collect();
    let flood = range.flood_from_cli(
        Bound {
            count: 1_000_000,
            per_second: Some(50_000),
        },
        flood::syns_from_many(range.cli_to_edge, SPOOFED_FIRST, 10_000, dsts),
    );
    // The transfer starts once the flood has filled the flow table
    // (262,144 entries today): it runs while the table churns.
    assert!(flood.wait_sent(300_000), "the flood ended early");
    let out = cli
        .command(
            "timeout",
            &[
                // A hang guard: 100 MB take seconds, more on a loaded machine.
                "600",
                "socat",
                "-u",
                &format!("OPEN:{sent_arg}"),
                &format!("TCP:{}:7100,connect-timeout=3", addr::edge4(1)),
            ],
        )
        .output()
        .expect("socat runs");
    let flood_ran_throughout = flood.running();
    let embryonic = flow_entries(cli, "embryonic");
    let established = flow_entries(cli, "established");
    let flood_sent = flood.stop().expect("flood");
    let sink_end = sink.wait(Duration::from_secs(60));

    let a = std::fs::read(&sent).expect("sent file");
    let b = std::fs::read(&received).unwrap_or_default();
    let _ = std::fs::remove_file(&sent);
    let _ = std::fs::remove_file(&received);
    assert!(
        flood_ran_throughout,
        "the flood ({flood_sent} SYNs) ended before the transfer"
    );
    assert!(
        out.status.success(),
        "upload failed during the flood: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log()
    );
    assert!(sink_end.is_ok(), "the sink did not end: {sink_end:?}");
    assert_eq!(a.len(), 100_000_000);
    assert!(a == b, "received {} bytes, not the same as sent", b.len());
    legit_tcp(cli, &addr::edge4(0), 7000, 3000, "after").expect("the flooded app after");

    // The flow table, as the agent reports it during the flood.
    let embryonic = embryonic.expect("no spectrum_flow_entries{state=\"embryonic\"} in /metrics");
    let established =
        established.expect("no spectrum_flow_entries{state=\"established\"} in /metrics");
    if with_syn_proxy {
        assert_eq!(embryonic, 0.0, "the flood's SYNs opened embryonic flows");
    } else {
        assert!(
            embryonic <= EMBRYONIC_BUDGET,
            "{embryonic} embryonic entries, budget {EMBRYONIC_BUDGET}"
        );
        assert!(embryonic > 0.0, "the flood's SYNs are embryonic flows");
    }
    // Only completed handshakes are established: the transfer (two
    // halves), nothing of the flood's.
    assert!(
        established <= 4.0,
        "{established} established entries during a flood of unanswered SYNs"
    );
    agent.stop().expect("stop");
}

/// `tcp/7000` -> the echo origin on org:3000; closing flows expire after
/// 1 s, so a flow a blind RST marked closing would be gone within seconds.
fn rst_config() -> String {
    ConfigBuilder::new()
        .edge("nat_ports", "20000-29999")
        .edge("flow_timeouts", json!({"tcp_closing": 1}))
        .app(AppJson::tcp(7000, "rst.test").origin_direct([org4("tcp", 3000)]))
        .build()
}

/// Longer than a closing flow's 1 s timeout plus the collector's 1 s
/// tick, twice over for a loaded machine: what a RST marked closing is
/// gone after. A test input, not a hang guard.
const CLOSING_GONE: Duration = Duration::from_secs(5);

/// The raw client's connection through app 0, greeted and echoing.
fn established_raw_client(range: &Range, port: u16) -> RawTcp {
    let mut tcp = range.raw_client(port, sock(&addr::edge4(0), 7000));
    assert!(
        tcp.read_until(b"origin 3000\n", ECHO_LIMIT).expect("read"),
        "no greeting: {:?}",
        tcp.received()
    );
    assert!(tcp.echo("first", ECHO_LIMIT).expect("echo"), "no echo");
    tcp
}

/// Connections org's echo origin (port 3000) holds open.
fn origin_connections(org: &Netns) -> Vec<String> {
    org.run("ss", &["-Htn", "state", "established", "( sport = :3000 )"])
        .expect("ss")
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn rst_outside_the_window_neither_ends_nor_shortens_a_flow() {
    let Some(range) = Range::new(
        "rst_outside_the_window_neither_ends_nor_shortens_a_flow",
        "atk4",
    ) else {
        return;
    };
    let _origin = servers::tcp_echo(&range.topology.org, 3000).expect("origin");
    let agent = Agent::start(&range.topology.edge, &rst_config(), "native").expect("agent");
    let mut tcp = established_raw_client(&range, 41000);

    // A blind RST: half the sequence space away from where the flow is.
    tcp.send_rst(tcp.snd_nxt().wrapping_add(0x8000_0000))
        .expect("rst");
    assert!(
        tcp.echo("after the rst", ECHO_LIMIT).expect("echo"),
        "the flow ended: {:?}",
        tcp.received()
    );
    let counted = agent
        .packets_settled(Some(0), "rst_invalid", 1)
        .expect("stats");
    // Not shortened either: still there after a closing flow would be gone.
    std::thread::sleep(CLOSING_GONE);
    let still = tcp.echo("much later", ECHO_LIMIT).expect("echo");
    assert!(
        still,
        "the flow was cut short (reset: {}): {:?}\n{}",
        tcp.was_reset(),
        tcp.received(),
        agent.log()
    );
    assert_eq!(counted, 1, "the blind RST counted rst_invalid");
    agent.stop().expect("stop");
}

#[test]
fn rst_inside_the_window_ends_it() {
    let Some(range) = Range::new("rst_inside_the_window_ends_it", "atk5") else {
        return;
    };
    let org = &range.topology.org;
    let _origin = servers::tcp_echo(org, 3000).expect("origin");
    let agent = Agent::start(&range.topology.edge, &rst_config(), "native").expect("agent");
    let tcp = established_raw_client(&range, 41001);
    assert_eq!(origin_connections(org).len(), 1);

    // The RST a real endpoint would send: exactly at the next sequence.
    tcp.send_rst(tcp.snd_nxt()).expect("rst");
    // The origin saw it (its connection is gone) and the edge's flow ends
    // (expired as closing). Hang guards, both.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !origin_connections(org).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        origin_connections(org),
        Vec::<String>::new(),
        "the origin kept it"
    );
    let expired = agent
        .packets_settled(Some(0), "flow_expired", 1)
        .expect("stats");
    assert_eq!(expired, 1, "the flow ended\n{}", agent.log());
    assert_eq!(agent.packets(Some(0), "rst_invalid").expect("stats"), 0);
    agent.stop().expect("stop");
}

#[test]
fn origin_side_syn_is_dropped() {
    let Some(range) = Range::new("origin_side_syn_is_dropped", "atk6") else {
        return;
    };
    let org = &range.topology.org;
    let _origin = servers::tcp_echo(org, 3000).expect("origin");
    let agent = Agent::start(&range.topology.edge, &rst_config(), "native").expect("agent");
    let mut tcp = established_raw_client(&range, 41002);

    // The flow's NAT tuple, as the origin sees it: edge:<nat port>.
    let connections = origin_connections(org);
    let nat = connections
        .iter()
        .flat_map(|line| line.split_whitespace())
        // `10.0.2.1:port` or, from the dual-stack socket, `[::ffff:10.0.2.1]:port`.
        .filter(|field| field.contains(addr::EDGE_ORG_V4))
        .find_map(|field| field.rsplit(':').next()?.parse::<u16>().ok())
        .unwrap_or_else(|| panic!("no NAT tuple in {connections:?}"));
    // A SYN from the origin's address and port toward that tuple.
    let syn = flood::tcp_packet(
        range.org_to_edge,
        sock(addr::ORG_V4, 3000),
        sock(addr::EDGE_ORG_V4, nat),
        flood::SYN,
        0x4242_4242,
        0,
        b"",
    );
    flood::PacketSocket::sender(org, addr::ORG_IF)
        .expect("org socket")
        .send(&syn)
        .expect("send");
    assert!(
        tcp.echo("after the syn", ECHO_LIMIT).expect("echo"),
        "{:?}",
        tcp.received()
    );
    std::thread::sleep(CLOSING_GONE);
    assert!(
        tcp.echo("much later", ECHO_LIMIT).expect("echo"),
        "the flow was cut short: {:?}\n{}",
        tcp.received(),
        agent.log()
    );
    let counted = agent
        .packets_settled(Some(0), "stray_syn", 1)
        .expect("stats");
    assert_eq!(
        tcp.syns_after_handshake(),
        0,
        "the origin-side SYN reached the client"
    );
    assert_eq!(counted, 1, "the origin-side SYN counted stray_syn");
    agent.stop().expect("stop");
}

/// A UDP origin in `ns` on `port` (a thread of this process): answers
/// `pong` to every datagram except the flood's (`flood` in it), so the
/// flood's flows are never replied, as a spoofed flood's would not be.
/// Ends with the test process.
fn udp_selective_origin(ns: &Netns, port: u16) {
    let enter = ns.enter_handle();
    let (ready, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let socket = enter().and_then(|()| Ok(std::net::UdpSocket::bind(("::", port))?));
        let socket = match socket {
            Ok(socket) => {
                let _ = ready.send(Ok(()));
                socket
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            if !buf[..n].windows(5).any(|w| w == b"flood") {
                let _ = socket.send_to(b"pong\n", from);
            }
        }
    });
    wait.recv()
        .expect("origin thread")
        .expect("udp origin listening");
}

#[test]
fn spoofed_udp_flood_leaves_other_clients_working() {
    let Some(range) = Range::new("spoofed_udp_flood_leaves_other_clients_working", "atk7") else {
        return;
    };
    let org = &range.topology.org;
    udp_selective_origin(org, 6000);
    udp_selective_origin(org, 6001);
    // App 0 on the fast path, app 1 on the agent's UDP path (PROXY v2 on
    // each flow's first datagram). 16,384 NAT ports.
    let config = ConfigBuilder::new()
        .edge("nat_ports", "20000-36383")
        .app(AppJson::udp(5000, "fast.udp.test").origin_direct([org4("udp", 6000)]))
        .app(
            AppJson::udp(5001, "agent.udp.test")
                .origin_direct([org4("udp", 6001)])
                .proxy_protocol("v2"),
        )
        .build();
    let agent = Agent::start(&range.topology.edge, &config, "native").expect("agent");
    let cli = range.cli();
    let apps = [(addr::edge4(0), 5000), (addr::edge4(1), 5001)];
    let exchange = |when: &str| -> Vec<String> {
        apps.iter()
            .filter_map(|(ip, port)| match udp_exchange(cli, ip, *port, when) {
                Ok(reply) if reply == "pong\n" => None,
                Ok(reply) => Some(format!("{when} {ip}:{port}: {reply:?}")),
                Err(e) => Some(format!("{when} {ip}:{port}: {e:#}")),
            })
            .collect()
    };
    assert_eq!(exchange("before"), Vec::<String>::new(), "{}", agent.log());

    // 20k unreplied flows at each app (more than the NAT ports, more than
    // the agent's 16,384 flows of an app), from 10k spoofed sources.
    const COUNT: u64 = 40_000;
    let flood = range.flood_from_cli(
        Bound {
            count: COUNT,
            per_second: Some(2_000),
        },
        flood::udp_from_many(
            range.cli_to_edge,
            SPOOFED_FIRST,
            10_000,
            apps.iter().map(|(ip, port)| sock(ip, *port)).collect(),
            b"flood\n",
        ),
    );
    let mut failures = Vec::new();
    // Late in the flood: past the point where today's tables are full.
    for (at, when) in [(COUNT * 7 / 10, "during a"), (COUNT * 9 / 10, "during b")] {
        assert!(flood.wait_sent(at), "the flood ended before {when}");
        failures.extend(exchange(when));
    }
    assert_eq!(flood.wait().expect("flood"), COUNT);
    failures.extend(exchange("after"));
    assert!(
        failures.is_empty(),
        "other clients' UDP failed: {failures:#?}\n{}",
        agent.log()
    );
    agent.stop().expect("stop");
}

#[test]
fn unlisted_port_gets_no_answer() {
    let Some(range) = Range::new("unlisted_port_gets_no_answer", "atk8") else {
        return;
    };
    let _origin = servers::tcp_echo(&range.topology.org, 3000).expect("origin");
    let config = ConfigBuilder::new()
        .app(AppJson::tcp(7000, "listed.test").origin_direct([org4("tcp", 3000)]))
        .build();
    let agent = Agent::start(&range.topology.edge, &config, "native").expect("agent");
    let cli = range.cli();
    // From cli's own address, so any RST or ICMP error comes back to it.
    let me = sock(addr::CLI_V4, 45000);
    let pool = |port| sock(&addr::edge4(0), port);
    let socket = flood::PacketSocket::listener(cli, addr::CLI_IF).expect("cli socket");
    let send = |frame: Vec<u8>| socket.send(&frame).expect("send");
    send(flood::tcp_packet(
        range.cli_to_edge,
        me,
        pool(9),
        flood::SYN,
        1,
        0,
        b"",
    ));
    send(tests::packet::udp_datagram(
        range.cli_to_edge,
        (me.ip(), me.port()),
        (pool(9).ip(), 9),
        b"scan\n",
        true,
    ));
    // A bounded look (a few hundred frames at most, 2 s), then a probe of
    // the listed port whose SYN-ACK proves the path answers at all.
    let scan_answers: Vec<Seen> = socket
        .receive_all(Instant::now() + Duration::from_secs(2), 500)
        .iter()
        .filter_map(|frame| flood::parse(frame))
        .filter(|seen| match seen {
            Seen::Tcp { src, .. } | Seen::Udp { src, .. } => src.ip() == pool(9).ip(),
            Seen::Icmp { .. } => true,
        })
        .collect();
    send(flood::tcp_packet(
        range.cli_to_edge,
        me,
        pool(7000),
        flood::SYN,
        1,
        0,
        b"",
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut probe_answered = false;
    while let Some(frame) = socket.receive(deadline) {
        if let Some(Seen::Tcp { src, flags, .. }) = flood::parse(&frame)
            && src == pool(7000)
            && flags & (flood::SYN | flood::ACK) == flood::SYN | flood::ACK
        {
            probe_answered = true;
            break;
        }
    }
    assert!(
        probe_answered,
        "the listed port did not answer: no path\n{}",
        agent.log()
    );
    assert_eq!(scan_answers, Vec::new(), "the unlisted port was answered");
    let unlisted = agent.packets_settled(None, "unlisted", 2).expect("stats");
    assert_eq!(unlisted, 2, "the SYN and the datagram counted unlisted");
    agent.stop().expect("stop");
}

/// The SYN proxy off: the point is a flow table that churns under the
/// flood while the agent walks it.
#[test]
fn signals_and_api_are_served_during_a_flood() {
    let Some(range) = Range::new("signals_and_api_are_served_during_a_flood", "atk9") else {
        return;
    };
    let org = &range.topology.org;
    let _origin = servers::tcp_echo(org, 3000).expect("origin");
    let base = syn_proxy(with_api(&range.topology), false)
        .app(AppJson::tcp("7000-7009", "flooded.test").origin_direct([org4("tcp", "3000-3009")]));
    let agent = Agent::start(&range.topology.edge, &base.build(), "native").expect("agent");
    let cli = range.cli();

    // Enough SYNs to outlast every step (the test stops it): from 10k
    // spoofed sources over ten ports, so the flow table churns.
    let dsts = (7000..7010).map(|p| sock(&addr::edge4(0), p)).collect();
    let flood = range.flood_from_cli(
        Bound {
            count: 20_000_000,
            per_second: Some(50_000),
        },
        flood::syns_from_many(range.cli_to_edge, SPOOFED_FIRST, 10_000, dsts),
    );
    // Past the point where the flow table is full (262,144 entries).
    assert!(flood.wait_sent(300_000), "the flood ended early");

    // An API GET (curl's -m 60 is the hang guard).
    let (status, body) = curl(cli, &format!("/zones/{ZONE}/spectrum/apps"));
    let api_during = flood.running();
    // A SIGHUP reload that adds an app (Agent::reload's own hang guard).
    let changed = base
        .clone()
        .app(AppJson::tcp(7100, "added.test").origin_direct([org4("tcp", 3000)]))
        .build();
    let reloaded = agent.reload(&changed);
    let reload_during = flood.running();
    // SIGTERM: the agent exits (60 s at most, a hang guard).
    agent.terminate().expect("SIGTERM");
    let exited = agent.wait(Duration::from_secs(60));
    let exit_during = flood.running();
    let sent = flood.stop().expect("flood");

    assert_eq!(status, 200, "API during the flood: {body}");
    assert!(
        api_during,
        "the API answered only after the flood ({sent} SYNs) ended"
    );
    assert!(
        matches!(reloaded, Ok(true)),
        "reload during the flood: {reloaded:?}"
    );
    assert!(
        reload_during,
        "the reload completed only after the flood ({sent} SYNs) ended"
    );
    let (status, log) = exited.expect("the agent exits on SIGTERM during the flood");
    assert!(status.success(), "agent exit {status}\n{log}");
    assert!(
        exit_during,
        "the agent exited only after the flood ({sent} SYNs) ended"
    );
}
