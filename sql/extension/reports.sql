-- lifecycle: reports over the data map and the jobs.

-- Tables and columns that point at a registered subject or tenant table but
-- are not in the data map: the shadow copies an erasure would miss.
CREATE FUNCTION lifecycle.unmapped_references()
RETURNS TABLE (relation regclass, columns text[], references_table regclass, scope_type text,
               evidence text, reason text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
WITH targets AS (
    SELECT s.relation, s.subject_type AS scope_type FROM lifecycle.subject_tables s
    UNION ALL
    SELECT t.relation, 'tenant' FROM lifecycle.tenant_tables t
), fks AS (
    SELECT c.conrelid AS rel, t.relation AS target, t.scope_type, c.conname,
           ARRAY(SELECT a.attname::text
                   FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                   JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
                  ORDER BY k.i) AS cols
      FROM pg_constraint c
      JOIN targets t ON t.relation = c.confrelid
     WHERE c.contype = 'f' AND c.conparentid = 0
       AND c.connamespace <> 'lifecycle'::regnamespace
), found AS (
    SELECT f.rel::regclass AS relation, f.cols AS columns, f.target::regclass AS references_table,
           f.scope_type,
           'foreign key ' || quote_ident(f.conname) AS evidence,
           CASE WHEN NOT EXISTS (SELECT 1 FROM lifecycle.registered_relations r WHERE r.relation = f.rel)
                THEN 'table is not in the data map'
                ELSE 'column is not mapped to scope ' || f.scope_type END AS reason
      FROM fks f
     WHERE NOT EXISTS (SELECT 1 FROM lifecycle.scope_columns sc
                        WHERE sc.relation = f.rel AND sc.scope_type = f.scope_type
                          AND cardinality(f.cols) = 1 AND sc.column_name = f.cols[1])
    UNION ALL
    -- Columns named after a subject type (user_id, author_user_id) in tables
    -- the data map does not know, without a foreign key.
    SELECT c.oid::regclass, ARRAY[a.attname::text], t.relation::regclass, t.scope_type,
           'column name', 'table is not in the data map'
      FROM pg_attribute a
      JOIN pg_class c ON c.oid = a.attrelid
      JOIN targets t ON t.scope_type <> 'tenant'
                    AND a.attname::text ~ ('^(.*_)?' || regexp_replace(t.scope_type, '\W', '', 'g') || '_id$')
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
       AND a.attnum > 0 AND NOT a.attisdropped
       AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace,
                                  'lifecycle'::regnamespace, 'pg_toast'::regnamespace)
       AND NOT EXISTS (SELECT 1 FROM lifecycle.registered_relations r WHERE r.relation = c.oid)
       AND NOT EXISTS (SELECT 1 FROM fks f WHERE f.rel = c.oid AND a.attname::text = ANY (f.cols))
)
SELECT * FROM found ORDER BY relation::text, columns::text
$$;
COMMENT ON FUNCTION lifecycle.unmapped_references() IS
    'Tables and columns that reference a registered subject or tenant table but are not in the data map.';

