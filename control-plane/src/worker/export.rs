//! One export job: the bundle is built from one snapshot and uploaded
//! ([`crate::export::build`]) while the lease is renewed; once built, the
//! lease is renewed once more (the job is still this worker's, for a whole
//! lease), the upload is completed, and `lifecycle.complete_job` records
//! the bundle with its expiry.
//!
//! What can go wrong, and what becomes of the job:
//!
//! * the worker dies: the upload never completes, so no bundle appears; the
//!   job keeps its lease until it expires, then any worker builds it again
//!   (the extension counts each claim of an export as an attempt);
//! * the build fails (the database, the store): the job is left to its
//!   lease and built again, up to [`MAX_EXPORT_ATTEMPTS`] claims; then it
//!   fails with [`FAILED_MESSAGE`], which says nothing of the cause (the
//!   log does);
//! * the target no longer exists: it fails at once ([`TARGET_GONE_MESSAGE`]);
//! * the lease is lost (another worker took the job over, or it was
//!   cancelled): the build stops, nothing is published;
//! * a shutdown's grace ends: the build stops and the job is handed back.

use std::time::Instant;

use chrono::Utc;

use super::calls::{self, CallError, Claim};
use super::job::{hand_back, renew};
use super::metrics;
use super::{Exports, Queue, Shared};
use crate::export::{self, Target};
use crate::storage::bundle_key;

/// Claims of one export before it fails for good.
pub const MAX_EXPORT_ATTEMPTS: i32 = 3;
/// What a failed export's job says.
pub const FAILED_MESSAGE: &str = "The export could not be built. Please request a new export.";
/// What the job of an export that row-level security would leave
/// incomplete says: the cause in general words (no table or policy names;
/// the worker's log has them, and `lifecycle.guard_status` lists the table).
pub const ROW_SECURITY_MESSAGE: &str = "The export could not be built: row-level security on one of the service's tables would hide some of the data from it, and an incomplete export is not sent. The service's operators must change that table's settings before a new export can succeed.";

/// What the job of an export whose target is gone says.
pub const TARGET_GONE_MESSAGE: &str =
    "There is nothing to export: the account or workspace no longer exists.";

