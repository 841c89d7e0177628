//! What an export holds, pure: from the data map ([`Catalog`]) and the
//! column settings for exports, the list of files of a bundle, each with its
//! rows (an SQL condition), its columns and their labels, the columns left
//! out and why, and the columns that name stored objects.
//!
//! The extension turns a file into a query ([`ExportFile::query`]) and opens
//! a cursor on it; the control plane writes the rows as JSON and CSV. Which
//! rows are the subject's is decided here, from the same keys the erasure
//! plan uses: only rows whose subject column is the subject (directly or
//! through a registered parent), never another member's rows.
//!
//! Parameters of every query: `$1` the target's id, `$2` the target's type.

use std::collections::BTreeMap;

use crate::plan::{ident, Catalog, Key, PlanError, Table};
use crate::rules::OnErase;

/// What a file of the bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The subject's own row (a workspace export: the workspace's row).
    Account,
    /// Rows of a registered table that are the subject's.
    Table,
    /// The subject's memberships of workspaces.
    Membership,
    /// Rows kept under a legal basis after an erasure (`on_erase = 'retain'`).
    Billing,
    /// The subject's events in the audit log.
    Audit,
}

impl FileKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            FileKind::Account => "account",
            FileKind::Table => "table",
            FileKind::Membership => "membership",
            FileKind::Billing => "billing",
            FileKind::Audit => "audit",
        }
    }
}

/// How the data map sets one column up for exports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnExport {
    /// The label people read instead of the column's name.
    pub label: Option<String>,
    /// Left out of every export, for this reason.
    pub excluded: Option<String>,
}

/// Export settings by table oid, then column name.
pub type ColumnExports = BTreeMap<u32, BTreeMap<String, ColumnExport>>;

/// One column of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportColumn {
    pub name: String,
    pub label: String,
    /// The column's type as PostgreSQL names it.
    pub type_name: String,
}

/// A column left out of a file, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Excluded {
    pub name: String,
    pub label: String,
    pub reason: String,
}

/// One file of the bundle (written as `name.json` and `name.csv`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportFile {
    /// Unique lower-case ASCII base name: `account`, `posts`, `audit-log`.
    pub name: String,
    pub kind: FileKind,
    pub label: String,
    /// One sentence for the bundle's README.
    pub description: String,
    /// How long the rows are kept after an erasure, and why (billing).
    pub retention: Option<String>,
    /// The table read (oid); `None` for the audit log.
    pub table: Option<u32>,
    /// Schema-qualified, quoted.
    pub table_name: String,
    /// Condition on the table's rows (columns named bare).
    pub rows: String,
    pub columns: Vec<ExportColumn>,
    pub excluded: Vec<Excluded>,
    /// Columns whose values are keys of stored objects.
    pub storage_columns: Vec<String>,
}

impl ExportFile {
    /// The rows as one `json` object each, keyed by column name in the
    /// columns' order: `SELECT to_json(r.*) FROM (SELECT cols FROM t WHERE
    /// rows) r`. Takes `$1` (target id) and `$2` (target type).
    pub fn query(&self) -> String {
        let cols: Vec<String> = self.columns.iter().map(|c| ident(&c.name)).collect();
        format!(
            "SELECT pg_catalog.to_json(r.*) AS \"row\" FROM (SELECT {} FROM {} WHERE {}) r",
            cols.join(", "),
            self.table_name,
            self.rows
        )
    }
}

