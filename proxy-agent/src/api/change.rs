//! A change is an edit of the config document handed to the agent's main
//! loop, which validates, applies and then writes it; here the edit is sent
//! and the outcome awaited, and a refused change becomes the envelope's
//! errors (one per problem).
use std::{sync::Arc, time::Duration};

use axum::http::StatusCode;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::ApiState;
use super::error::{
    ApiError, CODE_APPLY, CODE_BAD_QUERY, CODE_INVALID, CODE_NOT_FOUND, Envelope, Problem,
};
use crate::config::model::Config;
use crate::{
    agent::plan::{ChangeError, ChangeRequest, Edit},
    config::edit::{Document, EditError, now_rfc3339},
};

/// How long a change may take to be validated and applied.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Hands `edit` (given the document and the time now) to the agent and
/// waits for its outcome: the config in force afterwards and the id the
/// edit named, or the refusal.
pub async fn submit(
    state: &ApiState,
    edit: impl FnOnce(&mut Document, &str) -> Result<String, EditError> + Send + 'static,
) -> Result<(Arc<Config>, String), ApiError> {
    let unavailable =
        |message: &str| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, CODE_APPLY, message);
    let Some(changes) = &state.changes else {
        return Err(unavailable("this API does not accept changes"));
    };
    let now = now_rfc3339();
    let edit: Edit = Box::new(move |doc| edit(doc, &now));
    let (reply, outcome) = oneshot::channel();
    changes
        .try_send(ChangeRequest { edit, reply })
        .map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => unavailable("too many changes queued; try again"),
            mpsc::error::TrySendError::Closed(_) => unavailable("the agent is shutting down"),
        })?;
    match tokio::time::timeout(CHANGE_TIMEOUT, outcome).await {
        Ok(Ok(Ok(done))) => Ok(done),
        Ok(Ok(Err(refused))) => Err(refused.into()),
        Ok(Err(_)) => Err(unavailable("the agent is shutting down")),
        Err(_) => Err(unavailable(
            "the change is taking too long; check the agent's log",
        )),
    }
}

/// The answer to a delete: the id of the object gone.
#[derive(Serialize)]
pub struct Deleted {
    id: String,
}

/// Deletes object `id` with `delete`; answers its id.
pub async fn delete(
    state: &ApiState,
    id: String,
    delete: impl FnOnce(&mut Document, &str) -> Result<(), EditError> + Send + 'static,
) -> Result<Envelope<Deleted>, ApiError> {
    let (_, id) = submit(state, move |doc, _| {
        delete(doc, &id)?;
        Ok(id)
    })
    .await?;
    Ok(Envelope::ok(Deleted { id }))
}

impl From<ChangeError> for ApiError {
    fn from(refused: ChangeError) -> Self {
        match refused {
            ChangeError::Edit(EditError::NotFound { kind, id }) => ApiError::new(
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
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    CODE_BAD_QUERY,
                    format!("{at}{message}"),
                )
            }
            ChangeError::Edit(EditError::Invalid {
                field,
                value,
                message,
            }) => ApiError::new(
                StatusCode::BAD_REQUEST,
                CODE_INVALID,
                format!("{field}: {value:?}: {message}"),
            ),
            ChangeError::Invalid(errors) => {
                let errors = errors
                    .iter()
                    .map(|e| Problem {
                        code: e.code.unwrap_or(CODE_INVALID),
                        message: e.to_string(),
                    })
                    .collect();
                ApiError::many(StatusCode::BAD_REQUEST, errors)
            }
            ChangeError::Refused(reason) => {
                ApiError::new(StatusCode::BAD_REQUEST, CODE_INVALID, reason)
            }
            ChangeError::Apply(reason) => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, CODE_APPLY, reason)
            }
        }
    }
}
