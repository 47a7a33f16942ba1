//! The NAT fixtures as data: the config, the addresses and MACs of the
//! namespace, the frames, and the rows both hooks run
//! ([`rows`], [`handed_up_steps`], [`left_alone_steps`]).
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use tests::packet::{Macs, tcp_segment, udp_datagram};

use crate::fixture::{
    Hook, Move,
    Output::{Rewritten, Unchanged},
    Row, TC_ACT_OK, TC_ACT_REDIRECT, UpToTc, XDP_PASS, XDP_REDIRECT,
};

pub const CLI_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
pub const EDGE_CLI_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
pub const ORG_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
pub const EDGE_ORG_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];

pub const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
pub const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
pub const ORIGIN4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
pub const ORIGIN6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 2);
pub const SOURCE4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
pub const SOURCE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1);
pub const RANGE4: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 1);
pub const RANGE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1);
pub const DNS4: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 2);
pub const DNS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 2);
pub const V6ONLY4: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 3);
/// The agent-path app (PROXY headers: no fast path).
pub const AGENT4: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 4);

/// The interfaces frames arrive on.
pub const CLI0: Option<&str> = Some("cli0");
pub const ORG0: Option<&str> = Some("org0");

/// Four apps (three fast-path ones, then the agent's), the NAT at `hook`,
/// NAT ports from `nat_ports`. The SYN proxy is off: these rows are the
/// NAT's own (a SYN opens a flow); `xdp_synproxy` has the SYN proxy's.
pub fn config(hook: Hook, nat_ports: &str) -> String {
    let datapath = hook.edge_setting();
    format!(
        r#"{{
  "edge": {{"interfaces": ["cli0", "org0"], {datapath}
    "origin_source": {{"ipv4": "{SOURCE4}", "ipv6": "{SOURCE6}"}},
    "nat_ports": "{nat_ports}", "syn_proxy": "off"}},
  "apps": [
    {{"protocol": "tcp/1000-2000", "dns": {{"type": "ADDRESS", "name": "range.test"}},
      "edge_ips": {{"type": "static", "ips": ["{RANGE4}", "{RANGE6}"]}},
      "origin_direct": ["tcp://{ORIGIN4}:3000-4000", "tcp://[{ORIGIN6}]:3000-4000"]}},
    {{"protocol": "udp/53", "dns": {{"type": "ADDRESS", "name": "dns.test"}},
      "edge_ips": {{"type": "static", "ips": ["{DNS4}", "{DNS6}"]}},
      "origin_direct": ["udp://{ORIGIN4}:5353", "udp://[{ORIGIN6}]:5353"]}},
    {{"protocol": "tcp/22", "dns": {{"type": "ADDRESS", "name": "v6only.test"}},
      "edge_ips": {{"type": "static", "ips": ["{V6ONLY4}"]}},
      "origin_direct": ["tcp://[{ORIGIN6}]:22"]}},
    {{"protocol": "tcp/25", "dns": {{"type": "ADDRESS", "name": "agent.test"}},
      "edge_ips": {{"type": "static", "ips": ["{AGENT4}"]}}, "proxy_protocol": "v1",
      "origin_direct": ["tcp://{ORIGIN4}:25"]}}
  ]
}}"#
    )
}

pub const SYN: u8 = 0x02;
pub const SYN_ACK: u8 = 0x12;
pub const ACK: u8 = 0x10;
pub const RST: u8 = 0x04;

/// [`tcp_frame`] with sequence number `seq` (the others carry 1).
pub fn tcp_frame_seq(
    macs: Macs,
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: u8,
    seq: u32,
) -> Vec<u8> {
    let mut l4 = tests::packet::tcp_flags(src.1, dst.1, flags, b"payload");
    l4[4..8].copy_from_slice(&seq.to_be_bytes());
    let ip = tests::packet::ip_frame(macs, src.0.into(), dst.0.into(), 6, &l4);
    tests::packet::with_l4_checksum(ip)
}

/// Frames from the client arrive with the edge's MAC as destination.
pub const FROM_CLI: Macs = (EDGE_CLI_MAC, CLI_MAC);
pub const FROM_ORG: Macs = (EDGE_ORG_MAC, ORG_MAC);
pub const TO_ORG: Macs = (ORG_MAC, EDGE_ORG_MAC);
pub const TO_CLI: Macs = (CLI_MAC, EDGE_CLI_MAC);

/// A TCP segment carrying "payload", checksums filled in.
pub fn tcp_frame<A: Into<IpAddr>>(macs: Macs, src: (A, u16), dst: (A, u16), flags: u8) -> Vec<u8> {
    tcp_segment(macs, src, dst, flags, b"payload")
}

/// A UDP datagram carrying "query", checksums filled in.
pub fn udp_frame<A: Into<IpAddr>>(macs: Macs, src: (A, u16), dst: (A, u16)) -> Vec<u8> {
    udp_datagram(macs, src, dst, b"query", true)
}

