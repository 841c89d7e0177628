//! Shared application state.

use std::sync::Arc;

use crate::auth::Auth;
use crate::config::Config;
use crate::db::Databases;

/// State shared by every request handler. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The configured databases (the first is the primary).
    pub dbs: Databases,
    /// Effective configuration.
    pub config: Arc<Config>,
    /// Subject-token verification and the per-token rate limiter.
    pub auth: Arc<Auth>,
}

impl AppState {
    /// Build the state (one pool per database) from a configuration. Does
    /// not connect to any database.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let dbs = Databases::from_args(&config.db)?;
        Ok(Self::from_parts(dbs, config))
    }

    /// Assemble the state from existing pools.
    pub fn from_parts(dbs: Databases, config: Config) -> Self {
        Self {
            dbs,
            auth: Arc::new(Auth::new(&config)),
            config: Arc::new(config),
        }
    }
}
