//! Small helpers over pgrx's SPI: single-value queries where "no row" is an
//! answer (`None`), not an error.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{SpiError, SpiTupleTable};

use crate::error::LcResult;

fn none_if_empty<T>(r: Result<Option<T>, SpiError>) -> LcResult<Option<T>> {
    match r {
        Ok(v) => Ok(v),
        Err(SpiError::InvalidPosition) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// First column of the first row, or `None` when there is no row or it is NULL.
pub fn one<T: FromDatum + IntoDatum>(sql: &str, args: &[DatumWithOid<'_>]) -> LcResult<Option<T>> {
    none_if_empty(Spi::get_one_with_args::<T>(sql, args))
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
