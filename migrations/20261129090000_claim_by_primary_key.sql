-- apalis.get_jobs, claiming exactly what apalis 1.0's own version claims (Pending jobs and
-- Failed ones with attempts left, due, of the queue, by priority then run_at, skipping
-- locked rows, marked Queued for the worker), with a plan that cannot grow with the table.
--
-- Why: a LANGUAGE sql function's statements are planned without their argument values. For
-- apalis's `UPDATE … FROM (SELECT … LIMIT v_job_count …)` PostgreSQL 15 then guesses the
-- LIMIT keeps 10% of the queue and hash-joins it against a sequential scan of every row of
-- apalis.jobs, done ones included: 12 ms per fetch at a 60,000-job table, growing with it
-- (measured with pg_stat_statements; see BENCHMARKS.md). Matching on `id = ANY(ARRAY(…))`
-- keeps it on the primary key whatever the table holds (under 1 ms).
--
-- If a later apalis migration redefines get_jobs, its version wins: jobs are still
-- claimed correctly, only this speed-up is lost.
CREATE OR REPLACE FUNCTION apalis.get_jobs(
    worker_id TEXT,
    v_job_type TEXT,
    v_job_count INTEGER DEFAULT 5
)
RETURNS SETOF apalis.jobs
LANGUAGE sql
VOLATILE
AS $$
    UPDATE apalis.jobs
    SET
        status = 'Queued',
        lock_by = worker_id,
        lock_at = now()
    WHERE id = ANY (ARRAY(
        SELECT id
        FROM apalis.jobs
        WHERE
            (
                status = 'Pending'
                OR (
                    status = 'Failed'
                    AND attempts < max_attempts
                )
            )
            AND run_at < now()
            AND job_type = v_job_type
        ORDER BY priority DESC, run_at ASC
        LIMIT v_job_count
        FOR UPDATE SKIP LOCKED
    ))
    RETURNING *;
$$;
