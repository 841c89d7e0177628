//! Jobs: export, erasure and purge requests, their state machine, approvals,
//! cooling-off, leases for workers and the runner that executes due jobs.
//!
//! The state machine is [`lifecycle_core::jobs`]'s; the trigger on
//! `lifecycle.jobs` enforces it through [`check_update`]. Job types,
//! statuses and the names of the audit events come from the core crate too.
//!
//! A job runs in a subtransaction of the caller's transaction: its database
//! work is all or nothing, and a failing job does not undo the others run by
//! the same `run_due_jobs` call. Workers claim jobs with
//! `FOR UPDATE SKIP LOCKED` and a lease; a lease that expires gives a crashed
//! worker's job to another.

use lifecycle_core::events;
use lifecycle_core::jobs::{start_allowed, transition_allowed, JobStatus, JobType};
use lifecycle_core::Code;
use serde_json::{json, Value};

use crate::audit::{self, Event};
use crate::erasure::{self, Target, Work};
use crate::error::{LcError, LcResult};
use crate::guard;
use crate::privilege;
use crate::spi;
use crate::subxact;

/// The fields of a job row the trigger checks.
#[derive(Debug, Default, Clone)]
pub struct JobRow {
    pub id: String,
    pub job_type: String,
    pub target_type: String,
    pub target_id: String,
    pub tenant_id: Option<String>,
    pub status: String,
    pub requested_by: String,
    pub requires_approval: bool,
    pub approved_by: Option<String>,
    pub rejection_reason: Option<String>,
}

/// The jobs trigger: INSERT starts pending (or approved when no approval is
/// required), UPDATE follows the state machine and keeps what a job is
/// about, DELETE is refused.
pub fn check_update(old: Option<&JobRow>, new: Option<&JobRow>) -> LcResult<()> {
    match (old, new) {
        (None, Some(n)) => {
            let ok = n
                .status
                .parse()
                .is_ok_and(|status| start_allowed(status, n.requires_approval));
            if !ok {
                return Err(LcError::invalid_job_transition(&n.id, "nothing", &n.status)
                    .hint("Create jobs with lifecycle.request_export(), request_erasure() or request_purge()."));
            }
            Ok(())
        }
        (Some(o), Some(n)) => {
            let fixed = [
                ("id", o.id == n.id),
                ("job_type", o.job_type == n.job_type),
                ("target_type", o.target_type == n.target_type),
                ("target_id", o.target_id == n.target_id),
                ("tenant_id", o.tenant_id == n.tenant_id),
                ("requested_by", o.requested_by == n.requested_by),
            ];
            if let Some((field, _)) = fixed.iter().find(|(_, same)| !same) {
                return Err(LcError::invalid_job_transition(&o.id, &o.status, &n.status)
                    .detail(format!("The {field} of a job never changes."))
                    .hint("Cancel the job and request a new one."));
            }
            let from = o.status.parse::<JobStatus>().ok();
            let to = n.status.parse::<JobStatus>().ok();
            if !from.zip(to).is_some_and(|(f, t)| transition_allowed(f, t)) {
                return Err(
                    LcError::invalid_job_transition(&o.id, &o.status, &n.status).hint(match from {
                        Some(f) if f.is_finished() => {
                            "The job is finished; request a new one if needed."
                        }
                        Some(JobStatus::Processing) => "The job is running; wait for it to finish.",
                        _ => "Use lifecycle.approve(), reject() or cancel().",
                    }),
                );
            }
            if from == Some(JobStatus::Pending) && to == Some(JobStatus::Approved) {
                match n.approved_by.as_deref() {
                    None => return Err(LcError::null_value("approved_by", "lifecycle.approve()")),
                    Some(a) if a == n.requested_by => {
                        return Err(LcError::approver_is_requester(&n.id, a))
                    }
                    _ => {}
                }
            }
            if to == Some(JobStatus::Rejected)
                && n.rejection_reason
                    .as_deref()
                    .is_none_or(|r| r.trim().is_empty())
            {
                return Err(LcError::invalid_parameter(format!(
                    "rejecting job {} requires a reason",
                    n.id
                ))
                .hint("Say why, for example reason => 'identity could not be verified'."));
            }
            Ok(())
        }
        (Some(o), None) => Err(LcError::job_not_in_state(&o.id, "delete", &o.status)
            .detail("Jobs are records of requests and are never deleted.")
            .hint("Cancel or reject the job instead.")),
        (None, None) => Ok(()),
    }
}

fn require<'a>(v: Option<&'a str>, param: &str, function: &str) -> LcResult<&'a str> {
    match v {
        None => Err(LcError::null_value(param, function)),
        Some(s) if s.trim().is_empty() => Err(LcError::invalid_parameter(format!(
            "parameter \"{param}\" of {function} must not be empty"
        ))),
        Some(s) => Ok(s),
    }
}

/// A request as the functions receive it.
pub struct Request<'a> {
    pub job_type: &'static str,
    pub target_type: Option<&'a str>,
    pub target_id: Option<&'a str>,
    pub tenant_id: Option<&'a str>,
    pub requested_by: Option<&'a str>,
    pub reason: Option<&'a str>,
    /// Interval text; erasure only.
    pub cooling_off: Option<String>,
    pub jurisdiction: Option<&'a str>,
    pub requires_approval: Option<bool>,
    pub workspaces: Option<Value>,
}

