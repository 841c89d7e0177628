//! `export`: what building a person's export bundle costs, against what
//! PostgreSQL alone needs to hand the same rows to a client.
//!
//! One database, `lc_bench_export_<users>`: the demo data of `--export-users`
//! users (`app.generate_demo_data`) and two heavy users
//! (`app.generate_heavy_user`), one owning about `--export-rows` rows
//! (1,000,000) and one about `--export-rows-small` (10,000), across the demo's
//! registered tables. It is kept and reused by later runs while the demo
//! schema and generator are the same (a marker table in schema
//! `lifecycle_bench` says what it holds).
//!
//! Variants, for each heavy user `<n>`, alternating round by round:
//!
//! * `copy_<n>`: the limit. In one `REPEATABLE READ, READ ONLY` transaction
//!   with `TimeZone = 'UTC'`, `COPY (<query>) TO STDOUT` of every file of the
//!   bundle, read to the end by this client (tokio-postgres `copy_out`). The
//!   queries are the ones `lifecycle.open_export` opens its cursors on (read
//!   from `pg_cursors`, the target's id and type written in as literals): the
//!   same rows, as the same `json` objects, in the same order.
//! * `csv_<n>`: the same rows as plain CSV with a header
//!   (`COPY (<the cursor's inner SELECT>) TO STDOUT (FORMAT csv, HEADER)`):
//!   its byte count is the raw CSV size the bundle is compared with.
//! * `export_<n>`: the real `lifecycled serve` (release build), started
//!   afresh for the sample as the service role `lifecycled setup` prepares,
//!   with its worker claiming export jobs only and a local store
//!   (`--storage-url file:///...`) in a temporary directory. The sample is
//!   timed from `lifecycle.request_export(...)` to the job's status
//!   `completed` (polled every 10 ms); the process's peak resident memory
//!   (`VmHWM` of `/proc/<pid>/status`) is read then, and the bundle's size
//!   on disk. No file store is configured: the rows are measured, not the
//!   copy of the users' uploaded files into `files/`.
//!
//! At most one export per person per 24 hours is enforced in the database,
//! so the extension is dropped and created again (with the demo data map
//! and the service role's grants) before every round, untimed.
//!
//! Goals (issue 12): the bundle at least 0.5 of COPY's rate at 1,000,000
//! rows; peak resident memory at 1,000,000 rows within 20% of that at
//! 10,000; the bundle (JSON and CSV of every file, deflated) smaller than
//! the raw CSV of the same rows.
//!
//! Checks (the run exits non-zero when one fails): every export job
//! completes, its bundle holds as many rows as the files' queries return,
//! and the file in the store is as large as the job says.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio_postgres::{Client, Config, IsolationLevel};

use crate::api::{admin_url, free_port, get, url};
use crate::demo::{generator_fingerprint, reusable, DEMO_GENERATE, DEMO_SCHEMA};
use crate::pg::{batch, describe};
use crate::report::{median, rotated, Measurement, Ratio, Series, Unit};
use crate::{Ctx, Outcome};

const DEMO_REGISTER: &str = include_str!("../../sql/demo/register.sql");
const MARKER: &str = include_str!("../sql/export_marker.sql");

/// Bumped when what the database holds changes: older ones are rebuilt.
const DATA_VERSION: i32 = 1;

/// The service role `lifecycled setup` creates for the benchmark.
const SERVICE_ROLE: &str = "lc_bench_export_service";

/// The demo's subject type.
const SUBJECT_TYPE: &str = "user";

/// The cursor opened to read each file's query.
const PROBE_CURSOR: &str = "lc_bench_export_probe";

/// How the shape of `open_export`'s query is recognised: its inner SELECT
/// (the columns of the rows) is what the raw CSV is made of.
const QUERY_PREFIX: &str = "SELECT pg_catalog.to_json(r.*) AS \"row\" FROM (";
const QUERY_SUFFIX: &str = ") r";

/// How often the job's status is looked at.
const POLL: Duration = Duration::from_millis(10);

/// The longest an export may take before the run gives up.
const JOB_TIMEOUT: Duration = Duration::from_secs(3600);

/// Goals: export rate over COPY's (at least), peak RSS at the big size over
/// the small one (at most), bundle over raw CSV (at most).
const GOAL_RATE: f64 = 0.5;
const GOAL_RSS: f64 = 1.2;
const GOAL_SIZE: f64 = 1.0;

const MIB: f64 = 1024.0 * 1024.0;

/// Rough speeds on the 2-core development machine, for the estimate (rows
/// per second): generating a heavy user, COPY, an export.
const GENERATE_ROWS_PER_SECOND: f64 = 25_000.0;
const COPY_ROWS_PER_SECOND: f64 = 300_000.0;
const EXPORT_ROWS_PER_SECOND: f64 = 60_000.0;

pub struct Options {
    pub admin_url: String,
    pub users: u32,
    pub rows_big: u32,
    /// Smaller sizes, ascending; the first is the memory goal's baseline.
    pub rows_small: Vec<u32>,
    pub rebuild: bool,
    pub lifecycled: PathBuf,
    /// More environment of the `lifecycled` processes (`NAME=VALUE`).
    pub env: Vec<(String, String)>,
    /// Give `lifecycled` a file store holding a small object for every
    /// storage key of the users' rows.
    pub files: bool,
}

impl Options {
    /// `rows_small` sorted without duplicates; `env` split at its `=`.
    pub fn new(
        admin_url: String,
        users: u32,
        rows_big: u32,
        rows_small: &[u32],
        rebuild: bool,
        lifecycled: PathBuf,
        env: &[String],
    ) -> Result<Options> {
        let mut rows_small = rows_small.to_vec();
        rows_small.sort_unstable();
        rows_small.dedup();
        let env = env
            .iter()
            .map(|e| {
                e.split_once('=')
                    .filter(|(k, _)| !k.is_empty())
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| anyhow!("--export-env {e:?}: expected NAME=VALUE"))
            })
            .collect::<Result<_>>()?;
        Ok(Options {
            admin_url,
            users,
            rows_big,
            rows_small,
            rebuild,
            lifecycled,
            env,
            files: false,
        })
    }

    /// Every size: the big one first, then the small ones ascending.
    fn sizes(&self) -> Vec<u32> {
        std::iter::once(self.rows_big)
            .chain(self.rows_small.iter().copied())
            .collect()
    }
}

