use axum::body::Body;
use axum::http::{Request, StatusCode};
use proxy_common::Verdict;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tower::ServiceExt as _;

use super::error::{CODE_BAD_QUERY, CODE_INVALID, CODE_NOT_FOUND};
use super::*;
use crate::agent::plan::ChangeError;
use crate::config::load_str;

const CONFIG: &str = r#"{
  "edge": {"interfaces": ["eth0"],
           "address_pool": {"ipv4": "198.51.100.0/24", "ipv6": "2001:db8:e::/64"}},
  "apps": [
    {"id": "0123456789abcdef0123456789abcdef", "protocol": "tcp/1000-2000",
     "dns": {"type": "CNAME", "name": "range.example.com"},
     "origin_direct": ["tcp://192.0.2.1:3000-4000", "tcp://[2001:db8::1]:3000-4000"]},
    {"protocol": "tcp/25", "dns": {"type": "ADDRESS", "name": "mail.example.com"},
     "origin_dns": {"name": "mx.example.com", "ttl": 600, "type": "A"}, "origin_port": 2525,
     "proxy_protocol": "v1", "ip_firewall": true,
     "edge_ips": {"type": "static", "ips": ["198.51.100.200"]}},
    {"protocol": "udp/53", "dns": {"type": "CNAME", "name": "dns.example.com"},
     "origin_direct": ["udp://192.0.2.53:53"],
     "edge_ips": {"type": "dynamic", "connectivity": "ipv6"}}
  ]
}"#;
const ZONE: &str = "023e105f4ecef8ad9ca31a8372d0c353";

fn state() -> ApiState {
    let config = Arc::new(load_str(CONFIG, false).unwrap().config);
    let rows = vec![
        StatsRow {
            app: Some(0),
            verdict: Verdict::ToOrigin,
            packets: 12,
            bytes: 1200,
        },
        StatsRow {
            app: None,
            verdict: Verdict::NoListener,
            packets: 3,
            bytes: 180,
        },
    ];
    let (_, config) = watch::channel(config);
    ApiState::new(config, "s3cret", ZONE, Arc::new(move |_| Ok(rows.clone())))
}

/// An API whose changes go to an in-memory stand-in for the agent's
/// main loop: the edit runs on the document, the result is validated
/// as the agent validates it (minus the kernel) and becomes the config
/// in force. Returns the state and the document's text as it evolves.
fn state_with_changes() -> (ApiState, Arc<std::sync::Mutex<String>>) {
    let text = Arc::new(std::sync::Mutex::new(CONFIG.to_owned()));
    let (published, config) = watch::channel(Arc::new(load_str(CONFIG, false).unwrap().config));
    let (tx, mut rx) = mpsc::channel::<ChangeRequest>(4);
    let file = Arc::clone(&text);
    tokio::spawn(async move {
        while let Some(ChangeRequest { edit, reply }) = rx.recv().await {
            let current = file.lock().unwrap().clone();
            let mut doc = crate::config::edit::Document::parse(&current, false).unwrap();
            doc.pin_ids(&load_str(&current, false).unwrap().config);
            let outcome = edit(&mut doc).map_err(ChangeError::Edit).and_then(|id| {
                let rendered = doc.render().unwrap();
                let loaded = load_str(&rendered, false).map_err(ChangeError::from)?;
                *file.lock().unwrap() = rendered;
                let config = Arc::new(loaded.config);
                published.send_replace(Arc::clone(&config));
                Ok((config, id))
            });
            let _ = reply.send(outcome);
        }
    });
    let state =
        ApiState::new(config, "s3cret", ZONE, Arc::new(|_| Ok(Vec::new()))).with_changes(tx);
    (state, text)
}

/// A request with a body, to `state`'s router: (status, parsed body).
async fn call(state: &ApiState, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", "Bearer s3cret")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = router(state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, parsed(&String::from_utf8_lossy(&bytes)))
}

