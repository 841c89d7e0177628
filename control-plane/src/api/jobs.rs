//! Jobs: list, stats, detail, create, approve, reject, cancel (admin tokens).
//!
//! Every handler extracts the admin and its input, calls the extension
//! (`lifecycle.list_jobs`, `job_stats`, `request_*`, `approve`, `reject`,
//! `cancel`) and maps the answer: the state machine, four eyes, holds and
//! last admins are the database's rules, and its SQLSTATE decides the
//! status. The token's name is the actor the extension records.
//!
//! Tenant admins see and touch only their tenant's jobs: another tenant's
//! job answers 404 `job_not_found` like a missing one, a `tenant` filter
//! naming another tenant gives an empty list and zero counts, and a job
//! can only be created in their own tenant (another is 404).
//!
//! Several databases: lists and counts ask every database and say which
//! did not answer (`unavailable`); a job id is looked up in every database;
//! each job names its `database`.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tokio_postgres::types::ToSql;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::extract::{Json, Path, Query};
use super::{Page, PageQuery, RequestContext};
use crate::auth::Admin;
use crate::error::{ApiError, ApiResult, CODE_INVALID_PARAMETER};
use crate::state::AppState;

pub mod model;
pub mod names;
pub mod request;
pub mod scope;
pub mod store;

pub use model::{Job, JobDetail, JobStats};
pub use names::{JurisdictionName, StatusName, TypeName};
pub use request::{NewJob, WorkspaceDecision};

/// Longest accepted search text.
pub const MAX_SEARCH_CHARS: usize = 200;

/// Routes of this module (under `/api/v1`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs, create_job))
        .routes(routes!(job_stats))
        .routes(routes!(get_job))
        .routes(routes!(approve_job))
        .routes(routes!(reject_job))
        .routes(routes!(cancel_job))
        .routes(routes!(download_workspace_export))
}

/// Filters of the job list.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobFilter {
    /// Only jobs in this status.
    #[param(inline)]
    pub status: Option<StatusName>,
    /// Only jobs of this type.
    #[serde(rename = "type")]
    #[param(inline)]
    pub job_type: Option<TypeName>,
    /// A job id, a target id (exact) or part of a tenant's name.
    #[param(max_length = 200)]
    pub q: Option<String>,
    /// Only this tenant's jobs (a tenant admin naming another tenant gets
    /// an empty list).
    pub tenant: Option<String>,
}

/// Filter of the counts.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsFilter {
    /// Only this tenant's jobs (a tenant admin naming another tenant gets
    /// zeros).
    pub tenant: Option<String>,
}

/// The tenants an admin's list or counts cover: `None` for every tenant,
/// an empty list for none (a tenant admin asking for another tenant).
fn tenants_of(admin: &Admin, tenant: Option<String>) -> Option<Vec<String>> {
    match (admin.tenant_scope(), tenant) {
        (None, None) => None,
        (None, Some(tenant)) => Some(vec![tenant]),
        (Some(own), None) => Some(vec![own.to_owned()]),
        (Some(own), Some(tenant)) => Some(if tenant == own { vec![tenant] } else { vec![] }),
    }
}

/// Jobs newest first, across every database, filtered and searched.
#[utoipa::path(
    get,
    path = "/jobs",
    tag = "jobs",
    security(("admin_token" = [])),
    params(JobFilter, PageQuery),
    responses(
        (status = 200, description = "A page of jobs, newest first by (requested_at, id); `unavailable` names the databases that did not answer", body = Page<Job>)
    )
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    admin: Admin,
    Query(filter): Query<JobFilter>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<Job>>> {
    let q = filter
        .q
        .map(|q| q.trim().to_owned())
        .filter(|q| !q.is_empty());
    if q.as_ref()
        .is_some_and(|q| q.chars().count() > MAX_SEARCH_CHARS)
    {
        return Err(ApiError::bad_request(format!(
            "q must be at most {MAX_SEARCH_CHARS} characters"
        ))
        .with_code(CODE_INVALID_PARAMETER));
    }
    let filter = store::ListFilter {
        status: filter.status,
        job_type: filter.job_type,
        q,
        tenants: tenants_of(&admin, filter.tenant),
    };
    Ok(Json(store::list(&state.dbs, &filter, &page).await?))
}

