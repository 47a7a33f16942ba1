//! `run` once the checks passed: start everything, then keep it in step
//! with the world (origin names, idle flows, counters) and with the config
//! (SIGHUP and the management API), until SIGINT/SIGTERM.
//!
//! A config change goes through one path, [`Runtime::change_to`]: the new
//! config is validated as a whole, its app slots are planned
//! ([`live::assign_slots`]), everything that can fail is built first (TLS
//! configs, rule prefixes, map contents, DNS zones), then the file is
//! written (API changes), then the kernel and the agent's paths switch, in
//! an order that never shows a listener whose app is not in place.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    path::PathBuf,
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
        edit::Document,
        model::{Config, Origin, OriginDns},
    },
    datapath::{conntrack_gc, loader::Datapath, maps, ring, stats},
    dns::{self, DnsServer},
    live::{self, ChangeError, ChangeRequest},
    origin::{OriginResolver, fill_origin_sources, refresh_after},
    preflight,
    tcp::{self, TcpProxyState},
    udp::{self, UdpProxyState},
};
use tokio::{
    net::TcpListener,
    signal::unix::{SignalKind, signal},
    sync::{mpsc, oneshot, watch},
    task::AbortHandle,
};
use tracing::{debug, error, info, warn};

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
/// After a failed lookup, the next try (the addresses in use stay).
const RESOLVE_RETRY: Duration = Duration::from_secs(10);
/// How long the first answers for origin names are waited for: at start,
/// and for an app a live change adds.
const FIRST_RESOLVE_WAIT: Duration = Duration::from_secs(10);
const CHANGE_RESOLVE_WAIT: Duration = Duration::from_secs(5);
/// API changes queued for the main loop before the API answers "busy".
const CHANGE_QUEUE: usize = 16;

