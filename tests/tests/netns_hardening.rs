//! What a hostile name, client or host user cannot make the agent do:
//! dial the host's own services through an `origin_dns` answer, flood its
//! log with failed connections or refused API requests, use a token file
//! others can read, or leave `accept_local` changed after it stops. Real
//! peers: dnsmasq and socat in the namespaces, Rust clients in `cli`.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use tests::{
    agent::Agent,
    client::tcp_exchange,
    config::{AppJson, ConfigBuilder, org4, write_token_file},
    netns::{Netns, Topology, addr},
    process::Background,
    scratch_dir, servers,
};

const EDGE: &str = "10.0.100.1";
const PORT: u16 = 2000;
const API_PORT: u16 = 8080;
const ZONE: &str = "zone-hardening";
const TOKEN: &str = "0123456789abcdef0123456789abcdef";

/// The PROXY v1 app every test here uses (an agent-path app).
fn app() -> AppJson {
    AppJson::tcp(PORT, "app.test").proxy_protocol("v1")
}

/// Hang guard for what must happen soon on a loaded 2-core machine; each
/// poll ends as soon as its condition holds.
const SOON: Duration = Duration::from_secs(90);

fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

/// The origin's first line through the app.
fn greeting(cli: &Netns) -> anyhow::Result<String> {
    let reply = tcp_exchange(cli, EDGE, PORT, "hello")?;
    Ok(reply.lines().next().unwrap_or_default().to_owned())
}

/// A socat origin on `listen` (a socat address) that greets with `name`
/// and appends a line to `hits` per connection it accepts.
fn counting_origin(ns: &Netns, listen: &str, name: &str, hits: &std::path::Path) -> Background {
    let _ = std::fs::remove_file(hits);
    std::fs::write(hits, "").expect("hits file");
    // No colons in SYSTEM: socat would split the command at them.
    let greet = format!(
        "SYSTEM:echo hit >> {}; echo {name}; exec cat",
        hits.display()
    );
    ns.spawn("origin", "socat", &[listen, &greet])
        .expect("origin")
}

