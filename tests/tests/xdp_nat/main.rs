//! BPF_PROG_TEST_RUN fixtures of the fast path (Katran style): each row is
//! an input frame and its ingress interface, the expected action, the
//! counters it must move and the exact output frame, whose checksums are
//! computed independently (full computation, not the program's incremental
//! one). Rows run in order on one program: replies find the flows that
//! earlier rows opened.
//!
//! The same rows run against both NAT programs (see [`Hook`]): the XDP
//! program with the default config, and the TC-ingress program with
//! `"datapath": "tc"` in edge (every app NATed at TC, and TC has both
//! protocols alone: no app needs XDP).
//!
//! The program runs in a namespace of its own with two veth pairs and
//! permanent neighbour entries, so the route lookup gives known MACs.
//!
//! CHECKSUM_PARTIAL skbs (the TCP checksum field holds the pseudo-header
//! sum alone, as after GRO's tcp_gro_complete) have no fixture:
//! BPF_PROG_TEST_RUN cannot make one (convert___skb_to_skb in
//! net/bpf/test_run.c takes no ip_summed; its skbs are CHECKSUM_NONE), and
//! a frame with a pseudo-header-only checksum would still be CHECKSUM_NONE
//! to the helpers. The netns TC test that moves 100 MB through GRO covers
//! it end to end.
use std::net::{Ipv4Addr, Ipv6Addr};

use aya::{TestRun as _, TestRunOptions};
use proxy_agent::{
    config::load_str,
    datapath::{
        loader::Datapath,
        maps::{addr16, map_contents},
    },
};
use proxy_common::{FlowKey, HOOK_TC, ip_proto};
mod common;

use common::{counts, moved};
use tests::{netns::Netns, packet::*, root_or_skip};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;
const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;
const TC_ACT_REDIRECT: u32 = 7;

const CLI_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x02];
const EDGE_CLI_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0x01];
const ORG_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
const EDGE_ORG_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];

const CLIENT4: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 2);
const ORIGIN4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
const ORIGIN6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 2);
const SOURCE4: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
const SOURCE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 2, 0, 0, 0, 0, 0, 1);
const RANGE4: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 1);
const RANGE6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1);
const DNS4: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 2);
const DNS6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 2);
const V6ONLY4: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 3);
/// The agent-path app (PROXY headers: no fast path).
const AGENT4: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 4);
/// Slots of the config's apps: three fast-path ones, then the agent's.
const APP_SLOTS: u32 = 4;

