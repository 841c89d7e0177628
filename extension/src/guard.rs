//! The guards on rows and tables: what the triggers decide.
//!
//! * row guard (`AFTER UPDATE OR DELETE ... FOR EACH ROW WHEN
//!   (lifecycle.row_may_be_held(...))`, `ENABLE ALWAYS`): refuses the
//!   statement when it changed or removed a row a legal hold covers.
//!   Cascaded deletes run the child's triggers, so they are refused too;
//!   `ENABLE ALWAYS` keeps it firing under `session_replication_role =
//!   replica`. Its `WHEN` condition is answered here too.
//! * truncate guard (`BEFORE TRUNCATE`, per relation including partitions):
//!   refuses to empty a relation that holds a held row.
//! * soft delete (`BEFORE DELETE ... FOR EACH ROW`): turns a DELETE into
//!   setting the soft-delete column.
//! * the extension's own tables: append-only audit log, immutable holds, and
//!   writes only from the extension's functions.
//!
//! The event triggers (DDL) are in `ddl`.

use std::cell::Cell;

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::cache;
use crate::error::{LcError, LcResult};
use crate::holds;
use crate::privilege;

const EVENT_OPMASK: u32 = pg_sys::TRIGGER_EVENT_OPMASK;

fn op_name(event: u32) -> &'static str {
    match event & EVENT_OPMASK {
        x if x == pg_sys::TRIGGER_EVENT_DELETE => "delete",
        x if x == pg_sys::TRIGGER_EVENT_UPDATE => "update",
        x if x == pg_sys::TRIGGER_EVENT_TRUNCATE => "truncate",
        _ => "insert",
    }
}

/// Row guard (`AFTER UPDATE OR DELETE ... FOR EACH ROW`): refuses the
/// statement when the old row is covered by a hold in force.
///
/// # Safety
/// `td` must be the TriggerData of a row-level UPDATE or DELETE trigger.
pub unsafe fn guard_row(td: &pg_sys::TriggerData) -> LcResult<()> {
    let relid = (*td.tg_relation).rd_id;
    let Some(guard) = cache::table_guard(relid)? else {
        return Ok(());
    };
    if let Some(h) = holds::hold_covering_row(&guard, td.tg_trigtuple, (*td.tg_relation).rd_att)? {
        return Err(holds::row_refusal(op_name(td.tg_event), &guard, &h));
    }
    Ok(())
}

/// Truncate guard.
///
/// # Safety
/// `td` must be the TriggerData of a statement-level BEFORE TRUNCATE trigger.
pub unsafe fn guard_truncate(td: &pg_sys::TriggerData) -> LcResult<()> {
    let relid = (*td.tg_relation).rd_id;
    let Some(guard) = cache::table_guard(relid)? else {
        return Ok(());
    };
    if cache::table_is_unheld(&guard)? {
        return Ok(());
    }
    let relkind = (*(*td.tg_relation).rd_rel).relkind as u8;
    if relkind == pg_sys::RELKIND_PARTITIONED_TABLE {
        // No rows of its own; each partition's guard checks its rows.
        return Ok(());
    }
    if let Some(h) = holds::hold_covering_any_row(relid, guard.registered)? {
        return Err(LcError::held_table_truncate(&guard.name)
            .blocked_by(&h.id)
            .detail(holds::hold_detail(&h))
            .hint(format!(
                "Delete the rows that are not held with DELETE instead, or {}",
                crate::error::lower_first(&holds::release_hint(&h))
            )));
    }
    Ok(())
}

