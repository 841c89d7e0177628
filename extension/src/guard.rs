//! The guards: what the triggers and event triggers decide.
//!
//! * row guard (`BEFORE UPDATE OR DELETE ... FOR EACH ROW`, `ENABLE ALWAYS`):
//!   refuses to change or remove a row a legal hold covers. Cascaded deletes
//!   run the child's triggers, so they are refused too; `ENABLE ALWAYS` keeps
//!   it firing under `session_replication_role = replica`.
//! * truncate guard (`BEFORE TRUNCATE`, per relation including partitions):
//!   refuses to empty a relation that holds a held row.
//! * soft delete (`BEFORE DELETE ... FOR EACH ROW`): turns a DELETE into
//!   setting the soft-delete column.
//! * DDL guard (event triggers): keeps guard triggers enabled and present,
//!   keeps registered columns in place, installs guards on new partitions,
//!   refuses DROP/DETACH of relations that may hold held rows.

use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::json;

use crate::audit::{self, Event};
use crate::cache;
use crate::datamap::{self, ROW_GUARD, SOFT_DELETE, TRUNCATE_GUARD};
use crate::error::{LcError, LcResult};
use crate::holds;
use crate::privilege;

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

const EVENT_OPMASK: u32 = pg_sys::TRIGGER_EVENT_OPMASK;

fn op_name(event: u32) -> &'static str {
    match event & EVENT_OPMASK {
        x if x == pg_sys::TRIGGER_EVENT_DELETE => "delete",
        x if x == pg_sys::TRIGGER_EVENT_UPDATE => "update",
        x if x == pg_sys::TRIGGER_EVENT_TRUNCATE => "truncate",
        _ => "insert",
    }
}

/// Whether a hold is in force for any scope the registered relation maps:
/// the `WHEN` condition of the row guard. With no such hold the row guard is
/// not even queued, so an unheld table pays one cache lookup per row.
pub fn hold_in_force(registered: pg_sys::Oid) -> LcResult<bool> {
    match cache::table_guard(registered)? {
        Some(guard) => Ok(!cache::table_is_unheld(&guard)?),
        None => Ok(false),
    }
}

/// The held scope ids of one scope column, in the column's own binary form,
/// so that the row guard's condition compares keys without converting them.
/// Few holds are in force at a time: the ids are kept sorted and searched
/// linearly, or by bisection when there are many, which is cheaper than
/// hashing the key of every row.
enum KeySet {
    /// No hold in force for this scope type.
    Empty,
    Ints(Vec<i64>),
    Uuids(Vec<[u8; 16]>),
    Texts(Vec<Box<[u8]>>),
    /// A type compared only as text by the guard itself: always "maybe".
    Unknown,
}

/// Up to this many ids a linear search beats bisection.
const LINEAR_SEARCH_MAX: usize = 16;

fn sorted_set<T: Ord>(mut ids: Vec<T>) -> Vec<T> {
    ids.sort_unstable();
    ids.dedup();
    ids
}

fn set_contains<T: Ord + ?Sized, E: std::borrow::Borrow<T> + Ord>(ids: &[E], key: &T) -> bool {
    if ids.len() <= LINEAR_SEARCH_MAX {
        ids.iter().any(|id| id.borrow() == key)
    } else {
        ids.binary_search_by(|id| id.borrow().cmp(key)).is_ok()
    }
}

/// What the row guard's condition knows about one relation, valid while the
/// cache generations it was built under are current.
struct RowMemo {
    relid: pg_sys::Oid,
    gens: (u64, u64),
    signature: Option<i64>,
    keysets: Vec<KeySet>,
    any: bool,
}

/// The memo of the relation the condition was last evaluated for: owned
/// (built by `Box::into_raw`, freed when replaced). A backend runs one
/// thread; a static rather than a thread-local keeps the per-row access to
/// an ordinary load (a thread-local in a shared library costs a call).
static ROW_MEMO: AtomicPtr<RowMemo> = AtomicPtr::new(std::ptr::null_mut());

