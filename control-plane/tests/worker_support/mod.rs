//! What the worker tests share: demo databases with due erasures, workers
//! on them, the job and audit facts that say whether a job ran exactly
//! once, and the worker's metrics as Prometheus renders them.

#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use lifecycle_core::events;
use lifecycle_tests::{describe, exec, Role, TestDb, STEP_TIMEOUT};
use lifecycled::config::{DatabaseArgs, DatabaseSpec};
use lifecycled::db::Databases;
use lifecycled::setup::{setup_database, SetupOptions};
use lifecycled::worker::{self, WorkerArgs, WorkerHandle};
use tokio_postgres::Client;
use uuid::Uuid;

const DEMO_SCHEMA: &str = include_str!("../../../sql/demo/schema.sql");
const DEMO_GENERATOR: &str = include_str!("../../../sql/demo/generate.sql");
const DEMO_REGISTER: &str = include_str!("../../../sql/demo/register.sql");

/// A test database with the demo schema registered, and the service role
/// that `lifecycled setup` prepares, which the worker connects as.
pub struct Demo {
    pub db: TestDb,
    /// A superuser session, for the test's own requests and checks.
    pub c: Client,
    pub service: Role,
}

impl Demo {
    /// The database's name (also the name the worker knows it by).
    pub fn name(&self) -> &str {
        &self.db.name
    }

    /// The database as the worker serves it, as the service role.
    pub fn databases(&self) -> Databases {
        databases(&[(self.name(), self.service_url())])
    }

    /// The service role's URL of the database.
    pub fn service_url(&self) -> String {
        self.db.url_for(&self.service)
    }

    /// A new superuser session.
    pub async fn connect(&self) -> Client {
        self.db.connect(&Role::Superuser).await.expect("session")
    }

    pub async fn cleanup(self) {
        self.db.cleanup().await.expect("cleanup");
    }
}

/// A demo database with `users` people and a service role.
pub async fn demo(prefix: &str, users: i32) -> Demo {
    let mut db = TestDb::create(prefix).await.expect("test database");
    let mut c = db.connect(&Role::Superuser).await.expect("session");
    load_demo(&c, users).await;
    let service = db.create_role("svc").await.expect("service role");
    prepare(&mut c, service.name().expect("a login role")).await;
    Demo { db, c, service }
}

/// Run `lifecycled setup` for the service role `role` in `c`'s database.
pub async fn prepare(c: &mut Client, role: &str) {
    setup_database(
        c,
        &SetupOptions {
            role,
            password: None,
            own_schema: false,
        },
    )
    .await
    .expect("lifecycled setup");
}

/// Load and register the demo schema with `users` people in `c`'s database.
pub async fn load_demo(c: &Client, users: i32) {
    exec(c, DEMO_SCHEMA).await;
    exec(c, DEMO_GENERATOR).await;
    exec(c, DEMO_REGISTER).await;
    exec(c, &format!("SELECT app.generate_demo_data({users})")).await;
}

/// The databases a worker serves, as the service configures them (with a
/// short timeout, so that an outage is noticed quickly): `(name, url)`.
pub fn databases(specs: &[(&str, String)]) -> Databases {
    Databases::from_args(&DatabaseArgs {
        databases: specs
            .iter()
            .map(|(name, url)| DatabaseSpec {
                name: (*name).to_owned(),
                url: url.clone(),
            })
            .collect(),
        db_timeout_secs: 2,
        ..DatabaseArgs::default()
    })
    .expect("databases")
}

/// Worker settings for tests: a fixed id, a short poll and lease.
pub fn args(id: &str) -> WorkerArgs {
    WorkerArgs {
        worker_id: Some(id.to_owned()),
        poll_secs: 1,
        lease_secs: 2,
        ..WorkerArgs::default()
    }
}

/// Start a worker (with the service's metrics registry installed first, and
/// its logs shown under `RUST_LOG`).
pub fn start(dbs: Databases, args: WorkerArgs) -> WorkerHandle {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    lifecycled::metrics::handle();
    worker::spawn(dbs, args)
}

/// `n` demo users who administer no workspace: their erasures never wait
/// for a last-admin decision.
pub async fn non_admins(c: &Client, n: i64) -> Vec<i64> {
    let rows = c
        .query(
            "SELECT u.id FROM app.users u WHERE NOT EXISTS (SELECT 1 FROM app.memberships m \
              WHERE m.user_id = u.id AND m.role IN ('owner', 'admin')) ORDER BY u.id LIMIT $1",
            &[&n],
        )
        .await
        .unwrap_or_else(|e| panic!("non_admins: {}", describe(&e)));
    assert_eq!(
        rows.len() as i64,
        n,
        "not enough users without an admin role"
    );
    rows.iter().map(|r| r.get(0)).collect()
}

