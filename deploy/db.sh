#!/usr/bin/env bash
# Finds or starts PostgreSQL for this checkout.
#
#   bash deploy/db.sh           prints a working DATABASE_URL on stdout (progress on stderr):
#     1. $DATABASE_URL, if set;
#     2. else a server on 127.0.0.1:5432 that accepts user postgres without a password
#        (CLERK_SYNC_PRIVATE_PG=1 skips it);
#     3. else this checkout's private cluster under .local/pg, created with initdb and started
#        with pg_ctl (Debian's postgresql package is installed if needed). Its port comes from
#        the checkout's path and is kept in .local/pg/port (PRIVATE_PG_PORT overrides it), so
#        two checkouts never share a cluster. It keeps running after the command that
#        started it, until `bash deploy/db.sh stop`.
#   bash deploy/db.sh status    whether this checkout's private cluster runs, and where
#   bash deploy/db.sh stop      stops it (its data stays, for the next start)
#   bash deploy/db.sh reset     stops it and deletes it (.local/pg)
#
# The database named by DB_NAME (default clerk_sync) is created if missing.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=deploy/net.sh
source "$root/deploy/net.sh"
db_name=${DB_NAME:-clerk_sync}
dir=$root/.local/pg
data=$dir/data
log() { echo "db.sh: $*" >&2; }
die() { log "$*"; exit 1; }

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }
run_pg() { # runs a PostgreSQL tool as a user it accepts (not root)
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_bin() {
  local bindir
  bindir=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  [[ -n "$bindir" && -x "$bindir/$1" ]] && { echo "$bindir/$1"; return; }
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

# --- this checkout's private cluster ---------------------------------------------------

running() { [[ -f $data/postmaster.pid ]] && [[ -n $(pg_bin pg_ctl) ]] && run_pg "$(pg_bin pg_ctl)" -D "$data" status >/dev/null 2>&1; }
# The port a running cluster listens on: line 4 of its postmaster.pid.
running_port() { sed -n 4p "$data/postmaster.pid"; }

# A port in 55000-55999 from the checkout's path, so that checkouts differ; the next free
# one when something else listens there.
derived_port() {
  local sum p off
  sum=$(printf '%s' "$root" | cksum | cut -d' ' -f1)
  for off in $(seq 0 99); do
    p=$((55000 + (sum + off) % 1000))
    port_in_use "$p" || { echo "$p"; return 0; }
  done
  die "no free port in 55000-55999 for the private cluster; set PRIVATE_PG_PORT"
}

private_port() {
  local p holder
  if [[ -n ${PRIVATE_PG_PORT:-} ]]; then
    p=$PRIVATE_PG_PORT
  elif [[ -f $dir/port ]]; then
    p=$(cat "$dir/port")
  else
    derived_port
    return
  fi
  if port_in_use "$p"; then
    holder=$(port_holder "$p")
    if [[ -n ${PRIVATE_PG_PORT:-} ]]; then
      die "port $p (PRIVATE_PG_PORT) is taken${holder:+ by $holder}; choose another PRIVATE_PG_PORT"
    fi
    log "port $p recorded in .local/pg/port is taken${holder:+ by $holder}; choosing another"
    derived_port
    return
  fi
  echo "$p"
}

start_private() {
  local port
  ensure_postgres_installed
  mkdir -p "$dir"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$dir"; fi
  if running; then
    port=$(running_port)
  else
    port=$(private_port)
    if [[ ! -f "$data/PG_VERSION" ]]; then
      log "creating this checkout's private cluster in $data"
      run_pg "$(pg_bin initdb)" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null
    fi
    log "starting the private cluster on 127.0.0.1:$port"
    if ! run_pg "$(pg_bin pg_ctl)" -D "$data" -l "$dir/server.log" -w -t 60 \
      -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=200" start >&2; then
      tail -n 5 "$dir/server.log" | sed 's/^/    /' >&2
      die "the private cluster did not start (log: $dir/server.log)"
    fi
  fi
  echo "$port" >"$dir/port"
  log "using this checkout's private cluster on 127.0.0.1:$port ($dir); it keeps running" \
    "until: bash deploy/db.sh stop"
  ensure_database "postgres://postgres@127.0.0.1:$port/postgres"
}

stop_private() {
  if running; then
    log "stopping the private cluster on 127.0.0.1:$(running_port) ($dir)"
    run_pg "$(pg_bin pg_ctl)" -D "$data" -m fast -w stop >/dev/null
  elif [[ -d $data ]]; then
    log "the private cluster in $dir is not running"
  else
    log "this checkout has no private cluster ($dir)"
  fi
}

case ${1:-url} in
  url) ;;
  status)
    if running; then
      echo "running on 127.0.0.1:$(running_port) ($dir): postgres://postgres@127.0.0.1:$(running_port)/$db_name"
    elif [[ -d $data ]]; then
      echo "stopped ($dir; port $(cat "$dir/port" 2>/dev/null || echo unknown))"
    else
      echo "none ($dir)"
    fi
    exit 0
    ;;
  stop) stop_private; exit 0 ;;
  reset)
    stop_private
    if [[ -d $dir ]]; then
      rm -rf "$dir"
      log "deleted $dir"
    fi
    exit 0
    ;;
  *)
    echo "usage: bash deploy/db.sh [url|status|stop|reset]" >&2
    exit 2
    ;;
esac

if [[ -n "${DATABASE_URL:-}" ]]; then
  echo "$DATABASE_URL"
  exit 0
fi

shared="postgres://postgres@127.0.0.1:5432/postgres"
if [[ -z "${CLERK_SYNC_PRIVATE_PG:-}" ]] && command -v psql >/dev/null 2>&1 \
  && psql "$shared" -tAc 'SELECT 1' >/dev/null 2>&1; then
  log "using the server on 127.0.0.1:5432"
  ensure_database "$shared"
  exit 0
fi

start_private
