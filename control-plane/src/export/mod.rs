//! Export bundles: the subject's own data, from one snapshot, streamed as a
//! ZIP archive a person can read, into object storage.
//!
//! What goes in is the extension's decision (`lifecycle.export_contents`
//! lists the files, `lifecycle.open_export` opens a cursor over each one's
//! rows); this module writes it:
//!
//! * one transaction `REPEATABLE READ, READ ONLY` with `TimeZone = 'UTC'`
//!   reads everything, so the whole bundle is one snapshot;
//! * rows are fetched [`FETCH_ROWS`] at a time and flow through three
//!   stages that run at once: this task fetches ([`build`]), a blocking
//!   thread writes the ZIP ([`archive`]: JSON and CSV in one pass over the
//!   rows, deflated), and an upload task hashes the archive and puts it into
//!   a multipart upload ([`sink`]). Bounded channels between them keep
//!   memory flat: a subject with a million rows costs what one with ten
//!   does (one batch of rows, the chunks in flight, the upload's parts);
//! * stored objects named by the storage columns are copied byte for byte
//!   into `files/<file>/<key>` ([`objects`]);
//! * `README.md` is written last, with every count ([`readme`]);
//! * the upload is completed only by [`Built::publish`], which the worker
//!   calls once it knows it still holds the job: until then nothing is
//!   visible under the bundle's key.
//!
//! Where the time goes (a subject with 1,000,000 rows over five tables,
//! 2 cores shared with PostgreSQL): see `docs/worker.md`, "Exports".

use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, IsolationLevel, Statement, Transaction};

use crate::storage::{Storage, StorageError, Upload};

mod archive;
mod contents;
mod error;
mod objects;
mod readme;
mod rows;
mod sink;

use archive::Command;
pub use archive::DEFLATE_LEVEL;
use askama::Template;
pub use contents::{is_workspace, Column, ExcludedColumn, FileKind, FileSpec};
pub use error::ExportError;
use readme::{Readme, Written};

/// Rows fetched from a cursor at once.
pub const FETCH_ROWS: usize = 500;
/// Commands (batches of rows, object chunks) on their way to the writer.
const COMMANDS_IN_FLIGHT: usize = 2;
/// The cursor every file is read through, one after the other.
const CURSOR: &str = "lifecycle_export";

/// Times in UTC; and a backend whose worker died notices within a second
/// (otherwise one waiting on a lock would wait on for nobody).
const SETTINGS: &str =
    "SET LOCAL TimeZone = 'UTC'; SET LOCAL client_connection_check_interval = '1s'";
const SNAPSHOT: &str = "SELECT statement_timestamp()";
const OPEN: &str = "SELECT lifecycle.open_export($1, $2, $3, $4, 'lifecycle_export')";

/// Whose data: a job's target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub target_type: String,
    pub target_id: String,
    pub tenant_id: Option<String>,
}

/// A bundle written to its upload, not yet published.
pub struct Built {
    upload: Upload,
    pub summary: Bundle,
}

/// A bundle: where it is and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub key: String,
    pub size: u64,
    /// SHA-256 of the archive, hexadecimal.
    pub sha256: String,
    /// Entries of the archive.
    pub entries: u64,
    /// Rows over all files.
    pub rows: u64,
    /// Stored objects copied, and not found.
    pub objects: u64,
    pub objects_missing: u64,
    /// When the snapshot was taken.
    pub snapshot_at: DateTime<Utc>,
}

impl Built {
    /// Complete the upload: the bundle appears under its key, whole.
    pub async fn publish(self) -> Result<Bundle, StorageError> {
        let size = self.upload.complete().await?;
        debug_assert_eq!(size, self.summary.size);
        Ok(self.summary)
    }

    /// Give it up: nothing appears under its key.
    pub async fn discard(self) -> Result<(), StorageError> {
        self.upload.abort().await
    }
}

impl Bundle {
    /// The result `lifecycle.complete_job` records for the export.
    pub fn result(&self, expires_at: DateTime<Utc>) -> serde_json::Value {
        json!({
            "bundle": {
                "key": self.key,
                "size": self.size,
                "sha256": self.sha256,
                "files": self.entries,
                "rows": self.rows,
                "objects": self.objects,
                "objects_missing": self.objects_missing,
            },
            "snapshot_at": self.snapshot_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            "expires_at": expires_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        })
    }
}

