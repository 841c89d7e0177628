//! The bundle's `README.md`, rendered with askama from
//! `templates/export-readme.md` once every other entry is written (so that
//! it can carry their counts): what each file holds and its columns, what
//! is not included and why, how long billing is kept, the snapshot's time
//! and the formats.

use askama::Template;
use chrono::{DateTime, SecondsFormat, Utc};

use super::contents::FileSpec;

/// Stored objects that could not be found, listed by key at most.
pub const MISSING_LISTED: usize = 1000;

/// What the README says.
#[derive(Template)]
#[template(path = "export-readme.md", escape = "none")]
pub struct Readme {
    /// "user 42", "workspace acme".
    whom: String,
    workspace: bool,
    snapshot_at: String,
    files: Vec<FileSection>,
    objects_copied: u64,
    objects_missing: u64,
    missing: Vec<MissingLine>,
    missing_unlisted: u64,
    files_store: bool,
    excluded: Vec<ExcludedLine>,
    retained: Vec<RetainedLine>,
}

struct FileSection {
    name: String,
    label: String,
    label_cell: String,
    description: String,
    description_cell: String,
    rows: u64,
    retention: Option<String>,
    objects: u64,
    objects_missing: u64,
    columns: Vec<ColumnLine>,
}

struct ColumnLine {
    label: String,
    meaning: String,
}

struct ExcludedLine {
    file: String,
    label: String,
    reason: String,
}

struct RetainedLine {
    name: String,
    label: String,
    retention: String,
}

struct MissingLine {
    file: String,
    key: String,
}

/// One file as written.
pub struct Written<'a> {
    pub spec: &'a FileSpec,
    pub rows: u64,
    pub objects: u64,
    pub objects_missing: u64,
}

impl Readme {
    /// The README of a bundle of `target_type` `target_id`.
    pub fn new(
        target_type: &str,
        target_id: &str,
        workspace: bool,
        snapshot_at: DateTime<Utc>,
        files_store: bool,
    ) -> Self {
        Self {
            // The extension records a workspace target as `tenant`.
            whom: if workspace {
                format!("workspace {}", one_line(target_id))
            } else {
                format!("{} {}", one_line(target_type), one_line(target_id))
            },
            workspace,
            snapshot_at: snapshot_at.to_rfc3339_opts(SecondsFormat::Secs, true),
            files: Vec::new(),
            objects_copied: 0,
            objects_missing: 0,
            missing: Vec::new(),
            missing_unlisted: 0,
            files_store,
            excluded: Vec::new(),
            retained: Vec::new(),
        }
    }

    /// Add a file, in the bundle's order.
    pub fn file(&mut self, written: Written<'_>) {
        let spec = written.spec;
        self.objects_copied += written.objects;
        self.objects_missing += written.objects_missing;
        for e in &spec.excluded {
            self.excluded.push(ExcludedLine {
                file: one_line(&spec.label),
                label: one_line(&e.label),
                reason: one_line(&e.reason),
            });
        }
        if let Some(retention) = &spec.retention {
            self.retained.push(RetainedLine {
                name: spec.name.clone(),
                label: one_line(&spec.label),
                retention: one_line(retention),
            });
        }
        self.files.push(FileSection {
            name: spec.name.clone(),
            label: one_line(&spec.label),
            label_cell: cell(&spec.label),
            description: spec.description.trim().to_owned(),
            description_cell: cell(&spec.description),
            rows: written.rows,
            retention: spec.retention.as_deref().map(one_line),
            objects: written.objects,
            objects_missing: written.objects_missing,
            columns: spec
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| ColumnLine {
                    label: cell(&c.label),
                    meaning: cell(&meaning(
                        &c.type_name,
                        spec.storage_columns.contains(&i),
                        &spec.name,
                    )),
                })
                .collect(),
        });
    }

    /// A stored object of `file` that could not be found.
    pub fn missing(&mut self, file: &FileSpec, key: &str) {
        if self.missing.len() < MISSING_LISTED {
            self.missing.push(MissingLine {
                file: one_line(&file.label),
                key: code(key),
            });
        } else {
            self.missing_unlisted += 1;
        }
    }
}

/// Text on one line (labels and reasons come from the data map).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text inside a Markdown table cell.
fn cell(text: &str) -> String {
    one_line(text).replace('|', "\\|")
}

/// Text as Markdown code, whatever backticks it holds.
fn code(text: &str) -> String {
    let text = one_line(text);
    let mut longest = 0;
    let mut run = 0;
    for c in text.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if text.starts_with('`') || text.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{text}{pad}{fence}")
}

