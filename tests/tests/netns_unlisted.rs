//! Unlisted traffic and the NAT's sources, end to end: a TCP SYN or a UDP
//! datagram to a pool address on a port no app serves gets no RST and no
//! ICMP error back (`edge.unlisted: drop`, the default) and is counted
//! `unlisted`; `pass` leaves it to the kernel's answers; the DNS server on
//! a pool address still answers. Two IPv4 origin sources: flows toward one
//! origin use both, as the origin sees them.
//!
//! "No answer" is decided by order, not by waiting: the probe to the
//! unlisted port goes first, then a probe to a listed port on the same
//! path whose answer proves the path delivered; a RST or port unreachable
//! for the first would have arrived before it.
use std::{
    io::ErrorKind,
    net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use tests::{
    agent::Agent,
    config::{AppJson, ConfigBuilder, org4},
    netns::{Netns, Topology, addr},
    process::Background,
    servers,
};

/// The listed apps, fast path: TCP 7000 on the first pool address, UDP
/// 7000 on the second (apps take pool addresses in file order).
const LISTED: u16 = 7000;
/// Ports no app serves on that address.
const UNLISTED_TCP: u16 = 7999;
const UNLISTED_UDP: u16 = 7998;
/// A hang guard for the listed probes on a loaded 2-core machine: each of
/// them is answered.
const GUARD: Duration = Duration::from_secs(10);

struct Setup {
    topology: Topology,
    agent: Agent,
    _origins: Vec<Background>,
}

fn setup(test: &str, tag: &str, edge: ConfigBuilder) -> Option<Setup> {
    let topology = Topology::for_test(test, tag)?;
    let origins = vec![
        servers::tcp_echo(&topology.org, LISTED).expect("tcp origin"),
        servers::udp_echo(&topology.org, LISTED).expect("udp origin"),
    ];
    let config = edge
        .app(AppJson::tcp(LISTED, "t.test").origin_direct([org4("tcp", LISTED)]))
        .app(AppJson::udp(LISTED, "u.test").origin_direct([org4("udp", LISTED)]))
        .build();
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    Some(Setup {
        topology,
        agent,
        _origins: origins,
    })
}

/// What the client saw for its two unlisted probes.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    tcp_refused: bool,
    udp_refused: bool,
}

/// In `cli`: a non-blocking SYN to the unlisted TCP port and a datagram to
/// the unlisted UDP port, then a listed TCP connection and UDP exchange
/// (answered), then whether a RST or a port unreachable came for the first two.
fn probe(cli: &Netns, edge: Ipv4Addr) -> Seen {
    let enter = cli.enter_handle();
    std::thread::spawn(move || {
        enter().expect("enter cli");
        let syn = nonblocking_connect(SocketAddrV4::new(edge, UNLISTED_TCP));
        let udp = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        udp.connect((edge, UNLISTED_UDP)).expect("udp connect");
        udp.send(b"anyone?\n").expect("udp send");

        let mut tcp = TcpStream::connect_timeout(&(edge, LISTED).into(), GUARD)
            .expect("the listed TCP port answers");
        tcp.set_read_timeout(Some(GUARD)).unwrap();
        let mut greeting = [0u8; 32];
        let n = std::io::Read::read(&mut tcp, &mut greeting).expect("origin greeting");
        assert!(n > 0, "the origin greets");
        let listed = UdpSocket::bind("0.0.0.0:0").unwrap();
        listed.set_read_timeout(Some(GUARD)).unwrap();
        let udp_app: Ipv4Addr = addr::edge4(1).parse().unwrap();
        listed.send_to(b"ping\n", (udp_app, LISTED)).unwrap();
        let mut buf = [0u8; 64];
        listed.recv(&mut buf).expect("the listed UDP port answers");

        // A RST makes the pending connect fail with ECONNREFUSED; an ICMP
        // port unreachable is the connected UDP socket's pending error.
        let tcp_refused = so_error(&syn) == libc::ECONNREFUSED;
        udp.set_nonblocking(true).unwrap();
        let udp_refused = match udp.recv(&mut buf) {
            Err(e) => e.kind() == ErrorKind::ConnectionRefused,
            Ok(_) => panic!("an answer from an unlisted port"),
        };
        Seen {
            tcp_refused,
            udp_refused,
        }
    })
    .join()
    .expect("probe thread")
}

