//! Name resolution the extension can rely on.
//!
//! Every SQL text the extension runs (catalog queries, writes to its own
//! tables, the statements it generates for registered tables, the DDL that
//! installs guards) is parsed while the extension's code is on the stack, so
//! it must resolve to exactly the objects intended whatever `search_path` the
//! caller set. A table owner who creates `evil.=(oid, oid)` and puts `evil`
//! first would otherwise have their operator run by the extension, with the
//! rights it holds at that moment (the extension owner's, a superuser's).
//!
//! [`pinned`] runs a piece of work with the search path reduced to
//! `pg_catalog` alone: no user schema, and no temporary schema either, so a
//! temporary table cannot shadow a relation by its bare name. Every entry
//! point runs its body through it (see `entry::boundary`), so no
//! extension code path can forget it. The extension's own objects are always
//! named with their schema (`lifecycle.jobs`), relations of the data map by
//! their OID or by the schema-qualified name `regclass` prints under the
//! pinned path, and operators on application columns through
//! [`equality_operator`] (the column type's own `=`, wherever it lives).
//!
//! Code of others that the extension's statements fire (triggers of a
//! registered table while the erasure engine writes it) sees the pinned path
//! too, as PostgreSQL's own maintenance commands do; the one exception is
//! soft delete, whose `UPDATE` replaces the caller's own `DELETE` and runs as
//! the caller, under the caller's path ([`with_caller_path`]).

use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use pgrx::pg_sys;

use crate::error::{LcError, LcResult};

thread_local! {
    /// The search path of the caller of the outermost entry point, captured
    /// before it was pinned (only while an entry point runs).
    static CALLER_PATH: Cell<*mut pg_sys::OverrideSearchPath> =
        const { Cell::new(std::ptr::null_mut()) };
}

/// Run `f` with the search path pinned to `pg_catalog` (no user schema, no
/// temporary schema). Nests; the previous path is back afterwards, also when
/// `f` fails.
pub fn pinned<R>(f: impl FnOnce() -> R) -> R {
    let outermost = CALLER_PATH.with(|c| c.get().is_null());
    if outermost {
        // SAFETY: copies the active path into the current memory context.
        let caller = unsafe { pg_sys::GetOverrideSearchPath(pg_sys::CurrentMemoryContext) };
        CALLER_PATH.with(|c| c.set(caller));
    }
    let mut path = pg_sys::OverrideSearchPath {
        schemas: std::ptr::null_mut(),
        addCatalog: true,
        addTemp: false,
        generation: 0,
    };
    // SAFETY: PushOverrideSearchPath copies `path`; it is popped below in the
    // same (sub)transaction level, on success and on error alike.
    unsafe { pg_sys::PushOverrideSearchPath(&mut path) };
    let r = catch_unwind(AssertUnwindSafe(f));
    unsafe { pg_sys::PopOverrideSearchPath() };
    if outermost {
        CALLER_PATH.with(|c| c.set(std::ptr::null_mut()));
    }
    match r {
        Ok(v) => v,
        Err(p) => resume_unwind(p),
    }
}

/// Run `f` under the search path of the caller of the outermost entry
/// point: for a statement the extension runs *on the caller's behalf and as
/// the caller*, whose side effects (the application's own triggers) must see
/// what the caller's own statement would have seen. The SQL text itself must
/// still be fully qualified.
pub fn with_caller_path<R>(f: impl FnOnce() -> LcResult<R>) -> LcResult<R> {
    let caller = CALLER_PATH.with(|c| c.get());
    if caller.is_null() {
        return f();
    }
    // SAFETY: `caller` was copied at the outermost entry point and lives in
    // a memory context that outlives it; Push copies it again.
    unsafe { pg_sys::PushOverrideSearchPath(caller) };
    let r = catch_unwind(AssertUnwindSafe(f));
    unsafe { pg_sys::PopOverrideSearchPath() };
    match r {
        Ok(v) => v,
        Err(p) => resume_unwind(p),
    }
}

/// `OPERATOR(schema.=)`: the default equality operator of `type_oid` (the
/// one its btree or hash operator class uses), schema-qualified, so that a
/// comparison of a column with a value means what the column's own `=`
/// means (case-insensitive for `citext`, blank-padded for `character(n)`)
/// and cannot be redirected.
pub fn equality_operator(type_oid: pg_sys::Oid) -> LcResult<String> {
    let op = unsafe {
        let entry = pg_sys::lookup_type_cache(type_oid, pg_sys::TYPECACHE_EQ_OPR as i32);
        if entry.is_null() {
            pg_sys::Oid::INVALID
        } else {
            (*entry).eq_opr
        }
    };
    if op == pg_sys::Oid::INVALID {
        return Err(LcError::datatype_mismatch(format!(
            "type {} has no default equality operator",
            type_name(type_oid)?
        ))
        .hint("Key columns must be of a type with a btree or hash operator class."));
    }
    let schema = crate::spi::one::<String>(
        "SELECT pg_catalog.quote_ident(n.nspname) FROM pg_catalog.pg_operator o \
           JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace WHERE o.oid = $1",
        &[op.into()],
    )?
    .ok_or_else(|| LcError::internal(format!("operator {} vanished", op.to_u32())))?;
    Ok(format!("OPERATOR({schema}.=)"))
}

/// The schema-qualified name of a type, as a cast target.
pub fn type_name(type_oid: pg_sys::Oid) -> LcResult<String> {
    crate::spi::one::<String>(
        "SELECT pg_catalog.quote_ident(n.nspname) || '.' || pg_catalog.quote_ident(t.typname) \
           FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace \
          WHERE t.oid = $1",
        &[type_oid.into()],
    )?
    .ok_or_else(|| LcError::internal(format!("type {} vanished", type_oid.to_u32())))
}

/// A type's name as people read it (`bigint`, `character(5)` without the
/// modifier, `app.mood`): for messages.
pub fn display_type(type_oid: pg_sys::Oid) -> LcResult<String> {
    Ok(crate::spi::one::<String>(
        "SELECT pg_catalog.format_type($1, NULL)",
        &[type_oid.into()],
    )?
    .unwrap_or_else(|| format!("type {}", type_oid.to_u32())))
}

pub fn quote_ident(s: &str) -> String {
    pgrx::spi::quote_identifier(s)
}

/// The base type of a (possibly domain) type: its values' representation
/// and its equality.
pub fn base_type(type_oid: pg_sys::Oid) -> pg_sys::Oid {
    unsafe { pg_sys::getBaseType(type_oid) }
}
