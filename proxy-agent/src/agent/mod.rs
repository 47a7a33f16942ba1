//! The agent once the checks passed: start everything, then keep it in
//! step with the world (origin names, idle flows, counters) and with the
//! config (reload requests and the management API), until `shutdown`
//! resolves. The caller turns signals into `shutdown` and reloads
//! (`main.rs`); nothing here installs a signal handler.
//!
//! A config change goes through one path (`change`): the new config is
//! validated as a whole, its app slots are planned
//! ([`plan::assign_slots`]), everything that can fail is built first (TLS
//! configs, rule prefixes, map contents, DNS zones), then the steps of
//! [`plan::plan`] run in order; the file is written (API changes) once
//! every step that switches something ran, and a step that fails is
//! rolled back with those before it.
use std::{
    collections::{BTreeMap, BTreeSet},
    future::Future,
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::programs::XdpMode;
use proxy_common::BlockEvent;
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::{debug, info, warn};

use crate::{
    access::{self, EventLog},
    api,
    config::model::Config,
    dns::{self, DnsServer},
    kernel::{conntrack_gc, loader::Kernel, maps, nat_use, ring, stats, sysctl},
    proxy::{
        origin::fill_origin_sources,
        tcp::{self, TcpProxyState},
        udp::{self, UdpProxyState},
    },
};

mod change;
pub mod plan;
mod resolvers;
mod start;

use plan::ChangeRequest;
use resolvers::Resolvers;
pub use start::{Locks, Start, check, load_config};

/// A request to read the config file again and put it in force; `cause`
/// opens its log line (`SIGHUP`).
#[derive(Debug, Clone, Copy)]
pub struct Reload {
    pub cause: &'static str,
}

/// Where `run` keeps what it needs besides the config.
pub struct RunPaths {
    pub config: PathBuf,
    pub stats_pin: PathBuf,
    pub instance: String,
}

/// How long live TCP-path connections may take to end at shutdown.
const TCP_DRAIN: Duration = Duration::from_secs(10);
/// How often idle flows are looked for, at most.
const FLOW_COLLECT_INTERVAL: Duration = Duration::from_secs(5);
/// How long the first answers for origin names are waited for: at start,
/// and for an app a live change adds.
const FIRST_RESOLVE_WAIT: Duration = Duration::from_secs(10);
const CHANGE_RESOLVE_WAIT: Duration = Duration::from_secs(5);
/// API changes queued for the main loop before the API answers "busy".
const CHANGE_QUEUE: usize = 16;

/// What the main loop owns while serving.
pub struct Agent {
    kernel: Kernel,
    /// The mode XDP attaches in (at start, or by a change that needs it).
    xdp_mode: XdpMode,
    /// The config in force (slots assigned, origin sources filled).
    config: Config,
    /// Current addresses of `origin_dns` apps, by slot.
    resolved: BTreeMap<u32, Vec<IpAddr>>,
    proxies: Proxies,
    dns: Option<DnsServer>,
    resolvers: Resolvers,
    /// The config in force, for the API.
    published: watch::Sender<Arc<Config>>,
    /// How full the flow tables are, for `/metrics`.
    flow_entries: watch::Sender<conntrack_gc::FlowView>,
    /// Warnings for NAT tuples near their capacity, rate-limited.
    nat_warnings: nat_use::NatWarnings,
    paths: RunPaths,
    /// `tcp_syncookies` as it was, when the agent had to turn it on: put
    /// back when the agent (stopping) drops it.
    _syncookies: Option<sysctl::Restore>,
}

impl Agent {
    /// Starts everything `start` asks for, serves until `shutdown`
    /// resolves, then drains and detaches. Create `shutdown` before the
    /// call (a signal's handler installed, say) so that one arriving while
    /// starting still ends in a clean exit (XDP detached, pin removed):
    /// it is first polled once the agent is ready.
    pub async fn run(
        start: Start,
        shutdown: impl Future<Output = ()>,
        reloads: mpsc::Receiver<Reload>,
    ) -> anyhow::Result<()> {
        let (mut agent, inputs, tasks) = Self::start(start).await?;
        agent.serve(inputs, shutdown, reloads).await;
        agent.stop(tasks).await;
        Ok(())
    }

    /// Everything started, in an order that never serves an app before its
    /// rules, maps and hooks are in place; ready once the counters are
    /// pinned.
    async fn start(start: Start) -> anyhow::Result<(Self, Inputs, Tasks)> {
        let Start {
            mut config,
            mode,
            paths,
        } = start;
        let rules = access::build(&config)?;
        let proxies = Proxies {
            tcp: Arc::new(TcpProxyState::new(&config)?),
            udp: Arc::new(UdpProxyState::new(&config)?),
        };
        let (resolved_tx, resolved_rx) = mpsc::channel(64);
        let mut resolvers = Resolvers::new(resolved_tx);
        let initial = resolvers
            .start(
                &config,
                &config.apps.iter().map(|a| a.slot).collect(),
                FIRST_RESOLVE_WAIT,
            )
            .await?;
        fill_origin_sources(&mut config, &initial)?;
        let contents = maps::map_contents_resolved(&config, &initial)?;
        let mut kernel = Kernel::load()?;
        spawn_kernel_log_reader(&mut kernel);
        let block_events = access::spawn_event_reader(kernel.take_block_events()?)?;
        let event_log = EventLog::default();
        // Rules before listeners: no packet reaches an app unchecked.
        access::apply(&mut kernel, &config, &rules)?;
        drop(rules);
        kernel.sync(&contents)?;
        for (slot, ips) in &initial {
            proxies.tcp.set_origins(*slot, ips);
            proxies.udp.set_origins(*slot, ips);
            log_origins(&config, *slot, ips);
        }
        // The DNS server binds before XDP attaches, so a listen address that
        // cannot be bound stops the start before anything is served.
        let dns = match &config.dns_server {
            Some(settings) => {
                let zones = dns::zone_records(&config)?;
                Some(DnsServer::start(settings, &config.edge.address_pool, &zones).await?)
            }
            None => None,
        };
        // The API's token and socket too: a bad one stops the start here.
        let api = match &config.api {
            Some(settings) => {
                let token = api::read_token(&settings.token_file)?;
                let tls = settings.tls.as_ref().map(api::tls_config).transpose()?;
                let listener = TcpListener::bind(settings.listen)
                    .await
                    .with_context(|| format!("api.listen {}: cannot bind", settings.listen))?;
                Some((settings.clone(), token, tls, listener))
            }
            None => None,
        };
        warn_on_strict_rp_filter(&config.edge.interfaces);
        // The edge interfaces, which steering admits traffic from, whether or
        // not XDP attaches.
        kernel.add_redirect_targets(&config.edge.interfaces)?;
        kernel.allow_rx_vlan_offload(config.edge.allow_rx_vlan_offload);
        if config.needs_xdp() {
            kernel.attach(&config.edge.interfaces, mode)?;
        } else {
            info!("no app needs XDP (no fast path there, no ip_firewall): not attached");
        }
        if config.attaches_tc() {
            kernel.attach_tc(&config.edge.interfaces)?;
        }
        // Steering after XDP: every packet that reaches the agent's sockets has
        // passed the access rules. Both sockets always exist, so an app added
        // live on either path is served at once.
        let (stop_paths, paths_stopped) = watch::channel(false);
        // The listener's backlog is deep (`tcp::listener`); the kernel's
        // SYN cookies take over when even that overflows.
        let syncookies = sysctl::enable_syncookies();
        let tcp_listener = tcp::listener()?;
        let udp_socket = udp::socket()?;
        kernel.steer_to(Some(&tcp_listener), Some(&udp_socket))?;
        let tcp_listener =
            TcpListener::from_std(tcp_listener).context("registering the TCP listener")?;
        let tcp_task = tokio::spawn(tcp::serve(
            tcp_listener,
            Arc::clone(&proxies.tcp),
            paths_stopped.clone(),
            TCP_DRAIN,
        ));
        let udp_task = tokio::spawn(udp::serve(
            udp_socket,
            Arc::clone(&proxies.udp),
            paths_stopped.clone(),
        ));
        let (published, config_rx) = watch::channel(Arc::new(config.clone()));
        let (flow_entries, flow_entries_rx) = watch::channel(conntrack_gc::FlowView::default());
        let (change_tx, change_rx) = mpsc::channel::<ChangeRequest>(CHANGE_QUEUE);
        let api_task = api.map(|(settings, token, tls, listener)| {
            let pin = paths.stats_pin.clone();
            let counters: api::CounterSource = Arc::new(move |slots| {
                let map = stats::open_pinned(&pin)?;
                stats::read(&map, slots)
            });
            let state = api::ApiState::new(config_rx, &token, &settings.zone, counters)
                .with_changes(change_tx)
                .with_dns_answers(dns.as_ref().map(DnsServer::answers))
                .with_flow_entries(flow_entries_rx);
            let mut stopped = paths_stopped.clone();
            let stop = async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            info!(listen = %settings.listen, zone = %settings.zone, scheme, "management API serving");
            tokio::spawn(api::serve(listener, state, tls, stop))
        });
        // Counters pinned last: their presence means ready.
        kernel.pin_stats(&paths.stats_pin)?;
        info!(
            apps = config.apps.len(),
            listeners = contents.listeners.len(),
            rules = config.access_rules.len(),
            counters = %paths.stats_pin.display(),
            "ready"
        );
        let agent = Agent {
            kernel,
            xdp_mode: mode,
            config,
            resolved: initial,
            proxies,
            dns,
            resolvers,
            published,
            flow_entries,
            nat_warnings: nat_use::NatWarnings::default(),
            paths,
            _syncookies: syncookies,
        };
        let inputs = Inputs {
            resolved: resolved_rx,
            block_events,
            event_log,
            changes: change_rx,
        };
        let tasks = Tasks {
            stop_paths,
            tcp: tcp_task,
            udp: udp_task,
            api: api_task,
        };
        Ok((agent, inputs, tasks))
    }

    /// The main loop: origin answers, counters, block events, reloads, API
    /// changes and idle flows, one at a time, until `shutdown` resolves.
    async fn serve(
        &mut self,
        mut inputs: Inputs,
        shutdown: impl Future<Output = ()>,
        mut reloads: mpsc::Receiver<Reload>,
    ) {
        let mut shutdown = std::pin::pin!(shutdown);
        let timeouts = self.config.edge.flow_timeouts;
        // Often enough that a flow goes at most half its timeout late.
        let every = (timeouts.shortest() / 2).clamp(Duration::from_secs(1), FLOW_COLLECT_INTERVAL);
        // The flow collector on its own thread (bounded passes): a flood
        // never holds this loop up. Stopped when `_collector` drops.
        let (expired_tx, mut expired) = mpsc::channel(4);
        let _collector = match self.kernel.flow_tables().and_then(|tables| {
            let recount = conntrack_gc::Recount {
                clients: self.kernel.client_table()?,
                limits: self.kernel.client_limits(),
            };
            Ok(conntrack_gc::spawn(
                tables, recount, timeouts, every, expired_tx,
            )?)
        }) {
            Ok(running) => Some(running),
            Err(err) => {
                warn!("flow collector not started: idle flows stay: {err:#}");
                None
            }
        };
        let mut flush = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some((slot, ips)) = inputs.resolved.recv() => self.origins_resolved(slot, ips),
                _ = flush.tick() => self.proxies.flush_counts(&mut self.kernel),
                Some(event) = inputs.block_events.recv() => {
                    inputs.event_log.log(&self.config, &event, Instant::now());
                }
                Some(reload) = reloads.recv() => self.reload(reload).await,
                Some(request) = inputs.changes.recv() => self.edit(request).await,
                Some(report) = expired.recv() => self.flows_collected(report),
            }
        }
    }

    /// What a pass of the flow collector found (its thread also made the
    /// per-client flow counts true after a complete walk): expired flows
    /// counted, the tables' fill and the NAT use published.
    fn flows_collected(&mut self, report: conntrack_gc::PassReport) {
        let conntrack_gc::PassReport {
            removed,
            occupancy,
            nat,
        } = report;
        if !removed.is_empty() {
            match conntrack_gc::record_expired(&mut self.kernel, &removed) {
                Ok(()) => debug!(
                    expired = ?removed.per_app(),
                    syn_proxy_origin_failed = ?removed.origin_failed(),
                    "expired flows removed (app slot: count)"
                ),
                Err(err) => warn!("counting expired flows: {err:#}"),
            }
        }
        if let Some(nat) = &nat {
            let capacity = self.config.edge.nat_ports.len();
            self.nat_warnings.check(nat, capacity, Instant::now());
        }
        self.flow_entries.send_modify(|view| {
            view.occupancy = occupancy;
            if let Some(nat) = nat {
                view.nat = nat;
            }
        });
    }

    /// Drains the agent's paths, stops the DNS server and the API, writes
    /// the last counts, then detaches (the datapath dropped).
    async fn stop(self, tasks: Tasks) {
        let Tasks {
            stop_paths,
            tcp: tcp_task,
            udp: udp_task,
            api: api_task,
        } = tasks;
        let Agent {
            mut kernel,
            proxies,
            dns,
            ..
        } = self;
        info!(
            connections = proxies.tcp.active(),
            "shutting down: draining the TCP path"
        );
        if let Some(dns) = dns {
            dns.shutdown().await;
        }
        let _ = stop_paths.send(true);
        for task in [tcp_task, udp_task] {
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
        proxies.flush_counts(&mut kernel);
        info!("shutting down: detaching XDP and removing pinned counters");
        drop(kernel);
        info!("stopped");
    }

    /// New addresses for the `origin_dns` app in `slot` (ignored when that
    /// version of the app is gone).
    fn origins_resolved(&mut self, slot: u32, ips: Vec<IpAddr>) {
        let Some(app) = self.config.app_in_slot(slot) else {
            return;
        };
        self.proxies.tcp.set_origins(slot, &ips);
        self.proxies.udp.set_origins(slot, &ips);
        let applied = maps::app_origins(slot, app, &ips)
            .map_err(anyhow::Error::from)
            .and_then(|origins| self.kernel.set_app_origins(slot, &origins));
        match applied {
            Ok(()) => log_origins(&self.config, slot, &ips),
            Err(err) => warn!(app = %app.dns.name, "origin update failed: {err:#}"),
        }
        self.resolved.insert(slot, ips);
    }
}

