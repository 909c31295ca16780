-- Least privilege for clerk-sync. Run once per database, after `clerk-sync migrate`, as the
-- role that ran the migrations (it owns the schemas):
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/sql/roles.sql
--
-- It creates two group roles (cluster-wide, NOLOGIN) and grants them what each service
-- needs in this database. Give each service its own login in one of them:
--
--   CREATE ROLE clerk_sync_ingest_login LOGIN PASSWORD '…' IN ROLE clerk_sync_ingest;
--   CREATE ROLE clerk_sync_worker_login LOGIN PASSWORD '…' IN ROLE clerk_sync_worker;
--
-- Migrations, backfill and replay keep running as the owner (`clerk-sync migrate`,
-- `clerk-sync backfill`, `clerk-sync replay`).

DO $$
BEGIN
    BEGIN
        CREATE ROLE clerk_sync_ingest NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
    BEGIN
        CREATE ROLE clerk_sync_worker NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
    END;
END
$$;

-- ingest: store a verified event and enqueue its job. Nothing else: it cannot read raw
-- bodies back, touch the mirror, or change or delete any job.
GRANT USAGE ON SCHEMA clerk_sync, apalis TO clerk_sync_ingest;
GRANT INSERT ON clerk_sync.webhook_events TO clerk_sync_ingest;
-- (job_id: the one statement that stores a batch of events enqueues their jobs from what
-- the event insert returns.)
GRANT SELECT (id, svix_id, job_id) ON clerk_sync.webhook_events TO clerk_sync_ingest;
GRANT INSERT ON apalis.jobs TO clerk_sync_ingest;

-- worker: claim and finish jobs, read stored events, write the mirror, keep errors, prune,
-- roll up the console's activity.
GRANT USAGE ON SCHEMA clerk, clerk_sync, apalis TO clerk_sync_worker;
-- Every mirror table (one per kind: users, organizations, memberships, invitations, domains,
-- roles, permissions, waitlist, billing, sessions), and those that later migrations (run by
-- this same owner) add for new kinds.
GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA clerk TO clerk_sync_worker;
ALTER DEFAULT PRIVILEGES IN SCHEMA clerk GRANT SELECT, INSERT, UPDATE ON TABLES TO clerk_sync_worker;
GRANT SELECT, DELETE ON clerk_sync.webhook_events TO clerk_sync_worker;
GRANT SELECT, INSERT, DELETE ON clerk_sync.job_errors TO clerk_sync_worker;
GRANT SELECT ON clerk_sync.dead_letters TO clerk_sync_worker;
-- The console's per-minute activity, which one worker at a time rolls up and prunes.
GRANT SELECT, INSERT, DELETE ON clerk_sync.activity_minutes TO clerk_sync_worker;
-- For its metric of what `clerk-sync reconcile` repaired.
GRANT SELECT (kind, repaired, reconcile, completed_at) ON clerk_sync.backfill_runs
    TO clerk_sync_worker;
GRANT SELECT, INSERT, UPDATE, DELETE ON apalis.jobs, apalis.workers TO clerk_sync_worker;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA apalis TO clerk_sync_worker;
GRANT USAGE ON ALL SEQUENCES IN SCHEMA clerk_sync TO clerk_sync_worker;

-- both: read which migrations are applied, so that each service's start-up check can refuse
-- a schema older than the binary (without it, the check only sees that the tables exist).
GRANT SELECT (version, success) ON clerk_sync._sqlx_migrations, apalis._sqlx_migrations
    TO clerk_sync_ingest, clerk_sync_worker;

-- Row-level security on the mirror (deploy/sql/rls.sql) filters every role but the tables'
-- owner: the worker's own policy lets it through. Harmless while RLS is off.
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = 'clerk' LOOP
        EXECUTE format('DROP POLICY IF EXISTS "clerk-sync worker" ON clerk.%I', t);
        EXECUTE format('CREATE POLICY "clerk-sync worker" ON clerk.%I FOR ALL '
                       'TO clerk_sync_worker USING (true) WITH CHECK (true)', t);
    END LOOP;
END
$$;
