//! The job list of the admin console and the control plane's
//! `GET /api/v1/jobs`: filters, a search, and keyset pagination.
//!
//! Rows come newest first by `(requested_at, id)`, strictly after the
//! cursor, so a page never repeats or skips a row because jobs were
//! inserted meanwhile. The statement is built from the filters that are
//! given (their values are parameters, never text), so that each
//! combination is planned on its own and reads one of the indexes
//! `sql/extension/jobs.sql` creates for it, up to the page's end.

use std::collections::{BTreeSet, HashMap};

use lifecycle_core::jobs::{JobStatus, JobType};
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone, Uuid};
use pgrx::prelude::*;

use crate::datamap;
use crate::error::{LcError, LcResult};
use crate::privilege;

/// The default page size, and the largest one.
pub const DEFAULT_LIMIT: i32 = 50;
pub const MAX_LIMIT: i32 = 500;

/// What `lifecycle.list_jobs()` was asked for.
#[derive(Default)]
pub struct Query<'a> {
    pub status: Option<&'a str>,
    pub job_type: Option<&'a str>,
    /// A job id, a target id or (part of) a tenant's name.
    pub q: Option<&'a str>,
    /// Only these tenants' jobs; `None`: every tenant's.
    pub tenants: Option<Vec<String>>,
    pub limit: Option<i32>,
    pub after_requested_at: Option<TimestampWithTimeZone>,
    pub after_id: Option<Uuid>,
}

/// One row of the list: the columns of `lifecycle.jobs` the console shows
/// (all but `options` and `result`, which the job's own page reads), with
/// the tenant's display name after its id.
pub type Row = (
    Uuid,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
    Option<String>,
    String,
    bool,
    Option<String>,
    Option<TimestampWithTimeZone>,
    Option<String>,
    Option<TimestampWithTimeZone>,
    Option<String>,
    Option<String>,
    Option<TimestampWithTimeZone>,
    TimestampWithTimeZone,
    TimestampWithTimeZone,
    TimestampWithTimeZone,
    bool,
    Option<Uuid>,
    i32,
    Option<String>,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
    Option<TimestampWithTimeZone>,
    Option<String>,
    Option<String>,
    Option<String>,
    TimestampWithTimeZone,
);

/// The columns read, in the order of [`Row`] without the tenant's name.
const COLUMNS: &str = "j.id, j.job_type, j.target_type, j.target_id, j.tenant_id, j.status, \
     j.requested_by, j.reason, j.jurisdiction, j.requires_approval, j.approved_by, j.approved_at, \
     j.rejected_by, j.rejected_at, j.rejection_reason, j.cancelled_by, j.cancelled_at, \
     j.requested_at, j.scheduled_for, j.due_at, j.blocked_by_hold, j.blocking_hold_id, \
     j.attempts, j.worker, j.lease_expires_at, j.started_at, j.finished_at, j.error, \
     j.error_sqlstate, j.result_digest, j.updated_at";

/// A value of a named enum of the core crate, or 22023 naming the values
/// there are.
fn parse_named<T: std::str::FromStr<Err = lifecycle_core::UnknownName>>(
    value: Option<&str>,
    all: &[T],
    name: fn(&T) -> &'static str,
) -> LcResult<Option<T>> {
    value
        .map(|v| {
            v.parse::<T>().map_err(|e| {
                let known: Vec<&str> = all.iter().map(name).collect();
                LcError::invalid_parameter(e.to_string())
                    .hint(format!("Use one of: {}.", known.join(", ")))
            })
        })
        .transpose()
}

/// The statement's conditions and their parameters, numbered as added.
struct Conditions<'a> {
    sql: Vec<String>,
    args: Vec<DatumWithOid<'a>>,
}

impl<'a> Conditions<'a> {
    /// Add a parameter; returns its placeholder (`$n`).
    fn param(&mut self, value: impl Into<DatumWithOid<'a>>) -> String {
        self.args.push(value.into());
        format!("${}", self.args.len())
    }

    fn add(&mut self, condition: String) {
        self.sql.push(condition);
    }
}

/// What a search matches: the job id (when `q` is a uuid), the target id
/// (as written, and in its canonical form when it is a uuid), and the
/// tenants whose id is `q` or whose name contains it.
struct Search {
    job_id: Option<Uuid>,
    target_ids: Vec<String>,
    tenant_ids: Vec<String>,
}

impl Search {
    fn new(q: &str, scope: Option<&[String]>) -> LcResult<Search> {
        let job_id = crate::holds::uuid_bytes(q).map(Uuid::from_bytes);
        let mut target_ids = vec![q.to_string()];
        if let Some(u) = job_id {
            let canonical = u.to_string();
            if canonical != q {
                target_ids.push(canonical);
            }
        }
        // A tenant admin's search finds their own tenant's jobs only.
        let tenant_ids = datamap::find_tenants(q, i32::MAX)?
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| scope.is_none_or(|s| s.contains(id)))
            .collect();
        Ok(Search {
            job_id,
            target_ids,
            tenant_ids,
        })
    }

    /// The condition on the row aliased `j`.
    fn condition<'a>(self, c: &mut Conditions<'a>) -> String {
        let mut any = Vec::new();
        if let Some(id) = self.job_id {
            any.push(format!("j.id = {}::uuid", c.param(id)));
        }
        any.push(format!(
            "j.target_id = ANY ({}::text[])",
            c.param(self.target_ids)
        ));
        if !self.tenant_ids.is_empty() {
            any.push(format!(
                "j.tenant_id = ANY ({}::text[])",
                c.param(self.tenant_ids)
            ));
        }
        format!("({})", any.join(" OR "))
    }
}

