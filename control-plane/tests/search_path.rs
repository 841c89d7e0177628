//! Nothing `lifecycled` runs can be redirected through `search_path`.
//!
//! The application's owner (no superuser, but the owner of the database,
//! so of `public` too, and of every application table) creates a schema
//! named exactly like the service role (`"$user"` in the default path),
//! fills it and `public` with functions, aggregates and operators that
//! shadow what the control plane's statements call, and puts `pg_catalog`
//! last in the database's default path. Each trap logs who called it and
//! what, and tries to make the owner a superuser and to add an admin
//! token. The control plane then serves real HTTP on loopback (the real
//! binary, its worker on): token authentication, job lists, stats and
//! search, holds, erasure previews, an erasure approved and run by the
//! worker, every subject route with an export built and downloaded,
//! the audit log and its verification against anchors, `/metrics`,
//! readiness; `lifecycled token create|list|revoke` and `lifecycled setup`
//! run as a superuser, and `setup_database` in a session with the
//! database's path. No trap may run, the owner stays who they are and
//! no admin token appears.

mod common;
mod worker_support;

use std::time::{Duration, Instant};

use common::{run_cli, setup, user_token, Binary, SUBJECT_SECRET};
use lifecycle_tests::{describe, exec, quote_ident, quote_literal, Role, TestDb, STEP_TIMEOUT};
use lifecycled::auth::token;
use lifecycled::auth::AdminRole;
use lifecycled::config::{DatabaseArgs, DatabaseSpec};
use lifecycled::db::Databases;
use lifecycled::storage::anchors_prefix;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio_postgres::{Client, NoTls};

/// The startup option of a session that cannot meet a trap (the test's own
/// checks: the traps are everywhere else).
const PINNED: &str = "-c search_path=pg_catalog,pg_temp";

/// The schema of the traps' log and payload (not in anyone's path).
const KIT: &str = "trapkit";

/// What the traps' payload does: log, then try to make `owner` a superuser
/// and to add a platform-admin token; each attempt may fail (a service role
/// can do neither), none may make the call fail.
fn kit_sql(owner: &str) -> String {
    format!(
        "CREATE SCHEMA {KIT};
         GRANT USAGE ON SCHEMA {KIT} TO PUBLIC;
         CREATE TABLE {KIT}.log (
             at   timestamptz NOT NULL DEFAULT pg_catalog.clock_timestamp(),
             who  text        NOT NULL,
             what text        NOT NULL
         );
         GRANT INSERT ON {KIT}.log TO PUBLIC;
         CREATE FUNCTION {KIT}.sprung(what text) RETURNS void
             LANGUAGE plpgsql SET search_path = pg_catalog AS $t$
         BEGIN
             BEGIN
                 INSERT INTO {KIT}.log (who, what) VALUES (current_user, what);
             EXCEPTION WHEN OTHERS THEN NULL;
             END;
             BEGIN
                 EXECUTE format('ALTER ROLE %I SUPERUSER', {owner});
             EXCEPTION WHEN OTHERS THEN NULL;
             END;
             BEGIN
                 INSERT INTO lifecycled.admin_tokens (name, role, lookup, secret_hash)
                 VALUES ('trap-' || md5(random()::text || clock_timestamp()::text), 'platform-admin',
                         substr(md5(random()::text), 1, 12), sha256(convert_to(random()::text, 'UTF8')));
             EXCEPTION WHEN OTHERS THEN NULL;
             END;
         END $t$;",
        owner = quote_literal(owner)
    )
}

