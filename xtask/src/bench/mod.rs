//! `cargo xtask bench`: the proxy and its peers side by side, in one run,
//! on one topology (`cli -- edge -- org` namespaces in "wire" mode: the
//! hosts send complete checksums, every veth has GRO on, as physical NICs
//! behave). Results are ratios as much as figures: this machine is shared
//! and absolute numbers drift.
//!
//! Systems: direct kernel routing through `edge`; a minimal XDP router (FIB
//! lookup + redirect, no NAT: the ceiling of any XDP design here); HAProxy
//! (tcp mode); nginx stream; and this proxy's XDP fast path.
//!
//! Access rules (no topology): the XDP program's cost per packet with no
//! rules, 10 and 1,000,000 prefixes and a whole country of the GeoIP
//! database loaded, and how long expanding and loading each set takes.
use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use tests::{
    agent::Agent,
    netns::{Netns, Topology, addr, run_checked},
    process::Background,
    scratch_dir, servers,
};

use crate::{
    build_agent,
    cmd::{target_dir, workspace_root},
    setup,
};

/// The edge address the proxies listen on.
const EDGE_IP: &str = "10.0.100.1";
const IPERF_PORT: u16 = 5201;
const HTTP_PORT: u16 = 80;
/// The `--only` value that measures the access rules alone.
const ACCESS_RULES: &str = "access-rules";
/// Where the access-rule part of BENCHMARKS.md starts.
const RULES_HEADING: &str = "## Access rules";
/// The country blocked whole in the access-rule benchmark (one with many
/// networks), and where its allowed client comes from.
const BLOCKED_COUNTRY: &str = "US";
const ALLOWED_COUNTRY: &str = "DE";

pub struct Options {
    pub quick: bool,
    pub only: Option<String>,
    pub repeats: usize,
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum System {
    Direct,
    XdpRouter,
    Haproxy,
    Nginx,
    Ours,
}

impl System {
    const ALL: [System; 5] = [
        System::Direct,
        System::XdpRouter,
        System::Haproxy,
        System::Nginx,
        System::Ours,
    ];

    fn name(self) -> &'static str {
        match self {
            System::Direct => "direct",
            System::XdpRouter => "xdp-router",
            System::Haproxy => "haproxy",
            System::Nginx => "nginx",
            System::Ours => "spectrum-xdp",
        }
    }

    /// Where clients connect: the origin itself for the routing baselines,
    /// the edge address for the proxies.
    fn target(self) -> &'static str {
        match self {
            System::Direct | System::XdpRouter => addr::ORG_V4,
            _ => EDGE_IP,
        }
    }

    fn is_peer(self) -> bool {
        matches!(self, System::Haproxy | System::Nginx)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Scenario {
    Tcp1,
    Tcp8,
    Udp64,
    ConnRate,
}

impl Scenario {
    const ALL: [Scenario; 4] = [
        Scenario::Tcp1,
        Scenario::Tcp8,
        Scenario::Udp64,
        Scenario::ConnRate,
    ];

    fn name(self) -> &'static str {
        match self {
            Scenario::Tcp1 => "tcp_1_stream",
            Scenario::Tcp8 => "tcp_8_streams",
            Scenario::Udp64 => "udp_64b",
            Scenario::ConnRate => "tcp_conn_rate",
        }
    }

    fn unit(self) -> &'static str {
        match self {
            Scenario::Tcp1 | Scenario::Tcp8 => "Gbit/s",
            Scenario::Udp64 => "kpps delivered",
            Scenario::ConnRate => "conn/s",
        }
    }

    fn applies_to(self, system: System) -> bool {
        // HAProxy has no UDP proxying.
        !(self == Scenario::Udp64 && system == System::Haproxy)
    }
}

/// Figures of one (scenario, system): one per repetition.
type Results = BTreeMap<(Scenario, System), Vec<f64>>;

pub fn bench(options: Options) -> anyhow::Result<()> {
    let started = Instant::now();
    let (systems, measure_rules) = selection(options.only.as_deref())?;
    setup::setup()?;
    build_agent(true)?;
    let release = target_dir().join("release");
    let rules = if measure_rules {
        Some(rules_report(&access_rules(&release)?)?)
    } else {
        None
    };
    let throughput = if systems.is_empty() {
        None
    } else {
        Some(throughput(&systems, &options, &release, started)?)
    };
    write_results(throughput.as_ref(), rules.as_ref())?;
    for report in [&throughput, &rules].into_iter().flatten() {
        println!("\n{}", report.table);
    }
    println!(
        "wrote BENCHMARKS.md and bench/results.json ({} s)",
        started.elapsed().as_secs()
    );
    Ok(())
}

