-- guards benchmark: the guarded variants.
--
-- posts_guarded: registered with the extension, with legal holds on users
-- outside the hot set (so the row guard matches every row against the holds
-- of the 'user' scope type instead of taking its "nothing held" shortcut).
--
-- posts_plpgsql: what a user would write instead: a holds table with an
-- index, and a BEFORE UPDATE OR DELETE row trigger that looks up an active,
-- unexpired hold on the row's author or workspace and raises if it finds one.
--
-- posts_floor: not a guard but the least any row trigger on UPDATE and
-- DELETE costs: an AFTER row trigger whose WHEN condition reads the row's
-- scope columns and is never true, so its function never runs. PostgreSQL
-- still fetches the old row again for every updated or deleted row to
-- evaluate the condition; the extension's guard pays that too.

SELECT lifecycle.register_tenant('bench.workspaces', 'id');
SELECT lifecycle.register_subject('bench.users', 'id', tenant_column => 'workspace_id');
SELECT lifecycle.register_table('bench.posts_guarded', 'user', 'author_id', tenant_column => 'workspace_id');

SELECT lifecycle.place_hold('user', (@USERS@ + h)::text, NULL, 'bench hold', 'bench')
  FROM generate_series(1, @HELD_USERS@) AS h;

CREATE TABLE bench.legal_holds (
    id         uuid        PRIMARY KEY,
    scope_type text        NOT NULL,
    scope_id   text        NOT NULL,
    tenant_id  text,
    active     boolean     NOT NULL DEFAULT true,
    expires_at timestamptz
);
CREATE INDEX legal_holds_scope ON bench.legal_holds (scope_type, scope_id) WHERE active;

-- The same holds.
INSERT INTO bench.legal_holds (id, scope_type, scope_id, tenant_id, active, expires_at)
SELECT id, scope_type, scope_id, tenant_id, active, expires_at FROM lifecycle.legal_holds;

CREATE FUNCTION bench.refuse_held_row() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (
        SELECT 1
          FROM bench.legal_holds h
         WHERE h.active
           AND (h.expires_at IS NULL OR h.expires_at > now())
           AND ((h.scope_type = 'user' AND h.scope_id = OLD.author_id::text
                 AND (h.tenant_id IS NULL OR h.tenant_id = OLD.workspace_id::text))
                OR (h.scope_type = 'tenant' AND h.scope_id = OLD.workspace_id::text))
    ) THEN
        RAISE EXCEPTION 'cannot % row % of %: it is under legal hold',
                        lower(TG_OP), OLD.id, TG_TABLE_NAME
              USING ERRCODE = 'P0001';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER refuse_held_row BEFORE UPDATE OR DELETE ON bench.posts_plpgsql
    FOR EACH ROW EXECUTE FUNCTION bench.refuse_held_row();

CREATE FUNCTION bench.never_called() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the floor trigger''s condition is never true';
END
$$;

CREATE TRIGGER floor AFTER UPDATE OR DELETE ON bench.posts_floor
    FOR EACH ROW WHEN (OLD.author_id < 0 AND OLD.workspace_id IS NULL)
    EXECUTE FUNCTION bench.never_called();
