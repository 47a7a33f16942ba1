//! The management API cannot aim the root agent at files (issue 21): app
//! bodies naming a device, a FIFO, a symlink to a key or /etc/shadow are
//! refused with an error that quotes nothing; a PEM posted through the API
//! is stored 0600 under `edge.state_dir` and served to a real TLS client;
//! and a FIFO named in the config file, reloaded by SIGHUP, is refused at
//! once, so the API and the next SIGHUP are answered.
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use serde_json::Value;
use tests::{
    agent::Agent,
    certs::Pki,
    client::{tcp_exchange, tls_exchange},
    config::{AppJson, ConfigBuilder, org4, write_token_file},
    netns::{Netns, Topology},
    scratch_dir, servers,
};

const ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const TOKEN: &str = "test-token-files-0123456789abcdef";
const API_PORT: u16 = 8080;

/// curl in `cli`: (HTTP status, body as JSON, or as a JSON string).
fn call(cli: &Netns, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let url = format!(
        "http://{}:{API_PORT}{path}",
        tests::netns::addr::EDGE_CLI_V4
    );
    let auth = format!("Authorization: Bearer {TOKEN}");
    // -m: a hang guard for a loaded machine, far above an answer's time.
    let mut args = vec![
        "-s",
        "-m",
        "30",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
        "-H",
        &auth,
    ];
    if let Some(body) = body {
        args.extend([
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
        ]);
    }
    args.push(&url);
    let out = cli
        .run("curl", &args)
        .unwrap_or_else(|e| panic!("curl: {e:#}"));
    let (text, status) = out.rsplit_once('\n').unwrap_or(("", &out));
    let body = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    (status.trim().parse().unwrap_or(0), body)
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[test]
fn the_api_takes_pem_not_paths_and_no_file_blocks_the_control_loop() {
    let Some(topology) = Topology::for_test(
        "the_api_takes_pem_not_paths_and_no_file_blocks_the_control_loop",
        "apifiles",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    let _origin = servers::tcp_echo(org, 2301).expect("origin");
    let dir = scratch_dir().join(format!("{}-files", topology.edge.name()));
    let _ = std::fs::remove_dir_all(&dir);
    let pki = Pki::new(&dir.join("pki")).expect("CA");
    let leaf = pki.leaf("app.test").expect("leaf");
    let (cert_pem, key_pem) = (
        std::fs::read_to_string(&leaf.cert).unwrap(),
        std::fs::read_to_string(&leaf.key).unwrap(),
    );
    let state_dir = dir.join("state");
    let token_file = dir.join("token");
    write_token_file(&token_file, TOKEN);
    let plain = AppJson::tcp(22, "ssh.example.test").origin_direct([org4("tcp", 2301)]);
    let builder = ConfigBuilder::new()
        .api(API_PORT, &token_file, ZONE)
        .edge("state_dir", state_dir.display().to_string());
    let config = builder.clone().app(plain.clone()).build();
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    let apps = format!("/zones/{ZONE}/spectrum/apps");

    // Paths in a body are refused, whatever they name, and nothing of the
    // file is read or quoted.
    let fifo = dir.join("fifo.pem");
    mkfifo(&fifo);
    let link = dir.join("link.key");
    std::os::unix::fs::symlink(&leaf.key, &link).unwrap();
    let tls_app = |cert: &str, key: &str| -> String {
        let app = AppJson::tcp(443, "tls.example.test")
            .origin_direct([org4("tcp", 2301)])
            .set("tls", "flexible")
            .set("tls_cert", cert)
            .set("tls_key", key);
        Value::from(app).to_string()
    };
    let fifo_path = fifo.display().to_string();
    let link_path = link.display().to_string();
    for (cert, key, field) in [
        ("/dev/zero", key_pem.as_str(), "tls_cert"),
        (cert_pem.as_str(), "/dev/urandom", "tls_key"),
        (fifo_path.as_str(), key_pem.as_str(), "tls_cert"),
        (cert_pem.as_str(), link_path.as_str(), "tls_key"),
        (cert_pem.as_str(), "/etc/shadow", "tls_key"),
    ] {
        let (status, body) = call(cli, "POST", &apps, Some(&tls_app(cert, key)));
        assert_eq!(status, 400, "{field}: {body}\n{}", agent.log());
        let message = body["errors"][0]["message"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(message.starts_with(&format!("{field}: ")), "{message}");
        assert!(message.contains("not a file path"), "{message}");
        let text = body.to_string();
        let leaked = ["BEGIN CERTIFICATE", "PRIVATE KEY", "root:"];
        assert!(!leaked.iter().any(|s| text.contains(s)), "{text}");
    }
    assert!(
        std::fs::read_dir(state_dir.join("tls")).map_or(true, |d| d.count() == 0),
        "nothing stored for refused bodies"
    );

    // PEM in the body: stored 0600 in state_dir/tls, and served.
    let (status, body) = call(cli, "POST", &apps, Some(&tls_app(&cert_pem, &key_pem)));
    assert_eq!(status, 200, "{body}\n{}", agent.log());
    let edge_ip = body["result"]["edge_addresses"][0]
        .as_str()
        .expect("edge ip")
        .to_owned();
    let stored: Vec<_> = std::fs::read_dir(state_dir.join("tls"))
        .expect("state_dir/tls")
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(stored.len(), 2, "{stored:?}");
    for file in &stored {
        let mode = std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
    }
    let on_disk = std::fs::read_to_string(agent.config_path()).unwrap();
    assert!(
        !on_disk.contains("BEGIN"),
        "the config names files, not PEM"
    );
    assert!(on_disk.contains(&state_dir.join("tls").display().to_string()));
    let reply = tls_exchange(cli, &edge_ip, 443, "app.test", &pki.ca.cert, "hello")
        .unwrap_or_else(|e| panic!("TLS with the posted PEM: {e:#}\n{}", agent.log()));
    assert_eq!(reply, "origin 2301\nhello\n");

    // A FIFO named in the config file: the reload is refused at once (a
    // plain open would wait for a writer forever), the API answers, and
    // the next SIGHUP is served.
    let fifo_app = AppJson::tcp(8443, "fifo.example.test")
        .origin_direct([org4("tcp", 2301)])
        .set("tls", "flexible")
        .set("tls_cert", fifo_path.as_str())
        .set("tls_key", fifo_path.as_str());
    let fifo_config = builder.clone().app(plain.clone()).app(fifo_app).build();
    assert!(
        !agent.reload(&fifo_config).expect("reload answered"),
        "FIFO refused"
    );
    assert!(
        agent.log().contains("not a regular file"),
        "{}",
        agent.log()
    );
    let (status, body) = call(cli, "GET", &apps, None);
    assert_eq!(status, 200, "{body}");
    assert!(agent.reload(&config).expect("second SIGHUP answered"));
    let reply = tcp_exchange(cli, &tests::netns::addr::edge4(0), 22, "hi").expect("plain app");
    assert!(reply.starts_with("origin 2301"), "{reply}");
    agent.stop().expect("stop");
    let _ = std::fs::remove_dir_all(&dir);
}
