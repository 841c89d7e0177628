-- Deterministic data generator for the demo schema (sql/demo/schema.sql).
--
--   SELECT app.generate_demo_data(10);        -- small, pleasant demo data set
--   SELECT app.generate_demo_data(100000);    -- benchmark-sized (about 2.6M rows)
--   SELECT * FROM app.owned_rows(1);          -- rows that reference user 1, per table
--   SELECT app.generate_heavy_user(100000);   -- one extra user owning ~100k rows
--
-- Everything is set-based (INSERT ... SELECT over generate_series); there are
-- no per-row loops. Randomness comes from app.demo_rand(), a keyed hash of
-- (row key, stream, seed). Each value therefore depends only on the seed and
-- on the row it belongs to, never on the order in which the planner happens
-- to produce rows, so two runs with the same arguments on an empty schema
-- produce identical data. setseed(seed) is also called so that any random()
-- used around the generator is repeatable too.
--
-- Timestamps are relative to a fixed point in time (2026-11-01 00:00 UTC),
-- not now(), for the same reason. Data spans roughly the eight years before
-- it; a few churned customers have invoices older than seven years.
--
-- The generator appends: calling it again adds a new batch of users and
-- workspaces with fresh ids, slugs and keys. Run it from one session at a
-- time.

-- ---------------------------------------------------------------------------
-- Helpers
-- ---------------------------------------------------------------------------

-- Uniform double in [0, 1) derived from (k, stream, seedkey). Inlined by the
-- planner, so it costs about as much as a hash.
CREATE OR REPLACE FUNCTION app.demo_rand(k bigint, stream integer, seedkey bigint)
RETURNS double precision
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT (hashint8extended(k, seedkey + stream) & 9007199254740991)::double precision
           / 9007199254740992.0::double precision
$$;
COMMENT ON FUNCTION app.demo_rand(bigint, integer, bigint) IS
    'Demo data generator: deterministic uniform random number in [0,1) for (row key, stream, seed).';

-- One element of arr, chosen by app.demo_rand(k, stream, seedkey).
CREATE OR REPLACE FUNCTION app.demo_pick(arr anyarray, k bigint, stream integer, seedkey bigint)
RETURNS anyelement
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT arr[1 + floor(app.demo_rand(k, stream, seedkey) * cardinality(arr))::integer]
$$;
COMMENT ON FUNCTION app.demo_pick(anyarray, bigint, integer, bigint) IS
    'Demo data generator: deterministic choice of one array element.';

-- An IP address from the documentation ranges (RFC 5737 / RFC 3849):
-- 75 % IPv4, 25 % IPv6. Uses streams stream .. stream + 4.
CREATE OR REPLACE FUNCTION app.demo_ip(k bigint, stream integer, seedkey bigint)
RETURNS inet
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT CASE
        WHEN app.demo_rand(k, stream, seedkey) < 0.75 THEN
            ((ARRAY['192.0.2.', '198.51.100.', '203.0.113.'])[1 + floor(app.demo_rand(k, stream + 1, seedkey) * 3)::integer]
             || (1 + floor(app.demo_rand(k, stream + 2, seedkey) * 254))::integer)::inet
        ELSE
            ('2001:db8:' || to_hex(floor(app.demo_rand(k, stream + 3, seedkey) * 65536)::integer)
             || '::' || to_hex(1 + floor(app.demo_rand(k, stream + 4, seedkey) * 65535)::integer))::inet
    END
$$;
COMMENT ON FUNCTION app.demo_ip(bigint, integer, bigint) IS
    'Demo data generator: deterministic IP address from the documentation ranges.';

-- Highest id already used by tbl, counting its identity sequence too, so new
-- rows never reuse an id even after rows were deleted.
CREATE OR REPLACE FUNCTION app.demo_id_offset(tbl regclass)
RETURNS bigint
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    v_max bigint;
    v_seq bigint;
BEGIN
    EXECUTE format('SELECT max(id) FROM %s', tbl) INTO v_max;
    v_seq := pg_sequence_last_value(pg_get_serial_sequence(tbl::text, 'id')::regclass);
    RETURN greatest(coalesce(v_max, 0), coalesce(v_seq, 0));
END;
$$;
COMMENT ON FUNCTION app.demo_id_offset(regclass) IS
    'Demo data generator: highest id used so far by a table with an identity column named id.';

-- Move tbl's identity sequence past the ids inserted explicitly.
CREATE OR REPLACE FUNCTION app.demo_sync_id(tbl regclass)
RETURNS void
LANGUAGE plpgsql
AS $$
DECLARE
    v_max bigint;
BEGIN
    v_max := app.demo_id_offset(tbl);
    IF v_max > 0 THEN
        PERFORM setval(pg_get_serial_sequence(tbl::text, 'id'), v_max, true);
    END IF;
END;
$$;
COMMENT ON FUNCTION app.demo_sync_id(regclass) IS
    'Demo data generator: advance the identity sequence of a table past its highest id.';

-- ---------------------------------------------------------------------------
-- app.generate_demo_data
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app.generate_demo_data(
    users             integer,
    workspaces        integer          DEFAULT NULL,
    posts_per_user    integer          DEFAULT 5,
    comments_per_post integer          DEFAULT 2,
    seed              double precision DEFAULT 0.42)
