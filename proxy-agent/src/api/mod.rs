//! The management API (`api` in the config), shaped like Cloudflare's
//! Spectrum API: apps at `/zones/{zone}/spectrum/apps[/{app_id}]` (GET,
//! POST, PUT, DELETE), IP Access Rules at
//! `/zones/{zone}/firewall/access_rules/rules[/{rule_id}]` (GET, POST,
//! PATCH, DELETE), in Cloudflare's envelope, and `GET /metrics` in
//! OpenMetrics text. Every request needs `Authorization: Bearer <token>`
//! (the token file's first line), checked by a layer before routing: none
//! or a wrong one is 401 whatever the path or method; then another zone is
//! 404, another method 405, a bad query or body 400, each in the envelope.
//!
//! A change is an edit of the config document sent to the agent's main
//! loop ([`live::ChangeRequest`]), which validates the whole config, writes
//! the file back and applies the change live; the answer says how it went.
use std::{net::IpAddr, path::Path, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{
        Path as UrlPath, Query, Request, State,
        rejection::{PathRejection, QueryRejection},
    },
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, patch},
};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

use crate::config::edit::{Document, EditError, now_rfc3339};
use crate::config::model::{AccessRule, App, Config, Origin, OriginFamily, RuleAction, RuleTarget};
use crate::datapath::stats::StatsRow;
use crate::dns_server::DnsAnswers;
use crate::live::{ChangeError, ChangeRequest, Edit};

/// Cloudflare's codes for what this API refuses.
const CODE_AUTH: u32 = 10000;
const CODE_ROUTE: u32 = 7003;
const CODE_NOT_FOUND: u32 = 10006;
const CODE_BAD_QUERY: u32 = 7000;
/// A value the API refuses that has no Spectrum code of its own.
const CODE_INVALID: u32 = 1004;
/// A change that validated but could not be put in force.
const CODE_APPLY: u32 = 10002;
/// The shortest token accepted: a guessable one would open the API.
const MIN_TOKEN_LEN: usize = 16;
/// The routes (also checked against docs/openapi.json by a test).
const APPS: &str = "/zones/{zone}/spectrum/apps";
const APP: &str = "/zones/{zone}/spectrum/apps/{app_id}";
const RULES: &str = "/zones/{zone}/firewall/access_rules/rules";
const RULE: &str = "/zones/{zone}/firewall/access_rules/rules/{rule_id}";
const METRICS: &str = "/metrics";
pub const ROUTES: [&str; 5] = [APPS, APP, RULES, RULE, METRICS];
/// The largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// How long a change may take to be validated and applied.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);
/// Page size when `per_page` is absent, and the largest allowed.
const DEFAULT_PER_PAGE: usize = 20;
const MAX_PER_PAGE: usize = 100;

/// Where the counters come from: the agent's pinned map in production, a
/// fixed list in tests. The argument is how many app slots to read.
pub type CounterSource = Arc<dyn Fn(u32) -> anyhow::Result<Vec<StatsRow>> + Send + Sync>;

#[derive(Clone)]
pub struct ApiState {
    /// The config in force, as the agent publishes it after each change.
    config: watch::Receiver<Arc<Config>>,
    token: Arc<str>,
    zone: Arc<str>,
    counters: CounterSource,
    /// Where changes go; without it every change is refused (503).
    changes: Option<mpsc::Sender<ChangeRequest>>,
    dns: Option<DnsAnswers>,
}

impl ApiState {
    pub fn new(
        config: watch::Receiver<Arc<Config>>,
        token: &str,
        zone: &str,
        counters: CounterSource,
    ) -> Self {
        ApiState {
            config,
            token: token.into(),
            zone: zone.into(),
            counters,
            changes: None,
            dns: None,
        }
    }

    /// Accepts changes, sent to `changes` (the agent's main loop).
    pub fn with_changes(mut self, changes: mpsc::Sender<ChangeRequest>) -> Self {
        self.changes = Some(changes);
        self
    }

    /// Reports the DNS server's answers in `/metrics`.
    pub fn with_dns_answers(mut self, dns: Option<DnsAnswers>) -> Self {
        self.dns = dns;
        self
    }

