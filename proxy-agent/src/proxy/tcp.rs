//! The agent's TCP path: apps with TLS at the edge or toward the origin, or
//! with a PROXY header. sk_lookup hands every (edge address, port) of these
//! apps to one listening socket; the accepted socket's local address is
//! the address and port the client reached, which names the app and the
//! origin port at the same offset.
//!
//! Per connection: client TLS handshake (flexible/full/strict) -> origin
//! connect -> PROXY header (v1/v2) -> origin TLS (full/strict) -> bytes
//! both ways until both sides closed, or nothing moved for the idle timeout.
use std::{
    io,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use proxy_common::{Counter, Verdict};
use rustls::pki_types::ServerName;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
    time::{sleep, timeout},
};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use tracing::{debug, info, warn};

use crate::{
    config::model::{App, Config, Origin, Protocol, ProxyProtocol, TcpProxy, TlsMode},
    proxy::header::{self, Endpoints, Transport},
    proxy::live::Live,
    proxy::routes::{AppCounts, Clients, Counts, Routes, Table, Target, Throttle, unmapped},
    proxy::tls::{self, CertKeyPaths, OriginVerify},
};

/// What the TCP path adds to an app's [`Target`].
pub struct Route {
    proxy_protocol: ProxyProtocol,
    edge_tls: Option<TlsAcceptor>,
    /// The connector, and the name the origin's certificate must carry
    /// (`None`: the address of the origin each connection picks).
    origin_tls: Option<(TlsConnector, Option<ServerName<'static>>)>,
    /// The app's own pool (`edge.tcp_proxy.max_connections_per_app`):
    /// one app's flood leaves the rest of the path to the others.
    slots: Arc<Semaphore>,
    /// Limits the app's refusal warnings (a flood is one line per 10 s).
    warnings: Throttle,
    /// Likewise for its failed connections (client TLS, origin refused or
    /// unreachable, I/O errors): a client or a dead origin can make one
    /// per connection, so each 10 s gets one line and the count of the rest.
    failures: Throttle,
}

/// Everything the connection tasks share.
pub struct TcpProxyState {
    routes: Routes<Route>,
    counts: Counts,
    limits: TcpProxy,
    slots: Arc<Semaphore>,
    /// Per-client bounds (`client_limits`) of every app.
    clients: Arc<Clients>,
    /// Limits the warnings about connections to no app and failed accepts.
    unrouted: Throttle,
    accept_failed: Throttle,
    /// Open connections, for a rule change to cut.
    live: Arc<Live>,
}

/// Whether the agent's TCP path serves `app`.
pub fn serves(app: &App) -> bool {
    app.protocol == Protocol::Tcp && !app.fast_path()
}

impl TcpProxyState {
    /// Builds the TLS configs of every agent-path TCP app; fails naming the
    /// app when a certificate, key or CA bundle does not load.
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        let limits = config.edge.tcp_proxy;
        let per_app = limits.max_connections_per_app;
        Ok(Self {
            routes: Routes::build(config, serves, |app| Route::new(app, per_app))?,
            counts: Counts::default(),
            limits,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            clients: Arc::default(),
            unrouted: Throttle::default(),
            accept_failed: Throttle::default(),
            live: Arc::default(),
        })
    }

    /// Whether any app needs the TCP path (else no listener is opened).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// New addresses of an `origin_dns` app.
    pub fn set_origins(&self, app: u32, ips: &[IpAddr]) {
        self.routes.set_origins(app, ips);
    }

    /// The routes for `config`, built (certificates and keys loaded for
    /// new apps) but not in force; fails naming the app, changing nothing.
    pub fn prepare(&self, config: &Config) -> anyhow::Result<Table<Route>> {
        let per_app = config.edge.tcp_proxy.max_connections_per_app;
        self.routes
            .prepare(config, serves, |app| Route::new(app, per_app))
    }

    /// Puts routes from [`Self::prepare`] in force for new connections;
    /// connections in progress keep the app they started with.
    /// Returns the routes it replaced (see [`Self::reinstate`]).
    pub fn install(&self, table: Table<Route>) -> Arc<Table<Route>> {
        self.routes.install(table)
    }

