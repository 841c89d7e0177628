-- lifecycle: jobs (export, erasure and purge requests), what erasure retained,
-- and the steps outside the database that a job waits for.
--
-- Jobs are records. Their state machine is enforced by a trigger, so a direct
-- UPDATE by the owner obeys the same rules as the functions:
--
--   pending -> approved -> processing -> completed | failed
--   pending -> rejected            (a reason is required)
--   pending | approved -> cancelled
--
-- plus processing -> approved, which only the engine takes (a job found
-- blocked by a legal hold goes back to wait).

CREATE TABLE lifecycle.jobs (
    id                uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    job_type          text        NOT NULL CHECK (job_type IN ('export', 'erase', 'purge')),
    target_type       text        NOT NULL,
    target_id         text        NOT NULL,
    tenant_id         text,
    status            text        NOT NULL DEFAULT 'pending'
                      CHECK (status IN ('pending', 'approved', 'processing', 'completed',
                                        'failed', 'rejected', 'cancelled')),
    requested_by      text        NOT NULL CHECK (btrim(requested_by) <> ''),
    reason            text,
    jurisdiction      text        NOT NULL DEFAULT 'gdpr' CHECK (jurisdiction IN ('gdpr', 'ccpa')),
    requires_approval boolean     NOT NULL DEFAULT true,
    approved_by       text,
    approved_at       timestamptz,
    rejected_by       text,
    rejected_at       timestamptz,
    rejection_reason  text,
    cancelled_by      text,
    cancelled_at      timestamptz,
    -- What the requester decided for workspaces the subject is the last admin of.
    options           jsonb       NOT NULL DEFAULT '{}',
    requested_at      timestamptz NOT NULL DEFAULT now(),
    -- End of the cooling-off: the job does not run before.
    scheduled_for     timestamptz NOT NULL DEFAULT now(),
    -- Statutory deadline (30 days GDPR, 45 days CCPA).
    due_at            timestamptz NOT NULL,
    blocked_by_hold   boolean     NOT NULL DEFAULT false,
    blocking_hold_id  uuid,
    attempts          integer     NOT NULL DEFAULT 0,
    worker            text,
    lease_expires_at  timestamptz,
    started_at        timestamptz,
    finished_at       timestamptz,
    error             text,
    error_sqlstate    text,
    result            jsonb,
    result_digest     text,
    updated_at        timestamptz NOT NULL DEFAULT now(),
    CHECK (status <> 'rejected' OR btrim(coalesce(rejection_reason, '')) <> ''),
    CHECK (approved_by IS NULL OR approved_by <> requested_by),
    CHECK (blocked_by_hold = (blocking_hold_id IS NOT NULL))
);
CREATE INDEX jobs_target ON lifecycle.jobs (target_type, target_id);
CREATE INDEX jobs_runnable ON lifecycle.jobs (scheduled_for) WHERE status IN ('approved', 'processing');
-- The job list (lifecycle.list_jobs) reads newest first by (requested_at, id)
-- and stops at its page. These indexes yield rows in that order for no
-- filter, a status, a type, a status and a type, a tenant, and a tenant with
-- a status and a type (a tenant admin's filters, or a search that found one
-- tenant by name); with a tenant and only one of status or type, the
-- tenant's rows are read in order and filtered. A search by job or target
-- id reads its few rows through the primary key and jobs_target_id.
CREATE INDEX jobs_recent ON lifecycle.jobs (requested_at, id);
CREATE INDEX jobs_status ON lifecycle.jobs (status, requested_at, id);
CREATE INDEX jobs_type ON lifecycle.jobs (job_type, requested_at, id);
CREATE INDEX jobs_status_type ON lifecycle.jobs (status, job_type, requested_at, id);
CREATE INDEX jobs_tenant ON lifecycle.jobs (tenant_id, requested_at, id);
CREATE INDEX jobs_tenant_status_type ON lifecycle.jobs (tenant_id, status, job_type, requested_at, id);
CREATE INDEX jobs_target_id ON lifecycle.jobs (target_id);
-- release_hold() finds the jobs a hold blocked.
CREATE INDEX jobs_blocked ON lifecycle.jobs (blocking_hold_id) WHERE blocked_by_hold;
-- The oldest due job of each type (lifecycle.oldest_due_jobs) is the first
-- entry of this index.
CREATE INDEX jobs_due ON lifecycle.jobs (job_type, scheduled_for)
    WHERE status = 'approved' OR (status = 'pending' AND NOT requires_approval);
