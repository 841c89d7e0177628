//! The erasure engine on a schema shaped like a project tracker
//! (tests/fixtures/projects.sql, after Plane and Taiga), registered as a DBA
//! would (tests/fixtures/projects_register.sql): uuid keys and real foreign
//! keys (CASCADE, SET NULL, NO ACTION), quoted mixed-case names, an integer
//! workspace role with former members marked inactive, project roles as
//! text[], the workspace reached through parents, attachments owned through
//! the issue's creator, invitations addressed to an e-mail address, soft
//! delete with timestamptz, and fixed people with similar names in several
//! scripts.

use lifecycle_tests::{
    assert_preview_matches_receipt, confirm_steps, count, describe, exec, expect_sqlstate,
    external_steps, guards_not_ok, job, mentions_of, one, preview_erasure, request_erasure_now,
    rows_by_action, text, verify_audit_log, Role, TestDb,
};
use serde_json::{json, Value};
use tokio_postgres::Client;
use uuid::Uuid;

const SCHEMA: &str = include_str!("../fixtures/projects.sql");
const DATA: &str = include_str!("../fixtures/projects_data.sql");
const REGISTER: &str = include_str!("../fixtures/projects_register.sql");

// The fixed rows of projects_data.sql.
const ERIN: &str = "a0000000-0000-4000-8000-000000000001";
const ZOE: &str = "a0000000-0000-4000-8000-000000000002";
const YAMADA: &str = "a0000000-0000-4000-8000-000000000003";
const OLAF: &str = "a0000000-0000-4000-8000-000000000004";
const ERSOVA: &str = "a0000000-0000-4000-8000-000000000005";
const LUMEN: &str = "b0000000-0000-4000-8000-000000000001";
const KITSUNE: &str = "b0000000-0000-4000-8000-000000000002";
const WEB: &str = "c0000000-0000-4000-8000-000000000001";
const HIRE: &str = "c0000000-0000-4000-8000-000000000002";
const WEB_1: &str = "d0000000-0000-4000-8000-000000000001";
const WEB_2: &str = "d0000000-0000-4000-8000-000000000002";
const WEB_3: &str = "d0000000-0000-4000-8000-000000000003";
const HIRE_1: &str = "d0000000-0000-4000-8000-000000000004";
const WEB_4: &str = "d0000000-0000-4000-8000-000000000005";
const ISSUE_W1: &str = "d0000000-0000-4000-8000-000000000006";
const COMMENT_ZOE_ON_WEB_1: &str = "e0000000-0000-4000-8000-000000000001";
const COMMENT_ERIN_ON_WEB_1: &str = "e0000000-0000-4000-8000-000000000002";
const COMMENT_YAMADA_ON_WEB_2: &str = "e0000000-0000-4000-8000-000000000003";
const COMMENT_ERSOVA_ON_WEB_2: &str = "e0000000-0000-4000-8000-000000000005";
const CV_OF_ERIN: &str = "f0000000-0000-4000-8000-000000000001";
const PORTFOLIO_OF_ERIN: &str = "f0000000-0000-4000-8000-000000000002";
const RESUME_OF_YAMADA: &str = "f0000000-0000-4000-8000-000000000003";
const TOKEN_OF_ERIN: &str = "70000000-0000-4000-8000-000000000001";
const INVITE_FROM_ERIN: &str = "a3000000-0000-4000-8000-000000000001";

/// A database with the fixture, its data (3 workspaces of 20 people, 10
/// issues each, plus the fixed rows) and the data map.
async fn projects(prefix: &str) -> (TestDb, Client) {
    let db = TestDb::create(prefix).await.expect("test database");
    let c = db.connect(&Role::Superuser).await.expect("session");
    exec(&c, SCHEMA).await;
    exec(&c, DATA).await;
    exec(&c, "SELECT \"PM\".seed(3, 20, 10)").await;
    exec(&c, REGISTER).await;
    (db, c)
}

/// An erasure without cooling-off or approval; returns the job id.
async fn request(c: &Client, target_type: &str, id: &str, workspaces: Option<&Value>) -> Uuid {
    request_erasure_now(c, target_type, id, "dpo@projects.example", workspaces).await
}

/// Runs the due jobs; `n` of them must run.
async fn run_due(c: &Client, n: i32) {
    assert_eq!(
        one::<i32>(c, "SELECT lifecycle.run_due_jobs()").await,
        n,
        "jobs run"
    );
}

/// The receipt of a job whose database part is done, verified.
async fn receipt(c: &Client, id: Uuid) -> Value {
    let j = job(c, id).await;
    assert!(j["result"].is_object(), "the job ran: {j}");
    assert_eq!(j["result"]["verification"]["ok"], true, "verification: {j}");
    j["result"].clone()
}

fn transfer(workspace: &str, to: &str) -> Value {
    json!({ workspace: { "transfer_to": to } })
}

fn erase(workspace: &str) -> Value {
    json!({ workspace: "erase" })
}

/// Rows of the fixture that belong to `user`, table by table (by the
/// column that names them).
async fn owned(c: &Client, user: &str) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for (table, col) in [
        ("\"UserProfile\"", "user_id"),
        ("workspace_members", "member_id"),
        ("project_members", "member_id"),
        ("projects", "created_by_id"),
        ("issues", "created_by"),
        ("issues", "assignee_id"),
        ("issue_subscribers", "\"subscriberId\""),
        ("issue_comments", "actor_id"),
        ("issue_activities", "actor_id"),
        ("notifications", "receiver_id"),
        ("notifications", "triggered_by_id"),
        ("api_tokens", "user_id"),
        ("api_activity_logs", "created_by_id"),
        ("invoices", "billed_to"),
    ] {
        let n = count(
            c,
            &format!("SELECT 1 FROM \"PM\".{table} WHERE {col} = '{user}'"),
        )
        .await;
        out.push((format!("{table}.{col}"), n));
    }
    out
}

fn mentioned_in(receipt: &Value, table: &str) -> u64 {
    mentions_of(receipt)
        .iter()
        .filter(|((t, _), _)| t == table)
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0)
}

/// A statement that must be refused as touching a held row (LC001).
async fn refused_by_hold(c: &Client, sql: &str) {
    expect_sqlstate(c.batch_execute(sql).await, "LC001", sql);
}

// ----- registration ------------------------------------------------------------

