//! `GET /api/v1/me/activity`: the subject's own privacy activity, their
//! audit events newest first.
//!
//! Only events about the bearer (`subject_type`, `subject_id`) are read,
//! as stored: an event redacted at an erasure stays redacted. Events about
//! legal holds are left out (see the module above), and so is what other
//! people's events say about those people: for an event someone else
//! caused (an administrator approving, the application), the subject sees
//! that it was someone else, not their name, address or user agent.

use chrono::{DateTime, Utc};
use lifecycle_core::events;
use serde::{Deserialize, Serialize};
use tokio_postgres::Row;
use utoipa::ToSchema;

use super::caller::Me;
use crate::api::extract::{Json, Query};
use crate::api::{Page, PageQuery, RequestContext};
use crate::error::ApiResult;

/// Events of the subject, newest first, before the cursor's id.
const ACTIVITY: &str = "\
    SELECT id, occurred_at, event_type, actor, tenant_id, host(ip), user_agent, reason, details, \
           redacted_at IS NOT NULL \
      FROM lifecycle.audit_log \
     WHERE subject_type = $1 AND subject_id = ANY (ARRAY[$2, lifecycle.canonical_id($1, $2)]) \
       AND event_type <> ALL ($3::text[]) \
       AND ($4::bigint IS NULL OR id < $4) \
     ORDER BY id DESC \
     LIMIT $5";

/// Events the subject never sees: a hold's existence can be confidential.
const HIDDEN_EVENTS: &[&str] = &[
    events::LEGAL_HOLD_PLACED,
    events::LEGAL_HOLD_RELEASED,
    events::JOB_BLOCKED_BY_HOLD,
];

/// Who caused an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActivityActor {
    /// The subject (through the privacy center or the application).
    You,
    /// Someone else: an administrator, the application, a worker.
    SomeoneElse,
}

/// One event of the subject's activity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ActivityEvent {
    /// The event's id in the audit log of its database.
    pub id: i64,
    pub database: String,
    pub occurred_at: DateTime<Utc>,
    /// `account.deletion_requested`, `data.export_requested`, ... or an
    /// event the application records.
    pub event_type: String,
    /// Who caused it; `null` when not recorded or redacted.
    pub by: Option<ActivityActor>,
    /// The workspace it happened in.
    pub tenant_id: Option<String>,
    /// The address it came from, for the subject's own events.
    pub ip: Option<String>,
    /// The user agent, for the subject's own events.
    pub user_agent: Option<String>,
    pub reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
    /// Its personal fields were cleared when the subject was erased.
    pub redacted: bool,
}

impl ActivityEvent {
    fn from_row(row: &Row, me: &Me, database: &str) -> Self {
        let actor: Option<String> = row.get(3);
        let by = actor.map(|actor| {
            if actor == me.actor() || actor == me.subject_id() {
                ActivityActor::You
            } else {
                ActivityActor::SomeoneElse
            }
        });
        let own = by == Some(ActivityActor::You);
        Self {
            id: row.get(0),
            database: database.to_owned(),
            occurred_at: row.get(1),
            event_type: row.get(2),
            by,
            tenant_id: row.get(4),
            ip: row.get::<_, Option<String>>(5).filter(|_| own),
            user_agent: row.get::<_, Option<String>>(6).filter(|_| own),
            reason: row.get(7),
            details: row.get(8),
            redacted: row.get(9),
        }
    }
}

/// The bearer's own privacy activity: their audit events (requests,
/// approvals, cancellations, exports, erasure, and what the application
/// records about them), newest first, paginated. Never another subject's.
#[utoipa::path(
    get,
    path = "/me/activity",
    tag = "me",
    security(("subject_token" = [])),
    params(PageQuery),
    responses(
        (status = 200, description = "The subject's events, newest first", body = Page<ActivityEvent>),
        (status = 401, description = super::caller::UNAUTHORIZED, body = crate::error::ErrorResponse)
    )
)]
pub async fn activity(
    me: Me,
    ctx: RequestContext,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<Page<ActivityEvent>>> {
    let limit = page.limit()?;
    let after: Option<i64> = page.cursor()?;
    let page = super::page(
        &me,
        &ctx,
        limit,
        ACTIVITY,
        &[&me.subject_type(), &me.subject_id(), &HIDDEN_EVENTS, &after],
        |row, database| ActivityEvent::from_row(row, &me, database),
        |e: &ActivityEvent| e.id,
    )
    .await?;
    Ok(Json(page))
}
