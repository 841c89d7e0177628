//! Helpers shared by the integration tests.
//!
//! Every test works in a database of its own: [`TestDb::create`] makes a
//! uniquely named database in the cluster named by `LIFECYCLE_TEST_DATABASE_URL`
//! (or the local default), installs the `lifecycle` extension in it and drops
//! it again (`WITH (FORCE)`) when the value is dropped or [`TestDb::cleanup`]
//! is called. Login roles made with [`TestDb::create_role`] are dropped with
//! it. All connections are real `tokio-postgres` sessions.

use std::future::Future;
use std::time::{Duration, Instant};

pub mod cluster;
pub mod s3;

use anyhow::{anyhow, bail, Context, Result};
use tokio_postgres::error::DbError;
use tokio_postgres::{Client, Config, NoTls};

/// Cluster used when `LIFECYCLE_TEST_DATABASE_URL` is not set. The role must
/// be a superuser.
pub const DEFAULT_ADMIN_URL: &str = "postgres://lifecycle_admin:lifecycle@127.0.0.1:5432/postgres";

/// How long any single step that may block (a lock wait, a spawned
/// session) is allowed to take before the test fails instead of hanging.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The superuser connection URL the tests use.
pub fn admin_url() -> String {
    std::env::var("LIFECYCLE_TEST_DATABASE_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_ADMIN_URL.to_string())
}

fn admin_config() -> Result<Config> {
    let url = admin_url();
    url.parse::<Config>()
        .with_context(|| format!("cannot parse test database URL {url:?}"))
}

/// Who a session logs in as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// The superuser of the admin URL.
    Superuser,
    /// A login role (see [`TestDb::create_role`]).
    Login { name: String, password: String },
}

impl Role {
    /// The role name, as an SQL identifier (quoted).
    pub fn ident(&self) -> String {
        match self {
            Role::Superuser => "CURRENT_USER".to_string(),
            Role::Login { name, .. } => quote_ident(name),
        }
    }

    /// The bare role name (`None` for the superuser).
    pub fn name(&self) -> Option<&str> {
        match self {
            Role::Superuser => None,
            Role::Login { name, .. } => Some(name),
        }
    }
}

/// A database of one test, with the extension installed.
pub struct TestDb {
    /// Database name (`lc_it_<prefix>_<random>`).
    pub name: String,
    config: Config,
    roles: Vec<String>,
    cleaned: bool,
}

fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_string()
}

fn sanitize(prefix: &str) -> String {
    let s: String = prefix
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(30)
        .collect();
    if s.is_empty() {
        "t".to_string()
    } else {
        s
    }
}

/// Quote an SQL identifier.
pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quote an SQL string literal.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

async fn connect_config(config: &Config) -> Result<Client> {
    let (client, connection) = config.connect(NoTls).await.with_context(|| {
        format!(
            "cannot connect to {:?} as {:?}",
            config.get_dbname(),
            config.get_user()
        )
    })?;
    tokio::spawn(async move {
        // The connection ends with an error when the database is dropped
        // WITH (FORCE) under it; nothing to report then.
        let _ = connection.await;
    });
    Ok(client)
}

/// Connect to the cluster's maintenance database as the superuser.
pub async fn connect_admin() -> Result<Client> {
    connect_config(&admin_config()?).await
}

/// Whether an error is one a concurrent reinstall of the extension can
/// cause for a moment (the library file is being replaced).
fn transient_install_error(e: &tokio_postgres::Error) -> bool {
    matches!(sqlstate(e).as_deref(), Some("58P01") | Some("XX000"))
        && message(e).is_some_and(|m| {
            m.contains("could not access file") || m.contains("could not load library")
        })
}

impl TestDb {
    /// Create `lc_it_<prefix>_<random>` and run `CREATE EXTENSION lifecycle`
    /// in it.
    pub async fn create(prefix: &str) -> Result<TestDb> {
        let db = TestDb::create_empty(prefix).await?;
        let client = db.connect_superuser().await?;
        let mut attempt = 0;
        loop {
            match client.batch_execute("CREATE EXTENSION lifecycle").await {
                Ok(()) => break,
                Err(e) if transient_install_error(&e) && attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(anyhow!(describe(&e))).context("CREATE EXTENSION lifecycle"),
            }
        }
        Ok(db)
    }

