//! The parser and listener-lookup fixtures as data: each row is a frame
//! and the one counter (app or global row, verdict) it must move, the
//! frame passed on unchanged.
use std::{
    net::{Ipv4Addr, Ipv6Addr},
    ops::Range,
};

use proxy_common::Verdict;
use tests::packet::*;

use crate::fixture::{Output::Unchanged, Row, XDP_PASS};

pub const APP_V4: Ipv4Addr = Ipv4Addr::new(10, 0, 100, 1);
pub const APP_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x100, 0, 0, 0, 0, 0, 1);

/// app 0: tcp/8080, app 1: udp/5300-5310, both on APP_V4 and APP_V6. Both
/// send PROXY headers, so the kernel hands their packets to the agent: these
/// fixtures are about parsing and lookup (the NAT has its own, xdp_nat).
pub const CONFIG: &str = r#"{
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

/// A frame that must pass (to the agent or the stack) moving `app`'s (or
/// the global row's) `verdict` counter.
fn row(name: impl Into<String>, frame: Vec<u8>, app: Option<u32>, verdict: Verdict) -> Row {
    Row {
        name: name.into(),
        ingress: None,
        input: frame,
        action: XDP_PASS,
        moves: vec![(app, verdict.name())],
        output: Unchanged,
    }
}

/// `frame` cut at each length in `lens`: malformed.
fn cuts<'a>(name: &'a str, frame: &'a [u8], lens: Range<usize>) -> impl Iterator<Item = Row> + 'a {
    lens.map(move |len| {
        row(
            format!("{name} cut at {len}"),
            frame[..len].to_vec(),
            None,
            Verdict::Malformed,
        )
    })
}

pub fn tcp4(dst_port: u16) -> Vec<u8> {
    frame4(APP_V4, PROTO_TCP, &tcp(40000, dst_port))
}

pub fn rows() -> Vec<Row> {
    use Verdict::*;
    let mut rows = vec![
        row("tcp4 to listener", tcp4(8080), Some(0), ToAgent),
        row(
            "tcp6 to listener",
            frame6(APP_V6, PROTO_TCP, &tcp(40000, 8080)),
            Some(0),
            ToAgent,
        ),
        row(
            "udp4 to range start",
            frame4(APP_V4, PROTO_UDP, &udp(40000, 5300, b"q")),
            Some(1),
            ToAgent,
        ),
        row(
            "udp6 to range end",
            frame6(APP_V6, PROTO_UDP, &udp(40000, 5310, b"q")),
            Some(1),
            ToAgent,
        ),
        row(
            "udp4 one past the range",
            frame4(APP_V4, PROTO_UDP, &udp(40000, 5311, b"q")),
            None,
            NoListener,
        ),
        row("tcp4 to a port no app has", tcp4(9090), None, NoListener),
        row(
            "udp4 to the tcp app's port",
            frame4(APP_V4, PROTO_UDP, &udp(40000, 8080, b"q")),
            None,
            NoListener,
        ),
        row(
            "tcp4 to another address",
            frame4(Ipv4Addr::new(10, 0, 100, 2), PROTO_TCP, &tcp(1, 8080)),
            None,
            NoListener,
        ),
        row("arp", arp(), None, NotIp),
        row(
            "icmp4",
            frame4(APP_V4, PROTO_ICMP, &[8, 0, 0, 0, 0, 0, 0, 0]),
            None,
            OtherProtocol,
        ),
        row(
            "icmp4 destination unreachable",
            frame4(APP_V4, PROTO_ICMP, &[3, 3, 0, 0, 0, 0, 0, 0]),
            None,
            IcmpError,
        ),
        row(
            "icmp6 packet too big",
            frame6(APP_V6, 58, &[2, 0, 0, 0, 0, 0, 5, 0]),
            None,
            IcmpError,
        ),
        row(
            "icmp6 echo request",
            frame6(APP_V6, 58, &[128, 0, 0, 0, 0, 0, 0, 0]),
            None,
            OtherProtocol,
        ),
        row(
            "ipv6 carrying an IPv4-mapped destination",
            frame6(
                "::ffff:10.0.100.1".parse().expect("ip"),
                PROTO_TCP,
                &tcp(40000, 8080),
            ),
            None,
            Malformed,
        ),
        row(
            "ipv6 with a fragment header",
            frame6(APP_V6, IPV6_FRAGMENT, &[PROTO_TCP, 0, 0, 1, 0, 0, 0, 1]),
            None,
            Fragment,
        ),
        row(
            "tcp4 with data offset 4",
            tcp4_custom(&[], 0, 4),
            None,
            Malformed,
        ),
        row(
            "ipv4 first fragment (MF set)",
            tcp4_custom(&[], 0x2000, 5),
            None,
            Fragment,
        ),
        row(
            "ipv4 later fragment",
            tcp4_custom(&[], 0x0010, 5),
            None,
            Fragment,
        ),
        row(
            "ipv4 with options to listener",
            tcp4_custom(&[1, 1, 1, 0], 0, 5),
            Some(0),
            ToAgent,
        ),
        row(
            "ipv4 with IHL 4",
            set_byte(tcp4(8080), 14, 0x44),
            None,
            Malformed,
        ),
        row(
            "ethertype ipv4 carrying version 6",
            set_byte(tcp4(8080), 14, 0x65),
            None,
            Malformed,
        ),
        row(
            "ethertype ipv6 carrying version 4",
            set_byte(frame6(APP_V6, PROTO_TCP, &tcp(1, 8080)), 14, 0x40),
            None,
            Malformed,
        ),
        row("802.1Q tagged tcp4", vlan_tcp4(&[7]), Some(0), ToAgent),
        row("QinQ tagged tcp4", vlan_tcp4(&[7, 8]), Some(0), ToAgent),
        row(
            "three tags: only two are parsed",
            vlan_tcp4(&[7, 8, 9]),
            None,
            NotIp,
        ),
    ];
    // Truncated at every byte from the end of Ethernet to the end of each
    // header: the parser must say Malformed, never read past the end.
    let full4 = tcp4(8080);
    rows.extend(cuts("tcp4", &full4, 14..full4.len()));
    let full6 = frame6(APP_V6, PROTO_UDP, &udp(1, 5300, b""));
    rows.extend(cuts("udp6", &full6, 14..full6.len()));
    rows.extend(cuts("QinQ", &vlan_tcp4(&[7, 8]), 14..22));
    let with_options = tcp4_custom(&[1, 1, 1, 0], 0, 5);
    rows.push(row(
        "ipv4 options cut short",
        with_options[..14 + 22].to_vec(),
        None,
        Malformed,
    ));
    rows
}

/// A TCP SYN to APP_V4:8080 with these VLAN tags, IPv4 options, flags and
/// fragment offset, and TCP data offset.
fn tcp4_with(tags: &[u16], options: &[u8], frags: u16, data_offset: u8) -> Vec<u8> {
    let l4 = tcp_with_offset(40000, 8080, data_offset);
    let mut f = eth(ETH_P_IPV4, tags);
    f.extend(ipv4(
        DEFAULT_SRC4,
        APP_V4,
        PROTO_TCP,
        l4.len(),
        options,
        frags,
    ));
    f.extend(l4);
    f
}

fn tcp4_custom(options: &[u8], frags: u16, data_offset: u8) -> Vec<u8> {
    tcp4_with(&[], options, frags, data_offset)
}

fn vlan_tcp4(tags: &[u16]) -> Vec<u8> {
    tcp4_with(tags, &[], 0, 5)
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
