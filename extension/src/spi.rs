//! Small helpers over pgrx's SPI: single-value queries where "no row" is an
//! answer (`None`), not an error, and the backend's kept plans.
//!
//! Every statement the helpers run is prepared once per backend and kept
//! (`SPI_keepplan`), keyed by its text and argument types: an erasure runs
//! about a hundred statements, and parsing and planning each of them on
//! every call cost more than a small erasure's own work. PostgreSQL's plan
//! cache keeps kept plans valid: a change to a table, an index or a
//! function they use, or a different `search_path` at execution, makes it
//! analyse and plan the statement again; privileges are checked at every
//! execution, as the role running it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiError, SpiResult, SpiTupleTable};

use crate::error::LcResult;

/// Kept plans at most; the cache starts again empty when full (statement
/// texts come from the data map, so a backend normally needs far fewer).
const MAX_PLANS: usize = 1024;

type PlanKey = (String, Vec<u32>);

thread_local! {
    static PLANS: RefCell<HashMap<PlanKey, Rc<OwnedPreparedStatement>>> =
        RefCell::new(HashMap::new());
}

/// The kept plan of `sql` for arguments of the types of `args`.
fn plan(
    client: &SpiClient<'_>,
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> SpiResult<Rc<OwnedPreparedStatement>> {
    let key: PlanKey = (
        sql.to_string(),
        args.iter().map(|a| a.oid().to_u32()).collect(),
    );
    if let Some(p) = PLANS.with(|p| p.borrow().get(&key).cloned()) {
        return Ok(p);
    }
    let types: Vec<PgOid> = args.iter().map(|a| PgOid::from(a.oid())).collect();
    // Prepared as a statement that may write: executed read-write, so each
    // statement sees what the ones before it did.
    let kept = Rc::new(client.prepare_mut(sql, &types)?.keep());
    PLANS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() >= MAX_PLANS {
            p.clear();
        }
        p.insert(key, Rc::clone(&kept));
    });
    Ok(kept)
}

/// The row limit for a helper that reads the first row: one for a query,
/// none for an `INSERT`, `UPDATE`, `DELETE` or `MERGE` with `RETURNING`. SPI
/// stops a statement once it has returned the rows asked for: a limited
/// data-changing statement would change only as many rows, and never reach
/// the end where its `AFTER ... FOR EACH STATEMENT` triggers are queued.
/// (Data-changing `WITH` parts always run to completion.)
fn first_row(sql: &str) -> Option<i64> {
    let head: String = sql
        .trim_start()
        .chars()
        .take(6)
        .collect::<String>()
        .to_ascii_lowercase();
    match head.as_str() {
        "insert" | "update" | "delete" => None,
        _ if head.starts_with("merge") => None,
        _ => Some(1),
    }
}

/// Run the query `sql` through its kept plan; `limit` rows at most
/// (`None`: all).
pub fn select<'conn>(
    client: &SpiClient<'conn>,
    sql: &str,
    limit: Option<i64>,
    args: &[DatumWithOid<'_>],
) -> SpiResult<SpiTupleTable<'conn>> {
    let kept = plan(client, sql, args)?;
    client.select(&*kept, limit.map(|l| l as _), args)
}

/// Run `sql`, which may write, through its kept plan (pgrx then knows the
/// transaction has written, for the statements it runs itself).
pub fn write<'conn>(
    client: &mut SpiClient<'conn>,
    sql: &str,
    limit: Option<i64>,
    args: &[DatumWithOid<'_>],
) -> SpiResult<SpiTupleTable<'conn>> {
    let kept = plan(client, sql, args)?;
    client.update(&*kept, limit.map(|l| l as _), args)
}

