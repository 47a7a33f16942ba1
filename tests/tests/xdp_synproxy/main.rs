//! BPF_PROG_TEST_RUN fixtures of the SYN proxy: one client connection
//! through the edge as a conversation, each step's output feeding the
//! next, on both hooks (the XDP program with the default config, the TC
//! program with `"datapath": "tc"`) and both families:
//!
//! 1. the client's SYN gets a SYN-ACK back out of its interface, its ISN
//!    a cookie the edge keeps nothing of (window 0; the client's options
//!    in the edge's TSval);
//! 2. an ACK acknowledging the cookie off by 0x100 is dropped;
//!    the right one becomes the edge's SYN to the origin (so the kernel's
//!    cookie check accepts the kernel's cookie), sent again while the
//!    origin is pending;
//! 3. the origin's SYN-ACK: XDP hands it up to TC, which turns it into the
//!    client's window update (and clones the edge's ACK to the origin,
//!    which BPF_PROG_TEST_RUN cannot show: it returns one frame; the
//!    origin's SYN-ACK again shows it, the packet itself answered);
//! 4. data both ways with sequence and acknowledgement numbers, SACK
//!    blocks, timestamps and windows translated, in unusual option
//!    layouts too;
//! 5. an origin that refuses: its RST becomes the client's.
//!
//! The cookie and the edge's TSval are the kernel's choice: they are read
//! from the SYN-ACK, and every frame after is built from them and the
//! rows' own wire numbers (`rows.rs`), checksums computed in full by
//! `tests::packet`, never the program's incremental ones.
use proxy_agent::kernel::maps::addr16;
use proxy_common::{FLOW_ORIGIN_PENDING, FLOW_SYN_PROXY, FlowKey, FlowValue, ip_proto};
use tests::{
    netns::Netns,
    packet::{checksums_verify, parse_tcp},
    root_or_skip,
};

#[path = "../fixture/mod.rs"]
mod fixture;
#[path = "../xdp_nat/namespace.rs"]
mod namespace;
mod rows;

use fixture::{
    Hook,
    Output::{Rewritten, Unchanged},
    Row, TC_ACT_REDIRECT, Tester, UpToTc, XDP_DROP, XDP_REDIRECT, assert_rewritten_to,
    for_both_hooks, hex,
};
use namespace::entered;
use rows::*;

for_both_hooks!(
    ipv4_handshake_and_data,
    ipv6_handshake_and_data,
    ipv4_syn_with_fewer_options,
    ipv6_syn_with_fewer_options,
    ipv4_origin_refuses,
    ipv6_origin_refuses,
);

/// The config for `hook` with both programs loaded: the SYN-ACK of the
/// origin goes through TC whatever the hook (XDP hands it up).
fn loaded(hook: Hook) -> Tester {
    let mut tester = Tester::new(&fixture::config(&config(hook)), &[Hook::Xdp, Hook::Tc]);
    tester
        .kernel()
        .add_redirect_targets(&["cli0".into(), "org0".into()])
        .expect("redirect map");
    tester
}

/// The namespace (`tag`) entered and the programs loaded, unless not
/// root.
fn setup(tag: &str, hook: Hook, family: &Family) -> Option<(Netns, Tester)> {
    if !root_or_skip(&format!("{tag} ({hook:?}, {})", family.name)) {
        return None;
    }
    let ns = entered(&format!("{tag}-{hook:?}-{}", family.name));
    Some((ns, loaded(hook)))
}

fn ipv4_handshake_and_data(hook: Hook) {
    handshake_and_data(hook, &V4);
}

fn ipv6_handshake_and_data(hook: Hook) {
    handshake_and_data(hook, &V6);
}

fn ipv4_syn_with_fewer_options(hook: Hook) {
    syn_with_fewer_options(hook, &V4);
}

fn ipv6_syn_with_fewer_options(hook: Hook) {
    syn_with_fewer_options(hook, &V6);
}

fn ipv4_origin_refuses(hook: Hook) {
    origin_refuses(hook, &V4);
}

fn ipv6_origin_refuses(hook: Hook) {
    origin_refuses(hook, &V6);
}

