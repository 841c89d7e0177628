//! A database with the extension, dumped with `pg_dump` and restored into a
//! new database (custom format with `pg_restore`, plain format with `psql`):
//! the restore reports no error, and the copy enforces every hold from its
//! first statement, with its data map, holds, jobs and audit chain intact.

use std::process::Command;

use lifecycle_tests::cluster::pg_bin;
use lifecycle_tests::{
    count, exec, expect_sqlstate, guarded_app, guards_not_ok, ok, verify_audit_log, GuardedApp,
    Role, TestDb,
};
use tokio_postgres::Client;

const U1: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
const U2: &str = "b1ffcd00-ad1c-4ef8-bb6d-6bb9bd380a12";
const U4: &str = "d3bbef22-cf3e-4ef8-bb6d-6bb9bd380a14";

/// Everything a restore must carry over, as text (read by a superuser).
async fn state(c: &Client) -> Vec<String> {
    let queries = [
        "SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id)) FROM app.posts t",
        "SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id, t.at)) FROM app.events t",
        "SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id)) FROM app.users t",
        "SELECT pg_catalog.string_agg(pg_catalog.concat_ws(' ', relation, kind, subject_column, tenant_column, \
                                                          on_erase, column_rules, extra_scopes), '; ' ORDER BY relation::text) \
           FROM lifecycle.data_map",
        "SELECT pg_catalog.string_agg(pg_catalog.concat_ws(' ', id, scope_type, scope_id, tenant_id, active), '; ' \
                                      ORDER BY id) FROM lifecycle.legal_holds",
        "SELECT pg_catalog.string_agg(pg_catalog.concat_ws(' ', id, job_type, target_id, status, result_digest), '; ' \
                                      ORDER BY id) FROM lifecycle.jobs",
        "SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id)) FROM lifecycle.audit_log t",
        "SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.chain)) FROM lifecycle.audit_chains t",
        "SELECT pg_catalog.string_agg(pg_catalog.concat_ws(' ', id, job_id, relation, target_id, rows, retain_until), '; ' \
                                      ORDER BY id) FROM lifecycle.retention",
        "SELECT pg_catalog.string_agg(pg_catalog.concat_ws(' ', relation, column_name, label, excluded), '; ' \
                                      ORDER BY relation::text, column_name) FROM lifecycle.column_exports",
    ];
    let mut out = Vec::new();
    for q in queries {
        let v: Option<String> = ok(c.query_one(q, &[]).await, q).get(0);
        out.push(v.unwrap_or_default());
    }
    out
}

