//! `erasure`: what erasing one user costs.
//!
//! One "heavy" user owning about `--erasure-rows` rows across the demo tables
//! (`app.generate_heavy_user`) is erased, inside a transaction that is rolled
//! back so that the same user can be erased again in the next round. Only the
//! erasure's statements are timed, not the ROLLBACK. Before every sample the
//! tables are vacuumed and a CHECKPOINT is taken (untimed), so that every
//! sample starts from the same state: no dead rows left by the previous
//! sample, and the first change of each page writes a full-page image to the
//! WAL, as an erasure of rows nobody touched lately does.
//!
//! Variants, alternating round by round:
//!
//! * `engine`: `lifecycle.request_erasure(...)` (timed on its own, not part
//!   of the figure) then `lifecycle.run_job(job)`, in the small database
//!   (`--erasure-users-small` users, the data map of sql/demo/register.sql).
//! * `handwritten`: the same erasure written by hand (sql/erasure_handwritten.sql)
//!   in a copy of the small database taken before the data map was
//!   registered: no guard triggers, plain PostgreSQL. The limit.
//! * `handwritten_guarded`: the same statements in the small database, with
//!   the data map registered (its guard and soft-delete triggers fire).
//! * `engine_big`: the engine in the big database (`--erasure-users-big`
//!   users, a heavy user of the same size): does the erasure's cost depend
//!   on the size of the tables?
//!
//! Goals: engine/handwritten time at most 1.5; big/small time at most 1.5.
//!
//! The databases `lifecycle_bench_erasure_<users>` are kept and reused by
//! later runs when they hold the same generated data (a marker table in
//! schema `lifecycle_bench` says so): generating 1,000,000 users takes about
//! half an hour. The extension is dropped and created again, and the data
//! map registered again, on every run, so that a reused database runs the
//! extension as installed now.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

use crate::pg::{batch, describe, is_transient};
use crate::report::{rotated, Measurement, Ratio, Series, Unit};
use crate::{Ctx, Outcome};

const DEMO_SCHEMA: &str = include_str!("../../sql/demo/schema.sql");
const DEMO_GENERATE: &str = include_str!("../../sql/demo/generate.sql");
const DEMO_REGISTER: &str = include_str!("../../sql/demo/register.sql");
const HANDWRITTEN: &str = include_str!("../sql/erasure_handwritten.sql");
const RESIDUE: &str = include_str!("../sql/erasure_residue.sql");
const MARKER: &str = include_str!("../sql/erasure_marker.sql");
const LAST_ADMIN: &str = include_str!("../sql/erasure_last_admin.sql");

/// The request, as a DBA or the control plane would make it, without
/// cooling-off or approval so that the job is due at once.
const REQUEST: &str = "SELECT lifecycle.request_erasure('user', $1, NULL, 'bench', 'benchmark', \
                       cooling_off => interval '0 seconds', requires_approval => false)::text";
const RUN_JOB: &str = "SELECT lifecycle.run_job($1::uuid)::text";
/// The job row after `run_job`, for the warm-up's check (to_jsonb: whatever
/// columns the table has).
const JOB_ROW: &str =
    "SELECT (to_jsonb(j) - 'result')::text FROM lifecycle.jobs j WHERE j.id = $1::uuid";

/// Tables an erasure of a demo user writes to; vacuumed before every sample.
const WRITTEN_TABLES: [&str; 11] = [
    "app.users",
    "app.memberships",
    "app.posts",
    "app.comments",
    "app.files",
    "app.sessions",
    "app.api_keys",
    "app.user_settings",
    "app.invites",
    "app.support_tickets",
    "app.activity_log",
];

/// Rough generation speed of `app.generate_demo_data`, for the estimate.
const GENERATE_MS_PER_USER: f64 = 1.8;

pub struct Options {
    /// Rows owned by the heavy user.
    pub rows: u32,
    pub users_small: u32,
    pub users_big: u32,
    /// Generate the data again even when a database could be reused.
    pub rebuild: bool,
}

pub fn database(users: u32) -> String {
    format!("lifecycle_bench_erasure_{users}")
}

pub fn plain_database(users: u32) -> String {
    format!("lifecycle_bench_erasure_{users}_plain")
}

/// Every database this benchmark creates.
pub fn databases(opts: &Options) -> Vec<String> {
    vec![
        database(opts.users_small),
        plain_database(opts.users_small),
        database(opts.users_big),
    ]
}

