//! One claimed job, from its claim to its outcome: run by the extension's
//! engine while its lease is kept, cancelled when a shutdown's grace runs
//! out, counted and logged (ids of jobs only, never of their targets).

use std::convert::Infallible;
use std::sync::Arc;

use lifecycle_core::jobs::JobType;
use tokio::sync::OwnedSemaphorePermit;
use tokio_postgres::NoTls;
use tracing::Instrument;

use super::calls::{self, CallError, Claim, Outcome};
use super::export;
use super::metrics;
use super::{Queue, Shared};

/// Run `claim`; the slot is held until it is done.
pub async fn run(
    shared: Arc<Shared>,
    queue: Arc<Queue>,
    claim: Claim,
    _slot: OwnedSemaphorePermit,
) {
    let job_type = claim.job_type.as_str();
    let span = tracing::info_span!("job", database = %queue.name, job_id = %claim.id, job_type = %job_type);
    async move {
        if let Some(previous) = &claim.taken_over_from {
            metrics::takeover(&queue.name, job_type);
            tracing::info!(previous_worker = %previous, "took the job over from an expired lease");
        }
        if shared.stop.is_cancelled() {
            // Claimed as the worker stopped: another worker runs it now.
            hand_back(&shared, &queue, &claim, "the worker is stopping").await;
            return;
        }
        let _running = metrics::Running::start(&queue.name);
        let answer = match claim.job_type {
            JobType::Erase | JobType::Purge => in_database(&shared, &queue, &claim).await,
            JobType::Export => {
                let Some(exports) = shared.exports.clone() else {
                    // Not claimed without storage; handed back all the same.
                    hand_back(&shared, &queue, &claim, "no storage for exports").await;
                    return;
                };
                let outcome = export::run(&shared, &queue, &claim, &exports).await;
                // A handed-back job was counted as such.
                if outcome != "released" {
                    metrics::run(&queue.name, job_type, outcome);
                }
                tracing::info!(outcome, "export ran");
                return;
            }
        };
        match answer {
            Ok(outcome) => {
                metrics::run(&queue.name, job_type, outcome.as_str());
                tracing::info!(outcome = outcome.as_str(), "job ran");
            }
            Err(error) => {
                // Whether the run committed is unknown (a broken connection)
                // or it did not (an error): either way the lease decides.
                // Its expiry lets a worker take the job again, and the
                // extension never runs a finished job twice.
                metrics::run(&queue.name, job_type, "unknown");
                metrics::failure(&queue.name, "run");
                tracing::warn!(%error, "job run got no answer; its lease will expire");
            }
        }
    }
    .instrument(span)
    .await
}

/// Hand a job that was not started back to the queue. Should that fail, its
/// lease expires and another worker takes it then.
pub(super) async fn hand_back(shared: &Shared, queue: &Queue, claim: &Claim, why: &str) {
    let released = match queue.pool.get().await {
        Ok(client) => calls::release(&client, claim.id, &shared.worker_id).await,
        Err(e) => Err(e.into()),
    };
    match released {
        Ok(()) => {
            metrics::run(&queue.name, claim.job_type.as_str(), "released");
            tracing::info!(why, "job handed back unstarted");
        }
        Err(error) => {
            metrics::failure(&queue.name, "lease");
            tracing::warn!(why, %error, "could not hand the job back; its lease will expire");
        }
    }
}

/// Run an erase or purge job with `lifecycle.run_job`, keeping its lease
/// meanwhile; after the shutdown grace, cancel it.
async fn in_database(shared: &Shared, queue: &Queue, claim: &Claim) -> Result<Outcome, CallError> {
    let mut client = queue.pool.get().await?;
    let cancel = client.cancel_token();
    let mut run = std::pin::pin!(calls::run(&mut client, claim.id, &shared.worker_id));
    tokio::select! {
        answer = &mut run => answer,
        never = keep_lease(shared, queue, claim) => match never {},
        () = shared.abort.cancelled() => {
            tracing::warn!("shutdown grace over; cancelling the job");
            // Cancelled inside the engine's subtransaction, the job goes back
            // to the queue as a transient failure; elsewhere its transaction
            // rolls back and the lease expires.
            if let Err(error) = cancel.cancel_query(NoTls).await {
                tracing::warn!(%error, "could not cancel the job's statement");
            }
            run.await
        }
    }
}

/// Renew the lease of `claim` every third of its length, on a connection of
/// its own, for as long as the job runs (the caller drops this future).
async fn keep_lease(shared: &Shared, queue: &Queue, claim: &Claim) -> Infallible {
    let mut ticks = tokio::time::interval(shared.lease / 3);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await; // the claim just set the lease
    loop {
        ticks.tick().await;
        match renew(shared, queue, claim).await {
            Ok(()) => tracing::debug!("lease renewed"),
            Err(e) if e.sqlstate() == Some(calls::LOCK_NOT_AVAILABLE) => {
                tracing::debug!("job row locked by its own run; nothing to renew")
            }
            Err(error) => {
                metrics::failure(&queue.name, "lease");
                tracing::warn!(%error, "could not renew the lease");
            }
        }
    }
}

pub(super) async fn renew(shared: &Shared, queue: &Queue, claim: &Claim) -> Result<(), CallError> {
    let mut client = queue.pool.get().await?;
    calls::renew(&mut client, claim.id, &shared.worker_id, shared.lease).await
}
