//! Object storage: where export bundles and audit anchors go (a local
//! directory by default, any S3-compatible service by configuration), and
//! the application's own file store that exports copy stored files from.
//!
//! Everything goes through `object_store`. What the control plane relies on:
//!
//! * **a bundle is visible only once complete**: [`Storage::upload`] is a
//!   multipart upload. S3 makes the object appear atomically when the upload
//!   completes; the local store writes to a staging file `<key>#<n>` and
//!   renames it onto the key. A process killed mid-upload leaves no object
//!   under the key (on S3 an incomplete upload, which a bucket lifecycle rule
//!   `AbortIncompleteMultipartUpload` removes; locally a staging file that
//!   listings never show and [`Storage::remove_upload_leftovers`] deletes);
//! * **anchors are written once**: [`Storage::put_new`] refuses to replace
//!   an object (`PutMode::Create`);
//! * **downloads**: [`Storage::get`] streams an object, [`Storage::presign_get`]
//!   signs a GET URL valid for minutes when the store is S3 (`None` for a
//!   local directory, whose bundles the service streams itself).
//!
//! Keys: bundles at `exports/<database>/<job id>.zip`, anchors at
//! `anchors/<database>/<yyyymmddThhmmssZ>-<random>.json`: a configured
//! database name and ids of the control plane, never a subject's id.

use std::fmt;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};
use uuid::Uuid;

use crate::config::StorageArgs;
use crate::error::ApiError;

/// Prefix of the export bundles.
pub const EXPORTS_PREFIX: &str = "exports";
/// Prefix of the audit anchors.
pub const ANCHORS_PREFIX: &str = "anchors";
/// Directory of the default local store, under the current directory.
pub const DEFAULT_LOCAL_DIR: &str = "lifecycled-storage";

/// Size of one part of an upload to S3 (its minimum, except for the last
/// part): the memory an upload holds does not grow with the object.
const S3_PART_SIZE: usize = 5 * 1024 * 1024;
/// Size of one part written to a local staging file.
const LOCAL_PART_SIZE: usize = 256 * 1024;
/// Retries of one S3 request (with growing pauses) before it fails, and
/// the time they may take: a store that is down fails the export's
/// attempt within seconds instead of minutes; the job is tried again.
const S3_RETRIES: usize = 4;
const S3_RETRY_TIMEOUT: Duration = Duration::from_secs(30);
/// Parts of one upload sent at the same time.
const PARTS_IN_FLIGHT: usize = 1;

/// The key of the bundle of export job `job` of database `database`.
pub fn bundle_key(database: &str, job: Uuid) -> String {
    format!("{EXPORTS_PREFIX}/{database}/{job}.zip")
}

/// A new key for an anchor of `database` written at `at`: its time, then a
/// random part, so that two replicas never write the same key and keys
/// sort by time.
pub fn anchor_key(database: &str, at: DateTime<Utc>) -> String {
    let random = Uuid::new_v4().simple().to_string();
    format!(
        "{ANCHORS_PREFIX}/{database}/{}-{}.json",
        at.format("%Y%m%dT%H%M%SZ"),
        &random[..12]
    )
}

/// The prefix under which the anchors of `database` are listed.
pub fn anchors_prefix(database: &str) -> String {
    format!("{ANCHORS_PREFIX}/{database}/")
}

/// A failed storage operation.
#[derive(Debug)]
pub enum StorageError {
    /// No object under the key.
    NotFound(String),
    /// A write-once put found an object under the key.
    AlreadyExists(String),
    /// A key that the store cannot hold (empty segments, `..`).
    InvalidKey(String),
    /// The store's own error (unreachable, refused, broken stream).
    Store(object_store::Error),
}

impl StorageError {
    fn of(key: &str, error: object_store::Error) -> Self {
        match error {
            object_store::Error::NotFound { .. } => StorageError::NotFound(key.to_owned()),
            object_store::Error::AlreadyExists { .. } => {
                StorageError::AlreadyExists(key.to_owned())
            }
            // S3 answers a conditional put whose condition failed with 412.
            object_store::Error::Precondition { .. } => StorageError::AlreadyExists(key.to_owned()),
            other => StorageError::Store(other),
        }
    }

    /// Whether the object was not there.
    pub fn is_not_found(&self) -> bool {
        matches!(self, StorageError::NotFound(_))
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::NotFound(key) => write!(f, "no object at {key:?}"),
            StorageError::AlreadyExists(key) => write!(f, "an object exists at {key:?}"),
            StorageError::InvalidKey(key) => write!(f, "invalid object key {key:?}"),
            StorageError::Store(e) => write!(f, "object storage: {e}"),
        }
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StorageError::Store(e) => Some(e),
            _ => None,
        }
    }
}

