//! Every kind of the registry, end to end: each sample event of every Clerk event type,
//! signed and posted to ingest, ends as the right row in the right table, or as a counted
//! skip; message events (email, SMS) leave no trace of their text anywhere.

use std::time::Duration;

use clerk_sync_core::{
    mirror::{self, Decoded, Kind},
    samples,
};
use clerk_sync_tests::{
    TestApp,
    http::{client, request},
    procs::{free_port, log_path, spawn_ingest, wait_for_port},
    signing::Signer,
    worker::{eventually, fast_settings},
};
use serde_json::{Value, json};

fn sample(t: &str) -> Value {
    serde_json::from_str(samples::get(t).expect("sample exists")).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn sessions_on() -> mirror::Options {
    mirror::Options {
        optional_kinds: vec!["sessions"],
        ..mirror::Options::default()
    }
}

/// The registry's samples (every Clerk event type we know of), one at a time in version
/// order, each checked right after it is applied: its row is in its kind's table at its
/// version, deleted exactly when the event deletes, holding the event's object. Message
/// events are counted as skipped, and nothing fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_lands_in_its_kind_table_or_is_a_counted_skip() {
    let options = sessions_on();
    let mut settings = fast_settings();
    settings.mirror = options.clone();
    let app = TestApp::builder().settings(settings).start().await;

    let mut changes = Vec::new();
    let mut skips = Vec::new();
    for s in clerk_sync_core::samples::all() {
        match mirror::decode(s.body.as_bytes(), &options).unwrap() {
            Decoded::Change(c) => changes.push((s.event_type, c)),
            Decoded::Skip(_) => skips.push(s.event_type),
        }
    }
    // Every kind has samples, and every sample of a kind decodes as that kind.
    for kind in mirror::KINDS {
        assert!(
            changes.iter().any(|(_, c)| c.kind == *kind),
            "{}: no sample",
            kind.name
        );
    }
    assert_eq!(skips, ["email.created", "sms.created"]);
    changes.sort_by_key(|(t, c)| (c.version, *t));

    for (event_type, change) in &changes {
        assert_eq!(
            Kind::by_id(&change.id),
            Some(change.kind),
            "{event_type}: id prefix"
        );
        let answer = app.post(samples::get(event_type).unwrap().as_bytes()).await;
        assert_eq!(answer.status, 202, "{event_type}: {answer:?}");
        app.settle().await;
        let row: Option<(chrono::DateTime<chrono::Utc>, bool, Value)> =
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT version, deleted_at IS NOT NULL, raw FROM {} WHERE id = $1",
                change.kind.table
            )))
            .bind(&change.id)
            .fetch_optional(app.pool())
            .await
            .unwrap();
        let (version, deleted, raw) =
            row.unwrap_or_else(|| panic!("{event_type}: no row in {}", change.kind.table));
        assert_eq!(version, change.version, "{event_type}: version");
        assert_eq!(deleted, change.deleted, "{event_type}: deleted");
        if change.updated_at.is_some() || change.kind.personal_data {
            assert_eq!(raw, change.data, "{event_type}: raw");
        } else {
            // A bare delete (`{deleted, id, object}`) keeps the data the object had.
            assert_eq!(raw["id"], change.data["id"], "{event_type}: raw");
        }
    }
    for t in &skips {
        assert_eq!(
            app.post(samples::get(t).unwrap().as_bytes()).await.status,
            202
        );
    }
    let stats = app.settle().await;
    let total = (changes.len() + skips.len()) as i64;
    assert_eq!(
        (stats.done, stats.skipped, stats.dead, stats.events_received),
        (total, skips.len() as i64, 0, total)
    );

    // The typed columns users query, as Clerk's payloads fill them.
    let checks = [
        // An accepted invitation names the user who accepted it.
        "SELECT count(*) FROM clerk.organization_invitations WHERE id = 'orginv_2yPowHi1f3nL8N8R8ptzoCKCL2z' \
         AND status = 'accepted' AND user_id = 'user_2yRebh4y6Oq7IFnSCwYF838bIE2' \
         AND organization_id = 'org_29w9IfBrPmcpi0IeBVaKtA7R94W' AND role = 'org:member' \
         AND email_address = 'jane.doe@example.org' AND expires_at IS NOT NULL",
        "SELECT count(*) FROM clerk.organization_invitations WHERE status = 'revoked'",
        // A deleted domain keeps the data it had, tombstoned.
        "SELECT count(*) FROM clerk.organization_domains WHERE name = 'example.org' \
         AND organization_id = 'org_29w9IfBrPmcpi0IeBVaKtA7R94W' AND deleted_at IS NOT NULL",
        // A role's permission keys (Clerk sends the permission objects).
        "SELECT count(*) FROM clerk.roles WHERE key = 'org:billing_manager' \
         AND permissions = '{org:invoices:read,org:sys_memberships:read}' AND deleted_at IS NOT NULL",
        "SELECT count(*) FROM clerk.permissions WHERE key = 'org:invoices:read' AND deleted_at IS NOT NULL",
        "SELECT count(*) FROM clerk.waitlist_entries WHERE email_address = 'casey.nguyen@example.com' \
         AND status = 'invited' AND NOT is_locked",
        "SELECT count(*) FROM clerk.subscriptions WHERE id = 'csub_2zJQfe5BVy0Toj6rC33AGeBPXUI' \
         AND status = 'active' AND organization_id = 'org_29w9IfBrPmcpi0IeBVaKtA7R94W' AND user_id IS NULL",
        "SELECT count(*) FROM clerk.subscription_items WHERE id = 'csub_item_2zgc93lC4yHp5DvPEHPlBCSpOtZ' \
         AND status = 'canceled' AND plan_slug = 'pro' AND amount = 2500 AND currency = 'USD' \
         AND subscription_id = 'csub_2zJQfe5BVy0Toj6rC33AGeBPXUI'",
        "SELECT count(*) FROM clerk.payment_attempts WHERE id = 'pa_316Az7oBhRdvm61K7hC9JHsoK8e' \
         AND status = 'failed' AND amount = 5000 AND failed_reason->>'code' = 'card_declined'",
        "SELECT count(*) FROM clerk.sessions WHERE id = 'sess_29wBgJLvsJwPOCMQrMyuwH8ML6Y' \
         AND status = 'ended' AND user_id = 'user_29w83sxmDNGwOuEthce5gg56FcC'",
    ];
    for sql in checks {
        assert_eq!(app.count(sql).await, 1, "{sql}");
    }
}