thread_local! {
    /// The statement a helper below is running; left set when it fails, so
    /// that a job's error can say which statement failed.
    static RUNNING: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

fn running<R>(sql: &str, f: impl FnOnce() -> LcResult<R>) -> LcResult<R> {
    RUNNING.with(|r| *r.borrow_mut() = Some(sql.to_string()));
    let out = f()?;
    RUNNING.with(|r| *r.borrow_mut() = None);
    Ok(out)
}

/// The statement that was running when the last error was raised, if any.
pub fn failed_statement() -> Option<String> {
    RUNNING.with(|r| r.borrow_mut().take())
}

fn none_if_empty<T>(r: Result<Option<T>, SpiError>) -> LcResult<Option<T>> {
    match r {
        Ok(v) => Ok(v),
        Err(SpiError::InvalidPosition) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// First column of the first row, or `None` when there is no row or it is NULL.
pub fn one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid<'_>]) -> LcResult<Option<T>> {
    running(sql, || {
        Spi::connect(|client| first::<T>(select(client, sql, first_row(sql), args)?))
    })
}

/// First two columns of the first row.
pub fn two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> LcResult<(Option<A>, Option<B>)> {
    Spi::connect(|client| {
        let t = select(client, sql, first_row(sql), args)?;
        if t.is_empty() {
            return Ok((None, None));
        }
        match t.first().get_two::<A, B>() {
            Ok(v) => Ok(v),
            Err(SpiError::InvalidPosition) => Ok((None, None)),
            Err(e) => Err(e.into()),
        }
    })
}

/// First column of the first row of a tuple table already fetched.
pub fn first<T: FromDatum + IntoDatum>(table: SpiTupleTable<'_>) -> LcResult<Option<T>> {
    if table.is_empty() {
        return Ok(None);
    }
    none_if_empty(table.first().get_one::<T>())
}

/// Run a statement that writes; returns the number of rows it processed.
pub fn exec(sql: &str, args: &[DatumWithOid<'_>]) -> LcResult<u64> {
    running(sql, || {
        Spi::connect_mut(|client| Ok(write(client, sql, None, args)?.len() as u64))
    })
}

/// The first row's first column as JSON (the query selects a `jsonb`), or
/// `None` when there is no row. The statement may write.
pub fn json(sql: &str, args: &[DatumWithOid<'_>]) -> LcResult<Option<serde_json::Value>> {
    running(sql, || json_inner(sql, args))
}

fn json_inner(sql: &str, args: &[DatumWithOid<'_>]) -> LcResult<Option<serde_json::Value>> {
    Spi::connect_mut(|client| {
        let t = write(client, sql, first_row(sql), args)?;
        if t.is_empty() {
            return Ok(None);
        }
        Ok(t.first().get_one::<pgrx::JsonB>()?.map(|j| j.0))
    })
}

/// Every row's first column as JSON (the query selects a `jsonb`).
pub fn json_rows(sql: &str, args: &[DatumWithOid<'_>]) -> LcResult<Vec<serde_json::Value>> {
    running(sql, || json_rows_inner(sql, args))
}

fn json_rows_inner(sql: &str, args: &[DatumWithOid<'_>]) -> LcResult<Vec<serde_json::Value>> {
    Spi::connect_mut(|client| {
        let mut out = Vec::new();
        for row in write(client, sql, None, args)? {
            if let Some(j) = row.get::<pgrx::JsonB>(1)? {
                out.push(j.0);
            }
        }
        Ok(out)
    })
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::first_row;

    #[pgrx::pg_test]
    fn data_changing_statements_run_to_their_end() {
        assert_eq!(first_row("SELECT 1"), Some(1));
        assert_eq!(
            first_row("  WITH d AS (DELETE FROM t RETURNING 1) SELECT 1"),
            Some(1)
        );
        assert_eq!(first_row("UPDATE t SET a = 1 RETURNING a"), None);
        assert_eq!(first_row("\n insert INTO t VALUES (1) RETURNING 1"), None);
        assert_eq!(first_row("DELETE FROM t RETURNING 1"), None);
        assert_eq!(
            first_row("MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE"),
            None
        );
    }

    /// An UPDATE ... RETURNING read for its first row changes every row it
    /// matches.
    #[pgrx::pg_test]
    fn an_update_read_for_its_first_row_changes_every_row() {
        pgrx::Spi::run("CREATE TEMP TABLE first_row_t (a int); INSERT INTO first_row_t SELECT 1 FROM generate_series(1, 5)").unwrap();
        let first =
            crate::spi::one::<i32>("UPDATE first_row_t SET a = 2 RETURNING a", &[]).unwrap();
        assert_eq!(first, Some(2));
        let changed =
            crate::spi::one::<i64>("SELECT count(*) FROM first_row_t WHERE a = 2", &[]).unwrap();
        assert_eq!(changed, Some(5));
    }
}
