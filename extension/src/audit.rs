//! The append-only, tamper-evident audit log.
//!
//! Events are hash-chained. So that concurrent writers do not queue behind
//! one lock for the length of their transactions, the log is made of
//! [`CHAINS`] independent chains: a writer locks the head row of a chain
//! that no other open transaction holds (`FOR UPDATE SKIP LOCKED`), appends
//! to it and releases it at commit. Within a chain, events are in id order
//! and each event's hash covers the previous event's hash; the head row
//! records the last id and hash, so removing the newest event is detected too.
//!
//! Personal data (actor, IP, user agent, reason, details) enters the chain
//! only through a salted digest stored with the event. Redacting an event
//! (when its subject is erased) clears those fields and the salt but keeps
//! the digest, so the chain still verifies while the data is gone and the
//! digest cannot be brute-forced back to it.
//!
//! The hashes themselves (genesis, event hash, personal digest) are
//! [`lifecycle_core::audit`]'s; this module stores and walks the chains.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::cell::RefCell;
use std::rc::Rc;

use pgrx::pg_sys::PgOid;
use pgrx::spi::OwnedPreparedStatement;

use lifecycle_core::audit::{event_hash, genesis, personal_digest};

use crate::error::{LcError, LcResult};
use crate::privilege;

/// Number of independent hash chains.
pub const CHAINS: i32 = 16;

#[derive(Default)]
pub struct Event<'a> {
    pub event_type: &'a str,
    pub actor: Option<&'a str>,
    pub subject_type: Option<&'a str>,
    pub subject_id: Option<&'a str>,
    pub tenant_id: Option<&'a str>,
    pub details: Option<serde_json::Value>,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub reason: Option<&'a str>,
}

fn random_salt() -> LcResult<Vec<u8>> {
    let mut buf = [0u8; 16];
    if !unsafe { pg_sys::pg_strong_random(buf.as_mut_ptr().cast(), buf.len()) } {
        return Err(LcError::internal("could not generate random salt"));
    }
    Ok(buf.to_vec())
}

/// Prepared plans of the append path, kept for the backend's life (the plan
/// cache revalidates them if the tables change).
struct Plans {
    lock_preferred: OwnedPreparedStatement,
    lock_any: OwnedPreparedStatement,
    next: OwnedPreparedStatement,
    insert: OwnedPreparedStatement,
}

thread_local! {
    static PLANS: RefCell<Option<Rc<Plans>>> = const { RefCell::new(None) };
}

fn oid(o: pg_sys::Oid) -> PgOid {
    PgOid::Custom(o)
}

fn plans(client: &pgrx::spi::SpiClient<'_>) -> LcResult<Rc<Plans>> {
    if let Some(p) = PLANS.with(|p| p.borrow().clone()) {
        return Ok(p);
    }
    use pg_sys::{BYTEAOID, INT4OID, INT8OID, TEXTOID, TIMESTAMPTZOID};
    let p = Rc::new(Plans {
        lock_preferred: client
            .prepare_mut(
                "SELECT chain, last_hash FROM lifecycle.audit_chains \
                  WHERE chain = $1 FOR UPDATE SKIP LOCKED",
                &[oid(INT4OID)],
            )?
            .keep(),
        lock_any: client
            .prepare_mut(
                "SELECT chain, last_hash FROM lifecycle.audit_chains \
                  ORDER BY chain FOR UPDATE SKIP LOCKED LIMIT 1",
                &[],
            )?
            .keep(),
        next: client
            .prepare_mut(
                "SELECT pg_catalog.nextval('lifecycle.audit_log_id_seq'), \
                        pg_catalog.statement_timestamp(), $1::jsonb::text, $2::inet::text",
                &[oid(TEXTOID), oid(TEXTOID)],
            )?
            .keep(),
        insert: client
            .prepare_mut(
                "WITH ev AS (\
                   INSERT INTO lifecycle.audit_log \
                     (id, occurred_at, event_type, actor, subject_type, subject_id, tenant_id, \
                      ip, user_agent, reason, details, chain, salt, personal_digest, prev_hash, hash) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8::inet, $9, $10, $11::jsonb, $12, $13, $14, $15, $16)) \
                 UPDATE lifecycle.audit_chains SET last_id = $1, last_hash = $16, events = events + 1 \
                  WHERE chain = $12",
                &[
                    oid(INT8OID),
                    oid(TIMESTAMPTZOID),
                    oid(TEXTOID),
                    oid(TEXTOID),
                    oid(TEXTOID),
                    oid(TEXTOID),
                    oid(TEXTOID),
                    oid(TEXTOID),
                    oid(TEXTOID),
                    oid(TEXTOID),
                    oid(TEXTOID),
                    oid(INT4OID),
                    oid(BYTEAOID),
                    oid(BYTEAOID),
                    oid(BYTEAOID),
                    oid(BYTEAOID),
                ],
            )?
            .keep(),
    });
    PLANS.with(|c| *c.borrow_mut() = Some(p.clone()));
    Ok(p)
}

