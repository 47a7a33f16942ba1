//! `cargo xtask bench`: the proxy and its peers side by side, in one run,
//! on one topology (`cli -- edge -- org` namespaces). Results are ratios as
//! much as figures: this machine is shared and absolute numbers drift.
//!
//! Systems: direct kernel routing through `edge`; minimal eBPF routers at
//! XDP and at TC ingress (FIB lookup + redirect, no NAT: the ceilings of
//! any eBPF design at each hook); HAProxy (tcp mode); nginx stream; and
//! this proxy three times, one per `edge.datapath` (its fast path in XDP,
//! at TC ingress, or `auto`: TCP at TC, UDP in XDP; its agent for TLS),
//! with its SYN proxy on (the default), and twice more with it off (XDP
//! and TC, on the runs the SYN proxy changes: its cost, side by side).
//!
//! The file tree follows a run: [`peers`] starts each system with an
//! equivalent generated config, [`measure`] drives the real clients,
//! [`report`] turns figures into BENCHMARKS.md and JSON, [`plot`] into PNGs.
//!
//! Access rules (no topology): the XDP program's cost per packet with no
//! rules, 10 and 1,000,000 prefixes and a whole country of the GeoIP
//! database loaded, and how long expanding and loading each set takes.
mod bed;
mod flood;
mod measure;
mod peers;
pub mod plot;
mod report;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ::tests::{netns::addr, process::Background};
use anyhow::bail;
pub use bed::Bed;

use crate::{build_agent, cmd::target_dir, cmd::workspace_root, setup};

/// The edge address the proxies listen on.
pub const EDGE_IP: &str = "10.0.100.1";
pub const IPERF_PORT: u16 = 5201;
pub const HTTP_PORT: u16 = 80;
/// The latency scenario's echo service.
pub const ECHO_PORT: u16 = 7;
/// TLS-terminating listeners (flexible: plain HTTP to the origin), one per
/// key type.
pub const TLS_ECDSA_PORT: u16 = 443;
pub const TLS_RSA_PORT: u16 = 444;
/// The `--only` value that measures the access rules.
pub const ACCESS_RULES: &str = "access-rules";

pub struct Options {
    pub quick: bool,
    pub only: Option<String>,
    pub repeats: usize,
    /// Where BENCHMARKS.md, bench/results.json and bench/plots go;
    /// default the workspace root.
    pub out: Option<PathBuf>,
}

/// Where this proxy's fast path runs: its `edge.datapath`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Datapath {
    Xdp,
    Tc,
    /// TCP apps at TC ingress, UDP apps in XDP.
    Auto,
}

impl Datapath {
    #[cfg(test)]
    pub const ALL: [Datapath; 3] = [Datapath::Xdp, Datapath::Tc, Datapath::Auto];

