//! Runs the apalis worker that claims jobs. apalis ends a worker on any backend error (the
//! database restarted, say); the supervisor then builds a new one under a fresh name after
//! a backoff. Each apalis worker holds its database session (`session`) while it claims:
//! when that ends, other workers rescue its jobs within a second (`rescue`); heartbeats stay
//! the backstop for a worker that is connected but stuck.

use std::time::Duration;

use apalis::prelude::{WorkerBuilder, WorkerBuilderExt as _};
use apalis_core::backend::ext::poll_strategy::PollWith;
use apalis_postgres::{PostgresStorage, Pubsub};
use clerk_sync_core::{backoff::Backoff, jobs::QUEUE};
use sqlx::PgPool;
use tokio::sync::watch;

use clerk_sync_core::shutdown::stopped;

use crate::{handler, pipeline::Pipeline, session::Session, settings::Settings, wakeup::Wakeups};

pub async fn run(
    pool: PgPool,
    settings: Settings,
    pipeline: Pipeline,
    stop: watch::Receiver<bool>,
) {
    // Capped low: after an outage the worker claims again within seconds of the heal.
    let backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(4));
    let mut restarts: u32 = 0;
    while !*stop.borrow() {
        // A fresh name each time: a restarted worker reusing its name would never free the
        // jobs its previous self had claimed.
        let name = clerk_sync_core::jobs::session_worker_name();
        let started = tokio::time::Instant::now();
        let result: Result<(), String> = match Session::hold(&pool, &name).await {
            Err(e) => Err(format!("{e:#}")),
            Ok(mut session) => {
                let config = apalis_postgres::Config::default()
                    .queue(QUEUE)
                    .batch_size(settings.concurrency)
                    .heartbeat_interval(settings.heartbeat_interval)
                    .missed_heartbeats(3)
                    // get_jobs already claims the rows (Queued, lock_by = this worker);
                    // apalis's extra per-task status write would cost a commit per job
                    // before it starts.
                    .lock_tasks(false)
                    // The pipeline acks in the transaction that applies the event and
                    // writes failures itself; the backend only claims.
                    .persist_results(false);
                let backend = PostgresStorage::<serde_json::Value>::new(&pool).with_config(config);
                let wakeups = Wakeups::new(
                    {
                        let pool = pool.clone();
                        move || Pubsub::new(pool.clone(), QUEUE.to_owned())
                    },
                    settings.poll_interval,
                );
                let worker = WorkerBuilder::new(name.as_str())
                    .backend(PollWith::new(backend, wakeups))
                    .data(pipeline.clone())
                    .concurrency(settings.concurrency)
                    .build(handler::handle);
                tracing::info!(worker.name = %name, "claiming jobs");
                let signal = {
                    let stop = stop.clone();
                    async move {
                        stopped(stop).await;
                        Ok::<(), std::io::Error>(())
                    }
                };
                let drain_limit = {
                    let stop = stop.clone();
                    let drain = settings.drain_timeout;
                    async move {
                        stopped(stop).await;
                        tokio::time::sleep(drain).await;
                    }
                };
                tokio::select! {
                    result = worker.run_until(signal) => result.map_err(|e| describe(&e)),
                    () = drain_limit => {
                        tracing::warn!("in-flight jobs did not finish within the drain timeout; they will be rescued");
                        return;
                    }
                    // Other workers are rescuing this one's jobs already: stop claiming under
                    // this name (late acks of its jobs do not land) and start afresh.
                    why = session.lost(), if !*stop.borrow() => {
                        Err(format!("the worker's database session was lost ({why})"))
                    }
                }
            }
        };
        if *stop.borrow() {
            if let Err(e) = result {
                tracing::warn!(error = %e, "worker ended with an error while stopping");
            }
            return;
        }
        if started.elapsed() > Duration::from_secs(60) {
            restarts = 0;
        }
        restarts += 1;
        let wait = backoff.delay(restarts);
        match result {
            Ok(()) => tracing::warn!(
                retry_in_ms = wait.as_millis() as u64,
                "worker ended; restarting"
            ),
            Err(e) => tracing::error!(
                error = %e,
                retry_in_ms = wait.as_millis() as u64,
                "worker failed; restarting"
            ),
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(stop.clone()) => return,
        }
    }
}

/// apalis's error, as one clean sentence: the database error at its root said the way every
/// other line says it (`db::describe`), not apalis's nested wrappers.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(db) = err.downcast_ref::<sqlx::Error>() {
            return clerk_sync_core::db::describe(db);
        }
        cause = err.source();
    }
    e.to_string()
}
