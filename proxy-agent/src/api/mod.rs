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
//! applies the change live and only then writes the file back (a change
//! that fails to apply is rolled back, the file untouched); the answer
//! says how it went.
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
use crate::proxy::routes::Throttle;
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
    /// Refused requests are logged one per 10 s, with the count of the
    /// rest: a token guesser cannot flood the log.
    auth_refused: Arc<Throttle>,
}

/// The client's address, put on each request by the accept loop.
#[derive(Debug, Clone, Copy)]
struct Peer(std::net::SocketAddr);

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
            auth_refused: Arc::default(),
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
/// MIN_TOKEN_LEN is refused, and so is a file that group or others may
/// read (sshd's rule for private keys: a token anyone on the host can read
/// opens the API to them).
pub fn read_token(path: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .map_err(|e| anyhow::anyhow!("api.token_file {}: {e}", path.display()))?
        .permissions()
        .mode();
    anyhow::ensure!(
        mode & 0o077 == 0,
        "api.token_file {}: mode {:04o} lets group or others read the token; \
         make it readable by its owner only (chmod 600)",
        path.display(),
        mode & 0o7777
    );
    // The agent's one reader: a regular file, no symlink, bounded; its
    // errors never quote the file.
    let bytes = crate::files::read_regular(path, TOKEN_FILE_LIMIT)
        .map_err(|e| anyhow::anyhow!("api.token_file: {e}"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("api.token_file {}: not UTF-8 text", path.display()))?;
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

/// The largest token file read (a token is one line of tens of bytes).
const TOKEN_FILE_LIMIT: u64 = 4096;

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
        Err(refused) => {
            if let Some(skipped) = state.auth_refused.allow() {
                let peer = request.extensions().get::<Peer>().map(|p| p.0);
                tracing::warn!(
                    client = ?peer,
                    path = %request.uri().path(),
                    skipped,
                    "management API: request without the right token refused (401){}",
                    if skipped == 0 {
                        String::new()
                    } else {
                        format!(" (and {skipped} more since the last such line; one line per 10 s)")
                    }
                );
            }
            refused.into_response()
        }
    }
}

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` (over TLS with `tls`, see
/// [`tls_config`]) until `stop` resolves, then lets the requests in
/// progress finish (the caller bounds how long).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    serve_with(listener, router(state), tls, stop, HEADER_READ_TIMEOUT).await
}

/// The API's TLS (`api.tls_cert`, `api.tls_key`): TLS 1.2 and 1.3 with the
/// edge's suites; fails naming the field when a file does not load.
// The files go through the agent's one reader (`edge_server_config`), at
// start only.
pub fn tls_config(tls: &crate::config::model::ApiTls) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    use anyhow::Context as _;
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&tls.key)
        .map_err(|e| anyhow::anyhow!("api.tls_key {}: {e}", tls.key.display()))?
        .permissions()
        .mode();
    anyhow::ensure!(
        mode & 0o077 == 0,
        "api.tls_key {}: mode {:04o} lets group or others read the key; \
         make it readable by its owner only (chmod 600)",
        tls.key.display(),
        mode & 0o7777
    );
    crate::proxy::tls::edge_server_config(&[crate::proxy::tls::CertKeyPaths {
        cert: tls.cert.clone(),
        key: tls.key.clone(),
    }])
    .with_context(|| {
        format!(
            "api.tls_cert {} / api.tls_key {}",
            tls.cert.display(),
            tls.key.display()
        )
    })
}

/// HTTP/1.1 on `listener` (in TLS with `tls`), a connection per task; a
/// client that has not finished the TLS handshake, then sent a request's
/// headers, within `header_timeout` each is disconnected.
async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    header_timeout: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => (stream, peer),
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
        let (stream, peer) = stream;
        let service = hyper_util::service::TowerToHyperService::new(
            app.clone().layer(axum::Extension(Peer(peer))),
        );
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout);
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let served = match tls {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
                Some(tls) => {
                    let stream = match tokio::time::timeout(header_timeout, tls.accept(stream))
                        .await
                    {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(err)) => {
                            return tracing::debug!(%peer, "management API: TLS handshake: {err}");
                        }
                        Err(_) => {
                            return tracing::debug!(%peer, "management API: TLS handshake timed out");
                        }
                    };
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(stream), service))
                        .await
                }
            };
            if let Err(err) = served {
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
