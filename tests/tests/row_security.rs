//! Row-level security on a registered table never makes the extension see
//! fewer rows. The guarded application (tests/fixtures/guarded_app.sql) is
//! owned by a role that is not a superuser, which adds the usual
//! tenant-isolation policy of a multi-tenant schema and forces it on itself
//! (`FORCE ROW LEVEL SECURITY`). The extension's session never sets the
//! tenant, so the policy would hide every row from the erasure: instead of
//! completing with a verified receipt while the rows are still there, the
//! job fails with LC044 and every row is as before; the export refuses to
//! open the table; a policy that hides only some rows is caught the same
//! way; with `NO FORCE` the erasure removes everything and verifies it.

use lifecycle_tests::{describe, exec, expect_sqlstate, guards_not_ok, ok};
use tokio_postgres::error::DbError;
use tokio_postgres::Client;

// The application, owned by a role that is not a superuser.
use lifecycle_tests::{guarded_app as app, GuardedApp as App};

const U1: &str = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
const U2: &str = "b1ffcd00-ad1c-4ef8-bb6d-6bb9bd380a12";

/// Every row of the application's tables and of the extension's job
/// results, retention records and outside steps, as text digests read by
/// a superuser (whom no policy filters).
async fn fingerprint(c: &Client) -> String {
    c.query_one(
        "SELECT pg_catalog.concat_ws('|',
            (SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id)) FROM app.workspaces t),
            (SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id)) FROM app.users t),
            (SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id)) FROM app.posts t),
            (SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY t.id, t.at)) FROM app.events t),
            (SELECT pg_catalog.count(*) FROM lifecycle.retention),
            (SELECT pg_catalog.count(*) FROM lifecycle.external_steps))",
        &[],
    )
    .await
    .map(|r| r.get(0))
    .unwrap_or_else(|e| panic!("fingerprint: {}", describe(&e)))
}

/// A digest of the rows of `table` that are not U1's.
fn others(table: &str, column: &str, order: &str) -> String {
    format!(
        "SELECT pg_catalog.md5(pg_catalog.string_agg(t::text, ',' ORDER BY {order})) \
           FROM app.{table} t WHERE t.{column} <> '{U1}'"
    )
}

/// An erasure of `id` due at once, run now; returns (job id, the job).
async fn erase(su: &Client, id: &str) -> (uuid::Uuid, serde_json::Value) {
    let job: uuid::Uuid = ok(
        su.query_one(
            "SELECT lifecycle.request_erasure('user', $1, 'acme', 'dpo@example.com', 'GDPR Art. 17', \
                    cooling_off => '0 seconds', requires_approval => false)",
            &[&id],
        )
        .await,
        "request_erasure",
    )
    .get(0);
    let run: serde_json::Value = ok(
        su.query_one("SELECT lifecycle.run_job($1)", &[&job]).await,
        "run_job",
    )
    .get(0);
    (job, run)
}

/// The refusal names the table and its policy, and says what to change.
fn assert_refusal(e: &DbError, table: &str, policy: &str, purpose: &str, what: &str) {
    assert_eq!(
        e.message(),
        format!("row-level security would hide rows of table {table} from {purpose}"),
        "{what}"
    );
    let detail = e.detail().unwrap_or_default();
    assert!(
        detail.contains(&format!("policy \"{policy}\"")) && detail.contains("FORCE ROW LEVEL"),
        "{what}: DETAIL {detail:?}"
    );
    let hint = e.hint().unwrap_or_default();
    assert!(
        hint.contains(&format!("ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY"))
            && hint.contains("BYPASSRLS"),
        "{what}: HINT {hint:?}"
    );
}

/// The job failed with LC044, naming the table, and changed nothing.
async fn assert_failed_unchanged(
    a: &App,
    run: &serde_json::Value,
    before: &str,
    table: &str,
    what: &str,
) {
    assert_eq!(run["status"], "failed", "{what}: {run}");
    assert_eq!(run["error_sqlstate"], "LC044", "{what}: {run}");
    assert!(
        run["error"].as_str().unwrap_or_default().contains(table),
        "{what}: {run}"
    );
    assert!(run["result"].is_null(), "{what}: no receipt: {run}");
    assert_eq!(fingerprint(&a.su).await, before, "{what}: rows changed");
    let state: String = ok(
        a.su.query_one("SELECT lifecycle.subject_state('user', $1)", &[&U1])
            .await,
        "subject_state",
    )
    .get(0);
    assert_eq!(state, "active", "{what}");
}