fn lines(path: &std::path::Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn origin_dns_answers_of_host_addresses_are_refused_and_the_last_good_one_stays() {
    let Some(topology) = Topology::for_test(
        "origin_dns_answers_of_host_addresses_are_refused_and_the_last_good_one_stays",
        "hodns",
    ) else {
        return;
    };
    let (cli, edge, org) = (&topology.cli, &topology.edge, &topology.org);
    let dir = scratch_dir();
    let tag = edge.name();
    // The good origin on org; on the edge host itself, listeners on
    // loopback and on the cloud metadata address that must see nothing.
    let good_hits = dir.join(format!("{tag}-good"));
    let _good = counting_origin(
        org,
        &format!("TCP4-LISTEN:3100,fork,reuseaddr,bind={}", addr::ORG_V4),
        "origin good",
        &good_hits,
    );
    edge.run("ip", &["addr", "add", "169.254.169.254/32", "dev", "lo"])
        .expect("metadata address");
    let host_hits = dir.join(format!("{tag}-host"));
    let _loopback = counting_origin(
        edge,
        "TCP4-LISTEN:3100,fork,reuseaddr,bind=127.0.0.1",
        "origin loopback",
        &host_hits,
    );
    let _metadata = counting_origin(
        edge,
        "TCP4-LISTEN:3100,fork,reuseaddr,bind=169.254.169.254",
        "origin metadata",
        &host_hits,
    );
    servers::wait_listening(org, "t", 3100).expect("origin listens");
    servers::wait_listening(edge, "t", 3100).expect("host listeners");

    let dns =
        |answer: &[&str]| servers::dns(org, addr::ORG_V4, "origin.test", answer).expect("dnsmasq");
    let mut server = Some(dns(&[addr::ORG_V4]));
    let config = ConfigBuilder::new()
        .resolver(addr::ORG_V4)
        .app(app().origin_dns("origin.test", 600, 3100))
        .build();
    let agent = Agent::start(edge, &config, "native").expect("agent");
    let first = greeting(cli).unwrap_or_else(|e| panic!("{e:#}\n{}", agent.log()));
    assert_eq!(first, "origin good");

    // The name now points at the host itself: refused and logged (dnsmasq
    // gives a TTL of 0; the agent asks again on its 5 s floor). dnsmasq
    // keeps one address per family: two answers in turn, each a change.
    let phases: [(&[&str], &[&str]); 2] = [
        (
            &["127.0.0.1", "::ffff:169.254.169.254"],
            &[
                "127.0.0.1 (loopback)",
                "::ffff:169.254.169.254 (link-local)",
            ],
        ),
        (
            &["169.254.169.254", "::1"],
            &["169.254.169.254 (link-local)", "::1 (loopback)"],
        ),
    ];
    for (answer, logged) in phases {
        drop(server.take());
        server = Some(dns(answer));
        let refused = eventually(SOON, || {
            let log = agent.log();
            logged.iter().all(|what| log.contains(what))
        });
        assert!(refused, "{answer:?}: no refusal logged\n{}", agent.log());
        // The last good answer still serves; the host's listeners saw
        // nothing.
        for _ in 0..3 {
            let line = greeting(cli).unwrap_or_else(|e| panic!("{e:#}\n{}", agent.log()));
            assert_eq!(line, "origin good", "{}", agent.log());
        }
    }
    assert_eq!(lines(&host_hits), 0, "a host service was dialled");
    assert!(lines(&good_hits) >= 7);
    // Logged once per answer, however many refreshes since (the agent
    // asks again every 10 s after a refused answer).
    std::thread::sleep(Duration::from_secs(12));
    let (_, log) = agent.stop().expect("stop");
    assert_eq!(log.matches("origin_dns answer refused").count(), 2, "{log}");
    assert!(!log.contains("origin addresses changed"), "{log}");
}

/// Connects to `EDGE:PORT` from `cli` `count` times, one after another,
/// each read to its end (the agent closes it when the origin refuses).
fn refused_connections(cli: &Netns, count: usize) {
    let enter = cli.enter_handle();
    std::thread::spawn(move || {
        enter().expect("enter cli");
        let to: SocketAddr = format!("{EDGE}:{PORT}").parse().expect("address");
        for _ in 0..count {
            // Hang guards per connection, for a loaded machine.
            let Ok(mut stream) = TcpStream::connect_timeout(&to, Duration::from_secs(10)) else {
                continue;
            };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = stream.read_to_end(&mut Vec::new());
        }
    })
    .join()
    .expect("client thread");
}

/// The `skipped` counts of the log's lines with `what`.
fn skipped_counts(log: &str, what: &str) -> Vec<u64> {
    log.lines()
        .filter(|line| line.contains(what))
        .map(|line| {
            line.split("skipped=")
                .nth(1)
                .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        })
        .collect()
}

#[test]
fn a_flood_of_failed_connections_is_a_few_log_lines_with_the_count() {
    let Some(topology) = Topology::for_test(
        "a_flood_of_failed_connections_is_a_few_log_lines_with_the_count",
        "tflood",
    ) else {
        return;
    };
    // Nothing listens on the origin port: every connection fails there.
    let config = ConfigBuilder::new()
        .app(app().origin_direct([org4("tcp", 3999)]))
        .build();
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    const FLOOD: usize = 2000;
    refused_connections(&topology.cli, FLOOD);
    let what = "disconnect: ";
    let during = skipped_counts(&agent.log(), what);
    assert!(
        !during.is_empty() && during.len() <= 5,
        "{} lines for {FLOOD} failed connections\n{}",
        during.len(),
        agent.log()
    );
    // The next line, once the 10 s window has passed, carries the count of
    // every failure not logged: together, all of them.
    std::thread::sleep(Duration::from_secs(11));
    refused_connections(&topology.cli, 1);
    let (_, log) = agent.stop().expect("stop");
    let counts = skipped_counts(&log, what);
    let logged = counts.len() as u64;
    let skipped: u64 = counts.iter().sum();
    assert_eq!(logged + skipped, FLOOD as u64 + 1, "{log}");
    assert!(
        log.contains(&format!(
            "(and {} more since the last such line",
            counts[counts.len() - 1]
        )),
        "{log}"
    );
}

/// A config with the API on the edge's `cli`-facing address.
fn with_api(token_file: &std::path::Path) -> String {
    ConfigBuilder::new()
        .api(API_PORT, token_file, ZONE)
        .app(app().origin_direct([org4("tcp", 3000)]))
        .build()
}

#[test]
fn a_token_file_others_can_read_is_refused() {
    let Some(topology) = Topology::for_test("a_token_file_others_can_read_is_refused", "tokmode")
    else {
        return;
    };
    let path = scratch_dir().join(format!("{}-token", topology.edge.name()));
    write_token_file(&path, TOKEN);
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let err = match Agent::start(&topology.edge, &with_api(&path), "native") {
        Ok(agent) => panic!("started with a 0644 token file\n{}", agent.log()),
        Err(err) => format!("{err:#}"),
    };
    assert!(
        err.contains(&path.display().to_string()) && err.contains("mode 0644"),
        "{err}"
    );
    assert!(!err.contains(TOKEN), "the token is not echoed: {err}");
}

/// One request to the API from `cli` with `token`; the status line.
fn api_request(cli: &Netns, token: &'static str, count: usize) -> Vec<String> {
    let enter = cli.enter_handle();
    std::thread::spawn(move || {
        enter().expect("enter cli");
        let to: SocketAddr = format!("{}:{API_PORT}", addr::EDGE_CLI_V4)
            .parse()
            .expect("address");
        (0..count)
            .map(|_| {
                let mut stream =
                    TcpStream::connect_timeout(&to, Duration::from_secs(10)).expect("connect");
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let request = format!(
                    "GET /metrics HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
                );
                stream.write_all(request.as_bytes()).expect("send");
                let mut answer = String::new();
                let _ = stream.read_to_string(&mut answer);
                answer.lines().next().unwrap_or_default().to_owned()
            })
            .collect()
    })
    .join()
    .expect("client thread")
}

#[test]
fn a_hundred_bad_tokens_are_a_few_log_lines_with_the_count() {
    let Some(topology) = Topology::for_test(
        "a_hundred_bad_tokens_are_a_few_log_lines_with_the_count",
        "tokflood",
    ) else {
        return;
    };
    let path = scratch_dir().join(format!("{}-token", topology.edge.name()));
    write_token_file(&path, TOKEN);
    let agent = Agent::start(&topology.edge, &with_api(&path), "native").expect("agent");
    servers::wait_listening(&topology.edge, "t", API_PORT).expect("API listens");
    let good = api_request(&topology.cli, TOKEN, 1);
    assert!(good[0].contains(" 200 "), "{good:?}\n{}", agent.log());
    let bad = api_request(&topology.cli, "not-the-token-not-the-token", 100);
    assert!(bad.iter().all(|s| s.contains(" 401 ")), "{bad:?}");
    let what = "request without the right token refused";
    let during = skipped_counts(&agent.log(), what);
    assert!(
        !during.is_empty() && during.len() <= 3,
        "{} lines for 100 refused requests\n{}",
        during.len(),
        agent.log()
    );
    std::thread::sleep(Duration::from_secs(11));
    let _ = api_request(&topology.cli, "still-not-the-token-at-all", 1);
    let (_, log) = agent.stop().expect("stop");
    let counts = skipped_counts(&log, what);
    assert_eq!(
        counts.len() as u64 + counts.iter().sum::<u64>(),
        101,
        "{log}"
    );
    assert!(
        log.contains(&addr::CLI_V4.to_string()),
        "the client is named: {log}"
    );
}

fn accept_local(ns: &Netns, interface: &str) -> String {
    ns.run(
        "cat",
        &[&format!("/proc/sys/net/ipv4/conf/{interface}/accept_local")],
    )
    .expect("accept_local")
    .trim()
    .to_owned()
}

#[test]
fn accept_local_is_put_back_when_the_agent_stops() {
    let Some(topology) =
        Topology::for_test("accept_local_is_put_back_when_the_agent_stops", "accl")
    else {
        return;
    };
    let edge = &topology.edge;
    let interfaces = [addr::EDGE_CLI_IF, addr::EDGE_ORG_IF];
    for interface in interfaces {
        assert_eq!(
            accept_local(edge, interface),
            "0",
            "{interface} starts at 0"
        );
    }
    // A fast-path app: the agent attaches XDP, which needs accept_local.
    let config = ConfigBuilder::new()
        .app(AppJson::tcp(1000, "fast.test").origin_direct([org4("tcp", 3000)]))
        .build();
    let agent = Agent::start(edge, &config, "native").expect("agent");
    let set = eventually(SOON, || {
        interfaces.iter().all(|i| accept_local(edge, i) == "1")
    });
    assert!(set, "accept_local not set while running\n{}", agent.log());
    let (status, log) = agent.stop().expect("stop");
    assert!(status.success(), "{status}\n{log}");
    for interface in interfaces {
        assert_eq!(
            accept_local(edge, interface),
            "0",
            "{interface} put back\n{log}"
        );
    }
}

const DNS_ZONE: &str = "example.test";

/// The DNS server on the edge's cli-facing IPv4 address with
/// `responses_per_second` and `max_tcp_connections`, and the API (for
/// its counters).
fn dns_config(token_file: &std::path::Path, per_second: u32, max_tcp: u32) -> String {
    let mut config = ConfigBuilder::new()
        .dns_server(&[addr::EDGE_CLI_V4], DNS_ZONE, 30)
        .api(API_PORT, token_file, ZONE)
        .app(AppJson::tcp(PORT, &format!("app.{DNS_ZONE}")).origin_direct([org4("tcp", 3000)]))
        .value();
    config["dns_server"]["responses_per_second"] = per_second.into();
    config["dns_server"]["max_tcp_connections"] = max_tcp.into();
    config.to_string()
}

/// An A query for `app.example.test` with id `id`.
fn dns_query(id: u16) -> Vec<u8> {
    let mut query = id.to_be_bytes().to_vec();
    query.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in ["app", "example", "test"] {
        query.push(label.len() as u8);
        query.extend_from_slice(label.as_bytes());
    }
    query.extend_from_slice(&[0, 0, 1, 0, 1]);
    query
}

/// `count` UDP queries from `ns` at once to the DNS server; the replies
/// with answers and the truncated (TC=1) ones.
fn udp_burst(ns: &Netns, count: u16) -> (usize, usize) {
    let enter = ns.enter_handle();
    std::thread::spawn(move || {
        enter().expect("enter");
        let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("bind");
        // Room for every reply even when this thread is slow to read on a
        // loaded machine: 200 small datagrams overflow the default buffer
        // by their truesize, and a lost reply would miscount.
        let size: libc::c_int = 8 << 20;
        // SAFETY: a valid socket and option value of the right size.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
        socket
            .connect(format!("{}:53", addr::EDGE_CLI_V4))
            .expect("connect");
        for id in 0..count {
            socket.send(&dns_query(id)).expect("send");
        }
        // Replies come at once; 2 s of quiet ends the count (a hang
        // guard on a loaded machine, not a measurement).
        socket
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        let (mut full, mut truncated) = (0, 0);
        let mut reply = [0u8; 1500];
        while let Ok(n) = socket.recv(&mut reply) {
            if n < 12 {
                continue;
            }
            let answers = u16::from_be_bytes([reply[6], reply[7]]);
            if reply[2] & 0x02 != 0 {
                assert_eq!(answers, 0, "a truncated reply has no records");
                truncated += 1;
            } else if answers > 0 {
                full += 1;
            }
        }
        (full, truncated)
    })
    .join()
    .expect("client thread")
}

/// `/metrics` through the API, from `cli`.
fn metrics(cli: &Netns) -> String {
    let enter = cli.enter_handle();
    std::thread::spawn(move || {
        enter().expect("enter cli");
        let mut stream = TcpStream::connect((addr::EDGE_CLI_V4, API_PORT)).expect("connect");
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).expect("send");
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
    })
    .join()
    .expect("client thread")
}

