-- erasure benchmark: what is left of user $1 (bigint) after an erasure,
-- read inside the erasure's transaction before its ROLLBACK. $2 and $3 are
-- the user's e-mail address and name before the erasure. The engine and the
-- hand-written statements must leave the same.
SELECT jsonb_build_object(
    'owned_rows', (SELECT jsonb_object_agg(table_name, rows) FROM app.owned_rows($1)),
    'users_row', (SELECT jsonb_build_object('name', name, 'email', email, 'display_name', display_name,
                                            'avatar_url', avatar_url, 'phone', phone,
                                            'last_login_at', last_login_at, 'locale', locale)
                    FROM app.users WHERE id = $1),
    'soft_deleted_posts', (SELECT count(*) FROM app.posts WHERE author_id = $1 AND deleted_at IS NOT NULL),
    'support_tickets_with_personal_data',
        (SELECT count(*) FROM app.support_tickets
          WHERE requester_id = $1
            AND (requester_email <> 'deleted-' || $1 || '@deleted.local'
                 OR strpos(body, $2) > 0 OR strpos(body, $3) > 0)),
    'activity_log_with_ip', (SELECT count(*) FROM app.activity_log WHERE actor_id = $1 AND ip IS NOT NULL),
    'accepted_invites_with_address',
        (SELECT count(*) FROM app.invites WHERE accepted_by = $1 AND invited_by <> $1 AND email = $2),
    -- The user's e-mail address or name in the free text of their rows that stay.
    'kept_text_with_identifiers', jsonb_build_object(
        'posts', (SELECT count(*) FROM app.posts
                   WHERE author_id = $1
                     AND (strpos(lower(title || ' ' || body), lower($2)) > 0
                          OR strpos(lower(title || ' ' || body), lower($3)) > 0)),
        'comments', (SELECT count(*) FROM app.comments
                      WHERE author_id = $1
                        AND (strpos(lower(body), lower($2)) > 0 OR strpos(lower(body), lower($3)) > 0)),
        'activity_log', (SELECT count(*) FROM app.activity_log
                          WHERE actor_id = $1
                            AND (strpos(lower(coalesce(target, '')), lower($2)) > 0
                                 OR strpos(lower(coalesce(target, '')), lower($3)) > 0)),
        'support_tickets', (SELECT count(*) FROM app.support_tickets
                             WHERE requester_id = $1
                               AND (strpos(lower(subject), lower($2)) > 0 OR strpos(lower(subject), lower($3)) > 0)))
)::text