/// Functions that shadow what the control plane calls, and a few more an
/// attacker would try: `(name, parameters, result, call)`. These are exact
/// matches of the catalog's, which win where a path puts them before
/// `pg_catalog`; `unnest`, `jsonb_build_object` (below and here) and
/// `=(oid, regnamespace)` are better matches than the catalog's and win
/// even behind it, as in the server's default path.
const FUNCTIONS: &[(&str, &str, &str, &str)] = &[
    ("now", "", "timestamptz", "now()"),
    (
        "statement_timestamp",
        "",
        "timestamptz",
        "statement_timestamp()",
    ),
    ("current_database", "", "name", "current_database()"),
    ("current_setting", "a text", "text", "current_setting(a)"),
    (
        "set_config",
        "a text, b text, c boolean",
        "text",
        "set_config(a, b, c)",
    ),
    ("host", "a inet", "text", "host(a)"),
    ("encode", "a bytea, b text", "text", "encode(a, b)"),
    ("lower", "a text", "text", "lower(a)"),
    ("btrim", "a text", "text", "btrim(a)"),
    ("length", "a text", "integer", "length(a)"),
    ("length", "a bytea", "integer", "length(a)"),
    ("gen_random_uuid", "", "uuid", "gen_random_uuid()"),
    ("to_regclass", "a text", "regclass", "to_regclass(a)"),
    (
        "to_regnamespace",
        "a text",
        "regnamespace",
        "to_regnamespace(a)",
    ),
    (
        "jsonb_build_object",
        "VARIADIC a text[]",
        "jsonb",
        "jsonb_build_object(VARIADIC a)",
    ),
    (
        "make_interval",
        "years integer DEFAULT 0, months integer DEFAULT 0, weeks integer DEFAULT 0, \
         days integer DEFAULT 0, hours integer DEFAULT 0, mins integer DEFAULT 0, \
         secs double precision DEFAULT 0.0",
        "interval",
        "make_interval(years, months, weeks, days, hours, mins, secs)",
    ),
];

/// Types whose comparison operators are shadowed.
const COMPARED: &[&str] = &[
    "text",
    "varchar",
    "name",
    "bigint",
    "integer",
    "uuid",
    "timestamptz",
    "boolean",
    "oid",
];

/// Other operators: `(operator, left, right, result, function suffix)`.
const OPERATORS: &[(&str, &str, &str, &str, &str)] = &[
    ("=", "oid", "regnamespace", "boolean", "eq_oid_regnamespace"),
    ("->>", "jsonb", "text", "text", "field_text"),
    ("->", "jsonb", "text", "jsonb", "field"),
    (
        "-",
        "timestamptz",
        "interval",
        "timestamptz",
        "minus_interval",
    ),
    ("~", "text", "text", "boolean", "regex"),
    ("||", "text", "text", "text", "concat"),
];

/// Every trap, in schema `schema`.
fn traps_sql(schema: &str) -> String {
    let s = quote_ident(schema);
    let trap = |what: &str| format!("PERFORM {KIT}.sprung({});", quote_literal(what));
    let mut sql = String::new();
    for (name, params, result, call) in FUNCTIONS {
        let what = format!("{name}({params})");
        let body = format!("{} RETURN pg_catalog.{call};", trap(&what));
        sql.push_str(&format!(
            "CREATE FUNCTION {s}.{name}({params}) RETURNS {result}
                 LANGUAGE plpgsql SET search_path = pg_catalog AS $t$ BEGIN {body} END $t$;\n"
        ));
    }
    sql.push_str(&format!(
        "CREATE FUNCTION {s}.pg_advisory_xact_lock(a bigint) RETURNS void
             LANGUAGE plpgsql SET search_path = pg_catalog AS $t$
             BEGIN {} PERFORM pg_catalog.pg_advisory_xact_lock(a); END $t$;\n",
        trap("pg_advisory_xact_lock(bigint)")
    ));
    for element in ["bigint", "text"] {
        sql.push_str(&format!(
            "CREATE FUNCTION {s}.unnest(a {element}[]) RETURNS SETOF {element}
                 LANGUAGE plpgsql SET search_path = pg_catalog AS $t$
                 BEGIN {} RETURN QUERY SELECT pg_catalog.unnest(a); END $t$;\n",
            trap(&format!("unnest({element}[])"))
        ));
    }
    sql.push_str(&format!(
        "CREATE FUNCTION {s}.count_step(n bigint) RETURNS bigint
             LANGUAGE plpgsql SET search_path = pg_catalog AS $t$ BEGIN {} RETURN n + 1; END $t$;
         CREATE AGGREGATE {s}.count(*) (SFUNC = {s}.count_step, STYPE = bigint, INITCOND = '0');
         CREATE FUNCTION {s}.max_step(m integer, v integer) RETURNS integer
             LANGUAGE plpgsql SET search_path = pg_catalog AS $t$ BEGIN {} RETURN greatest(m, v); END $t$;
         CREATE AGGREGATE {s}.max(integer) (SFUNC = {s}.max_step, STYPE = integer);\n",
        trap("count(*)"),
        trap("max(integer)")
    ));
    for ty in COMPARED {
        for (op, suffix) in [
            ("=", "eq"),
            ("<>", "ne"),
            ("<", "lt"),
            ("<=", "le"),
            (">", "gt"),
            (">=", "ge"),
        ] {
            sql.push_str(&format!(
                "CREATE FUNCTION {s}.{suffix}_{ty}(a {ty}, b {ty}) RETURNS boolean
                     LANGUAGE plpgsql SET search_path = pg_catalog AS $t$ BEGIN {} RETURN a {op} b; END $t$;
                 CREATE OPERATOR {s}.{op} (LEFTARG = {ty}, RIGHTARG = {ty}, FUNCTION = {s}.{suffix}_{ty});\n",
                trap(&format!("{ty} {op} {ty}"))
            ));
        }
    }
    for (op, left, right, result, suffix) in OPERATORS {
        let call = if *suffix == "eq_oid_regnamespace" {
            "a = b::oid".to_owned()
        } else {
            format!("a {op} b")
        };
        sql.push_str(&format!(
            "CREATE FUNCTION {s}.{suffix}(a {left}, b {right}) RETURNS {result}
                 LANGUAGE plpgsql SET search_path = pg_catalog AS $t$ BEGIN {} RETURN {call}; END $t$;
             CREATE OPERATOR {s}.{op} (LEFTARG = {left}, RIGHTARG = {right}, FUNCTION = {s}.{suffix});\n",
            trap(&format!("{left} {op} {right}"))
        ));
    }
    sql
}

