//! BPF_PROG_TEST_RUN fixtures of the fast path (Katran style): the rows in
//! `rows.rs` are input frames and their ingress interface, the expected
//! action, the counters they must move and the exact output frame, whose
//! checksums are computed independently (full computation, not the
//! program's incremental one). The runner (`fixture/`) feeds them to both
//! NAT programs: the XDP program with the default config, and the
//! TC-ingress program with `"datapath": "tc"` in edge (every app NATed at
//! TC, and TC has both protocols alone: no app needs XDP). The tests
//! beyond the rows are short named steps.
//!
//! The program runs in a namespace of its own (`namespace.rs`) with two
//! veth pairs and permanent neighbour entries, so the route lookup gives
//! known MACs.
//!
//! CHECKSUM_PARTIAL skbs (the TCP checksum field holds the pseudo-header
//! sum alone, as after GRO's tcp_gro_complete) have no fixture:
//! BPF_PROG_TEST_RUN cannot make one (convert___skb_to_skb in
//! net/bpf/test_run.c takes no ip_summed; its skbs are CHECKSUM_NONE), and
//! a frame with a pseudo-header-only checksum would still be CHECKSUM_NONE
//! to the helpers. The netns TC test that moves 100 MB through GRO covers
//! it end to end.
use std::net::Ipv4Addr;

use proxy_agent::kernel::maps::addr16;
use proxy_common::{FlowKey, HOOK_TC, ip_proto};
use tests::{packet::checksums_verify, root_or_skip};

#[path = "../fixture/mod.rs"]
mod fixture;
mod namespace;
mod rows;

use fixture::{
    Gso, Hook, TC_ACT_REDIRECT, Tester, XDP_DROP, XDP_PASS, XDP_REDIRECT, assert_rewritten_to,
    for_both_hooks,
};
use namespace::entered;
use rows::*;

/// The hooks whose programs run for a config with the NAT at `hook`:
/// with `datapath` tc both, since XDP still sees every frame first.
fn hooks_for(hook: Hook) -> &'static [Hook] {
    match hook {
        Hook::Xdp => &[Hook::Xdp],
        Hook::Tc => &[Hook::Xdp, Hook::Tc],
    }
}

/// [`config`] for `hook` loaded with `hook`'s programs.
fn loaded(hook: Hook, nat_ports: &str) -> Tester {
    loaded_with(&config(hook, nat_ports), hooks_for(hook))
}

/// The maps of the config `text`, the programs of `hooks` loaded, both
/// interfaces redirect targets.
fn loaded_with(text: &str, hooks: &[Hook]) -> Tester {
    let mut tester = Tester::new(&fixture::config(text), hooks);
    tester
        .kernel()
        .add_redirect_targets(&["cli0".into(), "org0".into()])
        .expect("redirect map");
    tester
}

/// The source port of a NATed IPv4 TCP frame: the NAT port.
fn nat_port(out: &[u8]) -> u16 {
    u16::from_be_bytes([out[34], out[35]])
}

for_both_hooks!(
    fast_path_fixtures,
    a_client_port_outside_the_nat_range_gets_one_inside,
    no_free_nat_port_drops_and_counts,
    a_gso_sized_segment_leaves_whole_at_tc_only,
);

fn fast_path_fixtures(hook: Hook) {
    if !root_or_skip(&format!("fast_path_fixtures ({hook:?})")) {
        return;
    }
    let _ns = entered(&format!("nat-{hook:?}"));
    loaded(hook, "20000-29999").check_rows(hook, &rows());
}

fn a_client_port_outside_the_nat_range_gets_one_inside(hook: Hook) {
    if !root_or_skip(&format!(
        "a_client_port_outside_the_nat_range_gets_one_inside ({hook:?})"
    )) {
        return;
    }
    let _ns = entered(&format!("natport-{hook:?}"));
    let mut tester = loaded(hook, "20000-29999");
    let input = tcp_frame(FROM_CLI, (CLIENT4, 40000), (RANGE4, 1000), SYN);
    let port = the_client_port_folds_into_the_range(&mut tester, hook, &input);
    the_reply_to_the_nat_port_finds_the_client(&mut tester, hook, port);
    let mut restarted = loaded(hook, "20000-29999");
    a_restart_gives_a_client_tuple_the_same_port(&mut restarted, hook, &input, port);
    a_client_port_whose_fold_is_taken_gets_a_hashed_one(&mut restarted, hook);
}

/// Client port 40000 folded into 20000-29999: 20000 + (40000 - 20000) mod
/// 10000. Returns the NAT port.
fn the_client_port_folds_into_the_range(tester: &mut Tester, hook: Hook, input: &[u8]) -> u16 {
    let (action, out) = tester.run(hook, CLI0, input);
    assert_eq!(action, hook.action(XDP_REDIRECT));
    assert!(checksums_verify(&out));
    let port = nat_port(&out);
    assert_eq!(port, 20000);
    port
}