/// [`udp_frame`] over IPv4 with a UDP checksum of 0 ("no checksum").
pub fn udp_unchecked(macs: Macs, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Vec<u8> {
    udp_datagram(macs, src, dst, b"query", false)
}

/// A TCP segment of two 1448-byte payloads over IPv4 (2950-byte frame):
/// what GRO hands TC, within the page BPF_PROG_TEST_RUN allows an skb.
pub fn gso_segment(macs: Macs, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Vec<u8> {
    let payload: Vec<u8> = (0..2 * 1448).map(|i| i as u8).collect();
    tcp_segment(macs, src, dst, ACK, &payload)
}

/// `frame` (untagged IPv4) with the "more fragments" bit set.
pub fn more_fragments(mut frame: Vec<u8>) -> Vec<u8> {
    frame[14 + 6] |= 0x20;
    frame
}

/// The fast path's rows, run in order on one program: replies find the
/// flows that earlier rows opened.
pub fn rows() -> Vec<Row> {
    // A flow counts opened when it becomes established (the client's ACK
    // after the SYN-ACK; a UDP reply), not at its first packet.
    let opened = |app, verdict| vec![(Some(app), verdict), (Some(app), "flow_opened")];
    let embryonic = |app, verdict| vec![(Some(app), verdict)];
    vec![
        Row {
            name: "tcp4 SYN to the range start opens an embryonic flow, keeps the client port"
                .into(),
            ingress: CLI0,
            input: tcp_frame(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), SYN),
            action: XDP_REDIRECT,
            moves: embryonic(0, "to_origin"),
            output: Rewritten(tcp_frame(TO_ORG, (SOURCE4, 25000), (ORIGIN4, 3000), SYN)),
        },
        Row {
            name: "tcp4 SYN-ACK from the origin goes back to the client".into(),
            ingress: ORG0,
            input: tcp_frame(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 25000), SYN_ACK),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "to_client")],
            output: Rewritten(tcp_frame(TO_CLI, (RANGE4, 1000), (CLIENT4, 25000), SYN_ACK)),
        },
        Row {
            name: "tcp4 ACK after the SYN-ACK: the flow is established (opened)".into(),
            ingress: CLI0,
            input: tcp_frame(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), ACK),
            action: XDP_REDIRECT,
            moves: opened(0, "to_origin"),
            output: Rewritten(tcp_frame(TO_ORG, (SOURCE4, 25000), (ORIGIN4, 3000), ACK)),
        },
        Row {
            name: "tcp4 ACK again: next hop from the flow entry, same frame out".into(),
            ingress: CLI0,
            input: tcp_frame(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), ACK),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "to_origin")],
            output: Rewritten(tcp_frame(TO_ORG, (SOURCE4, 25000), (ORIGIN4, 3000), ACK)),
        },
        Row {
            name: "tcp4 SYN to the range end lands on the origin range end".into(),
            ingress: CLI0,
            input: tcp_frame(FROM_CLI, (CLIENT4, 25001), (RANGE4, 2000), SYN),
            action: XDP_REDIRECT,
            moves: embryonic(0, "to_origin"),
            output: Rewritten(tcp_frame(TO_ORG, (SOURCE4, 25001), (ORIGIN4, 4000), SYN)),
        },
        Row {
            name: "tcp6 SYN mid-range, IPv6 origin and source".into(),
            ingress: CLI0,
            input: tcp_frame(FROM_CLI, (CLIENT6, 25002), (RANGE6, 1500), SYN),
            action: XDP_REDIRECT,
            moves: embryonic(0, "to_origin"),
            output: Rewritten(tcp_frame(TO_ORG, (SOURCE6, 25002), (ORIGIN6, 3500), SYN)),
        },
        Row {
            name: "tcp6 reply".into(),
            ingress: ORG0,
            input: tcp_frame(FROM_ORG, (ORIGIN6, 3500), (SOURCE6, 25002), SYN_ACK),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "to_client")],
            output: Rewritten(tcp_frame(TO_CLI, (RANGE6, 1500), (CLIENT6, 25002), SYN_ACK)),
        },
        Row {
            name: "udp4 with a checksum".into(),
            ingress: CLI0,
            input: udp_frame(FROM_CLI, (CLIENT4, 25003), (DNS4, 53)),
            action: XDP_REDIRECT,
            moves: embryonic(1, "to_origin"),
            output: Rewritten(udp_frame(TO_ORG, (SOURCE4, 25003), (ORIGIN4, 5353))),
        },
        Row {
            name: "udp4 reply: the flow is established (opened)".into(),
            ingress: ORG0,
            input: udp_frame(FROM_ORG, (ORIGIN4, 5353), (SOURCE4, 25003)),
            action: XDP_REDIRECT,
            moves: opened(1, "to_client"),
            output: Rewritten(udp_frame(TO_CLI, (DNS4, 53), (CLIENT4, 25003))),
        },
        Row {
            name: "udp4 without a checksum stays without one".into(),
            ingress: CLI0,
            input: udp_unchecked(FROM_CLI, (CLIENT4, 25004), (DNS4, 53)),
            action: XDP_REDIRECT,
            moves: embryonic(1, "to_origin"),
            output: Rewritten(udp_unchecked(TO_ORG, (SOURCE4, 25004), (ORIGIN4, 5353))),
        },
        Row {
            name: "udp6".into(),
            ingress: CLI0,
            input: udp_frame(FROM_CLI, (CLIENT6, 25005), (DNS6, 53)),
            action: XDP_REDIRECT,
            moves: embryonic(1, "to_origin"),
            output: Rewritten(udp_frame(TO_ORG, (SOURCE6, 25005), (ORIGIN6, 5353))),
        },
        Row {
            name: "tcp4 ACK with no flow is left to the stack".into(),
            ingress: CLI0,
            input: tcp_frame(FROM_CLI, (CLIENT4, 25006), (RANGE4, 1000), ACK),
            action: XDP_PASS,
            moves: vec![(Some(0), "no_flow")],
            output: Unchanged,
        },
        Row {
            name: "IPv4 client, app with only an IPv6 origin".into(),
            ingress: CLI0,
            input: tcp_frame(FROM_CLI, (CLIENT4, 25007), (V6ONLY4, 22), SYN),
            action: XDP_PASS,
            moves: vec![(Some(2), "no_origin")],
            output: Unchanged,
        },
        Row {
            name: "tcp4 to the range cut inside the TCP header".into(),
            ingress: CLI0,
            input: tcp_frame(FROM_CLI, (CLIENT4, 25008), (RANGE4, 1000), SYN)[..14 + 20 + 10]
                .to_vec(),
            action: XDP_PASS,
            moves: vec![(None, "malformed")],
            output: Unchanged,
        },
        Row {
            name: "a packet from the origin to no flow is not ours".into(),
            ingress: ORG0,
            input: tcp_frame(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 29999), ACK),
            action: XDP_PASS,
            moves: vec![(None, "no_listener")],
            output: Unchanged,
        },
    ]
}