fn build_row_memo(relid: pg_sys::Oid, gens: (u64, u64)) -> LcResult<RowMemo> {
    let Some(guard) = cache::table_guard(relid)? else {
        return Ok(RowMemo {
            relid,
            gens,
            signature: None,
            keysets: Vec::new(),
            any: false,
        });
    };
    let holds = cache::current_holds()?;
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let mut any = false;
    let keysets = guard
        .scopes
        .iter()
        .map(|scope| {
            let ids: Vec<&str> = holds
                .by_scope
                .get(&scope.scope_type)
                .into_iter()
                .flatten()
                .filter(|h| h.in_force_at(now))
                .map(|h| h.scope_id.as_str())
                .collect();
            if ids.is_empty() {
                return KeySet::Empty;
            }
            any = true;
            match scope.type_oid {
                t if t == pg_sys::INT2OID || t == pg_sys::INT4OID || t == pg_sys::INT8OID => {
                    KeySet::Ints(sorted_set(
                        ids.iter()
                            .filter_map(|s| s.trim().parse::<i64>().ok())
                            .collect(),
                    ))
                }
                t if t == pg_sys::UUIDOID => KeySet::Uuids(sorted_set(
                    ids.iter().filter_map(|s| holds::uuid_bytes(s)).collect(),
                )),
                t if t == pg_sys::TEXTOID || t == pg_sys::VARCHAROID => KeySet::Texts(sorted_set(
                    ids.iter().map(|s| s.as_bytes().into()).collect(),
                )),
                _ => KeySet::Unknown,
            }
        })
        .collect();
    Ok(RowMemo {
        relid,
        gens,
        signature: Some(cache::signature_digest(&guard.signature)),
        keysets,
        any,
    })
}

/// Whether `key` (not null) is among the held ids of `set`. `None` when
/// the key is a compressed or out-of-line text and `expand` is false.
///
/// # Safety
/// The datum must be of the type of the set's scope column.
unsafe fn keyset_hit(set: &KeySet, key: pg_sys::Datum, expand: bool) -> Option<bool> {
    Some(match set {
        KeySet::Empty => false,
        KeySet::Unknown => true,
        KeySet::Ints(ids) => set_contains(ids, &(key.value() as i64)),
        KeySet::Uuids(ids) => set_contains(ids, &*key.cast_mut_ptr::<[u8; 16]>()),
        KeySet::Texts(ids) => {
            let mut v = key.cast_mut_ptr::<pg_sys::varlena>();
            if pgrx::varlena::varatt_is_1b_e(v) || pgrx::varlena::varatt_is_4b_c(v) {
                if !expand {
                    return None;
                }
                v = pg_sys::pg_detoast_datum_packed(v);
            }
            let bytes = std::slice::from_raw_parts(
                pgrx::varlena::vardata_any(v) as *const u8,
                pgrx::varlena::varsize_any_exhdr(v),
            );
            set_contains::<[u8], _>(ids, bytes)
        }
    })
}

/// Answer from a memo: `None` when a key needs PostgreSQL to read it and
/// `expand` is false.
///
/// # Safety
/// Each key datum must be of the type of its scope column.
unsafe fn answer(
    memo: &RowMemo,
    signature: i64,
    keys: &[pg_sys::NullableDatum],
    expand: bool,
) -> Option<bool> {
    if !memo.any {
        return Some(false);
    }
    if memo.signature != Some(signature) || memo.keysets.len() != keys.len() {
        return Some(true);
    }
    for (set, key) in memo.keysets.iter().zip(keys) {
        if !key.isnull && keyset_hit(set, key.value, expand)? {
            return Some(true);
        }
    }
    Some(false)
}