fn the_reply_to_the_nat_port_finds_the_client(tester: &mut Tester, hook: Hook, port: u16) {
    let reply = tcp_frame(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, port), SYN_ACK);
    let (action, out) = tester.run(hook, ORG0, &reply);
    assert_eq!(action, hook.action(XDP_REDIRECT));
    assert_eq!(
        out,
        tcp_frame(TO_CLI, (RANGE4, 1000), (CLIENT4, 40000), SYN_ACK)
    );
}

/// A restarted agent (fresh maps, empty flow table) gives the same client
/// tuple the same NAT port, so the origin sees the client's reused tuple
/// where it saw it before, not on a port whose TIME_WAIT entry belongs to
/// another client connection; another client port gets another NAT port.
fn a_restart_gives_a_client_tuple_the_same_port(
    restarted: &mut Tester,
    hook: Hook,
    input: &[u8],
    port: u16,
) {
    let (_, again) = restarted.run(hook, CLI0, input);
    assert_eq!(nat_port(&again), port);
    let other = tcp_frame(FROM_CLI, (CLIENT4, 40001), (RANGE4, 1000), SYN);
    let (_, out) = restarted.run(hook, CLI0, &other);
    assert_eq!(nat_port(&out), 20001);
}

/// Client port 30000 folds onto 20000, which the restart step's client
/// holds: a hashed port in the range, not one of the two taken.
fn a_client_port_whose_fold_is_taken_gets_a_hashed_one(restarted: &mut Tester, hook: Hook) {
    let taken = tcp_frame(FROM_CLI, (CLIENT4, 30000), (RANGE4, 1000), SYN);
    let (action, out) = restarted.run(hook, CLI0, &taken);
    assert_eq!(action, hook.action(XDP_REDIRECT));
    let hashed = nat_port(&out);
    assert!(
        (20002..=29999).contains(&hashed),
        "NAT port {hashed} for a client port folding onto 20000"
    );
}

fn no_free_nat_port_drops_and_counts(hook: Hook) {
    if !root_or_skip(&format!("no_free_nat_port_drops_and_counts ({hook:?})")) {
        return;
    }
    let _ns = entered(&format!("natfull-{hook:?}"));
    // One NAT port: the second client toward the same origin port has none.
    let mut tester = loaded(hook, "20000-20000");
    let first = tcp_frame(FROM_CLI, (CLIENT4, 20000), (RANGE4, 1000), SYN);
    let redirect = hook.action(XDP_REDIRECT);
    assert_eq!(tester.run(hook, CLI0, &first).0, redirect);
    let other_client = Ipv4Addr::new(10, 0, 1, 3);
    let second = tcp_frame(FROM_CLI, (other_client, 20000), (RANGE4, 1000), SYN);
    let ran = tester.run_counted(hook, CLI0, &second, None);
    assert_eq!(ran.action, hook.action(XDP_DROP));
    assert_eq!(ran.moves, vec![(Some(0), "nat_failed")]);
    // Another origin port is another NAT tuple: that one still fits.
    let third = tcp_frame(FROM_CLI, (other_client, 20000), (RANGE4, 1001), SYN);
    assert_eq!(tester.run(hook, CLI0, &third).0, redirect);
}

/// The first packet from the origin on a flow is a segment above the 1500
/// MTU, so the reply direction's route lookup sees it. TC asks with
/// tot_len 0 and the kernel finds the GSO skb forwardable (it is segmented
/// on the way out): rewritten and redirected whole. XDP asks with the IP
/// length: too big, passed up rewritten with its MACs as they came, for
/// the kernel to answer "fragmentation needed".
fn a_gso_sized_segment_leaves_whole_at_tc_only(hook: Hook) {
    if !root_or_skip(&format!(
        "a_gso_sized_segment_leaves_whole_at_tc_only ({hook:?})"
    )) {
        return;
    }
    let _ns = entered(&format!("natgso-{hook:?}"));
    let mut tester = loaded(hook, "20000-29999");
    let syn = tcp_frame(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), SYN);
    assert_eq!(tester.run(hook, CLI0, &syn).0, hook.action(XDP_REDIRECT));
    let input = gso_segment(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 25000));
    assert!(checksums_verify(&input), "bad input fixture");
    let gso = Gso {
        size: 1448,
        segs: 2,
    };
    let ran = tester.run_counted(hook, ORG0, &input, Some(gso));
    let (want_action, want_moves, macs) = match hook {
        Hook::Tc => (TC_ACT_REDIRECT, vec![(Some(0), "to_client")], TO_CLI),
        Hook::Xdp => (XDP_PASS, vec![(Some(0), "too_big")], FROM_ORG),
    };
    let want = gso_segment(macs, (RANGE4, 1000), (CLIENT4, 25000));
    assert_eq!((ran.action, ran.moves), (want_action, want_moves));
    assert_rewritten_to(&ran.out, &want);
}

