//! The erasure engine end to end, through real sessions: requests, cooling-off,
//! approval, the run, the receipt, holds, last admins, crashes, concurrent
//! runners, leases, purge and retention, pg_cron, and bad arguments. Most
//! tests use the demo schema (sql/demo); the CRM tests use a second, very
//! differently shaped schema (tests/fixtures) the engine has never seen.

use std::time::{Duration, Instant};

use lifecycle_tests::{
    backend_pid, confirm_steps, connect_admin, count, describe, exec, expect_sqlstate, job, one,
    text, verify_audit_log, wait_until_blocked, within, Role, TestDb,
};
use serde_json::Value;
use tokio_postgres::Client;
use uuid::Uuid;

const DEMO_SCHEMA: &str = include_str!("../../sql/demo/schema.sql");
const DEMO_GENERATOR: &str = include_str!("../../sql/demo/generate.sql");
const DEMO_REGISTER: &str = include_str!("../../sql/demo/register.sql");
const CRM_SCHEMA: &str = include_str!("../fixtures/crm.sql");
const CRM_REGISTER: &str = include_str!("../fixtures/crm_register.sql");
const CRM_DATA: &str = include_str!("../fixtures/crm_data.sql");

async fn demo(prefix: &str, users: i32) -> (TestDb, Client) {
    let db = TestDb::create(prefix).await.expect("test database");
    let c = db.connect(&Role::Superuser).await.expect("session");
    exec(&c, DEMO_SCHEMA).await;
    exec(&c, DEMO_GENERATOR).await;
    exec(&c, DEMO_REGISTER).await;
    exec(&c, &format!("SELECT app.generate_demo_data({users})")).await;
    (db, c)
}

async fn crm(prefix: &str, accounts: i32) -> (TestDb, Client) {
    let db = TestDb::create(prefix).await.expect("test database");
    let c = db.connect(&Role::Superuser).await.expect("session");
    exec(&c, CRM_SCHEMA).await;
    exec(&c, CRM_REGISTER).await;
    exec(&c, CRM_DATA).await;
    exec(&c, &format!("SELECT \"CRM\".seed({accounts})")).await;
    (db, c)
}

/// `lifecycle.subject_state()` of a target.
async fn state(c: &Client, target_type: &str, id: &dyn std::fmt::Display) -> String {
    text(
        c,
        &format!("SELECT lifecycle.subject_state('{target_type}', '{id}')"),
    )
    .await
}

/// A user of the demo who is not the last admin of any workspace, with rows
/// in as many tables as possible.
async fn ordinary_user(c: &Client, skip: &[i64]) -> i64 {
    let skip: Vec<String> = skip.iter().map(|s| s.to_string()).collect();
    let skip = if skip.is_empty() {
        "0".to_string()
    } else {
        skip.join(",")
    };
    one::<i64>(
        c,
        &format!(
            "SELECT u.id FROM app.users u \
              WHERE u.id NOT IN ({skip}) \
                AND NOT EXISTS (SELECT 1 FROM app.memberships m \
                                 WHERE m.user_id = u.id AND m.role IN ('owner', 'admin') \
                                   AND NOT EXISTS (SELECT 1 FROM app.memberships o \
                                                    WHERE o.workspace_id = m.workspace_id AND o.user_id <> u.id \
                                                      AND o.role IN ('owner', 'admin'))) \
              ORDER BY (SELECT count(*) FROM app.invoices i WHERE i.billed_user_id = u.id) DESC, \
                       (SELECT count(*) FROM app.files f WHERE f.uploaded_by = u.id) DESC, u.id \
              LIMIT 1"
        ),
    )
    .await
}

/// `n` users who administer no workspace: erasing one never makes another
/// the last admin of a workspace (whose job would then fail with LC034 when
/// it runs, as the run checks again).
async fn non_admins(c: &Client, n: i64) -> Vec<i64> {
    let rows = c
        .query(
            "SELECT u.id FROM app.users u WHERE NOT EXISTS (SELECT 1 FROM app.memberships m \
              WHERE m.user_id = u.id AND m.role IN ('owner', 'admin')) ORDER BY u.id LIMIT $1",
            &[&n],
        )
        .await
        .unwrap_or_else(|e| panic!("non_admins: {}", describe(&e)));
    assert_eq!(
        rows.len() as i64,
        n,
        "not enough users without an admin role"
    );
    rows.iter().map(|r| r.get(0)).collect()
}

async fn request_now(c: &Client, target_type: &str, id: &str, by: &str) -> Uuid {
    lifecycle_tests::request_erasure_now(c, target_type, id, by, None).await
}

/// Rows of the demo that belong to `uid`, table by table.
async fn owned(c: &Client, uid: i64) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for (table, col) in [
        ("memberships", "user_id"),
        ("posts", "author_id"),
        ("comments", "author_id"),
        ("files", "uploaded_by"),
        ("sessions", "user_id"),
        ("api_keys", "user_id"),
        ("user_settings", "user_id"),
        ("invites", "invited_by"),
        ("invoices", "billed_user_id"),
        ("payments", "user_id"),
        ("support_tickets", "requester_id"),
        ("activity_log", "actor_id"),
    ] {
        let n = count(c, &format!("SELECT 1 FROM app.{table} WHERE {col} = {uid}")).await;
        out.push((table.to_string(), n));
    }
    out
}

