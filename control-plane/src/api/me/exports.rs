//! The subject's exports: `GET` and `POST /api/v1/me/exports` (requests,
//! through `lifecycle.request_export`: one per subject per 24 hours, the
//! extension refuses another with 429 `export_rate_limited`) and `GET
//! /api/v1/me/exports/{id}/download`, the bundle the worker built.
//!
//! A download needs the subject's own token (another subject's export is
//! 404), is counted and audited by `lifecycle.export_download`
//! (`data.export_downloaded`, with IP and user agent) and answers 410 once
//! the entitlement ended. From a local directory the bundle is streamed;
//! from S3 the answer redirects to a URL presigned for a few minutes. A
//! signed link (`download_url` of a ready export, what an e-mail carries)
//! adds `expires` and `signature` to the path: checked when present, and
//! still only with the token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::{GenericClient, Row};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::caller::Me;
use crate::api::bundles::{self, Downloader};
use crate::api::extract::{Json, Path, Query};
use crate::api::{Page, PageQuery, RequestContext, API_PREFIX};
use crate::error::{ApiError, ApiResult};
use crate::links::{LinkError, LinkSigner};
use crate::state::AppState;

/// The `SELECT` of what [`ExportJob::from_row`] reads (a macro, so that
/// the statements below are put together at compile time).
macro_rules! select_export {
    () => {
        "SELECT j.id, j.status, j.requested_at, j.finished_at, j.reason, j.rejection_reason, \
                b.size_bytes, b.expires_at, b.expired_at IS NOT NULL OR b.expires_at <= now(), \
                coalesce(b.downloads, 0) \
           FROM lifecycle.jobs j LEFT JOIN lifecycle.export_bundles b ON b.job_id = j.id"
    };
}

/// The subject's export jobs, newest first, after the cursor.
const LIST: &str = concat!(
    select_export!(),
    " WHERE j.target_type = $1 AND j.target_id = lifecycle.canonical_id($1, $2) AND j.job_type = 'export' \
        AND ($3::timestamptz IS NULL OR (j.requested_at, j.id) < ($3, $4)) \
      ORDER BY j.requested_at DESC, j.id DESC \
      LIMIT $5"
);

/// One export job.
const ONE: &str = concat!(select_export!(), " WHERE j.id = $1");

const REQUEST_EXPORT: &str = "SELECT lifecycle.request_export($1, $2, $3, $4, $5)";

/// Body of `POST /api/v1/me/exports`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    /// Why, in the subject's words (optional).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Where an export is, as the subject sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    /// Requested (or approved), waiting for the worker.
    Pending,
    /// The worker is building the bundle.
    Processing,
    /// The bundle can be downloaded until `expires_at`.
    Ready,
    /// The entitlement ended; the bundle is deleted. A new export can be requested.
    Expired,
    /// The bundle could not be built.
    Failed,
    /// An administrator rejected the request (`rejection_reason`).
    Rejected,
    /// Cancelled before it was built.
    Cancelled,
}

/// One of the subject's export requests.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExportJob {
    pub id: Uuid,
    pub database: String,
    pub status: ExportStatus,
    pub requested_at: DateTime<Utc>,
    /// When it completed, failed, was rejected or cancelled.
    pub finished_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    /// Why an administrator rejected it.
    pub rejection_reason: Option<String>,
    /// Size of the bundle (ZIP), once built.
    pub size_bytes: Option<i64>,
    /// End of the entitlement: the bundle is deleted then.
    pub expires_at: Option<DateTime<Utc>>,
    /// Times the bundle was downloaded.
    pub downloads: i32,
    /// The signed download link of a ready export (path and query, under
    /// this service): it expires with the bundle and still needs the
    /// subject's token.
    pub download_url: Option<String>,
}