/// The row guard's `WHEN` condition, per row, when this backend already
/// knows the relation's held ids under the current cache generations:
/// could this old row be held? `None` when the memo must be (re)built, or a
/// key needs PostgreSQL to read it (a compressed or out-of-line text);
/// [`row_may_be_held`] answers then.
///
/// It runs for every row an UPDATE or DELETE of a guarded table touches,
/// outside the error boundary: it never calls into PostgreSQL, never
/// allocates and cannot panic.
///
/// # Safety
/// Each key datum must be of the type of its scope column.
pub unsafe fn row_may_be_held_memoized(
    registered: pg_sys::Oid,
    signature: i64,
    keys: &[pg_sys::NullableDatum],
) -> Option<bool> {
    let memo = ROW_MEMO.load(Ordering::Relaxed);
    if memo.is_null() {
        return None;
    }
    // SAFETY: owned by ROW_MEMO and only freed when replaced, in
    // `row_may_be_held`, never while this reference is alive.
    let memo = &*memo;
    if memo.relid != registered || memo.gens != cache::generations_unchecked() {
        return None;
    }
    answer(memo, signature, keys, false)
}

/// The row guard's `WHEN` condition: could this old row be held? `keys` are
/// the row's scope-column values (datum, is-null), in the order `signature`
/// names. False means certainly not held; true queues the row guard, which
/// decides with tenant and expiry. A signature that no longer matches the
/// data map (the trigger predates a data-map change) answers true.
///
/// Builds this relation's memo when needed; [`row_may_be_held_memoized`]
/// answers every other row.
///
/// # Safety
/// Each key datum must be of the type of its scope column.
pub unsafe fn row_may_be_held(
    registered: pg_sys::Oid,
    signature: i64,
    keys: &[pg_sys::NullableDatum],
) -> LcResult<bool> {
    let gens = cache::generations();
    let mut memo = ROW_MEMO.load(Ordering::Relaxed);
    // SAFETY: see `row_may_be_held_memoized`.
    if memo.is_null() || (*memo).relid != registered || (*memo).gens != gens {
        let fresh = Box::into_raw(Box::new(build_row_memo(registered, gens)?));
        let old = ROW_MEMO.swap(fresh, Ordering::Relaxed);
        if !old.is_null() {
            drop(Box::from_raw(old));
        }
        memo = fresh;
    }
    Ok(answer(&*memo, signature, keys, true).unwrap_or(true))
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
    let scopes: Vec<(String, String)> = guard
        .scopes
        .iter()
        .map(|s| (s.scope_type.clone(), s.column.clone()))
        .collect();
    let tenant = guard.tenant.as_ref().map(|t| t.column.as_str());
    if let Some(h) = holds::hold_covering_any_row(&guard.name, &scopes, tenant)? {
        return Err(LcError::held_table_truncate(&guard.name)
            .detail(format!(
                "Legal hold {} ({}) placed by {}: {}",
                h.id,
                h.describe_scope(),
                h.created_by,
                h.reason
            ))
            .hint(format!(
                "Delete the rows that are not held with DELETE instead, or {}",
                lower_first(&holds::release_hint(&h))
            )));
    }
    Ok(())
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
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
    let Some((column, attnum, type_oid)) = &guard.soft_delete else {
        return Ok(td.tg_trigtuple);
    };
    // A held row is refused as the DELETE it is, before it is turned into
    // an UPDATE.
    if let Some(h) = holds::hold_covering_row(&guard, td.tg_trigtuple, (*td.tg_relation).rd_att)? {
        return Err(holds::row_refusal("delete", &guard, &h));
    }
    let mut isnull = false;
    let current = pg_sys::heap_getattr(
        td.tg_trigtuple,
        *attnum as i32,
        (*td.tg_relation).rd_att,
        &mut isnull,
    );
    let is_bool = *type_oid == pg_sys::BOOLOID;
    let value = if is_bool {
        "true"
    } else if *type_oid == pg_sys::DATEOID {
        "CURRENT_DATE"
    } else {
        "pg_catalog.statement_timestamp()"
    };
    // Already soft-deleted: keep the first deletion.
    let already = !isnull && (!is_bool || current.value() != 0);
    if !already {
        let tid = (*td.tg_trigtuple).t_self;
        let block = ((tid.ip_blkid.bi_hi as u32) << 16) | tid.ip_blkid.bi_lo as u32;
        let ctid = format!("({},{})", block, tid.ip_posid);
        Spi::run_with_args(
            &format!(
                "UPDATE ONLY {} SET {} = {value} WHERE ctid = $1::tid",
                guard.name,
                holds::quote_ident(column)
            ),
            &[ctid.as_str().into()],
        )?;
    }
    Ok(std::ptr::null_mut())
}

