//! Kernel settings the agent changes for as long as it runs, put back
//! when it stops.
//!
//! `net.ipv4.tcp_syncookies` (per network namespace, for IPv4 and IPv6):
//! the agent's own TCP path (TLS, PROXY-header apps) is a socket
//! listener, so a SYN flood against it is the kernel's to absorb, with its
//! SYN cookies; with them off, a full SYN queue drops legitimate clients.
//! The fast path's SYN proxy does not depend on it (it calls the cookie
//! helpers itself).
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
