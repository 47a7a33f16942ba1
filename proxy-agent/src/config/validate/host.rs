//! Edge addresses checked against more than the file: the host's own
//! interfaces (a static edge address that is, say, the management
//! address would hand its sshd or BGP to sk_lookup and XDP), and the
//! API's stricter rule that an app it creates or edits takes addresses of
//! the configured pools only (with no pool for a family, the API could
//! otherwise name any host address).
use std::net::IpAddr;

use super::{Family, pool_field};
use crate::config::model::{App, Config, ConfigError};

/// The static edge addresses of `config` that are addresses of a host
/// interface outside `edge.interfaces`; `host` lists (interface, address)
/// pairs as the host has them.
pub fn host_edge_ips(config: &Config, host: &[(String, IpAddr)]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (i, app) in config.apps.iter().enumerate() {
        if app.edge_ips_dynamic {
            continue;
        }
        for ip in &app.edge_addrs {
            let taken = host
                .iter()
                .find(|(name, addr)| addr == ip && !config.edge.interfaces.contains(name));
            if let Some((name, _)) = taken {
                errors.push(ConfigError::new(
                    format!("apps[{i}].edge_ips.ips"),
                    ip.to_string(),
                    format!(
                        "an address of the host's interface {name}, which is not in \
                         edge.interfaces: the edge would take over its traffic; use an \
                         address routed to the edge"
                    ),
                ));
            }
        }
    }
    errors
}

/// For an API change from `before` (the file) to `after`: the static edge
/// addresses of apps it created or whose addresses it changed that lie
/// outside the pool of their family, or in a family with no pool. Apps
/// it left alone keep what the operator wrote.
pub fn api_edge_ips(before: &Config, after: &Config) -> Vec<ConfigError> {
    let pools = &after.edge.address_pool;
    let same = |app: &App| {
        before.apps.iter().any(|old| {
            old.id == app.id && old.edge_ips_dynamic == app.edge_ips_dynamic && {
                old.edge_addrs == app.edge_addrs
            }
        })
    };
    let mut errors = Vec::new();
    for (i, app) in after.apps.iter().enumerate() {
        if app.edge_ips_dynamic || same(app) {
            continue;
        }
        for ip in &app.edge_addrs {
            let family = Family::of(*ip);
            let pool = match ip {
                IpAddr::V4(_) => pools.ipv4.map(ipnet::IpNet::V4),
                IpAddr::V6(_) => pools.ipv6.map(ipnet::IpNet::V6),
            };
            let reason = match pool {
                Some(net) if net.contains(ip) => continue,
                Some(net) => format!(
                    "outside {} {net}: the API gives apps addresses of the pools only",
                    pool_field(family)
                ),
                None => format!(
                    "no {} is configured: the API gives apps {} addresses of a pool only",
                    pool_field(family),
                    family.name()
                ),
            };
            errors.push(ConfigError::new(
                format!("apps[{i}].edge_ips.ips"),
                ip.to_string(),
                reason,
            ));
        }
    }
    errors
}