RETURNS jsonb
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_users    bigint := generate_demo_data.users;
    v_ws       bigint := coalesce(generate_demo_data.workspaces, greatest(1, generate_demo_data.users / 5));
    v_posts    bigint;
    v_comments bigint;
    v_files    bigint;
    v_tickets  bigint;
    v_activity bigint;
    v_key      bigint;
    v_anchor   constant timestamptz := '2026-11-01 00:00:00+00';
    v_verbose  boolean := generate_demo_data.users >= 100000;
    v_started  timestamptz := clock_timestamp();

    -- id offsets: new rows get ids above everything used so far
    v_u0   bigint;
    v_p0   bigint;
    v_c0   bigint;
    v_i0   bigint;
    v_pay0 bigint;
    v_t0   bigint;
    v_a0   bigint;

    v_m    bigint;   -- number of memberships generated
    v_mw   bigint;   -- ... of which can write (role <> 'viewer')
    v_n    bigint;
    v_n2   bigint;
    v_counts jsonb := '{}';

    -- vocabulary ------------------------------------------------------------
    v_first text[] := ARRAY[
        'Alice', 'Bob', 'Carol', 'David', 'Emma', 'Farid', 'Grace', 'Hiro', 'Isabel', 'Jonas',
        'Kenji', 'Lena', 'Mateo', 'Nadia', 'Omar', 'Priya', 'Quentin', 'Rosa', 'Samuel', 'Tara',
        'Umar', 'Valentina', 'Wei', 'Ximena', 'Yusuf', 'Zoe', 'Amara', 'Bruno', 'Chloe', 'Dmitri',
        'Elif', 'Felix', 'Giulia', 'Hannah', 'Ivan', 'Julia', 'Kofi', 'Leila', 'Marco', 'Noor'];
    v_last text[] := ARRAY[
        'Martin', 'Smith', 'Nguyen', 'Garcia', 'Müller', 'Rossi', 'Kim', 'Okafor', 'Silva', 'Johansson',
        'Tanaka', 'Dubois', 'Novak', 'Kowalski', 'Haddad', 'Patel', 'Schmidt', 'López', 'Andersen', 'O''Brien',
        'Fischer', 'Costa', 'Ivanova', 'Chen', 'Yılmaz', 'Mensah', 'Brown', 'Wilson', 'Moreau', 'Jensen',
        'Bauer', 'Romano', 'Sato', 'Cohen', 'Larsen', 'Ahmed', 'Petrov', 'Fernandes', 'Walsh', 'Lindqvist'];
    v_domains text[] := ARRAY[
        'example.com', 'example.org', 'example.net', 'mail.example.com', 'corp.example.org', 'example.com'];
    -- locale and time zone are picked with the same index
    v_locales text[] := ARRAY[
        'en-US', 'en-GB', 'de-DE', 'fr-FR', 'ja-JP', 'en-US', 'pt-BR', 'en-IN', 'en-AU', 'nl-NL'];
    v_timezones text[] := ARRAY[
        'America/New_York', 'Europe/London', 'Europe/Berlin', 'Europe/Paris', 'Asia/Tokyo',
        'America/Los_Angeles', 'America/Sao_Paulo', 'Asia/Kolkata', 'Australia/Sydney', 'Europe/Amsterdam'];
    v_companies text[] := ARRAY[
        'Acme Corp', 'Globex', 'Northwind Traders', 'Initech', 'Blue Harbor', 'Pinecrest Studio',
        'Lumen Analytics', 'Brightpath', 'Red Kite Media', 'Orbital Labs', 'Tidewater Health',
        'Quillstone Legal', 'Summit Outdoor', 'Copperleaf Design', 'Nimbus Cloud', 'Harbor & Finch',
        'Meridian Logistics', 'Foxglove Bakery', 'Vertex Robotics', 'Saltmarsh Coffee',
        'Granite Peak Capital', 'Little Owl Books', 'Evergreen School', 'Polar Bear Games',
        'Sunday Kitchen', 'Atlas Architects', 'Kestrel Security', 'Juniper Wellness',
        'Fabrikam', 'Contoso'];
    v_suffixes text[] := ARRAY[
        'Labs', 'Studio', 'Group', 'Collective', 'Partners', 'Digital', 'Works', 'HQ', 'Europe', 'Americas'];
    -- billing locations; street, city and currency share one index
    v_streets text[] := ARRAY[
        'Harbour Street', 'Main Street', 'Rue de Rivoli', 'Hauptstraße', 'Market Street',
        'Calle Mayor', 'Kingsway', 'Elm Avenue', 'Sunset Boulevard', 'Prinsengracht'];
    v_cities text[] := ARRAY[
        'Bristol BS1 4DJ, United Kingdom', 'Springfield, IL 62701, USA', '75001 Paris, France',
        '10115 Berlin, Germany', 'San Francisco, CA 94103, USA', '28013 Madrid, Spain',
        'London WC2B 6AA, United Kingdom', 'Portland, OR 97205, USA', 'Los Angeles, CA 90028, USA',
        '1016 Amsterdam, Netherlands'];
    v_currencies text[] := ARRAY['GBP', 'USD', 'EUR', 'EUR', 'USD', 'EUR', 'GBP', 'USD', 'USD', 'EUR'];
    v_titles text[] := ARRAY[
        'Q3 roadmap review', 'Weekly sync notes', 'Onboarding checklist for new hires',
        'Launch plan: mobile app v2', 'Retro: what went well in the last sprint',
        'Customer interview takeaways', 'Proposal: switch to trunk-based development',
        'Office move logistics', 'Budget draft for next quarter', 'Incident report: login outage',
        'Design review: new dashboard', 'Hiring plan update', 'Security training reminder',
        'Pricing page experiment results', 'Holiday schedule', 'Team offsite ideas',
        'API deprecation timeline', 'Brand guidelines refresh', 'Support backlog triage',
        'Release notes draft', 'Accessibility audit findings', 'Data retention policy (draft)',
        'Vendor evaluation: analytics tools', 'Quarterly OKRs', 'Board meeting prep',
        'Welcome to the team!', 'Product FAQ', 'Migration plan for the old database',
        'Performance review cycle', 'Customer advisory board notes'];
    v_sentences text[] := ARRAY[
        'Here is a summary of where we landed.', 'Please add your comments by Friday.',
        'The main open question is timing.', 'I have linked the relevant documents below.',
        'We agreed to revisit this next week.', 'Numbers are preliminary and may change.',
        'Thanks to everyone who contributed.', 'Let me know if anything is missing.',
        'The customer feedback was mostly positive.', 'We should align with the sales team first.',
        'Action items are assigned in the tracker.', 'This replaces the previous version of the plan.',
        'The deadline is the end of the month.', 'Two options are on the table; see the pros and cons.',
        'Legal has reviewed the wording.', 'Engineering estimates about three weeks of work.',
        'We will share a recording of the session.', 'Feel free to forward this to your team.',
        'The draft is open for edits until Thursday.', 'Budget impact is within the approved range.',
        'See the attached slides for details.', 'Risks are listed at the end.',
        'Design mocks are in the shared folder.', 'Nothing here is final yet.'];
    v_comment_bodies text[] := ARRAY[
        'Looks good to me.', 'Thanks for writing this up!', 'Can we discuss this in the next sync?',
        '+1, agreed.', 'I left a few notes in the doc.', 'What is the timeline for this?',
        'Great work, team.', 'I think we need more data before deciding.',
        'Could you clarify the second point?', 'Approved from my side.', 'Let''s loop in finance.',
        'Nice! Shipping it.', 'I can take the first action item.', 'Is this still up to date?',
        'Moving this to next sprint.', 'Love the new direction.', 'Small typo in the title.',
        'Following.', 'Done, see the updated version.',
        'I disagree with the estimate, it feels optimistic.', 'Can we get customer input on this?',
        'Added to the agenda.', 'This fixes the issue we saw last week.',
        'Do we have a rollback plan?', 'Thanks, this is really helpful.'];
    v_file_names text[] := ARRAY[
        'Q3-report.pdf', 'logo.png', 'team-photo.jpg', 'contract-draft.docx', 'invoice-scan.pdf',
        'roadmap.pptx', 'meeting-notes.docx', 'budget.xlsx', 'screenshot.png', 'product-demo.mp4',
        'brand-guidelines.pdf', 'customer-list.csv', 'wireframes.png', 'org-chart.pdf',
        'onboarding.pptx', 'press-kit.zip', 'sales-deck.pptx', 'survey-results.xlsx',
        'architecture-diagram.png', 'release-notes.txt', 'headshot.jpg', 'export.csv'];
    -- extension -> content type
    v_file_exts text[] := ARRAY['pdf', 'png', 'jpg', 'docx', 'xlsx', 'csv', 'zip', 'mp4', 'txt', 'pptx'];
    v_file_types text[] := ARRAY[
        'application/pdf', 'image/png', 'image/jpeg',
        'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
        'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet',
        'text/csv', 'application/zip', 'video/mp4', 'text/plain',
        'application/vnd.openxmlformats-officedocument.presentationml.presentation'];
    v_agents text[] := ARRAY[
        'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15',
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36',
        'Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0',
        'Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1',
        'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36',
        'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36',
        'Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0',
        'Worksuite-Desktop/3.2.1 Electron/30.1.0'];
    v_key_names text[] := ARRAY[
        'CI deploy', 'Zapier integration', 'Local development', 'Data export script',
        'Slack bot', 'Reporting dashboard', 'Backup job', 'Mobile app (test)'];
    v_ticket_subjects text[] := ARRAY[
        'Cannot log in after password reset', 'Invoice shows the wrong company name',
        'How do I export all our data?', 'Please delete my old account',
        'File upload fails for large PDFs', 'Question about the business plan',
        'Lost my phone, need to reset two-factor authentication', 'Change the owner of our workspace',
        'API rate limit exceeded', 'Bug: comments not showing', 'Request for a DPA',
        'Refund for duplicate charge', 'Invite email never arrived', 'Dark mode contrast issue',
        'Slow dashboard load times'];
    v_ticket_lines text[] := ARRAY[
        'Since yesterday I keep getting an error when I try this.', 'This started after the last update.',
        'Could you please look into it as soon as possible?', 'Our team is blocked on this right now.',
        'I attached a screenshot of what I see.', 'It works on my laptop but not on my phone.',
        'A colleague reports the same problem.', 'This is not urgent, just curious.'];
    v_actions text[] := ARRAY[
        'post.created', 'post.updated', 'comment.created', 'file.uploaded', 'file.downloaded',
        'member.invited', 'member.role_changed', 'settings.updated', 'user.login', 'user.login',
        'api_key.created', 'export.requested', 'workspace.renamed'];
    v_system_actions text[] := ARRAY[
        'billing.invoice_issued', 'system.backup_completed', 'system.retention_sweep'];
    v_nf integer;
    v_nl integer;
    v_nc integer;
    v_ns integer;
    v_nloc integer;
    v_nbill integer;
    v_tmp text;
