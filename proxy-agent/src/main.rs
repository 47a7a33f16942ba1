//! `proxy-agent`: run the proxy, check a config, list apps, read counters.
//! The command line, the log, and the signals are here; the rest is the
//! library's (`agent` for `run`, `cli` for the others).
use std::{
    future::Future,
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use proxy_agent::{
    agent::{self, Agent, Reload},
    cli,
};
use tokio::{
    signal::unix::{SignalKind, signal},
    sync::mpsc,
};
use tracing::info;

#[derive(Parser)]
#[command(
    name = "proxy-agent",
    version,
    about = "Self-hosted Spectrum: an L4 proxy with an XDP fast path"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load the XDP program, attach it to the configured interfaces and serve
    /// until SIGINT or SIGTERM.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// XDP attach mode; default: edge.xdp_mode from the config, else native.
        #[arg(long, value_enum)]
        xdp_mode: Option<XdpModeArg>,
        /// Name under which counters are published (several agents may run).
        #[arg(long, default_value = "default")]
        instance: String,
        /// Mount point of the bpf filesystem.
        #[arg(long, default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,
    },
    /// Validate config files: prints `ok: N apps, M rules` or every error.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the apps of a config: edge addresses, ports, origins, data path,
    /// and the counters of the agent running it, if one is.
    Apps {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        json: bool,
        /// The running agent whose counters are shown.
        #[arg(long, default_value = "default")]
        instance: String,
        #[arg(long, default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,
    },
    /// Print the counters of a running agent.
    Stats {
        #[arg(long, default_value = "default")]
        instance: String,
        #[arg(long, default_value = "/sys/fs/bpf")]
        bpffs: PathBuf,
        /// Config of the running agent, to name its apps.
        #[arg(long, short)]
        config: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum XdpModeArg {
    Native,
    Skb,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Run {
            config,
            xdp_mode,
            instance,
            bpffs,
        } => run(&config, xdp_mode, &instance, &bpffs),
        Command::Check { files } => return cli::check(&files),
        Command::Apps {
            config,
            json,
            instance,
            bpffs,
        } => cli::apps(&config, json, &instance, &bpffs),
        Command::Stats {
            instance,
            bpffs,
            config,
            json,
        } => cli::stats(&instance, &bpffs, config.as_deref(), json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        // hickory-server logs every DNS request at info.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,hickory_server=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn run(
    config: &Path,
    xdp_mode: Option<XdpModeArg>,
    instance: &str,
    bpffs: &Path,
) -> anyhow::Result<()> {
    let xdp_mode = xdp_mode.map(|mode| match mode {
        XdpModeArg::Skb => aya::programs::XdpMode::Skb,
        XdpModeArg::Native => aya::programs::XdpMode::Driver,
    });
    // Held until the agent stopped and the runtime is gone.
    let (start, _locks) = agent::check(config, xdp_mode, instance, bpffs)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(async {
        // Signals first: a SIGTERM that arrives while starting still ends
        // in a clean exit (XDP detached, pin removed).
        let shutdown = shutdown_signal()?;
        let reloads = reload_on_hangup()?;
        Agent::run(start, shutdown, reloads).await
    })
}

/// Resolves on the first SIGTERM or SIGINT; the handlers are installed
/// when this is called, not when it is first polled.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM received"),
            _ = int.recv() => info!("SIGINT received"),
        }
    })
}

/// A reload request per SIGHUP; SIGHUPs that arrive while one waits fold
/// into it, as the signal itself does.
fn reload_on_hangup() -> anyhow::Result<mpsc::Receiver<Reload>> {
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match tx.try_send(Reload { cause: "SIGHUP" }) {
                Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
    });
    Ok(rx)
}