/// See [`handed_up_steps`].
#[test]
fn xdp_hands_tc_apps_up_to_tc() {
    if !root_or_skip("xdp_hands_tc_apps_up_to_tc") {
        return;
    }
    let _ns = entered("natup");
    let firewalled = config(Hook::Tc, "20000-29999").replacen(
        r#""protocol": "tcp/1000-2000","#,
        r#""protocol": "tcp/1000-2000", "ip_firewall": true,"#,
        1,
    );
    let mut tester = loaded_with(&firewalled, hooks_for(Hook::Tc));
    for step in &handed_up_steps() {
        tester.check_up_to_tc(step);
    }
}

/// See [`left_alone_steps`]. XDP is attached all the same, as for an XDP
/// app of the other protocol under `auto`.
#[test]
fn xdp_leaves_protocols_tc_has_alone() {
    if !root_or_skip("xdp_leaves_protocols_tc_has_alone") {
        return;
    }
    let _ns = entered("natalone");
    let mut tester = loaded(Hook::Tc, "20000-29999");
    for step in &left_alone_steps() {
        tester.check_up_to_tc(step);
    }
}

/// TC rewrites a flow XDP opened when one of its packets reaches it: after
/// a live change gives TC the protocol alone, XDP passes the flows it
/// opened before, and they go on at TC rather than being reset.
#[test]
fn tc_carries_on_a_flow_xdp_opened() {
    if !root_or_skip("tc_carries_on_a_flow_xdp_opened") {
        return;
    }
    let _ns = entered("nathandover");
    let mut tester = loaded_with(&config(Hook::Xdp, "20000-29999"), hooks_for(Hook::Tc));
    let syn = tcp_frame(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), SYN);
    assert_eq!(tester.run(Hook::Xdp, CLI0, &syn).0, XDP_REDIRECT);
    let syn_ack = tcp_frame(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 25000), SYN_ACK);
    let ran = tester.run_counted(Hook::Tc, ORG0, &syn_ack, None);
    assert_eq!(
        (ran.action, ran.moves),
        (TC_ACT_REDIRECT, vec![(Some(0), "to_client")])
    );
    let want = tcp_frame(TO_CLI, (RANGE4, 1000), (CLIENT4, 25000), SYN_ACK);
    assert_rewritten_to(&ran.out, &want);
}

/// A flow half the LRU evicted is put back by the next packet of the other
/// half (once a second) with that half's hook: under `auto`, a TC flow's
/// half comes back a TC half, even when the last flow opened on the CPU
/// (whose scratch slot builds the entry) was XDP's.
#[test]
fn a_flow_half_put_back_keeps_its_hook() {
    if !root_or_skip("a_flow_half_put_back_keeps_its_hook") {
        return;
    }
    let _ns = entered("natpeer");
    // One CPU, so the XDP flow below fills the scratch slot TC then uses.
    pin_this_thread_to_cpu0();
    let auto = config(Hook::Tc, "20000-29999").replacen(
        r#""datapath": "tc","#,
        r#""datapath": "auto","#,
        1,
    );
    let mut tester = loaded_with(&auto, hooks_for(Hook::Tc));
    let syn = tcp_frame(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), SYN);
    assert_eq!(tester.run(Hook::Tc, CLI0, &syn).0, TC_ACT_REDIRECT);
    let query = udp_frame(FROM_CLI, (CLIENT4, 25001), (DNS4, 53));
    assert_eq!(tester.run(Hook::Xdp, CLI0, &query).0, XDP_REDIRECT);
    let to_origin = tcp_key((CLIENT4, 25000), (RANGE4, 1000));
    let to_client = tcp_key((ORIGIN4, 3000), (SOURCE4, 25000));
    evict_one_half_and_age_the_other(&mut tester, to_client, to_origin);
    let ack = tcp_frame(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), ACK);
    assert_eq!(tester.run(Hook::Tc, CLI0, &ack).0, TC_ACT_REDIRECT);
    let put_back = tester
        .kernel()
        .flows()
        .expect("flow map")
        .get(&to_client, 0)
        .expect("the reply half is back");
    assert_eq!(put_back.hook, HOOK_TC, "{put_back:?}");
}

fn pin_this_thread_to_cpu0() {
    // SAFETY: a zeroed cpu_set_t with one bit set, for this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(0, &mut set);
        assert_eq!(
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set),
            0,
            "pinning the test thread"
        );
    }
}

/// The flow map's key of a TCP half from `src` to `dst`.
fn tcp_key(src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> FlowKey {
    FlowKey {
        src: addr16(src.0.into()),
        dst: addr16(dst.0.into()),
        src_port: src.1,
        dst_port: dst.1,
        proto: ip_proto::TCP,
        _pad: [0; 3],
    }
}

/// Removes the `evicted` half (as the LRU would) and marks the `kept` half
/// (a TC half) last seen long ago, so its next packet refreshes the other.
fn evict_one_half_and_age_the_other(tester: &mut Tester, evicted: FlowKey, kept: FlowKey) {
    let mut flows = tester.kernel().flows().expect("flow map");
    flows.remove(&evicted).expect("the reply half");
    let mut half = flows.get(&kept, 0).expect("the client half");
    assert_eq!(half.hook, HOOK_TC);
    half.last_seen_ns = 0;
    flows.insert(kept, half, 0).expect("age the client half");
}
