-- The API benchmark's tenants: @TENANTS@ registered workspaces, each named
-- "<company> <number>" ("Northwind 0042"): a search for a number finds one
-- workspace, a search for a company a tenth of them.
CREATE SCHEMA bench;
CREATE TABLE bench.workspaces (
    id   text PRIMARY KEY,
    name text NOT NULL
);
INSERT INTO bench.workspaces
SELECT 'ws-' || lpad(g::text, 4, '0'),
       (ARRAY['Northwind', 'Globex', 'Initech', 'Umbrella', 'Hooli', 'Stark', 'Wayne',
              'Acme', 'Vandelay', 'Soylent'])[1 + g % 10] || ' ' || lpad(g::text, 4, '0')
  FROM generate_series(0, @TENANTS@ - 1) AS g;
SELECT lifecycle.register_tenant('bench.workspaces', 'id', 'name');
-- What was generated, so that a later run can reuse the database.
CREATE TABLE bench.generated (jobs bigint NOT NULL, tenants integer NOT NULL, version integer NOT NULL);