BEGIN
    IF v_users IS NULL OR v_users < 1 THEN
        RAISE EXCEPTION 'users must be at least 1';
    END IF;
    IF v_ws IS NULL OR v_ws < 1 THEN
        RAISE EXCEPTION 'workspaces must be at least 1';
    END IF;
    IF posts_per_user IS NULL OR posts_per_user < 0 OR comments_per_post IS NULL OR comments_per_post < 0 THEN
        RAISE EXCEPTION 'posts_per_user and comments_per_post must be non-negative';
    END IF;
    IF seed IS NULL OR seed < -1 OR seed > 1 THEN
        RAISE EXCEPTION 'seed must be between -1 and 1';
    END IF;

    PERFORM setseed(seed);
    v_key := hashtextextended(seed::text, 0);

    v_posts    := v_users * posts_per_user;
    v_comments := v_posts * comments_per_post;
    v_files    := v_users;
    v_tickets  := (v_users + 9) / 10;
    v_activity := v_users * 4;

    v_nf    := cardinality(v_first);
    v_nl    := cardinality(v_last);
    v_nc    := cardinality(v_companies);
    v_ns    := cardinality(v_suffixes);
    v_nloc  := cardinality(v_locales);
    v_nbill := cardinality(v_streets);

    v_u0   := app.demo_id_offset('app.users');
    v_p0   := app.demo_id_offset('app.posts');
    v_c0   := app.demo_id_offset('app.comments');
    v_i0   := app.demo_id_offset('app.invoices');
    v_pay0 := app.demo_id_offset('app.payments');
    v_t0   := app.demo_id_offset('app.support_tickets');
    v_a0   := app.demo_id_offset('app.activity_log');

    FOREACH v_tmp IN ARRAY ARRAY['demo_gen_mem', 'demo_gen_rank', 'demo_gen_ws', 'demo_gen_m'] LOOP
        IF to_regclass('pg_temp.' || v_tmp) IS NOT NULL THEN
            EXECUTE format('DROP TABLE pg_temp.%I', v_tmp);
        END IF;
    END LOOP;

    -- users ----------------------------------------------------------------
    -- User g is named first[g] + last[g + 7 * (g / 40)], so the first users
    -- are Alice Martin, Bob Smith, Carol Nguyen, ... The first 40 get short
    -- addresses (alice@example.com); later ones first.last<id>@domain.
    INSERT INTO app.users (id, email, name, display_name, avatar_url, phone, locale,
                           created_at, last_login_at, deleted_at)
    SELECT s.g,
           CASE WHEN s.g <= v_nf THEN lower(s.fn) || '@example.com'
                ELSE lower(s.fn) || '.' || translate(lower(s.ln), 'üóöäéçı''', 'uooaeci') || s.g
                     || '@' || app.demo_pick(v_domains, s.g, 4, v_key)
           END,
           s.fn || ' ' || s.ln,
           CASE WHEN app.demo_rand(s.g, 5, v_key) < 0.5 THEN s.fn
                WHEN app.demo_rand(s.g, 5, v_key) < 0.7 THEN s.fn || ' ' || left(s.ln, 1) || '.'
           END,
           CASE WHEN app.demo_rand(s.g, 6, v_key) < 0.6
                THEN 'https://cdn.example.com/avatars/' || substr(md5(v_key || ':avatar:' || s.g), 1, 20) || '.png'
           END,
           CASE WHEN s.rp < 0.15 THEN '+1 202-555-01' || lpad(floor(app.demo_rand(s.g, 8, v_key) * 100)::integer::text, 2, '0')
                WHEN s.rp < 0.25 THEN '+44 7700 900' || lpad(floor(app.demo_rand(s.g, 8, v_key) * 1000)::integer::text, 3, '0')
                WHEN s.rp < 0.35 THEN '+49 30 ' || (1000000 + floor(app.demo_rand(s.g, 8, v_key) * 8999999))::bigint
           END,
           v_locales[s.li],
           s.created_at,
           CASE WHEN s.deleted_at IS NOT NULL AND s.login > s.deleted_at THEN s.deleted_at ELSE s.login END,
           s.deleted_at
    FROM (
        SELECT g, fn, ln, li, rp, c.created_at,
               CASE WHEN app.demo_rand(g, 9, v_key) >= 0.03
                    THEN c.created_at + (v_anchor - c.created_at) * (1 - pow(app.demo_rand(g, 10, v_key), 4))
               END AS login,
               CASE WHEN g > v_nf AND app.demo_rand(g, 11, v_key) < 0.01
                    THEN c.created_at + (v_anchor - c.created_at) * app.demo_rand(g, 12, v_key)
               END AS deleted_at
        FROM generate_series(v_u0 + 1, v_u0 + v_users) AS g
        CROSS JOIN LATERAL (
            SELECT v_first[1 + ((g - 1) % v_nf)::integer] AS fn,
                   v_last[1 + (((g - 1) + ((g - 1) / v_nf) * 7) % v_nl)::integer] AS ln,
                   1 + floor(app.demo_rand(g, 3, v_key) * v_nloc)::integer AS li,
                   app.demo_rand(g, 7, v_key) AS rp,
                   -- sign-ups over ~8 years, more of them recently
                   v_anchor - interval '1 day' * (pow(app.demo_rand(g, 1, v_key), 1.6) * 2900)
                            - interval '1 second' * floor(app.demo_rand(g, 2, v_key) * 86400) AS created_at
        ) c
    ) s;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('users', v_n);

    -- membership plan ------------------------------------------------------
    -- Users are split into contiguous blocks, one per workspace ("home"
    -- workspace); 35 % join a second and 10 % a third random workspace. The
    -- first home member of a workspace is its owner and creator.
    CREATE TEMP TABLE demo_gen_mem AS
    SELECT wn, user_id, bool_or(home) AS home
    FROM (
        SELECT 1 + ((g - v_u0 - 1) * v_ws) / v_users AS wn, g AS user_id, true AS home
        FROM generate_series(v_u0 + 1, v_u0 + v_users) AS g
        UNION ALL
        -- more workspaces than users: make sure every workspace has someone
        SELECT w, v_u0 + 1 + (w - 1) % v_users, true
        FROM generate_series(1::bigint, v_ws) AS w
        WHERE v_ws > v_users
        UNION ALL
        SELECT 1 + floor(app.demo_rand(g * 4 + j, 14, v_key) * v_ws)::bigint, g, false
        FROM generate_series(v_u0 + 1, v_u0 + v_users) AS g
        CROSS JOIN generate_series(2, 3) AS j
        WHERE app.demo_rand(g, 13, v_key) < CASE j WHEN 2 THEN 0.35 ELSE 0.10 END
    ) x
    GROUP BY wn, user_id;

    CREATE TEMP TABLE demo_gen_rank AS
    SELECT wn, user_id, k, cnt,
           CASE WHEN k = 1 THEN 'owner'
                WHEN k = 2 AND app.demo_rand(v_u0 + wn, 15, v_key) < 0.85 THEN 'admin'
                WHEN k > 2 AND app.demo_rand(user_id * 1000003 + wn, 16, v_key) < 0.04 THEN 'admin'
                WHEN app.demo_rand(user_id * 1000003 + wn, 17, v_key) < 0.80 THEN 'member'
                ELSE 'viewer'
           END AS role
    FROM (
        SELECT wn, user_id,
               row_number() OVER (PARTITION BY wn ORDER BY home DESC, user_id) AS k,
               count(*) OVER (PARTITION BY wn) AS cnt
        FROM demo_gen_mem
    ) r;

    -- workspaces -----------------------------------------------------------
    -- The first batch gets plain slugs (acme-corp, globex, ...); later
    -- workspaces and later batches get numeric suffixes, so slugs and ids
    -- never collide when the generator is run again.
    CREATE TEMP TABLE demo_gen_ws AS
    SELECT r.wn,
           md5(v_key || ':workspace:' || v_u0 || ':' || r.wn)::uuid AS id,
           n.name,
           trim(BOTH '-' FROM regexp_replace(lower(n.name), '[^a-z0-9]+', '-', 'g'))
             || CASE WHEN r.wn <= v_nc THEN '' ELSE '-' || r.wn END
             || CASE WHEN v_u0 = 0 THEN '' ELSE '-r' || v_u0 END AS slug,
           CASE WHEN v_u0 = 0 AND r.wn = 1 THEN 'team'
                WHEN app.demo_rand(v_u0 + r.wn, 21, v_key) < 0.55 THEN 'free'
                WHEN app.demo_rand(v_u0 + r.wn, 21, v_key) < 0.85 THEN 'team'
                WHEN app.demo_rand(v_u0 + r.wn, 21, v_key) < 0.97 THEN 'business'
                ELSE 'enterprise'
           END AS plan,
           r.user_id AS owner_id,
           r.cnt,
           u.created_at + least(v_anchor - u.created_at,
                                interval '1 minute' * floor(app.demo_rand(v_u0 + r.wn, 20, v_key) * 86400)) AS created_at,
           1 + floor(app.demo_rand(v_u0 + r.wn, 22, v_key) * v_nbill)::integer AS bi
    FROM demo_gen_rank r
    JOIN app.users u ON u.id = r.user_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN r.wn <= v_nc THEN v_companies[r.wn::integer]
                    ELSE v_companies[1 + ((r.wn - 1) % v_nc)::integer] || ' '
                         || v_suffixes[1 + (((r.wn - 1) / v_nc) % v_ns)::integer]
               END AS name
    ) n
    WHERE r.k = 1;
    CREATE UNIQUE INDEX ON demo_gen_ws (wn);
    CREATE UNIQUE INDEX ON demo_gen_ws (id);
    ANALYZE demo_gen_ws;

    INSERT INTO app.workspaces (id, slug, name, plan, created_by, created_at)
    SELECT id, slug, name, plan, owner_id, created_at
    FROM demo_gen_ws
    ORDER BY wn;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('workspaces', v_n);

    -- memberships ----------------------------------------------------------
    -- m numbers all memberships, mw the ones that may write (non-viewers);
    -- content rows pick a membership uniformly by these numbers.
    CREATE TEMP TABLE demo_gen_m AS
    SELECT r.wn, w.id AS ws_id, r.user_id, r.k, r.cnt, r.role,
           CASE WHEN r.k = 1 THEN w.created_at
                ELSE b.base + (v_anchor - b.base) * pow(app.demo_rand(r.user_id * 1000003 + r.wn, 18, v_key), 2)
           END AS joined_at,
           row_number() OVER (ORDER BY r.wn, r.k) AS m,
           CASE WHEN r.role <> 'viewer'
                THEN count(*) FILTER (WHERE r.role <> 'viewer') OVER (ORDER BY r.wn, r.k ROWS UNBOUNDED PRECEDING)
           END AS mw
    FROM demo_gen_rank r
    JOIN demo_gen_ws w ON w.wn = r.wn
    JOIN app.users u ON u.id = r.user_id
    CROSS JOIN LATERAL (SELECT greatest(w.created_at, u.created_at) AS base) b;
    CREATE UNIQUE INDEX ON demo_gen_m (m);
    CREATE UNIQUE INDEX ON demo_gen_m (mw);
    CREATE UNIQUE INDEX ON demo_gen_m (ws_id, k);
    ANALYZE demo_gen_m;
    SELECT count(*), max(mw) INTO v_m, v_mw FROM demo_gen_m;

    INSERT INTO app.memberships (workspace_id, user_id, role, joined_at)
    SELECT ws_id, user_id, role, joined_at
    FROM demo_gen_m
    ORDER BY m;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('memberships', v_n);
    IF v_verbose THEN
        RAISE NOTICE 'demo data: users, workspaces, memberships done after %', clock_timestamp() - v_started;
    END IF;

    -- user settings --------------------------------------------------------
    INSERT INTO app.user_settings (user_id, theme, timezone, marketing_opt_in, settings, updated_at)
    SELECT u.id,
           app.demo_pick(ARRAY['light', 'dark', 'system', 'system'], u.id, 70, v_key),
           v_timezones[1 + floor(app.demo_rand(u.id, 3, v_key) * v_nloc)::integer],
           app.demo_rand(u.id, 71, v_key) < 0.3,
           jsonb_build_object(
               'notifications', jsonb_build_object(
                   'email', app.demo_rand(u.id, 72, v_key) < 0.8,
                   'digest', app.demo_pick(ARRAY['daily', 'weekly', 'weekly', 'never'], u.id, 73, v_key)),
               'editor', app.demo_pick(ARRAY['rich_text', 'markdown'], u.id, 74, v_key),
               'sidebar_collapsed', app.demo_rand(u.id, 75, v_key) < 0.2,
               'language', u.locale),
           u.created_at + (coalesce(u.last_login_at, u.created_at) - u.created_at) * app.demo_rand(u.id, 76, v_key)
    FROM app.users u
    WHERE u.id > v_u0 AND u.id <= v_u0 + v_users;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('user_settings', v_n);

    -- sessions: everyone has a current one, half an older second one -------
    INSERT INTO app.sessions (id, user_id, ip, user_agent, created_at, expires_at)
    SELECT md5(v_key || ':session:' || u.id || ':' || sl)::uuid,
           u.id,
           app.demo_ip(u.id * 8 + sl, 90, v_key),
           app.demo_pick(v_agents, u.id * 8 + sl, 51, v_key),
           t.c,
           t.c + CASE WHEN sl = 1 THEN interval '30 days' ELSE interval '14 days' END
    FROM app.users u
    CROSS JOIN generate_series(1, 2) AS sl
    CROSS JOIN LATERAL (
        SELECT CASE WHEN sl = 1 THEN coalesce(u.last_login_at, u.created_at)
                    ELSE u.created_at + (coalesce(u.last_login_at, u.created_at) - u.created_at)
                                        * app.demo_rand(u.id * 8 + sl, 52, v_key)
               END AS c
    ) t
    WHERE u.id > v_u0 AND u.id <= v_u0 + v_users
      AND (sl = 1 OR app.demo_rand(u.id, 50, v_key) < 0.5);
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('sessions', v_n);

    -- API keys: 20 % of users, in their first non-viewer workspace ---------
    INSERT INTO app.api_keys (id, user_id, workspace_id, name, key_prefix, key_hash, created_at, last_used_at)
    SELECT md5(v_key || ':api_key:' || m.user_id)::uuid,
           m.user_id,
           m.ws_id,
           app.demo_pick(v_key_names, m.user_id, 61, v_key),
           'lc_' || substr(md5(v_key || ':api_key_prefix:' || m.user_id), 1, 12),
           encode(sha256(convert_to(v_key || ':api_key_secret:' || m.user_id, 'UTF8')), 'hex'),
           t.c,
           CASE WHEN app.demo_rand(m.user_id, 63, v_key) < 0.8
                THEN t.c + (v_anchor - t.c) * (1 - pow(app.demo_rand(m.user_id, 64, v_key), 3))
           END
    FROM (
        SELECT DISTINCT ON (user_id) user_id, ws_id, joined_at
        FROM demo_gen_m
        WHERE role <> 'viewer' AND app.demo_rand(user_id, 60, v_key) < 0.2
        ORDER BY user_id, wn
    ) m
    CROSS JOIN LATERAL (
        SELECT m.joined_at + (v_anchor - m.joined_at) * app.demo_rand(m.user_id, 62, v_key) AS c
    ) t;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('api_keys', v_n);

    -- posts ----------------------------------------------------------------
    INSERT INTO app.posts (id, workspace_id, author_id, title, body, created_at, updated_at, deleted_at)
    SELECT s.id, m.ws_id, m.user_id,
           app.demo_pick(v_titles, s.id, 31, v_key),
           app.demo_pick(v_sentences, s.id, 32, v_key) || ' ' || app.demo_pick(v_sentences, s.id, 33, v_key)
             || CASE WHEN app.demo_rand(s.id, 34, v_key) < 0.6
                     THEN ' ' || app.demo_pick(v_sentences, s.id, 35, v_key) ELSE '' END,
           t.c,
           t.c + (v_anchor - t.c) * CASE WHEN app.demo_rand(s.id, 36, v_key) < 0.3
                                         THEN pow(app.demo_rand(s.id, 37, v_key), 3) ELSE 0 END,
           CASE WHEN app.demo_rand(s.id, 38, v_key) < 0.03
                THEN t.c + (v_anchor - t.c) * app.demo_rand(s.id, 39, v_key)
           END
    FROM (
        SELECT v_p0 + p AS id, 1 + floor(app.demo_rand(v_p0 + p, 30, v_key) * v_mw)::bigint AS mw
        FROM generate_series(1::bigint, v_posts) AS p
    ) s
    JOIN demo_gen_m m ON m.mw = s.mw
    CROSS JOIN LATERAL (
        SELECT m.joined_at + (v_anchor - m.joined_at) * app.demo_rand(s.id, 40, v_key) AS c
    ) t;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('posts', v_n);
    IF v_verbose THEN
        RAISE NOTICE 'demo data: posts done after %', clock_timestamp() - v_started;
    END IF;

    -- comments: on a random post, by a random member of its workspace ------
    IF v_posts > 0 AND v_comments > 0 THEN
        INSERT INTO app.comments (id, workspace_id, post_id, author_id, body, created_at)
        SELECT s.id, p.workspace_id, p.id, m.user_id,
               app.demo_pick(v_comment_bodies, s.id, 42, v_key),
               b.base + (v_anchor - b.base) * pow(app.demo_rand(s.id, 43, v_key), 3)
        FROM (
            SELECT v_c0 + c AS id,
                   v_p0 + 1 + floor(app.demo_rand(v_c0 + c, 41, v_key) * v_posts)::bigint AS post_id
            FROM generate_series(1::bigint, v_comments) AS c
        ) s
        JOIN app.posts p ON p.id = s.post_id
        JOIN demo_gen_ws w ON w.id = p.workspace_id
        JOIN demo_gen_m m ON m.ws_id = p.workspace_id
                         AND m.k = 1 + floor(app.demo_rand(s.id, 44, v_key) * w.cnt)::bigint
        CROSS JOIN LATERAL (SELECT greatest(p.created_at, m.joined_at) AS base) b;
        GET DIAGNOSTICS v_n = ROW_COUNT;
    ELSE
        v_n := 0;
    END IF;
    v_counts := v_counts || jsonb_build_object('comments', v_n);
    IF v_verbose THEN
        RAISE NOTICE 'demo data: comments done after %', clock_timestamp() - v_started;
    END IF;

    -- files: one per user on average ---------------------------------------
    INSERT INTO app.files (id, workspace_id, uploaded_by, storage_key, filename, content_type, size_bytes, created_at)
    SELECT s.id, m.ws_id, m.user_id,
           'workspaces/' || m.ws_id || '/files/' || s.id,
           CASE WHEN app.demo_rand(s.fk, 82, v_key) < 0.3
                THEN regexp_replace(s.fname, '\.([a-z0-9]+)$',
                                    '-v' || (2 + floor(app.demo_rand(s.fk, 83, v_key) * 4))::integer || '.\1')
                ELSE s.fname
           END,
           coalesce(v_file_types[array_position(v_file_exts, substring(s.fname FROM '\.([a-z0-9]+)$'))],
                    'application/octet-stream'),
           floor(exp(ln(2000) + app.demo_rand(s.fk, 84, v_key) * (ln(50000000) - ln(2000))))::bigint,
           m.joined_at + (v_anchor - m.joined_at) * app.demo_rand(s.fk, 85, v_key)
    FROM (
        SELECT v_u0 + f AS fk,
               md5(v_key || ':file:' || v_u0 || ':' || f)::uuid AS id,
               app.demo_pick(v_file_names, v_u0 + f, 81, v_key) AS fname,
               1 + floor(app.demo_rand(v_u0 + f, 80, v_key) * v_mw)::bigint AS mw
        FROM generate_series(1::bigint, v_files) AS f
    ) s
    JOIN demo_gen_m m ON m.mw = s.mw;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('files', v_n);

    -- invites --------------------------------------------------------------
    -- 0-2 invites per workspace sent to people who are not users (mostly
    -- pending or expired), plus, for half the workspaces, the accepted invite
    -- through which one of the members joined.
    INSERT INTO app.invites (id, workspace_id, invited_by, email, role, token_hash, created_at, expires_at)
    SELECT md5(v_key || ':invite:' || v_u0 || ':' || x.wn || ':' || x.sl)::uuid,
           x.id,
           CASE WHEN a.user_id IS NOT NULL AND app.demo_rand(x.ik, 91, v_key) < 0.3 THEN a.user_id
                ELSE x.owner_id END,
           lower(app.demo_pick(v_first, x.ik, 92, v_key)) || '.'
             || translate(lower(app.demo_pick(v_last, x.ik, 93, v_key)), 'üóöäéçı''', 'uooaeci')
             || '@' || app.demo_pick(v_domains, x.ik, 94, v_key),
           app.demo_pick(ARRAY['member', 'member', 'member', 'viewer', 'admin'], x.ik, 95, v_key),
           encode(sha256(convert_to(v_key || ':invite-token:' || v_u0 || ':' || x.wn || ':' || x.sl, 'UTF8')), 'hex'),
           t.c,
           t.c + interval '7 days'
    FROM (
        SELECT w.*, sl, (v_u0 + w.wn) * 4 + sl AS ik
        FROM demo_gen_ws w
        CROSS JOIN generate_series(1, 2) AS sl
        WHERE sl <= floor(app.demo_rand(v_u0 + w.wn, 96, v_key) * 3)
    ) x
    LEFT JOIN demo_gen_m a ON a.ws_id = x.id AND a.k = 2 AND a.role = 'admin'
    CROSS JOIN LATERAL (
        SELECT greatest(x.created_at, v_anchor - interval '1 day' * 120 * pow(app.demo_rand(x.ik, 97, v_key), 2)) AS c
    ) t;
    GET DIAGNOSTICS v_n = ROW_COUNT;

    INSERT INTO app.invites (id, workspace_id, invited_by, email, role, token_hash,
                             created_at, expires_at, accepted_at, accepted_by)
    SELECT md5(v_key || ':invite-accepted:' || v_u0 || ':' || w.wn)::uuid,
           w.id, w.owner_id, u.email, m.role,
           encode(sha256(convert_to(v_key || ':invite-accepted-token:' || v_u0 || ':' || w.wn, 'UTF8')), 'hex'),
           t.c, t.c + interval '7 days', m.joined_at, m.user_id
    FROM demo_gen_ws w
    JOIN demo_gen_m m ON m.ws_id = w.id
                     AND m.k = 2 + floor(app.demo_rand(v_u0 + w.wn, 98, v_key) * (w.cnt - 1))::bigint
    JOIN app.users u ON u.id = m.user_id
    CROSS JOIN LATERAL (
        SELECT greatest(w.created_at,
                        m.joined_at - interval '1 hour' * (1 + floor(app.demo_rand(v_u0 + w.wn, 99, v_key) * 72))) AS c
    ) t
    WHERE w.cnt >= 2 AND app.demo_rand(v_u0 + w.wn, 100, v_key) < 0.5;
    GET DIAGNOSTICS v_n2 = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('invites', v_n + v_n2);

    -- invoices: monthly, for workspaces on a paid plan, billed to the owner -
    -- A workspace is billed for up to the last 12 months it was active; 15 %
    -- of paying workspaces churned at some point in the past.
    INSERT INTO app.invoices (id, workspace_id, billed_user_id, number, amount_cents, currency,
                              billing_name, billing_address, issued_at, status)
    SELECT s.id, s.ws_id, s.owner_id,
           'INV-' || to_char(s.issued_at AT TIME ZONE 'UTC', 'YYYY') || '-' || lpad(s.id::text, 7, '0'),
           s.amount_cents, s.currency, s.billing_name, s.billing_address, s.issued_at, s.status
    FROM (
        SELECT v_i0 + row_number() OVER (ORDER BY w.wn, j) AS id,
               w.id AS ws_id,
               w.owner_id,
               CASE w.plan WHEN 'team' THEN 800 WHEN 'business' THEN 1600 ELSE 4500 END * w.cnt AS amount_cents,
               v_currencies[w.bi] AS currency,
               CASE WHEN app.demo_rand(v_u0 + w.wn, 102, v_key) < 0.6 THEN u.name ELSE w.name END AS billing_name,
               (1 + floor(app.demo_rand(v_u0 + w.wn, 103, v_key) * 200))::integer || ' ' || v_streets[w.bi]
                 || E'\n' || v_cities[w.bi] AS billing_address,
               v_anchor - make_interval(months => ch.e + j + 1) + interval '9 hours' AS issued_at,
               CASE WHEN ch.e = 0 AND j = 0
                    THEN CASE WHEN app.demo_rand((v_u0 + w.wn) * 16 + j, 104, v_key) < 0.5 THEN 'open' ELSE 'paid' END
                    WHEN app.demo_rand((v_u0 + w.wn) * 16 + j, 105, v_key) < 0.94 THEN 'paid'
                    WHEN app.demo_rand((v_u0 + w.wn) * 16 + j, 105, v_key) < 0.97 THEN 'void'
                    ELSE 'uncollectible'
               END AS status
        FROM demo_gen_ws w
        JOIN app.users u ON u.id = w.owner_id
        CROSS JOIN LATERAL (
            -- whole calendar months between the workspace's creation and the anchor
            SELECT (extract(year FROM age(v_anchor, w.created_at)) * 12
                    + extract(month FROM age(v_anchor, w.created_at)))::integer AS age_m
        ) a
        CROSS JOIN LATERAL (
            SELECT CASE WHEN a.age_m >= 2 AND app.demo_rand(v_u0 + w.wn, 101, v_key) < 0.15
                        THEN 1 + floor(app.demo_rand(v_u0 + w.wn, 106, v_key) * (a.age_m - 1))::integer
                        ELSE 0
                   END AS e
        ) ch
        CROSS JOIN LATERAL generate_series(0, least(12, a.age_m - ch.e) - 1) AS j
        WHERE w.plan <> 'free'
    ) s;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('invoices', v_n);

    -- payments: one per paid invoice, same method per workspace ------------
    INSERT INTO app.payments (id, invoice_id, workspace_id, user_id, amount_cents, currency, method, card_last4, paid_at)
    SELECT v_pay0 + row_number() OVER (ORDER BY i.id),
           i.id, i.workspace_id, i.billed_user_id, i.amount_cents, i.currency,
           x.method,
           CASE WHEN x.method = 'card'
                THEN lpad(floor(app.demo_rand(v_u0 + w.wn, 111, v_key) * 10000)::integer::text, 4, '0')
           END,
           i.issued_at + interval '1 hour' * (1 + floor(app.demo_rand(i.id, 112, v_key) * 24 * 14))
    FROM app.invoices i
    JOIN demo_gen_ws w ON w.id = i.workspace_id
    CROSS JOIN LATERAL (
        SELECT CASE WHEN app.demo_rand(v_u0 + w.wn, 110, v_key) < 0.7 THEN 'card'
                    WHEN i.currency = 'EUR' THEN 'sepa_debit'
                    WHEN i.currency = 'USD' THEN 'ach'
                    ELSE 'bank_transfer'
               END AS method
    ) x
    WHERE i.id > v_i0 AND i.status = 'paid';
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('payments', v_n);

    -- support tickets: one per ten users; free text repeats personal data --
    INSERT INTO app.support_tickets (id, workspace_id, requester_id, subject, body, requester_email, status, created_at)
    SELECT s.id, m.ws_id, m.user_id,
           app.demo_pick(v_ticket_subjects, s.id, 121, v_key),
           'Hi support team,' || E'\n\n'
             || app.demo_pick(v_ticket_lines, s.id, 122, v_key) || ' '
             || app.demo_pick(v_ticket_lines, s.id, 123, v_key) || E'\n\n'
             || 'My account e-mail is ' || u.email
             || CASE WHEN u.phone IS NOT NULL THEN ' and you can reach me on ' || u.phone ELSE '' END
             || '.' || E'\n\nThanks,\n' || u.name,
           u.email,
           CASE WHEN t.c < v_anchor - interval '30 days'
                THEN CASE WHEN app.demo_rand(s.id, 124, v_key) < 0.7 THEN 'closed' ELSE 'solved' END
                ELSE app.demo_pick(ARRAY['open', 'open', 'pending', 'solved'], s.id, 125, v_key)
           END,
           t.c
    FROM (
        SELECT v_t0 + tk AS id, 1 + floor(app.demo_rand(v_t0 + tk, 120, v_key) * v_m)::bigint AS m
        FROM generate_series(1::bigint, v_tickets) AS tk
    ) s
    JOIN demo_gen_m m ON m.m = s.m
    JOIN app.users u ON u.id = m.user_id
    CROSS JOIN LATERAL (
        SELECT m.joined_at + (v_anchor - m.joined_at) * sqrt(app.demo_rand(s.id, 126, v_key)) AS c
    ) t;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('support_tickets', v_n);

    -- activity log: four events per user on average, 3 % system events ----
    INSERT INTO app.activity_log (id, workspace_id, actor_id, action, target, ip, created_at)
    SELECT s.id, m.ws_id,
           CASE WHEN s.sys THEN NULL ELSE m.user_id END,
           x.action,
           CASE split_part(x.action, '.', 1)
                WHEN 'user'      THEN NULL
                WHEN 'system'    THEN NULL
                WHEN 'settings'  THEN 'settings/' || app.demo_pick(ARRAY['notifications', 'profile', 'security'], s.id, 133, v_key)
                WHEN 'workspace' THEN 'workspace/' || m.ws_id
                WHEN 'member'    THEN 'user/' || (v_u0 + 1 + floor(app.demo_rand(s.id, 134, v_key) * v_users)::bigint)
                WHEN 'post'      THEN 'post/' || (v_p0 + 1 + floor(app.demo_rand(s.id, 134, v_key) * greatest(v_posts, 1))::bigint)
                WHEN 'comment'   THEN 'comment/' || (v_c0 + 1 + floor(app.demo_rand(s.id, 134, v_key) * greatest(v_comments, 1))::bigint)
                WHEN 'file'      THEN 'file/' || md5(v_key || ':file:' || v_u0 || ':'
                                                     || (1 + floor(app.demo_rand(s.id, 134, v_key) * v_files)::bigint))::uuid
                WHEN 'billing'   THEN 'invoice/' || (v_i0 + 1 + floor(app.demo_rand(s.id, 134, v_key) * 1000)::bigint)
                ELSE split_part(x.action, '.', 1) || '/' || substr(md5(v_key || ':target:' || s.id), 1, 12)
           END,
           CASE WHEN s.sys THEN NULL ELSE app.demo_ip(s.id, 140, v_key) END,
           m.joined_at + (v_anchor - m.joined_at) * sqrt(app.demo_rand(s.id, 135, v_key))
    FROM (
        SELECT v_a0 + a AS id,
               1 + floor(app.demo_rand(v_a0 + a, 130, v_key) * v_m)::bigint AS m,
               app.demo_rand(v_a0 + a, 131, v_key) < 0.03 AS sys
        FROM generate_series(1::bigint, v_activity) AS a
    ) s
    JOIN demo_gen_m m ON m.m = s.m
    CROSS JOIN LATERAL (
        SELECT CASE WHEN s.sys THEN app.demo_pick(v_system_actions, s.id, 132, v_key)
                    ELSE app.demo_pick(v_actions, s.id, 132, v_key)
               END AS action
    ) x;
    GET DIAGNOSTICS v_n = ROW_COUNT;
    v_counts := v_counts || jsonb_build_object('activity_log', v_n);

    -- bookkeeping ----------------------------------------------------------
    PERFORM app.demo_sync_id('app.users');
    PERFORM app.demo_sync_id('app.posts');
    PERFORM app.demo_sync_id('app.comments');
    PERFORM app.demo_sync_id('app.invoices');
    PERFORM app.demo_sync_id('app.payments');
    PERFORM app.demo_sync_id('app.support_tickets');
    PERFORM app.demo_sync_id('app.activity_log');

    DROP TABLE demo_gen_mem, demo_gen_rank, demo_gen_ws, demo_gen_m;

    ANALYZE app.users, app.workspaces, app.memberships, app.posts, app.comments, app.files,
            app.sessions, app.api_keys, app.user_settings, app.invites, app.invoices,
            app.payments, app.support_tickets, app.activity_log;

    IF v_verbose THEN
        RAISE NOTICE 'demo data: finished after %', clock_timestamp() - v_started;
    END IF;
    RETURN v_counts;
