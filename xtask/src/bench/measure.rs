//! The clients: each measurement drives real traffic from `cli` through
//! one system for a fixed time and returns its figures.
use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use ::tests::netns::{Netns, addr, run_checked};
use anyhow::{Context as _, bail};

use super::{
    Bed, ECHO_PORT, EDGE_IP, HTTP_PORT, IPERF_PORT, KeyKind, Measurement, Metric, System, peers,
    wait_for_line,
};
use crate::setup;

/// What one measurement yields.
pub struct Figures {
    pub values: Vec<(Metric, f64)>,
    /// Connections that failed while it ran.
    pub failed: u64,
}

impl Figures {
    /// A run in which every connection failed measured nothing.
    pub fn checked(self) -> anyhow::Result<Figures> {
        if self.failed > 0 && self.values.iter().all(|(_, v)| *v == 0.0) {
            bail!("all {} connections failed", self.failed);
        }
        Ok(self)
    }
}

/// Runs `measurement` through `system`; `proxy` is the system's process
/// (its CPU time is read), if it has one.
pub fn measure(
    measurement: Measurement,
    system: System,
    bed: &Bed,
    proxy: Option<u32>,
    seconds: u64,
) -> anyhow::Result<Figures> {
    let target = system.target();
    let cli = &bed.topology.cli;
    let duration = Duration::from_secs(seconds);
    Ok(match measurement {
        Measurement::Tcp { streams, .. } => {
            let cpu_before = busy_cpu_seconds()?;
            let proxy_before = proxy.map(process_tree_cpu_seconds).transpose()?;
            let (gbits, bytes) = iperf(cli, target, streams, seconds)?;
            let cpu = busy_cpu_seconds()? - cpu_before;
            let proxy_cpu = match (proxy, proxy_before) {
                (Some(pid), Some(before)) => Some(process_tree_cpu_seconds(pid)? - before),
                _ => None,
            };
            let metric = throughput_metric(measurement)
                .with_context(|| format!("no throughput metric for {measurement:?}"))?;
            let mut values = vec![(metric, gbits)];
            if metric == Metric::Tcp8 && bytes > 0.0 {
                let gb = bytes / 1e9;
                values.push((Metric::CpuPerGb, cpu / gb));
                if let Some(proxy_cpu) = proxy_cpu {
                    values.push((Metric::ProxyCpuPerGb, proxy_cpu / gb));
                }
            }
            Figures { values, failed: 0 }
        }
        Measurement::Udp64 => {
            let (sent, delivered) = udp_flood(bed, target, seconds)?;
            let lost = if sent > 0 {
                100.0 * sent.saturating_sub(delivered) as f64 / sent as f64
            } else {
                0.0
            };
            Figures {
                values: vec![
                    (Metric::Udp64, delivered as f64 / seconds as f64 / 1e3),
                    (Metric::Udp64Loss, lost),
                ],
                failed: 0,
            }
        }
        Measurement::ConnRate => {
            let to = format!("{target}:{HTTP_PORT}").parse()?;
            let (rate, failed) = conn_rate(cli, to, 4, duration)?;
            Figures {
                values: vec![(Metric::ConnRate, rate)],
                failed,
            }
        }
        Measurement::Tls(kind) => {
            let to = format!("{target}:{}", kind.port()).parse()?;
            let (rate, failed) = tls_rate(cli, to, 4, duration)?;
            let metric = match kind {
                KeyKind::EcdsaP256 => Metric::TlsEcdsa,
                KeyKind::Rsa2048 => Metric::TlsRsa,
            };
            Figures {
                values: vec![(metric, rate)],
                failed,
            }
        }
        Measurement::SynFlood => super::flood::syn_flood(bed, target, proxy, seconds)?,
        Measurement::Latency => {
            let to = format!("{target}:{ECHO_PORT}").parse()?;
            let (p50, p99) = latency(cli, to, duration)?;
            Figures {
                values: vec![(Metric::LatencyP50, p50), (Metric::LatencyP99, p99)],
                failed: 0,
            }
        }
    })
}

/// The Gbit/s figure of a TCP run (the run's other figures are CPU costs).
fn throughput_metric(measurement: Measurement) -> Option<Metric> {
    measurement
        .metrics()
        .into_iter()
        .find(|m| m.unit() == "Gbit/s")
}

