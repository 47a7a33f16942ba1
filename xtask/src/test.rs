//! `cargo xtask test`: everything CI runs, in order, stopping at the first
//! failing step.
use anyhow::Context as _;

use crate::{
    build_agent,
    cmd::{command, run, target_dir},
    ebpf_cargo, fuzz, setup,
};

pub fn test(with_setup: bool) -> anyhow::Result<()> {
    if with_setup {
        setup::setup()?;
    }
    step("format");
    run(&mut command("cargo", &["fmt", "--all", "--", "--check"]))?;
    // The fuzz crate is outside the workspace, so `--all` skips it.
    run(&mut command(
        "cargo",
        &["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"],
    ))?;
    step("clippy: host crates");
    run(&mut command(
        "cargo",
        &["clippy", "--all-targets", "--", "-D", "warnings"],
    ))?;
    step("clippy: eBPF crate (bpfel-unknown-none)");
    run(&mut ebpf_cargo("clippy", &["--", "-D", "warnings"]))?;
    step("build the agent the integration tests drive");
    build_agent(false)?;
    step("unit tests, BPF_PROG_TEST_RUN fixtures, network-namespace tests");
    let agent = target_dir().join("debug/proxy-agent");
    let mut tests = command("cargo", &["test", "--all-targets", "--no-fail-fast"]);
    // Tests that need root fail instead of skipping when this is set.
    tests
        .env("PROXY_TESTS_REQUIRE_ROOT", "1")
        .env("PROXY_AGENT_BIN", agent);
    let (passed, failed) = run_counting(&mut tests)?;
    step(&format!("fuzz targets ({} s each)", fuzz::DEFAULT_SECONDS));
    if let Err(err) = fuzz::fuzz(fuzz::DEFAULT_SECONDS) {
        println!("{passed} passed, {failed} failed");
        return Err(err);
    }
    println!("xtask test: all steps passed");
    // The plain closing line CI reads: every test of every suite.
    println!("{passed} passed, {failed} failed");
    Ok(())
}

/// Runs `cargo test`, echoing its output, and adds up its `test result:`
/// lines; fails when cargo does.
fn run_counting(cmd: &mut std::process::Command) -> anyhow::Result<(u64, u64)> {
    use std::io::BufRead as _;
    println!("+ {}", crate::cmd::describe(cmd));
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let (mut passed, mut failed) = (0, 0);
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.context("reading cargo test output")?;
            println!("{line}");
            if let Some((p, f)) = parse_result_line(&line) {
                passed += p;
                failed += f;
            }
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    if !status.success() {
        println!("{passed} passed, {failed} failed");
        anyhow::bail!("cargo test failed ({status})");
    }
    Ok((passed, failed))
}

/// `test result: ok. 12 passed; 0 failed; ...` -> (12, 0).
fn parse_result_line(line: &str) -> Option<(u64, u64)> {
    let rest = line.trim().strip_prefix("test result: ")?;
    let count = |word: &str| {
        rest.split(';')
            .find_map(|part| part.trim().strip_suffix(word))
            .and_then(|n| n.trim().rsplit(' ').next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some((count(" passed")?, count(" failed")?))
}

fn step(name: &str) {
    println!("\n=== {name}");
}

#[cfg(test)]
mod tests {
    use super::parse_result_line;

    #[test]
    fn result_lines_are_counted() {
        assert_eq!(
            parse_result_line(
                "test result: ok. 58 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s"
            ),
            Some((58, 0))
        );
        assert_eq!(
            parse_result_line("test result: FAILED. 3 passed; 1 failed; 0 ignored"),
            Some((3, 1))
        );
        assert_eq!(parse_result_line("running 4 tests"), None);
    }
}
