//! The data map: which tables hold personal data, which column ties a row to
//! a subject and to a tenant (directly, or through a parent table), and what
//! erasure does with it. Registering a table validates the request, stores
//! it in the extension's configuration tables and installs the table's guard
//! triggers.
//!
//! * this module: what the catalog says about tables and columns, storing
//!   registrations, installing and dropping guards;
//! * [`register`]: subject, tenant and data tables, links and extra scopes,
//!   unregistering;
//! * [`memberships`]: membership tables and the shapes of their admin roles;
//! * [`rules`]: column rules, checked against the column's constraints;
//! * [`exports`]: column labels and exclusions for exports.

use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::json;

use crate::audit::{self, Event};
use crate::cache;
use crate::error::{LcError, LcResult};
use crate::namespace::quote_ident;
use crate::privilege;

pub mod exports;
pub mod memberships;
pub mod register;
pub mod rules;

pub use memberships::{register_membership, unregister_membership, MembershipRegistration};
pub use register::{
    register_link, register_scope, register_subject, register_table, register_tenant,
    unregister_table, SubjectRegistration, TableRegistration,
};
pub use rules::set_column_rule;

/// Guard trigger names, as installed on every registered relation.
pub const ROW_GUARD: &str = "lifecycle_guard";
pub const TRUNCATE_GUARD: &str = "lifecycle_guard_truncate";
pub const SOFT_DELETE: &str = "lifecycle_soft_delete";

/// What the catalog says about a relation.
pub struct Relation {
    pub oid: pg_sys::Oid,
    pub name: String,
    pub kind: char,
}

/// What the catalog says about a column.
pub struct Column {
    pub name: String,
    /// `format_type` with the modifier (`character varying(26)`).
    pub type_name: String,
    pub type_oid: pg_sys::Oid,
    /// The type a domain is declared over (the type itself otherwise).
    pub base_type: pg_sys::Oid,
    /// `pg_type.typcategory` of the base type ('S' string, 'N' numeric, 'A'
    /// array, 'B' boolean, 'D' date/time, 'U' user-defined such as json...).
    pub category: char,
    pub not_null: bool,
    /// A unique index or constraint on this column alone.
    pub unique: bool,
    /// The most characters a value may have (`varchar(n)`, `char(n)`).
    pub max_chars: Option<i32>,
}

impl Column {
    pub fn is_textual(&self) -> bool {
        self.category == 'S'
    }

    /// What the erasure plan knows of the column (enough for the value a
    /// rule writes).
    pub fn facts(&self) -> crate::plan::ColumnFacts {
        crate::plan::ColumnFacts {
            name: self.name.clone(),
            type_name: self.type_name.clone(),
            base_type_name: self.type_name.clone(),
            eq: "OPERATOR(pg_catalog.=)".into(),
            kind: crate::plan::ValueKind::of(self.base_type.to_u32(), self.category),
            not_null: self.not_null,
            unique: self.unique,
            max_chars: self.max_chars,
            is_key: false,
        }
    }

    pub fn is_json(&self) -> bool {
        self.base_type == pg_sys::JSONBOID || self.base_type == pg_sys::JSONOID
    }

    fn is_integer(&self) -> bool {
        [pg_sys::INT2OID, pg_sys::INT4OID, pg_sys::INT8OID].contains(&self.base_type)
    }

    /// Whether values of this column and of `other` compare as the same
    /// kind of key: the same base type, two string types, or two integer
    /// types.
    pub fn key_compatible(&self, other: &Column) -> bool {
        self.base_type == other.base_type
            || (self.is_textual() && other.is_textual())
            || (self.is_integer() && other.is_integer())
    }
}

pub fn relation(oid: Option<pg_sys::Oid>, function: &str) -> LcResult<Relation> {
    let oid = oid.ok_or_else(|| LcError::null_value("tbl", function))?;
    let row = crate::spi::two::<String, String>(
        "SELECT $1::pg_catalog.regclass::text, relkind::text FROM pg_catalog.pg_class \
          WHERE oid OPERATOR(pg_catalog.=) $1",
        &[oid.into()],
    )?;
    match row {
        (Some(name), Some(kind)) => {
            let kind = kind.chars().next().unwrap_or('?');
            if kind != 'r' && kind != 'p' {
                return Err(LcError::invalid_parameter(format!("{name} is not a table"))
                    .detail("Only ordinary and partitioned tables can be registered.")
                    .hint("Register the table that holds the rows, not a view or index."));
            }
            Ok(Relation { oid, name, kind })
        }
        _ => Err(LcError::invalid_parameter(format!(
            "relation with OID {} does not exist",
            oid.to_u32()
        ))),
    }
}

