//! Attacks on the guards by roles that are not superusers (a table owner,
//! any logged-in role, a role granted everything on the extension's tables),
//! and by a table owner laying traps for a superuser. Every test checks the
//! held rows byte for byte afterwards, not only the error.

use lifecycle_tests::cluster::OwnCluster;
use lifecycle_tests::{
    count, describe, exec, expect_one_of, expect_sqlstate, guards_not_ok, ok, verify_audit_log,
    Role,
};
use tokio_postgres::error::DbError;
use tokio_postgres::Client;

// The application of `tests/fixtures/guarded_app.sql`, owned and registered
// by a role that is not a superuser.
use lifecycle_tests::guarded_app as app;

/// User U1, held; spelled in upper case on purpose (the uuid is the same).
const U1_UPPER: &str = "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11";
const U1: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
const U2: &str = "b1ffcd00-ad1c-4ef8-bb6d-6bb9bd380a12";
const REASON: &str = "Litigation 2026-CV-7: preserve everything of U1";

/// Hold U1 in acme (given in upper case); returns the hold's id.
async fn hold_u1(su: &Client) -> uuid::Uuid {
    ok(
        su.query_one(
            "SELECT lifecycle.place_hold('user', $1, 'acme', $2, 'legal@example.com')",
            &[&U1_UPPER, &REASON],
        )
        .await,
        "place_hold",
    )
    .get(0)
}

/// A digest of every row of the application's tables, read by a clean
/// superuser session.
async fn fingerprint(c: &Client) -> String {
    c.query_one(
        "SELECT pg_catalog.concat_ws('|',
            (SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id)) FROM app.workspaces t),
            (SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id)) FROM app.users t),
            (SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id)) FROM app.posts t),
            (SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id, t.at)) FROM app.events t))",
        &[],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or_else(|e| panic!("fingerprint: {}", describe(&e)))
}

fn assert_explained(e: &DbError, what: &str) {
    assert!(
        e.detail().is_some_and(|d| !d.is_empty()),
        "{what}: no DETAIL"
    );
    assert!(e.hint().is_some_and(|h| !h.is_empty()), "{what}: no HINT");
}

fn assert_names_hold(e: &DbError, hold: &uuid::Uuid, what: &str) {
    let d = e.detail().unwrap_or_default();
    assert!(
        d.contains(&hold.to_string()),
        "{what}: DETAIL {d:?} does not name the hold"
    );
    assert_explained(e, what);
}

// ----- 1. functions any role can call ---------------------------------------------

/// The signature constant of a table's row guard condition, read from its
/// trigger definition (which any role can read).
async fn guard_signature(c: &Client, table: &str) -> i64 {
    let def: String = ok(
        c.query_one(
            "SELECT pg_catalog.pg_get_triggerdef(t.oid) FROM pg_catalog.pg_trigger t \
              WHERE t.tgrelid OPERATOR(pg_catalog.=) $1::text::pg_catalog.regclass \
                AND t.tgname OPERATOR(pg_catalog.=) 'lifecycle_guard'",
            &[&table],
        )
        .await,
        "trigger definition",
    )
    .get(0);
    // ... row_may_be_held('app.notes'::regclass, (- '123'::bigint), old.x ...
    let after = def
        .split("::regclass, ")
        .nth(1)
        .expect("signature argument");
    let digits: String = after
        .split(',')
        .next()
        .unwrap()
        .split("::")
        .next()
        .unwrap()
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == '-')
        .collect();
    digits.parse().expect("signature is a number")
}