    /// The value of `edge.datapath`.
    pub fn name(self) -> &'static str {
        match self {
            Datapath::Xdp => "xdp",
            Datapath::Tc => "tc",
            Datapath::Auto => "auto",
        }
    }

    /// The edge's origin-facing address this datapath NATs from: one of
    /// its own, so the TIME_WAIT entries one system's connections leave at
    /// the origin (60 s) never share a tuple with the next system's. (When
    /// NAT ports were random, a SYN on such a tuple whose timestamp looked
    /// old was dropped by PAWS, which cut the second system's conn/s
    /// tenfold; NAT ports now follow the client's, but the systems stay
    /// apart.) HAProxy and nginx connect from the edge's own address and
    /// ports.
    pub fn origin_source(self) -> &'static str {
        match self {
            Datapath::Xdp => "10.0.2.11",
            Datapath::Tc => "10.0.2.12",
            Datapath::Auto => "10.0.2.13",
        }
    }

    /// [`Datapath::origin_source`] of the same datapath with the SYN proxy
    /// off: its own address too, so its origin TIME_WAITs stay apart.
    pub fn origin_source_syn_proxy_off(self) -> &'static str {
        match self {
            Datapath::Xdp => "10.0.2.14",
            Datapath::Tc => "10.0.2.15",
            Datapath::Auto => "10.0.2.16",
        }
    }

    /// The minimal router at the hook that carries `metric`'s traffic
    /// (`auto`: the TC router for TCP, the XDP router for UDP).
    pub fn router(self, metric: Metric) -> System {
        match (self, metric.is_udp()) {
            (Datapath::Xdp, _) | (Datapath::Auto, true) => System::XdpRouter,
            (Datapath::Tc, _) | (Datapath::Auto, false) => System::TcRouter,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum System {
    Direct,
    XdpRouter,
    TcRouter,
    /// The TC router with an XDP program that passes everything attached
    /// too: the ceiling of a TC design that keeps access rules in XDP.
    TcRouterXdp,
    Haproxy,
    Nginx,
    /// This proxy with its fast path at one hook.
    Ours(Datapath),
    /// The same with `edge.syn_proxy: "off"`: the SYN proxy's cost and
    /// what it buys, on the runs it changes ([`SYN_PROXY_OFF_RUNS`]).
    OursSynProxyOff(Datapath),
}

/// The datapaths measured with the SYN proxy off too: one per
/// implementation of it (`auto`'s TCP apps run at TC, as `tc`'s do).
pub const SYN_PROXY_OFF_DATAPATHS: [Datapath; 2] = [Datapath::Xdp, Datapath::Tc];

/// The runs the SYN proxy changes, measured with it off: TCP bulk (every
/// segment's numbers translated), conn/s (the handshake the edge completes
/// first) and the SYN flood (whether it reaches the origin).
pub const SYN_PROXY_OFF_RUNS: [Measurement; 4] = [
    Measurement::Tcp {
        streams: 1,
        mode: LinkMode::Wire,
    },
    Measurement::Tcp {
        streams: 4,
        mode: LinkMode::Wire,
    },
    Measurement::ConnRate,
    Measurement::SynFlood,
];

impl System {
    pub const ALL: [System; 11] = [
        System::Direct,
        System::XdpRouter,
        System::TcRouter,
        System::TcRouterXdp,
        System::Haproxy,
        System::Nginx,
        System::Ours(Datapath::Xdp),
        System::Ours(Datapath::Tc),
        System::Ours(Datapath::Auto),
        System::OursSynProxyOff(SYN_PROXY_OFF_DATAPATHS[0]),
        System::OursSynProxyOff(SYN_PROXY_OFF_DATAPATHS[1]),
    ];

    pub fn name(self) -> &'static str {
        match self {
            System::Direct => "direct",
            System::XdpRouter => "xdp-router",
            System::TcRouter => "tc-router",
            System::TcRouterXdp => "tc-router-xdp",
            System::Haproxy => "haproxy",
            System::Nginx => "nginx",
            System::Ours(Datapath::Xdp) => "spectrum-xdp",
            System::Ours(Datapath::Tc) => "spectrum-tc",
            System::Ours(Datapath::Auto) => "spectrum-auto",
            System::OursSynProxyOff(Datapath::Xdp) => "spectrum-xdp-synproxy-off",
            System::OursSynProxyOff(Datapath::Tc) => "spectrum-tc-synproxy-off",
            System::OursSynProxyOff(Datapath::Auto) => "spectrum-auto-synproxy-off",
        }
    }

    /// This proxy, whatever its datapath and SYN proxy.
    pub fn is_ours(self) -> bool {
        matches!(self, System::Ours(_) | System::OursSynProxyOff(_))
    }

    /// Where clients connect: the origin itself for the routing baselines,
    /// the edge address for the proxies.
    pub fn target(self) -> &'static str {
        if self.is_router() {
            addr::ORG_V4
        } else {
            EDGE_IP
        }
    }

    /// Forwards packets (kernel or eBPF) rather than proxying them.
    pub fn is_router(self) -> bool {
        matches!(
            self,
            System::Direct | System::XdpRouter | System::TcRouter | System::TcRouterXdp
        )
    }
}

/// How the veths behave. `Wire` models physical NICs: the hosts send
/// complete checksums (tx offload off) and every end has GRO on.
/// `VethDefault` is what veth does out of the box: checksums left to
/// "hardware" (CHECKSUM_PARTIAL) and no GRO.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum LinkMode {
    Wire,
    VethDefault,
}

impl LinkMode {
    pub fn name(self) -> &'static str {
        match self {
            LinkMode::Wire => "wire",
            LinkMode::VethDefault => "veth-default",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum KeyKind {
    EcdsaP256,
    Rsa2048,
}

impl KeyKind {
    pub fn port(self) -> u16 {
        match self {
            KeyKind::EcdsaP256 => TLS_ECDSA_PORT,
            KeyKind::Rsa2048 => TLS_RSA_PORT,
        }
    }
}

/// One client program run against one system; it yields one or more
/// [`Metric`]s.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Measurement {
    Tcp {
        streams: u8,
        mode: LinkMode,
    },
    Udp64,
    ConnRate,
    Tls(KeyKind),
    Latency,
    /// A spoofed SYN flood while a real client connects, then while one
    /// stream runs ([`flood`]).
    SynFlood,
}

impl Measurement {
    /// The metrics this run yields.
    pub fn metrics(self) -> Vec<Metric> {
        Metric::ALL
            .into_iter()
            .filter(|m| m.measurement() == self)
            .collect()
    }

