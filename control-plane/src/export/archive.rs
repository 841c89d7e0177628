//! The ZIP writer: a blocking thread that turns the builder's commands
//! (a file begins, rows, it ends, a stored object, the README) into a
//! streamed ZIP archive (`zip`'s stream writer: local headers, deflated
//! data, data descriptors, then the central directory), written into a
//! [`ChunkSink`].
//!
//! A ZIP holds one entry after another, so the two formats of a file
//! cannot be written side by side: the JSON entry is written as the rows
//! arrive while the CSV text goes to an unnamed temporary file, copied
//! into its own entry once the rows end. Rows are read from PostgreSQL once;
//! memory holds one batch of rows and its text, never a whole file. The
//! object keys of a file's storage columns are spooled the same way and
//! handed back when it ends.
//!
//! Entries are deflated at level 1 (zlib-rs): the fastest level, and
//! JSON and CSV text still shrink to about a fifth (see `mod.rs` for
//! measurements).

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Datelike, Timelike, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Row;
use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

use super::contents::FileSpec;
use super::error::ExportError;
use super::rows::{RawJson, RowFormat};
use super::sink::ChunkSink;

/// Deflate level of every entry.
pub const DEFLATE_LEVEL: i64 = 1;
/// Size of the buffers between the spools and their files.
const SPOOL_BUFFER: usize = 256 * 1024;

/// What the builder asks of the writer, in order.
pub enum Command {
    /// A file's rows follow.
    Begin(Arc<FileSpec>),
    /// The next rows of the current file (one column, `json`).
    Rows(Vec<Row>),
    /// The current file's rows are all there; the answer says how many and
    /// hands the spooled object keys back.
    End(oneshot::Sender<FileDone>),
    /// A stored object follows, as this entry.
    BeginObject(String),
    /// Its next bytes.
    Chunk(Bytes),
    /// Write the README (last) and close the archive.
    Finish(String),
}

/// A file written.
pub struct FileDone {
    pub rows: u64,
    /// The object keys of its storage columns, one JSON string per line,
    /// from the start (`None` when it has no storage column).
    pub keys: Option<File>,
}

/// The archive written.
#[derive(Debug)]
pub struct Summary {
    pub entries: u64,
}

/// The file being written.
struct Current {
    spec: Arc<FileSpec>,
    format: RowFormat,
    rows: u64,
    csv: BufWriter<File>,
    keys: Option<BufWriter<File>>,
}

/// Run the writer until [`Command::Finish`]; an error, or the builder
/// gone without finishing, ends it with an error (the upload is then
/// aborted).
pub fn run(
    mut commands: mpsc::Receiver<Command>,
    sink: ChunkSink,
    modified: DateTime<Utc>,
) -> Result<Summary, ExportError> {
    let mut zip = ZipWriter::new_stream(sink).set_auto_large_file();
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(DEFLATE_LEVEL))
        .last_modified_time(zip_time(modified))
        .unix_permissions(0o644);
    let mut entries = 0u64;
    let mut current: Option<Current> = None;
    let mut json = Vec::new();
    let mut csv = Vec::new();
    while let Some(command) = commands.blocking_recv() {
        match command {
            Command::Begin(spec) => {
                zip.start_file(format!("{}.json", spec.name), options)?;
                entries += 1;
                zip.write_all(b"[")?;
                let mut spool = BufWriter::with_capacity(SPOOL_BUFFER, tempfile::tempfile()?);
                csv.clear();
                RowFormat::csv_header(&spec, &mut csv);
                spool.write_all(&csv)?;
                let keys = if spec.storage_columns.is_empty() {
                    None
                } else {
                    Some(BufWriter::new(tempfile::tempfile()?))
                };
                current = Some(Current {
                    format: RowFormat::new(&spec),
                    spec,
                    rows: 0,
                    csv: spool,
                    keys,
                });
            }
            Command::Rows(rows) => {
                let file = current.as_mut().ok_or_else(|| out_of_order("rows"))?;
                json.clear();
                csv.clear();
                let mut key_error = None;
                for row in &rows {
                    let raw: RawJson<'_> = row.try_get(0)?;
                    let keys = &mut file.keys;
                    file.format
                        .write(raw.0, file.rows == 0, &mut json, &mut csv, |key| {
                            if let Some(spool) = keys.as_mut() {
                                if let Err(e) = spool_key(spool, key) {
                                    key_error.get_or_insert(e);
                                }
                            }
                        })
                        .map_err(|e| ExportError::Contents(format!("{}: {e}", file.spec.name)))?;
                    file.rows += 1;
                }
                if let Some(e) = key_error {
                    return Err(e.into());
                }
                zip.write_all(&json)?;
                file.csv.write_all(&csv)?;
            }
            Command::End(answer) => {
                let file = current.take().ok_or_else(|| out_of_order("end"))?;
                zip.write_all(if file.rows == 0 { b"]\n" } else { b"\n]\n" })?;
                zip.start_file(format!("{}.csv", file.spec.name), options)?;
                entries += 1;
                let mut spool = file.csv.into_inner().map_err(|e| e.into_error())?;
                spool.rewind()?;
                io::copy(&mut spool, &mut zip)?;
                let keys = match file.keys {
                    Some(spool) => {
                        let mut spool = spool.into_inner().map_err(|e| e.into_error())?;
                        spool.rewind()?;
                        Some(spool)
                    }
                    None => None,
                };
                // The builder may have stopped waiting (it failed): then
                // the next command never comes and the loop ends.
                let _ = answer.send(FileDone {
                    rows: file.rows,
                    keys,
                });
            }
            Command::BeginObject(name) => {
                if current.is_some() {
                    return Err(out_of_order("object"));
                }
                zip.start_file(name, options)?;
                entries += 1;
            }
            Command::Chunk(bytes) => zip.write_all(&bytes)?,
            Command::Finish(readme) => {
                if current.is_some() {
                    return Err(out_of_order("finish"));
                }
                zip.start_file("README.md", options)?;
                entries += 1;
                zip.write_all(readme.as_bytes())?;
                let stream: StreamWriter<ChunkSink> = zip.finish()?;
                stream.into_inner().finish()?;
                return Ok(Summary { entries });
            }
        }
    }
    Err(ExportError::Interrupted)
}

fn spool_key(spool: &mut BufWriter<File>, key: &str) -> io::Result<()> {
    serde_json::to_writer(&mut *spool, key)?;
    spool.write_all(b"\n")
}

fn out_of_order(what: &str) -> ExportError {
    ExportError::Archive(format!("{what} out of order"))
}

/// A ZIP time (no zone; UTC here, the README says so) from `at`.
fn zip_time(at: DateTime<Utc>) -> zip::DateTime {
    zip::DateTime::from_date_and_time(
        at.year().clamp(1980, 2107) as u16,
        at.month() as u8,
        at.day() as u8,
        at.hour() as u8,
        at.minute() as u8,
        at.second().min(59) as u8,
    )
    .unwrap_or_default()
}
