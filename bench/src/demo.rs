//! Databases of the demo schema's generated data, kept between runs of the
//! erasure and export benchmarks: reused while they hold complete data of
//! the wanted size, made by the current generator.

use anyhow::Result;
use tokio_postgres::Client;

use crate::Ctx;

pub const DEMO_SCHEMA: &str = include_str!("../../sql/demo/schema.sql");
pub const DEMO_GENERATE: &str = include_str!("../../sql/demo/generate.sql");

/// md5 of the demo schema and generator: a database generated from other
/// versions of them is not reused.
pub async fn generator_fingerprint(admin: &Client) -> Result<String> {
    let text = format!("{DEMO_SCHEMA}\n-- generate.sql --\n{DEMO_GENERATE}");
    Ok(admin.query_one("SELECT md5($1)", &[&text]).await?.get(0))
}

/// A session in database `name` when it holds complete demo data for
/// `users` users, made by the generator of `fingerprint` (and, given a
/// `version`, by that version of the benchmark), as the newest row of the
/// marker table `lifecycle_bench.<marker>` says; `Err(reason)` otherwise.
/// The marker row is written only once the data is complete.
pub async fn reusable(
    ctx: &Ctx,
    admin: &Client,
    name: &str,
    marker: &str,
    users: u32,
    fingerprint: &str,
    version: Option<i32>,
) -> Result<std::result::Result<Client, String>> {
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
    let complete: bool = client
        .query_one(
            "SELECT to_regclass('lifecycle_bench.' || $1) IS NOT NULL \
                AND to_regclass('lifecycle_bench.heavy_users') IS NOT NULL",
            &[&marker],
        )
        .await?
        .get(0);
    if !complete {
        return Ok(Err("it has no complete data (no marker)".into()));
    }
    let row = client
        .query_opt(
            &format!(
                "SELECT m.users, m.generator_md5, (to_jsonb(m) ->> 'version')::int \
                   FROM lifecycle_bench.{marker} m ORDER BY m.finished_at DESC LIMIT 1"
            ),
            &[],
        )
        .await?;
    let Some(row) = row else {
        return Ok(Err("it has no complete data (empty marker)".into()));
    };
    let (u, md5, made_by): (i32, String, Option<i32>) = (row.get(0), row.get(1), row.get(2));
    Ok(if i64::from(u) != i64::from(users) {
        Err(format!("it holds {u} users, not {users}"))
    } else if md5 != fingerprint {
        Err("sql/demo/schema.sql or generate.sql changed since it was generated".into())
    } else if version.is_some() && made_by != version {
        Err("it was made by an older version of this benchmark".into())
    } else {
        Ok(client)
    })
}
