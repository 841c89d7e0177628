-- lifecycle: reports over the data map and the jobs.

-- Tables and columns that point at a registered subject or tenant table but
-- are not in the data map: the shadow copies an erasure would miss. Three
-- kinds of evidence, strongest first:
--   * a foreign key to the subject or tenant table;
--   * a link declared with register_link() to it;
--   * the column's name and type: a name derived from the registered table
--     (chat.users with key id: user_id, userid, "UserId", user, users_id,
--     author_user_id, target_userid; the subject type's name: customer_id),
--     for subject types also the usual names of a person's role
--     (created_by, creatorid, owner_id, author, assignee_id, modified_by,
--     member_id, ...), for the tenant also tenant_id, workspace_id, org_id,
--     organization_id; and a type that can hold the key (string and uuid
--     keys: string or uuid columns; integer keys: integer or numeric
--     columns; otherwise the key's own type), so created_by timestamptz or
--     owner boolean is not a reference.
-- Not reported: the extension's and the system's tables, tables of other
-- extensions, partitions (their root is), views; columns the data map
-- already maps for that scope; by name only: a column the data map maps to
-- any scope, a column whose foreign key or declared link points at another
-- table, and a table's own single-column primary key named after the table
-- (members.member_id). One row per relation, columns and scope: a foreign
-- key wins over a declared link, both over the name.
CREATE FUNCTION lifecycle.unmapped_references()
RETURNS TABLE (relation regclass, columns text[], references_table regclass, scope_type text,
               evidence text, reason text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
WITH RECURSIVE domains (oid, base) AS (
    SELECT t.oid, t.typbasetype FROM pg_catalog.pg_type t WHERE t.typtype = 'd'
    UNION ALL
    SELECT d.oid, t.typbasetype
      FROM domains d JOIN pg_catalog.pg_type t ON t.oid = d.base
     WHERE t.typtype = 'd'
), types AS (
    -- Every type a column can have, with the kind of key value it holds
    -- (a domain: its base type's).
    SELECT t.oid, b.oid AS base,
           CASE
             WHEN b.oid IN ('pg_catalog.int2'::pg_catalog.regtype, 'pg_catalog.int4'::pg_catalog.regtype,
                            'pg_catalog.int8'::pg_catalog.regtype,
                            'pg_catalog.numeric'::pg_catalog.regtype) THEN 'number'
             WHEN b.oid = 'pg_catalog.uuid'::pg_catalog.regtype OR b.typcategory = 'S' THEN 'string'
           END AS kind
      FROM pg_catalog.pg_type t
      LEFT JOIN domains d ON d.oid = t.oid
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_type x WHERE x.oid = d.base AND x.typtype = 'd')
      JOIN pg_catalog.pg_type b ON b.oid = coalesce(d.base, t.oid)
), targets AS (
    -- The registered subject and tenant tables and their keys.
    SELECT x.relation::oid AS target, x.scope_type, x.id_column::text AS key_column,
           ty.base AS key_base, ty.kind AS key_kind,
           lower(regexp_replace(x.id_column, '[^A-Za-z0-9]+', '', 'g')) AS key2,
           lower(trim(BOTH '_' FROM regexp_replace(regexp_replace(c.relname, '([a-z0-9])([A-Z])', '\1_\2', 'g'),
                                                   '[^A-Za-z0-9]+', '_', 'g'))) AS rel_words
      FROM (SELECT s.relation, s.subject_type AS scope_type, s.id_column FROM lifecycle.subject_tables s
            UNION ALL
            SELECT t.relation, 'tenant', t.id_column FROM lifecycle.tenant_tables t) x
      JOIN pg_catalog.pg_class c ON c.oid = x.relation
      JOIN pg_catalog.pg_attribute a ON a.attrelid = x.relation AND a.attname = x.id_column
      JOIN types ty ON ty.oid = a.atttypid
), words AS (
    -- What a reference to each target is named after: the table's name, its
    -- last word (auth_user: user), the subject type, and for the tenant the
    -- usual names of a tenant.
    SELECT t.target, w.word
      FROM targets t
     CROSS JOIN LATERAL (
           SELECT t.rel_words
           UNION SELECT substring(t.rel_words FROM '[a-z0-9]+$')
           UNION SELECT t.scope_type WHERE t.scope_type <> 'tenant'
           UNION SELECT g FROM unnest(ARRAY['tenant', 'workspace', 'organization', 'organisation', 'org']) g
                  WHERE t.scope_type = 'tenant') w(word)
), stems AS (
    -- Each word, and its singular: the plural only with the key (users_id),
    -- the singular also alone (user, owner_user).
    SELECT DISTINCT w.target, s.stem, replace(s.stem, '_', '') AS stem2, s.alone
      FROM words w
     CROSS JOIN LATERAL (
           SELECT w.word,
                  CASE
                    WHEN w.word = 'people' THEN 'person'
                    WHEN w.word ~ 'ies$' THEN regexp_replace(w.word, 'ies$', 'y')
                    WHEN w.word ~ '(sses|uses|xes|ches|shes)$' THEN regexp_replace(w.word, 'es$', '')
                    WHEN w.word ~ '(ss|us|is)$' THEN w.word
                    ELSE regexp_replace(w.word, 's$', '')
                  END) v(word, singular)
     CROSS JOIN LATERAL (VALUES (v.word, v.word = v.singular), (v.singular, true)) s(stem, alone)
     WHERE length(replace(s.stem, '_', '')) >= 3
), rels AS (
    -- Tables that may hold references: ordinary and partitioned tables
    -- (partition roots), not the system's, the extension's or another
    -- extension's.
    SELECT c.oid AS rel
      FROM pg_catalog.pg_class c
      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
       AND n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
       AND c.relnamespace <> 'lifecycle'::regnamespace
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                        WHERE d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = c.oid
                          AND d.deptype = 'e')
), fks AS (
    SELECT coalesce(pg_partition_root(c.conrelid), c.conrelid)::oid AS rel, t.target, t.scope_type,
           ARRAY(SELECT a.attname::text
                   FROM unnest(c.conkey) WITH ORDINALITY k(n, i)
                   JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n
                  ORDER BY k.i) AS cols,
           'foreign key ' || quote_ident(c.conname) AS evidence, 1 AS strength
      FROM pg_catalog.pg_constraint c
      JOIN targets t ON t.target = c.confrelid
     WHERE c.contype = 'f' AND c.conparentid = 0
), declared AS (
    SELECT l.relation::oid AS rel, t.target, t.scope_type, ARRAY[l.column_name::text] AS cols,
           'declared link' AS evidence, 2 AS strength
      FROM lifecycle.links l
      JOIN targets t ON t.target = l.parent
     WHERE l.source = 'declared'
), linked AS (
    SELECT * FROM fks UNION ALL SELECT * FROM declared
), cols AS (
    SELECT a.attrelid AS rel, a.attname::text AS column_name, a.attnum, ty.base, ty.kind,
           lower(regexp_replace(regexp_replace(a.attname, '([a-z0-9])([A-Z])', '\1_\2', 'g'),
                                '[^A-Za-z0-9]+', '_', 'g')) AS words
      FROM rels r
      JOIN pg_catalog.pg_attribute a ON a.attrelid = r.rel
      JOIN types ty ON ty.oid = a.atttypid
     WHERE a.attnum > 0 AND NOT a.attisdropped
), named AS (
    SELECT c.rel, t.target, t.scope_type, ARRAY[c.column_name] AS cols,
           'column name and type' AS evidence, 3 AS strength
      FROM cols c
     CROSS JOIN LATERAL (SELECT replace(c.words, '_', '') AS name2) n
      JOIN targets t
        ON c.base = t.key_base OR (c.kind IS NOT NULL AND c.kind = t.key_kind)
     WHERE (   (t.scope_type <> 'tenant'
                AND c.words ~ ('(^|_)(last_?)?(creator|created_?by|modified_?by|updated_?by|changed_?by'
                               '|edited_?by|deleted_?by|removed_?by|archived_?by|closed_?by|resolved_?by'
                               '|completed_?by|cancell?ed_?by|approved_?by|approver|reviewed_?by|reviewer'
                               '|submitted_?by|uploaded_?by|uploader|invited_?by|inviter|invitee|owner|author'
                               '|assignee|assigned_?to|reporter|reported_?by|requester|requestor'
                               '|requested_?by|actor|performed_?by|triggered_?by|granted_?by|revoked_?by'
                               '|banned_?by|blocked_?by|verified_?by|signed_?by|sent_?by|sender|recipient'
                               '|receiver|member|subscriber|follower|watcher|participant|person)'
                               '(_?(id|uuid|user_?id))?$'))
            OR EXISTS (SELECT 1 FROM stems s
                        WHERE s.target = t.target
                          AND (   right(n.name2, length(s.stem2) + 2) = s.stem2 || 'id'
                               OR (t.key2 <> 'id' AND right(n.name2, length(s.stem2 || t.key2)) = s.stem2 || t.key2)
                               OR (t.key2 <> 'id' AND strpos(t.key2, s.stem2) > 0
                                   AND right(n.name2, length(t.key2)) = t.key2)
                               OR (s.alone AND (n.name2 = s.stem2
                                                OR right(c.words, length(s.stem) + 1) = '_' || s.stem)))))
       -- the target's own key
       AND NOT (c.rel = t.target AND c.column_name = t.key_column)
       -- a column the data map knows under some scope
       AND NOT EXISTS (SELECT 1 FROM lifecycle.scope_columns sc
                        WHERE sc.relation = c.rel AND sc.column_name = c.column_name)
       -- a column that references another table (foreign key or declared link)
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                        WHERE k.conrelid = c.rel AND k.contype = 'f' AND k.conkey = ARRAY[c.attnum]
                          AND k.confrelid <> t.target)
       AND NOT EXISTS (SELECT 1 FROM lifecycle.links l
                        WHERE l.relation = c.rel AND l.column_name = c.column_name
                          AND l.parent <> t.target)
       -- a table's own key named after the table (members.member_id)
       AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k
                         JOIN pg_catalog.pg_class kc ON kc.oid = k.conrelid
                        WHERE k.conrelid = c.rel AND k.contype = 'p' AND k.conkey = ARRAY[c.attnum]
                          AND n.name2 IN (lower(regexp_replace(kc.relname, '[^A-Za-z0-9]+', '', 'g')) || 'id',
                                          lower(regexp_replace(kc.relname, '[^A-Za-z0-9]+|s$', '', 'g')) || 'id'))
), found AS (
    SELECT f.* FROM linked f
     WHERE f.rel IN (SELECT r.rel FROM rels r)
       AND NOT EXISTS (SELECT 1 FROM lifecycle.scope_columns sc
                        WHERE sc.relation = f.rel AND sc.scope_type = f.scope_type
                          AND sc.column_name::text = ANY (f.cols))
    UNION ALL
    SELECT * FROM named
), best AS (
    -- One row per relation, columns and scope, with the strongest evidence;
    -- a column a foreign key or declared link already reports is not
    -- reported again by its name.
    SELECT DISTINCT ON (f.rel, f.cols, f.scope_type) f.*
      FROM found f
     WHERE NOT EXISTS (SELECT 1 FROM found o
                        WHERE o.rel = f.rel AND o.scope_type = f.scope_type AND o.strength < f.strength
                          AND o.cols @> f.cols)
     ORDER BY f.rel, f.cols, f.scope_type, f.strength, f.evidence
)
SELECT b.rel::regclass, b.cols, b.target::regclass, b.scope_type, b.evidence,
       CASE WHEN NOT EXISTS (SELECT 1 FROM lifecycle.registered_relations r WHERE r.relation = b.rel)
            THEN 'table is not in the data map'
            ELSE 'column is not mapped to scope ' || b.scope_type END
  FROM best b
 ORDER BY b.rel::regclass::text, b.cols::text, b.scope_type
