//! `cargo xtask demo`: the agent on a three-namespace topology with
//! `examples/demo.json`, real clients sending to each app, and what the
//! data path did with their packets.
use std::process::Command;

use anyhow::Context as _;
use tests::{
    agent::Agent,
    client::{bracket, tcp_exchange, udp_exchange},
    netns::{Topology, addr, run_checked},
    servers,
};

use crate::{
    build_agent,
    cmd::{target_dir, workspace_root},
    setup,
};

pub fn demo() -> anyhow::Result<()> {
    setup::setup()?;
    build_agent(true)?;
    crate::cmd::run(&mut crate::cmd::command(
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "tests",
            "--bin",
            "udp-pp-origin",
        ],
    ))?;
    let root = workspace_root();
    let agent_bin = target_dir().join("release/proxy-agent");
    // SAFETY: single-threaded here; the harness reads these variables.
    unsafe {
        std::env::set_var("PROXY_AGENT_BIN", &agent_bin);
        std::env::set_var(
            "UDP_PP_ORIGIN_BIN",
            target_dir().join("release/udp-pp-origin"),
        );
    }
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

    banner("origins in org: socat servers that answer with their own port");
    let mut origins = Vec::new();
    for port in [2222, 3000, 3010, 2525] {
        origins.push(servers::tcp_echo(&topology.org, port)?);
        println!("tcp {port}: greets with \"origin {port}\", then echoes");
    }
    origins.push(servers::udp_echo(&topology.org, 5353)?);
    println!("udp 5353: answers \"origin 5353: <what it got>\"");
    origins.push(servers::udp_pp_origin(&topology.org, 5060, "spp", "ok")?);
    println!("udp 5060: reads the Simple Proxy Protocol header, answers with the client it names");

    banner("starting proxy-agent run --config examples/demo.json in edge");
    // The management API too, on the edge's cli-side address, with a token
    // of this run (the example's `change-me` is refused on purpose).
    let token = format!("demo-{}-{}", std::process::id(), nanos());
    let token_file = tests::scratch_dir().join("demo-api-token");
    tests::config::write_token_file(&token_file, &token);
    let mut config: serde_json::Value = serde_json::from_str(&config)?;
    config["api"] = serde_json::json!({
        "listen": format!("{}:{API_PORT}", addr::EDGE_CLI_V4),
        "token_file": token_file,
        "zone": DEMO_ZONE,
    });
    let agent = Agent::start(&topology.edge, &config.to_string(), "native")?;
    println!("agent ready (XDP attached to to-cli and to-org)");

    banner("the embedded DNS server, asked from cli (dig @10.0.1.1)");
    for app in &apps {
        let name = app["dns_name"].as_str().unwrap_or("?");
        for kind in ["A", "AAAA"] {
            let answer = dig(&topology, &["+short", name, kind]);
            let shown = if answer.is_empty() {
                "(none: the app has no address of this family)".to_owned()
            } else {
                answer.replace('\n', " ")
            };
            println!("  {name} {kind} -> {shown}");
        }
    }
    if let Some(ip) = apps.first().and_then(|app| app["edge_ips"][0].as_str()) {
        println!("  PTR {ip} -> {}", dig(&topology, &["+short", "-x", ip]));
    }

    banner("real client traffic from cli (socat for TCP, a UDP socket for UDP)");
    for app in &apps {
        send_to_app(&topology, app);
    }
    println!("\nand to a port no app listens on:");
    match tcp_exchange(&topology.cli, "10.0.100.1", 9, "hello") {
        Ok(reply) => println!("  10.0.100.1:9 -> {reply:?}"),
        Err(err) => println!(
            "  10.0.100.1:9 -> failed: {}",
            last_reason(&format!("{err:#}"))
        ),
    }

    banner("the management API (curl in cli): an app created live, reached, deleted");
    api_demo(&topology, &token)?;

    // The agent adds its connection counts to the counters once a second.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    banner("what the XDP program and the agent counted (proxy-agent stats)");
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
        "\nTLS-off apps without PROXY headers are proxied in the kernel: the first \
         packet of a flow opens it (flow_opened), then packets are rewritten and \
         redirected (to_origin, to_client; neighbor_pending when the next hop's \
         MAC was not yet known). The demo runs `datapath: auto`: the UDP app's NAT \
         runs in XDP, the TCP apps' at TC ingress, after GRO (XDP applies the \
         access rules first, since the smtp app has ip_firewall, and hands their \
         packets up: to_tc; flows opened at TC count as flow_opened_tc). The PROXY v1 app \
         (smtp) goes through the agent's TCP path: XDP checks its access rules \
         and passes it up (to_agent), sk_lookup hands it to the agent, which \
         writes a PROXY v1 line to the origin (the echo origin sends it back: \
         the client sees its own address in it) and counts the connection \
         (conn_accepted, conn_closed). The SPP app (sip) goes through the \
         agent's UDP path: every datagram to the origin carries a 38-byte \
         header naming the client, the origin's reply carries it back, and \
         the agent strips it (the client sees the address the origin read)."
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
    drop(origins);
    drop(topology);
    println!("demo done");
    Ok(())
}

