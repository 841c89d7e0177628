//! `lifecycle`: privacy data lifecycle enforced inside PostgreSQL.
//!
//! This file is the SQL surface: thin `#[pg_extern]` functions and the raw
//! trigger entry points, each running its body through
//! [`entry::boundary`]. The logic lives in one module per concept:
//!
//! * [`datamap`]: registration of subject, tenant and data tables
//! * [`holds`]: legal holds and what they cover
//! * [`guard`]: the row, truncate and soft-delete triggers, and the guards of
//!   the extension's own tables
//! * [`ddl`]: the event triggers that guard DDL
//! * [`cache`]: per-backend caches and their invalidation
//! * [`condition`]: the row guard's `WHEN` condition
//! * [`keys`]: key values compared in their column's own type
//! * [`audit`]: the hash-chained audit log
//! * [`jobs`]: requests, their state machine, leases and the job runner
//! * [`plan`]: the erasure plan, pure (steps from the data map), from the core crate
//! * [`erasure`]: user and workspace erasure and purge: catalog, run, verify, preview
//! * [`export`]: what an export holds, cursors on its rows, its bundle's downloads and expiry
//! * [`subxact`] runs each job in a subtransaction of its own
//! * [`entry`]: the boundary every entry point runs through
//! * [`error`]: SQLSTATEs and error reporting
//! * [`namespace`]: the pinned search path every entry point runs under,
//!   quoting and types
//! * [`privilege`]: acting as the extension owner, the extension's own writes
//! * [`row_security`]: row-level security that would hide rows from the
//!   role the extension reads a table as
//!
//! Dependencies go one way, from the entry points (this file, `entry`)
//! down: `jobs`, `erasure`, `ddl`, `datamap`, `guard`, `holds`, `audit`,
//! `condition`, `keys`, `cache`, `privilege`, `row_security`, `subxact`,
//! `namespace`, `spi`, `error`; none imports a module above it.

use pgrx::datum::{Interval, TimestampWithTimeZone, Uuid};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgRelation;

pub mod audit;
pub mod cache;
pub mod condition;
pub mod datamap;
pub mod ddl;
pub mod entry;
pub mod erasure;
pub mod error;
pub mod export;
pub mod guard;
pub mod holds;
pub mod jobs;
pub mod keys;
pub mod namespace;
pub mod privilege;
pub mod row_security;
/// The erasure plan, pure: in the core crate.
pub use lifecycle_core::plan;
pub mod spi;
pub mod subxact;

use entry::boundary;
use error::LcError;

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../../sql/extension/schema.sql", name = "schema", bootstrap);
extension_sql_file!(
    "../../sql/extension/jobs.sql",
    name = "jobs",
    requires = ["schema"]
);
extension_sql_file!(
    "../../sql/extension/reports.sql",
    name = "reports",
    requires = ["jobs"]
);
extension_sql_file!("../../sql/extension/guards.sql", name = "guards", finalize);

fn oid_of(rel: Option<PgRelation>) -> Option<pg_sys::Oid> {
    rel.map(|r| r.oid())
}

// ----- data map -----------------------------------------------------------------

/// Register the table that defines a subject type (for example users).
#[pg_extern(volatile, parallel_unsafe)]
fn register_subject(
    tbl: Option<PgRelation>,
    id_column: Option<&str>,
    subject_type: default!(Option<&str>, "'user'"),
    tenant_column: default!(Option<&str>, "NULL"),
    label: default!(Option<&str>, "NULL"),
) {
    let tbl = oid_of(tbl);
    boundary(|| {
        datamap::register_subject(datamap::SubjectRegistration {
            tbl,
            id_column,
            subject_type,
            tenant_column,
            label,
        })
    })
}

/// Register the tenant (workspace) table; `name_column` holds a tenant's
/// display name (jobs are searched by it).
#[pg_extern(volatile, parallel_unsafe)]
fn register_tenant(
    tbl: Option<PgRelation>,
    id_column: Option<&str>,
    name_column: default!(Option<&str>, "NULL"),
    label: default!(Option<&str>, "NULL"),
) {
    let tbl = oid_of(tbl);
    boundary(|| datamap::register_tenant(tbl, id_column, name_column, label))
}

/// The display names of tenants (the tenant table's `name_column`), for
/// the ids given: (tenant_id, name). Empty when no name column is
/// registered.
#[pg_extern(stable, parallel_safe)]
fn tenant_names(
    tenant_ids: Option<Vec<Option<String>>>,
) -> TableIterator<'static, (name!(tenant_id, String), name!(name, Option<String>))> {
    let ids: Vec<String> = tenant_ids
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    let rows = boundary(|| privilege::as_extension_owner(|| datamap::tenant_names(&ids)));
    TableIterator::new(rows)
}

/// Whether the subject has a live membership in the tenant, by the data
/// map's membership tables (false for ids the columns cannot hold).
#[pg_extern(stable, parallel_safe)]
fn is_member(
    subject_type: Option<&str>,
    subject_id: Option<&str>,
    tenant_id: Option<&str>,
) -> bool {
    boundary(|| {
        let (Some(t), Some(s), Some(tenant)) = (subject_type, subject_id, tenant_id) else {
            return Ok(false);
        };
        privilege::as_extension_owner(|| erasure::member_of(t, s, tenant))
    })
}