/// iperf3 from `cli` to `target`: Gbit/s and bytes received by the origin.
pub(super) fn iperf(
    cli: &Netns,
    target: &str,
    streams: u8,
    seconds: u64,
) -> anyhow::Result<(f64, f64)> {
    let (secs, port, streams) = (
        seconds.to_string(),
        IPERF_PORT.to_string(),
        streams.to_string(),
    );
    // Bounded: a broken path must not hang the run.
    let limit = (seconds + 15).to_string();
    let out = cli.run(
        "timeout",
        &[
            &limit,
            "iperf3",
            "-c",
            target,
            "-p",
            &port,
            "-t",
            &secs,
            "-J",
            "-P",
            &streams,
            "--connect-timeout",
            "3000",
        ],
    )?;
    let json: serde_json::Value = serde_json::from_str(&out).context("iperf3 JSON")?;
    let received = &json["end"]["sum_received"];
    let bits = received["bits_per_second"]
        .as_f64()
        .context("no sum_received in iperf3 output")?;
    Ok((bits / 1e9, received["bytes"].as_f64().unwrap_or(0.0)))
}

/// CPU time the whole machine spent working (all cores: user, nice,
/// system, irq, softirq; not idle, iowait or a hypervisor's steal), from
/// /proc/stat. Client, edge and origin share the machine, so a figure per
/// GB compares systems, not the edge alone.
fn busy_cpu_seconds() -> anyhow::Result<f64> {
    // user nice system idle iowait irq softirq steal ...
    cpu_seconds(&[0, 1, 2, 5, 6])
}

/// The sum of the machine-wide `cpu` line's `fields` of /proc/stat (0
/// user, 1 nice, 2 system, 3 idle, 4 iowait, 5 irq, 6 softirq, ...), in
/// seconds.
pub(super) fn cpu_seconds(fields: &[usize]) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat
        .lines()
        .find(|l| l.starts_with("cpu "))
        .context("no cpu line in /proc/stat")?;
    let values: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let ticks: f64 = fields
        .iter()
        .map(|&k| values.get(k).copied().unwrap_or(0.0))
        .sum();
    Ok(ticks / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// User and system CPU time of process `pid` and all its descendants
/// (nginx's workers, the agent's threads), from /proc/*/stat.
pub(super) fn process_tree_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    // (pid, parent, utime + stime in ticks) of every process.
    let mut procs = Vec::new();
    for entry in std::fs::read_dir("/proc").context("reading /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // A process may end while this reads: skip it.
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // After ")": state ppid ... utime (12th) stime (13th).
        let number = |k: usize| fields.get(k).and_then(|f| f.parse::<u64>().ok());
        if let (Some(ppid), Some(utime), Some(stime)) = (number(1), number(11), number(12)) {
            procs.push((p, ppid as u32, utime + stime));
        }
    }
    let mut tree = vec![pid];
    let mut k = 0;
    while k < tree.len() {
        let parent = tree[k];
        tree.extend(
            procs
                .iter()
                .filter(|(_, pp, _)| *pp == parent)
                .map(|(p, _, _)| *p),
        );
        k += 1;
    }
    let ticks: u64 = procs
        .iter()
        .filter(|(p, _, _)| tree.contains(p))
        .map(|(_, _, t)| t)
        .sum();
    Ok(ticks as f64 / clock_ticks())
}

/// The source ports the datagrams cycle through: a flow per port, as a
/// service with many clients sees.
const UDP_SOURCE_PORTS: (u16, u16) = (40000, 40063);
/// Floods tried before giving up when trafgen keeps stopping early.
const UDP_FLOOD_ATTEMPTS: u32 = 3;

