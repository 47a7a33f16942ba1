//! Attack traffic for the shield tests (issue 20): floods of crafted frames
//! sent from a namespace through AF_PACKET, single crafted segments, and a
//! small raw TCP client whose sequence numbers the test knows.
//!
//! Frames come from [`crate::packet`] (its own wire numbers and checksums),
//! never from the code under test. Sources are addresses no host owns: the
//! edge delivers its answers to `cli`'s MAC (a static neighbour entry or a
//! route, see [`deliver_to`] and [`route_to`]), where `cli`'s kernel,
//! which does not forward, drops them without a reset. So an attacker
//! "never completes the handshake", and the raw client's own kernel never
//! answers in its place.
//!
//! Every flood is bounded by a count, may be paced, and can be stopped
//! early; it returns how many frames it sent.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4},
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{
    netns::Netns,
    packet::{self, Macs, PROTO_ICMP, PROTO_TCP, PROTO_UDP},
};

/// TCP flags as the wire has them (written out, as in `packet`).
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

const ETH_P_ALL: u16 = 0x0003;
const PACKET_OUTGOING: u8 = 4;

/// An AF_PACKET socket bound to one interface of a namespace. The socket
/// keeps the namespace it was made in, so any thread may use it.
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// A socket that only sends (protocol 0: the kernel queues it nothing).
    pub fn sender(ns: &Netns, dev: &str) -> anyhow::Result<Self> {
        Self::open(ns, dev, 0)
    }

    /// A socket that sends and receives every frame `dev` receives.
    pub fn listener(ns: &Netns, dev: &str) -> anyhow::Result<Self> {
        let socket = Self::open(ns, dev, ETH_P_ALL)?;
        // Short, so that `receive` can keep to its deadline.
        let timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: 50_000,
        };
        // SAFETY: a valid socket and a timeval of the size given.
        let rc = unsafe {
            libc::setsockopt(
                socket.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&raw const timeout).cast(),
                size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            bail!("SO_RCVTIMEO: {}", io::Error::last_os_error());
        }
        Ok(socket)
    }

    fn open(ns: &Netns, dev: &str, protocol: u16) -> anyhow::Result<Self> {
        let enter = ns.enter_handle();
        let dev_name = std::ffi::CString::new(dev)?;
        let what = format!("AF_PACKET socket on {dev} in {}", ns.name());
        // A thread of its own enters the namespace, so this one stays put.
        let fd = std::thread::spawn(move || -> anyhow::Result<OwnedFd> {
            enter()?;
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(dev_name.as_ptr()) };
            if ifindex == 0 {
                bail!("no interface: {}", io::Error::last_os_error());
            }
            // SAFETY: plain socket creation; the fd is owned at once.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    i32::from(protocol.to_be()),
                )
            };
            if raw < 0 {
                bail!("socket: {}", io::Error::last_os_error());
            }
            // SAFETY: raw is a new fd nobody else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: sockaddr_ll is plain data; all-zero is valid.
            let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_protocol = protocol.to_be();
            addr.sll_ifindex = ifindex as i32;
            // SAFETY: a valid fd and a sockaddr_ll of the size given.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&raw const addr).cast(),
                    size_of::<libc::sockaddr_ll>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                bail!("bind: {}", io::Error::last_os_error());
            }
            Ok(fd)
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread opening the socket panicked"))?
        .context(what)?;
        Ok(Self { fd })
    }

    /// Sends one whole Ethernet frame.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: a valid fd and buffer; the socket is bound to its device.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next frame the interface received (not one it sent), or None
    /// once `deadline` passes.
    pub fn receive(&self, deadline: Instant) -> Option<Vec<u8>> {
        // GRO may hand over up to 64 KB as one frame.
        let mut buf = vec![0u8; 70_000];
        while Instant::now() < deadline {
            // SAFETY: sockaddr_ll is plain data; all-zero is valid.
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: a valid fd, buffer and address of the sizes given.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&raw mut from).cast(),
                    &raw mut len,
                )
            };
            if n > 0 && from.sll_pkttype != PACKET_OUTGOING {
                buf.truncate(n as usize);
                return Some(buf);
            }
        }
        None
    }

    /// Every frame received until `deadline`, at most `limit` of them.
    pub fn receive_all(&self, deadline: Instant, limit: usize) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        while frames.len() < limit {
            match self.receive(deadline) {
                Some(frame) => frames.push(frame),
                None => break,
            }
        }
        frames
    }
}

