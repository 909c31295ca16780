#!/usr/bin/env bash
# Builds the previous release's binaries for the rolling-upgrade test (tests/e2e/upgrade.rs)
# and prints the directory that holds them (progress on stderr).
#
# The previous release is the newest commit on HEAD's first-parent line (main's history of
# merges) whose migrations/ differ from HEAD's: the binaries that ran against the schema
# before the last schema change, which must keep working while the new migrations are
# applied under them. OLD_RELEASE=<rev> picks another commit.
#
# It is built from a throwaway `git worktree` into target/old-release, which starts as a
# copy of target/debug's dependencies (so only clerk-sync's own crates compile) and stays
# for the next run. A shallow clone is deepened from its remote; without that history the
# script says so and fails.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
log() { echo "old-release.sh: $*" >&2; }
die() { log "$*"; exit 1; }

previous_release() {
  local c
  for c in $(git rev-list --first-parent HEAD); do
    if ! git diff --quiet "$c" HEAD -- migrations/; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

if [[ -n ${OLD_RELEASE:-} ]]; then
  old=$(git rev-parse --verify --quiet "$OLD_RELEASE^{commit}") ||
    die "OLD_RELEASE=$OLD_RELEASE is not a commit here"
elif ! old=$(previous_release); then
  if [[ $(git rev-parse --is-shallow-repository) == true ]]; then
    log "shallow clone: fetching the rest of the history to find the previous release"
    git fetch --quiet --unshallow >&2 ||
      die "cannot deepen this shallow clone (git fetch --unshallow failed); the upgrade test needs the previous release's commit: clone with full history (e.g. fetch-depth: 0)"
    old=$(previous_release) || die "no commit on HEAD's first-parent line has other migrations than HEAD: no previous release to upgrade from"
  else
    die "no commit on HEAD's first-parent line has other migrations than HEAD: no previous release to upgrade from"
  fi
fi
log "previous release: $(git log -1 --format='%h %s' "$old")"

target=$root/target/old-release
if [[ ! -d $target/debug/deps ]]; then
  [[ -d $root/target/debug/deps ]] || die "target/debug is not built: run cargo build --workspace --bins first"
  log "seeding $target from target/debug's dependencies"
  mkdir -p "$target/debug"
  # A real copy, not hard links: cargo and rustc rewrite some files in place (fingerprints,
  # build-script output), which through a hard link would change target/debug too.
  # clerk-sync's own crates are left out (they are what this build compiles), and so are
  # executables (tests' and binaries'): only libraries are reused.
  mkdir -p "$target/debug/deps" "$target/debug/build" "$target/debug/.fingerprint"
  find "$root/target/debug/deps" -mindepth 1 -maxdepth 1 -name 'lib*' ! -name 'libclerk_sync*' \
    -exec cp -a -t "$target/debug/deps" {} +
  for d in build .fingerprint; do
    find "$root/target/debug/$d" -mindepth 1 -maxdepth 1 ! -name 'clerk-sync*' \
      -exec cp -a -t "$target/debug/$d" {} +
  done
fi

tree=$(mktemp -d "${TMPDIR:-/tmp}/clerk-sync-old-release.XXXXXX")
cleanup() { git worktree remove --force "$tree" >/dev/null 2>&1 || rm -rf "$tree"; git worktree prune; }
trap cleanup EXIT
git worktree add --quiet --detach "$tree" "$old" >&2
log "building $(git rev-parse --short "$old") into $target"
(cd "$tree" && SQLX_OFFLINE=true CARGO_TARGET_DIR=$target cargo build --quiet --workspace --bins >&2)
for bin in clerk-sync clerk-sync-ingest clerk-sync-worker; do
  [[ -x $target/debug/$bin ]] || die "the previous release's build made no $bin"
done
echo "$target/debug"
