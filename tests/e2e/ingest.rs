use std::time::{Duration, Instant};

use clerk_sync_core::{
    jobs::{self, JobState},
    samples,
};
use clerk_sync_tests::{
    TestApp, TestDb, TestIngest,
    http::IngestOptions,
    procs::{exits_zero, free_port, signal, spawn_ingest, wait_for_port},
    signing::{Delivery, OTHER_SECRET, SECRET, Signer, now_secs},
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The head of a raw `POST /webhooks/clerk` with a delivery's headers and `framing`
/// (the body's length or transfer-encoding line(s)).
fn request_head(addr: &str, d: &Delivery, framing: &str) -> String {
    let mut head = format!("POST /webhooks/clerk HTTP/1.1\r\nhost: {addr}\r\n{framing}\r\n");
    for (k, v) in d.headers() {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head + "\r\n"
}

fn sample(name: &str) -> Vec<u8> {
    samples::get(name).unwrap().as_bytes().to_vec()
}

async fn stored(db: &TestDb) -> (i64, i64) {
    (
        db.count("SELECT count(*) FROM clerk_sync.webhook_events")
            .await,
        db.count("SELECT count(*) FROM apalis.jobs").await,
    )
}

#[tokio::test]
async fn valid_delivery_stores_raw_event_and_one_job_before_answering() {
    let app = TestApp::builder().without_worker().start().await;
    let (db, ingest) = (&app.db, &app.ingest);
    let delivery = ingest.signer.sign(&sample("user.created"));
    let answer = ingest.deliver(&delivery).await;
    assert_eq!(answer.status, 202, "{answer:?}");

    let (body, headers, event_type, object_id, job_id): (Vec<u8>, serde_json::Value, String, String, String) =
        sqlx::query_as(
            "SELECT body, headers, event_type, object_id, job_id FROM clerk_sync.webhook_events WHERE svix_id = $1",
        )
        .bind(&delivery.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(body, delivery.body, "raw bytes kept exactly");
    assert_eq!(headers["svix-signature"], delivery.signature.as_str());
    assert_eq!(
        headers["svix-timestamp"],
        delivery.timestamp.to_string().as_str()
    );
    assert_eq!(event_type, "user.created");
    assert_eq!(object_id, "user_29w83sxmDNGwOuEthce5gg56FcC");
    let job = jobs::find(&db.pool, Some(&[job_id])).await.unwrap();
    assert_eq!(job.len(), 1, "the event's job is on our queue");
    assert_eq!(job[0].state, JobState::Pending);
    assert_eq!(stored(db).await, (1, 1));

    // The stored headers and body verify again later (replay, audit).
    let mut map = http::HeaderMap::new();
    for (k, v) in headers.as_object().unwrap() {
        map.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.as_str().unwrap().parse().unwrap(),
        );
    }
    svix::webhooks::Webhook::new(SECRET)
        .unwrap()
        .verify_ignoring_timestamp(&body, &map)
        .unwrap();
}

#[tokio::test]
async fn duplicate_svix_id_is_a_2xx_no_op() {
    let app = TestApp::builder().without_worker().start().await;
    let (db, ingest) = (&app.db, &app.ingest);
    let delivery = ingest.signer.sign(&sample("user.updated"));
    assert_eq!(ingest.deliver(&delivery).await.status, 202);
    let again = ingest.deliver(&delivery).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert!(again.body.contains("duplicate"), "{again:?}");
    assert_eq!(stored(db).await, (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_deliveries_of_one_svix_id_store_one_event_and_one_job() {
    let app = TestApp::builder().without_worker().start().await;
    let (db, ingest) = (&app.db, &app.ingest);
    let delivery = ingest.signer.sign(&sample("organization.created"));
    let answers = futures::future::join_all((0..100).map(|_| {
        let delivery = delivery.clone();
        async move { ingest.deliver(&delivery).await }
    }))
    .await;
    let new = answers.iter().filter(|a| a.status == 202).count();
    let dup = answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(
        (new, dup),
        (1, 99),
        "{:?}",
        answers.iter().find(|a| a.status >= 300)
    );
    assert_eq!(stored(db).await, (1, 1));
}

/// Deliveries that arrive together are stored together (group commit), each answered for
/// itself: a duplicate among them, of a neighbour or of an event stored before, is a 2xx
/// no-op and fails nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_deliveries_with_duplicates_are_each_stored_once_and_answered_right() {
    let app = TestApp::builder().without_worker().start().await;
    let (db, ingest) = (&app.db, &app.ingest);
    let body = sample("user.created");
    let earlier = ingest.signer.sign(&body);
    assert_eq!(ingest.deliver(&earlier).await.status, 202);
    let distinct: Vec<Delivery> = (0..150).map(|_| ingest.signer.sign(&body)).collect();
    // Every tenth delivery twice more, and the earlier one three times.
    let mut all: Vec<Delivery> = distinct.clone();
    for d in distinct.iter().step_by(10) {
        all.push(d.clone());
        all.push(d.clone());
    }
    all.extend(std::iter::repeat_n(earlier.clone(), 3));
    let answers = futures::future::join_all(all.iter().map(|d| ingest.deliver(d))).await;

    for d in &distinct {
        let statuses: Vec<u16> = all
            .iter()
            .zip(&answers)
            .filter(|(a, _)| a.id == d.id)
            .map(|(_, answer)| answer.status)
            .collect();
        assert_eq!(
            statuses.iter().filter(|&&s| s == 202).count(),
            1,
            "{statuses:?}"
        );
        assert!(
            statuses.iter().all(|&s| s == 202 || s == 200),
            "{statuses:?}"
        );
    }
    let earlier_again = all.iter().zip(&answers).filter(|(d, _)| d.id == earlier.id);
    for (_, answer) in earlier_again {
        assert_eq!(answer.status, 200, "{answer:?}");
        assert!(answer.body.contains("duplicate"), "{answer:?}");
    }
    assert_eq!(stored(db).await, (151, 151));
    // Each event was written with its job by one statement (same transaction), and
    // deliveries that arrived while a commit was in flight shared the next one.
    assert_eq!(
        db.count(
            "SELECT count(*) FROM clerk_sync.webhook_events e JOIN apalis.jobs j ON j.id = e.job_id \
             WHERE e.xmin::text = j.xmin::text"
        )
        .await,
        151
    );
    let commits = db
        .count("SELECT count(DISTINCT xmin::text) FROM clerk_sync.webhook_events")
        .await;
    assert!(
        commits < 151,
        "{commits} commits for 151 events: no group commit"
    );
}

/// A statement that fails fails every delivery stored with it: all are answered 503 and
/// none is stored; deliveries answered 2xx are all stored; the 503s store on redelivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_batch_is_503_for_all_its_deliveries_and_nothing_acknowledged_is_lost() {
    let app = TestApp::builder().without_worker().start().await;
    let (db, ingest) = (&app.db, &app.ingest);
    let body = sample("user.updated");
    let deliveries: Vec<Delivery> = (0..120).map(|_| ingest.signer.sign(&body)).collect();
    let poison = &deliveries[60];
    app.sql(&format!(
        r#"
        CREATE FUNCTION public.refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.svix_id = '{}' THEN RAISE EXCEPTION 'injected failure'; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_one BEFORE INSERT ON clerk_sync.webhook_events
        FOR EACH ROW EXECUTE FUNCTION public.refuse_one();
        "#,
        poison.id
    ))
    .await;
    let answers = futures::future::join_all(deliveries.iter().map(|d| ingest.deliver(d))).await;
    let mut refused = Vec::new();
    for (d, answer) in deliveries.iter().zip(&answers) {
        let rows = db
            .count(&format!(
                "SELECT count(*) FROM clerk_sync.webhook_events WHERE svix_id = '{}'",
                d.id
            ))
            .await;
        match answer.status {
            202 => assert_eq!(rows, 1, "acknowledged but not stored: {answer:?}"),
            503 => {
                assert_eq!(rows, 0, "answered 503 but stored: {answer:?}");
                refused.push(d);
            }
            _ => panic!("{answer:?}"),
        }
    }
    assert!(refused.iter().any(|d| d.id == poison.id));
    let (events, jobs) = stored(db).await;
    assert_eq!(
        (events, jobs),
        (120 - refused.len() as i64, 120 - refused.len() as i64)
    );

    app.sql("DROP TRIGGER refuse_one ON clerk_sync.webhook_events")
        .await;
    for d in refused {
        assert_eq!(ingest.deliver(d).await.status, 202);
    }
    assert_eq!(stored(db).await, (120, 120));
}

#[tokio::test]
async fn signature_from_another_secret_is_401_and_nothing_is_stored() {
    let app = TestApp::builder().without_worker().start().await;
    let (db, ingest) = (&app.db, &app.ingest);
    let d = Signer::new(OTHER_SECRET).sign(&sample("user.created"));
    let answer = ingest.deliver(&d).await;
    assert_eq!(answer.status, 401, "{answer:?}");
    assert!(
        answer.body.contains("no configured secret matches"),
        "{answer:?}"
    );
    assert_eq!(stored(db).await, (0, 0));
}

#[tokio::test]
async fn tampered_body_is_401() {
    let app = TestApp::builder().without_worker().start().await;
    let (db, ingest) = (&app.db, &app.ingest);
    let mut d = ingest.signer.sign(&sample("user.created"));
    let text = String::from_utf8(d.body.clone())
        .unwrap()
        .replace("Example", "Mallory");
    d.body = text.into_bytes();
    assert_eq!(ingest.deliver(&d).await.status, 401);
    assert_eq!(stored(db).await, (0, 0));
}

#[tokio::test]
async fn stale_and_future_timestamps_are_401() {
    let app = TestApp::builder().without_worker().start().await;
    let (db, ingest) = (&app.db, &app.ingest);
    let body = sample("user.created");
    for (offset, reason) in [
        (-301, "in the past"),
        (-3600, "in the past"),
        (301, "in the future"),
    ] {
        let d = ingest
            .signer
            .sign_at("msg_ts_check", now_secs() + offset, &body);
        let answer = ingest.deliver(&d).await;
        assert_eq!(answer.status, 401, "offset {offset}: {answer:?}");
        assert!(answer.body.contains(reason), "{answer:?}");
    }
    // Inside the window is fine.
    let d = ingest.signer.sign_at("msg_ts_ok", now_secs() - 240, &body);
    assert_eq!(ingest.deliver(&d).await.status, 202);
    assert_eq!(stored(db).await, (1, 1));
}

#[tokio::test]
async fn missing_or_malformed_svix_headers_are_400() {
    let app = TestApp::builder().without_worker().start().await;
    let (db, ingest) = (&app.db, &app.ingest);
    let d = ingest.signer.sign(&sample("user.created"));
    for missing in ["svix-id", "svix-timestamp", "svix-signature"] {
        let headers: Vec<_> = d
            .headers()
            .into_iter()
            .filter(|(k, _)| k != missing)
            .collect();
        let answer = ingest.post_raw(&headers, d.body.clone()).await;
        assert_eq!(answer.status, 400, "without {missing}: {answer:?}");
        assert!(answer.body.contains(missing), "{answer:?}");
    }
    let malformed = [
        ("svix-id", "has spaces in it".to_owned()),
        ("svix-id", "x".repeat(256)),
        ("svix-id", String::new()),
        ("svix-timestamp", "yesterday".to_owned()),
        ("svix-timestamp", "-5".to_owned()),
        ("svix-timestamp", "1e9".to_owned()),
        ("svix-signature", "garbage".to_owned()),
        ("svix-signature", "v2,abc".to_owned()),
        ("svix-signature", "v1,".to_owned()),
    ];
    for (name, value) in malformed {
        let headers: Vec<_> = d
            .headers()
            .into_iter()
            .map(|(k, v)| {
                if k == name {
                    (k, value.clone())
                } else {
                    (k, v)
                }
            })
            .collect();
        let answer = ingest.post_raw(&headers, d.body.clone()).await;
        assert_eq!(answer.status, 400, "{name}: {value:?}: {answer:?}");
        assert!(answer.body.contains(name), "{answer:?}");
    }
    assert_eq!(stored(db).await, (0, 0));
}

#[tokio::test]
async fn body_over_the_limit_is_413_declared_or_chunked() {
    let app = TestApp::builder()
        .without_worker()
        .ingest(IngestOptions {
            max_body_bytes: 4096,
            ..IngestOptions::default()
        })
        .start()
        .await;
    let (db, ingest) = (&app.db, &app.ingest);
    let big = format!(
        r#"{{"type":"user.updated","data":{{"pad":"{}"}}}}"#,
        "x".repeat(5000)
    );
    let answer = ingest.post(big.as_bytes()).await;
    assert_eq!(answer.status, 413, "{answer:?}");
    assert!(answer.body.contains("4096"), "{answer:?}");

    // Chunked, with no declared length: refused once the limit is passed, while the client
    // is still sending (the server does not wait for, or buffer, the whole body).
    let d = ingest.signer.sign(big.as_bytes());
    let mut stream = tokio::net::TcpStream::connect(ingest.addr).await.unwrap();
    let head = request_head(&ingest.addr.to_string(), &d, "transfer-encoding: chunked");
    stream.write_all(head.as_bytes()).await.unwrap();
    for chunk in d.body.chunks(1000) {
        let _ = stream
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await;
        let _ = stream.write_all(chunk).await;
        let _ = stream.write_all(b"\r\n").await;
    }
    // Never send the terminating chunk: a server that buffered the whole body would hang.
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("answered before the body ended")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert_eq!(stored(db).await, (0, 0));
}

#[tokio::test]
async fn oversized_headers_are_431() {
    let app = TestApp::builder().without_worker().start().await;
    let (db, ingest) = (&app.db, &app.ingest);
    let d = ingest.signer.sign(&sample("user.created"));
    let mut headers = d.headers();
    headers.push(("x-padding".into(), "p".repeat(20_000)));
    let answer = ingest.post_raw(&headers, d.body.clone()).await;
    assert_eq!(answer.status, 431, "{answer:?}");
    assert_eq!(stored(db).await, (0, 0));
}

#[tokio::test]
async fn unknown_event_types_are_accepted_and_stored() {
    let app = TestApp::builder().without_worker().start().await;
    let (db, ingest) = (&app.db, &app.ingest);
    assert_eq!(ingest.post(&sample("session.created")).await.status, 202);
    let t: String = sqlx::query_scalar("SELECT event_type FROM clerk_sync.webhook_events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(t, "session.created");
    assert_eq!(stored(db).await, (1, 1));
}

#[tokio::test]
async fn signed_body_that_is_not_a_clerk_event_is_kept_with_its_job() {
    // The contract allows 2xx (kept, visible as a failed job) or 4xx; we keep it: it is
    // authentic, and the worker dead-letters it with the reason.
    let app = TestApp::builder().without_worker().start().await;
    let (db, ingest) = (&app.db, &app.ingest);
    for body in [
        &b"this is not json"[..],
        b"[1,2,3]",
        br#"{"type":"user.created"}"#,
    ] {
        let answer = ingest.post(body).await;
        assert_eq!(answer.status, 202, "{answer:?}");
    }
    assert_eq!(stored(db).await, (3, 3));
    assert_eq!(
        db.count("SELECT count(*) FROM clerk_sync.webhook_events WHERE event_type IS NULL")
            .await,
        2
    );
    // Not UTF-8 cannot carry a Svix signature at all: refused, with the reason.
    let mut d = ingest.signer.sign(b"{}");
    d.body = vec![0xff, 0xfe, 0x7b];
    let answer = ingest.deliver(&d).await;
    assert_eq!(answer.status, 400, "{answer:?}");
    assert!(answer.body.contains("UTF-8"), "{answer:?}");
}

#[tokio::test]
async fn rotation_accepts_any_configured_secret_and_any_listed_signature() {
    let app = TestApp::builder()
        .without_worker()
        .ingest(IngestOptions {
            secrets: format!("{SECRET}, {OTHER_SECRET}"),
            ..IngestOptions::default()
        })
        .start()
        .await;
    let (db, ingest) = (&app.db, &app.ingest);
    let body = sample("user.updated");
    assert_eq!(
        ingest
            .deliver(&Signer::new(SECRET).sign(&body))
            .await
            .status,
        202
    );
    assert_eq!(
        ingest
            .deliver(&Signer::new(OTHER_SECRET).sign(&body))
            .await
            .status,
        202
    );
    // Svix sends one signature per active secret: one match suffices.
    let unknown = Signer::new("whsec_c2VjcmV0LXRoYXQtd2UtZG8tbm90LWtub3c=");
    let mut d = unknown.sign(&body);
    let good = Signer::new(OTHER_SECRET).sign_at(&d.id, d.timestamp, &body);
    d.signature = format!("{} {}", d.signature, good.signature);
    assert_eq!(ingest.deliver(&d).await.status, 202);
    assert_eq!(stored(db).await, (3, 3));
}

#[tokio::test]
async fn failure_between_the_two_inserts_leaves_neither() {
    // A real failure inside the transaction, after the event insert: the job insert fails.
    let app = TestApp::builder()
        .without_worker()
        .setup(
            r#"
            CREATE FUNCTION public.refuse_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'injected failure'; END $$;
            CREATE TRIGGER refuse_jobs BEFORE INSERT ON apalis.jobs
            FOR EACH ROW EXECUTE FUNCTION public.refuse_jobs();
            "#,
        )
        .start()
        .await;
    let (db, ingest) = (&app.db, &app.ingest);
    let d = ingest.signer.sign(&sample("user.created"));
    let answer = ingest.deliver(&d).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(
        !answer.body.contains("injected"),
        "5xx bodies leak no internals: {answer:?}"
    );
    assert_eq!(stored(db).await, (0, 0));

    // Svix retries the same delivery; once the cause is gone it is stored exactly once.
    sqlx::query("DROP TRIGGER refuse_jobs ON apalis.jobs")
        .execute(&db.pool)
        .await
        .unwrap();
    assert_eq!(ingest.deliver(&d).await.status, 202);
    assert_eq!(stored(db).await, (1, 1));
}

#[tokio::test]
async fn unreachable_database_gives_503_within_seconds_and_readyz_says_so() {
    // A port nothing listens on: connection refused, as when the database is down.
    let pool = clerk_sync_core::db::connect(
        "postgres://postgres@127.0.0.1:1/none",
        "test",
        4,
        Default::default(),
    )
    .await
    .unwrap();
    let ingest = TestIngest::start(pool).await;
    let started = Instant::now();
    let answer = ingest.post(&sample("user.created")).await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(ingest.get("/readyz").await.status, 503);
    assert_eq!(ingest.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = TestApp::builder().without_worker().start().await;
    let ingest = &app.ingest;
    assert_eq!(ingest.get("/healthz").await.status, 200);
    assert_eq!(ingest.get_metrics("/healthz").await.status, 200);
    assert_eq!(ingest.get("/readyz").await.status, 200);
    assert_eq!(ingest.get_metrics("/readyz").await.status, 200);
    ingest.post(&sample("user.created")).await;
    ingest
        .deliver(&Signer::new(OTHER_SECRET).sign(&sample("user.created")))
        .await;
    // Counts are published on METRICS_ADDR only, never on the public webhook port.
    assert_eq!(ingest.get("/metrics").await.status, 404);
    let metrics = ingest.get_metrics("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("clerk_sync_ingest_requests_total{status=\"202\"}"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("clerk_sync_ingest_refused_total{reason=\"bad_signature\"}"),
        "{}",
        metrics.body
    );
    assert!(
        metrics
            .body
            .contains("clerk_sync_ingest_request_duration_seconds_bucket"),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn sigterm_finishes_the_in_flight_request_then_exits_zero() {
    let app = TestApp::builder().without_worker().start().await;
    let db = &app.db;
    let port = free_port();
    let mut child = spawn_ingest(app.url(), port, &format!("{}-sigterm", db.name), &[]);
    wait_for_port(port).await;
    let addr = format!("127.0.0.1:{port}");
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    // Start a request: headers and half the body.
    let d = Signer::default().sign(&sample("user.created"));
    let framing = format!("content-length: {}\r\nconnection: close", d.body.len());
    let head = request_head(&addr, &d, &framing);
    let half = d.body.len() / 2;
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&d.body[..half]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    signal(&child, "TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are refused while the in-flight one is served.
    assert!(
        tokio::net::TcpStream::connect(&addr).await.is_err(),
        "still accepting after SIGTERM"
    );

    stream.write_all(&d.body[half..]).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    exits_zero(
        &mut child,
        Duration::from_secs(10),
        "ingest, after draining,",
    )
    .await;
    assert_eq!(stored(db).await, (1, 1));
}
