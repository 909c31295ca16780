-- clerk-sync's own schema. apalis keeps its tables and migration history in schema `apalis`.

CREATE SCHEMA IF NOT EXISTS clerk;
CREATE SCHEMA IF NOT EXISTS clerk_sync;

-- Every verified delivery, exactly as received, so it can be re-verified and replayed.
CREATE TABLE clerk_sync.webhook_events (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    svix_id         text        NOT NULL UNIQUE CHECK (length(svix_id) BETWEEN 1 AND 255),
    received_at     timestamptz NOT NULL DEFAULT now(),
    -- The svix-id, svix-timestamp and svix-signature headers as delivered.
    headers         jsonb       NOT NULL,
    body            bytea       NOT NULL,
    -- Parsed from the verified body for querying; NULL when the body is not a Clerk envelope.
    event_type      text,
    object_id       text,
    event_timestamp timestamptz,
    -- The apalis job (apalis.jobs.id) that applies this event; the job carries only event_id.
    job_id          text UNIQUE
);

CREATE INDEX webhook_events_received_at_idx ON clerk_sync.webhook_events (received_at);
CREATE INDEX webhook_events_object_idx ON clerk_sync.webhook_events (object_id) WHERE object_id IS NOT NULL;
CREATE INDEX webhook_events_type_idx ON clerk_sync.webhook_events (event_type, received_at);

-- One row per failed attempt: apalis keeps only the last result, operators want all of them.
CREATE TABLE clerk_sync.job_errors (
    id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id    text        NOT NULL,
    attempt   integer     NOT NULL CHECK (attempt >= 1),
    kind      text        NOT NULL CHECK (kind IN ('transient', 'permanent', 'exhausted', 'panic', 'timeout')),
    error     text        NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX job_errors_job_idx ON clerk_sync.job_errors (job_id, attempt);

-- The mirror. `version` is the ordering key of the contract: Clerk's updated_at for
-- created/updated events, the envelope timestamp for deletes. No foreign keys between
-- mirror tables: events for related objects arrive in any order.
CREATE TABLE clerk.users (
    id                       text PRIMARY KEY,
    external_id              text,
    first_name               text,
    last_name                text,
    username                 text,
    image_url                text,
    has_image                boolean,
    primary_email_address_id text,
    primary_email_address    text,
    primary_phone_number_id  text,
    primary_phone_number     text,
    primary_web3_wallet_id   text,
    email_addresses          jsonb,
    phone_numbers            jsonb,
    external_accounts        jsonb,
    public_metadata          jsonb,
    private_metadata         jsonb,
    unsafe_metadata          jsonb,
    banned                   boolean,
    locked                   boolean,
    password_enabled         boolean,
    two_factor_enabled       boolean,
    totp_enabled             boolean,
    backup_code_enabled      boolean,
    create_organization_enabled boolean,
    delete_self_enabled      boolean,
    last_sign_in_at          timestamptz,
    last_active_at           timestamptz,
    legal_accepted_at        timestamptz,
    created_at               timestamptz,
    updated_at               timestamptz,
    deleted_at               timestamptz,
    version                  timestamptz NOT NULL,
    raw                      jsonb       NOT NULL,
    synced_at                timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX users_primary_email_idx ON clerk.users (lower(primary_email_address));
CREATE INDEX users_external_id_idx ON clerk.users (external_id) WHERE external_id IS NOT NULL;

CREATE TABLE clerk.organizations (
    id                      text PRIMARY KEY,
    name                    text,
    slug                    text,
    image_url               text,
    has_image               boolean,
    created_by              text,
    members_count           integer,
    max_allowed_memberships integer,
    admin_delete_enabled    boolean,
    public_metadata         jsonb,
    private_metadata        jsonb,
    created_at              timestamptz,
    updated_at              timestamptz,
    deleted_at              timestamptz,
    version                 timestamptz NOT NULL,
    raw                     jsonb       NOT NULL,
    synced_at               timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX organizations_slug_idx ON clerk.organizations (slug);

CREATE TABLE clerk.organization_memberships (
    id               text PRIMARY KEY,
    organization_id  text,
    user_id          text,
    role             text,
    role_name        text,
    permissions      text[],
    public_metadata  jsonb,
    private_metadata jsonb,
    created_at       timestamptz,
    updated_at       timestamptz,
    deleted_at       timestamptz,
    version          timestamptz NOT NULL,
    raw              jsonb       NOT NULL,
    synced_at        timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX organization_memberships_org_idx ON clerk.organization_memberships (organization_id);
CREATE INDEX organization_memberships_user_idx ON clerk.organization_memberships (user_id);