fn function_name(job_type: JobType) -> &'static str {
    match job_type {
        JobType::Export => "lifecycle.request_export()",
        JobType::Erase => "lifecycle.request_erasure()",
        JobType::Purge => "lifecycle.request_purge()",
    }
}

/// Whether `requested_by` is the subject itself (self-service): the subject
/// id, or `<type>:<id>`.
pub fn is_self_service(target_type: &str, target_id: &str, requested_by: &str) -> bool {
    requested_by == target_id || requested_by == format!("{target_type}:{target_id}")
}

/// The audit events of an erasure: requested, cancelled, done. A
/// workspace's have their own names.
fn erasure_events(workspace: bool) -> [&'static str; 3] {
    if workspace {
        [
            events::WORKSPACE_DELETION_REQUESTED,
            events::WORKSPACE_DELETION_CANCELLED,
            events::WORKSPACE_PERMANENTLY_DELETED,
        ]
    } else {
        [
            events::ACCOUNT_DELETION_REQUESTED,
            events::ACCOUNT_DELETION_CANCELLED,
            events::ACCOUNT_PERMANENTLY_DELETED,
        ]
    }
}

/// The erase job that erased the target, if any (completed, or done in the
/// database and waiting for steps outside it).
fn erased_by(target_type: &str, target_id: &str) -> LcResult<Option<String>> {
    spi::one::<String>(
        "SELECT id::text FROM lifecycle.jobs \
          WHERE target_type = $1 AND target_id = $2 AND job_type = 'erase' \
            AND (status = 'completed' OR (status = 'processing' AND result IS NOT NULL)) \
          ORDER BY finished_at NULLS LAST LIMIT 1",
        &[target_type.into(), target_id.into()],
    )
}

fn open_job(
    target_type: &str,
    target_id: &str,
    job_type: JobType,
) -> LcResult<Option<(String, String)>> {
    let (id, status) = spi::two::<String, String>(
        "SELECT id::text, status FROM lifecycle.jobs \
          WHERE target_type = $1 AND target_id = $2 AND job_type = $3 \
            AND status IN ('pending', 'approved', 'processing') AND result IS NULL \
          ORDER BY requested_at LIMIT 1",
        &[
            target_type.into(),
            target_id.into(),
            job_type.as_str().into(),
        ],
    )?;
    Ok(id.zip(status))
}