fn config(hook: Hook, nat_ports: &str) -> String {
    let datapath = hook.edge_setting();
    format!(
        r#"{{
  "edge": {{"interfaces": ["cli0", "org0"], {datapath}
    "origin_source": {{"ipv4": "{SOURCE4}", "ipv6": "{SOURCE6}"}},
    "nat_ports": "{nat_ports}"}},
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

/// The hook whose NAT program runs the fixtures. XDP sees every frame
/// first; with `datapath` tc it applies the access rules and passes the
/// app's packets up (`to_tc`) to the TC-ingress program, which NATs them,
/// or, when no app needs XDP (these configs), passes them at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    Xdp,
    Tc,
}

impl Hook {
    /// The edge's `datapath` member of the config (XDP: the default, unset).
    fn edge_setting(self) -> &'static str {
        match self {
            Self::Xdp => "",
            Self::Tc => r#""datapath": "tc","#,
        }
    }

    /// This hook's action for a fixture's XDP action.
    fn action(self, xdp: u32) -> u32 {
        match (self, xdp) {
            (Self::Xdp, _) => xdp,
            (Self::Tc, XDP_REDIRECT) => TC_ACT_REDIRECT,
            (Self::Tc, XDP_PASS) => TC_ACT_OK,
            (Self::Tc, XDP_DROP) => TC_ACT_SHOT,
            (Self::Tc, other) => panic!("XDP action {other} has no TC counterpart"),
        }
    }

    /// Whether the hook counts `verdict` in the global row. XDP counts
    /// every packet. TC, having both protocols alone in these configs,
    /// counts what it parses but leaves alone (`no_listener`); a packet it
    /// cannot parse is not known to be of its protocols, so not counted.
    fn counts_global(self, verdict: &str) -> bool {
        self == Self::Xdp || verdict != "malformed"
    }

    /// The name of `verdict` as this hook counts it: a flow opened at TC
    /// is `flow_opened_tc`.
    fn name_of(self, verdict: &'static str) -> &'static str {
        match (self, verdict) {
            (Self::Tc, "flow_opened") => "flow_opened_tc",
            _ => verdict,
        }
    }

    /// Runs `frame` through this hook's program as if received on
    /// `ingress`: (action, output frame).
    fn run(self, datapath: &mut Datapath, ingress: &str, frame: &[u8]) -> (u32, Vec<u8>) {
        self.run_gso(datapath, ingress, frame, None)
    }

    /// [`Hook::run_gso`], with the counters the run moved (each by one
    /// per entry, sorted).
    fn run_counted(
        self,
        datapath: &mut Datapath,
        ingress: &str,
        frame: &[u8],
        gso: Option<Gso>,
    ) -> (u32, Vec<u8>, Vec<Move>) {
        let before = counts(datapath, APP_SLOTS);
        let (action, out) = self.run_gso(datapath, ingress, frame, gso);
        let moves = moved(&before, &counts(datapath, APP_SLOTS));
        (action, out, moves)
    }

    /// [`Hook::run`], the TC program seeing a GSO skb of `gso` segments.
    /// XDP has no GSO (it runs before GRO): there it is just a big frame.
    fn run_gso(
        self,
        datapath: &mut Datapath,
        ingress: &str,
        frame: &[u8],
        gso: Option<Gso>,
    ) -> (u32, Vec<u8>) {
        match self {
            Self::Xdp => run_xdp(datapath, ingress, frame),
            Self::Tc => run_tc(datapath, ingress, frame, gso),
        }
    }
}

/// An skb's GSO fields: `segs` segments of `size` bytes of payload.
#[derive(Clone, Copy)]
struct Gso {
    size: u32,
    segs: u32,
}

const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const ACK: u8 = 0x10;

fn tcp4(
    macs: ([u8; 6], [u8; 6]),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    flags: u8,
) -> Vec<u8> {
    let l4 = tcp_flags(src.1, dst.1, flags, b"payload");
    let mut f = eth_macs(macs.0, macs.1, ETH_P_IPV4);
    f.extend(ipv4(src.0, dst.0, PROTO_TCP, l4.len(), &[], 0));
    f.extend(l4);
    with_l4_checksum(f)
}

fn tcp6(
    macs: ([u8; 6], [u8; 6]),
    src: (Ipv6Addr, u16),
    dst: (Ipv6Addr, u16),
    flags: u8,
) -> Vec<u8> {
    let l4 = tcp_flags(src.1, dst.1, flags, b"payload");
    let mut f = eth_macs(macs.0, macs.1, ETH_P_IPV6);
    f.extend(ipv6(src.0, dst.0, PROTO_TCP, l4.len()));
    f.extend(l4);
    with_l4_checksum(f)
}

/// UDP over IPv4; `checksum: false` leaves it 0 ("no checksum").
fn udp4(
    macs: ([u8; 6], [u8; 6]),
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    checksum: bool,
) -> Vec<u8> {
    let l4 = udp(src.1, dst.1, b"query");
    let mut f = eth_macs(macs.0, macs.1, ETH_P_IPV4);
    f.extend(ipv4(src.0, dst.0, PROTO_UDP, l4.len(), &[], 0));
    f.extend(l4);
    if checksum { with_l4_checksum(f) } else { f }
}

fn udp6(macs: ([u8; 6], [u8; 6]), src: (Ipv6Addr, u16), dst: (Ipv6Addr, u16)) -> Vec<u8> {
    let l4 = udp(src.1, dst.1, b"query");
    let mut f = eth_macs(macs.0, macs.1, ETH_P_IPV6);
    f.extend(ipv6(src.0, dst.0, PROTO_UDP, l4.len()));
    f.extend(l4);
    with_l4_checksum(f)
}

/// Frames from the client arrive with the edge's MAC as destination.
const FROM_CLI: ([u8; 6], [u8; 6]) = (EDGE_CLI_MAC, CLI_MAC);
const FROM_ORG: ([u8; 6], [u8; 6]) = (EDGE_ORG_MAC, ORG_MAC);
const TO_ORG: ([u8; 6], [u8; 6]) = (ORG_MAC, EDGE_ORG_MAC);
const TO_CLI: ([u8; 6], [u8; 6]) = (CLI_MAC, EDGE_CLI_MAC);

/// A counter that moved by one: (app slot, or None for the global row;
/// verdict name).
type Move = (Option<u32>, &'static str);

struct Row {
    name: &'static str,
    ingress: &'static str,
    input: Vec<u8>,
    /// The XDP action; the TC program's is its counterpart ([`Hook::action`]).
    action: u32,
    /// Counters that must move, by (app, verdict), each by one (global
    /// ones only where [`Hook::counts_global`] says so; named as XDP counts
    /// them, see [`Hook::name_of`]).
    moves: Vec<Move>,
    /// The exact output frame; `None`: unchanged input.
    output: Option<Vec<u8>>,
}

fn rows() -> Vec<Row> {
    let opened = |app, verdict| vec![(Some(app), verdict), (Some(app), "flow_opened")];
    vec![
        Row {
            name: "tcp4 SYN to the range start opens a flow, keeps the client port",
            ingress: "cli0",
            input: tcp4(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), SYN),
            action: XDP_REDIRECT,
            moves: opened(0, "to_origin"),
            output: Some(tcp4(TO_ORG, (SOURCE4, 25000), (ORIGIN4, 3000), SYN)),
        },
        Row {
            name: "tcp4 SYN-ACK from the origin goes back to the client",
            ingress: "org0",
            input: tcp4(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 25000), SYN_ACK),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "to_client")],
            output: Some(tcp4(TO_CLI, (RANGE4, 1000), (CLIENT4, 25000), SYN_ACK)),
        },
        Row {
            name: "tcp4 ACK of the open flow: no new flow",
            ingress: "cli0",
            input: tcp4(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), ACK),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "to_origin")],
            output: Some(tcp4(TO_ORG, (SOURCE4, 25000), (ORIGIN4, 3000), ACK)),
        },
        Row {
            name: "tcp4 ACK again: next hop from the flow entry, same frame out",
            ingress: "cli0",
            input: tcp4(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), ACK),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "to_origin")],
            output: Some(tcp4(TO_ORG, (SOURCE4, 25000), (ORIGIN4, 3000), ACK)),
        },
        Row {
            name: "tcp4 SYN to the range end lands on the origin range end",
            ingress: "cli0",
            input: tcp4(FROM_CLI, (CLIENT4, 25001), (RANGE4, 2000), SYN),
            action: XDP_REDIRECT,
            moves: opened(0, "to_origin"),
            output: Some(tcp4(TO_ORG, (SOURCE4, 25001), (ORIGIN4, 4000), SYN)),
        },
        Row {
            name: "tcp6 SYN mid-range, IPv6 origin and source",
            ingress: "cli0",
            input: tcp6(FROM_CLI, (CLIENT6, 25002), (RANGE6, 1500), SYN),
            action: XDP_REDIRECT,
            moves: opened(0, "to_origin"),
            output: Some(tcp6(TO_ORG, (SOURCE6, 25002), (ORIGIN6, 3500), SYN)),
        },
        Row {
            name: "tcp6 reply",
            ingress: "org0",
            input: tcp6(FROM_ORG, (ORIGIN6, 3500), (SOURCE6, 25002), SYN_ACK),
            action: XDP_REDIRECT,
            moves: vec![(Some(0), "to_client")],
            output: Some(tcp6(TO_CLI, (RANGE6, 1500), (CLIENT6, 25002), SYN_ACK)),
        },
        Row {
            name: "udp4 with a checksum",
            ingress: "cli0",
            input: udp4(FROM_CLI, (CLIENT4, 25003), (DNS4, 53), true),
            action: XDP_REDIRECT,
            moves: opened(1, "to_origin"),
            output: Some(udp4(TO_ORG, (SOURCE4, 25003), (ORIGIN4, 5353), true)),
        },
        Row {
            name: "udp4 reply",
            ingress: "org0",
            input: udp4(FROM_ORG, (ORIGIN4, 5353), (SOURCE4, 25003), true),
            action: XDP_REDIRECT,
            moves: vec![(Some(1), "to_client")],
            output: Some(udp4(TO_CLI, (DNS4, 53), (CLIENT4, 25003), true)),
        },
        Row {
            name: "udp4 without a checksum stays without one",
            ingress: "cli0",
            input: udp4(FROM_CLI, (CLIENT4, 25004), (DNS4, 53), false),
            action: XDP_REDIRECT,
            moves: opened(1, "to_origin"),
            output: Some(udp4(TO_ORG, (SOURCE4, 25004), (ORIGIN4, 5353), false)),
        },
        Row {
            name: "udp6",
            ingress: "cli0",
            input: udp6(FROM_CLI, (CLIENT6, 25005), (DNS6, 53)),
            action: XDP_REDIRECT,
            moves: opened(1, "to_origin"),
            output: Some(udp6(TO_ORG, (SOURCE6, 25005), (ORIGIN6, 5353))),
        },
        Row {
            name: "tcp4 ACK with no flow is left to the stack",
            ingress: "cli0",
            input: tcp4(FROM_CLI, (CLIENT4, 25006), (RANGE4, 1000), ACK),
            action: XDP_PASS,
            moves: vec![(Some(0), "no_flow")],
            output: None,
        },
        Row {
            name: "IPv4 client, app with only an IPv6 origin",
            ingress: "cli0",
            input: tcp4(FROM_CLI, (CLIENT4, 25007), (V6ONLY4, 22), SYN),
            action: XDP_PASS,
            moves: vec![(Some(2), "no_origin")],
            output: None,
        },
        Row {
            name: "tcp4 to the range cut inside the TCP header",
            ingress: "cli0",
            input: tcp4(FROM_CLI, (CLIENT4, 25008), (RANGE4, 1000), SYN)[..14 + 20 + 10].to_vec(),
            action: XDP_PASS,
            moves: vec![(None, "malformed")],
            output: None,
        },
        Row {
            name: "a packet from the origin to no flow is not ours",
            ingress: "org0",
            input: tcp4(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 29999), ACK),
            action: XDP_PASS,
            moves: vec![(None, "no_listener")],
            output: None,
        },
    ]
}

