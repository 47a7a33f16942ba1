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
    let slots = assign_slots(&running, &mut next, BTreeSet::new).expect("slots");
    let assigned: Vec<u32> = next.apps.iter().map(|a| a.slot).collect();
    assert_eq!(assigned, vec![3, 2, 0], "d gets the first slot no app held");
    assert_eq!(slots.kept, vec![2, 0]);
    assert_eq!(slots.fresh, vec![3]);
    assert_eq!(slots.removed, vec![1]);
    assert!(slots.retired.is_empty());
    assert!(slots.changes_apps());
}

#[test]
fn a_changed_app_gets_a_fresh_slot_and_its_old_one_drains() {
    let running = config(&[&app("a", 22), &app("b", 22)]);
    let mut next = config(&[&app("a", 22), &app("b", 2222)]);
    // Slot 2 still has flows of an app deleted earlier.
    let busy = BTreeSet::from([2]);
    let slots = assign_slots(&running, &mut next, || busy.clone()).expect("slots");
    assert_eq!(next.apps[1].slot, 3);
    assert_eq!(slots.retired, vec![1]);
    assert_eq!(slots.fresh, vec![3]);
    assert!(slots.removed.is_empty());
}

#[test]
fn the_same_config_changes_nothing_even_with_new_timestamps() {
    let running = config(&[&app("a", 22), &app("b", 22)]);
    let mut next = running.clone();
    next.apps[1].modified_on = Some("2026-11-26T08:00:00Z".into());
    let slots = assign_slots(&running, &mut next, BTreeSet::new).expect("slots");
    assert!(!slots.changes_apps());
    assert_eq!(slots.kept, vec![0, 1]);
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

// The steps of a change, replayed: what each kind of change does, and in
// which order.

/// `apps` with the top-level fields `extra` (a JSON fragment, with its
/// leading comma).
fn config_with(extra: &str, apps: &[&str]) -> Config {
    let text = format!(
        r#"{{"edge": {{"interfaces": ["eth0"],
            "address_pool": {{"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"}}}},
           "apps": [{}]{extra}}}"#,
        apps.join(",")
    );
    match load_str(&text, false) {
        Ok(loaded) => loaded.config,
        Err(err) => panic!("test config invalid: {err}"),
    }
}

/// `app(name, 22)` with more fields (a JSON fragment, leading comma).
fn app_with(name: &str, extra: &str) -> String {
    let host = name.bytes().next().unwrap_or(b'a');
    format!(
        r#"{{"protocol": "tcp/22", "dns": {{"type": "ADDRESS", "name": "{name}.example.com"}},
            "edge_ips": {{"type": "static", "ips": ["198.51.100.{host}"]}},
            "origin_direct": ["tcp://192.0.2.1:22"]{extra}}}"#
    )
}

const BLOCK_RULE: &str = r#", "access_rules": [{"mode": "block",
    "configuration": {"target": "ip_range", "value": "203.0.113.0/24"}}]"#;

/// The plan from `running` to `next` (slots assigned, no flows busy), with
/// origin addresses for the slots in `resolved`.
fn replay(running: &Config, next: &mut Config, resolved: &[u32]) -> (Slots, Vec<Op>) {
    let slots = assign_slots(running, next, BTreeSet::new).expect("slots");
    let ips: BTreeMap<u32, Vec<IpAddr>> = resolved
        .iter()
        .map(|&slot| (slot, vec![IpAddr::from([192, 0, 2, 1])]))
        .collect();
    let ops = plan(running, next, &slots, &ips);
    (slots, ops)
}

/// Where `op` is in `ops`; fails the test when it is missing.
fn at(ops: &[Op], op: &Op) -> usize {
    match ops.iter().position(|o| o == op) {
        Some(i) => i,
        None => panic!("{op:?} not in {ops:?}"),
    }
}

/// The slots the steps of `ops` name.
fn slots_named(ops: &[Op]) -> BTreeSet<u32> {
    ops.iter()
        .flat_map(|op| match op {
            Op::ClearCounters(s) | Op::SetOrigins(s) | Op::StopResolver(s) => vec![*s],
            Op::CutBlockedFlows(s) | Op::CutFlows(s) => s.iter().copied().collect(),
            _ => vec![],
        })
        .collect()
}

