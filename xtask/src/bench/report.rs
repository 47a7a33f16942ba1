//! Figures into words: BENCHMARKS.md (a table per part, machine, date,
//! commit), bench/results.json (every run, for comparing commits) and
//! bench/plots/*.png (one bar chart per metric).
use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use super::{
    ACCESS_RULES, Datapath, Errors, Failed, Metric, Plan, Results, SYN_PROXY_OFF_DATAPATHS,
    Support, System,
    measure::{ALLOWED_COUNTRY, BLOCKED_COUNTRY},
    metric_support, plot,
};
use crate::{cmd::workspace_root, setup};

/// Where the access-rule part of BENCHMARKS.md starts.
const RULES_HEADING: &str = "## Access rules";

/// One part of the results: its section of BENCHMARKS.md, its JSON, and
/// its table for the console.
pub struct Part {
    pub markdown: String,
    pub json: serde_json::Value,
    pub table: String,
}

pub fn median(values: &[f64]) -> f64 {
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
        // `-dirty` when the figures come from uncommitted code.
        shell("git", &["describe", "--always", "--dirty", "--abbrev=12"]),
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

/// A cell of the table: the median and the spread, or why there is none
/// (a supported system without figures failed every run).
fn cell(values: Option<&Vec<f64>>, support: Support) -> String {
    match (values, support) {
        (Some(values), _) if values.len() > 1 => {
            let (lo, hi) = spread(values);
            format!("{:.2} ({lo:.2}-{hi:.2})", median(values))
        }
        (Some(values), _) => format!("{:.2}", median(values)),
        (None, Support::NotSupported(_)) => "not supported".into(),
        (None, Support::NotApplicable(_)) => "n/a".into(),
        (None, Support::Yes) => "failed".into(),
    }
}

/// The lowest and highest of `values` (the table's brackets, the charts'
/// whiskers).
pub fn spread(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(*v), hi.max(*v)))
}

/// How much better `ours` is than `base`, as a factor where more is better
/// whichever way the metric runs (throughput: ours/base; latency and CPU:
/// base/ours).
fn factor(metric: Metric, ours: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (ours, base) {
        (Some(o), Some(b)) if o > 0.0 && b > 0.0 => Some(if metric.lower_is_better() {
            b / o
        } else {
            o / b
        }),
        _ => None,
    }
}

/// [`factor`] in words; for UDP loss (a share), the difference in points
/// (positive: ours loses less).
fn advantage(metric: Metric, ours: Option<f64>, base: Option<f64>) -> String {
    if metric == Metric::Udp64Loss {
        return match (ours, base) {
            (Some(o), Some(b)) => format!("{:+.1} pts", b - o),
            _ => "n/a".into(),
        };
    }
    factor(metric, ours, base).map_or("n/a".into(), |f| format!("{f:.2}x"))
}

/// A goal of the project, checked on every run from its medians: `system`'s
/// [`factor`] over `baseline` on `metric` within `min..=max`; with no
/// baseline, `system`'s own median within `min..=max` (in the metric's
/// unit: no flood SYN at the origin, 99% of connections through).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Target {
    pub system: System,
    pub metric: Metric,
    pub baseline: Option<System>,
    pub min: f64,
    pub max: Option<f64>,
}