thread_local! {
    /// Set while the erasure engine removes soft-deleted rows for real.
    static HARD_DELETE: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` with soft delete switched off (DELETE removes rows for real).
pub fn with_hard_delete<R>(f: impl FnOnce() -> LcResult<R>) -> LcResult<R> {
    let prev = HARD_DELETE.with(|c| c.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    HARD_DELETE.with(|c| c.set(prev));
    match r {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// Soft delete: set the column, keep the row. Returns the tuple to return
/// (NULL to skip the DELETE).
///
/// # Safety
/// `td` must be the TriggerData of a row-level BEFORE DELETE trigger.
pub unsafe fn soft_delete_row(td: &pg_sys::TriggerData) -> LcResult<pg_sys::HeapTuple> {
    if HARD_DELETE.with(|c| c.get()) {
        return Ok(td.tg_trigtuple);
    }
    let relid = (*td.tg_relation).rd_id;
    let Some(guard) = cache::table_guard(relid)? else {
        return Ok(td.tg_trigtuple);
    };
    let Some((column, _, type_oid)) = &guard.soft_delete else {
        return Ok(td.tg_trigtuple);
    };
    // A held row is refused as the DELETE it is, before it is turned into
    // an UPDATE.
    if let Some(h) = holds::hold_covering_row(&guard, td.tg_trigtuple, (*td.tg_relation).rd_att)? {
        return Err(holds::row_refusal("delete", &guard, &h));
    }
    // The value that marks the row deleted, and the condition that it is
    // still live (an earlier deletion is kept): a nullable time or date, a
    // boolean flag, or milliseconds since the epoch (0 or NULL: live).
    let base = crate::namespace::base_type(*type_oid);
    let c = crate::namespace::quote_ident(column);
    let (value, live) = if base == pg_sys::BOOLOID {
        ("true".to_string(), format!("{c} IS NOT TRUE"))
    } else if base == pg_sys::DATEOID {
        ("CURRENT_DATE".to_string(), format!("{c} IS NULL"))
    } else if [pg_sys::TIMESTAMPTZOID, pg_sys::TIMESTAMPOID].contains(&base) {
        (
            "pg_catalog.statement_timestamp()".to_string(),
            format!("{c} IS NULL"),
        )
    } else {
        (
            "pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.statement_timestamp()) \
               OPERATOR(pg_catalog.*) 1000)"
                .to_string(),
            format!("COALESCE({c} OPERATOR(pg_catalog.=) 0, true)"),
        )
    };
    let tid = (*td.tg_trigtuple).t_self;
    let block = ((tid.ip_blkid.bi_hi as u32) << 16) | tid.ip_blkid.bi_lo as u32;
    let ctid = format!("({},{})", block, tid.ip_posid);
    // The caller's own DELETE, turned into an UPDATE: it runs as the
    // caller and under the caller's search path, so the application's
    // triggers see what they would see for the caller's own UPDATE. The
    // text itself is fully qualified.
    let sql = format!(
        "UPDATE ONLY {} SET {c} = {value} WHERE ctid OPERATOR(pg_catalog.=) $1::pg_catalog.tid AND {live}",
        guard.name,
    );
    crate::namespace::with_caller_path(|| {
        Spi::run_with_args(&sql, &[ctid.as_str().into()])?;
        Ok(())
    })?;
    Ok(std::ptr::null_mut())
}

/// Append-only: refuses UPDATE, DELETE and TRUNCATE of the audit log.
pub fn audit_append_only(event: u32) -> LcResult<()> {
    if privilege::internal_write_active() {
        return Ok(());
    }
    Err(LcError::audit_log_append_only(op_name(event)))
}

/// The guard of the extension's own tables (a statement trigger on each):
/// only the extension's functions write them, and superusers (whose direct
/// writes are how pg_restore reloads them, and who could switch any trigger
/// off anyway). Privileges granted on the tables do not matter.
///
/// # Safety
/// `td` must be the TriggerData of a statement-level trigger.
pub unsafe fn own_table_write(td: &pg_sys::TriggerData) -> LcResult<()> {
    if privilege::extension_acting()
        || privilege::internal_write_active()
        || privilege::is_superuser()
    {
        return Ok(());
    }
    let relid = (*td.tg_relation).rd_id;
    let table = crate::spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[relid.into()])?
        .unwrap_or_default();
    let op = match op_name(td.tg_event) {
        "insert" => "insert into",
        "delete" => "delete from",
        other => other,
    };
    let hint = match table.trim_start_matches("lifecycle.") {
        "legal_holds" => "Place and release holds with lifecycle.place_hold() and lifecycle.release_hold().",
        "audit_log" | "audit_chains" => "Record events with lifecycle.record_event(); the log is append-only.",
        "jobs" | "retention" | "external_steps" => "Use lifecycle.request_export(), request_erasure(), request_purge(), approve(), reject(), cancel() and the worker functions.",
        _ => "Change the data map with lifecycle.register_subject(), register_tenant(), register_table(), register_membership(), register_scope(), set_column_rule() and unregister_table().",
    };
    Err(LcError::extension_table_write(op, &table)
        .detail(format!(
            "Role \"{}\" wrote the table directly; whatever was granted on the extension's tables, only its functions write them.",
            privilege::current_user_name()
        ))
        .hint(hint))
}

/// Legal holds are records: refuses UPDATE, DELETE, TRUNCATE outside
/// `release_hold`.
pub fn holds_immutable(event: u32) -> LcResult<()> {
    if privilege::internal_write_active() {
        return Ok(());
    }
    Err(LcError::legal_hold_immutable(op_name(event)))
}
