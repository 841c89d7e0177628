//! The erasure plan: from the data map, the relationships between tables and
//! the target, the typed list of steps an erasure, a workspace erasure or a
//! purge takes. Pure: nothing here touches the database. The extension
//! gathers the [`Catalog`], asks for a plan, and then either counts what each
//! step would touch (the preview) or runs it (execute), then verifies; the
//! preview and the run share one plan, so what the approver saw is what runs.
//!
//! Every step names a table, the rows it applies to as an SQL condition and
//! what it does to them. Conditions use four parameters: `$1` the step's
//! own key (the subject's id, or a workspace's id), `$2` a second value (the
//! workspace a membership ends in), `$3` the subject's identifiers
//! (`text[]`).
//! Identifiers are quoted, operators and casts schema-qualified.

use std::collections::{BTreeMap, BTreeSet};

use crate::rules::{ColumnRule, OnErase};

/// Why a step redacts other people's rows.
const MENTIONS_REDACTED: &str = "the subject mentioned in other people's rows (redact_mentions)";

/// Most steps a reference chain may add below one deletion.
const MAX_DEPTH: u32 = 16;

/// What kind of value a column holds, as far as the plan cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Text,
    Json,
    Array,
    Bool,
    Date,
    Timestamp,
    Number,
    Other,
}

impl ValueKind {
    /// The kind of a column of base type `base_oid` (a built-in type's OID)
    /// in `pg_type.typcategory` `category`.
    pub fn of(base_oid: u32, category: char) -> ValueKind {
        // OIDs fixed by PostgreSQL (pg_type.dat).
        const BOOL: u32 = 16;
        const JSON: u32 = 114;
        const DATE: u32 = 1082;
        const TIMESTAMP: u32 = 1114;
        const TIMESTAMPTZ: u32 = 1184;
        const JSONB: u32 = 3802;
        match (base_oid, category) {
            (JSON | JSONB, _) => ValueKind::Json,
            (BOOL, _) => ValueKind::Bool,
            (DATE, _) => ValueKind::Date,
            (TIMESTAMP | TIMESTAMPTZ, _) => ValueKind::Timestamp,
            (_, 'S') => ValueKind::Text,
            (_, 'A') => ValueKind::Array,
            (_, 'N') => ValueKind::Number,
            _ => ValueKind::Other,
        }
    }
}

/// One column of a registered table.
#[derive(Debug, Clone)]
pub struct ColumnFacts {
    pub name: String,
    /// The type as a cast target (`character varying(26)`, `public.citext`).
    pub type_name: String,
    /// The base type's name as a cast target, without modifier.
    pub base_type_name: String,
    /// `OPERATOR(schema.=)` of the base type.
    pub eq: String,
    pub kind: ValueKind,
    pub not_null: bool,
    pub unique: bool,
    pub max_chars: Option<i32>,
    /// Part of the primary key, of a foreign key or of a declared link: it
    /// holds ids, never free text.
    pub is_key: bool,
}

/// How a row is tied to its subject or tenant: a column of its own, or a
/// column referencing a registered parent whose `parent_column` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Column(String),
    Via {
        column: String,
        parent: u32,
        parent_key: String,
        parent_column: String,
    },
}

impl Key {
    pub fn column(&self) -> &str {
        match self {
            Key::Column(c) | Key::Via { column: c, .. } => c,
        }
    }
}

/// How soft-deleted rows are told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoftDelete {
    /// NULL: live.
    Nullable,
    /// true: deleted.
    Flag,
    /// 0 or NULL: live (milliseconds since the epoch otherwise).
    Epoch,
}

#[derive(Debug, Clone)]
pub struct SubjectTable {
    pub subject_type: String,
    pub id_column: String,
    pub tenant_column: Option<String>,
}

#[derive(Debug, Clone)]
pub struct DataTable {
    pub subject_type: String,
    pub subject: Key,
    pub tenant: Option<Key>,
    /// 'delete', 'anonymize' or 'retain'.
    pub on_erase: OnErase,
    pub retain_for: Option<String>,
    pub legal_basis: Option<String>,
    pub soft_delete: Option<(String, SoftDelete)>,
    pub redact_mentions: bool,
}

/// How a membership row says "admin".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admin {
    Exact(Vec<String>),
    List(Vec<String>),
    Delimited {
        separator: String,
        roles: Vec<String>,
    },
    Flag,
}

impl Admin {
    /// From a membership registration's `role_kind`, `role_separator` and
    /// `admin_roles`.
    pub fn from_registration(kind: &str, separator: Option<&str>, roles: Vec<String>) -> Admin {
        match kind {
            "flag" => Admin::Flag,
            "list" => Admin::List(roles),
            "delimited" => Admin::Delimited {
                separator: separator.unwrap_or(" ").to_string(),
                roles,
            },
            _ => Admin::Exact(roles),
        }
    }