    /// Create `lc_it_<prefix>_<random>` without the extension (a target to
    /// restore a dump into, say).
    pub async fn create_empty(prefix: &str) -> Result<TestDb> {
        let admin = connect_admin().await?;
        let name = format!("lc_it_{}_{}", sanitize(prefix), random_suffix());
        // Concurrent CREATE DATABASE calls can collide on the template.
        let mut attempt = 0;
        loop {
            match admin
                .batch_execute(&format!("CREATE DATABASE {}", quote_ident(&name)))
                .await
            {
                Ok(()) => break,
                Err(e) if sqlstate(&e).as_deref() == Some("55006") && attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(anyhow!(describe(&e))).context("CREATE DATABASE"),
            }
        }
        let mut config = admin_config()?;
        config.dbname(&name);
        Ok(TestDb {
            name,
            config,
            roles: Vec::new(),
            cleaned: false,
        })
    }

    /// Connection configuration of this database for `role`.
    pub fn config_for(&self, role: &Role) -> Config {
        let mut c = self.config.clone();
        if let Role::Login { name, password } = role {
            c.user(name);
            c.password(password.as_bytes());
        }
        c
    }

    /// Connection URL of this database for `role`.
    pub fn url_for(&self, role: &Role) -> String {
        let c = self.config_for(role);
        let host = c
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(s) => s.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "localhost".to_string());
        let port = c.get_ports().first().copied().unwrap_or(5432);
        let user = c.get_user().unwrap_or("postgres");
        let password = c
            .get_password()
            .map(|p| format!(":{}", String::from_utf8_lossy(p)))
            .unwrap_or_default();
        format!("postgres://{user}{password}@{host}:{port}/{}", self.name)
    }

    /// A new superuser session in this database.
    pub async fn connect_superuser(&self) -> Result<Client> {
        connect_config(&self.config).await
    }

    /// A new session in this database as `role`.
    pub async fn connect(&self, role: &Role) -> Result<Client> {
        connect_config(&self.config_for(role)).await
    }

    /// Create a login role (`lc_it_<base>_<random>`; roles are cluster-wide,
    /// so names must not collide between tests running in parallel). It is
    /// dropped with the database.
    pub async fn create_role(&mut self, base: &str) -> Result<Role> {
        let name = format!("lc_it_{}_{}", sanitize(base), random_suffix());
        let password = format!("pw_{}", random_suffix());
        let admin = connect_admin().await?;
        admin
            .batch_execute(&format!(
                "CREATE ROLE {} LOGIN PASSWORD {}",
                quote_ident(&name),
                quote_literal(&password)
            ))
            .await
            .map_err(|e| anyhow!(describe(&e)))
            .context("CREATE ROLE")?;
        self.roles.push(name.clone());
        Ok(Role::Login { name, password })
    }

    /// Drop the database and the roles made for it.
    pub async fn cleanup(mut self) -> Result<()> {
        self.cleaned = true;
        drop_all(&self.name, &self.roles).await
    }
}

async fn drop_all(name: &str, roles: &[String]) -> Result<()> {
    let admin = connect_admin().await?;
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))
        .await
        .map_err(|e| anyhow!(describe(&e)))
        .context("DROP DATABASE")?;
    for r in roles {
        admin
            .batch_execute(&format!("DROP ROLE IF EXISTS {}", quote_ident(r)))
            .await
            .map_err(|e| anyhow!(describe(&e)))
            .with_context(|| format!("DROP ROLE {r}"))?;
    }
    Ok(())
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if self.cleaned {
            return;
        }
        self.cleaned = true;
        let name = self.name.clone();
        let roles = std::mem::take(&mut self.roles);
        // Drop may run inside the test's runtime (also while a failed
        // assertion unwinds): do the work on a thread with its own runtime.
        let worker = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for cleanup");
            rt.block_on(drop_all(&name, &roles))
        });
        match worker.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cleanup of test database failed: {e:#}"),
            Err(_) => eprintln!("cleanup of test database panicked"),
        }
    }
}

/// Open another session in `db` as `role`.
pub async fn connect(db: &TestDb, role: &Role) -> Result<Client> {
    db.connect(role).await
}

// ----- errors ---------------------------------------------------------------------

/// The server's error report, if the error came from the server.
pub fn db_error(e: &tokio_postgres::Error) -> Option<&DbError> {
    e.as_db_error()
}

/// SQLSTATE of a server error.
pub fn sqlstate(e: &tokio_postgres::Error) -> Option<String> {
    e.code().map(|c| c.code().to_string())
}

/// Primary message of a server error.
pub fn message(e: &tokio_postgres::Error) -> Option<&str> {
    db_error(e).map(|d| d.message())
}

