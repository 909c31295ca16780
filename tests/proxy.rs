//! A fault-injecting TCP proxy between a process and PostgreSQL: traffic passes, or is
//! black-holed (dropped silently: nothing forwarded, no reset, as a dead link or a firewall
//! that drops packets), or every connection is reset, or each direction is delayed.
//!
//! A black hole holds what it receives and forwards nothing; when it heals, held
//! connections carry on (as TCP does after its retransmissions get through), unless the
//! process gave up on them meanwhile. New connections made during a black hole are accepted
//! by the kernel, as a SYN to a half-dead host may be, and then hear nothing.

use std::{net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::{mpsc, watch},
    task::JoinHandle,
    time::Instant,
};

/// What the proxy does to traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything as it comes.
    None,
    /// Forward nothing, answer nothing, reset nothing.
    BlackHole,
    /// Reset every connection, open or new.
    Reset,
    /// Forward everything, each direction delayed by this much.
    Latency(Duration),
}

/// A proxy on 127.0.0.1 to `upstream`; stops when dropped.
pub struct FaultProxy {
    pub addr: SocketAddr,
    fault: watch::Sender<Fault>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (fault, rx) = watch::channel(Fault::None);
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(connection(client, upstream, rx.clone()));
            }
        });
        Self { addr, fault, task }
    }

    /// A proxy in front of the PostgreSQL server of `database_url`, and that URL rewritten
    /// to go through it.
    pub async fn for_url(database_url: &str) -> (Self, String) {
        let options: sqlx::postgres::PgConnectOptions = database_url.parse().unwrap();
        let host = match options.get_host() {
            "localhost" => "127.0.0.1",
            h => h,
        };
        let upstream: SocketAddr = format!("{host}:{}", options.get_port()).parse().unwrap();
        let proxy = Self::start(upstream).await;
        let authority = format!("{host}:{}", options.get_port());
        assert!(
            database_url.contains(&authority),
            "{database_url} does not name {authority}"
        );
        let url = database_url.replacen(&authority, &proxy.addr.to_string(), 1);
        (proxy, url)
    }

    pub fn set(&self, fault: Fault) {
        self.fault.send_replace(fault);
    }

    pub fn heal(&self) {
        self.set(Fault::None);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        // Open connections end with a reset.
        self.fault.send_replace(Fault::Reset);
    }
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut fault: watch::Receiver<Fault>) {
    // Closing a socket resets it; a clean end (EOF) is still passed on as a shutdown.
    let _ = client.set_zero_linger();
    let _ = client.set_nodelay(true);
    // A connection opened into a black hole waits for it to heal before reaching upstream.
    loop {
        let now = *fault.borrow_and_update();
        match now {
            Fault::BlackHole => {
                if fault.changed().await.is_err() {
                    return;
                }
            }
            Fault::Reset => return,
            Fault::None | Fault::Latency(_) => break,
        }
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_zero_linger();
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // Either direction ending (EOF, error, a reset) ends both.
    tokio::select! {
        () = pipe(client_read, server_write, fault.clone()) => {}
        () = pipe(server_read, client_write, fault) => {}
    }
}

/// One direction: read, hold for the latency, write; nothing moves during a black hole.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, fault: watch::Receiver<Fault>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = {
        let mut fault = fault.clone();
        async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let now = *fault.borrow_and_update();
                let delay = match now {
                    Fault::BlackHole => {
                        if fault.changed().await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Fault::Reset => return,
                    Fault::None => Duration::ZERO,
                    Fault::Latency(d) => d,
                };
                tokio::select! {
                    read = from.read(&mut buf) => match read {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                                return;
                            }
                        }
                    },
                    changed = fault.changed() => if changed.is_err() { return },
                }
            }
        }
    };
    let writer = {
        let mut fault = fault;
        async move {
            while let Some((due, data)) = rx.recv().await {
                tokio::time::sleep_until(due).await;
                loop {
                    let now = *fault.borrow_and_update();
                    match now {
                        Fault::BlackHole => {
                            if fault.changed().await.is_err() {
                                return;
                            }
                        }
                        Fault::Reset => return,
                        Fault::None | Fault::Latency(_) => break,
                    }
                }
                if to.write_all(&data).await.is_err() {
                    return;
                }
            }
            // The reader saw EOF: pass it on.
            let _ = to.shutdown().await;
        }
    };
    // The writer finishes what the reader queued before the direction ends.
    tokio::join!(reader, writer);
}
