//! The worker inside `lifecycled`: claims due erase and purge jobs with the
//! extension's leases and runs them with the extension's engine, and builds
//! export bundles into object storage.
//!
//! * [`args`]: its settings;
//! * `queue`: one loop per database, claiming while slots are free;
//! * `listen`: one `LISTEN lifecycle_jobs` session per database, which wakes
//!   that loop when a job becomes runnable (the poll interval is the
//!   fallback, and the only signal when a cooling-off ends);
//! * `job`: one claimed job, run with its lease kept; `export`: an export
//!   job, built by [`crate::export`] and stored;
//! * `sweep`: deletes bundles whose entitlement ended; `anchor`: writes the
//!   heads of the audit chains to storage, write-once, on a schedule;
//! * `calls`: the extension's functions it calls; `reach`: reconnecting
//!   with backoff, logged once per change; `metrics`: what it counts.
//!
//! All state is the database's: `claim_job` takes a job with
//! `FOR UPDATE SKIP LOCKED`, so several processes on one queue never run a
//! job twice, and a job whose worker died is taken over when its lease
//! expires. An erase or purge job is one transaction of `run_job`: a worker
//! killed mid-job leaves nothing half-done. An export is one read-only
//! transaction and one multipart upload completed only at the end: a worker
//! killed mid-export leaves no bundle behind.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::StorageArgs;
use crate::db::Databases;
use crate::storage::Storage;

mod anchor;
mod args;
mod calls;
mod export;
mod job;
mod listen;
mod metrics;
mod queue;
mod reach;
mod sweep;

pub use anchor::Anchor;
pub use args::{RunnableType, WorkerArgs};
pub use calls::{ChainHead, CHANNEL};
pub use export::{FAILED_MESSAGE, MAX_EXPORT_ATTEMPTS, ROW_SECURITY_MESSAGE, TARGET_GONE_MESSAGE};
pub use metrics::{
    ANCHORS_WRITTEN, EXPORTS_BUILT, EXPORTS_EXPIRED, EXPORT_BYTES, EXPORT_ROWS, EXPORT_SECONDS,
    EXPORT_SWEEPS, FAILURES, RUNNING, RUNS, TAKEOVERS,
};

/// What the worker needs to build exports, expire them and anchor the
/// audit chains: the bundle store, the application's file store, and how
/// often and for how long.
#[derive(Clone, Debug)]
pub struct Exports {
    /// Where bundles and anchors go.
    pub bundles: Storage,
    /// The application's stored files (`storage_object` columns), if any.
    pub files: Option<Storage>,
    /// How long a bundle can be downloaded (the extension caps it at 7 days).
    pub ttl: Duration,
    /// Time between two looks for expired bundles.
    pub sweep_interval: Duration,
    /// Time between two anchors.
    pub anchor_interval: Duration,
}

impl Exports {
    /// The stores and periods `args` configure.
    pub fn from_args(args: &StorageArgs) -> anyhow::Result<Self> {
        let (bundles, files) = Storage::from_args(args)?;
        Ok(Self::with_stores(bundles, files, args))
    }

    /// The periods of `args` with stores already opened.
    pub fn with_stores(bundles: Storage, files: Option<Storage>, args: &StorageArgs) -> Self {
        Self {
            bundles,
            files,
            ttl: args.export_ttl,
            sweep_interval: args.export_sweep_interval,
            anchor_interval: args.anchor_interval,
        }
    }
}

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
    /// Exports, their sweep and the anchors (`None`: erase and purge only).
    exports: Option<Arc<Exports>>,
}

/// One database's queue.
struct Queue {
    name: Arc<str>,
    pool: Pool,
    connect: tokio_postgres::Config,
    /// Notified by the listener; the queue loop waits on it when idle.
    wake: Notify,
}

/// Start the worker on every database of `dbs`, without exports (a
/// worker that may claim them is started by [`spawn_with_exports`]).
pub fn spawn(dbs: Databases, args: WorkerArgs) -> WorkerHandle {
    start(dbs, args, None)
}

/// Start the worker on every database of `dbs`, building exports into
/// `exports.bundles`, sweeping expired bundles and writing anchors.
pub fn spawn_with_exports(dbs: Databases, args: WorkerArgs, exports: Exports) -> WorkerHandle {
    start(dbs, args, Some(Arc::new(exports)))
}

/// One queue loop and one listener per database (and, with exports, a
/// sweep and an anchor loop). Nothing is awaited here; a database that is
/// down is retried by its own loop.
fn start(dbs: Databases, args: WorkerArgs, exports: Option<Arc<Exports>>) -> WorkerHandle {
    metrics::describe();
    let mut job_types = args.job_type_names();
    if exports.is_none() {
        // Without storage an export cannot be built: leave them to others.
        job_types.retain(|t| t != lifecycle_core::jobs::JobType::Export.as_str());
    }
    let shared = Arc::new(Shared {
        worker_id: args.resolve_worker_id(),
        lease: args.lease(),
        poll_interval: args.poll_interval(),
        job_types,
        concurrency: args.concurrency,
        slots: Arc::new(Semaphore::new(args.concurrency)),
        stop: CancellationToken::new(),
        abort: CancellationToken::new(),
        tasks: TaskTracker::new(),
        exports,
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
        if let Some(exports) = &shared.exports {
            shared
                .tasks
                .spawn(sweep::run(shared.clone(), exports.clone(), queue.clone()));
            shared
                .tasks
                .spawn(anchor::run(shared.clone(), exports.clone(), queue.clone()));
        }
        shared.tasks.spawn(queue::run(shared.clone(), queue));
    }
    tracing::info!(
        worker = %shared.worker_id,
        databases = ?names,
        job_types = ?shared.job_types,
        concurrency = args.concurrency,
        storage = ?shared.exports.as_ref().map(|e| e.bundles.url()),
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
