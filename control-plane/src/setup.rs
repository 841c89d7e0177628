//! `lifecycled setup`: prepare databases for the control plane, as a
//! superuser (or the extension's owner), idempotently.
//!
//! In every database given: the service role (LOGIN, not a superuser,
//! nothing else) with exactly the grants of `sql/service_role.sql`. In the
//! first (the primary): the schema `lifecycled` with the control plane's own
//! tables, brought to [`SCHEMA_VERSION`] by the numbered migrations below,
//! each applied once and recorded in `lifecycled.schema_version`.

use anyhow::Context;
use tokio_postgres::{Client, NoTls};

/// One step of the control plane's schema.
pub struct Migration {
    pub version: i32,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order. Add new ones at the end; never edit one that
/// was released.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "admin tokens",
    sql: include_str!("../sql/schema.sql"),
}];

/// The schema version this build needs (the last migration's).
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// The grants of the service role (`@ROLE@` stands for its name).
pub const SERVICE_ROLE_SQL: &str = include_str!("../sql/service_role.sql");

/// Default name of the service role.
pub const DEFAULT_SERVICE_ROLE: &str = "lifecycled";

/// Serializes concurrent setups of one database.
const SETUP_LOCK: i64 = 0x6c69_6665_6379_636c; // "lifecycl"

/// What [`setup_database`] does in one database.
#[derive(Clone, Debug)]
pub struct SetupOptions<'a> {
    /// Name of the service role (a plain lower-case identifier).
    pub role: &'a str,
    /// Its password; `None` leaves an existing role's password as it is.
    pub password: Option<&'a str>,
    /// Create or migrate the control plane's own schema (primary only).
    pub own_schema: bool,
}

/// What setup found and did in one database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetupReport {
    pub database: String,
    pub role_created: bool,
    /// Versions applied now (empty when the schema was up to date).
    pub migrations_applied: Vec<i32>,
    /// The schema's version after setup (`None` outside the primary).
    pub schema_version: Option<i32>,
}

/// A role name that needs no quoting anywhere: setup writes it into SQL.
pub fn validate_role_name(role: &str) -> anyhow::Result<()> {
    let mut chars = role.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && role.len() <= 63;
    anyhow::ensure!(
        ok,
        "invalid role name {role:?}: use a lower-case letter or _ followed by a-z, 0-9, _"
    );
    Ok(())
}

/// Connect to `url` and prepare that database. The session's search path
/// is the catalog's alone ([`crate::db::SEARCH_PATH`]): setup runs as a
/// superuser, in databases where other roles may create schemas.
pub async fn setup_url(url: &str, options: &SetupOptions<'_>) -> anyhow::Result<SetupReport> {
    let redacted = || crate::config::redact_url_password(url);
    let mut config: tokio_postgres::Config = url
        .parse()
        .with_context(|| format!("invalid admin URL {}", redacted()))?;
    crate::db::pin_search_path(&mut config);
    let (mut client, connection) = config
        .connect(NoTls)
        .await
        .with_context(|| format!("could not connect to {}", redacted()))?;
    let task = tokio::spawn(connection);
    let report = setup_database(&mut client, options).await;
    drop(client);
    let _ = task.await;
    report
}

/// Prepare one database, in one transaction, under the catalog's search
/// path whatever the session's was.
pub async fn setup_database(
    client: &mut Client,
    options: &SetupOptions<'_>,
) -> anyhow::Result<SetupReport> {
    validate_role_name(options.role)?;
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SET LOCAL search_path = {}",
        crate::db::SEARCH_PATH
    ))
    .await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SETUP_LOCK])
        .await?;
    let database: String = tx
        .query_one("SELECT current_database()::text", &[])
        .await?
        .get(0);
    let extension: Option<String> = tx
        .query_opt(
            "SELECT extversion::text FROM pg_catalog.pg_extension WHERE extname = 'lifecycle'",
            &[],
        )
        .await?
        .map(|row| row.get(0));
    anyhow::ensure!(
        extension.is_some(),
        "database {database:?} has no extension \"lifecycle\": run CREATE EXTENSION lifecycle first"
    );

    let role_created = ensure_role(&tx, options).await?;
    let (migrations_applied, schema_version) = if options.own_schema {
        let applied = migrate(&tx).await?;
        (applied, Some(SCHEMA_VERSION))
    } else {
        (Vec::new(), None)
    };
    grant(&tx, options.role).await?;
    tx.commit().await?;
    Ok(SetupReport {
        database,
        role_created,
        migrations_applied,
        schema_version,
    })
}

