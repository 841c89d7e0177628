//! Registering subject, tenant and data tables, the links between them and
//! extra hold scopes; unregistering.

use pgrx::pg_sys;
use pgrx::prelude::*;
use serde_json::json;

use super::{
    after_change, audit_change, check_type_name, column, drop_guards, key_column,
    refresh_row_guard, relation, require_key_type, require_text, roles_of, store, warn_unindexed,
    Column, Relation,
};
use crate::cache;
use crate::error::{LcError, LcResult};
use crate::holds;
use crate::privilege;
use lifecycle_core::events;
use lifecycle_core::rules::OnErase;

pub struct SubjectRegistration<'a> {
    pub tbl: Option<pg_sys::Oid>,
    pub id_column: Option<&'a str>,
    pub subject_type: Option<&'a str>,
    pub tenant_column: Option<&'a str>,
    pub label: Option<&'a str>,
}

/// A column that names a tenant must compare with the tenant table's key.
fn require_tenant_key(rel: &Relation, c: &Column) -> LcResult<()> {
    require_key_type(rel, c, "a tenant id")?;
    require_matching_key(rel, c, key_column("tenant")?, "tenant")
}

/// `c` must hold values of the key of `key` (the registered table that
/// defines the scope), when there is one.
fn require_matching_key(
    rel: &Relation,
    c: &Column,
    key: Option<(String, Column)>,
    scope: &str,
) -> LcResult<()> {
    match key {
        Some((table, k)) if !c.key_compatible(&k) => Err(LcError::datatype_mismatch(format!(
            "column \"{}\" of {} cannot hold {scope} ids",
            c.name, rel.name
        ))
        .detail(format!(
            "It is of type {}, and {scope} ids are {}.{} values of type {}.",
            c.type_name,
            table,
            quote(&k.name),
            k.type_name
        ))
        .hint(if scope == "tenant" {
            "Name a column of the tenant key's type, or reach the tenant through a parent with tenant_via => '<column referencing the parent>'."
        } else {
            "Name a column of the subject key's type, or reach the subject through a parent with subject_via => '<column referencing the parent>'."
        })),
        _ => Ok(()),
    }
}

fn quote(s: &str) -> String {
    crate::namespace::quote_ident(s)
}