/// 64-byte UDP datagrams from trafgen (packet mmap, one sender thread: far
/// faster than a socket sender) toward `target`:5201 for `seconds`, from
/// [`UDP_SOURCE_PORTS`]; returns how many the client's interface sent and
/// how many reached the origin, counted (and dropped) by an XDP sink on
/// the origin's interface, so the origin's own stack does not cap the
/// figure. trafgen sometimes gives up at once ("Flushing TX_RING failed"):
/// such a flood, shorter than asked, is run again rather than reported as
/// a rate over `seconds`.
fn udp_flood(bed: &Bed, target: &str, seconds: u64) -> anyhow::Result<(u64, u64)> {
    let topology = &bed.topology;
    let edge_mac = mac(&topology.edge, addr::EDGE_CLI_IF)?;
    let cli_mac = mac(&topology.cli, addr::CLI_IF)?;
    let conf = bed.work.join("udp64.trafgen");
    std::fs::write(
        &conf,
        format!(
            "{{ eth(da={edge_mac}, sa={cli_mac}, type=0x0800), \
             ipv4(saddr={cli}, daddr={target}, ttl=64, df), \
             udp(sport=dinc({first}, {last}), dport={IPERF_PORT}), fill(0x41, 64) }}\n",
            cli = addr::CLI_V4,
            first = UDP_SOURCE_PORTS.0,
            last = UDP_SOURCE_PORTS.1,
        ),
    )?;
    for attempt in 1..=UDP_FLOOD_ATTEMPTS {
        match flood_once(bed, &conf, seconds)? {
            Ok(counts) => return Ok(counts),
            Err(why) => {
                eprintln!("[bench] udp flood {attempt}/{UDP_FLOOD_ATTEMPTS} toward {target}: {why}")
            }
        }
    }
    bail!("trafgen stopped early in each of {UDP_FLOOD_ATTEMPTS} floods toward {target}")
}

/// One flood of `conf` for `seconds`: (sent, delivered), or why it does
/// not count (trafgen stopped early).
fn flood_once(bed: &Bed, conf: &Path, seconds: u64) -> anyhow::Result<Result<(u64, u64), String>> {
    let topology = &bed.topology;
    let helper = bed.release.join("bench-helper");
    let mut sink = topology.org.spawn(
        "udp-sink",
        &helper.to_string_lossy(),
        &["sink", addr::ORG_IF],
    )?;
    wait_for_line(&mut sink, "sink ready")?;
    let sent_before = sent_packets(&topology.cli, addr::CLI_IF)?;
    let started = Instant::now();
    let trafgen = trafgen(&topology.cli, conf, &seconds.to_string())
        .output()
        .context("starting trafgen")?;
    let ran = started.elapsed();
    // The sink counts what arrived, however trafgen ended.
    let stderr = String::from_utf8_lossy(&trafgen.stderr);
    if !trafgen_ran(trafgen.status, &stderr) {
        bail!("trafgen failed ({}): {}", trafgen.status, stderr.trim());
    }
    std::thread::sleep(Duration::from_millis(300));
    let sent = sent_packets(&topology.cli, addr::CLI_IF)?.saturating_sub(sent_before);
    let (_, log) = sink.stop(Duration::from_secs(5))?;
    if ran < Duration::from_secs(seconds).mul_f64(0.9) {
        return Ok(Err(format!(
            "trafgen stopped after {:.2} s of {seconds} ({}): {}",
            ran.as_secs_f64(),
            trafgen.status,
            stderr.trim()
        )));
    }
    let count: u64 = log
        .lines()
        .find_map(|l| l.strip_prefix("sink count "))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no count from the sink:\n{log}"))?;
    Ok(Ok((sent, count)))
}

/// The MAC address of `dev` in `ns` (`ip -br link`).
pub(super) fn mac(ns: &Netns, dev: &str) -> anyhow::Result<String> {
    let out = ns.run("ip", &["-br", "link", "show", dev])?;
    out.split_whitespace()
        .nth(2)
        .map(str::to_owned)
        .context("no MAC in `ip -br link`")
}

/// trafgen sending `conf` out of `cli`'s interface on one CPU for
/// `seconds`, ended by `timeout`.
pub(super) fn trafgen(cli: &Netns, conf: &Path, seconds: &str) -> Command {
    cli.command(
        "timeout",
        &[
            // Should trafgen ever ignore SIGTERM, it does not run on.
            "--kill-after=2",
            seconds,
            "trafgen",
            "--dev",
            addr::CLI_IF,
            "--conf",
            &conf.to_string_lossy(),
            "--cpus",
            "1",
        ],
    )
}

/// Whether trafgen ran its time: `timeout` ending it (124, or 137 after
/// the kill) is the normal end; stopped with a full TX ring, trafgen may
/// also fail to flush it on the way out, which is harmless.
pub(super) fn trafgen_ran(status: std::process::ExitStatus, stderr: &str) -> bool {
    status.success()
        || matches!(status.code(), Some(124 | 137))
        || (status.code() == Some(1) && stderr.contains("Flushing TX_RING failed"))
}

