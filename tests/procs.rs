//! The real binaries, as built by `cargo build --workspace --bins` (deploy/test.sh does).

use std::path::PathBuf;

/// The path of one of the workspace's binaries, next to this test's target directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (cargo build --workspace --bins), as \
         deploy/test.sh does",
        path.display()
    );
    path
}