#[tokio::test]
async fn the_row_condition_refuses_keys_of_other_types_and_never_crashes_the_server() {
    // A cluster of the test's own: if the condition read a key as the wrong
    // type, the server would go down with it.
    let cluster = OwnCluster::start("row_condition").expect("own cluster");
    let admin = cluster.connect("postgres").await.expect("connect");
    exec(&admin, "CREATE DATABASE guards").await;
    exec(&admin, "CREATE ROLE anyone LOGIN").await;
    let su = cluster.connect("guards").await.expect("connect");
    exec(
        &su,
        "CREATE EXTENSION lifecycle;
         CREATE SCHEMA app;
         CREATE TABLE app.notes (id bigint PRIMARY KEY, user_id uuid NOT NULL, handle text NOT NULL);
         CREATE TABLE app.tickets (id bigint PRIMARY KEY, user_id uuid NOT NULL, queue bigint NOT NULL);
         INSERT INTO app.notes SELECT g, pg_catalog.md5(g::text)::uuid, 'handle ' || g FROM pg_catalog.generate_series(1, 50) g;
         INSERT INTO app.tickets SELECT g, pg_catalog.md5(g::text)::uuid, g FROM pg_catalog.generate_series(1, 50) g;
         SELECT lifecycle.register_table('app.notes', 'user', 'user_id');
         SELECT lifecycle.register_table('app.tickets', 'user', 'user_id');
         SELECT lifecycle.register_scope('app.notes', 'handle', 'handle');
         SELECT lifecycle.register_scope('app.tickets', 'queue', 'queue');
         SELECT lifecycle.place_hold('user', pg_catalog.md5('7')::uuid::text, NULL, 'case', 'legal');
         SELECT lifecycle.place_hold('handle', 'handle 8', NULL, 'case', 'legal');
         SELECT lifecycle.place_hold('queue', '9', NULL, 'case', 'legal');
         -- An unlogged table: a crash and its recovery would empty it.
         CREATE UNLOGGED TABLE public.witness AS SELECT g AS n FROM pg_catalog.generate_series(1, 1000) g;
         GRANT USAGE ON SCHEMA app TO anyone;",
    )
    .await;
    let started: String = ok(
        su.query_one("SELECT pg_catalog.pg_postmaster_start_time()::text", &[])
            .await,
        "start time",
    )
    .get(0);
    let notes = guard_signature(&su, "app.notes").await;
    let tickets = guard_signature(&su, "app.tickets").await;

    // The only function of the extension that PUBLIC may execute.
    let public: Vec<String> = ok(
        su.query(
            "SELECT p.oid::pg_catalog.regprocedure::text FROM pg_catalog.pg_proc p \
              WHERE p.pronamespace OPERATOR(pg_catalog.=) 'lifecycle'::pg_catalog.regnamespace \
                AND pg_catalog.has_function_privilege('public', p.oid, 'EXECUTE') ORDER BY 1",
            &[],
        )
        .await,
        "functions PUBLIC can execute",
    )
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert_eq!(
        public,
        vec![
            "lifecycle.mentions(text,text[])".to_string(),
            "lifecycle.redact_json(jsonb,text[])".to_string(),
            "lifecycle.redact_text(text,text[])".to_string(),
            "lifecycle.row_may_be_held(regclass,bigint,\"any\")".to_string(),
        ],
        "functions executable by PUBLIC (each one must be safe for any arguments)"
    );

    let anyone = cluster
        .connect_as("guards", "anyone")
        .await
        .expect("connect as anyone");
    // Keys of other types than the scope columns (handle text, user uuid).
    let wrong = [
        format!("SELECT lifecycle.row_may_be_held('app.notes'::regclass, {notes}, 12345::bigint, 67890::bigint)"),
        format!("SELECT lifecycle.row_may_be_held('app.notes'::regclass, {notes}, pg_catalog.md5('7')::uuid, 'handle 8'::text)"),
        format!("SELECT lifecycle.row_may_be_held('app.notes'::regclass, {notes}, 'x'::text, 1::integer)"),
        format!("SELECT lifecycle.row_may_be_held('app.tickets'::regclass, {tickets}, 'not a number'::text, 'x'::text)"),
        // The same call site first right for one table, then wrong for the
        // next row's table: the types are checked again for every relation.
        format!(
            "SELECT lifecycle.row_may_be_held(r, s, 9::bigint, pg_catalog.md5('1')::uuid) \
               FROM (VALUES ('app.tickets'::regclass, {tickets}::bigint), ('app.notes'::regclass, {notes}::bigint)) v(r, s)"
        ),
    ];
    for sql in &wrong {
        let e = expect_sqlstate(anyone.query(sql.as_str(), &[]).await, "42804", sql);
        assert_explained(&e, sql);
    }
    // Right types: an answer, fast path included (many rows, one call site).
    let held: bool = ok(
        anyone
            .query_one(
                &format!("SELECT lifecycle.row_may_be_held('app.notes'::regclass, {notes}, 'handle 8'::text, pg_catalog.md5('1')::uuid)"),
                &[],
            )
            .await,
        "held handle",
    )
    .get(0);
    assert!(held, "a held handle may be held");
    let maybe: i64 = ok(
        anyone
            .query_one(
                &format!(
                    "SELECT pg_catalog.count(*) FILTER (WHERE lifecycle.row_may_be_held('app.notes'::regclass, {notes}, h, u)) \
                       FROM (SELECT 'handle ' || g AS h, pg_catalog.md5(g::text)::uuid AS u \
                               FROM pg_catalog.generate_series(1, 2000) g) x"
                ),
                &[],
            )
            .await,
        "many rows",
    )
    .get(0);
    assert_eq!(maybe, 2, "rows 7 (user) and 8 (handle) may be held");
    // A wrong signature, NULLs, an unknown relation: answers, nothing read.
    for sql in [
        format!("SELECT lifecycle.row_may_be_held('app.notes'::regclass, {}, 1::bigint, 2::bigint)", notes.wrapping_add(1)),
        format!("SELECT lifecycle.row_may_be_held('app.notes'::regclass, {notes}, NULL::text, NULL::uuid)"),
        format!("SELECT lifecycle.row_may_be_held('app.notes'::regclass, {notes}, VARIADIC ARRAY['a', 'b'])"),
        "SELECT lifecycle.row_may_be_held(NULL::regclass, NULL::bigint, 1::bigint)".to_string(),
        "SELECT lifecycle.row_may_be_held(1259::regclass, 0, 1::bigint)".to_string(),
    ] {
        ok(anyone.query(sql.as_str(), &[]).await, &sql);
    }

    // The server never went down.
    let after: String = ok(
        anyone
            .query_one("SELECT pg_catalog.pg_postmaster_start_time()::text", &[])
            .await,
        "start time after",
    )
    .get(0);
    assert_eq!(started, after, "the server restarted:\n{}", cluster.log());
    assert_eq!(
        count(&su, "SELECT 1 FROM public.witness").await,
        1000,
        "the unlogged table lost rows"
    );
    // And the guard itself still works with the condition's checks.
    expect_sqlstate(
        su.execute("DELETE FROM app.notes WHERE id = 8", &[]).await,
        "LC001",
        "DELETE of a held note",
    );
    assert_eq!(
        ok(
            su.execute("DELETE FROM app.notes WHERE id = 10", &[]).await,
            "DELETE of a note not held"
        ),
        1
    );
}

/// The pure functions PUBLIC may execute answer any input, as any role: a
/// document nested deeper than a recursive parser allows, NULL and empty
/// identifiers, long texts. And a document like that in someone else's row
/// does not stop an erasure that must redact it: the identifiers are
/// replaced at every depth, every other value is kept as it was written.
#[tokio::test]
async fn the_public_functions_take_any_input_and_deep_documents_do_not_stop_an_erasure() {
    let mut a = app("attack_public_functions").await;
    let anyone = a.db.create_role("anyone").await.expect("role");
    let c = a.db.connect(&anyone).await.expect("session");
    let depth = 3_000;
    let deep = format!(
        "{}{{\"to\": \"udo@acme.example\", \"n\": 2.50, \"big\": 123456789012345678901234567890}}{}",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let redacted: String = ok(
        c.query_one(
            "SELECT lifecycle.redact_json($1::text::jsonb, ARRAY[NULL, '', 'udo@acme.example'])::text",
            &[&deep],
        )
        .await,
        "redact_json of a deep document",
    )
    .get(0);
    assert!(
        redacted.contains("\"to\": \"[redacted]\""),
        "{}",
        &redacted[depth..]
    );
    assert!(redacted.contains("\"n\": 2.50"), "the number was rewritten");
    assert!(redacted.contains("123456789012345678901234567890"));
    for sql in [
        "SELECT lifecycle.redact_text(pg_catalog.repeat('udo ', 100000), ARRAY[NULL, '', 'udo'])",
        "SELECT lifecycle.mentions(pg_catalog.repeat('x', 1000000), ARRAY(SELECT 'id' OPERATOR(pg_catalog.||) i FROM pg_catalog.generate_series(1, 10000) i))",
        "SELECT lifecycle.redact_json('{}', '{}')",
        "SELECT lifecycle.redact_json('\"udo@acme.example\"', ARRAY['udo@acme.example'])",
    ] {
        ok(c.batch_execute(sql).await, sql);
    }

    // Someone else's row (U3's) mentions U2 deep inside a document.
    exec(
        &a.app,
        "CREATE TABLE app.threads (id bigint PRIMARY KEY, user_id uuid NOT NULL, meta jsonb);
         CREATE INDEX ON app.threads (user_id);
         SELECT lifecycle.register_table('app.threads', 'user', 'user_id', redact_mentions => true);",
    )
    .await;
    ok(
        a.su.execute(
            "INSERT INTO app.threads VALUES (1, 'c2aade11-be2d-4ef8-bb6d-6bb9bd380a13', $1::text::jsonb)",
            &[&deep],
        )
        .await,
        "insert the deep document",
    );
    exec(
        &a.su,
        &format!(
            "SELECT lifecycle.request_erasure('user', '{U2}', 'acme', 'dpo@example.com', 'GDPR Art. 17',
                                              cooling_off => '0 seconds', requires_approval => false);
             SELECT lifecycle.run_due_jobs();"
        ),
    )
    .await;
    let row = ok(
        a.su.query_one(
            "SELECT status, error FROM lifecycle.jobs WHERE target_id = $1",
            &[&U2],
        )
        .await,
        "the erasure",
    );
    let (status, error): (String, Option<String>) = (row.get(0), row.get(1));
    assert_eq!(status, "completed", "{error:?}");
    let meta: String = ok(
        a.su.query_one("SELECT meta::text FROM app.threads WHERE id = 1", &[])
            .await,
        "the document after the erasure",
    )
    .get(0);
    assert_eq!(meta, redacted, "the document after the erasure");
    drop(c);
    a.db.cleanup().await.expect("cleanup");
}

