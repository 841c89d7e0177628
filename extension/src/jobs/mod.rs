//! Jobs: export, erasure and purge requests, their state machine, approvals,
//! cooling-off, leases for workers and the runner that executes due jobs.
//!
//! * [`request`]: requests, approvals, cancellation and the subject's state;
//! * [`runner`]: the runner of due erase and purge jobs;
//! * [`lease`]: workers' claims, leases, their release and completions, and
//!   the steps outside the database;
//! * [`list`]: the job list of the admin console, with keyset pagination;
//! * [`stats`]: counts by status and type without a scan of the jobs, and
//!   the oldest due jobs.
//!
//! The state machine is [`lifecycle_core::jobs`]'s; the trigger on
//! `lifecycle.jobs` enforces it through [`check_update`]. Job types,
//! statuses and the names of the audit events come from the core crate too.
//! A job row is read once into a typed [`Job`].
//!
//! A job runs in a subtransaction of the caller's transaction: its database
//! work is all or nothing, and a failing job does not undo the others run by
//! the same `run_due_jobs` call. Workers claim jobs with
//! `FOR UPDATE SKIP LOCKED` and a lease; a lease that expires gives a crashed
//! worker's job to another.

use lifecycle_core::jobs::{start_allowed, transition_allowed, JobStatus, JobType};
use serde_json::{json, Value};

use crate::audit::{self, Event};
use crate::error::{LcError, LcResult};
use crate::spi;

pub mod lease;
pub mod list;
pub mod request;
pub mod runner;
pub mod stats;

pub use lease::{claim_job, complete_job, confirm_step, fail_job, release_lease, renew_lease};
pub use request::{approve, cancel, is_self_service, reject, request, subject_state, Request};
pub use runner::{is_transient, run_due_jobs, run_job, Outcome, MAX_ATTEMPTS};

/// The fields of a job row the trigger checks.
#[derive(Debug, Default, Clone)]
pub struct JobRow {
    pub id: String,
    pub job_type: String,
    pub target_type: String,
    pub target_id: String,
    pub tenant_id: Option<String>,
    pub status: String,
    pub requested_by: String,
    pub requires_approval: bool,
    pub approved_by: Option<String>,
    pub rejection_reason: Option<String>,
}

/// The jobs trigger: INSERT starts pending (or approved when no approval is
/// required), UPDATE follows the state machine and keeps what a job is
/// about, DELETE is refused.
pub fn check_update(old: Option<&JobRow>, new: Option<&JobRow>) -> LcResult<()> {
    match (old, new) {
        (None, Some(n)) => {
            let ok = n
                .status
                .parse()
                .is_ok_and(|status| start_allowed(status, n.requires_approval));
            if !ok {
                return Err(LcError::invalid_job_transition(&n.id, "nothing", &n.status)
                    .hint("Create jobs with lifecycle.request_export(), request_erasure() or request_purge()."));
            }
            Ok(())
        }
        (Some(o), Some(n)) => {
            let fixed = [
                ("id", o.id == n.id),
                ("job_type", o.job_type == n.job_type),
                ("target_type", o.target_type == n.target_type),
                ("target_id", o.target_id == n.target_id),
                ("tenant_id", o.tenant_id == n.tenant_id),
                ("requested_by", o.requested_by == n.requested_by),
            ];
            if let Some((field, _)) = fixed.iter().find(|(_, same)| !same) {
                return Err(LcError::invalid_job_transition(&o.id, &o.status, &n.status)
                    .detail(format!("The {field} of a job never changes."))
                    .hint("Cancel the job and request a new one."));
            }
            let from = o.status.parse::<JobStatus>().ok();
            let to = n.status.parse::<JobStatus>().ok();
            if !from.zip(to).is_some_and(|(f, t)| transition_allowed(f, t)) {
                return Err(
                    LcError::invalid_job_transition(&o.id, &o.status, &n.status).hint(match from {
                        Some(f) if f.is_finished() => {
                            "The job is finished; request a new one if needed."
                        }
                        Some(JobStatus::Processing) => "The job is running; wait for it to finish.",
                        _ => "Use lifecycle.approve(), reject() or cancel().",
                    }),
                );
            }
            if from == Some(JobStatus::Pending) && to == Some(JobStatus::Approved) {
                match n.approved_by.as_deref() {
                    None => return Err(LcError::null_value("approved_by", "lifecycle.approve()")),
                    Some(a) if a == n.requested_by => {
                        return Err(LcError::approver_is_requester(&n.id, a))
                    }
                    _ => {}
                }
            }
            if to == Some(JobStatus::Rejected)
                && n.rejection_reason
                    .as_deref()
                    .is_none_or(|r| r.trim().is_empty())
            {
                return Err(LcError::invalid_parameter(format!(
                    "rejecting job {} requires a reason",
                    n.id
                ))
                .hint("Say why, for example reason => 'identity could not be verified'."));
            }
            Ok(())
        }
        (Some(o), None) => Err(LcError::job_not_in_state(&o.id, "delete", &o.status)
            .detail("Jobs are records of requests and are never deleted.")
            .hint("Cancel or reject the job instead.")),
        (None, None) => Ok(()),
    }
}

fn require<'a>(v: Option<&'a str>, param: &str, function: &str) -> LcResult<&'a str> {
    match v {
        None => Err(LcError::null_value(param, function)),
        Some(s) if s.trim().is_empty() => Err(LcError::invalid_parameter(format!(
            "parameter \"{param}\" of {function} must not be empty"
        ))),
        Some(s) => Ok(s),
    }
}

