//! The databases the control plane serves: one connection pool each, under
//! the name the API addresses it by.
//!
//! Tenants of a large SaaS live on several clusters, so one `lifecycled`
//! serves several databases. Lists and stats ask all of them at once with
//! [`Databases::fan_out`] and report which one did not answer instead of
//! failing as a whole: one database down never stops the others.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use serde::{Deserialize, Serialize};
use tokio_postgres::NoTls;
use utoipa::ToSchema;

use crate::config::{DatabaseArgs, DatabaseSpec};
use crate::error::{ApiError, ApiResult, ErrorBody};

/// `application_name` reported to PostgreSQL unless the URL sets one.
pub const APPLICATION_NAME: &str = "lifecycled";

/// The search path of every session the control plane opens: the catalog,
/// then temporary objects (listed last, so that a temporary table cannot
/// shadow a catalog either). Nothing the control plane names outside
/// `pg_catalog` goes without its schema, so no schema another role can
/// create or write (`"$user"`, `public`) can put a function or operator in
/// the way of its statements.
pub const SEARCH_PATH: &str = "pg_catalog, pg_temp";

/// [`SEARCH_PATH`] as a startup option.
const SEARCH_PATH_OPTION: &str = "-c search_path=pg_catalog,pg_temp";

/// Machine code of the 404 for a database name that is not configured.
pub const CODE_UNKNOWN_DATABASE: &str = "unknown_database";

/// One configured database.
#[derive(Clone)]
pub struct Database {
    /// The name the API and the configuration use (`--database NAME=URL`).
    pub name: Arc<str>,
    pub pool: Pool,
    /// How the pool connects (for sessions outside it, such as the
    /// worker's `LISTEN`).
    pub connect: tokio_postgres::Config,
}

/// The configured databases, in configuration order. Cheap to clone.
#[derive(Clone)]
pub struct Databases {
    list: Arc<[Database]>,
}

/// What one database answered in a [`Databases::fan_out`].
#[derive(Debug)]
pub struct PerDatabase<T> {
    pub database: Arc<str>,
    pub result: ApiResult<T>,
}

/// A database that did not answer a fan-out, as lists report it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UnavailableDatabase {
    /// The database's configured name.
    pub database: String,
    /// Why it did not answer (the body its own request would have had).
    pub error: ErrorBody,
}

impl Databases {
    /// One pool per configured database. No connection is opened here: the
    /// server starts while a database is down, and `/readyz` says so.
    pub fn from_args(args: &DatabaseArgs) -> anyhow::Result<Self> {
        let list = args
            .specs()
            .iter()
            .map(|spec| {
                let connect = connect_config(spec, args)
                    .with_context(|| format!("database {:?}", spec.name))?;
                Ok(Database {
                    name: Arc::from(spec.name.as_str()),
                    pool: build_pool(connect.clone(), args)
                        .with_context(|| format!("database {:?}", spec.name))?,
                    connect,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!list.is_empty(), "no database configured");
        Ok(Self { list: list.into() })
    }

    /// Every configured database, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Database> {
        self.list.iter()
    }

    /// The configured names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|db| &*db.name)
    }

    /// The pool of the database called `name`.
    pub fn pool(&self, name: &str) -> Option<&Pool> {
        self.get(name).map(|db| &db.pool)
    }

    /// The database called `name`, or 404 `unknown_database`.
    pub fn get_or_404(&self, name: &str) -> ApiResult<&Database> {
        self.get(name).ok_or_else(|| unknown_database(name))
    }

    fn get(&self, name: &str) -> Option<&Database> {
        self.list.iter().find(|db| &*db.name == name)
    }

    /// The first database: where the control plane's own tables live.
    pub fn primary(&self) -> &Database {
        &self.list[0]
    }

    /// A pooled connection to `name`: 404 `unknown_database` for a name that
    /// is not configured, 503 with `Retry-After` (after at most the
    /// configured timeout) when it cannot be reached.
    pub async fn client(&self, name: &str) -> ApiResult<Object> {
        self.get_or_404(name)?.client().await
    }

    /// A pooled connection to the primary database.
    pub async fn primary_client(&self) -> ApiResult<Object> {
        self.primary().client().await
    }

    /// Run `f` on every database at the same time, each with its own
    /// connection; the answers come back in configuration order. A database
    /// that cannot be reached yields its error without calling `f`.
    pub async fn fan_out<T, F, Fut>(&self, f: F) -> Vec<PerDatabase<T>>
    where
        F: Fn(Arc<str>, Object) -> Fut,
        Fut: Future<Output = ApiResult<T>>,
    {
        let calls = self.list.iter().map(|db| {
            let f = &f;
            async move {
                let result = match db.client().await {
                    Ok(client) => f(db.name.clone(), client).await,
                    Err(err) => Err(err),
                };
                PerDatabase {
                    database: db.name.clone(),
                    result,
                }
            }
        });
        futures::future::join_all(calls).await
    }

    /// Close every pool (at shutdown).
    pub fn close(&self) {
        for db in self.list.iter() {
            db.pool.close();
        }
    }
}

impl Database {
    /// A pooled connection to this database (503 with `Retry-After` when
    /// it cannot be reached within the configured timeout).
    pub async fn client(&self) -> ApiResult<Object> {
        self.pool.get().await.map_err(ApiError::from)
    }
}

/// Split fan-out answers into the values and the databases that failed,
/// for lists and stats that aggregate what answered and say what did not.
pub fn partition<T>(
    answers: Vec<PerDatabase<T>>,
) -> (Vec<(Arc<str>, T)>, Vec<UnavailableDatabase>) {
    let mut values = Vec::new();
    let mut failed = Vec::new();
    for answer in answers {
        match answer.result {
            Ok(value) => values.push((answer.database, value)),
            Err(err) => {
                // The cause is logged here (with the request's span); the
                // client gets the same public body it would get alone.
                tracing::warn!(database = %answer.database, error = %err, "database did not answer");
                failed.push(UnavailableDatabase {
                    database: answer.database.to_string(),
                    error: err.to_body().error,
                });
            }
        }
    }
    (values, failed)
}

/// 404 for a database name that is not configured.
pub fn unknown_database(name: &str) -> ApiError {
    ApiError::not_found(format!("unknown database \"{name}\"")).with_code(CODE_UNKNOWN_DATABASE)
}

impl std::fmt::Debug for Databases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.list.iter().map(|db| (&*db.name, db.pool.status())))
            .finish()
    }
}

