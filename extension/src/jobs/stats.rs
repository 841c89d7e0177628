//! Job statistics without a scan of the jobs: the counts by status and type
//! that the trigger on `lifecycle.jobs` keeps (`lifecycle.job_totals`,
//! `lifecycle.job_tenant_counts`, see `sql/extension/jobs.sql`), their
//! repair, and the oldest due job of each type (read from the first entry
//! of an index).

use lifecycle_core::jobs::{JobStatus, JobType};
use pgrx::datum::{TimestampWithTimeZone, Uuid};
use pgrx::prelude::*;

use crate::error::{LcError, LcResult};
use crate::privilege;
use crate::spi;

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> Vec<String> {
    all.iter().map(|v| name(*v).to_string()).collect()
}

/// (status, job type, number of jobs) for every status and type, zeros
/// included, in the core crate's order: of the given tenants, or of all
/// jobs (with those that name no tenant) when `tenants` is `None`.
pub fn job_stats(tenants: Option<Vec<String>>) -> LcResult<Vec<(String, String, i64)>> {
    let statuses = names(JobStatus::ALL, JobStatus::as_str);
    let types = names(JobType::ALL, JobType::as_str);
    let counts = match &tenants {
        None => {
            "SELECT status, job_type, sum(jobs) AS jobs FROM lifecycle.job_totals \
                  GROUP BY status, job_type"
        }
        Some(_) => {
            "SELECT status, job_type, sum(jobs) AS jobs FROM lifecycle.job_tenant_counts \
                     WHERE tenant_id = ANY ($3::text[]) GROUP BY status, job_type"
        }
    };
    let sql = format!(
        "SELECT s.status, t.job_type, coalesce(c.jobs, 0)::bigint \
           FROM unnest($1::text[]) WITH ORDINALITY AS s (status, i) \
          CROSS JOIN unnest($2::text[]) WITH ORDINALITY AS t (job_type, k) \
           LEFT JOIN ({counts}) c ON c.status = s.status AND c.job_type = t.job_type \
          ORDER BY s.i, t.k"
    );
    privilege::as_extension_owner(|| {
        Spi::connect(|client| {
            let mut args = vec![statuses.into(), types.into()];
            if let Some(t) = tenants {
                args.push(t.into());
            }
            let mut out = Vec::new();
            for r in client.select(&sql, None, &args)? {
                out.push((
                    r.get(1)?.unwrap_or_default(),
                    r.get(2)?.unwrap_or_default(),
                    r.get(3)?.unwrap_or_default(),
                ));
            }
            Ok(out)
        })
    })
}

/// One type's oldest due job: (type, job id, scheduled_for, seconds since
/// scheduled_for), the last three NULL when none is due.
pub type OldestDue = (
    String,
    Option<Uuid>,
    Option<TimestampWithTimeZone>,
    Option<f64>,
);

/// The oldest due job of each type: waiting to run (approved, or pending
/// when it needs no approval), past its cooling-off, not blocked by a hold
/// in force; the first entry of the index `jobs_due` (blocked jobs
/// skipped).
pub fn oldest_due_jobs() -> LcResult<Vec<OldestDue>> {
    let types = names(JobType::ALL, JobType::as_str);
    privilege::as_extension_owner(|| {
        Spi::connect(|client| {
            let mut out = Vec::new();
            for r in client.select(
                "SELECT t.job_type, d.id, d.scheduled_for, \
                        extract(epoch FROM now() - d.scheduled_for)::float8 \
                   FROM unnest($1::text[]) WITH ORDINALITY AS t (job_type, k) \
                   LEFT JOIN LATERAL ( \
                        SELECT j.id, j.scheduled_for FROM lifecycle.jobs j \
                         WHERE j.job_type = t.job_type \
                           AND (j.status = 'approved' OR (j.status = 'pending' AND NOT j.requires_approval)) \
                           AND j.scheduled_for <= now() \
                           AND NOT (j.blocked_by_hold AND EXISTS ( \
                                SELECT 1 FROM lifecycle.holds_in_force h WHERE h.id = j.blocking_hold_id)) \
                         ORDER BY j.scheduled_for LIMIT 1) d ON true \
                  ORDER BY t.k",
                None,
                &[types.into()],
            )? {
                out.push((
                    r.get(1)?.unwrap_or_default(),
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                ));
            }
            Ok(out)
        })
    })
}

/// Count the jobs again into the counts the trigger keeps (after a repair
/// of the jobs by hand, or a restore made with triggers disabled). Waits
/// for the transactions writing jobs, and holds new ones off until the
/// caller's transaction ends. Returns the number of jobs counted.
pub fn recount_jobs() -> LcResult<i64> {
    privilege::as_extension_owner(|| {
        spi::exec("LOCK TABLE lifecycle.jobs IN SHARE MODE", &[])?;
        spi::exec("DELETE FROM lifecycle.job_totals", &[])?;
        spi::exec("DELETE FROM lifecycle.job_tenant_counts", &[])?;
        spi::exec(
            "INSERT INTO lifecycle.job_totals (status, job_type, jobs) \
             SELECT status, job_type, count(*) FROM lifecycle.jobs GROUP BY 1, 2",
            &[],
        )?;
        spi::exec(
            "INSERT INTO lifecycle.job_tenant_counts (tenant_id, status, job_type, jobs) \
             SELECT tenant_id, status, job_type, count(*) FROM lifecycle.jobs \
              WHERE tenant_id IS NOT NULL GROUP BY 1, 2, 3",
            &[],
        )?;
        spi::one::<i64>(
            "SELECT coalesce(sum(jobs), 0)::bigint FROM lifecycle.job_totals",
            &[],
        )?
        .ok_or_else(|| LcError::internal("recount_jobs: no total"))
    })
}
