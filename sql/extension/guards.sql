-- lifecycle: trigger functions, the triggers on the extension's own tables,
-- the event triggers that guard DDL, and privileges.

-- Pure, and safe for any arguments: PUBLIC may execute it (the erasure
-- engine calls it in statements it runs as each table's owner).
CREATE FUNCTION lifecycle.redact_json(value jsonb, identifiers text[]) RETURNS jsonb
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'lifecycle_redact_json';
COMMENT ON FUNCTION lifecycle.redact_json(jsonb, text[]) IS
    'The document with every identifier replaced by [redacted] in its strings and keys, at any depth.';

CREATE FUNCTION lifecycle.guard_row() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'lifecycle_guard_row';
COMMENT ON FUNCTION lifecycle.guard_row() IS
    'Row guard of registered tables: refuses UPDATE and DELETE of rows under legal hold.';

-- The relation is a regclass, so that pg_dump writes the guard's condition
-- with the table's name and a restore binds it to the new table's OID.
-- Executable by PUBLIC (a WHEN condition runs with the rights of whoever
-- writes the table): it checks its arguments against the data map before
-- reading any of them.
CREATE FUNCTION lifecycle.row_may_be_held(regclass, bigint, VARIADIC "any") RETURNS boolean
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'lifecycle_row_may_be_held';
COMMENT ON FUNCTION lifecycle.row_may_be_held(regclass, bigint, VARIADIC "any") IS
    'The row guard''s WHEN condition: whether a row with these scope keys may be under legal hold.';

CREATE FUNCTION lifecycle.guard_truncate() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'lifecycle_guard_truncate';
COMMENT ON FUNCTION lifecycle.guard_truncate() IS
    'Truncate guard of registered tables and their partitions.';

CREATE FUNCTION lifecycle.soft_delete_row() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'lifecycle_soft_delete_row';
COMMENT ON FUNCTION lifecycle.soft_delete_row() IS
    'Soft delete: turns DELETE into setting the registered soft-delete column.';

CREATE FUNCTION lifecycle.audit_append_only() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'lifecycle_audit_append_only';

CREATE FUNCTION lifecycle.holds_immutable() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'lifecycle_holds_immutable';

CREATE FUNCTION lifecycle.invalidate_cache() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'lifecycle_invalidate_cache';

CREATE FUNCTION lifecycle.ddl_guard() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'lifecycle_ddl_guard';

CREATE FUNCTION lifecycle.drop_guard() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'lifecycle_drop_guard';

CREATE FUNCTION lifecycle.own_table_guard() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'lifecycle_own_table_guard';
COMMENT ON FUNCTION lifecycle.own_table_guard() IS
    'Refuses writes to the extension''s own tables that do not come from the extension''s functions (superusers excepted).';

-- The extension's own tables: the ordinary tables that belong to it.
CREATE VIEW lifecycle.own_tables AS
    SELECT c.oid::regclass AS relation
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_depend d
        ON d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass
       AND d.objid OPERATOR(pg_catalog.=) c.oid
       AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass
       AND d.deptype OPERATOR(pg_catalog.=) 'e'
      JOIN pg_catalog.pg_extension e
        ON e.oid OPERATOR(pg_catalog.=) d.refobjid AND e.extname OPERATOR(pg_catalog.=) 'lifecycle'
     WHERE c.relkind OPERATOR(pg_catalog.=) 'r';
COMMENT ON VIEW lifecycle.own_tables IS
    'The extension''s own tables (data map, holds, audit log, jobs): written only by its functions.';

-- Whatever was granted on them, only the extension's functions (and
-- superusers, whose direct writes are how pg_restore reloads them) write the
-- extension's tables.
DO $own$
DECLARE
    t pg_catalog.regclass;
BEGIN
    FOR t IN SELECT relation FROM lifecycle.own_tables LOOP
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER own_table_guard BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
            'FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.own_table_guard()', t);
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE ALWAYS TRIGGER own_table_guard', t);
    END LOOP;
END
$own$;

-- The audit log is append-only.
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON lifecycle.audit_log
    FOR EACH ROW EXECUTE FUNCTION lifecycle.audit_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON lifecycle.audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.audit_append_only();
ALTER TABLE lifecycle.audit_log ENABLE ALWAYS TRIGGER audit_log_append_only,
                                ENABLE ALWAYS TRIGGER audit_log_no_truncate;

