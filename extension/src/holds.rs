//! Legal holds: placing, releasing, and deciding whether a row or a table
//! is covered by one.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::audit::{self, Event};
use crate::cache::{self, Hold, TableGuard};
use crate::datamap;
use crate::error::{LcError, LcResult};
use crate::privilege;

pub struct NewHold<'a> {
    pub scope_type: Option<&'a str>,
    pub scope_id: Option<&'a str>,
    pub tenant_id: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub created_by: Option<&'a str>,
    pub expires_at: Option<pgrx::datum::TimestampWithTimeZone>,
}

fn required<'a>(v: Option<&'a str>, name: &str, function: &str) -> LcResult<&'a str> {
    match v {
        None => Err(LcError::null_value(name, function)),
        Some(s) if s.trim().is_empty() => Err(LcError::invalid_parameter(format!(
            "parameter \"{name}\" of {function} must not be empty"
        ))),
        Some(s) => Ok(s),
    }
}

/// Place a hold. Waits for writers in flight on every relation in the
/// hold's scope (SHARE lock), so that no write racing the placement can
/// remove or change a row the hold covers.
pub fn place(h: NewHold<'_>) -> LcResult<String> {
    const F: &str = "lifecycle.place_hold()";
    let scope_type = required(h.scope_type, "scope_type", F)?;
    let scope_id = required(h.scope_id, "scope_id", F)?;
    let reason = required(h.reason, "reason", F)?;
    let created_by = required(h.created_by, "created_by", F)?;
    let mut tenant_id = match h.tenant_id {
        Some(t) if t.trim().is_empty() => {
            return Err(LcError::invalid_parameter(
                "parameter \"tenant_id\" of lifecycle.place_hold() must not be empty",
            )
            .hint("Pass NULL to hold the scope in every tenant."))
        }
        other => other,
    };
    if scope_type == "tenant" {
        if let Some(t) = tenant_id {
            if t != scope_id {
                return Err(LcError::invalid_parameter(
                    "a tenant hold must name the same tenant in scope_id and tenant_id",
                )
                .detail(format!("scope_id is \"{scope_id}\", tenant_id is \"{t}\"."))
                .hint("Pass tenant_id => NULL or the same value as scope_id."));
            }
        }
        tenant_id = Some(scope_id);
    }
    if let Some(exp) = h.expires_at {
        let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
        if exp.into_inner() <= now {
            return Err(LcError::invalid_parameter(
                "expires_at of a legal hold must be in the future",
            )
            .detail(format!("expires_at is {exp}, which has already passed."))
            .hint("Pass a later expiry, or NULL for a hold that lasts until released."));
        }
    }
    let known = datamap::scope_types()?;
    if !known.iter().any(|k| k == scope_type) {
        return Err(LcError::unknown_scope_type(scope_type, &known));
    }

    // Serialize against writers on every relation the scope reaches.
    let relations = datamap::relations_with_scope(scope_type)?;
    privilege::as_extension_owner(|| {
        for rel in &relations {
            Spi::run(&format!("LOCK TABLE {rel} IN SHARE MODE"))?;
        }
        Ok(())
    })?;

    let id = privilege::as_extension_owner(|| {
        crate::spi::one::<String>(
            "INSERT INTO lifecycle.legal_holds \
                    (scope_type, scope_id, tenant_id, reason, created_by, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id::text",
            &[
                scope_type.into(),
                scope_id.into(),
                tenant_id.into(),
                reason.into(),
                created_by.into(),
                h.expires_at.into(),
            ],
        )?
        .ok_or_else(|| LcError::internal("INSERT ... RETURNING gave no row"))
    })?;
    cache::invalidate("legal_holds")?;
    audit::record(Event {
        event_type: "legal_hold.placed",
        actor: Some(created_by),
        subject_type: if scope_type == "tenant" {
            None
        } else {
            Some(scope_type)
        },
        subject_id: if scope_type == "tenant" {
            None
        } else {
            Some(scope_id)
        },
        tenant_id,
        reason: Some(reason),
        details: Some(json_object(&[
            ("hold_id", Some(id.as_str())),
            ("scope_type", Some(scope_type)),
            ("scope_id", Some(scope_id)),
            ("expires_at", h.expires_at.map(|e| e.to_string()).as_deref()),
        ])),
        ..Event::default()
    })?;
    Ok(id)
}