/// The value of the metrics line that starts with `series`.
fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_udp_query_flood_from_one_prefix_is_rate_limited_and_counted() {
    let Some(topology) = Topology::for_test(
        "a_udp_query_flood_from_one_prefix_is_rate_limited_and_counted",
        "rrl",
    ) else {
        return;
    };
    let path = scratch_dir().join(format!("{}-token", topology.edge.name()));
    write_token_file(&path, TOKEN);
    let agent = Agent::start(&topology.edge, &dns_config(&path, 10, 256), "native").expect("agent");
    servers::wait_listening(&topology.edge, "u", 53).expect("DNS listens");
    const FLOOD: u16 = 200;
    let (full, truncated) = udp_burst(&topology.cli, FLOOD);
    // A second's worth answered (and a few more if the burst took long on
    // a loaded machine), of the rest every other one truncated.
    assert!(
        (10..=30).contains(&full),
        "{full} answered\n{}",
        agent.log()
    );
    let held = usize::from(FLOOD) - full;
    assert!(
        truncated.abs_diff(held / 2) <= 1,
        "{truncated} truncated of {held} held back"
    );
    // Another prefix (org's /24) is answered in full meanwhile.
    let (other, other_truncated) = udp_burst(&topology.org, 5);
    assert_eq!((other, other_truncated), (5, 0), "{}", agent.log());
    let text = metrics(&topology.cli);
    let dropped = metric(&text, "spectrum_dns_limited_total{action=\"dropped\"}");
    let counted_truncated = metric(&text, "spectrum_dns_limited_total{action=\"truncated\"}");
    assert_eq!(counted_truncated as usize, truncated, "{text}");
    assert_eq!((dropped + counted_truncated) as usize, held, "{text}");
}

