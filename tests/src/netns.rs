//! Network namespaces and the three-host topology.
use std::{
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use anyhow::{Context as _, bail};

use crate::process::Background;

/// A named network namespace, deleted on drop.
pub struct Netns {
    name: String,
}

impl Netns {
    pub fn create(name: &str) -> anyhow::Result<Self> {
        run_checked(Command::new("ip").args(["netns", "add", name]))?;
        let netns = Self {
            name: name.to_owned(),
        };
        netns.run("ip", &["link", "set", "lo", "up"])?;
        Ok(netns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A command that runs inside this namespace. `nsenter --net` switches
    /// only the network namespace (unlike `ip netns exec`, which remounts
    /// /sys and would hide /sys/fs/bpf).
    pub fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path()))
            .arg("--")
            .arg(program)
            .args(args);
        cmd
    }

    /// Moves the calling thread into this namespace (for in-process work
    /// such as BPF_PROG_TEST_RUN with an ingress interface). The thread
    /// stays there; use it for one test only.
    pub fn enter_this_thread(&self) -> anyhow::Result<()> {
        enter(&self.path())
    }

    /// The same, for a thread that is yet to start (a client thread).
    pub fn enter_handle(&self) -> impl FnOnce() -> anyhow::Result<()> + Send + 'static {
        let path = self.path();
        move || enter(&path)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Runs to completion; fails with its stderr when it exits non-zero.
    pub fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        run_checked(&mut self.command(program, args))
    }

    /// Starts a long-running process (a server) in this namespace.
    pub fn spawn(&self, label: &str, program: &str, args: &[&str]) -> anyhow::Result<Background> {
        Background::spawn(label, self.command(program, args))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let status = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("warning: could not delete netns {}", self.name);
        }
    }
}

/// Moves the calling thread into the network namespace at `path`.
fn enter(path: &str) -> anyhow::Result<()> {
    use std::os::fd::AsRawFd as _;
    let file = std::fs::File::open(path).with_context(|| format!("opening {path}"))?;
    // SAFETY: a valid namespace fd; setns only changes this thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        bail!("setns {path}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

/// Runs `cmd`, returning stdout, or an error with the command and its stderr.
/// A counter of the namespace's `/proc/net/snmp` (e.g. `Tcp` `InSegs`,
/// `Udp` `InDatagrams`): what its own stack received.
pub fn snmp_counter(ns: &Netns, group: &str, field: &str) -> anyhow::Result<u64> {
    let snmp = ns.run("cat", &["/proc/net/snmp"])?;
    let prefix = format!("{group}:");
    let mut lines = snmp.lines().filter(|l| l.starts_with(&prefix));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        anyhow::bail!("no {group} lines in /proc/net/snmp");
    };
    let index = names
        .split_whitespace()
        .position(|n| n == field)
        .with_context(|| format!("no {group} {field} in /proc/net/snmp"))?;
    values
        .split_whitespace()
        .nth(index)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("bad {group} {field} value"))
}