-- At most one open erasure per target.
CREATE UNIQUE INDEX jobs_one_open_erasure ON lifecycle.jobs (target_type, target_id)
    WHERE job_type = 'erase' AND status IN ('pending', 'approved', 'processing');
COMMENT ON TABLE lifecycle.jobs IS
    'Export, erasure and purge requests and their state. Change them only through the lifecycle functions.';

-- Rows that erasure kept for a legal reason, and until when.
CREATE TABLE lifecycle.retention (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id        uuid        NOT NULL REFERENCES lifecycle.jobs (id),
    relation      regclass    NOT NULL,
    key_column    name        NOT NULL,
    target_type   text        NOT NULL,
    target_id     text        NOT NULL,
    rows          bigint      NOT NULL,
    legal_basis   text        NOT NULL,
    retain_until  timestamptz NOT NULL,
    purged_at     timestamptz,
    purged_rows   bigint
);
CREATE INDEX retention_due ON lifecycle.retention (retain_until) WHERE purged_at IS NULL;
CREATE INDEX retention_target ON lifecycle.retention (target_type, target_id);
COMMENT ON TABLE lifecycle.retention IS
    'What erasure retained (table, rows, legal basis, end of the period); purge and the retention sweep remove it once the period has ended.';

-- Work outside the database (stored files, third parties) that a job waits
-- for, item by item.
-- job_id has no foreign key on purpose: an erasure records one step per
-- stored object (thousands for a heavy user) and jobs are never deleted
-- (their trigger refuses it), so a per-row referential check would only
-- cost time.
CREATE TABLE lifecycle.external_steps (
    id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id        uuid        NOT NULL,
    kind          text        NOT NULL,
    relation      regclass,
    column_name   name,
    reference     text        NOT NULL,
    status        text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    confirmed_at  timestamptz,
    confirmed_by  text,
    attempts      integer     NOT NULL DEFAULT 0,
    last_error    text
);
CREATE INDEX external_steps_job ON lifecycle.external_steps (job_id);
CREATE INDEX external_steps_pending ON lifecycle.external_steps (job_id) WHERE status = 'pending';
COMMENT ON TABLE lifecycle.external_steps IS
    'Steps outside the database (stored files, third-party deletions) a job waits for until each is confirmed.';

-- The bundle a completed export job built: where it is stored, until when
-- the subject may download it, and its downloads. Written by
-- complete_job(), export_download() and expire_export() only.
CREATE TABLE lifecycle.export_bundles (
    job_id             uuid        PRIMARY KEY REFERENCES lifecycle.jobs (id),
    object_key         text        NOT NULL CHECK (object_key <> ''),
    size_bytes         bigint      NOT NULL CHECK (size_bytes >= 0),
    sha256             text,
    snapshot_at        timestamptz,
    completed_at       timestamptz NOT NULL DEFAULT now(),
    expires_at         timestamptz NOT NULL,
    expired_at         timestamptz,
    downloads          integer     NOT NULL DEFAULT 0,
    last_downloaded_at timestamptz,
    CHECK (expires_at > completed_at AND expires_at <= completed_at + interval '7 days')
);
-- The expiry sweep: bundles whose entitlement ended and that are not deleted yet.
CREATE INDEX export_bundles_due ON lifecycle.export_bundles (expires_at) WHERE expired_at IS NULL;
COMMENT ON TABLE lifecycle.export_bundles IS
    'Export bundles: object key, size, digest, the 7-day entitlement, expiry and downloads.';

-- ----- the job list -------------------------------------------------------------

-- Jobs newest first by (requested_at, id), strictly after the cursor
-- (after_requested_at, after_id: the last row of the previous page), at
-- most lim (1 to 500). tenants: only those tenants' jobs (NULL: every
-- tenant's). q: a job id, a target id or part of a tenant's name. Written in
-- Rust (extension/src/jobs/list.rs); declared here because it returns its
-- rows in materialize mode.
CREATE FUNCTION lifecycle.list_jobs(
    status             text        DEFAULT NULL,
    job_type           text        DEFAULT NULL,
    q                  text        DEFAULT NULL,
    tenants            text[]      DEFAULT NULL,
    lim                integer     DEFAULT 50,
    after_requested_at timestamptz DEFAULT NULL,
    after_id           uuid        DEFAULT NULL)