/// Append-only: refuses UPDATE, DELETE and TRUNCATE of the audit log.
pub fn audit_append_only(event: u32) -> LcResult<()> {
    if internal_write_active() {
        return Ok(());
    }
    Err(LcError::audit_log_append_only(op_name(event)))
}

/// Legal holds are records: refuses UPDATE, DELETE, TRUNCATE outside
/// `release_hold`.
pub fn holds_immutable(event: u32) -> LcResult<()> {
    if internal_write_active() {
        return Ok(());
    }
    Err(LcError::legal_hold_immutable(op_name(event)))
}

// ----- event triggers ---------------------------------------------------------

struct GuardState {
    tgname: String,
    enabled: char,
}

fn guard_triggers(relid: pg_sys::Oid) -> LcResult<Vec<GuardState>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(
            "SELECT t.tgname::text, t.tgenabled::text FROM pg_catalog.pg_trigger t \
               JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid \
               JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
              WHERE t.tgrelid = $1 AND n.nspname = 'lifecycle' \
                AND p.proname IN ('guard_row', 'guard_truncate', 'soft_delete_row') \
              ORDER BY t.tgname",
            None,
            &[relid.into()],
        )? {
            out.push(GuardState {
                tgname: row.get::<String>(1)?.unwrap_or_default(),
                enabled: row
                    .get::<String>(2)?
                    .and_then(|s| s.chars().next())
                    .unwrap_or('?'),
            });
        }
        Ok(out)
    })
}

/// Registered relation a relation belongs to (itself or a partition
/// ancestor), read from the catalog (not the cache: this runs in the middle
/// of DDL).
fn registered_root(relid: pg_sys::Oid) -> LcResult<Option<pg_sys::Oid>> {
    privilege::as_extension_owner(|| {
        crate::spi::one::<pg_sys::Oid>(cache::REGISTERED_ROOT_SQL, &[relid.into()])
    })
}

fn rel_name(relid: pg_sys::Oid) -> LcResult<String> {
    Ok(
        crate::spi::one::<String>("SELECT $1::regclass::text", &[relid.into()])?
            .unwrap_or_default(),
    )
}

fn record_superuser_bypass(event_type: &str, table: &str, trigger: &str) -> LcResult<()> {
    let me = privilege::current_user_name();
    pgrx::warning!(
        "superuser \"{me}\" changed lifecycle guard \"{trigger}\" on {table}; the change is recorded in the audit log"
    );
    audit::record(Event {
        event_type,
        actor: Some(&me),
        details: Some(json!({ "table": table, "trigger": trigger })),
        ..Event::default()
    })?;
    Ok(())
}

/// ddl_command_end: check every relation the command touched.
pub fn ddl_command_end() -> LcResult<()> {
    if internal_write_active() {
        return Ok(());
    }
    // Relations touched: tables directly, and the tables of touched triggers.
    let touched: Vec<(pg_sys::Oid, String)> = Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(
            "SELECT DISTINCT CASE WHEN d.classid = 'pg_catalog.pg_trigger'::regclass \
                                  THEN t.tgrelid ELSE d.objid END, d.command_tag \
               FROM pg_catalog.pg_event_trigger_ddl_commands() d \
               LEFT JOIN pg_catalog.pg_trigger t \
                      ON d.classid = 'pg_catalog.pg_trigger'::regclass AND t.oid = d.objid \
              WHERE d.classid IN ('pg_catalog.pg_class'::regclass, 'pg_catalog.pg_trigger'::regclass)",
            None,
            &[],
        )? {
            if let Some(oid) = row.get::<pg_sys::Oid>(1)? {
                out.push((oid, row.get::<String>(2)?.unwrap_or_default()));
            }
        }
        Ok::<_, LcError>(out)
    })?;
    for (relid, tag) in touched {
        let is_table = crate::spi::one::<bool>(
            "SELECT relkind IN ('r', 'p') FROM pg_catalog.pg_class WHERE oid = $1",
            &[relid.into()],
        )?
        .unwrap_or(false);
        if !is_table {
            continue;
        }
        check_relation(relid, &tag)?;
    }
    Ok(())
}

