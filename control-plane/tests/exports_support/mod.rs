//! What the export tests share: a demo database with a subject whose data
//! the tests can recognise (non-Latin names, a post of their own, stored
//! files) and another member whose data must never show, export jobs,
//! workers that build them, and the checks of an unzipped bundle.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use lifecycle_tests::{describe, exec};
use lifecycled::config::StorageArgs;
use lifecycled::storage::{S3Settings, Storage};
use lifecycled::worker::{self, Exports, WorkerArgs, WorkerHandle};
use tokio_postgres::Client;
use uuid::Uuid;

use crate::worker_support::{self, wait_for, Demo};

/// The subject's name, in Latin script with diacritics.
pub const NAME: &str = "Zoë Ångström";
/// Their display name, in another script.
pub const DISPLAY_NAME: &str = "山田太郎";

/// A demo database prepared for an export of one subject.
pub struct Subject {
    pub demo: Demo,
    /// The subject (a user who uploaded files and shares a workspace with
    /// [`Self::other`]).
    pub id: i64,
    pub email: String,
    /// Another member of one of the subject's workspaces.
    pub other: i64,
    pub other_email: String,
    /// Text only the other member wrote (a post and a comment on the
    /// subject's post).
    pub other_text: String,
    /// The subject's API key hash (a column the data map excludes).
    pub key_hash: String,
    /// The stored objects of the subject's files: key -> bytes (one key,
    /// [`Self::missing_key`], is never stored).
    pub objects: BTreeMap<String, Vec<u8>>,
    pub missing_key: String,
}

