//! Live changes, the pure part: which apps of a new config are the running
//! ones unchanged (they keep their slot, so their flows and counters are
//! not touched), which are new or changed (a fresh slot each, filled before
//! any listener points to it), and which are gone. The agent applies the
//! plan (`commands::Runtime::apply`); nothing here touches the kernel.
use std::{collections::BTreeSet, fmt, sync::Arc};

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
/// were in every case but `Apply` after the file was written (logged).
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
    /// The config on disk, the kernel or the file system failed.
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
pub struct Plan {
    /// Apps the same in both configs: slot kept, nothing touched.
    pub kept: Vec<u32>,
    /// New apps and new versions of changed ones: fresh slots.
    pub fresh: Vec<u32>,
    /// Apps deleted: their flows are cut.
    pub removed: Vec<u32>,
    /// Old versions of changed apps: their flows drain on the old settings.
    pub retired: Vec<u32>,
}

impl Plan {
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
) -> Result<Plan, String> {
    let mut plan = Plan::default();
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
                plan.kept.push(old.slot);
            }
            _ => {
                let Some(slot) = candidates.next() else {
                    return Err(format!(
                        "no free app slot: the data path holds {MAX_APPS} apps, \
                         counting versions whose flows are still draining"
                    ));
                };
                app.slot = slot;
                plan.fresh.push(slot);
            }
        }
    }
    for old in &running.apps {
        match next.apps.iter().find(|app| app.id == old.id) {
            None => plan.removed.push(old.slot),
            Some(app) if app.slot != old.slot => plan.retired.push(old.slot),
            Some(_) => {}
        }
    }
    Ok(plan)
}

/// The parts of `next` outside apps, access rules (with the GeoIP
/// databases) and `dns_server` that differ from `running`: those need a
/// restart, and the running ones stay.
pub fn restart_only_changes(running: &Config, next: &Config) -> Vec<&'static str> {
    let mut edge = next.edge.clone();
    // Filled in at start from routes, and set by `load`: not the operator's.
    edge.origin_source = running.edge.origin_source;
    edge.lease_file.clone_from(&running.edge.lease_file);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;

    fn config(apps: &[&str]) -> Config {
        let text = format!(
            r#"{{"edge": {{"interfaces": ["eth0"],
                "address_pool": {{"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"}}}},
               "apps": [{}]}}"#,
            apps.join(",")
        );
        match load_str(&text, false) {
            Ok(loaded) => loaded.config,
            Err(err) => panic!("test config invalid: {err}"),
        }
    }

    /// An app with a static address (the agent keeps dynamic ones by
    /// lease; `load_str` has none, so they would follow the order).
    fn app(name: &str, origin_port: u16) -> String {
        let host = name.bytes().next().unwrap_or(b'a');
        format!(
            r#"{{"protocol": "tcp/22", "dns": {{"type": "ADDRESS", "name": "{name}.example.com"}},
                "edge_ips": {{"type": "static", "ips": ["198.51.100.{host}"]}},
                "origin_direct": ["tcp://192.0.2.1:{origin_port}"]}}"#
        )
    }

    #[test]
    fn unchanged_apps_keep_their_slots_and_new_ones_take_free_slots() {
        let running = config(&[&app("a", 22), &app("b", 22), &app("c", 22)]);
        // b deleted, d added in front, c and a unchanged (order changed).
        let mut next = config(&[&app("d", 22), &app("c", 22), &app("a", 22)]);
        let plan = assign_slots(&running, &mut next, BTreeSet::new).expect("slots");
        let slots: Vec<u32> = next.apps.iter().map(|a| a.slot).collect();
        assert_eq!(slots, vec![3, 2, 0], "d gets the first slot no app held");
        assert_eq!(plan.kept, vec![2, 0]);
        assert_eq!(plan.fresh, vec![3]);
        assert_eq!(plan.removed, vec![1]);
        assert!(plan.retired.is_empty());
        assert!(plan.changes_apps());
    }

    #[test]
    fn a_changed_app_gets_a_fresh_slot_and_its_old_one_drains() {
        let running = config(&[&app("a", 22), &app("b", 22)]);
        let mut next = config(&[&app("a", 22), &app("b", 2222)]);
        // Slot 2 still has flows of an app deleted earlier.
        let busy = BTreeSet::from([2]);
        let plan = assign_slots(&running, &mut next, || busy.clone()).expect("slots");
        assert_eq!(next.apps[1].slot, 3);
        assert_eq!(plan.retired, vec![1]);
        assert_eq!(plan.fresh, vec![3]);
        assert!(plan.removed.is_empty());
    }

    #[test]
    fn the_same_config_changes_nothing_even_with_new_timestamps() {
        let running = config(&[&app("a", 22), &app("b", 22)]);
        let mut next = running.clone();
        next.apps[1].modified_on = Some("2026-11-26T08:00:00Z".into());
        let plan = assign_slots(&running, &mut next, BTreeSet::new).expect("slots");
        assert!(!plan.changes_apps());
        assert_eq!(plan.kept, vec![0, 1]);
    }

    #[test]
    fn slots_run_out_with_an_error_not_a_panic() {
        let running = config(&[&app("a", 22)]);
        let mut next = config(&[&app("a", 23)]);
        let busy: BTreeSet<u32> = (0..MAX_APPS).collect();
        let err = assign_slots(&running, &mut next, || busy.clone()).expect_err("no slot");
        assert!(err.contains("no free app slot"), "{err}");
    }

    #[test]
    fn edge_changes_need_a_restart() {
        let running = config(&[&app("a", 22)]);
        let mut next = running.clone();
        assert!(restart_only_changes(&running, &next).is_empty());
        next.edge.interfaces = vec!["eth1".into()];
        assert_eq!(restart_only_changes(&running, &next), vec!["edge"]);
    }
}
