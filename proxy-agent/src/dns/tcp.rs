//! DNS over TCP, served here rather than by hickory's listener, which has
//! no bound on connections: at most `max` at once (one over it is closed
//! at once and counted), each closed after [`TCP_TIMEOUT`] without a full
//! query, and every reply written within the same time. Queries on one
//! connection are answered in order, one at a time (RFC 7766 allows it).
use std::{net::SocketAddr, sync::Arc, time::Duration};

use hickory_server::net::xfer::Protocol;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
    time::timeout,
};
use tracing::{debug, warn};

use super::counts::Limited;
use super::handler::Authority;
use crate::proxy::routes::Throttle;

/// A TCP connection that sends no query for this long is closed; a reply
/// that cannot be written in it, likewise.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts on `listener` until `stop` turns true; connections in progress
/// end with their next timeout or query.
pub(super) async fn serve(
    listener: TcpListener,
    authority: Authority,
    max: usize,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(max));
    let refused = Throttle::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of descriptors and the like: back off.
                    debug!(%err, "DNS server: TCP accept");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            authority.answers().count_limited(Limited::TcpRefused);
            if let Some(skipped) = refused.allow() {
                warn!(client = %peer, limit = max, skipped, "DNS server: over the TCP connection limit: closed");
            }
            drop(stream);
            continue;
        };
        let authority = authority.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            connection(stream, peer, &authority, stop).await;
            drop(slot);
        });
    }
}

async fn connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    authority: &Authority,
    stop: watch::Receiver<bool>,
) {
    let mut query = Vec::new();
    loop {
        if *stop.borrow() {
            return;
        }
        let mut len = [0u8; 2];
        let read = async {
            stream.read_exact(&mut len).await?;
            query.resize(usize::from(u16::from_be_bytes(len)), 0);
            stream.read_exact(&mut query).await
        };
        match timeout(TCP_TIMEOUT, read).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return debug!(client = %peer, %err, "DNS over TCP: closed"),
            Err(_) => return debug!(client = %peer, "DNS over TCP: idle, closed"),
        }
        let Some(reply) = authority.answer_over(&query, peer, Protocol::Tcp).await else {
            continue;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            continue;
        };
        let write = async {
            stream.write_all(&reply_len.to_be_bytes()).await?;
            stream.write_all(&reply).await
        };
        if !matches!(timeout(TCP_TIMEOUT, write).await, Ok(Ok(()))) {
            return debug!(client = %peer, "DNS over TCP: reply not taken, closed");
        }
    }
}