// ----- 2. search_path --------------------------------------------------------------

/// A schema of traps: operators and functions shadowing pg_catalog's, each
/// logging who called it and trying to make `owner` a superuser.
fn traps(owner: &str) -> String {
    let mut sql = format!(
        "CREATE SCHEMA evil;
         CREATE TABLE evil.log (at timestamptz DEFAULT pg_catalog.clock_timestamp(), who text, what text);
         GRANT USAGE ON SCHEMA evil TO PUBLIC;
         GRANT INSERT, SELECT ON evil.log TO PUBLIC;
         CREATE FUNCTION evil.trap(what text) RETURNS void LANGUAGE plpgsql SET search_path = pg_catalog AS $t$
         BEGIN
             INSERT INTO evil.log (who, what) VALUES (current_user, what);
             BEGIN
                 EXECUTE format('ALTER ROLE %I SUPERUSER', '{owner}');
             EXCEPTION WHEN OTHERS THEN NULL;
             END;
         END $t$;
         CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql SET search_path = pg_catalog AS $t$
         BEGIN PERFORM evil.trap('now()'); RETURN 'infinity'; END $t$;
         CREATE FUNCTION evil.quote_ident(text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS $t$
         BEGIN PERFORM evil.trap('quote_ident()'); RETURN pg_catalog.quote_ident($1); END $t$;
         CREATE FUNCTION evil.to_regclass(text) RETURNS regclass LANGUAGE plpgsql SET search_path = pg_catalog AS $t$
         BEGIN PERFORM evil.trap('to_regclass()'); RETURN pg_catalog.to_regclass($1); END $t$;
         CREATE FUNCTION evil.md5(text) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS $t$
         BEGIN PERFORM evil.trap('md5()'); RETURN pg_catalog.md5($1); END $t$;
         CREATE FUNCTION evil.format_type(oid, integer) RETURNS text LANGUAGE plpgsql SET search_path = pg_catalog AS $t$
         BEGIN PERFORM evil.trap('format_type()'); RETURN pg_catalog.format_type($1, $2); END $t$;"
    );
    for ty in [
        "oid", "text", "name", "bigint", "integer", "uuid", "regclass", "bpchar",
    ] {
        let f = ty.replace(' ', "_");
        sql.push_str(&format!(
            "
             CREATE FUNCTION evil.eq_{f}(a {ty}, b {ty}) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS $t$
             BEGIN PERFORM evil.trap('{ty} ='); RETURN a = b; END $t$;
             CREATE OPERATOR evil.= (LEFTARG = {ty}, RIGHTARG = {ty}, FUNCTION = evil.eq_{f});
             CREATE FUNCTION evil.ne_{f}(a {ty}, b {ty}) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS $t$
             BEGIN PERFORM evil.trap('{ty} <>'); RETURN a <> b; END $t$;
             CREATE OPERATOR evil.<> (LEFTARG = {ty}, RIGHTARG = {ty}, FUNCTION = evil.ne_{f});"
        ));
    }
    sql
}

/// The search path a trap layer sets: its schema first, temporary tables
/// before the catalogs.
const EVIL_PATH: &str = "SET search_path = evil, pg_temp, pg_catalog, public";

/// Temporary tables shadowing catalogs and the extension's tables by their
/// bare names.
const SHADOWS: &str = "
    CREATE TEMP TABLE pg_class (oid oid, relname name, relkind \"char\", relnamespace oid, relispartition boolean);
    CREATE TEMP TABLE pg_trigger (oid oid, tgrelid oid, tgname name, tgenabled \"char\", tgfoid oid);
    CREATE TEMP TABLE pg_attribute (attrelid oid, attname name, atttypid oid, attnum int2, attisdropped boolean);
    CREATE TEMP TABLE legal_holds (id uuid);
    CREATE TEMP TABLE scope_columns (relation regclass);";

/// A digest of U1's rows (the held ones) in every application table.
async fn held_rows(c: &Client) -> String {
    c.query_one(
        "SELECT pg_catalog.concat_ws('|',
            (SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id)) FROM app.users t
              WHERE t.id = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
            (SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id)) FROM app.posts t
              WHERE t.author_id = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
            (SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id)) FROM app.events t
              WHERE t.user_id = 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'))",
        &[],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or_else(|e| panic!("held rows: {}", describe(&e)))
}

async fn trap_calls(su: &Client) -> Vec<String> {
    ok(
        su.query(
            "SELECT l.who OPERATOR(pg_catalog.||) ': ' OPERATOR(pg_catalog.||) l.what FROM evil.log l ORDER BY l.at",
            &[],
        )
        .await,
        "evil.log",
    )
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test]
async fn search_path_cannot_redirect_what_the_extension_runs() {
    let a = app("attack_search_path").await;
    let hold = hold_u1(&a.su).await;
    let owner = a.owner.name().unwrap().to_string();
    exec(
        &a.su,
        &format!(
            "GRANT CREATE ON DATABASE {} TO {}",
            lifecycle_tests::quote_ident(&a.db.name),
            a.owner.ident()
        ),
    )
    .await;
    exec(&a.app, &traps(&owner)).await;
    let held_before = held_rows(&a.su).await;

    // The owner, with the traps first in the path and catalogs shadowed.
    exec(&a.app, EVIL_PATH).await;
    exec(&a.app, SHADOWS).await;
    let e = expect_sqlstate(
        a.app
            .execute(
                "DELETE FROM app.posts WHERE author_id OPERATOR(pg_catalog.=) 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::pg_catalog.uuid",
                &[],
            )
            .await,
        "LC001",
        "DELETE of held posts under the trap path",
    );
    assert_names_hold(&e, &hold, "DELETE under the trap path");
    expect_sqlstate(
        a.app.execute("TRUNCATE app.events", &[]).await,
        "LC002",
        "TRUNCATE under the trap path",
    );
    expect_sqlstate(
        a.app
            .execute("SELECT lifecycle.unregister_table('app.posts')", &[])
            .await,
        "LC003",
        "unregister under the trap path",
    );
    expect_sqlstate(
        a.app
            .execute("ALTER TABLE app.posts DISABLE TRIGGER lifecycle_guard", &[])
            .await,
        "LC004",
        "DISABLE TRIGGER under the trap path",
    );
    expect_sqlstate(
        a.app
            .execute("ALTER TABLE app.posts DROP COLUMN body", &[])
            .await,
        "LC007",
        "DROP COLUMN under the trap path",
    );
    // What the owner may do still works, and runs none of the traps.
    exec(
        &a.app,
        "CREATE TABLE app.comments (id bigint PRIMARY KEY, user_id uuid NOT NULL, body text);
         SELECT lifecycle.register_table('app.comments', 'user', 'user_id');
         SELECT lifecycle.set_column_rule('app.comments', 'body', 'redact');
         ALTER TABLE app.comments ADD COLUMN extra integer;
         CREATE TABLE app.scratch (id integer);
         DROP TABLE app.scratch;
         DELETE FROM app.posts WHERE id OPERATOR(pg_catalog.=) 30::pg_catalog.int8;",
    )
    .await;
    let soft_deleted = count(
        &a.su,
        "SELECT 1 FROM app.posts WHERE id = 30 AND deleted_at IS NOT NULL",
    )
    .await;
    assert_eq!(soft_deleted, 1, "soft delete under the trap path");

    // A superuser working in the same session setup: the extension's own
    // statements, the engine included, run none of the owner's code.
    let su2 = a.db.connect(&Role::Superuser).await.expect("superuser");
    exec(&su2, EVIL_PATH).await;
    exec(&su2, SHADOWS).await;
    exec(
        &su2,
        &format!(
            "SELECT lifecycle.place_hold('case_ref', 'K-1', NULL, 'Case K-1', 'legal@example.com');
             SELECT lifecycle.record_event('account.login', 'user:x', 'user', '{U2}', 'acme', '{{}}', '203.0.113.9', 'agent');
             SELECT lifecycle.request_erasure('user', '{U2}', 'acme', 'dpo@example.com', 'GDPR Art. 17',
                                              cooling_off => '0 seconds', requires_approval => false);
             SELECT lifecycle.run_due_jobs();
             SELECT lifecycle.verify_audit_log();
             SELECT * FROM lifecycle.guard_status;
             SELECT lifecycle.retention_sweep();"
        ),
    )
    .await;
    // Every other entry point, read-only or not: the data map's reports,
    // the job list and counts, tenants and members, and an export's life
    // (its contents, cursors on its rows, the bundle stored, downloaded
    // and expired), and the procedure that commits after each job.
    exec(
        &su2,
        &format!(
            "SELECT lifecycle.preview_erasure('user', '{U1}', 'acme');
             SELECT * FROM lifecycle.unmapped_references();
             SELECT * FROM lifecycle.unindexed_keys();
             SELECT * FROM lifecycle.retention_disclosure();
             SELECT * FROM lifecycle.compliance_report(pg_catalog.now() OPERATOR(pg_catalog.-) '1 day'::pg_catalog.interval,
                                                       pg_catalog.now());
             SELECT * FROM lifecycle.list_jobs();
             SELECT * FROM lifecycle.job_stats();
             SELECT * FROM lifecycle.oldest_due_jobs();
             SELECT lifecycle.recount_jobs();
             SELECT * FROM lifecycle.tenant_names(ARRAY['acme']);
             SELECT * FROM lifecycle.find_tenants('ac');
             SELECT lifecycle.is_member('user', '{U1}', 'acme');
             SELECT lifecycle.subject_state('user', '{U1}');
             SELECT lifecycle.set_column_label('app.posts', 'body', 'Text');
             SELECT lifecycle.exclude_from_export('app.posts', 'mood', 'internal');
             SELECT lifecycle.include_in_export('app.posts', 'mood');
             SELECT * FROM lifecycle.export_contents('user', '{U1}', 'acme');
             SELECT * FROM lifecycle.audit_chain_heads();
             SELECT lifecycle.request_export('user', '{U1}', 'acme', 'user:{U1}');
             BEGIN;
             SELECT lifecycle.open_export('user', '{U1}', 'acme', f.name, 'file_rows')
               FROM lifecycle.export_contents('user', '{U1}', 'acme') f
              WHERE f.position OPERATOR(pg_catalog.=) 1;
             SELECT * FROM lifecycle.fetch_export('file_rows', 100);
             COMMIT;"
        ),
    )
    .await;
    let export: uuid::Uuid = ok(
        su2.query_one(
            "SELECT (c.job OPERATOR(pg_catalog.->>) 'id')::pg_catalog.uuid
               FROM lifecycle.claim_job('w1', '1 minute', ARRAY['export']) c(job)",
            &[],
        )
        .await,
        "claim the export under the trap path",
    )
    .get(0);
    exec(
        &su2,
        &format!(
            "SELECT lifecycle.renew_lease('{export}', 'w1', '1 minute');
             SELECT lifecycle.complete_job('{export}', 'w1',
                 '{{\"bundle\": {{\"key\": \"exports/x.zip\", \"size\": 1, \"sha256\": \"00\"}}, \"expires_at\": \"2999-01-01T00:00:00Z\"}}');
             SELECT lifecycle.export_download('{export}', 'user', '{U1}', 'user:{U1}', '203.0.113.9', 'agent');
             SELECT lifecycle.expire_export('{export}', 'sweeper');
             CALL lifecycle.run_due_jobs_each();"
        ),
    )
    .await;
    let status: String = ok(
        a.su.query_one(
            "SELECT status FROM lifecycle.jobs WHERE target_id = $1",
            &[&U2],
        )
        .await,
        "job status",
    )
    .get(0);
    assert_eq!(status, "completed", "the erasure ran under the trap path");

    assert_eq!(
        trap_calls(&a.su).await,
        Vec::<String>::new(),
        "the extension ran trap code"
    );
    let is_super: bool = ok(
        a.su.query_one(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) $1::text::pg_catalog.name",
            &[&owner],
        )
        .await,
        "rolsuper",
    )
    .get(0);
    assert!(!is_super, "the owner became a superuser");
    // U1's rows are as they were (U2's were erased, post 30 soft-deleted).
    assert_eq!(held_rows(&a.su).await, held_before, "held rows changed");
    assert_eq!(guards_not_ok(&a.su).await, Vec::<String>::new());
    assert!(verify_audit_log(&a.su).await.0);
    a.db.cleanup().await.expect("cleanup");
}