#[tokio::test]
async fn apps_are_created_replaced_and_deleted_and_the_document_follows() {
    let (state, text) = state_with_changes();
    let apps = format!("/zones/{ZONE}/spectrum/apps");
    let body = r#"{"protocol": "tcp/2222", "dns": {"type": "CNAME", "name": "new.example.com"},
                   "origin_direct": ["tcp://192.0.2.9:22"]}"#;
    let (status, created) = call(&state, "POST", &apps, body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["result"]["id"].as_str().expect("id").to_owned();
    assert_eq!(id.len(), 32);
    assert_eq!(created["result"]["origin_direct"][0], "tcp://192.0.2.9:22");
    assert!(created["result"]["created_on"].is_string(), "{created}");
    assert_eq!(
        created["result"]["edge_addresses"].as_array().map(Vec::len),
        Some(2)
    );
    assert!(text.lock().unwrap().contains(&id));
    let (_, list) = call(&state, "GET", &apps, "").await;
    assert_eq!(list["result_info"]["total_count"], 4);

    let one = format!("{apps}/{id}");
    let changed = body.replace("192.0.2.9:22", "192.0.2.9:2200");
    let (status, replaced) = call(&state, "PUT", &one, &changed).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(
        replaced["result"]["origin_direct"][0],
        "tcp://192.0.2.9:2200"
    );
    assert_eq!(
        replaced["result"]["created_on"],
        created["result"]["created_on"]
    );
    let other_id = changed.replacen('{', r#"{"id": "0123456789abcdef0123456789abcdee", "#, 1);
    let (status, refused) = call(&state, "PUT", &one, &other_id).await;
    assert_eq!(
        (status, &refused["errors"][0]["code"]),
        (StatusCode::BAD_REQUEST, &json!(CODE_INVALID))
    );

    let (status, deleted) = call(&state, "DELETE", &one, "").await;
    assert_eq!(status, StatusCode::OK, "{deleted}");
    assert_eq!(deleted["result"]["id"], id.as_str());
    assert!(!text.lock().unwrap().contains(&id));
    let (status, gone) = call(&state, "GET", &one, "").await;
    assert_eq!(
        (status, &gone["errors"][0]["code"]),
        (StatusCode::NOT_FOUND, &json!(CODE_NOT_FOUND))
    );
    let (status, gone) = call(&state, "DELETE", &one, "").await;
    assert_eq!(
        (status, &gone["errors"][0]["code"]),
        (StatusCode::NOT_FOUND, &json!(CODE_NOT_FOUND))
    );
}

#[tokio::test]
async fn refused_app_changes_name_the_code_and_leave_the_document() {
    let (state, text) = state_with_changes();
    let apps = format!("/zones/{ZONE}/spectrum/apps");
    for (body, status, code) in [
        (
            r#"{"protocol": "tcp/2222", "dns": {"type": "CNAME", "name": "x.example.com"},
                "origin_direct": ["tcp://192.0.2.9:22"],
                "origin_dns": {"name": "o.example.com"}, "origin_port": 22}"#,
            StatusCode::BAD_REQUEST,
            11000,
        ),
        (
            r#"{"protocol": "tcp/2222", "dns": {"type": "CNAME", "name": "x.example.com"},
                "origin_direct": ["tcp://192.0.2.300:22"]}"#,
            StatusCode::BAD_REQUEST,
            11002,
        ),
        (
            r#"{"protocol": "tcp/2222", "dns": {"type": "ADDRESS", "name": "x.example.com"},
                "origin_direct": ["tcp://192.0.2.9:22"], "edge_ips": {"type": "dynamic"}}"#,
            StatusCode::BAD_REQUEST,
            11004,
        ),
        ("{", StatusCode::BAD_REQUEST, CODE_BAD_QUERY),
        (
            r#"{"protocol": "tcp/2222", "dns": {"type": "CNAME", "name": "x.example.com"},
                "origin_direct": ["tcp://192.0.2.9:22"], "colour": "blue"}"#,
            StatusCode::BAD_REQUEST,
            CODE_BAD_QUERY,
        ),
    ] {
        let (got, answer) = call(&state, "POST", &apps, body).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["success"], false);
        let codes: Vec<&Value> = answer["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| &e["code"])
            .collect();
        assert!(codes.contains(&&json!(code)), "{body}: {answer}");
    }
    assert_eq!(
        *text.lock().unwrap(),
        CONFIG,
        "a refused change leaves the file"
    );
}

