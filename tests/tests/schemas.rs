//! Registration of tables of every shape an application has: other schemas,
//! names that need quoting, key types, partitioned tables, soft delete.

use lifecycle_tests::{
    count, describe, exec, expect_one_of, expect_sqlstate, guards_not_ok, ok, place_hold, Role,
    TestDb,
};
use tokio_postgres::Client;

async fn setup(prefix: &str) -> (TestDb, Client) {
    let db = TestDb::create(prefix).await.expect("test database");
    let c = db.connect(&Role::Superuser).await.expect("session");
    (db, c)
}

async fn assert_guards_ok(c: &Client, what: &str) {
    assert_eq!(
        guards_not_ok(c).await,
        Vec::<String>::new(),
        "{what}: guard_status is not all ok"
    );
}

#[tokio::test]
async fn mixed_case_quoted_names_in_another_schema() {
    let (db, c) = setup("schemas_quoted").await;
    exec(
        &c,
        r#"
        CREATE SCHEMA "Billing";
        CREATE TABLE "Billing"."Invoice Lines" (
            "Line Id"     bigint PRIMARY KEY,
            "Customer Id" text NOT NULL,
            "Tenant"      text NOT NULL,
            "Memo"        text,
            amount        numeric NOT NULL
        );
        INSERT INTO "Billing"."Invoice Lines"
        SELECT g, 'C-' || (g % 3), CASE WHEN g % 2 = 0 THEN 'Acme' ELSE 'Globex' END,
               'memo ' || g, g * 10
          FROM generate_series(1, 12) AS g;
        SELECT lifecycle.register_table('"Billing"."Invoice Lines"', 'customer', 'Customer Id',
                                        tenant_column => 'Tenant', label => 'Invoice lines');
        SELECT lifecycle.set_column_rule('"Billing"."Invoice Lines"', 'Memo', 'redact');
        "#,
    )
    .await;
    let row = c
        .query_one(
            "SELECT schema_name, table_name, subject_column, tenant_column, column_rules::text \
               FROM lifecycle.data_map WHERE relation = '\"Billing\".\"Invoice Lines\"'::regclass",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("data_map: {}", describe(&e)));
    assert_eq!(row.get::<_, String>(0), "Billing");
    assert_eq!(row.get::<_, String>(1), "Invoice Lines");
    assert_eq!(row.get::<_, String>(2), "Customer Id");
    assert_eq!(row.get::<_, String>(3), "Tenant");
    assert_eq!(row.get::<_, String>(4), r#"{"Memo": "redact"}"#);
    assert_guards_ok(&c, "after registration").await;

    let hold = ok(
        place_hold(&c, "customer", "C-1", Some("Acme"), "Audit of customer C-1").await,
        "place_hold on a customer in tenant Acme",
    );
    let held = count(
        &c,
        r#"SELECT 1 FROM "Billing"."Invoice Lines" WHERE "Customer Id" = 'C-1' AND "Tenant" = 'Acme'"#,
    )
    .await;
    assert!(held > 0);
    let e = expect_sqlstate(
        c.execute(
            r#"DELETE FROM "Billing"."Invoice Lines" WHERE "Customer Id" = 'C-1'"#,
            &[],
        )
        .await,
        "LC001",
        "DELETE of held rows in a quoted table",
    );
    assert!(
        e.message().contains(r#""Billing"."Invoice Lines""#),
        "message {:?} does not name the table",
        e.message()
    );
    assert!(e.detail().unwrap_or_default().contains(&hold.to_string()));
    expect_sqlstate(
        c.execute(r#"TRUNCATE "Billing"."Invoice Lines""#, &[])
            .await,
        "LC002",
        "TRUNCATE of a quoted table with held rows",
    );
    // The same customer in the other tenant is not held.
    assert!(
        ok(
            c.execute(
                r#"DELETE FROM "Billing"."Invoice Lines" WHERE "Customer Id" = 'C-1' AND "Tenant" = 'Globex'"#,
                &[],
            )
            .await,
            "DELETE outside the held tenant",
        ) > 0
    );
    assert_eq!(
        count(
            &c,
            r#"SELECT 1 FROM "Billing"."Invoice Lines" WHERE "Customer Id" = 'C-1'"#
        )
        .await,
        held
    );

    // Renaming the registered column is refused; renaming the table is fine.
    expect_sqlstate(
        c.batch_execute(
            r#"ALTER TABLE "Billing"."Invoice Lines" RENAME COLUMN "Customer Id" TO customer"#,
        )
        .await,
        "LC011",
        "RENAME of a registered column",
    );
    // The row guard's WHEN condition depends on the scope columns, so
    // PostgreSQL itself refuses to drop one (2BP01); with CASCADE the guard
    // trigger would go too, which the DDL guard refuses.
    expect_one_of(
        c.batch_execute(r#"ALTER TABLE "Billing"."Invoice Lines" DROP COLUMN "Tenant""#)
            .await,
        &["LC011", "2BP01"],
        "DROP COLUMN of a registered column",
    );
    expect_sqlstate(
        c.batch_execute(r#"ALTER TABLE "Billing"."Invoice Lines" DROP COLUMN "Memo""#)
            .await,
        "LC011",
        "DROP COLUMN of a column with a rule",
    );
    exec(
        &c,
        r#"ALTER TABLE "Billing"."Invoice Lines" RENAME TO "Invoice Items""#,
    )
    .await;
    expect_sqlstate(
        c.execute(
            r#"DELETE FROM "Billing"."Invoice Items" WHERE "Customer Id" = 'C-1'"#,
            &[],
        )
        .await,
        "LC001",
        "DELETE after renaming the table",
    );
    assert_guards_ok(&c, "after renaming the table").await;
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn uuid_text_and_bigint_keys() {
    let (db, c) = setup("schemas_keys").await;
    exec(
        &c,
        "
        CREATE TABLE workspaces (id uuid PRIMARY KEY, name text NOT NULL);
        CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);
        CREATE TABLE devices (
            id           uuid PRIMARY KEY,
            workspace_id uuid NOT NULL REFERENCES workspaces,
            label        text
        );
        CREATE TABLE customers (code text PRIMARY KEY, workspace_id uuid NOT NULL, name text);
        CREATE TABLE logins (
            id           bigserial PRIMARY KEY,
            user_id      bigint NOT NULL REFERENCES users,
            workspace_id uuid NOT NULL REFERENCES workspaces,
            at           timestamptz NOT NULL DEFAULT now()
        );
        INSERT INTO workspaces VALUES
            ('00000000-0000-4000-8000-00000000000a', 'A'),
            ('00000000-0000-4000-8000-00000000000b', 'B');
        INSERT INTO users SELECT g, 'u' || g || '@example.com' FROM generate_series(1, 4) AS g;
        INSERT INTO devices VALUES
            ('11111111-1111-4111-8111-111111111111', '00000000-0000-4000-8000-00000000000a', 'd1'),
            ('22222222-2222-4222-8222-222222222222', '00000000-0000-4000-8000-00000000000b', 'd2');
        INSERT INTO customers VALUES
            ('ACME-001', '00000000-0000-4000-8000-00000000000a', 'Acme'),
            ('GLOBEX-002', '00000000-0000-4000-8000-00000000000b', 'Globex');
        INSERT INTO logins (user_id, workspace_id)
        SELECT 1 + g % 4,
               CASE WHEN g % 2 = 0 THEN '00000000-0000-4000-8000-00000000000a'::uuid
                    ELSE '00000000-0000-4000-8000-00000000000b'::uuid END
          FROM generate_series(1, 16) AS g;
        SELECT lifecycle.register_tenant('workspaces', 'id');
        SELECT lifecycle.register_subject('users', 'id');
        SELECT lifecycle.register_table('devices', 'device', 'id', 'workspace_id');
        SELECT lifecycle.register_table('customers', 'customer', 'code', 'workspace_id');
        SELECT lifecycle.register_table('logins', 'user', 'user_id', 'workspace_id');
        ",
    )
    .await;
    assert_eq!(count(&c, "SELECT 1 FROM lifecycle.data_map").await, 5);
    assert_guards_ok(&c, "after registration").await;

    // uuid subject key
    let device_hold = ok(
        place_hold(
            &c,
            "device",
            "11111111-1111-4111-8111-111111111111",
            None,
            "Device seized",
        )
        .await,
        "hold on a uuid key",
    );
    let e = expect_sqlstate(
        c.execute(
            "DELETE FROM devices WHERE id = '11111111-1111-4111-8111-111111111111'",
            &[],
        )
        .await,
        "LC001",
        "DELETE of a held uuid-keyed row",
    );
    assert!(e
        .detail()
        .unwrap_or_default()
        .contains(&device_hold.to_string()));
    assert_eq!(
        ok(
            c.execute(
                "DELETE FROM devices WHERE id = '22222222-2222-4222-8222-222222222222'",
                &[]
            )
            .await,
            "DELETE of another device",
        ),
        1
    );

    // text subject key
    ok(
        place_hold(&c, "customer", "ACME-001", None, "Contract dispute").await,
        "hold on a text key",
    );
    expect_sqlstate(
        c.execute(
            "UPDATE customers SET name = 'x' WHERE code = 'ACME-001'",
            &[],
        )
        .await,
        "LC001",
        "UPDATE of a held text-keyed row",
    );
    assert_eq!(
        ok(
            c.execute(
                "UPDATE customers SET name = 'y' WHERE code = 'GLOBEX-002'",
                &[]
            )
            .await,
            "UPDATE of another customer",
        ),
        1
    );

    // bigint subject key, on the subject table and a data table
    ok(
        place_hold(&c, "user", "3", None, "Employment claim").await,
        "hold on a bigint key",
    );
    expect_sqlstate(
        c.execute("DELETE FROM logins WHERE user_id = 3", &[]).await,
        "LC001",
        "DELETE of held bigint-keyed rows",
    );
    expect_sqlstate(
        c.execute("UPDATE users SET email = 'gone' WHERE id = 3", &[])
            .await,
        "LC001",
        "UPDATE of a held subject row",
    );
    assert_eq!(
        ok(
            c.execute("DELETE FROM logins WHERE user_id = 2", &[]).await,
            "DELETE of logins of another user",
        ),
        4
    );

    // tenant hold on a uuid tenant key reaches every tenant-scoped table
    ok(
        place_hold(
            &c,
            "tenant",
            "00000000-0000-4000-8000-00000000000b",
            None,
            "Workspace B under investigation",
        )
        .await,
        "tenant hold on a uuid key",
    );
    expect_sqlstate(
        c.execute("DELETE FROM customers WHERE code = 'GLOBEX-002'", &[])
            .await,
        "LC001",
        "DELETE of a row in a held tenant",
    );
    expect_sqlstate(
        c.execute(
            "DELETE FROM logins WHERE workspace_id = '00000000-0000-4000-8000-00000000000b'",
            &[],
        )
        .await,
        "LC001",
        "DELETE of logins in a held tenant",
    );
    // The guard runs after the row is changed (AFTER ROW): when a NO ACTION
    // foreign key refuses the statement as well, its error is reported
    // first. Either way the statement is refused and nothing changes.
    expect_one_of(
        c.execute(
            "DELETE FROM workspaces WHERE id = '00000000-0000-4000-8000-00000000000b'",
            &[],
        )
        .await,
        &["LC001", "23503"],
        "DELETE of the held tenant itself",
    );
    // Logins of user 4 in workspace A: neither user nor tenant held.
    assert_eq!(
        ok(
            c.execute(
                "DELETE FROM logins WHERE user_id = 4 \
                    AND workspace_id = '00000000-0000-4000-8000-00000000000a'",
                &[],
            )
            .await,
            "DELETE of rows no hold covers",
        ),
        0,
        "user 4 has logins only in odd rows (workspace B)"
    );
    assert_eq!(
        ok(
            c.execute(
                "DELETE FROM logins WHERE user_id = 1 \
                    AND workspace_id = '00000000-0000-4000-8000-00000000000a'",
                &[],
            )
            .await,
            "DELETE of rows no hold covers",
        ),
        4
    );
    db.cleanup().await.expect("cleanup");
}

const PARTITIONED: &str = "
    CREATE TABLE events (
        id        bigint NOT NULL,
        tenant_id text   NOT NULL,
        user_id   bigint NOT NULL,
        payload   text,
        PRIMARY KEY (tenant_id, id)
    ) PARTITION BY LIST (tenant_id);
    CREATE TABLE events_acme PARTITION OF events FOR VALUES IN ('acme');
    CREATE TABLE events_globex PARTITION OF events FOR VALUES IN ('globex');
    CREATE TABLE events_other PARTITION OF events DEFAULT;
    INSERT INTO events SELECT g, 'acme', 1 + g % 3, 'a' || g FROM generate_series(1, 9) AS g;
    INSERT INTO events SELECT g, 'globex', 2, 'g' || g FROM generate_series(1, 5) AS g;
    INSERT INTO events SELECT g, 'umbrella', 3, 'u' || g FROM generate_series(1, 5) AS g;
    SELECT lifecycle.register_table('events', 'user', 'user_id', 'tenant_id');
";

#[tokio::test]
async fn partitioned_table_is_guarded_in_every_partition() {
    let (db, c) = setup("schemas_partitioned").await;
    exec(&c, PARTITIONED).await;
    assert_guards_ok(&c, "after registration").await;
    let partitions_in_status = count(
        &c,
        "SELECT DISTINCT relation FROM lifecycle.guard_status WHERE registered = 'events'::regclass",
    )
    .await;
    assert_eq!(
        partitions_in_status, 4,
        "guard_status should list the parent and 3 partitions"
    );

    let hold = ok(
        place_hold(&c, "user", "1", None, "Hold on user 1").await,
        "place_hold",
    );
    let before = count(&c, "SELECT 1 FROM events").await;

    let e = expect_sqlstate(
        c.execute("DELETE FROM events WHERE user_id = 1", &[]).await,
        "LC001",
        "DELETE through the parent",
    );
    assert!(e.detail().unwrap_or_default().contains(&hold.to_string()));
    expect_sqlstate(
        c.execute("DELETE FROM events_acme WHERE user_id = 1", &[])
            .await,
        "LC001",
        "DELETE in the partition directly",
    );
    expect_sqlstate(
        c.execute("UPDATE events SET payload = 'x' WHERE user_id = 1", &[])
            .await,
        "LC001",
        "UPDATE through the parent",
    );
    // Moving a held row to another partition is an UPDATE of it too. (A
    // unique violation in the target partition, checked before the AFTER
    // ROW guard runs, may be what reports the refusal.)
    expect_one_of(
        c.execute(
            "UPDATE events SET tenant_id = 'globex' WHERE user_id = 1",
            &[],
        )
        .await,
        &["LC001", "23505"],
        "UPDATE moving held rows across partitions",
    );
    let e = expect_sqlstate(
        c.execute("TRUNCATE events_acme", &[]).await,
        "LC002",
        "TRUNCATE of a partition with held rows",
    );
    assert!(e.detail().unwrap_or_default().contains(&hold.to_string()));
    expect_sqlstate(
        c.execute("TRUNCATE events", &[]).await,
        "LC002",
        "TRUNCATE of the parent",
    );
    assert_eq!(count(&c, "SELECT 1 FROM events").await, before);
    // A partition without held rows can be truncated.
    ok(
        c.execute("TRUNCATE events_other", &[]).await,
        "TRUNCATE of a partition without held rows",
    );

    // A partition created after registration is guarded too.
    exec(
        &c,
        "CREATE TABLE events_initech PARTITION OF events FOR VALUES IN ('initech');
         INSERT INTO events SELECT g, 'initech', 1, 'i' || g FROM generate_series(1, 3) AS g;",
    )
    .await;
    assert_guards_ok(&c, "after CREATE TABLE ... PARTITION OF").await;
    assert_eq!(
        count(
            &c,
            "SELECT 1 FROM lifecycle.guard_status WHERE relation = 'events_initech'::regclass"
        )
        .await,
        2
    );
    expect_sqlstate(
        c.execute("DELETE FROM events_initech WHERE user_id = 1", &[])
            .await,
        "LC001",
        "DELETE in a partition created after registration",
    );
    expect_sqlstate(
        c.execute("TRUNCATE events_initech", &[]).await,
        "LC002",
        "TRUNCATE of a partition created after registration",
    );

    // A table attached as a partition gets the guards as well.
    exec(
        &c,
        "CREATE TABLE events_hooli (LIKE events INCLUDING ALL);
         INSERT INTO events_hooli VALUES (1, 'hooli', 1, 'h1');
         ALTER TABLE events ATTACH PARTITION events_hooli FOR VALUES IN ('hooli');",
    )
    .await;
    assert_guards_ok(&c, "after ATTACH PARTITION").await;
    expect_sqlstate(
        c.execute("DELETE FROM events_hooli", &[]).await,
        "LC001",
        "DELETE in an attached partition",
    );
    expect_sqlstate(
        c.execute("TRUNCATE events_hooli", &[]).await,
        "LC002",
        "TRUNCATE of an attached partition",
    );

    // Detaching or dropping a partition with held rows is refused.
    let e = expect_sqlstate(
        c.batch_execute("ALTER TABLE events DETACH PARTITION events_acme")
            .await,
        "LC003",
        "DETACH PARTITION of a partition with held rows",
    );
    assert!(e.detail().unwrap_or_default().contains(&hold.to_string()));
    expect_sqlstate(
        c.batch_execute("DROP TABLE events_initech").await,
        "LC003",
        "DROP of a partition with held rows",
    );
    assert_eq!(
        count(
            &c,
            "SELECT 1 FROM pg_inherits WHERE inhrelid = 'events_acme'::regclass"
        )
        .await,
        1
    );
    // A partition without held rows can be detached; it is no longer guarded.
    exec(&c, "ALTER TABLE events DETACH PARTITION events_globex").await;
    assert_guards_ok(&c, "after DETACH of an unheld partition").await;
    ok(
        c.execute("TRUNCATE events_globex", &[]).await,
        "TRUNCATE of the detached partition",
    );
    assert_eq!(
        count(&c, "SELECT 1 FROM events WHERE user_id = 1").await,
        3 + 3 + 1
    );
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn detach_partition_concurrently_of_held_partition_is_refused() {
    let (db, c) = setup("schemas_detach_conc").await;
    // DETACH ... CONCURRENTLY needs a table without a default partition.
    exec(
        &c,
        "
        CREATE TABLE visits (
            id        bigint NOT NULL,
            tenant_id text   NOT NULL,
            user_id   bigint NOT NULL,
            PRIMARY KEY (tenant_id, id)
        ) PARTITION BY LIST (tenant_id);
        CREATE TABLE visits_acme PARTITION OF visits FOR VALUES IN ('acme');
        CREATE TABLE visits_globex PARTITION OF visits FOR VALUES IN ('globex');
        INSERT INTO visits VALUES (1, 'acme', 1), (2, 'acme', 2), (3, 'globex', 2);
        SELECT lifecycle.register_table('visits', 'user', 'user_id', 'tenant_id');
        ",
    )
    .await;
    let hold = ok(
        place_hold(&c, "user", "1", None, "Hold on user 1").await,
        "place_hold",
    );
    let e = expect_sqlstate(
        c.batch_execute("ALTER TABLE visits DETACH PARTITION visits_acme CONCURRENTLY")
            .await,
        "LC003",
        "DETACH PARTITION ... CONCURRENTLY of a partition with held rows",
    );
    assert!(e.detail().unwrap_or_default().contains(&hold.to_string()));

    // DETACH ... CONCURRENTLY commits its first step before any event
    // trigger runs, so the refusal cannot undo it: the partition is left
    // pending detach. Its held rows stay guarded all the same, and the
    // FINALIZE step that would complete the detach is refused.
    let pending: Vec<bool> = c
        .query(
            "SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = 'visits_acme'::regclass",
            &[],
        )
        .await
        .unwrap_or_else(|e| panic!("{}", describe(&e)))
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(pending, vec![true], "visits_acme is pending detach");
    assert_guards_ok(&c, "after the refused DETACH CONCURRENTLY").await;
    expect_sqlstate(
        c.execute("TRUNCATE visits_acme", &[]).await,
        "LC002",
        "TRUNCATE of the partition after the refused DETACH CONCURRENTLY",
    );
    expect_sqlstate(
        c.execute("DELETE FROM visits_acme WHERE user_id = 1", &[])
            .await,
        "LC001",
        "DELETE in the partition after the refused DETACH CONCURRENTLY",
    );
    assert_eq!(
        count(&c, "SELECT 1 FROM visits_acme WHERE user_id = 1").await,
        1,
        "the held row is gone"
    );
    expect_sqlstate(
        c.batch_execute("ALTER TABLE visits DETACH PARTITION visits_acme FINALIZE")
            .await,
        "LC003",
        "DETACH PARTITION ... FINALIZE of a partition with held rows",
    );
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn range_partitioned_table_with_subpartitions() {
    let (db, c) = setup("schemas_range").await;
    exec(
        &c,
        "
        CREATE TABLE audit_trail (
            at      date   NOT NULL,
            user_id bigint NOT NULL,
            what    text
        ) PARTITION BY RANGE (at);
        CREATE TABLE audit_trail_2023 PARTITION OF audit_trail
            FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
        CREATE TABLE audit_trail_2024 PARTITION OF audit_trail
            FOR VALUES FROM ('2024-01-01') TO ('2025-01-01') PARTITION BY HASH (user_id);
        CREATE TABLE audit_trail_2024_h0 PARTITION OF audit_trail_2024
            FOR VALUES WITH (MODULUS 2, REMAINDER 0);
        CREATE TABLE audit_trail_2024_h1 PARTITION OF audit_trail_2024
            FOR VALUES WITH (MODULUS 2, REMAINDER 1);
        INSERT INTO audit_trail
        SELECT date '2023-06-01' + g * 30, 1 + g % 2, 'w' || g FROM generate_series(0, 15) AS g;
        SELECT lifecycle.register_table('audit_trail', 'user', 'user_id');
        ",
    )
    .await;
    assert_guards_ok(&c, "after registration").await;
    ok(
        place_hold(&c, "user", "2", None, "Hold on user 2").await,
        "place_hold",
    );
    for leaf in [
        "audit_trail_2023",
        "audit_trail_2024_h0",
        "audit_trail_2024_h1",
    ] {
        let held = count(&c, &format!("SELECT 1 FROM {leaf} WHERE user_id = 2")).await;
        if held == 0 {
            continue;
        }
        expect_sqlstate(
            c.execute(&format!("DELETE FROM {leaf} WHERE user_id = 2"), &[])
                .await,
            "LC001",
            &format!("DELETE in {leaf}"),
        );
        expect_sqlstate(
            c.execute(&format!("TRUNCATE {leaf}"), &[]).await,
            "LC002",
            &format!("TRUNCATE {leaf}"),
        );
    }
    expect_sqlstate(
        c.execute("TRUNCATE audit_trail_2024", &[]).await,
        "LC002",
        "TRUNCATE of a sub-partitioned partition",
    );
    expect_sqlstate(
        c.batch_execute("ALTER TABLE audit_trail DETACH PARTITION audit_trail_2024")
            .await,
        "LC003",
        "DETACH of a sub-partitioned partition with held rows",
    );
    // A new sub-partition is guarded.
    exec(
        &c,
        "CREATE TABLE audit_trail_2025 PARTITION OF audit_trail
             FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
         INSERT INTO audit_trail VALUES ('2025-03-01', 2, 'late');",
    )
    .await;
    assert_guards_ok(&c, "after adding a partition").await;
    expect_sqlstate(
        c.execute("TRUNCATE audit_trail_2025", &[]).await,
        "LC002",
        "TRUNCATE of a new range partition",
    );
    ok(
        c.execute("DELETE FROM audit_trail WHERE user_id = 1", &[])
            .await,
        "DELETE of rows not held",
    );
    assert_eq!(
        count(&c, "SELECT 1 FROM audit_trail WHERE user_id = 1").await,
        0
    );
    db.cleanup().await.expect("cleanup");
}

#[tokio::test]
async fn soft_delete_keeps_the_row() {
    let (db, c) = setup("schemas_soft").await;
    exec(
        &c,
        "
        CREATE TABLE comments (
            id         bigint PRIMARY KEY,
            user_id    bigint NOT NULL,
            body       text,
            deleted_at timestamptz
        );
        CREATE TABLE files (
            id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            user_id    bigint NOT NULL,
            is_deleted boolean NOT NULL DEFAULT false
        );
        CREATE TABLE drafts (id bigint PRIMARY KEY, user_id bigint NOT NULL, removed_on date);
        INSERT INTO comments SELECT g, 1 + g % 2, 'comment ' || g, NULL FROM generate_series(1, 6) AS g;
        INSERT INTO files (user_id) SELECT 1 + g % 2 FROM generate_series(1, 6) AS g;
        INSERT INTO drafts SELECT g, 1 + g % 2 FROM generate_series(1, 6) AS g;
        SELECT lifecycle.register_table('comments', 'user', 'user_id', soft_delete_column => 'deleted_at');
        SELECT lifecycle.register_table('files', 'user', 'user_id', soft_delete_column => 'is_deleted');
        SELECT lifecycle.register_table('drafts', 'user', 'user_id', soft_delete_column => 'removed_on');
        ",
    )
    .await;
    assert_guards_ok(&c, "after registration").await;
    assert_eq!(
        count(
            &c,
            "SELECT 1 FROM lifecycle.guard_status WHERE trigger_name = 'lifecycle_soft_delete'"
        )
        .await,
        3
    );

    ok(
        c.execute("DELETE FROM comments WHERE id = 1", &[]).await,
        "soft DELETE",
    );
    let (exists, deleted_at_set): (bool, bool) = c
        .query_one(
            "SELECT count(*) = 1, bool_and(deleted_at IS NOT NULL) FROM comments WHERE id = 1",
            &[],
        )
        .await
        .map(|r| (r.get(0), r.get(1)))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert!(exists, "the soft-deleted row is gone");
    assert!(deleted_at_set, "deleted_at was not set");
    assert_eq!(count(&c, "SELECT 1 FROM comments").await, 6);
    assert_eq!(
        count(&c, "SELECT 1 FROM comments WHERE deleted_at IS NULL").await,
        5
    );

    // A second DELETE keeps the first timestamp.
    let first: String = c
        .query_one("SELECT deleted_at::text FROM comments WHERE id = 1", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    ok(
        c.execute("DELETE FROM comments WHERE id = 1", &[]).await,
        "second soft DELETE",
    );
    let second: String = c
        .query_one("SELECT deleted_at::text FROM comments WHERE id = 1", &[])
        .await
        .map(|r| r.get(0))
        .unwrap_or_else(|e| panic!("{}", describe(&e)));
    assert_eq!(first, second);

    ok(
        c.execute("DELETE FROM files WHERE user_id = 2", &[]).await,
        "soft DELETE with a boolean column",
    );
    assert_eq!(count(&c, "SELECT 1 FROM files").await, 6);
    assert_eq!(count(&c, "SELECT 1 FROM files WHERE is_deleted").await, 3);

    ok(
        c.execute("DELETE FROM drafts WHERE user_id = 1", &[]).await,
        "soft DELETE with a date column",
    );
    assert_eq!(count(&c, "SELECT 1 FROM drafts").await, 6);
    assert_eq!(
        count(&c, "SELECT 1 FROM drafts WHERE removed_on = current_date").await,
        3
    );

    // A held row is not soft-deleted either.
    ok(
        place_hold(&c, "user", "2", None, "Hold on user 2").await,
        "place_hold",
    );
    expect_sqlstate(
        c.execute("DELETE FROM comments WHERE id = 3", &[]).await,
        "LC001",
        "soft DELETE of a held row",
    );
    assert_eq!(
        count(
            &c,
            "SELECT 1 FROM comments WHERE id = 3 AND deleted_at IS NULL"
        )
        .await,
        1
    );
    db.cleanup().await.expect("cleanup");
}