    /// The registration's `role_kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Admin::Exact(_) => "exact",
            Admin::List(_) => "list",
            Admin::Delimited { .. } => "delimited",
            Admin::Flag => "flag",
        }
    }

    /// The registration's `role_separator`.
    pub fn separator(&self) -> Option<&str> {
        match self {
            Admin::Delimited { separator, .. } => Some(separator),
            _ => None,
        }
    }

    /// The admin roles as the `text[]` parameter the predicate reads.
    pub fn roles(&self) -> Vec<String> {
        match self {
            Admin::Exact(r) | Admin::List(r) | Admin::Delimited { roles: r, .. } => r.clone(),
            Admin::Flag => Vec::new(),
        }
    }

    /// True for admin rows of the table aliased `alias`; `param` holds
    /// [`Admin::roles`].
    pub fn predicate(&self, alias: &str, role_column: &str, param: &str) -> String {
        let col = format!("{alias}.{}", ident(role_column));
        match self {
            Admin::Exact(_) => {
                format!("{col}::text OPERATOR(pg_catalog.=) ANY ({param}::pg_catalog.text[])")
            }
            Admin::List(_) => format!(
                "{col}::pg_catalog.text[] OPERATOR(pg_catalog.&&) {param}::pg_catalog.text[]"
            ),
            Admin::Delimited { separator, .. } => format!(
                "pg_catalog.string_to_array({col}::text, {}) OPERATOR(pg_catalog.&&) {param}::pg_catalog.text[]",
                literal(separator)
            ),
            Admin::Flag => format!("{col} IS TRUE"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipTable {
    pub subject_type: String,
    pub subject_column: String,
    pub tenant_column: String,
    pub role_column: String,
    pub admin: Admin,
    /// A boolean column true while the membership is current.
    pub active_column: Option<String>,
}

/// One registered table and everything the plan needs to know about it.
#[derive(Debug, Clone)]
pub struct Table {
    pub oid: u32,
    /// Schema-qualified, quoted.
    pub name: String,
    pub label: String,
    pub subject: Option<SubjectTable>,
    /// Registered as the tenant table: its id column.
    pub tenant: Option<String>,
    pub data: Option<DataTable>,
    pub membership: Option<MembershipTable>,
    /// Column rules other than `keep`: (column, rule).
    pub rules: Vec<(String, ColumnRule)>,
    /// Extra hold scopes: (scope type, column).
    pub extra_scopes: Vec<(String, String)>,
    pub columns: Vec<ColumnFacts>,
}

impl Table {
    pub fn column(&self, name: &str) -> Option<&ColumnFacts> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// `"col" OPERATOR(..=) $n::type`.
    pub fn eq(&self, col: &str, param: &str) -> String {
        match self.column(col) {
            Some(c) => format!("{} {} {param}::{}", ident(col), c.eq, c.base_type_name),
            None => format!("{}::text OPERATOR(pg_catalog.=) {param}::text", ident(col)),
        }
    }

    /// Rows tied by `key` to `$param`.
    pub fn key_rows(&self, key: &Key, param: &str, catalog: &Catalog) -> String {
        self.key_cond(
            key,
            catalog,
            &|t: &Table, c: &str, col: &str| match t.column(c) {
                Some(f) => format!("{col} {} {param}::{}", f.eq, f.base_type_name),
                None => format!("{col}::text OPERATOR(pg_catalog.=) {param}::text"),
            },
        )
    }

    /// The key a path through this table continues with: the subject or
    /// tenant key whose column is `column`, when it leads on to a parent.
    fn path_key(&self, column: &str) -> Option<&Key> {
        let d = self.data.as_ref()?;
        [Some(&d.subject), d.tenant.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| matches!(k, Key::Via { .. }) && k.column() == column)
    }

    /// A condition on this table's rows (columns named bare) that holds
    /// when the value `key` leads to satisfies `leaf(table, column, column
    /// as written in the condition)`: the column itself, or, for a path,
    /// the column of the parent (and of its parent, as far as the path
    /// goes) that holds the scope id.
    pub fn key_cond(
        &self,
        key: &Key,
        catalog: &Catalog,
        leaf: &dyn Fn(&Table, &str, &str) -> String,
    ) -> String {
        self.key_cond_at(key, catalog, leaf, 1)
    }

    fn key_cond_at(
        &self,
        key: &Key,
        catalog: &Catalog,
        leaf: &dyn Fn(&Table, &str, &str) -> String,
        depth: u32,
    ) -> String {
        match key {
            Key::Column(c) => leaf(self, c, &ident(c)),
            Key::Via {
                column,
                parent,
                parent_key,
                parent_column,
            } => {
                let Some(p) = catalog.table(*parent) else {
                    // Unknown parent: no row can be shown to match.
                    return "FALSE".to_string();
                };
                let alias = format!("p{depth}");
                let inner = match p.path_key(parent_column) {
                    // The parent's own path, its first column qualified.
                    Some(next) if depth < MAX_DEPTH => {
                        format!("{alias}.{}", p.key_cond_at(next, catalog, leaf, depth + 1))
                    }
                    _ => leaf(
                        p,
                        parent_column,
                        &format!("{alias}.{}", ident(parent_column)),
                    ),
                };
                format!(
                    "{} IN (SELECT {alias}.{} FROM {} {alias} WHERE {inner})",
                    ident(column),
                    ident(parent_key),
                    p.name
                )
            }
        }
    }

    /// Rows whose `column` names `$param`: through the parent when `column`
    /// is the start of a path to the subject or the tenant.
    pub fn rows_by(&self, column: &str, param: &str, catalog: &Catalog) -> String {
        if let Some(d) = &self.data {
            for k in [Some(&d.subject), d.tenant.as_ref()].into_iter().flatten() {
                if k.column() == column {
                    return self.key_rows(k, param, catalog);
                }
            }
        }
        self.eq(column, param)
    }

    /// A condition on the row aliased `alias` that holds for live rows
    /// (not soft-deleted); `TRUE` for tables without soft delete.
    /// `alias` may be empty: the column is then named bare.
    pub fn live(&self, alias: &str) -> String {
        match self.data.as_ref().and_then(|d| d.soft_delete.as_ref()) {
            None => "TRUE".to_string(),
            Some((col, kind)) => {
                let c = if alias.is_empty() {
                    ident(col)
                } else {
                    format!("{alias}.{}", ident(col))
                };
                match kind {
                    SoftDelete::Nullable => format!("{c} IS NULL"),
                    SoftDelete::Flag => format!("{c} IS NOT TRUE"),
                    SoftDelete::Epoch => {
                        format!("COALESCE({c} OPERATOR(pg_catalog.=) 0, true)")
                    }
                }
            }
        }
    }

    /// A condition true for rows whose workspace is none of `tenants`
    /// (`None` for tables without a workspace, or no tenants).
    pub fn outside_tenants(&self, tenants: &[&str], catalog: &Catalog) -> Option<String> {
        if tenants.is_empty() {
            return None;
        }
        let list = format!(
            "ARRAY[{}]::pg_catalog.text[]",
            tenants
                .iter()
                .map(|t| literal(t))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let key = self
            .data
            .as_ref()
            .and_then(|d| d.tenant.clone())
            .or_else(|| {
                self.membership
                    .as_ref()
                    .map(|m| Key::Column(m.tenant_column.clone()))
            })?;
        let within = self.key_cond(&key, catalog, &|_, _, col| {
            format!("{col}::text OPERATOR(pg_catalog.=) ANY ({list})")
        });
        Some(format!("({within}) IS NOT TRUE"))
    }

    /// A condition on the membership row aliased `alias` that holds for
    /// current members: not soft-deleted, and active where the membership
    /// says so.
    pub fn live_member(&self, alias: &str) -> String {
        let live = self.live(alias);
        match self
            .membership
            .as_ref()
            .and_then(|m| m.active_column.as_ref())
        {
            None => live,
            Some(a) => format!("{live} AND {alias}.{} IS TRUE", ident(a)),
        }
    }

    /// The column naming each row's owner: subject id, tenant id, subject column.
    pub fn owner_column(&self) -> Option<&str> {
        if let Some(s) = &self.subject {
            return Some(&s.id_column);
        }
        if let Some(t) = &self.tenant {
            return Some(t);
        }
        self.data
            .as_ref()
            .map(|d| d.subject.column())
            .or(self.membership.as_ref().map(|m| m.subject_column.as_str()))
    }

    /// Columns the data map uses as keys (never touched by rules or
    /// redaction).
    pub fn key_columns(&self) -> BTreeSet<&str> {
        let mut out = BTreeSet::new();
        if let Some(s) = &self.subject {
            out.insert(s.id_column.as_str());
            if let Some(t) = &s.tenant_column {
                out.insert(t.as_str());
            }
        }
        if let Some(t) = &self.tenant {
            out.insert(t.as_str());
        }
        if let Some(d) = &self.data {
            out.insert(d.subject.column());
            if let Some(t) = &d.tenant {
                out.insert(t.column());
            }
            if let Some((c, _)) = &d.soft_delete {
                out.insert(c.as_str());
            }
        }
        if let Some(m) = &self.membership {
            out.insert(m.subject_column.as_str());
            out.insert(m.tenant_column.as_str());
            out.insert(m.role_column.as_str());
        }
        for (_, c) in &self.extra_scopes {
            out.insert(c.as_str());
        }
        out
    }

    pub fn storage_columns(&self) -> Vec<String> {
        self.rules
            .iter()
            .filter(|(_, r)| *r == ColumnRule::StorageObject)
            .map(|(c, _)| c.clone())
            .collect()
    }

    /// Textual and JSON columns that are no key and have no role in the
    /// data map: where free text may name people. With `ruled`, also the
    /// columns that have a rule (rules apply to the subject's own rows
    /// only; other rows may still name the subject there).
    pub fn text_columns(&self, ruled: bool) -> Vec<&ColumnFacts> {
        let keys = self.key_columns();
        self.columns
            .iter()
            .filter(|c| matches!(c.kind, ValueKind::Text | ValueKind::Json))
            .filter(|c| !c.is_key && c.max_chars.is_none_or(|n| n >= 3))
            .filter(|c| !keys.contains(c.name.as_str()))
            .filter(|c| ruled || !self.rules.iter().any(|(rc, _)| *rc == c.name))
            .collect()
    }

    /// [`Table::text_columns`] without the ruled ones.
    pub fn free_text_columns(&self) -> Vec<&ColumnFacts> {
        self.text_columns(false)
    }

    /// `SET` assignments applying the column rules (storage objects aside).
    pub fn rule_sets(&self, salt: &str) -> Vec<String> {
        let row_key = match (&self.subject, &self.tenant) {
            (None, None) => "pg_catalog.md5(ctid::text)".to_string(),
            _ => format!("{}::text", ident(self.owner_column().unwrap_or("id"))),
        };
        let key = format!("{}::text", ident(self.owner_column().unwrap_or("id")));
        let ctx = RuleContext {
            key: &key,
            row_key: &row_key,
            salt,
        };
        self.rules
            .iter()
            .filter_map(|(c, r)| {
                let facts = self.column(c)?;
                let e = rule_expr(facts, *r, &ctx)?;
                Some(format!("{} = {e}", ident(c)))
            })
            .collect()
    }
}

/// A foreign key, or a declared link: `child (cols) -> parent (parent_cols)`.
#[derive(Debug, Clone)]
pub struct Reference {
    pub name: String,
    pub child: u32,
    pub child_name: String,
    pub parent: u32,
    /// Quoted.
    pub cols: Vec<String>,
    pub parent_cols: Vec<String>,
    /// Every referencing column is nullable.
    pub nullable: bool,
    /// A declared link rather than a foreign key.
    pub declared: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub tables: Vec<Table>,
    /// Every reference that points at a registered table.
    pub refs: Vec<Reference>,
}

impl Catalog {
    pub fn table(&self, oid: u32) -> Option<&Table> {
        self.tables.iter().find(|t| t.oid == oid)
    }

    pub fn subject_table(&self, subject_type: &str) -> Option<&Table> {
        self.tables.iter().find(|t| {
            t.subject
                .as_ref()
                .is_some_and(|s| s.subject_type == subject_type)
        })
    }

    pub fn tenant_table(&self) -> Option<&Table> {
        self.tables.iter().find(|t| t.tenant.is_some())
    }

    pub fn memberships(&self, subject_type: &str) -> impl Iterator<Item = &Table> {
        let st = subject_type.to_string();
        self.tables
            .iter()
            .filter(move |t| t.membership.as_ref().is_some_and(|m| m.subject_type == st))
    }

    /// Edges for the delete order: (child, parent).
    fn edges(&self) -> Vec<(u32, u32)> {
        let mut e: Vec<(u32, u32)> = self.refs.iter().map(|r| (r.child, r.parent)).collect();
        for t in &self.tables {
            if let Some(d) = &t.data {
                for k in [Some(&d.subject), d.tenant.as_ref()].into_iter().flatten() {
                    if let Key::Via { parent, .. } = k {
                        e.push((t.oid, *parent));
                    }
                }
            }
        }
        e
    }

    /// `tables`, children before parents.
    pub fn delete_order(&self, tables: &[u32]) -> Vec<u32> {
        crate::order::delete_order(tables, &self.edges())
    }
}

/// What the values of a rule are made from.
pub struct RuleContext<'a> {
    /// The row's owner id as text.
    pub key: &'a str,
    /// A text unique to the row (its owner id where owners have one row).
    pub row_key: &'a str,
    /// An SQL expression of the job's random salt.
    pub salt: &'a str,
}

/// The SQL expression `rule` writes into column `c` (`CAST(... AS type)`),
/// or `None` for rules that write nothing (`keep`; `storage_object` objects
/// are deleted by steps of their own).
pub fn rule_expr(c: &ColumnFacts, rule: ColumnRule, ctx: &RuleContext<'_>) -> Option<String> {
    let q = ident(&c.name);
    let unique = |base: &str| {
        if c.unique {
            format!(
                "{base} OPERATOR(pg_catalog.||) ' ' OPERATOR(pg_catalog.||) {}",
                ctx.row_key
            )
        } else {
            base.to_string()
        }
    };
    let expr = match rule {
        ColumnRule::Clear => "NULL".to_string(),
        ColumnRule::Redact => unique("'[redacted]'"),
        ColumnRule::DeletedName => unique("'Deleted User'"),
        ColumnRule::DeletedEmail => format!(
            "'deleted-' OPERATOR(pg_catalog.||) {} OPERATOR(pg_catalog.||) '@deleted.local'",
            if c.unique { ctx.row_key } else { ctx.key }
        ),
        ColumnRule::Hash => format!(
            "pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to({} OPERATOR(pg_catalog.||) {q}::text, 'UTF8')), 'hex')",
            ctx.salt
        ),
        ColumnRule::Empty => match c.kind {
            ValueKind::Array | ValueKind::Json => "'{}'".to_string(),
            _ => "''".to_string(),
        },
        ColumnRule::ErasedAt => match c.kind {
            ValueKind::Bool => "true".to_string(),
            ValueKind::Date => "CURRENT_DATE".to_string(),
            ValueKind::Timestamp => "pg_catalog.statement_timestamp()".to_string(),
            _ => "pg_catalog.floor(pg_catalog.date_part('epoch', pg_catalog.statement_timestamp()) OPERATOR(pg_catalog.*) 1000)".to_string(),
        },
        ColumnRule::Keep | ColumnRule::StorageObject => return None,
    };
    Some(format!("CAST({expr} AS {})", c.type_name))
}

/// A quoted identifier.
pub fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// A quoted literal.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// What one step does to its rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Refuse the erasure (`LC040`) if any of these rows exist: rows of a
    /// table the data map does not know that reference rows being removed.
    RefuseUnmapped { constraint: String, target: String },
    /// Set the referencing columns to NULL.
    Detach { columns: Vec<String> },
    /// Delete the rows; `storage` columns name objects to delete outside
    /// the database (one step each).
    Delete { storage: Vec<String> },
    /// Apply the column rules (`sets`); the rows stay. No sets: kept as
    /// they are, attributed to the anonymized subject.
    Anonymize { sets: Vec<String> },
    /// Keep the rows for `retain_for` under `legal_basis` (a retention
    /// record), after applying the column rules.
    Retain {
        key_column: String,
        legal_basis: String,
        retain_for: String,
        sets: Vec<String>,
    },
    /// The objects named in `columns` of rows that stay are deleted outside
    /// the database, and the columns cleared.
    DeleteObjects {
        columns: Vec<String>,
        clears: Vec<String>,
    },
    /// Replace the subject's identifiers (`$3`) where they appear in these
    /// free-text and JSON columns.
    RedactText { columns: Vec<(String, bool)> },
    /// Count rows (not the subject's) whose free text mentions the subject:
    /// the receipt says where, never what.
    CountMentions { columns: Vec<(String, bool)> },
    /// In rows that name the subject in `column`, replace the subject's own
    /// values (`$3`) of the ruled columns.
    ReplaceValues { sets: Vec<(String, String)> },
    /// Delete the rows that nothing references any more; the others stay
    /// and the receipt says what still references them.
    ProtectedDelete,
    /// Close a retention record (its `id`) once none of its rows is left.
    CloseRetention { record: i64 },
    /// Rows whose retention period has not ended: they stay, and the
    /// receipt says until when.
    StillRetained {
        rows: i64,
        legal_basis: String,
        retain_until: String,
    },
    /// A membership of the subject ends in workspace `$2`, and `to` takes
    /// the admin role the subject held there.
    Transfer {
        tenant: String,
        to: String,
        membership: MembershipTable,
    },
}

impl Action {
    /// The word the receipt and the preview use.
    pub fn verb(&self) -> &'static str {
        match self {
            Action::RefuseUnmapped { .. } => "refuse",
            Action::Detach { .. } => "detached",
            Action::Delete { .. } => "deleted",
            Action::Anonymize { sets } if sets.is_empty() => "kept",
            Action::Anonymize { .. } => "anonymized",
            Action::Retain { .. } => "retained",
            Action::DeleteObjects { .. } => "objects deleted",
            Action::RedactText { .. } => "redacted",
            Action::CountMentions { .. } => "mentioned",
            Action::ReplaceValues { .. } => "anonymized",
            Action::Transfer { .. } => "ownership transferred",
            Action::ProtectedDelete => "deleted",
            Action::CloseRetention { .. } => "retention closed",
            Action::StillRetained { .. } => "kept",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub table: u32,
    pub table_name: String,
    pub label: String,
    /// SQL condition on the table's rows (see the module docs for `$1`..).
    pub rows: String,
    /// The value of `$1`.
    pub key: String,
    /// The value of `$2`, if the step uses one.
    pub second: Option<String>,
    pub action: Action,
    pub reason: Option<String>,
    /// The workspace whose erasure this step belongs to, when it is not the
    /// target.
    pub workspace: Option<String>,
}

/// A check of the verification after the run.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// No row matching `rows` is left.
    RowsGone {
        table: u32,
        table_name: String,
        rows: String,
        key: String,
        what: String,
    },
    /// No value of `$3` is left in `column` of the rows matching `rows`;
    /// e-mail addresses are searched in the whole table where an index
    /// makes that cheap.
    ValuesGone {
        table: u32,
        table_name: String,
        column: String,
        rows: Option<String>,
        key: String,
    },
    /// No identifier of `$3` is left inside the free text of `columns` of
    /// the rows matching `rows`.
    TextClean {
        table: u32,
        table_name: String,
        columns: Vec<(String, bool)>,
        rows: String,
        key: String,
    },
}

/// A workspace the subject is the only admin of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Erase,
    TransferTo(String),
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub checks: Vec<Check>,
    /// Workspace decisions taken, in order: (workspace, decision).
    pub workspaces: Vec<(String, Decision)>,
}

/// Why there is no plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    UnknownTarget(String),
    NoTenantTable,
    TooDeep(String),
}