/// A TCP connection to the DNS server from the thread's namespace.
fn dns_tcp() -> TcpStream {
    let stream = TcpStream::connect_timeout(
        &format!("{}:53", addr::EDGE_CLI_V4)
            .parse()
            .expect("address"),
        Duration::from_secs(10),
    )
    .expect("connect");
    // A hang guard: a served query is answered at once.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    stream
}

/// Sends one query over `stream`; whether an answer came back (false: the
/// server closed it).
fn tcp_query(stream: &mut TcpStream, id: u16) -> bool {
    let query = dns_query(id);
    let mut framed = (query.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&query);
    if stream.write_all(&framed).is_err() {
        return false;
    }
    let mut len = [0u8; 2];
    if stream.read_exact(&mut len).is_err() {
        return false;
    }
    let mut reply = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut reply).is_ok() && reply[..2] == id.to_be_bytes()
}

#[test]
fn dns_tcp_connections_beyond_the_cap_are_closed_and_idle_ones_time_out() {
    let Some(topology) = Topology::for_test(
        "dns_tcp_connections_beyond_the_cap_are_closed_and_idle_ones_time_out",
        "dnstcp",
    ) else {
        return;
    };
    let path = scratch_dir().join(format!("{}-token", topology.edge.name()));
    write_token_file(&path, TOKEN);
    let agent = Agent::start(&topology.edge, &dns_config(&path, 0, 4), "native").expect("agent");
    servers::wait_listening(&topology.edge, "t", 53).expect("DNS listens");
    let enter = topology.cli.enter_handle();
    let log = std::thread::spawn(move || {
        enter().expect("enter cli");
        // Four connections, each answered, held open.
        let mut held: Vec<TcpStream> = (0..4).map(|_| dns_tcp()).collect();
        for (i, stream) in held.iter_mut().enumerate() {
            assert!(tcp_query(stream, i as u16), "connection {i} answered");
        }
        // A fifth is closed without an answer.
        let mut fifth = dns_tcp();
        assert!(!tcp_query(&mut fifth, 5), "over the cap, yet answered");
        // One goes: a new connection is served again.
        drop(held.pop());
        let served = eventually(SOON, || tcp_query(&mut dns_tcp(), 6));
        assert!(served, "a freed slot serves no connection");
        // An idle connection is closed by the server (its 5 s timeout;
        // the 30 s read timeout is a hang guard).
        let mut idle = dns_tcp();
        let started = Instant::now();
        let mut byte = [0u8; 1];
        let closed = matches!(idle.read(&mut byte), Ok(0));
        assert!(
            closed && started.elapsed() < Duration::from_secs(30),
            "idle connection kept"
        );
    })
    .join();
    let text = metrics(&topology.cli);
    let refused = metric(&text, "spectrum_dns_limited_total{action=\"tcp_refused\"}");
    let (_, agent_log) = agent.stop().expect("stop");
    log.unwrap_or_else(|_| panic!("client failed\n{agent_log}"));
    assert!(refused >= 1, "{text}");
    assert!(
        agent_log.contains("over the TCP connection limit"),
        "{agent_log}"
    );
}

