//! The verification after a run: the plan's checks re-scan what the run was
//! to remove. Any finding fails the job (`LC041`) and rolls it back: a
//! receipt never says "verified" while an identifier it looked for is left.

use pgrx::pg_sys;
use serde_json::{json, Value};

use super::batch::Batch;
use super::run::{Params, Runner};
use crate::error::{LcError, LcResult};
use crate::plan::{self, Check};

/// Whether an index without a predicate leads with column `col` of
/// `relid`: from the relation cache and the system cache, not a query.
fn has_leading_index(relid: u32, col: &str) -> LcResult<bool> {
    let relid = pg_sys::Oid::from(relid);
    let Ok(name) = std::ffi::CString::new(col) else {
        return Ok(false);
    };
    // SAFETY: the relation is held open (reference counted) while its index
    // list is read and closed on every path after; each index tuple is read
    // while the cache pins it; the list is our copy.
    unsafe {
        let attnum = pg_sys::get_attnum(relid, name.as_ptr());
        if attnum <= 0 {
            return Ok(false);
        }
        let rel = pg_sys::RelationIdGetRelation(relid);
        if rel.is_null() {
            return Ok(false);
        }
        let list = pg_sys::RelationGetIndexList(rel);
        let mut found = false;
        if !list.is_null() {
            let cells = std::slice::from_raw_parts((*list).elements, (*list).length as usize);
            for cell in cells {
                let tuple = pg_sys::SearchSysCache1(
                    pg_sys::SysCacheIdentifier::INDEXRELID as i32,
                    pg_sys::Datum::from(cell.oid_value),
                );
                if tuple.is_null() {
                    continue;
                }
                let index = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_index>(tuple);
                let leads = (*index).indnatts > 0
                    && *(*index).indkey.values.as_ptr() == attnum
                    && pg_sys::heap_attisnull(
                        tuple,
                        pg_sys::Anum_pg_index_indpred as i32,
                        std::ptr::null_mut(),
                    );
                pg_sys::ReleaseSysCache(tuple);
                if leads {
                    found = true;
                    break;
                }
            }
            pg_sys::list_free(list);
        }
        pg_sys::RelationClose(rel);
        Ok(found)
    }
}

/// One check to count: the query counting what is left, and how the
/// receipt words its result.
struct Count {
    table: u32,
    key: String,
    /// `SELECT pg_catalog.count(*) ...` over `$1` (the check's key), `$2`
    /// (NULL), `$3` (the identifiers) and `$4` (the e-mail addresses).
    sql: String,
    entry: Value,
    finding: Box<dyn Fn(i64) -> String>,
}

/// Run the checks; `emails` are the target's e-mail addresses (searched in
/// whole tables where an index allows), `params` its identifiers; `noun`
/// ("subject", "workspace") and `target` ("user 42") word the findings.
///
/// The checks that run as the same role with the same key are counted in
/// one statement (a count per check, each its own subquery): a statement
/// per check cost more than the counting itself for a small subject.
pub fn verify(
    runner: &mut Runner<'_>,
    checks: &[Check],
    emails: &[String],
    params: &Params,
    noun: &str,
    target: &str,
) -> LcResult<Value> {
    let mut counts: Vec<Count> = Vec::new();
    for check in checks {
        match check {
            Check::RowsGone {
                table,
                table_name,
                rows,
                key,
                what,
            } => {
                let (t, noun) = (table_name.clone(), noun.to_string());
                counts.push(Count {
                    table: *table,
                    key: key.clone(),
                    sql: format!("SELECT pg_catalog.count(*) FROM {table_name} WHERE {rows}"),
                    entry: json!({ "table": table_name, "check": what }),
                    finding: Box::new(move |n| {
                        format!("{n} rows of {t} still belong to the {noun}")
                    }),
                });
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
                let (scope, cond) = if !emails.is_empty() && has_leading_index(*table, column)? {
                    ("whole table", any("$4"))
                } else if let Some(r) = rows {
                    ("subject's rows", format!("{r} AND {}", any("$3")))
                } else {
                    continue;
                };
                let (t, c, noun) = (table_name.clone(), column.clone(), noun.to_string());
                counts.push(Count {
                    table: *table,
                    key: key.clone(),
                    sql: format!("SELECT pg_catalog.count(*) FROM {table_name} WHERE {cond}"),
                    entry: json!({ "table": table_name, "column": column, "scope": scope }),
                    finding: Box::new(move |n| {
                        format!(
                            "{n} rows of {t} still hold a personal value of the {noun} in column {c}"
                        )
                    }),
                });
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
                let names: Vec<String> = columns.iter().map(|(c, _)| c.clone()).collect();
                let (t, noun, list) = (table_name.clone(), noun.to_string(), names.join(", "));
                counts.push(Count {
                    table: *table,
                    key: key.clone(),
                    sql: format!(
                        "SELECT pg_catalog.count(*) FROM {table_name} WHERE {rows} AND ({cond})"
                    ),
                    entry: json!({ "table": table_name, "columns": names, "scope": "free text" }),
                    finding: Box::new(move |n| {
                        format!("{n} rows of {t} still mention the {noun} in free text ({list})")
                    }),
                });
            }
        }
    }
    let found = count_all(runner, &counts, emails, params)?;
    let mut checked = Vec::with_capacity(counts.len());
    let mut findings = Vec::new();
    for (c, n) in counts.into_iter().zip(found) {
        let mut entry = c.entry;
        entry["found"] = json!(n);
        checked.push(entry);
        if n > 0 {
            findings.push((c.finding)(n));
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

/// The count of each of `counts`, in order: one statement per table owner
/// and key, run as that owner.
fn count_all(
    runner: &mut Runner<'_>,
    counts: &[Count],
    emails: &[String],
    params: &Params,
) -> LcResult<Vec<i64>> {
    let mut batch = Batch::new();
    for c in counts {
        batch.add_count(c.table, &c.key, None, &c.sql);
    }
    let values = batch.run(
        |table| runner.owner_of(table),
        |key, second| {
            vec![
                key.into(),
                second.into(),
                params.identifiers.clone().into(),
                emails.to_vec().into(),
            ]
        },
    )?;
    Ok(values.iter().map(|v| v.as_i64().unwrap_or(0)).collect())
}
