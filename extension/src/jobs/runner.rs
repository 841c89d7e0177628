//! The runner: due erase and purge jobs, each in a subtransaction of its
//! own; a job under legal hold waits, a transient error is tried again.

use lifecycle_core::events;
use lifecycle_core::jobs::{JobStatus, JobType};
use lifecycle_core::Code;
use serde_json::{json, Value};

use super::request::{erasure_events, is_self_service};
use super::{audit_job, require, Job};
use crate::erasure::{self, Work};
use crate::error::{LcError, LcResult};
use crate::guard;
use crate::privilege;
use crate::spi;
use crate::subxact;

/// The first hold in force on the target itself: (id, reason).
fn hold_on_target(job: &Job) -> LcResult<Option<(String, String)>> {
    let (id, reason) = spi::two::<String, String>(
        "SELECT id::text, reason FROM lifecycle.holds_in_force \
          WHERE (scope_type = $1 AND scope_id = $2) OR id = $3::uuid \
          ORDER BY created_at LIMIT 1",
        &[
            job.target_type.as_str().into(),
            job.target_id.as_str().into(),
            job.blocking_hold_id.as_deref().into(),
        ],
    )?;
    Ok(id.zip(reason))
}

/// What happened to a job the runner took.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// Done in the database; waiting for steps outside it.
    WaitingForSteps,
    Failed,
    Blocked,
    /// A transient error: back to wait for the next run.
    Retry,
}

fn mark_blocked(job: &Job, hold_id: &str, reason: &str) -> LcResult<()> {
    let was = job.blocking_hold_id.as_deref() == Some(hold_id);
    spi::exec(
        "UPDATE lifecycle.jobs SET status = 'approved', blocked_by_hold = true, blocking_hold_id = $2::uuid, \
                worker = NULL, lease_expires_at = NULL, updated_at = now() WHERE id = $1::uuid",
        &[job.id.as_str().into(), hold_id.into()],
    )?;
    if !was {
        audit_job(
            events::JOB_BLOCKED_BY_HOLD,
            job,
            "lifecycle",
            Some(reason),
            json!({ "hold_id": hold_id }),
        )?;
    }
    Ok(())
}

/// Run one locked, runnable erase or purge job.
fn execute(job: &Job, worker: &str) -> LcResult<Outcome> {
    let id = job.id.as_str().to_string();
    if let Some((hold, reason)) = hold_on_target(job)? {
        mark_blocked(job, &hold, &reason)?;
        return Ok(Outcome::Blocked);
    }
    let options = job.options.clone();
    let work = Work {
        job_id: &id,
        job_type: job.job_type.as_str(),
        target_type: job.target_type.as_str(),
        target_id: job.target_id.as_str(),
        requested_by: job.requested_by.as_str(),
        options: &options,
    };
    spi::exec(
        "UPDATE lifecycle.jobs SET status = 'processing', worker = $2, started_at = now(), \
                attempts = attempts + 1, blocked_by_hold = false, blocking_hold_id = NULL, \
                updated_at = now() WHERE id = $1::uuid",
        &[id.as_str().into(), worker.into()],
    )?;
    crate::error::take_blocking_hold();
    let attempt = subxact::run(|| {
        let receipt = guard::with_hard_delete(|| erasure::execute(&work))?;
        finish(job, &receipt)
    });
    // The hold a refusal named, recorded where it was raised.
    let blocking = crate::error::take_blocking_hold();
    match attempt {
        Ok(o) => Ok(o),
        Err(f)
            if matches!(
                Code::from_sqlstate(&f.sqlstate),
                Some(Code::HeldRowModification | Code::HeldTableTruncate | Code::HeldTableDrop)
            ) =>
        {
            let Some(hold) = blocking else {
                fail(job, &f)?;
                return Ok(Outcome::Failed);
            };
            mark_blocked(job, &hold, &f.message)?;
            Ok(Outcome::Blocked)
        }
        Err(f) if is_transient(&f.sqlstate) && job.attempts + 1 < MAX_ATTEMPTS => {
            // A deadlock, a serialization failure or a lock timeout: the
            // job goes back to wait for the next run, the error recorded.
            spi::exec(
                "UPDATE lifecycle.jobs SET status = 'approved', worker = NULL, lease_expires_at = NULL, \
                        error = $2, error_sqlstate = $3, updated_at = now() WHERE id = $1::uuid",
                &[
                    job.id.as_str().into(),
                    f.message.as_str().into(),
                    f.sqlstate.as_str().into(),
                ],
            )?;
            Ok(Outcome::Retry)
        }
        Err(f) => {
            fail(job, &f)?;
            Ok(Outcome::Failed)
        }
    }
}