/// Billing statuses are kept whatever they are, and Clerk's two spellings of one status
/// land as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_statuses_are_text_in_either_spelling() {
    let app = TestApp::start().await;
    for (id, status) in [
        ("csub_camel", "pastDue"),
        ("csub_snake", "past_due"),
        ("csub_new", "someStatusClerkAddsLater"),
    ] {
        let mut e = sample("subscription.pastDue");
        e["data"]["id"] = json!(id);
        e["data"]["status"] = json!(status);
        app.post(&bytes(&e)).await;
        let mut e = sample("subscriptionItem.pastDue");
        e["data"]["id"] = json!(id.replace("csub_", "csub_item_"));
        e["data"]["status"] = json!(status);
        app.post(&bytes(&e)).await;
    }
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.dead), (6, 0));
    for table in ["clerk.subscriptions", "clerk.subscription_items"] {
        let statuses: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT status FROM {table} ORDER BY id"
        )))
        .fetch_all(app.pool())
        .await
        .unwrap();
        assert_eq!(
            statuses,
            ["past_due", "some_status_clerk_adds_later", "past_due"],
            "{table}"
        );
    }
}

/// Deleting an organization tombstones its invitations and domains that are not newer than
/// the delete, whichever arrives first; a newer invitation stays live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_organization_tombstones_its_invitations_and_domains() {
    let app = TestApp::start().await;
    let org = "org_29w9IfBrPmcpi0IeBVaKtA7R94W";
    let delete_at: i64 = 1_760_000_000_000;
    let mut deleted = sample("organization.deleted");
    deleted["timestamp"] = json!(delete_at);
    let invitation = |id: &str, version: i64| {
        let mut e = sample("organizationInvitation.created");
        e["data"]["id"] = json!(id);
        e["data"]["updated_at"] = json!(version);
        bytes(&e)
    };
    let mut domain = sample("organizationDomain.created");
    domain["data"]["updated_at"] = json!(delete_at - 10);
    // Before the delete: an invitation and the domain; after it, an older invitation
    // (tombstoned as it arrives) and a newer one (live).
    app.post(&invitation("orginv_before", delete_at - 20)).await;
    app.post(&bytes(&domain)).await;
    app.settle().await;
    app.post(&bytes(&deleted)).await;
    app.settle().await;
    app.post(&invitation("orginv_late_older", delete_at - 5))
        .await;
    app.post(&invitation("orginv_newer", delete_at + 5)).await;
    app.settle().await;
    let tombstoned: Vec<(String, bool)> = sqlx::query_as(
        "SELECT id, deleted_at = to_timestamp(1760000000) FROM clerk.organization_invitations \
         WHERE deleted_at IS NOT NULL \
         UNION ALL SELECT id, deleted_at = to_timestamp(1760000000) FROM clerk.organization_domains \
         WHERE deleted_at IS NOT NULL ORDER BY 1",
    )
    .fetch_all(app.pool())
    .await
    .unwrap();
    assert_eq!(
        tombstoned,
        [
            ("orgdmn_2yJX4VeUqOzatQr3AQX0vUkQxZ7".to_owned(), true),
            ("orginv_before".to_owned(), true),
            ("orginv_late_older".to_owned(), true),
        ]
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM clerk.organization_invitations \
             WHERE id = 'orginv_newer' AND deleted_at IS NULL AND organization_id = '{org}'"
        ))
        .await,
        1
    );
}

