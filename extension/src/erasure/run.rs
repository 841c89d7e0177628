//! Running a plan: each step becomes parameterised statements, run as the
//! owner of the table it changes (with `SECURITY_RESTRICTED_OPERATION`, as
//! PostgreSQL's maintenance commands do), so that the table owner's own
//! triggers never run with the extension's rights. Records of the
//! extension's own (retention, steps outside the database) are written as
//! the extension owner. The run keeps what the receipt reports.

use std::collections::HashMap;

use pgrx::datum::DatumWithOid;
use serde_json::{json, Value};

use super::batch::Batch;
use crate::error::{LcError, LcResult};
use crate::plan::{self, Action, Catalog, Step};
use crate::privilege;
use crate::spi;

/// What a run did, for the receipt.
#[derive(Default)]
pub struct Outcome {
    pub actions: Vec<Value>,
    pub retained: Vec<Value>,
    pub external_steps: u64,
    /// Rows of other people that mention the subject: table, column, rows.
    pub mentions: Vec<Value>,
}

/// The parameters every statement of a step receives.
pub struct Params {
    /// `$3`: the subject's identifiers.
    pub identifiers: Vec<String>,
}

impl Params {
    pub fn new(identifiers: Vec<String>) -> Self {
        Params { identifiers }
    }

    pub fn args<'k>(&self, step_key: &'k str, second: Option<&'k str>) -> Vec<DatumWithOid<'k>> {
        vec![
            step_key.into(),
            second.into(),
            self.identifiers.clone().into(),
        ]
    }
}

/// The query of a [`Action::CountMentions`] step: a JSON array of the rows
/// that mention the subject, per column, in one scan of the step's rows.
pub fn mention_counts_sql(step: &Step, columns: &[(String, bool)]) -> String {
    let counts: Vec<String> = columns
        .iter()
        .map(|(c, json)| {
            format!(
                "pg_catalog.count(*) FILTER (WHERE {})",
                plan::mentions_condition(&[(c.clone(), *json)])
            )
        })
        .collect();
    format!(
        "SELECT pg_catalog.jsonb_build_array({}) FROM {} WHERE {}",
        counts.join(", "),
        step.table_name,
        step.rows
    )
}

