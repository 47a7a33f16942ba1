//! What a change does, computed without touching anything: which apps of a
//! new config are the running ones unchanged (they keep their slot, so
//! their flows and counters are not touched), which are new or changed (a
//! fresh slot each, filled before any listener points to it), and which are
//! gone ([`assign_slots`] → [`Slots`]); then the ordered steps that put it
//! in force ([`plan`] → [`Op`]s), which the agent's change path
//! (`agent::change`) carries out one by one. The steps before
//! [`Op::WriteFile`] can be undone and are, in reverse, when one fails;
//! the file is written only once they all ran, and the steps after it
//! (what cannot be undone: flows cut, resolvers stopped) cannot fail the
//! change.
use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    net::IpAddr,
    sync::Arc,
};

use proxy_common::MAX_APPS;
use tokio::sync::oneshot;

use crate::config::{
    LoadError,
    edit::{Document, EditError},
    model::{Config, ConfigError},
};

/// A change the API asks for: an edit of the config document (returning
/// the id of what it created, changed or deleted), validated and applied
/// by the agent's main loop, one change at a time.
pub type Edit = Box<dyn FnOnce(&mut Document) -> Result<String, EditError> + Send>;

/// An edit and where its outcome goes: the config in force after it (with
/// the edit's id), or why it was refused.
pub struct ChangeRequest {
    pub edit: Edit,
    pub reply: oneshot::Sender<Result<(Arc<Config>, String), ChangeError>>,
}

/// Why a change was refused; the running config and the file stay as they
/// were in every case (a step that fails is rolled back before the file is
/// written; a rollback that fails too is logged and said in `Apply`).
#[derive(Debug)]
pub enum ChangeError {
    /// The edit itself: unknown id, bad body.
    Edit(EditError),
    /// The resulting file does not parse (a body's field of the wrong type).
    Parse { field: String, message: String },
    /// The resulting config fails validation: one error per problem.
    Invalid(Vec<ConfigError>),
    /// The config validates but cannot be put in force as asked: a
    /// certificate or database that does not load, the maps full.
    Refused(String),
    /// The config on disk, the kernel or the file system failed: which
    /// step, why, and whether the rollback restored the running state.
    Apply(String),
}

impl From<LoadError> for ChangeError {
    fn from(err: LoadError) -> Self {
        match err {
            LoadError::Parse { field, message, .. } => ChangeError::Parse { field, message },
            LoadError::Invalid(errors) => ChangeError::Invalid(errors),
            other => ChangeError::Apply(other.to_string()),
        }
    }
}

impl fmt::Display for ChangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChangeError::Edit(err) => write!(f, "{err:?}"),
            ChangeError::Parse { field, message } => write!(f, "{field}: {message}"),
            ChangeError::Invalid(errors) => {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                f.write_str(&lines.join("\n"))
            }
            ChangeError::Refused(reason) | ChangeError::Apply(reason) => f.write_str(reason),
        }
    }
}

/// What a change does to the apps, by slot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Slots {
    /// Apps the same in both configs: slot kept, nothing touched.
    pub kept: Vec<u32>,
    /// New apps and new versions of changed ones: fresh slots.
    pub fresh: Vec<u32>,
    /// Apps deleted: their flows are cut.
    pub removed: Vec<u32>,
    /// Old versions of changed apps: their flows drain on the old settings.
    pub retired: Vec<u32>,
}

impl Slots {
    /// Whether the apps change at all.
    pub fn changes_apps(&self) -> bool {
        !(self.fresh.is_empty() && self.removed.is_empty() && self.retired.is_empty())
    }
}

/// Gives `next`'s apps their slots against `running`: an app present in
/// both (same id) and serving the same keeps its slot; every other app gets
/// the lowest slot that no app of either config holds and `busy` (slots
/// the kernel's flows still count in; asked only when a slot is needed,
/// since it walks the flow table) does not name. Fails when the slots run
/// out.
pub fn assign_slots(
    running: &Config,
    next: &mut Config,
    busy: impl FnOnce() -> BTreeSet<u32>,
) -> Result<Slots, String> {
    let mut slots = Slots::default();
    let mut taken: BTreeSet<u32> = running.apps.iter().map(|app| app.slot).collect();
    let needs_slots = next.apps.iter().any(|app| {
        !running
            .apps
            .iter()
            .any(|old| old.id == app.id && old.same_service(app))
    });
    if needs_slots {
        taken.extend(busy());
    }
    let mut candidates = (0..MAX_APPS).filter(|slot| !taken.contains(slot));
    for app in &mut next.apps {
        let before = running.apps.iter().find(|old| old.id == app.id);
        match before {
            Some(old) if old.same_service(app) => {
                app.slot = old.slot;
                slots.kept.push(old.slot);
            }
            _ => {
                let Some(slot) = candidates.next() else {
                    return Err(format!(
                        "no free app slot: the data path holds {MAX_APPS} apps, \
                         counting versions whose flows are still draining"
                    ));
                };
                app.slot = slot;
                slots.fresh.push(slot);
            }
        }
    }
    for old in &running.apps {
        match next.apps.iter().find(|app| app.id == old.id) {
            None => slots.removed.push(old.slot),
            Some(app) if app.slot != old.slot => slots.retired.push(old.slot),
            Some(_) => {}
        }
    }
    Ok(slots)
}