/// Tenants whose id is `q` or whose name contains it (case-insensitive),
/// at most `max_rows`: (tenant_id, name).
#[pg_extern(stable, parallel_safe)]
fn find_tenants(
    q: Option<&str>,
    max_rows: default!(Option<i32>, "1000"),
) -> TableIterator<'static, (name!(tenant_id, String), name!(name, Option<String>))> {
    let rows = boundary(|| {
        let q = q.ok_or_else(|| LcError::null_value("q", "lifecycle.find_tenants()"))?;
        privilege::as_extension_owner(|| datamap::find_tenants(q, max_rows.unwrap_or(1000)))
    });
    TableIterator::new(rows)
}

/// Register a table holding a subject's rows, and what erasure does to it.
/// The subject and the tenant are named by a column of the table, or
/// reached through a parent (`subject_via`, `tenant_via`: the column that
/// references the registered parent carrying them).
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn register_table(
    tbl: Option<PgRelation>,
    subject_type: Option<&str>,
    subject_column: Option<&str>,
    tenant_column: default!(Option<&str>, "NULL"),
    on_erase: default!(Option<&str>, "'delete'"),
    retain_for: default!(Option<Interval>, "NULL"),
    legal_basis: default!(Option<&str>, "NULL"),
    soft_delete_column: default!(Option<&str>, "NULL"),
    label: default!(Option<&str>, "NULL"),
    tenant_via: default!(Option<&str>, "NULL"),
    subject_via: default!(Option<&str>, "NULL"),
    redact_mentions: default!(Option<bool>, "false"),
) {
    let tbl = oid_of(tbl);
    boundary(|| {
        datamap::register_table(datamap::TableRegistration {
            tbl,
            subject_type,
            subject_column,
            tenant_column,
            on_erase,
            retain_for,
            legal_basis,
            soft_delete_column,
            label,
            tenant_via,
            subject_via,
            redact_mentions,
        })
    })
}

/// Declare that a column references a registered table's key, where the
/// schema has no foreign key.
#[pg_extern(volatile, parallel_unsafe)]
fn register_link(
    tbl: Option<PgRelation>,
    col: Option<&str>,
    parent: Option<PgRelation>,
    parent_column: default!(Option<&str>, "NULL"),
) {
    let (tbl, parent) = (oid_of(tbl), oid_of(parent));
    boundary(|| datamap::register_link(tbl, col, parent, parent_column))
}

/// Say how erasure treats one column.
#[pg_extern(volatile, parallel_unsafe)]
fn set_column_rule(tbl: Option<PgRelation>, col: Option<&str>, rule: Option<&str>) {
    let tbl = oid_of(tbl);
    boundary(|| datamap::set_column_rule(tbl, col, rule))
}

/// Register a membership table (subject, tenant, role). The role column is
/// a role name, a list of roles (an array, or a string separated by
/// `role_separator`) or a boolean admin flag; the subject type defaults to
/// the one the subject column references. `active_column`: a boolean that
/// is true while the membership is current (former members are no admins).
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn register_membership(
    tbl: Option<PgRelation>,
    subject_column: Option<&str>,
    tenant_column: Option<&str>,
    role_column: Option<&str>,
    admin_roles: default!(Option<Vec<Option<String>>>, "NULL"),
    subject_type: default!(Option<&str>, "NULL"),
    role_separator: default!(Option<&str>, "NULL"),
    active_column: default!(Option<&str>, "NULL"),
) {
    let tbl = oid_of(tbl);
    boundary(|| {
        datamap::register_membership(datamap::MembershipRegistration {
            tbl,
            subject_column,
            tenant_column,
            role_column,
            admin_roles,
            subject_type,
            role_separator,
            active_column,
        })
    })
}

/// Remove a membership registration.
#[pg_extern(volatile, parallel_unsafe)]
fn unregister_membership(tbl: Option<PgRelation>) {
    let tbl = oid_of(tbl);
    boundary(|| datamap::unregister_membership(tbl))
}

/// Map one more column of a registered table to a hold scope.
#[pg_extern(volatile, parallel_unsafe)]
fn register_scope(tbl: Option<PgRelation>, scope_type: Option<&str>, col: Option<&str>) {
    let tbl = oid_of(tbl);
    boundary(|| datamap::register_scope(tbl, scope_type, col))
}

/// Remove a table from the data map and drop its guards.
#[pg_extern(volatile, parallel_unsafe)]
fn unregister_table(tbl: Option<PgRelation>) {
    let tbl = oid_of(tbl);
    boundary(|| datamap::unregister_table(tbl))
}

// ----- legal holds --------------------------------------------------------------

/// Place a legal hold; returns its id.
#[pg_extern(volatile, parallel_unsafe)]
fn place_hold(
    scope_type: Option<&str>,
    scope_id: Option<&str>,
    tenant_id: Option<&str>,
    reason: Option<&str>,
    created_by: Option<&str>,
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Uuid {
    boundary(|| {
        let id = holds::place(holds::NewHold {
            scope_type,
            scope_id,
            tenant_id,
            reason,
            created_by,
            expires_at,
        })?;
        parse_uuid(&id)
    })
}

fn parse_uuid(s: &str) -> Result<Uuid, LcError> {
    holds::uuid_bytes(s)
        .map(Uuid::from_bytes)
        .ok_or_else(|| LcError::internal(format!("bad uuid {s}")))
}

/// Release a legal hold.
#[pg_extern(volatile, parallel_unsafe)]
fn release_hold(
    hold_id: Option<Uuid>,
    released_by: Option<&str>,
    reason: default!(Option<&str>, "NULL"),
) {
    boundary(|| holds::release(hold_id, released_by, reason))
}

// ----- audit log ----------------------------------------------------------------

/// Append an event to the audit log; returns its id.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn record_event(
    event_type: Option<&str>,
    actor: Option<&str>,
    subject_type: Option<&str>,
    subject_id: Option<&str>,
    tenant_id: Option<&str>,
    details: default!(Option<pgrx::JsonB>, "'{}'"),
    ip: default!(Option<pgrx::Inet>, "NULL"),
    user_agent: default!(Option<&str>, "NULL"),
    reason: default!(Option<&str>, "NULL"),
) -> i64 {
    boundary(|| {
        let event_type = event_type
            .ok_or_else(|| LcError::null_value("event_type", "lifecycle.record_event()"))?;
        audit::record_event(audit::Event {
            event_type,
            actor,
            subject_type,
            subject_id,
            tenant_id,
            details: details.map(|d| d.0),
            ip: ip.as_ref().map(|i| i.0.as_str()),
            user_agent,
            reason,
        })
    })
}

