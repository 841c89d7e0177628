//! Runtime configuration, parsed from command-line flags and environment
//! variables.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Default PostgreSQL connection URL (the local demo database).
pub const DEFAULT_DATABASE_URL: &str =
    "postgres://lifecycle_admin:lifecycle@127.0.0.1:5432/lifecycle_demo";
/// Default HTTP listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default maximum number of pooled database connections.
pub const DEFAULT_DB_POOL_SIZE: usize = 16;
/// Default timeout, in seconds, for connecting to / waiting on the database.
pub const DEFAULT_DB_TIMEOUT_SECS: u64 = 5;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable single-line logs.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `lifecycled` configuration.
#[derive(Clone, PartialEq, Eq, Parser)]
#[command(
    name = "lifecycled",
    version,
    about = "Control plane for the lifecycle PostgreSQL extension"
)]
pub struct Config {
    /// PostgreSQL connection URL of the database where the `lifecycle`
    /// extension is installed.
    #[arg(long, env = "LIFECYCLE_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,

    /// Address the HTTP server listens on.
    #[arg(long, env = "LIFECYCLE_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Log output format. The log level is controlled with `RUST_LOG`.
    #[arg(long, env = "LIFECYCLE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Maximum number of pooled database connections.
    #[arg(long, env = "LIFECYCLE_DB_POOL_SIZE", default_value_t = DEFAULT_DB_POOL_SIZE)]
    pub db_pool_size: usize,

    /// Seconds to wait when connecting to the database or waiting for a
    /// free pooled connection before failing the request with 503.
    #[arg(long, env = "LIFECYCLE_DB_TIMEOUT_SECS", default_value_t = DEFAULT_DB_TIMEOUT_SECS)]
    pub db_timeout_secs: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            listen: DEFAULT_LISTEN
                .parse()
                .expect("valid default listen address"),
            log_format: LogFormat::default(),
            db_pool_size: DEFAULT_DB_POOL_SIZE,
            db_timeout_secs: DEFAULT_DB_TIMEOUT_SECS,
        }
    }
}

impl Config {
    /// A configuration with default values for everything but the database URL.
    pub fn with_database_url(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            ..Self::default()
        }
    }

    /// Database connect / pool wait timeout.
    pub fn db_timeout(&self) -> Duration {
        Duration::from_secs(self.db_timeout_secs)
    }

    /// The database URL with any password replaced by `***`, safe to log.
    pub fn redacted_database_url(&self) -> String {
        redact_url_password(&self.database_url)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("database_url", &self.redacted_database_url())
            .field("listen", &self.listen)
            .field("log_format", &self.log_format)
            .field("db_pool_size", &self.db_pool_size)
            .field("db_timeout_secs", &self.db_timeout_secs)
            .finish()
    }
}

/// Replace the password of a `scheme://user:password@host/...` URL, or the
/// `password=...` entry of a `key=value` connection string, with `***`.
fn redact_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url
            .split(' ')
            .map(|part| {
                if part.starts_with("password=") {
                    "password=***"
                } else {
                    part
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..authority_start],
        &userinfo[..colon],
        &url[authority_start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_flags_are_parsed() {
        let config = Config::try_parse_from([
            "lifecycled",
            "--database-url",
            "postgres://u:p@db:5433/x",
            "--listen",
            "0.0.0.0:9000",
            "--log-format",
            "json",
            "--db-pool-size",
            "4",
            "--db-timeout-secs",
            "2",
        ])
        .unwrap();
        assert_eq!(config.database_url, "postgres://u:p@db:5433/x");
        assert_eq!(config.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.db_pool_size, 4);
        assert_eq!(config.db_timeout(), Duration::from_secs(2));
    }

    #[test]
    fn invalid_log_format_is_rejected() {
        assert!(Config::try_parse_from(["lifecycled", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn default_impl_matches_documented_defaults() {
        let config = Config::default();
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn password_is_redacted() {
        assert_eq!(
            redact_url_password("postgres://lifecycle:secret@127.0.0.1:5432/db?sslmode=disable"),
            "postgres://lifecycle:***@127.0.0.1:5432/db?sslmode=disable"
        );
        assert_eq!(
            redact_url_password("postgres://lifecycle@127.0.0.1/db"),
            "postgres://lifecycle@127.0.0.1/db"
        );
        assert_eq!(
            redact_url_password("host=localhost user=x password=y dbname=z"),
            "host=localhost user=x password=*** dbname=z"
        );
        let debug = format!("{:?}", Config::default());
        assert!(!debug.contains("lifecycle_admin:lifecycle@"), "{debug}");
    }
}
