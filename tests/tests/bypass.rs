//! Attempts to get around a legal hold, by a table owner who is not a
//! superuser and by a superuser.

use lifecycle_tests::{
    count, describe, exec, expect_one_of, expect_sqlstate, grant_registration_sql, guards_not_ok,
    ok, place_hold, quote_ident, verify_audit_log, Role, TestDb,
};
use tokio_postgres::error::DbError;
use tokio_postgres::Client;

const REASON: &str = "Case 2024-CV-0042: preserve all records of user 1";

struct Fixture {
    db: TestDb,
    owner: Role,
    /// Superuser session.
    su: Client,
    /// Session of the (non-superuser) table owner.
    app: Client,
    hold: uuid::Uuid,
}

/// Tables owned by a login role that is not a superuser, registered by it;
/// a hold on user 1 placed by the superuser.
async fn fixture(prefix: &str) -> Fixture {
    let mut db = TestDb::create(prefix).await.expect("test database");
    let owner = db.create_role("app_owner").await.expect("role");
    let su = db
        .connect(&Role::Superuser)
        .await
        .expect("superuser session");
    exec(
        &su,
        &format!(
            "CREATE SCHEMA app AUTHORIZATION {owner};\n{grants}",
            owner = owner.ident(),
            grants = grant_registration_sql(&owner)
        ),
    )
    .await;
    let app = db.connect(&owner).await.expect("owner session");
    let is_super: bool = app
        .query_one(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert!(!is_super, "the table owner must not be a superuser");
    exec(
        &app,
        "
        CREATE TABLE app.projects (id bigint PRIMARY KEY, name text NOT NULL);
        CREATE TABLE app.documents (
            id         bigint PRIMARY KEY,
            project_id bigint NOT NULL REFERENCES app.projects ON DELETE CASCADE,
            user_id    bigint NOT NULL,
            tenant_id  bigint NOT NULL,
            body       text
        );
        CREATE TABLE app.notes (id bigint PRIMARY KEY, user_id bigint NOT NULL, body text);
        INSERT INTO app.projects SELECT g, 'project ' || g FROM generate_series(1, 3) AS g;
        INSERT INTO app.documents
        SELECT g, 1 + g % 3, 1 + g % 4, 10, 'document ' || g FROM generate_series(1, 36) AS g;
        INSERT INTO app.notes SELECT g, 1 + g % 2, 'note ' || g FROM generate_series(1, 10) AS g;
        SELECT lifecycle.register_table('app.documents', 'user', 'user_id', 'tenant_id');
        SELECT lifecycle.register_table('app.notes', 'user', 'user_id');
        ",
    )
    .await;
    let hold = ok(
        place_hold(&su, "user", "1", None, REASON).await,
        "place_hold by the superuser",
    );
    Fixture {
        db,
        owner,
        su,
        app,
        hold,
    }
}

/// A digest of every row of the application tables.
async fn fingerprint(c: &Client) -> String {
    c.query_one(
        "SELECT concat_ws('|',
            (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM app.projects t),
            (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM app.documents t),
            (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM app.notes t))",
        &[],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or_else(|e| panic!("fingerprint: {}", describe(&e)))
}

impl Fixture {
    /// The refusal names the hold (id and reason) and says what to do.
    fn assert_names_hold(&self, e: &DbError, what: &str) {
        let detail = e.detail().unwrap_or_else(|| panic!("{what}: no DETAIL"));
        assert!(
            detail.contains(&self.hold.to_string()),
            "{what}: DETAIL {detail:?} does not name hold {}",
            self.hold
        );
        assert!(
            detail.contains(REASON),
            "{what}: DETAIL {detail:?} does not give the reason"
        );
        assert!(e.hint().is_some_and(|h| !h.is_empty()), "{what}: no HINT");
    }

    fn assert_explained(&self, e: &DbError, what: &str) {
        assert!(
            e.detail().is_some_and(|d| !d.is_empty()),
            "{what}: no DETAIL"
        );
        assert!(e.hint().is_some_and(|h| !h.is_empty()), "{what}: no HINT");
    }

    /// Nothing changed: data, hold, guards.
    async fn assert_intact(&self, before: &str, what: &str) {
        assert_eq!(
            fingerprint(&self.su).await,
            before,
            "{what}: the data changed"
        );
        let active: bool = self
            .su
            .query_one(
                "SELECT active FROM lifecycle.legal_holds WHERE id = $1",
                &[&self.hold],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or_else(|e| panic!("{what}: {}", describe(&e)));
        assert!(active, "{what}: the hold is no longer active");
        assert_eq!(
            guards_not_ok(&self.su).await,
            Vec::<String>::new(),
            "{what}: a guard is not ok"
        );
    }
}

#[tokio::test]
async fn owner_cannot_delete_update_or_truncate_held_rows() {
    let f = fixture("bypass_dml").await;
    let before = fingerprint(&f.su).await;

    let e = expect_sqlstate(
        f.app
            .execute("DELETE FROM app.documents WHERE user_id = 1", &[])
            .await,
        "LC001",
        "DELETE of held rows",
    );
    f.assert_names_hold(&e, "DELETE");
    f.assert_intact(&before, "DELETE").await;

    // Even when held rows are only part of what the statement touches.
    let e = expect_sqlstate(
        f.app.execute("DELETE FROM app.documents", &[]).await,
        "LC001",
        "DELETE of the whole table",
    );
    f.assert_names_hold(&e, "DELETE of the whole table");
    f.assert_intact(&before, "DELETE of the whole table").await;

    let e = expect_sqlstate(
        f.app
            .execute(
                "UPDATE app.documents SET body = 'overwritten' WHERE user_id = 1",
                &[],
            )
            .await,
        "LC001",
        "UPDATE of held rows",
    );
    f.assert_names_hold(&e, "UPDATE");
    f.assert_intact(&before, "UPDATE").await;

    // Moving a held row out of the subject's scope is an UPDATE too.
    let e = expect_sqlstate(
        f.app
            .execute(
                "UPDATE app.documents SET user_id = 99 WHERE user_id = 1",
                &[],
            )
            .await,
        "LC001",
        "UPDATE of the subject column of held rows",
    );
    f.assert_names_hold(&e, "UPDATE of the subject column");
    f.assert_intact(&before, "UPDATE of the subject column")
        .await;

    for table in ["app.documents", "app.notes"] {
        let e = expect_sqlstate(
            f.app.execute(&format!("TRUNCATE {table}"), &[]).await,
            "LC002",
            &format!("TRUNCATE {table}"),
        );
        f.assert_names_hold(&e, "TRUNCATE");
        f.assert_intact(&before, "TRUNCATE").await;
    }

    // Rows that are not held can still be changed.
    assert_eq!(
        ok(
            f.app
                .execute(
                    "UPDATE app.documents SET body = body WHERE user_id = 2",
                    &[]
                )
                .await,
            "UPDATE of rows not held",
        ),
        9
    );
    f.db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn cascaded_delete_from_unregistered_parent_is_refused() {
    let f = fixture("bypass_cascade").await;
    let before = fingerprint(&f.su).await;
    // Project 1 has documents of user 1 (ids 12, 24, 36).
    assert!(
        count(
            &f.su,
            "SELECT 1 FROM app.documents WHERE project_id = 1 AND user_id = 1"
        )
        .await
            > 0
    );
    let e = expect_sqlstate(
        f.app
            .execute("DELETE FROM app.projects WHERE id = 1", &[])
            .await,
        "LC001",
        "DELETE of a parent cascading to held rows",
    );
    f.assert_names_hold(&e, "cascaded DELETE");
    f.assert_intact(&before, "cascaded DELETE").await;

    // TRUNCATE ... CASCADE reaches the registered table's truncate guard.
    let e = expect_sqlstate(
        f.app.execute("TRUNCATE app.projects CASCADE", &[]).await,
        "LC002",
        "TRUNCATE of a parent cascading to a table with held rows",
    );
    f.assert_names_hold(&e, "TRUNCATE ... CASCADE");
    f.assert_intact(&before, "TRUNCATE ... CASCADE").await;
    f.db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn replica_mode_does_not_switch_the_guard_off() {
    let f = fixture("bypass_replica").await;
    let before = fingerprint(&f.su).await;
    // Needs a superuser; the owner cannot even try.
    expect_sqlstate(
        f.app
            .batch_execute("SET session_replication_role = replica")
            .await,
        "42501",
        "SET session_replication_role as the owner",
    );

    exec(&f.su, "SET session_replication_role = replica").await;
    let e = expect_sqlstate(
        f.su.execute("DELETE FROM app.documents WHERE user_id = 1", &[])
            .await,
        "LC001",
        "DELETE under session_replication_role = replica",
    );
    f.assert_names_hold(&e, "DELETE in replica mode");
    let e = expect_sqlstate(
        f.su.execute("UPDATE app.notes SET body = '' WHERE user_id = 1", &[])
            .await,
        "LC001",
        "UPDATE under session_replication_role = replica",
    );
    f.assert_names_hold(&e, "UPDATE in replica mode");
    let e = expect_sqlstate(
        f.su.execute("TRUNCATE app.notes", &[]).await,
        "LC002",
        "TRUNCATE under session_replication_role = replica",
    );
    f.assert_names_hold(&e, "TRUNCATE in replica mode");
    exec(&f.su, "RESET session_replication_role").await;
    f.assert_intact(&before, "replica mode").await;
    f.db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn owner_cannot_disable_drop_or_rename_guard_triggers() {
    let f = fixture("bypass_triggers").await;
    let before = fingerprint(&f.su).await;

    for (sql, what) in [
        (
            "ALTER TABLE app.documents DISABLE TRIGGER lifecycle_guard",
            "DISABLE TRIGGER lifecycle_guard",
        ),
        (
            "ALTER TABLE app.documents DISABLE TRIGGER lifecycle_guard_truncate",
            "DISABLE TRIGGER lifecycle_guard_truncate",
        ),
        (
            "ALTER TABLE app.documents ENABLE TRIGGER lifecycle_guard",
            "ENABLE TRIGGER lifecycle_guard (origin only)",
        ),
        (
            "ALTER TABLE app.documents ENABLE REPLICA TRIGGER lifecycle_guard",
            "ENABLE REPLICA TRIGGER lifecycle_guard",
        ),
        (
            "ALTER TABLE app.documents DISABLE TRIGGER USER",
            "DISABLE TRIGGER USER",
        ),
        // app.notes has no foreign keys, so ALL reaches only the guards.
        (
            "ALTER TABLE app.notes DISABLE TRIGGER ALL",
            "DISABLE TRIGGER ALL (no system triggers)",
        ),
        (
            "DROP TRIGGER lifecycle_guard ON app.documents",
            "DROP TRIGGER lifecycle_guard",
        ),
        (
            "DROP TRIGGER lifecycle_guard_truncate ON app.notes",
            "DROP TRIGGER lifecycle_guard_truncate",
        ),
        (
            "ALTER TRIGGER lifecycle_guard ON app.documents RENAME TO x",
            "ALTER TRIGGER ... RENAME",
        ),
    ] {
        let e = expect_sqlstate(f.app.batch_execute(sql).await, "LC004", what);
        f.assert_explained(&e, what);
        assert!(
            e.message().contains("lifecycle_guard"),
            "{what}: message {:?} does not name the guard",
            e.message()
        );
        f.assert_intact(&before, what).await;
    }

    // With foreign keys, the server itself refuses ALL (system triggers)
    // or the guard does; either way the guards survive.
    expect_one_of(
        f.app
            .batch_execute("ALTER TABLE app.documents DISABLE TRIGGER ALL")
            .await,
        &["LC004", "42501"],
        "DISABLE TRIGGER ALL (with system triggers)",
    );
    f.assert_intact(&before, "DISABLE TRIGGER ALL").await;

    // And the guard still works afterwards.
    let e = expect_sqlstate(
        f.app
            .execute("DELETE FROM app.documents WHERE user_id = 1", &[])
            .await,
        "LC001",
        "DELETE after the tampering attempts",
    );
    f.assert_names_hold(&e, "DELETE after the tampering attempts");
    f.db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn owner_cannot_unregister_or_drop_a_held_table() {
    let f = fixture("bypass_drop").await;
    let before = fingerprint(&f.su).await;

    let e = expect_sqlstate(
        f.app
            .query_one("SELECT lifecycle.unregister_table('app.documents')", &[])
            .await,
        "LC003",
        "unregister_table of a held table",
    );
    f.assert_names_hold(&e, "unregister_table");
    f.assert_intact(&before, "unregister_table").await;
    assert_eq!(
        count(
            &f.su,
            "SELECT 1 FROM lifecycle.data_map WHERE relation = 'app.documents'::regclass"
        )
        .await,
        1
    );

    for (sql, what) in [
        ("DROP TABLE app.documents", "DROP TABLE"),
        ("DROP TABLE app.notes", "DROP TABLE"),
        ("DROP SCHEMA app CASCADE", "DROP SCHEMA ... CASCADE"),
        (
            "DROP TABLE app.projects, app.documents",
            "DROP TABLE of several tables",
        ),
    ] {
        let e = expect_sqlstate(f.app.batch_execute(sql).await, "LC003", what);
        f.assert_names_hold(&e, what);
        f.assert_intact(&before, what).await;
    }
    // The owner's own role cannot be dropped together with its objects
    // either (DROP OWNED).
    let e = expect_sqlstate(
        f.app
            .batch_execute(&format!(
                "DROP OWNED BY {}",
                quote_ident(f.owner.name().expect("login role"))
            ))
            .await,
        "LC003",
        "DROP OWNED BY the owner",
    );
    f.assert_names_hold(&e, "DROP OWNED");
    f.assert_intact(&before, "DROP OWNED").await;
    assert_eq!(
        count(&f.su, "SELECT 1 FROM lifecycle.data_map").await,
        2,
        "the data map lost a table"
    );
    f.db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn legal_holds_and_audit_log_cannot_be_edited_directly() {
    let f = fixture("bypass_tables").await;
    let before = fingerprint(&f.su).await;
    let events = count(&f.su, "SELECT 1 FROM lifecycle.audit_log").await;

    // The owner has no privileges on the extension's tables at all.
    expect_sqlstate(
        f.app
            .execute("UPDATE lifecycle.legal_holds SET active = false", &[])
            .await,
        "42501",
        "UPDATE lifecycle.legal_holds as the owner",
    );

    // A superuser is stopped by the triggers.
    for (sql, what) in [
        (
            "UPDATE lifecycle.legal_holds SET active = false, released_at = now(), released_by = 'x'",
            "UPDATE lifecycle.legal_holds",
        ),
        (
            "UPDATE lifecycle.legal_holds SET expires_at = now() + interval '1 second'",
            "UPDATE of expires_at",
        ),
        ("DELETE FROM lifecycle.legal_holds", "DELETE FROM lifecycle.legal_holds"),
        ("TRUNCATE lifecycle.legal_holds", "TRUNCATE lifecycle.legal_holds"),
    ] {
        let e = expect_sqlstate(f.su.batch_execute(sql).await, "LC006", what);
        f.assert_explained(&e, what);
        f.assert_intact(&before, what).await;
    }
    assert_eq!(
        count(&f.su, "SELECT 1 FROM lifecycle.holds_in_force").await,
        1
    );

    for (sql, what) in [
        (
            "UPDATE lifecycle.audit_log SET reason = 'rewritten'",
            "UPDATE lifecycle.audit_log",
        ),
        (
            "DELETE FROM lifecycle.audit_log",
            "DELETE FROM lifecycle.audit_log",
        ),
        (
            "TRUNCATE lifecycle.audit_log",
            "TRUNCATE lifecycle.audit_log",
        ),
    ] {
        let e = expect_sqlstate(f.su.batch_execute(sql).await, "LC005", what);
        f.assert_explained(&e, what);
    }
    // Also under replica mode (the triggers are ENABLE ALWAYS).
    exec(&f.su, "SET session_replication_role = replica").await;
    expect_sqlstate(
        f.su.batch_execute("DELETE FROM lifecycle.audit_log").await,
        "LC005",
        "DELETE FROM lifecycle.audit_log in replica mode",
    );
    expect_sqlstate(
        f.su.batch_execute("DELETE FROM lifecycle.legal_holds")
            .await,
        "LC006",
        "DELETE FROM lifecycle.legal_holds in replica mode",
    );
    exec(&f.su, "RESET session_replication_role").await;

    assert_eq!(
        count(&f.su, "SELECT 1 FROM lifecycle.audit_log").await,
        events
    );
    let (valid, checked, first_bad) = verify_audit_log(&f.su).await;
    assert!(valid, "audit log broken: first bad {first_bad:?}");
    assert_eq!(checked, events);
    f.db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn superuser_disabling_a_guard_is_recorded_and_shown() {
    let f = fixture("bypass_superuser").await;
    assert_eq!(guards_not_ok(&f.su).await, Vec::<String>::new());

    ok(
        f.su.batch_execute("ALTER TABLE app.documents DISABLE TRIGGER lifecycle_guard")
            .await,
        "a superuser may disable a guard",
    );
    let recorded = count(
        &f.su,
        "SELECT 1 FROM lifecycle.audit_log WHERE event_type = 'guard.disabled' \
            AND details->>'trigger' = 'lifecycle_guard' \
            AND details->>'table' = 'app.documents' AND actor = current_user",
    )
    .await;
    assert_eq!(recorded, 1, "no guard.disabled event in the audit log");
    let status = guards_not_ok(&f.su).await;
    assert!(
        status
            .iter()
            .any(|s| s.starts_with("app.documents lifecycle_guard:")),
        "guard_status does not show the disabled guard: {status:?}"
    );

    // Dropping one is allowed for a superuser too, and recorded.
    ok(
        f.su.batch_execute("DROP TRIGGER lifecycle_guard_truncate ON app.notes")
            .await,
        "a superuser may drop a guard",
    );
    assert_eq!(
        count(
            &f.su,
            "SELECT 1 FROM lifecycle.audit_log WHERE event_type = 'guard.dropped' \
                AND details->>'trigger' = 'lifecycle_guard_truncate'"
        )
        .await,
        1,
        "no guard.dropped event in the audit log"
    );
    let status = guards_not_ok(&f.su).await;
    assert!(
        status
            .iter()
            .any(|s| s == "app.notes lifecycle_guard_truncate: missing"),
        "guard_status does not show the dropped guard: {status:?}"
    );
    let (valid, _, first_bad) = verify_audit_log(&f.su).await;
    assert!(valid, "audit log broken: first bad {first_bad:?}");
    f.db.cleanup().await.expect("cleanup");
}

async fn record_events(c: &Client, n: usize) -> Vec<i64> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id: i64 = c
            .query_one(
                "SELECT lifecycle.record_event('test.event', 'tester', 'user', $1, '10', \
                        reason => 'event ' || $1)",
                &[&i.to_string()],
            )
            .await
            .map(|r| r.get(0))
            .unwrap_or_else(|e| panic!("record_event: {}", describe(&e)));
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn superuser_disabling_the_extensions_own_triggers_is_shown() {
    let f = fixture("bypass_own_triggers").await;
    assert_eq!(guards_not_ok(&f.su).await, Vec::<String>::new());
    exec(
        &f.su,
        "ALTER TABLE lifecycle.jobs DISABLE TRIGGER jobs_state_machine;
         ALTER TABLE lifecycle.audit_log ENABLE TRIGGER audit_log_append_only;
         DROP TRIGGER invalidate_cache ON lifecycle.column_rules;",
    )
    .await;
    assert_eq!(
        guards_not_ok(&f.su).await,
        vec![
            "lifecycle.audit_log audit_log_append_only: not enable always (O)".to_string(),
            "lifecycle.column_rules invalidate_cache: missing".to_string(),
            "lifecycle.jobs jobs_state_machine: not enable always (D)".to_string(),
        ]
    );
    exec(
        &f.su,
        "ALTER TABLE lifecycle.jobs ENABLE ALWAYS TRIGGER jobs_state_machine;
         ALTER TABLE lifecycle.audit_log ENABLE ALWAYS TRIGGER audit_log_append_only;
         CREATE TRIGGER invalidate_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
             ON lifecycle.column_rules FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.invalidate_cache();
         ALTER TABLE lifecycle.column_rules ENABLE ALWAYS TRIGGER invalidate_cache;",
    )
    .await;
    assert_eq!(guards_not_ok(&f.su).await, Vec::<String>::new());
    f.db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn audit_log_edited_with_triggers_disabled_fails_verification() {
    let f = fixture("bypass_audit_edit").await;
    let ids = record_events(&f.su, 12).await;
    let (valid, checked, _) = verify_audit_log(&f.su).await;
    assert!(valid);
    let total = count(&f.su, "SELECT 1 FROM lifecycle.audit_log").await;
    assert_eq!(checked, total);

    let edited = ids[3];
    let deleted = ids[8];
    exec(
        &f.su,
        &format!(
            "ALTER TABLE lifecycle.audit_log DISABLE TRIGGER USER;
             UPDATE lifecycle.audit_log SET reason = 'x' WHERE id = {edited};
             DELETE FROM lifecycle.audit_log WHERE id = {deleted};
             ALTER TABLE lifecycle.audit_log ENABLE ALWAYS TRIGGER audit_log_append_only,
                                             ENABLE ALWAYS TRIGGER audit_log_no_truncate;"
        ),
    )
    .await;
    let (valid, checked, first_bad) = verify_audit_log(&f.su).await;
    assert!(!valid, "verify_audit_log() did not notice the tampering");
    assert_eq!(checked, total - 1);
    assert_eq!(first_bad, Some(edited.min(deleted)));
    f.db.cleanup().await.expect("cleanup");
}

async fn successor_in_chain(c: &Client, id: i64) -> Option<i64> {
    c.query_one(
        "SELECT min(id) FROM lifecycle.audit_log \
          WHERE chain = (SELECT chain FROM lifecycle.audit_log WHERE id = $1) AND id > $1",
        &[&id],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or_else(|e| panic!("{}", describe(&e)))
}

async fn delete_event(c: &Client, id: i64) {
    exec(
        c,
        &format!(
            "ALTER TABLE lifecycle.audit_log DISABLE TRIGGER audit_log_append_only;
             DELETE FROM lifecycle.audit_log WHERE id = {id};
             ALTER TABLE lifecycle.audit_log ENABLE ALWAYS TRIGGER audit_log_append_only;"
        ),
    )
    .await;
}

#[tokio::test]
async fn audit_log_event_deleted_with_triggers_disabled_fails_verification() {
    let f = fixture("bypass_audit_del").await;
    let ids = record_events(&f.su, 12).await;

    // Removing the newest event of a chain is noticed through the chain head.
    let newest = *ids.last().expect("events");
    assert_eq!(successor_in_chain(&f.su, newest).await, None);
    delete_event(&f.su, newest).await;
    let (valid, _, first_bad) = verify_audit_log(&f.su).await;
    assert!(
        !valid,
        "verify_audit_log() did not notice the newest event missing"
    );
    assert_eq!(first_bad, Some(newest));

    // Removing an event in the middle breaks the link of its successor.
    let deleted = ids[2];
    let successor = successor_in_chain(&f.su, deleted)
        .await
        .expect("the event has a successor in its chain");
    delete_event(&f.su, deleted).await;
    let (valid, _, first_bad) = verify_audit_log(&f.su).await;
    assert!(!valid, "verify_audit_log() did not notice a deleted event");
    assert_eq!(first_bad, Some(successor.min(newest)));
    f.db.cleanup().await.expect("cleanup");
}
