//! Requests: export, erasure and purge requests, their approval, rejection
//! and cancellation, and the state of a subject.

use lifecycle_core::events;
use lifecycle_core::jobs::{JobStatus, JobType};
use serde_json::{json, Value};

use super::{audit_job, require, Job};
use crate::audit::{self, Event};
use crate::erasure::{self, Target};
use crate::error::{LcError, LcResult};
use crate::privilege;
use crate::spi;

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
pub(super) fn erasure_events(workspace: bool) -> [&'static str; 3] {
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
                // One request at a time per target decides; the check and
                // the insert then see every committed export of it.
                spi::exec(
                    "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtextextended( \
                        'lifecycle.export ' OPERATOR(pg_catalog.||) $1 OPERATOR(pg_catalog.||) ' ' \
                        OPERATOR(pg_catalog.||) $2, 0))",
                    &[tt.as_str().into(), target_id.into()],
                )?;
                if let Some(v) = spi::json(
                    "SELECT pg_catalog.jsonb_build_object('id', id::text, \
                            'at', pg_catalog.to_char(requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                            'next', pg_catalog.to_char((requested_at OPERATOR(pg_catalog.+) interval '24 hours') \
                                                       AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')) \
                       FROM lifecycle.jobs \
                      WHERE target_type OPERATOR(pg_catalog.=) $1 AND target_id OPERATOR(pg_catalog.=) $2 \
                        AND job_type OPERATOR(pg_catalog.=) 'export' \
                        AND status OPERATOR(pg_catalog.<>) ALL ('{failed,rejected,cancelled}') \
                        AND requested_at OPERATOR(pg_catalog.>) (pg_catalog.now() OPERATOR(pg_catalog.-) interval '24 hours') \
                      ORDER BY requested_at DESC LIMIT 1",
                    &[tt.as_str().into(), target_id.into()],
                )? {
                    let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                    return Err(LcError::export_rate_limited(
                        &target_desc,
                        &s("id"),
                        &s("at"),
                        &s("next"),
                    ));
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
    // Decisions only for those workspaces: "erase" for any other would let
    // one member's erasure take a whole workspace with it.
    if let Some(other) = given.keys().find(|t| !last.contains(*t)) {
        return Err(LcError::invalid_parameter(format!(
            "{subject_type} \"{subject_id}\" is not the last admin of workspace {other}"
        ))
        .detail(if last.is_empty() {
            "They are the last admin of no workspace.".to_string()
        } else {
            format!("Workspaces without another admin: {}.", last.join(", "))
        })
        .hint("Decide only for the workspaces preview_erasure() lists in last_admin_workspaces; erase another workspace with a request of its own (target_type 'tenant')."));
    }
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

pub fn approve(job_id: Option<&str>, approved_by: Option<&str>) -> LcResult<()> {
    const F: &str = "lifecycle.approve()";
    let job_id = require(job_id, "job_id", F)?;
    let by = require(approved_by, "approved_by", F)?;
    privilege::as_extension_owner(|| {
        let job = Job::lock(job_id)?;
        if Some(job.status) != Some(JobStatus::Pending) {
            return Err(
                LcError::job_not_in_state(job_id, "approve", job.status.as_str())
                    .hint("Only pending jobs can be approved."),
            );
        }
        if job.requested_by.as_str() == by {
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
        let job = Job::lock(job_id)?;
        if Some(job.status) != Some(JobStatus::Pending) {
            return Err(
                LcError::job_not_in_state(job_id, "reject", job.status.as_str())
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
        let job = Job::lock(job_id)?;
        let status = job.status.as_str();
        let cancellable = [JobStatus::Pending, JobStatus::Approved];
        if !Some(job.status).is_some_and(|st| cancellable.contains(&st)) {
            return Err(LcError::job_not_in_state(job_id, "cancel", status).hint(
                if Some(job.status) == Some(JobStatus::Processing) {
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
        let event = match Some(job.job_type) {
            Some(JobType::Erase) => {
                let [_, cancelled, _] = erasure_events(job.target_type.as_str() == "tenant");
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
