//! Metrics and logs of the real binaries: what an on-call engineer reads.

use std::time::Duration;

use clerk_sync_tests::{
    Signer, TestApp,
    http::{client, request},
    procs::{cli, free_port, log_path, signal, spawn_ingest, spawn_worker_with, wait_for_port},
    signing::{OTHER_SECRET, SECRET},
    worker::eventually,
};
use serde_json::Value;

async fn get(url: &str) -> String {
    let a = request(&client(), "GET", url, &[], vec![]).await.unwrap();
    assert_eq!(a.status, 200, "{url}: {a:?}");
    a.body
}

fn json_lines(label: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(log_path(label)).unwrap();
    text.lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_services_expose_metrics_and_log_one_json_line_per_outcome_without_secrets() {
    let app = TestApp::builder().without_worker().start().await;
    app.expect_dead(1);
    let db = &app.db;
    let (ingest_port, ingest_metrics_port, worker_port) = (free_port(), free_port(), free_port());
    let (ingest_log, worker_log) = (format!("{}-ingest", db.name), format!("{}-worker", db.name));
    // Debug level everywhere: not even debug logs may show a secret.
    let ingest_metrics_addr = format!("127.0.0.1:{ingest_metrics_port}");
    let env = [
        ("RUST_LOG", "debug"),
        ("METRICS_ADDR", ingest_metrics_addr.as_str()),
    ];
    let mut ingest = spawn_ingest(&db.url, ingest_port, &ingest_log, &env);
    let metrics_addr = format!("127.0.0.1:{worker_port}");
    let mut worker = spawn_worker_with(
        &db.url,
        &worker_log,
        &[("METRICS_ADDR", &metrics_addr), ("RUST_LOG", "debug")],
    );
    wait_for_port(ingest_port).await;
    wait_for_port(ingest_metrics_port).await;
    wait_for_port(worker_port).await;

    let url = format!("http://127.0.0.1:{ingest_port}/webhooks/clerk");
    let sent = cli(&db.url, &["send-test-event", "user.created", "--url", &url]).await;
    assert_eq!(sent.code, 0, "{sent:?}");
    let wrong = Signer::new(OTHER_SECRET).sign(b"{}");
    let a = request(
        &client(),
        "POST",
        &url,
        &wrong.headers(),
        wrong.body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 401);
    let junk = Signer::default().sign(b"not an event");
    request(&client(), "POST", &url, &junk.headers(), junk.body.clone())
        .await
        .unwrap();
    eventually(Duration::from_secs(20), "both jobs to finish", || async {
        let stats = app.stats().await;
        (stats.done + stats.dead == 2).then_some(())
    })
    .await;

    // Metrics only on METRICS_ADDR: the public webhook port does not publish counts.
    let public = request(
        &client(),
        "GET",
        &format!("http://127.0.0.1:{ingest_port}/metrics"),
        &[],
        Vec::new(),
    )
    .await
    .unwrap();
    assert_eq!(public.status, 404, "{public:?}");
    let ingest_metrics = get(&format!("http://{ingest_metrics_addr}/metrics")).await;
    for family in [
        r#"clerk_sync_ingest_requests_total{status="202"} 2"#,
        r#"clerk_sync_ingest_requests_total{status="401"} 1"#,
        r#"clerk_sync_ingest_refused_total{reason="bad_signature"} 1"#,
        r#"clerk_sync_ingest_events_total{outcome="stored",event_type="user.created"} 1"#,
        "clerk_sync_ingest_request_duration_seconds_bucket{le=",
        "clerk_sync_ingest_request_duration_seconds_count 3",
        // Two deliveries stored, one at a time (each answered before the next was sent).
        "clerk_sync_ingest_store_batch_deliveries_sum 2",
        "clerk_sync_ingest_store_batch_deliveries_count 2",
        "clerk_sync_ingest_store_duration_seconds_count 2",
    ] {
        assert!(
            ingest_metrics.contains(family),
            "missing {family} in:\n{ingest_metrics}"
        );
    }
    let worker_metrics = get(&format!("http://{metrics_addr}/metrics")).await;
    for family in [
        r#"clerk_sync_worker_jobs_total{outcome="applied",event_type="user.created"} 1"#,
        r#"clerk_sync_worker_failed_attempts_total{kind="permanent"} 1"#,
        r#"clerk_sync_worker_dead_letters_total{kind="permanent"} 1"#,
        r#"clerk_sync_worker_apply_transactions_total{result="committed"} 1"#,
        r#"clerk_sync_queue_jobs{state="dead"} 1"#,
        r#"clerk_sync_queue_jobs{state="done"} 1"#,
        r#"clerk_sync_queue_jobs{state="pending"} 0"#,
        "clerk_sync_queue_oldest_pending_age_seconds 0",
        "clerk_sync_events_received 2",
        "clerk_sync_worker_sync_lag_seconds_bucket{le=",
        "clerk_sync_worker_job_duration_seconds_count 1",
    ] {
        assert!(
            worker_metrics.contains(family),
            "missing {family} in:\n{worker_metrics}"
        );
    }
    assert_eq!(
        get(&format!("http://{metrics_addr}/healthz")).await.trim(),
        "ok"
    );

    signal(&ingest, "TERM");
    signal(&worker, "TERM");
    assert_eq!(ingest.wait().await.unwrap().code(), Some(0));
    assert_eq!(worker.wait().await.unwrap().code(), Some(0));

    let svix_id = sent
        .stdout
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("svix-id: ")
        .to_owned();
    let ingest_lines = json_lines(&ingest_log);
    let accepted = ingest_lines
        .iter()
        .find(|l| l["message"] == "delivery accepted" && l["svix.id"] == svix_id.as_str())
        .unwrap_or_else(|| panic!("no accepted line for {svix_id}"));
    assert_eq!(accepted["event.type"], "user.created");
    assert!(accepted["duration_ms"].is_u64(), "{accepted}");
    let worker_lines = json_lines(&worker_log);
    let done = worker_lines
        .iter()
        .find(|l| l["message"] == "event done" && l["svix.id"] == svix_id.as_str())
        .unwrap_or_else(|| panic!("no outcome line for {svix_id}"));
    assert_eq!(done["event.type"], "user.created");
    assert_eq!(done["outcome"], "applied");
    assert!(
        done["object.id"].as_str().unwrap().starts_with("user_"),
        "{done}"
    );
    assert!(done["duration_ms"].is_u64(), "{done}");
    let dead = worker_lines
        .iter()
        .find(|l| l["outcome"] == "dead")
        .expect("a dead-letter line");
    assert!(
        dead["message"]
            .as_str()
            .unwrap()
            .contains("body is not JSON"),
        "{dead}"
    );

    // The secrets never appear: not the whsec_ value, not its key.
    let key = SECRET.trim_start_matches("whsec_");
    for label in [&ingest_log, &worker_log] {
        let text = std::fs::read_to_string(log_path(label)).unwrap();
        assert!(!text.contains(key), "{label} shows the webhook secret");
        assert!(!text.contains(OTHER_SECRET.trim_start_matches("whsec_")));
    }
}
