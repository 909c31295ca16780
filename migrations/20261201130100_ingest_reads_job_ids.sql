-- Ingest stores a batch of events and enqueues their jobs in one statement: the job insert
-- reads each stored event's job_id from the event insert's RETURNING, which needs SELECT on
-- that column. deploy/sql/roles.sql grants it; a database set up with an earlier roles.sql
-- gets it here, so that an upgraded ingest does not answer 503 to every delivery.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'clerk_sync_ingest') THEN
        GRANT SELECT (job_id) ON clerk_sync.webhook_events TO clerk_sync_ingest;
    END IF;
END
$$;