END;
$fn$;

COMMENT ON FUNCTION app.generate_demo_data(integer, integer, integer, integer, double precision) IS
    'Fill the demo schema with deterministic data: users, workspaces (default users/5), memberships, '
    'posts (posts_per_user per user on average), comments (comments_per_post per post on average), '
    'files, sessions, API keys, settings, invites, invoices, payments, support tickets and activity. '
    'Returns the number of rows inserted per table.';

-- ---------------------------------------------------------------------------
-- app.owned_rows
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app.owned_rows(user_id bigint)
RETURNS TABLE (table_name text, rows bigint)
LANGUAGE sql STABLE
AS $$
    SELECT 'users'::text, count(*) FROM app.users WHERE id = $1
    UNION ALL SELECT 'workspaces', count(*) FROM app.workspaces WHERE created_by = $1
    UNION ALL SELECT 'memberships', count(*) FROM app.memberships WHERE user_id = $1
    UNION ALL SELECT 'posts', count(*) FROM app.posts WHERE author_id = $1
    UNION ALL SELECT 'comments', count(*) FROM app.comments WHERE author_id = $1
    UNION ALL SELECT 'files', count(*) FROM app.files WHERE uploaded_by = $1
    UNION ALL SELECT 'sessions', count(*) FROM app.sessions WHERE user_id = $1
    UNION ALL SELECT 'api_keys', count(*) FROM app.api_keys WHERE user_id = $1
    UNION ALL SELECT 'user_settings', count(*) FROM app.user_settings WHERE user_id = $1
    UNION ALL SELECT 'invites', count(*) FROM app.invites WHERE invited_by = $1 OR accepted_by = $1
    UNION ALL SELECT 'invoices', count(*) FROM app.invoices WHERE billed_user_id = $1
    UNION ALL SELECT 'payments', count(*) FROM app.payments WHERE user_id = $1
    UNION ALL SELECT 'support_tickets', count(*) FROM app.support_tickets WHERE requester_id = $1
    UNION ALL SELECT 'activity_log', count(*) FROM app.activity_log WHERE actor_id = $1
