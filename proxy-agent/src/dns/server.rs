//! The running server: hickory's server loop on the `dns_server.listen`
//! UDP sockets and ours ([`super::tcp`], bounded) on their TCP listeners,
//! answering from an [`Authority`] that a reload replaces.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;

use anyhow::{Context as _, anyhow, bail};
use hickory_server::Server;
use tracing::{info, warn};

use super::bind::{bind_pair, needs_freebind};
use super::counts::DnsAnswers;
use super::handler::Authority;
use super::zone::{ZoneSet, zone_records};
use crate::config::{self, Config};

/// How long [`DnsServer::shutdown`] waits for the listeners to stop.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// The running server: a UDP socket and a TCP listener per listen address.
pub struct DnsServer {
    server: Server<Authority>,
    /// The TCP accept loops, and what stops them.
    tcp: Vec<tokio::task::JoinHandle<()>>,
    stop_tcp: watch::Sender<bool>,
    authority: Authority,
    listen: Vec<SocketAddr>,
    local_addrs: Vec<SocketAddr>,
}

impl DnsServer {
    /// Binds every `settings.listen` address (UDP and TCP, same port; port
    /// 0 picks a free one, see [`local_addrs`](Self::local_addrs)) and
    /// answers from `zones`. A specific IPv6 address inside `pool.ipv6` is
    /// bound with `IPV6_FREEBIND` (see [`needs_freebind`]), so that a pool
    /// address routed to the host as AnyIP works. Fails, binding nothing,
    /// when an address cannot be bound. Needs a tokio runtime.
    pub async fn start(
        settings: &config::DnsServer,
        pool: &config::AddressPool,
        zones: &ZoneSet,
    ) -> anyhow::Result<Self> {
        let authority = Authority::new(zones)?.with_rate_limit(settings.responses_per_second);
        let mut sockets = Vec::with_capacity(settings.listen.len());
        for (k, &addr) in settings.listen.iter().enumerate() {
            let freebind = needs_freebind(addr, pool);
            sockets.push(
                bind_pair(addr, freebind)
                    .map_err(|e| anyhow!("dns_server.listen[{k}] {addr}: {e}"))?,
            );
        }
        let mut server = Server::new(authority.clone());
        let mut local_addrs = Vec::with_capacity(sockets.len());
        let (stop_tcp, stop) = watch::channel(false);
        let mut tcp_loops = Vec::with_capacity(sockets.len());
        for (k, (udp, tcp, local)) in sockets.into_iter().enumerate() {
            let context = || format!("dns_server.listen[{k}] {local}");
            let udp = tokio::net::UdpSocket::from_std(udp).with_context(context)?;
            let tcp = tokio::net::TcpListener::from_std(tcp).with_context(context)?;
            server.register_socket(udp);
            tcp_loops.push(tokio::spawn(super::tcp::serve(
                tcp,
                authority.clone(),
                settings.max_tcp_connections,
                stop.clone(),
            )));
            local_addrs.push(local);
        }
        info!(
            listen = ?local_addrs,
            zones = ?zones.origins(),
            names = zones.names(),
            responses_per_second = settings.responses_per_second,
            max_tcp_connections = settings.max_tcp_connections,
            "DNS server started"
        );
        Ok(DnsServer {
            server,
            tcp: tcp_loops,
            stop_tcp,
            authority,
            listen: settings.listen.clone(),
            local_addrs,
        })
    }

    /// The bound addresses, one per `listen` entry in order (with the
    /// port the kernel chose where the config says 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The answers the server gives (to query it without a socket).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// A handle on the counts of answers sent (see [`DnsAnswers`]).
    pub fn answers(&self) -> DnsAnswers {
        self.authority.answers()
    }

    /// Replaces the answers with those of `config` (its `dns_server` and
    /// apps, as [`zone_records`] makes them): names, zones, nameserver,
    /// TTL and reverse zones change with no restart, and queries being
    /// answered finish with the old ones. The sockets stay: a different
    /// `dns_server.listen` is only warned about (it takes a new
    /// [`start`](Self::start)). A config without `dns_server` is an error
    /// (shut the server down instead). On error the old answers stay.
    pub fn update(&self, config: &Config) -> anyhow::Result<()> {
        let Some(settings) = &config.dns_server else {
            bail!("the config has no dns_server: shut the DNS server down instead");
        };
        self.install(settings, &zone_records(config)?)
    }

    /// [`Self::update`] with the zones already made (a live change builds
    /// them before it switches anything).
    pub fn install(&self, settings: &config::DnsServer, zones: &ZoneSet) -> anyhow::Result<()> {
        if settings.listen != self.listen {
            warn!(
                old = ?self.listen,
                new = ?settings.listen,
                "dns_server.listen changed: the DNS server keeps its sockets until a restart"
            );
        }
        self.authority.replace(zones)?;
        info!(
            zones = ?zones.origins(),
            names = zones.names(),
            "DNS server answers updated"
        );
        Ok(())
    }

    /// Stops accepting queries and waits (briefly) for the listeners to end.
    pub async fn shutdown(mut self) {
        let _ = self.stop_tcp.send(true);
        for task in std::mem::take(&mut self.tcp) {
            if tokio::time::timeout(SHUTDOWN_TIMEOUT, task).await.is_err() {
                warn!("DNS server: a TCP listener did not stop in time");
            }
        }
        match tokio::time::timeout(SHUTDOWN_TIMEOUT, self.server.shutdown_gracefully()).await {
            Ok(Ok(())) => info!("DNS server stopped"),
            Ok(Err(error)) => warn!(%error, "DNS server stopped with an error"),
            Err(_) => warn!("DNS server did not stop in time; its tasks are dropped"),
        }
    }
}
