//! The plan's input read from the database: every registered table with its
//! registrations and column facts, and every foreign key or declared link
//! that points at one of them. Two queries per job.

use pgrx::pg_sys;
use serde_json::Value;

use crate::error::LcResult;
use crate::plan::{
    Admin, Catalog, ColumnFacts, DataTable, Key, MembershipTable, Reference, SoftDelete,
    SubjectTable, Table, ValueKind,
};
use crate::spi;
use lifecycle_core::rules::{ColumnRule, OnErase};

const TABLES_SQL: &str = "\
    SELECT pg_catalog.jsonb_build_object( \
        'oid', d.relation::pg_catalog.oid::pg_catalog.int8, \
        'name', d.relation::pg_catalog.regclass::text, \
        'label', d.label, \
        'subject', (SELECT pg_catalog.to_jsonb(s) FROM lifecycle.subject_tables s \
                     WHERE s.relation OPERATOR(pg_catalog.=) d.relation), \
        'tenant', (SELECT te.id_column FROM lifecycle.tenant_tables te \
                    WHERE te.relation OPERATOR(pg_catalog.=) d.relation), \
        'data', (SELECT pg_catalog.to_jsonb(t) FROM lifecycle.tables t \
                  WHERE t.relation OPERATOR(pg_catalog.=) d.relation), \
        'membership', (SELECT pg_catalog.to_jsonb(m) FROM lifecycle.memberships m \
                        WHERE m.relation OPERATOR(pg_catalog.=) d.relation), \
        'rules', d.column_rules, \
        'extra_scopes', d.extra_scopes, \
        'links', d.links, \
        'columns', (SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object( \
                        'name', a.attname::text, \
                        'type_name', pg_catalog.format_type(a.atttypid, a.atttypmod), \
                        'base_type_name', pg_catalog.quote_ident(bn.nspname) OPERATOR(pg_catalog.||) '.' \
                                          OPERATOR(pg_catalog.||) pg_catalog.quote_ident(bt.typname), \
                        'base_oid', bt.oid::pg_catalog.int8, \
                        'base_in_catalog', bn.nspname OPERATOR(pg_catalog.=) 'pg_catalog', \
                        'category', bt.typcategory::text, \
                        'not_null', a.attnotnull, \
                        'unique', EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
                                           WHERE i.indrelid OPERATOR(pg_catalog.=) a.attrelid AND i.indisunique \
                                             AND i.indnkeyatts OPERATOR(pg_catalog.=) 1 \
                                             AND i.indkey[0] OPERATOR(pg_catalog.=) a.attnum \
                                             AND i.indpred IS NULL), \
                        'max_chars', CASE WHEN bt.oid OPERATOR(pg_catalog.=) ANY ('{1042,1043}'::pg_catalog.oid[]) \
                                           AND a.atttypmod OPERATOR(pg_catalog.>) 4 \
                                          THEN a.atttypmod OPERATOR(pg_catalog.-) 4 END, \
                        'is_key', EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k \
                                           WHERE k.conrelid OPERATOR(pg_catalog.=) a.attrelid \
                                             AND k.contype OPERATOR(pg_catalog.=) ANY ('{p,f}'::\"char\"[]) \
                                             AND a.attnum OPERATOR(pg_catalog.=) ANY (k.conkey)) \
                                  OR EXISTS (SELECT 1 FROM lifecycle.links l \
                                              WHERE l.relation OPERATOR(pg_catalog.=) a.attrelid \
                                                AND l.column_name OPERATOR(pg_catalog.=) a.attname)) \
                        ORDER BY a.attnum) \
                      FROM pg_catalog.pg_attribute a \
                      JOIN pg_catalog.pg_type at ON at.oid OPERATOR(pg_catalog.=) a.atttypid \
                      JOIN pg_catalog.pg_type bt ON bt.oid OPERATOR(pg_catalog.=) \
                           CASE WHEN at.typtype OPERATOR(pg_catalog.=) 'd' THEN at.typbasetype ELSE at.oid END \
                      JOIN pg_catalog.pg_namespace bn ON bn.oid OPERATOR(pg_catalog.=) bt.typnamespace \
                     WHERE a.attrelid OPERATOR(pg_catalog.=) d.relation AND a.attnum OPERATOR(pg_catalog.>) 0 \
                       AND NOT a.attisdropped)) \
      FROM lifecycle.data_map d \
     ORDER BY d.relation::pg_catalog.regclass::text";

/// Foreign keys (declared on partition roots) and declared links pointing
/// at one of `$1`.
const REFS_SQL: &str = "\
    SELECT pg_catalog.jsonb_build_object( \
        'name', c.conname::text, \
        'child', c.conrelid::pg_catalog.int8, \
        'child_name', c.conrelid::pg_catalog.regclass::text, \
        'parent', c.confrelid::pg_catalog.int8, \
        'cols', (SELECT pg_catalog.jsonb_agg(pg_catalog.quote_ident(a.attname) ORDER BY k.i) \
                   FROM pg_catalog.unnest(c.conkey) WITH ORDINALITY k(n, i) \
                   JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.conrelid \
                                                 AND a.attnum OPERATOR(pg_catalog.=) k.n), \
        'parent_cols', (SELECT pg_catalog.jsonb_agg(pg_catalog.quote_ident(a.attname) ORDER BY k.i) \
                   FROM pg_catalog.unnest(c.confkey) WITH ORDINALITY k(n, i) \
                   JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.confrelid \
                                                 AND a.attnum OPERATOR(pg_catalog.=) k.n), \
        'nullable', (SELECT pg_catalog.bool_and(NOT a.attnotnull) FROM pg_catalog.unnest(c.conkey) k(n) \
                   JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) c.conrelid \
                                                 AND a.attnum OPERATOR(pg_catalog.=) k.n), \
        'declared', false) \
      FROM pg_catalog.pg_constraint c \
     WHERE c.contype OPERATOR(pg_catalog.=) 'f' AND c.conparentid OPERATOR(pg_catalog.=) 0 \
       AND c.confrelid OPERATOR(pg_catalog.=) ANY ($1) \
    UNION ALL \
    SELECT pg_catalog.jsonb_build_object( \
        'name', 'link ' OPERATOR(pg_catalog.||) l.relation::text OPERATOR(pg_catalog.||) '.' \
                OPERATOR(pg_catalog.||) pg_catalog.quote_ident(l.column_name), \
        'child', l.relation::pg_catalog.oid::pg_catalog.int8, \
        'child_name', l.relation::text, \
        'parent', l.parent::pg_catalog.oid::pg_catalog.int8, \
        'cols', pg_catalog.jsonb_build_array(pg_catalog.quote_ident(l.column_name)), \
        'parent_cols', pg_catalog.jsonb_build_array(pg_catalog.quote_ident(l.parent_column)), \
        'nullable', NOT a.attnotnull, \
        'declared', true) \
      FROM lifecycle.links l \
      JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) l.relation \
                                    AND a.attname OPERATOR(pg_catalog.=) l.column_name \
     WHERE l.source OPERATOR(pg_catalog.=) 'declared'";

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn s(v: &Value, k: &str) -> Option<String> {
    v[k].as_str().map(str::to_string)
}

fn column(v: &Value) -> LcResult<ColumnFacts> {
    let base = pg_sys::Oid::from(v["base_oid"].as_u64().unwrap_or_default() as u32);
    let category = v["category"].as_str().and_then(|c| c.chars().next());
    let kind = ValueKind::of(base.to_u32(), category.unwrap_or('X'));
    // The type's own equality, schema-qualified: pg_catalog's for the
    // built-in types, looked up for the others (citext...).
    let eq = if v["base_in_catalog"].as_bool().unwrap_or(true) {
        "OPERATOR(pg_catalog.=)".to_string()
    } else {
        crate::namespace::equality_operator(base)?
    };
    Ok(ColumnFacts {
        name: s(v, "name").unwrap_or_default(),
        type_name: s(v, "type_name").unwrap_or_default(),
        base_type_name: s(v, "base_type_name").unwrap_or_default(),
        eq,
        kind,
        not_null: v["not_null"].as_bool().unwrap_or(false),
        unique: v["unique"].as_bool().unwrap_or(false),
        max_chars: v["max_chars"].as_i64().map(|n| n as i32),
        is_key: v["is_key"].as_bool().unwrap_or(false),
    })
}

fn key(
    column: Option<String>,
    via: Option<String>,
    links: &Value,
    catalog_columns: &[(String, u32, String)],
) -> Option<Key> {
    if let Some(c) = column {
        return Some(Key::Column(c));
    }
    let via = via?;
    let link = links
        .as_array()?
        .iter()
        .find(|l| l["column"].as_str() == Some(via.as_str()))?;
    let parent_name = link["parent"].as_str()?;
    let (_, parent, _) = catalog_columns.iter().find(|(n, _, _)| n == parent_name)?;
    Some(Key::Via {
        column: via,
        parent: *parent,
        parent_key: link["parent_column"].as_str()?.to_string(),
        // The parent's own scope column is filled in by `resolve_paths`.
        parent_column: String::new(),
    })
}

fn soft_delete(col: Option<String>, columns: &[ColumnFacts]) -> Option<(String, SoftDelete)> {
    let col = col?;
    let kind = match columns.iter().find(|c| c.name == col).map(|c| c.kind) {
        Some(ValueKind::Bool) => SoftDelete::Flag,
        Some(ValueKind::Number) => SoftDelete::Epoch,
        _ => SoftDelete::Nullable,
    };
    Some((col, kind))
}

/// The whole data map as the plan reads it.
pub fn load() -> LcResult<Catalog> {
    let rows = spi::json_rows(TABLES_SQL, &[])?;
    let names: Vec<(String, u32, String)> = rows
        .iter()
        .map(|v| {
            (
                s(v, "name").unwrap_or_default(),
                v["oid"].as_u64().unwrap_or_default() as u32,
                String::new(),
            )
        })
        .collect();
    let mut tables = Vec::with_capacity(rows.len());
    for v in &rows {
        let columns = v["columns"]
            .as_array()
            .map(|a| a.iter().map(column).collect::<LcResult<Vec<_>>>())
            .transpose()?
            .unwrap_or_default();
        let subject = v["subject"].as_object().map(|_| SubjectTable {
            subject_type: s(&v["subject"], "subject_type").unwrap_or_default(),
            id_column: s(&v["subject"], "id_column").unwrap_or_default(),
            tenant_column: s(&v["subject"], "tenant_column"),
        });
        let data = match v["data"].as_object() {
            None => None,
            Some(_) => {
                let d = &v["data"];
                let subject_key = key(
                    s(d, "subject_column"),
                    s(d, "subject_via"),
                    &v["links"],
                    &names,
                );
                subject_key.map(|subject| DataTable {
                    subject_type: s(d, "subject_type").unwrap_or_default(),
                    subject,
                    tenant: key(
                        s(d, "tenant_column"),
                        s(d, "tenant_via"),
                        &v["links"],
                        &names,
                    ),
                    // Checked when stored (lifecycle.tables has a CHECK).
                    on_erase: s(d, "on_erase")
                        .and_then(|o| o.parse().ok())
                        .unwrap_or(OnErase::Delete),
                    retain_for: s(d, "retain_for"),
                    legal_basis: s(d, "legal_basis"),
                    soft_delete: soft_delete(s(d, "soft_delete_column"), &columns),
                    redact_mentions: d["redact_mentions"].as_bool().unwrap_or(false),
                })
            }
        };
        let membership = v["membership"].as_object().map(|_| {
            let m = &v["membership"];
            MembershipTable {
                subject_type: s(m, "subject_type").unwrap_or_default(),
                subject_column: s(m, "subject_column").unwrap_or_default(),
                tenant_column: s(m, "tenant_column").unwrap_or_default(),
                role_column: s(m, "role_column").unwrap_or_default(),
                admin: Admin::from_registration(
                    s(m, "role_kind").as_deref().unwrap_or("exact"),
                    s(m, "role_separator").as_deref(),
                    strings(&m["admin_roles"]),
                ),
                active_column: s(m, "active_column"),
            }
        });
        let mut rules: Vec<(String, ColumnRule)> = v["rules"]
            .as_object()
            .map(|o| {
                o.iter()
                    .filter_map(|(c, r)| Some((c.clone(), r.as_str()?.parse().ok()?)))
                    .filter(|(_, r)| *r != ColumnRule::Keep)
                    .collect()
            })
            .unwrap_or_default();
        rules.sort();
        let extra_scopes = v["extra_scopes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| {
                        Some((
                            x["scope_type"].as_str()?.to_string(),
                            x["column"].as_str()?.to_string(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        tables.push(Table {
            oid: v["oid"].as_u64().unwrap_or_default() as u32,
            name: s(v, "name").unwrap_or_default(),
            label: s(v, "label").unwrap_or_default(),
            subject,
            tenant: s(v, "tenant"),
            data,
            membership,
            rules,
            extra_scopes,
            columns,
        });
    }
    resolve_paths(&mut tables);
    let oids: Vec<pg_sys::Oid> = tables.iter().map(|t| pg_sys::Oid::from(t.oid)).collect();
    let refs = spi::json_rows(REFS_SQL, &[oids.into()])?
        .iter()
        .filter_map(|v| {
            Some(Reference {
                name: s(v, "name")?,
                child: v["child"].as_u64()? as u32,
                child_name: s(v, "child_name")?,
                parent: v["parent"].as_u64()? as u32,
                cols: strings(&v["cols"]),
                parent_cols: strings(&v["parent_cols"]),
                nullable: v["nullable"].as_bool().unwrap_or(false),
                declared: v["declared"].as_bool().unwrap_or(false),
            })
        })
        .collect();
    Ok(Catalog { tables, refs })
}

/// Fill in, for each path through a parent, the parent's own column that
/// holds the scope (its subject column or id, its tenant column).
fn resolve_paths(tables: &mut [Table]) {
    let scope_column =
        |tables: &[Table], parent: u32, tenant: bool, subject_type: &str| -> Option<String> {
            let p = tables.iter().find(|t| t.oid == parent)?;
            if tenant {
                p.tenant
                    .clone()
                    .or_else(|| p.subject.as_ref().and_then(|s| s.tenant_column.clone()))
                    .or_else(|| {
                        p.data
                            .as_ref()
                            .and_then(|d| d.tenant.as_ref().map(|k| k.column().to_string()))
                    })
            } else {
                p.subject
                    .as_ref()
                    .filter(|s| s.subject_type == subject_type)
                    .map(|s| s.id_column.clone())
                    .or_else(|| {
                        p.data
                            .as_ref()
                            .filter(|d| d.subject_type == subject_type)
                            .map(|d| d.subject.column().to_string())
                    })
            }
        };
    let snapshot: Vec<Table> = tables.to_vec();
    for t in tables.iter_mut() {
        let Some(d) = t.data.as_mut() else { continue };
        let st = d.subject_type.clone();
        if let Key::Via {
            parent,
            parent_column,
            ..
        } = &mut d.subject
        {
            *parent_column = scope_column(&snapshot, *parent, false, &st).unwrap_or_default();
        }
        if let Some(Key::Via {
            parent,
            parent_column,
            ..
        }) = &mut d.tenant
        {
            *parent_column = scope_column(&snapshot, *parent, true, &st).unwrap_or_default();
        }
    }
}
