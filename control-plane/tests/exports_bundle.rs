//! Export bundles built by a real worker against a real database, stored in
//! a local directory and in a real S3-compatible server (`s3s-fs`),
//! unzipped and checked file by file: every file the README names exists,
//! labels head the CSVs, times are ISO 8601, non-Latin names are intact in
//! JSON and CSV, stored files are there byte for byte, nothing of another
//! member is anywhere, excluded columns are absent.

mod exports_support;
mod worker_support;

use exports_support::*;
use lifecycle_tests::s3::S3Server;
use lifecycled::storage::{bundle_key, Storage};

#[tokio::test]
async fn a_bundle_in_a_local_directory_holds_the_subjects_data_and_nothing_else() {
    let s = subject("exports_local", 40).await;
    let dir = tempfile::tempdir().unwrap();
    let bundles = Storage::local(&dir.path().join("bundles")).unwrap();
    let files = Storage::local(&dir.path().join("files")).unwrap();
    s.store_objects(&files).await;
    let worker = start_worker(
        &s.demo,
        "exports-local",
        &bundles,
        Some(&files),
        &storage_args(),
    );

    let job = s.request_export().await;
    let result = wait_until_completed(&s.demo.c, job).await;
    let key = bundle_key(s.demo.name(), job);
    let bytes = read_object(&bundles, &key).await;
    check_result(&result, &key, &bytes);
    let zip = check_bundle(&s, &bytes);
    assert_eq!(
        result["bundle"]["files"],
        zip.names.len() as u64,
        "{result}"
    );
    // The bundle is a file of the directory, under its key.
    assert_eq!(
        std::fs::read(dir.path().join("bundles").join(&key)).unwrap(),
        bytes
    );
    // The bundle was recorded where downloads look for it.
    let row = s
        .demo
        .c
        .query_one(
            "SELECT object_key, size_bytes, sha256 FROM lifecycle.export_bundles WHERE job_id = $1",
            &[&job],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), key);
    assert_eq!(row.get::<_, i64>(1), bytes.len() as i64);
    assert_eq!(
        worker_support::metric(
            lifecycled::worker::EXPORTS_BUILT,
            &[("database", s.demo.name())]
        ),
        1.0
    );

    worker.shutdown().await;
    s.demo.cleanup().await;
}

#[tokio::test]
async fn a_bundle_in_s3_holds_the_same_and_a_presigned_url_serves_it() {
    let server = S3Server::start("bundles").expect("s3s-fs");
    let s = subject("exports_s3", 40).await;
    let bundles = s3_store(&server, "bundles");
    let files = s3_store(&server, "uploads");
    s.store_objects(&files).await;
    let worker = start_worker(
        &s.demo,
        "exports-s3",
        &bundles,
        Some(&files),
        &storage_args(),
    );

    let job = s.request_export().await;
    let result = wait_until_completed(&s.demo.c, job).await;
    let key = bundle_key(s.demo.name(), job);
    let bytes = read_object(&bundles, &key).await;
    check_result(&result, &key, &bytes);
    check_bundle(&s, &bytes);
    assert_eq!(bundles.head(&key).await.unwrap(), bytes.len() as u64);

    let url = bundles
        .presign_get(&key, std::time::Duration::from_secs(300))
        .await
        .unwrap()
        .expect("S3 signs URLs");
    let response = reqwest::get(&url).await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    assert_eq!(response.bytes().await.unwrap().as_ref(), &bytes[..]);
    // Without the signature the server refuses.
    let unsigned = url.split('?').next().unwrap();
    assert!(!reqwest::get(unsigned).await.unwrap().status().is_success());

    worker.shutdown().await;
    s.demo.cleanup().await;
}

#[tokio::test]
async fn a_workspace_bundle_holds_every_row_of_the_workspace_and_no_other() {
    let s = subject("exports_workspace", 30).await;
    let c = &s.demo.c;
    let workspace: uuid::Uuid = c
        .query_one(
            "SELECT workspace_id FROM app.posts WHERE body LIKE $1",
            &[&format!("{}%", s.other_text)],
        )
        .await
        .unwrap()
        .get(0);
    let dir = tempfile::tempdir().unwrap();
    let bundles = Storage::local(dir.path()).unwrap();
    let worker = start_worker(&s.demo, "exports-ws", &bundles, None, &storage_args());

    let job: uuid::Uuid = c
        .query_one(
            "SELECT lifecycle.request_export('workspace', $1, $1, 'owner@example.com', 'workspace export')",
            &[&workspace.to_string()],
        )
        .await
        .unwrap()
        .get(0);
    wait_until_completed(c, job).await;
    let bytes = read_object(&bundles, &bundle_key(s.demo.name(), job)).await;
    let zip = Unzipped::new(&bytes);
    let readme = zip.text("README.md");
    assert!(
        readme.contains(&format!(
            "about workspace {workspace}: every row that belongs to the workspace"
        )),
        "{readme}"
    );
    assert!(readme.contains("- **Other workspaces.**"), "{readme}");
    let account = zip.json("workspace.json");
    assert_eq!(account.len(), 1);
    assert_eq!(
        account[0]["ID"],
        workspace.to_string().as_str(),
        "{account:?}"
    );
    // Every post of the workspace, the other member's among them; none of
    // another workspace.
    let posts = zip.json("posts.json");
    let expected: i64 = c
        .query_one(
            "SELECT count(*) FROM app.posts WHERE workspace_id = $1",
            &[&workspace],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(posts.len() as i64, expected);
    assert!(posts
        .iter()
        .all(|p| p["Workspace ID"] == workspace.to_string().as_str()));
    assert!(posts.iter().any(|p| p["Body"]
        .as_str()
        .is_some_and(|b| b.starts_with(&s.other_text))));
    let (header, records) = zip.csv("posts.csv");
    assert_eq!(header[0], "ID");
    assert_eq!(records.len() as i64, expected);

    worker.shutdown().await;
    s.demo.cleanup().await;
}
