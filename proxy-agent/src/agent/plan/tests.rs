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