/// Facts about the columns of a relation, by name, as JSON rows: what
/// [`column`] and the engine's catalog read.
pub const COLUMN_FACTS_SQL: &str = "\
    SELECT a.attname::text AS name, \
           pg_catalog.format_type(a.atttypid, a.atttypmod) AS type_name, \
           a.atttypid::pg_catalog.int8 AS type_oid, \
           bt.oid::pg_catalog.int8 AS base_type, \
           bt.typcategory::text AS category, \
           a.attnotnull AS not_null, \
           EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
                    WHERE i.indrelid OPERATOR(pg_catalog.=) a.attrelid AND i.indisunique \
                      AND i.indnkeyatts OPERATOR(pg_catalog.=) 1 \
                      AND i.indkey[0] OPERATOR(pg_catalog.=) a.attnum \
                      AND i.indpred IS NULL) AS is_unique, \
           CASE WHEN bt.oid OPERATOR(pg_catalog.=) ANY ('{1042,1043}'::pg_catalog.oid[]) \
                     AND a.atttypmod OPERATOR(pg_catalog.>) 4 \
                THEN a.atttypmod OPERATOR(pg_catalog.-) 4 END AS max_chars \
      FROM pg_catalog.pg_attribute a \
      JOIN pg_catalog.pg_type bt ON bt.oid OPERATOR(pg_catalog.=) coalesce( \
               (SELECT NULLIF(t.typbasetype, 0) FROM pg_catalog.pg_type t \
                 WHERE t.oid OPERATOR(pg_catalog.=) a.atttypid), a.atttypid) \
     WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.>) 0 \
       AND NOT a.attisdropped";

pub fn column(rel: &Relation, name: Option<&str>, param: &str, function: &str) -> LcResult<Column> {
    let name = name.ok_or_else(|| LcError::null_value(param, function))?;
    let row = crate::spi::json(
        &format!(
            "SELECT pg_catalog.to_jsonb(c) FROM ({COLUMN_FACTS_SQL}) c \
              WHERE c.name OPERATOR(pg_catalog.=) $2"
        ),
        &[rel.oid.into(), name.into()],
    )?;
    let Some(v) = row else {
        return Err(LcError::undefined_column(&rel.name, name).hint(format!(
            "Check the \"{param}\" argument against the columns of {}.",
            rel.name
        )));
    };
    Ok(column_from_json(&v))
}

pub fn column_from_json(v: &serde_json::Value) -> Column {
    let oid = |k: &str| pg_sys::Oid::from(v[k].as_u64().unwrap_or_default() as u32);
    Column {
        name: v["name"].as_str().unwrap_or_default().to_string(),
        type_name: v["type_name"].as_str().unwrap_or_default().to_string(),
        type_oid: oid("type_oid"),
        base_type: oid("base_type"),
        category: v["category"]
            .as_str()
            .and_then(|c| c.chars().next())
            .unwrap_or('X'),
        not_null: v["not_null"].as_bool().unwrap_or(false),
        unique: v["is_unique"].as_bool().unwrap_or(false),
        max_chars: v["max_chars"].as_i64().map(|n| n as i32),
    }
}

/// A column that ties rows to a subject or tenant must hold a key: a
/// number, a string or a uuid.
fn require_key_type(rel: &Relation, c: &Column, purpose: &str) -> LcResult<()> {
    let ok = matches!(c.category, 'N' | 'S') || c.base_type == pg_sys::UUIDOID;
    if ok {
        Ok(())
    } else {
        Err(LcError::datatype_mismatch(format!(
            "column \"{}\" of {} cannot hold {purpose}",
            c.name, rel.name
        ))
        .detail(format!("Its type is {}.", c.type_name))
        .hint("Key columns must be of an integer, numeric, text or uuid type."))
    }
}

/// The key column of the registered table that defines `scope` (the
/// subject table of a subject type, the tenant table for `tenant`): (table
/// name, column).
pub fn key_column(scope: &str) -> LcResult<Option<(String, Column)>> {
    let found = privilege::as_extension_owner(|| {
        crate::spi::two::<pg_sys::Oid, String>(
            "SELECT relation::pg_catalog.oid, id_column::text FROM lifecycle.tenant_tables \
              WHERE $1 OPERATOR(pg_catalog.=) 'tenant' \
             UNION ALL \
             SELECT relation::pg_catalog.oid, id_column::text FROM lifecycle.subject_tables \
              WHERE subject_type OPERATOR(pg_catalog.=) $1",
            &[scope.into()],
        )
    })?;
    let (Some(oid), Some(col)) = found else {
        return Ok(None);
    };
    let rel = relation(Some(oid), "lifecycle")?;
    let c = column(&rel, Some(&col), "id_column", "lifecycle")?;
    Ok(Some((rel.name, c)))
}

