//! The extension's worker functions, as the worker calls them. The worker
//! never writes `lifecycle.jobs` itself: claims, leases and runs are the
//! extension's, so a DBA's `run_due_jobs()` and any number of `lifecycled`
//! processes share one set of rules.

use std::fmt;
use std::time::Duration;

use deadpool_postgres::{Object, PoolError};
use lifecycle_core::jobs::JobType;
use lifecycle_core::Code;
use uuid::Uuid;

/// The channel the extension notifies when a job becomes runnable (the
/// payload is the job's id).
pub const CHANNEL: &str = "lifecycle_jobs";

/// Claims the next runnable job and reads, in the statement's snapshot
/// (taken before `claim_job` changed the row), what the row was before: a
/// job that was `processing` under another worker was taken over from an
/// expired lease.
const CLAIM: &str = "\
    SELECT (c.job ->> 'id')::uuid, c.job ->> 'job_type', p.status, p.worker, \
           c.job ->> 'target_type', c.job ->> 'target_id', c.job ->> 'tenant_id', \
           (c.job ->> 'attempts')::int \
      FROM lifecycle.claim_job($1, make_interval(secs => $2), $3) AS c(job) \
      LEFT JOIN lifecycle.jobs p ON p.id = (c.job ->> 'id')::uuid \
     WHERE c.job IS NOT NULL";

/// Runs one job and reads what became of it, without the receipt (which
/// stays in the database; the API shows it).
const RUN: &str = "\
    SELECT r ->> 'status', coalesce((r ->> 'blocked_by_hold')::boolean, false) \
      FROM lifecycle.run_job($1, $2) AS r";

/// A dead worker's session is noticed by its backend within this interval,
/// which then rolls the job's transaction back and frees its locks (without
/// it, a backend waiting on a lock would wait on, and commit for nobody).
const RUN_SETTINGS: &str = "SET LOCAL client_connection_check_interval = '1s'";

const RENEW: &str = "SELECT lifecycle.renew_lease($1, $2, make_interval(secs => $3))";

/// A running erase or purge job holds its row locked until it commits; a
/// renewal gives up on that lock at once instead of queueing behind it (the
/// lock, not the lease, keeps other workers away meanwhile).
const RENEW_SETTINGS: &str = "SET LOCAL lock_timeout = '200ms'";

const RELEASE: &str = "SELECT lifecycle.release_lease($1, $2)";

const COMPLETE: &str = "SELECT lifecycle.complete_job($1, $2, $3)";

const FAIL: &str = "SELECT lifecycle.fail_job($1, $2, $3)";

/// Bundles whose entitlement ended and that are still stored, oldest first.
const DUE_BUNDLES: &str = "\
    SELECT job_id, object_key FROM lifecycle.export_bundles \
     WHERE expired_at IS NULL AND expires_at <= now() \
     ORDER BY expires_at LIMIT $1";

const EXPIRE: &str = "SELECT lifecycle.expire_export($1, $2)";

const CHAIN_HEADS: &str =
    "SELECT chain, last_id, last_hash, events FROM lifecycle.audit_chain_heads() ORDER BY chain";

/// `lock_not_available`: the renewal found the job's row locked.
pub const LOCK_NOT_AVAILABLE: &str = "55P03";

/// The SQLSTATEs that say a lease is no longer this worker's: another
/// worker holds it, or the job left `processing` (cancelled, finished).
pub const LEASE_LOST: [&str; 3] = [
    Code::JobLeaseHeld.sqlstate(),
    Code::InvalidJobTransition.sqlstate(),
    Code::JobNotFound.sqlstate(),
];

/// A job this worker claimed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub id: Uuid,
    pub job_type: JobType,
    /// The worker whose expired lease this claim took over, if any.
    pub taken_over_from: Option<String>,
    pub target_type: String,
    pub target_id: String,
    pub tenant_id: Option<String>,
    /// Claims of an export so far, this one included (erase and purge
    /// jobs count their runs instead).
    pub attempts: i32,
}