pub fn check_options(opts: &Options) -> Result<()> {
    if opts.users_small >= opts.users_big {
        bail!(
            "--erasure-users-small ({}) must be smaller than --erasure-users-big ({})",
            opts.users_small,
            opts.users_big
        );
    }
    Ok(())
}

/// md5 of the demo schema and generator: a database generated from other
/// versions of them is not reused.
async fn generator_fingerprint(admin: &Client) -> Result<String> {
    let text = format!("{DEMO_SCHEMA}\n-- generate.sql --\n{DEMO_GENERATE}");
    Ok(admin.query_one("SELECT md5($1)", &[&text]).await?.get(0))
}

/// Whether database `name` holds the demo data for `users` users made by the
/// current generator; `Err(reason)` when not.
async fn reusable(
    ctx: &Ctx,
    admin: &Client,
    name: &str,
    users: u32,
    fingerprint: &str,
) -> Result<std::result::Result<(), String>> {
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1",
            &[&name],
        )
        .await?
        .is_some();
    if !exists {
        return Ok(Err("it does not exist".into()));
    }
    let client = ctx.server.connect(name).await?;
    let has_marker: bool = client
        .query_one(
            "SELECT to_regclass('lifecycle_bench.erasure_data') IS NOT NULL",
            &[],
        )
        .await?
        .get(0);
    if !has_marker {
        return Ok(Err("it has no complete data (no marker)".into()));
    }
    let row = client
        .query_opt(
            "SELECT users, generator_md5 FROM lifecycle_bench.erasure_data \
              ORDER BY finished_at DESC LIMIT 1",
            &[],
        )
        .await?;
    Ok(match row {
        None => Err("it has no complete data (empty marker)".into()),
        Some(r) => {
            let (u, md5): (i32, String) = (r.get(0), r.get(1));
            if i64::from(u) != i64::from(users) {
                Err(format!("it holds {u} users, not {users}"))
            } else if md5 != fingerprint {
                Err("sql/demo/schema.sql or generate.sql changed since it was generated".into())
            } else {
                Ok(())
            }
        }
    })
}

/// Rough duration of the benchmark in seconds, and what it will build.
pub async fn estimate(ctx: &Ctx, opts: &Options) -> Result<(u32, Vec<String>)> {
    let admin = ctx.server.connect_admin().await?;
    let fingerprint = generator_fingerprint(&admin).await?;
    let mut notes = Vec::new();
    let mut secs = 0.0;
    for users in [opts.users_small, opts.users_big] {
        let name = database(users);
        let reuse = if opts.rebuild {
            Err("--erasure-rebuild".to_string())
        } else {
            reusable(ctx, &admin, &name, users, &fingerprint).await?
        };
        match reuse {
            Ok(()) => notes.push(format!("reuses {name}")),
            Err(why) => {
                let s = f64::from(users) * GENERATE_MS_PER_USER / 1000.0 * 1.3 + 10.0;
                secs += s;
                notes.push(format!(
                    "builds {name} ({why}): about {} min",
                    (s / 60.0).ceil()
                ));
            }
        }
    }
    // 4 variants, warm-up + rounds; per sample: vacuum, checkpoint, erasure.
    let per_sample = 1.0 + f64::from(opts.rows) / 50_000.0;
    secs += 4.0 * f64::from(ctx.rounds + 1) * per_sample;
    Ok((secs as u32, notes))
}

/// A prepared benchmark database.
struct Db {
    name: String,
    users: u32,
    heavy_user: i64,
    heavy_email: String,
    heavy_name: String,
    owned: Vec<(String, i64)>,
    owned_total: i64,
    reused: bool,
    demoted_in: Vec<String>,
    setup_seconds: f64,
    size: String,
}

impl Db {
    fn to_json(&self) -> Value {
        let owned: serde_json::Map<String, Value> = self
            .owned
            .iter()
            .map(|(t, n)| (t.clone(), json!(n)))
            .collect();
        json!({
            "database": self.name,
            "users": self.users,
            "reused": self.reused,
            "setup_seconds": self.setup_seconds,
            "size": self.size,
            "heavy_user": self.heavy_user,
            "heavy_user_rows": self.owned_total,
            "heavy_user_owned_rows": owned,
            "made_member_in_workspaces": self.demoted_in,
        })
    }
}