/// Warn about key columns of `rel` that no index leads with: erasing one
/// subject then reads the whole table (see also `lifecycle.unindexed_keys()`).
fn warn_unindexed(rel: &Relation, columns: &[String]) -> LcResult<()> {
    for c in columns {
        let indexed = crate::spi::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
                              JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid \
                                                            AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0] \
                             WHERE i.indrelid OPERATOR(pg_catalog.=) $1 \
                               AND i.indisvalid AND i.indpred IS NULL \
                               AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name)",
            &[rel.oid.into(), c.as_str().into()],
        )?
        .unwrap_or(true);
        if !indexed {
            pgrx::warning!(
                "column \"{c}\" of {} has no index: erasing one subject will read the whole table (CREATE INDEX ON {} ({}))",
                rel.name,
                rel.name,
                quote_ident(c)
            );
        }
    }
    Ok(())
}

fn require_text(value: Option<&str>, param: &str, function: &str) -> LcResult<String> {
    match value {
        None => Err(LcError::null_value(param, function)),
        Some(v) if v.trim().is_empty() => Err(LcError::invalid_parameter(format!(
            "parameter \"{param}\" of {function} must not be empty"
        ))),
        Some(v) => Ok(v.to_string()),
    }
}

fn check_type_name(t: &str, param: &str) -> LcResult<()> {
    let valid = t.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && t.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(LcError::invalid_parameter(format!(
            "invalid {param} \"{t}\""
        ))
        .detail("Subject and scope types are lower-case identifiers such as 'user' or 'organization'.")
        .hint("Use letters, digits and underscores, starting with a letter."));
    }
    if t == "tenant" && param == "subject_type" {
        return Err(LcError::invalid_parameter(
            "\"tenant\" is reserved and cannot be a subject type",
        )
        .hint("Register the tenant table with lifecycle.register_tenant()."));
    }
    Ok(())
}

/// Which data-map roles a relation has: subject, tenant, table, membership.
fn roles_of(relid: pg_sys::Oid) -> LcResult<Vec<&'static str>> {
    let mut roles = Vec::new();
    for (role, table) in [
        ("subject", "subject_tables"),
        ("tenant", "tenant_tables"),
        ("table", "tables"),
        ("membership", "memberships"),
    ] {
        let found = privilege::as_extension_owner(|| {
            Ok(crate::spi::one::<bool>(
                &format!("SELECT EXISTS (SELECT 1 FROM lifecycle.{table} WHERE relation = $1)"),
                &[relid.into()],
            )?
            .unwrap_or(false))
        })?;
        if found {
            roles.push(role);
        }
    }
    Ok(roles)
}

fn registration_json(table: &str, relid: pg_sys::Oid) -> LcResult<Option<serde_json::Value>> {
    privilege::as_extension_owner(|| {
        Ok(crate::spi::one::<pgrx::JsonB>(
            &format!(
                "SELECT to_jsonb(t) - 'relation' - 'registered_at' - 'registered_by' \
                   FROM lifecycle.{table} t WHERE relation = $1"
            ),
            &[relid.into()],
        )?
        .map(|j| j.0))
    })
}

