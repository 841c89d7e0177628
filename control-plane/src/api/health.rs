//! Liveness and readiness probes. No token: serve them on an internal
//! address.
//!
//! Readiness is what an orchestrator and an alert watch, so it checks what
//! makes the service's answers trustworthy in every configured database:
//! reachable, the extension installed, every guard of
//! `lifecycle.guard_status` ok (a guard a superuser disabled means holds no
//! longer bind), not connected as a superuser (the extension's grants would
//! protect nothing), and in the primary database the control plane's own
//! schema at the version this build expects.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use deadpool_postgres::Object;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::Json;
use crate::db::Database;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::setup::SCHEMA_VERSION;
use crate::state::AppState;

/// Name of the PostgreSQL extension the control plane drives.
pub const EXTENSION_NAME: &str = "lifecycle";
/// Code of the 503 of `/readyz`.
pub const CODE_NOT_READY: &str = "not_ready";

const DATABASE_QUERY: &str = "\
    SELECT current_database()::text, \
           current_setting('server_version'), \
           (SELECT extversion::text FROM pg_catalog.pg_extension WHERE extname = $1), \
           current_user::text, \
           (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user)";

const GUARD_QUERY: &str = "\
    SELECT coalesce(relation::text, ''), trigger_name, status \
      FROM lifecycle.guard_status WHERE status <> 'ok' \
     ORDER BY 1, 2";

const SCHEMA_QUERY: &str = "SELECT pg_catalog.to_regclass('lifecycled.schema_version') IS NOT NULL";

/// Body of `GET /healthz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    pub status: String,
}

/// One database as `/readyz` found it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DatabaseReadiness {
    /// The configured name (`--database NAME=URL`).
    pub name: String,
    pub ready: bool,
    /// PostgreSQL's name of the database, when it answered.
    pub database: Option<String>,
    pub server_version: Option<String>,
    pub extension_version: Option<String>,
    /// What is wrong; empty when ready.
    pub problems: Vec<String>,
}

/// Body of a successful `GET /readyz`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    /// Always `ready`.
    pub status: String,
    pub databases: Vec<DatabaseReadiness>,
}

/// Body of a 503 from `GET /readyz`: the error, and every database's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct NotReady {
    pub error: ErrorBody,
    pub databases: Vec<DatabaseReadiness>,
}

/// Routes of this module (at the root).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
}

/// Liveness: the process is up. Never touches a database.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process is up", body = Liveness))
)]
pub async fn healthz() -> Json<Liveness> {
    Json(Liveness {
        status: "ok".to_owned(),
    })
}

/// Readiness of every configured database.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Every database is ready", body = Readiness),
        (status = 503, description = "A database is not ready; the body says which and why",
         body = NotReady, headers(("Retry-After" = u64, description = "Seconds to wait")))
    )
)]
pub async fn readyz(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let checks = state.dbs.iter().enumerate().map(|(i, db)| {
        let state = &state;
        async move { check_database(state, db, i == 0).await }
    });
    let databases = futures::future::join_all(checks).await;
    let not_ready: Vec<&DatabaseReadiness> = databases.iter().filter(|d| !d.ready).collect();
    if not_ready.is_empty() {
        return Json(Readiness {
            status: "ready".to_owned(),
            databases,
        })
        .into_response();
    }
    let message = not_ready
        .iter()
        .map(|d| format!("database \"{}\": {}", d.name, d.problems.join("; ")))
        .collect::<Vec<_>>()
        .join("; ");
    let error = ApiError::service_unavailable(CODE_NOT_READY, message);
    tracing::warn!(error = %error, "not ready");
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(NotReady {
            error: error.to_body().error,
            databases,
        }),
    )
        .into_response();
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(crate::error::DEFAULT_RETRY_AFTER_SECS),
    );
    response
}

async fn check_database(state: &AppState, db: &Database, primary: bool) -> DatabaseReadiness {
    let mut readiness = DatabaseReadiness {
        name: db.name.to_string(),
        ready: false,
        database: None,
        server_version: None,
        extension_version: None,
        problems: Vec::new(),
    };
    let timeout = state.config.db_timeout();
    let checked = tokio::time::timeout(timeout, async {
        let client = db.client().await?;
        inspect(&client, state, primary, &mut readiness).await
    })
    .await;
    match checked {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(database = %db.name, error = %err, "readiness check failed");
            readiness.problems.push(err.message().to_owned());
        }
        Err(_) => readiness
            .problems
            .push(format!("no answer within {} s", timeout.as_secs())),
    }
    readiness.ready = readiness.problems.is_empty();
    readiness
}

async fn inspect(
    client: &Object,
    state: &AppState,
    primary: bool,
    readiness: &mut DatabaseReadiness,
) -> ApiResult<()> {
    let row = client.query_one(DATABASE_QUERY, &[&EXTENSION_NAME]).await?;
    readiness.database = Some(row.try_get(0)?);
    readiness.server_version = Some(row.try_get(1)?);
    readiness.extension_version = row.try_get(2)?;
    let user: String = row.try_get(3)?;
    let superuser: Option<bool> = row.try_get(4)?;
    let problems = &mut readiness.problems;

    if superuser == Some(true) && !state.config.allow_superuser {
        problems.push(format!(
            "connected as the superuser \"{user}\": connect as the service role that `lifecycled setup` creates"
        ));
    }
    if readiness.extension_version.is_none() {
        problems.push(format!(
            "extension \"{EXTENSION_NAME}\" is not installed: run CREATE EXTENSION {EXTENSION_NAME}"
        ));
    } else {
        for guard in client.query(GUARD_QUERY, &[]).await? {
            let relation: String = guard.try_get(0)?;
            let trigger: String = guard.try_get(1)?;
            let status: String = guard.try_get(2)?;
            let on = if relation.is_empty() {
                String::new()
            } else {
                format!(" on {relation}")
            };
            problems.push(format!("guard {trigger}{on}: {status}"));
        }
    }
    if primary {
        let present: bool = client.query_one(SCHEMA_QUERY, &[]).await?.try_get(0)?;
        let version: Option<i32> = if present {
            client
                .query_one("SELECT max(version) FROM lifecycled.schema_version", &[])
                .await?
                .try_get(0)?
        } else {
            None
        };
        // A newer schema is fine: migrations only add, so the previous
        // build keeps working during a rolling upgrade.
        if version.is_none_or(|v| v < SCHEMA_VERSION) {
            problems.push(format!(
                "the control plane's schema is at version {} where this build needs {SCHEMA_VERSION}: run `lifecycled setup`",
                version.map_or_else(|| "none".to_owned(), |v| v.to_string())
            ));
        }
    }
    Ok(())
}
