//! Jobs: list, stats, detail, create, approve, reject, cancel (admin tokens).

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// Routes of this module (under `/api/v1`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