/// Create a job; returns its id.
pub fn request(r: Request<'_>) -> LcResult<String> {
    let job_type: JobType = r
        .job_type
        .parse()
        .map_err(|e| LcError::internal(format!("job request: {e}")))?;
    let f = function_name(job_type);
    let target_type = require(r.target_type, "target_type", f)?;
    let target_id = require(r.target_id, "target_id", f)?;
    let requested_by = require(r.requested_by, "requested_by", f)?;
    let jurisdiction = r.jurisdiction.unwrap_or("gdpr").to_ascii_lowercase();
    let deadline_days = match jurisdiction.as_str() {
        "gdpr" => 30,
        "ccpa" => 45,
        other => {
            return Err(
                LcError::invalid_parameter(format!("unknown jurisdiction \"{other}\""))
                    .hint("Use 'gdpr' (30-day deadline) or 'ccpa' (45 days)."),
            )
        }
    };
    let cooling_off = match job_type {
        JobType::Erase => r
            .cooling_off
            .clone()
            .ok_or_else(|| LcError::null_value("cooling_off", f))?,
        _ => "0".to_string(),
    };
    if spi::one::<bool>(
        "SELECT $1::interval < interval '0'",
        &[cooling_off.as_str().into()],
    )?
    .unwrap_or(false)
    {
        return Err(LcError::invalid_parameter(format!(
            "cooling_off must not be negative: {cooling_off}"
        ))
        .hint("Use interval '0' for no cooling-off."));
    }
    privilege::as_extension_owner(|| {
        let map = erasure::load_map()?;
        let target = erasure::resolve_target(&map, target_type)?;
        let tt = target.type_name().to_string();
        // The id as the key column prints it: an upper-case uuid and its
        // canonical spelling are one subject.
        let target_id = crate::holds::canonical_id(&tt, target_id)?;
        let target_id = target_id.as_str();
        let target_desc = format!("{tt} \"{target_id}\"");
        // One request at a time per target and kind.
        spi::exec(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 7210))",
            &[format!("{tt}:{target_id}").as_str().into()],
        )?;
        let exists = erasure::target_exists(&target, target_id)?;
        match job_type {
            JobType::Erase => {
                if let Some(job) = erased_by(&tt, target_id)? {
                    return Err(LcError::target_already_erased(&target_desc, &job));
                }
                if !exists {
                    return Err(LcError::target_not_found(
                        &tt,
                        target_id,
                        &target.table().name,
                    ));
                }
                if let Some((job, status)) = open_job(&tt, target_id, JobType::Erase)? {
                    return Err(LcError::duplicate_request(
                        "erasure",
                        &target_desc,
                        &job,
                        &status,
                    ));
                }
            }
            JobType::Purge => {
                if erased_by(&tt, target_id)?.is_none() {
                    return Err(LcError::target_not_erased(&target_desc));
                }
                if let Some((job, status)) = open_job(&tt, target_id, JobType::Purge)? {
                    return Err(LcError::duplicate_request(
                        "purge",
                        &target_desc,
                        &job,
                        &status,
                    ));
                }
            }
            JobType::Export => {
                if !exists {
                    return Err(LcError::target_not_found(
                        &tt,
                        target_id,
                        &target.table().name,
                    ));
                }
                if let Some(job) = spi::one::<String>(
                    "SELECT id::text FROM lifecycle.jobs \
                      WHERE target_type = $1 AND target_id = $2 AND job_type = 'export' \
                        AND status NOT IN ('failed', 'rejected', 'cancelled') \
                        AND requested_at > now() - interval '24 hours' \
                      ORDER BY requested_at DESC LIMIT 1",
                    &[tt.as_str().into(), target_id.into()],
                )? {
                    return Err(
                        LcError::duplicate_request("export", &target_desc, &job, "recent")
                            .detail(format!("Job {job} was requested less than 24 hours ago."))
                            .hint(
                                "One export per subject per 24 hours: download that one, or wait.",
                            ),
                    );
                }
            }
        }
        let mut options = json!({});
        if job_type == JobType::Erase {
            if let Target::Subject { subject_type, .. } = &target {
                options["workspaces"] =
                    last_admin_decisions(&map, subject_type, target_id, r.workspaces.as_ref())?;
            } else if r.workspaces.is_some() {
                return Err(LcError::invalid_parameter(
                    "workspaces applies to the erasure of a user, not of a workspace",
                ));
            }
        }
        let requires_approval = r
            .requires_approval
            .unwrap_or(job_type.requires_approval_by_default());
        let status = JobStatus::initial(requires_approval);
        let row = spi::json(
            "INSERT INTO lifecycle.jobs (job_type, target_type, target_id, tenant_id, status, \
                    requested_by, reason, jurisdiction, requires_approval, approved_at, options, \
                    scheduled_for, due_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, CASE WHEN $9 THEN NULL ELSE now() END, \
                     $10::jsonb, now() + $11::interval, now() + make_interval(days => $12)) \
             RETURNING jsonb_build_object('id', id, 'scheduled_for', scheduled_for, 'due_at', due_at)",
            &[
                job_type.as_str().into(),
                tt.as_str().into(),
                target_id.into(),
                r.tenant_id.into(),
                status.as_str().into(),
                requested_by.into(),
                r.reason.into(),
                jurisdiction.as_str().into(),
                requires_approval.into(),
                pgrx::JsonB(options.clone()).into(),
                cooling_off.as_str().into(),
                deadline_days.into(),
            ],
        )?
        .ok_or_else(|| LcError::internal("INSERT INTO lifecycle.jobs returned no row"))?;
        let id = row["id"].as_str().unwrap_or_default().to_string();
        let event_type = match job_type {
            JobType::Erase => {
                let [requested, ..] = erasure_events(matches!(target, Target::Tenant { .. }));
                requested
            }
            JobType::Export => events::DATA_EXPORT_REQUESTED,
            JobType::Purge => events::DATA_PURGE_REQUESTED,
        };
        audit::record(Event {
            event_type,
            actor: Some(requested_by),
            subject_type: Some(&tt),
            subject_id: Some(target_id),
            tenant_id: r.tenant_id.or(if tt == "tenant" {
                Some(target_id)
            } else {
                None
            }),
            reason: r.reason,
            details: Some(json!({
                "job_id": id,
                "scheduled_for": row["scheduled_for"],
                "due_at": row["due_at"],
                "jurisdiction": jurisdiction,
                "requires_approval": requires_approval,
                "self_service": is_self_service(&tt, target_id, requested_by),
                "workspaces": options.get("workspaces"),
            })),
            ..Default::default()
        })?;
        Ok(id)
    })
}

/// Validate what the request says about workspaces the subject is the last
/// admin of: every such workspace needs a decision, `"erase"` or
/// `{"transfer_to": "<member id>"}`.
fn last_admin_decisions(
    map: &crate::plan::Catalog,
    subject_type: &str,
    subject_id: &str,
    given: Option<&Value>,
) -> LcResult<Value> {
    let last = erasure::last_admin_tenants(map, subject_type, subject_id)?;
    let given =
        match given {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(o)) => o.clone(),
            Some(other) => return Err(LcError::invalid_parameter(
                "workspaces must be a JSON object",
            )
            .detail(format!("workspaces is {other}"))
            .hint("Map each workspace id to \"erase\" or {\"transfer_to\": \"<member id>\"}.")),
        };
    // Workspace and member ids as their key columns print them.
    let mut canonical = serde_json::Map::new();
    for (tenant, decision) in given {
        let tenant = crate::holds::canonical_id("tenant", &tenant)?;
        let decision = match decision {
            Value::Object(mut o) => {
                if let Some(to) = o.get("transfer_to").and_then(Value::as_str) {
                    let to = crate::holds::canonical_id(subject_type, to)?;
                    o.insert("transfer_to".into(), Value::String(to));
                }
                Value::Object(o)
            }
            other => other,
        };
        canonical.insert(tenant, decision);
    }
    let given = canonical;
    let missing: Vec<String> = last
        .iter()
        .filter(|t| !given.contains_key(*t))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(LcError::last_admin(subject_type, subject_id, &missing));
    }
    for (tenant, decision) in &given {
        match decision {
            Value::String(s) if s == "erase" => {}
            Value::Object(o) => {
                let to = o.get("transfer_to").and_then(Value::as_str).ok_or_else(|| {
                    LcError::invalid_parameter(format!(
                        "decision for workspace {tenant} must be \"erase\" or {{\"transfer_to\": \"<member id>\"}}"
                    ))
                })?;
                if to == subject_id {
                    return Err(LcError::invalid_parameter(format!(
                        "cannot transfer workspace {tenant} to the user being erased"
                    )));
                }
                if !erasure::is_member(map, subject_type, tenant, to)? {
                    return Err(LcError::invalid_parameter(format!(
                        "cannot transfer workspace {tenant} to \"{to}\": not a member"
                    ))
                    .hint("Choose a current member of the workspace, or erase the workspace."));
                }
            }
            other => {
                return Err(LcError::invalid_parameter(format!(
                    "decision for workspace {tenant} must be \"erase\" or {{\"transfer_to\": \"<member id>\"}}"
                ))
                .detail(format!("It is {other}.")))
            }
        }
    }
    Ok(Value::Object(given))
}

