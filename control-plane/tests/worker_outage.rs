//! The worker while a database is away: refusing connections, restarted,
//! or one of two down. It notices, keeps serving the others, and resumes
//! without a restart of its own.

mod worker_support;

use lifecycle_tests::cluster::OwnCluster;
use lifecycle_tests::{connect_admin, exec, quote_ident, TestDb};
use lifecycled::worker::FAILURES;
use tokio_postgres::Client;
use worker_support::*;

/// The failed calls of the worker's queue loop to `database` so far.
fn queue_failures(database: &str) -> f64 {
    metric(FAILURES, &[("database", database), ("part", "queue")])
}

/// Wait until the worker's queue loop has failed to reach `database` more
/// often than `before`.
async fn wait_for_failures(database: &str, before: f64) {
    wait_for("the worker to notice its database is away", || async {
        (queue_failures(database) > before).then_some(())
    })
    .await;
}

/// Refuse every connection to `db` and end those it has, as a database
/// that is down does.
async fn take_down(admin: &Client, db: &TestDb) {
    exec(
        admin,
        &format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            quote_ident(&db.name),
            db.name
        ),
    )
    .await;
}

async fn bring_back(admin: &Client, db: &TestDb) {
    exec(
        admin,
        &format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            quote_ident(&db.name)
        ),
    )
    .await;
}

#[tokio::test]
async fn the_worker_resumes_when_its_database_takes_connections_again() {
    let d = demo("worker_outage", 20).await;
    let users = non_admins(&d.c, 2).await;
    let worker = start(d.databases(), args("outlasting"));
    let before = erasure(&d.c, users[0], "0").await;
    wait_until_ran(&d.c, before).await;

    let admin = connect_admin().await.unwrap();
    let failures = queue_failures(d.name());
    take_down(&admin, &d.db).await;
    wait_for_failures(d.name(), failures).await;
    bring_back(&admin, &d.db).await;

    let c = d.connect().await;
    let after = erasure(&c, users[1], "0").await;
    wait_until_ran(&c, after).await;
    assert_ran_once(&c, before).await;
    assert_ran_once(&c, after).await;
    wait_for("the notification session to be back", || async {
        listener_pid(&c, d.name()).await
    })
    .await;

    worker.shutdown().await;
    d.cleanup().await;
}

#[tokio::test]
async fn one_database_down_does_not_stop_the_others() {
    let down = demo("worker_down", 20).await;
    let up = demo("worker_up", 20).await;
    let worker = start(
        databases(&[
            (down.name(), down.service_url()),
            (up.name(), up.service_url()),
        ]),
        args("two-databases"),
    );
    let down_user = non_admins(&down.c, 1).await[0];
    let up_users = non_admins(&up.c, 2).await;

    let admin = connect_admin().await.unwrap();
    let failures = queue_failures(down.name());
    take_down(&admin, &down.db).await;
    wait_for_failures(down.name(), failures).await;

    // While one is down, the other's jobs run, one after the other.
    for &uid in &up_users {
        let job = erasure(&up.c, uid, "0").await;
        wait_until_ran(&up.c, job).await;
        assert_ran_once(&up.c, job).await;
    }

    bring_back(&admin, &down.db).await;
    let down_c = down.connect().await;
    let job = erasure(&down_c, down_user, "0").await;
    wait_until_ran(&down_c, job).await;
    assert_ran_once(&down_c, job).await;

    worker.shutdown().await;
    down.cleanup().await;
    up.cleanup().await;
}

#[tokio::test]
async fn the_worker_resumes_after_postgresql_restarts() {
    let mut cluster = OwnCluster::start("worker_restart").expect("own cluster");
    let setup = cluster.connect("postgres").await.unwrap();
    exec(&setup, "CREATE DATABASE restart").await;
    exec(&setup, "CREATE ROLE lifecycled_svc LOGIN").await;
    let mut c = cluster.connect("restart").await.unwrap();
    exec(&c, "CREATE EXTENSION lifecycle").await;
    load_demo(&c, 20).await;
    prepare(&mut c, "lifecycled_svc").await;
    let users = non_admins(&c, 2).await;
    // The name the worker knows the database by, unique in this process's
    // metrics.
    let name = format!("restart_{}", cluster.port());
    let worker = start(
        databases(&[(&name, cluster.url("restart", "lifecycled_svc"))]),
        args("restarted"),
    );
    let before = erasure(&c, users[0], "0").await;
    wait_until_ran(&c, before).await;

    let failures = queue_failures(&name);
    cluster.stop().expect("stop");
    wait_for_failures(&name, failures).await;
    cluster.restart().expect("start again");

    let c = cluster.connect("restart").await.unwrap();
    let after = erasure(&c, users[1], "0").await;
    wait_until_ran(&c, after).await;
    assert_ran_once(&c, before).await;
    assert_ran_once(&c, after).await;

    worker.shutdown().await;
}
