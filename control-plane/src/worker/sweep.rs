//! The expiry sweep: an export's bundle can be downloaded until its
//! entitlement ends (`expires_at`); then each database's sweep deletes the
//! bundle from storage and marks the export expired with
//! `lifecycle.expire_export` (`data.export_expired`). Deleting first means
//! a crash in between leaves an export that the next sweep expires again
//! (the delete of a missing object succeeds), never a bundle that outlives
//! its entitlement unnoticed. Every replica sweeps; both steps are
//! idempotent.

use std::sync::Arc;

use super::calls::{self, CallError};
use super::metrics;
use super::reach::Reach;
use super::{Exports, Queue, Shared};

/// Bundles expired per query.
const BATCH: i64 = 100;

/// Sweep `queue`'s database every `sweep_interval` until the worker stops.
pub async fn run(shared: Arc<Shared>, exports: Arc<Exports>, queue: Arc<Queue>) {
    let mut reach = Reach::new(queue.name.clone(), "sweep");
    loop {
        let pause = match sweep(&shared, &exports, &queue).await {
            Ok(expired) => {
                reach.up();
                metrics::sweep(&queue.name, expired);
                exports.sweep_interval
            }
            Err(error) => reach.down(&error).min(exports.sweep_interval),
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = shared.stop.cancelled() => return,
        }
    }
}

/// Expire every bundle that is due; returns how many.
async fn sweep(shared: &Shared, exports: &Exports, queue: &Queue) -> Result<u64, CallError> {
    let client = queue.pool.get().await?;
    let mut expired = 0;
    loop {
        let due = calls::due_bundles(&client, BATCH).await?;
        let full = due.len() as i64 == BATCH;
        let mut stuck = false;
        for (job, key) in due {
            if let Err(error) = exports.bundles.delete(&key).await {
                // Left for the next sweep; the export stays downloadable
                // in the database's eyes only until then (downloads check
                // expires_at themselves).
                metrics::failure(&queue.name, "sweep");
                tracing::warn!(job_id = %job, %error, "could not delete an expired bundle; the next sweep tries again");
                stuck = true;
                continue;
            }
            if let Err(error) = exports.bundles.remove_upload_leftovers(&key).await {
                tracing::warn!(job_id = %job, %error, "could not remove what killed uploads left");
            }
            if calls::expire(&client, job, &shared.worker_id).await? {
                expired += 1;
                tracing::info!(database = %queue.name, job_id = %job, "export expired: its bundle is deleted");
            }
        }
        if !full || stuck {
            return Ok(expired);
        }
    }
}
