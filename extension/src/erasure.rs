//! The erasure engine: user (subject) erasure, workspace (tenant) erasure and
//! purge, executed from the data map alone.
//!
//! Everything here runs inside the caller's transaction (the job runner puts
//! each job in a subtransaction of its own), as the extension owner, with the
//! legal-hold guards active: a row under hold makes the statement that
//! reaches it fail, and the runner turns that failure into a blocked job.
//! Soft delete is switched off, so soft-deleted rows are removed for real.
//!
//! Order comes from the foreign keys in `pg_constraint` ([`crate::fkeys`]):
//! rows are deleted children first, and rows elsewhere that reference rows
//! being deleted are handled explicitly (detached when the referencing
//! columns are nullable, deleted with them otherwise, refused when their
//! table is not in the data map). `ON DELETE CASCADE` is never relied on.
//!
//! Every statement takes the target id as its parameter `$1`, cast to the
//! type of the column it is compared with; identifiers are quoted.

use std::collections::HashMap;

use pgrx::pg_sys;
use serde_json::{json, Value};

use crate::audit::{self, Event};
use crate::error::{LcError, LcResult};
use crate::fkeys::{self, ForeignKey};
use crate::holds::quote_ident;

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}
use crate::spi;

/// One registered table, as the engine needs it.
#[derive(Debug, Clone)]
pub struct MapTable {
    pub oid: pg_sys::Oid,
    pub name: String,
    /// 'subject', 'tenant', 'table' or 'membership' (see `lifecycle.data_map`).
    pub kind: String,
    pub subject_type: Option<String>,
    pub subject_column: Option<String>,
    pub tenant_column: Option<String>,
    pub on_erase: String,
    pub retain_for: Option<String>,
    pub legal_basis: Option<String>,
    pub soft_delete: Option<String>,
    pub label: String,
    pub role_column: Option<String>,
    pub admin_roles: Vec<String>,
    /// (column, rule), rules other than `keep`.
    pub rules: Vec<(String, String)>,
    /// Extra (scope type, column) pairs from `register_scope`.
    pub extra_scopes: Vec<(String, String)>,
    /// Column name -> SQL type (`format_type`).
    types: HashMap<String, String>,
    /// Column name -> pg_type.typcategory.
    categories: HashMap<String, String>,
}

impl MapTable {
    pub fn col_type(&self, col: &str) -> &str {
        self.types.get(col).map(String::as_str).unwrap_or("text")
    }

    /// `"col" = $1::type`.
    pub fn eq_param(&self, col: &str) -> String {
        format!("{} = $1::{}", quote_ident(col), self.col_type(col))
    }

    fn textual(&self, col: &str) -> bool {
        self.categories.get(col).is_some_and(|c| c == "S")
    }

    /// The column that names the row's owner (subject id, or tenant id for
    /// the tenant table), used by `deleted_email`.
    fn owner_column(&self) -> Option<&str> {
        self.subject_column
            .as_deref()
            .or(self.tenant_column.as_deref())
    }

    /// `SET` clause applying the column rules, or `None` with no rule to apply.
    /// The value a rule gives column `c`; `key` is the SQL expression of
    /// the owner's id (for `deleted_email`).
    fn rule_expr(&self, c: &str, rule: &str, salt: &str, key: Option<&str>) -> String {
        let q = quote_ident(c);
        let ty = self.col_type(c);
        let expr = match rule {
            "clear" => "NULL".to_string(),
            "redact" => "'[redacted]'".to_string(),
            "deleted_name" => "'Deleted User'".to_string(),
            "deleted_email" => match key {
                Some(k) => format!("'deleted-' || {k} || '@deleted.local'"),
                None => "'deleted@deleted.local'".to_string(),
            },
            "hash" => format!("encode(sha256(convert_to('{salt}' || {q}::text, 'UTF8')), 'hex')"),
            "empty" => match self.categories.get(c).map(String::as_str) {
                Some("A") => "'{}'".to_string(),
                _ if ty == "jsonb" || ty == "json" => "'{}'".to_string(),
                _ => "''".to_string(),
            },
            _ => q,
        };
        format!("CAST({expr} AS {ty})")
    }

    /// `SET` clause applying the column rules, or `None` with no rule to apply.
    fn set_clause(&self, salt: &str) -> Option<String> {
        let key = self
            .owner_column()
            .map(|k| format!("{}::text", quote_ident(k)));
        let sets: Vec<String> = self
            .rules
            .iter()
            .filter(|(_, r)| r != "storage_object")
            .map(|(c, r)| {
                format!(
                    "{} = {}",
                    quote_ident(c),
                    self.rule_expr(c, r, salt, key.as_deref())
                )
            })
            .collect();
        if sets.is_empty() {
            None
        } else {
            Some(sets.join(", "))
        }
    }

    fn storage_columns(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .filter(|(_, r)| r == "storage_object")
            .map(|(c, _)| c.as_str())
    }
}

/// The whole data map.
pub fn load_map() -> LcResult<Vec<MapTable>> {
    let rows = spi::json_rows(
        "SELECT jsonb_build_object(\
            'oid', d.relation::oid::bigint, \
            'name', d.relation::regclass::text, \
            'kind', d.kind, \
            'subject_type', d.subject_type, \
            'subject_column', d.subject_column, \
            'tenant_column', d.tenant_column, \
            'on_erase', d.on_erase, \
            'retain_for', d.retain_for::text, \
            'legal_basis', d.legal_basis, \
            'soft_delete', d.soft_delete_column, \
            'label', d.label, \
            'role_column', d.role_column, \
            'admin_roles', to_jsonb(d.admin_roles), \
            'rules', d.column_rules, \
            'extra_scopes', d.extra_scopes, \
            'types', (SELECT jsonb_object_agg(a.attname, format_type(a.atttypid, a.atttypmod)) \
                        FROM pg_catalog.pg_attribute a \
                       WHERE a.attrelid = d.relation AND a.attnum > 0 AND NOT a.attisdropped), \
            'categories', (SELECT jsonb_object_agg(a.attname, t.typcategory) \
                        FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
                       WHERE a.attrelid = d.relation AND a.attnum > 0 AND NOT a.attisdropped)) \
           FROM lifecycle.data_map d \
          ORDER BY d.relation::regclass::text",
        &[],
    )?;
    Ok(rows.iter().map(parse_table).collect())
}

