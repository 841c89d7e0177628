-- The audit log: append-only, hash-chained, verifiable.
SELECT lifecycle.record_event('account.login', 'user:2', 'user', '2', 'acme',
                              '{"method": "password"}', '203.0.113.7', 'Mozilla/5.0', NULL) > 0 AS recorded;
SELECT event_type, actor, subject_id, tenant_id, ip, user_agent, details
  FROM lifecycle.audit_log WHERE event_type = 'account.login';
SELECT ok, checked > 0 AS checked_some, first_bad_id FROM lifecycle.verify_audit_log();

-- Bad events.
SELECT try($$SELECT lifecycle.record_event('', 'x', 'user', '1', 'acme')$$);
SELECT try($$SELECT lifecycle.record_event(NULL, 'x', 'user', '1', 'acme')$$);
SELECT try($$SELECT lifecycle.record_event('a.b', 'x', 'user', '1', 'acme', '[1, 2]')$$);
SELECT try($$SELECT lifecycle.record_event('a.b', 'x', 'user', '1', 'acme', '{}', 'not an ip')$$);

-- Append-only for everyone, superusers included.
SELECT try($$UPDATE lifecycle.audit_log SET actor = 'someone else'$$);
SELECT try($$DELETE FROM lifecycle.audit_log$$);
SELECT try($$TRUNCATE lifecycle.audit_log$$);

-- A superuser can switch the triggers off; the chain still tells. (Each
-- tampering below is rolled back afterwards.)
SELECT min(id) AS first_id, max(id) AS last_id FROM lifecycle.audit_log \gset
BEGIN;
ALTER TABLE lifecycle.audit_log DISABLE TRIGGER USER;
UPDATE lifecycle.audit_log SET reason = 'rewritten history' WHERE id = :first_id + 2;
SELECT ok, first_bad_id = :first_id + 2 AS finds_the_edited_event FROM lifecycle.verify_audit_log();
ROLLBACK;
-- Removing an event from the middle: the next event of its chain no longer links.
SELECT id AS removed, (SELECT min(b.id) FROM lifecycle.audit_log b WHERE b.chain = a.chain AND b.id > a.id) AS next_in_chain
  FROM lifecycle.audit_log a
 WHERE EXISTS (SELECT 1 FROM lifecycle.audit_log b WHERE b.chain = a.chain AND b.id > a.id)
 ORDER BY id LIMIT 1 \gset
BEGIN;
ALTER TABLE lifecycle.audit_log DISABLE TRIGGER USER;
DELETE FROM lifecycle.audit_log WHERE id = :removed;
SELECT ok, first_bad_id = :next_in_chain AS finds_the_gap FROM lifecycle.verify_audit_log();
ROLLBACK;
-- Removing the newest event: the chain head no longer matches.
BEGIN;
ALTER TABLE lifecycle.audit_log DISABLE TRIGGER USER;
DELETE FROM lifecycle.audit_log WHERE id = :last_id;
SELECT ok, first_bad_id = :last_id AS finds_the_missing_tail FROM lifecycle.verify_audit_log();
ROLLBACK;
-- Rewriting an event together with its own hash still breaks the next link or the head.
BEGIN;
ALTER TABLE lifecycle.audit_log DISABLE TRIGGER USER;
UPDATE lifecycle.audit_log SET event_type = 'nothing.happened',
       hash = sha256(hash) WHERE id = :first_id;
SELECT ok, first_bad_id = :first_id AS finds_it FROM lifecycle.verify_audit_log();
ROLLBACK;
SELECT ok, first_bad_id FROM lifecycle.verify_audit_log();
