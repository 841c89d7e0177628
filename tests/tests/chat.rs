//! The erasure engine on a schema shaped like a real team chat
//! (tests/fixtures/chat.sql, after Mattermost): 26-character text ids and no
//! foreign keys (links declared in the data map), the team reached through
//! the channel, a boolean admin flag with former members soft-deleted,
//! millisecond soft delete, identifiers inside message text and JSON
//! properties, decoy people with similar names, names in several scripts
//! and Unicode forms, and a quoted CamelCase table.

use lifecycle_tests::{
    assert_preview_matches_receipt, count, describe, exec, expect_sqlstate, external_steps,
    guards_not_ok, job, one, preview_erasure, request_erasure_now, verify_audit_log, Role, TestDb,
};
use serde_json::Value;
use tokio_postgres::Client;
use uuid::Uuid;

const SCHEMA: &str = include_str!("../fixtures/chat.sql");
const DATA: &str = include_str!("../fixtures/chat_data.sql");
const REGISTER: &str = include_str!("../fixtures/chat_register.sql");

const ERIN: &str = "erinersatz0000000000000001";
const ZOE: &str = "zoeangstrom000000000000002";
const OLAF: &str = "olafquist00000000000000007";
const LUMEN: &str = "teamlumen00000000000000001";
const KITSUNE: &str = "teamkitsune000000000000002";

async fn chat(prefix: &str) -> (TestDb, Client) {
    let db = TestDb::create(prefix).await.expect("test database");
    let c = db.connect(&Role::Superuser).await.expect("session");
    exec(&c, SCHEMA).await;
    exec(&c, DATA).await;
    exec(&c, "SELECT chat.seed(3, 20, 10)").await;
    exec(&c, REGISTER).await;
    (db, c)
}

/// Rows of `table` (a chat table) matching `condition`.
async fn rows(c: &Client, table: &str, condition: &str) -> i64 {
    count(c, &format!("SELECT 1 FROM chat.{table} WHERE {condition}")).await
}

/// Case-insensitive occurrences of any of Erin's identifiers in a column.
const ERIN_TEXT: &str =
    "~* '(erin ersatz($|[^a-zá-ž])|erin\\.ersatz($|[^a-z])|erin@example\\.com)'";