/// The TC datapath (and `auto`, whose TCP apps run at TC) near the TC
/// router's ceiling and well above HAProxy on TCP bulk; `auto`'s UDP, which
/// stays in XDP, as fast as the XDP datapath's; every datapath's clients
/// through a SYN flood as well off as HAProxy's and 99% of the time, and
/// none of the flood at the origin; the SYN proxy nearly free (conn/s and
/// bulk against the same datapath with it off).
pub fn targets() -> Vec<Target> {
    let mut targets = Vec::new();
    for datapath in [Datapath::Tc, Datapath::Auto] {
        for metric in [Metric::Tcp1, Metric::Tcp4] {
            for (baseline, min) in [
                (System::TcRouter, 0.95),
                (System::TcRouterXdp, 0.95),
                (System::Haproxy, 1.3),
            ] {
                targets.push(Target {
                    system: System::Ours(datapath),
                    metric,
                    baseline: Some(baseline),
                    min,
                    max: None,
                });
            }
        }
    }
    targets.push(Target {
        system: System::Ours(Datapath::Auto),
        metric: Metric::Udp64,
        baseline: Some(System::Ours(Datapath::Xdp)),
        min: 0.95,
        max: None,
    });
    // Under a spoofed SYN flood, a real client gets through at least as
    // often as through HAProxy (kernel SYN cookies), whatever the hook.
    // The SYN proxy's own goals: the edge completes the handshake, so the
    // flood ends there and real clients still get through.
    for datapath in [Datapath::Xdp, Datapath::Tc, Datapath::Auto] {
        let system = System::Ours(datapath);
        targets.extend([
            Target {
                system,
                metric: Metric::FloodSuccess,
                baseline: Some(System::Haproxy),
                min: 1.0,
                max: None,
            },
            Target {
                system,
                metric: Metric::FloodSuccess,
                baseline: None,
                min: 99.0,
                max: None,
            },
            Target {
                system,
                metric: Metric::FloodSpoofedAtOrigin,
                baseline: None,
                min: 0.0,
                max: Some(0.0),
            },
        ]);
    }
    // What it costs: conn/s at least 0.9x and bulk 0.95x of the same
    // datapath with it off.
    for datapath in SYN_PROXY_OFF_DATAPATHS {
        for (metric, min) in [
            (Metric::ConnRate, 0.9),
            (Metric::Tcp1, 0.95),
            (Metric::Tcp4, 0.95),
        ] {
            targets.push(Target {
                system: System::Ours(datapath),
                metric,
                baseline: Some(System::OursSynProxyOff(datapath)),
                min,
                max: None,
            });
        }
    }
    targets
}

/// Where a target stands after a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    Met,
    NotMet,
    /// One of the two figures is missing (not in the plan, or failed).
    NotMeasured,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::NotMet => "not met",
            Verdict::NotMeasured => "not measured",
        }
    }
}

impl Target {
    /// The factor from the medians of `results`, and the verdict.
    /// Without a baseline, the figure is the system's own median.
    pub fn check(&self, results: &Results) -> (Option<f64>, Verdict) {
        let figure = |system: System| results.get(&(self.metric, system)).map(|v| median(v));
        let factor = match self.baseline {
            Some(baseline) => factor(self.metric, figure(self.system), figure(baseline)),
            None => figure(self.system).filter(|v| v.is_finite()),
        };
        let Some(factor) = factor else {
            return (None, Verdict::NotMeasured);
        };
        let met = factor >= self.min && self.max.is_none_or(|max| factor <= max);
        (
            Some(factor),
            if met { Verdict::Met } else { Verdict::NotMet },
        )
    }

    fn wanted(&self) -> String {
        let x = if self.baseline.is_some() { "x" } else { "" };
        match self.max {
            Some(max) if max == self.min => format!("= {max:.2}{x}"),
            Some(max) => format!("{:.2}{x}-{max:.2}{x}", self.min),
            None => format!(">= {:.2}{x}", self.min),
        }
    }

    /// The factor cell: a ratio, or the system's own figure.
    fn shown(&self, factor: Option<f64>) -> String {
        match (factor, self.baseline) {
            (None, _) => "n/a".into(),
            (Some(f), Some(_)) => format!("{f:.2}x"),
            (Some(f), None) => format!("{f:.2}"),
        }
    }
}