fn log_origins(config: &Config, slot: u32, ips: &[IpAddr]) {
    if let Some(app) = config.app_in_slot(slot) {
        info!(app = %app.dns.name, origins = ?ips, "origin addresses in place");
    }
}

/// Slots that flows in the kernel still count in (a best effort: a walk
/// that fails finds none, and fresh slots are cleared anyway).
fn slots_with_flows(kernel: &mut Kernel) -> BTreeSet<u32> {
    let mut slots = BTreeSet::new();
    for table in [Kernel::flows, Kernel::new_flows] {
        match table(kernel) {
            Ok(flows) => slots.extend(flows.iter().filter_map(Result::ok).map(|(_, v)| v.app)),
            Err(err) => warn!("reading the flow table: {err:#}"),
        }
    }
    slots
}

/// What the main loop reads besides the caller's shutdown and reloads.
struct Inputs {
    /// New answers for origin names, by slot.
    resolved: mpsc::Receiver<(u32, Vec<IpAddr>)>,
    block_events: mpsc::Receiver<BlockEvent>,
    event_log: EventLog,
    /// The API's changes.
    changes: mpsc::Receiver<ChangeRequest>,
}

/// The tasks beside the main loop, and the switch that stops them.
struct Tasks {
    stop_paths: watch::Sender<bool>,
    tcp: JoinHandle<()>,
    udp: JoinHandle<()>,
    api: Option<JoinHandle<std::io::Result<()>>>,
}

/// The agent's TCP and UDP paths.
struct Proxies {
    tcp: Arc<TcpProxyState>,
    udp: Arc<UdpProxyState>,
}

impl Proxies {
    /// Their counts into the kernel counters `stats` reads.
    fn flush_counts(&self, kernel: &mut Kernel) {
        let mut rows = self.tcp.take_counts();
        rows.extend(self.udp.take_counts());
        if let Err(err) = stats::add(kernel, rows) {
            warn!("writing agent-path counters: {err:#}");
        }
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

/// Forwards the XDP program's aya-log records to our log.
fn spawn_kernel_log_reader(kernel: &mut Kernel) {
    let logger = match aya_log::EbpfLogger::init(kernel.ebpf_mut()) {
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
