//! Exports, as the database sees them: which files a bundle holds and the
//! rows of each ([`lifecycle_core::export`] decides, from the data map),
//! cursors the control plane streams the rows from, and the bundle's life
//! after it is built: stored, downloaded, expired.
//!
//! The control plane builds the archive; it never builds its own table list
//! and never reads an application table itself: `open_export` opens the
//! cursor as the table's owner, and `fetch_export` reads it as that owner
//! too, so that code of the owner the rows' conditions may run (an
//! operator, a type's functions) never runs with the caller's rights. Both
//! run with `row_security` off, and a file whose table's row-level security
//! would hide rows from its owner is refused before anything is read
//! (`LC044`): an export never leaves rows out without a word.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString};

use pgrx::pg_sys;
use serde_json::{json, Value};

use crate::audit::{self, Event};
use crate::erasure::{self, Target};
use crate::error::{LcError, LcResult};
use crate::privilege;
use crate::row_security;
use crate::spi;
use lifecycle_core::events;
use lifecycle_core::export::{self as plan, ColumnExport, ColumnExports, ExportFile};
use lifecycle_core::plan::PlanError;

/// Cursors `open_export` opened in this backend: name -> (the role that
/// reads it, its query, the local transaction it belongs to).
struct Opened {
    /// The table's owner; `None`: the extension's owner (the audit log).
    role: Option<pg_sys::Oid>,
    query: String,
    lxid: u32,
}

thread_local! {
    static OPENED: RefCell<HashMap<String, Opened>> = RefCell::new(HashMap::new());
}

/// The local id of the current transaction.
fn local_xact() -> u32 {
    // SAFETY: MyProc is set for every backend that runs SQL.
    unsafe { (*pg_sys::MyProc).lxid }
}

/// The longest entitlement a bundle gets.
const ENTITLEMENT: &str = "7 days";

/// Labels and exclusions of every column that has one.
fn settings() -> LcResult<ColumnExports> {
    let rows = spi::json_rows(
        "SELECT pg_catalog.jsonb_build_object('relation', relation::pg_catalog.oid::pg_catalog.int8, \
                'column', column_name::text, 'label', label, 'excluded', excluded) \
           FROM lifecycle.column_exports",
        &[],
    )?;
    let mut out = ColumnExports::new();
    for r in rows {
        let (Some(oid), Some(col)) = (r["relation"].as_u64(), r["column"].as_str()) else {
            continue;
        };
        out.entry(oid as u32).or_default().insert(
            col.to_string(),
            ColumnExport {
                label: r["label"].as_str().map(str::to_string),
                excluded: r["excluded"].as_str().map(str::to_string),
            },
        );
    }
    Ok(out)
}

/// The files of the export of a target, and the target's type as the audit
/// log names it. The target must exist. Refused (`LC044`) before any table
/// is read when row-level security would hide rows of one of the files'
/// tables from the role the export reads it as (see
/// [`crate::row_security`]).
pub fn contents(target_type: &str, target_id: &str) -> LcResult<(String, Vec<ExportFile>)> {
    row_security::during("the export", || {
        let cat = erasure::load_map()?;
        let target = erasure::resolve_target(&cat, target_type)?;
        let kind = match &target {
            Target::Subject { subject_type, .. } => subject_type.clone(),
            Target::Tenant { .. } => "tenant".to_string(),
        };
        let files = plan::contents(&cat, &kind, &settings()?).map_err(|e| match e {
            PlanError::UnknownTarget(t) => LcError::invalid_parameter(format!(
                "no subject table is registered for subject type \"{t}\""
            )),
            PlanError::NoTenantTable => LcError::invalid_parameter("no tenant table is registered"),
            PlanError::TooDeep(t) => LcError::invalid_parameter(format!("path too deep at {t}")),
        })?;
        row_security::require_statements(
            &cat,
            files
                .iter()
                .filter_map(|f| Some((f.table?, Cow::Borrowed(f.rows.as_str())))),
        )?;
        if !erasure::target_exists(&target, target_id)? {
            return Err(LcError::target_not_found(
                target_type,
                target_id,
                &target.table().name,
            ));
        }
        Ok((kind, files))
    })
}

