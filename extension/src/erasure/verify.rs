//! The verification after a run: the plan's checks re-scan what the run was
//! to remove. Any finding fails the job (`LC041`) and rolls it back: a
//! receipt never says "verified" while an identifier it looked for is left.

use serde_json::{json, Value};

use super::run::{Params, Runner};
use crate::error::{LcError, LcResult};
use crate::plan::{self, Check};
use crate::spi;

fn has_leading_index(relid: u32, col: &str) -> LcResult<bool> {
    Ok(spi::one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index i \
                          JOIN pg_catalog.pg_attribute a ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid \
                                                        AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0] \
                         WHERE i.indrelid OPERATOR(pg_catalog.=) $1 \
                           AND a.attname OPERATOR(pg_catalog.=) $2::pg_catalog.name \
                           AND i.indpred IS NULL)",
        &[pgrx::pg_sys::Oid::from(relid).into(), col.into()],
    )?
    .unwrap_or(false))
}

/// Run the checks; `emails` are the target's e-mail addresses (searched in
/// whole tables where an index allows), `params` its identifiers; `noun`
/// ("subject", "workspace") and `target` ("user 42") word the findings.
pub fn verify(
    runner: &mut Runner<'_>,
    checks: &[Check],
    emails: &[String],
    params: &Params,
    noun: &str,
    target: &str,
) -> LcResult<Value> {
    let mut checked = Vec::new();
    let mut findings = Vec::new();
    for check in checks {
        match check {
            Check::RowsGone {
                table,
                table_name,
                rows,
                key,
                what,
            } => {
                let sql = format!("SELECT pg_catalog.count(*) FROM {table_name} WHERE {rows}");
                let n = runner
                    .as_owner(*table, || spi::one::<i64>(&sql, &params.args(key, None)))?
                    .unwrap_or(0);
                checked.push(json!({ "table": table_name, "check": what, "found": n }));
                if n > 0 {
                    findings.push(format!(
                        "{n} rows of {table_name} still belong to the {noun}"
                    ));
                }
            }
            Check::ValuesGone {
                table,
                table_name,
                column,
                rows,
                key,
            } => {
                if params.identifiers.is_empty() {
                    continue;
                }
                let Some(facts) = runner
                    .cat
                    .table(*table)
                    .and_then(|t| t.column(column))
                    .cloned()
                else {
                    continue;
                };
                let q = plan::ident(column);
                let any = |param: &str| {
                    format!(
                        "{q} {} ANY (CAST({param} AS {}[]))",
                        facts.eq, facts.base_type_name
                    )
                };
                // E-mail addresses identify the subject wherever they
                // appear: indexed columns are searched in the whole table.
                // Other values (names, phone numbers) in the rows tied to
                // the subject.
                let (scope, cond, values) =
                    if !emails.is_empty() && has_leading_index(*table, column)? {
                        ("whole table", any("$3"), emails.to_vec())
                    } else if let Some(r) = rows {
                        (
                            "subject's rows",
                            format!("{r} AND {}", any("$3")),
                            params.identifiers.clone(),
                        )
                    } else {
                        continue;
                    };
                let sql = format!("SELECT pg_catalog.count(*) FROM {table_name} WHERE {cond}");
                let n = runner
                    .as_owner(*table, || {
                        spi::one::<i64>(
                            &sql,
                            &[key.as_str().into(), None::<&str>.into(), values.into()],
                        )
                    })?
                    .unwrap_or(0);
                checked.push(
                    json!({ "table": table_name, "column": column, "scope": scope, "found": n }),
                );
                if n > 0 {
                    findings.push(format!(
                        "{n} rows of {table_name} still hold a personal value of the {noun} in column {column}"
                    ));
                }
            }
            Check::TextClean {
                table,
                table_name,
                columns,
                rows,
                key,
            } => {
                if params.identifiers.is_empty() {
                    continue;
                }
                let cond = plan::mentions_condition(columns);
                let sql = format!(
                    "SELECT pg_catalog.count(*) FROM {table_name} WHERE {rows} AND ({cond})"
                );
                let n = runner
                    .as_owner(*table, || spi::one::<i64>(&sql, &params.args(key, None)))?
                    .unwrap_or(0);
                let names: Vec<&str> = columns.iter().map(|(c, _)| c.as_str()).collect();
                checked.push(json!({ "table": table_name, "columns": names, "scope": "free text", "found": n }));
                if n > 0 {
                    findings.push(format!(
                        "{n} rows of {table_name} still mention the {noun} in free text ({})",
                        names.join(", ")
                    ));
                }
            }
        }
    }
    if !findings.is_empty() {
        return Err(LcError::erasure_incomplete(target, &findings.join("; ")));
    }
    Ok(json!({
        "ok": true,
        "identifiers_checked": params.identifiers.len(),
        "checked": checked,
    }))
}