/// An API answer for a storage failure: 404 for a missing object, else an
/// internal error whose cause is logged, never sent.
impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> Self {
        match error {
            StorageError::NotFound(_) => ApiError::not_found("no such object"),
            other => ApiError::internal(other),
        }
    }
}

/// How to reach an S3-compatible service. What is not set here comes from
/// the `AWS_*` environment variables (and AWS's defaults).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// `https://…`, or `http://` on a loopback address.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// What kind of store, for presigning and upload leftovers.
#[derive(Clone, Debug)]
enum Kind {
    Local {
        root: PathBuf,
    },
    /// The bucket (it signs URLs) and the prefix of the URL's keys.
    S3 {
        bucket: Arc<object_store::aws::AmazonS3>,
        prefix: String,
    },
}

/// One object store. Cheap to clone.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    kind: Kind,
    /// The store's URL, for logs (no credentials: those come from the
    /// environment).
    url: String,
    part_size: usize,
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.url)
    }
}

/// One object of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

/// An object being read: its size, and its bytes as they arrive.
pub struct Download {
    pub size: u64,
    pub stream: BoxStream<'static, Result<Bytes, StorageError>>,
}

impl fmt::Debug for Download {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Download")
            .field("size", &self.size)
            .finish()
    }
}

impl Storage {
    /// The bundle store of `args` (`--storage-url`, or the default local
    /// directory) and the application's file store (`--files-url`), if set.
    pub fn from_args(args: &StorageArgs) -> anyhow::Result<(Storage, Option<Storage>)> {
        let bundles = match &args.storage_url {
            Some(url) => Storage::open(url, args.s3_endpoint.as_deref())
                .with_context(|| format!("--storage-url {url}"))?,
            None => {
                let dir = std::env::current_dir()
                    .context("the current directory")?
                    .join(DEFAULT_LOCAL_DIR);
                Storage::local(&dir)?
            }
        };
        let files = args
            .files_url
            .as_deref()
            .map(|url| {
                Storage::open(url, args.s3_endpoint.as_deref())
                    .with_context(|| format!("--files-url {url}"))
            })
            .transpose()?;
        Ok((bundles, files))
    }

    /// The store at `url`: `file:///absolute/dir` (created if missing) or
    /// `s3://bucket[/prefix]` (with `endpoint`, else AWS's; credentials and
    /// region from the `AWS_*` environment variables).
    pub fn open(url: &str, endpoint: Option<&str>) -> anyhow::Result<Storage> {
        Storage::open_with(
            url,
            &S3Settings {
                endpoint: endpoint.map(str::to_owned),
                ..S3Settings::default()
            },
        )
    }

    /// The store at `url`, with S3 settings given here rather than (or
    /// over) the environment's.
    pub fn open_with(url: &str, s3: &S3Settings) -> anyhow::Result<Storage> {
        if let Some(path) = url.strip_prefix("file://") {
            anyhow::ensure!(
                path.starts_with('/'),
                "a file URL names an absolute directory: file:///path/to/dir"
            );
            return Storage::local(FsPath::new(path));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            anyhow::ensure!(!bucket.is_empty(), "an S3 URL names a bucket: s3://bucket");
            return Storage::s3(bucket, prefix.trim_matches('/'), s3, url);
        }
        anyhow::bail!("unsupported storage URL {url:?}: use file:///dir or s3://bucket")
    }

