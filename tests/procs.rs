//! The real binaries, as built by `cargo build --workspace --bins` (deploy/test.sh does), or
//! another build's (the previous release's, for the upgrade test) through [`Bins`].

use std::path::{Path, PathBuf};

/// The path of one of the workspace's binaries, next to this test's target directory.
pub fn bin(name: &str) -> PathBuf {
    Bins::current().path(name)
}

/// `clerk-sync-worker` as a child process on `database_url`, with test-sized timings.
/// Its logs go to a file in the temp dir, named after `label`.
pub fn spawn_worker(database_url: &str, label: &str) -> tokio::process::Child {
    spawn_worker_with(database_url, label, &[])
}

/// Like [`spawn_worker`], with extra environment settings.
pub fn spawn_worker_with(
    database_url: &str,
    label: &str,
    env: &[(&str, &str)],
) -> tokio::process::Child {
    Bins::current().worker(database_url, label, env)
}

/// A directory of clerk-sync binaries: this build's ([`Bins::current`]) or another's.
#[derive(Debug, Clone)]
pub struct Bins {
    dir: PathBuf,
}

impl Bins {
    /// This build's binaries, next to the test executable.
    pub fn current() -> Self {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>
        let dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target directory");
        Self::at(dir)
    }

    /// The binaries in `dir`.
    pub fn at(dir: impl AsRef<Path>) -> Self {
        Self {
            dir: dir.as_ref().to_owned(),
        }
    }

    /// One of the binaries; it must have been built.
    pub fn path(&self, name: &str) -> PathBuf {
        let path = self.dir.join(name);
        assert!(
            path.exists(),
            "{} is missing: build the binaries first (cargo build --workspace --bins, as \
             deploy/test.sh does; the previous release's: deploy/old-release.sh)",
            path.display()
        );
        path
    }

    /// `clerk-sync-worker` with test-sized timings, like [`spawn_worker_with`].
    pub fn worker(
        &self,
        database_url: &str,
        label: &str,
        env: &[(&str, &str)],
    ) -> tokio::process::Child {
        let defaults = [
            ("METRICS_ADDR", "127.0.0.1:0"),
            ("HEARTBEAT_INTERVAL_SECS", "1"),
            ("POLL_INTERVAL_MS", "100"),
            ("RETRY_BASE_DELAY_MS", "200"),
            ("WORKER_CONCURRENCY", "4"),
        ];
        spawn(
            &self.path("clerk-sync-worker"),
            database_url,
            label,
            &defaults,
            env,
        )
    }

    /// `clerk-sync-ingest` on 127.0.0.1:`port`, like [`spawn_ingest`].
    pub fn ingest(
        &self,
        database_url: &str,
        port: u16,
        label: &str,
        env: &[(&str, &str)],
    ) -> tokio::process::Child {
        let listen = format!("127.0.0.1:{port}");
        let defaults = [
            ("CLERK_WEBHOOK_SECRET", crate::signing::SECRET),
            ("LISTEN_ADDR", listen.as_str()),
            ("METRICS_ADDR", "127.0.0.1:0"),
        ];
        spawn(
            &self.path("clerk-sync-ingest"),
            database_url,
            label,
            &defaults,
            env,
        )
    }

    /// Runs the `clerk-sync` CLI to completion, like [`cli_with`].
    pub async fn cli(&self, database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
        let out = tokio::process::Command::new(self.path("clerk-sync"))
            .args(args)
            .env("DATABASE_URL", database_url)
            .env("CLERK_WEBHOOK_SECRET", crate::signing::SECRET)
            .env("LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .output()
            .await
            .expect("running clerk-sync");
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// One of the service binaries, logging JSON to [`log_path`]`(label)`; `env` wins over
/// `defaults`.
fn spawn(
    program: &Path,
    database_url: &str,
    label: &str,
    defaults: &[(&str, &str)],
    env: &[(&str, &str)],
) -> tokio::process::Child {
    let log = std::fs::File::create(log_path(label)).expect("log file");
    tokio::process::Command::new(program)
        .env("DATABASE_URL", database_url)
        .env("LOG_FORMAT", "json")
        .envs(defaults.iter().copied())
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {}: {e}", program.display()))
}

/// Waits for `child` to exit, at most `within`, and asserts that it exited 0.
pub async fn exits_zero(
    child: &mut tokio::process::Child,
    within: std::time::Duration,
    what: &str,
) {
    let status = tokio::time::timeout(within, child.wait())
        .await
        .unwrap_or_else(|_| panic!("{what} did not exit within {within:?}"))
        .unwrap();
    assert_eq!(status.code(), Some(0), "{what} exited with {status}");
}

/// A number a long test reads from its environment (`SOAK_SECONDS=1200`), or `default`.
pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sends a signal by name (`TERM`, `KILL`) to a child process.
pub fn signal(child: &tokio::process::Child, name: &str) {
    let pid = child.id().expect("child is running").to_string();
    let ok = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{name} {pid}");
}

/// What a finished `clerk-sync` run printed.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `clerk-sync` CLI to completion.
pub async fn cli(database_url: &str, args: &[&str]) -> Output {
    cli_with(database_url, args, &[]).await
}

/// Like [`cli`], with extra environment settings.
pub async fn cli_with(database_url: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Bins::current().cli(database_url, args, env).await
}

/// The log file of a process started with `label`.
pub fn log_path(label: &str) -> PathBuf {
    std::env::temp_dir().join(format!("clerk-sync-{label}.log"))
}

/// A free TCP port on 127.0.0.1 (bound, then released for the child to take).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("binding port 0");
    l.local_addr().expect("local addr").port()
}

/// `clerk-sync-ingest` as a child process on 127.0.0.1:`port`; logs to [`log_path`].
pub fn spawn_ingest(
    database_url: &str,
    port: u16,
    label: &str,
    env: &[(&str, &str)],
) -> tokio::process::Child {
    Bins::current().ingest(database_url, port, label, env)
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub async fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}
