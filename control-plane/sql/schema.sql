-- lifecycled: the control plane's own tables, in the schema `lifecycled` of
-- the primary database. Version 1. Applied by `lifecycled setup` (which
-- records it in lifecycled.schema_version); later versions add files, never
-- edit this one.

-- Admin tokens. The token itself is never stored: `lookup` is its public
-- prefix (lc_<lookup>_<secret>) and `secret_hash` the SHA-256 of the whole
-- token. The name is the actor the extension records (requested_by,
-- approved_by, ...), so it is unique forever: a revoked token's name is not
-- given to someone else.
CREATE TABLE lifecycled.admin_tokens (
    id           uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    name         text        NOT NULL UNIQUE
                             CHECK (btrim(name) = name AND name <> '' AND length(name) <= 200),
    role         text        NOT NULL CHECK (role IN ('platform-admin', 'tenant-admin')),
    tenant       text,
    lookup       text        NOT NULL UNIQUE CHECK (lookup ~ '^[0-9a-f]{12}$'),
    secret_hash  bytea       NOT NULL CHECK (length(secret_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz,
    CHECK ((role = 'tenant-admin') = (tenant IS NOT NULL AND btrim(tenant) <> ''))
);
COMMENT ON TABLE lifecycled.admin_tokens IS
    'Admin tokens of lifecycled (hashes only). Managed with `lifecycled token create|list|revoke`.';
