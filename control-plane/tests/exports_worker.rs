//! The export worker's other duties and failures: the expiry sweep deletes
//! a bundle whose entitlement ended and marks the export expired; anchors
//! of the audit chains are written, write-once, on a schedule; an export
//! whose store cannot be reached fails after its attempts with a message
//! that reveals nothing internal, and leaves no bundle; an export that a
//! table's row-level security would leave incomplete fails at once and says
//! so, naming no table.

mod exports_support;
mod worker_support;

use std::time::Duration;

use exports_support::*;
use lifecycle_tests::count;
use lifecycled::storage::{anchors_prefix, bundle_key, Storage};
use lifecycled::worker::{Anchor, FAILED_MESSAGE, ROW_SECURITY_MESSAGE};
use worker_support::*;

#[tokio::test]
async fn the_sweep_deletes_an_expired_bundle_and_marks_the_export_expired() {
    let d = demo("exports_sweep", 20).await;
    let uid = non_admins(&d.c, 1).await[0];
    let dir = tempfile::tempdir().unwrap();
    let bundles = Storage::local(dir.path()).unwrap();
    let args = lifecycled::config::StorageArgs {
        export_ttl: Duration::from_secs(3),
        ..storage_args()
    };
    let worker = start_worker(&d, "sweeper", &bundles, None, &args);

    let job = request_export(&d.c, uid).await;
    wait_until_completed(&d.c, job).await;
    let key = bundle_key(d.name(), job);
    assert!(bundles.head(&key).await.is_ok(), "stored");
    let expired = format!(
        "SELECT 1 FROM lifecycle.export_bundles WHERE job_id = '{job}' AND expired_at IS NOT NULL"
    );
    assert_eq!(count(&d.c, &expired).await, 0, "not before its time");

    wait_for("the export to expire", || async {
        (count(&d.c, &expired).await == 1).then_some(())
    })
    .await;
    assert!(
        bundles.head(&key).await.unwrap_err().is_not_found(),
        "the bundle is deleted"
    );
    let events = format!(
        "SELECT 1 FROM lifecycle.audit_log WHERE event_type = 'data.export_expired' \
          AND details ->> 'job_id' = '{job}'"
    );
    assert_eq!(count(&d.c, &events).await, 1);
    // Later sweeps leave it alone: one event, whatever the number of sweeps.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count(&d.c, &events).await, 1);
    assert!(
        metric(
            lifecycled::worker::EXPORTS_EXPIRED,
            &[("database", d.name())]
        ) >= 1.0
    );
    assert!(metric(lifecycled::worker::EXPORT_SWEEPS, &[("database", d.name())]) >= 2.0);

    worker.shutdown().await;
    d.cleanup().await;
}

#[tokio::test]
async fn anchors_of_the_audit_chains_are_written_once_each_on_a_schedule() {
    let d = demo("exports_anchor", 10).await;
    let dir = tempfile::tempdir().unwrap();
    let bundles = Storage::local(dir.path()).unwrap();
    let args = lifecycled::config::StorageArgs {
        anchor_interval: Duration::from_millis(700),
        ..storage_args()
    };
    let worker = start_worker(&d, "anchorer", &bundles, None, &args);
    let prefix = anchors_prefix(d.name());
    let objects = wait_for("two anchors", || async {
        let objects = bundles.list(&prefix).await.unwrap();
        (objects.len() >= 2).then_some(objects)
    })
    .await;
    worker.shutdown().await;

    let heads = d
        .c
        .query(
            "SELECT chain, last_id, last_hash, events FROM lifecycle.audit_chain_heads() ORDER BY chain",
            &[],
        )
        .await
        .unwrap();
    assert!(!heads.is_empty());
    let newest = objects.last().unwrap();
    let anchor: Anchor =
        serde_json::from_slice(&bundles.read_small(&newest.key, 1 << 20).await.unwrap()).unwrap();
    assert_eq!(anchor.database, d.name());
    assert_eq!(anchor.worker, "anchorer");
    assert_eq!(anchor.heads.len(), heads.len());
    for (a, h) in anchor.heads.iter().zip(&heads) {
        assert_eq!(
            (a.chain, a.last_id, a.last_hash.as_str(), a.events),
            (h.get(0), h.get(1), h.get::<_, String>(2).as_str(), h.get(3))
        );
    }
    // Keys sort by time; none is ever written twice.
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(keys, sorted);
    let again = bundles
        .put_new(&newest.key, bytes::Bytes::from_static(b"{}"))
        .await;
    assert!(again.is_err(), "write-once");
    assert!(
        metric(
            lifecycled::worker::ANCHORS_WRITTEN,
            &[("database", d.name())]
        ) >= 2.0
    );
    d.cleanup().await;
}

