//! Row-level security and the erasure engine: a table whose policies
//! would hide rows from the role the engine reads it as is refused
//! (`LC044`, see `crate::row_security`), as the preview shows.

#[pgrx::pg_schema]
mod tests {
    use std::rc::Rc;

    use pgrx::prelude::*;
    use serde_json::Value;

    use crate::error::LcError;
    use crate::privilege;

    /// A workspace schema owned by a role that is neither a superuser nor
    /// BYPASSRLS (pg_test runs as a superuser, which row-level security
    /// never applies to): users, posts by tenant, comments reaching their
    /// workspace through their post.
    fn setup() {
        Spi::run(
            "CREATE ROLE rls_owner NOLOGIN;
             CREATE ROLE rls_other NOLOGIN;
             CREATE SCHEMA rls AUTHORIZATION rls_owner;
             GRANT USAGE ON SCHEMA rls TO rls_other;
             CREATE TABLE rls.workspaces (id text PRIMARY KEY, name text NOT NULL);
             CREATE TABLE rls.users (id bigint PRIMARY KEY, email text NOT NULL, name text);
             CREATE TABLE rls.posts (id bigint PRIMARY KEY, workspace_id text NOT NULL REFERENCES rls.workspaces,
                                     author_id bigint NOT NULL REFERENCES rls.users, body text);
             CREATE TABLE rls.comments (id bigint PRIMARY KEY, post_id bigint NOT NULL REFERENCES rls.posts,
                                        author_id bigint NOT NULL REFERENCES rls.users, body text);
             CREATE INDEX ON rls.posts (author_id);
             CREATE INDEX ON rls.posts (workspace_id);
             CREATE INDEX ON rls.comments (author_id);
             CREATE INDEX ON rls.comments (post_id);
             INSERT INTO rls.workspaces VALUES ('acme', 'Acme'), ('globex', 'Globex');
             INSERT INTO rls.users VALUES (1, 'ann@example.com', 'Ann'), (2, 'bo@example.com', 'Bo');
             INSERT INTO rls.posts SELECT p, CASE WHEN p <= 6 THEN 'acme' ELSE 'globex' END,
                                          1 + p % 2, 'post ' || p FROM generate_series(1, 10) p;
             INSERT INTO rls.comments SELECT c, c, 1 + c % 2, 'comment ' || c FROM generate_series(1, 10) c;
             ALTER TABLE rls.workspaces OWNER TO rls_owner;
             ALTER TABLE rls.users OWNER TO rls_owner;
             ALTER TABLE rls.posts OWNER TO rls_owner;
             ALTER TABLE rls.comments OWNER TO rls_owner;
             SELECT lifecycle.register_tenant('rls.workspaces', 'id');
             SELECT lifecycle.register_subject('rls.users', 'id');
             SELECT lifecycle.set_column_rule('rls.users', 'email', 'deleted_email');
             SELECT lifecycle.register_table('rls.posts', 'user', 'author_id', tenant_column => 'workspace_id');
             SELECT lifecycle.register_table('rls.comments', 'user', 'author_id', tenant_via => 'post_id');
             CREATE POLICY tenant ON rls.posts
                 USING (workspace_id = current_setting('app.tenant', true));",
        )
        .expect("setup");
    }

    fn oid(name: &str) -> pg_sys::Oid {
        Spi::get_one_with_args::<pg_sys::Oid>("SELECT $1::regclass::oid", &[name.into()])
            .unwrap()
            .unwrap()
    }

    fn preview(target_type: &str, id: &str) -> Result<Value, LcError> {
        crate::erasure::preview::preview(target_type, id, None, None)
    }