/// The parts of `next` outside apps, access rules (with the GeoIP
/// databases) and `dns_server` that differ from `running`: those need a
/// restart, and the running ones stay.
pub fn restart_only_changes(running: &Config, next: &Config) -> Vec<&'static str> {
    let mut edge = next.edge.clone();
    // Filled in at start from routes, and set by `load`: not the operator's.
    edge.origin_source.clone_from(&running.edge.origin_source);
    edge.lease_file.clone_from(&running.edge.lease_file);
    // Live: `SyncMaps` rewrites `POOLS`, and XDP is attached if it must be.
    edge.unlisted = running.edge.unlisted;
    // Live: each app holds the value it gets (`App::syn_proxy`), and a
    // changed one is a new version of the app in a fresh slot.
    edge.syn_proxy = running.edge.syn_proxy;
    // Reloaded live, with the access rules.
    edge.geoip = running.edge.geoip.clone();
    let mut changed = Vec::new();
    if edge != running.edge {
        changed.push("edge");
    }
    if next.api != running.api {
        changed.push("api");
    }
    if next.dns_server.is_some() != running.dns_server.is_some() {
        changed.push("dns_server (added or removed)");
    }
    changed
}

/// Puts back in `next` what only a restart changes (see
/// [`restart_only_changes`]): the running `edge` but its GeoIP databases
/// (they reload with the rules), `api`, and whether `dns_server` runs.
pub fn keep_restart_only(running: &Config, next: &mut Config) {
    let geoip = next.edge.geoip.clone();
    next.edge = running.edge.clone();
    next.edge.geoip = geoip;
    next.api = running.api.clone();
    if next.dns_server.is_some() != running.dns_server.is_some() {
        next.dns_server = running.dns_server.clone();
    }
}

/// Whether the access rules are built and loaded again: their list or the
/// GeoIP databases they read changed.
pub fn rules_change(running: &Config, next: &Config) -> bool {
    next.access_rules != running.access_rules || next.edge.geoip != running.edge.geoip
}

/// One step of putting a prepared change in force. What a step installs
/// (rules, routes, map contents, zones) was built before the first step
/// runs; a step names it, it does not hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A fresh slot's counters zeroed: an earlier app may have counted in it.
    ClearCounters(u32),
    /// The rebuilt access rules loaded.
    SetRules,
    /// The flows, counted in these slots, of clients the rules block: cut
    /// (old versions of apps that turn `ip_firewall` on).
    CutBlockedFlows(BTreeSet<u32>),
    /// The agent's TCP and UDP routes switched to the new apps, before the
    /// kernel sends it a new app's connections.
    SwitchRoutes,
    /// A fresh slot's first origin addresses given to the agent's paths.
    SetOrigins(u32),
    /// The hooks an app of the new config needs, before its maps are written.
    AttachXdp,
    AttachTc,
    /// The kernel maps written (new apps whole before their listeners, gone
    /// listeners before their apps: `Kernel::sync`).
    SyncMaps,
    /// The config file written (API changes; a reload read it): once every
    /// step before succeeded, and before any that cannot be undone.
    WriteFile,
    /// The agent-path connections and UDP flows of clients the new rules
    /// block, cut (after the file: a cut cannot be undone).
    CutBlockedConnections,
    /// The flows of deleted apps, by slot, cut.
    CutFlows(BTreeSet<u32>),
    /// The `dns_server` answers replaced.
    UpdateDns,
    /// The origin resolver of an app version that is gone, stopped.
    StopResolver(u32),
    /// The edge address lease file rewritten (when an app has a dynamic
    /// address or a file is there to be emptied).
    WriteLeases,
    /// The running apps' slots and ids rewritten for `apps` and `stats`.
    WriteRunningApps,
}

/// The steps that take the agent from `running` to `next` (slots assigned
/// as `slots` says; `resolved`: the origin addresses `next`'s apps start
/// with, by slot), in an order that never shows a listener whose app is not
/// in place: fresh slots cleared, rules, the agent's routes and origins,
/// hooks, maps; then the file; then flows the rules now block, deleted
/// apps' flows, DNS answers, resolvers, leases.
pub fn plan(
    running: &Config,
    next: &Config,
    slots: &Slots,
    resolved: &BTreeMap<u32, Vec<IpAddr>>,
) -> Vec<Op> {
    let mut ops: Vec<Op> = slots.fresh.iter().map(|&s| Op::ClearCounters(s)).collect();
    if rules_change(running, next) {
        ops.push(Op::SetRules);
    }
    ops.push(Op::SwitchRoutes);
    ops.extend(
        slots
            .fresh
            .iter()
            .filter(|slot| resolved.contains_key(slot))
            .map(|&s| Op::SetOrigins(s)),
    );
    if next.needs_xdp() {
        ops.push(Op::AttachXdp);
    }
    if next.attaches_tc() {
        ops.push(Op::AttachTc);
    }
    ops.push(Op::SyncMaps);
    ops.push(Op::WriteFile);
    if rules_change(running, next) {
        ops.push(Op::CutBlockedConnections);
    }
    // An app that turns ip_firewall on: its old version's flows of clients
    // the rules block go now, not when they end.
    let firewalled: BTreeSet<u32> = running
        .apps
        .iter()
        .filter(|old| !old.ip_firewall && slots.retired.contains(&old.slot))
        .filter(|old| next.apps.iter().any(|a| a.id == old.id && a.ip_firewall))
        .map(|old| old.slot)
        .collect();
    if !firewalled.is_empty() {
        ops.push(Op::CutBlockedFlows(firewalled));
    }
    if !slots.removed.is_empty() {
        ops.push(Op::CutFlows(slots.removed.iter().copied().collect()));
    }
    if next.dns_server.is_some() {
        ops.push(Op::UpdateDns);
    }
    ops.extend(
        slots
            .removed
            .iter()
            .chain(&slots.retired)
            .map(|&s| Op::StopResolver(s)),
    );
    if next.edge.lease_file.is_some() {
        ops.push(Op::WriteLeases);
    }
    ops.push(Op::WriteRunningApps);
    ops
}

#[cfg(test)]
mod tests;
