//! The data map: which tables hold personal data, which column ties a row to
//! a subject and to a tenant, and what erasure does with it. Registering a
//! table validates the request, stores it in the extension's configuration
//! tables and installs the table's guard triggers.

use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::json;

use crate::audit::{self, Event};
use crate::cache;
use crate::error::{LcError, LcResult};
use crate::guard;
use crate::holds::{self, quote_ident};
use crate::privilege;

pub const ON_ERASE: &[&str] = &["delete", "anonymize", "retain"];
pub const COLUMN_RULES: &[&str] = &[
    "keep",
    "clear",
    "redact",
    "deleted_name",
    "deleted_email",
    "hash",
    "empty",
    "storage_object",
];

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
    pub type_name: String,
    pub category: char,
    pub not_null: bool,
}

pub fn relation(oid: Option<pg_sys::Oid>, function: &str) -> LcResult<Relation> {
    let oid = oid.ok_or_else(|| LcError::null_value("tbl", function))?;
    let row = crate::spi::two::<String, String>(
        "SELECT $1::regclass::text, relkind::text FROM pg_catalog.pg_class WHERE oid = $1",
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

pub fn column(rel: &Relation, name: Option<&str>, param: &str, function: &str) -> LcResult<Column> {
    let name = name.ok_or_else(|| LcError::null_value(param, function))?;
    let row = Spi::connect(|client| {
        let t = client
            .select(
                "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod), t.typcategory::text, \
                        a.attnotnull \
                   FROM pg_catalog.pg_attribute a \
                   JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                  WHERE a.attrelid = $1 AND a.attname = $2::name AND a.attnum > 0 \
                    AND NOT a.attisdropped",
                None,
                &[rel.oid.into(), name.into()],
            )?
            .first();
        if t.is_empty() {
            return Ok::<_, LcError>(None);
        }
        Ok(Some((
            t.get::<String>(1)?.unwrap_or_default(),
            t.get::<String>(2)?.unwrap_or_default(),
            t.get::<bool>(3)?.unwrap_or(false),
        )))
    })?;
    let Some((type_name, category, not_null)) = row else {
        return Err(LcError::undefined_column(&rel.name, name).hint(format!(
            "Check the \"{param}\" argument against the columns of {}.",
            rel.name
        )));
    };
    Ok(Column {
        name: name.to_string(),
        type_name,
        category: category.chars().next().unwrap_or('X'),
        not_null,
    })
}

/// A column that ties rows to a subject or tenant must hold a key: a
/// number, a string or a uuid.
fn require_key_type(rel: &Relation, c: &Column, purpose: &str) -> LcResult<()> {
    let ok = matches!(c.category, 'N' | 'S') || c.type_name == "uuid";
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

/// Every scope type some registered relation maps to a column.
pub fn scope_types() -> LcResult<Vec<String>> {
    privilege::as_extension_owner(|| {
        Spi::connect(|client| {
            let mut out = Vec::new();
            for row in client.select(
                "SELECT DISTINCT scope_type FROM lifecycle.scope_columns ORDER BY 1",
                None,
                &[],
            )? {
                out.push(row.get::<String>(1)?.unwrap_or_default());
            }
            Ok(out)
        })
    })
}

/// Registered relations (quoted names) that map `scope_type`, in OID order.
pub fn relations_with_scope(scope_type: &str) -> LcResult<Vec<String>> {
    privilege::as_extension_owner(|| {
        Spi::connect(|client| {
            let mut out = Vec::new();
            for row in client.select(
                "SELECT relation::text FROM lifecycle.scope_columns WHERE scope_type = $1 \
                  GROUP BY relation ORDER BY relation::oid",
                None,
                &[scope_type.into()],
            )? {
                out.push(row.get::<String>(1)?.unwrap_or_default());
            }
            Ok(out)
        })
    })
}

/// (scope type, column) pairs of a registered relation.
pub fn scope_columns(relid: pg_sys::Oid) -> LcResult<Vec<(String, String)>> {
    privilege::as_extension_owner(|| {
        Spi::connect(|client| {
            let mut out = Vec::new();
            for row in client.select(cache::SCOPE_COLUMNS_SQL, None, &[relid.into()])? {
                out.push((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                ));
            }
            Ok(out)
        })
    })
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
        .hint("Unregister it with lifecycle.unregister_table() and register it again."));
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
    audit_change(event_type, rel, details)
}

pub struct SubjectRegistration<'a> {
    pub tbl: Option<pg_sys::Oid>,
    pub id_column: Option<&'a str>,
    pub subject_type: Option<&'a str>,
    pub tenant_column: Option<&'a str>,
    pub label: Option<&'a str>,
}

pub fn register_subject(r: SubjectRegistration<'_>) -> LcResult<()> {
    const F: &str = "lifecycle.register_subject()";
    let rel = relation(r.tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "register")?;
    let subject_type = require_text(r.subject_type, "subject_type", F)?;
    check_type_name(&subject_type, "subject_type")?;
    let id = column(&rel, r.id_column, "id_column", F)?;
    require_key_type(&rel, &id, "a subject id")?;
    if let Some(tc) = r.tenant_column {
        let c = column(&rel, Some(tc), "tenant_column", F)?;
        require_key_type(&rel, &c, "a tenant id")?;
    }
    let other = privilege::as_extension_owner(|| {
        crate::spi::one::<String>(
            "SELECT relation::text FROM lifecycle.subject_tables \
              WHERE subject_type = $1 AND relation <> $2",
            &[subject_type.as_str().into(), rel.oid.into()],
        )
    })?;
    if let Some(other) = other {
        return Err(LcError::data_map_conflict(format!(
            "subject type \"{subject_type}\" is already registered for table {other}"
        ))
        .detail("Each subject type has one subject table.")
        .hint("Pick another subject_type, or unregister the other table first."));
    }
    let wanted = json!({
        "subject_type": subject_type,
        "id_column": id.name,
        "tenant_column": r.tenant_column,
        "label": r.label,
    });
    if store(
        "subject_tables",
        &rel,
        wanted.clone(),
        &["tenant", "table", "membership"],
    )? {
        after_change(&rel, "data_map.subject_registered", wanted)?;
    }
    Ok(())
}

pub fn register_tenant(
    tbl: Option<pg_sys::Oid>,
    id_column: Option<&str>,
    label: Option<&str>,
) -> LcResult<()> {
    const F: &str = "lifecycle.register_tenant()";
    let rel = relation(tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "register")?;
    let id = column(&rel, id_column, "id_column", F)?;
    require_key_type(&rel, &id, "a tenant id")?;
    let other = privilege::as_extension_owner(|| {
        crate::spi::one::<String>(
            "SELECT relation::text FROM lifecycle.tenant_tables WHERE relation <> $1",
            &[rel.oid.into()],
        )
    })?;
    if let Some(other) = other {
        return Err(LcError::data_map_conflict(format!(
            "table {other} is already registered as the tenant table"
        ))
        .detail("The data map has one tenant table.")
        .hint("Unregister it with lifecycle.unregister_table() first."));
    }
    let wanted = json!({ "id_column": id.name, "label": label });
    if store(
        "tenant_tables",
        &rel,
        wanted.clone(),
        &["subject", "table", "membership"],
    )? {
        after_change(&rel, "data_map.tenant_registered", wanted)?;
    }
    Ok(())
}

pub struct TableRegistration<'a> {
    pub tbl: Option<pg_sys::Oid>,
    pub subject_type: Option<&'a str>,
    pub subject_column: Option<&'a str>,
    pub tenant_column: Option<&'a str>,
    pub on_erase: Option<&'a str>,
    pub retain_for: Option<pgrx::datum::Interval>,
    pub legal_basis: Option<&'a str>,
    pub soft_delete_column: Option<&'a str>,
    pub label: Option<&'a str>,
}

