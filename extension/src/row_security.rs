//! Row-level security and the extension's reads of application tables.
//!
//! The erasure engine and the exports read and change each registered table
//! as its owner (`privilege::as_role`). A table's owner is exempt from the
//! table's row-level security, unless the table has `FORCE ROW LEVEL
//! SECURITY`: then its policies decide which rows the owner sees. A
//! tenant-isolation policy keyed on a setting of the application's sessions
//! (`USING (workspace_id = current_setting('app.tenant', true))`) hides every
//! row from the extension's session, which never sets it: an erasure would
//! find nothing to remove, verify that nothing is left and complete, and an
//! export would leave the rows out.
//!
//! Two things stop that:
//!
//! * every statement the extension runs as a table's owner runs with
//!   `row_security = off` (`privilege::as_role`): where a policy would apply,
//!   PostgreSQL raises an error (`42501`) instead of filtering rows;
//! * before an erasure, a purge, a preview or an export reads a table, the
//!   role it reads the table as is checked here ([`require_visible`], from
//!   `privilege::table_owner`, and [`require_statements`] for the tables a
//!   statement reads through another one), and a table whose row-level
//!   security would hide rows from that role is refused with `LC044`, which
//!   names the table, its policies and what to change.
//!
//! Whether row-level security applies is PostgreSQL's own decision
//! (`check_enable_rls`: superusers and `BYPASSRLS` roles are exempt, owners
//! too unless the table forces it), read from the system caches at the time
//! of the check, so `ALTER TABLE ... NO FORCE ROW LEVEL SECURITY` or
//! `ALTER ROLE ... BYPASSRLS` counts from the next statement on.

use std::borrow::Cow;
use std::cell::Cell;

use pgrx::pg_sys;
use serde_json::Value;

use crate::error::{LcError, LcResult};
use crate::plan::Catalog;
use crate::spi;

thread_local! {
    /// What the extension is doing, for the refusal's words.
    static PURPOSE: Cell<&'static str> = const { Cell::new("the extension") };
}

/// Run `f` as `purpose` ("the erasure", "the export"): a refusal raised
/// meanwhile says what the hidden rows would be missing from.
pub fn during<R>(purpose: &'static str, f: impl FnOnce() -> R) -> R {
    struct Restore(&'static str);
    impl Drop for Restore {
        fn drop(&mut self) {
            PURPOSE.with(|p| p.set(self.0));
        }
    }
    let _restore = Restore(PURPOSE.with(|p| p.replace(purpose)));
    f()
}

/// The owner of a relation and whether it has row-level security enabled,
/// from the system cache; `None` when there is no such relation.
pub fn owner_and_row_security(relid: pg_sys::Oid) -> Option<(pg_sys::Oid, bool)> {
    // SAFETY: the tuple is only read while the cache pins it, and released
    // on the one path that found it.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(
            pg_sys::SysCacheIdentifier::RELOID as i32,
            pg_sys::Datum::from(relid),
        );
        if tuple.is_null() {
            return None;
        }
        let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple);
        let facts = ((*form).relowner, (*form).relrowsecurity);
        pg_sys::ReleaseSysCache(tuple);
        Some(facts)
    }
}

/// Whether PostgreSQL applies the row-level security of `relid` to `role`:
/// the table has it enabled, and `role` is neither a superuser nor
/// `BYPASSRLS`, nor the table's owner unless the table forces it on its
/// owner. Whatever `row_security` is set to.
pub fn applies(relid: pg_sys::Oid, role: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup; with noError it raises nothing for a role
    // the policies apply to (and a relation that does not exist has none).
    let r = unsafe { pg_sys::check_enable_rls(relid, role, true) };
    r == pg_sys::CheckEnableRlsResult::RLS_ENABLED as std::ffi::c_int
}

/// Refuse (`LC044`) when row-level security would hide rows of `relid` from
/// `role`, the role the extension reads it as.
pub fn require_visible(relid: pg_sys::Oid, role: pg_sys::Oid) -> LcResult<()> {
    if applies(relid, role) {
        Err(refusal(relid, role)?)
    } else {
        Ok(())
    }
}

/// Refuse (`LC044`) when a statement would read a table whose row-level
/// security hides rows from the role the statement runs as. `statements`
/// are (the table a statement runs on, as its owner; the statement's SQL
/// or the part of it that names other tables); the tables it may read
/// through others are those of the data map and of the references into it
/// (`cat`) named in that text. The table a statement runs on is checked
/// against its own owner too.
pub fn require_statements<'s>(
    cat: &Catalog,
    statements: impl IntoIterator<Item = (u32, Cow<'s, str>)>,
) -> LcResult<()> {
    // Only tables with row-level security enabled can hide anything: most
    // schemas have none, and then no statement's text is searched.
    let mut guarded: Vec<(u32, &str)> = cat
        .tables
        .iter()
        .map(|t| (t.oid, t.name.as_str()))
        .chain(cat.refs.iter().map(|r| (r.child, r.child_name.as_str())))
        .filter(|(oid, _)| owner_and_row_security(pg_sys::Oid::from(*oid)).is_some_and(|f| f.1))
        .collect();
    guarded.sort_unstable();
    guarded.dedup_by_key(|g| g.0);
    let mut checked: Vec<(u32, pg_sys::Oid)> = Vec::new();
    for (table, text) in statements {
        let Some((owner, rls)) = owner_and_row_security(pg_sys::Oid::from(table)) else {
            continue;
        };
        let mut check = |relid: u32| -> LcResult<()> {
            if checked.contains(&(relid, owner)) {
                return Ok(());
            }
            checked.push((relid, owner));
            require_visible(pg_sys::Oid::from(relid), owner)
        };
        if rls {
            check(table)?;
        }
        for (relid, name) in &guarded {
            if *relid != table && names(&text, name) {
                check(*relid)?;
            }
        }
    }
    Ok(())
}