/// A job that hits a transient error is tried again, up to this many times.
pub const MAX_ATTEMPTS: i64 = 5;

/// Errors worth trying again: serialization failures, deadlocks, lock
/// timeouts, query cancellation by a timeout.
pub fn is_transient(sqlstate: &str) -> bool {
    matches!(sqlstate, "40001" | "40P01" | "55P03" | "57014")
}

pub(super) fn fail(job: &Job, f: &subxact::Failure) -> LcResult<()> {
    let mut text = match &f.detail {
        Some(d) => format!("{} ({d})", f.message),
        None => f.message.clone(),
    };
    if let Some(sql) = &f.statement {
        let short: String = sql.chars().take(400).collect();
        text.push_str(&format!(" [statement: {short}]"));
    }
    spi::exec(
        "UPDATE lifecycle.jobs SET status = 'failed', error = $2, error_sqlstate = $3, \
                finished_at = now(), worker = NULL, lease_expires_at = NULL, updated_at = now() \
          WHERE id = $1::uuid",
        &[
            job.id.as_str().into(),
            text.as_str().into(),
            f.sqlstate.as_str().into(),
        ],
    )?;
    audit_job(
        events::JOB_FAILED,
        job,
        "lifecycle",
        None,
        json!({ "sqlstate": f.sqlstate, "error": f.message }),
    )?;
    Ok(())
}

/// Store the receipt and its digest, record the completion events.
fn finish(job: &Job, receipt: &Value) -> LcResult<Outcome> {
    let id = job.id.as_str();
    let steps = receipt["external_steps"].as_u64().unwrap_or(0);
    let status = if steps > 0 {
        JobStatus::Processing
    } else {
        JobStatus::Completed
    };
    let digest = spi::one::<String>(
        "UPDATE lifecycle.jobs SET status = $2, result = $3::jsonb, \
                result_digest = encode(sha256(convert_to($3::jsonb::text, 'UTF8')), 'hex'), \
                finished_at = CASE WHEN $2 = 'completed' THEN now() END, \
                lease_expires_at = NULL, error = NULL, error_sqlstate = NULL, updated_at = now() \
          WHERE id = $1::uuid RETURNING result_digest",
        &[
            id.into(),
            status.as_str().into(),
            pgrx::JsonB(receipt.clone()).into(),
        ],
    )?
    .unwrap_or_default();
    let target_type = job.target_type.as_str();
    let target_id = job.target_id.as_str();
    let requested_by = job.requested_by.as_str();
    let details = json!({
        "receipt_digest": digest,
        "external_steps_pending": steps,
        "retained": receipt["retained"],
    });
    match Some(job.job_type) {
        Some(JobType::Erase) => {
            let [_, _, deleted] = erasure_events(target_type == "tenant");
            audit_job(deleted, job, requested_by, None, details.clone())?;
            if target_type != "tenant" && !is_self_service(target_type, target_id, requested_by) {
                audit_job(events::ADMIN_USER_DELETED, job, requested_by, None, details)?;
            }
        }
        _ => {
            audit_job(events::DATA_PURGED, job, requested_by, None, details)?;
        }
    }
    Ok(if steps > 0 {
        Outcome::WaitingForSteps
    } else {
        Outcome::Completed
    })
}

