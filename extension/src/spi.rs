//! Small helpers over pgrx's SPI: single-value queries where "no row" is an
//! answer (`None`), not an error.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{SpiError, SpiTupleTable};

use crate::error::LcResult;

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
        none_if_empty(Spi::get_one_with_args::<T>(sql, args))
    })
}

/// First two columns of the first row.
pub fn two<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    sql: &str,
    args: &[DatumWithOid<'_>],
) -> LcResult<(Option<A>, Option<B>)> {
    match Spi::get_two_with_args::<A, B>(sql, args) {
        Ok(v) => Ok(v),
        Err(SpiError::InvalidPosition) => Ok((None, None)),
        Err(e) => Err(e.into()),
    }
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
        Spi::connect_mut(|client| Ok(client.update(sql, None, args)?.len() as u64))
    })
}

/// The first row's first column as JSON (the query selects a `jsonb`), or
/// `None` when there is no row. The statement may write.
pub fn json(sql: &str, args: &[DatumWithOid<'_>]) -> LcResult<Option<serde_json::Value>> {
    running(sql, || json_inner(sql, args))
}

fn json_inner(sql: &str, args: &[DatumWithOid<'_>]) -> LcResult<Option<serde_json::Value>> {
    Spi::connect_mut(|client| {
        let t = client.update(sql, Some(1), args)?;
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
        for row in client.update(sql, None, args)? {
            if let Some(j) = row.get::<pgrx::JsonB>(1)? {
                out.push(j.0);
            }
        }
        Ok(out)
    })
}
