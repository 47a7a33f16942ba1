//! Project tasks: `cargo xtask <setup|build-ebpf|build|test|fuzz|demo>`.
use clap::{Parser, Subcommand};

mod bench;
mod cmd;
mod demo;
mod fuzz;
mod setup;
mod test;

#[derive(Parser)]
#[command(name = "xtask", about = "Set up, build, test and demo the proxy")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install every prerequisite (Debian packages, rust-src, bpf-linker,
    /// test servers and clients, a GeoIP country database, Schemathesis,
    /// bpffs); skips what is present.
    Setup,
    /// Build the XDP program alone (nightly, bpfel-unknown-none).
    BuildEbpf,
    /// Build the XDP program and the agent (release).
    Build,
    /// Set up, then: fmt check, clippy (host and eBPF), unit tests,
    /// BPF_PROG_TEST_RUN fixtures, network-namespace tests, fuzz targets.
    Test {
        /// Skip `setup` (when you know the machine is ready).
        #[arg(long)]
        no_setup: bool,
    },
    /// Run each fuzz target (PROXY header and SPP reply decoders) with
    /// cargo-fuzz and nightly, for a bounded time.
    Fuzz {
        /// Seconds per target.
        #[arg(long, default_value_t = fuzz::DEFAULT_SECONDS)]
        seconds: u64,
    },
    /// Set up, build, start the agent on a demo topology of namespaces, send
    /// real client traffic to each demo app and print what happened.
    Demo,
    /// The proxy against direct routing, minimal XDP and TC routers, HAProxy
    /// and nginx stream, side by side; writes BENCHMARKS.md,
    /// bench/results.json and bench/plots/*.png.
    Bench {
        /// One short run per figure (2 s) instead of 3 runs of 5 s.
        #[arg(long)]
        quick: bool,
        /// Comma-separated systems (direct, xdp-router, tc-router,
        /// tc-router-xdp, haproxy, nginx, spectrum-xdp, spectrum-tc,
        /// spectrum-auto, spectrum-xdp-synproxy-off,
        /// spectrum-tc-synproxy-off), metrics (tcp_1_stream, tcp_4_streams,
        /// tls_rsa_2048, ...) and/or `access-rules`.
        #[arg(long)]
        only: Option<String>,
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Directory for the results (default: the workspace root).
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::Setup => setup::setup(),
        Task::BuildEbpf => build_ebpf(),
        Task::Build => build_ebpf().and_then(|()| build_agent(true)),
        Task::Test { no_setup } => test::test(!no_setup),
        Task::Fuzz { seconds } => fuzz::fuzz(seconds),
        Task::Demo => demo::demo(),
        Task::Bench {
            quick,
            only,
            repeats,
            out,
        } => bench::bench(bench::Options {
            quick,
            only,
            repeats,
            out,
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `cargo +nightly <subcommand>` on the eBPF crate for its BPF target, as
/// the agent's build script (aya-build) runs it; `extra` goes after.
pub fn ebpf_cargo(subcommand: &str, extra: &[&str]) -> std::process::Command {
    let mut cmd = cmd::nightly_cargo(&[
        subcommand,
        "-p",
        "proxy-ebpf",
        "--release",
        "--target",
        "bpfel-unknown-none",
        "-Z",
        "build-std=core",
    ]);
    cmd.args(extra);
    cmd
}

/// The same build the agent's build script does, run on its own.
pub fn build_ebpf() -> anyhow::Result<()> {
    cmd::run(&mut ebpf_cargo("build", &[]))
}

/// Builds the agent (which embeds the XDP program it builds).
pub fn build_agent(release: bool) -> anyhow::Result<()> {
    let mut args = vec!["build", "-p", "proxy-agent"];
    if release {
        args.push("--release");
    }
    cmd::run(&mut cmd::command("cargo", &args))
}