fn check_relation(relid: pg_sys::Oid, tag: &str) -> LcResult<()> {
    let Some(root) = registered_root(relid)? else {
        return Ok(());
    };
    let name = rel_name(relid)?;
    let is_root = root == relid;

    // 0. Inheritance children of a registered table (CREATE TABLE ...
    //    INHERITS, ALTER TABLE ... INHERIT) would not be guarded.
    if !is_root {
        let is_partition = crate::spi::one::<bool>(
            "SELECT relispartition FROM pg_catalog.pg_class WHERE oid = $1",
            &[relid.into()],
        )?
        .unwrap_or(false);
        if !is_partition {
            let root_name = rel_name(root)?;
            return Err(LcError::feature_not_supported(format!(
                "table {name} cannot inherit from registered table {root_name}"
            ))
            .detail(format!(
                "Statements on {root_name} would reach the rows of {name}, but PostgreSQL does not give inheritance children the parent's guard triggers."
            ))
            .hint("Create it as a partition (PARTITION OF) of a partitioned table, or as a table of its own and register it."));
        }
    }

    // 1. Registered columns must still exist.
    if is_root {
        let missing = privilege::as_extension_owner(|| {
            crate::spi::two::<String, String>(
                "SELECT c.column_name::text, c.role FROM ( \
                    SELECT column_name, 'scope column for ' || scope_type AS role \
                      FROM lifecycle.scope_columns WHERE relation = $1 \
                    UNION ALL SELECT soft_delete_column, 'soft-delete column' \
                      FROM lifecycle.tables WHERE relation = $1 AND soft_delete_column IS NOT NULL \
                    UNION ALL SELECT role_column, 'membership role column' \
                      FROM lifecycle.memberships WHERE relation = $1 \
                    UNION ALL SELECT column_name, 'column with rule ' || rule \
                      FROM lifecycle.column_rules WHERE relation = $1) c \
                  WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
                                     WHERE a.attrelid = $1 AND a.attname = c.column_name \
                                       AND NOT a.attisdropped) \
                  LIMIT 1",
                &[relid.into()],
            )
        })?;
        if let (Some(col), Some(role)) = missing {
            return Err(LcError::data_map_column_in_use(&name, &col, &role));
        }
    }

    // 2. Guard triggers: present and ENABLE ALWAYS.
    let soft_delete = privilege::as_extension_owner(|| {
        Ok(crate::spi::one::<bool>(
            "SELECT soft_delete_column IS NOT NULL FROM lifecycle.tables WHERE relation = $1",
            &[root.into()],
        )?
        .unwrap_or(false))
    })?;
    let states = guard_triggers(relid)?;
    let mut expected = vec![ROW_GUARD, TRUNCATE_GUARD];
    if soft_delete {
        expected.push(SOFT_DELETE);
    }
    for st in &states {
        if !expected.contains(&st.tgname.as_str()) {
            // A guard trigger under another name: it was renamed.
            if !privilege::is_superuser() {
                let old = expected
                    .iter()
                    .find(|e| !states.iter().any(|s| s.tgname == **e))
                    .copied()
                    .unwrap_or(ROW_GUARD);
                return Err(LcError::guard_tampering("rename", old, &name)
                    .detail("Guard triggers keep their names so that they can be checked.")
                    .hint("Leave lifecycle guard triggers as they are; unregister the table to remove them."));
            }
            record_superuser_bypass("guard.renamed", &name, &st.tgname)?;
        } else if st.enabled != 'A' {
            if !privilege::is_superuser() {
                let action = if st.enabled == 'D' {
                    "disable"
                } else {
                    "change the firing of"
                };
                return Err(LcError::guard_tampering(action, &st.tgname, &name)
                    .detail(format!(
                        "Guard triggers must stay ENABLE ALWAYS; the command set them to '{}'.",
                        st.enabled
                    ))
                    .hint("Leave lifecycle guard triggers enabled; they refuse only what legal holds forbid."));
            }
            record_superuser_bypass("guard.disabled", &name, &st.tgname)?;
        }
    }
    // A new partition (CREATE TABLE ... PARTITION OF, ATTACH PARTITION)
    // gets the row triggers cloned, but statement triggers must be added.
    let has = |n: &str| states.iter().any(|s| s.tgname == n);
    if !has(TRUNCATE_GUARD) && (tag == "CREATE TABLE" || tag == "ALTER TABLE") {
        privilege::as_extension_owner(|| datamap::install_truncate_guard(&name))?;
    }
    if is_root {
        // Partitions attached by this command.
        for part in datamap::partition_tree(relid)?.iter().skip(1) {
            if !datamap::trigger_exists(part, TRUNCATE_GUARD)? {
                privilege::as_extension_owner(|| datamap::install_truncate_guard(part))?;
            }
        }
        check_detached(root, &name)?;
    }
    Ok(())
}