#[test]
fn an_unchanged_config_names_no_slot_and_loads_no_rules() {
    let running = config_with(BLOCK_RULE, &[&app("a", 22), &app("b", 22)]);
    let mut next = running.clone();
    let (_, ops) = replay(&running, &mut next, &[0, 1]);
    assert_eq!(
        ops,
        vec![
            Op::SwitchRoutes,
            Op::AttachXdp,
            // For the SYN proxy of the apps (on by default).
            Op::AttachTc,
            Op::SyncMaps,
            Op::WriteFile,
            Op::WriteRunningApps
        ]
    );
}

/// The steps that can fail or be undone, and the ones that cannot.
fn reversible(op: &Op) -> bool {
    matches!(
        op,
        Op::ClearCounters(_)
            | Op::SetRules
            | Op::SwitchRoutes
            | Op::SetOrigins(_)
            | Op::AttachXdp
            | Op::AttachTc
            | Op::SyncMaps
    )
}

#[test]
fn the_file_is_written_after_every_step_that_can_be_undone_and_before_every_other() {
    let running = config_with(BLOCK_RULE, &[&app("a", 22), &app("b", 22), &app("c", 22)]);
    // c deleted, b turns ip_firewall on, d new, the rules gone.
    let mut next = config(&[
        &app("a", 22),
        &app_with("b", r#", "ip_firewall": true"#),
        &app("d", 22),
    ]);
    let (_, ops) = replay(&running, &mut next, &[3, 4]);
    let write = at(&ops, &Op::WriteFile);
    assert!(ops[..write].iter().all(reversible), "{ops:?}");
    assert!(!ops[write + 1..].iter().any(reversible), "{ops:?}");
    for op in [
        Op::CutBlockedFlows(BTreeSet::from([1])),
        Op::CutBlockedConnections,
        Op::CutFlows(BTreeSet::from([2])),
        Op::StopResolver(2),
    ] {
        assert!(write < at(&ops, &op), "{op:?} after the file: {ops:?}");
    }
    assert!(at(&ops, &Op::SetRules) < write && at(&ops, &Op::SyncMaps) < write);
}

#[test]
fn a_new_apps_slot_is_cleared_and_given_origins_before_its_listeners_are_written() {
    let running = config(&[&app("a", 22)]);
    let mut next = config(&[&app("a", 22), &app("d", 22)]);
    let (slots, ops) = replay(&running, &mut next, &[1]);
    assert_eq!(slots.fresh, vec![1]);
    assert_eq!(ops[0], Op::ClearCounters(1), "{ops:?}");
    assert!(at(&ops, &Op::ClearCounters(1)) < at(&ops, &Op::SwitchRoutes));
    assert!(at(&ops, &Op::SwitchRoutes) < at(&ops, &Op::SetOrigins(1)));
    assert!(at(&ops, &Op::SetOrigins(1)) < at(&ops, &Op::SyncMaps));
    assert_eq!(
        slots_named(&ops),
        BTreeSet::from([1]),
        "a (slot 0) untouched"
    );
}

#[test]
fn a_new_app_without_addresses_yet_gets_none_set() {
    let running = config(&[&app("a", 22)]);
    let mut next = config(&[&app("a", 22), &app("d", 22)]);
    let (_, ops) = replay(&running, &mut next, &[]);
    assert!(
        !ops.iter().any(|op| matches!(op, Op::SetOrigins(_))),
        "{ops:?}"
    );
}

#[test]
fn a_deleted_apps_flows_are_cut_after_the_maps_sync_then_its_resolver_stops() {
    let running = config(&[&app("a", 22), &app("b", 22)]);
    let mut next = config(&[&app("a", 22)]);
    let (slots, ops) = replay(&running, &mut next, &[]);
    assert_eq!(slots.removed, vec![1]);
    let cut = Op::CutFlows(BTreeSet::from([1]));
    assert!(at(&ops, &Op::SyncMaps) < at(&ops, &cut), "{ops:?}");
    assert!(at(&ops, &cut) < at(&ops, &Op::StopResolver(1)));
    assert_eq!(slots_named(&ops), BTreeSet::from([1]));
}

#[test]
fn a_changed_apps_old_slot_drains_and_is_not_cut() {
    let running = config(&[&app("a", 22), &app("b", 22)]);
    let mut next = config(&[&app("a", 22), &app("b", 2222)]);
    let (slots, ops) = replay(&running, &mut next, &[2]);
    assert_eq!(
        (slots.fresh.clone(), slots.retired.clone()),
        (vec![2], vec![1])
    );
    assert!(
        !ops.iter().any(|op| matches!(op, Op::CutFlows(_))),
        "{ops:?}"
    );
    assert!(ops.contains(&Op::ClearCounters(2)));
    assert!(ops.contains(&Op::StopResolver(1)));
    assert_eq!(slots_named(&ops), BTreeSet::from([1, 2]));
}

#[test]
fn turning_ip_firewall_on_cuts_blocked_clients_flows_of_the_old_version() {
    let running = config_with(BLOCK_RULE, &[&app("a", 22), &app("b", 22)]);
    let mut next = config_with(
        BLOCK_RULE,
        &[&app("a", 22), &app_with("b", r#", "ip_firewall": true"#)],
    );
    let (slots, ops) = replay(&running, &mut next, &[]);
    assert_eq!(slots.retired, vec![1]);
    let cut = Op::CutBlockedFlows(BTreeSet::from([1]));
    // The rules did not change: the ones in force decide.
    assert!(!ops.contains(&Op::SetRules), "{ops:?}");
    // Once the new version serves and the change is in the file: cut
    // flows cannot be undone.
    assert!(at(&ops, &Op::SyncMaps) < at(&ops, &cut), "{ops:?}");
    assert!(at(&ops, &Op::WriteFile) < at(&ops, &cut), "{ops:?}");
}

#[test]
fn ip_firewall_turned_off_or_kept_on_cuts_no_blocked_flows() {
    let on = config(&[&app_with("a", r#", "ip_firewall": true"#)]);
    let off = config(&[&app("a", 22)]);
    for (running, next) in [(&on, &off), (&on, &on)] {
        let mut next = next.clone();
        let (_, ops) = replay(running, &mut next, &[]);
        assert!(
            !ops.iter().any(|op| matches!(op, Op::CutBlockedFlows(_))),
            "{ops:?}"
        );
    }
}

#[test]
fn new_rules_load_after_fresh_slots_clear_and_before_blocked_flows_are_cut() {
    let running = config(&[&app("a", 22)]);
    let mut next = config_with(BLOCK_RULE, &[&app_with("a", r#", "ip_firewall": true"#)]);
    let (_, ops) = replay(&running, &mut next, &[]);
    let cut = Op::CutBlockedFlows(BTreeSet::from([0]));
    assert_eq!(&ops[..2], &[Op::ClearCounters(1), Op::SetRules], "{ops:?}");
    assert!(at(&ops, &Op::SetRules) < at(&ops, &cut), "{ops:?}");
}

#[test]
fn rules_removed_are_unloaded_like_rules_added() {
    let running = config_with(BLOCK_RULE, &[&app("a", 22)]);
    let mut next = config(&[&app("a", 22)]);
    let (_, ops) = replay(&running, &mut next, &[]);
    assert_eq!(ops[0], Op::SetRules, "{ops:?}");
}

#[test]
fn the_hook_a_change_needs_attaches_before_the_maps_sync() {
    let running = config(&[&app("a", 22)]);
    let mut next = config(&[&app("a", 22), &app_with("t", r#", "datapath": "tc""#)]);
    let (_, ops) = replay(&running, &mut next, &[]);
    assert!(
        at(&ops, &Op::AttachXdp) < at(&ops, &Op::SyncMaps),
        "{ops:?}"
    );
    assert!(at(&ops, &Op::AttachTc) < at(&ops, &Op::SyncMaps), "{ops:?}");
    // Only TC apps left: XDP is not attached again (TC drops what no app
    // serves, `Config::unlisted_at_tc`)...
    let mut tc_only = config(&[&app_with("t", r#", "datapath": "tc""#)]);
    let (_, ops) = replay(&next, &mut tc_only, &[]);
    assert!(tc_only.unlisted_at_tc());
    assert!(!ops.contains(&Op::AttachXdp), "{ops:?}");
    assert!(at(&ops, &Op::AttachTc) < at(&ops, &Op::SyncMaps), "{ops:?}");
    // ...and with `pass` neither hook drops anything.
    let mut tc_only = config(&[&app_with("t", r#", "datapath": "tc""#)]);
    tc_only.edge.unlisted = crate::config::model::Unlisted::Pass;
    let (_, ops) = replay(&next, &mut tc_only, &[]);
    assert!(!tc_only.unlisted_at_tc());
    assert!(!ops.contains(&Op::AttachXdp), "{ops:?}");
    assert!(at(&ops, &Op::AttachTc) < at(&ops, &Op::SyncMaps), "{ops:?}");
}

#[test]
fn turning_the_syn_proxy_on_live_attaches_tc_before_the_maps_sync() {
    let off = r#", "syn_proxy": "off""#;
    let running = config(&[&app_with("a", off)]);
    assert!(!running.attaches_tc());
    // Off stays off: no TC.
    let mut next = config(&[&app_with("a", off), &app_with("b", off)]);
    let (_, ops) = replay(&running, &mut next, &[]);
    assert!(!ops.contains(&Op::AttachTc), "{ops:?}");
    // On (the app's own value changed): a new version in a fresh slot, and
    // TC attached before the maps give the kernel its flag.
    let mut next = config(&[&app("a", 22)]);
    let (slots, ops) = replay(&running, &mut next, &[]);
    assert_eq!((slots.fresh, slots.retired), (vec![1], vec![0]));
    assert!(at(&ops, &Op::AttachTc) < at(&ops, &Op::SyncMaps), "{ops:?}");
    // The edge's default turned on: live too, the same way.
    let running = config_with("", &[&app("a", 22)]);
    let mut edge_off = running.clone();
    edge_off.edge.syn_proxy = false;
    edge_off.apps[0].syn_proxy = false;
    assert!(restart_only_changes(&running, &edge_off).is_empty());
    let (_, ops) = replay(&edge_off, &mut running.clone(), &[]);
    assert!(at(&ops, &Op::AttachTc) < at(&ops, &Op::SyncMaps), "{ops:?}");
}

#[test]
fn dns_answers_and_leases_follow_the_maps_and_the_running_apps_come_last() {
    let dns = r#", "dns_server": {"listen": ["127.0.0.1"], "zones": ["example.com"]}"#;
    let mut running = config_with(dns, &[&app("a", 22), &app("b", 22)]);
    running.edge.lease_file = Some("/nonexistent/leases.json".into());
    let mut next = config_with(dns, &[&app("a", 22)]);
    next.edge.lease_file.clone_from(&running.edge.lease_file);
    let (_, ops) = replay(&running, &mut next, &[]);
    let n = ops.len();
    assert_eq!(
        &ops[n - 7..n - 1],
        &[
            Op::SyncMaps,
            Op::WriteFile,
            Op::CutFlows(BTreeSet::from([1])),
            Op::UpdateDns,
            Op::StopResolver(1),
            Op::WriteLeases,
        ][..],
        "{ops:?}"
    );
    assert_eq!(ops.last(), Some(&Op::WriteRunningApps));
    // Without a DNS server or a lease file: neither step.
    let (_, ops) = replay(&config(&[&app("a", 22)]), &mut config(&[]), &[]);
    assert!(!ops.contains(&Op::UpdateDns) && !ops.contains(&Op::WriteLeases));
}

#[test]
fn restart_only_parts_stay_as_they_run_but_geoip_follows_the_file() {
    let running = config(&[&app("a", 22)]);
    let mut next = running.clone();
    next.edge.interfaces = vec!["eth1".into()];
    next.edge.geoip.country_db = Some("/var/lib/GeoLite2-Country.mmdb".into());
    keep_restart_only(&running, &mut next);
    assert_eq!(next.edge.interfaces, running.edge.interfaces);
    assert_eq!(
        next.edge.geoip.country_db.as_deref(),
        Some(std::path::Path::new("/var/lib/GeoLite2-Country.mmdb"))
    );
    assert!(
        rules_change(&running, &next),
        "GeoIP databases reload the rules"
    );
}
