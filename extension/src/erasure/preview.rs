//! The preview of an erasure: the same plan the run would follow, each step
//! with the rows it would touch counted, changing nothing. Also what would
//! stop it: workspaces the subject is the last admin of, legal holds on the
//! target or on rows a step reaches, rows of unmapped tables that reference
//! what would be removed.

use serde_json::{json, Value};

use super::batch::Batch;
use super::run::{mention_counts_sql, nonzero, Params};
use super::{identifiers, last_admin_tenants, resolve_target, salt, Target};
use crate::error::LcResult;
use crate::plan::{self, Action, Catalog, Step};
use crate::privilege;
use crate::spi;
use lifecycle_core::rules::ColumnRule;

/// The count of the step's rows (those also meeting `extra`).
fn count_sql(step: &Step, extra: Option<&str>) -> String {
    format!(
        "SELECT pg_catalog.count(*) FROM {} WHERE {}{}",
        step.table_name,
        step.rows,
        extra.map(|e| format!(" AND ({e})")).unwrap_or_default()
    )
}

/// The count of the stored objects named in `columns` of the step's rows
/// (empty values name none), as the run records them.
fn objects_sql(step: &Step, columns: &[String]) -> String {
    let each: Vec<String> = columns
        .iter()
        .map(|c| {
            format!(
                "pg_catalog.count(*) FILTER (WHERE pg_catalog.btrim({}::text) OPERATOR(pg_catalog.<>) '')",
                plan::ident(c)
            )
        })
        .collect();
    format!(
        "SELECT ({})::pg_catalog.int8 FROM {} WHERE {}",
        each.join(" OPERATOR(pg_catalog.+) "),
        step.table_name,
        step.rows
    )
}

/// What a transfer step would do, as the run decides it: nothing where the
/// subject holds no admin role in the table; where it does, the member
/// takes it over, or, without a row of theirs there, it is not handed over.
fn transfer(
    cat: &Catalog,
    step: &Step,
    tenant: &str,
    to: &str,
    m: &plan::MembershipTable,
) -> LcResult<Option<(&'static str, u64)>> {
    let Some(t) = cat.table(step.table) else {
        return Ok(None);
    };
    // `rows` names the columns bare: they are the only table's, `m`.
    let held = format!(
        "SELECT pg_catalog.count(*) FROM {} m WHERE {} AND {}",
        step.table_name,
        step.rows,
        m.admin.predicate("m", &m.role_column, "$3")
    );
    let roles = m.admin.roles();
    let n = super::as_owner_of(step.table, || {
        spi::one::<i64>(
            &held,
            &[
                step.key.as_str().into(),
                step.second.as_deref().into(),
                roles.into(),
            ],
        )
    })?
    .unwrap_or(0);
    if n == 0 {
        return Ok(None);
    }
    let member = format!(
        "SELECT pg_catalog.count(*) FROM {} WHERE {} AND {}",
        step.table_name,
        t.eq(&m.tenant_column, "$1"),
        t.eq(&m.subject_column, "$2")
    );
    let members = super::as_owner_of(step.table, || {
        spi::one::<i64>(&member, &[tenant.into(), to.into()])
    })?
    .unwrap_or(0) as u64;
    Ok(Some(if members == 0 {
        ("not transferred", 1)
    } else {
        ("ownership transferred", members)
    }))
}

