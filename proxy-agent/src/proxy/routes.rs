//! What the agent's TCP and UDP paths share: finding the app from the
//! address and port a client reached, picking the origin at the same offset
//! in the origin's port range, and counting per app until the counts are
//! flushed to the kernel's counters.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use anyhow::Context as _;
use proxy_common::{Counter, MAX_APPS, Verdict};

use crate::config::model::{App, Config, Origin, PortRange};

/// One agent-path app: where clients reach it and where its origins are.
pub struct Target {
    /// The app's slot (its row of counters).
    pub index: u32,
    pub name: String,
    pub edge_ports: PortRange,
    origin: Origin,
    /// Round robin over the app's origins.
    next_origin: AtomicUsize,
    /// Current addresses of an `origin_dns` app.
    resolved: RwLock<Vec<IpAddr>>,
}

impl Target {
    /// The origin for a new connection or flow to edge port `port`: round
    /// robin over the app's origins (any family: the agent bridges IPv4 and
    /// IPv6), at the same offset in the origin's port range.
    pub fn pick_origin(&self, port: u16) -> Option<SocketAddr> {
        let offset = self.edge_ports.offset_of(port)?;
        let turn = self.next_origin.fetch_add(1, Ordering::Relaxed);
        match &self.origin {
            Origin::Direct(origins) => {
                let origin = origins.get(turn % origins.len().max(1))?;
                let port = origin.ports.start.checked_add(offset)?;
                Some(SocketAddr::new(origin.ip, port))
            }
            Origin::Dns(dns) => {
                let ips = self.resolved.read().ok()?;
                let ip = ips.get(turn % ips.len().max(1))?;
                let port = dns.ports.start.checked_add(offset)?;
                Some(SocketAddr::new(*ip, port))
            }
        }
    }
}

/// An app as one path serves it: its target and that path's own data.
/// Connections and flows hold it while they last, so a change of the
/// routes never pulls an app from under them.
pub type Entry<R> = Arc<(Target, R)>;

/// The apps one path serves at one time.
pub struct Table<R> {
    entries: Vec<Entry<R>>,
    /// Edge address -> indexes in `entries` of the apps on it.
    by_addr: HashMap<IpAddr, Vec<usize>>,
}

/// The apps one path serves, each with that path's own data `R`; replaced
/// whole by a live change ([`Routes::prepare`], then [`Routes::install`]).
pub struct Routes<R> {
    table: RwLock<Arc<Table<R>>>,
}

impl<R> Routes<R> {
    /// The apps of `config` that `serves` picks, each with what `make`
    /// builds for it; fails naming the app when `make` fails.
    pub fn build(
        config: &Config,
        serves: fn(&App) -> bool,
        make: impl FnMut(&App) -> anyhow::Result<R>,
    ) -> anyhow::Result<Self> {
        let empty = Table {
            entries: Vec::new(),
            by_addr: HashMap::new(),
        };
        let table = Self::table_for(&empty, config, serves, make)?;
        Ok(Self {
            table: RwLock::new(Arc::new(table)),
        })
    }

    /// The table for `config`, not yet in force: an app whose slot is in
    /// force already keeps its entry (a slot is one version of an app),
    /// with its resolved origins; only new ones are built. Fails, changing
    /// nothing, when `make` fails.
    pub fn prepare(
        &self,
        config: &Config,
        serves: fn(&App) -> bool,
        make: impl FnMut(&App) -> anyhow::Result<R>,
    ) -> anyhow::Result<Table<R>> {
        Self::table_for(&self.current(), config, serves, make)
    }

    /// Puts `table` in force for new connections and flows.
    pub fn install(&self, table: Table<R>) {
        if let Ok(mut current) = self.table.write() {
            *current = Arc::new(table);
        }
    }

