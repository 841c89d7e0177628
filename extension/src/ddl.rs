//! The DDL guard: what the event triggers decide.
//!
//! * `ddl_command_end` (`lifecycle_ddl_guard`): keeps guard triggers
//!   enabled, present and named; keeps registered columns in place; installs
//!   the truncate guard on new partitions; refuses DETACH of partitions with
//!   held rows, inheritance children of registered tables, DDL that would
//!   rewrite or endanger the values of held rows (a column's type changed, the
//!   table made unlogged, an enum label renamed), and hooks into the
//!   extension's own tables (triggers on them, foreign keys to them) by roles
//!   that are not superusers.
//! * `sql_drop` (`lifecycle_drop_guard`): refuses dropping tables and
//!   columns that may hold held rows, and guard triggers; forgets dropped
//!   registered tables.
//!
//! Both run after the command did its work, holding its locks: a refusal
//! rolls the whole statement back, and no hold can be placed in between
//! (`place_hold` takes a `SHARE` lock on every relation of its scope).

use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::json;

use crate::audit::{self, Event};
use crate::cache;
use crate::cache::Hold;
use crate::datamap::{self, ROW_GUARD, SOFT_DELETE, TRUNCATE_GUARD};
use crate::error::lower_first;
use crate::error::{LcError, LcResult};
use crate::holds;
use crate::privilege;
use crate::privilege::{internal_write_active, with_internal_write};
use lifecycle_core::events;

struct GuardState {
    tgname: String,
    enabled: char,
}

fn guard_triggers(relid: pg_sys::Oid) -> LcResult<Vec<GuardState>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(
            "SELECT t.tgname::text, t.tgenabled::text FROM pg_catalog.pg_trigger t \
               JOIN pg_catalog.pg_proc p ON p.oid OPERATOR(pg_catalog.=) t.tgfoid \
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace \
              WHERE t.tgrelid OPERATOR(pg_catalog.=) $1 \
                AND n.nspname OPERATOR(pg_catalog.=) 'lifecycle' \
                AND p.proname OPERATOR(pg_catalog.=) ANY ('{guard_row,guard_truncate,soft_delete_row}') \
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
        crate::spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[relid.into()])?
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

/// Whether the extension's own tables may be hooked into by the current
/// role: only by the extension itself and by superusers.
fn may_touch_own_tables() -> bool {
    privilege::extension_acting() || privilege::is_superuser()
}

