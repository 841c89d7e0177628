//! `erasure`: what erasing one user costs, against the same erasure written
//! by hand, for users of several sizes; what the preview costs; and whether
//! the cost depends on the size of the database.
//!
//! For each size in `--erasure-sizes` (default 1,000, 10,000 and 100,000
//! rows), one "heavy" user owning about that many rows across the demo
//! tables (`app.generate_heavy_user`) is erased, inside a transaction that
//! is rolled back so that the same user can be erased again in the next
//! round. Only the erasure's statements are timed, not the ROLLBACK. Before
//! every sample the tables are vacuumed and a CHECKPOINT is taken (untimed),
//! so that every sample starts from the same state: no dead rows left by the
//! previous sample, and the first change of each page writes a full-page
//! image to the WAL, as an erasure of rows nobody touched lately does.
//!
//! Each size has a database of its own, `lifecycle_bench_erasure_<users>_r<rows>`
//! (a copy of `lifecycle_bench_erasure_<users>`, the demo data of
//! `--erasure-users-small` users, plus the one heavy user): the heavy user
//! joins the three oldest workspaces, and the engine reads every row of the
//! user's workspaces (mentions of the user in other people's rows), so two
//! heavy users in one database would each pay for the other's rows.
//!
//! Variants, alternating round by round, for each size `<n>`:
//!
//! * `engine_<n>`: `lifecycle.request_erasure(...)` (timed on its own, not
//!   part of the figure) then `lifecycle.run_job(job)`, data map of
//!   sql/demo/register.sql registered.
//! * `handwritten_<n>`: the same erasure written by hand
//!   (sql/erasure_handwritten.sql) in `..._r<n>_plain`, a copy taken before
//!   the data map was registered: no guard triggers, plain PostgreSQL. The
//!   statements are prepared once and planned on every run.
//! * `handwritten_guarded_<n>`: the same statements where the data map is
//!   registered (its guard and soft-delete triggers fire).
//! * `preview_<n>`: `SELECT lifecycle.preview_erasure('user', id)`, outside
//!   a transaction (it changes nothing), after the same VACUUM and
//!   CHECKPOINT.
//!
//! and in the big database (`--erasure-users-big` users, a heavy user of
//! `--erasure-big-size` rows, default the largest size): `engine_big` and
//! `preview_big`, compared with `engine_<size>` and `preview_<size>`.
//!
//! Goals: engine/handwritten time at most 1.5 for every size;
//! preview/engine at most 0.5 for every size; big/small at most 1.5.
//!
//! The warm-up sample of each variant checks that the engine and the
//! hand-written statements leave the same of the user, that the job ran
//! through with a verified receipt, and that the preview counts what the
//! receipt reports. With `--erasure-profile`, each engine and preview
//! variant then runs once more under `auto_explain` and the statements that
//! cost the most are listed (see `explain.rs`).
//!
//! The databases are kept and reused by later runs when they hold the same
//! generated data (a marker table in schema `lifecycle_bench` says so):
//! generating 1,000,000 users takes about 20 minutes. The extension is
//! dropped and created again, and the data map registered again, on every
//! run, so that a reused database runs the extension as installed now.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, Statement};

use crate::demo::{generator_fingerprint, reusable, DEMO_GENERATE, DEMO_SCHEMA};

use crate::explain::{self, Profile};
use crate::pg::{batch, describe, is_transient};
use crate::report::{median, rotated, Measurement, Ratio, Series, Unit};
use crate::{Ctx, Outcome};

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
const PREVIEW: &str = "SELECT lifecycle.preview_erasure('user', $1)::text";
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
const GENERATE_MS_PER_USER: f64 = 1.3;

/// Statements listed per profiled variant.
const PROFILE_TOP: usize = 15;

pub struct Options {
    /// Rows owned by the heavy user of each size (sorted, no duplicates).
    pub sizes: Vec<u32>,
    /// The size erased in the big database (one of `sizes`).
    pub big_size: u32,
    pub users_small: u32,
    pub users_big: u32,
    /// Generate the data again even when a database could be reused.
    pub rebuild: bool,
    /// Run each engine and preview variant once more under auto_explain.
    pub profile: bool,
}

impl Options {
    /// `sizes` sorted without duplicates; `big_size` defaults to the largest.
    pub fn new(
        sizes: &[u32],
        big_size: Option<u32>,
        users_small: u32,
        users_big: u32,
        rebuild: bool,
        profile: bool,
    ) -> Options {
        let mut sizes = sizes.to_vec();
        sizes.sort_unstable();
        sizes.dedup();
        let big_size = big_size.unwrap_or_else(|| sizes.last().copied().unwrap_or(0));
        Options {
            sizes,
            big_size,
            users_small,
            users_big,
            rebuild,
            profile,
        }
    }
}

/// The demo data of `users` users; for the small database the template of
/// the per-size databases, for the big one also the home of its heavy user.
pub fn database(users: u32) -> String {
    format!("lifecycle_bench_erasure_{users}")
}

/// The small database with one heavy user of `rows` rows.
pub fn sized_database(users: u32, rows: u32) -> String {
    format!("lifecycle_bench_erasure_{users}_r{rows}")
}

/// A copy of [`sized_database`] without the data map.
pub fn plain_database(users: u32, rows: u32) -> String {
    format!("{}_plain", sized_database(users, rows))
}

/// Every database this benchmark creates.
pub fn databases(opts: &Options) -> Vec<String> {
    let mut v = vec![database(opts.users_small)];
    for &n in &opts.sizes {
        v.push(sized_database(opts.users_small, n));
        v.push(plain_database(opts.users_small, n));
    }
    v.push(database(opts.users_big));
    v
}