/// One namespace: cli0 (10.0.1.1) and org0 (10.0.2.1), each a veth with a
/// permanent neighbour of known MAC behind it, forwarding on.
fn namespace(tag: &str) -> Netns {
    let ns = Netns::create(&format!("spx-{tag}-{}", std::process::id())).expect("netns");
    let run = |args: &[&str]| {
        ns.run(args[0], &args[1..])
            .unwrap_or_else(|e| panic!("{args:?}: {e:#}"))
    };
    for (dev, peer, mac, v4, v6, neigh4, neigh6, neigh_mac) in [
        (
            "cli0",
            "cli1",
            "02:00:00:00:01:01",
            "10.0.1.1/24",
            "fd00:1::1/64",
            "10.0.1.2",
            "fd00:1::2",
            "02:00:00:00:01:02",
        ),
        (
            "org0",
            "org1",
            "02:00:00:00:02:01",
            "10.0.2.1/24",
            "fd00:2::1/64",
            "10.0.2.2",
            "fd00:2::2",
            "02:00:00:00:02:02",
        ),
    ] {
        run(&[
            "ip", "link", "add", dev, "address", mac, "type", "veth", "peer", "name", peer,
        ]);
        run(&["ip", "link", "set", dev, "up"]);
        run(&["ip", "link", "set", peer, "up"]);
        run(&["ip", "addr", "add", v4, "dev", dev]);
        run(&["ip", "-6", "addr", "add", v6, "dev", dev, "nodad"]);
        run(&[
            "ip",
            "neigh",
            "replace",
            neigh4,
            "lladdr",
            neigh_mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
        run(&[
            "ip",
            "-6",
            "neigh",
            "replace",
            neigh6,
            "lladdr",
            neigh_mac,
            "dev",
            dev,
            "nud",
            "permanent",
        ]);
    }
    run(&[
        "sysctl",
        "-q",
        "-w",
        "net.ipv4.ip_forward=1",
        "net.ipv6.conf.all.forwarding=1",
    ]);
    ns
}

fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).expect("name");
    // SAFETY: c is NUL-terminated.
    let index = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(index, 0, "interface {name} in this thread's namespace");
    index
}