-- Legal holds are placed and released, never edited or deleted.
CREATE TRIGGER legal_holds_immutable BEFORE UPDATE OR DELETE ON lifecycle.legal_holds
    FOR EACH ROW EXECUTE FUNCTION lifecycle.holds_immutable();
CREATE TRIGGER legal_holds_no_truncate BEFORE TRUNCATE ON lifecycle.legal_holds
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.holds_immutable();
ALTER TABLE lifecycle.legal_holds ENABLE ALWAYS TRIGGER legal_holds_immutable,
                                  ENABLE ALWAYS TRIGGER legal_holds_no_truncate;

-- Any change to holds or to the data map, by whatever path, tells every
-- backend to reload its guard cache.
CREATE TRIGGER invalidate_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON lifecycle.legal_holds
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.invalidate_cache();
CREATE TRIGGER invalidate_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON lifecycle.subject_tables
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.invalidate_cache();
CREATE TRIGGER invalidate_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON lifecycle.tenant_tables
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.invalidate_cache();
CREATE TRIGGER invalidate_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON lifecycle.tables
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.invalidate_cache();
CREATE TRIGGER invalidate_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON lifecycle.memberships
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.invalidate_cache();
CREATE TRIGGER invalidate_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON lifecycle.scopes
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.invalidate_cache();
CREATE TRIGGER invalidate_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON lifecycle.column_rules
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.invalidate_cache();
CREATE TRIGGER invalidate_cache AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON lifecycle.links
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.invalidate_cache();

ALTER TABLE lifecycle.legal_holds ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE lifecycle.subject_tables ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE lifecycle.tenant_tables ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE lifecycle.tables ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE lifecycle.memberships ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE lifecycle.scopes ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE lifecycle.column_rules ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE lifecycle.links ENABLE ALWAYS TRIGGER invalidate_cache;

-- DDL guards. ENABLE ALWAYS: they also fire under session_replication_role = replica.
CREATE EVENT TRIGGER lifecycle_ddl_guard ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'ALTER TRIGGER', 'CREATE TRIGGER', 'ALTER TYPE', 'GRANT')
    EXECUTE FUNCTION lifecycle.ddl_guard();
ALTER EVENT TRIGGER lifecycle_ddl_guard ENABLE ALWAYS;

CREATE EVENT TRIGGER lifecycle_drop_guard ON sql_drop
    EXECUTE FUNCTION lifecycle.drop_guard();
ALTER EVENT TRIGGER lifecycle_drop_guard ENABLE ALWAYS;

-- Guard status: every registered relation and partition with the state of
-- its guard triggers, the extension's own protections, and registered
-- relations whose rows would not survive a crash. Anything but 'ok' means a
-- superuser bypassed a guard (or a table lost its durability).
CREATE VIEW lifecycle.guard_status AS
WITH tree AS (
    SELECT r.relation AS registered, r.relation::oid AS relation, 0 AS level
      FROM lifecycle.registered_relations r
    UNION
    SELECT r.relation, p.relid::oid, p.level
      FROM lifecycle.registered_relations r,
           LATERAL pg_catalog.pg_partition_tree(r.relation) p
), expected AS (
    SELECT t.registered, t.relation, g.tgname
      FROM tree t
      CROSS JOIN LATERAL (VALUES ('lifecycle_guard'), ('lifecycle_guard_truncate')) AS g(tgname)
    UNION ALL
    SELECT t.registered, t.relation, 'lifecycle_soft_delete'
      FROM tree t JOIN lifecycle.tables tb ON tb.relation = t.registered
     WHERE tb.soft_delete_column IS NOT NULL
)
SELECT e.registered, e.relation::regclass AS relation, e.tgname::text AS trigger_name,
       CASE WHEN tg.oid IS NULL THEN 'missing'
            WHEN tg.tgenabled <> 'A' THEN 'not enable always (' || tg.tgenabled::text || ')'
            ELSE 'ok' END AS status
  FROM expected e
  LEFT JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = e.relation AND tg.tgname = e.tgname
UNION ALL
-- An unlogged relation loses its rows in a crash, held or not.
SELECT t.registered, t.relation::regclass, '(persistence)',
       'unlogged: its rows are lost in a crash, including rows under legal hold'
  FROM tree t JOIN pg_catalog.pg_class c ON c.oid = t.relation
 WHERE c.relpersistence = 'u'