fn parse_table(v: &Value) -> MapTable {
    let s = |k: &str| v[k].as_str().map(str::to_string);
    let map = |k: &str| -> HashMap<String, String> {
        v[k].as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut rules: Vec<(String, String)> = map("rules")
        .into_iter()
        .filter(|(_, r)| r != "keep")
        .collect();
    rules.sort();
    MapTable {
        oid: pg_sys::Oid::from(v["oid"].as_u64().unwrap_or_default() as u32),
        name: s("name").unwrap_or_default(),
        kind: s("kind").unwrap_or_default(),
        subject_type: s("subject_type"),
        subject_column: s("subject_column"),
        tenant_column: s("tenant_column"),
        on_erase: s("on_erase").unwrap_or_else(|| "delete".into()),
        retain_for: s("retain_for"),
        legal_basis: s("legal_basis"),
        soft_delete: s("soft_delete"),
        label: s("label").unwrap_or_default(),
        role_column: s("role_column"),
        admin_roles: v["admin_roles"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        rules,
        extra_scopes: v["extra_scopes"]
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
            .unwrap_or_default(),
        types: map("types"),
        categories: map("categories"),
    }
}

/// What a job targets: a subject (its type's subject table) or a tenant.
#[derive(Debug, Clone)]
pub enum Target {
    Subject {
        table: MapTable,
        subject_type: String,
    },
    Tenant {
        table: MapTable,
    },
}

impl Target {
    pub fn table(&self) -> &MapTable {
        match self {
            Target::Subject { table, .. } | Target::Tenant { table } => table,
        }
    }

    pub fn type_name(&self) -> &str {
        match self {
            Target::Subject { subject_type, .. } => subject_type,
            Target::Tenant { .. } => "tenant",
        }
    }

    /// Column holding the target's id in its own table.
    pub fn id_column(&self) -> &str {
        self.table().owner_column().unwrap_or("id")
    }
}

/// Resolve a target type against the data map ('tenant', 'workspace' or a
/// registered subject type).
pub fn resolve_target(map: &[MapTable], target_type: &str) -> LcResult<Target> {
    if target_type == "tenant" || target_type == "workspace" {
        if let Some(t) = map.iter().find(|t| t.kind == "tenant") {
            return Ok(Target::Tenant { table: t.clone() });
        }
    } else if let Some(t) = map
        .iter()
        .find(|t| t.kind == "subject" && t.subject_type.as_deref() == Some(target_type))
    {
        return Ok(Target::Subject {
            table: t.clone(),
            subject_type: target_type.to_string(),
        });
    }
    Err(unknown_target_type(target_type)?)
}

/// The stored name of a target type ('workspace' is an alias of 'tenant'),
/// from the registration tables alone: cheaper than loading the data map,
/// for callers that do not run the engine (`subject_state` on every login).
pub fn target_type_name(target_type: &str) -> LcResult<String> {
    let name = spi::one::<String>(
        "SELECT CASE WHEN $1 IN ('tenant', 'workspace') \
                      AND EXISTS (SELECT 1 FROM lifecycle.tenant_tables) THEN 'tenant' \
                     WHEN EXISTS (SELECT 1 FROM lifecycle.subject_tables WHERE subject_type = $1) \
                      AND $1 NOT IN ('tenant', 'workspace') THEN $1 END",
        &[target_type.into()],
    )?;
    match name {
        Some(n) => Ok(n),
        None => Err(unknown_target_type(target_type)?),
    }
}

/// LC032 naming the known target types.
fn unknown_target_type(target_type: &str) -> LcResult<LcError> {
    let mut known: Vec<String> = spi::json(
        "SELECT coalesce(jsonb_agg(subject_type ORDER BY relation::regclass::text), '[]') \
           FROM lifecycle.subject_tables",
        &[],
    )?
    .and_then(|v| serde_json::from_value(v).ok())
    .unwrap_or_default();
    if spi::one::<bool>("SELECT EXISTS (SELECT 1 FROM lifecycle.tenant_tables)", &[])?
        .unwrap_or(false)
    {
        known.push("tenant".into());
    }
    Ok(LcError::unknown_target_type(target_type, &known))
}

/// Whether the target's row exists. An id that is not a valid value of the
/// key's type (text 'abc' for a bigint key) does not exist either.
pub fn target_exists(target: &Target, id: &str) -> LcResult<bool> {
    let t = target.table();
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE {})",
        t.name,
        t.eq_param(target.id_column())
    );
    match crate::subxact::run(|| Ok(spi::one::<bool>(&sql, &[id.into()])?.unwrap_or(false))) {
        Ok(found) => Ok(found),
        Err(f) if f.sqlstate.starts_with("22") => Ok(false),
        Err(f) => Err(LcError::internal(f.message)),
    }
}

