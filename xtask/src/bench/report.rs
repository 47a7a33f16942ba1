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
    ACCESS_RULES, Errors, Failed, Metric, Plan, Results, Support, System,
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
fn advantage(metric: Metric, ours: Option<f64>, base: Option<f64>) -> String {
    if metric == Metric::Udp64Loss {
        // A share: the difference in points (positive: ours loses less).
        return match (ours, base) {
            (Some(o), Some(b)) => format!("{:+.1} pts", b - o),
            _ => "n/a".into(),
        };
    }
    match (ours, base) {
        (Some(o), Some(b)) if o > 0.0 && b > 0.0 => {
            let factor = if metric.lower_is_better() {
                b / o
            } else {
                o / b
            };
            format!("{factor:.2}x")
        }
        _ => "n/a".into(),
    }
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
    let mut table = String::new();
    writeln!(
        table,
        "| metric | unit | {} | ours vs direct | ours vs best eBPF router | ours vs best peer |",
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
        let ours = figure(System::Ours);
        writeln!(
            table,
            "| {} | {} | {} | {} | {} | {} |",
            metric.name(),
            metric.unit(),
            cells.join(" | "),
            advantage(metric, ours, figure(System::Direct)),
            advantage(metric, ours, best(&[System::XdpRouter, System::TcRouter])),
            advantage(metric, ours, best(&[System::Haproxy, System::Nginx])),
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
         X's loss minus ours in percentage points).\n",
        plan.repeats, plan.seconds
    )?;
    writeln!(markdown, "{table}")?;
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
         - spectrum-xdp: this proxy. TLS-off apps run on its XDP fast path (conntrack, NAT, \
           checksums, redirect); the TLS rows are its agent (`tls: flexible`: TLS ends at \
           the edge, plain HTTP to the origin).\n\
         - tcp_*: iperf3, bytes received by the origin. tcp_8_cpu_per_gb: CPU time of the \
           whole machine (client, edge and origin: /proc/stat, all but idle) per GB of the \
           8-stream run; the edge's share is the difference between systems.\n\
         - udp_64b: trafgen (packet mmap, one thread) sends 64-byte-payload datagrams of one \
           flow as fast as it can; the figure is datagrams per second that reached the \
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
         - not supported: the system cannot do it (yet); n/a: the question does not apply.\n"
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
    let json = serde_json::json!({
        "date": date, "commit": commit, "machine": machine(), "seconds": plan.seconds,
        "repeats": plan.repeats, "results": rows, "xdp_cost": cost,
    });
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