    pub fn mode(self) -> LinkMode {
        match self {
            Measurement::Tcp { mode, .. } => mode,
            _ => LinkMode::Wire,
        }
    }
}

/// Whether a system can be measured in a scenario, and if not, why.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Support {
    Yes,
    /// The system could do it but does not (yet): a gap to close.
    NotSupported(&'static str),
    /// The question does not apply (a router terminates no TLS).
    NotApplicable(&'static str),
}

pub fn support(measurement: Measurement, system: System) -> Support {
    use Support::*;
    match (measurement, system) {
        (Measurement::Udp64, System::Haproxy) => NotSupported("HAProxy has no UDP proxying"),
        (
            Measurement::Tcp {
                mode: LinkMode::VethDefault,
                ..
            },
            System::XdpRouter | System::Ours(Datapath::Xdp),
        ) => NotSupported("an XDP redirect forwards CHECKSUM_PARTIAL frames unfinished"),
        (Measurement::Tls(_), s) if s.is_router() => NotApplicable("a router terminates no TLS"),
        (m, System::OursSynProxyOff(_)) if !SYN_PROXY_OFF_RUNS.contains(&m) => NotApplicable(
            "the SYN proxy off is compared on TCP bulk, conn/s and the SYN flood only",
        ),
        _ => Yes,
    }
}

/// [`support`] for one figure of a run: a proxy process's CPU time exists
/// only for the userspace proxies.
pub fn metric_support(metric: Metric, system: System) -> Support {
    if metric == Metric::ProxyCpuPerGb && (system.is_router() || system.is_ours()) {
        return Support::NotApplicable("forwarding runs in the kernel (softirq), not a process");
    }
    support(metric.measurement(), system)
}

/// A figure in the report.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Metric {
    Tcp1,
    Tcp4,
    Tcp8,
    CpuPerGb,
    ProxyCpuPerGb,
    Tcp1Veth,
    Tcp8Veth,
    Udp64,
    Udp64Loss,
    ConnRate,
    TlsEcdsa,
    TlsRsa,
    LatencyP50,
    LatencyP99,
    /// The real client's connections that completed during the flood.
    FloodSuccess,
    FloodHandshakeP50,
    FloodHandshakeP99,
    /// Packets that reached the origin during the flood.
    FloodAtOrigin,
    /// The flood's own SYNs among them (none should, with the SYN proxy).
    FloodSpoofedAtOrigin,
    /// Interrupt and softirq time plus the proxy's own, during the flood.
    FloodEdgeCpu,
    /// One established stream while the flood runs.
    FloodTcp1,
}

impl Metric {
    pub const ALL: [Metric; 21] = [
        Metric::Tcp1,
        Metric::Tcp4,
        Metric::Tcp8,
        Metric::CpuPerGb,
        Metric::ProxyCpuPerGb,
        Metric::Tcp1Veth,
        Metric::Tcp8Veth,
        Metric::Udp64,
        Metric::Udp64Loss,
        Metric::ConnRate,
        Metric::TlsEcdsa,
        Metric::TlsRsa,
        Metric::LatencyP50,
        Metric::LatencyP99,
        Metric::FloodSuccess,
        Metric::FloodHandshakeP50,
        Metric::FloodHandshakeP99,
        Metric::FloodAtOrigin,
        Metric::FloodSpoofedAtOrigin,
        Metric::FloodEdgeCpu,
        Metric::FloodTcp1,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Tcp1 => "tcp_1_stream",
            Metric::Tcp4 => "tcp_4_streams",
            Metric::Tcp8 => "tcp_8_streams",
            Metric::CpuPerGb => "tcp_8_cpu_per_gb",
            Metric::ProxyCpuPerGb => "tcp_8_proxy_cpu_per_gb",
            Metric::Tcp1Veth => "tcp_1_stream_veth",
            Metric::Tcp8Veth => "tcp_8_streams_veth",
            Metric::Udp64 => "udp_64b",
            Metric::Udp64Loss => "udp_64b_loss",
            Metric::ConnRate => "tcp_conn_rate",
            Metric::TlsEcdsa => "tls_ecdsa_p256",
            Metric::TlsRsa => "tls_rsa_2048",
            Metric::LatencyP50 => "latency_p50",
            Metric::LatencyP99 => "latency_p99",
            Metric::FloodSuccess => "syn_flood_conn_success",
            Metric::FloodHandshakeP50 => "syn_flood_handshake_p50",
            Metric::FloodHandshakeP99 => "syn_flood_handshake_p99",
            Metric::FloodAtOrigin => "syn_flood_at_origin",
            Metric::FloodSpoofedAtOrigin => "syn_flood_spoofed_at_origin",
            Metric::FloodEdgeCpu => "syn_flood_edge_cpu",
            Metric::FloodTcp1 => "syn_flood_tcp_1_stream",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::Tcp1
            | Metric::Tcp4
            | Metric::Tcp8
            | Metric::Tcp1Veth
            | Metric::Tcp8Veth
            | Metric::FloodTcp1 => "Gbit/s",
            Metric::CpuPerGb | Metric::ProxyCpuPerGb => "CPU-s/GB",
            Metric::Udp64 => "kpps delivered",
            Metric::Udp64Loss => "% lost",
            Metric::ConnRate => "conn/s",
            Metric::TlsEcdsa | Metric::TlsRsa => "handshakes/s",
            Metric::LatencyP50 | Metric::LatencyP99 => "us",
            Metric::FloodSuccess => "% completed",
            Metric::FloodHandshakeP50 | Metric::FloodHandshakeP99 => "ms",
            Metric::FloodAtOrigin => "kpps at origin",
            Metric::FloodSpoofedAtOrigin => "flood SYNs at origin",
            Metric::FloodEdgeCpu => "% of a core",
        }
    }