/// Store a registration row, idempotently: an identical registration is a
/// no-op (returns false), a different one is an error.
fn store(
    table: &str,
    rel: &Relation,
    wanted: serde_json::Value,
    conflicting_roles: &[&str],
) -> LcResult<bool> {
    refuse_inheritance_children(rel)?;
    let roles = roles_of(rel.oid)?;
    if let Some(r) = roles.iter().find(|r| conflicting_roles.contains(r)) {
        return Err(LcError::data_map_conflict(format!(
            "table {} is already registered as a {r} table",
            rel.name
        ))
        .detail("A table has one role in the data map: subject, tenant or data table.")
        .hint("Unregister it with lifecycle.unregister_table() first."));
    }
    if let Some(existing) = registration_json(table, rel.oid)? {
        if existing == wanted {
            return Ok(false);
        }
        return Err(LcError::data_map_conflict(format!(
            "table {} is already registered with different settings",
            rel.name
        ))
        .detail(format!("Registered: {existing}. Requested: {wanted}."))
        .hint(if table == "memberships" {
            "Unregister the membership with lifecycle.unregister_membership() and register it again."
        } else {
            "Unregister it with lifecycle.unregister_table() and register it again."
        }));
    }
    let me = privilege::current_user_name();
    privilege::as_extension_owner(|| {
        Spi::run_with_args(
            &format!(
                "INSERT INTO lifecycle.{table} \
                 SELECT * FROM jsonb_populate_record(NULL::lifecycle.{table}, \
                        $1::jsonb || jsonb_build_object('relation', $2::oid::regclass::text, \
                                                        'registered_at', now(), \
                                                        'registered_by', $3::text))"
            ),
            &[
                pgrx::JsonB(wanted.clone()).into(),
                rel.oid.into(),
                me.as_str().into(),
            ],
        )?;
        Ok(())
    })?;
    Ok(true)
}

fn audit_change(event_type: &str, rel: &Relation, details: serde_json::Value) -> LcResult<()> {
    let me = privilege::current_user_name();
    let mut d = details;
    d["table"] = json!(rel.name);
    audit::record(Event {
        event_type,
        actor: Some(&me),
        details: Some(d),
        ..Event::default()
    })?;
    Ok(())
}

fn after_change(rel: &Relation, event_type: &str, details: serde_json::Value) -> LcResult<()> {
    install_guards(rel.oid)?;
    cache::invalidate("tables")?;
    audit_change(event_type, rel, details)?;
    warn_row_security(rel)
}

/// Warn when the table's row-level security would hide rows from its
/// owner, the role erasures and exports read it as (`FORCE ROW LEVEL
/// SECURITY`, an owner without `BYPASSRLS`): they refuse the table
/// (`LC044`) until its owner may see every row. The registration stands;
/// the WARNING carries the refusal's DETAIL and HINT.
fn warn_row_security(rel: &Relation) -> LcResult<()> {
    let refusal = match crate::row_security::during("erasures and exports", || {
        privilege::table_owner(rel.oid)
    }) {
        Ok(_) => return Ok(()),
        Err(e) if e.sqlstate == lifecycle_core::Code::RowSecurityHidesRows.sqlstate() => e,
        Err(e) => return Err(e),
    };
    let mut warning = pgrx::pg_sys::panic::ErrorReport::new(
        pgrx::PgSqlErrorCode::ERRCODE_WARNING,
        refusal.message,
        "lifecycle",
    );
    if let Some(d) = refusal.detail {
        warning = warning.set_detail(d);
    }
    if let Some(h) = refusal.hint {
        warning = warning.set_hint(h);
    }
    warning.report(pgrx::PgLogLevel::WARNING);
    Ok(())
}

/// Delete every data-map row of a relation.
pub fn forget(relid: pg_sys::Oid) -> LcResult<()> {
    privilege::as_extension_owner(|| {
        for t in [
            "column_rules",
            "column_exports",
            "scopes",
            "links",
            "memberships",
            "tables",
            "tenant_tables",
            "subject_tables",
        ] {
            Spi::run_with_args(
                &format!("DELETE FROM lifecycle.{t} WHERE relation::oid = $1"),
                &[relid.into()],
            )?;
        }
        Ok(())
    })?;
    cache::invalidate("tables")
}

/// The relation and every partition below it (quoted names).
pub fn partition_tree(relid: pg_sys::Oid) -> LcResult<Vec<String>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in crate::spi::select(
            client,
            "SELECT relid::regclass::text FROM pg_catalog.pg_partition_tree($1::regclass) \
              ORDER BY level, relid",
            None,
            &[relid.into()],
        )? {
            out.push(row.get::<String>(1)?.unwrap_or_default());
        }
        if out.is_empty() {
            out.push(
                crate::spi::one::<String>("SELECT $1::regclass::text", &[relid.into()])?
                    .unwrap_or_default(),
            );
        }
        Ok(out)
    })
}

/// Whether `rel` has a trigger named `name`.
pub fn trigger_exists(rel: &str, name: &str) -> LcResult<bool> {
    Ok(crate::spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_trigger \
                         WHERE tgrelid = $1::regclass AND tgname = $2::name)",
        &[rel.into(), name.into()],
    )?
    .unwrap_or(false))
}

