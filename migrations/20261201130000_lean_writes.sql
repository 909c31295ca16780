-- Less written per delivery (BENCHMARKS.md, "how it got there").
--
-- 1. apalis's insert trigger sends one NOTIFY per job row, each with its own payload, so
--    none fold, and every notifying commit queues behind PostgreSQL's one notify-queue lock.
--    clerk-sync's enqueue (core::jobs) sends the wake-up itself, once per statement, with
--    one constant payload: identical notifications in a transaction fold into one.
DROP TRIGGER IF EXISTS notify_workers ON apalis.jobs;
DROP FUNCTION IF EXISTS apalis.notify_new_jobs();

-- 2. Indexes that duplicate another one, each an extra write per job row or per event:
--    unique_job_id is the primary key again, lidx is idx_apalis_jobs_lock_by again
--    (apalis's later migrations made both and dropped neither).
DROP INDEX IF EXISTS apalis.unique_job_id;
DROP INDEX IF EXISTS apalis.lidx;
--    idx_jobs_idempotency_key is unique on (job_type, idempotency_key) for apalis's own
--    push with an idempotency key; clerk-sync never pushes through apalis and never sets
--    one (its jobs are made once, by the statement that stores their event), so every
--    insert, claim and ack only wrote a NULL entry into it.
DROP INDEX IF EXISTS apalis.idx_jobs_idempotency_key;

-- 3. webhook_events_type_idx (event_type, received_at) serves no shipped query: replay by
--    type reaches events through job_id, retention through received_at. (object_idx stays:
--    docs/operations.md finds an object's events by it.)
DROP INDEX IF EXISTS clerk_sync.webhook_events_type_idx;
