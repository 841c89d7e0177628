//! `api`: the control plane's job list and counts under load. A database
//! of 1,000,000 jobs over 1,000 named tenants (and one of 10,000 jobs for
//! the counts), the real `lifecycled` binary on loopback loaded by wrk with
//! 16 connections, side by side in the same rounds with pgbench running the
//! statements `lifecycled` runs, with 16 clients: the database alone, the
//! limit. Reported: requests per second, p50 and p99 of each, and the
//! ratios against the goals (p99 at most 25 ms for both endpoints, the
//! API's throughput at least half of pgbench's, the counts at 1,000,000
//! jobs at most twice as slow as at 10,000).
//!
//! Before any timing, the benchmark checks what the figures rest on: the
//! counts `lifecycle.job_stats()` reads equal a count of the jobs, the API
//! answers the page the function answers, and no filter combination of
//! `lifecycle.list_jobs()` reads the jobs table from start to end
//! (`auto_explain` on every statement the function runs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_postgres::config::Host;
use tokio_postgres::Config;

use crate::explain;
use crate::pg::{batch, describe, render};
use crate::report::{median, rotated, Measurement, Ratio, Series, Unit};
use crate::{Ctx, Outcome};

const SCHEMA: &str = include_str!("../sql/api_schema.sql");
const JOBS: &str = include_str!("../sql/api_jobs.sql");
const LIST_PGBENCH: &str = include_str!("../sql/api_list.pgbench");
const STATS_PGBENCH: &str = include_str!("../sql/api_stats.pgbench");
const LIST_LUA: &str = include_str!("../sql/api_list.lua");

/// Bumped when the generated data changes: older databases are rebuilt.
const DATA_VERSION: i32 = 1;

/// The columns `api_jobs.sql` selects, in its order.
const COLUMNS: &str = "id, job_type, target_type, target_id, tenant_id, status, requested_by, \
     reason, jurisdiction, requires_approval, approved_by, approved_at, rejected_by, rejected_at, \
     rejection_reason, cancelled_by, cancelled_at, requested_at, scheduled_for, due_at, attempts, \
     worker, lease_expires_at, started_at, finished_at, error, error_sqlstate, updated_at";

/// The service role `lifecycled setup` creates for the benchmark.
const SERVICE_ROLE: &str = "lc_bench_api_service";

/// Connections (wrk) and clients (pgbench), as the goals name them.
const CONCURRENCY: u32 = 16;

/// The p99 the goals allow, in milliseconds.
const P99_BUDGET_MS: f64 = 25.0;

/// The statements of the list page and the counts, as `lifecycled` runs them.
const HTTP_LIST_PATH: &str = "/api/v1/jobs?status=completed&type=erase&q=0042&limit=50";
const HTTP_STATS_PATH: &str = "/api/v1/jobs/stats";

pub struct Options {
    pub admin_url: String,
    pub jobs_big: u64,
    pub jobs_small: u64,
    pub tenants: u32,
    pub rebuild: bool,
    pub lifecycled: PathBuf,
    pub wrk: PathBuf,
}

pub fn database(jobs: u64) -> String {
    format!("lc_bench_api_{jobs}")
}

pub fn databases(opts: &Options) -> Vec<String> {
    vec![database(opts.jobs_big), database(opts.jobs_small)]
}

/// Seconds the run takes, roughly (data generation not included).
pub fn estimate(ctx: &Ctx) -> u32 {
    6 * (ctx.rounds * ctx.seconds + ctx.warmup) + 60
}

// ----- data -------------------------------------------------------------------------

/// The lifecycle objects (indexes, triggers, functions) of a database, as
/// one digest: a database built by an earlier installation of the
/// extension is rebuilt.
const FINGERPRINT: &str = "SELECT md5(string_agg(d, E'\\n' ORDER BY d)) FROM ( \
       SELECT pg_get_indexdef(i.indexrelid) AS d FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid \
        WHERE c.relnamespace = 'lifecycle'::regnamespace \
       UNION ALL \
       SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid \
        WHERE c.relnamespace = 'lifecycle'::regnamespace AND NOT t.tgisinternal \
       UNION ALL \
       SELECT pg_get_functiondef(p.oid) FROM pg_proc p \
        WHERE p.pronamespace = 'lifecycle'::regnamespace AND p.prokind IN ('f', 'p')) AS x";

