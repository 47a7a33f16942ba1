//! The management API applies a change before it writes the file: a change
//! whose apply fails part way (a forced `LISTENERS` overflow) is rolled
//! back, answered with the failed step, and leaves the file byte for byte
//! and the running apps serving; a `kill -9` at any point of a burst of
//! changes leaves a file the agent restarts on; and the API gives apps
//! only addresses of the configured pools.
use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use tests::{
    agent::Agent,
    client::tcp_exchange,
    config::{AppJson, ConfigBuilder, org4, write_token_file},
    netns::{Netns, Topology, addr},
    process::Background,
    scratch_dir, servers,
};

const ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const TOKEN: &str = "test-token-apply-0123456789abcdef";
const API_PORT: u16 = 8080;
/// A hang guard for one API call on a loaded two-core machine (a change
/// that syncs a few hundred thousand map entries takes seconds).
const CALL_LIMIT: &str = "120";

/// HTTP status and body of an API answer.
struct Answer {
    status: u16,
    body: Value,
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {} {}", self.status, self.body)
    }
}

/// `method path [body]` from `cli` with the token (curl).
fn call(cli: &Netns, method: &str, path: &str, body: Option<&Value>) -> anyhow::Result<Answer> {
    let url = format!("http://{}:{API_PORT}{path}", addr::EDGE_CLI_V4);
    let auth = format!("Authorization: Bearer {TOKEN}");
    let text = body.map(Value::to_string);
    let mut args = vec![
        "-s",
        "-m",
        CALL_LIMIT,
        "-X",
        method,
        "-w",
        "\n%{http_code}",
        "-H",
        &auth,
    ];
    if let Some(text) = &text {
        args.extend([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            text,
        ]);
    }
    args.push(&url);
    let out = cli.run("curl", &args)?;
    let (text, status) = out.rsplit_once('\n').unwrap_or(("", &out));
    Ok(Answer {
        status: status.trim().parse().unwrap_or(0),
        body: serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())),
    })
}

fn apps_path() -> String {
    format!("/zones/{ZONE}/spectrum/apps")
}

fn app_path(id: &str) -> String {
    format!("/zones/{ZONE}/spectrum/apps/{id}")
}

/// The last `n` lines of an agent log.
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A config with the API on the edge's `cli`-facing address, without the
/// SYN proxy (no TC program to verify: quicker starts).
fn with_api(topology: &Topology) -> ConfigBuilder {
    let path = scratch_dir().join(format!("{}-token", topology.edge.name()));
    write_token_file(&path, TOKEN);
    ConfigBuilder::new()
        .edge("syn_proxy", "off")
        .api(API_PORT, &path, ZONE)
}

/// The seed app: `tcp/22` at the pool's first address, to `org`'s 2201.
fn seed() -> AppJson {
    AppJson::tcp(22, "seed.example.test").origin_direct([org4("tcp", 2201)])
}

fn seed_answers(cli: &Netns, agent: &Agent, when: &str) {
    let reply = tcp_exchange(cli, &addr::edge4(0), 22, "seed")
        .unwrap_or_else(|e| panic!("seed app {when}: {e:#}\n{}", tail(&agent.log(), 30)));
    assert_eq!(reply, "origin 2201\nseed\n", "seed app {when}");
}

/// An app on every TCP port of `ips` (static pool addresses): 65,535
/// listener entries per address.
fn all_ports(ips: &[&str]) -> Value {
    json!({
        "protocol": "tcp/1-65535",
        "dns": {"type": "ADDRESS", "name": "all.example.test"},
        "edge_ips": {"type": "static", "ips": ips},
        "origin_direct": [format!("tcp://{}:1-65535", addr::ORG_V4)],
        "proxy_protocol": "off",
        "tls": "off",
    })
}

