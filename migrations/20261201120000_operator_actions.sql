-- The operator's view of the queue (crates/core/src/ops.rs, `clerk-sync jobs|show|explain|
-- replay|discard` and the console): an audit of every action, replay and discard markers in
-- the attempt log, and the indexes that keep job listings fast on a large queue.

-- Every replay and discard an operator made: who (`cli:$USER`, `console:<name>`), what,
-- which filter or ids, which jobs it touched and how many.
CREATE TABLE clerk_sync.operator_actions (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text        NOT NULL CHECK (length(actor) BETWEEN 1 AND 200),
    action  text        NOT NULL CHECK (action IN ('replay', 'discard')),
    -- The selection as given: {"ids": [...]} or {"filter": {...}}.
    filter  jsonb       NOT NULL,
    job_ids text[]      NOT NULL,
    count   integer     NOT NULL CHECK (count >= 0)
);

CREATE INDEX operator_actions_at_idx ON clerk_sync.operator_actions (at);

-- The attempt log keeps a row for each replay and discard, so that a job's history reads
-- attempts 1..n, "replayed by …", attempts 1..m, ... (replay starts attempts afresh).
-- `attempt` of such a row is the number of attempts the job had made until then.
ALTER TABLE clerk_sync.job_errors DROP CONSTRAINT job_errors_kind_check;
ALTER TABLE clerk_sync.job_errors
    ADD CONSTRAINT job_errors_kind_check
    CHECK (kind IN ('transient', 'permanent', 'exhausted', 'panic', 'timeout', 'replayed', 'discarded'))
    NOT VALID;
ALTER TABLE clerk_sync.job_errors VALIDATE CONSTRAINT job_errors_kind_check;
ALTER TABLE clerk_sync.job_errors DROP CONSTRAINT job_errors_attempt_check;
ALTER TABLE clerk_sync.job_errors
    ADD CONSTRAINT job_errors_attempt_check CHECK (attempt >= 0) NOT VALID;
ALTER TABLE clerk_sync.job_errors VALIDATE CONSTRAINT job_errors_attempt_check;

-- Job listings are keyset-paginated by job id, newest first (ids are ULIDs: time-ordered).
-- Jobs that are not done are few even in a large queue: listing by any other state walks
-- this index only.
CREATE INDEX clerk_sync_jobs_unfinished_idx ON apalis.jobs (id) WHERE status <> 'Done';
-- Listing by event type, newest first.
CREATE INDEX webhook_events_type_job_idx ON clerk_sync.webhook_events (event_type, job_id);