/// A job row, locked for update. Errors with LC035 when it does not exist.
fn lock_job(job_id: &str) -> LcResult<Value> {
    spi::json(
        "SELECT to_jsonb(j) || jsonb_build_object(\
                'due_now', j.scheduled_for <= now(), \
                'lease_expired', j.lease_expires_at IS NULL OR j.lease_expires_at < now()) \
           FROM lifecycle.jobs j WHERE j.id = $1::uuid FOR UPDATE",
        &[job_id.into()],
    )?
    .ok_or_else(|| LcError::job_not_found(job_id))
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or_default()
}

/// The status of a job row (`None` for a value the state machine does not know).
fn status_of(job: &Value) -> Option<JobStatus> {
    s(job, "status").parse().ok()
}

/// The type of a job row.
fn type_of(job: &Value) -> Option<JobType> {
    s(job, "job_type").parse().ok()
}

fn audit_job(
    event_type: &str,
    job: &Value,
    actor: &str,
    reason: Option<&str>,
    extra: Value,
) -> LcResult<i64> {
    let mut details = json!({ "job_id": job["id"], "job_type": job["job_type"] });
    if let (Value::Object(d), Value::Object(e)) = (&mut details, extra) {
        d.extend(e);
    }
    audit::record(Event {
        event_type,
        actor: Some(actor),
        subject_type: Some(s(job, "target_type")),
        subject_id: Some(s(job, "target_id")),
        tenant_id: job["tenant_id"].as_str(),
        reason,
        details: Some(details),
        ..Default::default()
    })
}

pub fn approve(job_id: Option<&str>, approved_by: Option<&str>) -> LcResult<()> {
    const F: &str = "lifecycle.approve()";
    let job_id = require(job_id, "job_id", F)?;
    let by = require(approved_by, "approved_by", F)?;
    privilege::as_extension_owner(|| {
        let job = lock_job(job_id)?;
        if status_of(&job) != Some(JobStatus::Pending) {
            return Err(
                LcError::job_not_in_state(job_id, "approve", s(&job, "status"))
                    .hint("Only pending jobs can be approved."),
            );
        }
        if s(&job, "requested_by") == by {
            return Err(LcError::approver_is_requester(job_id, by));
        }
        spi::exec(
            "UPDATE lifecycle.jobs SET status = 'approved', approved_by = $2, approved_at = now(), \
                    updated_at = now() WHERE id = $1::uuid",
            &[job_id.into(), by.into()],
        )?;
        audit_job(events::JOB_APPROVED, &job, by, None, json!({}))?;
        Ok(())
    })
}

pub fn reject(
    job_id: Option<&str>,
    rejected_by: Option<&str>,
    reason: Option<&str>,
) -> LcResult<()> {
    const F: &str = "lifecycle.reject()";
    let job_id = require(job_id, "job_id", F)?;
    let by = require(rejected_by, "rejected_by", F)?;
    let reason = match reason {
        None => return Err(LcError::null_value("reason", F)),
        Some(r) if r.trim().is_empty() => {
            return Err(LcError::invalid_parameter(format!(
                "rejecting job {job_id} requires a reason"
            ))
            .hint("Say why, for example reason => 'identity could not be verified'."))
        }
        Some(r) => r,
    };
    privilege::as_extension_owner(|| {
        let job = lock_job(job_id)?;
        if status_of(&job) != Some(JobStatus::Pending) {
            return Err(
                LcError::job_not_in_state(job_id, "reject", s(&job, "status"))
                    .hint("Only pending jobs can be rejected; cancel an approved job instead."),
            );
        }
        spi::exec(
            "UPDATE lifecycle.jobs SET status = 'rejected', rejected_by = $2, rejected_at = now(), \
                    rejection_reason = $3, finished_at = now(), updated_at = now() WHERE id = $1::uuid",
            &[job_id.into(), by.into(), reason.into()],
        )?;
        audit_job(events::JOB_REJECTED, &job, by, Some(reason), json!({}))?;
        Ok(())
    })
}