/// A session of `db` as `role` that no trap reaches.
async fn pinned(db: &TestDb, role: &Role) -> Client {
    let mut config = db.config_for(role);
    config.options(PINNED);
    let (client, connection) = config.connect(NoTls).await.expect("pinned session");
    tokio::spawn(connection);
    client
}

/// A session of `db` as `role` with the server's defaults (the database's
/// search path, which the owner set).
async fn plain(db: &TestDb, role: &Role) -> Client {
    db.connect(role).await.expect("session")
}

/// The traps that ran: `who: what (calls)`.
async fn sprung(c: &Client) -> Vec<String> {
    c.query(
        "SELECT who || ': ' || what || ' (' || count(*) || ')' FROM trapkit.log \
          GROUP BY who, what ORDER BY who, what",
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("trap log: {}", describe(&e)))
    .iter()
    .map(|r| r.get(0))
    .collect()
}

async fn is_superuser(c: &Client, role: &str) -> bool {
    c.query_one(
        "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = $1",
        &[&role],
    )
    .await
    .unwrap_or_else(|e| panic!("pg_roles: {}", describe(&e)))
    .get(0)
}

async fn token_names(c: &Client) -> Vec<String> {
    c.query(
        "SELECT name FROM lifecycled.admin_tokens ORDER BY name",
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("admin tokens: {}", describe(&e)))
    .iter()
    .map(|r| r.get(0))
    .collect()
}

/// Calls the service over HTTP and keeps what went wrong, so that the test
/// reports every step (and the traps that ran) instead of the first only.
struct Driver {
    http: reqwest::Client,
    base: String,
    wrong: Vec<String>,
}

