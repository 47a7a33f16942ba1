//! `proxy-agent`: run the proxy, check a config, list apps, read counters.
use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use proxy_agent::{
    config::{self, model::Config},
    datapath::{loader, maps, stats},
};
use proxy_common::MAX_APPS;

mod commands;
mod runtime;

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
        Command::Check { files } => return commands::check(&files),
        Command::Apps {
            config,
            json,
            instance,
            bpffs,
        } => list_apps(&config, json, &instance, &bpffs),
        Command::Stats {
            instance,
            bpffs,
            config,
            json,
        } => print_stats(&instance, &bpffs, config.as_deref(), json),
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

/// Loads and validates a config, logging its warnings.
fn load_config(path: &Path) -> anyhow::Result<Config> {
    let loaded = config::load(path).map_err(|err| anyhow::anyhow!("{}:\n{err}", path.display()))?;
    for warning in &loaded.warnings {
        tracing::warn!("{}: {warning}", path.display());
    }
    Ok(loaded.config)
}

fn run(
    config_path: &Path,
    xdp_mode: Option<XdpModeArg>,
    instance: &str,
    bpffs: &Path,
) -> anyhow::Result<()> {
    proxy_agent::preflight::check_instance_name(instance)?;
    let config = load_config(config_path)?;
    proxy_agent::preflight::require_root()?;
    for (i, name) in config.edge.interfaces.iter().enumerate() {
        proxy_agent::preflight::interface_index(name, &format!("edge.interfaces[{i}]"))?;
    }
    proxy_agent::preflight::require_bpffs(bpffs)?;
    let _lock = proxy_agent::preflight::lock_instance(instance)?;
    proxy_agent::preflight::raise_open_files();
    // The kernel maps' limits, checked before anything is loaded.
    maps::map_contents(&config)?;
    // Leases before serving: an address handed out is one a restart keeps.
    // A config without dynamic apps needs no file (its directory may be
    // read-only), unless one is there to be emptied.
    let _lease_lock = match &config.edge.lease_file {
        // With the API, apps with dynamic addresses may come at any time.
        Some(path)
            if config.apps.iter().any(|a| a.edge_ips_dynamic)
                || path.exists()
                || config.api.is_some() =>
        {
            let lock = proxy_agent::preflight::lock_leases(path)?;
            config::leases::write(path, &config).with_context(|| {
                format!(
                    "writing edge address leases to {} (set edge.address_pool.state_file \
                     to a writable path)",
                    path.display()
                )
            })?;
            Some(lock)
        }
        _ => None,
    };
    proxy_agent::preflight::write_running_apps(instance, &config);
    let mode = match xdp_mode {
        Some(XdpModeArg::Skb) => aya::programs::XdpMode::Skb,
        Some(XdpModeArg::Native) => aya::programs::XdpMode::Driver,
        None => match config.edge.xdp_mode {
            Some(config::model::XdpMode::Skb) => aya::programs::XdpMode::Skb,
            Some(config::model::XdpMode::Native) | None => aya::programs::XdpMode::Driver,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(runtime::serve(
        config,
        mode,
        runtime::RunPaths {
            config: config_path.to_path_buf(),
            stats_pin: loader::stats_pin_path(bpffs, instance),
            instance: instance.to_owned(),
        },
    ))
}

fn list_apps(config_path: &Path, json: bool, instance: &str, bpffs: &Path) -> anyhow::Result<()> {
    proxy_agent::preflight::check_instance_name(instance)?;
    let config = load_config(config_path)?;
    // Counters only when an agent runs this instance; the list stands alone.
    let pin = loader::stats_pin_path(bpffs, instance);
    let rows = if pin.exists() {
        match running_counters(&pin, instance, &config) {
            Ok(rows) => Some(rows),
            Err(err) => {
                tracing::warn!("counters of --instance {instance} not shown: {err:#}");
                None
            }
        }
    } else {
        None
    };
    commands::apps(&config, rows.as_deref(), json)
}

/// The running agent's counters, renumbered to `config`'s app slots by app
/// id (the file may have been edited since the agent started, and the API
/// changes apps live); apps it does not run get none.
fn running_counters(
    pin: &Path,
    instance: &str,
    config: &Config,
) -> anyhow::Result<Vec<stats::StatsRow>> {
    // No list: assume the file is what the agent runs.
    let running = proxy_agent::preflight::read_running_apps(instance)?.unwrap_or_else(|| {
        config
            .apps
            .iter()
            .map(|a| (a.slot, a.id.to_string()))
            .collect()
    });
    let map = stats::open_pinned(pin)?;
    let slots = running.iter().map(|(slot, _)| slot + 1).max().unwrap_or(0);
    let rows = stats::read(&map, slots)?;
    let slot_in_config = |running_slot: u32| {
        let (_, id) = running.iter().find(|(slot, _)| *slot == running_slot)?;
        let app = config.apps.iter().find(|a| a.id.to_string() == *id)?;
        Some(app.slot)
    };
    Ok(rows
        .into_iter()
        .filter_map(|row| match row.app {
            None => Some(row),
            Some(r) => slot_in_config(r).map(|app| stats::StatsRow {
                app: Some(app),
                ..row
            }),
        })
        .collect())
}

fn print_stats(
    instance: &str,
    bpffs: &Path,
    config_path: Option<&Path>,
    json: bool,
) -> anyhow::Result<()> {
    proxy_agent::preflight::check_instance_name(instance)?;
    let config = config_path.map(load_config).transpose()?;
    let map = stats::open_pinned(&loader::stats_pin_path(bpffs, instance))?;
    let app_count = match (
        &config,
        proxy_agent::preflight::read_running_apps(instance)?,
    ) {
        (_, Some(running)) => running.iter().map(|(slot, _)| slot + 1).max().unwrap_or(0),
        (Some(config), None) => config.apps.len() as u32,
        (None, None) => MAX_APPS,
    };
    let rows = stats::read(&map, app_count)?;
    commands::print_stats(&rows, config.as_ref(), json);
    Ok(())
}