/// Build the bundle of `target` from one snapshot read through `client`,
/// uploading it to `key` of `bundles`, with the stored objects of `files`
/// (`None`: no file store; each one is listed as not found).
pub async fn build(
    client: &mut Client,
    target: &Target,
    bundles: &Storage,
    files: Option<&Storage>,
    key: &str,
) -> Result<Built, ExportError> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    tx.batch_execute(SETTINGS).await?;
    let snapshot_at: DateTime<Utc> = tx.query_one(SNAPSHOT, &[]).await?.get(0);
    let specs = tx
        .query(
            contents::EXPORT_CONTENTS,
            &[&target.target_type, &target.target_id, &target.tenant_id],
        )
        .await?
        .iter()
        .map(FileSpec::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    contents::check_all(&specs)?;
    let readme = Readme::new(
        &target.target_type,
        &target.target_id,
        is_workspace(&target.target_type),
        snapshot_at,
        files.is_some(),
    );

    let mut upload = bundles.upload(key).await?;
    let (commands, commands_rx) = mpsc::channel(COMMANDS_IN_FLIGHT);
    let (chunks, chunks_rx) = mpsc::channel(sink::CHUNKS_IN_FLIGHT);
    let writer = tokio::task::spawn_blocking(move || {
        archive::run(commands_rx, sink::ChunkSink::new(chunks), snapshot_at)
    });
    let specs: Vec<Arc<FileSpec>> = specs.into_iter().map(Arc::new).collect();
    let streamed = tokio::try_join!(
        produce(&tx, target, &specs, files, commands, readme),
        async {
            sink::upload(chunks_rx, &mut upload)
                .await
                .map_err(ExportError::from)
        }
    );
    // Both channels are closed now: the writer ends whatever happened.
    let written = writer
        .await
        .map_err(|e| ExportError::Archive(format!("the archive writer failed: {e}")))?;
    let ((counts, hash), summary) = match (streamed, written) {
        (Ok(streamed), Ok(summary)) => (streamed, summary),
        // A part that stopped because another failed: report the cause.
        (Err(ExportError::Interrupted), Err(cause)) | (Ok(_), Err(cause)) => return Err(cause),
        (Err(cause), _) => return Err(cause),
    };
    tx.commit().await?;
    let sha256 = hash.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Built {
        summary: Bundle {
            key: key.to_owned(),
            size: upload.size(),
            sha256,
            entries: summary.entries,
            rows: counts.rows,
            objects: counts.objects,
            objects_missing: counts.objects_missing,
            snapshot_at,
        },
        upload,
    })
}

/// What [`produce`] counted.
struct Counts {
    rows: u64,
    objects: u64,
    objects_missing: u64,
}

/// Read every file's rows and hand them to the writer, then the stored
/// objects, then the README.
async fn produce(
    tx: &Transaction<'_>,
    target: &Target,
    specs: &[Arc<FileSpec>],
    files: Option<&Storage>,
    commands: mpsc::Sender<Command>,
    mut readme: Readme,
) -> Result<Counts, ExportError> {
    let send = |command| {
        let commands = &commands;
        async move {
            commands
                .send(command)
                .await
                .map_err(|_| ExportError::Interrupted)
        }
    };
    let mut fetch: Option<Statement> = None;
    let mut done = Vec::with_capacity(specs.len());
    for spec in specs {
        send(Command::Begin(spec.clone())).await?;
        tx.execute(
            OPEN,
            &[
                &target.target_type,
                &target.target_id,
                &target.tenant_id,
                &spec.name,
            ],
        )
        .await?;
        // Prepared once a cursor exists (its rows' shape is the same for
        // every file: one `json` column).
        let statement = match &fetch {
            Some(statement) => statement.clone(),
            None => {
                // Read through the extension, which reads the cursor as the
                // table's owner (never `FETCH`: code of the owner would then
                // run with the service role's rights).
                let statement = tx
                    .prepare(&format!(
                        "SELECT \"row\" FROM lifecycle.fetch_export('{CURSOR}', {FETCH_ROWS}) AS \"row\""
                    ))
                    .await?;
                fetch.insert(statement).clone()
            }
        };
        // The next batch is asked for while this one goes to the writer:
        // PostgreSQL, the bottleneck, never waits for the writer.
        let mut rows = tx.query(&statement, &[]).await?;
        while rows.len() == FETCH_ROWS {
            let (sent, next) = tokio::join!(send(Command::Rows(rows)), tx.query(&statement, &[]));
            sent?;
            rows = next?;
        }
        if !rows.is_empty() {
            send(Command::Rows(rows)).await?;
        }
        tx.batch_execute(&format!("CLOSE {CURSOR}")).await?;
        // The writer copies the CSV into the archive while the next file's
        // rows are read: its answer is awaited once every file is read.
        let (answer, file) = oneshot::channel();
        send(Command::End(answer)).await?;
        done.push(file);
    }

    let mut counts = Counts {
        rows: 0,
        objects: 0,
        objects_missing: 0,
    };
    let mut seen = objects::Seen::default();
    for (spec, file) in specs.iter().zip(done) {
        let file = file.await.map_err(|_| ExportError::Interrupted)?;
        let (mut copied, mut missing) = (0, 0);
        if let Some(spool) = file.keys {
            let mut keys = objects::Keys::new(spool);
            while let Some(key) = keys.next().await? {
                let entry = objects::entry_name(&spec.name, &key);
                if !seen.first(&entry) {
                    continue;
                }
                let Some(files) = files else {
                    // No file store: counted, not listed one by one.
                    missing += 1;
                    continue;
                };
                if copy_object(files, &key, entry, &send).await? {
                    copied += 1;
                } else {
                    missing += 1;
                    readme.missing(spec, &key);
                }
            }
        }
        counts.rows += file.rows;
        counts.objects += copied;
        counts.objects_missing += missing;
        readme.file(Written {
            spec,
            rows: file.rows,
            objects: copied,
            objects_missing: missing,
        });
    }
    let mut text = readme.render()?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    send(Command::Finish(text)).await?;
    Ok(counts)
}

/// Copy the object `key` of the file store into the archive as `entry`;
/// `false` when there is no such object.
async fn copy_object<F, Fut>(
    files: &Storage,
    key: &str,
    entry: String,
    send: &F,
) -> Result<bool, ExportError>
where
    F: Fn(Command) -> Fut,
    Fut: std::future::Future<Output = Result<(), ExportError>>,
{
    let mut download = match files.get(key).await {
        Ok(download) => download,
        Err(StorageError::NotFound(_) | StorageError::InvalidKey(_)) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    send(Command::BeginObject(entry)).await?;
    while let Some(chunk) = download.stream.next().await {
        send(Command::Chunk(chunk?)).await?;
    }
    Ok(true)
}
