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
cap_secs=$([[ -n $quick ]] && echo 15 || echo 60)
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

pgb() { # script database concurrency -> tps
  pgbench -n -M prepared -c "$3" -j 2 -T "$secs" -f "$out/$1" "$base/$2" 2>/dev/null \
    | sed -n 's/^tps = \([0-9.]*\).*/\1/p' | head -n 1
}
mean() { python3 -c 'import sys; v=[float(x) for x in sys.argv[1:]]; print(sum(v)/len(v))' "$@"; }

# Ingest, the recipe and their limit take turns, twice each, on fresh databases: a shared
# machine drifts by tens of percent over minutes, and every side should see the same
# drift. The table reports the mean of each side's two rounds.
declare -A limit_runs=()
ingest_sql_runs=()
for round in 1 2; do
  fresh cs_bench_pg
  bench cs_bench_pg pgbench-scripts --dir "$out" >/dev/null
  for c in 16 64; do
    echo "pgbench: one-statement limit, $c clients (round $round)" >&2
    limit_runs[$c]+=" $(pgb limit.sql cs_bench_pg "$c")"
  done
  echo "pgbench: ingest's own SQL, 16 clients (round $round)" >&2
  ingest_sql_runs+=("$(pgb ingest.sql cs_bench_pg 16)")
  for c in 16 64; do
    fresh cs_bench
    echo "ingest: ${secs}s at concurrency $c (round $round)" >&2
    bench cs_bench load --concurrency "$c" --seconds "$secs" > "$out/load${round}_$c.json"
    cat "$out/load${round}_$c.json" >&2
    fresh cs_bench
    echo "recipe: ${secs}s at concurrency $c (round $round)" >&2
    bench cs_bench load --recipe --concurrency "$c" --seconds "$secs" > "$out/recipe${round}_$c.json"
    cat "$out/recipe${round}_$c.json" >&2
  done
done
# shellcheck disable=SC2086
limit16=$(mean ${limit_runs[16]}); limit64=$(mean ${limit_runs[64]})
pg_ingest=$(mean "${ingest_sql_runs[@]}")
echo "pgbench: upsert SQL" >&2;  pg_upsert=$(pgb upsert.sql cs_bench_pg "$concurrency")
echo "pgbench tps: limit c=16 ${limit_runs[16]}, c=64 ${limit_runs[64]}; ingest SQL ${ingest_sql_runs[*]}; upsert $pg_upsert (results so far in $out)" >&2

timed_drain "$drain_n" "$drain_n" drain
timed_drain "$small_n" "$small_n" drain_small
timed_drain "$big_n" "$small_n" drain_big

fresh cs_bench
echo "lag: 500 events/s for ${lag_secs}s" >&2
bench cs_bench lag --rate 500 --seconds "$lag_secs" > "$out/lag.json"
cat "$out/lag.json" >&2

# Sustained capacity: the highest rate, of a few fractions of the slower of ingest (c=64,
# alone) and the drain (alone), whose events are all acknowledged and applied with lag p99
# under 1 s over $cap_secs seconds. Together they share the two cores with the sender, so
# the fractions go well below either.
drain_rate=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["events_per_s"])' "$out/drain.json")
ingest_rate=$(python3 -c 'import json,sys; print(sum(json.load(open(f"{sys.argv[1]}/load{r}_64.json"))["requests_per_s"] for r in (1, 2)) / 2)' "$out")
slower=$(python3 -c "print(min(float('$drain_rate'), float('$ingest_rate')))")
echo '{"rate": 0}' > "$out/capacity.json"
for f in 0.9 0.7 0.6 0.5 0.4 0.3; do
  rate=$(python3 -c "print(int(float('$slower') * $f) // 50 * 50)")
  fresh cs_bench
  echo "capacity: $rate events/s for ${cap_secs}s" >&2
  bench cs_bench lag --rate "$rate" --seconds "$cap_secs" > "$out/cap_try.json"
  cat "$out/cap_try.json" >&2
  if python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); sys.exit(0 if r["sent"]==r["acknowledged"]==r["visible"] and r["lag_p99_ms"]<1000 else 1)' "$out/cap_try.json"; then
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); r["rate"]=int(sys.argv[2]); print(json.dumps(r))' "$out/cap_try.json" "$rate" > "$out/capacity.json"
    break
  fi
done

for db in cs_bench cs_bench_pg; do psql "$base/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; done