/// Build a flat JSON object of optional strings (absent values are left out).
pub fn json_object(fields: &[(&str, Option<&str>)]) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for (k, v) in fields {
        if let Some(v) = v {
            map.insert(
                (*k).to_string(),
                serde_json::Value::String((*v).to_string()),
            );
        }
    }
    serde_json::Value::Object(map)
}

pub fn release(
    hold_id: Option<pgrx::datum::Uuid>,
    released_by: Option<&str>,
    reason: Option<&str>,
) -> LcResult<()> {
    const F: &str = "lifecycle.release_hold()";
    let hold_id = hold_id.ok_or_else(|| LcError::null_value("hold_id", F))?;
    let released_by = required(released_by, "released_by", F)?;
    let id = hold_id.to_string();
    let row = privilege::as_extension_owner(|| {
        Spi::connect_mut(|client| {
            let t = client
                .update(
                    "SELECT active, released_at::text, released_by, scope_type, scope_id, tenant_id \
                       FROM lifecycle.legal_holds WHERE id = $1::uuid FOR UPDATE",
                    None,
                    &[id.as_str().into()],
                )?
                .first();
            if t.is_empty() {
                return Ok(None);
            }
            Ok(Some((
                t.get::<bool>(1)?.unwrap_or(false),
                t.get::<String>(2)?.unwrap_or_default(),
                t.get::<String>(3)?.unwrap_or_default(),
                t.get::<String>(4)?.unwrap_or_default(),
                t.get::<String>(5)?.unwrap_or_default(),
                t.get::<String>(6)?,
            )))
        })
    })?;
    let Some((active, released_at, prev_by, scope_type, scope_id, tenant_id)) = row else {
        return Err(LcError::hold_not_found(&id));
    };
    if !active {
        return Err(LcError::hold_already_released(&id, &released_at, &prev_by));
    }
    privilege::as_extension_owner(|| {
        crate::guard::with_internal_write(|| {
            Spi::run_with_args(
                "UPDATE lifecycle.legal_holds \
                    SET active = false, released_at = pg_catalog.now(), released_by = $2, \
                        release_reason = $3 \
                  WHERE id = $1::uuid",
                &[id.as_str().into(), released_by.into(), reason.into()],
            )?;
            Ok(())
        })?;
        // Jobs it blocked are runnable again (the runner re-checks).
        crate::spi::exec(
            "UPDATE lifecycle.jobs SET blocked_by_hold = false, blocking_hold_id = NULL, \
                    updated_at = now() WHERE blocking_hold_id = $1::uuid",
            &[id.as_str().into()],
        )?;
        Ok(())
    })?;
    cache::invalidate("legal_holds")?;
    let is_tenant = scope_type == "tenant";
    audit::record(Event {
        event_type: "legal_hold.released",
        actor: Some(released_by),
        subject_type: if is_tenant { None } else { Some(&scope_type) },
        subject_id: if is_tenant { None } else { Some(&scope_id) },
        tenant_id: tenant_id.as_deref(),
        reason,
        details: Some(json_object(&[("hold_id", Some(id.as_str()))])),
        ..Event::default()
    })?;
    Ok(())
}

/// The text form of column `attnum` of `tuple`, or None for NULL.
///
/// # Safety
/// `tuple` and `tupdesc` must describe the same valid row.
unsafe fn column_text(
    tuple: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
    attnum: i16,
    type_oid: pg_sys::Oid,
) -> Option<String> {
    let mut isnull = false;
    let datum = pg_sys::heap_getattr(tuple, attnum as i32, tupdesc, &mut isnull);
    if isnull {
        return None;
    }
    let mut out = pg_sys::Oid::INVALID;
    let mut varlena = false;
    pg_sys::getTypeOutputInfo(type_oid, &mut out, &mut varlena);
    let cstr = pg_sys::OidOutputFunctionCall(out, datum);
    let s = std::ffi::CStr::from_ptr(cstr)
        .to_string_lossy()
        .into_owned();
    pg_sys::pfree(cstr.cast());
    Some(s)
}