async fn exports_refused(a: &App, table: &str, policy: &str, what: &str) {
    let e = expect_sqlstate(
        a.su.query(
            "SELECT * FROM lifecycle.export_contents('user', $1)",
            &[&U1],
        )
        .await,
        "LC044",
        &format!("{what}: export_contents"),
    );
    assert_refusal(&e, table, policy, "the export", what);
    exec(&a.su, "BEGIN").await;
    let e = expect_sqlstate(
        a.su.query_one(
            "SELECT lifecycle.open_export('user', $1, 'acme', 'posts', 'rows')",
            &[&U1],
        )
        .await,
        "LC044",
        &format!("{what}: open_export"),
    );
    assert_refusal(&e, table, policy, "the export", what);
    exec(&a.su, "ROLLBACK").await;
    let e = expect_sqlstate(
        a.su.query_one("SELECT lifecycle.preview_erasure('user', $1)", &[&U1])
            .await,
        "LC044",
        &format!("{what}: preview_erasure"),
    );
    assert_refusal(&e, table, policy, "the erasure preview", what);
}

#[tokio::test]
async fn forced_tenant_isolation_fails_the_erasure_and_changes_nothing() {
    let a = app("rls_forced").await;
    // The application's tenant isolation, forced on its owner.
    exec(
        &a.app,
        "ALTER TABLE app.posts ENABLE ROW LEVEL SECURITY;
         ALTER TABLE app.posts FORCE ROW LEVEL SECURITY;
         CREATE POLICY tenant ON app.posts USING (workspace_id = current_setting('app.tenant', true));",
    )
    .await;
    let hidden: i64 = ok(
        a.app.query_one("SELECT count(*) FROM app.posts", &[]).await,
        "the owner's own view",
    )
    .get(0);
    assert_eq!(
        hidden, 0,
        "the policy hides every post from a session without a tenant"
    );
    let before = fingerprint(&a.su).await;
    assert_eq!(
        guards_not_ok(&a.su).await.len(),
        1,
        "guard_status lists the table"
    );

    // The erasure: a failed job, not a completed one with a "verified" receipt.
    let (job, run) = erase(&a.su, U1).await;
    assert_failed_unchanged(&a, &run, &before, "app.posts", "forced, every row hidden").await;
    let audited: i64 = ok(
        a.su.query_one(
            "SELECT count(*) FROM lifecycle.audit_log \
              WHERE event_type = 'job.failed' AND details->>'sqlstate' = 'LC044' \
                AND details->>'job_id' = $1",
            &[&job.to_string()],
        )
        .await,
        "audit",
    )
    .get(0);
    assert_eq!(audited, 1, "the failure is in the audit log");

    // Run by the job runner (as pg_cron would): the same.
    let id: uuid::Uuid = ok(
        a.su.query_one(
            "SELECT lifecycle.request_erasure('user', $1, 'acme', 'dpo@example.com', 'again', \
                    cooling_off => '0 seconds', requires_approval => false)",
            &[&U1],
        )
        .await,
        "request",
    )
    .get(0);
    exec(&a.su, "SELECT lifecycle.run_due_jobs()").await;
    let (status, sqlstate): (String, Option<String>) = ok(
        a.su.query_one(
            "SELECT status, error_sqlstate FROM lifecycle.jobs WHERE id = $1",
            &[&id],
        )
        .await
        .map(|r| (r.get(0), r.get(1))),
        "job",
    );
    assert_eq!(
        (status.as_str(), sqlstate.as_deref()),
        ("failed", Some("LC044"))
    );
    assert_eq!(
        fingerprint(&a.su).await,
        before,
        "run_due_jobs changed rows"
    );

    // The export and the preview refuse before reading anything.
    exports_refused(&a, "app.posts", "tenant", "forced").await;

    // A policy that lets some rows through is caught all the same: the
    // posts in acme (1-20) are visible, globex's (21-30) are not.
    exec(
        &a.app,
        "DROP POLICY tenant ON app.posts;
         CREATE POLICY acme ON app.posts USING (workspace_id = 'acme');",
    )
    .await;
    let seen: i64 = ok(
        a.app.query_one("SELECT count(*) FROM app.posts", &[]).await,
        "partial view",
    )
    .get(0);
    assert_eq!(seen, 20, "the policy hides some rows, not all");
    let (_, run) = erase(&a.su, U1).await;
    assert_failed_unchanged(&a, &run, &before, "app.posts", "forced, some rows hidden").await;
    exports_refused(&a, "app.posts", "acme", "some rows hidden").await;

    // On a partitioned table: the policy of its root hides the events of
    // 2026 (the posts are the owner's to read again).
    exec(
        &a.app,
        "ALTER TABLE app.posts NO FORCE ROW LEVEL SECURITY;
         ALTER TABLE app.events ENABLE ROW LEVEL SECURITY;
         ALTER TABLE app.events FORCE ROW LEVEL SECURITY;
         CREATE POLICY past ON app.events USING (at < '2026-01-01');",
    )
    .await;
    let (_, run) = erase(&a.su, U1).await;
    assert_failed_unchanged(&a, &run, &before, "app.events", "a partitioned table").await;
    exports_refused(&a, "app.events", "past", "a partitioned table").await;
}

