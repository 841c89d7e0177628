//! Anchors of the audit chain: every `anchor_interval` (and once at
//! start), each database's chain heads (`lifecycle.audit_chain_heads()`)
//! are written to object storage as a new write-once object,
//! `anchors/<database>/<yyyymmddThhmmssZ>-<random>.json`. A superuser who
//! rewrites the audit log and moves its chain heads back cannot rewrite
//! the anchors too; `GET /api/v1/audit/verify` compares the log with them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::calls::{self, ChainHead};
use super::metrics;
use super::reach::Reach;
use super::{Exports, Queue, Shared};
use crate::storage::anchor_key;

/// Pause before writing again after the store failed.
const STORAGE_RETRY: Duration = Duration::from_secs(10);

/// One anchor, as stored (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    /// The configured name of the database.
    pub database: String,
    pub written_at: DateTime<Utc>,
    /// The worker that wrote it.
    pub worker: String,
    pub heads: Vec<ChainHeadRecord>,
}

/// One chain head in an anchor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHeadRecord {
    pub chain: i32,
    pub last_id: Option<i64>,
    /// Hexadecimal.
    pub last_hash: String,
    pub events: i64,
}

impl From<ChainHead> for ChainHeadRecord {
    fn from(h: ChainHead) -> Self {
        Self {
            chain: h.chain,
            last_id: h.last_id,
            last_hash: h.last_hash,
            events: h.events,
        }
    }
}

/// Anchor `queue`'s database until the worker stops.
pub async fn run(shared: Arc<Shared>, exports: Arc<Exports>, queue: Arc<Queue>) {
    let mut reach = Reach::new(queue.name.clone(), "anchor");
    loop {
        let pause = match write(&shared, &exports, &queue).await {
            Ok(key) => {
                reach.up();
                metrics::anchor(&queue.name);
                tracing::info!(database = %queue.name, key, "audit chains anchored");
                exports.anchor_interval
            }
            Err(Failure::Database(error)) => reach.down(&error),
            Err(Failure::Storage(error)) => {
                metrics::failure(&queue.name, "anchor");
                tracing::warn!(database = %queue.name, %error, "could not store an anchor; trying again");
                STORAGE_RETRY
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shared.stop.cancelled() => return,
        }
    }
}

enum Failure {
    Database(calls::CallError),
    Storage(crate::storage::StorageError),
}

/// Read the chain heads and store them under a new key; returns the key.
async fn write(shared: &Shared, exports: &Exports, queue: &Queue) -> Result<String, Failure> {
    let heads = {
        let client = queue
            .pool
            .get()
            .await
            .map_err(|e| Failure::Database(e.into()))?;
        calls::chain_heads(&client)
            .await
            .map_err(Failure::Database)?
    };
    let written_at = Utc::now();
    let anchor = Anchor {
        database: queue.name.to_string(),
        written_at,
        worker: shared.worker_id.clone(),
        heads: heads.into_iter().map(Into::into).collect(),
    };
    let body = serde_json::to_vec_pretty(&anchor).expect("an anchor serializes");
    let key = anchor_key(&queue.name, written_at);
    exports
        .bundles
        .put_new(&key, Bytes::from(body))
        .await
        .map_err(Failure::Storage)?;
    Ok(key)
}