// ----- 4. DDL that rewrites or endangers held rows ------------------------------------

#[tokio::test]
async fn ddl_that_rewrites_drops_or_endangers_held_values_is_refused() {
    let a = app("attack_ddl").await;
    let hold = hold_u1(&a.su).await;
    let before = fingerprint(&a.su).await;
    let refused = [
        "ALTER TABLE app.posts ALTER COLUMN body TYPE varchar(4) USING pg_catalog.left(body, 4)",
        "ALTER TABLE app.posts ALTER COLUMN body TYPE varchar(200)",
        "ALTER TABLE app.posts ALTER COLUMN mood TYPE text",
        "ALTER TABLE app.posts DROP COLUMN body",
        "ALTER TABLE app.posts DROP COLUMN mood, ADD COLUMN note text",
        "ALTER TABLE app.posts SET UNLOGGED",
        "ALTER TABLE app.events_2026 SET UNLOGGED",
        "ALTER TABLE app.events ALTER COLUMN id TYPE numeric",
        "ALTER TABLE app.users ALTER COLUMN email TYPE varchar(5) USING 'x'",
        "ALTER TYPE app.mood RENAME VALUE 'calm' TO 'angry'",
        "DROP TYPE app.mood CASCADE",
    ];
    for sql in refused {
        let e = expect_sqlstate(a.app.batch_execute(sql).await, "LC007", sql);
        assert_names_hold(&e, &hold, sql);
        assert_eq!(fingerprint(&a.su).await, before, "{sql}: the data changed");
        assert_eq!(guards_not_ok(&a.su).await, Vec::<String>::new(), "{sql}");
    }
    // The same in one transaction with other work: all of it rolls back.
    expect_sqlstate(
        a.app
            .batch_execute(
                "BEGIN; ALTER TABLE app.posts ADD COLUMN x int; ALTER TABLE app.posts DROP COLUMN body; COMMIT;",
            )
            .await,
        "LC007",
        "DROP COLUMN inside a transaction",
    );
    exec(&a.app, "ROLLBACK").await;
    assert_eq!(fingerprint(&a.su).await, before);

    // What does not touch the values of held rows is allowed.
    exec(
        &a.app,
        "ALTER TABLE app.posts ADD COLUMN priority integer DEFAULT 0;
         ALTER TABLE app.posts ALTER COLUMN priority SET DEFAULT 1;
         ALTER TYPE app.mood ADD VALUE 'angry';
         CREATE INDEX posts_body ON app.posts (body);",
    )
    .await;
    // A table with no held rows may lose its durability: guard_status says so.
    exec(
        &a.app,
        "CREATE TABLE app.drafts (id bigint PRIMARY KEY, user_id uuid NOT NULL);
         INSERT INTO app.drafts VALUES (1, 'c2aade11-be2d-4ef8-bb6d-6bb9bd380a13');
         SELECT lifecycle.register_table('app.drafts', 'user', 'user_id');
         ALTER TABLE app.drafts SET UNLOGGED;",
    )
    .await;
    let shown = guards_not_ok(&a.su).await;
    assert!(
        shown
            .iter()
            .any(|s| s.contains("app.drafts") && s.contains("unlogged")),
        "guard_status does not show the unlogged table: {shown:?}"
    );
    exec(&a.app, "ALTER TABLE app.drafts SET LOGGED").await;
    assert_eq!(guards_not_ok(&a.su).await, Vec::<String>::new());

    // Once the hold is released, the same DDL goes through.
    exec(
        &a.su,
        &format!("SELECT lifecycle.release_hold('{hold}', 'legal@example.com', 'settled')"),
    )
    .await;
    exec(
        &a.app,
        "ALTER TABLE app.posts ALTER COLUMN body TYPE varchar(200); ALTER TABLE app.events_2026 SET UNLOGGED;",
    )
    .await;
    a.db.cleanup().await.expect("cleanup");
}