#[tokio::test]
async fn registration_maps_every_table_and_installs_its_guards() {
    let (db, c) = projects("projects_register").await;
    assert_eq!(
        count(
            &c,
            "SELECT 1 FROM lifecycle.data_map WHERE schema_name = 'PM'"
        )
        .await,
        count(
            &c,
            "SELECT 1 FROM pg_class WHERE relnamespace = '\"PM\"'::regnamespace AND relkind = 'r'"
        )
        .await,
        "every table of the schema is in the data map"
    );
    assert_eq!(
        guards_not_ok(&c).await,
        Vec::<String>::new(),
        "guard_status"
    );
    // Paths through parents, as the data map records them.
    for (table, scope, column, parent) in [
        ("\"PM\".issues", "tenant", "project_id", "\"PM\".projects"),
        (
            "\"PM\".api_activity_logs",
            "tenant",
            "token_id",
            "\"PM\".api_tokens",
        ),
        (
            "\"PM\".issue_attachments",
            "user",
            "issue_id",
            "\"PM\".issues",
        ),
        (
            "\"PM\".workspace_member_invites",
            "user",
            "email",
            "\"PM\".users",
        ),
    ] {
        assert_eq!(
            count(
                &c,
                &format!(
                    "SELECT 1 FROM lifecycle.scope_columns WHERE relation = '{table}'::regclass \
                        AND scope_type = '{scope}' AND column_name = '{column}' \
                        AND via_parent = '{parent}'::regclass"
                )
            )
            .await,
            1,
            "{table}.{column} leads to the {scope} through {parent}"
        );
    }
    // Admins: role 20 of workspace_members, 'admin' among the project roles.
    assert_eq!(
        text(
            &c,
            "SELECT string_agg(relation::text || ' ' || role_column || ' ' || role_kind || ' ' \
                               || admin_roles::text, '; ' ORDER BY relation::text) \
               FROM lifecycle.data_map WHERE role_column IS NOT NULL"
        )
        .await,
        "\"PM\".project_members roles list {admin}; \"PM\".workspace_members role exact {20}"
    );
    // Only the preference column is left out, on purpose.
    assert_eq!(
        text(
            &c,
            "SELECT coalesce(string_agg(relation::text || '.' || array_to_string(columns, ','), ' '), '') \
               FROM lifecycle.unmapped_references()"
        )
        .await,
        "\"PM\".\"UserProfile\".lastWorkspaceId"
    );
    // Registering again changes nothing.
    let events = count(
        &c,
        "SELECT 1 FROM lifecycle.audit_log WHERE event_type LIKE 'data_map.%'",
    )
    .await;
    exec(&c, REGISTER).await;
    assert_eq!(
        count(
            &c,
            "SELECT 1 FROM lifecycle.audit_log WHERE event_type LIKE 'data_map.%'"
        )
        .await,
        events,
        "a second registration is a no-op"
    );
    assert!(verify_audit_log(&c).await.0);
    db.cleanup().await.unwrap();
}

// ----- erasure of one person ---------------------------------------------------

