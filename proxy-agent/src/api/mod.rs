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
//! loop ([`crate::agent::plan::ChangeRequest`]), which validates the whole config,
//! writes the file back and applies the change live; the answer says how
//! it went.
//!
//! Here: the router, its state, the token check and the accept loop. The
//! envelope and refusals are in `error`, what handlers take from a request
//! in `extract`, changes in `change`, one file per resource.
use std::{path::Path, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::{get, patch},
};
use tokio::sync::{mpsc, watch};

use crate::config::model::Config;
use crate::{
    agent::plan::ChangeRequest,
    dns::DnsAnswers,
    kernel::{conntrack_gc::FlowView, stats::StatsRow},
};
use error::{ApiError, CODE_AUTH, CODE_ROUTE};

mod apps;
mod change;
mod error;
mod extract;
mod metrics;
mod pem;
mod rules;
#[cfg(test)]
mod tests;

pub use apps::{AppJson, app_json};
pub use rules::{RuleJson, rule_json};

/// The shortest token accepted: a guessable one would open the API.
const MIN_TOKEN_LEN: usize = 16;
/// The HTTP endpoints (also checked against docs/openapi.json by a test).
const APPS: &str = "/zones/{zone}/spectrum/apps";
const APP: &str = "/zones/{zone}/spectrum/apps/{app_id}";
const RULES: &str = "/zones/{zone}/firewall/access_rules/rules";
const RULE: &str = "/zones/{zone}/firewall/access_rules/rules/{rule_id}";
const METRICS: &str = "/metrics";
pub const ENDPOINTS: [&str; 5] = [APPS, APP, RULES, RULE, METRICS];

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
    /// The flow tables' fill, as the flow collector last saw it.
    flow_entries: Option<watch::Receiver<FlowView>>,
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
            flow_entries: None,
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

    /// Reports the flow tables' fill in `/metrics`.
    pub fn with_flow_entries(mut self, entries: watch::Receiver<FlowView>) -> Self {
        self.flow_entries = Some(entries);
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
        .route(APPS, get(apps::list).post(apps::create))
        .route(APP, get(apps::get).put(apps::replace).delete(apps::delete))
        .route(RULES, get(rules::list).post(rules::create))
        .route(RULE, patch(rules::patch).delete(rules::delete))
        .route(METRICS, get(metrics::get))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Outside the routes: no answer of any kind without the token.
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

async fn require_token(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    match authorized(&state, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refused) => refused.into_response(),
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

/// The token check, in constant time over the token's length.
fn authorized(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
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
    if same {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNAUTHORIZED,
        CODE_AUTH,
        "Authentication error: send Authorization: Bearer <api token>",
    ))
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, CODE_ROUTE, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        CODE_ROUTE,
        "this endpoint does not answer that method",
    )
}
