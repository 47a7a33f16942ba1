//! Answers in Cloudflare's envelope. [`Envelope`] carries a result;
//! [`ApiError`] is a refusal (its status and one or more coded errors),
//! rendered as the envelope with `success: false` and a null result.
use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Serialize;

/// Cloudflare's codes for what this API refuses.
pub const CODE_AUTH: u32 = 10000;
pub const CODE_ROUTE: u32 = 7003;
pub const CODE_NOT_FOUND: u32 = 10006;
pub const CODE_BAD_QUERY: u32 = 7000;
/// A value the API refuses that has no Spectrum code of its own.
pub const CODE_INVALID: u32 = 1004;
/// A change that validated but could not be put in force.
pub const CODE_APPLY: u32 = 10002;

/// One entry of the envelope's `errors`.
#[derive(Debug, Serialize)]
pub struct Problem {
    pub code: u32,
    pub message: String,
}

/// `result_info` of a page of a list.
#[derive(Debug, Serialize)]
pub struct PageInfo {
    pub page: usize,
    pub per_page: usize,
    pub count: usize,
    pub total_count: usize,
}

/// Cloudflare's envelope; `messages` is always empty here.
#[derive(Debug, Serialize)]
pub struct Envelope<T> {
    success: bool,
    errors: Vec<Problem>,
    messages: [Problem; 0],
    result: T,
    #[serde(skip_serializing_if = "Option::is_none")]
    result_info: Option<PageInfo>,
}

impl<T: Serialize> Envelope<T> {
    /// A success: 200 with `result`.
    pub fn ok(result: T) -> Self {
        Envelope {
            success: true,
            errors: Vec::new(),
            messages: [],
            result,
            result_info: None,
        }
    }

    /// A success holding one page of a list.
    pub fn page(result: T, info: PageInfo) -> Self {
        Envelope {
            result_info: Some(info),
            ..Envelope::ok(result)
        }
    }
}

impl<T: Serialize> IntoResponse for Envelope<T> {
    fn into_response(self) -> Response {
        (StatusCode::OK, Json(self)).into_response()
    }
}

/// A refusal: the status and the coded errors its envelope names.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    errors: Vec<Problem>,
}

impl ApiError {
    /// A refusal with one error.
    pub fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError::many(status, vec![Problem { code, message }])
    }

    /// A refusal with an error per problem.
    pub fn many(status: StatusCode, errors: Vec<Problem>) -> Self {
        ApiError { status, errors }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Envelope {
            success: false,
            errors: self.errors,
            messages: [],
            result: (),
            result_info: None,
        };
        (self.status, Json(body)).into_response()
    }
}