python3 - "$out" "$pg_ingest" "$pg_upsert" "$big_n" "$small_n" "$drain_n" "$limit16" "$limit64" "$cap_secs" <<'PY'
import json, sys, os, platform, subprocess
out, pg_ingest, pg_upsert, big_n, small_n, drain_n = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
limit = {16: float(sys.argv[7]), 64: float(sys.argv[8])}
cap_secs = sys.argv[9]
j = lambda n: json.load(open(os.path.join(out, n + ".json")))
drain, small, big, lag, cap = j("drain"), j("drain_small"), j("drain_big"), j("lag"), j("capacity")
def rounds(name, c):
    # Throughput: the mean of the two rounds; latency: the second round (after the first
    # warmed everything up); errors: both rounds.
    rs = [j(f"{name}{r}_{c}") for r in (1, 2)]
    m = dict(rs[1])
    m["requests_per_s"] = sum(r["requests_per_s"] for r in rs) / 2
    m["requests"] = sum(r["requests"] for r in rs)
    m["non_2xx"] = sum(r["non_2xx"] for r in rs)
    m["peak_rss_mib"] = max(r["ingest_peak_rss_mib"] for r in rs)
    return m
load = {c: rounds("load", c) for c in (16, 64)}
recipe = {c: rounds("recipe", c) for c in (16, 64)}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
pgv = subprocess.run(["psql", "--version"], capture_output=True, text=True).stdout.strip()
rows = []
for c, target in ((16, "≥ 1.0×"), (64, "≥ 1.5×")):
    l = load[c]["requests_per_s"]
    rows.append((f"ingest throughput (c={c})", f"{l:.0f} req/s", f"pgbench one-statement limit {limit[c]:.0f} tx/s", f"{l/limit[c]:.2f}×", target))
for c in (16, 64):
    l, r = load[c]["requests_per_s"], recipe[c]["requests_per_s"]
    rows.append((f"ingest vs the seed's recipe (c={c})", f"{l:.0f} req/s", f"recipe stand-in {r:.0f} req/s", f"{l/r:.2f}×", "≥ 1.2×"))
rows += [
  ("ingest throughput vs its own SQL, one row per tx (c=16)", f"{load[16]['requests_per_s']:.0f} req/s", f"pgbench ingest SQL {pg_ingest:.0f} tx/s", f"{load[16]['requests_per_s']/pg_ingest:.2f}×", ""),
  ("ingest latency p50 / p99 / p99.9 (c=16, round 2)", f"{load[16]['p50_ms']:.2f} / {load[16]['p99_ms']:.2f} / {load[16]['p999_ms']:.2f} ms", f"recipe {recipe[16]['p50_ms']:.2f} / {recipe[16]['p99_ms']:.2f} / {recipe[16]['p999_ms']:.2f} ms", "", ""),
  ("ingest non-2xx", f"{load[16]['non_2xx'] + load[64]['non_2xx']} of {sum(load[c]['requests'] + load[c]['non_2xx'] for c in (16, 64))}", "", "", "0"),
  (f"worker drain, {drain_n} backlog", f"{drain['events_per_s']:.0f} events/s", f"pgbench upsert {pg_upsert:.0f} tx/s", f"{drain['events_per_s']/pg_upsert:.2f}×", "≥ 1.0×"),
  (f"drain rate at {big_n} vs {small_n} backlog", f"{big['events_per_s']:.0f} vs {small['events_per_s']:.0f} events/s", "", f"{big['events_per_s']/small['events_per_s']:.2f}×", "≥ 0.7×"),
  ("lag at 500 events/s, p50 / p99", f"{lag['lag_p50_ms']:.1f} / {lag['lag_p99_ms']:.1f} ms", "", "", "p99 ≤ 20 ms"),
  (f"sustained capacity (lag p99 < 1 s for {cap_secs} s; tries 0.9 … 0.3 × the slower of ingest c=64 and drain)", f"{cap['rate']} events/s" + (f" (p99 {cap['lag_p99_ms']:.0f} ms)" if cap['rate'] else ""), "", "", ""),
  ("peak RSS ingest / worker", f"{max(load[16]['peak_rss_mib'], load[64]['peak_rss_mib'], lag['ingest_peak_rss_mib']):.1f} / {max(drain['worker_peak_rss_mib'], big['worker_peak_rss_mib'], lag['worker_peak_rss_mib']):.1f} MiB", "", "", "≤ 18 / ≤ 24 MiB"),
]
print(f"Machine: {os.cpu_count()} CPUs ({cpu}), {pgv}, {platform.platform()}")
print()
print("| measure | clerk-sync | the limit (same machine, same run) | ratio | target |")
print("| --- | --- | --- | --- | --- |")
for r in rows:
    print("| " + " | ".join(r) + " |")
print()
print("raw:", json.dumps({"load": load, "recipe": recipe, "limit_tps": limit, "drain": drain, "drain_small": small, "drain_big": big, "lag": lag, "capacity": cap, "pgbench_ingest_sql_tps": pg_ingest, "pgbench_upsert_tps": pg_upsert}))
PY