    /// A local directory (created if missing).
    pub fn local(dir: &FsPath) -> anyhow::Result<Storage> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("could not create the directory {}", dir.display()))?;
        let root = dir
            .canonicalize()
            .with_context(|| format!("{}", dir.display()))?;
        let store = LocalFileSystem::new_with_prefix(&root)
            .with_context(|| format!("{}", root.display()))?
            // A deleted bundle takes its empty directories with it.
            .with_automatic_cleanup(true);
        Ok(Storage {
            store: Arc::new(store),
            url: format!("file://{}", root.display()),
            kind: Kind::Local { root },
            part_size: LOCAL_PART_SIZE,
        })
    }

    fn s3(bucket: &str, prefix: &str, s3: &S3Settings, url: &str) -> anyhow::Result<Storage> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(RetryConfig {
                max_retries: S3_RETRIES,
                retry_timeout: S3_RETRY_TIMEOUT,
                ..RetryConfig::default()
            });
        if let Some(region) = &s3.region {
            builder = builder.with_region(region);
        }
        if let (Some(key), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
            builder = builder
                .with_access_key_id(key)
                .with_secret_access_key(secret);
        }
        if let Some(endpoint) = &s3.endpoint {
            if endpoint.starts_with("http://") {
                anyhow::ensure!(
                    is_loopback_url(endpoint),
                    "plain http is allowed for a loopback endpoint only: {endpoint}"
                );
                builder = builder.with_allow_http(true);
            }
            builder = builder.with_endpoint(endpoint);
        }
        let s3 = Arc::new(builder.build().context("S3 configuration")?);
        let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
            s3.clone()
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(
                s3.clone(),
                Path::parse(prefix).context("the prefix of the S3 URL")?,
            ))
        };
        Ok(Storage {
            store,
            kind: Kind::S3 {
                bucket: s3,
                prefix: prefix.to_owned(),
            },
            url: url.to_owned(),
            part_size: S3_PART_SIZE,
        })
    }

    /// The store's URL (no credentials).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Whether the store is a local directory.
    pub fn is_local(&self) -> bool {
        matches!(self.kind, Kind::Local { .. })
    }

    /// Start a multipart upload to `key`: nothing is visible under the key
    /// until [`Upload::complete`].
    pub async fn upload(&self, key: &str) -> Result<Upload, StorageError> {
        let path = path(key)?;
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| StorageError::of(key, e))?;
        Ok(Upload {
            key: key.to_owned(),
            writer: Some(WriteMultipart::new_with_chunk_size(upload, self.part_size)),
            size: 0,
        })
    }

    /// Read the object at `key` as a stream.
    pub async fn get(&self, key: &str) -> Result<Download, StorageError> {
        let path = path(key)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| StorageError::of(key, e))?;
        let size = result.meta.size;
        let owned = key.to_owned();
        Ok(Download {
            size,
            stream: result
                .into_stream()
                .map_err(move |e| StorageError::of(&owned, e))
                .boxed(),
        })
    }

    /// The whole object at `key`, refused when it is larger than `max` bytes
    /// (anchors are small; a large one is not an anchor).
    pub async fn read_small(&self, key: &str, max: u64) -> Result<Bytes, StorageError> {
        let download = self.get(key).await?;
        if download.size > max {
            return Err(StorageError::Store(object_store::Error::Generic {
                store: "lifecycled",
                source: format!("{key} is {} bytes, more than {max}", download.size).into(),
            }));
        }
        let chunks: Vec<Bytes> = download.stream.try_collect().await?;
        Ok(chunks.concat().into())
    }

    /// The size of the object at `key`.
    pub async fn head(&self, key: &str) -> Result<u64, StorageError> {
        let path = path(key)?;
        let meta = self
            .store
            .head(&path)
            .await
            .map_err(|e| StorageError::of(key, e))?;
        Ok(meta.size)
    }

    /// Delete the object at `key`; deleting what is not there succeeds.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = path(key)?;
        match self.store.delete(&path).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(StorageError::of(key, e)),
        }
    }

    /// A URL that lets its holder GET the object at `key` for `valid_for`,
    /// when the store is S3; `None` for a local directory.
    pub async fn presign_get(
        &self,
        key: &str,
        valid_for: Duration,
    ) -> Result<Option<String>, StorageError> {
        let Kind::S3 { bucket, prefix } = &self.kind else {
            return Ok(None);
        };
        let path = if prefix.is_empty() {
            path(key)?
        } else {
            path(&format!("{prefix}/{key}"))?
        };
        let url = bucket
            .signed_url(object_store::signer::Method::GET, &path, valid_for)
            .await
            .map_err(|e| StorageError::of(key, e))?;
        Ok(Some(url.to_string()))
    }

    /// Write `bytes` at `key` unless an object is there already
    /// ([`StorageError::AlreadyExists`] then): write-once, for anchors.
    pub async fn put_new(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let path = path(key)?;
        self.store
            .put_opts(
                &path,
                PutPayload::from_bytes(bytes),
                PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                },
            )
            .await
            .map_err(|e| StorageError::of(key, e))?;
        Ok(())
    }

    /// The objects whose keys start with `prefix` (a folder such as
    /// `anchors/default/`), in key order.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StorageError> {
        let folder = prefix.trim_end_matches('/');
        let folder = if folder.is_empty() {
            None
        } else {
            Some(path(folder)?)
        };
        let mut objects: Vec<ObjectInfo> = self
            .store
            .list(folder.as_ref())
            .map_ok(|meta| ObjectInfo {
                key: meta.location.to_string(),
                size: meta.size,
                last_modified: meta.last_modified,
            })
            .try_collect()
            .await
            .map_err(|e| StorageError::of(prefix, e))?;
        objects.retain(|o| o.key.starts_with(prefix));
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Remove what uploads to `key` that never completed left behind in a
    /// local store (the staging files `<key>#<n>` of a killed process);
    /// returns how many. S3 keeps incomplete uploads out of sight, and a
    /// bucket lifecycle rule removes them.
    pub async fn remove_upload_leftovers(&self, key: &str) -> Result<usize, StorageError> {
        let Kind::Local { root } = &self.kind else {
            return Ok(0);
        };
        path(key)?;
        let target = root.join(key);
        let removed = tokio::task::spawn_blocking(move || remove_staging_files(&target))
            .await
            .map_err(|e| StorageError::Store(object_store::Error::JoinError { source: e }))?;
        removed.map_err(|e| {
            StorageError::Store(object_store::Error::Generic {
                store: "LocalFileSystem",
                source: Box::new(e),
            })
        })
    }
}