pub fn database(users: u32) -> String {
    format!("lc_bench_export_{users}")
}

pub fn databases(opts: &Options) -> Vec<String> {
    vec![database(opts.users)]
}

pub fn check_options(opts: &Options) -> Result<()> {
    match opts.rows_small.last() {
        None => bail!("--export-rows-small needs at least one size"),
        Some(&s) if s >= opts.rows_big => bail!(
            "--export-rows-small ({s}) must be smaller than --export-rows ({})",
            opts.rows_big
        ),
        Some(_) => Ok(()),
    }
}

/// Seconds the run takes, roughly (a first run also generates the data).
pub fn estimate(ctx: &Ctx, opts: &Options) -> u32 {
    let rows: f64 = opts.sizes().into_iter().map(f64::from).sum();
    let per_round = 15.0
        + rows * (2.0 / COPY_ROWS_PER_SECOND + 1.0 / EXPORT_ROWS_PER_SECOND)
        + 2.0 * opts.sizes().len() as f64;
    let rounds = f64::from(ctx.rounds) + f64::from(u8::from(ctx.warmup > 0));
    (per_round * rounds + 30.0) as u32
}

/// `1m`, `10k`, `2500`: how a size names its variants.
fn size_label(rows: u32) -> String {
    if rows >= 1_000_000 && rows.is_multiple_of(1_000_000) {
        format!("{}m", rows / 1_000_000)
    } else if rows >= 1_000 && rows.is_multiple_of(1_000) {
        format!("{}k", rows / 1_000)
    } else {
        rows.to_string()
    }
}

// ----- the database -------------------------------------------------------------------

/// Why database `name` cannot be reused, or `None` when it can.
async fn stale(
    ctx: &Ctx,
    admin: &Client,
    name: &str,
    users: u32,
    fingerprint: &str,
) -> Result<Option<String>> {
    let version = Some(DATA_VERSION);
    Ok(
        reusable(ctx, admin, name, "export_data", users, fingerprint, version)
            .await?
            .err(),
    )
}

/// Build or reuse the database; returns its name and the heavy users (rows
/// asked for -> user id). Leaves it without the extension.
async fn ensure_database(ctx: &Ctx, opts: &Options) -> Result<(String, BTreeMap<u32, i64>)> {
    let name = database(opts.users);
    let admin = ctx.server.connect_admin().await?;
    let fingerprint = generator_fingerprint(&admin).await?;
    let reason = if opts.rebuild {
        Some("--export-rebuild".to_string())
    } else {
        stale(ctx, &admin, &name, opts.users, &fingerprint).await?
    };
    let mut generated = false;
    let client = match reason {
        None => {
            println!("  {name}: reusing the demo data ({} users)", opts.users);
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
                "dropping the extension (it is created again for every round)",
            )
            .await?;
            client
        }
        Some(why) => {
            println!("  {name}: generating {} users ({why})", opts.users);
            ctx.server
                .recreate_database(&name, ctx.synchronous_commit)
                .await?;
            let client = ctx.server.connect(&name).await?;
            batch(&client, DEMO_SCHEMA, "creating the demo schema").await?;
            batch(&client, DEMO_GENERATE, "creating the demo data generator").await?;
            batch(&client, MARKER, "creating the marker tables").await?;
            let started = Instant::now();
            let counts: String = client
                .query_one(
                    "SELECT app.generate_demo_data($1)::text",
                    &[&(opts.users as i32)],
                )
                .await
                .map_err(|e| anyhow!("generating the demo data: {}", describe(&e)))?
                .get(0);
            let took = started.elapsed().as_secs_f64();
            client
                .execute(
                    "INSERT INTO lifecycle_bench.export_data (users, generator_md5, version, generated_in) \
                     VALUES ($1, $2, $3, make_interval(secs => $4))",
                    &[&(opts.users as i32), &fingerprint, &DATA_VERSION, &took],
                )
                .await?;
            println!("  {name}: demo data in {took:.0} s: {counts}");
            generated = true;
            client
        }
    };

    let mut heavy = BTreeMap::new();
    for rows in opts.sizes().into_iter().rev() {
        let existing: Option<i64> = client
            .query_opt(
                "SELECT user_id FROM lifecycle_bench.heavy_users WHERE rows_total = $1",
                &[&(rows as i32)],
            )
            .await?
            .map(|r| r.get(0));
        let id = match existing {
            Some(id) => id,
            None => {
                println!(
                    "  {name}: generating a user owning {rows} rows (about {:.0} s)",
                    f64::from(rows) / GENERATE_ROWS_PER_SECOND
                );
                let started = Instant::now();
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
                    "  {name}: user {id} ({rows} rows) in {:.0} s",
                    started.elapsed().as_secs_f64()
                );
                generated = true;
                id
            }
        };
        heavy.insert(rows, id);
    }
    if generated {
        let started = Instant::now();
        batch(&client, "VACUUM (ANALYZE)", "VACUUM ANALYZE").await?;
        println!(
            "  {name}: VACUUM ANALYZE in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok((name, heavy))
}

/// Run `lifecycled` with `args`; its standard output.
async fn lifecycled(program: &Path, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "lifecycled {}: {}{}",
            args.first().copied().unwrap_or(""),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The extension created anew (no job, no export yet: the 24-hour limit
/// starts over), the demo data map registered, the service role's grants
/// given by `lifecycled setup`. Returns the seconds it took.
async fn reset(ctx: &Ctx, opts: &Options, db: &str, password: &str) -> Result<f64> {
    let started = Instant::now();
    let client = ctx.server.connect(db).await?;
    batch(
        &client,
        "DROP EXTENSION IF EXISTS lifecycle CASCADE",
        "dropping the extension",
    )
    .await?;
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
    drop(client);
    let admin = Config::from_str(&opts.admin_url).context("parsing the admin URL")?;
    lifecycled(
        &opts.lifecycled,
        &[
            "setup",
            "--admin-url",
            &admin_url(&admin, db),
            "--service-role",
            SERVICE_ROLE,
            "--service-password",
            password,
        ],
    )
    .await?;
    Ok(started.elapsed().as_secs_f64())
}

// ----- what the bundle holds ------------------------------------------------------------

/// One file of a bundle: the query of its rows as `open_export` runs it, and
/// the same rows as plain columns.
struct FileQuery {
    name: String,
    kind: String,
    /// `SELECT to_json(r.*) AS "row" FROM (...) r`, the target written in.
    json_sql: String,
    /// The inner SELECT: the rows' columns.
    csv_sql: String,
    /// Columns whose values are keys of stored objects.
    storage_columns: Vec<String>,
    /// Rows when the run started.
    rows: i64,
}

/// A heavy user and the files of their bundle.
struct Subject {
    label: String,
    asked: u32,
    user_id: i64,
    owned: Vec<(String, i64)>,
    files: Vec<FileQuery>,
    /// Stored objects of the bundle (distinct keys per file), and how many
    /// of them the file store holds (`--export-files`; else none).
    objects: i64,
    objects_stored: i64,
}

impl Subject {
    fn id(&self) -> String {
        self.user_id.to_string()
    }

    /// Rows of every file but the audit log's (which grows as jobs are
    /// requested and run).
    fn rows_without_audit(&self) -> i64 {
        self.files
            .iter()
            .filter(|f| f.kind != "audit")
            .map(|f| f.rows)
            .sum()
    }

    fn audit(&self) -> Option<&FileQuery> {
        self.files.iter().find(|f| f.kind == "audit")
    }

    fn rows(&self) -> i64 {
        self.files.iter().map(|f| f.rows).sum()
    }
}

/// `sql` with each parameter `$n` (outside string literals) replaced by the
/// literal of `values[n - 1]`.
fn bind(sql: &str, values: &[&str]) -> Result<String> {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut chars = sql.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if c == '\'' {
            quoted = !quoted;
        }
        if c != '$' || quoted || !chars.peek().is_some_and(char::is_ascii_digit) {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
            digits.push(d);
            chars.next();
        }
        let n: usize = digits.parse()?;
        let value = values
            .get(n.wrapping_sub(1))
            .ok_or_else(|| anyhow!("the query has a parameter ${n}: {sql}"))?;
        out.push('\'');
        out.push_str(&value.replace('\'', "''"));
        out.push('\'');
    }
    Ok(out)
}

/// The inner SELECT of an `open_export` query.
fn columns_query(json_sql: &str) -> Result<String> {
    json_sql
        .trim()
        .strip_prefix(QUERY_PREFIX)
        .and_then(|s| s.strip_suffix(QUERY_SUFFIX))
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow!(
                "lifecycle.open_export's query no longer has the shape `{QUERY_PREFIX}...{QUERY_SUFFIX}` \
                 this benchmark reads the raw CSV from: {json_sql}"
            )
        })
}

