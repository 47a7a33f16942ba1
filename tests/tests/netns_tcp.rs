//! The agent's TCP path end to end: sk_lookup steers every port of TLS and
//! PROXY apps to the agent; real clients (socat, openssl) in `cli`; real
//! origins in `org`: plain and TLS echo servers (socat), nginx parsing
//! PROXY v1/v2, and a sink that records the origin-side ClientHello.
use std::time::{Duration, Instant};

use serde_json::json;
use tests::{
    agent::Agent,
    certs::Pki,
    client::{socat, tcp_exchange_from, tls_exchange},
    config::{AppJson, ConfigBuilder, org_both},
    netns::{
        Topology,
        addr::{self, edge4, edge6},
    },
    scratch_dir, servers,
};

struct Setup {
    topology: Topology,
    agent: Agent,
    pki: Pki,
    _servers: Vec<tests::process::Background>,
}

/// None when the test may not run (see [`Topology::for_test`]).
fn setup(test: &str, tag: &str) -> Option<Setup> {
    let topology = Topology::for_test(test, tag)?;
    let dir = scratch_dir().join(format!("{tag}-pki"));
    let pki = Pki::new(&dir).expect("CA");
    let edge_cert = pki.leaf("app.test").expect("edge cert");
    let other_cert = pki.leaf("other.test").expect("second edge cert");
    let origin_cert = pki.leaf("origin.test").expect("origin cert");
    let untrusted = pki.self_signed("origin.test").expect("self-signed");
    let org = &topology.org;
    let servers = vec![
        servers::tcp_echo(org, 8080).expect("plain origin"),
        servers::tls_echo(org, 9443, &untrusted.cert, &untrusted.key).expect("tls origin"),
        servers::tls_echo(org, 9444, &origin_cert.cert, &origin_cert.key).expect("tls origin"),
        servers::nginx_proxy_protocol(org, &[7001, 7100, 7105, 7110], &dir.join("nginx"))
            .expect("nginx"),
    ];
    let cert = edge_cert.cert.display().to_string();
    let key = edge_cert.key.display().to_string();
    let ca = pki.ca.cert.display().to_string();
    let both = |port: &str| org_both("tcp", port);
    let app = |name: &str, proto: &str, origin: [String; 2]| {
        AppJson::new(proto, &format!("{name}.test")).origin_direct(origin)
    };
    let tls = |app: AppJson, mode: &str| {
        app.set("tls", mode)
            .set("tls_cert", cert.as_str())
            .set("tls_key", key.as_str())
    };
    let strict = |app: AppJson, sni: &str| {
        tls(app, "strict")
            .set("origin_sni", sni)
            .set("origin_ca", ca.as_str())
    };
    let apps = [
        // 0: flexible, plain origin; a second certificate picked by SNI
        tls(app("flexible", "tcp/443", both("8080")), "flexible").set(
            "tls_sni_certs",
            json!([{
                "cert": other_cert.cert.display().to_string(),
                "key": other_cert.key.display().to_string(),
            }]),
        ),
        // 1: full, origin with a self-signed certificate
        tls(app("full", "tcp/8443", both("9443")), "full"),
        // 2: strict, origin certificate signed by the test CA for origin.test
        strict(app("strict", "tcp/9443", both("9444")), "origin.test"),
        // 3: strict, wrong name
        strict(app("wrong-name", "tcp/9444", both("9444")), "wrong.test"),
        // 4: strict, untrusted (self-signed) origin
        strict(app("untrusted", "tcp/9445", both("9443")), "origin.test"),
        // 5: PROXY v1, 6: PROXY v2 (nginx parses them)
        app("v1", "tcp/25", both("7001")).proxy_protocol("v1"),
        app("v2", "tcp/26", both("7001")).proxy_protocol("v2"),
        // 7: a range with PROXY v1
        app("range", "tcp/1000-1010", both("7100-7110")).proxy_protocol("v1"),
        // 8: TLS at the edge and a PROXY v2 header to the origin
        tls(app("tls-v2", "tcp/465", both("7001")), "flexible").proxy_protocol("v2"),
        // 9: full, toward a sink that records the ClientHello
        tls(app("hello", "tcp/8444", both("9999")), "full"),
        // 10: PROXY v1 toward the plain echo origin (idle test)
        app("idle", "tcp/27", both("8080")).proxy_protocol("v1"),
    ];
    let config = ConfigBuilder::new()
        .edge(
            "tcp_proxy",
            json!({"handshake_timeout": 2, "connect_timeout": 2, "idle_timeout": 3}),
        )
        .apps(apps)
        .build();
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    Some(Setup {
        topology,
        agent,
        pki,
        _servers: servers,
    })
}

fn counter(agent: &Agent, app: u64, verdict: &str, at_least: u64) -> u64 {
    // The agent writes its connection counts to the counters once a second.
    agent
        .packets_settled(Some(app), verdict, at_least)
        .expect("stats")
}

