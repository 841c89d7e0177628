-- guards benchmark: data.
--
-- A SaaS shape: workspaces (tenants), users (subjects) and three identical
-- posts tables. Everything is generated set-based; the bench replaces
-- @ROWS@ (posts in the hot range, ids 1..@ROWS@), @USERS@ (authors of those
-- posts), @WORKSPACES@ and @HELD_USERS@ (users placed under legal hold; they
-- author only posts above the hot range, so no benchmarked statement reaches
-- a held row).

CREATE SCHEMA bench;

CREATE TABLE bench.workspaces (
    id         uuid        PRIMARY KEY,
    name       text        NOT NULL,
    created_at timestamptz NOT NULL
);

INSERT INTO bench.workspaces (id, name, created_at)
SELECT md5('workspace ' || w)::uuid,
       'Workspace ' || w,
       timestamptz '2024-01-01 00:00:00+00' + w * interval '1 hour'
  FROM generate_series(1, @WORKSPACES@) AS w;

CREATE TABLE bench.users (
    id           bigint      PRIMARY KEY,
    workspace_id uuid        NOT NULL,
    email        text        NOT NULL,
    name         text        NOT NULL,
    created_at   timestamptz NOT NULL
);

-- User u belongs to workspace 1 + u % @WORKSPACES@.
INSERT INTO bench.users (id, workspace_id, email, name, created_at)
SELECT u,
       md5('workspace ' || (1 + u % @WORKSPACES@))::uuid,
       'user' || u || '@example.com',
       'User ' || u,
       timestamptz '2024-06-01 00:00:00+00' + u * interval '1 minute'
  FROM generate_series(1, @USERS@ + @HELD_USERS@) AS u;

CREATE INDEX users_workspace ON bench.users (workspace_id);

CREATE TABLE bench.posts_plain (
    id           bigint      NOT NULL,
    workspace_id uuid        NOT NULL,
    author_id    bigint      NOT NULL,
    title        text        NOT NULL,
    body         text        NOT NULL,
    created_at   timestamptz NOT NULL,
    deleted_at   timestamptz
);

-- Hot range: post p is written by user 1 + (p * 7919) % @USERS@ (authors
-- scattered over the table), in that user's workspace; one post in 50 is
-- soft-deleted.
INSERT INTO bench.posts_plain (id, workspace_id, author_id, title, body, created_at, deleted_at)
SELECT p,
       md5('workspace ' || (1 + a % @WORKSPACES@))::uuid,
       a,
       'Post ' || p || ' by user ' || a,
       'Body of post ' || p || '. ' || repeat('Lorem ipsum dolor sit amet, consectetur adipiscing elit. ', 1 + p % 6),
       created_at,
       CASE WHEN p % 50 = 0 THEN created_at + interval '3 days' END
  FROM (SELECT p,
               1 + (p::bigint * 7919) % @USERS@ AS a,
               timestamptz '2025-01-01 00:00:00+00' + p * interval '20 seconds' AS created_at
          FROM generate_series(1, @ROWS@) AS p) AS g;

-- Posts of the held users, above the hot range (10 each).
INSERT INTO bench.posts_plain (id, workspace_id, author_id, title, body, created_at, deleted_at)
SELECT @ROWS@ + (h - 1) * 10 + k,
       md5('workspace ' || (1 + (@USERS@ + h) % @WORKSPACES@))::uuid,
       @USERS@ + h,
       'Held post ' || k || ' by user ' || (@USERS@ + h),
       'Body of a post under legal hold.',
       timestamptz '2025-06-01 00:00:00+00' + k * interval '1 hour',
       NULL
  FROM generate_series(1, @HELD_USERS@) AS h, generate_series(1, 10) AS k;

CREATE TABLE bench.posts_guarded (LIKE bench.posts_plain INCLUDING ALL);
INSERT INTO bench.posts_guarded SELECT * FROM bench.posts_plain;

CREATE TABLE bench.posts_plpgsql (LIKE bench.posts_plain INCLUDING ALL);
INSERT INTO bench.posts_plpgsql SELECT * FROM bench.posts_plain;

CREATE TABLE bench.posts_floor (LIKE bench.posts_plain INCLUDING ALL);
INSERT INTO bench.posts_floor SELECT * FROM bench.posts_plain;

-- The same realistic index set on each: primary key, author (for "posts of
-- a user"), workspace feed by time, and live posts of a workspace.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['posts_plain', 'posts_guarded', 'posts_plpgsql', 'posts_floor'] LOOP
        EXECUTE format('ALTER TABLE bench.%I ADD PRIMARY KEY (id)', t);
        EXECUTE format('CREATE INDEX %I ON bench.%I (author_id)', t || '_author', t);
        EXECUTE format('CREATE INDEX %I ON bench.%I (workspace_id, created_at DESC)', t || '_feed', t);
        EXECUTE format('CREATE INDEX %I ON bench.%I (workspace_id) WHERE deleted_at IS NULL', t || '_live', t);
    END LOOP;
END
$$;
