//! Queries of one value each, run together: the verification's checks, the
//! mention counts and the preview's counts read without writing in between,
//! and a statement per query cost more than the counting itself for a small
//! subject. Each value is a subquery of one statement per table owner and
//! parameters, run as that owner, so that each table is still read as its
//! owner and with the parameters of its own step or check.

use pgrx::datum::DatumWithOid;
use pgrx::pg_sys;
use serde_json::Value;

use crate::error::LcResult;
use crate::privilege;
use crate::spi;

/// One value to read: a `jsonb` expression (a scalar subquery) over the
/// table's rows, with the key (`$1`) and second parameter (`$2`) of its step.
struct Item<'a> {
    table: u32,
    key: &'a str,
    second: Option<&'a str>,
    expr: String,
}

#[derive(Default)]
pub struct Batch<'a> {
    items: Vec<Item<'a>>,
}

impl<'a> Batch<'a> {
    pub fn new() -> Self {
        Batch { items: Vec::new() }
    }

    /// Add `expr` (a `jsonb` expression, its own subquery) read from
    /// `table` with the parameters `key` and `second`; returns its index
    /// among the results.
    pub fn add(
        &mut self,
        table: u32,
        key: &'a str,
        second: Option<&'a str>,
        expr: String,
    ) -> usize {
        self.items.push(Item {
            table,
            key,
            second,
            expr,
        });
        self.items.len() - 1
    }

    /// `(SELECT pg_catalog.count(*) FROM ...)` as `jsonb`.
    pub fn add_count(
        &mut self,
        table: u32,
        key: &'a str,
        second: Option<&'a str>,
        count_sql: &str,
    ) -> usize {
        self.add(
            table,
            key,
            second,
            format!("pg_catalog.to_jsonb(({count_sql}))"),
        )
    }

    /// Every value, in the order added. `owner_of` names each table's owner;
    /// `args` makes a statement's parameters from its key and second
    /// parameter.
    pub fn run(
        self,
        mut owner_of: impl FnMut(u32) -> LcResult<pg_sys::Oid>,
        args: impl for<'x> Fn(&'x str, Option<&'x str>) -> Vec<DatumWithOid<'x>>,
    ) -> LcResult<Vec<Value>> {
        type Group<'g> = (pg_sys::Oid, &'g str, Option<&'g str>, Vec<usize>);
        let mut groups: Vec<Group<'_>> = Vec::new();
        for (i, item) in self.items.iter().enumerate() {
            let owner = owner_of(item.table)?;
            match groups
                .iter_mut()
                .find(|(o, k, s, _)| *o == owner && *k == item.key && *s == item.second)
            {
                Some((_, _, _, members)) => members.push(i),
                None => groups.push((owner, item.key, item.second, vec![i])),
            }
        }
        let mut values = vec![Value::Null; self.items.len()];
        for (owner, key, second, members) in groups {
            let parts: Vec<&str> = members
                .iter()
                .map(|&i| self.items[i].expr.as_str())
                .collect();
            let sql = format!(
                "SELECT pg_catalog.to_jsonb(ARRAY[{}]::pg_catalog.jsonb[])",
                parts.join(", ")
            );
            let v = privilege::as_role(owner, || spi::json(&sql, &args(key, second)))?
                .unwrap_or(Value::Null);
            for (j, &i) in members.iter().enumerate() {
                values[i] = v[j].clone();
            }
        }
        Ok(values)
    }
}