/// What `--only` selects: the systems whose throughput is measured, and
/// whether the access rules are.
fn selection(only: Option<&str>) -> anyhow::Result<(Vec<System>, bool)> {
    let Some(only) = only else {
        return Ok((System::ALL.to_vec(), true));
    };
    if only == ACCESS_RULES {
        return Ok((Vec::new(), true));
    }
    match System::ALL.into_iter().find(|s| s.name() == only) {
        Some(system) => Ok((vec![system], false)),
        None => bail!(
            "--only {only}: expected one of {}, {ACCESS_RULES}",
            System::ALL.map(System::name).join(", ")
        ),
    }
}

/// The systems side by side on the namespace topology.
fn throughput(
    systems: &[System],
    options: &Options,
    release: &Path,
    started: Instant,
) -> anyhow::Result<Report> {
    // SAFETY: single-threaded here; the harness reads this variable.
    unsafe { std::env::set_var("PROXY_AGENT_BIN", release.join("proxy-agent")) };
    let seconds = if options.quick { 2 } else { 5 };
    let repeats = if options.quick { 1 } else { options.repeats };

    let topology = Topology::new("bench")?;
    for dev in [addr::EDGE_CLI_IF, addr::EDGE_ORG_IF] {
        topology.edge.run("ethtool", &["-K", dev, "gro", "on"])?;
    }
    let work = scratch_dir().join("bench");
    std::fs::create_dir_all(&work)?;
    let _iperf = topology.org.spawn(
        "iperf3-server",
        "iperf3",
        &["-s", "-p", &IPERF_PORT.to_string()],
    )?;
    servers::wait_listening(&topology.org, "t", IPERF_PORT)?;
    let _http = nginx_origin(&topology.org, &work)?;
    // Resolve neighbours once, so no system pays for it in its first run.
    topology.cli.run("ping", &["-c1", "-W2", addr::ORG_V4])?;
    topology.edge.run("ping", &["-c1", "-W2", addr::ORG_V4])?;
    topology.edge.run("ping", &["-c1", "-W2", addr::CLI_V4])?;

    // Repetitions go round all systems in turn, so the machine's drift
    // spreads over every system instead of landing on one.
    let mut results = Results::new();
    let mut failed_connections: BTreeMap<System, u64> = BTreeMap::new();
    for run in 1..=repeats {
        for &system in systems {
            let running = start(system, &topology, &work, release)
                .with_context(|| format!("starting {}", system.name()))?;
            for scenario in Scenario::ALL {
                if !scenario.applies_to(system) {
                    continue;
                }
                let (value, failed) = measure(scenario, system, &topology, release, seconds)
                    .with_context(|| format!("{} through {}", scenario.name(), system.name()))?;
                *failed_connections.entry(system).or_default() += failed;
                println!(
                    "[bench {:>4}s] run {run}/{repeats} {:<14} {:<13} {value:.2} {}{}",
                    started.elapsed().as_secs(),
                    scenario.name(),
                    system.name(),
                    scenario.unit(),
                    if failed > 0 {
                        format!(" ({failed} connections failed)")
                    } else {
                        String::new()
                    }
                );
                results.entry((scenario, system)).or_default().push(value);
            }
            running.stop();
        }
    }
    let cost = xdp_cost(&topology, &work, release);
    if let Err(err) = &cost {
        println!("xdp cost per packet not measured: {err:#}");
    }
    report(
        &results,
        &failed_connections,
        cost.as_ref().ok(),
        seconds,
        repeats,
    )
}

/// An HTTP origin answering `ok` and closing, for the connection rate.
fn nginx_origin(org: &Netns, work: &Path) -> anyhow::Result<Background> {
    let config = format!(
        "worker_processes 1;\nevents {{ worker_connections 8192; }}\n\
         http {{ access_log off; server {{ listen {org}:{HTTP_PORT} reuseport; \
         keepalive_timeout 0; location / {{ return 200 \"ok\\n\"; }} }} }}\n",
        org = addr::ORG_V4,
    );
    let server = servers::nginx(org, "nginx-origin", &work.join("nginx-origin"), &config)?;
    servers::wait_listening(org, "t", HTTP_PORT)?;
    Ok(server)
}