/// The files of `user`'s bundle and the query of each, as `open_export`
/// opens it; with each file's rows now.
async fn file_queries(client: &mut Client, user: i64) -> Result<Vec<FileQuery>> {
    let id = user.to_string();
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    tx.batch_execute("SET LOCAL TimeZone = 'UTC'").await?;
    let listed = tx
        .query(
            "SELECT name, kind, storage_columns FROM lifecycle.export_contents($1, $2) \
              ORDER BY position",
            &[&SUBJECT_TYPE, &id],
        )
        .await
        .map_err(|e| anyhow!("lifecycle.export_contents: {}", describe(&e)))?;
    let mut files = Vec::new();
    for row in listed {
        let (name, kind, storage_columns): (String, String, Vec<String>) =
            (row.get(0), row.get(1), row.get(2));
        tx.query_one(
            "SELECT lifecycle.open_export($1, $2, NULL, $3, $4)",
            &[&SUBJECT_TYPE, &id, &name, &PROBE_CURSOR],
        )
        .await
        .map_err(|e| anyhow!("lifecycle.open_export ({name}): {}", describe(&e)))?;
        let statement: String = tx
            .query_one(
                "SELECT statement FROM pg_catalog.pg_cursors WHERE name = $1",
                &[&PROBE_CURSOR],
            )
            .await?
            .get(0);
        tx.batch_execute(&format!("CLOSE {PROBE_CURSOR}")).await?;
        let json_sql = bind(&statement, &[&id, SUBJECT_TYPE])?;
        let csv_sql = columns_query(&json_sql)?;
        let rows: i64 = tx
            .query_one(&format!("SELECT count(*) FROM ({json_sql}) q"), &[])
            .await
            .map_err(|e| anyhow!("counting the rows of {name}: {}", describe(&e)))?
            .get(0);
        files.push(FileQuery {
            name,
            kind,
            json_sql,
            csv_sql,
            storage_columns,
            rows,
        });
    }
    tx.commit().await?;
    Ok(files)
}

/// The file store `--export-files` fills.
fn files_dir(ctx: &Ctx) -> PathBuf {
    ctx.scripts.join("files")
}

/// `name` as an SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The distinct object keys of each file of a bundle (the values of its
/// storage columns), one list over all files.
async fn object_keys(client: &Client, files: &[FileQuery]) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    for f in files.iter().filter(|f| !f.storage_columns.is_empty()) {
        let union = f
            .storage_columns
            .iter()
            .map(|c| {
                format!(
                    "SELECT q.{}::text AS k FROM ({}) q",
                    quote_ident(c),
                    f.csv_sql
                )
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let rows = client
            .query(
                &format!("SELECT DISTINCT k FROM ({union}) x WHERE k IS NOT NULL AND k <> ''"),
                &[],
            )
            .await
            .map_err(|e| anyhow!("reading the object keys of {}: {}", f.name, describe(&e)))?;
        keys.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    Ok(keys)
}

/// Whether `key` names a file inside a local store as it is: relative,
/// no empty, `.` or `..` segment.
fn plain_key(key: &str) -> bool {
    !key.contains(['\\', '\0'])
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..")
}

/// Write a small object for each plain key into the file store; returns
/// how many were written.
fn store_objects(dir: &Path, keys: &[String]) -> Result<i64> {
    let mut written = 0;
    for key in keys.iter().filter(|k| plain_key(k)) {
        let path = dir.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, format!("stored object {key}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
        written += 1;
    }
    Ok(written)
}

async fn count(client: &Client, file: &FileQuery) -> Result<i64> {
    Ok(client
        .query_one(&format!("SELECT count(*) FROM ({}) q", file.json_sql), &[])
        .await
        .map_err(|e| anyhow!("counting the rows of {}: {}", file.name, describe(&e)))?
        .get(0))
}

// ----- the samples ------------------------------------------------------------------------

/// One COPY of every file.
#[derive(Clone, Copy)]
struct CopySample {
    ms: f64,
    bytes: u64,
    /// Lines of the text format: one per row (CSV: not counted).
    rows: u64,
    /// CPU seconds of the server's backend and of this client (NaN when
    /// the server is not on this machine).
    backend_cpu_s: f64,
    client_cpu_s: f64,
}

/// Clock ticks per second of the CPU times in `/proc` (USER_HZ, 100 on
/// Linux whatever the kernel's own tick).
const TICKS_PER_SECOND: f64 = 100.0;

/// User and system CPU seconds of a process or thread, from its `stat`.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let text = std::fs::read_to_string(stat).ok()?;
    // The command name, in parentheses, may hold spaces.
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / TICKS_PER_SECOND)
}

/// CPU seconds of each thread of process `pid`.
fn thread_cpu(pid: u32) -> BTreeMap<u32, f64> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return BTreeMap::new();
    };
    tasks
        .filter_map(|t| {
            let tid: u32 = t.ok()?.file_name().to_str()?.parse().ok()?;
            Some((tid, cpu_seconds(&format!("/proc/{pid}/task/{tid}/stat"))?))
        })
        .collect()
}

