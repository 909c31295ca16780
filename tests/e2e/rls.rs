//! Row-level security: the `clerk.*` policy helpers, deploy/sql/rls.sql and the documents
//! example of docs/supabase.md, with the tests playing PostgREST's part: each request is a
//! transaction that switches to role `authenticated` and sets `request.jwt.claims`. Users,
//! organizations and memberships arrive as signed deliveries applied by the worker; roles
//! and permissions are written straight into their mirror tables, as the worker would leave
//! them, so each test sets exactly the role definitions it checks.

use clerk_sync_tests::{
    TestApp,
    events::{envelope, membership_data, org_deleted, org_event, user_deleted, user_event},
};
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection, PgPool, Postgres, Transaction};

const RLS_SQL: &str = include_str!("../../deploy/sql/rls.sql");
const ROLES_SQL: &str = include_str!("../../deploy/sql/roles.sql");
const DOCUMENTS_SQL: &str = include_str!("../../docs/examples/documents.sql");
const SUPABASE_MD: &str = include_str!("../../docs/supabase.md");

const T0: i64 = 1_760_000_000_000;

/// PostgREST's roles. Roles are cluster-wide and tests run in parallel: a concurrent
/// `CREATE ROLE` of the same name fails with a unique violation once the other commits.
/// They are never dropped (other tests' databases may hold grants to them).
const API_ROLES: &str = r#"
        DO $$
        BEGIN
            BEGIN
                CREATE ROLE authenticated NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
            BEGIN
                CREATE ROLE anon NOLOGIN;
            EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
            END;
        END
        $$;
        "#;

/// A database with rls.sql and the documents example applied, ingest and a worker.
struct Stack {
    app: TestApp,
}

impl Stack {
    async fn start() -> Self {
        let app = TestApp::builder()
            .setup(API_ROLES)
            .setup(RLS_SQL)
            .setup(DOCUMENTS_SQL)
            .start()
            .await;
        Self { app }
    }

    /// Delivers the events in this order, one at a time, each applied before the next.
    async fn deliver(&self, bodies: &[Vec<u8>]) {
        for body in bodies {
            assert_eq!(self.app.post(body).await.status, 202);
            let stats = self.app.settle().await;
            assert_eq!(stats.dead, 0, "no event may fail: {stats:?}");
        }
    }

    /// Documents written by the application (as the tables' owner, past RLS).
    async fn documents(&self, org: &str, titles: &[&str]) {
        for title in titles {
            sqlx::query("INSERT INTO public.documents (org_id, owner_id, title) VALUES ($1, 'user_app', $2)")
                .bind(org)
                .bind(title)
                .execute(&self.app.db.pool)
                .await
                .unwrap();
        }
    }