#[tokio::test]
async fn user_erasure_end_to_end_leaves_nothing_personal() {
    let (db, c) = demo("erasure_e2e", 30).await;
    let uid = ordinary_user(&c, &[]).await;
    let other = ordinary_user(&c, &[uid]).await;
    // Give the user a row in every kind of table the engine treats
    // differently: a soft-deleted post, an invitation they accepted (their
    // address in someone else's row), a ticket with their address.
    exec(
        &c,
        &format!(
            "INSERT INTO app.posts (workspace_id, author_id, title, body, deleted_at) \
               SELECT workspace_id, {uid}, 'gone', 'deleted in the product', now() \
                 FROM app.memberships WHERE user_id = {uid} LIMIT 1;
             INSERT INTO app.invites (workspace_id, invited_by, email, role, token_hash, expires_at, accepted_by, accepted_at) \
               SELECT m.workspace_id, {other}, u.email, 'member', encode(sha256('t'::bytea), 'hex'), now() + interval '7 days', {uid}, now() \
                 FROM app.memberships m JOIN app.users u ON u.id = {uid} \
                WHERE m.user_id = {uid} LIMIT 1;
             UPDATE app.users SET phone = '+1 555 0199' WHERE id = {uid};
             SELECT lifecycle.record_event('account.login', 'user:{uid}', 'user', '{uid}', NULL, \
                                          '{{\"device\": \"laptop\"}}', '203.0.113.9', 'Firefox', NULL);"
        ),
    )
    .await;
    let email = text(&c, &format!("SELECT email FROM app.users WHERE id = {uid}")).await;
    let before_invoices = count(
        &c,
        &format!("SELECT 1 FROM app.invoices WHERE billed_user_id = {uid}"),
    )
    .await;
    let others_before = owned(&c, other).await;

    // Request with the default cooling-off: pending deletion at once, nothing runs.
    let id: Uuid = c
        .query_one(
            "SELECT lifecycle.request_erasure('user', $1, NULL, $2, 'GDPR Art. 17')",
            &[&uid.to_string(), &format!("user:{uid}")],
        )
        .await
        .unwrap_or_else(|e| panic!("request: {}", describe(&e)))
        .get(0);
    assert_eq!(state(&c, "user", &uid).await, "pending_deletion");
    let j = job(&c, id).await;
    assert_eq!(j["status"], "pending");
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 0);
    exec(
        &c,
        &format!("SELECT lifecycle.approve('{id}', 'dpo@example.com')"),
    )
    .await;
    assert_eq!(
        one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await,
        0,
        "cooling-off"
    );
    expect_sqlstate(
        c.query_one("SELECT lifecycle.run_job($1)", &[&id]).await,
        "LC030",
        "run during cooling-off",
    );

    // The cooling-off ends (moved by hand, as the clock would).
    exec(&c, &format!("UPDATE lifecycle.jobs SET scheduled_for = now() - interval '1 second' WHERE id = '{id}'")).await;
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    let j = job(&c, id).await;
    assert_eq!(j["status"], "processing", "waits for the stored files: {j}");
    assert!(j["result"]["external_steps"].as_u64().unwrap() > 0);
    assert_eq!(state(&c, "user", &uid).await, "erased");
    confirm_steps(&c, id).await;
    let j = job(&c, id).await;
    assert_eq!(j["status"], "completed");

    // Nothing personal left.
    let row = c
        .query_one(
            "SELECT name, email, display_name, phone, avatar_url FROM app.users WHERE id = $1",
            &[&uid],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "Deleted User");
    assert_eq!(
        row.get::<_, String>(1),
        format!("deleted-{uid}@deleted.local")
    );
    assert_eq!(row.get::<_, Option<String>>(3), None);
    for (table, n) in owned(&c, uid).await {
        match table.as_str() {
            "memberships" | "files" | "sessions" | "api_keys" | "user_settings" | "invites" => {
                assert_eq!(n, 0, "{table} rows of the user are gone")
            }
            _ => {}
        }
    }
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM app.posts WHERE author_id = {uid} AND deleted_at IS NOT NULL")
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM app.activity_log WHERE actor_id = {uid} AND ip IS NOT NULL")
        )
        .await,
        0
    );
    assert_eq!(count(&c, &format!("SELECT 1 FROM app.support_tickets WHERE requester_id = {uid} AND body <> '[redacted]'")).await, 0);
    for table in [
        "users",
        "memberships",
        "posts",
        "comments",
        "files",
        "sessions",
        "api_keys",
        "user_settings",
        "invites",
        "support_tickets",
        "activity_log",
    ] {
        let n = count(
            &c,
            &format!(
                "SELECT 1 FROM app.{table} t WHERE t::text LIKE '%' || {} || '%'",
                lifecycle_tests::quote_literal(&email)
            ),
        )
        .await;
        assert_eq!(n, 0, "{email} still appears in app.{table}");
        let n = count(
            &c,
            &format!("SELECT 1 FROM app.{table} t WHERE t::text LIKE '%+1 555 0199%'"),
        )
        .await;
        assert_eq!(n, 0, "the phone number still appears in app.{table}");
    }
    // Billing is retained with its legal basis and end date.
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM app.invoices WHERE billed_user_id = {uid}")
        )
        .await,
        before_invoices
    );
    if before_invoices > 0 {
        let retained = &j["result"]["retained"];
        let inv = retained
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["table"] == "app.invoices")
            .expect("invoices retained");
        assert!(inv["legal_basis"].as_str().unwrap().contains("Tax law"));
        assert!(inv["retain_until"]
            .as_str()
            .unwrap()
            .starts_with(&(2026 + 7).to_string()));
    }
    // Other users are untouched.
    assert_eq!(owned(&c, other).await, others_before);
    // The receipt: verified, and its digest is the one in the audit log.
    assert_eq!(j["result"]["verification"]["ok"], true);
    let digest = j["result_digest"].as_str().unwrap().to_string();
    assert_eq!(
        text(&c, &format!("SELECT encode(sha256(convert_to(result::text, 'UTF8')), 'hex') FROM lifecycle.jobs WHERE id = '{id}'")).await,
        digest
    );
    assert_eq!(
        text(&c, &format!("SELECT details->>'receipt_digest' FROM lifecycle.audit_log \
                           WHERE event_type = 'account.permanently_deleted' AND subject_id = '{uid}'")).await,
        digest
    );
    // Audit: the subject's own events keep their place in the chain but lose
    // their personal fields; the chain verifies.
    assert_eq!(count(&c, &format!("SELECT 1 FROM lifecycle.audit_log WHERE subject_id = '{uid}' \
                                   AND event_type = 'account.login' AND ip IS NULL AND user_agent IS NULL \
                                   AND actor IS NULL AND redacted_at IS NOT NULL")).await, 1);
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM lifecycle.audit_log WHERE subject_id = '{uid}' \
                                   AND event_type = 'admin.user_deleted'"
            )
        )
        .await,
        0,
        "self-service request"
    );
    assert!(
        verify_audit_log(&c).await.0,
        "audit chain verifies after redaction"
    );

    // Running it again changes nothing.
    let again: Value = one(&c, &format!("SELECT lifecycle.run_job('{id}')")).await;
    assert_eq!(again["result_digest"], digest.as_str());
    assert_eq!(job(&c, id).await["attempts"], 1);
    expect_sqlstate(
        c.query_one(
            "SELECT lifecycle.request_erasure('user', $1, NULL, 'dba')",
            &[&uid.to_string()],
        )
        .await,
        "LC037",
        "erasing an erased user",
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn cancel_during_cooling_off_restores_the_subject() {
    let (db, c) = demo("erasure_cancel", 12).await;
    let uid = ordinary_user(&c, &[]).await;
    let before = owned(&c, uid).await;
    let user_row = text(
        &c,
        &format!("SELECT u::text FROM app.users u WHERE id = {uid}"),
    )
    .await;
    let id: Uuid = one(&c, &format!("SELECT lifecycle.request_erasure('user', '{uid}', NULL, 'support@example.com', jurisdiction => 'ccpa')")).await;
    let j = job(&c, id).await;
    assert_eq!(
        text(
            &c,
            &format!("SELECT (due_at - requested_at)::text FROM lifecycle.jobs WHERE id = '{id}'")
        )
        .await,
        "45 days"
    );
    assert_eq!(j["jurisdiction"], "ccpa");
    assert_eq!(state(&c, "user", &uid).await, "pending_deletion");
    exec(
        &c,
        &format!("SELECT lifecycle.cancel('{id}', 'user:{uid}')"),
    )
    .await;
    assert_eq!(state(&c, "user", &uid).await, "active");
    assert_eq!(owned(&c, uid).await, before);
    assert_eq!(
        text(
            &c,
            &format!("SELECT u::text FROM app.users u WHERE id = {uid}")
        )
        .await,
        user_row
    );
    assert_eq!(count(&c, &format!("SELECT 1 FROM lifecycle.audit_log WHERE event_type = 'account.deletion_cancelled' AND subject_id = '{uid}'")).await, 1);
    // A cancelled job stays cancelled; a new request is possible.
    expect_sqlstate(
        c.execute("SELECT lifecycle.approve($1, 'dpo')", &[&id])
            .await,
        "LC030",
        "approve cancelled",
    );
    let again: Uuid = one(
        &c,
        &format!("SELECT lifecycle.request_erasure('user', '{uid}', NULL, 'support@example.com')"),
    )
    .await;
    assert_ne!(again, id);
    // Reject needs a reason and frees the subject too.
    expect_sqlstate(
        c.execute("SELECT lifecycle.reject($1, 'dpo', ' ')", &[&again])
            .await,
        "22023",
        "empty reason",
    );
    exec(
        &c,
        &format!("SELECT lifecycle.reject('{again}', 'dpo', 'identity not verified')"),
    )
    .await;
    assert_eq!(state(&c, "user", &uid).await, "active");
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn last_admin_needs_a_decision_for_each_workspace() {
    let (db, c) = demo("erasure_last_admin", 12).await;
    // Make one owner the only admin of their workspace.
    let (ws, owner): (String, i64) = {
        let r = c
            .query_one("SELECT workspace_id::text, user_id FROM app.memberships WHERE role = 'owner' ORDER BY workspace_id LIMIT 1", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    exec(&c, &format!("UPDATE app.memberships SET role = 'member' WHERE workspace_id = '{ws}' AND user_id <> {owner}")).await;
    let member: i64 = one(&c, &format!("SELECT user_id FROM app.memberships WHERE workspace_id = '{ws}' AND user_id <> {owner} ORDER BY user_id LIMIT 1")).await;
    let err = c
        .query_one(
            "SELECT lifecycle.request_erasure('user', $1, NULL, 'dba')",
            &[&owner.to_string()],
        )
        .await
        .expect_err("last admin");
    assert_eq!(lifecycle_tests::sqlstate(&err).as_deref(), Some("LC034"));
    assert!(
        lifecycle_tests::detail(&err)
            .unwrap_or_default()
            .contains(&ws),
        "DETAIL names the workspace: {}",
        describe(&err)
    );
    // A transfer to someone who is not a member is refused.
    expect_sqlstate(
        c.query_one("SELECT lifecycle.request_erasure('user', $1, NULL, 'dba', workspaces => jsonb_build_object($2::text, jsonb_build_object('transfer_to', '999999')))",
                    &[&owner.to_string(), &ws]).await,
        "22023",
        "transfer to a stranger",
    );
    // A member who is not its last admin cannot take the workspace along.
    expect_sqlstate(
        c.query_one("SELECT lifecycle.request_erasure('user', $1, NULL, 'dba', workspaces => jsonb_build_object($2::text, 'erase'))",
                    &[&member.to_string(), &ws]).await,
        "22023",
        "a decision for a workspace of another admin",
    );
    // Transfer to a member: the member becomes owner, the workspace stays.
    let id: Uuid = c
        .query_one("SELECT lifecycle.request_erasure('user', $1, NULL, 'dba', cooling_off => '0', requires_approval => false, \
                                                     workspaces => jsonb_build_object($2::text, jsonb_build_object('transfer_to', $3::text)))",
                   &[&owner.to_string(), &ws, &member.to_string()])
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .get(0);
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    let j = job(&c, id).await;
    assert!(j["result"].is_object(), "job ran: {j}");
    assert_eq!(text(&c, &format!("SELECT role FROM app.memberships WHERE workspace_id = '{ws}' AND user_id = {member}")).await, "owner");
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM app.memberships WHERE user_id = {owner}")
        )
        .await,
        0
    );
    assert_eq!(j["result"]["workspaces"][0]["decision"], "transferred");

    // The new owner is now the last admin; erasing them with "erase" takes the workspace too.
    let id2: Uuid = c
        .query_one("SELECT lifecycle.request_erasure('user', $1, NULL, 'dba', cooling_off => '0', requires_approval => false, \
                                                     workspaces => jsonb_build_object($2::text, 'erase'))",
                   &[&member.to_string(), &ws])
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .get(0);
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    let j2 = job(&c, id2).await;
    assert!(j2["result"].is_object(), "job ran: {j2}");
    for table in [
        "posts",
        "comments",
        "memberships",
        "files",
        "activity_log",
        "api_keys",
        "invites",
    ] {
        assert_eq!(
            count(
                &c,
                &format!("SELECT 1 FROM app.{table} WHERE workspace_id = '{ws}'")
            )
            .await,
            0,
            "{table} of the workspace"
        );
    }
    assert_eq!(
        count(&c, &format!("SELECT 1 FROM app.invoices WHERE workspace_id = '{ws}'")).await,
        count(&c, &format!("SELECT 1 FROM lifecycle.retention r, app.invoices i WHERE r.target_type = 'tenant' AND r.target_id = '{ws}' AND r.relation = 'app.invoices'::regclass AND i.workspace_id = '{ws}'")).await.min(1) * count(&c, &format!("SELECT 1 FROM app.invoices WHERE workspace_id = '{ws}'")).await,
        "invoices of the workspace are retained"
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn hold_blocks_the_job_until_released_or_expired() {
    let (db, c) = demo("erasure_hold", 12).await;
    let uid = ordinary_user(&c, &[]).await;
    let before = owned(&c, uid).await;
    let id = request_now(&c, "user", &uid.to_string(), "dba").await;
    let hold: Uuid = one(
        &c,
        &format!("SELECT lifecycle.place_hold('user', '{uid}', NULL, 'Litigation 17', 'legal')"),
    )
    .await;
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 0);
    let j = job(&c, id).await;
    assert_eq!(j["status"], "approved");
    assert_eq!(j["blocked_by_hold"], true);
    assert_eq!(j["blocking_hold_id"], hold.to_string());
    assert_eq!(owned(&c, uid).await, before, "nothing erased under hold");
    // Blocked once in the audit log, not once per run.
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 0);
    assert_eq!(count(&c, &format!("SELECT 1 FROM lifecycle.audit_log WHERE event_type = 'job.blocked_by_hold' AND subject_id = '{uid}'")).await, 1);
    exec(
        &c,
        &format!("SELECT lifecycle.release_hold('{hold}', 'legal', 'settled')"),
    )
    .await;
    assert_eq!(job(&c, id).await["blocked_by_hold"], false);
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    assert!(job(&c, id).await["result"].is_object());

    // A hold on a workspace where the user has rows blocks too (found by the
    // guard inside the erasure, which is rolled back), and an expiring hold
    // lets the job run once it has expired.
    let uid2 = ordinary_user(&c, &[uid]).await;
    let ws = text(
        &c,
        &format!("SELECT workspace_id::text FROM app.memberships WHERE user_id = {uid2} LIMIT 1"),
    )
    .await;
    let before2 = owned(&c, uid2).await;
    let hold2: Uuid = one(&c, &format!("SELECT lifecycle.place_hold('tenant', '{ws}', NULL, 'Audit', 'legal', now() + interval '2 seconds')")).await;
    let id2 = request_now(&c, "user", &uid2.to_string(), "dba").await;
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 0);
    let j2 = job(&c, id2).await;
    assert_eq!(j2["blocked_by_hold"], true, "{j2}");
    assert_eq!(j2["blocking_hold_id"], hold2.to_string());
    assert_eq!(
        owned(&c, uid2).await,
        before2,
        "the blocked attempt was rolled back"
    );
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    assert!(job(&c, id2).await["result"].is_object());
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_crash_in_the_middle_leaves_everything_and_the_job_is_taken_again() {
    let (db, c) = demo("erasure_crash", 12).await;
    let uid = ordinary_user(&c, &[]).await;
    let before = owned(&c, uid).await;
    let id = request_now(&c, "user", &uid.to_string(), "dba").await;
    // Another session holds the users row: the erasure stops there, after
    // everything else is done.
    let blocker = db.connect(&Role::Superuser).await.unwrap();
    exec(
        &blocker,
        &format!("BEGIN; SELECT 1 FROM app.users WHERE id = {uid} FOR UPDATE"),
    )
    .await;
    let runner = db.connect(&Role::Superuser).await.unwrap();
    let pid = backend_pid(&runner).await;
    let run = tokio::spawn(async move {
        runner
            .query_one("SELECT lifecycle.run_due_jobs()", &[])
            .await
            .map(|_| ())
    });
    wait_until_blocked(&c, pid).await.unwrap();
    // The backend dies mid-erasure.
    exec(&c, &format!("SELECT pg_terminate_backend({pid})")).await;
    let outcome = within("terminated runner", run).await.unwrap();
    assert!(outcome.is_err(), "the runner's session was killed");
    exec(&blocker, "ROLLBACK").await;
    let j = job(&c, id).await;
    assert_eq!(j["status"], "approved", "job is as before: {j}");
    assert_eq!(j["attempts"], 0);
    assert_eq!(owned(&c, uid).await, before, "nothing was erased");
    assert_eq!(
        one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await,
        1,
        "taken again"
    );
    assert!(job(&c, id).await["result"].is_object());
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM app.sessions WHERE user_id = {uid}")
        )
        .await,
        0
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn concurrent_runners_never_run_a_job_twice() {
    let (db, c) = demo("erasure_concurrent", 30).await;
    let mut ids = Vec::new();
    for uid in non_admins(&c, 6).await {
        ids.push(request_now(&c, "user", &uid.to_string(), "dba").await);
    }
    let mut runners = Vec::new();
    for _ in 0..3 {
        let s = db.connect(&Role::Superuser).await.unwrap();
        runners.push(tokio::spawn(async move {
            s.query_one("SELECT lifecycle.run_due_jobs()", &[])
                .await
                .map(|r| r.get::<_, i32>(0))
        }));
    }
    let mut total = 0;
    for r in runners {
        total += within("runner", r)
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{}", describe(&e)));
    }
    assert_eq!(total, 6, "every job ran exactly once across the runners");
    for id in ids {
        let j = job(&c, id).await;
        assert_eq!(j["attempts"], 1, "{j}");
        assert!(j["result"].is_object(), "{j}");
    }
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 0);
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn an_expired_lease_hands_the_job_to_another_worker() {
    let (db, c) = demo("erasure_lease", 12).await;
    let uid = ordinary_user(&c, &[]).await;
    let id = request_now(&c, "user", &uid.to_string(), "dba").await;
    let claimed: Value = one(
        &c,
        "SELECT lifecycle.claim_job('worker-1', '1 second', ARRAY['erase'])",
    )
    .await;
    assert_eq!(claimed["id"], id.to_string());
    assert_eq!(claimed["status"], "processing");
    let none: Option<Value> = one(&c, "SELECT lifecycle.claim_job('worker-2')").await;
    assert!(none.is_none(), "a leased job is not claimed twice");
    expect_sqlstate(
        c.query_one("SELECT lifecycle.run_job($1, 'worker-2')", &[&id])
            .await,
        "LC039",
        "lease held",
    );
    // worker-1 "crashes"; its lease runs out.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let taken: Value = one(&c, "SELECT lifecycle.claim_job('worker-2', '1 minute')").await;
    assert_eq!(taken["id"], id.to_string());
    assert_eq!(taken["worker"], "worker-2");
    let done: Value = one(&c, &format!("SELECT lifecycle.run_job('{id}', 'worker-2')")).await;
    assert!(done["result"].is_object(), "{done}");
    expect_sqlstate(
        c.query_one("SELECT lifecycle.renew_lease($1, 'worker-1')", &[&id])
            .await,
        "LC039",
        "stale worker",
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_failing_job_neither_undoes_nor_blocks_the_others() {
    let (db, c) = demo("erasure_failing", 12).await;
    let bad = ordinary_user(&c, &[]).await;
    let good = ordinary_user(&c, &[bad]).await;
    // A table the data map does not know points at the bad user's sessions.
    exec(
        &c,
        &format!(
            "CREATE TABLE app.session_audit (session_id uuid NOT NULL REFERENCES app.sessions (id), note text);
             INSERT INTO app.sessions (user_id, expires_at) VALUES ({bad}, now() + interval '1 day');
             INSERT INTO app.session_audit SELECT id, 'seen' FROM app.sessions WHERE user_id = {bad};"
        ),
    )
    .await;
    let before_bad = owned(&c, bad).await;
    let bad_job = request_now(&c, "user", &bad.to_string(), "dba").await;
    let good_job = request_now(&c, "user", &good.to_string(), "dba").await;
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 2);
    let jb = job(&c, bad_job).await;
    assert_eq!(jb["status"], "failed");
    assert_eq!(jb["error_sqlstate"], "LC040");
    assert!(
        jb["error"].as_str().unwrap().contains("app.session_audit"),
        "{jb}"
    );
    assert_eq!(
        owned(&c, bad).await,
        before_bad,
        "the failed job left nothing half done"
    );
    assert!(job(&c, good_job).await["result"].is_object());
    assert_eq!(count(&c, "SELECT 1 FROM lifecycle.unmapped_references() WHERE relation = 'app.session_audit'::regclass").await, 0,
               "session_audit references sessions, not a subject table");
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn verification_refuses_an_erasure_that_leaves_personal_data() {
    let (db, c) = demo("erasure_verify", 12).await;
    let uid = ordinary_user(&c, &[]).await;
    let other = ordinary_user(&c, &[uid]).await;
    // Someone else's ticket carries the user's address: not tied to the user
    // in the data map, but an indexed personal column the re-scan searches.
    exec(
        &c,
        &format!(
            "INSERT INTO app.support_tickets (workspace_id, requester_id, requester_email, subject, body) \
             SELECT m.workspace_id, {other}, u.email, 'forwarded', 'on behalf of a colleague' \
               FROM app.memberships m, app.users u WHERE m.user_id = {other} AND u.id = {uid} LIMIT 1"
        ),
    )
    .await;
    let before = owned(&c, uid).await;
    let id = request_now(&c, "user", &uid.to_string(), "dba").await;
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    let j = job(&c, id).await;
    assert_eq!(j["status"], "failed", "{j}");
    assert_eq!(j["error_sqlstate"], "LC041");
    assert!(
        j["error"].as_str().unwrap().contains("app.support_tickets"),
        "{j}"
    );
    assert_eq!(owned(&c, uid).await, before);
    assert_eq!(state(&c, "user", &uid).await, "active");
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn workspace_erasure_purge_and_retention_sweep() {
    let (db, c) = demo("erasure_workspace", 12).await;
    let ws = text(&c, "SELECT w.id::text FROM app.workspaces w ORDER BY (SELECT count(*) FROM app.invoices i WHERE i.workspace_id = w.id) DESC, w.id LIMIT 1").await;
    let invoices = count(
        &c,
        &format!("SELECT 1 FROM app.invoices WHERE workspace_id = '{ws}'"),
    )
    .await;
    assert!(invoices > 0);
    let members = count(
        &c,
        &format!("SELECT 1 FROM app.memberships WHERE workspace_id = '{ws}'"),
    )
    .await;
    let id = request_now(&c, "workspace", &ws, "admin@example.com").await;
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    confirm_steps(&c, id).await;
    let j = job(&c, id).await;
    assert_eq!(j["status"], "completed", "{j}");
    assert_eq!(j["target_type"], "tenant");
    for table in [
        "posts",
        "comments",
        "memberships",
        "files",
        "activity_log",
        "api_keys",
        "invites",
        "support_tickets",
    ] {
        assert_eq!(
            count(
                &c,
                &format!("SELECT 1 FROM app.{table} WHERE workspace_id = '{ws}'")
            )
            .await,
            0,
            "{table}"
        );
    }
    assert!(members > 0);
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM app.invoices WHERE workspace_id = '{ws}'")
        )
        .await,
        invoices,
        "billing retained"
    );
    assert_eq!(state(&c, "tenant", &ws).await, "erased");
    assert_eq!(count(&c, &format!("SELECT 1 FROM lifecycle.audit_log WHERE event_type = 'workspace.permanently_deleted' AND subject_id = '{ws}'")).await, 1);

    // Purge now: the retained billing and the workspace row stay.
    let p: Uuid = one(&c, &format!("SELECT lifecycle.request_purge('tenant', '{ws}', NULL, 'admin@example.com', requires_approval => false)")).await;
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    assert_eq!(job(&c, p).await["status"], "completed");
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM app.invoices WHERE workspace_id = '{ws}'")
        )
        .await,
        invoices
    );
    // Seven years later (moved by hand): the sweep removes billing, children first.
    exec(&c, &format!("UPDATE lifecycle.retention SET retain_until = now() - interval '1 day' WHERE target_id = '{ws}'")).await;
    let removed: i64 = one(&c, "SELECT lifecycle.retention_sweep()").await;
    assert!(removed >= invoices, "removed {removed}");
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM app.invoices WHERE workspace_id = '{ws}'")
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM app.payments WHERE workspace_id = '{ws}'")
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM lifecycle.retention WHERE target_id = '{ws}' AND purged_at IS NULL"
            )
        )
        .await,
        0
    );
    // A second purge now also removes the workspace tombstone.
    let p2: Uuid = one(&c, &format!("SELECT lifecycle.request_purge('tenant', '{ws}', NULL, 'admin@example.com', requires_approval => false)")).await;
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    assert_eq!(job(&c, p2).await["status"], "completed");
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM app.workspaces WHERE id = '{ws}'")
        )
        .await,
        0
    );
    assert!(verify_audit_log(&c).await.0);
    // The compliance report sees all of it.
    assert!(count(&c, "SELECT 1 FROM lifecycle.compliance_report(now() - interval '1 day', now() + interval '1 day') WHERE job_type = 'purge' AND completed = 2").await == 1);
    db.cleanup().await.unwrap();
}