/// The targets section (markdown), its table (console) and JSON for the
/// targets whose system and metric `plan` measures; None when there is none.
fn targets_part(
    plan: &Plan,
    results: &Results,
) -> anyhow::Result<Option<(String, String, serde_json::Value)>> {
    let relevant: Vec<Target> = targets()
        .into_iter()
        .filter(|t| plan.systems.contains(&t.system) && plan.metrics.contains(&t.metric))
        .collect();
    if relevant.is_empty() {
        return Ok(None);
    }
    let figure = |metric: Metric, system: System| {
        results
            .get(&(metric, system))
            .map_or("n/a".to_owned(), |v| format!("{:.2}", median(v)))
    };
    let mut table = String::new();
    writeln!(
        table,
        "| system | metric | baseline | system median | baseline median | factor | target | result |"
    )?;
    writeln!(table, "|{}", "---|".repeat(8))?;
    let mut json = Vec::new();
    for target in &relevant {
        let (factor, verdict) = target.check(results);
        writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            target.system.name(),
            target.metric.name(),
            target.baseline.map_or("-", System::name),
            figure(target.metric, target.system),
            target
                .baseline
                .map_or("-".to_owned(), |b| figure(target.metric, b)),
            target.shown(factor),
            target.wanted(),
            verdict.name(),
        )?;
        json.push(serde_json::json!({
            "system": target.system.name(),
            "scenario": target.metric.name(),
            "baseline": target.baseline.map(System::name),
            "factor": factor,
            "min": target.min,
            "max": target.max,
            "result": verdict.name(),
        }));
    }
    let mut markdown = String::new();
    writeln!(markdown, "## Targets\n")?;
    writeln!(
        markdown,
        "Computed by the bench from this run's medians (factor as in the table above: \
         the system's median over the baseline's). The TC datapath (`spectrum-tc`, and \
         `spectrum-auto`, whose TCP apps run at TC) against the minimal TC router \
         (at least 0.95x: near the ceiling of the hook), against the same router with an \
         XDP program that passes everything attached too (`tc-router-xdp`: the ceiling of \
         any design that applies access rules in XDP first, as ours does in every mode) \
         and HAProxy (at least 1.3x) on TCP bulk; `spectrum-auto`'s UDP, which stays in \
         XDP, against `spectrum-xdp` (unchanged: at least 0.95x). Under the SYN flood, \
         every datapath of ours (SYN proxy on, the default) against HAProxy (its real \
         clients through at least as often) and on its own, with no baseline and its own \
         figure in the factor column: at least 99% of them through, and none of the \
         flood's SYNs at the origin. The SYN proxy's cost: conn/s at least 0.9x and TCP \
         bulk at least 0.95x of the same datapath with it off (`*-synproxy-off`).\n"
    )?;
    writeln!(markdown, "{table}")?;
    Ok(Some((markdown, table, serde_json::Value::Array(json))))
}