/// The datapath with `hook`'s config and the programs it runs loaded (with
/// `datapath` tc both: XDP still sees every frame first).
fn datapath(hook: Hook, nat_ports: &str) -> Datapath {
    datapath_of(&config(hook, nat_ports), hook == Hook::Tc)
}

/// The datapath with the maps of `config` and the XDP program loaded,
/// the TC program too when `tc`.
fn datapath_of(config: &str, tc: bool) -> Datapath {
    let config = load_str(config, false).expect("valid config").config;
    let mut datapath = Datapath::load().expect("load");
    datapath.program().expect("verifier accepts the program");
    if tc {
        datapath
            .tc_program()
            .expect("verifier accepts the TC program");
    }
    datapath
        .sync(&map_contents(&config).expect("fits"))
        .expect("sync");
    datapath
        .add_redirect_targets(&["cli0".into(), "org0".into()])
        .expect("redirect map");
    datapath
}

/// Runs one frame through the XDP program as if received on `ingress`.
fn run_xdp(datapath: &mut Datapath, ingress: &str, frame: &[u8]) -> (u32, Vec<u8>) {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index, egress_ifindex.
    let md: [u32; 6] = [0, frame.len() as u32, 0, ifindex(ingress), 0, 0];
    let ctx: Vec<u8> = md.iter().flat_map(|v| v.to_ne_bytes()).collect();
    let mut out = vec![0u8; frame.len() + 256];
    let result = datapath
        .program()
        .expect("program")
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

/// struct __sk_buff (linux/bpf.h): its size and the offsets of the fields
/// set here. BPF_PROG_TEST_RUN takes only mark, priority, ingress_ifindex,
/// ifindex, cb, tstamp, wire_len, gso_segs, gso_size and hwtstamp from
/// ctx_in; every other byte must be 0.
const SKB_SIZE: usize = 192;
const SKB_INGRESS_IFINDEX: usize = 36;
const SKB_IFINDEX: usize = 40;
const SKB_GSO_SEGS: usize = 164;
const SKB_GSO_SIZE: usize = 176;

/// Runs one frame through the TC-ingress program as if received on
/// `ingress` (the skb's device and its `ingress_ifindex`).
fn run_tc(
    datapath: &mut Datapath,
    ingress: &str,
    frame: &[u8],
    gso: Option<Gso>,
) -> (u32, Vec<u8>) {
    let mut skb = [0u8; SKB_SIZE];
    let mut set = |offset: usize, value: u32| {
        skb[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    };
    let index = ifindex(ingress);
    set(SKB_IFINDEX, index);
    set(SKB_INGRESS_IFINDEX, index);
    if let Some(gso) = gso {
        set(SKB_GSO_SIZE, gso.size);
        set(SKB_GSO_SEGS, gso.segs);
    }
    let mut out = vec![0u8; frame.len() + 256];
    let result = datapath
        .tc_program()
        .expect("TC program")
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(&skb),
            ..Default::default()
        })
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(result.data_size_out as usize);
    (result.return_value, out)
}