/// Delete `<target>#<digits>` beside `target`.
fn remove_staging_files(target: &FsPath) -> std::io::Result<usize> {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return Ok(0);
    };
    let staging = format!("{}#", name.to_string_lossy());
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        let is_staging = file_name
            .strip_prefix(&staging)
            .is_some_and(|suffix| !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit()));
        if is_staging {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// An object key as the store's path; an empty key, or one with empty or
/// `.`/`..` segments, is refused rather than rewritten.
fn path(key: &str) -> Result<Path, StorageError> {
    if key.is_empty() || key.starts_with('/') || key.ends_with('/') {
        return Err(StorageError::InvalidKey(key.to_owned()));
    }
    Path::parse(key).map_err(|_| StorageError::InvalidKey(key.to_owned()))
}

/// Whether an `http://` URL names a loopback host.
fn is_loopback_url(url: &str) -> bool {
    let Ok(parsed) = object_store::signer::Url::parse(url) else {
        return false;
    };
    match parsed.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// A multipart upload in progress. Dropped without [`Upload::complete`],
/// it is aborted: nothing appears under its key.
pub struct Upload {
    key: String,
    writer: Option<WriteMultipart>,
    size: u64,
}

impl Upload {
    /// The key it writes.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append `bytes`; waits while too many parts are on their way, so
    /// memory stays bounded whatever the object's size.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), StorageError> {
        let writer = self.writer.as_mut().expect("an upload in progress");
        writer
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(|e| StorageError::of(&self.key, e))?;
        self.size += bytes.len() as u64;
        writer.put(bytes);
        Ok(())
    }

    /// Finish the upload: the object appears under its key, whole; returns
    /// its size.
    pub async fn complete(mut self) -> Result<u64, StorageError> {
        let writer = self.writer.take().expect("an upload in progress");
        writer
            .finish()
            .await
            .map_err(|e| StorageError::of(&self.key, e))?;
        Ok(self.size)
    }

    /// Give the upload up: nothing appears under its key.
    pub async fn abort(mut self) -> Result<(), StorageError> {
        match self.writer.take() {
            Some(writer) => writer
                .abort()
                .await
                .map_err(|e| StorageError::of(&self.key, e)),
            None => Ok(()),
        }
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if let Some(writer) = self.writer.take() {
            // Dropped mid-way (an error, a cancelled job): abort it in the
            // background when a runtime is there; otherwise the store's own
            // cleanup applies (a local staging file is removed on drop).
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                let key = std::mem::take(&mut self.key);
                runtime.spawn(async move {
                    if let Err(error) = writer.abort().await {
                        tracing::warn!(key, %error, "could not abort an upload");
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_store() -> (tempfile::TempDir, Storage) {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&format!("file://{}", dir.path().display()), None).unwrap();
        (dir, storage)
    }

    #[test]
    fn keys_never_hold_a_subject_and_sort_by_time() {
        let job = Uuid::new_v4();
        assert_eq!(bundle_key("eu", job), format!("exports/eu/{job}.zip"));
        let at = DateTime::parse_from_rfc3339("2026-03-04T05:06:07Z")
            .unwrap()
            .with_timezone(&Utc);
        let key = anchor_key("eu", at);
        assert!(key.starts_with("anchors/eu/20260304T050607Z-"), "{key}");
        assert!(key.ends_with(".json"));
        assert_ne!(key, anchor_key("eu", at));
        assert!(key.starts_with(&anchors_prefix("eu")));
    }

    #[test]
    fn urls_are_checked() {
        assert!(Storage::open("file://relative/dir", None).is_err());
        assert!(Storage::open("ftp://x", None).is_err());
        assert!(Storage::open("s3://", None).is_err());
        let err = Storage::open("s3://bucket", Some("http://192.0.2.1:9000")).unwrap_err();
        assert!(format!("{err:#}").contains("loopback"), "{err:#}");
        assert!(is_loopback_url("http://127.0.0.1:9000"));
        assert!(is_loopback_url("http://localhost:9000"));
        assert!(is_loopback_url("http://[::1]:9000"));
        assert!(!is_loopback_url("http://example.com"));
    }

    #[tokio::test]
    async fn a_local_upload_appears_only_when_complete() {
        let (dir, storage) = temp_store();
        let key = "exports/db/one.zip";
        let mut upload = storage.upload(key).await.unwrap();
        upload.write(Bytes::from_static(b"hello ")).await.unwrap();
        upload
            .write(Bytes::from(vec![b'x'; 3 * LOCAL_PART_SIZE]))
            .await
            .unwrap();
        assert!(storage.head(key).await.unwrap_err().is_not_found());
        assert!(storage.list("exports/").await.unwrap().is_empty());
        let size = upload.complete().await.unwrap();
        assert_eq!(size, 6 + 3 * LOCAL_PART_SIZE as u64);
        assert_eq!(storage.head(key).await.unwrap(), size);
        let back = storage.read_small(key, size).await.unwrap();
        assert_eq!(&back[..6], b"hello ");
        assert!(storage.read_small(key, 10).await.is_err());
        let listed = storage.list("exports/db/").await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].key, key);
        assert_eq!(listed[0].size, size);
        // Idempotent delete, and the emptied directories go with it.
        storage.delete(key).await.unwrap();
        storage.delete(key).await.unwrap();
        assert!(storage.get(key).await.unwrap_err().is_not_found());
        assert!(!dir.path().join("exports/db").exists());
        assert_eq!(
            storage
                .presign_get(key, Duration::from_secs(60))
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn an_aborted_or_dropped_upload_leaves_nothing() {
        let (dir, storage) = temp_store();
        let key = "exports/db/two.zip";
        let mut upload = storage.upload(key).await.unwrap();
        upload.write(Bytes::from_static(b"partial")).await.unwrap();
        upload.abort().await.unwrap();
        let mut upload = storage.upload(key).await.unwrap();
        upload.write(Bytes::from_static(b"partial")).await.unwrap();
        drop(upload);
        // The drop's cleanup runs in the background.
        for _ in 0..100 {
            if std::fs::read_dir(dir.path().join("exports/db"))
                .map(|d| d.count() == 0)
                .unwrap_or(true)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(storage.head(key).await.unwrap_err().is_not_found());
        let left: Vec<_> = std::fs::read_dir(dir.path().join("exports/db"))
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test]
    async fn staging_files_of_a_killed_upload_are_removed() {
        let (dir, storage) = temp_store();
        let key = "exports/db/three.zip";
        let folder = dir.path().join("exports/db");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("three.zip#1"), b"half").unwrap();
        std::fs::write(folder.join("three.zip#12"), b"half").unwrap();
        std::fs::write(folder.join("three.zip#x"), b"not ours").unwrap();
        std::fs::write(folder.join("other.zip#1"), b"not ours").unwrap();
        // Listings never show staging files.
        let listed = storage.list("exports/db/").await.unwrap();
        assert!(
            listed.iter().all(|o| !o.key.contains("three.zip#1")),
            "{listed:?}"
        );
        assert_eq!(storage.remove_upload_leftovers(key).await.unwrap(), 2);
        assert!(!folder.join("three.zip#1").exists());
        assert!(folder.join("three.zip#x").exists());
        assert!(folder.join("other.zip#1").exists());
        assert_eq!(storage.remove_upload_leftovers(key).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn put_new_writes_once() {
        let (_dir, storage) = temp_store();
        let key = "anchors/db/20260101T000000Z-abc.json";
        storage
            .put_new(key, Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let again = storage.put_new(key, Bytes::from_static(b"[]")).await;
        assert!(
            matches!(again, Err(StorageError::AlreadyExists(_))),
            "{again:?}"
        );
        assert_eq!(&storage.read_small(key, 100).await.unwrap()[..], b"{}");
    }

    #[tokio::test]
    async fn invalid_keys_are_refused() {
        let (_dir, storage) = temp_store();
        for key in ["", "a//b", "a/../b", "/abs", "dir/"] {
            assert!(
                matches!(storage.head(key).await, Err(StorageError::InvalidKey(_))),
                "{key}"
            );
        }
    }
}
