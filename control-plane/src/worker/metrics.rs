//! What the worker counts, through the `metrics` facade (the registry of
//! [`crate::metrics`] serves it at `/metrics`), under the service's
//! `lifecycled_` prefix. Labels carry the configured database name, job
//! types, outcomes and parts of the worker, never ids.

use metrics::{counter, describe_counter, describe_gauge, gauge, Unit};

/// Jobs run, by `database`, `job_type` and `outcome`.
pub const RUNS: &str = "lifecycled_worker_runs_total";
/// Calls to a database that failed, by `database` and `part` of the worker.
pub const FAILURES: &str = "lifecycled_worker_failures_total";
/// Jobs claimed after another worker's lease on them expired, by `database`
/// and `job_type`.
pub const TAKEOVERS: &str = "lifecycled_lease_takeovers_total";
/// Jobs running now, by `database`.
pub const RUNNING: &str = "lifecycled_worker_running_jobs";

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
        "Calls of the worker to a database that failed, by database and part \
         (queue, notifications, run, lease)"
    );
    describe_counter!(
        TAKEOVERS,
        Unit::Count,
        "Jobs claimed after another worker's lease on them expired"
    );
    describe_gauge!(RUNNING, Unit::Count, "Jobs the worker is running now");
}

/// One job run, or handed back unstarted (`released`), with `outcome`.
pub fn run(database: &str, job_type: &'static str, outcome: &'static str) {
    counter!(RUNS, "database" => database.to_owned(), "job_type" => job_type, "outcome" => outcome)
        .increment(1);
}

/// One failed call of `part` (`queue`, `notifications`, `run`, `lease`) to
/// `database`.
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