#[test]
fn tls_flexible_full_and_strict_reach_the_origin_and_strict_refuses_bad_certificates() {
    let Some(s) = setup(
        "tls_flexible_full_and_strict_reach_the_origin_and_strict_refuses_bad_certificates",
        "tls",
    ) else {
        return;
    };
    let cli = &s.topology.cli;
    let ca = &s.pki.ca.cert;
    for (app, edge_port, want) in [
        (0, 443, "origin 8080\nhello\n"),
        (1, 8443, "origin-tls 9443\nhello\n"),
        (2, 9443, "origin-tls 9444\nhello\n"),
    ] {
        for ip in [edge4(app), edge6(app)] {
            let reply = tls_exchange(cli, &ip, edge_port, "app.test", ca, "hello")
                .unwrap_or_else(|e| panic!("app {app} via {ip}: {e:#}\n{}", s.agent.log()));
            assert_eq!(reply, want, "app {app} via {ip}");
        }
    }
    // Strict: a certificate for another name, and one no trusted CA signed.
    for (app, edge_port) in [(3, 9444), (4, 9445)] {
        let reply = tls_exchange(cli, &edge4(app), edge_port, "app.test", ca, "hello");
        assert!(
            reply.as_ref().map_or(true, |r| !r.contains("origin")),
            "app {app} reached the origin: {reply:?}"
        );
        assert_eq!(
            counter(&s.agent, app as u64, "origin_failed", 1),
            1,
            "app {app}"
        );
    }
    // SNI picks the second certificate (the client checks its name).
    let reply = tls_exchange(cli, &edge4(0), 443, "other.test", ca, "sni")
        .unwrap_or_else(|e| panic!("SNI other.test: {e:#}\n{}", s.agent.log()));
    assert_eq!(reply, "origin 8080\nsni\n");
    assert_eq!(counter(&s.agent, 0, "conn_accepted", 3), 3);
    assert_eq!(counter(&s.agent, 0, "conn_closed", 3), 3);
    let log = s.agent.log();
    assert!(
        log.contains("NotValidForName") || log.contains("not valid for"),
        "{log}"
    );
    // 4 MB through flexible TLS and back, byte for byte (the client
    // half-closes after sending; the echo origin closes after it).
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let target = format!(
        "OPENSSL:{}:443,snihost=app.test,commonname=app.test,cafile={}",
        edge4(0),
        ca.display()
    );
    let out = socat(cli, &["-t5", "-T10", "-", &target], &data).expect("socat");
    let mut want = b"origin 8080\n".to_vec();
    want.extend_from_slice(&data);
    assert!(
        out.stdout == want,
        "{} bytes back, want {}",
        out.stdout.len(),
        want.len()
    );
}

