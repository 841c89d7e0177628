//! The worker in process (`worker::spawn`) against real databases: due jobs
//! run on their notification or at the next poll, several workers on one
//! queue run each job once, an expired lease is taken over, and a shutdown
//! lets a running job finish or hands it back.

mod worker_support;

use lifecycle_tests::{exec, one, text, Role};
use lifecycled::worker::{WorkerArgs, FAILURES, RUNS, TAKEOVERS};
use worker_support::*;

/// Settings under which only a notification wakes the worker once it is
/// idle: its poll would come after the test's guard against hanging.
fn no_poll(id: &str) -> WorkerArgs {
    WorkerArgs {
        poll_secs: 3600,
        ..args(id)
    }
}

#[tokio::test]
async fn an_approved_erasure_runs_on_its_notification() {
    let d = demo("worker_notify", 20).await;
    let (db, c) = (&d.db, &d.c);
    let users = non_admins(c, 2).await;
    let worker = start(d.databases(), no_poll("listener"));
    wait_for("the worker to listen", || async {
        listener_pid(c, &db.name).await
    })
    .await;

    // Twice: the first approval could meet the wake-up the listener gives
    // when it starts; the second can only be woken by its notification.
    for uid in users {
        let job = pending_erasure(c, uid).await;
        approve(c, job).await;
        let f = wait_until_ran(c, job).await;
        assert_eq!(f.worker.as_deref(), Some("listener"), "{f:?}");
        assert_ran_once(c, job).await;
    }

    worker.shutdown().await;
    d.cleanup().await;
}

#[tokio::test]
async fn a_broken_notification_session_is_opened_again() {
    let d = demo("worker_relisten", 20).await;
    let (db, c) = (&d.db, &d.c);
    let uid = non_admins(c, 1).await[0];
    let worker = start(d.databases(), no_poll("relistener"));
    let first = wait_for("the worker to listen", || async {
        listener_pid(c, &db.name).await
    })
    .await;
    let failures = metric(
        FAILURES,
        &[("database", &db.name), ("part", "notifications")],
    );
    exec(c, &format!("SELECT pg_terminate_backend({first})")).await;
    wait_for("a new notification session", || async {
        listener_pid(c, &db.name).await.filter(|&pid| pid != first)
    })
    .await;
    assert!(
        metric(
            FAILURES,
            &[("database", &db.name), ("part", "notifications")]
        ) > failures,
        "the broken session is counted"
    );

    let job = pending_erasure(c, uid).await;
    approve(c, job).await;
    wait_until_ran(c, job).await;
    assert_ran_once(c, job).await;

    worker.shutdown().await;
    d.cleanup().await;
}

#[tokio::test]
async fn a_job_whose_cooling_off_ends_runs_at_the_next_poll() {
    let d = demo("worker_poll", 20).await;
    let (db, c) = (&d.db, &d.c);
    let uid = non_admins(c, 1).await[0];
    let worker = start(d.databases(), args("poller"));
    // Nothing notifies the end of a cooling-off: only the poll finds it.
    let job = erasure(c, uid, "2 seconds").await;

    let f = wait_until_ran(c, job).await;
    assert_eq!(f.worker.as_deref(), Some("poller"), "{f:?}");
    assert_ran_once(c, job).await;
    assert_eq!(
        metric(RUNS, &[("database", &db.name), ("job_type", "erase")]),
        1.0
    );

    worker.shutdown().await;
    d.cleanup().await;
}