fn hex(frame: &[u8]) -> String {
    frame.iter().map(|b| format!("{b:02x}")).collect()
}

/// Two tests per body taking a [`Hook`]: `body::xdp` and `body::tc`.
macro_rules! for_both_hooks {
    ($($body:ident),+ $(,)?) => {$(
        mod $body {
            #[test]
            fn xdp() {
                super::$body(super::Hook::Xdp);
            }

            #[test]
            fn tc() {
                super::$body(super::Hook::Tc);
            }
        }
    )+};
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
    let ns = namespace(&format!("nat-{hook:?}"));
    ns.enter_this_thread().expect("enter netns");
    let mut datapath = datapath(hook, "20000-29999");
    let mut failures = Vec::new();
    for row in rows() {
        // Rows the program must leave alone may be malformed on purpose.
        let rewritten = row.output.is_some();
        assert!(
            !rewritten || checksums_verify(&row.input),
            "{}: bad input fixture",
            row.name
        );
        let (action, out, moves) = hook.run_counted(&mut datapath, row.ingress, &row.input, None);
        let want_action = hook.action(row.action);
        let mut expected_moves: Vec<_> = row
            .moves
            .iter()
            .copied()
            .filter(|(app, verdict)| app.is_some() || hook.counts_global(verdict))
            .map(|(app, verdict)| (app, hook.name_of(verdict)))
            .collect();
        expected_moves.sort();
        let expected_out = row.output.clone().unwrap_or_else(|| row.input.clone());
        if action != want_action || moves != expected_moves || out != expected_out {
            failures.push(format!(
                "{}:\n  action {action} (want {want_action}), moved {moves:?} (want {expected_moves:?})\n  out  {}\n  want {}",
                row.name,
                hex(&out),
                hex(&expected_out)
            ));
        }
        if rewritten && !checksums_verify(&out) {
            failures.push(format!("{}: output checksums do not verify", row.name));
        }
    }
    assert!(failures.is_empty(), "{hook:?}:\n{}", failures.join("\n"));
}

