//! The management API (`api` in the config), shaped like Cloudflare's
//! Spectrum API: `GET /zones/{zone}/spectrum/apps[/{app_id}]` in
//! Cloudflare's envelope, and `GET /metrics` in OpenMetrics text.
//! Every request needs `Authorization: Bearer <token>` (the token file's
//! first line), checked by a layer before routing: none or a wrong one is
//! 401 whatever the path or method; then another zone is 404, another
//! method 405, a bad query 400, each in the envelope.
//!
//! Read-only for now: the apps are those the agent runs. Changes (POST,
//! PUT, DELETE, access rules) and live apply come later.
use std::{net::IpAddr, path::Path, sync::Arc};

use axum::{
    Json, Router,
    extract::{
        Path as UrlPath, Query, Request, State,
        rejection::{PathRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::model::{App, Config, Origin, OriginFamily};
use crate::datapath::stats::StatsRow;

/// Cloudflare's codes for what this API refuses.
const CODE_AUTH: u32 = 10000;
const CODE_ROUTE: u32 = 7003;
const CODE_NOT_FOUND: u32 = 10006;
const CODE_BAD_QUERY: u32 = 7000;
/// The shortest token accepted: a guessable one would open the API.
const MIN_TOKEN_LEN: usize = 16;
/// The routes (also checked against docs/openapi.json by a test).
const APPS: &str = "/zones/{zone}/spectrum/apps";
const APP: &str = "/zones/{zone}/spectrum/apps/{app_id}";
const METRICS: &str = "/metrics";
pub const ROUTES: [&str; 3] = [APPS, APP, METRICS];
/// Page size when `per_page` is absent, and the largest allowed.
const DEFAULT_PER_PAGE: usize = 20;
const MAX_PER_PAGE: usize = 100;

/// Where the counters come from: the agent's pinned map in production, a
/// fixed list in tests.
pub type CounterSource = Arc<dyn Fn() -> anyhow::Result<Vec<StatsRow>> + Send + Sync>;

#[derive(Clone)]
pub struct ApiState {
    config: Arc<Config>,
    token: Arc<str>,
    zone: Arc<str>,
    counters: CounterSource,
}

impl ApiState {
    pub fn new(config: Arc<Config>, token: &str, zone: &str, counters: CounterSource) -> Self {
        ApiState {
            config,
            token: token.into(),
            zone: zone.into(),
            counters,
        }
    }
}

/// The token: the file's first line, trimmed; one shorter than
/// MIN_TOKEN_LEN is refused.
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("api.token_file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    anyhow::ensure!(
        token.len() >= MIN_TOKEN_LEN,
        "api.token_file {}: the token on its first line is {} bytes; use at least \
         {MIN_TOKEN_LEN} random ones (e.g. `openssl rand -hex 24`)",
        path.display(),
        token.len()
    );
    Ok(token)
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route(APPS, get(list_apps))
        .route(APP, get(get_app))
        .route(METRICS, get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Outside the routes: no answer of any kind without the token.
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    match unauthorized(&state, request.headers()) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

/// Serves `router` on `listener` until `stop` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(stop)
        .await
}

fn envelope(status: StatusCode, result: Value, result_info: Option<Value>) -> Response {
    let mut body = json!({"success": true, "errors": [], "messages": [], "result": result});
    if let Some(info) = result_info {
        body["result_info"] = info;
    }
    (status, Json(body)).into_response()
}

fn error(status: StatusCode, code: u32, message: impl Into<String>) -> Response {
    let body = json!({
        "success": false,
        "errors": [{"code": code, "message": message.into()}],
        "messages": [],
        "result": null,
    });
    (status, Json(body)).into_response()
}

/// The token check, in constant time over the token's length: the
/// refusal, or None when the request may go on.
fn unauthorized(state: &ApiState, headers: &HeaderMap) -> Option<Response> {
    // The scheme's name is case-insensitive (RFC 9110).
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map_or("", |(_, token)| token.trim());
    let want = state.token.as_bytes();
    let same = given.len() == want.len()
        && given
            .bytes()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    (!same).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            CODE_AUTH,
            "Authentication error: send Authorization: Bearer <api token>",
        )
    })
}

/// The refusal of a path in another zone, or None.
fn other_zone(state: &ApiState, zone: &str, path: &str) -> Option<Response> {
    (zone != &*state.zone).then(|| {
        error(
            StatusCode::NOT_FOUND,
            CODE_ROUTE,
            format!("Could not route to {path}, perhaps your object identifier is invalid?"),
        )
    })
}

#[derive(Deserialize)]
struct Page {
    page: Option<String>,
    per_page: Option<String>,
}

