//! The agent's UDP path: UDP apps that tell the origin who the client is,
//! with a PROXY v2 header (on the first datagram of each flow, as Spectrum
//! does, or on every datagram) or Cloudflare's Simple Proxy Protocol (a
//! 38-byte header on every datagram, both ways).
//!
//! sk_lookup hands every (edge address, port) of these apps to one
//! dual-stack socket; each datagram's original destination
//! (`IP_ORIGDSTADDR`) names the app and the origin port at the same offset.
//!
//! A flow is one (client address and port, edge address and port). It has
//! its own socket toward the origin, on its own source port, so the
//! origin's replies find their client. Replies leave through a socket bound
//! to the edge address and port the client reached, one per such address
//! and port, shared by its flows (`send_to` the client). That socket is not
//! connected, so it receives nothing: sk_lookup wins over it, and every
//! client datagram comes in through the main socket.
use std::{
    collections::HashMap,
    io::{self, IoSliceMut},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::AsRawFd,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use proxy_common::{Counter, Verdict};
use tokio::{
    io::Interest,
    net::UdpSocket,
    sync::{mpsc, watch},
    time::Instant,
};
use tracing::{debug, info, warn};

use crate::{
    config::model::{App, Config, Protocol, ProxyProtocol, UdpProxy},
    proxy::header::{self, Endpoints, Transport},
    proxy::live::{Live, Registered},
    proxy::routes::{AppCounts, Clients, Counts, Entry, Routes, Table, Target, Throttle, unmapped},
};

/// Receive buffers hold any UDP payload (IPv6's largest is 65,527
/// bytes); a read that fills one was truncated.
const BUFFER: usize = 65_536;

/// Datagrams the main socket may queue for one flow before dropping.
const FLOW_QUEUE: usize = 64;

/// How a UDP app's origin learns the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    /// PROXY v2 in front of the first datagram of each flow.
    V2First,
    /// PROXY v2 in front of every datagram.
    V2Every,
    /// SPP in front of every datagram; replies carry it too.
    Spp,
}

/// What the UDP path adds to an app's [`Target`].
pub struct Route {
    header: Header,
    /// Flows open now.
    flows: AtomicUsize,
    /// Limits the app's warnings (flow limit reached, flows failing).
    warnings: Throttle,
}

impl Route {
    fn new(app: &App) -> anyhow::Result<Self> {
        let header = match (app.proxy_protocol, app.proxy_header_every_datagram) {
            (ProxyProtocol::V2, false) => Header::V2First,
            (ProxyProtocol::V2, true) => Header::V2Every,
            (ProxyProtocol::Simple, _) => Header::Spp,
            (other, _) => anyhow::bail!("proxy_protocol {other} is not for the UDP path"),
        };
        Ok(Self {
            header,
            flows: AtomicUsize::new(0),
            warnings: Throttle::default(),
        })
    }
}

/// A flow: (client, edge address and port it reached).
type FlowKey = (SocketAddr, SocketAddr);

/// A live flow as the receive loop sees it: where its datagrams go, and
/// which flow it is (a key may be reused by the next flow of the client).
struct FlowEntry {
    id: u64,
    queue: mpsc::Sender<Vec<u8>>,
}

/// Everything the receive loop and the flow tasks share.
pub struct UdpProxyState {
    routes: Routes<Route>,
    counts: Counts,
    limits: UdpProxy,
    /// A flow the origin never answered ends after this long without a
    /// datagram (`edge.flow_timeouts.udp_unreplied`, as on the fast path;
    /// not `udp_proxy.idle_timeout`): one host's spray of new source
    /// ports then holds few flow slots for long.
    unreplied_timeout: Duration,
    /// Live flows: where the receive loop hands their datagrams.
    flows: Mutex<HashMap<FlowKey, FlowEntry>>,
    next_flow: AtomicU64,
    /// The reply socket of each edge address and port in use.
    reply_sockets: Mutex<HashMap<SocketAddr, Weak<UdpSocket>>>,
    /// Per-client bounds (`client_limits`) of every app.
    clients: Arc<Clients>,
    /// Live flows, for a rule change to cut.
    live: Arc<Live>,
}

/// Whether the agent's UDP path serves `app`.
pub fn serves(app: &App) -> bool {
    app.protocol == Protocol::Udp && !app.fast_path()
}

