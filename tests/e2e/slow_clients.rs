//! Slow clients (slowloris): a request sent a byte a second is cut off at the request
//! timeout with a 408 and its connection closed, and hundreds of them at once do not stop
//! real deliveries.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use clerk_sync_tests::{
    TestApp,
    http::{client, request},
    procs::{free_port, spawn_ingest, wait_for_port},
    signing::Signer,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};

const REQUEST: &[u8] =
    b"POST /webhooks/clerk HTTP/1.1\r\nhost: ingest\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";

/// Sends [`REQUEST`] a byte every `gap` until the server closes the connection; returns
/// what the server said and how long it took. `None` if it could not connect.
async fn dribble(addr: SocketAddr, gap: Duration) -> Option<(String, Duration)> {
    let stream = TcpStream::connect(addr).await.ok()?;
    let started = Instant::now();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        for b in REQUEST {
            if write.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
        // Everything sent: wait for the answer.
        tokio::time::sleep(Duration::from_secs(3600)).await;
    });
    let mut heard = Vec::new();
    // EOF, or a reset after the answer: either way the server closed it.
    let _ = read.read_to_end(&mut heard).await;
    writer.abort();
    Some((
        String::from_utf8_lossy(&heard).into_owned(),
        started.elapsed(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_byte_a_second_is_cut_at_the_request_timeout_with_408_and_500_of_them_do_not_stop_deliveries()
 {
    let app = TestApp::builder().without_worker().start().await;
    let port = free_port();
    let _ingest = spawn_ingest(
        app.url(),
        port,
        &format!("{}-slow", app.db.name),
        &[("REQUEST_TIMEOUT_MS", "3000")],
    );
    wait_for_port(port).await;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();

    // One slow client: cut at 3 s with a 408, and closed.
    let (heard, took) = tokio::time::timeout(
        Duration::from_secs(10),
        dribble(addr, Duration::from_secs(1)),
    )
    .await
    .expect("the server closed the connection")
    .unwrap();
    assert!(heard.starts_with("HTTP/1.1 408"), "{heard:?}");
    assert!(
        heard.ends_with(r#"{"error":"request not received in time","reason":"timeout"}"#),
        "{heard:?}"
    );
    assert!(
        took >= Duration::from_millis(2_900) && took < Duration::from_secs(5),
        "cut after {took:?}"
    );

    // 500 at once, each starting again when cut, while real deliveries go on.
    let stop = Arc::new(AtomicBool::new(false));
    let cut = Arc::new(AtomicUsize::new(0));
    let slow: Vec<_> = (0..500)
        .map(|_| {
            let (stop, cut) = (stop.clone(), cut.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    match dribble(addr, Duration::from_secs(1)).await {
                        Some((heard, _)) if heard.starts_with("HTTP/1.1 408") => {
                            cut.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let signer = Signer::default();
    let http = client();
    let url = format!("http://{addr}/webhooks/clerk");
    let mut took = Vec::new();
    let began = Instant::now();
    while began.elapsed() < Duration::from_secs(8) {
        let d = signer.sign(&clerk_sync_tests::events::user_event(
            "created",
            &format!("user_fast{}", took.len()),
            1_760_000_000_000,
            "Fast",
        ));
        let t = Instant::now();
        let answer = request(&http, "POST", &url, &d.headers(), d.body.clone())
            .await
            .unwrap();
        took.push(t.elapsed());
        assert_eq!(answer.status, 202, "{answer:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for task in slow {
        task.abort();
    }
    took.sort();
    let p50 = took[took.len() / 2];
    let p99 = took[took.len() * 99 / 100];
    let cut = cut.load(Ordering::Relaxed);
    println!(
        "with 500 slow clients: {} real deliveries, p50 {p50:?}, p99 {p99:?}, max {:?}; {cut} slow requests cut with 408",
        took.len(),
        took.last().unwrap()
    );
    assert!(cut >= 500, "only {cut} slow requests were cut with 408");
    assert!(p99 < Duration::from_secs(1), "p99 {p99:?}");
    assert_eq!(
        app.count("SELECT count(*) FROM clerk_sync.webhook_events")
            .await,
        took.len() as i64
    );
}
