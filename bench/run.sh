#!/usr/bin/env bash
# Benchmarks clerk-sync against PostgreSQL's own limit on this machine, in one run, and
# prints the BENCHMARKS.md table. Not part of the test suite. Takes ~10 minutes
# (BENCH_QUICK=1: ~2 minutes, smaller backlogs).
#
#   bash bench/run.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

quick=${BENCH_QUICK:-}
secs=${BENCH_SECONDS:-$([[ -n $quick ]] && echo 5 || echo 15)}
drain_n=$([[ -n $quick ]] && echo 20000 || echo 100000)
big_n=$([[ -n $quick ]] && echo 200000 || echo 1000000)
small_n=10000
lag_secs=$([[ -n $quick ]] && echo 10 || echo 20)
concurrency=16

server=$(DB_NAME=postgres bash deploy/db.sh) # installs PostgreSQL here if there is none
for tool in psql pgbench python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "bench/run.sh needs $tool (Debian/Ubuntu: apt-get install postgresql python3)" >&2
    exit 1
  fi
done
base=${server%/*}
out=$(mktemp -d)
echo "building release binaries" >&2
cargo build --release --bins -q
bin=target/release
bench() { "$bin/clerk-sync-bench" --database-url "$base/$1" "${@:2}"; }
fresh() {
  psql "$base/postgres" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null
  psql "$base/postgres" -qc "CREATE DATABASE $1" >/dev/null
  "$bin/clerk-sync" migrate --database-url "$base/$1" >/dev/null
}
# A backlog of $1 events seeded straight into the event store and queue, then a worker
# started and timed until it has applied $2 of them; the result in $out/$3.json. Between
# the two, PostgreSQL catches up as it would with a backlog that built up over time
# (autovacuum's analyze, the checkpoint the seed's WAL triggers), so the drain measures the
# worker, not the bulk seed's aftermath.
timed_drain() {
  fresh cs_bench
  echo "worker: a $1 backlog, draining $2" >&2
  bench cs_bench seed "$1" >/dev/null
  psql "$base/cs_bench" -qc "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null 2>&1 \
    || psql "$base/cs_bench" -qc "VACUUM ANALYZE" >/dev/null
  bench cs_bench drain --target "$2" > "$out/$3.json"
  cat "$out/$3.json" >&2
}
pgb() { # script database -> tps
  pgbench -n -M prepared -c "$concurrency" -j 2 -T "$secs" -f "$out/$1" "$base/$2" 2>/dev/null \
    | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1
}

# Ingest and its pgbench equivalent take turns, twice each, on fresh databases: a shared
# machine drifts by tens of percent over minutes, and both sides should see the same drift.
# The table reports the mean of each side's two rounds.
pg_ingest_runs=()
for round in 1 2; do
  fresh cs_bench_pg
  bench cs_bench_pg pgbench-scripts --dir "$out" >/dev/null
  echo "pgbench: ingest SQL (round $round)" >&2
  pg_ingest_runs+=("$(pgb ingest.sql cs_bench_pg)")
  fresh cs_bench
  echo "ingest: ${secs}s at concurrency $concurrency (round $round)" >&2
  bench cs_bench load --concurrency "$concurrency" --seconds "$secs" > "$out/load$round.json"
  cat "$out/load$round.json" >&2
done
pg_ingest=$(python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; print(sum(v)/len(v))' "${pg_ingest_runs[@]}")
echo "pgbench: upsert SQL" >&2;  pg_upsert=$(pgb upsert.sql cs_bench_pg)
echo "pgbench tps: ingest ${pg_ingest_runs[*]}, upsert $pg_upsert (results so far in $out)" >&2

timed_drain "$drain_n" "$drain_n" drain
timed_drain "$small_n" "$small_n" drain_small
timed_drain "$big_n" "$small_n" drain_big

fresh cs_bench
echo "lag: 500 events/s for ${lag_secs}s" >&2
bench cs_bench lag --rate 500 --seconds "$lag_secs" > "$out/lag.json"

for db in cs_bench cs_bench_pg; do psql "$base/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; done

python3 - "$out" "$pg_ingest" "$pg_upsert" "$big_n" "$small_n" "$drain_n" "${pg_ingest_runs[@]}" <<'PY'
import json, sys, os, platform, subprocess
out, pg_ingest, pg_upsert, big_n, small_n, drain_n = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
pg_ingest_runs = [float(x) for x in sys.argv[7:]]
j = lambda n: json.load(open(os.path.join(out, n + ".json")))
loads, drain, small, big, lag = [j("load1"), j("load2")], j("drain"), j("drain_small"), j("drain_big"), j("lag")
# Throughput: the mean of the two rounds; latency and errors: both rounds' requests
# (percentiles from the second round, after the first warmed everything up).
load = dict(loads[1])
load["requests_per_s"] = sum(l["requests_per_s"] for l in loads) / len(loads)
load["requests"] = sum(l["requests"] for l in loads)
load["non_2xx"] = sum(l["non_2xx"] for l in loads)
load["ingest_peak_rss_mib"] = max(l["ingest_peak_rss_mib"] for l in loads)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
pgv = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
rows = [
  ("ingest throughput (c=16)", f"{load['requests_per_s']:.0f} req/s", f"pgbench ingest SQL {pg_ingest:.0f} tx/s", f"{load['requests_per_s']/pg_ingest:.2f}×", "≥ 0.8×"),
  ("ingest latency p50 / p99 / p99.9 (round 2)", f"{load['p50_ms']:.2f} / {load['p99_ms']:.2f} / {load['p999_ms']:.2f} ms", "", "", ""),
  ("ingest non-2xx", f"{load['non_2xx']} of {load['requests'] + load['non_2xx']}", "", "", "0"),
  (f"worker drain, {drain_n} backlog", f"{drain['events_per_s']:.0f} events/s", f"pgbench upsert {pg_upsert:.0f} tx/s", f"{drain['events_per_s']/pg_upsert:.2f}×", "≥ 0.4×"),
  (f"drain rate at {big_n} vs {small_n} backlog", f"{big['events_per_s']:.0f} vs {small['events_per_s']:.0f} events/s", "", f"{big['events_per_s']/small['events_per_s']:.2f}×", "≥ 0.7×"),
  ("lag at 500 events/s, p50 / p99", f"{lag['lag_p50_ms']:.1f} / {lag['lag_p99_ms']:.1f} ms", "", "", "p99 ≤ 100 ms"),
  ("peak RSS ingest / worker", f"{max(load['ingest_peak_rss_mib'], lag['ingest_peak_rss_mib']):.1f} / {max(drain['worker_peak_rss_mib'], big['worker_peak_rss_mib'], lag['worker_peak_rss_mib']):.1f} MiB", "", "", "≤ 50 / ≤ 80 MiB"),
]
print(f"Machine: {os.cpu_count()} CPUs ({cpu}), {pgv}, {platform.platform()}")
print()
print("| measure | clerk-sync | the limit (same machine, same run) | ratio | target |")
print("| --- | --- | --- | --- | --- |")
for r in rows:
    print("| " + " | ".join(r) + " |")
print()
print("raw:", json.dumps({"load_rounds": loads, "pgbench_ingest_rounds": pg_ingest_runs, "drain": drain, "drain_small": small, "drain_big": big, "lag": lag, "pgbench_ingest_tps": pg_ingest, "pgbench_upsert_tps": pg_upsert}))
PY
