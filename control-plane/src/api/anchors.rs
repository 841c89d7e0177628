//! The audit log against its anchors: the chain heads the worker writes to
//! object storage, write-once, on a schedule. A superuser who rewrites
//! events and moves the chain heads back leaves `verify_audit_log()`
//! nothing to find; the anchors still name the events as they were. Each
//! anchored head must still be in the log with the same hash, and no chain
//! may now be shorter than an anchor saw it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::GenericClient;
use utoipa::ToSchema;

use crate::error::ApiResult;
use crate::storage::{anchors_prefix, Storage};

/// Anchors read per verification, newest first: a day and more of hourly
/// anchors; older ones were checked by the verifications of their time.
pub const ANCHORS_CHECKED: usize = 168;
/// Largest anchor read (sixteen chain heads take about 2 kB).
const MAX_ANCHOR_BYTES: u64 = 64 * 1024;

/// One chain head as an anchor records it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct AnchoredHead {
    pub chain: i32,
    pub last_id: Option<i64>,
    pub last_hash: String,
    pub events: i64,
}

/// An anchor object.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Anchor {
    pub written_at: DateTime<Utc>,
    pub heads: Vec<AnchoredHead>,
}

/// What comparing the log with its anchors found in one database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AnchorCheck {
    /// Anchors compared (the newest ones).
    pub anchors: usize,
    /// When the newest anchor was written.
    pub latest_at: Option<DateTime<Utc>>,
    /// Anchored events that no longer match or are missing.
    pub mismatches: Vec<AnchorMismatch>,
    /// Anchors that could not be read or parsed (their keys).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<String>,
}

/// One anchored event the log no longer agrees with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AnchorMismatch {
    /// The anchor's key in storage.
    pub anchor: String,
    pub written_at: DateTime<Utc>,
    pub chain: i32,
    /// The last event of the chain when the anchor was written.
    pub event_id: Option<i64>,
    /// `changed`: the event's hash differs; `missing`: the event is gone;
    /// `rewound`: the chain now has fewer events than the anchor saw.
    pub problem: String,
    pub anchored_hash: String,
    /// The hash the log has now (none when the event is missing).
    pub found_hash: Option<String>,
}

/// Read the newest anchors of `database` and compare the log with them.
pub async fn check(
    storage: &Storage,
    database: &str,
    client: &impl GenericClient,
) -> ApiResult<AnchorCheck> {
    let mut objects = storage.list(&anchors_prefix(database)).await?;
    // Keys sort by time; the newest last.
    let skip = objects.len().saturating_sub(ANCHORS_CHECKED);
    objects.drain(..skip);
    let mut out = AnchorCheck::default();
    let mut anchors = Vec::new();
    for o in objects.iter().rev() {
        let parsed = match storage.read_small(&o.key, MAX_ANCHOR_BYTES).await {
            Ok(bytes) => serde_json::from_slice::<Anchor>(&bytes).ok(),
            Err(_) => None,
        };
        match parsed {
            Some(a) => anchors.push((o.key.clone(), a)),
            None => out.unreadable.push(o.key.clone()),
        }
    }
    out.anchors = anchors.len();
    out.latest_at = anchors.iter().map(|(_, a)| a.written_at).max();
    if anchors.is_empty() {
        return Ok(out);
    }
    // Every anchored event, once: (id) -> hash now.
    let ids: Vec<i64> = anchors
        .iter()
        .flat_map(|(_, a)| a.heads.iter().filter_map(|h| h.last_id))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let rows = client
        .query(
            "SELECT a.id, encode(l.hash, 'hex') \
               FROM unnest($1::bigint[]) AS a(id) \
               LEFT JOIN lifecycle.audit_log l ON l.id = a.id",
            &[&ids],
        )
        .await?;
    let now: BTreeMap<i64, Option<String>> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let heads = client
        .query(
            "SELECT chain, events FROM lifecycle.audit_chain_heads()",
            &[],
        )
        .await?;
    let events_now: BTreeMap<i32, i64> = heads.iter().map(|r| (r.get(0), r.get(1))).collect();
    for (key, anchor) in &anchors {
        for h in &anchor.heads {
            let mismatch = |problem: &str, found: Option<String>| AnchorMismatch {
                anchor: key.clone(),
                written_at: anchor.written_at,
                chain: h.chain,
                event_id: h.last_id,
                problem: problem.to_owned(),
                anchored_hash: h.last_hash.clone(),
                found_hash: found,
            };
            if let Some(id) = h.last_id {
                match now.get(&id).cloned().flatten() {
                    None => out.mismatches.push(mismatch("missing", None)),
                    Some(found) if !found.eq_ignore_ascii_case(&h.last_hash) => {
                        out.mismatches.push(mismatch("changed", Some(found)))
                    }
                    Some(_) => {}
                }
            }
            if events_now.get(&h.chain).copied().unwrap_or(0) < h.events {
                out.mismatches.push(mismatch("rewound", None));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchor_reads_as_the_worker_writes_it() {
        let a: Anchor = serde_json::from_value(serde_json::json!({
            "database": "default",
            "written_at": "2026-12-02T10:00:00Z",
            "heads": [{"chain": 3, "last_id": 42, "last_hash": "ab", "events": 7},
                      {"chain": 4, "last_id": null, "last_hash": "cd", "events": 0}]
        }))
        .unwrap();
        assert_eq!(a.heads.len(), 2);
        assert_eq!(a.heads[1].last_id, None);
    }
}