/// Workspaces where `subject_id` holds an admin role and no other member
/// does, across every membership table of `subject_type`.
pub fn last_admin_tenants(
    map: &[MapTable],
    subject_type: &str,
    subject_id: &str,
) -> LcResult<Vec<String>> {
    let mut out = Vec::new();
    for m in memberships(map, subject_type) {
        let (Some(role), Some(subj), Some(ten)) = (
            m.role_column.as_deref(),
            m.subject_column.as_deref(),
            m.tenant_column.as_deref(),
        ) else {
            continue;
        };
        let (role, subj_q, ten_q) = (quote_ident(role), quote_ident(subj), quote_ident(ten));
        let sql = format!(
            "SELECT jsonb_agg(DISTINCT m.{ten_q}::text) FROM {name} m \
              WHERE m.{subj_q} = $1::{ty} AND m.{role}::text = ANY($2) \
                AND NOT EXISTS (SELECT 1 FROM {name} o \
                                 WHERE o.{ten_q} = m.{ten_q} AND o.{subj_q} <> m.{subj_q} \
                                   AND o.{role}::text = ANY($2))",
            name = m.name,
            ty = m.col_type(subj),
        );
        if let Some(Value::Array(a)) = spi::json(
            &format!("SELECT coalesce(({sql}), '[]'::jsonb)"),
            &[subject_id.into(), m.admin_roles.clone().into()],
        )? {
            out.extend(a.into_iter().filter_map(|v| v.as_str().map(str::to_string)));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn memberships<'a>(
    map: &'a [MapTable],
    subject_type: &'a str,
) -> impl Iterator<Item = &'a MapTable> {
    map.iter()
        .filter(move |t| t.role_column.is_some() && t.subject_type.as_deref() == Some(subject_type))
}

/// Whether `member` belongs to `tenant` in some membership table of the type.
pub fn is_member(
    map: &[MapTable],
    subject_type: &str,
    tenant: &str,
    member: &str,
) -> LcResult<bool> {
    for m in memberships(map, subject_type) {
        let (Some(subj), Some(ten)) = (m.subject_column.as_deref(), m.tenant_column.as_deref())
        else {
            continue;
        };
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {} WHERE {}::text = $1 AND {}::text = $2)",
            m.name,
            quote_ident(ten),
            quote_ident(subj)
        );
        if spi::one::<bool>(&sql, &[tenant.into(), member.into()])?.unwrap_or(false) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A job as the engine runs it.
pub struct Work<'a> {
    pub job_id: &'a str,
    pub job_type: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub requested_by: &'a str,
    pub options: &'a Value,
}

/// Running state of one job: what was done, for the receipt.
struct Run<'a> {
    work: &'a Work<'a>,
    map: Vec<MapTable>,
    fks: Vec<ForeignKey>,
    salt: String,
    actions: Vec<Value>,
    retained: Vec<Value>,
    workspaces: Vec<Value>,
    external_steps: u64,
    /// `$2` of every statement (a workspace id while transferring it).
    second: Option<String>,
    /// `$3` of every statement (the subject's personal values).
    list: Vec<String>,
}

/// Run an erase or purge job; returns the receipt.
pub fn execute(work: &Work<'_>) -> LcResult<Value> {
    let map = load_map()?;
    let target = resolve_target(&map, work.target_type)?;
    let oids: Vec<pg_sys::Oid> = map.iter().map(|t| t.oid).collect();
    let fks = fkeys::referencing(&oids)?;
    let salt = spi::one::<String>(
        "SELECT md5(gen_random_uuid()::text || clock_timestamp()::text)",
        &[],
    )?
    .unwrap_or_default();
    let mut run = Run::new(work, map, fks, salt);
    let id = work.target_id;
    let verification = match (work.job_type, &target) {
        (
            "erase",
            Target::Subject {
                table,
                subject_type,
            },
        ) => run.erase_subject(table, subject_type, id)?,
        ("erase", Target::Tenant { table }) => run.erase_tenant(table, id)?,
        ("purge", _) => {
            run.purge(&target, id)?;
            json!({ "ok": true, "checked": [] })
        }
        (other, _) => {
            return Err(LcError::internal(format!(
                "job type {other} is not run by the engine"
            )))
        }
    };
    let redacted = if work.job_type == "erase" {
        redact_audit(target.type_name(), id)?
    } else {
        0
    };
    Ok(json!({
        "job_id": work.job_id,
        "job_type": work.job_type,
        "target": { "type": target.type_name(), "id": id },
        "actions": run.actions,
        "retained": run.retained,
        "workspaces": run.workspaces,
        "external_steps": run.external_steps,
        "audit_events_redacted": redacted,
        "verification": verification,
    }))
}

impl<'a> Run<'a> {
    fn new(work: &'a Work<'a>, map: Vec<MapTable>, fks: Vec<ForeignKey>, salt: String) -> Self {
        Run {
            work,
            map,
            fks,
            salt,
            actions: Vec::new(),
            retained: Vec::new(),
            workspaces: Vec::new(),
            external_steps: 0,
            second: None,
            list: Vec::new(),
        }
    }

    /// Foreign keys as (referencing, referenced) pairs, for the delete order.
    fn edges(&self) -> Vec<(u32, u32)> {
        self.fks
            .iter()
            .map(|f| (f.referencing.to_u32(), f.referenced.to_u32()))
            .collect()
    }

