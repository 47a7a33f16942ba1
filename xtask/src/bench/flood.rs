//! The SYN flood scenario: trafgen sends spoofed SYNs (a source address
//! per packet, none of which answers) at its top rate toward the system's
//! HTTP port, while a real client in `cli` opens connections at a steady
//! pace and, in a second flood, while one TCP stream runs. What it shows:
//! whether legitimate clients still get through, how long their
//! handshakes take, how much of the flood reaches the origin, and what the
//! flood costs the edge. HAProxy and nginx rely on the kernel's SYN
//! cookies; the routing baselines pass the flood to the origin, whose
//! own SYN cookies answer it; ours answers it with its SYN proxy (or, with
//! it off, opens flows and passes it on).
//!
//! The flood's SYNs are told from everything else at the origin by their
//! shape: trafgen's carry no TCP option, and every real stack's SYN (the
//! client's, the proxies', the SYN proxy's) carries at least an MSS. A tc
//! filter on the origin's ingress counts them there (no capture tool on
//! this machine; this kernel has u32 and mirred but no gact).
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use ::tests::netns::{Netns, addr};
use anyhow::Context as _;

use super::{
    Bed, HTTP_PORT, Metric,
    measure::{
        Figures, cpu_seconds, iperf, mac, percentile, process_tree_cpu_seconds, trafgen,
        trafgen_ran,
    },
};

/// The spoofed sources count up from here, one per SYN: a range no
/// namespace of the topology owns or routes back to `cli`.
const SPOOF_FIRST: &str = "10.99.0.1";
/// Connections the real client opens per second during the flood.
const CLIENT_RATE: u32 = 20;
/// A connection that has not completed its request in this long failed.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);
/// The flood's head start before the client begins.
const FLOOD_HEAD_START: Duration = Duration::from_millis(500);

/// Both phases against `target` (the edge address, or the origin for the
/// routers); `proxy` is the system's process, if it has one.
pub fn syn_flood(
    bed: &Bed,
    target: &str,
    proxy: Option<u32>,
    seconds: u64,
) -> anyhow::Result<Figures> {
    let conf = bed.work.join("synflood.trafgen");
    write_conf(bed, target, &conf)?;
    let topology = &bed.topology;
    let duration = Duration::from_secs(seconds);

    // Phase one: connections while the flood runs.
    let cpu_before = edge_cpu_seconds(proxy)?;
    let origin_before = received_packets(&topology.org, addr::ORG_IF)?;
    let spoofed_before = flood_at_origin(&topology.org)?;
    let flood = start_trafgen(&topology.cli, &conf, duration + FLOOD_HEAD_START)?;
    std::thread::sleep(FLOOD_HEAD_START);
    let to: SocketAddr = format!("{target}:{HTTP_PORT}").parse()?;
    let started = Instant::now();
    let handshakes = client(&topology.cli, to, duration)?;
    let elapsed = started.elapsed().as_secs_f64();
    let flood_status = wait(flood)?;
    let cpu = edge_cpu_seconds(proxy)? - cpu_before;
    let at_origin = received_packets(&topology.org, addr::ORG_IF)?.saturating_sub(origin_before);
    let spoofed = flood_at_origin(&topology.org)?.saturating_sub(spoofed_before);

    // Phase two: one established stream while the flood runs.
    let flood = start_trafgen(&topology.cli, &conf, duration + FLOOD_HEAD_START * 2)?;
    std::thread::sleep(FLOOD_HEAD_START);
    let stream = iperf(&topology.cli, target, 1, seconds);
    wait(flood)?;
    // A stream that fails is a missing figure, not a reason to lose phase
    // one's (how much of the flood reached the origin).
    let stream = match stream {
        Ok((gbits, _)) => Some(gbits),
        Err(err) => {
            println!("[bench] iperf3 during the flood toward {target} failed: {err:#}");
            None
        }
    };

    let attempts = handshakes.attempts.max(1);
    let succeeded = handshakes.times.len() as u64;
    let mut times = handshakes.times;
    times.sort_by(f64::total_cmp);
    let mut values = vec![
        (
            Metric::FloodSuccess,
            100.0 * succeeded as f64 / attempts as f64,
        ),
        (
            Metric::FloodAtOrigin,
            at_origin as f64 / elapsed.max(0.001) / 1e3,
        ),
        (Metric::FloodSpoofedAtOrigin, spoofed as f64),
        (Metric::FloodEdgeCpu, 100.0 * cpu / elapsed.max(0.001)),
    ];
    if let Some(gbits) = stream {
        values.push((Metric::FloodTcp1, gbits));
    }
    if !times.is_empty() {
        values.push((Metric::FloodHandshakeP50, percentile(&times, 50.0)));
        values.push((Metric::FloodHandshakeP99, percentile(&times, 99.0)));
    }
    println!(
        "[bench] syn flood toward {target}: {succeeded}/{} connections, {spoofed} flood SYNs \
         at the origin, trafgen {flood_status}",
        handshakes.attempts
    );
    Ok(Figures {
        values,
        failed: handshakes.attempts - succeeded,
    })
}

