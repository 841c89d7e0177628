//! Discovery reports over the data map: `lifecycle.unmapped_references()`
//! finds the tables and columns that point at a registered subject or tenant
//! table without being in the data map (by foreign key, declared link, or a
//! column's name and type), and `lifecycle.unindexed_keys()` the columns the
//! data map finds a subject's or tenant's rows by that no index serves.
//!
//! The chat fixture (tests/fixtures/chat.sql, after Mattermost) has no
//! foreign key at all: every reference is a column named userid, creatorid,
//! ownerid, user_id, created_by, "UserId", teamid, team_id, "TeamId", ...
//! The project tracker (tests/fixtures/projects.sql) declares real foreign
//! keys; the demo and the CRM fixture are registered completely.

use std::collections::BTreeSet;

use lifecycle_tests::{count, describe, exec, quote_literal, Role, TestDb};
use tokio_postgres::Client;

const CHAT_SCHEMA: &str = include_str!("../fixtures/chat.sql");
const CHAT_DATA: &str = include_str!("../fixtures/chat_data.sql");
const CHAT_REGISTER: &str = include_str!("../fixtures/chat_register.sql");
const PM_SCHEMA: &str = include_str!("../fixtures/projects.sql");
const DEMO_SCHEMA: &str = include_str!("../../sql/demo/schema.sql");
const DEMO_REGISTER: &str = include_str!("../../sql/demo/register.sql");
const CRM_SCHEMA: &str = include_str!("../fixtures/crm.sql");
const CRM_REGISTER: &str = include_str!("../fixtures/crm_register.sql");

/// Every chat column that names a user (chat.users.id), per table.
const CHAT_USER_COLUMNS: &[(&str, &str)] = &[
    ("chat.\"StandupReports\"", "UserId"),
    ("chat.audits", "userid"),
    ("chat.bots", "ownerid"),
    ("chat.bots", "userid"),
    ("chat.channelmemberhistory", "userid"),
    ("chat.channelmembers", "userid"),
    ("chat.channels", "creatorid"),
    ("chat.commands", "creatorid"),
    ("chat.compliances", "userid"),
    ("chat.drafts", "userid"),
    ("chat.emoji", "creatorid"),
    ("chat.fileinfo", "creatorid"),
    ("chat.focalboard_blocks", "created_by"),
    ("chat.focalboard_blocks", "modified_by"),
    ("chat.focalboard_board_members", "user_id"),
    ("chat.focalboard_boards", "created_by"),
    ("chat.focalboard_boards", "modified_by"),
    ("chat.incomingwebhooks", "userid"),
    ("chat.oauthaccessdata", "userid"),
    ("chat.oauthapps", "creatorid"),
    ("chat.outgoingwebhooks", "creatorid"),
    ("chat.postacknowledgements", "userid"),
    ("chat.postreminders", "userid"),
    ("chat.posts", "userid"),
    ("chat.preferences", "userid"),
    ("chat.reactions", "userid"),
    ("chat.sessions", "userid"),
    ("chat.status", "userid"),
    ("chat.teammembers", "userid"),
    ("chat.termsofservice", "userid"),
    ("chat.threadmemberships", "userid"),
    ("chat.uploadsessions", "userid"),
    ("chat.useraccesstokens", "userid"),
    ("chat.usertermsofservice", "userid"),
];

/// Every chat column that names a team (chat.teams.id).
const CHAT_TEAM_COLUMNS: &[(&str, &str)] = &[
    ("chat.\"StandupReports\"", "TeamId"),
    ("chat.channels", "teamid"),
    ("chat.commands", "teamid"),
    ("chat.focalboard_boards", "team_id"),
    ("chat.incomingwebhooks", "teamid"),
    ("chat.outgoingwebhooks", "teamid"),
    ("chat.teammembers", "teamid"),
    ("chat.threads", "threadteamid"),
];

/// One row of `unmapped_references()`: relation, columns (comma-separated),
/// referenced table, scope type, evidence, reason.
type Finding = (String, String, String, String, String, String);