/// Schedules `command` with pg_cron in a demo database of its own and waits
/// for it to run a due erasure.
async fn pg_cron_runs(prefix: &str, command: &str) {
    let (db, c) = demo(prefix, 12).await;
    let uid = ordinary_user(&c, &[]).await;
    let id = request_now(&c, "user", &uid.to_string(), "dba").await;
    let admin = connect_admin().await.unwrap();
    let name = format!("lifecycle-{}", db.name);
    admin
        .query_one(
            "SELECT cron.schedule_in_database($1, '* * * * *', $2, $3)",
            &[&name, &command, &db.name],
        )
        .await
        .unwrap_or_else(|e| panic!("pg_cron (run scripts/setup.sh): {}", describe(&e)));
    let start = Instant::now();
    let mut ran = false;
    while start.elapsed() < Duration::from_secs(150) {
        if job(&c, id).await["result"].is_object() {
            ran = true;
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let runs = admin
        .query(
            "SELECT status || ': ' || coalesce(return_message, '') FROM cron.job_run_details d
               JOIN cron.job j USING (jobid) WHERE j.jobname = $1",
            &[&name],
        )
        .await
        .map(|rows| {
            rows.iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let _ = admin.execute("SELECT cron.unschedule($1)", &[&name]).await;
    assert!(
        ran,
        "pg_cron did not run the job with {command} within 150 s: {}; pg_cron runs: {runs:?}",
        job(&c, id).await
    );
    assert_eq!(
        job(&c, id).await["worker"]
            .as_str()
            .map(|w| w.starts_with("run_due_jobs")),
        Some(true)
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn pg_cron_runs_due_jobs() {
    pg_cron_runs("erasure_cron", "SELECT lifecycle.run_due_jobs()").await;
}

/// The procedure commits after every job; pg_cron's background workers run
/// it like a top-level `CALL`.
#[tokio::test]
async fn pg_cron_calls_the_committing_procedure() {
    pg_cron_runs("erasure_cron_each", "CALL lifecycle.run_due_jobs_each()").await;
}

#[tokio::test]
async fn bad_arguments_are_refused_with_their_sqlstates() {
    let (db, c) = demo("erasure_bad_args", 8).await;
    let uid = ordinary_user(&c, &[]).await.to_string();
    let cases: &[(&str, &str)] = &[
        ("SELECT lifecycle.request_erasure(NULL, '1', NULL, 'dba')", "22004"),
        ("SELECT lifecycle.request_erasure('user', NULL, NULL, 'dba')", "22004"),
        ("SELECT lifecycle.request_erasure('user', '1', NULL, '')", "22023"),
        ("SELECT lifecycle.request_erasure('robot', '1', NULL, 'dba')", "LC032"),
        ("SELECT lifecycle.request_erasure('user', '999999', NULL, 'dba')", "LC033"),
        ("SELECT lifecycle.request_erasure('user', 'abc', NULL, 'dba')", "LC033"),
        ("SELECT lifecycle.request_erasure('user', '1', NULL, 'dba', cooling_off => NULL)", "22004"),
        ("SELECT lifecycle.request_erasure('user', '1', NULL, 'dba', cooling_off => '-1 day')", "22023"),
        ("SELECT lifecycle.request_erasure('user', '1', NULL, 'dba', jurisdiction => 'xx')", "22023"),
        ("SELECT lifecycle.request_erasure('user', '1', NULL, 'dba', workspaces => '[1]')", "22023"),
        ("SELECT lifecycle.request_erasure('tenant', (SELECT id::text FROM app.workspaces LIMIT 1), NULL, 'dba', workspaces => '{}')", "22023"),
        ("SELECT lifecycle.request_export('user', '999999', NULL, 'dba')", "LC033"),
        ("SELECT lifecycle.request_purge('user', '1', NULL, 'dba')", "LC038"),
        ("SELECT lifecycle.approve(NULL, 'x')", "22004"),
        ("SELECT lifecycle.approve(gen_random_uuid(), 'x')", "LC035"),
        ("SELECT lifecycle.reject(gen_random_uuid(), 'x', NULL)", "22004"),
        ("SELECT lifecycle.cancel(gen_random_uuid(), 'x')", "LC035"),
        ("SELECT lifecycle.run_job(gen_random_uuid())", "LC035"),
        ("SELECT lifecycle.run_due_jobs(0)", "22023"),
        ("SELECT lifecycle.claim_job(NULL)", "22004"),
        ("SELECT lifecycle.claim_job('w', '-1 minute')", "22023"),
        ("SELECT lifecycle.subject_state('robot', '1')", "LC032"),
        ("SELECT lifecycle.subject_state('user', NULL)", "22004"),
        ("SELECT lifecycle.confirm_step(-1, 'x')", "22023"),
        ("SELECT lifecycle.fail_job(gen_random_uuid(), 'w', 'boom')", "LC035"),
        ("INSERT INTO lifecycle.jobs (job_type, target_type, target_id, requested_by, status, due_at) \
          VALUES ('erase', 'user', '1', 'x', 'completed', now())", "LC030"),
    ];
    for (sql, state) in cases {
        expect_sqlstate(c.query(*sql, &[]).await, state, sql);
    }
    // An export: one per subject per 24 hours; it is not run by the engine.
    let e: Uuid = one(
        &c,
        &format!("SELECT lifecycle.request_export('user', '{uid}', NULL, 'user:{uid}')"),
    )
    .await;
    expect_sqlstate(
        c.query(
            &format!("SELECT lifecycle.request_export('user', '{uid}', NULL, 'user:{uid}')"),
            &[],
        )
        .await,
        "LC042",
        "second export",
    );
    expect_sqlstate(
        c.query("SELECT lifecycle.run_job($1)", &[&e]).await,
        "LC030",
        "run an export",
    );
    let claimed: Value = one(
        &c,
        "SELECT lifecycle.claim_job('exporter', job_types => ARRAY['export'])",
    )
    .await;
    assert_eq!(claimed["id"], e.to_string());
    expect_sqlstate(
        c.query("SELECT lifecycle.complete_job($1, 'someone-else')", &[&e])
            .await,
        "LC039",
        "wrong worker",
    );
    exec(
        &c,
        &format!(
            "SELECT lifecycle.complete_job('{e}', 'exporter', '{{\"bundle\": {{\"key\": \"exports/x.zip\", \"size\": 1}}}}')"
        ),
    )
    .await;
    assert_eq!(job(&c, e).await["status"], "completed");
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn crm_schema_customer_erasure() {
    let (db, c) = crm("erasure_crm", 12).await;
    let acct = text(&c, "SELECT \"CRM\".seed_account(7)::text").await;
    let replies_by_others = count(
        &c,
        &format!(
            "SELECT 1 FROM \"CRM\".notes r JOIN \"CRM\".notes n ON r.parent_id = n.id \
          WHERE n.author_id = '{acct}' AND r.author_id <> '{acct}'"
        ),
    )
    .await;
    assert!(
        replies_by_others > 0,
        "fixture: others reply to the account's notes"
    );
    let reply_ids = text(
        &c,
        &format!(
            "SELECT array_agg(r.id)::text FROM \"CRM\".notes r JOIN \"CRM\".notes n ON r.parent_id = n.id \
              WHERE n.author_id = '{acct}' AND r.author_id <> '{acct}'"
        ),
    )
    .await;
    let receipts = count(
        &c,
        &format!("SELECT 1 FROM billing_ops.receipts WHERE account_id = '{acct}'"),
    )
    .await;
    let id = request_now(&c, "customer", &acct, "dpo@crm.example").await;
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    let j = job(&c, id).await;
    assert!(j["result"].is_object(), "{j}");
    assert_eq!(j["result"]["verification"]["ok"], true);
    for (table, col) in [
        ("contact_channels", "account_id"),
        ("channel_verifications", "account_id"),
        ("drafts", "account_id"),
        ("notes", "author_id"),
        ("memberships", "account_id"),
    ] {
        assert_eq!(
            count(
                &c,
                &format!("SELECT 1 FROM \"CRM\".{table} WHERE {col} = '{acct}'")
            )
            .await,
            0,
            "{table}"
        );
    }
    // Replies by others stay, detached from the removed notes.
    let detached = count(
        &c,
        &format!("SELECT 1 FROM \"CRM\".notes WHERE id = ANY('{reply_ids}'::bigint[]) AND parent_id IS NULL"),
    )
    .await;
    assert_eq!(detached, replies_by_others);
    // Every partition of events is anonymized.
    assert_eq!(count(&c, &format!("SELECT 1 FROM \"CRM\".events WHERE account_id = '{acct}' AND (ip IS NOT NULL OR payload <> '{{}}')")).await, 0);
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM billing_ops.receipts WHERE account_id = '{acct}'")
        )
        .await,
        receipts
    );
    let row = c
        .query_one(
            "SELECT full_name, email, phone FROM \"CRM\".\"Accounts\" WHERE id = $1::text::uuid",
            &[&acct],
        )
        .await
        .unwrap();
    assert_eq!(
        row.get::<_, String>(1),
        format!("deleted-{acct}@deleted.local")
    );
    assert_eq!(row.get::<_, Option<String>>(2), None);

    // The only admin of globex: refused, then erased with the org.
    let admin = text(&c, "SELECT \"CRM\".seed_account(2)::text").await;
    expect_sqlstate(
        c.query(
            "SELECT lifecycle.request_erasure('customer', $1, NULL, 'dpo')",
            &[&admin],
        )
        .await,
        "LC034",
        "last admin",
    );
    let id2: Uuid = c
        .query_one("SELECT lifecycle.request_erasure('customer', $1, NULL, 'dpo', cooling_off => '0', requires_approval => false, workspaces => '{\"globex\": \"erase\"}')", &[&admin])
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .get(0);
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    let j2 = job(&c, id2).await;
    assert!(j2["result"].is_object(), "{j2}");
    for table in [
        "notes",
        "drafts",
        "events",
        "\"SupportCases\"",
        "memberships",
    ] {
        assert_eq!(
            count(
                &c,
                &format!("SELECT 1 FROM \"CRM\".{table} WHERE org = 'globex'")
            )
            .await,
            0,
            "{table} of globex"
        );
    }
    assert!(verify_audit_log(&c).await.0);
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn run_due_jobs_each_commits_every_job_on_its_own() {
    let (db, c) = demo("erasure_each", 12).await;
    let mut ids = Vec::new();
    for uid in non_admins(&c, 3).await {
        ids.push(request_now(&c, "user", &uid.to_string(), "dba").await);
    }
    exec(&c, "CALL lifecycle.run_due_jobs_each()").await;
    let mut xmins = Vec::new();
    for id in &ids {
        let j = job(&c, *id).await;
        assert!(j["result"].is_object(), "{j}");
        xmins.push(
            text(
                &c,
                &format!("SELECT xmin::text FROM lifecycle.jobs WHERE id = '{id}'"),
            )
            .await,
        );
    }
    xmins.sort();
    xmins.dedup();
    assert_eq!(
        xmins.len(),
        3,
        "each job was finished by a transaction of its own"
    );
    expect_sqlstate(
        c.execute("CALL lifecycle.run_due_jobs_each(0)", &[]).await,
        "22023",
        "max_jobs 0",
    );
    db.cleanup().await.unwrap();
}

/// The preview and the run share one plan: on the demo and on the CRM
/// schema, for a user and for a workspace, what the preview counts is what
/// the receipt reports.
#[tokio::test]
async fn preview_agrees_with_the_erasure_on_demo_and_crm() {
    async fn check(c: &Client, target_type: &str, id: &str) {
        let p: Value = c
            .query_one(
                "SELECT lifecycle.preview_erasure($1, $2)",
                &[&target_type, &id],
            )
            .await
            .unwrap_or_else(|e| panic!("preview {target_type} {id}: {}", describe(&e)))
            .get(0);
        assert_eq!(p["would_run"], true, "{p}");
        let job_id = request_now(c, target_type, id, "dpo").await;
        assert_eq!(one::<i32>(c, "SELECT lifecycle.run_due_jobs()").await, 1);
        let j = job(c, job_id).await;
        assert_eq!(j["result"]["verification"]["ok"], true, "{j}");
        let steps = count(
            c,
            &format!("SELECT 1 FROM lifecycle.external_steps WHERE job_id = '{job_id}'"),
        )
        .await;
        lifecycle_tests::assert_preview_matches_receipt(&p, &j["result"], steps);
    }

    let (db, c) = demo("erasure_preview_demo", 20).await;
    let uid = ordinary_user(&c, &[]).await;
    check(&c, "user", &uid.to_string()).await;
    let ws = text(
        &c,
        "SELECT id::text FROM app.workspaces ORDER BY id DESC LIMIT 1",
    )
    .await;
    check(&c, "tenant", &ws).await;
    db.cleanup().await.unwrap();

    let (db, c) = crm("erasure_preview_crm", 12).await;
    let acct = text(&c, "SELECT \"CRM\".seed_account(7)::text").await;
    check(&c, "customer", &acct).await;
    check(&c, "tenant", "initech").await;
    db.cleanup().await.unwrap();
}

/// `lifecycle.is_member`: a live membership in the tenant, compared in the
/// columns' own types; ids the columns cannot hold belong to nobody, and
/// only the roles granted it may ask.
#[tokio::test]
async fn is_member_answers_from_the_membership_tables() {
    let (mut db, c) = demo("is_member", 12).await;
    let (user, ws): (i64, String) = {
        let row = c
            .query_one(
                "SELECT user_id, workspace_id::text FROM app.memberships ORDER BY 1, 2 LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let other: String = text(
        &c,
        &format!(
            "SELECT id::text FROM app.workspaces w WHERE NOT EXISTS \
               (SELECT 1 FROM app.memberships m WHERE m.workspace_id = w.id AND m.user_id = {user}) LIMIT 1"
        ),
    )
    .await;
    let ask = |s: String, t: String| {
        let c = &c;
        async move {
            one::<bool>(
                c,
                &format!("SELECT lifecycle.is_member('user', '{s}', '{t}')"),
            )
            .await
        }
    };
    assert!(ask(user.to_string(), ws.clone()).await);
    assert!(
        ask(user.to_string(), ws.to_uppercase()).await,
        "uuid in upper case"
    );
    assert!(!ask(user.to_string(), other.clone()).await);
    assert!(!ask("not-a-number".into(), ws.clone()).await);
    assert!(!ask(user.to_string(), "not-a-uuid".into()).await);
    assert!(
        !one::<bool>(
            &c,
            &format!("SELECT lifecycle.is_member('nobody', '{user}', '{ws}')")
        )
        .await
    );
    // Not executable by PUBLIC.
    let role = db.create_role("member_check").await.unwrap();
    let r = db.connect(&role).await.unwrap();
    expect_sqlstate(
        r.query_one(
            &format!("SELECT lifecycle.is_member('user', '{user}', '{ws}')"),
            &[],
        )
        .await,
        "42501",
        "is_member by a role without the grant",
    );
    db.cleanup().await.unwrap();
}

/// A workspace decision counts only while the subject is still its last
/// admin: a workspace that gained another admin during the cooling-off is
/// neither erased nor handed over when the job runs.
#[tokio::test]
async fn a_decision_for_a_workspace_that_gained_an_admin_is_not_carried_out() {
    let (db, c) = demo("erasure_stale_decision", 12).await;
    let (ws, owner): (String, i64) = {
        let r = c
            .query_one("SELECT workspace_id::text, user_id FROM app.memberships WHERE role = 'owner' ORDER BY workspace_id LIMIT 1", &[])
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    exec(&c, &format!("UPDATE app.memberships SET role = 'member' WHERE workspace_id = '{ws}' AND user_id <> {owner}")).await;
    let member: i64 = one(&c, &format!("SELECT user_id FROM app.memberships WHERE workspace_id = '{ws}' AND user_id <> {owner} ORDER BY user_id LIMIT 1")).await;
    let posts = count(
        &c,
        &format!("SELECT 1 FROM app.posts WHERE workspace_id = '{ws}'"),
    )
    .await;
    let id: Uuid = c
        .query_one("SELECT lifecycle.request_erasure('user', $1, NULL, 'dba', cooling_off => '0', requires_approval => false, \
                                                     workspaces => jsonb_build_object($2::text, 'erase'))",
                   &[&owner.to_string(), &ws])
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .get(0);
    // During the cooling-off, a member becomes admin.
    exec(&c, &format!("UPDATE app.memberships SET role = 'admin' WHERE workspace_id = '{ws}' AND user_id = {member}")).await;
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    let j = job(&c, id).await;
    assert_eq!(j["status"], "completed", "{j}");
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM app.workspaces WHERE id = '{ws}'")
        )
        .await,
        1,
        "the workspace stays"
    );
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM app.posts WHERE workspace_id = '{ws}'")
        )
        .await,
        posts,
        "its content stays"
    );
    assert_eq!(text(&c, &format!("SELECT role FROM app.memberships WHERE workspace_id = '{ws}' AND user_id = {member}")).await, "admin");
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM app.memberships WHERE user_id = {owner}")
        )
        .await,
        0,
        "the subject's memberships end"
    );
    db.cleanup().await.unwrap();
}