    /// Puts back routes [`Self::install`] replaced: a change rolled back.
    pub fn reinstate(&self, table: Arc<Table<Route>>) {
        self.routes.reinstate(table);
    }

    /// Counts since the last call, as kernel counter rows.
    pub fn take_counts(&self) -> Vec<(u32, Verdict, Counter)> {
        self.counts.take()
    }

    /// The open connections.
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Connections in progress.
    pub fn active(&self) -> usize {
        self.limits.max_connections - self.slots.available_permits()
    }
}

impl Route {
    fn new(app: &App, max_connections: usize) -> anyhow::Result<Self> {
        let edge_tls = match app.tls {
            TlsMode::Off => None,
            _ => {
                let (Some(cert), Some(key)) = (&app.tls_cert, &app.tls_key) else {
                    anyhow::bail!("tls {} needs tls_cert and tls_key", app.tls);
                };
                // The default pair first: it answers clients without SNI.
                let pairs: Vec<CertKeyPaths> = std::iter::once((cert, key))
                    .chain(app.tls_sni_certs.iter().map(|(c, k)| (c, k)))
                    .map(|(cert, key)| CertKeyPaths {
                        cert: cert.clone(),
                        key: key.clone(),
                    })
                    .collect();
                Some(TlsAcceptor::from(tls::edge_server_config(&pairs)?))
            }
        };
        let origin_tls = match app.tls {
            TlsMode::Full | TlsMode::Strict => {
                let verify = match (app.tls, &app.origin_ca) {
                    (TlsMode::Full, _) => OriginVerify::None,
                    (_, Some(ca)) => OriginVerify::CaBundle(ca.clone()),
                    (_, None) => OriginVerify::SystemRoots,
                };
                let server_name = origin_name(app)
                    .map(|name| tls::origin_server_name(&name))
                    .transpose()?;
                let connector = TlsConnector::from(tls::origin_client_config(verify)?);
                Some((connector, server_name))
            }
            _ => None,
        };
        Ok(Self {
            proxy_protocol: app.proxy_protocol,
            edge_tls,
            origin_tls,
            slots: Arc::new(Semaphore::new(max_connections)),
            warnings: Throttle::default(),
            failures: Throttle::default(),
        })
    }
}

/// The name the origin's certificate must carry: `origin_sni`, else the
/// `origin_dns` name; `None` for direct origins (each connection uses the
/// address of the origin it picked).
fn origin_name(app: &App) -> Option<String> {
    if let Some(sni) = &app.origin_sni {
        return Some(sni.clone());
    }
    match &app.origin {
        Origin::Dns(dns) => Some(dns.name.trim_end_matches('.').to_owned()),
        Origin::Direct(_) => None,
    }
}

/// The TCP listener's backlog (the kernel caps it at
/// `net.core.somaxconn`, 4096 by default): deep enough for a burst of
/// clients; a SYN queue that overflows it is where the kernel's SYN cookies
/// (`tcp_syncookies`, which the agent turns on: `kernel::sysctl`) start.
const LISTEN_BACKLOG: i32 = 4096;

/// A dual-stack listening socket for every agent-path TCP app. sk_lookup
/// hands it the apps' connections whatever their address and port. It is
/// bound to `[::]` (the kernel makes a socket bound to a specific IPv6
/// address IPv6-only, and sk_lookup then refuses it IPv4 connections) on a
/// port the kernel picks; a connection that reaches that port directly
/// matches no app and is closed.
pub fn listener() -> anyhow::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .context("creating the TCP listener")?;
    socket.set_only_v6(false).context("IPV6_V6ONLY=0")?;
    socket.set_reuse_address(true).context("SO_REUSEADDR")?;
    socket.set_nonblocking(true).context("O_NONBLOCK")?;
    let addr: SocketAddr = "[::]:0".parse().context("any address")?;
    socket
        .bind(&addr.into())
        .context("binding the TCP listener")?;
    socket.listen(LISTEN_BACKLOG).context("listening")?;
    Ok(socket.into())
}

