//! What the jobs API answers: a job as lists show it ([`Job`]) and a job's
//! own page ([`JobDetail`]), read from the database's rows.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::types::FromSql;
use tokio_postgres::Row;
use utoipa::ToSchema;
use uuid::Uuid;

use super::names::{JurisdictionName, StatusCounts, StatusName, TypeCounts, TypeName};
use crate::db::UnavailableDatabase;
use crate::error::{ApiError, ApiResult};

/// The columns of a [`Job`], as `lifecycle.list_jobs` returns them, for a
/// statement that reads `lifecycle.jobs j` itself (with `options` and
/// `result`, which only a job's page shows).
pub const JOB_COLUMNS: &str = "j.id, j.job_type, j.target_type, j.target_id, j.tenant_id, \
     (SELECT n.name FROM lifecycle.tenant_names(ARRAY[j.tenant_id]) n) AS tenant_name, \
     j.status, j.requested_by, j.reason, j.jurisdiction, j.requires_approval, \
     j.approved_by, j.approved_at, j.rejected_by, j.rejected_at, j.rejection_reason, \
     j.cancelled_by, j.cancelled_at, j.requested_at, j.scheduled_for, j.due_at, \
     j.blocked_by_hold, j.blocking_hold_id, j.attempts, j.worker, j.lease_expires_at, \
     j.started_at, j.finished_at, j.error, j.error_sqlstate, j.result_digest, j.updated_at, \
     j.options, j.result";

