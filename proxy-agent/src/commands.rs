//! The bodies of the CLI commands (kept out of main.rs so it reads as the
//! list of commands).
use std::{path::PathBuf, process::ExitCode};

use proxy_agent::{
    access,
    config::{
        self,
        model::{App, Config, Origin},
    },
    datapath::{maps, stats, stats::StatsRow},
    tcp::TcpProxyState,
    udp::UdpProxyState,
};
use serde_json::json;

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

/// `apps`: one line (or JSON object) per app; with the counters of a
/// running agent when `rows` has them.
pub fn apps(config: &Config, rows: Option<&[StatsRow]>, json: bool) -> anyhow::Result<()> {
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

/// `stats`: counters by app and verdict.
pub fn print_stats(rows: &[StatsRow], config: Option<&Config>, json: bool) {
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