/// The page of jobs `query` asks for.
pub fn list(query: Query<'_>) -> LcResult<Vec<Row>> {
    const F: &str = "lifecycle.list_jobs()";
    let status = parse_named(query.status, JobStatus::ALL, |s| s.as_str())?;
    let job_type = parse_named(query.job_type, JobType::ALL, |t| t.as_str())?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(LcError::invalid_parameter(format!(
            "lim must be between 1 and {MAX_LIMIT}, not {limit}"
        ))
        .hint("Ask for the next page with after_requested_at and after_id."));
    }
    let after = match (query.after_requested_at, query.after_id) {
        (Some(at), Some(id)) => Some((at, id)),
        (None, None) => None,
        _ => {
            return Err(LcError::invalid_parameter(format!(
                "{F} takes a cursor as after_requested_at and after_id together"
            ))
            .hint("Pass the requested_at and id of the last row of the previous page."))
        }
    };
    let q = query.q.map(str::trim).filter(|q| !q.is_empty());
    let tenants: Option<Vec<String>> = query.tenants;
    if tenants.as_ref().is_some_and(|t| t.is_empty()) {
        return Ok(Vec::new());
    }
    privilege::as_extension_owner(|| {
        let mut c = Conditions {
            sql: Vec::new(),
            args: Vec::new(),
        };
        if let Some(s) = status {
            let p = c.param(s.as_str());
            c.add(format!("j.status = {p}"));
        }
        if let Some(t) = job_type {
            let p = c.param(t.as_str());
            c.add(format!("j.job_type = {p}"));
        }
        match tenants.as_deref() {
            // One tenant (a tenant admin): its rows come in order from
            // its index, no sort needed.
            Some([one]) => {
                let p = c.param(one.as_str());
                c.add(format!("j.tenant_id = {p}"));
            }
            Some(many) => {
                let p = c.param(many.to_vec());
                c.add(format!("j.tenant_id = ANY ({p}::text[])"));
            }
            None => {}
        }
        if let Some(q) = q {
            let search = Search::new(q, tenants.as_deref())?;
            let condition = search.condition(&mut c);
            c.add(condition);
        }
        if let Some((at, id)) = after {
            let (at, id) = (c.param(at), c.param(id));
            c.add(format!("(j.requested_at, j.id) < ({at}, {id})"));
        }
        let lim = c.param(limit);
        let sql = format!(
            "SELECT {COLUMNS} FROM lifecycle.jobs j {where_} \
              ORDER BY j.requested_at DESC, j.id DESC LIMIT {lim}",
            where_ = if c.sql.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", c.sql.join(" AND "))
            }
        );
        let rows = read_rows(&sql, &c.args)?;
        with_tenant_names(rows)
    })
}

/// A page's rows, without the tenants' names yet.
fn read_rows(sql: &str, args: &[DatumWithOid<'_>]) -> LcResult<Vec<Row>> {
    Spi::connect(|client| {
        let table = client.select(sql, None, args)?;
        let mut out = Vec::with_capacity(table.len());
        for r in table {
            let missing = |column: &str| LcError::internal(format!("job list: {column} is NULL"));
            out.push((
                r.get(1)?.ok_or_else(|| missing("id"))?,
                r.get(2)?.ok_or_else(|| missing("job_type"))?,
                r.get(3)?.ok_or_else(|| missing("target_type"))?,
                r.get(4)?.ok_or_else(|| missing("target_id"))?,
                r.get(5)?,
                None,
                r.get(6)?.ok_or_else(|| missing("status"))?,
                r.get(7)?.ok_or_else(|| missing("requested_by"))?,
                r.get(8)?,
                r.get(9)?.ok_or_else(|| missing("jurisdiction"))?,
                r.get(10)?.ok_or_else(|| missing("requires_approval"))?,
                r.get(11)?,
                r.get(12)?,
                r.get(13)?,
                r.get(14)?,
                r.get(15)?,
                r.get(16)?,
                r.get(17)?,
                r.get(18)?.ok_or_else(|| missing("requested_at"))?,
                r.get(19)?.ok_or_else(|| missing("scheduled_for"))?,
                r.get(20)?.ok_or_else(|| missing("due_at"))?,
                r.get(21)?.ok_or_else(|| missing("blocked_by_hold"))?,
                r.get(22)?,
                r.get(23)?.ok_or_else(|| missing("attempts"))?,
                r.get(24)?,
                r.get(25)?,
                r.get(26)?,
                r.get(27)?,
                r.get(28)?,
                r.get(29)?,
                r.get(30)?,
                r.get(31)?.ok_or_else(|| missing("updated_at"))?,
            ));
        }
        Ok(out)
    })
}

/// The rows with their tenants' display names (`lifecycle.tenant_names`),
/// looked up once for the page.
fn with_tenant_names(mut rows: Vec<Row>) -> LcResult<Vec<Row>> {
    let ids: Vec<String> = rows
        .iter()
        .filter_map(|row| row.4.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let names: HashMap<String, Option<String>> = if ids.is_empty() {
        HashMap::new()
    } else {
        datamap::tenant_names(&ids)?.into_iter().collect()
    };
    for row in &mut rows {
        row.5 = row.4.as_ref().and_then(|t| names.get(t).cloned().flatten());
    }
    Ok(rows)
}