/// A digest of every row of the tables the types test creates.
async fn typed_rows(c: &Client) -> String {
    let mut parts = Vec::new();
    for (t, _, _) in CONTAINERS {
        parts.push(format!(
            "(SELECT pg_catalog.string_agg(t::text, ',' ORDER BY t.id) FROM app.{t} t)"
        ));
    }
    parts
        .push("(SELECT pg_catalog.string_agg(t::text, ',' ORDER BY t.id) FROM app.typed t)".into());
    c.query_one(
        &format!("SELECT pg_catalog.concat_ws('|', {})", parts.join(", ")),
        &[],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or_else(|e| panic!("typed rows: {}", describe(&e)))
}

/// Tables whose column holds an enum of its own (named after the table)
/// inside another type: (table, the column's type, U1's value).
const CONTAINERS: [(&str, &str, &str); 6] = [
    ("in_composite", "app.in_composite_pair", "(low,1)"),
    ("in_domain", "app.in_domain_dd", "low"),
    ("in_range", "app.in_range_range", "[low,high]"),
    ("in_multirange", "app.in_multirange_multi", "{[low,high]}"),
    ("in_array", "app.in_array_pair[]", "{\"(low,1)\"}"),
    ("in_row", "app.in_row_inner", "(low)"),
];

/// DDL on a type reaches the rows of every table whose columns hold it, at
/// any depth, and of every table typed by it, without naming those tables:
/// refused while they hold held rows, like the same DDL on the tables.
#[tokio::test]
async fn ddl_on_types_cannot_change_held_rows_through_them() {
    let a = app("attack_ddl_types").await;
    for (t, ty, value) in CONTAINERS {
        exec(
            &a.app,
            &format!(
                "CREATE TYPE app.{t}_level AS ENUM ('low', 'high');
                 CREATE TYPE app.{t}_pair AS (l app.{t}_level, n integer);
                 CREATE DOMAIN app.{t}_d AS app.{t}_level;
                 CREATE DOMAIN app.{t}_dd AS app.{t}_d;
                 CREATE TYPE app.{t}_range AS RANGE (subtype = app.{t}_level, multirange_type_name = app.{t}_multi);
                 CREATE TABLE app.{t}_inner (l app.{t}_level);
                 CREATE TABLE app.{t} (id bigint PRIMARY KEY, user_id uuid NOT NULL, v {ty});
                 CREATE INDEX ON app.{t} (user_id);
                 INSERT INTO app.{t} VALUES (1, '{U1}', $${value}$$), (2, '{U2}', NULL);
                 SELECT lifecycle.register_table('app.{t}', 'user', 'user_id');"
            ),
        )
        .await;
    }
    // A table typed by a composite type (CREATE TABLE ... OF).
    exec(
        &a.app,
        &format!(
            "CREATE TYPE app.note AS (id bigint, user_id uuid, amount numeric, memo text);
             CREATE TABLE app.typed OF app.note (PRIMARY KEY (id));
             CREATE INDEX ON app.typed (user_id);
             INSERT INTO app.typed VALUES (1, '{U1}', 1.6, 'kept'), (2, '{U2}', 2.4, 'other');
             SELECT lifecycle.register_table('app.typed', 'user', 'user_id');"
        ),
    )
    .await;
    let hold = hold_u1(&a.su).await;
    let before = typed_rows(&a.su).await;
    let data_before = fingerprint(&a.su).await;

    // Renaming an enum value rewrites what every held value holding it
    // reads as, whatever holds it.
    for (t, _, _) in CONTAINERS {
        let sql = format!("ALTER TYPE app.{t}_level RENAME VALUE 'low' TO 'lowest'");
        let e = expect_sqlstate(a.app.batch_execute(&sql).await, "LC007", &sql);
        assert_names_hold(&e, &hold, &sql);
        assert!(
            e.message().contains(&format!("app.{t}")),
            "{sql}: {}",
            e.message()
        );
        assert_eq!(typed_rows(&a.su).await, before, "{sql}: the rows changed");
    }
    // A typed table changes with its type.
    for (sql, code) in [
        // rounds 1.6 to 2 in every row
        (
            "ALTER TYPE app.note ALTER ATTRIBUTE amount TYPE numeric(5,0) CASCADE",
            "LC007",
        ),
        (
            "ALTER TYPE app.note ALTER ATTRIBUTE memo TYPE varchar(20) CASCADE",
            "LC007",
        ),
        ("ALTER TYPE app.note DROP ATTRIBUTE memo CASCADE", "LC007"),
        // the data map's subject column would be gone
        (
            "ALTER TYPE app.note RENAME ATTRIBUTE user_id TO uid CASCADE",
            "LC011",
        ),
    ] {
        let e = expect_sqlstate(a.app.batch_execute(sql).await, code, sql);
        assert_explained(&e, sql);
        if code == "LC007" {
            assert_names_hold(&e, &hold, sql);
        }
        assert_eq!(typed_rows(&a.su).await, before, "{sql}: the rows changed");
    }
    assert_eq!(fingerprint(&a.su).await, data_before);
    assert_eq!(guards_not_ok(&a.su).await, Vec::<String>::new());
    // What leaves held values as they are goes through.
    exec(
        &a.app,
        "ALTER TYPE app.note ADD ATTRIBUTE extra integer CASCADE;
         ALTER TYPE app.note RENAME ATTRIBUTE memo TO remark CASCADE;
         ALTER TYPE app.in_composite_level ADD VALUE 'medium';",
    )
    .await;
    let typed: String = ok(
        a.su.query_one("SELECT t::text FROM app.typed t WHERE id = 1", &[])
            .await,
        "typed row",
    )
    .get(0);
    assert_eq!(typed, format!("(1,{U1},1.6,kept,)"));
    a.db.cleanup().await.expect("cleanup");
}

/// A partition detached below the registered table (from a partition that
/// is partitioned itself) loses the cloned row guard like one detached from
/// the top: refused while it holds held rows, allowed (and its leftover
/// truncate guard removed) otherwise.
#[tokio::test]
async fn detaching_a_partition_at_any_level_is_checked() {
    let a = app("attack_detach").await;
    exec(
        &a.app,
        &format!(
            "CREATE TABLE app.logs (id bigint, user_id uuid NOT NULL, at date NOT NULL) PARTITION BY RANGE (at);
             CREATE TABLE app.logs_2026 PARTITION OF app.logs
                 FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY LIST (user_id);
             CREATE TABLE app.logs_2026_u1 PARTITION OF app.logs_2026 FOR VALUES IN ('{U1}');
             CREATE TABLE app.logs_2026_rest PARTITION OF app.logs_2026 DEFAULT;
             CREATE INDEX ON app.logs (user_id);
             INSERT INTO app.logs VALUES (1, '{U1}', '2026-03-01'), (2, '{U2}', '2026-03-01');
             SELECT lifecycle.register_table('app.logs', 'user', 'user_id');"
        ),
    )
    .await;
    let hold = hold_u1(&a.su).await;
    let logs = "SELECT pg_catalog.string_agg(t::text, ',' ORDER BY t.id) FROM app.logs t";
    let before: String = ok(a.su.query_one(logs, &[]).await, "logs").get(0);
    for sql in [
        "ALTER TABLE app.logs_2026 DETACH PARTITION app.logs_2026_u1",
        "ALTER TABLE app.logs DETACH PARTITION app.logs_2026",
    ] {
        let e = expect_sqlstate(a.app.batch_execute(sql).await, "LC003", sql);
        assert_names_hold(&e, &hold, sql);
        let after: String = ok(a.su.query_one(logs, &[]).await, "logs").get(0);
        assert_eq!(after, before, "{sql}");
    }
    expect_sqlstate(
        a.app.batch_execute("DELETE FROM app.logs_2026_u1").await,
        "LC001",
        "DELETE of the held partition's rows",
    );
    // The partition without held rows goes, without its guards.
    exec(
        &a.app,
        "ALTER TABLE app.logs_2026 DETACH PARTITION app.logs_2026_rest;
         DELETE FROM app.logs_2026_rest;",
    )
    .await;
    assert_eq!(guards_not_ok(&a.su).await, Vec::<String>::new());
    a.db.cleanup().await.expect("cleanup");
}

// ----- 5. hold ids compare the way the column compares -------------------------------

#[tokio::test]
async fn hold_ids_match_every_spelling_the_column_treats_as_equal() {
    let a = app("attack_spelling").await;
    exec(
        &a.su,
        "CREATE EXTENSION IF NOT EXISTS citext;
         CREATE COLLATION app.nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);",
    )
    .await;
    exec(
        &a.app,
        "CREATE TABLE app.handles (id bigint PRIMARY KEY, owner_id uuid NOT NULL,
                                   handle text COLLATE app.nocase NOT NULL,
                                   login public.citext NOT NULL, order_no bigint NOT NULL);
         INSERT INTO app.handles VALUES (1, 'c2aade11-be2d-4ef8-bb6d-6bb9bd380a13', 'alice', 'Bob@Example.com', 42),
                                        (2, 'c2aade11-be2d-4ef8-bb6d-6bb9bd380a13', 'carol', 'dave@example.com', 43);
         SELECT lifecycle.register_table('app.handles', 'user', 'owner_id');
         SELECT lifecycle.register_scope('app.handles', 'handle', 'handle');
         SELECT lifecycle.register_scope('app.handles', 'login', 'login');
         SELECT lifecycle.register_scope('app.handles', 'order_no', 'order_no');",
    )
    .await;
    let before = fingerprint(&a.su).await;
    let handles = "SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id)) FROM app.handles t";
    let handles_before: String = ok(a.su.query_one(handles, &[]).await, "handles").get(0);

    // (scope type, the id as given, what is stored, a row it must hold)
    let cases = [
        ("user", U1_UPPER, U1, "DELETE FROM app.posts WHERE id = 1"),
        (
            "case_ref",
            "K-1",
            "K-1",
            "DELETE FROM app.posts WHERE id = 25",
        ),
        (
            "handle",
            "ALICE",
            "ALICE",
            "DELETE FROM app.handles WHERE id = 1",
        ),
        (
            "login",
            "bob@example.COM",
            "bob@example.COM",
            "UPDATE app.handles SET order_no = 0 WHERE id = 1",
        ),
        (
            "order_no",
            " 0042",
            "42",
            "UPDATE app.handles SET handle = 'x' WHERE id = 1",
        ),
    ];
    for (scope, given, stored, statement) in cases {
        let id: uuid::Uuid = ok(
            a.su.query_one(
                "SELECT lifecycle.place_hold($1, $2, NULL, 'spelling', 'legal@example.com')",
                &[&scope, &given],
            )
            .await,
            "place_hold",
        )
        .get(0);
        let kept: String = ok(
            a.su.query_one(
                "SELECT scope_id FROM lifecycle.legal_holds WHERE id = $1",
                &[&id],
            )
            .await,
            "stored id",
        )
        .get(0);
        assert_eq!(
            kept, stored,
            "{scope} {given:?} is stored as the column's type prints it"
        );
        let e = expect_sqlstate(a.app.execute(statement, &[]).await, "LC001", statement);
        assert_names_hold(&e, &id, statement);
        let table = if statement.contains("handles") {
            "app.handles"
        } else {
            "app.posts"
        };
        let e = expect_sqlstate(
            a.app.execute(&format!("TRUNCATE {table}"), &[]).await,
            "LC002",
            "TRUNCATE",
        );
        assert_explained(&e, "TRUNCATE");
        exec(
            &a.su,
            &format!("SELECT lifecycle.release_hold('{id}', 'legal@example.com', 'next case')"),
        )
        .await;
    }
    assert_eq!(fingerprint(&a.su).await, before, "the data changed");
    let handles_after: String = ok(a.su.query_one(handles, &[]).await, "handles").get(0);
    assert_eq!(handles_after, handles_before, "held handles changed");

    // Ids no key column can hold are refused, not stored as holds that
    // protect nothing.
    for (scope, id) in [
        ("user", "not-a-uuid"),
        ("order_no", "forty-two"),
        ("user", "42"),
    ] {
        let e = expect_sqlstate(
            a.su.query(
                "SELECT lifecycle.place_hold($1, $2, NULL, 'typo', 'legal@example.com')",
                &[&scope, &id],
            )
            .await,
            "22P02",
            id,
        );
        assert_explained(&e, id);
    }
    assert_eq!(
        count(&a.su, "SELECT 1 FROM lifecycle.holds_in_force").await,
        0,
        "a refused hold was stored"
    );
    a.db.cleanup().await.expect("cleanup");
}