pub fn cancel(job_id: Option<&str>, cancelled_by: Option<&str>) -> LcResult<()> {
    const F: &str = "lifecycle.cancel()";
    let job_id = require(job_id, "job_id", F)?;
    let by = require(cancelled_by, "cancelled_by", F)?;
    privilege::as_extension_owner(|| {
        let job = lock_job(job_id)?;
        let status = s(&job, "status");
        let cancellable = [JobStatus::Pending, JobStatus::Approved];
        if !status_of(&job).is_some_and(|st| cancellable.contains(&st)) {
            return Err(LcError::job_not_in_state(job_id, "cancel", status).hint(
                if status_of(&job) == Some(JobStatus::Processing) {
                    "The job is running and can no longer be cancelled."
                } else {
                    "The job is finished."
                },
            ));
        }
        spi::exec(
            "UPDATE lifecycle.jobs SET status = 'cancelled', cancelled_by = $2, cancelled_at = now(), \
                    blocked_by_hold = false, blocking_hold_id = NULL, \
                    finished_at = now(), updated_at = now() WHERE id = $1::uuid",
            &[job_id.into(), by.into()],
        )?;
        let event = match type_of(&job) {
            Some(JobType::Erase) => {
                let [_, cancelled, _] = erasure_events(s(&job, "target_type") == "tenant");
                cancelled
            }
            _ => events::JOB_CANCELLED,
        };
        audit_job(event, &job, by, None, json!({}))?;
        Ok(())
    })
}

/// 'active', 'pending_deletion' or 'erased'.
pub fn subject_state(subject_type: Option<&str>, subject_id: Option<&str>) -> LcResult<String> {
    const F: &str = "lifecycle.subject_state()";
    let subject_type = require(subject_type, "subject_type", F)?;
    let subject_id = require(subject_id, "subject_id", F)?;
    privilege::as_extension_owner(|| {
        let tt = erasure::target_type_name(subject_type)?;
        let subject_id = crate::holds::canonical_id(&tt, subject_id)?;
        let subject_id = subject_id.as_str();
        Ok(spi::one::<String>(
            "SELECT CASE \
                 WHEN bool_or(status = 'completed' OR (status = 'processing' AND result IS NOT NULL)) THEN 'erased' \
                 WHEN bool_or(status IN ('pending', 'approved', 'processing')) THEN 'pending_deletion' \
                 ELSE 'active' END \
               FROM lifecycle.jobs \
              WHERE target_type = $1 AND target_id = $2 AND job_type = 'erase'",
            &[tt.as_str().into(), subject_id.into()],
        )?
        .unwrap_or_else(|| "active".into()))
    })
}

/// The first hold in force on the target itself: (id, reason).
fn hold_on_target(job: &Value) -> LcResult<Option<(String, String)>> {
    let (id, reason) = spi::two::<String, String>(
        "SELECT id::text, reason FROM lifecycle.holds_in_force \
          WHERE (scope_type = $1 AND scope_id = $2) OR id = $3::uuid \
          ORDER BY created_at LIMIT 1",
        &[
            s(job, "target_type").into(),
            s(job, "target_id").into(),
            job["blocking_hold_id"].as_str().into(),
        ],
    )?;
    Ok(id.zip(reason))
}

/// What happened to a job the runner took.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// Done in the database; waiting for steps outside it.
    WaitingForSteps,
    Failed,
    Blocked,
    /// A transient error: back to wait for the next run.
    Retry,
}

fn mark_blocked(job: &Value, hold_id: &str, reason: &str) -> LcResult<()> {
    let was = job["blocking_hold_id"].as_str() == Some(hold_id);
    spi::exec(
        "UPDATE lifecycle.jobs SET status = 'approved', blocked_by_hold = true, blocking_hold_id = $2::uuid, \
                worker = NULL, lease_expires_at = NULL, updated_at = now() WHERE id = $1::uuid",
        &[s(job, "id").into(), hold_id.into()],
    )?;
    if !was {
        audit_job(
            events::JOB_BLOCKED_BY_HOLD,
            job,
            "lifecycle",
            Some(reason),
            json!({ "hold_id": hold_id }),
        )?;
    }
    Ok(())
}

/// Run one locked, runnable erase or purge job.
fn execute(job: &Value, worker: &str) -> LcResult<Outcome> {
    let id = s(job, "id").to_string();
    if let Some((hold, reason)) = hold_on_target(job)? {
        mark_blocked(job, &hold, &reason)?;
        return Ok(Outcome::Blocked);
    }
    let options = job["options"].clone();
    let work = Work {
        job_id: &id,
        job_type: s(job, "job_type"),
        target_type: s(job, "target_type"),
        target_id: s(job, "target_id"),
        requested_by: s(job, "requested_by"),
        options: &options,
    };
    spi::exec(
        "UPDATE lifecycle.jobs SET status = 'processing', worker = $2, started_at = now(), \
                attempts = attempts + 1, blocked_by_hold = false, blocking_hold_id = NULL, \
                updated_at = now() WHERE id = $1::uuid",
        &[id.as_str().into(), worker.into()],
    )?;
    crate::error::take_blocking_hold();
    let attempt = subxact::run(|| {
        let receipt = guard::with_hard_delete(|| erasure::execute(&work))?;
        finish(job, &receipt)
    });
    // The hold a refusal named, recorded where it was raised.
    let blocking = crate::error::take_blocking_hold();
    match attempt {
        Ok(o) => Ok(o),
        Err(f)
            if matches!(
                Code::from_sqlstate(&f.sqlstate),
                Some(Code::HeldRowModification | Code::HeldTableTruncate | Code::HeldTableDrop)
            ) =>
        {
            let Some(hold) = blocking else {
                fail(job, &f)?;
                return Ok(Outcome::Failed);
            };
            mark_blocked(job, &hold, &f.message)?;
            Ok(Outcome::Blocked)
        }
        Err(f) if is_transient(&f.sqlstate) && attempts_so_far(job) + 1 < MAX_ATTEMPTS => {
            // A deadlock, a serialization failure or a lock timeout: the
            // job goes back to wait for the next run, the error recorded.
            spi::exec(
                "UPDATE lifecycle.jobs SET status = 'approved', worker = NULL, lease_expires_at = NULL, \
                        error = $2, error_sqlstate = $3, updated_at = now() WHERE id = $1::uuid",
                &[
                    s(job, "id").into(),
                    f.message.as_str().into(),
                    f.sqlstate.as_str().into(),
                ],
            )?;
            Ok(Outcome::Retry)
        }
        Err(f) => {
            fail(job, &f)?;
            Ok(Outcome::Failed)
        }
    }
}

