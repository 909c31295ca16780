//! The operator console: in a real browser (headless Chromium over WebDriver) against a
//! real database, ingest and worker; its refusals over plain HTTP.

use std::time::Duration;

use clerk_sync_core::{
    jobs::{self, Bucket, Rollup, Stats},
    ops,
};
use clerk_sync_tests::{
    TestApp, TestDb,
    browser::Browser,
    console::{TestConsole, send, settings},
    events::user_event,
    procs,
    worker::eventually,
};
use serde_json::Value;

const NO_MALLORY: &str =
    "ALTER TABLE clerk.users ADD CONSTRAINT no_mallory CHECK (first_name <> 'Mallory')";
const XSS: &str = "<script>alert(1)</script>";
const TOKEN: &str = "console-test-token-0123456789";

/// Where screenshots go: `CONSOLE_SCREENSHOTS` (relative to the repository; the README's are
/// made with `CONSOLE_SCREENSHOTS=docs/console`), else the temporary directory.
fn screenshot(name: &str) -> std::path::PathBuf {
    let dir = match std::env::var("CONSOLE_SCREENSHOTS") {
        Ok(dir) => std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(dir),
        Err(_) => std::env::temp_dir().join("clerk-sync-console-screenshots"),
    };
    dir.join(name)
}

async fn svix_id(app: &TestApp, object: &str) -> (String, String) {
    sqlx::query_as(
        "SELECT svix_id, job_id FROM clerk_sync.webhook_events WHERE object_id = $1 ORDER BY id",
    )
    .bind(object)
    .fetch_one(app.pool())
    .await
    .unwrap()
}

async fn status(app: &TestApp) -> Value {
    let out = app.cli(&["status", "--json"]).await;
    assert_eq!(out.code, 0, "{out:?}");
    serde_json::from_str(&out.stdout).unwrap()
}