impl ExportJob {
    fn from_row(row: &Row, database: &str, links: Option<&LinkSigner>) -> Self {
        let id: Uuid = row.get(0);
        let job_status: String = row.get(1);
        let expires_at: Option<DateTime<Utc>> = row.get(7);
        let expired: Option<bool> = row.get(8);
        let status = match (job_status.as_str(), expired) {
            ("completed", Some(true)) => ExportStatus::Expired,
            ("completed", _) => ExportStatus::Ready,
            ("processing", _) => ExportStatus::Processing,
            ("failed", _) => ExportStatus::Failed,
            ("rejected", _) => ExportStatus::Rejected,
            ("cancelled", _) => ExportStatus::Cancelled,
            _ => ExportStatus::Pending,
        };
        let download_url = match (status, expires_at, links) {
            (ExportStatus::Ready, Some(until), Some(links)) => Some(format!(
                "{API_PREFIX}/me/exports/{id}/download?{}",
                links.query(database, id, until)
            )),
            _ => None,
        };
        Self {
            id,
            database: database.to_owned(),
            status,
            requested_at: row.get(2),
            finished_at: row.get(3),
            reason: row.get(4),
            rejection_reason: row.get(5),
            size_bytes: row.get(6),
            expires_at,
            downloads: row.get(9),
            download_url,
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
    State(state): State<AppState>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<ExportJob>>> {
    let links = state.links.as_ref();
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
        |row: &Row, database: &str| ExportJob::from_row(row, database, links),
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
        (status = 429, description = "An export was requested less than 24 hours ago (export_rate_limited), or too many requests (rate_limited)", body = crate::error::ErrorResponse,
            headers(("Retry-After" = u64, description = "Seconds until the next export (or request) is allowed")))
    )
)]
pub async fn request_export(
    me: Me,
    ctx: RequestContext,
    State(state): State<AppState>,
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
    let job = read_one(&*tx, id, &me.database_name(), state.links.as_ref()).await?;
    tx.commit().await?;
    Ok((StatusCode::CREATED, Json(job)))
}

async fn read_one(
    client: &impl GenericClient,
    id: Uuid,
    database: &str,
    links: Option<&LinkSigner>,
) -> ApiResult<ExportJob> {
    let row = client
        .query_opt(ONE, &[&id])
        .await?
        .ok_or_else(|| ApiError::internal(format!("export job {id} vanished")))?;
    Ok(ExportJob::from_row(&row, database, links))
}

/// The signed link's parts, when the download comes from one.
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LinkQuery {
    /// Expiry of a signed link (seconds since the epoch).
    pub expires: Option<String>,
    /// Signature of a signed link.
    pub signature: Option<String>,
}

/// Download the bundle of one of the bearer's exports: streamed (a local
/// store) or by a redirect to a URL presigned for a few minutes (S3).
/// Every download is audited with the caller's IP and user agent.
#[utoipa::path(
    get,
    path = "/me/exports/{id}/download",
    tag = "me",
    security(("subject_token" = [])),
    params(("id" = Uuid, Path, description = "The export's id"), LinkQuery),
    responses(
        (status = 200, description = "The bundle (a ZIP archive)", content_type = "application/zip", body = String),
        (status = 302, description = "The bundle, at a URL presigned for a few minutes (`Location`)"),
        (status = 401, description = super::caller::UNAUTHORIZED, body = crate::error::ErrorResponse),
        (status = 403, description = "A signed link that does not verify (`invalid_link`)", body = crate::error::ErrorResponse),
        (status = 404, description = "No export of the bearer has this id (job_not_found)", body = crate::error::ErrorResponse),
        (status = 409, description = "The bundle is not built, or the export failed (invalid_job_transition)", body = crate::error::ErrorResponse),
        (status = 410, description = "The 7-day entitlement ended and the bundle is deleted (export_expired)", body = crate::error::ErrorResponse)
    )
)]
pub async fn download_export(
    me: Me,
    ctx: RequestContext,
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
    Query(link): Query<LinkQuery>,
) -> ApiResult<Response> {
    if link.expires.is_some() || link.signature.is_some() {
        let signer = state
            .links
            .as_ref()
            .ok_or_else(|| ApiError::internal("download links need a subject token secret"))?;
        let checked = signer.verify(
            &me.database_name(),
            id,
            link.expires.as_deref(),
            link.signature.as_deref(),
            Utc::now(),
        );
        match checked {
            Ok(()) => {}
            // An expired link: the bundle's entitlement ended with it.
            Err(LinkError::Expired) => {
                return Err(ApiError::new(
                    StatusCode::GONE,
                    "export_expired",
                    format!("the download link of export {id} has expired"),
                )
                .with_hint("request a new export"))
            }
            Err(LinkError::Invalid) => {
                return Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "invalid_link",
                    "this download link is not valid",
                )
                .with_detail(
                    "Its signature does not match the export it names, or a part is missing.",
                )
                .with_hint(
                    "open the link exactly as it was sent, or download from the privacy center",
                ))
            }
        }
    }
    let mut client = me.client().await?;
    let (tx, _) = me.begin(&mut client, &ctx).await?;
    let actor = me.actor();
    let who = Downloader {
        target_type: me.subject_type(),
        target_id: me.subject_id(),
        actor: &actor,
    };
    bundles::download(&state.storage, tx, &ctx, id, who).await
}