/// The MAC address of `dev` in `ns` (`ip -br link`: sysfs would show the
/// caller's namespace).
pub fn mac(ns: &Netns, dev: &str) -> anyhow::Result<[u8; 6]> {
    let out = ns.run("ip", &["-br", "link", "show", "dev", dev])?;
    let text = out
        .split_whitespace()
        .nth(2)
        .with_context(|| format!("no MAC in `{out}`"))?;
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().with_context(|| format!("bad MAC {text}"))?;
        *byte = u8::from_str_radix(part, 16).with_context(|| format!("bad MAC {text}"))?;
    }
    Ok(mac)
}

/// (destination, source) MACs of frames sent out of `from_dev` in `from`
/// to the host whose end of the link is `to_dev` in `to`.
pub fn macs_toward(from: &Netns, from_dev: &str, to: &Netns, to_dev: &str) -> anyhow::Result<Macs> {
    Ok((mac(to, to_dev)?, mac(from, from_dev)?))
}

/// On `edge`, a permanent neighbour entry that sends what goes to `ip`
/// (an address no host owns) out of `dev` to `lladdr`: answers to a
/// spoofed source reach that host's NIC and die there, unanswered.
pub fn deliver_to(edge: &Netns, dev: &str, ip: &str, lladdr: [u8; 6]) -> anyhow::Result<()> {
    let lladdr = lladdr.map(|b| format!("{b:02x}")).join(":");
    edge.run(
        "ip",
        &[
            "neigh",
            "replace",
            ip,
            "lladdr",
            &lladdr,
            "dev",
            dev,
            "nud",
            "permanent",
        ],
    )?;
    Ok(())
}

/// On `edge`, a route for `prefix` (spoofed sources) via `gateway` (a real
/// host, which does not forward and so drops the answers).
pub fn route_to(edge: &Netns, prefix: &str, gateway: &str) -> anyhow::Result<()> {
    edge.run("ip", &["route", "replace", prefix, "via", gateway])?;
    Ok(())
}

/// How much a flood sends: `count` frames at most, `per_second` at most
/// (None: as fast as the socket takes them).
#[derive(Clone, Copy, Debug)]
pub struct Bound {
    pub count: u64,
    pub per_second: Option<u64>,
}

/// A flood running on its own thread.
pub struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    handle: JoinHandle<anyhow::Result<u64>>,
}

impl Flood {
    /// Sends `frames(i)` for i in 0..bound.count out of `dev` in `ns`,
    /// paced to `bound.per_second`, until done or stopped. A full device
    /// queue (ENOBUFS) is waited out, not counted as sent.
    pub fn start(
        ns: &Netns,
        dev: &str,
        bound: Bound,
        mut frames: impl FnMut(u64) -> Vec<u8> + Send + 'static,
    ) -> anyhow::Result<Self> {
        let socket = PacketSocket::sender(ns, dev)?;
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (stop_flag, sent_count) = (stop.clone(), sent.clone());
        let handle = std::thread::spawn(move || {
            let started = Instant::now();
            let mut i = 0;
            while i < bound.count && !stop_flag.load(Ordering::Relaxed) {
                if let Some(rate) = bound.per_second {
                    let due = Duration::from_secs_f64(i as f64 / rate as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait.min(Duration::from_millis(20)));
                        continue;
                    }
                }
                match socket.send(&frames(i)) {
                    Ok(()) => {
                        i += 1;
                        sent_count.store(i, Ordering::Relaxed);
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(e) => return Err(e).context(format!("flood frame {i}")),
                }
            }
            Ok(i)
        });
        Ok(Self { stop, sent, handle })
    }