/// An approved erasure of user `uid`, due after `cooling_off` (an SQL
/// interval); returns the job id.
pub async fn erasure(c: &Client, uid: i64, cooling_off: &str) -> Uuid {
    c.query_one(
        "SELECT lifecycle.request_erasure('user', $1, NULL, 'dpo@example.com', 'worker test', \
                cooling_off => $2::text::interval, requires_approval => false)",
        &[&uid.to_string(), &cooling_off],
    )
    .await
    .unwrap_or_else(|e| panic!("request_erasure({uid}): {}", describe(&e)))
    .get(0)
}

/// A pending erasure of user `uid`, due at once once approved.
pub async fn pending_erasure(c: &Client, uid: i64) -> Uuid {
    c.query_one(
        "SELECT lifecycle.request_erasure('user', $1, NULL, 'dpo@example.com', 'worker test', \
                cooling_off => '0')",
        &[&uid.to_string()],
    )
    .await
    .unwrap_or_else(|e| panic!("request_erasure({uid}): {}", describe(&e)))
    .get(0)
}

/// Approve a job as a second person.
pub async fn approve(c: &Client, job: Uuid) {
    c.execute("SELECT lifecycle.approve($1, 'legal@example.com')", &[&job])
        .await
        .unwrap_or_else(|e| panic!("approve({job}): {}", describe(&e)));
}

/// What the tests check of a job: status, attempts, worker, whether its
/// database part is done (a receipt), and how many completion events the
/// audit log holds for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFacts {
    pub status: String,
    pub attempts: i32,
    pub worker: Option<String>,
    pub has_receipt: bool,
    pub completions: i64,
}

impl JobFacts {
    /// The job's database part ran (completed, or waiting for its stored
    /// files to be confirmed).
    pub fn ran(&self) -> bool {
        self.has_receipt && matches!(self.status.as_str(), "completed" | "processing")
    }
}

/// The facts of `job`.
pub async fn facts(c: &Client, job: Uuid) -> JobFacts {
    let r = c
        .query_one(
            "SELECT j.status, j.attempts, j.worker, j.result IS NOT NULL, \
                    (SELECT count(*) FROM lifecycle.audit_log a \
                      WHERE a.event_type = $2 AND a.details ->> 'job_id' = j.id::text) \
               FROM lifecycle.jobs j WHERE j.id = $1",
            &[&job, &events::ACCOUNT_PERMANENTLY_DELETED],
        )
        .await
        .unwrap_or_else(|e| panic!("job {job}: {}", describe(&e)));
    JobFacts {
        status: r.get(0),
        attempts: r.get(1),
        worker: r.get(2),
        has_receipt: r.get(3),
        completions: r.get(4),
    }
}

/// Asserts that `job` ran exactly once: one attempt, one completion event.
pub async fn assert_ran_once(c: &Client, job: Uuid) -> JobFacts {
    let f = facts(c, job).await;
    assert!(f.ran(), "job {job} did not run: {f:?}");
    assert_eq!(
        f.attempts, 1,
        "job {job} was attempted more than once: {f:?}"
    );
    assert_eq!(
        f.completions, 1,
        "job {job} completed more than once: {f:?}"
    );
    f
}

/// Wait for `job` to run (or fail the test after [`STEP_TIMEOUT`]: a guard
/// against hanging, not a timing assertion).
pub async fn wait_until_ran(c: &Client, job: Uuid) -> JobFacts {
    wait_for(&format!("job {job} to run"), || async {
        let f = facts(c, job).await;
        f.ran().then_some(f)
    })
    .await
}

/// Poll `check` until it yields a value; fails after [`STEP_TIMEOUT`].
pub async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < STEP_TIMEOUT,
            "waited {STEP_TIMEOUT:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The backend of the worker's session that listens for runnable jobs in
/// `db`, if there is one.
pub async fn listener_pid(observer: &Client, db: &str) -> Option<i32> {
    observer
        .query_opt(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query = $2",
            &[&db, &format!("LISTEN {}", worker::CHANNEL)],
        )
        .await
        .unwrap_or_else(|e| panic!("pg_stat_activity: {}", describe(&e)))
        .map(|r| r.get(0))
}

/// The backend of a session of `db` running `function` (a part of its
/// query's text) while it waits on a lock, once there is one.
pub async fn blocked_on_lock(observer: &Client, db: &str, function: &str) -> i32 {
    wait_for(&format!("{function} to wait on a lock"), || async {
        observer
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 \
                    AND strpos(query, $2) > 0 AND wait_event_type = 'Lock'",
                &[&db, &function],
            )
            .await
            .unwrap_or_else(|e| panic!("pg_stat_activity: {}", describe(&e)))
            .map(|r| r.get(0))
    })
    .await
}

/// The value of the metric `name` whose labels include every one of
/// `labels` (0 when it was never recorded).
pub fn metric(name: &str, labels: &[(&str, &str)]) -> f64 {
    let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    lifecycled::metrics::handle()
        .render()
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| wanted.iter().all(|w| line.contains(w.as_str())))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