/// Check the audit log's hash chains.
#[pg_extern(volatile, parallel_unsafe)]
fn verify_audit_log() -> TableIterator<
    'static,
    (
        name!(ok, bool),
        name!(checked, i64),
        name!(first_bad_id, Option<i64>),
    ),
> {
    let v = boundary(audit::verify);
    TableIterator::once((v.ok, v.checked, v.first_bad_id))
}

// ----- jobs ---------------------------------------------------------------------

fn uuid_text(u: Option<Uuid>) -> Option<String> {
    u.map(|u| u.to_string())
}

fn interval_text(i: Option<Interval>) -> Result<Option<String>, LcError> {
    match i {
        None => Ok(None),
        Some(i) => Ok(spi::one::<String>(
            "SELECT $1::interval::text",
            &[i.into()],
        )?),
    }
}

/// Request an export of a subject's (or a workspace's) data; returns the job id.
#[pg_extern(volatile, parallel_unsafe)]
fn request_export(
    target_type: Option<&str>,
    target_id: Option<&str>,
    tenant_id: Option<&str>,
    requested_by: Option<&str>,
    reason: default!(Option<&str>, "NULL"),
    requires_approval: default!(Option<bool>, "false"),
) -> Uuid {
    boundary(|| {
        unscheduled_request(
            "export",
            target_type,
            target_id,
            tenant_id,
            requested_by,
            reason,
            requires_approval,
        )
    })
}

/// A request with no cooling-off, deadline or workspace decisions (export,
/// purge).
fn unscheduled_request(
    job_type: &'static str,
    target_type: Option<&str>,
    target_id: Option<&str>,
    tenant_id: Option<&str>,
    requested_by: Option<&str>,
    reason: Option<&str>,
    requires_approval: Option<bool>,
) -> Result<Uuid, LcError> {
    let id = jobs::request(jobs::Request {
        job_type,
        target_type,
        target_id,
        tenant_id,
        requested_by,
        reason,
        cooling_off: None,
        jurisdiction: None,
        requires_approval,
        workspaces: None,
    })?;
    parse_uuid(&id)
}

/// Request the erasure of a subject or a workspace; returns the job id. The
/// job runs once approved and once the cooling-off has passed.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn request_erasure(
    target_type: Option<&str>,
    target_id: Option<&str>,
    tenant_id: Option<&str>,
    requested_by: Option<&str>,
    reason: default!(Option<&str>, "NULL"),
    cooling_off: default!(Option<Interval>, "'30 days'"),
    jurisdiction: default!(Option<&str>, "'gdpr'"),
    requires_approval: default!(Option<bool>, "true"),
    workspaces: default!(Option<pgrx::JsonB>, "NULL"),
) -> Uuid {
    boundary(|| {
        let id = jobs::request(jobs::Request {
            job_type: "erase",
            target_type,
            target_id,
            tenant_id,
            requested_by,
            reason,
            cooling_off: interval_text(cooling_off)?,
            jurisdiction,
            requires_approval,
            workspaces: workspaces.map(|w| w.0),
        })?;
        parse_uuid(&id)
    })
}

/// Request a purge of what an erasure kept; returns the job id.
#[pg_extern(volatile, parallel_unsafe)]
fn request_purge(
    target_type: Option<&str>,
    target_id: Option<&str>,
    tenant_id: Option<&str>,
    requested_by: Option<&str>,
    reason: default!(Option<&str>, "NULL"),
    requires_approval: default!(Option<bool>, "true"),
) -> Uuid {
    boundary(|| {
        unscheduled_request(
            "purge",
            target_type,
            target_id,
            tenant_id,
            requested_by,
            reason,
            requires_approval,
        )
    })
}

/// Approve a pending job (the approver must not be the requester).
#[pg_extern(volatile, parallel_unsafe)]
fn approve(job_id: Option<Uuid>, approved_by: Option<&str>) {
    let id = uuid_text(job_id);
    boundary(|| jobs::approve(id.as_deref(), approved_by))
}

/// Reject a pending job; a reason is required.
#[pg_extern(volatile, parallel_unsafe)]
fn reject(job_id: Option<Uuid>, rejected_by: Option<&str>, reason: Option<&str>) {
    let id = uuid_text(job_id);
    boundary(|| jobs::reject(id.as_deref(), rejected_by, reason))
}

/// Cancel a pending or approved job (for an erasure: during the cooling-off).
#[pg_extern(volatile, parallel_unsafe)]
fn cancel(job_id: Option<Uuid>, cancelled_by: Option<&str>) {
    let id = uuid_text(job_id);
    boundary(|| jobs::cancel(id.as_deref(), cancelled_by))
}

