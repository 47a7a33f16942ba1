//! The agent under test: started in the `edge` namespace with a config,
//! ready once its counters are pinned, read through `proxy-agent stats`.
use std::{
    path::PathBuf,
    process::{Command, ExitStatus},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{netns::Netns, netns::run_checked, process::Background};

/// The `proxy-agent` binary: `PROXY_AGENT_BIN`, else next to the test binary
/// (`target/<profile>/deps/..`). `cargo test` does not build another
/// package's binary: `cargo xtask test` does, then sets `PROXY_AGENT_BIN`.
pub fn agent_bin() -> PathBuf {
    let path = match std::env::var_os("PROXY_AGENT_BIN") {
        Some(path) => PathBuf::from(path),
        None => {
            let exe = std::env::current_exe().unwrap_or_default();
            let profile_dir = exe
                .parent()
                .and_then(|deps| deps.parent())
                .map(PathBuf::from)
                .unwrap_or_default();
            profile_dir.join("proxy-agent")
        }
    };
    assert!(
        path.exists(),
        "no proxy-agent binary at {}: run `cargo xtask test`, or `cargo build -p proxy-agent` first",
        path.display()
    );
    path
}

/// Hang guards, not expectations: each wait below ends as soon as what it
/// waits for happens, so these only bound a run that went wrong, sized for
/// a loaded two-core machine.
const READY_LIMIT: Duration = Duration::from_secs(120);
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
const RELOAD_LIMIT: Duration = Duration::from_secs(60);
const STOP_GRACE: Duration = Duration::from_secs(30);

pub struct Agent {
    process: Background,
    instance: String,
    config: PathBuf,
}

impl Agent {
    /// Writes `config_json` to a file and runs the agent on it in `edge`.
    pub fn start(edge: &Netns, config_json: &str, xdp_mode: &str) -> anyhow::Result<Self> {
        let instance = edge.name().to_owned();
        let config = crate::scratch_dir().join(format!("{instance}.json"));
        std::fs::write(&config, config_json)
            .with_context(|| format!("writing {}", config.display()))?;
        let bin = agent_bin();
        let config_arg = config.to_string_lossy().into_owned();
        let mut process = edge.spawn(
            "agent",
            &bin.to_string_lossy(),
            &[
                "run",
                "--config",
                &config_arg,
                "--instance",
                &instance,
                "--xdp-mode",
                xdp_mode,
            ],
        )?;
        let pin = PathBuf::from("/sys/fs/bpf/proxy-agent")
            .join(&instance)
            .join("STATS");
        // A hang guard: loading and verifying the BPF programs takes
        // seconds, more on a loaded machine.
        let deadline = Instant::now() + READY_LIMIT;
        while !pin.exists() {
            if let Some(status) = process.exited() {
                bail!("agent exited ({status}) before ready:\n{}", process.log());
            }
            if Instant::now() > deadline {
                bail!(
                    "agent not ready after {READY_LIMIT:?} (a hang guard):\n{}",
                    process.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Self {
            process,
            instance,
            config,
        })
    }

    /// The agent's counters, as `proxy-agent stats --json` prints them.
    pub fn stats(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let out = run_checked(Command::new(agent_bin()).args([
            "stats",
            "--instance",
            &self.instance,
            "--config",
            &self.config.to_string_lossy(),
            "--json",
        ]))?;
        let value: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("stats output: {out}"))?;
        Ok(value.as_array().cloned().unwrap_or_default())
    }

    /// Waits until the counter reaches `expected` ([`SETTLE_LIMIT`] at
    /// most, a hang guard), and returns its last value: packets are counted
    /// in softirq context, a moment after the client that sent them has
    /// returned, and the agent flushes its connection counts once a second.
    pub fn packets_settled(
        &self,
        app: Option<u64>,
        verdict: &str,
        expected: u64,
    ) -> anyhow::Result<u64> {
        let deadline = Instant::now() + SETTLE_LIMIT;
        loop {
            let value = self.packets(app, verdict)?;
            if value >= expected || Instant::now() > deadline {
                return Ok(value);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Packets counted for (app index or None for the global row, verdict).
    pub fn packets(&self, app: Option<u64>, verdict: &str) -> anyhow::Result<u64> {
        Ok(self
            .stats()?
            .iter()
            .filter(|row| row["app"].as_u64() == app && row["verdict"] == verdict)
            .map(|row| row["packets"].as_u64().unwrap_or(0))
            .sum())
    }

    /// Bytes counted for (app index or None for the global row, verdict).
    pub fn bytes(&self, app: Option<u64>, verdict: &str) -> anyhow::Result<u64> {
        Ok(self
            .stats()?
            .iter()
            .filter(|row| row["app"].as_u64() == app && row["verdict"] == verdict)
            .map(|row| row["bytes"].as_u64().unwrap_or(0))
            .sum())
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    /// Writes `config_json` over the agent's config file and sends SIGHUP;
    /// waits until the agent says the change is in force (`Ok(true)`) or
    /// that it refused the reload (`Ok(false)`); [`RELOAD_LIMIT`] at most,
    /// a hang guard.
    pub fn reload(&self, config_json: &str) -> anyhow::Result<bool> {
        const APPLIED: &str = "config change in force";
        const REFUSED: &str = "reload refused";
        let count = |log: &str| (log.matches(APPLIED).count(), log.matches(REFUSED).count());
        let before = count(&self.log());
        std::fs::write(&self.config, config_json)
            .with_context(|| format!("writing {}", self.config.display()))?;
        self.process.signal(libc::SIGHUP)?;
        let deadline = Instant::now() + RELOAD_LIMIT;
        loop {
            let now = count(&self.log());
            if now.0 > before.0 {
                return Ok(true);
            }
            if now.1 > before.1 {
                return Ok(false);
            }
            if Instant::now() > deadline {
                bail!(
                    "no reload after {RELOAD_LIMIT:?} (a hang guard):\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The agent's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.pid()
    }

    /// The config file the agent runs on.
    pub fn config_path(&self) -> &std::path::Path {
        &self.config
    }

    /// SIGTERM, without waiting for the agent to exit (see [`Agent::wait`]).
    pub fn terminate(&self) -> anyhow::Result<()> {
        self.process.signal(libc::SIGTERM)
    }

    /// Waits up to `limit` for the agent to exit by itself.
    pub fn wait(self, limit: Duration) -> anyhow::Result<(ExitStatus, String)> {
        self.process.wait(limit)
    }

    /// SIGTERM; returns the exit status and the agent's log. SIGKILL only
    /// after [`STOP_GRACE`] (a hang guard: the agent drains and detaches).
    pub fn stop(self) -> anyhow::Result<(ExitStatus, String)> {
        self.process.stop(STOP_GRACE)
    }
}

/// After an agent on `edge` stopped: no XDP program left on the edge's
/// client-side interface, and its pinned counters gone.
pub fn assert_left_nothing(edge: &Netns) {
    let link = edge
        .run("ip", &["link", "show", crate::netns::addr::EDGE_CLI_IF])
        .expect("ip link");
    assert!(
        !link.contains("xdp"),
        "XDP still attached after exit: {link}"
    );
    let pin = PathBuf::from("/sys/fs/bpf/proxy-agent")
        .join(edge.name())
        .join("STATS");
    assert!(
        !pin.exists(),
        "pinned counters left behind at {}",
        pin.display()
    );
}
