-- Row-level security helpers: who the request is (its JWT claims, as PostgREST and Supabase
-- set them in `request.jwt.claims`) and what the mirror says that user may do.
--
-- The mirror-reading functions are SECURITY DEFINER: a policy calls them as the request's
-- role, which needs no grant on the mirror's private columns. They pin `search_path = ''`
-- and name every table with its schema, so a caller cannot shadow one. EXECUTE on them is
-- revoked from PUBLIC; deploy/sql/rls.sql grants it to the API roles.

-- Roles and permissions, as Clerk's role_… and perm_… objects (role.* and
-- permission.* events). Same shape as the other mirror tables. has_permission reads a
-- role's current permission keys from here.
CREATE TABLE clerk.roles (
    id                  text PRIMARY KEY,
    key                 text,
    name                text,
    description         text,
    -- The keys of the role's permissions (Clerk sends the permission objects; raw has them).
    permissions         text[],
    is_creator_eligible boolean,
    created_at          timestamptz,
    updated_at          timestamptz,
    deleted_at          timestamptz,
    version             timestamptz NOT NULL,
    raw                 jsonb       NOT NULL,
    synced_at           timestamptz NOT NULL DEFAULT now()
);

-- Not UNIQUE: a key freed by a deleted role may be reused, and the new role's events can
-- arrive before the old one's delete. The functions prefer the live row, then the newest.
CREATE INDEX roles_key_idx ON clerk.roles (key);

