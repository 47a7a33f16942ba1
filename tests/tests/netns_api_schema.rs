//! The management API against its own description (docs/openapi.json):
//! Schemathesis, run in `cli`, generates requests for every documented
//! operation (apps and access rules created, replaced, patched, deleted;
//! lists, pages, /metrics) and sends them to an agent in `edge`. No answer
//! may be a server error (5xx), and the agent must still serve and its
//! written-back config file still validate afterwards.
//!
//! Schemathesis comes from `cargo xtask setup` (a virtualenv at
//! [`SCHEMATHESIS_VENV`], or the `st` that `PROXY_SCHEMATHESIS` names).
//! Missing, the test fails under CI (`CI=true`) and is skipped elsewhere.
//! `PROXY_SCHEMATHESIS_ARGS` adds options to its command line: e.g.
//! `--seed N` for other cases than the fixed seed's.
//!
//! The run is a fixed amount of work, not a time budget: every phase is
//! bounded by a count ([`MAX_EXAMPLES`] per operation, [`MAX_STEPS`] per
//! stateful scenario) and `--max-time` is never given; [`RUN_LIMIT`] only
//! catches a hang.
//!
//! What it sends stays in the test's namespaces: the edge's default route
//! and its resolver for `origin_dns` names are in `org`, which forwards
//! nothing; a DNS server there answers every name with `org`'s addresses
//! at once (a resolver that never answered made each such change wait out
//! the agent's resolver timeout), and no client connects to the apps
//! Schemathesis creates.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use tests::{
    agent::{Agent, agent_bin},
    config::{AppJson, ConfigBuilder, org4},
    netns::{Netns, Topology, addr},
    process::Background,
    scratch_dir, servers,
};

const ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const TOKEN: &str = "test-token-5c4e-9876543210";
const PORT: u16 = 8080;
/// Where `cargo xtask setup` installs Schemathesis (xtask's
/// `setup::SCHEMATHESIS_VENV`: keep the two in step).
const SCHEMATHESIS_VENV: &str = "/opt/proxy-tools/schemathesis";
/// Test cases per operation and phase (and stateful scenarios): enough to
/// reach every operation with valid and invalid bodies.
const MAX_EXAMPLES: &str = "50";
/// Calls per stateful scenario (Schemathesis' default, written down so
/// the amount of work is this file's choice).
const MAX_STEPS: u32 = 6;
/// The same cases every run: the amount of work and what is covered
/// (every operation, every link) do not vary. `--seed` in
/// `PROXY_SCHEMATHESIS_ARGS` comes later on the command line and wins.
const SEED: &str = "1";
/// The phases, named so none is added or dropped by a Schemathesis update.
const PHASES: &str = "examples,coverage,fuzzing,stateful";
/// A hang guard, not a budget: far beyond what the bounded run needs on a
/// loaded two-core machine. Past it Schemathesis is stopped and the test
/// fails with what it had printed so far.
const RUN_LIMIT: Duration = Duration::from_secs(15 * 60);