fn nonblocking_connect(to: SocketAddrV4) -> OwnedFd {
    // SAFETY: plain socket calls on a socket this function owns.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0);
        assert!(fd >= 0, "socket");
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: to.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*to.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        let rc = libc::connect(
            fd,
            (&sin as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert!(
            rc == -1 && *libc::__errno_location() == libc::EINPROGRESS,
            "a non-blocking connect is in progress"
        );
        OwnedFd::from_raw_fd(fd)
    }
}

fn so_error(fd: &OwnedFd) -> i32 {
    let mut error: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid out pointers for SO_ERROR.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut error as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt");
    error
}

fn edge0() -> Ipv4Addr {
    addr::edge4(0).parse().unwrap()
}

/// The unlisted probes got no RST and no port unreachable, and both were
/// counted `unlisted`; then the agent stops.
fn unanswered_and_counted(s: Setup) {
    let seen = probe(&s.topology.cli, edge0());
    assert_eq!(
        seen,
        Seen {
            tcp_refused: false,
            udp_refused: false
        },
        "{}",
        s.agent.log()
    );
    // The SYN and the datagram (the SYN may be retransmitted meanwhile).
    let unlisted = s.agent.packets_settled(None, "unlisted", 2).expect("stats");
    assert!(unlisted >= 2, "unlisted {unlisted}\n{}", s.agent.log());
    s.agent.stop().expect("stop");
}

#[test]
fn unlisted_ports_on_pool_addresses_get_no_answer_and_are_counted() {
    let Some(s) = setup(
        "unlisted_ports_on_pool_addresses_get_no_answer_and_are_counted",
        "unl",
        ConfigBuilder::new(),
    ) else {
        return;
    };
    unanswered_and_counted(s);
}

/// The same with every app at TC ingress: XDP stays detached and TC drops
/// what no app serves.
#[test]
fn unlisted_ports_are_dropped_at_tc_when_xdp_is_not_attached() {
    let Some(s) = setup(
        "unlisted_ports_are_dropped_at_tc_when_xdp_is_not_attached",
        "unt",
        ConfigBuilder::new().edge("datapath", "tc"),
    ) else {
        return;
    };
    let log = s.agent.log();
    assert!(!log.contains("XDP attached"), "XDP attached\n{log}");
    unanswered_and_counted(s);
}

#[test]
fn unlisted_pass_leaves_the_kernels_answers() {
    let Some(s) = setup(
        "unlisted_pass_leaves_the_kernels_answers",
        "unlp",
        ConfigBuilder::new().edge("unlisted", "pass"),
    ) else {
        return;
    };
    let seen = probe(&s.topology.cli, edge0());
    assert_eq!(
        seen,
        Seen {
            tcp_refused: true,
            udp_refused: true
        },
        "{}",
        s.agent.log()
    );
    assert_eq!(s.agent.packets(None, "unlisted").expect("stats"), 0);
    s.agent.stop().expect("stop");
}

#[test]
fn the_dns_server_on_a_pool_address_still_answers() {
    let Some(topology) =
        Topology::for_test("the_dns_server_on_a_pool_address_still_answers", "unld")
    else {
        return;
    };
    // The first pool address serves DNS; the app takes the next one.
    let ns4 = addr::edge4(0);
    let config = ConfigBuilder::new()
        .dns_server(&[&ns4], "example.test", 30)
        .app(AppJson::tcp(LISTED, "t.example.test").origin_direct([org4("tcp", LISTED)]))
        .build();
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    for transport in ["+notcp", "+tcp"] {
        let at = format!("@{ns4}");
        // dig's wait (5 s, 3 tries) is a hang guard: the query is answered.
        let answer = topology
            .cli
            .run(
                "dig",
                &[
                    &at,
                    transport,
                    "+time=5",
                    "+tries=3",
                    "+short",
                    "t.example.test",
                    "A",
                ],
            )
            .unwrap_or_else(|e| format!("dig failed: {e:#}"));
        assert_eq!(
            answer.trim(),
            addr::edge4(1),
            "{transport}\n{}",
            agent.log()
        );
    }
    agent.stop().expect("stop");
}

#[test]
fn flows_toward_one_origin_use_every_origin_source() {
    let Some(topology) =
        Topology::for_test("flows_toward_one_origin_use_every_origin_source", "unls")
    else {
        return;
    };
    const SECOND: &str = "10.0.2.3";
    topology
        .edge
        .run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{SECOND}/24"),
                "dev",
                addr::EDGE_ORG_IF,
            ],
        )
        .expect("second origin-facing address");
    let _origin = servers::tcp_echo(&topology.org, LISTED).expect("origin");
    let config = ConfigBuilder::new()
        .edge(
            "origin_source",
            serde_json::json!({"ipv4": [addr::EDGE_ORG_V4, SECOND]}),
        )
        .app(AppJson::tcp(LISTED, "t.test").origin_direct([org4("tcp", LISTED)]))
        .build();
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    // 16 connections held open: each takes a source by its tuple's hash;
    // all on one of two sources has odds 2^-15.
    let enter = topology.cli.enter_handle();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let client = std::thread::spawn(move || {
        enter().expect("enter cli");
        let mut conns = Vec::new();
        for _ in 0..16 {
            let mut conn = TcpStream::connect_timeout(&(edge0(), LISTED).into(), GUARD)
                .expect("connect through the fast path");
            conn.set_read_timeout(Some(GUARD)).unwrap();
            let mut greeting = [0u8; 32];
            let n = std::io::Read::read(&mut conn, &mut greeting).expect("greeting");
            assert!(n > 0);
            conns.push(conn);
        }
        held_tx.send(()).unwrap();
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
        drop(conns);
    });
    held_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("connections held");
    let ss = topology
        .org
        .run(
            "ss",
            &["-Htn", "state", "established", "sport", "=", ":7000"],
        )
        .expect("ss");
    let _ = done_tx.send(());
    client.join().expect("client");
    let peers: Vec<&str> = ss
        .lines()
        .filter_map(|line| line.split_whitespace().last())
        .collect();
    assert_eq!(peers.len(), 16, "{ss}\n{}", agent.log());
    for source in [addr::EDGE_ORG_V4, SECOND] {
        assert!(
            peers
                .iter()
                .any(|peer| peer.starts_with(&format!("{source}:"))
                    || peer.starts_with(&format!("[::ffff:{source}]:"))),
            "no flow from {source}: {ss}"
        );
    }
    agent.stop().expect("stop");
}
