-- erasure benchmark: erasing user $1 (bigint) by hand, the baseline the
-- engine is compared with. It is what a DBA would write to reach the end
-- state the demo data map (sql/demo/register.sql) asks for, and does the
-- same work on the data that lifecycle.run_job() does on this schema, in the
-- same order: look up the person's identifiers, check that no workspace is
-- left without an admin, count where other people mention them in the
-- workspaces they belong to, delete, redact their identifiers in the free
-- text of the rows that stay, anonymize, and anonymize the users row last.
--
-- Parameters: $1 the user's id. The first statement returns one row, the
-- user's identifiers and the same as lower-cased LIKE patterns, and the benchmark
-- passes them to every later statement as $2 (text[]) and $3 (text[]);
-- statements that do not need them ignore them. Identifiers are the
-- personal values that identify on their own, as the engine takes them: an
-- e-mail address, a full name, a phone number, an avatar URL (three
-- characters or more, not a single word such as a given name).
--
-- The bench runs the statements one by one inside BEGIN ... ROLLBACK and
-- times them together. They are prepared once per session and planned on
-- every run (plan_cache_mode = force_custom_plan), as the statements of a
-- script would be.
--
-- Written as a DBA would and not as the engine does: the rows of the
-- person's workspaces are found through the workspace_id indexes, and a
-- mention is a match of the lower-cased text with LIKE (the engine then confirms each match as a whole
-- word with lifecycle.mentions(); the demo data has no match, so the
-- confirmation never runs in either).
--
-- Not here, and included in the engine's figure: the job's bookkeeping, the
-- receipt (counts of the rows kept and retained, a verification that
-- re-scans the registered personal columns and the free text kept), one
-- lifecycle.external_steps row per stored file (here the storage keys are
-- returned to the client, which deletes the objects), the audit events and
-- the redaction of the subject's events in lifecycle.audit_log.

