//! The one way the agent reads a file the config names (certificates, keys,
//! CA bundles) and stores PEM the API hands it.
//!
//! The agent runs as root, so a path is opened the way a hostile one would
//! be harmless: without following a symlink at its last component
//! (`O_NOFOLLOW`), without blocking on a FIFO or device (`O_NONBLOCK`),
//! accepted only when `fstat` on the open file says regular, and read only
//! up to a bound. Reads run on tokio's blocking pool with a timeout when a
//! multi-threaded runtime is there, so a stalled filesystem costs the
//! control loop at most [`READ_TIMEOUT`]. Errors say which file and what is
//! wrong, never what is in it.
use std::{
    fmt,
    fs::File,
    io::{self, Read as _, Write as _},
    os::unix::fs::{
        DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
    },
    path::{Path, PathBuf},
    time::Duration,
};

/// The largest PEM file (certificate chain, key, CA bundle) read: a CA
/// bundle of the whole web PKI is about 200 KiB.
pub const PEM_LIMIT: u64 = 1 << 20;

/// How long one read may keep the control loop waiting (a hung NFS or FUSE
/// mount); generous, a local read takes microseconds.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// What is wrong with a file; its Display never carries the file's content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileError {
    #[error("not found")]
    NotFound,
    #[error("is a symlink, which is refused: name the file itself")]
    Symlink,
    #[error("not a regular file")]
    NotRegular,
    #[error("larger than the {limit}-byte limit ({} KiB)", .limit / 1024)]
    TooLarge { limit: u64 },
    #[error("permission denied")]
    PermissionDenied,
    #[error("reading it did not finish within {} s", READ_TIMEOUT.as_secs())]
    TimedOut,
    #[error("cannot read it: {0}")]
    Io(String),
}

impl From<io::Error> for FileError {
    fn from(err: io::Error) -> Self {
        match err.kind() {
            io::ErrorKind::NotFound => FileError::NotFound,
            io::ErrorKind::PermissionDenied => FileError::PermissionDenied,
            // O_NOFOLLOW on a symlink.
            _ if err.raw_os_error() == Some(libc::ELOOP) => FileError::Symlink,
            // An io::Error's text is the OS's (errno), never file content.
            _ => FileError::Io(err.to_string()),
        }
    }
}

/// Opens `path` for reading as a regular file of at most `limit` bytes.
fn open_regular(path: &Path, limit: u64) -> Result<File, FileError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(FileError::NotRegular);
    }
    if meta.len() > limit {
        return Err(FileError::TooLarge { limit });
    }
    Ok(file)
}

/// Whether `path` would be read: a regular file, no symlink, at most
/// `limit` bytes. Opens it (never blocks on a FIFO) but reads nothing.
pub fn check_regular(path: &Path, limit: u64) -> Result<(), FileError> {
    open_regular(path, limit).map(drop)
}

/// The bytes of `path`, read as [`check_regular`] says, on this thread.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let file = open_regular(path, limit)?;
    let mut bytes = Vec::new();
    // The file may grow after fstat: never read more than the limit.
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(FileError::TooLarge { limit });
    }
    Ok(bytes)
}

/// [`read_regular`] on tokio's blocking pool with [`READ_TIMEOUT`] when
/// called from a multi-threaded runtime (the agent); on this thread
/// otherwise (tools, tests). A read that times out is left to finish on
/// its pool thread.
pub fn read_off_loop(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    use tokio::runtime::{Handle, RuntimeFlavor};
    let handle = match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => handle,
        _ => return read_regular(path, limit),
    };
    let owned = path.to_path_buf();
    tokio::task::block_in_place(|| {
        handle.block_on(async move {
            let read = tokio::task::spawn_blocking(move || read_regular(&owned, limit));
            match tokio::time::timeout(READ_TIMEOUT, read).await {
                Ok(Ok(result)) => result,
                Ok(Err(join)) => Err(FileError::Io(format!("the read failed: {join}"))),
                Err(_) => Err(FileError::TimedOut),
            }
        })
    })
}