/// `id` of `scope_type` (a subject type, `tenant`, a registered scope) as
/// its key column prints it, which is how jobs, holds and audit events store
/// it: an upper-case uuid in lower case, `' 042'` of a bigint as `42`. As
/// given when no key column can hold it.
#[pg_extern(stable, strict, parallel_unsafe)]
fn canonical_id(scope_type: &str, id: &str) -> String {
    boundary(|| holds::canonical_id(scope_type, id))
}

/// 'active', 'pending_deletion' or 'erased'.
#[pg_extern(stable, parallel_unsafe)]
fn subject_state(subject_type: Option<&str>, subject_id: Option<&str>) -> String {
    boundary(|| jobs::subject_state(subject_type, subject_id))
}

/// What erasing a subject or a workspace would do, changing nothing: the
/// plan's steps with the rows each would touch, what would be retained and
/// why, stored objects, workspaces the subject is the last admin of, and
/// the holds that would block it. `workspaces`: the decisions for the
/// workspaces the subject is the last admin of, as `request_erasure` takes
/// them.
#[pg_extern(volatile, parallel_unsafe)]
fn preview_erasure(
    target_type: Option<&str>,
    target_id: Option<&str>,
    tenant_id: default!(Option<&str>, "NULL"),
    workspaces: default!(Option<pgrx::JsonB>, "NULL"),
) -> pgrx::JsonB {
    boundary(|| {
        const F: &str = "lifecycle.preview_erasure()";
        let target_type = target_type.ok_or_else(|| LcError::null_value("target_type", F))?;
        let target_id = target_id.ok_or_else(|| LcError::null_value("target_id", F))?;
        let workspaces = workspaces.map(|w| w.0);
        privilege::as_extension_owner(|| {
            erasure::preview::preview(target_type, target_id, tenant_id, workspaces.as_ref())
                .map(pgrx::JsonB)
        })
    })
}

/// The files of an export of a subject (or, for a tenant target, of a whole
/// workspace), in the bundle's order: name, kind, label, what it holds, its
/// columns with their labels, the columns left out and why, and the columns
/// naming stored objects. `tenant_id` is accepted for symmetry with the
/// requests: a subject's export holds their rows in every workspace.
#[pg_extern(stable, parallel_unsafe)]
#[allow(clippy::type_complexity)]
fn export_contents(
    target_type: Option<&str>,
    target_id: Option<&str>,
    tenant_id: default!(Option<&str>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(position, i32),
        name!(name, String),
        name!(kind, String),
        name!(label, String),
        name!(description, String),
        name!(retention, Option<String>),
        name!(columns, pgrx::JsonB),
        name!(excluded, pgrx::JsonB),
        name!(storage_columns, Vec<String>),
    ),
> {
    let _ = tenant_id;
    let rows = boundary(|| {
        const F: &str = "lifecycle.export_contents()";
        let target_type = target_type.ok_or_else(|| LcError::null_value("target_type", F))?;
        let target_id = target_id.ok_or_else(|| LcError::null_value("target_id", F))?;
        privilege::as_extension_owner(|| export::content_rows(target_type, target_id))
    });
    TableIterator::new(rows)
}

/// Open a cursor on the rows of one file of an export (a `name` from
/// `export_contents`), in the caller's transaction: one `json` object per
/// row, keyed by column name. Take the whole bundle in one `REPEATABLE
/// READ, READ ONLY` transaction so that every file comes from one snapshot.
/// Returns the cursor's name (`cursor`, or one PostgreSQL picks if NULL).
#[pg_extern(volatile, parallel_unsafe)]
fn open_export(
    target_type: Option<&str>,
    target_id: Option<&str>,
    tenant_id: Option<&str>,
    name: Option<&str>,
    cursor: Option<&str>,
) -> String {
    let _ = tenant_id;
    boundary(|| {
        const F: &str = "lifecycle.open_export()";
        let target_type = target_type.ok_or_else(|| LcError::null_value("target_type", F))?;
        let target_id = target_id.ok_or_else(|| LcError::null_value("target_id", F))?;
        let name = name.ok_or_else(|| LcError::null_value("name", F))?;
        privilege::as_extension_owner(|| export::open(target_type, target_id, name, cursor))
    })
}

/// The next rows (at most `max_rows`, each one JSON object as text) of a
/// cursor `open_export` opened in this transaction, read as the table's
/// owner as the cursor was opened. No row: the cursor is exhausted.
#[pg_extern(volatile, parallel_unsafe)]
fn fetch_export(
    cursor: Option<&str>,
    max_rows: default!(Option<i32>, "1000"),
) -> SetOfIterator<'static, String> {
    let rows = boundary(|| {
        let cursor =
            cursor.ok_or_else(|| LcError::null_value("cursor", "lifecycle.fetch_export()"))?;
        privilege::as_extension_owner(|| export::fetch(cursor, max_rows.unwrap_or(1000)))
    });
    SetOfIterator::new(rows)
}