RETURNS TABLE (
    id                uuid,
    job_type          text,
    target_type       text,
    target_id         text,
    tenant_id         text,
    tenant_name       text,
    status            text,
    requested_by      text,
    reason            text,
    jurisdiction      text,
    requires_approval boolean,
    approved_by       text,
    approved_at       timestamptz,
    rejected_by       text,
    rejected_at       timestamptz,
    rejection_reason  text,
    cancelled_by      text,
    cancelled_at      timestamptz,
    requested_at      timestamptz,
    scheduled_for     timestamptz,
    due_at            timestamptz,
    blocked_by_hold   boolean,
    blocking_hold_id  uuid,
    attempts          integer,
    worker            text,
    lease_expires_at  timestamptz,
    started_at        timestamptz,
    finished_at       timestamptz,
    error             text,
    error_sqlstate    text,
    result_digest     text,
    updated_at        timestamptz)
LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'lifecycle_list_jobs';
COMMENT ON FUNCTION lifecycle.list_jobs(text, text, text, text[], integer, timestamptz, uuid) IS
    'Jobs newest first by (requested_at, id) after a keyset cursor, filtered by status, type and tenants, searched by job id, target id or tenant name.';
REVOKE EXECUTE ON FUNCTION lifecycle.list_jobs(text, text, text, text[], integer, timestamptz, uuid) FROM PUBLIC;

-- ----- counts and wake-ups ------------------------------------------------------
--
-- Job counts by status and type, for all tenants together (job_totals) and
-- for each tenant (job_tenant_counts), so that statistics never scan the
-- jobs. Both are ledgers: a row trigger adds rows of differences in the
-- transaction that changes a job, and a count is the sum of its key's rows.
-- Writers never wait for each other (they only insert), and a reader sums
-- exactly the changes its snapshot sees, so the counts agree with the jobs
-- whatever runs concurrently.
--
-- At the end of a statement that changed counts, the keys that have more
-- than 16 rows (of all tenants, and of the tenants it touched) are folded
-- into one row each, skipping rows that another open
-- transaction is folding, and folding nothing outside READ COMMITTED (where
-- a row folded concurrently would be a serialization failure). Folding only
-- keeps the ledgers short: a statement whose end-of-statement triggers do
-- not run (one the executor stopped early, as SPI does when it asks for one
-- row of an INSERT ... RETURNING) leaves its rows to the next statement.
--
-- Neither table is dumped: a restore loads the jobs with COPY, which fires
-- the triggers, so the counts are rebuilt from the restored jobs.
-- lifecycle.recount_jobs() rebuilds them on demand.
CREATE TABLE lifecycle.job_totals (
    status   text   NOT NULL,
    job_type text   NOT NULL,
    jobs     bigint NOT NULL
);
CREATE INDEX job_totals_key ON lifecycle.job_totals (status, job_type);
COMMENT ON TABLE lifecycle.job_totals IS
    'Number of jobs by status and type, as rows of differences to add up; kept by triggers on lifecycle.jobs. Read it with lifecycle.job_stats().';

CREATE TABLE lifecycle.job_tenant_counts (
    tenant_id text   NOT NULL,
    status    text   NOT NULL,
    job_type  text   NOT NULL,
    jobs      bigint NOT NULL
);
CREATE INDEX job_tenant_counts_key ON lifecycle.job_tenant_counts (tenant_id, status, job_type);
COMMENT ON TABLE lifecycle.job_tenant_counts IS
    'Number of jobs of each tenant by status and type, as rows of differences to add up; kept by triggers on lifecycle.jobs. Read it with lifecycle.job_stats(tenants).';

