-- Exports as a DBA sees them: labels and exclusions in the data map, what a
-- subject's and a workspace's export hold, cursors on their rows from one
-- snapshot, the 24-hour limit, and a bundle's life: stored, downloaded,
-- expired. Its own database and schema.
DROP DATABASE IF EXISTS lifecycle_regress_exports;
CREATE DATABASE lifecycle_regress_exports;
\c lifecycle_regress_exports
CREATE EXTENSION lifecycle;

-- Like try() in setup.sql, with job ids and times masked.
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
    det := regexp_replace(det, '[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}', '<id>', 'g');
    det := regexp_replace(det, '\d{4}-\d\d-\d\d[T ][0-9:.]+([+-]\d\d(:\d\d)?|Z)?', '<time>', 'g');
    RAISE NOTICE E'%: %\nDETAIL: %\nHINT: %', st, msg, coalesce(nullif(det, ''), '(none)'),
                 coalesce(nullif(hnt, ''), '(none)');
END $$;

CREATE SCHEMA crm;
CREATE TABLE crm.accounts (id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE crm.people (
    id bigint PRIMARY KEY, email text NOT NULL UNIQUE, full_name text, password_hash text,
    created_at timestamptz NOT NULL
);
CREATE TABLE crm.seats (
    account_id text NOT NULL REFERENCES crm.accounts, person_id bigint NOT NULL REFERENCES crm.people,
    role text NOT NULL, PRIMARY KEY (account_id, person_id)
);
CREATE TABLE crm.notes (
    id bigint PRIMARY KEY, account_id text NOT NULL REFERENCES crm.accounts,
    author_id bigint NOT NULL REFERENCES crm.people, body text, data jsonb, created_at timestamptz NOT NULL
);
CREATE TABLE crm.receipts (
    id bigint PRIMARY KEY, account_id text NOT NULL REFERENCES crm.accounts,
    payer_id bigint REFERENCES crm.people, amount numeric(10,2) NOT NULL
);
INSERT INTO crm.accounts VALUES ('a1', 'Acme'), ('a2', 'Globex');
INSERT INTO crm.people VALUES
    (1, 'zoe@example.com', 'Zoë Ångström', 'argon2$secret-one', '2026-01-02 03:04:05+00'),
    (2, 'taro@example.jp', '山田太郎', 'argon2$secret-two', '2026-02-03 04:05:06+00');
INSERT INTO crm.seats VALUES ('a1', 1, 'owner'), ('a1', 2, 'member'), ('a2', 2, 'owner');
INSERT INTO crm.notes VALUES
    (1, 'a1', 1, 'Zoë''s note', '{"tags": ["a", "b"]}', '2026-03-01 10:00:00+00'),
    (2, 'a1', 2, 'Taro''s note in Acme', NULL, '2026-03-02 11:00:00+00'),
    (3, 'a2', 2, 'Taro''s note in Globex', NULL, '2026-03-03 12:00:00+00');
INSERT INTO crm.receipts VALUES (1, 'a1', 1, 49.90), (2, 'a2', 2, 99.00);

SELECT lifecycle.register_subject('crm.people', 'id', 'person');
SELECT lifecycle.register_tenant('crm.accounts', 'id', 'name');
SELECT lifecycle.register_membership('crm.seats', 'person_id', 'account_id', 'role', ARRAY['owner']);
SELECT lifecycle.register_table('crm.notes', 'person', 'author_id', 'account_id', label => 'Notes');
SELECT lifecycle.register_table('crm.receipts', 'person', 'payer_id', 'account_id', on_erase => 'retain',
                                retain_for => '10 years', legal_basis => 'bookkeeping law', label => 'Receipts');

-- Labels and exclusions: the table's owner sets them; secrets never leave.
SELECT lifecycle.exclude_from_export('crm.people', 'password_hash', 'a credential of the service, never handed out');
SELECT lifecycle.set_column_label('crm.people', 'full_name', 'Your name');
SELECT lifecycle.set_column_label('crm.notes', 'data', 'Note details');
SELECT relation, column_name, label, excluded FROM lifecycle.column_exports ORDER BY 1, 2;
-- Back to the default label: the row that says nothing goes.
SELECT lifecycle.set_column_label('crm.notes', 'data', NULL);
SELECT relation, column_name, label, excluded FROM lifecycle.column_exports ORDER BY 1, 2;
SELECT show($$SELECT lifecycle.exclude_from_export('crm.people', 'nope', 'x')$$);
SELECT show($$SELECT lifecycle.exclude_from_export('crm.people', 'email', ' ')$$);
SELECT show($$SELECT lifecycle.set_column_label('crm.accounts', 'name', '')$$);
CREATE TABLE crm.unregistered (id int);
SELECT show($$SELECT lifecycle.set_column_label('crm.unregistered', 'id', 'Id')$$);
-- Renaming or dropping an excluded column would let it out: refused.
SELECT show($$ALTER TABLE crm.people RENAME COLUMN password_hash TO pw$$);
SELECT show($$ALTER TABLE crm.people DROP COLUMN password_hash$$);
-- Not for everyone.
CREATE ROLE lifecycle_regress_stranger;
SET ROLE lifecycle_regress_stranger;
SELECT show($$SELECT lifecycle.set_column_label('crm.people', 'email', 'Mail')$$);
SELECT show($$SELECT * FROM lifecycle.export_contents('person', '1')$$);
RESET ROLE;

-- What a subject's export holds: their rows only, the labels, what is left out.
SELECT position, name, kind, label, description, retention, storage_columns
  FROM lifecycle.export_contents('person', '1');
SELECT name, jsonb_path_query_array(columns, '$[*].label') AS labels, excluded
  FROM lifecycle.export_contents('person', '1') WHERE name IN ('account', 'notes');
SELECT show($$SELECT * FROM lifecycle.export_contents('person', '99')$$);
SELECT show($$SELECT * FROM lifecycle.export_contents('robot', '1')$$);

-- The rows, from one snapshot, as JSON keyed by column name.
BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
SET LOCAL TimeZone = 'UTC';
SELECT lifecycle.open_export('person', '2', NULL, 'account', 'account_rows');
FETCH ALL FROM account_rows;
SELECT lifecycle.open_export('person', '2', NULL, 'notes', 'note_rows');
FETCH 1 FROM note_rows;
FETCH ALL FROM note_rows;
SELECT lifecycle.open_export('person', '2', NULL, 'seats', 'seat_rows');
-- Read through the extension, as the table's owner: the way to read them.
SELECT * FROM lifecycle.fetch_export('seat_rows', 1);
SELECT * FROM lifecycle.fetch_export('seat_rows', 100);
SELECT count(*) FROM lifecycle.fetch_export('seat_rows', 100);
-- Only cursors open_export opened: not one declared under the same name.
CLOSE seat_rows;
DECLARE seat_rows CURSOR FOR SELECT '{"forged": true}'::json;
SELECT show($$SELECT * FROM lifecycle.fetch_export('seat_rows', 1)$$);
SELECT show($$SELECT * FROM lifecycle.fetch_export('nowhere', 1)$$);
SELECT show($$SELECT * FROM lifecycle.fetch_export('note_rows', 0)$$);
SELECT lifecycle.open_export('person', '2', NULL, 'receipts', NULL) IS NOT NULL AS opened;
SELECT show($$SELECT lifecycle.open_export('person', '2', NULL, 'nope', 'x')$$);
COMMIT;

-- A workspace's export: every row of the workspace.
SELECT position, name, kind, label, description FROM lifecycle.export_contents('workspace', 'a1');
BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;
SET LOCAL TimeZone = 'UTC';
SELECT lifecycle.open_export('workspace', 'a1', NULL, 'notes', 'ws_notes');
FETCH ALL FROM ws_notes;
COMMIT;

-- One export per subject per 24 hours.
SELECT lifecycle.request_export('person', '1', 'a1', 'zoe') IS NOT NULL AS requested;
SELECT show($$SELECT lifecycle.request_export('person', '1', 'a1', 'zoe')$$);

-- A bundle's life: built by a worker, downloaded by its subject only, expired.
SELECT (c.job ->> 'id') AS job FROM lifecycle.claim_job('w1', '1 minute', ARRAY['export']) c(job) \gset
SELECT show(format($$SELECT lifecycle.export_download(%L, 'person', '1', 'zoe')$$, :'job'));
SELECT show(format($$SELECT lifecycle.complete_job(%L, 'w1', '{"bundle": {}}')$$, :'job'));
SELECT show(format($$SELECT lifecycle.complete_job(%L, 'w1',
    '{"bundle": {"key": "k", "size": 1}, "expires_at": "2000-01-01T00:00:00Z"}')$$, :'job'));
SELECT lifecycle.complete_job(:'job', 'w1',
    '{"bundle": {"key": "exports/db/x.zip", "size": 1234, "sha256": "00ff"}, "expires_at": "2999-01-01T00:00:00Z"}');
SELECT object_key, size_bytes, expires_at - completed_at AS entitlement, downloads
  FROM lifecycle.export_bundles;
SELECT lifecycle.export_download(:'job', 'person', '1', 'zoe', '203.0.113.7', 'Firefox') - 'job_id' - 'expires_at';
-- The target's id in any spelling its key column treats as the same.
SELECT lifecycle.export_download(:'job', 'person', ' 01', 'zoe') ->> 'size_bytes' AS same_person;
SELECT lifecycle.canonical_id('person', ' 01') AS stored_as, lifecycle.canonical_id('person', 'one') AS no_such_id;
SELECT show(format($$SELECT lifecycle.export_download(%L, 'person', '2', 'taro')$$, :'job'));
SELECT lifecycle.expire_export(:'job', 'sweeper') AS expired, lifecycle.expire_export(:'job', 'sweeper') AS again;
SELECT show(format($$SELECT lifecycle.export_download(%L, 'person', '1', 'zoe')$$, :'job'));
SELECT event_type, actor, ip, user_agent, details - 'job_id' - 'due_at' - 'scheduled_for' AS details
  FROM lifecycle.audit_log WHERE event_type LIKE 'data.export%' ORDER BY id;
SELECT count(*) AS chains, bool_and(length(last_hash) = 64) AS hex FROM lifecycle.audit_chain_heads();

\c lifecycle_regress
DROP DATABASE lifecycle_regress_exports;
DROP ROLE lifecycle_regress_stranger;
