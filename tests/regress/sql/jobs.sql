-- Jobs and erasure as a DBA uses them: request, cooling-off, approval,
-- last-admin protection, a legal hold that blocks the job, the run, the
-- receipt, purge, and the refusals along the way. Its own database (a data
-- map has one tenant table) and its own small schema.
DROP DATABASE IF EXISTS lifecycle_regress_jobs;
CREATE DATABASE lifecycle_regress_jobs;
\c lifecycle_regress_jobs
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

CREATE SCHEMA shop;
CREATE TABLE shop.customers (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text, phone text);
CREATE TABLE shop.stores (id text PRIMARY KEY, name text NOT NULL);
CREATE TABLE shop.staff (
    store_id text NOT NULL REFERENCES shop.stores, customer_id bigint NOT NULL REFERENCES shop.customers,
    role text NOT NULL, PRIMARY KEY (store_id, customer_id)
);
CREATE TABLE shop.reviews (
    id bigint PRIMARY KEY, store_id text NOT NULL REFERENCES shop.stores,
    author_id bigint NOT NULL REFERENCES shop.customers, body text NOT NULL, deleted_at timestamptz
);
CREATE TABLE shop.carts (
    id bigint PRIMARY KEY, customer_id bigint NOT NULL REFERENCES shop.customers, items int NOT NULL
);
CREATE TABLE shop.orders (
    id bigint PRIMARY KEY, store_id text NOT NULL REFERENCES shop.stores,
    customer_id bigint NOT NULL REFERENCES shop.customers, ship_to text, total_cents bigint NOT NULL
);
CREATE INDEX ON shop.staff (customer_id);
CREATE INDEX ON shop.reviews (author_id);
CREATE INDEX ON shop.carts (customer_id);
CREATE INDEX ON shop.orders (customer_id);

INSERT INTO shop.customers VALUES (1, 'ann@example.com', 'Ann', '+1 555 0100'),
                                  (2, 'ben@example.com', 'Ben', NULL),
                                  (3, 'cat@example.com', 'Cat', NULL);
INSERT INTO shop.stores VALUES ('north', 'North'), ('south', 'South');
INSERT INTO shop.staff VALUES ('north', 1, 'owner'), ('north', 2, 'clerk'), ('south', 3, 'owner'), ('south', 1, 'clerk');
INSERT INTO shop.reviews VALUES (1, 'north', 1, 'great', NULL), (2, 'north', 1, 'meh', now()),
                                (3, 'south', 3, 'fine', NULL);
INSERT INTO shop.carts VALUES (1, 1, 3), (2, 2, 1);
INSERT INTO shop.orders VALUES (1, 'north', 1, 'Ann, 1 Main St', 4900), (2, 'south', 3, 'Cat, 2 Side St', 900);

SELECT lifecycle.register_subject('shop.customers', 'id', subject_type => 'customer');
SELECT lifecycle.set_column_rule('shop.customers', 'email', 'deleted_email');
SELECT lifecycle.set_column_rule('shop.customers', 'name', 'deleted_name');
SELECT lifecycle.set_column_rule('shop.customers', 'phone', 'clear');
SELECT lifecycle.register_tenant('shop.stores', 'id');
SELECT lifecycle.register_table('shop.staff', 'customer', 'customer_id', tenant_column => 'store_id');
SELECT lifecycle.register_membership('shop.staff', 'customer_id', 'store_id', 'role', ARRAY['owner'],
                                     subject_type => 'customer');
SELECT lifecycle.register_table('shop.reviews', 'customer', 'author_id', tenant_column => 'store_id',
                                on_erase => 'anonymize', soft_delete_column => 'deleted_at');
SELECT lifecycle.register_table('shop.carts', 'customer', 'customer_id');
SELECT lifecycle.register_table('shop.orders', 'customer', 'customer_id', tenant_column => 'store_id',
                                on_erase => 'retain', retain_for => '10 years',
                                legal_basis => 'Commercial code: order records are kept 10 years');

-- What a privacy policy would say, from the data map.
SELECT data_type, relation, on_erasure, retention_period, legal_basis FROM lifecycle.retention_disclosure()
 WHERE relation::text LIKE 'shop.%';

-- Bad requests.
SELECT show($$SELECT lifecycle.request_erasure('robot', '1', NULL, 'dba@shop')$$);
SELECT show($$SELECT lifecycle.request_erasure('customer', '42', NULL, 'dba@shop')$$);
SELECT show($$SELECT lifecycle.request_erasure('customer', 'not-a-number', NULL, 'dba@shop')$$);
SELECT show($$SELECT lifecycle.request_erasure('customer', '1', NULL, NULL)$$);
SELECT show($$SELECT lifecycle.request_erasure('customer', '1', NULL, 'dba@shop', cooling_off => '-1 day')$$);
SELECT show($$SELECT lifecycle.request_erasure('customer', '1', NULL, 'dba@shop', jurisdiction => 'mars')$$);
SELECT show($$SELECT lifecycle.request_purge('customer', '2', NULL, 'dba@shop')$$);

-- Ann owns store north alone: the request must say what happens to it.
SELECT show($$SELECT lifecycle.request_erasure('customer', '1', NULL, 'dba@shop')$$);
SELECT show($$SELECT lifecycle.request_erasure('customer', '1', NULL, 'dba@shop',
                     workspaces => '{"north": {"transfer_to": "3"}}')$$);

-- Ben asks himself: a 30-day cooling-off, and he is pending deletion at once.
SELECT lifecycle.request_erasure('customer', '2', NULL, 'customer:2', 'I am leaving') AS ben \gset
SELECT job_type, status, requires_approval, scheduled_for - requested_at AS cooling_off,
       due_at - requested_at AS deadline, jurisdiction
  FROM lifecycle.jobs WHERE id = :'ben';
