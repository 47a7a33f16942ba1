//! What the agent's TCP and UDP paths share: finding the app from the
//! address and port a client reached, picking the origin at the same offset
//! in the origin's port range, and counting per app until the counts are
//! flushed to the kernel's counters.
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        RwLock,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

use anyhow::Context as _;
use proxy_common::{Counter, Verdict};

use crate::config::model::{App, Config, Origin, PortRange};

/// One agent-path app: where clients reach it and where its origins are.
pub struct Target {
    pub index: u32,
    pub name: String,
    pub edge_ports: PortRange,
    origin: Origin,
    /// Round robin over the app's origins.
    next_origin: AtomicUsize,
}

/// The apps one path serves, each with that path's own data `R`.
pub struct Routes<R> {
    entries: Vec<(Target, R)>,
    /// Edge address -> indexes in `entries` of the apps on it.
    by_addr: HashMap<IpAddr, Vec<usize>>,
    /// Current addresses of `origin_dns` apps, by app index.
    resolved: RwLock<HashMap<u32, Vec<IpAddr>>>,
}

impl<R> Routes<R> {
    /// The apps of `config` that `serves` picks, each with what `make`
    /// builds for it; fails naming the app when `make` fails.
    pub fn build(
        config: &Config,
        serves: fn(&App) -> bool,
        mut make: impl FnMut(&App) -> anyhow::Result<R>,
    ) -> anyhow::Result<Self> {
        let mut entries = Vec::new();
        let mut by_addr: HashMap<IpAddr, Vec<usize>> = HashMap::new();
        for (index, app) in config.apps.iter().enumerate() {
            if !serves(app) {
                continue;
            }
            let data = make(app).with_context(|| format!("apps[{index}] ({})", app.dns.name))?;
            for addr in &app.edge_addrs {
                by_addr.entry(*addr).or_default().push(entries.len());
            }
            let target = Target {
                index: index as u32,
                name: app.dns.name.clone(),
                edge_ports: app.edge_ports,
                origin: app.origin.clone(),
                next_origin: AtomicUsize::new(0),
            };
            entries.push((target, data));
        }
        Ok(Self {
            entries,
            by_addr,
            resolved: RwLock::default(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The app a client reached at `edge`.
    pub fn route_for(&self, edge: SocketAddr) -> Option<&(Target, R)> {
        self.by_addr
            .get(&edge.ip())?
            .iter()
            .map(|i| &self.entries[*i])
            .find(|(target, _)| target.edge_ports.contains(edge.port()))
    }

    /// New addresses of an `origin_dns` app (ignored when this path does
    /// not serve it).
    pub fn set_origins(&self, app: u32, ips: &[IpAddr]) {
        if !self.entries.iter().any(|(target, _)| target.index == app) {
            return;
        }
        if let Ok(mut resolved) = self.resolved.write() {
            resolved.insert(app, ips.to_vec());
        }
    }

    /// The origin for a new connection or flow to edge port `port`: round
    /// robin over the app's origins (any family: the agent bridges IPv4 and
    /// IPv6), at the same offset in the origin's port range.
    pub fn pick_origin(&self, target: &Target, port: u16) -> Option<SocketAddr> {
        let offset = target.edge_ports.offset_of(port)?;
        let turn = target.next_origin.fetch_add(1, Ordering::Relaxed);
        match &target.origin {
            Origin::Direct(origins) => {
                let origin = origins.get(turn % origins.len().max(1))?;
                let port = origin.ports.start.checked_add(offset)?;
                Some(SocketAddr::new(origin.ip, port))
            }
            Origin::Dns(dns) => {
                let resolved = self.resolved.read().ok()?;
                let ips = resolved.get(&target.index)?;
                let ip = ips.get(turn % ips.len().max(1))?;
                let port = dns.ports.start.checked_add(offset)?;
                Some(SocketAddr::new(*ip, port))
            }
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

/// One [`AppCounts`] per app of the config, by app index.
pub struct Counts(Vec<AppCounts>);

impl Counts {
    pub fn new(config: &Config) -> Self {
        Self(config.apps.iter().map(|_| AppCounts::default()).collect())
    }

    pub fn app(&self, index: u32) -> &AppCounts {
        &self.0[index as usize]
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
