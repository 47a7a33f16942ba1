//! The bodies of the CLI commands (kept out of main.rs so it reads as the
//! list of commands).
use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::programs::XdpMode;
use proxy_agent::{
    access::{self, EventLog},
    api,
    config::{
        self,
        model::{App, Config, Origin, OriginDns},
    },
    datapath::{conntrack_gc, loader::Datapath, maps, ring, stats, stats::StatsRow},
    dns_server::{self, DnsServer},
    origin::{OriginResolver, fill_origin_sources, refresh_after},
    tcp::{self, TcpProxyState},
    udp::{self, UdpProxyState},
};
use serde_json::json;
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::{mpsc, watch},
};
use tracing::{debug, info, warn};

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
    if app.fast_path() { "xdp" } else { "agent" }
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
    let totals = rows.map(|rows| stats::app_totals(rows, config.apps.len()));
    let total = |index: usize| totals.as_ref().and_then(|t| t.get(index)).copied();
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
                    "counters": total(index),
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
        if let Some(t) = total(index) {
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
                .and_then(|c| c.apps.get(i as usize))
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

/// `run` once checks passed: resolve origin names, load, fill maps and
/// rules, attach, publish counters, then keep origins and flows up to date
/// (and reload access rules on SIGHUP) until SIGINT/SIGTERM. Dropping the
/// data path detaches XDP.
pub async fn serve(
    mut config: Config,
    config_path: &Path,
    mode: XdpMode,
    stats_pin: PathBuf,
) -> anyhow::Result<()> {
    // Signals first: a SIGTERM that arrives while starting still ends in a
    // clean exit (XDP detached, pin removed).
    let mut shutdown = Box::pin(shutdown_signal()?);
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let rules = access::build(&config)?;
    let paths = AgentPaths {
        tcp: Arc::new(TcpProxyState::new(&config)?),
        udp: Arc::new(UdpProxyState::new(&config)?),
    };
    let (mut resolved, initial) = spawn_origin_resolvers(&config).await?;
    fill_origin_sources(&mut config, &initial)?;
    let contents = maps::map_contents(&config)?;
    let mut datapath = Datapath::load()?;
    spawn_kernel_log_reader(&mut datapath);
    let mut block_events = access::spawn_event_reader(datapath.take_block_events()?)?;
    let mut event_log = EventLog::default();
    // Rules before listeners: no packet reaches an app unchecked.
    access::apply(&mut datapath, &config, &rules)?;
    drop(rules);
    datapath.sync(&contents)?;
    for (index, ips) in &initial {
        apply_origins(&mut datapath, &config, &paths, *index, ips);
    }
    // The DNS server binds before XDP attaches, so a listen address that
    // cannot be bound stops the start before anything is served.
    let dns = match &config.dns_server {
        Some(settings) => {
            let zones = dns_server::zone_records(&config)?;
            Some(DnsServer::start(settings, &config.edge.address_pool, &zones).await?)
        }
        None => None,
    };
    // The API's token and socket too: a bad one stops the start here.
    let api = match &config.api {
        Some(settings) => {
            let token = api::read_token(&settings.token_file)?;
            let listener = TcpListener::bind(settings.listen)
                .await
                .with_context(|| format!("api.listen {}: cannot bind", settings.listen))?;
            Some((settings.clone(), token, listener))
        }
        None => None,
    };
    warn_on_strict_rp_filter(&config.edge.interfaces);
    datapath.attach(&config.edge.interfaces, mode)?;
    // Steering after XDP: every packet that reaches the agent's socket has
    // passed the access rules.
    let (stop_paths, paths_stopped) = watch::channel(false);
    let tcp_listener = (!paths.tcp.is_empty()).then(tcp::listener).transpose()?;
    let udp_socket = (!paths.udp.is_empty()).then(udp::socket).transpose()?;
    if tcp_listener.is_some() || udp_socket.is_some() {
        datapath.steer_to(tcp_listener.as_ref(), udp_socket.as_ref())?;
    }
    let tcp_task = match tcp_listener {
        Some(listener) => {
            let listener =
                TcpListener::from_std(listener).context("registering the TCP listener")?;
            let state = Arc::clone(&paths.tcp);
            let task = tcp::serve(listener, state, paths_stopped.clone(), TCP_DRAIN);
            Some(tokio::spawn(task))
        }
        None => None,
    };
    let udp_task = udp_socket.map(|socket| {
        let state = Arc::clone(&paths.udp);
        tokio::spawn(udp::serve(socket, state, paths_stopped.clone()))
    });
    let api_task = api.map(|(settings, token, listener)| {
        let pin = stats_pin.clone();
        let app_count = config.apps.len() as u32;
        let counters: api::CounterSource = Arc::new(move || {
            let map = stats::open_pinned(&pin)?;
            stats::read(&map, app_count)
        });
        let state = api::ApiState::new(Arc::new(config.clone()), &token, &settings.zone, counters);
        let mut stopped = paths_stopped.clone();
        let stop = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        info!(listen = %settings.listen, zone = %settings.zone, "management API serving");
        tokio::spawn(api::serve(listener, state, stop))
    });
    // Counters pinned last: their presence means ready.
    datapath.pin_stats(&stats_pin)?;
    info!(
        apps = config.apps.len(),
        listeners = contents.listeners.len(),
        rules = config.access_rules.len(),
        counters = %stats_pin.display(),
        "ready"
    );
    let timeouts = config.edge.flow_timeouts;
    // Often enough that a flow goes at most half its timeout late.
    let every = (timeouts.shortest() / 2).clamp(Duration::from_secs(1), FLOW_COLLECT_INTERVAL);
    let mut collect = tokio::time::interval(every);
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some((index, ips)) = resolved.recv() => apply_origins(&mut datapath, &config, &paths, index, &ips),
            _ = flush.tick() => paths.flush_counts(&mut datapath),
            Some(event) = block_events.recv() => {
                event_log.log(&config, &event, Instant::now());
            }
            _ = hangup.recv() => reload_rules(&mut datapath, &mut config, config_path, dns.as_ref()),
            _ = collect.tick() => match conntrack_gc::collect(&mut datapath, &timeouts) {
                Ok(expired) if !expired.is_empty() => {
                    debug!(?expired, "expired flows removed (app index: count)");
                }
                Ok(_) => {}
                Err(err) => warn!("collecting expired flows: {err:#}"),
            },
        }
    }
    if tcp_task.is_some() {
        info!(
            connections = paths.tcp.active(),
            "shutting down: draining the TCP path"
        );
    }
    if let Some(dns) = dns {
        dns.shutdown().await;
    }
    let _ = stop_paths.send(true);
    for task in [tcp_task, udp_task].into_iter().flatten() {
        let _ = task.await;
    }
    if let Some(task) = api_task {
        // Graceful, but bounded: a client holding a connection open does
        // not hold the shutdown.
        let abort = task.abort_handle();
        match tokio::time::timeout(Duration::from_secs(5), task).await {
            Ok(Ok(Err(err))) => warn!("management API: {err}"),
            Ok(_) => {}
            Err(_) => abort.abort(),
        }
    }
    paths.flush_counts(&mut datapath);
    info!("shutting down: detaching XDP and removing pinned counters");
    drop(datapath);
    info!("stopped");
    Ok(())
}

