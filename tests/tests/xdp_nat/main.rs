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
use proxy_common::{FLOW_REPLIED, FLOW_RST, FlowKey, ip_proto};
use tests::{
    packet::{checksums_verify, with_l4_checksum},
    root_or_skip,
};

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
    flows_become_established_and_judge_rsts_and_syns,
    a_nat_tuple_is_never_shared_by_two_flows,
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

/// Flow states (both hooks): a SYN opens an embryonic flow only; the
/// SYN-ACK and then the client's ACK make it established (both halves in
/// `FLOWS`, counted opened); on it an out-of-window RST is dropped
/// (`rst_invalid`) and changes nothing, an origin-side SYN is dropped
/// (`stray_syn`), and an in-window RST passes and closes the flow.
fn flows_become_established_and_judge_rsts_and_syns(hook: Hook) {
    if !root_or_skip(&format!("flows_become_established ({hook:?})")) {
        return;
    }
    let _ns = entered(&format!("natstate-{hook:?}"));
    let mut tester = loaded(hook, "20000-29999");
    let redirect = hook.action(XDP_REDIRECT);
    let client = (CLIENT4, 25000);
    let to_origin = tcp_key(client, (RANGE4, 1000));
    let to_client = tcp_key((ORIGIN4, 3000), (SOURCE4, 25000));
    let syn = tcp_frame(FROM_CLI, client, (RANGE4, 1000), SYN);
    let ran = tester.run_counted(hook, CLI0, &syn, None);
    assert_eq!(
        (ran.action, ran.moves),
        (redirect, vec![(Some(0), "to_origin")])
    );
    let in_table = |tester: &mut Tester, key: &FlowKey| {
        let established = tester.kernel().flows().expect("FLOWS").get(key, 0).ok();
        let embryonic = tester
            .kernel()
            .new_flows()
            .expect("NEW_FLOWS")
            .get(key, 0)
            .ok();
        (established.map(|v| v.state), embryonic.map(|v| v.state))
    };
    assert_eq!(
        in_table(&mut tester, &to_origin),
        (None, Some(0)),
        "SYN: embryonic only"
    );
    assert!(in_table(&mut tester, &to_client).1.is_some());
    let syn_ack = tcp_frame(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 25000), SYN_ACK);
    assert_eq!(tester.run(hook, ORG0, &syn_ack).0, redirect);
    assert_eq!(
        in_table(&mut tester, &to_origin).0,
        None,
        "SYN-ACK: still embryonic"
    );
    // A blind ACK (not of the SYN-ACK's number, as a spoofed source
    // sends) is forwarded but leaves the flow embryonic.
    let mut blind = tcp_frame(FROM_CLI, client, (RANGE4, 1000), ACK);
    // The untagged IPv4 frame's TCP acknowledgment number.
    blind[14 + 20 + 8..14 + 20 + 12].copy_from_slice(&0x1234_5678u32.to_be_bytes());
    let blind = with_l4_checksum(blind);
    assert_eq!(tester.run(hook, CLI0, &blind).0, redirect);
    assert_eq!(
        in_table(&mut tester, &to_origin).0,
        None,
        "a blind ACK: still embryonic"
    );
    let ack = tcp_frame(FROM_CLI, client, (RANGE4, 1000), ACK);
    let ran = tester.run_counted(hook, CLI0, &ack, None);
    let mut moves = ran.moves.clone();
    moves.sort();
    let opened = if hook == Hook::Tc {
        "flow_opened_tc"
    } else {
        "flow_opened"
    };
    assert_eq!(moves, vec![(Some(0), opened), (Some(0), "to_origin")]);
    assert_eq!(
        in_table(&mut tester, &to_origin),
        (Some(0), None),
        "ACK: established"
    );
    // The reply half keeps the mark of the SYN-ACK.
    assert_eq!(
        in_table(&mut tester, &to_client),
        (Some(FLOW_REPLIED), None)
    );
    // Far from the tracked sequence number (1): a blind reset.
    let blind = tcp_frame_seq(
        FROM_ORG,
        (ORIGIN4, 3000),
        (SOURCE4, 25000),
        RST,
        0x4000_0000,
    );
    let ran = tester.run_counted(hook, ORG0, &blind, None);
    assert_eq!(
        (ran.action, ran.moves),
        (hook.action(XDP_DROP), vec![(Some(0), "rst_invalid")])
    );
    assert_eq!(
        in_table(&mut tester, &to_client),
        (Some(FLOW_REPLIED), None),
        "blind RST: no change"
    );
    let stray = tcp_frame(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 25000), SYN);
    let ran = tester.run_counted(hook, ORG0, &stray, None);
    assert_eq!(
        (ran.action, ran.moves),
        (hook.action(XDP_DROP), vec![(Some(0), "stray_syn")])
    );
    // A client SYN on the open flow passes and resets nothing.
    assert_eq!(tester.run(hook, CLI0, &syn).0, redirect);
    assert_eq!(in_table(&mut tester, &to_origin), (Some(0), None));
    let reset = tcp_frame_seq(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 25000), RST, 1);
    let ran = tester.run_counted(hook, ORG0, &reset, None);
    assert_eq!(
        (ran.action, ran.moves),
        (redirect, vec![(Some(0), "to_client")])
    );
    assert_eq!(
        in_table(&mut tester, &to_client),
        (Some(FLOW_REPLIED | FLOW_RST), None),
        "in-window RST"
    );
}

/// A NAT tuple held by one client's embryonic flow is not given to
/// another: its fold (client port 30000 -> NAT port 20000, the first
/// client's) is taken, so it gets a hashed one; and each reverse half
/// points back at its own client.
fn a_nat_tuple_is_never_shared_by_two_flows(hook: Hook) {
    if !root_or_skip(&format!("a_nat_tuple_is_never_shared ({hook:?})")) {
        return;
    }
    let _ns = entered(&format!("natshare-{hook:?}"));
    let mut tester = loaded(hook, "20000-29999");
    let first = tcp_frame(FROM_CLI, (CLIENT4, 20000), (RANGE4, 1000), SYN);
    let (_, out) = tester.run(hook, CLI0, &first);
    assert_eq!(nat_port(&out), 20000);
    let other = Ipv4Addr::new(10, 0, 1, 3);
    let second = tcp_frame(FROM_CLI, (other, 30000), (RANGE4, 1000), SYN);
    let (_, out) = tester.run(hook, CLI0, &second);
    let port = nat_port(&out);
    assert_ne!(port, 20000, "two clients on one NAT tuple");
    let reverse = |port| tcp_key((ORIGIN4, 3000), (SOURCE4, port));
    let new_flows = tester.kernel().new_flows().expect("NEW_FLOWS");
    let a = new_flows
        .get(&reverse(20000), 0)
        .expect("first client's half");
    let b = new_flows
        .get(&reverse(port), 0)
        .expect("second client's half");
    assert_eq!(a.new_dst, addr16(CLIENT4.into()));
    assert_eq!(b.new_dst, addr16(other.into()));
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