impl UdpProxyState {
    pub fn new(config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            routes: Routes::build(config, serves, Route::new)?,
            counts: Counts::default(),
            limits: config.edge.udp_proxy,
            unreplied_timeout: config.edge.flow_timeouts.udp_unreplied,
            flows: Mutex::default(),
            next_flow: AtomicU64::new(0),
            reply_sockets: Mutex::default(),
            clients: Arc::default(),
            live: Arc::default(),
        })
    }

    /// Whether any app needs the UDP path (else no socket is opened).
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// New addresses of an `origin_dns` app.
    pub fn set_origins(&self, app: u32, ips: &[IpAddr]) {
        self.routes.set_origins(app, ips);
    }

    /// The routes for `config`, not yet in force (see
    /// [`TcpProxyState::prepare`](crate::proxy::tcp::TcpProxyState::prepare)).
    pub fn prepare(&self, config: &Config) -> anyhow::Result<Table<Route>> {
        self.routes.prepare(config, serves, Route::new)
    }

    /// Puts routes from [`Self::prepare`] in force for new flows; flows in
    /// progress keep the app they started with.
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

    /// The live flows.
    pub fn live(&self) -> &Live {
        &self.live
    }

    /// Flows open now.
    pub fn active(&self) -> usize {
        self.flows.lock().map_or(0, |flows| flows.len())
    }

    /// The socket replies to clients of `edge` leave from: the one its
    /// live flows share, or a new one.
    fn reply_socket(&self, edge: SocketAddr) -> anyhow::Result<Arc<UdpSocket>> {
        let mut sockets = self
            .reply_sockets
            .lock()
            .map_err(|_| anyhow::anyhow!("reply socket table poisoned"))?;
        if let Some(socket) = sockets.get(&edge).and_then(Weak::upgrade) {
            return Ok(socket);
        }
        let socket = Arc::new(reply_socket(edge)?);
        if sockets.len() >= 1024 {
            sockets.retain(|_, socket| socket.strong_count() > 0);
        }
        sockets.insert(edge, Arc::downgrade(&socket));
        Ok(socket)
    }
}

/// The dual-stack socket sk_lookup gives every agent-path UDP datagram:
/// bound to `[::]` on a port the kernel picks, reporting each datagram's
/// original destination for IPv4 and IPv6.
pub fn socket() -> anyhow::Result<std::net::UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .context("creating the UDP socket")?;
    socket.set_only_v6(false).context("IPV6_V6ONLY=0")?;
    socket.set_nonblocking(true).context("O_NONBLOCK")?;
    // IPv4 datagrams on a dual-stack socket report through SOL_IP options.
    setsockopt(&socket, sockopt::Ipv4OrigDstAddr, &true).context("IP_RECVORIGDSTADDR")?;
    setsockopt(&socket, sockopt::Ipv6OrigDstAddr, &true).context("IPV6_RECVORIGDSTADDR")?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    let addr: SocketAddr = "[::]:0".parse().context("any address")?;
    socket
        .bind(&addr.into())
        .context("binding the UDP socket")?;
    Ok(socket.into())
}

/// One datagram off the main socket: client, original destination, length.
fn receive(
    socket: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(SocketAddr, Option<SocketAddr>, usize)> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut control = nix::cmsg_space!(libc::sockaddr_in6);
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut control),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC,
    )
    .map_err(io::Error::from)?;
    let peer = msg
        .address
        .as_ref()
        .and_then(sockaddr)
        .ok_or_else(|| io::Error::other("datagram without a source address"))?;
    let mut destination = None;
    for cmsg in msg.cmsgs().map_err(io::Error::from)? {
        match cmsg {
            ControlMessageOwned::Ipv4OrigDstAddr(sin) => {
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                destination = Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)));
            }
            ControlMessageOwned::Ipv6OrigDstAddr(sin6) => {
                let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                destination = Some(SocketAddr::new(ip.into(), u16::from_be(sin6.sin6_port)));
            }
            _ => {}
        }
    }
    Ok((unmapped(peer), destination.map(unmapped), msg.bytes))
}

fn sockaddr(storage: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = storage.as_sockaddr_in() {
        return Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)));
    }
    storage
        .as_sockaddr_in6()
        .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
}

