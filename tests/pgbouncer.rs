//! A real PgBouncer (Debian's `pgbouncer`, installed by deploy/test.sh) in front of the
//! test server, in the pool mode a test asks for: Supabase's poolers as they are.

use std::{path::PathBuf, process::Command};

use sqlx::postgres::PgConnectOptions;

pub struct PgBouncer {
    pub port: u16,
    dir: PathBuf,
    pid: Option<u32>,
}

/// `session` or `transaction`.
pub enum PoolMode {
    Session,
    Transaction,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

impl PgBouncer {
    /// Starts one on a free port, pooling the test server (`DATABASE_URL`) with trust
    /// authentication for its user.
    pub fn start(mode: PoolMode) -> Self {
        let server: PgConnectOptions = crate::db::server_url().parse().expect("DATABASE_URL");
        let user = server.get_username().to_owned();
        let port = crate::procs::free_port();
        let dir = std::env::temp_dir().join(format!(
            "clerk-sync-pgbouncer-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mode = match mode {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
        };
        std::fs::write(dir.join("userlist.txt"), format!("\"{user}\" \"\"\n")).unwrap();
        std::fs::write(
            dir.join("pgbouncer.ini"),
            format!(
                "[databases]\n* = host={host} port={server_port}\n\n[pgbouncer]\n\
                 listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = trust\nauth_file = {dir}/userlist.txt\npool_mode = {mode}\n\
                 max_client_conn = 200\ndefault_pool_size = 20\n\
                 logfile = {dir}/pgbouncer.log\npidfile = {dir}/pgbouncer.pid\n",
                host = server.get_host(),
                server_port = server.get_port(),
                dir = dir.display(),
            ),
        )
        .unwrap();
        let binary = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .expect(
                "pgbouncer is not installed: deploy/test.sh installs Debian's pgbouncer package",
            );
        let config = dir.join("pgbouncer.ini").to_string_lossy().into_owned();
        // PgBouncer refuses to run as root.
        let status = if is_root() {
            Command::new("chown")
                .arg("-R")
                .arg("postgres:")
                .arg(&dir)
                .status()
                .unwrap();
            Command::new("runuser")
                .args(["-u", "postgres", "--", binary, "-d", &config])
                .status()
        } else {
            Command::new(binary).args(["-d", &config]).status()
        }
        .expect("starting pgbouncer");
        assert!(
            status.success(),
            "pgbouncer did not start: see {}",
            dir.display()
        );
        let pid = (0..100)
            .find_map(|_| {
                let pid = std::fs::read_to_string(dir.join("pgbouncer.pid")).ok();
                if pid.is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                pid
            })
            .and_then(|p| p.trim().parse().ok());
        Self { port, dir, pid }
    }

    /// The URL of `database` through this pooler.
    pub fn url(&self, database: &str) -> String {
        let server: PgConnectOptions = crate::db::server_url().parse().expect("DATABASE_URL");
        format!(
            "postgres://{}@127.0.0.1:{}/{database}",
            server.get_username(),
            self.port
        )
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