/// One row of `lifecycle.export_contents()`.
pub type ContentRow = (
    i32,
    String,
    String,
    String,
    String,
    Option<String>,
    pgrx::JsonB,
    pgrx::JsonB,
    Vec<String>,
);

pub fn content_rows(target_type: &str, target_id: &str) -> LcResult<Vec<ContentRow>> {
    let (_, files) = contents(target_type, target_id)?;
    Ok(files
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let columns = json!(f
                .columns
                .iter()
                .map(|c| json!({ "name": c.name, "label": c.label, "type": c.type_name }))
                .collect::<Vec<_>>());
            let excluded = json!(f
                .excluded
                .iter()
                .map(|c| json!({ "name": c.name, "label": c.label, "reason": c.reason }))
                .collect::<Vec<_>>());
            (
                i as i32 + 1,
                f.name,
                f.kind.as_str().to_string(),
                f.label,
                f.description,
                f.retention,
                pgrx::JsonB(columns),
                pgrx::JsonB(excluded),
                f.storage_columns,
            )
        })
        .collect())
}

/// Open a cursor named `cursor` (or a name PostgreSQL picks) on the rows of
/// the export file `name`; returns the cursor's name. Each row is one `json`
/// object keyed by column name.
pub fn open(
    target_type: &str,
    target_id: &str,
    name: &str,
    cursor: Option<&str>,
) -> LcResult<String> {
    let (kind, files) = contents(target_type, target_id)?;
    let Some(file) = files.iter().find(|f| f.name == name) else {
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        return Err(LcError::invalid_parameter(format!(
            "the export of {target_type} \"{target_id}\" has no file \"{name}\""
        ))
        .hint(format!("Use one of: {}.", names.join(", "))));
    };
    if cursor.is_some_and(|c| c.is_empty()) {
        return Err(LcError::invalid_parameter(
            "parameter \"cursor\" of lifecycle.open_export() must not be empty",
        ));
    }
    let sql = file.query();
    let role = match file.table {
        Some(oid) => Some(privilege::table_owner(pg_sys::Oid::from(oid))?),
        None => None,
    };
    let name = as_reader(role, || open_cursor(cursor, &sql, target_id, &kind))?;
    OPENED.with(|o| {
        let mut o = o.borrow_mut();
        let now = local_xact();
        o.retain(|_, c| c.lxid == now);
        o.insert(
            name.clone(),
            Opened {
                role,
                query: sql,
                lxid: now,
            },
        );
    });
    Ok(name)
}

/// Up to `max_rows` next rows of a cursor `open_export` opened in this
/// transaction, read as the role that opened it (the table's owner); an
/// empty result once it is exhausted.
pub fn fetch(cursor: &str, max_rows: i32) -> LcResult<Vec<String>> {
    if !(1..=100_000).contains(&max_rows) {
        return Err(LcError::invalid_parameter(format!(
            "max_rows must be between 1 and 100000, not {max_rows}"
        ))
        .hint("Fetch a few hundred to a few thousand rows at a time."));
    }
    let not_ours = || {
        LcError::invalid_parameter(format!(
            "cursor \"{cursor}\" was not opened by lifecycle.open_export() in this transaction"
        ))
        .hint("Open it with lifecycle.open_export() first, in the same transaction.")
    };
    let (role, query) = OPENED
        .with(|o| {
            o.borrow()
                .get(cursor)
                .filter(|c| c.lxid == local_xact())
                .map(|c| (c.role, c.query.clone()))
        })
        .ok_or_else(not_ours)?;
    let name = CString::new(cursor).map_err(|_| not_ours())?;
    pgrx::spi::Spi::connect(|_client| {
        // SAFETY: SPI is connected. The portal is looked up by name and
        // checked to run the very query open_export opened (a cursor closed
        // and declared again under the same name is refused), then fetched
        // as that cursor's role; each row's one column is read as text by
        // SPI_getvalue (NULL pointers for NULL values) and the tuple table
        // freed before SPI_finish.
        unsafe {
            let portal = pg_sys::SPI_cursor_find(name.as_ptr());
            if portal.is_null() {
                return Err(not_ours());
            }
            let source = (*portal).sourceText;
            if source.is_null() || CStr::from_ptr(source).to_bytes() != query.as_bytes() {
                return Err(not_ours());
            }
            as_reader(role, || {
                pg_sys::SPI_cursor_fetch(portal, true, max_rows as std::ffi::c_long);
                Ok(())
            })?;
            let table = pg_sys::SPI_tuptable;
            if table.is_null() {
                return Ok(Vec::new());
            }
            let n = pg_sys::SPI_processed as usize;
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let tuple = *(*table).vals.add(i);
                let value = pg_sys::SPI_getvalue(tuple, (*table).tupdesc, 1);
                if value.is_null() {
                    continue;
                }
                out.push(CStr::from_ptr(value).to_string_lossy().into_owned());
                pg_sys::pfree(value.cast());
            }
            pg_sys::SPI_freetuptable(table);
            Ok(out)
        }
    })
}