/// The zone id the demo's API serves, and its port.
const DEMO_ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const API_PORT: u16 = 8080;

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// curl in cli against the demo's API: the parsed answer.
fn api(
    topology: &Topology,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let url = format!("http://{}:{API_PORT}{path}", addr::EDGE_CLI_V4);
    let auth = format!("Authorization: Bearer {token}");
    let mut args = vec!["-s", "-m", "10", "-X", method, "-H", &auth];
    if let Some(body) = body {
        args.extend(["-H", "Content-Type: application/json", "-d", body]);
    }
    args.push(&url);
    let out = topology.cli.run("curl", &args)?;
    serde_json::from_str(&out).with_context(|| format!("{method} {path}: not JSON: {out}"))
}

/// Creates an app through the API, shows its DNS answer and a client
/// reaching it, then deletes it and shows the client refused.
fn api_demo(topology: &Topology, token: &str) -> anyhow::Result<()> {
    let apps = format!("/zones/{DEMO_ZONE}/spectrum/apps");
    let body = r#"{"protocol": "tcp/2200", "dns": {"type": "CNAME", "name": "git.demo.example"},
                   "origin_direct": ["tcp://10.0.2.2:2222"]}"#;
    println!(
        "POST {apps}
  {}",
        body.split_whitespace().collect::<Vec<_>>().join(" ")
    );
    let created = api(topology, token, "POST", &apps, Some(body))?;
    let result = &created["result"];
    anyhow::ensure!(created["success"] == true, "POST refused: {created}");
    let id = result["id"].as_str().unwrap_or("?").to_owned();
    println!(
        "  -> success, id {id}, edge_addresses {}, created_on {}",
        result["edge_addresses"],
        result["created_on"].as_str().unwrap_or("?")
    );
    println!(
        "  git.demo.example A -> {}",
        dig(topology, &["+short", "git.demo.example", "A"])
    );
    let edge = result["edge_addresses"][0]
        .as_str()
        .unwrap_or("")
        .to_owned();
    match tcp_exchange(&topology.cli, &edge, 2200, "hello new app") {
        Ok(reply) => println!("  {edge}:2200 -> {:?}", reply.trim_end()),
        Err(err) => println!(
            "  {edge}:2200 -> failed: {}",
            last_reason(&format!("{err:#}"))
        ),
    }
    let deleted = api(topology, token, "DELETE", &format!("{apps}/{id}"), None)?;
    println!(
        "DELETE {apps}/{id}
  -> success {}",
        deleted["success"]
    );
    match tcp_exchange(&topology.cli, &edge, 2200, "still there?") {
        Ok(reply) => println!("  {edge}:2200 -> {:?} (unexpected)", reply.trim_end()),
        Err(err) => println!(
            "  {edge}:2200 -> failed: {}",
            last_reason(&format!("{err:#}"))
        ),
    }
    println!(
        "\nThe other apps' flows were not touched: an unchanged app keeps its \
         kernel slot; the change was written back to the config file."
    );
    Ok(())
}

/// `dig` in cli against the agent's DNS server: its trimmed output.
fn dig(topology: &Topology, args: &[&str]) -> String {
    let mut all = vec!["@10.0.1.1", "+time=2", "+tries=1"];
    all.extend_from_slice(args);
    match topology.cli.run("dig", &all) {
        Ok(out) => out.trim().to_owned(),
        Err(err) => format!("failed: {err:#}"),
    }
}

fn banner(text: &str) {
    println!("\n=== {text}");
}

/// One TCP exchange (or one UDP datagram) with each edge address of the
/// app, at the first and last port of its range.
fn send_to_app(topology: &Topology, app: &serde_json::Value) {
    let name = app["dns_name"].as_str().unwrap_or("?");
    let protocol = app["protocol"].as_str().unwrap_or("?");
    let udp = protocol.starts_with("udp");
    let first = app["edge_port_start"].as_u64().unwrap_or(0) as u16;
    let last = app["edge_port_end"].as_u64().unwrap_or(0) as u16;
    println!(
        "\n{name} ({protocol}, data path: {}):",
        app["data_path"].as_str().unwrap_or("?")
    );
    let mut ports = vec![first];
    if last != first {
        ports.push(last);
    }
    for ip in app["edge_ips"].as_array().into_iter().flatten() {
        let ip = ip.as_str().unwrap_or("");
        for &port in &ports {
            let result = if udp {
                udp_exchange(&topology.cli, ip, port, "hello from cli")
            } else {
                tcp_exchange(&topology.cli, ip, port, "hello from cli")
            };
            let shown = format!("{}:{port}", bracket(ip));
            match result {
                Ok(reply) => println!("  {shown} -> {:?}", reply.trim_end()),
                Err(err) => println!("  {shown} -> failed: {}", last_reason(&format!("{err:#}"))),
            }
        }
    }
}

/// socat's last line ends with the system's reason after "): ".
fn last_reason(err: &str) -> &str {
    let last = err.lines().last().unwrap_or(err);
    last.rsplit("): ").next().unwrap_or(last)
}