struct Builder<'a> {
    cat: &'a Catalog,
    plan: Plan,
    salt: String,
    /// The value of `$2` for the steps being pushed.
    second: Option<String>,
    /// (table, column): references whose rows a step of their own already
    /// removes (a workspace's tables reached through their parent): no
    /// second step for them below the parent.
    covered: Vec<(u32, String)>,
    /// (table, rows, key, second): rows an earlier step deletes. A later
    /// step on rows that reference removed rows leaves these out, so that
    /// no two steps count the same rows.
    removed: Vec<(u32, String, String, Option<String>)>,
    /// Retention records being made find their rows by the workspace (in a
    /// workspace's erasure) rather than by the subject.
    by_tenant: bool,
}

impl<'a> Builder<'a> {
    fn new(cat: &'a Catalog, salt: &str) -> Self {
        Builder {
            cat,
            plan: Plan::default(),
            salt: salt.to_string(),
            second: None,
            covered: Vec::new(),
            removed: Vec::new(),
            by_tenant: false,
        }
    }

    /// `rows` of `table` without those an earlier step deletes. An earlier
    /// step's condition is in terms of its own `$1` and `$2`: where they
    /// differ from this step's, it is used with its values written in.
    fn not_removed(&self, table: u32, rows: String, key: &str) -> String {
        let gone: Vec<String> = self
            .removed
            .iter()
            .filter(|(t, _, _, _)| *t == table)
            .map(|(_, cond, k, second)| {
                if k == key && *second == self.second {
                    cond.clone()
                } else {
                    let second = second.as_deref().map(literal);
                    cond.replace("$1", &literal(k))
                        .replace("$2", second.as_deref().unwrap_or("NULL"))
                }
            })
            .collect();
        if gone.is_empty() {
            rows
        } else {
            format!("{rows} AND ({}) IS NOT TRUE", gone.join(" OR "))
        }
    }

    fn push(
        &mut self,
        t: &Table,
        rows: String,
        key: &str,
        action: Action,
        reason: Option<&str>,
        workspace: Option<&str>,
    ) {
        // No two steps touch the same rows. A transfer reads the role the
        // subject held, in the membership the step before it ends.
        let rows = if matches!(action, Action::Transfer { .. }) {
            rows
        } else {
            self.not_removed(t.oid, rows, key)
        };
        self.plan.steps.push(Step {
            table: t.oid,
            table_name: t.name.clone(),
            label: t.label.clone(),
            rows,
            key: key.to_string(),
            second: self.second.clone(),
            action,
            reason: reason.map(str::to_string),
            workspace: workspace.map(str::to_string),
        });
    }

