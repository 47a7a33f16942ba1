//! Origins seen from the edge: which local address the kernel would send
//! from to reach them (the fast path's NAT source when
//! `edge.origin_source` is not set), and the addresses `origin_dns` names
//! resolve to.
//!
//! A name's answer is the resolver's to give, and whoever controls the
//! name (or spoofs its resolver) would otherwise aim the agent at the
//! host's own services: loopback, unspecified, link-local (cloud metadata
//! at 169.254.169.254), multicast and broadcast answers, also written as
//! IPv4-mapped IPv6, are refused ([`refused_origin`]); an answer with
//! nothing else left fails, and the addresses in use stay.
use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket},
    time::Duration,
};

use anyhow::Context as _;
use hickory_resolver::{
    TokioResolver,
    config::{ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts},
    net::runtime::TokioRuntimeProvider,
};
use proxy_common::MAX_ORIGINS_PER_FAMILY;
use tracing::{info, warn};

use crate::config::model::{Config, Origin, OriginDns, OriginFamily};

/// The local address the routing table picks to reach `origin`. Connecting a
/// UDP socket sends nothing; it only asks the kernel for a route.
pub fn source_address_for(origin: IpAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = match origin {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(SocketAddr::new(origin, 9))?;
    Ok(socket.local_addr()?.ip())
}

/// Fills `edge.origin_source` for each family that is not configured with
/// one address, from the route to the first origin of that family: a direct one, or one an
/// `origin_dns` name resolved to (`resolved`, by app slot).
pub fn fill_origin_sources(
    config: &mut Config,
    resolved: &BTreeMap<u32, Vec<IpAddr>>,
) -> anyhow::Result<()> {
    let first_origin = |ipv6: bool| {
        config
            .apps
            .iter()
            .flat_map(|app| match &app.origin {
                Origin::Direct(origins) => origins.iter().map(|o| o.ip).collect::<Vec<_>>(),
                Origin::Dns(_) => resolved.get(&app.slot).cloned().unwrap_or_default(),
            })
            .find(|ip| ip.is_ipv6() == ipv6)
    };
    for ipv6 in [false, true] {
        let configured = if ipv6 {
            !config.edge.origin_source.ipv6.is_empty()
        } else {
            !config.edge.origin_source.ipv4.is_empty()
        };
        let Some(origin) = first_origin(ipv6).filter(|_| !configured) else {
            continue;
        };
        let source = source_address_for(origin)
            .map_err(|err| anyhow::anyhow!("no route to origin {origin}: {err}"))?;
        info!(%origin, %source, "edge.origin_source not set for this family: using the route's source");
        match source {
            IpAddr::V4(v4) => config.edge.origin_source.ipv4 = vec![v4],
            IpAddr::V6(v6) => config.edge.origin_source.ipv6 = vec![v6],
        }
    }
    Ok(())
}

/// Resolves `origin_dns` names: through `edge.resolver` when set, else
/// the system's configuration (/etc/resolv.conf and /etc/hosts).
pub struct OriginResolver {
    resolver: TokioResolver,
    /// The refused addresses last logged, per name: a refusal is logged
    /// once per name and change of answer, not at each refresh.
    refused_logged: std::sync::Mutex<std::collections::HashMap<String, Vec<IpAddr>>>,
}

/// An answer whose every address was refused ([`refused_origin`]).
#[derive(Debug, thiserror::Error)]
#[error("{name} resolved only to addresses an origin may not have: {refused:?}")]
pub struct AllRefused {
    pub name: String,
    pub refused: Vec<IpAddr>,
}

/// Bounds the names remembered for logging (one per `origin_dns` app
/// version at most; past it the memory starts again).
const MAX_LOGGED_NAMES: usize = 4096;

/// Why `ip` may not be an origin from a DNS answer (`None`: it may):
/// an address of the host itself or of no single host.
pub fn refused_origin(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.octets()[0] == 0 {
                Some("unspecified (0.0.0.0/8)")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if v4.is_broadcast() {
                Some("broadcast")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if v6.is_unicast_link_local() {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                // IPv4-compatible ::a.b.c.d (deprecated) is judged as the
                // IPv4 address it carries.
                let o = v6.octets();
                if o[..12].iter().all(|&b| b == 0) {
                    refused_origin(IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15])))
                } else {
                    None
                }
            }
        }
    }
}

/// How long one lookup may take before it counts as failed.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