/// Accepts and proxies until `stop` turns true; then waits (up to `drain`)
/// for live connections to end.
pub async fn serve(
    listener: TcpListener,
    state: Arc<TcpProxyState>,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((client, peer)) => {
                    // Taken here, so a task that exists holds its slot and
                    // the drain below sees it.
                    let slot = Arc::clone(&state.slots).try_acquire_owned().ok();
                    let state = Arc::clone(&state);
                    tokio::spawn(async move { connection(state, client, peer, slot).await });
                }
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning.
                    if let Some(skipped) = state.accept_failed.allow() {
                        warn!(%err, skipped, "accept failed{}", more(skipped));
                    }
                    sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    // Closed now: it leaves the socket map, and new connections are reset
    // at once instead of waiting in the backlog until the agent exits.
    drop(listener);
    let deadline = tokio::time::Instant::now() + drain;
    while state.active() > 0 && tokio::time::Instant::now() < deadline {
        sleep(Duration::from_millis(50)).await;
    }
    let left = state.active();
    if left > 0 {
        warn!(
            connections = left,
            "shutting down with connections still open"
        );
    } else {
        info!("TCP path drained");
    }
}

/// How a connection ended, with Spectrum's event status codes.
#[derive(Debug)]
enum End {
    /// 200.
    Closed,
    /// 443: the client's TLS handshake failed (or timed out).
    ClientTls(String),
    /// 446: the origin could not be reached (445 when it timed out).
    OriginConnect(String, bool),
    /// 447: the origin's TLS handshake or certificate failed.
    OriginTls(String),
    /// 408-ish: nothing moved for the idle timeout.
    Idle,
    /// 490-ish: read/write error on either side.
    Io(String),
    /// 403: cut, a rule change blocks the client.
    Blocked,
}

impl End {
    fn status(&self) -> u16 {
        match self {
            End::Closed => 200,
            End::ClientTls(_) => 443,
            End::OriginConnect(_, true) => 445,
            End::OriginConnect(_, false) => 446,
            End::OriginTls(_) => 447,
            End::Idle => 408,
            End::Io(_) => 490,
            End::Blocked => 403,
        }
    }
}

/// Bytes moved: client -> origin, origin -> client.
#[derive(Debug, Default, Clone, Copy)]
struct Moved {
    up: u64,
    down: u64,
}