/// A job that hits a transient error is tried again, up to this many times.
pub const MAX_ATTEMPTS: i64 = 5;

/// Errors worth trying again: serialization failures, deadlocks, lock
/// timeouts, query cancellation by a timeout.
pub fn is_transient(sqlstate: &str) -> bool {
    matches!(sqlstate, "40001" | "40P01" | "55P03" | "57014")
}

fn attempts_so_far(job: &Value) -> i64 {
    job["attempts"].as_i64().unwrap_or(0)
}

fn fail(job: &Value, f: &subxact::Failure) -> LcResult<()> {
    let mut text = match &f.detail {
        Some(d) => format!("{} ({d})", f.message),
        None => f.message.clone(),
    };
    if let Some(sql) = &f.statement {
        let short: String = sql.chars().take(400).collect();
        text.push_str(&format!(" [statement: {short}]"));
    }
    spi::exec(
        "UPDATE lifecycle.jobs SET status = 'failed', error = $2, error_sqlstate = $3, \
                finished_at = now(), worker = NULL, lease_expires_at = NULL, updated_at = now() \
          WHERE id = $1::uuid",
        &[
            s(job, "id").into(),
            text.as_str().into(),
            f.sqlstate.as_str().into(),
        ],
    )?;
    audit_job(
        events::JOB_FAILED,
        job,
        "lifecycle",
        None,
        json!({ "sqlstate": f.sqlstate, "error": f.message }),
    )?;
    Ok(())
}

/// Store the receipt and its digest, record the completion events.
fn finish(job: &Value, receipt: &Value) -> LcResult<Outcome> {
    let id = s(job, "id");
    let steps = receipt["external_steps"].as_u64().unwrap_or(0);
    let status = if steps > 0 {
        JobStatus::Processing
    } else {
        JobStatus::Completed
    };
    let digest = spi::one::<String>(
        "UPDATE lifecycle.jobs SET status = $2, result = $3::jsonb, \
                result_digest = encode(sha256(convert_to($3::jsonb::text, 'UTF8')), 'hex'), \
                finished_at = CASE WHEN $2 = 'completed' THEN now() END, \
                lease_expires_at = NULL, error = NULL, error_sqlstate = NULL, updated_at = now() \
          WHERE id = $1::uuid RETURNING result_digest",
        &[
            id.into(),
            status.as_str().into(),
            pgrx::JsonB(receipt.clone()).into(),
        ],
    )?
    .unwrap_or_default();
    let target_type = s(job, "target_type");
    let target_id = s(job, "target_id");
    let requested_by = s(job, "requested_by");
    let details = json!({
        "receipt_digest": digest,
        "external_steps_pending": steps,
        "retained": receipt["retained"],
    });
    match type_of(job) {
        Some(JobType::Erase) => {
            let [_, _, deleted] = erasure_events(target_type == "tenant");
            audit_job(deleted, job, requested_by, None, details.clone())?;
            if target_type != "tenant" && !is_self_service(target_type, target_id, requested_by) {
                audit_job(events::ADMIN_USER_DELETED, job, requested_by, None, details)?;
            }
        }
        _ => {
            audit_job(events::DATA_PURGED, job, requested_by, None, details)?;
        }
    }
    Ok(if steps > 0 {
        Outcome::WaitingForSteps
    } else {
        Outcome::Completed
    })
}

const RUNNABLE: &str = "job_type IN ('erase', 'purge') AND scheduled_for <= now() \
     AND ((status = 'approved') \
          OR (status = 'processing' AND result IS NULL \
              AND (lease_expires_at IS NULL OR lease_expires_at < now())))";

/// Run due erase and purge jobs, each in a subtransaction of its own.
/// Returns how many ran (completed, waiting for outside steps, or failed);
/// jobs blocked by a hold are left waiting and not counted.
pub fn run_due_jobs(max_jobs: Option<i32>) -> LcResult<i32> {
    let max = max_jobs.unwrap_or(100);
    if max < 1 {
        return Err(LcError::invalid_parameter(format!(
            "max_jobs must be at least 1, not {max}"
        )));
    }
    let worker = format!("run_due_jobs (pid {})", std::process::id());
    privilege::as_extension_owner(|| {
        let mut ran = 0;
        let mut seen: Vec<String> = Vec::new();
        while ran < max {
            let job = spi::json(
                &format!(
                    "SELECT to_jsonb(j) FROM lifecycle.jobs j WHERE {RUNNABLE} \
                        AND NOT (j.id::text = ANY($1)) \
                      ORDER BY scheduled_for, requested_at LIMIT 1 FOR UPDATE SKIP LOCKED"
                ),
                &[seen.clone().into()],
            )?;
            let Some(job) = job else { break };
            seen.push(s(&job, "id").to_string());
            match execute(&job, &worker)? {
                Outcome::Blocked | Outcome::Retry => {}
                _ => ran += 1,
            }
        }
        Ok(ran)
    })
}