UNION ALL
-- Row-level security forced on a registered table whose owner can bypass
-- none: erasures, previews and exports read the table as its owner and
-- refuse it (LC044) rather than see only the rows its policies let through.
SELECT r.relation, r.relation::regclass, '(row security)',
       'row security forced: its policies hide rows from its owner ' || pg_catalog.quote_ident(o.rolname)
       || ', whom erasures and exports read it as, so they refuse it'
  FROM lifecycle.registered_relations r
  JOIN pg_catalog.pg_class c ON c.oid = r.relation
  JOIN pg_catalog.pg_roles o ON o.oid = c.relowner
 WHERE c.relrowsecurity AND c.relforcerowsecurity AND NOT o.rolsuper AND NOT o.rolbypassrls
UNION ALL
SELECT NULL, NULL, evtname::text,
       CASE WHEN evtenabled <> 'A' THEN 'event trigger not enable always (' || evtenabled::text || ')' ELSE 'ok' END
  FROM pg_catalog.pg_event_trigger WHERE evtname IN ('lifecycle_ddl_guard', 'lifecycle_drop_guard')
UNION ALL
SELECT NULL, NULL, x.evtname, 'event trigger missing'
  FROM (VALUES ('lifecycle_ddl_guard'), ('lifecycle_drop_guard')) AS x(evtname)
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger e WHERE e.evtname = x.evtname)
UNION ALL
-- The extension's own protections: the append-only audit log, immutable
-- holds, the job state machine and the job counts, the cache invalidation
-- of every backend and the guard that keeps writes to its tables to its own
-- functions.
SELECT NULL, x.relation, x.tgname,
       CASE WHEN tg.oid IS NULL THEN 'missing'
            WHEN tg.tgenabled <> 'A' THEN 'not enable always (' || tg.tgenabled::text || ')'
            ELSE 'ok' END
  FROM (SELECT pg_catalog.to_regclass(v.relation) AS relation, v.tgname
          FROM (VALUES ('lifecycle.audit_log', 'audit_log_append_only'),
                       ('lifecycle.audit_log', 'audit_log_no_truncate'),
                       ('lifecycle.legal_holds', 'legal_holds_immutable'),
                       ('lifecycle.legal_holds', 'legal_holds_no_truncate'),
                       ('lifecycle.jobs', 'jobs_state_machine'),
                       ('lifecycle.jobs', 'job_counted'),
                       ('lifecycle.jobs', 'job_counted_update'),
                       ('lifecycle.jobs', 'jobs_truncated'),
                       ('lifecycle.jobs', 'jobs_fold_insert'),
                       ('lifecycle.jobs', 'jobs_fold_update'),
                       ('lifecycle.jobs', 'jobs_fold_delete'),
                       ('lifecycle.legal_holds', 'invalidate_cache'),
                       ('lifecycle.subject_tables', 'invalidate_cache'),
                       ('lifecycle.tenant_tables', 'invalidate_cache'),
                       ('lifecycle.tables', 'invalidate_cache'),
                       ('lifecycle.memberships', 'invalidate_cache'),
                       ('lifecycle.scopes', 'invalidate_cache'),
                       ('lifecycle.column_rules', 'invalidate_cache'),
                       ('lifecycle.links', 'invalidate_cache')) AS v(relation, tgname)
        UNION ALL
        SELECT o.relation, 'own_table_guard' FROM lifecycle.own_tables o) AS x
  LEFT JOIN pg_catalog.pg_trigger tg ON tg.tgrelid = x.relation AND tg.tgname = x.tgname;
COMMENT ON VIEW lifecycle.guard_status IS
    'State of every guard trigger, including the extension''s own (audit log, holds, jobs, cache invalidation, writes to its tables), registered relations that are unlogged, and registered tables whose forced row-level security hides rows from their owner; any status but ok means a guard was disabled or dropped, rows would not survive a crash, or erasure and export would refuse a table.';

-- Jobs follow their state machine, whoever writes them.
CREATE FUNCTION lifecycle.jobs_guard() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'lifecycle_jobs_guard';
COMMENT ON FUNCTION lifecycle.jobs_guard() IS
    'Enforces the job state machine on lifecycle.jobs and refuses deleting jobs.';
