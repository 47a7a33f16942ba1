//! `run`'s checks before the kernel is touched: the instance name, the
//! config, root, the interfaces, bpffs, the instance and lease locks, the
//! maps' limits, and the leases written.
use std::{fs::File, path::Path};

use anyhow::Context as _;
use aya::programs::XdpMode;

use super::RunPaths;
use crate::{
    config::{self, model::Config},
    kernel::{loader, maps},
    preflight,
};

/// What [`super::Agent::run`] starts from: a config that passed the checks,
/// the mode XDP attaches in, and where the agent keeps its files.
pub struct Start {
    pub config: Config,
    pub mode: XdpMode,
    pub paths: RunPaths,
}

/// The instance lock and the lease file's lock: held while the agent runs
/// (dropped after it stopped).
pub struct Locks {
    _instance: File,
    _leases: Option<File>,
}

/// Checks what `run` needs (each failure one clear sentence) and writes
/// the leases; `xdp_mode` (from the command line) wins over the config's
/// `edge.xdp_mode`, native when neither says.
pub fn check(
    config_path: &Path,
    xdp_mode: Option<XdpMode>,
    instance: &str,
    bpffs: &Path,
) -> anyhow::Result<(Start, Locks)> {
    preflight::check_instance_name(instance)?;
    let config = load_config(config_path)?;
    let taken = config::host_edge_ips(&config, &host_addresses());
    if !taken.is_empty() {
        let lines: Vec<String> = taken.iter().map(ToString::to_string).collect();
        anyhow::bail!("{}:\n{}", config_path.display(), lines.join("\n"));
    }
    preflight::require_root()?;
    for (i, name) in config.edge.interfaces.iter().enumerate() {
        preflight::interface_index(name, &format!("edge.interfaces[{i}]"))?;
    }
    preflight::require_bpffs(bpffs)?;
    let instance_lock = preflight::lock_instance(instance)?;
    preflight::raise_open_files();
    // The kernel maps' limits, checked before anything is loaded.
    maps::map_contents(&config)?;
    // Leases before serving: an address handed out is one a restart keeps.
    // A config without dynamic apps needs no file (its directory may be
    // read-only), unless one is there to be emptied.
    let lease_lock = match &config.edge.lease_file {
        // With the API, apps with dynamic addresses may come at any time.
        Some(path)
            if config.apps.iter().any(|a| a.edge_ips_dynamic)
                || path.exists()
                || config.api.is_some() =>
        {
            let lock = preflight::lock_leases(path)?;
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
    preflight::write_running_apps(instance, &config);
    let mode = xdp_mode.unwrap_or(match config.edge.xdp_mode {
        Some(config::model::XdpMode::Skb) => XdpMode::Skb,
        Some(config::model::XdpMode::Native) | None => XdpMode::Driver,
    });
    let start = Start {
        config,
        mode,
        paths: RunPaths {
            config: config_path.to_path_buf(),
            stats_pin: loader::stats_pin_path(bpffs, instance),
            instance: instance.to_owned(),
        },
    };
    let locks = Locks {
        _instance: instance_lock,
        _leases: lease_lock,
    };
    Ok((start, locks))
}

/// The host's interface addresses, (interface, address): what a static
/// edge address must not be outside `edge.interfaces`. None when they
/// cannot be read (logged): the file's own checks still hold.
pub(super) fn host_addresses() -> Vec<(String, std::net::IpAddr)> {
    let addrs = match nix::ifaddrs::getifaddrs() {
        Ok(addrs) => addrs,
        Err(err) => {
            tracing::warn!("reading the host's interface addresses: {err}");
            return Vec::new();
        }
    };
    addrs
        .filter_map(|a| {
            let address = a.address?;
            let ip = match (address.as_sockaddr_in(), address.as_sockaddr_in6()) {
                (Some(v4), _) => std::net::IpAddr::V4(v4.ip()),
                (_, Some(v6)) => std::net::IpAddr::V6(v6.ip()),
                _ => return None,
            };
            Some((a.interface_name, ip))
        })
        .collect()
}

/// Loads and validates a config, logging its warnings.
pub fn load_config(path: &Path) -> anyhow::Result<Config> {
    let loaded = config::load(path).map_err(|err| anyhow::anyhow!("{}:\n{err}", path.display()))?;
    for warning in &loaded.warnings {
        tracing::warn!("{}: {warning}", path.display());
    }
    Ok(loaded.config)
}