/// A download of a completed export's bundle by `actor`, for the export's
/// own target only: counted and audited (`data.export_downloaded` with IP
/// and user agent). Returns where the bundle is stored. Not ready: LC030;
/// entitlement ended: LC043; another target's export: LC035.
#[pg_extern(volatile, parallel_unsafe)]
fn export_download(
    job_id: Option<Uuid>,
    target_type: Option<&str>,
    target_id: Option<&str>,
    actor: Option<&str>,
    ip: default!(Option<pgrx::Inet>, "NULL"),
    user_agent: default!(Option<&str>, "NULL"),
) -> pgrx::JsonB {
    boundary(|| {
        const F: &str = "lifecycle.export_download()";
        let job_id = job_id.ok_or_else(|| LcError::null_value("job_id", F))?;
        let target_type = target_type.ok_or_else(|| LcError::null_value("target_type", F))?;
        let target_id = target_id.ok_or_else(|| LcError::null_value("target_id", F))?;
        let actor = actor.ok_or_else(|| LcError::null_value("actor", F))?;
        let ip = ip.map(|i| i.0);
        privilege::as_extension_owner(|| {
            export::download(
                &job_id.to_string(),
                target_type,
                target_id,
                actor,
                ip.as_deref(),
                user_agent,
            )
            .map(pgrx::JsonB)
        })
    })
}

/// The bundle of an export was deleted from storage because its entitlement
/// ended: marks it expired and records `data.export_expired` (once; false
/// when it already was).
#[pg_extern(volatile, parallel_unsafe)]
fn expire_export(job_id: Option<Uuid>, actor: Option<&str>) -> bool {
    boundary(|| {
        const F: &str = "lifecycle.expire_export()";
        let job_id = job_id.ok_or_else(|| LcError::null_value("job_id", F))?;
        let actor = actor.ok_or_else(|| LcError::null_value("actor", F))?;
        privilege::as_extension_owner(|| export::expire(&job_id.to_string(), actor))
    })
}

/// The head of every audit chain (what an anchor outside the database
/// records): chain, last event id, last hash (hex), events.
#[pg_extern(stable, parallel_safe)]
fn audit_chain_heads() -> TableIterator<
    'static,
    (
        name!(chain, i32),
        name!(last_id, Option<i64>),
        name!(last_hash, String),
        name!(events, i64),
    ),
> {
    let rows = boundary(|| privilege::as_extension_owner(export::chain_heads));
    TableIterator::new(rows)
}

/// The label exports give a column (NULL: back to the default made from the
/// column's name).
#[pg_extern(volatile, parallel_unsafe)]
fn set_column_label(tbl: Option<PgRelation>, col: Option<&str>, label: Option<&str>) {
    let tbl = oid_of(tbl);
    boundary(|| datamap::exports::set_column_label(tbl, col, label))
}

/// Leave a column out of every export (password and token hashes, internal
/// secrets); bundles say it was left out, and why.
#[pg_extern(volatile, parallel_unsafe)]
fn exclude_from_export(tbl: Option<PgRelation>, col: Option<&str>, reason: Option<&str>) {
    let tbl = oid_of(tbl);
    boundary(|| datamap::exports::exclude_from_export(tbl, col, reason))
}

/// Put a column excluded with `exclude_from_export` back into exports.
#[pg_extern(volatile, parallel_unsafe)]
fn include_in_export(tbl: Option<PgRelation>, col: Option<&str>) {
    let tbl = oid_of(tbl);
    boundary(|| datamap::exports::include_in_export(tbl, col))
}

/// `value` with every whole-word occurrence of every identifier replaced by
/// `[redacted]`, whatever its letter case and Unicode normal form. Pure;
/// safe for any arguments.
#[pg_extern(immutable, strict, parallel_safe)]
fn redact_text(value: &str, identifiers: Vec<Option<String>>) -> String {
    let ids: Vec<String> = identifiers.into_iter().flatten().collect();
    lifecycle_core::redact::redact_text(value, &ids)
}

/// Whether `value` mentions one of the identifiers, as `redact_text` would
/// find it. Pure; safe for any arguments.
#[pg_extern(immutable, strict, parallel_safe)]
fn mentions(value: &str, identifiers: pgrx::Array<'_, &str>) -> bool {
    erasure::mentions::mentions(value, identifiers)
}

/// Run due erase and purge jobs (for pg_cron or a DBA); returns how many ran.
#[pg_extern(volatile, parallel_unsafe)]
fn run_due_jobs(max_jobs: default!(Option<i32>, "100")) -> i32 {
    boundary(|| jobs::run_due_jobs(max_jobs))
}

/// Run one approved, due erase or purge job now; returns its status and receipt.
#[pg_extern(volatile, parallel_unsafe)]
fn run_job(job_id: Option<Uuid>, worker: default!(Option<&str>, "NULL")) -> pgrx::JsonB {
    let id = uuid_text(job_id);
    boundary(|| jobs::run_job(id.as_deref(), worker).map(pgrx::JsonB))
}

/// Claim the next runnable job with a lease; NULL when there is none.
#[pg_extern(volatile, parallel_unsafe)]
fn claim_job(
    worker: Option<&str>,
    lease: default!(Option<Interval>, "'5 minutes'"),
    job_types: default!(Option<Vec<String>>, "ARRAY['export', 'erase', 'purge']"),
) -> Option<pgrx::JsonB> {
    boundary(|| {
        let lease = interval_text(lease)?;
        jobs::claim_job(worker, lease.as_deref(), job_types).map(|j| j.map(pgrx::JsonB))
    })
}

/// Extend the lease of a claimed job; returns the new expiry.
#[pg_extern(volatile, parallel_unsafe)]
fn renew_lease(
    job_id: Option<Uuid>,
    worker: Option<&str>,
    lease: default!(Option<Interval>, "'5 minutes'"),
) -> String {
    let id = uuid_text(job_id);
    boundary(|| {
        let lease = interval_text(lease)?;
        jobs::renew_lease(id.as_deref(), worker, lease.as_deref())
    })
}