/// Create the service role if it does not exist; set its password when one
/// is given. The password is sent as a SCRAM verifier computed here, so it
/// never appears in the server's statement log.
async fn ensure_role(
    tx: &tokio_postgres::Transaction<'_>,
    options: &SetupOptions<'_>,
) -> anyhow::Result<bool> {
    let role = options.role;
    let existing = tx
        .query_opt(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1",
            &[&role],
        )
        .await?;
    if let Some(row) = &existing {
        let superuser: bool = row.get(0);
        anyhow::ensure!(
            !superuser,
            "role {role:?} is a superuser: the service role must not be one"
        );
    }
    let created = existing.is_none();
    if created {
        tx.batch_execute(&format!(
            "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
        ))
        .await
        .with_context(|| format!("could not create role {role:?}"))?;
    } else {
        tx.batch_execute(&format!(
            "ALTER ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"
        ))
        .await?;
    }
    if let Some(password) = options.password {
        anyhow::ensure!(!password.is_empty(), "the service password is empty");
        let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
        // The verifier is base64 and `$`, `:` and digits: no quote inside.
        tx.batch_execute(&format!("ALTER ROLE {role} PASSWORD '{verifier}'"))
            .await?;
    }
    Ok(created)
}

/// Bring the control plane's schema up to [`SCHEMA_VERSION`].
async fn migrate(tx: &tokio_postgres::Transaction<'_>) -> anyhow::Result<Vec<i32>> {
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS lifecycled;
         REVOKE ALL ON SCHEMA lifecycled FROM PUBLIC;
         CREATE TABLE IF NOT EXISTS lifecycled.schema_version (
             version     integer     PRIMARY KEY,
             description text        NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         );",
    )
    .await
    .context("could not create the schema lifecycled")?;
    let current: Option<i32> = tx
        .query_one("SELECT max(version) FROM lifecycled.schema_version", &[])
        .await?
        .get(0);
    let current = current.unwrap_or(0);
    let mut applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(migration.sql).await.with_context(|| {
            format!(
                "migration {} ({}) failed",
                migration.version, migration.description
            )
        })?;
        tx.execute(
            "INSERT INTO lifecycled.schema_version (version, description) VALUES ($1, $2)",
            &[&migration.version, &migration.description],
        )
        .await?;
        applied.push(migration.version);
    }
    Ok(applied)
}

/// Revoke what the role holds in the two schemas, then grant exactly the
/// list of `sql/service_role.sql`.
async fn grant(tx: &tokio_postgres::Transaction<'_>, role: &str) -> anyhow::Result<()> {
    tx.batch_execute(&format!(
        "REVOKE ALL ON ALL FUNCTIONS IN SCHEMA lifecycle FROM {role};
         REVOKE ALL ON ALL TABLES IN SCHEMA lifecycle FROM {role};
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA lifecycle FROM {role};
         DO $$BEGIN
             IF pg_catalog.to_regnamespace('lifecycled') IS NOT NULL THEN
                 REVOKE ALL ON ALL TABLES IN SCHEMA lifecycled FROM {role};
             END IF;
         END$$;"
    ))
    .await?;
    tx.batch_execute(&SERVICE_ROLE_SQL.replace("@ROLE@", role))
        .await
        .context("could not grant the service role its privileges")?;
    Ok(())
}

/// The function names `sql/service_role.sql` grants, for documentation
/// checks.
pub fn granted_functions() -> Vec<&'static str> {
    let list = SERVICE_ROLE_SQL
        .split_once("p.proname IN (")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map_or("", |(list, _)| list);
    list.lines()
        .map(|line| line.split("--").next().unwrap_or(""))
        .flat_map(|line| line.split(','))
        .map(|item| item.trim().trim_matches('\''))
        .filter(|item| !item.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order() {
        for (i, migration) in MIGRATIONS.iter().enumerate() {
            assert_eq!(migration.version, i as i32 + 1);
        }
        assert_eq!(SCHEMA_VERSION, MIGRATIONS.len() as i32);
    }

    #[test]
    fn role_names_need_no_quoting() {
        for ok in ["lifecycled", "_svc", "svc_2"] {
            validate_role_name(ok).unwrap();
        }
        for bad in [
            "",
            "Lifecycled",
            "2svc",
            "a-b",
            "a\"b",
            "a;drop",
            &"a".repeat(64),
        ] {
            assert!(validate_role_name(bad).is_err(), "{bad}");
        }
    }

    /// docs/security.md lists what the service role may do: the same
    /// functions as the SQL file that grants them, no more, no fewer.
    #[test]
    fn the_security_notes_list_the_granted_functions() {
        let doc = include_str!("../../docs/security.md");
        let section = doc
            .split_once("## The service role")
            .expect("docs/security.md has a section for the service role")
            .1;
        let section = section.split("\n## ").next().unwrap();
        let execute: String = section
            .split("\n- ")
            .filter(|item| item.starts_with("`EXECUTE`"))
            .collect();
        let documented: Vec<&str> = execute
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|name| *name != "EXECUTE")
            .collect();
        let mut granted = granted_functions();
        granted.sort_unstable();
        let mut documented_sorted = documented.clone();
        documented_sorted.sort_unstable();
        assert_eq!(documented_sorted, granted);
    }

    #[test]
    fn the_granted_functions_are_read_from_the_file() {
        let functions = granted_functions();
        assert!(functions.contains(&"request_erasure"), "{functions:?}");
        assert!(functions.contains(&"claim_job"), "{functions:?}");
        assert!(!functions.contains(&"register_table"), "{functions:?}");
        assert!(functions
            .iter()
            .all(|f| f.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
    }
}