/// DETAIL of a server error.
pub fn detail(e: &tokio_postgres::Error) -> Option<&str> {
    db_error(e).and_then(|d| d.detail())
}

/// HINT of a server error.
pub fn hint(e: &tokio_postgres::Error) -> Option<&str> {
    db_error(e).and_then(|d| d.hint())
}

/// One-line description of an error with everything the server said.
pub fn describe(e: &tokio_postgres::Error) -> String {
    match db_error(e) {
        Some(d) => format!(
            "{} {}: {}{}{}",
            d.severity(),
            d.code().code(),
            d.message(),
            d.detail()
                .map(|s| format!(" DETAIL: {s}"))
                .unwrap_or_default(),
            d.hint().map(|s| format!(" HINT: {s}")).unwrap_or_default()
        ),
        None => format!("client error: {e}"),
    }
}

/// Assert that `result` failed with `code`; returns the server's report.
#[track_caller]
pub fn expect_sqlstate<T: std::fmt::Debug>(
    result: std::result::Result<T, tokio_postgres::Error>,
    code: &str,
    what: &str,
) -> DbError {
    match result {
        Ok(v) => panic!("{what}: expected SQLSTATE {code}, but it succeeded with {v:?}"),
        Err(e) => {
            let got = sqlstate(&e);
            assert_eq!(
                got.as_deref(),
                Some(code),
                "{what}: expected SQLSTATE {code}, got {}",
                describe(&e)
            );
            db_error(&e).cloned().expect("server error")
        }
    }
}

/// Assert that `result` failed with one of `codes`; returns the report.
#[track_caller]
pub fn expect_one_of<T: std::fmt::Debug>(
    result: std::result::Result<T, tokio_postgres::Error>,
    codes: &[&str],
    what: &str,
) -> DbError {
    match result {
        Ok(v) => panic!("{what}: expected one of {codes:?}, but it succeeded with {v:?}"),
        Err(e) => {
            let got = sqlstate(&e).unwrap_or_default();
            assert!(
                codes.contains(&got.as_str()),
                "{what}: expected one of {codes:?}, got {}",
                describe(&e)
            );
            db_error(&e).cloned().expect("server error")
        }
    }
}

/// Unwrap a query result, failing with the server's full report.
#[track_caller]
pub fn ok<T>(result: std::result::Result<T, tokio_postgres::Error>, what: &str) -> T {
    match result {
        Ok(v) => v,
        Err(e) => panic!("{what}: {}", describe(&e)),
    }
}

// ----- small queries ----------------------------------------------------------------

/// Run one SQL statement (or several, separated by `;`), panicking with the
/// server's report on failure.
#[track_caller]
pub fn exec<'a>(client: &'a Client, sql: &'a str) -> impl Future<Output = ()> + 'a {
    let caller = std::panic::Location::caller();
    async move {
        if let Err(e) = client.batch_execute(sql).await {
            panic!("{caller}: {sql}\n  failed: {}", describe(&e));
        }
    }
}

/// `SELECT count(*)` of any query (the query is wrapped).
pub async fn count(client: &Client, query: &str) -> i64 {
    let sql = format!("SELECT count(*) FROM ({query}) AS q");
    let row = client
        .query_one(sql.as_str(), &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)));
    row.get(0)
}

/// Backend process id of a session.
pub async fn backend_pid(client: &Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("pg_backend_pid(): {}", describe(&e)))
}

