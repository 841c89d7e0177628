//! Units inside PostgreSQL: the plain Rust layer with its error paths, and
//! the SQL entry points.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    use crate::audit;
    use crate::datamap::{self, TableRegistration};
    use crate::error::LcError;
    use crate::holds::{self, NewHold};

    fn setup_schema() {
        Spi::run(
            "CREATE SCHEMA t;
             CREATE TABLE t.users (id bigint PRIMARY KEY, email text, name text NOT NULL DEFAULT 'x');
             CREATE TABLE t.posts (id bigint PRIMARY KEY, author_id bigint REFERENCES t.users ON DELETE CASCADE,
                                   ws text, body text, flags jsonb, deleted_at timestamptz);
             INSERT INTO t.users VALUES (1, 'a@example.com'), (2, 'b@example.com');
             INSERT INTO t.posts VALUES (1, 1, 'acme', 'a', NULL, NULL), (2, 2, 'acme', 'b', NULL, NULL),
                                        (3, 1, 'other', 'c', NULL, NULL);
             SELECT lifecycle.register_subject('t.users', 'id');
             SELECT lifecycle.register_table('t.posts', 'user', 'author_id', tenant_column => 'ws',
                                             soft_delete_column => 'deleted_at');",
        )
        .expect("setup");
    }

    fn oid(name: &str) -> Option<pg_sys::Oid> {
        Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[name.into()]).unwrap()
    }

    fn table_reg<'a>(tbl: &'a str, column: &'a str) -> TableRegistration<'a> {
        TableRegistration {
            tbl: oid(tbl),
            subject_type: Some("user"),
            subject_column: Some(column),
            tenant_column: None,
            on_erase: Some("delete"),
            retain_for: None,
            legal_basis: None,
            soft_delete_column: None,
            label: None,
            tenant_via: None,
            subject_via: None,
            redact_mentions: None,
        }
    }

    fn hold<'a>(scope_type: &'a str, scope_id: &'a str, tenant: Option<&'a str>) -> NewHold<'a> {
        NewHold {
            scope_type: Some(scope_type),
            scope_id: Some(scope_id),
            tenant_id: tenant,
            reason: Some("court order 12"),
            created_by: Some("legal@example.com"),
            expires_at: None,
        }
    }

    fn code<T: std::fmt::Debug>(r: Result<T, LcError>) -> &'static str {
        r.expect_err("expected an error").sqlstate
    }

    #[pg_test]
    fn registration_is_idempotent_and_conflicts_are_refused() {
        setup_schema();
        let mut again = table_reg("t.posts", "author_id");
        again.tenant_column = Some("ws");
        again.soft_delete_column = Some("deleted_at");
        datamap::register_table(again).expect("identical registration is a no-op");
        let n = Spi::get_one::<i64>(
            "SELECT count(*) FROM lifecycle.data_map WHERE table_name = 'posts'",
        );
        assert_eq!(n, Ok(Some(1)));
        assert_eq!(
            code(datamap::register_table(table_reg("t.posts", "author_id"))),
            "LC010"
        );
    }

    #[pg_test]
    fn retain_for_is_compared_whatever_the_interval_style() {
        setup_schema();
        Spi::run("CREATE TABLE t.invoices (id bigint PRIMARY KEY, customer bigint)").unwrap();
        let register = |style: &str| {
            Spi::run(&format!("SET LOCAL IntervalStyle = {style}")).unwrap();
            let mut r = table_reg("t.invoices", "customer");
            r.on_erase = Some("retain");
            r.retain_for = Some(pgrx::datum::Interval::new(90, 2, 0).unwrap());
            r.legal_basis = Some("tax law");
            datamap::register_table(r)
        };
        register("iso_8601").expect("first registration");
        register("postgres").expect("the same registration under another IntervalStyle");
        register("sql_standard").expect("and under a third");
        let stored = Spi::get_one::<bool>(
            "SELECT retain_for = interval '7 years 6 mons 2 days'
               FROM lifecycle.data_map WHERE table_name = 'invoices'",
        );
        assert_eq!(stored, Ok(Some(true)));
        let events = Spi::get_one::<i64>(
            "SELECT count(*) FROM lifecycle.audit_log
              WHERE event_type = 'data_map.table_registered' AND details::text LIKE '%invoices%'",
        );
        assert_eq!(events, Ok(Some(1)), "one registration, recorded once");
    }

    #[pg_test]
    fn inheritance_children_of_registered_tables_are_refused() {
        setup_schema();
        Spi::run(
            "CREATE TABLE t.notes (id int PRIMARY KEY, owner bigint);
             CREATE TABLE t.notes_old () INHERITS (t.notes);",
        )
        .unwrap();
        assert_eq!(
            code(datamap::register_table(table_reg("t.notes", "owner"))),
            "0A000"
        );
        let n = Spi::get_one::<i64>(
            "SELECT count(*) FROM lifecycle.data_map WHERE table_name = 'notes'",
        );
        assert_eq!(n, Ok(Some(0)), "a refused registration stores nothing");
        let refused = Spi::get_one::<String>(
            "DO $$ BEGIN CREATE TABLE t.posts_archive () INHERITS (t.posts); \
             RAISE EXCEPTION 'not refused'; EXCEPTION WHEN feature_not_supported THEN NULL; END $$; \
             SELECT to_regclass('t.posts_archive')::text",
        );
        assert_eq!(refused, Ok(None), "the child table was not created");
    }

    #[pg_test]
    fn registration_validates_columns_and_types() {
        setup_schema();
        Spi::run("CREATE TABLE t.notes (id int PRIMARY KEY, owner bigint, flags jsonb, body text NOT NULL)")
            .unwrap();
        assert_eq!(
            code(datamap::register_table(table_reg("t.notes", "missing"))),
            "42703"
        );
        assert_eq!(
            code(datamap::register_table(table_reg("t.notes", "flags"))),
            "42804"
        );
        let mut r = table_reg("t.notes", "owner");
        r.on_erase = Some("shred");
        assert_eq!(code(datamap::register_table(r)), "22023");
        let mut r = table_reg("t.notes", "owner");
        r.on_erase = Some("retain");
        assert_eq!(code(datamap::register_table(r)), "22023");
        let mut r = table_reg("t.notes", "owner");
        r.subject_type = None;
        assert_eq!(code(datamap::register_table(r)), "22004");
        let mut r = table_reg("t.notes", "owner");
        r.subject_type = Some("tenant");
        assert_eq!(code(datamap::register_table(r)), "22023");
        let mut r = table_reg("t.notes", "owner");
        r.soft_delete_column = Some("body");
        assert_eq!(code(datamap::register_table(r)), "42804");
        let n = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 't.notes'::regclass",
        );
        assert_eq!(n, Ok(Some(0)), "a refused registration installs nothing");
    }

    #[pg_test]
    fn column_rules_check_type_and_registration() {
        setup_schema();
        let users = oid("t.users");
        datamap::set_column_rule(users, Some("email"), Some("deleted_email")).unwrap();
        assert_eq!(
            code(datamap::set_column_rule(
                users,
                Some("email"),
                Some("shred")
            )),
            "22023"
        );
        assert_eq!(
            code(datamap::set_column_rule(users, Some("name"), Some("clear"))),
            "42804"
        );
        assert_eq!(
            code(datamap::set_column_rule(users, Some("id"), Some("clear"))),
            "22023"
        );
        assert_eq!(
            code(datamap::set_column_rule(users, Some("nope"), Some("clear"))),
            "42703"
        );
        Spi::run("CREATE TABLE t.other (id int)").unwrap();
        assert_eq!(
            code(datamap::set_column_rule(
                oid("t.other"),
                Some("id"),
                Some("keep")
            )),
            "LC012"
        );
    }

    #[pg_test]
    fn hold_validation() {
        setup_schema();
        let mut h = hold("user", "1", None);
        h.reason = Some("  ");
        assert_eq!(code(holds::place(h)), "22023");
        assert_eq!(code(holds::place(hold("project", "1", None))), "LC022");
        let mut h = hold("user", "1", None);
        h.created_by = None;
        assert_eq!(code(holds::place(h)), "22004");
        assert_eq!(
            code(holds::place(hold("tenant", "acme", Some("other")))),
            "22023"
        );
        let mut h = hold("user", "1", None);
        h.expires_at = Some(
            Spi::get_one::<pgrx::datum::TimestampWithTimeZone>("SELECT now() - interval '1 hour'")
                .unwrap()
                .unwrap(),
        );
        assert_eq!(code(holds::place(h)), "22023");
        let unknown = pgrx::datum::Uuid::from_bytes([7; 16]);
        assert_eq!(
            code(holds::release(Some(unknown), Some("x"), None)),
            "LC020"
        );
        assert_eq!(code(holds::release(None, Some("x"), None)), "22004");
    }

    #[pg_test]
    fn release_twice_is_refused() {
        setup_schema();
        let id = holds::place(hold("user", "1", Some("acme"))).unwrap();
        let uuid = crate::parse_uuid(&id).unwrap();
        holds::release(Some(uuid), Some("legal@example.com"), Some("done")).unwrap();
        assert_eq!(
            code(holds::release(Some(uuid), Some("legal@example.com"), None)),
            "LC021"
        );
    }

    #[pg_test(error = "cannot delete row of table t.posts: it is under legal hold")]
    fn held_row_cannot_be_deleted() {
        setup_schema();
        holds::place(hold("user", "1", Some("acme"))).unwrap();
        Spi::run("DELETE FROM t.posts WHERE id = 1").unwrap();
    }

    #[pg_test(error = "cannot update row of table t.posts: it is under legal hold")]
    fn held_row_cannot_be_updated() {
        setup_schema();
        holds::place(hold("tenant", "acme", None)).unwrap();
        Spi::run("UPDATE t.posts SET body = 'x' WHERE id = 2").unwrap();
    }

    #[pg_test(error = "cannot delete row of table t.posts: it is under legal hold")]
    fn cascade_reaching_held_rows_is_refused() {
        setup_schema();
        // The hold names the tenant: the user row itself (no tenant column) and
        // the user's acme posts are covered.
        Spi::run("SELECT lifecycle.unregister_table('t.users')").unwrap();
        holds::place(hold("user", "1", Some("acme"))).unwrap();
        Spi::run("DELETE FROM t.users WHERE id = 1").unwrap();
    }

    #[pg_test(error = "cannot truncate table t.posts: it holds rows under legal hold")]
    fn truncate_with_held_rows_is_refused() {
        setup_schema();
        holds::place(hold("user", "1", Some("acme"))).unwrap();
        Spi::run("TRUNCATE t.posts").unwrap();
    }

    #[pg_test]
    fn rows_outside_the_scope_stay_writable() {
        setup_schema();
        holds::place(hold("user", "1", Some("acme"))).unwrap();
        Spi::run("UPDATE t.posts SET body = 'ok' WHERE id IN (2, 3)").unwrap();
        // Soft delete: the row stays, the column is set.
        Spi::run("DELETE FROM t.posts WHERE id = 3").unwrap();
        let soft = Spi::get_one::<bool>("SELECT deleted_at IS NOT NULL FROM t.posts WHERE id = 3");
        assert_eq!(soft, Ok(Some(true)));
    }

    /// The row guard's condition reads keys in every stored form: a text key
    /// compressed in the row, and held ids past the linear-search size.
    #[pg_test]
    fn row_condition_reads_compressed_keys_and_many_holds() {
        setup_schema();
        Spi::run(
            "INSERT INTO t.posts VALUES (10, 2, repeat('x', 5000), 'long', NULL, NULL),
                                        (11, 2, repeat('y', 5000), 'long', NULL, NULL)",
        )
        .unwrap();
        let compressed = Spi::get_one::<bool>(
            "SELECT pg_column_compression(ws) IS NOT NULL FROM t.posts WHERE id = 10",
        );
        assert_eq!(compressed, Ok(Some(true)), "the key is stored compressed");
        let long_tenant = "x".repeat(5000);
        holds::place(hold("tenant", &long_tenant, None)).unwrap();
        for user in 100..120 {
            holds::place(hold("user", &user.to_string(), None)).unwrap();
        }
        holds::place(hold("user", "1", None)).unwrap();
        // Twice each: the first statement builds the memo, the second is
        // answered from it.
        for _ in 0..2 {
            Spi::run("UPDATE t.posts SET body = 'free' WHERE id IN (2, 11)")
                .expect("rows outside every hold stay writable");
            let refused = |sql: &str| {
                let r = Spi::run(&format!(
                    "DO $$ BEGIN {sql}; RAISE EXCEPTION 'not refused'; \
                     EXCEPTION WHEN SQLSTATE 'LC001' THEN NULL; END $$"
                ));
                assert!(r.is_ok(), "{sql} must be refused by the row guard: {r:?}");
            };
            refused("UPDATE t.posts SET body = 'no' WHERE id = 10");
            refused("UPDATE t.posts SET body = 'no' WHERE id = 1");
        }
    }

    #[pg_test]
    fn released_hold_stops_blocking() {
        setup_schema();
        let id = holds::place(hold("user", "1", None)).unwrap();
        holds::release(Some(crate::parse_uuid(&id).unwrap()), Some("legal"), None).unwrap();
        Spi::run("UPDATE t.posts SET body = 'free' WHERE id = 1").unwrap();
    }

    #[pg_test]
    fn unregister_under_hold_is_refused() {
        setup_schema();
        holds::place(hold("user", "2", None)).unwrap();
        assert_eq!(code(datamap::unregister_table(oid("t.posts"))), "LC003");
    }

    #[pg_test(error = "cannot update lifecycle.audit_log: the audit log is append-only")]
    fn audit_log_is_append_only() {
        audit::record(audit::Event {
            event_type: "test.event",
            ..audit::Event::default()
        })
        .unwrap();
        Spi::run("UPDATE lifecycle.audit_log SET actor = 'x'").unwrap();
    }

    #[pg_test]
    fn audit_chain_verifies_and_detects_tampering() {
        for i in 0..5 {
            let who = format!("user:{i}");
            audit::record(audit::Event {
                event_type: "test.event",
                actor: Some(&who),
                subject_type: Some("user"),
                subject_id: Some("1"),
                ip: Some("192.0.2.1"),
                details: Some(serde_json::json!({ "n": i })),
                ..audit::Event::default()
            })
            .unwrap();
        }
        let v = audit::verify().unwrap();
        assert!(v.ok);
        assert_eq!(v.checked, 5);
        let second = Spi::get_one::<i64>("SELECT min(id) + 1 FROM lifecycle.audit_log")
            .unwrap()
            .unwrap();
        Spi::run("ALTER TABLE lifecycle.audit_log DISABLE TRIGGER USER").unwrap();
        Spi::run_with_args(
            "UPDATE lifecycle.audit_log SET actor = 'someone else' WHERE id = $1",
            &[second.into()],
        )
        .unwrap();
        let v = audit::verify().unwrap();
        assert!(!v.ok);
        assert_eq!(v.first_bad_id, Some(second));
    }

    #[pg_test]
    fn audit_rejects_bad_events() {
        assert_eq!(code(audit::record_event(audit::Event::default())), "22023");
        let e = audit::Event {
            event_type: "x.y",
            details: Some(serde_json::json!([1, 2])),
            ..audit::Event::default()
        };
        assert_eq!(code(audit::record_event(e)), "22023");
    }

    #[pg_test]
    fn sqlstate_encoding_matches_postgres() {
        use crate::error::sqlstate_code;
        assert_eq!(
            sqlstate_code("22012"),
            PgSqlErrorCode::ERRCODE_DIVISION_BY_ZERO as i32
        );
        assert_eq!(
            sqlstate_code("XX000"),
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR as i32
        );
    }

    #[pg_test]
    fn custom_sqlstate_reaches_sql() {
        setup_schema();
        holds::place(hold("user", "1", None)).unwrap();
        Spi::run(
            "CREATE FUNCTION t.sqlstate_of(cmd text) RETURNS text LANGUAGE plpgsql AS $$
             BEGIN EXECUTE cmd; RETURN 'ok';
             EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE; END $$",
        )
        .unwrap();
        let state =
            Spi::get_one::<String>("SELECT t.sqlstate_of($$DELETE FROM t.posts WHERE id = 1$$)");
        assert_eq!(state, Ok(Some("LC001".to_string())));
    }

    // ----- jobs and erasure ---------------------------------------------------

    fn job_row(status: &str) -> crate::jobs::JobRow {
        crate::jobs::JobRow {
            id: "j1".into(),
            job_type: "erase".into(),
            target_type: "user".into(),
            target_id: "1".into(),
            tenant_id: None,
            status: status.into(),
            requested_by: "alice".into(),
            requires_approval: true,
            approved_by: None,
            rejection_reason: None,
        }
    }

    #[pg_test]
    fn job_trigger_refuses_with_its_sqlstates() {
        use crate::jobs::check_update;
        let code = |r: Result<(), LcError>| r.unwrap_err().sqlstate;
        // INSERT: only pending, or approved without approval.
        assert_eq!(
            code(check_update(None, Some(&job_row("completed")))),
            "LC030"
        );
        let mut auto = job_row("approved");
        auto.requires_approval = false;
        assert!(check_update(None, Some(&auto)).is_ok());
        assert_eq!(
            code(check_update(None, Some(&job_row("approved")))),
            "LC030"
        );
        // Approval by the requester, or by nobody.
        let mut self_approved = job_row("approved");
        self_approved.approved_by = Some("alice".into());
        assert_eq!(
            code(check_update(
                Some(&job_row("pending")),
                Some(&self_approved)
            )),
            "LC031"
        );
        assert_eq!(
            code(check_update(
                Some(&job_row("pending")),
                Some(&job_row("approved"))
            )),
            "22004"
        );
        // Rejection needs a reason.
        let mut rejected = job_row("rejected");
        rejected.rejection_reason = Some("  ".into());
        assert_eq!(
            code(check_update(Some(&job_row("pending")), Some(&rejected))),
            "22023"
        );
        // Finished is finished; what a job is about never changes; no DELETE.
        assert_eq!(
            code(check_update(
                Some(&job_row("completed")),
                Some(&job_row("approved"))
            )),
            "LC030"
        );
        let mut other_target = job_row("pending");
        other_target.target_id = "2".into();
        assert_eq!(
            code(check_update(Some(&job_row("pending")), Some(&other_target))),
            "LC030"
        );
        assert_eq!(
            code(check_update(Some(&job_row("cancelled")), None)),
            "LC030"
        );
        assert!(check_update(Some(&job_row("processing")), Some(&job_row("completed"))).is_ok());
    }

    #[pg_test]
    fn sqlstates_unpack_and_holds_are_found_in_details() {
        use crate::error::sqlstate_code;
        use crate::subxact::unpack_sqlstate;
        let codes = lifecycle_core::Code::ALL.iter().map(|c| c.sqlstate());
        for s in codes.chain(["23503", "08P01"]) {
            assert_eq!(unpack_sqlstate(sqlstate_code(s)), s);
        }
        // A hold refusal keeps its hold's id for the runner, once.
        let id = "0b7e6c1e-8a63-4a3c-9a57-4f3c0e6a1b2c";
        crate::error::take_blocking_hold();
        let _ = crate::error::LcError::held_table_truncate("t").blocked_by(id);
        assert_eq!(crate::error::take_blocking_hold(), Some(id.to_string()));
        assert_eq!(crate::error::take_blocking_hold(), None);
        assert!(crate::jobs::is_transient("40P01") && crate::jobs::is_transient("40001"));
        assert!(!crate::jobs::is_transient("23503") && !crate::jobs::is_transient("LC040"));
        assert!(crate::jobs::is_self_service("user", "42", "user:42"));
        assert!(crate::jobs::is_self_service("user", "42", "42"));
        assert!(!crate::jobs::is_self_service("user", "42", "dba@corp"));
    }

    #[pg_test]
    fn subtransaction_undoes_only_the_failed_part() {
        Spi::run("CREATE TABLE sx (v int)").unwrap();
        let ok = crate::subxact::run(|| {
            Spi::run("INSERT INTO sx VALUES (1)")?;
            Ok(1)
        });
        assert_eq!(ok, Ok(1));
        let failed = crate::subxact::run(|| {
            Spi::run("INSERT INTO sx VALUES (2)")?;
            Spi::run("SELECT 1 / 0")?;
            Ok(2)
        });
        let f = failed.unwrap_err();
        assert_eq!(f.sqlstate, "22012");
        assert!(
            f.statement.is_none(),
            "not run through the extension's helpers"
        );
        let ours = crate::subxact::run(|| -> Result<(), LcError> {
            Spi::run("INSERT INTO sx VALUES (3)")?;
            Err(LcError::job_not_found("x"))
        });
        assert_eq!(ours.unwrap_err().sqlstate, "LC035");
        let via_helper = crate::subxact::run(|| crate::spi::exec("SELECT 1 / 0", &[]));
        assert_eq!(
            via_helper.unwrap_err().statement.as_deref(),
            Some("SELECT 1 / 0")
        );
        let rows =
            Spi::get_one::<String>("SELECT string_agg(v::text, ',' ORDER BY v) FROM sx").unwrap();
        assert_eq!(rows.as_deref(), Some("1"));
    }

    #[pg_test]
    fn erasure_of_a_small_schema_through_the_runner() {
        setup_schema();
        Spi::run(
            "SELECT lifecycle.set_column_rule('t.users', 'email', 'deleted_email');
             UPDATE t.posts SET deleted_at = now() WHERE id = 3;",
        )
        .unwrap();
        let id = Spi::get_one::<String>(
            "SELECT lifecycle.request_erasure('user', '1', NULL, 'dba', cooling_off => '0', \
                                              requires_approval => false)::text",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            Spi::get_one::<i32>("SELECT lifecycle.run_due_jobs()").unwrap(),
            Some(1)
        );
        let status = Spi::get_one_with_args::<String>(
            "SELECT status FROM lifecycle.jobs WHERE id = $1::uuid",
            &[id.as_str().into()],
        )
        .unwrap();
        assert_eq!(status.as_deref(), Some("completed"));
        assert_eq!(
            Spi::get_one::<String>("SELECT email FROM t.users WHERE id = 1")
                .unwrap()
                .as_deref(),
            Some("deleted-1@deleted.local")
        );
        // The soft-deleted post is gone for real; the other stays (delete is
        // the default for posts here: both rows of user 1 are removed).
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM t.posts WHERE author_id = 1").unwrap(),
            Some(0)
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM t.posts WHERE author_id = 2").unwrap(),
            Some(1)
        );
        assert_eq!(
            Spi::get_one::<String>("SELECT lifecycle.subject_state('user', '1')")
                .unwrap()
                .as_deref(),
            Some("erased")
        );
    }

    #[pg_test]
    fn key_values_compare_in_their_own_type() {
        use crate::keys;
        let t = |name: &str| {
            Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regtype::oid", &[name.into()])
                .unwrap()
                .unwrap()
        };
        let canon = |ty: &str, id: &str| keys::canonical(t(ty), id).unwrap();
        assert_eq!(
            canon("uuid", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11").as_deref(),
            Some("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11")
        );
        assert_eq!(canon("bigint", " 0042").as_deref(), Some("42"));
        assert_eq!(canon("integer", "99999999999"), None, "out of range");
        assert_eq!(canon("bigint", "forty-two"), None);
        assert_eq!(canon("uuid", "42"), None);
        assert_eq!(canon("character", "K-1").as_deref(), Some("K-1"));
        assert_eq!(
            canon("text", "nul\0byte"),
            None,
            "no text value holds a NUL"
        );
        // A row's value compares by the type's equality and collation.
        Spi::run(
            "CREATE COLLATION nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
             CREATE TABLE kv (c character(8), h text COLLATE nocase);
             INSERT INTO kv VALUES ('K-1', 'alice');",
        )
        .unwrap();
        let collation =
            Spi::get_one::<pg_sys::Oid>("SELECT oid FROM pg_collation WHERE collname = 'nocase'")
                .unwrap()
                .unwrap();
        Spi::connect(|client| {
            let row = client
                .select("SELECT c, h FROM kv", None, &[])
                .unwrap()
                .first();
            let c = row.get_datum_by_ordinal(1).unwrap().unwrap();
            let h = row.get_datum_by_ordinal(2).unwrap().unwrap();
            unsafe {
                assert!(keys::equals(t("character"), pg_sys::Oid::INVALID, c, "K-1").unwrap());
                assert!(keys::equals(t("text"), collation, h, "ALICE").unwrap());
                assert!(
                    !keys::equals(t("text"), pg_sys::DEFAULT_COLLATION_OID, h, "ALICE").unwrap()
                );
                assert!(!keys::equals(t("character"), pg_sys::Oid::INVALID, c, "K-2").unwrap());
            }
        });
    }

    #[pg_test]
    fn the_extension_parses_under_a_pinned_search_path() {
        Spi::run(
            "CREATE SCHEMA evil;
             CREATE TABLE evil.calls (n int);
             CREATE FUNCTION evil.eq(oid, oid) RETURNS boolean LANGUAGE sql
                 AS 'INSERT INTO evil.calls VALUES (1) RETURNING $1 OPERATOR(pg_catalog.=) $2';
             CREATE OPERATOR evil.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = evil.eq);
             CREATE TEMP TABLE pg_class (oid oid);
             SET search_path = evil, pg_temp, pg_catalog;",
        )
        .unwrap();
        let calls = || Spi::get_one::<i64>("SELECT pg_catalog.count(*) FROM evil.calls").unwrap();
        // Unpinned, the caller's operator and temporary table win...
        Spi::run("SELECT 1 FROM pg_class WHERE oid = 1::oid").unwrap();
        Spi::run("SELECT 1::oid = 1::oid").unwrap();
        assert_eq!(calls(), Some(1));
        // ... pinned, the catalog's.
        let found = crate::namespace::pinned(|| {
            Spi::get_one::<i64>(
                "SELECT count(*) FROM pg_class WHERE oid = 'pg_catalog.pg_class'::regclass",
            )
            .unwrap()
        });
        assert_eq!(
            found,
            Some(1),
            "pg_class is the catalog, not the temporary table"
        );
        assert_eq!(
            calls(),
            Some(1),
            "the caller's operator ran under the pinned path"
        );
        // Nested pins and errors inside leave the caller's path as it was.
        let failed = crate::subxact::run(|| {
            crate::namespace::pinned(|| {
                crate::namespace::pinned(|| crate::spi::exec("SELECT 1 / 0", &[]))
            })
        });
        assert_eq!(failed.unwrap_err().sqlstate, "22012");
        Spi::run("SELECT 1::oid = 1::oid").unwrap();
        assert_eq!(calls(), Some(2), "the caller's path is back");
        Spi::run("RESET search_path").unwrap();
    }
}
