//! `lifecycle-bench`: measures the lifecycle extension against baselines
//! measured in the same run, on the same server, alternating variants round
//! by round, and prints medians and ratios. It makes no timing assertions.

mod api;
mod audit;
mod demo;
mod erasure;
mod explain;
mod export;
mod guards;
mod machine;
mod pg;
mod report;
mod rounds;

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::pg::Server;
use crate::report::Measurement;

const DEFAULT_ADMIN_URL: &str = "postgres://lifecycle_admin:lifecycle@127.0.0.1:5432/postgres";
const DEFAULT_PGBENCH: &str = "/usr/lib/postgresql/15/bin/pgbench";

#[derive(Parser)]
#[command(
    name = "lifecycle-bench",
    version,
    about = "Benchmarks the lifecycle extension against baselines measured in the same run"
)]
struct Cli {
    /// Superuser connection URL; each benchmark creates its own database.
    #[arg(long, global = true, env = "LIFECYCLE_BENCH_ADMIN_URL", default_value = DEFAULT_ADMIN_URL, hide_env_values = true)]
    admin_url: String,

    /// Rounds per benchmark; variants alternate within each round.
    #[arg(long, global = true, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,

    /// Duration of each pgbench run, in seconds.
    #[arg(long, global = true, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    seconds: u32,

    /// Untimed warm-up run of each variant before the rounds, in seconds (0: none).
    #[arg(long, global = true, default_value_t = 2)]
    warmup: u32,

    /// Rows in each posts table of the guards benchmark (at least 200000).
    #[arg(long, global = true, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(200_000..))]
    rows: u64,

    /// Bulk DELETEs per variant per round in the guards benchmark.
    #[arg(long, global = true, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    bulk_repeats: u32,

    /// synchronous_commit of the benchmark databases. `off` (the default)
    /// keeps WAL flushes out of the figures, so that they show the CPU cost
    /// of each variant.
    #[arg(long, global = true, value_enum, default_value_t = SyncCommit::Off)]
    synchronous_commit: SyncCommit,

    /// pgbench executable (default: PostgreSQL 15's, else `pgbench` on PATH).
    #[arg(long, global = true, env = "PGBENCH")]
    pgbench: Option<PathBuf>,

    /// Write machine-readable results to this file.
    #[arg(long, global = true, value_name = "PATH")]
    json: Option<PathBuf>,

    /// Drop the benchmark databases when done (the erasure benchmark's
    /// databases too, which later runs could otherwise reuse).
    #[arg(long, global = true)]
    drop_databases: bool,

    /// Rows owned by the users the erasure benchmark erases, one database
    /// and one user per size (`app.generate_heavy_user`).
    #[arg(long, global = true, value_delimiter = ',', default_values_t = [1_000u32, 10_000, 100_000], value_parser = clap::value_parser!(u32).range(100..=100_000_000))]
    erasure_sizes: Vec<u32>,

