-- The console's activity charts read per-minute rollups instead of aggregating raw rows on
-- each view (`activity` and `roll_up` in crates/core/src/jobs.rs). One worker at a time writes a row for each
-- minute once no later commit can land in it (ROLLUP_GRACE_SECS after its end), zeros
-- included, so the newest row is also how far the rollup got. Nothing on the write path
-- of ingest or the worker touches this table.
CREATE TABLE IF NOT EXISTS clerk_sync.activity_minutes (
    minute     timestamptz PRIMARY KEY CHECK (extract(epoch FROM minute) :: numeric % 60 = 0),
    -- Events received (`webhook_events.received_at`) in the minute.
    received   bigint      NOT NULL CHECK (received >= 0),
    -- Jobs done (`apalis.jobs.done_at`, discarded ones aside) in the minute, with the sum
    -- and the largest of their apply lags (done_at - received_at) in milliseconds.
    done       bigint      NOT NULL CHECK (done >= 0),
    lag_sum_ms float8      NOT NULL CHECK (lag_sum_ms >= 0 OR done = 0),
    lag_max_ms float8      CHECK ((lag_max_ms IS NULL) = (done = 0)),
    rolled_at  timestamptz NOT NULL DEFAULT now()
);

-- The overview's done, skipped and discarded counts are estimated beyond a cap from the
-- planner's statistics (see `Stats::read_capped`); this gives the planner the outcome's
-- distribution. Statistics cost ANALYZE a little and writes nothing.
CREATE STATISTICS IF NOT EXISTS apalis.clerk_sync_jobs_outcome_stats
    ON (last_result ->> 'Ok') FROM apalis.jobs;