async fn fingerprint(client: &tokio_postgres::Client) -> Result<String> {
    let row = client
        .query_one(FINGERPRINT, &[])
        .await
        .map_err(|e| anyhow!("reading the extension's objects: {}", describe(&e)))?;
    Ok(row.get::<_, Option<String>>(0).unwrap_or_default())
}

/// Why the database `name` must be built again, or `None` to reuse it.
async fn stale(ctx: &Ctx, name: &str, jobs: u64, tenants: u32, installed: &str) -> Option<String> {
    let client = match ctx.server.connect(name).await {
        Ok(c) => c,
        Err(_) => return Some("it does not exist".into()),
    };
    let generated = client
        .query_opt("SELECT jobs, tenants, version FROM bench.generated", &[])
        .await;
    match generated {
        Ok(Some(r))
            if (r.get::<_, i64>(0), r.get::<_, i32>(1), r.get::<_, i32>(2))
                == (jobs as i64, tenants as i32, DATA_VERSION) => {}
        _ => return Some("it holds other data".into()),
    }
    match fingerprint(&client).await {
        Ok(f) if f == installed => None,
        _ => Some("the installed extension defines other objects".into()),
    }
}

/// The digest of the installed extension's objects, from a scratch database.
async fn installed_fingerprint(ctx: &Ctx) -> Result<String> {
    let probe = "lc_bench_api_probe";
    let client = ctx
        .server
        .fresh_database_with_extension(probe, ctx.synchronous_commit)
        .await?;
    let f = fingerprint(&client).await;
    drop(client);
    ctx.server.drop_database(probe).await?;
    f
}

