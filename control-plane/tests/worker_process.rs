//! The worker in real `lifecycled serve` processes: two on one queue run
//! each job once; one killed mid-erasure leaves nothing half-done and its job
//! is completed once by another; SIGTERM lets the running job finish, or
//! hands it back once the grace is over, and the process exits with 0; with
//! two databases, one PostgreSQL stopped leaves the other's jobs running,
//! and once it is back its jobs run too.

mod common;
mod worker_support;

use common::Binary;
use lifecycle_tests::cluster::OwnCluster;
use lifecycle_tests::{count, exec, within};
use worker_support::*;

/// `lifecycled serve` with a worker called `id` on `d`'s database, polling
/// every second, with leases of two seconds, and `extra` flags.
async fn serve(d: &Demo, id: &str, extra: &[&str]) -> Binary {
    serve_on(&[(d.name(), d.service_url())], id, extra).await
}

/// `lifecycled serve` as [`serve`] does, on the databases `(name, url)`.
async fn serve_on(databases: &[(&str, String)], id: &str, extra: &[&str]) -> Binary {
    let databases: Vec<String> = databases
        .iter()
        .map(|(name, url)| format!("{name}={url}"))
        .collect();
    let mut args = Vec::new();
    for database in &databases {
        args.extend(["--database", database.as_str()]);
    }
    args.extend([
        "--worker-id",
        id,
        "--worker-poll-secs",
        "1",
        "--worker-lease-secs",
        "2",
    ]);
    args.extend_from_slice(extra);
    Binary::serve(&args, &[("RUST_LOG", "lifecycled=info")]).await
}

