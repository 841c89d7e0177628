//! `audit`: what the hash chain costs: `lifecycle.record_event()` against a
//! plain INSERT into an unchained table of the same shape and indexes.

use std::time::Instant;

use anyhow::Result;
use serde_json::json;

use crate::pg::{batch, describe};
use crate::report::Ratio;
use crate::rounds::{pgbench_rounds, PgbenchSpec};
use crate::{Ctx, Outcome};

pub const DATABASE: &str = "lc_bench_audit";

const SCHEMA: &str = include_str!("../sql/audit_schema.sql");
const RECORD_EVENT: &str = include_str!("../sql/audit_record_event.pgbench");
const PLAIN_INSERT: &str = include_str!("../sql/audit_plain_insert.pgbench");

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    println!();
    println!("== audit ==");
    let client = ctx
        .server
        .fresh_database_with_extension(DATABASE, ctx.synchronous_commit)
        .await?;
    batch(&client, SCHEMA, "creating the baseline table").await?;

    let variants = vec![
        (
            "record_event",
            ctx.script("audit_record_event.pgbench", RECORD_EVENT)?,
        ),
        (
            "plain",
            ctx.script("audit_plain_insert.pgbench", PLAIN_INSERT)?,
        ),
    ];
    let m = pgbench_rounds(
        ctx,
        PgbenchSpec {
            key: "record_event",
            title: "audit: lifecycle.record_event(...) vs plain INSERT into an unchained table",
            database: DATABASE,
            clients: 8,
            threads: 2,
            variants,
            ratios: vec![Ratio::new("record_event", "plain", Some(0.5))],
        },
    )
    .await?;

    let events: i64 = client
        .query_one("SELECT count(*) FROM lifecycle.audit_log", &[])
        .await?
        .get(0);
    let plain_rows: i64 = client
        .query_one("SELECT count(*) FROM bench.audit_plain", &[])
        .await?
        .get(0);
    // The chain heads: one row per chain, updated by every event.
    let heads = client
        .query_one(
            "SELECT count(*), pg_relation_size('lifecycle.audit_chains') / 8192 \
               FROM lifecycle.audit_chains",
            &[],
        )
        .await?;
    let (head_rows, head_pages): (i64, i64) = (heads.get(0), heads.get(1));
    let t = Instant::now();
    let verify = client
        .query_one(
            "SELECT ok, checked, first_bad_id FROM lifecycle.verify_audit_log()",
            &[],
        )
        .await;
    let verify_secs = t.elapsed().as_secs_f64();
    let (ok, checked, first_bad, check_failed) = match verify {
        Ok(row) => {
            let ok: bool = row.get(0);
            let checked: i64 = row.get(1);
            let first_bad: Option<i64> = row.get(2);
            let failed = (!ok).then(|| {
                format!("lifecycle.verify_audit_log() is not ok: first bad id {first_bad:?}")
            });
            (ok, checked, first_bad, failed)
        }
        Err(e) => (
            false,
            0,
            None,
            Some(format!(
                "lifecycle.verify_audit_log() failed: {}",
                describe(&e)
            )),
        ),
    };

    m.print();
    println!("  rows written: lifecycle.audit_log {events}, bench.audit_plain {plain_rows}");
    println!("  lifecycle.audit_chains after the run: {head_rows} rows in {head_pages} pages");
    println!(
        "  lifecycle.verify_audit_log(): ok = {ok}, checked = {checked}, first_bad_id = {} ({verify_secs:.1} s)",
        first_bad.map_or("NULL".to_string(), |b| b.to_string())
    );
    if let Some(f) = &check_failed {
        println!("  CHECK FAILED: {f}");
    }
    Ok(Outcome {
        name: "audit",
        measurements: vec![m],
        extra: json!({
            "rows_written": { "audit_log": events, "audit_plain": plain_rows },
            "audit_chains_after_run": { "rows": head_rows, "pages": head_pages },
            "verify_audit_log": {
                "ok": ok,
                "checked": checked,
                "first_bad_id": first_bad,
                "seconds": verify_secs,
            },
        }),
        check_failed,
    })
}
