#!/usr/bin/env bash
# Runs the whole test suite against a real PostgreSQL (found or started by deploy/db.sh).
# Each test makes its own database from a migrated template and drops it afterwards.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

DATABASE_URL=$(bash deploy/db.sh)
export DATABASE_URL
# apalis-postgres checks its own queries from committed metadata; never against our database.
export SQLX_OFFLINE=true

# The end-to-end tests run the real binaries: build them once, with the tests.
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
