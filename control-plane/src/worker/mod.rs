//! The worker inside `lifecycled`: claims due erase and purge jobs with the
//! extension's leases and runs them with the extension's engine.
//!
//! * [`args`]: its settings;
//! * `queue`: one loop per database, claiming while slots are free;
//! * `listen`: one `LISTEN lifecycle_jobs` session per database, which wakes
//!   that loop when a job becomes runnable (the poll interval is the
//!   fallback, and the only signal when a cooling-off ends);
//! * `job`: one claimed job, run with its lease kept;
//! * `calls`: the extension's functions it calls; `reach`: reconnecting
//!   with backoff, logged once per change; `metrics`: what it counts.
//!
//! All state is the database's: `claim_job` takes a job with
//! `FOR UPDATE SKIP LOCKED`, so several processes on one queue never run a
//! job twice, and a job whose worker died is taken over when its lease
//! expires. An erase or purge job is one transaction of `run_job`: a worker
//! killed mid-job leaves nothing half-done.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::db::Databases;

mod args;
mod calls;
mod job;
mod listen;
mod metrics;
mod queue;
mod reach;

pub use args::{RunnableType, WorkerArgs};
pub use calls::CHANNEL;
pub use metrics::{FAILURES, RUNNING, RUNS, TAKEOVERS};

/// After the shutdown grace, how long cancelled jobs get to answer before the
/// worker returns without them (their leases then expire).
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// What every task of one worker shares.
struct Shared {
    worker_id: String,
    lease: Duration,
    poll_interval: Duration,
    job_types: Vec<String>,
    concurrency: usize,
    /// One permit per job that may run at once, over all databases.
    slots: Arc<Semaphore>,
    /// Stop claiming.
    stop: CancellationToken,
    /// Cancel the jobs still running.
    abort: CancellationToken,
    tasks: TaskTracker,
}

/// One database's queue.
struct Queue {
    name: Arc<str>,
    pool: Pool,
    connect: tokio_postgres::Config,
    /// Notified by the listener; the queue loop waits on it when idle.
    wake: Notify,
}

/// Start the worker on every database of `dbs`: one queue loop and one
/// listener each. Nothing is awaited here; a database that is down is
/// retried by its own loop.
pub fn spawn(dbs: Databases, args: WorkerArgs) -> WorkerHandle {
    metrics::describe();
    let shared = Arc::new(Shared {
        worker_id: args.resolve_worker_id(),
        lease: args.lease(),
        poll_interval: args.poll_interval(),
        job_types: args.job_type_names(),
        concurrency: args.concurrency,
        slots: Arc::new(Semaphore::new(args.concurrency)),
        stop: CancellationToken::new(),
        abort: CancellationToken::new(),
        tasks: TaskTracker::new(),
    });
    let mut names = Vec::new();
    for db in dbs.iter() {
        names.push(db.name.to_string());
        let queue = Arc::new(Queue {
            name: db.name.clone(),
            pool: db.pool.clone(),
            connect: db.connect.clone(),
            wake: Notify::new(),
        });
        shared
            .tasks
            .spawn(listen::run(shared.clone(), queue.clone()));
        shared.tasks.spawn(queue::run(shared.clone(), queue));
    }
    tracing::info!(
        worker = %shared.worker_id,
        databases = ?names,
        job_types = ?shared.job_types,
        concurrency = args.concurrency,
        "worker started"
    );
    WorkerHandle {
        shared,
        grace: args.shutdown_grace(),
        stop_on_drop: true,
    }
}

/// The running worker. Dropping it stops the worker abruptly (running jobs
/// are cancelled); [`WorkerHandle::shutdown`] stops it gracefully.
pub struct WorkerHandle {
    shared: Arc<Shared>,
    grace: Duration,
    stop_on_drop: bool,
}

impl WorkerHandle {
    /// The name under which this worker claims jobs.
    pub fn worker_id(&self) -> &str {
        &self.shared.worker_id
    }

    /// Stop claiming at once; the future lets running jobs finish within the
    /// shutdown grace, cancels those still running, and completes when the
    /// worker's tasks have ended.
    pub fn shutdown(mut self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.stop_on_drop = false;
        let shared = self.shared.clone();
        shared.stop.cancel();
        shared.tasks.close();
        let grace = self.grace;
        async move {
            tracing::info!(
                running = shared.concurrency - shared.slots.available_permits(),
                "worker stopping: no new claims"
            );
            if tokio::time::timeout(grace, shared.tasks.wait())
                .await
                .is_err()
            {
                shared.abort.cancel();
                if tokio::time::timeout(CANCEL_WAIT, shared.tasks.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        "jobs still running after cancellation; their leases will expire"
                    );
                }
            }
            tracing::info!("worker stopped");
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        if self.stop_on_drop {
            self.shared.stop.cancel();
            self.shared.abort.cancel();
        }
    }
}
