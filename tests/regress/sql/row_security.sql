-- Row-level security on registered tables, as a DBA meets it. The extension
-- reads and changes each table as its owner; an owner is exempt from the
-- table's policies unless the table has FORCE ROW LEVEL SECURITY. With a
-- tenant-isolation policy keyed on a setting the extension's session never
-- sets, the policy would hide every row: the erasure, its preview and the
-- export refuse the table instead (LC044) and change nothing, until the
-- owner may see every row (NO FORCE, or BYPASSRLS). Its own database and a
-- table owner that is not a superuser (a superuser bypasses every policy).
DROP DATABASE IF EXISTS lifecycle_regress_rls;
DROP ROLE IF EXISTS lifecycle_regress_rls_owner;
CREATE DATABASE lifecycle_regress_rls;
\c lifecycle_regress_rls
CREATE EXTENSION lifecycle;
CREATE ROLE lifecycle_regress_rls_owner;

-- Like try() in setup.sql, with job ids masked.
CREATE FUNCTION show(cmd text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text; hnt text;
BEGIN
    EXECUTE cmd;
    RAISE NOTICE 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    msg := regexp_replace(msg, '[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}', '<id>', 'g');
    RAISE NOTICE E'%: %\nDETAIL: %\nHINT: %', st, msg, coalesce(nullif(det, ''), '(none)'),
                 coalesce(nullif(hnt, ''), '(none)');
END $$;

CREATE SCHEMA app AUTHORIZATION lifecycle_regress_rls_owner;
SET ROLE lifecycle_regress_rls_owner;
CREATE TABLE app.workspaces (id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE app.users (id bigint PRIMARY KEY, email text NOT NULL, name text);
CREATE TABLE app.posts (
    id bigint PRIMARY KEY, workspace_id text NOT NULL REFERENCES app.workspaces,
    author_id bigint NOT NULL REFERENCES app.users, body text NOT NULL
);
CREATE TABLE app.notes (
    id bigint PRIMARY KEY, workspace_id text NOT NULL REFERENCES app.workspaces,
    user_id bigint NOT NULL REFERENCES app.users, body text NOT NULL
);
CREATE INDEX ON app.posts (author_id);
CREATE INDEX ON app.posts (workspace_id);
CREATE INDEX ON app.notes (user_id);
CREATE INDEX ON app.notes (workspace_id);
INSERT INTO app.workspaces VALUES ('acme', 'Acme'), ('globex', 'Globex');
INSERT INTO app.users VALUES (1, 'ann@example.com', 'Ann'), (2, 'ben@example.com', 'Ben'),
                             (3, 'cat@example.com', 'Cat');
-- Ann: 10 posts in acme; Ben: 5 posts in globex; Cat: 3 in acme.
INSERT INTO app.posts SELECT p, 'acme', 1, 'post ' || p FROM generate_series(1, 10) p;
INSERT INTO app.posts SELECT p, 'globex', 2, 'post ' || p FROM generate_series(11, 15) p;
INSERT INTO app.posts SELECT p, 'acme', 3, 'post ' || p FROM generate_series(16, 18) p;
INSERT INTO app.notes VALUES (1, 'acme', 1, 'a note'), (2, 'globex', 1, 'another'), (3, 'acme', 3, 'hers');
-- The application's tenant isolation: forced on posts, so that it binds the
-- owner too; enabled (not forced) on notes.
ALTER TABLE app.posts ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.posts FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant ON app.posts USING (workspace_id = current_setting('app.tenant', true));
ALTER TABLE app.notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant ON app.notes USING (workspace_id = current_setting('app.tenant', true));
-- What the application's own sessions see.
SELECT count(*) AS posts_without_tenant FROM app.posts;
SET app.tenant = 'acme';
SELECT count(*) AS posts_in_acme FROM app.posts;
RESET app.tenant;
RESET ROLE;

-- Registration is not refused (the owner may get BYPASSRLS later), but
-- warns about the forced table with what to do.
SELECT lifecycle.register_tenant('app.workspaces', 'id');
SELECT lifecycle.register_subject('app.users', 'id');
SELECT lifecycle.set_column_rule('app.users', 'email', 'deleted_email');
SELECT lifecycle.set_column_rule('app.users', 'name', 'deleted_name');
SELECT lifecycle.register_table('app.posts', 'user', 'author_id', tenant_column => 'workspace_id',
                                label => 'Posts');
SELECT lifecycle.register_table('app.notes', 'user', 'user_id', tenant_column => 'workspace_id',
                                label => 'Notes');
-- guard_status lists it (the control plane's readiness check reports it).
SELECT relation, trigger_name, status FROM lifecycle.guard_status WHERE status <> 'ok';

-- The preview, the export and the erasure refuse it, naming the policy.
SELECT show($$SELECT lifecycle.preview_erasure('user', '1')$$);
SELECT show($$SELECT lifecycle.preview_erasure('tenant', 'acme')$$);
SELECT show($$SELECT * FROM lifecycle.export_contents('user', '1')$$);
SELECT show($$SELECT lifecycle.open_export('user', '1', NULL, 'posts', 'c1')$$);
SELECT lifecycle.request_erasure('user', '1', NULL, 'dba@example.com', 'GDPR Art. 17',
                                 cooling_off => '0 seconds', requires_approval => false) AS job1 \gset
SELECT r->>'status' AS status, r->>'error_sqlstate' AS sqlstate, r->>'error' AS error
  FROM lifecycle.run_job(:'job1') r;
-- The job failed and nothing changed: Ann and all her posts and notes are there.
SELECT status, error_sqlstate, finished_at IS NOT NULL AS finished FROM lifecycle.jobs WHERE id = :'job1';
SELECT (SELECT count(*) FROM app.posts WHERE author_id = 1) AS posts,
       (SELECT count(*) FROM app.notes WHERE user_id = 1) AS notes,
       (SELECT email FROM app.users WHERE id = 1) AS email;
SELECT lifecycle.subject_state('user', '1');
SELECT event_type, details->>'sqlstate' AS sqlstate FROM lifecycle.audit_log
 WHERE event_type = 'job.failed' ORDER BY id;

-- NO FORCE: the owner is exempt again; the same erasure removes every row,
-- and the table with row-level security enabled but not forced (notes)
-- loses all of Ann's rows too, in both workspaces.
ALTER TABLE app.posts NO FORCE ROW LEVEL SECURITY;
SELECT relation, trigger_name, status FROM lifecycle.guard_status WHERE status <> 'ok';
SELECT jsonb_path_query(lifecycle.preview_erasure('user', '1'), '$.steps[*] ? (@.action == "deleted")')
       - 'label' AS would_delete;
SELECT lifecycle.request_erasure('user', '1', NULL, 'dba@example.com', 'GDPR Art. 17',
                                 cooling_off => '0 seconds', requires_approval => false) AS job2 \gset
SELECT lifecycle.run_job(:'job2')->>'status' AS status;
SELECT a->>'table' AS "table", a->>'action' AS action, (a->>'rows')::int AS rows
  FROM lifecycle.jobs, jsonb_array_elements(result->'actions') a WHERE id = :'job2';
SELECT result->'verification'->'ok' AS verified, c->>'table' AS "table", c->>'check' AS "check",
       (c->>'found')::int AS found
  FROM lifecycle.jobs, jsonb_array_elements(result->'verification'->'checked') c
 WHERE id = :'job2' AND c ? 'check';
SELECT (SELECT count(*) FROM app.posts WHERE author_id = 1) AS posts,
       (SELECT count(*) FROM app.notes WHERE user_id = 1) AS notes,
       (SELECT count(*) FROM app.posts) AS all_posts;

-- FORCE again, and the owner gets BYPASSRLS: Ben is erased fully, and his
-- export is read in full.
ALTER TABLE app.posts FORCE ROW LEVEL SECURITY;
SELECT show($$SELECT lifecycle.preview_erasure('user', '2')$$);
ALTER ROLE lifecycle_regress_rls_owner BYPASSRLS;
SELECT relation, trigger_name, status FROM lifecycle.guard_status WHERE status <> 'ok';
BEGIN;
SELECT lifecycle.open_export('user', '2', NULL, 'posts', 'c2');
SELECT count(*) AS exported_posts FROM lifecycle.fetch_export('c2', 100);
COMMIT;
SELECT lifecycle.request_erasure('user', '2', NULL, 'dba@example.com', 'GDPR Art. 17',
                                 cooling_off => '0 seconds', requires_approval => false) AS job3 \gset
SELECT lifecycle.run_job(:'job3')->>'status' AS status;
SELECT (SELECT count(*) FROM app.posts WHERE author_id = 2) AS posts, (SELECT count(*) FROM app.posts) AS all_posts;
ALTER ROLE lifecycle_regress_rls_owner NOBYPASSRLS;

\c lifecycle_regress
DROP DATABASE lifecycle_regress_rls;
DROP ROLE lifecycle_regress_rls_owner;