    pub fn lower_is_better(self) -> bool {
        matches!(
            self,
            Metric::CpuPerGb
                | Metric::ProxyCpuPerGb
                | Metric::Udp64Loss
                | Metric::LatencyP50
                | Metric::LatencyP99
                | Metric::FloodHandshakeP50
                | Metric::FloodHandshakeP99
                | Metric::FloodAtOrigin
                | Metric::FloodSpoofedAtOrigin
                | Metric::FloodEdgeCpu
        )
    }

    /// Its traffic is UDP (the rest is TCP).
    pub fn is_udp(self) -> bool {
        self.measurement() == Measurement::Udp64
    }

    /// The run that yields this figure.
    pub fn measurement(self) -> Measurement {
        use LinkMode::*;
        match self {
            Metric::Tcp1 => Measurement::Tcp {
                streams: 1,
                mode: Wire,
            },
            Metric::Tcp4 => Measurement::Tcp {
                streams: 4,
                mode: Wire,
            },
            Metric::Tcp8 | Metric::CpuPerGb | Metric::ProxyCpuPerGb => Measurement::Tcp {
                streams: 8,
                mode: Wire,
            },
            Metric::Tcp1Veth => Measurement::Tcp {
                streams: 1,
                mode: VethDefault,
            },
            Metric::Tcp8Veth => Measurement::Tcp {
                streams: 8,
                mode: VethDefault,
            },
            Metric::Udp64 | Metric::Udp64Loss => Measurement::Udp64,
            Metric::ConnRate => Measurement::ConnRate,
            Metric::TlsEcdsa => Measurement::Tls(KeyKind::EcdsaP256),
            Metric::TlsRsa => Measurement::Tls(KeyKind::Rsa2048),
            Metric::LatencyP50 | Metric::LatencyP99 => Measurement::Latency,
            Metric::FloodSuccess
            | Metric::FloodHandshakeP50
            | Metric::FloodHandshakeP99
            | Metric::FloodAtOrigin
            | Metric::FloodSpoofedAtOrigin
            | Metric::FloodEdgeCpu
            | Metric::FloodTcp1 => Measurement::SynFlood,
        }
    }
}

/// What a run measures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub systems: Vec<System>,
    pub metrics: Vec<Metric>,
    pub rules: bool,
    pub seconds: u64,
    pub repeats: usize,
}