/// SIGHUP: reads the config file again and puts its access rules (and
/// GeoIP databases) and its `dns_server` answers (zones, nameserver, ttl,
/// for the running apps) in force. A config that fails to load or expand
/// keeps what is in force. Other changes need a restart for now.
fn reload_rules(
    datapath: &mut Datapath,
    config: &mut Config,
    path: &Path,
    dns: Option<&DnsServer>,
) {
    info!(config = %path.display(), "SIGHUP: reloading access rules");
    let loaded = match config::load(path) {
        Ok(loaded) => loaded,
        Err(err) => {
            warn!(config = %path.display(), "reload refused, the rules in force stay:\n{err}");
            return;
        }
    };
    for warning in &loaded.warnings {
        warn!("{}: {warning}", path.display());
    }
    let new = loaded.config;
    if new.apps != config.apps {
        warn!(
            "apps changed in the file: only access rules are applied live; restart to apply app changes"
        );
    }
    let mut next = config.clone();
    next.access_rules = new.access_rules;
    next.edge.geoip = new.edge.geoip;
    let applied = access::build(&next).and_then(|set| access::apply(datapath, &next, &set));
    match applied {
        Ok(()) => *config = next,
        Err(err) => return warn!("reload refused, the rules in force stay: {err:#}"),
    }
    if new.dns_server == config.dns_server {
        return;
    }
    match (dns, &new.dns_server) {
        (Some(server), Some(_)) => {
            let mut next = config.clone();
            next.dns_server = new.dns_server;
            match server.update(&next) {
                Ok(()) => {
                    info!("dns_server answers reloaded");
                    *config = next;
                }
                Err(err) => warn!("dns_server reload refused, the answers in force stay: {err:#}"),
            }
        }
        _ => warn!("dns_server added or removed in the file: restart to apply"),
    }
}

/// How long live TCP-path connections may take to end at shutdown.
const TCP_DRAIN: Duration = Duration::from_secs(10);

/// The agent's TCP and UDP paths.
struct AgentPaths {
    tcp: Arc<TcpProxyState>,
    udp: Arc<UdpProxyState>,
}

impl AgentPaths {
    /// Their counts into the kernel counters `stats` reads.
    fn flush_counts(&self, datapath: &mut Datapath) {
        let mut rows = self.tcp.take_counts();
        rows.extend(self.udp.take_counts());
        if let Err(err) = stats::add(datapath, rows) {
            warn!("writing agent-path counters: {err:#}");
        }
    }
}

