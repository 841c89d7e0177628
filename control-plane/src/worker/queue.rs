//! One loop per database: take a free slot, claim the next runnable job,
//! start it; when nothing is due, sleep until a notification or the poll
//! interval. A database that cannot be reached is retried with a growing
//! pause, without holding a slot, so the other databases keep running.

use std::sync::Arc;

use super::calls::{self, CallError, Claim};
use super::job;
use super::reach::Reach;
use super::{Queue, Shared};

/// Claim and start `queue`'s jobs until the worker stops.
pub async fn run(shared: Arc<Shared>, queue: Arc<Queue>) {
    let mut reach = Reach::new(queue.name.clone(), "queue");
    loop {
        // A slot first, so that no job is claimed that cannot start at once.
        let slot = tokio::select! {
            slot = shared.slots.clone().acquire_owned() => slot.expect("the slots are never closed"),
            () = shared.stop.cancelled() => return,
        };
        // Not cancelled half-way: a claim that committed must reach a job
        // task, which hands the job back if the worker is stopping.
        match claim(&shared, &queue).await {
            Ok(Some(claimed)) => {
                reach.up();
                shared
                    .tasks
                    .spawn(job::run(shared.clone(), queue.clone(), claimed, slot));
            }
            Ok(None) => {
                reach.up();
                drop(slot);
                tokio::select! {
                    () = queue.wake.notified() => {}
                    () = tokio::time::sleep(shared.poll_interval) => {}
                    () = shared.stop.cancelled() => return,
                }
            }
            Err(error) => {
                drop(slot);
                let pause = reach.down(&error);
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = shared.stop.cancelled() => return,
                }
            }
        }
    }
}

async fn claim(shared: &Shared, queue: &Queue) -> Result<Option<Claim>, CallError> {
    let client = queue.pool.get().await?;
    calls::claim(&client, &shared.worker_id, shared.lease, &shared.job_types).await
}