impl Plan {
    /// `--only a,b,...` names systems, metrics or `access-rules`: systems
    /// narrow the systems, metrics the metrics (each kind: all when none is
    /// named), and the access rules run when named or when nothing is.
    pub fn new(options: &Options) -> anyhow::Result<Plan> {
        let (seconds, repeats) = if options.quick {
            (2, 1)
        } else {
            (5, options.repeats.max(1))
        };
        let mut plan = Plan {
            systems: System::ALL.to_vec(),
            metrics: Metric::ALL.to_vec(),
            rules: true,
            seconds,
            repeats,
        };
        let Some(only) = options.only.as_deref() else {
            return Ok(plan);
        };
        let (mut systems, mut metrics, mut rules) = (Vec::new(), Vec::new(), false);
        for name in only.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == ACCESS_RULES {
                rules = true;
            } else if let Some(s) = System::ALL.into_iter().find(|s| s.name() == name) {
                systems.push(s);
            } else if let Some(m) = Metric::ALL.into_iter().find(|m| m.name() == name) {
                metrics.push(m);
            } else {
                bail!(
                    "--only {name}: expected systems ({}), metrics ({}) or {ACCESS_RULES}, \
                     separated by commas",
                    System::ALL.map(System::name).join(", "),
                    Metric::ALL.map(Metric::name).join(", ")
                );
            }
        }
        if systems.is_empty() && metrics.is_empty() {
            plan.systems.clear();
        } else {
            if !systems.is_empty() {
                plan.systems = systems;
            }
            if !metrics.is_empty() {
                plan.metrics = metrics;
            }
        }
        plan.rules = rules;
        Ok(plan)
    }

    /// Measures fewer systems or metrics than a full run (the access
    /// rules alone are a part of their own, not a partial run).
    pub fn is_partial(&self) -> bool {
        let some_systems = !self.systems.is_empty() && self.systems.len() < System::ALL.len();
        some_systems || (!self.systems.is_empty() && self.metrics.len() < Metric::ALL.len())
    }

    /// The runs the metrics need, wire mode first, each once.
    pub fn measurements(&self) -> Vec<Measurement> {
        let mut runs: Vec<Measurement> = self.metrics.iter().map(|m| m.measurement()).collect();
        runs.sort_by_key(|m| (m.mode(), *m));
        runs.dedup();
        runs
    }
}

pub fn bench(options: Options) -> anyhow::Result<()> {
    let plan = Plan::new(&options)?;
    setup::setup()?;
    build_agent(true)?;
    let release = target_dir().join("release");
    // SAFETY: no other thread runs yet; the harness reads this variable.
    unsafe { std::env::set_var("PROXY_AGENT_BIN", release.join("proxy-agent")) };
    // A partial run never overwrites the full results in the repository.
    let out = match options.out {
        Some(out) => out,
        None if plan.is_partial() => {
            let out = target_dir().join("bench-partial");
            println!(
                "--only without --out: results go to {} (the workspace's BENCHMARKS.md keeps \
                 the last full run)",
                out.display()
            );
            out
        }
        None => workspace_root(),
    };
    run(&plan, &release, &out)
}

/// Runs `plan` with the binaries in `release` and writes the results under
/// `out`: BENCHMARKS.md, bench/results.json, bench/plots/*.png.
pub fn run(plan: &Plan, release: &Path, out: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let rules = if plan.rules {
        Some(report::rules(&measure::access_rules(release)?)?)
    } else {
        None
    };
    let throughput = if plan.systems.is_empty() || plan.metrics.is_empty() {
        None
    } else {
        Some(throughput(plan, release, started)?)
    };
    let written = report::write(out, throughput.as_ref(), rules.as_ref())?;
    for part in [&throughput, &rules].into_iter().flatten() {
        println!("\n{}", part.table);
    }
    println!(
        "wrote {} ({} s)",
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        started.elapsed().as_secs()
    );
    Ok(())
}

/// Figures of one (metric, system): one per repetition.
pub type Results = BTreeMap<(Metric, System), Vec<f64>>;
/// Why the repetitions of a (metric, system) that failed did.
pub type Errors = BTreeMap<(Metric, System), Vec<String>>;
/// Connections that failed while a (metric, system) was measured.
pub type Failed = BTreeMap<(Metric, System), u64>;