/// Forget the prepared plans (after an error that may have left them unusable).
fn forget_plans() {
    PLANS.with(|c| *c.borrow_mut() = None);
}

fn chain_row(t: pgrx::spi::SpiTupleTable<'_>) -> LcResult<Option<(i32, Vec<u8>)>> {
    if t.is_empty() {
        return Ok(None);
    }
    let (c, h) = t.first().get_two::<i32, Vec<u8>>()?;
    Ok(c.zip(h))
}

/// Lock the head of a chain no other open transaction holds, creating the
/// chain heads on first use. Returns (chain, last hash).
fn lock_chain(client: &mut pgrx::spi::SpiClient<'_>, plans: &Plans) -> LcResult<(i32, Vec<u8>)> {
    let preferred = unsafe { pg_sys::MyProcPid } % CHAINS;
    for attempt in 0..2 {
        // The backend's own chain first (a primary-key lookup), any free one next.
        let t = client.update(&plans.lock_preferred, None, &[preferred.into()])?;
        if let Some(found) = chain_row(t)? {
            return Ok(found);
        }
        let t = client.update(&plans.lock_any, None, &[])?;
        if let Some(found) = chain_row(t)? {
            return Ok(found);
        }
        if attempt == 0 {
            // Either the heads do not exist yet, or every chain is held by
            // another transaction: make sure they exist, then try again.
            for chain in 0..CHAINS {
                client.update(
                    "INSERT INTO lifecycle.audit_chains (chain, last_hash) VALUES ($1, $2) \
                     ON CONFLICT (chain) DO NOTHING",
                    None,
                    &[chain.into(), genesis(chain).into()],
                )?;
            }
        }
    }
    // All chains are busy: wait for ours.
    let t = client.update(
        "SELECT chain, last_hash FROM lifecycle.audit_chains WHERE chain = $1 FOR UPDATE",
        None,
        &[preferred.into()],
    )?;
    chain_row(t)?.ok_or_else(|| LcError::internal("audit chain head is missing"))
}

/// The name of the setting that carries the client's IP address for the
/// events of a transaction (`set_config('lifecycle.request_ip', ..., true)`).
pub const REQUEST_IP: &str = "lifecycle.request_ip";
/// The name of the setting that carries the client's user agent.
pub const REQUEST_USER_AGENT: &str = "lifecycle.request_user_agent";

/// A setting's value, `None` when it is unset or empty (a setting made
/// local to a transaction is back to empty after it).
fn setting(name: &str) -> Option<String> {
    let name = std::ffi::CString::new(name).ok()?;
    // SAFETY: a NUL-terminated name; with missing_ok the result is NULL
    // for a setting nobody defined, else a string the GUC module owns.
    let value = unsafe { pg_sys::GetConfigOption(name.as_ptr(), true, false) };
    if value.is_null() {
        return None;
    }
    let value = unsafe { std::ffi::CStr::from_ptr(value) }.to_string_lossy();
    let value = value.trim();
    (!value.is_empty()).then(|| value.to_string())
}

/// The client's IP address a caller (the control plane, for one HTTP
/// request) set for the events of its transaction. A value that is not an
/// address is left out with a WARNING: the context is a courtesy, and must
/// never stop the work that records the event.
fn request_ip() -> Option<String> {
    setting(REQUEST_IP).filter(|ip| {
        let valid = ip.parse::<std::net::IpAddr>().is_ok();
        if !valid {
            pgrx::warning!(
                "{REQUEST_IP} is not an IP address, left out of the audit event: {ip:?}"
            );
        }
        valid
    })
}

