//! `cargo xtask demo`: the agent on a three-namespace topology with
//! `examples/demo.json`, real clients sending to each app, and what the
//! data path did with their packets.
use std::{process::Command, time::Duration};

use anyhow::Context as _;
use tests::{
    agent::Agent,
    netns::{Topology, addr, run_checked},
};

use crate::{build_agent, cmd::workspace_root, setup};

pub fn demo() -> anyhow::Result<()> {
    setup::setup()?;
    build_agent(true)?;
    let root = workspace_root();
    let agent_bin = root.join("target/release/proxy-agent");
    // SAFETY: single-threaded here; the harness reads this variable.
    unsafe { std::env::set_var("PROXY_AGENT_BIN", &agent_bin) };
    let config_path = root.join("examples/demo.json");
    let config = std::fs::read_to_string(&config_path)
        .with_context(|| format!("reading {}", config_path.display()))?;

    banner("the apps of examples/demo.json (proxy-agent apps)");
    let apps_json = run_checked(Command::new(&agent_bin).args([
        "apps",
        "--config",
        &config_path.to_string_lossy(),
        "--json",
    ]))?;
    print!(
        "{}",
        run_checked(Command::new(&agent_bin).args([
            "apps",
            "--config",
            &config_path.to_string_lossy()
        ]))?
    );
    let apps: Vec<serde_json::Value> = serde_json::from_str(&apps_json)?;

    banner("topology: cli -- edge (agent + XDP) -- org, in network namespaces");
    let topology = Topology::new("demo")?;
    println!(
        "cli {} / {}  --  edge {} | {}  --  org {} / {}",
        addr::CLI_V4,
        addr::CLI_V6,
        addr::EDGE_CLI_V4,
        addr::EDGE_ORG_V4,
        addr::ORG_V4,
        addr::ORG_V6
    );
    println!("edge address pool {} and {}", addr::POOL_V4, addr::POOL_V6);

    banner("starting proxy-agent run --config examples/demo.json in edge");
    let agent = Agent::start(&topology.edge, &config, "native")?;
    println!("agent ready (XDP attached to to-cli and to-org)");

    banner("real client traffic from cli");
    for app in &apps {
        send_to_app(&topology, app);
    }
    println!("\nand to a port no app listens on:");
    let (ok, said) = tcp_connect(&topology, "10.0.100.1", 9);
    println!("  tcp 10.0.100.1:9 -> {}", outcome(ok, &said));

    banner("what the XDP program counted (proxy-agent stats)");
    print!(
        "{}",
        run_checked(Command::new(&agent_bin).args([
            "stats",
            "--instance",
            topology.edge.name(),
            "--config",
            &config_path.to_string_lossy(),
        ]))?
    );
    println!(
        "\nEvery packet to an app was recognised in XDP and counted for that app \
         (to_agent); the rest counted as no_listener. Packets are handed to the \
         edge's stack for now, which refuses them: forwarding to the origins (fast \
         path NAT, TLS and PROXY slow path) are the next milestones."
    );

    banner("stopping the agent (SIGTERM): XDP detached, namespaces removed");
    let (status, log) = agent.stop()?;
    for line in log
        .lines()
        .rev()
        .take(3)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        println!("  agent: {line}");
    }
    println!("agent exited: {status}");
    drop(topology);
    println!("demo done");
    Ok(())
}

fn banner(text: &str) {
    println!("\n=== {text}");
}

/// One TCP connection (or one UDP datagram) to each edge address and the
/// first port of the app.
fn send_to_app(topology: &Topology, app: &serde_json::Value) {
    let name = app["dns_name"].as_str().unwrap_or("?");
    let protocol = app["protocol"].as_str().unwrap_or("?");
    let port = app["edge_port_start"].as_u64().unwrap_or(0) as u16;
    println!(
        "\n{name} ({protocol}, data path: {}):",
        app["data_path"].as_str().unwrap_or("?")
    );
    for ip in app["edge_ips"].as_array().into_iter().flatten() {
        let ip = ip.as_str().unwrap_or("");
        let (ok, said) = if protocol.starts_with("udp") {
            udp_exchange(topology, ip, port)
        } else {
            tcp_connect(topology, ip, port)
        };
        let shown = if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        };
        println!("  {} {shown} -> {}", &protocol[..3], outcome(ok, &said));
    }
}

fn outcome(ok: bool, said: &str) -> String {
    match (ok, said.trim()) {
        (true, "") => "sent".to_owned(),
        (true, reply) => format!("reply {reply:?}"),
        (false, err) => {
            // socat's last line ends with the system's reason after "): ".
            let last = err.lines().last().unwrap_or(err);
            let reason = last.rsplit("): ").next().unwrap_or(last);
            format!("failed: {reason}")
        }
    }
}

/// socat from cli: connect, send a line, close.
fn tcp_connect(topology: &Topology, ip: &str, port: u16) -> (bool, String) {
    let target = format!("TCP:{}:{port},connect-timeout=2", bracket(ip));
    socat(topology, &["-T2", "-", &target])
}

/// socat from cli: one datagram, wait a second for a reply.
fn udp_exchange(topology: &Topology, ip: &str, port: u16) -> (bool, String) {
    let target = format!("UDP:{}:{port}", bracket(ip));
    socat(topology, &["-T1", "-", &target])
}

fn socat(topology: &Topology, args: &[&str]) -> (bool, String) {
    use std::io::Write as _;
    let mut cmd = topology.cli.command("timeout", &["5", "socat"]);
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let Ok(mut child) = cmd.spawn() else {
        return (false, "could not start socat".to_owned());
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"hello from cli\n");
    }
    std::thread::sleep(Duration::from_millis(50));
    match child.wait_with_output() {
        Ok(out) if out.status.success() => (true, String::from_utf8_lossy(&out.stdout).into()),
        Ok(out) => (false, String::from_utf8_lossy(&out.stderr).into()),
        Err(err) => (false, err.to_string()),
    }
}

fn bracket(ip: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}