pub async fn serve(mut config: Config, mode: XdpMode, paths: RunPaths) -> anyhow::Result<()> {
    // Signals first: a SIGTERM that arrives while starting still ends in a
    // clean exit (XDP detached, pin removed).
    let mut shutdown = Box::pin(shutdown_signal()?);
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let rules = access::build(&config)?;
    let agent = AgentPaths {
        tcp: Arc::new(TcpProxyState::new(&config)?),
        udp: Arc::new(UdpProxyState::new(&config)?),
    };
    let (resolved_tx, mut resolved_rx) = mpsc::channel(64);
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
    let mut datapath = Datapath::load()?;
    spawn_kernel_log_reader(&mut datapath);
    let mut block_events = access::spawn_event_reader(datapath.take_block_events()?)?;
    let mut event_log = EventLog::default();
    // Rules before listeners: no packet reaches an app unchecked.
    access::apply(&mut datapath, &config, &rules)?;
    drop(rules);
    datapath.sync(&contents)?;
    for (slot, ips) in &initial {
        agent.tcp.set_origins(*slot, ips);
        agent.udp.set_origins(*slot, ips);
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
            let listener = TcpListener::bind(settings.listen)
                .await
                .with_context(|| format!("api.listen {}: cannot bind", settings.listen))?;
            Some((settings.clone(), token, listener))
        }
        None => None,
    };
    warn_on_strict_rp_filter(&config.edge.interfaces);
    // The edge interfaces, which steering admits traffic from, whether or
    // not XDP attaches.
    datapath.add_redirect_targets(&config.edge.interfaces)?;
    if config.needs_xdp() {
        datapath.attach(&config.edge.interfaces, mode)?;
    } else {
        info!("no app needs XDP (no fast path there, no ip_firewall): not attached");
    }
    if config.needs_tc() {
        datapath.attach_tc(&config.edge.interfaces)?;
    }
    // Steering after XDP: every packet that reaches the agent's sockets has
    // passed the access rules. Both sockets always exist, so an app added
    // live on either path is served at once.
    let (stop_paths, paths_stopped) = watch::channel(false);
    let tcp_listener = tcp::listener()?;
    let udp_socket = udp::socket()?;
    datapath.steer_to(Some(&tcp_listener), Some(&udp_socket))?;
    let tcp_listener =
        TcpListener::from_std(tcp_listener).context("registering the TCP listener")?;
    let tcp_task = tokio::spawn(tcp::serve(
        tcp_listener,
        Arc::clone(&agent.tcp),
        paths_stopped.clone(),
        TCP_DRAIN,
    ));
    let udp_task = tokio::spawn(udp::serve(
        udp_socket,
        Arc::clone(&agent.udp),
        paths_stopped.clone(),
    ));
    let (published, config_rx) = watch::channel(Arc::new(config.clone()));
    let (change_tx, mut change_rx) = mpsc::channel::<ChangeRequest>(CHANGE_QUEUE);
    let api_task = api.map(|(settings, token, listener)| {
        let pin = paths.stats_pin.clone();
        let counters: api::CounterSource = Arc::new(move |slots| {
            let map = stats::open_pinned(&pin)?;
            stats::read(&map, slots)
        });
        let state = api::ApiState::new(config_rx, &token, &settings.zone, counters)
            .with_changes(change_tx)
            .with_dns_answers(dns.as_ref().map(DnsServer::answers));
        let mut stopped = paths_stopped.clone();
        let stop = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        info!(listen = %settings.listen, zone = %settings.zone, "management API serving");
        tokio::spawn(api::serve(listener, state, stop))
    });
    // Counters pinned last: their presence means ready.
    datapath.pin_stats(&paths.stats_pin)?;
    info!(
        apps = config.apps.len(),
        listeners = contents.listeners.len(),
        rules = config.access_rules.len(),
        counters = %paths.stats_pin.display(),
        "ready"
    );
    let timeouts = config.edge.flow_timeouts;
    // Often enough that a flow goes at most half its timeout late.
    let every = (timeouts.shortest() / 2).clamp(Duration::from_secs(1), FLOW_COLLECT_INTERVAL);
    let mut collect = tokio::time::interval(every);
    let mut flush = tokio::time::interval(Duration::from_secs(1));
    let mut runtime = Runtime {
        datapath,
        xdp_mode: mode,
        config,
        resolved: initial,
        agent,
        dns,
        resolvers,
        published,
        paths,
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            Some((slot, ips)) = resolved_rx.recv() => runtime.origins_resolved(slot, ips),
            _ = flush.tick() => runtime.agent.flush_counts(&mut runtime.datapath),
            Some(event) = block_events.recv() => {
                event_log.log(&runtime.config, &event, Instant::now());
            }
            _ = hangup.recv() => runtime.reload().await,
            Some(request) = change_rx.recv() => runtime.edit(request).await,
            _ = collect.tick() => match conntrack_gc::collect(&mut runtime.datapath, &timeouts) {
                Ok(expired) if !expired.is_empty() => {
                    debug!(?expired, "expired flows removed (app slot: count)");
                }
                Ok(_) => {}
                Err(err) => warn!("collecting expired flows: {err:#}"),
            },
        }
    }
    let Runtime {
        datapath: mut kernel,
        agent,
        dns,
        ..
    } = runtime;
    info!(
        connections = agent.tcp.active(),
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
    agent.flush_counts(&mut kernel);
    info!("shutting down: detaching XDP and removing pinned counters");
    drop(kernel);
    info!("stopped");
    Ok(())
}

/// What the main loop owns while serving.
struct Runtime {
    datapath: Datapath,
    /// The mode XDP attaches in (at start, or by a change that needs it).
    xdp_mode: XdpMode,
    /// The config in force (slots assigned, origin sources filled).
    config: Config,
    /// Current addresses of `origin_dns` apps, by slot.
    resolved: BTreeMap<u32, Vec<IpAddr>>,
    agent: AgentPaths,
    dns: Option<DnsServer>,
    resolvers: Resolvers,
    /// The config in force, for the API.
    published: watch::Sender<Arc<Config>>,
    paths: RunPaths,
}

/// Everything a change built before anything is switched.
struct Prepared {
    next: Config,
    plan: live::Plan,
    resolved: BTreeMap<u32, Vec<IpAddr>>,
    rules: Option<proxy_agent::datapath::rules::RuleSet>,
    tcp: proxy_agent::routes::Table<tcp::Route>,
    udp: proxy_agent::routes::Table<udp::Route>,
    contents: maps::MapContents,
    /// The DNS server's zones for the new apps, when it runs.
    zones: Option<dns::ZoneSet>,
}

