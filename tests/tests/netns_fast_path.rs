//! The fast path end to end: the agent in `edge`, real clients in `cli`,
//! real servers in `org`. Every exchange checks which origin port answered.
//!
//! Each suite is one body taking the [`Datapath`] (`edge.datapath`) and runs
//! once per mode: `<suite>::xdp`, `<suite>::tc`, `<suite>::auto`. Each run
//! proves its mode ran: flows are counted by the hook that opened them
//! (`flow_opened`, `flow_opened_tc`).
use serde_json::json;
use tests::{
    agent::Agent,
    client::{tcp_exchange, udp_exchange},
    config::{AppJson, ConfigBuilder, org_both},
    netns::{Topology, addr, snmp_counter},
    scratch_dir, servers,
};

/// Where the fast path's NAT runs (`edge.datapath`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Datapath {
    Xdp,
    Tc,
    /// TCP apps at TC, UDP apps in XDP.
    Auto,
}

impl Datapath {
    fn name(self) -> &'static str {
        match self {
            Self::Xdp => "xdp",
            Self::Tc => "tc",
            Self::Auto => "auto",
        }
    }

    /// The counters of the flows an app of `protocol` opens and that expire
    /// (by the hook that NATs it).
    fn flow_counters(self, protocol: &str) -> (&'static str, &'static str) {
        if self.at_tc(protocol) {
            ("flow_opened_tc", "flow_expired_tc")
        } else {
            ("flow_opened", "flow_expired")
        }
    }

    /// Whether an app of `protocol` ("tcp" | "udp") is NATed at TC.
    fn at_tc(self, protocol: &str) -> bool {
        match self {
            Self::Xdp => false,
            Self::Tc => true,
            Self::Auto => protocol == "tcp",
        }
    }
}

/// `mod <suite> { #[test] fn xdp, tc, auto }`, each calling the body
/// `<suite>(Datapath)` once root is there.
macro_rules! for_each_datapath {
    ($($suite:ident),* $(,)?) => {$(
        mod $suite {
            use super::Datapath;

            #[test]
            fn xdp() {
                run(Datapath::Xdp);
            }

            #[test]
            fn tc() {
                run(Datapath::Tc);
            }

            #[test]
            fn auto() {
                run(Datapath::Auto);
            }

            fn run(datapath: Datapath) {
                let test = format!("{}::{}", stringify!($suite), datapath.name());
                if tests::root_or_skip(&test) {
                    super::$suite(datapath);
                }
            }
        }
    )*};
}

for_each_datapath!(
    tcp_and_udp_ranges_reach_the_origin_port_at_the_same_offset,
    a_100_mb_transfer_arrives_byte_exact_without_touching_the_edge_stack,
    origin_dns_names_resolve_through_the_configured_resolver,
    idle_and_closed_flows_expire_and_are_counted,
);

/// app 0 `tcp/1000-2000 -> 3000-4000` (edge 10.0.100.1, fd00:100::1),
/// app 1 `tcp/22 -> 2222` (.2), app 2 `udp/5300-5310 -> 6300-6310` (.3);
/// each with an IPv4 and an IPv6 origin on `org`; NATed in `datapath`.
fn config(datapath: Datapath) -> String {
    base_config(datapath).build()
}

fn base_config(datapath: Datapath) -> ConfigBuilder {
    ConfigBuilder::new()
        .edge("nat_ports", "20000-29999")
        .edge("datapath", datapath.name())
        .app(AppJson::tcp("1000-2000", "range.test").origin_direct(org_both("tcp", "3000-4000")))
        .app(AppJson::tcp(22, "ssh.test").origin_direct(org_both("tcp", 2222)))
        .app(AppJson::udp("5300-5310", "udp.test").origin_direct(org_both("udp", "6300-6310")))
}

/// The same apps with short flow timeouts.
fn config_with_short_timeouts(datapath: Datapath) -> String {
    base_config(datapath)
        .edge("flow_timeouts", json!({"udp": 1, "tcp_closing": 1}))
        .build()
}

/// Segments the edge's own TCP stack received (`Tcp: InSegs`).
fn edge_tcp_in_segments(topology: &Topology) -> u64 {
    snmp_counter(&topology.edge, "Tcp", "InSegs").expect("edge Tcp InSegs")
}