/// Total and per-status (and per-type) counts, from the extension's
/// counters (no scan), across every database.
#[utoipa::path(
    get,
    path = "/jobs/stats",
    tag = "jobs",
    security(("admin_token" = [])),
    params(StatsFilter),
    responses((status = 200, description = "Counts of the jobs the caller sees", body = JobStats))
)]
pub async fn job_stats(
    State(state): State<AppState>,
    admin: Admin,
    Query(filter): Query<StatsFilter>,
) -> ApiResult<Json<JobStats>> {
    let tenants = tenants_of(&admin, filter.tenant);
    Ok(Json(store::stats(&state.dbs, tenants).await?))
}

/// A job's page: the job, its receipt, the target's state, the steps
/// outside the database and the hold that blocks it.
#[utoipa::path(
    get,
    path = "/jobs/{id}",
    tag = "jobs",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "The job's id")),
    responses((status = 200, description = "The job", body = JobDetail))
)]
pub async fn get_job(
    State(state): State<AppState>,
    admin: Admin,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<JobDetail>> {
    Ok(Json(store::detail(&state.dbs, &admin, id).await?))
}

/// Request an export, erasure or purge; the token's name is the requester.
#[utoipa::path(
    post,
    path = "/jobs",
    tag = "jobs",
    security(("admin_token" = [])),
    request_body = NewJob,
    responses(
        (status = 201, description = "The job, pending approval or scheduled", body = Job),
        (status = 409, description = "Refused by the database: a duplicate request, a target already erased, the last admin of a workspace without a decision", body = crate::error::ErrorResponse)
    )
)]
pub async fn create_job(
    State(state): State<AppState>,
    admin: Admin,
    ctx: RequestContext,
    Json(body): Json<NewJob>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    let tenant = scope::tenant_for(&admin, body.tenant_id.clone())?;
    let database =
        scope::choose_database(&state.dbs, body.database.as_deref(), tenant.as_deref()).await?;
    scope::require_target(
        &state.dbs,
        &database,
        &admin,
        &body.target_type,
        &body.target_id,
    )
    .await?;
    let (function, call) = body.call(tenant, admin.name)?;
    let job = store::change(
        &state.dbs,
        &database,
        &ctx,
        &call.sql(&function),
        &call.params(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(job)))
}

/// Approve a pending job. The approver is the token's name and must not
/// be the requester (403 from the database's four-eyes rule).
#[utoipa::path(
    post,
    path = "/jobs/{id}/approve",
    tag = "jobs",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The approved job", body = Job),
        (status = 409, description = "The job is not pending", body = crate::error::ErrorResponse)
    )
)]
pub async fn approve_job(
    State(state): State<AppState>,
    admin: Admin,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Job>> {
    act(&state, &admin, &ctx, id, "approve($1, $2)", None).await
}

/// Why a job is rejected.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rejection {
    /// Required, not blank.
    pub reason: String,
}

/// Reject a pending job, with a reason.
#[utoipa::path(
    post,
    path = "/jobs/{id}/reject",
    tag = "jobs",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "The job's id")),
    request_body = Rejection,
    responses(
        (status = 200, description = "The rejected job", body = Job),
        (status = 409, description = "The job is not pending", body = crate::error::ErrorResponse)
    )
)]
pub async fn reject_job(
    State(state): State<AppState>,
    admin: Admin,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
    Json(body): Json<Rejection>,
) -> ApiResult<Json<Job>> {
    act(
        &state,
        &admin,
        &ctx,
        id,
        "reject($1, $2, $3)",
        Some(body.reason),
    )
    .await
}

