-- DDL guards: a table owner who is not a superuser cannot switch the
-- guards off, and nobody can drop a table whose rows may be held.
CREATE ROLE regress_owner LOGIN;
GRANT USAGE ON SCHEMA app TO regress_owner;
GRANT CREATE ON SCHEMA app TO regress_owner;
GRANT EXECUTE ON FUNCTION lifecycle.register_table(regclass, text, text, text, text, interval, text, text, text, text, text, boolean),
                          lifecycle.unregister_table(regclass) TO regress_owner;
SET ROLE regress_owner;
CREATE TABLE app.tickets (id bigint PRIMARY KEY, requester_id bigint, workspace_id text, body text);
INSERT INTO app.tickets VALUES (1, 1, 'acme', 'help'), (2, 2, 'acme', 'help too');
SELECT lifecycle.register_table('app.tickets', 'user', 'requester_id', tenant_column => 'workspace_id');
RESET ROLE;
SELECT lifecycle.place_hold('user', '1', 'acme', 'Litigation hold', 'legal@acme.example') AS h \gset
SET ROLE regress_owner;
SELECT try($$ALTER TABLE app.tickets DISABLE TRIGGER lifecycle_guard$$);
SELECT try($$ALTER TABLE app.tickets DISABLE TRIGGER USER$$);
SELECT try($$ALTER TABLE app.tickets ENABLE TRIGGER lifecycle_guard$$);
SELECT try($$ALTER TRIGGER lifecycle_guard ON app.tickets RENAME TO harmless$$);
SELECT try($$DROP TRIGGER lifecycle_guard ON app.tickets$$);
SELECT try($$DROP TRIGGER lifecycle_guard_truncate ON app.tickets$$);
SELECT try($$SELECT lifecycle.unregister_table('app.tickets')$$);
SELECT try($$DROP TABLE app.tickets$$);
SELECT try($$ALTER TABLE app.tickets RENAME COLUMN requester_id TO rid$$);
SELECT try($$ALTER TABLE app.tickets DROP COLUMN workspace_id$$);
SELECT try($$DELETE FROM app.tickets$$);
-- Unrelated DDL is fine.
ALTER TABLE app.tickets ADD COLUMN priority int;
RESET ROLE;
SELECT relation, trigger_name, status FROM lifecycle.guard_status WHERE relation = 'app.tickets'::regclass ORDER BY 2;

-- A superuser can disable a guard: allowed, warned, recorded, visible.
ALTER TABLE app.tickets DISABLE TRIGGER lifecycle_guard;
SELECT relation, trigger_name, status FROM lifecycle.guard_status WHERE status <> 'ok';
SELECT event_type, details FROM lifecycle.audit_log WHERE event_type LIKE 'guard.%';
ALTER TABLE app.tickets ENABLE ALWAYS TRIGGER lifecycle_guard;
SELECT count(*) AS not_ok FROM lifecycle.guard_status WHERE status <> 'ok';

-- Partitioned tables: guards reach every partition, also later ones.
CREATE TABLE app.events (id bigint, user_id bigint, workspace_id text, at date NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE app.events_2025 PARTITION OF app.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
SELECT lifecycle.register_table('app.events', 'user', 'user_id', tenant_column => 'workspace_id');
CREATE TABLE app.events_2026 PARTITION OF app.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
INSERT INTO app.events VALUES (1, 1, 'acme', '2025-06-01'), (2, 1, 'acme', '2026-06-01'), (3, 2, 'acme', '2026-06-02');
SELECT try($$DELETE FROM app.events WHERE id = 2$$);
SELECT try($$TRUNCATE app.events_2026$$);
SELECT try($$TRUNCATE app.events$$);
SELECT try($$ALTER TABLE app.events DETACH PARTITION app.events_2026$$);
SELECT try($$DROP TABLE app.events_2025$$);
DELETE FROM app.events WHERE id = 3;
SELECT id FROM app.events ORDER BY id;
SELECT relation, trigger_name, status FROM lifecycle.guard_status
 WHERE registered = 'app.events'::regclass ORDER BY 1, 2;

-- Inheritance children would not get the guards: refused both ways.
SELECT try($$CREATE TABLE app.tickets_archive () INHERITS (app.tickets)$$);
CREATE TABLE app.legacy (id bigint NOT NULL, requester_id bigint, workspace_id text, body text, priority int);
SELECT try($$ALTER TABLE app.legacy INHERIT app.tickets$$);
SELECT count(*) AS children FROM pg_inherits WHERE inhparent = 'app.tickets'::regclass;
CREATE TABLE app.notes_base (id bigint, user_id bigint);
CREATE TABLE app.notes_2024 () INHERITS (app.notes_base);
SELECT try($$SELECT lifecycle.register_table('app.notes_base', 'user', 'user_id')$$);
SELECT count(*) AS registered FROM lifecycle.data_map WHERE table_name = 'notes_base';
DROP TABLE app.notes_base, app.notes_2024, app.legacy;

-- Once the hold is released, the owner may unregister and drop.
SELECT lifecycle.release_hold(:'h', 'legal@acme.example', 'Settled');
SET ROLE regress_owner;
SELECT lifecycle.unregister_table('app.tickets');
DROP TABLE app.tickets;
RESET ROLE;
ALTER TABLE app.events DETACH PARTITION app.events_2026;
SELECT count(*) AS leftover_guards FROM pg_trigger WHERE tgrelid = 'app.events_2026'::regclass;
DROP TABLE app.events;
SELECT count(*) AS registered FROM lifecycle.data_map WHERE table_name IN ('tickets', 'events');
SELECT event_type FROM lifecycle.audit_log WHERE event_type LIKE 'data_map.table_%' ORDER BY id;
SELECT ok FROM lifecycle.verify_audit_log();
