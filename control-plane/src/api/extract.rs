//! Extractors for request input whose refusals answer in the API's error
//! shape (axum's own answer plain text): a body that is not JSON, too large
//! or of the wrong shape, a malformed path parameter or query string.
//!
//! Handlers use these instead of axum's `Json`, `Path` and `Query`:
//! `use crate::api::extract::{Json, Path, Query};`. `Json` is also the
//! response wrapper, so one name serves both directions.

use axum::extract::{FromRequest, FromRequestParts};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// A JSON request body (415 without `Content-Type: application/json`, 413
/// above `--max-body-bytes`, 400 for invalid JSON, 422 for the wrong shape),
/// or a JSON response.
#[derive(Clone, Copy, Debug, Default, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters (400 `invalid_parameter` when they do not parse).
#[derive(Clone, Copy, Debug, Default, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// Query parameters (400 `invalid_parameter` when they do not parse).
/// Several `Query` extractors may read the same query string, for example a
/// resource's filters and [`super::pagination::PageQuery`]; unknown keys are
/// ignored by each.
#[derive(Clone, Copy, Debug, Default, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);
