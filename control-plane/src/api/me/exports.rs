//! `GET` and `POST /api/v1/me/exports`: the subject's export requests.
//! The bundle itself (and its download) is built by the worker in a later
//! release; the request already creates the job, through
//! `lifecycle.request_export` (one per subject per 24 hours: the extension
//! refuses another with 409 `duplicate_request`).

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::{GenericClient, Row};
use utoipa::ToSchema;
use uuid::Uuid;

use super::caller::Me;
use crate::api::extract::{Json, Query};
use crate::api::jobs::StatusName;
use crate::api::{Page, PageQuery, RequestContext};
use crate::error::{ApiError, ApiResult};

/// The `SELECT` of what [`ExportJob::from_row`] reads (a macro, so that
/// the statements below are put together at compile time).
macro_rules! select_export {
    () => {
        "SELECT id, status, requested_at, finished_at, reason, rejection_reason FROM lifecycle.jobs"
    };
}

/// The subject's export jobs, newest first, after the cursor.
const LIST: &str = concat!(
    select_export!(),
    " WHERE target_type = $1 AND target_id = $2 AND job_type = 'export' \
        AND ($3::timestamptz IS NULL OR (requested_at, id) < ($3, $4)) \
      ORDER BY requested_at DESC, id DESC \
      LIMIT $5"
);

/// One export job.
const ONE: &str = concat!(select_export!(), " WHERE id = $1");

const REQUEST_EXPORT: &str = "SELECT lifecycle.request_export($1, $2, $3, $4, $5)";

/// Body of `POST /api/v1/me/exports`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// Why, in the subject's words (optional).
    #[serde(default)]
    pub reason: Option<String>,
}

/// One of the subject's export requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExportJob {
    pub id: Uuid,
    pub database: String,
    pub status: StatusName,
    pub requested_at: DateTime<Utc>,
    /// When it completed, failed, was rejected or cancelled.
    pub finished_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// Why an administrator rejected it.
    pub rejection_reason: Option<String>,
}

impl ExportJob {
    fn from_row(row: &Row, database: &str) -> Self {
        Self {
            id: row.get(0),
            database: database.to_owned(),
            status: row.get(1),
            requested_at: row.get(2),
            finished_at: row.get(3),
            reason: row.get(4),
            rejection_reason: row.get(5),
        }
    }
}

/// Keyset position of the list: the last item's `(requested_at, id)`.
type Position = (DateTime<Utc>, Uuid);

/// The bearer's export requests, newest first, paginated.
#[utoipa::path(
    get,
    path = "/me/exports",
    tag = "me",
    security(("subject_token" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "The subject's export requests, newest first", body = Page<ExportJob>),
        (status = 401, description = super::caller::UNAUTHORIZED, body = crate::error::ErrorResponse)
    )
)]
pub async fn list_exports(
    me: Me,
    ctx: RequestContext,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<ExportJob>>> {
    let limit = page.limit()?;
    let after: Option<Position> = page.cursor()?;
    let page = super::page(
        &me,
        &ctx,
        limit,
        LIST,
        &[
            &me.subject_type(),
            &me.subject_id(),
            &after.map(|(at, _)| at),
            &after.map(|(_, id)| id),
        ],
        ExportJob::from_row,
        |job: &ExportJob| (job.requested_at, job.id),
    )
    .await?;
    Ok(Json(page))
}

/// Request an export of the bearer's data. The job is created at once;
/// the bundle follows when the worker has built it.
#[utoipa::path(
    post,
    path = "/me/exports",
    tag = "me",
    security(("subject_token" = [])),
    request_body = ExportRequest,
    responses(
        (status = 201, description = "The export job", body = ExportJob),
        (status = 401, description = super::caller::UNAUTHORIZED, body = crate::error::ErrorResponse),
        (status = 404, description = "The subject does not exist (target_not_found)", body = crate::error::ErrorResponse),
        (status = 429, description = "An export was requested less than 24 hours ago (export_rate_limited); Retry-After says when the next one is allowed", body = crate::error::ErrorResponse)
    )
)]
pub async fn request_export(
    me: Me,
    ctx: RequestContext,
    Json(body): Json<ExportRequest>,
) -> ApiResult<(StatusCode, Json<ExportJob>)> {
    let reason = super::reason(body.reason.as_deref());
    let mut client = me.client().await?;
    let (tx, _) = me.begin(&mut client, &ctx).await?;
    let id: Uuid = tx
        .query_one(
            REQUEST_EXPORT,
            &[
                &me.subject_type(),
                &me.subject_id(),
                &me.tenant(),
                &me.actor(),
                &reason,
            ],
        )
        .await?
        .get(0);
    let job = read_one(&*tx, id, &me.database_name()).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(job)))
}

async fn read_one(client: &impl GenericClient, id: Uuid, database: &str) -> ApiResult<ExportJob> {
    let row = client
        .query_opt(ONE, &[&id])
        .await?
        .ok_or_else(|| ApiError::internal(format!("export job {id} vanished")))?;
    Ok(ExportJob::from_row(&row, database))
}
