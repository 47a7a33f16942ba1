//! `cargo xtask setup`: every prerequisite on a bare Debian 12 machine,
//! skipping what is already there.
use std::path::Path;

use anyhow::{Context as _, bail};

use crate::cmd::{command, output, run, succeeds};

/// bpf-linker must link the LLVM major that nightly rustc uses; this is the
/// one verified here, used when nightly cannot be asked.
const DEFAULT_LLVM: &str = "22";
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Debian packages: the bpf-linker build, and the real clients and servers
/// that the tests, the demo and the benchmark drive.
fn packages(llvm: &str) -> Vec<String> {
    let mut packages: Vec<String> = ["llvm-{LLVM}-dev", "libpolly-{LLVM}-dev", "clang-{LLVM}"]
        .iter()
        .map(|p| p.replace("{LLVM}", llvm))
        .collect();
    packages.extend(
        [
            "libzstd-dev",
            "zlib1g-dev",
            "socat",
            "iperf3",
            "nginx",
            "libnginx-mod-stream",
            "haproxy",
            "openssl",
            "curl",
            "iproute2",
            "ethtool",
            "util-linux",
            "dnsmasq-base",
            "iputils-ping",
            "netsniff-ng",
        ]
        .map(String::from),
    );
    packages
}

fn is_installed(package: &str) -> bool {
    output(&mut command("dpkg-query", &["-W", "-f=${Status}", package]))
        .is_some_and(|status| status.contains("install ok installed"))
}

pub fn setup() -> anyhow::Result<()> {
    rust_toolchains()?;
    let llvm = nightly_llvm_major();
    println!("setup: nightly rustc uses LLVM {llvm}");
    apt_packages(&llvm)?;
    bpf_linker(&llvm)?;
    bpffs()?;
    println!("setup: done");
    Ok(())
}

/// The LLVM major of the nightly toolchain (`LLVM version: 22.1.0`).
fn nightly_llvm_major() -> String {
    output(command("rustc", &["+nightly", "-vV"]).env_remove("RUSTUP_TOOLCHAIN"))
        .and_then(|info| {
            info.lines()
                .find_map(|l| l.strip_prefix("LLVM version: "))
                .and_then(|v| v.split('.').next())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| DEFAULT_LLVM.to_owned())
}

fn apt_packages(llvm: &str) -> anyhow::Result<()> {
    let missing: Vec<String> = packages(llvm)
        .into_iter()
        .filter(|p| !is_installed(p))
        .collect();
    if missing.is_empty() {
        println!("setup: Debian packages present");
        return Ok(());
    }
    println!("setup: installing {}", missing.join(" "));
    require_root("installing Debian packages")?;
    run(command("apt-get", &["update", "-q"]).env("DEBIAN_FRONTEND", "noninteractive"))?;
    let mut install = command(
        "apt-get",
        &["install", "-y", "-q", "--no-install-recommends"],
    );
    install
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive");
    run(&mut install)
}

/// Nightly with rust-src (the eBPF crate builds core itself) and clippy;
/// clippy and rustfmt on the default toolchain.
fn rust_toolchains() -> anyhow::Result<()> {
    let toolchains = output(&mut command("rustup", &["toolchain", "list"])).unwrap_or_default();
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        run(&mut command(
            "rustup",
            &["toolchain", "install", "nightly", "--profile", "minimal"],
        ))?;
    }
    for (toolchain, wanted) in [
        ("nightly", &["rust-src", "clippy"][..]),
        ("stable", &["clippy", "rustfmt"][..]),
    ] {
        let installed = output(&mut command(
            "rustup",
            &["component", "list", "--toolchain", toolchain, "--installed"],
        ))
        .unwrap_or_default();
        for component in wanted {
            let present = installed
                .lines()
                .any(|l| l.trim() == *component || l.starts_with(&format!("{component}-")));
            if !present {
                run(&mut command(
                    "rustup",
                    &["component", "add", component, "--toolchain", toolchain],
                ))?;
            }
        }
    }
    println!("setup: rust toolchains ready (stable, nightly with rust-src)");
    Ok(())
}

fn bpf_linker(llvm: &str) -> anyhow::Result<()> {
    if let Some(version) = output(&mut command("bpf-linker", &["--version"])) {
        println!("setup: {} present", version.trim());
        return Ok(());
    }
    let llvm_prefix = format!("/usr/lib/llvm-{llvm}");
    let path = format!(
        "{llvm_prefix}/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    // bpf-linker must link the same LLVM major as nightly rustc; Debian's
    // default llvm-config is older, hence LLVM_PREFIX.
    run(command(
        "cargo",
        &[
            "install",
            "bpf-linker",
            "--locked",
            "--version",
            BPF_LINKER_VERSION,
            "--no-default-features",
            "--features",
            &format!("llvm-{llvm}"),
        ],
    )
    .env("LLVM_PREFIX", &llvm_prefix)
    .env("PATH", path)
    .env_remove("RUSTUP_TOOLCHAIN"))
    .context("building bpf-linker")
}

fn bpffs() -> anyhow::Result<()> {
    let dir = Path::new("/sys/fs/bpf");
    if succeeds(&mut command("findmnt", &["-t", "bpf", "/sys/fs/bpf"])) {
        println!("setup: bpffs mounted at {}", dir.display());
        return Ok(());
    }
    require_root("mounting bpffs")?;
    run(&mut command("mount", &["-t", "bpf", "bpf", "/sys/fs/bpf"]))
}

fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root: run `cargo xtask setup` as root (or with sudo)");
    }
    Ok(())
}