pub fn run_checked(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("could not start {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Addresses of the three-host topology (the same in every instance: each
/// instance lives in its own namespaces).
pub mod addr {
    pub const CLI_V4: &str = "10.0.1.2";
    pub const EDGE_CLI_V4: &str = "10.0.1.1";
    pub const EDGE_ORG_V4: &str = "10.0.2.1";
    pub const ORG_V4: &str = "10.0.2.2";
    pub const CLI_V6: &str = "fd00:1::2";
    pub const EDGE_CLI_V6: &str = "fd00:1::1";
    pub const EDGE_ORG_V6: &str = "fd00:2::1";
    pub const ORG_V6: &str = "fd00:2::2";
    /// Edge address pool: routed to `edge` and local there.
    pub const POOL_V4: &str = "10.0.100.0/24";
    pub const POOL_V6: &str = "fd00:100::/64";

    /// The pool's IPv4 address of app `app` (apps take the pool's
    /// addresses in file order: 10.0.100.(app+1)).
    pub fn edge4(app: usize) -> String {
        format!("10.0.100.{}", app + 1)
    }

    /// The pool's IPv6 address of app `app`: fd00:100::(app+1).
    pub fn edge6(app: usize) -> String {
        format!("fd00:100::{:x}", app + 1)
    }
    /// Interface names inside the namespaces.
    pub const CLI_IF: &str = "eth0";
    pub const EDGE_CLI_IF: &str = "to-cli";
    pub const EDGE_ORG_IF: &str = "to-org";
    pub const ORG_IF: &str = "eth0";
    /// A fourth host behind an edge interface no config lists (no XDP,
    /// no access rules): see [`super::Topology::side`].
    pub const EDGE_SIDE_IF: &str = "to-side";
    pub const EDGE_SIDE_V4: &str = "10.0.3.1";
    pub const SIDE_V4: &str = "10.0.3.2";
    pub const EDGE_SIDE_V6: &str = "fd00:3::1";
    pub const SIDE_V6: &str = "fd00:3::2";
}

/// `cli` -- `edge` -- `org`, IPv4 and IPv6, forwarding on `edge`, the edge
/// pool routed from `cli` to `edge` and local on `edge`.
pub struct Topology {
    pub cli: Netns,
    pub edge: Netns,
    pub org: Netns,
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

impl Topology {
    /// The opening of a netns test: None (the test returns) when it may
    /// not run without root (see [`crate::root_or_skip`]), else a new
    /// topology tagged `tag`.
    pub fn for_test(test: &str, tag: &str) -> Option<Self> {
        if !crate::root_or_skip(test) {
            return None;
        }
        Some(Self::new(tag).expect("topology"))
    }

    /// Creates the namespaces; `tag` (a few letters) names them for humans.
    pub fn new(tag: &str) -> anyhow::Result<Self> {
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("spx-{tag}-{}-{n}", std::process::id());
        // Each namespace is owned as soon as it exists, so a failure below
        // still removes the ones already made.
        let topology = Self {
            cli: Netns::create(&format!("{prefix}-cli"))?,
            edge: Netns::create(&format!("{prefix}-edge"))?,
            org: Netns::create(&format!("{prefix}-org"))?,
        };
        topology
            .wire()
            .with_context(|| format!("building topology {prefix}"))?;
        Ok(topology)
    }

    /// A fourth namespace behind another edge interface (`to-side`) that
    /// the test configs do not list: the edge routes the pool for it too.
    /// Deleted when the returned namespace is dropped.
    pub fn side(&self) -> anyhow::Result<Netns> {
        use addr::*;
        let side = Netns::create(&self.edge.name().replace("-edge", "-side"))?;
        veth(&self.edge, EDGE_SIDE_IF, &side, CLI_IF)?;
        address(&self.edge, EDGE_SIDE_IF, EDGE_SIDE_V4, 24, EDGE_SIDE_V6)?;
        address(&side, CLI_IF, SIDE_V4, 24, SIDE_V6)?;
        side.run("ip", &["route", "add", "default", "via", EDGE_SIDE_V4])?;
        side.run(
            "ip",
            &["-6", "route", "add", "default", "via", EDGE_SIDE_V6],
        )?;
        Ok(side)
    }

    fn wire(&self) -> anyhow::Result<()> {
        use addr::*;
        veth(&self.edge, EDGE_CLI_IF, &self.cli, CLI_IF)?;
        veth(&self.edge, EDGE_ORG_IF, &self.org, ORG_IF)?;
        // Like physical NICs: the hosts send complete checksums (no
        // CHECKSUM_PARTIAL that an XDP redirect would forward unfinished),
        // and GRO gives their veth the NAPI context that receiving
        // XDP-redirected frames needs.
        for ns in [&self.cli, &self.org] {
            ns.run("ethtool", &["-K", CLI_IF, "tx", "off", "gro", "on"])?;
        }
        address(&self.cli, CLI_IF, CLI_V4, 24, CLI_V6)?;
        address(&self.edge, EDGE_CLI_IF, EDGE_CLI_V4, 24, EDGE_CLI_V6)?;
        address(&self.edge, EDGE_ORG_IF, EDGE_ORG_V4, 24, EDGE_ORG_V6)?;
        address(&self.org, ORG_IF, ORG_V4, 24, ORG_V6)?;
        for (ns, via4, via6) in [
            (&self.cli, EDGE_CLI_V4, EDGE_CLI_V6),
            (&self.org, EDGE_ORG_V4, EDGE_ORG_V6),
        ] {
            ns.run("ip", &["route", "add", "default", "via", via4])?;
            ns.run("ip", &["-6", "route", "add", "default", "via", via6])?;
        }
        self.edge.run(
            "sysctl",
            &[
                "-q",
                "-w",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ],
        )?;
        // The pool's addresses are the edge's own (AnyIP): packets the XDP
        // program passes up reach the edge's sockets.
        self.edge
            .run("ip", &["route", "add", "local", POOL_V4, "dev", "lo"])?;
        self.edge
            .run("ip", &["-6", "route", "add", "local", POOL_V6, "dev", "lo"])?;
        Ok(())
    }
}

/// A veth pair with one end in each namespace, both up. Created directly in
/// the namespaces, so names never collide between parallel tests.
fn veth(a: &Netns, a_name: &str, b: &Netns, b_name: &str) -> anyhow::Result<()> {
    run_checked(Command::new("ip").args([
        "link",
        "add",
        a_name,
        "netns",
        a.name(),
        "type",
        "veth",
        "peer",
        "name",
        b_name,
        "netns",
        b.name(),
    ]))?;
    a.run("ip", &["link", "set", a_name, "up"])?;
    b.run("ip", &["link", "set", b_name, "up"])?;
    Ok(())
}

fn address(ns: &Netns, dev: &str, v4: &str, v4_len: u8, v6: &str) -> anyhow::Result<()> {
    ns.run(
        "ip",
        &["addr", "add", &format!("{v4}/{v4_len}"), "dev", dev],
    )?;
    // nodad: the address is usable at once instead of after duplicate
    // address detection.
    ns.run(
        "ip",
        &[
            "-6",
            "addr",
            "add",
            &format!("{v6}/64"),
            "dev",
            dev,
            "nodad",
        ],
    )?;
    Ok(())
}