    fn config(&self) -> Arc<Config> {
        Arc::clone(&self.config.borrow())
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
        .route(APPS, get(list_apps).post(create_app))
        .route(APP, get(get_app).put(replace_app).delete(delete_app))
        .route(RULES, get(list_rules).post(create_rule))
        .route(RULE, patch(patch_rule).delete(delete_rule))
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

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `stop` resolves, then lets the
/// requests in progress finish (the caller bounds how long).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, router(state), stop, HEADER_READ_TIMEOUT).await
}

/// HTTP/1.1 on `listener`, a connection per task; a client that has not
/// sent a request's headers within `header_timeout` is disconnected.
async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    header_timeout: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of descriptors, a connection reset while queued:
                    // wait a little rather than spin.
                    tracing::warn!("management API: accept: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout);
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!("management API connection: {err}");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
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

/// A refusal on its way out of a helper (boxed: a `Response` is large).
type Refusal = Box<Response>;

/// The zone of a collection path, or the refusal.
fn collection_zone(
    state: &ApiState,
    zone: Result<UrlPath<String>, PathRejection>,
    tail: &str,
) -> Result<String, Refusal> {
    let UrlPath(zone) = zone.map_err(|r| Box::new(bad_path(r)))?;
    match other_zone(state, &zone, &format!("/zones/{zone}/{tail}")) {
        Some(refused) => Err(Box::new(refused)),
        None => Ok(zone),
    }
}

/// The zone and object id of an object path, or the refusal.
fn object_ids(
    state: &ApiState,
    ids: Result<UrlPath<(String, String)>, PathRejection>,
    tail: &str,
) -> Result<(String, String), Refusal> {
    let UrlPath((zone, id)) = ids.map_err(|r| Box::new(bad_path(r)))?;
    match other_zone(state, &zone, &format!("/zones/{zone}/{tail}/{id}")) {
        Some(refused) => Err(Box::new(refused)),
        None => Ok((zone, id)),
    }
}

/// One page of `items` in the envelope, or the refusal of a bad query.
fn page_of(items: Vec<Value>, page: Result<Query<Page>, QueryRejection>) -> Response {
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
    let total = items.len();
    let start = (page - 1).saturating_mul(per_page).min(total);
    let end = start.saturating_add(per_page).min(total);
    let result: Vec<Value> = items.into_iter().skip(start).take(end - start).collect();
    let info = json!({
        "page": page,
        "per_page": per_page,
        "count": result.len(),
        "total_count": total,
    });
    envelope(StatusCode::OK, Value::Array(result), Some(info))
}

async fn list_apps(
    State(state): State<ApiState>,
    zone: Result<UrlPath<String>, PathRejection>,
    page: Result<Query<Page>, QueryRejection>,
) -> Response {
    if let Err(refused) = collection_zone(&state, zone, "spectrum/apps") {
        return *refused;
    }
    page_of(state.config().apps.iter().map(app_json).collect(), page)
}

async fn get_app(
    State(state): State<ApiState>,
    ids: Result<UrlPath<(String, String)>, PathRejection>,
) -> Response {
    let (zone, app_id) = match object_ids(&state, ids, "spectrum/apps") {
        Ok(ids) => ids,
        Err(refused) => return *refused,
    };
    match find_app(&state.config(), &app_id) {
        Some(app) => envelope(StatusCode::OK, app_json(app), None),
        None => no_such("app", &app_id, &zone),
    }
}

async fn create_app(
    State(state): State<ApiState>,
    zone: Result<UrlPath<String>, PathRejection>,
    body: Bytes,
) -> Response {
    if let Err(refused) = collection_zone(&state, zone, "spectrum/apps") {
        return *refused;
    }
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let now = now_rfc3339();
    let edit: Edit = Box::new(move |doc| doc.add_app(body, &now));
    match submit(&state, edit).await {
        Ok((config, id)) => app_answer(&config, &id),
        Err(refused) => *refused,
    }
}

async fn replace_app(
    State(state): State<ApiState>,
    ids: Result<UrlPath<(String, String)>, PathRejection>,
    body: Bytes,
) -> Response {
    let (_, app_id) = match object_ids(&state, ids, "spectrum/apps") {
        Ok(ids) => ids,
        Err(refused) => return *refused,
    };
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let now = now_rfc3339();
    let edit: Edit = Box::new(move |doc| {
        doc.replace_app(&app_id, body, &now)?;
        Ok(app_id)
    });
    match submit(&state, edit).await {
        Ok((config, id)) => app_answer(&config, &id),
        Err(refused) => *refused,
    }
}

async fn delete_app(
    State(state): State<ApiState>,
    ids: Result<UrlPath<(String, String)>, PathRejection>,
) -> Response {
    delete_object(&state, ids, "spectrum/apps", Document::delete_app).await
}

async fn list_rules(
    State(state): State<ApiState>,
    zone: Result<UrlPath<String>, PathRejection>,
    page: Result<Query<Page>, QueryRejection>,
) -> Response {
    if let Err(refused) = collection_zone(&state, zone, "firewall/access_rules/rules") {
        return *refused;
    }
    page_of(
        state.config().access_rules.iter().map(rule_json).collect(),
        page,
    )
}

async fn create_rule(
    State(state): State<ApiState>,
    zone: Result<UrlPath<String>, PathRejection>,
    body: Bytes,
) -> Response {
    if let Err(refused) = collection_zone(&state, zone, "firewall/access_rules/rules") {
        return *refused;
    }
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let now = now_rfc3339();
    let (stored, keep) = rule_slot();
    let edit: Edit = Box::new(move |doc| {
        let id = doc.add_rule(body, &now)?;
        keep_rule(&keep, doc, &id);
        Ok(id)
    });
    match submit(&state, edit).await {
        Ok((config, id)) => rule_answer(&config, &id, &stored),
        Err(refused) => *refused,
    }
}

async fn patch_rule(
    State(state): State<ApiState>,
    ids: Result<UrlPath<(String, String)>, PathRejection>,
    body: Bytes,
) -> Response {
    let (_, rule_id) = match object_ids(&state, ids, "firewall/access_rules/rules") {
        Ok(ids) => ids,
        Err(refused) => return *refused,
    };
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(refused) => return *refused,
    };
    let now = now_rfc3339();
    let (stored, keep) = rule_slot();
    let edit: Edit = Box::new(move |doc| {
        doc.patch_rule(&rule_id, body, &now)?;
        keep_rule(&keep, doc, &rule_id);
        Ok(rule_id)
    });
    match submit(&state, edit).await {
        Ok((config, id)) => rule_answer(&config, &id, &stored),
        Err(refused) => *refused,
    }
}

async fn delete_rule(
    State(state): State<ApiState>,
    ids: Result<UrlPath<(String, String)>, PathRejection>,
) -> Response {
    delete_object(
        &state,
        ids,
        "firewall/access_rules/rules",
        Document::delete_rule,
    )
    .await
}

/// Deletes the object the path names with `delete`; answers its id.
async fn delete_object(
    state: &ApiState,
    ids: Result<UrlPath<(String, String)>, PathRejection>,
    tail: &str,
    delete: fn(&mut Document, &str) -> Result<(), EditError>,
) -> Response {
    let (_, id) = match object_ids(state, ids, tail) {
        Ok(ids) => ids,
        Err(refused) => return *refused,
    };
    let edit: Edit = Box::new(move |doc| {
        delete(doc, &id)?;
        Ok(id)
    });
    match submit(state, edit).await {
        Ok((_, id)) => envelope(StatusCode::OK, json!({"id": id}), None),
        Err(refused) => *refused,
    }
}

/// The app with `id` (any case), if it runs.
fn find_app<'a>(config: &'a Config, id: &str) -> Option<&'a App> {
    let wanted = id.to_ascii_lowercase();
    config.apps.iter().find(|a| a.id.to_string() == wanted)
}