/// Proves which hook NATed each (app index, "tcp" | "udp") that carried
/// traffic: flows are counted by the hook that opened them (`flow_opened`
/// in XDP, `flow_opened_tc` at TC), and none at the other. The hooks
/// attached: XDP only when an app needs it (here: an XDP app; these
/// configs have no ip_firewall), TC when an app runs there, and with XDP's
/// TCP apps too: the SYN proxy (on by default) completes their origin
/// handshakes at TC, one origin SYN-ACK per connection counted `to_tc`.
/// XDP, when attached, has nothing to do for a protocol whose apps all run
/// at TC (no access rules here): it passes that protocol uncounted.
fn assert_hooks(agent: &Agent, datapath: Datapath, apps: &[(u64, &str)]) {
    let log = agent.log();
    let xdp = log.contains("XDP attached");
    let tc = log.contains("TC ingress attached");
    match datapath {
        Datapath::Xdp => assert!(xdp && tc, "xdp: hooks attached\n{log}"),
        // Every app at TC and none firewalled: XDP has nothing to do.
        Datapath::Tc => assert!(!xdp && tc, "tc: hooks attached\n{log}"),
        // XDP only when the config has a UDP app (checked per app below).
        Datapath::Auto => assert!(tc, "auto: TC attached\n{log}"),
    }
    let name = datapath.name();
    for &(app, protocol) in apps {
        let at_tc = datapath.at_tc(protocol);
        assert!(
            at_tc || xdp,
            "{name}: app {app} ({protocol}) is XDP's, yet XDP is not attached\n{log}"
        );
        let (here, elsewhere) = if at_tc {
            ("flow_opened_tc", "flow_opened")
        } else {
            ("flow_opened", "flow_opened_tc")
        };
        let opened = agent.packets_settled(Some(app), here, 1).expect("stats");
        assert!(
            opened > 0,
            "{name}: app {app} ({protocol}): no {here}\n{log}"
        );
        let other = agent.packets(Some(app), elsewhere).expect("stats");
        assert_eq!(
            other, 0,
            "{name}: app {app} ({protocol}): {other} {elsewhere}"
        );
        let to_tc = agent.packets(Some(app), "to_tc").expect("stats");
        let handshakes = if datapath.at_tc(protocol) {
            0
        } else {
            agent.packets(Some(app), "syn_proxy_opened").expect("stats")
        };
        assert_eq!(
            to_tc, handshakes,
            "{name}: app {app} ({protocol}): {to_tc} to_tc, {handshakes} origin handshakes"
        );
    }
}

fn tcp_and_udp_ranges_reach_the_origin_port_at_the_same_offset(datapath: Datapath) {
    let topology = Topology::new(&format!("fp-{}", datapath.name())).expect("topology");
    let org = &topology.org;
    let mut servers = Vec::new();
    // First, last and an arbitrary port of the range; the single port; UDP.
    for port in [3000, 4000, 3517, 2222] {
        servers.push(servers::tcp_echo(org, port).expect("tcp origin"));
    }
    for port in [6300, 6310, 6304] {
        servers.push(servers::udp_echo(org, port).expect("udp origin"));
    }
    let agent = Agent::start(&topology.edge, &config(datapath), "native").expect("agent");
    let cli = &topology.cli;

    for (edge_ip, family) in [("10.0.100.1", "v4"), ("fd00:100::1", "v6")] {
        for (edge_port, origin_port) in [(1000, 3000), (2000, 4000), (1517, 3517)] {
            let reply = tcp_exchange(cli, edge_ip, edge_port, "hello")
                .unwrap_or_else(|e| panic!("{family} {edge_port}: {e:#}\n{}", agent.log()));
            assert_eq!(
                reply,
                format!("origin {origin_port}\nhello\n"),
                "{family} edge port {edge_port}"
            );
        }
    }
    for edge_ip in ["10.0.100.2", "fd00:100::2"] {
        let reply = tcp_exchange(cli, edge_ip, 22, "ssh")
            .unwrap_or_else(|e| panic!("tcp/22 {edge_ip}: {e:#}\n{}", agent.log()));
        assert_eq!(reply, "origin 2222\nssh\n", "{edge_ip}");
    }
    for edge_ip in ["10.0.100.3", "fd00:100::3"] {
        for (edge_port, origin_port) in [(5300, 6300), (5310, 6310), (5304, 6304)] {
            let reply = udp_exchange(cli, edge_ip, edge_port, "query")
                .unwrap_or_else(|e| panic!("udp {edge_ip} {edge_port}: {e:#}\n{}", agent.log()));
            assert_eq!(
                reply,
                format!("origin {origin_port}: query\n"),
                "{edge_ip} {edge_port}"
            );
        }
    }

    // Flows are opened and counted the same by either hook.
    for (app, protocol, flows) in [(0, "tcp", 6), (1, "tcp", 2), (2, "udp", 6)] {
        let (opened, _) = datapath.flow_counters(protocol);
        assert_eq!(
            agent
                .packets_settled(Some(app), opened, flows)
                .expect("stats"),
            flows,
            "app {app}: one flow per connection or UDP client socket"
        );
        assert!(agent.packets(Some(app), "to_origin").expect("stats") > 0);
        assert!(agent.packets(Some(app), "to_client").expect("stats") > 0);
        assert_eq!(agent.packets(Some(app), "to_agent").expect("stats"), 0);
    }
    assert_hooks(&agent, datapath, &[(0, "tcp"), (1, "tcp"), (2, "udp")]);
}