/// Run one job now, in the caller's transaction. A completed job is not run
/// again: its receipt is returned unchanged.
pub fn run_job(job_id: Option<&str>, worker: Option<&str>) -> LcResult<Value> {
    const F: &str = "lifecycle.run_job()";
    let job_id = require(job_id, "job_id", F)?;
    privilege::as_extension_owner(|| {
        let job = lock_job(job_id)?;
        let status = s(&job, "status");
        let worker_name = worker.map(str::to_string).unwrap_or_else(|| {
            format!(
                "{} (pid {})",
                privilege::current_user_name(),
                std::process::id()
            )
        });
        if type_of(&job) == Some(JobType::Export) {
            return Err(LcError::job_not_in_state(job_id, "run", "an export job")
                .detail("Export jobs are built by the control plane's worker.")
                .hint("Claim it with lifecycle.claim_job() and finish it with lifecycle.complete_job()."));
        }
        match status_of(&job) {
            Some(JobStatus::Completed) => return summary(job_id),
            Some(JobStatus::Approved) => {}
            Some(JobStatus::Processing) if !job["result"].is_null() => return summary(job_id),
            Some(JobStatus::Processing) => {
                let holder = s(&job, "worker");
                let expired = job["lease_expired"].as_bool().unwrap_or(true);
                if !expired && Some(holder) != worker {
                    return Err(LcError::job_lease_held(
                        job_id,
                        holder,
                        s(&job, "lease_expires_at"),
                    ));
                }
            }
            other => {
                return Err(LcError::job_not_in_state(job_id, "run", status).hint(
                    if other == Some(JobStatus::Pending) {
                        "Approve the job first with lifecycle.approve()."
                    } else {
                        "The job is finished."
                    },
                ))
            }
        }
        if job["due_now"].as_bool() != Some(true) {
            return Err(
                LcError::job_not_in_state(job_id, "run", "in its cooling-off")
                    .detail(format!(
                        "The cooling-off lasts until {}.",
                        s(&job, "scheduled_for")
                    ))
                    .hint("Wait until scheduled_for; lifecycle.run_due_jobs() runs it then."),
            );
        }
        execute(&job, &worker_name)?;
        summary(job_id)
    })
}

fn summary(job_id: &str) -> LcResult<Value> {
    spi::json(
        "SELECT jsonb_build_object('job_id', id, 'status', status, 'blocked_by_hold', blocked_by_hold, \
                'blocking_hold_id', blocking_hold_id, 'error', error, 'error_sqlstate', error_sqlstate, \
                'result_digest', result_digest, 'result', result) \
           FROM lifecycle.jobs WHERE id = $1::uuid",
        &[job_id.into()],
    )?
    .ok_or_else(|| LcError::job_not_found(job_id))
}

/// Claim the next runnable job for `worker` with a lease; `None` when there
/// is none. Exports are claimable once approved; erase and purge jobs once
/// due.
pub fn claim_job(
    worker: Option<&str>,
    lease: Option<&str>,
    job_types: Option<Vec<String>>,
) -> LcResult<Option<Value>> {
    const F: &str = "lifecycle.claim_job()";
    let worker = require(worker, "worker", F)?;
    let lease = lease.unwrap_or("5 minutes");
    if !spi::one::<bool>("SELECT $1::interval > interval '0'", &[lease.into()])?.unwrap_or(false) {
        return Err(LcError::invalid_parameter(format!(
            "lease must be positive: {lease}"
        )));
    }
    let types = job_types.unwrap_or_else(|| {
        JobType::ALL
            .iter()
            .map(|t| t.as_str().to_string())
            .collect()
    });
    privilege::as_extension_owner(|| {
        spi::json(
            "WITH next AS ( \
                 SELECT id FROM lifecycle.jobs \
                  WHERE job_type = ANY($2) AND scheduled_for <= now() \
                    AND (status = 'approved' \
                         OR (status = 'processing' AND result IS NULL \
                             AND (lease_expires_at IS NULL OR lease_expires_at < now()))) \
                    AND NOT (blocked_by_hold AND EXISTS ( \
                         SELECT 1 FROM lifecycle.holds_in_force h WHERE h.id = blocking_hold_id)) \
                  ORDER BY scheduled_for, requested_at LIMIT 1 FOR UPDATE SKIP LOCKED) \
             UPDATE lifecycle.jobs j SET status = 'processing', worker = $1, \
                    lease_expires_at = now() + $3::interval, started_at = coalesce(started_at, now()), \
                    attempts = CASE WHEN j.job_type = 'export' THEN attempts + 1 ELSE attempts END, \
                    updated_at = now() \
               FROM next WHERE j.id = next.id \
             RETURNING to_jsonb(j)",
            &[worker.into(), types.into(), lease.into()],
        )
    })
}

