//! Kernel settings the agent changes for as long as it runs, put back
//! when it stops.
//!
//! `net.ipv4.tcp_syncookies` (per network namespace, for IPv4 and IPv6):
//! the agent's own TCP path (TLS, PROXY-header apps) is a socket
//! listener, so a SYN flood against it is the kernel's to absorb, with its
//! SYN cookies; with them off, a full SYN queue drops legitimate clients.
//! The fast path's SYN proxy does not depend on it (it calls the cookie
//! helpers itself).
//!
//! `net.ipv4.conf.<interface>.accept_local` on each XDP interface: see
//! [`allow_local_source`]. Each change is a [`Restore`] its owner keeps
//! for as long as the setting is needed, so a clean exit leaves the host
//! as the agent found it.
use std::{fs, path::PathBuf};

use tracing::{info, warn};

const TCP_SYNCOOKIES: &str = "/proc/sys/net/ipv4/tcp_syncookies";

/// A setting changed at start: written back as it was when dropped.
#[derive(Debug)]
pub struct Restore {
    path: PathBuf,
    before: String,
}

impl Drop for Restore {
    fn drop(&mut self) {
        match fs::write(&self.path, &self.before) {
            Ok(()) => {
                info!(path = %self.path.display(), value = %self.before, "kernel setting put back")
            }
            Err(err) => {
                warn!(path = %self.path.display(), %err, "could not put a kernel setting back")
            }
        }
    }
}

/// Sets `path` to `value` when it reads `off`; what to put back then
/// (None: it was something else, left alone). Errors: unreadable or not
/// writable.
fn set_when(path: PathBuf, off: &str, value: &str) -> std::io::Result<Option<Restore>> {
    let before = fs::read_to_string(&path)?.trim().to_string();
    if before != off {
        return Ok(None);
    }
    fs::write(&path, value)?;
    Ok(Some(Restore { path, before }))
}

/// `tcp_syncookies` 1 (cookies once the SYN queue overflows) when it is
/// 0, said once; 1 and 2 (always) are left as they are.
pub fn enable_syncookies() -> Option<Restore> {
    match set_when(PathBuf::from(TCP_SYNCOOKIES), "0", "1") {
        Ok(Some(restore)) => {
            info!(
                "net.ipv4.tcp_syncookies was 0: set to 1 while the agent runs, so a SYN flood at the agent's TCP path gets the kernel's SYN cookies"
            );
            Some(restore)
        }
        Ok(None) => None,
        Err(err) => {
            warn!(%err, "could not read or set net.ipv4.tcp_syncookies: the agent's TCP path may have no SYN cookies under a SYN flood");
            None
        }
    }
}

/// Rewritten packets whose next hop is not resolved yet go up the kernel's
/// forwarding path with the edge's own address as source; IPv4 drops such
/// packets as martians unless `accept_local` is set on the interface. Set
/// to 1 when it is 0 (what to put back then); anything else is left.
pub fn allow_local_source(interface: &str) -> Option<Restore> {
    // A name with a slash or dots would leave the interface's directory.
    if interface.is_empty() || interface.contains('/') || interface.starts_with('.') {
        warn!(interface, "not an interface name: accept_local left alone");
        return None;
    }
    let path = PathBuf::from(format!("/proc/sys/net/ipv4/conf/{interface}/accept_local"));
    match set_when(path, "0", "1") {
        Ok(Some(restore)) => {
            info!(
                interface,
                "accept_local=1 while the agent runs (fast-path packets awaiting ARP)"
            );
            Some(restore)
        }
        Ok(None) => None,
        Err(err) => {
            warn!(interface, %err, "could not set accept_local: the first packet of a flow to an unresolved neighbour may be lost");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_setting_found_off_is_set_and_put_back_others_are_left_alone() {
        let dir = std::env::temp_dir().join(format!("sysctl-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tcp_syncookies");
        fs::write(&path, "0\n").unwrap();
        let restore = set_when(path.clone(), "0", "1").unwrap().expect("changed");
        assert_eq!(fs::read_to_string(&path).unwrap(), "1");
        drop(restore);
        assert_eq!(fs::read_to_string(&path).unwrap(), "0");
        for other in ["1\n", "2\n"] {
            fs::write(&path, other).unwrap();
            assert!(set_when(path.clone(), "0", "1").unwrap().is_none());
            assert_eq!(fs::read_to_string(&path).unwrap(), other, "untouched");
        }
        assert!(set_when(dir.join("missing"), "0", "1").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
