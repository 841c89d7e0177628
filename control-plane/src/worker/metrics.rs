//! What the worker counts, through the `metrics` facade (the registry of
//! [`crate::metrics`] serves it at `/metrics`), under the service's
//! `lifecycled_` prefix. Labels carry the configured database name, job
//! types, outcomes and parts of the worker, never ids.

use metrics::{
    counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Unit,
};

/// Jobs run, by `database`, `job_type` and `outcome`.
pub const RUNS: &str = "lifecycled_worker_runs_total";
/// Calls to a database that failed, by `database` and `part` of the worker.
pub const FAILURES: &str = "lifecycled_worker_failures_total";
/// Jobs claimed after another worker's lease on them expired, by `database`
/// and `job_type`.
pub const TAKEOVERS: &str = "lifecycled_lease_takeovers_total";
/// Jobs running now, by `database`.
pub const RUNNING: &str = "lifecycled_worker_running_jobs";
/// Export bundles built and stored, by `database`.
pub const EXPORTS_BUILT: &str = "lifecycled_exports_built_total";
/// Bytes of the bundles stored, by `database`.
pub const EXPORT_BYTES: &str = "lifecycled_export_bytes_total";
/// Rows written into bundles, by `database`.
pub const EXPORT_ROWS: &str = "lifecycled_export_rows_total";
/// Time to build and store a bundle, in seconds, by `database` (a
/// histogram: its `_sum` and `_count` give the mean).
pub const EXPORT_SECONDS: &str = "lifecycled_export_duration_seconds";
/// Bundles deleted by the expiry sweep, by `database`.
pub const EXPORTS_EXPIRED: &str = "lifecycled_exports_expired_total";
/// Expiry sweeps run, by `database`.
pub const EXPORT_SWEEPS: &str = "lifecycled_export_sweeps_total";
/// Anchors of the audit chain written to storage, by `database`.
pub const ANCHORS_WRITTEN: &str = "lifecycled_anchors_written_total";

/// Register the descriptions (`# HELP`).
pub fn describe() {
    describe_counter!(
        RUNS,
        Unit::Count,
        "Jobs the worker ran, by database, job type and outcome (completed, \
         waiting_for_steps, failed, blocked, retry, released, unknown)"
    );
    describe_counter!(
        FAILURES,
        Unit::Count,
        "Calls of the worker to a database or to storage that failed, by \
         database and part (queue, notifications, run, lease, export, sweep, anchor)"
    );
    describe_counter!(
        TAKEOVERS,
        Unit::Count,
        "Jobs claimed after another worker's lease on them expired"
    );
    describe_gauge!(RUNNING, Unit::Count, "Jobs the worker is running now");
    describe_counter!(
        EXPORTS_BUILT,
        Unit::Count,
        "Export bundles built and stored, by database"
    );
    describe_counter!(
        EXPORT_BYTES,
        Unit::Bytes,
        "Bytes of the export bundles stored, by database"
    );
    describe_counter!(
        EXPORT_ROWS,
        Unit::Count,
        "Rows written into export bundles, by database"
    );
    describe_histogram!(
        EXPORT_SECONDS,
        Unit::Seconds,
        "Time to build and store an export bundle, by database"
    );
    describe_counter!(
        EXPORTS_EXPIRED,
        Unit::Count,
        "Export bundles deleted because their entitlement ended, by database"
    );
    describe_counter!(
        EXPORT_SWEEPS,
        Unit::Count,
        "Looks for expired export bundles, by database"
    );
    describe_counter!(
        ANCHORS_WRITTEN,
        Unit::Count,
        "Anchors of the audit chain written to object storage, by database"
    );
}

/// One bundle stored: `bytes`, `rows`, built in `seconds`.
pub fn export_built(database: &str, bytes: u64, rows: u64, seconds: f64) {
    counter!(EXPORTS_BUILT, "database" => database.to_owned()).increment(1);
    counter!(EXPORT_BYTES, "database" => database.to_owned()).increment(bytes);
    counter!(EXPORT_ROWS, "database" => database.to_owned()).increment(rows);
    histogram!(EXPORT_SECONDS, "database" => database.to_owned()).record(seconds);
}

/// One sweep that expired `expired` bundles.
pub fn sweep(database: &str, expired: u64) {
    counter!(EXPORT_SWEEPS, "database" => database.to_owned()).increment(1);
    counter!(EXPORTS_EXPIRED, "database" => database.to_owned()).increment(expired);
}

/// One anchor written.
pub fn anchor(database: &str) {
    counter!(ANCHORS_WRITTEN, "database" => database.to_owned()).increment(1);
}

/// One job run, or handed back unstarted (`released`), with `outcome`.
pub fn run(database: &str, job_type: &'static str, outcome: &'static str) {
    counter!(RUNS, "database" => database.to_owned(), "job_type" => job_type, "outcome" => outcome)
        .increment(1);
}

/// One failed call of `part` (`queue`, `notifications`, `run`, `lease`,
/// `export`, `sweep`, `anchor`) to `database` or to storage.
pub fn failure(database: &str, part: &'static str) {
    counter!(FAILURES, "database" => database.to_owned(), "part" => part).increment(1);
}

/// One job taken over from an expired lease.
pub fn takeover(database: &str, job_type: &'static str) {
    counter!(TAKEOVERS, "database" => database.to_owned(), "job_type" => job_type).increment(1);
}

/// Counts a job in [`RUNNING`] while it lives.
pub struct Running(String);

impl Running {
    pub fn start(database: &str) -> Self {
        gauge!(RUNNING, "database" => database.to_owned()).increment(1.0);
        Running(database.to_owned())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        gauge!(RUNNING, "database" => std::mem::take(&mut self.0)).decrement(1.0);
    }
}
