//! Who the extension acts as.
//!
//! The extension's tables are owned by the role that created the extension
//! and are not writable by other roles: the data map, legal holds and the
//! audit log can only change through the extension's functions. Those
//! functions check what the *caller* may do (own the table being registered,
//! for example) and then write their own tables as the extension owner.

use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};

use pgrx::pg_sys;

use crate::error::{LcError, LcResult};

thread_local! {
    static OWNER: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
    /// Depth of [`as_extension_owner`]: while it is above zero the
    /// extension's own code is writing, which is what the guards on the
    /// extension's tables let through (see [`extension_acting`]).
    static ACTING: Cell<u32> = const { Cell::new(0) };
}

/// Whether the extension's own code is acting as the extension owner right
/// now. Writes to the extension's tables are accepted only then (or from a
/// superuser, who can do anything and whose direct writes are the restore
/// path): a role that was granted INSERT or UPDATE on them still cannot
/// write them.
pub fn extension_acting() -> bool {
    ACTING.with(|a| a.get() > 0)
}

/// Forget cached catalog facts (the extension was dropped or altered).
pub fn reset() {
    OWNER.with(|o| o.set(None));
}

fn extension_owner() -> LcResult<pg_sys::Oid> {
    if let Some(oid) = OWNER.with(|o| o.get()) {
        return Ok(oid);
    }
    let oid = crate::spi::one::<pg_sys::Oid>(
        "SELECT extowner FROM pg_catalog.pg_extension WHERE extname = 'lifecycle'",
        &[],
    )?
    .ok_or_else(|| LcError::internal("extension \"lifecycle\" is not installed"))?;
    OWNER.with(|o| o.set(Some(oid)));
    Ok(oid)
}

/// Run `f` with the extension owner's privileges, then switch back.
pub fn as_extension_owner<R>(f: impl FnOnce() -> LcResult<R>) -> LcResult<R> {
    let owner = extension_owner()?;
    let mut saved_user = pg_sys::Oid::INVALID;
    let mut saved_ctx: i32 = 0;
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_ctx);
        pg_sys::SetUserIdAndSecContext(
            owner,
            saved_ctx | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32,
        );
    }
    ACTING.with(|a| a.set(a.get() + 1));
    let result = catch_unwind(AssertUnwindSafe(f));
    ACTING.with(|a| a.set(a.get().saturating_sub(1)));
    unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx) };
    match result {
        Ok(r) => r,
        Err(payload) => resume_unwind(payload),
    }
}

/// The owner of a relation, which the extension reads and changes it as,
/// from the system cache (the erasure engine asks for it before every
/// statement it runs as a table's owner: a query each time cost more than
/// some of those statements). Refused (`LC044`) when the relation's
/// row-level security would hide rows from its owner (`FORCE ROW LEVEL
/// SECURITY`, an owner without `BYPASSRLS`): see [`crate::row_security`].
pub fn table_owner(relid: pg_sys::Oid) -> LcResult<pg_sys::Oid> {
    let (owner, row_security) = crate::row_security::owner_and_row_security(relid)
        .ok_or_else(|| LcError::internal(format!("relation {} vanished", relid.to_u32())))?;
    if row_security {
        crate::row_security::require_visible(relid, owner)?;
    }
    Ok(owner)
}

/// Run `f` as `role` in a security-restricted operation, as PostgreSQL runs
/// maintenance commands on a table as its owner: the erasure engine changes
/// an application's table as that table's owner, so that the owner's
/// triggers and functions never run with the extension owner's rights. The
/// extension is not "acting" meanwhile: code of the table's owner that
/// tries to write the extension's tables is refused.
///
/// `row_security` is off meanwhile, in a GUC nesting level of its own (as
/// PostgreSQL opens one for a function's `SET` clause): a statement that
/// row-level security would filter for `role` fails (`42501`) instead of
/// silently seeing fewer rows. Leaving the level discards every setting
/// changed inside (the owner's code cannot change the session either), on
/// success and on error alike.
pub fn as_role<R>(role: pg_sys::Oid, f: impl FnOnce() -> LcResult<R>) -> LcResult<R> {
    let mut saved_user = pg_sys::Oid::INVALID;
    let mut saved_ctx: i32 = 0;
    // SAFETY: a new GUC nesting level and `row_security` set in it, popped
    // below on every path (before the panic of an error resumes: nothing
    // has been aborted yet then), then the user and context switched back.
    let level = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"row_security".as_ptr(),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_ctx);
        pg_sys::SetUserIdAndSecContext(
            role,
            saved_ctx
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
        level
    };
    let acting = ACTING.with(|a| a.replace(0));
    let result = catch_unwind(AssertUnwindSafe(f));
    ACTING.with(|a| a.set(acting));
    unsafe {
        pg_sys::AtEOXact_GUC(false, level);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_ctx);
    }
    match result {
        Ok(r) => r,
        Err(payload) => resume_unwind(payload),
    }
}

