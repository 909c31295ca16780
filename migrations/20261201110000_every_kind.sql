-- Every other kind Clerk sends webhooks for (crates/core/src/mirror/<kind>.rs), same shape as
-- the first three: keyed by Clerk's id, typed columns, `raw`, `created_at` / `updated_at` /
-- `deleted_at` / `version`. No foreign keys: events for related objects arrive in any order.
-- clerk.roles and clerk.permissions exist already (20261201100000_rls_helpers.sql) with the
-- columns their kinds write.

-- organizationInvitation.created|accepted|revoked. Deleting the organization tombstones them.
CREATE TABLE clerk.organization_invitations (
    id               text PRIMARY KEY,
    organization_id  text,
    email_address    text,
    role             text,
    role_name        text,
    -- pending, accepted, revoked, expired (as Clerk sends it).
    status           text,
    -- The user who accepted it.
    user_id          text,
    inviter_id       text,
    expires_at       timestamptz,
    public_metadata  jsonb,
    private_metadata jsonb,
    created_at       timestamptz,
    updated_at       timestamptz,
    deleted_at       timestamptz,
    version          timestamptz NOT NULL,
    raw              jsonb       NOT NULL,
    synced_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX organization_invitations_org_idx ON clerk.organization_invitations (organization_id);
CREATE INDEX organization_invitations_email_idx ON clerk.organization_invitations (lower(email_address));

-- organizationDomain.created|updated|deleted. Deleting the organization tombstones them.
CREATE TABLE clerk.organization_domains (
    id                        text PRIMARY KEY,
    organization_id           text,
    -- The domain name (example.org).
    name                      text,
    -- manual_invitation, automatic_invitation, automatic_suggestion.
    enrollment_mode           text,
    verification_status       text,
    verification_strategy     text,
    affiliation_email_address text,
    total_pending_invitations integer,
    total_pending_suggestions integer,
    created_at                timestamptz,
    updated_at                timestamptz,
    deleted_at                timestamptz,
    version                   timestamptz NOT NULL,
    raw                       jsonb       NOT NULL,
    synced_at                 timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX organization_domains_org_idx ON clerk.organization_domains (organization_id);
CREATE INDEX organization_domains_name_idx ON clerk.organization_domains (lower(name));

-- waitlistEntry.created|updated.
CREATE TABLE clerk.waitlist_entries (
    id            text PRIMARY KEY,
    email_address text,
    -- pending, invited, rejected, completed.
    status        text,
    is_locked     boolean,
    invitation_id text,
    created_at    timestamptz,
    updated_at    timestamptz,
    deleted_at    timestamptz,
    version       timestamptz NOT NULL,
    raw           jsonb       NOT NULL,
    synced_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX waitlist_entries_email_idx ON clerk.waitlist_entries (lower(email_address));

-- Clerk Billing. Statuses are text in snake_case whichever way Clerk spelled them
-- (pastDue and past_due are both past_due); amounts in the currency's smallest unit. The
-- payer is a user (user_id) or an organization (organization_id).
CREATE TABLE clerk.subscriptions (
    id                text PRIMARY KEY,
    status            text,
    payer_id          text,
    user_id           text,
    organization_id   text,
    latest_payment_id text,
    payment_source_id text,
    active_at         timestamptz,
    past_due_at       timestamptz,
    canceled_at       timestamptz,
    ended_at          timestamptz,
    created_at        timestamptz,
    updated_at        timestamptz,
    deleted_at        timestamptz,
    version           timestamptz NOT NULL,
    raw               jsonb       NOT NULL,
    synced_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX subscriptions_user_idx ON clerk.subscriptions (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX subscriptions_org_idx ON clerk.subscriptions (organization_id) WHERE organization_id IS NOT NULL;

CREATE TABLE clerk.subscription_items (
    id                text PRIMARY KEY,
    subscription_id   text,
    status            text,
    plan_id           text,
    plan_slug         text,
    plan_period       text,
    payer_id          text,
    user_id           text,
    organization_id   text,
    is_free_trial     boolean,
    amount            bigint,
    currency          text,
    period_start      timestamptz,
    period_end        timestamptz,
    next_payment_date timestamptz,
    past_due_at       timestamptz,
    canceled_at       timestamptz,
    ended_at          timestamptz,
    created_at        timestamptz,
    updated_at        timestamptz,
    deleted_at        timestamptz,
    version           timestamptz NOT NULL,
    raw               jsonb       NOT NULL,
    synced_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX subscription_items_subscription_idx ON clerk.subscription_items (subscription_id);
CREATE INDEX subscription_items_user_idx ON clerk.subscription_items (user_id) WHERE user_id IS NOT NULL;
CREATE INDEX subscription_items_org_idx ON clerk.subscription_items (organization_id) WHERE organization_id IS NOT NULL;

CREATE TABLE clerk.payment_attempts (
    id              text PRIMARY KEY,
    status          text,
    payment_id      text,
    invoice_id      text,
    statement_id    text,
    charge_type     text,
    payer_id        text,
    user_id         text,
    organization_id text,
    amount          bigint,
    currency        text,
    failed_reason   jsonb,
    billing_date    timestamptz,
    paid_at         timestamptz,
    failed_at       timestamptz,
    created_at      timestamptz,
    updated_at      timestamptz,
    deleted_at      timestamptz,
    version         timestamptz NOT NULL,
    raw             jsonb       NOT NULL,
    synced_at       timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payment_attempts_payer_idx ON clerk.payment_attempts (payer_id);

-- session.created|pending|ended|removed|revoked, mirrored only when the worker runs with
-- MIRROR_SESSIONS=true. Deleting the user tombstones them.
CREATE TABLE clerk.sessions (
    id             text PRIMARY KEY,
    user_id        text,
    client_id      text,
    -- active, pending, ended, removed, revoked, expired, abandoned.
    status         text,
    -- Set when an impersonator acts as the user.
    actor          jsonb,
    last_active_at timestamptz,
    expire_at      timestamptz,
    abandon_at     timestamptz,
    created_at     timestamptz,
    updated_at     timestamptz,
    deleted_at     timestamptz,
    version        timestamptz NOT NULL,
    raw            jsonb       NOT NULL,
    synced_at      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX sessions_user_idx ON clerk.sessions (user_id);

-- Backfill and reconcile take every kind with a listing: the list of kinds lives in the
-- code (the registry), not in a CHECK that each new kind would have to edit.
ALTER TABLE clerk_sync.backfill_runs DROP CONSTRAINT backfill_runs_kind_check;

-- What the last completed run of each kind had to repair (objects inserted, updated or
-- tombstoned: what webhooks missed), and whether it was `clerk-sync reconcile`, the
-- scheduled sweep. The worker exports it as clerk_sync_reconcile_repaired_objects.
ALTER TABLE clerk_sync.backfill_runs
    ADD COLUMN repaired  bigint CHECK (repaired >= 0),
    ADD COLUMN reconcile boolean NOT NULL DEFAULT false;
