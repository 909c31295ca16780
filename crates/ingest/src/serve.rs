//! The webhook listener's HTTP/1 server. `axum::serve` gives hyper no timer, so a client that
//! sends its request headers a byte at a time is never cut off, and each such client holds a
//! task and a socket for as long as it likes. Here every request's headers must arrive within
//! the request timeout (the body has its own limit, in the handler); a client that is still
//! sending them then gets `408 Request Timeout` and its connection is closed. An idle
//! keep-alive connection is closed at the same limit, without a 408.

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
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{mpsc, watch},
};
use tower::ServiceExt as _;

/// What a client cut off mid-request hears.
const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n\
content-type: text/plain; charset=utf-8\r\ncontent-length: 45\r\n\r\n\
the request was not received within its time\n";

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
    // A second handle on the socket, to answer 408 once hyper has given up on it.
    let Ok((stream, spare)) = duplicate(stream) else {
        return;
    };
    let partial = Arc::new(AtomicBool::new(false));
    let io = TokioIo::new(Tracked {
        inner: stream,
        partial: partial.clone(),
    });
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        router.clone().oneshot(request.map(Body::new))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut closing = false;
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            _ = close.wait_for(|c| *c), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    };
    if let Err(e) = result
        && e.is_timeout()
        && partial.load(Ordering::Acquire)
    {
        // hyper closed its handle; this one still reaches the client.
        if let Ok(mut spare) = TcpStream::from_std(spare) {
            let answer = async {
                spare.write_all(REQUEST_TIMEOUT).await?;
                spare.shutdown().await
            };
            let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
        }
    }
}

fn duplicate(stream: TcpStream) -> io::Result<(TcpStream, std::net::TcpStream)> {
    let std = stream.into_std()?;
    let spare = std.try_clone()?;
    Ok((TcpStream::from_std(std)?, spare))
}

/// The socket, noting whether a request has begun to arrive and not been answered yet.
struct Tracked {
    inner: TcpStream,
    partial: Arc<AtomicBool>,
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
            self.partial.store(true, Ordering::Release);
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
        // An answer is going out: the request it answers was received whole.
        self.partial.store(false, Ordering::Release);
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.partial.store(false, Ordering::Release);
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
