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
use proxy_common::{ClientLimitValue, Counter, MAX_APPS, Verdict, rate_admits};

use crate::config::model::{App, Config, Origin, PortRange};
use crate::kernel::maps::{addr16, client_limit_value};

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
    /// Per client prefix bounds (as the kernel has them).
    pub client_limits: ClientLimitValue,
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

    /// Puts `table` in force for new connections and flows; returns the
    /// table it replaced, for a change that is rolled back.
    pub fn install(&self, table: Table<R>) -> Arc<Table<R>> {
        self.reinstate(Arc::new(table))
    }

    /// Puts back a table [`Self::install`] replaced; returns the one it
    /// replaces in turn.
    pub fn reinstate(&self, table: Arc<Table<R>>) -> Arc<Table<R>> {
        match self.table.write() {
            Ok(mut current) => std::mem::replace(&mut *current, table),
            Err(poisoned) => std::mem::replace(&mut *poisoned.into_inner(), table),
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
                        client_limits: client_limit_value(&app.client_limits),
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
    pub client_limited: AtomicU64,
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
                (Verdict::ClientLimited, take(&c.client_limited), 0),
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

/// A warning of one kind is logged at most this often per app.
const LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Says yes at most once per [`LOG_EVERY`], and how many times it said
/// no since.
#[derive(Default)]
pub struct Throttle {
    /// Milliseconds since `EPOCH` of the last yes, plus one (0: never).
    last: AtomicU64,
    skipped: AtomicU64,
}

impl Throttle {
    pub fn allow(&self) -> Option<u64> {
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let now = EPOCH
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64
            + 1;
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= LOG_EVERY.as_millis() as u64;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.skipped.swap(0, Ordering::Relaxed));
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// Client prefixes the agent's paths track at once; past it, a new prefix
/// is let through untracked (the app's own bound still holds) rather than
/// the table growing.
pub const MAX_TRACKED_CLIENTS: usize = 65_536;

/// Per (app slot, client prefix): the agent paths' per-client bounds, the
/// same as the kernel's (`proxy_common::rate_admits`, prefixes cut as in
/// `CLIENTS`). Bounded: idle entries (no connection or flow open, bucket
/// full again) are swept out when the table is full, at most once a second.
#[derive(Default)]
pub struct Clients(std::sync::Mutex<ClientTable>);

#[derive(Default)]
struct ClientTable {
    map: HashMap<(u32, [u8; 16]), ClientState>,
    last_sweep_ns: u64,
}

#[derive(Default, Clone, Copy)]
struct ClientState {
    tat_ns: u64,
    open: u32,
}

/// One open connection or flow of a tracked client: counted out on drop.
pub struct ClientSlot {
    clients: Arc<Clients>,
    key: Option<(u32, [u8; 16])>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let Some(key) = self.key else {
            return;
        };
        if let Ok(mut table) = self.clients.0.lock()
            && let Some(state) = table.map.get_mut(&key)
        {
            state.open = state.open.saturating_sub(1);
        }
    }
}

fn now_ns() -> u64 {
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    // Offset by a day: a fresh bucket (tat 0) is full from the first call.
    EPOCH
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_nanos() as u64
        + 86_400_000_000_000
}

impl Clients {
    /// A slot for a new connection or flow of `client` to app `app`, or
    /// None when the client is over its rate or its concurrent bound.
    pub fn admit(
        self: &Arc<Self>,
        app: u32,
        limits: &ClientLimitValue,
        client: IpAddr,
    ) -> Option<ClientSlot> {
        self.admit_at(app, limits, client, now_ns())
    }

    fn admit_at(
        self: &Arc<Self>,
        app: u32,
        limits: &ClientLimitValue,
        client: IpAddr,
        now: u64,
    ) -> Option<ClientSlot> {
        let untracked = ClientSlot {
            clients: Arc::clone(self),
            key: None,
        };
        if !limits.any() {
            return Some(untracked);
        }
        let client = client.to_canonical();
        let key = (app, limits.prefix_of(&addr16(client), client.is_ipv6()));
        let Ok(mut table) = self.0.lock() else {
            return Some(untracked);
        };
        if !table.map.contains_key(&key) && table.map.len() >= MAX_TRACKED_CLIENTS {
            if now.saturating_sub(table.last_sweep_ns) >= 1_000_000_000 {
                table.last_sweep_ns = now;
                table
                    .map
                    .retain(|_, state| state.open > 0 || state.tat_ns > now);
            }
            if table.map.len() >= MAX_TRACKED_CLIENTS {
                return Some(untracked);
            }
        }
        let state = table.map.entry(key).or_default();
        if limits.max_flows != 0 && state.open >= limits.max_flows {
            return None;
        }
        if !rate_admits(&mut state.tat_ns, now, limits.interval_ns, limits.burst_ns) {
            return None;
        }
        state.open += 1;
        Some(ClientSlot {
            clients: Arc::clone(self),
            key: Some(key),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_bounded_per_prefix_and_app() {
        let clients = Arc::new(Clients::default());
        let limits = ClientLimitValue::new(0, 1, 3, 24, 64);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.200".parse().expect("ip");
        let other: IpAddr = "198.51.100.1".parse().expect("ip");
        let held: Vec<ClientSlot> = (0..3)
            .map(|i| clients.admit(0, &limits, if i % 2 == 0 { a } else { b }))
            .map(|slot| slot.expect("under the bound"))
            .collect();
        // The same /24: the fourth is refused; another prefix or app is not.
        assert!(clients.admit(0, &limits, b).is_none());
        assert!(clients.admit(0, &limits, other).is_some());
        assert!(clients.admit(1, &limits, a).is_some());
        drop(held);
        assert!(clients.admit(0, &limits, a).is_some());
    }

    #[test]
    fn the_rate_refuses_past_the_burst_until_time_passes() {
        let clients = Arc::new(Clients::default());
        let limits = ClientLimitValue::new(1, 3, 0, 32, 64);
        let a: IpAddr = "2001:db8::1".parse().expect("ip");
        let t = 1_000_000_000_000;
        let admitted = (0..10)
            .filter_map(|_| clients.admit_at(0, &limits, a, t))
            .count();
        assert_eq!(admitted, 3);
        assert!(clients.admit_at(0, &limits, a, t + 1_000_000_000).is_some());
        assert!(clients.admit_at(0, &limits, a, t + 1_000_000_000).is_none());
    }
}
