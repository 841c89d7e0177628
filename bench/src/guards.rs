//! `guards`: what the row guard costs on UPDATE and DELETE.
//!
//! Four identical posts tables: `posts_plain` (no guard: the limit),
//! `posts_guarded` (registered with the extension, holds in force on other
//! users), `posts_plpgsql` (the PL/pgSQL trigger a user would write
//! instead, over a holds table with an index) and `posts_floor` (an AFTER
//! row trigger whose condition is never true: what PostgreSQL charges for
//! any row trigger on UPDATE and DELETE, the floor of a row-trigger guard).

use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::json;

use crate::pg::{batch, describe, is_transient, render};
use crate::report::{rotated, Measurement, Ratio, Series, Unit};
use crate::rounds::{pgbench_rounds, PgbenchSpec};
use crate::{Ctx, Outcome};

pub const DATABASE: &str = "lc_bench_guards";

const SCHEMA: &str = include_str!("../sql/guards_schema.sql");
const REGISTER: &str = include_str!("../sql/guards_register.sql");
const UPDATE: &str = include_str!("../sql/guards_update.pgbench");
const DELETE: &str = include_str!("../sql/guards_delete.pgbench");
const BULK_DELETE: &str = include_str!("../sql/guards_bulk_delete.sql");

pub const VARIANTS: [(&str, &str); 4] = [
    ("plain", "posts_plain"),
    ("guarded", "posts_guarded"),
    ("plpgsql", "posts_plpgsql"),
    ("floor", "posts_floor"),
];

/// Variants that must refuse to change a held user's rows.
fn guards(variant: &str) -> bool {
    matches!(variant, "guarded" | "plpgsql")
}

const WORKSPACES: u64 = 1_000;
const HELD_USERS: u64 = 5;
const BULK_ROWS: u64 = 100_000;

fn users(rows: u64) -> u64 {
    (rows / 10).max(1_000)
}

/// Deterministic pseudo-random numbers (a 64-bit LCG), so that runs touch
/// the same ranges.
struct Lcg(u64);