    /// Frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Whether it is still sending.
    pub fn running(&self) -> bool {
        !self.handle.is_finished()
    }

    /// Waits until `sent() >= n` or the flood ends; whether it got there
    /// still running.
    pub fn wait_sent(&self, n: u64) -> bool {
        while self.sent() < n && self.running() {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.running()
    }

    /// Stops it; what it sent.
    pub fn stop(self) -> anyhow::Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        self.wait()
    }

    /// Waits for it to send its count; what it sent.
    pub fn wait(self) -> anyhow::Result<u64> {
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the flood thread panicked"))?
    }
}

/// A TCP segment with the given sequence and acknowledgement numbers,
/// flags and payload (window 65535, no options), checksums filled in.
pub fn tcp_packet(
    macs: Macs,
    src: SocketAddr,
    dst: SocketAddr,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let mut l4 = packet::tcp_flags(src.port(), dst.port(), flags, payload);
    l4[4..8].copy_from_slice(&seq.to_be_bytes());
    l4[8..12].copy_from_slice(&ack.to_be_bytes());
    packet::with_l4_checksum(packet::ip_frame(macs, src.ip(), dst.ip(), PROTO_TCP, &l4))
}

/// A source port for frame `i`: distinct for 64,512 frames in a row.
fn port_of(i: u64) -> u16 {
    1024 + (i % 64_512) as u16
}

/// `first` + `i % sources`: one of `sources` consecutive IPv4 addresses.
fn source_of(first: Ipv4Addr, sources: u32, i: u64) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(first).wrapping_add((i % u64::from(sources.max(1))) as u32))
}

/// SYNs from one address, each from another source port, to `dst`.
pub fn syns_from_one(macs: Macs, src: IpAddr, dst: SocketAddr) -> impl FnMut(u64) -> Vec<u8> {
    move |i| {
        let src = SocketAddr::new(src, port_of(i));
        tcp_packet(macs, src, dst, SYN, (i as u32).wrapping_mul(7919), 0, b"")
    }
}

/// SYNs from `sources` addresses from `first` on (each address in turn,
/// then the next source port), spread over `dsts` in turn.
pub fn syns_from_many(
    macs: Macs,
    first: Ipv4Addr,
    sources: u32,
    dsts: Vec<SocketAddr>,
) -> impl FnMut(u64) -> Vec<u8> {
    move |i| {
        let src = SocketAddrV4::new(
            source_of(first, sources, i),
            port_of(i / u64::from(sources.max(1))),
        );
        let dst = dsts[(i % dsts.len() as u64) as usize];
        tcp_packet(
            macs,
            src.into(),
            dst,
            SYN,
            (i as u32).wrapping_mul(7919),
            0,
            b"",
        )
    }
}

/// UDP datagrams carrying `payload` from `sources` addresses from `first`
/// on (as [`syns_from_many`]), to `dsts` in turn.
pub fn udp_from_many(
    macs: Macs,
    first: Ipv4Addr,
    sources: u32,
    dsts: Vec<SocketAddr>,
    payload: &'static [u8],
) -> impl FnMut(u64) -> Vec<u8> {
    move |i| {
        // Each destination sees every source and port: divide out both.
        let per_dst = i / dsts.len() as u64;
        let src = (
            source_of(first, sources, per_dst),
            port_of(per_dst / u64::from(sources.max(1))),
        );
        let dst = dsts[(i % dsts.len() as u64) as usize];
        packet::udp_datagram(macs, src, (dst.ip(), dst.port()), payload, true)
    }
}

/// TCP segments, and among them SYNs (without ACK), to one address and
/// port that an interface receives, recorded on a thread of its own until stopped: what reached a
/// host. Bounded: it keeps at most `limit` distinct SYNs and stops reading
/// at its deadline.
pub struct SynCapture {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<SynsSeen>,
}