/// A job: an export, erasure or purge of a target in a tenant, and where
/// it is in its state machine. Every field is present (`null` when unset).
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({
    "database": "default", "id": "6f1c1f9e-3c1b-4b7e-9a59-0c6f3b1d2e4a", "type": "erase",
    "status": "pending", "target_type": "user", "target_id": "42", "tenant_id": "acme",
    "tenant_name": "Acme Corp", "requested_by": "alice@corp", "reason": "GDPR Art. 17, ticket 991",
    "jurisdiction": "gdpr", "requires_approval": true, "approved_by": null, "approved_at": null,
    "rejected_by": null, "rejected_at": null, "rejection_reason": null, "cancelled_by": null,
    "cancelled_at": null, "requested_at": "2026-12-01T10:00:00Z",
    "scheduled_for": "2026-12-31T10:00:00Z", "due_at": "2026-12-31T10:00:00Z",
    "blocked_by_hold": false, "blocking_hold_id": null, "attempts": 0, "worker": null,
    "lease_expires_at": null, "started_at": null, "finished_at": null, "error": null,
    "error_sqlstate": null, "result_digest": null, "updated_at": "2026-12-01T10:00:00Z"
}))]
pub struct Job {
    /// The configured name of the database the job lives in.
    pub database: String,
    pub id: Uuid,
    #[serde(rename = "type")]
    pub job_type: TypeName,
    pub status: StatusName,
    /// `user` (or another registered subject type), or `tenant` for a workspace.
    pub target_type: String,
    pub target_id: String,
    pub tenant_id: Option<String>,
    /// The tenant's display name, when the data map names tenants.
    pub tenant_name: Option<String>,
    /// The admin token's name (or the subject) that asked for the job.
    pub requested_by: String,
    pub reason: Option<String>,
    pub jurisdiction: JurisdictionName,
    pub requires_approval: bool,
    pub approved_by: Option<String>,
    pub approved_at: Option<DateTime<Utc>>,
    pub rejected_by: Option<String>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub rejection_reason: Option<String>,
    pub cancelled_by: Option<String>,
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Sort key of lists, with `id`.
    pub requested_at: DateTime<Utc>,
    /// End of the cooling-off: the job does not run before.
    pub scheduled_for: DateTime<Utc>,
    /// Statutory deadline (30 days GDPR, 45 days CCPA).
    pub due_at: DateTime<Utc>,
    /// A legal hold in force stopped the job; it waits until the hold ends.
    pub blocked_by_hold: bool,
    pub blocking_hold_id: Option<Uuid>,
    pub attempts: i32,
    /// The worker holding the job's lease.
    pub worker: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub error_sqlstate: Option<String>,
    /// SHA-256 of the receipt, as recorded in the audit chain.
    pub result_digest: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A column of a row, or a 500 naming it (a column the API reads and the
/// extension does not return is a bug, not the client's problem).
pub fn column<'a, T: FromSql<'a>>(row: &'a Row, name: &str) -> ApiResult<T> {
    row.try_get(name)
        .map_err(|err| ApiError::internal(format!("column {name}: {err}")))
}

impl Job {
    /// A job from a row of `lifecycle.list_jobs` or of [`JOB_COLUMNS`].
    pub fn from_row(database: &str, row: &Row) -> ApiResult<Self> {
        Ok(Self {
            database: database.to_owned(),
            id: column(row, "id")?,
            job_type: column(row, "job_type")?,
            status: column(row, "status")?,
            target_type: column(row, "target_type")?,
            target_id: column(row, "target_id")?,
            tenant_id: column(row, "tenant_id")?,
            tenant_name: column(row, "tenant_name")?,
            requested_by: column(row, "requested_by")?,
            reason: column(row, "reason")?,
            jurisdiction: column(row, "jurisdiction")?,
            requires_approval: column(row, "requires_approval")?,
            approved_by: column(row, "approved_by")?,
            approved_at: column(row, "approved_at")?,
            rejected_by: column(row, "rejected_by")?,
            rejected_at: column(row, "rejected_at")?,
            rejection_reason: column(row, "rejection_reason")?,
            cancelled_by: column(row, "cancelled_by")?,
            cancelled_at: column(row, "cancelled_at")?,
            requested_at: column(row, "requested_at")?,
            scheduled_for: column(row, "scheduled_for")?,
            due_at: column(row, "due_at")?,
            blocked_by_hold: column(row, "blocked_by_hold")?,
            blocking_hold_id: column(row, "blocking_hold_id")?,
            attempts: column(row, "attempts")?,
            worker: column(row, "worker")?,
            lease_expires_at: column(row, "lease_expires_at")?,
            started_at: column(row, "started_at")?,
            finished_at: column(row, "finished_at")?,
            error: column(row, "error")?,
            error_sqlstate: column(row, "error_sqlstate")?,
            result_digest: column(row, "result_digest")?,
            updated_at: column(row, "updated_at")?,
        })
    }
}

/// A job's page: the job, what was decided for it, its receipt, its
/// context, the steps outside the database it waits for and the hold that
/// blocks it.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct JobDetail {
    #[serde(flatten)]
    pub job: Job,
    /// What the request decided (for an erasure, `workspaces`: the decision
    /// for each workspace the subject is the last admin of).
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
    /// The receipt once the database part ran: counts per table and action,
    /// what was retained with its legal basis and end date, and the
    /// verification.
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    pub context: JobContext,
    pub external_steps: ExternalSteps,
    /// The hold that blocks the job, when it is blocked.
    pub blocking_hold: Option<BlockingHold>,
}

/// Where the job's target stands now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct JobContext {
    /// `active`, `pending_deletion` or `erased` (`lifecycle.subject_state`);
    /// `null` when the data map no longer knows the target's type.
    pub subject_state: Option<String>,
    /// The tenant's display name, when the data map names tenants.
    pub tenant_name: Option<String>,
}

/// Longest list of external steps a job's page shows (an erasure records
/// one per stored object: thousands for a heavy user); the counts cover all.
pub const MAX_EXTERNAL_STEPS: i64 = 1000;

/// Steps outside the database (stored files, third parties) the job waits
/// for until each is confirmed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ExternalSteps {
    pub total: i64,
    pub pending: i64,
    /// The first steps by id, at most 1000.
    pub items: Vec<ExternalStep>,
}

