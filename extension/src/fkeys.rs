//! Foreign keys, read from `pg_constraint`: the order in which erasure
//! removes rows, and which rows elsewhere point at rows it removes. Erasure
//! never relies on `ON DELETE CASCADE`; it follows these edges itself.

use std::collections::{BTreeMap, BTreeSet};

use pgrx::pg_sys;

use crate::error::LcResult;

/// One foreign key: `referencing (cols) -> referenced (refcols)`. Tables are
/// the roots of partition trees (a key declared on a partitioned table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub name: String,
    pub referencing: pg_sys::Oid,
    pub referencing_name: String,
    pub referenced: pg_sys::Oid,
    /// Quoted column names, in key order.
    pub cols: Vec<String>,
    pub refcols: Vec<String>,
    /// Every referencing column is nullable.
    pub nullable: bool,
}

/// Every foreign key that points at one of `relations`.
pub fn referencing(relations: &[pg_sys::Oid]) -> LcResult<Vec<ForeignKey>> {
    let oids: Vec<pg_sys::Oid> = relations.to_vec();
    let rows = crate::spi::json_rows(
        "SELECT jsonb_build_object(\
            'name', c.conname, \
            'referencing', c.conrelid::bigint, \
            'referencing_name', c.conrelid::regclass::text, \
            'referenced', c.confrelid::bigint, \
            'cols', (SELECT jsonb_agg(quote_ident(a.attname) ORDER BY k.i) \
                       FROM unnest(c.conkey) WITH ORDINALITY k(n, i) \
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n), \
            'refcols', (SELECT jsonb_agg(quote_ident(a.attname) ORDER BY k.i) \
                       FROM unnest(c.confkey) WITH ORDINALITY k(n, i) \
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n), \
            'nullable', (SELECT bool_and(NOT a.attnotnull) FROM unnest(c.conkey) k(n) \
                       JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n)) \
           FROM pg_catalog.pg_constraint c \
          WHERE c.contype = 'f' AND c.conparentid = 0 AND c.confrelid = ANY($1) \
          ORDER BY c.conrelid, c.conname",
        &[oids.into()],
    )?;
    Ok(rows.iter().filter_map(parse).collect())
}

fn parse(v: &serde_json::Value) -> Option<ForeignKey> {
    let strings = |k: &str| -> Vec<String> {
        v[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    Some(ForeignKey {
        name: v["name"].as_str()?.to_string(),
        referencing: pg_sys::Oid::from(v["referencing"].as_u64()? as u32),
        referencing_name: v["referencing_name"].as_str()?.to_string(),
        referenced: pg_sys::Oid::from(v["referenced"].as_u64()? as u32),
        cols: strings("cols"),
        refcols: strings("refcols"),
        nullable: v["nullable"].as_bool().unwrap_or(false),
    })
}

/// Order `tables` so that a table comes before every table it references
/// (children before parents): the order in which to delete. Self-references
/// are ignored; tables on a cycle keep their given order after the others.
pub fn delete_order<T: Copy + Ord>(tables: &[T], edges: &[(T, T)]) -> Vec<T> {
    let set: BTreeSet<T> = tables.iter().copied().collect();
    // referenced -> number of tables in the set still referencing it
    let mut waiting: BTreeMap<T, usize> = tables.iter().map(|t| (*t, 0)).collect();
    let mut refs: BTreeMap<T, Vec<T>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (from, to) in edges {
        if from == to || !set.contains(from) || !set.contains(to) || !seen.insert((*from, *to)) {
            continue;
        }
        *waiting.get_mut(to).expect("in set") += 1;
        refs.entry(*from).or_default().push(*to);
    }
    let mut out = Vec::with_capacity(tables.len());
    let mut done = BTreeSet::new();
    loop {
        let next = tables
            .iter()
            .find(|t| !done.contains(*t) && waiting[*t] == 0)
            .copied();
        let Some(t) = next else { break };
        done.insert(t);
        out.push(t);
        for r in refs.get(&t).into_iter().flatten() {
            *waiting.get_mut(r).expect("in set") -= 1;
        }
    }
    out.extend(tables.iter().filter(|t| !done.contains(*t)).copied());
    out
}