/// The `st` program, or None when it is not installed.
fn schemathesis() -> Option<PathBuf> {
    let st = std::env::var_os("PROXY_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(SCHEMATHESIS_VENV).join("bin/st"));
    st.exists().then_some(st)
}

fn openapi_json() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

/// curl in `cli`: the HTTP status of a GET.
fn get_status(cli: &Netns, path: &str) -> u16 {
    let url = format!("http://{}:{PORT}{path}", addr::EDGE_CLI_V4);
    let auth = format!("Authorization: Bearer {TOKEN}");
    let args = [
        "-s",
        "-o",
        "/dev/null",
        "-m",
        "30",
        "-w",
        "%{http_code}",
        "-H",
        &auth,
        &url,
    ];
    cli.run("curl", &args)
        .unwrap_or_else(|e| panic!("curl {path}: {e:#}"))
        .trim()
        .parse()
        .unwrap_or(0)
}

/// A number of Schemathesis's summary: the first on the line after the
/// line `heading` (`Test cases:` then `  1298 generated, 1298 passed`
/// gives 1298), or on the same line (`Tested: 10` gives 10).
fn summary_count(output: &str, heading: &str) -> Option<u64> {
    let mut lines = output.lines().map(str::trim);
    lines.find(|line| line.starts_with(heading))?;
    let rest = match lines.next()? {
        line if line.starts_with("Selected:") => lines.next()?.strip_prefix("Tested:")?,
        line => line,
    };
    rest.split_whitespace().next()?.parse().ok()
}

/// The agent's config: an API, a TCP and a UDP app toward echoes on `org`,
/// one access rule; `origin_dns` names are asked of `org`.
fn config(token_file: &Path) -> String {
    ConfigBuilder::new()
        .resolver(addr::ORG_V4)
        .api(PORT, token_file, ZONE)
        .app(AppJson::tcp(22, "ssh.example.test").origin_direct([org4("tcp", 2201)]))
        .app(AppJson::udp(53, "dns.example.test").origin_direct([org4("udp", 5301)]))
        .access_rules(serde_json::json!([
            {"mode": "block", "configuration": {"target": "ip", "value": "192.0.2.99"},
             "notes": "seed"}
        ]))
        .build()
}

/// The edge's side of `org`: echo origins, a default route into it (the
/// origin_source of an app whose origins are elsewhere comes from it; `org`
/// does not forward, so nothing leaves the test's namespaces), and a DNS
/// server that answers every name Schemathesis makes up.
fn start_org_side(topology: &Topology) -> Vec<Background> {
    let org = &topology.org;
    let servers = vec![
        servers::tcp_echo(org, 2201).expect("tcp origin"),
        servers::udp_echo(org, 5301).expect("udp origin"),
        servers::dns_any(org, addr::ORG_V4, addr::ORG_V4, addr::ORG_V6).expect("dns"),
    ];
    let edge = &topology.edge;
    edge.run("ip", &["route", "add", "default", "via", addr::ORG_V4])
        .expect("edge default route");
    edge.run(
        "ip",
        &["-6", "route", "add", "default", "via", addr::ORG_V6],
    )
    .expect("edge default route (IPv6)");
    servers
}

/// Schemathesis' command in `cli`: every phase, bounded by counts.
fn schemathesis_command(st: &Path, topology: &Topology) -> Command {
    let dir = scratch_dir();
    let url = format!("http://{}:{PORT}", addr::EDGE_CLI_V4);
    let auth = format!("Authorization: Bearer {TOKEN}");
    let spec = openapi_json();
    let junit = dir.join(format!("{}-schemathesis.xml", topology.edge.name()));
    // The zone is the agent's: another one is only ever 404. A run whose
    // requests are all refused (401/403: a token the agent does not take)
    // tests none of the API and fails.
    let settings = dir.join(format!("{}-schemathesis.toml", topology.edge.name()));
    std::fs::write(
        &settings,
        format!(
            "[warnings]\nfail-on = [\"missing_auth\"]\n\n\
             [parameters]\n\"path.zone\" = \"{ZONE}\"\n\n\
             [phases.stateful]\nmax-steps = {MAX_STEPS}\n"
        ),
    )
    .expect("schemathesis.toml");
    let args = [
        "--config-file",
        &settings.to_string_lossy(),
        "run",
        &spec.to_string_lossy(),
        "--url",
        &url,
        "--header",
        &auth,
        "--checks",
        "not_a_server_error",
        "--phases",
        PHASES,
        "--max-examples",
        MAX_EXAMPLES,
        "--seed",
        SEED,
        // A hang guard per request, not the API's own limits: every
        // request here is answered at once.
        "--request-timeout",
        "60",
        "--generation-database",
        "none",
        "--suppress-health-check",
        "all",
        "--report",
        "junit",
        "--report-junit-path",
        &junit.to_string_lossy(),
        "--no-color",
    ];
    // More options for a deeper look by hand, e.g.
    // PROXY_SCHEMATHESIS_ARGS="--checks all --max-examples 200".
    let extra = std::env::var("PROXY_SCHEMATHESIS_ARGS").unwrap_or_default();
    let mut command = topology.cli.command(&st.to_string_lossy(), &args);
    command.args(extra.split_whitespace());
    // Its scratch files (none expected) go to the scratch directory.
    command
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120");
    command
}

/// Runs Schemathesis to its end; its exit status and output. Past
/// [`RUN_LIMIT`] the test fails with what it had printed.
fn run_schemathesis(command: Command, agent: &Agent) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    let run = Background::spawn("schemathesis", command).expect("starting schemathesis");
    let (status, output) = run.wait(RUN_LIMIT).unwrap_or_else(|e| {
        panic!(
            "schemathesis hung: not done after {RUN_LIMIT:?} (a hang guard; the run is \
             bounded by counts). What it had finished, then the agent's log:\n{e:#}\n{}",
            agent.log()
        )
    });
    eprintln!(
        "schemathesis ran {:.1} s ({status}):\n{output}",
        started.elapsed().as_secs_f64()
    );
    (status, output)
}

