//! Column rules: how erasure treats one personal column, and the value each
//! rule writes. A rule must be able to write into its column: a value of the
//! column's type and length, not NULL where the column refuses NULL, unique
//! per subject where the column is unique, and accepted by the column's
//! CHECK constraints. `set_column_rule` refuses a rule that cannot, and names
//! one that can. The value itself is the erasure plan's
//! ([`crate::plan::rule_expr`]): what is checked here is what erasure writes.

use pgrx::pg_sys;
use serde_json::json;

use super::{audit_change, column, relation, require_text, roles_of, Column};
use crate::cache;
use crate::cache::scope_columns;
use crate::error::{LcError, LcResult};
use crate::namespace::quote_ident;
use crate::plan::{rule_expr, RuleContext};
use crate::privilege;
use lifecycle_core::events;
use lifecycle_core::rules::ColumnRule;

/// The most characters a rule's value can have for an owner id of at most
/// `key_chars` characters (`None`: unbounded or unknown).
fn rule_chars(c: &Column, rule: ColumnRule, key_chars: Option<i32>) -> Option<i32> {
    let suffix = if c.unique {
        key_chars.map(|k| k + 1)
    } else {
        Some(0)
    };
    match rule {
        ColumnRule::Redact => suffix.map(|s| 10 + s),
        ColumnRule::DeletedName => suffix.map(|s| 12 + s),
        ColumnRule::DeletedEmail => key_chars.map(|k| 22 + k),
        ColumnRule::Hash => Some(64),
        _ => Some(0),
    }
}

/// Why `rule` cannot write into `c`, if it cannot (without touching data).
fn static_misfit(c: &Column, rule: ColumnRule, key_chars: Option<i32>) -> Option<String> {
    let textual = c.is_textual();
    match rule {
        ColumnRule::Keep => None,
        ColumnRule::Clear if c.not_null => Some("'clear' writes NULL".into()),
        ColumnRule::Clear => None,
        ColumnRule::Redact
        | ColumnRule::DeletedName
        | ColumnRule::DeletedEmail
        | ColumnRule::Hash
        | ColumnRule::StorageObject
            if !textual =>
        {
            Some(format!("'{rule}' writes text"))
        }
        ColumnRule::Empty if !(textual || c.category == 'A' || c.is_json()) => {
            Some("'empty' writes an empty text, array or JSON object".into())
        }
        ColumnRule::Empty if c.unique => {
            Some("'empty' would give every erased row the same empty value".into())
        }
        ColumnRule::ErasedAt
            if !(c.category == 'N'
                || c.base_type == pg_sys::BOOLOID
                || c.base_type == pg_sys::DATEOID
                || c.base_type == pg_sys::TIMESTAMPTZOID
                || c.base_type == pg_sys::TIMESTAMPOID) =>
        {
            Some("'erased_at' writes a time, a date, an epoch in milliseconds or true".into())
        }
        _ => match (c.max_chars, rule_chars(c, rule, key_chars)) {
            (Some(max), Some(n)) if n > max => Some(format!(
                "'{rule}' writes up to {n} characters, more than the column holds"
            )),
            _ => None,
        },
    }
}