/// Puts an `origin_dns` app's current addresses in the maps (and in the
/// TCP path's table).
fn apply_origins(
    datapath: &mut Datapath,
    config: &Config,
    paths: &AgentPaths,
    index: usize,
    ips: &[IpAddr],
) {
    paths.tcp.set_origins(index as u32, ips);
    paths.udp.set_origins(index as u32, ips);
    let app = &config.apps[index];
    let applied = maps::app_origins(index as u32, app, ips)
        .map_err(anyhow::Error::from)
        .and_then(|origins| datapath.set_app_origins(index as u32, &origins));
    match applied {
        Ok(()) => info!(app = %app.dns.name, origins = ?ips, "origin addresses in place"),
        Err(err) => warn!(app = %app.dns.name, "origin update failed: {err:#}"),
    }
}

/// Strict reverse-path filtering drops the packets the fast path hands to
/// the kernel while a neighbour is resolved (their source is an edge
/// address): say so, since the first packet of such flows is then lost.
fn warn_on_strict_rp_filter(interfaces: &[String]) {
    let read = |name: &str| {
        std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{name}/rp_filter"))
            .ok()
            .and_then(|v| v.trim().parse::<u8>().ok())
            .unwrap_or(0)
    };
    let all = read("all");
    for interface in interfaces {
        if all.max(read(interface)) == 1 {
            warn!(
                interface,
                "rp_filter is strict (1): first packets toward unresolved neighbours will be \
                 dropped; use loose (2) or off (0) on this interface and in conf/all"
            );
        }
    }
}

/// Answers from the origin name resolvers: (app index, addresses).
type Resolved = mpsc::Receiver<(usize, Vec<IpAddr>)>;

/// After a failed lookup, the next try (the addresses in use stay).
const RESOLVE_RETRY: Duration = Duration::from_secs(10);

/// Starts one task per `origin_dns` app that resolves its name now and
/// again when the answer expires (see [`refresh_after`]; every 10 s after
/// a failure, keeping the addresses it had), and sends each new answer. The first answers (10 s at most) are
/// returned, so the maps hold them before the agent says ready.
async fn spawn_origin_resolvers(
    config: &Config,
) -> anyhow::Result<(Resolved, BTreeMap<usize, Vec<IpAddr>>)> {
    let (tx, mut rx) = mpsc::channel(64);
    let mut initial = BTreeMap::new();
    let dns_apps: Vec<(usize, OriginDns, String)> = config
        .apps
        .iter()
        .enumerate()
        .filter_map(|(i, app)| match &app.origin {
            Origin::Dns(dns) => Some((i, dns.clone(), app.dns.name.clone())),
            Origin::Direct(_) => None,
        })
        .collect();
    if dns_apps.is_empty() {
        return Ok((rx, initial));
    }
    let resolver = Arc::new(OriginResolver::new(config.edge.resolver)?);
    let mut first = Vec::new();
    for (index, origin, app_name) in dns_apps {
        let resolver = Arc::clone(&resolver);
        let tx = tx.clone();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        first.push(ready_rx);
        tokio::spawn(async move {
            let mut ready = Some(ready_tx);
            let mut current: Vec<IpAddr> = Vec::new();
            loop {
                let wait = match resolver.resolve(&origin).await {
                    Ok(answer) => {
                        let wait = refresh_after(answer.ttl, origin.ttl);
                        if answer.ips != current {
                            if !current.is_empty() {
                                info!(app = %app_name, origin = %origin.name, from = ?current, to = ?answer.ips, "origin addresses changed");
                            }
                            current = answer.ips.clone();
                            if tx.send((index, answer.ips)).await.is_err() {
                                return;
                            }
                        }
                        debug!(app = %app_name, origin = %origin.name, ttl = ?answer.ttl, next = ?wait, "origin resolved");
                        wait
                    }
                    Err(err) => {
                        warn!(app = %app_name, origin = %origin.name, "{err:#}; keeping {} addresses, retrying in {RESOLVE_RETRY:?}", current.len());
                        RESOLVE_RETRY
                    }
                };
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
                tokio::time::sleep(wait).await;
            }
        });
    }
    let all_first = async {
        for wait in first {
            let _ = wait.await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), all_first).await;
    while let Ok((index, ips)) = rx.try_recv() {
        initial.insert(index, ips);
    }
    Ok((rx, initial))
}

/// How often idle flows are looked for, at most.
const FLOW_COLLECT_INTERVAL: Duration = Duration::from_secs(5);

/// Forwards the XDP program's aya-log records to our log.
fn spawn_kernel_log_reader(datapath: &mut Datapath) {
    let logger = match aya_log::EbpfLogger::init(datapath.ebpf_mut()) {
        Ok(logger) => logger,
        Err(err) => {
            warn!(%err, "kernel log records will not be shown");
            return;
        }
    };
    if let Err(err) = ring::spawn_drain(logger, "kernel log", |logger| logger.flush()) {
        warn!(%err, "kernel log records will not be shown");
    }
}

/// Resolves on the first SIGTERM or SIGINT; the handlers are installed
/// when this is called, not when it is first polled.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    })
}