/// The cipher suites of the first ClientHello in `bytes` (a TLS record).
fn client_hello_suites(bytes: &[u8]) -> Vec<u16> {
    // record header 5, handshake header 4, version 2, random 32
    let mut at = 5 + 4 + 2 + 32;
    let session_len = bytes[at] as usize;
    at += 1 + session_len;
    let suites_len = u16::from_be_bytes([bytes[at], bytes[at + 1]]) as usize;
    at += 2;
    bytes[at..at + suites_len]
        .chunks(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect()
}

#[test]
fn the_origin_client_hello_offers_spectrums_suites_in_order() {
    let Some(s) = setup(
        "the_origin_client_hello_offers_spectrums_suites_in_order",
        "hello",
    ) else {
        return;
    };
    let capture = scratch_dir().join("hello-client-hello.bin");
    let capture_arg = capture.to_string_lossy().into_owned();
    let sink = servers::tcp_sink(&s.topology.org, 9999, &capture_arg).expect("sink");
    let ca = &s.pki.ca.cert;
    // The handshake toward the sink never completes: the exchange fails.
    let _ = tls_exchange(&s.topology.cli, &edge4(9), 8444, "app.test", ca, "hi");
    let _ = sink.stop(Duration::from_secs(1));
    let bytes = std::fs::read(&capture).expect("captured ClientHello");
    assert!(
        bytes.len() > 50 && bytes[0] == 0x16,
        "not a TLS handshake: {bytes:02x?}"
    );
    let suites = client_hello_suites(&bytes);
    // TLS 1.3 AES-128-GCM, AES-256-GCM, CHACHA20; TLS 1.2 ECDHE-ECDSA-AES128-GCM,
    // ECDHE-RSA-AES128-GCM, then the rest.
    assert_eq!(
        suites[..5],
        [0x1301, 0x1302, 0x1303, 0xc02b, 0xc02f],
        "{suites:04x?}"
    );
}

#[test]
fn proxy_headers_carry_the_real_client_to_nginx() {
    let Some(s) = setup("proxy_headers_carry_the_real_client_to_nginx", "pp") else {
        return;
    };
    let cli = &s.topology.cli;
    let mut port = 41000;
    let mut check = |app: usize, edge_port: u16, v6: bool, origin_port: u16| {
        port += 1;
        let (from, client, edge) = if v6 {
            (
                format!("[{}]:{port}", addr::CLI_V6),
                addr::CLI_V6,
                edge6(app),
            )
        } else {
            (format!("{}:{port}", addr::CLI_V4), addr::CLI_V4, edge4(app))
        };
        let reply = tcp_exchange_from(cli, Some(&from), &edge, edge_port, "")
            .unwrap_or_else(|e| panic!("app {app} {edge}:{edge_port}: {e:#}\n{}", s.agent.log()));
        assert_eq!(
            reply,
            format!("{origin_port} {client} {port}\n"),
            "app {app} via {edge}"
        );
    };
    for v6 in [false, true] {
        check(5, 25, v6, 7001); // v1
        check(6, 26, v6, 7001); // v2
        // The range keeps its offsets on this path too.
        check(7, 1000, v6, 7100);
        check(7, 1010, v6, 7110);
        check(7, 1005, v6, 7105);
    }
    // TLS at the edge, then PROXY v2 in front of the plain origin bytes.
    let ca = &s.pki.ca.cert;
    for (ip, client) in [(edge4(8), addr::CLI_V4), (edge6(8), addr::CLI_V6)] {
        let reply = tls_exchange(cli, &ip, 465, "app.test", ca, "").expect("tls + v2");
        assert!(
            reply.starts_with(&format!("7001 {client} ")),
            "{ip}: {reply:?}"
        );
    }
}

/// The agent closed a connection, not the client's own limit: closing
/// takes the agent's timeout (2 s, 3 s) or nothing; the margin beyond is a
/// loaded machine's, and stays below the clients' own limits (45 s, 60 s).
/// No timeout fires early: the lower bounds below are the behaviour.
const CLOSED_BY_THE_AGENT: Duration = Duration::from_secs(30);

#[test]
fn bad_clients_are_closed_within_the_timeouts_and_counted() {
    let Some(s) = setup(
        "bad_clients_are_closed_within_the_timeouts_and_counted",
        "bad",
    ) else {
        return;
    };
    let cli = &s.topology.cli;
    let ip = edge4(0);
    // Plain text on a TLS port: refused at once, by the agent: long before
    // the client's own idle timeout (45 s) would end it.
    let started = Instant::now();
    let target = format!("TCP:{ip}:443,connect-timeout=3");
    let _ = socat(
        cli,
        &["-t5", "-T45", "-", &target],
        b"GET / HTTP/1.0\r\n\r\n",
    );
    assert!(
        started.elapsed() < CLOSED_BY_THE_AGENT,
        "{:?}",
        started.elapsed()
    );
    // A truncated ClientHello, then silence; and a client that never speaks
    // (its connection stays open): both closed by the 2 s handshake timeout.
    for first in [r"\x16\x03\x01\x02\x00\x01", ""] {
        let started = Instant::now();
        let _ = quiet_client(cli, &format!("{ip}:443"), first);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(1500) && took < CLOSED_BY_THE_AGENT,
            "{first:?}: {took:?}"
        );
    }
    assert_eq!(counter(&s.agent, 0, "tls_failed", 3), 3);
    // A PROXY app whose client and origin both go quiet (the echo origin
    // greets, then waits): closed after the 3 s idle timeout, counted.
    let started = Instant::now();
    let out = quiet_client(cli, &format!("{}:27", edge4(10)), "").expect("client");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < CLOSED_BY_THE_AGENT,
        "{took:?}"
    );
    assert!(out.starts_with("origin 8080\nPROXY TCP4 "), "{out:?}");
    assert_eq!(counter(&s.agent, 10, "conn_timeout", 1), 1);
    // Nothing leaked: every accepted connection was closed (the agent
    // flushes its counts once a second: settle on each app's closed count).
    for app in 0..11 {
        let accepted = s.agent.packets(Some(app), "conn_accepted").expect("stats");
        let closed = s
            .agent
            .packets_settled(Some(app), "conn_closed", accepted)
            .expect("stats");
        assert_eq!(accepted, closed, "app {app}\n{}", s.agent.log());
    }
}

/// A client that sends `first` (printf escapes) and then nothing, keeping
/// its side open, until the other side closes (60 s at most, a hang guard);
/// returns what it received. `target` is `ip:port` (IPv4).
fn quiet_client(cli: &tests::netns::Netns, target: &str, first: &str) -> anyhow::Result<String> {
    let (host, port) = target.rsplit_once(':').unwrap_or((target, ""));
    let script = format!("exec 3<>/dev/tcp/{host}/{port} && printf '{first}' >&3 && cat <&3");
    let out = cli
        .command("timeout", &["60", "bash", "-c", &script])
        .output()?;
    anyhow::ensure!(
        out.status.code() != Some(124),
        "{target}: still open after 60 s"
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
