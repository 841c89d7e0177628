//! Database connection pool.

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::config::Config;

/// `application_name` reported to PostgreSQL unless the URL sets one.
pub const APPLICATION_NAME: &str = "lifecycled";

/// Build the connection pool described by `config`.
///
/// No connection is opened here: connections are created on first use, so
/// the server starts even when the database is down (and `/readyz` reports
/// it). Connecting and waiting for a free connection are both bounded by
/// [`Config::db_timeout`].
pub fn build_pool(config: &Config) -> anyhow::Result<Pool> {
    let mut pg_config: tokio_postgres::Config = config
        .database_url
        .parse()
        .context("invalid database URL")?;
    if pg_config.get_application_name().is_none() {
        pg_config.application_name(APPLICATION_NAME);
    }
    let timeout = config.db_timeout();
    pg_config.connect_timeout(timeout);

    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(config.db_pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .context("could not build the database connection pool")
}