impl OriginResolver {
    pub fn new(server: Option<SocketAddr>) -> anyhow::Result<Self> {
        let mut builder = match server {
            Some(server) => {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(
                    server.ip(),
                    true,
                    vec![udp, tcp],
                )]);
                TokioResolver::builder_with_config(config, TokioRuntimeProvider::default())
            }
            None => {
                TokioResolver::builder_tokio().context("reading the system's DNS configuration")?
            }
        };
        let options: &mut ResolverOpts = builder.options_mut();
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        options.timeout = LOOKUP_TIMEOUT;
        options.attempts = 1;
        // Each refresh must ask again, not answer from our own cache.
        options.cache_size = 0;
        let resolver = builder.build().context("building the DNS resolver")?;
        Ok(Self {
            resolver,
            refused_logged: Default::default(),
        })
    }

    /// The addresses an origin uses now, and how long the answer holds
    /// (the smallest TTL of its records).
    pub async fn resolve(&self, origin: &OriginDns) -> anyhow::Result<Resolution> {
        let lookup = tokio::time::timeout(
            LOOKUP_TIMEOUT * 2,
            self.resolver.lookup_ip(origin.name.as_str()),
        )
        .await
        .map_err(|_| anyhow::anyhow!("no answer in {:?}", LOOKUP_TIMEOUT * 2))?
        .with_context(|| format!("resolving {}", origin.name))?;
        let ttl = lookup
            .valid_until()
            .saturating_duration_since(std::time::Instant::now());
        let (refused, allowed): (Vec<IpAddr>, Vec<IpAddr>) =
            usable_addresses(lookup.iter(), origin.family)
                .into_iter()
                .partition(|ip| refused_origin(*ip).is_some());
        self.log_refused(&origin.name, &refused);
        if allowed.is_empty() && !refused.is_empty() {
            return Err(AllRefused {
                name: origin.name.clone(),
                refused,
            }
            .into());
        }
        Ok(Resolution { ips: allowed, ttl })
    }

    /// Warns of `refused` addresses in `name`'s answer when they differ
    /// from those last warned of.
    fn log_refused(&self, name: &str, refused: &[IpAddr]) {
        let Ok(mut logged) = self.refused_logged.lock() else {
            return;
        };
        if logged
            .get(name)
            .map_or(refused.is_empty(), |last| last == refused)
        {
            return;
        }
        if !refused.is_empty() {
            let why: Vec<String> = refused
                .iter()
                .map(|ip| format!("{ip} ({})", refused_origin(*ip).unwrap_or("?")))
                .collect();
            warn!(origin = %name, refused = ?why, "origin_dns answer refused: an origin may not be a loopback, unspecified, link-local, multicast or broadcast address (the other addresses, or else the last good answer, stay in use)");
        }
        if logged.len() >= MAX_LOGGED_NAMES && !logged.contains_key(name) {
            logged.clear();
        }
        logged.insert(name.to_owned(), refused.to_vec());
    }
}

/// One answer for an `origin_dns` name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub ips: Vec<IpAddr>,
    /// How long the records may be used.
    pub ttl: Duration,
}

/// Asking more often than this is never useful, even for records with a
/// TTL of 0 or 1 s (dnsmasq's default for its own records is 0).
pub const MIN_REFRESH: Duration = Duration::from_secs(5);

/// When to ask again after an answer: when its records expire, but no
/// later than the app's `origin_dns.ttl`, and not sooner than
/// [`MIN_REFRESH`].
pub fn refresh_after(record_ttl: Duration, app_ttl: u32) -> Duration {
    let app_ttl = Duration::from_secs(u64::from(app_ttl)).max(MIN_REFRESH);
    record_ttl.clamp(MIN_REFRESH, app_ttl)
}

/// The addresses of a lookup an origin uses: those of its family, without
/// duplicates, sorted (a stable order keeps flows' origin choice stable),
/// at most what the data path holds per family.
pub fn usable_addresses(
    ips: impl IntoIterator<Item = IpAddr>,
    family: OriginFamily,
) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = ips
        .into_iter()
        .filter(|ip| match family {
            OriginFamily::Any => true,
            OriginFamily::V4 => ip.is_ipv4(),
            OriginFamily::V6 => ip.is_ipv6(),
        })
        .collect();
    ips.sort();
    ips.dedup();
    let v4: Vec<IpAddr> = ips
        .iter()
        .filter(|ip| ip.is_ipv4())
        .take(MAX_ORIGINS_PER_FAMILY as usize)
        .copied()
        .collect();
    let v6 = ips
        .iter()
        .filter(|ip| ip.is_ipv6())
        .take(MAX_ORIGINS_PER_FAMILY as usize)
        .copied();
    v4.into_iter().chain(v6).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_addresses_filter_dedupe_sort_and_cap() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        let answer = vec![
            ip("192.0.2.2"),
            ip("2001:db8::1"),
            ip("192.0.2.1"),
            ip("192.0.2.2"),
        ];
        assert_eq!(
            usable_addresses(answer.clone(), OriginFamily::Any),
            vec![ip("192.0.2.1"), ip("192.0.2.2"), ip("2001:db8::1")]
        );
        assert_eq!(
            usable_addresses(answer.clone(), OriginFamily::V6),
            vec![ip("2001:db8::1")]
        );
        assert_eq!(usable_addresses(answer, OriginFamily::V4).len(), 2);
        let many = (1..=20).map(|i| ip(&format!("192.0.2.{i}")));
        assert_eq!(
            usable_addresses(many, OriginFamily::Any).len(),
            MAX_ORIGINS_PER_FAMILY as usize
        );
    }

    #[test]
    fn host_and_non_unicast_answers_are_refused_as_origins() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "0.1.2.3",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::127.0.0.1",
        ] {
            assert!(refused_origin(ip(bad)).is_some(), "{bad} must be refused");
        }
        for good in [
            "192.0.2.1",
            "10.0.0.1",
            "2001:db8::1",
            "::ffff:192.0.2.1",
            "fec0::1",
        ] {
            assert_eq!(refused_origin(ip(good)), None, "{good} is an origin");
        }
    }

    #[test]
    fn refresh_follows_the_record_ttl_within_bounds() {
        let s = Duration::from_secs;
        // A short record TTL is honoured, down to the floor.
        assert_eq!(refresh_after(s(30), 600), s(30));
        assert_eq!(refresh_after(s(0), 600), MIN_REFRESH);
        // The app's ttl caps a long record TTL.
        assert_eq!(refresh_after(s(86_400), 600), s(600));
        assert_eq!(refresh_after(s(86_400), 1200), s(1200));
        // A tiny app ttl cannot push below the floor.
        assert_eq!(refresh_after(s(30), 1), MIN_REFRESH);
    }

    #[test]
    fn loopback_is_reached_from_loopback() {
        let source = source_address_for("127.0.0.1".parse().expect("ip")).expect("route");
        assert_eq!(source, "127.0.0.1".parse::<IpAddr>().expect("ip"));
    }
}