/// Send `signal` (`TERM`, `KILL`) to the process.
fn signal(process: &Binary, signal: &str) {
    let pid = process.child.id().expect("running");
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Wait for the process to exit; its status.
async fn exit(process: &mut Binary) -> std::process::ExitStatus {
    within("lifecycled to exit", process.child.wait())
        .await
        .expect("exit status")
}

/// Wait until the process has written `line`.
async fn wait_for_output(process: &Binary, line: &str) {
    wait_for(&format!("lifecycled to log {line:?}"), || async {
        process.output().contains(line).then_some(())
    })
    .await;
}

/// Wait until backend `pid` has ended.
async fn wait_until_gone(d: &Demo, pid: i32) {
    wait_for("the killed worker's backend to end", || async {
        let left = count(
            &d.c,
            &format!("SELECT 1 FROM pg_stat_activity WHERE pid = {pid}"),
        )
        .await;
        (left == 0).then_some(())
    })
    .await;
}

#[tokio::test]
async fn two_processes_on_one_queue_run_every_job_exactly_once() {
    let d = demo("worker_processes", 80).await;
    let users = non_admins(&d.c, 30).await;
    let a = serve(&d, "process-a", &[]).await;
    let b = serve(&d, "process-b", &[]).await;

    let mut jobs = Vec::new();
    for uid in users {
        jobs.push(erasure(&d.c, uid, "0").await);
    }
    for &job in &jobs {
        wait_until_ran(&d.c, job).await;
        let f = assert_ran_once(&d.c, job).await;
        assert!(
            matches!(f.worker.as_deref(), Some("process-a" | "process-b")),
            "{f:?}"
        );
    }

    for process in [a, b] {
        let (status, output) = process.terminate().await;
        assert!(status.success(), "{status}: {output}");
    }
    d.cleanup().await;
}

#[tokio::test]
async fn a_process_killed_mid_erasure_leaves_nothing_and_another_completes_the_job_once() {
    let d = demo("worker_sigkill", 20).await;
    let uid = non_admins(&d.c, 1).await[0];
    let sessions = format!("SELECT 1 FROM app.sessions WHERE user_id = {uid}");
    let sessions_before = count(&d.c, &sessions).await;
    // The erasure waits for this lock: it is mid-way when the process dies.
    let locker = d.connect().await;
    exec(
        &locker,
        "BEGIN; LOCK TABLE app.sessions IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let mut killed = serve(&d, "killed", &[]).await;
    let job = erasure(&d.c, uid, "0").await;
    let backend = blocked_on_lock(&d.c, d.name(), "lifecycle.run_job").await;

    signal(&killed, "KILL");
    exit(&mut killed).await;
    // The backend ends (it checks its client every second) while the lock is
    // still held: its transaction could only roll back.
    wait_until_gone(&d, backend).await;
    exec(&locker, "COMMIT").await;
    let f = facts(&d.c, job).await;
    assert_eq!(
        (
            f.status.as_str(),
            f.worker.as_deref(),
            f.attempts,
            f.has_receipt,
            f.completions
        ),
        ("processing", Some("killed"), 0, false, 0),
        "claimed, and nothing of the run kept: {f:?}"
    );
    assert_eq!(count(&d.c, &sessions).await, sessions_before);

    let heir = serve(&d, "heir", &[]).await;
    let f = wait_until_ran(&d.c, job).await;
    assert_eq!(f.worker.as_deref(), Some("heir"), "{f:?}");
    assert_ran_once(&d.c, job).await;
    let metrics = reqwest::get(heir.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with(lifecycled::worker::TAKEOVERS)
                && l.contains(d.name())
                && l.ends_with(" 1")),
        "the takeover is counted: {metrics}"
    );

    let (status, output) = heir.terminate().await;
    assert!(status.success(), "{status}: {output}");
    d.cleanup().await;
}

#[tokio::test]
async fn sigterm_lets_the_running_job_finish_then_exits_0() {
    let d = demo("worker_sigterm", 20).await;
    let uid = non_admins(&d.c, 1).await[0];
    let locker = d.connect().await;
    exec(
        &locker,
        "BEGIN; LOCK TABLE app.sessions IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let mut process = serve(&d, "terminated", &[]).await;
    let job = erasure(&d.c, uid, "0").await;
    let backend = blocked_on_lock(&d.c, d.name(), "lifecycle.run_job").await;

    signal(&process, "TERM");
    wait_for_output(&process, "worker stopping").await;
    // Stopping, not gone: the job still runs.
    assert!(
        process.child.try_wait().unwrap().is_none(),
        "{}",
        process.output()
    );
    assert_eq!(
        count(
            &d.c,
            &format!("SELECT 1 FROM pg_stat_activity WHERE pid = {backend}")
        )
        .await,
        1
    );
    exec(&locker, "COMMIT").await;

    let status = exit(&mut process).await;
    assert!(status.success(), "{status}: {}", process.output());
    let f = assert_ran_once(&d.c, job).await;
    assert_eq!(f.worker.as_deref(), Some("terminated"), "{f:?}");
    d.cleanup().await;
}

#[tokio::test]
async fn sigterm_hands_a_job_still_running_after_the_grace_back_and_exits_0() {
    let d = demo("worker_sigterm_grace", 20).await;
    let uid = non_admins(&d.c, 1).await[0];
    let locker = d.connect().await;
    exec(
        &locker,
        "BEGIN; LOCK TABLE app.sessions IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let mut process = serve(&d, "hurried", &["--worker-shutdown-grace-secs", "1"]).await;
    let job = erasure(&d.c, uid, "0").await;
    blocked_on_lock(&d.c, d.name(), "lifecycle.run_job").await;

    signal(&process, "TERM");
    // The lock is never released: the process must still exit.
    let status = exit(&mut process).await;
    assert!(status.success(), "{status}: {}", process.output());
    exec(&locker, "COMMIT").await;
    let f = facts(&d.c, job).await;
    assert!(
        !f.has_receipt && f.completions == 0,
        "nothing of it kept: {f:?}"
    );

    let next = serve(&d, "next", &[]).await;
    let f = wait_until_ran(&d.c, job).await;
    assert_eq!(
        (f.worker.as_deref(), f.completions),
        (Some("next"), 1),
        "{f:?}"
    );
    let (status, output) = next.terminate().await;
    assert!(status.success(), "{status}: {output}");
    d.cleanup().await;
}

#[tokio::test]
async fn with_one_postgresql_stopped_the_other_database_runs_and_the_first_resumes() {
    let mut cluster = OwnCluster::start("worker_process_restart").expect("own cluster");
    let setup = cluster.connect("postgres").await.unwrap();
    exec(&setup, "CREATE DATABASE stopped").await;
    exec(&setup, "CREATE ROLE lifecycled_svc LOGIN").await;
    let mut own = cluster.connect("stopped").await.unwrap();
    exec(&own, "CREATE EXTENSION lifecycle").await;
    load_demo(&own, 20).await;
    prepare(&mut own, "lifecycled_svc").await;
    let own_users = non_admins(&own, 2).await;
    let shared = demo("worker_process_other", 20).await;
    let shared_users = non_admins(&shared.c, 2).await;
    let mut process = serve_on(
        &[
            ("stopped", cluster.url("stopped", "lifecycled_svc")),
            (shared.name(), shared.service_url()),
        ],
        "two-clusters",
        &[],
    )
    .await;
    let job = erasure(&own, own_users[0], "0").await;
    wait_until_ran(&own, job).await;

    cluster.stop().expect("stop");
    wait_for_output(&process, "worker cannot reach the database").await;
    let job = erasure(&shared.c, shared_users[0], "0").await;
    wait_until_ran(&shared.c, job).await;
    assert_ran_once(&shared.c, job).await;

    cluster.restart().expect("start again");
    let own = cluster.connect("stopped").await.unwrap();
    let job = erasure(&own, own_users[1], "0").await;
    wait_until_ran(&own, job).await;
    assert_ran_once(&own, job).await;
    wait_for_output(&process, "worker reaches the database again").await;
    assert!(
        process.child.try_wait().unwrap().is_none(),
        "still the same process"
    );

    signal(&process, "TERM");
    let status = exit(&mut process).await;
    assert!(status.success(), "{status}: {}", process.output());
    shared.cleanup().await;
}