/// What a [`SynCapture`] saw.
#[derive(Debug, Default)]
pub struct SynsSeen {
    /// TCP segments of any kind to the address and port.
    pub tcp: u64,
    /// SYNs, retransmissions included.
    pub syns: u64,
    /// Distinct (source, sequence number): connection attempts.
    pub attempts: std::collections::BTreeSet<(SocketAddr, u32)>,
    /// Frames of any kind the interface received.
    pub frames: u64,
}

impl SynCapture {
    /// Listens on `dev` in `ns` for SYNs to `dst` until stopped, or until
    /// `limit` (a hang guard) passes.
    pub fn start(ns: &Netns, dev: &str, dst: SocketAddr, limit: Duration) -> anyhow::Result<Self> {
        const MAX_ATTEMPTS: usize = 1_000_000;
        let socket = PacketSocket::listener(ns, dev)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            let mut seen = SynsSeen::default();
            while !stop_flag.load(Ordering::Relaxed) && Instant::now() < deadline {
                // Short reads, so that a stop is noticed at once.
                let Some(frame) = socket.receive(Instant::now() + Duration::from_millis(100))
                else {
                    continue;
                };
                seen.frames += 1;
                if let Some(Seen::Tcp {
                    src,
                    dst: to,
                    flags,
                    seq,
                    ..
                }) = parse(&frame)
                    && to == dst
                {
                    seen.tcp += 1;
                    if flags & (SYN | ACK) == SYN {
                        seen.syns += 1;
                        if seen.attempts.len() < MAX_ATTEMPTS {
                            seen.attempts.insert((src, seq));
                        }
                    }
                }
            }
            seen
        });
        Ok(Self { stop, handle })
    }

    /// Stops it; what it saw.
    pub fn stop(self) -> anyhow::Result<SynsSeen> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle
            .join()
            .map_err(|_| anyhow::anyhow!("the capture thread panicked"))
    }
}

/// What a received IPv4 frame carries, as far as these tests care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Seen {
    Tcp {
        src: SocketAddr,
        dst: SocketAddr,
        flags: u8,
        seq: u32,
        ack: u32,
        payload: Vec<u8>,
    },
    Udp {
        src: SocketAddr,
        dst: SocketAddr,
    },
    /// An ICMP message (type, code) from `src`.
    Icmp {
        src: IpAddr,
        kind: u8,
        code: u8,
    },
}

/// Parses an untagged IPv4 frame (anything else: None).
pub fn parse(frame: &[u8]) -> Option<Seen> {
    if frame.len() < 34 || frame[12..14] != packet::ETH_P_IPV4.to_be_bytes() {
        return None;
    }
    let ip = &frame[14..];
    let header = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    if header < 20 || total < header {
        return None;
    }
    let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let l4 = &ip[header..total];
    let port = |at: usize| u16::from_be_bytes([l4[at], l4[at + 1]]);
    let word = |at: usize| u32::from_be_bytes([l4[at], l4[at + 1], l4[at + 2], l4[at + 3]]);
    match ip[9] {
        PROTO_TCP if l4.len() >= 20 => {
            let data = (usize::from(l4[12] >> 4) * 4).min(l4.len());
            Some(Seen::Tcp {
                src: SocketAddr::new(src_ip.into(), port(0)),
                dst: SocketAddr::new(dst_ip.into(), port(2)),
                flags: l4[13],
                seq: word(4),
                ack: word(8),
                payload: l4[data..].to_vec(),
            })
        }
        PROTO_UDP if l4.len() >= 8 => Some(Seen::Udp {
            src: SocketAddr::new(src_ip.into(), port(0)),
            dst: SocketAddr::new(dst_ip.into(), port(2)),
        }),
        PROTO_ICMP if l4.len() >= 2 => Some(Seen::Icmp {
            src: src_ip.into(),
            kind: l4[0],
            code: l4[1],
        }),
        _ => None,
    }
}

