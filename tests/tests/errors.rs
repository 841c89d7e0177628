//! Bad input gets a clear error, with the documented SQLSTATE, and changes
//! nothing.

use lifecycle_tests::{
    count, describe, exec, expect_sqlstate, grant_registration_sql, ok, place_hold, Role, TestDb,
};
use tokio_postgres::error::DbError;
use tokio_postgres::Client;

const SCHEMA: &str = "
    CREATE TABLE users (
        id        bigint PRIMARY KEY,
        email     text NOT NULL,
        active    boolean NOT NULL DEFAULT true,
        prefs     jsonb,
        tenant_id bigint
    );
    CREATE TABLE documents (
        id        bigint PRIMARY KEY,
        user_id   bigint NOT NULL,
        tenant_id bigint,
        flag      boolean,
        meta      jsonb,
        body      text,
        title     text NOT NULL DEFAULT ''
    );
    CREATE TABLE documents2 (LIKE documents INCLUDING ALL);
    CREATE TABLE members (user_id bigint, tenant_id bigint, role text, level int);
    INSERT INTO users SELECT g, 'u' || g || '@example.com', true, '{}', 1 FROM generate_series(1, 3) AS g;
    INSERT INTO documents SELECT g, 1 + g % 3, 1, false, '{}', 'body', 't' FROM generate_series(1, 6) AS g;
    SELECT lifecycle.register_table('documents', 'user', 'user_id', 'tenant_id');
";

async fn setup(prefix: &str) -> (TestDb, Client) {
    let db = TestDb::create(prefix).await.expect("test database");
    let c = db.connect(&Role::Superuser).await.expect("session");
    exec(&c, SCHEMA).await;
    (db, c)
}

/// Everything a failed call must leave as it was: the data map, the holds,
/// the audit log and the triggers on the application tables.
async fn state(c: &Client) -> String {
    c.query_one(
        "SELECT concat_ws(' | ',
            (SELECT count(*) FROM lifecycle.data_map),
            (SELECT md5(coalesce(string_agg(d::text, ',' ORDER BY relation::text), ''))
               FROM lifecycle.data_map d),
            (SELECT count(*) FROM lifecycle.legal_holds),
            (SELECT md5(coalesce(string_agg(h::text, ',' ORDER BY id), ''))
               FROM lifecycle.legal_holds h),
            (SELECT count(*) FROM lifecycle.audit_log),
            (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
              WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal))",
        &[],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or_else(|e| panic!("state: {}", describe(&e)))
}

/// Run `sql`, expect `code`, check that the error explains itself and that
/// nothing changed.
async fn refused(c: &Client, sql: &str, code: &str) -> DbError {
    let before = state(c).await;
    let e = expect_sqlstate(c.batch_execute(sql).await, code, sql);
    assert!(!e.message().is_empty(), "{sql}: empty message");
    assert_eq!(
        state(c).await,
        before,
        "{sql}: the failed call changed something"
    );
    e
}