/// What a column of type `type_name` holds, in words.
fn meaning(type_name: &str, storage: bool, file: &str) -> String {
    if storage {
        return format!("the name of a stored file; the file itself is in `files/{file}/`");
    }
    let t = type_name.trim().to_lowercase();
    if let Some(inner) = t.strip_suffix("[]") {
        return format!("a list of: {}", meaning(inner, false, file));
    }
    let base = t.split('(').next().unwrap_or(&t).trim();
    match base {
        "timestamp with time zone" | "timestamptz" => {
            "date and time (ISO 8601, with its offset from UTC)".into()
        }
        "timestamp without time zone" | "timestamp" => {
            "date and time (ISO 8601, as recorded, without an offset)".into()
        }
        "date" => "date (ISO 8601: year-month-day)".into(),
        "time with time zone" | "time without time zone" | "time" => "time of day".into(),
        "interval" => "a duration".into(),
        "boolean" => "yes or no (true or false)".into(),
        "smallint" | "integer" | "bigint" | "int" | "int2" | "int4" | "int8" => {
            "a whole number".into()
        }
        "numeric" | "decimal" | "real" | "double precision" | "float4" | "float8" => {
            "a number".into()
        }
        "money" => "an amount of money".into(),
        "text" | "character varying" | "varchar" | "character" | "char" | "bpchar" | "citext"
        | "name" => "text".into(),
        "uuid" => "an identifier (UUID)".into(),
        "json" | "jsonb" => "structured data (JSON)".into(),
        "inet" | "cidr" => "an IP address".into(),
        "bytea" => "binary data (hexadecimal)".into(),
        "" => "a value".into(),
        _ => format!("a value of type {}", one_line(type_name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::contents::{Column, ExcludedColumn, FileKind};

    fn spec(name: &str, label: &str, retention: Option<&str>) -> FileSpec {
        FileSpec {
            name: name.into(),
            kind: FileKind::Table,
            label: label.into(),
            description: format!("The rows of {label} whose Author is you."),
            retention: retention.map(Into::into),
            columns: vec![
                Column {
                    name: "created_at".into(),
                    label: "Created at".into(),
                    type_name: "timestamp with time zone".into(),
                },
                Column {
                    name: "storage_key".into(),
                    label: "Stored | as".into(),
                    type_name: "text".into(),
                },
            ],
            excluded: vec![ExcludedColumn {
                name: "password_hash".into(),
                label: "Password hash".into(),
                reason: "a secret of the service".into(),
            }],
            storage_columns: vec![1],
        }
    }

    #[test]
    fn the_readme_names_every_file_its_columns_and_what_is_left_out() {
        let at = DateTime::parse_from_rfc3339("2026-02-03T04:05:06.789Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut readme = Readme::new("user", "42", false, at, true);
        let posts = spec("posts", "Posts", None);
        let invoices = spec(
            "invoices",
            "Invoices",
            Some("Kept for 7 years (legal basis: tax law)."),
        );
        readme.file(Written {
            spec: &posts,
            rows: 1,
            objects: 2,
            objects_missing: 1,
        });
        readme.file(Written {
            spec: &invoices,
            rows: 12,
            objects: 0,
            objects_missing: 0,
        });
        readme.missing(&posts, "workspaces/1/`odd`");
        let text = readme.render().unwrap();
        for needle in [
            "about user 42.",
            "**2026-02-03T04:05:06Z** (UTC)",
            "| `posts.json`, `posts.csv` | Posts: The rows of Posts whose Author is you. | 1 |",
            "| `invoices.json`, `invoices.csv` | Invoices: ",
            "| `files/` | Stored files",
            "## Posts",
            "In `posts.json` and `posts.csv`: 1 row.",
            "In `invoices.json` and `invoices.csv`: 12 rows.",
            "| Created at | date and time (ISO 8601, with its offset from UTC) |",
            "| Stored \\| as | the name of a stored file; the file itself is in `files/posts/` |",
            "**Retention:** Kept for 7 years (legal basis: tax law).",
            "- **Other people's content.**",
            "  - Posts: Password hash (a secret of the service)",
            "- **Stored files that could not be found** (1):",
            "  - Posts: `` workspaces/1/`odd` ``",
            "- Invoices (`invoices`): Kept for 7 years",
            "They start with a\n  byte-order mark",
        ] {
            assert!(text.contains(needle), "{needle:?} not in:\n{text}");
        }
        assert!(!text.contains("{{") && !text.contains("{%"), "{text}");
        assert!(!text.contains("\n\n\n"), "no runs of blank lines:\n{text}");
    }

    #[test]
    fn a_workspace_readme_speaks_of_the_workspace() {
        let mut readme = Readme::new("tenant", "acme", true, Utc::now(), false);
        let mut files = spec("files", "Uploaded files", None);
        files.excluded.clear();
        readme.file(Written {
            spec: &files,
            rows: 0,
            objects: 0,
            objects_missing: 3,
        });
        let text = readme.render().unwrap();
        assert!(
            text.contains("about workspace acme: every row that belongs to the workspace."),
            "{text}"
        );
        assert!(text.contains("- **Other workspaces.**"), "{text}");
        assert!(!text.contains("Other people's content"), "{text}");
        assert!(text.contains("- **Columns left out.** None"), "{text}");
        assert!(
            text.contains("- **Stored files** (3): the files your rows name"),
            "{text}"
        );
        assert!(
            text.contains("The 3 stored files these rows name are not in this archive"),
            "{text}"
        );
        assert!(!text.contains("could not be found"), "{text}");
        assert!(text.contains("0 rows."), "{text}");
        assert!(
            text.contains("Nothing here is kept beyond an erasure"),
            "{text}"
        );
        assert!(!text.contains("| `files/` |"), "{text}");
    }

    #[test]
    fn types_read_as_words() {
        assert_eq!(meaning("bigint", false, "f"), "a whole number");
        assert_eq!(meaning("character varying(200)", false, "f"), "text");
        assert_eq!(meaning("numeric(12,2)", false, "f"), "a number");
        assert_eq!(meaning("text[]", false, "f"), "a list of: text");
        assert_eq!(meaning("tsvector", false, "f"), "a value of type tsvector");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(cell("a|b\nc"), "a\\|b c");
    }
}
