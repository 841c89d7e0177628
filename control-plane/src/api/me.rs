//! The data subject's own data, through `/api/v1/me/...` with a subject
//! token: their state, what an erasure of them would do, their erasure
//! request and its cancellation, their privacy activity and their exports.
//!
//! Every handler works in the subject's own database ([`Me`]), checks there
//! that the token's subject type is one the data map registers, and only
//! ever names the bearer's own subject type and id in what it asks: the
//! bearer reaches their own rows and nobody else's. The extension decides
//! everything else (duplicates, cooling-off, last admins, the state
//! machine); its SQLSTATE decides the status.
//!
//! The subject's own requests are recorded with `requested_by` (and
//! `cancelled_by`) `<subject_type>:<subject_id>`, the form in which the
//! extension recognizes a self-service request (`self_service: true` in the
//! audit event, no `admin.user_deleted` event when it runs).
//!
//! Legal holds never show here: a hold's existence can itself be
//! confidential (litigation, an investigation), so the subject's preview,
//! state and activity leave them out; administrators see them.

use clap::Args;
use serde::Serialize;
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::{Page, RequestContext};
use crate::error::ApiResult;
use crate::state::AppState;

mod activity;
mod caller;
mod erasure;
mod exports;
mod preview;
mod state;

pub use activity::{ActivityActor, ActivityEvent};
pub use caller::{Me, SubjectState};
pub use erasure::{ErasureConfirmation, CONFIRMATION};
pub use exports::{ExportJob, ExportRequest, ExportStatus};
pub use preview::{ErasurePreview, Outcome, PreviewItem, WorkspaceNeedingDecision};
pub use state::{ErasureRequest, MeState};

/// Default cooling-off of a subject's own erasure: long enough to change
/// one's mind, short enough to leave most of the GDPR's month for approval
/// and the run.
pub const DEFAULT_SUBJECT_ERASURE_COOLING_OFF_DAYS: u32 = 14;
/// Longest configurable cooling-off.
pub const MAX_SUBJECT_ERASURE_COOLING_OFF_DAYS: u32 = 365;

/// Settings of the subject's own endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct MeArgs {
    /// Days between a subject's own erasure request (`POST
    /// /api/v1/me/erasure`) and the earliest time it runs; they can cancel
    /// until then. 0: none.
    #[arg(
        long,
        env = "LIFECYCLE_SUBJECT_ERASURE_COOLING_OFF_DAYS",
        default_value_t = DEFAULT_SUBJECT_ERASURE_COOLING_OFF_DAYS,
        value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_SUBJECT_ERASURE_COOLING_OFF_DAYS))
    )]
    pub subject_erasure_cooling_off_days: u32,
}

impl Default for MeArgs {
    fn default() -> Self {
        Self {
            subject_erasure_cooling_off_days: DEFAULT_SUBJECT_ERASURE_COOLING_OFF_DAYS,
        }
    }
}

/// A reason as the subject typed it, without surrounding spaces; none when
/// blank.
fn reason(typed: Option<&str>) -> Option<&str> {
    typed.map(str::trim).filter(|r| !r.is_empty())
}

/// One page of the bearer's rows, newest first: `sql` runs in the
/// subject's transaction with `params` and, last, the overfetch limit
/// (`limit + 1`, see [`Page::from_overfetch`]); `item` reads a row (with
/// the database's name), `position` is the keyset position a cursor
/// carries.
async fn page<T, C: Serialize>(
    me: &Me,
    ctx: &RequestContext,
    limit: u32,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    item: impl Fn(&Row, &str) -> T,
    position: impl Fn(&T) -> C,
) -> ApiResult<Page<T>> {
    let overfetch = i64::from(limit) + 1;
    let mut params = params.to_vec();
    params.push(&overfetch);
    let mut client = me.client().await?;
    let (tx, _) = me.begin(&mut client, ctx).await?;
    let rows = tx.query(sql, &params).await?;
    tx.commit().await?;
    let database = me.database_name();
    let items = rows.iter().map(|row| item(row, &database)).collect();
    Ok(Page::from_overfetch(items, limit, position))
}

/// Routes of this module (under `/api/v1`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(state::me))
        .routes(routes!(preview::erasure_preview))
        .routes(routes!(erasure::request_erasure))
        .routes(routes!(erasure::cancel_erasure))
        .routes(routes!(activity::activity))
        .routes(routes!(exports::list_exports, exports::request_export))
        .routes(routes!(exports::download_export))
}