    /// Titles of the documents this request reads.
    async fn titles(&self, claims: Option<Value>) -> Vec<String> {
        let mut tx = request(&self.app.db.pool, claims).await;
        let titles = sqlx::query_scalar("SELECT title FROM public.documents ORDER BY title")
            .fetch_all(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        titles
    }

    /// What the helpers answer for this request about `org`.
    async fn checks(&self, claims: Value, org: &str) -> Checks {
        let mut tx = request(&self.app.db.pool, Some(claims)).await;
        let (member, member_role, admin, read, delete): (bool, bool, bool, bool, bool) =
            sqlx::query_as(
                "SELECT clerk.is_member($1), clerk.has_role($1, 'org:member'),
                        clerk.has_role($1, 'admin'),
                        clerk.has_permission($1, 'documents:read'),
                        clerk.has_permission($1, 'org:documents:delete')",
            )
            .bind(org)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        Checks {
            member,
            member_role,
            admin,
            read,
            delete,
        }
    }

    async fn stop(mut self) {
        self.app.stop_worker().await;
    }
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Checks {
    member: bool,
    member_role: bool,
    admin: bool,
    read: bool,
    delete: bool,
}

/// One request as PostgREST makes it: a transaction as role `authenticated`, with the
/// verified JWT's claims as the transaction-local `request.jwt.claims`.
async fn request(pool: &PgPool, claims: Option<Value>) -> Transaction<'static, Postgres> {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE authenticated")
        .execute(&mut *tx)
        .await
        .unwrap();
    if let Some(claims) = claims {
        sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
            .bind(claims.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    tx
}

/// A Clerk session token, version 2: the active organization under `o`.
fn v2(user: &str, org: Option<&str>) -> Value {
    let mut claims = json!({
        "sub": user, "v": 2, "role": "authenticated", "sid": "sess_test",
        "iss": "https://example.clerk.accounts.dev", "exp": 1_900_000_000, "iat": 1_760_000_000,
    });
    if let Some(org) = org {
        claims["o"] = json!({"id": org, "rol": "admin", "slg": "acme", "per": "read,manage"});
    }
    claims
}

/// A Clerk session token, version 1: the active organization in top-level claims.
fn v1(user: &str, org: Option<&str>) -> Value {
    let mut claims = json!({
        "sub": user, "role": "authenticated", "sid": "sess_test",
        "iss": "https://example.clerk.accounts.dev", "exp": 1_900_000_000, "iat": 1_760_000_000,
    });
    if let Some(org) = org {
        claims["org_id"] = json!(org);
        claims["org_role"] = json!("org:admin");
        claims["org_slug"] = json!("acme");
        claims["org_permissions"] = json!([]);
    }
    claims
}

fn membership(
    kind: &str,
    id: &str,
    org: &str,
    user: &str,
    version_ms: i64,
    role: &str,
    permissions: &[&str],
) -> Vec<u8> {
    let mut data = membership_data(id, org, user, version_ms, role);
    data["permissions"] = json!(permissions);
    envelope(&format!("organizationMembership.{kind}"), data, version_ms)
}

/// A membership delete: the membership as last updated, versioned by the envelope's time.
fn membership_removed(
    id: &str,
    org: &str,
    user: &str,
    last: (i64, &str, &[&str]),
    at_ms: i64,
) -> Vec<u8> {
    let (last_version_ms, role, permissions) = last;
    let mut data = membership_data(id, org, user, last_version_ms, role);
    data["permissions"] = json!(permissions);
    envelope("organizationMembership.deleted", data, at_ms)
}

fn sqlstate(e: &sqlx::Error) -> Option<String> {
    e.as_database_error()
        .and_then(|d| d.code())
        .map(|c| c.into_owned())
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_read_their_organizations_documents_and_no_one_else_does() {
    let s = Stack::start().await;
    let mut events = vec![
        org_event("created", "org_a", T0, "Acme"),
        org_event("created", "org_b", T0, "Beta"),
        org_event("created", "org_c", T0, "Gone"),
    ];
    for user in ["alice", "bob", "carol", "dave", "erin", "mallory"] {
        events.push(user_event("created", &format!("user_{user}"), T0, user));
    }
    let read = &["org:documents:read"][..];
    events.extend([
        membership(
            "created",
            "orgmem_alice",
            "org_a",
            "user_alice",
            T0 + 1,
            "org:member",
            read,
        ),
        membership(
            "created",
            "orgmem_bob",
            "org_b",
            "user_bob",
            T0 + 1,
            "org:member",
            read,
        ),
        membership(
            "created",
            "orgmem_carol",
            "org_a",
            "user_carol",
            T0 + 1,
            "org:member",
            read,
        ),
        membership(
            "created",
            "orgmem_dave",
            "org_c",
            "user_dave",
            T0 + 1,
            "org:member",
            read,
        ),
        membership(
            "created",
            "orgmem_erin",
            "org_a",
            "user_erin",
            T0 + 1,
            "org:member",
            read,
        ),
    ]);
    s.deliver(&events).await;
    s.documents("org_a", &["a1", "a2", "a3"]).await;
    s.documents("org_b", &["b1", "b2"]).await;
    s.documents("org_c", &["c1"]).await;

    let a_docs = strings(&["a1", "a2", "a3"]);
    assert_eq!(
        s.titles(Some(v2("user_alice", Some("org_a")))).await,
        a_docs
    );
    assert_eq!(
        s.titles(Some(v1("user_alice", Some("org_a")))).await,
        a_docs,
        "the session token's version does not matter"
    );
    assert_eq!(
        s.titles(Some(v2("user_alice", None))).await,
        a_docs,
        "members read their organizations' documents with no organization active"
    );
    assert_eq!(
        s.titles(Some(v2("user_bob", Some("org_b")))).await,
        strings(&["b1", "b2"])
    );
    assert!(
        s.titles(Some(v2("user_mallory", None))).await.is_empty(),
        "a non-member"
    );
    assert!(
        s.titles(Some(v2("user_mallory", Some("org_a"))))
            .await
            .is_empty(),
        "a token naming an organization does not make its bearer a member"
    );
    assert!(
        s.titles(Some(v2("user_nobody", Some("org_a"))))
            .await
            .is_empty(),
        "an unknown user"
    );
    // Before they lose access, they have it: the checks below can fail.
    assert_eq!(s.titles(Some(v2("user_carol", None))).await, a_docs);
    assert_eq!(
        s.titles(Some(v2("user_dave", None))).await,
        strings(&["c1"])
    );
    assert_eq!(s.titles(Some(v2("user_erin", None))).await, a_docs);

    s.deliver(&[
        membership_removed(
            "orgmem_carol",
            "org_a",
            "user_carol",
            (T0 + 1, "org:member", read),
            T0 + 100,
        ),
        org_deleted("org_c", T0 + 100),
        user_deleted("user_erin", T0 + 100),
    ])
    .await;
    assert!(
        s.titles(Some(v2("user_carol", Some("org_a"))))
            .await
            .is_empty(),
        "a removed member"
    );
    assert!(
        s.titles(Some(v2("user_dave", Some("org_c"))))
            .await
            .is_empty(),
        "a member of a deleted organization"
    );
    assert!(
        s.titles(Some(v2("user_erin", Some("org_a"))))
            .await
            .is_empty(),
        "a deleted user"
    );
    assert_eq!(
        s.titles(Some(v2("user_alice", None))).await,
        a_docs,
        "others keep theirs"
    );

    // Membership events newer than their organization's or user's delete make the
    // membership row live again (the mirror follows each object's own events); the helpers
    // still grant nothing through a tombstoned parent.
    s.deliver(&[
        membership(
            "updated",
            "orgmem_dave",
            "org_c",
            "user_dave",
            T0 + 200,
            "org:admin",
            read,
        ),
        membership(
            "updated",
            "orgmem_erin",
            "org_a",
            "user_erin",
            T0 + 200,
            "org:admin",
            read,
        ),
    ])
    .await;
    assert_eq!(
        s.app
            .db
            .count(
                "SELECT count(*) FROM clerk.organization_memberships
             WHERE id IN ('orgmem_dave', 'orgmem_erin') AND deleted_at IS NULL"
            )
            .await,
        2
    );
    assert!(
        s.titles(Some(v2("user_dave", Some("org_c"))))
            .await
            .is_empty()
    );
    assert!(
        s.titles(Some(v2("user_erin", Some("org_a"))))
            .await
            .is_empty()
    );
    let nothing = Checks {
        member: false,
        member_role: false,
        admin: false,
        read: false,
        delete: false,
    };
    assert_eq!(
        s.checks(v2("user_dave", Some("org_c")), "org_c").await,
        nothing
    );
    assert_eq!(
        s.checks(v2("user_erin", Some("org_a")), "org_a").await,
        nothing
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_and_permission_checks_follow_membership_events_in_any_order() {
    let s = Stack::start().await;
    let read = &["org:documents:read"][..];
    let read_delete = &["org:documents:read", "org:documents:delete"][..];
    // A member, promoted to admin (with the delete permission), then removed. The roles are
    // not mirrored, so permissions come from the membership's own events.
    let history = |i: usize| {
        let (id, org, user) = (
            format!("orgmem_{i}"),
            format!("org_{i}"),
            format!("user_{i}"),
        );
        [
            membership("created", &id, &org, &user, T0 + 10, "org:member", read),
            membership(
                "updated",
                &id,
                &org,
                &user,
                T0 + 20,
                "org:admin",
                read_delete,
            ),
            membership_removed(
                &id,
                &org,
                &user,
                (T0 + 20, "org:admin", read_delete),
                T0 + 30,
            ),
        ]
    };
    let orders = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    for (i, order) in orders.iter().enumerate() {
        let (org, user) = (format!("org_{i}"), format!("user_{i}"));
        s.deliver(&[
            org_event("created", &org, T0, "Org"),
            user_event("created", &user, T0, "User"),
        ])
        .await;
        s.documents(&org, &[&format!("doc_{i}")]).await;
        let events = history(i);
        let mut newest: Option<usize> = None;
        for &e in order {
            s.deliver(std::slice::from_ref(&events[e])).await;
            newest = newest.max(Some(e));
            // What the mirror holds had the delivered events arrived in order.
            let state = newest.unwrap();
            let expected = Checks {
                member: state != 2,
                member_role: state == 0,
                admin: state == 1,
                read: state != 2,
                delete: state == 1,
            };
            let claims = v2(&user, Some(&org));
            assert_eq!(
                s.checks(claims.clone(), &org).await,
                expected,
                "order {order:?}, after event {e}"
            );
            let visible = s.titles(Some(claims)).await;
            assert_eq!(
                visible.len(),
                usize::from(state != 2),
                "order {order:?}, after event {e}"
            );
        }
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permission_checks_follow_the_roles_and_permissions_tables() {
    let s = Stack::start().await;
    let read = &["org:documents:read"][..];
    s.deliver(&[
        org_event("created", "org_a", T0, "Acme"),
        user_event("created", "user_alice", T0, "Alice"),
        membership(
            "created",
            "orgmem_alice",
            "org_a",
            "user_alice",
            T0 + 1,
            "org:editor",
            read,
        ),
    ])
    .await;
    s.documents("org_a", &["a1"]).await;
    let alice = || v2("user_alice", Some("org_a"));
    let pool = &s.app.db.pool;
    let sql = |q: &'static str| async move { sqlx::raw_sql(q).execute(pool).await.unwrap() };
    let can_delete = || async {
        // The example's delete policy, with the request rolled back: the document stays.
        let mut tx = request(pool, Some(alice())).await;
        let n = sqlx::query("DELETE FROM public.documents WHERE title = 'a1'")
            .execute(&mut *tx)
            .await
            .unwrap()
            .rows_affected();
        tx.rollback().await.unwrap();
        let c = s.checks(alice(), "org_a").await;
        assert_eq!(n == 1, c.delete, "the policy and the helper agree");
        (c.read, c.delete)
    };

    assert_eq!(
        can_delete().await,
        (true, false),
        "the role is unknown: the membership's permissions"
    );

    sql(
        "INSERT INTO clerk.roles (id, key, name, permissions, created_at, updated_at, version, raw)
         VALUES ('role_editor', 'org:editor', 'Editor', '{org:documents:read,org:documents:delete}',
                 now(), now(), now(), '{}')",
    )
    .await;
    assert_eq!(
        can_delete().await,
        (true, true),
        "a mirrored role's current permissions count, without a membership event"
    );

    sql("UPDATE clerk.roles SET permissions = '{org:documents:delete}', version = version + interval '1 s'
         WHERE id = 'role_editor'")
    .await;
    assert_eq!(
        can_delete().await,
        (false, true),
        "the live role wins over what the membership event carried"
    );

    sql(
        "INSERT INTO clerk.permissions (id, key, name, type, version, raw)
         VALUES ('perm_delete', 'org:documents:delete', 'Delete documents', 'user', now(), '{}')",
    )
    .await;
    assert_eq!(
        can_delete().await,
        (false, true),
        "a live permission grants"
    );
    sql(
        "UPDATE clerk.permissions SET deleted_at = now(), version = now() + interval '1 min'
         WHERE id = 'perm_delete'",
    )
    .await;
    assert_eq!(
        can_delete().await,
        (false, false),
        "a deleted permission never grants"
    );
    sql("UPDATE clerk.permissions SET deleted_at = NULL WHERE id = 'perm_delete'").await;
    assert_eq!(can_delete().await, (false, true));

    sql(
        "UPDATE clerk.roles SET deleted_at = now(), version = now() + interval '1 min'
         WHERE id = 'role_editor'",
    )
    .await;
    assert_eq!(
        can_delete().await,
        (false, false),
        "a deleted role never grants"
    );
    let (is_member, has_role): (bool, bool) = {
        let mut tx = request(pool, Some(alice())).await;
        let r = sqlx::query_as(
            "SELECT clerk.is_member('org_a'), clerk.has_role('org_a', 'org:editor')",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        r
    };
    assert_eq!(
        (is_member, has_role),
        (true, false),
        "still a member, of a role that is gone"
    );

    // A new role may take a deleted role's key.
    sql(
        "INSERT INTO clerk.roles (id, key, name, permissions, version, raw)
         VALUES ('role_editor2', 'org:editor', 'Editor', '{org:documents:read}', now(), '{}')",
    )
    .await;
    assert_eq!(
        can_delete().await,
        (true, false),
        "the live role with the key counts"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_tokens_of_both_versions_name_the_active_organization() {
    let s = Stack::start().await;
    s.deliver(&[
        org_event("created", "org_a", T0, "Acme"),
        org_event("created", "org_b", T0, "Beta"),
        user_event("created", "user_alice", T0, "Alice"),
        membership(
            "created",
            "orgmem_alice",
            "org_a",
            "user_alice",
            T0 + 1,
            "org:admin",
            &[],
        ),
    ])
    .await;
    let pool = &s.app.db.pool;
    let org_id = |claims: Value| async move {
        let mut tx = request(pool, Some(claims)).await;
        let r: (Option<String>, Option<String>, bool) = sqlx::query_as(
            "SELECT clerk.user_id(), clerk.org_id(), clerk.has_role(clerk.org_id(), 'org:admin')",
        )
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        r
    };
    let alice_in_a = (
        Some("user_alice".to_owned()),
        Some("org_a".to_owned()),
        true,
    );
    assert_eq!(org_id(v2("user_alice", Some("org_a"))).await, alice_in_a);
    assert_eq!(org_id(v1("user_alice", Some("org_a"))).await, alice_in_a);
    assert_eq!(
        org_id(v2("user_alice", None)).await,
        (Some("user_alice".to_owned()), None, false)
    );
    let mut both = v1("user_alice", Some("org_b"));
    both["o"] = json!({"id": "org_a", "rol": "admin"});
    assert_eq!(
        org_id(both).await,
        alice_in_a,
        "o.id (version 2) comes first"
    );

    // The example's insert policy: into the active organization, as oneself, as a member.
    let insert = |claims: Value, org: &'static str| async move {
        let mut tx = request(pool, Some(claims)).await;
        let r = sqlx::query_scalar::<_, String>(
            "INSERT INTO public.documents (org_id, title) VALUES ($1, 'new') RETURNING owner_id",
        )
        .bind(org)
        .fetch_one(&mut *tx)
        .await;
        tx.rollback().await.unwrap();
        r
    };
    for claims in [
        v2("user_alice", Some("org_a")),
        v1("user_alice", Some("org_a")),
    ] {
        let owner = insert(claims.clone(), "org_a").await;
        assert_eq!(owner.unwrap(), "user_alice", "{claims}");
    }
    for (claims, org, why) in [
        (
            v2("user_alice", Some("org_a")),
            "org_b",
            "not the active organization",
        ),
        (
            v2("user_alice", Some("org_b")),
            "org_b",
            "active, but not a member",
        ),
        (
            v1("user_alice", Some("org_b")),
            "org_b",
            "active, but not a member",
        ),
        (v2("user_alice", None), "org_a", "no active organization"),
        (json!({"role": "authenticated"}), "org_a", "no user"),
    ] {
        let err = insert(claims, org).await.expect_err(why);
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{why}: {err}");
    }
    s.stop().await;
}

type Answers = (
    Option<String>,
    Option<String>,
    bool,
    bool,
    bool,
    Vec<String>,
    i64,
    i64,
);

/// Every helper's answer, and how many documents and profiles the request reads, for a
/// request on this connection with these raw claims (as PostgREST would set them).
async fn answers(conn: &mut PgConnection, claims: Option<&str>) -> Answers {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE authenticated")
        .execute(&mut *tx)
        .await
        .unwrap();
    if let Some(c) = claims {
        sqlx::query("SELECT set_config('request.jwt.claims', $1, true)")
            .bind(c)
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let r = sqlx::query_as(
        "SELECT clerk.user_id(), clerk.org_id(), clerk.is_member('org_a'),
                clerk.has_role('org_a', 'org:admin'),
                clerk.has_permission('org_a', 'org:documents:read'),
                ARRAY(SELECT clerk.organization_ids()),
                (SELECT count(*) FROM public.documents),
                (SELECT count(*) FROM (SELECT id FROM clerk.users) u)",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap_or_else(|e| panic!("claims {claims:?}: {e}"));
    tx.commit().await.unwrap();
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_claims_read_nothing_and_never_fail() {
    let s = Stack::start().await;
    s.deliver(&[
        org_event("created", "org_a", T0, "Acme"),
        user_event("created", "user_alice", T0, "Alice"),
        membership(
            "created",
            "orgmem_alice",
            "org_a",
            "user_alice",
            T0 + 1,
            "org:admin",
            &["org:documents:read"],
        ),
    ])
    .await;
    s.documents("org_a", &["a1"]).await;

    // One connection, as PostgREST keeps one: the claims of an earlier request read as ''
    // afterwards, not as NULL.
    let mut conn: PgConnection = s.app.db.pool.acquire().await.unwrap().detach();
    let nothing: Answers = (None, None, false, false, false, vec![], 0, 0);
    assert_eq!(
        answers(&mut conn, None).await,
        nothing,
        "a session that never had claims"
    );
    let alice = r#"{"sub": "user_alice", "o": {"id": "org_a"}}"#;
    assert_eq!(
        answers(&mut conn, Some(alice)).await,
        (
            Some("user_alice".to_owned()),
            Some("org_a".to_owned()),
            true,
            true,
            true,
            strings(&["org_a"]),
            1,
            1
        )
    );
    assert_eq!(
        answers(&mut conn, None).await,
        nothing,
        "after a request with claims"
    );
    for claims in [
        "{}",
        "null",
        "[]",
        r#""user_alice""#,
        r#"{"sub": ""}"#,
        r#"{"sub": null, "o": {"id": "org_a"}}"#,
        r#"{"role": "authenticated", "org_id": "org_a"}"#,
    ] {
        let (user, _, member, admin, read, orgs, docs, users) =
            answers(&mut conn, Some(claims)).await;
        assert_eq!(
            (user, member, admin, read, orgs, docs, users),
            (None, false, false, false, vec![], 0, 0),
            "claims {claims}"
        );
    }
    conn.close().await.unwrap();
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_users_read_fellow_members_public_profiles_and_nothing_private() {
    let s = Stack::start().await;
    s.deliver(&[
        org_event("created", "org_a", T0, "Acme"),
        org_event("created", "org_b", T0, "Beta"),
        user_event("created", "user_alice", T0, "Alice"),
        user_event("created", "user_bob", T0, "Bob"),
        user_event("created", "user_carol", T0, "Carol"),
        user_event("created", "user_dan", T0, "Dan"),
        membership(
            "created",
            "orgmem_alice",
            "org_a",
            "user_alice",
            T0 + 1,
            "org:admin",
            &[],
        ),
        membership(
            "created",
            "orgmem_bob",
            "org_a",
            "user_bob",
            T0 + 1,
            "org:member",
            &[],
        ),
        membership(
            "created",
            "orgmem_carol",
            "org_b",
            "user_carol",
            T0 + 1,
            "org:member",
            &[],
        ),
        membership(
            "created",
            "orgmem_dan",
            "org_a",
            "user_dan",
            T0 + 1,
            "org:member",
            &[],
        ),
        membership_removed(
            "orgmem_dan",
            "org_a",
            "user_dan",
            (T0 + 1, "org:member", &[]),
            T0 + 5,
        ),
    ])
    .await;
    sqlx::raw_sql(
        "INSERT INTO clerk.roles (id, key, name, permissions, version, raw, deleted_at) VALUES
           ('role_admin', 'org:admin', 'Admin', '{org:sys_memberships:manage}', now(), '{}', NULL),
           ('role_old', 'org:old', 'Old', '{}', now(), '{}', now())",
    )
    .execute(&s.app.db.pool)
    .await
    .unwrap();
    let pool = &s.app.db.pool;
    let ids = |sql: &'static str| async move {
        let mut tx = request(pool, Some(v2("user_alice", Some("org_a")))).await;
        let r: Vec<String> = sqlx::query_scalar(sql).fetch_all(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        r
    };
    assert_eq!(
        ids("SELECT id FROM clerk.users ORDER BY id").await,
        strings(&["user_alice", "user_bob"]),
        "oneself and fellow members; not other organizations' members, not former members"
    );
    assert_eq!(
        ids("SELECT first_name FROM clerk.users WHERE id = 'user_bob'").await,
        strings(&["Bob"])
    );
    assert_eq!(
        ids("SELECT id FROM clerk.organizations").await,
        strings(&["org_a"])
    );
    assert_eq!(
        ids("SELECT id FROM clerk.organization_memberships ORDER BY id").await,
        strings(&["orgmem_alice", "orgmem_bob"])
    );
    assert_eq!(
        ids("SELECT key FROM clerk.roles").await,
        strings(&["org:admin"])
    );

    for private in [
        "SELECT private_metadata FROM clerk.users",
        "SELECT unsafe_metadata FROM clerk.users",
        "SELECT primary_email_address FROM clerk.users",
        "SELECT email_addresses FROM clerk.users",
        "SELECT raw FROM clerk.users",
        "SELECT * FROM clerk.users",
        "SELECT private_metadata FROM clerk.organizations",
        "SELECT raw FROM clerk.organizations",
        "SELECT private_metadata FROM clerk.organization_memberships",
        "SELECT raw FROM clerk.organization_memberships",
        "SELECT raw FROM clerk.roles",
        "SELECT body FROM clerk_sync.webhook_events",
    ] {
        let mut tx = request(pool, Some(v2("user_alice", Some("org_a")))).await;
        let err = sqlx::query(private)
            .execute(&mut *tx)
            .await
            .expect_err(private);
        assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{private}: {err}");
    }

    // An anonymous request (PostgREST's `anon`) may call the helpers, and is told no, but
    // reads nothing of the mirror.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE anon")
        .execute(&mut *tx)
        .await
        .unwrap();
    let member: bool = sqlx::query_scalar("SELECT clerk.is_member('org_a')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert!(!member);
    let err = sqlx::query("SELECT id FROM clerk.users")
        .execute(&mut *tx)
        .await
        .expect_err("anon reads no profiles");
    assert_eq!(sqlstate(&err).as_deref(), Some("42501"), "{err}");
    drop(tx);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_least_privilege_worker_writes_the_mirror_under_row_level_security() {
    // rls.sql first, roles.sql after (the worker's policies come from either), each twice;
    // ingest and worker connect as least-privilege logins.
    let app = TestApp::builder()
        .setup(API_ROLES)
        .setup(RLS_SQL)
        .setup(RLS_SQL)
        .setup(ROLES_SQL)
        .setup(ROLES_SQL)
        .login_as("clerk_sync_ingest", "clerk_sync_worker")
        .start()
        .await;
    let db = &app.db;
    for body in [
        org_event("created", "org_a", T0, "Acme"),
        user_event("created", "user_alice", T0, "Alice"),
        membership(
            "created",
            "orgmem_alice",
            "org_a",
            "user_alice",
            T0 + 1,
            "org:admin",
            &[],
        ),
        membership(
            "updated",
            "orgmem_alice",
            "org_a",
            "user_alice",
            T0 + 2,
            "org:member",
            &[],
        ),
        user_event("updated", "user_alice", T0 + 3, "Alicia"),
    ] {
        assert_eq!(app.post(&body).await.status, 202);
    }
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead), (5, 0), "{stats:?}");
    let row: (String, String) = sqlx::query_as(
        "SELECT u.first_name, m.role FROM clerk.users u
         JOIN clerk.organization_memberships m ON m.user_id = u.id WHERE u.id = 'user_alice'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(row, ("Alicia".to_owned(), "org:member".to_owned()));
    let rls_on: i64 = db
        .count(
            "SELECT count(*) FROM pg_class WHERE relrowsecurity
             AND oid IN ('clerk.users'::regclass, 'clerk.organizations'::regclass,
                         'clerk.organization_memberships'::regclass)",
        )
        .await;
    assert_eq!(
        rls_on, 3,
        "row-level security is on while the worker writes"
    );
    let mut tx = request(&db.pool, Some(v2("user_alice", Some("org_a")))).await;
    let member: bool = sqlx::query_scalar("SELECT clerk.has_role('org_a', 'org:member')")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert!(member);
    drop(tx);
}

#[test]
fn the_supabase_guide_shows_the_documents_example_as_tested() {
    // The file's statements, after its header comment, appear verbatim in the guide.
    let body: String = DOCUMENTS_SQL
        .lines()
        .skip_while(|l| l.starts_with("--") || l.is_empty())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(body.contains("CREATE POLICY"), "the example has policies");
    assert!(
        SUPABASE_MD.contains(&body),
        "docs/supabase.md must show docs/examples/documents.sql (after its header) verbatim"
    );
}