#[test]
fn a_change_that_fails_to_apply_is_rolled_back_and_leaves_the_file_byte_identical() {
    let Some(topology) = Topology::for_test(
        "a_change_that_fails_to_apply_is_rolled_back_and_leaves_the_file_byte_identical",
        "apfail",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    let _origin = servers::tcp_echo(org, 2201).expect("origin");
    // Three addresses on every port: 196,605 listener entries, which fit
    // in LISTENERS (262,144). Moving the app to three other addresses fits
    // too, but the sync writes the new entries before it removes the old
    // ones: the map fills part way through.
    let from = ["10.0.100.200", "10.0.100.201", "10.0.100.202"];
    let to = ["10.0.100.210", "10.0.100.211", "10.0.100.212"];
    let config = with_api(&topology)
        .app(seed())
        .app(all_ports(&from))
        .build();
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    seed_answers(cli, &agent, "at start");
    let list = call(cli, "GET", &apps_path(), None).expect("list");
    let big = list.body["result"]
        .as_array()
        .and_then(|apps| apps.iter().find(|a| a["protocol"] == "tcp/1-65535"))
        .unwrap_or_else(|| panic!("no tcp/1-65535 app in {list}"))
        .clone();
    let id = big["id"].as_str().expect("id").to_owned();
    let before = std::fs::read(agent.config_path()).expect("config file");

    let answer = call(cli, "PUT", &app_path(&id), Some(&all_ports(&to))).expect("put");
    let message = answer.body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        answer.status == 500 && answer.body["success"] == false,
        "expected 500, got {answer}\n{}",
        tail(&agent.log(), 30)
    );
    let after = std::fs::read(agent.config_path()).expect("config file");
    assert!(
        after == before,
        "a change that failed rewrote the file:\n{}",
        String::from_utf8_lossy(&after)
    );
    assert!(
        message.contains("SyncMaps") && message.contains("rolled back"),
        "the answer names the step and the rollback: {message}"
    );
    // The running config serves on: the seed app answers, the API shows
    // the app where it was, and a later change goes through.
    seed_answers(cli, &agent, "after the failed change");
    let shown = call(cli, "GET", &app_path(&id), None).expect("get");
    assert_eq!(
        shown.body["result"]["edge_ips"]["ips"],
        json!(from),
        "{shown}"
    );
    let answer = call(cli, "DELETE", &app_path(&id), None).expect("delete");
    assert_eq!(answer.status, 200, "{answer}\n{}", tail(&agent.log(), 30));
    seed_answers(cli, &agent, "after the app went");

    let (status, log) = agent.stop().expect("stop");
    assert!(status.success(), "agent exit {status}:\n{}", tail(&log, 30));
}

/// A small xorshift: the kill points, reproducible from the seed printed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Rounds of the kill test: each starts the agent on the file the last
/// one left, changes apps through the API and kills it at a random point.
const KILL_ROUNDS: u64 = 20;
/// API changes per burst, at most (the kill usually comes first).
const BURST: usize = 30;