/// Build or reuse database `lifecycle_bench_erasure_<users>` with a heavy
/// user of `opts.rows` rows; when `plain_copy` is given, copy it under that
/// name before the data map is registered. Leaves the extension freshly
/// created and the demo data map registered.
async fn prepare(
    ctx: &Ctx,
    opts: &Options,
    users: u32,
    fingerprint: &str,
    plain_copy: Option<&str>,
) -> Result<Db> {
    let t0 = Instant::now();
    let name = database(users);
    let admin = ctx.server.connect_admin().await?;
    let reuse = if opts.rebuild {
        Err("--erasure-rebuild".to_string())
    } else {
        reusable(ctx, &admin, &name, users, fingerprint).await?
    };
    let mut generated = false;
    let reused = reuse.is_ok();
    let client = match reuse {
        Ok(()) => {
            println!("  {name}: reusing the demo data ({users} users)");
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {name} SET synchronous_commit = {}",
                    ctx.synchronous_commit
                ))
                .await
                .map_err(|e| anyhow!("configuring database {name}: {}", describe(&e)))?;
            let client = ctx.server.connect(&name).await?;
            batch(
                &client,
                "DROP EXTENSION IF EXISTS lifecycle CASCADE",
                "dropping the extension (it is created again below)",
            )
            .await?;
            client
        }
        Err(why) => {
            println!(
                "  {name}: generating {users} users ({why}); about {:.0} min",
                (f64::from(users) * GENERATE_MS_PER_USER / 60_000.0).max(0.1)
            );
            ctx.server
                .recreate_database(&name, ctx.synchronous_commit)
                .await?;
            let client = ctx.server.connect(&name).await?;
            batch(&client, DEMO_SCHEMA, "creating the demo schema").await?;
            batch(&client, DEMO_GENERATE, "creating the demo data generator").await?;
            batch(&client, MARKER, "creating the marker tables").await?;
            let tg = Instant::now();
            let counts: String = client
                .query_one(
                    "SELECT app.generate_demo_data($1)::text",
                    &[&(users as i32)],
                )
                .await
                .map_err(|e| anyhow!("generating the demo data: {}", describe(&e)))?
                .get(0);
            let took = tg.elapsed().as_secs_f64();
            client
                .execute(
                    "INSERT INTO lifecycle_bench.erasure_data (users, generator_md5, generated_in) \
                     VALUES ($1, $2, make_interval(secs => $3))",
                    &[&(users as i32), &fingerprint, &took],
                )
                .await?;
            println!("  {name}: demo data in {took:.0} s: {counts}");
            generated = true;
            client
        }
    };

    // The heavy user.
    let heavy: Option<i64> = client
        .query_opt(
            "SELECT user_id FROM lifecycle_bench.heavy_users WHERE rows_total = $1",
            &[&(opts.rows as i32)],
        )
        .await?
        .map(|r| r.get(0));
    let heavy_user = match heavy {
        Some(id) => id,
        None => {
            let th = Instant::now();
            let id: i64 = client
                .query_one("SELECT app.generate_heavy_user($1)", &[&(opts.rows as i32)])
                .await
                .map_err(|e| anyhow!("generating the heavy user: {}", describe(&e)))?
                .get(0);
            client
                .execute(
                    "INSERT INTO lifecycle_bench.heavy_users (rows_total, user_id) VALUES ($1, $2)",
                    &[&(opts.rows as i32), &id],
                )
                .await?;
            println!(
                "  {name}: heavy user {id} ({} rows) generated in {:.1} s",
                opts.rows,
                th.elapsed().as_secs_f64()
            );
            generated = true;
            id
        }
    };

    // Erasure refuses the last admin of a workspace: make the heavy user a
    // plain member wherever they are the only owner or admin.
    let demoted_in: Vec<String> = client
        .query(LAST_ADMIN, &[&heavy_user])
        .await
        .map_err(|e| {
            anyhow!(
                "looking for workspaces without another admin: {}",
                describe(&e)
            )
        })?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if !demoted_in.is_empty() {
        client
            .execute(
                "UPDATE app.memberships SET role = 'member' \
                  WHERE user_id = $1 AND workspace_id::text = ANY($2)",
                &[&heavy_user, &demoted_in],
            )
            .await?;
        println!(
            "  {name}: heavy user {heavy_user} was the only admin of {} workspace(s); made a plain member there",
            demoted_in.len()
        );
    }

    if generated {
        let tv = Instant::now();
        batch(&client, "VACUUM (ANALYZE)", "VACUUM ANALYZE").await?;
        println!(
            "  {name}: VACUUM ANALYZE in {:.0} s",
            tv.elapsed().as_secs_f64()
        );
    }

    let row = client
        .query_one(
            "SELECT email, name FROM app.users WHERE id = $1",
            &[&heavy_user],
        )
        .await?;
    let (heavy_email, heavy_name): (String, String) = (row.get(0), row.get(1));
    let owned: Vec<(String, i64)> = client
        .query(
            "SELECT table_name, rows FROM app.owned_rows($1) ORDER BY 1",
            &[&heavy_user],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let owned_total = owned.iter().map(|(_, n)| n).sum();

    if let Some(copy) = plain_copy {
        drop(client);
        copy_database(ctx, &name, copy).await?;
        println!("  {copy}: copy of {name} without the extension (the hand-written baseline)");
    }

    let client = ctx.server.connect(&name).await?;
    batch(
        &client,
        "CREATE EXTENSION lifecycle",
        "CREATE EXTENSION lifecycle",
    )
    .await?;
    batch(
        &client,
        DEMO_REGISTER,
        "registering the demo data map (sql/demo/register.sql)",
    )
    .await?;
    let size: String = client
        .query_one(
            "SELECT pg_size_pretty(pg_database_size(current_database()))",
            &[],
        )
        .await?
        .get(0);
    Ok(Db {
        name,
        users,
        heavy_user,
        heavy_email,
        heavy_name,
        owned,
        owned_total,
        reused,
        demoted_in,
        setup_seconds: t0.elapsed().as_secs_f64(),
        size,
    })
}