/// Steps 1 to 4 on one flow.
fn handshake_and_data(hook: Hook, family: &'static Family) {
    let Some((_ns, mut tester)) = setup("sphand", hook, family) else {
        return;
    };
    let mut flow = Flow::new(family, 25000, EVERYTHING);
    syn_gets_a_cookie(&mut tester, hook, &mut flow);
    tester.check_rows(hook, &cookie_ack_rows(&flow));
    origin_syn_ack_opens_the_flow(&mut tester, hook, &flow);
    origin_syn_ack_again_gets_the_edge_ack(&mut tester, hook, &flow);
    tester.check_rows(hook, &data_rows(&flow));
}

/// Steps 1 and 2 for clients offering less: without timestamps the
/// SYN-ACK offers no window scale and no SACK (NOPs in their place), and
/// the origin's SYN carries only the family's default MSS; with
/// timestamps but no window scale, everything else is kept.
fn syn_with_fewer_options(hook: Hook, family: &'static Family) {
    let Some((_ns, mut tester)) = setup("spfewer", hook, family) else {
        return;
    };
    for (port, timestamps, wscale) in [(25002, false, true), (25003, true, false)] {
        let offer = Offer { timestamps, wscale };
        let mut flow = Flow::new(family, port, offer);
        syn_gets_a_cookie(&mut tester, hook, &mut flow);
        tester.check_rows(
            hook,
            &[Row {
                name: format!("{offer:?}: ACK -> the origin's SYN with what the cookie kept"),
                ingress: CLI0,
                input: flow.cookie_ack(0),
                action: XDP_REDIRECT,
                moves: vec![(Some(0), "to_origin")],
                output: Rewritten(flow.origin_syn()),
            }],
        );
        let pending = flow_state(&mut tester, &flow);
        assert_eq!(
            pending.map(|(state, _)| state),
            Some(FLOW_SYN_PROXY | FLOW_ORIGIN_PENDING),
            "{offer:?}: the cookie ACK opens an embryonic, pending flow"
        );
    }
}

/// Step 5: the origin's RST to a pending flow becomes the client's, and
/// the flow goes.
fn origin_refuses(hook: Hook, family: &'static Family) {
    let Some((_ns, mut tester)) = setup("sprst", hook, family) else {
        return;
    };
    let mut flow = Flow::new(family, 25001, EVERYTHING);
    syn_gets_a_cookie(&mut tester, hook, &mut flow);
    tester.check_rows(
        hook,
        &[
            Row {
                name: "ACK with the cookie: the edge's SYN to the origin".into(),
                ingress: CLI0,
                input: flow.cookie_ack(0),
                action: XDP_REDIRECT,
                moves: vec![(Some(0), "to_origin")],
                output: Rewritten(flow.origin_syn()),
            },
            Row {
                name: "the origin's RST: a RST to the client from cookie + 1".into(),
                ingress: ORG0,
                input: flow.origin_rst(),
                action: XDP_REDIRECT,
                moves: vec![(Some(0), "syn_proxy_origin_failed")],
                output: Rewritten(flow.client_rst()),
            },
        ],
    );
    assert_eq!(
        flow_state(&mut tester, &flow),
        None,
        "the refused flow is gone"
    );
}

/// Step 1: the SYN's answer, from which the flow learns the cookie and
/// the edge's TSval; nothing is kept.
fn syn_gets_a_cookie(tester: &mut Tester, hook: Hook, flow: &mut Flow) {
    let name = format!("SYN ({:?})", flow.offer);
    let input = flow.client_syn();
    assert!(checksums_verify(&input), "{name}: bad input fixture");
    let ran = tester.run_counted(hook, CLI0, &input, None);
    assert_eq!(
        (ran.action, ran.moves),
        // Out of the interface it came in on: a redirect to it (XDP's
        // by the device map, not XDP_TX, which on veth would not wake a
        // peer running no XDP).
        (
            hook.action(XDP_REDIRECT),
            vec![(Some(0), "syn_cookie_sent")]
        ),
        "{name}: out {}",
        hex(&ran.out)
    );
    let answer = parse_tcp(&ran.out).unwrap_or_else(|| panic!("{name}: {}", hex(&ran.out)));
    flow.cookie = answer.seq;
    match (flow.offer.timestamps, answer.timestamps()) {
        (true, Some((tsval, _))) => {
            assert_eq!(
                tsval & TS_LOW_BITS,
                flow.offer.ts_bits(),
                "{name}: the TSval {tsval:#x} names the client's window scale and SACK"
            );
            flow.edge_ts = tsval;
        }
        (false, None) => {}
        (_, got) => panic!("{name}: SYN-ACK timestamps {got:?}"),
    }
    assert_rewritten_to(&ran.out, &flow.edge_syn_ack());
    assert_eq!(
        flow_state(tester, flow),
        None,
        "{name}: the SYN proxy keeps nothing for a SYN"
    );
}

