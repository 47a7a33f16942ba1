//! `cargo xtask test`: everything CI runs, in order, stopping at the first
//! failing step.
use crate::{
    build_agent,
    cmd::{command, run, target_dir},
    ebpf_cargo, setup,
};

pub fn test(with_setup: bool) -> anyhow::Result<()> {
    if with_setup {
        setup::setup()?;
    }
    step("format");
    run(&mut command("cargo", &["fmt", "--all", "--", "--check"]))?;
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
    run(command("cargo", &["test", "--no-fail-fast"])
        // Tests that need root fail instead of skipping when this is set.
        .env("PROXY_TESTS_REQUIRE_ROOT", "1")
        .env("PROXY_AGENT_BIN", agent))?;
    println!("xtask test: all steps passed");
    Ok(())
}

fn step(name: &str) {
    println!("\n=== {name}");
}