/// Whether `sql` names the relation `name` (as `regclass` prints it:
/// `app.posts`, `app."Posts"`), as a whole name: not part of a longer
/// identifier or qualified name (`app.posts_archive`, `myapp.posts`).
pub fn names(sql: &str, name: &str) -> bool {
    if name.is_empty() {
        return false;
    }
    let part = |c: char| c.is_alphanumeric() || matches!(c, '_' | '$' | '"' | '.');
    sql.match_indices(name).any(|(i, _)| {
        !sql[..i].chars().next_back().is_some_and(part)
            && !sql[i + name.len()..].chars().next().is_some_and(part)
    })
}

/// `LC044` for `relid` read as `role`, with the table's policies that apply
/// to that role and what to change. Read only when refusing.
fn refusal(relid: pg_sys::Oid, role: pg_sys::Oid) -> LcResult<LcError> {
    let facts = spi::json(
        "SELECT pg_catalog.jsonb_build_object( \
                'table', c.oid::pg_catalog.regclass::text, \
                'role', pg_catalog.pg_get_userbyid($2), \
                'owns', pg_catalog.pg_has_role($2, c.relowner, 'USAGE'), \
                'forced', c.relforcerowsecurity, \
                'policies', (SELECT pg_catalog.jsonb_agg(p.polname::text ORDER BY p.polname) \
                               FROM pg_catalog.pg_policy p \
                              WHERE p.polrelid OPERATOR(pg_catalog.=) c.oid \
                                AND (0::pg_catalog.oid OPERATOR(pg_catalog.=) ANY (p.polroles) \
                                     OR EXISTS (SELECT 1 FROM pg_catalog.unnest(p.polroles) r(oid) \
                                                 WHERE pg_catalog.pg_has_role($2, r.oid, 'USAGE'))))) \
           FROM pg_catalog.pg_class c WHERE c.oid OPERATOR(pg_catalog.=) $1",
        &[relid.into(), role.into()],
    )?
    .unwrap_or(Value::Null);
    let table = facts["table"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| format!("with OID {}", relid.to_u32()));
    let role_name = facts["role"].as_str().unwrap_or_default();
    let role_ident = crate::namespace::quote_ident(role_name);
    let owns = facts["owns"].as_bool().unwrap_or(false);
    let policies: Vec<String> = facts["policies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str().map(|p| format!("\"{p}\"")))
        .collect();
    let purpose = PURPOSE.with(|p| p.get());
    let deciding = match policies.len() {
        0 => "no policy of the table applies to that role, so it sees no row at all".to_string(),
        1 => format!(
            "policy {} decides which of its rows that role sees",
            policies[0]
        ),
        _ => format!(
            "policies {} decide which of its rows that role sees",
            policies.join(", ")
        ),
    };
    let (detail, hint) = if owns {
        (
            format!(
                "The extension reads and changes {table} as its owner, role \"{role_name}\", which \
                 has neither BYPASSRLS nor superuser, and the table has FORCE ROW LEVEL SECURITY: \
                 {deciding}."
            ),
            format!(
                "Run ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY (its owner is then exempt from \
                 its policies, as by default), or ALTER ROLE {role_ident} BYPASSRLS."
            ),
        )
    } else {
        (
            format!(
                "The extension reads {table} as role \"{role_name}\", the owner of a table whose rows \
                 it selects through {table}; that role does not own {table} and has neither \
                 BYPASSRLS nor superuser: {deciding}."
            ),
            format!(
                "Give {table} the owner of the tables that reference it, or run ALTER ROLE \
                 {role_ident} BYPASSRLS."
            ),
        )
    };
    Ok(LcError::row_security_hides_rows(&table, purpose)
        .detail(detail)
        .hint(hint))
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use super::names;

    #[pg_test]
    fn a_name_counts_only_as_a_whole_name() {
        let sql = "author_id IN (SELECT p1.id FROM app.posts p1 WHERE p1.x = $1)";
        assert!(names(sql, "app.posts"));
        assert!(!names(sql, "app.post"));
        assert!(!names(sql, "pp.posts"));
        assert!(!names("SELECT 1 FROM app.posts_archive", "app.posts"));
        assert!(!names("SELECT 1 FROM myapp.posts", "app.posts"));
        assert!(!names("SELECT 1 FROM app.posts.x", "app.posts"));
        assert!(names("(app.posts)", "app.posts"));
        assert!(names("FROM app.\"Posts\" k", "app.\"Posts\""));
        assert!(names("app.posts", "app.posts"));
        assert!(!names("", "app.posts"));
        assert!(!names("app.posts", ""));
        assert!(names("FROM café.posts", "café.posts"));
        assert!(!names("FROM xcafé.posts", "café.posts"));
    }
}
