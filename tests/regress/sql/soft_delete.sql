-- Soft delete: a plain DELETE on a table registered with a soft-delete
-- column sets the column; the row stays.
DELETE FROM app.posts WHERE id = 4;
SELECT id, body, deleted_at IS NOT NULL AS soft_deleted FROM app.posts ORDER BY id;
-- Deleting again keeps the first deletion time.
SELECT deleted_at AS first_deleted FROM app.posts WHERE id = 4 \gset
DELETE FROM app.posts WHERE id = 4;
SELECT deleted_at = :'first_deleted' AS unchanged FROM app.posts WHERE id = 4;
-- A held row is not soft-deleted either.
SELECT lifecycle.place_hold('user', '3', NULL, 'Hold on Carol', 'legal@acme.example') AS carol_hold \gset
SELECT try($$DELETE FROM app.posts WHERE author_id = 3$$);
SELECT lifecycle.release_hold(:'carol_hold', 'legal@acme.example');
-- Tables without a soft-delete column delete for real.
DELETE FROM app.invoices WHERE id = 2;
SELECT count(*) AS invoices FROM app.invoices;
