//! Legal holds and the audit log under concurrent sessions.

use std::time::{Duration, Instant};

use lifecycle_tests::{
    backend_pid, count, describe, exec, expect_sqlstate, ok, place_hold, verify_audit_log,
    wait_until_blocked, within, Role, TestDb,
};
use tokio_postgres::Client;

const SCHEMA: &str = "
    CREATE TABLE documents (
        id        bigint PRIMARY KEY,
        user_id   bigint NOT NULL,
        tenant_id bigint NOT NULL,
        body      text
    );
    INSERT INTO documents
    SELECT g, 1 + g % 4, 10 + (g / 4) % 2, 'document ' || g FROM generate_series(1, 40) AS g;
    SELECT lifecycle.register_table('documents', 'user', 'user_id', 'tenant_id');
";

async fn setup(prefix: &str) -> (TestDb, Client, Client) {
    let db = TestDb::create(prefix).await.expect("test database");
    let a = db.connect(&Role::Superuser).await.expect("session A");
    let b = db.connect(&Role::Superuser).await.expect("session B");
    exec(&a, SCHEMA).await;
    (db, a, b)
}

/// Make session `b` load its guard cache for `documents` (an UPDATE that
/// fires the row guard), so that the test checks invalidation, not a cold
/// cache.
async fn warm_cache(b: &Client) {
    exec(b, "UPDATE documents SET body = body WHERE user_id = 4").await;
}