#[tokio::test]
async fn unknown_columns_are_42703() {
    let (db, c) = setup("errors_column").await;
    for sql in [
        "SELECT lifecycle.register_table('documents2', 'user', 'nope')",
        "SELECT lifecycle.register_table('documents2', 'user', 'user_id', tenant_column => 'nope')",
        "SELECT lifecycle.register_table('documents2', 'user', 'user_id', soft_delete_column => 'nope')",
        "SELECT lifecycle.register_table('documents2', 'user', 'User_Id')",
        "SELECT lifecycle.register_subject('users', 'nope')",
        "SELECT lifecycle.register_subject('users', 'id', tenant_column => 'nope')",
        "SELECT lifecycle.register_tenant('users', 'nope')",
        "SELECT lifecycle.set_column_rule('documents', 'nope', 'clear')",
        "SELECT lifecycle.register_scope('documents', 'project', 'nope')",
        "SELECT lifecycle.register_membership('members', 'nope', 'tenant_id', 'role', '{admin}')",
    ] {
        let e = refused(&c, sql, "42703").await;
        assert!(
            e.message().contains("nope") || e.message().contains("User_Id"),
            "{sql}: message {:?} does not name the column",
            e.message()
        );
        assert!(e.hint().is_some(), "{sql}: no HINT");
    }
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn columns_of_the_wrong_type_are_42804() {
    let (db, c) = setup("errors_type").await;
    for sql in [
        "SELECT lifecycle.register_table('documents2', 'user', 'flag')",
        "SELECT lifecycle.register_table('documents2', 'user', 'meta')",
        "SELECT lifecycle.register_table('documents2', 'user', 'user_id', tenant_column => 'meta')",
        "SELECT lifecycle.register_table('documents2', 'user', 'user_id', soft_delete_column => 'body')",
        "SELECT lifecycle.register_subject('users', 'active')",
        "SELECT lifecycle.register_subject('users', 'prefs')",
        "SELECT lifecycle.register_tenant('users', 'active')",
        "SELECT lifecycle.set_column_rule('documents', 'flag', 'redact')",
        "SELECT lifecycle.set_column_rule('documents', 'title', 'clear')",
        "SELECT lifecycle.register_membership('members', 'user_id', 'tenant_id', 'level', '{admin}')",
    ] {
        let e = refused(&c, sql, "42804").await;
        assert!(e.detail().is_some(), "{sql}: no DETAIL");
    }
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn registering_twice_is_idempotent_or_a_conflict() {
    let (db, c) = setup("errors_twice").await;
    let before = state(&c).await;
    // Identical: no error, nothing new (one entry, no new audit event).
    ok(
        c.batch_execute(
            "SELECT lifecycle.register_table('documents', 'user', 'user_id', 'tenant_id')",
        )
        .await,
        "identical registration",
    );
    assert_eq!(state(&c).await, before);
    assert_eq!(
        count(
            &c,
            "SELECT 1 FROM lifecycle.data_map WHERE relation = 'documents'::regclass"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &c,
            "SELECT 1 FROM pg_trigger WHERE tgrelid = 'documents'::regclass AND tgname = 'lifecycle_guard'"
        )
        .await,
        1
    );

    // Different settings: a conflict that names both.
    for sql in [
        "SELECT lifecycle.register_table('documents', 'user', 'user_id')",
        "SELECT lifecycle.register_table('documents', 'user', 'user_id', 'tenant_id', on_erase => 'anonymize')",
        "SELECT lifecycle.register_table('documents', 'author', 'user_id', 'tenant_id')",
        "SELECT lifecycle.register_table('documents', 'user', 'user_id', 'tenant_id', label => 'Docs')",
        "SELECT lifecycle.register_subject('documents', 'user_id')",
        "SELECT lifecycle.register_tenant('documents', 'tenant_id')",
    ] {
        let e = refused(&c, sql, "LC010").await;
        assert!(e.hint().is_some(), "{sql}: no HINT");
    }
    let e = refused(
        &c,
        "SELECT lifecycle.register_table('documents', 'user', 'user_id')",
        "LC010",
    )
    .await;
    let detail = e.detail().unwrap_or_default();
    assert!(
        detail.contains("tenant_id"),
        "DETAIL {detail:?} should show the registered settings"
    );

    // One subject table per subject type, one tenant table.
    exec(
        &c,
        "SELECT lifecycle.register_subject('users', 'id', 'person');
         CREATE TABLE people (id bigint PRIMARY KEY);
         CREATE TABLE orgs (id bigint PRIMARY KEY);
         CREATE TABLE orgs2 (id bigint PRIMARY KEY);
         SELECT lifecycle.register_tenant('orgs', 'id');",
    )
    .await;
    refused(
        &c,
        "SELECT lifecycle.register_subject('people', 'id', 'person')",
        "LC010",
    )
    .await;
    refused(
        &c,
        "SELECT lifecycle.register_tenant('orgs2', 'id')",
        "LC010",
    )
    .await;
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn unknown_on_erase_and_column_rule_are_22023() {
    let (db, c) = setup("errors_values").await;
    for sql in [
        "SELECT lifecycle.register_table('documents2', 'user', 'user_id', on_erase => 'shred')",
        "SELECT lifecycle.register_table('documents2', 'user', 'user_id', on_erase => '')",
        "SELECT lifecycle.register_table('documents2', 'user', 'user_id', on_erase => 'retain')",
        "SELECT lifecycle.register_table('documents2', 'user', 'user_id', on_erase => 'retain', \
                retain_for => '7 years')",
        "SELECT lifecycle.register_table('documents2', 'user', 'user_id', retain_for => '7 years')",
        "SELECT lifecycle.register_table('documents2', 'User Type', 'user_id')",
        "SELECT lifecycle.register_table('documents2', 'tenant', 'user_id')",
        "SELECT lifecycle.register_table('documents2', '', 'user_id')",
        "SELECT lifecycle.set_column_rule('documents', 'body', 'scramble')",
        "SELECT lifecycle.set_column_rule('documents', 'body', '')",
        "SELECT lifecycle.set_column_rule('documents', 'user_id', 'clear')",
        "SELECT lifecycle.register_membership('members', 'user_id', 'tenant_id', 'role', '{}')",
        "SELECT lifecycle.register_table('users_pkey', 'user', 'id')",
    ] {
        refused(&c, sql, "22023").await;
    }
    let e = refused(
        &c,
        "SELECT lifecycle.set_column_rule('documents', 'body', 'scramble')",
        "22023",
    )
    .await;
    assert!(
        e.hint().unwrap_or_default().contains("redact"),
        "HINT {:?} should list the rules",
        e.hint()
    );
    let e = refused(
        &c,
        "SELECT lifecycle.register_table('documents2', 'user', 'user_id', on_erase => 'shred')",
        "22023",
    )
    .await;
    assert!(e.message().contains("shred"), "{:?}", e.message());
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn bad_holds_are_refused() {
    let (db, c) = setup("errors_holds").await;
    let base = "SELECT lifecycle.place_hold";
    for (args, code) in [
        ("('user', '1', NULL, '', 'legal')", "22023"),
        ("('user', '1', NULL, '   ', 'legal')", "22023"),
        ("('user', '1', NULL, 'reason', '')", "22023"),
        ("('user', '', NULL, 'reason', 'legal')", "22023"),
        ("('user', '1', '', 'reason', 'legal')", "22023"),
        ("('tenant', '1', '2', 'reason', 'legal')", "22023"),
        ("('planet', '1', NULL, 'reason', 'legal')", "LC022"),
        ("('User', '1', NULL, 'reason', 'legal')", "LC022"),
        (
            "('user', '1', NULL, 'reason', 'legal', now() - interval '1 minute')",
            "22023",
        ),
        ("('user', '1', NULL, 'reason', 'legal', now())", "22023"),
        ("(NULL, '1', NULL, 'reason', 'legal')", "22004"),
        ("('user', NULL, NULL, 'reason', 'legal')", "22004"),
        ("('user', '1', NULL, NULL, 'legal')", "22004"),
        ("('user', '1', NULL, 'reason', NULL)", "22004"),
    ] {
        refused(&c, &format!("{base}{args}"), code).await;
    }
    let e = refused(
        &c,
        "SELECT lifecycle.place_hold('planet', '1', NULL, 'reason', 'legal')",
        "LC022",
    )
    .await;
    let detail = e.detail().unwrap_or_default();
    assert!(
        detail.contains("user") && detail.contains("tenant"),
        "DETAIL {detail:?} should list the known scope types"
    );
    assert!(e.hint().is_some());
    let e = refused(
        &c,
        "SELECT lifecycle.place_hold('user', '1', NULL, 'reason', 'legal', now() - interval '1 day')",
        "22023",
    )
    .await;
    assert!(e.message().contains("expires_at"), "{:?}", e.message());
    assert_eq!(count(&c, "SELECT 1 FROM lifecycle.legal_holds").await, 0);

    // Nothing was placed: the rows are free.
    ok(
        c.execute("DELETE FROM documents WHERE user_id = 1", &[])
            .await,
        "DELETE after refused holds",
    );
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn bad_releases_are_refused() {
    let (db, c) = setup("errors_release").await;
    let hold = ok(
        place_hold(&c, "user", "1", None, "To be released").await,
        "place_hold",
    );
    let e = refused(
        &c,
        "SELECT lifecycle.release_hold('00000000-0000-4000-8000-000000000000', 'legal')",
        "LC020",
    )
    .await;
    assert!(e.message().contains("00000000-0000-4000-8000-000000000000"));
    assert!(e.hint().is_some());
    refused(&c, "SELECT lifecycle.release_hold(NULL, 'legal')", "22004").await;
    refused(
        &c,
        &format!("SELECT lifecycle.release_hold('{hold}', NULL)"),
        "22004",
    )
    .await;
    refused(
        &c,
        &format!("SELECT lifecycle.release_hold('{hold}', '')"),
        "22023",
    )
    .await;
    assert_eq!(count(&c, "SELECT 1 FROM lifecycle.holds_in_force").await, 1);

    ok(
        c.batch_execute(&format!(
            "SELECT lifecycle.release_hold('{hold}', 'counsel', 'Case closed')"
        ))
        .await,
        "release_hold",
    );
    assert_eq!(count(&c, "SELECT 1 FROM lifecycle.holds_in_force").await, 0);
    let e = refused(
        &c,
        &format!("SELECT lifecycle.release_hold('{hold}', 'counsel')"),
        "LC021",
    )
    .await;
    assert!(
        e.detail().unwrap_or_default().contains("counsel"),
        "DETAIL {:?} should say who released it",
        e.detail()
    );
    let (released_by, reason): (String, Option<String>) = c
        .query_one(
            "SELECT released_by, release_reason FROM lifecycle.legal_holds WHERE id = $1",
            &[&hold],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(released_by, "counsel");
    assert_eq!(reason.as_deref(), Some("Case closed"));
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn null_required_arguments_are_22004() {
    let (db, c) = setup("errors_null").await;
    for sql in [
        "SELECT lifecycle.register_table(NULL, 'user', 'user_id')",
        "SELECT lifecycle.register_table('documents2', NULL, 'user_id')",
        "SELECT lifecycle.register_table('documents2', 'user', NULL)",
        "SELECT lifecycle.register_table('documents2', 'user', 'user_id', on_erase => NULL)",
        "SELECT lifecycle.register_subject(NULL, 'id')",
        "SELECT lifecycle.register_subject('users', NULL)",
        "SELECT lifecycle.register_subject('users', 'id', NULL)",
        "SELECT lifecycle.register_tenant(NULL, 'id')",
        "SELECT lifecycle.register_tenant('users', NULL)",
        "SELECT lifecycle.set_column_rule(NULL, 'body', 'clear')",
        "SELECT lifecycle.set_column_rule('documents', NULL, 'clear')",
        "SELECT lifecycle.set_column_rule('documents', 'body', NULL)",
        "SELECT lifecycle.register_membership('members', 'user_id', 'tenant_id', 'role', NULL)",
        "SELECT lifecycle.register_membership('members', NULL, 'tenant_id', 'role', '{admin}')",
        "SELECT lifecycle.register_scope('documents', NULL, 'body')",
        "SELECT lifecycle.register_scope('documents', 'project', NULL)",
        "SELECT lifecycle.unregister_table(NULL)",
        "SELECT lifecycle.record_event(NULL, 'actor', 'user', '1', '1')",
    ] {
        let e = refused(&c, sql, "22004").await;
        assert!(
            e.message().contains("must not be NULL"),
            "{sql}: message {:?}",
            e.message()
        );
    }
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn unregistered_tables_are_lc012() {
    let (db, c) = setup("errors_unregistered").await;
    for sql in [
        "SELECT lifecycle.set_column_rule('documents2', 'body', 'clear')",
        "SELECT lifecycle.register_scope('documents2', 'project', 'id')",
        "SELECT lifecycle.unregister_table('documents2')",
    ] {
        let e = refused(&c, sql, "LC012").await;
        assert!(e.message().contains("documents2"), "{:?}", e.message());
        assert!(e.hint().is_some());
    }
    // A registered table can be unregistered (no hold) and is then unknown.
    exec(&c, "SELECT lifecycle.unregister_table('documents')").await;
    assert_eq!(count(&c, "SELECT 1 FROM lifecycle.data_map").await, 0);
    assert_eq!(
        count(
            &c,
            "SELECT 1 FROM pg_trigger WHERE tgrelid = 'documents'::regclass AND tgname LIKE 'lifecycle%'"
        )
        .await,
        0
    );
    refused(
        &c,
        "SELECT lifecycle.unregister_table('documents')",
        "LC012",
    )
    .await;
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn privileges_are_checked() {
    let mut db = TestDb::create("errors_privileges")
        .await
        .expect("test database");
    let su = db.connect(&Role::Superuser).await.expect("session");
    exec(&su, SCHEMA).await;
    let other = db.create_role("other").await.expect("role");
    let oc = db.connect(&other).await.expect("session of another role");
    let before = state(&su).await;

    // Not executable by PUBLIC.
    for sql in [
        "SELECT lifecycle.place_hold('user', '1', NULL, 'reason', 'legal')",
        "SELECT lifecycle.register_table('documents2', 'user', 'user_id')",
        "SELECT lifecycle.record_event('x.y', 'actor', 'user', '1', '1')",
        "SELECT * FROM lifecycle.verify_audit_log()",
    ] {
        expect_sqlstate(oc.batch_execute(sql).await, "42501", sql);
    }
    // Allowed to call, but not the owner of the table.
    exec(&su, &grant_registration_sql(&other)).await;
    for sql in [
        "SELECT lifecycle.register_table('documents2', 'user', 'user_id')",
        "SELECT lifecycle.register_subject('users', 'id')",
        "SELECT lifecycle.unregister_table('documents')",
        "SELECT lifecycle.set_column_rule('documents', 'body', 'clear')",
    ] {
        let e = expect_sqlstate(oc.batch_execute(sql).await, "42501", sql);
        assert!(!e.message().is_empty());
    }
    // Reading the data map is allowed.
    assert_eq!(count(&oc, "SELECT 1 FROM lifecycle.data_map").await, 1);
    assert_eq!(state(&su).await, before);
    drop(oc);
    db.cleanup().await.expect("cleanup");
}
