//! Origins seen from the edge: which local address the kernel would send
//! from to reach them (the fast path's NAT source when
//! `edge.origin_source` is not set).
use std::net::{IpAddr, SocketAddr, UdpSocket};

use tracing::info;

use crate::config::model::{Config, Origin};

/// The local address the routing table picks to reach `origin`. Connecting a
/// UDP socket sends nothing; it only asks the kernel for a route.
pub fn source_address_for(origin: IpAddr) -> std::io::Result<IpAddr> {
    let bind: SocketAddr = match origin {
        IpAddr::V4(_) => "0.0.0.0:0".parse().expect("literal address"),
        IpAddr::V6(_) => "[::]:0".parse().expect("literal address"),
    };
    let socket = UdpSocket::bind(bind)?;
    socket.connect(SocketAddr::new(origin, 9))?;
    Ok(socket.local_addr()?.ip())
}

/// Fills `edge.origin_source` for each family that is not configured, from
/// the route to the first direct origin of that family.
pub fn fill_origin_sources(config: &mut Config) -> anyhow::Result<()> {
    let first_origin = |ipv6: bool| {
        config.apps.iter().find_map(|app| match &app.origin {
            Origin::Direct(origins) => origins
                .iter()
                .find(|o| o.ip.is_ipv6() == ipv6)
                .map(|o| o.ip),
            Origin::Dns(_) => None,
        })
    };
    if config.edge.origin_source.ipv4.is_none()
        && let Some(origin) = first_origin(false)
    {
        let source = source_address_for(origin)
            .map_err(|err| anyhow::anyhow!("no route to origin {origin}: {err}"))?;
        if let IpAddr::V4(v4) = source {
            info!(%origin, source = %v4, "edge.origin_source.ipv4 not set: using the route's source");
            config.edge.origin_source.ipv4 = Some(v4);
        }
    }
    if config.edge.origin_source.ipv6.is_none()
        && let Some(origin) = first_origin(true)
    {
        let source = source_address_for(origin)
            .map_err(|err| anyhow::anyhow!("no route to origin {origin}: {err}"))?;
        if let IpAddr::V6(v6) = source {
            info!(%origin, source = %v6, "edge.origin_source.ipv6 not set: using the route's source");
            config.edge.origin_source.ipv6 = Some(v6);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_reached_from_loopback() {
        let source = source_address_for("127.0.0.1".parse().expect("ip")).expect("route");
        assert_eq!(source, "127.0.0.1".parse::<IpAddr>().expect("ip"));
    }
}