/// CPU seconds of the backends of `role` in the current database (pid ->
/// seconds); empty when the server is not on this machine.
async fn backend_cpu(ctx: &Ctx, client: &Client, role: &str) -> Result<BTreeMap<i32, f64>> {
    if !ctx.server.is_local() {
        return Ok(BTreeMap::new());
    }
    let pids: Vec<i32> = client
        .query(
            "SELECT pid FROM pg_catalog.pg_stat_activity \
              WHERE usename = $1 AND datname = current_database()",
            &[&role],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    Ok(pids
        .into_iter()
        .filter_map(|p| Some((p, cpu_seconds(&format!("/proc/{p}/stat"))?)))
        .collect())
}

/// What `after` used since `before`, over every process or thread (one
/// that started in between counts whole).
fn cpu_used<K: Ord>(before: &BTreeMap<K, f64>, after: &BTreeMap<K, f64>) -> (f64, f64) {
    let deltas = after
        .iter()
        .map(|(k, v)| v - before.get(k).copied().unwrap_or(0.0));
    deltas.fold((0.0, 0.0), |(sum, max), d| (sum + d, f64::max(max, d)))
}

/// COPY every file of `subject` to this client in one snapshot, as JSON
/// rows (`csv` false) or as CSV with a header.
async fn copy_rows(
    ctx: &Ctx,
    client: &mut Client,
    subject: &Subject,
    csv: bool,
) -> Result<CopySample> {
    let backend: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let backend_stat = format!("/proc/{backend}/stat");
    let local = ctx.server.is_local();
    let cpu = || {
        (
            local
                .then(|| cpu_seconds(&backend_stat))
                .flatten()
                .unwrap_or(f64::NAN),
            cpu_seconds("/proc/self/stat").unwrap_or(f64::NAN),
        )
    };
    let cpu_before = cpu();
    let started = Instant::now();
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    tx.batch_execute("SET LOCAL TimeZone = 'UTC'").await?;
    let (mut bytes, mut rows) = (0u64, 0u64);
    for f in &subject.files {
        let sql = if csv {
            format!("COPY ({}) TO STDOUT (FORMAT csv, HEADER)", f.csv_sql)
        } else {
            format!("COPY ({}) TO STDOUT", f.json_sql)
        };
        let stream = tx
            .copy_out(sql.as_str())
            .await
            .map_err(|e| anyhow!("COPY of {}: {}", f.name, describe(&e)))?;
        futures_util::pin_mut!(stream);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| anyhow!("COPY of {}: {}", f.name, describe(&e)))?;
            bytes += chunk.len() as u64;
            if !csv {
                // The text format escapes line breaks inside values.
                rows += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
            }
        }
    }
    tx.commit().await?;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let cpu_after = cpu();
    Ok(CopySample {
        ms,
        bytes,
        rows,
        backend_cpu_s: cpu_after.0 - cpu_before.0,
        client_cpu_s: cpu_after.1 - cpu_before.1,
    })
}

/// One export by a fresh `lifecycled`.
#[derive(Clone)]
struct ExportSample {
    /// From the request to the status `completed`, seen by this client.
    wall_ms: f64,
    /// From the request to the worker's claim, and from the claim to the
    /// completion (the job's own timestamps).
    queue_ms: f64,
    build_ms: f64,
    /// `VmHWM` after the job, `VmRSS` once the service was ready (KiB).
    peak_rss_kib: u64,
    idle_rss_kib: u64,
    bundle_bytes: u64,
    rows: u64,
    entries: u64,
    /// Stored objects copied into the bundle.
    objects: u64,
    /// CPU seconds from the request to the completion: all of `lifecycled`,
    /// its busiest thread, and the server's backends of the service role
    /// (NaN when the server is not on this machine).
    lifecycled_cpu_s: f64,
    busiest_thread_cpu_s: f64,
    backend_cpu_s: f64,
    /// A correctness check that failed.
    failure: Option<String>,
}

/// A field of `/proc/<pid>/status`, in KiB.
fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .strip_prefix(':')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

/// The last lines of a log, for an error message.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// A `lifecycled serve` with its worker building exports only.
struct Service {
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
}

