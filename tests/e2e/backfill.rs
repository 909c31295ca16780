//! `clerk-sync backfill` against a fake Clerk Backend API, with webhooks flowing at once.

use clerk_sync_tests::{
    TestApp, TestDb,
    events::*,
    fake_clerk::{Data, FakeClerk, Fault, SECRET_KEY},
    procs::cli_with,
};
use serde_json::Value;

const LISTED_AT: i64 = 1_760_000_000_000;

fn clerk_data() -> Data {
    Data {
        users: (0..23)
            .map(|i| user_data(&format!("user_{i:02}"), LISTED_AT, &format!("Listed{i}")))
            .collect(),
        organizations: (0..5)
            .map(|i| org_data(&format!("org_{i}"), LISTED_AT, &format!("Org {i}")))
            .collect(),
        memberships: (0..12)
            .map(|i| {
                membership_data(
                    &format!("orgmem_{i:02}"),
                    &format!("org_{}", i % 5),
                    &format!("user_{i:02}"),
                    LISTED_AT,
                    "org:member",
                )
            })
            .collect(),
        ..Data::default()
    }
}

async fn backfill(db: &TestDb, fake: &FakeClerk, args: &[&str]) -> clerk_sync_tests::procs::Output {
    let mut all = vec![
        "backfill",
        "--page-size",
        "10",
        "--retry-base-delay-ms",
        "50",
    ];
    all.extend_from_slice(args);
    cli_with(
        &db.url,
        &all,
        &[
            ("CLERK_API_URL", &fake.url()),
            ("CLERK_SECRET_KEY", SECRET_KEY),
        ],
    )
    .await
}