/// A TCP client written by hand: AF_PACKET in and out, from an address its
/// host does not own (see the module comment), so the test knows and picks
/// every sequence number. IPv4, no options, one segment at a time.
pub struct RawTcp {
    socket: PacketSocket,
    macs: Macs,
    local: SocketAddr,
    remote: SocketAddr,
    snd_nxt: u32,
    rcv_nxt: u32,
    received: Vec<u8>,
    reset: bool,
    syns_after_handshake: u32,
}

impl RawTcp {
    /// The three-way handshake from `local` to `remote` out of `dev` in
    /// `ns`; `limit` bounds the wait for the SYN-ACK (a hang guard).
    pub fn connect(
        ns: &Netns,
        dev: &str,
        macs: Macs,
        local: SocketAddr,
        remote: SocketAddr,
        limit: Duration,
    ) -> anyhow::Result<Self> {
        let socket = PacketSocket::listener(ns, dev)?;
        let iss = 0x1000_0000 ^ std::process::id().wrapping_mul(2_654_435_761);
        let mut tcp = Self {
            socket,
            macs,
            local,
            remote,
            snd_nxt: iss,
            rcv_nxt: 0,
            received: Vec::new(),
            reset: false,
            syns_after_handshake: 0,
        };
        let deadline = Instant::now() + limit;
        // The SYN again every second until answered: the first one may
        // meet a flow table or neighbour still settling.
        let mut resend = Instant::now();
        loop {
            if Instant::now() >= resend {
                tcp.segment(SYN, iss, 0, b"")?;
                resend = Instant::now() + Duration::from_secs(1);
            }
            if Instant::now() > deadline {
                bail!("no SYN-ACK from {remote} to {local} within {limit:?}");
            }
            let Some(frame) = tcp.socket.receive(resend.min(deadline)) else {
                continue;
            };
            if let Some(Seen::Tcp {
                flags, seq, ack, ..
            }) = tcp.ours(&frame)
                && flags & (SYN | ACK) == SYN | ACK
                && ack == iss.wrapping_add(1)
            {
                tcp.snd_nxt = ack;
                tcp.rcv_nxt = seq.wrapping_add(1);
                break;
            }
        }
        tcp.segment(ACK, tcp.snd_nxt, tcp.rcv_nxt, b"")?;
        Ok(tcp)
    }

    /// The frame, parsed, when it is a segment of this connection.
    fn ours(&self, frame: &[u8]) -> Option<Seen> {
        match parse(frame)? {
            seen @ Seen::Tcp { src, dst, .. } if src == self.remote && dst == self.local => {
                Some(seen)
            }
            _ => None,
        }
    }