/// Run `f` as the table's owner, or (the audit log) as the extension's
/// owner, which every caller of this module already acts as.
fn as_reader<R>(role: Option<pg_sys::Oid>, f: impl FnOnce() -> LcResult<R>) -> LcResult<R> {
    match role {
        Some(owner) => privilege::as_role(owner, f),
        None => privilege::as_extension_owner(f),
    }
}

/// `SPI_cursor_open_with_args` with a name: the portal outlives this call
/// (until the caller closes it or the transaction ends).
fn open_cursor(name: Option<&str>, sql: &str, id: &str, kind: &str) -> LcResult<String> {
    let name = name
        .map(CString::new)
        .transpose()
        .map_err(|_| LcError::invalid_parameter("a cursor name cannot contain NUL"))?;
    let sql = CString::new(sql).map_err(|_| LcError::internal("query with NUL"))?;
    let id = CString::new(id).map_err(|_| LcError::invalid_parameter("id with NUL"))?;
    let kind = CString::new(kind).map_err(|_| LcError::internal("type with NUL"))?;
    pgrx::spi::Spi::connect(|_client| {
        // SAFETY: SPI is connected; the arguments are two text datums made
        // here (cstring_to_text copies into the current memory context, and
        // SPI copies parameters into the portal), with matching type oids
        // and a "not null" flag each; the C strings outlive the call.
        unsafe {
            let mut types = [pg_sys::TEXTOID, pg_sys::TEXTOID];
            let mut values = [
                pg_sys::Datum::from(pg_sys::cstring_to_text(id.as_ptr())),
                pg_sys::Datum::from(pg_sys::cstring_to_text(kind.as_ptr())),
            ];
            let nulls = [b' ' as std::ffi::c_char, b' ' as std::ffi::c_char];
            let portal = pg_sys::SPI_cursor_open_with_args(
                name.as_ref().map_or(std::ptr::null(), |n| n.as_ptr()),
                sql.as_ptr(),
                2,
                types.as_mut_ptr(),
                values.as_mut_ptr(),
                nulls.as_ptr(),
                false,
                pg_sys::CURSOR_OPT_NO_SCROLL as i32,
            );
            if portal.is_null() {
                return Err(LcError::internal("the export cursor could not be opened"));
            }
            Ok(CStr::from_ptr((*portal).name)
                .to_string_lossy()
                .into_owned())
        }
    })
}