/// A challenge rule stays in the file but not in force: it is answered
/// as the file holds it, whatever the case of the id in the path.
#[tokio::test]
async fn rules_not_in_force_are_answered_as_stored() {
    let (state, _) = state_with_changes();
    let rules = format!("/zones/{ZONE}/firewall/access_rules/rules");
    let body =
        r#"{"mode": "challenge", "configuration": {"target": "ip", "value": "203.0.113.9"}}"#;
    let (status, created) = call(&state, "POST", &rules, body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["result"]["id"].as_str().expect("id").to_owned();
    assert_eq!(created["result"]["configuration"]["value"], "203.0.113.9");
    let one = format!("{rules}/{}", id.to_ascii_uppercase());
    let (status, patched) = call(&state, "PATCH", &one, r#"{"notes": "later"}"#).await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(patched["result"]["mode"], "challenge", "{patched}");
    assert_eq!(
        patched["result"]["configuration"]["target"], "ip",
        "{patched}"
    );
    assert_eq!(patched["result"]["notes"], "later", "{patched}");
    assert!(patched["result"]["modified_on"].is_string(), "{patched}");
}

#[tokio::test]
async fn access_rules_are_created_patched_and_deleted() {
    let (state, text) = state_with_changes();
    let rules = format!("/zones/{ZONE}/firewall/access_rules/rules");
    let body = r#"{"mode": "block", "configuration": {"target": "ip_range", "value": "203.0.113.0/24"}, "notes": "test"}"#;
    let (status, created) = call(&state, "POST", &rules, body).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["result"]["id"].as_str().expect("id").to_owned();
    assert_eq!(
        created["result"]["configuration"]["value"],
        "203.0.113.0/24"
    );
    let (_, list) = call(&state, "GET", &rules, "").await;
    assert_eq!(list["result_info"]["total_count"], 1);
    let one = format!("{rules}/{id}");
    let (status, patched) = call(
        &state,
        "PATCH",
        &one,
        r#"{"mode": "whitelist", "notes": "ok"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (&patched["result"]["mode"], &patched["result"]["notes"]),
        (&json!("whitelist"), &json!("ok"))
    );
    let (status, refused) = call(
        &state,
        "PATCH",
        &one,
        r#"{"configuration": {"target": "ip", "value": "192.0.2.1"}}"#,
    )
    .await;
    assert_eq!(
        (status, &refused["errors"][0]["code"]),
        (StatusCode::BAD_REQUEST, &json!(CODE_BAD_QUERY))
    );
    let (status, refused) = call(
        &state,
        "POST",
        &rules,
        r#"{"mode": "block", "configuration": {"target": "ip", "value": "not-an-ip"}}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let (status, _) = call(&state, "DELETE", &one, "").await;
    assert_eq!(status, StatusCode::OK);
    assert!(!text.lock().unwrap().contains(&id));
    let (status, _) = call(&state, "DELETE", &one, "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn get(uri: &str, token: Option<&str>) -> (StatusCode, String) {
    send("GET", uri, token).await
}

async fn send(method: &str, uri: &str, token: Option<&str>) -> (StatusCode, String) {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = router(state())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn parsed(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

#[tokio::test]
async fn no_token_or_a_wrong_one_is_401_and_another_zone_404() {
    let apps = format!("/zones/{ZONE}/spectrum/apps");
    for token in [None, Some("wrong"), Some("s3cret2"), Some("")] {
        let (status, body) = get(&apps, token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        let body = parsed(&body);
        assert_eq!(body["success"], false);
        assert_eq!(body["errors"][0]["code"], CODE_AUTH);
    }
    let (status, body) = get("/metrics", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = get("/zones/other/spectrum/apps", Some("s3cret")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(parsed(&body)["errors"][0]["code"], CODE_ROUTE);
    // Without the token nothing tells which routes or methods exist.
    for (method, uri) in [
        ("POST", "/metrics"),
        ("OPTIONS", apps.as_str()),
        ("DELETE", "/nope"),
        ("GET", "/zones/%FF/spectrum/apps"),
        ("GET", "/zones/z/spectrum/apps?page=1&page=2"),
    ] {
        let (status, body) = send(method, uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {body}");
    }
    // The scheme's name is case-insensitive.
    let request = Request::get(&apps).header("authorization", "bearer s3cret");
    let response = router(state())
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn refusals_after_the_token_are_envelopes_too() {
    let apps = format!("/zones/{ZONE}/spectrum/apps");
    for (method, uri, status, code) in [
        (
            "PATCH",
            apps.clone(),
            StatusCode::METHOD_NOT_ALLOWED,
            CODE_ROUTE,
        ),
        (
            "POST",
            apps.clone(),
            StatusCode::BAD_REQUEST,
            CODE_BAD_QUERY,
        ),
        (
            "GET",
            format!("{apps}?page=1&page=2"),
            StatusCode::BAD_REQUEST,
            CODE_BAD_QUERY,
        ),
        (
            "GET",
            "/zones/%FF/spectrum/apps".to_owned(),
            StatusCode::NOT_FOUND,
            CODE_ROUTE,
        ),
        ("GET", "/nope".to_owned(), StatusCode::NOT_FOUND, CODE_ROUTE),
    ] {
        let (got, body) = send(method, &uri, Some("s3cret")).await;
        assert_eq!(got, status, "{method} {uri}: {body}");
        let body = parsed(&body);
        assert_eq!(body["success"], false, "{method} {uri}");
        assert_eq!(body["errors"][0]["code"], code, "{method} {uri}");
    }
    // The last page and beyond: empty, never a panic.
    let (status, body) = get(&format!("{apps}?page={}", usize::MAX), Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(parsed(&body)["result"], json!([]));
}

#[tokio::test]
async fn apps_are_listed_in_cloudflare_shape_and_pages() {
    let (status, body) = get(&format!("/zones/{ZONE}/spectrum/apps"), Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK);
    let body = parsed(&body);
    assert_eq!(body["success"], true);
    assert_eq!(
        body["result_info"],
        json!({"page": 1, "per_page": 20, "count": 3, "total_count": 3})
    );
    let range = &body["result"][0];
    assert_eq!(range["id"], "0123456789abcdef0123456789abcdef");
    assert_eq!(range["protocol"], "tcp/1000-2000");
    assert_eq!(
        range["origin_direct"],
        json!(["tcp://192.0.2.1:3000-4000", "tcp://[2001:db8::1]:3000-4000"])
    );
    assert_eq!(
        range["edge_ips"],
        json!({"type": "dynamic", "connectivity": "all"})
    );
    let mail = &body["result"][1];
    assert_eq!(
        mail["origin_dns"],
        json!({"name": "mx.example.com", "ttl": 600, "type": "A"})
    );
    assert_eq!(mail["origin_port"], 2525);
    assert_eq!(mail["proxy_protocol"], "v1");
    assert_eq!(mail["ip_firewall"], true);
    assert_eq!(
        mail["edge_ips"],
        json!({"type": "static", "ips": ["198.51.100.200"]})
    );
    assert_eq!(body["result"][2]["edge_ips"]["connectivity"], "ipv6");

    let (_, page) = get(
        &format!("/zones/{ZONE}/spectrum/apps?page=2&per_page=2"),
        Some("s3cret"),
    )
    .await;
    let page = parsed(&page);
    assert_eq!(page["result"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["result"][0]["dns"]["name"], "dns.example.com");
    assert_eq!(page["result_info"]["count"], 1);
    let (_, beyond) = get(
        &format!("/zones/{ZONE}/spectrum/apps?page=9"),
        Some("s3cret"),
    )
    .await;
    assert_eq!(parsed(&beyond)["result"], json!([]));
    for bad in ["per_page=0", "per_page=101", "page=x", "page=0"] {
        let (status, body) = get(
            &format!("/zones/{ZONE}/spectrum/apps?{bad}"),
            Some("s3cret"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(parsed(&body)["errors"][0]["code"], CODE_BAD_QUERY);
    }
}

#[tokio::test]
async fn one_app_by_id_or_404() {
    let uri = format!("/zones/{ZONE}/spectrum/apps/0123456789ABCDEF0123456789ABCDEF");
    let (status, body) = get(&uri, Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(parsed(&body)["result"]["dns"]["name"], "range.example.com");
    let uri = format!("/zones/{ZONE}/spectrum/apps/ffffffffffffffffffffffffffffffff");
    let (status, body) = get(&uri, Some("s3cret")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(parsed(&body)["errors"][0]["code"], CODE_NOT_FOUND);
}

#[tokio::test]
async fn metrics_name_apps_and_verdicts() {
    let (status, text) = get("/metrics", Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert!(
        text.contains(
            "spectrum_events_total{app=\"range.example.com\",\
             app_id=\"0123456789abcdef0123456789abcdef\",verdict=\"to_origin\"} 12"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "spectrum_bytes_total{app=\"range.example.com\",\
             app_id=\"0123456789abcdef0123456789abcdef\",verdict=\"to_origin\"} 1200"
        ),
        "{text}"
    );
    assert!(
        text.contains("spectrum_events_total{app=\"-\",app_id=\"\",verdict=\"no_listener\"} 3")
    );
    assert!(text.contains("spectrum_apps 3"), "{text}");
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
}

/// The OpenAPI description in docs/ names every route the router
/// serves, with the codes the handlers answer.
#[test]
fn the_openapi_description_matches_the_routes() {
    let doc: Value = serde_json::from_str(include_str!("../../../docs/openapi.json")).unwrap();
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    let mut served = ENDPOINTS.to_vec();
    documented.sort_unstable();
    served.sort_unstable();
    assert_eq!(documented, served);
    for (path, item) in paths {
        let operations = item.as_object().expect("path item");
        for (method, operation) in operations {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let responses = operation["responses"].as_object().expect("responses");
            assert!(responses.contains_key("200"), "{method} {path}");
            assert!(
                responses.contains_key("401"),
                "{method} {path}: every route needs the token"
            );
        }
    }
    // The methods each route answers.
    for (path, methods) in [
        (APPS, &["get", "post"][..]),
        (APP, &["get", "put", "delete"][..]),
        (RULES, &["get", "post"][..]),
        (RULE, &["patch", "delete"][..]),
        (METRICS, &["get"][..]),
    ] {
        for method in methods {
            assert!(
                paths[path].get(*method).is_some(),
                "{method} {path} undocumented"
            );
        }
    }
    let schema = &doc["components"]["schemas"]["App"]["required"];
    // A direct-origin app and an origin_dns one.
    for app in &load_str(CONFIG, false).unwrap().config.apps[..2] {
        let app = serde_json::to_value(app_json(app)).unwrap();
        for field in schema.as_array().expect("required") {
            let field = field.as_str().expect("name");
            assert!(app.get(field).is_some(), "app_json lacks {field}: {app}");
        }
    }
}

/// A client that never finishes its headers is disconnected; a real
/// request on the same server is answered.
#[tokio::test]
async fn slow_headers_are_cut_and_requests_answered() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(serve_with(
        listener,
        router(state()),
        None,
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_millis(300),
    ));
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "the server kept a client with half its headers"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("spectrum_events_total"), "{answer}");
    let _ = stop_tx.send(());
    server.await.unwrap().unwrap();
}

#[test]
fn the_token_is_the_first_line_and_not_empty() {
    let dir = std::env::temp_dir().join(format!("api-token-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("token");
    std::fs::write(&file, "  0123456789abcdef  \nignored\n").unwrap();
    let chmod = |mode| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    for open in [0o644, 0o640, 0o604, 0o660] {
        chmod(open);
        let err = read_token(&file).unwrap_err().to_string();
        assert!(
            err.contains(&format!("mode {open:04o}")) && err.contains("chmod 600"),
            "{err}"
        );
        assert!(
            !err.contains("0123456789abcdef"),
            "no token in errors: {err}"
        );
    }
    chmod(0o600);
    assert_eq!(read_token(&file).unwrap(), "0123456789abcdef");
    chmod(0o400);
    assert_eq!(read_token(&file).unwrap(), "0123456789abcdef");
    chmod(0o600);
    for short in ["\n", "change-me\n"] {
        std::fs::write(&file, short).unwrap();
        let err = read_token(&file).unwrap_err().to_string();
        assert!(err.contains("at least 16"), "{err}");
    }
    assert!(read_token(&dir.join("missing")).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
