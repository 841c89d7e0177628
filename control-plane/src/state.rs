//! Shared application state.

use std::sync::Arc;

use crate::auth::Auth;
use crate::config::Config;
use crate::db::Databases;
use crate::links::LinkSigner;
use crate::storage::Storage;

/// State shared by every request handler. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    /// The configured databases (the first is the primary).
    pub dbs: Databases,
    /// Effective configuration.
    pub config: Arc<Config>,
    /// Subject-token verification and the per-token rate limiter.
    pub auth: Arc<Auth>,
    /// Where export bundles and audit anchors are stored.
    pub storage: Storage,
    /// Signs and checks export download links (with a subject token secret).
    pub links: Option<LinkSigner>,
}

impl AppState {
    /// Build the state (one pool per database, the object store) from a
    /// configuration. Does not connect to any database.
    pub fn new(config: Config) -> anyhow::Result<Self> {
        config.validate()?;
        let dbs = Databases::from_args(&config.db)?;
        Self::from_parts(dbs, config)
    }

    /// Assemble the state from existing pools.
    pub fn from_parts(dbs: Databases, config: Config) -> anyhow::Result<Self> {
        let (storage, _) = Storage::from_args(&config.storage)?;
        let links = config
            .subject_token_secret
            .as_deref()
            .map(|secret| LinkSigner::new(secret.as_bytes()));
        Ok(Self {
            links,
            dbs,
            auth: Arc::new(Auth::new(&config)),
            config: Arc::new(config),
            storage,
        })
    }
}
