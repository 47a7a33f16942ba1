//! `proxy-agent check` and `apps` on the shipped examples and on bad
//! configs (no root needed).
use std::process::Command;

use tests::agent::agent_bin;

fn workspace_file(path: &str) -> String {
    format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))
}

fn agent(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(agent_bin())
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("running {:?}: {err}", agent_bin()));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_example_config_checks_ok() {
    let dir = workspace_file("examples");
    let mut examples: Vec<String> = std::fs::read_dir(&dir)
        .expect("examples dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json" || x == "toml"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    examples.sort();
    assert!(examples.len() >= 2, "examples: {examples:?}");
    let args: Vec<&str> = std::iter::once("check")
        .chain(examples.iter().map(String::as_str))
        .collect();
    let (ok, stdout, stderr) = agent(&args);
    assert!(ok, "{stdout}{stderr}");
    for example in &examples {
        assert!(
            stdout.contains(&format!("{example}: ok: ")),
            "{example} not ok:\n{stdout}"
        );
    }
}

#[test]
fn a_bad_config_lists_every_error_with_codes() {
    let (ok, stdout, _) = agent(&["check", &workspace_file("tests/fixtures/bad.json")]);
    assert!(!ok, "bad config accepted:\n{stdout}");
    let errors: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    for expected in [
        "apps[0].origin_dns: \"origin.example.com\": error 11000:",
        "apps[1].origin_direct[0]: \"tcp://192.0.2.1\": error 11002:",
        "apps[2].dns.type: \"ADDRESS\": error 11004:",
        "apps[3].origin_dns.name: \"-bad-.example\": error 11001:",
        "apps[4].origin_direct[0]",
        "apps[5].protocol: \"tcp/2000-1000\"",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    assert_eq!(errors.len(), 6, "one error per broken app:\n{stdout}");
    let size = errors
        .iter()
        .find(|e| e.contains("apps[4]"))
        .expect("size error");
    assert!(size.contains("1001") && size.contains("11"), "{size}");
}

#[test]
fn check_reports_unreadable_files() {
    let (ok, stdout, _) = agent(&["check", &workspace_file("tests/fixtures/missing-cert.json")]);
    assert!(!ok);
    assert!(
        stdout.contains("apps[0].tls_cert") && stdout.contains("not found"),
        "{stdout}"
    );
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let (ok, stdout, _) = agent(&[
        "check",
        &workspace_file("tests/fixtures/unknown-field.json"),
    ]);
    assert!(!ok);
    assert!(
        stdout.contains("apps[0]") && stdout.contains("origin_directt"),
        "{stdout}"
    );
}

#[test]
fn apps_lists_edge_addresses_and_data_path() {
    let (ok, stdout, stderr) = agent(&[
        "apps",
        "--config",
        &workspace_file("examples/demo.json"),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let apps: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let apps = apps.as_array().expect("array");
    assert_eq!(apps.len(), 5);
    assert_eq!(
        apps[0]["edge_ips"],
        serde_json::json!(["10.0.100.1", "fd00:100::1"])
    );
    assert_eq!(apps[1]["edge_port_end"], 1010);
    assert_eq!(apps[3]["data_path"], "agent", "PROXY v1 needs the agent");
    assert_eq!(apps[4]["data_path"], "agent", "SPP needs the agent");
    // The demo runs `datapath: auto`: TCP at TC ingress, UDP in XDP.
    assert_eq!(apps[0]["data_path"], "tc");
    assert_eq!(apps[2]["data_path"], "xdp");
}
