#!/usr/bin/env bash
# Runs the whole system locally: PostgreSQL (found or started by deploy/db.sh), migrations,
# clerk-sync-ingest and clerk-sync-worker. Once both answer /healthz, sends one signed test
# event and shows it land in clerk.users. Ctrl-C stops ingest and worker.
#
#   bash deploy/dev.sh          start (the default)
#   bash deploy/dev.sh stop     stop this checkout's dev.sh, if one runs, and its private
#                               PostgreSQL cluster, if it has one (the data stays)
#   bash deploy/dev.sh reset    the same, then delete the private cluster (.local/pg)
#
# Addresses (each one is checked free before starting; a taken one is named, with what holds
# it and the setting to change):
#   LISTEN_ADDR          ingest's webhook listener      default 127.0.0.1:8080
#   METRICS_ADDR         the worker's /metrics, /healthz default 127.0.0.1:9091
#   INGEST_METRICS_ADDR  ingest's /metrics, /healthz    default 127.0.0.1:9092 (passed to
#                        ingest as its METRICS_ADDR, for an ingest that has that setting)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
# shellcheck source=deploy/net.sh
source deploy/net.sh

say() { echo "dev.sh: $*" >&2; }
mkdir -p .local/dev
pidfile=.local/dev/dev.pid

stop_dev() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null; then
    say "stopping deploy/dev.sh (pid $pid)"
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
}
case ${1:-start} in
  start) ;;
  stop | reset) stop_dev; exec bash deploy/db.sh "$1" ;;
  *) echo "usage: bash deploy/dev.sh [start|stop|reset]" >&2; exit 2 ;;
esac

listen_addr=${LISTEN_ADDR:-127.0.0.1:8080}
worker_metrics_addr=${METRICS_ADDR:-127.0.0.1:9091}
ingest_metrics_addr=${INGEST_METRICS_ADDR:-127.0.0.1:9092}
# Each process gets its own METRICS_ADDR below, so none is inherited from here.
unset LISTEN_ADDR METRICS_ADDR INGEST_METRICS_ADDR

# NAME SETTING ADDR: refuses to start when ADDR's port is taken, naming what holds it.
require_free() {
  local name=$1 setting=$2 addr=$3 port holder next
  port=$(addr_port "$addr")
  port_in_use "$port" || return 0
  holder=$(port_holder "$port")
  next=$(free_port_after "$port" "$(addr_port "$listen_addr")" "$(addr_port "$worker_metrics_addr")" \
    "$(addr_port "$ingest_metrics_addr")" || true)
  say "port $port is taken${holder:+ by $holder}: $name cannot listen on $setting=$addr."
  if [[ $holder == clerk-sync* ]]; then
    say "  (another deploy/dev.sh? \`bash deploy/dev.sh stop\` in its checkout stops it)"
  fi
  say "  stop that process, or give $name another port, e.g.: $setting=$(connect_host "$addr"):${next:-PORT} bash deploy/dev.sh"
  return 1
}
ok=1
require_free "clerk-sync-ingest" LISTEN_ADDR "$listen_addr" || ok=""
require_free "clerk-sync-worker" METRICS_ADDR "$worker_metrics_addr" || ok=""
[[ -n $ok ]] || exit 1

DATABASE_URL=$(bash deploy/db.sh)
export DATABASE_URL SQLX_OFFLINE=true
if [[ -z "${CLERK_WEBHOOK_SECRET:-}" ]]; then
  # A development secret, kept so that restarts and your terminal agree on it.
  [[ -f .local/dev-secret ]] || echo "whsec_$(head -c 24 /dev/urandom | base64)" > .local/dev-secret
  CLERK_WEBHOOK_SECRET=$(cat .local/dev-secret)
fi
export CLERK_WEBHOOK_SECRET
# Logs go to the terminal and to .local/dev/*.log; keep them readable there.
if [[ -z ${LOG_FORMAT:-} && -t 2 ]]; then export LOG_FORMAT=pretty; fi

cargo build --bins
bin=target/debug
# An ingest with its own METRICS_ADDR serves /metrics and /healthz there as well.
ingest_has_metrics=""
if "$bin/clerk-sync-ingest" --help 2>/dev/null | grep -q '\[env: METRICS_ADDR='; then
  ingest_has_metrics=1
  require_free "clerk-sync-ingest" INGEST_METRICS_ADDR "$ingest_metrics_addr" || exit 1
fi
"$bin/clerk-sync" migrate