/// The default label of a column: words from its name, the first
/// capitalised, `id` as `ID` (`created_at` -> "Created at", `user_id` ->
/// "User ID", `createdAt` -> "Created at").
pub fn default_label(column: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for ch in column.chars() {
        if ch == '_' || ch == '-' || ch == ' ' || ch == '.' {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            prev_lower = false;
            continue;
        }
        if ch.is_uppercase() && prev_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        prev_lower = ch.is_lowercase() || ch.is_ascii_digit();
        word.extend(ch.to_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    if words.is_empty() {
        return column.to_string();
    }
    let words: Vec<String> = words
        .into_iter()
        .enumerate()
        .map(|(i, w)| match w.as_str() {
            "id" | "ip" | "url" | "uuid" | "iban" | "vat" => w.to_uppercase(),
            _ if i == 0 => {
                let mut c = w.chars();
                match c.next() {
                    Some(f) => f.to_uppercase().chain(c).collect(),
                    None => w,
                }
            }
            _ => w,
        })
        .collect();
    words.join(" ")
}

/// A file name from a label: lower-case ASCII letters, digits and dashes.
pub fn slug(label: &str) -> String {
    let mut out = String::new();
    for ch in label.chars() {
        let ch = match ch {
            'ä' | 'Ä' | 'à' | 'á' | 'â' | 'å' | 'Å' => 'a',
            'ö' | 'Ö' | 'ó' | 'ò' | 'ô' => 'o',
            'ü' | 'Ü' | 'ú' | 'ù' | 'û' => 'u',
            'é' | 'è' | 'ê' | 'ë' | 'É' => 'e',
            c => c,
        };
        if ch.is_ascii_alphanumeric() {
            out.push(ch.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out
}

/// Names a bundle keeps for itself.
const RESERVED: [&str; 5] = ["readme", "files", "account", "workspace", "audit-log"];

/// What the export of a target holds, in the bundle's order: the account,
/// the subject's rows table by table (by label), memberships, billing, the
/// audit log.
pub fn contents(
    cat: &Catalog,
    target_type: &str,
    settings: &ColumnExports,
) -> Result<Vec<ExportFile>, PlanError> {
    let workspace = target_type == "tenant" || target_type == "workspace";
    let mut files = if workspace {
        workspace_files(cat, settings)?
    } else {
        subject_files(cat, target_type, settings)?
    };
    files.push(audit_file(workspace));
    name_files(&mut files);
    Ok(files)
}

fn subject_files(
    cat: &Catalog,
    subject_type: &str,
    settings: &ColumnExports,
) -> Result<Vec<ExportFile>, PlanError> {
    let sub = cat
        .subject_table(subject_type)
        .ok_or_else(|| PlanError::UnknownTarget(subject_type.to_string()))?;
    let id_column = &sub.subject.as_ref().expect("subject table").id_column;
    let mut files = vec![file(
        sub,
        FileKind::Account,
        "Account".into(),
        format!(
            "Your account: your own row of {} (the one whose {} is your id).",
            sub.label,
            column_label(sub, id_column, settings)
        ),
        sub.eq(id_column, "$1"),
        settings,
    )];
    let mut tables = Vec::new();
    let mut memberships = Vec::new();
    let mut billing = Vec::new();
    for t in &cat.tables {
        if t.subject.is_some() || t.tenant.is_some() {
            continue;
        }
        if let Some(m) = t
            .membership
            .as_ref()
            .filter(|m| m.subject_type == subject_type)
        {
            memberships.push(file(
                t,
                FileKind::Membership,
                t.label.clone(),
                format!(
                    "Your memberships of workspaces: the rows of {} whose {} is you.",
                    t.label,
                    column_label(t, &m.subject_column, settings)
                ),
                t.eq(&m.subject_column, "$1"),
                settings,
            ));
            continue;
        }
        let Some(d) = t.data.as_ref().filter(|d| d.subject_type == subject_type) else {
            continue;
        };
        let rows = t.key_rows(&d.subject, "$1", cat);
        let how = match &d.subject {
            Key::Column(c) => format!("whose {} is you", column_label(t, c, settings)),
            Key::Via { parent, .. } => format!(
                "that belong to your rows of {}",
                cat.table(*parent)
                    .map(|p| p.label.as_str())
                    .unwrap_or("another table")
            ),
        };
        if d.on_erase == OnErase::Retain {
            let mut f = file(
                t,
                FileKind::Billing,
                t.label.clone(),
                format!("The rows of {} {how}.", t.label),
                rows,
                settings,
            );
            f.retention = Some(retention(d.retain_for.as_deref(), d.legal_basis.as_deref()));
            billing.push(f);
        } else {
            tables.push(file(
                t,
                FileKind::Table,
                t.label.clone(),
                format!("The rows of {} {how}.", t.label),
                rows,
                settings,
            ));
        }
    }
    for mut group in [tables, memberships, billing] {
        group.sort_by_key(|f| f.label.to_lowercase());
        files.extend(group);
    }
    Ok(files)
}

fn workspace_files(cat: &Catalog, settings: &ColumnExports) -> Result<Vec<ExportFile>, PlanError> {
    let ten = cat.tenant_table().ok_or(PlanError::NoTenantTable)?;
    let id_column = ten.tenant.as_deref().expect("tenant table");
    let mut files = vec![file(
        ten,
        FileKind::Account,
        "Workspace".into(),
        format!("The workspace itself: its row of {}.", ten.label),
        ten.eq(id_column, "$1"),
        settings,
    )];
    let mut tables = Vec::new();
    let mut memberships = Vec::new();
    let mut billing = Vec::new();
    for t in &cat.tables {
        if t.tenant.is_some() {
            continue;
        }
        let key = if let Some(k) = t.data.as_ref().and_then(|d| d.tenant.clone()) {
            k
        } else if let Some(c) = t.subject.as_ref().and_then(|s| s.tenant_column.clone()) {
            Key::Column(c)
        } else if let Some(m) = &t.membership {
            Key::Column(m.tenant_column.clone())
        } else {
            continue;
        };
        let rows = t.key_rows(&key, "$1", cat);
        let description = format!("Every row of {} in the workspace.", t.label);
        if t.membership.is_some() {
            memberships.push(file(
                t,
                FileKind::Membership,
                t.label.clone(),
                description,
                rows,
                settings,
            ));
        } else if let Some(d) = t.data.as_ref().filter(|d| d.on_erase == OnErase::Retain) {
            let mut f = file(
                t,
                FileKind::Billing,
                t.label.clone(),
                description,
                rows,
                settings,
            );
            f.retention = Some(retention(d.retain_for.as_deref(), d.legal_basis.as_deref()));
            billing.push(f);
        } else {
            tables.push(file(
                t,
                FileKind::Table,
                t.label.clone(),
                description,
                rows,
                settings,
            ));
        }
    }
    for mut group in [tables, memberships, billing] {
        group.sort_by_key(|f| f.label.to_lowercase());
        files.extend(group);
    }
    Ok(files)
}

fn retention(retain_for: Option<&str>, basis: Option<&str>) -> String {
    // An interval as PostgreSQL's verbose style writes it starts with "@ ".
    let period = retain_for
        .map(|p| p.trim_start_matches("@ "))
        .unwrap_or("the period the law requires");
    match basis {
        Some(b) => format!("Kept for {period} after an erasure (legal basis: {b})."),
        None => format!("Kept for {period} after an erasure."),
    }
}

/// The audit log's columns: (name, label). The chain's hashes and salts
/// are the log's integrity data, not the subject's.
const AUDIT_COLUMNS: [(&str, &str, &str); 9] = [
    ("id", "Event ID", "bigint"),
    ("occurred_at", "Occurred at", "timestamp with time zone"),
    ("event_type", "Event", "text"),
    ("actor", "By", "text"),
    ("tenant_id", "Workspace", "text"),
    ("ip", "IP address", "inet"),
    ("user_agent", "User agent", "text"),
    ("reason", "Reason", "text"),
    ("details", "Details", "jsonb"),
];

fn audit_file(workspace: bool) -> ExportFile {
    let (rows, description) = if workspace {
        (
            "tenant_id OPERATOR(pg_catalog.=) $1".to_string(),
            "What happened in the workspace, as the audit log recorded it: one event per row, oldest first, redacted where an erasure redacted it.",
        )
    } else {
        (
            "subject_type OPERATOR(pg_catalog.=) $2 AND subject_id OPERATOR(pg_catalog.=) $1"
                .to_string(),
            "What happened to your account and your data, as the audit log recorded it: one event per row, oldest first, redacted where an erasure redacted it.",
        )
    };
    ExportFile {
        name: "audit-log".into(),
        kind: FileKind::Audit,
        label: "Audit log".into(),
        description: description.into(),
        retention: None,
        table: None,
        table_name: "lifecycle.audit_log".into(),
        rows: format!("{rows} ORDER BY id"),
        columns: AUDIT_COLUMNS
            .iter()
            .map(|(n, l, t)| ExportColumn {
                name: (*n).into(),
                label: (*l).into(),
                type_name: (*t).into(),
            })
            .collect(),
        excluded: vec![Excluded {
            name: "chain, salt, personal_digest, prev_hash, hash".into(),
            label: "Integrity data".into(),
            reason:
                "the hashes that prove the audit log unchanged: data about the log, not about you"
                    .into(),
        }],
        storage_columns: Vec::new(),
    }
}

fn column_label(t: &Table, column: &str, settings: &ColumnExports) -> String {
    settings
        .get(&t.oid)
        .and_then(|s| s.get(column))
        .and_then(|c| c.label.clone())
        .unwrap_or_else(|| default_label(column))
}

fn file(
    t: &Table,
    kind: FileKind,
    label: String,
    description: String,
    rows: String,
    settings: &ColumnExports,
) -> ExportFile {
    let own = settings.get(&t.oid);
    let mut columns: Vec<ExportColumn> = Vec::new();
    let mut excluded = Vec::new();
    for c in &t.columns {
        let set = own.and_then(|s| s.get(&c.name));
        let label = column_label(t, &c.name, settings);
        if let Some(reason) = set.and_then(|s| s.excluded.clone()) {
            excluded.push(Excluded {
                name: c.name.clone(),
                label,
                reason,
            });
            continue;
        }
        columns.push(ExportColumn {
            name: c.name.clone(),
            label,
            type_name: c.type_name.clone(),
        });
    }
    // Two columns of one file never share a label.
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for c in &columns {
        *seen.entry(c.label.to_lowercase()).or_default() += 1;
    }
    for c in &mut columns {
        if seen[&c.label.to_lowercase()] > 1 {
            c.label = format!("{} ({})", c.label, c.name);
        }
    }
    let storage_columns = t
        .storage_columns()
        .into_iter()
        .filter(|s| columns.iter().any(|c| &c.name == s))
        .collect();
    ExportFile {
        name: String::new(),
        kind,
        label,
        description,
        retention: None,
        table: Some(t.oid),
        table_name: t.name.clone(),
        rows,
        columns,
        excluded,
        storage_columns,
    }
}

/// Unique file names from the labels (`account` and `audit-log` keep theirs).
fn name_files(files: &mut [ExportFile]) {
    let mut used: Vec<String> = Vec::new();
    for f in files.iter_mut() {
        let base = match f.kind {
            FileKind::Account => slug(&f.label),
            FileKind::Audit => "audit-log".to_string(),
            _ => {
                let s = slug(&f.label);
                let s = if s.is_empty() {
                    slug(&f.table_name.replace('"', ""))
                } else {
                    s
                };
                if s.is_empty() || RESERVED.contains(&s.as_str()) {
                    format!("table-{s}").trim_end_matches('-').to_string()
                } else {
                    s
                }
            }
        };
        let mut name = base.clone();
        let mut n = 2;
        while used.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        used.push(name.clone());
        f.name = name;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::chat as chat_catalog;

    #[test]
    fn default_labels_read_as_words() {
        assert_eq!(default_label("created_at"), "Created at");
        assert_eq!(default_label("user_id"), "User ID");
        assert_eq!(default_label("createdAt"), "Created at");
        assert_eq!(default_label("id"), "ID");
        assert_eq!(default_label("email"), "Email");
        assert_eq!(default_label("last_login_ip"), "Last login IP");
        assert_eq!(default_label("名前"), "名前");
        assert_eq!(default_label("__"), "__");
    }

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("Posts"), "posts");
        assert_eq!(slug("Team members"), "team-members");
        assert_eq!(slug("Ärger & Co."), "arger-co");
        assert_eq!(slug("山田"), "");
    }

    #[test]
    fn a_subject_export_holds_only_the_subjects_rows() {
        let cat = chat_catalog();
        let files = contents(&cat, "user", &ColumnExports::new()).unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names.first(), Some(&"account"));
        assert_eq!(names.last(), Some(&"audit-log"));
        let posts = files.iter().find(|f| f.label == "Posts").expect("posts");
        assert_eq!(posts.kind, FileKind::Table);
        assert!(posts.rows.contains("$1"), "{}", posts.rows);
        assert!(posts.query().starts_with("SELECT pg_catalog.to_json(r.*)"));
        let members = files
            .iter()
            .find(|f| f.kind == FileKind::Membership)
            .expect("memberships");
        assert!(members.rows.contains("$1"));
        // No workspace's own row in a subject's export.
        assert!(!files.iter().any(|f| f.label == "Teams"));
        let audit = files.last().unwrap();
        assert!(audit.rows.contains("$2"));
        assert!(!audit.columns.iter().any(|c| c.name == "hash"));
    }

    #[test]
    fn excluded_columns_and_labels_come_from_the_settings() {
        let cat = chat_catalog();
        let users = cat.subject_table("user").unwrap();
        let mut settings = ColumnExports::new();
        let own = settings.entry(users.oid).or_default();
        let first = users.columns[1].name.clone();
        let second = users.columns[2].name.clone();
        own.insert(
            first.clone(),
            ColumnExport {
                label: None,
                excluded: Some("a secret".into()),
            },
        );
        own.insert(
            second.clone(),
            ColumnExport {
                label: Some("Your handle".into()),
                excluded: None,
            },
        );
        let files = contents(&cat, "user", &settings).unwrap();
        let account = &files[0];
        assert!(!account.columns.iter().any(|c| c.name == first));
        assert!(!account.query().contains(&ident(&first)));
        assert_eq!(account.excluded[0].reason, "a secret");
        let c = account.columns.iter().find(|c| c.name == second).unwrap();
        assert_eq!(c.label, "Your handle");
    }

    #[test]
    fn a_workspace_export_holds_the_workspaces_rows() {
        let cat = chat_catalog();
        let files = contents(&cat, "workspace", &ColumnExports::new()).unwrap();
        assert_eq!(files[0].label, "Workspace");
        assert_eq!(files[0].name, "workspace");
        assert!(files.iter().any(|f| f.label == "Posts"));
        assert!(files.last().unwrap().rows.starts_with("tenant_id"));
    }

    #[test]
    fn names_are_unique_and_never_reserved() {
        let mut files = vec![
            audit_file(false),
            audit_file(false),
            ExportFile {
                label: "Audit log".into(),
                kind: FileKind::Table,
                ..audit_file(false)
            },
            ExportFile {
                label: "README".into(),
                kind: FileKind::Table,
                ..audit_file(false)
            },
        ];
        name_files(&mut files);
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "audit-log",
                "audit-log-2",
                "table-audit-log",
                "table-readme"
            ]
        );
    }
}