/// Relations that still carry a truncate guard but are no longer part of a
/// registered tree were just detached: refuse if they hold held rows,
/// otherwise remove the leftover guard.
fn check_detached(root: pg_sys::Oid, root_name: &str) -> LcResult<()> {
    let orphans: Vec<(pg_sys::Oid, String)> = Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(
            "SELECT t.tgrelid, t.tgrelid::regclass::text FROM pg_catalog.pg_trigger t \
              WHERE t.tgname = $1::name \
                AND NOT EXISTS (WITH RECURSIVE up(relid) AS ( \
                                    SELECT t.tgrelid UNION \
                                    SELECT i.inhparent FROM pg_catalog.pg_inherits i JOIN up ON i.inhrelid = up.relid) \
                                SELECT 1 FROM up WHERE up.relid IN (SELECT relation FROM lifecycle.registered_relations))",
            None,
            &[TRUNCATE_GUARD.into()],
        )? {
            out.push((
                row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::Oid::INVALID),
                row.get::<String>(2)?.unwrap_or_default(),
            ));
        }
        Ok::<_, LcError>(out)
    })?;
    if orphans.is_empty() {
        return Ok(());
    }
    let scopes = datamap::scope_columns(root)?;
    let tenant = scopes
        .iter()
        .find(|(t, _)| t == "tenant")
        .map(|(_, c)| c.clone());
    for (_, orphan) in orphans {
        for part in datamap::partition_tree_of_name(&orphan)? {
            if let Some(h) = holds::hold_covering_any_row(&part, &scopes, tenant.as_deref())? {
                return Err(LcError::held_table_drop("detach", &part)
                    .detail(format!(
                        "It is a partition of {root_name}; legal hold {} ({}) placed by {}: {}",
                        h.id,
                        h.describe_scope(),
                        h.created_by,
                        h.reason
                    ))
                    .hint(holds::release_hint(&h)));
            }
        }
        privilege::as_extension_owner(|| {
            with_internal_write(|| {
                for part in datamap::partition_tree_of_name(&orphan)? {
                    Spi::run(&format!(
                        "DROP TRIGGER IF EXISTS {TRUNCATE_GUARD} ON {part}"
                    ))?;
                }
                Ok(())
            })
        })?;
    }
    Ok(())
}

