//! The management API from a real HTTP client (curl in `cli`): the token
//! and zone checks, the apps in Cloudflare's envelope, and `/metrics`
//! parsed by a Prometheus text parser (`prometheus-parse`) moving with the
//! traffic the test sends.
use tests::{
    agent::Agent,
    client::tcp_exchange,
    config::{AppJson, ConfigBuilder, org4},
    netns::{Netns, Topology, addr},
    scratch_dir, servers,
};

const ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const TOKEN: &str = "test-token-4b1d-0123456789";
const PORT: u16 = 8080;

/// curl in `cli`: (HTTP status, body).
fn curl(cli: &Netns, path: &str, token: Option<&str>) -> (u16, String) {
    let url = format!("http://{}:{PORT}{path}", addr::EDGE_CLI_V4);
    let auth = token.map(|t| format!("Authorization: Bearer {t}"));
    let mut args = vec!["-s", "-m", "30", "-w", "\n%{http_code}"];
    if let Some(auth) = &auth {
        args.extend(["-H", auth.as_str()]);
    }
    args.push(&url);
    let out = cli
        .run("curl", &args)
        .unwrap_or_else(|e| panic!("curl {path}: {e:#}"));
    let (body, status) = out.rsplit_once('\n').unwrap_or(("", &out));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// `spectrum_events_total` of `verdict` for the app named `app`.
fn events(cli: &Netns, app: &str, verdict: &str) -> f64 {
    let (status, text) = curl(cli, "/metrics", Some(TOKEN));
    assert_eq!(status, 200, "{text}");
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("unparsable metrics ({e}):\n{text}"));
    scrape
        .samples
        .iter()
        .filter(|s| {
            s.metric == "spectrum_events_total"
                && s.labels.get("app") == Some(app)
                && s.labels.get("verdict") == Some(verdict)
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn the_api_answers_with_cloudflares_envelope_and_metrics_move_with_traffic() {
    let Some(topology) = Topology::for_test(
        "the_api_answers_with_cloudflares_envelope_and_metrics_move_with_traffic",
        "api",
    ) else {
        return;
    };
    let (cli, org) = (&topology.cli, &topology.org);
    let _origin = servers::tcp_echo(org, 2201).expect("origin");
    let token_file = scratch_dir().join(format!("{}-token", topology.edge.name()));
    tests::config::write_token_file(&token_file, TOKEN);
    let config = ConfigBuilder::new()
        .api(PORT, &token_file, ZONE)
        .app(AppJson::tcp(22, "ssh.example.test").origin_direct([org4("tcp", 2201)]))
        .build();
    let agent = Agent::start(&topology.edge, &config, "native").expect("agent");
    let apps = format!("/zones/{ZONE}/spectrum/apps");

    // Refused: no token, a wrong one, another zone.
    for token in [None, Some("nope")] {
        let (status, body) = curl(cli, &apps, token);
        assert_eq!(status, 401, "{token:?}: {body}\n{}", agent.log());
        let body: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(body["success"], false);
        assert_eq!(body["errors"][0]["code"], 10000);
    }
    let (status, _) = curl(cli, "/zones/another/spectrum/apps", Some(TOKEN));
    assert_eq!(status, 404);

    // The app, as Cloudflare would list it, with its edge addresses.
    let (status, body) = curl(cli, &apps, Some(TOKEN));
    assert_eq!(status, 200, "{body}");
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["success"], true);
    assert_eq!(body["result_info"]["total_count"], 1);
    let app = &body["result"][0];
    assert_eq!(app["protocol"], "tcp/22");
    assert_eq!(
        app["edge_addresses"],
        serde_json::json!([addr::edge4(0), addr::edge6(0)])
    );
    let id = app["id"].as_str().expect("id").to_owned();
    let (status, one) = curl(cli, &format!("{apps}/{id}"), Some(TOKEN));
    assert_eq!(status, 200, "{one}");

    // Counters move with the connections sent through the fast path.
    let before = events(cli, "ssh.example.test", "flow_opened");
    for _ in 0..3 {
        let reply = tcp_exchange(cli, &addr::edge4(0), 22, "hello").expect("through the app");
        assert!(reply.starts_with("origin 2201"), "{reply}");
    }
    let after = events(cli, "ssh.example.test", "flow_opened");
    assert_eq!(after - before, 3.0, "flows opened: {before} -> {after}");
    assert!(events(cli, "ssh.example.test", "to_origin") >= 3.0);
    let (status, _) = curl(cli, "/metrics", None);
    assert_eq!(status, 401);
    agent.stop().expect("stop");
}