/// The systems side by side on the namespace topology.
fn throughput(plan: &Plan, release: &Path, started: Instant) -> anyhow::Result<report::Part> {
    let bed = Bed::new(release)?;
    let runs = plan.measurements();
    let progress = |run: usize, text: &str| {
        println!(
            "[bench {:>4}s] run {run}/{} {text}",
            started.elapsed().as_secs(),
            plan.repeats
        );
    };
    // Repetitions go round all systems in turn, so the machine's drift
    // spreads over every system instead of landing on one.
    let mut results = Results::new();
    let mut failed = Failed::new();
    let mut errors = Errors::new();
    let mut note_error = |measurements: &[Measurement], system: System, error: String| {
        for metric in measurements.iter().flat_map(|m| m.metrics()) {
            errors
                .entry((metric, system))
                .or_default()
                .push(error.clone());
        }
    };
    for run in 1..=plan.repeats {
        for &system in &plan.systems {
            let runnable: Vec<Measurement> = runs
                .iter()
                .copied()
                .filter(|m| support(*m, system) == Support::Yes)
                .collect();
            if runnable.is_empty() {
                continue;
            }
            progress(run, &format!("starting {}", system.name()));
            // A system that does not start fails its runs; the others go on.
            let running = match peers::start(system, &bed) {
                Ok(running) => running,
                Err(err) => {
                    let error = format!("starting {}: {err:#}", system.name());
                    progress(run, &error);
                    note_error(&runnable, system, error);
                    continue;
                }
            };
            for &measurement in &runnable {
                let figures = bed
                    .set_mode(measurement.mode())
                    .and_then(|()| {
                        measure::measure(measurement, system, &bed, running.pid(), plan.seconds)
                    })
                    .and_then(measure::Figures::checked);
                let figures = match figures {
                    Ok(figures) => figures,
                    Err(err) => {
                        let error = format!("{err:#}");
                        progress(
                            run,
                            &format!("{measurement:?} through {} failed: {error}", system.name()),
                        );
                        note_error(&[measurement], system, error);
                        continue;
                    }
                };
                for (metric, value) in figures.values {
                    // A run may yield figures that do not apply to this
                    // system (the agent's CPU while XDP forwards).
                    if !plan.metrics.contains(&metric)
                        || metric_support(metric, system) != Support::Yes
                    {
                        continue;
                    }
                    *failed.entry((metric, system)).or_default() += figures.failed;
                    let note = match figures.failed {
                        0 => String::new(),
                        n => format!(" ({n} connections failed)"),
                    };
                    progress(
                        run,
                        &format!(
                            "{:<22} {:<13} {value:.2} {}{note}",
                            metric.name(),
                            system.name(),
                            metric.unit()
                        ),
                    );
                    results.entry((metric, system)).or_default().push(value);
                }
            }
            running.stop();
            if let Err(err) = bed.set_mode(LinkMode::Wire) {
                progress(run, &format!("restoring wire mode failed: {err:#}"));
            }
        }
    }
    // The XDP program's cost: it runs first on every packet, whatever the
    // datapath.
    let cost = if plan.systems.iter().any(|s| s.is_ours()) {
        let cost = measure::xdp_cost(&bed);
        if let Err(err) = &cost {
            println!("xdp cost per packet not measured: {err:#}");
        }
        cost.ok()
    } else {
        None
    };
    report::throughput(plan, &results, &errors, &failed, cost.as_ref())
}