    /// Parameters of every statement: `$1` the target id, `$2` the second value.
    fn args(&self) -> Vec<pgrx::datum::DatumWithOid<'_>> {
        vec![
            self.work.target_id.into(),
            self.second.as_deref().into(),
            self.list.clone().into(),
        ]
    }

    fn note(&mut self, table: &str, action: &str, rows: u64, why: Option<&str>) {
        if rows == 0 && action != "kept" {
            return;
        }
        let mut a = json!({ "table": table, "action": action, "rows": rows });
        if let Some(w) = why {
            a["reason"] = json!(w);
        }
        self.actions.push(a);
    }

    fn tables_of(&self, subject_type: &str) -> Vec<MapTable> {
        self.map
            .iter()
            .filter(|t| {
                t.kind != "subject"
                    && t.kind != "tenant"
                    && t.subject_type.as_deref() == Some(subject_type)
            })
            .cloned()
            .collect()
    }

    fn order(&self, tables: &[MapTable]) -> Vec<MapTable> {
        let oids: Vec<u32> = tables.iter().map(|t| t.oid.to_u32()).collect();
        fkeys::delete_order(&oids, &self.edges())
            .into_iter()
            .filter_map(|o| tables.iter().find(|t| t.oid.to_u32() == o).cloned())
            .collect()
    }

    /// Values of the target row's personal (ruled, textual) columns: what
    /// the verification looks for afterwards.
    fn identifiers(
        &self,
        table: &MapTable,
        id_col: &str,
        id: &str,
        only_rule: Option<&str>,
    ) -> LcResult<Vec<String>> {
        let cols: Vec<String> = table
            .rules
            .iter()
            .filter(|(c, r)| table.textual(c) && only_rule.is_none_or(|o| o == r))
            .map(|(c, _)| format!("{}::text", quote_ident(c)))
            .collect();
        if cols.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT jsonb_build_array({}) FROM {} WHERE {}",
            cols.join(", "),
            table.name,
            table.eq_param(id_col)
        );
        let v = spi::json(&sql, &[id.into()])?.unwrap_or(Value::Null);
        let mut out: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str())
            .filter(|s| s.chars().count() >= 3)
            .map(str::to_string)
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Delete the rows of `oid` matching `pred` (over `$1`), after handling
    /// every row elsewhere that references them.
    fn delete_rows(
        &mut self,
        oid: pg_sys::Oid,
        name: &str,
        pred: &str,
        why: Option<&str>,
        depth: u32,
    ) -> LcResult<u64> {
        if depth > 16 {
            return Err(LcError::internal(format!(
                "foreign keys into {name} nest more than 16 levels deep"
            )));
        }
        let refs: Vec<ForeignKey> = self
            .fks
            .iter()
            .filter(|f| f.referenced == oid)
            .cloned()
            .collect();
        for fk in refs {
            let sub = format!(
                "({}) IN (SELECT {} FROM {name} WHERE {pred})",
                fk.cols.join(", "),
                fk.refcols.join(", ")
            );
            let self_ref = fk.referencing == oid;
            let others = if self_ref {
                format!("{sub} AND NOT ({pred})")
            } else {
                sub.clone()
            };
            let exists = spi::one::<bool>(
                &format!(
                    "SELECT EXISTS (SELECT 1 FROM {} WHERE {others})",
                    fk.referencing_name
                ),
                &self.args(),
            )?
            .unwrap_or(false);
            if !exists {
                continue;
            }
            if !self.map.iter().any(|t| t.oid == fk.referencing) {
                return Err(LcError::unmapped_reference(
                    &fk.referencing_name,
                    &fk.name,
                    name,
                ));
            }
            let rname = fk.referencing_name.clone();
            if fk.nullable {
                let sets: Vec<String> = fk.cols.iter().map(|c| format!("{c} = NULL")).collect();
                let n = spi::exec(
                    &format!("UPDATE {rname} SET {} WHERE {others}", sets.join(", ")),
                    &self.args(),
                )?;
                let why = format!("referenced removed rows of {name}; link cleared");
                self.note(&rname, "detached", n, Some(&why));
            } else {
                let why = format!("depended on removed rows of {name}");
                self.delete_rows(fk.referencing, &rname, &others, Some(&why), depth + 1)?;
            }
        }
        let storage: Vec<String> = self
            .map
            .iter()
            .find(|t| t.oid == oid)
            .map(|t| t.storage_columns().map(str::to_string).collect())
            .unwrap_or_default();
        let n = if storage.is_empty() {
            spi::exec(&format!("DELETE FROM {name} WHERE {pred}"), &self.args())?
        } else {
            // Stored objects named by the removed rows: one step each, for the
            // control plane to delete and confirm. Taken from the DELETE
            // itself, so the rows are read once.
            let returning: Vec<String> = storage.iter().map(|c| quote_ident(c)).collect();
            let refs: Vec<String> = storage
                .iter()
                .map(|c| format!("({}, d.{}::text)", quote_literal(c), quote_ident(c)))
                .collect();
            let sql = format!(
                "WITH d AS (DELETE FROM {name} WHERE {pred} RETURNING {}), \
                      s AS (INSERT INTO lifecycle.external_steps (job_id, kind, relation, column_name, reference) \
                            SELECT $4::uuid, 'delete_object', $5::regclass, r.col, r.ref \
                              FROM d CROSS JOIN LATERAL (VALUES {}) AS r(col, ref) \
                             WHERE r.ref IS NOT NULL RETURNING 1) \
                 SELECT jsonb_build_array((SELECT count(*) FROM d), (SELECT count(*) FROM s))",
                returning.join(", "),
                refs.join(", ")
            );
            let mut args = self.args();
            args.push(self.work.job_id.into());
            args.push(name.into());
            let counts = spi::json(&sql, &args)?.unwrap_or(Value::Null);
            self.external_steps += counts[1].as_u64().unwrap_or(0);
            counts[0].as_u64().unwrap_or(0)
        };
        self.note(name, "deleted", n, why);
        Ok(n)
    }

    fn anonymize_rows(&mut self, t: &MapTable, pred: &str, why: Option<&str>) -> LcResult<u64> {
        match t.set_clause(&self.salt) {
            Some(set) => {
                let n = spi::exec(
                    &format!("UPDATE {} SET {set} WHERE {pred}", t.name),
                    &self.args(),
                )?;
                self.note(&t.name, "anonymized", n, why);
                Ok(n)
            }
            None => Ok(0),
        }
    }

    fn count(&self, name: &str, pred: &str) -> LcResult<u64> {
        Ok(spi::one::<i64>(
            &format!("SELECT count(*) FROM {name} WHERE {pred}"),
            &self.args(),
        )?
        .unwrap_or(0) as u64)
    }

    fn retain_rows(&mut self, t: &MapTable, key_col: &str, pred: &str) -> LcResult<()> {
        if let Some(set) = t.set_clause(&self.salt) {
            let n = spi::exec(
                &format!("UPDATE {} SET {set} WHERE {pred}", t.name),
                &self.args(),
            )?;
            self.note(
                &t.name,
                "anonymized",
                n,
                Some("retained row: personal columns with a rule"),
            );
        }
        let rows = self.count(&t.name, pred)?;
        if rows == 0 {
            return Ok(());
        }
        let basis = t.legal_basis.clone().unwrap_or_default();
        let until = spi::one::<String>(
            "INSERT INTO lifecycle.retention \
                    (job_id, relation, key_column, target_type, target_id, rows, legal_basis, retain_until) \
             VALUES ($1::uuid, $2::regclass, $3, $4, $5, $6, $7, now() + $8::interval) \
             RETURNING to_char(retain_until AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
            &[
                self.work.job_id.into(),
                t.name.as_str().into(),
                key_col.into(),
                self.work.target_type.into(),
                self.work.target_id.into(),
                (rows as i64).into(),
                basis.as_str().into(),
                t.retain_for.as_deref().unwrap_or("0").into(),
            ],
        )?;
        self.retained.push(json!({
            "table": t.name,
            "label": t.label,
            "rows": rows,
            "legal_basis": basis,
            "retain_for": t.retain_for,
            "retain_until": until,
        }));
        self.note(&t.name, "retained", rows, Some(&basis));
        Ok(())
    }

    // ----- user (subject) erasure ------------------------------------------------

    fn erase_subject(&mut self, sub: &MapTable, subject_type: &str, id: &str) -> LcResult<Value> {
        let id_col = sub.owner_column().unwrap_or("id").to_string();
        let identifiers = self.identifiers(sub, &id_col, id, None)?;
        let emails = self.identifiers(sub, &id_col, id, Some("deleted_email"))?;

        // Workspaces the subject is the last admin of: what the request decided.
        let decisions = self
            .work
            .options
            .get("workspaces")
            .cloned()
            .unwrap_or(Value::Null);
        if let Value::Object(d) = &decisions {
            for (tenant, decision) in d {
                if decision.as_str() == Some("erase") {
                    self.workspaces
                        .push(json!({ "workspace": tenant, "decision": "erased" }));
                    let ten = self
                        .map
                        .iter()
                        .find(|t| t.kind == "tenant")
                        .cloned()
                        .ok_or_else(|| LcError::unknown_target_type("tenant", &[]))?;
                    self.erase_tenant_inner(&ten, tenant)?;
                } else if let Some(to) = decision.get("transfer_to").and_then(Value::as_str) {
                    self.transfer(subject_type, tenant, to)?;
                    self.workspaces
                        .push(json!({ "workspace": tenant, "decision": "transferred", "to": to }));
                }
            }
        }
        let still = last_admin_tenants(&self.map, subject_type, id)?;
        if !still.is_empty() {
            return Err(LcError::last_admin(subject_type, id, &still));
        }

        let tables = self.tables_of(subject_type);
        // Deletions, children first.
        for t in self.order(&tables) {
            let Some(col) = t.subject_column.clone() else {
                continue;
            };
            let pred = t.eq_param(&col);
            if t.on_erase == "delete" {
                self.delete_rows(t.oid, &t.name, &pred, None, 0)?;
            } else if let Some(sd) = &t.soft_delete {
                let p = format!("{pred} AND {} IS NOT NULL", quote_ident(sd));
                self.delete_rows(t.oid, &t.name, &p, Some("soft-deleted earlier"), 0)?;
            }
        }
        for t in &tables {
            let Some(col) = t.subject_column.clone() else {
                continue;
            };
            let pred = t.eq_param(&col);
            match t.on_erase.as_str() {
                "anonymize" => {
                    let changed = self.anonymize_rows(t, &pred, None)?;
                    let kept = if changed == 0 {
                        self.count(&t.name, &pred)?
                    } else {
                        0
                    };
                    if kept > 0 {
                        let why = "attributed to the anonymized subject";
                        self.note(&t.name, "kept", kept, Some(why));
                    }
                }
                "retain" => self.retain_rows(t, &col, &pred)?,
                _ => {}
            }
        }
        // Rows that mention the subject through another scope column (an
        // invitation the subject accepted, a case assigned to them): the
        // subject's own personal values in ruled columns are replaced; the
        // rest of the row belongs to someone else and stays.
        self.list = identifiers.clone();
        for t in self.map.clone() {
            for (scope, col) in &t.extra_scopes {
                if scope != subject_type || Some(col) == t.subject_column.as_ref() {
                    continue;
                }
                for (c, rule) in t
                    .rules
                    .iter()
                    .filter(|(c, r)| t.textual(c) && r != "storage_object")
                {
                    let sql = format!(
                        "UPDATE {} SET {} = {} WHERE {} AND {}::text = ANY($3)",
                        t.name,
                        quote_ident(c),
                        t.rule_expr(c, rule, &self.salt, Some("$1")),
                        t.eq_param(col),
                        quote_ident(c),
                    );
                    let n = spi::exec(&sql, &self.args())?;
                    let why = format!("subject named in {col}; their value in {c} replaced");
                    self.note(&t.name, "anonymized", n, Some(&why));
                }
            }
        }
        // The subject row itself: anonymized in place, so that references stay valid.
        let pred = sub.eq_param(&id_col);
        if self.anonymize_rows(sub, &pred, Some("subject row, kept as a tombstone"))? == 0 {
            self.note(
                &sub.name,
                "kept",
                1,
                Some("subject row, kept as a tombstone"),
            );
        }
        self.verify_subject(sub, subject_type, id, &identifiers, &emails)
    }

    /// Hand a workspace to another member: the subject's membership there
    /// ends first, then the member takes the admin role the subject held.
    fn transfer(&mut self, subject_type: &str, tenant: &str, to: &str) -> LcResult<()> {
        let mut done = 0;
        for m in memberships(&self.map, subject_type)
            .cloned()
            .collect::<Vec<_>>()
        {
            let (Some(role), Some(subj), Some(ten), Some(first_admin)) = (
                m.role_column.as_deref(),
                m.subject_column.as_deref(),
                m.tenant_column.as_deref(),
                m.admin_roles.first(),
            ) else {
                continue;
            };
            let (r, sq, tq) = (quote_ident(role), quote_ident(subj), quote_ident(ten));
            let held = spi::one::<String>(
                &format!(
                    "SELECT {r}::text FROM {} WHERE {tq}::text = $2 AND {} AND {r}::text = ANY($3) LIMIT 1",
                    m.name,
                    m.eq_param(subj)
                ),
                &[
                    self.work.target_id.into(),
                    tenant.into(),
                    m.admin_roles.clone().into(),
                ],
            )?;
            let Some(held) = held.or_else(|| Some(first_admin.clone())) else {
                continue;
            };
            let pred = format!("{tq}::text = $2 AND {}", m.eq_param(subj));
            self.second = Some(tenant.to_string());
            let ended = self.delete_rows(
                m.oid,
                &m.name,
                &pred,
                Some("membership ends before the transfer"),
                0,
            );
            self.second = None;
            ended?;
            let n = spi::exec(
                &format!(
                    "UPDATE {} SET {r} = CAST($2 AS {rt}) WHERE {tq}::text = $1 AND {sq}::text = $3",
                    m.name,
                    rt = m.col_type(role),
                ),
                &[tenant.into(), held.as_str().into(), to.into()],
            )?;
            if n > 0 {
                self.note(&m.name, "ownership transferred", n, Some(tenant));
            }
            done += n;
        }
        if done == 0 {
            return Err(LcError::invalid_parameter(format!(
                "cannot transfer workspace {tenant} to \"{to}\": not a member"
            ))
            .hint("Choose a current member of the workspace, or erase the workspace."));
        }
        Ok(())
    }

    /// Re-scan after the erasure: nothing of the subject is left.
    fn verify_subject(
        &mut self,
        sub: &MapTable,
        subject_type: &str,
        id: &str,
        identifiers: &[String],
        emails: &[String],
    ) -> LcResult<Value> {
        let mut checked = Vec::new();
        let mut findings = Vec::new();
        for t in self.map.clone() {
            let owned = t.kind != "subject"
                && t.kind != "tenant"
                && t.subject_type.as_deref() == Some(subject_type);
            let subj_pred = match (&t.subject_column, owned || t.oid == sub.oid) {
                (Some(c), true) => Some(t.eq_param(c)),
                _ => None,
            };
            if let (true, Some(p)) = (owned, &subj_pred) {
                let pred = if t.on_erase == "delete" {
                    Some(p.clone())
                } else {
                    t.soft_delete
                        .as_ref()
                        .map(|sd| format!("{p} AND {} IS NOT NULL", quote_ident(sd)))
                };
                if let Some(pred) = pred {
                    let n = self.count(&t.name, &pred)?;
                    checked.push(json!({ "table": t.name, "check": "rows removed", "found": n }));
                    if n > 0 {
                        findings.push(format!(
                            "{n} rows of {} still belong to the subject",
                            t.name
                        ));
                    }
                }
            }
            if identifiers.is_empty() {
                continue;
            }
            for (col, _) in t.rules.iter().filter(|(c, _)| t.textual(c)) {
                let q = quote_ident(col);
                let match_expr = format!("{q} = ANY(CAST($2 AS {}[]))", t.col_type(col));
                // E-mail addresses identify the subject wherever they appear:
                // indexed columns are searched in the whole table. Other
                // values (names, phone numbers) are searched in the rows
                // tied to the subject.
                let (scope, pred, values) = if !emails.is_empty() && has_leading_index(t.oid, col)?
                {
                    ("whole table", match_expr, emails)
                } else if let Some(p) = &subj_pred {
                    (
                        "subject's rows",
                        format!("{p} AND {match_expr}"),
                        identifiers,
                    )
                } else {
                    continue;
                };
                let n = spi::one::<i64>(
                    &format!("SELECT count(*) FROM {} WHERE {pred}", t.name),
                    &[id.into(), values.to_vec().into()],
                )?
                .unwrap_or(0);
                checked.push(json!({ "table": t.name, "column": col, "scope": scope, "found": n }));
                if n > 0 {
                    findings.push(format!(
                        "{n} rows of {} still hold a personal value of the subject in column {col}",
                        t.name
                    ));
                }
            }
        }
        if !findings.is_empty() {
            return Err(LcError::erasure_incomplete(
                &format!("{subject_type} {id}"),
                &findings.join("; "),
            ));
        }
        Ok(json!({
            "ok": true,
            "identifiers_checked": identifiers.len(),
            "checked": checked,
        }))
    }

    // ----- workspace (tenant) erasure -------------------------------------------

    fn erase_tenant(&mut self, ten: &MapTable, id: &str) -> LcResult<Value> {
        let id_col = ten.owner_column().unwrap_or("id").to_string();
        let identifiers = self.identifiers(ten, &id_col, id, None)?;
        self.erase_tenant_inner(ten, id)?;
        let mut checked = Vec::new();
        let mut findings = Vec::new();
        for t in self.map.clone() {
            if t.kind == "tenant" || t.on_erase == "retain" || t.kind == "subject" {
                continue;
            }
            let Some(tc) = &t.tenant_column else { continue };
            let n = self.count(&t.name, &t.eq_param(tc))?;
            checked.push(json!({ "table": t.name, "check": "rows removed", "found": n }));
            if n > 0 {
                findings.push(format!(
                    "{n} rows of {} still belong to the workspace",
                    t.name
                ));
            }
        }
        for (col, _) in ten.rules.iter().filter(|(c, _)| ten.textual(c)) {
            if identifiers.is_empty() {
                break;
            }
            let n = spi::one::<i64>(
                &format!(
                    "SELECT count(*) FROM {} WHERE {} AND {} = ANY(CAST($2 AS {}[]))",
                    ten.name,
                    ten.eq_param(&id_col),
                    quote_ident(col),
                    ten.col_type(col)
                ),
                &[id.into(), identifiers.to_vec().into()],
            )?
            .unwrap_or(0);
            checked.push(
                json!({ "table": ten.name, "column": col, "scope": "workspace row", "found": n }),
            );
            if n > 0 {
                findings.push(format!("the workspace row still holds column {col}"));
            }
        }
        if !findings.is_empty() {
            return Err(LcError::erasure_incomplete(
                &format!("workspace {id}"),
                &findings.join("; "),
            ));
        }
        Ok(json!({ "ok": true, "identifiers_checked": identifiers.len(), "checked": checked }))
    }

    /// Remove a workspace's content; `id` may differ from the job's target
    /// (a workspace erased along with its last admin).
    fn erase_tenant_inner(&mut self, ten: &MapTable, id: &str) -> LcResult<()> {
        // Statements take the workspace id as $1: run them under a job view
        // whose target id is the workspace.
        let work = Work {
            job_id: self.work.job_id,
            job_type: self.work.job_type,
            target_type: "tenant",
            target_id: id,
            requested_by: self.work.requested_by,
            options: self.work.options,
        };
        let mut inner = Run::new(&work, self.map.clone(), self.fks.clone(), self.salt.clone());
        let scoped: Vec<MapTable> = inner
            .map
            .iter()
            .filter(|t| t.kind != "tenant" && t.tenant_column.is_some())
            .cloned()
            .collect();
        for t in inner.order(&scoped) {
            if t.kind == "subject" || t.on_erase == "retain" {
                continue;
            }
            let pred = t.eq_param(t.tenant_column.as_deref().unwrap_or_default());
            inner.delete_rows(t.oid, &t.name, &pred, Some("workspace content"), 0)?;
        }
        for t in &scoped {
            let tc = t.tenant_column.clone().unwrap_or_default();
            let pred = t.eq_param(&tc);
            if t.kind == "subject" {
                inner.anonymize_rows(t, &pred, Some("member of the erased workspace"))?;
            } else if t.on_erase == "retain" {
                inner.retain_rows(t, &tc, &pred)?;
            }
        }
        let id_col = ten.owner_column().unwrap_or("id").to_string();
        let pred = ten.eq_param(&id_col);
        if inner.anonymize_rows(ten, &pred, Some("workspace row, kept as a tombstone"))? == 0 {
            inner.note(
                &ten.name,
                "kept",
                1,
                Some("workspace row, kept as a tombstone"),
            );
        }
        let redacted = redact_audit_tenant(id)?;
        if redacted > 0 {
            inner.note(
                "lifecycle.audit_log",
                "redacted",
                redacted,
                Some("events of the workspace"),
            );
        }
        for a in &mut inner.actions {
            a["workspace"] = json!(id);
        }
        self.actions.append(&mut inner.actions);
        self.retained.append(&mut inner.retained);
        self.external_steps += inner.external_steps;
        Ok(())
    }

    // ----- purge ------------------------------------------------------------------

    fn purge(&mut self, target: &Target, id: &str) -> LcResult<()> {
        // Anonymized rows of the subject, children first.
        if let Target::Subject { subject_type, .. } = target {
            let tables: Vec<MapTable> = self
                .tables_of(subject_type)
                .into_iter()
                .filter(|t| t.on_erase == "anonymize")
                .collect();
            for t in self.order(&tables) {
                let Some(col) = t.subject_column.clone() else {
                    continue;
                };
                self.protected_delete(&t.oid, &t.name, &t.eq_param(&col), "anonymized rows")?;
            }
        }
        // Retained rows whose period has ended.
        let records = spi::json_rows(
            &format!("{RETENTION_RECORDS} WHERE target_type = $1 AND target_id = $2 AND purged_at IS NULL"),
            &[target.type_name().into(), id.into()],
        )?;
        self.purge_retained(records)?;
        // The tombstone.
        let t = target.table().clone();
        let why = match target {
            Target::Subject { .. } => "subject tombstone",
            Target::Tenant { .. } => "workspace tombstone",
        };
        self.protected_delete(&t.oid, &t.name, &t.eq_param(target.id_column()), why)?;
        Ok(())
    }

    /// Remove retained rows whose period has ended (children first); a
    /// record is closed once none of its rows is left.
    fn purge_retained(&mut self, records: Vec<Value>) -> LcResult<u64> {
        let relation = |r: &Value| r["relation"].as_u64().unwrap_or_default() as u32;
        let oids: Vec<u32> = records.iter().map(relation).collect();
        let mut order = fkeys::delete_order(&oids, &self.edges());
        order.dedup();
        let mut total = 0;
        for oid in order {
            for r in records.iter().filter(|r| relation(r) == oid) {
                let Some(t) = self.map.iter().find(|t| t.oid.to_u32() == oid).cloned() else {
                    continue;
                };
                if r["expired"].as_bool() != Some(true) {
                    self.retained.push(json!({
                        "table": t.name,
                        "rows": r["rows"],
                        "legal_basis": r["legal_basis"],
                        "retain_until": r["retain_until"],
                    }));
                    let rows = r["rows"].as_u64().unwrap_or(0);
                    self.note(
                        &t.name,
                        "kept",
                        rows,
                        Some("retention period has not ended"),
                    );
                    continue;
                }
                let key = r["key_column"].as_str().unwrap_or_default().to_string();
                let pred = t.eq_param(&key);
                let removed =
                    self.protected_delete(&t.oid, &t.name, &pred, "retention period ended")?;
                let left = self.count(&t.name, &pred)?;
                spi::exec(
                    "UPDATE lifecycle.retention \
                        SET purged_rows = coalesce(purged_rows, 0) + $2, \
                            purged_at = CASE WHEN $3 THEN now() END \
                      WHERE id = $1",
                    &[
                        r["id"].as_i64().unwrap_or_default().into(),
                        (removed as i64).into(),
                        (left == 0).into(),
                    ],
                )?;
                total += removed;
            }
        }
        Ok(total)
    }

    /// Delete rows matching `pred` that nothing references any more; rows
    /// still referenced from elsewhere are kept and reported.
    fn protected_delete(
        &mut self,
        oid: &pg_sys::Oid,
        name: &str,
        pred: &str,
        what: &str,
    ) -> LcResult<u64> {
        let refs: Vec<ForeignKey> = self
            .fks
            .iter()
            .filter(|f| f.referenced == *oid)
            .cloned()
            .collect();
        let self_ref = refs.iter().any(|f| f.referencing == *oid);
        let mut guards = Vec::new();
        for f in &refs {
            let on: Vec<String> = f
                .cols
                .iter()
                .zip(&f.refcols)
                .map(|(c, rc)| format!("r.{c} = t.{rc}"))
                .collect();
            guards.push(format!(
                "NOT EXISTS (SELECT 1 FROM {} r WHERE {})",
                f.referencing_name,
                on.join(" AND ")
            ));
        }
        let mut sql = format!("DELETE FROM {name} t WHERE {pred}");
        for g in &guards {
            sql.push_str(" AND ");
            sql.push_str(g);
        }
        let mut removed = 0;
        for _ in 0..32 {
            let n = spi::exec(&sql, &self.args())?;
            removed += n;
            if n == 0 || !self_ref {
                break;
            }
        }
        self.note(name, "deleted", removed, Some(what));
        let kept = self.count(name, pred)?;
        if kept > 0 {
            let mut by: Vec<&str> = Vec::new();
            for (f, g) in refs.iter().zip(&guards) {
                let referenced = spi::one::<bool>(
                    &format!("SELECT EXISTS (SELECT 1 FROM {name} t WHERE {pred} AND NOT {g})"),
                    &self.args(),
                )?
                .unwrap_or(false);
                if referenced && !by.contains(&f.referencing_name.as_str()) {
                    by.push(&f.referencing_name);
                }
            }
            let why = format!("{what}; still referenced from {}", by.join(", "));
            self.note(name, "kept", kept, Some(&why));
        }
        Ok(removed)
    }
}