pub fn register_table(r: TableRegistration<'_>) -> LcResult<()> {
    const F: &str = "lifecycle.register_table()";
    let rel = relation(r.tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "register")?;
    let subject_type = require_text(r.subject_type, "subject_type", F)?;
    check_type_name(&subject_type, "subject_type")?;
    let subject = column(&rel, r.subject_column, "subject_column", F)?;
    require_key_type(&rel, &subject, "a subject id")?;
    if let Some(tc) = r.tenant_column {
        let c = column(&rel, Some(tc), "tenant_column", F)?;
        require_key_type(&rel, &c, "a tenant id")?;
    }
    let on_erase = require_text(r.on_erase, "on_erase", F)?;
    if !ON_ERASE.contains(&on_erase.as_str()) {
        return Err(
            LcError::invalid_parameter(format!("unknown on_erase action \"{on_erase}\""))
                .hint("Use 'delete', 'anonymize' or 'retain'."),
        );
    }
    let retain_text = match r.retain_for {
        Some(iv) => {
            let positive =
                crate::spi::one::<bool>("SELECT $1::interval > interval '0'", &[iv.into()])?
                    .unwrap_or(false);
            if !positive {
                return Err(
                    LcError::invalid_parameter("retain_for must be a positive interval")
                        .hint("For example retain_for => '7 years'."),
                );
            }
            crate::spi::one::<String>("SELECT $1::interval::text", &[iv.into()])?
        }
        None => None,
    };
    if on_erase == "retain" {
        if retain_text.is_none() {
            return Err(
                LcError::invalid_parameter("on_erase 'retain' requires retain_for")
                    .hint("Say how long the rows are kept, for example retain_for => '7 years'."),
            );
        }
        if r.legal_basis.is_none_or(|b| b.trim().is_empty()) {
            return Err(
                LcError::invalid_parameter("on_erase 'retain' requires legal_basis")
                    .hint("Name the law or contract that requires keeping the rows."),
            );
        }
    } else if retain_text.is_some() {
        return Err(LcError::invalid_parameter(format!(
            "retain_for only applies to on_erase 'retain', not '{on_erase}'"
        ))
        .hint("Pass on_erase => 'retain', or leave retain_for NULL."));
    }
    if let Some(sd) = r.soft_delete_column {
        let c = column(&rel, Some(sd), "soft_delete_column", F)?;
        let ok = matches!(
            c.type_name.as_str(),
            "timestamp with time zone" | "timestamp without time zone" | "date" | "boolean"
        );
        if !ok {
            return Err(LcError::datatype_mismatch(format!(
                "column \"{}\" of {} cannot be a soft-delete column",
                c.name, rel.name
            ))
            .detail(format!("Its type is {}.", c.type_name))
            .hint("Use a nullable timestamptz, timestamp or date column, or a boolean."));
        }
        if c.not_null && c.type_name != "boolean" {
            return Err(LcError::invalid_parameter(format!(
                "soft-delete column \"{}\" of {} must be nullable",
                c.name, rel.name
            ))
            .detail("NULL marks a row that is not deleted.")
            .hint(format!(
                "ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL;",
                rel.name,
                quote_ident(&c.name)
            )));
        }
    }
    let wanted = json!({
        "subject_type": subject_type,
        "subject_column": subject.name,
        "tenant_column": r.tenant_column,
        "on_erase": on_erase,
        "retain_for": retain_text,
        "legal_basis": r.legal_basis,
        "soft_delete_column": r.soft_delete_column,
        "label": r.label,
    });
    if store("tables", &rel, wanted.clone(), &["subject", "tenant"])? {
        after_change(&rel, "data_map.table_registered", wanted)?;
    }
    Ok(())
}

