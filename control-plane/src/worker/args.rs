//! The worker's settings: flags and `LIFECYCLE_WORKER_*` variables, flattened
//! into the service's configuration.

use std::time::Duration;

use clap::{Args, ValueEnum};
use lifecycle_core::jobs::JobType;

/// Default seconds between two looks at the queue when no notification
/// arrives (a job whose cooling-off ends sends none).
pub const DEFAULT_POLL_SECS: u64 = 5;
/// Default seconds of a claim's lease: how long a job of a worker that died
/// waits before another worker takes it over.
pub const DEFAULT_LEASE_SECS: u64 = 60;
/// Default number of jobs one process runs at the same time, over all its
/// databases.
pub const DEFAULT_CONCURRENCY: usize = 2;
/// Default seconds a shutdown waits for running jobs before it cancels them.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u64 = 30;
/// Most jobs one process may run at once (each holds a pooled connection).
pub const MAX_CONCURRENCY: usize = 1024;

/// The job types a worker can run.
///
/// Erase and purge jobs run inside the database (`lifecycle.run_job`);
/// exports are built by the control plane itself (`worker/export.rs`) into
/// object storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, ValueEnum)]
pub enum RunnableType {
    /// Erasures, run by the extension's engine.
    Erase,
    /// Purges, run by the extension's engine.
    Purge,
    /// Export bundles, built here.
    Export,
}

impl RunnableType {
    /// The job type of the shared crate, whose name the extension takes.
    pub const fn job_type(self) -> JobType {
        match self {
            RunnableType::Erase => JobType::Erase,
            RunnableType::Purge => JobType::Purge,
            RunnableType::Export => JobType::Export,
        }
    }
}

/// Settings of the worker that claims and runs due jobs.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct WorkerArgs {
    /// Name this process claims jobs under (recorded in `lifecycle.jobs.worker`);
    /// hostname, process id and a random suffix when not set. Two processes
    /// must never share one.
    #[arg(long = "worker-id", env = "LIFECYCLE_WORKER_ID")]
    pub worker_id: Option<String>,

    /// Seconds between two looks for due jobs when no notification arrives.
    #[arg(long = "worker-poll-secs", env = "LIFECYCLE_WORKER_POLL_SECS",
          default_value_t = DEFAULT_POLL_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub poll_secs: u64,

    /// Seconds of a claimed job's lease, renewed while it runs; when the
    /// worker dies, another one takes the job over after this long.
    #[arg(long = "worker-lease-secs", env = "LIFECYCLE_WORKER_LEASE_SECS",
          default_value_t = DEFAULT_LEASE_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub lease_secs: u64,

    /// Jobs run at the same time by this process, over all its databases.
    #[arg(long = "worker-concurrency", env = "LIFECYCLE_WORKER_CONCURRENCY",
          default_value_t = DEFAULT_CONCURRENCY, value_parser = parse_concurrency)]
    pub concurrency: usize,

    /// Job types this worker runs, comma-separated.
    #[arg(long = "worker-job-types", env = "LIFECYCLE_WORKER_JOB_TYPES",
          value_enum, value_delimiter = ',',
          default_values_t = [RunnableType::Erase, RunnableType::Purge, RunnableType::Export])]
    pub job_types: Vec<RunnableType>,

    /// On shutdown, seconds running jobs may take to finish before they are
    /// cancelled (a cancelled job's work rolls back and the job goes back to
    /// the queue).
    #[arg(long = "worker-shutdown-grace-secs", env = "LIFECYCLE_WORKER_SHUTDOWN_GRACE_SECS",
          default_value_t = DEFAULT_SHUTDOWN_GRACE_SECS)]
    pub shutdown_grace_secs: u64,
}

impl Default for WorkerArgs {
    fn default() -> Self {
        Self {
            worker_id: None,
            poll_secs: DEFAULT_POLL_SECS,
            lease_secs: DEFAULT_LEASE_SECS,
            concurrency: DEFAULT_CONCURRENCY,
            job_types: vec![
                RunnableType::Erase,
                RunnableType::Purge,
                RunnableType::Export,
            ],
            shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS,
        }
    }
}

impl WorkerArgs {
    /// The configured worker id, or a new one unique to this process:
    /// `<hostname>-<pid>-<random>` (the random part keeps two processes of
    /// one host apart when process ids are reused, say across containers).
    pub fn resolve_worker_id(&self) -> String {
        self.worker_id
            .as_deref()
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let random = uuid::Uuid::new_v4().simple().to_string();
                format!(
                    "{}-{}-{}",
                    gethostname::gethostname().to_string_lossy(),
                    std::process::id(),
                    &random[..8]
                )
            })
    }

    /// Seconds between two looks at the queue without a notification.
    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_secs)
    }

    /// Length of a claim's lease.
    pub fn lease(&self) -> Duration {
        Duration::from_secs(self.lease_secs)
    }

    /// How long a shutdown waits for running jobs.
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// The job type names passed to `lifecycle.claim_job`, without repeats.
    pub fn job_type_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for t in &self.job_types {
            let name = t.job_type().as_str();
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
        names
    }
}

fn parse_concurrency(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        _ => Err(format!("expected a number from 1 to {MAX_CONCURRENCY}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        worker: WorkerArgs,
    }

    fn parse(args: &[&str]) -> Result<WorkerArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("lifecycled").chain(args.iter().copied()))
            .map(|c| c.worker)
    }

    #[test]
    fn defaults_match_the_default_impl() {
        assert_eq!(parse(&[]).unwrap(), WorkerArgs::default());
        let d = WorkerArgs::default();
        assert_eq!(d.poll_interval(), Duration::from_secs(5));
        assert_eq!(d.lease(), Duration::from_secs(60));
        assert_eq!(d.concurrency, 2);
        assert_eq!(d.job_type_names(), ["erase", "purge", "export"]);
    }

    #[test]
    fn flags_are_parsed() {
        let a = parse(&[
            "--worker-id",
            "w1",
            "--worker-poll-secs",
            "1",
            "--worker-lease-secs",
            "2",
            "--worker-concurrency",
            "8",
            "--worker-job-types",
            "purge,export,purge",
            "--worker-shutdown-grace-secs",
            "0",
        ])
        .unwrap();
        assert_eq!(a.resolve_worker_id(), "w1");
        assert_eq!(a.poll_interval(), Duration::from_secs(1));
        assert_eq!(a.lease(), Duration::from_secs(2));
        assert_eq!(a.concurrency, 8);
        assert_eq!(a.job_type_names(), ["purge", "export"]);
        assert_eq!(a.shutdown_grace(), Duration::ZERO);
    }

    #[test]
    fn bad_values_are_refused() {
        for args in [
            &["--worker-concurrency", "0"][..],
            &["--worker-concurrency", "1025"],
            &["--worker-lease-secs", "0"],
            &["--worker-poll-secs", "soon"],
            &["--worker-job-types", "download"],
        ] {
            assert!(parse(args).is_err(), "{args:?} was accepted");
        }
    }

    #[test]
    fn generated_ids_differ() {
        let d = WorkerArgs::default();
        let (a, b) = (d.resolve_worker_id(), d.resolve_worker_id());
        assert_ne!(a, b);
        assert!(a.contains(&format!("-{}-", std::process::id())), "{a}");
    }
}
