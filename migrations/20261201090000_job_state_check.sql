-- apalis's job states, the only values `status` may take (crates/core/src/jobs.rs maps them
-- to ours: pending, running, retrying, done, dead). NOT VALID then VALIDATE: the check of
-- existing rows does not block writes to a large queue.
ALTER TABLE apalis.jobs
    ADD CONSTRAINT clerk_sync_jobs_status_check
    CHECK (status IN ('Pending', 'Queued', 'Running', 'Done', 'Failed', 'Killed')) NOT VALID;
ALTER TABLE apalis.jobs VALIDATE CONSTRAINT clerk_sync_jobs_status_check;