/// What keeps a system running while it is measured.
enum Running {
    Nothing,
    Process(Background),
    Agent(Agent),
}

impl Running {
    /// Stops the system; its log is shown when it did not stop cleanly.
    fn stop(self) {
        let stopped = match self {
            Running::Nothing => return,
            Running::Process(process) => process.stop(Duration::from_secs(5)),
            Running::Agent(agent) => {
                if let Ok(rows) = agent.stats() {
                    for row in rows {
                        println!(
                            "  counter: app {} {} {} packets",
                            row["app"], row["verdict"], row["packets"]
                        );
                    }
                }
                agent.stop()
            }
        };
        match stopped {
            Ok((status, _)) if status.success() || status.code() == Some(143) => {}
            Ok((status, log)) => println!("  stopped with {status}:\n{log}"),
            Err(err) => println!("  could not stop: {err:#}"),
        }
    }
}

fn start(
    system: System,
    topology: &Topology,
    work: &Path,
    release: &Path,
) -> anyhow::Result<Running> {
    let edge = &topology.edge;
    let origin = addr::ORG_V4;
    Ok(match system {
        System::Direct => Running::Nothing,
        System::XdpRouter => {
            let helper = release.join("bench-helper");
            let mut router = edge.spawn(
                "xdp-router",
                &helper.to_string_lossy(),
                &["router", addr::EDGE_CLI_IF, addr::EDGE_ORG_IF],
            )?;
            wait_for_line(&mut router, "router ready")?;
            Running::Process(router)
        }
        System::Haproxy => {
            let conf = work.join("haproxy.cfg");
            std::fs::write(
                &conf,
                format!(
                    "global\n  maxconn 9000\n  nbthread 2\n\
                     defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
                     listen iperf\n  bind {EDGE_IP}:{IPERF_PORT}\n  server o1 {origin}:{IPERF_PORT}\n\
                     listen http\n  bind {EDGE_IP}:{HTTP_PORT}\n  server o1 {origin}:{HTTP_PORT}\n"
                ),
            )?;
            let process = edge.spawn(
                "haproxy",
                "haproxy",
                &["-db", "-f", &conf.to_string_lossy()],
            )?;
            servers::wait_listening(edge, "t", HTTP_PORT)?;
            Running::Process(process)
        }
        System::Nginx => {
            let config = format!(
                "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
                 worker_processes 2;\nevents {{ worker_connections 8192; }}\n\
                 stream {{\n\
                   server {{ listen {EDGE_IP}:{IPERF_PORT}; proxy_pass {origin}:{IPERF_PORT}; }}\n\
                   server {{ listen {EDGE_IP}:{IPERF_PORT} udp; proxy_pass {origin}:{IPERF_PORT}; proxy_timeout 5s; }}\n\
                   server {{ listen {EDGE_IP}:{HTTP_PORT}; proxy_pass {origin}:{HTTP_PORT}; }}\n\
                 }}\n"
            );
            let process = servers::nginx(edge, "nginx-proxy", &work.join("nginx-proxy"), &config)?;
            servers::wait_listening(edge, "t", HTTP_PORT)?;
            Running::Process(process)
        }
        System::Ours => Running::Agent(Agent::start(edge, &ours_config(), "native")?),
    })
}

/// The same service as the peers: TCP and UDP 5201 and TCP 80 on EDGE_IP.
fn ours_config() -> String {
    let origin = addr::ORG_V4;
    let app = |protocol: &str, name: &str, port: u16| {
        format!(
            r#"{{"protocol": "{protocol}/{port}", "dns": {{"type": "ADDRESS", "name": "{name}"}},
               "edge_ips": {{"type": "static", "ips": ["{EDGE_IP}"]}},
               "origin_direct": ["{protocol}://{origin}:{port}"]}}"#
        )
    };
    format!(
        r#"{{"edge": {{"interfaces": ["{}", "{}"]}},
            "apps": [{}, {}, {}]}}"#,
        addr::EDGE_CLI_IF,
        addr::EDGE_ORG_IF,
        app("tcp", "iperf.bench", IPERF_PORT),
        app("udp", "iperf-udp.bench", IPERF_PORT),
        app("tcp", "http.bench", HTTP_PORT),
    )
}