    fn current(&self) -> Arc<Table<R>> {
        match self.table.read() {
            Ok(table) => Arc::clone(&table),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn table_for(
        old: &Table<R>,
        config: &Config,
        serves: fn(&App) -> bool,
        mut make: impl FnMut(&App) -> anyhow::Result<R>,
    ) -> anyhow::Result<Table<R>> {
        let mut entries = Vec::new();
        let mut by_addr: HashMap<IpAddr, Vec<usize>> = HashMap::new();
        for (position, app) in config.apps.iter().enumerate() {
            if !serves(app) {
                continue;
            }
            let kept = old.entries.iter().find(|e| e.0.index == app.slot);
            let entry = match kept {
                Some(entry) => Arc::clone(entry),
                None => {
                    let data = make(app)
                        .with_context(|| format!("apps[{position}] ({})", app.dns.name))?;
                    let target = Target {
                        index: app.slot,
                        name: app.dns.name.clone(),
                        edge_ports: app.edge_ports,
                        origin: app.origin.clone(),
                        next_origin: AtomicUsize::new(0),
                        resolved: RwLock::default(),
                    };
                    Arc::new((target, data))
                }
            };
            for addr in &app.edge_addrs {
                by_addr.entry(*addr).or_default().push(entries.len());
            }
            entries.push(entry);
        }
        Ok(Table { entries, by_addr })
    }

    pub fn is_empty(&self) -> bool {
        self.current().entries.is_empty()
    }

    /// The app a client reached at `edge`.
    pub fn route_for(&self, edge: SocketAddr) -> Option<Entry<R>> {
        let table = self.current();
        table
            .by_addr
            .get(&edge.ip())?
            .iter()
            .map(|i| &table.entries[*i])
            .find(|entry| entry.0.edge_ports.contains(edge.port()))
            .cloned()
    }

    /// New addresses of an `origin_dns` app (ignored when this path does
    /// not serve it).
    pub fn set_origins(&self, app: u32, ips: &[IpAddr]) {
        let table = self.current();
        let Some(entry) = table.entries.iter().find(|e| e.0.index == app) else {
            return;
        };
        if let Ok(mut resolved) = entry.0.resolved.write() {
            *resolved = ips.to_vec();
        }
    }
}

/// Per-app counts since the last flush to the kernel counters. For the
/// UDP path a "connection" is a flow.
#[derive(Default)]
pub struct AppCounts {
    pub accepted: AtomicU64,
    pub to_origin_bytes: AtomicU64,
    pub closed: AtomicU64,
    pub to_client_bytes: AtomicU64,
    pub tls_failed: AtomicU64,
    pub origin_failed: AtomicU64,
    pub timeouts: AtomicU64,
    pub limited: AtomicU64,
    pub bad_replies: AtomicU64,
}

/// One [`AppCounts`] per app slot (all of them: apps come and go live).
pub struct Counts(Vec<AppCounts>);

impl Default for Counts {
    fn default() -> Self {
        Self((0..MAX_APPS).map(|_| AppCounts::default()).collect())
    }
}

impl Counts {
    /// The counts of slot `index` (slots are below MAX_APPS; one past it
    /// shares the last row rather than panic).
    pub fn app(&self, index: u32) -> &AppCounts {
        let last = self.0.len().saturating_sub(1);
        &self.0[(index as usize).min(last)]
    }

    /// Counts since the last call, as kernel counter rows.
    pub fn take(&self) -> Vec<(u32, Verdict, Counter)> {
        let mut rows = Vec::new();
        for (app, c) in self.0.iter().enumerate() {
            let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
            for (verdict, packets, bytes) in [
                (
                    Verdict::ConnAccepted,
                    take(&c.accepted),
                    take(&c.to_origin_bytes),
                ),
                (
                    Verdict::ConnClosed,
                    take(&c.closed),
                    take(&c.to_client_bytes),
                ),
                (Verdict::TlsFailed, take(&c.tls_failed), 0),
                (Verdict::OriginFailed, take(&c.origin_failed), 0),
                (Verdict::ConnTimeout, take(&c.timeouts), 0),
                (Verdict::ConnLimited, take(&c.limited), 0),
                (Verdict::BadReply, take(&c.bad_replies), 0),
            ] {
                if packets > 0 || bytes > 0 {
                    rows.push((app as u32, verdict, Counter { packets, bytes }));
                }
            }
        }
        rows
    }
}

/// `::ffff:a.b.c.d` as `a.b.c.d` (what dual-stack sockets report for
/// IPv4 peers).
pub fn unmapped(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}
