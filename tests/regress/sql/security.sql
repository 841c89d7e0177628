-- Security: what a table owner, or any role, cannot get around.

-- Hold ids compare the way the key column compares, and are stored as the
-- column's type prints them; an id no key column can hold is refused.
CREATE TABLE app.cases (id bigint PRIMARY KEY, ref character(8) NOT NULL, owner_id bigint NOT NULL,
                        note text, category text);
INSERT INTO app.cases VALUES (1, 'K-1', 3, 'first', 'a'), (2, 'K-2', 2, 'second', 'b');
SELECT lifecycle.register_table('app.cases', 'user', 'owner_id');
SELECT lifecycle.register_scope('app.cases', 'case_ref', 'ref');
SELECT lifecycle.place_hold('case_ref', 'K-1', NULL, 'Case K-1', 'legal@acme.example') AS case_hold \gset
SELECT lifecycle.place_hold('user', ' 0002', NULL, 'Regulator inquiry about user 2', 'legal@acme.example') AS user_hold \gset
SELECT scope_type, scope_id FROM lifecycle.legal_holds WHERE id IN (:'case_hold', :'user_hold') ORDER BY 1;
SELECT try($$DELETE FROM app.cases WHERE id = 1$$);
SELECT try($$UPDATE app.cases SET note = 'x' WHERE id = 2$$);
SELECT try($$SELECT lifecycle.place_hold('user', 'two', NULL, 'typo', 'legal@acme.example')$$);

-- DDL that rewrites or drops held values, or makes them lose durability.
SELECT try($$ALTER TABLE app.cases ALTER COLUMN note TYPE varchar(3) USING left(note, 3)$$);
SELECT try($$ALTER TABLE app.cases DROP COLUMN category$$);
SELECT try($$ALTER TABLE app.cases SET UNLOGGED$$);
ALTER TABLE app.cases ADD COLUMN priority integer;
SELECT * FROM app.cases ORDER BY id;

-- The extension's own tables: whatever is granted on them, only its
-- functions write them.
CREATE ROLE regress_intruder LOGIN;
GRANT ALL ON ALL TABLES IN SCHEMA lifecycle TO regress_intruder;
CREATE SCHEMA intruder AUTHORIZATION regress_intruder;
SET ROLE regress_intruder;
SELECT try($$DELETE FROM lifecycle.tables$$);
SELECT try($$UPDATE lifecycle.legal_holds SET active = false$$);
SELECT try($$INSERT INTO lifecycle.audit_log (id, occurred_at, event_type, chain, personal_digest, prev_hash, hash)
             VALUES (-1, now(), 'legal_hold.released', 0, '', '', '')$$);
SELECT try($$CREATE TABLE intruder.pins (hold uuid REFERENCES lifecycle.legal_holds)$$);
RESET ROLE;
-- Nor may anyone be allowed to move the sequences its rows are numbered from.
SELECT try($$GRANT ALL ON ALL SEQUENCES IN SCHEMA lifecycle TO regress_intruder$$);
DROP SCHEMA intruder;
REVOKE ALL ON ALL TABLES IN SCHEMA lifecycle FROM regress_intruder;
DROP ROLE regress_intruder;

-- The row guard's condition, which any role may call, checks the types of
-- the keys it is given before reading them.
SELECT regexp_replace(substring(pg_get_triggerdef(oid) FROM 'regclass, ([^,]+),'), '[^0-9-]', '', 'g') AS sig
  FROM pg_trigger WHERE tgrelid = 'app.cases'::regclass AND tgname = 'lifecycle_guard' \gset
SELECT try(format($$SELECT lifecycle.row_may_be_held('app.cases'::regclass, %s, 1::bigint, 2::bigint)$$, :'sig'));
SELECT lifecycle.row_may_be_held('app.cases'::regclass, :'sig'::bigint, 'K-1'::character(8), 9::bigint) AS may_be_held;

SELECT lifecycle.release_hold(:'case_hold', 'legal@acme.example', 'Closed');
SELECT lifecycle.release_hold(:'user_hold', 'legal@acme.example', 'Closed');
SELECT lifecycle.unregister_table('app.cases');
DROP TABLE app.cases;
SELECT ok FROM lifecycle.verify_audit_log();

-- What the catalog says about every object of the extension; a new function
-- or table shows up here and has to be placed.
-- Functions PUBLIC may execute (each safe for any arguments):
SELECT p.oid::regprocedure AS public_function
  FROM pg_proc p
 WHERE p.pronamespace = 'lifecycle'::regnamespace
   AND has_function_privilege('public', p.oid, 'EXECUTE')
 ORDER BY p.oid::regprocedure::text;
-- Functions that run with their owner's rights: none.
SELECT p.oid::regprocedure AS security_definer
  FROM pg_proc p WHERE p.pronamespace = 'lifecycle'::regnamespace AND p.prosecdef;
-- SQL and PL/pgSQL functions parse under the caller's search path unless
-- they pin one (C functions pin it themselves): the one that does not is the
-- procedure that commits, which a SET clause would forbid, and it names
-- every object with its schema.
SELECT p.oid::regprocedure AS unpinned, l.lanname
  FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
 WHERE p.pronamespace = 'lifecycle'::regnamespace AND l.lanname <> 'c'
   AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false);
-- Tables and sequences pg_dump does not carry over: the job counts, which a
-- restore's COPY into lifecycle.jobs rebuilds.
SELECT c.oid::regclass AS not_dumped, c.relkind
  FROM pg_class c JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e'
  JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'lifecycle'
 WHERE c.relkind IN ('r', 'p', 'S') AND NOT c.oid = ANY (e.extconfig)
 ORDER BY c.oid::regclass::text;
-- Tables without the guard against writes from outside the extension: none.
SELECT o.relation AS unguarded
  FROM lifecycle.own_tables o
 WHERE NOT EXISTS (SELECT 1 FROM pg_trigger t
                    WHERE t.tgrelid = o.relation AND t.tgname = 'own_table_guard' AND t.tgenabled = 'A');
