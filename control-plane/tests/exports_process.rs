//! Exports in real `lifecycled serve` processes: one killed (SIGKILL)
//! mid-export leaves no bundle behind, and another builds the job once its
//! lease has expired.

mod common;
mod exports_support;
mod worker_support;

use common::Binary;
use exports_support::*;
use lifecycle_tests::{count, exec, within};
use lifecycled::storage::{bundle_key, Storage};
use worker_support::*;

/// `lifecycled serve` with a worker `id` on `d`'s database, bundles in `dir`.
async fn serve(d: &Demo, id: &str, dir: &std::path::Path) -> Binary {
    let database = format!("{}={}", d.name(), d.service_url());
    let storage = format!("file://{}", dir.display());
    Binary::serve(
        &[
            "--database",
            &database,
            "--worker-id",
            id,
            "--worker-poll-secs",
            "1",
            "--worker-lease-secs",
            "2",
            "--storage-url",
            &storage,
        ],
        &[("RUST_LOG", "lifecycled=info")],
    )
    .await
}

#[tokio::test]
async fn a_process_killed_mid_export_leaves_no_bundle_and_another_builds_it_after_the_lease() {
    let d = demo("exports_sigkill", 20).await;
    let uid = non_admins(&d.c, 1).await[0];
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    // The export waits for this lock: it is mid-way when the process dies.
    let locker = d.connect().await;
    exec(
        &locker,
        "BEGIN; LOCK TABLE app.posts IN ACCESS EXCLUSIVE MODE",
    )
    .await;
    let mut killed = serve(&d, "killed", dir.path()).await;
    let job = request_export(&d.c, uid).await;
    let backend = blocked_on_lock(&d.c, d.name(), "open_export").await;
    let key = bundle_key(d.name(), job);
    let folder = dir.path().join(key.rsplit_once('/').unwrap().0);
    // The upload has begun: a staging file, never the bundle.
    let staged = || -> Vec<String> {
        std::fs::read_dir(&folder)
            .map(|entries| {
                entries
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = staged();
    assert!(
        !before.is_empty() && before.iter().all(|n| n.contains('#')),
        "a staging file, not the bundle: {before:?}"
    );

    let pid = killed.child.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    within("lifecycled to exit", killed.child.wait())
        .await
        .unwrap();
    wait_for("the killed worker's backend to end", || async {
        let left = count(
            &d.c,
            &format!("SELECT 1 FROM pg_stat_activity WHERE pid = {backend}"),
        )
        .await;
        (left == 0).then_some(())
    })
    .await;
    exec(&locker, "COMMIT").await;

    assert!(
        storage.head(&key).await.unwrap_err().is_not_found(),
        "no bundle"
    );
    assert!(storage.list("exports/").await.unwrap().is_empty());
    let row =
        d.c.query_one(
            "SELECT status, worker, attempts FROM lifecycle.jobs WHERE id = $1",
            &[&job],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, Option<String>>(1),
            row.get::<_, i32>(2)
        ),
        ("processing".to_owned(), Some("killed".to_owned()), 1)
    );
    assert_eq!(
        count(
            &d.c,
            &format!("SELECT 1 FROM lifecycle.export_bundles WHERE job_id = '{job}'")
        )
        .await,
        0
    );

    let heir = serve(&d, "heir", dir.path()).await;
    let result = wait_until_completed(&d.c, job).await;
    let row =
        d.c.query_one(
            "SELECT worker, attempts FROM lifecycle.jobs WHERE id = $1",
            &[&job],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, Option<String>>(0), row.get::<_, i32>(1)),
        (Some("heir".to_owned()), 2)
    );
    let bytes = read_object(&storage, &key).await;
    check_result(&result, &key, &bytes);
    let zip = Unzipped::new(&bytes);
    assert!(zip.entries.contains_key("account.json"), "{:?}", zip.names);
    // What the killed upload left is gone too.
    assert_eq!(staged(), [key.rsplit_once('/').unwrap().1.to_owned()]);
    let completions = count(
        &d.c,
        &format!(
            "SELECT 1 FROM lifecycle.audit_log WHERE event_type = 'data.export_completed' \
              AND details ->> 'job_id' = '{job}'"
        ),
    )
    .await;
    assert_eq!(completions, 1);

    let (status, output) = heir.terminate().await;
    assert!(status.success(), "{status}: {output}");
    d.cleanup().await;
}