pub fn throughput(
    plan: &Plan,
    results: &Results,
    errors: &Errors,
    failed_connections: &Failed,
    cost: Option<&serde_json::Value>,
) -> anyhow::Result<Part> {
    let (date, commit) = date_and_commit();
    let systems = &plan.systems;
    // Our systems in the run: one factor each in every ratio cell.
    let ours: Vec<Datapath> = systems
        .iter()
        .filter_map(|s| match s {
            System::Ours(datapath) => Some(*datapath),
            _ => None,
        })
        .collect();
    let ours_label = if ours.is_empty() {
        "ours".to_owned()
    } else {
        format!(
            "ours ({})",
            ours.iter()
                .map(|d| d.name())
                .collect::<Vec<_>>()
                .join(" / ")
        )
    };
    let mut table = String::new();
    writeln!(
        table,
        "| metric | unit | {} | {ours_label} vs direct | {ours_label} vs same-hook router \
         | {ours_label} vs best peer |",
        systems
            .iter()
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(" | ")
    )?;
    writeln!(table, "|{}", "---|".repeat(systems.len() + 5))?;
    let mut rows = Vec::new();
    for &metric in &plan.metrics {
        let figure = |system: System| results.get(&(metric, system)).map(|v| median(v));
        let best = |candidates: &[System]| {
            candidates
                .iter()
                .filter(|s| systems.contains(s))
                .filter_map(|s| figure(*s))
                .reduce(|a, b| {
                    if metric.lower_is_better() {
                        a.min(b)
                    } else {
                        a.max(b)
                    }
                })
        };
        let mut cells = Vec::new();
        for &system in systems {
            let values = results.get(&(metric, system));
            let why = metric_support(metric, system);
            cells.push(cell(values, why));
            let failed_runs = errors.get(&(metric, system)).map_or(&[][..], Vec::as_slice);
            let mut row = serde_json::json!({
                "scenario": metric.name(),
                "system": system.name(),
                "unit": metric.unit(),
                "link_mode": metric.measurement().mode().name(),
                "lower_is_better": metric.lower_is_better(),
                "failed_runs": failed_runs.len(),
                "failed_connections": failed_connections.get(&(metric, system)).copied().unwrap_or(0),
            });
            if !failed_runs.is_empty() {
                row["errors"] = failed_runs.into();
            }
            match (values, why) {
                (Some(values), _) => {
                    row["median"] = median(values).into();
                    row["runs"] = values.clone().into();
                }
                (None, Support::NotSupported(reason) | Support::NotApplicable(reason)) => {
                    row["median"] = serde_json::Value::Null;
                    row["support"] = cell(None, why).into();
                    row["not_measured"] = reason.into();
                }
                (None, Support::Yes) => {
                    row["median"] = serde_json::Value::Null;
                    row["support"] = "failed".into();
                }
            }
            rows.push(row);
        }
        // One factor per system of ours, in table order.
        let versus = |base: &dyn Fn(Datapath) -> Option<f64>| {
            if ours.is_empty() {
                return "n/a".to_owned();
            }
            ours.iter()
                .map(|&d| advantage(metric, figure(System::Ours(d)), base(d)))
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let best_peer = best(&[System::Haproxy, System::Nginx]);
        writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} |",
            metric.name(),
            metric.unit(),
            cells.join(" | "),
            versus(&|_| figure(System::Direct)),
            versus(&|d| figure(d.router(metric))),
            versus(&|_| best_peer),
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
         machine. \"Wire\" mode (the default) models physical NICs: client and origin veths \
         with tx checksum offload off, GRO on everywhere; `*_veth` rows use veth's defaults \
         (checksums left partial, no GRO). Each figure is the median of {} run(s) of {} s \
         (min-max in brackets). Client, proxy and origin share the machine's cores, so \
         ratios matter more than absolute figures. \"ours vs X\" is a factor where more \
         is better for every metric (for latency and CPU, X's figure over ours; for UDP loss, \
         X's loss minus ours in percentage points), one per datapath of ours in the order \
         the header gives. The same-hook router is the minimal router at the hook that \
         carries the row's traffic: xdp-router for spectrum-xdp, tc-router for spectrum-tc, \
         and for spectrum-auto tc-router on TCP rows, xdp-router on UDP rows.\n",
        plan.repeats, plan.seconds
    )?;
    writeln!(markdown, "{table}")?;
    let targets = targets_part(plan, results)?;
    let plots: Vec<String> = plan
        .metrics
        .iter()
        .map(|m| format!("[{0}](bench/plots/{0}.png)", m.name()))
        .collect();
    writeln!(markdown, "Charts: {}.\n", plots.join(", "))?;
    writeln!(
        markdown,
        "- direct: kernel IP forwarding in `edge`, clients address the origin.\n\
         - xdp-router / tc-router: a minimal eBPF program at XDP / at TC ingress in `edge` \
           (FIB lookup + redirect, no NAT, no conntrack): the ceiling of any eBPF design at \
           that hook.\n\
         - haproxy (tcp mode, 2 threads) and nginx stream (2 workers): L4 proxies in `edge` \
           with the same ports, origins and certificates, configs generated by the bench.\n\
         - spectrum-xdp / spectrum-tc / spectrum-auto: this proxy, one agent config but for \
           `edge.datapath` (`xdp`, `tc`, `auto`). TLS-off apps run on its fast path \
           (conntrack, NAT, checksums, redirect) in XDP, at TC ingress (after GRO), or with \
           `auto` TCP apps at TC and UDP apps in XDP; the TLS rows are its agent in all three \
           (`tls: flexible`: TLS ends at the edge, plain HTTP to the origin). Its SYN \
           proxy is on (the default): the edge answers a SYN with a SYN cookie and opens \
           the origin's handshake only for a client that completes its own.\n\
         - spectrum-xdp-synproxy-off / spectrum-tc-synproxy-off: the same with \
           `edge.syn_proxy: \"off\"` (each NATing from its own address), on TCP bulk (1 and \
           4 streams), conn/s and the SYN flood only: what the SYN proxy costs and buys.\n\
         - Every listener (HAProxy's, nginx's, the origins') has a backlog of {backlog}, and \
           edge and origin namespaces `tcp_syncookies` 1, `somaxconn` and \
           `tcp_max_syn_backlog` {backlog}: the kernel answers with SYN cookies once that \
           many handshakes wait, as a host facing the internet is set up.\n\
         - tcp_*: iperf3 with 1, 4 or 8 parallel streams (`-P`), bytes received by the \
           origin. tcp_8_cpu_per_gb: CPU time of the \
           whole machine (client, edge and origin: /proc/stat, all but idle) per GB of the \
           8-stream run; the edge's share is the difference between systems.\n\
         - udp_64b: trafgen (packet mmap, one thread) sends 64-byte-payload datagrams \
           from 64 source ports (64 flows) as fast as it can (a flood trafgen ends early \
           is run again); the figure is datagrams per second that reached the \
           origin's interface, counted and dropped there by an XDP sink; udp_64b_loss is the \
           share of what the client's interface sent that never arrived. The generator \
           shares the cores with the edge, so a costlier path also slows the sender: \
           rates differ even where nothing is lost.\n\
         - tcp_conn_rate: 4 client threads, each connection one HTTP/1.0 request to an nginx \
           origin that closes it.\n\
         - tls_*: 4 client threads (rustls, TLS 1.3, no resumption, the server's signature \
           checked), each connection a full handshake and one HTTP/1.0 request to the nginx \
           origin; certificates are ECDSA P-256 or RSA-2048, the same file for every system.\n\
         - latency_*: one connection to a TCP echo origin, a 32-byte message and its echo \
           1000 times a second; percentiles of the round trip in microseconds.\n\
         - syn_flood_*: trafgen sends SYNs at its top rate, a new spoofed source address \
           per SYN, while a real client opens 20 connections a second (each one HTTP/1.0 \
           request; success: answered within 3 s), then while one iperf3 stream runs. \
           syn_flood_at_origin: every packet the origin's interface received; \
           syn_flood_spoofed_at_origin: the flood's own SYNs among them (a count over the \
           run; told apart by their shape, no TCP option, by a tc filter at the origin); \
           syn_flood_edge_cpu: the machine's interrupt and softirq time plus the proxy \
           process's.\n\
         - not supported: the system cannot do it (yet); n/a: the question does not apply.\n",
        backlog = super::peers::LISTEN_BACKLOG,
    )?;
    let failures: Vec<String> = failed_connections
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|((metric, system), n)| format!("{} through {} {n}", metric.name(), system.name()))
        .collect();
    if failures.is_empty() {
        writeln!(
            markdown,
            "No connection failed in the connection and TLS runs.\n"
        )?;
    } else {
        writeln!(
            markdown,
            "Connections that failed (all runs): {}.\n",
            failures.join(", ")
        )?;
    }
    for ((metric, system), failed) in errors {
        writeln!(
            markdown,
            "Runs that failed: {} through {}, {} of {}: {}.\n",
            metric.name(),
            system.name(),
            failed.len(),
            plan.repeats,
            failed.first().map_or("", String::as_str)
        )?;
    }
    if let Some(cost) = cost {
        writeln!(
            markdown,
            "XDP program cost per packet (BPF_PROG_TEST_RUN, {} repetitions): fast-path hit \
             (flow lookup + NAT + checksums + redirect with the flow's cached next hop; flows \
             that rewrite into each other, so every repetition is a hit, checked to end in \
             XDP_TX or XDP_REDIRECT) {} ns; packet to no listener (passed to the stack) {} ns; non-IP \
             frame {} ns. A blocked packet's cost is in the access rules part below.",
            cost["repeat"], cost["fast_path_hit_ns"], cost["no_listener_ns"], cost["not_ip_ns"]
        )?;
    }
    let mut json = serde_json::json!({
        "date": date, "commit": commit, "machine": machine(), "seconds": plan.seconds,
        "repeats": plan.repeats, "results": rows, "xdp_cost": cost,
    });
    if let Some((targets_markdown, targets_table, targets_json)) = targets {
        writeln!(markdown, "\n{}", targets_markdown.trim_end())?;
        write!(table, "\n{targets_table}")?;
        json["targets"] = targets_json;
    }
    Ok(Part {
        markdown,
        json,
        table,
    })
}

