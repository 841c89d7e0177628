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
CREATE INDEX jobs_status ON lifecycle.jobs (status, requested_at);
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

SELECT pg_catalog.pg_extension_config_dump('lifecycle.jobs', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.retention', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.external_steps', '');
