//! The job list of the admin console and the control plane's
//! `GET /api/v1/jobs`: filters, a search, and keyset pagination.
//!
//! Rows come newest first by `(requested_at, id)`, strictly after the
//! cursor, so a page never repeats or skips a row because jobs were
//! inserted meanwhile. The statement is built from the filters that are
//! given (their values are parameters, never text), so that each
//! combination is planned on its own and reads one of the indexes
//! `sql/extension/jobs.sql` creates for it, up to the page's end.
//!
//! The rows go out as they come from SPI: each is deformed once and its
//! datums handed on with the tenant's name put in (see [`list`]), not
//! converted to Rust values and back, which cost more than the query.

use std::collections::{BTreeSet, HashMap};

use lifecycle_core::jobs::{JobStatus, JobType};
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone, Uuid};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::datamap;
use crate::error::{LcError, LcResult};
use crate::privilege;
use crate::spi;

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

/// The columns read: those of `lifecycle.jobs` the console shows (all but
/// `options` and `result`, which the job's own page reads).
/// `lifecycle.list_jobs` returns them with `tenant_name` after `tenant_id`.
const COLUMNS: &str = "j.id, j.job_type, j.target_type, j.target_id, j.tenant_id, j.status, \
     j.requested_by, j.reason, j.jurisdiction, j.requires_approval, j.approved_by, j.approved_at, \
     j.rejected_by, j.rejected_at, j.rejection_reason, j.cancelled_by, j.cancelled_at, \
     j.requested_at, j.scheduled_for, j.due_at, j.blocked_by_hold, j.blocking_hold_id, \
     j.attempts, j.worker, j.lease_expires_at, j.started_at, j.finished_at, j.error, \
     j.error_sqlstate, j.result_digest, j.updated_at";

/// Where the tenant's id is among the columns read (0-based); its name
/// follows it in the result.
const TENANT_COLUMN: usize = 4;

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

/// The statement's parameters, numbered as added.
#[derive(Default)]
struct Params<'a> {
    args: Vec<DatumWithOid<'a>>,
}

impl<'a> Params<'a> {
    /// Add a parameter; returns its placeholder (`$n`).
    fn add(&mut self, value: impl Into<DatumWithOid<'a>>) -> String {
        self.args.push(value.into());
        format!("${}", self.args.len())
    }
}

/// `j.tenant_id` is one of `ids`: with one id, an equality, so that the
/// rows come in order from an index that starts with the tenant.
fn tenant_condition(p: &mut Params<'_>, ids: &[String]) -> String {
    match ids {
        [one] => format!("j.tenant_id = {}", p.add(one.as_str())),
        many => format!("j.tenant_id = ANY ({}::text[])", p.add(many.to_vec())),
    }
}

/// What a search matches: the job id (when `q` is a uuid), the target id
/// (as written, and in its canonical form when it is a uuid), and the
/// tenants whose id is `q` or whose name contains it.
struct Search {
    job_id: Option<Uuid>,
    target_ids: Vec<String>,
    /// (id, display name) of the tenants found.
    tenants: Vec<(String, Option<String>)>,
}

impl Search {
    fn new(q: &str, scope: Option<&[String]>) -> LcResult<Search> {
        let as_uuid = crate::holds::uuid_bytes(q).map(Uuid::from_bytes);
        let mut target_ids = vec![q.to_string()];
        if let Some(u) = as_uuid {
            let canonical = u.to_string();
            if canonical != q {
                target_ids.push(canonical);
            }
        }
        // Kinds of match that find nothing at all are left out of the
        // statement (most searches are for a name, not an id).
        let (job, target) = spi::two::<bool, bool>(
            "SELECT EXISTS (SELECT 1 FROM lifecycle.jobs WHERE id = $1::uuid), \
                    EXISTS (SELECT 1 FROM lifecycle.jobs WHERE target_id = ANY ($2::text[]))",
            &[as_uuid.into(), target_ids.clone().into()],
        )?;
        // A tenant admin's search finds their own tenant's jobs only.
        let tenants = datamap::find_tenants(q, i32::MAX)?
            .into_iter()
            .filter(|(id, _)| scope.is_none_or(|s| s.contains(id)))
            .collect();
        Ok(Search {
            job_id: as_uuid.filter(|_| job == Some(true)),
            target_ids: if target == Some(true) {
                target_ids
            } else {
                Vec::new()
            },
            tenants,
        })
    }

    /// The names of the tenants found, which the page then need not look up.
    fn names(&self) -> HashMap<String, Option<String>> {
        self.tenants.iter().cloned().collect()
    }

    /// One condition per kind of match that finds jobs, each of which an
    /// index answers.
    fn branches(self, p: &mut Params<'_>) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(id) = self.job_id {
            out.push(format!("j.id = {}::uuid", p.add(id)));
        }
        if !self.target_ids.is_empty() {
            out.push(format!(
                "j.target_id = ANY ({}::text[])",
                p.add(self.target_ids)
            ));
        }
        if !self.tenants.is_empty() {
            let ids: Vec<String> = self.tenants.into_iter().map(|(id, _)| id).collect();
            out.push(tenant_condition(p, &ids));
        }
        out
    }
}