/// Sessions are off by default: stored, acknowledged, counted as skipped, not mirrored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_skipped_unless_turned_on() {
    let app = TestApp::start().await;
    for t in ["session.created", "session.ended", "session.revoked"] {
        app.post(samples::get(t).unwrap().as_bytes()).await;
    }
    let stats = app.settle().await;
    assert_eq!((stats.done, stats.skipped, stats.dead), (3, 3, 0));
    assert_eq!(app.count("SELECT count(*) FROM clerk.sessions").await, 0);
}

/// Every text, jsonb and bytea value of every table of the database that contains `needle`,
/// as `schema.table.column`.
async fn where_found(pool: &sqlx::PgPool, needle: &str) -> Vec<String> {
    let columns: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT table_schema, table_name, column_name, data_type FROM information_schema.columns \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') \
           AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea', 'ARRAY') \
           AND (table_schema, table_name) IN (SELECT table_schema, table_name \
                FROM information_schema.tables WHERE table_type = 'BASE TABLE')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(
        columns.len() > 50,
        "the search sees the tables: {columns:?}"
    );
    let mut found = Vec::new();
    for (schema, table, column, data_type) in columns {
        let value = if data_type == "bytea" {
            format!("encode(\"{column}\", 'escape')")
        } else {
            format!("\"{column}\"::text")
        };
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{schema}\".\"{table}\" WHERE strpos({value}, $1) > 0"
        )))
        .bind(needle)
        .fetch_one(pool)
        .await
        .unwrap();
        if n > 0 {
            found.push(format!("{schema}.{table}.{column}"));
        }
    }
    found
}

/// `email.created` and `sms.created` carry one-time codes and links: verified, acknowledged
/// and recorded as events, but their text reaches no table and no log line of ingest or the
/// worker (both as real processes, logging at debug level).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_bodies_reach_no_table_and_no_log_line() {
    let app = TestApp::builder().without_worker().start().await;
    let port = free_port();
    let label = format!("{}-msg", app.db.name);
    let debug = [("RUST_LOG", "debug")];
    let mut ingest = spawn_ingest(app.url(), port, &format!("{label}-ingest"), &debug);
    // Logs to `{label}-worker` (the app prefixes its database's name).
    let mut worker = app.spawn_worker("msg-worker", &debug);
    wait_for_port(port).await;

    // Codes and a link no other test or sample uses.
    let code = format!("{}", 10_000_000 + fastrand::u32(..89_999_999));
    let link = format!("https://accounts.example.org/v1/verify?token=tok{code}x");
    let mut email = sample("email.created");
    let text = serde_json::to_string(&email)
        .unwrap()
        .replace("482913", &code);
    email = serde_json::from_str(&text).unwrap();
    email["data"]["data"]["magic_link"] = json!(link);
    let mut sms = sample("sms.created");
    let text = serde_json::to_string(&sms)
        .unwrap()
        .replace("730164", &code);
    sms = serde_json::from_str(&text).unwrap();
    assert!(
        bytes(&sms)
            .windows(code.len())
            .any(|w| w == code.as_bytes())
    );

    let url = format!("http://127.0.0.1:{port}/webhooks/clerk");
    let (http, signer) = (client(), Signer::default());
    for body in [bytes(&email), bytes(&sms)] {
        let d = signer.sign(&body);
        let answer = request(&http, "POST", &url, &d.headers(), d.body.clone())
            .await
            .unwrap();
        assert_eq!(answer.status, 202, "{answer:?}");
    }
    let stats = eventually(Duration::from_secs(20), "both jobs done", || async {
        let s = app.stats().await;
        (s.done == 2).then_some(s)
    })
    .await;
    assert_eq!(
        (stats.skipped, stats.dead, stats.events_received),
        (2, 0, 2)
    );
    // Recorded: which message it was, not what it said.
    assert_eq!(
        app.count(
            "SELECT count(*) FROM clerk_sync.webhook_events \
             WHERE event_type IN ('email.created', 'sms.created') \
               AND object_id IN ('ema_2zGOVE0l4pCdP0GRYYuQXjp20x4', 'sms_2zGPP5UgANsk6feaxqZem5ZHM80') \
               AND convert_from(body, 'UTF8')::jsonb->'data'->>'slug' = 'verification_code'"
        )
        .await,
        2
    );
    for needle in [code.as_str(), link.as_str(), "is your verification code"] {
        assert_eq!(
            where_found(app.pool(), needle).await,
            Vec::<String>::new(),
            "{needle}"
        );
    }

    for child in [&mut ingest, &mut worker] {
        child.kill().await.unwrap();
    }
    for process in ["ingest", "worker"] {
        let path = log_path(&format!("{label}-{process}"));
        let log = std::fs::read_to_string(&path).unwrap();
        assert!(
            log.lines().count() > 3,
            "{process} logged (debug level): {log}"
        );
        assert!(
            log.contains("email.created") || process == "worker",
            "{process} logs the event type: {log}"
        );
        for needle in [code.as_str(), link.as_str()] {
            assert!(!log.contains(needle), "{process} logged {needle}: {log}");
        }
        let _ = std::fs::remove_file(path);
    }
}

