-- Register the demo schema (sql/demo/schema.sql) in the lifecycle data map.
--
-- Requires the lifecycle extension (CREATE EXTENSION lifecycle) and the demo
-- schema. Runs in one transaction: either the whole data map is registered or
-- nothing is.
--
--   psql -v ON_ERROR_STOP=1 -f sql/demo/register.sql
--
-- What erasure of one user does, table by table:
--
--   users            anonymized in place: name -> 'Deleted User', email ->
--                    'deleted-<id>@deleted.local', display_name, avatar_url,
--                    phone, last_login_at cleared. The row (and its id) stays,
--                    so every foreign key pointing at it stays valid.
--   memberships      deleted (the user leaves every workspace)
--   posts            anonymized: content stays, authored by the anonymized user
--   comments         anonymized, same as posts
--   files            deleted; the stored objects are deleted too (tracked
--                    in lifecycle.external_steps until confirmed)
--   sessions         deleted
--   api_keys         deleted
--   user_settings    deleted
--   invites          invites the user sent are deleted
--   invoices         retained 7 years (tax law), unchanged
--   payments         retained 7 years (tax law), unchanged
--   support_tickets  anonymized: requester_email replaced, body redacted
--   activity_log     anonymized: the IP address is cleared
--
-- Not in the data map on purpose: app.workspaces.created_by (the creator of a
-- workspace; it keeps pointing at the anonymized users row).

BEGIN;

-- ---------------------------------------------------------------------------
-- Subject and tenant
-- ---------------------------------------------------------------------------

SELECT lifecycle.register_subject('app.users', 'id', subject_type => 'user');

SELECT lifecycle.set_column_rule('app.users', 'name',          'deleted_name');
SELECT lifecycle.set_column_rule('app.users', 'email',         'deleted_email');
SELECT lifecycle.set_column_rule('app.users', 'display_name',  'clear');
SELECT lifecycle.set_column_rule('app.users', 'avatar_url',    'clear');
SELECT lifecycle.set_column_rule('app.users', 'phone',         'clear');
SELECT lifecycle.set_column_rule('app.users', 'last_login_at', 'clear');

SELECT lifecycle.register_tenant('app.workspaces', 'id', name_column => 'name');

-- ---------------------------------------------------------------------------
-- Membership
-- ---------------------------------------------------------------------------

SELECT lifecycle.register_table('app.memberships', 'user', 'user_id',
    tenant_column => 'workspace_id',
    on_erase      => 'delete',
    label         => 'Workspace memberships');

-- Owners and admins of a workspace act for it (for example when a workspace
-- asks for its data to be exported or deleted).
SELECT lifecycle.register_membership('app.memberships', 'user_id', 'workspace_id', 'role',
    ARRAY['owner', 'admin']);

-- ---------------------------------------------------------------------------
-- Content
-- ---------------------------------------------------------------------------

-- Authored content belongs to the workspace: it stays, under the anonymized
-- author. deleted_at marks posts the author already deleted in the product.
SELECT lifecycle.register_table('app.posts', 'user', 'author_id',
    tenant_column      => 'workspace_id',
    on_erase           => 'anonymize',
    soft_delete_column => 'deleted_at',
    label              => 'Posts');

SELECT lifecycle.register_table('app.comments', 'user', 'author_id',
    tenant_column => 'workspace_id',
    on_erase      => 'anonymize',
    label         => 'Comments');

SELECT lifecycle.register_table('app.files', 'user', 'uploaded_by',
    tenant_column => 'workspace_id',
    on_erase      => 'delete',
    label         => 'Uploaded files');
-- The bytes live in object storage: erasure records a step to delete each
-- object, and the job completes once every deletion is confirmed.
SELECT lifecycle.set_column_rule('app.files', 'storage_key', 'storage_object');

-- ---------------------------------------------------------------------------
-- Authentication and preferences
-- ---------------------------------------------------------------------------

SELECT lifecycle.register_table('app.sessions', 'user', 'user_id',
    on_erase => 'delete',
    label    => 'Login sessions');

SELECT lifecycle.register_table('app.api_keys', 'user', 'user_id',
    tenant_column => 'workspace_id',
    on_erase      => 'delete',
    label         => 'API keys');
