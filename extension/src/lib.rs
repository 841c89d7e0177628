//! `lifecycle`: privacy data lifecycle enforced inside PostgreSQL.
//!
//! This file is the SQL surface: thin `#[pg_extern]` functions and the raw
//! trigger entry points, each running its body through
//! [`error::boundary`]. The logic lives in one module per concept:
//!
//! * [`datamap`]: registration of subject, tenant and data tables
//! * [`holds`]: legal holds and what they cover
//! * [`guard`]: the triggers and event triggers that enforce holds
//! * [`cache`]: per-backend caches and their invalidation
//! * [`audit`]: the hash-chained audit log
//! * [`error`]: SQLSTATEs and error reporting
//! * [`privilege`]: acting as the extension owner

use pgrx::datum::{Interval, TimestampWithTimeZone, Uuid};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgRelation;

pub mod audit;
pub mod cache;
pub mod datamap;
pub mod error;
pub mod guard;
pub mod holds;
pub mod privilege;
pub mod spi;

use error::{boundary, LcError};

::pgrx::pg_module_magic!(name, version);

extension_sql_file!("../../sql/extension/schema.sql", name = "schema", bootstrap);
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

/// Register the tenant (workspace) table.
#[pg_extern(volatile, parallel_unsafe)]
fn register_tenant(
    tbl: Option<PgRelation>,
    id_column: Option<&str>,
    label: default!(Option<&str>, "NULL"),
) {
    let tbl = oid_of(tbl);
    boundary(|| datamap::register_tenant(tbl, id_column, label))
}

/// Register a table holding a subject's rows, and what erasure does to it.
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
        })
    })
}

/// Say how erasure treats one column.
#[pg_extern(volatile, parallel_unsafe)]
fn set_column_rule(tbl: Option<PgRelation>, col: Option<&str>, rule: Option<&str>) {
    let tbl = oid_of(tbl);
    boundary(|| datamap::set_column_rule(tbl, col, rule))
}

/// Register a membership table (subject, tenant, role).
#[pg_extern(volatile, parallel_unsafe)]
fn register_membership(
    tbl: Option<PgRelation>,
    subject_column: Option<&str>,
    tenant_column: Option<&str>,
    role_column: Option<&str>,
    admin_roles: Option<Vec<Option<String>>>,
    subject_type: default!(Option<&str>, "'user'"),
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
        })
    })
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
    ip: default!(Option<&str>, "NULL"),
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
            ip,
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

unsafe fn require_event_trigger(fcinfo: pg_sys::FunctionCallInfo) -> Result<(), LcError> {
    let ctx = (*fcinfo).context;
    if ctx.is_null() || (*ctx).type_ != pg_sys::NodeTag::T_EventTriggerData {
        return Err(LcError::internal(
            "function was not called as an event trigger",
        ));
    }
    Ok(())
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

v1_function!(
    lifecycle_row_may_be_held,
    pg_finfo_lifecycle_row_may_be_held,
    |fcinfo| unsafe {
        let relid =
            pgrx::fcinfo::pg_getarg::<pg_sys::Oid>(fcinfo, 0).unwrap_or(pg_sys::Oid::INVALID);
        let signature = pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 1).unwrap_or("");
        let nargs = (*fcinfo).nargs as usize;
        let args = (*fcinfo).args.as_slice(nargs);
        let keys: Vec<(pg_sys::Datum, bool)> =
            args.iter().skip(2).map(|a| (a.value, a.isnull)).collect();
        Ok(pg_sys::Datum::from(guard::row_may_be_held(
            relid, signature, &keys,
        )?))
    }
);

v1_function!(
    lifecycle_hold_in_force,
    pg_finfo_lifecycle_hold_in_force,
    |fcinfo| unsafe {
        let relid =
            pgrx::fcinfo::pg_getarg::<pg_sys::Oid>(fcinfo, 0).unwrap_or(pg_sys::Oid::INVALID);
        Ok(pg_sys::Datum::from(guard::hold_in_force(relid)?))
    }
);

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
        require_event_trigger(fcinfo)?;
        guard::ddl_command_end()?;
        Ok(pg_sys::Datum::from(0))
    }
);

v1_function!(
    lifecycle_drop_guard,
    pg_finfo_lifecycle_drop_guard,
    |fcinfo| unsafe {
        require_event_trigger(fcinfo)?;
        guard::sql_drop()?;
        Ok(pg_sys::Datum::from(0))
    }
);

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
