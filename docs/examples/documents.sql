-- An application table whose rows belong to Clerk organizations, with policies built on
-- clerk-sync's helpers. The example of docs/supabase.md (section 6); the test suite runs
-- this file as it is (tests/e2e/rls.rs). Run after `clerk-sync migrate` and
-- deploy/sql/rls.sql.

CREATE TABLE public.documents (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id     text NOT NULL,
    owner_id   text NOT NULL DEFAULT clerk.user_id(),
    title      text NOT NULL,
    body       text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX documents_org_id_idx ON public.documents (org_id);

ALTER TABLE public.documents ENABLE ROW LEVEL SECURITY;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.documents TO authenticated;

-- Members read the documents of every organization they belong to. The helper runs once
-- per statement (`ARRAY(SELECT …)`), and the index on org_id finds the rows.
CREATE POLICY "members read their organizations' documents" ON public.documents
    FOR SELECT TO authenticated
    USING (org_id = ANY (ARRAY(SELECT clerk.organization_ids())));

-- Members write into their active organization (the one their session token names), as
-- themselves.
CREATE POLICY "members add documents to their active organization" ON public.documents
    FOR INSERT TO authenticated
    WITH CHECK (
        org_id = (SELECT clerk.org_id())
        AND (SELECT clerk.is_member(clerk.org_id()))
        AND owner_id = (SELECT clerk.user_id()));

-- Authors edit their own documents while they are members; admins edit any document of
-- their organization.
CREATE POLICY "authors and admins edit" ON public.documents
    FOR UPDATE TO authenticated
    USING (
        (owner_id = (SELECT clerk.user_id()) AND clerk.is_member(org_id))
        OR clerk.has_role(org_id, 'org:admin'))
    WITH CHECK (
        (owner_id = (SELECT clerk.user_id()) AND clerk.is_member(org_id))
        OR clerk.has_role(org_id, 'org:admin'));

-- Deleting takes a permission (a custom one, defined in Clerk's dashboard and given to
-- roles there).
CREATE POLICY "holders of org:documents:delete delete" ON public.documents
    FOR DELETE TO authenticated
    USING (clerk.has_permission(org_id, 'org:documents:delete'));