/// Cancel a pending or approved job (an erasure during its cooling-off).
#[utoipa::path(
    post,
    path = "/jobs/{id}/cancel",
    tag = "jobs",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The cancelled job", body = Job),
        (status = 409, description = "The job is running or finished", body = crate::error::ErrorResponse)
    )
)]
pub async fn cancel_job(
    State(state): State<AppState>,
    admin: Admin,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> ApiResult<Json<Job>> {
    act(&state, &admin, &ctx, id, "cancel($1, $2)", None).await
}

/// Call `lifecycle.<call>` on the job `id` as the admin (`$1` the id, `$2`
/// the token's name, `$3` the reason when given), in the job's database,
/// once the admin is known to see it.
async fn act(
    state: &AppState,
    admin: &Admin,
    ctx: &RequestContext,
    id: Uuid,
    call: &str,
    reason: Option<String>,
) -> ApiResult<Json<Job>> {
    let job = store::locate(&state.dbs, admin, id).await?;
    let sql = format!("SELECT $1::uuid FROM lifecycle.{call}");
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&id, &admin.name];
    if let Some(reason) = &reason {
        params.push(reason);
    }
    let job = store::change(&state.dbs, &job.database, ctx, &sql, &params).await?;
    Ok(Json(job))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AdminRole;

    #[test]
    fn lists_cover_the_admins_tenants() {
        let platform = Admin {
            token_id: Uuid::nil(),
            name: "p".into(),
            role: AdminRole::Platform,
        };
        let acme = Admin {
            role: AdminRole::Tenant("acme".into()),
            ..platform.clone()
        };
        assert_eq!(tenants_of(&platform, None), None);
        assert_eq!(
            tenants_of(&platform, Some("globex".into())),
            Some(vec!["globex".to_owned()])
        );
        assert_eq!(tenants_of(&acme, None), Some(vec!["acme".to_owned()]));
        assert_eq!(
            tenants_of(&acme, Some("acme".into())),
            Some(vec!["acme".to_owned()])
        );
        assert_eq!(tenants_of(&acme, Some("globex".into())), Some(vec![]));
    }
}

/// Download the bundle of a workspace export (tenant admins of that
/// workspace and platform admins). A person's own export is theirs to
/// download, through `GET /api/v1/me/exports/{id}/download`. Audited as
/// `data.export_downloaded` with the token's name, IP and user agent.
#[utoipa::path(
    get,
    path = "/jobs/{id}/download",
    tag = "jobs",
    security(("admin_token" = [])),
    params(("id" = Uuid, Path, description = "The export job's id")),
    responses(
        (status = 200, description = "The bundle (a ZIP archive)", content_type = "application/zip", body = String),
        (status = 302, description = "The bundle, at a URL presigned for a few minutes (`Location`)"),
        (status = 403, description = "The export of a person, not of a workspace (`forbidden`)", body = crate::error::ErrorResponse),
        (status = 404, description = "No job with this id in the admin's reach (`job_not_found`)", body = crate::error::ErrorResponse),
        (status = 409, description = "The bundle is not built, or the export failed (invalid_job_transition)", body = crate::error::ErrorResponse),
        (status = 410, description = "The entitlement ended and the bundle is deleted (export_expired)", body = crate::error::ErrorResponse)
    )
)]
pub async fn download_workspace_export(
    State(state): State<AppState>,
    admin: Admin,
    ctx: RequestContext,
    Path(id): Path<Uuid>,
) -> ApiResult<axum::response::Response> {
    let job = store::locate(&state.dbs, &admin, id).await?;
    if !scope::TENANT_TARGET_TYPES.contains(&job.target_type.as_str()) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the export of a person is downloaded by that person",
        )
        .with_detail("Administrators download the exports of workspaces.")
        .with_hint("the person downloads it from the privacy center (GET /api/v1/me/exports/{id}/download)"));
    }
    let mut client = state.dbs.client(&job.database).await?;
    let tx = client.transaction().await?;
    ctx.apply(&*tx).await?;
    let who = super::bundles::Downloader {
        target_type: &job.target_type,
        target_id: &job.target_id,
        actor: &admin.name,
    };
    super::bundles::download(&state.storage, tx, &ctx, id, who).await
}