    fn segment(&self, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> anyhow::Result<()> {
        let frame = tcp_packet(self.macs, self.local, self.remote, flags, seq, ack, payload);
        self.socket.send(&frame).context("sending a segment")
    }

    /// The next sequence number this side sends.
    pub fn snd_nxt(&self) -> u32 {
        self.snd_nxt
    }

    /// Sends `data` (one segment, PSH|ACK) in sequence.
    pub fn send(&mut self, data: &[u8]) -> anyhow::Result<()> {
        self.segment(PSH | ACK, self.snd_nxt, self.rcv_nxt, data)?;
        self.snd_nxt = self.snd_nxt.wrapping_add(data.len() as u32);
        Ok(())
    }

    /// Sends `data` again, as the last segment [`RawTcp::send`] sent it
    /// (the same sequence number): what a client whose segment was
    /// dropped does.
    pub fn retransmit(&self, data: &[u8]) -> anyhow::Result<()> {
        let seq = self.snd_nxt.wrapping_sub(data.len() as u32);
        self.segment(PSH | ACK, seq, self.rcv_nxt, data)
    }

    /// A RST (no ACK) with sequence number `seq`.
    pub fn send_rst(&self, seq: u32) -> anyhow::Result<()> {
        self.segment(RST, seq, 0, b"")
    }

    /// Reads (acknowledging in-order data) until what arrived contains
    /// `needle`, the peer resets, or `limit` passes; whether it arrived.
    pub fn read_until(&mut self, needle: &[u8], limit: Duration) -> anyhow::Result<bool> {
        let deadline = Instant::now() + limit;
        while !self.has(needle) && !self.reset {
            let Some(frame) = self.socket.receive(deadline) else {
                break;
            };
            let Some(Seen::Tcp {
                flags,
                seq,
                payload,
                ..
            }) = self.ours(&frame)
            else {
                continue;
            };
            if flags & RST != 0 {
                self.reset = true;
            } else if flags & SYN != 0 {
                self.syns_after_handshake += 1;
            } else if !payload.is_empty() && seq == self.rcv_nxt {
                self.received.extend_from_slice(&payload);
                self.rcv_nxt = self.rcv_nxt.wrapping_add(payload.len() as u32);
                self.segment(ACK, self.snd_nxt, self.rcv_nxt, b"")?;
            } else if !payload.is_empty() {
                // Out of order or a retransmission: say where we are.
                self.segment(ACK, self.snd_nxt, self.rcv_nxt, b"")?;
            }
        }
        Ok(self.has(needle))
    }

    fn has(&self, needle: &[u8]) -> bool {
        self.received.windows(needle.len()).any(|w| w == needle)
    }

    /// Sends `line` and a newline; whether it came back (the echo origin)
    /// within `limit`, after what came before.
    pub fn echo(&mut self, line: &str, limit: Duration) -> anyhow::Result<bool> {
        self.received.clear();
        let data = format!("{line}\n");
        self.send(data.as_bytes())?;
        self.read_until(data.as_bytes(), limit)
    }

    /// Everything received since the last [`RawTcp::echo`].
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    /// Whether the peer (or something on its behalf) sent a RST.
    pub fn was_reset(&self) -> bool {
        self.reset
    }

    /// SYNs this connection received after its handshake.
    pub fn syns_after_handshake(&self) -> u32 {
        self.syns_after_handshake
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACS: Macs = packet::DEFAULT_MACS;

    #[test]
    fn a_crafted_segment_parses_back_with_verified_checksums() {
        let src: SocketAddr = "10.0.1.60:40000".parse().unwrap();
        let dst: SocketAddr = "10.0.100.1:7000".parse().unwrap();
        let frame = tcp_packet(MACS, src, dst, RST | ACK, 0xdead_beef, 7, b"hi");
        assert!(packet::checksums_verify(&frame));
        assert_eq!(
            parse(&frame),
            Some(Seen::Tcp {
                src,
                dst,
                flags: RST | ACK,
                seq: 0xdead_beef,
                ack: 7,
                payload: b"hi".to_vec(),
            })
        );
    }

    #[test]
    fn floods_vary_sources_as_they_say() {
        let dst: SocketAddr = "10.0.100.1:7000".parse().unwrap();
        let mut one = syns_from_one(MACS, "10.0.1.50".parse().unwrap(), dst);
        let ports: std::collections::HashSet<_> = (0..1000)
            .map(|i| match parse(&one(i)) {
                Some(Seen::Tcp { src, flags, .. }) => {
                    assert_eq!(flags, SYN);
                    assert_eq!(src.ip().to_string(), "10.0.1.50");
                    src.port()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(ports.len(), 1000);

        let mut many = syns_from_many(MACS, Ipv4Addr::new(10, 1, 0, 0), 100, vec![dst]);
        let sources: std::collections::HashSet<_> = (0..1000)
            .map(|i| match parse(&many(i)) {
                Some(Seen::Tcp { src, .. }) => src,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sources.len(), 1000, "every (address, port) once");

        let dsts: Vec<SocketAddr> = vec![dst, "10.0.100.2:5000".parse().unwrap()];
        let mut udp = udp_from_many(MACS, Ipv4Addr::new(10, 1, 0, 0), 10, dsts, b"x");
        let tuples: std::collections::HashSet<_> = (0..200)
            .map(|i| match parse(&udp(i)) {
                Some(Seen::Udp { src, dst }) => (src, dst),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(tuples.len(), 200);
    }
}