/// `(column, rows)` of `counts` (a JSON array in the order of `columns`),
/// those with none left out.
pub fn nonzero(columns: &[(String, bool)], counts: &Value) -> Vec<(String, u64)> {
    columns
        .iter()
        .enumerate()
        .map(|(i, (c, _))| (c.clone(), counts[i].as_u64().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

pub struct Runner<'a> {
    pub cat: &'a Catalog,
    pub job_id: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub params: &'a Params,
    pub out: Outcome,
    /// Rows the last protected deletion removed (for closing its record).
    last_removed: u64,
    /// The admin role the subject held, per transfer step (by index).
    held: HashMap<usize, Option<String>>,
    /// Index of the step being run.
    current: usize,
    owners: HashMap<u32, pgrx::pg_sys::Oid>,
}

impl<'a> Runner<'a> {
    pub fn new(
        cat: &'a Catalog,
        job_id: &'a str,
        target_type: &'a str,
        target_id: &'a str,
        params: &'a Params,
    ) -> Self {
        Runner {
            cat,
            job_id,
            target_type,
            target_id,
            params,
            out: Outcome::default(),
            last_removed: 0,
            held: HashMap::new(),
            current: 0,
            owners: HashMap::new(),
        }
    }

    /// The owner of `table` (read once per run).
    pub fn owner_of(&mut self, table: u32) -> LcResult<pgrx::pg_sys::Oid> {
        match self.owners.get(&table) {
            Some(o) => Ok(*o),
            None => {
                let o = privilege::table_owner(pgrx::pg_sys::Oid::from(table))?;
                self.owners.insert(table, o);
                Ok(o)
            }
        }
    }

    /// Run `f` as the owner of `table`.
    pub fn as_owner<R>(&mut self, table: u32, f: impl FnOnce() -> LcResult<R>) -> LcResult<R> {
        let owner = self.owner_of(table)?;
        privilege::as_role(owner, f)
    }

    fn note(&mut self, step: &Step, action: &str, rows: u64, why: Option<&str>) {
        if rows == 0 && action != "kept" {
            return;
        }
        let mut a = json!({ "table": step.table_name, "action": action, "rows": rows });
        if let Some(w) = why.or(step.reason.as_deref()) {
            a["reason"] = json!(w);
        }
        if let Some(w) = &step.workspace {
            a["workspace"] = json!(w);
        }
        self.out.actions.push(a);
    }

    fn exec(&mut self, step: &Step, sql: &str) -> LcResult<u64> {
        let params = self.params;
        self.as_owner(step.table, || {
            spi::exec(sql, &params.args(&step.key, step.second.as_deref()))
        })
    }

    fn count(&mut self, step: &Step, extra: Option<&str>) -> LcResult<u64> {
        let sql = format!(
            "SELECT pg_catalog.count(*) FROM {} WHERE {}{}",
            step.table_name,
            step.rows,
            extra.map(|e| format!(" AND ({e})")).unwrap_or_default()
        );
        let params = self.params;
        Ok(self
            .as_owner(step.table, || {
                spi::one::<i64>(&sql, &params.args(&step.key, step.second.as_deref()))
            })?
            .unwrap_or(0) as u64)
    }

    pub fn run(&mut self, steps: &[Step]) -> LcResult<()> {
        // The roles the subject holds where it hands a workspace over, read
        // before anything changes: its membership there ends first.
        for (i, step) in steps.iter().enumerate() {
            if let Action::Transfer { membership, .. } = &step.action {
                let held = self.held_role(step, membership)?;
                self.held.insert(i, held);
            }
        }
        let mut i = 0;
        while i < steps.len() {
            // Mentions are counted before anything changes: a run of such
            // steps reads the same data, so they are counted together.
            let counting = steps[i..]
                .iter()
                .take_while(|s| matches!(s.action, Action::CountMentions { .. }))
                .count();
            if counting > 0 {
                self.count_mentions(&steps[i..i + counting])?;
                i += counting;
                continue;
            }
            self.current = i;
            self.step(&steps[i])?;
            i += 1;
        }
        Ok(())
    }

    /// Count the mentions of [`Action::CountMentions`] steps: one statement
    /// per table owner and parameters, a subquery per step.
    fn count_mentions(&mut self, steps: &[Step]) -> LcResult<()> {
        if self.params.identifiers.is_empty() {
            return Ok(());
        }
        let counted: Vec<(&Step, &[(String, bool)])> = steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::CountMentions { columns } => Some((s, columns.as_slice())),
                _ => None,
            })
            .collect();
        let mut batch = Batch::new();
        for (step, columns) in &counted {
            batch.add(
                step.table,
                &step.key,
                step.second.as_deref(),
                format!("({})", mention_counts_sql(step, columns)),
            );
        }
        let params = self.params;
        let found = batch.run(
            |table| self.owner_of(table),
            |key, second| params.args(key, second),
        )?;
        for ((step, columns), counts) in counted.iter().zip(&found) {
            for (c, n) in nonzero(columns, counts) {
                self.out
                    .mentions
                    .push(json!({ "table": step.table_name, "column": c, "rows": n }));
            }
        }
        Ok(())
    }

    fn step(&mut self, step: &Step) -> LcResult<()> {
        let t = &step.table_name;
        let rows = &step.rows;
        match &step.action {
            Action::RefuseUnmapped { constraint, target } => {
                if self.count(step, None)? > 0 {
                    return Err(LcError::unmapped_reference(t, constraint, target));
                }
            }
            Action::Detach { columns } => {
                let sets: Vec<String> = columns.iter().map(|c| format!("{c} = NULL")).collect();
                let n = self.exec(
                    step,
                    &format!("UPDATE {t} SET {} WHERE {rows}", sets.join(", ")),
                )?;
                self.note(step, "detached", n, None);
            }
            Action::Delete { storage } if storage.is_empty() => {
                let n = self.exec(step, &format!("DELETE FROM {t} WHERE {rows}"))?;
                self.note(step, "deleted", n, None);
            }
            Action::Delete { storage } => {
                // Stored objects named by the removed rows: one step each,
                // for the control plane to delete and confirm. Read from
                // the DELETE itself.
                let returning: Vec<String> = storage
                    .iter()
                    .enumerate()
                    .map(|(i, c)| format!("{}::text AS o{i}", plan::ident(c)))
                    .collect();
                let outputs: Vec<String> = (0..storage.len()).map(|i| format!("d.o{i}")).collect();
                let sql = format!(
                    "WITH d AS (DELETE FROM {t} WHERE {rows} RETURNING {}) \
                     SELECT pg_catalog.jsonb_build_array(pg_catalog.count(*), \
                            coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array({})), '[]')) FROM d",
                    returning.join(", "),
                    outputs.join(", ")
                );
                let params = self.params;
                let v = self
                    .as_owner(step.table, || {
                        spi::json(&sql, &params.args(&step.key, step.second.as_deref()))
                    })?
                    .unwrap_or(Value::Null);
                let n = v[0].as_u64().unwrap_or(0);
                self.record_objects(step, storage, &v[1])?;
                self.note(step, "deleted", n, None);
            }
            Action::DeleteObjects { columns, clears } => {
                let cols: Vec<String> = columns
                    .iter()
                    .map(|c| format!("{}::text", plan::ident(c)))
                    .collect();
                let any = columns
                    .iter()
                    .map(|c| format!("{} IS NOT NULL", plan::ident(c)))
                    .collect::<Vec<_>>()
                    .join(" OR ");
                let sql = format!(
                    "SELECT coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array({})), '[]') \
                       FROM {t} WHERE {rows} AND ({any})",
                    cols.join(", ")
                );
                let params = self.params;
                let refs = self
                    .as_owner(step.table, || {
                        spi::json(&sql, &params.args(&step.key, step.second.as_deref()))
                    })?
                    .unwrap_or(Value::Null);
                let found = self.record_objects(step, columns, &refs)?;
                if found > 0 && !clears.is_empty() {
                    self.exec(
                        step,
                        &format!(
                            "UPDATE {t} SET {} WHERE {rows} AND ({any})",
                            clears.join(", ")
                        ),
                    )?;
                }
                self.note(step, "objects deleted", found, None);
            }
            Action::Anonymize { sets } if sets.is_empty() => {
                let kept = self.count(step, None)?;
                if kept > 0 {
                    self.note(step, "kept", kept, None);
                }
            }
            Action::Anonymize { sets } => {
                let n = self.exec(
                    step,
                    &format!("UPDATE {t} SET {} WHERE {rows}", sets.join(", ")),
                )?;
                if n == 0 && step.reason.as_deref() == Some("subject row, kept as a tombstone") {
                    self.note(step, "kept", 1, None);
                } else {
                    self.note(step, "anonymized", n, None);
                }
            }
            Action::Retain {
                key_column,
                legal_basis,
                retain_for,
                sets,
            } => {
                if !sets.is_empty() {
                    let n = self.exec(
                        step,
                        &format!("UPDATE {t} SET {} WHERE {rows}", sets.join(", ")),
                    )?;
                    self.note(
                        step,
                        "anonymized",
                        n,
                        Some("retained row: personal columns with a rule"),
                    );
                }
                let n = self.count(step, None)?;
                if n == 0 {
                    return Ok(());
                }
                // Rows kept by the erasure of a workspace that went with its
                // last admin are the workspace's.
                let target_type = if step.workspace.is_some() {
                    "tenant"
                } else {
                    self.target_type
                };
                let until = privilege::as_extension_owner(|| {
                    spi::one::<String>(
                        "INSERT INTO lifecycle.retention \
                                (job_id, relation, key_column, target_type, target_id, rows, legal_basis, retain_until) \
                         VALUES ($1::pg_catalog.uuid, $2::pg_catalog.regclass, $3, $4, $5, $6, $7, \
                                 pg_catalog.now() OPERATOR(pg_catalog.+) $8::pg_catalog.interval) \
                         RETURNING pg_catalog.to_char(retain_until AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
                        &[
                            self.job_id.into(),
                            t.as_str().into(),
                            key_column.as_str().into(),
                            target_type.into(),
                            step.key.as_str().into(),
                            (n as i64).into(),
                            legal_basis.as_str().into(),
                            retain_for.as_str().into(),
                        ],
                    )
                })?;
                self.out.retained.push(json!({
                    "table": t,
                    "label": step.label,
                    "rows": n,
                    "legal_basis": legal_basis,
                    "retain_for": retain_for,
                    "retain_until": until,
                }));
                self.note(step, "retained", n, Some(legal_basis));
            }
            Action::RedactText { columns } => {
                if self.params.identifiers.is_empty() {
                    return Ok(());
                }
                let sets: Vec<String> = columns
                    .iter()
                    .map(|(c, json)| {
                        let q = plan::ident(c);
                        let f = if *json { "redact_json" } else { "redact_text" };
                        let found = plan::mentions_condition(&[(c.clone(), *json)]);
                        format!("{q} = CASE WHEN {found} THEN lifecycle.{f}({q}, $3) ELSE {q} END")
                    })
                    .collect();
                let cond = plan::mentions_condition(columns);
                let n = self.exec(
                    step,
                    &format!(
                        "UPDATE {t} SET {} WHERE {rows} AND ({cond})",
                        sets.join(", ")
                    ),
                )?;
                self.note(step, "redacted", n, None);
            }
            Action::CountMentions { .. } => self.count_mentions(std::slice::from_ref(step))?,
            Action::ReplaceValues { sets } => {
                for (c, expr) in sets {
                    let q = plan::ident(c);
                    let n = self.exec(
                        step,
                        &format!("UPDATE {t} SET {q} = {expr} WHERE {rows} AND {q}::text OPERATOR(pg_catalog.=) ANY ($3)"),
                    )?;
                    let why = format!(
                        "{}; their value in {c} replaced",
                        step.reason.clone().unwrap_or_default()
                    );
                    self.note(step, "anonymized", n, Some(&why));
                }
            }
            Action::Transfer {
                tenant,
                to,
                membership,
            } => self.transfer(step, tenant, to, membership)?,
            Action::ProtectedDelete => {
                self.last_removed = self.protected_delete(step)?;
            }
            Action::StillRetained {
                rows: n,
                legal_basis,
                retain_until,
            } => {
                self.out.retained.push(json!({
                    "table": t, "rows": n, "legal_basis": legal_basis, "retain_until": retain_until,
                }));
                self.note(step, "kept", *n as u64, None);
            }
            Action::CloseRetention { record } => {
                let left = self.count(step, None)?;
                let removed = self.last_removed;
                privilege::as_extension_owner(|| {
                    spi::exec(
                        "UPDATE lifecycle.retention \
                            SET purged_rows = coalesce(purged_rows, 0) OPERATOR(pg_catalog.+) $2, \
                                purged_at = CASE WHEN $3 THEN pg_catalog.now() END \
                          WHERE id OPERATOR(pg_catalog.=) $1",
                        &[
                            (*record).into(),
                            (removed as i64).into(),
                            (left == 0).into(),
                        ],
                    )
                })?;
            }
        }
        Ok(())
    }

    /// One external step per stored object in `refs` (rows of values of
    /// `columns`); returns how many.
    fn record_objects(&mut self, step: &Step, columns: &[String], refs: &Value) -> LcResult<u64> {
        let mut cols = Vec::new();
        let mut values = Vec::new();
        for row in refs.as_array().into_iter().flatten() {
            for (i, c) in columns.iter().enumerate() {
                // An empty reference names no object ('' where the
                // application stores "none" in a NOT NULL column).
                if let Some(r) = row[i].as_str().filter(|r| !r.trim().is_empty()) {
                    cols.push(c.clone());
                    values.push(r.to_string());
                }
            }
        }
        if values.is_empty() {
            return Ok(0);
        }
        let n = privilege::as_extension_owner(|| {
            spi::exec(
                "INSERT INTO lifecycle.external_steps (job_id, kind, relation, column_name, reference) \
                 SELECT $1::pg_catalog.uuid, 'delete_object', $2::pg_catalog.regclass, x.c, x.r \
                   FROM ROWS FROM (pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.text[])) AS x(c, r)",
                &[
                    self.job_id.into(),
                    step.table_name.as_str().into(),
                    cols.into(),
                    values.into(),
                ],
            )
        })?;
        self.out.external_steps += n;
        Ok(n)
    }

    /// The admin role the subject holds in the step's workspace (`$2`).
    fn held_role(&mut self, step: &Step, m: &plan::MembershipTable) -> LcResult<Option<String>> {
        let role = plan::ident(&m.role_column);
        let admin = m.admin.predicate("m", &m.role_column, "$3");
        // `rows` names the columns bare: they are the only table's, `m`.
        let sql = format!(
            "SELECT m.{role}::text FROM {} m WHERE {} AND {admin} LIMIT 1",
            step.table_name, step.rows
        );
        let roles = m.admin.roles();
        self.as_owner(step.table, || {
            spi::one::<String>(
                &sql,
                &[
                    step.key.as_str().into(),
                    step.second.as_deref().into(),
                    roles.into(),
                ],
            )
        })
    }

    /// Hand a workspace to another member: the member takes the admin role
    /// the subject held (its membership ended in the steps before).
    fn transfer(
        &mut self,
        step: &Step,
        tenant: &str,
        to: &str,
        m: &plan::MembershipTable,
    ) -> LcResult<()> {
        let Some(Some(held)) = self.held.get(&self.current).cloned() else {
            return Ok(());
        };
        let Some(table) = self.cat.table(step.table) else {
            return Ok(());
        };
        let member = format!(
            "{} AND {}",
            table.eq(&m.tenant_column, "$1"),
            table.eq(&m.subject_column, "$3")
        );
        let role_type = table
            .column(&m.role_column)
            .map(|c| c.type_name.clone())
            .unwrap_or_else(|| "text".into());
        let sql = format!(
            "UPDATE {} SET {} = CAST($2 AS {role_type}) WHERE {member}",
            step.table_name,
            plan::ident(&m.role_column)
        );
        let n = self.as_owner(step.table, || {
            spi::exec(&sql, &[tenant.into(), held.as_str().into(), to.into()])
        })?;
        if n == 0 {
            // A member of the workspace who has no row in this membership
            // table (a project's members): the role there is not handed
            // over, and the receipt says so.
            self.note(step, "not transferred", 1, Some(tenant));
            return Ok(());
        }
        self.note(step, "ownership transferred", n, Some(tenant));
        Ok(())
    }

    /// Delete the step's rows that nothing references any more; the rows
    /// still referenced stay and are reported with what references them.
    fn protected_delete(&mut self, step: &Step) -> LcResult<u64> {
        let t = step.table_name.clone();
        let refs: Vec<plan::Reference> = self
            .cat
            .refs
            .iter()
            .filter(|r| r.parent == step.table)
            .cloned()
            .collect();
        let self_ref = refs.iter().any(|r| r.child == step.table);
        let guards: Vec<String> = refs
            .iter()
            .map(|r| {
                let on: Vec<String> = r
                    .cols
                    .iter()
                    .zip(&r.parent_cols)
                    .map(|(c, pc)| format!("r.{c} OPERATOR(pg_catalog.=) t.{pc}"))
                    .collect();
                format!(
                    "NOT EXISTS (SELECT 1 FROM {} r WHERE {})",
                    r.child_name,
                    on.join(" AND ")
                )
            })
            .collect();
        // `rows` names the columns bare: they are `t`'s.
        let rows = step.rows.clone();
        let mut sql = format!("DELETE FROM {t} t WHERE {rows}");
        for g in &guards {
            sql.push_str(" AND ");
            sql.push_str(g);
        }
        let mut removed = 0;
        for _ in 0..32 {
            let n = self.exec(step, &sql)?;
            removed += n;
            if n == 0 || !self_ref {
                break;
            }
        }
        self.note(step, "deleted", removed, None);
        let kept = self.count(step, None)?;
        if kept > 0 {
            let mut by: Vec<String> = Vec::new();
            for (r, g) in refs.iter().zip(&guards) {
                let sql = format!("SELECT EXISTS (SELECT 1 FROM {t} t WHERE {rows} AND NOT {g})");
                let params = self.params;
                let referenced = self
                    .as_owner(step.table, || {
                        spi::one::<bool>(&sql, &params.args(&step.key, step.second.as_deref()))
                    })?
                    .unwrap_or(false);
                if referenced && !by.contains(&r.child_name) {
                    by.push(r.child_name.clone());
                }
            }
            let why = format!(
                "{}; still referenced from {}",
                step.reason.clone().unwrap_or_default(),
                by.join(", ")
            );
            self.note(step, "kept", kept, Some(&why));
        }
        Ok(removed)
    }
}
