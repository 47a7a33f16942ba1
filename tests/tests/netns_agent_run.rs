//! The agent's run loop driven in this process, without signals:
//! `Agent::run` gets its shutdown and its reloads from the test, in the
//! `edge` namespace of a real topology. A reload moves both apps to new
//! ports (one on the fast path, one on the agent's own TCP path), a
//! reload of a broken file is refused with the apps left as they were, and
//! the shutdown future ends the run cleanly: XDP detached, the pin gone.
use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use proxy_agent::agent::{self, Agent, Reload};
use tests::{
    agent::assert_left_nothing,
    client::tcp_exchange,
    config::{AppJson, ConfigBuilder},
    netns::{Netns, Topology, addr},
    servers::tcp_echo,
};
use tokio::sync::{mpsc, oneshot};

const ORIGIN_PORT: u16 = 9000;

/// Hang guards, sized for a loaded 2-core machine: each wait ends as soon
/// as what it waits for happens.
const READY_LIMIT: Duration = Duration::from_secs(120);
const RELOAD_LIMIT: Duration = Duration::from_secs(60);
const STOP_LIMIT: Duration = Duration::from_secs(60);

/// App 0 on the fast path (plain TCP), app 1 on the agent's TCP path (a
/// PROXY v1 header: the echo origin's first line does not depend on it).
fn config(fast_port: u16, agent_port: u16) -> String {
    let origin = format!("tcp://{}:{ORIGIN_PORT}", addr::ORG_V4);
    ConfigBuilder::new()
        .app(AppJson::tcp(fast_port, "fast.test").origin_direct([origin.clone()]))
        .app(
            AppJson::tcp(agent_port, "agent.test")
                .origin_direct([origin])
                .proxy_protocol("v1"),
        )
        .build()
}

/// Everything the agent logs, for the test to read (the agent runs in this
/// process, so its `tracing` events come here).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Log {
    fn install() -> Self {
        let log = Self::default();
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_env_filter("info,hickory_server=warn")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        log
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    fn count(&self, what: &str) -> usize {
        self.text().matches(what).count()
    }
}

