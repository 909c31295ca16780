//! A private PostgreSQL cluster that a test starts, stops and restarts itself, so that
//! outages touch no other test. Uses the server binaries of the machine's PostgreSQL
//! (deploy/db.sh installs them where missing).

use std::{path::PathBuf, process::Command};

pub struct PgCluster {
    pub port: u16,
    dir: PathBuf,
    bin: PathBuf,
}

fn pg_bin_dir() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    dirs.retain(|d| d.join("initdb").exists());
    dirs.sort_by_key(|d| {
        d.parent()
            .and_then(|p| p.file_name())
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop().expect(
        "PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql: \
         install Debian's postgresql package (deploy/db.sh does)",
    )
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false)
}

impl PgCluster {
    /// Runs a server binary; as root, as the `postgres` user (PostgreSQL refuses root).
    fn run(&self, tool: &str, args: &[&str]) {
        let path = self.bin.join(tool);
        let status = if is_root() {
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(&path)
                .args(args)
                .stdout(std::process::Stdio::null())
                .status()
        } else {
            Command::new(&path)
                .args(args)
                .stdout(std::process::Stdio::null())
                .status()
        }
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(status.success(), "{tool} {args:?} failed");
    }

    pub fn start_new() -> Self {
        let bin = pg_bin_dir();
        let port = crate::procs::free_port();
        let dir = std::env::temp_dir().join(format!("clerk-sync-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            assert!(
                Command::new("chown")
                    .args(["postgres:"])
                    .arg(&dir)
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let cluster = Self { port, dir, bin };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &["-D", &data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        );
        cluster.start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    pub fn start(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c max_connections=100 -c fsync=off",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log").to_string_lossy().into_owned();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-l",
                &log,
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
        );
    }

    /// A fast shutdown: connections are cut, as in a crash or a failover.
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-w", "-t", "60", "-m", "fast", "stop"],
        );
    }

    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = std::panic::catch_unwind(|| {
            self.run("pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"])
        });
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
