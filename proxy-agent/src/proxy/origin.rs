//! Origins seen from the edge: which local address the kernel would send
//! from to reach them (the fast path's NAT source when
//! `edge.origin_source` is not set), and the addresses `origin_dns` names
//! resolve to.
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
use tracing::info;

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
        Ok(Self { resolver })
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
        Ok(Resolution {
            ips: usable_addresses(lookup.iter(), origin.family),
            ttl,
        })
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