/// Build, store and complete the export `claim`; returns the outcome
/// (`completed`, `failed`, `retry`, `lost`, `released`, `unknown`).
pub async fn run(shared: &Shared, queue: &Queue, claim: &Claim, exports: &Exports) -> &'static str {
    if claim.attempts > MAX_EXPORT_ATTEMPTS {
        tracing::warn!(
            attempts = claim.attempts,
            "export attempted too often; failing it"
        );
        return give_up(shared, queue, claim, FAILED_MESSAGE).await;
    }
    let key = bundle_key(&queue.name, claim.id);
    let target = Target {
        target_type: claim.target_type.clone(),
        target_id: claim.target_id.clone(),
        tenant_id: claim.tenant_id.clone(),
    };
    let started = Instant::now();
    let mut client = match queue.pool.get().await {
        Ok(client) => client,
        Err(error) => {
            metrics::failure(&queue.name, "export");
            tracing::warn!(%error, "no database connection for the export; it is tried again when its lease expires");
            return "retry";
        }
    };
    let built = {
        let building = export::build(
            &mut client,
            &target,
            &exports.bundles,
            exports.files.as_ref(),
            &key,
        );
        tokio::select! {
            built = building => built,
            lost = keep_lease(shared, queue, claim) => {
                tracing::warn!(error = %lost, "the export's lease is no longer ours; stopped building it");
                return "lost";
            }
            () = shared.abort.cancelled() => {
                tracing::warn!("shutdown grace over; stopped building the export");
                hand_back(shared, queue, claim, "the worker is stopping").await;
                return "released";
            }
        }
    };
    let built = match built {
        Ok(built) => built,
        Err(error) if error.is_target_missing() => {
            tracing::info!("the export's target no longer exists");
            return give_up(shared, queue, claim, TARGET_GONE_MESSAGE).await;
        }
        Err(error) if error.is_hidden_by_row_security() => {
            metrics::failure(&queue.name, "export");
            tracing::error!(%error, "row-level security would hide rows from the export; failing it (see lifecycle.guard_status)");
            return give_up(shared, queue, claim, ROW_SECURITY_MESSAGE).await;
        }
        Err(error) => {
            metrics::failure(&queue.name, "export");
            if claim.attempts >= MAX_EXPORT_ATTEMPTS {
                tracing::warn!(%error, attempts = claim.attempts, "export failed for the last time");
                return give_up(shared, queue, claim, FAILED_MESSAGE).await;
            }
            tracing::warn!(%error, attempts = claim.attempts, "export failed; it is tried again when its lease expires");
            return "retry";
        }
    };

    // A whole lease from now to publish and complete: no other worker can
    // have taken the job, nor take it meanwhile.
    if let Err(error) = renew(shared, queue, claim).await {
        let lost = error.lease_lost();
        if let Err(e) = built.discard().await {
            tracing::warn!(error = %e, "could not abort the bundle's upload");
        }
        if lost {
            tracing::warn!(%error, "the export's lease is no longer ours; its bundle is not published");
            return "lost";
        }
        metrics::failure(&queue.name, "lease");
        tracing::warn!(%error, "could not renew the export's lease before publishing; it is tried again when the lease expires");
        return "retry";
    }
    let bundle = match built.publish().await {
        Ok(bundle) => bundle,
        Err(error) => {
            metrics::failure(&queue.name, "export");
            tracing::warn!(%error, "could not complete the bundle's upload; it is tried again when its lease expires");
            return "retry";
        }
    };
    let expires_at =
        Utc::now() + chrono::Duration::from_std(exports.ttl).unwrap_or(chrono::Duration::days(7));
    match calls::complete(
        &client,
        claim.id,
        &shared.worker_id,
        &bundle.result(expires_at),
    )
    .await
    {
        Ok(()) => {
            let seconds = started.elapsed().as_secs_f64();
            metrics::export_built(&queue.name, bundle.size, bundle.rows, seconds);
            tracing::info!(
                key = %bundle.key,
                bytes = bundle.size,
                rows = bundle.rows,
                entries = bundle.entries,
                objects = bundle.objects,
                objects_missing = bundle.objects_missing,
                seconds,
                "export bundle stored"
            );
            // What killed attempts of this job left behind in a local store.
            match exports.bundles.remove_upload_leftovers(&key).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(removed = n, "removed what earlier attempts left"),
                Err(error) => tracing::warn!(%error, "could not remove what earlier attempts left"),
            }
            "completed"
        }
        Err(error) if error.lease_lost() => {
            // Another worker holds the job and writes the same key: its
            // bundle is the one the job will name.
            tracing::warn!(%error, "the export was taken over before it completed");
            "lost"
        }
        Err(error) => {
            metrics::failure(&queue.name, "run");
            tracing::warn!(%error, "completing the export got no answer; its lease will expire");
            "unknown"
        }
    }
}

/// End the job failed with `message`.
async fn give_up(shared: &Shared, queue: &Queue, claim: &Claim, message: &str) -> &'static str {
    let failed = match queue.pool.get().await {
        Ok(client) => calls::fail(&client, claim.id, &shared.worker_id, message).await,
        Err(e) => Err(e.into()),
    };
    match failed {
        Ok(()) => "failed",
        Err(error) => {
            metrics::failure(&queue.name, "run");
            tracing::warn!(%error, "could not mark the export failed; its lease will expire");
            "unknown"
        }
    }
}

/// Renew the lease every third of its length while the export is built;
/// completes only when the lease is lost (another worker holds it, or the
/// job left `processing`), with the error that said so.
async fn keep_lease(shared: &Shared, queue: &Queue, claim: &Claim) -> CallError {
    let mut ticks = tokio::time::interval(shared.lease / 3);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the claim just set the lease
    loop {
        ticks.tick().await;
        match renew(shared, queue, claim).await {
            Ok(()) => tracing::debug!("lease renewed"),
            Err(error) if error.lease_lost() => return error,
            Err(error) => {
                metrics::failure(&queue.name, "lease");
                tracing::warn!(%error, "could not renew the lease");
            }
        }
    }
}