/// A demo database with `users` people; the subject is the user with the
/// most files who shares a workspace with someone else.
pub async fn subject(prefix: &str, users: i32) -> Subject {
    let demo = worker_support::demo(prefix, users).await;
    let c = &demo.c;
    let row = c
        .query_one(
            "SELECT f.uploaded_by, o.user_id, f.workspace_id \
               FROM app.files f \
               JOIN app.memberships o ON o.workspace_id = f.workspace_id AND o.user_id <> f.uploaded_by \
              GROUP BY f.uploaded_by, o.user_id, f.workspace_id \
              ORDER BY count(*) DESC, f.uploaded_by, o.user_id LIMIT 1",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("subject: {}", describe(&e)));
    let (id, other, workspace): (i64, i64, Uuid) = (row.get(0), row.get(1), row.get(2));
    exec(
        c,
        &format!(
            "UPDATE app.users SET name = '{NAME}', display_name = '{DISPLAY_NAME}' WHERE id = {id}"
        ),
    )
    .await;
    let email: String = one(c, &format!("SELECT email FROM app.users WHERE id = {id}")).await;
    let other_email: String = one(
        c,
        &format!("SELECT email FROM app.users WHERE id = {other}"),
    )
    .await;
    let other_text = format!("not-yours-{}", Uuid::new_v4().simple());
    let post: i64 = one(
        c,
        &format!(
            "INSERT INTO app.posts (workspace_id, author_id, title, body) \
             VALUES ('{workspace}', {id}, 'Über {DISPLAY_NAME}', 'Ein \"Zitat\", mit Komma\nund Zeile — {NAME}') \
             RETURNING id"
        ),
    )
    .await;
    exec(
        c,
        &format!(
            "INSERT INTO app.posts (workspace_id, author_id, title, body) \
             VALUES ('{workspace}', {other}, 'theirs', '{other_text} {other_email}'); \
             INSERT INTO app.comments (workspace_id, post_id, author_id, body) \
             VALUES ('{workspace}', {post}, {other}, '{other_text} on your post')"
        ),
    )
    .await;
    let key_hash = format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple());
    exec(
        c,
        &format!(
            "INSERT INTO app.api_keys (user_id, workspace_id, name, key_prefix, key_hash) \
             VALUES ({id}, '{workspace}', 'CI key', 'lc_0123abcd', '{key_hash}')"
        ),
    )
    .await;
    let keys: Vec<String> = c
        .query(
            "SELECT storage_key FROM app.files WHERE uploaded_by = $1 ORDER BY storage_key",
            &[&id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(keys.len() >= 2, "the subject has files: {keys:?}");
    let missing_key = keys[0].clone();
    let objects = keys[1..]
        .iter()
        .enumerate()
        .map(|(i, k)| {
            // Bytes that are not text, and one object larger than a chunk.
            let len = if i == 0 { 700_000 } else { 1 + i * 37 };
            let bytes = (0..len).map(|j| ((j * 131 + i * 7) % 256) as u8).collect();
            (k.clone(), bytes)
        })
        .collect();
    Subject {
        demo,
        id,
        email,
        other,
        other_email,
        other_text,
        key_hash,
        objects,
        missing_key,
    }
}

async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(c: &Client, sql: &str) -> T {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

impl Subject {
    /// Put the subject's stored objects into `files`.
    pub async fn store_objects(&self, files: &Storage) {
        for (key, bytes) in &self.objects {
            files
                .put_new(key, Bytes::from(bytes.clone()))
                .await
                .expect("stored object");
        }
    }

    /// An export of the subject, approved (claimable at once).
    pub async fn request_export(&self) -> Uuid {
        request_export(&self.demo.c, self.id).await
    }
}

/// An export of user `id`, requested by themselves.
pub async fn request_export(c: &Client, id: i64) -> Uuid {
    c.query_one(
        "SELECT lifecycle.request_export('user', $1, NULL, $2, 'export test')",
        &[&id.to_string(), &format!("user:{id}")],
    )
    .await
    .unwrap_or_else(|e| panic!("request_export({id}): {}", describe(&e)))
    .get(0)
}

/// Storage settings for tests: short periods.
pub fn storage_args() -> StorageArgs {
    StorageArgs {
        export_ttl: Duration::from_secs(7 * 24 * 3600),
        export_sweep_interval: Duration::from_millis(500),
        anchor_interval: Duration::from_secs(3600),
        ..StorageArgs::default()
    }
}

/// A worker `id` on `demo` that builds exports into `bundles`, copying
/// stored objects from `files`.
pub fn start_worker(
    demo: &Demo,
    id: &str,
    bundles: &Storage,
    files: Option<&Storage>,
    args: &StorageArgs,
) -> WorkerHandle {
    start_worker_with(demo, worker_support::args(id), bundles, files, args)
}

/// [`start_worker`] with worker settings of the test's own.
pub fn start_worker_with(
    demo: &Demo,
    worker_args: WorkerArgs,
    bundles: &Storage,
    files: Option<&Storage>,
    args: &StorageArgs,
) -> WorkerHandle {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    lifecycled::metrics::handle();
    worker::spawn_with_exports(
        demo.databases(),
        worker_args,
        Exports::with_stores(bundles.clone(), files.cloned(), args),
    )
}

/// The job's status and result, once it has one of `statuses`.
pub async fn wait_for_status(
    c: &Client,
    job: Uuid,
    statuses: &[&str],
) -> (String, Option<serde_json::Value>) {
    wait_for(
        &format!("export {job} to be one of {statuses:?}"),
        || async {
            let row = c
                .query_one(
                    "SELECT status, result FROM lifecycle.jobs WHERE id = $1",
                    &[&job],
                )
                .await
                .unwrap();
            let status: String = row.get(0);
            statuses
                .contains(&status.as_str())
                .then(|| (status, row.get(1)))
        },
    )
    .await
}

/// Wait for the export to complete; its result.
pub async fn wait_until_completed(c: &Client, job: Uuid) -> serde_json::Value {
    let (status, result) = wait_for_status(c, job, &["completed", "failed"]).await;
    let error: Option<String> = c
        .query_one("SELECT error FROM lifecycle.jobs WHERE id = $1", &[&job])
        .await
        .ok()
        .and_then(|r| r.get(0));
    assert_eq!(status, "completed", "export {job} failed: {error:?}");
    result.expect("a completed export has a result")
}

/// An S3 store of `server`'s bucket `bucket` (its directory created if
/// missing), with the test keys.
pub fn s3_store(server: &lifecycle_tests::s3::S3Server, bucket: &str) -> Storage {
    std::fs::create_dir_all(server.root().join(bucket)).unwrap();
    Storage::open_with(
        &format!("s3://{bucket}"),
        &S3Settings {
            endpoint: Some(server.endpoint()),
            region: Some(lifecycle_tests::s3::REGION.to_owned()),
            access_key_id: Some(lifecycle_tests::s3::ACCESS_KEY.to_owned()),
            secret_access_key: Some(lifecycle_tests::s3::SECRET_KEY.to_owned()),
        },
    )
    .expect("S3 store")
}

/// The whole object at `key`.
pub async fn read_object(storage: &Storage, key: &str) -> Vec<u8> {
    storage
        .read_small(key, 1 << 30)
        .await
        .unwrap_or_else(|e| panic!("{key}: {e}"))
        .to_vec()
}

/// An unzipped bundle: entry name -> bytes, in the archive's order.
pub struct Unzipped {
    pub names: Vec<String>,
    pub entries: BTreeMap<String, Vec<u8>>,
}

impl Unzipped {
    pub fn new(bytes: &[u8]) -> Self {
        let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a ZIP archive");
        let mut names = Vec::new();
        let mut entries = BTreeMap::new();
        for i in 0..zip.len() {
            let mut file = zip.by_index(i).unwrap();
            let name = file.name().to_owned();
            let mut data = Vec::new();
            file.read_to_end(&mut data)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(entries.insert(name.clone(), data).is_none(), "{name} twice");
            names.push(name);
        }
        Self { names, entries }
    }

    pub fn text(&self, name: &str) -> &str {
        let bytes = self
            .entries
            .get(name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", self.names));
        std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{name} is not UTF-8: {e}"))
    }

    pub fn json(&self, name: &str) -> Vec<serde_json::Map<String, serde_json::Value>> {
        serde_json::from_str(self.text(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// The CSV's header (without its byte-order mark) and records.
    pub fn csv(&self, name: &str) -> (Vec<String>, Vec<Vec<String>>) {
        let text = self.text(name);
        let text = text
            .strip_prefix('\u{feff}')
            .unwrap_or_else(|| panic!("{name} starts with a byte-order mark"));
        let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
        let header = reader
            .headers()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
        let records = reader
            .records()
            .map(|r| r.unwrap().iter().map(str::to_owned).collect())
            .collect();
        (header, records)
    }
}

/// Every check of the issue on the bundle of `s`: returns the archive.
pub fn check_bundle(s: &Subject, bytes: &[u8]) -> Unzipped {
    let zip = Unzipped::new(bytes);
    let readme = zip.text("README.md");
    assert_eq!(
        zip.names.last().map(String::as_str),
        Some("README.md"),
        "the README is written last"
    );

    // Every file the README names is there, and every file there is named.
    let named: BTreeSet<String> = readme
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|s| s.ends_with(".json") || s.ends_with(".csv"))
        .map(str::to_owned)
        .collect();
    assert!(!named.is_empty(), "{readme}");
    for name in &named {
        assert!(
            zip.entries.contains_key(name),
            "README names {name}, absent from {:?}",
            zip.names
        );
    }
    for name in zip
        .names
        .iter()
        .filter(|n| !n.starts_with("files/") && *n != "README.md")
    {
        assert!(
            named.contains(name),
            "{name} is not in the README:\n{readme}"
        );
    }
    for wanted in ["account.json", "account.csv", "audit-log.json"] {
        assert!(
            zip.entries.contains_key(wanted),
            "{wanted} in {:?}",
            zip.names
        );
    }

    // The account: labels, non-Latin text, ISO 8601 times.
    let account = zip.json("account.json");
    assert_eq!(account.len(), 1, "{account:?}");
    let me = &account[0];
    assert_eq!(me["Full name"], NAME, "{me:?}");
    assert_eq!(me["Display name"], DISPLAY_NAME, "{me:?}");
    assert_eq!(me["E-mail address"], s.email.as_str(), "{me:?}");
    assert_eq!(me["ID"], s.id, "{me:?}");
    let created = me["Created at"].as_str().expect("a time");
    assert!(iso8601_utc(created), "{created}");
    let (header, records) = zip.csv("account.csv");
    assert_eq!(header[0], "ID", "{header:?}");
    assert!(header.contains(&"Full name".to_owned()), "{header:?}");
    assert!(
        !header.iter().any(|h| h == "name" || h == "created_at"),
        "labels, not names: {header:?}"
    );
    assert_eq!(records.len(), 1);
    let row: BTreeMap<&str, &str> = header
        .iter()
        .map(String::as_str)
        .zip(records[0].iter().map(String::as_str))
        .collect();
    assert_eq!(row["Full name"], NAME);
    assert_eq!(row["Display name"], DISPLAY_NAME);
    assert!(iso8601_utc(row["Created at"]), "{row:?}");

    // Posts: the subject's own, with the text as written.
    let posts = zip.json("posts.json");
    assert!(
        posts.iter().all(|p| p["Author ID"] == s.id),
        "only the subject's posts"
    );
    let mine = posts
        .iter()
        .find(|p| p["Title"] == format!("Über {DISPLAY_NAME}").as_str())
        .expect("the subject's post");
    assert_eq!(
        mine["Body"],
        format!("Ein \"Zitat\", mit Komma\nund Zeile — {NAME}").as_str()
    );
    let (header, records) = zip.csv("posts.csv");
    let title = header
        .iter()
        .position(|h| h == "Title")
        .expect("a Title column");
    let body = header
        .iter()
        .position(|h| h == "Body")
        .expect("a Body column");
    let record = records
        .iter()
        .find(|r| r[title] == format!("Über {DISPLAY_NAME}"))
        .expect("the subject's post in the CSV");
    assert_eq!(
        record[body],
        format!("Ein \"Zitat\", mit Komma\nund Zeile — {NAME}")
    );
    assert_eq!(records.len(), posts.len());

    // Nothing of the other member anywhere.
    for (name, data) in &zip.entries {
        let text = String::from_utf8_lossy(data);
        assert!(
            !text.contains(&s.other_text),
            "{name} holds the other member's text"
        );
        assert!(
            !text.contains(&s.other_email),
            "{name} holds the other member's e-mail"
        );
        assert!(
            !text.contains(&s.key_hash),
            "{name} holds an excluded column's value"
        );
    }

    // Excluded columns: absent, and said so.
    let (header, _) = zip.csv("api-keys.csv");
    assert!(
        !header.iter().any(|h| h.to_lowercase().contains("hash")),
        "{header:?}"
    );
    assert!(header.contains(&"Key starts with".to_owned()), "{header:?}");
    assert!(readme.contains("Key hash"), "{readme}");

    // Stored files, byte for byte; the missing one is listed.
    let folder = zip
        .names
        .iter()
        .find_map(|n| n.strip_prefix("files/").and_then(|r| r.split('/').next()))
        .expect("a files/ folder")
        .to_owned();
    for (key, bytes) in &s.objects {
        let entry = format!("files/{folder}/{key}");
        assert_eq!(zip.entries.get(&entry), Some(bytes), "{entry}");
    }
    assert!(!zip
        .entries
        .contains_key(&format!("files/{folder}/{}", s.missing_key)));
    assert!(
        readme.contains(&s.missing_key),
        "the missing object is listed:\n{readme}"
    );
    let stored = zip.names.iter().filter(|n| n.starts_with("files/")).count();
    assert_eq!(stored, s.objects.len());

    // The audit log: the subject's own events, the export request among them.
    let audit = zip.json("audit-log.json");
    assert!(
        audit.iter().any(|e| e["Event"] == "data.export_requested"),
        "{audit:?}"
    );
    zip
}

/// `2026-01-02T03:04:05(.123456)+00:00`.
pub fn iso8601_utc(text: &str) -> bool {
    let Some(rest) = text.strip_suffix("+00:00") else {
        return false;
    };
    chrono::NaiveDateTime::parse_from_str(rest, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
}

/// The job's bundle result matches the object: size and SHA-256.
pub fn check_result(result: &serde_json::Value, key: &str, bytes: &[u8]) {
    use sha2::Digest;
    let bundle = &result["bundle"];
    assert_eq!(bundle["key"], key, "{result}");
    assert_eq!(bundle["size"], bytes.len() as u64, "{result}");
    let sha: String = sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(bundle["sha256"], sha.as_str(), "{result}");
    assert!(bundle["rows"].as_u64().unwrap() > 0, "{result}");
    let snapshot = result["snapshot_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(snapshot).is_ok(),
        "{snapshot}"
    );
    let expires = result["expires_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(expires).is_ok(),
        "{expires}"
    );
}