    /// The size erased in the big database (one of --erasure-sizes; default
    /// the largest).
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(100..=100_000_000))]
    erasure_big_size: Option<u32>,

    /// Users in the erasure benchmark's small databases (engine against
    /// hand-written statements, and the "small" side of big/small).
    #[arg(long, global = true, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(100..=100_000_000))]
    erasure_users_small: u32,

    /// Users in the erasure benchmark's big database. Generating 1,000,000
    /// takes about half an hour; the database is kept and reused by later
    /// runs.
    #[arg(long, global = true, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(100..=100_000_000))]
    erasure_users_big: u32,

    /// Generate the erasure benchmark's data again even when an existing
    /// database holds it.
    #[arg(long, global = true)]
    erasure_rebuild: bool,

    /// After the erasure benchmark's rounds, run each engine and preview
    /// variant once more under auto_explain and list the statements that
    /// cost the most.
    #[arg(long, global = true)]
    erasure_profile: bool,

    /// Jobs in the API benchmark's big database (its list and counts).
    #[arg(long, global = true, default_value_t = 1_000_000, value_parser = clap::value_parser!(u64).range(10_000..=100_000_000))]
    api_jobs: u64,

    /// Jobs in the API benchmark's small database (the counts' baseline).
    #[arg(long, global = true, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1_000..=100_000_000))]
    api_jobs_small: u64,

    /// Registered, named tenants the API benchmark's jobs are spread over.
    #[arg(long, global = true, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(10..=10_000))]
    api_tenants: u32,

    /// Generate the API benchmark's databases again even when existing
    /// ones hold the same data for the installed extension.
    #[arg(long, global = true)]
    api_rebuild: bool,

    /// The `lifecycled` binary the API benchmark serves (default: the one
    /// next to this benchmark's binary, built by `cargo build --release -p
    /// lifecycled`).
    #[arg(long, global = true, env = "LIFECYCLED")]
    lifecycled: Option<PathBuf>,

    /// Users of the demo data in the export benchmark's database (besides
    /// its two heavy users).
    #[arg(long, global = true, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(100..=100_000_000))]
    export_users: u32,

    /// Rows owned by the user whose export is measured against COPY.
    #[arg(long, global = true, default_value_t = 1_000_000, value_parser = clap::value_parser!(u32).range(1_000..=100_000_000))]
    export_rows: u32,

    /// Rows owned by the users whose exports are measured beside the big
    /// one; the smallest one's peak memory is the big one's baseline.
    #[arg(long, global = true, value_delimiter = ',', default_values_t = [10_000u32], value_parser = clap::value_parser!(u32).range(100..=100_000_000))]
    export_rows_small: Vec<u32>,

    /// Environment of the `lifecycled` processes the export benchmark
    /// starts, as NAME=VALUE (repeatable): `MALLOC_ARENA_MAX=1`, say.
    #[arg(long, global = true, value_name = "NAME=VALUE")]
    export_env: Vec<String>,

    /// Give the exporting lifecycled a local file store (--files-url)
    /// holding a small object for every storage key of the users' rows, so
    /// that each bundle copies them into files/.
    #[arg(long, global = true)]
    export_files: bool,

    /// Generate the export benchmark's database again even when an
    /// existing one holds the same data.
    #[arg(long, global = true)]
    export_rebuild: bool,

    /// The HTTP load generator of the API benchmark (`apt-get install wrk`).
    #[arg(long, global = true, env = "WRK", default_value = "wrk")]
    wrk: PathBuf,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// Row guard: single-row UPDATE and DELETE throughput, bulk DELETE time.
    Guards,
    /// Hash-chained audit log: record_event() against a plain INSERT.
    Audit,
    /// Erasure engine: users of several sizes erased against hand-written
    /// statements, the preview against the erasure, and a small against a
    /// big database.
    Erasure,
    /// All three.
    All,
    /// The control plane: the job list and counts over HTTP under wrk
    /// against pgbench running the same statements, at 1,000,000 jobs.
    Api,
    /// Export bundles: a user owning 1,000,000 rows exported by the real
    /// lifecycled against COPY of the same rows; peak memory against a user
    /// owning 10,000; bundle size against the raw CSV.
    Export,
}

#[derive(ValueEnum, Clone, Copy, PartialEq, Eq)]
enum SyncCommit {
    On,
    Off,
}

impl SyncCommit {
    fn as_str(self) -> &'static str {
        match self {
            SyncCommit::On => "on",
            SyncCommit::Off => "off",
        }
    }
}

/// What every benchmark needs.
pub struct Ctx {
    pub server: Server,
    pub rounds: u32,
    pub seconds: u32,
    pub warmup: u32,
    pub rows: u64,
    pub bulk_repeats: u32,
    pub synchronous_commit: &'static str,
    pub scripts: PathBuf,
}