pub fn set_column_rule(
    tbl: Option<pg_sys::Oid>,
    col: Option<&str>,
    rule: Option<&str>,
) -> LcResult<()> {
    const F: &str = "lifecycle.set_column_rule()";
    let rel = relation(tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "change the data map of")?;
    if roles_of(rel.oid)?.is_empty() {
        return Err(LcError::not_registered(&rel.name));
    }
    let c = column(&rel, col, "col", F)?;
    let rule = require_text(rule, "rule", F)?;
    if !COLUMN_RULES.contains(&rule.as_str()) {
        return Err(
            LcError::invalid_parameter(format!("unknown column rule \"{rule}\""))
                .hint(format!("Use one of: {}.", COLUMN_RULES.join(", "))),
        );
    }
    if scope_columns(rel.oid)?.iter().any(|(_, k)| *k == c.name) {
        return Err(LcError::invalid_parameter(format!(
            "column \"{}\" of {} is a key column of the data map",
            c.name, rel.name
        ))
        .detail("Subject and tenant columns tie rows to their owner; erasure handles them itself.")
        .hint("Set rules on the personal columns only."));
    }
    let textual = c.category == 'S';
    let fits = match rule.as_str() {
        "keep" => true,
        "clear" => !c.not_null,
        "redact" | "deleted_name" | "deleted_email" | "hash" | "storage_object" => textual,
        "empty" => textual || c.category == 'A' || c.type_name == "jsonb" || c.type_name == "json",
        _ => false,
    };
    if !fits {
        let hint = if rule == "clear" {
            "The column is NOT NULL; use 'redact' or 'empty' instead, or drop the constraint."
                .to_string()
        } else {
            "Use 'clear' for columns of other types.".to_string()
        };
        return Err(LcError::datatype_mismatch(format!(
            "column rule \"{rule}\" does not fit column \"{}\" of {}",
            c.name, rel.name
        ))
        .detail(format!(
            "The column is of type {}{}.",
            c.type_name,
            if c.not_null { " NOT NULL" } else { "" }
        ))
        .hint(hint));
    }
    let me = privilege::current_user_name();
    let changed = privilege::as_extension_owner(|| {
        Ok(crate::spi::one::<bool>(
            "WITH up AS (\
               INSERT INTO lifecycle.column_rules (relation, column_name, rule, set_by) \
               VALUES ($1, $2::name, $3, $4) \
               ON CONFLICT (relation, column_name) DO UPDATE \
                  SET rule = EXCLUDED.rule, set_at = now(), set_by = EXCLUDED.set_by \
                WHERE column_rules.rule IS DISTINCT FROM EXCLUDED.rule \
               RETURNING 1) SELECT EXISTS (SELECT 1 FROM up)",
            &[
                rel.oid.into(),
                c.name.as_str().into(),
                rule.as_str().into(),
                me.as_str().into(),
            ],
        )?
        .unwrap_or(false))
    })?;
    if changed {
        cache::invalidate("column_rules")?;
        audit_change(
            "data_map.column_rule_set",
            &rel,
            json!({ "column": c.name, "rule": rule }),
        )?;
    }
    Ok(())
}