/// Waits (20 s at most) until `process` prints `line`.
pub fn wait_for_line(process: &mut Background, line: &str) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use ::tests::scratch_dir;

    use super::*;

    fn options(only: Option<&str>) -> Options {
        Options {
            quick: false,
            only: only.map(str::to_owned),
            repeats: 3,
            out: None,
        }
    }

    #[test]
    fn only_narrows_systems_metrics_and_rules() {
        let all = Plan::new(&options(None)).unwrap();
        assert_eq!(all.systems.len(), System::ALL.len());
        assert!(all.rules);
        let rules = Plan::new(&options(Some("access-rules"))).unwrap();
        assert!(rules.systems.is_empty() && rules.rules);
        let one = Plan::new(&options(Some("haproxy, tls_rsa_2048"))).unwrap();
        assert_eq!(one.systems, [System::Haproxy]);
        assert_eq!(one.metrics, [Metric::TlsRsa]);
        assert!(!one.rules);
        let metric = Plan::new(&options(Some("latency_p99"))).unwrap();
        assert_eq!(metric.systems.len(), System::ALL.len());
        assert_eq!(metric.measurements(), [Measurement::Latency]);
        let err = Plan::new(&options(Some("squid"))).unwrap_err().to_string();
        assert!(
            err.contains("--only squid") && err.contains("tc-router"),
            "{err}"
        );
        assert!(
            err.contains("spectrum-auto") && err.contains("tcp_4_streams"),
            "{err}"
        );
        // The run the lead asks for: the new systems and metric by name.
        let new = Plan::new(&options(Some(
            "spectrum-tc,spectrum-auto,tc-router,tcp_4_streams",
        )))
        .unwrap();
        assert_eq!(
            new.systems,
            [
                System::Ours(Datapath::Tc),
                System::Ours(Datapath::Auto),
                System::TcRouter
            ]
        );
        assert_eq!(new.metrics, [Metric::Tcp4]);
        assert_eq!(
            new.measurements(),
            [Measurement::Tcp {
                streams: 4,
                mode: LinkMode::Wire
            }]
        );
        assert!(new.is_partial() && !new.rules);
        let names: Vec<&str> = System::ALL.map(System::name).to_vec();
        assert!(
            names.ends_with(&[
                "spectrum-xdp",
                "spectrum-tc",
                "spectrum-auto",
                "spectrum-xdp-synproxy-off",
                "spectrum-tc-synproxy-off"
            ]),
            "{names:?}"
        );
        let off = Plan::new(&options(Some("spectrum-tc-synproxy-off,tcp_conn_rate"))).unwrap();
        assert_eq!(off.systems, [System::OursSynProxyOff(Datapath::Tc)]);
    }

    #[test]
    fn quick_is_one_short_run() {
        let mut o = options(None);
        o.quick = true;
        let plan = Plan::new(&o).unwrap();
        assert_eq!((plan.seconds, plan.repeats), (2, 1));
    }

    #[test]
    fn runs_are_shared_by_metrics_and_wire_comes_first() {
        let plan = Plan::new(&options(None)).unwrap();
        let runs = plan.measurements();
        // tcp_8_streams and its two CPU figures, UDP rate and loss, p50 and
        // p99, the SYN flood's seven figures: one run each.
        assert_eq!(runs.len(), Metric::ALL.len() - 4 - 6);
        let first_veth = runs
            .iter()
            .position(|m| m.mode() == LinkMode::VethDefault)
            .unwrap();
        assert!(
            runs[first_veth..]
                .iter()
                .all(|m| m.mode() == LinkMode::VethDefault)
        );
    }

    /// The harness end to end on one tiny plan, so it cannot rot: the
    /// report is produced, with numbers (not any particular numbers).
    #[test]
    fn the_harness_writes_a_report_with_figures() {
        if !::tests::root_or_skip("the_harness_writes_a_report_with_figures") {
            return;
        }
        let agent = ::tests::agent::agent_bin();
        let binaries = agent.parent().expect("the agent's directory");
        let out = scratch_dir().join("bench-harness");
        let plan = Plan {
            systems: vec![System::Direct, System::Ours(Datapath::Xdp)],
            metrics: vec![Metric::ConnRate, Metric::TlsRsa],
            rules: false,
            seconds: 1,
            repeats: 1,
        };
        run(&plan, binaries, &out).expect("bench run");
        let markdown = std::fs::read_to_string(out.join("BENCHMARKS.md")).expect("markdown");
        let row = markdown
            .lines()
            .find(|l| l.starts_with("| tls_rsa_2048 |"))
            .unwrap_or_else(|| panic!("no TLS row:\n{markdown}"));
        assert!(row.contains("| n/a |"), "direct terminates no TLS: {row}");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("bench/results.json")).unwrap())
                .unwrap();
        let rows = json["results"].as_array().expect("rows");
        let measured: Vec<(&str, &str, f64)> = rows
            .iter()
            .filter_map(|r| {
                Some((
                    r["scenario"].as_str()?,
                    r["system"].as_str()?,
                    r["median"].as_f64()?,
                ))
            })
            .collect();
        for (scenario, system) in [
            ("tcp_conn_rate", "direct"),
            ("tcp_conn_rate", "spectrum-xdp"),
            ("tls_rsa_2048", "spectrum-xdp"),
        ] {
            let figure = measured
                .iter()
                .find(|(m, s, _)| *m == scenario && *s == system)
                .map(|(_, _, v)| *v);
            assert!(
                figure.is_some_and(|v| v.is_finite() && v > 0.0),
                "{scenario} {system}: {figure:?} in {json:#}"
            );
        }
        // The XDP cost was measured on a real hit (XDP_TX or XDP_REDIRECT).
        let action = json["xdp_cost"]["fast_path_hit_action"].as_u64();
        assert!(matches!(action, Some(3 | 4)), "{json:#}");
        for chart in ["tcp_conn_rate.png", "tls_rsa_2048.png"] {
            let bytes = std::fs::read(out.join("bench/plots").join(chart)).expect(chart);
            assert!(bytes.starts_with(b"\x89PNG"), "{chart}");
        }
    }

    #[test]
    fn every_metric_says_who_cannot_be_measured() {
        assert_eq!(
            support(Measurement::Udp64, System::Haproxy),
            Support::NotSupported("HAProxy has no UDP proxying")
        );
        assert!(matches!(
            support(Metric::TlsEcdsa.measurement(), System::TcRouter),
            Support::NotApplicable(_)
        ));
        for datapath in Datapath::ALL {
            assert_eq!(
                support(Metric::TlsRsa.measurement(), System::Ours(datapath)),
                Support::Yes
            );
            assert!(matches!(
                metric_support(Metric::ProxyCpuPerGb, System::Ours(datapath)),
                Support::NotApplicable(_)
            ));
        }
        assert!(matches!(
            support(Metric::Tcp1Veth.measurement(), System::Ours(Datapath::Xdp)),
            Support::NotSupported(_)
        ));
        // The TC hook takes CHECKSUM_PARTIAL packets (the kernel's helpers).
        for system in [
            System::TcRouter,
            System::Ours(Datapath::Tc),
            System::Ours(Datapath::Auto),
        ] {
            assert_eq!(
                support(Metric::Tcp1Veth.measurement(), system),
                Support::Yes
            );
        }
    }

    /// The SYN proxy off is measured where it changes something, beside
    /// the same datapath with it on; the flood figures are every system's.
    #[test]
    fn the_syn_proxy_off_runs_bulk_conn_rate_and_the_flood() {
        for datapath in SYN_PROXY_OFF_DATAPATHS {
            let off = System::OursSynProxyOff(datapath);
            assert!(off.is_ours() && System::ALL.contains(&off));
            for metric in Metric::ALL {
                let runs = SYN_PROXY_OFF_RUNS.contains(&metric.measurement());
                assert_eq!(
                    metric_support(metric, off) == Support::Yes,
                    runs && metric != Metric::ProxyCpuPerGb,
                    "{metric:?}"
                );
                if runs {
                    assert_eq!(
                        support(metric.measurement(), System::Ours(datapath)),
                        Support::Yes
                    );
                }
            }
        }
        for metric in [Metric::Tcp1, Metric::Tcp4, Metric::ConnRate] {
            assert!(SYN_PROXY_OFF_RUNS.contains(&metric.measurement()));
        }
        for system in System::ALL {
            assert_eq!(
                metric_support(Metric::FloodSpoofedAtOrigin, system),
                Support::Yes,
                "{system:?}"
            );
        }
        assert_eq!(
            Metric::FloodSpoofedAtOrigin.measurement(),
            Measurement::SynFlood
        );
        assert!(Metric::FloodSpoofedAtOrigin.lower_is_better());
    }

    /// The systems of ours run every metric spectrum-xdp runs (and the
    /// new 4-stream run).
    #[test]
    fn every_datapath_runs_what_xdp_runs() {
        let xdp = System::Ours(Datapath::Xdp);
        for metric in Metric::ALL {
            if metric_support(metric, xdp) != Support::Yes {
                continue;
            }
            for datapath in Datapath::ALL {
                assert_eq!(
                    metric_support(metric, System::Ours(datapath)),
                    Support::Yes,
                    "{metric:?} {datapath:?}"
                );
            }
        }
        assert_eq!(metric_support(Metric::Tcp4, xdp), Support::Yes);
        assert_eq!(
            Metric::Tcp4.measurement(),
            Measurement::Tcp {
                streams: 4,
                mode: LinkMode::Wire
            }
        );
    }

    #[test]
    fn each_datapath_is_compared_with_the_router_at_its_hook() {
        use Datapath::*;
        assert_eq!(Xdp.router(Metric::Tcp4), System::XdpRouter);
        assert_eq!(Xdp.router(Metric::Udp64), System::XdpRouter);
        assert_eq!(Tc.router(Metric::Tcp1), System::TcRouter);
        assert_eq!(Tc.router(Metric::Udp64Loss), System::TcRouter);
        assert_eq!(Auto.router(Metric::Tcp1), System::TcRouter);
        assert_eq!(Auto.router(Metric::ConnRate), System::TcRouter);
        assert_eq!(Auto.router(Metric::LatencyP99), System::TcRouter);
        assert_eq!(Auto.router(Metric::Udp64), System::XdpRouter);
        assert_eq!(Auto.router(Metric::Udp64Loss), System::XdpRouter);
    }
}