impl Ctx {
    /// Write a pgbench script rendered from a template; returns its path.
    pub fn script(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.scripts.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

/// Results of one benchmark, for the report.
pub struct Outcome {
    pub name: &'static str,
    pub measurements: Vec<Measurement>,
    pub extra: Value,
    /// A correctness check failed (not a timing assertion).
    pub check_failed: Option<String>,
}

fn pgbench_path(given: Option<PathBuf>) -> PathBuf {
    given.unwrap_or_else(|| {
        if Path::new(DEFAULT_PGBENCH).exists() {
            PathBuf::from(DEFAULT_PGBENCH)
        } else {
            PathBuf::from("pgbench")
        }
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let started = Instant::now();
    let scripts = std::env::temp_dir().join(format!("lifecycle-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scripts).with_context(|| format!("creating {}", scripts.display()))?;
    let ctx = Ctx {
        server: Server::new(&cli.admin_url, pgbench_path(cli.pgbench.clone()))?,
        rounds: cli.rounds,
        seconds: cli.seconds,
        warmup: cli.warmup,
        rows: cli.rows,
        bulk_repeats: cli.bulk_repeats,
        synchronous_commit: cli.synchronous_commit.as_str(),
        scripts,
    };
    let erasure = erasure::Options::new(
        &cli.erasure_sizes,
        cli.erasure_big_size,
        cli.erasure_users_small,
        cli.erasure_users_big,
        cli.erasure_rebuild,
        cli.erasure_profile,
    );
    let lifecycled = cli.lifecycled.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("lifecycled")))
            .unwrap_or_else(|| PathBuf::from("lifecycled"))
    });
    let mut export = export::Options::new(
        cli.admin_url.clone(),
        cli.export_users,
        cli.export_rows,
        &cli.export_rows_small,
        cli.export_rebuild,
        lifecycled.clone(),
        &cli.export_env,
    )?;
    export.files = cli.export_files;
    let api = api::Options {
        admin_url: cli.admin_url.clone(),
        jobs_big: cli.api_jobs,
        jobs_small: cli.api_jobs_small,
        tenants: cli.api_tenants,
        rebuild: cli.api_rebuild,
        lifecycled,
        wrk: cli.wrk.clone(),
    };
    let result = run(&cli, &ctx, &erasure, &api, &export).await;
    let _ = std::fs::remove_dir_all(&ctx.scripts);
    let outcomes = result?;
    println!();
    println!("done in {:.0} s", started.elapsed().as_secs_f64());
    let failed: Vec<&String> = outcomes
        .iter()
        .filter_map(|o| o.check_failed.as_ref())
        .collect();
    if !failed.is_empty() {
        for f in &failed {
            eprintln!("check failed: {f}");
        }
        bail!("{} correctness check(s) failed", failed.len());
    }
    Ok(())
}

async fn run(
    cli: &Cli,
    ctx: &Ctx,
    erasure_opts: &erasure::Options,
    api_opts: &api::Options,
    export_opts: &export::Options,
) -> Result<Vec<Outcome>> {
    let run_erasure = matches!(cli.command, Command::Erasure | Command::All);
    if run_erasure {
        erasure::check_options(erasure_opts)?;
    }
    let run_export = cli.command == Command::Export;
    if run_export {
        export::check_options(export_opts)?;
    }
    let machine = machine::describe(&ctx.server).await?;
    machine.print();
    let load_before = machine::load_average();
    println!(
        "load average      {load_before} (before the run; other work on the machine adds noise)"
    );
    println!(
        "settings          rounds={} seconds={} warmup={} rows={} bulk_repeats={} synchronous_commit={} (benchmark databases)",
        ctx.rounds, ctx.seconds, ctx.warmup, ctx.rows, ctx.bulk_repeats, ctx.synchronous_commit
    );
    if run_erasure {
        println!(
            "erasure settings  sizes={} big_size={} users_small={} users_big={} rebuild={} profile={}",
            erasure_opts
                .sizes
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            erasure_opts.big_size,
            erasure_opts.users_small,
            erasure_opts.users_big,
            erasure_opts.rebuild,
            erasure_opts.profile
        );
    }
    let run_guards = matches!(cli.command, Command::Guards | Command::All);
    let run_audit = matches!(cli.command, Command::Audit | Command::All);
    let mut estimate = 0;
    if run_guards {
        // Two pgbench measurements per variant, then the data and the bulk DELETEs.
        let variants = guards::VARIANTS.len() as u32;
        estimate += 2 * variants * (ctx.rounds * ctx.seconds + ctx.warmup) + 120;
    }
    if run_audit {
        estimate += 2 * (ctx.rounds * ctx.seconds + ctx.warmup) + 15;
    }
    let run_api = cli.command == Command::Api;
    if run_api {
        estimate += api::estimate(ctx);
    }
    if run_export {
        estimate += export::estimate(ctx, export_opts);
        println!(
            "export settings   users={} rows={} rows_small={} files={} rebuild={} lifecycled={} env=[{}]",
            export_opts.users,
            export_opts.rows_big,
            export_opts
                .rows_small
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            export_opts.files,
            export_opts.rebuild,
            export_opts.lifecycled.display(),
            export_opts
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    if run_erasure {
        let (secs, notes) = erasure::estimate(ctx, erasure_opts).await?;
        estimate += secs;
        println!("erasure databases {}", notes.join("; "));
    }
    println!("estimated time    about {} min", estimate.div_ceil(60));

    let mut outcomes = Vec::new();
    if run_guards {
        outcomes.push(guards::run(ctx).await?);
        if cli.drop_databases {
            ctx.server.drop_database(guards::DATABASE).await?;
        }
    }
    if run_audit {
        outcomes.push(audit::run(ctx).await?);
        if cli.drop_databases {
            ctx.server.drop_database(audit::DATABASE).await?;
        }
    }
    if run_erasure {
        outcomes.push(erasure::run(ctx, erasure_opts).await?);
        if cli.drop_databases {
            for db in erasure::databases(erasure_opts) {
                ctx.server.drop_database(&db).await?;
            }
        }
    }

    if run_api {
        outcomes.push(api::run(ctx, api_opts).await?);
        if cli.drop_databases {
            for db in api::databases(api_opts) {
                ctx.server.drop_database(&db).await?;
            }
        }
    }

    if run_export {
        outcomes.push(export::run(ctx, export_opts).await?);
        if cli.drop_databases {
            for db in export::databases(export_opts) {
                ctx.server.drop_database(&db).await?;
            }
        }
    }

    let replaced = machine.library_replaced();
    let load_after = machine::load_average();
    println!();
    println!("summary (load average before {load_before}, after {load_after})");
    if replaced {
        println!(
            "  WARNING: the extension's library was reinstalled during the run; \
             the figures may mix builds: run again"
        );
    }
    for o in &outcomes {
        for m in &o.measurements {
            for r in m.ratio_values() {
                if r.goal.is_some() && r.value.is_nan() {
                    println!(
                        "  {:<7} {:<21} {:<10} {:<28}    n/a                  {}",
                        o.name,
                        m.key,
                        r.kind_label(),
                        r.label,
                        r.verdict()
                    );
                } else if r.goal.is_some() {
                    println!(
                        "  {:<7} {:<21} {:<10} {:<28} {:>6.3} (paired {:>5.3})  {}",
                        o.name,
                        m.key,
                        r.kind_label(),
                        r.label,
                        r.value,
                        r.paired,
                        r.verdict()
                    );
                }
            }
        }
    }

    if let Some(path) = &cli.json {
        let benchmarks: serde_json::Map<String, Value> = outcomes
            .iter()
            .map(|o| {
                let mut m = serde_json::Map::new();
                for x in &o.measurements {
                    m.insert(x.key.clone(), x.to_json());
                }
                if let Value::Object(extra) = &o.extra {
                    for (k, v) in extra {
                        m.insert(k.clone(), v.clone());
                    }
                }
                (o.name.to_string(), Value::Object(m))
            })
            .collect();
        let doc = json!({
            "finished_at_unix": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            "machine": machine.to_json(),
            "library_replaced_during_run": replaced,
            "load_average": { "before": load_before, "after": load_after },
            "settings": {
                "rounds": ctx.rounds,
                "seconds": ctx.seconds,
                "warmup": ctx.warmup,
                "rows": ctx.rows,
                "bulk_repeats": ctx.bulk_repeats,
                "synchronous_commit": ctx.synchronous_commit,
                "erasure_sizes": erasure_opts.sizes,
                "erasure_big_size": erasure_opts.big_size,
                "erasure_profile": erasure_opts.profile,
                "erasure_users_small": erasure_opts.users_small,
                "erasure_users_big": erasure_opts.users_big,
                "export_users": export_opts.users,
                "export_rows": export_opts.rows_big,
                "export_rows_small": export_opts.rows_small,
                "export_files": export_opts.files,
                "export_env": export_opts.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            },
            "benchmarks": benchmarks,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    Ok(outcomes)
}
