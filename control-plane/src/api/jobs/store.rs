//! The jobs in the databases: finding one by id in whichever database
//! holds it, its page, the list and the counts across databases, and
//! changes made through the extension's functions in one transaction.

use tokio_postgres::types::ToSql;
use tokio_postgres::{GenericClient, Row};
use uuid::Uuid;

use super::model::{
    column, BlockingHold, ExternalSteps, Job, JobContext, JobDetail, JobStats, EXTERNAL_STEPS,
    HOLD, JOB_COLUMNS, MAX_EXTERNAL_STEPS,
};
use super::names::{StatusName, TypeName};
use crate::api::fanout::{self, Position, Positioned};
use crate::api::pagination::MAX_LIMIT;
use crate::api::{Page, PageQuery, RequestContext};
use crate::auth::Admin;
use crate::db::Databases;
use crate::error::{ApiError, ApiResult};

/// Machine code of the 404 for a job that is not there (or is another
/// tenant's), as the extension names it.
pub const CODE_JOB_NOT_FOUND: &str = "job_not_found";

fn job_by_id() -> String {
    format!("SELECT {JOB_COLUMNS} FROM lifecycle.jobs j WHERE j.id = $1")
}

/// The job `id` as `client` sees it, with its row (for the `options` and
/// `result` only a job's page shows).
async fn read(
    client: &impl GenericClient,
    database: &str,
    id: Uuid,
) -> ApiResult<Option<(Job, Row)>> {
    let Some(row) = client.query_opt(&job_by_id(), &[&id]).await? else {
        return Ok(None);
    };
    Ok(Some((Job::from_row(database, &row)?, row)))
}

/// The job `id`, from whichever database holds it (ids are uuids, so at
/// most one does), if `admin` sees its tenant. 404 `job_not_found` when no
/// database has it or it is another tenant's; 503 when it was not found
/// and a database did not answer (it may be there).
pub async fn locate(dbs: &Databases, admin: &Admin, id: Uuid) -> ApiResult<Job> {
    locate_row(dbs, admin, id).await.map(|(job, _)| job)
}

/// [`locate`], with the job's row.
async fn locate_row(dbs: &Databases, admin: &Admin, id: Uuid) -> ApiResult<(Job, Row)> {
    let not_found = || ApiError::not_found("job not found").with_code(CODE_JOB_NOT_FOUND);
    let (database, (mut job, row)) =
        fanout::locate(dbs, |client| async move { read(&**client, "", id).await })
            .await?
            .ok_or_else(not_found)?;
    if !admin.sees_tenant(job.tenant_id.as_deref()) {
        return Err(not_found());
    }
    job.database = database.to_string();
    Ok((job, row))
}

/// The page of the job `id`: the job, its receipt and options, the
/// target's state, its external steps and the hold that blocks it.
pub async fn detail(dbs: &Databases, admin: &Admin, id: Uuid) -> ApiResult<JobDetail> {
    let (job, row) = locate_row(dbs, admin, id).await?;
    let client = dbs.client(&job.database).await?;
    // The statements are independent: sent together, answered in order.
    let limit = MAX_EXTERNAL_STEPS;
    let steps_params: [&(dyn ToSql + Sync); 2] = [&id, &limit];
    let target: [&(dyn ToSql + Sync); 2] = [&job.target_type, &job.target_id];
    let (steps, hold, state) = tokio::join!(
        client.query(EXTERNAL_STEPS, &steps_params),
        async {
            match job.blocking_hold_id {
                Some(hold) => client.query_opt(HOLD, &[&hold]).await,
                None => Ok(None),
            }
        },
        client.query_one(
            "SELECT lifecycle.subject_state($1, $2) AS subject_state",
            &target
        ),
    );
    let blocking_hold = hold?
        .map(|row| {
            let visible = admin.sees_tenant(column::<Option<&str>>(&row, "tenant_id")?);
            BlockingHold::from_row(&row, visible)
        })
        .transpose()?;
    // A target type the data map no longer knows has no state; the job's
    // page still shows everything else.
    let subject_state = match state {
        Ok(row) => Some(column(&row, "subject_state")?),
        Err(err) => {
            tracing::debug!(error = %ApiError::from(err), "no subject state for the job's target");
            None
        }
    };
    Ok(JobDetail {
        options: column(&row, "options")?,
        result: column(&row, "result")?,
        context: JobContext {
            subject_state,
            tenant_name: job.tenant_name.clone(),
        },
        external_steps: ExternalSteps::from_rows(&steps?)?,
        blocking_hold,
        job,
    })
}

impl Positioned for Job {
    type Id = Uuid;

    fn position(&self) -> Position<Uuid> {
        Position {
            at: self.requested_at,
            database: self.database.clone(),
            id: self.id,
        }
    }
}