fn has_leading_index(relid: pg_sys::Oid, col: &str) -> LcResult<bool> {
    Ok(spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
                          JOIN pg_catalog.pg_attribute a \
                            ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                         WHERE i.indrelid = $1 AND a.attname = $2 AND i.indpred IS NULL)",
        &[relid.into(), col.into()],
    )?
    .unwrap_or(false))
}

/// Make the personal fields of the subject's audit events unreadable. The
/// chain stays valid: events carry only a digest of those fields.
pub fn redact_audit(subject_type: &str, subject_id: &str) -> LcResult<u64> {
    crate::guard::with_internal_write(|| {
        spi::exec(
            "UPDATE lifecycle.audit_log \
                SET actor = NULL, ip = NULL, user_agent = NULL, reason = NULL, details = NULL, \
                    salt = NULL, redacted_at = now() \
              WHERE subject_type = $1 AND subject_id = $2 AND salt IS NOT NULL",
            &[subject_type.into(), subject_id.into()],
        )
    })
}

fn redact_audit_tenant(tenant_id: &str) -> LcResult<u64> {
    crate::guard::with_internal_write(|| {
        spi::exec(
            "UPDATE lifecycle.audit_log \
                SET actor = NULL, ip = NULL, user_agent = NULL, reason = NULL, details = NULL, \
                    salt = NULL, redacted_at = now() \
              WHERE tenant_id = $1 AND salt IS NOT NULL",
            &[tenant_id.into()],
        )
    })
}

