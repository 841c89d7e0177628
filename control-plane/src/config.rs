//! Runtime configuration of `lifecycled serve`, parsed from command-line
//! flags and `LIFECYCLE_*` environment variables (every flag has one, so a
//! container is configured without a command line).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::api::me::MeArgs;
use crate::worker::WorkerArgs;

/// Default PostgreSQL connection URL (the local demo database).
pub const DEFAULT_DATABASE_URL: &str =
    "postgres://lifecycle_admin:lifecycle@127.0.0.1:5432/lifecycle_demo";
/// Name of the database given by `--database-url` (when no `--database` is).
pub const DEFAULT_DATABASE_NAME: &str = "default";
/// Default HTTP listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default maximum number of pooled connections per database.
pub const DEFAULT_DB_POOL_SIZE: usize = 16;
/// Default timeout, in seconds, for connecting to / waiting on the database.
pub const DEFAULT_DB_TIMEOUT_SECS: u64 = 5;
/// Default largest accepted request body (JSON bodies of this API are small).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// Default time a handler may take before the request answers 503.
pub const DEFAULT_REQUEST_TIMEOUT_SECS: u64 = 30;
/// Default sustained requests per second allowed to one token.
pub const DEFAULT_RATE_LIMIT_PER_SECOND: u32 = 50;
/// Default burst of requests one token may send at once.
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 100;
/// Default clock leeway accepted on a subject token's `exp`.
pub const DEFAULT_SUBJECT_TOKEN_LEEWAY_SECS: u64 = 30;
/// Largest accepted clock leeway: a token must not outlive its `exp` by more.
pub const MAX_SUBJECT_TOKEN_LEEWAY_SECS: u64 = 60;
/// Shortest accepted subject-token secret: HS256 with a key shorter than the
/// hash output (32 bytes) is weaker than the algorithm promises.
pub const MIN_SUBJECT_TOKEN_SECRET_BYTES: usize = 32;

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable single-line logs.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// One `--database name=URL`: a database the control plane serves, under
/// the name the API addresses it by.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseSpec {
    pub name: String,
    pub url: String,
}

impl DatabaseSpec {
    /// The URL with any password replaced by `***`, safe to log.
    pub fn redacted_url(&self) -> String {
        redact_url_password(&self.url)
    }
}

impl fmt::Debug for DatabaseSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.redacted_url())
    }
}

/// A database name is part of URLs and of cursors: short, lower case, no
/// punctuation that would need escaping.
pub fn validate_database_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid database name {name:?}: use 1 to 63 characters among a-z, 0-9, _ and -"
        ))
    }
}

impl FromStr for DatabaseSpec {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (name, url) = value
            .split_once('=')
            .ok_or_else(|| "expected NAME=URL".to_owned())?;
        validate_database_name(name)?;
        if url.is_empty() {
            return Err(format!("database {name:?} has an empty URL"));
        }
        Ok(Self {
            name: name.to_owned(),
            url: url.to_owned(),
        })
    }
}

/// Where the control plane's databases are. Shared by `serve` and the
/// `token` commands (tokens live in the primary database).
#[derive(Clone, PartialEq, Eq, Args)]
pub struct DatabaseArgs {
    /// A database to serve, as NAME=URL; repeat for several. The first is the
    /// primary: the control plane's own tables (admin tokens) live there.
    /// Several in LIFECYCLE_DATABASES are separated by `;`.
    #[arg(
        long = "database",
        value_name = "NAME=URL",
        env = "LIFECYCLE_DATABASES",
        value_delimiter = ';',
        hide_env_values = true
    )]
    pub databases: Vec<DatabaseSpec>,

    /// The database to serve when no --database is given, named `default`.
    #[arg(long, env = "LIFECYCLE_DATABASE_URL", default_value = DEFAULT_DATABASE_URL, hide_env_values = true)]
    pub database_url: String,

    /// Maximum number of pooled connections per database.
    #[arg(long, env = "LIFECYCLE_DB_POOL_SIZE", default_value_t = DEFAULT_DB_POOL_SIZE)]
    pub db_pool_size: usize,

    /// Seconds to wait when connecting to a database or for a free pooled
    /// connection before the request fails with 503.
    #[arg(long, env = "LIFECYCLE_DB_TIMEOUT_SECS", default_value_t = DEFAULT_DB_TIMEOUT_SECS)]
    pub db_timeout_secs: u64,
}