CREATE TRIGGER jobs_state_machine BEFORE INSERT OR UPDATE OR DELETE ON lifecycle.jobs
    FOR EACH ROW EXECUTE FUNCTION lifecycle.jobs_guard();
ALTER TABLE lifecycle.jobs ENABLE ALWAYS TRIGGER jobs_state_machine;

-- ----- privileges -----------------------------------------------------------------
-- Reading: the data map, holds, guard status. Writing: only through functions.
-- Administrative functions are not executable by PUBLIC; grant them to the
-- roles that need them (see docs/security.md).

REVOKE ALL ON ALL TABLES IN SCHEMA lifecycle FROM PUBLIC;
GRANT USAGE ON SCHEMA lifecycle TO PUBLIC;
GRANT SELECT ON lifecycle.data_map, lifecycle.scope_columns, lifecycle.registered_relations,
                lifecycle.legal_holds, lifecycle.holds_in_force, lifecycle.guard_status,
                lifecycle.own_tables
   TO PUBLIC;

-- Trigger functions fire whatever the privileges of the role that writes;
-- nobody needs EXECUTE on them to attach them elsewhere.
REVOKE EXECUTE ON FUNCTION
    lifecycle.guard_row(), lifecycle.guard_truncate(), lifecycle.soft_delete_row(),
    lifecycle.audit_append_only(), lifecycle.holds_immutable(), lifecycle.invalidate_cache(),
    lifecycle.ddl_guard(), lifecycle.drop_guard(), lifecycle.jobs_guard(),
    lifecycle.own_table_guard()
  FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION
    lifecycle.register_subject(regclass, text, text, text, text),
    lifecycle.register_tenant(regclass, text, text, text),
    lifecycle.register_table(regclass, text, text, text, text, interval, text, text, text, text, text, boolean),
    lifecycle.register_link(regclass, text, regclass, text),
    lifecycle.set_column_rule(regclass, text, text),
    lifecycle.register_membership(regclass, text, text, text, text[], text, text, text),
    lifecycle.unregister_membership(regclass),
    lifecycle.register_scope(regclass, text, text),
    lifecycle.unregister_table(regclass),
    lifecycle.place_hold(text, text, text, text, text, timestamptz),
    lifecycle.release_hold(uuid, text, text),
    lifecycle.record_event(text, text, text, text, text, jsonb, inet, text, text),
    lifecycle.verify_audit_log(),
    lifecycle.request_export(text, text, text, text, text, boolean),
    lifecycle.request_erasure(text, text, text, text, text, interval, text, boolean, jsonb),
    lifecycle.request_purge(text, text, text, text, text, boolean),
    lifecycle.approve(uuid, text),
    lifecycle.reject(uuid, text, text),
    lifecycle.cancel(uuid, text),
    lifecycle.subject_state(text, text),
    lifecycle.canonical_id(text, text),
    lifecycle.run_due_jobs(integer),
    lifecycle.run_job(uuid, text),
    lifecycle.claim_job(text, interval, text[]),
    lifecycle.renew_lease(uuid, text, interval),
    lifecycle.complete_job(uuid, text, jsonb),
    lifecycle.fail_job(uuid, text, text),
    lifecycle.confirm_step(bigint, text),
    lifecycle.retention_sweep(),
    lifecycle.preview_erasure(text, text, text, jsonb),
    lifecycle.tenant_names(text[]),
    lifecycle.find_tenants(text, integer),
    lifecycle.is_member(text, text, text),
    lifecycle.unmapped_references(),
    lifecycle.retention_disclosure(),
    lifecycle.compliance_report(timestamptz, timestamptz),
    lifecycle.set_column_label(regclass, text, text),
    lifecycle.exclude_from_export(regclass, text, text),
    lifecycle.include_in_export(regclass, text),
    lifecycle.export_contents(text, text, text),
    lifecycle.open_export(text, text, text, text, text),
    lifecycle.fetch_export(text, integer),
    lifecycle.export_download(uuid, text, text, text, inet, text),
    lifecycle.expire_export(uuid, text),
    lifecycle.audit_chain_heads()
  FROM PUBLIC;
REVOKE EXECUTE ON PROCEDURE lifecycle.run_due_jobs_each(integer) FROM PUBLIC;