/// The connection settings of one database: its URL, `application_name`
/// unless the URL sets one, and the configured connect timeout.
fn connect_config(
    spec: &DatabaseSpec,
    args: &DatabaseArgs,
) -> anyhow::Result<tokio_postgres::Config> {
    let mut pg_config: tokio_postgres::Config = spec.url.parse().context("invalid database URL")?;
    if pg_config.get_application_name().is_none() {
        pg_config.application_name(APPLICATION_NAME);
    }
    pg_config.connect_timeout(args.timeout());
    pin_search_path(&mut pg_config);
    Ok(pg_config)
}

/// Make every session of `config` start with [`SEARCH_PATH`]: a startup
/// option, after the options the URL sets (the last setting of a parameter
/// wins), so neither the URL nor a database's or role's default
/// (`ALTER DATABASE ... SET search_path`) can change it. `RESET ALL` and
/// `DISCARD ALL` go back to it too.
pub fn pin_search_path(config: &mut tokio_postgres::Config) {
    let options = match config.get_options().map(str::trim) {
        Some(existing) if !existing.is_empty() => format!("{existing} {SEARCH_PATH_OPTION}"),
        _ => SEARCH_PATH_OPTION.to_owned(),
    };
    config.options(&options);
}

/// Build the pool of one database. Connecting and waiting for a free
/// connection are both bounded by the configured timeout, so a request to a
/// database that is down fails fast instead of hanging.
fn build_pool(pg_config: tokio_postgres::Config, args: &DatabaseArgs) -> anyhow::Result<Pool> {
    let timeout = args.timeout();
    let manager = Manager::from_config(
        pg_config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(args.db_pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(timeout))
        .create_timeout(Some(timeout))
        .recycle_timeout(Some(timeout))
        .build()
        .context("could not build the database connection pool")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(specs: &[(&str, &str)]) -> DatabaseArgs {
        DatabaseArgs {
            databases: specs
                .iter()
                .map(|(name, url)| DatabaseSpec {
                    name: (*name).to_owned(),
                    url: (*url).to_owned(),
                })
                .collect(),
            db_timeout_secs: 1,
            ..DatabaseArgs::default()
        }
    }

    #[test]
    fn names_and_primary_follow_the_configuration() {
        let dbs = Databases::from_args(&args(&[
            ("eu", "postgres://u@127.0.0.1:1/a"),
            ("us", "postgres://u@127.0.0.1:1/b"),
        ]))
        .unwrap();
        assert_eq!(dbs.names().collect::<Vec<_>>(), ["eu", "us"]);
        assert_eq!(&*dbs.primary().name, "eu");
        assert!(dbs.pool("us").is_some());
        assert!(dbs.pool("asia").is_none());
    }

    #[test]
    fn the_search_path_is_pinned_after_the_urls_own_options() {
        let dbs = Databases::from_args(&args(&[
            ("plain", "postgres://u@127.0.0.1:1/a"),
            (
                "options",
                "postgres://u@127.0.0.1:1/b?options=-c%20statement_timeout%3D5s%20-c%20search_path%3Devil",
            ),
        ]))
        .unwrap();
        let options: Vec<_> = dbs
            .iter()
            .map(|db| db.connect.get_options().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(
            options,
            [
                "-c search_path=pg_catalog,pg_temp",
                "-c statement_timeout=5s -c search_path=evil -c search_path=pg_catalog,pg_temp",
            ]
        );

        let mut config: tokio_postgres::Config = "host=h user=u".parse().unwrap();
        pin_search_path(&mut config);
        pin_search_path(&mut config);
        assert!(config
            .get_options()
            .unwrap()
            .ends_with("-c search_path=pg_catalog,pg_temp"));
    }

    #[test]
    fn a_bad_url_names_its_database() {
        let err = Databases::from_args(&args(&[("eu", "postgres://u@h:notaport/a")]))
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("\"eu\""), "{err:#}");
    }

    #[tokio::test]
    async fn unknown_names_are_404_and_unreachable_ones_503() {
        let dbs = Databases::from_args(&args(&[("eu", "postgres://u@127.0.0.1:1/a")])).unwrap();
        let err = dbs.client("asia").await.err().unwrap();
        assert_eq!(err.status(), axum::http::StatusCode::NOT_FOUND);
        assert_eq!(err.code(), CODE_UNKNOWN_DATABASE);
        let err = dbs.client("eu").await.err().unwrap();
        assert_eq!(err.status(), axum::http::StatusCode::SERVICE_UNAVAILABLE);

        let answers = dbs.fan_out(|_, _| async { Ok(1) }).await;
        let (values, failed) = partition(answers);
        assert!(values.is_empty());
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].database, "eu");
        assert_eq!(failed[0].error.code, "database_unavailable");
    }
}