    /// Rows the preview of user 1's erasure would delete from rls.posts.
    fn posts_deleted(v: &Value) -> u64 {
        v["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s["table"] == "rls.posts" && s["action"] == "deleted")
            .filter_map(|s| s["rows"].as_u64())
            .sum()
    }

    fn refused(r: Result<Value, LcError>) -> LcError {
        let e = r.expect_err("refused");
        assert_eq!(e.sqlstate, "LC044", "{e:?}");
        e
    }

    /// A table forcing row-level security on an owner who cannot bypass it
    /// is refused with LC044, naming the table, its policy and what to do;
    /// NO FORCE, BYPASSRLS and a superuser owner each let every row
    /// through. Each change counts at once, while the kept data map is the
    /// same (the facts are read from the system caches, not kept with it).
    #[pg_test]
    fn forced_row_security_is_refused_until_the_owner_sees_every_row() {
        setup();
        let map = crate::erasure::load_map().unwrap();
        let all = preview("user", "1").unwrap();
        assert_eq!(posts_deleted(&all), 5, "{all}");

        // Enabled but not forced: the owner is exempt.
        Spi::run("ALTER TABLE rls.posts ENABLE ROW LEVEL SECURITY").unwrap();
        assert_eq!(posts_deleted(&preview("user", "1").unwrap()), 5);

        Spi::run("ALTER TABLE rls.posts FORCE ROW LEVEL SECURITY").unwrap();
        let e = refused(preview("user", "1"));
        assert_eq!(
            e.message,
            "row-level security would hide rows of table rls.posts from the erasure preview"
        );
        let detail = e.detail.unwrap_or_default();
        assert!(detail.contains("role \"rls_owner\""), "{detail}");
        assert!(detail.contains("FORCE ROW LEVEL SECURITY"), "{detail}");
        assert!(detail.contains("policy \"tenant\""), "{detail}");
        assert_eq!(
            e.hint.as_deref(),
            Some(
                "Run ALTER TABLE rls.posts NO FORCE ROW LEVEL SECURITY (its owner is then exempt \
                 from its policies, as by default), or ALTER ROLE rls_owner BYPASSRLS."
            )
        );
        // The reads of the owner switch refuse it too, whoever asks.
        assert_eq!(
            privilege::table_owner(oid("rls.posts"))
                .unwrap_err()
                .sqlstate,
            "LC044"
        );
        // A workspace's erasure reads the posts as well.
        refused(preview("tenant", "acme"));

        Spi::run("ALTER TABLE rls.posts NO FORCE ROW LEVEL SECURITY").unwrap();
        assert_eq!(posts_deleted(&preview("user", "1").unwrap()), 5);

        Spi::run("ALTER TABLE rls.posts FORCE ROW LEVEL SECURITY").unwrap();
        refused(preview("user", "1"));
        Spi::run("ALTER ROLE rls_owner BYPASSRLS").unwrap();
        assert_eq!(posts_deleted(&preview("user", "1").unwrap()), 5);
        Spi::run("ALTER ROLE rls_owner NOBYPASSRLS").unwrap();
        refused(preview("user", "1"));
        // A policy that lets some rows through is refused all the same.
        Spi::run(
            "DROP POLICY tenant ON rls.posts;
             CREATE POLICY few ON rls.posts USING (id <= 3)",
        )
        .unwrap();
        let e = refused(preview("user", "1"));
        assert!(e.detail.unwrap_or_default().contains("policy \"few\""));
        // No policy at all: row-level security hides every row.
        Spi::run("DROP POLICY few ON rls.posts").unwrap();
        let e = refused(preview("user", "1"));
        assert!(
            e.detail
                .unwrap_or_default()
                .contains("no policy of the table applies"),
            "no policy"
        );
        assert!(
            Rc::ptr_eq(&map, &crate::erasure::load_map().unwrap()),
            "the data map was kept throughout (an owner, below, is part of it)"
        );
        // A superuser owner sees every row; the comments on the posts are
        // still found through the posts as the comments' owner, who now
        // does not own the posts.
        Spi::run("ALTER TABLE rls.posts OWNER TO CURRENT_USER").unwrap();
        let e = refused(preview("user", "1"));
        assert!(e
            .detail
            .unwrap_or_default()
            .contains("as role \"rls_owner\", the owner of a table whose rows it selects"));
        Spi::run("ALTER TABLE rls.comments OWNER TO CURRENT_USER").unwrap();
        assert_eq!(
            posts_deleted(&preview("user", "1").unwrap()),
            5,
            "superuser owner"
        );
    }

    /// A table read inside a statement on another table is read as that
    /// table's owner: where that role does not own it and row-level
    /// security is enabled (forced or not), its policies would filter the
    /// rows the statement selects through it, and the plan is refused.
    #[pg_test]
    fn a_table_read_through_another_owner_is_checked_for_that_owner() {
        setup();
        Spi::run(
            "ALTER TABLE rls.comments OWNER TO rls_other;
             GRANT SELECT ON rls.posts TO rls_other;
             ALTER TABLE rls.posts ENABLE ROW LEVEL SECURITY;",
        )
        .unwrap();
        // The comments on the posts erased with their author, and a
        // workspace's comments, are found through the posts, read as the
        // comments' owner.
        for (target_type, id) in [("user", "1"), ("tenant", "acme")] {
            let e = refused(preview(target_type, id));
            assert_eq!(
                e.message,
                "row-level security would hide rows of table rls.posts from the erasure preview"
            );
            let detail = e.detail.unwrap_or_default();
            assert!(detail.contains("as role \"rls_other\""), "{detail}");
            assert!(detail.contains("does not own rls.posts"), "{detail}");
            assert!(e
                .hint
                .unwrap_or_default()
                .contains("ALTER ROLE rls_other BYPASSRLS"));
        }
        // The comments' owner reading its own table only: no refusal.
        Spi::run("ALTER TABLE rls.posts DISABLE ROW LEVEL SECURITY").unwrap();
        preview("user", "1").unwrap();
        Spi::run("ALTER TABLE rls.posts ENABLE ROW LEVEL SECURITY").unwrap();
        Spi::run("ALTER TABLE rls.comments OWNER TO rls_owner").unwrap();
        preview("user", "1").unwrap();
        preview("tenant", "acme").unwrap();
    }
}
