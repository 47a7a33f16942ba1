//! Real clients (socat) run in a namespace, bounded in time.
use std::{
    io::Write as _,
    process::{Output, Stdio},
};

use anyhow::Context as _;

use crate::netns::Netns;

/// `[v6]` or `v4`, as socat and URLs want addresses (anything else, such
/// as `ip:port` or `[v6]:port`, as it is).
pub fn bracket(ip: &str) -> String {
    if ip.parse::<std::net::Ipv6Addr>().is_ok() {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    }
}

/// socat with `args` and `line` (plus a newline) on its stdin; what came
/// back, or an error naming `what` with socat's complaint.
fn line_exchange(ns: &Netns, args: &[&str], line: &str, what: &str) -> anyhow::Result<String> {
    let out = socat(ns, args, format!("{line}\n").as_bytes())?;
    anyhow::ensure!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs socat in `ns` with `input` on its stdin. Its own options (`-T`,
/// `connect-timeout`) end an exchange; `timeout 60` only catches a hang.
pub fn socat(ns: &Netns, args: &[&str], input: &[u8]) -> anyhow::Result<Output> {
    let mut cmd = ns.command("timeout", &["60", "socat"]);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting socat")?;
    // Written from another thread while the output is read here: a large
    // echoed input would otherwise fill both pipes and stall.
    let writer = child.stdin.take().map(|mut stdin| {
        let input = input.to_vec();
        std::thread::spawn(move || stdin.write_all(&input))
    });
    let output = child.wait_with_output().context("waiting for socat")?;
    if let Some(writer) = writer {
        match writer.join() {
            Ok(written) => written.context("writing to socat")?,
            Err(_) => anyhow::bail!("the thread writing to socat panicked"),
        }
    }
    Ok(output)
}

/// One TCP exchange: connect, send `line`, half-close, read until the
/// server closes. Returns what the server sent.
pub fn tcp_exchange(ns: &Netns, ip: &str, port: u16, line: &str) -> anyhow::Result<String> {
    tcp_exchange_from(ns, None, ip, port, line)
}

/// `tcp_exchange` from the source address `from` (one of the namespace's
/// addresses) when given.
pub fn tcp_exchange_from(
    ns: &Netns,
    from: Option<&str>,
    ip: &str,
    port: u16,
    line: &str,
) -> anyhow::Result<String> {
    let bind = from.map_or(String::new(), |src| format!(",bind={}", bracket(src)));
    let target = format!("TCP:{}:{port},connect-timeout=3{bind}", bracket(ip));
    line_exchange(
        ns,
        &["-t3", "-T5", "-", &target],
        line,
        &format!("tcp {ip}:{port}"),
    )
}

/// One UDP exchange: send `line` from a connected UDP socket (bash's
/// /dev/udp), return the first line of the reply (2 s at most).
pub fn udp_exchange(ns: &Netns, ip: &str, port: u16, line: &str) -> anyhow::Result<String> {
    let script = format!(
        // head, not `read`: bash's read takes one byte per recv, which
        // would drop the rest of the datagram.
        "exec 3<>/dev/udp/{ip}/{port} && echo '{line}' >&3 && timeout 2 head -n 1 <&3"
    );
    let out = ns
        .command("timeout", &["5", "bash", "-c", &script])
        .output()
        .context("starting bash")?;
    anyhow::ensure!(
        out.status.success(),
        "udp {ip}:{port}: no reply ({}) {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// One UDP exchange from `from` (`ip` or `ip:port`; `[v6]:port`): send
/// `line`, return what came back within 2 s (empty when nothing did).
pub fn udp_exchange_from(
    ns: &Netns,
    from: &str,
    ip: &str,
    port: u16,
    line: &str,
) -> anyhow::Result<String> {
    let target = format!("UDP:{}:{port},bind={from}", bracket(ip));
    line_exchange(
        ns,
        &["-t2", "-T2", "-", &target],
        line,
        &format!("udp {ip}:{port} from {from}"),
    )
}

/// One TLS exchange (socat): connect with SNI `sni`, validate the server's
/// certificate against `ca`, send `line`, read until the server closes.
pub fn tls_exchange(
    ns: &Netns,
    ip: &str,
    port: u16,
    sni: &str,
    ca: &std::path::Path,
    line: &str,
) -> anyhow::Result<String> {
    let target = format!(
        "OPENSSL:{}:{port},connect-timeout=3,snihost={sni},commonname={sni},cafile={}",
        bracket(ip),
        ca.display()
    );
    line_exchange(
        ns,
        &["-t3", "-T5", "-", &target],
        line,
        &format!("tls {ip}:{port}"),
    )
}

/// Runs `work` on a thread of its own inside `ns` (std sockets there are
/// the namespace's) and returns what it returns.
pub fn in_namespace<T: Send + 'static>(
    ns: &Netns,
    work: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let enter = ns.enter_handle();
    std::thread::spawn(move || -> anyhow::Result<T> {
        enter()?;
        Ok(work())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread in the namespace panicked"))?
}