/// Refuse a relation with inheritance children (not partitions): its
/// UPDATE, DELETE and TRUNCATE reach their rows, but PostgreSQL gives them
/// none of the parent's triggers, so rows under hold there would not be
/// guarded. The DDL guard keeps new ones from appearing once registered.
fn refuse_inheritance_children(rel: &Relation) -> LcResult<()> {
    let children = crate::spi::one::<Vec<String>>(
        "SELECT pg_catalog.array_agg(c.oid::regclass::text ORDER BY c.oid::regclass::text) \
           FROM pg_catalog.pg_inherits i JOIN pg_catalog.pg_class c ON c.oid = i.inhrelid \
          WHERE i.inhparent = $1 AND NOT c.relispartition",
        &[rel.oid.into()],
    )?
    .unwrap_or_default();
    if children.is_empty() {
        return Ok(());
    }
    let who = match children.len() {
        1 => "The table inheriting from it is".to_string(),
        n => format!("The {n} tables inheriting from it are"),
    };
    let name = &rel.name;
    Err(LcError::feature_not_supported(format!(
        "table {name} has inheritance children"
    ))
    .detail(format!(
        "{who} {}. Statements on {name} reach their rows, but PostgreSQL does not give inheritance children the parent's triggers.",
        children.join(", ")
    ))
    .hint("Use declarative partitioning (PARTITION OF), whose partitions are guarded, or detach the children with ALTER TABLE ... NO INHERIT and register them on their own."))
}

/// Install the guard triggers of a registered relation (and its partitions)
/// that are missing. Idempotent.
pub fn install_guards(relid: pg_sys::Oid) -> LcResult<()> {
    let soft_delete = privilege::as_extension_owner(|| {
        crate::spi::one::<String>(
            "SELECT soft_delete_column::text FROM lifecycle.tables WHERE relation = $1",
            &[relid.into()],
        )
    })?;
    let tree = partition_tree(relid)?;
    let root = tree[0].clone();
    let scopes = cache::scope_columns(relid)?;
    privilege::as_extension_owner(|| {
        crate::privilege::with_internal_write(|| {
            if !trigger_exists(&root, ROW_GUARD)? {
                Spi::run(&row_guard_ddl(&root, &scopes))?;
            }
            if soft_delete.is_some() && !trigger_exists(&root, SOFT_DELETE)? {
                Spi::run(&format!(
                    "CREATE TRIGGER {SOFT_DELETE} BEFORE DELETE ON {root} \
                     FOR EACH ROW EXECUTE FUNCTION lifecycle.soft_delete_row()"
                ))?;
            }
            let mut always = vec![format!("ENABLE ALWAYS TRIGGER {ROW_GUARD}")];
            if soft_delete.is_some() {
                always.push(format!("ENABLE ALWAYS TRIGGER {SOFT_DELETE}"));
            }
            Spi::run(&format!("ALTER TABLE {root} {}", always.join(", ")))?;
            for rel in &tree {
                install_truncate_guard(rel)?;
            }
            Ok(())
        })
    })
}