/// `CREATE DATABASE to TEMPLATE from`, waiting for the sessions of `from`
/// to go away.
async fn copy_database(ctx: &Ctx, from: &str, to: &str) -> Result<()> {
    let admin = ctx.server.connect_admin().await?;
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {to} WITH (FORCE)"))
        .await
        .map_err(|e| anyhow!("dropping database {to}: {}", describe(&e)))?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        match admin
            .batch_execute(&format!("CREATE DATABASE {to} TEMPLATE {from}"))
            .await
        {
            Ok(()) => break,
            Err(e) if attempt < 20 && e.code() == Some(&SqlState::OBJECT_IN_USE) => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => bail!("copying database {from} to {to}: {}", describe(&e)),
        }
    }
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {to} SET synchronous_commit = {}",
            ctx.synchronous_commit
        ))
        .await
        .map_err(|e| anyhow!("configuring database {to}: {}", describe(&e)))?;
    Ok(())
}

/// The hand-written statements, without comments; each with a short label.
fn handwritten_statements() -> Vec<(String, String)> {
    let text: String = HANDWRITTEN
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty())
        .map(|s| (statement_label(&s), s))
        .collect()
}

/// "delete app.files", "update app.users", ...
fn statement_label(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let verb = words.first().copied().unwrap_or("").to_lowercase();
    let table = match verb.as_str() {
        "delete" => words.get(2),
        "update" => words.get(1),
        _ => None,
    };
    match table {
        Some(t) => format!("{verb} {t}"),
        None => sql.chars().take(40).collect(),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Engine,
    Handwritten,
}

/// One timed erasure.
struct Sample {
    /// VACUUM and CHECKPOINT before the sample (untimed).
    prep_ms: f64,
    /// `request_erasure` (engine only).
    request_ms: Option<f64>,
    /// `run_job`, or the hand-written statements together.
    erase_ms: f64,
    /// Rows per hand-written statement.
    counts: Vec<u64>,
    receipt: Option<Value>,
    job: Option<Value>,
    residue: Option<Value>,
}

/// A connection to one benchmark database with its statements prepared;
/// reconnects when the server went through a restart (an extension
/// reinstall).
struct Session<'a> {
    ctx: &'a Ctx,
    db: String,
    client: Client,
    /// request_erasure, run_job, the job row; `Err` when the installed
    /// extension has no erasure engine.
    engine: std::result::Result<(Statement, Statement, Statement), String>,
    handwritten: Vec<Statement>,
    residue: Statement,
    vacuum: String,
}