fn a_client_port_outside_the_nat_range_gets_one_inside(hook: Hook) {
    if !root_or_skip(&format!(
        "a_client_port_outside_the_nat_range_gets_one_inside ({hook:?})"
    )) {
        return;
    }
    let ns = namespace(&format!("natport-{hook:?}"));
    ns.enter_this_thread().expect("enter netns");
    let mut datapath = datapath(hook, "20000-29999");
    let input = tcp4(FROM_CLI, (CLIENT4, 40000), (RANGE4, 1000), SYN);
    let (action, out) = hook.run(&mut datapath, "cli0", &input);
    assert_eq!(action, hook.action(XDP_REDIRECT));
    assert!(checksums_verify(&out));
    let nat_port = u16::from_be_bytes([out[34], out[35]]);
    // Folded into the range: 20000 + (40000 - 20000) mod 10000.
    assert_eq!(nat_port, 20000);
    // The reply to that port finds the client again.
    let reply = tcp4(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, nat_port), SYN_ACK);
    let (action, out) = hook.run(&mut datapath, "org0", &reply);
    assert_eq!(action, hook.action(XDP_REDIRECT));
    assert_eq!(out, tcp4(TO_CLI, (RANGE4, 1000), (CLIENT4, 40000), SYN_ACK));
    // A restarted agent (fresh maps, empty flow table) gives the same
    // client tuple the same NAT port, so the origin sees the client's
    // reused tuple where it saw it before, not on a port whose TIME_WAIT
    // entry belongs to another client connection; another client port
    // gets another NAT port.
    let mut restarted = datapath_of(&config(hook, "20000-29999"), hook == Hook::Tc);
    let (_, again) = hook.run(&mut restarted, "cli0", &input);
    assert_eq!(u16::from_be_bytes([again[34], again[35]]), nat_port);
    let other = tcp4(FROM_CLI, (CLIENT4, 40001), (RANGE4, 1000), SYN);
    let (_, out) = hook.run(&mut restarted, "cli0", &other);
    assert_eq!(u16::from_be_bytes([out[34], out[35]]), 20001);
    // A client port whose fold is taken gets a hashed port in the range.
    let taken = tcp4(FROM_CLI, (CLIENT4, 30000), (RANGE4, 1000), SYN);
    let (action, out) = hook.run(&mut restarted, "cli0", &taken);
    assert_eq!(action, hook.action(XDP_REDIRECT));
    let hashed = u16::from_be_bytes([out[34], out[35]]);
    assert!(
        (20002..=29999).contains(&hashed),
        "NAT port {hashed} for a client port folding onto 20000"
    );
}

fn no_free_nat_port_drops_and_counts(hook: Hook) {
    if !root_or_skip(&format!("no_free_nat_port_drops_and_counts ({hook:?})")) {
        return;
    }
    let ns = namespace(&format!("natfull-{hook:?}"));
    ns.enter_this_thread().expect("enter netns");
    // One NAT port: the second client toward the same origin port has none.
    let mut datapath = datapath(hook, "20000-20000");
    let first = tcp4(FROM_CLI, (CLIENT4, 20000), (RANGE4, 1000), SYN);
    let redirect = hook.action(XDP_REDIRECT);
    assert_eq!(hook.run(&mut datapath, "cli0", &first).0, redirect);
    let other_client = Ipv4Addr::new(10, 0, 1, 3);
    let second = tcp4(FROM_CLI, (other_client, 20000), (RANGE4, 1000), SYN);
    let (action, _, moves) = hook.run_counted(&mut datapath, "cli0", &second, None);
    assert_eq!(action, hook.action(XDP_DROP));
    assert_eq!(moves, vec![(Some(0), "nat_failed")]);
    // Another origin port is another NAT tuple: that one still fits.
    let third = tcp4(FROM_CLI, (other_client, 20000), (RANGE4, 1001), SYN);
    assert_eq!(hook.run(&mut datapath, "cli0", &third).0, redirect);
}

/// A TCP segment of two 1448-byte payloads over IPv4 (2950-byte frame):
/// what GRO hands TC, within the page BPF_PROG_TEST_RUN allows an skb.
fn gso_segment(macs: ([u8; 6], [u8; 6]), src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Vec<u8> {
    let payload: Vec<u8> = (0..2 * 1448).map(|i| i as u8).collect();
    let l4 = tcp_flags(src.1, dst.1, ACK, &payload);
    let mut f = eth_macs(macs.0, macs.1, ETH_P_IPV4);
    f.extend(ipv4(src.0, dst.0, PROTO_TCP, l4.len(), &[], 0));
    f.extend(l4);
    with_l4_checksum(f)
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
    let ns = namespace(&format!("natgso-{hook:?}"));
    ns.enter_this_thread().expect("enter netns");
    let mut datapath = datapath(hook, "20000-29999");
    let syn = tcp4(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), SYN);
    assert_eq!(
        hook.run(&mut datapath, "cli0", &syn).0,
        hook.action(XDP_REDIRECT)
    );
    let input = gso_segment(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 25000));
    assert!(checksums_verify(&input), "bad input fixture");
    let gso = Gso {
        size: 1448,
        segs: 2,
    };
    let (action, out, moves) = hook.run_counted(&mut datapath, "org0", &input, Some(gso));
    let (want_action, want_moves, macs) = match hook {
        Hook::Tc => (TC_ACT_REDIRECT, vec![(Some(0), "to_client")], TO_CLI),
        Hook::Xdp => (XDP_PASS, vec![(Some(0), "too_big")], FROM_ORG),
    };
    let want = gso_segment(macs, (RANGE4, 1000), (CLIENT4, 25000));
    assert_eq!((action, moves), (want_action, want_moves));
    assert!(out == want, "out  {}\nwant {}", hex(&out), hex(&want));
    assert!(checksums_verify(&out), "output checksums do not verify");
}