impl Lcg {
    fn next_below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

pub async fn run(ctx: &Ctx) -> Result<Outcome> {
    println!();
    println!("== guards ==");
    let t0 = Instant::now();
    let client = ctx
        .server
        .fresh_database_with_extension(DATABASE, ctx.synchronous_commit)
        .await?;
    let users = users(ctx.rows);
    let vars = [
        ("ROWS", ctx.rows.to_string()),
        ("USERS", users.to_string()),
        ("WORKSPACES", WORKSPACES.to_string()),
        ("HELD_USERS", HELD_USERS.to_string()),
    ];
    batch(&client, &render(SCHEMA, &vars), "building the posts tables").await?;
    batch(
        &client,
        &render(REGISTER, &vars),
        "registering and placing holds",
    )
    .await?;
    for (_, table) in VARIANTS {
        batch(
            &client,
            &format!("VACUUM (ANALYZE) bench.{table}"),
            "vacuuming",
        )
        .await?;
    }
    batch(
        &client,
        "VACUUM (ANALYZE) bench.users, bench.workspaces, bench.legal_holds",
        "vacuuming",
    )
    .await?;
    batch(&client, "CHECKPOINT", "checkpoint").await?;
    let size: String = client
        .query_one(
            "SELECT pg_size_pretty(pg_total_relation_size('bench.posts_plain'))",
            &[],
        )
        .await?
        .get(0);
    let holds: i64 = client
        .query_one(
            "SELECT count(*) FROM lifecycle.legal_holds WHERE active",
            &[],
        )
        .await?
        .get(0);
    println!(
        "  built {} x {} posts ({} each with indexes), {} users in {} workspaces, {} active holds on users outside the hot set, in {:.0} s",
        VARIANTS.len(),
        ctx.rows,
        size,
        users + HELD_USERS,
        WORKSPACES,
        holds,
        t0.elapsed().as_secs_f64()
    );

    let (checks, check_failed) = check_guards(&client, users + 1).await?;

    let mut update_scripts = Vec::new();
    let mut delete_scripts = Vec::new();
    for (variant, table) in VARIANTS {
        let vars = [("TABLE", table.to_string()), ("ROWS", ctx.rows.to_string())];
        update_scripts.push((
            variant,
            ctx.script(&format!("update_{table}.pgbench"), &render(UPDATE, &vars))?,
        ));
        delete_scripts.push((
            variant,
            ctx.script(&format!("delete_{table}.pgbench"), &render(DELETE, &vars))?,
        ));
    }
    let ratios = || {
        vec![
            Ratio::new("guarded", "plain", Some(0.9)),
            Ratio::new("plpgsql", "plain", None),
            Ratio::new("guarded", "plpgsql", Some(1.0)),
            Ratio::new("floor", "plain", None),
            Ratio::new("guarded", "floor", None),
        ]
    };
    let update = pgbench_rounds(
        ctx,
        PgbenchSpec {
            key: "update",
            title: "guards: single-row UPDATE ... SET title = title || '' WHERE id = random",
            database: DATABASE,
            clients: 2,
            threads: 2,
            variants: update_scripts,
            ratios: ratios(),
        },
    )
    .await?;
    // The UPDATE rounds leave each table with a different number of dead
    // row versions and HOT chains (each variant ran at its own speed, and
    // autovacuum may have visited some tables and not others): clean them
    // all before the next measurement, so that no variant inherits more
    // pruning work than another.
    settle(&client).await?;
    let delete = pgbench_rounds(
        ctx,
        PgbenchSpec {
            key: "delete",
            title: "guards: single-row BEGIN; DELETE ... WHERE id = random; ROLLBACK",
            database: DATABASE,
            clients: 2,
            threads: 2,
            variants: delete_scripts,
            ratios: ratios(),
        },
    )
    .await?;
    relayout(&client).await?;
    let bulk = bulk_delete(ctx).await?;

    update.print();
    delete.print();
    for b in &bulk {
        b.print();
    }
    if let Some(f) = &check_failed {
        println!("  CHECK FAILED: {f}");
    }
    Ok(Outcome {
        name: "guards",
        measurements: [update, delete].into_iter().chain(bulk).collect(),
        extra: json!({ "checks": checks, "held_users": HELD_USERS, "users": users, "workspaces": WORKSPACES }),
        check_failed,
    })
}

/// `VACUUM` every posts table and `CHECKPOINT` (untimed), so that the
/// variants start the next measurement from the same state.
async fn settle(client: &tokio_postgres::Client) -> Result<()> {
    let tables: Vec<String> = VARIANTS.iter().map(|(_, t)| format!("bench.{t}")).collect();
    batch(
        client,
        &format!("VACUUM {}", tables.join(", ")),
        "vacuuming between measurements",
    )
    .await?;
    batch(client, "CHECKPOINT", "checkpoint").await
}

/// Rewrite every posts table in primary-key order (`CLUSTER`), `ANALYZE`
/// and `CHECKPOINT` (untimed), so that the bulk DELETEs find the same
/// physical layout and plan in every variant. The single-row UPDATE rounds
/// move each table's rows to other pages in proportion to that variant's
/// speed: afterwards a range of 100,000 ids spanned 6,656 pages of one
/// table and 16,567 of another, which the planner then read with a bitmap
/// scan instead of the index, and the DELETE timed that difference rather
/// than the trigger.
async fn relayout(client: &tokio_postgres::Client) -> Result<()> {
    for (_, t) in VARIANTS {
        batch(
            client,
            &format!("CLUSTER bench.{t} USING {t}_pkey; ANALYZE bench.{t}"),
            "rewriting the tables in key order",
        )
        .await?;
    }
    batch(client, "CHECKPOINT", "checkpoint").await
}

/// Both guarded variants must refuse to change a held user's posts, and the
/// plain and floor tables must not: otherwise the comparison is meaningless.
async fn check_guards(
    client: &tokio_postgres::Client,
    held_user: u64,
) -> Result<(serde_json::Value, Option<String>)> {
    let mut results = serde_json::Map::new();
    let mut failed = None;
    for (variant, table) in VARIANTS {
        for (op, sql) in [
            (
                "delete",
                format!("DELETE FROM bench.{table} WHERE author_id = {held_user}"),
            ),
            (
                "update",
                format!(
                    "UPDATE bench.{table} SET title = title || '' WHERE author_id = {held_user}"
                ),
            ),
        ] {
            client.batch_execute("BEGIN").await?;
            let r = client.execute(sql.as_str(), &[]).await;
            client.batch_execute("ROLLBACK").await?;
            let (refused, text) = match r {
                Ok(n) => (false, format!("changed {n} rows")),
                Err(e) => (true, format!("refused: {}", describe(&e))),
            };
            let expected = guards(variant);
            println!("  check: {op} of a held user's posts in {table}: {text}");
            if refused != expected {
                failed = Some(format!(
                    "{op} of a held user's posts in {table}: expected {}, got: {text}",
                    if expected { "a refusal" } else { "success" }
                ));
            }
            results.insert(format!("{variant}_{op}_held"), json!(text));
        }
    }
    Ok((serde_json::Value::Object(results), failed))
}

/// `BEGIN; DELETE 100,000 unheld rows; ROLLBACK`, timed by the client, in
/// two conditions: right after a CHECKPOINT (the first change of each page
/// writes a full-page image to the WAL, as a bulk delete of rows nobody
/// touched lately does), and the same DELETE again at once (pages hot, no
/// full-page images: the CPU cost of the statement).
async fn bulk_delete(ctx: &Ctx) -> Result<Vec<Measurement>> {
    let method = |what: &str| {
        format!(
            "BEGIN; DELETE FROM <table> WHERE id BETWEEN x AND x+{}; ROLLBACK; DELETE timed by the client {what}; \
             {} rounds x {} per variant, same random x for every variant, variants alternating",
            BULK_ROWS - 1,
            ctx.rounds,
            ctx.bulk_repeats
        )
    };
    println!();
    println!(
        "guards: bulk DELETE of {BULK_ROWS} unheld rows (after a CHECKPOINT, then repeated at once; {} rounds x {} per variant)",
        ctx.rounds, ctx.bulk_repeats
    );
    let mut runner = BulkRunner::connect(ctx).await?;
    let mut rng = Lcg(0x6c69_6665_6379_636c);
    let span = ctx.rows - BULK_ROWS + 1;
    // Warm-up: one of each (loads the guard's caches, the plan, the pages).
    let x = 1 + rng.next_below(span) as i64;
    for (i, (variant, _)) in VARIANTS.iter().enumerate() {
        let cold = runner
            .time(i, x, true)
            .await
            .context("bulk DELETE warm-up")?;
        let warm = runner
            .time(i, x, false)
            .await
            .context("bulk DELETE warm-up")?;
        println!(
            "  warm-up  {variant:<10} {:>8.1} ms after checkpoint, {:>8.1} ms repeated",
            cold.as_secs_f64() * 1000.0,
            warm.as_secs_f64() * 1000.0
        );
    }
    let mut cold_series: Vec<Series> = VARIANTS.iter().map(|(v, _)| Series::new(v)).collect();
    let mut warm_series: Vec<Series> = VARIANTS.iter().map(|(v, _)| Series::new(v)).collect();
    let order: Vec<usize> = (0..VARIANTS.len()).collect();
    for round in 0..ctx.rounds {
        let mut line = Vec::new();
        for rep in 0..ctx.bulk_repeats {
            let x = 1 + rng.next_below(span) as i64;
            for i in rotated(&order, (round * ctx.bulk_repeats + rep) as usize) {
                let cold = runner.time(i, x, true).await?.as_secs_f64() * 1000.0;
                let warm = runner.time(i, x, false).await?.as_secs_f64() * 1000.0;
                cold_series[i].samples.push(cold);
                warm_series[i].samples.push(warm);
                line.push(format!("{} {cold:.0}/{warm:.0}", VARIANTS[i].0));
            }
        }
        println!(
            "  round {}/{}  ms after checkpoint/repeated: {}",
            round + 1,
            ctx.rounds,
            line.join(", ")
        );
    }
    let ratios = || {
        vec![
            Ratio::new("guarded", "plain", Some(0.8)),
            Ratio::new("plpgsql", "plain", None),
            Ratio::new("guarded", "plpgsql", None),
            Ratio::new("floor", "plain", None),
            Ratio::new("guarded", "floor", None),
        ]
    };
    Ok(vec![
        Measurement {
            key: "bulk_delete".into(),
            title: format!(
                "guards: bulk DELETE of {BULK_ROWS} unheld rows, first change of the range after a CHECKPOINT"
            ),
            method: method("after an untimed CHECKPOINT"),
            unit: Unit::Millis,
            rows_per_statement: Some(BULK_ROWS),
            series: cold_series,
            ratios: ratios(),
        },
        Measurement {
            key: "bulk_delete_repeated".into(),
            title: format!(
                "guards: bulk DELETE of {BULK_ROWS} unheld rows, the same DELETE repeated at once (hot pages)"
            ),
            method: method("right after the same DELETE"),
            unit: Unit::Millis,
            rows_per_statement: Some(BULK_ROWS),
            series: warm_series,
            ratios: ratios(),
        },
    ])
}

/// A connection with the bulk DELETEs prepared; reconnects when the
/// server went through a restart (an extension reinstall).
struct BulkRunner<'a> {
    ctx: &'a Ctx,
    client: tokio_postgres::Client,
    statements: Vec<tokio_postgres::Statement>,
}