async fn row_exists(c: &Client, id: i64) -> bool {
    c.query_one(
        "SELECT EXISTS (SELECT 1 FROM documents WHERE id = $1)",
        &[&id],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or_else(|e| panic!("row_exists: {}", describe(&e)))
}

async fn hold_count(c: &Client) -> i64 {
    count(c, "SELECT 1 FROM lifecycle.holds_in_force").await
}

#[tokio::test]
async fn committed_hold_is_enforced_at_once_in_another_session() {
    let (db, a, b) = setup("conc_commit").await;
    warm_cache(&b).await;
    let before = count(&b, "SELECT 1 FROM documents WHERE user_id = 1").await;
    assert!(before > 0);

    let hold = ok(
        place_hold(&a, "user", "1", None, "Litigation 2024-17").await,
        "place_hold",
    );

    let e = expect_sqlstate(
        b.execute("DELETE FROM documents WHERE user_id = 1", &[])
            .await,
        "LC001",
        "DELETE of held rows in another session",
    );
    let detail = e.detail().unwrap_or_default();
    assert!(
        detail.contains(&hold.to_string()),
        "DETAIL {detail:?} lacks hold id {hold}"
    );
    assert!(
        detail.contains("Litigation 2024-17"),
        "DETAIL {detail:?} lacks the reason"
    );
    assert!(e.hint().is_some(), "no HINT");

    expect_sqlstate(
        b.execute("UPDATE documents SET body = 'x' WHERE user_id = 1", &[])
            .await,
        "LC001",
        "UPDATE of held rows in another session",
    );
    assert_eq!(
        count(&b, "SELECT 1 FROM documents WHERE user_id = 1").await,
        before
    );
    // Rows of other subjects are not held.
    ok(
        b.execute("DELETE FROM documents WHERE user_id = 2", &[])
            .await,
        "DELETE of rows not held",
    );

    // A hold limited to one tenant reaches only that tenant's rows.
    let tenant_hold = ok(
        place_hold(&a, "user", "3", Some("11"), "Tenant-limited hold").await,
        "place_hold limited to tenant 11",
    );
    let e = expect_sqlstate(
        b.execute("DELETE FROM documents WHERE user_id = 3", &[])
            .await,
        "LC001",
        "DELETE reaching the held tenant",
    );
    assert!(e
        .detail()
        .unwrap_or_default()
        .contains(&tenant_hold.to_string()));
    assert_eq!(
        ok(
            b.execute(
                "DELETE FROM documents WHERE user_id = 3 AND tenant_id = 10",
                &[],
            )
            .await,
            "DELETE outside the held tenant",
        ),
        5
    );
    assert_eq!(
        count(
            &b,
            "SELECT 1 FROM documents WHERE user_id = 3 AND tenant_id = 11"
        )
        .await,
        5
    );
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn hold_is_enforced_in_repeatable_read_transaction_with_older_snapshot() {
    let (db, a, b) = setup("conc_rr").await;
    warm_cache(&b).await;

    exec(&b, "BEGIN ISOLATION LEVEL REPEATABLE READ").await;
    let seen = count(&b, "SELECT 1 FROM documents").await;
    assert_eq!(seen, 40);
    let holds_seen_by_b = hold_count(&b).await;
    assert_eq!(holds_seen_by_b, 0);

    let hold = within("place_hold while B holds a snapshot", async {
        ok(
            place_hold(&a, "user", "1", None, "Regulator inquiry").await,
            "place_hold",
        )
    })
    .await;

    // B's snapshot predates the hold, yet the guard sees it.
    assert_eq!(
        hold_count(&b).await,
        0,
        "B's snapshot should not show the hold"
    );
    let e = expect_sqlstate(
        within(
            "DELETE in B",
            b.execute("DELETE FROM documents WHERE user_id = 1", &[]),
        )
        .await,
        "LC001",
        "DELETE under REPEATABLE READ with a snapshot older than the hold",
    );
    assert!(e.detail().unwrap_or_default().contains(&hold.to_string()));
    exec(&b, "ROLLBACK").await;
    assert_eq!(
        count(&a, "SELECT 1 FROM documents WHERE user_id = 1").await,
        10
    );
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn hold_is_enforced_in_read_committed_transaction_that_already_wrote() {
    let (db, a, b) = setup("conc_rc_wrote").await;
    exec(&a, "CREATE TABLE scratch (n int)").await;
    warm_cache(&b).await;

    // B has a transaction id (it wrote elsewhere) before the hold exists.
    exec(&b, "BEGIN; INSERT INTO scratch VALUES (1);").await;
    let hold = within("place_hold while B is open", async {
        ok(
            place_hold(&a, "user", "1", None, "Hold during B's transaction").await,
            "place_hold",
        )
    })
    .await;
    let e = expect_sqlstate(
        within(
            "DELETE in B",
            b.execute("DELETE FROM documents WHERE user_id = 1", &[]),
        )
        .await,
        "LC001",
        "DELETE in a READ COMMITTED transaction that began before the hold",
    );
    assert!(e.detail().unwrap_or_default().contains(&hold.to_string()));
    exec(&b, "ROLLBACK").await;
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn place_hold_waits_for_uncommitted_delete_and_the_delete_wins() {
    let (db, a, b) = setup("conc_race_del").await;
    let observer = db.connect(&Role::Superuser).await.expect("observer");
    let a_pid = backend_pid(&a).await;
    // Document 1 belongs to user 2 (1 + 1 % 4).
    assert!(row_exists(&a, 1).await);

    exec(&b, "BEGIN").await;
    assert_eq!(
        ok(
            b.execute("DELETE FROM documents WHERE id = 1", &[]).await,
            "DELETE in B"
        ),
        1
    );

    let placing = tokio::spawn(async move {
        let r = place_hold(&a, "user", "2", None, "Hold racing a delete").await;
        (a, r)
    });
    within("A to block behind B", wait_until_blocked(&observer, a_pid))
        .await
        .expect("place_hold should wait for B's open DELETE");
    assert!(
        !placing.is_finished(),
        "place_hold finished while B was open"
    );

    exec(&b, "COMMIT").await;
    let (a, placed) = within("place_hold after B committed", placing)
        .await
        .expect("place_hold task");
    let hold = ok(placed, "place_hold after the racing DELETE committed");

    assert!(!row_exists(&a, 1).await, "the committed delete must stand");
    let active: bool = a
        .query_one(
            "SELECT active FROM lifecycle.legal_holds WHERE id = $1",
            &[&hold],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert!(active);
    // From now on the user's remaining rows are held.
    expect_sqlstate(
        b.execute("DELETE FROM documents WHERE user_id = 2", &[])
            .await,
        "LC001",
        "DELETE after the hold committed",
    );
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn delete_waits_for_uncommitted_hold_and_is_refused() {
    let (db, a, b) = setup("conc_race_hold").await;
    let observer = db.connect(&Role::Superuser).await.expect("observer");
    let b_pid = backend_pid(&b).await;
    warm_cache(&b).await;

    exec(&a, "BEGIN").await;
    let hold = ok(
        place_hold(&a, "user", "3", None, "Hold placed first").await,
        "place_hold in an open transaction",
    );

    let deleting = tokio::spawn(async move {
        let r = b.execute("DELETE FROM documents WHERE id = 2", &[]).await;
        (b, r)
    });
    within("B to block behind A", wait_until_blocked(&observer, b_pid))
        .await
        .expect("DELETE should wait for the open place_hold");
    assert!(
        !deleting.is_finished(),
        "DELETE finished while the hold was open"
    );

    exec(&a, "COMMIT").await;
    let (b, deleted) = within("DELETE after A committed", deleting)
        .await
        .expect("DELETE task");
    let e = expect_sqlstate(deleted, "LC001", "DELETE racing an uncommitted hold");
    assert!(e.detail().unwrap_or_default().contains(&hold.to_string()));
    assert!(row_exists(&b, 2).await, "the held row must still exist");
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn concurrent_audit_writers_keep_every_chain_valid() {
    const SESSIONS: usize = 8;
    const EVENTS: usize = 200;
    let (db, a, _b) = setup("conc_audit").await;
    let before = count(&a, "SELECT 1 FROM lifecycle.audit_log").await;
    assert!(before >= 1, "registration should have recorded an event");

    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        sessions.push(db.connect(&Role::Superuser).await.expect("writer session"));
    }
    let started = tokio::sync::Barrier::new(SESSIONS);
    let started = std::sync::Arc::new(started);
    let mut tasks = Vec::new();
    for (n, c) in sessions.into_iter().enumerate() {
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            let stmt = c
                .prepare(
                    "SELECT lifecycle.record_event('test.event', $1, 'user', $2, '10', \
                            jsonb_build_object('writer', $3::int, 'n', $4::int))",
                )
                .await
                .unwrap_or_else(|e| panic!("prepare: {}", describe(&e)));
            started.wait().await;
            let actor = format!("writer-{n}");
            for i in 0..EVENTS {
                let subject = format!("{}", i % 5);
                c.query_one(&stmt, &[&actor, &subject, &(n as i32), &(i as i32)])
                    .await
                    .unwrap_or_else(|e| panic!("record_event: {}", describe(&e)));
            }
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(90), t)
            .await
            .expect("writers did not finish in time")
            .expect("writer task");
    }

    let total = count(&a, "SELECT 1 FROM lifecycle.audit_log").await;
    assert_eq!(total, before + (SESSIONS * EVENTS) as i64);
    let (ok_, checked, first_bad) = verify_audit_log(&a).await;
    assert!(ok_, "audit log does not verify: first bad id {first_bad:?}");
    assert_eq!(checked, before + (SESSIONS * EVENTS) as i64);
    assert_eq!(first_bad, None);
    let chains = count(&a, "SELECT DISTINCT chain FROM lifecycle.audit_log").await;
    assert!(chains > 1, "all events landed in one chain");
    // Every event id is unique and the chain heads account for every event.
    let events_in_heads: i64 = a
        .query_one(
            "SELECT coalesce(sum(events), 0)::bigint FROM lifecycle.audit_chains",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(events_in_heads, total);
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn expiring_hold_stops_blocking_by_itself() {
    let (db, a, b) = setup("conc_expiry").await;
    warm_cache(&b).await;
    let hold: uuid::Uuid = a
        .query_one(
            "SELECT lifecycle.place_hold('user', '1', NULL, 'Short hold', 'legal@example.com', \
                    expires_at => now() + interval '2 seconds')",
            &[],
        )
        .await
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("place_hold with expiry: {}", describe(&e)));

    let e = expect_sqlstate(
        b.execute("DELETE FROM documents WHERE user_id = 1", &[])
            .await,
        "LC001",
        "DELETE while the hold is in force",
    );
    assert!(e.detail().unwrap_or_default().contains(&hold.to_string()));
    assert!(
        e.hint().unwrap_or_default().contains("expire"),
        "HINT: {:?}",
        e.hint()
    );

    let start = Instant::now();
    let deleted = loop {
        match b
            .execute("DELETE FROM documents WHERE user_id = 1", &[])
            .await
        {
            Ok(n) => break n,
            Err(e) => {
                assert_eq!(
                    lifecycle_tests::sqlstate(&e).as_deref(),
                    Some("LC001"),
                    "{}",
                    describe(&e)
                );
                assert!(
                    start.elapsed() < Duration::from_secs(15),
                    "the expired hold still blocks after {:?}",
                    start.elapsed()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(deleted > 0);
    assert_eq!(
        hold_count(&a).await,
        0,
        "holds_in_force still lists the expired hold"
    );
    db.cleanup().await.expect("cleanup");
}
