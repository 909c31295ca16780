#!/usr/bin/env bash
# Prints a working DATABASE_URL on stdout (progress goes to stderr):
#   1. $DATABASE_URL, if set;
#   2. else a PostgreSQL server on 127.0.0.1:5432 that accepts user postgres without a password;
#   3. else a private cluster under .local/pg of this repository (port 54329), created with
#      initdb and started with pg_ctl, installing Debian's postgresql package if needed.
# The database named by DB_NAME (default clerk_sync) is created if missing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
db_name=${DB_NAME:-clerk_sync}
private_port=${PRIVATE_PG_PORT:-54329}
log() { echo "db.sh: $*" >&2; }

if [[ -n "${DATABASE_URL:-}" ]]; then
  echo "$DATABASE_URL"
  exit 0
fi

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

pg_bin() {
  local dir
  dir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  [[ -n "$dir" && -x "$dir/$1" ]] && { echo "$dir/$1"; return; }
  command -v "$1" 2>/dev/null || true
}

ensure_postgres_installed() {
  if [[ -z "$(pg_bin initdb)" || -z "$(command -v psql || true)" ]]; then
    log "installing Debian's postgresql package"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql postgresql-contrib >&2
  fi
}

ensure_database() { # $1: server URL (database postgres)
  local server=$1
  if ! psql "$server" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db_name'" | grep -q 1; then
    psql "$server" -qc "CREATE DATABASE \"$db_name\"" >/dev/null 2>&1 \
      || psql "$server" -tAc "SELECT 1 FROM pg_database WHERE datname = '$db_name'" | grep -q 1
  fi
  echo "${server%/postgres}/$db_name"
}

shared="postgres://postgres@127.0.0.1:5432/postgres"
if [[ -z "${CLERK_SYNC_PRIVATE_PG:-}" ]] && command -v psql >/dev/null 2>&1 \
   && psql "$shared" -tAc 'SELECT 1' >/dev/null 2>&1; then
  log "using the server on 127.0.0.1:5432"
  ensure_database "$shared"
  exit 0
fi

ensure_postgres_installed
dir="$root/.local/pg"
data="$dir/data"
private="postgres://postgres@127.0.0.1:$private_port/postgres"
run_pg() { # run a PostgreSQL tool as a user it accepts (not root)
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
if ! psql "$private" -tAc 'SELECT 1' >/dev/null 2>&1; then
  mkdir -p "$dir"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$dir"; fi
  if [[ ! -f "$data/PG_VERSION" ]]; then
    log "creating a private cluster in $data"
    run_pg "$(pg_bin initdb)" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  log "starting the private cluster on 127.0.0.1:$private_port"
  run_pg "$(pg_bin pg_ctl)" -D "$data" -l "$dir/server.log" -w -t 60 \
    -o "-p $private_port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=200" start >&2
fi
ensure_database "$private"