/// sql_drop: guard triggers and registered tables.
pub fn sql_drop() -> LcResult<()> {
    if internal_write_active() {
        return Ok(());
    }
    struct Dropped {
        objid: pg_sys::Oid,
        object_type: String,
        identity: String,
        name: String,
    }
    let dropped: Vec<Dropped> = Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(
            "SELECT objid, object_type, object_identity, coalesce(object_name, '') \
               FROM pg_catalog.pg_event_trigger_dropped_objects() \
              WHERE object_type IN ('table', 'trigger', 'extension')",
            None,
            &[],
        )? {
            out.push(Dropped {
                objid: row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::Oid::INVALID),
                object_type: row.get::<String>(2)?.unwrap_or_default(),
                identity: row.get::<String>(3)?.unwrap_or_default(),
                name: row.get::<String>(4)?.unwrap_or_default(),
            });
        }
        Ok::<_, LcError>(out)
    })?;
    if dropped
        .iter()
        .any(|d| d.object_type == "extension" && d.name == "lifecycle")
    {
        return Ok(());
    }
    let dropped_tables: Vec<&Dropped> = dropped
        .iter()
        .filter(|d| d.object_type == "table")
        .collect();
    // Tables that carried a guard: registered ones, and partitions whose
    // truncate guard is dropped with them.
    for t in &dropped_tables {
        let registered = privilege::as_extension_owner(|| {
            Ok(crate::spi::one::<bool>(
                "SELECT EXISTS (SELECT 1 FROM lifecycle.registered_relations WHERE relation::oid = $1)",
                &[t.objid.into()],
            )?
            .unwrap_or(false))
        })?;
        let guarded_partition = dropped.iter().any(|d| {
            d.object_type == "trigger"
                && d.identity == format!("{TRUNCATE_GUARD} on {}", t.identity)
        });
        if !registered && !guarded_partition {
            continue;
        }
        let scope_types: Vec<String> = if registered {
            datamap::scope_columns(t.objid)?
                .into_iter()
                .map(|(s, _)| s)
                .collect()
        } else {
            datamap::scope_types()?
        };
        for st in scope_types {
            if let Some(h) = cache::holds_for(&st)?.into_iter().next() {
                return Err(LcError::held_table_drop("drop", &t.identity)
                    .detail(format!(
                        "Its rows can no longer be checked, and legal hold {} ({}) placed by {} covers {} rows: {}",
                        h.id,
                        h.describe_scope(),
                        h.created_by,
                        st,
                        h.reason
                    ))
                    .hint(format!(
                        "Delete the rows that are not held first, or {}",
                        lower_first(&holds::release_hint(&h))
                    )));
            }
        }
        if registered {
            datamap::forget(t.objid)?;
            let me = privilege::current_user_name();
            audit::record(Event {
                event_type: "data_map.table_dropped",
                actor: Some(&me),
                details: Some(json!({ "table": t.identity })),
                ..Event::default()
            })?;
        }
    }
    // Guard triggers dropped on their own (the table stays).
    for d in dropped.iter().filter(|d| d.object_type == "trigger") {
        let Some((tg, table)) = d.identity.split_once(" on ") else {
            continue;
        };
        if ![ROW_GUARD, TRUNCATE_GUARD, SOFT_DELETE].contains(&tg) {
            continue;
        }
        if dropped_tables.iter().any(|t| t.identity == table) {
            continue;
        }
        let relid = crate::spi::one::<pg_sys::Oid>(
            "SELECT pg_catalog.to_regclass($1)::oid",
            &[table.into()],
        )?;
        let Some(relid) = relid else { continue };
        if registered_root(relid)?.is_none() {
            continue;
        }
        if !privilege::is_superuser() {
            return Err(LcError::guard_tampering("drop", tg, table)
                .detail("Guard triggers enforce legal holds on registered tables.")
                .hint(
                    "Unregister the table with lifecycle.unregister_table() to remove its guards.",
                ));
        }
        record_superuser_bypass("guard.dropped", table, tg)?;
    }
    Ok(())
}