CREATE TABLE clerk.permissions (
    id          text PRIMARY KEY,
    key         text,
    name        text,
    description text,
    -- 'system' (Clerk's org:sys_… permissions) or 'user' (defined by the application).
    type        text,
    created_at  timestamptz,
    updated_at  timestamptz,
    deleted_at  timestamptz,
    version     timestamptz NOT NULL,
    raw         jsonb       NOT NULL,
    synced_at   timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX permissions_key_idx ON clerk.permissions (key);

-- Every helper looks up the caller's memberships by user, then organization.
CREATE INDEX organization_memberships_user_org_idx
    ON clerk.organization_memberships (user_id, organization_id);

-- The Clerk user id of the request: the `sub` of the JWT claims that PostgREST (and so
-- Supabase) sets as `request.jwt.claims` for each request. NULL without claims, without a
-- sub, or with an empty one. A setting set in an earlier transaction of the session reads
-- as '' afterwards, not NULL.
--
-- No SET clause, unlike the functions below: a SQL function with one is never inlined, and
-- costs about three times as much per call (measured; it matters in per-row policies). It
-- reads no table, and every function, operator and type is qualified with pg_catalog, so
-- the caller's search_path cannot change what it means.
CREATE FUNCTION clerk.user_id() RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE
        WHEN pg_catalog.current_setting('request.jwt.claims', true) OPERATOR(pg_catalog.<>) ''
         AND (pg_catalog.current_setting('request.jwt.claims', true)::pg_catalog.jsonb
              OPERATOR(pg_catalog.->>) 'sub') OPERATOR(pg_catalog.<>) ''
        THEN pg_catalog.current_setting('request.jwt.claims', true)::pg_catalog.jsonb
             OPERATOR(pg_catalog.->>) 'sub'
    END
$$;

-- The request's active organization, as the session token names it: `o.id` in Clerk's
-- session tokens version 2, `org_id` in version 1. NULL when no organization is active.
-- Only the token's word: pair it with clerk.is_member to check it against the mirror.
-- Inlined like clerk.user_id().
CREATE FUNCTION clerk.org_id() RETURNS text
LANGUAGE sql STABLE
AS $$
    SELECT CASE
        WHEN pg_catalog.current_setting('request.jwt.claims', true) OPERATOR(pg_catalog.<>) ''
        THEN coalesce(
            pg_catalog.current_setting('request.jwt.claims', true)::pg_catalog.jsonb
                OPERATOR(pg_catalog.->) 'o' OPERATOR(pg_catalog.->>) 'id',
            pg_catalog.current_setting('request.jwt.claims', true)::pg_catalog.jsonb
                OPERATOR(pg_catalog.->>) 'org_id')
    END
$$;

-- The caller's memberships that grant anything: live, of an organization and a user that
-- are not tombstoned. A parent not mirrored yet does not hide the membership (events arrive
-- in any order; the membership is the evidence). Deleting a user or an organization already
-- tombstones its memberships; the parents are checked again so that a membership event
-- newer than its parent's delete never revives access.
-- Not SECURITY DEFINER and no SET clause, so that PostgreSQL inlines it into the functions
-- below, which run as the definer with an empty search_path. Not for direct use: EXECUTE
-- is revoked from PUBLIC.
CREATE FUNCTION clerk.caller_memberships()
RETURNS TABLE (organization_id text, role text, permissions text[])
LANGUAGE sql STABLE
AS $$
    SELECT m.organization_id, m.role, m.permissions
    FROM clerk.organization_memberships m
    WHERE m.user_id = clerk.user_id()
      AND m.deleted_at IS NULL
      AND NOT EXISTS (
          SELECT 1 FROM clerk.users u WHERE u.id = m.user_id AND u.deleted_at IS NOT NULL)
      AND NOT EXISTS (
          SELECT 1 FROM clerk.organizations o
          WHERE o.id = m.organization_id AND o.deleted_at IS NOT NULL)
$$;

-- Clerk's role and permission keys start with `org:`; the v2 session token drops it
-- (`o.rol` = 'admin'). Either spelling is accepted.
CREATE FUNCTION clerk.org_key(key text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN pg_catalog.starts_with(key, 'org:') THEN key ELSE 'org:' || key END
$$;

-- Is the caller a member of this organization?
CREATE FUNCTION clerk.is_member(org_id text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    SELECT EXISTS (
        SELECT 1 FROM clerk.caller_memberships() m
        WHERE m.organization_id = is_member.org_id
    )
$$;

-- Does the caller hold this role (e.g. 'org:admin') in this organization? A role that the
-- mirror knows only as deleted grants nothing.
CREATE FUNCTION clerk.has_role(org_id text, role text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    SELECT EXISTS (
        SELECT 1 FROM clerk.caller_memberships() m
        WHERE m.organization_id = has_role.org_id
          AND m.role = clerk.org_key(has_role.role)
          AND (
              EXISTS (SELECT 1 FROM clerk.roles r WHERE r.key = m.role AND r.deleted_at IS NULL)
              OR NOT EXISTS (SELECT 1 FROM clerk.roles r WHERE r.key = m.role)
          )
    )
$$;

-- Does the caller's role in this organization carry this permission (e.g.
-- 'org:invoices:read')?
--   - The role is mirrored and live: its current permission keys (clerk.roles), so a
--     role.updated counts at once, without a membership event.
--   - The role is not mirrored: the permissions Clerk sent with the membership, as they
--     were at its last membership event.
--   - The role is mirrored only as deleted: nothing.
--   - The permission is mirrored only as deleted: nothing.
CREATE FUNCTION clerk.has_permission(org_id text, permission text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''
AS $$
    SELECT EXISTS (
        SELECT 1
        FROM clerk.caller_memberships() m
        CROSS JOIN (SELECT clerk.org_key(has_permission.permission) AS key) wanted
        LEFT JOIN LATERAL (
            SELECT r.deleted_at IS NULL AS live, r.permissions
            FROM clerk.roles r
            WHERE r.key = m.role
            ORDER BY r.deleted_at IS NULL DESC, r.version DESC
            LIMIT 1
        ) r ON true
        WHERE m.organization_id = has_permission.org_id
          AND CASE
                  WHEN r.live IS NULL THEN wanted.key = ANY (m.permissions)
                  WHEN r.live THEN wanted.key = ANY (r.permissions)
                  ELSE false
              END
          AND (
              EXISTS (SELECT 1 FROM clerk.permissions p
                      WHERE p.key = wanted.key AND p.deleted_at IS NULL)
              OR NOT EXISTS (SELECT 1 FROM clerk.permissions p WHERE p.key = wanted.key)
          )
    )
$$;

-- The organizations the caller is a member of, for policies that must not call a function
-- per row: `org_id = ANY (ARRAY(SELECT clerk.organization_ids()))` is evaluated once per
-- statement and finds the rows through an index on org_id. (`org_id IN (SELECT
-- clerk.organization_ids())` is right too, but checks every row against the set.)
CREATE FUNCTION clerk.organization_ids() RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = '' ROWS 10
AS $$
    SELECT DISTINCT m.organization_id
    FROM clerk.caller_memberships() m
    WHERE m.organization_id IS NOT NULL
$$;

REVOKE EXECUTE ON FUNCTION
    clerk.caller_memberships(), clerk.is_member(text), clerk.has_role(text, text),
    clerk.has_permission(text, text), clerk.organization_ids()
FROM PUBLIC;