impl<'a> Session<'a> {
    async fn open(ctx: &'a Ctx, db: &str, with_engine: bool) -> Result<Session<'a>> {
        let client = ctx.server.connect(db).await?;
        let engine = if with_engine {
            let prepared = async {
                Ok::<_, tokio_postgres::Error>((
                    client.prepare_typed(REQUEST, &[Type::TEXT]).await?,
                    client.prepare_typed(RUN_JOB, &[Type::TEXT]).await?,
                    client.prepare_typed(JOB_ROW, &[Type::TEXT]).await?,
                ))
            }
            .await;
            prepared.map_err(|e| describe(&e))
        } else {
            Err("not used in this database".into())
        };
        let mut handwritten = Vec::new();
        for (label, sql) in handwritten_statements() {
            handwritten.push(
                client
                    .prepare_typed(&sql, &[Type::INT8])
                    .await
                    .map_err(|e| anyhow!("preparing {label}: {}", describe(&e)))?,
            );
        }
        let residue = client
            .prepare_typed(RESIDUE, &[Type::INT8, Type::TEXT, Type::TEXT])
            .await
            .map_err(|e| anyhow!("preparing the residue query: {}", describe(&e)))?;
        // The lifecycle tables the engine writes to (jobs, audit log, ...).
        let lifecycle: Vec<String> = client
            .query(
                "SELECT c.oid::regclass::text FROM pg_catalog.pg_class c \
                  WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'lifecycle') \
                    AND c.relkind = 'r' ORDER BY 1",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let vacuum = format!(
            "VACUUM {}",
            WRITTEN_TABLES
                .iter()
                .map(|t| t.to_string())
                .chain(lifecycle)
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(Session {
            ctx,
            db: db.to_string(),
            client,
            engine,
            handwritten,
            residue,
            vacuum,
        })
    }

    async fn sample(&mut self, kind: Kind, db: &Db, check: bool) -> Result<Sample> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_sample(kind, db, check).await {
                Ok(s) => return Ok(s),
                Err(e) if attempt < 10 && is_transient(&format!("{e:#} {e:?}")) => {
                    eprintln!("  {} {kind:?}: {e:#}; reconnecting", self.db);
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    let with_engine = self.engine.is_ok();
                    *self = Session::open(self.ctx, &self.db.clone(), with_engine).await?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_sample(&self, kind: Kind, db: &Db, check: bool) -> Result<Sample> {
        let c = &self.client;
        let t = Instant::now();
        c.batch_execute(&self.vacuum)
            .await
            .map_err(|e| anyhow!("VACUUM: {}", describe(&e)))?;
        c.batch_execute("CHECKPOINT")
            .await
            .map_err(|e| anyhow!("CHECKPOINT: {}", describe(&e)))?;
        c.batch_execute("BEGIN")
            .await
            .map_err(|e| anyhow!("BEGIN: {}", describe(&e)))?;
        let prep_ms = t.elapsed().as_secs_f64() * 1000.0;
        let r = self.erase(kind, db, check).await;
        let rollback = c.batch_execute("ROLLBACK").await;
        let mut s = r?;
        rollback.map_err(|e| anyhow!("ROLLBACK: {}", describe(&e)))?;
        s.prep_ms = prep_ms;
        Ok(s)
    }

    /// The erasure inside the open transaction; then, when `check`, what
    /// is left of the user.
    async fn erase(&self, kind: Kind, db: &Db, check: bool) -> Result<Sample> {
        let c = &self.client;
        let mut s = Sample {
            prep_ms: 0.0,
            request_ms: None,
            erase_ms: 0.0,
            counts: Vec::new(),
            receipt: None,
            job: None,
            residue: None,
        };
        match kind {
            Kind::Engine => {
                let (request, run, job_row) = self
                    .engine
                    .as_ref()
                    .map_err(|e| anyhow!("the erasure engine is not available: {e}"))?;
                let user = db.heavy_user.to_string();
                let t0 = Instant::now();
                let job: String = c
                    .query_one(request, &[&user])
                    .await
                    .map_err(|e| anyhow!("lifecycle.request_erasure: {}", describe(&e)))?
                    .get(0);
                let t1 = Instant::now();
                let receipt: Option<String> = c
                    .query_one(run, &[&job])
                    .await
                    .map_err(|e| anyhow!("lifecycle.run_job: {}", describe(&e)))?
                    .get(0);
                let t2 = Instant::now();
                s.request_ms = Some((t1 - t0).as_secs_f64() * 1000.0);
                s.erase_ms = (t2 - t1).as_secs_f64() * 1000.0;
                if check {
                    s.receipt =
                        receipt.map(|r| serde_json::from_str(&r).unwrap_or(Value::String(r)));
                    s.job = match c.query_opt(job_row, &[&job]).await {
                        Ok(Some(row)) => {
                            let text: String = row.get(0);
                            Some(serde_json::from_str(&text).unwrap_or(Value::String(text)))
                        }
                        Ok(None) => Some(json!("no such job row")),
                        Err(e) => Some(json!(format!("reading the job row: {}", describe(&e)))),
                    };
                }
            }
            Kind::Handwritten => {
                let t0 = Instant::now();
                for st in &self.handwritten {
                    let n = c
                        .execute(st, &[&db.heavy_user])
                        .await
                        .map_err(|e| anyhow!("hand-written erasure: {}", describe(&e)))?;
                    s.counts.push(n);
                }
                s.erase_ms = t0.elapsed().as_secs_f64() * 1000.0;
            }
        }
        if check {
            let text: String = c
                .query_one(
                    &self.residue,
                    &[&db.heavy_user, &db.heavy_email, &db.heavy_name],
                )
                .await
                .map_err(|e| anyhow!("reading what is left of the user: {}", describe(&e)))?
                .get(0);
            s.residue = Some(serde_json::from_str(&text)?);
        }
        Ok(s)
    }
}

/// One timed variant: which session, which kind, which database.
struct Variant {
    name: &'static str,
    session: usize,
    kind: Kind,
    db: usize,
}

fn truncated(v: &Value, max: usize) -> String {
    let s = v.to_string();
    if s.chars().count() <= max {
        s
    } else {
        format!("{}...", s.chars().take(max).collect::<String>())
    }
}

pub async fn run(ctx: &Ctx, opts: &Options) -> Result<Outcome> {
    println!();
    println!("== erasure ==");
    check_options(opts)?;
    let small_name = database(opts.users_small);
    let plain_name = plain_database(opts.users_small);
    let big_name = database(opts.users_big);
    println!(
        "  engine:              lifecycle.request_erasure('user', <id>, NULL, ..., cooling_off => '0 seconds', \
         requires_approval => false) (timed apart), then lifecycle.run_job(<job>) (the figure), in {small_name} and {big_name}"
    );
    println!(
        "  handwritten:         bench/sql/erasure_handwritten.sql in {plain_name}, a copy of {small_name} taken \
         before the data map was registered: no guard triggers (the limit)"
    );
    println!(
        "  handwritten_guarded: the same statements in {small_name}, data map registered (guard and soft-delete triggers fire)"
    );
    println!(
        "  engine-only work (in the engine's figure): job bookkeeping, receipt and its verification re-scan, audit \
         events, redaction of the user's audit-log events, one external step per stored file to delete"
    );
    println!(
        "  each sample: VACUUM of the written tables and CHECKPOINT (untimed); BEGIN; erasure (timed); ROLLBACK (untimed)"
    );

    let admin = ctx.server.connect_admin().await?;
    let fingerprint = generator_fingerprint(&admin).await?;
    drop(admin);
    let small = prepare(ctx, opts, opts.users_small, &fingerprint, Some(&plain_name)).await?;
    let big = prepare(ctx, opts, opts.users_big, &fingerprint, None).await?;
    for db in [&small, &big] {
        let owned: Vec<String> = db
            .owned
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        println!(
            "  {}: {} users, {}, heavy user {} owns {} rows ({}); ready in {:.0} s",
            db.name,
            db.users,
            db.size,
            db.heavy_user,
            db.owned_total,
            owned.join(", "),
            db.setup_seconds
        );
    }
    if small.owned_total != big.owned_total {
        println!(
            "  note: the heavy users differ in size ({} and {} rows): the generator spreads them over \
             the oldest workspaces, which differ between the databases",
            small.owned_total, big.owned_total
        );
    }

    let mut sessions = [
        Session::open(ctx, &small_name, true).await?,
        Session::open(ctx, &big_name, true).await?,
        Session::open(ctx, &plain_name, false).await?,
    ];
    let dbs = [&small, &big];
    let engine_missing = match (&sessions[0].engine, &sessions[1].engine) {
        (Ok(_), Ok(_)) => None,
        (Err(e), _) | (_, Err(e)) => Some(e.clone()),
    };
    let mut variants = vec![
        Variant {
            name: "engine",
            session: 0,
            kind: Kind::Engine,
            db: 0,
        },
        Variant {
            name: "engine_big",
            session: 1,
            kind: Kind::Engine,
            db: 1,
        },
        Variant {
            name: "handwritten",
            session: 2,
            kind: Kind::Handwritten,
            db: 0,
        },
        Variant {
            name: "handwritten_guarded",
            session: 0,
            kind: Kind::Handwritten,
            db: 0,
        },
    ];
    let mut check_failed: Option<String> = None;
    if let Some(e) = &engine_missing {
        println!();
        println!("  ENGINE NOT AVAILABLE: {e}");
        println!("  measuring the hand-written baselines only");
        variants.retain(|v| v.kind != Kind::Engine);
        check_failed = Some(format!(
            "the erasure engine is not available in the installed extension: {e}"
        ));
    }

    // Warm-up: one untimed sample of each variant, with the checks.
    println!();
    println!(
        "erasure: warm-up (one sample of each variant, untimed, checks what is left of the user)"
    );
    let labels: Vec<String> = handwritten_statements()
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    let mut residues: Vec<(&'static str, Value)> = Vec::new();
    let mut warmup = serde_json::Map::new();
    for v in &variants {
        let s = sessions[v.session]
            .sample(v.kind, dbs[v.db], true)
            .await
            .with_context(|| format!("erasure warm-up, variant {}", v.name))?;
        let mut line = format!("  warm-up  {:<20} {:>9.1} ms", v.name, s.erase_ms);
        if let Some(r) = s.request_ms {
            line.push_str(&format!(", request_erasure {r:.1} ms"));
        }
        line.push_str(&format!(
            "; untimed VACUUM + CHECKPOINT before it {:.0} ms",
            s.prep_ms
        ));
        println!("{line}");
        let mut w = json!({ "ms": s.erase_ms, "request_ms": s.request_ms, "vacuum_checkpoint_ms": s.prep_ms });
        if v.kind == Kind::Handwritten {
            let counts: Vec<String> = labels
                .iter()
                .zip(&s.counts)
                .map(|(l, n)| format!("{l} {n}"))
                .collect();
            println!("           rows: {}", counts.join(", "));
            w["rows"] = json!(labels
                .iter()
                .zip(&s.counts)
                .map(|(l, n)| (l.clone(), json!(n)))
                .collect::<serde_json::Map<_, _>>());
        }
        if let Some(job) = &s.job {
            let status = job.get("status").and_then(Value::as_str).unwrap_or("?");
            let error = job.get("error").filter(|e| !e.is_null());
            println!(
                "           job: status {status}, error {}",
                error.map_or("none".to_string(), |e| truncated(e, 200))
            );
            w["job"] = job.clone();
            // 'processing' is fine: the job waits for its steps outside the
            // database (stored files to delete), which the bench does not run.
            if (!matches!(status, "completed" | "processing") || error.is_some())
                && check_failed.is_none()
            {
                check_failed = Some(format!(
                    "{}: the job did not run through: {}",
                    v.name,
                    truncated(job, 400)
                ));
            }
        }
        if let Some(receipt) = &s.receipt {
            println!("           receipt: {}", truncated(receipt, 600));
            w["receipt"] = receipt.clone();
            let verified = receipt
                .pointer("/result/verification/ok")
                .or_else(|| receipt.pointer("/verification/ok"))
                .and_then(Value::as_bool);
            if verified == Some(false) && check_failed.is_none() {
                check_failed = Some(format!(
                    "{}: the receipt's verification is not ok: {}",
                    v.name,
                    truncated(receipt, 600)
                ));
            }
        }
        if let Some(residue) = &s.residue {
            println!("           left of the user: {}", truncated(residue, 600));
            w["left_of_the_user"] = residue.clone();
            residues.push((v.name, residue.clone()));
        }
        warmup.insert(v.name.to_string(), w);
    }
    // What is left must not depend on the variant, except for the owned
    // rows that depend on the database (engine_big erases another user).
    let reference = residues
        .iter()
        .find(|(n, _)| *n == "handwritten")
        .map(|(_, r)| r.clone());
    if let Some(reference) = &reference {
        let mut residue_differs = false;
        for (name, r) in &residues {
            let comparable = |v: &Value| {
                let mut v = v.clone();
                if let Some(o) = v.as_object_mut() {
                    o.remove("owned_rows");
                    if let Some(Value::Object(u)) = o.get_mut("users_row") {
                        u.remove("email");
                    }
                }
                v
            };
            let same = if *name == "engine_big" {
                comparable(r) == comparable(reference)
            } else {
                r == reference
            };
            if !same {
                residue_differs = true;
                println!("  CHECK: {name} leaves something else of the user than the hand-written erasure");
            }
            if !same && check_failed.is_none() {
                check_failed = Some(format!(
                    "{name} leaves something else of the user than the hand-written erasure: {} vs {}",
                    truncated(r, 600),
                    truncated(reference, 600)
                ));
            }
        }
        if !residue_differs {
            println!(
                "  check: every variant leaves the same of the user ({} variants compared)",
                residues.len()
            );
        }
    }

    // Rounds.
    let mut series: Vec<Series> = variants.iter().map(|v| Series::new(v.name)).collect();
    let mut request_series = vec![Series::new("small"), Series::new("big")];
    let order: Vec<usize> = (0..variants.len()).collect();
    println!();
    println!("erasure: {} rounds, variants alternating", ctx.rounds);
    for round in 0..ctx.rounds {
        let mut line = Vec::new();
        for i in rotated(&order, round as usize) {
            let v = &variants[i];
            let s = sessions[v.session]
                .sample(v.kind, dbs[v.db], false)
                .await
                .with_context(|| format!("erasure round {}, variant {}", round + 1, v.name))?;
            series[i].samples.push(s.erase_ms);
            if let Some(r) = s.request_ms {
                request_series[v.db].samples.push(r);
            }
            line.push(format!("{} {:.0}", v.name, s.erase_ms));
        }
        println!(
            "  round {}/{}  ms: {}",
            round + 1,
            ctx.rounds,
            line.join(", ")
        );
    }

    let find = |name: &str| -> Series {
        let mut s = Series::new(name);
        if let Some(i) = variants.iter().position(|v| v.name == name) {
            s.samples = series[i].samples.clone();
        }
        s
    };
    let method = format!(
        "BEGIN; erasure timed by the client; ROLLBACK. VACUUM and CHECKPOINT before each sample (untimed). \
         {} rounds, variants alternating, one untimed warm-up each",
        ctx.rounds
    );
    let versus = Measurement {
        key: "engine_vs_handwritten".into(),
        title: format!(
            "erasure: one user owning {} rows in a database of {} users, lifecycle.run_job() vs hand-written \
             statements ({})",
            small.owned_total, small.users, small.name
        ),
        method: format!(
            "{method}; handwritten runs in {plain_name} (no data map, no triggers), handwritten_guarded in {} \
             (data map registered)",
            small.name
        ),
        unit: Unit::Millis,
        rows_per_statement: Some(small.owned_total as u64),
        series: vec![
            find("engine"),
            find("handwritten"),
            find("handwritten_guarded"),
        ],
        ratios: vec![
            Ratio::time("engine", "handwritten", Some(1.5)),
            Ratio::time("engine", "handwritten_guarded", None),
            Ratio::time("handwritten_guarded", "handwritten", None),
        ],
    };
    let mut small_series = find("engine");
    small_series.variant = "small".into();
    let mut big_series = find("engine_big");
    big_series.variant = "big".into();
    let scaling = Measurement {
        key: "big_vs_small".into(),
        title: format!(
            "erasure: lifecycle.run_job() for a user owning ~{} rows, {} users ({}) vs {} users ({})",
            opts.rows, big.users, big.name, small.users, small.name
        ),
        method: method.clone(),
        unit: Unit::Millis,
        rows_per_statement: Some(small.owned_total as u64),
        series: vec![small_series, big_series],
        ratios: vec![Ratio::time("big", "small", Some(1.5))],
    };
    let request = Measurement {
        key: "request_erasure".into(),
        title:
            "erasure: lifecycle.request_erasure() before run_job (not part of the figures above)"
                .into(),
        method,
        unit: Unit::Millis,
        rows_per_statement: None,
        series: request_series,
        ratios: vec![Ratio::time("big", "small", None)],
    };
    versus.print();
    scaling.print();
    request.print();
    if let Some(f) = &check_failed {
        println!("  CHECK FAILED: {f}");
    }
    Ok(Outcome {
        name: "erasure",
        measurements: vec![versus, scaling, request],
        extra: json!({
            "databases": { "small": small.to_json(), "big": big.to_json(), "handwritten": plain_name },
            "handwritten_statements": handwritten_statements().into_iter().map(|(_, s)| s).collect::<Vec<_>>(),
            "engine_available": engine_missing.is_none(),
            "engine_unavailable_reason": engine_missing,
            "warmup": warmup,
        }),
        check_failed,
    })
}