/// What the statement's parse tree tells the guards.
#[derive(Default)]
struct Statement {
    /// `CREATE TABLE ... PARTITION OF` or `ALTER TABLE ... ATTACH PARTITION`:
    /// new partitions need their own truncate guard. (Only then: a restore
    /// replays every guard trigger of the dump itself.)
    adds_partition: bool,
    /// `ALTER TABLE ... DETACH PARTITION` (or its `FINALIZE`): the detached
    /// tree keeps the truncate guards the registered tree gave it. Only
    /// then are leftover guards looked for: at any other time a guard
    /// outside every registered tree may belong to a registration this
    /// session cannot see yet (a parallel restore loads the data map in
    /// another session while it creates the tables' triggers).
    detaches_partition: bool,
    /// `ALTER TABLE` subcommands that rewrite or endanger the values of
    /// existing rows: (what, column).
    endangering: Vec<(Endangering, Option<String>)>,
    /// `ALTER TYPE ... RENAME VALUE`.
    renames_enum_value: bool,
    /// `GRANT` (on anything: the command does not report its objects).
    grants: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Endangering {
    /// `ALTER COLUMN ... TYPE` (with or without `USING`): every value is
    /// recomputed, without row triggers.
    ColumnType,
    /// `SET UNLOGGED`: the rows are lost in a crash.
    Unlogged,
}

/// Pointers in a PostgreSQL `List`.
///
/// # Safety
/// `list` must be NIL or a valid pointer list.
unsafe fn list_ptrs(list: *mut pg_sys::List) -> Vec<*mut std::ffi::c_void> {
    if list.is_null() {
        return Vec::new();
    }
    let n = (*list).length.max(0) as usize;
    (0..n)
        .map(|i| (*(*list).elements.add(i)).ptr_value)
        .collect()
}

/// # Safety
/// `tree` must be NULL or the parse tree of the command being reported.
unsafe fn read_statement(tree: *mut pg_sys::Node) -> Statement {
    let mut st = Statement::default();
    if tree.is_null() {
        return st;
    }
    match (*tree).type_ {
        pg_sys::NodeTag::T_CreateStmt => {
            let c = tree as *mut pg_sys::CreateStmt;
            st.adds_partition = !(*c).partbound.is_null();
        }
        pg_sys::NodeTag::T_AlterTableStmt => {
            let a = tree as *mut pg_sys::AlterTableStmt;
            for cmd in list_ptrs((*a).cmds) {
                let cmd = cmd as *mut pg_sys::AlterTableCmd;
                if cmd.is_null() || (*cmd).type_ != pg_sys::NodeTag::T_AlterTableCmd {
                    continue;
                }
                let column = (!(*cmd).name.is_null()).then(|| {
                    std::ffi::CStr::from_ptr((*cmd).name)
                        .to_string_lossy()
                        .into_owned()
                });
                match (*cmd).subtype {
                    pg_sys::AlterTableType::AT_AttachPartition => st.adds_partition = true,
                    pg_sys::AlterTableType::AT_DetachPartition
                    | pg_sys::AlterTableType::AT_DetachPartitionFinalize => {
                        st.detaches_partition = true
                    }
                    pg_sys::AlterTableType::AT_AlterColumnType => {
                        st.endangering.push((Endangering::ColumnType, column))
                    }
                    pg_sys::AlterTableType::AT_SetUnLogged => {
                        st.endangering.push((Endangering::Unlogged, None))
                    }
                    _ => {}
                }
            }
        }
        pg_sys::NodeTag::T_GrantStmt => {
            st.grants = (*(tree as *mut pg_sys::GrantStmt)).is_grant;
        }
        pg_sys::NodeTag::T_AlterEnumStmt => {
            let e = tree as *mut pg_sys::AlterEnumStmt;
            st.renames_enum_value = !(*e).oldVal.is_null();
        }
        _ => {}
    }
    st
}

/// An object the command created or changed.
struct Touched {
    /// The table (for a trigger: its table), or the type.
    objid: pg_sys::Oid,
    kind: TouchedKind,
    tag: String,
}

#[derive(PartialEq, Eq)]
enum TouchedKind {
    Relation,
    Trigger,
    Type,
}

fn touched_objects() -> LcResult<Vec<Touched>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(
            "SELECT DISTINCT CASE WHEN d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass \
                                  THEN t.tgrelid ELSE d.objid END, \
                    CASE d.classid WHEN 'pg_catalog.pg_class'::pg_catalog.regclass THEN 'r' \
                                   WHEN 'pg_catalog.pg_trigger'::pg_catalog.regclass THEN 't' \
                                   ELSE 'y' END, \
                    d.command_tag \
               FROM pg_catalog.pg_event_trigger_ddl_commands() d \
               LEFT JOIN pg_catalog.pg_trigger t \
                      ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_trigger'::pg_catalog.regclass \
                     AND t.oid OPERATOR(pg_catalog.=) d.objid \
              WHERE d.classid OPERATOR(pg_catalog.=) ANY (ARRAY['pg_catalog.pg_class'::pg_catalog.regclass, \
                                                                'pg_catalog.pg_trigger'::pg_catalog.regclass, \
                                                                'pg_catalog.pg_type'::pg_catalog.regclass])",
            None,
            &[],
        )? {
            let Some(objid) = row.get::<pg_sys::Oid>(1)? else {
                continue;
            };
            let kind = match row.get::<String>(2)?.as_deref() {
                Some("r") => TouchedKind::Relation,
                Some("t") => TouchedKind::Trigger,
                _ => TouchedKind::Type,
            };
            out.push(Touched {
                objid,
                kind,
                tag: row.get::<String>(3)?.unwrap_or_default(),
            });
        }
        Ok::<_, LcError>(out)
    })
}