pub fn register_subject(r: SubjectRegistration<'_>) -> LcResult<()> {
    const F: &str = "lifecycle.register_subject()";
    let rel = relation(r.tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "register")?;
    let subject_type = require_text(r.subject_type, "subject_type", F)?;
    check_type_name(&subject_type, "subject_type")?;
    let id = column(&rel, r.id_column, "id_column", F)?;
    require_key_type(&rel, &id, "a subject id")?;
    let mut keys = vec![id.name.clone()];
    if let Some(tc) = r.tenant_column {
        let c = column(&rel, Some(tc), "tenant_column", F)?;
        require_tenant_key(&rel, &c)?;
        keys.push(c.name);
    }
    let other = privilege::as_extension_owner(|| {
        crate::spi::one::<String>(
            "SELECT relation::text FROM lifecycle.subject_tables \
              WHERE subject_type OPERATOR(pg_catalog.=) $1 AND relation OPERATOR(pg_catalog.<>) $2",
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
        after_change(&rel, events::DATA_MAP_SUBJECT_REGISTERED, wanted)?;
        warn_unindexed(&rel, &keys)?;
    }
    Ok(())
}

pub fn register_tenant(
    tbl: Option<pg_sys::Oid>,
    id_column: Option<&str>,
    name_column: Option<&str>,
    label: Option<&str>,
) -> LcResult<()> {
    const F: &str = "lifecycle.register_tenant()";
    let rel = relation(tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "register")?;
    let id = column(&rel, id_column, "id_column", F)?;
    require_key_type(&rel, &id, "a tenant id")?;
    let name = match name_column {
        None => None,
        Some(n) => {
            let c = column(&rel, Some(n), "name_column", F)?;
            if !c.is_textual() {
                return Err(LcError::datatype_mismatch(format!(
                    "name_column \"{}\" of {} is not text",
                    c.name, rel.name
                ))
                .detail(format!("Its type is {}.", c.type_name))
                .hint("Name the column that holds the tenant's display name."));
            }
            Some(c.name)
        }
    };
    let other = privilege::as_extension_owner(|| {
        crate::spi::one::<String>(
            "SELECT relation::text FROM lifecycle.tenant_tables \
              WHERE relation OPERATOR(pg_catalog.<>) $1",
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
    let wanted = json!({ "id_column": id.name, "name_column": name, "label": label });
    if store(
        "tenant_tables",
        &rel,
        wanted.clone(),
        &["subject", "table", "membership"],
    )? {
        after_change(&rel, events::DATA_MAP_TENANT_REGISTERED, wanted)?;
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
    pub tenant_via: Option<&'a str>,
    pub subject_via: Option<&'a str>,
    pub redact_mentions: Option<bool>,
}

/// Soft-delete columns: a nullable timestamp or date (NULL: live), a
/// boolean (true: deleted), or an integer or numeric epoch in milliseconds
/// (0 or NULL: live).
fn check_soft_delete(rel: &Relation, c: &Column) -> LcResult<()> {
    let numeric = c.category == 'N';
    let ok = matches!(
        c.base_type,
        t if t == pg_sys::TIMESTAMPTZOID || t == pg_sys::TIMESTAMPOID || t == pg_sys::DATEOID
            || t == pg_sys::BOOLOID
    ) || numeric;
    if !ok {
        return Err(LcError::datatype_mismatch(format!(
            "column \"{}\" of {} cannot be a soft-delete column",
            c.name, rel.name
        ))
        .detail(format!("Its type is {}.", c.type_name))
        .hint("Use a nullable timestamptz, timestamp or date column, a boolean, or an integer holding milliseconds since the epoch (0 for rows that are not deleted)."));
    }
    let nullable_needed = !numeric && c.base_type != pg_sys::BOOLOID;
    if c.not_null && nullable_needed {
        return Err(LcError::invalid_parameter(format!(
            "soft-delete column \"{}\" of {} must be nullable",
            c.name, rel.name
        ))
        .detail("NULL marks a row that is not deleted.")
        .hint(format!(
            "ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL;",
            rel.name,
            quote(&c.name)
        )));
    }
    Ok(())
}

/// The parent a column of `rel` references: a declared link, or a foreign
/// key on that column alone. Returns (parent oid, parent name, parent key,
/// source).
pub fn resolve_link(
    rel: &Relation,
    col: &str,
) -> LcResult<Option<(pg_sys::Oid, String, String, &'static str)>> {
    let declared = privilege::as_extension_owner(|| {
        crate::spi::json(
            "SELECT pg_catalog.jsonb_build_array(l.parent::pg_catalog.oid::pg_catalog.int8, l.parent::text, l.parent_column) \
               FROM lifecycle.links l \
              WHERE l.relation OPERATOR(pg_catalog.=) $1 AND l.column_name OPERATOR(pg_catalog.=) $2::pg_catalog.name",
            &[rel.oid.into(), col.into()],
        )
    })?;
    if let Some(v) = declared {
        return Ok(Some((
            pg_sys::Oid::from(v[0].as_u64().unwrap_or_default() as u32),
            v[1].as_str().unwrap_or_default().to_string(),
            v[2].as_str().unwrap_or_default().to_string(),
            "declared",
        )));
    }
    let fk = crate::spi::json(
        "SELECT pg_catalog.jsonb_build_array(c.confrelid::pg_catalog.int8, c.confrelid::pg_catalog.regclass::text, pa.attname::text) \
           FROM pg_catalog.pg_constraint c \
           JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.conrelid \
                                         AND a.attnum OPERATOR(pg_catalog.=) c.conkey[1] \
           JOIN pg_catalog.pg_attribute pa ON pa.attrelid OPERATOR(pg_catalog.=) c.confrelid \
                                          AND pa.attnum OPERATOR(pg_catalog.=) c.confkey[1] \
          WHERE c.conrelid OPERATOR(pg_catalog.=) $1 AND c.contype OPERATOR(pg_catalog.=) 'f' \
            AND pg_catalog.cardinality(c.conkey) OPERATOR(pg_catalog.=) 1 \
            AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name \
          ORDER BY c.conname LIMIT 1",
        &[rel.oid.into(), col.into()],
    )?;
    Ok(fk.map(|v| {
        (
            pg_sys::Oid::from(v[0].as_u64().unwrap_or_default() as u32),
            v[1].as_str().unwrap_or_default().to_string(),
            v[2].as_str().unwrap_or_default().to_string(),
            "foreign key",
        )
    }))
}

/// A path through a parent: `col` of `rel` references a registered parent
/// that carries `scope` itself (a subject column of `subject_type`, or a
/// tenant column). Returns the parent and key, to be recorded as a link.
fn resolve_path(
    rel: &Relation,
    col: &Column,
    scope: &str,
    param: &str,
) -> LcResult<(pg_sys::Oid, String, String, &'static str)> {
    let Some((parent, parent_name, key, source)) = resolve_link(rel, &col.name)? else {
        return Err(LcError::invalid_parameter(format!(
            "column \"{}\" of {} does not reference another table",
            col.name, rel.name
        ))
        .detail(format!(
            "{param} names the column that leads to the parent carrying the {scope}; it has no foreign key and no declared link."
        ))
        .hint(format!(
            "Declare the link first: SELECT lifecycle.register_link('{}', '{}', '<parent table>', '<parent key column>');",
            rel.name, col.name
        )));
    };
    // The parent must carry the scope: a column of its own, or a path of
    // its own (comments -> issues -> projects -> workspaces), registered
    // first, so that a path never loops back.
    let carries = privilege::as_extension_owner(|| {
        Ok(crate::spi::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM lifecycle.scope_columns \
                             WHERE relation OPERATOR(pg_catalog.=) $1 AND scope_type OPERATOR(pg_catalog.=) $2)",
            &[parent.into(), scope.into()],
        )?
        .unwrap_or(false))
    })?;
    if !carries {
        return Err(LcError::invalid_parameter(format!(
            "parent {parent_name} of {} does not carry the {scope}",
            rel.name
        ))
        .detail(format!(
            "{}.{} references {parent_name}.{}, but {parent_name} is registered with neither a {scope} column nor a path to one.",
            rel.name,
            quote(&col.name),
            quote(&key)
        ))
        .hint(format!(
            "Register {parent_name} first, with its {scope} column or its own path to it."
        )));
    }
    let parent_rel = Relation {
        oid: parent,
        name: parent_name.clone(),
        kind: 'r',
    };
    let parent_key = column(
        &parent_rel,
        Some(&key),
        "parent_column",
        "lifecycle.register_link()",
    )?;
    if !col.key_compatible(&parent_key) {
        return Err(LcError::datatype_mismatch(format!(
            "column \"{}\" of {} cannot reference {parent_name}.{}",
            col.name,
            rel.name,
            quote(&key)
        ))
        .detail(format!(
            "Their types differ: {} and {}.",
            col.type_name, parent_key.type_name
        )));
    }
    Ok((parent, parent_name, key, source))
}

fn store_link(
    rel: &Relation,
    col: &str,
    parent: pg_sys::Oid,
    key: &str,
    source: &str,
) -> LcResult<bool> {
    let me = privilege::current_user_name();
    let inserted = privilege::as_extension_owner(|| {
        Ok(crate::spi::one::<bool>(
            "WITH ins AS (INSERT INTO lifecycle.links (relation, column_name, parent, parent_column, source, registered_by) \
                          VALUES ($1, $2::pg_catalog.name, $3, $4::pg_catalog.name, $5, $6) \
                          ON CONFLICT (relation, column_name) DO NOTHING RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM ins)",
            &[
                rel.oid.into(),
                col.into(),
                parent.into(),
                key.into(),
                source.into(),
                me.as_str().into(),
            ],
        )?
        .unwrap_or(false))
    })?;
    if inserted {
        cache::invalidate("links")?;
    }
    Ok(inserted)
}

pub fn register_table(r: TableRegistration<'_>) -> LcResult<()> {
    const F: &str = "lifecycle.register_table()";
    let rel = relation(r.tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "register")?;
    let subject_type = require_text(r.subject_type, "subject_type", F)?;
    check_type_name(&subject_type, "subject_type")?;
    let mut keys = Vec::new();
    let mut paths = Vec::new();
    // The subject: a column of its own, or a path through a parent.
    match (r.subject_column, r.subject_via) {
        (Some(_), Some(_)) => {
            return Err(LcError::invalid_parameter(
                "subject_column and subject_via exclude each other",
            )
            .hint("Name the subject column if the table has one; subject_via only for rows owned through a parent."))
        }
        (None, None) => return Err(LcError::null_value("subject_column", F)),
        (Some(sc), None) => {
            let subject = column(&rel, Some(sc), "subject_column", F)?;
            require_key_type(&rel, &subject, "a subject id")?;
            require_matching_key(&rel, &subject, key_column(&subject_type)?, &subject_type)?;
            keys.push(subject.name);
        }
        (None, Some(via)) => {
            let c = column(&rel, Some(via), "subject_via", F)?;
            let (parent, _, key, source) = resolve_path(&rel, &c, &subject_type, "subject_via")?;
            keys.push(c.name.clone());
            paths.push((c.name, parent, key, source));
        }
    }
    match (r.tenant_column, r.tenant_via) {
        (Some(_), Some(_)) => {
            return Err(LcError::invalid_parameter(
                "tenant_column and tenant_via exclude each other",
            )
            .hint("Name the tenant column if the table has one; tenant_via only when the tenant is reached through a parent."))
        }
        (Some(tc), None) => {
            let c = column(&rel, Some(tc), "tenant_column", F)?;
            require_tenant_key(&rel, &c)?;
            keys.push(c.name);
        }
        (None, Some(via)) => {
            let c = column(&rel, Some(via), "tenant_via", F)?;
            let (parent, _, key, source) = resolve_path(&rel, &c, "tenant", "tenant_via")?;
            keys.push(c.name.clone());
            paths.push((c.name, parent, key, source));
        }
        (None, None) => {}
    }
    let on_erase: OnErase = require_text(r.on_erase, "on_erase", F)?.parse().map_err(
        |e: lifecycle_core::UnknownName| {
            LcError::invalid_parameter(e.to_string()).hint("Use 'delete', 'anonymize' or 'retain'.")
        },
    )?;
    let retain_text = match r.retain_for {
        Some(iv) => {
            let positive = crate::spi::one::<bool>(
                "SELECT $1::pg_catalog.interval OPERATOR(pg_catalog.>) '0'::pg_catalog.interval",
                &[iv.into()],
            )?
            .unwrap_or(false);
            if !positive {
                return Err(
                    LcError::invalid_parameter("retain_for must be a positive interval")
                        .hint("For example retain_for => '7 years'."),
                );
            }
            crate::spi::one::<String>("SELECT $1::pg_catalog.interval::text", &[iv.into()])?
        }
        None => None,
    };
    if on_erase == OnErase::Retain {
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
        check_soft_delete(&rel, &c)?;
    }
    let wanted = json!({
        "subject_type": subject_type,
        "subject_column": r.subject_column,
        "subject_via": r.subject_via,
        "tenant_column": r.tenant_column,
        "tenant_via": r.tenant_via,
        "on_erase": on_erase.as_str(),
        "retain_for": retain_text,
        "legal_basis": r.legal_basis,
        "soft_delete_column": r.soft_delete_column,
        "label": r.label,
        "redact_mentions": r.redact_mentions.unwrap_or(false),
    });
    // The links of the paths first: the view of scope columns reads them.
    for (col, parent, key, source) in &paths {
        store_link(&rel, col, *parent, key, source)?;
    }
    if store("tables", &rel, wanted.clone(), &["subject", "tenant"])? {
        after_change(&rel, events::DATA_MAP_TABLE_REGISTERED, wanted)?;
        warn_unindexed(&rel, &keys)?;
    }
    Ok(())
}

/// Declare that `col` of `tbl` references `parent`'s key `parent_column`
/// (by default the parent's registered id column, or its single-column
/// primary key): a foreign key the schema does not declare. Erasure treats
/// it like one (order, referencing rows), and paths through parents may
/// use it.
pub fn register_link(
    tbl: Option<pg_sys::Oid>,
    col: Option<&str>,
    parent: Option<pg_sys::Oid>,
    parent_column: Option<&str>,
) -> LcResult<()> {
    const F: &str = "lifecycle.register_link()";
    let rel = relation(tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "change the data map of")?;
    let c = column(&rel, col, "col", F)?;
    require_key_type(&rel, &c, "a key")?;
    let parent_rel = relation(parent, F)?;
    if roles_of(parent_rel.oid)?.is_empty() {
        return Err(LcError::not_registered(&parent_rel.name)
            .detail("A link leads to a table of the data map."));
    }
    let key_name = match parent_column {
        Some(k) => k.to_string(),
        None => default_key(&parent_rel)?.ok_or_else(|| {
            LcError::invalid_parameter(format!(
                "table {} has no single-column key to link to",
                parent_rel.name
            ))
            .hint("Name it with parent_column => '<column>'.")
        })?,
    };
    let key = column(&parent_rel, Some(&key_name), "parent_column", F)?;
    if !c.key_compatible(&key) {
        return Err(LcError::datatype_mismatch(format!(
            "column \"{}\" of {} cannot reference {}.{}",
            c.name,
            rel.name,
            parent_rel.name,
            quote(&key.name)
        ))
        .detail(format!(
            "Their types differ: {} and {}.",
            c.type_name, key.type_name
        )));
    }
    if let Some((p, pname, k, _)) = resolve_link(&rel, &c.name)? {
        if p != parent_rel.oid || k != key.name {
            return Err(LcError::data_map_conflict(format!(
                "column \"{}\" of {} already references {pname}.{}",
                c.name,
                rel.name,
                quote(&k)
            ))
            .hint("Unregister the table to change its links."));
        }
    }
    if store_link(&rel, &c.name, parent_rel.oid, &key.name, "declared")? {
        audit_change(
            events::DATA_MAP_LINK_REGISTERED,
            &rel,
            json!({ "column": c.name, "parent": parent_rel.name, "parent_column": key.name }),
        )?;
    }
    Ok(())
}

/// The registered id column of a subject or tenant table, or the table's
/// single-column primary key.
fn default_key(rel: &Relation) -> LcResult<Option<String>> {
    privilege::as_extension_owner(|| {
        crate::spi::one::<String>(
            "SELECT coalesce( \
                 (SELECT id_column::text FROM lifecycle.subject_tables WHERE relation OPERATOR(pg_catalog.=) $1), \
                 (SELECT id_column::text FROM lifecycle.tenant_tables WHERE relation OPERATOR(pg_catalog.=) $1), \
                 (SELECT a.attname::text FROM pg_catalog.pg_index i \
                    JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid \
                                                  AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0] \
                   WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisprimary \
                     AND i.indnkeyatts OPERATOR(pg_catalog.=) 1))",
            &[rel.oid.into()],
        )
    })
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
                          VALUES ($1, $2, $3::pg_catalog.name, $4) ON CONFLICT DO NOTHING RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM ins)",
            &[rel.oid.into(), scope_type.as_str().into(), c.name.as_str().into(), me.as_str().into()],
        )?
        .unwrap_or(false))
    })?;
    if inserted {
        cache::invalidate("scopes")?;
        refresh_row_guard(rel.oid)?;
        audit_change(
            events::DATA_MAP_SCOPE_REGISTERED,
            &rel,
            json!({ "scope_type": scope_type, "column": c.name }),
        )?;
        warn_unindexed(&rel, &[c.name])?;
    }
    Ok(())
}

