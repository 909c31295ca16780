#!/usr/bin/env bash
# Soak: 20 minutes at 200 events/s through the release binaries on a private PostgreSQL
# cluster, a worker SIGKILLed every minute and PostgreSQL restarted every 5 minutes.
# Prints events lost (must be 0), lag p50/p99 and every process's RSS over time
# (tests/e2e/soak.rs; CI runs the same test for 2 minutes).
#
#   bash bench/soak.sh                 # 20 minutes
#   SOAK_SECONDS=300 bash bench/soak.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

DATABASE_URL=$(bash deploy/db.sh) # installs PostgreSQL here if there is none
export DATABASE_URL SQLX_OFFLINE=true
export SOAK_SECONDS=${SOAK_SECONDS:-1200} SOAK_RATE=${SOAK_RATE:-200}
export SOAK_KILL_EVERY=${SOAK_KILL_EVERY:-60} SOAK_RESTART_EVERY=${SOAK_RESTART_EVERY:-300}
cargo build --release --bins -q
cargo test --release -q -p clerk-sync-tests --test e2e -- --ignored --exact \
  soak::soak_with_worker_kills_and_postgres_restarts_loses_nothing --nocapture 2>&1 \
  | grep -E '^soak:|panicked|test result'
