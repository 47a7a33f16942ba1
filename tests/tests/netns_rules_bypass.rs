//! Access rules whatever the packet's shape: XDP passes IPv4/IPv6 fragments
//! and IPv6 extension headers up unparsed, and the kernel reassembles them;
//! sk_lookup checks the rules again on the client of every connection and
//! datagram it steers. A blocked client gets nothing through to a TLS app,
//! a PROXY v1 app and a UDP SPP app with IPv6 destination or hop-by-hop
//! options on its socket, or with 3000-byte datagrams (fragments), and the
//! origin's stack receives nothing; an allowed client gets through the same
//! ways.
use serde_json::json;
use tests::{
    agent::Agent,
    certs::Pki,
    config::{AppJson, ConfigBuilder, org_both},
    netns::{Netns, Topology, addr, snmp_counter},
    scratch_dir, servers,
};

const BLOCKED4: &str = "10.0.1.10";
const BLOCKED6: &str = "fd00:1::10";

/// One exchange from a socket with the given shape, in Python (its socket
/// module sets `IPV6_DSTOPTS`/`IPV6_HOPOPTS` and `IP_MTU_DISCOVER`):
/// `kind` (tcp, tls, udp), source, destination, port, `opts` (none,
/// dstopts, hopopts), payload size. Prints what came back (nothing when
/// refused or silent): socket timeouts of 3 s end it.
const CLIENT: &str = r#"
import socket, ssl, sys
kind, src, dst, port, opts, size = sys.argv[1:7]
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
s.settimeout(3)
s.bind((src, 0))
# One PadN option: an 8-byte extension header the kernel sends as it is.
ext = bytes([0, 0, 1, 4, 0, 0, 0, 0])
if opts == "dstopts":
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_DSTOPTS, ext)
elif opts == "hopopts":
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, ext)
if fam == socket.AF_INET:
    # IP_MTU_DISCOVER = IP_PMTUDISC_DONT: no DF, so the stack fragments.
    s.setsockopt(socket.IPPROTO_IP, 10, 0)
payload = b"x" * (int(size) - 1) + b"\n"
got = b""
try:
    if kind == "udp":
        s.sendto(payload, (dst, int(port)))
        got = s.recv(65535)
    else:
        s.connect((dst, int(port)))
        if kind == "tls":
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname="app.test")
        s.sendall(payload)
        while not got.endswith(payload):
            chunk = s.recv(65535)
            if not chunk:
                break
            got += chunk
except OSError as e:
    print("error:", e, file=sys.stderr)
sys.stdout.write(got.decode("latin-1"))
"#;

