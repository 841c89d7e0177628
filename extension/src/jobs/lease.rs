//! Workers: claims with a lease, its renewal, its release, completion or
//! failure of a claimed job, and the confirmation of steps outside the
//! database.

use lifecycle_core::events;
use lifecycle_core::jobs::{JobStatus, JobType};
use lifecycle_core::Code;
use serde_json::{json, Value};

use super::runner::fail;
use super::{audit_job, require, runnable, Job};
use crate::error::{LcError, LcResult};
use crate::privilege;
use crate::spi;
use crate::subxact;

/// Claim the next runnable job for `worker` with a lease; `None` when there
/// is none. Exports are claimable once approved; erase and purge jobs once
/// due.
pub fn claim_job(
    worker: Option<&str>,
    lease: Option<&str>,
    job_types: Option<Vec<String>>,
) -> LcResult<Option<Value>> {
    const F: &str = "lifecycle.claim_job()";
    let worker = require(worker, "worker", F)?;
    let lease = lease.unwrap_or("5 minutes");
    if !spi::one::<bool>("SELECT $1::interval > interval '0'", &[lease.into()])?.unwrap_or(false) {
        return Err(LcError::invalid_parameter(format!(
            "lease must be positive: {lease}"
        )));
    }
    let types = job_types.unwrap_or_else(|| {
        JobType::ALL
            .iter()
            .map(|t| t.as_str().to_string())
            .collect()
    });
    privilege::as_extension_owner(|| {
        spi::json(
            &format!(
                "WITH next AS ( \
                     SELECT q.id FROM lifecycle.jobs q WHERE {} \
                      ORDER BY q.scheduled_for, q.requested_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
             UPDATE lifecycle.jobs j SET status = 'processing', worker = $1, \
                    lease_expires_at = now() + $3::interval, started_at = coalesce(started_at, now()), \
                    attempts = CASE WHEN j.job_type = 'export' THEN attempts + 1 ELSE attempts END, \
                    updated_at = now() \
               FROM next WHERE j.id = next.id \
                 RETURNING to_jsonb(j)",
                runnable("q", "$2")
            ),
            &[worker.into(), types.into(), lease.into()],
        )
    })
}

/// Extend the lease of a job `worker` holds; returns the new expiry.
pub fn renew_lease(
    job_id: Option<&str>,
    worker: Option<&str>,
    lease: Option<&str>,
) -> LcResult<String> {
    const F: &str = "lifecycle.renew_lease()";
    let job_id = require(job_id, "job_id", F)?;
    let worker = require(worker, "worker", F)?;
    let lease = lease.unwrap_or("5 minutes");
    privilege::as_extension_owner(|| {
        let job = Job::lock(job_id)?;
        require_lease(&job, job_id, worker)?;
        Ok(spi::one::<String>(
            "UPDATE lifecycle.jobs SET lease_expires_at = now() + $2::interval, updated_at = now() \
              WHERE id = $1::uuid RETURNING lease_expires_at::text",
            &[job_id.into(), lease.into()],
        )?
        .unwrap_or_default())
    })
}

/// Hand a job `worker` claimed back to the queue before its work started
/// (a worker stopping): approved again, the lease cleared, the export's
/// claim no longer counted as an attempt. The trigger on `lifecycle.jobs`
/// wakes the other workers. A job whose database part is done (its receipt
/// stored) has started and cannot be handed back.
pub fn release_lease(job_id: Option<&str>, worker: Option<&str>) -> LcResult<()> {
    const F: &str = "lifecycle.release_lease()";
    let job_id = require(job_id, "job_id", F)?;
    let worker = require(worker, "worker", F)?;
    privilege::as_extension_owner(|| {
        let job = Job::lock(job_id)?;
        require_lease(&job, job_id, worker)?;
        if job.has_result {
            return Err(LcError::invalid_job_transition(
                job_id,
                JobStatus::Processing.as_str(),
                JobStatus::Approved.as_str(),
            )
            .detail("The job's work in the database is done; it waits for its steps outside the database.")
            .hint("Confirm the steps with lifecycle.confirm_step()."));
        }
        // A claim counts as an attempt of an export (not of an erasure,
        // whose runner counts its runs); a job never run has no start.
        let attempts = match job.job_type {
            JobType::Export => (job.attempts - 1).max(0),
            _ => job.attempts,
        };
        spi::exec(
            "UPDATE lifecycle.jobs SET status = 'approved', worker = NULL, lease_expires_at = NULL, \
                    attempts = $2, started_at = CASE WHEN $2 = 0 THEN NULL ELSE started_at END, \
                    updated_at = now() \
              WHERE id = $1::uuid",
            &[job_id.into(), (attempts as i32).into()],
        )?;
        audit_job(
            events::JOB_LEASE_RELEASED,
            &job,
            worker,
            None,
            json!({ "worker": worker }),
        )?;
        Ok(())
    })
}