/// Packets `dev` in `ns` has put on the wire (`ip -s -j link`): a veth
/// counts the ones its peer could not take as dropped, not as sent, and
/// those were offered all the same.
fn sent_packets(ns: &Netns, dev: &str) -> anyhow::Result<u64> {
    let out = ns.run("ip", &["-s", "-j", "link", "show", dev])?;
    let json: serde_json::Value = serde_json::from_str(&out).context("ip -j link")?;
    let tx = &json[0]["stats64"]["tx"];
    let count = |key: &str| {
        tx[key]
            .as_u64()
            .with_context(|| format!("no tx {key} count for {dev}: {out}"))
    };
    Ok(count("packets")? + count("dropped")?)
}

/// Runs `connection` in a loop on `threads` threads in `cli` for
/// `duration`: completed per second, and how many failed.
fn rate<F>(
    cli: &Netns,
    threads: usize,
    duration: Duration,
    connection: F,
) -> anyhow::Result<(f64, u64)>
where
    F: Fn() -> std::io::Result<()> + Send + Sync + 'static,
{
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let connection = Arc::new(connection);
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (done, failed) = (Arc::clone(&done), Arc::clone(&failed));
            let connection = Arc::clone(&connection);
            let enter = cli.enter_handle();
            std::thread::spawn(move || -> anyhow::Result<()> {
                enter()?;
                while Instant::now() < deadline {
                    match connection() {
                        Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                        Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                    };
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))??;
    }
    Ok((
        done.load(Ordering::Relaxed) as f64 / duration.as_secs_f64(),
        failed.load(Ordering::Relaxed),
    ))
}

const REQUEST: &[u8] = b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n";

/// New TCP connections per second, each a tiny HTTP/1.0 request and its
/// answer; and how many failed.
fn conn_rate(
    cli: &Netns,
    target: SocketAddr,
    threads: usize,
    duration: Duration,
) -> anyhow::Result<(f64, u64)> {
    rate(cli, threads, duration, move || {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(REQUEST)?;
        let mut buf = [0u8; 512];
        while s.read(&mut buf)? > 0 {}
        Ok(())
    })
}

/// Full TLS 1.3 handshakes per second (no resumption), each followed by
/// one HTTP/1.0 request through to the origin; and how many failed.
fn tls_rate(
    cli: &Netns,
    target: SocketAddr,
    threads: usize,
    duration: Duration,
) -> anyhow::Result<(f64, u64)> {
    let config = Arc::new(tls_client_config()?);
    let name = rustls::pki_types::ServerName::try_from("bench.test")?;
    rate(cli, threads, duration, move || {
        let conn = rustls::ClientConnection::new(Arc::clone(&config), name.clone())
            .map_err(std::io::Error::other)?;
        let sock = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
        sock.set_read_timeout(Some(Duration::from_secs(2)))?;
        sock.set_nodelay(true)?;
        let mut tls = rustls::StreamOwned::new(conn, sock);
        tls.write_all(REQUEST)?;
        let mut answer = Vec::new();
        // Peers may close without close_notify once the origin is done.
        match tls.read_to_end(&mut answer) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
            Err(e) => return Err(e),
        }
        if !answer.starts_with(b"HTTP/1.") {
            return Err(std::io::Error::other("no HTTP answer"));
        }
        Ok(())
    })
}

/// A client that checks the server's signature (the work a real client
/// does per handshake) but not its chain: the certificates are self-signed.
fn tls_client_config() -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(SignatureOnly(provider.signature_verification_algorithms));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3 client")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

#[derive(Debug)]
struct SignatureOnly(rustls::crypto::WebPkiSupportedAlgorithms);

impl rustls::client::danger::ServerCertVerifier for SignatureOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Messages per second of the latency run: moderate, far below any
/// system's capacity, so the figure is the path's delay, not a queue.
const LATENCY_RATE: u32 = 1000;