/// A parent's delete cascades only to children not newer than it, even when a child's own
/// later delete commits while the cascade waits for that child's row: the cascade checks the
/// child's version on the row as it is after the wait, not as its snapshot saw it. (A
/// domain's delete names no organization, so it takes no lock on the parent that would
/// order the two.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cascade_waiting_on_a_childs_own_later_delete_leaves_that_delete_standing() {
    use clerk_sync_tests::events::{envelope, org_deleted, org_event};
    const T0: i64 = 1_760_000_000_000;
    let db = clerk_sync_tests::TestDb::new().await;
    let options = mirror::Options::default();
    let change = |body: Vec<u8>| match mirror::decode(&body, &options).unwrap() {
        Decoded::Change(c) => c,
        Decoded::Skip(why) => panic!("skipped: {why:?}"),
    };
    let mut domain = sample("organizationDomain.created");
    domain["data"]["id"] = json!("orgdmn_race");
    domain["data"]["organization_id"] = json!("org_race");
    domain["data"]["updated_at"] = json!(T0);
    domain["timestamp"] = json!(T0);
    for body in [org_event("created", "org_race", T0, "Race"), bytes(&domain)] {
        mirror::apply(&db.pool, &change(body), &options)
            .await
            .unwrap();
    }
    // The domain's own delete, 20 s after the organization's, applied and held open.
    let own = change(envelope(
        "organizationDomain.deleted",
        json!({"deleted": true, "id": "orgdmn_race", "object": "organization_domain"}),
        T0 + 20_000,
    ));
    let mut held = db.pool.begin().await.unwrap();
    mirror::apply_all(&mut held, &[&own], &options)
        .await
        .unwrap();
    // The organization's delete (older) cascades while the domain's row is held.
    let parent = change(org_deleted("org_race", T0 + 10_000));
    let pool = db.pool.clone();
    let opts = options.clone();
    let cascade = tokio::spawn(async move { mirror::apply(&pool, &parent, &opts).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !cascade.is_finished(),
        "the cascade should be waiting for the held row"
    );
    held.commit().await.unwrap();
    cascade.await.unwrap().unwrap();
    let (deleted_at, org_deleted_at): (Option<i64>, Option<i64>) = sqlx::query_as(
        "SELECT (extract(epoch FROM d.deleted_at) * 1000)::int8,
                (SELECT (extract(epoch FROM o.deleted_at) * 1000)::int8
                 FROM clerk.organizations o WHERE o.id = 'org_race')
         FROM clerk.organization_domains d WHERE d.id = 'orgdmn_race'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(org_deleted_at, Some(T0 + 10_000));
    assert_eq!(
        deleted_at,
        Some(T0 + 20_000),
        "the domain's own later delete must stand"
    );
}