impl Default for DatabaseArgs {
    fn default() -> Self {
        Self {
            databases: Vec::new(),
            database_url: DEFAULT_DATABASE_URL.to_owned(),
            db_pool_size: DEFAULT_DB_POOL_SIZE,
            db_timeout_secs: DEFAULT_DB_TIMEOUT_SECS,
        }
    }
}

impl DatabaseArgs {
    /// The configured databases in order: the `--database` list, or the
    /// single `--database-url` named `default`.
    pub fn specs(&self) -> Vec<DatabaseSpec> {
        if self.databases.is_empty() {
            vec![DatabaseSpec {
                name: DEFAULT_DATABASE_NAME.to_owned(),
                url: self.database_url.clone(),
            }]
        } else {
            self.databases.clone()
        }
    }

    /// Database connect / pool wait timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.db_timeout_secs)
    }
}

impl fmt::Debug for DatabaseArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseArgs")
            .field("databases", &self.specs())
            .field("db_pool_size", &self.db_pool_size)
            .field("db_timeout_secs", &self.db_timeout_secs)
            .finish()
    }
}

/// `lifecycled serve` configuration.
#[derive(Clone, PartialEq, Eq, Args)]
pub struct Config {
    #[command(flatten)]
    pub db: DatabaseArgs,

    /// Address the HTTP server listens on.
    #[arg(long, env = "LIFECYCLE_LISTEN", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// Log output format. The log level is controlled with `RUST_LOG`.
    #[arg(long, env = "LIFECYCLE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Shared secret of the subject tokens (HS256 JWTs signed by the host
    /// application), at least 32 bytes. Without it every subject token is
    /// refused.
    #[arg(long, env = "LIFECYCLE_SUBJECT_TOKEN_SECRET", hide_env_values = true)]
    pub subject_token_secret: Option<String>,

    /// Clock leeway, in seconds, accepted on a subject token's `exp` (at most 60).
    #[arg(
        long,
        env = "LIFECYCLE_SUBJECT_TOKEN_LEEWAY_SECS",
        default_value_t = DEFAULT_SUBJECT_TOKEN_LEEWAY_SECS,
        value_parser = clap::value_parser!(u64).range(0..=MAX_SUBJECT_TOKEN_LEEWAY_SECS)
    )]
    pub subject_token_leeway_secs: u64,

    /// Take the client address from the last entry of `X-Forwarded-For`
    /// (set this only behind exactly one trusted reverse proxy).
    #[arg(long, env = "LIFECYCLE_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,

    /// Sustained requests per second allowed to one token; 0 disables the limit.
    #[arg(long, env = "LIFECYCLE_RATE_LIMIT_PER_SECOND", default_value_t = DEFAULT_RATE_LIMIT_PER_SECOND)]
    pub rate_limit_per_second: u32,

    /// Requests one token may send in a burst above the sustained rate.
    #[arg(long, env = "LIFECYCLE_RATE_LIMIT_BURST", default_value_t = DEFAULT_RATE_LIMIT_BURST)]
    pub rate_limit_burst: u32,

    /// Largest accepted request body, in bytes (413 above).
    #[arg(long, env = "LIFECYCLE_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Seconds a request may take before it answers 503 (streamed bodies
    /// such as the audit CSV are not cut once they started).
    #[arg(long, env = "LIFECYCLE_REQUEST_TIMEOUT_SECS", default_value_t = DEFAULT_REQUEST_TIMEOUT_SECS)]
    pub request_timeout_secs: u64,

    /// Serve even when connected to a database as a superuser (for local
    /// experiments only: the extension's grants then protect nothing).
    #[arg(long, env = "LIFECYCLE_ALLOW_SUPERUSER")]
    pub allow_superuser: bool,

    /// Do not run the worker in this process (API-only replicas).
    #[arg(long, env = "LIFECYCLE_NO_WORKER")]
    pub no_worker: bool,

    #[command(flatten)]
    pub worker: WorkerArgs,

    #[command(flatten)]
    pub me: MeArgs,

    #[command(flatten)]
    pub storage: StorageArgs,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            db: DatabaseArgs::default(),
            listen: DEFAULT_LISTEN
                .parse()
                .expect("valid default listen address"),
            log_format: LogFormat::default(),
            subject_token_secret: None,
            subject_token_leeway_secs: DEFAULT_SUBJECT_TOKEN_LEEWAY_SECS,
            trust_forwarded_for: false,
            rate_limit_per_second: DEFAULT_RATE_LIMIT_PER_SECOND,
            rate_limit_burst: DEFAULT_RATE_LIMIT_BURST,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_timeout_secs: DEFAULT_REQUEST_TIMEOUT_SECS,
            allow_superuser: false,
            no_worker: false,
            worker: WorkerArgs::default(),
            me: MeArgs::default(),
            storage: StorageArgs::default(),
        }
    }
}