/// `API Links:    6 covered / 6 selected / 6 total`: (covered, selected).
fn links_covered(output: &str) -> Option<(u64, u64)> {
    let line = output
        .lines()
        .map(str::trim)
        .find(|line| line.starts_with("API Links:"))?;
    let mut numbers = line
        .split_whitespace()
        .filter_map(|word| word.parse::<u64>().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// Schemathesis passed and tested something: a run that tested nothing
/// must not pass; every operation was tested and every link followed.
fn assert_passed_and_tested(status: std::process::ExitStatus, output: &str, agent: &Agent) {
    assert!(
        status.success(),
        "schemathesis found failures ({status}); its report is above, the agent's log:\n{}",
        agent.log()
    );
    let operations = summary_count(output, "API Operations:").unwrap_or(0);
    let cases = summary_count(output, "Test cases:").unwrap_or(0);
    assert!(
        operations > 0 && cases > 0,
        "schemathesis tested nothing ({operations} operations, {cases} test cases):\n{output}"
    );
    let tested = summary_count(output, "API Operations:").unwrap_or(0);
    let selected = output
        .lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("Selected:"))
        .and_then(|rest| rest.split('/').nth(1))
        .and_then(|total| total.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert_eq!(tested, selected, "operations left untested:\n{output}");
    let (covered, links) = links_covered(output).unwrap_or((0, 0));
    assert!(
        links > 0 && covered == links,
        "API links not followed ({covered} of {links}):\n{output}"
    );
}

/// The agent still serves, and what it wrote back still validates.
fn assert_agent_serves_and_file_validates(cli: &Netns, agent: &Agent) {
    let apps = format!("/zones/{ZONE}/spectrum/apps");
    assert_eq!(get_status(cli, &apps), 200, "{}", agent.log());
    assert_eq!(get_status(cli, "/metrics"), 200, "{}", agent.log());
    let config_path = agent.config_path().to_string_lossy().into_owned();
    let check = Command::new(agent_bin())
        .args(["check", &config_path])
        .output()
        .expect("proxy-agent check");
    assert!(
        check.status.success(),
        "the config file the API wrote back fails `proxy-agent check`:\n{}{}\nthe file:\n{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr),
        std::fs::read_to_string(&config_path).unwrap_or_default()
    );
}

#[test]
fn the_api_answers_schemathesis_without_server_errors() {
    const TEST: &str = "the_api_answers_schemathesis_without_server_errors";
    if !tests::root_or_skip(TEST) {
        return;
    }
    let Some(st) = schemathesis() else {
        let message = format!(
            "Schemathesis is not installed ({SCHEMATHESIS_VENV}/bin/st, or PROXY_SCHEMATHESIS): \
             run `cargo xtask setup`"
        );
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("skipped {TEST}: {message}");
        return;
    };
    let topology = Topology::new("apist").expect("topology");
    let _servers = start_org_side(&topology);
    let token_file = scratch_dir().join(format!("{}-token", topology.edge.name()));
    tests::config::write_token_file(&token_file, TOKEN);
    let agent = Agent::start(&topology.edge, &config(&token_file), "native").expect("agent");
    let apps = format!("/zones/{ZONE}/spectrum/apps");
    assert_eq!(get_status(&topology.cli, &apps), 200, "{}", agent.log());

    let (status, output) = run_schemathesis(schemathesis_command(&st, &topology), &agent);
    assert_passed_and_tested(status, &output, &agent);
    assert_agent_serves_and_file_validates(&topology.cli, &agent);
    agent.stop().expect("stop");
}
