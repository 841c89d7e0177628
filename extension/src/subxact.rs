//! Subtransactions: run a piece of work so that its failure undoes only that
//! piece. The job runner uses this so that one failing job neither undoes nor
//! blocks the others run by the same call.

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use pgrx::pg_sys;
use pgrx::pg_sys::panic::CaughtError;

use crate::error::{self, LcError, LcResult};

/// Why a piece of work failed: the error as PostgreSQL reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub sqlstate: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
    /// The extension's statement that failed, when the error came from one.
    pub statement: Option<String>,
}

impl From<LcError> for Failure {
    fn from(e: LcError) -> Self {
        Failure {
            sqlstate: e.sqlstate.to_string(),
            message: e.message,
            detail: e.detail,
            hint: e.hint,
            statement: None,
        }
    }
}

/// The five characters of a SQLSTATE packed by `MAKE_SQLSTATE`.
pub fn unpack_sqlstate(code: i32) -> String {
    (0..5)
        .map(|i| (((code >> (6 * i)) & 0x3F) as u8 + b'0') as char)
        .collect()
}

fn failure_of(payload: &(dyn std::any::Any + Send)) -> Option<Failure> {
    if let Some(e) = error::recover(payload) {
        let _ = crate::spi::failed_statement();
        return Some(e.into());
    }
    let report = match payload.downcast_ref::<CaughtError>()? {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r,
        CaughtError::RustPanic { ereport, .. } => ereport,
    };
    Some(Failure {
        sqlstate: unpack_sqlstate(report.sql_error_code() as isize as i32),
        message: report.message().to_string(),
        detail: report.detail().map(str::to_string),
        hint: report.hint().map(str::to_string),
        statement: crate::spi::failed_statement(),
    })
}

/// Run `f` in a subtransaction. On success the subtransaction is released
/// (its work becomes part of the enclosing transaction); on failure (an
/// `Err`, or an error PostgreSQL raised inside) it is rolled back and the
/// error is returned. A Rust panic that is not an error report is re-raised
/// after the rollback.
pub fn run<R>(f: impl FnOnce() -> LcResult<R>) -> Result<R, Failure> {
    unsafe {
        let cxt = pg_sys::CurrentMemoryContext;
        let owner = pg_sys::CurrentResourceOwner;
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(cxt);
        let outcome = catch_unwind(AssertUnwindSafe(f));
        let restore = || {
            pg_sys::MemoryContextSwitchTo(cxt);
            pg_sys::CurrentResourceOwner = owner;
        };
        match outcome {
            Ok(Ok(v)) => {
                pg_sys::ReleaseCurrentSubTransaction();
                restore();
                Ok(v)
            }
            Ok(Err(e)) => {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
                restore();
                Err(e.into())
            }
            Err(payload) => {
                let failure = failure_of(payload.as_ref());
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
                restore();
                match failure {
                    Some(f) => Err(f),
                    None => resume_unwind(payload),
                }
            }
        }
    }
}