// ----- 6. the extension's own tables ----------------------------------------------------

async fn own_tables_fingerprint(c: &Client) -> String {
    let tables: Vec<String> = ok(
        c.query(
            "SELECT relation::text FROM lifecycle.own_tables ORDER BY 1",
            &[],
        )
        .await,
        "own tables",
    )
    .iter()
    .map(|r| r.get(0))
    .collect();
    assert!(tables.len() >= 12, "own tables: {tables:?}");
    let mut parts = Vec::new();
    for t in tables {
        let row = ok(
            c.query_one(
                &format!("SELECT pg_catalog.md5(coalesce(pg_catalog.string_agg(x::text, ',' ORDER BY x::text), '')) FROM {t} x"),
                &[],
            )
            .await,
            &t,
        );
        parts.push(format!("{t}={}", row.get::<_, String>(0)));
    }
    parts.join(" ")
}

#[tokio::test]
async fn grants_on_the_extension_tables_do_not_let_anyone_write_them() {
    let mut a = app("attack_own_tables").await;
    let hold = hold_u1(&a.su).await;
    exec(
        &a.su,
        &format!(
            "SELECT lifecycle.record_event('account.login', 'user:1', 'user', '{U1}', 'acme');
             SELECT lifecycle.request_erasure('user', '{U2}', 'acme', 'user:{U2}', 'please');"
        ),
    )
    .await;
    let intruder = a.db.create_role("intruder").await.expect("role");
    exec(
        &a.su,
        &format!(
            "GRANT ALL ON ALL TABLES IN SCHEMA lifecycle TO {r};
             GRANT USAGE, CREATE ON SCHEMA app TO {r};",
            r = intruder.ident()
        ),
    )
    .await;
    // Grants on the sequences the extension numbers its rows with are
    // refused, even a superuser's: setval() would make the next genuine
    // event fail on a duplicate key. Reading them stays possible.
    for sql in [
        format!(
            "GRANT ALL ON ALL SEQUENCES IN SCHEMA lifecycle TO {}",
            intruder.ident()
        ),
        "GRANT UPDATE ON SEQUENCE lifecycle.audit_log_id_seq TO PUBLIC".to_string(),
        format!(
            "GRANT USAGE ON SEQUENCE lifecycle.retention_id_seq TO {}",
            intruder.ident()
        ),
    ] {
        let e = expect_sqlstate(a.su.batch_execute(&sql).await, "LC008", &sql);
        assert_explained(&e, &sql);
    }
    exec(
        &a.su,
        &format!(
            "GRANT SELECT ON ALL SEQUENCES IN SCHEMA lifecycle TO {}",
            intruder.ident()
        ),
    )
    .await;
    let c = a.db.connect(&intruder).await.expect("intruder session");
    let before = own_tables_fingerprint(&a.su).await;
    let data_before = fingerprint(&a.su).await;

    let attempts = [
        // A forged event, with a plausible chain link.
        "INSERT INTO lifecycle.audit_log (id, occurred_at, event_type, chain, personal_digest, prev_hash, hash)
         SELECT pg_catalog.nextval('lifecycle.audit_log_id_seq'), pg_catalog.now(), 'legal_hold.released',
                c.chain, '\\x00', c.last_hash, '\\x01' FROM lifecycle.audit_chains c LIMIT 1",
        "UPDATE lifecycle.audit_chains SET last_hash = '\\x00'",
        "DELETE FROM lifecycle.audit_log",
        "TRUNCATE lifecycle.audit_log",
        // Unregister a table, or move its scope column, behind the functions' back.
        "DELETE FROM lifecycle.tables WHERE relation = 'app.posts'::regclass",
        "UPDATE lifecycle.tables SET subject_column = 'id' WHERE relation = 'app.posts'::regclass",
        "UPDATE lifecycle.subject_tables SET id_column = 'email'",
        "DELETE FROM lifecycle.scopes",
        "INSERT INTO lifecycle.column_rules (relation, column_name, rule, set_by) VALUES ('app.posts', 'body', 'keep', 'me')",
        "TRUNCATE lifecycle.memberships, lifecycle.tenant_tables",
        // Release a hold, or forge one.
        "UPDATE lifecycle.legal_holds SET active = false, released_at = pg_catalog.now(), released_by = 'me'",
        "INSERT INTO lifecycle.legal_holds (scope_type, scope_id, reason, created_by) VALUES ('user', 'x', 'forged', 'me')",
        "INSERT INTO lifecycle.holds_in_force (scope_type, scope_id, reason, created_by) VALUES ('user', 'x', 'forged', 'me')",
        "DELETE FROM lifecycle.legal_holds",
        // Approve a job as somebody else, or make one up.
        "UPDATE lifecycle.jobs SET status = 'approved', approved_by = 'dpo@example.com'",
        "INSERT INTO lifecycle.jobs (job_type, target_type, target_id, requested_by, due_at) VALUES ('erase', 'user', 'x', 'me', pg_catalog.now())",
        "UPDATE lifecycle.external_steps SET status = 'confirmed'",
        "DELETE FROM lifecycle.retention",
        // Put an excluded column back into exports, or keep a bundle past
        // its entitlement; skew the job counts.
        "DELETE FROM lifecycle.column_exports",
        "INSERT INTO lifecycle.column_exports (relation, column_name, label, set_by) VALUES ('app.posts', 'body', 'Harmless', 'me')",
        "UPDATE lifecycle.export_bundles SET expires_at = pg_catalog.now() OPERATOR(pg_catalog.+) '1 year'::pg_catalog.interval",
        "DELETE FROM lifecycle.export_bundles",
        "UPDATE lifecycle.job_totals SET jobs = 0",
        "TRUNCATE lifecycle.job_tenant_counts",
    ];
    for sql in attempts {
        // TRUNCATE of the audit log and of the holds meets their own
        // statement guards (LC005, LC006) or this one, by trigger name.
        let e = expect_one_of(
            c.batch_execute(sql).await,
            &["LC008", "LC005", "LC006"],
            sql,
        );
        if !sql.starts_with("TRUNCATE lifecycle.audit_log") {
            assert_eq!(e.code().code(), "LC008", "{sql}");
        }
        assert_explained(&e, sql);
        assert_eq!(
            own_tables_fingerprint(&a.su).await,
            before,
            "{sql}: an extension table changed"
        );
    }
    // Without a grant, the sequences stay out of reach.
    expect_sqlstate(
        c.batch_execute("SELECT pg_catalog.setval('lifecycle.audit_log_id_seq', 1)")
            .await,
        "42501",
        "setval of the audit log's sequence",
    );
    // Hooks into the extension's tables: a trigger there would run whenever
    // the extension writes; a foreign key could block it.
    exec(
        &c,
        "CREATE FUNCTION app.spy() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$",
    )
    .await;
    for sql in [
        "CREATE TRIGGER spy AFTER INSERT ON lifecycle.audit_log FOR EACH ROW EXECUTE FUNCTION app.spy()",
        "CREATE TRIGGER spy BEFORE UPDATE ON lifecycle.jobs FOR EACH STATEMENT EXECUTE FUNCTION app.spy()",
        "CREATE TABLE app.pins (job uuid REFERENCES lifecycle.jobs (id))",
        "CREATE TABLE app.pins2 (hold uuid); ALTER TABLE app.pins2 ADD FOREIGN KEY (hold) REFERENCES lifecycle.legal_holds (id)",
    ] {
        let e = expect_sqlstate(c.batch_execute(sql).await, "LC008", sql);
        assert_explained(&e, sql);
    }
    assert_eq!(own_tables_fingerprint(&a.su).await, before);
    assert_eq!(fingerprint(&a.su).await, data_before);

    // Nothing of it made the next genuine event fail or the chain break,
    // and the hold still holds.
    exec(
        &a.su,
        "SELECT lifecycle.record_event('account.logout', 'user:1', 'user', 'x', 'acme')",
    )
    .await;
    assert!(verify_audit_log(&a.su).await.0, "the audit chain broke");
    expect_sqlstate(
        a.app
            .execute("DELETE FROM app.posts WHERE id = 1", &[])
            .await,
        "LC001",
        "the hold after the attempts",
    );
    let still: bool = ok(
        a.su.query_one(
            "SELECT active FROM lifecycle.legal_holds WHERE id = $1",
            &[&hold],
        )
        .await,
        "hold",
    )
    .get(0);
    assert!(still);
    assert_eq!(guards_not_ok(&a.su).await, Vec::<String>::new());
    drop(c);
    a.db.cleanup().await.expect("cleanup");
}