    /// Delete `rows` of `table`, after handling every row elsewhere that
    /// references them: detached when the reference is nullable, deleted
    /// with them otherwise, refused when the referencing table is unmapped.
    fn delete(
        &mut self,
        table: u32,
        rows: &str,
        key: &str,
        reason: Option<&str>,
        workspace: Option<&str>,
        depth: u32,
    ) -> Result<(), PlanError> {
        let Some(t) = self.cat.table(table).cloned() else {
            return Ok(());
        };
        if depth > MAX_DEPTH {
            return Err(PlanError::TooDeep(t.name));
        }
        let refs: Vec<Reference> = self
            .cat
            .refs
            .iter()
            .filter(|r| r.parent == table)
            .cloned()
            .collect();
        // Rows still referenced by rows kept for a retention period stay
        // (the retained rows keep their context; purge removes both later),
        // anonymized.
        let (rows, kept) = self.unreferenced_by_retained(&t, rows);
        if let Some((kept, why)) = kept {
            let sets = t.rule_sets(&self.salt);
            self.push(
                &t,
                kept,
                key,
                Action::Anonymize { sets },
                Some(&why),
                workspace,
            );
        }
        let rows = rows.as_str();
        for r in refs {
            if (self.retained(r.child) && (!r.nullable || self.retention_path(&r)))
                || (r.cols.len() == 1
                    && self
                        .covered
                        .iter()
                        // `cols` are quoted as quote_ident() quotes.
                        .any(|(c, col)| {
                            *c == r.child && (r.cols[0] == *col || r.cols[0] == ident(col))
                        }))
            {
                continue;
            }
            let sub = format!(
                "({}) IN (SELECT {} FROM {} WHERE {rows})",
                r.cols.join(", "),
                r.parent_cols.join(", "),
                t.name
            );
            let others = if r.child == table {
                format!("{sub} AND NOT ({rows})")
            } else {
                sub
            };

            match self.cat.table(r.child).cloned() {
                None => {
                    self.plan.steps.push(Step {
                        table: r.child,
                        table_name: r.child_name.clone(),
                        label: r.child_name.clone(),
                        rows: others,
                        key: key.to_string(),
                        second: self.second.clone(),
                        action: Action::RefuseUnmapped {
                            constraint: r.name.clone(),
                            target: t.name.clone(),
                        },
                        reason: None,
                        workspace: workspace.map(str::to_string),
                    });
                }
                Some(child) if r.nullable => {
                    let why = format!("referenced removed rows of {}; link cleared", t.name);
                    self.push(
                        &child,
                        others,
                        key,
                        Action::Detach {
                            columns: r.cols.clone(),
                        },
                        Some(&why),
                        workspace,
                    );
                }
                Some(child) => {
                    let why = format!("depended on removed rows of {}", t.name);
                    self.delete(child.oid, &others, key, Some(&why), workspace, depth + 1)?;
                }
            }
        }
        self.push(
            &t,
            rows.to_string(),
            key,
            Action::Delete {
                storage: t.storage_columns(),
            },
            reason,
            workspace,
        );
        self.removed.push((
            t.oid,
            rows.to_string(),
            key.to_string(),
            self.second.clone(),
        ));
        Ok(())
    }