impl Driver {
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        expected: StatusCode,
    ) -> Option<(Value, Vec<u8>)> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                self.wrong.push(format!("{method} {path}: {e}"));
                return None;
            }
        };
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map(|b| b.to_vec())
            .unwrap_or_default();
        if status != expected {
            self.wrong.push(format!(
                "{method} {path}: {status} where {expected} was expected: {}",
                String::from_utf8_lossy(&bytes)
            ));
            return None;
        }
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Some((body, bytes))
    }

    async fn get(&mut self, path: &str, token: Option<&str>) -> Option<Value> {
        self.call(Method::GET, path, token, None, StatusCode::OK)
            .await
            .map(|(body, _)| body)
    }

    async fn post(
        &mut self,
        path: &str,
        token: &str,
        body: Value,
        expected: StatusCode,
    ) -> Option<Value> {
        self.call(Method::POST, path, Some(token), Some(body), expected)
            .await
            .map(|(body, _)| body)
    }

    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.wrong.push(what.into());
        }
    }

    /// Poll `c` with `sql` (one boolean) until it is true; a step that went
    /// wrong after [`STEP_TIMEOUT`].
    async fn wait(&mut self, c: &Client, what: &str, sql: &str) {
        let start = Instant::now();
        while start.elapsed() < STEP_TIMEOUT {
            if let Ok(row) = c.query_one(sql, &[]).await {
                if row.get::<_, Option<bool>>(0) == Some(true) {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.wrong
            .push(format!("waited {STEP_TIMEOUT:?} for {what}"));
    }

    /// Run `lifecycled` with `args`; its stdout when it succeeds.
    async fn cli(&mut self, args: &[&str]) -> Option<String> {
        let output = run_cli(args, &[]).await;
        if output.status.success() {
            Some(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            self.wrong.push(format!(
                "lifecycled {}: {}: {}",
                args[..2].join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
            None
        }
    }
}

#[tokio::test]
async fn no_schema_the_owner_can_write_redirects_what_the_control_plane_runs() {
    let mut db = TestDb::create("search_path").await.expect("test database");
    let owner = db.create_role("owner").await.expect("owner role");
    let service = db.create_role("svc").await.expect("service role");
    let owner_name = owner.name().unwrap().to_owned();
    let service_name = service.name().unwrap().to_owned();

    // Before any trap: the demo, owned by the application's owner (with
    // the database, so `public` too), setup, two admin tokens.
    {
        let su = plain(&db, &Role::Superuser).await;
        worker_support::load_demo(&su, 30).await;
        exec(
            &su,
            &format!(
                "ALTER DATABASE {db} OWNER TO {owner};
                 GRANT CREATE ON SCHEMA public TO {owner};
                 ALTER SCHEMA app OWNER TO {owner};
                 DO $$
                 DECLARE t regclass;
                 BEGIN
                     FOR t IN SELECT c.oid FROM pg_catalog.pg_class c
                               WHERE c.relnamespace = 'app'::regnamespace AND c.relkind IN ('r', 'p')
                     LOOP
                         EXECUTE pg_catalog.format('ALTER TABLE %s OWNER TO %I', t, {owner_literal});
                     END LOOP;
                 END $$;",
                db = quote_ident(&db.name),
                owner = owner.ident(),
                owner_literal = quote_literal(&owner_name),
            ),
        )
        .await;
    }
    setup(&db, &service, true).await;
    let check = pinned(&db, &Role::Superuser).await;
    let mut tokens = Vec::new();
    for name in ["alice", "bob"] {
        let (_, new) = token::create(&check, name, &AdminRole::Platform)
            .await
            .expect("admin token");
        tokens.push(new.token);
    }
    let users = worker_support::non_admins(&check, 2).await;
    let (subject, erased) = (users[0], users[1]);

    // The traps: the owner's own schema named like the service role, and
    // `public`; the catalog last in the database's path.
    let app = plain(&db, &owner).await;
    exec(&app, &kit_sql(&owner_name)).await;
    exec(
        &app,
        &format!(
            "CREATE SCHEMA {svc}; GRANT USAGE ON SCHEMA {svc} TO PUBLIC;",
            svc = quote_ident(&service_name)
        ),
    )
    .await;
    exec(&app, &traps_sql(&service_name)).await;
    exec(&app, &traps_sql("public")).await;
    exec(
        &app,
        &format!(
            "ALTER DATABASE {} SET search_path = \"$user\", public, pg_catalog",
            quote_ident(&db.name)
        ),
    )
    .await;
    drop(app);

    // The traps work: a session with the server's defaults springs them,
    // as the service role with the database's path and with the server's
    // default one; as a superuser the payload succeeds.
    let probe = plain(&db, &service).await;
    probe.query_one("SELECT now()", &[]).await.expect("now()");
    probe
        .batch_execute("SET search_path = \"$user\", public")
        .await
        .expect("default path");
    probe
        .query("SELECT unnest(ARRAY[1, 2]::bigint[])", &[])
        .await
        .expect("unnest");
    drop(probe);
    assert_eq!(
        sprung(&check).await,
        [
            format!("{service_name}: now() (1)"),
            format!("{service_name}: unnest(bigint[]) (1)")
        ]
    );
    assert!(!is_superuser(&check, &owner_name).await);
    let su_probe = plain(&db, &Role::Superuser).await;
    su_probe
        .query_one("SELECT now()", &[])
        .await
        .expect("now()");
    drop(su_probe);
    assert!(
        is_superuser(&check, &owner_name).await,
        "a superuser who meets a trap makes the owner one"
    );
    assert!(token_names(&check)
        .await
        .iter()
        .any(|name| name.starts_with("trap-")));
    exec(
        &check,
        &format!(
            "ALTER ROLE {} NOSUPERUSER;
             DELETE FROM lifecycled.admin_tokens WHERE name LIKE 'trap-%';
             DELETE FROM trapkit.log;",
            owner.ident()
        ),
    )
    .await;

    // The service, as its operators run it; its URL asks for the owner's
    // schemas first and sets another option.
    let service_url = format!(
        "{}?options=-c%20search_path%3Dpublic%2Cpg_catalog%20-c%20statement_timeout%3D61s",
        db.url_for(&service)
    );
    let admin_url = db.url_for(&Role::Superuser);
    let storage = tempfile::tempdir().expect("storage directory");
    let storage_url = format!("file://{}", storage.path().display());
    let binary = Binary::serve(
        &[
            "--database-url",
            &service_url,
            "--subject-token-secret",
            SUBJECT_SECRET,
            "--storage-url",
            &storage_url,
            "--anchor-interval",
            "1s",
            "--export-sweep-interval",
            "1s",
            "--worker-id",
            "pinned",
            "--worker-poll-secs",
            "1",
            "--worker-lease-secs",
            "5",
        ],
        &[("RUST_LOG", "lifecycled=warn")],
    )
    .await;
    let mut d = Driver {
        http: reqwest::Client::new(),
        base: binary.url(""),
        wrong: Vec::new(),
    };
    let (alice, bob) = (tokens[0].as_str(), tokens[1].as_str());

    d.get("/readyz", None).await;
    d.get("/api/v1/jobs", Some(alice)).await;
    d.get("/api/v1/jobs/stats", Some(alice)).await;
    d.get(
        &format!("/api/v1/jobs?q={erased}&status=pending&type=erase&limit=5"),
        Some(alice),
    )
    .await;

    // Holds.
    if let Some(hold) = d
        .post(
            "/api/v1/holds",
            alice,
            json!({"scope_type": "user", "scope_id": subject.to_string(), "reason": "Case 17"}),
            StatusCode::CREATED,
        )
        .await
    {
        let id = hold["id"].as_str().unwrap_or_default().to_owned();
        d.get("/api/v1/holds?active=true", Some(alice)).await;
        d.post(
            &format!("/api/v1/holds/{id}/release"),
            alice,
            json!({"reason": "settled"}),
            StatusCode::OK,
        )
        .await;
    }

    // An erasure: previewed, requested, approved, run by the worker.
    d.get(
        &format!("/api/v1/erasure-preview?target_type=user&target_id={erased}"),
        Some(alice),
    )
    .await;
    if let Some(job) = d
        .post(
            "/api/v1/jobs",
            alice,
            json!({"type": "erase", "target_type": "user", "target_id": erased.to_string(),
                   "reason": "GDPR Art. 17", "cooling_off": "PT0S"}),
            StatusCode::CREATED,
        )
        .await
    {
        let id = job["id"].as_str().unwrap_or_default().to_owned();
        d.post(
            &format!("/api/v1/jobs/{id}/approve"),
            bob,
            json!({}),
            StatusCode::OK,
        )
        .await;
        d.wait(
            &check,
            "the worker to run the erasure",
            &format!(
                "SELECT result IS NOT NULL AND status IN ('completed', 'processing') \
                   FROM lifecycle.jobs WHERE id = '{id}'"
            ),
        )
        .await;
        d.get(&format!("/api/v1/jobs/{id}"), Some(alice)).await;
    }

    // The subject: state, preview, an export built and downloaded, an
    // erasure requested and cancelled, their activity.
    let me = user_token(&subject.to_string(), None);
    let me = me.as_str();
    d.get("/api/v1/me", Some(me)).await;
    d.get("/api/v1/me/erasure-preview", Some(me)).await;
    if let Some(export) = d
        .post("/api/v1/me/exports", me, json!({}), StatusCode::CREATED)
        .await
    {
        let id = export["id"].as_str().unwrap_or_default().to_owned();
        d.wait(
            &check,
            "the worker to build the export",
            &format!("SELECT status = 'completed' FROM lifecycle.jobs WHERE id = '{id}'"),
        )
        .await;
        d.get("/api/v1/me/exports", Some(me)).await;
        let path = format!("/api/v1/me/exports/{id}/download");
        if let Some((_, bytes)) = d
            .call(Method::GET, &path, Some(me), None, StatusCode::OK)
            .await
        {
            d.check(bytes.starts_with(b"PK"), format!("{path}: not a ZIP"));
        }
        // Administrators download workspaces' exports, not a person's.
        d.call(
            Method::GET,
            &format!("/api/v1/jobs/{id}/download"),
            Some(alice),
            None,
            StatusCode::FORBIDDEN,
        )
        .await;
    }
    d.post(
        "/api/v1/me/erasure",
        me,
        json!({"confirm": "delete my account", "reason": "leaving"}),
        StatusCode::OK,
    )
    .await;
    d.post("/api/v1/me/erasure/cancel", me, json!({}), StatusCode::OK)
        .await;
    d.get("/api/v1/me/activity", Some(me)).await;

    // The audit log, as JSON and CSV, and its verification against the
    // worker's anchors.
    d.get(
        &format!("/api/v1/audit?subject_type=user&subject_id={subject}"),
        Some(alice),
    )
    .await;
    d.call(
        Method::GET,
        &format!("/api/v1/audit?subject_type=user&subject_id={subject}&format=csv"),
        Some(alice),
        None,
        StatusCode::OK,
    )
    .await;
    let anchors = storage.path().join(anchors_prefix("default"));
    let start = Instant::now();
    while std::fs::read_dir(&anchors).map_or(0, Iterator::count) == 0
        && start.elapsed() < STEP_TIMEOUT
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if let Some(verified) = d.get("/api/v1/audit/verify", Some(alice)).await {
        let first = &verified["databases"][0];
        d.check(
            first["ok"] == json!(true) && first["anchors"]["anchors"].as_u64() > Some(0),
            format!("verification against anchors: {verified}"),
        );
    }
    if let Some((_, metrics)) = d
        .call(Method::GET, "/metrics", None, None, StatusCode::OK)
        .await
    {
        let metrics = String::from_utf8_lossy(&metrics);
        d.check(
            metrics.contains("lifecycled_database_up{database=\"default\"} 1")
                && metrics.contains("lifecycled_jobs{"),
            format!("/metrics: {metrics}"),
        );
    }

    // The token commands and setup, as a superuser.
    if let Some(out) = d
        .cli(&[
            "token",
            "create",
            "--name",
            "carol",
            "--role",
            "platform-admin",
            "--database-url",
            &admin_url,
        ])
        .await
    {
        let carol = out.trim().to_owned();
        d.get("/api/v1/jobs/stats", Some(&carol)).await;
        if let Some(list) = d
            .cli(&["token", "list", "--database-url", &admin_url])
            .await
        {
            d.check(list.contains("carol"), format!("token list: {list}"));
        }
        d.cli(&["token", "revoke", "carol", "--database-url", &admin_url])
            .await;
        d.call(
            Method::GET,
            "/api/v1/jobs/stats",
            Some(&carol),
            None,
            StatusCode::UNAUTHORIZED,
        )
        .await;
    }
    d.cli(&[
        "setup",
        "--admin-url",
        &admin_url,
        "--service-role",
        &service_name,
    ])
    .await;
    // setup_database in a session of the caller's, whatever its path.
    setup(&db, &service, true).await;
    d.get("/readyz", None).await;
    let (status, output) = binary.terminate().await;
    d.check(
        status.success(),
        format!("lifecycled exited with {status}: {output}"),
    );

    // No trap ran, the owner is who they were, no admin token appeared.
    let traps = sprung(&check).await;
    let owner_is_superuser = is_superuser(&check, &owner_name).await;
    let names = token_names(&check).await;
    assert!(
        traps.is_empty()
            && !owner_is_superuser
            && names == ["alice", "bob", "carol"]
            && d.wrong.is_empty(),
        "traps that ran: {traps:#?}\nthe owner is a superuser: {owner_is_superuser}\n\
         admin tokens: {names:?}\nsteps that went wrong: {:#?}",
        d.wrong
    );

    // The pools' sessions keep the URL's options and pin the path over
    // its own.
    let dbs = Databases::from_args(&DatabaseArgs {
        databases: vec![DatabaseSpec {
            name: "default".to_owned(),
            url: service_url.clone(),
        }],
        db_timeout_secs: 5,
        ..DatabaseArgs::default()
    })
    .expect("databases");
    let pooled = dbs.primary_client().await.expect("pooled session");
    let row = pooled
        .query_one(
            "SELECT current_setting('search_path'), current_setting('statement_timeout')",
            &[],
        )
        .await
        .expect("settings");
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("pg_catalog,pg_temp".to_owned(), "61s".to_owned())
    );
    drop(pooled);
    dbs.close();
    assert_eq!(sprung(&check).await, Vec::<String>::new());

    drop(check);
    db.cleanup().await.expect("cleanup");
}
