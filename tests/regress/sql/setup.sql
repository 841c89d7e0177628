-- The extension and a small SaaS schema for the other tests.
CREATE EXTENSION lifecycle;
SELECT extname, extversion FROM pg_extension WHERE extname = 'lifecycle';

-- Shows how a statement fails: SQLSTATE, message, detail and hint, with
-- hold ids and timestamps masked so that the expected output is stable.
CREATE FUNCTION try(cmd text) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    st text; msg text; det text; hnt text;
BEGIN
    EXECUTE cmd;
    RAISE NOTICE 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
                            det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT;
    msg := regexp_replace(msg, '[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}', '<hold>', 'g');
    det := regexp_replace(det, '[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}', '<hold>', 'g');
    det := regexp_replace(det, '\w{3} \w{3} \d+ \d\d:\d\d:\d\d(\.\d+)? \d{4} \w+', '<time>', 'g');
    RAISE NOTICE E'%: %\nDETAIL: %\nHINT: %', st, msg, coalesce(nullif(det, ''), '(none)'),
                 coalesce(nullif(hnt, ''), '(none)');
END $$;

CREATE SCHEMA app;
CREATE TABLE app.users (
    id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text, phone text, active boolean
);
CREATE TABLE app.workspaces (id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE app.memberships (
    workspace_id text NOT NULL REFERENCES app.workspaces, user_id bigint NOT NULL REFERENCES app.users,
    role text NOT NULL, PRIMARY KEY (workspace_id, user_id)
);
CREATE TABLE app.posts (
    id bigint PRIMARY KEY, workspace_id text NOT NULL REFERENCES app.workspaces,
    author_id bigint REFERENCES app.users ON DELETE CASCADE, body text, deleted_at timestamptz
);
CREATE TABLE app.invoices (
    id bigint PRIMARY KEY, workspace_id text NOT NULL REFERENCES app.workspaces,
    billed_user_id bigint REFERENCES app.users, amount_cents bigint NOT NULL, billing_name text
);
INSERT INTO app.users VALUES (1, 'alice@example.com', 'Alice', '+1 555 0101', true),
                             (2, 'bob@example.com', 'Bob', NULL, true),
                             (3, 'carol@example.com', 'Carol', NULL, true);
INSERT INTO app.workspaces VALUES ('acme', 'Acme'), ('globex', 'Globex');
INSERT INTO app.memberships VALUES ('acme', 1, 'owner'), ('acme', 2, 'member'), ('globex', 1, 'member'), ('globex', 3, 'owner');
INSERT INTO app.posts VALUES (1, 'acme', 1, 'hello from alice', NULL), (2, 'acme', 2, 'hi from bob', NULL),
                             (3, 'globex', 1, 'alice at globex', NULL), (4, 'globex', 3, 'carol', NULL);
INSERT INTO app.invoices VALUES (1, 'acme', 1, 4900, 'Alice A.'), (2, 'globex', 3, 9900, 'Carol C.');
