//! Real servers (socat) started in a namespace, ready when this returns.
use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{netns::Netns, process::Background};

/// A TCP server on `port` (IPv4 and IPv6) that greets each connection with
/// `origin <port>` and then echoes what it reads: clients learn which origin
/// port their connection reached.
pub fn tcp_echo(ns: &Netns, port: u16) -> anyhow::Result<Background> {
    let listen = format!("TCP6-LISTEN:{port},fork,reuseaddr,ipv6only=0");
    let script = format!("SYSTEM:echo origin {port}; exec cat");
    let server = ns.spawn(&format!("tcp-echo-{port}"), "socat", &[&listen, &script])?;
    wait_listening(ns, "t", port)?;
    Ok(server)
}

/// A UDP server on `port` (IPv4 and IPv6) that answers each datagram with
/// `origin <port>: <first line of the datagram>`.
pub fn udp_echo(ns: &Netns, port: u16) -> anyhow::Result<Background> {
    let listen = format!("UDP6-RECVFROM:{port},fork,ipv6only=0");
    let script = format!("SYSTEM:read line; echo \"origin {port}: $line\"");
    let server = ns.spawn(&format!("udp-echo-{port}"), "socat", &[&listen, &script])?;
    wait_listening(ns, "u", port)?;
    Ok(server)
}

/// A TLS server on `port` (socat) with `cert`/`key` that greets each
/// connection with `origin-tls <port>` and echoes what it reads.
pub fn tls_echo(ns: &Netns, port: u16, cert: &Path, key: &Path) -> anyhow::Result<Background> {
    let listen = format!(
        "OPENSSL-LISTEN:{port},fork,reuseaddr,pf=ip6,ipv6only=0,verify=0,cert={},key={}",
        cert.display(),
        key.display()
    );
    let script = format!("SYSTEM:echo origin-tls {port}; exec cat");
    let server = ns.spawn(&format!("tls-echo-{port}"), "socat", &[&listen, &script])?;
    wait_listening(ns, "t", port)?;
    Ok(server)
}

/// nginx in the foreground in `ns`, with `dir` as its prefix (logs, pid
/// file) and `config` as the rest of its nginx.conf.
pub fn nginx(ns: &Netns, label: &str, dir: &Path, config: &str) -> anyhow::Result<Background> {
    std::fs::create_dir_all(dir.join("logs"))?;
    let conf = dir.join("nginx.conf");
    let pid = dir.join("nginx.pid");
    std::fs::write(&conf, format!("pid {};\n{config}", pid.display()))?;
    let prefix = dir.to_string_lossy().into_owned();
    let conf = conf.to_string_lossy().into_owned();
    ns.spawn(
        label,
        "nginx",
        &[
            "-p",
            &prefix,
            "-e",
            "stderr",
            "-c",
            &conf,
            "-g",
            "daemon off;",
        ],
    )
}

/// nginx (stream) on `ports`, IPv4 and IPv6, expecting a PROXY header (v1 or
/// v2) on every connection and answering `<port> <client addr> <client
/// port>` from the header it parsed, then closing.
pub fn nginx_proxy_protocol(ns: &Netns, ports: &[u16], dir: &Path) -> anyhow::Result<Background> {
    let listens: String = ports
        .iter()
        .map(|p| format!("listen {p} proxy_protocol; listen [::]:{p} proxy_protocol; "))
        .collect();
    let config = format!(
        "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\n\
         worker_processes 1;\nevents {{ worker_connections 256; }}\n\
         stream {{ server {{ {listens}\
         return \"$server_port $proxy_protocol_addr $proxy_protocol_port\\n\"; }} }}\n"
    );
    let server = nginx(ns, "nginx-proxy-protocol", dir, &config)?;
    for port in ports {
        wait_listening(ns, "t", *port)?;
    }
    Ok(server)
}

/// A TCP server on `port` that writes everything it receives from one
/// connection to `path`, then exits.
pub fn tcp_sink(ns: &Netns, port: u16, path: &str) -> anyhow::Result<Background> {
    let listen = format!("TCP6-LISTEN:{port},reuseaddr,ipv6only=0");
    let file = format!("CREATE:{path}");
    let server = ns.spawn(
        &format!("tcp-sink-{port}"),
        "socat",
        &["-u", &listen, &file],
    )?;
    wait_listening(ns, "t", port)?;
    Ok(server)
}