impl<'a> BulkRunner<'a> {
    async fn connect(ctx: &'a Ctx) -> Result<Self> {
        let client = ctx.server.connect(DATABASE).await?;
        let mut statements = Vec::new();
        for (_, table) in VARIANTS {
            let sql = render(BULK_DELETE, &[("TABLE", table.to_string())]);
            let sql: String = sql
                .lines()
                .filter(|l| !l.trim_start().starts_with("--"))
                .collect::<Vec<_>>()
                .join("\n");
            statements.push(
                client
                    .prepare(&sql)
                    .await
                    .map_err(|e| anyhow!("preparing the bulk DELETE: {}", describe(&e)))?,
            );
        }
        Ok(BulkRunner {
            ctx,
            client,
            statements,
        })
    }

    /// Time one `DELETE` of variant `i` from id `x`, inside a transaction
    /// that is rolled back; after a CHECKPOINT when `checkpoint`.
    async fn time(&mut self, i: usize, x: i64, checkpoint: bool) -> Result<Duration> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let r = if checkpoint {
                self.client
                    .batch_execute("CHECKPOINT")
                    .await
                    .map_err(|e| anyhow!("CHECKPOINT: {}", describe(&e)))
            } else {
                Ok(())
            };
            let r = match r {
                Ok(()) => self.try_time(i, x).await,
                Err(e) => Err(e),
            };
            match r {
                Ok(d) => return Ok(d),
                Err(e) if attempt < 10 && is_transient(&format!("{e:#} {e:?}")) => {
                    eprintln!("  bulk DELETE: {e:#}; reconnecting");
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    *self = BulkRunner::connect(self.ctx).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_time(&self, i: usize, x: i64) -> Result<Duration> {
        let c = &self.client;
        c.batch_execute("BEGIN")
            .await
            .map_err(|e| anyhow!("BEGIN: {}", describe(&e)))?;
        let t = Instant::now();
        let n = c.execute(&self.statements[i], &[&x]).await;
        let elapsed = t.elapsed();
        let rollback = c.batch_execute("ROLLBACK").await;
        let n = n.map_err(|e| anyhow!("bulk DELETE: {}", describe(&e)))?;
        rollback.map_err(|e| anyhow!("ROLLBACK: {}", describe(&e)))?;
        if n != BULK_ROWS {
            return Err(anyhow!(
                "bulk DELETE removed {n} rows, expected {BULK_ROWS}"
            ));
        }
        Ok(elapsed)
    }
}