/// The tables typed by a composite type (`CREATE TABLE ... OF type`), given
/// the type's relation; none for any other relation.
fn typed_tables(relid: pg_sys::Oid) -> LcResult<Vec<pg_sys::Oid>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(
            "SELECT c.oid FROM pg_catalog.pg_class c \
               JOIN pg_catalog.pg_class t ON c.reloftype OPERATOR(pg_catalog.=) t.reltype \
              WHERE t.oid OPERATOR(pg_catalog.=) $1 AND t.relkind OPERATOR(pg_catalog.=) 'c' \
                AND c.relkind OPERATOR(pg_catalog.=) ANY ('{r,p}') \
              ORDER BY 1",
            None,
            &[relid.into()],
        )? {
            if let Some(oid) = row.get::<pg_sys::Oid>(1)? {
                out.push(oid);
            }
        }
        Ok::<_, LcError>(out)
    })
}

fn is_table(relid: pg_sys::Oid) -> LcResult<bool> {
    Ok(crate::spi::one::<bool>(
        "SELECT relkind OPERATOR(pg_catalog.=) ANY ('{r,p}') FROM pg_catalog.pg_class \
          WHERE oid OPERATOR(pg_catalog.=) $1",
        &[relid.into()],
    )?
    .unwrap_or(false))
}

fn is_own_table(relid: pg_sys::Oid) -> LcResult<bool> {
    Ok(crate::spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM lifecycle.own_tables WHERE relation OPERATOR(pg_catalog.=) $1)",
        &[relid.into()],
    )?
    .unwrap_or(false))
}

/// ddl_command_end: check every relation and type the command touched.
///
/// # Safety
/// `parsetree` must be NULL or the parse tree of the command being reported.
pub unsafe fn ddl_command_end(parsetree: *mut pg_sys::Node) -> LcResult<()> {
    if internal_write_active() {
        return Ok(());
    }
    let statement = read_statement(parsetree);
    if statement.grants {
        refuse_grants_on_own_sequences()?;
    }
    for t in touched_objects()? {
        match t.kind {
            TouchedKind::Type => {
                if statement.renames_enum_value {
                    check_enum_rename(t.objid)?;
                }
            }
            TouchedKind::Trigger if t.tag == "CREATE TRIGGER" => {
                // A trigger on one of the extension's tables would run its
                // code whenever the extension writes them, as the
                // extension's owner.
                if is_own_table(t.objid)? && !may_touch_own_tables() {
                    return Err(LcError::extension_table_write(
                        "create a trigger on",
                        &rel_name(t.objid)?,
                    )
                    .detail(format!(
                        "Role \"{}\" may have the TRIGGER privilege on it, but a trigger there would run whenever the extension writes the table.",
                        privilege::current_user_name()
                    ))
                    .hint("Read the table (or lifecycle.audit_log) instead; react to events in your own tables."));
                }
            }
            _ => {
                // `ALTER TYPE ... CASCADE` reports the composite type alone,
                // but changes the tables typed by it (CREATE TABLE ... OF) as
                // ALTER TABLE would: ALTER ATTRIBUTE ... TYPE rewrites their
                // rows, RENAME ATTRIBUTE renames their columns.
                for typed in typed_tables(t.objid)? {
                    check_relation(typed, &statement)?;
                }
                if !is_table(t.objid)? {
                    continue;
                }
                refuse_references_to_own_tables(t.objid)?;
                check_relation(t.objid, &statement)?;
            }
        }
    }
    Ok(())
}

