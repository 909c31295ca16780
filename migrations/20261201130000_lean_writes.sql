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

-- The event store keeps its indexes: each serves a shipped query (svix_id: ingest's
-- ON CONFLICT; job_id: listings and replay by type join events to jobs; received_at:
-- retention; event_type: `jobs --type` and the console's filter, through core::ops;
-- object_id: an object's history in core::ops and docs/operations.md).
