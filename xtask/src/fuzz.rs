//! `cargo xtask fuzz`: each cargo-fuzz target of `fuzz/` (the agent's
//! decoders of untrusted bytes) for a bounded time, with nightly.
use anyhow::{Context as _, bail};

use crate::cmd::{command, nightly_cargo, run, succeeds, target_dir, workspace_root};

/// The targets in `fuzz/fuzz_targets/`, each with a seed corpus in
/// `fuzz/corpus/<target>/`.
pub const TARGETS: &[&str] = &["spp_reply", "proxy_header", "dns_query"];

/// Seconds per target when not told otherwise (also what `cargo xtask
/// test` gives each one).
pub const DEFAULT_SECONDS: u64 = 20;

pub fn fuzz(seconds: u64) -> anyhow::Result<()> {
    if !succeeds(&mut command("cargo", &["fuzz", "--version"])) {
        bail!("cargo-fuzz is missing: run `cargo xtask setup` (or `cargo install cargo-fuzz`)");
    }
    for target in TARGETS {
        // New inputs go to a scratch corpus under target/; the committed
        // seeds are only read, so a run never dirties the tree.
        let scratch = target_dir().join("fuzz-corpus").join(target);
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("creating {}", scratch.display()))?;
        let seeds = workspace_root().join("fuzz/corpus").join(target);
        let max_time = format!("-max_total_time={seconds}");
        run(&mut nightly_cargo(&[
            "fuzz",
            "run",
            target,
            &scratch.to_string_lossy(),
            &seeds.to_string_lossy(),
            "--",
            &max_time,
        ]))
        .with_context(|| {
            format!(
                "fuzz target {target} failed: a crashing input, if any, is in \
                 fuzz/artifacts/{target}/ (replay it with `cargo +nightly fuzz run \
                 {target} <file>`)"
            )
        })?;
    }
    Ok(())
}
