-- Row-level security for the Data API (PostgREST, Supabase): what a signed-in end user may
-- read of the mirror, and the policy helpers they may call. Optional. Run it after
-- `clerk-sync migrate` (and again after each upgrade; it is idempotent), as the role that
-- ran the migrations (it owns the tables):
--
--   psql "$DATABASE_URL" -v ON_ERROR_STOP=1 -f deploy/sql/rls.sql
--
-- It needs the role `authenticated` (PostgREST's role for requests with a valid JWT;
-- Supabase has it). `anon`, if it exists, may call the helpers (they answer false for it)
-- but reads nothing.
--
-- An end user (role `authenticated`, their Clerk session token in `request.jwt.claims`) may
-- then read, never deleted rows and never `private_metadata`, `unsafe_metadata`, emails,
-- phone numbers, external accounts or `raw`:
--   - clerk.users: their own public profile, and that of the members of their organizations;
--   - clerk.organizations: the organizations they are a member of;
--   - clerk.organization_memberships: the memberships of those organizations;
--   - clerk.roles, clerk.permissions: the role and permission definitions.
-- Column grants keep the private columns out (`select *` is refused; name the columns).
--
-- With row-level security on, a worker connecting as the least-privilege group role
-- clerk_sync_worker (deploy/sql/roles.sql) needs a policy of its own to see and write the
-- rows: this file adds it if that role exists, and roles.sql adds it too, so the two can be
-- run in either order. The tables' owner (`clerk-sync migrate`, `backfill`, a worker
-- connecting as the owner) is not subject to these policies.

BEGIN;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'authenticated') THEN
        RAISE EXCEPTION 'rls.sql: role "authenticated" does not exist'
            USING HINT = 'On plain PostgreSQL with PostgREST, create the roles PostgREST '
                         'switches to first: CREATE ROLE authenticated NOLOGIN;';
    END IF;
END
$$;

-- The helpers, for policies on the mirror and on your own tables.
GRANT USAGE ON SCHEMA clerk TO authenticated;
GRANT EXECUTE ON FUNCTION
    clerk.user_id(), clerk.org_id(), clerk.is_member(text), clerk.has_role(text, text),
    clerk.has_permission(text, text), clerk.organization_ids()
TO authenticated;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'anon') THEN
        -- So that a policy written `TO public` answers "no" to an anonymous request
        -- instead of failing it with "permission denied".
        GRANT USAGE ON SCHEMA clerk TO anon;
        GRANT EXECUTE ON FUNCTION
            clerk.user_id(), clerk.org_id(), clerk.is_member(text), clerk.has_role(text, text),
            clerk.has_permission(text, text), clerk.organization_ids()
        TO anon;
    END IF;
END
$$;

-- Public profile columns only.
GRANT SELECT (id, first_name, last_name, username, image_url, has_image, created_at, updated_at,
              deleted_at)
    ON clerk.users TO authenticated;
GRANT SELECT (id, name, slug, image_url, has_image, members_count, created_by, created_at,
              updated_at, deleted_at)
    ON clerk.organizations TO authenticated;
GRANT SELECT (id, organization_id, user_id, role, role_name, created_at, updated_at, deleted_at)
    ON clerk.organization_memberships TO authenticated;
GRANT SELECT (id, key, name, description, permissions, is_creator_eligible, created_at,
              updated_at, deleted_at)
    ON clerk.roles TO authenticated;
GRANT SELECT (id, key, name, description, type, created_at, updated_at, deleted_at)
    ON clerk.permissions TO authenticated;

ALTER TABLE clerk.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE clerk.organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE clerk.organization_memberships ENABLE ROW LEVEL SECURITY;
ALTER TABLE clerk.roles ENABLE ROW LEVEL SECURITY;
ALTER TABLE clerk.permissions ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS "read own profile and fellow members'" ON clerk.users;
CREATE POLICY "read own profile and fellow members'" ON clerk.users
    FOR SELECT TO authenticated
    USING (deleted_at IS NULL AND (
        id = (SELECT clerk.user_id())
        OR EXISTS (
            SELECT 1 FROM clerk.organization_memberships m
            WHERE m.user_id = users.id
              AND m.deleted_at IS NULL
              AND m.organization_id = ANY (ARRAY(SELECT clerk.organization_ids())))));

DROP POLICY IF EXISTS "members read their organizations" ON clerk.organizations;
CREATE POLICY "members read their organizations" ON clerk.organizations
    FOR SELECT TO authenticated
    USING (deleted_at IS NULL AND id = ANY (ARRAY(SELECT clerk.organization_ids())));

DROP POLICY IF EXISTS "members read their organizations' memberships"
    ON clerk.organization_memberships;
CREATE POLICY "members read their organizations' memberships" ON clerk.organization_memberships
    FOR SELECT TO authenticated
    USING (deleted_at IS NULL AND organization_id = ANY (ARRAY(SELECT clerk.organization_ids())));

DROP POLICY IF EXISTS "read live roles" ON clerk.roles;
CREATE POLICY "read live roles" ON clerk.roles
    FOR SELECT TO authenticated
    USING (deleted_at IS NULL);

DROP POLICY IF EXISTS "read live permissions" ON clerk.permissions;
CREATE POLICY "read live permissions" ON clerk.permissions
    FOR SELECT TO authenticated
    USING (deleted_at IS NULL);

DO $$
DECLARE
    t text;
BEGIN
    IF EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = 'clerk_sync_worker') THEN
        FOR t IN SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = 'clerk' LOOP
            EXECUTE format('DROP POLICY IF EXISTS "clerk-sync worker" ON clerk.%I', t);
            EXECUTE format('CREATE POLICY "clerk-sync worker" ON clerk.%I FOR ALL '
                           'TO clerk_sync_worker USING (true) WITH CHECK (true)', t);
        END LOOP;
    END IF;
END
$$;

COMMIT;
