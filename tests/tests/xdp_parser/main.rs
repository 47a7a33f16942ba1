//! BPF_PROG_TEST_RUN fixtures for the XDP parser and listener lookup: each
//! row is a frame and the one counter (app or global row, verdict) it must
//! move. Adding a case is adding a row.
use std::net::{Ipv4Addr, Ipv6Addr};

use aya::maps::HashMap;
use proxy_agent::{
    config::load_str,
    datapath::{loader::Datapath, maps::map_contents, stats},
};
use proxy_common::{ListenerKey, ListenerValue, Verdict, ip_proto, map_names, v4_mapped};
mod common;

use common::{counts, moved, run_frame};
use tests::{packet::*, root_or_skip};

const XDP_PASS: u32 = 2;
const APP_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 1);
const APP_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1);

/// app 0: tcp/8080, app 1: udp/5300-5310, both on APP_V4 and APP_V6. Both
/// send PROXY headers, so the kernel hands their packets to the agent: these
/// fixtures are about parsing and lookup (the NAT has its own, xdp_nat.rs).
const CONFIG: &str = r#"{
  "edge": {"interfaces": ["lo"]},
  "apps": [
    {"protocol": "tcp/8080", "dns": {"type": "ADDRESS", "name": "tcp.test"},
     "edge_ips": {"type": "static", "ips": ["10.0.100.1", "fd00:100::1"]},
     "origin_direct": ["tcp://10.0.2.2:80"], "proxy_protocol": "v1"},
    {"protocol": "udp/5300-5310", "dns": {"type": "ADDRESS", "name": "udp.test"},
     "edge_ips": {"type": "static", "ips": ["10.0.100.1", "fd00:100::1"]},
     "origin_direct": ["udp://10.0.2.2:6300-6310"], "proxy_protocol": "simple"}
  ]
}"#;

struct Case {
    name: String,
    frame: Vec<u8>,
    app: Option<u32>,
    verdict: Verdict,
}

fn case(name: impl Into<String>, frame: Vec<u8>, app: Option<u32>, verdict: Verdict) -> Case {
    Case {
        name: name.into(),
        frame,
        app,
        verdict,
    }
}

fn tcp4(dst_port: u16) -> Vec<u8> {
    frame4(APP_V4, PROTO_TCP, &tcp(40000, dst_port))
}