fn no_such(kind: &str, id: &str, zone: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        CODE_NOT_FOUND,
        format!("no {kind} {id} in zone {zone}"),
    )
}

/// The app a change created or changed, as it now runs.
fn app_answer(config: &Config, id: &str) -> Response {
    match find_app(config, id) {
        Some(app) => envelope(StatusCode::OK, app_json(app), None),
        None => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            CODE_APPLY,
            format!("app {id} accepted but not found afterwards"),
        ),
    }
}

/// Where an edit leaves the rule it wrote, as the file holds it.
type RuleSlot = Arc<std::sync::Mutex<Option<Value>>>;

fn rule_slot() -> (RuleSlot, RuleSlot) {
    let slot = RuleSlot::default();
    (Arc::clone(&slot), slot)
}

/// Keeps the file's entry of rule `id` in `slot`.
fn keep_rule(slot: &RuleSlot, doc: &Document, id: &str) {
    if let Ok(mut slot) = slot.lock() {
        *slot = doc.rule(id);
    }
}

/// The rule a change created or changed, as it now runs; a rule of a mode
/// Spectrum ignores (challenges) is kept in the file but not in force, and
/// is answered as the file holds it.
fn rule_answer(config: &Config, id: &str, stored: &RuleSlot) -> Response {
    if let Some(rule) = config
        .access_rules
        .iter()
        .find(|r| r.id.eq_ignore_ascii_case(id))
    {
        return envelope(StatusCode::OK, rule_json(rule), None);
    }
    let mut result = stored
        .lock()
        .ok()
        .and_then(|mut slot| slot.take())
        .unwrap_or_else(|| json!({}));
    result["id"] = id.into();
    if result.get("notes").is_none_or(Value::is_null) {
        result["notes"] = "".into();
    }
    for field in ["created_on", "modified_on"] {
        if result.get(field).is_none() {
            result[field] = Value::Null;
        }
    }
    envelope(StatusCode::OK, result, None)
}

/// A request body as JSON, or the 400 naming what is wrong with it.
fn json_body(bytes: &Bytes) -> Result<Value, Refusal> {
    if bytes.len() > MAX_BODY {
        return Err(Box::new(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            CODE_BAD_QUERY,
            format!("the body is {} bytes; at most {MAX_BODY}", bytes.len()),
        )));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            CODE_BAD_QUERY,
            format!("the body is not JSON: {e}"),
        ))
    })
}

