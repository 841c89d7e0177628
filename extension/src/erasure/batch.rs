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
            let v =
                without_jit(|| privilege::as_role(owner, || spi::json(&sql, &args(key, second))))?
                    .unwrap_or(Value::Null);
            for (j, &i) in members.iter().enumerate() {
                values[i] = v[j].clone();
            }
        }
        Ok(values)
    }
}

/// Run `f` with `jit` off (planning included: PostgreSQL decides on JIT
/// when it plans). A batch's estimated cost is the sum of its parts, each a
/// read through an index: past `jit_above_cost` PostgreSQL would compile
/// the whole statement, which took a second for the preview of a user of
/// 100,000 rows among a million users, several times the reading itself.
fn without_jit<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(std::ffi::c_int);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: pops the level pushed below; on an error this runs
            // while the error unwinds, before PostgreSQL aborts anything.
            unsafe { pg_sys::AtEOXact_GUC(true, self.0) };
        }
    }
    // SAFETY: a new GUC nesting level, and `jit` set in it, as PostgreSQL
    // does for a function's `SET` clause.
    let _restore = unsafe {
        let level = pg_sys::NewGUCNestLevel();
        pg_sys::set_config_option(
            c"jit".as_ptr(),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        Restore(level)
    };
    f()
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    use super::without_jit;

    fn jit() -> Option<String> {
        Spi::get_one::<String>("SELECT pg_catalog.current_setting('jit')").unwrap()
    }

    /// `jit` is off inside, and back as it was after, also after an error.
    #[pg_test]
    fn jit_is_off_for_a_batch_and_restored_after() {
        Spi::run("SET jit = on").unwrap();
        assert_eq!(without_jit(jit).as_deref(), Some("off"));
        assert_eq!(jit().as_deref(), Some("on"));
        let failed = crate::subxact::run(|| without_jit(|| crate::spi::exec("SELECT 1 / 0", &[])));
        assert_eq!(failed.unwrap_err().sqlstate, "22012");
        assert_eq!(jit().as_deref(), Some("on"));
        Spi::run("RESET jit").unwrap();
    }
}
