//! The erasure engine: user (subject) erasure, workspace (tenant) erasure
//! and purge, from the data map alone, as plan -> execute -> verify:
//!
//! * [`catalog`] reads the data map and the relationships between tables;
//! * [`crate::plan`] turns them and the target into typed steps (pure);
//! * [`run`] runs the steps as parameterised statements, each as the owner
//!   of the table it changes;
//! * [`verify`] re-scans what was to be removed; the receipt renders it.
//!
//! [`preview`] counts what each step of the same plan would touch, changing
//! nothing: what the approver and the end user see is what runs.
//!
//! Everything runs inside the caller's transaction (the job runner puts each
//! job in a subtransaction of its own), with the legal-hold guards active: a
//! row under hold makes the statement that reaches it fail, and the runner
//! turns that failure into a blocked job. Soft delete is switched off, so
//! soft-deleted rows are removed for real. `ON DELETE CASCADE` is never
//! relied on.

use std::borrow::Cow;
use std::rc::Rc;

use pgrx::pg_sys;
use serde_json::{json, Value};

use crate::audit::{self, Event};
use crate::error::{LcError, LcResult};
use crate::plan::{self, Action, Catalog, Check, Decision, Plan, Retained, Step, Table};
use crate::privilege;
use crate::row_security;
use crate::spi;
use lifecycle_core::rules::ColumnRule;

pub mod batch;
pub mod catalog;
pub mod map;
pub mod mentions;
pub mod preview;
pub mod run;
pub mod verify;

#[cfg(any(test, feature = "pg_test"))]
mod row_security_tests;

use run::{Params, Runner};

/// A job as the engine runs it.
pub struct Work<'a> {
    pub job_id: &'a str,
    pub job_type: &'a str,
    pub target_type: &'a str,
    pub target_id: &'a str,
    pub requested_by: &'a str,
    pub options: &'a Value,
}

/// The data map as the plan reads it (kept per backend, see [`map`]).
pub fn load_map() -> LcResult<Rc<Catalog>> {
    map::load()
}

/// What a job targets: a subject (its type's subject table) or a tenant.
#[derive(Debug, Clone)]
pub enum Target {
    Subject { table: Table, subject_type: String },
    Tenant { table: Table },
}