/// The source: the guarded application, a hold on U1, U2 erased (a
/// completed job with its receipt), audit events.
async fn source() -> (TestDb, Role, Client) {
    let GuardedApp { db, owner, su, app } = guarded_app("restore_src").await;
    // Invoices kept after an erasure (rows in lifecycle.retention), uploads
    // whose objects the control plane deletes (lifecycle.external_steps),
    // both with generated ids; an export label and an excluded column.
    exec(
        &app,
        &format!(
            "INSERT INTO app.users VALUES ('{U4}', 'acme', 'ute@acme.example', 'Ute Vier');
             CREATE TABLE app.invoices (id bigint PRIMARY KEY, user_id uuid NOT NULL REFERENCES app.users,
                                        workspace_id text NOT NULL, amount numeric NOT NULL);
             CREATE INDEX ON app.invoices (user_id);
             CREATE INDEX ON app.invoices (workspace_id);
             INSERT INTO app.invoices VALUES (1, '{U2}', 'acme', 10), (2, '{U2}', 'acme', 20),
                                             (3, '{U4}', 'acme', 30), (4, '{U4}', 'acme', 40);
             SELECT lifecycle.register_table('app.invoices', 'user', 'user_id', tenant_column => 'workspace_id',
                                             on_erase => 'retain', retain_for => '7 years',
                                             legal_basis => 'Tax law', label => 'Invoices');
             CREATE TABLE app.uploads (id bigint PRIMARY KEY, user_id uuid NOT NULL REFERENCES app.users,
                                       object_key text NOT NULL);
             CREATE INDEX ON app.uploads (user_id);
             INSERT INTO app.uploads VALUES (1, '{U4}', 'u4/a.png'), (2, '{U4}', 'u4/b.png');
             SELECT lifecycle.register_table('app.uploads', 'user', 'user_id');
             SELECT lifecycle.set_column_rule('app.uploads', 'object_key', 'storage_object');
             SELECT lifecycle.set_column_label('app.invoices', 'amount', 'Amount (EUR)');
             SELECT lifecycle.exclude_from_export('app.uploads', 'object_key', 'internal storage key');"
        ),
    )
    .await;
    exec(
        &su,
        &format!(
            "SELECT lifecycle.place_hold('user', '{U1}', 'acme', 'Case 7: preserve U1', 'legal@example.com');
             SELECT lifecycle.place_hold('case_ref', 'K-1', NULL, 'Case K-1', 'legal@example.com');
             SELECT lifecycle.record_event('account.login', 'user:{U1}', 'user', '{U1}', 'acme', '{{}}', '203.0.113.7', 'agent');
             SELECT lifecycle.request_erasure('user', '{U2}', 'acme', 'dpo@example.com', 'GDPR Art. 17',
                                              cooling_off => '0 seconds', requires_approval => false);
             SELECT lifecycle.run_due_jobs();
             SELECT lifecycle.request_export('user', '{U1}', 'acme', 'user:{U1}');"
        ),
    )
    .await;
    let status: String = ok(
        su.query_one(
            "SELECT status FROM lifecycle.jobs WHERE target_id = $1",
            &[&U2],
        )
        .await,
        "erasure",
    )
    .get(0);
    assert_eq!(status, "completed");
    (db, owner, su)
}

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(pg_bin().join(program))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// What a restored copy must do: refuse to change held rows from the
/// start, carry everything over, and keep working.
async fn check_restored(src_state: &[String], target: &TestDb, owner: &Role, what: &str) {
    let su = target.connect(&Role::Superuser).await.expect("superuser");
    let app = target.connect(owner).await.expect("owner");
    // The very first statements against the copy.
    for (sql, code) in [
        (
            format!("DELETE FROM app.posts WHERE author_id = '{U1}'"),
            "LC001",
        ),
        (
            format!("UPDATE app.events SET at = at WHERE user_id = '{U1}'"),
            "LC001",
        ),
        (format!("DELETE FROM app.users WHERE id = '{U1}'"), "LC001"),
        ("DELETE FROM app.posts WHERE id = 25".to_string(), "LC001"),
        ("TRUNCATE app.posts".to_string(), "LC002"),
        ("TRUNCATE app.events_2026".to_string(), "LC002"),
        ("DROP TABLE app.posts".to_string(), "LC003"),
        (
            "ALTER TABLE app.posts DROP COLUMN body".to_string(),
            "LC007",
        ),
        (
            "ALTER TABLE app.posts DISABLE TRIGGER lifecycle_guard".to_string(),
            "LC004",
        ),
    ] {
        let e = expect_sqlstate(
            app.batch_execute(&sql).await,
            code,
            &format!("{what}: {sql}"),
        );
        assert!(
            e.detail().is_some_and(|d| !d.is_empty()),
            "{what}: {sql}: no DETAIL"
        );
    }
    assert_eq!(
        state(&su).await,
        src_state,
        "{what}: the restored copy differs"
    );
    assert_eq!(
        guards_not_ok(&su).await,
        Vec::<String>::new(),
        "{what}: guards not ok"
    );
    let (ok_chain, checked, _) = verify_audit_log(&su).await;
    assert!(
        ok_chain && checked > 0,
        "{what}: the audit chain does not verify"
    );
    // The guards answer for the new tables' OIDs: rows not held change.
    // (Soft delete: the DELETE reports no row, the row is marked.)
    ok(
        app.execute("DELETE FROM app.posts WHERE id = 21", &[])
            .await,
        "DELETE of a post not held",
    );
    let soft = count(
        &su,
        "SELECT 1 FROM app.posts WHERE id = 21 AND deleted_at IS NOT NULL",
    )
    .await;
    assert_eq!(soft, 1, "{what}: the soft delete did not happen");
    // Ids the extension generates go on from the restored rows: an erasure
    // with retained rows and stored objects, the first after the restore.
    let (retained, steps) = (
        count(&su, "SELECT 1 FROM lifecycle.retention").await,
        count(&su, "SELECT 1 FROM lifecycle.external_steps").await,
    );
    assert!(retained > 0, "{what}: no retained rows in the source");
    exec(
        &su,
        &format!(
            "SELECT lifecycle.request_erasure('user', '{U4}', 'acme', 'dpo@example.com', 'GDPR Art. 17',
                                              cooling_off => '0 seconds', requires_approval => false);
             SELECT lifecycle.run_due_jobs();"
        ),
    )
    .await;
    let (status, error): (String, Option<String>) = {
        let row = ok(
            su.query_one(
                "SELECT status, error FROM lifecycle.jobs WHERE target_id = $1",
                &[&U4],
            )
            .await,
            "U4's erasure",
        );
        (row.get(0), row.get(1))
    };
    assert_ne!(status, "failed", "{what}: the erasure failed: {error:?}");
    assert_eq!(
        count(&su, "SELECT 1 FROM lifecycle.retention").await,
        retained + 1,
        "{what}: U4's invoices are not retained"
    );
    assert_eq!(
        count(&su, "SELECT 1 FROM lifecycle.external_steps").await,
        steps + 2,
        "{what}: U4's stored objects have no deletion steps"
    );
    assert_eq!(
        count(
            &su,
            "SELECT 1 FROM lifecycle.column_exports WHERE excluded IS NOT NULL AND column_name = 'object_key'"
        )
        .await,
        1,
        "{what}: the export exclusion was lost"
    );
    // And the extension keeps appending to the restored chain.
    exec(
        &su,
        "SELECT lifecycle.record_event('restore.checked', 'test', NULL, NULL, NULL)",
    )
    .await;
    assert!(verify_audit_log(&su).await.0, "{what}: chain after restore");
}