/// The columns of `table` that a rule changes (storage objects aside).
fn ruled_columns(cat: &Catalog, table: u32) -> Vec<String> {
    cat.table(table)
        .map(|t| {
            t.rules
                .iter()
                .filter(|(_, r)| *r != ColumnRule::StorageObject)
                .map(|(c, _)| c.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// Holds in force that cover rows a step would change.
fn holds_on_step(cat: &Catalog, step: &Step, params: &Params) -> LcResult<Vec<Value>> {
    let mut out = Vec::new();
    let Some(table) = cat.table(step.table) else {
        return Ok(out);
    };
    let rows = step.rows.clone();
    let relid = pgrx::pg_sys::Oid::from(table.oid);
    for h in crate::holds::holds_covering_rows(relid, &step.table_name, &rows, || {
        params.args(&step.key, step.second.as_deref())
    })? {
        out.push(json!({
            "hold_id": h.id,
            "scope": h.describe_scope(),
            "reason": h.reason,
            "placed_by": h.created_by,
            "table": step.table_name,
        }));
    }
    Ok(out)
}

/// `lifecycle.preview_erasure()`: what erasing `target_type` `target_id`
/// would do, as JSON.
/// `workspaces` are the decisions for the workspaces the subject is the
/// last admin of, as `request_erasure` takes them.
pub fn preview(
    target_type: &str,
    target_id: &str,
    tenant_id: Option<&str>,
    workspaces: Option<&Value>,
) -> LcResult<Value> {
    crate::row_security::during("the erasure preview", || {
        counted(target_type, target_id, tenant_id, workspaces)
    })
}

fn counted(
    target_type: &str,
    target_id: &str,
    tenant_id: Option<&str>,
    workspaces: Option<&Value>,
) -> LcResult<Value> {
    let cat = super::map::load()?;
    let target = resolve_target(&cat, target_type)?;
    let table = target.table().clone();
    let id_col = target.id_column().to_string();
    let exists = super::target_exists(&target, target_id)?;
    let salt = salt()?;
    let decisions = workspaces
        .map(|w| plan::decisions(&json!({ "workspaces": w })))
        .unwrap_or_default();
    let (plan, last_admin) = match &target {
        Target::Subject { subject_type, .. } => {
            // Workspaces without a decision would stop the erasure.
            let last: Vec<String> = last_admin_tenants(&cat, subject_type, target_id)?
                .into_iter()
                .filter(|t| !decisions.iter().any(|(d, _)| d == t))
                .collect();
            let plan = plan::subject_erasure(&cat, subject_type, target_id, &decisions, &salt)
                .map_err(super::plan_error)?;
            (plan, last)
        }
        Target::Tenant { .. } => (
            plan::workspace_erasure(&cat, target_id, &salt).map_err(super::plan_error)?,
            Vec::new(),
        ),
    };
    super::require_readable(&cat, &plan.steps, &plan.checks)?;
    let params = Params::new(identifiers(&table, &id_col, target_id)?.0);
    // Every count first, read together (nothing changes in between): a
    // statement per table owner and parameters.
    let counting = !params.identifiers.is_empty();
    let mut batch = Batch::new();
    let mut asked: Vec<(Option<usize>, Option<usize>)> = Vec::with_capacity(plan.steps.len());
    for step in &plan.steps {
        let (key, second) = (step.key.as_str(), step.second.as_deref());
        let mut count = |extra: Option<&str>| {
            Some(batch.add_count(step.table, key, second, &count_sql(step, extra)))
        };
        asked.push(match &step.action {
            Action::RefuseUnmapped { .. }
            | Action::Anonymize { .. }
            | Action::Retain { .. }
            | Action::Detach { .. } => (count(None), None),
            Action::Delete { storage } => {
                let n = count(None);
                let objects = (!storage.is_empty())
                    .then(|| batch.add_count(step.table, key, second, &objects_sql(step, storage)));
                (n, objects)
            }
            Action::DeleteObjects { columns, .. } => (
                None,
                Some(batch.add_count(step.table, key, second, &objects_sql(step, columns))),
            ),
            Action::RedactText { columns } if counting => {
                (count(Some(&plan::mentions_condition(columns))), None)
            }
            Action::ReplaceValues { sets } => {
                let cond = sets
                    .iter()
                    .map(|(c, _)| {
                        format!("{}::text OPERATOR(pg_catalog.=) ANY ($3)", plan::ident(c))
                    })
                    .collect::<Vec<_>>()
                    .join(" OR ");
                (count(Some(&cond)), None)
            }
            Action::CountMentions { columns } if counting => (
                None,
                Some(batch.add(
                    step.table,
                    key,
                    second,
                    format!("({})", mention_counts_sql(step, columns)),
                )),
            ),
            _ => (None, None),
        });
    }
    let found = batch.run(
        |table| privilege::table_owner(pgrx::pg_sys::Oid::from(table)),
        |key, second| params.args(key, second),
    )?;
    let n_of = |i: Option<usize>| -> u64 { i.and_then(|i| found[i].as_u64()).unwrap_or(0) };
    let mut steps = Vec::new();
    let mut totals = serde_json::Map::new();
    let mut retained = Vec::new();
    let mut mentions = Vec::new();
    let mut refusals = Vec::new();
    let mut holds = Vec::new();
    let mut objects = 0u64;
    // Without any hold in force, no step can meet one.
    let holds_exist = crate::cache::any_hold_in_force()?;
    for (step, &(first, second)) in plan.steps.iter().zip(&asked) {
        let (verb, rows, extra) = match &step.action {
            Action::RefuseUnmapped { constraint, target } => {
                let n = n_of(first);
                if n > 0 {
                    refusals.push(json!({
                        "table": step.table_name, "constraint": constraint,
                        "references": target, "rows": n,
                    }));
                }
                continue;
            }
            Action::Delete { .. } => {
                let n = n_of(first);
                if n > 0 {
                    objects += n_of(second);
                }
                ("deleted", n, json!({}))
            }
            Action::DeleteObjects { columns, .. } => {
                let n = n_of(second);
                objects += n;
                ("objects deleted", n, json!({ "columns": columns }))
            }
            Action::Transfer {
                tenant,
                to,
                membership,
            } => match transfer(&cat, step, tenant, to, membership)? {
                None => continue,
                Some((verb, n)) => (verb, n, json!({ "workspace": tenant, "to": to })),
            },
            Action::Anonymize { sets } => {
                let n = n_of(first);
                let columns = ruled_columns(&cat, step.table);
                if sets.is_empty() {
                    ("kept", n, json!({}))
                } else {
                    ("anonymized", n, json!({ "columns": columns }))
                }
            }
            Action::Retain {
                legal_basis,
                retain_for,
                sets,
                ..
            } => {
                let n = n_of(first);
                if !sets.is_empty() && n > 0 {
                    // As the run reports it: the ruled columns change first.
                    steps.push(json!({
                        "table": step.table_name, "label": step.label, "action": "anonymized",
                        "rows": n, "reason": "retained row: personal columns with a rule",
                        "columns": ruled_columns(&cat, step.table),
                    }));
                    *totals.entry("anonymized".to_string()).or_insert(json!(0)) = json!(
                        totals
                            .get("anonymized")
                            .and_then(Value::as_u64)
                            .unwrap_or(0)
                            + n
                    );
                }
                if n > 0 {
                    retained.push(json!({
                        "table": step.table_name, "label": step.label, "rows": n,
                        "legal_basis": legal_basis, "retain_for": retain_for,
                    }));
                }
                (
                    "retained",
                    n,
                    json!({ "legal_basis": legal_basis, "retain_for": retain_for }),
                )
            }
            Action::Detach { columns } => ("detached", n_of(first), json!({ "columns": columns })),
            Action::RedactText { columns } => {
                if params.identifiers.is_empty() {
                    continue;
                }
                let names: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
                ("redacted", n_of(first), json!({ "columns": names }))
            }
            Action::CountMentions { columns } => {
                if params.identifiers.is_empty() {
                    continue;
                }
                for (c, n) in nonzero(
                    columns,
                    &second.map(|i| found[i].clone()).unwrap_or_default(),
                ) {
                    mentions.push(json!({ "table": step.table_name, "column": c, "rows": n }));
                }
                continue;
            }
            Action::ReplaceValues { sets } => {
                let cols: Vec<&str> = sets.iter().map(|(c, _)| c.as_str()).collect();
                ("anonymized", n_of(first), json!({ "columns": cols }))
            }
            Action::ProtectedDelete
            | Action::CloseRetention { .. }
            | Action::StillRetained { .. } => {
                continue;
            }
        };
        if matches!(
            step.action,
            Action::Delete { .. }
                | Action::Anonymize { .. }
                | Action::Retain { .. }
                | Action::Detach { .. }
        ) && rows > 0
            && holds_exist
        {
            holds.extend(holds_on_step(&cat, step, &params)?);
        }
        if rows == 0 && verb != "kept" {
            continue;
        }
        *totals.entry(verb.to_string()).or_insert(json!(0)) =
            json!(totals.get(verb).and_then(Value::as_u64).unwrap_or(0) + rows);
        let mut s = json!({
            "table": step.table_name, "label": step.label, "action": verb, "rows": rows,
        });
        if let Some(r) = &step.reason {
            s["reason"] = json!(r);
        }
        if let Some(w) = &step.workspace {
            s["workspace"] = json!(w);
        }
        if let Value::Object(e) = extra {
            for (k, v) in e {
                s[k] = v;
            }
        }
        steps.push(s);
    }
    // Holds on the target itself.
    let on_target = privilege::as_extension_owner(|| {
        spi::json_rows(
            "SELECT pg_catalog.jsonb_build_object('hold_id', id, 'scope', scope_type OPERATOR(pg_catalog.||) ' ' \
                    OPERATOR(pg_catalog.||) scope_id, 'reason', reason, 'placed_by', created_by) \
               FROM lifecycle.holds_in_force \
              WHERE scope_type OPERATOR(pg_catalog.=) $1 AND scope_id OPERATOR(pg_catalog.=) $2 ORDER BY created_at",
            &[target.type_name().into(), target_id.into()],
        )
    })?;
    let mut all_holds: Vec<Value> = on_target;
    for h in holds {
        if !all_holds.iter().any(|x| x["hold_id"] == h["hold_id"]) {
            all_holds.push(h);
        }
    }
    let blocked =
        !all_holds.is_empty() || !last_admin.is_empty() || !refusals.is_empty() || !exists;
    Ok(json!({
        "target": { "type": target.type_name(), "id": target_id, "exists": exists },
        "tenant_id": tenant_id,
        "steps": steps,
        "totals": totals,
        "retained": retained,
        "stored_objects": objects,
        "mentions": mentions,
        "identifiers": params.identifiers.len(),
        "last_admin_workspaces": last_admin,
        "holds": all_holds,
        "unmapped_references": refusals,
        "would_run": !blocked,
    }))
}