pub struct MembershipRegistration<'a> {
    pub tbl: Option<pg_sys::Oid>,
    pub subject_column: Option<&'a str>,
    pub tenant_column: Option<&'a str>,
    pub role_column: Option<&'a str>,
    pub admin_roles: Option<Vec<Option<String>>>,
    pub subject_type: Option<&'a str>,
}

pub fn register_membership(r: MembershipRegistration<'_>) -> LcResult<()> {
    const F: &str = "lifecycle.register_membership()";
    let rel = relation(r.tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "register")?;
    let subject_type = require_text(r.subject_type, "subject_type", F)?;
    check_type_name(&subject_type, "subject_type")?;
    let s = column(&rel, r.subject_column, "subject_column", F)?;
    require_key_type(&rel, &s, "a subject id")?;
    let t = column(&rel, r.tenant_column, "tenant_column", F)?;
    require_key_type(&rel, &t, "a tenant id")?;
    let role = column(&rel, r.role_column, "role_column", F)?;
    if role.category != 'S' {
        return Err(LcError::datatype_mismatch(format!(
            "role column \"{}\" of {} must be of a text type",
            role.name, rel.name
        ))
        .detail(format!("Its type is {}.", role.type_name)));
    }
    let admin_roles: Vec<String> = r
        .admin_roles
        .ok_or_else(|| LcError::null_value("admin_roles", F))?
        .into_iter()
        .flatten()
        .filter(|s| !s.trim().is_empty())
        .collect();
    if admin_roles.is_empty() {
        return Err(
            LcError::invalid_parameter("admin_roles must name at least one role")
                .hint("For example admin_roles => '{owner,admin}'."),
        );
    }
    let wanted = json!({
        "subject_type": subject_type,
        "subject_column": s.name,
        "tenant_column": t.name,
        "role_column": role.name,
        "admin_roles": admin_roles,
    });
    if store("memberships", &rel, wanted.clone(), &["subject", "tenant"])? {
        after_change(&rel, "data_map.membership_registered", wanted)?;
    }
    Ok(())
}