/// What `lifecycle.list_jobs` is asked for, in every database.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub status: Option<StatusName>,
    pub job_type: Option<TypeName>,
    pub q: Option<String>,
    /// Only these tenants' jobs; `None`: every tenant's.
    pub tenants: Option<Vec<String>>,
}

/// The list's statement: the extension's function with the filters.
const LIST_JOBS: &str = "SELECT * FROM lifecycle.list_jobs(status => $1, job_type => $2, \
     q => $3, tenants => $4, lim => $5, after_requested_at => $6, after_id => $7)";

/// One page of jobs across every database, newest first (the order and
/// the cursor of [`fanout::list`]).
pub async fn list(dbs: &Databases, filter: &ListFilter, page: &PageQuery) -> ApiResult<Page<Job>> {
    if filter.tenants.as_ref().is_some_and(Vec::is_empty) {
        // Nothing to read, but the page's parameters are checked alike.
        page.cursor::<Position<Uuid>>()?;
        return Ok(Page::from_overfetch(
            Vec::new(),
            page.limit()?,
            Job::position,
        ));
    }
    let status = filter.status.map(|s| s.name());
    let job_type = filter.job_type.map(|t| t.name());
    fanout::list(dbs, page, |name, client, bound, wanted| async move {
        let (after_at, after_id) = fanout::bound_params(bound);
        let mut jobs = Vec::new();
        let mut after = (after_at, after_id);
        // The function returns at most MAX_LIMIT rows at a time; the page
        // may want one more (to know that a next page exists).
        while (jobs.len() as i64) < wanted {
            let lim = (wanted - jobs.len() as i64).min(i64::from(MAX_LIMIT)) as i32;
            // Prepared once per connection: a text query costs a Parse
            // round trip of its own on every call.
            let list = client.prepare_cached(LIST_JOBS).await?;
            let rows = client
                .query(
                    &list,
                    &[
                        &status,
                        &job_type,
                        &filter.q,
                        &filter.tenants,
                        &lim,
                        &after.0,
                        &after.1,
                    ],
                )
                .await?;
            let done = (rows.len() as i32) < lim;
            for row in &rows {
                jobs.push(Job::from_row(&name, row)?);
            }
            match jobs.last() {
                Some(last) if !done => after = (Some(last.requested_at), Some(last.id)),
                _ => break,
            }
        }
        Ok(jobs)
    })
    .await
}

/// The counts of jobs of `tenants` (`None`: every tenant's) in every
/// database that answers, from the extension's counters (no scan).
pub async fn stats(dbs: &Databases, tenants: Option<Vec<String>>) -> ApiResult<JobStats> {
    let mut stats = JobStats {
        total: 0,
        by_status: Default::default(),
        by_type: Default::default(),
        unavailable: Vec::new(),
    };
    if tenants.as_ref().is_some_and(Vec::is_empty) {
        return Ok(stats);
    }
    let tenants = &tenants;
    let answers = dbs
        .fan_out(|_, client| async move {
            let counts = client
                .prepare_cached(
                    "SELECT status, job_type, jobs FROM lifecycle.job_stats(tenants => $1)",
                )
                .await?;
            let rows = client.query(&counts, &[tenants]).await?;
            rows.iter()
                .map(|row| {
                    Ok((
                        column::<StatusName>(row, "status")?,
                        column::<TypeName>(row, "job_type")?,
                        column::<i64>(row, "jobs")?,
                    ))
                })
                .collect::<ApiResult<Vec<_>>>()
        })
        .await;
    let (answered, unavailable) = fanout::answered(answers)?;
    for (status, job_type, n) in answered.into_iter().flat_map(|(_, rows)| rows) {
        stats.total += n;
        stats.by_status.0.add(status.0, n);
        stats.by_type.0.add(job_type.0, n);
    }
    stats.unavailable = unavailable;
    Ok(stats)
}

/// Run `sql` (one of the extension's functions, answering the job's id in
/// its first column) in `database` in one transaction that carries the
/// request's context, and answer the job as it then is.
pub async fn change(
    dbs: &Databases,
    database: &str,
    ctx: &RequestContext,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> ApiResult<Job> {
    let mut client = dbs.client(database).await?;
    let tx = client.transaction().await?;
    ctx.apply(&*tx).await?;
    let id: Uuid = tx
        .query_one(sql, params)
        .await?
        .try_get(0)
        .map_err(ApiError::internal)?;
    let (job, _) = read(&*tx, database, id)
        .await?
        .ok_or_else(|| ApiError::internal(format!("job {id} vanished in its own transaction")))?;
    tx.commit().await?;
    Ok(job)
}