async fn connection(
    state: Arc<TcpProxyState>,
    client: TcpStream,
    peer: SocketAddr,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
) {
    let peer = unmapped(peer);
    let edge = match client.local_addr() {
        Ok(addr) => unmapped(addr),
        Err(err) => return debug!(%err, "connection gone before it was read"),
    };
    let Some(entry) = state.routes.route_for(edge) else {
        if let Some(skipped) = state.unrouted.allow() {
            warn!(client = %peer, %edge, skipped, "connection to no agent-path app: closed{}", more(skipped));
        }
        return;
    };
    let (target, route) = (&entry.0, &entry.1);
    let counts = state.counts.app(target.index);
    let app_slot = Arc::clone(&route.slots).try_acquire_owned().ok();
    let (Some(_slot), Some(_app_slot)) = (slot, app_slot) else {
        counts.limited.fetch_add(1, Ordering::Relaxed);
        if let Some(skipped) = route.warnings.allow() {
            warn!(app = %target.name, client = %peer, limit = state.limits.max_connections, per_app = state.limits.max_connections_per_app, skipped, "over the connection limit: refused");
        }
        return;
    };
    // Closed at once (the client sees a reset or an end of stream), before
    // any origin is dialled.
    let Some(_client_slot) = state
        .clients
        .admit(target.index, &target.client_limits, peer.ip())
    else {
        counts.client_limited.fetch_add(1, Ordering::Relaxed);
        if let Some(skipped) = route.warnings.allow() {
            warn!(app = %target.name, client = %peer, skipped, "over a per-client limit: refused");
        }
        return;
    };
    let live = state.live.register(peer.ip(), edge, target.index);
    counts.accepted.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_nodelay(true);
    let mut moved = Moved::default();
    let end = tokio::select! {
        end = proxy(&state, target, route, client, peer, edge, &mut moved) => end,
        () = live.cut() => End::Blocked,
    };
    counts.closed.fetch_add(1, Ordering::Relaxed);
    let counter = match &end {
        End::ClientTls(_) => Some(&counts.tls_failed),
        End::OriginConnect(..) | End::OriginTls(_) => Some(&counts.origin_failed),
        End::Idle => Some(&counts.timeouts),
        End::Closed | End::Io(_) | End::Blocked => None,
    };
    if let Some(counter) = counter {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let status = end.status();
    match &end {
        End::Closed => {
            debug!(app = %target.name, client = %peer, %edge, status, up = moved.up, down = moved.down, "disconnect")
        }
        // The cut is logged once for all its connections (`access`).
        End::Blocked => {
            debug!(app = %target.name, client = %peer, %edge, status, up = moved.up, down = moved.down, "disconnect: blocked by an access rule")
        }
        End::Idle => {
            info!(app = %target.name, client = %peer, %edge, status, up = moved.up, down = moved.down, "disconnect: idle timeout")
        }
        End::ClientTls(err) | End::OriginConnect(err, _) | End::OriginTls(err) | End::Io(err) => {
            if let Some(skipped) = route.failures.allow() {
                warn!(app = %target.name, client = %peer, %edge, status, up = moved.up, down = moved.down, skipped, "disconnect: {err}{}", more(skipped))
            } else {
                debug!(app = %target.name, client = %peer, %edge, status, "disconnect: {err}")
            }
        }
    }
}

/// What a throttled warning adds for the ones it stood for.
fn more(skipped: u64) -> String {
    if skipped == 0 {
        String::new()
    } else {
        format!(" (and {skipped} more since the last such line; one line per 10 s)")
    }
}

async fn proxy(
    state: &TcpProxyState,
    target: &Target,
    route: &Route,
    client: TcpStream,
    peer: SocketAddr,
    edge: SocketAddr,
    moved: &mut Moved,
) -> End {
    let limits = &state.limits;
    // Client side: TLS terminated here, or the bytes as they come.
    let client: Box<dyn Stream> = match &route.edge_tls {
        Some(acceptor) => match timeout(limits.handshake_timeout, acceptor.accept(client)).await {
            Ok(Ok(tls)) => Box::new(tls),
            Ok(Err(err)) => return End::ClientTls(format!("client TLS handshake: {err}")),
            Err(_) => return End::ClientTls("client TLS handshake timed out".into()),
        },
        None => Box::new(client),
    };
    let Some(origin_addr) = target.pick_origin(edge.port()) else {
        return End::OriginConnect("no origin address (origin_dns not resolved)".into(), false);
    };
    let mut origin = match timeout(limits.connect_timeout, TcpStream::connect(origin_addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => return End::OriginConnect(format!("origin {origin_addr}: {err}"), false),
        Err(_) => {
            return End::OriginConnect(format!("origin {origin_addr}: connect timed out"), true);
        }
    };
    let _ = origin.set_nodelay(true);
    let endpoints = Endpoints {
        client: peer,
        proxy: edge,
    };
    let header = match route.proxy_protocol {
        ProxyProtocol::V1 => Some(header::v1(&endpoints).into_bytes()),
        ProxyProtocol::V2 => Some(header::v2(&endpoints, Transport::Tcp)),
        _ => None,
    };
    if let Some(header) = header
        && let Err(err) = origin.write_all(&header).await
    {
        return End::OriginConnect(
            format!("origin {origin_addr}: writing the PROXY header: {err}"),
            false,
        );
    }
    let origin: Box<dyn Stream> = match &route.origin_tls {
        Some((connector, name)) => {
            let name = name
                .clone()
                .unwrap_or_else(|| ServerName::IpAddress(origin_addr.ip().into()));
            match timeout(limits.connect_timeout, connector.connect(name, origin)).await {
                Ok(Ok(tls)) => Box::new(tls),
                Ok(Err(err)) => return End::OriginTls(format!("origin {origin_addr} TLS: {err}")),
                Err(_) => {
                    return End::OriginTls(format!("origin {origin_addr} TLS handshake timed out"));
                }
            }
        }
        None => Box::new(origin),
    };
    let app = state.counts.app(target.index);
    pump(client, origin, limits.idle_timeout, moved, app).await
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Copies both ways, each direction on its own (a side that stops reading
/// never stalls the other direction), until both sides have closed; a
/// side's end of stream is passed on as a half-close. Ends early on an
/// error, or when nothing moved either way for `idle`. Bytes are added to
/// the app's counts as they move (a long connection shows up before it
/// ends) and returned in `moved` for the connection's log line.
async fn pump(
    a: Box<dyn Stream>,
    b: Box<dyn Stream>,
    idle: Duration,
    moved: &mut Moved,
    app: &AppCounts,
) -> End {
    let (a_read, a_write) = tokio::io::split(a);
    let (b_read, b_write) = tokio::io::split(b);
    let start = tokio::time::Instant::now();
    let last = AtomicU64::new(0);
    let (up, down) = (AtomicU64::new(0), AtomicU64::new(0));
    let up_half = copy_half(
        a_read,
        b_write,
        [&up, &app.to_origin_bytes],
        &last,
        start,
        ("client", "origin"),
    );
    let down_half = copy_half(
        b_read,
        a_write,
        [&down, &app.to_client_bytes],
        &last,
        start,
        ("origin", "client"),
    );
    tokio::pin!(up_half, down_half);
    let (mut up_done, mut down_done) = (false, false);
    let quiet_since = || start + Duration::from_millis(last.load(Ordering::Relaxed));
    let end = loop {
        if up_done && down_done {
            break End::Closed;
        }
        tokio::select! {
            done = &mut up_half, if !up_done => match done {
                Ok(()) => up_done = true,
                Err(end) => break end,
            },
            done = &mut down_half, if !down_done => match done {
                Ok(()) => down_done = true,
                Err(end) => break end,
            },
            // Activity since this timer was set moves the deadline.
            _ = tokio::time::sleep_until(quiet_since() + idle) => {
                if quiet_since() + idle <= tokio::time::Instant::now() {
                    break End::Idle;
                }
            }
        }
    };
    moved.up = up.load(Ordering::Relaxed);
    moved.down = down.load(Ordering::Relaxed);
    end
}

/// One direction: read, write and flush (a TLS writer may hold records
/// until flushed), until the reader's end of stream, which is passed on
/// as a shutdown of the writer. Each of `bytes` counts what was written.
/// `names`: (reader, writer), for errors.
async fn copy_half<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    mut from: R,
    mut to: W,
    bytes: [&AtomicU64; 2],
    last: &AtomicU64,
    start: tokio::time::Instant,
    names: (&str, &str),
) -> Result<(), End> {
    let mut buf = vec![0u8; 16 * 1024];
    let touch = || last.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    loop {
        let n = match from.read(&mut buf).await {
            Ok(n) => n,
            // A TCP close without TLS close_notify: many peers end so.
            Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(err) => return Err(io_end(&format!("reading from the {}", names.0), err)),
        };
        if n == 0 {
            let _ = to.shutdown().await;
            return Ok(());
        }
        touch();
        let written = async {
            to.write_all(&buf[..n]).await?;
            to.flush().await
        };
        if let Err(err) = written.await {
            return Err(io_end(&format!("writing to the {}", names.1), err));
        }
        for counter in bytes {
            counter.fetch_add(n as u64, Ordering::Relaxed);
        }
        touch();
    }
}

/// A reset (or a write into a closed connection) is how many peers end: a
/// close, not an error.
fn io_end(what: &str, err: io::Error) -> End {
    match err.kind() {
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => End::Closed,
        _ => End::Io(format!("{what}: {err}")),
    }
}
