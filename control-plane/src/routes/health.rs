//! Liveness and readiness probes.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Name of the PostgreSQL extension the control plane drives.
pub const EXTENSION_NAME: &str = "lifecycle";

const READINESS_QUERY: &str = "\
    SELECT current_database()::text, \
           (SELECT extversion::text FROM pg_catalog.pg_extension WHERE extname = $1), \
           current_setting('server_version')";

/// Body of `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liveness {
    pub status: String,
}

/// Body of a successful `GET /readyz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub status: String,
    pub database: String,
    pub extension_version: String,
    pub server_version: String,
}

/// `GET /healthz`: the process is up. Never touches the database.
pub async fn healthz() -> Json<Liveness> {
    Json(Liveness {
        status: "ok".to_owned(),
    })
}

/// `GET /readyz`: the database is reachable and the extension is installed.
/// 503 otherwise.
pub async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Readiness>> {
    let timeout = state.config.db_timeout();
    tokio::time::timeout(timeout, check_readiness(&state))
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::database_unavailable(
                "the readiness check timed out",
            ))
        })
        .map(Json)
}

async fn check_readiness(state: &AppState) -> ApiResult<Readiness> {
    let client = state.pool.get().await?;
    let row = client
        .query_one(READINESS_QUERY, &[&EXTENSION_NAME])
        .await?;
    let database: String = row.try_get(0)?;
    let extension_version: Option<String> = row.try_get(1)?;
    let server_version: String = row.try_get(2)?;

    let Some(extension_version) = extension_version else {
        return Err(ApiError::service_unavailable(
            "extension_not_installed",
            format!("extension \"{EXTENSION_NAME}\" is not installed in database \"{database}\""),
        )
        .with_hint(format!(
            "run CREATE EXTENSION {EXTENSION_NAME} in database \"{database}\""
        )));
    };

    Ok(Readiness {
        status: "ready".to_owned(),
        database,
        extension_version,
        server_version,
    })
}