#[tokio::test]
async fn without_force_the_erasure_removes_every_row_and_verifies_it() {
    let a = app("rls_no_force").await;
    // Tenant isolation enabled but not forced: the owner is exempt.
    exec(
        &a.app,
        "ALTER TABLE app.posts ENABLE ROW LEVEL SECURITY;
         ALTER TABLE app.posts FORCE ROW LEVEL SECURITY;
         CREATE POLICY tenant ON app.posts USING (workspace_id = current_setting('app.tenant', true));
         ALTER TABLE app.posts NO FORCE ROW LEVEL SECURITY;",
    )
    .await;
    assert!(guards_not_ok(&a.su).await.is_empty(), "nothing to report");
    let others_posts = others("posts", "author_id", "t.id");
    let others_events = others("events", "user_id", "t.id, t.at");
    let before: Vec<Option<String>> = vec![
        ok(a.su.query_one(&others_posts, &[]).await, "posts").get(0),
        ok(a.su.query_one(&others_events, &[]).await, "events").get(0),
    ];

    // The export reads every one of U2's posts, whatever the tenant setting.
    exec(&a.su, "BEGIN").await;
    exec(
        &a.su,
        &format!("SELECT lifecycle.open_export('user', '{U2}', 'acme', 'posts', 'rows')"),
    )
    .await;
    let exported: i64 = ok(
        a.su.query_one(
            "SELECT count(*) FROM lifecycle.fetch_export('rows', 1000)",
            &[],
        )
        .await,
        "fetch_export",
    )
    .get(0);
    exec(&a.su, "COMMIT").await;
    assert_eq!(exported, 10, "every post of U2");

    let preview: serde_json::Value = ok(
        a.su.query_one("SELECT lifecycle.preview_erasure('user', $1)", &[&U1])
            .await,
        "preview",
    )
    .get(0);
    let (_, run) = erase(&a.su, U1).await;
    assert_eq!(run["status"], "completed", "{run}");
    let receipt = &run["result"];
    lifecycle_tests::assert_preview_matches_receipt(&preview, receipt, 0);
    let deleted = lifecycle_tests::rows_by_action(&receipt["actions"]);
    assert_eq!(
        deleted.get(&("app.posts".to_string(), "deleted".to_string())),
        Some(&10),
        "{receipt}"
    );
    assert_eq!(
        deleted.get(&("app.events".to_string(), "deleted".to_string())),
        Some(&6),
        "{receipt}"
    );
    assert_eq!(receipt["verification"]["ok"], true, "{receipt}");
    let posts_check = receipt["verification"]["checked"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["table"] == "app.posts" && c["check"] == "rows removed")
        .cloned()
        .unwrap_or_default();
    assert_eq!(posts_check["found"], 0, "{receipt}");
    // Nothing of U1 is left, read by a superuser; everyone else's rows are
    // as they were.
    let left: i64 = ok(
        a.su.query_one(
            "SELECT (SELECT count(*) FROM app.posts WHERE author_id = $1::text::uuid) \
                  + (SELECT count(*) FROM app.events WHERE user_id = $1::text::uuid)",
            &[&U1],
        )
        .await,
        "left",
    )
    .get(0);
    assert_eq!(left, 0);
    let after: Vec<Option<String>> = vec![
        ok(a.su.query_one(&others_posts, &[]).await, "posts").get(0),
        ok(a.su.query_one(&others_events, &[]).await, "events").get(0),
    ];
    assert_eq!(after, before, "other people's rows");
}
