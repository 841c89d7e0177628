//! Legal holds: placing, releasing, and deciding whether a row or a table
//! is covered by one.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::audit::{self, Event};
use crate::cache::{self, Hold, ScopeColumn, TableGuard};
use crate::error::{LcError, LcResult};
use crate::keys;
use crate::privilege;
use lifecycle_core::events;

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
    let tenant_id = match h.tenant_id {
        Some(t) if t.trim().is_empty() => {
            return Err(LcError::invalid_parameter(
                "parameter \"tenant_id\" of lifecycle.place_hold() must not be empty",
            )
            .hint("Pass NULL to hold the scope in every tenant."))
        }
        other => other,
    };
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
    let known = cache::scope_types()?;
    if !known.iter().any(|k| k == scope_type) {
        return Err(LcError::unknown_scope_type(scope_type, &known));
    }
    // Ids as their key columns' types read them: '042' and '42' are one
    // bigint, an upper-case uuid is the uuid.
    let scope_id = normalise_id(scope_type, scope_id, "scope_id")?;
    let mut tenant_id = tenant_id
        .map(|t| normalise_id("tenant", t, "tenant_id"))
        .transpose()?;
    let scope_id = scope_id.as_str();
    if scope_type == "tenant" {
        if let Some(t) = &tenant_id {
            if t != scope_id {
                return Err(LcError::invalid_parameter(
                    "a tenant hold must name the same tenant in scope_id and tenant_id",
                )
                .detail(format!("scope_id is \"{scope_id}\", tenant_id is \"{t}\"."))
                .hint("Pass tenant_id => NULL or the same value as scope_id."));
            }
        }
        tenant_id = Some(scope_id.to_string());
    }
    let tenant_id = tenant_id.as_deref();

    // Serialize against writers on every relation the scope reaches.
    let relations = cache::relations_with_scope(scope_type)?;
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
        event_type: events::LEGAL_HOLD_PLACED,
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

/// `id` of `scope_type` in the form its key columns' type prints it. The
/// id must be a valid value of the column that defines the scope (the
/// subject table's id column, the tenant table's), or, for a scope with no
/// such table, of at least one column mapped to it; otherwise no row could
/// ever match and the hold would protect nothing, so it is refused.
fn normalise_id(scope_type: &str, id: &str, param: &str) -> LcResult<String> {
    match scope_id(scope_type, id)? {
        ScopeId::Canonical(c) => Ok(c),
        ScopeId::Unmapped => Ok(id.to_string()),
        ScopeId::Invalid { column, type_oid } => {
            let type_name = crate::namespace::display_type(type_oid)?;
            Err(LcError::invalid_text_representation(format!(
                "invalid {param} \"{id}\" for {scope_type}: not a value of type {type_name}"
            ))
            .detail(format!(
                "{column} holds the {scope_type} ids, and no row can have this one, so the hold would protect nothing."
            ))
            .hint(format!("Pass the id as {column} holds it.")))
        }
    }
}

/// `id` of `scope_type` as its key column prints it, or as given when it
/// cannot be a value of it (then it names no row: the caller says so).
pub fn canonical_id(scope_type: &str, id: &str) -> LcResult<String> {
    Ok(match scope_id(scope_type, id)? {
        ScopeId::Canonical(c) => c,
        _ => id.to_string(),
    })
}

enum ScopeId {
    Canonical(String),
    /// No column maps the scope.
    Unmapped,
    /// Not a value of the column that defines the scope.
    Invalid {
        column: String,
        type_oid: pg_sys::Oid,
    },
}