fn a_100_mb_transfer_arrives_byte_exact_without_touching_the_edge_stack(datapath: Datapath) {
    let topology = Topology::new(&format!("big-{}", datapath.name())).expect("topology");
    if datapath.at_tc("tcp") {
        // GRO on the edge's veths: the TC hook sees the stream as 64 KB
        // packets, as behind a physical NIC.
        for dev in [addr::EDGE_CLI_IF, addr::EDGE_ORG_IF] {
            topology
                .edge
                .run("ethtool", &["-K", dev, "gro", "on"])
                .expect("edge GRO on");
        }
    }
    let dir = scratch_dir();
    let sent = dir.join(format!("{}-sent.bin", topology.edge.name()));
    let received = dir.join(format!("{}-received.bin", topology.edge.name()));
    let sent_arg = sent.to_string_lossy().into_owned();
    topology
        .cli
        .run(
            "sh",
            &[
                "-c",
                &format!("head -c 100000000 /dev/urandom > {sent_arg}"),
            ],
        )
        .expect("make 100 MB");
    let sink =
        servers::tcp_sink(&topology.org, 3007, &received.to_string_lossy()).expect("sink origin");
    let agent = Agent::start(&topology.edge, &config(datapath), "native").expect("agent");
    let before = edge_tcp_in_segments(&topology);
    upload_to_the_sink(&topology, &agent, &sent_arg, sink);
    let after = edge_tcp_in_segments(&topology);

    let a = std::fs::read(&sent).expect("sent file");
    let b = std::fs::read(&received).expect("received file");
    let _ = std::fs::remove_file(&sent);
    let _ = std::fs::remove_file(&received);
    assert_eq!(a.len(), 100_000_000);
    assert!(a == b, "received {} bytes, not the same as sent", b.len());
    // Only a flow's first packets may go through the kernel (while the
    // neighbour is resolved): the edge's own TCP sockets see none of it.
    assert!(
        after - before < 10,
        "edge TCP stack received {} segments",
        after - before
    );
    the_transfer_was_one_flow_redirected_by_the_hook(&agent, datapath);
}

/// `sent` from `cli` to app 0's port 1007 with socat; returns once the
/// sink origin has written all it received and ended.
fn upload_to_the_sink(
    topology: &Topology,
    agent: &Agent,
    sent: &str,
    sink: tests::process::Background,
) {
    let out = topology
        .cli
        .command(
            "timeout",
            &[
                // A hang guard: 100 MB take seconds, more on a loaded machine.
                "600",
                "socat",
                "-u",
                &format!("OPEN:{sent}"),
                "TCP:10.0.100.1:1007,connect-timeout=3",
            ],
        )
        .output()
        .expect("socat runs");
    assert!(
        out.status.success(),
        "upload failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        agent.log()
    );
    let (status, log) = sink
        .wait(std::time::Duration::from_secs(60))
        .expect("the sink ends when the upload does");
    assert!(status.success(), "sink: {status} {log}");
}

/// One flow, opened by the datapath's hook, carried every byte: as GRO'd
/// packets at TC, as full frames in XDP, with at most a flow's first
/// packets through the kernel.
fn the_transfer_was_one_flow_redirected_by_the_hook(agent: &Agent, datapath: Datapath) {
    let (opened, _) = datapath.flow_counters("tcp");
    assert_eq!(agent.packets(Some(0), opened).expect("stats"), 1);
    assert_hooks(agent, datapath, &[(0, "tcp")]);
    let redirected = agent.packets(Some(0), "to_origin").expect("stats");
    let redirected_bytes = agent.bytes(Some(0), "to_origin").expect("stats");
    let via_kernel = agent.packets(Some(0), "neighbor_pending").expect("stats")
        + agent.packets(Some(0), "no_route").expect("stats");
    assert!(
        redirected_bytes >= 100_000_000,
        "to_origin {redirected_bytes} bytes"
    );
    if datapath.at_tc("tcp") {
        // The CHECKSUM_PARTIAL/GSO end-to-end check: 100 MB in fewer than
        // 20,000 packets means the TC hook NATed and redirected GRO'd
        // packets of up to 64 KB (CHECKSUM_PARTIAL, GSO), and the origin
        // received every byte intact (compared above).
        assert!(
            redirected < 20_000,
            "to_origin {redirected} packets: not GRO'd"
        );
    } else {
        // 100 MB is some 69,000 full frames: nearly all of them redirected
        // in XDP, at most a flow's first packets through the kernel.
        assert!(redirected > 60_000, "to_origin {redirected}");
    }
    assert!(
        via_kernel <= 2,
        "{via_kernel} packets went through the kernel"
    );
}

