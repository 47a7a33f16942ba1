//! BPF_PROG_TEST_RUN fixtures for the XDP parser and listener lookup: the
//! rows (`rows.rs`) are frames and the one counter (app or global row,
//! verdict) each must move; the runner (`fixture/`) feeds them to the XDP
//! program. Adding a case is adding a row.
use aya::maps::HashMap;
use proxy_agent::kernel::{maps::map_contents, stats};
use proxy_common::{ListenerKey, ListenerValue, Verdict, ip_proto, map_names, v4_mapped};
use tests::{
    counters::moved,
    packet::{PROTO_UDP, frame4, udp},
    root_or_skip,
};

#[path = "../fixture/mod.rs"]
mod fixture;
mod rows;

use fixture::{Hook, Tester, XDP_PASS, config};
use rows::{APP_V4, CONFIG, rows, tcp4};

fn loaded() -> Tester {
    Tester::new(&config(CONFIG), &[Hook::Xdp])
}

#[test]
fn every_fixture_moves_exactly_its_counter() {
    if !root_or_skip("every_fixture_moves_exactly_its_counter") {
        return;
    }
    loaded().check_rows(Hook::Xdp, &rows());
}

#[test]
fn counters_carry_frame_bytes() {
    if !root_or_skip("counters_carry_frame_bytes") {
        return;
    }
    let mut tester = loaded();
    let frame = tcp4(8080);
    for _ in 0..3 {
        tester.run(Hook::Xdp, None, &frame);
    }
    let map = tester.kernel().stats().expect("stats");
    let rows = stats::read(&map, 2).expect("read");
    let row = rows
        .iter()
        .find(|r| r.app == Some(0) && r.verdict == Verdict::ToAgent)
        .expect("app 0 row");
    assert_eq!((row.packets, row.bytes), (3, 3 * frame.len() as u64));
}

#[test]
fn a_listener_pointing_at_an_empty_app_slot_is_ignored() {
    if !root_or_skip("a_listener_pointing_at_an_empty_app_slot_is_ignored") {
        return;
    }
    let mut tester = loaded();
    add_a_listener_of_app_slot_9_on_port_7777(&mut tester);
    let ran = tester.run_counted(Hook::Xdp, None, &tcp4(7777), None);
    assert_eq!(ran.action, XDP_PASS);
    assert_eq!(ran.moves, vec![(None, "no_listener")]);
}

/// A stale listener: app slot 9 holds no app.
fn add_a_listener_of_app_slot_9_on_port_7777(tester: &mut Tester) {
    let map = tester
        .kernel()
        .ebpf_mut()
        .map_mut(map_names::LISTENERS)
        .expect("listeners");
    let mut listeners: HashMap<_, ListenerKey, ListenerValue> =
        HashMap::try_from(map).expect("hash map");
    let stale = ListenerKey::new(ip_proto::TCP, v4_mapped(APP_V4.octets()), 7777);
    listeners
        .insert(stale, ListenerValue { app: 9 }, 0)
        .expect("insert");
}

#[test]
fn sync_removes_listeners_of_a_removed_app() {
    if !root_or_skip("sync_removes_listeners_of_a_removed_app") {
        return;
    }
    let mut tester = loaded();
    sync_without_the_udp_app(&mut tester);
    let before = tester.counts();
    tester.run(
        Hook::Xdp,
        None,
        &frame4(APP_V4, PROTO_UDP, &udp(1, 5305, b"q")),
    );
    tester.run(Hook::Xdp, None, &tcp4(8080));
    let after = tester.counts();
    assert_eq!(
        moved(&before, &after),
        vec![(None, "no_listener"), (Some(0), "to_agent")]
    );
}

/// Keeps only the TCP app: the UDP range's listeners must disappear.
fn sync_without_the_udp_app(tester: &mut Tester) {
    let only_tcp = CONFIG.replace(
        r#",
    {"protocol": "udp/5300-5310", "dns": {"type": "ADDRESS", "name": "udp.test"},
     "edge_ips": {"type": "static", "ips": ["10.0.100.1", "fd00:100::1"]},
     "origin_direct": ["udp://10.0.2.2:6300-6310"], "proxy_protocol": "simple"}"#,
        "",
    );
    let config = config(&only_tcp);
    assert_eq!(config.apps.len(), 1, "the replace above must remove an app");
    tester
        .kernel()
        .sync(&map_contents(&config).expect("fits"))
        .expect("sync");
}