fn cases() -> Vec<Case> {
    use Verdict::*;
    let mut cases = vec![
        case("tcp4 to listener", tcp4(8080), Some(0), ToAgent),
        case(
            "tcp6 to listener",
            frame6(APP_V6, PROTO_TCP, &tcp(40000, 8080)),
            Some(0),
            ToAgent,
        ),
        case(
            "udp4 to range start",
            frame4(APP_V4, PROTO_UDP, &udp(40000, 5300, b"q")),
            Some(1),
            ToAgent,
        ),
        case(
            "udp6 to range end",
            frame6(APP_V6, PROTO_UDP, &udp(40000, 5310, b"q")),
            Some(1),
            ToAgent,
        ),
        case(
            "udp4 one past the range",
            frame4(APP_V4, PROTO_UDP, &udp(40000, 5311, b"q")),
            None,
            NoListener,
        ),
        case("tcp4 to a port no app has", tcp4(9090), None, NoListener),
        case(
            "udp4 to the tcp app's port",
            frame4(APP_V4, PROTO_UDP, &udp(40000, 8080, b"q")),
            None,
            NoListener,
        ),
        case(
            "tcp4 to another address",
            frame4(Ipv4Addr::new(10, 0, 100, 2), PROTO_TCP, &tcp(1, 8080)),
            None,
            NoListener,
        ),
        case("arp", arp(), None, NotIp),
        case(
            "icmp4",
            frame4(APP_V4, PROTO_ICMP, &[8, 0, 0, 0, 0, 0, 0, 0]),
            None,
            OtherProtocol,
        ),
        case(
            "icmp4 destination unreachable",
            frame4(APP_V4, PROTO_ICMP, &[3, 3, 0, 0, 0, 0, 0, 0]),
            None,
            IcmpError,
        ),
        case(
            "icmp6 packet too big",
            frame6(APP_V6, 58, &[2, 0, 0, 0, 0, 0, 5, 0]),
            None,
            IcmpError,
        ),
        case(
            "icmp6 echo request",
            frame6(APP_V6, 58, &[128, 0, 0, 0, 0, 0, 0, 0]),
            None,
            OtherProtocol,
        ),
        case(
            "ipv6 carrying an IPv4-mapped destination",
            frame6(
                "::ffff:10.0.100.1".parse().expect("ip"),
                PROTO_TCP,
                &tcp(40000, 8080),
            ),
            None,
            Malformed,
        ),
        case(
            "ipv6 with a fragment header",
            frame6(APP_V6, IPV6_FRAGMENT, &[PROTO_TCP, 0, 0, 1, 0, 0, 0, 1]),
            None,
            Fragment,
        ),
        case(
            "tcp4 with data offset 4",
            tcp4_custom(&[], 0, 4),
            None,
            Malformed,
        ),
        case(
            "ipv4 first fragment (MF set)",
            tcp4_custom(&[], 0x2000, 5),
            None,
            Fragment,
        ),
        case(
            "ipv4 later fragment",
            tcp4_custom(&[], 0x0010, 5),
            None,
            Fragment,
        ),
        case(
            "ipv4 with options to listener",
            tcp4_custom(&[1, 1, 1, 0], 0, 5),
            Some(0),
            ToAgent,
        ),
        case(
            "ipv4 with IHL 4",
            set_byte(tcp4(8080), 14, 0x44),
            None,
            Malformed,
        ),
        case(
            "ethertype ipv4 carrying version 6",
            set_byte(tcp4(8080), 14, 0x65),
            None,
            Malformed,
        ),
        case(
            "ethertype ipv6 carrying version 4",
            set_byte(frame6(APP_V6, PROTO_TCP, &tcp(1, 8080)), 14, 0x40),
            None,
            Malformed,
        ),
        case("802.1Q tagged tcp4", vlan_tcp4(&[7]), Some(0), ToAgent),
        case("QinQ tagged tcp4", vlan_tcp4(&[7, 8]), Some(0), ToAgent),
        case(
            "three tags: only two are parsed",
            vlan_tcp4(&[7, 8, 9]),
            None,
            NotIp,
        ),
    ];
    // Truncated at every byte from the end of Ethernet to the end of each
    // header: the parser must say Malformed, never read past the end.
    let full4 = tcp4(8080);
    for len in 14..full4.len() {
        cases.push(case(
            format!("tcp4 cut at {len}"),
            full4[..len].to_vec(),
            None,
            Malformed,
        ));
    }
    let full6 = frame6(APP_V6, PROTO_UDP, &udp(1, 5300, b""));
    for len in 14..full6.len() {
        cases.push(case(
            format!("udp6 cut at {len}"),
            full6[..len].to_vec(),
            None,
            Malformed,
        ));
    }
    let vlan = vlan_tcp4(&[7, 8]);
    for len in 14..22 {
        cases.push(case(
            format!("QinQ cut at {len}"),
            vlan[..len].to_vec(),
            None,
            Malformed,
        ));
    }
    let with_options = tcp4_custom(&[1, 1, 1, 0], 0, 5);
    cases.push(case(
        "ipv4 options cut short",
        with_options[..14 + 22].to_vec(),
        None,
        Malformed,
    ));
    cases
}

fn tcp4_custom(options: &[u8], frags: u16, data_offset: u8) -> Vec<u8> {
    let l4 = tcp_with_offset(40000, 8080, data_offset);
    let mut f = eth(ETH_P_IPV4, &[]);
    f.extend(ipv4(
        Ipv4Addr::new(10, 0, 1, 2),
        APP_V4,
        PROTO_TCP,
        l4.len(),
        options,
        frags,
    ));
    f.extend(l4);
    f
}

