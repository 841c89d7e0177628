-- What the admin console reads, as a DBA sees it: the job list with its
-- filters, search, tenant scope and keyset pages; the counts by status and
-- type; the oldest due job of each type; a worker handing a job back; the
-- request context of audit events; and the refusals along the way. Its own
-- database (a data map has one tenant table).
DROP DATABASE IF EXISTS lifecycle_regress_job_list;
CREATE DATABASE lifecycle_regress_job_list;
\c lifecycle_regress_job_list
CREATE EXTENSION lifecycle;

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
    det := regexp_replace(det, '[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}', '<id>', 'g');
    det := regexp_replace(det, '\d{4}-\d\d-\d\d[T ][0-9:.]+([+-]\d\d(:\d\d)?|Z)?', '<time>', 'g');
    RAISE NOTICE E'%: %\nDETAIL: %\nHINT: %', st, msg, coalesce(nullif(det, ''), '(none)'),
                 coalesce(nullif(hnt, ''), '(none)');
END $$;

CREATE SCHEMA crm;
CREATE TABLE crm.accounts (id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE crm.contacts (id bigint PRIMARY KEY, account_id text NOT NULL REFERENCES crm.accounts);
CREATE INDEX ON crm.contacts (account_id);
INSERT INTO crm.accounts VALUES ('acme', 'Acme Corp'), ('globex', 'Globex'), ('tea', '100% Pure_Tea');
INSERT INTO crm.contacts SELECT g, (ARRAY['acme', 'globex', 'tea'])[1 + g % 3] FROM generate_series(1, 12) g;
SELECT lifecycle.register_tenant('crm.accounts', 'id', 'name');
SELECT lifecycle.register_subject('crm.contacts', 'id', 'contact', 'account_id');

-- One request a statement, so that each has its own requested_at.
SELECT lifecycle.request_export('contact', '1', 'globex', 'ann@crm') IS NOT NULL;
SELECT lifecycle.request_export('contact', '2', 'tea', 'ann@crm') IS NOT NULL;
SELECT lifecycle.request_erasure('contact', '3', 'acme', 'ann@crm', cooling_off => '0') IS NOT NULL;
SELECT lifecycle.request_erasure('contact', '4', 'globex', 'ann@crm', cooling_off => '0') IS NOT NULL;
SELECT lifecycle.request_erasure('contact', '5', 'tea', 'ann@crm', cooling_off => '0') IS NOT NULL;
SELECT lifecycle.request_export('contact', '6', 'acme', 'ann@crm') IS NOT NULL;
SELECT lifecycle.request_export('contact', '7', NULL, 'ann@crm') IS NOT NULL;
SELECT lifecycle.request_erasure('contact', '8', 'acme', 'ann@crm', cooling_off => '0') IS NOT NULL;
SELECT lifecycle.approve(id, 'dpo@crm') FROM lifecycle.jobs WHERE target_id = '3';
SELECT lifecycle.cancel(id, 'ann@crm') FROM lifecycle.jobs WHERE target_id = '4';

-- Newest first, with the tenant's name.
SELECT target_id, job_type, status, tenant_id, tenant_name FROM lifecycle.list_jobs();
-- Filters, and a page of two after a cursor.
SELECT target_id, status FROM lifecycle.list_jobs(status => 'pending');
SELECT target_id, job_type FROM lifecycle.list_jobs(job_type => 'export', lim => 2);
SELECT l.target_id
  FROM (SELECT requested_at, id FROM lifecycle.list_jobs(job_type => 'export', lim => 2) OFFSET 1) AS c,
       LATERAL lifecycle.list_jobs(job_type => 'export', lim => 2,
                                   after_requested_at => c.requested_at, after_id => c.id) AS l;
-- A search: part of a tenant's name in any letter case (no pattern
-- characters), a target id, a tenant's id; a tenant admin's scope.
SELECT target_id, tenant_name FROM lifecycle.list_jobs(q => 'CORP') ORDER BY target_id;
SELECT target_id, tenant_name FROM lifecycle.list_jobs(q => '%') ORDER BY target_id;
SELECT target_id, tenant_name FROM lifecycle.list_jobs(q => 'P%re') ORDER BY target_id;
SELECT target_id FROM lifecycle.list_jobs(q => '5');
SELECT target_id FROM lifecycle.list_jobs(q => 'globex') ORDER BY target_id;
SELECT target_id FROM lifecycle.list_jobs(tenants => ARRAY['acme']) ORDER BY target_id;
SELECT target_id FROM lifecycle.list_jobs(tenants => ARRAY['acme'], q => 'globex');
SELECT count(*) FROM lifecycle.list_jobs(tenants => ARRAY[]::text[]);
-- A job found by its id.
SELECT l.target_id FROM lifecycle.jobs j, lifecycle.list_jobs(q => upper(j.id::text)) l
 WHERE j.target_id = '6';

-- Refusals.
SELECT show($$SELECT * FROM lifecycle.list_jobs(status => 'done')$$);
SELECT show($$SELECT * FROM lifecycle.list_jobs(job_type => 'delete')$$);
SELECT show($$SELECT * FROM lifecycle.list_jobs(lim => 0)$$);
SELECT show($$SELECT * FROM lifecycle.list_jobs(lim => 501)$$);
SELECT show($$SELECT * FROM lifecycle.list_jobs(after_id => gen_random_uuid())$$);

-- The counts, every status and type, and of one tenant.
SELECT * FROM lifecycle.job_stats() WHERE jobs > 0;
SELECT count(*) AS pairs, sum(jobs) AS jobs FROM lifecycle.job_stats();
SELECT * FROM lifecycle.job_stats(ARRAY['globex']) WHERE jobs > 0;
SELECT lifecycle.recount_jobs();

-- The oldest due job of each type: the first export; the approved erasure.
SELECT d.job_type, j.target_id, d.age_seconds >= 0 AS due
  FROM lifecycle.oldest_due_jobs() d LEFT JOIN lifecycle.jobs j ON j.id = d.job_id;

-- A worker hands back a job it claimed, and cannot hand back another's.
SELECT lifecycle.claim_job('worker-1', job_types => ARRAY['export'])->>'target_id';
SELECT show($$SELECT lifecycle.release_lease(id, 'worker-2') FROM lifecycle.jobs WHERE target_id = '1'$$);
SELECT lifecycle.release_lease(id, 'worker-1') FROM lifecycle.jobs WHERE target_id = '1';
SELECT status, worker, lease_expires_at, attempts FROM lifecycle.jobs WHERE target_id = '1';
SELECT show($$SELECT lifecycle.release_lease(id, 'worker-1') FROM lifecycle.jobs WHERE target_id = '1'$$);
SELECT event_type, actor, details->>'worker' AS worker FROM lifecycle.audit_log
 WHERE event_type = 'job.lease_released';

-- Audit events take the request context of their transaction.
BEGIN;
SELECT set_config('lifecycle.request_ip', '203.0.113.9', true),
       set_config('lifecycle.request_user_agent', 'console/1.0', true);
SELECT lifecycle.approve(id, 'dpo@crm') FROM lifecycle.jobs WHERE target_id = '5';
COMMIT;
BEGIN;
SELECT set_config('lifecycle.request_ip', 'not an address', true);
SELECT lifecycle.reject(id, 'dpo@crm', 'duplicate') FROM lifecycle.jobs WHERE target_id = '8';
COMMIT;
SELECT event_type, host(ip), user_agent FROM lifecycle.audit_log
 WHERE event_type IN ('job.approved', 'job.rejected') ORDER BY id;

\c lifecycle_regress
DROP DATABASE lifecycle_regress_job_list;