/// Run due erase and purge jobs, each in a subtransaction of its own.
/// Returns how many ran (completed, waiting for outside steps, or failed);
/// jobs blocked by a hold are left waiting and not counted.
pub fn run_due_jobs(max_jobs: Option<i32>) -> LcResult<i32> {
    let max = max_jobs.unwrap_or(100);
    if max < 1 {
        return Err(LcError::invalid_parameter(format!(
            "max_jobs must be at least 1, not {max}"
        )));
    }
    let worker = format!("run_due_jobs (pid {})", std::process::id());
    privilege::as_extension_owner(|| {
        let mut ran = 0;
        let mut seen: Vec<String> = Vec::new();
        while ran < max {
            let Some(job) =
                Job::next_runnable(&[JobType::Erase.as_str(), JobType::Purge.as_str()], &seen)?
            else {
                break;
            };
            seen.push(job.id.clone());
            match execute(&job, &worker)? {
                Outcome::Blocked | Outcome::Retry => {}
                _ => ran += 1,
            }
        }
        Ok(ran)
    })
}

/// Run one job now, in the caller's transaction. A completed job is not run
/// again: its receipt is returned unchanged.
pub fn run_job(job_id: Option<&str>, worker: Option<&str>) -> LcResult<Value> {
    const F: &str = "lifecycle.run_job()";
    let job_id = require(job_id, "job_id", F)?;
    privilege::as_extension_owner(|| {
        let job = Job::lock(job_id)?;
        let status = job.status.as_str();
        let worker_name = worker.map(str::to_string).unwrap_or_else(|| {
            format!(
                "{} (pid {})",
                privilege::current_user_name(),
                std::process::id()
            )
        });
        if Some(job.job_type) == Some(JobType::Export) {
            return Err(LcError::job_not_in_state(job_id, "run", "an export job")
                .detail("Export jobs are built by the control plane's worker.")
                .hint("Claim it with lifecycle.claim_job() and finish it with lifecycle.complete_job()."));
        }
        match Some(job.status) {
            Some(JobStatus::Completed) => return summary(job_id),
            Some(JobStatus::Approved) => {}
            Some(JobStatus::Processing) if job.has_result => return summary(job_id),
            Some(JobStatus::Processing) => {
                let holder = job.worker.as_deref().unwrap_or_default();
                let expired = job.lease_expired;
                if !expired && Some(holder) != worker {
                    return Err(LcError::job_lease_held(
                        job_id,
                        holder,
                        job.lease_expires_at.as_deref().unwrap_or_default(),
                    ));
                }
            }
            other => {
                return Err(LcError::job_not_in_state(job_id, "run", status).hint(
                    if other == Some(JobStatus::Pending) {
                        "Approve the job first with lifecycle.approve()."
                    } else {
                        "The job is finished."
                    },
                ))
            }
        }
        if !job.due_now {
            return Err(
                LcError::job_not_in_state(job_id, "run", "in its cooling-off")
                    .detail(format!(
                        "The cooling-off lasts until {}.",
                        job.scheduled_for.as_str()
                    ))
                    .hint("Wait until scheduled_for; lifecycle.run_due_jobs() runs it then."),
            );
        }
        execute(&job, &worker_name)?;
        summary(job_id)
    })
}

fn summary(job_id: &str) -> LcResult<Value> {
    spi::json(
        "SELECT jsonb_build_object('job_id', id, 'status', status, 'blocked_by_hold', blocked_by_hold, \
                'blocking_hold_id', blocking_hold_id, 'error', error, 'error_sqlstate', error_sqlstate, \
                'result_digest', result_digest, 'result', result) \
           FROM lifecycle.jobs WHERE id = $1::uuid",
        &[job_id.into()],
    )?
    .ok_or_else(|| LcError::job_not_found(job_id))
}