/// An authoritative-only DNS server (dnsmasq) on `listen`:53 that answers
/// A and AAAA for `name` with `addresses` and nothing else.
pub fn dns(ns: &Netns, listen: &str, name: &str, addresses: &[&str]) -> anyhow::Result<Background> {
    let record = format!("--host-record={name},{}", addresses.join(","));
    dnsmasq(ns, "dnsmasq", listen, &[record])
}

/// A DNS server (dnsmasq) on `listen`:53 that answers A and AAAA for every
/// name with `v4` and `v6`: made-up origin names resolve at once, so no
/// change waits out the agent's resolver timeout.
pub fn dns_any(ns: &Netns, listen: &str, v4: &str, v6: &str) -> anyhow::Result<Background> {
    let answers = [format!("--address=/#/{v4}"), format!("--address=/#/{v6}")];
    dnsmasq(ns, "dnsmasq-any", listen, &answers)
}

/// dnsmasq in the foreground on `listen`:53, no upstream, no hosts file,
/// answering from `records` (its options) only.
fn dnsmasq(
    ns: &Netns,
    label: &str,
    listen: &str,
    records: &[String],
) -> anyhow::Result<Background> {
    let listen = format!("--listen-address={listen}");
    let mut args = vec![
        "--no-daemon",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--bind-interfaces",
        "--pid-file=",
        "--port=53",
        &listen,
    ];
    args.extend(records.iter().map(String::as_str));
    let server = ns.spawn(label, "dnsmasq", &args)?;
    wait_listening(ns, "u", 53)?;
    Ok(server)
}

/// Waits until a socket listens on `port`; `kind` is `t` (TCP) or `u`
/// (UDP), as `ss` spells it. [`LISTEN_LIMIT`] at most: a hang guard.
pub fn wait_listening(ns: &Netns, kind: &str, port: u16) -> anyhow::Result<()> {
    const LISTEN_LIMIT: Duration = Duration::from_secs(30);
    let deadline = Instant::now() + LISTEN_LIMIT;
    let needle = format!(":{port} ");
    loop {
        let out = ns.run("ss", &[&format!("-Hln{kind}")])?;
        if out.lines().any(|line| line.contains(&needle)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "nothing listens on {kind} port {port} in {} after {LISTEN_LIMIT:?}",
                ns.name()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `udp-pp-origin` (this crate's binary) on `port`, IPv4 and IPv6: it
/// decodes the header the edge puts in front of datagrams (`mode`: `v2` for
/// PROXY v2, `spp` for Simple Proxy Protocol) and answers each datagram
/// with `client=.. proxy=.. headers=<n> payload=..`; `reply` (`ok`, `short`,
/// `bad-magic`, `other-client`) shapes the SPP header of its replies.
pub fn udp_pp_origin(ns: &Netns, port: u16, mode: &str, reply: &str) -> anyhow::Result<Background> {
    let bin = udp_pp_origin_bin()?;
    let listen = format!("[::]:{port}");
    let server = ns.spawn(
        &format!("udp-pp-origin-{mode}-{port}"),
        &bin.to_string_lossy(),
        &["--listen", &listen, "--mode", mode, "--reply", reply],
    )?;
    if let Err(err) = wait_listening(ns, "u", port) {
        bail!("{err:#}; udp-pp-origin's output:\n{}", server.log());
    }
    Ok(server)
}

/// The `udp-pp-origin` binary: `UDP_PP_ORIGIN_BIN` (the demo sets it),
/// else next to the test binary's `deps/` directory (`target/<profile>/`),
/// where cargo builds it before the integration tests of this package.
fn udp_pp_origin_bin() -> anyhow::Result<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("UDP_PP_ORIGIN_BIN") {
        return Ok(path.into());
    }
    let exe = std::env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .with_context(|| format!("{} is not in target/<profile>/deps/", exe.display()))?;
    let bin = profile_dir.join("udp-pp-origin");
    if !bin.is_file() {
        bail!(
            "no udp-pp-origin binary at {}: `cargo test -p tests` builds it for the \
             integration tests, or run `cargo build -p tests --bin udp-pp-origin`",
            bin.display()
        );
    }
    Ok(bin)
}