$$;

COMMENT ON FUNCTION app.owned_rows(bigint) IS
    'Rows that reference the given user, per table (every user column: invites counts invited_by and accepted_by, '
    'workspaces counts created_by). One row per table, zeros included.';

-- ---------------------------------------------------------------------------
-- app.generate_heavy_user
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app.generate_heavy_user(rows_total integer)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
DECLARE
    v_key     constant bigint := hashtextextended('heavy-user', 0);
    v_anchor  constant timestamptz := '2026-11-01 00:00:00+00';
    v_created timestamptz := v_anchor - interval '3 years';
    v_uid     bigint;
    v_email   text;
    v_ws      uuid[];
    v_nws     integer;
    v_budget  bigint;
    v_posts   bigint;
    v_comments bigint;
    v_files   bigint;
    v_sessions bigint;
    v_tickets bigint;
    v_activity bigint;
    v_p0      bigint;
    v_c0      bigint;
    v_t0      bigint;
    v_a0      bigint;
BEGIN
    IF rows_total IS NULL OR rows_total < 1 THEN
        RAISE EXCEPTION 'rows_total must be at least 1';
    END IF;

    v_uid   := app.demo_id_offset('app.users') + 1;
    v_email := 'morgan.reyes.' || v_uid || '@example.com';

    INSERT INTO app.users (id, email, name, display_name, avatar_url, phone, locale, created_at, last_login_at)
    VALUES (v_uid, v_email, 'Morgan Reyes', 'Morgan',
            'https://cdn.example.com/avatars/' || substr(md5('heavy:' || v_uid), 1, 20) || '.png',
            '+1 202-555-0142', 'en-US', v_created, v_anchor - interval '2 hours');
    PERFORM app.demo_sync_id('app.users');

    INSERT INTO app.user_settings (user_id, theme, timezone, marketing_opt_in, settings, updated_at)
    VALUES (v_uid, 'dark', 'America/New_York', true,
            '{"notifications": {"email": true, "digest": "daily"}, "editor": "markdown"}', v_created);

    -- memberships in the three oldest workspaces (or a new one of their own)
    SELECT array_agg(id ORDER BY created_at, id) INTO v_ws
    FROM (SELECT id, created_at FROM app.workspaces ORDER BY created_at, id LIMIT 3) w;

    IF v_ws IS NULL THEN
        INSERT INTO app.workspaces (slug, name, plan, created_by, created_at)
        VALUES ('heavy-user-' || v_uid, 'Morgan''s Workspace', 'team', v_uid, v_created)
        RETURNING ARRAY[id] INTO v_ws;
        INSERT INTO app.memberships (workspace_id, user_id, role, joined_at)
        VALUES (v_ws[1], v_uid, 'owner', v_created);
    ELSE
        INSERT INTO app.memberships (workspace_id, user_id, role, joined_at)
        SELECT w.id, v_uid, CASE WHEN x.o = 1 THEN 'admin' ELSE 'member' END, greatest(w.created_at, v_created)
        FROM unnest(v_ws) WITH ORDINALITY AS x(id, o)
        JOIN app.workspaces w ON w.id = x.id;
    END IF;
    v_nws := cardinality(v_ws);

    -- split what is left of the budget across the content tables
    v_budget   := greatest(rows_total - 2 - v_nws, 0);
    v_posts    := v_budget * 30 / 100;
    v_comments := CASE WHEN v_posts > 0 THEN v_budget * 30 / 100 ELSE 0 END;
    v_files    := v_budget * 8 / 100;
    v_sessions := v_budget * 4 / 100;
    v_tickets  := v_budget * 3 / 100;
    v_activity := v_budget - v_posts - v_comments - v_files - v_sessions - v_tickets;

    v_p0 := app.demo_id_offset('app.posts');
    v_c0 := app.demo_id_offset('app.comments');
    v_t0 := app.demo_id_offset('app.support_tickets');
    v_a0 := app.demo_id_offset('app.activity_log');

    -- post i lives in workspace 1 + (i - 1) % n
    INSERT INTO app.posts (id, workspace_id, author_id, title, body, created_at, updated_at)
    SELECT v_p0 + i, ws.id, v_uid,
           'Field notes #' || i,
           'Observations from customer call ' || i || '. Follow-ups are in the tracker.',
           t.c, t.c
    FROM generate_series(1::bigint, v_posts) AS i
    JOIN (SELECT x.id, x.o, greatest(w.created_at, v_created) AS since
          FROM unnest(v_ws) WITH ORDINALITY AS x(id, o)
          JOIN app.workspaces w ON w.id = x.id) ws ON ws.o = 1 + (i - 1) % v_nws
    CROSS JOIN LATERAL (SELECT ws.since + (v_anchor - ws.since) * app.demo_rand(v_p0 + i, 1, v_key) AS c) t;

    -- comments on their own posts, in the post's workspace
    INSERT INTO app.comments (id, workspace_id, post_id, author_id, body, created_at)
    SELECT v_c0 + i, p.workspace_id, p.id, v_uid,
           'Update ' || i || ': still waiting on the customer.',
           p.created_at + (v_anchor - p.created_at) * app.demo_rand(v_c0 + i, 2, v_key)
    FROM generate_series(1::bigint, v_comments) AS i
    JOIN app.posts p ON p.id = v_p0 + 1 + (i - 1) % v_posts;

    INSERT INTO app.files (id, workspace_id, uploaded_by, storage_key, filename, content_type, size_bytes, created_at)
    SELECT f.id, v_ws[1 + ((i - 1) % v_nws)::integer], v_uid,
           'workspaces/' || v_ws[1 + ((i - 1) % v_nws)::integer] || '/files/' || f.id,
           'call-recording-' || i || '.mp4', 'video/mp4',
           floor(1000000 + app.demo_rand(i, 3, v_key) * 90000000)::bigint,
           v_anchor - interval '1 hour' * i
    FROM generate_series(1::bigint, v_files) AS i
    CROSS JOIN LATERAL (SELECT md5('heavy-file:' || v_uid || ':' || i)::uuid AS id) f;

    INSERT INTO app.sessions (id, user_id, ip, user_agent, created_at, expires_at)
    SELECT md5('heavy-session:' || v_uid || ':' || i)::uuid, v_uid,
           app.demo_ip(v_uid * 1000000 + i, 90, v_key),
           'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15',
           v_anchor - interval '1 hour' * i,
           v_anchor - interval '1 hour' * i + interval '30 days'
    FROM generate_series(1::bigint, v_sessions) AS i;

    INSERT INTO app.support_tickets (id, workspace_id, requester_id, subject, body, requester_email, status, created_at)
    SELECT v_t0 + i, v_ws[1 + ((i - 1) % v_nws)::integer], v_uid,
           'Export question #' || i,
           'Hi support team,' || E'\n\n' || 'Our export job ' || i || ' failed again.'
             || E'\n\n' || 'My account e-mail is ' || v_email || '.' || E'\n\nThanks,\nMorgan Reyes',
           v_email,
           CASE WHEN i % 10 = 0 THEN 'open' ELSE 'closed' END,
           v_anchor - interval '1 day' * (i % 900) - interval '1 minute' * i
    FROM generate_series(1::bigint, v_tickets) AS i;

    INSERT INTO app.activity_log (id, workspace_id, actor_id, action, target, ip, created_at)
    SELECT v_a0 + i, v_ws[1 + ((i - 1) % v_nws)::integer], v_uid,
           CASE i % 4 WHEN 0 THEN 'user.login' WHEN 1 THEN 'post.updated' WHEN 2 THEN 'file.downloaded' ELSE 'export.requested' END,
           CASE WHEN i % 4 = 0 THEN NULL ELSE 'object/' || i END,
           app.demo_ip(v_uid * 1000000 + i, 140, v_key),
           v_anchor - interval '1 minute' * i
    FROM generate_series(1::bigint, v_activity) AS i;

    PERFORM app.demo_sync_id('app.posts');
    PERFORM app.demo_sync_id('app.comments');
    PERFORM app.demo_sync_id('app.support_tickets');
    PERFORM app.demo_sync_id('app.activity_log');

    RETURN v_uid;
END;
$fn$;

COMMENT ON FUNCTION app.generate_heavy_user(integer) IS
    'Create one extra user (Morgan Reyes) who owns about rows_total rows across users, user_settings, memberships '
    '(three oldest workspaces), posts, comments, files, sessions, support_tickets and activity_log. Returns the user id.';
