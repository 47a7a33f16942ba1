//! The agent attached in the `edge` namespace of a real topology: real
//! clients in `cli` send to configured and unconfigured listeners, and the
//! counters the agent publishes must show exactly that.
use std::process::Command;

use tests::{
    agent::{Agent, agent_bin, assert_left_nothing},
    config::{AppJson, ConfigBuilder, org4},
    netns::{Netns, Topology, addr},
};

/// app 0: tcp/8080 (gets 10.0.100.1, fd00:100::1), app 1: udp/5300-5310
/// (gets 10.0.100.2, fd00:100::2), from the topology's pool. Both send PROXY
/// headers, so XDP hands their packets to the edge's stack: what this test
/// counts (the fast path has its own suite). The TCP app is firewalled
/// (with no rules: everyone passes), which is what keeps XDP attached for
/// agent-path apps. The TCP app's origin does not
/// exist (no host answers at 10.0.2.99), so no origin-side packet comes
/// back to the edge to be counted as `no_listener`.
fn config() -> String {
    ConfigBuilder::new()
        .app(
            AppJson::tcp(8080, "tcp.test")
                .origin_direct(["tcp://10.0.2.99:80"])
                .proxy_protocol("v1")
                .ip_firewall(true),
        )
        .app(
            AppJson::udp("5300-5310", "udp.test")
                .origin_direct([org4("udp", "6300-6310")])
                .proxy_protocol("simple"),
        )
        .build()
}

/// One TCP connection from `cli` that sends nothing (the agent accepts it
/// for an agent-path app, or the edge's stack refuses it).
fn tcp_attempt(cli: &Netns, target: &str) {
    let status = cli
        .command(
            "timeout",
            &["60", "socat", "-T1", "-u", "OPEN:/dev/null", target],
        )
        .status()
        .expect("socat runs");
    assert_ne!(
        status.code(),
        Some(124),
        "socat hung on {target} (60 s, a hang guard)"
    );
}

/// One UDP datagram from `cli`.
fn udp_send(cli: &Netns, target: &str) {
    let mut cmd = cli.command("sh", &["-c", &format!("echo ping | socat -u - {target}")]);
    let status = cmd.status().expect("socat runs");
    assert!(status.success(), "sending to {target}");
}

#[test]
fn attached_agent_counts_packets_per_app_and_none_for_unconfigured_ports() {
    let Some(topology) = Topology::for_test(
        "attached_agent_counts_packets_per_app_and_none_for_unconfigured_ports",
        "cnt",
    ) else {
        return;
    };
    let agent = Agent::start(&topology.edge, &config(), "native").expect("agent starts");
    let cli = &topology.cli;

    for _ in 0..3 {
        tcp_attempt(cli, "TCP4:10.0.100.1:8080,connect-timeout=2");
    }
    for _ in 0..2 {
        tcp_attempt(cli, "TCP6:[fd00:100::1]:8080,connect-timeout=2");
    }
    udp_send(cli, "UDP4:10.0.100.2:5300");
    udp_send(cli, "UDP6:[fd00:100::2]:5310");
    // Not configured: another port, the other protocol, one past the range.
    // Dropped, so unanswered: 0.5 s ends it before the SYN is sent again.
    tcp_attempt(cli, "TCP4:10.0.100.1:9090,connect-timeout=0.5");
    udp_send(cli, "UDP4:10.0.100.1:8080");
    udp_send(cli, "UDP4:10.0.100.2:5311");

    let tcp_app = agent
        .packets_settled(Some(0), "to_agent", 5)
        .expect("stats");
    let udp_app = agent
        .packets_settled(Some(1), "to_agent", 2)
        .expect("stats");
    // To pool addresses: dropped as `unlisted` (edge.unlisted's default).
    let unmatched = agent.packets_settled(None, "unlisted", 3).expect("stats");
    // Every packet of the agent-path connections (SYN, ACK, FIN, ...).
    assert!(
        tcp_app >= 5,
        "at least a SYN per TCP connection\n{}",
        agent.log()
    );
    let accepted = agent
        .packets_settled(Some(0), "conn_accepted", 5)
        .expect("stats");
    assert_eq!(
        accepted,
        5,
        "each connection reached the agent\n{}",
        agent.log()
    );
    assert_eq!(udp_app, 2, "one per datagram\n{}", agent.log());
    assert_eq!(unmatched, 3, "unconfigured port, protocol and range end");

    let (status, log) = agent.stop().expect("agent stops");
    assert!(status.success(), "agent exit {status}\n{log}");
    assert!(log.contains("stopped"), "{log}");
    assert_left_nothing(&topology.edge);
}

fn run_agent_expecting_failure(netns: &Netns, args: &[&str]) -> String {
    let bin = agent_bin();
    let out = netns
        .command(&bin.to_string_lossy(), args)
        .output()
        .expect("agent runs");
    assert!(!out.status.success(), "agent should fail: {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn run_explains_missing_interface_bpffs_and_root() {
    let Some(topology) = Topology::for_test("run_explains_missing_interface_bpffs_and_root", "pre")
    else {
        return;
    };
    let dir = tests::scratch_dir();
    let missing_if = dir.join("missing-if.json");
    std::fs::write(&missing_if, config().replace(addr::EDGE_ORG_IF, "nosuch0"))
        .expect("write config");
    let good = dir.join("good.json");
    std::fs::write(&good, config()).expect("write config");

    let err = run_agent_expecting_failure(
        &topology.edge,
        &["run", "--config", &missing_if.to_string_lossy()],
    );
    assert!(
        err.contains(r#"interface "nosuch0" (edge.interfaces[1]) does not exist"#),
        "{err}"
    );

    let err = run_agent_expecting_failure(
        &topology.edge,
        &[
            "run",
            "--config",
            &good.to_string_lossy(),
            "--bpffs",
            "/tmp",
        ],
    );
    assert!(
        err.contains("no bpf filesystem is mounted at /tmp"),
        "{err}"
    );

    // The same command as an unprivileged user, with a copy of the binary
    // that user may execute (a clone under /root is out of its reach).
    let copy = dir.join("proxy-agent-unprivileged");
    std::fs::copy(agent_bin(), &copy).expect("copy the agent");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&copy)
        .args(["run", "--config", &good.to_string_lossy()])
        .output()
        .expect("setpriv runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("proxy-agent run needs root"), "{err}");
}
