#!/usr/bin/env bash
# The console's pages on a million jobs: seeds a fresh database with 1,000,000 stored events
# and their jobs (clerk-sync-bench seed), marks them done as a worker would (1,000 of them
# dead, with errors), starts `clerk-sync console`, and times each page with curl (median of
# $RUNS requests, default 15, after one warm-up). Not part of the test suite; a few minutes.
#
#   bash bench/console.sh            # JOBS=1000000 RUNS=15 PROFILE=release by default
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

jobs=${JOBS:-1000000}
runs=${RUNS:-15}
profile=${PROFILE:-release}
db=cs_bench_console
port=${PORT:-18081}
server=$(DB_NAME=postgres bash deploy/db.sh)
base=${server%/*}
url="$base/$db"
export SQLX_OFFLINE=true
if [[ $profile == release ]]; then flags=(--release); else flags=(); fi
cargo build -q "${flags[@]}" -p clerk-sync-cli -p clerk-sync-bench --bins
bin=target/$profile
PGOPTIONS="-c client_min_messages=warning" psql "$base/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
$bin/clerk-sync migrate --database-url "$url" >/dev/null
sql() { PGOPTIONS='-c client_min_messages=warning' psql "$url" -X -q -v ON_ERROR_STOP=1 "$@"; }

echo "seeding $jobs jobs..." >&2
DATABASE_URL=$url $bin/clerk-sync-bench seed "$jobs" >&2
# Finished as a worker finishes them, spread over the last day; the newest 1,000 dead with
# an error each; the users of the rest mirrored (for email search and object pages).
sql <<'SQL'
WITH n AS (SELECT id, row_number() OVER (ORDER BY id DESC) AS r FROM apalis.jobs)
UPDATE apalis.jobs j
SET status = CASE WHEN n.r <= 1000 THEN 'Killed' ELSE 'Done' END,
    attempts = CASE WHEN n.r <= 1000 THEN 25 ELSE 1 END,
    done_at = now() - (n.r % 86400) * interval '1 second',
    lock_at = now() - (n.r % 86400) * interval '1 second',
    lock_by = 'bench',
    last_result = CASE WHEN n.r <= 1000 THEN '{"Err": "deadlock detected"}'::jsonb
                       ELSE '{"Ok": "applied"}'::jsonb END
FROM n WHERE n.id = j.id;
INSERT INTO clerk_sync.job_errors (job_id, attempt, kind, error, failed_at)
SELECT id, 25, 'exhausted', 'database: deadlock detected', now()
FROM apalis.jobs WHERE status = 'Killed';
UPDATE clerk_sync.webhook_events SET received_at = now() - (id % 86400) * interval '1 second';
INSERT INTO clerk.users (id, first_name, primary_email_address, version, raw)
SELECT object_id, 'Seed', object_id || '@example.com', now(), '{}'::jsonb
FROM clerk_sync.webhook_events ON CONFLICT DO NOTHING;
VACUUM ANALYZE;
SQL

DATABASE_URL=$url CONSOLE_ADDR=127.0.0.1:$port $bin/clerk-sync console >/tmp/cs-bench-console.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/static/console.css" >/dev/null && break; sleep 0.1; done

read -r job svix object < <(sql -At -F' ' -c "SELECT job_id, svix_id, object_id FROM clerk_sync.webhook_events ORDER BY id LIMIT 1 OFFSET 500000")
dead=$(sql -At -c "SELECT job_id FROM clerk_sync.dead_letters LIMIT 1")
page2=$(curl -fs "http://127.0.0.1:$port/jobs" | grep -o 'after=[0-9A-Z]*' | head -1)

time_page() {
  local path=$1 times=()
  curl -fs -o /dev/null "http://127.0.0.1:$port$path"
  for _ in $(seq "$runs"); do
    times+=("$(curl -fs -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port$path")")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v p="$path" '{a[NR]=$1} END {printf "| `%s` | %.1f | %.1f |\n", p, a[int((NR+1)/2)]*1000, a[NR]*1000}'
}

echo "| page | median (ms) | slowest (ms) |"
echo "| --- | --- | --- |"
for path in / /jobs "/jobs?$page2" "/jobs?state=dead" "/jobs?state=done" "/jobs?type=user.created" \
    "/jobs?q=$svix" "/jobs?q=$object" "/jobs?q=$object%40example.com" \
    "/jobs?since=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M)" \
    "/jobs/$job" "/jobs/$svix" "/jobs/$dead" "/objects/$object" "/actions/replay?state=dead"; do
  time_page "$path"
done
