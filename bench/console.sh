#!/usr/bin/env bash
# The console's pages on a million jobs: seeds a fresh database with 1,000,000 stored events
# and their jobs in SQL (done as a worker leaves them, 1,000 of them dead with errors),
# rolls up the activity as the workers would (`clerk-sync rollup`), starts
# `clerk-sync console`, and times each page with curl (median of $RUNS requests,
# default 15, after one warm-up). Not part of the test suite; a few minutes.
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
cargo build -q "${flags[@]}" -p clerk-sync-cli --bin clerk-sync
bin=target/$profile
sql() { PGOPTIONS='-c client_min_messages=warning' psql "$url" -X -q -v ON_ERROR_STOP=1 "$@"; }
# SKIP_SEED=1 times the pages of the database the last run seeded.
if [[ -z ${SKIP_SEED:-} ]]; then
PGOPTIONS="-c client_min_messages=warning" psql "$base/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
$bin/clerk-sync migrate --database-url "$url" >/dev/null

echo "seeding $jobs jobs..." >&2
# In SQL, as ingest and a worker would leave them: the real user.created sample with its own
# ids, received over the last day (job ids are ULIDs of that time), half user.created and
# half user.updated; all done (applied) but the newest 1,000, which are dead with an error;
# each user mirrored (for the email search and the object pages).
sample=$(tr -d '\n' < crates/core/samples/user.created.json)
sql -v jobs="$jobs" -v sample="$sample" <<'SQL'
CREATE FUNCTION pg_temp.b32(v bigint, digits int) RETURNS text LANGUAGE sql IMMUTABLE AS $$
    SELECT string_agg(substr('0123456789ABCDEFGHJKMNPQRSTVWXYZ',
                             ((v >> (5 * (digits - 1 - k))) & 31)::int + 1, 1), '' ORDER BY k)
    FROM generate_series(0, digits - 1) k $$;
CREATE TEMP TABLE seed AS
SELECT i,
       now() - ((:jobs - i) * (86400.0 / :jobs)) * interval '1 second' AS at,
       'user_seed_' || i AS object,
       CASE WHEN i % 2 = 0 THEN 'user.created' ELSE 'user.updated' END AS type
FROM generate_series(1, :jobs) i;
ALTER TABLE seed ADD COLUMN job_id text;
UPDATE seed SET job_id = pg_temp.b32((extract(epoch FROM at) * 1000)::bigint, 10)
                         || '0000' || pg_temp.b32(i, 12);
INSERT INTO clerk_sync.webhook_events (svix_id, received_at, headers, body, event_type,
                                       object_id, event_timestamp, job_id)
SELECT 'msg_seed_' || i, at, '{}', convert_to(jsonb_set(jsonb_set(jsonb_set(
           :'sample'::jsonb, '{data,id}', to_jsonb(object)),
           '{data,updated_at}', to_jsonb((extract(epoch FROM at) * 1000)::bigint)),
           '{type}', to_jsonb(type))::text, 'UTF8'),
       type, object, at, job_id
FROM seed;
INSERT INTO apalis.jobs (id, job_type, job, status, attempts, max_attempts, run_at, priority,
                         lock_at, lock_by, done_at, last_result)
SELECT s.job_id, 'clerk-sync:event', convert_to(json_build_object('event_id', e.id)::text, 'UTF8'),
       CASE WHEN s.i > :jobs - 1000 THEN 'Killed' ELSE 'Done' END,
       CASE WHEN s.i > :jobs - 1000 THEN 10 ELSE 1 END, 10, s.at, 0,
       s.at, NULL, s.at + interval '40 milliseconds',
       CASE WHEN s.i > :jobs - 1000 THEN '{"Err": "deadlock detected"}'::jsonb
            ELSE '{"Ok": "applied"}'::jsonb END
FROM seed s JOIN clerk_sync.webhook_events e ON e.job_id = s.job_id;
INSERT INTO clerk_sync.job_errors (job_id, attempt, kind, error, failed_at)
SELECT job_id, 10, 'exhausted', 'database: deadlock detected', at FROM seed WHERE i > :jobs - 1000;
INSERT INTO clerk.users (id, first_name, primary_email_address, version, raw)
SELECT object, 'Seed', object || '@example.com', at, '{}'::jsonb FROM seed;
VACUUM ANALYZE;
SQL
fi

# The overview's charts read per-minute rollups, which workers write every 30 s; here the
# same code runs once through the CLI: the first pass rolls up the whole seeded day, the
# next finds (almost) nothing new, as every pass in production does.
ms() { date +%s%3N; }
t0=$(ms); $bin/clerk-sync rollup --database-url "$url" >&2; t1=$(ms)
$bin/clerk-sync rollup --database-url "$url" >&2; t2=$(ms)
echo "rollup: first pass $((t1 - t0)) ms, next pass $((t2 - t1)) ms (through the CLI, connecting included)" >&2

DATABASE_URL=$url CONSOLE_ADDR=127.0.0.1:$port $bin/clerk-sync console >/tmp/cs-bench-console.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null' EXIT
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$port/static/console.css" >/dev/null && break; sleep 0.1; done

read -r job svix object < <(sql -At -F' ' -c "SELECT job_id, svix_id, object_id FROM clerk_sync.webhook_events ORDER BY id LIMIT 1 OFFSET $((jobs / 2))")
dead=$(sql -At -c "SELECT job_id FROM clerk_sync.dead_letters LIMIT 1")
page2=$(curl -fs "http://127.0.0.1:$port/jobs" | grep -o 'after=[0-9A-Z]*' | head -1)

time_page() {
  local path=$1 times=() status
  status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$path")
  for _ in $(seq "$runs"); do
    times+=("$(curl -s -o /dev/null -w '%{time_total}' "http://127.0.0.1:$port$path")")
  done
  printf '%s\n' "${times[@]}" | sort -n | awk -v p="$path" -v s="$status" '{a[NR]=$1} END {printf "| `%s` | %s | %.1f | %.1f |\n", p, s, a[int((NR+1)/2)]*1000, a[NR]*1000}'
}

echo "| page | status | median (ms) | slowest (ms) |"
echo "| --- | --- | --- | --- |"
for path in / /jobs "/jobs?$page2" "/jobs?state=dead" "/jobs?state=done" "/jobs?type=user.created" \
    "/jobs?q=$svix" "/jobs?q=$object" "/jobs?q=$object%40example.com" \
    "/jobs?since=$(date -u -d '-1 hour' +%Y-%m-%dT%H:%M)" \
    "/jobs/$job" "/jobs/$svix" "/jobs/$dead" "/objects/$object" "/actions/replay?state=dead"; do
  time_page "$path"
done
