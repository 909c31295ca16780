-- `clerk-sync backfill` progress, so that an interrupted run resumes where it stopped.
CREATE TABLE clerk_sync.backfill_runs (
    kind         text PRIMARY KEY CHECK (kind IN ('users', 'organizations', 'memberships')),
    -- The listing's start: pruning tombstones absent objects with this version, so a
    -- webhook that arrives during the run always wins.
    started_at   timestamptz NOT NULL,
    next_offset  integer     NOT NULL DEFAULT 0 CHECK (next_offset >= 0),
    completed_at timestamptz,
    counts       jsonb       NOT NULL DEFAULT '{}'
);

-- Ids seen by the current listing of each kind (for --prune).
CREATE TABLE clerk_sync.backfill_seen (
    kind text NOT NULL REFERENCES clerk_sync.backfill_runs (kind) ON DELETE CASCADE,
    id   text NOT NULL,
    PRIMARY KEY (kind, id)
);
