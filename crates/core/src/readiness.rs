//! Readiness that answers at once: a background task asks the database `SELECT 1` on a
//! connection of its own, each step under a short time limit, and records when it last
//! answered. `GET /readyz` only reads that time, so it answers within microseconds whether
//! the database is up, down, black-holed or its pool exhausted.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{Connection as _, PgConnection, PgPool, postgres::PgConnectOptions};

/// How often the probe asks.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(500);
/// How long one connect or one `SELECT 1` may take before the probe gives up on it.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1_500);
/// Ready while the database answered within this long.
pub const FRESH_FOR: Duration = Duration::from_secs(3);

/// Whether the database answered recently. Cheap to clone; the probe stops when the last
/// clone is dropped.
#[derive(Clone)]
pub struct Readiness {
    state: Arc<State>,
}

struct State {
    started: Instant,
    /// Milliseconds since `started` of the last answer, plus one; 0 = never answered.
    last_ok: AtomicU64,
}

impl Readiness {
    /// Starts probing the database `pool` connects to, on a connection of its own (not
    /// the pool's: a pool that is busy or waiting on a dead connection must not make the
    /// probe wait too). Returns after the first probe (at most
    /// [`crate::db::CONNECT_TIMEOUT`] to connect), so a service that starts against a
    /// working database is ready at once.
    pub async fn start(pool: &PgPool) -> Self {
        let options = (*pool.connect_options())
            .clone()
            .application_name("clerk-sync-readiness");
        let state = Arc::new(State {
            started: Instant::now(),
            last_ok: AtomicU64::new(0),
        });
        // The first answer may take longer (a cold server, a busy machine): a service that
        // starts against a working database should start ready.
        let mut conn = tokio::time::timeout(
            crate::db::CONNECT_TIMEOUT,
            PgConnection::connect_with(&options),
        )
        .await
        .ok()
        .and_then(Result::ok);
        ask(&options, &mut conn, &state).await;
        tokio::spawn(probe(options, conn, Arc::downgrade(&state)));
        Self { state }
    }

    /// Whether the database answered within [`FRESH_FOR`].
    pub fn is_ready(&self) -> bool {
        self.since_answer().is_some_and(|d| d <= FRESH_FOR)
    }

    /// How long ago the database last answered; `None` if it never has.
    pub fn since_answer(&self) -> Option<Duration> {
        match self.state.last_ok.load(Ordering::Acquire) {
            0 => None,
            at => {
                let now = self.state.started.elapsed().as_millis() as u64;
                Some(Duration::from_millis(now.saturating_sub(at - 1)))
            }
        }
    }

    /// The HTTP answer of `GET /readyz`: status and body.
    pub fn answer(&self) -> (u16, &'static str) {
        if self.is_ready() {
            (200, "ready\n")
        } else {
            (503, "database unavailable\n")
        }
    }
}

async fn probe(options: PgConnectOptions, mut conn: Option<PgConnection>, state: Weak<State>) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else { return };
        ask(&options, &mut conn, &state).await;
    }
}

/// One probe: connects if needed, asks `SELECT 1`, records the answer.
async fn ask(options: &PgConnectOptions, conn: &mut Option<PgConnection>, state: &State) {
    if conn.is_none() {
        *conn = tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(options))
            .await
            .ok()
            .and_then(Result::ok);
    }
    let Some(c) = conn.as_mut() else { return };
    let answered = matches!(
        tokio::time::timeout(PROBE_TIMEOUT, sqlx::raw_sql("SELECT 1").execute(&mut *c)).await,
        Ok(Ok(_))
    );
    if answered {
        let now = state.started.elapsed().as_millis() as u64;
        state.last_ok.store(now + 1, Ordering::Release);
    } else {
        // A connection that did not answer in time may be half-open: drop it (without
        // waiting for a goodbye) and connect afresh next time.
        *conn = None;
    }
}