/// The CHECK constraints of `rel` that mention column `c`: (name, expression).
fn checks(relid: pg_sys::Oid, c: &Column) -> LcResult<Vec<(String, String)>> {
    let rows = crate::spi::json_rows(
        "SELECT pg_catalog.jsonb_build_array(co.conname::text, pg_catalog.pg_get_expr(co.conbin, co.conrelid)) \
           FROM pg_catalog.pg_constraint co \
           JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) co.conrelid \
                                         AND a.attnum OPERATOR(pg_catalog.=) ANY (co.conkey) \
          WHERE co.conrelid OPERATOR(pg_catalog.=) $1 AND co.contype OPERATOR(pg_catalog.=) 'c' \
            AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name \
          ORDER BY co.conname",
        &[relid.into(), c.name.as_str().into()],
    )?;
    Ok(rows
        .iter()
        .map(|v| {
            (
                v[0].as_str().unwrap_or_default().to_string(),
                v[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect())
}

/// The CHECK constraint `rule` would violate on the table's existing rows
/// (up to 100 of them), if any: each constraint's expression evaluated over
/// the rows with the column replaced by the rule's value.
fn check_misfit(
    rel: &super::Relation,
    c: &Column,
    rule: ColumnRule,
    owner: &str,
) -> LcResult<Option<String>> {
    let constraints = checks(rel.oid, c)?;
    if constraints.is_empty() {
        return Ok(None);
    }
    let ctx = RuleContext {
        key: &format!("t.{}::text", quote_ident(owner)),
        row_key: &format!("t.{}::text", quote_ident(owner)),
        salt: "'salt'",
    };
    let Some(value) = rule_expr(&c.facts(), rule, &ctx) else {
        return Ok(None);
    };
    let others = crate::spi::json(
        "SELECT pg_catalog.jsonb_agg(pg_catalog.quote_ident(a.attname) ORDER BY a.attnum) \
           FROM pg_catalog.pg_attribute a \
          WHERE a.attrelid OPERATOR(pg_catalog.=) $1 AND a.attnum OPERATOR(pg_catalog.>) 0 \
            AND NOT a.attisdropped AND a.attname OPERATOR(pg_catalog.<>) $2::pg_catalog.name",
        &[rel.oid.into(), c.name.as_str().into()],
    )?
    .and_then(|v| serde_json::from_value::<Vec<String>>(v).ok())
    .unwrap_or_default();
    let mut cols: Vec<String> = others.iter().map(|o| format!("t.{o}")).collect();
    cols.push(format!("{value} AS {}", quote_ident(&c.name)));
    for (name, expr) in constraints {
        let sql = format!(
            "SELECT pg_catalog.bool_and(coalesce(({expr}), true)) \
               FROM (SELECT {} FROM {} t LIMIT 100) AS x",
            cols.join(", "),
            rel.name
        );
        let ok = crate::subxact::run(|| Ok(crate::spi::one::<bool>(&sql, &[])?.unwrap_or(true)));
        match ok {
            Ok(true) => {}
            Ok(false) => {
                return Ok(Some(format!(
                    "its CHECK constraint \"{name}\" ({expr}) refuses what '{rule}' writes"
                )))
            }
            Err(f) => {
                return Ok(Some(format!(
                    "its CHECK constraint \"{name}\" cannot be met: {}",
                    f.message
                )))
            }
        }
    }
    Ok(None)
}

/// The characters of the longest owner id the table's key type can hold.
fn key_chars(rel: &super::Relation, owner: Option<&str>) -> LcResult<Option<i32>> {
    let Some(owner) = owner else { return Ok(None) };
    let k = column(rel, Some(owner), "owner", "lifecycle.set_column_rule()")?;
    Ok(match k.base_type {
        t if t == pg_sys::UUIDOID => Some(36),
        t if t == pg_sys::INT8OID => Some(20),
        t if t == pg_sys::INT4OID => Some(11),
        t if t == pg_sys::INT2OID => Some(6),
        _ => k.max_chars,
    })
}

/// The column that names each row's owner: the subject table's id, the
/// tenant table's id, the data table's subject column.
fn owner_column(relid: pg_sys::Oid) -> LcResult<Option<String>> {
    privilege::as_extension_owner(|| {
        crate::spi::one::<String>(
            "SELECT coalesce( \
                 (SELECT id_column::text FROM lifecycle.subject_tables WHERE relation OPERATOR(pg_catalog.=) $1), \
                 (SELECT id_column::text FROM lifecycle.tenant_tables WHERE relation OPERATOR(pg_catalog.=) $1), \
                 (SELECT coalesce(subject_column, subject_via)::text FROM lifecycle.tables WHERE relation OPERATOR(pg_catalog.=) $1), \
                 (SELECT subject_column::text FROM lifecycle.memberships WHERE relation OPERATOR(pg_catalog.=) $1))",
            &[relid.into()],
        )
    })
}

pub fn set_column_rule(
    tbl: Option<pg_sys::Oid>,
    col: Option<&str>,
    rule: Option<&str>,
) -> LcResult<()> {
    const F: &str = "lifecycle.set_column_rule()";
    let rel = relation(tbl, F)?;
    privilege::require_table_owner(rel.oid, &rel.name, "change the data map of")?;
    if roles_of(rel.oid)?.is_empty() {
        return Err(LcError::not_registered(&rel.name));
    }
    let c = column(&rel, col, "col", F)?;
    let rule: ColumnRule =
        require_text(rule, "rule", F)?
            .parse()
            .map_err(|e: lifecycle_core::UnknownName| {
                let all: Vec<&str> = ColumnRule::ALL.iter().map(|r| r.as_str()).collect();
                LcError::invalid_parameter(e.to_string())
                    .hint(format!("Use one of: {}.", all.join(", ")))
            })?;
    if scope_columns(rel.oid)?.iter().any(|(_, k)| *k == c.name) {
        return Err(LcError::invalid_parameter(format!(
            "column \"{}\" of {} is a key column of the data map",
            c.name, rel.name
        ))
        .detail("Subject and tenant columns tie rows to their owner; erasure handles them itself.")
        .hint("Set rules on the personal columns only."));
    }
    let owner = owner_column(rel.oid)?;
    let chars = key_chars(&rel, owner.as_deref())?;
    let misfit = match static_misfit(&c, rule, chars) {
        Some(m) => Some(m),
        None => match &owner {
            Some(o) => check_misfit(&rel, &c, rule, o)?,
            None => None,
        },
    };
    if let Some(why) = misfit {
        // A rule that does fit, so that the hint never sends the caller
        // back to a rule that is refused too.
        let mut fitting = None;
        for candidate in [
            ColumnRule::Clear,
            ColumnRule::Redact,
            ColumnRule::DeletedName,
            ColumnRule::Hash,
            ColumnRule::Empty,
            ColumnRule::ErasedAt,
        ] {
            if candidate == rule || static_misfit(&c, candidate, chars).is_some() {
                continue;
            }
            let ok = match &owner {
                Some(o) => check_misfit(&rel, &c, candidate, o)?.is_none(),
                None => true,
            };
            if ok {
                fitting = Some(candidate);
                break;
            }
        }
        let hint = match fitting {
            Some(f) => format!("Use the rule '{f}', which fits this column."),
            None => format!(
                "No rule that changes the value fits this column: use 'keep' and clear it yourself, or relax its constraints (for example ALTER TABLE {} ALTER COLUMN {} DROP NOT NULL).",
                rel.name,
                quote_ident(&c.name)
            ),
        };
        return Err(LcError::datatype_mismatch(format!(
            "column rule \"{rule}\" does not fit column \"{}\" of {}",
            c.name, rel.name
        ))
        .detail(format!(
            "The column is of type {}{}{}, and {why}.",
            c.type_name,
            if c.not_null { " NOT NULL" } else { "" },
            if c.unique { " UNIQUE" } else { "" }
        ))
        .hint(hint));
    }
    let me = privilege::current_user_name();
    let changed = privilege::as_extension_owner(|| {
        Ok(crate::spi::one::<bool>(
            "WITH up AS (\
               INSERT INTO lifecycle.column_rules (relation, column_name, rule, set_by) \
               VALUES ($1, $2::pg_catalog.name, $3, $4) \
               ON CONFLICT (relation, column_name) DO UPDATE \
                  SET rule = EXCLUDED.rule, set_at = pg_catalog.now(), set_by = EXCLUDED.set_by \
                WHERE column_rules.rule IS DISTINCT FROM EXCLUDED.rule \
               RETURNING 1) SELECT EXISTS (SELECT 1 FROM up)",
            &[
                rel.oid.into(),
                c.name.as_str().into(),
                rule.as_str().into(),
                me.as_str().into(),
            ],
        )?
        .unwrap_or(false))
    })?;
    if changed {
        cache::invalidate("column_rules")?;
        audit_change(
            events::DATA_MAP_COLUMN_RULE_SET,
            &rel,
            json!({ "column": c.name, "rule": rule.as_str() }),
        )?;
    }
    Ok(())
}