pub fn check_options(opts: &Options) -> Result<()> {
    if opts.users_small >= opts.users_big {
        bail!(
            "--erasure-users-small ({}) must be smaller than --erasure-users-big ({})",
            opts.users_small,
            opts.users_big
        );
    }
    if opts.sizes.is_empty() {
        bail!("--erasure-sizes needs at least one size");
    }
    if !opts.sizes.contains(&opts.big_size) {
        bail!(
            "--erasure-big-size ({}) must be one of --erasure-sizes ({:?})",
            opts.big_size,
            opts.sizes
        );
    }
    Ok(())
}

/// Whether database `name` holds the demo data for `users` users made by the
/// current generator: `Ok(heavy user sizes)` when it does, `Err(reason)`
/// when not.
async fn inspect(
    ctx: &Ctx,
    admin: &Client,
    name: &str,
    users: u32,
    fingerprint: &str,
) -> Result<std::result::Result<Vec<i32>, String>> {
    let client = match reusable(ctx, admin, name, "erasure_data", users, fingerprint, None).await? {
        Ok(client) => client,
        Err(reason) => return Ok(Err(reason)),
    };
    let heavy = client
        .query(
            "SELECT rows_total FROM lifecycle_bench.heavy_users ORDER BY 1",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(Ok(heavy))
}

/// `Ok(())` when a database inspected as `found` can serve as the small
/// template (no heavy user), `Err(reason)` otherwise.
fn template_ok(found: std::result::Result<Vec<i32>, String>) -> std::result::Result<(), String> {
    match found {
        Ok(h) if h.is_empty() => Ok(()),
        Ok(h) => Err(format!(
            "it holds heavy users ({h:?} rows), from an older layout"
        )),
        Err(e) => Err(e),
    }
}

/// `Ok(())` when a per-size database inspected as `found` holds exactly
/// the heavy user of `rows` rows.
fn sized_ok(
    found: std::result::Result<Vec<i32>, String>,
    rows: u32,
) -> std::result::Result<(), String> {
    match found {
        Ok(h) if h.len() == 1 && i64::from(h[0]) == i64::from(rows) => Ok(()),
        Ok(h) if h.is_empty() => Err("it has no heavy user yet".into()),
        Ok(h) => Err(format!(
            "it holds heavy users of {h:?} rows, not just {rows}"
        )),
        Err(e) => Err(e),
    }
}

/// Rough duration of the benchmark in seconds, and what it will build.
pub async fn estimate(ctx: &Ctx, opts: &Options) -> Result<(u32, Vec<String>)> {
    let admin = ctx.server.connect_admin().await?;
    let fingerprint = generator_fingerprint(&admin).await?;
    let mut notes = Vec::new();
    let mut secs = 0.0;
    let generate = |users: u32| f64::from(users) * GENERATE_MS_PER_USER / 1000.0 * 1.3 + 10.0;
    let why = |found: std::result::Result<(), String>| {
        if opts.rebuild {
            Err("--erasure-rebuild".to_string())
        } else {
            found
        }
    };
    let small = database(opts.users_small);
    let template = why(template_ok(
        inspect(ctx, &admin, &small, opts.users_small, &fingerprint).await?,
    ));
    let template_built = template.is_err();
    match template {
        Ok(()) => notes.push(format!("reuses {small}")),
        Err(w) => {
            secs += generate(opts.users_small);
            notes.push(format!(
                "builds {small} ({w}): about {} min",
                (generate(opts.users_small) / 60.0).ceil()
            ));
        }
    }
    for &n in &opts.sizes {
        let name = sized_database(opts.users_small, n);
        let found = if template_built {
            Err("its template is built anew".to_string())
        } else {
            why(sized_ok(
                inspect(ctx, &admin, &name, opts.users_small, &fingerprint).await?,
                n,
            ))
        };
        match found {
            Ok(()) => notes.push(format!("reuses {name}")),
            Err(w) => {
                secs += 5.0 + f64::from(n) / 50_000.0;
                notes.push(format!("builds {name} ({w})"));
            }
        }
    }
    let big = database(opts.users_big);
    match why(inspect(ctx, &admin, &big, opts.users_big, &fingerprint)
        .await?
        .map(|_| ()))
    {
        Ok(()) => notes.push(format!("reuses {big}")),
        Err(w) => {
            secs += generate(opts.users_big);
            notes.push(format!(
                "builds {big} ({w}): about {} min",
                (generate(opts.users_big) / 60.0).ceil()
            ));
        }
    }
    // Per sample: vacuum, checkpoint, erasure. 4 variants per size, 2 in
    // the big database.
    let rounds = f64::from(ctx.rounds + 1 + u32::from(opts.profile));
    for &n in &opts.sizes {
        secs += 4.0 * rounds * (1.0 + f64::from(n) / 50_000.0);
    }
    // The big database's VACUUM and CHECKPOINT take longer.
    secs += 2.0
        * rounds
        * (1.0 + f64::from(opts.big_size) / 50_000.0 + f64::from(opts.users_big) / 1_000_000.0);
    Ok((secs as u32, notes))
}

/// A prepared benchmark database.
struct Db {
    name: String,
    users: u32,
    /// The size asked for (`--erasure-sizes`).
    size: u32,
    heavy_user: i64,
    heavy_email: String,
    heavy_name: String,
    owned: Vec<(String, i64)>,
    owned_total: i64,
    reused: bool,
    demoted_in: Vec<String>,
    /// Other heavy users in the same database (the big one only).
    other_heavy_users: Vec<i32>,
    setup_seconds: f64,
    db_size: String,
    /// The copy without the data map, if any.
    plain: Option<String>,
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
            "handwritten_database": self.plain,
            "users": self.users,
            "size": self.size,
            "reused": self.reused,
            "setup_seconds": self.setup_seconds,
            "database_size": self.db_size,
            "heavy_user": self.heavy_user,
            "heavy_user_rows": self.owned_total,
            "heavy_user_owned_rows": owned,
            "made_member_in_workspaces": self.demoted_in,
            "other_heavy_users_rows": self.other_heavy_users,
        })
    }

    fn owned_text(&self) -> String {
        self.owned
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Drop and create database `name` and fill it with the demo data of
/// `users` users and the marker; returns a connection to it.
async fn generate(ctx: &Ctx, name: &str, users: u32, fingerprint: &str) -> Result<Client> {
    ctx.server
        .recreate_database(name, ctx.synchronous_commit)
        .await?;
    let client = ctx.server.connect(name).await?;
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
    Ok(client)
}

async fn configure(ctx: &Ctx, name: &str) -> Result<()> {
    let admin = ctx.server.connect_admin().await?;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {name} SET synchronous_commit = {}",
            ctx.synchronous_commit
        ))
        .await
        .map_err(|e| anyhow!("configuring database {name}: {}", describe(&e)))
}