/// Step 2: a bad cookie, the good one, and client packets while the
/// origin has not answered (the client's window is 0: it sends none of
/// its data but its ACK again and window probes).
fn cookie_ack_rows(flow: &Flow) -> Vec<Row> {
    vec![
        Row {
            name: "ACK acknowledging the cookie off by 0x100: a bad cookie, dropped".into(),
            ingress: CLI0,
            input: flow.cookie_ack(flow.family.bad_cookie_off),
            action: XDP_DROP,
            moves: vec![(Some(0), "syn_cookie_bad")],
            output: Unchanged,
        },
        Row {
            name: "ACK with the cookie: the edge's SYN to the origin, the client's options kept"
                .into(),
            ingress: CLI0,
            input: flow.cookie_ack(0),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "to_origin")],
            output: Rewritten(flow.origin_syn()),
        },
        Row {
            name: "the client's ACK again while the origin is pending: the SYN again".into(),
            ingress: CLI0,
            input: flow.cookie_ack(0),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "syn_proxy_pending")],
            output: Rewritten(flow.origin_syn()),
        },
        Row {
            name: "a window probe while the origin is pending: the SYN again, no data".into(),
            ingress: CLI0,
            input: flow.client_probe(),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "syn_proxy_pending")],
            output: Rewritten(flow.origin_syn()),
        },
    ]
}

/// Step 3: the origin's SYN-ACK. At XDP it is handed up unchanged to TC
/// (which must send two packets: XDP cannot); at TC, and so after XDP
/// too, it leaves as the client's window update, the flow established
/// with its offsets. The edge's ACK to the origin is a clone
/// (bpf_clone_redirect) that BPF_PROG_TEST_RUN does not return: the
/// origin side of the handshake is covered by the netns tests.
fn origin_syn_ack_opens_the_flow(tester: &mut Tester, hook: Hook, flow: &Flow) {
    // Counted opened by the hook that opened the flow (its cookie ACK),
    // as its expiry will be: `flow_opened` for XDP's, though TC
    // establishes it.
    let mut opened = vec![
        (Some(0), "flow_opened"),
        (Some(0), "syn_proxy_opened"),
        (Some(0), "to_client"),
    ];
    opened.sort();
    match hook {
        Hook::Xdp => tester.check_up_to_tc(&UpToTc {
            name: "origin SYN-ACK",
            ingress: "org0",
            input: flow.origin_syn_ack(),
            xdp_moves: vec![(Some(0), "to_tc")],
            tc_action: TC_ACT_REDIRECT,
            tc_moves: opened,
            tc_out: Some(flow.window_update()),
        }),
        Hook::Tc => tester.check_rows(
            hook,
            &[Row {
                name: "origin SYN-ACK: the client's window update".into(),
                ingress: ORG0,
                input: flow.origin_syn_ack(),
                action: XDP_REDIRECT,
                moves: vec![
                    (Some(0), "flow_opened"),
                    (Some(0), "syn_proxy_opened"),
                    (Some(0), "to_client"),
                ],
                output: Rewritten(flow.window_update()),
            }],
        ),
    }
    let (state, value) = flow_state(tester, flow).expect("the opened flow");
    assert_eq!(
        state & (FLOW_SYN_PROXY | FLOW_ORIGIN_PENDING),
        FLOW_SYN_PROXY,
        "established, no longer pending"
    );
    assert_eq!(
        (value.seq_adj, value.ts_adj, value.origin_ws, value.edge_ws),
        (flow.seq_adj(), flow.ts_adj(), ORIGIN_WS, EDGE_WS),
        "the to-origin half's offsets and scales"
    );
}