impl Config {
    /// A configuration with default values for everything but the database URL.
    pub fn with_database_url(database_url: impl Into<String>) -> Self {
        let mut config = Self::default();
        config.db.database_url = database_url.into();
        config
    }

    /// Database connect / pool wait timeout.
    pub fn db_timeout(&self) -> Duration {
        self.db.timeout()
    }

    /// Time a request may take before it is answered with 503.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_secs)
    }

    /// Checks that clap cannot express: unique database names, a strong
    /// enough subject-token secret.
    pub fn validate(&self) -> anyhow::Result<()> {
        let specs = self.db.specs();
        for (i, spec) in specs.iter().enumerate() {
            validate_database_name(&spec.name).map_err(anyhow::Error::msg)?;
            if specs[..i].iter().any(|other| other.name == spec.name) {
                anyhow::bail!("database {:?} is configured twice", spec.name);
            }
        }
        if let Some(secret) = &self.subject_token_secret {
            if secret.len() < MIN_SUBJECT_TOKEN_SECRET_BYTES {
                anyhow::bail!(
                    "the subject token secret must be at least {MIN_SUBJECT_TOKEN_SECRET_BYTES} bytes"
                );
            }
        }
        if self.subject_token_leeway_secs > MAX_SUBJECT_TOKEN_LEEWAY_SECS {
            anyhow::bail!("the subject token leeway is at most {MAX_SUBJECT_TOKEN_LEEWAY_SECS} s");
        }
        Ok(())
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("db", &self.db)
            .field("listen", &self.listen)
            .field("log_format", &self.log_format)
            .field(
                "subject_token_secret",
                &self.subject_token_secret.as_ref().map(|_| "***"),
            )
            .field("subject_token_leeway_secs", &self.subject_token_leeway_secs)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("rate_limit_per_second", &self.rate_limit_per_second)
            .field("rate_limit_burst", &self.rate_limit_burst)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field("allow_superuser", &self.allow_superuser)
            .field("no_worker", &self.no_worker)
            .field("worker", &self.worker)
            .field("me", &self.me)
            .field("storage", &self.storage)
            .finish()
    }
}

/// Default time an export bundle can be downloaded after it was built.
pub const DEFAULT_EXPORT_TTL: &str = "7days";
/// Default time between two anchors of the audit chain.
pub const DEFAULT_ANCHOR_INTERVAL: &str = "1h";
/// Default time between two looks for expired export bundles.
pub const DEFAULT_EXPORT_SWEEP_INTERVAL: &str = "1min";