/// `curl` in `cli` for the API's `/metrics` at `url` with `args`; its
/// exit and output (the HTTP status last).
fn curl(cli: &Netns, url: &str, args: &[&str]) -> (bool, String) {
    let auth = format!("Authorization: Bearer {TOKEN}");
    let resolve = format!("api.test:{API_PORT}:{}", addr::EDGE_CLI_V4);
    // --max-time: a hang guard on a loaded machine.
    let mut all = vec![
        "-sS",
        "--max-time",
        "30",
        "-H",
        &auth,
        "--resolve",
        &resolve,
        "-w",
        "\n%{http_code}",
    ];
    all.extend_from_slice(args);
    all.push(url);
    let out = cli.command("curl", &all).output().expect("curl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_api_serves_https_with_its_certificate() {
    let Some(topology) = Topology::for_test("the_api_serves_https_with_its_certificate", "apitls")
    else {
        return;
    };
    let dir = scratch_dir().join(format!("{}-pki", topology.edge.name()));
    let pki = tests::certs::Pki::new(&dir).expect("pki");
    let pair = pki.leaf("api.test").expect("leaf");
    let chmod = |mode| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&pair.key, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    let path = scratch_dir().join(format!("{}-token", topology.edge.name()));
    write_token_file(&path, TOKEN);
    let mut config = ConfigBuilder::new()
        .api(API_PORT, &path, ZONE)
        .app(app().origin_direct([org4("tcp", 3000)]))
        .value();
    config["api"]["tls_cert"] = pair.cert.display().to_string().into();
    config["api"]["tls_key"] = pair.key.display().to_string().into();
    let config = config.to_string();
    // A key others can read is refused, naming it.
    chmod(0o644);
    match Agent::start(&topology.edge, &config, "native") {
        Ok(agent) => panic!("started with a 0644 API key\n{}", agent.log()),
        Err(err) => {
            let err = format!("{err:#}");
            assert!(
                err.contains("api.tls_key") && err.contains("mode 0644"),
                "{err}"
            );
        }
    }
    chmod(0o600);
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    servers::wait_listening(&topology.edge, "t", API_PORT).expect("API listens");
    let ca = pki.ca.cert.display().to_string();
    let https = format!("https://api.test:{API_PORT}/metrics");
    let (ok, out) = curl(&topology.cli, &https, &["--cacert", &ca]);
    assert!(
        ok && out.ends_with("\n200") && out.contains("spectrum_"),
        "{out}\n{}",
        agent.log()
    );
    // Without the CA, curl refuses the certificate; plain HTTP gets no
    // answer from a TLS port.
    let (ok, out) = curl(&topology.cli, &https, &[]);
    assert!(!ok, "an unknown CA was accepted: {out}");
    let (ok, out) = curl(
        &topology.cli,
        &format!("http://api.test:{API_PORT}/metrics"),
        &[],
    );
    assert!(!ok || !out.ends_with("\n200"), "plain HTTP answered: {out}");
    let _ = std::fs::remove_dir_all(&dir);
}
