-- Registering the schema in the data map, and what bad input gets.
SELECT lifecycle.register_subject('app.users', 'id', label => 'Account');
SELECT lifecycle.register_tenant('app.workspaces', 'id', label => 'Workspace');
SELECT lifecycle.register_table('app.memberships', 'user', 'user_id', tenant_column => 'workspace_id');
SELECT lifecycle.register_membership('app.memberships', 'user_id', 'workspace_id', 'role', '{owner,admin}');
SELECT lifecycle.register_table('app.posts', 'user', 'author_id', tenant_column => 'workspace_id',
                                on_erase => 'anonymize', soft_delete_column => 'deleted_at', label => 'Posts');
SELECT lifecycle.register_table('app.invoices', 'user', 'billed_user_id', tenant_column => 'workspace_id',
                                on_erase => 'retain', retain_for => '7 years',
                                legal_basis => 'Tax law: invoices are kept for 7 years');
SELECT lifecycle.set_column_rule('app.users', 'name', 'deleted_name');
SELECT lifecycle.set_column_rule('app.users', 'email', 'deleted_email');
SELECT lifecycle.set_column_rule('app.users', 'phone', 'clear');
SELECT lifecycle.set_column_rule('app.posts', 'body', 'keep');

SELECT table_name, kind, subject_type, subject_column, tenant_column, on_erase, retain_for,
       legal_basis, soft_delete_column, label, column_rules
  FROM lifecycle.data_map ORDER BY table_name;

-- Registering the same thing again is a no-op; something different is refused.
SELECT lifecycle.register_table('app.posts', 'user', 'author_id', tenant_column => 'workspace_id',
                                on_erase => 'anonymize', soft_delete_column => 'deleted_at', label => 'Posts');
SELECT count(*) FROM lifecycle.data_map WHERE table_name = 'posts';
SELECT lifecycle.register_table('app.posts', 'user', 'author_id', on_erase => 'delete');
SELECT lifecycle.register_tenant('app.posts', 'workspace_id');

-- Bad input: clear errors, nothing half-registered.
CREATE TABLE app.notes (id bigint PRIMARY KEY, owner_id bigint, flags jsonb, done boolean NOT NULL DEFAULT false, body text NOT NULL);
SELECT lifecycle.register_table('app.notes', 'user', 'no_such_column');
SELECT lifecycle.register_table('app.notes', 'user', 'flags');
SELECT lifecycle.register_table('app.notes', 'user', 'owner_id', on_erase => 'shred');
SELECT lifecycle.register_table('app.notes', 'user', 'owner_id', on_erase => 'retain');
SELECT lifecycle.register_table('app.notes', 'user', 'owner_id', on_erase => 'retain', retain_for => '1 year');
SELECT lifecycle.register_table('app.notes', 'user', 'owner_id', retain_for => '1 year');
SELECT lifecycle.register_table('app.notes', 'user', 'owner_id', soft_delete_column => 'body');
SELECT lifecycle.register_table('app.notes', 'User Type', 'owner_id');
SELECT lifecycle.register_table('app.notes', NULL, 'owner_id');
SELECT lifecycle.register_table(NULL, 'user', 'owner_id');
SELECT lifecycle.register_table('app.no_such_table', 'user', 'owner_id');
SELECT lifecycle.set_column_rule('app.notes', 'body', 'redact');
SELECT count(*) FROM lifecycle.data_map WHERE table_name = 'notes';
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'app.notes'::regclass;

SELECT lifecycle.register_table('app.notes', 'user', 'owner_id');
SELECT lifecycle.set_column_rule('app.notes', 'body', 'shred');
SELECT lifecycle.set_column_rule('app.notes', 'body', 'clear');
SELECT lifecycle.set_column_rule('app.notes', 'done', 'redact');
SELECT lifecycle.set_column_rule('app.notes', 'owner_id', 'clear');
SELECT lifecycle.set_column_rule('app.notes', 'body', 'redact');
SELECT lifecycle.unregister_table('app.notes');
SELECT lifecycle.unregister_table('app.notes');
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'app.notes'::regclass;
DROP TABLE app.notes;

-- Every registered table carries its guards, ENABLE ALWAYS.
SELECT relation, trigger_name, status FROM lifecycle.guard_status
 WHERE registered IS NOT NULL OR relation IS NULL ORDER BY 1, 2, 3;
-- And so do the extension's own tables.
SELECT relation::text, trigger_name, status FROM lifecycle.guard_status
 WHERE registered IS NULL AND relation IS NOT NULL ORDER BY 1, 2;