/// Round trips of a 32-byte message on one connection to the echo origin,
/// LATENCY_RATE a second for `duration`: p50 and p99 in microseconds.
fn latency(cli: &Netns, target: SocketAddr, duration: Duration) -> anyhow::Result<(f64, f64)> {
    let enter = cli.enter_handle();
    let worker = std::thread::spawn(move || -> anyhow::Result<Vec<f64>> {
        enter()?;
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.set_nodelay(true)?;
        // The echo origin greets first: `origin <port>\n`.
        let mut greeting = [0u8; 1];
        while s.read(&mut greeting)? == 1 && greeting[0] != b'\n' {}
        let message = [b'x'; 32];
        let mut back = [0u8; 32];
        let period = Duration::from_secs(1) / LATENCY_RATE;
        let count = (duration.as_secs_f64() * f64::from(LATENCY_RATE)) as usize;
        let mut samples = Vec::with_capacity(count);
        let start = Instant::now();
        for k in 0..count {
            let due = start + period * k as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let sent = Instant::now();
            s.write_all(&message)?;
            s.read_exact(&mut back)?;
            samples.push(sent.elapsed().as_secs_f64() * 1e6);
        }
        Ok(samples)
    });
    let mut samples = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the latency client panicked"))??;
    if samples.is_empty() {
        bail!("no round trip measured");
    }
    samples.sort_by(f64::total_cmp);
    Ok((percentile(&samples, 50.0), percentile(&samples, 99.0)))
}

/// The `p`th percentile of sorted `samples` (nearest rank).
pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// ns/packet of the proxy program (BPF_PROG_TEST_RUN) in the edge namespace.
pub fn xdp_cost(bed: &Bed) -> anyhow::Result<serde_json::Value> {
    let config = bed.work.join("cost.json");
    std::fs::write(&config, peers::cost_config(bed))?;
    let helper = bed.release.join("bench-helper");
    let out = run_checked(&mut bed.topology.edge.command(
        &helper.to_string_lossy(),
        &[
            "xdp-cost",
            "--ingress",
            addr::EDGE_CLI_IF,
            "--config",
            &config.to_string_lossy(),
            "--client",
            addr::CLI_V4,
            "--edge",
            EDGE_IP,
            "--port",
            &IPERF_PORT.to_string(),
        ],
    ))?;
    serde_json::from_str(&out).context("bench-helper output")
}

/// The country blocked whole in the access-rule benchmark (one with many
/// networks), and where its allowed client comes from.
pub const BLOCKED_COUNTRY: &str = "US";
pub const ALLOWED_COUNTRY: &str = "DE";

/// The access rules' figures, from `bench-helper rule-cost` (BPF objects
/// only: no namespace, no interface).
pub fn access_rules(release: &Path) -> anyhow::Result<serde_json::Value> {
    let helper = release.join("bench-helper");
    let out = run_checked(Command::new(helper).args([
        "rule-cost",
        "--database",
        setup::GEOIP_COUNTRY_DB,
        "--country",
        BLOCKED_COUNTRY,
        "--allowed-country",
        ALLOWED_COUNTRY,
    ]))
    .context("measuring the access rules")?;
    serde_json::from_str(&out).context("bench-helper rule-cost output")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tcp_run_has_its_throughput_figure() {
        use super::super::LinkMode;
        for (streams, mode, metric) in [
            (1, LinkMode::Wire, Metric::Tcp1),
            (4, LinkMode::Wire, Metric::Tcp4),
            (8, LinkMode::Wire, Metric::Tcp8),
            (1, LinkMode::VethDefault, Metric::Tcp1Veth),
            (8, LinkMode::VethDefault, Metric::Tcp8Veth),
        ] {
            let run = Measurement::Tcp { streams, mode };
            assert_eq!(throughput_metric(run), Some(metric), "{run:?}");
            assert_eq!(metric.measurement(), run);
        }
        assert_eq!(
            throughput_metric(Measurement::Tcp {
                streams: 4,
                mode: LinkMode::VethDefault
            }),
            None
        );
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), 50.0);
        assert_eq!(percentile(&samples, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn a_process_tree_counts_its_children() {
        let me = std::process::id();
        let before = process_tree_cpu_seconds(me).unwrap();
        // A child that spins, then waits: while it waits, its time is
        // still that of a live descendant.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; sleep 2",
            ])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut during = before;
        while during - before < 0.1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            during = process_tree_cpu_seconds(me).unwrap();
        }
        let _ = child.kill();
        let _ = child.wait();
        assert!(during - before >= 0.1, "{before} -> {during}");
    }

    #[test]
    fn busy_cpu_time_moves_with_work() {
        let before = busy_cpu_seconds().unwrap();
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert!(x != 1);
        let after = busy_cpu_seconds().unwrap();
        assert!(after - before >= 0.1, "{before} -> {after}");
    }
}