-- The retention table a privacy policy needs, generated from the data map.
CREATE FUNCTION lifecycle.retention_disclosure()
RETURNS TABLE (data_type text, relation regclass, on_erasure text, retention_period text, legal_basis text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
SELECT d.label,
       d.relation::regclass,
       CASE
         WHEN d.kind = 'subject' THEN
           'Anonymized in place: ' || coalesce(
             (SELECT string_agg(k || ' (' || v || ')', ', ' ORDER BY k)
                FROM jsonb_each_text(d.column_rules) AS r(k, v) WHERE v <> 'keep'),
             'no personal columns registered')
           || '; the row stays as a tombstone until purged'
         WHEN d.kind = 'tenant' THEN
           'Kept while the workspace exists; on workspace erasure its personal columns are anonymized and purge removes it'
         WHEN d.on_erase = 'delete' THEN 'Deleted'
         WHEN d.on_erase = 'retain' THEN
           'Kept for the retention period, then deleted'
           || coalesce(' (cleared at erasure: ' ||
                (SELECT string_agg(k, ', ' ORDER BY k) FROM jsonb_each_text(d.column_rules) AS r(k, v)
                  WHERE v NOT IN ('keep')) || ')', '')
         WHEN d.on_erase = 'anonymize' THEN
           coalesce('Kept without personal data (' ||
                (SELECT string_agg(k || ': ' || v, ', ' ORDER BY k) FROM jsonb_each_text(d.column_rules) AS r(k, v)
                  WHERE v <> 'keep') || ')',
                    'Kept, attributed to the anonymized account')
           || '; removed by purge'
       END,
       CASE
         WHEN d.on_erase = 'retain' THEN d.retain_for::text || ' after erasure'
         WHEN d.on_erase = 'delete' AND d.kind NOT IN ('subject', 'tenant') THEN 'Until erasure'
         ELSE 'Anonymized at erasure; removed by purge'
       END,
       d.legal_basis
  FROM lifecycle.data_map d
 ORDER BY CASE d.kind WHEN 'subject' THEN 0 WHEN 'tenant' THEN 1 ELSE 2 END, d.label
$$;
COMMENT ON FUNCTION lifecycle.retention_disclosure() IS
    'Data type, what erasure does, retention period and legal basis, from the data map.';

-- Requests by type and status in [from_ts, to_ts): time to completion and
-- deadlines missed, with the reasons.
CREATE FUNCTION lifecycle.compliance_report(from_ts timestamptz, to_ts timestamptz)
RETURNS TABLE (job_type text, status text, requests bigint, completed bigint,
               mean_time_to_completion interval, worst_time_to_completion interval,
               deadlines_missed bigint, missed_reasons jsonb)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
WITH j AS (
    SELECT j.*,
           CASE WHEN j.status = 'completed' THEN j.finished_at - j.requested_at END AS took,
           CASE
             WHEN j.status IN ('rejected', 'cancelled') THEN false
             WHEN j.finished_at IS NOT NULL THEN j.finished_at > j.due_at
             ELSE now() > j.due_at
           END AS missed
      FROM lifecycle.jobs j
     WHERE j.requested_at >= from_ts AND j.requested_at < to_ts
), why AS (
    SELECT j.job_type, j.status,
           CASE
             WHEN j.blocked_by_hold THEN 'blocked by legal hold'
             WHEN j.status = 'failed' THEN 'failed: ' || coalesce(j.error_sqlstate, '?')
             WHEN j.status = 'pending' THEN 'awaiting approval'
             WHEN j.status = 'processing' AND j.result IS NOT NULL THEN 'waiting for steps outside the database'
             WHEN j.scheduled_for > j.due_at THEN 'cooling-off ends after the deadline'
             WHEN j.status = 'completed' THEN 'completed late'
             ELSE 'not run in time'
           END AS reason
      FROM j WHERE j.missed
)
SELECT j.job_type, j.status, count(*), count(*) FILTER (WHERE j.status = 'completed'),
       avg(j.took), max(j.took), count(*) FILTER (WHERE j.missed),
       coalesce((SELECT jsonb_object_agg(w.reason, w.n)
                   FROM (SELECT why.reason, count(*) AS n FROM why
                          WHERE why.job_type = j.job_type AND why.status = j.status
                          GROUP BY why.reason) w), '{}'::jsonb)
  FROM j
 GROUP BY j.job_type, j.status
 ORDER BY j.job_type, j.status
$$;
COMMENT ON FUNCTION lifecycle.compliance_report(timestamptz, timestamptz) IS
    'Requests by type and status: counts, mean and worst time to completion, deadlines missed and why.';

-- run_due_jobs() is a function: the jobs of one call commit together (each in
-- a subtransaction of its own). This procedure commits after every job, so
-- each job is one transaction: CALL lifecycle.run_due_jobs_each();
-- (not inside an explicit transaction block).
-- (No SET clause: a procedure with one cannot commit.)
CREATE PROCEDURE lifecycle.run_due_jobs_each(max_jobs integer DEFAULT 100)
LANGUAGE plpgsql
AS $$
DECLARE
    done integer := 0;
BEGIN
    IF max_jobs IS NULL OR max_jobs OPERATOR(pg_catalog.<) 1 THEN
        RAISE EXCEPTION 'max_jobs must be at least 1, not %', max_jobs
              USING ERRCODE = '22023';
    END IF;
    WHILE done OPERATOR(pg_catalog.<) max_jobs LOOP
        EXIT WHEN lifecycle.run_due_jobs(1) OPERATOR(pg_catalog.=) 0;
        COMMIT;
        done := done OPERATOR(pg_catalog.+) 1;
    END LOOP;
    RAISE NOTICE 'lifecycle.run_due_jobs_each: % job(s) run', done;
END $$;
COMMENT ON PROCEDURE lifecycle.run_due_jobs_each(integer) IS
    'Runs due erase and purge jobs like run_due_jobs(), committing after each one.';
