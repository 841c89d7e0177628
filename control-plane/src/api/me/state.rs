//! `GET /api/v1/me`: the subject's state and their latest erasure request.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::{GenericClient, Row};
use utoipa::ToSchema;
use uuid::Uuid;

use super::caller::{Me, SubjectState};
use crate::api::extract::Json;
use crate::api::jobs::StatusName;
use crate::api::RequestContext;
use crate::error::ApiResult;

/// The subject's latest erasure job (the open one, if one is open: only one
/// can be).
const LATEST_ERASURE: &str = "\
    SELECT id, status, requested_at, scheduled_for, due_at, requires_approval, approved_at, \
           reason, options -> 'workspaces', cancelled_at, finished_at, rejection_reason \
      FROM lifecycle.jobs \
     WHERE target_type = $1 AND target_id = lifecycle.canonical_id($1, $2) AND job_type = 'erase' \
     ORDER BY requested_at DESC, id DESC \
     LIMIT 1";

/// Body of `GET /api/v1/me` and of the erasure actions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "database": "default", "subject_type": "user", "subject_id": "42", "tenant": "acme",
    "state": "pending_deletion", "scheduled_for": "2026-12-15T10:00:00Z",
    "erasure": {"job_id": "6f1c2d4e-8a4b-4c55-9d0e-3c9b8f7a6e21", "status": "pending",
                "requested_at": "2026-12-01T10:00:00Z", "scheduled_for": "2026-12-15T10:00:00Z",
                "due_at": "2026-12-31T10:00:00Z", "requires_approval": true}
}))]
pub struct MeState {
    /// The configured name of the database that holds the subject.
    pub database: String,
    pub subject_type: String,
    pub subject_id: String,
    /// The workspace the person is signed in to (the token's `tenant`).
    pub tenant: Option<String>,
    pub state: SubjectState,
    /// While the deletion is pending: the end of its cooling-off, the
    /// earliest time it runs. `null` otherwise.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The latest erasure request, whatever became of it; `null` when
    /// there was none.
    pub erasure: Option<ErasureRequest>,
}

/// An erasure request as its subject sees it (no administrator's name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErasureRequest {
    pub job_id: Uuid,
    pub status: StatusName,
    pub requested_at: DateTime<Utc>,
    /// End of the cooling-off: it does not run before.
    pub scheduled_for: DateTime<Utc>,
    /// Statutory deadline (30 days GDPR, 45 days CCPA).
    pub due_at: DateTime<Utc>,
    /// Whether an administrator approves it before it runs.
    pub requires_approval: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The decisions for the workspaces the subject was the last admin of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub workspaces: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Why an administrator rejected it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection_reason: Option<String>,
}

impl ErasureRequest {
    fn from_row(row: &Row) -> Self {
        Self {
            job_id: row.get(0),
            status: row.get(1),
            requested_at: row.get(2),
            scheduled_for: row.get(3),
            due_at: row.get(4),
            requires_approval: row.get(5),
            approved_at: row.get(6),
            reason: row.get(7),
            workspaces: row
                .get::<_, Option<serde_json::Value>>(8)
                .filter(|w| !w.is_null()),
            cancelled_at: row.get(9),
            finished_at: row.get(10),
            rejection_reason: row.get(11),
        }
    }
}

/// The subject's latest erasure request, if any.
pub(super) async fn latest_erasure(
    client: &impl GenericClient,
    me: &Me,
) -> ApiResult<Option<ErasureRequest>> {
    Ok(client
        .query_opt(LATEST_ERASURE, &[&me.subject_type(), &me.subject_id()])
        .await?
        .as_ref()
        .map(ErasureRequest::from_row))
}

/// The subject's state as [`MeState`] says it, read with `client` (inside
/// the transaction of an action, so that it shows the action's effect).
pub(super) async fn read(
    client: &impl GenericClient,
    me: &Me,
    state: SubjectState,
) -> ApiResult<MeState> {
    let erasure = latest_erasure(client, me).await?;
    let scheduled_for = match (&erasure, state) {
        (Some(e), SubjectState::PendingDeletion) => Some(e.scheduled_for),
        _ => None,
    };
    Ok(MeState {
        database: me.database_name(),
        subject_type: me.subject_type().to_owned(),
        subject_id: me.subject_id().to_owned(),
        tenant: me.tenant().map(str::to_owned),
        state,
        scheduled_for,
        erasure,
    })
}

/// The bearer's state: `active`, `pending_deletion` (with the date the
/// deletion runs at the earliest) or `erased`, and their latest erasure
/// request. The privacy center shows it, and offers to cancel a pending
/// deletion.
#[utoipa::path(
    get,
    path = "/me",
    tag = "me",
    security(("subject_token" = [])),
    responses(
        (status = 200, description = "The subject's state", body = MeState),
        (status = 401, description = super::caller::UNAUTHORIZED, body = crate::error::ErrorResponse)
    )
)]
pub async fn me(me: Me, ctx: RequestContext) -> ApiResult<Json<MeState>> {
    let mut client = me.client().await?;
    let (tx, state) = me.begin(&mut client, &ctx).await?;
    let body = read(&*tx, &me, state).await?;
    tx.commit().await?;
    Ok(Json(body))
}