/// No origin_source either: the agent derives it from the resolved
/// addresses' routes.
fn origin_dns_names_resolve_through_the_configured_resolver(datapath: Datapath) {
    let topology = Topology::new(&format!("dns-{}", datapath.name())).expect("topology");
    let _origin = servers::tcp_echo(&topology.org, 3005).expect("origin");
    let _dns = servers::dns(
        &topology.org,
        addr::ORG_V4,
        "origin.test",
        &[addr::ORG_V4, addr::ORG_V6],
    )
    .expect("dnsmasq");
    let config = ConfigBuilder::new()
        .resolver(addr::ORG_V4)
        .edge("datapath", datapath.name())
        .app(AppJson::tcp("1000-1010", "named.test").origin_dns("origin.test", 600, "3000-3010"))
        .build();
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    for edge_ip in ["10.0.100.1", "fd00:100::1"] {
        let reply = tcp_exchange(&topology.cli, edge_ip, 1005, "named")
            .unwrap_or_else(|e| panic!("{edge_ip}: {e:#}\n{}", agent.log()));
        assert_eq!(reply, "origin 3005\nnamed\n", "{edge_ip}");
    }
    assert!(
        agent.log().contains("origin addresses in place"),
        "{}",
        agent.log()
    );
    let (opened, _) = datapath.flow_counters("tcp");
    assert_eq!(
        agent.packets_settled(Some(0), opened, 2).expect("stats"),
        2,
        "both connections on the fast path"
    );
    assert_hooks(&agent, datapath, &[(0, "tcp")]);
}

/// Flows NATed at TC expire the same as XDP's: the agent's collector walks
/// the one flow table both hooks share.
fn idle_and_closed_flows_expire_and_are_counted(datapath: Datapath) {
    let topology = Topology::new(&format!("exp-{}", datapath.name())).expect("topology");
    let _tcp = servers::tcp_echo(&topology.org, 3000).expect("tcp origin");
    let _udp = servers::udp_echo(&topology.org, 6300).expect("udp origin");
    let _busy = servers::udp_echo(&topology.org, 6301).expect("udp origin");
    let config = config_with_short_timeouts(datapath);
    assert!(config.contains("flow_timeouts"), "the timeouts must be set");
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    let reply = tcp_exchange(&topology.cli, "10.0.100.1", 1000, "bye")
        .unwrap_or_else(|e| panic!("tcp: {e:#}\n{}", agent.log()));
    assert_eq!(reply, "origin 3000\nbye\n");
    let reply = udp_exchange(&topology.cli, "10.0.100.3", 5300, "ping")
        .unwrap_or_else(|e| panic!("udp: {e:#}\n{}", agent.log()));
    assert_eq!(reply, "origin 6300: ping\n");
    assert_hooks(&agent, datapath, &[(0, "tcp"), (2, "udp")]);
    // A closed TCP flow and an idle UDP flow: both go within a few seconds.
    let (_, tcp_expired) = datapath.flow_counters("tcp");
    let (udp_opened, udp_expired) = datapath.flow_counters("udp");
    let tcp = agent
        .packets_settled(Some(0), tcp_expired, 1)
        .expect("stats");
    let udp = agent
        .packets_settled(Some(2), udp_expired, 1)
        .expect("stats");
    assert_eq!((tcp, udp), (1, 1), "{}", agent.log());
    // A new exchange after expiry opens a new flow and works.
    let reply = udp_exchange(&topology.cli, "10.0.100.3", 5300, "again").expect("udp");
    assert_eq!(reply, "origin 6300: again\n");
    assert_eq!(
        agent
            .packets_settled(Some(2), udp_opened, 2)
            .expect("stats"),
        2
    );

    // A flow that stays busy outlives its 1 s timeout: 12 datagrams 300 ms
    // apart from one socket, every one answered, one flow opened for all.
    let script = "exec 3<>/dev/udp/10.0.100.3/5301 && for i in $(seq 12); do \
                  echo \"live $i\" >&3; timeout 2 head -n 1 <&3 || exit 1; sleep 0.3; done";
    let out = topology
        .cli
        .command("timeout", &["120", "bash", "-c", script])
        .output()
        .expect("bash");
    let replies = String::from_utf8_lossy(&out.stdout);
    assert_eq!(replies.lines().count(), 12, "{replies}");
    assert!(replies.contains("origin 6301: live 12"), "{replies}");
    assert_eq!(
        agent
            .packets_settled(Some(2), udp_opened, 3)
            .expect("stats"),
        3,
        "the busy flow was opened once"
    );
}
