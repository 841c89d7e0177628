//! What goes into a bundle, as `lifecycle.export_contents` lists it: the
//! files in order, each with its columns (name, label, type), the columns
//! the data map leaves out and why, and the columns that name stored
//! objects. The control plane never builds its own list of tables.

use serde::Deserialize;
use tokio_postgres::Row;

use super::error::ExportError;

/// The files of the target's bundle, in order.
pub const EXPORT_CONTENTS: &str = "\
    SELECT position, name, kind, label, description, retention, columns, excluded, \
           coalesce(storage_columns, '{}') \
      FROM lifecycle.export_contents($1, $2, $3) ORDER BY position";

/// What a file holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// The subject's own row (the workspace's, for a workspace export).
    Account,
    /// Rows of a registered table that are the subject's.
    Table,
    /// The subject's memberships.
    Membership,
    /// Rows kept under a legal basis after an erasure.
    Billing,
    /// Audit events.
    Audit,
    /// A kind this control plane does not know yet (written like a table).
    Other,
}

impl FileKind {
    fn parse(kind: &str) -> Self {
        match kind {
            "account" => FileKind::Account,
            "table" => FileKind::Table,
            "membership" => FileKind::Membership,
            "billing" => FileKind::Billing,
            "audit" => FileKind::Audit,
            _ => FileKind::Other,
        }
    }
}

/// One column of a file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Column {
    pub name: String,
    pub label: String,
    /// PostgreSQL's name of its type.
    #[serde(rename = "type", default)]
    pub type_name: String,
}

/// A column the data map leaves out of exports.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ExcludedColumn {
    #[serde(default)]
    pub name: String,
    pub label: String,
    #[serde(default)]
    pub reason: String,
}

/// One file of the bundle: `<name>.json` and `<name>.csv`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    pub name: String,
    pub kind: FileKind,
    pub label: String,
    pub description: String,
    /// How long the rows are kept after an erasure, and why (billing).
    pub retention: Option<String>,
    pub columns: Vec<Column>,
    pub excluded: Vec<ExcludedColumn>,
    /// Indexes into `columns` of the columns whose values are object keys.
    pub storage_columns: Vec<usize>,
}

impl FileSpec {
    /// Read one row of [`EXPORT_CONTENTS`].
    pub fn from_row(row: &Row) -> Result<Self, ExportError> {
        let name: String = row.try_get(1)?;
        let kind: String = row.try_get(2)?;
        let columns: serde_json::Value = row.try_get(6)?;
        let excluded: Option<serde_json::Value> = row.try_get(7)?;
        let storage: Vec<String> = row.try_get(8)?;
        let columns: Vec<Column> = serde_json::from_value(columns)
            .map_err(|e| ExportError::Contents(format!("columns of {name:?}: {e}")))?;
        let excluded: Vec<ExcludedColumn> = match excluded {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(v) => serde_json::from_value(v)
                .map_err(|e| ExportError::Contents(format!("excluded of {name:?}: {e}")))?,
        };
        let storage_columns = storage
            .iter()
            .filter_map(|s| columns.iter().position(|c| &c.name == s))
            .collect();
        let spec = FileSpec {
            kind: FileKind::parse(&kind),
            label: row.try_get(3)?,
            description: row.try_get::<_, Option<String>>(4)?.unwrap_or_default(),
            retention: row.try_get(5)?,
            columns,
            excluded,
            storage_columns,
            name,
        };
        spec.check()?;
        Ok(spec)
    }

    /// A name that is safe as a file name and as a folder under `files/`.
    fn check(&self) -> Result<(), ExportError> {
        let ok = !self.name.is_empty()
            && self.name.len() <= 100
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !ok {
            return Err(ExportError::Contents(format!(
                "file name {:?} is not a lower-case ASCII slug",
                self.name
            )));
        }
        if self.columns.is_empty() {
            return Err(ExportError::Contents(format!(
                "file {:?} has no columns",
                self.name
            )));
        }
        Ok(())
    }
}

/// Check the list as a whole: names unique, `readme` and `files` left to
/// the bundle itself.
pub fn check_all(files: &[FileSpec]) -> Result<(), ExportError> {
    for (i, f) in files.iter().enumerate() {
        if f.name == "readme" || f.name == "files" {
            return Err(ExportError::Contents(format!(
                "file name {:?} is the bundle's own",
                f.name
            )));
        }
        if files[..i].iter().any(|o| o.name == f.name) {
            return Err(ExportError::Contents(format!(
                "file name {:?} is listed twice",
                f.name
            )));
        }
    }
    Ok(())
}

/// Whether the target is a workspace (its export holds every row of the
/// tenant) rather than a person: the same rule the extension applies.
pub fn is_workspace(target_type: &str) -> bool {
    matches!(target_type, "tenant" | "workspace")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str) -> FileSpec {
        FileSpec {
            name: name.to_owned(),
            kind: FileKind::Table,
            label: "Posts".to_owned(),
            description: String::new(),
            retention: None,
            columns: vec![Column {
                name: "id".into(),
                label: "ID".into(),
                type_name: "bigint".into(),
            }],
            excluded: Vec::new(),
            storage_columns: Vec::new(),
        }
    }

    #[test]
    fn names_must_be_slugs_and_unique() {
        assert!(spec("audit-log").check().is_ok());
        for bad in ["", "../x", "Posts", "a/b", "a b", "é"] {
            assert!(spec(bad).check().is_err(), "{bad:?}");
        }
        assert!(check_all(&[spec("posts"), spec("posts")]).is_err());
        assert!(check_all(&[spec("readme")]).is_err());
        assert!(check_all(&[spec("posts"), spec("account")]).is_ok());
        let mut empty = spec("x");
        empty.columns.clear();
        assert!(empty.check().is_err());
    }

    #[test]
    fn kinds_are_read() {
        assert_eq!(FileKind::parse("billing"), FileKind::Billing);
        assert_eq!(FileKind::parse("audit"), FileKind::Audit);
        assert_eq!(FileKind::parse("new-kind"), FileKind::Other);
    }
}