#[tokio::test]
async fn erasing_erin_leaves_nothing_personal() {
    let (db, c) = projects("projects_erin").await;
    // Besides the fixture's rows: a comment of hers whose JSON and HTML
    // carry her name and address, a comment she had deleted in the product,
    // and an event the application recorded.
    exec(
        &c,
        &format!(
            "INSERT INTO \"PM\".issue_comments (id, issue_id, actor_id, comment_json, comment_html, created_at, deleted_at) VALUES \
               ('e1000000-0000-4000-8000-000000000001', '{WEB_2}', '{ERIN}', \
                '{{\"mentions\": [\"{ZOE}\"], \"text\": \"Erin Ersatz here: write to erin@example.com\", \"author\": {{\"name\": \"Erin Ersatz\"}}}}', \
                '<p>Erin Ersatz here: write to <a href=\"mailto:erin@example.com\">erin@example.com</a></p>', now(), NULL), \
               ('e1000000-0000-4000-8000-000000000002', '{HIRE_1}', '{ERIN}', \
                '{{\"mentions\": [], \"text\": \"never mind\"}}', '<p>never mind</p>', now(), now());
             SELECT lifecycle.record_event('account.login', 'user:{ERIN}', 'user', '{ERIN}', '{LUMEN}', \
                                          '{{\"device\": \"laptop\"}}', '203.0.113.7', 'Safari', NULL);"
        ),
    )
    .await;
    let zoe_before = owned(&c, ZOE).await;
    let zoe_to_erin = count(
        &c,
        &format!(
            "SELECT 1 FROM \"PM\".notifications WHERE triggered_by_id = '{ZOE}' AND receiver_id = '{ERIN}'"
        ),
    )
    .await;
    let ersova_before = owned(&c, ERSOVA).await;
    let invoices = count(
        &c,
        &format!("SELECT 1 FROM \"PM\".invoices WHERE billed_to = '{ERIN}'"),
    )
    .await;
    assert!(invoices > 0, "fixture: invoices billed to Erin");
    let logs = count(
        &c,
        &format!("SELECT 1 FROM \"PM\".api_activity_logs WHERE created_by_id = '{ERIN}'"),
    )
    .await;
    assert!(logs > 0, "fixture: Erin's API requests");
    let others_text = text(
        &c,
        &format!(
            "SELECT string_agg(name || description_html, '|' ORDER BY id) FROM \"PM\".issues \
              WHERE created_by <> '{ERIN}'"
        ),
    )
    .await;

    // She is the only admin of lumen: it goes to Zoë.
    let id = request(&c, "user", ERIN, Some(&transfer(LUMEN, ZOE))).await;
    assert_eq!(
        text(
            &c,
            &format!("SELECT lifecycle.subject_state('user', '{ERIN}')")
        )
        .await,
        "pending_deletion"
    );
    run_due(&c, 1).await;
    let r = receipt(&c, id).await;

    // Deleted, as the data map says.
    for (table, cond) in [
        ("\"UserProfile\"", format!("user_id = '{ERIN}'")),
        ("workspace_members", format!("member_id = '{ERIN}'")),
        ("project_members", format!("member_id = '{ERIN}'")),
        ("issue_subscribers", format!("\"subscriberId\" = '{ERIN}'")),
        ("notifications", format!("receiver_id = '{ERIN}'")),
        (
            "workspace_member_invites",
            "email = 'erin@example.com'".to_string(),
        ),
        // The files of her issues, the issue she had deleted and what hung off it.
        (
            "issue_attachments",
            format!("issue_id IN (SELECT id FROM \"PM\".issues WHERE created_by = '{ERIN}')"),
        ),
        ("issue_attachments", format!("id = '{CV_OF_ERIN}'")),
        ("issues", format!("id = '{WEB_3}'")),
        ("issue_activities", format!("issue_id = '{WEB_3}'")),
        (
            "issue_comments",
            "id = 'e1000000-0000-4000-8000-000000000002'".to_string(),
        ),
    ] {
        assert_eq!(
            count(&c, &format!("SELECT 1 FROM \"PM\".{table} WHERE {cond}")).await,
            0,
            "{table} WHERE {cond}"
        );
    }
    // Her API token says nothing about her any more and cannot be used.
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM \"PM\".api_tokens WHERE user_id = '{ERIN}' \
                  AND (token_hash = encode(sha256(convert_to('pm-token:erin', 'UTF8')), 'hex') \
                       OR label ILIKE '%erin%' OR description ILIKE '%ersatz%' OR expired_at IS NULL)"
            )
        )
        .await,
        0,
        "Erin's API token"
    );

    // The account: anonymized in place, unique values derived from the id.
    let u = c
        .query_one(
            "SELECT email, username, display_name, first_name, last_name, avatar_url, mobile_number, \
                    last_login_ip::text, last_login_uagent, deleted_at IS NOT NULL \
               FROM \"PM\".users WHERE id = $1::text::uuid",
            &[&ERIN],
        )
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(
        u.get::<_, String>(0),
        format!("deleted-{ERIN}@deleted.local")
    );
    let username: String = u.get(1);
    assert!(
        username != "erin" && username.contains(ERIN),
        "unique username: {username}"
    );
    assert_eq!(u.get::<_, String>(2), "Deleted User");
    assert_eq!(u.get::<_, String>(3), "");
    assert_eq!(u.get::<_, String>(4), "");
    for i in 5..9 {
        assert_eq!(u.get::<_, Option<String>>(i), None, "column {i} cleared");
    }
    assert!(u.get::<_, bool>(9), "deleted_at set");
    assert_eq!(
        count(
            &c,
            "SELECT username FROM \"PM\".users GROUP BY username HAVING count(*) > 1"
        )
        .await,
        0
    );

    // Stored objects: the avatar and the file of her issue, deleted outside
    // the database; the job completes once both are confirmed.
    let steps = text(
        &c,
        &format!(
            "SELECT string_agg(relation::text || '.' || column_name || ' ' || reference, ' | ' ORDER BY reference) \
               FROM lifecycle.external_steps WHERE job_id = '{id}'"
        ),
    )
    .await;
    assert_eq!(
        steps,
        format!(
            "\"PM\".issue_attachments.asset {LUMEN}/0e11e11e0000400080000000000000a1-erin-ersatz-cv.pdf | \
             \"PM\".users.avatar_url https://assets.example.com/avatars/{ERIN}/erin-ersatz.png"
        )
    );
    assert_eq!(job(&c, id).await["status"], "processing");
    confirm_steps(&c, id).await;
    assert_eq!(job(&c, id).await["status"], "completed");

    // Kept rows of hers: still hers, nothing of her left in their text.
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM \"PM\".issues WHERE created_by = '{ERIN}'")
        )
        .await,
        3,
        "WEB-1, WEB-4 and the issue in workspace 1 stay"
    );
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM \"PM\".issue_comments WHERE actor_id = '{ERIN}' \
                  AND id IN ('{COMMENT_ERIN_ON_WEB_1}', 'e1000000-0000-4000-8000-000000000001')"
            )
        )
        .await,
        2,
        "her comments stay"
    );
    for (table, cols, cond) in [
        (
            "issues",
            "name || ' ' || description_html",
            format!("created_by = '{ERIN}'"),
        ),
        (
            "issue_comments",
            "comment_json::text || ' ' || comment_html",
            format!("actor_id = '{ERIN}'"),
        ),
        (
            "issue_activities",
            "coalesce(new_value, '') || ' ' || coalesce(comment, '')",
            format!("actor_id = '{ERIN}'"),
        ),
        // Copies of her name in other people's rows, redacted as the data
        // map asks (redact_mentions).
        (
            "issue_activities",
            "coalesce(new_value, '') || ' ' || coalesce(comment, '')",
            "TRUE".to_string(),
        ),
        (
            "notifications",
            "title || ' ' || data::text",
            "TRUE".to_string(),
        ),
        (
            "workspace_member_invites",
            "coalesce(message, '') || ' ' || email",
            "TRUE".to_string(),
        ),
    ] {
        let left = count(
            &c,
            &format!(
                "SELECT 1 FROM \"PM\".{table} WHERE {cond} \
                  AND ({cols}) ~* '(Erin Ersatz($|[^[:alpha:]])|erin@example\\.com|\\+49 30 1234 5678)'"
            ),
        )
        .await;
        assert_eq!(left, 0, "{table} ({cond}) still names Erin");
    }
    let mine = text(
        &c,
        "SELECT comment_json::text || ' ' || comment_html FROM \"PM\".issue_comments \
          WHERE id = 'e1000000-0000-4000-8000-000000000001'",
    )
    .await;
    assert!(
        mine.contains("[redacted]") && mine.contains(ZOE),
        "her JSON comment redacted, the mention of Zoë kept: {mine}"
    );
    assert_eq!(
        text(
            &c,
            &format!("SELECT message FROM \"PM\".workspace_member_invites WHERE id = '{INVITE_FROM_ERIN}'")
        )
        .await,
        "Join us! – [redacted]"
    );

    // Other people's issues and projects that name her: counted, unchanged.
    assert!(mentioned_in(&r, "\"PM\".issues") >= 1, "mentions: {r}");
    assert!(mentioned_in(&r, "\"PM\".projects") >= 1, "mentions: {r}");
    assert_eq!(
        text(
            &c,
            &format!(
                "SELECT string_agg(name || description_html, '|' ORDER BY id) FROM \"PM\".issues \
                  WHERE created_by <> '{ERIN}'"
            )
        )
        .await,
        others_text,
        "other people's issues are theirs"
    );

    // Retained: invoices (7 years) as they were, the API log (90 days) without IP and agent.
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM \"PM\".invoices WHERE billed_to = '{ERIN}' \
                  AND billing_name = 'Erin Ersatz' AND billing_email = 'erin@example.com'"
            )
        )
        .await,
        invoices
    );
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM \"PM\".api_activity_logs WHERE created_by_id = '{ERIN}' \
                  AND ip_address IS NULL AND user_agent IS NULL"
            )
        )
        .await,
        logs
    );
    for (table, rows, period) in [
        ("\"PM\".invoices", invoices, "7 years"),
        ("\"PM\".api_activity_logs", logs, "90 days"),
    ] {
        assert_eq!(
            count(
                &c,
                &format!(
                    "SELECT 1 FROM lifecycle.retention WHERE job_id = '{id}' \
                      AND relation = '{table}'::regclass AND target_type = 'user' \
                      AND target_id = '{ERIN}' AND rows = {rows} AND legal_basis <> '' \
                      AND retain_until BETWEEN now() + interval '{period}' - interval '1 day' \
                                           AND now() + interval '{period}'"
                )
            )
            .await,
            1,
            "retention record of {table}: {}",
            r["retained"]
        );
    }

    // Lumen went to Zoë; the people with similar names are untouched.
    assert_eq!(
        one::<i32>(
            &c,
            &format!(
                "SELECT role FROM \"PM\".workspace_members \
                  WHERE workspace_id = '{LUMEN}' AND member_id = '{ZOE}' AND is_active"
            )
        )
        .await,
        20
    );
    assert_eq!(r["workspaces"][0]["decision"], "transferred", "{r}");
    assert_eq!(
        owned(&c, ERSOVA).await,
        ersova_before,
        "Erin Ersatzová keeps everything"
    );
    assert_eq!(
        text(
            &c,
            &format!(
                "SELECT display_name || ' ' || email || ' ' || comment_html FROM \"PM\".users u, \"PM\".issue_comments c \
                  WHERE u.id = '{ERSOVA}' AND c.id = '{COMMENT_ERSOVA_ON_WEB_2}'"
            )
        )
        .await,
        "Erin Ersatzová erin.ersatzova@example.cz <p>Erin Ersatzová here, not the same Erin.</p>"
    );
    // Zoë keeps her rows, except the notifications Erin received from her.
    let mut zoe_expected = zoe_before.clone();
    for (what, n) in zoe_expected.iter_mut() {
        if what == "notifications.triggered_by_id" {
            *n -= zoe_to_erin;
        }
    }
    assert_eq!(owned(&c, ZOE).await, zoe_expected, "Zoë keeps her rows");

    // The audit log: her events made unreadable, the chain intact.
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM lifecycle.audit_log WHERE subject_id = '{ERIN}' \
                  AND actor IS NULL AND ip IS NULL AND details IS NULL \
                  AND event_type = 'account.login'"
            )
        )
        .await,
        1,
        "the login event stays, unreadable"
    );
    assert!(verify_audit_log(&c).await.0);
    assert_eq!(
        text(
            &c,
            &format!("SELECT lifecycle.subject_state('user', '{ERIN}')")
        )
        .await,
        "erased"
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn erins_api_token_is_deleted_and_its_log_retained() {
    // projects.sql: api_tokens DELETE; api_activity_logs RETAIN 90 days, the
    // log handled before its token is deleted (token_id is SET NULL).
    let (db, c) = projects("projects_token").await;
    let id = request(&c, "user", ERIN, Some(&transfer(LUMEN, ZOE))).await;
    run_due(&c, 1).await;
    receipt(&c, id).await;
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM \"PM\".api_tokens WHERE id = '{TOKEN_OF_ERIN}'")
        )
        .await,
        0,
        "her API token is deleted"
    );
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM \"PM\".api_activity_logs WHERE created_by_id = '{ERIN}' \
                  AND ip_address IS NULL AND user_agent IS NULL"
            )
        )
        .await,
        2,
        "its log is retained"
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
#[ignore = "engine limitation: retention runs from the erasure, not from issued_at; invoices past 7 years are kept 7 more"]
async fn invoices_past_their_retention_period_are_not_kept() {
    // projects.sql: invoices RETAIN 7 years after issued_at. Some of Erin's
    // are older than that: nothing allows keeping them, with her name and
    // address, for another 7 years.
    let (db, c) = projects("projects_old_invoices").await;
    let old = count(
        &c,
        &format!(
            "SELECT 1 FROM \"PM\".invoices WHERE billed_to = '{ERIN}' \
              AND issued_at < now() - interval '7 years'"
        ),
    )
    .await;
    assert!(old > 0, "fixture: invoices of Erin older than 7 years");
    let id = request(&c, "user", ERIN, Some(&transfer(LUMEN, ZOE))).await;
    run_due(&c, 1).await;
    receipt(&c, id).await;
    assert_eq!(
        count(
            &c,
            "SELECT 1 FROM \"PM\".invoices WHERE billing_name = 'Erin Ersatz' \
              AND issued_at < now() - interval '7 years'"
        )
        .await,
        0,
        "invoices whose 7 years have passed"
    );
    assert!(
        one::<bool>(
            &c,
            &format!(
                "SELECT max(retain_until) <= (SELECT max(issued_at) FROM \"PM\".invoices \
                                                WHERE billing_name = 'Erin Ersatz') + interval '7 years' + interval '1 day' \
                   FROM lifecycle.retention WHERE job_id = '{id}' AND relation = '\"PM\".invoices'::regclass"
            )
        )
        .await,
        "retained until 7 years after the newest invoice was issued"
    );
    db.cleanup().await.unwrap();
}