/// A completed export's result must say where its bundle is.
pub fn check_bundle(result: &Value) -> LcResult<()> {
    let b = &result["bundle"];
    let key_ok = b["key"].as_str().is_some_and(|k| !k.trim().is_empty());
    let size_ok = b["size"].as_i64().is_some_and(|s| s >= 0);
    if !key_ok || !size_ok {
        return Err(
            LcError::invalid_parameter("the result of an export job must name its bundle")
                .detail("result.bundle.key (text) and result.bundle.size (bytes) are required.")
                .hint(
                    "Pass {\"bundle\": {\"key\": ..., \"size\": ...}} to lifecycle.complete_job().",
                ),
        );
    }
    if let Some(e) = result.get("expires_at").filter(|v| !v.is_null()) {
        let later = e.as_str().is_some_and(|s| {
            spi::one::<bool>(
                "SELECT $1::timestamptz OPERATOR(pg_catalog.>) pg_catalog.now()",
                &[s.into()],
            )
            .ok()
            .flatten()
            .unwrap_or(false)
        });
        if !later {
            return Err(LcError::invalid_parameter(
                "result.expires_at of an export job must be a time after now",
            )
            .detail("The entitlement to download the bundle starts when the job completes.")
            .hint(
                "Leave expires_at out (7 days), or give an ISO 8601 time within the next 7 days.",
            ));
        }
    }
    Ok(())
}

/// Record the bundle of a completed export (its entitlement: at most
/// seven days).
pub fn store_bundle(job_id: &str, result: &Value) -> LcResult<()> {
    let b = &result["bundle"];
    spi::exec(
        &format!(
            "INSERT INTO lifecycle.export_bundles \
                    (job_id, object_key, size_bytes, sha256, snapshot_at, expires_at) \
             VALUES ($1::uuid, $2, $3, $4, $5::timestamptz, \
                     LEAST(COALESCE($6::timestamptz, 'infinity'), \
                           pg_catalog.now() OPERATOR(pg_catalog.+) interval '{ENTITLEMENT}'))"
        ),
        &[
            job_id.into(),
            b["key"].as_str().into(),
            b["size"].as_i64().into(),
            b["sha256"].as_str().into(),
            result["snapshot_at"].as_str().into(),
            result["expires_at"].as_str().into(),
        ],
    )?;
    Ok(())
}