/// What became of a job the engine ran, as `lifecycle.run_job` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done, receipt stored.
    Completed,
    /// Done in the database; steps outside it (stored files) are pending.
    WaitingForSteps,
    /// Ended with an error the job records.
    Failed,
    /// A legal hold in force blocks it; it waits for the hold to end.
    Blocked,
    /// A transient error (deadlock, lock timeout, cancellation): back in the
    /// queue for another attempt.
    Retry,
}

impl Outcome {
    /// The metric label and log value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::WaitingForSteps => "waiting_for_steps",
            Outcome::Failed => "failed",
            Outcome::Blocked => "blocked",
            Outcome::Retry => "retry",
        }
    }

    /// The outcome of a job left in `status` (with `blocked_by_hold`) by a
    /// run; `None` for a status a run never leaves.
    fn of(status: &str, blocked: bool) -> Option<Outcome> {
        Some(match status {
            "completed" => Outcome::Completed,
            "processing" => Outcome::WaitingForSteps,
            "failed" => Outcome::Failed,
            "approved" if blocked => Outcome::Blocked,
            "approved" => Outcome::Retry,
            _ => return None,
        })
    }
}

/// A call that did not get the database's answer, or got its error.
#[derive(Debug)]
pub enum CallError {
    /// No connection from the pool (database down, pool exhausted).
    Pool(PoolError),
    /// The database's error, or a broken connection.
    Db(tokio_postgres::Error),
    /// The server ended a session that was meant to last (the listener's).
    Closed,
    /// The answer made no sense (a bug on one side or the other).
    Unexpected(String),
}

impl CallError {
    /// SQLSTATE of the database's error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            CallError::Db(e) => e.code().map(|c| c.code()),
            _ => None,
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Pool(e) => write!(f, "no database connection: {e}"),
            CallError::Db(e) => match e.as_db_error() {
                Some(db) => write!(f, "{} {}", db.code().code(), db.message()),
                None => write!(f, "{e}"),
            },
            CallError::Closed => f.write_str("the server closed the session"),
            CallError::Unexpected(what) => f.write_str(what),
        }
    }
}

impl std::error::Error for CallError {}

impl From<PoolError> for CallError {
    fn from(e: PoolError) -> Self {
        CallError::Pool(e)
    }
}

impl From<tokio_postgres::Error> for CallError {
    fn from(e: tokio_postgres::Error) -> Self {
        CallError::Db(e)
    }
}

/// `lifecycle.claim_job`: the next runnable job of `job_types` for
/// `worker`, leased for `lease`; `None` when nothing is due.
pub async fn claim(
    client: &Object,
    worker: &str,
    lease: Duration,
    job_types: &[String],
) -> Result<Option<Claim>, CallError> {
    let Some(row) = client
        .query_opt(CLAIM, &[&worker, &lease.as_secs_f64(), &job_types])
        .await?
    else {
        return Ok(None);
    };
    let job_type: String = row.get(1);
    let job_type = job_type
        .parse()
        .map_err(|_| CallError::Unexpected(format!("claimed a job of type {job_type:?}")))?;
    let previous_status: Option<String> = row.get(2);
    let previous_worker: Option<String> = row.get(3);
    Ok(Some(Claim {
        id: row.get(0),
        job_type,
        taken_over_from: previous_worker
            .filter(|w| previous_status.as_deref() == Some("processing") && w != worker),
        target_type: row.get::<_, Option<String>>(4).unwrap_or_default(),
        target_id: row.get::<_, Option<String>>(5).unwrap_or_default(),
        tenant_id: row.get(6),
        attempts: row.get::<_, Option<i32>>(7).unwrap_or_default(),
    }))
}

