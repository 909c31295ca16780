-- Operator view over apalis.jobs (created by apalis's own migrations, which run first).
-- A job is dead when the worker gave up on it (Killed) or apalis's own attempt cap ran out.
CREATE VIEW clerk_sync.dead_letters AS
SELECT
    j.id               AS job_id,
    e.svix_id,
    e.event_type,
    e.object_id,
    e.id               AS event_id,
    j.attempts,
    COALESCE(last_err.error, j.last_result::text) AS last_error,
    first_err.failed_at AS first_failed_at,
    COALESCE(last_err.failed_at, j.done_at) AS failed_at,
    e.received_at
FROM apalis.jobs j
LEFT JOIN clerk_sync.webhook_events e ON e.job_id = j.id
LEFT JOIN LATERAL (
    SELECT je.error, je.failed_at
    FROM clerk_sync.job_errors je
    WHERE je.job_id = j.id
    ORDER BY je.id DESC
    LIMIT 1
) last_err ON true
LEFT JOIN LATERAL (
    SELECT min(je.failed_at) AS failed_at
    FROM clerk_sync.job_errors je
    WHERE je.job_id = j.id
) first_err ON true
WHERE j.job_type = 'clerk-sync:event'
  AND (j.status = 'Killed' OR (j.status = 'Failed' AND j.attempts >= j.max_attempts));

-- Retention deletes done jobs by age; keep that from scanning the whole queue.
CREATE INDEX IF NOT EXISTS clerk_sync_jobs_done_at_idx ON apalis.jobs (done_at) WHERE status = 'Done';