-- Exports never carry what would let someone use a key: its hash stays
-- inside, and the export's README says so.
SELECT lifecycle.exclude_from_export('app.api_keys', 'key_hash',
    'the hash of your secret API key: a credential of the service, never handed out');
SELECT lifecycle.set_column_label('app.api_keys', 'key_prefix', 'Key starts with');

SELECT lifecycle.register_table('app.user_settings', 'user', 'user_id',
    on_erase => 'delete',
    label    => 'Preferences');

-- ---------------------------------------------------------------------------
-- Collaboration
-- ---------------------------------------------------------------------------

-- The rows belong to the user who sent the invitation. The invitee's address
-- is personal data too: wherever an invite is anonymized instead of deleted,
-- it is replaced.
SELECT lifecycle.register_table('app.invites', 'user', 'invited_by',
    tenant_column => 'workspace_id',
    on_erase      => 'delete',
    label         => 'Sent invitations');
SELECT lifecycle.set_column_rule('app.invites', 'email', 'deleted_email');
-- The invitation's token is a credential of whoever holds the link.
SELECT lifecycle.exclude_from_export('app.invites', 'token_hash',
    'the hash of the secret in the invitation link: a credential, never handed out');

-- accepted_by is a second user column: a legal hold on a user also covers
-- the invitations that user accepted.
SELECT lifecycle.register_scope('app.invites', 'user', 'accepted_by');

-- ---------------------------------------------------------------------------
-- Billing: kept for the statutory period
-- ---------------------------------------------------------------------------

-- Invoices and payments are retained unchanged. Billing name, address and
-- card digits are part of the record the law requires us to keep, so they are
-- explicitly 'keep' rather than cleared or redacted; the retention sweep
-- removes the rows once retain_for has passed.
SELECT lifecycle.register_table('app.invoices', 'user', 'billed_user_id',
    tenant_column => 'workspace_id',
    on_erase      => 'retain',
    retain_for    => '7 years',
    legal_basis   => 'Tax law: invoices must be kept 7 years (e.g. HGB §257 / IRS)',
    label         => 'Invoices');
SELECT lifecycle.set_column_rule('app.invoices', 'billing_name',    'keep');
SELECT lifecycle.set_column_rule('app.invoices', 'billing_address', 'keep');

SELECT lifecycle.register_table('app.payments', 'user', 'user_id',
    tenant_column => 'workspace_id',
    on_erase      => 'retain',
    retain_for    => '7 years',
    legal_basis   => 'Tax law: payment records must be kept 7 years (e.g. HGB §257 / IRS)',
    label         => 'Payments');
SELECT lifecycle.set_column_rule('app.payments', 'card_last4', 'keep');

-- ---------------------------------------------------------------------------
-- Support and auditing
-- ---------------------------------------------------------------------------

-- The ticket stays (support history of the workspace); the free text and the
-- copied e-mail address do not.
SELECT lifecycle.register_table('app.support_tickets', 'user', 'requester_id',
    tenant_column => 'workspace_id',
    on_erase      => 'anonymize',
    label         => 'Support tickets');
SELECT lifecycle.set_column_rule('app.support_tickets', 'requester_email', 'deleted_email');
SELECT lifecycle.set_column_rule('app.support_tickets', 'body',            'redact');

SELECT lifecycle.register_table('app.activity_log', 'user', 'actor_id',
    tenant_column => 'workspace_id',
    on_erase      => 'anonymize',
    label         => 'Activity log');
SELECT lifecycle.set_column_rule('app.activity_log', 'ip', 'clear');

-- ---------------------------------------------------------------------------
-- Exports: labels people understand (every other column gets one made from
-- its name: "created_at" -> "Created at").
-- ---------------------------------------------------------------------------

SELECT lifecycle.set_column_label('app.users', 'name', 'Full name');
SELECT lifecycle.set_column_label('app.users', 'email', 'E-mail address');
SELECT lifecycle.set_column_label('app.users', 'locale', 'Language and region');
SELECT lifecycle.set_column_label('app.files', 'storage_key', 'Stored file');
SELECT lifecycle.set_column_label('app.payments', 'card_last4', 'Card ends with');

COMMIT;
