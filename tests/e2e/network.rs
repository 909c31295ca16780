//! Network faults between the services and PostgreSQL, through the fault-injecting proxy
//! (`tests/proxy.rs`): a black hole (packets dropped, no reset), every connection reset, and
//! 200 ms of latency each way. Under each: every request is answered within its timeout
//! (503 within 5 s while the database is unreachable), nothing acknowledged is missing, the
//! worker resumes without a restart, no job stays running, the mirror ends exact; and the
//! probes answer within a second throughout. And a pooled connection whose `BEGIN` was
//! cancelled in flight is never reused inside that transaction.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clerk_sync_tests::{
    Answer, TestApp, TestIngest, events::user_event, http::IngestOptions, proxy::Fault,
    worker::eventually,
};

/// What one delivery got.
struct Sent {
    svix_id: String,
    status: u16,
    took: Duration,
    /// Seconds since the test's start when it was sent.
    at: f64,
}

/// Posts a new user event from each of `senders` loops until `stop`.
fn send_until(
    ingest: Arc<TestIngest>,
    senders: usize,
    start: Instant,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Vec<Sent>>>, Vec<tokio::task::JoinHandle<()>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let n = Arc::new(AtomicUsize::new(0));
    let tasks = (0..senders)
        .map(|_| {
            let (ingest, sent, stop, n) = (ingest.clone(), sent.clone(), stop.clone(), n.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let i = n.fetch_add(1, Ordering::Relaxed);
                    let d = ingest.signer.sign(&user_event(
                        "created",
                        &format!("user_net{i}"),
                        1_760_000_000_000 + i as i64,
                        "Net",
                    ));
                    let at = start.elapsed().as_secs_f64();
                    let began = Instant::now();
                    let Answer { status, .. } = ingest.deliver(&d).await;
                    sent.lock().unwrap().push(Sent {
                        svix_id: d.id.clone(),
                        status,
                        took: began.elapsed(),
                        at,
                    });
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
        .collect();
    (sent, tasks)
}

/// GET `path` on `addr`; the status and how long the answer took (a second at most). The
/// client is made once, outside the timing: making one loads the system's root certificates.
async fn probe(addr: std::net::SocketAddr, path: &str) -> (u16, Duration) {
    static CLIENT: std::sync::OnceLock<clerk_sync_tests::http::HttpClient> =
        std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(clerk_sync_tests::http::client);
    let began = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(1),
        clerk_sync_tests::http::request(
            client,
            "GET",
            &format!("http://{addr}{path}"),
            &[],
            Vec::new(),
        ),
    )
    .await;
    match answer {
        Ok(Ok(a)) => (a.status, began.elapsed()),
        other => panic!("{addr}{path} gave no answer within 1 s: {:?}", other.err()),
    }
}

/// Runs traffic through `fault` held for `hold`, then heals; checks everything the module
/// promises and returns (time from heal to the worker applying again).
async fn under(fault: Fault, hold: Duration, request_timeout: Duration) -> Duration {
    let app = TestApp::builder()
        .through_fault_proxy()
        .ingest(IngestOptions {
            request_timeout,
            ..IngestOptions::default()
        })
        .start()
        .await;
    let proxy = app.proxy.as_ref().unwrap();
    let worker_metrics = app.metrics_addr();
    let ingest = Arc::new(
        TestIngest::start_with(
            app.ingest_pool.clone(),
            IngestOptions {
                request_timeout,
                ..IngestOptions::default()
            },
        )
        .await,
    );
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, senders) = send_until(ingest.clone(), 4, start, stop.clone());

    tokio::time::sleep(Duration::from_secs(2)).await;
    let faulted = start.elapsed().as_secs_f64();
    proxy.set(fault);
    // The probes answer within a second all along; once the fault has lasted a few seconds
    // a database that does not answer is "not ready".
    let unreachable = !matches!(fault, Fault::Latency(_));
    let fault_began = Instant::now();
    let until = fault_began + hold;
    let mut saw_not_ready = false;
    while Instant::now() < until {
        for addr in [ingest.metrics_addr, ingest.addr, worker_metrics] {
            let (status, took) = probe(addr, "/readyz").await;
            assert!(took < Duration::from_secs(1), "{addr}/readyz took {took:?}");
            if unreachable && fault_began.elapsed() > Duration::from_secs(5) {
                saw_not_ready |= status == 503;
            }
            assert_eq!(probe(addr, "/healthz").await.0, 200);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    if unreachable {
        assert!(saw_not_ready, "/readyz never said 503 under {fault:?}");
    }
    proxy.heal();
    let healed = start.elapsed().as_secs_f64();
    let healed_at = Instant::now();
    // Ready again soon after the heal.
    for addr in [ingest.metrics_addr, worker_metrics] {
        eventually(
            Duration::from_secs(10),
            "/readyz 200 after the heal",
            || async { (probe(addr, "/readyz").await.0 == 200).then_some(()) },
        )
        .await;
    }
    // The worker applies again: an event stored after the heal is done.
    let resumed = eventually(
        Duration::from_secs(15),
        "the worker to apply an event sent after the heal",
        || async {
            let ids: Vec<String> = sent
                .lock()
                .unwrap()
                .iter()
                .filter(|s| s.at > healed && s.status == 202)
                .map(|s| s.svix_id.clone())
                .collect();
            if ids.is_empty() {
                return None;
            }
            let done: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM clerk_sync.webhook_events e JOIN apalis.jobs j ON j.id = e.job_id \
                 WHERE e.svix_id = ANY($1) AND {}",
                clerk_sync_core::jobs::JobState::Done.condition()
            )))
            .bind(&ids)
            .fetch_one(app.pool())
            .await
            .unwrap();
            (done > 0).then(|| healed_at.elapsed())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.await.unwrap();
    }
    let sent = std::mem::take(&mut *sent.lock().unwrap());

    // Every answer within the request's time limit (plus scheduling slack); while the
    // database was unreachable, 503s, each within 5 s.
    let limit = request_timeout + Duration::from_millis(1_000);
    for s in &sent {
        assert!(
            s.took <= limit,
            "{} answered {} after {:?} (limit {limit:?})",
            s.svix_id,
            s.status,
            s.took
        );
        assert!(
            matches!(s.status, 200 | 202 | 503),
            "{} answered {}",
            s.svix_id,
            s.status
        );
        if unreachable && s.status == 503 {
            assert!(s.took <= Duration::from_secs(5), "503 after {:?}", s.took);
        }
    }
    let during: Vec<&Sent> = sent
        .iter()
        .filter(|s| s.at > faulted + 1.0 && s.at + 1.0 < healed)
        .collect();
    if unreachable {
        assert!(
            during.iter().any(|s| s.status == 503),
            "no 503 while the database was unreachable"
        );
    } else {
        assert!(
            during.iter().all(|s| s.status == 202),
            "a slow link is no reason to refuse"
        );
    }
    // Nothing acknowledged is missing.
    let acked: Vec<String> = sent
        .iter()
        .filter(|s| s.status / 100 == 2)
        .map(|s| s.svix_id.clone())
        .collect();
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM clerk_sync.webhook_events WHERE svix_id = ANY($1)",
    )
    .bind(&acked)
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(
        stored as usize,
        acked.len(),
        "an acknowledged event is missing"
    );
    // No job stays running; the mirror holds exactly the stored events' users.
    let stats = app.settle_within(Duration::from_secs(30)).await;
    assert_eq!(stats.running, 0);
    assert_eq!(stats.dead, 0);
    let (users, events): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM clerk.users), (SELECT count(*) FROM clerk_sync.webhook_events)",
    )
    .fetch_one(app.pool())
    .await
    .unwrap();
    assert_eq!(users, events, "the mirror holds one user per stored event");
    let refused = sent.iter().filter(|s| s.status == 503).count();
    println!(
        "{fault:?} for {hold:?}: {} deliveries, {} acknowledged, {refused} refused (503); \
         worker applying again {resumed:?} after the heal",
        sent.len(),
        acked.len()
    );
    resumed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_hole_for_30_s_then_heal() {
    let resumed = under(
        Fault::BlackHole,
        Duration::from_secs(30),
        Duration::from_secs(4),
    )
    .await;
    assert!(
        resumed < Duration::from_secs(10),
        "resumed after {resumed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_connection_reset_then_heal() {
    let resumed = under(
        Fault::Reset,
        Duration::from_secs(10),
        Duration::from_secs(4),
    )
    .await;
    assert!(
        resumed < Duration::from_secs(10),
        "resumed after {resumed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_ms_each_way() {
    under(
        Fault::Latency(Duration::from_millis(200)),
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
    .await;
}

/// A `begin()` cancelled while its `BEGIN` is in flight (a timeout, a task stopped) leaves the
/// server inside a transaction that sqlx 0.9 does not count. The pool must not hand that
/// connection out again: what is written through it would be acknowledged and never
/// committed. (Seen as deliveries answered 202 and then missing, where a test's ingest
/// shared its pool with a worker that was being stopped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_begin_never_leaks_its_transaction_into_the_pool() {
    let db = clerk_sync_tests::TestDb::new().await;
    sqlx::raw_sql("CREATE TABLE public.written (n int)")
        .execute(&db.pool)
        .await
        .unwrap();
    // One connection, so each statement below reuses the one whose BEGIN was cancelled.
    let pool = clerk_sync_core::db::connect(&db.url, "cancelled-begin", 1, Default::default())
        .await
        .unwrap();
    let mut cancelled = 0;
    for n in 0..20 {
        {
            let mut conn = pool.acquire().await.unwrap();
            let begin = sqlx::Connection::begin(&mut *conn);
            futures::pin_mut!(begin);
            // One poll sends BEGIN; dropping the future then cancels it before the answer.
            if futures::poll!(begin).is_pending() {
                cancelled += 1;
            }
        }
        sqlx::query("INSERT INTO public.written VALUES ($1)")
            .bind(n)
            .execute(&pool)
            .await
            .unwrap();
    }
    assert!(cancelled > 0, "no BEGIN was cancelled in flight");
    // Seen from another connection: every insert committed.
    let written: i64 = sqlx::query_scalar("SELECT count(*) FROM public.written")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(written, 20, "{cancelled} BEGINs cancelled in flight");
}

/// sqlx 0.9.0 leaves Nagle's algorithm on its TCP connections; every pool of ours turns it
/// off on each new connection (`core::nodelay`), or a statement spanning two segments waits
/// for the server's delayed ACK (40 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_to_postgres_have_tcp_nodelay() {
    use clerk_sync_core::nodelay::set_on_connections_to;
    let db = clerk_sync_tests::TestDb::new().await;
    let pool = clerk_sync_core::db::connect(&db.url, "nodelay", 2, Default::default())
        .await
        .unwrap();
    let port = clerk_sync_core::db::connect_options(&db.url)
        .unwrap()
        .get_port();
    let _a = pool.acquire().await.unwrap();
    let _b = pool.acquire().await.unwrap();
    // A plain socket to the same port starts with Nagle on: the check can tell.
    let plain = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    assert!(!plain.nodelay().unwrap());
    let sockets = set_on_connections_to(port).unwrap();
    assert!(sockets.found >= 3, "{sockets:?}");
    assert_eq!(
        sockets.set, 1,
        "only the plain socket had Nagle on: {sockets:?}"
    );
    assert!(plain.nodelay().unwrap());
}