/// Where export bundles and audit anchors are stored, and where the
/// application keeps its own files (`LIFECYCLE_*` variables, like every other setting).
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct StorageArgs {
    /// Where export bundles and audit anchors go: `file:///absolute/dir` or
    /// `s3://bucket[/prefix]`. Default: the directory `lifecycled-storage`
    /// under the current directory (created if missing).
    #[arg(long, env = "LIFECYCLE_STORAGE_URL")]
    pub storage_url: Option<String>,

    /// The application's own file store, where the values of columns with
    /// the `storage_object` rule are object keys (`file:///dir` or
    /// `s3://bucket`); exports copy those files into the bundle.
    #[arg(long, env = "LIFECYCLE_FILES_URL")]
    pub files_url: Option<String>,

    /// Endpoint of an S3-compatible service (`https://…`; plain `http://`
    /// only on a loopback address). Keys and region come from
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_REGION`.
    #[arg(long, env = "LIFECYCLE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// How long a built export can be downloaded (`7days`, `12h`); then the
    /// bundle is deleted and the export marked expired.
    #[arg(long, env = "LIFECYCLE_EXPORT_TTL", default_value = DEFAULT_EXPORT_TTL,
          value_parser = parse_duration)]
    pub export_ttl: Duration,

    /// Time between two looks for expired export bundles.
    #[arg(long, env = "LIFECYCLE_EXPORT_SWEEP_INTERVAL",
          default_value = DEFAULT_EXPORT_SWEEP_INTERVAL, value_parser = parse_duration)]
    pub export_sweep_interval: Duration,

    /// Time between two anchors of the audit chain written to storage.
    #[arg(long, env = "LIFECYCLE_ANCHOR_INTERVAL", default_value = DEFAULT_ANCHOR_INTERVAL,
          value_parser = parse_duration)]
    pub anchor_interval: Duration,
}

impl Default for StorageArgs {
    fn default() -> Self {
        let parse = |s| parse_duration(s).expect("valid default duration");
        Self {
            storage_url: None,
            files_url: None,
            s3_endpoint: None,
            export_ttl: parse(DEFAULT_EXPORT_TTL),
            export_sweep_interval: parse(DEFAULT_EXPORT_SWEEP_INTERVAL),
            anchor_interval: parse(DEFAULT_ANCHOR_INTERVAL),
        }
    }
}

/// A positive duration such as `7days`, `1h`, `30s` or `500ms`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    match humantime::parse_duration(value.trim()) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("expected a positive duration".to_owned()),
        Err(e) => Err(format!("{e} (expected a duration such as 7days, 1h, 30s)")),
    }
}

/// Replace the password of a `scheme://user:password@host/...` URL, or the
/// `password=...` entry of a `key=value` connection string, with `***`.
pub fn redact_url_password(url: &str) -> String {
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
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        config: Config,
    }

    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        Wrapper::try_parse_from(std::iter::once("lifecycled").chain(args.iter().copied()))
            .map(|w| w.config)
    }

    #[test]
    fn explicit_flags_are_parsed() {
        let config = parse(&[
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
        assert_eq!(config.db.database_url, "postgres://u:p@db:5433/x");
        assert_eq!(config.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.db.db_pool_size, 4);
        assert_eq!(config.db_timeout(), Duration::from_secs(2));
        let specs = config.db.specs();
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].name, DEFAULT_DATABASE_NAME);
    }

    #[test]
    fn several_databases_keep_their_order() {
        let config = parse(&[
            "--database",
            "eu=postgres://a@h1/x",
            "--database",
            "us=postgres://a@h2/y",
        ])
        .unwrap();
        let names: Vec<_> = config.db.specs().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["eu", "us"]);
        config.validate().unwrap();
    }

    #[test]
    fn bad_database_specs_are_refused() {
        assert!(parse(&["--database", "postgres://x"]).is_err());
        assert!(parse(&["--database", "EU=postgres://x"]).is_err());
        assert!(parse(&["--database", "eu="]).is_err());
        let config = parse(&[
            "--database",
            "eu=postgres://a",
            "--database",
            "eu=postgres://b",
        ])
        .unwrap();
        assert!(config.validate().is_err());
    }

    #[test]
    fn weak_secrets_and_large_leeway_are_refused() {
        let mut config = Config {
            subject_token_secret: Some("short".to_owned()),
            ..Config::default()
        };
        assert!(config.validate().is_err());
        config.subject_token_secret = Some("x".repeat(MIN_SUBJECT_TOKEN_SECRET_BYTES));
        config.validate().unwrap();
        assert!(parse(&["--subject-token-leeway-secs", "61"]).is_err());
        assert!(parse(&["--subject-token-leeway-secs", "60"]).is_ok());
    }

    #[test]
    fn storage_settings_are_parsed() {
        let config = parse(&[
            "--storage-url",
            "s3://bundles",
            "--export-ttl",
            "2s",
            "--anchor-interval",
            "90s",
        ])
        .unwrap();
        assert_eq!(config.storage.storage_url.as_deref(), Some("s3://bundles"));
        assert_eq!(config.storage.export_ttl, Duration::from_secs(2));
        assert_eq!(config.storage.anchor_interval, Duration::from_secs(90));
        let d = StorageArgs::default();
        assert_eq!(d.export_ttl, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(d.anchor_interval, Duration::from_secs(3600));
        assert!(parse(&["--export-ttl", "0s"]).is_err());
        assert!(parse(&["--anchor-interval", "soon"]).is_err());
    }

    #[test]
    fn invalid_log_format_is_rejected() {
        assert!(parse(&["--log-format", "xml"]).is_err());
    }

    #[test]
    fn default_impl_matches_documented_defaults() {
        let config = Config::default();
        assert_eq!(config.db.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(parse(&[]).unwrap(), config);
    }

    #[test]
    fn secrets_are_redacted() {
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
        let config = Config {
            subject_token_secret: Some("very-secret-value".to_owned()),
            ..Config::default()
        };
        let debug = format!("{config:?}");
        assert!(!debug.contains("lifecycle_admin:lifecycle@"), "{debug}");
        assert!(!debug.contains("very-secret-value"), "{debug}");
    }
}