/// What came back to one exchange (empty when nothing did).
fn exchange(
    cli: &Netns,
    kind: &str,
    src: &str,
    dst: &str,
    port: u16,
    opts: &str,
    size: usize,
) -> String {
    // `timeout 30` only catches a hang: the script's own timeouts end it.
    let out = cli
        .command("timeout", &["30", "python3", "-c", CLIENT])
        .args([kind, src, dst, &port.to_string(), opts, &size.to_string()])
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (what, kind, destination, port, socket options, payload size, reply
/// check): every shape that XDP passes up unparsed, for each app.
type Shape = (
    &'static str,
    &'static str,
    String,
    u16,
    &'static str,
    usize,
    &'static str,
);

/// App 0 TLS (flexible) on tcp/443, app 1 PROXY v1 on tcp/25 (both to a
/// plain echo origin on 8080), app 2 SPP on udp/5002 (to `udp-pp-origin`
/// on 7002), all with `ip_firewall`.
fn shapes() -> Vec<Shape> {
    let e6 = addr::edge6;
    vec![
        (
            "tls, IPv6 dstopts",
            "tls",
            e6(0),
            443,
            "dstopts",
            100,
            "origin 8080",
        ),
        (
            "tls, IPv6 hopopts",
            "tls",
            e6(0),
            443,
            "hopopts",
            100,
            "origin 8080",
        ),
        (
            "v1, IPv6 dstopts",
            "tcp",
            e6(1),
            25,
            "dstopts",
            100,
            "origin 8080",
        ),
        (
            "v1, IPv6 hopopts",
            "tcp",
            e6(1),
            25,
            "hopopts",
            100,
            "origin 8080",
        ),
        (
            "spp, IPv6 dstopts",
            "udp",
            e6(2),
            5002,
            "dstopts",
            100,
            "client=",
        ),
        (
            "spp, IPv4 fragments",
            "udp",
            addr::edge4(2),
            5002,
            "none",
            3000,
            "client=",
        ),
        (
            "spp, IPv6 fragments",
            "udp",
            e6(2),
            5002,
            "none",
            3000,
            "client=",
        ),
    ]
}

fn source(dst: &str, v4: &'static str, v6: &'static str) -> &'static str {
    if dst.contains(':') { v6 } else { v4 }
}

/// What the origin namespace's own stack received, TCP and UDP.
fn origin_received(org: &Netns) -> (u64, u64) {
    (
        snmp_counter(org, "Tcp", "InSegs").expect("org Tcp"),
        snmp_counter(org, "Udp", "InDatagrams").expect("org Udp"),
    )
}

#[test]
fn blocked_clients_get_nothing_through_fragments_or_extension_headers() {
    let Some(topology) = Topology::for_test(
        "blocked_clients_get_nothing_through_fragments_or_extension_headers",
        "byp",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    cli.run(
        "ip",
        &[
            "addr",
            "add",
            &format!("{BLOCKED4}/32"),
            "dev",
            addr::CLI_IF,
        ],
    )
    .expect("v4 client address");
    cli.run(
        "ip",
        &[
            "-6",
            "addr",
            "add",
            &format!("{BLOCKED6}/128"),
            "dev",
            addr::CLI_IF,
            "nodad",
        ],
    )
    .expect("v6 client address");
    let pki = Pki::new(&scratch_dir().join("byp-pki")).expect("CA");
    let cert = pki.leaf("app.test").expect("edge cert");
    let _tcp = servers::tcp_echo(org, 8080).expect("tcp origin");
    let _udp = servers::udp_pp_origin(org, 7002, "spp", "ok").expect("udp origin");
    let config = ConfigBuilder::new()
        .app(
            AppJson::tcp(443, "tls.test")
                .set("tls", "flexible")
                .set("tls_cert", cert.cert.display().to_string())
                .set("tls_key", cert.key.display().to_string())
                .ip_firewall(true)
                .origin_direct(org_both("tcp", 8080)),
        )
        .app(
            AppJson::tcp(25, "v1.test")
                .proxy_protocol("v1")
                .ip_firewall(true)
                .origin_direct(org_both("tcp", 8080)),
        )
        .app(
            AppJson::udp(5002, "spp.test")
                .proxy_protocol("simple")
                .ip_firewall(true)
                .origin_direct(org_both("udp", 7002)),
        )
        .access_rules(json!([
            {"id": "b4", "mode": "block", "configuration": {"target": "ip", "value": BLOCKED4}},
            {"id": "b6", "mode": "block", "configuration": {"target": "ip6", "value": BLOCKED6}},
        ]))
        .build();
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");

    // An allowed client gets through every way.
    for (what, kind, dst, port, opts, size, want) in shapes() {
        let src = source(&dst, addr::CLI_V4, addr::CLI_V6);
        let reply = exchange(cli, kind, src, &dst, port, opts, size);
        assert!(
            reply.contains(want),
            "{what} from {src}: {reply:?}\n{}",
            agent.log()
        );
    }

    // A blocked one gets nothing, and the origin receives nothing.
    let before = origin_received(org);
    std::thread::scope(|scope| {
        for (what, kind, dst, port, opts, size, _) in shapes() {
            scope.spawn(move || {
                let src = source(&dst, BLOCKED4, BLOCKED6);
                let reply = exchange(cli, kind, src, &dst, port, opts, size);
                assert_eq!(reply, "", "{what} from {src} got through");
            });
        }
    });
    assert_eq!(
        origin_received(org),
        before,
        "the origin received packets from blocked clients"
    );
    // Counted in each app's row under the rule's reason.
    for app in 0..3 {
        let blocked = agent.packets(Some(app), "blocked_ip").expect("stats");
        assert!(blocked > 0, "app {app}: blocked_ip {blocked}");
    }
    let log = agent.log();
    assert!(log.contains("blocked by an access rule"), "{log}");
}

/// A fast-path UDP app on udp/5300 with `ip_firewall`, to the origin port
/// `origin`, under `rules`.
fn edited_config(origin: u16, rules: serde_json::Value) -> String {
    ConfigBuilder::new()
        .edge("nat_ports", "20000-29999")
        .app(
            AppJson::udp(5300, "udp.test")
                .ip_firewall(true)
                .origin_direct(org_both("udp", origin)),
        )
        .access_rules(rules)
        .build()
}

#[test]
fn a_flow_opened_before_an_app_edit_is_cut_by_a_later_block_rule() {
    let Some(topology) = Topology::for_test(
        "a_flow_opened_before_an_app_edit_is_cut_by_a_later_block_rule",
        "bypr",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    let _old = servers::udp_echo(org, 6300).expect("udp origin");
    let _new = servers::udp_echo(org, 6301).expect("udp origin");
    let agent =
        Agent::start(&topology.edge, &edited_config(6300, json!([])), "native").expect("agent");
    let edge = addr::edge4(0);
    let exchange = |from: &str| {
        tests::client::udp_exchange_from(cli, from, &edge, 5300, "q").expect("udp client")
    };
    // A flow from a fixed source port, on the app's first version.
    assert_eq!(exchange("10.0.1.2:40000"), "origin 6300: q\n");

    // The app edited: a new version in a fresh slot; the open flow stays on
    // the old one, new flows take the new one.
    assert!(
        agent
            .reload(&edited_config(6301, json!([])))
            .expect("reload"),
        "{}",
        agent.log()
    );
    assert_eq!(exchange("10.0.1.2:40000"), "origin 6300: q\n");
    assert_eq!(exchange("10.0.1.2:40001"), "origin 6301: q\n");

    // Then the client blocked: its flows on both versions are cut.
    let block = json!([
        {"id": "cli", "mode": "block", "configuration": {"target": "ip", "value": addr::CLI_V4}},
    ]);
    assert!(
        agent.reload(&edited_config(6301, block)).expect("reload"),
        "{}",
        agent.log()
    );
    assert_eq!(
        exchange("10.0.1.2:40000"),
        "",
        "the flow opened on the old version\n{}",
        agent.log()
    );
    assert_eq!(
        exchange("10.0.1.2:40001"),
        "",
        "the flow on the new version"
    );
}

/// Holds one TCP connection (source, destination, port) and answers the
/// test on stdout: `open` once connected; on `ping`, sends a line and
/// prints `pong` once it is echoed (`closed` if the connection ended); on
/// `wait`, prints `closed` when the connection ends, `open` if it is still
/// up after 20 s (the test's hang guard; a cut takes well under that).
const HOLD: &str = r#"
import socket, sys
src, dst, port = sys.argv[1:4]
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.bind((src, 0))
s.settimeout(5)
s.connect((dst, int(port)))
print("open", flush=True)
got = b""
def read(want, limit):
    global got
    s.settimeout(limit)
    try:
        while want not in got:
            chunk = s.recv(4096)
            if not chunk:
                return "closed"
            got += chunk
    except socket.timeout:
        return "open"
    except OSError:
        return "closed"
    return "pong"
for n, line in enumerate(sys.stdin):
    if line.strip() == "ping":
        probe = ("ping %d\n" % n).encode()
        try:
            s.sendall(probe)
        except OSError:
            print("closed", flush=True)
            continue
        print(read(probe, 5), flush=True)
    else:
        print(read(b"\0never\0", 20), flush=True)
"#;

/// A PROXY v1 app (agent path) on tcp/25 with `ip_firewall`, to the origin
/// port `origin`, under `rules`; idle connections live 60 s.
fn agent_path_config(origin: u16, rules: serde_json::Value) -> String {
    ConfigBuilder::new()
        .edge("tcp_proxy", json!({"idle_timeout": 60}))
        .app(
            AppJson::tcp(25, "v1.test")
                .proxy_protocol("v1")
                .ip_firewall(true)
                .origin_direct(org_both("tcp", origin)),
        )
        .access_rules(rules)
        .build()
}

#[test]
fn an_agent_connection_opened_before_an_app_edit_is_cut_by_a_later_block_rule() {
    use std::io::{BufRead as _, BufReader, Write as _};
    let Some(topology) = Topology::for_test(
        "an_agent_connection_opened_before_an_app_edit_is_cut_by_a_later_block_rule",
        "bypc",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    let _old = servers::tcp_echo(org, 8080).expect("tcp origin");
    let _new = servers::tcp_echo(org, 8081).expect("tcp origin");
    let agent = Agent::start(
        &topology.edge,
        &agent_path_config(8080, json!([])),
        "native",
    )
    .expect("agent");
    // `timeout 90` only catches a hang.
    let mut hold = cli
        .command("timeout", &["90", "python3", "-c", HOLD])
        .args([addr::CLI_V4, &addr::edge4(0), "25"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut input = hold.stdin.take().expect("stdin");
    let mut output = BufReader::new(hold.stdout.take().expect("stdout")).lines();
    let mut ask = |command: &str| -> String {
        if !command.is_empty() {
            writeln!(input, "{command}").expect("write to the client");
        }
        output.next().and_then(Result::ok).unwrap_or_default()
    };
    assert_eq!(ask(""), "open", "{}", agent.log());
    assert_eq!(ask("ping"), "pong", "{}", agent.log());

    // The app edited: the connection stays on the old version.
    assert!(
        agent
            .reload(&agent_path_config(8081, json!([])))
            .expect("reload"),
        "{}",
        agent.log()
    );
    assert_eq!(ask("ping"), "pong", "after the edit\n{}", agent.log());

    // Then the client blocked: the connection is cut.
    let block = json!([
        {"id": "cli", "mode": "block", "configuration": {"target": "ip", "value": addr::CLI_V4}},
    ]);
    assert!(
        agent
            .reload(&agent_path_config(8081, block))
            .expect("reload"),
        "{}",
        agent.log()
    );
    assert_eq!(
        ask("wait"),
        "closed",
        "the connection opened on the old version\n{}",
        agent.log()
    );
    let _ = hold.kill();
    let _ = hold.wait();
    assert!(
        agent
            .log()
            .contains("agent-path connections of clients the rules block were cut"),
        "{}",
        agent.log()
    );
}

/// `rx-vlan-hw-parse` and `rx-vlan-stag-hw-parse` of `interface` in `ns`,
/// as `ethtool -k` prints them (`on`/`off`, with any `[fixed]`).
fn rx_vlan_offload(ns: &Netns, interface: &str) -> Vec<String> {
    let out = ns.run("ethtool", &["-k", interface]).expect("ethtool -k");
    ["rx-vlan-offload:", "rx-vlan-stag-hw-parse:"]
        .iter()
        .map(|name| {
            out.lines()
                .find_map(|line| line.trim().strip_prefix(name))
                .unwrap_or("missing")
                .trim()
                .to_owned()
        })
        .collect()
}

#[test]
fn rx_vlan_offload_is_off_while_the_agent_runs_and_back_on_after() {
    let Some(topology) = Topology::for_test(
        "rx_vlan_offload_is_off_while_the_agent_runs_and_back_on_after",
        "vlan",
    ) else {
        return;
    };
    let (cli, edge, org) = (&topology.cli, &topology.edge, &topology.org);
    let on = vec!["on".to_owned(), "on".to_owned()];
    let off = vec!["off".to_owned(), "off".to_owned()];
    for interface in [addr::EDGE_CLI_IF, addr::EDGE_ORG_IF] {
        edge.run(
            "ethtool",
            &[
                "-K",
                interface,
                "rxvlan",
                "on",
                "rx-vlan-stag-hw-parse",
                "on",
            ],
        )
        .expect("offload on");
        assert_eq!(rx_vlan_offload(edge, interface), on, "{interface}");
    }
    let _udp = servers::udp_echo(org, 6300).expect("udp origin");
    let agent = Agent::start(edge, &edited_config(6300, json!([])), "native").expect("agent");
    for interface in [addr::EDGE_CLI_IF, addr::EDGE_ORG_IF] {
        assert_eq!(rx_vlan_offload(edge, interface), off, "{interface}");
    }
    assert!(
        agent.log().contains("rx VLAN offload turned off"),
        "{}",
        agent.log()
    );
    let edge_ip = addr::edge4(0);
    // Untagged: NATed to the origin.
    let reply =
        tests::client::udp_exchange_from(cli, addr::CLI_V4, &edge_ip, 5300, "q").expect("udp");
    assert_eq!(reply, "origin 6300: q\n");
    let (status, log) = agent.stop().expect("stop");
    assert!(status.success(), "{log}");
    for interface in [addr::EDGE_CLI_IF, addr::EDGE_ORG_IF] {
        assert_eq!(
            rx_vlan_offload(edge, interface),
            on,
            "{interface} after stop\n{log}"
        );
    }
}

#[test]
fn with_rx_vlan_offload_allowed_it_is_left_on_and_warned_about() {
    let Some(topology) = Topology::for_test(
        "with_rx_vlan_offload_allowed_it_is_left_on_and_warned_about",
        "vlana",
    ) else {
        return;
    };
    let (edge, org) = (&topology.edge, &topology.org);
    edge.run("ethtool", &["-K", addr::EDGE_CLI_IF, "rxvlan", "on"])
        .expect("offload on");
    let _udp = servers::udp_echo(org, 6300).expect("udp origin");
    let config = edited_config(6300, json!([]));
    let mut value: serde_json::Value = serde_json::from_str(&config).expect("json");
    value["edge"]["allow_rx_vlan_offload"] = json!("on");
    let agent = Agent::start(edge, &value.to_string(), "native").expect("agent");
    assert_eq!(rx_vlan_offload(edge, addr::EDGE_CLI_IF)[0], "on");
    assert!(
        agent.log().contains("rx VLAN offload left on"),
        "{}",
        agent.log()
    );
}
