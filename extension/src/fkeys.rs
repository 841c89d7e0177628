//! Foreign keys, read from `pg_constraint`: the order in which erasure
//! removes rows, and which rows elsewhere point at rows it removes. Erasure
//! never relies on `ON DELETE CASCADE`; it follows these edges itself. The
//! order itself is computed by [`lifecycle_core::order::delete_order`].

use pgrx::pg_sys;

use crate::error::LcResult;

pub use lifecycle_core::order::delete_order;

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
