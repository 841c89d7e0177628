//! The data subject's own data: state, exports, erasure, activity (subject tokens).

use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

/// Routes of this module (under `/api/v1`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
