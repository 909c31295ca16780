//! The worker's database session, held on a connection of its own while it claims: the
//! advisory lock in it tells every other worker that this one is alive
//! (`core::jobs::lock_session`); when the session ends, they rescue this worker's jobs within
//! a second (`core::jobs::rescue_orphans`). A session that stops answering is given up, and
//! the supervisor claims again under a fresh name once a new one is held.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio::{sync::oneshot, task::JoinHandle};

/// How often the session is asked whether it still answers, and how long it may take.
const PING_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

pub struct Session {
    lost: oneshot::Receiver<String>,
    task: JoinHandle<()>,
}

impl Session {
    /// Connects and takes `worker`'s session lock.
    pub async fn hold(pool: &PgPool, worker: &str) -> anyhow::Result<Self> {
        let options = (*pool.connect_options()).clone().application_name(worker);
        let connect = PgConnection::connect_with(&options);
        let mut conn = tokio::time::timeout(clerk_sync_core::db::CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| anyhow::anyhow!("holding the worker's session: no answer"))?
            .map_err(|e| anyhow::anyhow!(clerk_sync_core::db::describe(&e)))
            .context("holding the worker's session")?;
        let locked = tokio::time::timeout(
            PING_TIMEOUT,
            clerk_sync_core::jobs::lock_session(&mut conn, worker),
        )
        .await
        .map_err(|_| anyhow::anyhow!("holding the worker's session: no answer"))?
        .map_err(|e| anyhow::anyhow!(clerk_sync_core::db::describe(&e)))?;
        anyhow::ensure!(locked, "another session holds {worker}'s lock");
        let (tx, lost) = oneshot::channel();
        let task = tokio::spawn(async move {
            let why = loop {
                tokio::time::sleep(PING_EVERY).await;
                match tokio::time::timeout(
                    PING_TIMEOUT,
                    sqlx::raw_sql("SELECT 1").execute(&mut conn),
                )
                .await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => break clerk_sync_core::db::describe(&e),
                    Err(_) => break format!("no answer within {} s", PING_TIMEOUT.as_secs()),
                }
            };
            let _ = tx.send(why);
        });
        Ok(Self { lost, task })
    }

    /// Resolves, with the reason, when the session stops answering.
    pub async fn lost(&mut self) -> String {
        (&mut self.lost)
            .await
            .unwrap_or_else(|_| "the session's task ended".into())
    }
}

impl Drop for Session {
    /// Closes the connection (dropping it closes the socket), which releases the lock.
    fn drop(&mut self) {
        self.task.abort();
    }
}