/// Complete a claimed export job with the bundle's description.
#[pg_extern(volatile, parallel_unsafe)]
fn complete_job(
    job_id: Option<Uuid>,
    worker: Option<&str>,
    result: default!(Option<pgrx::JsonB>, "'{}'"),
) {
    let id = uuid_text(job_id);
    boundary(|| jobs::complete_job(id.as_deref(), worker, result.map(|r| r.0)))
}

/// Mark a claimed job failed.
#[pg_extern(volatile, parallel_unsafe)]
fn fail_job(job_id: Option<Uuid>, worker: Option<&str>, error: Option<&str>) {
    let id = uuid_text(job_id);
    boundary(|| jobs::fail_job(id.as_deref(), worker, error))
}

/// Confirm a step outside the database (a stored file deleted); returns the job's status.
#[pg_extern(volatile, parallel_unsafe)]
fn confirm_step(step_id: Option<i64>, confirmed_by: Option<&str>) -> String {
    boundary(|| jobs::confirm_step(step_id, confirmed_by))
}

/// Remove retained rows whose retention period has ended; returns the rows removed.
#[pg_extern(volatile, parallel_unsafe)]
fn retention_sweep() -> i64 {
    boundary(|| privilege::as_extension_owner(|| guard::with_hard_delete(erasure::retention_sweep)))
}

// ----- raw trigger and event trigger entry points -------------------------------

macro_rules! v1_function {
    ($name:ident, $finfo:ident, $body:expr) => {
        #[no_mangle]
        #[doc(hidden)]
        pub extern "C" fn $finfo() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }

        #[no_mangle]
        #[doc(hidden)]
        #[pg_guard]
        pub unsafe extern "C-unwind" fn $name(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
            let f: unsafe fn(pg_sys::FunctionCallInfo) -> Result<pg_sys::Datum, LcError> = $body;
            boundary(|| unsafe { f(fcinfo) })
        }
    };
}

unsafe fn trigger_data<'a>(
    fcinfo: pg_sys::FunctionCallInfo,
) -> Result<&'a pg_sys::TriggerData, LcError> {
    let ctx = (*fcinfo).context;
    if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_TriggerData {
        return Err(LcError::internal(
            "function was not called by the trigger manager",
        ));
    }
    Ok(&*(ctx as *const pg_sys::TriggerData))
}

unsafe fn event_trigger_data<'a>(
    fcinfo: pg_sys::FunctionCallInfo,
) -> Result<&'a pg_sys::EventTriggerData, LcError> {
    let ctx = (*fcinfo).context;
    if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_EventTriggerData {
        return Err(LcError::internal(
            "function was not called as an event trigger",
        ));
    }
    Ok(&*(ctx as *const pg_sys::EventTriggerData))
}

v1_function!(
    lifecycle_guard_row,
    pg_finfo_lifecycle_guard_row,
    |fcinfo| unsafe {
        let td = trigger_data(fcinfo)?;
        guard::guard_row(td)?;
        Ok(pg_sys::Datum::from(0))
    }
);

// `lifecycle.redact_json(jsonb, text[])`: the document with every
// identifier replaced in its strings and keys, the value itself when
// nothing changed. Pure; safe for any arguments. The document is read as
// the text PostgreSQL prints for it, in one pass without recursion, so any
// depth of nesting PostgreSQL accepts is redacted (a parsed document would
// stop at a fixed depth, and an erasure with it).
v1_function!(
    lifecycle_redact_json,
    pg_finfo_lifecycle_redact_json,
    |fcinfo| unsafe {
        // Declared STRICT (jsonb, text[]): two arguments, neither NULL, of
        // these types.
        let args = (*fcinfo).args.as_slice(2);
        let jsonb = pg_sys::pg_detoast_datum(args[0].value.cast_mut_ptr()) as *mut pg_sys::Jsonb;
        let size = pgrx::varlena::varsize_any(jsonb as *const pg_sys::varlena);
        let text = pg_sys::JsonbToCString(
            std::ptr::null_mut(),
            &mut (*jsonb).root,
            i32::try_from(size).unwrap_or(i32::MAX),
        );
        let text = std::ffi::CStr::from_ptr(text).to_string_lossy();
        let identifiers: Vec<String> =
            <Vec<Option<String>> as FromDatum>::from_datum(args[1].value, false)
                .unwrap_or_default()
                .into_iter()
                .flatten()
                .collect();
        match lifecycle_core::redact::redact_json_text(&text, &identifiers) {
            None => Ok(args[0].value),
            Some(redacted) => {
                let redacted = std::ffi::CString::new(redacted)
                    .map_err(|_| LcError::internal("a JSON document holds a NUL character"))?;
                Ok(pg_sys::OidInputFunctionCall(
                    pg_sys::Oid::from(pg_sys::F_JSONB_IN),
                    redacted.as_ptr().cast_mut(),
                    pg_sys::JSONBOID,
                    -1,
                ))
            }
        }
    }
);

