//! Why a bundle could not be built. The worker logs it and decides whether
//! the job is tried again; what the job records says nothing of it
//! (`worker::export`).

use std::fmt;
use std::io;

use lifecycle_core::Code;

use crate::storage::StorageError;

/// A bundle that could not be built.
#[derive(Debug)]
pub enum ExportError {
    /// PostgreSQL refused, or the connection broke.
    Database(tokio_postgres::Error),
    /// The bundle store or the file store failed.
    Storage(StorageError),
    /// The archive could not be written (a temporary file, the ZIP writer).
    Archive(String),
    /// The extension's answer could not be used (a row that is not a JSON
    /// object, a file name that is not a slug).
    Contents(String),
    /// The README could not be rendered.
    Template(askama::Error),
    /// A part of the builder stopped because another one failed.
    Interrupted,
}

impl ExportError {
    /// SQLSTATE of a database refusal.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            ExportError::Database(e) => e.code().map(|c| c.code()),
            _ => None,
        }
    }

    /// The target no longer exists: trying again cannot help.
    pub fn is_target_missing(&self) -> bool {
        self.sqlstate() == Some(Code::TargetNotFound.sqlstate())
    }

    /// A table's row-level security would hide rows from the export
    /// (`LC044`): trying again cannot help until an operator changes the
    /// table.
    pub fn is_hidden_by_row_security(&self) -> bool {
        self.sqlstate() == Some(Code::RowSecurityHidesRows.sqlstate())
    }
}

impl fmt::Display for ExportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExportError::Database(e) => match e.as_db_error() {
                Some(db) => write!(f, "database: {} {}", db.code().code(), db.message()),
                None => write!(f, "database: {e}"),
            },
            ExportError::Storage(e) => write!(f, "{e}"),
            ExportError::Archive(e) => write!(f, "archive: {e}"),
            ExportError::Contents(e) => write!(f, "export contents: {e}"),
            ExportError::Template(e) => write!(f, "README: {e}"),
            ExportError::Interrupted => f.write_str("interrupted"),
        }
    }
}

impl std::error::Error for ExportError {}

impl From<tokio_postgres::Error> for ExportError {
    fn from(e: tokio_postgres::Error) -> Self {
        ExportError::Database(e)
    }
}

impl From<StorageError> for ExportError {
    fn from(e: StorageError) -> Self {
        ExportError::Storage(e)
    }
}

impl From<io::Error> for ExportError {
    fn from(e: io::Error) -> Self {
        ExportError::Archive(e.to_string())
    }
}

impl From<zip::result::ZipError> for ExportError {
    fn from(e: zip::result::ZipError) -> Self {
        ExportError::Archive(e.to_string())
    }
}

impl From<askama::Error> for ExportError {
    fn from(e: askama::Error) -> Self {
        ExportError::Template(e)
    }
}