/// The extension numbers its audit events, retained-row records and
/// deletion steps from sequences of its own. A role that may call
/// `nextval` or `setval` on one (`USAGE`, `UPDATE`) could move it back, and
/// the next row the extension writes, a genuine audit event included, would
/// fail on a duplicate key: such a grant is refused, whoever gives it. (A
/// table's grants are harmless: `own_table_guard` refuses the writes.)
fn refuse_grants_on_own_sequences() -> LcResult<()> {
    let granted = Spi::connect(|client| {
        let rows = client.select(
            "SELECT c.oid::pg_catalog.regclass::pg_catalog.text, a.privilege_type, \
                    CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0::pg_catalog.oid THEN 'PUBLIC' \
                         ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END \
               FROM pg_catalog.pg_depend d \
               JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid \
               JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) d.objid \
              CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a \
              WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
                AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass \
                AND d.deptype OPERATOR(pg_catalog.=) 'e' \
                AND e.extname OPERATOR(pg_catalog.=) 'lifecycle' \
                AND c.relkind OPERATOR(pg_catalog.=) 'S' \
                AND a.grantee OPERATOR(pg_catalog.<>) c.relowner \
                AND a.privilege_type OPERATOR(pg_catalog.=) ANY ('{USAGE,UPDATE}') \
              ORDER BY 1, 2 LIMIT 1",
            None,
            &[],
        )?;
        let mut found = None;
        for row in rows {
            found = Some((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<String>(2)?.unwrap_or_default(),
                row.get::<String>(3)?.unwrap_or_default(),
            ));
        }
        Ok::<_, LcError>(found)
    })?;
    let Some((sequence, privilege, grantee)) = granted else {
        return Ok(());
    };
    Err(LcError::extension_table_write(
        &format!("grant {privilege} on sequence"),
        &sequence,
    )
    .detail(format!(
        "Role {grantee} could move the sequence the extension numbers its rows with, and the next row it writes (a genuine audit event included) would fail on a duplicate key."
    ))
    .hint(format!(
        "Grant nothing on the extension's sequences: its functions use them as the extension's owner. A grant made before this check: REVOKE USAGE, UPDATE ON SEQUENCE {sequence} FROM {grantee};"
    )))
}

/// A foreign key into one of the extension's tables would let its owner
/// block (or, with cascades, observe) the extension's own writes.
fn refuse_references_to_own_tables(relid: pg_sys::Oid) -> LcResult<()> {
    if may_touch_own_tables() {
        return Ok(());
    }
    let target = crate::spi::one::<String>(
        "SELECT c.confrelid::pg_catalog.regclass::text FROM pg_catalog.pg_constraint c \
          WHERE c.conrelid OPERATOR(pg_catalog.=) $1 AND c.contype OPERATOR(pg_catalog.=) 'f' \
            AND c.confrelid IN (SELECT relation FROM lifecycle.own_tables) LIMIT 1",
        &[relid.into()],
    )?;
    match target {
        None => Ok(()),
        Some(target) => Err(LcError::extension_table_write("add a foreign key to", &target)
            .detail(format!(
                "Table {} would reference it; a foreign key there could block the extension's own writes.",
                rel_name(relid)?
            ))
            .hint("Keep the id in a plain column without a foreign key.")),
    }
}

/// A column the data map relies on that the command dropped or renamed:
/// refused (`LC011`).
fn refuse_missing_registered_column(relid: pg_sys::Oid, name: &str) -> LcResult<()> {
    let missing = privilege::as_extension_owner(|| {
        crate::spi::two::<String, String>(
            "SELECT c.column_name::text, c.role FROM ( \
                SELECT column_name, 'scope column for ' OPERATOR(pg_catalog.||) scope_type AS role \
                  FROM lifecycle.scope_columns WHERE relation OPERATOR(pg_catalog.=) $1 \
                UNION ALL SELECT soft_delete_column, 'soft-delete column' \
                  FROM lifecycle.tables WHERE relation OPERATOR(pg_catalog.=) $1 \
                   AND soft_delete_column IS NOT NULL \
                UNION ALL SELECT role_column, 'membership role column' \
                  FROM lifecycle.memberships WHERE relation OPERATOR(pg_catalog.=) $1 \
                UNION ALL SELECT column_name, 'column with rule ' OPERATOR(pg_catalog.||) rule \
                  FROM lifecycle.column_rules WHERE relation OPERATOR(pg_catalog.=) $1 \
                UNION ALL SELECT column_name, 'column excluded from exports' \
                  FROM lifecycle.column_exports WHERE relation OPERATOR(pg_catalog.=) $1 \
                   AND excluded IS NOT NULL) c \
              WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute a \
                                 WHERE a.attrelid OPERATOR(pg_catalog.=) $1 \
                                   AND a.attname OPERATOR(pg_catalog.=) c.column_name \
                                   AND NOT a.attisdropped) \
              LIMIT 1",
            &[relid.into()],
        )
    })?;
    match missing {
        (Some(col), Some(role)) => Err(LcError::data_map_column_in_use(name, &col, &role)),
        _ => Ok(()),
    }
}