/// The row guard: `AFTER UPDATE OR DELETE ... FOR EACH ROW`, queued only
/// when the old row's scope keys may be held (see `guard::row_may_be_held`).
fn row_guard_ddl(root: &str, scopes: &[(String, String)]) -> String {
    let signature = cache::scope_signature(scopes.iter().map(|(t, c)| (t.as_str(), c.as_str())));
    let keys = scopes
        .iter()
        .map(|(_, c)| format!("OLD.{}", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(", ");
    // The relation as a regclass constant: stored as its OID, printed (by
    // pg_dump) as its name, so a restored copy binds to the new table.
    format!(
        "CREATE TRIGGER {ROW_GUARD} AFTER UPDATE OR DELETE ON {root} FOR EACH ROW \
         WHEN (lifecycle.row_may_be_held({}::pg_catalog.regclass, {}::pg_catalog.int8, {keys})) \
         EXECUTE FUNCTION lifecycle.guard_row()",
        pgrx::spi::quote_literal(root),
        cache::signature_digest(&signature)
    )
}

/// Recreate the row guard after the table's scope columns changed, so that
/// its WHEN condition passes the new keys.
fn refresh_row_guard(relid: pg_sys::Oid) -> LcResult<()> {
    let root = partition_tree(relid)?[0].clone();
    let scopes = cache::scope_columns(relid)?;
    privilege::as_extension_owner(|| {
        crate::privilege::with_internal_write(|| {
            if trigger_exists(&root, ROW_GUARD)? {
                Spi::run(&format!("DROP TRIGGER {ROW_GUARD} ON {root}"))?;
            }
            Spi::run(&row_guard_ddl(&root, &scopes))?;
            Spi::run(&format!(
                "ALTER TABLE {root} ENABLE ALWAYS TRIGGER {ROW_GUARD}"
            ))?;
            Ok(())
        })
    })
}

/// The statement-level TRUNCATE guard of one relation (partitions need
/// their own: statement triggers are not cloned).
pub fn install_truncate_guard(rel: &str) -> LcResult<()> {
    crate::privilege::with_internal_write(|| {
        if !trigger_exists(rel, TRUNCATE_GUARD)? {
            Spi::run(&format!(
                "CREATE TRIGGER {TRUNCATE_GUARD} BEFORE TRUNCATE ON {rel} \
                 FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.guard_truncate()"
            ))?;
        }
        Spi::run(&format!(
            "ALTER TABLE {rel} ENABLE ALWAYS TRIGGER {TRUNCATE_GUARD}"
        ))?;
        Ok(())
    })
}

fn drop_guards(relid: pg_sys::Oid) -> LcResult<()> {
    let tree = partition_tree(relid)?;
    privilege::as_extension_owner(|| {
        crate::privilege::with_internal_write(|| {
            let root = &tree[0];
            for t in [ROW_GUARD, SOFT_DELETE] {
                if trigger_exists(root, t)? {
                    Spi::run(&format!("DROP TRIGGER {t} ON {root}"))?;
                }
            }
            for rel in &tree {
                if trigger_exists(rel, TRUNCATE_GUARD)? {
                    Spi::run(&format!("DROP TRIGGER {TRUNCATE_GUARD} ON {rel}"))?;
                }
            }
            Ok(())
        })
    })
}

/// The tenant table, its id column and its name column, if registered.
fn tenant_naming() -> LcResult<Option<(String, String, Option<String>)>> {
    let v = crate::spi::json(
        "SELECT pg_catalog.jsonb_build_array(relation::text, id_column, name_column) \
           FROM lifecycle.tenant_tables",
        &[],
    )?;
    Ok(v.map(|v| {
        (
            v[0].as_str().unwrap_or_default().to_string(),
            v[1].as_str().unwrap_or_default().to_string(),
            v[2].as_str().map(str::to_string),
        )
    }))
}

fn tenant_rows(
    sql: &str,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> LcResult<Vec<(String, Option<String>)>> {
    Ok(crate::spi::json_rows(sql, args)?
        .iter()
        .map(|v| {
            (
                v[0].as_str().unwrap_or_default().to_string(),
                v[1].as_str().map(str::to_string),
            )
        })
        .collect())
}

/// (tenant id, display name) of the tenants `ids` that exist.
pub fn tenant_names(ids: &[String]) -> LcResult<Vec<(String, Option<String>)>> {
    let Some((table, id, name)) = tenant_naming()? else {
        return Ok(Vec::new());
    };
    let name = name
        .map(|n| format!("t.{}::text", quote_ident(&n)))
        .unwrap_or_else(|| "NULL::text".into());
    tenant_rows(
        &format!(
            "SELECT pg_catalog.jsonb_build_array(t.{id}::text, {name}) FROM {table} t \
              WHERE t.{id}::text OPERATOR(pg_catalog.=) ANY ($1::pg_catalog.text[])",
            id = quote_ident(&id)
        ),
        &[ids.to_vec().into()],
    )
}

/// (tenant id, display name) of the tenants whose id is `q` or whose name
/// contains it, ignoring case; at most `max_rows`.
pub fn find_tenants(q: &str, max_rows: i32) -> LcResult<Vec<(String, Option<String>)>> {
    let Some((table, id, name)) = tenant_naming()? else {
        return Ok(Vec::new());
    };
    let id = quote_ident(&id);
    let (name_expr, matches) = match name {
        Some(n) => {
            let n = format!("t.{}::text", quote_ident(&n));
            let m = format!(
                "OR pg_catalog.strpos(pg_catalog.lower({n}), pg_catalog.lower($1)) OPERATOR(pg_catalog.>) 0"
            );
            (n, m)
        }
        None => ("NULL::text".to_string(), String::new()),
    };
    tenant_rows(
        &format!(
            "SELECT pg_catalog.jsonb_build_array(t.{id}::text, {name_expr}) FROM {table} t \
              WHERE t.{id}::text OPERATOR(pg_catalog.=) $1 {matches} \
              ORDER BY 1 LIMIT $2"
        ),
        &[q.into(), max_rows.max(0).into()],
    )
}