/// trafgen's packet: SYNs from [`SPOOF_FIRST`] upward (the address counts
/// up per packet), random source port and sequence number, to `target`'s
/// HTTP port. trafgen recomputes the checksums for every packet.
fn write_conf(bed: &Bed, target: &str, conf: &Path) -> anyhow::Result<()> {
    let topology = &bed.topology;
    let edge_mac = mac(&topology.edge, addr::EDGE_CLI_IF)?;
    let cli_mac = mac(&topology.cli, addr::CLI_IF)?;
    std::fs::write(
        conf,
        format!(
            "{{ eth(da={edge_mac}, sa={cli_mac}, type=0x0800), \
             ipv4(sa={SPOOF_FIRST}, sa=dinc(), da={target}, ttl=64, df), \
             tcp(sp=drnd(1024, 65535), dp={HTTP_PORT}, seq=drnd(), syn, win=64240) }}\n"
        ),
    )
    .with_context(|| format!("writing {}", conf.display()))
}

/// trafgen on one CPU for `duration` (timeout ends it).
fn start_trafgen(cli: &Netns, conf: &Path, duration: Duration) -> anyhow::Result<Child> {
    let seconds = format!("{:.1}", duration.as_secs_f64());
    trafgen(cli, conf, &seconds)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting trafgen")
}

/// trafgen's end: `timeout` ending it is the normal case.
fn wait(child: Child) -> anyhow::Result<String> {
    let out = child.wait_with_output().context("waiting for trafgen")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !trafgen_ran(out.status, &stderr) {
        anyhow::bail!("trafgen failed ({}): {}", out.status, stderr.trim());
    }
    Ok("ran its time".into())
}

/// What the real client saw.
struct Handshakes {
    attempts: u64,
    /// Handshake times (ms) of the connections that completed a request.
    times: Vec<f64>,
}

/// [`CLIENT_RATE`] connections a second from `cli` for `duration`, each a
/// handshake (timed) and a tiny HTTP/1.0 request answered in full.
fn client(cli: &Netns, to: SocketAddr, duration: Duration) -> anyhow::Result<Handshakes> {
    let enter = cli.enter_handle();
    let worker = std::thread::spawn(move || -> anyhow::Result<Handshakes> {
        enter()?;
        let count = (duration.as_secs_f64() * f64::from(CLIENT_RATE)) as u64;
        let period = Duration::from_secs(1) / CLIENT_RATE;
        let start = Instant::now();
        let mut times = Vec::new();
        for k in 0..count {
            let due = start + period * k as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if let Ok(ms) = one_connection(to) {
                times.push(ms);
            }
        }
        Ok(Handshakes {
            attempts: count,
            times,
        })
    });
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("the flood's client thread panicked"))?
}

