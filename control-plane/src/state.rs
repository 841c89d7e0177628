//! Shared application state.

use std::sync::Arc;

use deadpool_postgres::Pool;

use crate::config::Config;
use crate::db;

/// State shared by every request handler. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// PostgreSQL connection pool.
    pub pool: Pool,
    /// Effective configuration.
    pub config: Arc<Config>,
}

impl AppState {
    /// Build the state (and its connection pool) from a configuration.
    /// Does not connect to the database.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        let pool = db::build_pool(&config)?;
        Ok(Self::from_parts(pool, config))
    }

    /// Assemble the state from an existing pool.
    pub fn from_parts(pool: Pool, config: Config) -> Self {
        Self {
            pool,
            config: Arc::new(config),
        }
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("pool", &self.pool.status())
            .field("config", &self.config)
            .finish()
    }
}