-- The person's identifiers ($2) and lower-cased LIKE patterns ($3), read before the
-- users row is anonymized.
SELECT coalesce(array_agg(v ORDER BY v), '{}') AS identifiers,
       coalesce(array_agg('%' || replace(replace(replace(lower(v), '\', '\\'), '%', '\%'), '_', '\_') || '%' ORDER BY v),
                '{}') AS patterns
  FROM app.users u
 CROSS JOIN LATERAL unnest(ARRAY[u.avatar_url, u.display_name, u.email, u.name, u.phone]) AS v
 WHERE u.id = $1
   AND length(btrim(v)) >= 3
   AND v ~ '[^[:alpha:]''-]';

-- Workspaces the person is the only owner or admin of: erasure would leave
-- them without one (the benchmark's user has none; the engine refuses then).
SELECT m.workspace_id
  FROM app.memberships m
 WHERE m.user_id = $1
   AND m.role IN ('owner', 'admin')
   AND NOT EXISTS (SELECT 1 FROM app.memberships o
                    WHERE o.workspace_id = m.workspace_id
                      AND o.user_id <> m.user_id
                      AND o.role IN ('owner', 'admin'));

-- Mentions of the person in other people's rows of their workspaces,
-- counted per column for the receipt (read before the memberships go).
-- The same text columns the engine searches.
SELECT count(*) FILTER (WHERE lower(slug) LIKE ANY ($3)), count(*) FILTER (WHERE lower(name) LIKE ANY ($3)),
       count(*) FILTER (WHERE lower(plan) LIKE ANY ($3))
  FROM app.workspaces
 WHERE id IN (SELECT workspace_id FROM app.memberships WHERE user_id = $1);
SELECT count(*) FILTER (WHERE lower(action) LIKE ANY ($3)), count(*) FILTER (WHERE lower(target) LIKE ANY ($3))
  FROM app.activity_log
 WHERE workspace_id IN (SELECT workspace_id FROM app.memberships WHERE user_id = $1)
   AND actor_id IS DISTINCT FROM $1;
SELECT count(*) FILTER (WHERE lower(name) LIKE ANY ($3)), count(*) FILTER (WHERE lower(key_prefix) LIKE ANY ($3)),
       count(*) FILTER (WHERE lower(key_hash) LIKE ANY ($3))
  FROM app.api_keys
 WHERE workspace_id IN (SELECT workspace_id FROM app.memberships WHERE user_id = $1)
   AND user_id <> $1;
SELECT count(*) FILTER (WHERE lower(body) LIKE ANY ($3))
  FROM app.comments
 WHERE workspace_id IN (SELECT workspace_id FROM app.memberships WHERE user_id = $1)
   AND author_id <> $1;
SELECT count(*) FILTER (WHERE lower(filename) LIKE ANY ($3)), count(*) FILTER (WHERE lower(content_type) LIKE ANY ($3))
  FROM app.files
 WHERE workspace_id IN (SELECT workspace_id FROM app.memberships WHERE user_id = $1)
   AND uploaded_by <> $1;
SELECT count(*) FILTER (WHERE lower(role) LIKE ANY ($3)), count(*) FILTER (WHERE lower(token_hash) LIKE ANY ($3))
  FROM app.invites
 WHERE workspace_id IN (SELECT workspace_id FROM app.memberships WHERE user_id = $1)
   AND invited_by <> $1;
SELECT count(*) FILTER (WHERE lower(number) LIKE ANY ($3)), count(*) FILTER (WHERE lower(currency) LIKE ANY ($3)),
       count(*) FILTER (WHERE lower(billing_name) LIKE ANY ($3)), count(*) FILTER (WHERE lower(billing_address) LIKE ANY ($3)),
       count(*) FILTER (WHERE lower(status) LIKE ANY ($3))
  FROM app.invoices
 WHERE workspace_id IN (SELECT workspace_id FROM app.memberships WHERE user_id = $1)
   AND billed_user_id <> $1;
SELECT count(*) FILTER (WHERE lower(currency) LIKE ANY ($3)), count(*) FILTER (WHERE lower(method) LIKE ANY ($3)),
       count(*) FILTER (WHERE lower(card_last4) LIKE ANY ($3))
  FROM app.payments
 WHERE workspace_id IN (SELECT workspace_id FROM app.memberships WHERE user_id = $1)
   AND user_id <> $1;
SELECT count(*) FILTER (WHERE lower(title) LIKE ANY ($3)), count(*) FILTER (WHERE lower(body) LIKE ANY ($3))
  FROM app.posts
 WHERE workspace_id IN (SELECT workspace_id FROM app.memberships WHERE user_id = $1)
   AND author_id <> $1;
SELECT count(*) FILTER (WHERE lower(subject) LIKE ANY ($3)), count(*) FILTER (WHERE lower(status) LIKE ANY ($3))
  FROM app.support_tickets
 WHERE workspace_id IN (SELECT workspace_id FROM app.memberships WHERE user_id = $1)
   AND requester_id <> $1;

-- Deleted on erasure. The storage keys of the files go back to the client,
-- which deletes the stored objects.
DELETE FROM app.api_keys WHERE user_id = $1;
DELETE FROM app.files WHERE uploaded_by = $1 RETURNING storage_key;
DELETE FROM app.invites WHERE invited_by = $1;
DELETE FROM app.memberships WHERE user_id = $1;

-- Posts the user had already deleted in the product (soft delete,
-- deleted_at set) go for real, after the comments on them (no cascade).
-- The benchmark's heavy user has none: both statements find no rows. In a
-- database where the data map is registered, the soft-delete trigger turns
-- the DELETE into a no-op for rows that are already soft-deleted.
DELETE FROM app.comments
 WHERE post_id IN (SELECT id FROM app.posts WHERE author_id = $1 AND deleted_at IS NOT NULL);
DELETE FROM app.posts WHERE author_id = $1 AND deleted_at IS NOT NULL;

DELETE FROM app.sessions WHERE user_id = $1;
DELETE FROM app.user_settings WHERE user_id = $1;

-- The person's identifiers inside the free text of their rows that stay,
-- replaced by '[redacted]' (whole words, any letter case). The same text
-- columns the engine searches; the benchmark's user has no such text, so
-- these find no rows.
UPDATE app.activity_log
   SET action = CASE WHEN lower(action) LIKE ANY ($3) THEN regexp_replace(action, r.re, '[redacted]', 'gi') ELSE action END,
       target = CASE WHEN lower(target) LIKE ANY ($3) THEN regexp_replace(target, r.re, '[redacted]', 'gi') ELSE target END
  FROM (SELECT '(?<![[:alnum:]])(' || string_agg(regexp_replace(i, '([^[:alnum:][:space:]])', '\\\1', 'g'), '|')
               || ')(?![[:alnum:]])' AS re
          FROM unnest($2::text[]) AS i) r
 WHERE actor_id = $1 AND (lower(action) LIKE ANY ($3) OR lower(target) LIKE ANY ($3));
UPDATE app.activity_log SET ip = NULL WHERE actor_id = $1;
UPDATE app.comments
   SET body = regexp_replace(body, r.re, '[redacted]', 'gi')
  FROM (SELECT '(?<![[:alnum:]])(' || string_agg(regexp_replace(i, '([^[:alnum:][:space:]])', '\\\1', 'g'), '|')
               || ')(?![[:alnum:]])' AS re
          FROM unnest($2::text[]) AS i) r
 WHERE author_id = $1 AND lower(body) LIKE ANY ($3);
UPDATE app.posts
   SET title = CASE WHEN lower(title) LIKE ANY ($3) THEN regexp_replace(title, r.re, '[redacted]', 'gi') ELSE title END,
       body = CASE WHEN lower(body) LIKE ANY ($3) THEN regexp_replace(body, r.re, '[redacted]', 'gi') ELSE body END
  FROM (SELECT '(?<![[:alnum:]])(' || string_agg(regexp_replace(i, '([^[:alnum:][:space:]])', '\\\1', 'g'), '|')
               || ')(?![[:alnum:]])' AS re
          FROM unnest($2::text[]) AS i) r
 WHERE author_id = $1 AND (lower(title) LIKE ANY ($3) OR lower(body) LIKE ANY ($3));
UPDATE app.support_tickets
   SET subject = CASE WHEN lower(subject) LIKE ANY ($3) THEN regexp_replace(subject, r.re, '[redacted]', 'gi') ELSE subject END,
       status = CASE WHEN lower(status) LIKE ANY ($3) THEN regexp_replace(status, r.re, '[redacted]', 'gi') ELSE status END
  FROM (SELECT '(?<![[:alnum:]])(' || string_agg(regexp_replace(i, '([^[:alnum:][:space:]])', '\\\1', 'g'), '|')
               || ')(?![[:alnum:]])' AS re
          FROM unnest($2::text[]) AS i) r
 WHERE requester_id = $1 AND (lower(subject) LIKE ANY ($3) OR lower(status) LIKE ANY ($3));

-- Anonymized in place by their column rules.
UPDATE app.support_tickets
   SET requester_email = 'deleted-' || requester_id || '@deleted.local',
       body = '[redacted]'
 WHERE requester_id = $1;
-- Invitations the person accepted from someone else keep the row, not the
-- address they were sent to.
UPDATE app.invites
   SET email = 'deleted-' || $1 || '@deleted.local'
 WHERE accepted_by = $1 AND invited_by <> $1 AND email = ANY ($2);

-- The subject row, anonymized in place (every foreign key keeps pointing at
-- it), its remaining free text searched like the other rows that stay.
UPDATE app.users
   SET locale = regexp_replace(locale, r.re, '[redacted]', 'gi')
  FROM (SELECT '(?<![[:alnum:]])(' || string_agg(regexp_replace(i, '([^[:alnum:][:space:]])', '\\\1', 'g'), '|')
               || ')(?![[:alnum:]])' AS re
          FROM unnest($2::text[]) AS i) r
 WHERE id = $1 AND lower(locale) LIKE ANY ($3);
UPDATE app.users
   SET name = 'Deleted User',
       email = 'deleted-' || $1 || '@deleted.local',
       display_name = NULL,
       avatar_url = NULL,
       phone = NULL,
       last_login_at = NULL
 WHERE id = $1;

-- Invoices and payments: retained unchanged.