/// Wait until backend `pid` waits on a lock (as `pg_stat_activity` shows it),
/// polling; fails after [`STEP_TIMEOUT`].
pub async fn wait_until_blocked(observer: &Client, pid: i32) -> Result<()> {
    let start = Instant::now();
    loop {
        let row = observer
            .query_opt(
                "SELECT wait_event_type, wait_event, state, query FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .await
            .map_err(|e| anyhow!(describe(&e)))?;
        if let Some(r) = &row {
            if r.get::<_, Option<String>>(0).as_deref() == Some("Lock") {
                return Ok(());
            }
        }
        if start.elapsed() > STEP_TIMEOUT {
            let seen = row.map(|r| {
                format!(
                    "wait_event_type={:?} wait_event={:?} state={:?} query={:?}",
                    r.get::<_, Option<String>>(0),
                    r.get::<_, Option<String>>(1),
                    r.get::<_, Option<String>>(2),
                    r.get::<_, Option<String>>(3)
                )
            });
            bail!("backend {pid} did not block on a lock within {STEP_TIMEOUT:?}; last seen: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Await `fut`, failing the test instead of hanging after [`STEP_TIMEOUT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(STEP_TIMEOUT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: did not finish within {STEP_TIMEOUT:?}"),
    }
}

/// Status of every guard in `lifecycle.guard_status` that is not `ok`.
pub async fn guards_not_ok(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT coalesce(relation::text, '-') || ' ' || trigger_name || ': ' || status \
               FROM lifecycle.guard_status WHERE status <> 'ok' ORDER BY 1",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("guard_status: {}", describe(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// `lifecycle.verify_audit_log()`: (ok, checked, first_bad_id).
pub async fn verify_audit_log(client: &Client) -> (bool, i64, Option<i64>) {
    let r = client
        .query_one(
            "SELECT ok, checked, first_bad_id FROM lifecycle.verify_audit_log()",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("verify_audit_log(): {}", describe(&e)));
    (r.get(0), r.get(1), r.get(2))
}

/// Place a hold as the session's role; returns its id.
pub async fn place_hold(
    client: &Client,
    scope_type: &str,
    scope_id: &str,
    tenant_id: Option<&str>,
    reason: &str,
) -> std::result::Result<uuid::Uuid, tokio_postgres::Error> {
    client
        .query_one(
            "SELECT lifecycle.place_hold($1, $2, $3, $4, 'legal@example.com')",
            &[&scope_type, &scope_id, &tenant_id, &reason],
        )
        .await
        .map(|r| r.get(0))
}

/// The functions a table owner needs to register tables.
pub const REGISTRATION_FUNCTIONS: &[&str] = &[
    "lifecycle.register_subject(regclass, text, text, text, text)",
    "lifecycle.register_tenant(regclass, text, text, text)",
    "lifecycle.register_table(regclass, text, text, text, text, interval, text, text, text, text, text, boolean)",
    "lifecycle.register_link(regclass, text, regclass, text)",
    "lifecycle.set_column_rule(regclass, text, text)",
    "lifecycle.register_membership(regclass, text, text, text, text[], text, text, text)",
    "lifecycle.unregister_membership(regclass)",
    "lifecycle.register_scope(regclass, text, text)",
    "lifecycle.unregister_table(regclass)",
    "lifecycle.set_column_label(regclass, text, text)",
    "lifecycle.exclude_from_export(regclass, text, text)",
    "lifecycle.include_in_export(regclass, text)",
];

/// `tests/fixtures/guarded_app.sql`: workspaces, uuid users, a soft-deleting
/// posts table with a case scope, a partitioned events table, registered.
pub const GUARDED_APP_SQL: &str = include_str!("../fixtures/guarded_app.sql");

/// The guarded application in a database of its own, created and
/// registered by a role that is not a superuser.
pub struct GuardedApp {
    pub db: TestDb,
    /// The application's owner (not a superuser).
    pub owner: Role,
    /// A superuser session.
    pub su: Client,
    /// The owner's session.
    pub app: Client,
}

/// [`GuardedApp`] in a new database named after `prefix`.
pub async fn guarded_app(prefix: &str) -> GuardedApp {
    let mut db = TestDb::create(prefix).await.expect("test database");
    let owner = db.create_role("owner").await.expect("role");
    let su = db.connect(&Role::Superuser).await.expect("superuser");
    exec(
        &su,
        &format!(
            "CREATE SCHEMA app AUTHORIZATION {o};\n{grants}",
            o = owner.ident(),
            grants = grant_registration_sql(&owner)
        ),
    )
    .await;
    let app = db.connect(&owner).await.expect("owner session");
    exec(&app, GUARDED_APP_SQL).await;
    GuardedApp { db, owner, su, app }
}

/// SQL granting EXECUTE on every registration function to `role`.
pub fn grant_registration_sql(role: &Role) -> String {
    REGISTRATION_FUNCTIONS
        .iter()
        .map(|f| format!("GRANT EXECUTE ON FUNCTION {f} TO {};", role.ident()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Rows per (table, action) of a preview's steps or a receipt's actions,
/// without the steps that touch nothing and without the audit log (which
/// only the run redacts).
pub fn rows_by_action(
    items: &serde_json::Value,
) -> std::collections::BTreeMap<(String, String), u64> {
    let mut out = std::collections::BTreeMap::new();
    for s in items.as_array().into_iter().flatten() {
        let table = s["table"].as_str().unwrap_or_default().to_string();
        let action = s["action"].as_str().unwrap_or_default().to_string();
        let rows = s["rows"].as_u64().unwrap_or(0);
        if rows == 0 || table == "lifecycle.audit_log" {
            continue;
        }
        *out.entry((table, action)).or_insert(0) += rows;
    }
    out
}

/// Mentions (table, column) -> rows of a preview or a receipt.
pub fn mentions_of(v: &serde_json::Value) -> std::collections::BTreeMap<(String, String), u64> {
    v["mentions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                (
                    m["table"].as_str().unwrap_or_default().to_string(),
                    m["column"].as_str().unwrap_or_default().to_string(),
                ),
                m["rows"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Panics unless a preview (`lifecycle.preview_erasure()`) and the receipt
/// of the erasure that followed agree: the same rows per table and action,
/// the same mentions, the same stored objects.
pub fn assert_preview_matches_receipt(
    preview: &serde_json::Value,
    receipt: &serde_json::Value,
    external_steps: i64,
) {
    let planned = rows_by_action(&preview["steps"]);
    let done = rows_by_action(&receipt["actions"]);
    let mut differences = Vec::new();
    for key in planned.keys().chain(done.keys()) {
        let (p, d) = (planned.get(key), done.get(key));
        if p != d && !differences.iter().any(|(k, _, _)| k == key) {
            differences.push((key.clone(), p.copied(), d.copied()));
        }
    }
    assert!(
        differences.is_empty(),
        "preview and receipt disagree ((table, action): preview rows, receipt rows): {differences:?}\n\
         preview steps: {}\nreceipt actions: {}",
        preview["steps"],
        receipt["actions"]
    );
    assert_eq!(
        mentions_of(preview),
        mentions_of(receipt),
        "mentions: preview {} receipt {}",
        preview["mentions"],
        receipt["mentions"]
    );
    assert_eq!(
        preview["stored_objects"].as_i64().unwrap_or(-1),
        external_steps,
        "stored objects of the preview vs external steps of the run"
    );
}

/// The first column of the one row `sql` returns.
pub async fn one<T: for<'a> tokio_postgres::types::FromSql<'a>>(c: &Client, sql: &str) -> T {
    c.query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .get(0)
}

/// The text `sql` returns.
pub async fn text(c: &Client, sql: &str) -> String {
    one::<String>(c, sql).await
}

/// `lifecycle.preview_erasure()` with the workspace decisions, if any.
pub async fn preview_erasure(
    c: &Client,
    target_type: &str,
    id: &str,
    workspaces: Option<&serde_json::Value>,
) -> serde_json::Value {
    c.query_one(
        "SELECT lifecycle.preview_erasure($1, $2, NULL, $3)",
        &[&target_type, &id, &workspaces],
    )
    .await
    .unwrap_or_else(|e| panic!("preview_erasure({target_type} {id}): {}", describe(&e)))
    .get(0)
}

/// An erasure requested by `by`, due at once (no cooling-off, no
/// approval); returns the job id.
pub async fn request_erasure_now(
    c: &Client,
    target_type: &str,
    id: &str,
    by: &str,
    workspaces: Option<&serde_json::Value>,
) -> uuid::Uuid {
    c.query_one(
        "SELECT lifecycle.request_erasure($1, $2, NULL, $3, 'test', \
                cooling_off => '0', requires_approval => false, workspaces => $4)",
        &[&target_type, &id, &by, &workspaces],
    )
    .await
    .unwrap_or_else(|e| panic!("request_erasure({target_type} {id}): {}", describe(&e)))
    .get(0)
}

/// The job row, as JSON.
pub async fn job(c: &Client, id: uuid::Uuid) -> serde_json::Value {
    one::<serde_json::Value>(
        c,
        &format!("SELECT to_jsonb(j) FROM lifecycle.jobs j WHERE id = '{id}'"),
    )
    .await
}

/// How many steps outside the database the job recorded.
pub async fn external_steps(c: &Client, id: uuid::Uuid) -> i64 {
    count(
        c,
        &format!("SELECT 1 FROM lifecycle.external_steps WHERE job_id = '{id}'"),
    )
    .await
}

/// Confirm every pending step outside the database of the job.
pub async fn confirm_steps(c: &Client, id: uuid::Uuid) {
    exec(
        c,
        &format!(
            "SELECT lifecycle.confirm_step(s.id, 'storage-worker') \
               FROM lifecycle.external_steps s WHERE s.job_id = '{id}' AND s.status = 'pending'"
        ),
    )
    .await;
}