fn require_lease(job: &Job, job_id: &str, worker: &str) -> LcResult<()> {
    let status = job.status.as_str();
    if Some(job.status) != Some(JobStatus::Processing) {
        return Err(
            LcError::job_not_in_state(job_id, "use the lease of", status)
                .detail("Only a job a worker has claimed has a lease.")
                .hint("Claim it with lifecycle.claim_job()."),
        );
    }
    let holder = job.worker.as_deref().unwrap_or_default();
    if holder != worker {
        return Err(LcError::job_lease_held(
            job_id,
            holder,
            job.lease_expires_at.as_deref().unwrap_or_default(),
        ));
    }
    Ok(())
}

/// Finish an export job the worker built (`result` describes the bundle).
pub fn complete_job(
    job_id: Option<&str>,
    worker: Option<&str>,
    result: Option<Value>,
) -> LcResult<()> {
    const F: &str = "lifecycle.complete_job()";
    let job_id = require(job_id, "job_id", F)?;
    let worker = require(worker, "worker", F)?;
    let result = result.unwrap_or_else(|| json!({}));
    privilege::as_extension_owner(|| {
        let job = Job::lock(job_id)?;
        require_lease(&job, job_id, worker)?;
        if Some(job.job_type) != Some(JobType::Export) {
            return Err(LcError::invalid_job_transition(
                job_id,
                JobStatus::Processing.as_str(),
                JobStatus::Completed.as_str(),
            )
            .detail("Erase and purge jobs are completed by the engine.")
            .hint("Run them with lifecycle.run_job() or lifecycle.run_due_jobs()."));
        }
        crate::export::check_bundle(&result)?;
        spi::exec(
            "UPDATE lifecycle.jobs SET status = 'completed', result = $2::jsonb, \
                    result_digest = encode(sha256(convert_to($2::jsonb::text, 'UTF8')), 'hex'), \
                    finished_at = now(), lease_expires_at = NULL, updated_at = now() \
              WHERE id = $1::uuid",
            &[job_id.into(), pgrx::JsonB(result.clone()).into()],
        )?;
        crate::export::store_bundle(job_id, &result)?;
        audit_job(events::DATA_EXPORT_COMPLETED, &job, worker, None, json!({}))?;
        Ok(())
    })
}

/// Mark a claimed job failed with the worker's error.
pub fn fail_job(job_id: Option<&str>, worker: Option<&str>, error: Option<&str>) -> LcResult<()> {
    const F: &str = "lifecycle.fail_job()";
    let job_id = require(job_id, "job_id", F)?;
    let worker = require(worker, "worker", F)?;
    let error = require(error, "error", F)?;
    privilege::as_extension_owner(|| {
        let job = Job::lock(job_id)?;
        require_lease(&job, job_id, worker)?;
        fail(
            &job,
            &subxact::Failure {
                sqlstate: Code::InternalError.sqlstate().into(),
                message: error.to_string(),
                detail: Some(format!("reported by worker \"{worker}\"")),
                hint: None,
                statement: None,
            },
        )
    })
}

/// Confirm one step outside the database; the job completes with its last.
pub fn confirm_step(step_id: Option<i64>, confirmed_by: Option<&str>) -> LcResult<String> {
    const F: &str = "lifecycle.confirm_step()";
    let step_id = step_id.ok_or_else(|| LcError::null_value("step_id", F))?;
    let by = require(confirmed_by, "confirmed_by", F)?;
    privilege::as_extension_owner(|| {
        let job_id = spi::one::<String>(
            "UPDATE lifecycle.external_steps SET status = 'confirmed', confirmed_at = now(), \
                    confirmed_by = $2 WHERE id = $1 RETURNING job_id::text",
            &[step_id.into(), by.into()],
        )?
        .ok_or_else(|| {
            LcError::invalid_parameter(format!("external step {step_id} does not exist")).hint(
                "List them with SELECT * FROM lifecycle.external_steps WHERE status = 'pending'.",
            )
        })?;
        let job = Job::lock(&job_id)?;
        let pending = spi::one::<i64>(
            "SELECT count(*) FROM lifecycle.external_steps WHERE job_id = $1::uuid AND status = 'pending'",
            &[job_id.as_str().into()],
        )?
        .unwrap_or(0);
        if pending == 0 && Some(job.status) == Some(JobStatus::Processing) && job.has_result {
            spi::exec(
                "UPDATE lifecycle.jobs SET status = 'completed', finished_at = now(), updated_at = now() \
                  WHERE id = $1::uuid",
                &[job_id.as_str().into()],
            )?;
            audit_job(
                events::JOB_EXTERNAL_STEPS_CONFIRMED,
                &job,
                by,
                None,
                json!({}),
            )?;
            return Ok(JobStatus::Completed.as_str().into());
        }
        Ok(job.status.as_str().to_string())
    })
}