$$;
COMMENT ON FUNCTION lifecycle.unmapped_references() IS
    'Tables and columns that reference a registered subject or tenant table but are not in the data map: by foreign key, declared link, or column name and type.';

-- Columns the data map finds a subject's or a tenant's rows by (subject and
-- tenant columns, the columns of a path through a parent, extra scope
-- columns, membership columns, the subject and tenant tables' keys) that no
-- index can serve: none that is valid and not partial has the column first
-- (a partitioned table: an index on the table itself, which covers every
-- partition). Registration warns about the same columns.
CREATE FUNCTION lifecycle.unindexed_keys()
RETURNS TABLE (relation regclass, column_name text, scope_type text, reason text, suggestion text)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
WITH keys AS (
    SELECT DISTINCT sc.relation::oid AS rel, sc.column_name::text AS col, sc.scope_type
      FROM lifecycle.scope_columns sc
), unserved AS (
    SELECT k.*,
           (SELECT string_agg(CASE WHEN NOT i.indisvalid THEN quote_ident(ic.relname) || ' is not valid'
                                   ELSE quote_ident(ic.relname) || ' is partial' END,
                              ', ' ORDER BY ic.relname)
              FROM pg_catalog.pg_index i
              JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
             WHERE i.indrelid = k.rel AND i.indkey[0] = a.attnum) AS unusable
      FROM keys k
      JOIN pg_catalog.pg_attribute a ON a.attrelid = k.rel AND a.attname = k.col
     WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_index i
                        WHERE i.indrelid = k.rel AND i.indkey[0] = a.attnum
                          AND i.indisvalid AND i.indpred IS NULL)
)
SELECT u.rel::regclass, u.col, u.scope_type,
       CASE WHEN u.scope_type = 'tenant' THEN 'erasing one tenant reads the whole table'
            ELSE 'erasing one subject reads the whole table' END
       || coalesce(' (index ' || u.unusable || ')', ''),
       'CREATE INDEX ON ' || u.rel::regclass::text || ' (' || quote_ident(u.col) || ')'
  FROM unserved u
 ORDER BY u.rel::regclass::text, u.col, u.scope_type
$$;
COMMENT ON FUNCTION lifecycle.unindexed_keys() IS
    'Columns the data map finds a subject''s or tenant''s rows by that no valid, non-partial index leads with, and the index to create.';
REVOKE EXECUTE ON FUNCTION lifecycle.unindexed_keys() FROM PUBLIC;

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