fn check_relation(relid: pg_sys::Oid, statement: &Statement) -> LcResult<()> {
    let Some(root) = registered_root(relid)? else {
        return Ok(());
    };
    let name = rel_name(relid)?;
    let is_root = root == relid;

    // 0. Inheritance children of a registered table (CREATE TABLE ...
    //    INHERITS, ALTER TABLE ... INHERIT) would not be guarded.
    if !is_root {
        let is_partition = crate::spi::one::<bool>(
            "SELECT relispartition FROM pg_catalog.pg_class WHERE oid OPERATOR(pg_catalog.=) $1",
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
        refuse_missing_registered_column(relid, &name)?;
    }

    // 2. Nothing that rewrites or endangers the values of held rows.
    for (what, column) in &statement.endangering {
        if let Some((part, h)) = holds::hold_covering_tree(relid, root)? {
            let action = match (what, column) {
                (Endangering::ColumnType, Some(c)) => {
                    format!("change the type of column \"{c}\" of table {name}")
                }
                (Endangering::ColumnType, None) => format!("change a column type of table {name}"),
                (Endangering::Unlogged, _) => format!("make table {name} unlogged"),
            };
            let why = match what {
                Endangering::ColumnType => "The new type's values are computed from the old ones for every row, without row triggers, so held rows would change unguarded.",
                Endangering::Unlogged => "An unlogged table loses its rows in a crash, held rows included.",
            };
            return Err(LcError::held_table_alter(&action, &holder(&part, &name))
                .detail(format!("{why} {}", holds::hold_detail(&h)))
                .hint(format!(
                    "Make the change once the hold no longer applies: {}",
                    lower_first(&holds::release_hint(&h))
                )));
        }
    }

    // 3. Guard triggers: present and ENABLE ALWAYS.
    let soft_delete = privilege::as_extension_owner(|| {
        Ok(crate::spi::one::<bool>(
            "SELECT soft_delete_column IS NOT NULL FROM lifecycle.tables \
              WHERE relation OPERATOR(pg_catalog.=) $1",
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
            record_superuser_bypass(events::GUARD_RENAMED, &name, &st.tgname)?;
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
            record_superuser_bypass(events::GUARD_DISABLED, &name, &st.tgname)?;
        }
    }
    // 4. A new partition (CREATE TABLE ... PARTITION OF, ATTACH PARTITION)
    //    gets the row triggers cloned, but statement triggers must be added.
    if statement.adds_partition {
        for part in datamap::partition_tree(relid)? {
            if !datamap::trigger_exists(&part, TRUNCATE_GUARD)? {
                privilege::as_extension_owner(|| datamap::install_truncate_guard(&part))?;
            }
        }
    }
    // A partition detached at any level of the tree (the registered table
    // or a partition of it that is partitioned itself) loses the cloned
    // row guard.
    if statement.detaches_partition {
        check_detached(root, &name)?;
    }
    Ok(())
}

/// Every type whose values contain a value of type `$1`, `$1` included:
/// arrays, domains (over domains), composite types and table row types with
/// an attribute of it, ranges over it and their multiranges, to any depth.
const CONTAINING_TYPES_SQL: &str = "\
    WITH RECURSIVE inside(typ) AS ( \
        SELECT $1::pg_catalog.oid \
        UNION \
        SELECT x.oid FROM inside i JOIN pg_catalog.pg_type x \
            ON x.typelem OPERATOR(pg_catalog.=) i.typ \
            OR x.typbasetype OPERATOR(pg_catalog.=) i.typ \
            OR x.typrelid IN (SELECT a.attrelid FROM pg_catalog.pg_attribute a \
                               WHERE a.atttypid OPERATOR(pg_catalog.=) i.typ \
                                 AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped) \
            OR x.oid IN (SELECT r.rngtypid FROM pg_catalog.pg_range r \
                          WHERE r.rngsubtype OPERATOR(pg_catalog.=) i.typ) \
            OR x.oid IN (SELECT r.rngmultitypid FROM pg_catalog.pg_range r \
                          WHERE r.rngtypid OPERATOR(pg_catalog.=) i.typ)) \
    SELECT typ FROM inside";

/// `ALTER TYPE ... RENAME VALUE` changes what every row holding that label
/// says without touching the rows: refused while a registered table with a
/// column whose values can contain that type (the enum itself, an array, a
/// domain, a composite type, a range, nested to any depth) holds held rows.
fn check_enum_rename(type_oid: pg_sys::Oid) -> LcResult<()> {
    let columns: Vec<(pg_sys::Oid, String)> = Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(
            &format!(
                "WITH containing AS ({CONTAINING_TYPES_SQL}) \
                 SELECT a.attrelid, a.attname::text FROM pg_catalog.pg_attribute a \
                   JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) a.attrelid \
                  WHERE a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped \
                    AND c.relkind OPERATOR(pg_catalog.=) ANY ('{{r,p}}') \
                    AND a.atttypid IN (SELECT typ FROM containing) \
                  ORDER BY 1, 2"
            ),
            None,
            &[type_oid.into()],
        )? {
            if let (Some(rel), Some(col)) = (row.get::<pg_sys::Oid>(1)?, row.get::<String>(2)?) {
                out.push((rel, col));
            }
        }
        Ok::<_, LcError>(out)
    })?;
    for (relid, column) in columns {
        let Some(root) = registered_root(relid)? else {
            continue;
        };
        if let Some((part, h)) = holds::hold_covering_tree(relid, root)? {
            let type_name = crate::namespace::display_type(type_oid)?;
            let table = rel_name(relid)?;
            return Err(LcError::held_table_alter(
                &format!(
                    "rename a value of type {type_name}, used by column \"{column}\" of table {table}"
                ),
                &holder(&part, &table),
            )
            .detail(format!(
                "Every row holding the old label would read as the new one. {}",
                holds::hold_detail(&h)
            ))
            .hint(format!(
                "Add a new value with ALTER TYPE ... ADD VALUE instead, or {}",
                lower_first(&holds::release_hint(&h))
            )));
        }
    }
    Ok(())
}

/// Relations that still carry a truncate guard but are no longer part of a
/// registered tree were just detached: refuse if they hold held rows,
/// otherwise remove the leftover guard.
fn check_detached(root: pg_sys::Oid, root_name: &str) -> LcResult<()> {
    let orphans: Vec<pg_sys::Oid> = Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(
            "SELECT t.tgrelid FROM pg_catalog.pg_trigger t \
              WHERE t.tgname OPERATOR(pg_catalog.=) $1::pg_catalog.name \
                AND NOT EXISTS (WITH RECURSIVE up(relid) AS ( \
                                    SELECT t.tgrelid UNION \
                                    SELECT i.inhparent FROM pg_catalog.pg_inherits i \
                                      JOIN up ON i.inhrelid OPERATOR(pg_catalog.=) up.relid) \
                                SELECT 1 FROM up WHERE up.relid IN (SELECT relation FROM lifecycle.registered_relations))",
            None,
            &[TRUNCATE_GUARD.into()],
        )? {
            if let Some(oid) = row.get::<pg_sys::Oid>(1)? {
                out.push(oid);
            }
        }
        Ok::<_, LcError>(out)
    })?;
    for orphan in orphans {
        if let Some((part, h)) = holds::hold_covering_tree(orphan, root)? {
            return Err(LcError::held_table_drop("detach", &part)
                .detail(format!(
                    "It is a partition of {root_name}; {}",
                    lower_first(&holds::hold_detail(&h))
                ))
                .hint(holds::release_hint(&h))
                .blocked_by(&h.id));
        }
        let parts = datamap::partition_tree(orphan)?;
        privilege::as_extension_owner(|| {
            with_internal_write(|| {
                for part in &parts {
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

/// sql_drop: guard triggers, registered tables and their columns.
pub fn sql_drop() -> LcResult<()> {
    if internal_write_active() {
        return Ok(());
    }
    struct Dropped {
        objid: pg_sys::Oid,
        object_type: String,
        identity: String,
        name: String,
        /// For a column: its name.
        column: Option<String>,
    }
    let dropped: Vec<Dropped> = Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(
            "SELECT objid, object_type, object_identity, coalesce(object_name, ''), \
                    CASE WHEN object_type OPERATOR(pg_catalog.=) 'table column' \
                         THEN address_names[pg_catalog.array_upper(address_names, 1)] END \
               FROM pg_catalog.pg_event_trigger_dropped_objects() \
              WHERE object_type OPERATOR(pg_catalog.=) ANY ('{table,table column,trigger,extension}')",
            None,
            &[],
        )? {
            out.push(Dropped {
                objid: row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::Oid::INVALID),
                object_type: row.get::<String>(2)?.unwrap_or_default(),
                identity: row.get::<String>(3)?.unwrap_or_default(),
                name: row.get::<String>(4)?.unwrap_or_default(),
                column: row.get::<String>(5)?,
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
                "SELECT EXISTS (SELECT 1 FROM lifecycle.registered_relations \
                                 WHERE relation::pg_catalog.oid OPERATOR(pg_catalog.=) $1)",
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
            cache::scope_columns(t.objid)?
                .into_iter()
                .map(|(s, _)| s)
                .collect()
        } else {
            cache::scope_types()?
        };
        for st in scope_types {
            if let Some(h) = cache::holds_for(&st)?.into_iter().next() {
                return Err(refuse_drop(&t.identity, &st, &h));
            }
        }
        if registered {
            datamap::forget(t.objid)?;
            let me = privilege::current_user_name();
            audit::record(Event {
                event_type: events::DATA_MAP_TABLE_DROPPED,
                actor: Some(&me),
                details: Some(json!({ "table": t.identity })),
                ..Event::default()
            })?;
        }
    }
    // Columns dropped from tables that stay (ALTER TABLE ... DROP COLUMN,
    // DROP TYPE ... CASCADE): their values in held rows are gone with them.
    for c in dropped.iter().filter(|d| d.object_type == "table column") {
        if dropped_tables.iter().any(|t| t.objid == c.objid) {
            continue;
        }
        let Some(root) = registered_root(c.objid)? else {
            continue;
        };
        // However it was dropped (DROP COLUMN, DROP TYPE ... CASCADE), a
        // column the data map relies on stays.
        if root == c.objid {
            refuse_missing_registered_column(root, &rel_name(root)?)?;
        }
        if let Some((part, h)) = holds::hold_covering_tree(c.objid, root)? {
            let column = c.column.as_deref().unwrap_or(&c.identity);
            let table = rel_name(c.objid)?;
            return Err(LcError::held_table_alter(
                &format!("drop column \"{column}\" of table {table}"),
                &holder(&part, &table),
            )
            .detail(format!(
                "The column's values in held rows would be gone. {}",
                holds::hold_detail(&h)
            ))
            .hint(format!(
                "Drop the column once the hold no longer applies: {}",
                lower_first(&holds::release_hint(&h))
            )));
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
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
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
        record_superuser_bypass(events::GUARD_DROPPED, table, tg)?;
    }
    Ok(())
}

/// Where held rows are, for a refusal about `table`: the table itself or
/// one of its partitions.
fn holder(part: &str, table: &str) -> String {
    if part == table {
        "the table".to_string()
    } else {
        format!("its partition {part}")
    }
}

fn refuse_drop(table: &str, scope_type: &str, h: &Hold) -> LcError {
    LcError::held_table_drop("drop", table)
        .blocked_by(&h.id)
        .detail(format!(
            "Its rows can no longer be checked, and legal hold {} ({}) placed by {} covers {scope_type} rows: {}",
            h.id,
            h.describe_scope(),
            h.created_by,
            h.reason
        ))
        .hint(format!(
            "Delete the rows that are not held first, or {}",
            lower_first(&holds::release_hint(h))
        ))
}