/// Build or reuse the small template `lifecycle_bench_erasure_<users>`:
/// demo data, no heavy user, no extension. Returns whether it was built.
async fn prepare_template(
    ctx: &Ctx,
    opts: &Options,
    users: u32,
    fingerprint: &str,
) -> Result<bool> {
    let name = database(users);
    let admin = ctx.server.connect_admin().await?;
    let reuse = if opts.rebuild {
        Err("--erasure-rebuild".to_string())
    } else {
        template_ok(inspect(ctx, &admin, &name, users, fingerprint).await?)
    };
    match reuse {
        Ok(()) => {
            println!("  {name}: reusing the demo data ({users} users), the template of the per-size databases");
            configure(ctx, &name).await?;
            let client = ctx.server.connect(&name).await?;
            batch(
                &client,
                "DROP EXTENSION IF EXISTS lifecycle CASCADE",
                "dropping the extension from the template",
            )
            .await?;
            Ok(false)
        }
        Err(why) => {
            println!(
                "  {name}: generating {users} users ({why}); about {:.0} min",
                (f64::from(users) * GENERATE_MS_PER_USER / 60_000.0).max(0.1)
            );
            let client = generate(ctx, &name, users, fingerprint).await?;
            batch(&client, "VACUUM (ANALYZE)", "VACUUM ANALYZE").await?;
            Ok(true)
        }
    }
}

/// A per-size database: a copy of the small template, copied in turn
/// without the data map.
struct Copies<'a> {
    template: &'a str,
    /// The template was built in this run: the copy must be made again.
    template_built: bool,
    plain: &'a str,
}

/// Build or reuse the database of one heavy user of `rows` rows: a copy of
/// the small template (`copies`), or, without one, the big database
/// itself; with `copies`, also copy it without the data map. Leaves the
/// extension freshly created and the demo data map registered.
async fn prepare(
    ctx: &Ctx,
    opts: &Options,
    (name, users, rows): (&str, u32, u32),
    fingerprint: &str,
    copies: Option<Copies<'_>>,
) -> Result<Db> {
    let t0 = Instant::now();
    let template = copies.as_ref().map(|c| (c.template, c.template_built));
    let plain_copy = copies.as_ref().map(|c| c.plain);
    let admin = ctx.server.connect_admin().await?;
    let reuse = match template {
        _ if opts.rebuild => Err("--erasure-rebuild".to_string()),
        Some((_, true)) => Err("its template was built anew".to_string()),
        Some(_) => sized_ok(inspect(ctx, &admin, name, users, fingerprint).await?, rows),
        None => inspect(ctx, &admin, name, users, fingerprint)
            .await?
            .map(|_| ()),
    };
    drop(admin);
    let mut generated = false;
    let reused = reuse.is_ok();
    let client = match (reuse, template) {
        (Ok(()), _) => {
            println!("  {name}: reusing the demo data ({users} users)");
            configure(ctx, name).await?;
            let client = ctx.server.connect(name).await?;
            batch(
                &client,
                "DROP EXTENSION IF EXISTS lifecycle CASCADE",
                "dropping the extension (it is created again below)",
            )
            .await?;
            client
        }
        (Err(why), Some((from, _))) => {
            println!("  {name}: copying {from} ({why})");
            copy_database(ctx, from, name).await?;
            generated = true;
            ctx.server.connect(name).await?
        }
        (Err(why), None) => {
            println!(
                "  {name}: generating {users} users ({why}); about {:.0} min",
                (f64::from(users) * GENERATE_MS_PER_USER / 60_000.0).max(0.1)
            );
            generated = true;
            generate(ctx, name, users, fingerprint).await?
        }
    };

    // The heavy user.
    let heavy: Option<i64> = client
        .query_opt(
            "SELECT user_id FROM lifecycle_bench.heavy_users WHERE rows_total = $1",
            &[&(rows as i32)],
        )
        .await?
        .map(|r| r.get(0));
    let heavy_user = match heavy {
        Some(id) => id,
        None => {
            let th = Instant::now();
            let id: i64 = client
                .query_one("SELECT app.generate_heavy_user($1)", &[&(rows as i32)])
                .await
                .map_err(|e| anyhow!("generating the heavy user: {}", describe(&e)))?
                .get(0);
            client
                .execute(
                    "INSERT INTO lifecycle_bench.heavy_users (rows_total, user_id) VALUES ($1, $2)",
                    &[&(rows as i32), &id],
                )
                .await?;
            println!(
                "  {name}: heavy user {id} ({rows} rows) generated in {:.1} s",
                th.elapsed().as_secs_f64()
            );
            generated = true;
            id
        }
    };
    let other_heavy_users: Vec<i32> = client
        .query(
            "SELECT rows_total FROM lifecycle_bench.heavy_users WHERE rows_total <> $1 ORDER BY 1",
            &[&(rows as i32)],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();

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
        copy_database(ctx, name, copy).await?;
        println!("  {copy}: copy of {name} without the extension (the hand-written baseline)");
    }

    let client = ctx.server.connect(name).await?;
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
    let db_size: String = client
        .query_one(
            "SELECT pg_size_pretty(pg_database_size(current_database()))",
            &[],
        )
        .await?
        .get(0);
    Ok(Db {
        name: name.to_string(),
        users,
        size: rows,
        heavy_user,
        heavy_email,
        heavy_name,
        owned,
        owned_total,
        reused,
        demoted_in,
        other_heavy_users,
        setup_seconds: t0.elapsed().as_secs_f64(),
        db_size,
        plain: plain_copy.map(str::to_string),
    })
}

