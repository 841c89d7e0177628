-- lifecycle: the extension's tables.
--
-- Configuration tables (the data map), legal holds and the audit log are
-- extension configuration tables: pg_dump keeps their rows. Other roles
-- cannot write them; every change goes through the extension's functions.

-- ----- data map -----------------------------------------------------------------

CREATE TABLE lifecycle.subject_tables (
    relation      regclass    PRIMARY KEY,
    subject_type  text        NOT NULL UNIQUE,
    id_column     name        NOT NULL,
    tenant_column name,
    label         text,
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_by text        NOT NULL
);
COMMENT ON TABLE lifecycle.subject_tables IS
    'Tables that define a subject type (one row per subject, for example users).';

CREATE TABLE lifecycle.tenant_tables (
    relation      regclass    PRIMARY KEY,
    id_column     name        NOT NULL,
    -- The column holding a tenant's display name (jobs are searched by it).
    name_column   name,
    label         text,
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_by text        NOT NULL
);
CREATE UNIQUE INDEX tenant_tables_one_row ON lifecycle.tenant_tables ((true));
COMMENT ON TABLE lifecycle.tenant_tables IS 'The tenant (workspace) table.';

CREATE TABLE lifecycle.tables (
    relation           regclass    PRIMARY KEY,
    subject_type       text        NOT NULL,
    -- The column naming the subject, or (subject_via) the column that links
    -- each row to a row of a registered parent that names it (the
    -- attachments of a subject's report).
    subject_column     name,
    subject_via        name,
    -- The tenant column, or (tenant_via) the column that links each row to a
    -- registered parent that carries the tenant (posts -> channels).
    tenant_column      name,
    tenant_via         name,
    on_erase           text        NOT NULL DEFAULT 'delete'
                       CHECK (on_erase IN ('delete', 'anonymize', 'retain')),
    retain_for         interval,
    legal_basis        text,
    soft_delete_column name,
    label              text,
    -- Also redact the subject's identifiers where other subjects' rows of
    -- this table mention them (by default those are only counted).
    redact_mentions    boolean     NOT NULL DEFAULT false,
    registered_at      timestamptz NOT NULL DEFAULT now(),
    registered_by      text        NOT NULL,
    CHECK ((on_erase = 'retain') = (retain_for IS NOT NULL)),
    CHECK (on_erase <> 'retain' OR legal_basis IS NOT NULL),
    CHECK ((subject_column IS NULL) <> (subject_via IS NULL)),
    CHECK (tenant_column IS NULL OR tenant_via IS NULL)
);
COMMENT ON TABLE lifecycle.tables IS
    'Tables holding rows of a subject: the column tying a row to its subject and tenant (directly or through a parent), and what erasure does.';

-- Column-to-key links: a column that references a registered table's key
-- without a foreign key (applications often declare none). A path through a
-- parent (tenant_via, subject_via) always has its link here, declared or
-- taken from the foreign key when the table was registered.
CREATE TABLE lifecycle.links (
    relation      regclass    NOT NULL,
    column_name   name        NOT NULL,
    parent        regclass    NOT NULL,
    parent_column name        NOT NULL,
    source        text        NOT NULL CHECK (source IN ('declared', 'foreign key')),
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_by text        NOT NULL,
    PRIMARY KEY (relation, column_name)
);
COMMENT ON TABLE lifecycle.links IS
    'Columns that reference a registered table''s key, declared where the schema has no foreign key.';

CREATE TABLE lifecycle.column_rules (
    relation    regclass    NOT NULL,
    column_name name        NOT NULL,
    rule        text        NOT NULL
                CHECK (rule IN ('keep', 'clear', 'redact', 'deleted_name', 'deleted_email', 'hash', 'empty',
                                'storage_object', 'erased_at')),
    set_at      timestamptz NOT NULL DEFAULT now(),
    set_by      text        NOT NULL,
    PRIMARY KEY (relation, column_name)
);
COMMENT ON TABLE lifecycle.column_rules IS 'How erasure treats individual personal columns.';

CREATE TABLE lifecycle.column_exports (
    relation    regclass    NOT NULL,
    column_name name        NOT NULL,
    -- What people read instead of the column's name; NULL: the default
    -- label made from the name ("created_at" -> "Created at").
    label       text        CHECK (label IS NULL OR pg_catalog.btrim(label) <> ''),
    -- Set: the column never leaves the system (password and token hashes,
    -- internal secrets); the export's README gives this reason.
    excluded    text        CHECK (excluded IS NULL OR pg_catalog.btrim(excluded) <> ''),
    set_at      timestamptz NOT NULL DEFAULT now(),
    set_by      text        NOT NULL,
    PRIMARY KEY (relation, column_name)
);
COMMENT ON TABLE lifecycle.column_exports IS
    'How exports show individual columns: a friendly label, or left out with a reason.';

CREATE TABLE lifecycle.memberships (
    relation       regclass    PRIMARY KEY,
    subject_type   text        NOT NULL,
    subject_column name        NOT NULL,
    tenant_column  name        NOT NULL,
    role_column    name        NOT NULL,
    -- How the role column says "admin": 'exact' (its value is one of
    -- admin_roles), 'list' (an array holding one of them), 'delimited' (a
    -- string of roles separated by role_separator, one of them an admin
    -- role), 'flag' (a boolean that is true for admins).
    role_kind      text        NOT NULL DEFAULT 'exact'
                   CHECK (role_kind IN ('exact', 'list', 'delimited', 'flag')),
    role_separator text,
    admin_roles    text[],
    -- A boolean column that is true while the membership is current
    -- (is_active): rows where it is not true are former members.
    active_column  name,
    registered_at  timestamptz NOT NULL DEFAULT now(),
    registered_by  text        NOT NULL,
    CHECK ((role_kind = 'flag') = (admin_roles IS NULL)),
    CHECK (admin_roles IS NULL OR cardinality(admin_roles) > 0),
    CHECK ((role_kind = 'delimited') = (role_separator IS NOT NULL))
);
COMMENT ON TABLE lifecycle.memberships IS
    'Membership tables: which subject belongs to which tenant, with which role.';

CREATE TABLE lifecycle.scopes (
    relation      regclass    NOT NULL,
    scope_type    text        NOT NULL,
    column_name   name        NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    registered_by text        NOT NULL,
    PRIMARY KEY (relation, scope_type, column_name)
);
COMMENT ON TABLE lifecycle.scopes IS
    'Extra columns that tie rows to a hold scope (beyond subject and tenant columns).';

-- Every (relation, scope type, column) a legal hold can reach. A column
-- reached through a parent (tenant_via, subject_via) names the parent, the
-- parent's key the column references, and the parent's own scope column:
-- the row's scope id is the parent's value.
CREATE VIEW lifecycle.scope_columns AS
    SELECT relation, subject_type AS scope_type, id_column AS column_name,
           NULL::regclass AS via_parent, NULL::name AS via_key, NULL::name AS via_column
      FROM lifecycle.subject_tables
    UNION SELECT relation, 'tenant', tenant_column, NULL, NULL, NULL
      FROM lifecycle.subject_tables WHERE tenant_column IS NOT NULL
    UNION SELECT relation, 'tenant', id_column, NULL, NULL, NULL FROM lifecycle.tenant_tables
    UNION SELECT relation, subject_type, subject_column, NULL, NULL, NULL
      FROM lifecycle.tables WHERE subject_column IS NOT NULL
    UNION SELECT relation, 'tenant', tenant_column, NULL, NULL, NULL
      FROM lifecycle.tables WHERE tenant_column IS NOT NULL
    UNION SELECT relation, subject_type, subject_column, NULL, NULL, NULL FROM lifecycle.memberships
    UNION SELECT relation, 'tenant', tenant_column, NULL, NULL, NULL FROM lifecycle.memberships
    UNION SELECT relation, scope_type, column_name, NULL, NULL, NULL FROM lifecycle.scopes
    UNION SELECT t.relation, 'tenant', t.tenant_via, l.parent, l.parent_column,
                 coalesce(pt.tenant_column, pt.tenant_via, ps.tenant_column, pten.id_column)
      FROM lifecycle.tables t
      JOIN lifecycle.links l ON l.relation = t.relation AND l.column_name = t.tenant_via
      LEFT JOIN lifecycle.tables pt ON pt.relation = l.parent
      LEFT JOIN lifecycle.subject_tables ps ON ps.relation = l.parent
      LEFT JOIN lifecycle.tenant_tables pten ON pten.relation = l.parent
    UNION SELECT t.relation, t.subject_type, t.subject_via, l.parent, l.parent_column,
                 coalesce(pt.subject_column, pt.subject_via, ps.id_column)
      FROM lifecycle.tables t
      JOIN lifecycle.links l ON l.relation = t.relation AND l.column_name = t.subject_via
      LEFT JOIN lifecycle.tables pt ON pt.relation = l.parent
      LEFT JOIN lifecycle.subject_tables ps ON ps.relation = l.parent AND ps.subject_type = t.subject_type;

CREATE VIEW lifecycle.registered_relations AS
    SELECT DISTINCT relation FROM lifecycle.scope_columns;

CREATE VIEW lifecycle.data_map AS
SELECT r.relation,
       n.nspname::text AS schema_name,
       c.relname::text AS table_name,
       CASE WHEN s.relation IS NOT NULL THEN 'subject'
            WHEN te.relation IS NOT NULL THEN 'tenant'
            WHEN t.relation IS NOT NULL THEN 'table'
            ELSE 'membership' END AS kind,
       coalesce(s.subject_type, t.subject_type, m.subject_type) AS subject_type,
       coalesce(s.id_column, t.subject_column, m.subject_column) AS subject_column,
       coalesce(s.tenant_column, te.id_column, t.tenant_column, m.tenant_column) AS tenant_column,
       CASE WHEN s.relation IS NOT NULL THEN 'anonymize'
            WHEN te.relation IS NOT NULL THEN 'delete'
            ELSE coalesce(t.on_erase, 'delete') END AS on_erase,
       t.retain_for,
       t.legal_basis,
       t.soft_delete_column,
       coalesce(t.label, s.label, te.label, initcap(replace(c.relname, '_', ' '))) AS label,
       m.role_column,
       m.admin_roles,
       coalesce((SELECT jsonb_object_agg(cr.column_name, cr.rule ORDER BY cr.column_name)
                   FROM lifecycle.column_rules cr WHERE cr.relation = r.relation), '{}') AS column_rules,
       coalesce((SELECT jsonb_agg(jsonb_build_object('scope_type', sc.scope_type, 'column', sc.column_name)
                                  ORDER BY sc.scope_type, sc.column_name)
                   FROM lifecycle.scopes sc WHERE sc.relation = r.relation), '[]') AS extra_scopes,
       coalesce(s.registered_at, te.registered_at, t.registered_at, m.registered_at) AS registered_at,
       coalesce(s.registered_by, te.registered_by, t.registered_by, m.registered_by) AS registered_by,
       t.subject_via,
       t.tenant_via,
       m.role_kind,
       m.role_separator,
       coalesce(t.redact_mentions, false) AS redact_mentions,
       (m.relation IS NOT NULL) AS is_membership,
       coalesce((SELECT jsonb_agg(jsonb_build_object('column', l.column_name, 'parent', l.parent::text,
                                                     'parent_column', l.parent_column, 'source', l.source)
                                  ORDER BY l.column_name)
                   FROM lifecycle.links l WHERE l.relation = r.relation), '[]') AS links,
       m.active_column,
       te.name_column AS tenant_name_column
  FROM lifecycle.registered_relations r
  JOIN pg_catalog.pg_class c ON c.oid = r.relation
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN lifecycle.subject_tables s ON s.relation = r.relation
  LEFT JOIN lifecycle.tenant_tables te ON te.relation = r.relation
  LEFT JOIN lifecycle.tables t ON t.relation = r.relation
  LEFT JOIN lifecycle.memberships m ON m.relation = r.relation;
COMMENT ON VIEW lifecycle.data_map IS 'The data map: one row per registered table.';

-- ----- legal holds ----------------------------------------------------------------

CREATE TABLE lifecycle.legal_holds (
    id             uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    scope_type     text        NOT NULL,
    scope_id       text        NOT NULL,
    tenant_id      text,
    reason         text        NOT NULL CHECK (btrim(reason) <> ''),
    created_by     text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz,
    active         boolean     NOT NULL DEFAULT true,
    released_at    timestamptz,
    released_by    text,
    release_reason text,
    CHECK (active = (released_at IS NULL)),
    CHECK (active OR released_by IS NOT NULL)
);
CREATE INDEX legal_holds_scope ON lifecycle.legal_holds (scope_type, scope_id) WHERE active;
COMMENT ON TABLE lifecycle.legal_holds IS
    'Legal holds. Active and unexpired holds block changes to the rows in their scope.';

CREATE VIEW lifecycle.holds_in_force AS
    SELECT * FROM lifecycle.legal_holds
     WHERE active AND (expires_at IS NULL OR expires_at > now());

-- ----- audit log ------------------------------------------------------------------

CREATE SEQUENCE lifecycle.audit_log_id_seq;

CREATE TABLE lifecycle.audit_log (
    id              bigint      PRIMARY KEY,
    occurred_at     timestamptz NOT NULL,
    event_type      text        NOT NULL,
    actor           text,
    subject_type    text,
    subject_id      text,
    tenant_id       text,
    ip              inet,
    user_agent      text,
    reason          text,
    details         jsonb,
    chain           integer     NOT NULL,
    salt            bytea,
    personal_digest bytea       NOT NULL,
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL,
    redacted_at     timestamptz
);
-- A subject's own events, newest first (the privacy center's activity page)
CREATE INDEX audit_log_subject ON lifecycle.audit_log (subject_type, subject_id, id);
CREATE INDEX audit_log_tenant ON lifecycle.audit_log (tenant_id, occurred_at);
-- The whole log newest first (a platform admin's audit page and CSV export)
CREATE INDEX audit_log_time ON lifecycle.audit_log (occurred_at, id);
CREATE INDEX audit_log_chain ON lifecycle.audit_log (chain, id);
COMMENT ON TABLE lifecycle.audit_log IS
    'Append-only, hash-chained audit events. Verify with lifecycle.verify_audit_log().';

CREATE TABLE lifecycle.audit_chains (
    chain     integer PRIMARY KEY,
    last_id   bigint,
    last_hash bytea   NOT NULL,
    events    bigint  NOT NULL DEFAULT 0
) WITH (fillfactor = 20);
COMMENT ON TABLE lifecycle.audit_chains IS
    'Head of each audit hash chain: publish these hashes to anchor the log outside the database.';

SELECT pg_catalog.pg_extension_config_dump('lifecycle.subject_tables', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.tenant_tables', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.tables', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.column_rules', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.column_exports', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.memberships', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.scopes', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.links', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.legal_holds', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.audit_log', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.audit_chains', '');
SELECT pg_catalog.pg_extension_config_dump('lifecycle.audit_log_id_seq', '');