/// The origin's SYN-ACK again (the edge's ACK was lost): this time the
/// packet itself becomes the edge's ACK, so BPF_PROG_TEST_RUN shows what
/// the first one's clone carried. XDP hands it up to TC.
fn origin_syn_ack_again_gets_the_edge_ack(tester: &mut Tester, hook: Hook, flow: &Flow) {
    let input = flow.origin_syn_ack();
    match hook {
        Hook::Xdp => tester.check_up_to_tc(&UpToTc {
            name: "origin SYN-ACK again",
            ingress: "org0",
            input,
            xdp_moves: vec![(Some(0), "to_tc")],
            tc_action: TC_ACT_REDIRECT,
            tc_moves: vec![(Some(0), "to_origin")],
            tc_out: Some(flow.edge_ack()),
        }),
        Hook::Tc => tester.check_rows(
            hook,
            &[Row {
                name: "origin SYN-ACK again: the edge's ACK to the origin".into(),
                ingress: ORG0,
                input,
                action: XDP_REDIRECT,
                moves: vec![(Some(0), "to_origin")],
                output: Rewritten(flow.edge_ack()),
            }],
        ),
    }
}

/// Step 4: data on the established flow, both ways.
fn data_rows(flow: &Flow) -> Vec<Row> {
    let sacks = [(100, 200), (300, 400)];
    vec![
        Row {
            name: "origin data: seq + seq_adj, TSval + ts_adj, window * 4".into(),
            ingress: ORG0,
            input: flow.origin_data(0, 10, 100, nop_ts, false),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "to_client")],
            output: Rewritten(flow.origin_data(0, 10, 100, nop_ts, true)),
        },
        Row {
            name: "client data acknowledging it: ack - seq_adj, TSecr - ts_adj".into(),
            ingress: CLI0,
            input: flow.client_data(15, &[], 10, nop_ts_nop_sack, false),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "to_origin")],
            output: Rewritten(flow.client_data(15, &[], 10, nop_ts_nop_sack, true)),
        },
        Row {
            name: "client SACK blocks (NOP NOP TS NOP NOP SACK): each edge - seq_adj".into(),
            ingress: CLI0,
            input: flow.client_data(15, &sacks, 10, nop_ts_nop_sack, false),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "to_origin")],
            output: Rewritten(flow.client_data(15, &sacks, 10, nop_ts_nop_sack, true)),
        },
        Row {
            name: "client SACK before TS, no NOPs: both translated".into(),
            ingress: CLI0,
            input: flow.client_data(15, &sacks, 10, sack_then_ts, false),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "to_origin")],
            output: Rewritten(flow.client_data(15, &sacks, 10, sack_then_ts, true)),
        },
        Row {
            name: "origin data, TS then EOL, a window past 65535 once rescaled: 65535".into(),
            ingress: ORG0,
            input: flow.origin_data(15, 20, 0xffff, ts_eol, false),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "to_client")],
            output: Rewritten(flow.origin_data(15, 20, 0xffff, ts_eol, true)),
        },
    ]
}

/// The flow's to-origin half, wherever it is (`FLOWS`, else
/// `NEW_FLOWS`): its state and value.
fn flow_state(tester: &mut Tester, flow: &Flow) -> Option<(u8, FlowValue)> {
    let key = FlowKey {
        src: addr16(flow.family.client),
        dst: addr16(flow.family.edge),
        src_port: flow.port,
        dst_port: EDGE_PORT,
        proto: ip_proto::TCP,
        _pad: [0; 3],
    };
    let established = tester.kernel().flows().expect("FLOWS").get(&key, 0).ok();
    let value = established.or_else(|| {
        tester
            .kernel()
            .new_flows()
            .expect("NEW_FLOWS")
            .get(&key, 0)
            .ok()
    })?;
    Some((value.state, value))
}
