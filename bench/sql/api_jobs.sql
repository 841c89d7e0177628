-- The API benchmark's jobs, in the column order of
-- `COPY lifecycle.jobs (@COLUMNS@) FROM STDIN` (a superuser's COPY loads jobs
-- in any state, as a restore does): @JOBS@ jobs over two years up to now,
-- spread over @TENANTS@ tenants at random (seeded), of every type and status
-- in the proportions of a busy platform: most jobs finished, a few percent
-- waiting. Target ids are unique, so that open erasures never collide.
SELECT id, job_type, 'user', g::text, tenant_id, status, 'admin@example.com', 'bench',
       'gdpr', requires_approval,
       CASE WHEN status NOT IN ('pending', 'rejected') AND requires_approval THEN 'dpo@example.com' END,
       CASE WHEN status NOT IN ('pending', 'rejected') AND requires_approval THEN requested_at + interval '1 hour' END,
       CASE WHEN status = 'rejected' THEN 'dpo@example.com' END,
       CASE WHEN status = 'rejected' THEN requested_at + interval '1 hour' END,
       CASE WHEN status = 'rejected' THEN 'identity not verified' END,
       CASE WHEN status = 'cancelled' THEN 'admin@example.com' END,
       CASE WHEN status = 'cancelled' THEN requested_at + interval '2 hours' END,
       requested_at,
       requested_at + CASE WHEN job_type = 'erase' THEN interval '30 days' ELSE interval '0' END,
       requested_at + interval '30 days',
       CASE WHEN status IN ('completed', 'failed') THEN 1 ELSE 0 END,
       CASE WHEN status = 'processing' THEN 'worker-1' END,
       CASE WHEN status = 'processing' THEN now() + interval '5 minutes' END,
       CASE WHEN status IN ('processing', 'completed', 'failed') THEN requested_at + interval '31 days' END,
       CASE WHEN status IN ('completed', 'failed', 'rejected', 'cancelled') THEN requested_at + interval '32 days' END,
       CASE WHEN status = 'failed' THEN 'storage unavailable' END,
       CASE WHEN status = 'failed' THEN 'XX000' END,
       requested_at
  FROM (SELECT g, id, job_type, tenant_id, status, requested_at,
               job_type <> 'export' OR status = 'pending' AS requires_approval
          FROM (SELECT g, gen_random_uuid() AS id,
                       CASE WHEN r1 < 0.55 THEN 'export' WHEN r1 < 0.95 THEN 'erase' ELSE 'purge' END AS job_type,
                       'ws-' || lpad(floor(r2 * @TENANTS@)::int::text, 4, '0') AS tenant_id,
                       CASE WHEN r3 < 0.75 THEN 'completed' WHEN r3 < 0.82 THEN 'cancelled'
                            WHEN r3 < 0.86 THEN 'rejected' WHEN r3 < 0.88 THEN 'failed'
                            WHEN r3 < 0.94 THEN 'pending' WHEN r3 < 0.99 THEN 'approved'
                            ELSE 'processing' END AS status,
                       now() - interval '730 days' * (1 - g::float8 / @JOBS@) AS requested_at
                  FROM (SELECT g, random() AS r1, random() AS r2, random() AS r3
                          FROM generate_series(1, @JOBS@) AS g) AS r) AS j) AS k