#[tokio::test]
async fn an_export_whose_store_is_down_fails_after_its_attempts_and_says_nothing_internal() {
    let d = demo("exports_store_down", 10).await;
    let uid = non_admins(&d.c, 1).await[0];
    // An S3 endpoint where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bundles = Storage::open_with(
        "s3://nowhere",
        &lifecycled::storage::S3Settings {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            region: Some("us-east-1".into()),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
        },
    )
    .unwrap();
    let mut worker_args = args("unlucky");
    worker_args.lease_secs = 1;
    let worker = start_worker_with(&d, worker_args, &bundles, None, &storage_args());

    let job = request_export(&d.c, uid).await;
    let attempts = expect_failed(
        &d.c,
        job,
        FAILED_MESSAGE,
        &["127.0.0.1", "nowhere", "s3", "connect", "error sending"],
    )
    .await;
    assert_eq!(attempts, lifecycled::worker::MAX_EXPORT_ATTEMPTS);
    worker.shutdown().await;
    d.cleanup().await;
}

#[tokio::test]
async fn an_export_row_level_security_would_leave_incomplete_fails_at_once() {
    let mut d = demo("exports_row_security", 10).await;
    let uid = non_admins(&d.c, 1).await[0];
    // The comments table belongs to a role that is not a superuser and
    // forces a tenant-isolation policy on it: in the worker's session the
    // setting is empty, so the policy would hide every comment.
    let owner = d.db.create_role("app_owner").await.expect("role");
    lifecycle_tests::exec(
        &d.c,
        &format!(
            "ALTER TABLE app.comments OWNER TO {o};
             ALTER TABLE app.comments ENABLE ROW LEVEL SECURITY;
             ALTER TABLE app.comments FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant_isolation ON app.comments
                 USING (workspace_id::text = current_setting('app.tenant', true));",
            o = owner.ident()
        ),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let bundles = Storage::local(dir.path()).unwrap();
    let worker = start_worker(&d, "strict", &bundles, None, &storage_args());
    let job = request_export(&d.c, uid).await;
    let attempts = expect_failed(
        &d.c,
        job,
        ROW_SECURITY_MESSAGE,
        &["comments", "tenant_isolation", "app_owner", "LC044"],
    )
    .await;
    assert_eq!(attempts, 1, "tried again although it cannot help");
    worker.shutdown().await;
    d.cleanup().await;
}

/// Wait until export `job` failed: it has no result and no bundle, its
/// error says `message` and none of `internal`. Returns its attempts.
async fn expect_failed(
    c: &tokio_postgres::Client,
    job: uuid::Uuid,
    message: &str,
    internal: &[&str],
) -> i32 {
    let (status, result) = wait_for_status(c, job, &["failed", "completed"]).await;
    assert_eq!(status, "failed");
    assert_eq!(result, None);
    let row = c
        .query_one(
            "SELECT error, attempts FROM lifecycle.jobs WHERE id = $1",
            &[&job],
        )
        .await
        .unwrap();
    let error: String = row.get(0);
    assert!(error.contains(message), "{error}");
    for internal in internal {
        assert!(!error.contains(internal), "{error}");
    }
    assert_eq!(
        count(
            c,
            &format!("SELECT 1 FROM lifecycle.export_bundles WHERE job_id = '{job}'")
        )
        .await,
        0
    );
    row.get(1)
}
