//! Test harness: network namespaces joined by veth pairs
//! (`cli` -- `edge` -- `org`), processes inside them, and the agent.
//!
//! Everything created here is removed by guards on drop, also when a test
//! panics. Names carry the process id and a counter, so tests run in parallel.
pub mod agent;
pub mod certs;
pub mod client;
pub mod config;
pub mod counters;
pub mod flood;
pub mod mmdb;
pub mod netns;
pub mod packet;
pub mod process;
pub mod servers;

/// Whether a test that needs root may run. Without root it is skipped with a
/// message, unless `PROXY_TESTS_REQUIRE_ROOT` is set (as `cargo xtask test`
/// does), in which case it fails: CI never silently skips.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("PROXY_TESTS_REQUIRE_ROOT").is_none(),
        "{test} needs root (CAP_BPF, CAP_NET_ADMIN): run `cargo xtask test` as root"
    );
    eprintln!("skipped {test}: needs root");
    false
}

/// A scratch directory for configs and logs of this test process.
pub fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("spx-tests-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}