/// One step outside the database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct ExternalStep {
    pub id: i64,
    /// What is to be done (`storage_object`, ...).
    pub kind: String,
    /// The table and column the reference came from.
    pub relation: Option<String>,
    pub column_name: Option<String>,
    /// The object's key or the third party's reference.
    pub reference: String,
    /// `pending` or `confirmed`.
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub confirmed_at: Option<DateTime<Utc>>,
    pub confirmed_by: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// The external steps of a job, with their counts.
pub const EXTERNAL_STEPS: &str = "SELECT id, kind, relation::text AS relation, \
            column_name::text AS column_name, reference, status, created_at, confirmed_at, \
            confirmed_by, attempts, last_error, count(*) OVER () AS total, \
            count(*) FILTER (WHERE status = 'pending') OVER () AS pending \
       FROM lifecycle.external_steps WHERE job_id = $1 ORDER BY id LIMIT $2";

impl ExternalSteps {
    pub fn from_rows(rows: &[Row]) -> ApiResult<Self> {
        let (total, pending) = match rows.first() {
            Some(first) => (column(first, "total")?, column(first, "pending")?),
            None => (0, 0),
        };
        let items = rows
            .iter()
            .map(|row| {
                Ok(ExternalStep {
                    id: column(row, "id")?,
                    kind: column(row, "kind")?,
                    relation: column(row, "relation")?,
                    column_name: column(row, "column_name")?,
                    reference: column(row, "reference")?,
                    status: column(row, "status")?,
                    created_at: column(row, "created_at")?,
                    confirmed_at: column(row, "confirmed_at")?,
                    confirmed_by: column(row, "confirmed_by")?,
                    attempts: column(row, "attempts")?,
                    last_error: column(row, "last_error")?,
                })
            })
            .collect::<ApiResult<_>>()?;
        Ok(Self {
            total,
            pending,
            items,
        })
    }
}

/// The legal hold that blocks a job. A hold of another tenant than a
/// tenant admin's shows its id and whether it is in force only: its reason
/// and scope are that tenant's business.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct BlockingHold {
    pub id: Uuid,
    /// Active and not expired: the job stays blocked while it is.
    pub in_force: bool,
    pub scope_type: Option<String>,
    pub scope_id: Option<String>,
    pub tenant_id: Option<String>,
    pub reason: Option<String>,
    /// Who placed it.
    pub placed_by: Option<String>,
    pub placed_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The hold `$1`.
pub const HOLD: &str = "SELECT id, scope_type, scope_id, tenant_id, reason, created_by, \
            created_at, expires_at, \
            (active AND (expires_at IS NULL OR expires_at > now())) AS in_force \
       FROM lifecycle.legal_holds WHERE id = $1";

impl BlockingHold {
    /// The hold from its row; with `visible` false, only its id and state.
    pub fn from_row(row: &Row, visible: bool) -> ApiResult<Self> {
        let mut hold = Self {
            id: column(row, "id")?,
            in_force: column(row, "in_force")?,
            scope_type: None,
            scope_id: None,
            tenant_id: None,
            reason: None,
            placed_by: None,
            placed_at: None,
            expires_at: None,
        };
        if visible {
            hold.scope_type = column(row, "scope_type")?;
            hold.scope_id = column(row, "scope_id")?;
            hold.tenant_id = column(row, "tenant_id")?;
            hold.reason = column(row, "reason")?;
            hold.placed_by = column(row, "created_by")?;
            hold.placed_at = column(row, "created_at")?;
            hold.expires_at = column(row, "expires_at")?;
        }
        Ok(hold)
    }
}

/// Counts of jobs by status and by type, over the databases that answered.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
#[schema(example = json!({
    "total": 3,
    "by_status": {"pending": 1, "approved": 0, "processing": 0, "completed": 2, "failed": 0, "rejected": 0, "cancelled": 0},
    "by_type": {"export": 1, "erase": 2, "purge": 0}
}))]
pub struct JobStats {
    pub total: i64,
    /// Every status, zeros included.
    pub by_status: StatusCounts,
    /// Every type, zeros included.
    pub by_type: TypeCounts,
    /// Databases that did not answer (their jobs are not counted); absent
    /// when every database answered.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<UnavailableDatabase>,
}
