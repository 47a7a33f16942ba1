//! Checks before touching the kernel, each failing with one clear sentence.
use std::{ffi::CString, path::Path};

use anyhow::{Context as _, bail};

/// bpffs magic number (`BPF_FS_MAGIC` in linux/magic.h).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub fn require_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "proxy-agent run needs root (CAP_BPF, CAP_NET_ADMIN) to load and attach XDP: \
             run it as root or with sudo"
        );
    }
    Ok(())
}

/// The interface index of `name`, or an error naming the config field.
pub fn interface_index(name: &str, field: &str) -> anyhow::Result<u32> {
    let c_name = CString::new(name)?;
    // SAFETY: c_name is a valid NUL-terminated string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    if index == 0 {
        bail!(
            "interface {name:?} ({field}) does not exist in this network namespace \
             (see `ip link`)"
        );
    }
    Ok(index)
}

/// Fails unless `dir` is a mounted bpf filesystem.
pub fn require_bpffs(dir: &Path) -> anyhow::Result<()> {
    let c_dir = CString::new(dir.as_os_str().as_encoded_bytes())?;
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_dir is NUL-terminated and fs is a valid out pointer.
    let rc = unsafe { libc::statfs(c_dir.as_ptr(), &mut fs) };
    if rc != 0 || fs.f_type as i64 != BPF_FS_MAGIC {
        bail!(
            "no bpf filesystem is mounted at {} (needed to publish counters): \
             mount it with `mount -t bpf bpf {}`",
            dir.display(),
            dir.display()
        );
    }
    Ok(())
}

/// An instance name is one path component under bpffs and /run.
pub fn check_instance_name(instance: &str) -> anyhow::Result<()> {
    let valid = !instance.is_empty()
        && instance.len() <= 64
        && instance != "."
        && instance != ".."
        && instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        bail!(
            "--instance {instance:?}: use 1-64 letters, digits, '-', '_' or '.' \
             (it names a directory)"
        );
    }
    Ok(())
}

/// Holds `/run/proxy-agent/<instance>.lock` for the life of the returned
/// file: a second agent with the same instance stops here instead of
/// taking over the first one's pinned counters.
pub fn lock_instance(instance: &str) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(RUN_DIR)?;
    let path = Path::new(RUN_DIR).join(format!("{instance}.lock"));
    lock(&path).with_context(|| {
        format!(
            "another proxy-agent runs with --instance {instance} (lock {} is held)",
            path.display()
        )
    })
}

/// Holds `<lease file>.lock` for the life of the returned file: two agents
/// given one `edge.address_pool.state_file` would overwrite each other's
/// leases.
pub fn lock_leases(lease_file: &Path) -> anyhow::Result<std::fs::File> {
    let mut name = lease_file.as_os_str().to_owned();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    lock(&path).with_context(|| {
        format!(
            "another proxy-agent uses the edge address leases {} (lock {} is held); \
             give each agent its own edge.address_pool.state_file",
            lease_file.display(),
            path.display()
        )
    })
}

/// An exclusive, non-blocking flock on `path` (created if need be). The
/// file is opened without following a symlink and never truncated, and
/// must be a regular file: a link planted at the lock's name (in a
/// directory others can write, e.g. beside a state file) cannot make the
/// root agent create or clobber the file it points to.
fn lock(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .map_err(crate::files::FileError::from)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        bail!("the lock file {} is not a regular file", path.display());
    }
    // SAFETY: a valid fd owned by `file`.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        bail!("{}", std::io::Error::last_os_error());
    }
    Ok(file)
}

/// Where the agents keep their locks and the app ids they run.
const RUN_DIR: &str = "/run/proxy-agent";

/// The (slot, app id) pairs of the agent running `instance`: `apps` and
/// `stats` name counters by them even after the config file was edited or
/// the API changed apps.
pub fn running_apps_path(instance: &str) -> std::path::PathBuf {
    Path::new(RUN_DIR).join(format!("{instance}.apps.json"))
}

/// Records the running apps' slots and ids (best effort: only the
/// counters' names depend on it), atomically so a reader never sees half.
pub fn write_running_apps(instance: &str, config: &crate::config::Config) {
    let pairs: Vec<(u32, String)> = config
        .apps
        .iter()
        .map(|a| (a.slot, a.id.to_string()))
        .collect();
    let path = running_apps_path(instance);
    let written = serde_json::to_string(&pairs)
        .map_err(std::io::Error::other)
        .and_then(|text| crate::config::write_atomically(&path, text.as_bytes(), 0o644));
    if let Err(err) = written {
        tracing::warn!(
            "writing {}: {err}; `apps` may misname counters",
            path.display()
        );
    }
}

/// The running agent's (slot, app id) pairs, or None when no agent wrote
/// them.
pub fn read_running_apps(instance: &str) -> anyhow::Result<Option<Vec<(u32, String)>>> {
    let path = running_apps_path(instance);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("the running agent's app list {}", path.display())),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("reading {}", path.display())),
    }
}

/// Raises the open-file limit to its hard limit: every TCP-path connection
/// holds two descriptors and every UDP flow one, and a service manager's
/// soft limit (often 1024) would cap them long before the configured
/// limits. Logs the limit in force.
pub fn raise_open_files() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !read {
        return tracing::warn!("reading the open-file limit failed");
    }
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            tracing::warn!(
                "raising the open-file limit failed: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    tracing::info!(open_files = limit.rlim_cur, "open-file limit");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_single_components() {
        for good in ["default", "edge-1", "a.b_c"] {
            assert!(check_instance_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "../etc", "a/b", "a b"] {
            assert!(check_instance_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_symlink_at_the_lock_name_is_not_followed() {
        let dir = std::env::temp_dir().join(format!("proxy-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let leases = dir.join("leases.json");
        std::os::unix::fs::symlink(&target, dir.join("leases.json.lock")).unwrap();
        let err = format!("{:#}", lock_leases(&leases).unwrap_err());
        assert!(err.contains("symlink"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
        // A dangling link is not created through either.
        let missing = dir.join("created-through-link");
        std::os::unix::fs::symlink(&missing, dir.join("other.json.lock")).unwrap();
        assert!(lock_leases(&dir.join("other.json")).is_err());
        assert!(!missing.exists());
        // A plain lock file works, and a second holder is refused.
        let held = lock_leases(&dir.join("plain.json")).unwrap();
        assert!(lock_leases(&dir.join("plain.json")).is_err());
        drop(held);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