async fn unmapped(c: &Client, filter: &str) -> BTreeSet<Finding> {
    let sql = format!(
        "SELECT relation::text, array_to_string(columns, ','), references_table::text, scope_type, \
                evidence, reason \
           FROM lifecycle.unmapped_references() WHERE {filter}"
    );
    c.query(sql.as_str(), &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {}", describe(&e)))
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5)))
        .collect()
}

/// Rows of `unmapped_references()` for one column of one relation.
async fn reported(c: &Client, relation: &str, column: &str) -> i64 {
    count(
        c,
        &format!(
            "SELECT 1 FROM lifecycle.unmapped_references() \
              WHERE relation = {}::regclass AND {} = ANY (columns)",
            quote_literal(relation),
            quote_literal(column)
        ),
    )
    .await
}

fn row(
    relation: &str,
    column: &str,
    target: &str,
    scope: &str,
    evidence: &str,
    reason: &str,
) -> Finding {
    (
        relation.to_string(),
        column.to_string(),
        target.to_string(),
        scope.to_string(),
        evidence.to_string(),
        reason.to_string(),
    )
}

/// The chat fixture with data, only chat.users (subject type user) and
/// chat.teams (the tenant) registered: what a DBA starts from.
async fn chat_users_and_teams(prefix: &str) -> (TestDb, Client) {
    let db = TestDb::create(prefix).await.expect("test database");
    let c = db.connect(&Role::Superuser).await.expect("session");
    exec(&c, CHAT_SCHEMA).await;
    exec(&c, CHAT_DATA).await;
    exec(&c, "SELECT chat.seed(2, 8, 3)").await;
    exec(
        &c,
        "SELECT lifecycle.register_subject('chat.users', 'id'); \
         SELECT lifecycle.register_tenant('chat.teams', 'id');",
    )
    .await;
    (db, c)
}