/// With `datapath` tc and an app whose clients the access rules check (so
/// XDP has TCP work), XDP hands the app's packets up to TC untouched,
/// counted `to_tc`: the first packet (XDP opens no flow), and the reply of
/// the flow TC opened (its hook is TC).
pub fn handed_up_steps() -> Vec<UpToTc> {
    vec![
        UpToTc {
            name: "SYN",
            ingress: "cli0",
            input: tcp_frame(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), SYN),
            xdp_moves: vec![(Some(0), "to_tc")],
            tc_action: TC_ACT_REDIRECT,
            // Embryonic: counted opened once established.
            tc_moves: vec![(Some(0), "to_origin")],
            tc_out: Some(tcp_frame(TO_ORG, (SOURCE4, 25000), (ORIGIN4, 3000), SYN)),
        },
        UpToTc {
            name: "SYN-ACK",
            ingress: "org0",
            input: tcp_frame(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 25000), SYN_ACK),
            xdp_moves: vec![(Some(0), "to_tc")],
            tc_action: TC_ACT_REDIRECT,
            tc_moves: vec![(Some(0), "to_client")],
            tc_out: Some(tcp_frame(TO_CLI, (RANGE4, 1000), (CLIENT4, 25000), SYN_ACK)),
        },
    ]
}

/// With `datapath` tc and no access rules, no app needs XDP: XDP passes
/// TCP and UDP at once, unchanged and uncounted, and TC takes them: it
/// opens the fast-path flows and counts what it leaves to the stack.
pub fn left_alone_steps() -> Vec<UpToTc> {
    let up = |name, input, tc_action, tc_moves: Vec<Move>, tc_out| UpToTc {
        name,
        ingress: "cli0",
        input,
        xdp_moves: vec![],
        tc_action,
        tc_moves,
        tc_out,
    };
    vec![
        up(
            "TCP SYN",
            tcp_frame(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), SYN),
            TC_ACT_REDIRECT,
            vec![(Some(0), "to_origin")],
            Some(tcp_frame(TO_ORG, (SOURCE4, 25000), (ORIGIN4, 3000), SYN)),
        ),
        up(
            "UDP query",
            udp_frame(FROM_CLI, (CLIENT4, 25001), (DNS4, 53)),
            TC_ACT_REDIRECT,
            vec![(Some(1), "to_origin")],
            Some(udp_frame(TO_ORG, (SOURCE4, 25001), (ORIGIN4, 5353))),
        ),
        up(
            "SYN to the agent's app",
            tcp_frame(FROM_CLI, (CLIENT4, 25002), (AGENT4, 25), SYN),
            TC_ACT_OK,
            vec![(Some(3), "to_agent")],
            None,
        ),
        UpToTc {
            // A fragment has no TCP header for TC to parse: XDP counts it.
            xdp_moves: vec![(None, "fragment")],
            ..up(
                "first fragment of a TCP segment",
                more_fragments(tcp_frame(FROM_CLI, (CLIENT4, 25003), (RANGE4, 1000), ACK)),
                TC_ACT_OK,
                vec![],
                None,
            )
        },
        UpToTc {
            ingress: "org0",
            ..up(
                "ACK to no flow",
                tcp_frame(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 29999), ACK),
                TC_ACT_OK,
                vec![(None, "no_listener")],
                None,
            )
        },
    ]
}