/// Remove a table from the data map and drop its guards. Refused while a
/// hold in force covers any of its rows, and while another registered table
/// reaches its subject or tenant through it. A membership registration is
/// not a table registration: it stays (see `unregister_membership`).
pub fn unregister_table(tbl: Option<pg_sys::Oid>) -> LcResult<()> {
    const F: &str = "lifecycle.unregister_table()";
    let rel = relation(tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "unregister")?;
    let roles = roles_of(rel.oid)?;
    if roles.is_empty() {
        return Err(LcError::not_registered(&rel.name));
    }
    if roles == ["membership"] {
        return Err(LcError::not_registered(&rel.name)
            .detail(format!(
                "{} is registered as a membership table only.",
                rel.name
            ))
            .hint("Remove it with lifecycle.unregister_membership()."));
    }
    if let Some((part, h)) = holds::hold_covering_tree(rel.oid, rel.oid)? {
        return Err(LcError::held_table_drop("unregister", &rel.name)
            .detail(format!(
                "Rows of {part} are under {}",
                crate::error::lower_first(&holds::hold_detail(&h))
            ))
            .hint(holds::release_hint(&h))
            .blocked_by(&h.id));
    }
    refuse_if_a_path_leads_here(&rel)?;
    let keeps_membership = roles.contains(&"membership");
    privilege::as_extension_owner(|| {
        for t in [
            "column_rules",
            "column_exports",
            "scopes",
            "links",
            "tables",
            "tenant_tables",
            "subject_tables",
        ] {
            Spi::run_with_args(
                &format!("DELETE FROM lifecycle.{t} WHERE relation::pg_catalog.oid OPERATOR(pg_catalog.=) $1"),
                &[rel.oid.into()],
            )?;
        }
        Ok(())
    })?;
    cache::invalidate("tables")?;
    if keeps_membership {
        refresh_row_guard(rel.oid)?;
        pgrx::notice!(
            "{} stays registered as a membership table; remove that with lifecycle.unregister_membership()",
            rel.name
        );
    } else {
        drop_guards(rel.oid)?;
    }
    audit_change(
        events::DATA_MAP_TABLE_UNREGISTERED,
        &rel,
        json!({ "membership_kept": keeps_membership }),
    )
}

/// Refused while another registration reaches its subject or tenant
/// through `rel` (a path through a parent).
fn refuse_if_a_path_leads_here(rel: &Relation) -> LcResult<()> {
    let child = privilege::as_extension_owner(|| {
        crate::spi::one::<String>(
            "SELECT t.relation::text FROM lifecycle.tables t \
               JOIN lifecycle.links l ON l.relation OPERATOR(pg_catalog.=) t.relation \
                                     AND l.column_name OPERATOR(pg_catalog.=) ANY (ARRAY[t.tenant_via, t.subject_via]) \
              WHERE l.parent OPERATOR(pg_catalog.=) $1 AND t.relation OPERATOR(pg_catalog.<>) $1 \
              ORDER BY 1 LIMIT 1",
            &[rel.oid.into()],
        )
    })?;
    match child {
        None => Ok(()),
        Some(child) => Err(LcError::data_map_conflict(format!(
            "table {} is the parent through which {child} reaches its subject or tenant",
            rel.name
        ))
        .hint(format!("Unregister {child} first."))),
    }
}