/// Hands `edit` to the agent and waits for its outcome: the config in
/// force afterwards and the id the edit named, or the refusal.
async fn submit(state: &ApiState, edit: Edit) -> Result<(Arc<Config>, String), Refusal> {
    let unavailable = |message: &str| {
        Box::new(error(
            StatusCode::SERVICE_UNAVAILABLE,
            CODE_APPLY,
            message.to_owned(),
        ))
    };
    let Some(changes) = &state.changes else {
        return Err(unavailable("this API does not accept changes"));
    };
    let (reply, outcome) = oneshot::channel();
    changes
        .try_send(ChangeRequest { edit, reply })
        .map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => unavailable("too many changes queued; try again"),
            mpsc::error::TrySendError::Closed(_) => unavailable("the agent is shutting down"),
        })?;
    match tokio::time::timeout(CHANGE_TIMEOUT, outcome).await {
        Ok(Ok(Ok(done))) => Ok(done),
        Ok(Ok(Err(refused))) => Err(Box::new(change_refused(refused))),
        Ok(Err(_)) => Err(unavailable("the agent is shutting down")),
        Err(_) => Err(unavailable(
            "the change is taking too long; check the agent's log",
        )),
    }
}

/// A refused change in the envelope: one error per problem.
fn change_refused(refused: ChangeError) -> Response {
    match refused {
        ChangeError::Edit(EditError::NotFound { kind, id }) => error(
            StatusCode::NOT_FOUND,
            CODE_NOT_FOUND,
            format!("no {kind} {id}"),
        ),
        ChangeError::Edit(EditError::Shape { field, message })
        | ChangeError::Parse { field, message } => {
            let at = if field.is_empty() {
                String::new()
            } else {
                format!("{field}: ")
            };
            error(
                StatusCode::BAD_REQUEST,
                CODE_BAD_QUERY,
                format!("{at}{message}"),
            )
        }
        ChangeError::Edit(EditError::Invalid {
            field,
            value,
            message,
        }) => error(
            StatusCode::BAD_REQUEST,
            CODE_INVALID,
            format!("{field}: {value:?}: {message}"),
        ),
        ChangeError::Invalid(errors) => {
            let errors: Vec<Value> = errors
                .iter()
                .map(|e| json!({"code": e.code.unwrap_or(CODE_INVALID), "message": e.to_string()}))
                .collect();
            let body = json!({"success": false, "errors": errors, "messages": [], "result": null});
            (StatusCode::BAD_REQUEST, Json(body)).into_response()
        }
        ChangeError::Refused(reason) => error(StatusCode::BAD_REQUEST, CODE_INVALID, reason),
        ChangeError::Apply(reason) => error(StatusCode::INTERNAL_SERVER_ERROR, CODE_APPLY, reason),
    }
}

/// A rule in Cloudflare's shape.
pub fn rule_json(rule: &AccessRule) -> Value {
    let mode = match rule.action {
        RuleAction::Allow => "whitelist",
        RuleAction::Block => "block",
    };
    let (target, value) = match &rule.target {
        RuleTarget::Ip(ip @ IpAddr::V4(_)) => ("ip", ip.to_string()),
        RuleTarget::Ip(ip) => ("ip6", ip.to_string()),
        RuleTarget::Range(net) => ("ip_range", net.to_string()),
        RuleTarget::Asn(asn) => ("asn", format!("AS{asn}")),
        RuleTarget::Country(code) => ("country", code.clone()),
    };
    json!({
        "id": rule.id,
        "mode": mode,
        "configuration": {"target": target, "value": value},
        "notes": rule.notes.clone().unwrap_or_default(),
        "created_on": rule.created_on,
        "modified_on": rule.modified_on,
    })
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, CODE_ROUTE, "no such endpoint")
}

async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        CODE_ROUTE,
        "this endpoint does not answer that method",
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
        "created_on": app.created_on,
        "modified_on": app.modified_on,
    });
    if let Some(mode) = app.datapath {
        // Not Cloudflare's: where this app's fast path runs.
        value["datapath"] = mode.to_string().into();
    }
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

async fn metrics(State(state): State<ApiState>) -> Response {
    let config = state.config();
    let slots = config.apps.iter().map(|a| a.slot + 1).max().unwrap_or(0);
    // Reading the per-CPU map is a run of syscalls: off the async workers.
    let counters = Arc::clone(&state.counters);
    let rows = match tokio::task::spawn_blocking(move || counters(slots)).await {
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
    match crate::metrics::render(&config, &rows, state.dns.as_ref()) {
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
        let mut served = ROUTES.to_vec();
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
            let app = app_json(app);
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