/// `f` again (up to 4 times) when it fails while the server restarts (an
/// extension reinstall ends every session): a half-built database has no
/// marker and is built anew.
async fn retrying<T, F, Fut>(what: &str, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 4 && is_transient(&format!("{e:#} {e:?}")) => {
                eprintln!("  {what}: {e:#}; starting again in 10 s");
                tokio::time::sleep(Duration::from_secs(10)).await;
            }
            Err(e) => return Err(e),
        }
    }
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
    configure(ctx, to).await
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

/// "delete app.files", "update app.users", "select app.posts", ...
fn statement_label(sql: &str) -> String {
    explain::label(sql)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Engine,
    Handwritten,
    Preview,
}

/// One timed erasure or preview.
struct Sample {
    /// VACUUM and CHECKPOINT before the sample (untimed).
    prep_ms: f64,
    /// `request_erasure` (engine only).
    request_ms: Option<f64>,
    /// `run_job`, the hand-written statements together, or the preview.
    erase_ms: f64,
    /// Rows and milliseconds per hand-written statement.
    counts: Vec<(u64, f64)>,
    receipt: Option<Value>,
    job: Option<Value>,
    preview: Option<Value>,
    residue: Option<Value>,
}

/// The prepared statements of the engine.
struct Engine {
    request: Statement,
    run: Statement,
    job_row: Statement,
    preview: Statement,
}

/// The extension's tables an erasure never writes: the data map and the
/// legal holds. A VACUUM of them before every sample would advance their
/// `relfrozenxid` and so invalidate every backend's data-map and hold
/// caches each time, which no production workload does (autovacuum leaves
/// unchanged tables alone).
const NOT_WRITTEN: [&str; 8] = [
    "legal_holds",
    "subject_tables",
    "tenant_tables",
    "tables",
    "memberships",
    "scopes",
    "column_rules",
    "links",
];

