//! `clerk-sync-bench`: the measuring half of `bench/run.sh` (which prepares databases and
//! runs pgbench). Each subcommand starts the release binaries it measures, drives them,
//! reads their peak memory, stops them, and prints one JSON document.

use std::{
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};
use clerk_sync_cli::http;
use clerk_sync_core::{
    db, jobs, samples,
    webhook::{Secrets, new_msg_id},
};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::process::{Child, Command};

const SECRET: &str = "whsec_YmVuY2htYXJrLXNlY3JldC1rZXktMTIzNDU2Nzg=";

#[derive(Parser)]
struct Cli {
    #[arg(long, env = "DATABASE_URL")]
    database_url: String,
    /// Where the release binaries are.
    #[arg(long, default_value = "target/release")]
    bin_dir: PathBuf,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Closed-loop load on ingest: unique, freshly signed deliveries.
    Load {
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Store N events and their jobs directly (a backlog), in batches.
    Seed { events: usize },
    /// Start a worker with default settings and time how fast it applies `target` events.
    Drain {
        #[arg(long)]
        target: i64,
    },
    /// Write the pgbench scripts that run the SQL of one webhook: the event and job inserts
    /// in one transaction (ingest), and the users upsert (worker).
    PgbenchScripts {
        #[arg(long)]
        dir: PathBuf,
    },
    /// Open-loop deliveries at a fixed rate through ingest and worker; time from each 2xx
    /// to its row being visible.
    Lag {
        #[arg(long, default_value_t = 500)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Seconds at the same rate before the measured ones, while both processes open
        /// their connections; reported apart (`warmup_lag_max_ms`).
        #[arg(long, default_value_t = 3)]
        warmup: u64,
    },
}

fn body_for(user_id: &str, now_ms: i64) -> Vec<u8> {
    let mut e: Value = serde_json::from_str(samples::get("user.created").expect("sample")).unwrap();
    e["data"]["id"] = json!(user_id);
    e["data"]["updated_at"] = json!(now_ms);
    e["data"]["created_at"] = json!(now_ms);
    e["timestamp"] = json!(now_ms);
    serde_json::to_vec(&e).unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// Peak resident memory (VmHWM) of a child, in MiB.
fn peak_rss_mib(child: &Child) -> f64 {
    let Some(pid) = child.id() else { return 0.0 };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct Procs {
    bin_dir: PathBuf,
    url: String,
}

impl Procs {
    fn spawn(&self, name: &str, env: &[(&str, &str)]) -> anyhow::Result<Child> {
        Command::new(self.bin_dir.join(name))
            .env("DATABASE_URL", &self.url)
            .env("CLERK_WEBHOOK_SECRET", SECRET)
            .env("LOG_FORMAT", "json")
            // Warnings only, unless BENCH_RUST_LOG says otherwise: at `info` the worker
            // writes a line per event (see BENCHMARKS.md for what that costs).
            .env(
                "RUST_LOG",
                std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name} (build with cargo build --release --bins)"))
    }

    async fn ingest(&self, port: u16) -> anyhow::Result<Child> {
        let child = self.spawn(
            "clerk-sync-ingest",
            &[
                ("LISTEN_ADDR", &format!("127.0.0.1:{port}")),
                ("METRICS_ADDR", "127.0.0.1:0"),
            ],
        )?;
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(child);
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        bail!("ingest did not start")
    }

    fn worker(&self) -> anyhow::Result<Child> {
        self.spawn("clerk-sync-worker", &[("METRICS_ADDR", "127.0.0.1:0")])
    }
}

async fn stop(mut child: Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    let _ = tokio::time::timeout(Duration::from_secs(40), child.wait()).await;
}

/// One signed delivery of a fresh user.
struct Sender {
    client: http::Client,
    secrets: Secrets,
    url: String,
}

impl Sender {
    async fn send(&self, user_id: &str) -> anyhow::Result<u16> {
        let now = now_ms();
        let body = body_for(user_id, now);
        let id = new_msg_id();
        let ts = now / 1000;
        let headers = vec![
            ("svix-id".to_owned(), id.clone()),
            ("svix-timestamp".to_owned(), ts.to_string()),
            (
                "svix-signature".to_owned(),
                self.secrets.sign(&id, ts, &body)?,
            ),
            ("content-type".to_owned(), "application/json".to_owned()),
        ];
        Ok(
            http::request(&self.client, "POST", &self.url, &headers, body)
                .await?
                .status,
        )
    }
}

async fn users(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar("SELECT count(*) FROM clerk.users")
        .fetch_one(pool)
        .await?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let procs = Procs {
        bin_dir: cli.bin_dir.clone(),
        url: cli.database_url.clone(),
    };
    let pool = db::connect(&cli.database_url, "clerk-sync-bench", 8, Default::default()).await?;
    let port = 18_080;
    let sender = Arc::new(Sender {
        client: http::client(),
        secrets: Secrets::parse(SECRET)?,
        url: format!("http://127.0.0.1:{port}/webhooks/clerk"),
    });
    let out = match cli.command {
        Cmd::Load {
            concurrency,
            seconds,
        } => {
            let ingest = procs.ingest(port).await?;
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let started = Instant::now();
            let tasks: Vec<_> = (0..concurrency)
                .map(|c| {
                    let sender = sender.clone();
                    tokio::spawn(async move {
                        let (mut lat, mut bad) = (Vec::new(), 0u64);
                        let mut i = 0u64;
                        while Instant::now() < deadline {
                            let t = Instant::now();
                            match sender.send(&format!("user_load_{c}_{i}")).await {
                                Ok(202) => lat.push(t.elapsed().as_micros() as u64),
                                _ => bad += 1,
                            }
                            i += 1;
                        }
                        (lat, bad)
                    })
                })
                .collect();
            let (mut lat, mut bad) = (Vec::new(), 0);
            for t in tasks {
                let (l, b) = t.await?;
                lat.extend(l);
                bad += b;
            }
            let elapsed = started.elapsed().as_secs_f64();
            lat.sort_unstable();
            let rss = peak_rss_mib(&ingest);
            stop(ingest).await;
            json!({
                "requests": lat.len(), "non_2xx": bad, "requests_per_s": lat.len() as f64 / elapsed,
                "p50_ms": percentile(&lat, 0.5), "p99_ms": percentile(&lat, 0.99), "p999_ms": percentile(&lat, 0.999),
                "ingest_peak_rss_mib": rss,
            })
        }
        Cmd::PgbenchScripts { dir } => {
            std::fs::create_dir_all(&dir)?;
            // The payload lives in a table: pgbench would read `:name` inside JSON literals
            // as its own variables.
            let body = body_for("user_x", now_ms());
            let data: Value = serde_json::from_slice(&body)?;
            sqlx::raw_sql("DROP TABLE IF EXISTS public.bench_fixture; CREATE TABLE public.bench_fixture (body bytea, data jsonb)")
                .execute(&pool)
                .await?;
            sqlx::query("INSERT INTO public.bench_fixture VALUES ($1, $2)")
                .bind(&body)
                .bind(&data["data"])
                .execute(&pool)
                .await?;
            std::fs::write(dir.join("ingest.sql"), INGEST_SQL)?;
            std::fs::write(dir.join("upsert.sql"), upsert_script()?)?;
            json!({"written": dir})
        }
        Cmd::Seed { events } => {
            let started = Instant::now();
            let batch = 5_000;
            let mut done = 0;
            while done < events {
                let n = batch.min(events - done);
                let now = now_ms();
                let mut svix = Vec::with_capacity(n);
                let mut bodies = Vec::with_capacity(n);
                let mut objects = Vec::with_capacity(n);
                let mut job_ids = Vec::with_capacity(n);
                for i in done..done + n {
                    let user = format!("user_seed_{i}");
                    bodies.push(body_for(&user, now));
                    objects.push(user);
                    svix.push(format!("msg_seed_{i}_{}", ulid::Ulid::generate()));
                    job_ids.push(jobs::new_job_id());
                }
                let job_texts: Vec<String> = job_ids.iter().map(ToString::to_string).collect();
                let mut tx = pool.begin().await?;
                let ids: Vec<(i64, String)> = sqlx::query_as(
                    r#"
                    INSERT INTO clerk_sync.webhook_events (svix_id, headers, body, event_type, object_id, event_timestamp, job_id)
                    SELECT s, '{}'::jsonb, b, 'user.created', o, now(), j
                    FROM unnest($1::text[], $2::bytea[], $3::text[], $4::text[]) AS t(s, b, o, j)
                    RETURNING id, job_id
                    "#,
                )
                .bind(&svix)
                .bind(&bodies)
                .bind(&objects)
                .bind(&job_texts)
                .fetch_all(&mut *tx)
                .await?;
                let jobs: Vec<(ulid::Ulid, i64)> = ids
                    .into_iter()
                    .map(|(id, job): (i64, String)| (job.parse().expect("a ULID we made"), id))
                    .collect();
                jobs::enqueue(&mut tx, &jobs).await?;
                tx.commit().await?;
                done += n;
            }
            sqlx::query("VACUUM ANALYZE apalis.jobs")
                .execute(&pool)
                .await?;
            sqlx::query("VACUUM ANALYZE clerk_sync.webhook_events")
                .execute(&pool)
                .await?;
            json!({"seeded": events, "seconds": started.elapsed().as_secs_f64()})
        }
        Cmd::Drain { target } => {
            let before = users(&pool).await?;
            let since: chrono::DateTime<chrono::Utc> =
                sqlx::query_scalar("SELECT now()").fetch_one(&pool).await?;
            let worker = procs.worker()?;
            let started = Instant::now();
            let mut last = before;
            // Polled once a second: a count of the mirror costs the database tens of ms at
            // these sizes, and the rate below does not depend on when we notice the end.
            while last - before < target {
                tokio::time::sleep(Duration::from_secs(1)).await;
                last = users(&pool).await?;
                if started.elapsed() > Duration::from_secs(3600) {
                    bail!("drain did not finish in an hour");
                }
            }
            let wall = started.elapsed().as_secs_f64();
            let rss = peak_rss_mib(&worker);
            stop(worker).await;
            // The rate between the first and the last commit, from the rows' own times
            // (synced_at is each transaction's start): neither process start-up nor the
            // polling above counts. Rows of the first transaction are left out, as its
            // time is the window's start.
            let (applied, span): (i64, f64) = sqlx::query_as(
                "WITH w AS (SELECT min(synced_at) AS t0, max(synced_at) AS t1 \
                 FROM clerk.users WHERE synced_at >= $1) \
                 SELECT count(*), extract(epoch FROM max(w.t1) - max(w.t0))::float8 \
                 FROM clerk.users, w WHERE synced_at > w.t0",
            )
            .bind(since)
            .fetch_one(&pool)
            .await?;
            json!({
                "applied": applied, "seconds": span, "events_per_s": applied as f64 / span,
                "wall_seconds_from_start": wall, "worker_peak_rss_mib": rss,
            })
        }
        Cmd::Lag {
            rate,
            seconds,
            warmup,
        } => {
            let ingest = procs.ingest(port).await?;
            let worker = procs.worker()?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            let acked: Arc<Mutex<Vec<(u64, String, f64)>>> = Arc::default();
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
            let warm = rate * warmup;
            let total = warm + rate * seconds;
            let mut tasks = Vec::with_capacity(total as usize);
            for i in 0..total {
                tick.tick().await;
                let (sender, acked) = (sender.clone(), acked.clone());
                tasks.push(tokio::spawn(async move {
                    let user = format!("user_lag_{i}");
                    if let Ok(202) = sender.send(&user).await {
                        let at = SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .unwrap()
                            .as_secs_f64();
                        acked.lock().unwrap().push((i, user, at));
                    }
                }));
            }
            for t in tasks {
                t.await?;
            }
            let acked = acked.lock().unwrap().clone();
            let ids: Vec<String> = acked.iter().map(|a| a.1.clone()).collect();
            let deadline = Instant::now() + Duration::from_secs(60);
            let rows: Vec<(String, f64)> = loop {
                let rows: Vec<(String, f64)> = sqlx::query_as(
                    "SELECT id, extract(epoch FROM synced_at)::float8 FROM clerk.users WHERE id = ANY($1)",
                )
                .bind(&ids)
                .fetch_all(&pool)
                .await?;
                if rows.len() == ids.len() || Instant::now() > deadline {
                    break rows;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            };
            let visible: std::collections::HashMap<String, f64> = rows.into_iter().collect();
            let lag_of = |(_, id, at): &(u64, String, f64)| {
                visible.get(id).map(|v| ((v - at).max(0.0) * 1e6) as u64)
            };
            let (warmup_acked, acked): (Vec<_>, Vec<_>) =
                acked.into_iter().partition(|(i, _, _)| *i < warm);
            let warmup_max = warmup_acked.iter().filter_map(lag_of).max().unwrap_or(0);
            let mut lags: Vec<u64> = acked.iter().filter_map(lag_of).collect();
            lags.sort_unstable();
            let (irss, wrss) = (peak_rss_mib(&ingest), peak_rss_mib(&worker));
            stop(ingest).await;
            stop(worker).await;
            json!({
                "sent": total - warm, "acknowledged": acked.len(), "visible": lags.len(),
                "warmup_seconds": warmup, "warmup_lag_max_ms": warmup_max as f64 / 1000.0,
                "lag_p50_ms": percentile(&lags, 0.5), "lag_p90_ms": percentile(&lags, 0.9),
                "lag_p99_ms": percentile(&lags, 0.99), "lag_max_ms": percentile(&lags, 1.0),
                "ingest_peak_rss_mib": irss, "worker_peak_rss_mib": wrss,
            })
        }
    };
    println!("{out}");
    Ok(())
}

/// What ingest runs for one new delivery (crates/ingest/src/store.rs and apalis's
/// push_tasks), with pgbench variables for the unique parts. (pgbench reads a colon
/// followed by a name as a variable even inside literals, hence `chr(58)`.)
const INGEST_SQL: &str = r#"\set n random(1, 2000000000)
BEGIN;
INSERT INTO clerk_sync.webhook_events (svix_id, headers, body, event_type, object_id, event_timestamp, job_id)
SELECT 'pgb_' || :client_id || '_' || :n || '_' || txid_current(),
       jsonb_build_object('svix-id', 'msg_x', 'svix-timestamp', '1760000000', 'svix-signature', 'v1,abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG='),
       f.body, 'user.created', 'user_x', now(), 'j' || :client_id || '_' || :n || '_' || txid_current()
FROM public.bench_fixture f
ON CONFLICT (svix_id) DO NOTHING RETURNING id;
INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority, metadata, idempotency_key)
VALUES ('j' || :client_id || '_' || :n || '_' || txid_current(), 'clerk-sync' || chr(58) || 'event',
        convert_to(CAST(jsonb_build_object('event_id', 1) AS text), 'UTF8'), 'Pending', 0, 1000,
        to_timestamp(CAST(extract(epoch FROM now()) AS bigint) - 1), 0, hstore(CAST(ARRAY[] AS text[])), NULL);
COMMIT;
"#;

/// The worker's users upsert (the statement `mirror::Kind::upsert_sql` builds, the same
/// text) for one new user each time: its array parameters become one-element arrays of
/// pgbench expressions, the object read from the fixture table.
fn upsert_script() -> anyhow::Result<String> {
    let users = clerk_sync_core::mirror::Kind::by_name("users").context("no users kind")?;
    let args = [
        "ARRAY['user_pgb_' || :n]",
        "ARRAY[(SELECT data FROM public.bench_fixture)]",
        "ARRAY[now()]",
        "ARRAY[now()]",
        "ARRAY[false]",
        "true",
    ];
    let mut script = format!("\\set n random(1, 2000000000)\n{};\n", users.upsert_sql());
    for (i, arg) in args.iter().enumerate().rev() {
        script = script.replace(&format!("${}", i + 1), arg);
    }
    if script.contains('$') {
        bail!("the users upsert has parameters the bench does not fill: {script}");
    }
    Ok(script)
}