/// `page` and `per_page` as numbers in range, or the reason they are not.
fn page_numbers(page: &Page) -> Result<(usize, usize), String> {
    let number = |name: &str, text: &Option<String>, default: usize, max: usize| match text {
        None => Ok(default),
        Some(t) => match t.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(format!("{name} {t:?}: expected a number from 1 to {max}")),
        },
    };
    Ok((
        number("page", &page.page, 1, usize::MAX)?,
        number("per_page", &page.per_page, DEFAULT_PER_PAGE, MAX_PER_PAGE)?,
    ))
}

/// A path that did not decode (not UTF-8): no such object.
fn bad_path(rejection: PathRejection) -> Response {
    error(StatusCode::NOT_FOUND, CODE_ROUTE, rejection.body_text())
}

async fn list_apps(
    State(state): State<ApiState>,
    zone: Result<UrlPath<String>, PathRejection>,
    page: Result<Query<Page>, QueryRejection>,
) -> Response {
    let UrlPath(zone) = match zone {
        Ok(zone) => zone,
        Err(rejection) => return bad_path(rejection),
    };
    let path = format!("/zones/{zone}/spectrum/apps");
    if let Some(refused) = other_zone(&state, &zone, &path) {
        return refused;
    }
    let page = match page {
        Ok(Query(page)) => page,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                CODE_BAD_QUERY,
                rejection.body_text(),
            );
        }
    };
    let (page, per_page) = match page_numbers(&page) {
        Ok(numbers) => numbers,
        Err(reason) => return error(StatusCode::BAD_REQUEST, CODE_BAD_QUERY, reason),
    };
    let apps = &state.config.apps;
    let start = (page - 1).saturating_mul(per_page).min(apps.len());
    let end = start.saturating_add(per_page).min(apps.len());
    let result: Vec<Value> = apps[start..end].iter().map(app_json).collect();
    let info = json!({
        "page": page,
        "per_page": per_page,
        "count": result.len(),
        "total_count": apps.len(),
    });
    envelope(StatusCode::OK, Value::Array(result), Some(info))
}

async fn get_app(
    State(state): State<ApiState>,
    ids: Result<UrlPath<(String, String)>, PathRejection>,
) -> Response {
    let UrlPath((zone, app_id)) = match ids {
        Ok(ids) => ids,
        Err(rejection) => return bad_path(rejection),
    };
    let path = format!("/zones/{zone}/spectrum/apps/{app_id}");
    if let Some(refused) = other_zone(&state, &zone, &path) {
        return refused;
    }
    let wanted = app_id.to_ascii_lowercase();
    match state
        .config
        .apps
        .iter()
        .find(|a| a.id.to_string() == wanted)
    {
        Some(app) => envelope(StatusCode::OK, app_json(app), None),
        None => error(
            StatusCode::NOT_FOUND,
            CODE_NOT_FOUND,
            format!("no app {app_id} in zone {zone}"),
        ),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, CODE_ROUTE, "no such endpoint")
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        CODE_ROUTE,
        "this endpoint answers GET only (the API is read-only for now)",
    )
}

/// An app in Cloudflare's shape (what a `GET` of the app returns there).
pub fn app_json(app: &App) -> Value {
    let bracket = |ip: &IpAddr| match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let edge_ips = if app.edge_ips_dynamic {
        let v4 = app.edge_addrs.iter().any(IpAddr::is_ipv4);
        let v6 = app.edge_addrs.iter().any(IpAddr::is_ipv6);
        let connectivity = match (v4, v6) {
            (true, false) => "ipv4",
            (false, true) => "ipv6",
            _ => "all",
        };
        json!({"type": "dynamic", "connectivity": connectivity})
    } else {
        let ips: Vec<String> = app.edge_addrs.iter().map(IpAddr::to_string).collect();
        json!({"type": "static", "ips": ips})
    };
    let mut value = json!({
        "id": app.id.to_string(),
        "protocol": format!("{}/{}", app.protocol, app.edge_ports),
        "dns": {"type": app.dns.kind.to_string(), "name": app.dns.name},
        "proxy_protocol": app.proxy_protocol.to_string(),
        "tls": app.tls.to_string(),
        "traffic_type": "direct",
        "ip_firewall": app.ip_firewall,
        "argo_smart_routing": false,
        "edge_ips": edge_ips,
        // Not part of Cloudflare's shape: the addresses in use.
        "edge_addresses": app.edge_addrs.iter().map(IpAddr::to_string).collect::<Vec<_>>(),
    });
    match &app.origin {
        Origin::Direct(origins) => {
            let list: Vec<String> = origins
                .iter()
                .map(|o| format!("{}://{}:{}", app.protocol, bracket(&o.ip), o.ports))
                .collect();
            value["origin_direct"] = list.into();
        }
        Origin::Dns(dns) => {
            let kind = match dns.family {
                OriginFamily::Any => "",
                OriginFamily::V4 => "A",
                OriginFamily::V6 => "AAAA",
            };
            value["origin_dns"] = json!({"name": dns.name, "ttl": dns.ttl, "type": kind});
            value["origin_port"] = if dns.ports.start == dns.ports.end {
                dns.ports.start.into()
            } else {
                dns.ports.to_string().into()
            };
        }
    }
    value
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CounterLabels {
    app: String,
    app_id: String,
    verdict: String,
}

async fn metrics(State(state): State<ApiState>) -> Response {
    // Reading the per-CPU map is a run of syscalls: off the async workers.
    let counters = Arc::clone(&state.counters);
    let rows = match tokio::task::spawn_blocking(move || counters()).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(err)) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("counters unavailable: {err:#}\n"),
            )
                .into_response();
        }
        Err(err) => {
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")).into_response();
        }
    };
    match render_metrics(&state.config, &rows) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")).into_response(),
    }
}

