-- erasure benchmark: erasing user $1 (bigint) by hand, the limit the engine
-- is compared with. It does what the demo data map (sql/demo/register.sql)
-- asks for, children before parents, and nothing else. The bench runs the
-- statements one by one inside BEGIN ... ROLLBACK and times them together.
--
-- Not here, and included in the engine's figure: the job's bookkeeping, the
-- receipt (counts, retention, a verification that re-scans the registered
-- personal columns), the audit events and the redaction of the subject's
-- events in lifecycle.audit_log.

-- Deleted on erasure.
DELETE FROM app.memberships WHERE user_id = $1;
DELETE FROM app.files WHERE uploaded_by = $1;
DELETE FROM app.sessions WHERE user_id = $1;
DELETE FROM app.api_keys WHERE user_id = $1;
DELETE FROM app.user_settings WHERE user_id = $1;
DELETE FROM app.invites WHERE invited_by = $1;

-- Posts the user had already deleted in the product (soft delete,
-- deleted_at set) go for real, after the comments on them (no cascade).
-- The benchmark's heavy user has none: both statements find no rows. In a
-- database where the data map is registered, the soft-delete trigger turns
-- the DELETE into a no-op for rows that are already soft-deleted.
DELETE FROM app.comments
 WHERE post_id IN (SELECT id FROM app.posts WHERE author_id = $1 AND deleted_at IS NOT NULL);
DELETE FROM app.posts WHERE author_id = $1 AND deleted_at IS NOT NULL;

-- Anonymized in place. Posts and comments have no column rules: they stay,
-- attributed to the anonymized user, and are not written.
UPDATE app.support_tickets
   SET requester_email = 'deleted-' || $1 || '@deleted.local',
       body = '[redacted]'
 WHERE requester_id = $1;
UPDATE app.activity_log SET ip = NULL WHERE actor_id = $1;

-- The subject row, anonymized in place (every foreign key keeps pointing at it).
UPDATE app.users
   SET name = 'Deleted User',
       email = 'deleted-' || $1 || '@deleted.local',
       display_name = NULL,
       avatar_url = NULL,
       phone = NULL,
       last_login_at = NULL
 WHERE id = $1;

-- Invoices and payments: retained unchanged.