/// With `datapath` tc and an app whose clients the access rules check (so
/// XDP has TCP work), XDP hands the app's packets up to TC untouched,
/// counted `to_tc`: the first packet (XDP opens no flow), and the reply of
/// the flow TC opened (its hook is TC).
#[test]
fn xdp_hands_tc_apps_up_to_tc() {
    if !root_or_skip("xdp_hands_tc_apps_up_to_tc") {
        return;
    }
    let ns = namespace("natup");
    ns.enter_this_thread().expect("enter netns");
    let firewalled = config(Hook::Tc, "20000-29999").replacen(
        r#""protocol": "tcp/1000-2000","#,
        r#""protocol": "tcp/1000-2000", "ip_firewall": true,"#,
        1,
    );
    let mut datapath = datapath_of(&firewalled, true);
    let steps = [
        UpToTc {
            name: "SYN",
            ingress: "cli0",
            input: tcp4(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), SYN),
            xdp_moves: vec![(Some(0), "to_tc")],
            tc_action: TC_ACT_REDIRECT,
            tc_moves: vec![(Some(0), "flow_opened_tc"), (Some(0), "to_origin")],
            tc_out: Some(tcp4(TO_ORG, (SOURCE4, 25000), (ORIGIN4, 3000), SYN)),
        },
        UpToTc {
            name: "SYN-ACK",
            ingress: "org0",
            input: tcp4(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 25000), SYN_ACK),
            xdp_moves: vec![(Some(0), "to_tc")],
            tc_action: TC_ACT_REDIRECT,
            tc_moves: vec![(Some(0), "to_client")],
            tc_out: Some(tcp4(TO_CLI, (RANGE4, 1000), (CLIENT4, 25000), SYN_ACK)),
        },
    ];
    for step in &steps {
        step.check(&mut datapath);
    }
}

/// One frame through XDP, then TC, as the kernel runs them: XDP must pass
/// it up unchanged, moving `xdp_moves`; TC must end with `tc_action`,
/// moving `tc_moves`, with `tc_out` as output (None: the input unchanged).
struct UpToTc {
    name: &'static str,
    ingress: &'static str,
    input: Vec<u8>,
    xdp_moves: Vec<Move>,
    tc_action: u32,
    tc_moves: Vec<Move>,
    tc_out: Option<Vec<u8>>,
}

impl UpToTc {
    fn check(&self, datapath: &mut Datapath) {
        let name = self.name;
        let (action, out, moves) = Hook::Xdp.run_counted(datapath, self.ingress, &self.input, None);
        assert_eq!(
            (action, moves),
            (XDP_PASS, self.xdp_moves.clone()),
            "XDP, {name}"
        );
        assert!(out == self.input, "XDP changed the {name}: {}", hex(&out));
        let (action, out, moves) = Hook::Tc.run_counted(datapath, self.ingress, &self.input, None);
        assert_eq!(
            (action, moves),
            (self.tc_action, self.tc_moves.clone()),
            "TC, {name}"
        );
        let want = self.tc_out.as_ref().unwrap_or(&self.input);
        assert!(
            out == *want,
            "TC, {name}:\nout  {}\nwant {}",
            hex(&out),
            hex(want)
        );
    }
}

/// With `datapath` tc and no access rules, no app needs XDP: XDP (attached
/// all the same, as for an XDP app of the other protocol under `auto`)
/// passes TCP and UDP at once, unchanged and uncounted, and TC takes them:
/// it opens the fast-path flows and counts what it leaves to the stack.
#[test]
fn xdp_leaves_protocols_tc_has_alone() {
    if !root_or_skip("xdp_leaves_protocols_tc_has_alone") {
        return;
    }
    let ns = namespace("natalone");
    ns.enter_this_thread().expect("enter netns");
    let mut datapath = datapath(Hook::Tc, "20000-29999");
    let up = |name, input, tc_action, tc_moves, tc_out| UpToTc {
        name,
        ingress: "cli0",
        input,
        xdp_moves: vec![],
        tc_action,
        tc_moves,
        tc_out,
    };
    let steps = [
        up(
            "TCP SYN",
            tcp4(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), SYN),
            TC_ACT_REDIRECT,
            vec![(Some(0), "flow_opened_tc"), (Some(0), "to_origin")],
            Some(tcp4(TO_ORG, (SOURCE4, 25000), (ORIGIN4, 3000), SYN)),
        ),
        up(
            "UDP query",
            udp4(FROM_CLI, (CLIENT4, 25001), (DNS4, 53), true),
            TC_ACT_REDIRECT,
            vec![(Some(1), "flow_opened_tc"), (Some(1), "to_origin")],
            Some(udp4(TO_ORG, (SOURCE4, 25001), (ORIGIN4, 5353), true)),
        ),
        up(
            "SYN to the agent's app",
            tcp4(FROM_CLI, (CLIENT4, 25002), (AGENT4, 25), SYN),
            TC_ACT_OK,
            vec![(Some(3), "to_agent")],
            None,
        ),
        UpToTc {
            // A fragment has no TCP header for TC to parse: XDP counts it.
            xdp_moves: vec![(None, "fragment")],
            ..up(
                "first fragment of a TCP segment",
                more_fragments(tcp4(FROM_CLI, (CLIENT4, 25003), (RANGE4, 1000), ACK)),
                TC_ACT_OK,
                vec![],
                None,
            )
        },
        UpToTc {
            ingress: "org0",
            ..up(
                "ACK to no flow",
                tcp4(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 29999), ACK),
                TC_ACT_OK,
                vec![(None, "no_listener")],
                None,
            )
        },
    ];
    for step in &steps {
        step.check(&mut datapath);
    }
}

