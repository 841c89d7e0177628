-- lifecycle: trigger functions, the triggers on the extension's own tables,
-- the event triggers that guard DDL, and privileges.

CREATE FUNCTION lifecycle.guard_row() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'lifecycle_guard_row';
COMMENT ON FUNCTION lifecycle.guard_row() IS
    'Row guard of registered tables: refuses UPDATE and DELETE of rows under legal hold.';

CREATE FUNCTION lifecycle.row_may_be_held(oid, bigint, VARIADIC "any") RETURNS boolean
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'lifecycle_row_may_be_held';
COMMENT ON FUNCTION lifecycle.row_may_be_held(oid, bigint, VARIADIC "any") IS
    'The row guard''s WHEN condition: whether a row with these scope keys may be under legal hold.';

CREATE FUNCTION lifecycle.hold_in_force(regclass) RETURNS boolean
    LANGUAGE c VOLATILE STRICT AS 'MODULE_PATHNAME', 'lifecycle_hold_in_force';
COMMENT ON FUNCTION lifecycle.hold_in_force(regclass) IS
    'Whether a legal hold is in force for any scope the registered table maps (the row guard''s WHEN condition).';

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

ALTER TABLE lifecycle.legal_holds ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE lifecycle.subject_tables ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE lifecycle.tenant_tables ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE lifecycle.tables ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE lifecycle.memberships ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE lifecycle.scopes ENABLE ALWAYS TRIGGER invalidate_cache;
ALTER TABLE lifecycle.column_rules ENABLE ALWAYS TRIGGER invalidate_cache;

-- DDL guards. ENABLE ALWAYS: they also fire under session_replication_role = replica.
CREATE EVENT TRIGGER lifecycle_ddl_guard ON ddl_command_end
    WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE', 'ALTER TRIGGER')
    EXECUTE FUNCTION lifecycle.ddl_guard();
ALTER EVENT TRIGGER lifecycle_ddl_guard ENABLE ALWAYS;

CREATE EVENT TRIGGER lifecycle_drop_guard ON sql_drop
    EXECUTE FUNCTION lifecycle.drop_guard();
ALTER EVENT TRIGGER lifecycle_drop_guard ENABLE ALWAYS;

-- Guard status: every registered relation and partition with the state of
-- its guard triggers. Anything but 'ok' means a superuser bypassed a guard.
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
SELECT NULL, NULL, evtname::text,
       CASE WHEN evtenabled <> 'A' THEN 'event trigger not enable always (' || evtenabled::text || ')' ELSE 'ok' END
  FROM pg_catalog.pg_event_trigger WHERE evtname IN ('lifecycle_ddl_guard', 'lifecycle_drop_guard')
UNION ALL
SELECT NULL, NULL, x.evtname, 'event trigger missing'
  FROM (VALUES ('lifecycle_ddl_guard'), ('lifecycle_drop_guard')) AS x(evtname)
 WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_event_trigger e WHERE e.evtname = x.evtname)
UNION ALL
-- The extension's own protections: the append-only audit log, immutable
-- holds, the job state machine and the cache invalidation of every backend.
SELECT NULL, pg_catalog.to_regclass(x.relation), x.tgname,
       CASE WHEN tg.oid IS NULL THEN 'missing'
            WHEN tg.tgenabled <> 'A' THEN 'not enable always (' || tg.tgenabled::text || ')'
            ELSE 'ok' END
  FROM (VALUES ('lifecycle.audit_log', 'audit_log_append_only'),
               ('lifecycle.audit_log', 'audit_log_no_truncate'),
               ('lifecycle.legal_holds', 'legal_holds_immutable'),
               ('lifecycle.legal_holds', 'legal_holds_no_truncate'),
               ('lifecycle.jobs', 'jobs_state_machine'),
               ('lifecycle.legal_holds', 'invalidate_cache'),
               ('lifecycle.subject_tables', 'invalidate_cache'),
               ('lifecycle.tenant_tables', 'invalidate_cache'),
               ('lifecycle.tables', 'invalidate_cache'),
               ('lifecycle.memberships', 'invalidate_cache'),
               ('lifecycle.scopes', 'invalidate_cache'),
               ('lifecycle.column_rules', 'invalidate_cache')) AS x(relation, tgname)
  LEFT JOIN pg_catalog.pg_trigger tg
         ON tg.tgrelid = pg_catalog.to_regclass(x.relation) AND tg.tgname = x.tgname;
COMMENT ON VIEW lifecycle.guard_status IS
    'State of every guard trigger, including the extension''s own (audit log, holds, jobs, cache invalidation); any status but ok means a guard was disabled or dropped.';

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
-- roles that need them (see docs/privileges.md).

REVOKE ALL ON ALL TABLES IN SCHEMA lifecycle FROM PUBLIC;
GRANT USAGE ON SCHEMA lifecycle TO PUBLIC;
GRANT SELECT ON lifecycle.data_map, lifecycle.scope_columns, lifecycle.registered_relations,
                lifecycle.legal_holds, lifecycle.holds_in_force, lifecycle.guard_status
   TO PUBLIC;

REVOKE EXECUTE ON FUNCTION
    lifecycle.register_subject(regclass, text, text, text, text),
    lifecycle.register_tenant(regclass, text, text),
    lifecycle.register_table(regclass, text, text, text, text, interval, text, text, text),
    lifecycle.set_column_rule(regclass, text, text),
    lifecycle.register_membership(regclass, text, text, text, text[], text),
    lifecycle.register_scope(regclass, text, text),
    lifecycle.unregister_table(regclass),
    lifecycle.place_hold(text, text, text, text, text, timestamptz),
    lifecycle.release_hold(uuid, text, text),
    lifecycle.record_event(text, text, text, text, text, jsonb, text, text, text),
    lifecycle.verify_audit_log(),
    lifecycle.request_export(text, text, text, text, text, boolean),
    lifecycle.request_erasure(text, text, text, text, text, interval, text, boolean, jsonb),
    lifecycle.request_purge(text, text, text, text, text, boolean),
    lifecycle.approve(uuid, text),
    lifecycle.reject(uuid, text, text),
    lifecycle.cancel(uuid, text),
    lifecycle.subject_state(text, text),
    lifecycle.run_due_jobs(integer),
    lifecycle.run_job(uuid, text),
    lifecycle.claim_job(text, interval, text[]),
    lifecycle.renew_lease(uuid, text, interval),
    lifecycle.complete_job(uuid, text, jsonb),
    lifecycle.fail_job(uuid, text, text),
    lifecycle.confirm_step(bigint, text),
    lifecycle.retention_sweep(),
    lifecycle.unmapped_references(),
    lifecycle.retention_disclosure(),
    lifecycle.compliance_report(timestamptz, timestamptz)
  FROM PUBLIC;
REVOKE EXECUTE ON PROCEDURE lifecycle.run_due_jobs_each(integer) FROM PUBLIC;