/// Build (or reuse) the database of `jobs` jobs: the tenants registered with
/// their names, the jobs loaded with COPY (as a restore loads them, so that
/// every state can be written), then vacuumed and analyzed.
async fn ensure_database(ctx: &Ctx, opts: &Options, jobs: u64, installed: &str) -> Result<String> {
    let name = database(jobs);
    let reason = if opts.rebuild {
        Some("--api-rebuild".to_string())
    } else {
        stale(ctx, &name, jobs, opts.tenants, installed).await
    };
    let Some(reason) = reason else {
        println!("  {name}: reused ({jobs} jobs, {} tenants)", opts.tenants);
        return Ok(name);
    };
    println!(
        "  {name}: generating {jobs} jobs over {} tenants ({reason})",
        opts.tenants
    );
    let started = Instant::now();
    let vars = [
        ("TENANTS", opts.tenants.to_string()),
        ("JOBS", jobs.to_string()),
    ];
    let client = ctx
        .server
        .fresh_database_with_extension(&name, ctx.synchronous_commit)
        .await?;
    batch(&client, &render(SCHEMA, &vars), "creating the tenants").await?;
    let source = ctx.server.connect(&name).await?;
    batch(&source, "SELECT setseed(0.42)", "seeding random()").await?;
    let query: String = render(JOBS, &vars)
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let rows = source
        .copy_out(&format!("COPY ({query}) TO STDOUT"))
        .await
        .map_err(|e| anyhow!("generating jobs: {}", describe(&e)))?;
    let sink = client
        .copy_in(&format!("COPY lifecycle.jobs ({COLUMNS}) FROM STDIN"))
        .await
        .map_err(|e| anyhow!("loading jobs: {}", describe(&e)))?;
    futures_util::pin_mut!(rows, sink);
    while let Some(chunk) = rows.next().await {
        let chunk = chunk.map_err(|e| anyhow!("generating jobs: {}", describe(&e)))?;
        sink.send(chunk)
            .await
            .map_err(|e| anyhow!("loading jobs: {}", describe(&e)))?;
    }
    let loaded = sink
        .finish()
        .await
        .map_err(|e| anyhow!("loading jobs: {}", describe(&e)))?;
    if loaded != jobs {
        bail!("{name}: loaded {loaded} jobs, not {jobs}");
    }
    batch(&client, "VACUUM ANALYZE", "VACUUM ANALYZE").await?;
    client
        .execute(
            "INSERT INTO bench.generated (jobs, tenants, version) VALUES ($1, $2, $3)",
            &[&(jobs as i64), &(opts.tenants as i32), &DATA_VERSION],
        )
        .await
        .map_err(|e| anyhow!("recording the data: {}", describe(&e)))?;
    println!(
        "  {name}: {jobs} jobs in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(name)
}

// ----- checks -----------------------------------------------------------------------

/// `job_stats()` against a count of the jobs (a full scan, untimed).
async fn check_counts(ctx: &Ctx, db: &str) -> Result<Option<String>> {
    let c = ctx.server.connect(db).await?;
    let sql = "SELECT count(*) FROM (SELECT status, job_type, jobs FROM lifecycle.job_stats() \
                 EXCEPT SELECT s, t, count(j.id) \
                   FROM unnest(ARRAY['pending', 'approved', 'processing', 'completed', 'failed', \
                                     'rejected', 'cancelled']) s \
                  CROSS JOIN unnest(ARRAY['export', 'erase', 'purge']) t \
                   LEFT JOIN lifecycle.jobs j ON j.status = s AND j.job_type = t GROUP BY s, t) d";
    let differ: i64 = c
        .query_one(sql, &[])
        .await
        .map_err(|e| anyhow!("checking the counts: {}", describe(&e)))?
        .get(0);
    Ok((differ > 0).then(|| format!("{db}: job_stats() differs from the jobs in {differ} counts")))
}

/// Every plan node of one logged statement that reads `lifecycle.jobs`
/// from start to end.
fn seq_scans_of_jobs(node: &Value) -> usize {
    let here = node.get("Node Type").and_then(Value::as_str) == Some("Seq Scan")
        && node.get("Relation Name").and_then(Value::as_str) == Some("jobs")
        && node.get("Schema").and_then(Value::as_str) == Some("lifecycle");
    let below: usize = node
        .get("Plans")
        .and_then(Value::as_array)
        .map_or(0, |c| c.iter().map(seq_scans_of_jobs).sum());
    usize::from(here) + below
}

/// What the plans of every filter combination read.
struct Plans {
    combinations: usize,
    seq_scans: Vec<String>,
    /// (blocks, combination) of the combination that read the most.
    worst: (f64, String),
    table_blocks: f64,
}

impl Plans {
    fn failure(&self) -> Option<String> {
        if !self.seq_scans.is_empty() {
            return Some(format!(
                "list_jobs reads lifecycle.jobs from start to end for {}",
                self.seq_scans.join("; ")
            ));
        }
        (self.worst.0 > self.table_blocks / 10.0).then(|| {
            format!(
                "list_jobs read {:.0} of the table's {:.0} blocks for {}",
                self.worst.0, self.table_blocks, self.worst.1
            )
        })
    }
}

async fn check_plans(ctx: &Ctx, db: &str) -> Result<Plans> {
    let (c, mut notices) = ctx.server.connect_with_notices(db).await?;
    batch(&c, explain::SETUP, "loading auto_explain").await?;
    let sample = c
        .query_one(
            "SELECT id, target_id, tenant_id, pg_relation_size('lifecycle.jobs') / 8192 \
               FROM lifecycle.jobs ORDER BY requested_at DESC OFFSET 1000 LIMIT 1",
            &[],
        )
        .await
        .map_err(|e| anyhow!("choosing a job: {}", describe(&e)))?;
    let (job, target, tenant, table_blocks): (uuid::Uuid, String, String, i64) =
        (sample.get(0), sample.get(1), sample.get(2), sample.get(3));
    let other = if tenant == "ws-0001" {
        "ws-0002"
    } else {
        "ws-0001"
    };
    let searches = [
        None,
        Some("0042".to_string()),
        Some("Northwind".to_string()),
        Some(job.to_string()),
        Some(target),
    ];
    let scopes = [
        None,
        Some(vec![tenant.clone()]),
        Some(vec![tenant, other.to_string()]),
    ];
    let top = "SELECT count(*) FROM lifecycle.list_jobs(status => $1, job_type => $2, q => $3, \
               tenants => $4, lim => 51)";
    let mut plans = Plans {
        combinations: 0,
        seq_scans: Vec::new(),
        worst: (0.0, String::new()),
        table_blocks: table_blocks as f64,
    };
    for status in [None, Some("pending"), Some("completed")] {
        for job_type in [None, Some("erase"), Some("purge")] {
            for tenants in &scopes {
                for q in &searches {
                    let what = format!(
                        "status {status:?}, type {job_type:?}, tenants {tenants:?}, q {q:?}"
                    );
                    batch(&c, explain::ON, "auto_explain on").await?;
                    while notices.try_recv().is_ok() {}
                    let r = c.query(top, &[&status, &job_type, q, tenants]).await;
                    let mut messages = Vec::new();
                    while let Ok(n) = notices.try_recv() {
                        messages.push(n);
                    }
                    batch(&c, explain::OFF, "auto_explain off").await?;
                    r.map_err(|e| anyhow!("list_jobs ({what}): {}", describe(&e)))?;
                    plans.combinations += 1;
                    let mut blocks = 0.0;
                    for m in &messages {
                        let Some(logged) = explain::parse_notice(m) else {
                            continue;
                        };
                        if logged.text.contains("lifecycle.list_jobs") {
                            blocks = logged.blocks;
                        }
                        let plan = m
                            .find('{')
                            .and_then(|i| serde_json::from_str::<Value>(&m[i..]).ok());
                        if plan
                            .as_ref()
                            .and_then(|p| p.get("Plan"))
                            .is_some_and(|p| seq_scans_of_jobs(p) > 0)
                        {
                            plans.seq_scans.push(what.clone());
                        }
                    }
                    if blocks > plans.worst.0 {
                        plans.worst = (blocks, what);
                    }
                }
            }
        }
    }
    Ok(plans)
}

// ----- lifecycled ---------------------------------------------------------------------

/// The connection URL of `db` for `user` (the admin URL's host and port).
pub(crate) fn url(admin: &Config, db: &str, user: &str, password: &str) -> String {
    let host = match admin.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "127.0.0.1".into(),
    };
    let port = admin.get_ports().first().copied().unwrap_or(5432);
    format!("postgres://{user}:{password}@{host}:{port}/{db}")
}

