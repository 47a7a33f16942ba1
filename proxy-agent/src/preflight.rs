//! Checks before touching the kernel, each failing with one clear sentence.
use std::{ffi::CString, path::Path};

use anyhow::bail;

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
