//! Background processes (servers, the agent) that are stopped on drop.
use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;

pub struct Background {
    label: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Background {
    /// Spawns `cmd` with stdout and stderr in a log file.
    pub fn spawn(label: &str, mut cmd: Command) -> anyhow::Result<Self> {
        let log = crate::scratch_dir().join(format!("{label}-{}.log", unique()));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {label}: {cmd:?}"))?;
        Ok(Self {
            label: label.to_owned(),
            child: Some(child),
            log,
        })
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What the process wrote so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (e.g. `libc::SIGHUP`) to the process.
    pub fn signal(&self, signal: i32) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("process already stopped")?;
        // SAFETY: kill(2) on our own child's pid, which we have not reaped.
        let rc = unsafe { libc::kill(child.id() as i32, signal) };
        anyhow::ensure!(rc == 0, "kill: {}", std::io::Error::last_os_error());
        Ok(())
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// Waits up to `limit` for the process to end by itself (then stops
    /// it); returns the exit status and the log.
    pub fn wait(mut self, limit: Duration) -> anyhow::Result<(ExitStatus, String)> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.exited() {
                self.child = None;
                return Ok((status, self.log()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        anyhow::bail!(
            "{} still running after {limit:?}:\n{}",
            self.label,
            self.log()
        )
    }

    /// SIGTERM, then up to `grace` for it to exit, then SIGKILL.
    pub fn stop(mut self, grace: Duration) -> anyhow::Result<(ExitStatus, String)> {
        let status = self.terminate(grace)?;
        Ok((status, self.log()))
    }

    fn terminate(&mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            anyhow::bail!("{} already stopped", self.label);
        };
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill()?;
        Ok(child.wait()?)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.terminate(Duration::from_secs(2));
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