impl Service {
    async fn start(
        ctx: &Ctx,
        opts: &Options,
        db: &str,
        password: &str,
        storage: &Path,
        files: Option<&Path>,
    ) -> Result<Service> {
        let admin = Config::from_str(&opts.admin_url).context("parsing the admin URL")?;
        let port = free_port()?;
        let log = ctx.scripts.join("lifecycled-export.log");
        let log_file = std::fs::File::create(&log)?;
        let mut command = tokio::process::Command::new(&opts.lifecycled);
        command.args([
            "serve",
            "--database-url",
            &url(&admin, db, SERVICE_ROLE, password),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--storage-url",
            &format!("file://{}", storage.display()),
            "--worker-job-types",
            "export",
        ]);
        if let Some(files) = files {
            command
                .arg("--files-url")
                .arg(format!("file://{}", files.display()));
        }
        let child = command
            .env("RUST_LOG", "warn")
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", opts.lifecycled.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("lifecycled exited at once (log: {})", log.display()))?;
        let mut service = Service { child, pid, log };
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = get(port, "/readyz", None).await {
                return Ok(service);
            }
            if let Some(status) = service.child.try_wait()? {
                bail!(
                    "lifecycled serve exited ({status}):\n{}",
                    tail(&service.log)
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "lifecycled serve is not ready after 60 s:\n{}",
                    tail(&service.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        let _ = tokio::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// Request the export of `subject`, let a fresh `lifecycled` build it, and
/// measure.
async fn export_once(
    ctx: &Ctx,
    opts: &Options,
    db: &str,
    subject: &Subject,
    password: &str,
) -> Result<ExportSample> {
    let storage = ctx.scripts.join("storage");
    let _ = std::fs::remove_dir_all(&storage);
    std::fs::create_dir_all(&storage).with_context(|| format!("creating {}", storage.display()))?;
    let files = opts.files.then(|| files_dir(ctx));
    let service = Service::start(ctx, opts, db, password, &storage, files.as_deref()).await?;
    let result = measure_export(ctx, db, subject, &service, &storage).await;
    service.stop().await;
    let _ = std::fs::remove_dir_all(&storage);
    result
}

async fn measure_export(
    ctx: &Ctx,
    db: &str,
    subject: &Subject,
    service: &Service,
    storage: &Path,
) -> Result<ExportSample> {
    let idle_rss_kib = proc_status_kib(service.pid, "VmRSS").unwrap_or(0);
    let client = ctx.server.connect(db).await?;
    let audit_before = match subject.audit() {
        Some(f) => count(&client, f).await?,
        None => 0,
    };
    let threads_before = thread_cpu(service.pid);
    let backends_before = backend_cpu(ctx, &client, SERVICE_ROLE).await?;
    let started = Instant::now();
    let job: uuid::Uuid = client
        .query_one(
            "SELECT lifecycle.request_export($1, $2, NULL, 'bench', 'benchmark')",
            &[&SUBJECT_TYPE, &subject.id()],
        )
        .await
        .map_err(|e| anyhow!("lifecycle.request_export: {}", describe(&e)))?
        .get(0);
    let poll = client
        .prepare("SELECT status, error FROM lifecycle.jobs WHERE id = $1")
        .await?;
    loop {
        let row = client.query_one(&poll, &[&job]).await?;
        let (status, error): (String, Option<String>) = (row.get(0), row.get(1));
        match status.as_str() {
            "completed" => break,
            "failed" | "rejected" | "cancelled" => bail!(
                "the export job {job} is {status}: {}\nlifecycled's log:\n{}",
                error.unwrap_or_default(),
                tail(&service.log)
            ),
            _ => {}
        }
        if started.elapsed() > JOB_TIMEOUT {
            bail!(
                "the export job {job} is still {status} after {} s",
                JOB_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (lifecycled_cpu_s, busiest_thread_cpu_s) =
        cpu_used(&threads_before, &thread_cpu(service.pid));
    let backend_cpu_s = if ctx.server.is_local() {
        cpu_used(
            &backends_before,
            &backend_cpu(ctx, &client, SERVICE_ROLE).await?,
        )
        .0
    } else {
        f64::NAN
    };
    let peak_rss_kib = proc_status_kib(service.pid, "VmHWM")
        .ok_or_else(|| anyhow!("no VmHWM in /proc/{}/status", service.pid))?;

    let row = client
        .query_one(
            "SELECT (extract(epoch FROM j.started_at - j.requested_at) * 1000)::float8, \
                    (extract(epoch FROM j.finished_at - j.started_at) * 1000)::float8, \
                    (j.result #>> '{bundle,rows}')::bigint, \
                    (j.result #>> '{bundle,files}')::bigint, \
                    b.object_key, b.size_bytes, \
                    (j.result #>> '{bundle,objects}')::bigint, \
                    (j.result #>> '{bundle,objects_missing}')::bigint \
               FROM lifecycle.jobs j JOIN lifecycle.export_bundles b ON b.job_id = j.id \
              WHERE j.id = $1",
            &[&job],
        )
        .await
        .map_err(|e| anyhow!("reading the job and its bundle: {}", describe(&e)))?;
    let (queue_ms, build_ms): (f64, f64) = (row.get(0), row.get(1));
    let rows: i64 = row.get::<_, Option<i64>>(2).unwrap_or(-1);
    let entries: i64 = row.get::<_, Option<i64>>(3).unwrap_or(-1);
    let (key, size): (String, i64) = (row.get(4), row.get(5));
    let copied: i64 = row.get::<_, Option<i64>>(6).unwrap_or(-1);
    let missing: i64 = row.get::<_, Option<i64>>(7).unwrap_or(-1);
    let on_disk = std::fs::metadata(storage.join(&key))
        .map(|m| m.len())
        .with_context(|| format!("the bundle {key} is not in the store"))?;
    let audit_after = match subject.audit() {
        Some(f) => count(&client, f).await?,
        None => 0,
    };

    let base = subject.rows_without_audit();
    let mut failure = None;
    if rows < base + audit_before || rows > base + audit_after {
        failure = Some(format!(
            "the bundle of user {} holds {rows} rows; its files' queries return {} to {}",
            subject.user_id,
            base + audit_before,
            base + audit_after
        ));
    } else if on_disk != size as u64 {
        failure = Some(format!(
            "the bundle {key} has {on_disk} bytes in the store, the job says {size}"
        ));
    } else if (copied, missing)
        != (
            subject.objects_stored,
            subject.objects - subject.objects_stored,
        )
    {
        failure = Some(format!(
            "the bundle of user {} holds {copied} stored objects and lists {missing} as missing; \
             the file store holds {} of its {} objects",
            subject.user_id, subject.objects_stored, subject.objects
        ));
    }
    Ok(ExportSample {
        wall_ms,
        queue_ms,
        build_ms,
        peak_rss_kib,
        idle_rss_kib,
        bundle_bytes: on_disk,
        rows: rows.max(0) as u64,
        entries: entries.max(0) as u64,
        objects: copied.max(0) as u64,
        lifecycled_cpu_s,
        busiest_thread_cpu_s,
        backend_cpu_s,
        failure,
    })
}

// ----- the benchmark ------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Copy,
    Csv,
    Export,
}

struct Variant {
    name: String,
    kind: Kind,
    subject: usize,
}

#[derive(Default)]
struct Samples {
    copies: BTreeMap<String, Vec<CopySample>>,
    exports: BTreeMap<String, Vec<ExportSample>>,
}

async fn sample(
    ctx: &Ctx,
    opts: &Options,
    db: &str,
    password: &str,
    subjects: &[Subject],
    v: &Variant,
) -> Result<(Option<CopySample>, Option<ExportSample>)> {
    let subject = &subjects[v.subject];
    Ok(match v.kind {
        Kind::Copy | Kind::Csv => {
            let mut client = ctx.server.connect(db).await?;
            let s = copy_rows(ctx, &mut client, subject, v.kind == Kind::Csv).await?;
            (Some(s), None)
        }
        Kind::Export => (
            None,
            Some(export_once(ctx, opts, db, subject, password).await?),
        ),
    })
}

fn print_sample(
    prefix: &str,
    v: &Variant,
    subject: &Subject,
    c: Option<&CopySample>,
    e: Option<&ExportSample>,
) {
    let rows = subject.rows() as f64;
    if let Some(c) = c {
        println!(
            "  {prefix}  {:<14} {:>10.0} ms  {:>10.0} rows/s  {:>8.1} MiB  (CPU: backend {:.2} s, client {:.2} s{})",
            v.name,
            c.ms,
            rows / (c.ms / 1000.0),
            c.bytes as f64 / MIB,
            c.backend_cpu_s,
            c.client_cpu_s,
            if v.kind == Kind::Copy {
                format!("; {} rows", c.rows)
            } else {
                String::new()
            }
        );
    }
    if let Some(e) = e {
        println!(
            "  {prefix}  {:<14} {:>10.0} ms  {:>10.0} rows/s  {:>8.1} MiB  (claimed after {:.0} ms, built in {:.0} ms; \
             CPU: backend {:.2} s, lifecycled {:.2} s, its busiest thread {:.2} s; \
             {} rows, {} entries, {} stored objects; peak RSS {:.1} MiB, {:.1} MiB when ready)",
            v.name,
            e.wall_ms,
            e.rows as f64 / (e.wall_ms / 1000.0),
            e.bundle_bytes as f64 / MIB,
            e.queue_ms,
            e.build_ms,
            e.backend_cpu_s,
            e.lifecycled_cpu_s,
            e.busiest_thread_cpu_s,
            e.rows,
            e.entries,
            e.objects,
            e.peak_rss_kib as f64 / 1024.0,
            e.idle_rss_kib as f64 / 1024.0
        );
    }
}

pub async fn run(ctx: &Ctx, opts: &Options) -> Result<Outcome> {
    println!();
    println!("== export ==");
    if !opts.lifecycled.exists() {
        bail!(
            "{} is missing: cargo build --release -p lifecycled (or --lifecycled PATH)",
            opts.lifecycled.display()
        );
    }
    let (db, heavy) = ensure_database(ctx, opts).await?;
    let password = format!("bench-{}-{}", std::process::id(), free_port()?);
    let reset_secs = reset(ctx, opts, &db, &password).await?;
    println!(
        "  {db}: extension created, data map registered, service role {SERVICE_ROLE} set up in {reset_secs:.1} s"
    );

    let mut subjects = Vec::new();
    for rows in opts.sizes() {
        let user_id = heavy[&rows];
        let mut client = ctx.server.connect(&db).await?;
        let owned: Vec<(String, i64)> = client
            .query(
                "SELECT table_name, rows FROM app.owned_rows($1) WHERE rows > 0 ORDER BY 1",
                &[&user_id],
            )
            .await?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let files = file_queries(&mut client, user_id).await?;
        let keys = object_keys(&client, &files).await?;
        let objects_stored = if opts.files {
            let started = Instant::now();
            let n = store_objects(&files_dir(ctx), &keys)?;
            println!(
                "  user {user_id}: {n} of {} stored objects written to the file store in {:.1} s",
                keys.len(),
                started.elapsed().as_secs_f64()
            );
            n
        } else {
            0
        };
        let subject = Subject {
            label: size_label(rows),
            asked: rows,
            user_id,
            owned,
            files,
            objects: keys.len() as i64,
            objects_stored,
        };
        println!(
            "  user {user_id} ({}): {} rows in {} files, {} stored objects: {}",
            subject.label,
            subject.rows(),
            subject.files.len(),
            subject.objects,
            subject
                .files
                .iter()
                .map(|f| format!("{} {}", f.name, f.rows))
                .collect::<Vec<_>>()
                .join(", ")
        );
        subjects.push(subject);
    }

    let mut variants = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        for (kind, prefix) in [
            (Kind::Copy, "copy"),
            (Kind::Csv, "csv"),
            (Kind::Export, "export"),
        ] {
            variants.push(Variant {
                name: format!("{prefix}_{}", s.label),
                kind,
                subject: i,
            });
        }
    }

    let method = format!(
        "{} rounds, variants alternating; COPY in one REPEATABLE READ transaction read by this client; \
         export from request_export to status completed, a fresh lifecycled serve per export \
         (worker on, local store, {}), extension recreated before each round (untimed)",
        ctx.rounds,
        if opts.files {
            "a local file store holding a small object per storage key"
        } else {
            "no file store"
        }
    );
    println!();
    println!("export: bundle against COPY of the same rows ({method})");

    let mut failures = Vec::new();
    let mut dirty = false;
    if ctx.warmup > 0 {
        for v in &variants {
            let (c, e) = sample(ctx, opts, &db, &password, &subjects, v).await?;
            dirty |= e.is_some();
            if let Some(f) = e.as_ref().and_then(|e| e.failure.clone()) {
                failures.push(f);
            }
            print_sample("warm-up  ", v, &subjects[v.subject], c.as_ref(), e.as_ref());
        }
    }
    let mut samples = Samples::default();
    let mut resets = Vec::new();
    let order: Vec<usize> = (0..variants.len()).collect();
    for round in 0..ctx.rounds {
        if dirty {
            resets.push(reset(ctx, opts, &db, &password).await?);
        }
        dirty = false;
        for i in rotated(&order, round as usize) {
            let v = &variants[i];
            let (c, e) = sample(ctx, opts, &db, &password, &subjects, v).await?;
            print_sample(
                &format!("round {}/{}", round + 1, ctx.rounds),
                v,
                &subjects[v.subject],
                c.as_ref(),
                e.as_ref(),
            );
            if let Some(c) = c {
                samples.copies.entry(v.name.clone()).or_default().push(c);
            }
            if let Some(e) = e {
                dirty = true;
                if let Some(f) = &e.failure {
                    failures.push(f.clone());
                }
                samples.exports.entry(v.name.clone()).or_default().push(e);
            }
        }
    }

    let (measurements, medians) = report(ctx, &subjects, &samples, &method);
    for m in &measurements {
        m.print();
    }
    println!();
    println!(
        "  side by side (medians)     ms        rows/s   claimed ms   built ms   bundle MiB   peak RSS MiB   \
         CPU s: backend   client/lifecycled   busiest thread"
    );
    for v in &variants {
        let rows = subjects[v.subject].rows() as f64;
        if let Some(c) = samples.copies.get(&v.name) {
            let m = |f: fn(&CopySample) -> f64| median(&c.iter().map(f).collect::<Vec<_>>());
            let ms = m(|s| s.ms);
            println!(
                "  {:<18} {:>10.0} {:>13.0} {:>12} {:>10} {:>12.1} {:>14} {:>17.2} {:>19.2}",
                v.name,
                ms,
                rows / (ms / 1000.0),
                "",
                "",
                m(|s| s.bytes as f64 / MIB),
                "",
                m(|s| s.backend_cpu_s),
                m(|s| s.client_cpu_s),
            );
        }
        if let Some(e) = samples.exports.get(&v.name) {
            let m = |f: fn(&ExportSample) -> f64| median(&e.iter().map(f).collect::<Vec<_>>());
            let ms = m(|s| s.wall_ms);
            println!(
                "  {:<18} {:>10.0} {:>13.0} {:>12.0} {:>10.0} {:>12.1} {:>14.1} {:>17.2} {:>19.2} {:>16.2}",
                v.name,
                ms,
                m(|s| s.rows as f64) / (ms / 1000.0),
                m(|s| s.queue_ms),
                m(|s| s.build_ms),
                m(|s| s.bundle_bytes as f64 / MIB),
                m(|s| s.peak_rss_kib as f64 / 1024.0),
                m(|s| s.backend_cpu_s),
                m(|s| s.lifecycled_cpu_s),
                m(|s| s.busiest_thread_cpu_s),
            );
        }
    }
    for f in &failures {
        println!("  CHECK FAILED: {f}");
    }

    let subjects_json: Vec<Value> = subjects
        .iter()
        .map(|s| {
            json!({
                "label": s.label,
                "rows_asked": s.asked,
                "user_id": s.user_id,
                "rows": s.rows(),
                "stored_objects": s.objects,
                "stored_objects_in_file_store": s.objects_stored,
                "owned_rows": s.owned.iter().map(|(t, n)| (t.clone(), json!(n))).collect::<serde_json::Map<_, _>>(),
                "files": s.files.iter().map(|f| json!({"name": f.name, "kind": f.kind, "rows": f.rows})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let exports_json: serde_json::Map<String, Value> = samples
        .exports
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Value::Array(
                    v.iter()
                        .map(|s| {
                            json!({
                                "wall_ms": s.wall_ms,
                                "claimed_after_ms": s.queue_ms,
                                "built_in_ms": s.build_ms,
                                "peak_rss_kib": s.peak_rss_kib,
                                "ready_rss_kib": s.idle_rss_kib,
                                "bundle_bytes": s.bundle_bytes,
                                "rows": s.rows,
                                "entries": s.entries,
                                "objects": s.objects,
                                "lifecycled_cpu_s": s.lifecycled_cpu_s,
                                "busiest_thread_cpu_s": s.busiest_thread_cpu_s,
                                "backend_cpu_s": s.backend_cpu_s,
                            })
                        })
                        .collect(),
                ),
            )
        })
        .collect();
    Ok(Outcome {
        name: "export",
        measurements,
        extra: json!({
            "database": db,
            "users": opts.users,
            "subjects": subjects_json,
            "exports": exports_json,
            "medians": medians,
            "reset_seconds": resets,
        }),
        check_failed: (!failures.is_empty()).then(|| failures.join("; ")),
    })
}

/// The median of `f` over `samples` (NaN without samples).
fn med<T>(samples: Option<&Vec<T>>, f: impl Fn(&T) -> f64) -> f64 {
    samples.map_or(f64::NAN, |v| median(&v.iter().map(f).collect::<Vec<_>>()))
}

/// The measurements (rate per size, memory, size) and a table of medians.
fn report(
    ctx: &Ctx,
    subjects: &[Subject],
    samples: &Samples,
    method: &str,
) -> (Vec<Measurement>, Value) {
    let copy_series = |name: &str, f: fn(&CopySample) -> f64, as_name: &str| {
        let mut s = Series::new(as_name);
        s.samples = samples
            .copies
            .get(name)
            .map(|v| v.iter().map(f).collect())
            .unwrap_or_default();
        s
    };
    let export_series = |name: &str, f: fn(&ExportSample) -> f64, as_name: &str| {
        let mut s = Series::new(as_name);
        s.samples = samples
            .exports
            .get(name)
            .map(|v| v.iter().map(f).collect())
            .unwrap_or_default();
        s
    };
    let mut measurements = Vec::new();
    let mut medians = serde_json::Map::new();
    let big = &subjects[0];
    for (i, s) in subjects.iter().enumerate() {
        let (copy, csv, export) = (
            format!("copy_{}", s.label),
            format!("csv_{}", s.label),
            format!("export_{}", s.label),
        );
        measurements.push(Measurement {
            key: format!("rate_{}", s.label),
            title: format!(
                "export: the bundle of a user owning {} rows against COPY of the same rows (ms)",
                s.rows()
            ),
            method: method.to_string(),
            unit: Unit::Millis,
            rows_per_statement: Some(s.rows() as u64),
            series: vec![
                copy_series(&copy, |c| c.ms, &copy),
                copy_series(&csv, |c| c.ms, &csv),
                export_series(&export, |e| e.wall_ms, &export),
            ],
            ratios: vec![
                Ratio::new(&export, &copy, (i == 0).then_some(GOAL_RATE)),
                Ratio::new(&export, &csv, None),
            ],
        });
        let e = samples.exports.get(&export);
        medians.insert(
            export.clone(),
            json!({
                "wall_ms": med(e, |e| e.wall_ms),
                "built_in_ms": med(e, |e| e.build_ms),
                "peak_rss_kib": med(e, |e| e.peak_rss_kib as f64),
                "bundle_bytes": med(e, |e| e.bundle_bytes as f64),
                "lifecycled_cpu_s": med(e, |e| e.lifecycled_cpu_s),
                "busiest_thread_cpu_s": med(e, |e| e.busiest_thread_cpu_s),
                "backend_cpu_s": med(e, |e| e.backend_cpu_s),
            }),
        );
        for name in [&copy, &csv] {
            let c = samples.copies.get(name);
            medians.insert(
                name.clone(),
                json!({
                    "ms": med(c, |c| c.ms),
                    "bytes": med(c, |c| c.bytes as f64),
                    "backend_cpu_s": med(c, |c| c.backend_cpu_s),
                    "client_cpu_s": med(c, |c| c.client_cpu_s),
                }),
            );
        }
    }
    // The memory goal compares the big size with the smallest.
    let smallest = &subjects[1.min(subjects.len() - 1)];
    let peak = |s: &Subject| format!("peak_rss_{}", s.label);
    let mut series: Vec<Series> = subjects
        .iter()
        .map(|s| {
            export_series(
                &format!("export_{}", s.label),
                |e| e.peak_rss_kib as f64 / 1024.0,
                &peak(s),
            )
        })
        .collect();
    series.extend(subjects.iter().map(|s| {
        export_series(
            &format!("export_{}", s.label),
            |e| e.idle_rss_kib as f64 / 1024.0,
            &format!("ready_rss_{}", s.label),
        )
    }));
    let ratios = subjects[1..]
        .iter()
        .map(|s| {
            Ratio::time(
                &peak(big),
                &peak(s),
                (s.label == smallest.label).then_some(GOAL_RSS),
            )
        })
        .collect();
    measurements.push(Measurement {
        key: "memory".into(),
        title: format!(
            "export: peak resident memory of lifecycled (VmHWM, MiB) exporting {} rows, a fresh process each",
            subjects
                .iter()
                .map(|s| s.rows().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        method: format!(
            "{} rounds; ready_rss_* is VmRSS once the service answered /readyz, before the request",
            ctx.rounds
        ),
        unit: Unit::Mib,
        rows_per_statement: None,
        series,
        ratios,
    });
    let mut series = Vec::new();
    let mut ratios = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        let (bundle, raw, json_rows) = (
            format!("bundle_{}", s.label),
            format!("raw_csv_{}", s.label),
            format!("json_rows_{}", s.label),
        );
        series.push(export_series(
            &format!("export_{}", s.label),
            |e| e.bundle_bytes as f64 / MIB,
            &bundle,
        ));
        series.push(copy_series(
            &format!("csv_{}", s.label),
            |c| c.bytes as f64 / MIB,
            &raw,
        ));
        series.push(copy_series(
            &format!("copy_{}", s.label),
            |c| c.bytes as f64 / MIB,
            &json_rows,
        ));
        ratios.push(Ratio::time(&bundle, &raw, (i == 0).then_some(GOAL_SIZE)));
    }
    measurements.push(Measurement {
        key: "size".into(),
        title: "export: bundle size against the raw CSV of the same rows (MiB)".into(),
        method: "bundle: the ZIP in the store (README, JSON and CSV of every file, deflated); \
                 raw CSV: COPY ... (FORMAT csv, HEADER) of every file's columns; json rows: \
                 COPY of open_export's rows (text)"
            .into(),
        unit: Unit::Mib,
        rows_per_statement: None,
        series,
        ratios,
    });
    (measurements, Value::Object(medians))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_become_literals() {
        assert_eq!(
            bind(
                "SELECT 1 WHERE a = $1 AND b = $2 AND c = '$1'",
                &["42", "us'er"]
            )
            .unwrap(),
            "SELECT 1 WHERE a = '42' AND b = 'us''er' AND c = '$1'"
        );
        assert_eq!(bind("SELECT $$", &[]).unwrap(), "SELECT $$");
        assert!(bind("SELECT $3", &["a", "b"]).is_err());
        assert!(bind("SELECT $0", &["a"]).is_err());
    }

    #[test]
    fn the_inner_select_is_the_columns() {
        let q = "SELECT pg_catalog.to_json(r.*) AS \"row\" FROM (SELECT \"id\", \"title\" FROM \"app\".\"posts\" \
                 WHERE author_id = '7' ORDER BY id) r";
        assert_eq!(
            columns_query(q).unwrap(),
            "SELECT \"id\", \"title\" FROM \"app\".\"posts\" WHERE author_id = '7' ORDER BY id"
        );
        assert!(columns_query("SELECT 1").is_err());
    }

    #[test]
    fn only_plain_keys_are_stored() {
        assert!(plain_key("workspaces/1/files/a.png"));
        for k in ["/etc/passwd", "a/../b", "a//b", "./a", "a\\b", "a/"] {
            assert!(!plain_key(k), "{k}");
        }
        assert_eq!(quote_ident("storage_key"), "\"storage_key\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        let dir = std::env::temp_dir().join(format!("lc-bench-objects-{}", std::process::id()));
        let keys = ["w/1/a.txt".to_string(), "../x".to_string()];
        assert_eq!(store_objects(&dir, &keys).unwrap(), 1);
        assert_eq!(
            std::fs::read_to_string(dir.join("w/1/a.txt")).unwrap(),
            "stored object w/1/a.txt\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn sizes_name_variants() {
        assert_eq!(size_label(1_000_000), "1m");
        assert_eq!(size_label(10_000), "10k");
        assert_eq!(size_label(2_500), "2500");
    }

    #[test]
    fn cpu_times_are_read_and_added_up() {
        let pid = std::process::id();
        assert!(cpu_seconds(&format!("/proc/{pid}/stat")).is_some_and(|s| s >= 0.0));
        assert!(!thread_cpu(pid).is_empty());
        let before = BTreeMap::from([(1, 1.0), (2, 5.0)]);
        let after = BTreeMap::from([(1, 1.5), (2, 7.0), (3, 0.25)]);
        assert_eq!(cpu_used(&before, &after), (2.75, 2.0));
    }

    #[test]
    fn status_fields_are_read_in_kib() {
        let pid = std::process::id();
        assert!(proc_status_kib(pid, "VmHWM").is_some_and(|k| k > 0));
        assert!(proc_status_kib(pid, "NoSuchField").is_none());
    }
}