#[tokio::test]
async fn custom_format_dump_restored_with_pg_restore_enforces_every_hold() {
    restore_custom_format("restore_custom", &[]).await;
}

/// `pg_restore --jobs`: data, indexes, constraints and triggers in parallel
/// sessions, in the order of their dependencies rather than the dump's.
#[tokio::test]
async fn custom_format_dump_restored_in_parallel_enforces_every_hold() {
    restore_custom_format("restore_parallel", &["--jobs", "3"]).await;
}

async fn restore_custom_format(name: &str, options: &[&str]) {
    let (src, owner, su) = source().await;
    let src_state = state(&su).await;
    let file = std::env::temp_dir().join(format!("{}.dump", src.name));
    let url = src.url_for(&Role::Superuser);
    let (dumped, out) = run(
        "pg_dump",
        &["-Fc", "-d", &url, "-f", &file.display().to_string()],
    );
    assert!(dumped, "pg_dump -Fc failed: {out}");

    let target = TestDb::create_empty(name).await.expect("target");
    let url = target.url_for(&Role::Superuser);
    let path = file.display().to_string();
    let mut args = vec!["--exit-on-error", "-d", &url];
    args.extend_from_slice(options);
    args.push(&path);
    let (restored, out) = run("pg_restore", &args);
    let _ = std::fs::remove_file(&file);
    assert!(restored, "pg_restore failed: {out}");
    assert!(!out.contains("ERROR"), "pg_restore reported: {out}");
    check_restored(&src_state, &target, &owner, name).await;
    target.cleanup().await.expect("cleanup");
    src.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn plain_dump_restored_with_psql_enforces_every_hold() {
    let (src, owner, su) = source().await;
    let src_state = state(&su).await;
    let file = std::env::temp_dir().join(format!("{}.sql", src.name));
    let url = src.url_for(&Role::Superuser);
    let (dumped, out) = run(
        "pg_dump",
        &["-Fp", "-d", &url, "-f", &file.display().to_string()],
    );
    assert!(dumped, "pg_dump -Fp failed: {out}");
    let sql = std::fs::read_to_string(&file).expect("dump");
    // The guard's condition names the table, not the old database's OID.
    assert!(
        sql.contains("lifecycle.row_may_be_held('app.posts'::regclass"),
        "the dumped row guard does not name its table"
    );

    let target = TestDb::create_empty("restore_plain").await.expect("target");
    let (restored, out) = run(
        "psql",
        &[
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &target.url_for(&Role::Superuser),
            "-f",
            &file.display().to_string(),
        ],
    );
    let _ = std::fs::remove_file(&file);
    assert!(restored, "psql restore failed: {out}");
    assert!(!out.contains("ERROR"), "psql restore reported: {out}");
    check_restored(&src_state, &target, &owner, "plain format").await;
    target.cleanup().await.expect("cleanup");
    src.cleanup().await.expect("cleanup");
}