/// Extend the lease of a job `worker` holds; returns the new expiry.
pub fn renew_lease(
    job_id: Option<&str>,
    worker: Option<&str>,
    lease: Option<&str>,
) -> LcResult<String> {
    const F: &str = "lifecycle.renew_lease()";
    let job_id = require(job_id, "job_id", F)?;
    let worker = require(worker, "worker", F)?;
    let lease = lease.unwrap_or("5 minutes");
    privilege::as_extension_owner(|| {
        let job = lock_job(job_id)?;
        require_lease(&job, job_id, worker)?;
        Ok(spi::one::<String>(
            "UPDATE lifecycle.jobs SET lease_expires_at = now() + $2::interval, updated_at = now() \
              WHERE id = $1::uuid RETURNING lease_expires_at::text",
            &[job_id.into(), lease.into()],
        )?
        .unwrap_or_default())
    })
}

fn require_lease(job: &Value, job_id: &str, worker: &str) -> LcResult<()> {
    let status = s(job, "status");
    if status_of(job) != Some(JobStatus::Processing) {
        return Err(
            LcError::job_not_in_state(job_id, "use the lease of", status)
                .detail("Only a job a worker has claimed has a lease.")
                .hint("Claim it with lifecycle.claim_job()."),
        );
    }
    let holder = s(job, "worker");
    if holder != worker {
        return Err(LcError::job_lease_held(
            job_id,
            holder,
            s(job, "lease_expires_at"),
        ));
    }
    Ok(())
}

/// Finish an export job the worker built (`result` describes the bundle).
pub fn complete_job(
    job_id: Option<&str>,
    worker: Option<&str>,
    result: Option<Value>,
) -> LcResult<()> {
    const F: &str = "lifecycle.complete_job()";
    let job_id = require(job_id, "job_id", F)?;
    let worker = require(worker, "worker", F)?;
    let result = result.unwrap_or_else(|| json!({}));
    privilege::as_extension_owner(|| {
        let job = lock_job(job_id)?;
        require_lease(&job, job_id, worker)?;
        if type_of(&job) != Some(JobType::Export) {
            return Err(LcError::invalid_job_transition(
                job_id,
                JobStatus::Processing.as_str(),
                JobStatus::Completed.as_str(),
            )
            .detail("Erase and purge jobs are completed by the engine.")
            .hint("Run them with lifecycle.run_job() or lifecycle.run_due_jobs()."));
        }
        spi::exec(
            "UPDATE lifecycle.jobs SET status = 'completed', result = $2::jsonb, \
                    result_digest = encode(sha256(convert_to($2::jsonb::text, 'UTF8')), 'hex'), \
                    finished_at = now(), lease_expires_at = NULL, updated_at = now() \
              WHERE id = $1::uuid",
            &[job_id.into(), pgrx::JsonB(result).into()],
        )?;
        audit_job(events::DATA_EXPORT_COMPLETED, &job, worker, None, json!({}))?;
        Ok(())
    })
}

/// Mark a claimed job failed with the worker's error.
pub fn fail_job(job_id: Option<&str>, worker: Option<&str>, error: Option<&str>) -> LcResult<()> {
    const F: &str = "lifecycle.fail_job()";
    let job_id = require(job_id, "job_id", F)?;
    let worker = require(worker, "worker", F)?;
    let error = require(error, "error", F)?;
    privilege::as_extension_owner(|| {
        let job = lock_job(job_id)?;
        require_lease(&job, job_id, worker)?;
        fail(
            &job,
            &subxact::Failure {
                sqlstate: Code::InternalError.sqlstate().into(),
                message: error.to_string(),
                detail: Some(format!("reported by worker \"{worker}\"")),
                hint: None,
                statement: None,
            },
        )
    })
}

/// Confirm one step outside the database; the job completes with its last.
pub fn confirm_step(step_id: Option<i64>, confirmed_by: Option<&str>) -> LcResult<String> {
    const F: &str = "lifecycle.confirm_step()";
    let step_id = step_id.ok_or_else(|| LcError::null_value("step_id", F))?;
    let by = require(confirmed_by, "confirmed_by", F)?;
    privilege::as_extension_owner(|| {
        let job_id = spi::one::<String>(
            "UPDATE lifecycle.external_steps SET status = 'confirmed', confirmed_at = now(), \
                    confirmed_by = $2 WHERE id = $1 RETURNING job_id::text",
            &[step_id.into(), by.into()],
        )?
        .ok_or_else(|| {
            LcError::invalid_parameter(format!("external step {step_id} does not exist")).hint(
                "List them with SELECT * FROM lifecycle.external_steps WHERE status = 'pending'.",
            )
        })?;
        let job = lock_job(&job_id)?;
        let pending = spi::one::<i64>(
            "SELECT count(*) FROM lifecycle.external_steps WHERE job_id = $1::uuid AND status = 'pending'",
            &[job_id.as_str().into()],
        )?
        .unwrap_or(0);
        if pending == 0
            && status_of(&job) == Some(JobStatus::Processing)
            && !job["result"].is_null()
        {
            spi::exec(
                "UPDATE lifecycle.jobs SET status = 'completed', finished_at = now(), updated_at = now() \
                  WHERE id = $1::uuid",
                &[job_id.as_str().into()],
            )?;
            audit_job(
                events::JOB_EXTERNAL_STEPS_CONFIRMED,
                &job,
                by,
                None,
                json!({}),
            )?;
            return Ok(JobStatus::Completed.as_str().into());
        }
        Ok(s(&job, "status").to_string())
    })
}
