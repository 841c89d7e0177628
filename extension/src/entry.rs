//! The boundary every SQL entry point runs its body through: the search
//! path pinned ([`crate::namespace::pinned`]), and an `Err` reported as a
//! PostgreSQL ERROR with its own SQLSTATE, DETAIL and HINT
//! ([`crate::error`]).

use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use crate::error::{raise, recover, LcResult};

/// Run an entry point's body; an `Err` becomes a PostgreSQL ERROR with its
/// own SQLSTATE, DETAIL and HINT. Panics (including PostgreSQL errors caught
/// by pgrx) keep unwinding to pgrx's own boundary, except that errors of ours
/// that passed through nested SPI get their SQLSTATE back.
///
/// The body runs with the search path pinned ([`crate::namespace::pinned`]):
/// nothing it parses can be redirected to objects of the caller's choosing.
pub fn boundary<R>(f: impl FnOnce() -> LcResult<R>) -> R {
    let outcome = catch_unwind(AssertUnwindSafe(|| crate::namespace::pinned(f)));
    let err = match outcome {
        Ok(Ok(v)) => return v,
        Ok(Err(e)) => e,
        Err(payload) => match recover(payload.as_ref()) {
            Some(e) => {
                drop(payload);
                e
            }
            None => resume_unwind(payload),
        },
    };
    raise(err)
}
