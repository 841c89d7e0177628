//! Version 1 of the API, mounted under `/api/v1`.

use axum::routing::get;
use axum::Router;

use crate::state::AppState;

pub mod meta;

/// Routes of `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::new().route("/version", get(meta::version))
}