/// Receives until `stop` turns true, handing each datagram to its flow
/// (opening one for a new client).
pub async fn serve(
    socket: std::net::UdpSocket,
    state: Arc<UdpProxyState>,
    mut stop: watch::Receiver<bool>,
) {
    let socket = match UdpSocket::from_std(socket) {
        Ok(socket) => socket,
        Err(err) => return warn!(%err, "registering the UDP socket: the UDP path is off"),
    };
    let mut buf = vec![0u8; BUFFER];
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            ready = socket.readable() => if let Err(err) = ready {
                warn!(%err, "waiting on the UDP socket: the UDP path is off");
                break;
            },
        }
        // A bounded batch per wake-up, so `stop` is seen under load.
        for _ in 0..64 {
            match socket.try_io(Interest::READABLE, || receive(&socket, &mut buf)) {
                Ok((client, Some(edge), len)) if len < BUFFER => {
                    dispatch(&state, client, edge, &buf[..len]);
                }
                Ok((client, edge, len)) => {
                    debug!(%client, ?edge, len, "datagram without a destination or too big: dropped");
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => {
                    debug!(%err, "UDP receive error");
                    break;
                }
            }
        }
    }
    let flows = state.active();
    info!(flows, "UDP path stopped");
}

/// Hands a datagram to its flow, or opens the flow.
fn dispatch(state: &Arc<UdpProxyState>, client: SocketAddr, edge: SocketAddr, payload: &[u8]) {
    let key = (client, edge);
    let Ok(mut flows) = state.flows.lock() else {
        return;
    };
    if let Some(flow) = flows.get(&key) {
        match flow.queue.try_send(payload.to_vec()) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(_)) => {
                return debug!(%client, %edge, "flow queue full: datagram dropped");
            }
            // The flow just ended: a new one starts with this datagram.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                flows.remove(&key);
            }
        }
    }
    let Some(entry) = state.routes.route_for(edge) else {
        return debug!(%client, %edge, "datagram to no agent-path UDP app: dropped");
    };
    let (target, route) = (&entry.0, &entry.1);
    let counts = state.counts.app(target.index);
    if route.flows.load(Ordering::Relaxed) >= state.limits.max_flows {
        counts.limited.fetch_add(1, Ordering::Relaxed);
        if let Some(skipped) = route.warnings.allow() {
            warn!(app = %target.name, %client, limit = state.limits.max_flows, skipped, "over the UDP flow limit: datagram dropped");
        }
        return;
    }
    let Some(slot) = state
        .clients
        .admit(target.index, &target.client_limits, client.ip())
    else {
        counts.client_limited.fetch_add(1, Ordering::Relaxed);
        if let Some(skipped) = route.warnings.allow() {
            warn!(app = %target.name, %client, skipped, "over a per-client limit: datagram dropped");
        }
        return;
    };
    let (queue, rx) = mpsc::channel(FLOW_QUEUE);
    let id = state.next_flow.fetch_add(1, Ordering::Relaxed);
    flows.insert(key, FlowEntry { id, queue });
    route.flows.fetch_add(1, Ordering::Relaxed);
    counts.accepted.fetch_add(1, Ordering::Relaxed);
    // Listed before the task runs: a cut right after this sees it.
    let live = state.live.register(client.ip(), edge, target.index);
    let state = Arc::clone(state);
    let first = payload.to_vec();
    tokio::spawn(async move {
        flow(state, entry, id, (client, edge), first, rx, live).await;
        drop(slot);
    });
}

/// Why a flow ended.
enum End {
    Idle,
    /// The origin could not be reached (socket error, ICMP unreachable).
    Origin(String),
    /// The reply socket could not be set up.
    Client(String),
    /// Cut: a rule change blocks the client.
    Blocked,
}

