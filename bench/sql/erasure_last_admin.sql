-- erasure benchmark: workspaces in which user $1 (bigint) is the only owner
-- or admin. Erasure refuses such a user until each workspace is handed over
-- or deleted; the bench makes the user a plain member there before timing.
SELECT m.workspace_id::text
  FROM app.memberships m
 WHERE m.user_id = $1
   AND m.role IN ('owner', 'admin')
   AND NOT EXISTS (SELECT 1 FROM app.memberships o
                    WHERE o.workspace_id = m.workspace_id
                      AND o.user_id <> m.user_id
                      AND o.role IN ('owner', 'admin'))
 ORDER BY 1
