//! `GET /metrics`: the counters in OpenMetrics text; its refusals are
//! plain text, not the envelope.
use std::sync::Arc;

use axum::{
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};

use super::ApiState;

pub async fn get(State(state): State<ApiState>) -> Result<impl IntoResponse, (StatusCode, String)> {
    let config = state.config();
    let slots = config.apps.iter().map(|a| a.slot + 1).max().unwrap_or(0);
    // Reading the per-CPU map is a run of syscalls: off the async workers.
    let counters = Arc::clone(&state.counters);
    let rows = match tokio::task::spawn_blocking(move || counters(slots)).await {
        Ok(Ok(rows)) => rows,
        Ok(Err(err)) => {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                format!("counters unavailable: {err:#}\n"),
            ));
        }
        Err(err) => return Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n"))),
    };
    let flows = state
        .flow_entries
        .as_ref()
        .map(|entries| entries.borrow().clone());
    let text = crate::metrics::render(&config, &rows, state.dns.as_ref(), flows.as_ref())
        .map_err(|err| (StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    ))
}