/// Append an event; returns its id. An event whose caller gives no IP
/// address or user agent takes those of the request context
/// ([`REQUEST_IP`], [`REQUEST_USER_AGENT`]), if set.
pub fn record(e: Event<'_>) -> LcResult<i64> {
    let context_ip = e.ip.is_none().then(request_ip).flatten();
    let context_agent = e
        .user_agent
        .is_none()
        .then(|| setting(REQUEST_USER_AGENT))
        .flatten();
    let e = Event {
        ip: e.ip.or(context_ip.as_deref()),
        user_agent: e.user_agent.or(context_agent.as_deref()),
        ..e
    };
    let details = e
        .details
        .clone()
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    if !details.is_object() {
        return Err(
            LcError::invalid_parameter("details of an audit event must be a JSON object")
                .detail(format!("details is {details}"))
                .hint("Wrap the value in an object, for example jsonb_build_object('value', ...)."),
        );
    }
    let details_json = details.to_string();
    let result = privilege::as_extension_owner(|| {
        Spi::connect_mut(|client| {
            let plans = plans(client)?;
            let (chain, prev) = lock_chain(client, &plans)?;
            let row = client
                .update(
                    &plans.next,
                    None,
                    &[details_json.as_str().into(), e.ip.into()],
                )?
                .first();
            let id: i64 = row.get(1)?.unwrap_or_default();
            let at: TimestampWithTimeZone = row
                .get(2)?
                .ok_or_else(|| LcError::internal("no statement timestamp"))?;
            let details_text: String = row.get(3)?.unwrap_or_default();
            let ip_text: Option<String> = row.get(4)?;
            let salt = random_salt()?;
            let personal = personal_digest(
                &salt,
                e.actor,
                ip_text.as_deref(),
                e.user_agent,
                e.reason,
                &details_text,
            );
            let hash = event_hash(
                &prev,
                id,
                chain,
                at.into_inner(),
                e.event_type,
                e.subject_type,
                e.subject_id,
                e.tenant_id,
                &personal,
            );
            client.update(
                &plans.insert,
                None,
                &[
                    id.into(),
                    at.into(),
                    e.event_type.into(),
                    e.actor.into(),
                    e.subject_type.into(),
                    e.subject_id.into(),
                    e.tenant_id.into(),
                    ip_text.into(),
                    e.user_agent.into(),
                    e.reason.into(),
                    details_text.into(),
                    chain.into(),
                    salt.into(),
                    personal.into(),
                    prev.into(),
                    hash.into(),
                ],
            )?;
            Ok(id)
        })
    });
    if result.is_err() {
        forget_plans();
    }
    result
}

/// The public API's validation around [`record`].
pub fn record_event(e: Event<'_>) -> LcResult<i64> {
    if e.event_type.trim().is_empty() {
        return Err(
            LcError::invalid_parameter("event_type of an audit event must not be empty")
                .hint("Use a dotted name such as 'account.login' or 'data.export_downloaded'."),
        );
    }
    record(e)
}

pub struct Verification {
    pub ok: bool,
    pub checked: i64,
    pub first_bad_id: Option<i64>,
}

