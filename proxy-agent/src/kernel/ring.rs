//! Ring buffers the kernel fills (the XDP program's aya-log records, block
//! events): a task drains one each time its fd is readable.
use std::os::fd::AsRawFd;

use tokio::io::{Interest, unix::AsyncFd};
use tracing::warn;

/// Spawns a task that calls `drain` on `ring` whenever it is readable;
/// `what` names it in the log if the reader stops.
pub fn spawn_drain<T: AsRawFd + Send + Sync + 'static>(
    ring: T,
    what: &'static str,
    mut drain: impl FnMut(&mut T) + Send + 'static,
) -> std::io::Result<()> {
    // SAFETY: the ring owns its fd and keeps it open, and unchanged, for as
    // long as it lives inside the AsyncFd.
    let mut fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE)? };
    tokio::spawn(async move {
        loop {
            let mut guard = match fd.readable_mut().await {
                Ok(guard) => guard,
                Err(err) => {
                    warn!(%err, "{what} reader stopped");
                    return;
                }
            };
            drain(guard.get_inner_mut());
            guard.clear_ready();
        }
    });
    Ok(())
}