async fn flow(
    state: Arc<UdpProxyState>,
    entry: Entry<Route>,
    id: u64,
    (client, edge): FlowKey,
    first: Vec<u8>,
    mut rx: mpsc::Receiver<Vec<u8>>,
    live: Registered,
) {
    // The app as it was when the flow opened: a live change does not
    // move a flow to another app.
    let (target, route) = (&entry.0, &entry.1);
    let counts = state.counts.app(target.index);
    let end = tokio::select! {
        end = run(&state, target, route, client, edge, first, &mut rx) => end,
        () = live.cut() => End::Blocked,
    };
    drop(live);
    // Out of the table before `rx` goes: a datagram that finds the queue
    // closed opens the next flow, which this one must not remove.
    if let Ok(mut flows) = state.flows.lock()
        && flows.get(&(client, edge)).is_some_and(|flow| flow.id == id)
    {
        flows.remove(&(client, edge));
    }
    drop(rx);
    route.flows.fetch_sub(1, Ordering::Relaxed);
    counts.closed.fetch_add(1, Ordering::Relaxed);
    let failure = match end {
        End::Idle => return debug!(app = %target.name, %client, %edge, "UDP flow ended: idle"),
        // The cut is logged once for all its flows (`access`).
        End::Blocked => {
            return debug!(app = %target.name, %client, %edge, "UDP flow cut: blocked by an access rule");
        }
        End::Origin(err) => {
            counts.origin_failed.fetch_add(1, Ordering::Relaxed);
            err
        }
        End::Client(err) => err,
    };
    if let Some(skipped) = route.warnings.allow() {
        warn!(app = %target.name, %client, %edge, skipped, "UDP flow ended: {failure}");
    }
}

async fn run(
    state: &UdpProxyState,
    target: &Target,
    route: &Route,
    client: SocketAddr,
    edge: SocketAddr,
    first: Vec<u8>,
    rx: &mut mpsc::Receiver<Vec<u8>>,
) -> End {
    let Some(origin_addr) = target.pick_origin(edge.port()) else {
        return End::Origin("no origin address (origin_dns not resolved)".into());
    };
    let origin = match origin_socket(origin_addr).await {
        Ok(socket) => socket,
        Err(err) => return End::Origin(format!("origin {origin_addr}: {err}")),
    };
    let reply = match state.reply_socket(edge) {
        Ok(socket) => socket,
        Err(err) => return End::Client(format!("reply socket on {edge}: {err:#}")),
    };
    let counts = state.counts.app(target.index);
    let endpoints = Endpoints {
        client,
        proxy: edge,
    };
    let header = match route.header {
        Header::V2First | Header::V2Every => header::v2(&endpoints, Transport::Udp),
        Header::Spp => header::spp(&endpoints).to_vec(),
    };
    let mut up = Upstream {
        origin: &origin,
        header,
        every: route.header != Header::V2First,
        sent_header: false,
        buf: Vec::new(),
        counts,
    };
    if let Err(end) = up.send(&first).await {
        return end;
    }
    let replied_idle = state.limits.idle_timeout;
    let mut idle = state.unreplied_timeout.min(replied_idle);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            // Queued client datagrams first: the idle timer never wins
            // over data that already arrived.
            biased;
            Some(datagram) = rx.recv() => {
                last = Instant::now();
                if let Err(end) = up.send(&datagram).await {
                    return end;
                }
            }
            ready = origin.readable() => {
                if let Err(err) = ready {
                    return End::Origin(format!("origin {origin_addr}: {err}"));
                }
                // Allocated per datagram (not per flow): an idle flow holds
                // no buffer.
                let mut datagram = Vec::with_capacity(BUFFER);
                match origin.try_recv_buf(&mut datagram) {
                    Ok(_) => {}
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(err) => return End::Origin(format!("origin {origin_addr}: {err}")),
                }
                let Some(payload) = reply_payload(route.header, &datagram, client, counts) else {
                    continue;
                };
                last = Instant::now();
                idle = replied_idle;
                match reply.send_to(payload, client).await {
                    Ok(_) => {
                        counts
                            .to_client_bytes
                            .fetch_add(payload.len() as u64, Ordering::Relaxed);
                    }
                    Err(err) => debug!(%client, %err, "reply not sent"),
                }
            }
            _ = tokio::time::sleep_until(last + idle) => return End::Idle,
        }
    }
}

/// The client side of the origin: the header where it goes, then the
/// payload, as one datagram.
struct Upstream<'a> {
    origin: &'a UdpSocket,
    header: Vec<u8>,
    /// The header goes in front of every datagram (SPP, v2 every), not
    /// only the first.
    every: bool,
    sent_header: bool,
    buf: Vec<u8>,
    counts: &'a AppCounts,
}

