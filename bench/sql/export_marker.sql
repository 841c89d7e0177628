-- export benchmark: what its database already holds, so that a later run can
-- reuse it (a heavy user of 1,000,000 rows takes minutes to generate). A row
-- in export_data is written only once the demo data is complete; a row in
-- heavy_users once that heavy user is.
CREATE SCHEMA lifecycle_bench;
CREATE TABLE lifecycle_bench.export_data (
    users         integer     NOT NULL,
    generator_md5 text        NOT NULL,
    version       integer     NOT NULL,
    generated_in  interval    NOT NULL,
    finished_at   timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE lifecycle_bench.heavy_users (
    rows_total integer     PRIMARY KEY,
    user_id    bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