/// `frame` (untagged IPv4) with the "more fragments" bit set.
fn more_fragments(mut frame: Vec<u8>) -> Vec<u8> {
    frame[14 + 6] |= 0x20;
    frame
}

/// TC rewrites a flow XDP opened when one of its packets reaches it: after
/// a live change gives TC the protocol alone, XDP passes the flows it
/// opened before, and they go on at TC rather than being reset.
#[test]
fn tc_carries_on_a_flow_xdp_opened() {
    if !root_or_skip("tc_carries_on_a_flow_xdp_opened") {
        return;
    }
    let ns = namespace("nathandover");
    ns.enter_this_thread().expect("enter netns");
    let mut datapath = datapath_of(&config(Hook::Xdp, "20000-29999"), true);
    let syn = tcp4(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), SYN);
    assert_eq!(Hook::Xdp.run(&mut datapath, "cli0", &syn).0, XDP_REDIRECT);
    let syn_ack = tcp4(FROM_ORG, (ORIGIN4, 3000), (SOURCE4, 25000), SYN_ACK);
    let (action, out, moves) = Hook::Tc.run_counted(&mut datapath, "org0", &syn_ack, None);
    assert_eq!(
        (action, moves),
        (TC_ACT_REDIRECT, vec![(Some(0), "to_client")])
    );
    let want = tcp4(TO_CLI, (RANGE4, 1000), (CLIENT4, 25000), SYN_ACK);
    assert!(out == want, "out  {}\nwant {}", hex(&out), hex(&want));
    assert!(checksums_verify(&out), "output checksums do not verify");
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
    let ns = namespace("natpeer");
    ns.enter_this_thread().expect("enter netns");
    // One CPU, so the XDP flow below fills the scratch slot TC then uses.
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
    let auto = config(Hook::Tc, "20000-29999").replacen(
        r#""datapath": "tc","#,
        r#""datapath": "auto","#,
        1,
    );
    let mut datapath = datapath_of(&auto, true);
    let syn = tcp4(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), SYN);
    assert_eq!(Hook::Tc.run(&mut datapath, "cli0", &syn).0, TC_ACT_REDIRECT);
    let query = udp4(FROM_CLI, (CLIENT4, 25001), (DNS4, 53), true);
    assert_eq!(Hook::Xdp.run(&mut datapath, "cli0", &query).0, XDP_REDIRECT);
    let key = |src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)| FlowKey {
        src: addr16(src.0.into()),
        dst: addr16(dst.0.into()),
        src_port: src.1,
        dst_port: dst.1,
        proto: ip_proto::TCP,
        _pad: [0; 3],
    };
    let to_origin = key((CLIENT4, 25000), (RANGE4, 1000));
    let to_client = key((ORIGIN4, 3000), (SOURCE4, 25000));
    {
        let mut flows = datapath.flows().expect("flow map");
        flows.remove(&to_client).expect("the reply half");
        // Last seen long ago: the next packet refreshes the other half.
        let mut half = flows.get(&to_origin, 0).expect("the client half");
        assert_eq!(half.hook, HOOK_TC);
        half.last_seen_ns = 0;
        flows
            .insert(to_origin, half, 0)
            .expect("age the client half");
    }
    let ack = tcp4(FROM_CLI, (CLIENT4, 25000), (RANGE4, 1000), ACK);
    assert_eq!(Hook::Tc.run(&mut datapath, "cli0", &ack).0, TC_ACT_REDIRECT);
    let put_back = datapath
        .flows()
        .expect("flow map")
        .get(&to_client, 0)
        .expect("the reply half is back");
    assert_eq!(put_back.hook, HOOK_TC, "{put_back:?}");
}