/// Three Mallorys the database refuses (dead letters), one user named like a script, and
/// an organization.
async fn app_with_dead_letters() -> TestApp {
    let app = TestApp::builder().setup(NO_MALLORY).start().await;
    let v = 1_760_000_000_000;
    app.post_all(&[
        user_event("created", "user_console_m1", v, "Mallory"),
        user_event("created", "user_console_m2", v, "Mallory"),
        user_event("created", "user_console_m3", v, "Mallory"),
        user_event("created", "user_console_xss", v, XSS),
        clerk_sync_tests::events::org_event("created", "org_console", v, "Acme"),
    ])
    .await;
    app.expect_dead(3);
    let s = app.settle().await;
    assert_eq!(s.dead, 3, "{s:?}");
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_found_explained_and_replayed_in_a_real_browser() {
    let app = app_with_dead_letters().await;
    let console = TestConsole::start(app.pool().clone()).await;
    let b = Browser::start().await;

    // The overview's figures are `status --json`'s.
    b.goto(&console.url("/")).await;
    let s = status(&app).await;
    for (id, expected) in [
        ("stat-pending", &s["jobs"]["pending"]),
        ("stat-running", &s["jobs"]["running"]),
        ("stat-retrying", &s["jobs"]["retrying"]),
        ("stat-done", &s["jobs"]["done"]),
        ("stat-dead", &s["jobs"]["dead"]),
        ("stat-skipped", &s["jobs"]["skipped"]),
        ("stat-oldest-pending", &s["oldest_pending_age_seconds"]),
        ("stat-events", &s["events_received"]),
    ] {
        let shown = b.attribute(&format!("#{id}"), "data-value").await;
        assert_eq!(shown, expected.to_string(), "{id}: {s}");
    }
    assert_eq!(b.text_of("#stat-dead .n").await, "3");
    assert!(
        b.text_of("#dead-by-type").await.contains("user.created 3"),
        "{}",
        b.text_of("#dead-by-type").await
    );
    assert!(b.text_of("#dead-by-error").await.contains("no_mallory"));
    assert_eq!(b.find_all("figure.chart svg").await.len(), 4);
    b.screenshot(&screenshot("overview.png")).await;

    // Search by svix-id from the header opens its job.
    let (m1_svix, m1_job) = svix_id(&app, "user_console_m1").await;
    let search = b.find("header form.search input[name=q]").await;
    b.type_into(&search, &m1_svix).await;
    b.click(&b.find("header form.search button").await).await;
    assert_eq!(b.url().await, console.url(&format!("/jobs/{m1_job}")));
    assert_eq!(b.text_of("#job-svix-id").await, m1_svix);
    assert_eq!(b.text_of("#job-state").await, "dead");
    assert!(b.text_of("#history").await.contains("no_mallory"));
    assert!(
        b.text_of("#event-body")
            .await
            .contains("\"user_console_m1\"")
    );
    b.screenshot(&screenshot("job.png")).await;

    // A name that is a script is shown as text and runs nothing.
    b.goto(&console.url("/objects/user_console_xss")).await;
    assert!(
        b.text_of("#mirror-row")
            .await
            .contains(&format!("\"first_name\": \"{XSS}\"")),
        "{}",
        b.text_of("#mirror-row").await
    );
    assert_eq!(
        b.attribute("#events tbody tr", "data-verdict").await,
        "reflected"
    );
    assert_eq!(b.alert().await, None, "an alert opened");
    assert_eq!(b.execute("return document.scripts.length").await, 0);
    assert!(
        b.source()
            .await
            .contains("&lt;script&gt;alert(1)&lt;/script&gt;")
    );
    b.goto(&console.url("/jobs?q=user_console_xss")).await;
    assert_eq!(b.alert().await, None);
    assert_eq!(b.execute("return document.scripts.length").await, 0);
    b.goto(&console.url("/objects/user_console_xss")).await;
    b.screenshot(&screenshot("object.png")).await;

    // Fix the cause; replay one dead letter from its page: it becomes a mirror row.
    app.sql("ALTER TABLE clerk.users DROP CONSTRAINT no_mallory")
        .await;
    b.goto(&console.url(&format!("/jobs/{m1_svix}"))).await;
    b.click(&b.find("#replay").await).await;
    assert_eq!(
        b.url().await,
        console.url(&format!("/jobs/{m1_job}?done=replay")),
        "{}",
        b.source().await
    );
    assert!(b.text_of("#notice").await.starts_with("Replayed"));
    eventually(
        Duration::from_secs(20),
        "the replayed user's row",
        || async {
            (app.count("SELECT count(*) FROM clerk.users WHERE id = 'user_console_m1'")
                .await
                == 1)
                .then_some(())
        },
    )
    .await;

    // Replay every dead letter matching a filter: the count first, then the action.
    b.goto(&console.url("/jobs?state=dead&type=user.created"))
        .await;
    assert_eq!(b.find_all("#jobs tbody tr").await.len(), 2);
    b.click(&b.find("#replay-matching").await).await;
    assert_eq!(
        b.attribute("#confirm-count", "data-count").await,
        "2",
        "{}",
        b.source().await
    );
    b.screenshot(&screenshot("confirm.png")).await;
    b.click(&b.find("#confirm").await).await;
    assert!(b.text_of("#notice").await.contains("Replayed 2 job(s)"));
    let s = app.settle().await;
    assert_eq!((s.dead, s.done), (0, 5), "{s:?}");
    assert_eq!(
        app.count("SELECT count(*) FROM clerk.users WHERE first_name = 'Mallory'")
            .await,
        3
    );
    // Both actions are in the audit table, as the console's.
    let audit: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT actor, action, count FROM clerk_sync.operator_actions ORDER BY id")
            .fetch_all(app.pool())
            .await
            .unwrap();
    assert_eq!(
        audit,
        [
            ("console:loopback".into(), "replay".into(), 1),
            ("console:loopback".into(), "replay".into(), 2)
        ]
    );
    b.goto(&console.url(&format!("/jobs/{m1_job}"))).await;
    assert!(b.text_of("#job-state").await.starts_with("done"));
    assert!(b.text_of("#history").await.contains("replayed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_console_shows_no_action_and_refuses_forged_ones() {
    let app = app_with_dead_letters().await;
    let console = TestConsole::start_with(
        "127.0.0.1:0",
        app.pool().clone(),
        settings(Some(TOKEN), true),
    )
    .await;
    let bearer = format!("Bearer {TOKEN}");
    let auth = [("authorization", bearer.as_str())];
    let (svix, job) = svix_id(&app, "user_console_m1").await;

    let page = send("GET", &console.url(&format!("/jobs/{job}")), &auth, None).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains(&svix));
    assert!(page.body.contains("read-only"));
    assert!(!page.body.contains("/replay\""), "{}", page.body);
    assert!(!page.body.contains("/discard\""), "{}", page.body);
    let list = send("GET", &console.url("/jobs?state=dead"), &auth, None).await;
    assert_eq!(list.status, 200);
    assert!(!list.body.contains("/actions/"), "{}", list.body);

    // Forged: with the token (no CSRF needed for bearer requests) and with a session's
    // CSRF token; every action route is refused.
    for (method, path) in [
        ("POST", format!("/jobs/{job}/replay")),
        ("POST", format!("/jobs/{svix}/discard")),
        ("POST", "/actions/replay".to_owned()),
        ("POST", "/actions/discard".to_owned()),
        ("GET", "/actions/replay?state=dead".to_owned()),
    ] {
        let form = [("state", "dead"), ("expected", "3")];
        let answer = send(method, &console.url(&path), &auth, Some(&form)).await;
        assert_eq!(answer.status, 403, "{method} {path}: {answer:?}");
        assert!(answer.body.contains("read-only"), "{}", answer.body);
    }
    let login = send("GET", &console.url("/login"), &[], None).await;
    let csrf = login.csrf();
    let signed_in = send(
        "POST",
        &console.url("/login"),
        &[],
        Some(&[("csrf", &csrf), ("token", TOKEN), ("next", "/")]),
    )
    .await;
    assert_eq!(signed_in.status, 303, "{signed_in:?}");
    let cookie = signed_in
        .header("set-cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let answer = send(
        "POST",
        &console.url(&format!("/jobs/{job}/replay")),
        &[("cookie", &cookie)],
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(answer.status, 403, "{answer:?}");
    assert!(answer.body.contains("read-only"));

    assert_eq!(app.stats().await.dead, 3);
    assert_eq!(
        app.count("SELECT count(*) FROM clerk_sync.operator_actions")
            .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_loopback_a_token_is_required_and_posts_need_the_csrf_token() {
    // Refused at start: exit 2 with the setting named.
    let out = procs::cli_with(
        "postgres://nobody@127.0.0.1:1/none",
        &["console"],
        &[("CONSOLE_ADDR", "0.0.0.0:0")],
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("CONSOLE_TOKEN"), "{out:?}");
    let out = procs::cli_with(
        "postgres://nobody@127.0.0.1:1/none",
        &["console"],
        &[("CONSOLE_ADDR", "0.0.0.0:0"), ("CONSOLE_TOKEN", "short")],
    )
    .await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        !out.stderr.contains("short"),
        "the token was printed: {out:?}"
    );

    let app = app_with_dead_letters().await;
    let console = TestConsole::start_with(
        "0.0.0.0:0",
        app.pool().clone(),
        settings(Some(TOKEN), false),
    )
    .await;
    let (_, job) = svix_id(&app, "user_console_m1").await;

    // Strangers are sent to the login form; scripts may use the token as a bearer.
    let page = send("GET", &console.url("/jobs?state=dead"), &[], None).await;
    assert_eq!(page.status, 303);
    assert_eq!(
        page.header("location"),
        "/login?next=%2Fjobs%3Fstate%3Ddead"
    );
    let page = send(
        "POST",
        &console.url(&format!("/jobs/{job}/replay")),
        &[],
        None,
    )
    .await;
    assert_eq!(page.status, 401, "{page:?}");
    let wrong = send(
        "GET",
        &console.url("/"),
        &[("authorization", "Bearer console-test-token-wrong-guess")],
        None,
    )
    .await;
    assert_eq!(wrong.status, 303);
    let bearer = format!("Bearer {TOKEN}");
    let page = send(
        "GET",
        &console.url("/"),
        &[("authorization", &bearer)],
        None,
    )
    .await;
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(page.header("x-frame-options"), "DENY");

    // The login form: a wrong token is 401; the right one sets an HttpOnly, SameSite=Strict
    // session cookie.
    let login = send("GET", &console.url("/login"), &[], None).await;
    let csrf = login.csrf();
    let refused = send(
        "POST",
        &console.url("/login"),
        &[],
        Some(&[("csrf", &csrf), ("token", "console-test-token-wrong-guess")]),
    )
    .await;
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("Wrong token"));
    let signed_in = send(
        "POST",
        &console.url("/login"),
        &[],
        Some(&[
            ("csrf", &csrf),
            ("token", TOKEN),
            ("next", "//evil.example/"),
        ]),
    )
    .await;
    assert_eq!(signed_in.status, 303);
    assert_eq!(signed_in.header("location"), "/");
    let set_cookie = signed_in.header("set-cookie");
    assert!(set_cookie.contains("HttpOnly"), "{set_cookie}");
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let page = send(
        "GET",
        &console.url(&format!("/jobs/{job}")),
        &[("cookie", &cookie)],
        None,
    )
    .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.csrf(), csrf);

    // A POST without the CSRF token, with a wrong one, or from another origin: refused,
    // nothing done.
    let replay = console.url(&format!("/jobs/{job}/replay"));
    for (headers, form) in [
        (vec![("cookie", cookie.as_str())], vec![]),
        (vec![("cookie", cookie.as_str())], vec![("csrf", "0000")]),
        (
            vec![
                ("cookie", cookie.as_str()),
                ("origin", "http://evil.example"),
            ],
            vec![("csrf", csrf.as_str())],
        ),
    ] {
        let answer = send("POST", &replay, &headers, Some(&form)).await;
        assert_eq!(answer.status, 403, "{headers:?} {form:?}: {answer:?}");
    }
    assert_eq!(app.stats().await.dead, 3);

    // With it, the replay happens (and, the cause fixed, the row arrives).
    app.sql("ALTER TABLE clerk.users DROP CONSTRAINT no_mallory")
        .await;
    let answer = send(
        "POST",
        &replay,
        &[("cookie", &cookie)],
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(answer.status, 303, "{answer:?}");
    assert_eq!(
        answer.header("location"),
        format!("/jobs/{job}?done=replay")
    );
    // Once replayed it is no longer a dead letter: a second replay is a conflict.
    let again = send(
        "POST",
        &replay,
        &[("cookie", &cookie)],
        Some(&[("csrf", &csrf)]),
    )
    .await;
    assert_eq!(again.status, 409, "{again:?}");
    // Discard the other two.
    let discard = send(
        "POST",
        &console.url("/actions/discard"),
        &[("cookie", &cookie)],
        Some(&[("csrf", &csrf), ("state", "dead"), ("expected", "2")]),
    )
    .await;
    assert_eq!(discard.status, 303, "{discard:?}");
    let s = app.settle().await;
    assert_eq!((s.dead, s.done), (0, 5), "{s:?}");
    assert_eq!(
        app.count("SELECT count(*) FROM clerk.users WHERE first_name = 'Mallory'")
            .await,
        1
    );

    // Without a token, only loopback names are answered (no DNS rebinding).
    let local = TestConsole::start(app.pool().clone()).await;
    let page = send("GET", &local.url("/"), &[], None).await;
    assert_eq!(page.status, 200);
    let page = send("GET", &local.url("/"), &[("host", "evil.example")], None).await;
    assert_eq!(page.status, 403);
    assert!(page.body.contains("loopback"), "{}", page.body);
}

/// Stored events and their jobs as ingest and a worker leave them, at times relative to the
/// start of the current minute (`a`), each `(svix-id, received at, job status, done at,
/// outcome)`.
const ACTIVITY_SEED: &str = r#"
CREATE TEMP TABLE seed AS
WITH a AS (SELECT date_bin(interval '1 minute', now(), timestamptz 'epoch') AS a)
SELECT s.*, 'job_' || s.svix AS job_id FROM a, LATERAL (VALUES
    -- Minute a-50: two received and done, lags 200 and 400 ms.
    ('e1', a.a - interval '50 min' + interval '10 s', 'Done',
     a.a - interval '50 min' + interval '10.2 s', '{"Ok": "applied"}'::jsonb),
    ('e2', a.a - interval '50 min' + interval '20 s', 'Done',
     a.a - interval '50 min' + interval '20.4 s', '{"Ok": "applied"}'),
    -- Received in minute a-30, done a minute later (a retry): lag 60 s.
    ('e3', a.a - interval '30 min' + interval '5 s', 'Done',
     a.a - interval '29 min' + interval '5 s', '{"Ok": "applied"}'),
    -- Received in minute a-30, dead, then discarded in minute a-20: not done work.
    ('e4', a.a - interval '30 min' + interval '6 s', 'Done',
     a.a - interval '20 min', '{"Ok": "discarded"}'),
    -- Received in minute a-10, dead.
    ('e5', a.a - interval '10 min', 'Killed', a.a - interval '10 min' + interval '1 s',
     '{"Err": "deadlock detected"}'),
    -- Received and done just now (the open minute): lag 0.
    ('e6', now(), 'Done', now(), '{"Ok": "applied"}')
) AS s(svix, received_at, status, done_at, result);
INSERT INTO clerk_sync.webhook_events (svix_id, received_at, headers, body, event_type, job_id)
SELECT svix, received_at, '{}', '{}', 'user.updated', job_id FROM seed;
INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority,
                         done_at, last_result)
SELECT job_id, 'clerk-sync:event', '\x7b7d', status, 1, 10, received_at, 0, done_at, result
FROM seed;
"#;

fn by_start(buckets: &[Bucket]) -> std::collections::BTreeMap<i64, &Bucket> {
    buckets.iter().map(|b| (b.start.timestamp(), b)).collect()
}

/// The charts' figures from rollups equal those from the raw rows, bucket by bucket.
fn assert_same_activity(raw: &[Bucket], rolled: &[Bucket]) {
    let (raw, rolled) = (by_start(raw), by_start(rolled));
    let mut common = 0;
    for (start, r) in &raw {
        let Some(o) = rolled.get(start) else { continue };
        common += 1;
        assert_eq!((r.received, r.done), (o.received, o.done), "{r:?} {o:?}");
        assert_eq!(r.lag_max_ms, o.lag_max_ms, "{r:?} {o:?}");
        match (r.lag_avg_ms, o.lag_avg_ms) {
            (Some(a), Some(b)) => assert!((a - b).abs() < 1e-6, "{r:?} {o:?}"),
            (a, b) => assert_eq!(a, b, "{r:?} {o:?}"),
        }
    }
    assert!(common >= raw.len() - 1, "{common} of {}", raw.len());
}

/// One rollup pass with a grace of `grace_secs`: the minutes it wrote, and how far it got.
async fn roll_up(db: &TestDb, grace_secs: u64) -> (u64, chrono::DateTime<chrono::Utc>) {
    match jobs::roll_up(&db.pool, Duration::from_secs(grace_secs))
        .await
        .unwrap()
    {
        Rollup::Rolled { minutes, through } => (minutes, through),
        Rollup::Busy => panic!("busy: no other session rolls up here"),
    }
}

async fn rolled_minutes(db: &TestDb) -> Vec<(i64, i64, i64, f64, Option<f64>)> {
    sqlx::query_as(
        "SELECT extract(epoch FROM minute)::int8, received, done, lag_sum_ms, lag_max_ms \
         FROM clerk_sync.activity_minutes ORDER BY minute",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rollup_writes_each_closed_minute_once_and_the_charts_read_the_same() {
    let db = TestDb::new().await;
    sqlx::raw_sql(ACTIVITY_SEED)
        .execute(&db.pool)
        .await
        .unwrap();
    let minute_of = |svix: &str| {
        format!(
            "SELECT extract(epoch FROM date_bin(interval '1 minute', received_at, \
             timestamptz 'epoch'))::int8 FROM clerk_sync.webhook_events WHERE svix_id = '{svix}'"
        )
    };
    let (m1, m3, m5) = (
        db.count(&minute_of("e1")).await,
        db.count(&minute_of("e3")).await,
        db.count(&minute_of("e5")).await,
    );

    // Nothing rolled up yet: the charts are the raw rows.
    let raw = ops::overview(&db.pool).await.unwrap();
    let hour = by_start(&raw.last_hour);
    assert_eq!(raw.last_hour.iter().map(|b| b.received).sum::<i64>(), 6);
    assert_eq!(
        raw.last_hour.iter().map(|b| b.done).sum::<i64>(),
        4,
        "discarded aside"
    );
    assert_eq!(raw.last_day.iter().map(|b| b.received).sum::<i64>(), 6);
    assert_eq!(raw.last_day.iter().map(|b| b.done).sum::<i64>(), 4);
    let b1 = hour[&m1];
    assert_eq!((b1.received, b1.done), (2, 2), "{b1:?}");
    assert!((b1.lag_avg_ms.unwrap() - 300.0).abs() < 1e-6, "{b1:?}");
    assert!((b1.lag_max_ms.unwrap() - 400.0).abs() < 1e-6, "{b1:?}");
    assert_eq!(hour[&(m3 + 60)].lag_max_ms, Some(60_000.0));

    // A 15-minute grace rolls up the minutes up to a quarter of an hour ago, a day back,
    // zeros included; e5's minute (10 minutes ago) stays open.
    let (minutes, through) = roll_up(&db, 900).await;
    let rows = rolled_minutes(&db).await;
    assert_eq!(rows.len() as u64, minutes);
    assert!(minutes >= 24 * 60, "{minutes}");
    let last = rows.last().unwrap().0;
    assert_eq!(last + 60, through.timestamp());
    assert!(last < m5 && through.timestamp() <= chrono::Utc::now().timestamp() - 900);
    let row = |m: i64| rows.iter().find(|r| r.0 == m).copied().unwrap();
    let r1 = row(m1);
    assert_eq!((r1.1, r1.2), (2, 2));
    assert!(
        (r1.3 - 600.0).abs() < 1e-6 && (r1.4.unwrap() - 400.0).abs() < 1e-6,
        "{r1:?}"
    );
    assert_eq!(row(m3).1, 2, "e3 and e4 received");
    assert_eq!((row(m3 + 60).2, row(m3 + 60).4), (1, Some(60_000.0)));
    assert_eq!(row(m3 + 600).2, 0, "a discard is not done work");
    assert_eq!(rows.iter().map(|r| r.1).sum::<i64>(), 4);

    // Rolled-up minutes plus the open tail read as the raw rows did.
    let mixed = ops::overview(&db.pool).await.unwrap();
    assert_same_activity(&raw.last_hour, &mixed.last_hour);
    assert_same_activity(&raw.last_day, &mixed.last_day);

    // Again: nothing written twice, nothing changed (a minute may have closed meanwhile).
    let (minutes, _) = roll_up(&db, 900).await;
    assert!(minutes <= 1, "{minutes}");
    assert_eq!(rolled_minutes(&db).await[..rows.len()], rows[..]);

    // A short grace closes the rest, up to the minute before last.
    let (_, through) = roll_up(&db, 1).await;
    let rows = rolled_minutes(&db).await;
    assert_eq!(rows.iter().find(|r| r.0 == m5).unwrap().1, 1);
    // All but e6, unless its minute has closed since.
    let received_before = db
        .count(&format!(
            "SELECT count(*) FROM clerk_sync.webhook_events \
             WHERE received_at < to_timestamp({})",
            through.timestamp()
        ))
        .await;
    assert!(received_before >= 5, "{received_before}");
    assert_eq!(rows.iter().map(|r| r.1).sum::<i64>(), received_before);
    let rolled = ops::overview(&db.pool).await.unwrap();
    assert_same_activity(&raw.last_hour, &rolled.last_hour);
    assert_same_activity(&raw.last_day, &rolled.last_day);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_cap_done_jobs_and_events_are_estimated_and_marked() {
    let db = TestDb::new().await;
    sqlx::raw_sql(ACTIVITY_SEED)
        .execute(&db.pool)
        .await
        .unwrap();
    // A second discarded job: the planner never estimates fewer than one row, so an
    // estimate of one is taken for none.
    sqlx::raw_sql(
        r#"INSERT INTO clerk_sync.webhook_events (svix_id, headers, body, job_id)
           VALUES ('e7', '{}', '{}', 'job_e7');
           INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at,
                                    priority, done_at, last_result)
           VALUES ('job_e7', 'clerk-sync:event', '\x7b7d', 'Done', 10, 10, now(), 0, now(),
                   '{"Ok": "discarded"}')"#,
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let exact = Stats::read(&db.pool).await.unwrap();
    assert_eq!(
        (
            exact.done,
            exact.discarded,
            exact.dead,
            exact.events_received
        ),
        (6, 2, 1, 7),
        "{exact:?}"
    );
    assert!(!exact.estimated.any());
    assert_eq!(Stats::read_capped(&db.pool, 100).await.unwrap(), exact);

    sqlx::query("ANALYZE apalis.jobs, clerk_sync.webhook_events")
        .execute(&db.pool)
        .await
        .unwrap();
    let capped = Stats::read_capped(&db.pool, 2).await.unwrap();
    assert!(
        capped.estimated.done && capped.estimated.events_received,
        "{capped:?}"
    );
    // Fresh statistics of a small table are exact (the outcome's by the migration's
    // extended statistics); the jobs that are not done are counted.
    assert_eq!(
        (
            capped.done,
            capped.discarded,
            capped.skipped,
            capped.events_received
        ),
        (6, 2, 0, 7),
        "{capped:?}"
    );
    assert_eq!((capped.dead, capped.pending), (exact.dead, exact.pending));
}