/// A job row as the runner and the workers use it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub job_type: JobType,
    pub status: JobStatus,
    pub target_type: String,
    pub target_id: String,
    pub tenant_id: Option<String>,
    pub requested_by: String,
    pub worker: Option<String>,
    pub lease_expires_at: Option<String>,
    pub scheduled_for: String,
    pub options: Value,
    /// The receipt is stored (the database part is done).
    pub has_result: bool,
    pub blocking_hold_id: Option<String>,
    pub attempts: i64,
    /// The cooling-off has passed.
    pub due_now: bool,
    /// No lease, or it has expired.
    pub lease_expired: bool,
}

/// The columns of [`Job`], with the two computed ones, as one JSON object.
const JOB_JSON: &str = "jsonb_build_object(\
        'id', j.id, 'job_type', j.job_type, 'status', j.status, \
        'target_type', j.target_type, 'target_id', j.target_id, 'tenant_id', j.tenant_id, \
        'requested_by', j.requested_by, 'worker', j.worker, \
        'lease_expires_at', j.lease_expires_at, 'scheduled_for', j.scheduled_for, \
        'options', j.options, 'has_result', j.result IS NOT NULL, \
        'blocking_hold_id', j.blocking_hold_id, 'attempts', j.attempts, \
        'due_now', j.scheduled_for <= now(), \
        'lease_expired', j.lease_expires_at IS NULL OR j.lease_expires_at < now())";

impl Job {
    fn from_json(v: &Value) -> LcResult<Job> {
        let text = |k: &str| v[k].as_str().map(str::to_string);
        let bad = |what: &str| LcError::internal(format!("job row with an unknown {what}: {v}"));
        Ok(Job {
            id: text("id").ok_or_else(|| bad("id"))?,
            job_type: text("job_type")
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad("job_type"))?,
            status: text("status")
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| bad("status"))?,
            target_type: text("target_type").unwrap_or_default(),
            target_id: text("target_id").unwrap_or_default(),
            tenant_id: text("tenant_id"),
            requested_by: text("requested_by").unwrap_or_default(),
            worker: text("worker"),
            lease_expires_at: text("lease_expires_at"),
            scheduled_for: text("scheduled_for").unwrap_or_default(),
            options: v["options"].clone(),
            has_result: v["has_result"].as_bool().unwrap_or(false),
            blocking_hold_id: text("blocking_hold_id"),
            attempts: v["attempts"].as_i64().unwrap_or(0),
            due_now: v["due_now"].as_bool().unwrap_or(false),
            lease_expired: v["lease_expired"].as_bool().unwrap_or(true),
        })
    }

    /// The job `job_id`, locked for update. Errors with LC035 when it does
    /// not exist.
    pub fn lock(job_id: &str) -> LcResult<Job> {
        let v = spi::json(
            &format!("SELECT {JOB_JSON} FROM lifecycle.jobs j WHERE j.id = $1::uuid FOR UPDATE"),
            &[job_id.into()],
        )?
        .ok_or_else(|| LcError::job_not_found(job_id))?;
        Job::from_json(&v)
    }

    /// The next runnable job of one of `types` (see [`runnable`]), not one
    /// of `skip`, locked (`SKIP LOCKED`).
    pub fn next_runnable(types: &[&str], skip: &[String]) -> LcResult<Option<Job>> {
        let types: Vec<String> = types.iter().map(|t| t.to_string()).collect();
        spi::json(
            &format!(
                "SELECT {JOB_JSON} FROM lifecycle.jobs j \
                  WHERE {} AND NOT (j.id::text = ANY($2)) \
                  ORDER BY j.scheduled_for, j.requested_at LIMIT 1 FOR UPDATE OF j SKIP LOCKED",
                runnable("j", "$1")
            ),
            &[types.into(), skip.to_vec().into()],
        )?
        .map(|v| Job::from_json(&v))
        .transpose()
    }
}

/// The one definition of a runnable job, on the row aliased `j`, of the
/// types in the `text[]` parameter `types`: due (cooling-off over), and
/// approved, or claimed by a worker whose lease expired before the database
/// part was done; not blocked by a hold still in force.
pub fn runnable(j: &str, types: &str) -> String {
    format!(
        "{j}.job_type = ANY({types}::text[]) AND {j}.scheduled_for <= now() \
         AND ({j}.status = 'approved' \
              OR ({j}.status = 'processing' AND {j}.result IS NULL \
                  AND ({j}.lease_expires_at IS NULL OR {j}.lease_expires_at < now()))) \
         AND NOT ({j}.blocked_by_hold AND EXISTS ( \
              SELECT 1 FROM lifecycle.holds_in_force h WHERE h.id = {j}.blocking_hold_id))"
    )
}

/// Record an audit event about `job`.
fn audit_job(
    event_type: &str,
    job: &Job,
    actor: &str,
    reason: Option<&str>,
    extra: Value,
) -> LcResult<i64> {
    let mut details = json!({ "job_id": job.id, "job_type": job.job_type.as_str() });
    if let (Value::Object(d), Value::Object(e)) = (&mut details, extra) {
        d.extend(e);
    }
    audit::record(Event {
        event_type,
        actor: Some(actor),
        subject_type: Some(&job.target_type),
        subject_id: Some(&job.target_id),
        tenant_id: job.tenant_id.as_deref(),
        reason,
        details: Some(details),
        ..Default::default()
    })
}
