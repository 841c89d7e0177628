//! How exports show one column: a label people understand instead of the
//! column's name, or left out of every export with a reason (password and
//! token hashes, internal secrets). Stored in `lifecycle.column_exports`;
//! [`crate::export`] reads it.

use pgrx::pg_sys;
use serde_json::json;

use super::{audit_change, column, relation, require_text, roles_of};
use crate::error::{LcError, LcResult};
use crate::privilege;
use lifecycle_core::events;

/// What a call changes: the label, the exclusion, or both back to default.
enum Change<'a> {
    Label(Option<&'a str>),
    Exclude(String),
    Include,
}

fn set(tbl: Option<pg_sys::Oid>, col: Option<&str>, change: Change<'_>, f: &str) -> LcResult<()> {
    let rel = relation(tbl, f)?;
    privilege::require_table_owner(rel.oid, &rel.name, "change the data map of")?;
    if roles_of(rel.oid)?.is_empty() {
        return Err(LcError::not_registered(&rel.name));
    }
    let c = column(&rel, col, "col", f)?;
    let me = privilege::current_user_name();
    let (sql, value, details) = match &change {
        Change::Label(Some(label)) => (
            "INSERT INTO lifecycle.column_exports AS e (relation, column_name, label, set_by) \
             VALUES ($1, $2::pg_catalog.name, $3, $4) \
             ON CONFLICT (relation, column_name) DO UPDATE \
                SET label = EXCLUDED.label, set_at = pg_catalog.now(), set_by = EXCLUDED.set_by \
              WHERE e.label IS DISTINCT FROM EXCLUDED.label",
            Some(label.to_string()),
            json!({ "column": c.name, "label": label }),
        ),
        Change::Exclude(reason) => (
            "INSERT INTO lifecycle.column_exports AS e (relation, column_name, excluded, set_by) \
             VALUES ($1, $2::pg_catalog.name, $3, $4) \
             ON CONFLICT (relation, column_name) DO UPDATE \
                SET excluded = EXCLUDED.excluded, set_at = pg_catalog.now(), set_by = EXCLUDED.set_by \
              WHERE e.excluded IS DISTINCT FROM EXCLUDED.excluded",
            Some(reason.clone()),
            json!({ "column": c.name, "excluded": reason }),
        ),
        // Back to the default label, or back into exports: `$3` is NULL.
        Change::Label(None) => (
            "UPDATE lifecycle.column_exports AS e \
                SET label = $3, set_at = pg_catalog.now(), set_by = $4 \
              WHERE e.relation OPERATOR(pg_catalog.=) $1 \
                AND e.column_name OPERATOR(pg_catalog.=) $2::pg_catalog.name \
                AND e.label IS NOT NULL",
            None,
            json!({ "column": c.name, "label": null }),
        ),
        Change::Include => (
            "UPDATE lifecycle.column_exports AS e \
                SET excluded = $3, set_at = pg_catalog.now(), set_by = $4 \
              WHERE e.relation OPERATOR(pg_catalog.=) $1 \
                AND e.column_name OPERATOR(pg_catalog.=) $2::pg_catalog.name \
                AND e.excluded IS NOT NULL",
            None,
            json!({ "column": c.name, "excluded": null }),
        ),
    };
    let changed = privilege::as_extension_owner(|| {
        let n = crate::spi::exec(
            sql,
            &[
                rel.oid.into(),
                c.name.as_str().into(),
                value.as_deref().into(),
                me.as_str().into(),
            ],
        )?;
        // A row that says nothing any more goes.
        crate::spi::exec(
            "DELETE FROM lifecycle.column_exports \
              WHERE relation OPERATOR(pg_catalog.=) $1 \
                AND column_name OPERATOR(pg_catalog.=) $2::pg_catalog.name \
                AND label IS NULL AND excluded IS NULL",
            &[rel.oid.into(), c.name.as_str().into()],
        )?;
        Ok(n > 0)
    })?;
    if changed {
        audit_change(events::DATA_MAP_COLUMN_EXPORT_SET, &rel, details)?;
    }
    Ok(())
}

/// `lifecycle.set_column_label(tbl, col, label)`: the label exports give the
/// column (NULL: back to the default made from its name).
pub fn set_column_label(
    tbl: Option<pg_sys::Oid>,
    col: Option<&str>,
    label: Option<&str>,
) -> LcResult<()> {
    const F: &str = "lifecycle.set_column_label()";
    let label = match label {
        Some(l) => Some(require_text(Some(l), "label", F)?),
        None => None,
    };
    set(tbl, col, Change::Label(label.as_deref().map(str::trim)), F)
}

/// `lifecycle.exclude_from_export(tbl, col, reason)`: the column never
/// leaves the system; bundles say it was left out, and why.
pub fn exclude_from_export(
    tbl: Option<pg_sys::Oid>,
    col: Option<&str>,
    reason: Option<&str>,
) -> LcResult<()> {
    const F: &str = "lifecycle.exclude_from_export()";
    let reason = require_text(reason, "reason", F)?;
    set(tbl, col, Change::Exclude(reason.trim().to_string()), F)
}

/// `lifecycle.include_in_export(tbl, col)`: undoes `exclude_from_export`.
pub fn include_in_export(tbl: Option<pg_sys::Oid>, col: Option<&str>) -> LcResult<()> {
    set(tbl, col, Change::Include, "lifecycle.include_in_export()")
}