impl Write for Log {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The agent on its own thread in `edge`, with the two inputs the test
/// holds.
struct Running {
    thread: Option<JoinHandle<anyhow::Result<()>>>,
    shutdown: Option<oneshot::Sender<()>>,
    reloads: mpsc::Sender<Reload>,
    config: PathBuf,
    pin: PathBuf,
    log: Log,
}

impl Running {
    /// `agent::check` then `Agent::run` on a thread moved into `edge`; the
    /// runtime's threads start there, so they live in `edge` too. Ready
    /// once the counters are pinned.
    fn start(edge: &Netns, config_json: &str, log: Log) -> Self {
        let instance = edge.name().to_owned();
        let config = tests::scratch_dir().join(format!("{instance}.json"));
        std::fs::write(&config, config_json).expect("config written");
        let pin = Path::new("/sys/fs/bpf/proxy-agent")
            .join(&instance)
            .join("STATS");
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (reload_tx, reload_rx) = mpsc::channel(1);
        let enter = edge.enter_handle();
        let path = config.clone();
        let thread = std::thread::spawn(move || -> anyhow::Result<()> {
            enter()?;
            let (start, _locks) = agent::check(&path, None, &instance, Path::new("/sys/fs/bpf"))?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(Agent::run(
                start,
                async move {
                    // A dropped sender also ends the run: the test failed.
                    let _ = shutdown_rx.await;
                },
                reload_rx,
            ))
        });
        let mut running = Self {
            thread: Some(thread),
            shutdown: Some(shutdown_tx),
            reloads: reload_tx,
            config,
            pin,
            log,
        };
        let deadline = Instant::now() + READY_LIMIT;
        while !running.pin.exists() {
            if running.thread.as_ref().is_some_and(|t| t.is_finished()) {
                let result = running.join();
                panic!(
                    "agent ended before ready: {result:?}\n{}",
                    running.log.text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "agent not ready after {READY_LIMIT:?} (a hang guard)\n{}",
                running.log.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        running
    }

    /// Writes `config_json`, asks for a reload, and returns the line the
    /// agent logged for it: `applied` or `refused` (a hang guard bounds
    /// the wait).
    fn reload(&self, config_json: &str) -> &'static str {
        const APPLIED: &str = "config change in force";
        const REFUSED: &str = "reload refused";
        let before = (self.log.count(APPLIED), self.log.count(REFUSED));
        std::fs::write(&self.config, config_json).expect("config written");
        self.reloads
            .blocking_send(Reload { cause: "test" })
            .expect("the agent takes reloads");
        let deadline = Instant::now() + RELOAD_LIMIT;
        loop {
            if self.log.count(APPLIED) > before.0 {
                return "applied";
            }
            if self.log.count(REFUSED) > before.1 {
                return "refused";
            }
            assert!(
                Instant::now() < deadline,
                "no reload after {RELOAD_LIMIT:?} (a hang guard)\n{}",
                self.log.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resolves the shutdown future and waits for `run` to return.
    fn shut_down(&mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.join()
    }

    fn join(&mut self) -> anyhow::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let deadline = Instant::now() + STOP_LIMIT;
        while !thread.is_finished() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "run did not return {STOP_LIMIT:?} after shutdown (a hang guard)"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        match thread.join() {
            Ok(result) => result,
            Err(_) => anyhow::bail!("the agent's thread panicked"),
        }
    }
}

impl Drop for Running {
    /// A failed test still stops the agent (detach, unpin) before the
    /// topology goes.
    fn drop(&mut self) {
        let _ = self.shut_down();
    }
}

/// The first line the origin sent back through `port` of app `app`.
fn answer(cli: &Netns, app: usize, port: u16) -> anyhow::Result<String> {
    let reply = tcp_exchange(cli, &addr::edge4(app), port, "hello")?;
    Ok(reply.lines().next().unwrap_or_default().to_owned())
}

fn served(cli: &Netns, app: usize, port: u16, log: &Log) {
    let first = answer(cli, app, port).unwrap_or_else(|err| {
        panic!("app {app} on port {port}: {err:#}\n{}", log.text());
    });
    assert_eq!(
        first,
        format!("origin {ORIGIN_PORT}"),
        "app {app} port {port}"
    );
}

fn not_served(cli: &Netns, app: usize, port: u16) {
    assert!(
        answer(cli, app, port).is_err(),
        "app {app} still answers on port {port} after it moved"
    );
}

#[test]
fn run_loop_reloads_refuses_a_broken_file_and_shuts_down_on_request() {
    let Some(topology) = Topology::for_test(
        "run_loop_reloads_refuses_a_broken_file_and_shuts_down_on_request",
        "run",
    ) else {
        return;
    };
    let log = Log::install();
    let _origin = tcp_echo(&topology.org, ORIGIN_PORT).expect("origin");
    let cli = &topology.cli;
    let mut agent = Running::start(&topology.edge, &config(8080, 8090), log.clone());

    // Started: both apps served on their first ports.
    served(cli, 0, 8080, &log);
    served(cli, 1, 8090, &log);

    // A reload moves both apps.
    assert_eq!(
        agent.reload(&config(8081, 8091)),
        "applied",
        "{}",
        log.text()
    );
    served(cli, 0, 8081, &log);
    served(cli, 1, 8091, &log);
    not_served(cli, 0, 8080);
    not_served(cli, 1, 8090);

    // A broken file is refused; the config in force stays.
    assert_eq!(agent.reload("{ not json"), "refused", "{}", log.text());
    served(cli, 0, 8081, &log);
    served(cli, 1, 8091, &log);

    // The shutdown future ends the run: drained, detached, unpinned.
    agent.shut_down().expect("run returns Ok after shutdown");
    assert!(log.text().contains("stopped"), "{}", log.text());
    assert_left_nothing(&topology.edge);
}