impl Upstream<'_> {
    async fn send(&mut self, payload: &[u8]) -> Result<(), End> {
        let datagram = if self.every || !self.sent_header {
            self.buf.clear();
            self.buf.extend_from_slice(&self.header);
            self.buf.extend_from_slice(payload);
            &self.buf[..]
        } else {
            payload
        };
        match self.origin.send(datagram).await {
            Ok(_) => {
                self.sent_header = true;
                self.counts
                    .to_origin_bytes
                    .fetch_add(payload.len() as u64, Ordering::Relaxed);
                Ok(())
            }
            // Too big with the header: this datagram is lost, the flow
            // goes on.
            Err(err) if err.raw_os_error() == Some(libc::EMSGSIZE) => {
                debug!(
                    len = payload.len(),
                    "datagram too big with its header: dropped"
                );
                Ok(())
            }
            Err(err) => Err(End::Origin(format!("sending to the origin: {err}"))),
        }
    }
}

/// What of an origin's datagram goes to the client: all of it, or (SPP)
/// the payload after a valid header that names this flow's client. A
/// datagram that fails is counted and dropped.
fn reply_payload<'a>(
    header: Header,
    datagram: &'a [u8],
    client: SocketAddr,
    counts: &AppCounts,
) -> Option<&'a [u8]> {
    if header != Header::Spp {
        return Some(datagram);
    }
    let refused = match header::parse_spp(datagram) {
        Ok((named, payload)) if named.client == client => return Some(payload),
        Ok((named, _)) => format!("names client {}, not {client}", named.client),
        Err(err) => err.to_string(),
    };
    counts.bad_replies.fetch_add(1, Ordering::Relaxed);
    debug!(%client, len = datagram.len(), "SPP reply dropped: {refused}");
    None
}

/// A socket toward the origin, on a source port of its own.
async fn origin_socket(origin: SocketAddr) -> io::Result<UdpSocket> {
    let any: SocketAddr = match origin {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(any).await?;
    socket.connect(origin).await?;
    Ok(socket)
}

/// The socket replies leave from: bound to the edge address and port
/// the clients reached, not connected (so sk_lookup, not this socket,
/// receives their datagrams).
fn reply_socket(edge: SocketAddr) -> anyhow::Result<UdpSocket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(edge),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    // Edge addresses may be local only through a `local` route (AnyIP),
    // which IPv6 does not accept for bind: transparent lets the socket bind
    // and send from them (the agent has CAP_NET_ADMIN for XDP anyway).
    if edge.is_ipv6() {
        socket.set_only_v6(true)?;
        socket
            .set_ip_transparent_v6(true)
            .context("IPV6_TRANSPARENT")?;
    } else {
        socket
            .set_ip_transparent_v4(true)
            .context("IP_TRANSPARENT")?;
    }
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&edge.into()).context("bind")?;
    Ok(UdpSocket::from_std(socket.into())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("socket address")
    }

    #[test]
    fn spp_replies_pass_only_for_their_own_client() {
        let counts = AppCounts::default();
        let client = addr("192.0.2.1:5000");
        let edge = addr("198.51.100.1:53");
        let mut good = header::spp(&Endpoints {
            client,
            proxy: edge,
        })
        .to_vec();
        good.extend_from_slice(b"answer");
        assert_eq!(
            reply_payload(Header::Spp, &good, client, &counts),
            Some(&b"answer"[..])
        );
        // Another client named, a short datagram, a wrong magic: dropped.
        let other = addr("192.0.2.1:5001");
        let mut bad_magic = good.clone();
        bad_magic[0] = 0x12;
        for datagram in [&good[..], &good[..20], &bad_magic[..]] {
            let to = if datagram.len() == good.len() && datagram[0] == good[0] {
                other
            } else {
                client
            };
            assert_eq!(reply_payload(Header::Spp, datagram, to, &counts), None);
        }
        assert_eq!(counts.bad_replies.load(Ordering::Relaxed), 3);
        // PROXY v2 apps pass replies through untouched.
        assert_eq!(
            reply_payload(Header::V2First, b"raw", client, &counts),
            Some(&b"raw"[..])
        );
    }
}
