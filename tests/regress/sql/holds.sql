-- Legal holds: what they block, what they do not, and how they end.
SELECT lifecycle.place_hold('user', '1', 'acme', 'Litigation: Smith v. Acme, case 2026-117', 'legal@acme.example') AS alice_hold \gset

SELECT scope_type, scope_id, tenant_id, reason, created_by, active, expires_at
  FROM lifecycle.legal_holds;

-- Alice's rows in acme are frozen, whoever asks.
SELECT try($$DELETE FROM app.posts WHERE id = 1$$);
SELECT try($$UPDATE app.posts SET body = 'edited' WHERE id = 1$$);
SELECT try($$DELETE FROM app.memberships WHERE workspace_id = 'acme' AND user_id = 1$$);
SELECT try($$UPDATE app.invoices SET billing_name = 'x' WHERE id = 1$$);
-- The subject row itself (users has no tenant column: the hold covers it).
SELECT try($$UPDATE app.users SET name = 'Al' WHERE id = 1$$);
-- A statement that touches held and unheld rows is refused as a whole.
SELECT try($$UPDATE app.posts SET body = body || '!' WHERE workspace_id = 'acme'$$);
SELECT id, body FROM app.posts ORDER BY id;
-- TRUNCATE of a table holding held rows.
SELECT try($$TRUNCATE app.posts$$);
SELECT try($$TRUNCATE app.memberships, app.posts, app.invoices$$);
-- A cascade from an (unregistered) parent that reaches held rows: refused.
CREATE TABLE app.threads (id bigint PRIMARY KEY);
CREATE TABLE app.replies (id bigint PRIMARY KEY, thread_id bigint REFERENCES app.threads ON DELETE CASCADE,
                          author_id bigint, workspace_id text);
SELECT lifecycle.register_table('app.replies', 'user', 'author_id', tenant_column => 'workspace_id');
INSERT INTO app.threads VALUES (1);
INSERT INTO app.replies VALUES (1, 1, 1, 'acme'), (2, 1, 2, 'acme');
SELECT try($$DELETE FROM app.threads WHERE id = 1$$);
SELECT count(*) AS replies FROM app.replies;
-- Deleting the held user: refused. Where a NO ACTION foreign key refuses the
-- statement too, PostgreSQL's foreign-key check reports first (AFTER triggers
-- fire in name order); the statement is refused either way.
SELECT try($$DELETE FROM app.users WHERE id = 1$$);
-- Replication mode does not switch the guard off.
SET session_replication_role = replica;
SELECT try($$DELETE FROM app.posts WHERE id = 1$$);
RESET session_replication_role;
SELECT count(*) AS posts FROM app.posts;

-- Outside the hold's scope: Alice in another tenant, Bob in acme.
UPDATE app.posts SET body = 'alice edits her globex post' WHERE id = 3;
UPDATE app.posts SET body = 'bob edits' WHERE id = 2;
-- Inserting new rows into a held scope is allowed.
INSERT INTO app.posts VALUES (5, 'acme', 1, 'alice posts again', NULL);

-- A tenant hold freezes every row of the tenant.
SELECT lifecycle.place_hold('tenant', 'globex', NULL, 'Regulator inquiry 7', 'dpo@acme.example') AS globex_hold \gset
SELECT try($$UPDATE app.posts SET body = 'x' WHERE id = 4$$);
SELECT try($$UPDATE app.workspaces SET name = 'Globex Corp' WHERE id = 'globex'$$);
SELECT try($$UPDATE app.memberships SET role = 'admin' WHERE workspace_id = 'globex' AND user_id = 3$$);
SELECT lifecycle.release_hold(:'globex_hold', 'dpo@acme.example', 'Inquiry closed');

-- Bad holds.
SELECT try($$SELECT lifecycle.place_hold('user', '2', 'acme', '   ', 'legal@acme.example')$$);
SELECT try($$SELECT lifecycle.place_hold('project', '2', 'acme', 'why', 'legal@acme.example')$$);
SELECT try($$SELECT lifecycle.place_hold('user', '2', 'acme', 'why', 'legal@acme.example', now() - interval '1 day')$$);
SELECT try($$SELECT lifecycle.place_hold('tenant', 'acme', 'globex', 'why', 'legal@acme.example')$$);
SELECT try($$SELECT lifecycle.place_hold(NULL, '2', 'acme', 'why', 'legal@acme.example')$$);
SELECT try($$SELECT lifecycle.place_hold('user', '2', 'acme', 'why', NULL)$$);
SELECT try($$SELECT lifecycle.release_hold('00000000-0000-0000-0000-000000000000', 'legal@acme.example')$$);
SELECT try($$SELECT lifecycle.release_hold(NULL, 'legal@acme.example')$$);
SELECT count(*) AS holds FROM lifecycle.legal_holds;

-- Holds are records: no editing, no deleting, even for a superuser.
SELECT try($$UPDATE lifecycle.legal_holds SET expires_at = now()$$);
SELECT try($$DELETE FROM lifecycle.legal_holds$$);
SELECT try($$TRUNCATE lifecycle.legal_holds$$);

-- Releasing ends the hold at once; releasing twice is an error.
SELECT lifecycle.release_hold(:'alice_hold', 'legal@acme.example', 'Case settled');
SELECT try(format('SELECT lifecycle.release_hold(%L, %L)', :'alice_hold', 'legal@acme.example'));
UPDATE app.posts SET body = 'edited after release' WHERE id = 1;
SELECT scope_type, scope_id, active, released_by, release_reason FROM lifecycle.legal_holds ORDER BY created_at;
SELECT count(*) AS in_force FROM lifecycle.holds_in_force;

-- An expired hold stops blocking by itself.
SELECT lifecycle.place_hold('user', '2', 'acme', 'Short preservation order', 'legal@acme.example',
                            expires_at => clock_timestamp() + interval '3 seconds') AS short_hold \gset
SELECT try($$UPDATE app.posts SET body = 'blocked' WHERE id = 2$$);
SELECT pg_sleep(3.5);
SELECT try($$UPDATE app.posts SET body = 'allowed once expired' WHERE id = 2$$);

-- Every placement and release is in the audit log.
SELECT event_type, actor, subject_type, subject_id, tenant_id, reason
  FROM lifecycle.audit_log WHERE event_type LIKE 'legal_hold.%' ORDER BY id;