/// The bundle of an export job as its state allows: the job must be an
/// export of `target_type`/`target_id` (any other: not found), completed,
/// and its entitlement not ended.
fn ready_bundle(job_id: &str, target_type: &str, target_id: &str) -> LcResult<(Value, Value)> {
    // The id as the key column prints it, as the job stores it: an
    // upper-case uuid and its canonical spelling are one subject.
    let target_id = crate::holds::canonical_id(target_type, target_id)?;
    let target_id = target_id.as_str();
    let job = spi::json(
        "SELECT pg_catalog.to_jsonb(j) FROM lifecycle.jobs j \
          WHERE j.id OPERATOR(pg_catalog.=) $1::uuid AND j.job_type OPERATOR(pg_catalog.=) 'export' \
            AND j.target_type OPERATOR(pg_catalog.=) $2 AND j.target_id OPERATOR(pg_catalog.=) $3",
        &[job_id.into(), target_type.into(), target_id.into()],
    )?
    .ok_or_else(|| LcError::job_not_found(job_id))?;
    let status = job["status"].as_str().unwrap_or_default();
    let bundle = spi::json(
        "SELECT pg_catalog.to_jsonb(b) OPERATOR(pg_catalog.||) pg_catalog.jsonb_build_object( \
                'due', b.expires_at OPERATOR(pg_catalog.<=) pg_catalog.now()) \
           FROM lifecycle.export_bundles b WHERE b.job_id OPERATOR(pg_catalog.=) $1::uuid \
            FOR UPDATE",
        &[job_id.into()],
    )?;
    let Some(bundle) = bundle.filter(|_| status == "completed") else {
        return Err(
            LcError::job_not_in_state(job_id, "download the bundle of", status)
                .detail(match status {
                    "completed" => "The job completed without a bundle.".to_string(),
                    s => format!(
                        "Only a completed export has a bundle to download; this one is {s}."
                    ),
                })
                .hint(match status {
                    "pending" | "approved" | "processing" => {
                        "The bundle is being built; try again when the export is ready."
                    }
                    _ => "Request a new export.",
                }),
        );
    };
    if !bundle["expired_at"].is_null() || bundle["due"].as_bool() == Some(true) {
        let until = bundle["expires_at"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        return Err(LcError::export_expired(job_id, &until));
    }
    Ok((job, bundle))
}

/// A download of an export's bundle by `actor`: checked, counted and
/// audited (`data.export_downloaded`, with IP and user agent). Returns
/// where the bundle is.
pub fn download(
    job_id: &str,
    target_type: &str,
    target_id: &str,
    actor: &str,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> LcResult<Value> {
    let (job, bundle) = ready_bundle(job_id, target_type, target_id)?;
    spi::exec(
        "UPDATE lifecycle.export_bundles \
            SET downloads = downloads OPERATOR(pg_catalog.+) 1, last_downloaded_at = pg_catalog.now() \
          WHERE job_id OPERATOR(pg_catalog.=) $1::uuid",
        &[job_id.into()],
    )?;
    audit::record(Event {
        event_type: events::DATA_EXPORT_DOWNLOADED,
        actor: Some(actor),
        subject_type: job["target_type"].as_str(),
        subject_id: job["target_id"].as_str(),
        tenant_id: job["tenant_id"].as_str(),
        ip,
        user_agent,
        details: Some(json!({
            "job_id": job_id,
            "size_bytes": bundle["size_bytes"],
            "download": bundle["downloads"].as_i64().unwrap_or(0) + 1,
        })),
        ..Default::default()
    })?;
    Ok(json!({
        "job_id": job_id,
        "key": bundle["object_key"],
        "size_bytes": bundle["size_bytes"],
        "sha256": bundle["sha256"],
        "expires_at": bundle["expires_at"],
    }))
}

/// The bundle of an export is deleted from storage: its entitlement is
/// over (`data.export_expired`). Returns false when it already was.
pub fn expire(job_id: &str, actor: &str) -> LcResult<bool> {
    let job = spi::json(
        "SELECT pg_catalog.to_jsonb(j) FROM lifecycle.jobs j \
          WHERE j.id OPERATOR(pg_catalog.=) $1::uuid",
        &[job_id.into()],
    )?
    .ok_or_else(|| LcError::job_not_found(job_id))?;
    let expired = spi::one::<bool>(
        "WITH e AS (UPDATE lifecycle.export_bundles SET expired_at = pg_catalog.now() \
                     WHERE job_id OPERATOR(pg_catalog.=) $1::uuid AND expired_at IS NULL \
                    RETURNING 1) \
         SELECT EXISTS (SELECT 1 FROM e)",
        &[job_id.into()],
    )?
    .unwrap_or(false);
    if !expired {
        let known = spi::one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM lifecycle.export_bundles \
                             WHERE job_id OPERATOR(pg_catalog.=) $1::uuid)",
            &[job_id.into()],
        )?
        .unwrap_or(false);
        if !known {
            return Err(LcError::job_not_in_state(
                job_id,
                "expire the bundle of",
                job["status"].as_str().unwrap_or_default(),
            )
            .detail("Only a completed export has a bundle."));
        }
        return Ok(false);
    }
    audit::record(Event {
        event_type: events::DATA_EXPORT_EXPIRED,
        actor: Some(actor),
        subject_type: job["target_type"].as_str(),
        subject_id: job["target_id"].as_str(),
        tenant_id: job["tenant_id"].as_str(),
        details: Some(json!({ "job_id": job_id })),
        ..Default::default()
    })?;
    Ok(true)
}

/// The head of one audit chain: (chain, last id, last hash in hex, events).
pub type ChainHead = (i32, Option<i64>, String, i64);

/// The head of every audit chain.
pub fn chain_heads() -> LcResult<Vec<ChainHead>> {
    let rows = spi::json_rows(
        "SELECT pg_catalog.jsonb_build_object('chain', chain, 'last_id', last_id, \
                'last_hash', pg_catalog.encode(last_hash, 'hex'), 'events', events) \
           FROM lifecycle.audit_chains ORDER BY chain",
        &[],
    )?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r["chain"].as_i64().unwrap_or_default() as i32,
                r["last_id"].as_i64(),
                r["last_hash"].as_str().unwrap_or_default().to_string(),
                r["events"].as_i64().unwrap_or_default(),
            )
        })
        .collect())
}