pub fn rules(figures: &serde_json::Value) -> anyhow::Result<Part> {
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
    Ok(Part {
        markdown,
        json,
        table,
    })
}

/// BENCHMARKS.md and bench/results.json under `out` each hold two parts,
/// the throughput comparison and the access rules. A run rewrites the
/// parts it measured and keeps the other: `--only access-rules` leaves the
/// throughput figures alone, `--only haproxy` the rules. Charts are drawn
/// from the throughput JSON into bench/plots. Returns the files written.
pub fn write(
    out: &Path,
    throughput: Option<&Part>,
    rules: Option<&Part>,
) -> anyhow::Result<Vec<PathBuf>> {
    let markdown_path = out.join("BENCHMARKS.md");
    let old = std::fs::read_to_string(&markdown_path).unwrap_or_default();
    let (old_throughput, old_rules) = old.split_at(old.find(RULES_HEADING).unwrap_or(old.len()));
    let mut markdown = match throughput {
        Some(part) => part.markdown.trim_end(),
        None if old_throughput.trim().is_empty() => "# Benchmarks",
        None => old_throughput.trim_end(),
    }
    .to_owned();
    let rules_markdown = rules.map_or(old_rules, |part| &part.markdown);
    if !rules_markdown.trim().is_empty() {
        write!(markdown, "\n\n{}", rules_markdown.trim_end())?;
    }
    markdown.push('\n');
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    std::fs::write(&markdown_path, markdown)?;

    let json_path = out.join("bench/results.json");
    let old: Option<serde_json::Value> = std::fs::read_to_string(&json_path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .filter(serde_json::Value::is_object);
    let old_rules = old.as_ref().and_then(|o| o.get("access_rules")).cloned();
    let mut json = match throughput {
        Some(part) => part.json.clone(),
        None => old.unwrap_or_else(|| serde_json::json!({})),
    };
    if let Some(rules) = rules.map(|r| r.json.clone()).or(old_rules) {
        json["access_rules"] = rules;
    }
    std::fs::create_dir_all(out.join("bench"))?;
    std::fs::write(&json_path, serde_json::to_string_pretty(&json)?)?;
    let mut written = vec![markdown_path, json_path];
    if let Some(part) = throughput {
        written.extend(plot::write_charts(&part.json, &out.join("bench/plots"))?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_is_better_whichever_way_a_metric_runs() {
        assert_eq!(advantage(Metric::Tcp1, Some(6.0), Some(3.0)), "2.00x");
        assert_eq!(
            advantage(Metric::LatencyP50, Some(40.0), Some(80.0)),
            "2.00x"
        );
        assert_eq!(
            advantage(Metric::Udp64Loss, Some(1.5), Some(40.0)),
            "+38.5 pts"
        );
        assert_eq!(
            advantage(Metric::Udp64Loss, Some(10.0), Some(0.0)),
            "-10.0 pts"
        );
        assert_eq!(advantage(Metric::Tcp1, None, Some(3.0)), "n/a");
    }

    fn plan(systems: &[System], metrics: &[Metric]) -> Plan {
        Plan {
            systems: systems.to_vec(),
            metrics: metrics.to_vec(),
            rules: false,
            seconds: 1,
            repeats: 1,
        }
    }

    /// Figures for every (metric, system) given: one run each.
    fn runs(figures: &[(Metric, System, f64)]) -> Results {
        figures.iter().map(|&(m, s, v)| ((m, s), vec![v])).collect()
    }

    const XDP: System = System::Ours(Datapath::Xdp);
    const TC: System = System::Ours(Datapath::Tc);
    const AUTO: System = System::Ours(Datapath::Auto);
    const XDP_OFF: System = System::OursSynProxyOff(Datapath::Xdp);
    const TC_OFF: System = System::OursSynProxyOff(Datapath::Tc);

    /// The table row of `metric`, split into cells.
    fn row(table: &str, metric: Metric) -> Vec<&str> {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("| {} |", metric.name())))
            .unwrap_or_else(|| panic!("no {} row in\n{table}", metric.name()));
        line.trim_matches('|').split('|').map(str::trim).collect()
    }

    #[test]
    fn each_datapath_is_compared_with_the_router_at_its_hook() {
        use Metric::*;
        use System::*;
        let systems = System::ALL;
        let results = runs(&[
            (Tcp4, Direct, 10.0),
            (Tcp4, XdpRouter, 5.0),
            (Tcp4, TcRouter, 10.0),
            (Tcp4, Haproxy, 8.0),
            (Tcp4, Nginx, 4.0),
            (Tcp4, XDP, 5.0),
            (Tcp4, TC, 9.0),
            (Tcp4, AUTO, 10.0),
            (Udp64, Direct, 300.0),
            (Udp64, XdpRouter, 400.0),
            (Udp64, TcRouter, 350.0),
            (Udp64, Nginx, 250.0),
            (Udp64, XDP, 400.0),
            (Udp64, TC, 350.0),
            (Udp64, AUTO, 420.0),
        ]);
        let part = throughput(
            &plan(&systems, &[Tcp4, Udp64]),
            &results,
            &Errors::new(),
            &Failed::new(),
            None,
        )
        .unwrap();
        let header = part.table.lines().next().unwrap();
        assert!(
            header.contains("| ours (xdp / tc / auto) vs same-hook router |"),
            "{header}"
        );
        let tcp = row(&part.table, Tcp4);
        // metric, unit, 9 systems, then the three ratio columns.
        assert_eq!(tcp.len(), 2 + systems.len() + 3, "{tcp:?}");
        let ratios = 2 + systems.len();
        assert_eq!(tcp[ratios], "0.50x / 0.90x / 1.00x", "vs direct");
        // xdp over the XDP router; tc and auto (TCP at TC) over the TC one.
        assert_eq!(
            tcp[ratios + 1],
            "1.00x / 0.90x / 1.00x",
            "vs same-hook router"
        );
        assert_eq!(tcp[ratios + 2], "0.62x / 1.12x / 1.25x", "vs best peer");
        let udp = row(&part.table, Udp64);
        // auto's UDP stays in XDP: over the XDP router.
        assert_eq!(
            udp[ratios + 1],
            "1.00x / 1.00x / 1.05x",
            "vs same-hook router"
        );
        assert!(udp.contains(&"not supported"), "haproxy: {udp:?}");
    }

    #[test]
    fn targets_are_computed_from_the_medians() {
        use Metric::*;
        use System::*;
        let mut figures = vec![
            (Tcp1, TcRouter, 10.0),
            (Tcp1, Haproxy, 7.0),
            (Tcp1, TC, 9.6),   // 0.96x the router, 1.37x HAProxy: both met
            (Tcp1, AUTO, 9.0), // 0.90x, 1.29x: neither
            (Tcp4, TcRouter, 10.0),
            (Tcp4, TC, 10.0),
            (Udp64, XDP, 400.0),
            (Udp64, AUTO, 396.0),
            (FloodSuccess, Haproxy, 100.0),
            (FloodSuccess, XDP, 97.5), // fewer than HAProxy's: not met
            (FloodSuccess, TC, 100.0),
            (FloodSpoofedAtOrigin, XDP, 0.0), // none: met
            (FloodSpoofedAtOrigin, TC, 3.0),  // any: not met
            (ConnRate, XDP, 18000.0),
            (ConnRate, XDP_OFF, 19000.0), // 0.95x: met
            (ConnRate, TC, 17000.0),
            (ConnRate, TC_OFF, 20000.0), // 0.85x: not met
            (Tcp1, TC_OFF, 9.9),         // 0.97x: met
            (Tcp4, TC_OFF, 11.0),        // 0.91x: not met
        ];
        let mut results = runs(&figures);
        // Medians, not means or last runs: 3 runs of auto's TCP 4 streams.
        results.insert((Tcp4, AUTO), vec![1.0, 9.7, 9.8]);
        let systems = [TcRouter, Haproxy, XDP, TC, AUTO];
        let all = plan(&systems, &[Tcp1, Tcp4, Udp64]);
        let checked: Vec<(System, Metric, Option<System>, Verdict)> = targets()
            .into_iter()
            .map(|t| (t.system, t.metric, t.baseline, t.check(&results).1))
            .collect();
        use Verdict::*;
        assert_eq!(
            checked,
            [
                (TC, Tcp1, Some(TcRouter), Met),
                // Not in this run.
                (TC, Tcp1, Some(TcRouterXdp), NotMeasured),
                (TC, Tcp1, Some(Haproxy), Met),
                (TC, Tcp4, Some(TcRouter), Met),
                (TC, Tcp4, Some(TcRouterXdp), NotMeasured),
                // No HAProxy figure for 4 streams.
                (TC, Tcp4, Some(Haproxy), NotMeasured),
                (AUTO, Tcp1, Some(TcRouter), NotMet),
                (AUTO, Tcp1, Some(TcRouterXdp), NotMeasured),
                (AUTO, Tcp1, Some(Haproxy), NotMet),
                (AUTO, Tcp4, Some(TcRouter), Met),
                (AUTO, Tcp4, Some(TcRouterXdp), NotMeasured),
                (AUTO, Tcp4, Some(Haproxy), NotMeasured),
                (AUTO, Udp64, Some(XDP), Met),
                (XDP, FloodSuccess, Some(Haproxy), NotMet),
                // Fewer than 99%.
                (XDP, FloodSuccess, None, NotMet),
                (XDP, FloodSpoofedAtOrigin, None, Met),
                (TC, FloodSuccess, Some(Haproxy), Met),
                (TC, FloodSuccess, None, Met),
                (TC, FloodSpoofedAtOrigin, None, NotMet),
                (AUTO, FloodSuccess, Some(Haproxy), NotMeasured),
                (AUTO, FloodSuccess, None, NotMeasured),
                (AUTO, FloodSpoofedAtOrigin, None, NotMeasured),
                (XDP, ConnRate, Some(XDP_OFF), Met),
                (XDP, Tcp1, Some(XDP_OFF), NotMeasured),
                (XDP, Tcp4, Some(XDP_OFF), NotMeasured),
                (TC, ConnRate, Some(TC_OFF), NotMet),
                (TC, Tcp1, Some(TC_OFF), Met),
                (TC, Tcp4, Some(TC_OFF), NotMet),
            ]
        );
        // Unchanged means no slower: 10% slower is not met.
        figures.push((Udp64, AUTO, 360.0));
        let slower = runs(&figures);
        let udp = targets().into_iter().find(|t| t.metric == Udp64).unwrap();
        assert_eq!(udp.check(&slower).1, NotMet);
        assert_eq!(
            udp.check(&slower).0.map(|f| (f * 100.0).round()),
            Some(90.0)
        );

        let part = throughput(&all, &results, &Errors::new(), &Failed::new(), None).unwrap();
        let section = &part.markdown[part.markdown.find("## Targets").expect("a section")..];
        assert!(
            section.contains(
                "| spectrum-tc | tcp_1_stream | tc-router | 9.60 | 10.00 | 0.96x | >= 0.95x | met |"
            ),
            "{section}"
        );
        assert!(
            section.contains(
                "| spectrum-auto | tcp_1_stream | haproxy | 9.00 | 7.00 | 1.29x | >= 1.30x | not met |"
            ),
            "{section}"
        );
        assert!(
            section.contains(
                "| spectrum-auto | udp_64b | spectrum-xdp | 396.00 | 400.00 | 0.99x | >= 0.95x | met |"
            ),
            "{section}"
        );
        assert!(section.contains("| n/a | n/a | >= 1.30x | not measured |"));
        // The console shows the targets too.
        assert!(part.table.contains("| 0.96x | >= 0.95x | met |"));
        let json = part.json["targets"]
            .as_array()
            .expect("targets in the JSON");
        // 13, and the SYN proxy's cost on bulk for xdp and tc (their
        // baselines not in the run).
        assert_eq!(json.len(), 17);
        assert_eq!(json[0]["result"], "met");
        assert_eq!(json[0]["baseline"], "tc-router");

        // Targets without a baseline show the system's own figure.
        let flood = plan(
            &[Haproxy, XDP, TC, XDP_OFF, TC_OFF],
            &[FloodSuccess, FloodSpoofedAtOrigin, ConnRate],
        );
        let part = throughput(&flood, &results, &Errors::new(), &Failed::new(), None).unwrap();
        let section = &part.markdown[part.markdown.find("## Targets").expect("a section")..];
        for line in [
            "| spectrum-xdp | syn_flood_spoofed_at_origin | - | 0.00 | - | 0.00 | = 0.00 | met |",
            "| spectrum-tc | syn_flood_spoofed_at_origin | - | 3.00 | - | 3.00 | = 0.00 | not met |",
            "| spectrum-xdp | syn_flood_conn_success | - | 97.50 | - | 97.50 | >= 99.00 | not met |",
            "| spectrum-tc | syn_flood_conn_success | haproxy | 100.00 | 100.00 | 1.00x | >= 1.00x | met |",
            "| spectrum-tc | tcp_conn_rate | spectrum-tc-synproxy-off | 17000.00 | 20000.00 | 0.85x | >= 0.90x | not met |",
        ] {
            assert!(section.contains(line), "{line} in {section}");
        }
        let json = part.json["targets"].as_array().unwrap();
        let absolute = json
            .iter()
            .find(|t| t["scenario"] == "syn_flood_spoofed_at_origin")
            .unwrap();
        assert_eq!(absolute["baseline"], serde_json::Value::Null);
        assert_eq!(absolute["max"], 0.0);

        // No target's system and metric in the run (xdp's are on the SYN
        // flood, conn/s and bulk against it with the SYN proxy off): no
        // section.
        let xdp_only = plan(&[XDP, Haproxy], &[Tcp8, Udp64]);
        let part = throughput(&xdp_only, &results, &Errors::new(), &Failed::new(), None).unwrap();
        assert!(!part.markdown.contains("## Targets"));
        assert!(part.json.get("targets").is_none());
        // Only auto's UDP measured: that row alone.
        let udp_only = plan(&[XDP, AUTO], &[Udp64]);
        let part = throughput(&udp_only, &results, &Errors::new(), &Failed::new(), None).unwrap();
        assert_eq!(part.json["targets"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn cells_say_why_there_is_no_figure() {
        assert_eq!(
            cell(Some(&vec![1.0, 3.0, 2.0]), Support::Yes),
            "2.00 (1.00-3.00)"
        );
        assert_eq!(cell(None, Support::NotSupported("x")), "not supported");
        assert_eq!(cell(None, Support::NotApplicable("x")), "n/a");
        assert_eq!(cell(None, Support::Yes), "failed");
    }
}