SELECT lifecycle.subject_state('customer', '2');
SELECT show($$SELECT lifecycle.request_erasure('customer', '2', NULL, 'customer:2')$$);
SELECT show(format('SELECT lifecycle.approve(%L, %L)', :'ben', 'customer:2'));
SELECT show(format('SELECT lifecycle.reject(%L, %L, %L)', :'ben', 'dpo@shop', ''));
SELECT lifecycle.approve(:'ben', 'dpo@shop');
SELECT show(format('SELECT lifecycle.run_job(%L)', :'ben'));
SELECT lifecycle.run_due_jobs();
-- He changes his mind during the cooling-off: nothing was touched.
SELECT lifecycle.cancel(:'ben', 'customer:2');
SELECT lifecycle.subject_state('customer', '2');
SELECT * FROM shop.customers WHERE id = 2;
SELECT show(format('SELECT lifecycle.cancel(%L, %L)', :'ben', 'customer:2'));
SELECT show(format('UPDATE lifecycle.jobs SET status = %L WHERE id = %L', 'approved', :'ben'));
SELECT show(format('DELETE FROM lifecycle.jobs WHERE id = %L', :'ben'));

-- Ann, for real: store north goes to Ben, no cooling-off, CCPA deadline.
SELECT lifecycle.request_erasure('customer', '1', NULL, 'dba@shop', 'ticket 991',
                                 cooling_off => '0', jurisdiction => 'ccpa',
                                 workspaces => '{"north": {"transfer_to": "2"}}') AS ann \gset
SELECT due_at - requested_at AS deadline FROM lifecycle.jobs WHERE id = :'ann';
SELECT lifecycle.run_due_jobs();   -- not approved yet
SELECT lifecycle.approve(:'ann', 'dpo@shop');

-- A legal hold on Ann: the job waits, visibly.
SELECT lifecycle.place_hold('customer', '1', NULL, 'Litigation 2026-17', 'legal@shop') AS hold \gset
SELECT lifecycle.run_due_jobs();
SELECT status, blocked_by_hold, blocking_hold_id = :'hold' AS blocked_by_that_hold FROM lifecycle.jobs WHERE id = :'ann';
SELECT lifecycle.release_hold(:'hold', 'legal@shop', 'settled');
SELECT status, blocked_by_hold FROM lifecycle.jobs WHERE id = :'ann';

-- The run.
SELECT lifecycle.run_due_jobs();
SELECT status, attempts, result_digest = encode(sha256(convert_to(result::text, 'UTF8')), 'hex') AS digest_ok
  FROM lifecycle.jobs WHERE id = :'ann';
SELECT lifecycle.subject_state('customer', '1');
SELECT * FROM shop.customers ORDER BY id;
SELECT * FROM shop.staff ORDER BY store_id, customer_id;
SELECT * FROM shop.reviews ORDER BY id;
SELECT * FROM shop.carts ORDER BY id;
SELECT * FROM shop.orders ORDER BY id;

-- The receipt: what happened, table by table; what was retained and why.
SELECT a->>'table' AS "table", a->>'action' AS action, (a->>'rows')::int AS rows, a->>'reason' AS reason
  FROM lifecycle.jobs, jsonb_array_elements(result->'actions') a WHERE id = :'ann';
SELECT r->>'table' AS "table", r->>'rows' AS rows, r->>'legal_basis' AS legal_basis, r->>'retain_for' AS retain_for
  FROM lifecycle.jobs, jsonb_array_elements(result->'retained') r WHERE id = :'ann';
SELECT result->'workspaces' AS workspaces, result->'verification'->'ok' AS verified
  FROM lifecycle.jobs WHERE id = :'ann';

-- Running it again changes nothing.
SELECT (lifecycle.run_job(:'ann'))->>'status';
SELECT show($$SELECT lifecycle.request_erasure('customer', '1', NULL, 'dba@shop')$$);

-- Audit: the events of the request, the personal fields of Ann's events are
-- gone, and the chains still verify.
SELECT event_type, actor, subject_id, reason IS NOT NULL AS has_reason, redacted_at IS NOT NULL AS redacted
  FROM lifecycle.audit_log WHERE subject_type = 'customer' ORDER BY id;
SELECT ok FROM lifecycle.verify_audit_log();

-- Purge: what erasure kept goes, unless something else still points at it.
SELECT lifecycle.request_purge('customer', '1', NULL, 'dba@shop') AS purge \gset
SELECT lifecycle.approve(:'purge', 'dpo@shop');
SELECT lifecycle.run_due_jobs();
SELECT a->>'table' AS "table", a->>'action' AS action, (a->>'rows')::int AS rows, a->>'reason' AS reason
  FROM lifecycle.jobs, jsonb_array_elements(result->'actions') a WHERE id = :'purge';

-- Reports.
SELECT job_type, status, requests, completed, deadlines_missed
  FROM lifecycle.compliance_report(now() - interval '1 day', now() + interval '1 day');
SELECT relation, columns, references_table, evidence, reason FROM lifecycle.unmapped_references()
 WHERE relation::text LIKE 'shop.%';
CREATE TABLE shop.wishlists (customer_id bigint REFERENCES shop.customers, item text);
SELECT relation, columns, references_table, evidence, reason FROM lifecycle.unmapped_references()
 WHERE relation::text LIKE 'shop.%';
DROP TABLE shop.wishlists;

\c lifecycle_regress
DROP DATABASE lifecycle_regress_jobs;