impl Runtime {
    /// SIGHUP: the file on disk, validated and put in force (apps, access
    /// rules, dns_server answers); a file that fails keeps what runs.
    async fn reload(&mut self) {
        let path = self.paths.config.clone();
        info!(config = %path.display(), "SIGHUP: reloading the config");
        let loaded = match config::load(&path) {
            Ok(loaded) => loaded,
            Err(err) => {
                return warn!(config = %path.display(), "reload refused, the config in force stays:\n{err}");
            }
        };
        for warning in &loaded.warnings {
            warn!("{}: {warning}", path.display());
        }
        if let Err(err) = self.change_to(loaded.config, None).await {
            warn!("reload refused, the config in force stays: {err}");
        }
    }

    /// An API change: the file on disk edited, validated, written back and
    /// put in force; the outcome goes to the request's reply.
    async fn edit(&mut self, request: ChangeRequest) {
        let ChangeRequest { edit, reply } = request;
        let outcome = self.edited(edit).await;
        if let Err(err) = &outcome {
            debug!("API change refused: {err}");
        }
        let _ = reply.send(outcome.map(|id| (Arc::new(self.config.clone()), id)));
    }

    async fn edited(&mut self, edit: live::Edit) -> Result<String, ChangeError> {
        let path = self.paths.config.clone();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ChangeError::Apply(format!("reading {}: {e}", path.display())))?;
        let on_disk = config::load_as(&path, &text).map_err(|err| {
            ChangeError::Apply(format!(
                "the config file {} does not validate as it is; fix it first:\n{err}",
                path.display()
            ))
        })?;
        let toml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        let mut doc = Document::parse(&text, toml).map_err(ChangeError::Apply)?;
        doc.pin_ids(&on_disk.config);
        let id = edit(&mut doc).map_err(ChangeError::Edit)?;
        let new_text = doc
            .render()
            .map_err(|e| ChangeError::Apply(format!("rendering the config: {e:#}")))?;
        let loaded = config::load_as(&path, &new_text)?;
        self.change_to(loaded.config, Some(&doc)).await?;
        Ok(id)
    }

    /// Puts `next` in force (see the module's doc); with `write`, the
    /// document is written to the config file once everything is built.
    async fn change_to(
        &mut self,
        next: Config,
        write: Option<&Document>,
    ) -> Result<(), ChangeError> {
        let started = Instant::now();
        let prepared = self.prepare(next).await?;
        if let Some(doc) = write {
            doc.write_atomic(&self.paths.config).map_err(|e| {
                ChangeError::Apply(format!(
                    "writing {}: {e:#}; nothing was changed",
                    self.paths.config.display()
                ))
            })?;
        }
        let plan = prepared.plan.clone();
        self.switch(prepared).map_err(|err| {
            error!("applying a validated change failed part way: {err:#}");
            ChangeError::Apply(format!("{err:#}"))
        })?;
        info!(
            kept = plan.kept.len(),
            new = plan.fresh.len(),
            removed = plan.removed.len(),
            replaced = plan.retired.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "config change in force"
        );
        Ok(())
    }

    /// Builds everything `next` needs without changing anything.
    async fn prepare(&mut self, mut next: Config) -> Result<Prepared, ChangeError> {
        for part in live::restart_only_changes(&self.config, &next) {
            warn!("{part} changed in the file: restart to apply it; the running {part} stays");
        }
        // GeoIP databases reload with the rules; the rest of `edge` waits
        // for a restart.
        let geoip = next.edge.geoip.clone();
        next.edge = self.config.edge.clone();
        next.edge.geoip = geoip;
        next.api = self.config.api.clone();
        if next.dns_server.is_some() != self.config.dns_server.is_some() {
            next.dns_server = self.config.dns_server.clone();
        }
        let datapath = &mut self.datapath;
        let plan = live::assign_slots(&self.config, &mut next, || slots_with_flows(datapath))
            .map_err(ChangeError::Refused)?;
        let apply = |e: anyhow::Error| ChangeError::Apply(format!("{e:#}"));
        // What the new config asks for cannot be had (a certificate that
        // does not load, a GeoIP database missing, the maps full): the
        // asker's to fix.
        let refused = |e: anyhow::Error| ChangeError::Refused(format!("{e:#}"));
        // Origin names of new apps resolved first, so their maps are whole.
        let fresh: BTreeSet<u32> = plan.fresh.iter().copied().collect();
        let mut resolved: BTreeMap<u32, Vec<IpAddr>> = self
            .resolved
            .iter()
            .filter(|(slot, _)| plan.kept.contains(slot))
            .map(|(slot, ips)| (*slot, ips.clone()))
            .collect();
        resolved.extend(
            self.resolvers
                .start(&next, &fresh, CHANGE_RESOLVE_WAIT)
                .await
                .map_err(apply)?,
        );
        let rules = if next.access_rules != self.config.access_rules
            || next.edge.geoip != self.config.edge.geoip
        {
            Some(access::build(&next).map_err(refused)?)
        } else {
            None
        };
        let tcp = self.agent.tcp.prepare(&next).map_err(refused)?;
        let udp = self.agent.udp.prepare(&next).map_err(refused)?;
        let contents = maps::map_contents_resolved(&next, &resolved)
            .map_err(|e| ChangeError::Refused(e.to_string()))?;
        let zones = match &next.dns_server {
            Some(_) => Some(dns::zone_records(&next).map_err(refused)?),
            None => None,
        };
        Ok(Prepared {
            next,
            plan,
            resolved,
            rules,
            tcp,
            udp,
            contents,
            zones,
        })
    }

    /// Switches to a prepared change: fresh slots cleared, rules, the
    /// agent's routes (before the kernel sends it a new app's connections),
    /// the maps (new apps whole before their listeners, gone listeners
    /// before their apps), deleted apps' flows cut, DNS answers, leases.
    fn switch(&mut self, prepared: Prepared) -> anyhow::Result<()> {
        let Prepared {
            next,
            plan,
            resolved,
            rules,
            tcp,
            udp,
            contents,
            zones,
        } = prepared;
        for slot in &plan.fresh {
            stats::clear_slot(&mut self.datapath, *slot)?;
        }
        if let Some(rules) = rules {
            access::apply(&mut self.datapath, &next, &rules)?;
        }
        // An app that turns ip_firewall on: its old version's flows of
        // clients the rules block go now, not when they end.
        let firewalled: BTreeSet<u32> = self
            .config
            .apps
            .iter()
            .filter(|old| !old.ip_firewall && plan.retired.contains(&old.slot))
            .filter(|old| next.apps.iter().any(|a| a.id == old.id && a.ip_firewall))
            .map(|old| old.slot)
            .collect();
        access::cut_blocked_flows(&mut self.datapath, &firewalled);
        self.agent.tcp.install(tcp);
        self.agent.udp.install(udp);
        for slot in &plan.fresh {
            if let Some(ips) = resolved.get(slot) {
                self.agent.tcp.set_origins(*slot, ips);
                self.agent.udp.set_origins(*slot, ips);
                log_origins(&next, *slot, ips);
            }
        }
        // Hooks an app of the change needs, before its maps are written.
        if next.needs_xdp() {
            self.datapath.attach(&next.edge.interfaces, self.xdp_mode)?;
        }
        if next.needs_tc() {
            self.datapath.attach_tc(&next.edge.interfaces)?;
        }
        self.datapath.sync(&contents)?;
        if !plan.removed.is_empty() {
            let removed: BTreeSet<u32> = plan.removed.iter().copied().collect();
            let cut =
                conntrack_gc::cut_flows(&mut self.datapath, |_, _, slot| removed.contains(&slot))?;
            if !cut.is_empty() {
                info!(?cut, "flows of deleted apps cut (app slot: flows)");
            }
        }
        if let (Some(dns), Some(settings), Some(zones)) = (&self.dns, &next.dns_server, &zones)
            && let Err(err) = dns.install(settings, zones)
        {
            warn!("dns_server answers not updated: {err:#}");
        }
        for slot in plan.removed.iter().chain(&plan.retired) {
            self.resolvers.stop(*slot);
        }
        if let Some(path) = &next.edge.lease_file
            && (next.apps.iter().any(|a| a.edge_ips_dynamic) || path.exists())
            && let Err(err) = config::leases::write(path, &next)
        {
            warn!(path = %path.display(), "writing edge address leases: {err}");
        }
        preflight::write_running_apps(&self.paths.instance, &next);
        self.config = next;
        self.resolved = resolved;
        self.published.send_replace(Arc::new(self.config.clone()));
        Ok(())
    }

    /// New addresses for the `origin_dns` app in `slot` (ignored when that
    /// version of the app is gone).
    fn origins_resolved(&mut self, slot: u32, ips: Vec<IpAddr>) {
        let Some(app) = self.config.app_in_slot(slot) else {
            return;
        };
        self.agent.tcp.set_origins(slot, &ips);
        self.agent.udp.set_origins(slot, &ips);
        let applied = maps::app_origins(slot, app, &ips)
            .map_err(anyhow::Error::from)
            .and_then(|origins| self.datapath.set_app_origins(slot, &origins));
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
fn slots_with_flows(datapath: &mut Datapath) -> BTreeSet<u32> {
    match datapath.flows() {
        Ok(flows) => flows
            .iter()
            .filter_map(Result::ok)
            .map(|(_, value)| value.app)
            .collect(),
        Err(err) => {
            warn!("reading the flow table: {err:#}");
            BTreeSet::new()
        }
    }
}

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

/// One task per `origin_dns` app version (by slot) that resolves its name
/// now and again when the answer expires (see [`refresh_after`]; every
/// 10 s after a failure, keeping the addresses it had), and sends each new
/// answer to the main loop.
struct Resolvers {
    tx: mpsc::Sender<(u32, Vec<IpAddr>)>,
    resolver: Option<Arc<OriginResolver>>,
    tasks: HashMap<u32, AbortHandle>,
}

impl Resolvers {
    fn new(tx: mpsc::Sender<(u32, Vec<IpAddr>)>) -> Self {
        Self {
            tx,
            resolver: None,
            tasks: HashMap::new(),
        }
    }

    /// Starts the resolvers of `config`'s `origin_dns` apps in `slots` and
    /// returns their first answers (waiting `wait` at most).
    async fn start(
        &mut self,
        config: &Config,
        slots: &BTreeSet<u32>,
        wait: Duration,
    ) -> anyhow::Result<BTreeMap<u32, Vec<IpAddr>>> {
        let apps: Vec<(u32, OriginDns, String)> = config
            .apps
            .iter()
            .filter(|app| slots.contains(&app.slot))
            .filter_map(|app| match &app.origin {
                Origin::Dns(dns) => Some((app.slot, dns.clone(), app.dns.name.clone())),
                Origin::Direct(_) => None,
            })
            .collect();
        let mut first = Vec::new();
        for (slot, origin, name) in apps {
            let resolver = match &self.resolver {
                Some(resolver) => Arc::clone(resolver),
                None => {
                    let resolver = Arc::new(OriginResolver::new(config.edge.resolver)?);
                    self.resolver = Some(Arc::clone(&resolver));
                    resolver
                }
            };
            let (ready_tx, ready_rx) = oneshot::channel();
            let task = tokio::spawn(resolve_forever(
                resolver,
                slot,
                origin,
                name,
                self.tx.clone(),
                ready_tx,
            ));
            if let Some(old) = self.tasks.insert(slot, task.abort_handle()) {
                old.abort();
            }
            first.push((slot, ready_rx));
        }
        let mut answers = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + wait;
        for (slot, ready) in first {
            if let Ok(Ok(ips)) = tokio::time::timeout_at(deadline, ready).await
                && !ips.is_empty()
            {
                answers.insert(slot, ips);
            }
        }
        Ok(answers)
    }

    fn stop(&mut self, slot: u32) {
        if let Some(task) = self.tasks.remove(&slot) {
            task.abort();
        }
    }
}

async fn resolve_forever(
    resolver: Arc<OriginResolver>,
    slot: u32,
    origin: OriginDns,
    app_name: String,
    tx: mpsc::Sender<(u32, Vec<IpAddr>)>,
    ready: oneshot::Sender<Vec<IpAddr>>,
) {
    let mut ready = Some(ready);
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
                    // The first answer goes to whoever waits for it; later
                    // ones to the main loop.
                    if ready.is_none() && tx.send((slot, answer.ips)).await.is_err() {
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
            // Nobody waits any more (the wait timed out): the main loop
            // takes the answer instead.
            if let Err(ips) = ready.send(current.clone())
                && !ips.is_empty()
                && tx.send((slot, ips)).await.is_err()
            {
                return;
            }
        }
        tokio::time::sleep(wait).await;
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