#[tokio::test]
async fn chat_without_foreign_keys_reports_every_user_and_team_column() {
    let (db, c) = chat_users_and_teams("discovery_chat").await;
    let found = unmapped(&c, "true").await;
    let mut expected = BTreeSet::new();
    for (rel, col) in CHAT_USER_COLUMNS {
        expected.insert(row(
            rel,
            col,
            "chat.users",
            "user",
            "column name and type",
            "table is not in the data map",
        ));
    }
    for (rel, col) in CHAT_TEAM_COLUMNS {
        expected.insert(row(
            rel,
            col,
            "chat.teams",
            "tenant",
            "column name and type",
            "table is not in the data map",
        ));
    }
    let missing: Vec<_> = expected.difference(&found).collect();
    let extra: Vec<_> = found.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing: {missing:#?}\nnot references: {extra:#?}"
    );
    let tables: BTreeSet<&str> = CHAT_USER_COLUMNS.iter().map(|(t, _)| *t).collect();
    assert!(
        tables.len() >= 30,
        "{} tables with a user column",
        tables.len()
    );

    // Columns that are no reference: texts, times, the subject's and the
    // tenant's own keys, ids of other things, tables without a user column.
    for (rel, col) in [
        ("chat.posts", "message"),
        ("chat.posts", "channelid"),
        ("chat.posts", "createat"),
        ("chat.users", "id"),
        ("chat.users", "remoteid"),
        ("chat.teams", "id"),
        ("chat.teams", "email"),
        ("chat.fileinfo", "postid"),
        ("chat.focalboard_boards", "insert_at"),
        ("chat.tokens", "extra"),
        ("chat.pluginkeyvaluestore", "pkey"),
        ("chat.threads", "participants"),
    ] {
        assert_eq!(
            reported(&c, rel, col).await,
            0,
            "{rel}.{col} is no reference"
        );
    }

    // Names that say "person" on columns whose type cannot hold a user id,
    // views, partitions, and the other spellings of a reference.
    exec(
        &c,
        "CREATE TABLE chat.reviews (
             id           bigint PRIMARY KEY,
             created_by   timestamptz,
             owner        boolean,
             author       integer,
             modified_by  varchar(26),
             \"ReviewerId\" varchar(26),
             target_userid varchar(26),
             users_id     text,
             \"user\"     text,
             workspace_id varchar(26),
             body         text);
         CREATE TABLE chat.members (member_id varchar(26) PRIMARY KEY, name text);
         CREATE TABLE chat.listings (id varchar(26) PRIMARY KEY,
                                     owner_id varchar(26) REFERENCES chat.members);
         CREATE TABLE chat.events (userid varchar(26), at timestamptz NOT NULL) PARTITION BY RANGE (at);
         CREATE TABLE chat.events_default PARTITION OF chat.events DEFAULT;
         CREATE VIEW chat.post_authors AS SELECT id, userid FROM chat.posts;",
    )
    .await;
    let reviews = unmapped(&c, "relation = 'chat.reviews'::regclass").await;
    let names: BTreeSet<(String, String)> =
        reviews.iter().map(|r| (r.1.clone(), r.3.clone())).collect();
    let want: BTreeSet<(String, String)> = [
        ("modified_by", "user"),
        ("ReviewerId", "user"),
        ("target_userid", "user"),
        ("users_id", "user"),
        ("user", "user"),
        ("workspace_id", "tenant"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(names, want, "{reviews:#?}");
    for (rel, col) in [
        ("chat.members", "member_id"),
        ("chat.listings", "owner_id"),
        ("chat.events_default", "userid"),
        ("chat.post_authors", "userid"),
    ] {
        assert_eq!(reported(&c, rel, col).await, 0, "{rel}.{col}");
    }
    assert_eq!(
        reported(&c, "chat.events", "userid").await,
        1,
        "the partition root"
    );

    // A foreign key and a name on the same column: one row, the foreign key.
    exec(
        &c,
        "CREATE TABLE chat.mentions (post_id varchar(26),
             userid varchar(26) CONSTRAINT mentions_user_fkey REFERENCES chat.users)",
    )
    .await;
    assert_eq!(
        unmapped(&c, "relation = 'chat.mentions'::regclass").await,
        BTreeSet::from([row(
            "chat.mentions",
            "userid",
            "chat.users",
            "user",
            "foreign key mentions_user_fkey",
            "table is not in the data map",
        )])
    );
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn registering_a_table_takes_it_out_of_the_report() {
    let (db, c) = chat_users_and_teams("discovery_register").await;
    assert_eq!(reported(&c, "chat.teammembers", "userid").await, 1);
    assert_eq!(reported(&c, "chat.teammembers", "teamid").await, 1);
    exec(
        &c,
        "SELECT lifecycle.register_table('chat.teammembers', 'user', 'userid', tenant_column => 'teamid', \
                                         soft_delete_column => 'deleteat')",
    )
    .await;
    assert_eq!(
        count(
            &c,
            "SELECT 1 FROM lifecycle.unmapped_references() WHERE relation = 'chat.teammembers'::regclass"
        )
        .await,
        0
    );

    // Boards registered with their creator: the other person column remains,
    // now as a column the data map does not map.
    exec(
        &c,
        "SELECT lifecycle.register_table('chat.focalboard_boards', 'user', 'created_by', \
                                         tenant_column => 'team_id', on_erase => 'anonymize')",
    )
    .await;
    assert_eq!(
        unmapped(&c, "relation = 'chat.focalboard_boards'::regclass").await,
        BTreeSet::from([row(
            "chat.focalboard_boards",
            "modified_by",
            "chat.users",
            "user",
            "column name and type",
            "column is not mapped to scope user",
        )])
    );
    // Cards reach their team through the board (a declared link): the path's
    // column is never a finding, the second person column is.
    exec(
        &c,
        "SELECT lifecycle.register_link('chat.focalboard_blocks', 'board_id', 'chat.focalboard_boards', 'id'); \
         SELECT lifecycle.register_table('chat.focalboard_blocks', 'user', 'created_by', \
                                         tenant_via => 'board_id', on_erase => 'anonymize');",
    )
    .await;
    let blocks = unmapped(&c, "relation = 'chat.focalboard_blocks'::regclass").await;
    assert_eq!(
        blocks,
        BTreeSet::from([row(
            "chat.focalboard_blocks",
            "modified_by",
            "chat.users",
            "user",
            "column name and type",
            "column is not mapped to scope user",
        )])
    );
    exec(
        &c,
        "SELECT lifecycle.register_scope('chat.focalboard_boards', 'user', 'modified_by'); \
         SELECT lifecycle.register_scope('chat.focalboard_blocks', 'user', 'modified_by');",
    )
    .await;
    assert_eq!(
        count(
            &c,
            "SELECT 1 FROM lifecycle.unmapped_references() \
              WHERE relation IN ('chat.focalboard_boards'::regclass, 'chat.focalboard_blocks'::regclass)"
        )
        .await,
        0
    );
    // The rest of the chat is still reported.
    assert_eq!(reported(&c, "chat.posts", "userid").await, 1);
    assert_eq!(reported(&c, "chat.\"StandupReports\"", "TeamId").await, 1);
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn project_tracker_references_are_found_by_their_foreign_keys() {
    let db = TestDb::create("discovery_pm").await.expect("test database");
    let c = db.connect(&Role::Superuser).await.expect("session");
    exec(&c, PM_SCHEMA).await;
    exec(
        &c,
        "SELECT lifecycle.register_subject('\"PM\".users', 'id'); \
         SELECT lifecycle.register_tenant('\"PM\".\"Workspace\"', 'id');",
    )
    .await;
    let found = unmapped(&c, "true").await;
    for r in &found {
        assert!(r.4.starts_with("foreign key "), "{r:?}");
    }
    for (rel, col, target, scope, fkey, reason) in [
        (
            "\"PM\".issues",
            "created_by",
            "\"PM\".users",
            "user",
            "issues_created_by_fkey",
            "table is not in the data map",
        ),
        (
            "\"PM\".issues",
            "assignee_id",
            "\"PM\".users",
            "user",
            "issues_assignee_id_fkey",
            "table is not in the data map",
        ),
        (
            "\"PM\".issue_subscribers",
            "subscriberId",
            "\"PM\".users",
            "user",
            "\"issue_subscribers_subscriberId_fkey\"",
            "table is not in the data map",
        ),
        (
            "\"PM\".notifications",
            "receiver_id",
            "\"PM\".users",
            "user",
            "notifications_receiver_id_fkey",
            "table is not in the data map",
        ),
        (
            "\"PM\".invoices",
            "billed_to",
            "\"PM\".users",
            "user",
            "invoices_billed_to_fkey",
            "table is not in the data map",
        ),
        (
            "\"PM\".project_members",
            "workspaceId",
            "\"PM\".\"Workspace\"",
            "tenant",
            "\"project_members_workspaceId_fkey\"",
            "table is not in the data map",
        ),
        (
            "\"PM\".projects",
            "workspace_id",
            "\"PM\".\"Workspace\"",
            "tenant",
            "projects_workspace_id_fkey",
            "table is not in the data map",
        ),
        (
            "\"PM\".\"Workspace\"",
            "owner_id",
            "\"PM\".users",
            "user",
            "\"Workspace_owner_id_fkey\"",
            "column is not mapped to scope user",
        ),
    ] {
        let want = row(
            rel,
            col,
            target,
            scope,
            &format!("foreign key {fkey}"),
            reason,
        );
        assert!(found.contains(&want), "{want:?} not in {found:#?}");
    }
    // One row per column, even where the name would have found it too.
    let per_column = count(
        &c,
        "SELECT relation, columns, scope_type FROM lifecycle.unmapped_references() \
          GROUP BY 1, 2, 3 HAVING count(*) > 1",
    )
    .await;
    assert_eq!(per_column, 0);
    // Ids of other things are not references to a person.
    for (rel, col) in [
        ("\"PM\".issues", "parent_id"),
        ("\"PM\".issue_activities", "old_identifier"),
        ("\"PM\".api_activity_logs", "token_id"),
        ("\"PM\".users", "id"),
    ] {
        assert_eq!(reported(&c, rel, col).await, 0, "{rel}.{col}");
    }
    db.cleanup().await.unwrap();
}

#[tokio::test]
async fn fully_registered_schemas_report_only_real_gaps() {
    // The demo: only the workspace's creator, a foreign key the data map
    // leaves out (the tenant table maps its own id alone).
    let db = TestDb::create("discovery_demo")
        .await
        .expect("test database");
    let c = db.connect(&Role::Superuser).await.expect("session");
    exec(&c, DEMO_SCHEMA).await;
    exec(&c, DEMO_REGISTER).await;
    assert_eq!(
        unmapped(&c, "true").await,
        BTreeSet::from([row(
            "app.workspaces",
            "created_by",
            "app.users",
            "user",
            "foreign key workspaces_created_by_fkey",
            "column is not mapped to scope user",
        )])
    );
    db.cleanup().await.unwrap();

    // The CRM fixture: nothing.
    let db = TestDb::create("discovery_crm")
        .await
        .expect("test database");
    let c = db.connect(&Role::Superuser).await.expect("session");
    exec(&c, CRM_SCHEMA).await;
    exec(&c, CRM_REGISTER).await;
    assert_eq!(unmapped(&c, "true").await, BTreeSet::new());
    // A new table: found by its foreign key, and by name without one
    // ("accountId" for "CRM"."Accounts", org for the tenant "CRM".orgs).
    exec(
        &c,
        "CREATE TABLE \"CRM\".favourites (\"accountId\" uuid, org text, label text, \
                                         added_by uuid REFERENCES \"CRM\".\"Accounts\")",
    )
    .await;
    let fav = unmapped(&c, "true").await;
    let cols: BTreeSet<(String, String, String)> = fav
        .iter()
        .map(|r| (r.1.clone(), r.3.clone(), r.4.clone()))
        .collect();
    assert_eq!(
        cols,
        BTreeSet::from([
            (
                "accountId".to_string(),
                "customer".to_string(),
                "column name and type".to_string()
            ),
            (
                "added_by".to_string(),
                "customer".to_string(),
                "foreign key favourites_added_by_fkey".to_string()
            ),
            (
                "org".to_string(),
                "tenant".to_string(),
                "column name and type".to_string()
            ),
        ])
    );
    db.cleanup().await.unwrap();

    // The chat, registered by chat_register.sql: at most the columns it
    // leaves out on purpose (the bot's own account; threads, whose people
    // are in a JSON array, carry the team).
    let db = TestDb::create("discovery_chat_full")
        .await
        .expect("test database");
    let c = db.connect(&Role::Superuser).await.expect("session");
    exec(&c, CHAT_SCHEMA).await;
    exec(&c, CHAT_REGISTER).await;
    let allowed = BTreeSet::from([
        row(
            "chat.bots",
            "userid",
            "chat.users",
            "user",
            "column name and type",
            "column is not mapped to scope user",
        ),
        row(
            "chat.threads",
            "threadteamid",
            "chat.teams",
            "tenant",
            "column name and type",
            "table is not in the data map",
        ),
    ]);
    let found = unmapped(&c, "true").await;
    assert!(found.is_subset(&allowed), "{found:#?}");
    db.cleanup().await.unwrap();
}

/// Rows of `unindexed_keys()`: relation, column, scope type, suggestion.
async fn unindexed(c: &Client) -> BTreeSet<(String, String, String, String)> {
    c.query(
        "SELECT relation::text, column_name, scope_type, suggestion FROM lifecycle.unindexed_keys()",
        &[],
    )
    .await
    .unwrap_or_else(|e| panic!("unindexed_keys(): {}", describe(&e)))
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
    .collect()
}

#[tokio::test]
async fn unindexed_keys_lists_what_erasure_would_scan() {
    let (db, c) = chat_users_and_teams("discovery_unindexed").await;
    // The keys of users and teams are their primary keys.
    assert_eq!(unindexed(&c).await, BTreeSet::new());
    exec(
        &c,
        "SELECT lifecycle.register_table('chat.commands', 'user', 'creatorid', tenant_column => 'teamid', \
                                         on_erase => 'anonymize', soft_delete_column => 'deleteat')",
    )
    .await;
    let creatorid = (
        "chat.commands".to_string(),
        "creatorid".to_string(),
        "user".to_string(),
        "CREATE INDEX ON chat.commands (creatorid)".to_string(),
    );
    // teamid leads idx_command_team_id; creatorid leads no index.
    assert_eq!(unindexed(&c).await, BTreeSet::from([creatorid.clone()]));
    assert_eq!(
        count(
            &c,
            "SELECT 1 FROM lifecycle.unindexed_keys() \
              WHERE relation = 'chat.commands'::regclass AND reason = 'erasing one subject reads the whole table'"
        )
        .await,
        1
    );
    // A partial index, or one where the column comes second, does not serve.
    exec(
        &c,
        "CREATE INDEX commands_live_creator ON chat.commands (creatorid) WHERE deleteat = 0; \
         CREATE INDEX commands_team_creator ON chat.commands (teamid, creatorid);",
    )
    .await;
    assert_eq!(unindexed(&c).await, BTreeSet::from([creatorid]));
    exec(&c, "CREATE INDEX ON chat.commands (creatorid)").await;
    assert_eq!(unindexed(&c).await, BTreeSet::new());

    // A path through a parent: the column that leads to it needs an index
    // too (drafts' primary key is (userid, channelid, rootid)).
    exec(
        &c,
        "SELECT lifecycle.register_table('chat.channels', 'user', 'creatorid', tenant_column => 'teamid', \
                                         on_erase => 'anonymize'); \
         SELECT lifecycle.register_link('chat.drafts', 'channelid', 'chat.channels', 'id'); \
         SELECT lifecycle.register_table('chat.drafts', 'user', 'userid', tenant_via => 'channelid');",
    )
    .await;
    assert_eq!(
        unindexed(&c).await,
        BTreeSet::from([(
            "chat.drafts".to_string(),
            "channelid".to_string(),
            "tenant".to_string(),
            "CREATE INDEX ON chat.drafts (channelid)".to_string(),
        )])
    );
    exec(&c, "CREATE INDEX ON chat.drafts (channelid)").await;

    // A partitioned table: an index on its partitions alone, or one not yet
    // on every partition, is not an index on the table; quoted names stay
    // quoted in the suggestion.
    exec(
        &c,
        "CREATE TABLE chat.\"CallLogs\" (\"UserId\" varchar(26) NOT NULL, at timestamptz NOT NULL) \
             PARTITION BY RANGE (at); \
         CREATE TABLE chat.\"CallLogs_default\" PARTITION OF chat.\"CallLogs\" DEFAULT; \
         CREATE INDEX ON chat.\"CallLogs_default\" (\"UserId\"); \
         CREATE INDEX call_logs_user_only ON ONLY chat.\"CallLogs\" (\"UserId\"); \
         SELECT lifecycle.register_table('chat.\"CallLogs\"', 'user', 'UserId');",
    )
    .await;
    assert_eq!(
        unindexed(&c).await,
        BTreeSet::from([(
            "chat.\"CallLogs\"".to_string(),
            "UserId".to_string(),
            "user".to_string(),
            "CREATE INDEX ON chat.\"CallLogs\" (\"UserId\")".to_string(),
        )])
    );
    exec(&c, "CREATE INDEX ON chat.\"CallLogs\" (\"UserId\")").await;
    assert_eq!(unindexed(&c).await, BTreeSet::new());

    // An administrative report: not for PUBLIC.
    assert_eq!(
        count(
            &c,
            "SELECT 1 WHERE has_function_privilege('public', 'lifecycle.unindexed_keys()', 'EXECUTE')"
        )
        .await,
        0
    );
    db.cleanup().await.unwrap();
}