async fn first_name(db: &TestDb, id: &str) -> (Option<String>, bool) {
    sqlx::query_as("SELECT first_name, deleted_at IS NOT NULL FROM clerk.users WHERE id = $1")
        .bind(id)
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_pages_through_rate_limits_and_errors_while_webhooks_flow() {
    let app = TestApp::start().await;
    let db = &app.db;
    let mut data = clerk_data();
    data.faults = vec![
        Fault {
            path: "/v1/users",
            offset: 10,
            status: 429,
            retry_after: Some(1),
            times: 1,
        },
        Fault {
            path: "/v1/organizations",
            offset: 0,
            status: 500,
            retry_after: None,
            times: 1,
        },
    ];
    let fake = FakeClerk::start(data).await;

    // Webhooks during the backfill: newer than the listing, older than it, and a delete.
    let webhooks = async {
        app.post(&user_event(
            "updated",
            "user_03",
            LISTED_AT + 1000,
            "Webhook",
        ))
        .await;
        app.post(&user_event(
            "created",
            "user_05",
            LISTED_AT - 1000,
            "OldHook",
        ))
        .await;
        app.post(&user_deleted("user_07", LISTED_AT + 2000)).await;
        app.post(&org_deleted("org_4", LISTED_AT + 3000)).await;
    };
    let (out, ()) = tokio::join!(backfill(db, &fake, &["--json"]), webhooks);
    assert_eq!(out.code, 0, "{out:?}");
    app.settle().await;

    let summary: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(summary["users"]["listed"], 23, "{summary}");
    assert_eq!(summary["organizations"]["listed"], 5, "{summary}");
    assert_eq!(summary["memberships"]["listed"], 12, "{summary}");
    assert!(out.stderr.contains("rate-limited"), "{}", out.stderr);

    // Pagination: the 429 page and the 500 page were asked again, nothing else twice.
    let requests = fake.data.lock().unwrap().requests.clone();
    let offsets = |path: &str| -> Vec<i64> {
        requests
            .iter()
            .filter(|r| r.0 == path)
            .map(|r| r.1)
            .collect()
    };
    assert_eq!(offsets("/v1/users"), vec![0, 10, 10, 20]);
    assert_eq!(offsets("/v1/organizations"), vec![0, 0]);
    assert_eq!(offsets("/v1/organization_memberships"), vec![0, 10]);

    // The mirror: every listed object, except where a newer webhook wins.
    assert_eq!(db.count("SELECT count(*) FROM clerk.users").await, 23);
    assert_eq!(
        db.count("SELECT count(*) FROM clerk.organization_memberships")
            .await,
        12
    );
    assert_eq!(
        first_name(db, "user_03").await,
        (Some("Webhook".into()), false)
    );
    assert_eq!(
        first_name(db, "user_05").await,
        (Some("Listed5".into()), false)
    );
    // Deleted by webhook after the listing: erased, and the older listing does not bring
    // the data back.
    assert_eq!(first_name(db, "user_07").await, (None, true));
    assert_eq!(
        first_name(db, "user_12").await,
        (Some("Listed12".into()), false)
    );
    // org_4 was deleted by webhook after the listing: it and its memberships stay deleted.
    assert_eq!(
        db.count("SELECT count(*) FROM clerk.organization_memberships WHERE organization_id = 'org_4' AND deleted_at IS NULL").await,
        0
    );
    // 12 listed, minus org_4's two, minus user_07's one (deleting a user cascades too).
    assert_eq!(
        db.count("SELECT count(*) FROM clerk.organization_memberships WHERE deleted_at IS NULL")
            .await,
        9
    );

    // Run again: nothing changes.
    let again = backfill(db, &fake, &["--json"]).await;
    let s: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(
        (
            s["users"]["inserted"].as_u64(),
            s["users"]["updated"].as_u64()
        ),
        (Some(0), Some(0)),
        "{s}"
    );
    assert_eq!(s["users"]["unchanged"], 21, "{s}");
    assert_eq!(
        s["users"]["older"], 2,
        "the webhook's newer user_03 stays, and so does user_07's erased tombstone: {s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_backfill_resumes_from_its_checkpoint() {
    let app = TestApp::builder().without_worker().start().await;
    let db = &app.db;
    let mut data = clerk_data();
    data.faults = vec![Fault {
        path: "/v1/users",
        offset: 20,
        status: 500,
        retry_after: None,
        times: 100,
    }];
    let fake = FakeClerk::start(data).await;
    let out = backfill(db, &fake, &["--users", "--max-retries", "1"]).await;
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("run again to resume"), "{}", out.stderr);
    assert_eq!(db.count("SELECT count(*) FROM clerk.users").await, 20);
    assert_eq!(
        db.count("SELECT next_offset::bigint FROM clerk_sync.backfill_runs WHERE kind = 'users'")
            .await,
        20
    );

    fake.data.lock().unwrap().faults.clear();
    let before = fake.data.lock().unwrap().requests.len();
    let out = backfill(db, &fake, &["--users", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("resuming at offset 20"),
        "{}",
        out.stderr
    );
    let resumed: Vec<i64> = fake.data.lock().unwrap().requests[before..]
        .iter()
        .map(|r| r.1)
        .collect();
    assert_eq!(resumed, vec![20], "only the rest is listed again");
    let s: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (
            s["users"]["listed"].as_u64(),
            s["users"]["inserted"].as_u64()
        ),
        (Some(23), Some(23)),
        "{s}"
    );
    assert_eq!(db.count("SELECT count(*) FROM clerk.users").await, 23);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_tombstones_what_clerk_no_longer_has_and_dry_run_only_tells() {
    let mut app = TestApp::start().await;
    let fake = FakeClerk::start(clerk_data()).await;
    // In the mirror but no longer in Clerk.
    app.post(&user_event(
        "created",
        "user_gone",
        LISTED_AT - 5000,
        "Gone",
    ))
    .await;
    app.post(&membership_event(
        "created",
        "orgmem_gone",
        "org_0",
        "user_gone",
        LISTED_AT - 5000,
        "org:member",
    ))
    .await;
    app.settle().await;
    app.stop_worker().await;
    let db = &app.db;

    let dry = backfill(db, &fake, &["--prune", "--dry-run"]).await;
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(
        dry.stdout.contains("would prune users user_gone"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("would prune memberships orgmem_gone"),
        "{}",
        dry.stdout
    );
    assert!(
        dry.stdout.contains("dry run: nothing was written"),
        "{}",
        dry.stdout
    );
    assert_eq!(
        db.count("SELECT count(*) FROM clerk.users").await,
        1,
        "dry run writes nothing"
    );

    let out = backfill(db, &fake, &["--prune", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    let s: Value = serde_json::from_str(&out.stdout).unwrap();
    // Pruning the user tombstones its membership too, before memberships are listed.
    assert_eq!(
        (
            s["users"]["pruned"].as_u64(),
            s["memberships"]["pruned"].as_u64()
        ),
        (Some(1), Some(0)),
        "{s}"
    );
    assert_eq!(
        first_name(db, "user_gone").await,
        (None, true),
        "a pruned user is deleted, and its data erased"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM clerk.organization_memberships WHERE id = 'orgmem_gone' AND deleted_at IS NOT NULL").await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM clerk.users WHERE deleted_at IS NULL")
            .await,
        23
    );
    let (deleted_at, started_at): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) = sqlx::query_as(
        "SELECT u.deleted_at, r.started_at FROM clerk.users u, clerk_sync.backfill_runs r WHERE u.id = 'user_gone' AND r.kind = 'users'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(deleted_at, started_at, "versioned by the listing's start");
}

/// A sample's object with a chosen id and version.
fn listed(event_type: &str, id: &str, version: i64) -> Value {
    let mut d: Value =
        serde_json::from_str::<Value>(clerk_sync_core::samples::get(event_type).unwrap()).unwrap()
            ["data"]
            .clone();
    d["id"] = serde_json::json!(id);
    d["updated_at"] = serde_json::json!(version);
    d
}

/// Backfill fills every other kind Clerk lists; reconcile then repairs what changed in
/// Clerk without a webhook, and records per kind how many objects it repaired, which the
/// worker exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_and_reconcile_cover_every_listed_kind() {
    let app = TestApp::start().await;
    let db = &app.db;
    let mut data = Data::default();
    data.lists.insert(
        "/v1/organization_invitations",
        (0..3)
            .map(|i| {
                listed(
                    "organizationInvitation.created",
                    &format!("orginv_{i}"),
                    LISTED_AT,
                )
            })
            .collect(),
    );
    data.lists.insert(
        "/v1/organization_domains",
        vec![listed("organizationDomain.created", "orgdmn_0", LISTED_AT)],
    );
    data.lists.insert(
        "/v1/organization_roles",
        (0..2)
            .map(|i| listed("role.created", &format!("role_{i}"), LISTED_AT))
            .collect(),
    );
    data.lists.insert(
        "/v1/organization_permissions",
        (0..2)
            .map(|i| listed("permission.created", &format!("perm_{i}"), LISTED_AT))
            .collect(),
    );
    data.lists.insert(
        "/v1/waitlist_entries",
        vec![listed("waitlistEntry.created", "wle_0", LISTED_AT)],
    );
    let fake = FakeClerk::start(data).await;

    let out = backfill(
        db,
        &fake,
        &[
            "--kind",
            "invitations,domains",
            "--kind",
            "roles,permissions,waitlist_entries",
            "--json",
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let summary: Value = serde_json::from_str(&out.stdout).unwrap();
    for (kind, n) in [
        ("invitations", 3),
        ("domains", 1),
        ("roles", 2),
        ("permissions", 2),
        ("waitlist_entries", 1),
    ] {
        assert_eq!(summary[kind]["inserted"], n, "{kind}: {summary}");
    }
    assert!(
        summary.get("users").is_none(),
        "only the kinds asked for: {summary}"
    );
    assert_eq!(
        db.count(
            "SELECT count(*) FROM clerk.roles WHERE permissions = '{org:invoices:read,org:sys_memberships:read}'"
        )
        .await,
        2
    );

    // In Clerk, without webhooks: a role changed, a waitlist entry joined, a permission
    // went away.
    {
        let mut d = fake.data.lock().unwrap();
        let roles = d.lists.get_mut("/v1/organization_roles").unwrap();
        roles[1]["name"] = serde_json::json!("Renamed");
        roles[1]["updated_at"] = serde_json::json!(LISTED_AT + 1000);
        d.lists
            .get_mut("/v1/waitlist_entries")
            .unwrap()
            .push(listed("waitlistEntry.created", "wle_1", LISTED_AT));
        d.lists
            .get_mut("/v1/organization_permissions")
            .unwrap()
            .pop();
    }
    let out = cli_with(
        &db.url,
        &["reconcile", "--json"],
        &[
            ("CLERK_API_URL", &fake.url()),
            ("CLERK_SECRET_KEY", SECRET_KEY),
        ],
    )
    .await;
    assert_eq!(out.code, 0, "{out:?}");
    let runs: Vec<(String, Option<i64>, bool)> = sqlx::query_as(
        "SELECT kind, repaired, reconcile FROM clerk_sync.backfill_runs \
         WHERE completed_at IS NOT NULL ORDER BY kind",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let repaired = |kind: &str| {
        runs.iter()
            .find(|r| r.0 == kind)
            .map(|r| (r.1, r.2))
            .unwrap_or_else(|| panic!("{kind}: {runs:?}"))
    };
    assert_eq!(repaired("roles"), (Some(1), true));
    assert_eq!(repaired("waitlist_entries"), (Some(1), true));
    assert_eq!(repaired("permissions"), (Some(1), true), "pruned");
    assert_eq!(repaired("invitations"), (Some(0), true));
    assert_eq!(repaired("users"), (Some(0), true), "every listed kind");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM clerk.permissions WHERE id = 'perm_1' AND deleted_at IS NOT NULL"
        )
        .await,
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM clerk.roles WHERE id = 'role_1' AND name = 'Renamed'")
            .await,
        1
    );

    let metrics = clerk_sync_tests::http::request(
        &clerk_sync_tests::http::client(),
        "GET",
        &format!("http://{}/metrics", app.metrics_addr()),
        &[],
        vec![],
    )
    .await
    .unwrap()
    .body;
    for line in [
        r#"clerk_sync_reconcile_repaired_objects{kind="roles"} 1"#,
        r#"clerk_sync_reconcile_repaired_objects{kind="invitations"} 0"#,
    ] {
        assert!(metrics.contains(line), "{line}: {metrics}");
    }

    // Kinds Clerk does not list are refused by name.
    let out = backfill(db, &fake, &["--kind", "sessions"]).await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains("Clerk's Backend API does not list sessions"),
        "{}",
        out.stderr
    );
}