#[tokio::test]
async fn two_workers_on_one_queue_run_every_job_exactly_once() {
    let d = demo("worker_twice", 80).await;
    let (db, c) = (&d.db, &d.c);
    let users = non_admins(c, 30).await;
    let a = start(d.databases(), args("worker-a"));
    let b = start(d.databases(), args("worker-b"));

    let mut jobs = Vec::new();
    for uid in users {
        jobs.push(erasure(c, uid, "0").await);
    }
    let mut by_worker = std::collections::BTreeMap::<String, usize>::new();
    for &job in &jobs {
        wait_until_ran(c, job).await;
        let f = assert_ran_once(c, job).await;
        *by_worker.entry(f.worker.unwrap_or_default()).or_default() += 1;
    }
    // Every run was one of the two workers' (`run_due_jobs` has a name of
    // its own); how they shared the queue is theirs to decide.
    assert!(
        by_worker.keys().all(|w| w == "worker-a" || w == "worker-b"),
        "{by_worker:?}"
    );
    assert_eq!(
        metric(RUNS, &[("database", &db.name)]),
        jobs.len() as f64,
        "one run counted per job"
    );
    let (ok, _, _) = lifecycle_tests::verify_audit_log(c).await;
    assert!(ok, "the audit chain verifies");

    a.shutdown().await;
    b.shutdown().await;
    d.cleanup().await;
}

#[tokio::test]
async fn a_job_left_by_a_dead_worker_is_taken_over_when_its_lease_expires() {
    let d = demo("worker_takeover", 20).await;
    let (db, c) = (&d.db, &d.c);
    let uid = non_admins(c, 1).await[0];
    let job = erasure(c, uid, "0").await;
    // A worker that claims and dies before running anything.
    let claimed = text(
        c,
        "SELECT lifecycle.claim_job('dead-worker', '1 second', ARRAY['erase']) ->> 'id'",
    )
    .await;
    assert_eq!(claimed, job.to_string());

    let worker = start(d.databases(), args("heir"));
    let f = wait_until_ran(c, job).await;
    assert_eq!(f.worker.as_deref(), Some("heir"), "{f:?}");
    assert_ran_once(c, job).await;
    assert_eq!(
        metric(TAKEOVERS, &[("database", &db.name), ("job_type", "erase")]),
        1.0
    );

    worker.shutdown().await;
    d.cleanup().await;
}

