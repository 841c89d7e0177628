//! pgbench variants run side by side: a warm-up of each, then rounds in
//! which every variant runs once, in an order that rotates from round to
//! round.

use std::path::PathBuf;

use anyhow::{bail, Result};

use crate::report::{rotated, Measurement, Ratio, Series, Unit};
use crate::Ctx;

pub struct PgbenchSpec<'a> {
    pub key: &'a str,
    pub title: &'a str,
    pub database: &'a str,
    pub clients: u32,
    pub threads: u32,
    /// (variant, script)
    pub variants: Vec<(&'a str, PathBuf)>,
    pub ratios: Vec<Ratio>,
}

pub async fn pgbench_rounds(ctx: &Ctx, spec: PgbenchSpec<'_>) -> Result<Measurement> {
    let method = format!(
        "pgbench -n -M prepared -c {} -j {} -T {}, {} rounds, variants alternating",
        spec.clients, spec.threads, ctx.seconds, ctx.rounds
    );
    println!();
    println!("{} ({method})", spec.title);
    if ctx.warmup > 0 {
        for (variant, script) in &spec.variants {
            let r = ctx
                .server
                .pgbench(
                    spec.database,
                    script,
                    spec.clients,
                    spec.threads,
                    ctx.warmup,
                )
                .await?;
            println!("  warm-up  {variant:<10} {:>10.1} tps", r.tps);
        }
    }
    let mut series: Vec<Series> = spec.variants.iter().map(|(v, _)| Series::new(v)).collect();
    let order: Vec<usize> = (0..spec.variants.len()).collect();
    for round in 0..ctx.rounds {
        for i in rotated(&order, round as usize) {
            let (variant, script) = &spec.variants[i];
            let r = ctx
                .server
                .pgbench(
                    spec.database,
                    script,
                    spec.clients,
                    spec.threads,
                    ctx.seconds,
                )
                .await?;
            if r.failed > 0 {
                bail!(
                    "{variant}: {} of {} transactions failed",
                    r.failed,
                    r.transactions + r.failed
                );
            }
            println!(
                "  round {}/{}  {variant:<10} {:>10.1} tps  ({} transactions)",
                round + 1,
                ctx.rounds,
                r.tps,
                r.transactions
            );
            series[i].samples.push(r.tps);
        }
    }
    Ok(Measurement {
        key: spec.key.to_string(),
        title: spec.title.to_string(),
        method,
        unit: Unit::Tps,
        rows_per_statement: None,
        series,
        ratios: spec.ratios,
    })
}