const RETENTION_RECORDS: &str = "SELECT jsonb_build_object('id', id, 'job_id', job_id, \
        'relation', relation::oid::bigint, 'key_column', key_column, \
        'target_type', target_type, 'target_id', target_id, \
        'expired', retain_until <= now(), 'retain_until', retain_until, \
        'legal_basis', legal_basis, 'rows', rows) \
   FROM lifecycle.retention";

/// Remove retained rows whose period has ended, across all targets.
/// Returns the number of rows removed.
pub fn retention_sweep() -> LcResult<i64> {
    let due = spi::json_rows(
        &format!(
            "{RETENTION_RECORDS} WHERE purged_at IS NULL AND retain_until <= now() ORDER BY id"
        ),
        &[],
    )?;
    if due.is_empty() {
        return Ok(0);
    }
    let map = load_map()?;
    let oids: Vec<pg_sys::Oid> = map.iter().map(|t| t.oid).collect();
    let fks = fkeys::referencing(&oids)?;
    let mut targets: Vec<(String, String, String)> = due
        .iter()
        .map(|r| {
            (
                r["target_type"].as_str().unwrap_or_default().to_string(),
                r["target_id"].as_str().unwrap_or_default().to_string(),
                r["job_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    targets.sort();
    targets.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    let mut total = 0i64;
    for (target_type, target_id, job_id) in targets {
        let records: Vec<Value> = due
            .iter()
            .filter(|r| {
                r["target_type"] == target_type.as_str() && r["target_id"] == target_id.as_str()
            })
            .cloned()
            .collect();
        let options = Value::Null;
        let work = Work {
            job_id: &job_id,
            job_type: "purge",
            target_type: &target_type,
            target_id: &target_id,
            requested_by: "lifecycle.retention_sweep",
            options: &options,
        };
        let mut run = Run::new(&work, map.clone(), fks.clone(), String::new());
        let removed = run.purge_retained(records)?;
        audit::record(Event {
            event_type: "retention.purged",
            actor: Some("lifecycle.retention_sweep"),
            subject_type: Some(&target_type),
            subject_id: Some(&target_id),
            details: Some(
                json!({ "erasure_job_id": job_id, "rows": removed, "actions": run.actions }),
            ),
            ..Default::default()
        })?;
        total += removed as i64;
    }
    Ok(total)
}
