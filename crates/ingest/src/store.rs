//! Storing verified deliveries: the raw event and its job in one statement
//! ([`jobs::store_events`]), committed before the answer. A duplicate `svix-id` stores
//! nothing and is answered from the same statement.
//!
//! Group commit: a few flushers each take every delivery waiting when they become free and
//! store them in one multi-row statement, one commit. So deliveries that arrive while
//! commits are in flight share the next one, and a lone delivery is stored at once (a
//! flusher is free), never held back for company. Each delivery is answered only after the
//! commit that stored it; if that statement fails, every delivery in it is answered 503 and
//! none is acknowledged; a duplicate in a batch is only a duplicate, never its neighbours'
//! failure.

use std::{collections::HashMap, sync::Arc};

use axum::body::Bytes;
use clerk_sync_core::{
    event::Summary,
    jobs::{self, NewEvent},
};
use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{metrics, verify::Verified};

/// What storing a verified delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The event and its job are committed.
    New { event_id: i64 },
    /// The svix-id was stored before: nothing written.
    Duplicate,
}

impl Stored {
    /// The answer's `status` and the metrics' `outcome` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::New { .. } => "stored",
            Self::Duplicate => "duplicate",
        }
    }
}

/// Why a delivery was not stored: the database error of the statement that was to store it
/// (shared by every delivery of that statement).
pub type StoreError = Arc<sqlx::Error>;

/// Statements storing deliveries at once. Two keep the database busy while one waits for its
/// commit's WAL flush; more only split the batches (BENCHMARKS.md, "how it got there").
const FLUSHERS: u32 = 2;
/// The most deliveries in one statement.
const MAX_BATCH: usize = 512;

/// The store's queue; its flusher tasks end when it is dropped.
pub struct Store {
    queue: mpsc::UnboundedSender<Pending>,
}

struct Pending {
    svix_id: String,
    headers: serde_json::Value,
    body: Bytes,
    summary: Summary,
    answer: oneshot::Sender<Result<Stored, StoreError>>,
}

impl Store {
    /// Starts the flushers (at most one per pool connection).
    pub fn new(pool: PgPool) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..FLUSHERS.min(pool.options().get_max_connections()).max(1) {
            tokio::spawn(flusher(pool.clone(), waiting.clone()));
        }
        Self { queue }
    }

    /// Stores one delivery with whatever else is waiting; returns once it is committed.
    pub async fn store(&self, event: &Verified, summary: &Summary) -> Result<Stored, StoreError> {
        let headers = serde_json::json!({
            "svix-id": event.headers.id,
            "svix-timestamp": event.headers.timestamp.to_string(),
            "svix-signature": event.headers.signature,
        });
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            svix_id: event.headers.id.clone(),
            headers,
            body: event.body.clone(),
            summary: summary.clone(),
            answer,
        };
        let closed = || Arc::new(sqlx::Error::PoolClosed);
        self.queue.send(pending).map_err(|_| closed())?;
        answered.await.map_err(|_| closed())?
    }
}

async fn flusher(pool: PgPool, waiting: Arc<Mutex<mpsc::UnboundedReceiver<Pending>>>) {
    loop {
        let batch = {
            let mut waiting = waiting.lock().await;
            let Some(first) = waiting.recv().await else {
                return;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match waiting.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            batch
        };
        flush(&pool, batch).await;
    }
}

/// One statement, outside a transaction: it commits before it returns.
async fn flush(pool: &PgPool, mut batch: Vec<Pending>) {
    let mut conn = match pool.acquire().await {
        Ok(conn) => conn,
        Err(e) => {
            let e = Arc::new(e);
            for p in batch {
                let _ = p.answer.send(Err(e.clone()));
            }
            return;
        }
    };
    // A delivery whose request gave up while it waited (answered 503 at its timeout) is not
    // stored now: its sender retries. (One already in a statement when its request gives up
    // may still commit; its retry is then answered as a duplicate.)
    batch.retain(|p| !p.answer.is_closed());
    if batch.is_empty() {
        return;
    }
    let result = {
        let events: Vec<NewEvent<'_>> = batch
            .iter()
            .map(|p| NewEvent {
                svix_id: &p.svix_id,
                headers: &p.headers,
                body: &p.body,
                event_type: p.summary.event_type.as_deref(),
                object_id: p.summary.object_id.as_deref(),
                event_timestamp: p.summary.timestamp,
            })
            .collect();
        let started = std::time::Instant::now();
        let result = jobs::store_events(&mut conn, &events).await;
        metrics::STORE_BATCH.observe_value(&[], events.len() as f64);
        metrics::STORE_DURATION.observe(&[], started.elapsed());
        result
    };
    match result {
        Ok(rows) => {
            // The first delivery of a svix-id stored here gets its event id; a later one
            // in the same batch, like one stored before, is a duplicate.
            let mut stored: HashMap<String, i64> = rows.into_iter().collect();
            for p in batch {
                let outcome = match stored.remove(&p.svix_id) {
                    Some(event_id) => Stored::New { event_id },
                    None => Stored::Duplicate,
                };
                // The sender may have gone (its request was dropped): the event is stored
                // all the same, and its redelivery will be a duplicate.
                let _ = p.answer.send(Ok(outcome));
            }
        }
        Err(e) => {
            let e = Arc::new(e);
            for p in batch {
                let _ = p.answer.send(Err(e.clone()));
            }
        }
    }
}