-- A job's row changed: its counts, and the wake-up of workers (NOTIFY
-- lifecycle_jobs with the job's id as the payload) when an open job is
-- inserted, and when a job becomes approved and not blocked (approved,
-- handed back by a worker or after a transient error, freed by the release
-- of the hold that blocked it).
CREATE FUNCTION lifecycle.job_changed() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM lifecycle.job_totals;
        DELETE FROM lifecycle.job_tenant_counts;
        RETURN NULL;
    ELSIF TG_OP = 'INSERT' THEN
        INSERT INTO lifecycle.job_totals (status, job_type, jobs)
             VALUES (NEW.status, NEW.job_type, 1);
        IF NEW.tenant_id IS NOT NULL THEN
            INSERT INTO lifecycle.job_tenant_counts (tenant_id, status, job_type, jobs)
                 VALUES (NEW.tenant_id, NEW.status, NEW.job_type, 1);
        END IF;
        IF NEW.status IN ('pending', 'approved') THEN
            PERFORM pg_notify('lifecycle_jobs', NEW.id::text);
        END IF;
        RETURN NULL;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO lifecycle.job_totals (status, job_type, jobs)
             VALUES (OLD.status, OLD.job_type, -1);
        IF OLD.tenant_id IS NOT NULL THEN
            INSERT INTO lifecycle.job_tenant_counts (tenant_id, status, job_type, jobs)
                 VALUES (OLD.tenant_id, OLD.status, OLD.job_type, -1);
        END IF;
        RETURN NULL;
    END IF;
    IF (OLD.status, OLD.job_type) IS DISTINCT FROM (NEW.status, NEW.job_type) THEN
        INSERT INTO lifecycle.job_totals (status, job_type, jobs)
             VALUES (OLD.status, OLD.job_type, -1), (NEW.status, NEW.job_type, 1);
    END IF;
    IF (OLD.tenant_id, OLD.status, OLD.job_type) IS DISTINCT FROM (NEW.tenant_id, NEW.status, NEW.job_type) THEN
        INSERT INTO lifecycle.job_tenant_counts (tenant_id, status, job_type, jobs)
             SELECT * FROM (VALUES (OLD.tenant_id, OLD.status, OLD.job_type, -1),
                                   (NEW.tenant_id, NEW.status, NEW.job_type, 1)) d
              WHERE d.column1 IS NOT NULL;
    END IF;
    IF NEW.status = 'approved' AND NOT NEW.blocked_by_hold
       AND (OLD.status <> 'approved' OR OLD.blocked_by_hold) THEN
        PERFORM pg_notify('lifecycle_jobs', NEW.id::text);
    END IF;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION lifecycle.job_changed() IS
    'Counts a job''s change in lifecycle.job_totals and lifecycle.job_tenant_counts, and wakes workers (NOTIFY lifecycle_jobs) when a job becomes runnable.';

-- The end of a statement that changed jobs: fold the keys of the ledgers
-- that have more than 16 rows (all tenants' keys, and those of the tenants
-- of the jobs in the transition table). An update that changed no counted
-- column (a renewed lease) and ledgers with no long key cost one look each.
CREATE FUNCTION lifecycle.jobs_fold_counts() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
DECLARE
    tenants text[];
