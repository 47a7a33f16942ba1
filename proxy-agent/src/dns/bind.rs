//! The listen sockets: UDP and TCP on one address and port, and
//! `IPV6_FREEBIND` for pool addresses that are local only through AnyIP.

use std::net::{IpAddr, SocketAddr};

use crate::config;

/// Whether listen address `addr` is bound with `IPV6_FREEBIND`: a
/// specific IPv6 address (not `::`) inside the edge pool's IPv6 prefix.
/// Such an address may be local only through an AnyIP route (`ip -6 route
/// add local <pool> dev lo`), which IPv6, unlike IPv4, refuses to bind
/// (EADDRNOTAVAIL). Any other address binds only if it is configured, so
/// that a typo fails loudly.
pub fn needs_freebind(addr: SocketAddr, pool: &config::AddressPool) -> bool {
    match addr.ip() {
        IpAddr::V6(ip) => !ip.is_unspecified() && pool.ipv6.is_some_and(|net| net.contains(&ip)),
        IpAddr::V4(_) => false,
    }
}

/// A UDP socket and a TCP listener on the same address and port; for port
/// 0, a port free for both. `freebind`: see [`needs_freebind`].
pub(super) fn bind_pair(
    addr: SocketAddr,
    freebind: bool,
) -> Result<(std::net::UdpSocket, std::net::TcpListener, SocketAddr), String> {
    const ATTEMPTS: usize = 16;
    for attempt in 1..=ATTEMPTS {
        let udp = bind_udp(addr, freebind).map_err(|e| format!("cannot bind UDP: {e}"))?;
        let local = udp
            .local_addr()
            .map_err(|e| format!("cannot read the UDP address: {e}"))?;
        match bind_tcp(local, freebind) {
            Ok(tcp) => return Ok((udp, tcp, local)),
            // The kernel's free UDP port may be a busy TCP one: try another.
            Err(e)
                if addr.port() == 0
                    && e.kind() == std::io::ErrorKind::AddrInUse
                    && attempt < ATTEMPTS => {}
            Err(e) => return Err(format!("cannot bind TCP: {e}")),
        }
    }
    Err("cannot find a port free for both UDP and TCP".to_string())
}

fn socket_for(
    addr: SocketAddr,
    ty: socket2::Type,
    freebind: bool,
) -> std::io::Result<socket2::Socket> {
    let protocol = if ty == socket2::Type::DGRAM {
        socket2::Protocol::UDP
    } else {
        socket2::Protocol::TCP
    };
    let socket = socket2::Socket::new(socket2::Domain::for_address(addr), ty, Some(protocol))?;
    // `[::]` must not take IPv4's port too: `0.0.0.0` may be listed as well.
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    if freebind {
        set_freebind_v6(&socket)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// `IPV6_FREEBIND` on an IPv6 socket: it may bind an address that is not
/// (yet) local. (socket2's `set_freebind_v6` needs its `all` feature,
/// which this crate does not ask for.)
fn set_freebind_v6(socket: &socket2::Socket) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket descriptor, and an option value that lives
    // through the call with its exact size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_IPV6,
            libc::IPV6_FREEBIND,
            (&raw const one).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn bind_udp(addr: SocketAddr, freebind: bool) -> std::io::Result<std::net::UdpSocket> {
    let socket = socket_for(addr, socket2::Type::DGRAM, freebind)?;
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

fn bind_tcp(addr: SocketAddr, freebind: bool) -> std::io::Result<std::net::TcpListener> {
    let socket = socket_for(addr, socket2::Type::STREAM, freebind)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}
