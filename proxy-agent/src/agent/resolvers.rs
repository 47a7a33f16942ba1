//! The origin names of `origin_dns` apps, resolved now and again when the
//! answer expires, each new answer sent to the main loop.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::IpAddr,
    sync::Arc,
    time::Duration,
};

use tokio::{
    sync::{mpsc, oneshot},
    task::AbortHandle,
};
use tracing::{debug, info, warn};

use crate::{
    config::model::{Config, Origin, OriginDns},
    proxy::origin::{AllRefused, OriginResolver, refresh_after},
};

/// After a failed lookup, the next try (the addresses in use stay).
const RESOLVE_RETRY: Duration = Duration::from_secs(10);

/// One task per `origin_dns` app version (by slot) that resolves its name
/// now and again when the answer expires (see [`refresh_after`]; every
/// 10 s after a failure, keeping the addresses it had), and sends each new
/// answer to the main loop.
pub(super) struct Resolvers {
    tx: mpsc::Sender<(u32, Vec<IpAddr>)>,
    resolver: Option<Arc<OriginResolver>>,
    tasks: HashMap<u32, AbortHandle>,
}

impl Resolvers {
    pub(super) fn new(tx: mpsc::Sender<(u32, Vec<IpAddr>)>) -> Self {
        Self {
            tx,
            resolver: None,
            tasks: HashMap::new(),
        }
    }

    /// Starts the resolvers of `config`'s `origin_dns` apps in `slots` and
    /// returns their first answers (waiting `wait` at most).
    pub(super) async fn start(
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

    pub(super) fn stop(&mut self, slot: u32) {
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
            // A refused answer was logged once by the resolver already.
            Err(err) if err.is::<AllRefused>() => {
                debug!(app = %app_name, origin = %origin.name, "{err:#}; keeping {} addresses, retrying in {RESOLVE_RETRY:?}", current.len());
                RESOLVE_RETRY
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