/// The row guard's `WHEN` condition (`lifecycle.row_may_be_held`). It runs
/// for every row an UPDATE or DELETE of a guarded table touches, so the
/// common case (this relation's held ids already known to the backend, and
/// this call site's argument types already checked against them) is
/// answered without the error boundary: that path neither calls into
/// PostgreSQL nor can panic. Everything else goes through
/// `row_may_be_held_full`, which is guarded like every other entry point.
#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_lifecycle_row_may_be_held() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// # Safety
/// Called by PostgreSQL's function manager as `row_may_be_held(regclass,
/// bigint, VARIADIC "any")`, from the row guard's `WHEN` condition or by
/// anyone in SQL.
#[no_mangle]
#[doc(hidden)]
pub unsafe extern "C-unwind" fn lifecycle_row_may_be_held(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let flinfo = (*fcinfo).flinfo;
    let checked = if flinfo.is_null() {
        std::ptr::null()
    } else {
        (*flinfo).fn_extra as *const u64
    };
    if !checked.is_null() {
        let nargs = (*fcinfo).nargs as usize;
        let args = (*fcinfo).args.as_slice(nargs);
        if let [relid, signature, keys @ ..] = args {
            if !relid.isnull && !signature.isnull {
                let relid = pg_sys::Oid::from(relid.value.value() as u32);
                if let Some(answer) = condition::row_may_be_held_memoized(
                    *checked,
                    relid,
                    signature.value.value() as i64,
                    keys,
                ) {
                    return pg_sys::Datum::from(answer);
                }
            }
        }
    }
    row_may_be_held_full(fcinfo)
}

#[pg_guard]
unsafe extern "C-unwind" fn row_may_be_held_full(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    boundary(|| unsafe {
        let nargs = (*fcinfo).nargs as usize;
        let args = (*fcinfo).args.as_slice(nargs);
        let (relid, signature) = match args {
            [r, s, ..] if !r.isnull && !s.isnull => (
                pg_sys::Oid::from(r.value.value() as u32),
                s.value.value() as i64,
            ),
            // NULL relation or signature: nothing to look up.
            _ => return Ok(pg_sys::Datum::from(false)),
        };
        Ok(pg_sys::Datum::from(condition::row_may_be_held(
            (*fcinfo).flinfo,
            relid,
            signature,
            args.get(2..).unwrap_or(&[]),
        )?))
    })
}

v1_function!(
    lifecycle_guard_truncate,
    pg_finfo_lifecycle_guard_truncate,
    |fcinfo| unsafe {
        let td = trigger_data(fcinfo)?;
        guard::guard_truncate(td)?;
        Ok(pg_sys::Datum::from(0))
    }
);

v1_function!(
    lifecycle_soft_delete_row,
    pg_finfo_lifecycle_soft_delete_row,
    |fcinfo| unsafe {
        let td = trigger_data(fcinfo)?;
        Ok(pg_sys::Datum::from(guard::soft_delete_row(td)?))
    }
);

v1_function!(
    lifecycle_audit_append_only,
    pg_finfo_lifecycle_audit_append_only,
    |fcinfo| unsafe {
        let td = trigger_data(fcinfo)?;
        guard::audit_append_only(td.tg_event)?;
        Ok(row_result(td))
    }
);

v1_function!(
    lifecycle_holds_immutable,
    pg_finfo_lifecycle_holds_immutable,
    |fcinfo| unsafe {
        let td = trigger_data(fcinfo)?;
        guard::holds_immutable(td.tg_event)?;
        Ok(row_result(td))
    }
);

v1_function!(
    lifecycle_invalidate_cache,
    pg_finfo_lifecycle_invalidate_cache,
    |fcinfo| unsafe {
        let td = trigger_data(fcinfo)?;
        pg_sys::CacheInvalidateRelcacheByRelid((*td.tg_relation).rd_id);
        Ok(pg_sys::Datum::from(0))
    }
);

v1_function!(
    lifecycle_ddl_guard,
    pg_finfo_lifecycle_ddl_guard,
    |fcinfo| unsafe {
        let ev = event_trigger_data(fcinfo)?;
        ddl::ddl_command_end(ev.parsetree)?;
        Ok(pg_sys::Datum::from(0))
    }
);

v1_function!(
    lifecycle_drop_guard,
    pg_finfo_lifecycle_drop_guard,
    |fcinfo| unsafe {
        event_trigger_data(fcinfo)?;
        ddl::sql_drop()?;
        Ok(pg_sys::Datum::from(0))
    }
);

v1_function!(
    lifecycle_own_table_guard,
    pg_finfo_lifecycle_own_table_guard,
    |fcinfo| unsafe {
        let td = trigger_data(fcinfo)?;
        guard::own_table_write(td)?;
        Ok(pg_sys::Datum::from(0))
    }
);

// `lifecycle.list_jobs(...)` (declared in sql/extension/jobs.sql): a
// set-returning function in materialize mode, so that the rows SPI read go
// into the result as datums (see `jobs::list`).
v1_function!(
    lifecycle_list_jobs,
    pg_finfo_lifecycle_list_jobs,
    |fcinfo| unsafe {
        use pgrx::fcinfo::pg_getarg;
        let query = jobs::list::Query {
            status: pg_getarg(fcinfo, 0),
            job_type: pg_getarg(fcinfo, 1),
            q: pg_getarg(fcinfo, 2),
            tenants: pg_getarg::<Vec<Option<String>>>(fcinfo, 3)
                .map(|t| t.into_iter().flatten().collect()),
            limit: pg_getarg(fcinfo, 4),
            after_requested_at: pg_getarg(fcinfo, 5),
            after_id: pg_getarg(fcinfo, 6),
        };
        // The tuplestore and the result's row type, in the query's memory.
        pg_sys::SetSingleFuncCall(fcinfo, 0);
        let rsinfo = (*fcinfo).resultinfo as *mut pg_sys::ReturnSetInfo;
        let (store, desc) = ((*rsinfo).setResult, (*rsinfo).setDesc);
        jobs::list::list(query, |values, nulls| {
            pg_sys::tuplestore_putvalues(
                store,
                desc,
                values.as_ptr().cast_mut(),
                nulls.as_ptr().cast_mut(),
            )
        })?;
        Ok(pg_sys::Datum::from(0))
    }
);