    /// `rows` of `t` without those that rows kept for a retention period
    /// reference, and those (with the reason), if any table retained
    /// references `t`.
    fn unreferenced_by_retained(
        &self,
        t: &Table,
        rows: &str,
    ) -> (String, Option<(String, String)>) {
        let mut free = rows.to_string();
        let mut held = Vec::new();
        let mut names = Vec::new();
        // References that cannot be cleared, and the path by which the
        // retention record finds its rows again; any other nullable one is
        // detached from the retained rows instead, as the schema allows.
        for r in self
            .cat
            .refs
            .iter()
            .filter(|r| r.parent == t.oid && self.retained(r.child))
            .filter(|r| !r.nullable || self.retention_path(r))
        {
            // Uncorrelated, so that it holds whatever the table is aliased.
            let named = format!(
                "({}) IN (SELECT {} FROM {} k WHERE {})",
                r.parent_cols.join(", "),
                r.cols
                    .iter()
                    .map(|c| format!("k.{c}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                r.child_name,
                r.cols
                    .iter()
                    .map(|c| format!("k.{c} IS NOT NULL"))
                    .collect::<Vec<_>>()
                    .join(" AND ")
            );
            free = format!("{free} AND ({named}) IS NOT TRUE");
            held.push(named);
            names.push(r.child_name.clone());
        }
        if held.is_empty() {
            return (free, None);
        }
        let kept = format!("{rows} AND ({})", held.join(" OR "));
        let why = format!("referenced by rows retained in {}", names.join(", "));
        (free, Some((kept, why)))
    }

    /// Whether `r` is the path through which retained rows are found again
    /// (their tenant's in a workspace erasure, their subject's otherwise).
    fn retention_path(&self, r: &Reference) -> bool {
        let Some(d) = self.cat.table(r.child).and_then(|c| c.data.as_ref()) else {
            return false;
        };
        let key = if self.by_tenant {
            d.tenant.as_ref()
        } else {
            Some(&d.subject)
        };
        match key {
            Some(Key::Via { column, parent, .. }) => {
                *parent == r.parent
                    && r.cols.len() == 1
                    && (r.cols[0] == *column || r.cols[0] == ident(column))
            }
            _ => false,
        }
    }

    /// Check after the run that no row of `t` matching `rows` is left.
    fn check_rows_gone(&mut self, t: &Table, rows: String, key: &str) {
        self.plan.checks.push(Check::RowsGone {
            table: t.oid,
            table_name: t.name.clone(),
            rows,
            key: key.to_string(),
            what: "rows removed".into(),
        });
    }

    /// Check after the run that the subject's values are gone from the
    /// ruled text columns of `t` (in `rows`, or in the whole column).
    fn check_values_gone(&mut self, t: &Table, rows: Option<String>, key: &str) {
        for (col, _) in &t.rules {
            if t.column(col).is_none_or(|c| c.kind != ValueKind::Text) {
                continue;
            }
            self.plan.checks.push(Check::ValuesGone {
                table: t.oid,
                table_name: t.name.clone(),
                column: col.clone(),
                rows: rows.clone(),
                key: key.to_string(),
            });
        }
    }

    /// Whether `table`'s rows are kept for a retention period.
    fn retained(&self, table: u32) -> bool {
        self.cat.table(table).is_some_and(|t| {
            t.membership.is_none()
                && t.data
                    .as_ref()
                    .is_some_and(|d| d.on_erase == OnErase::Retain)
        })
    }

    /// Rows of `t` that are soft-deleted among `rows`.
    fn soft_deleted(t: &Table, rows: &str) -> Option<String> {
        let (col, kind) = t.data.as_ref()?.soft_delete.as_ref()?;
        let c = ident(col);
        Some(match kind {
            SoftDelete::Nullable => format!("{rows} AND {c} IS NOT NULL"),
            SoftDelete::Flag => format!("{rows} AND {c} IS TRUE"),
            SoftDelete::Epoch => {
                format!("{rows} AND {c} IS NOT NULL AND {c} OPERATOR(pg_catalog.<>) 0")
            }
        })
    }

    /// Objects named by rows that stay: deleted outside the database, the
    /// column cleared.
    fn objects_of_kept_rows(&mut self, t: &Table, rows: &str, key: &str, workspace: Option<&str>) {
        let storage = t.storage_columns();
        if storage.is_empty() {
            return;
        }
        let clears = storage
            .iter()
            .filter_map(|c| {
                let f = t.column(c)?;
                let v = if f.not_null { "''" } else { "NULL" };
                Some(format!("{} = CAST({v} AS {})", ident(c), f.type_name))
            })
            .collect();
        self.push(
            t,
            rows.to_string(),
            key,
            Action::DeleteObjects {
                columns: storage,
                clears,
            },
            Some("stored objects of rows that stay"),
            workspace,
        );
    }

    fn free_text(t: &Table) -> Vec<(String, bool)> {
        t.free_text_columns()
            .into_iter()
            .map(|c| (c.name.clone(), c.kind == ValueKind::Json))
            .collect()
    }

    /// Redact the subject's identifiers in the free text of rows that stay,
    /// and check afterwards that none is left.
    fn redact_kept(&mut self, t: &Table, rows: &str, key: &str, workspace: Option<&str>) {
        let columns = Self::free_text(t);
        if columns.is_empty() {
            return;
        }
        self.redact_text(
            t,
            columns,
            rows,
            key,
            "the subject's identifiers in free text of rows that stay",
            workspace,
        );
    }

    /// A `RedactText` step over `columns` of `rows`, and the check that
    /// finds no identifier left there afterwards.
    fn redact_text(
        &mut self,
        t: &Table,
        columns: Vec<(String, bool)>,
        rows: &str,
        key: &str,
        reason: &str,
        workspace: Option<&str>,
    ) {
        self.push(
            t,
            rows.to_string(),
            key,
            Action::RedactText {
                columns: columns.clone(),
            },
            Some(reason),
            workspace,
        );
        self.plan.checks.push(Check::TextClean {
            table: t.oid,
            table_name: t.name.clone(),
            columns,
            rows: rows.to_string(),
            key: key.to_string(),
        });
    }

    fn anonymize(
        &mut self,
        t: &Table,
        rows: &str,
        key: &str,
        reason: Option<&str>,
        workspace: Option<&str>,
    ) {
        let sets = t.rule_sets(&self.salt);
        self.objects_of_kept_rows(t, rows, key, workspace);
        self.push(
            t,
            rows.to_string(),
            key,
            Action::Anonymize { sets },
            reason,
            workspace,
        );
    }

    /// Retain `rows` of `t`; `key_column` is the column (or path) the
    /// retention record finds them by later (the subject's, or the tenant's
    /// for a workspace erasure).
    fn retain(
        &mut self,
        t: &Table,
        d: &DataTable,
        key_column: &str,
        rows: &str,
        key: &str,
        workspace: Option<&str>,
    ) {
        self.objects_of_kept_rows(t, rows, key, workspace);
        self.push(
            t,
            rows.to_string(),
            key,
            Action::Retain {
                key_column: key_column.to_string(),
                legal_basis: d.legal_basis.clone().unwrap_or_default(),
                retain_for: d.retain_for.clone().unwrap_or_else(|| "0".into()),
                sets: t.rule_sets(&self.salt),
            },
            d.legal_basis.as_deref(),
            workspace,
        );
    }
}

/// The plan of a subject's erasure: `decisions` say what happens to each
/// workspace the subject is the last admin of.
pub fn subject_erasure(
    cat: &Catalog,
    subject_type: &str,
    id: &str,
    decisions: &[(String, Decision)],
    salt: &str,
) -> Result<Plan, PlanError> {
    let sub = cat
        .subject_table(subject_type)
        .cloned()
        .ok_or_else(|| PlanError::UnknownTarget(subject_type.to_string()))?;
    let mut b = Builder::new(cat, salt);

    // 0. Mentions in other people's rows, in the workspaces the subject
    //    belongs to (read before any membership ends; workspaces erased
    //    with the subject aside): counted, redacted where the data map
    //    asks.
    let erased: Vec<&str> = decisions
        .iter()
        .filter(|(_, d)| *d == Decision::Erase)
        .map(|(t, _)| t.as_str())
        .collect();
    mentions(&mut b, subject_type, id, &erased);
    // Workspaces the decisions already took care of: the subject's rows
    // there are gone with the workspace (erased), and its memberships there
    // ended (erased or handed over). Later steps leave them out, so that
    // no two steps count the same rows.
    let decided: Vec<&str> = decisions.iter().map(|(t, _)| t.as_str()).collect();
    let outside = |t: &Table, rows: String| -> String {
        let tenants = if t.membership.is_some() {
            &decided
        } else {
            &erased
        };
        match t.outside_tenants(tenants, cat) {
            Some(o) => format!("{rows} AND {o}"),
            None => rows,
        }
    };

    // 1. Workspace decisions.
    for (tenant, decision) in decisions {
        match decision {
            Decision::Erase => {
                workspace_steps(&mut b, tenant, Some(tenant))?;
            }
            Decision::TransferTo(to) => {
                // The member takes the admin role the subject held there,
                // then the subject's membership there ends.
                b.second = Some(tenant.clone());
                for m in cat.memberships(subject_type).cloned().collect::<Vec<_>>() {
                    let ms = m.membership.clone().expect("membership");
                    let rows = format!(
                        "{} AND {}",
                        m.eq(&ms.tenant_column, "$2"),
                        m.eq(&ms.subject_column, "$1")
                    );
                    // The runner reads the role the subject held before
                    // any step runs; the membership ends first (a workspace
                    // may allow one owner only), then the member takes it.
                    let why = format!("workspace {tenant} handed to {to}");
                    b.delete(
                        m.oid,
                        &rows,
                        id,
                        Some("membership ends before the transfer"),
                        None,
                        0,
                    )?;
                    b.push(
                        &m,
                        rows,
                        id,
                        Action::Transfer {
                            tenant: tenant.clone(),
                            to: to.clone(),
                            membership: ms,
                        },
                        Some(&why),
                        None,
                    );
                }
                b.second = None;
            }
        }
        b.plan.workspaces.push((tenant.clone(), decision.clone()));
    }

    // 2. Tables of the subject: memberships end, delete tables are emptied,
    //    soft-deleted rows go for real; children first.
    let owned: Vec<&Table> = cat
        .tables
        .iter()
        .filter(|t| t.subject.is_none() && t.tenant.is_none())
        .filter(|t| {
            t.data
                .as_ref()
                .is_some_and(|d| d.subject_type == subject_type)
                || t.membership
                    .as_ref()
                    .is_some_and(|m| m.subject_type == subject_type)
        })
        .collect();
    let order = cat.delete_order(&owned.iter().map(|t| t.oid).collect::<Vec<_>>());
    for oid in &order {
        let t = cat.table(*oid).cloned().expect("owned table");
        let membership_rows = t
            .membership
            .as_ref()
            .filter(|m| m.subject_type == subject_type)
            .map(|m| outside(&t, t.eq(&m.subject_column, "$1")));
        let data_rows = t
            .data
            .as_ref()
            .filter(|d| d.subject_type == subject_type)
            .map(|d| outside(&t, t.key_rows(&d.subject, "$1", cat)));
        match (&t.data, data_rows, membership_rows) {
            (Some(d), Some(rows), _) if d.on_erase == OnErase::Delete => {
                b.delete(t.oid, &rows, id, None, None, 0)?;
            }
            (_, _, Some(rows)) => {
                b.delete(t.oid, &rows, id, Some("membership ends"), None, 0)?;
            }
            // Rows kept attributed to the anonymized subject: those the
            // application already deleted (soft delete) go for real.
            // Retained rows are kept whatever the application did.
            (Some(d), Some(rows), None) if d.on_erase == OnErase::Anonymize => {
                if let Some(p) = Builder::soft_deleted(&t, &rows) {
                    b.delete(t.oid, &p, id, Some("soft-deleted earlier"), None, 0)?;
                }
            }
            _ => {}
        }
    }
    // 3. Rows that stay: anonymized, retained, their free text redacted.
    for t in &owned {
        let Some(d) = t.data.as_ref().filter(|d| d.subject_type == subject_type) else {
            continue;
        };
        if t.membership.is_some() {
            continue;
        }
        let rows = outside(t, t.key_rows(&d.subject, "$1", cat));
        match d.on_erase {
            OnErase::Anonymize => {
                // Soft-deleted rows are gone by now (step 2).
                let rows = match &d.soft_delete {
                    Some(_) => format!("{rows} AND {}", t.live("")),
                    None => rows,
                };
                b.redact_kept(t, &rows, id, None);
                b.anonymize(
                    t,
                    &rows,
                    id,
                    Some("attributed to the anonymized subject"),
                    None,
                );
            }
            // Retained rows are kept as the law requires them: only their
            // ruled columns change.
            OnErase::Retain => b.retain(t, d, d.subject.column(), &rows, id, None),
            OnErase::Delete => {}
        }
    }
    // 4. Rows that name the subject through another scope column: only
    //    the subject's own values in ruled columns are replaced.
    for t in &cat.tables {
        for (scope, col) in &t.extra_scopes {
            if scope != subject_type || t.data.as_ref().is_some_and(|d| d.subject.column() == col) {
                continue;
            }
            let salt = b.salt.clone();
            let ctx = RuleContext {
                key: "$1::text",
                row_key: "$1::text",
                salt: &salt,
            };
            let sets: Vec<(String, String)> = t
                .rules
                .iter()
                .filter(|(c, r)| {
                    *r != ColumnRule::StorageObject
                        && t.column(c).is_some_and(|f| f.kind == ValueKind::Text)
                })
                .filter_map(|(c, r)| Some((c.clone(), rule_expr(t.column(c)?, *r, &ctx)?)))
                .collect();
            if sets.is_empty() {
                continue;
            }
            let reason = format!("subject named in {col}; their own values replaced");
            b.push(
                t,
                t.eq(col, "$1"),
                id,
                Action::ReplaceValues { sets },
                Some(&reason),
                None,
            );
        }
    }
    // 5. The subject row: its free text redacted, then anonymized in place
    //    (a tombstone every reference keeps pointing at).
    let sub_rows = sub.eq(&sub.subject.as_ref().expect("subject").id_column, "$1");
    b.redact_kept(&sub, &sub_rows, id, None);
    b.anonymize(
        &sub,
        &sub_rows,
        id,
        Some("subject row, kept as a tombstone"),
        None,
    );

    // 6. What the verification re-scans.
    verify_subject(&mut b, &sub, subject_type, id, &erased);
    Ok(b.plan)
}

/// `expr` (column `column` of `t`) is one of the texts `set` (an SQL
/// query of one text column) returns, compared in the column's own type so
/// that an index on the column serves (a cast of the column to text would
/// read the whole table).
fn in_text_set(t: &Table, column: &str, expr: &str, set: &str) -> String {
    match t.column(column) {
        Some(f) => format!(
            "{expr} IN (SELECT CAST(w.v AS {}) FROM ({set}) w(v))",
            f.base_type_name
        ),
        None => format!("{expr}::text IN ({set})"),
    }
}

/// Other people's rows that may mention the subject: rows of tables scoped
/// to a workspace of the subject (through a membership), not the subject's.
fn mentions(b: &mut Builder<'_>, subject_type: &str, id: &str, erased: &[&str]) {
    let cat = b.cat;
    let memberships: Vec<&Table> = cat.memberships(subject_type).collect();
    // The subject's workspaces, as a subquery over the membership tables.
    let workspaces: Vec<String> = memberships
        .iter()
        .map(|m| {
            let ms = m.membership.as_ref().expect("membership");
            let except = if erased.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = erased.iter().map(|t| literal(t)).collect();
                format!(
                    " AND m.{}::text OPERATOR(pg_catalog.<>) ALL (ARRAY[{}]::pg_catalog.text[])",
                    ident(&ms.tenant_column),
                    list.join(", ")
                )
            };
            format!(
                "SELECT m.{}::text FROM {} m WHERE m.{}{except}",
                ident(&ms.tenant_column),
                m.name,
                m.eq(&ms.subject_column, "$1")
            )
        })
        .collect();
    let in_workspaces = workspaces.join(" UNION ");
    // The workspace rows themselves (a team's contact e-mail, its name).
    if let Some(ten) = cat.tenant_table().filter(|_| !memberships.is_empty()) {
        let columns: Vec<(String, bool)> = ten
            .text_columns(true)
            .into_iter()
            .map(|c| (c.name.clone(), c.kind == ValueKind::Json))
            .collect();
        if !columns.is_empty() {
            let col = ten.tenant.as_deref().expect("tenant");
            let rows = in_text_set(ten, col, &ident(col), &in_workspaces);
            b.push(
                ten,
                rows,
                id,
                Action::CountMentions { columns },
                Some("the subject mentioned in a workspace of theirs"),
                None,
            );
        }
    }
    for t in &cat.tables {
        let Some(d) = &t.data else { continue };
        let columns = Builder::free_text(t);
        if columns.is_empty() {
            continue;
        }
        let Some(tenant) = &d.tenant else {
            // Without a workspace to bound the search, only where the
            // data map asks for redaction: every other row of the table.
            if d.redact_mentions {
                let rows = if d.subject_type == subject_type {
                    format!("({}) IS NOT TRUE", t.key_rows(&d.subject, "$1", cat))
                } else {
                    "TRUE".to_string()
                };
                b.redact_text(t, columns, &rows, id, MENTIONS_REDACTED, None);
            }
            continue;
        };
        if memberships.is_empty() {
            continue;
        }
        let tenant_rows = t.key_cond(tenant, cat, &|table, column, col| {
            in_text_set(table, column, col, &in_workspaces)
        });
        let own = if d.subject_type == subject_type {
            format!(" AND ({}) IS NOT TRUE", t.key_rows(&d.subject, "$1", cat))
        } else {
            String::new()
        };
        let rows = format!("{tenant_rows}{own}");
        if d.redact_mentions {
            b.redact_text(t, columns, &rows, id, MENTIONS_REDACTED, None);
        } else {
            b.push(
                t,
                rows,
                id,
                Action::CountMentions { columns },
                Some("the subject mentioned in other people's rows"),
                None,
            );
        }
    }
}

/// The checks of a subject's erasure; rows in workspaces erased with the
/// subject are checked by the workspaces' own checks.
fn verify_subject(b: &mut Builder<'_>, sub: &Table, subject_type: &str, id: &str, erased: &[&str]) {
    let cat = b.cat;
    for t in &cat.tables {
        let owned = t.subject.is_none()
            && t.tenant.is_none()
            && t.data
                .as_ref()
                .is_some_and(|d| d.subject_type == subject_type);
        let subj_rows = if t.oid == sub.oid {
            Some(sub.eq(&sub.subject.as_ref().expect("subject").id_column, "$1"))
        } else if owned {
            t.data.as_ref().map(|d| t.key_rows(&d.subject, "$1", cat))
        } else {
            t.membership
                .as_ref()
                .filter(|m| m.subject_type == subject_type)
                .map(|m| t.eq(&m.subject_column, "$1"))
        };
        if owned
            || t.membership
                .as_ref()
                .is_some_and(|m| m.subject_type == subject_type)
        {
            let d = t.data.as_ref();
            let rows = match (d, &subj_rows) {
                (Some(d), Some(r)) if d.on_erase == OnErase::Delete => Some(r.clone()),
                (None, Some(r)) => Some(r.clone()),
                (Some(_), Some(r)) if t.membership.is_some() => Some(r.clone()),
                (Some(d), Some(r)) if d.on_erase == OnErase::Anonymize => {
                    Builder::soft_deleted(t, r)
                }
                _ => None,
            };
            if let Some(rows) = rows {
                let (rows, _) = b.unreferenced_by_retained(t, &rows);
                let rows = match t.outside_tenants(erased, cat) {
                    Some(o) => format!("{rows} AND {o}"),
                    None => rows,
                };
                b.check_rows_gone(t, rows, id);
            }
        }
        b.check_values_gone(t, subj_rows, id);
    }
}

/// The steps of a workspace's erasure, as the target or as a decision of a
/// subject's erasure (`workspace` set then).
fn workspace_steps(
    b: &mut Builder<'_>,
    id: &str,
    workspace: Option<&str>,
) -> Result<(), PlanError> {
    let cat = b.cat;
    let ten = cat
        .tenant_table()
        .cloned()
        .ok_or(PlanError::NoTenantTable)?;
    // Tables scoped to the workspace: (table, rows).
    let scoped: Vec<(u32, String)> = cat
        .tables
        .iter()
        .filter(|t| t.tenant.is_none())
        .filter_map(|t| {
            if let Some(d) = &t.data {
                if let Some(k) = &d.tenant {
                    return Some((t.oid, t.key_rows(k, "$1", cat)));
                }
            }
            if let Some(s) = &t.subject {
                if let Some(c) = &s.tenant_column {
                    return Some((t.oid, t.eq(c, "$1")));
                }
            }
            t.membership
                .as_ref()
                .map(|m| (t.oid, t.eq(&m.tenant_column, "$1")))
        })
        .collect();
    let by_tenant = std::mem::replace(&mut b.by_tenant, true);
    // A table reached through its parent loses all its rows of the
    // workspace in a step of its own: none below the parent.
    for t in &cat.tables {
        if let Some(Key::Via { column, .. }) = t.data.as_ref().and_then(|d| d.tenant.as_ref()) {
            b.covered.push((t.oid, column.clone()));
        }
    }
    let order = cat.delete_order(&scoped.iter().map(|(o, _)| *o).collect::<Vec<_>>());
    for oid in &order {
        let t = cat.table(*oid).cloned().expect("scoped table");
        let rows = scoped
            .iter()
            .find(|(o, _)| o == oid)
            .map(|(_, r)| r.clone())
            .unwrap_or_default();
        if t.subject.is_some()
            || t.data
                .as_ref()
                .is_some_and(|d| d.on_erase == OnErase::Retain && t.membership.is_none())
        {
            continue;
        }
        b.delete(t.oid, &rows, id, Some("workspace content"), workspace, 0)?;
    }
    for (oid, rows) in &scoped {
        let t = cat.table(*oid).cloned().expect("scoped table");
        if t.subject.is_some() {
            b.anonymize(
                &t,
                rows,
                id,
                Some("member of the erased workspace"),
                workspace,
            );
        } else if let Some(d) = t
            .data
            .as_ref()
            .filter(|d| d.on_erase == OnErase::Retain && t.membership.is_none())
        {
            let d = d.clone();
            let tenant_column = d
                .tenant
                .as_ref()
                .map(|k| k.column().to_string())
                .unwrap_or_default();
            b.retain(&t, &d, &tenant_column, rows, id, workspace);
        }
    }
    let rows = ten.eq(ten.tenant.as_deref().expect("tenant"), "$1");
    b.anonymize(
        &ten,
        &rows,
        id,
        Some("workspace row, kept as a tombstone"),
        workspace,
    );
    b.covered.clear();
    // Checked for a workspace erased on its own and for one erased with
    // its last admin alike (the checks carry the workspace's id).
    for (oid, rows) in &scoped {
        let t = cat.table(*oid).expect("scoped table");
        if t.subject.is_some()
            || t.data
                .as_ref()
                .is_some_and(|d| d.on_erase == OnErase::Retain && t.membership.is_none())
        {
            continue;
        }
        let (rows, _) = b.unreferenced_by_retained(t, rows);
        b.check_rows_gone(t, rows, id);
    }
    b.check_values_gone(&ten, Some(rows), id);
    b.by_tenant = by_tenant;
    Ok(())
}

/// The plan of a workspace's erasure.
pub fn workspace_erasure(cat: &Catalog, id: &str, salt: &str) -> Result<Plan, PlanError> {
    let mut b = Builder::new(cat, salt);
    workspace_steps(&mut b, id, None)?;
    Ok(b.plan)
}

/// A record of rows an erasure retained.
#[derive(Debug, Clone, PartialEq)]
pub struct Retained {
    pub id: i64,
    pub relation: u32,
    pub key_column: String,
    pub rows: i64,
    pub legal_basis: String,
    pub retain_until: String,
    /// The retention period has ended.
    pub expired: bool,
}

/// Retained rows whose period has ended, children first: their deletion
/// steps (each followed by closing its record).
fn purge_retained(b: &mut Builder<'_>, records: &[Retained], key: &str) {
    let cat = b.cat;
    let mut oids: Vec<u32> = records.iter().map(|r| r.relation).collect();
    oids.dedup();
    for oid in cat.delete_order(&oids) {
        let Some(t) = cat.table(oid) else { continue };
        for r in records.iter().filter(|r| r.relation == oid) {
            let rows = t.rows_by(&r.key_column, "$1", cat);
            if !r.expired {
                let still = Action::StillRetained {
                    rows: r.rows,
                    legal_basis: r.legal_basis.clone(),
                    retain_until: r.retain_until.clone(),
                };
                b.push(
                    t,
                    rows,
                    key,
                    still,
                    Some("retention period has not ended"),
                    None,
                );
                continue;
            }
            let why = Some("retention period ended");
            b.push(t, rows.clone(), key, Action::ProtectedDelete, why, None);
            b.push(
                t,
                rows,
                key,
                Action::CloseRetention { record: r.id },
                None,
                None,
            );
        }
    }
}

/// The plan of a purge of what an erasure kept for `target_type` `id`: the
/// subject's anonymized rows, retained rows whose period has ended, the
/// tombstone; only rows nothing references any more.
pub fn purge(
    cat: &Catalog,
    target_type: &str,
    id: &str,
    records: &[Retained],
) -> Result<Plan, PlanError> {
    let mut b = Builder::new(cat, "''");
    let tombstone = if target_type == "tenant" {
        let t = cat
            .tenant_table()
            .cloned()
            .ok_or(PlanError::NoTenantTable)?;
        let rows = t.eq(t.tenant.as_deref().expect("tenant"), "$1");
        (t, rows, "workspace tombstone")
    } else {
        let tables: Vec<u32> = cat
            .tables
            .iter()
            .filter(|t| t.subject.is_none() && t.tenant.is_none() && t.membership.is_none())
            .filter(|t| {
                t.data.as_ref().is_some_and(|d| {
                    d.subject_type == target_type && d.on_erase == OnErase::Anonymize
                })
            })
            .map(|t| t.oid)
            .collect();
        for oid in cat.delete_order(&tables) {
            let t = cat.table(oid).expect("purged table");
            let d = t.data.as_ref().expect("data table");
            let rows = t.key_rows(&d.subject, "$1", cat);
            b.push(
                t,
                rows,
                id,
                Action::ProtectedDelete,
                Some("anonymized rows"),
                None,
            );
        }
        let t = cat
            .subject_table(target_type)
            .cloned()
            .ok_or_else(|| PlanError::UnknownTarget(target_type.to_string()))?;
        let rows = t.eq(&t.subject.as_ref().expect("subject").id_column, "$1");
        (t, rows, "subject tombstone")
    };
    purge_retained(&mut b, records, id);
    let (t, rows, why) = tombstone;
    b.push(&t, rows, id, Action::ProtectedDelete, Some(why), None);
    Ok(b.plan)
}

/// The plan of the retention sweep for one target's expired records.
pub fn retention_sweep(cat: &Catalog, id: &str, records: &[Retained]) -> Plan {
    let mut b = Builder::new(cat, "''");
    purge_retained(&mut b, records, id);
    b.plan
}

/// A condition true when one of `columns` (name, is JSON) mentions one of
/// the identifiers `$3` (whole words, any letter case and normal form).
///
/// `lifecycle.mentions` alone: it keeps its matcher between rows and
/// searches ASCII text in one pass, several times faster than a `LIKE`
/// filter in front of it, which has to lower-case every text first.
pub fn mentions_condition(columns: &[(String, bool)]) -> String {
    columns
        .iter()
        .map(|(c, _)| {
            let q = ident(c);
            format!("lifecycle.mentions({q}::text, $3::pg_catalog.text[])")
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Workspaces and their decisions from a request's `workspaces` option.
pub fn decisions(options: &serde_json::Value) -> Vec<(String, Decision)> {
    let mut out = BTreeMap::new();
    if let Some(map) = options.get("workspaces").and_then(|w| w.as_object()) {
        for (tenant, d) in map {
            if d.as_str() == Some("erase") {
                out.insert(tenant.clone(), Decision::Erase);
            } else if let Some(to) = d.get("transfer_to").and_then(|t| t.as_str()) {
                out.insert(tenant.clone(), Decision::TransferTo(to.to_string()));
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn col(name: &str, kind: ValueKind) -> ColumnFacts {
        ColumnFacts {
            name: name.into(),
            type_name: match kind {
                ValueKind::Json => "jsonb".into(),
                ValueKind::Number => "bigint".into(),
                _ => "text".into(),
            },
            base_type_name: match kind {
                ValueKind::Json => "pg_catalog.jsonb".into(),
                ValueKind::Number => "pg_catalog.int8".into(),
                _ => "pg_catalog.text".into(),
            },
            eq: "OPERATOR(pg_catalog.=)".into(),
            kind,
            not_null: false,
            unique: false,
            max_chars: None,
            is_key: false,
        }
    }

    pub(crate) fn chat() -> Catalog {
        let users = Table {
            oid: 1,
            name: "chat.users".into(),
            label: "Users".into(),
            subject: Some(SubjectTable {
                subject_type: "user".into(),
                id_column: "id".into(),
                tenant_column: None,
            }),
            tenant: None,
            data: None,
            membership: None,
            rules: vec![
                ("email".into(), ColumnRule::DeletedEmail),
                ("username".into(), ColumnRule::Redact),
            ],
            extra_scopes: vec![],
            columns: vec![
                col("id", ValueKind::Text),
                col("email", ValueKind::Text),
                col("username", ValueKind::Text),
                col("props", ValueKind::Json),
            ],
        };
        let teams = Table {
            oid: 2,
            name: "chat.teams".into(),
            label: "Teams".into(),
            subject: None,
            tenant: Some("id".into()),
            data: None,
            membership: None,
            rules: vec![],
            extra_scopes: vec![],
            columns: vec![col("id", ValueKind::Text), col("name", ValueKind::Text)],
        };
        let members = Table {
            oid: 3,
            name: "chat.teammembers".into(),
            label: "Team members".into(),
            subject: None,
            tenant: None,
            data: None,
            membership: Some(MembershipTable {
                subject_type: "user".into(),
                subject_column: "userid".into(),
                tenant_column: "teamid".into(),
                role_column: "schemeadmin".into(),
                admin: Admin::Flag,
                active_column: None,
            }),
            rules: vec![],
            extra_scopes: vec![],
            columns: vec![
                col("userid", ValueKind::Text),
                col("teamid", ValueKind::Text),
            ],
        };
        let channels = Table {
            oid: 4,
            name: "chat.channels".into(),
            label: "Channels".into(),
            subject: None,
            tenant: None,
            data: Some(DataTable {
                subject_type: "user".into(),
                subject: Key::Column("creatorid".into()),
                tenant: Some(Key::Column("teamid".into())),
                on_erase: OnErase::Anonymize,
                retain_for: None,
                legal_basis: None,
                soft_delete: Some(("deleteat".into(), SoftDelete::Epoch)),
                redact_mentions: false,
            }),
            membership: None,
            rules: vec![],
            extra_scopes: vec![],
            columns: vec![
                col("id", ValueKind::Text),
                col("teamid", ValueKind::Text),
                col("creatorid", ValueKind::Text),
                col("displayname", ValueKind::Text),
                col("deleteat", ValueKind::Number),
            ],
        };
        let posts = Table {
            oid: 5,
            name: "chat.posts".into(),
            label: "Posts".into(),
            subject: None,
            tenant: None,
            data: Some(DataTable {
                subject_type: "user".into(),
                subject: Key::Column("userid".into()),
                tenant: Some(Key::Via {
                    column: "channelid".into(),
                    parent: 4,
                    parent_key: "id".into(),
                    parent_column: "teamid".into(),
                }),
                on_erase: OnErase::Anonymize,
                retain_for: None,
                legal_basis: None,
                soft_delete: Some(("deleteat".into(), SoftDelete::Epoch)),
                redact_mentions: false,
            }),
            membership: None,
            rules: vec![],
            extra_scopes: vec![],
            columns: vec![
                col("id", ValueKind::Text),
                col("userid", ValueKind::Text),
                col("channelid", ValueKind::Text),
                col("message", ValueKind::Text),
                col("props", ValueKind::Json),
                col("deleteat", ValueKind::Number),
            ],
        };
        Catalog {
            tables: vec![users, teams, members, channels, posts],
            refs: vec![],
        }
    }

    #[test]
    fn subject_erasure_ends_memberships_redacts_kept_text_and_verifies_it() {
        let cat = chat();
        let plan = subject_erasure(&cat, "user", "u1", &[], "'s'").unwrap();
        let verbs: Vec<(&str, &str)> = plan
            .steps
            .iter()
            .map(|s| (s.table_name.as_str(), s.action.verb()))
            .collect();
        assert!(
            verbs.contains(&("chat.teammembers", "deleted")),
            "{verbs:?}"
        );
        assert!(verbs.contains(&("chat.posts", "redacted")), "{verbs:?}");
        assert!(verbs.contains(&("chat.posts", "kept")), "{verbs:?}");
        assert!(verbs.contains(&("chat.users", "anonymized")), "{verbs:?}");
        // Soft-deleted posts go for real; epoch 0 is live.
        let soft = plan
            .steps
            .iter()
            .find(|s| s.table_name == "chat.posts" && s.action.verb() == "deleted")
            .expect("soft-deleted posts");
        assert!(
            soft.rows.contains("\"deleteat\" OPERATOR(pg_catalog.<>) 0"),
            "{}",
            soft.rows
        );
        // Verification looks for identifiers in the free text kept.
        assert!(plan.checks.iter().any(|c| matches!(c,
            Check::TextClean { table_name, columns, .. }
                if table_name == "chat.posts" && columns.contains(&("message".to_string(), false))
                    && columns.contains(&("props".to_string(), true)))));
        // Mentions are counted in the subject's teams, through the channel.
        let m = plan
            .steps
            .iter()
            .find(|s| s.table_name == "chat.posts" && s.action.verb() == "mentioned")
            .expect("mentions in posts");
        assert!(
            m.rows
                .contains("IN (SELECT p1.\"id\" FROM chat.channels p1"),
            "{}",
            m.rows
        );
        assert!(
            m.rows.contains("IS NOT TRUE"),
            "other people's rows only: {}",
            m.rows
        );
    }

    #[test]
    fn workspace_erasure_reaches_rows_through_their_parent() {
        let cat = chat();
        let plan = workspace_erasure(&cat, "t1", "'s'").unwrap();
        let deletes: Vec<&Step> = plan
            .steps
            .iter()
            .filter(|s| s.action.verb() == "deleted")
            .collect();
        let posts = deletes
            .iter()
            .position(|s| s.table_name == "chat.posts")
            .expect("posts");
        let channels = deletes
            .iter()
            .position(|s| s.table_name == "chat.channels")
            .expect("channels");
        assert!(
            posts < channels,
            "posts go before the channels they reach their team through"
        );
        assert!(deletes[posts].rows.contains(
            "\"channelid\" IN (SELECT p1.\"id\" FROM chat.channels p1 WHERE p1.\"teamid\""
        ));
        assert!(plan.checks.iter().any(
            |c| matches!(c, Check::RowsGone { table_name, .. } if table_name == "chat.posts")
        ));
    }

    #[test]
    fn references_from_unmapped_tables_refuse_and_nullable_ones_detach() {
        let mut cat = chat();
        cat.tables[4].data.as_mut().unwrap().on_erase = OnErase::Delete;
        cat.refs.push(Reference {
            name: "reactions_post".into(),
            child: 99,
            child_name: "chat.reactions".into(),
            parent: 5,
            cols: vec!["\"postid\"".into()],
            parent_cols: vec!["\"id\"".into()],
            nullable: false,
            declared: false,
        });
        cat.refs.push(Reference {
            name: "posts_root".into(),
            child: 5,
            child_name: "chat.posts".into(),
            parent: 5,
            cols: vec!["\"rootid\"".into()],
            parent_cols: vec!["\"id\"".into()],
            nullable: true,
            declared: true,
        });
        let plan = subject_erasure(&cat, "user", "u1", &[], "'s'").unwrap();
        let posts: Vec<&Step> = plan
            .steps
            .iter()
            .filter(|s| s.table_name.ends_with("posts") || s.table_name.ends_with("reactions"))
            .filter(|s| !matches!(s.action, Action::CountMentions { .. }))
            .collect();
        assert!(matches!(posts[0].action, Action::RefuseUnmapped { .. }));
        assert!(matches!(posts[1].action, Action::Detach { .. }));
        assert!(
            posts[1].rows.contains("AND NOT"),
            "a self-reference excludes the rows being deleted"
        );
        assert!(matches!(posts[2].action, Action::Delete { .. }));
    }

    #[test]
    fn live_rows_and_rows_outside_decided_workspaces() {
        let cat = chat();
        let posts = &cat.tables[4];
        assert_eq!(
            posts.live("p"),
            "COALESCE(p.\"deleteat\" OPERATOR(pg_catalog.=) 0, true)"
        );
        assert_eq!(
            posts.live(""),
            "COALESCE(\"deleteat\" OPERATOR(pg_catalog.=) 0, true)"
        );
        assert_eq!(cat.tables[2].live("m"), "TRUE");
        assert_eq!(posts.outside_tenants(&[], &cat), None);
        let out = posts.outside_tenants(&["t'1"], &cat).unwrap();
        assert!(out.contains("chat.channels p"), "{out}");
        assert!(out.contains("'t''1'"), "{out}");
        assert!(out.ends_with("IS NOT TRUE"), "{out}");
        // The subject's posts in a workspace erased with them are left to
        // the workspace's steps: no later step counts them again.
        let plan =
            subject_erasure(&cat, "user", "u1", &[("t1".into(), Decision::Erase)], "'s'").unwrap();
        let kept: Vec<&Step> = plan
            .steps
            .iter()
            .filter(|s| s.table == 5 && s.workspace.is_none())
            .filter(|s| matches!(s.action, Action::Anonymize { .. } | Action::Delete { .. }))
            .collect();
        assert!(!kept.is_empty());
        assert!(kept.iter().all(|s| s.rows.contains("'t1'")), "{kept:?}");
    }

    #[test]
    fn workspace_erasure_keeps_parents_of_retained_rows_and_counts_rows_once() {
        let mut cat = chat();
        // Channel history, retained, reaches the team through the channel;
        // a declared link from posts to channels.
        let mut history = cat.tables[4].clone();
        history.oid = 6;
        history.name = "chat.channelmemberhistory".into();
        let d = history.data.as_mut().unwrap();
        d.on_erase = OnErase::Retain;
        d.retain_for = Some("1 year".into());
        d.legal_basis = Some("eDiscovery".into());
        d.soft_delete = None;
        cat.tables.push(history);
        for (child, name) in [(5, "chat.posts"), (6, "chat.channelmemberhistory")] {
            cat.refs.push(Reference {
                name: format!("link {name}.channelid"),
                child,
                child_name: name.into(),
                parent: 4,
                cols: vec!["channelid".into()],
                parent_cols: vec!["id".into()],
                nullable: false,
                declared: true,
            });
        }
        let plan = workspace_erasure(&cat, "t1", "'s'").unwrap();
        // Posts go in their own step only, not again below the channels.
        let post_deletes = plan
            .steps
            .iter()
            .filter(|s| s.table == 5 && matches!(s.action, Action::Delete { .. }))
            .count();
        assert_eq!(post_deletes, 1, "{:#?}", plan.steps);
        // Retained rows are never deleted, and the channels they name stay.
        assert!(!plan
            .steps
            .iter()
            .any(|s| s.table == 6 && matches!(s.action, Action::Delete { .. })));
        let channels: Vec<&Step> = plan.steps.iter().filter(|s| s.table == 4).collect();
        assert!(channels
            .iter()
            .any(|s| matches!(s.action, Action::Anonymize { .. })
                && s.reason.as_deref()
                    == Some("referenced by rows retained in chat.channelmemberhistory")));
        assert!(channels
            .iter()
            .filter(|s| matches!(s.action, Action::Delete { .. }))
            .all(|s| s
                .rows
                .contains("IN (SELECT k.channelid FROM chat.channelmemberhistory k")));
        // The verification expects only the unreferenced channels gone.
        assert!(plan
            .checks
            .iter()
            .any(|c| matches!(c, Check::RowsGone { table: 4, rows, .. }
            if rows.contains("chat.channelmemberhistory k"))));
    }

    #[test]
    fn paths_of_several_steps_nest() {
        let cat = chat();
        // Reminders name a post; the post's team is its channel's.
        let mut reminders = cat.tables[4].clone();
        reminders.oid = 7;
        reminders.name = "chat.postreminders".into();
        let via = Key::Via {
            column: "postid".into(),
            parent: 5,
            parent_key: "id".into(),
            parent_column: "channelid".into(),
        };
        let rows = reminders.key_rows(&via, "$1", &cat);
        assert_eq!(
            rows,
            "\"postid\" IN (SELECT p1.\"id\" FROM chat.posts p1 WHERE p1.\"channelid\" IN \
             (SELECT p2.\"id\" FROM chat.channels p2 WHERE p2.\"teamid\" OPERATOR(pg_catalog.=) $1::pg_catalog.text))"
        );
        let outside = {
            let mut t = reminders.clone();
            t.data.as_mut().unwrap().tenant = Some(via);
            t.outside_tenants(&["t1"], &cat).unwrap()
        };
        assert!(
            outside.contains("p2.\"teamid\"::text OPERATOR(pg_catalog.=) ANY (ARRAY['t1']"),
            "{outside}"
        );
    }

    #[test]
    fn admin_predicates_for_every_shape() {
        assert_eq!(
            Admin::Flag.predicate("m", "schemeadmin", "$2"),
            "m.\"schemeadmin\" IS TRUE"
        );
        assert!(Admin::Delimited {
            separator: " ".into(),
            roles: vec!["team_admin".into()]
        }
        .predicate("m", "roles", "$2")
        .contains("pg_catalog.string_to_array(m.\"roles\"::text, ' ')"));
        assert!(Admin::List(vec!["admin".into()])
            .predicate("m", "roles", "$2")
            .contains("&&"));
        assert!(Admin::Exact(vec!["20".into()])
            .predicate("m", "role", "$2")
            .contains("ANY"));
    }

    #[test]
    fn rules_write_unique_values_into_unique_columns() {
        let mut c = col("username", ValueKind::Text);
        let ctx = RuleContext {
            key: "k",
            row_key: "rk",
            salt: "'s'",
        };
        assert_eq!(
            rule_expr(&c, ColumnRule::Redact, &ctx).unwrap(),
            "CAST('[redacted]' AS text)"
        );
        c.unique = true;
        assert!(rule_expr(&c, ColumnRule::Redact, &ctx)
            .unwrap()
            .contains("rk"));
        assert!(rule_expr(&c, ColumnRule::Keep, &ctx).is_none());
        let n = col("deleteat", ValueKind::Number);
        assert!(rule_expr(&n, ColumnRule::ErasedAt, &ctx)
            .unwrap()
            .contains("epoch"));
    }
}
