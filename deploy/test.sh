#!/usr/bin/env bash
# Runs the whole test suite against a real PostgreSQL (found or started by deploy/db.sh).
# Each test makes its own database from a migrated template and drops it afterwards.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

DATABASE_URL=$(bash deploy/db.sh)
export DATABASE_URL

# What the tests drive for real besides PostgreSQL, from Debian's packages when missing:
# PgBouncer (Supabase's poolers as they are); headless Chromium and its WebDriver for the
# console's browser tests.
missing=()
[[ -x /usr/sbin/pgbouncer ]] || command -v pgbouncer >/dev/null || missing+=(pgbouncer)
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
[[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
if ((${#missing[@]})); then
  echo "test.sh: installing ${missing[*]}" >&2
  as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
# apalis-postgres checks its own queries from committed metadata; never against our database.
export SQLX_OFFLINE=true

# The end-to-end tests run the real binaries: build them once, with the tests.
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
# The soak's 2-minute version (tests/e2e/soak.rs), alone: beside the parallel suite the
# machine, not clerk-sync, would be what it measures.
cargo test -q -p clerk-sync-tests --test e2e -- --ignored --exact \
  soak::soak_with_worker_kills_and_postgres_restarts_loses_nothing --nocapture
# The rolling upgrade (tests/e2e/upgrade.rs), alone: the previous release's binaries
# (deploy/old-release.sh builds them from the last commit before HEAD's migrations) under
# the new migrations, beside the new binaries, then replaced by them.
OLD_RELEASE_BIN=$(bash deploy/old-release.sh)
export OLD_RELEASE_BIN
cargo test -q -p clerk-sync-tests --test e2e -- --ignored --exact \
  upgrade::rolling_upgrade_from_the_previous_release_loses_nothing_and_changes_nothing --nocapture