v1_function!(
    lifecycle_jobs_guard,
    pg_finfo_lifecycle_jobs_guard,
    |fcinfo| unsafe {
        let td = trigger_data(fcinfo)?;
        let t = pgrx::PgTrigger::from_fcinfo(&*fcinfo)
            .map_err(|e| LcError::internal(format!("jobs trigger: {e}")))?;
        let old = t.old().map(|r| job_row(&r)).transpose()?;
        let new = t.new().map(|r| job_row(&r)).transpose()?;
        // A superuser's COPY is how pg_restore (and psql, for a plain
        // dump) reloads the jobs of a dump, in whatever state they had
        // reached. Every other new job starts at the beginning.
        let restoring = old.is_none()
            && !privilege::extension_acting()
            && privilege::is_superuser()
            && copying();
        if !restoring {
            jobs::check_update(old.as_ref(), new.as_ref())?;
        }
        Ok(row_result(td))
    }
);

/// Whether the statement being run is a `COPY`.
fn copying() -> bool {
    unsafe {
        let portal = pg_sys::ActivePortal;
        !portal.is_null() && (*portal).commandTag == pg_sys::CommandTag::CMDTAG_COPY
    }
}

fn job_row(
    r: &pgrx::heap_tuple::PgHeapTuple<'_, pgrx::AllocatedByPostgres>,
) -> Result<jobs::JobRow, LcError> {
    let text = |name: &str| -> Result<Option<String>, LcError> {
        r.get_by_name::<String>(name)
            .map_err(|e| LcError::internal(format!("jobs trigger: column {name}: {e}")))
    };
    let id = r
        .get_by_name::<Uuid>("id")
        .map_err(|e| LcError::internal(format!("jobs trigger: column id: {e}")))?
        .map(|u| u.to_string())
        .unwrap_or_default();
    Ok(jobs::JobRow {
        id,
        job_type: text("job_type")?.unwrap_or_default(),
        target_type: text("target_type")?.unwrap_or_default(),
        target_id: text("target_id")?.unwrap_or_default(),
        tenant_id: text("tenant_id")?,
        status: text("status")?.unwrap_or_default(),
        requested_by: text("requested_by")?.unwrap_or_default(),
        requires_approval: r
            .get_by_name::<bool>("requires_approval")
            .map_err(|e| LcError::internal(format!("jobs trigger: {e}")))?
            .unwrap_or(true),
        approved_by: text("approved_by")?,
        rejection_reason: text("rejection_reason")?,
    })
}

/// The tuple a BEFORE row trigger returns to let the operation proceed.
unsafe fn row_result(td: &pg_sys::TriggerData) -> pg_sys::Datum {
    let is_update = td.tg_event & pg_sys::TRIGGER_EVENT_OPMASK == pg_sys::TRIGGER_EVENT_UPDATE;
    if td.tg_event & pg_sys::TRIGGER_EVENT_ROW == 0 {
        pg_sys::Datum::from(0)
    } else if is_update {
        pg_sys::Datum::from(td.tg_newtuple)
    } else {
        pg_sys::Datum::from(td.tg_trigtuple)
    }
}

// ----- the job list, statistics and workers' hand-backs --------------------------

/// The number of jobs by status and type, every status and type included:
/// of the given tenants, or of all jobs (NULL). Read from counts a trigger
/// keeps, never from a scan of the jobs.
#[pg_extern(stable, parallel_unsafe)]
fn job_stats(
    tenants: default!(Option<Vec<Option<String>>>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(job_type, String),
        name!(jobs, i64),
    ),
> {
    let tenants = tenants.map(|t| t.into_iter().flatten().collect());
    TableIterator::new(boundary(|| jobs::stats::job_stats(tenants)))
}

/// The oldest due job of each type (waiting to run, past its cooling-off,
/// not blocked by a hold in force) and how long it has been due; NULLs when
/// none is due.
#[allow(clippy::type_complexity)]
#[pg_extern(stable, parallel_unsafe)]
fn oldest_due_jobs() -> TableIterator<
    'static,
    (
        name!(job_type, String),
        name!(job_id, Option<Uuid>),
        name!(scheduled_for, Option<TimestampWithTimeZone>),
        name!(age_seconds, Option<f64>),
    ),
> {
    TableIterator::new(boundary(jobs::stats::oldest_due_jobs))
}

/// Count the jobs again into the counts `job_stats` reads; returns the
/// number of jobs.
#[pg_extern(volatile, parallel_unsafe)]
fn recount_jobs() -> i64 {
    boundary(jobs::stats::recount_jobs)
}

/// Hand a claimed job whose work has not started back to the queue (a
/// worker stopping).
#[pg_extern(volatile, parallel_unsafe)]
fn release_lease(job_id: Option<Uuid>, worker: Option<&str>) {
    let id = uuid_text(job_id);
    boundary(|| jobs::release_lease(id.as_deref(), worker))
}

extension_sql!(
    r#"
REVOKE EXECUTE ON FUNCTION
    lifecycle.job_stats(text[]),
    lifecycle.oldest_due_jobs(),
    lifecycle.recount_jobs(),
    lifecycle.release_lease(uuid, text)
  FROM PUBLIC;
"#,
    name = "job_list_privileges",
    requires = [job_stats, oldest_due_jobs, recount_jobs, release_lease]
);

#[cfg(any(test, feature = "pg_test"))]
mod tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