/// A file with `path` named: "<what> file <path>: <problem>".
pub struct NamedFileError<'a> {
    pub what: &'a str,
    pub path: &'a Path,
    pub problem: &'a dyn fmt::Display,
}

impl fmt::Display for NamedFileError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} file {}: {}",
            self.what,
            self.path.display(),
            self.problem
        )
    }
}

/// Stores `bytes` as `<dir>/<sha256 of bytes>.pem`, mode 0600, in a
/// directory made 0700 if need be, and returns its path. The name is the
/// content's, so a file the running config uses is never rewritten: the
/// same content lands on the same name, other content on another.
pub fn store_private(dir: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::symlink_metadata(dir)?;
    if !meta.file_type().is_dir() {
        return Err(io::Error::other(format!(
            "{} is not a directory (a symlink is refused)",
            dir.display()
        )));
    }
    if meta.uid() != euid() || meta.mode() & 0o077 != 0 {
        return Err(io::Error::other(format!(
            "{} must belong to this user and be closed to group and others (mode 0700)",
            dir.display()
        )));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let name: String = digest
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let path = dir.join(format!("{name}.pem"));
    if read_regular(&path, PEM_LIMIT).is_ok_and(|stored| stored == bytes) {
        return Ok(path);
    }
    write_private(&path, bytes)?;
    Ok(path)
}

/// Writes `bytes` to `path` through a random, exclusively created temp file
/// in its directory, mode 0600 from creation, then renames it in place.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let mut file = tempfile::Builder::new()
        .prefix(".pem.")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|err| err.error)?;
    File::open(dir)?.sync_all()
}

/// The directory `path` is in ("." for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("proxy-files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn devices_fifos_symlinks_and_big_files_are_refused_without_reading() {
        let dir = temp_dir("refused");
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let key = dir.join("key.pem");
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nsecret\n").unwrap();
        let link = dir.join("link.pem");
        std::os::unix::fs::symlink(&key, &link).unwrap();
        let big = dir.join("big.pem");
        std::fs::write(&big, vec![b'a'; 2048]).unwrap();
        // A FIFO without a writer would block a plain open forever.
        let cases: [(&Path, u64, FileError); 6] = [
            (Path::new("/dev/zero"), PEM_LIMIT, FileError::NotRegular),
            (Path::new("/dev/urandom"), PEM_LIMIT, FileError::NotRegular),
            (&fifo, PEM_LIMIT, FileError::NotRegular),
            (&link, PEM_LIMIT, FileError::Symlink),
            (&big, 1024, FileError::TooLarge { limit: 1024 }),
            (&dir.join("missing"), PEM_LIMIT, FileError::NotFound),
        ];
        for (path, limit, want) in cases {
            assert_eq!(
                read_regular(path, limit),
                Err(want.clone()),
                "{}",
                path.display()
            );
            assert_eq!(check_regular(path, limit), Err(want), "{}", path.display());
        }
        assert!(read_regular(&key, PEM_LIMIT).is_ok());
        let text =
            FileError::Symlink.to_string() + &FileError::TooLarge { limit: PEM_LIMIT }.to_string();
        assert!(!text.contains("secret"));
        assert!(text.contains("1024 KiB"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_off_the_loop_in_a_multi_threaded_runtime() {
        let dir = temp_dir("offloop");
        let file = dir.join("a.pem");
        std::fs::write(&file, "pem").unwrap();
        assert_eq!(read_off_loop(&file, PEM_LIMIT).unwrap(), b"pem");
        assert_eq!(
            read_off_loop(Path::new("/dev/zero"), PEM_LIMIT),
            Err(FileError::NotRegular)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn stored_pem_is_private_and_named_by_its_content() {
        let dir = temp_dir("store").join("tls");
        let a = store_private(&dir, b"one").unwrap();
        let again = store_private(&dir, b"one").unwrap();
        let b = store_private(&dir, b"two").unwrap();
        assert_eq!(a, again);
        assert_ne!(a, b);
        assert_eq!(std::fs::read(&a).unwrap(), b"one");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&a), 0o600);
        assert_eq!(mode(&dir), 0o700);
        let leftovers = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(leftovers, 2, "no temp files stay");
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}
