//! What an erasure would delete, anonymize and keep (admin tokens), from
//! `lifecycle.preview_erasure`: the same plan the erasure follows, each
//! step with the rows it would touch, changing nothing (it runs in a
//! read-only transaction). The answer is typed; the extension's JSON is
//! read into it field by field.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::extract::{Json, Query};
use super::jobs::scope;
use crate::auth::Admin;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Routes of this module (under `/api/v1`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(erasure_preview))
}

/// Whose erasure to preview.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// `user` (or another registered subject type), or `tenant` for a workspace.
    pub target_type: String,
    pub target_id: String,
    /// The tenant the erasure would be requested in (a tenant admin's own
    /// by default, and only theirs).
    pub tenant_id: Option<String>,
    /// The database to ask; needed when several are configured and the
    /// tenant does not decide it.
    pub database: Option<String>,
}

/// What erasing the target would do: the erasure's plan, step by step,
/// with the rows each step would touch, and what would stop it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErasurePlan {
    /// The database asked.
    #[serde(default)]
    pub database: String,
    pub target: PreviewTarget,
    pub tenant_id: Option<String>,
    /// Each step of the plan that would touch rows, in the erasure's order.
    pub steps: Vec<PreviewStep>,
    /// Rows by action (`deleted`, `anonymized`, `retained`, ...).
    pub totals: BTreeMap<String, u64>,
    /// Rows kept for a legal reason, and for how long.
    pub retained: Vec<Retained>,
    /// Files in storage that would be deleted (tracked until confirmed).
    pub stored_objects: u64,
    /// Rows of others that mention the subject (redacted in place).
    pub mentions: Vec<Mention>,
    /// How many identifiers of the subject (e-mail, names, ...) are searched for.
    pub identifiers: u64,
    /// Workspaces the subject is the last admin of: each needs a decision
    /// (`workspaces` of the request) before the erasure may be requested.
    pub last_admin_workspaces: Vec<String>,
    /// Legal holds in force that would block the erasure.
    pub holds: Vec<PreviewHold>,
    /// Rows of tables the data map does not know that reference what would
    /// be removed: the erasure would fail until they are registered.
    pub unmapped_references: Vec<UnmappedReference>,
    /// Nothing above stops the erasure (the target exists, no hold, no
    /// last-admin workspace without a decision, no unmapped reference).
    pub would_run: bool,
}

/// The target of the preview.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviewTarget {
    #[serde(rename = "type")]
    pub target_type: String,
    pub id: String,
    /// Whether the target has a row at all.
    pub exists: bool,
}

/// What a step does to its rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum PreviewAction {
    #[serde(rename = "deleted")]
    Deleted,
    #[serde(rename = "objects deleted")]
    ObjectsDeleted,
    #[serde(rename = "ownership transferred")]
    OwnershipTransferred,
    #[serde(rename = "not transferred")]
    NotTransferred,
    #[serde(rename = "anonymized")]
    Anonymized,
    /// Attributed to the anonymized subject, unchanged.
    #[serde(rename = "kept")]
    Kept,
    #[serde(rename = "retained")]
    Retained,
    /// References to the subject cleared.
    #[serde(rename = "detached")]
    Detached,
    /// Mentions of the subject in free text replaced.
    #[serde(rename = "redacted")]
    Redacted,
}

/// One step of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviewStep {
    /// The table, schema-qualified.
    pub table: String,
    /// The data map's label of the table.
    #[serde(default)]
    pub label: Option<String>,
    pub action: PreviewAction,
    pub rows: u64,
    /// Why the rows get this treatment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The columns changed, cleared or deleted from storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<String>>,
    /// The workspace the step is about (a last-admin decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    /// The member a workspace is handed over to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    /// How long retained rows are kept (an interval, e.g. `7 years`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retain_for: Option<String>,
}

/// Rows kept for a legal reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Retained {
    pub table: String,
    #[serde(default)]
    pub label: Option<String>,
    pub rows: u64,
    pub legal_basis: String,
    pub retain_for: String,
}

/// A column of others' rows that mentions the subject.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Mention {
    pub table: String,
    pub column: String,
    pub rows: u64,
}

/// A legal hold in force that would block the erasure.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviewHold {
    pub hold_id: uuid::Uuid,
    /// The hold's scope, e.g. `user 42`.
    pub scope: String,
    pub reason: String,
    pub placed_by: String,
    /// The table whose rows it covers (absent for a hold on the target itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
}

/// Rows of an unregistered table that reference what would be removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnmappedReference {
    pub table: String,
    pub constraint: String,
    /// The table referenced.
    pub references: String,
    pub rows: u64,
}

/// What erasing a subject or a workspace would do, changing nothing.
#[utoipa::path(
    get,
    path = "/erasure-preview",
    tag = "jobs",
    security(("admin_token" = [])),
    params(PreviewQuery),
    responses((status = 200, description = "The erasure's plan with the rows each step would touch, and what would stop it", body = ErasurePlan))
)]
pub async fn erasure_preview(
    State(state): State<AppState>,
    admin: Admin,
    Query(query): Query<PreviewQuery>,
) -> ApiResult<Json<ErasurePlan>> {
    let tenant = scope::tenant_for(&admin, query.tenant_id)?;
    let database =
        scope::choose_database(&state.dbs, query.database.as_deref(), tenant.as_deref()).await?;
    scope::require_target(
        &state.dbs,
        &database,
        &admin,
        &query.target_type,
        &query.target_id,
    )
    .await?;
    let mut client = state.dbs.client(&database).await?;
    let tx = client.build_transaction().read_only(true).start().await?;
    let mut preview = plan(
        &*tx,
        &query.target_type,
        &query.target_id,
        tenant.as_deref(),
    )
    .await?;
    tx.commit().await?;
    preview.database = database.to_string();
    Ok(Json(preview))
}

/// The plan `lifecycle.preview_erasure` answers for a target in a tenant,
/// typed (with an empty [`ErasurePlan::database`]: the caller knows which
/// it asked). The subject's own preview (`/me/erasure-preview`) reads the
/// same plan through this function.
pub async fn plan(
    client: &impl GenericClient,
    target_type: &str,
    target_id: &str,
    tenant: Option<&str>,
) -> ApiResult<ErasurePlan> {
    let row = client
        .query_one(
            "SELECT lifecycle.preview_erasure($1, $2, $3)",
            &[&target_type, &target_id, &tenant],
        )
        .await?;
    let raw: serde_json::Value = row.try_get(0).map_err(ApiError::internal)?;
    serde_json::from_value(raw)
        .map_err(|err| ApiError::internal(format!("preview_erasure answered {err}")))
}