#[test]
fn kill_9_in_the_middle_of_api_changes_then_a_restart_always_starts() {
    let Some(topology) = Topology::for_test(
        "kill_9_in_the_middle_of_api_changes_then_a_restart_always_starts",
        "apkill",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    let _origins: Vec<Background> = [2201, 5000]
        .into_iter()
        .map(|port| servers::tcp_echo(org, port).expect("origin"))
        .collect();
    let seed_rng = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
        | 1;
    println!("kill points from seed {seed_rng}");
    let mut rng = Rng(seed_rng);
    let mut config = with_api(&topology).app(seed()).build();
    let pin = std::path::PathBuf::from("/sys/fs/bpf/proxy-agent")
        .join(topology.edge.name())
        .join("STATS");
    for round in 0..KILL_ROUNDS {
        // What a killed agent leaves pinned (the next one replaces it):
        // gone first, so that `Agent::start` sees the new one's.
        let _ = std::fs::remove_file(&pin);
        let agent = Agent::start(&topology.edge, &config, "native")
            .unwrap_or_else(|e| panic!("round {round}: the agent did not start: {e:#}\n{config}"));
        seed_answers(cli, &agent, &format!("round {round}, after the restart"));
        let listed = call(cli, "GET", &apps_path(), None).expect("list");
        let file: Value = serde_json::from_str(&config).expect("file is JSON");
        assert_eq!(
            listed.body["result"].as_array().map(Vec::len),
            file["apps"].as_array().map(Vec::len),
            "round {round}: the API serves the file's apps: {listed}"
        );

        let stop = AtomicBool::new(false);
        let kill_after = Duration::from_millis(rng.below(1500));
        std::thread::scope(|scope| {
            scope.spawn(|| burst_of_changes(cli, &stop, round));
            std::thread::sleep(kill_after);
            let pid = agent.pid().expect("agent pid") as i32;
            // SAFETY: a plain kill(2) of the agent this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            stop.store(true, Ordering::Relaxed);
        });
        // A hang guard: SIGKILL ends it at once.
        let _ = agent.wait(Duration::from_secs(30));
        config =
            std::fs::read_to_string(scratch_dir().join(format!("{}.json", topology.edge.name())))
                .expect("the config file");
        assert!(
            serde_json::from_str::<Value>(&config).is_ok(),
            "round {round}: the file is not JSON after kill -9:\n{config}"
        );
    }
}

/// Creates, changes and deletes apps until `stop` (or [`BURST`] calls);
/// errors are expected once the agent is gone.
fn burst_of_changes(cli: &Netns, stop: &AtomicBool, round: u64) {
    let mut ids: Vec<String> = Vec::new();
    for k in 0..BURST {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let port = 4000 + (round as usize * BURST + k) % 1000;
        let app = json!({
            "protocol": format!("tcp/{port}"),
            "dns": {"type": "CNAME", "name": format!("burst{port}.example.test")},
            "origin_direct": [format!("tcp://{}:5000", addr::ORG_V4)],
            "proxy_protocol": "off",
            "tls": "off",
        });
        let answer = match (k % 3, ids.last()) {
            (1, Some(id)) => call(cli, "PUT", &app_path(id), Some(&app)),
            (2, Some(id)) => {
                let id = id.clone();
                ids.pop();
                call(cli, "DELETE", &app_path(&id), None)
            }
            _ => call(cli, "POST", &apps_path(), Some(&app)),
        };
        match answer {
            Ok(answer) if answer.status == 200 => {
                if let Some(id) = answer.body["result"]["id"].as_str()
                    && k % 3 == 0
                {
                    ids.push(id.to_owned());
                }
            }
            _ => return,
        }
    }
}

#[test]
fn the_api_gives_apps_pool_addresses_only_and_no_host_address_starts() {
    let Some(topology) = Topology::for_test(
        "the_api_gives_apps_pool_addresses_only_and_no_host_address_starts",
        "appool",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    let _origin = servers::tcp_echo(org, 2201).expect("origin");
    // An IPv4 pool only: with none for IPv6, the API must not hand an app
    // any IPv6 address (here the edge's own, where the API listens too).
    let base = with_api(&topology).edge("address_pool", json!({"ipv4": addr::POOL_V4}));
    let seed4 = seed().set(
        "edge_ips",
        json!({"type": "dynamic", "connectivity": "ipv4"}),
    );
    let agent =
        Agent::start(&topology.edge, &base.clone().app(seed4).build(), "native").expect("agent");
    let before = std::fs::read(agent.config_path()).expect("config file");
    let app = |ips: &[&str]| {
        json!({
            "protocol": "tcp/2222",
            "dns": {"type": "ADDRESS", "name": "static.example.test"},
            "edge_ips": {"type": "static", "ips": ips},
            "origin_direct": [format!("tcp://{}:2201", addr::ORG_V4)],
            "proxy_protocol": "off",
            "tls": "off",
        })
    };
    for (ips, pool) in [
        (vec![addr::EDGE_CLI_V6], "no edge.address_pool.ipv6"),
        (
            vec!["10.0.200.1"],
            "outside edge.address_pool.ipv4 10.0.100.0/24",
        ),
    ] {
        let answer = call(cli, "POST", &apps_path(), Some(&app(&ips))).expect("post");
        let message = answer.body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            answer.status == 400 && message.contains(ips[0]) && message.contains(pool),
            "{ips:?}: expected 400 naming the address and {pool}, got {answer}"
        );
    }
    assert!(
        std::fs::read(agent.config_path()).expect("config file") == before,
        "a refused change rewrote the file"
    );
    // A pool address is given.
    let answer = call(cli, "POST", &apps_path(), Some(&app(&["10.0.100.77"]))).expect("post");
    assert_eq!(answer.status, 200, "{answer}\n{}", tail(&agent.log(), 20));
    seed_answers(cli, &agent, "after the changes");
    let (status, log) = agent.stop().expect("stop");
    assert!(status.success(), "agent exit {status}:\n{}", tail(&log, 30));

    // The file may name a static address outside the pools, but not one
    // of the host's other interfaces: the side interface is not an edge one.
    let _side = topology.side().expect("side namespace");
    let taken = AppJson::tcp(22, "taken.example.test")
        .origin_direct([org4("tcp", 2201)])
        .set(
            "dns",
            json!({"type": "ADDRESS", "name": "taken.example.test"}),
        )
        .set(
            "edge_ips",
            json!({"type": "static", "ips": [addr::EDGE_SIDE_V6]}),
        );
    let err = match Agent::start(&topology.edge, &base.app(taken).build(), "native") {
        Ok(agent) => panic!("started on the side interface's address:\n{}", agent.log()),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains(addr::EDGE_SIDE_V6) && err.contains(addr::EDGE_SIDE_IF),
        "the refusal names the address and its interface: {err}"
    );
}