fn vlan_tcp4(tags: &[u16]) -> Vec<u8> {
    let mut f = eth(ETH_P_IPV4, tags);
    let l4 = tcp(40000, 8080);
    f.extend(ipv4(
        Ipv4Addr::new(10, 0, 1, 2),
        APP_V4,
        PROTO_TCP,
        l4.len(),
        &[],
        0,
    ));
    f.extend(l4);
    f
}

fn arp() -> Vec<u8> {
    let mut f = eth(ETH_P_ARP, &[]);
    f.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[0; 20]);
    f
}

fn set_byte(mut frame: Vec<u8>, at: usize, value: u8) -> Vec<u8> {
    frame[at] = value;
    frame
}

fn loaded_datapath() -> Datapath {
    let config = load_str(CONFIG, false).expect("valid test config").config;
    let mut datapath = Datapath::load().expect("load XDP object");
    datapath.program().expect("verifier accepts the program");
    datapath
        .sync(&map_contents(&config).expect("fits"))
        .expect("fill maps");
    datapath
}

#[test]
fn every_fixture_moves_exactly_its_counter() {
    if !root_or_skip("every_fixture_moves_exactly_its_counter") {
        return;
    }
    let mut datapath = loaded_datapath();
    let mut failures = Vec::new();
    for case in cases() {
        let before = counts(&mut datapath, 2);
        let action = run_frame(&mut datapath, &case.frame);
        let after = counts(&mut datapath, 2);
        let expected = vec![(case.app, case.verdict.name())];
        let got = moved(&before, &after);
        if action != XDP_PASS || got != expected {
            failures.push(format!(
                "{}: action {action}, counters moved {got:?}, expected {expected:?}",
                case.name
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn counters_carry_frame_bytes() {
    if !root_or_skip("counters_carry_frame_bytes") {
        return;
    }
    let mut datapath = loaded_datapath();
    let frame = tcp4(8080);
    for _ in 0..3 {
        run_frame(&mut datapath, &frame);
    }
    let map = datapath.stats().expect("stats");
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
    let mut datapath = loaded_datapath();
    {
        let map = datapath
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
    let before = counts(&mut datapath, 2);
    assert_eq!(run_frame(&mut datapath, &tcp4(7777)), XDP_PASS);
    let after = counts(&mut datapath, 2);
    assert_eq!(moved(&before, &after), vec![(None, "no_listener")]);
}

#[test]
fn sync_removes_listeners_of_a_removed_app() {
    if !root_or_skip("sync_removes_listeners_of_a_removed_app") {
        return;
    }
    let mut datapath = loaded_datapath();
    // Keep only the TCP app: the UDP range's listeners must disappear.
    let only_tcp = CONFIG.replace(
        r#",
    {"protocol": "udp/5300-5310", "dns": {"type": "ADDRESS", "name": "udp.test"},
     "edge_ips": {"type": "static", "ips": ["10.0.100.1", "fd00:100::1"]},
     "origin_direct": ["udp://10.0.2.2:6300-6310"], "proxy_protocol": "simple"}"#,
        "",
    );
    let config = load_str(&only_tcp, false).expect("valid").config;
    assert_eq!(config.apps.len(), 1, "the replace above must remove an app");
    datapath
        .sync(&map_contents(&config).expect("fits"))
        .expect("sync");
    let before = counts(&mut datapath, 2);
    run_frame(
        &mut datapath,
        &frame4(APP_V4, PROTO_UDP, &udp(1, 5305, b"q")),
    );
    run_frame(&mut datapath, &tcp4(8080));
    let after = counts(&mut datapath, 2);
    assert_eq!(
        moved(&before, &after),
        vec![(None, "no_listener"), (Some(0), "to_agent")]
    );
}