/// One connection: its handshake time in ms, once the request was answered.
fn one_connection(to: SocketAddr) -> std::io::Result<f64> {
    let started = Instant::now();
    let mut s = TcpStream::connect_timeout(&to, CLIENT_TIMEOUT)?;
    let handshake = started.elapsed().as_secs_f64() * 1e3;
    s.set_read_timeout(Some(CLIENT_TIMEOUT))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")?;
    let mut buf = [0u8; 512];
    let mut got = 0;
    loop {
        match s.read(&mut buf)? {
            0 => break,
            n => got += n,
        }
    }
    if got == 0 {
        return Err(std::io::Error::other("no answer"));
    }
    Ok(handshake)
}

/// The device the origin's filter mirrors the flood's SYNs to, and its
/// peer, which drops them (addressed to the origin's MAC, not its own).
const COPY_IF: &str = "syn-copy";
const SINK_IF: &str = "syn-sink";

/// Installs the origin's counter of the flood's SYNs: on `org`'s ingress,
/// a u32 filter matching IPv4 (no IP options, as trafgen sends) TCP
/// segments with a 20-byte header (no TCP option) and SYN without ACK,
/// whose mirred action counts them (and mirrors each to a veth whose peer
/// drops it: mirred needs a live device). Nothing else changes: the action
/// passes the packet on (pipe, then the end of the list: ok).
pub fn count_flood_at_origin(org: &Netns) -> anyhow::Result<()> {
    org.run(
        "ip",
        &[
            "link", "add", COPY_IF, "type", "veth", "peer", "name", SINK_IF,
        ],
    )?;
    for dev in [COPY_IF, SINK_IF] {
        org.run("ip", &["link", "set", dev, "up"])?;
    }
    org.run("tc", &["qdisc", "add", "dev", addr::ORG_IF, "clsact"])?;
    let mut args = vec![
        "filter",
        "add",
        "dev",
        addr::ORG_IF,
        "ingress",
        "protocol",
        "ip",
        "pref",
        "10",
        "u32",
    ];
    for (value, mask, at) in [
        // IPv4, 20-byte header.
        ("0x45", "0xff", "0"),
        // TCP.
        ("6", "0xff", "9"),
        // Data offset 5: no option.
        ("0x50", "0xf0", "32"),
        // SYN set, ACK clear.
        ("0x02", "0x12", "33"),
    ] {
        args.extend(["match", "u8", value, mask, "at", at]);
    }
    args.extend(["action", "mirred", "egress", "mirror", "dev", COPY_IF]);
    org.run("tc", &args)?;
    Ok(())
}

/// The flood's SYNs [`count_flood_at_origin`]'s filter has seen so far.
fn flood_at_origin(org: &Netns) -> anyhow::Result<u64> {
    let out = org.run(
        "tc",
        &["-s", "-j", "filter", "show", "dev", addr::ORG_IF, "ingress"],
    )?;
    let json: serde_json::Value = serde_json::from_str(&out).context("tc -j filter show")?;
    json.as_array()
        .into_iter()
        .flatten()
        .flat_map(|filter| {
            filter["options"]["actions"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .find(|action| action["kind"] == "mirred")
        .and_then(|action| action["stats"]["packets"].as_u64())
        .with_context(|| format!("no counter of the flood's SYNs at the origin: {out}"))
}

/// Packets `dev` in `ns` received (`ip -s -j link`): at the origin, the
/// flood's SYNs that got through plus the real client's few packets.
fn received_packets(ns: &Netns, dev: &str) -> anyhow::Result<u64> {
    let out = ns.run("ip", &["-s", "-j", "link", "show", dev])?;
    let json: serde_json::Value = serde_json::from_str(&out).context("ip -j link")?;
    json[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .with_context(|| format!("no rx packet count for {dev}: {out}"))
}

/// What the flood costs the edge, in CPU seconds: the machine's interrupt
/// and softirq time (the kernel's packet work: XDP, TC, the stack, in
/// every namespace, so the origin's and the sender's share are in it too)
/// plus the proxy process's own time. An approximation: the namespaces
/// share two cores.
fn edge_cpu_seconds(proxy: Option<u32>) -> anyhow::Result<f64> {
    // irq and softirq.
    let kernel = cpu_seconds(&[5, 6])?;
    let process = proxy.map(process_tree_cpu_seconds).transpose()?;
    Ok(kernel + process.unwrap_or(0.0))
}