// ----- the only admin of a workspace -------------------------------------------

#[tokio::test]
async fn the_only_admin_of_lumen_needs_a_decision() {
    let (db, c) = projects("projects_last_admin").await;
    let err = c
        .query_one(
            "SELECT lifecycle.request_erasure('user', $1, NULL, 'dpo@projects.example')",
            &[&ERIN],
        )
        .await
        .expect_err("the only admin of lumen");
    assert_eq!(
        lifecycle_tests::sqlstate(&err).as_deref(),
        Some("LC034"),
        "{}",
        describe(&err)
    );
    let detail = lifecycle_tests::detail(&err)
        .unwrap_or_default()
        .to_string();
    assert!(
        detail.contains(LUMEN) && !detail.contains(KITSUNE),
        "DETAIL names lumen, and not kitsune (two admins): {detail}"
    );
    let p = preview_erasure(&c, "user", ERIN, None).await;
    assert_eq!(p["last_admin_workspaces"], json!([LUMEN]), "{p}");
    assert_eq!(p["would_run"], false);
    // Zoë shares kitsune with 山田太郎: no decision needed.
    assert_eq!(
        preview_erasure(&c, "user", ZOE, None).await["last_admin_workspaces"],
        json!([])
    );
    // Nothing was requested.
    assert_eq!(count(&c, "SELECT 1 FROM lifecycle.jobs").await, 0);
    // A transfer to someone who is not a member of lumen is refused.
    let stranger = text(
        &c,
        &format!(
            "SELECT u.id::text FROM \"PM\".users u WHERE NOT EXISTS \
               (SELECT 1 FROM \"PM\".workspace_members m WHERE m.member_id = u.id AND m.workspace_id = '{LUMEN}') \
             ORDER BY u.id LIMIT 1"
        ),
    )
    .await;
    expect_sqlstate(
        c.query_one(
            "SELECT lifecycle.request_erasure('user', $1, NULL, 'dpo', workspaces => $2)",
            &[&ERIN, &transfer(LUMEN, &stranger)],
        )
        .await,
        "22023",
        "transfer to a stranger",
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_former_admin_who_left_does_not_count() {
    let (db, c) = projects("projects_former_admin").await;
    // Make Zoë a project admin of WEB too: then only workspace_members can
    // make Erin the last admin of lumen, where Olaf Quist (role 20) left.
    exec(
        &c,
        &format!(
            "UPDATE \"PM\".project_members SET roles = '{{admin,member}}' \
              WHERE project_id = '{WEB}' AND member_id = '{ZOE}'"
        ),
    )
    .await;
    expect_sqlstate(
        c.query_one(
            "SELECT lifecycle.request_erasure('user', $1, NULL, 'dpo@projects.example')",
            &[&ERIN],
        )
        .await,
        "LC034",
        "Erin is the only active admin of lumen",
    );
    assert_eq!(
        preview_erasure(&c, "user", ERIN, None).await["last_admin_workspaces"],
        json!([LUMEN])
    );
    // Nor can lumen be handed to the one who left.
    expect_sqlstate(
        c.query_one(
            "SELECT lifecycle.request_erasure('user', $1, NULL, 'dpo', workspaces => $2)",
            &[&ERIN, &transfer(LUMEN, OLAF)],
        )
        .await,
        "22023",
        "transfer to a member who left",
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn lumen_handed_to_zoe_stays_with_everything_in_it() {
    let (db, c) = projects("projects_transfer").await;
    let issues_of_lumen = format!(
        "SELECT 1 FROM \"PM\".issues i JOIN \"PM\".projects p ON p.id = i.project_id \
          WHERE p.workspace_id = '{LUMEN}'"
    );
    let issues = count(&c, &issues_of_lumen).await;
    let id = request(&c, "user", ERIN, Some(&transfer(LUMEN, ZOE))).await;
    run_due(&c, 1).await;
    let r = receipt(&c, id).await;
    assert_eq!(
        r["workspaces"],
        json!([{ "workspace": LUMEN, "decision": "transferred", "to": ZOE }])
    );
    assert_eq!(
        text(
            &c,
            &format!(
                "SELECT string_agg(member_id::text || ':' || role || ':' || is_active, ' ' ORDER BY member_id) \
                   FROM \"PM\".workspace_members WHERE workspace_id = '{LUMEN}'"
            )
        )
        .await,
        format!("{ZOE}:20:true {YAMADA}:5:true {OLAF}:20:false {ERSOVA}:15:true"),
        "Zoë is lumen's admin; Olaf, who left, is as he was"
    );
    // Zoë takes Erin's project role as well.
    assert_eq!(
        text(
            &c,
            &format!(
                "SELECT roles::text FROM \"PM\".project_members WHERE project_id = '{WEB}' AND member_id = '{ZOE}'"
            )
        )
        .await,
        "{admin}"
    );
    assert_eq!(
        text(
            &c,
            &format!("SELECT name || ' ' || slug FROM \"PM\".\"Workspace\" WHERE id = '{LUMEN}'")
        )
        .await,
        "Lumen Works lumen"
    );
    assert_eq!(
        count(&c, &issues_of_lumen).await,
        issues - 1,
        "only WEB-3 (deleted by Erin earlier) goes"
    );
    // Now Zoë is the one lumen needs a decision from.
    assert_eq!(
        preview_erasure(&c, "user", ZOE, None).await["last_admin_workspaces"],
        json!([LUMEN])
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn lumen_can_be_handed_to_a_member_of_no_project() {
    let (db, c) = projects("projects_transfer_new").await;
    // A new member of lumen, in none of its projects yet.
    let newcomer = text(&c, "SELECT \"PM\".seed_uuid('user', 7)::text").await;
    exec(
        &c,
        &format!(
            "INSERT INTO \"PM\".workspace_members (id, workspace_id, member_id, role, is_active, created_at) \
             VALUES (gen_random_uuid(), '{LUMEN}', '{newcomer}', 15, true, now())"
        ),
    )
    .await;
    // Accepted: the newcomer is a member of lumen.
    let id = request(&c, "user", ERIN, Some(&transfer(LUMEN, &newcomer))).await;
    run_due(&c, 1).await;
    let j = job(&c, id).await;
    assert!(j["result"].is_object(), "the accepted transfer runs: {j}");
    assert_eq!(
        one::<i32>(
            &c,
            &format!(
                "SELECT role FROM \"PM\".workspace_members WHERE workspace_id = '{LUMEN}' AND member_id = '{newcomer}'"
            )
        )
        .await,
        20
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn lumen_erased_with_erin_goes_with_its_content() {
    let (db, c) = projects("projects_erase_ws").await;
    let invoices = count(
        &c,
        &format!("SELECT 1 FROM \"PM\".invoices WHERE workspace_id = '{LUMEN}'"),
    )
    .await;
    let kitsune_before = count(
        &c,
        &format!(
            "SELECT 1 FROM \"PM\".issues i JOIN \"PM\".projects p ON p.id = i.project_id \
              WHERE p.workspace_id = '{KITSUNE}'"
        ),
    )
    .await;
    let id = request(&c, "user", ERIN, Some(&erase(LUMEN))).await;
    run_due(&c, 1).await;
    let r = receipt(&c, id).await;
    assert_eq!(
        r["workspaces"],
        json!([{ "workspace": LUMEN, "decision": "erased" }])
    );
    // The workspace's content, also what reaches it only through parents.
    for (what, sql) in [
        ("projects", format!("SELECT 1 FROM \"PM\".projects WHERE workspace_id = '{LUMEN}'")),
        ("issues", format!("SELECT 1 FROM \"PM\".issues WHERE id IN ('{WEB_1}', '{WEB_2}', '{WEB_3}', '{WEB_4}') OR project_id = '{WEB}'")),
        ("comments", format!("SELECT 1 FROM \"PM\".issue_comments WHERE id IN ('{COMMENT_ZOE_ON_WEB_1}', '{COMMENT_ERIN_ON_WEB_1}', '{COMMENT_YAMADA_ON_WEB_2}', '{COMMENT_ERSOVA_ON_WEB_2}')")),
        ("attachments", format!("SELECT 1 FROM \"PM\".issue_attachments WHERE asset LIKE '{LUMEN}/%'")),
        ("activities", format!("SELECT 1 FROM \"PM\".issue_activities WHERE issue_id IN ('{WEB_1}', '{WEB_2}', '{WEB_3}', '{WEB_4}')")),
        ("subscribers", format!("SELECT 1 FROM \"PM\".issue_subscribers WHERE issue_id IN ('{WEB_1}', '{WEB_2}', '{WEB_3}', '{WEB_4}')")),
        ("workspace members", format!("SELECT 1 FROM \"PM\".workspace_members WHERE workspace_id = '{LUMEN}'")),
        ("project members", format!("SELECT 1 FROM \"PM\".project_members WHERE \"workspaceId\" = '{LUMEN}'")),
        ("invites", format!("SELECT 1 FROM \"PM\".workspace_member_invites WHERE workspace_id = '{LUMEN}'")),
        ("notifications", format!("SELECT 1 FROM \"PM\".notifications WHERE \"workspaceId\" = '{LUMEN}'")),
    ] {
        assert_eq!(count(&c, &sql).await, 0, "{what} of lumen");
    }
    // The files of lumen's issues (Zoë's too) go from storage as well.
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM lifecycle.external_steps WHERE job_id = '{id}' \
                  AND relation = '\"PM\".issue_attachments'::regclass AND reference LIKE '{LUMEN}/%'"
            )
        )
        .await,
        3,
        "erin-ersatz-cv.pdf, Erin Ersatz portfolio.png, Zoë Ångström – kontrakt.pdf"
    );
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM lifecycle.external_steps WHERE job_id = '{id}' \
                  AND relation = '\"PM\".\"Workspace\"'::regclass \
                  AND reference = 'https://assets.example.com/logos/lumen.png'"
            )
        )
        .await,
        1,
        "lumen's logo"
    );
    // Invoices retained for the workspace, the workspace row a tombstone.
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM \"PM\".invoices WHERE workspace_id = '{LUMEN}'")
        )
        .await,
        invoices
    );
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM lifecycle.retention WHERE job_id = '{id}' AND target_type = 'tenant' \
                  AND target_id = '{LUMEN}' AND relation = '\"PM\".invoices'::regclass AND rows = {invoices}"
            )
        )
        .await,
        1,
        "retention record of lumen's invoices: {}",
        r["retained"]
    );
    let ws = c
        .query_one(
            "SELECT name, slug, logo FROM \"PM\".\"Workspace\" WHERE id = $1::text::uuid",
            &[&LUMEN],
        )
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(ws.get::<_, String>(0), "[redacted]");
    let slug: String = ws.get(1);
    assert!(
        slug.len() == 64 && slug.chars().all(|ch| ch.is_ascii_hexdigit()),
        "slug hashed: {slug}"
    );
    assert_eq!(ws.get::<_, Option<String>>(2), None);
    // Erin's API requests (through her token in lumen) are retained without IP and agent.
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM \"PM\".api_activity_logs WHERE created_by_id = '{ERIN}' \
                  AND (ip_address IS NOT NULL OR user_agent IS NOT NULL)"
            )
        )
        .await,
        0
    );
    // Kitsune is untouched; Erin's issue in workspace 1 stays, redacted.
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM \"PM\".issues i JOIN \"PM\".projects p ON p.id = i.project_id \
                  WHERE p.workspace_id = '{KITSUNE}'"
            )
        )
        .await,
        kitsune_before
    );
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM \"PM\".issue_attachments WHERE id = '{RESUME_OF_YAMADA}'")
        )
        .await,
        1
    );
    assert_eq!(
        text(
            &c,
            &format!("SELECT name FROM \"PM\".issues WHERE id = '{ISSUE_W1}'")
        )
        .await,
        "Cross-team request from [redacted]"
    );
    assert!(verify_audit_log(&c).await.0);
    db.cleanup().await.unwrap();
}