/// The hold covering this row, if any. Allocates only the key's text and,
/// when a hold matches, a copy of it.
///
/// # Safety
/// `tuple` must be a valid row of `guard.relid` described by `tupdesc`.
pub unsafe fn hold_covering_row(
    guard: &TableGuard,
    tuple: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
) -> LcResult<Option<Hold>> {
    let holds = cache::current_holds()?;
    let now = pg_sys::GetCurrentTimestamp();
    let mut tenant_value: Option<Option<String>> = None;
    for scope in &guard.scopes {
        if !holds.any_in_force(&scope.scope_type, now) {
            continue;
        }
        let Some(value) = column_text(tuple, tupdesc, scope.attnum, scope.type_oid) else {
            continue;
        };
        for h in holds.matching(&scope.scope_type, &value) {
            if !h.in_force_at(now) {
                continue;
            }
            let tenant_ok = match (&h.tenant_id, &guard.tenant) {
                (None, _) | (_, None) => true,
                (Some(t), Some(tc)) => {
                    let tv = tenant_value
                        .get_or_insert_with(|| column_text(tuple, tupdesc, tc.attnum, tc.type_oid));
                    tv.as_deref() == Some(t.as_str())
                }
            };
            if tenant_ok {
                return Ok(Some(h.clone()));
            }
        }
    }
    Ok(None)
}

/// The error for a row the hold covers.
pub fn row_refusal(op: &str, guard: &TableGuard, h: &Hold) -> LcError {
    LcError::held_row_modification(op, &guard.name)
        .detail(format!(
            "Legal hold {} ({}) placed by {}: {}",
            h.id,
            h.describe_scope(),
            h.created_by,
            h.reason
        ))
        .hint(release_hint(h))
}

pub fn release_hint(h: &Hold) -> String {
    match h.expires_at {
        Some(_) => "Wait until the hold expires, or release it with lifecycle.release_hold() once it is no longer required.".into(),
        None => "Release the hold with lifecycle.release_hold() once it is no longer required.".into(),
    }
}

/// The first hold in force that covers at least one row of `relation`
/// (scanned without descending into partitions; each partition has its own
/// guard). `scopes` are (scope type, column) pairs; `tenant_column` is the
/// column mapped to the tenant scope.
pub fn hold_covering_any_row(
    relation: &str,
    scopes: &[(String, String)],
    tenant_column: Option<&str>,
) -> LcResult<Option<Hold>> {
    for (scope_type, column) in scopes {
        for h in cache::holds_for(scope_type)? {
            let tenant_clause = match (&h.tenant_id, tenant_column) {
                (Some(_), Some(tc)) => format!(" AND {}::text = $2", quote_ident(tc)),
                _ => String::new(),
            };
            let sql = format!(
                "SELECT EXISTS (SELECT 1 FROM ONLY {relation} WHERE {}::text = $1{tenant_clause})",
                quote_ident(column)
            );
            let found = privilege::as_extension_owner(|| {
                Ok(crate::spi::one::<bool>(
                    &sql,
                    &[h.scope_id.as_str().into(), h.tenant_id.as_deref().into()],
                )?
                .unwrap_or(false))
            })?;
            if found {
                return Ok(Some(h));
            }
        }
    }
    Ok(None)
}

/// The 16 bytes of a uuid in its text form (with or without hyphens).
pub fn uuid_bytes(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|b| *b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (k, pair) in hex.chunks(2).enumerate() {
        out[k] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

pub fn quote_ident(s: &str) -> String {
    pgrx::spi::quote_identifier(s)
}