impl Target {
    pub fn table(&self) -> &Table {
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
pub fn resolve_target(cat: &Catalog, target_type: &str) -> LcResult<Target> {
    if target_type == "tenant" || target_type == "workspace" {
        if let Some(t) = cat.tenant_table() {
            return Ok(Target::Tenant { table: t.clone() });
        }
    } else if let Some(t) = cat.subject_table(target_type) {
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
        "SELECT CASE WHEN $1 OPERATOR(pg_catalog.=) ANY ('{tenant,workspace}') \
                      AND EXISTS (SELECT 1 FROM lifecycle.tenant_tables) THEN 'tenant' \
                     WHEN EXISTS (SELECT 1 FROM lifecycle.subject_tables \
                                   WHERE subject_type OPERATOR(pg_catalog.=) $1) \
                      AND NOT $1 OPERATOR(pg_catalog.=) ANY ('{tenant,workspace}') THEN $1 END",
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
        "SELECT coalesce(pg_catalog.jsonb_agg(subject_type ORDER BY relation::text), '[]') \
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

/// Run `f` as the owner of `table` (reads of application tables too run as
/// their owner: a type's operators are the owner's code). Refused
/// (`LC044`) when row-level security would hide rows of it from its owner.
fn as_owner_of<R>(table: u32, f: impl FnOnce() -> LcResult<R>) -> LcResult<R> {
    privilege::as_role(privilege::table_owner(pg_sys::Oid::from(table))?, f)
}

/// Refuse (`LC044`) before any step runs when row-level security would hide
/// rows from a statement of the plan: of the table a step or check runs on,
/// from its owner, or of a table its condition reads through, from that
/// owner (see [`crate::row_security`]).
fn require_readable(cat: &Catalog, steps: &[Step], checks: &[Check]) -> LcResult<()> {
    let steps = steps.iter().map(|s| {
        // A protected deletion also reads every table referencing its own.
        let text = if matches!(s.action, Action::ProtectedDelete) {
            let children: Vec<&str> = cat
                .refs
                .iter()
                .filter(|r| r.parent == s.table)
                .map(|r| r.child_name.as_str())
                .collect();
            Cow::Owned(format!("{} {}", s.rows, children.join(" ")))
        } else {
            Cow::Borrowed(s.rows.as_str())
        };
        (s.table, text)
    });
    let checks = checks.iter().map(|c| match c {
        Check::RowsGone { table, rows, .. } | Check::TextClean { table, rows, .. } => {
            (*table, Cow::Borrowed(rows.as_str()))
        }
        Check::ValuesGone { table, rows, .. } => {
            (*table, Cow::Borrowed(rows.as_deref().unwrap_or_default()))
        }
    });
    row_security::require_statements(cat, steps.chain(checks))
}

/// Whether the target's row exists. An id that is not a valid value of the
/// key's type (text 'abc' for a bigint key) does not exist either.
pub fn target_exists(target: &Target, id: &str) -> LcResult<bool> {
    let t = target.table();
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM {} WHERE {})",
        t.name,
        t.eq(target.id_column(), "$1")
    );
    let owner = privilege::table_owner(pg_sys::Oid::from(t.oid))?;
    match crate::subxact::run(|| {
        privilege::as_role(owner, || {
            Ok(spi::one::<bool>(&sql, &[id.into()])?.unwrap_or(false))
        })
    }) {
        Ok(found) => Ok(found),
        Err(f) if f.sqlstate.starts_with("22") => Ok(false),
        Err(f) => Err(LcError::internal(f.message)),
    }
}

/// Workspaces where `subject_id` holds an admin role and no other member
/// does, across every membership table of `subject_type`.
pub fn last_admin_tenants(
    cat: &Catalog,
    subject_type: &str,
    subject_id: &str,
) -> LcResult<Vec<String>> {
    let mut out = Vec::new();
    for t in cat.memberships(subject_type) {
        let m = t.membership.as_ref().expect("membership");
        let ten = plan::ident(&m.tenant_column);
        let subj = plan::ident(&m.subject_column);
        let sql = format!(
            "SELECT coalesce(pg_catalog.jsonb_agg(DISTINCT m.{ten}::text), '[]') FROM {name} m \
              WHERE m.{} AND {} AND {} \
                AND NOT EXISTS (SELECT 1 FROM {name} o \
                                 WHERE o.{ten} OPERATOR(pg_catalog.=) m.{ten} \
                                   AND o.{subj} OPERATOR(pg_catalog.<>) m.{subj} AND {} AND {})",
            t.eq(&m.subject_column, "$1"),
            m.admin.predicate("m", &m.role_column, "$2"),
            t.live_member("m"),
            m.admin.predicate("o", &m.role_column, "$2"),
            t.live_member("o"),
            name = t.name,
        );
        let roles = m.admin.roles();
        if let Some(Value::Array(a)) = as_owner_of(t.oid, || {
            spi::json(&sql, &[subject_id.into(), roles.into()])
        })? {
            out.extend(a.into_iter().filter_map(|v| v.as_str().map(str::to_string)));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Whether `member` belongs to `tenant` in some membership table of the type
/// (a live membership). Ids are compared in the columns' own types; an id
/// the column's type cannot hold belongs to nobody.
pub fn is_member(cat: &Catalog, subject_type: &str, tenant: &str, member: &str) -> LcResult<bool> {
    for t in cat.memberships(subject_type) {
        let m = t.membership.as_ref().expect("membership");
        let sql = format!(
            "SELECT EXISTS (SELECT 1 FROM {} m WHERE {} AND {} AND {})",
            t.name,
            t.eq(&m.tenant_column, "$1"),
            t.eq(&m.subject_column, "$2"),
            t.live_member("m")
        );
        let owner = privilege::table_owner(pg_sys::Oid::from(t.oid))?;
        match crate::subxact::run(|| {
            privilege::as_role(owner, || {
                Ok(spi::one::<bool>(&sql, &[tenant.into(), member.into()])?.unwrap_or(false))
            })
        }) {
            Ok(true) => return Ok(true),
            Ok(false) => {}
            Err(f) if f.sqlstate.starts_with("22") => {}
            Err(f) => return Err(LcError::internal(f.message)),
        }
    }
    Ok(false)
}

/// `lifecycle.is_member(subject_type, subject_id, tenant_id)`: whether the
/// subject has a live membership in the tenant, by the data map's
/// membership tables. The control plane asks it before a tenant admin acts
/// on a person: only members of their own workspace.
pub fn member_of(subject_type: &str, subject_id: &str, tenant: &str) -> LcResult<bool> {
    let cat = map::load()?;
    is_member(&cat, subject_type, tenant, subject_id)
}

/// The identifiers of the target row's personal (ruled, textual) columns:
/// what redaction and verification look for (see
/// `lifecycle_core::redact::identifiers`); and the values of its columns
/// ruled `deleted_email` as they are (e-mail addresses). One read of the row.
fn identifiers(table: &Table, id_col: &str, id: &str) -> LcResult<(Vec<String>, Vec<String>)> {
    let ruled: Vec<&(String, ColumnRule)> = table
        .rules
        .iter()
        .filter(|(c, r)| {
            table
                .column(c)
                .is_some_and(|f| f.kind == plan::ValueKind::Text)
                && *r != ColumnRule::StorageObject
        })
        .collect();
    let cols: Vec<String> = ruled
        .iter()
        .map(|(c, _)| format!("{}::text", plan::ident(c)))
        .collect();
    if cols.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let sql = format!(
        "SELECT pg_catalog.jsonb_build_array({}) FROM {} WHERE {}",
        cols.join(", "),
        table.name,
        table.eq(id_col, "$1")
    );
    let v = as_owner_of(table.oid, || spi::json(&sql, &[id.into()]))?.unwrap_or(Value::Null);
    // (value, its rule), NULLs left out.
    let values: Vec<(String, ColumnRule)> = v
        .as_array()
        .into_iter()
        .flatten()
        .zip(&ruled)
        .filter_map(|(x, (_, r))| Some((x.as_str()?.to_string(), *r)))
        .collect();
    let mut emails: Vec<String> = values
        .iter()
        .filter(|(v, r)| *r == ColumnRule::DeletedEmail && !v.is_empty())
        .map(|(v, _)| v.clone())
        .collect();
    emails.sort();
    emails.dedup();
    // Whether its rule says the value names the subject.
    let named: Vec<(String, bool)> = values
        .into_iter()
        .map(|(v, r)| {
            let names = matches!(
                r,
                ColumnRule::DeletedName
                    | ColumnRule::DeletedEmail
                    | ColumnRule::Redact
                    | ColumnRule::Hash
            );
            (v, names)
        })
        .collect();
    Ok((lifecycle_core::redact::identifiers(&named), emails))
}

/// A random salt for the plan's hashing rules, as an SQL literal.
fn salt() -> LcResult<String> {
    let mut bytes = [0u8; 16];
    // SAFETY: the buffer is ours and of the length given.
    if !unsafe { pg_sys::pg_strong_random(bytes.as_mut_ptr().cast(), bytes.len()) } {
        return Err(LcError::internal("could not generate random bytes"));
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(plan::literal(&hex))
}

fn plan_error(e: plan::PlanError) -> LcError {
    match e {
        plan::PlanError::UnknownTarget(t) => LcError::unknown_target_type(&t, &[]),
        plan::PlanError::NoTenantTable => LcError::unknown_target_type("tenant", &[]),
        plan::PlanError::TooDeep(t) => LcError::internal(format!(
            "foreign keys into {t} nest more than 16 levels deep"
        )),
    }
}

/// Retention records of a target (for purge).
fn retention_records(
    where_clause: &str,
    args: &[pgrx::datum::DatumWithOid<'_>],
) -> LcResult<Vec<(Retained, String, String, String)>> {
    let rows = privilege::as_extension_owner(|| {
        spi::json_rows(
            &format!(
                "SELECT pg_catalog.jsonb_build_object('id', id, 'relation', relation::pg_catalog.oid::pg_catalog.int8, \
                        'key_column', key_column, 'target_type', target_type, 'target_id', target_id, \
                        'job_id', job_id, 'expired', retain_until OPERATOR(pg_catalog.<=) pg_catalog.now(), \
                        'retain_until', retain_until, 'legal_basis', legal_basis, 'rows', rows) \
                   FROM lifecycle.retention WHERE {where_clause} ORDER BY id"
            ),
            args,
        )
    })?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                Retained {
                    id: r["id"].as_i64().unwrap_or_default(),
                    relation: r["relation"].as_u64().unwrap_or_default() as u32,
                    key_column: r["key_column"].as_str().unwrap_or_default().to_string(),
                    rows: r["rows"].as_i64().unwrap_or_default(),
                    legal_basis: r["legal_basis"].as_str().unwrap_or_default().to_string(),
                    retain_until: r["retain_until"].as_str().unwrap_or_default().to_string(),
                    expired: r["expired"].as_bool().unwrap_or(false),
                },
                r["target_type"].as_str().unwrap_or_default().to_string(),
                r["target_id"].as_str().unwrap_or_default().to_string(),
                r["job_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// Run an erase or purge job; returns the receipt.
pub fn execute(work: &Work<'_>) -> LcResult<Value> {
    let purpose = if work.job_type == "purge" {
        "the purge"
    } else {
        "the erasure"
    };
    row_security::during(purpose, || execute_job(work))
}

fn execute_job(work: &Work<'_>) -> LcResult<Value> {
    let cat = map::load()?;
    let target = resolve_target(&cat, work.target_type)?;
    let id = work.target_id;
    let salt = salt()?;
    let sub_table = target.table().clone();
    let id_col = target.id_column().to_string();
    let (plan, params, emails, noun) = match (work.job_type, &target) {
        ("erase", Target::Subject { subject_type, .. }) => {
            // Checked again at run time: things may have changed since the
            // request. A decision counts only for a workspace the subject
            // is still the last admin of: one that gained another admin
            // during the cooling-off no longer depends on them, and is
            // neither erased nor handed over (the subject's membership
            // ends like any other).
            let last = last_admin_tenants(&cat, subject_type, id)?;
            let decisions: Vec<(String, plan::Decision)> = plan::decisions(work.options)
                .into_iter()
                .filter(|(t, _)| last.contains(t))
                .collect();
            // Every workspace the subject is the last admin of needs one.
            let still: Vec<String> = last
                .into_iter()
                .filter(|t| !decisions.iter().any(|(d, _)| d == t))
                .collect();
            if !still.is_empty() {
                return Err(LcError::last_admin(subject_type, id, &still));
            }
            // Whoever takes a workspace over must still be a member of it.
            for (tenant, decision) in &decisions {
                if let plan::Decision::TransferTo(to) = decision {
                    if !is_member(&cat, subject_type, tenant, to)? {
                        return Err(LcError::invalid_parameter(format!(
                            "cannot transfer workspace {tenant} to \"{to}\": not a member"
                        ))
                        .detail("They were a member when the erasure was requested.")
                        .hint("Cancel the request and request it again with a current member, or with \"erase\" for the workspace."));
                    }
                }
            }
            let plan = plan::subject_erasure(&cat, subject_type, id, &decisions, &salt)
                .map_err(plan_error)?;
            let (identifiers, emails) = identifiers(&sub_table, &id_col, id)?;
            (plan, Params::new(identifiers), emails, "subject")
        }
        ("erase", Target::Tenant { .. }) => {
            let plan = plan::workspace_erasure(&cat, id, &salt).map_err(plan_error)?;
            let params = Params::new(identifiers(&sub_table, &id_col, id)?.0);
            (plan, params, Vec::new(), "workspace")
        }
        ("purge", _) => {
            let records: Vec<Retained> = retention_records(
                "target_type OPERATOR(pg_catalog.=) $1 AND target_id OPERATOR(pg_catalog.=) $2 AND purged_at IS NULL",
                &[target.type_name().into(), id.into()],
            )?
            .into_iter()
            .map(|r| r.0)
            .collect();
            let plan = plan::purge(&cat, target.type_name(), id, &records).map_err(plan_error)?;
            require_readable(&cat, &plan.steps, &plan.checks)?;
            let no_identifiers = Params::new(Vec::new());
            let mut runner = Runner::new(&cat, work.job_id, work.target_type, id, &no_identifiers);
            runner.run(&plan.steps)?;
            return Ok(receipt(
                work,
                &target,
                runner.out,
                &plan,
                0,
                json!({ "ok": true, "checked": [] }),
            ));
        }
        (other, _) => {
            return Err(LcError::internal(format!(
                "job type {other} is not run by the engine"
            )))
        }
    };
    let target_desc = match &target {
        Target::Subject { subject_type, .. } => format!("{subject_type} {id}"),
        Target::Tenant { .. } => format!("workspace {id}"),
    };
    require_readable(&cat, &plan.steps, &plan.checks)?;
    let mut runner = Runner::new(&cat, work.job_id, work.target_type, id, &params);
    runner.run(&plan.steps)?;
    // Workspaces erased with their last admin: their audit events too.
    for (tenant, d) in &plan.workspaces {
        if *d == Decision::Erase {
            let n = redact_audit_tenant(tenant)?;
            if n > 0 {
                runner.out.actions.push(json!({
                    "table": "lifecycle.audit_log", "action": "redacted", "rows": n,
                    "reason": "events of the workspace", "workspace": tenant,
                }));
            }
        }
    }
    if let Target::Tenant { .. } = target {
        let n = redact_audit_tenant(id)?;
        if n > 0 {
            runner.out.actions.push(json!({
                "table": "lifecycle.audit_log", "action": "redacted", "rows": n,
                "reason": "events of the workspace",
            }));
        }
    }
    let verification = verify::verify(
        &mut runner,
        &plan.checks,
        &emails,
        &params,
        noun,
        &target_desc,
    )?;
    let redacted = redact_audit(target.type_name(), id)?;
    Ok(receipt(
        work,
        &target,
        runner.out,
        &plan,
        redacted,
        verification,
    ))
}

fn receipt(
    work: &Work<'_>,
    target: &Target,
    out: run::Outcome,
    plan: &Plan,
    redacted: u64,
    verification: Value,
) -> Value {
    let workspaces: Vec<Value> = plan
        .workspaces
        .iter()
        .map(|(w, d)| match d {
            Decision::Erase => json!({ "workspace": w, "decision": "erased" }),
            Decision::TransferTo(to) => {
                json!({ "workspace": w, "decision": "transferred", "to": to })
            }
        })
        .collect();
    json!({
        "job_id": work.job_id,
        "job_type": work.job_type,
        "target": { "type": target.type_name(), "id": work.target_id },
        "actions": out.actions,
        "retained": out.retained,
        "workspaces": workspaces,
        "external_steps": out.external_steps,
        "mentions": out.mentions,
        "audit_events_redacted": redacted,
        "verification": verification,
    })
}

/// Make the personal fields of the subject's audit events unreadable. The
/// chain stays valid: events carry only a digest of those fields.
pub fn redact_audit(subject_type: &str, subject_id: &str) -> LcResult<u64> {
    privilege::as_extension_owner(|| {
        crate::privilege::with_internal_write(|| {
            spi::exec(
                "UPDATE lifecycle.audit_log \
                    SET actor = NULL, ip = NULL, user_agent = NULL, reason = NULL, details = NULL, \
                        salt = NULL, redacted_at = pg_catalog.now() \
                  WHERE subject_type OPERATOR(pg_catalog.=) $1 AND subject_id OPERATOR(pg_catalog.=) $2 \
                    AND salt IS NOT NULL",
                &[subject_type.into(), subject_id.into()],
            )
        })
    })
}

fn redact_audit_tenant(tenant_id: &str) -> LcResult<u64> {
    privilege::as_extension_owner(|| {
        crate::privilege::with_internal_write(|| {
            spi::exec(
                "UPDATE lifecycle.audit_log \
                    SET actor = NULL, ip = NULL, user_agent = NULL, reason = NULL, details = NULL, \
                        salt = NULL, redacted_at = pg_catalog.now() \
                  WHERE tenant_id OPERATOR(pg_catalog.=) $1 AND salt IS NOT NULL",
                &[tenant_id.into()],
            )
        })
    })
}

/// Remove retained rows whose retention period has ended, across all
/// targets. Returns the number of rows removed.
pub fn retention_sweep() -> LcResult<i64> {
    row_security::during("the retention sweep", sweep)
}

fn sweep() -> LcResult<i64> {
    let due = retention_records(
        "purged_at IS NULL AND retain_until OPERATOR(pg_catalog.<=) pg_catalog.now()",
        &[],
    )?;
    if due.is_empty() {
        return Ok(0);
    }
    let cat = map::load()?;
    let mut targets: Vec<(String, String, String)> = due
        .iter()
        .map(|(_, tt, ti, job)| (tt.clone(), ti.clone(), job.clone()))
        .collect();
    targets.sort();
    targets.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    let mut total = 0i64;
    let params = Params::new(Vec::new());
    for (target_type, target_id, job_id) in targets {
        let records: Vec<Retained> = due
            .iter()
            .filter(|(_, tt, ti, _)| *tt == target_type && *ti == target_id)
            .map(|r| r.0.clone())
            .collect();
        let plan = plan::retention_sweep(&cat, &target_id, &records);
        require_readable(&cat, &plan.steps, &plan.checks)?;
        let mut runner = Runner::new(&cat, &job_id, &target_type, &target_id, &params);
        runner.run(&plan.steps)?;
        let removed: u64 = runner
            .out
            .actions
            .iter()
            .filter(|a| a["action"] == "deleted")
            .filter_map(|a| a["rows"].as_u64())
            .sum();
        audit::record(Event {
            event_type: "retention.purged",
            actor: Some("lifecycle.retention_sweep"),
            subject_type: Some(&target_type),
            subject_id: Some(&target_id),
            details: Some(
                json!({ "erasure_job_id": job_id, "rows": removed, "actions": runner.out.actions }),
            ),
            ..Default::default()
        })?;
        total += removed as i64;
    }
    Ok(total)
}
