//! Every binary, given a bad setting or a database it cannot use, exits non-zero with one
//! line on stderr, `error: …`, naming the setting or the fix; with `RUST_BACKTRACE=1` too.
//! Each case compares the whole of stderr.

use std::time::Duration;

use clerk_sync_tests::{
    TestDb,
    db::server_url,
    procs::{bin, free_port},
    signing::SECRET,
};
use sqlx::postgres::PgConnectOptions;

struct Case<'a> {
    bin: &'a str,
    args: &'a [&'a str],
    env: Vec<(&'a str, String)>,
    code: i32,
    stderr: String,
}

/// Runs one binary with only the given environment (nothing inherited but PATH, so no
/// stray DATABASE_URL of the test run's own).
async fn run(case: &Case<'_>) -> (i32, String) {
    let mut command = tokio::process::Command::new(bin(case.bin));
    command
        .args(case.args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_BACKTRACE", "1")
        .env("LOG_FORMAT", "json")
        .envs(case.env.iter().map(|(k, v)| (k, v.as_str())))
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .unwrap_or_else(|_| panic!("{} {:?} did not exit", case.bin, case.args))
        .expect("running the binary");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn check(cases: &[Case<'_>]) {
    let mut wrong = Vec::new();
    for case in cases {
        let (code, stderr) = run(case).await;
        if (code, stderr.as_str()) != (case.code, case.stderr.as_str()) {
            wrong.push(format!(
                "{} {:?} {:?}\n  expected {} {:?}\n  got      {code} {stderr:?}",
                case.bin,
                case.args,
                case.env.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
                case.code,
                case.stderr
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

fn line(text: &str) -> String {
    format!("error: {text}\n")
}

fn case<'a>(
    bin: &'a str,
    args: &'a [&'a str],
    env: &[(&'a str, &str)],
    code: i32,
    text: &str,
) -> Case<'a> {
    Case {
        bin,
        args,
        env: env.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
        code,
        stderr: line(text),
    }
}

const SERVICES: [&str; 2] = ["clerk-sync-ingest", "clerk-sync-worker"];

#[tokio::test]
async fn bad_settings_exit_2_with_one_line_naming_the_variable_and_the_flag() {
    let url = "postgres://nobody@127.0.0.1:1/none";
    let db = ("DATABASE_URL", url);
    let secret = ("CLERK_WEBHOOK_SECRET", SECRET);
    let mut cases = Vec::new();
    for bin in SERVICES {
        cases.extend([
            case(bin, &[], &[secret], 2, "DATABASE_URL (--database-url) is not set"),
            case(
                bin,
                &[],
                &[secret, ("DATABASE_URL", "mysql://root:hunter2@db/app")],
                2,
                "DATABASE_URL (--database-url): mysql:// is not PostgreSQL (expected postgres:// or postgresql://)",
            ),
            case(
                bin,
                &[],
                &[secret, ("DATABASE_URL", "hunter2")],
                2,
                "DATABASE_URL (--database-url): not a URL (expected postgres://user:password@host:port/database)",
            ),
            case(
                bin,
                &[],
                &[secret, db, ("DB_MAX_CONNECTIONS", "0")],
                2,
                "DB_MAX_CONNECTIONS (--db-max-connections): 0 is not in 1..=1000"
                    .replace(
                        "1..=1000",
                        if bin == "clerk-sync-worker" { "2..=1000" } else { "1..=1000" },
                    )
                    .as_str(),
            ),
            case(
                bin,
                &[],
                &[secret, db, ("LOG_FORMAT", "xml")],
                2,
                "LOG_FORMAT (--log-format): 'xml' is not one of pretty, json",
            ),
            case(bin, &["--nope"], &[secret, db], 2, "unexpected argument '--nope' found"),
        ]);
    }
    let ingest = "clerk-sync-ingest";
    cases.extend([
        case(ingest, &[], &[db], 2, "CLERK_WEBHOOK_SECRET (--clerk-webhook-secret) is not set"),
        case(
            ingest,
            &[],
            &[db, ("CLERK_WEBHOOK_SECRET", "whsec_***")],
            2,
            "CLERK_WEBHOOK_SECRET (--clerk-webhook-secret): secret #1 is not a valid whsec_… value: not base64 after the whsec_ prefix",
        ),
        case(
            ingest,
            &[],
            &[db, secret, ("MAX_BODY_BYTES", "0")],
            2,
            "MAX_BODY_BYTES (--max-body-bytes): 0 is not in 1024..=67108864",
        ),
        case(
            ingest,
            &[],
            &[db, secret, ("REQUEST_TIMEOUT_MS", "ten")],
            2,
            "REQUEST_TIMEOUT_MS (--request-timeout-ms): invalid digit found in string",
        ),
        case(
            ingest,
            &[],
            &[db, secret, ("LISTEN_ADDR", "8080")],
            2,
            "LISTEN_ADDR (--listen-addr): invalid socket address syntax",
        ),
    ]);
    let worker = "clerk-sync-worker";
    for (name, flag, value, range) in [
        ("MAX_ATTEMPTS", "max-attempts", "0", "1..=1000"),
        ("APPLY_BATCH", "apply-batch", "0", "1..=10000"),
        ("APPLY_TRANSACTIONS", "apply-transactions", "0", "1..=256"),
        ("WORKER_CONCURRENCY", "worker-concurrency", "0", "1..=10000"),
        ("POLL_INTERVAL_MS", "poll-interval-ms", "0", "10..=60000"),
        (
            "HEARTBEAT_INTERVAL_SECS",
            "heartbeat-interval-secs",
            "0",
            "1..=300",
        ),
        ("JOB_TIMEOUT_MS", "job-timeout-ms", "0", "100..=600000"),
        ("RETENTION_HOURS", "retention-hours", "0", "1..=87600"),
        ("ROLLUP_GRACE_SECS", "rollup-grace-secs", "0", "1..=3600"),
        (
            "RETRY_BASE_DELAY_MS",
            "retry-base-delay-ms",
            "0",
            "1..=3600000",
        ),
        (
            "RETRY_MAX_DELAY_MS",
            "retry-max-delay-ms",
            "0",
            "1..=86400000",
        ),
    ] {
        cases.push(Case {
            bin: worker,
            args: &[],
            env: vec![("DATABASE_URL", url.to_owned()), (name, value.to_owned())],
            code: 2,
            stderr: line(&format!("{name} (--{flag}): {value} is not in {range}")),
        });
    }
    cases.extend([
        case(
            worker,
            &[],
            &[db, ("RETRY_BASE_DELAY_MS", "5000"), ("RETRY_MAX_DELAY_MS", "1000")],
            2,
            "RETRY_MAX_DELAY_MS (--retry-max-delay-ms): 1000 is less than RETRY_BASE_DELAY_MS (5000)",
        ),
        case(
            worker,
            &[],
            &[db, ("JOB_TIMEOUT_MS", "90000"), ("ROLLUP_GRACE_SECS", "60")],
            2,
            "ROLLUP_GRACE_SECS (--rollup-grace-secs): 60 s is not longer than JOB_TIMEOUT_MS (90000 ms)",
        ),
        case(
            worker,
            &[],
            &[db, ("APPLY_TRANSACTIONS", "8"), ("DB_MAX_CONNECTIONS", "8")],
            2,
            "DB_MAX_CONNECTIONS (--db-max-connections): 8 leaves no connection beside APPLY_TRANSACTIONS (8); give it at least 9",
        ),
        case(
            worker,
            &[],
            &[db, ("METRICS_ADDR", "localhost")],
            2,
            "METRICS_ADDR (--metrics-addr): invalid socket address syntax",
        ),
    ]);
    let cli = "clerk-sync";
    cases.extend([
        case(cli, &["status"], &[], 2, "DATABASE_URL (--database-url) is not set"),
        case(cli, &["status", "--nope"], &[db], 2, "unexpected argument '--nope' found"),
        case(cli, &["replay"], &[db], 2, "missing <ID>..."),
        case(cli, &["send-test-event"], &[secret], 2, "missing <TYPE>"),
        case(cli, &["failed", "--limit"], &[db], 2, "--limit: a value is required"),
        case(cli, &["failed", "--limit", "0"], &[db], 2, "--limit: 0 is not in 1..=10000"),
        case(
            cli,
            &["backfill"],
            &[db, ("CLERK_SECRET_KEY", "sk_test_x"), ("CLERK_API_URL", "ftp://clerk")],
            2,
            "CLERK_API_URL (--clerk-api-url): not an http:// or https:// URL",
        ),
        case(
            cli,
            &["backfill", "--concurrency", "0"],
            &[db, ("CLERK_SECRET_KEY", "sk_test_x")],
            2,
            "--concurrency: 0 is not in 1..=64",
        ),
        case(cli, &["backfill"], &[db], 2, "CLERK_SECRET_KEY (--clerk-secret-key) is not set"),
        case(
            cli,
            &["send-test-event", "user.created"],
            &[("CLERK_WEBHOOK_SECRET", "whsec_***")],
            2,
            "CLERK_WEBHOOK_SECRET (--clerk-webhook-secret): secret #1 is not a valid whsec_… value: not base64 after the whsec_ prefix",
        ),
    ]);
    check(&cases).await;
}

#[tokio::test]
async fn a_database_that_cannot_be_used_is_one_line_that_says_why() {
    let server: PgConnectOptions = server_url().parse().unwrap();
    let at = format!("{}:{}", server.get_host(), server.get_port());
    let migrated = TestDb::new().await;
    let empty = TestDb::empty().await;
    let refused = "postgres://nobody@127.0.0.1:1/none".to_owned();
    let no_db = migrated
        .url
        .replace(&migrated.name, "clerk_sync_no_such_db");
    let no_role = format!("postgres://clerk_sync_no_such_role@{at}/postgres");
    let no_host = "postgres://postgres@clerk-sync-no-such-host.invalid:5432/postgres".to_owned();
    let unreachable = [
        (refused, "127.0.0.1:1 (connection refused)".to_owned()),
        (
            no_db,
            format!("{at} (database \"clerk_sync_no_such_db\" does not exist)"),
        ),
        (
            no_role,
            format!("{at} (role \"clerk_sync_no_such_role\" does not exist)"),
        ),
        (
            no_host,
            "clerk-sync-no-such-host.invalid:5432 (unknown host)".to_owned(),
        ),
    ];
    let not_migrated = "the database is not migrated; run `clerk-sync migrate`";
    let mut cases = Vec::new();
    let targets: [(&str, &[&str]); 5] = [
        ("clerk-sync-ingest", &[]),
        ("clerk-sync-worker", &[]),
        ("clerk-sync", &["status"]),
        ("clerk-sync", &["failed"]),
        ("clerk-sync", &["replay", "--all"]),
    ];
    for (bin, args) in targets {
        let base = |url: &str| {
            vec![
                ("DATABASE_URL", url.to_owned()),
                ("CLERK_WEBHOOK_SECRET", SECRET.to_owned()),
                ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
                ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
            ]
        };
        for (url, why) in &unreachable {
            cases.push(Case {
                bin,
                args,
                env: base(url),
                code: 1,
                stderr: line(&format!(
                    "cannot connect to PostgreSQL at {why}; check DATABASE_URL"
                )),
            });
        }
        cases.push(Case {
            bin,
            args,
            env: base(&empty.url),
            code: 1,
            stderr: line(not_migrated),
        });
    }
    // `migrate` needs no schema, only a database it can reach.
    cases.push(Case {
        bin: "clerk-sync",
        args: &["migrate"],
        env: vec![("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none".into())],
        code: 1,
        stderr: line(
            "cannot connect to PostgreSQL at 127.0.0.1:1 (connection refused); check DATABASE_URL",
        ),
    });
    check(&cases).await;
}

#[tokio::test]
async fn a_port_in_use_names_the_address_and_the_setting() {
    let db = TestDb::new().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let env = |setting: &'static str| {
        vec![
            ("DATABASE_URL", db.url.clone()),
            ("CLERK_WEBHOOK_SECRET", SECRET.to_owned()),
            ("LISTEN_ADDR", format!("127.0.0.1:{}", free_port())),
            ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
            (setting, addr.clone()),
        ]
    };
    check(&[
        Case {
            bin: "clerk-sync-ingest",
            args: &[],
            env: env("LISTEN_ADDR"),
            code: 1,
            stderr: line(&format!(
                "LISTEN_ADDR: cannot listen on {addr}: address already in use"
            )),
        },
        Case {
            bin: "clerk-sync-worker",
            args: &[],
            env: env("METRICS_ADDR"),
            code: 1,
            stderr: line(&format!(
                "METRICS_ADDR: cannot listen on {addr}: address already in use"
            )),
        },
    ])
    .await;
}

#[tokio::test]
async fn a_stalled_clerk_api_ends_backfill_with_a_timeout_naming_clerk_api_url() {
    let db = TestDb::new().await;
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let started = std::time::Instant::now();
    check(&[Case {
        bin: "clerk-sync",
        args: &["backfill", "--users", "--max-retries", "0"],
        env: vec![
            ("DATABASE_URL", db.url.clone()),
            ("CLERK_SECRET_KEY", "sk_test_stalled".into()),
            ("CLERK_API_URL", api.clone()),
            ("CLERK_API_TIMEOUT_MS", "300".into()),
        ],
        code: 1,
        stderr: line(&format!(
            "backfilling users (run again to resume): CLERK_API_URL: GET \
             {api}/v1/users?limit=500&offset=0&order_by=%2Bcreated_at: no answer within 300 ms"
        )),
    }])
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    held.abort();
}

#[tokio::test]
async fn help_and_version_keep_clap_output() {
    for name in ["clerk-sync", "clerk-sync-ingest", "clerk-sync-worker"] {
        let out = tokio::process::Command::new(bin(name))
            .arg("--version")
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{name} {}\n", env!("CARGO_PKG_VERSION"))
        );
        let out = tokio::process::Command::new(bin(name))
            .arg("--help")
            .output()
            .await
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("Usage:"), "{help}");
    }
    let out = tokio::process::Command::new(bin("clerk-sync-worker"))
        .arg("--help")
        .output()
        .await
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("[1..=1000]"), "ranges are documented: {help}");
}

#[tokio::test]
async fn the_start_up_check_passes_for_the_least_privilege_roles() {
    let db = TestDb::new().await;
    sqlx::raw_sql(include_str!("../../deploy/sql/roles.sql"))
        .execute(&db.pool)
        .await
        .unwrap();
    let mut logins = Vec::new();
    for group in ["clerk_sync_ingest", "clerk_sync_worker"] {
        let name = format!("{group}_c{}_{:x}", std::process::id(), fastrand::u32(..));
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE ROLE {name} LOGIN IN ROLE {group}"
        )))
        .execute(&db.pool)
        .await
        .unwrap();
        let url = db
            .url
            .replacen("postgres://postgres@", &format!("postgres://{name}@"), 1);
        assert_ne!(url, db.url, "the test URL names user postgres");
        clerk_sync_core::db::check(&url)
            .await
            .unwrap_or_else(|e| panic!("{group}: {e:#}"));
        logins.push((name, url));
    }
    // A schema older than this version is "not migrated" for them too: they may read
    // which migrations are applied.
    sqlx::query(
        "DELETE FROM clerk_sync._sqlx_migrations \
         WHERE version = (SELECT max(version) FROM clerk_sync._sqlx_migrations)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    for (name, url) in &logins {
        let err = clerk_sync_core::db::check(url).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the database is not migrated; run `clerk-sync migrate`",
            "{name}"
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP ROLE {name}")))
            .execute(&db.pool)
            .await
            .unwrap();
    }
}