/// `lifecycle.run_job`: run a claimed erase or purge job (one transaction:
/// all of its database work or none).
pub async fn run(client: &mut Object, job: Uuid, worker: &str) -> Result<Outcome, CallError> {
    let tx = client.transaction().await?;
    tx.batch_execute(RUN_SETTINGS).await?;
    let row = tx.query_one(RUN, &[&job, &worker]).await?;
    tx.commit().await?;
    let status: Option<String> = row.get(0);
    let status = status.unwrap_or_default();
    Outcome::of(&status, row.get(1))
        .ok_or_else(|| CallError::Unexpected(format!("run_job left the job {status:?}")))
}

/// `lifecycle.renew_lease`: extend the lease of a job this worker holds.
pub async fn renew(
    client: &mut Object,
    job: Uuid,
    worker: &str,
    lease: Duration,
) -> Result<(), CallError> {
    let tx = client.transaction().await?;
    tx.batch_execute(RENEW_SETTINGS).await?;
    tx.execute(RENEW, &[&job, &worker, &lease.as_secs_f64()])
        .await?;
    tx.commit().await?;
    Ok(())
}

/// `lifecycle.release_lease`: hand a claimed job that was not started back
/// to the queue (the extension notifies the other workers).
pub async fn release(client: &Object, job: Uuid, worker: &str) -> Result<(), CallError> {
    client.execute(RELEASE, &[&job, &worker]).await?;
    Ok(())
}

impl CallError {
    /// Whether the error says the lease is no longer this worker's.
    pub fn lease_lost(&self) -> bool {
        self.sqlstate().is_some_and(|s| LEASE_LOST.contains(&s))
    }
}

/// `lifecycle.complete_job`: an export's bundle is stored; `result`
/// describes it.
pub async fn complete(
    client: &Object,
    job: Uuid,
    worker: &str,
    result: &serde_json::Value,
) -> Result<(), CallError> {
    client.execute(COMPLETE, &[&job, &worker, result]).await?;
    Ok(())
}

/// `lifecycle.fail_job`: the job ends failed with `error` (a message for
/// the people who read the job, revealing nothing internal).
pub async fn fail(client: &Object, job: Uuid, worker: &str, error: &str) -> Result<(), CallError> {
    client.execute(FAIL, &[&job, &worker, &error]).await?;
    Ok(())
}

/// Up to `limit` bundles whose entitlement ended: (job id, object key).
pub async fn due_bundles(client: &Object, limit: i64) -> Result<Vec<(Uuid, String)>, CallError> {
    Ok(client
        .query(DUE_BUNDLES, &[&limit])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// `lifecycle.expire_export`: the bundle of `job` is deleted; false when
/// the export already was expired.
pub async fn expire(client: &Object, job: Uuid, actor: &str) -> Result<bool, CallError> {
    Ok(client.query_one(EXPIRE, &[&job, &actor]).await?.get(0))
}

/// The head of one audit chain.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChainHead {
    pub chain: i32,
    pub last_id: Option<i64>,
    /// Hexadecimal.
    pub last_hash: String,
    pub events: i64,
}

/// `lifecycle.audit_chain_heads`: what an anchor records.
pub async fn chain_heads(client: &Object) -> Result<Vec<ChainHead>, CallError> {
    Ok(client
        .query(CHAIN_HEADS, &[])
        .await?
        .iter()
        .map(|r| ChainHead {
            chain: r.get(0),
            last_id: r.get(1),
            last_hash: r.get(2),
            events: r.get(3),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_follow_the_status_a_run_leaves() {
        assert_eq!(Outcome::of("completed", false), Some(Outcome::Completed));
        assert_eq!(
            Outcome::of("processing", false),
            Some(Outcome::WaitingForSteps)
        );
        assert_eq!(Outcome::of("failed", false), Some(Outcome::Failed));
        assert_eq!(Outcome::of("approved", true), Some(Outcome::Blocked));
        assert_eq!(Outcome::of("approved", false), Some(Outcome::Retry));
        assert_eq!(Outcome::of("pending", false), None);
    }
}