BEGIN
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RETURN NULL;
    END IF;
    -- (Nested: old_jobs exists only for an update.)
    IF TG_OP = 'UPDATE' THEN
        IF NOT EXISTS (
               SELECT 1 FROM changed_jobs n JOIN old_jobs o ON o.id = n.id
                WHERE (o.tenant_id, o.status, o.job_type) IS DISTINCT FROM (n.tenant_id, n.status, n.job_type)) THEN
            RETURN NULL;
        END IF;
    END IF;
    IF EXISTS (SELECT 1 FROM lifecycle.job_totals GROUP BY status, job_type HAVING count(*) > 16) THEN
        WITH crowded AS (
            SELECT status, job_type FROM lifecycle.job_totals
             GROUP BY 1, 2 HAVING count(*) > 16
        ), folded AS (
            DELETE FROM lifecycle.job_totals c
             WHERE c.ctid = ANY (ARRAY(
                   SELECT r.ctid FROM lifecycle.job_totals r JOIN crowded k USING (status, job_type)
                      FOR UPDATE OF r SKIP LOCKED))
            RETURNING c.status, c.job_type, c.jobs
        )
        INSERT INTO lifecycle.job_totals (status, job_type, jobs)
             SELECT status, job_type, sum(jobs) FROM folded
              GROUP BY 1, 2 HAVING sum(jobs) <> 0;
    END IF;
    tenants := ARRAY(SELECT DISTINCT tenant_id FROM changed_jobs WHERE tenant_id IS NOT NULL);
    IF cardinality(tenants) > 0 AND EXISTS (
           SELECT 1 FROM lifecycle.job_tenant_counts WHERE tenant_id = ANY (tenants)
            GROUP BY tenant_id, status, job_type HAVING count(*) > 16) THEN
        WITH crowded AS (
            SELECT tenant_id, status, job_type FROM lifecycle.job_tenant_counts
             WHERE tenant_id = ANY (tenants)
             GROUP BY 1, 2, 3 HAVING count(*) > 16
        ), folded AS (
            DELETE FROM lifecycle.job_tenant_counts c
             WHERE c.ctid = ANY (ARRAY(
                   SELECT r.ctid FROM lifecycle.job_tenant_counts r
                     JOIN crowded k USING (tenant_id, status, job_type)
                      FOR UPDATE OF r SKIP LOCKED))
            RETURNING c.tenant_id, c.status, c.job_type, c.jobs
        )
        INSERT INTO lifecycle.job_tenant_counts (tenant_id, status, job_type, jobs)
             SELECT tenant_id, status, job_type, sum(jobs) FROM folded
              GROUP BY 1, 2, 3 HAVING sum(jobs) <> 0;
    END IF;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION lifecycle.jobs_fold_counts() IS
    'Folds the rows of the job counts a statement touched once a key has more than 16.';

-- Nobody needs to call them: they run as the triggers of lifecycle.jobs.
REVOKE EXECUTE ON FUNCTION lifecycle.job_changed(), lifecycle.jobs_fold_counts() FROM PUBLIC;

CREATE TRIGGER job_counted AFTER INSERT OR DELETE ON lifecycle.jobs
    FOR EACH ROW EXECUTE FUNCTION lifecycle.job_changed();
-- Updates that change nothing counted or waited for (a renewed lease)
-- cost nothing.
CREATE TRIGGER job_counted_update AFTER UPDATE ON lifecycle.jobs
    FOR EACH ROW
    WHEN ((OLD.tenant_id, OLD.status, OLD.job_type, OLD.blocked_by_hold)
          IS DISTINCT FROM (NEW.tenant_id, NEW.status, NEW.job_type, NEW.blocked_by_hold))
    EXECUTE FUNCTION lifecycle.job_changed();
CREATE TRIGGER jobs_truncated AFTER TRUNCATE ON lifecycle.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.job_changed();
-- Transition tables need one trigger per event.
CREATE TRIGGER jobs_fold_insert AFTER INSERT ON lifecycle.jobs
    REFERENCING NEW TABLE AS changed_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.jobs_fold_counts();
CREATE TRIGGER jobs_fold_update AFTER UPDATE ON lifecycle.jobs
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS changed_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.jobs_fold_counts();
CREATE TRIGGER jobs_fold_delete AFTER DELETE ON lifecycle.jobs
    REFERENCING OLD TABLE AS changed_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION lifecycle.jobs_fold_counts();
-- Also under session_replication_role = replica (as a restore may run).
ALTER TABLE lifecycle.jobs ENABLE ALWAYS TRIGGER job_counted,
                           ENABLE ALWAYS TRIGGER job_counted_update,
                           ENABLE ALWAYS TRIGGER jobs_truncated,
                           ENABLE ALWAYS TRIGGER jobs_fold_insert,
                           ENABLE ALWAYS TRIGGER jobs_fold_update,
                           ENABLE ALWAYS TRIGGER jobs_fold_delete;

SELECT pg_catalog.pg_extension_config_dump('lifecycle.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.retention', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.external_steps', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.export_bundles', '');
-- The identity sequences of the two tables with generated ids: without
-- them a restored copy would hand out ids its rows already have, and the
-- first erasure with retained rows or stored files after a restore would fail.
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('lifecycle.retention', 'id')::pg_catalog.regclass, '');
SELECT pg_catalog.pg_extension_config_dump(
    pg_catalog.pg_get_serial_sequence('lifecycle.external_steps', 'id')::pg_catalog.regclass, '');
