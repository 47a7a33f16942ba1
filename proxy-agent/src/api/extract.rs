//! What handlers take from a request, each refusal already an
//! [`ApiError`]: the zone of a collection's path ([`Zone`]), the zone and
//! id of an object's ([`Object`]), the page of a list ([`Page`]), and the
//! JSON body of a change ([`json_body`]).
use std::marker::PhantomData;

use axum::{
    body::Bytes,
    extract::{FromRequestParts, Path as UrlPath, Query, rejection::PathRejection},
    http::{StatusCode, request::Parts},
};
use serde::{Deserialize, Serialize};

use super::ApiState;
use super::error::{ApiError, CODE_BAD_QUERY, CODE_ROUTE, Envelope, PageInfo};

/// The largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// Page size when `per_page` is absent, and the largest allowed.
const DEFAULT_PER_PAGE: usize = 20;
const MAX_PER_PAGE: usize = 100;

/// A collection of objects in a zone: its route, `/zones/{zone}/...`.
pub trait Collection {
    const ROUTE: &'static str;
}

/// A collection's path whose zone is this API's. Another zone is 404
/// (7003) naming the path; a path that does not decode is 404 too.
///
/// Handlers that also read a body take it (and [`Object`]) as a
/// `Result<_, ApiError>` and look at it after the body is read, which
/// axum does last: a body that cannot be read is refused before a wrong
/// path, as the API always answered.
pub struct Zone<C>(PhantomData<fn() -> C>);

/// An object's path in this API's zone (refused as [`Zone`]'s is).
pub struct Object<C> {
    pub zone: String,
    pub id: String,
    collection: PhantomData<fn() -> C>,
}

impl<C: Collection> FromRequestParts<ApiState> for Zone<C> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let UrlPath(zone) = UrlPath::<String>::from_request_parts(parts, state)
            .await
            .map_err(bad_path)?;
        state.in_zone(&zone, || collection_path::<C>(&zone))?;
        Ok(Zone(PhantomData))
    }
}

impl<C: Collection> FromRequestParts<ApiState> for Object<C> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let UrlPath((zone, id)) = UrlPath::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(bad_path)?;
        state.in_zone(&zone, || format!("{}/{id}", collection_path::<C>(&zone)))?;
        Ok(Object {
            zone,
            id,
            collection: PhantomData,
        })
    }
}

/// The path of collection `C` in `zone`, as the refusal names it.
fn collection_path<C: Collection>(zone: &str) -> String {
    C::ROUTE.replacen("{zone}", zone, 1)
}

impl ApiState {
    /// Refuses a path in another zone; `path` names it in the refusal.
    fn in_zone(&self, zone: &str, path: impl FnOnce() -> String) -> Result<(), ApiError> {
        if zone == &*self.zone {
            return Ok(());
        }
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            CODE_ROUTE,
            format!(
                "Could not route to {}, perhaps your object identifier is invalid?",
                path()
            ),
        ))
    }
}

/// A path that did not decode (not UTF-8): no such object.
fn bad_path(rejection: PathRejection) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, CODE_ROUTE, rejection.body_text())
}

/// `page` and `per_page` of a list, each in range; a bad query is 400
/// (7000) naming what is wrong.
pub struct Page {
    page: usize,
    per_page: usize,
}

/// The query as sent: numbers are checked by hand to name the bad one.
#[derive(Deserialize)]
struct PageQuery {
    page: Option<String>,
    per_page: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let bad_query =
            |message: String| ApiError::new(StatusCode::BAD_REQUEST, CODE_BAD_QUERY, message);
        let Query(query) = Query::<PageQuery>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| bad_query(rejection.body_text()))?;
        let number = |name: &str, text: &Option<String>, default: usize, max: usize| match text {
            None => Ok(default),
            Some(t) => match t.parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(bad_query(format!(
                    "{name} {t:?}: expected a number from 1 to {max}"
                ))),
            },
        };
        Ok(Page {
            page: number("page", &query.page, 1, usize::MAX)?,
            per_page: number("per_page", &query.per_page, DEFAULT_PER_PAGE, MAX_PER_PAGE)?,
        })
    }
}

impl Page {
    /// This page of `items`, each in its answer's shape, in the envelope
    /// (empty from the last page on).
    pub fn of<'a, T, R: Serialize>(
        self,
        items: &'a [T],
        shape: impl Fn(&'a T) -> R,
    ) -> Envelope<Vec<R>> {
        let total = items.len();
        let start = (self.page - 1).saturating_mul(self.per_page).min(total);
        let end = start.saturating_add(self.per_page).min(total);
        let result: Vec<R> = items[start..end].iter().map(shape).collect();
        let info = PageInfo {
            page: self.page,
            per_page: self.per_page,
            count: result.len(),
            total_count: total,
        };
        Envelope::page(result, info)
    }
}

/// A request body as JSON, or the refusal naming what is wrong with it.
pub fn json_body(bytes: &Bytes) -> Result<serde_json::Value, ApiError> {
    if bytes.len() > MAX_BODY {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            CODE_BAD_QUERY,
            format!("the body is {} bytes; at most {MAX_BODY}", bytes.len()),
        ));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            CODE_BAD_QUERY,
            format!("the body is not JSON: {e}"),
        )
    })
}