fn wait_for_line(process: &mut Background, line: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !process.log().contains(line) {
        if let Some(status) = process.exited() {
            bail!("exited ({status}) before {line:?}:\n{}", process.log());
        }
        if Instant::now() > deadline {
            bail!("no {line:?} after 20 s:\n{}", process.log());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// One figure, and the connections that failed while taking it.
fn measure(
    scenario: Scenario,
    system: System,
    topology: &Topology,
    release: &Path,
    seconds: u64,
) -> anyhow::Result<(f64, u64)> {
    let target = system.target();
    let secs = seconds.to_string();
    let port = IPERF_PORT.to_string();
    let iperf = |extra: &[&str]| -> anyhow::Result<serde_json::Value> {
        let mut args = vec!["-c", target, "-p", &port, "-t", &secs, "-J"];
        args.extend_from_slice(extra);
        let out = topology.cli.run("iperf3", &args)?;
        serde_json::from_str(&out).context("iperf3 JSON")
    };
    Ok(match scenario {
        Scenario::ConnRate => conn_rate(
            &topology.cli,
            format!("{target}:{HTTP_PORT}").parse()?,
            4,
            Duration::from_secs(seconds),
        )?,
        Scenario::Tcp1 | Scenario::Tcp8 => {
            let streams = if scenario == Scenario::Tcp1 { "1" } else { "8" };
            let json = iperf(&["-P", streams])?;
            let bits = json["end"]["sum_received"]["bits_per_second"]
                .as_f64()
                .context("no sum_received in iperf3 output")?;
            (bits / 1e9, 0)
        }
        Scenario::Udp64 => (udp_flood(topology, release, target, seconds)?, 0),
    })
}

/// 64-byte UDP datagrams from trafgen (packet mmap, one sender thread: far
/// faster than a socket sender) toward `target`:5201 for `seconds`; returns
/// the thousands per second that reached the origin, counted (and dropped)
/// by an XDP sink on the origin's interface, so the origin's own stack does
/// not cap the figure.
fn udp_flood(
    topology: &Topology,
    release: &Path,
    target: &str,
    seconds: u64,
) -> anyhow::Result<f64> {
    let mac = |ns: &Netns, dev: &str| -> anyhow::Result<String> {
        let out = ns.run("ip", &["-br", "link", "show", dev])?;
        out.split_whitespace()
            .nth(2)
            .map(str::to_owned)
            .context("no MAC in `ip -br link`")
    };
    let edge_mac = mac(&topology.edge, addr::EDGE_CLI_IF)?;
    let cli_mac = mac(&topology.cli, addr::CLI_IF)?;
    let conf = scratch_dir().join("bench").join("udp64.trafgen");
    std::fs::write(
        &conf,
        format!(
            "{{ eth(da={edge_mac}, sa={cli_mac}, type=0x0800), \
             ipv4(saddr={cli}, daddr={target}, ttl=64, df), \
             udp(sport=40000, dport={IPERF_PORT}), fill(0x41, 64) }}\n",
            cli = addr::CLI_V4,
        ),
    )?;
    let helper = release.join("bench-helper");
    let mut sink = topology.org.spawn(
        "udp-sink",
        &helper.to_string_lossy(),
        &["sink", addr::ORG_IF],
    )?;
    wait_for_line(&mut sink, "sink ready")?;
    let trafgen = topology
        .cli
        .command(
            "timeout",
            &[
                &seconds.to_string(),
                "trafgen",
                "--dev",
                addr::CLI_IF,
                "--conf",
                &conf.to_string_lossy(),
                "--cpus",
                "1",
            ],
        )
        .output()
        .context("starting trafgen")?;
    // timeout ends trafgen: 124 is the normal end. Stopped with a full TX
    // ring, trafgen may also fail to flush it on the way out: harmless
    // here, the sink counts what arrived.
    let stderr = String::from_utf8_lossy(&trafgen.stderr);
    let ended_by_timeout = trafgen.status.code() == Some(124)
        || (trafgen.status.code() == Some(1) && stderr.contains("Flushing TX_RING failed"));
    if !trafgen.status.success() && !ended_by_timeout {
        bail!("trafgen failed ({}): {}", trafgen.status, stderr.trim());
    }
    std::thread::sleep(Duration::from_millis(300));
    let (_, log) = sink.stop(Duration::from_secs(5))?;
    let count: u64 = log
        .lines()
        .find_map(|l| l.strip_prefix("sink count "))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no count from the sink:\n{log}"))?;
    Ok(count as f64 / seconds as f64 / 1e3)
}

/// New TCP connections per second, each a tiny HTTP/1.0 request and its
/// answer, from `threads` threads in the client namespace; and how many
/// failed.
fn conn_rate(
    cli: &Netns,
    target: SocketAddr,
    threads: usize,
    duration: Duration,
) -> anyhow::Result<(f64, u64)> {
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
            let enter = cli.enter_handle();
            std::thread::spawn(move || -> anyhow::Result<()> {
                enter()?;
                let mut buf = [0u8; 512];
                while Instant::now() < deadline {
                    let ok = (|| -> std::io::Result<()> {
                        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
                        s.set_read_timeout(Some(Duration::from_secs(2)))?;
                        s.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")?;
                        while s.read(&mut buf)? > 0 {}
                        Ok(())
                    })();
                    match ok {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    Ok((
        done.load(Ordering::Relaxed) as f64 / duration.as_secs_f64(),
        failed.load(Ordering::Relaxed),
    ))
}

/// ns/packet of the proxy program (BPF_PROG_TEST_RUN) in the edge namespace.
fn xdp_cost(topology: &Topology, work: &Path, release: &Path) -> anyhow::Result<serde_json::Value> {
    let config = work.join("cost.json");
    std::fs::write(&config, ours_config())?;
    let helper = release.join("bench-helper");
    let out = run_checked(&mut topology.edge.command(
        &helper.to_string_lossy(),
        &[
            "xdp-cost",
            "--ingress",
            addr::EDGE_CLI_IF,
            "--config",
            &config.to_string_lossy(),
            "--client",
            addr::CLI_V4,
            "--edge",
            EDGE_IP,
            "--port",
            &IPERF_PORT.to_string(),
        ],
    ))?;
    serde_json::from_str(&out).context("bench-helper output")
}

/// One part of the results: its section of BENCHMARKS.md, its JSON, and
/// its table for the console.
struct Report {
    markdown: String,
    json: serde_json::Value,
    table: String,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// When and from which commit the figures come.
fn date_and_commit() -> (String, String) {
    (
        shell("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        shell("git", &["rev-parse", "--short", "HEAD"]),
    )
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, kernel {}", kernel.trim())
}

fn shell(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn report(
    results: &Results,
    failed_connections: &BTreeMap<System, u64>,
    cost: Option<&serde_json::Value>,
    seconds: u64,
    repeats: usize,
) -> anyhow::Result<Report> {
    let (date, commit) = date_and_commit();
    let mut table = String::new();
    writeln!(
        table,
        "| scenario | unit | {} | ours / direct | ours / xdp-router | ours / best peer |",
        System::ALL.map(System::name).join(" | ")
    )?;
    writeln!(table, "|{}", "---|".repeat(System::ALL.len() + 5))?;
    let mut json_rows = Vec::new();
    for scenario in Scenario::ALL {
        let figure = |system: System| results.get(&(scenario, system)).map(|v| median(v));
        let mut cells = Vec::new();
        for system in System::ALL {
            cells.push(match results.get(&(scenario, system)) {
                Some(values) if values.len() > 1 => {
                    let (lo, hi) = values
                        .iter()
                        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
                    format!("{:.2} ({lo:.2}-{hi:.2})", median(values))
                }
                Some(values) => format!("{:.2}", median(values)),
                None => "n/a".into(),
            });
            if let Some(values) = results.get(&(scenario, system)) {
                json_rows.push(serde_json::json!({
                    "scenario": scenario.name(), "system": system.name(), "unit": scenario.unit(),
                    "median": median(values), "runs": values,
                }));
            }
        }
        let ours = figure(System::Ours);
        let ratio = |base: Option<f64>| match (ours, base) {
            (Some(o), Some(b)) if b > 0.0 => format!("{:.2}x", o / b),
            _ => "n/a".into(),
        };
        let best_peer = System::ALL
            .iter()
            .filter(|s| s.is_peer())
            .filter_map(|s| figure(*s))
            .fold(None, |best: Option<f64>, v| {
                Some(best.map_or(v, |b| b.max(v)))
            });
        writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} |",
            scenario.name(),
            scenario.unit(),
            cells.join(" | "),
            ratio(figure(System::Direct)),
            ratio(figure(System::XdpRouter)),
            ratio(best_peer)
        )?;
    }
    let mut markdown = String::new();
    writeln!(markdown, "# Benchmarks\n")?;
    writeln!(
        markdown,
        "Produced by `cargo xtask bench` (do not edit by hand). {date}, commit {commit}, \
         on {}.\n",
        machine()
    )?;
    writeln!(
        markdown,
        "Topology: `cli -- edge -- org` network namespaces joined by veth pairs on one \
         machine, in \"wire\" mode (client and origin veths with tx checksum offload off, \
         GRO on everywhere). Each figure is the median of {repeats} run(s) of {seconds} s \
         (min-max in brackets). Client, proxy and origin share the machine's cores, so \
         ratios matter more than absolute figures.\n"
    )?;
    writeln!(markdown, "{table}")?;
    writeln!(
        markdown,
        "- direct: kernel IP forwarding in `edge`, clients address the origin.\n\
         - xdp-router: a minimal XDP program in `edge` (FIB lookup + redirect, no NAT, no \
           conntrack): the ceiling of any XDP design here.\n\
         - haproxy (tcp mode, 2 threads) and nginx stream (2 workers): L4 proxies in `edge`; \
           HAProxy has no UDP.\n\
         - spectrum-xdp: this proxy's XDP fast path (conntrack, NAT, checksums, redirect).\n\
         - tcp_*: iperf3, bytes received by the origin. udp_64b: trafgen (packet \
           mmap, one thread) sends 64-byte-payload datagrams of one flow as fast as it \
           can; the figure is datagrams per second that reached the origin's interface, \
           counted and dropped there by an XDP sink. tcp_conn_rate: 4 client threads, \
           each connection one HTTP/1.0 request to an nginx origin that closes it.\n"
    )?;
    let failures: Vec<String> = failed_connections
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(system, n)| format!("{} {n}", system.name()))
        .collect();
    if failures.is_empty() {
        writeln!(
            markdown,
            "No connection failed in the connection-rate runs.\n"
        )?;
    } else {
        writeln!(
            markdown,
            "Connections that failed (all runs): {}.\n",
            failures.join(", ")
        )?;
    }
    if let Some(cost) = cost {
        writeln!(
            markdown,
            "XDP program cost per packet (BPF_PROG_TEST_RUN, {} repetitions): fast-path hit \
             (flow lookup + NAT + checksums + FIB lookup; two flows that rewrite into each \
             other, so every repetition is a hit) {} ns; packet to no listener {} ns; \
             non-IP frame {} ns.",
            cost["repeat"], cost["fast_path_hit_ns"], cost["no_listener_ns"], cost["not_ip_ns"]
        )?;
    }
    let json = serde_json::json!({
        "date": date, "commit": commit, "machine": machine(), "seconds": seconds,
        "repeats": repeats, "results": json_rows, "xdp_cost": cost,
        "failed_connections": failed_connections
            .iter()
            .map(|(system, n)| (system.name(), *n))
            .collect::<BTreeMap<_, _>>(),
    });
    Ok(Report {
        markdown,
        json,
        table,
    })
}

/// The access rules' figures, from `bench-helper rule-cost` (BPF objects
/// only: no namespace, no interface).
fn access_rules(release: &Path) -> anyhow::Result<serde_json::Value> {
    let helper = release.join("bench-helper");
    let out = run_checked(Command::new(helper).args([
        "rule-cost",
        "--database",
        setup::GEOIP_COUNTRY_DB,
        "--country",
        BLOCKED_COUNTRY,
        "--allowed-country",
        ALLOWED_COUNTRY,
    ]))
    .context("measuring the access rules")?;
    serde_json::from_str(&out).context("bench-helper rule-cost output")
}

fn rules_report(figures: &serde_json::Value) -> anyhow::Result<Report> {
    let (date, commit) = date_and_commit();
    let rows = figures["rule_sets"]
        .as_array()
        .context("no rule_sets in the bench-helper output")?;
    let ns = |v: &serde_json::Value| v.as_u64().map_or("n/a".into(), |n| n.to_string());
    let ms = |v: &serde_json::Value| {
        v.as_u64()
            .map_or("n/a".into(), |us| format!("{:.1}", us as f64 / 1e3))
    };
    let mut table = String::new();
    writeln!(
        table,
        "| rule set | networks | prefixes loaded | expand + merge (ms) | kernel load (ms) \
         | blocked (ns/packet) | allowed (ns/packet) |"
    )?;
    writeln!(table, "|{}", "---|".repeat(7))?;
    for row in rows {
        writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row["rule_set"].as_str().unwrap_or("?"),
            row["networks"],
            row["prefixes"],
            ms(&row["expand_us"]),
            ms(&row["load_us"]),
            ns(&row["blocked_ns"]),
            ns(&row["allowed_ns"]),
        )?;
    }
    let mut markdown = String::new();
    writeln!(markdown, "{RULES_HEADING}\n")?;
    writeln!(
        markdown,
        "Produced by `cargo xtask bench` (or `--only {ACCESS_RULES}`). {date}, commit {commit}, \
         on {}.\n",
        machine()
    )?;
    writeln!(
        markdown,
        "XDP program cost per packet (BPF_PROG_TEST_RUN, mean of {} repetitions of one frame): \
         a TCP SYN to an app with `ip_firewall` on, from a client the rule set blocks \
         (XDP_DROP, counted, block event sampled) and from one it lets through (XDP_PASS, \
         handed to the agent: the app has PROXY headers, so no flow is opened and every \
         repetition takes the same path). Only a client's first packet meets the rules: \
         packets of an open flow are forwarded before them. Each set is loaded into a freshly \
         loaded program.\n",
        figures["repeat"]
    )?;
    writeln!(markdown, "{table}")?;
    writeln!(
        markdown,
        "- synthetic: one ASN rule over every other /24 from 16.0.0.0 (so none merge); the \
           blocked client is in the middle /24, the allowed one in the gap after it.\n\
         - country {country}: every network (IPv4 and IPv6) that {package}@{version} (installed \
           by `cargo xtask setup`) gives {country}; the allowed client is a {allowed} address. \
           Expansion: reading the database and merging.\n\
         - kernel load: one map update per prefix into the generation not in force, then the \
           switch (`Datapath::load_rules`).\n\
         - A lookup walks one path of the trie: its cost grows with the path's depth (about \
           log2 of the number of prefixes, for prefixes spread like these), not with the \
           number of prefixes. One frame repeated keeps that path in cache; clients from \
           all over the address space would miss it more often.",
        country = figures["country"].as_str().unwrap_or(BLOCKED_COUNTRY),
        allowed = figures["allowed_country"]
            .as_str()
            .unwrap_or(ALLOWED_COUNTRY),
        package = setup::GEOIP_PACKAGE,
        version = setup::GEOIP_VERSION,
    )?;
    let mut json = figures.clone();
    json["date"] = date.into();
    json["commit"] = commit.into();
    json["machine"] = machine().into();
    Ok(Report {
        markdown,
        json,
        table,
    })
}

/// BENCHMARKS.md and bench/results.json each hold two parts, the
/// throughput comparison and the access rules. A run rewrites the parts it
/// measured and keeps the other: `--only access-rules` leaves the
/// throughput figures alone, `--only haproxy` the rules.
fn write_results(throughput: Option<&Report>, rules: Option<&Report>) -> anyhow::Result<()> {
    let root = workspace_root();
    let markdown_path = root.join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&markdown_path).unwrap_or_default();
    let (old_throughput, old_rules) = old.split_at(old.find(RULES_HEADING).unwrap_or(old.len()));
    let mut markdown = match throughput {
        Some(report) => report.markdown.trim_end(),
        None if old_throughput.trim().is_empty() => "# Benchmarks",
        None => old_throughput.trim_end(),
    }
    .to_owned();
    let rules_markdown = rules.map_or(old_rules, |report| &report.markdown);
    if !rules_markdown.trim().is_empty() {
        write!(markdown, "\n\n{}", rules_markdown.trim_end())?;
    }
    markdown.push('\n');
    std::fs::write(&markdown_path, markdown)?;

    let json_path = root.join("bench/results.json");
    let old: Option<serde_json::Value> = std::fs::read_to_string(&json_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .filter(serde_json::Value::is_object);
    let old_rules = old.as_ref().and_then(|o| o.get("access_rules")).cloned();
    let mut json = match throughput {
        Some(report) => report.json.clone(),
        None => old.unwrap_or_else(|| serde_json::json!({})),
    };
    if let Some(rules) = rules.map(|r| r.json.clone()).or(old_rules) {
        json["access_rules"] = rules;
    }
    std::fs::create_dir_all(root.join("bench"))?;
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)?;
    Ok(())
}