names=() pids=() logs=() health=()
# shellcheck disable=SC2329 # run by the EXIT trap
cleanup() {
  trap - EXIT INT TERM
  if ((${#pids[@]})); then kill -TERM "${pids[@]}" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -f "$pidfile"
  if bash deploy/db.sh status 2>/dev/null | grep -q '^running'; then
    echo
    echo "This checkout's private PostgreSQL cluster keeps running: bash deploy/dev.sh stop" \
      "(or reset, to delete it)."
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
echo $$ >"$pidfile"

# NAME HEALTH-ADDR METRICS_ADDR-VALUE [ENV...]: starts target/debug/NAME, its log on the
# terminal and in .local/dev/NAME.log.
start() {
  local name=$1 health_addr=$2 metrics=$3 log=.local/dev/$1.log
  shift 3
  : >"$log"
  env METRICS_ADDR="$metrics" "$@" "$bin/$name" 2> >(tee -a "$log" >&2) &
  names+=("$name") pids+=($!) logs+=("$log") health+=("$health_addr")
}
start clerk-sync-ingest "$listen_addr" "$ingest_metrics_addr" LISTEN_ADDR="$listen_addr"
start clerk-sync-worker "$worker_metrics_addr" "$worker_metrics_addr"

# Up means answering GET /healthz with 200 (ingest on LISTEN_ADDR, or on its own
# METRICS_ADDR where it has one; the worker on METRICS_ADDR).
up() {
  [[ $(http_status "${health[$1]}" /healthz) == 200 ]] ||
    { [[ $1 == 0 && -n $ingest_has_metrics && $(http_status "$ingest_metrics_addr" /healthz) == 200 ]]; }
}
exited() { # I STATUS: reports process I's early exit, with the end of its log.
  say "${names[$1]} exited (status $2) before answering /healthz; the end of ${logs[$1]}:"
  tail -n 20 "${logs[$1]}" | sed 's/^/    /' >&2
}
waiting=(0 1)
for _ in $(seq 300); do
  still=()
  for i in "${waiting[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      rc=0
      wait "${pids[$i]}" || rc=$?
      sleep 0.2 # the last lines through tee
      exited "$i" "$rc"
      exit 1
    fi
    up "$i" || still+=("$i")
  done
  waiting=("${still[@]}")
  ((${#waiting[@]})) || break
  sleep 0.1
done
if ((${#waiting[@]})); then
  for i in "${waiting[@]}"; do
    say "${names[$i]} did not answer GET http://${health[$i]}/healthz within 30 s; the end of ${logs[$i]}:"
    tail -n 20 "${logs[$i]}" | sed 's/^/    /' >&2
  done
  exit 1
fi

host=$(connect_host "$listen_addr")
url="http://$host:$(addr_port "$listen_addr")/webhooks/clerk"
if [[ -n $ingest_has_metrics ]]; then
  ingest_metrics="http://$(connect_host "$ingest_metrics_addr"):$(addr_port "$ingest_metrics_addr")/metrics"
else
  ingest_metrics="http://$host:$(addr_port "$listen_addr")/metrics"
fi
worker_metrics="http://$(connect_host "$worker_metrics_addr"):$(addr_port "$worker_metrics_addr")/metrics"

echo
echo "clerk-sync is running (ingest and worker answer /healthz)."
echo "  webhook URL:  $url   (point Clerk's webhook endpoint here, e.g. through a tunnel)"
echo "  metrics:      $ingest_metrics  and  $worker_metrics"
echo "  logs:         .local/dev/clerk-sync-ingest.log  .local/dev/clerk-sync-worker.log"
echo "  DATABASE_URL: $DATABASE_URL"
echo
echo "Sending a signed test event:"
"$bin/clerk-sync" send-test-event user.created --url "$url"
sleep 1
if command -v psql >/dev/null; then
  psql "$DATABASE_URL" -c "SELECT id, first_name, primary_email_address, updated_at FROM clerk.users ORDER BY synced_at DESC LIMIT 3"
fi
"$bin/clerk-sync" status
cat <<MSG

Send more from another terminal:
  export DATABASE_URL='$DATABASE_URL' CLERK_WEBHOOK_SECRET='$CLERK_WEBHOOK_SECRET'
  $bin/clerk-sync send-test-event organizationMembership.created --url $url
  $bin/clerk-sync status

Press Ctrl-C to stop (or: bash deploy/dev.sh stop).
MSG
# Either process ending ends the run (the trap stops the other).
rc=0
wait -n "${pids[@]}" || rc=$?
for i in "${!pids[@]}"; do
  kill -0 "${pids[$i]}" 2>/dev/null || say "${names[$i]} exited (status $rc); the end of its log is in ${logs[$i]}"
done
exit 1
