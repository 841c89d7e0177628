-- audit benchmark: the baseline, an unchained table of the same shape as
-- lifecycle.audit_log without the hash columns, with the same indexes.

CREATE SCHEMA bench;

CREATE TABLE bench.audit_plain (
    id           bigserial   PRIMARY KEY,
    occurred_at  timestamptz NOT NULL,
    event_type   text        NOT NULL,
    actor        text,
    subject_type text,
    subject_id   text,
    tenant_id    text,
    ip           inet,
    user_agent   text,
    reason       text,
    details      jsonb
);
CREATE INDEX audit_plain_subject ON bench.audit_plain (subject_type, subject_id);
CREATE INDEX audit_plain_tenant ON bench.audit_plain (tenant_id, occurred_at);
