//! The bodies of the CLI commands but `run` (`check`, `apps`, `stats`):
//! main.rs parses the command line and calls one of these.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use proxy_common::MAX_APPS;
use serde_json::json;

use crate::{
    access,
    agent::load_config,
    config::{
        self,
        model::{App, Config, Origin},
    },
    kernel::{loader, maps, stats, stats::StatsRow},
    preflight,
    proxy::tcp::TcpProxyState,
    proxy::udp::UdpProxyState,
};

/// `check`: every file validated; all errors printed; exit 1 if any fails.
pub fn check(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        let prefix = if files.len() > 1 {
            format!("{}: ", file.display())
        } else {
            String::new()
        };
        match config::load(file) {
            Ok(loaded) => {
                for warning in &loaded.warnings {
                    eprintln!("{prefix}{warning}");
                }
                let mut missing: Vec<String> = loaded
                    .config
                    .check_files()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                // Limits of the kernel maps: what `run` would refuse.
                if let Err(err) = maps::map_contents(&loaded.config) {
                    missing.push(err.to_string());
                }
                // Certificates, keys and CA bundles loaded, as `run` does.
                if let Err(err) = TcpProxyState::new(&loaded.config) {
                    missing.push(format!("{err:#}"));
                }
                if let Err(err) = UdpProxyState::new(&loaded.config) {
                    missing.push(format!("{err:#}"));
                }
                // GeoIP databases read and rules expanded, as `run` does.
                let prefixes = match missing.is_empty().then(|| access::build(&loaded.config)) {
                    Some(Ok(set)) => set.len(),
                    Some(Err(err)) => {
                        missing.push(format!("access_rules: {err:#}"));
                        0
                    }
                    None => 0,
                };
                if missing.is_empty() {
                    println!(
                        "{prefix}ok: {} apps, {} rules ({prefixes} prefixes)",
                        loaded.config.apps.len(),
                        loaded.config.access_rules.len()
                    );
                } else {
                    failed = true;
                    for err in missing {
                        println!("{prefix}error: {err}");
                    }
                }
            }
            Err(err) => {
                failed = true;
                for line in err.to_string().lines() {
                    println!("{prefix}error: {line}");
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn data_path(app: &App) -> &'static str {
    match (app.fast_path(), app.nat_at_tc) {
        (false, _) => "agent",
        (true, false) => "xdp",
        (true, true) => "tc",
    }
}

fn origins(app: &App) -> Vec<String> {
    match &app.origin {
        Origin::Direct(origins) => origins
            .iter()
            .map(|o| match o.ip {
                std::net::IpAddr::V4(ip) => format!("{}://{ip}:{}", app.protocol, o.ports),
                std::net::IpAddr::V6(ip) => format!("{}://[{ip}]:{}", app.protocol, o.ports),
            })
            .collect(),
        Origin::Dns(dns) => vec![format!("{}://{}:{}", app.protocol, dns.name, dns.ports)],
    }
}

/// `apps`: the apps of the config at `config_path`, with the counters of
/// the agent running `instance`, if one is.
pub fn apps(config_path: &Path, json: bool, instance: &str, bpffs: &Path) -> anyhow::Result<()> {
    preflight::check_instance_name(instance)?;
    let config = load_config(config_path)?;
    // Counters only when an agent runs this instance; the list stands alone.
    let pin = loader::stats_pin_path(bpffs, instance);
    let rows = if pin.exists() {
        match running_counters(&pin, instance, &config) {
            Ok(rows) => Some(rows),
            Err(err) => {
                tracing::warn!("counters of --instance {instance} not shown: {err:#}");
                None
            }
        }
    } else {
        None
    };
    print_apps(&config, rows.as_deref(), json)
}

/// The running agent's counters, renumbered to `config`'s app slots by app
/// id (the file may have been edited since the agent started, and the API
/// changes apps live); apps it does not run get none.
fn running_counters(pin: &Path, instance: &str, config: &Config) -> anyhow::Result<Vec<StatsRow>> {
    // No list: assume the file is what the agent runs.
    let running = preflight::read_running_apps(instance)?.unwrap_or_else(|| {
        config
            .apps
            .iter()
            .map(|a| (a.slot, a.id.to_string()))
            .collect()
    });
    let map = stats::open_pinned(pin)?;
    let slots = running.iter().map(|(slot, _)| slot + 1).max().unwrap_or(0);
    let rows = stats::read(&map, slots)?;
    let slot_in_config = |running_slot: u32| {
        let (_, id) = running.iter().find(|(slot, _)| *slot == running_slot)?;
        let app = config.apps.iter().find(|a| a.id.to_string() == *id)?;
        Some(app.slot)
    };
    Ok(rows
        .into_iter()
        .filter_map(|row| match row.app {
            None => Some(row),
            Some(r) => slot_in_config(r).map(|app| StatsRow {
                app: Some(app),
                ..row
            }),
        })
        .collect())
}

/// One line (or JSON object) per app; with the counters of a running agent
/// when `rows` has them.
fn print_apps(config: &Config, rows: Option<&[StatsRow]>, json: bool) -> anyhow::Result<()> {
    let totals = rows.map(stats::app_totals);
    let total = |slot: u32| {
        totals
            .as_ref()
            .map(|t| t.get(&slot).copied().unwrap_or_default())
    };
    if json {
        let apps: Vec<_> = config
            .apps
            .iter()
            .enumerate()
            .map(|(index, app)| {
                json!({
                    "index": index,
                    "id": app.id.to_string(),
                    "protocol": format!("{}/{}", app.protocol, app.edge_ports),
                    "dns_name": app.dns.name,
                    "edge_ips": app.edge_addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                    "edge_ips_dynamic": app.edge_ips_dynamic,
                    "edge_port_start": app.edge_ports.start,
                    "edge_port_end": app.edge_ports.end,
                    "origins": origins(app),
                    "tls": app.tls.to_string(),
                    "proxy_protocol": app.proxy_protocol.to_string(),
                    "ip_firewall": app.ip_firewall,
                    "data_path": data_path(app),
                    "counters": total(app.slot),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&apps)?);
        return Ok(());
    }
    for (index, app) in config.apps.iter().enumerate() {
        let edge: Vec<String> = app.edge_addrs.iter().map(|a| a.to_string()).collect();
        println!(
            "[{index}] {} {}/{} {} edge {} -> {} (path {}, tls {}, proxy_protocol {}, ip_firewall {})",
            app.id,
            app.protocol,
            app.edge_ports,
            app.dns.name,
            edge.join(" "),
            origins(app).join(" "),
            data_path(app),
            app.tls,
            app.proxy_protocol,
            app.ip_firewall,
        );
        if let Some(t) = total(app.slot) {
            println!(
                "    packets {} bytes {} opened {} closed {} blocked {} failed {}",
                t.packets, t.bytes, t.opened, t.closed, t.blocked, t.failed
            );
        }
    }
    Ok(())
}

/// `stats`: the counters of the agent running `instance`, named after the
/// apps of `config_path` when given.
pub fn stats(
    instance: &str,
    bpffs: &Path,
    config_path: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    preflight::check_instance_name(instance)?;
    let config = config_path.map(load_config).transpose()?;
    let map = stats::open_pinned(&loader::stats_pin_path(bpffs, instance))?;
    let app_count = match (&config, preflight::read_running_apps(instance)?) {
        (_, Some(running)) => running.iter().map(|(slot, _)| slot + 1).max().unwrap_or(0),
        (Some(config), None) => config.apps.len() as u32,
        (None, None) => MAX_APPS,
    };
    let rows = stats::read(&map, app_count)?;
    print_stats(&rows, config.as_ref(), json);
    Ok(())
}

/// Counters by app and verdict.
fn print_stats(rows: &[StatsRow], config: Option<&Config>, json: bool) {
    let name = |app: Option<u32>| -> String {
        match app {
            None => "-".to_owned(),
            Some(i) => config
                .and_then(|c| c.app_in_slot(i))
                .map_or_else(|| i.to_string(), |a| a.dns.name.clone()),
        }
    };
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "app": r.app,
                    "app_name": r.app.map(|_| name(r.app)),
                    "verdict": r.verdict.name(),
                    "packets": r.packets,
                    "bytes": r.bytes,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
        return;
    }
    println!(
        "{:<32} {:<16} {:>12} {:>14}",
        "app", "verdict", "packets", "bytes"
    );
    for r in rows {
        println!(
            "{:<32} {:<16} {:>12} {:>14}",
            name(r.app),
            r.verdict.name(),
            r.packets,
            r.bytes
        );
    }
}