/// The page of jobs `query` asks for: `emit` receives each row's datums
/// and null flags, in the order of `lifecycle.list_jobs`' result, valid
/// during the call only (a set-returning function copies them into its
/// tuplestore).
pub fn list(query: Query<'_>, emit: impl FnMut(&[pg_sys::Datum], &[bool])) -> LcResult<()> {
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
        return Ok(());
    }
    privilege::as_extension_owner(|| {
        let mut p = Params::default();
        let mut filters = Vec::new();
        if let Some(s) = status {
            filters.push(format!("j.status = {}", p.add(s.as_str())));
        }
        if let Some(t) = job_type {
            filters.push(format!("j.job_type = {}", p.add(t.as_str())));
        }
        if let Some(t) = tenants.as_deref() {
            filters.push(tenant_condition(&mut p, t));
        }
        if let Some((at, id)) = after {
            let (at, id) = (p.add(at), p.add(id));
            filters.push(format!("(j.requested_at, j.id) < ({at}, {id})"));
        }
        let mut names = HashMap::new();
        let search = match q {
            Some(q) => {
                let search = Search::new(q, tenants.as_deref())?;
                names = search.names();
                let branches = search.branches(&mut p);
                if branches.is_empty() {
                    return Ok(());
                }
                branches
            }
            None => Vec::new(),
        };
        // Planned for the values given (not kept): the best plan for a
        // tenant with few matching jobs (sort them) is not the one for a
        // tenant with many (read them in order and stop at the page's end).
        let lim = p.add(limit);
        let page = |extra: Option<&str>| {
            let conditions: Vec<&str> = filters.iter().map(String::as_str).chain(extra).collect();
            let where_ = if conditions.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", conditions.join(" AND "))
            };
            format!(
                "SELECT {COLUMNS} FROM lifecycle.jobs j {where_} \
                  ORDER BY j.requested_at DESC, j.id DESC LIMIT {lim}"
            )
        };
        // A search that matches several kinds is one page per kind,
        // merged: each is read in order from its own index, where one
        // condition with OR would read every match of every kind to sort
        // them.
        let sql = match search.as_slice() {
            [] => page(None),
            [one] => page(Some(one)),
            several => {
                let branches: Vec<String> = several
                    .iter()
                    .map(|b| format!("({})", page(Some(b))))
                    .collect();
                format!(
                    "SELECT * FROM ({}) j ORDER BY j.requested_at DESC, j.id DESC LIMIT {lim}",
                    branches.join(" UNION ")
                )
            }
        };
        emit_rows(&sql, &p.args, names, emit)
    })
}

/// Run the page's statement and emit its rows with their tenants' display
/// names: those of `known`, the others looked up once for the page
/// (`lifecycle.tenant_names`).
fn emit_rows(
    sql: &str,
    args: &[DatumWithOid<'_>],
    mut known: HashMap<String, Option<String>>,
    mut emit: impl FnMut(&[pg_sys::Datum], &[bool]),
) -> LcResult<()> {
    Spi::connect(|client| {
        let n = client.select(sql, None, args)?.len();
        // SAFETY: SPI_tuptable is the result of the statement just run (no
        // SPI call came between); the table itself stays allocated in this
        // connection's memory until it ends, whatever runs meanwhile.
        let table = unsafe { pg_sys::SPI_tuptable };
        if n == 0 || table.is_null() {
            return Ok(());
        }
        let (tuples, desc) = unsafe {
            (
                std::slice::from_raw_parts((*table).vals, n),
                (*table).tupdesc,
            )
        };
        let width = unsafe { (*desc).natts } as usize;
        let mut values = vec![pg_sys::Datum::from(0); width + 1];
        let mut nulls = vec![true; width + 1];
        // SAFETY: each tuple is a row of `desc`; `values` and `nulls` have
        // room for its columns.
        let deform =
            |tuple: pg_sys::HeapTuple, values: &mut [pg_sys::Datum], nulls: &mut [bool]| unsafe {
                pg_sys::heap_deform_tuple(tuple, desc, values.as_mut_ptr(), nulls.as_mut_ptr())
            };
        let mut tenant_ids = Vec::with_capacity(n);
        for &tuple in tuples {
            deform(tuple, &mut values, &mut nulls);
            let id = (!nulls[TENANT_COLUMN])
                .then(|| unsafe { String::from_datum(values[TENANT_COLUMN], false) })
                .flatten();
            tenant_ids.push(id);
        }
        let unknown: Vec<String> = tenant_ids
            .iter()
            .flatten()
            .filter(|id| !known.contains_key(*id))
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !unknown.is_empty() {
            known.extend(datamap::tenant_names(&unknown)?);
        }
        let names: HashMap<String, pg_sys::Datum> = known
            .into_iter()
            .filter_map(|(id, name)| Some((id, name?.into_datum()?)))
            .collect();
        for (&tuple, tenant) in tuples.iter().zip(&tenant_ids) {
            // The row's columns, then the name moved in after the tenant's id.
            deform(tuple, &mut values[..width], &mut nulls[..width]);
            values[TENANT_COLUMN + 1..].rotate_right(1);
            nulls[TENANT_COLUMN + 1..].rotate_right(1);
            let name = tenant.as_ref().and_then(|t| names.get(t));
            values[TENANT_COLUMN + 1] = name.copied().unwrap_or(pg_sys::Datum::from(0));
            nulls[TENANT_COLUMN + 1] = name.is_none();
            emit(&values, &nulls);
        }
        Ok(())
    })
}