pub(crate) fn admin_url(admin: &Config, db: &str) -> String {
    let user = admin.get_user().unwrap_or("postgres");
    let password = admin
        .get_password()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_default();
    url(admin, db, user, &password)
}

/// A `lifecycled serve` process of one database, and an admin token.
struct Service {
    child: tokio::process::Child,
    port: u16,
    token: String,
    token_name: String,
    database: String,
}

async fn lifecycled(opts: &Options, args: &[&str]) -> Result<String> {
    let out = tokio::process::Command::new(&opts.lifecycled)
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .with_context(|| format!("running {}", opts.lifecycled.display()))?;
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

/// A free port on the loopback address.
pub(crate) fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One HTTP/1.1 GET on loopback: (status, body).
pub(crate) async fn get(port: u16, path: &str, token: Option<&str>) -> Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status in {answer:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

impl Service {
    /// Prepare `db` with `lifecycled setup`, make a platform admin token,
    /// and serve it without the worker, without the per-token rate limit
    /// (one token sends every request), with one pool connection per
    /// load connection.
    /// `password` is the service role's, the same for every database (the
    /// role is the cluster's: a new password would lock out the services
    /// started before).
    async fn start(opts: &Options, db: &str, password: &str, logs: &Path) -> Result<Service> {
        let admin = Config::from_str(&opts.admin_url).context("parsing the admin URL")?;
        let admin_db = admin_url(&admin, db);
        lifecycled(
            opts,
            &[
                "setup",
                "--admin-url",
                &admin_db,
                "--service-role",
                SERVICE_ROLE,
                "--service-password",
                password,
            ],
        )
        .await?;
        let token_name = format!("bench-{db}-{}", std::process::id());
        let token = lifecycled(
            opts,
            &[
                "token",
                "create",
                "--name",
                &token_name,
                "--role",
                "platform-admin",
                "--database-url",
                &admin_db,
            ],
        )
        .await?;
        let port = free_port()?;
        let log = std::fs::File::create(logs.join(format!("lifecycled-{db}.log")))?;
        let child = tokio::process::Command::new(&opts.lifecycled)
            .args([
                "serve",
                "--database-url",
                &url(&admin, db, SERVICE_ROLE, password),
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--no-worker",
                "--rate-limit-per-second",
                "0",
                "--db-pool-size",
                &CONCURRENCY.to_string(),
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", opts.lifecycled.display()))?;
        let service = Service {
            child,
            port,
            token,
            token_name,
            database: db.to_string(),
        };
        let started = Instant::now();
        loop {
            if let Ok((200, _)) = get(port, "/readyz", None).await {
                break;
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "lifecycled for {db} is not ready after 60 s (log: {})",
                    logs.join(format!("lifecycled-{db}.log")).display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(service)
    }

    /// The page the API answers against the page the function answers.
    async fn check_list(&self, ctx: &Ctx) -> Result<Option<String>> {
        let (status, body) = get(self.port, HTTP_LIST_PATH, Some(&self.token)).await?;
        if status != 200 {
            return Ok(Some(format!("GET {HTTP_LIST_PATH}: {status} {body}")));
        }
        let page: Value = serde_json::from_str(&body).context("reading the API's page")?;
        let api: Vec<String> = page["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let c = ctx.server.connect(&self.database).await?;
        let sql: Vec<String> = c
            .query(
                "SELECT id::text FROM lifecycle.list_jobs(status => 'completed', job_type => 'erase', \
                 q => '0042', lim => 50)",
                &[],
            )
            .await
            .map_err(|e| anyhow!("list_jobs: {}", describe(&e)))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        Ok((api != sql || api.is_empty()).then(|| {
            format!(
                "GET {HTTP_LIST_PATH} answered {} jobs, lifecycle.list_jobs {} (or other ones)",
                api.len(),
                sql.len()
            )
        }))
    }

    async fn stop(mut self, opts: &Options) {
        if let Some(pid) = self.child.id() {
            let _ = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let admin = Config::from_str(&opts.admin_url).ok();
        if let Some(admin) = admin {
            let _ = lifecycled(
                opts,
                &[
                    "token",
                    "revoke",
                    &self.token_name,
                    "--database-url",
                    &admin_url(&admin, &self.database),
                ],
            )
            .await;
        }
    }
}

// ----- load -----------------------------------------------------------------------------

/// One measured run: throughput, p50 and p99 in milliseconds.
#[derive(Clone, Copy)]
struct Sample {
    per_second: f64,
    p50: f64,
    p99: f64,
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// `5.12ms`, `812.00us`, `1.02s` in milliseconds.
fn wrk_duration_ms(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (n, unit) = text.split_at(split);
    let n: f64 = n.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

/// Requests per second, p50 and p99 from `wrk --latency`; an error when
/// any answer was not a success or any socket failed.
fn parse_wrk(out: &str) -> Result<Sample> {
    let mut per_second = None;
    let mut pct = BTreeMap::new();
    for line in out.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            per_second = rest.trim().parse().ok();
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            bail!("{} answers were not successes", rest.trim());
        } else if line.starts_with("Socket errors:") {
            bail!("wrk: {line}");
        } else if let Some((p, v)) = line.split_once('%') {
            if let (Ok(p), Some(ms)) = (p.parse::<u32>(), wrk_duration_ms(v.trim())) {
                pct.insert(p, ms);
            }
        }
    }
    Ok(Sample {
        per_second: per_second.ok_or_else(|| anyhow!("no Requests/sec in wrk's output"))?,
        p50: *pct
            .get(&50)
            .ok_or_else(|| anyhow!("no p50 in wrk's output"))?,
        p99: *pct
            .get(&99)
            .ok_or_else(|| anyhow!("no p99 in wrk's output"))?,
    })
}

/// What a variant loads: the database through pgbench, or `lifecycled`.
enum Load {
    Pgbench {
        database: String,
        script: PathBuf,
    },
    Http {
        service: usize,
        path: &'static str,
        script: Option<PathBuf>,
    },
}

struct Variant {
    name: &'static str,
    load: Load,
}

async fn measure(
    ctx: &Ctx,
    opts: &Options,
    services: &[Service],
    v: &Variant,
    seconds: u32,
) -> Result<Sample> {
    match &v.load {
        Load::Pgbench { database, script } => {
            let (run, mut latencies) = ctx
                .server
                .pgbench_latencies(
                    database,
                    script,
                    CONCURRENCY,
                    2,
                    seconds,
                    &ctx.scripts.join(format!("log-{}", v.name)),
                )
                .await?;
            if run.failed > 0 {
                bail!("{}: {} transactions failed", v.name, run.failed);
            }
            latencies.sort_by(f64::total_cmp);
            Ok(Sample {
                per_second: run.tps,
                p50: percentile(&latencies, 0.50),
                p99: percentile(&latencies, 0.99),
            })
        }
        Load::Http {
            service,
            path,
            script,
        } => {
            let s = &services[*service];
            let mut cmd = tokio::process::Command::new(&opts.wrk);
            cmd.args(["-t", "2", "-c", &CONCURRENCY.to_string()])
                .args(["-d", &format!("{seconds}s"), "--latency"])
                .args(["-H", &format!("Authorization: Bearer {}", s.token)]);
            if let Some(script) = script {
                cmd.arg("-s").arg(script);
            }
            let out = cmd
                .arg(format!("http://127.0.0.1:{}{path}", s.port))
                .output()
                .await
                .with_context(|| format!("running {}", opts.wrk.display()))?;
            let text = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                bail!(
                    "wrk ({}): {}{}",
                    v.name,
                    text,
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            parse_wrk(&text).with_context(|| format!("{}:\n{text}", v.name))
        }
    }
}

// ----- the benchmark ----------------------------------------------------------------------

pub async fn run(ctx: &Ctx, opts: &Options) -> Result<Outcome> {
    println!();
    println!("== api ==");
    let installed = installed_fingerprint(ctx).await?;
    let big = ensure_database(ctx, opts, opts.jobs_big, &installed).await?;
    let small = ensure_database(ctx, opts, opts.jobs_small, &installed).await?;

    let mut failures = Vec::new();
    for db in [&big, &small] {
        failures.extend(check_counts(ctx, db).await?);
    }
    let plans = check_plans(ctx, &big).await?;
    println!(
        "  list_jobs plans: {} filter combinations at {} jobs, {} read lifecycle.jobs from start to end; \
         the most blocks one read: {:.0} of {:.0} ({})",
        plans.combinations,
        opts.jobs_big,
        plans.seq_scans.len(),
        plans.worst.0,
        plans.table_blocks,
        plans.worst.1
    );
    failures.extend(plans.failure());

    let vars = [("TENANTS", opts.tenants.to_string())];
    let list_sql = ctx.script("api_list.pgbench", &render(LIST_PGBENCH, &vars))?;
    let stats_sql = ctx.script("api_stats.pgbench", &render(STATS_PGBENCH, &vars))?;
    let list_lua = ctx.script("api_list.lua", &render(LIST_LUA, &vars))?;

    let http = if !opts.lifecycled.exists() {
        println!(
            "  HTTP half skipped: {} is missing (cargo build --release -p lifecycled)",
            opts.lifecycled.display()
        );
        false
    } else if which(&opts.wrk).is_none() {
        println!(
            "  HTTP half skipped: {} is missing (apt-get install -y wrk)",
            opts.wrk.display()
        );
        false
    } else {
        true
    };
    let mut services = Vec::new();
    if http {
        let password = format!("bench-{}-{}", std::process::id(), free_port()?);
        for db in [&big, &small] {
            let s = Service::start(opts, db, &password, &ctx.scripts).await?;
            failures.extend(s.check_list(ctx).await?);
            services.push(s);
        }
    }
    let mut variants = vec![
        Variant {
            name: "pgbench_list",
            load: Load::Pgbench {
                database: big.clone(),
                script: list_sql.clone(),
            },
        },
        Variant {
            name: "pgbench_stats_1m",
            load: Load::Pgbench {
                database: big.clone(),
                script: stats_sql.clone(),
            },
        },
        Variant {
            name: "pgbench_stats_10k",
            load: Load::Pgbench {
                database: small.clone(),
                script: stats_sql,
            },
        },
    ];
    if http {
        variants.extend([
            Variant {
                name: "http_list",
                load: Load::Http {
                    service: 0,
                    path: "/",
                    script: Some(list_lua),
                },
            },
            Variant {
                name: "http_stats_1m",
                load: Load::Http {
                    service: 0,
                    path: HTTP_STATS_PATH,
                    script: None,
                },
            },
            Variant {
                name: "http_stats_10k",
                load: Load::Http {
                    service: 1,
                    path: HTTP_STATS_PATH,
                    script: None,
                },
            },
        ]);
    }

    let method = format!(
        "{CONCURRENCY} clients/connections, pgbench -M prepared -j 2 and wrk -t 2 --latency, \
         {} s each, {} rounds, variants alternating",
        ctx.seconds, ctx.rounds
    );
    println!();
    println!("api: GET /api/v1/jobs (status + type + search) and /api/v1/jobs/stats against pgbench ({method})");
    let result = rounds(ctx, opts, &services, &variants).await;
    for s in services {
        s.stop(opts).await;
    }
    let samples = result?;

    let series = |f: fn(&Sample) -> f64, suffix: &str| -> Vec<Series> {
        variants
            .iter()
            .map(|v| {
                let mut s = Series::new(&format!("{}{suffix}", v.name));
                s.samples = samples[v.name].iter().map(f).collect();
                s
            })
            .collect()
    };
    let throughput = series(|s| s.per_second, "");
    let pick = |all: &[Series], names: &[&str]| -> Vec<Series> {
        names
            .iter()
            .filter_map(|n| all.iter().find(|s| s.variant == *n))
            .map(|s| Series {
                variant: s.variant.clone(),
                samples: s.samples.clone(),
            })
            .collect()
    };
    let list = Measurement {
        key: "list".into(),
        title: "api: GET /api/v1/jobs?status=completed&type=erase&q=<tenant>&limit=50 at 1,000,000 jobs"
            .into(),
        method: method.clone(),
        unit: Unit::Tps,
        rows_per_statement: None,
        series: pick(&throughput, &["pgbench_list", "http_list"]),
        ratios: vec![Ratio::new("http_list", "pgbench_list", Some(0.5))],
    };
    let stats = Measurement {
        key: "stats".into(),
        title: "api: GET /api/v1/jobs/stats at 1,000,000 and at 10,000 jobs".into(),
        method: method.clone(),
        unit: Unit::Tps,
        rows_per_statement: None,
        series: pick(
            &throughput,
            &[
                "pgbench_stats_1m",
                "http_stats_1m",
                "pgbench_stats_10k",
                "http_stats_10k",
            ],
        ),
        ratios: vec![
            Ratio::new("http_stats_1m", "pgbench_stats_1m", Some(0.5)),
            Ratio::time("http_stats_1m", "http_stats_10k", Some(2.0)),
            Ratio::time("pgbench_stats_1m", "pgbench_stats_10k", Some(2.0)),
        ],
    };
    // The p99 against its budget, as a ratio of times (at most 1).
    let mut p99 = series(|s| s.p99, "_p99");
    let mut budget = Series::new("budget_25ms");
    budget.samples = vec![P99_BUDGET_MS; ctx.rounds as usize];
    p99.push(budget);
    let latency = Measurement {
        key: "p99".into(),
        title: "api: p99 latency (ms) of every variant, against 25 ms".into(),
        method,
        unit: Unit::Millis,
        rows_per_statement: None,
        series: p99,
        ratios: vec![
            Ratio::time("http_list_p99", "budget_25ms", Some(1.0)),
            Ratio::time("http_stats_1m_p99", "budget_25ms", Some(1.0)),
        ],
    };
    list.print();
    stats.print();
    latency.print();
    println!();
    println!("  side by side (medians)      per second      p50 ms      p99 ms");
    let mut table = serde_json::Map::new();
    for v in &variants {
        let s = &samples[v.name];
        let m = |f: fn(&Sample) -> f64| median(&s.iter().map(f).collect::<Vec<_>>());
        let (rate, p50, p99) = (m(|s| s.per_second), m(|s| s.p50), m(|s| s.p99));
        println!(
            "  {:<24} {:>14.1} {:>11.2} {:>11.2}",
            v.name, rate, p50, p99
        );
        table.insert(
            v.name.to_string(),
            json!({ "per_second": rate, "p50_ms": p50, "p99_ms": p99 }),
        );
    }
    for f in &failures {
        println!("  CHECK FAILED: {f}");
    }
    Ok(Outcome {
        name: "api",
        measurements: vec![list, stats, latency],
        extra: json!({
            "databases": { "big": big, "small": small },
            "jobs": { "big": opts.jobs_big, "small": opts.jobs_small },
            "tenants": opts.tenants,
            "medians": Value::Object(table),
            "list_jobs_plans": {
                "combinations": plans.combinations,
                "reading_the_whole_table": plans.seq_scans,
                "most_blocks": plans.worst.0,
                "most_blocks_for": plans.worst.1,
                "table_blocks": plans.table_blocks,
            },
            "http_measured": http,
        }),
        check_failed: (!failures.is_empty()).then(|| failures.join("; ")),
    })
}

/// A warm-up run of each variant, then the rounds.
async fn rounds(
    ctx: &Ctx,
    opts: &Options,
    services: &[Service],
    variants: &[Variant],
) -> Result<BTreeMap<&'static str, Vec<Sample>>> {
    if ctx.warmup > 0 {
        for v in variants {
            let s = measure(ctx, opts, services, v, ctx.warmup).await?;
            println!("  warm-up  {:<20} {:>10.1}/s", v.name, s.per_second);
        }
    }
    let mut samples: BTreeMap<&'static str, Vec<Sample>> = BTreeMap::new();
    let order: Vec<usize> = (0..variants.len()).collect();
    for round in 0..ctx.rounds {
        for i in rotated(&order, round as usize) {
            let v = &variants[i];
            let s = measure(ctx, opts, services, v, ctx.seconds).await?;
            println!(
                "  round {}/{}  {:<20} {:>10.1}/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
                round + 1,
                ctx.rounds,
                v.name,
                s.per_second,
                s.p50,
                s.p99
            );
            samples.entry(v.name).or_default().push(s);
        }
    }
    Ok(samples)
}

/// `program` as found: a path that exists, or a name on `PATH`.
fn which(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.exists().then(|| program.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.exists())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_wrk_latency_output() {
        let out = "Running 10s test @ http://127.0.0.1:8080/\n\
  2 threads and 16 connections\n\
  Thread Stats   Avg      Stdev     Max   +/- Stdev\n\
    Latency     5.12ms    2.01ms  40.11ms   80.00%\n\
    Req/Sec     1.55k   100.00     1.80k    70.00%\n\
  Latency Distribution\n\
     50%    4.80ms\n\
     75%    6.10ms\n\
     90%  812.00us\n\
     99%   21.30ms\n\
  31000 requests in 10.00s, 50.00MB read\n\
Requests/sec:   3100.55\n\
Transfer/sec:      5.00MB\n";
        let s = parse_wrk(out).unwrap();
        assert!((s.per_second - 3100.55).abs() < 1e-9);
        assert!((s.p50 - 4.8).abs() < 1e-9);
        assert!((s.p99 - 21.3).abs() < 1e-9);
        assert_eq!(wrk_duration_ms("812.00us"), Some(0.812));
        assert_eq!(wrk_duration_ms("1.5s"), Some(1500.0));
    }

    #[test]
    fn refuses_failed_answers() {
        let out = "Requests/sec: 10.0\n  Non-2xx or 3xx responses: 7\n";
        assert!(parse_wrk(out).is_err());
    }

    #[test]
    fn percentiles_of_sorted_latencies() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), 51.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