#[tokio::test]
async fn shutdown_lets_a_running_job_finish() {
    let d = demo("worker_finish", 20).await;
    let (db, c) = (&d.db, &d.c);
    let uid = non_admins(c, 1).await[0];
    // The job waits for this lock, so it is running when shutdown starts.
    let locker = db.connect(&Role::Superuser).await.unwrap();
    exec(
        &locker,
        "BEGIN; LOCK TABLE app.sessions IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let worker = start(d.databases(), args("finisher"));
    let job = erasure(c, uid, "0").await;
    blocked_on_lock(c, &db.name, "lifecycle.run_job").await;

    let shutdown = tokio::spawn(worker.shutdown());
    exec(&locker, "COMMIT").await;
    lifecycle_tests::within("shutdown", shutdown).await.unwrap();

    let f = assert_ran_once(c, job).await;
    assert_eq!(f.worker.as_deref(), Some("finisher"), "{f:?}");
    d.cleanup().await;
}

#[tokio::test]
async fn a_job_still_running_after_the_grace_goes_back_whole_and_runs_once() {
    let d = demo("worker_grace", 20).await;
    let (db, c) = (&d.db, &d.c);
    let uid = non_admins(c, 1).await[0];
    let sessions_before = lifecycle_tests::count(
        c,
        &format!("SELECT 1 FROM app.sessions WHERE user_id = {uid}"),
    )
    .await;
    let locker = db.connect(&Role::Superuser).await.unwrap();
    exec(
        &locker,
        "BEGIN; LOCK TABLE app.sessions IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let worker = start(
        d.databases(),
        lifecycled::worker::WorkerArgs {
            shutdown_grace_secs: 0,
            ..args("impatient")
        },
    );
    let job = erasure(c, uid, "0").await;
    blocked_on_lock(c, &db.name, "lifecycle.run_job").await;

    lifecycle_tests::within("shutdown", worker.shutdown()).await;
    exec(&locker, "COMMIT").await;

    // Cancelled: nothing of the erasure stayed, and the job is due again.
    let f = facts(c, job).await;
    assert!(!f.has_receipt && f.completions == 0, "{f:?}");
    assert_eq!(
        lifecycle_tests::count(
            c,
            &format!("SELECT 1 FROM app.sessions WHERE user_id = {uid}")
        )
        .await,
        sessions_before,
        "the cancelled erasure left no change"
    );
    assert_eq!(
        lifecycle_tests::one::<String>(
            c,
            &format!("SELECT lifecycle.subject_state('user', '{uid}')")
        )
        .await,
        "pending_deletion"
    );

    let next = start(d.databases(), args("next"));
    let f = wait_until_ran(c, job).await;
    assert_eq!(f.completions, 1, "{f:?}");
    assert_eq!(f.worker.as_deref(), Some("next"), "{f:?}");
    next.shutdown().await;
    d.cleanup().await;
}

#[tokio::test]
async fn a_job_claimed_as_the_worker_stops_is_handed_back_unstarted() {
    let d = demo("worker_hand_back", 20).await;
    let (db, c) = (&d.db, &d.c);
    let uid = non_admins(c, 1).await[0];
    let job = erasure(c, uid, "0").await;
    // The worker's first claim waits for this lock, and takes the job only
    // after the shutdown has begun.
    let locker = db.connect(&Role::Superuser).await.unwrap();
    exec(&locker, "BEGIN; LOCK TABLE lifecycle.jobs IN SHARE MODE").await;
    let worker = start(d.databases(), args("stopping"));
    blocked_on_lock(c, &db.name, "lifecycle.claim_job").await;

    let shutdown = worker.shutdown();
    exec(&locker, "COMMIT").await;
    lifecycle_tests::within("shutdown", shutdown).await;

    let f = facts(c, job).await;
    assert_eq!(
        (
            f.status.as_str(),
            f.worker.as_deref(),
            f.attempts,
            f.has_receipt
        ),
        ("approved", None, 0, false),
        "handed back as it was: {f:?}"
    );
    assert_eq!(
        metric(RUNS, &[("database", &db.name), ("outcome", "released")]),
        1.0
    );
    assert_eq!(
        one::<i64>(
            c,
            &format!(
                "SELECT count(*) FROM lifecycle.audit_log \
                  WHERE details ->> 'job_id' = '{job}' AND details ->> 'worker' = 'stopping'"
            )
        )
        .await,
        1,
        "the release is an audit event"
    );

    let next = start(d.databases(), args("next"));
    wait_until_ran(c, job).await;
    assert_ran_once(c, job).await;
    next.shutdown().await;
    d.cleanup().await;
}

#[tokio::test]
async fn a_job_running_past_its_lease_is_not_taken_over() {
    let d = demo("worker_long_run", 20).await;
    let uid = non_admins(&d.c, 1).await[0];
    let locker = d.connect().await;
    exec(
        &locker,
        "BEGIN; LOCK TABLE app.sessions IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let a = start(d.databases(), args("long-a"));
    let b = start(d.databases(), args("long-b"));
    let job = erasure(&d.c, uid, "0").await;
    blocked_on_lock(&d.c, d.name(), "lifecycle.run_job").await;

    // The run outlives its lease (renewals find the row locked by the run
    // itself); a claim still skips the job, whoever asks.
    wait_for("the lease to expire", || async {
        one::<bool>(
            &d.c,
            &format!("SELECT lease_expires_at < now() FROM lifecycle.jobs WHERE id = '{job}'"),
        )
        .await
        .then_some(())
    })
    .await;
    exec(&d.c, &format!("NOTIFY {}", lifecycled::worker::CHANNEL)).await;
    assert_eq!(
        text(
            &d.c,
            "SELECT coalesce(lifecycle.claim_job('probe', '1 minute', ARRAY['erase']) ->> 'id', 'none')"
        )
        .await,
        "none"
    );
    exec(&locker, "COMMIT").await;

    let f = wait_until_ran(&d.c, job).await;
    assert_ran_once(&d.c, job).await;
    assert!(
        matches!(f.worker.as_deref(), Some("long-a" | "long-b")),
        "{f:?}"
    );
    assert_eq!(metric(TAKEOVERS, &[("database", d.name())]), 0.0);
    assert_eq!(
        metric(FAILURES, &[("database", d.name()), ("part", "lease")]),
        0.0,
        "a renewal that meets the run's own lock is not a failure"
    );

    a.shutdown().await;
    b.shutdown().await;
    d.cleanup().await;
}