/// The VACUUM of the tables an erasure writes, the lifecycle tables it
/// writes included when the extension is there.
async fn vacuum_statement(client: &Client) -> Result<String> {
    let lifecycle: Vec<String> = client
        .query(
            "SELECT c.oid::regclass::text FROM pg_catalog.pg_class c \
              WHERE c.relnamespace = (SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = 'lifecycle') \
                AND c.relkind = 'r' AND NOT c.relname = ANY ($1) ORDER BY 1",
            &[&NOT_WRITTEN.to_vec()],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(format!(
        "VACUUM {}",
        WRITTEN_TABLES
            .iter()
            .map(|t| t.to_string())
            .chain(lifecycle)
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// A connection to one benchmark database with its statements prepared;
/// reconnects when the server went through a restart (an extension
/// reinstall).
struct Session<'a> {
    ctx: &'a Ctx,
    db: String,
    client: Client,
    /// The connection's notices: read by the profile, which runs on this
    /// connection so that its caches are as warm as in the timed samples.
    notices: mpsc::UnboundedReceiver<String>,
    /// `Err` when the installed extension has no erasure engine or preview.
    engine: std::result::Result<Engine, String>,
    handwritten: Vec<Statement>,
    residue: Statement,
    vacuum: String,
}

impl<'a> Session<'a> {
    async fn open(ctx: &'a Ctx, db: &str, with_engine: bool) -> Result<Session<'a>> {
        let (client, notices) = ctx.server.connect_with_notices(db).await?;
        let engine = if with_engine {
            let prepared = async {
                Ok::<_, tokio_postgres::Error>(Engine {
                    request: client.prepare_typed(REQUEST, &[Type::TEXT]).await?,
                    run: client.prepare_typed(RUN_JOB, &[Type::TEXT]).await?,
                    job_row: client.prepare_typed(JOB_ROW, &[Type::TEXT]).await?,
                    preview: client.prepare_typed(PREVIEW, &[Type::TEXT]).await?,
                })
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
                    .prepare_typed(&sql, &[Type::INT8, Type::TEXT_ARRAY, Type::TEXT_ARRAY])
                    .await
                    .map_err(|e| anyhow!("preparing {label}: {}", describe(&e)))?,
            );
        }
        let residue = client
            .prepare_typed(RESIDUE, &[Type::INT8, Type::TEXT, Type::TEXT])
            .await
            .map_err(|e| anyhow!("preparing the residue query: {}", describe(&e)))?;
        let vacuum = vacuum_statement(&client).await?;
        Ok(Session {
            ctx,
            db: db.to_string(),
            client,
            notices,
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
        if kind == Kind::Preview {
            let prep_ms = t.elapsed().as_secs_f64() * 1000.0;
            let mut s = self.preview(db, check).await?;
            s.prep_ms = prep_ms;
            return Ok(s);
        }
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

    fn engine(&self) -> Result<&Engine> {
        self.engine
            .as_ref()
            .map_err(|e| anyhow!("the erasure engine is not available: {e}"))
    }

    async fn preview(&self, db: &Db, check: bool) -> Result<Sample> {
        let engine = self.engine()?;
        let user = db.heavy_user.to_string();
        let t0 = Instant::now();
        let text: Option<String> = self
            .client
            .query_one(&engine.preview, &[&user])
            .await
            .map_err(|e| anyhow!("lifecycle.preview_erasure: {}", describe(&e)))?
            .get(0);
        let erase_ms = t0.elapsed().as_secs_f64() * 1000.0;
        Ok(Sample {
            prep_ms: 0.0,
            request_ms: None,
            erase_ms,
            counts: Vec::new(),
            receipt: None,
            job: None,
            preview: check.then(|| {
                text.map(|t| serde_json::from_str(&t).unwrap_or(Value::String(t)))
                    .unwrap_or(Value::Null)
            }),
            residue: None,
        })
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
            preview: None,
            residue: None,
        };
        match kind {
            Kind::Engine => {
                let engine = self.engine()?;
                let user = db.heavy_user.to_string();
                let t0 = Instant::now();
                let job: String = c
                    .query_one(&engine.request, &[&user])
                    .await
                    .map_err(|e| anyhow!("lifecycle.request_erasure: {}", describe(&e)))?
                    .get(0);
                let t1 = Instant::now();
                let receipt: Option<String> = c
                    .query_one(&engine.run, &[&job])
                    .await
                    .map_err(|e| anyhow!("lifecycle.run_job: {}", describe(&e)))?
                    .get(0);
                let t2 = Instant::now();
                s.request_ms = Some((t1 - t0).as_secs_f64() * 1000.0);
                s.erase_ms = (t2 - t1).as_secs_f64() * 1000.0;
                if check {
                    s.receipt =
                        receipt.map(|r| serde_json::from_str(&r).unwrap_or(Value::String(r)));
                    s.job = match c.query_opt(&engine.job_row, &[&job]).await {
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
                // Prepared once per session, but planned on every run, as
                // the statements of a script would be (and as the engine
                // plans its own): no generic plan after the fifth round.
                c.batch_execute("SET LOCAL plan_cache_mode = force_custom_plan")
                    .await
                    .map_err(|e| anyhow!("SET LOCAL plan_cache_mode: {}", describe(&e)))?;
                // The first statement looks up the user's identifiers and
                // their lower-cased LIKE patterns: $2 and $3 of the others.
                let mut identifiers: Vec<String> = Vec::new();
                let mut patterns: Vec<String> = Vec::new();
                let t0 = Instant::now();
                for (i, st) in self.handwritten.iter().enumerate() {
                    let ts = Instant::now();
                    let n = if i == 0 {
                        let row = c
                            .query_one(st, &[&db.heavy_user, &identifiers, &patterns])
                            .await
                            .map_err(|e| {
                                anyhow!("hand-written erasure, identifiers: {}", describe(&e))
                            })?;
                        identifiers = row.get(0);
                        patterns = row.get(1);
                        1
                    } else {
                        c.execute(st, &[&db.heavy_user, &identifiers, &patterns])
                            .await
                            .map_err(|e| {
                                anyhow!(
                                    "hand-written erasure, statement {}: {}",
                                    i + 1,
                                    describe(&e)
                                )
                            })?
                    };
                    s.counts.push((n, ts.elapsed().as_secs_f64() * 1000.0));
                }
                s.erase_ms = t0.elapsed().as_secs_f64() * 1000.0;
            }
            Kind::Preview => unreachable!("the preview runs outside a transaction"),
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

    /// One more engine or preview sample, under auto_explain, on this
    /// session's connection, which receives the plans as notices.
    async fn profile(&mut self, kind: Kind, db: &Db, title: String, timed: f64) -> Result<Profile> {
        let c = &self.client;
        let notices = &mut self.notices;
        batch(c, explain::SETUP, "loading auto_explain").await?;
        c.batch_execute(&self.vacuum)
            .await
            .map_err(|e| anyhow!("VACUUM: {}", describe(&e)))?;
        c.batch_execute("CHECKPOINT")
            .await
            .map_err(|e| anyhow!("CHECKPOINT: {}", describe(&e)))?;
        let user = db.heavy_user.to_string();
        let top = match kind {
            Kind::Engine => {
                c.batch_execute("BEGIN").await?;
                let job: String = c
                    .query_one(REQUEST, &[&user])
                    .await
                    .map_err(|e| anyhow!("lifecycle.request_erasure: {}", describe(&e)))?
                    .get(0);
                format!("SELECT lifecycle.run_job('{job}'::uuid) IS NOT NULL")
            }
            Kind::Preview => format!(
                "SELECT lifecycle.preview_erasure('user', '{}') IS NOT NULL",
                db.heavy_user
            ),
            Kind::Handwritten => bail!("the hand-written statements are timed one by one instead"),
        };
        c.batch_execute(explain::ON).await?;
        while notices.try_recv().is_ok() {}
        let r = c.batch_execute(&top).await;
        // The call's notices arrive before its result: all are in.
        let mut messages = Vec::new();
        while let Ok(n) = notices.try_recv() {
            messages.push(n);
        }
        c.batch_execute(explain::OFF).await?;
        if kind == Kind::Engine {
            c.batch_execute("ROLLBACK").await?;
        }
        r.map_err(|e| anyhow!("{top}: {}", describe(&e)))?;
        let logged = explain::parse_notices(&messages);
        let total_ms = logged
            .iter()
            .find(|l| l.text.trim_end_matches(';').trim() == top)
            .map(|l| l.ms)
            .ok_or_else(|| {
                anyhow!(
                    "auto_explain logged {} statements but not the call itself",
                    logged.len()
                )
            })?;
        Ok(Profile {
            title,
            total_ms,
            timed_median_ms: timed,
            statements: explain::aggregate(&logged, &top),
        })
    }
}

/// One timed variant: which session, which kind, which database.
struct Variant {
    name: String,
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

/// (table, action, rows) of the receipt's actions or the preview's steps,
/// sorted: the two must agree.
fn step_counts(list: Option<&Value>) -> Vec<(String, String, i64)> {
    let mut v: Vec<(String, String, i64)> = list
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s.get("table")
                            .and_then(Value::as_str)
                            .unwrap_or("?")
                            .to_string(),
                        s.get("action")
                            .and_then(Value::as_str)
                            .unwrap_or("?")
                            .to_string(),
                        s.get("rows").and_then(Value::as_i64).unwrap_or(-1),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

pub async fn run(ctx: &Ctx, opts: &Options) -> Result<Outcome> {
    println!();
    println!("== erasure ==");
    check_options(opts)?;
    let template_name = database(opts.users_small);
    let big_name = database(opts.users_big);
    println!(
        "  sizes (rows owned by the erased user): {}; in the big database: {}",
        opts.sizes
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        opts.big_size
    );
    println!(
        "  engine_<n>:              lifecycle.request_erasure('user', <id>, NULL, ..., cooling_off => '0 seconds', \
         requires_approval => false) (timed apart), then lifecycle.run_job(<job>) (the figure), in \
         {}_r<n> (one heavy user of <n> rows, demo data map registered)",
        template_name
    );
    println!(
        "  handwritten_<n>:         bench/sql/erasure_handwritten.sql in {template_name}_r<n>_plain, a copy taken \
         before the data map was registered: no guard triggers (the baseline)"
    );
    println!(
        "  handwritten_guarded_<n>: the same statements in {template_name}_r<n>, data map registered (guard and \
         soft-delete triggers fire)"
    );
    println!(
        "  preview_<n>:             SELECT lifecycle.preview_erasure('user', <id>) in {template_name}_r<n>, \
         outside a transaction"
    );
    println!(
        "  engine_big, preview_big: the same in {big_name} ({} users, a heavy user of {} rows)",
        opts.users_big, opts.big_size
    );
    println!(
        "  engine-only work (in the engine's figure): job bookkeeping, counts of the rows kept for the receipt, \
         the receipt's verification re-scan, audit events, redaction of the user's audit-log events, one \
         external step per stored file to delete"
    );
    println!(
        "  each sample: VACUUM of the written tables and CHECKPOINT (untimed); BEGIN; erasure (timed); ROLLBACK \
         (untimed); the preview without BEGIN/ROLLBACK"
    );

    let admin = ctx.server.connect_admin().await?;
    let fingerprint = generator_fingerprint(&admin).await?;
    drop(admin);
    let template_built = retrying(&template_name, || {
        prepare_template(ctx, opts, opts.users_small, &fingerprint)
    })
    .await?;
    let mut dbs: Vec<Db> = Vec::new();
    for &n in &opts.sizes {
        let name = sized_database(opts.users_small, n);
        let plain = plain_database(opts.users_small, n);
        dbs.push(
            retrying(&name, || {
                prepare(
                    ctx,
                    opts,
                    (&name, opts.users_small, n),
                    &fingerprint,
                    Some(Copies {
                        template: &template_name,
                        template_built,
                        plain: &plain,
                    }),
                )
            })
            .await?,
        );
    }
    dbs.push(
        retrying(&big_name, || {
            prepare(
                ctx,
                opts,
                (&big_name, opts.users_big, opts.big_size),
                &fingerprint,
                None,
            )
        })
        .await?,
    );
    let big = dbs.len() - 1;
    let big_small = opts
        .sizes
        .iter()
        .position(|&n| n == opts.big_size)
        .expect("checked: the big size is one of the sizes");
    for db in &dbs {
        println!(
            "  {}: {} users, {}, heavy user {} owns {} rows ({}); ready in {:.0} s",
            db.name,
            db.users,
            db.db_size,
            db.heavy_user,
            db.owned_total,
            db.owned_text(),
            db.setup_seconds
        );
        if !db.other_heavy_users.is_empty() {
            println!(
                "  note: {} also holds heavy users of {:?} rows from other runs, in the same workspaces: \
                 their rows are read where the engine reads the user's workspaces",
                db.name, db.other_heavy_users
            );
        }
    }
    if dbs[big_small].owned_total != dbs[big].owned_total {
        println!(
            "  note: the heavy users of the big/small comparison differ in size ({} and {} rows): the generator \
             spreads them over the oldest workspaces, which differ between the databases",
            dbs[big_small].owned_total, dbs[big].owned_total
        );
    }

    // Sessions: per size its database and the copy without the data map,
    // then the big database.
    let mut sessions = Vec::new();
    for db in &dbs {
        sessions.push(Session::open(ctx, &db.name, true).await?);
        if let Some(plain) = &db.plain {
            sessions.push(Session::open(ctx, plain, false).await?);
        }
    }
    let engine_missing =
        sessions
            .iter()
            .find_map(|s| match (&s.engine, s.db.ends_with("_plain")) {
                (Err(e), false) => Some(e.clone()),
                _ => None,
            });
    let mut variants = Vec::new();
    for (i, &n) in opts.sizes.iter().enumerate() {
        let (own, plain) = (2 * i, 2 * i + 1);
        variants.push(Variant {
            name: format!("engine_{n}"),
            session: own,
            kind: Kind::Engine,
            db: i,
        });
        variants.push(Variant {
            name: format!("handwritten_{n}"),
            session: plain,
            kind: Kind::Handwritten,
            db: i,
        });
        variants.push(Variant {
            name: format!("handwritten_guarded_{n}"),
            session: own,
            kind: Kind::Handwritten,
            db: i,
        });
        variants.push(Variant {
            name: format!("preview_{n}"),
            session: own,
            kind: Kind::Preview,
            db: i,
        });
    }
    let big_session = 2 * opts.sizes.len();
    variants.push(Variant {
        name: "engine_big".into(),
        session: big_session,
        kind: Kind::Engine,
        db: big,
    });
    variants.push(Variant {
        name: "preview_big".into(),
        session: big_session,
        kind: Kind::Preview,
        db: big,
    });
    let mut check_failed: Option<String> = None;
    let mut fail = |msg: String| {
        println!("  CHECK: {msg}");
        if check_failed.is_none() {
            check_failed = Some(msg);
        }
    };
    if let Some(e) = &engine_missing {
        println!();
        println!("  ENGINE NOT AVAILABLE: {e}");
        println!("  measuring the hand-written baselines only");
        variants.retain(|v| v.kind == Kind::Handwritten);
        fail(format!(
            "the erasure engine or its preview is not available in the installed extension: {e}"
        ));
    }

    // Warm-up: one untimed sample of each variant, with the checks.
    println!();
    println!(
        "erasure: warm-up (one sample of each variant, untimed; checks what is left of the user, the job, \
         its receipt and the preview)"
    );
    let labels: Vec<String> = handwritten_statements()
        .into_iter()
        .map(|(l, _)| l)
        .collect();
    let mut residues: Vec<(usize, Value)> = Vec::new();
    let mut receipts: Vec<(usize, Value)> = Vec::new();
    let mut previews: Vec<(usize, Value)> = Vec::new();
    let mut warmup = serde_json::Map::new();
    for (vi, v) in variants.iter().enumerate() {
        let s = sessions[v.session]
            .sample(v.kind, &dbs[v.db], true)
            .await
            .with_context(|| format!("erasure warm-up, variant {}", v.name))?;
        let mut line = format!("  warm-up  {:<26} {:>9.1} ms", v.name, s.erase_ms);
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
            if v.name.starts_with("handwritten_") && !v.name.contains("guarded") {
                for (l, (n, ms)) in labels.iter().zip(&s.counts) {
                    println!("           {ms:>8.2} ms {n:>8} rows  {l}");
                }
            }
            w["statements"] = json!(labels
                .iter()
                .zip(&s.counts)
                .map(|(l, (n, ms))| json!({ "statement": l, "rows": n, "ms": ms }))
                .collect::<Vec<_>>());
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
            if !matches!(status, "completed" | "processing") || error.is_some() {
                fail(format!(
                    "{}: the job did not run through: {}",
                    v.name,
                    truncated(job, 400)
                ));
            }
        }
        if let Some(receipt) = &s.receipt {
            println!("           receipt: {}", truncated(receipt, 400));
            w["receipt"] = receipt.clone();
            let verified = receipt
                .pointer("/result/verification/ok")
                .or_else(|| receipt.pointer("/verification/ok"))
                .and_then(Value::as_bool);
            if verified == Some(false) {
                fail(format!(
                    "{}: the receipt's verification is not ok: {}",
                    v.name,
                    truncated(receipt, 600)
                ));
            }
            receipts.push((v.db, receipt.clone()));
        }
        if let Some(preview) = &s.preview {
            println!("           preview: {}", truncated(preview, 400));
            w["preview"] = preview.clone();
            if preview.get("would_run").and_then(Value::as_bool) != Some(true) {
                fail(format!(
                    "{}: the preview says the erasure would not run: {}",
                    v.name,
                    truncated(preview, 600)
                ));
            }
            previews.push((v.db, preview.clone()));
        }
        if let Some(residue) = &s.residue {
            println!("           left of the user: {}", truncated(residue, 400));
            w["left_of_the_user"] = residue.clone();
            residues.push((vi, residue.clone()));
        }
        warmup.insert(v.name.clone(), w);
    }
    // What is left must not depend on the variant; engine_big erases
    // another user (other id and rows), compared without them.
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
    let mut compared = 0;
    for (vi, r) in &residues {
        let v = &variants[*vi];
        let reference_db = if v.db == big { big_small } else { v.db };
        let reference = residues.iter().find(|(ri, _)| {
            variants[*ri].kind == Kind::Handwritten
                && variants[*ri].db == reference_db
                && !variants[*ri].name.contains("guarded")
        });
        let Some((ri, reference)) = reference else {
            continue;
        };
        if ri == vi {
            continue;
        }
        compared += 1;
        let same = if v.db == big {
            comparable(r) == comparable(reference)
        } else {
            r == reference
        };
        if !same {
            fail(format!(
                "{} leaves something else of the user than {}: {} vs {}",
                v.name,
                variants[*ri].name,
                truncated(r, 600),
                truncated(reference, 600)
            ));
        }
    }
    // The preview counts what the erasure does.
    let mut previews_compared = 0;
    for (db, preview) in &previews {
        let Some((_, receipt)) = receipts.iter().find(|(d, _)| d == db) else {
            continue;
        };
        previews_compared += 1;
        let said = step_counts(preview.get("steps"));
        let done = step_counts(
            receipt
                .pointer("/result/actions")
                .or_else(|| receipt.get("actions")),
        );
        if said != done {
            fail(format!(
                "in {} the preview's steps differ from the receipt's actions: {said:?} vs {done:?}",
                dbs[*db].name
            ));
        }
    }
    if check_failed.is_none() {
        println!(
            "  check: every variant leaves the same of the user ({compared} compared with the hand-written \
             erasure of the same size), jobs ran through with verified receipts, the preview counts what \
             the receipt reports ({previews_compared} compared)"
        );
    }

    // Rounds.
    let mut series: Vec<Series> = variants.iter().map(|v| Series::new(&v.name)).collect();
    let mut request_series: Vec<Series> = dbs
        .iter()
        .map(|db| {
            Series::new(&if db.plain.is_some() {
                format!("rows_{}", db.size)
            } else {
                "big".to_string()
            })
        })
        .collect();
    let order: Vec<usize> = (0..variants.len()).collect();
    println!();
    println!("erasure: {} rounds, variants alternating", ctx.rounds);
    for round in 0..ctx.rounds {
        let mut line = Vec::new();
        for i in rotated(&order, round as usize) {
            let v = &variants[i];
            let s = sessions[v.session]
                .sample(v.kind, &dbs[v.db], false)
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

    let find = |name: &str, as_name: &str| -> Series {
        let mut s = Series::new(as_name);
        if let Some(i) = variants.iter().position(|v| v.name == name) {
            s.samples = series[i].samples.clone();
        }
        s
    };
    let method = format!(
        "BEGIN; erasure timed by the client; ROLLBACK (the preview: no transaction). VACUUM and CHECKPOINT \
         before each sample (untimed). {} rounds, variants alternating, one untimed warm-up each",
        ctx.rounds
    );
    let mut measurements = Vec::new();
    for (i, &n) in opts.sizes.iter().enumerate() {
        let db = &dbs[i];
        measurements.push(Measurement {
            key: format!("rows_{n}"),
            title: format!(
                "erasure: one user owning {} rows (size {n}) in a database of {} users: lifecycle.run_job() vs \
                 hand-written statements, and lifecycle.preview_erasure() ({})",
                db.owned_total, db.users, db.name
            ),
            method: format!(
                "{method}; handwritten runs in {} (no data map, no triggers), handwritten_guarded and preview in {} \
                 (data map registered)",
                db.plain.as_deref().unwrap_or("?"),
                db.name
            ),
            unit: Unit::Millis,
            rows_per_statement: Some(db.owned_total as u64),
            series: vec![
                find(&format!("engine_{n}"), "engine"),
                find(&format!("handwritten_{n}"), "handwritten"),
                find(&format!("handwritten_guarded_{n}"), "handwritten_guarded"),
                find(&format!("preview_{n}"), "preview"),
            ],
            ratios: vec![
                Ratio::time("engine", "handwritten", Some(1.5)),
                Ratio::time("preview", "engine", Some(0.5)),
                Ratio::time("engine", "handwritten_guarded", None),
                Ratio::time("handwritten_guarded", "handwritten", None),
            ],
        });
    }
    let small = &dbs[big_small];
    measurements.push(Measurement {
        key: "big_vs_small".into(),
        title: format!(
            "erasure: lifecycle.run_job() and lifecycle.preview_erasure() for a user owning ~{} rows, {} users \
             ({}) vs {} users ({})",
            opts.big_size, dbs[big].users, dbs[big].name, small.users, small.name
        ),
        method: method.clone(),
        unit: Unit::Millis,
        rows_per_statement: Some(small.owned_total as u64),
        series: vec![
            find(&format!("engine_{}", opts.big_size), "small"),
            find("engine_big", "big"),
            find(&format!("preview_{}", opts.big_size), "preview_small"),
            find("preview_big", "preview_big"),
        ],
        ratios: vec![
            Ratio::time("big", "small", Some(1.5)),
            Ratio::time("preview_big", "preview_small", None),
        ],
    });
    measurements.push(Measurement {
        key: "request_erasure".into(),
        title:
            "erasure: lifecycle.request_erasure() before run_job (not part of the figures above)"
                .into(),
        method,
        unit: Unit::Millis,
        rows_per_statement: None,
        series: request_series,
        ratios: Vec::new(),
    });
    for m in &measurements {
        m.print();
    }

    // Where the engine's and the preview's time goes.
    let mut profiles = Vec::new();
    if opts.profile && engine_missing.is_none() {
        println!();
        println!(
            "erasure: profiles (each engine and preview variant once more, auto_explain logging every \
             statement with its rows; top {PROFILE_TOP} statements by time)"
        );
        for v in variants.iter().filter(|v| v.kind != Kind::Handwritten) {
            let db = &dbs[v.db];
            let what = match v.kind {
                Kind::Engine => "lifecycle.run_job()",
                _ => "lifecycle.preview_erasure()",
            };
            let title = format!(
                "profile {}: {what} in {} ({} users), user owning {} rows",
                v.name, db.name, db.users, db.owned_total
            );
            let timed = median(
                &series[variants.iter().position(|x| x.name == v.name).unwrap_or(0)].samples,
            );
            match sessions[v.session].profile(v.kind, db, title, timed).await {
                Ok(p) => {
                    p.print(PROFILE_TOP);
                    profiles.push((v.name.clone(), p));
                }
                Err(e) => println!("  profile {}: {e:#}", v.name),
            }
        }
    }

    if let Some(f) = &check_failed {
        println!("  CHECK FAILED: {f}");
    }
    let databases: serde_json::Map<String, Value> = dbs
        .iter()
        .map(|db| {
            (
                if db.plain.is_some() {
                    format!("rows_{}", db.size)
                } else {
                    "big".to_string()
                },
                db.to_json(),
            )
        })
        .collect();
    Ok(Outcome {
        name: "erasure",
        measurements,
        extra: json!({
            "databases": databases,
            "template_database": template_name,
            "handwritten_statements": handwritten_statements().into_iter().map(|(_, s)| s).collect::<Vec<_>>(),
            "engine_available": engine_missing.is_none(),
            "engine_unavailable_reason": engine_missing,
            "warmup": warmup,
            "profiles": profiles.iter().map(|(n, p)| (n.clone(), p.to_json())).collect::<serde_json::Map<_, _>>(),
        }),
        check_failed,
    })
}