/// Walk every chain and check each event's hash and link, and each head.
pub fn verify() -> LcResult<Verification> {
    privilege::as_extension_owner(|| {
        Spi::connect(|client| {
            let mut checked = 0i64;
            let mut first_bad: Option<i64> = None;
            let note_bad = |id: i64, first_bad: &mut Option<i64>| {
                *first_bad = Some(first_bad.map_or(id, |b| b.min(id)));
            };
            let mut heads = std::collections::BTreeMap::new();
            for row in client.select(
                "SELECT chain, last_id, last_hash FROM lifecycle.audit_chains",
                None,
                &[],
            )? {
                let chain: i32 = row.get(1)?.unwrap_or_default();
                heads.insert(chain, (row.get::<i64>(2)?, row.get::<Vec<u8>>(3)?));
            }
            let mut cursor = client.open_cursor(
                "SELECT id, chain, occurred_at, event_type, subject_type, subject_id, tenant_id, \
                        actor, ip::text, user_agent, reason, details::text, salt, \
                        personal_digest, prev_hash, hash \
                   FROM lifecycle.audit_log ORDER BY chain, id",
                &[],
            );
            let mut current_chain: Option<i32> = None;
            let mut prev: Vec<u8> = Vec::new();
            let mut last_seen: Option<(i64, Vec<u8>)> = None;
            let mut finish_chain =
                |chain: i32, last: &Option<(i64, Vec<u8>)>, first_bad: &mut Option<i64>| {
                    let head = heads.remove(&chain);
                    let (head_id, head_hash) = head.unwrap_or((None, None));
                    match (last, head_id) {
                        (Some((id, hash)), Some(hid)) => {
                            if *id != hid || head_hash.as_deref() != Some(hash.as_slice()) {
                                note_bad(hid.max(*id), first_bad);
                            }
                        }
                        (Some((id, _)), None) => note_bad(*id, first_bad),
                        (None, Some(hid)) => note_bad(hid, first_bad),
                        (None, None) => {}
                    }
                };
            loop {
                let batch = cursor.fetch(1000)?;
                if batch.is_empty() {
                    break;
                }
                for row in batch {
                    let id: i64 = row.get(1)?.unwrap_or_default();
                    let chain: i32 = row.get(2)?.unwrap_or_default();
                    if current_chain != Some(chain) {
                        if let Some(c) = current_chain {
                            finish_chain(c, &last_seen, &mut first_bad);
                        }
                        current_chain = Some(chain);
                        prev = genesis(chain);
                    }
                    checked += 1;
                    let at: i64 = row
                        .get::<TimestampWithTimeZone>(3)?
                        .map(|t| t.into_inner())
                        .unwrap_or_default();
                    let event_type: String = row.get(4)?.unwrap_or_default();
                    let subject_type: Option<String> = row.get(5)?;
                    let subject_id: Option<String> = row.get(6)?;
                    let tenant_id: Option<String> = row.get(7)?;
                    let actor: Option<String> = row.get(8)?;
                    let ip: Option<String> = row.get(9)?;
                    let user_agent: Option<String> = row.get(10)?;
                    let reason: Option<String> = row.get(11)?;
                    let details: Option<String> = row.get(12)?;
                    let salt: Option<Vec<u8>> = row.get(13)?;
                    let stored_personal: Vec<u8> = row.get(14)?.unwrap_or_default();
                    let prev_hash: Vec<u8> = row.get(15)?.unwrap_or_default();
                    let hash: Vec<u8> = row.get(16)?.unwrap_or_default();

                    let personal_ok = match salt {
                        Some(salt) => {
                            personal_digest(
                                &salt,
                                actor.as_deref(),
                                ip.as_deref(),
                                user_agent.as_deref(),
                                reason.as_deref(),
                                details.as_deref().unwrap_or("{}"),
                            ) == stored_personal
                        }
                        // Redacted: the personal fields must be gone.
                        None => {
                            actor.is_none()
                                && ip.is_none()
                                && user_agent.is_none()
                                && reason.is_none()
                                && details.as_deref().is_none_or(|d| d == "{}")
                        }
                    };
                    let expected = event_hash(
                        &prev,
                        id,
                        chain,
                        at,
                        &event_type,
                        subject_type.as_deref(),
                        subject_id.as_deref(),
                        tenant_id.as_deref(),
                        &stored_personal,
                    );
                    if !personal_ok || prev_hash != prev || expected != hash {
                        note_bad(id, &mut first_bad);
                    }
                    prev = hash.clone();
                    last_seen = Some((id, hash));
                }
            }
            if let Some(c) = current_chain {
                finish_chain(c, &last_seen, &mut first_bad);
            }
            // Chains whose head says events exist but none are left.
            for (_, (head_id, _)) in heads {
                if let Some(hid) = head_id {
                    note_bad(hid, &mut first_bad);
                }
            }
            Ok(Verification {
                ok: first_bad.is_none(),
                checked,
                first_bad_id: first_bad,
            })
        })
    })
}