fn scope_id(scope_type: &str, id: &str) -> LcResult<ScopeId> {
    // Key columns of the scope: the defining column first, then the others
    // in relation order.
    let columns: Vec<(String, pg_sys::Oid)> = privilege::as_extension_owner(|| {
        Spi::connect(|client| {
            let mut out = Vec::new();
            for row in crate::spi::select(client,
                "SELECT k.relation::text OPERATOR(pg_catalog.||) '.' OPERATOR(pg_catalog.||) \
                        pg_catalog.quote_ident(k.column_name), a.atttypid \
                   FROM (SELECT relation, id_column AS column_name, 0 AS rank \
                           FROM lifecycle.subject_tables WHERE subject_type OPERATOR(pg_catalog.=) $1 \
                         UNION ALL \
                         SELECT relation, id_column, 0 FROM lifecycle.tenant_tables \
                          WHERE $1 OPERATOR(pg_catalog.=) 'tenant' \
                         UNION ALL \
                         SELECT relation, column_name, 1 FROM lifecycle.scope_columns \
                          WHERE scope_type OPERATOR(pg_catalog.=) $1) k \
                   JOIN pg_catalog.pg_attribute a \
                     ON a.attrelid OPERATOR(pg_catalog.=) k.relation \
                    AND a.attname OPERATOR(pg_catalog.=) k.column_name AND NOT a.attisdropped \
                  ORDER BY k.rank, k.relation::pg_catalog.oid, k.column_name",
                None,
                &[scope_type.into()],
            )? {
                if let (Some(c), Some(t)) = (row.get::<String>(1)?, row.get::<pg_sys::Oid>(2)?) {
                    out.push((c, t));
                }
            }
            Ok(out)
        })
    })?;
    let defining = privilege::as_extension_owner(|| {
        Ok(crate::spi::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM lifecycle.subject_tables WHERE subject_type OPERATOR(pg_catalog.=) $1) \
                 OR ($1 OPERATOR(pg_catalog.=) 'tenant' AND EXISTS (SELECT 1 FROM lifecycle.tenant_tables))",
            &[scope_type.into()],
        )?
        .unwrap_or(false))
    })?;
    let candidates = if defining {
        &columns[..columns.len().min(1)]
    } else {
        &columns[..]
    };
    for (_, type_oid) in candidates {
        if let Some(c) = keys::canonical(*type_oid, id)? {
            return Ok(ScopeId::Canonical(c));
        }
    }
    Ok(match columns.into_iter().next() {
        // Nothing maps the scope (a tenant id with no tenant table).
        None => ScopeId::Unmapped,
        Some((column, type_oid)) => ScopeId::Invalid { column, type_oid },
    })
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
        crate::privilege::with_internal_write(|| {
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
        event_type: events::LEGAL_HOLD_RELEASED,
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

/// Column `attnum` of `tuple`, or None for NULL.
///
/// # Safety
/// `tuple` and `tupdesc` must describe the same valid row.
unsafe fn column_value(
    tuple: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
    attnum: i16,
) -> Option<pg_sys::Datum> {
    let mut isnull = false;
    let datum = pg_sys::heap_getattr(tuple, attnum as i32, tupdesc, &mut isnull);
    (!isnull).then_some(datum)
}

/// Whether the row's value of `column` equals `id` in the column's type.
///
/// # Safety
/// `tuple` and `tupdesc` must describe the same valid row.
unsafe fn row_matches(
    tuple: *mut pg_sys::HeapTupleData,
    tupdesc: pg_sys::TupleDesc,
    column: &ScopeColumn,
    id: &str,
) -> LcResult<bool> {
    let Some(v) = column_value(tuple, tupdesc, column.attnum) else {
        return Ok(false);
    };
    match &column.via {
        None => keys::equals(column.type_oid, column.collation, v, id),
        // The row's scope id is its parent's: look the parent up.
        Some(via) => {
            let Some(id) = keys::canonical(via.parent_type, id)? else {
                return Ok(false);
            };
            let key = keys::output(column.type_oid, v);
            privilege::as_extension_owner(|| {
                Ok(crate::spi::one::<bool>(
                    &via.match_sql,
                    &[key.as_str().into(), id.as_str().into()],
                )?
                .unwrap_or(false))
            })
        }
    }
}

/// The hold covering this row, if any: for some scope column, the row's
/// value equals the hold's scope id in the column's own type, and the hold
/// names no tenant, the table has none, or the row's tenant equals it.
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
    for scope in &guard.scopes {
        for h in holds.in_force(&scope.scope_type, now) {
            if !row_matches(tuple, tupdesc, scope, &h.scope_id)? {
                continue;
            }
            let tenant_ok = match (&h.tenant_id, &guard.tenant) {
                (None, _) | (_, None) => true,
                (Some(t), Some(tc)) => row_matches(tuple, tupdesc, tc, t)?,
            };
            if tenant_ok {
                return Ok(Some(h.clone()));
            }
        }
    }
    Ok(None)
}

/// "Legal hold <id> (<scope>) placed by <who>: <reason>": the DETAIL of a
/// refusal because of `h`.
pub fn hold_detail(h: &Hold) -> String {
    format!(
        "Legal hold {} ({}) placed by {}: {}",
        h.id,
        h.describe_scope(),
        h.created_by,
        h.reason
    )
}

/// The error for a row the hold covers.
pub fn row_refusal(op: &str, guard: &TableGuard, h: &Hold) -> LcError {
    LcError::held_row_modification(op, &guard.name)
        .detail(hold_detail(h))
        .hint(release_hint(h))
        .blocked_by(&h.id)
}

pub fn release_hint(h: &Hold) -> String {
    match h.expires_at {
        Some(_) => "Wait until the hold expires, or release it with lifecycle.release_hold() once it is no longer required.".into(),
        None => "Release the hold with lifecycle.release_hold() once it is no longer required.".into(),
    }
}

/// A scope column of a relation as the scans below need it.
struct ScannedColumn {
    scope_type: String,
    /// A condition on the row aliased `c` that holds when its scope id is
    /// `$1` (text); `{}` stands for the parameter number.
    matches: String,
    /// Base type of the scope ids (the parent's column for a path).
    type_oid: pg_sys::Oid,
}

fn scanned_columns(relid: pg_sys::Oid, registered: pg_sys::Oid) -> LcResult<Vec<ScannedColumn>> {
    let rows = privilege::as_extension_owner(|| {
        crate::spi::json_rows(
            "SELECT pg_catalog.jsonb_build_array(sc.scope_type, sc.column_name::text, \
                        sc.via_parent::pg_catalog.oid::pg_catalog.int8, sc.via_key::text, sc.via_column::text, \
                        (SELECT a.atttypid::pg_catalog.int8 FROM pg_catalog.pg_attribute a \
                          WHERE a.attrelid OPERATOR(pg_catalog.=) $2 \
                            AND a.attname OPERATOR(pg_catalog.=) sc.column_name AND NOT a.attisdropped)) \
               FROM lifecycle.scope_columns sc WHERE sc.relation OPERATOR(pg_catalog.=) $1 \
              ORDER BY sc.scope_type OPERATOR(pg_catalog.=) 'tenant', sc.scope_type, sc.column_name",
            &[registered.into(), relid.into()],
        )
    })?;
    let mut out = Vec::new();
    for v in rows {
        let Some(type_oid) = v[5].as_u64() else {
            continue;
        };
        let column = crate::namespace::quote_ident(v[1].as_str().unwrap_or_default());
        let scope_type = v[0].as_str().unwrap_or_default().to_string();
        match (v[2].as_u64(), v[3].as_str(), v[4].as_str()) {
            (Some(parent), Some(key), Some(parent_column)) => {
                let via = cache::via(pg_sys::Oid::from(parent as u32), key, parent_column)?;
                out.push(ScannedColumn {
                    scope_type,
                    matches: format!("c.{column} {}", via.rows_sql),
                    type_oid: via.parent_type,
                });
            }
            _ => {
                let base = crate::namespace::base_type(pg_sys::Oid::from(type_oid as u32));
                out.push(ScannedColumn {
                    scope_type,
                    matches: format!(
                        "c.{column} {} $1::{}",
                        crate::namespace::equality_operator(base)?,
                        crate::namespace::type_name(base)?
                    ),
                    type_oid: base,
                });
            }
        }
    }
    Ok(out)
}

/// The first hold in force that covers at least one row of `relid` itself
/// (scanned without descending into partitions), with the scope columns the
/// data map gives `registered` (the relation or its registered ancestor).
/// Keys compare in their columns' own types; a scope reached through a
/// parent compares the parent's value.
pub fn hold_covering_any_row(
    relid: pg_sys::Oid,
    registered: pg_sys::Oid,
) -> LcResult<Option<Hold>> {
    let columns = scanned_columns(relid, registered)?;
    let tenant = columns.iter().position(|c| c.scope_type == "tenant");
    let relation =
        crate::spi::one::<String>("SELECT $1::pg_catalog.regclass::text", &[relid.into()])?
            .unwrap_or_default();
    for c in &columns {
        for h in cache::holds_for(&c.scope_type)? {
            let Some(id) = keys::canonical(c.type_oid, &h.scope_id)? else {
                continue;
            };
            let (tenant_clause, tenant_id) = match (&h.tenant_id, tenant) {
                (Some(t), Some(i)) => {
                    let tc = &columns[i];
                    let Some(t) = keys::canonical(tc.type_oid, t)? else {
                        continue;
                    };
                    (format!(" AND {}", tc.matches.replace("$1", "$2")), Some(t))
                }
                _ => (String::new(), None),
            };
            let sql = format!(
                "SELECT EXISTS (SELECT 1 FROM ONLY {relation} c WHERE {}{tenant_clause})",
                c.matches
            );
            let found = privilege::as_extension_owner(|| {
                Ok(crate::spi::one::<bool>(
                    &sql,
                    &[id.as_str().into(), tenant_id.as_deref().into()],
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

/// Holds in force that cover at least one row of `relid` (and partitions
/// below it) among the rows matching `rows`, a condition over the table's
/// bare columns with the parameters `args` makes (`$1`..`$n`; the hold's
/// id and tenant follow them).
pub fn holds_covering_rows<'a>(
    relid: pg_sys::Oid,
    relation: &str,
    rows: &str,
    args: impl Fn() -> Vec<pgrx::datum::DatumWithOid<'a>>,
) -> LcResult<Vec<Hold>> {
    let registered = crate::spi::one::<pg_sys::Oid>(cache::REGISTERED_ROOT_SQL, &[relid.into()])?
        .unwrap_or(relid);
    let columns = scanned_columns(relid, registered)?;
    let tenant = columns.iter().position(|c| c.scope_type == "tenant");
    let mut out: Vec<Hold> = Vec::new();
    for c in &columns {
        for h in cache::holds_for(&c.scope_type)? {
            let Some(id) = keys::canonical(c.type_oid, &h.scope_id)? else {
                continue;
            };
            // The hold's id and tenant follow the step's own parameters.
            let mut all = args();
            let id_param = format!("${}", all.len() + 1);
            let tenant_param = format!("${}", all.len() + 2);
            let (tenant_clause, tenant_id) = match (&h.tenant_id, tenant) {
                (Some(t), Some(i)) => {
                    let tc = &columns[i];
                    let Some(t) = keys::canonical(tc.type_oid, t)? else {
                        continue;
                    };
                    (
                        format!(" AND {}", tc.matches.replace("$1", &tenant_param)),
                        Some(t),
                    )
                }
                _ => (String::new(), None),
            };
            let sql = format!(
                "SELECT EXISTS (SELECT 1 FROM {relation} c WHERE ({rows}) AND {}{tenant_clause})",
                c.matches.replace("$1", &id_param)
            );
            all.push(id.as_str().into());
            all.push(tenant_id.as_deref().into());
            let found = privilege::as_extension_owner(|| {
                Ok(crate::spi::one::<bool>(&sql, &all)?.unwrap_or(false))
            })?;
            if found && !out.iter().any(|o| o.id == h.id) {
                out.push(h);
            }
        }
    }
    Ok(out)
}

/// The first hold in force covering a row of `relid` or of a partition
/// below it, with the scope columns of `registered`: (the name of the
/// relation holding the row, the hold).
pub fn hold_covering_tree(
    relid: pg_sys::Oid,
    registered: pg_sys::Oid,
) -> LcResult<Option<(String, Hold)>> {
    for (part, name) in cache::partitions(relid)? {
        if let Some(h) = hold_covering_any_row(part, registered)? {
            return Ok(Some((name, h)));
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