/// The counters in OpenMetrics text: per app and verdict, packets (or
/// connections and flows, for the verdicts that count those) and bytes.
/// Label values are app names, which validation limits to letters, digits,
/// '.', '-' and '*': nothing there needs escaping.
pub fn render_metrics(config: &Config, rows: &[StatsRow]) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("spectrum");
    let packets = Family::<CounterLabels, Counter>::default();
    let bytes = Family::<CounterLabels, Counter>::default();
    let apps = Gauge::<i64>::default();
    apps.set(config.apps.len() as i64);
    registry.register(
        "events",
        "Packets, connections or flows by app and verdict (the verdict says which)",
        packets.clone(),
    );
    registry.register("bytes", "Bytes by app and verdict", bytes.clone());
    registry.register("apps", "Apps the agent runs", apps);
    for row in rows {
        let (name, id) = match row.app.and_then(|i| config.apps.get(i as usize)) {
            Some(app) => (app.dns.name.clone(), app.id.to_string()),
            None => ("-".to_owned(), String::new()),
        };
        let labels = CounterLabels {
            app: name,
            app_id: id,
            verdict: row.verdict.name().to_owned(),
        };
        packets.get_or_create(&labels).inc_by(row.packets);
        bytes.get_or_create(&labels).inc_by(row.bytes);
    }
    let mut text = String::new();
    encode(&mut text, &registry)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use proxy_common::Verdict;
    use tower::ServiceExt as _;

    use super::*;
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
        ApiState::new(config, "s3cret", ZONE, Arc::new(move || Ok(rows.clone())))
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
                "POST",
                apps.clone(),
                StatusCode::METHOD_NOT_ALLOWED,
                CODE_ROUTE,
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
        let doc: Value = serde_json::from_str(include_str!("../../docs/openapi.json")).unwrap();
        let paths = doc["paths"].as_object().expect("paths");
        let mut documented: Vec<&str> = paths.keys().map(String::as_str).collect();
        let mut served = ROUTES.to_vec();
        documented.sort_unstable();
        served.sort_unstable();
        assert_eq!(documented, served);
        for (path, item) in paths {
            let responses = item["get"]["responses"].as_object().expect("responses");
            assert!(responses.contains_key("200"), "{path}");
            assert!(
                responses.contains_key("401"),
                "{path}: every route needs the token"
            );
        }
        let schema = &doc["components"]["schemas"]["App"]["required"];
        // A direct-origin app and an origin_dns one.
        for app in &load_str(CONFIG, false).unwrap().config.apps[..2] {
            let app = app_json(app);
            for field in schema.as_array().expect("required") {
                let field = field.as_str().expect("name");
                assert!(app.get(field).is_some(), "app_json lacks {field}: {app}");
            }
        }
    }

    #[test]
    fn the_token_is_the_first_line_and_not_empty() {
        let dir = std::env::temp_dir().join(format!("api-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("token");
        std::fs::write(&file, "  0123456789abcdef  \nignored\n").unwrap();
        assert_eq!(read_token(&file).unwrap(), "0123456789abcdef");
        for short in ["\n", "change-me\n"] {
            std::fs::write(&file, short).unwrap();
            let err = read_token(&file).unwrap_err().to_string();
            assert!(err.contains("at least 16"), "{err}");
        }
        assert!(read_token(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
