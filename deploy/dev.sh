#!/usr/bin/env bash
# Starts the whole system locally: PostgreSQL (found or started by deploy/db.sh),
# migrations, clerk-sync-ingest on :8080 and clerk-sync-worker (metrics on :9091).
# Sends one signed test event and shows it land in clerk.users. Ctrl-C stops everything.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

DATABASE_URL=$(bash deploy/db.sh)
export DATABASE_URL SQLX_OFFLINE=true
mkdir -p .local
if [[ -z "${CLERK_WEBHOOK_SECRET:-}" ]]; then
  # A development secret, kept so that restarts and your terminal agree on it.
  [[ -f .local/dev-secret ]] || echo "whsec_$(head -c 24 /dev/urandom | base64)" > .local/dev-secret
  CLERK_WEBHOOK_SECRET=$(cat .local/dev-secret)
fi
export CLERK_WEBHOOK_SECRET
export LISTEN_ADDR=${LISTEN_ADDR:-127.0.0.1:8080} METRICS_ADDR=${METRICS_ADDR:-127.0.0.1:9091}

cargo build --bins
bin=target/debug
"$bin/clerk-sync" migrate

pids=()
cleanup() { kill -TERM "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
"$bin/clerk-sync-ingest" & pids+=($!)
"$bin/clerk-sync-worker" & pids+=($!)

url="http://$LISTEN_ADDR/webhooks/clerk"
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/${LISTEN_ADDR%:*}/${LISTEN_ADDR#*:}") 2>/dev/null && break
  sleep 0.1
done

echo
echo "clerk-sync is running."
echo "  webhook URL:  $url   (point Clerk's webhook endpoint here, e.g. through a tunnel)"
echo "  metrics:      http://$LISTEN_ADDR/metrics  and  http://$METRICS_ADDR/metrics"
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

Press Ctrl-C to stop.
MSG
wait