#[tokio::test]
async fn registration_of_a_schema_without_foreign_keys() {
    let (db, c) = chat("chat_register").await;
    assert_eq!(guards_not_ok(&c).await, Vec::<String>::new());
    assert_eq!(count(&c, "SELECT 1 FROM lifecycle.data_map").await, 33);
    // Paths through parents are recorded as declared links.
    let posts: Value = one(
        &c,
        "SELECT to_jsonb(d) FROM lifecycle.data_map d WHERE relation = 'chat.posts'::regclass",
    )
    .await;
    assert_eq!(posts["tenant_via"], "channelid");
    assert_eq!(posts["links"][0]["parent"], "chat.channels");
    assert_eq!(posts["links"][0]["source"], "declared");
    let members: Value = one(
        &c,
        "SELECT to_jsonb(d) FROM lifecycle.data_map d WHERE relation = 'chat.teammembers'::regclass",
    )
    .await;
    assert_eq!(members["role_kind"], "flag");
    assert_eq!(members["subject_type"], "user");
    assert_eq!(members["is_membership"], true);

    // A reminder's team is two steps away (post -> channel -> team).
    let reminders: Value = one(
        &c,
        "SELECT to_jsonb(d) FROM lifecycle.data_map d WHERE relation = 'chat.postreminders'::regclass",
    )
    .await;
    assert_eq!(reminders["tenant_via"], "postid");
    // A path through a parent that carries no tenant is refused.
    let e = expect_sqlstate(
        c.batch_execute(
            "CREATE TABLE chat.emoji_uses (userid varchar(26), emojiid varchar(26)); \
             SELECT lifecycle.register_link('chat.emoji_uses', 'emojiid', 'chat.emoji', 'id'); \
             SELECT lifecycle.register_table('chat.emoji_uses', 'user', 'userid', tenant_via => 'emojiid')",
        )
        .await,
        "22023",
        "tenant through a parent without one",
    );
    assert!(e.hint().unwrap_or_default().contains("Register"), "{e:?}");
    // A tenant column of another type than the team's key is refused.
    exec(
        &c,
        "CREATE TABLE chat.usage (userid varchar(26), teamid bigint, n integer)",
    )
    .await;
    expect_sqlstate(
        c.batch_execute(
            "SELECT lifecycle.register_table('chat.usage', 'user', 'userid', tenant_column => 'teamid')",
        )
        .await,
        "42804",
        "tenant column of the wrong type",
    );
    // Workspaces by name, as the control plane searches jobs.
    let found: Vec<(String, String)> = c
        .query(
            "SELECT tenant_id, name FROM lifecycle.find_tenants('LUMEN')",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(found, vec![(LUMEN.to_string(), "Lumen Works".to_string())]);
    assert_eq!(
        one::<String>(
            &c,
            &format!("SELECT string_agg(name, ',' ORDER BY name) FROM lifecycle.tenant_names(ARRAY['{LUMEN}', '{KITSUNE}', 'nope'])")
        )
        .await,
        "Kitsune 狐,Lumen Works"
    );
    assert_eq!(
        count(&c, "SELECT 1 FROM lifecycle.find_tenants('%')").await,
        0,
        "no pattern characters"
    );

    // A membership whose "workspace" column names channels is refused.
    let e = expect_sqlstate(
        c.batch_execute(
            "SELECT lifecycle.register_membership('chat.channelmembers', 'userid', 'channelid', 'schemeadmin')",
        )
        .await,
        "22023",
        "channel members as workspace members",
    );
    assert!(e.message().contains("chat.channels"), "{e:?}");
    // A DELETE of a row with a soft-delete column in epoch milliseconds
    // marks it deleted with the time; a second DELETE keeps the first time.
    let draft =
        "userid = 'zoeangstrom000000000000002' AND channelid = 'chanlumentownsquare0000001'";
    exec(
        &c,
        &format!("UPDATE chat.drafts SET deleteat = 0 WHERE {draft}"),
    )
    .await;
    exec(&c, &format!("DELETE FROM chat.drafts WHERE {draft}")).await;
    let first: i64 = one(
        &c,
        &format!("SELECT deleteat FROM chat.drafts WHERE {draft}"),
    )
    .await;
    assert!(first > 1_700_000_000_000, "deleteat {first}");
    exec(&c, "SELECT pg_sleep(0.01)").await;
    exec(&c, &format!("DELETE FROM chat.drafts WHERE {draft}")).await;
    assert_eq!(
        one::<i64>(
            &c,
            &format!("SELECT deleteat FROM chat.drafts WHERE {draft}")
        )
        .await,
        first
    );

    // A rule that cannot fit: 'Deleted User <id>' is longer than 5 characters.
    let e = expect_sqlstate(
        c.batch_execute(
            "ALTER TABLE chat.users ADD COLUMN initials varchar(5) UNIQUE; \
             SELECT lifecycle.set_column_rule('chat.users', 'initials', 'deleted_name')",
        )
        .await,
        "42804",
        "deleted_name into varchar(5)",
    );
    assert!(e.hint().unwrap_or_default().contains("clear"), "{e:?}");
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn user_erasure_redacts_own_text_counts_mentions_and_agrees_with_preview() {
    let (db, c) = chat("chat_erin").await;
    let erin_files: i64 = one(
        &c,
        &format!(
            "SELECT (count(*) FILTER (WHERE path <> '') + count(*) FILTER (WHERE thumbnailpath <> '') \
                     + count(*) FILTER (WHERE previewpath <> ''))::bigint \
               FROM chat.fileinfo WHERE creatorid = '{ERIN}'"
        ),
    )
    .await;
    assert_eq!(
        erin_files, 5,
        "fixture: three files, one with thumbnail and preview"
    );
    let history = rows(&c, "channelmemberhistory", &format!("userid = '{ERIN}'")).await;
    let kitsune_posts = rows(&c, "posts", "channelid LIKE 'chankitsune%'").await;
    let decoys: Value = one(
        &c,
        "SELECT jsonb_object_agg(id, message) FROM chat.posts \
          WHERE id IN ('posterinerskine00000000015', 'posterinersatzova000000016', 'postdmzoe00000000000000010')",
    )
    .await;

    // Erin is the only live admin of lumen: Olaf still has the flag, but
    // left the team (deleteat > 0).
    let p = preview_erasure(&c, "user", ERIN, None).await;
    assert_eq!(
        p["last_admin_workspaces"],
        serde_json::json!([LUMEN]),
        "{p}"
    );
    assert_eq!(p["would_run"], false);
    let e = expect_sqlstate(
        c.query(
            "SELECT lifecycle.request_erasure('user', $1, NULL, 'dpo')",
            &[&ERIN],
        )
        .await,
        "LC034",
        "the only admin of lumen",
    );
    assert!(
        format!("{} {}", e.message(), e.detail().unwrap_or_default()).contains(LUMEN),
        "{e:?}"
    );
    // Olaf back in the team: Erin is no longer the last admin.
    exec(
        &c,
        &format!("UPDATE chat.teammembers SET deleteat = 0 WHERE userid = '{OLAF}' AND teamid = '{LUMEN}'"),
    )
    .await;
    assert_eq!(
        preview_erasure(&c, "user", ERIN, None).await["last_admin_workspaces"],
        serde_json::json!([])
    );
    exec(
        &c,
        &format!("UPDATE chat.teammembers SET deleteat = 1720000000000 WHERE userid = '{OLAF}' AND teamid = '{LUMEN}'"),
    )
    .await;

    // The team goes to Zoë; preview first, with the same decision.
    let decision = serde_json::json!({ LUMEN: { "transfer_to": ZOE } });
    let p = preview_erasure(&c, "user", ERIN, Some(&decision)).await;
    assert_eq!(p["would_run"], true, "{p}");
    assert_eq!(p["last_admin_workspaces"], serde_json::json!([]));
    let id = request_erasure_now(&c, "user", ERIN, "dpo@chat.example", Some(&decision)).await;
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    let j = job(&c, id).await;
    let receipt = &j["result"];
    assert_eq!(receipt["verification"]["ok"], true, "{j}");
    assert_preview_matches_receipt(&p, receipt, external_steps(&c, id).await);

    // The account: a tombstone the application sees as deactivated.
    let u = c
        .query_one(
            "SELECT username, email, firstname, lastname, nickname, props::text, deleteat \
               FROM chat.users WHERE id = $1",
            &[&ERIN],
        )
        .await
        .unwrap();
    assert_eq!(u.get::<_, String>(0), format!("Deleted User {ERIN}"));
    assert_eq!(
        u.get::<_, String>(1),
        format!("deleted-{ERIN}@deleted.local")
    );
    assert_eq!(u.get::<_, Option<String>>(2), None);
    assert_eq!(u.get::<_, Option<String>>(3), None);
    assert_eq!(u.get::<_, String>(5), "{}");
    let deleteat: i64 = u.get(6);
    assert!(
        deleteat > 1_700_000_000_000,
        "deleteat in milliseconds: {deleteat}"
    );

    // Her posts stay, without her name, username or e-mail in the text or
    // the JSON properties; soft-deleted ones and old versions are gone.
    assert!(rows(&c, "posts", &format!("userid = '{ERIN}'")).await >= 7);
    for col in ["message", "props::text", "filenames"] {
        assert_eq!(
            rows(
                &c,
                "posts",
                &format!("userid = '{ERIN}' AND {col} {ERIN_TEXT}")
            )
            .await,
            0,
            "Erin's identifiers left in posts.{col}"
        );
    }
    assert_eq!(
        one::<String>(
            &c,
            "SELECT message FROM chat.posts WHERE id = 'posterinrelease00000000001'"
        )
        .await,
        "Release notes for v2.3, by [redacted]. Questions to @[redacted]. #release"
    );
    assert_eq!(
        one::<String>(
            &c,
            "SELECT props->>'override_username' FROM chat.posts WHERE id = 'postwebhookerin00000000008'"
        )
        .await,
        "[redacted] (CI)"
    );
    assert_eq!(
        rows(
            &c,
            "posts",
            "id IN ('posterinreleasev1000000002', 'posterindeleted00000000017')"
        )
        .await,
        0
    );
    // Others' posts that mention her are counted, not changed; decoys with
    // similar names are neither.
    assert_eq!(
        one::<String>(
            &c,
            "SELECT message FROM chat.posts WHERE id = 'postzoethanks0000000000003'"
        )
        .await,
        "@erin.ersatz thanks Erin Ersatz, the notes look great! cc @yamada.taro"
    );
    let mentions: Vec<(String, String, u64)> = receipt["mentions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["table"].as_str().unwrap().to_string(),
                m["column"].as_str().unwrap().to_string(),
                m["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    let message_mentions = mentions
        .iter()
        .find(|(t, col, _)| t == "chat.posts" && col == "message")
        .map(|m| m.2);
    // Zoë's and 山田太郎's replies, Olaf's farewell, the system post adding
    // her, her bot's reminder (the group message is in no team).
    assert_eq!(message_mentions, Some(5), "{mentions:?}");
    assert!(mentions
        .iter()
        .any(|(t, col, n)| t == "chat.posts" && col == "props" && *n == 1));
    assert!(mentions
        .iter()
        .any(|(t, col, _)| t == "chat.channels" && col == "header"));
    for (id, message) in decoys.as_object().unwrap() {
        assert_eq!(
            one::<String>(
                &c,
                &format!("SELECT message FROM chat.posts WHERE id = '{id}'")
            )
            .await,
            message.as_str().unwrap(),
            "decoy {id} changed"
        );
    }
    let receipt_text = receipt.to_string();
    for value in ["erin@example.com", "Erin Ersatz", "erin.ersatz"] {
        assert!(
            !receipt_text.contains(value),
            "the receipt names places, never values: {value}"
        );
    }

    // Deleted with their stored objects: one step per non-empty path.
    assert_eq!(
        rows(&c, "fileinfo", &format!("creatorid = '{ERIN}'")).await,
        0
    );
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM lifecycle.external_steps WHERE job_id = '{id}' \
                  AND relation = 'chat.fileinfo'::regclass AND kind = 'delete_object' AND reference <> ''"
            )
        )
        .await,
        erin_files
    );
    for (table, col) in [
        ("channelmembers", "userid"),
        ("reactions", "userid"),
        ("drafts", "userid"),
        ("sessions", "userid"),
        ("status", "userid"),
        ("preferences", "userid"),
        ("threadmemberships", "userid"),
        ("postreminders", "userid"),
        ("useraccesstokens", "userid"),
        ("oauthaccessdata", "userid"),
        ("incomingwebhooks", "userid"),
        ("outgoingwebhooks", "creatorid"),
        ("uploadsessions", "userid"),
        ("focalboard_board_members", "user_id"),
        ("\"StandupReports\"", "\"UserId\""),
        ("teammembers", "userid"),
    ] {
        assert_eq!(
            rows(&c, table, &format!("{col} = '{ERIN}'")).await,
            0,
            "{table}"
        );
    }
    // The team is Zoë's now.
    assert!(
        one::<bool>(
            &c,
            &format!("SELECT schemeadmin FROM chat.teammembers WHERE teamid = '{LUMEN}' AND userid = '{ZOE}'")
        )
        .await
    );
    // Retained, with a retention record; kept rows anonymized.
    assert_eq!(
        rows(&c, "channelmemberhistory", &format!("userid = '{ERIN}'")).await,
        history
    );
    assert_eq!(
        count(
            &c,
            &format!(
                "SELECT 1 FROM lifecycle.retention WHERE job_id = '{id}' \
                  AND relation IN ('chat.channelmemberhistory'::regclass, 'chat.usertermsofservice'::regclass)"
            )
        )
        .await,
        2
    );
    assert_eq!(
        rows(
            &c,
            "audits",
            &format!(
                "userid = '{ERIN}' AND (ipaddress !~ '^[0-9a-f]{{64}}$' OR extrainfo <> '[redacted]')"
            )
        )
        .await,
        0
    );
    // Everybody's compliance exports lose her address (redact_mentions).
    assert_eq!(
        rows(
            &c,
            "compliances",
            &format!("emails {ERIN_TEXT} OR \"desc\" {ERIN_TEXT}")
        )
        .await,
        0
    );
    // Her bot stays, owned by the anonymized account.
    assert_eq!(rows(&c, "bots", &format!("ownerid = '{ERIN}'")).await, 1);
    assert_eq!(
        rows(&c, "posts", "channelid LIKE 'chankitsune%'").await,
        kitsune_posts,
        "nobody else's posts were removed"
    );
    assert!(verify_audit_log(&c).await.0);
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn team_hold_protects_rows_reached_through_channels_then_team_erasure() {
    let (db, c) = chat("chat_team").await;
    let hold: Uuid = one(
        &c,
        &format!(
            "SELECT lifecycle.place_hold('tenant', '{LUMEN}', NULL, 'Litigation 42', 'legal')"
        ),
    )
    .await;
    // Posts have no team column: the hold reaches them through the channel.
    for sql in [
        "DELETE FROM chat.posts WHERE id = 'posterinrelease00000000001'".to_string(),
        "UPDATE chat.posts SET message = 'x' WHERE id = 'postzoethanks0000000000003'".to_string(),
        "DELETE FROM chat.channelmembers WHERE channelid = 'chanlumentownsquare0000001'"
            .to_string(),
        "DELETE FROM chat.fileinfo WHERE id = 'fileerincv0000000000000001'".to_string(),
        format!("DELETE FROM chat.teammembers WHERE teamid = '{LUMEN}'"),
    ] {
        let e = expect_sqlstate(c.execute(sql.as_str(), &[]).await, "LC001", &sql);
        assert!(
            e.detail().unwrap_or_default().contains(&hold.to_string()),
            "{e:?}"
        );
    }
    expect_sqlstate(
        c.batch_execute("TRUNCATE chat.posts").await,
        "LC002",
        "TRUNCATE of posts with held rows",
    );
    // Another team's rows are not held (channel memberships: no soft
    // delete, so the DELETE deletes).
    assert!(
        c.execute(
            "DELETE FROM chat.channelmembers WHERE channelid IN \
               (SELECT id FROM chat.channels WHERE teamid = chat.seed_id('team', 1))",
            &[]
        )
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
            > 0
    );

    let lumen_posts = rows(&c, "posts", "channelid LIKE 'chanlumen%'").await;
    let other_posts = rows(&c, "posts", "channelid NOT LIKE 'chanlumen%'").await;
    let lumen_history = rows(&c, "channelmemberhistory", "channelid LIKE 'chanlumen%'").await;
    assert!(lumen_posts > 5 && lumen_history > 0);
    let id = request_erasure_now(&c, "tenant", LUMEN, "dpo@chat.example", None).await;
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 0);
    let j = job(&c, id).await;
    assert_eq!(j["blocked_by_hold"], true, "{j}");
    assert_eq!(
        rows(&c, "posts", "channelid LIKE 'chanlumen%'").await,
        lumen_posts
    );

    exec(
        &c,
        &format!("SELECT lifecycle.release_hold('{hold}', 'legal', 'settled')"),
    )
    .await;
    let p = preview_erasure(&c, "tenant", LUMEN, None).await;
    assert_eq!(p["would_run"], true, "{p}");
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    let j = job(&c, id).await;
    let receipt = &j["result"];
    assert_eq!(receipt["verification"]["ok"], true, "{j}");
    assert_preview_matches_receipt(&p, receipt, external_steps(&c, id).await);
    for (table, condition) in [
        ("posts", "channelid LIKE 'chanlumen%'"),
        ("channelmembers", "channelid LIKE 'chanlumen%'"),
        ("reactions", "channelid LIKE 'chanlumen%'"),
        ("fileinfo", "channelid LIKE 'chanlumen%'"),
        ("teammembers", &format!("teamid = '{LUMEN}'")),
        ("incomingwebhooks", &format!("teamid = '{LUMEN}'")),
        ("focalboard_boards", &format!("team_id = '{LUMEN}'")),
        ("focalboard_blocks", "board_id LIKE 'blumen%'"),
        // Reached through declared links to the removed posts.
        (
            "threadmemberships",
            "postid IN ('posterinrelease00000000001', 'postzoethanks0000000000003')",
        ),
    ] {
        assert_eq!(rows(&c, table, condition).await, 0, "{table} of lumen");
    }
    assert_eq!(
        rows(&c, "channelmemberhistory", "channelid LIKE 'chanlumen%'").await,
        lumen_history,
        "retained"
    );
    // The channels stay while retained rows name them (the record keeps
    // its context; purge removes both when the retention ends).
    assert_eq!(
        rows(&c, "channels", &format!("teamid = '{LUMEN}'")).await,
        3
    );
    assert!(
        receipt["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["table"] == "chat.channels"
                && a["reason"] == "referenced by rows retained in chat.channelmemberhistory"
                && a["rows"] == 3),
        "{receipt}"
    );
    assert_eq!(
        rows(&c, "posts", "channelid NOT LIKE 'chanlumen%'").await,
        other_posts
    );
    let team = c
        .query_one(
            "SELECT displayname, email FROM chat.teams WHERE id = $1",
            &[&LUMEN],
        )
        .await
        .unwrap();
    assert_eq!(team.get::<_, String>(0), "[redacted]");
    assert_eq!(team.get::<_, Option<String>>(1), None);
    // The people stay: only the team is gone.
    assert_eq!(
        count(
            &c,
            &format!("SELECT 1 FROM chat.users WHERE id = '{ERIN}' AND deleteat = 0")
        )
        .await,
        1
    );
    assert!(external_steps(&c, id).await > 0, "stored files of the team");
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn names_in_other_scripts_and_unicode_forms() {
    let (db, c) = chat("chat_unicode").await;
    // Sam Admin's welcome spells Zoë Ångström decomposed (NFD).
    assert!(
        one::<bool>(
            &c,
            "SELECT message <> normalize(message, NFC) \
                AND lifecycle.mentions(message, ARRAY['Zoë Ångström']) \
               FROM chat.posts WHERE id = 'postadminwelcomenfd0000014'"
        )
        .await
    );
    assert_eq!(
        one::<String>(
            &c,
            "SELECT lifecycle.redact_text('Erin Ersatzová, Erin Ersatz, ERIN ERSATZさん', ARRAY['Erin Ersatz'])"
        )
        .await,
        "Erin Ersatzová, [redacted], [redacted]さん"
    );
    // Zoë is one of two admins of kitsune: no decision needed.
    let p = preview_erasure(&c, "user", ZOE, None).await;
    assert_eq!(p["last_admin_workspaces"], serde_json::json!([]), "{p}");
    assert_eq!(p["would_run"], true);
    let id = request_erasure_now(&c, "user", ZOE, "dpo@chat.example", None).await;
    assert_eq!(one::<i32>(&c, "SELECT lifecycle.run_due_jobs()").await, 1);
    let j = job(&c, id).await;
    assert_eq!(j["result"]["verification"]["ok"], true, "{j}");
    assert_preview_matches_receipt(&p, &j["result"], external_steps(&c, id).await);
    assert_eq!(
        rows(
            &c,
            "posts",
            &format!(
                "userid = '{ZOE}' AND normalize(message, NFC) ~* 'zoë ångström|zoe\\.angstrom'"
            )
        )
        .await,
        0
    );
    assert_eq!(
        rows(&c, "fileinfo", "id = 'filezoecontract00000000004'").await,
        0
    );
    // The welcome (someone else's post, in a team of hers) is counted.
    assert!(j["result"]["mentions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["table"] == "chat.posts" && m["column"] == "message"));
    assert_eq!(
        count(&c, &format!("SELECT 1 FROM chat.teammembers WHERE teamid = '{KITSUNE}' AND schemeadmin AND deleteat = 0")).await,
        1
    );
    db.cleanup().await.unwrap();
}