/// The name of the role the caller acts as (`current_user`).
pub fn current_user_name() -> String {
    unsafe {
        let oid = pg_sys::GetUserId();
        let name = pg_sys::GetUserNameFromId(oid, true);
        if name.is_null() {
            format!("role {}", oid.to_u32())
        } else {
            std::ffi::CStr::from_ptr(name)
                .to_string_lossy()
                .into_owned()
        }
    }
}

pub fn is_superuser() -> bool {
    unsafe { pg_sys::superuser() }
}

/// The caller must own `relid` (or be a member of the owning role).
pub fn require_table_owner(relid: pg_sys::Oid, table: &str, action: &str) -> LcResult<()> {
    let owns = crate::spi::one::<bool>(
        "SELECT pg_catalog.pg_has_role(relowner, 'USAGE') FROM pg_catalog.pg_class WHERE oid = $1",
        &[relid.into()],
    )?
    .unwrap_or(false);
    if owns {
        Ok(())
    } else {
        Err(LcError::insufficient_privilege(format!(
            "must be owner of table {table} to {action} it"
        ))
        .detail(format!(
            "Role \"{}\" does not own {table}.",
            current_user_name()
        ))
        .hint("Run the call as the table's owner or a superuser."))
    }
}

thread_local! {
    /// Depth of the extension's own writes to protected tables and its own
    /// DDL on guarded tables. Not reachable from SQL.
    static INTERNAL: Cell<u32> = const { Cell::new(0) };
}

pub fn internal_write_active() -> bool {
    INTERNAL.with(|c| c.get() > 0)
}

/// Run `f` as the extension's own write (bypasses append-only and
/// immutability triggers, and the DDL guard).
pub fn with_internal_write<R>(f: impl FnOnce() -> LcResult<R>) -> LcResult<R> {
    INTERNAL.with(|c| c.set(c.get() + 1));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    INTERNAL.with(|c| c.set(c.get().saturating_sub(1)));
    match r {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use super::as_role;

    /// Statements run as a table's owner run with row_security off, and the
    /// setting is back after, also after an error; settings changed inside
    /// are discarded.
    #[pg_test]
    fn row_security_is_off_as_the_owner_and_restored_after() {
        let setting = || {
            Spi::get_one::<String>("SELECT pg_catalog.current_setting('row_security')")
                .unwrap()
                .unwrap()
        };
        Spi::run("SET row_security = on").unwrap();
        let me = unsafe { pg_sys::GetUserId() };
        let inside = as_role(me, || {
            crate::spi::one::<String>("SELECT pg_catalog.current_setting('row_security')", &[])
        })
        .unwrap();
        assert_eq!(inside.as_deref(), Some("off"));
        assert_eq!(setting(), "on");
        let failed = crate::subxact::run(|| as_role(me, || crate::spi::exec("SELECT 1 / 0", &[])));
        assert_eq!(failed.unwrap_err().sqlstate, "22012");
        assert_eq!(setting(), "on");
        as_role(me, || {
            crate::spi::exec(
                "SELECT pg_catalog.set_config('lifecycle_test.inside', 'changed', false)",
                &[],
            )
        })
        .unwrap();
        let after = Spi::get_one::<String>(
            "SELECT pg_catalog.current_setting('lifecycle_test.inside', true)",
        )
        .unwrap();
        assert_ne!(after.as_deref(), Some("changed"));
        Spi::run("RESET row_security").unwrap();
    }

    /// A statement that row-level security would filter for the role it
    /// runs as fails instead (42501): nothing is skipped without a word.
    #[pg_test]
    fn a_statement_policies_would_filter_fails_as_the_owner() {
        Spi::run(
            "CREATE ROLE rls_reader NOLOGIN;
             CREATE TABLE public.rls_guarded (id int, tenant text);
             INSERT INTO public.rls_guarded VALUES (1, 'a'), (2, 'b');
             ALTER TABLE public.rls_guarded ENABLE ROW LEVEL SECURITY;
             CREATE POLICY only_a ON public.rls_guarded USING (tenant = 'a');
             GRANT SELECT ON public.rls_guarded TO rls_reader;",
        )
        .unwrap();
        let reader = Spi::get_one::<pg_sys::Oid>("SELECT 'rls_reader'::regrole::oid")
            .unwrap()
            .unwrap();
        let count = || crate::spi::one::<i64>("SELECT count(*) FROM public.rls_guarded", &[]);
        // The same role outside: the policy filters.
        Spi::run("SET ROLE rls_reader").unwrap();
        assert_eq!(count().unwrap(), Some(1));
        Spi::run("RESET ROLE").unwrap();
        let failed = crate::subxact::run(|| as_role(reader, count)).unwrap_err();
        assert_eq!(failed.sqlstate, "42501", "{failed:?}");
        assert!(
            failed
                .message
                .contains("query would be affected by row-level security policy"),
            "{failed:?}"
        );
    }
}