// ----- legal holds -------------------------------------------------------------

#[tokio::test]
async fn a_hold_on_lumen_protects_what_reaches_it_through_parents() {
    let (db, c) = projects("projects_hold").await;
    let hold: Uuid = one(
        &c,
        &format!(
            "SELECT lifecycle.place_hold('tenant', '{LUMEN}', NULL, 'Litigation: Quist v. Lumen Works', 'legal@projects.example')"
        ),
    )
    .await;
    // Rows with the workspace in a column of their own, and rows that reach
    // it through their parent (issues through projects, the API log through
    // the token).
    for sql in [
        format!("DELETE FROM \"PM\".projects WHERE id = '{WEB}'"),
        format!("DELETE FROM \"PM\".issues WHERE id = '{WEB_1}'"),
        format!("UPDATE \"PM\".issues SET name = 'x' WHERE id = '{WEB_2}'"),
        format!("UPDATE \"PM\".issues SET deleted_at = now() WHERE id = '{WEB_4}'"),
        format!("DELETE FROM \"PM\".api_activity_logs WHERE token_id = '{TOKEN_OF_ERIN}'"),
        format!("DELETE FROM \"PM\".workspace_members WHERE workspace_id = '{LUMEN}' AND member_id = '{ZOE}'"),
        format!("UPDATE \"PM\".invoices SET billing_name = 'x' WHERE workspace_id = '{LUMEN}'"),
        format!("UPDATE \"PM\".\"Workspace\" SET name = 'x' WHERE id = '{LUMEN}'"),
    ] {
        refused_by_hold(&c, &sql).await;
    }
    // Kitsune's issues are not held.
    exec(
        &c,
        &format!(
            "BEGIN; UPDATE \"PM\".issues SET name = 'x' WHERE id = '{HIRE_1}'; \
                    DELETE FROM \"PM\".issues WHERE project_id = '{HIRE}'; ROLLBACK"
        ),
    )
    .await;

    // The workspace's erasure waits, blocked by the hold, and so does the
    // erasure of a member with rows in lumen; nothing changes.
    let before = owned(&c, ZOE).await;
    let ws_job = request(&c, "tenant", LUMEN, None).await;
    let zoe_job = request(&c, "user", ZOE, None).await;
    run_due(&c, 0).await;
    for id in [ws_job, zoe_job] {
        let j = job(&c, id).await;
        assert_eq!(j["status"], "approved", "{j}");
        assert_eq!(j["blocked_by_hold"], true, "{j}");
        assert_eq!(j["blocking_hold_id"], hold.to_string(), "{j}");
    }
    assert_eq!(
        owned(&c, ZOE).await,
        before,
        "the blocked attempt changed nothing"
    );
    assert_eq!(
        text(
            &c,
            &format!("SELECT name FROM \"PM\".\"Workspace\" WHERE id = '{LUMEN}'")
        )
        .await,
        "Lumen Works"
    );
    // Released: both run.
    exec(
        &c,
        &format!("SELECT lifecycle.release_hold('{hold}', 'legal@projects.example', 'settled')"),
    )
    .await;
    run_due(&c, 2).await;
    receipt(&c, ws_job).await;
    receipt(&c, zoe_job).await;
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM \"PM\".issues WHERE project_id = '{WEB}'")
        )
        .await,
        0
    );
    assert!(verify_audit_log(&c).await.0);
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn the_preview_under_a_hold_on_lumen_names_it() {
    let (db, c) = projects("projects_hold_preview").await;
    let hold: Uuid = one(
        &c,
        &format!(
            "SELECT lifecycle.place_hold('tenant', '{LUMEN}', NULL, 'Litigation', 'legal@projects.example')"
        ),
    )
    .await;
    for (target_type, id, decisions) in [
        ("tenant", LUMEN, None),
        ("user", ZOE, None),
        ("user", ERIN, Some(transfer(LUMEN, ZOE))),
    ] {
        let p = preview_erasure(&c, target_type, id, decisions.as_ref()).await;
        assert_eq!(p["would_run"], false, "{p}");
        assert!(
            p["holds"]
                .as_array()
                .is_some_and(|h| h.iter().any(|h| h["hold_id"] == hold.to_string())),
            "the preview of {target_type} {id} names the hold: {}",
            p["holds"]
        );
    }
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_hold_on_lumen_protects_comments_and_files_of_its_issues() {
    let (db, c) = projects("projects_hold_deep").await;
    exec(
        &c,
        &format!(
            "SELECT lifecycle.place_hold('tenant', '{LUMEN}', NULL, 'Litigation', 'legal@projects.example')"
        ),
    )
    .await;
    for sql in [
        format!("DELETE FROM \"PM\".issue_comments WHERE id = '{COMMENT_ZOE_ON_WEB_1}'"),
        format!("UPDATE \"PM\".issue_comments SET comment_html = '' WHERE id = '{COMMENT_YAMADA_ON_WEB_2}'"),
        format!("DELETE FROM \"PM\".issue_attachments WHERE id = '{PORTFOLIO_OF_ERIN}'"),
        format!("DELETE FROM \"PM\".issue_activities WHERE issue_id = '{WEB_1}'"),
        format!("DELETE FROM \"PM\".issue_subscribers WHERE issue_id = '{WEB_1}'"),
    ] {
        refused_by_hold(&c, &sql).await;
    }
    // And other people's comments in Erin's workspaces that name her are
    // counted like their issues.
    let p = preview_erasure(&c, "user", ERIN, Some(&transfer(LUMEN, ZOE))).await;
    assert!(
        mentions_of(&p)
            .keys()
            .any(|(t, _)| t == "\"PM\".issue_comments"),
        "comments by Zoë and 山田太郎 name Erin: {}",
        p["mentions"]
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_hold_on_erin_covers_what_is_hers_through_other_columns() {
    let (db, c) = projects("projects_hold_user").await;
    // Spelled in upper case: uuids compare as uuids.
    exec(
        &c,
        &format!(
            "SELECT lifecycle.place_hold('user', '{}', NULL, 'Subpoena', 'legal@projects.example')",
            ERIN.to_uppercase()
        ),
    )
    .await;
    for sql in [
        // Her own rows.
        format!("DELETE FROM \"PM\".\"UserProfile\" WHERE user_id = '{ERIN}'"),
        format!("UPDATE \"PM\".users SET display_name = 'x' WHERE id = '{ERIN}'"),
        // Owned through a parent: the files of her issues, invitations to her address.
        format!("DELETE FROM \"PM\".issue_attachments WHERE id = '{CV_OF_ERIN}'"),
        "DELETE FROM \"PM\".workspace_member_invites WHERE email = 'erin@example.com'".to_string(),
        // Other columns naming her: the issue assigned to her, the project she
        // leads, the notification she triggered, the workspace she owns.
        format!("UPDATE \"PM\".issues SET name = 'x' WHERE id = '{WEB_2}'"),
        format!("UPDATE \"PM\".projects SET name = 'x' WHERE id = '{WEB}'"),
        format!("DELETE FROM \"PM\".notifications WHERE triggered_by_id = '{ERIN}'"),
        format!("UPDATE \"PM\".\"Workspace\" SET name = 'x' WHERE id = '{LUMEN}'"),
    ] {
        refused_by_hold(&c, &sql).await;
    }
    // Zoë's own issue, not assigned to Erin: free.
    exec(
        &c,
        &format!("BEGIN; UPDATE \"PM\".issues SET name = 'x' WHERE id = '{HIRE_1}'; ROLLBACK"),
    )
    .await;
    db.cleanup().await.unwrap();
}

// ----- preview and receipt -----------------------------------------------------

#[tokio::test]
async fn preview_of_zoe_matches_her_erasure() {
    let (db, c) = projects("projects_preview_zoe").await;
    let p = preview_erasure(&c, "user", ZOE, None).await;
    assert_eq!(p["would_run"], true, "{p}");
    let id = request(&c, "user", ZOE, None).await;
    run_due(&c, 1).await;
    let r = receipt(&c, id).await;
    assert_preview_matches_receipt(&p, &r, external_steps(&c, id).await);
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn preview_of_erin_with_a_transfer_matches_her_erasure() {
    let (db, c) = projects("projects_preview_erin").await;
    let decision = transfer(LUMEN, ZOE);
    let p = preview_erasure(&c, "user", ERIN, Some(&decision)).await;
    assert_eq!(p["would_run"], true, "{p}");
    assert_eq!(p["last_admin_workspaces"], json!([]), "{p}");
    let id = request(&c, "user", ERIN, Some(&decision)).await;
    run_due(&c, 1).await;
    let r = receipt(&c, id).await;
    assert_preview_matches_receipt(&p, &r, external_steps(&c, id).await);
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn preview_of_erin_with_lumen_erased_matches_her_erasure() {
    let (db, c) = projects("projects_preview_erin_ws").await;
    let decision = erase(LUMEN);
    let p = preview_erasure(&c, "user", ERIN, Some(&decision)).await;
    assert_eq!(p["would_run"], true, "{p}");
    let id = request(&c, "user", ERIN, Some(&decision)).await;
    run_due(&c, 1).await;
    let r = receipt(&c, id).await;
    assert_preview_matches_receipt(&p, &r, external_steps(&c, id).await);
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn preview_of_a_workspace_matches_its_erasure() {
    let (db, c) = projects("projects_preview_ws").await;
    // Generated workspace 1: members' API tokens with their request logs.
    let ws = text(&c, "SELECT \"PM\".seed_uuid('workspace', 1)::text").await;
    let logs = text(
        &c,
        &format!(
            "SELECT array_agg(l.id)::text FROM \"PM\".api_activity_logs l \
               JOIN \"PM\".api_tokens t ON t.id = l.token_id WHERE t.\"workspaceId\" = '{ws}'"
        ),
    )
    .await;
    let p = preview_erasure(&c, "tenant", &ws, None).await;
    assert_eq!(p["would_run"], true, "{p}");
    let id = request(&c, "tenant", &ws, None).await;
    run_due(&c, 1).await;
    let r = receipt(&c, id).await;
    assert_preview_matches_receipt(&p, &r, external_steps(&c, id).await);
    // The request log of the workspace's tokens: retained (without
    // addresses and agents) and recorded, never left behind as it was.
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM \"PM\".api_activity_logs WHERE id = ANY('{logs}'::bigint[]) \
                  AND (ip_address IS NOT NULL OR user_agent IS NOT NULL)"
            )
        )
        .await,
        0,
        "API requests of the workspace's tokens"
    );
    let kept = count(
        &c,
        &format!("SELECT 1 FROM \"PM\".api_activity_logs WHERE id = ANY('{logs}'::bigint[])"),
    )
    .await;
    if kept > 0 {
        assert_eq!(
            one::<i64>(
                &c,
                &format!(
                    "SELECT rows FROM lifecycle.retention WHERE job_id = '{id}' \
                      AND relation = '\"PM\".api_activity_logs'::regclass"
                )
            )
            .await,
            kept
        );
    }
    db.cleanup().await.unwrap();
}

// ----- ids in upper case -------------------------------------------------------

#[tokio::test]
async fn upper_case_uuids_are_accepted() {
    let (db, c) = projects("projects_upper").await;
    let zoe = ZOE.to_uppercase();
    let p = preview_erasure(&c, "user", &zoe, None).await;
    assert_eq!(p["target"]["exists"], true, "{p}");
    assert_eq!(p["would_run"], true, "{p}");
    let lower = preview_erasure(&c, "user", ZOE, None).await;
    assert_eq!(
        rows_by_action(&p["steps"]),
        rows_by_action(&lower["steps"]),
        "the same plan whatever the spelling"
    );
    let id = request(&c, "user", &zoe, None).await;
    run_due(&c, 1).await;
    receipt(&c, id).await;
    for (table, n) in owned(&c, ZOE).await {
        if [
            "workspace_members.member_id",
            "project_members.member_id",
            "issue_subscribers.\"subscriberId\"",
            "notifications.receiver_id",
            "\"UserProfile\".user_id",
        ]
        .contains(&table.as_str())
        {
            assert_eq!(n, 0, "{table} of Zoë");
        }
    }
    assert_eq!(
        text(
            &c,
            &format!("SELECT email FROM \"PM\".users WHERE id = '{ZOE}'")
        )
        .await,
        format!("deleted-{ZOE}@deleted.local")
    );
    // A workspace in upper case.
    let kitsune = KITSUNE.to_uppercase();
    let w = request(&c, "tenant", &kitsune, None).await;
    run_due(&c, 1).await;
    receipt(&c, w).await;
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM \"PM\".projects WHERE workspace_id = '{KITSUNE}'")
        )
        .await,
        0
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn upper_case_uuids_name_the_same_subject_everywhere() {
    let (db, c) = projects("projects_upper_same").await;
    let zoe = ZOE.to_uppercase();
    exec(
        &c,
        &format!(
            "SELECT lifecycle.record_event('account.login', 'user:{ZOE}', 'user', '{ZOE}', NULL, \
                                          '{{\"device\": \"phone\"}}', '198.51.100.9', 'Firefox', NULL)"
        ),
    )
    .await;
    let id: Uuid = one(
        &c,
        &format!(
            "SELECT lifecycle.request_erasure('user', '{zoe}', NULL, 'dpo', 'test', cooling_off => '0', \
                                              requires_approval => false)"
        ),
    )
    .await;
    // The application asks with the id as it stores it.
    assert_eq!(
        text(
            &c,
            &format!("SELECT lifecycle.subject_state('user', '{ZOE}')")
        )
        .await,
        "pending_deletion",
        "login of the subject is blocked"
    );
    expect_sqlstate(
        c.query_one(
            "SELECT lifecycle.request_erasure('user', $1, NULL, 'dpo', cooling_off => '0', requires_approval => false)",
            &[&ZOE],
        )
        .await,
        "LC036",
        "a second erasure of the same person",
    );
    run_due(&c, 1).await;
    receipt(&c, id).await;
    assert_eq!(
        text(
            &c,
            &format!("SELECT lifecycle.subject_state('user', '{ZOE}')")
        )
        .await,
        "erased"
    );
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM lifecycle.audit_log WHERE lower(subject_id) = '{ZOE}' \
                  AND (ip IS NOT NULL OR actor IS NOT NULL OR details IS NOT NULL) \
                  AND event_type = 'account.login'"
            )
        )
        .await,
        0,
        "the login event recorded by the application is redacted"
    );
    // A decision for a workspace in upper case is the decision for it (to
    // 山田太郎: Zoë is no member any more).
    c.query_one(
        "SELECT lifecycle.request_erasure('user', $1, NULL, 'dpo', cooling_off => '0', \
                requires_approval => false, workspaces => $2)",
        &[
            &ERIN,
            &transfer(&LUMEN.to_uppercase(), &YAMADA.to_uppercase()),
        ],
    )
    .await
    .unwrap_or_else(|e| panic!("decision in upper case: {}", describe(&e)));
    db.cleanup().await.unwrap();
}
