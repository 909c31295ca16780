//! The webhook listener's HTTP/1 server. Under `axum::serve` a client that sends its request
//! headers a byte at a time is never cut off, and each such client holds a task and a socket
//! for as long as it likes. Here a request's head must reach the handler within the request
//! timeout from its first byte (the body then has its own limit, in the handler); a client
//! still sending it gets `408 Request Timeout` and its connection is closed. An idle
//! keep-alive connection is left alone (hyper's own header timeout would close it too, and
//! race a client reusing it).

use std::{
    future::Future,
    io,
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, body::Body, extract::Request};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};
use tower::ServiceExt as _;

/// What a client cut off mid-request hears: the handler's own 408 (`IngestError::Timeout`).
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n\
content-type: application/json\r\ncontent-length: 59\r\n\r\n\
{\"error\":\"request not received in time\",\"reason\":\"timeout\"}";

/// Serves `router` on `listener` until `shutdown` resolves; then stops accepting, lets
/// in-flight requests finish, and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = pin!(shutdown);
    let (close_tx, close_rx) = watch::channel(false);
    // Each connection holds a sender; all are dropped when the last connection ends.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(
                        stream,
                        router.clone(),
                        header_timeout,
                        close_rx.clone(),
                        open_tx.clone(),
                    ));
                }
                // Out of file descriptors, say: wait a little rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = close_tx.send(true);
    drop(open_tx);
    let _ = open_rx.recv().await;
}

async fn connection(
    stream: TcpStream,
    router: Router,
    header_timeout: Duration,
    mut close: watch::Receiver<bool>,
    _open: mpsc::Sender<()>,
) {
    let _ = stream.set_nodelay(true);
    // A second handle on the socket, to answer 408 once the connection is given up.
    let Ok((stream, spare)) = duplicate(stream) else {
        return;
    };
    let head = Arc::new(Head::default());
    let io = TokioIo::new(Tracked {
        inner: stream,
        head: head.clone(),
    });
    let service = {
        let head = head.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            // The head is in: the handler's own limits apply from here.
            head.in_handler();
            router.clone().oneshot(request.map(Body::new))
        })
    };
    let mut conn =
        Box::pin(hyper::server::conn::http1::Builder::new().serve_connection(io, service));
    let mut closing = false;
    let mut watch = tokio::time::interval(HEAD_CHECK_EVERY);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let overdue = loop {
        tokio::select! {
            _ = conn.as_mut() => break false,
            _ = close.wait_for(|c| *c), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            _ = watch.tick() => if head.overdue(header_timeout) { break true },
        }
    };
    if overdue {
        drop(conn);
        // The server's handle is closed; this one still reaches the client.
        if let Ok(mut spare) = TcpStream::from_std(spare) {
            let answer = async {
                spare.write_all(REQUEST_TIMEOUT).await?;
                spare.shutdown().await
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
        }
    }
}

/// How often a connection checks whether its request's head is late.
const HEAD_CHECK_EVERY: Duration = Duration::from_millis(250);

/// When the head of the request being received began to arrive. An idle keep-alive
/// connection has none, so it is never cut: only a request that has begun and not reached
/// the handler in time is.
#[derive(Default)]
struct Head {
    /// `Instant` of the first byte, as nanoseconds since `EPOCH`; 0: none pending.
    since: std::sync::atomic::AtomicU64,
    /// A request is with the handler (its body and answer have their own limits).
    handling: AtomicBool,
}

static EPOCH: std::sync::LazyLock<std::time::Instant> =
    std::sync::LazyLock::new(std::time::Instant::now);

impl Head {
    fn now() -> u64 {
        EPOCH.elapsed().as_nanos() as u64 + 1
    }
    fn bytes_read(&self) {
        if !self.handling.load(Ordering::Acquire) {
            let _ =
                self.since
                    .compare_exchange(0, Self::now(), Ordering::AcqRel, Ordering::Acquire);
        }
    }
    fn in_handler(&self) {
        self.handling.store(true, Ordering::Release);
        self.since.store(0, Ordering::Release);
    }
    fn answered(&self) {
        self.handling.store(false, Ordering::Release);
    }
    fn overdue(&self, limit: Duration) -> bool {
        match self.since.load(Ordering::Acquire) {
            0 => false,
            since => Self::now().saturating_sub(since) > limit.as_nanos() as u64,
        }
    }
}

fn duplicate(stream: TcpStream) -> io::Result<(TcpStream, std::net::TcpStream)> {
    let std = stream.into_std()?;
    let spare = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, spare))
}

/// The socket, telling [`Head`] when bytes arrive and when an answer goes out.
struct Tracked {
    inner: TcpStream,
    head: Arc<Head>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.head.bytes_read();
        }
        poll
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        // An answer is going out: the next bytes are the next request's head.
        self.head.answered();
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.head.answered();
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