pub fn register_scope(
    tbl: Option<pg_sys::Oid>,
    scope_type: Option<&str>,
    col: Option<&str>,
) -> LcResult<()> {
    const F: &str = "lifecycle.register_scope()";
    let rel = relation(tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "change the data map of")?;
    if roles_of(rel.oid)?.is_empty() {
        return Err(LcError::not_registered(&rel.name));
    }
    let scope_type = require_text(scope_type, "scope_type", F)?;
    check_type_name(&scope_type, "scope_type")?;
    let c = column(&rel, col, "col", F)?;
    require_key_type(&rel, &c, "a scope id")?;
    let me = privilege::current_user_name();
    let inserted = privilege::as_extension_owner(|| {
        Ok(crate::spi::one::<bool>(
            "WITH ins AS (INSERT INTO lifecycle.scopes (relation, scope_type, column_name, registered_by) \
                          VALUES ($1, $2, $3::name, $4) ON CONFLICT DO NOTHING RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM ins)",
            &[rel.oid.into(), scope_type.as_str().into(), c.name.as_str().into(), me.as_str().into()],
        )?
        .unwrap_or(false))
    })?;
    if inserted {
        cache::invalidate("scopes")?;
        refresh_row_guard(rel.oid)?;
        audit_change(
            "data_map.scope_registered",
            &rel,
            json!({ "scope_type": scope_type, "column": c.name }),
        )?;
    }
    Ok(())
}

/// Remove a table from the data map and drop its guards. Refused while a
/// hold in force covers any of its rows.
pub fn unregister_table(tbl: Option<pg_sys::Oid>) -> LcResult<()> {
    const F: &str = "lifecycle.unregister_table()";
    let rel = relation(tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "unregister")?;
    if roles_of(rel.oid)?.is_empty() {
        return Err(LcError::not_registered(&rel.name));
    }
    if let Some((part, h)) = holds::hold_covering_tree(rel.oid, rel.oid)? {
        return Err(LcError::held_table_drop("unregister", &rel.name)
            .detail(format!(
                "Rows of {part} are under {}",
                crate::guard::lower_first(&holds::hold_detail(&h))
            ))
            .hint(holds::release_hint(&h)));
    }
    forget(rel.oid)?;
    drop_guards(rel.oid)?;
    audit_change("data_map.table_unregistered", &rel, json!({}))
}

/// Delete every data-map row of a relation.
pub fn forget(relid: pg_sys::Oid) -> LcResult<()> {
    privilege::as_extension_owner(|| {
        for t in [
            "column_rules",
            "scopes",
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
        for row in client.select(
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

/// The relation and every partition below it: (oid, quoted name).
pub fn partitions(relid: pg_sys::Oid) -> LcResult<Vec<(pg_sys::Oid, String)>> {
    Spi::connect(|client| {
        let mut out = Vec::new();
        for row in client.select(
            "SELECT p.relid, p.relid::pg_catalog.regclass::text \
               FROM pg_catalog.pg_partition_tree($1::pg_catalog.regclass) p \
              ORDER BY p.level, p.relid",
            None,
            &[relid.into()],
        )? {
            if let (Some(oid), Some(name)) = (row.get::<pg_sys::Oid>(1)?, row.get::<String>(2)?) {
                out.push((oid, name));
            }
        }
        if out.is_empty() {
            let name =
                crate::spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[relid.into()])?
                    .unwrap_or_default();
            out.push((relid, name));
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
    let scopes = scope_columns(relid)?;
    privilege::as_extension_owner(|| {
        guard::with_internal_write(|| {
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
    let scopes = scope_columns(relid)?;
    privilege::as_extension_owner(|| {
        guard::with_internal_write(|| {
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
    guard::with_internal_write(|| {
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
        guard::with_internal_write(|| {
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
