#!/usr/bin/env bash
# Row-level security over 100,000 rows: EXPLAIN ANALYZE of a read of public.documents (the
# example of docs/supabase.md) under different forms of its SELECT policy, as a signed-in
# member would run it through PostgREST. Prints one table row per form and query (median
# execution time of $RUNS runs, default 7, on one connection) and keeps each form's first
# plan. Not part of the test suite; about two minutes.
#
#   bash bench/rls.sh
#
# Data: 1,000 organizations, 10,000 users, 31,429 memberships (1,429 of them tombstoned),
# 100,000 documents (100 per organization). The caller, user_42, is a live member of 3
# organizations and reads their 300 documents.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

runs=${RUNS:-7}
db=cs_bench_rls
server=$(DB_NAME=postgres bash deploy/db.sh)
base=${server%/*}
out=$(mktemp -d)
cargo build -q -p clerk-sync-cli --bin clerk-sync
PGOPTIONS="-c client_min_messages=warning" psql "$base/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
target/debug/clerk-sync migrate --database-url "$base/$db" >/dev/null
sql() { PGOPTIONS='-c client_min_messages=warning' psql "$base/$db" -X -q -v ON_ERROR_STOP=1 "$@"; }

# PostgREST's roles, if this server lacks them (cluster-wide; left in place).
sql <<'SQL'
DO $$
BEGIN
    BEGIN CREATE ROLE authenticated NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
    BEGIN CREATE ROLE anon NOLOGIN;
    EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END;
END $$;
SQL
sql -f deploy/sql/rls.sql -f docs/examples/documents.sql >/dev/null

sql <<'SQL'
INSERT INTO clerk.organizations (id, name, version, raw)
SELECT 'org_' || i, 'Org ' || i, now(), '{}' FROM generate_series(0, 999) i;
INSERT INTO clerk.users (id, first_name, version, raw)
SELECT 'user_' || i, 'User ' || i, now(), '{}' FROM generate_series(0, 9999) i;
-- Each user in 3 organizations, and every seventh (user_42 too) removed from a fourth.
INSERT INTO clerk.organization_memberships (id, organization_id, user_id, role, permissions,
                                            deleted_at, version, raw)
SELECT 'orgmem_' || u || '_' || k, 'org_' || ((u * (2 * k + 1) + k) % 1000), 'user_' || u,
       'org:member', '{org:documents:read}'::text[], NULL::timestamptz, now(), '{}'::jsonb
FROM generate_series(0, 9999) u, generate_series(0, 2) k
UNION ALL
SELECT 'orgmem_' || u || '_old', 'org_' || ((u + 500) % 1000), 'user_' || u,
       'org:member', '{}', now(), now(), '{}'
FROM generate_series(0, 9999, 7) u;
INSERT INTO public.documents (org_id, owner_id, title)
SELECT 'org_' || (i % 1000), 'user_' || (i % 10000), 'doc ' || i FROM generate_series(0, 99999) i;
VACUUM ANALYZE;
SQL

# One of user_42's organizations: the active one in the token, and the "one organization"
# query's filter.
one_org=$(sql -At -c "SELECT organization_id FROM clerk.organization_memberships
                      WHERE user_id = 'user_42' AND deleted_at IS NULL ORDER BY 1 LIMIT 1")
claims="{\"sub\": \"user_42\", \"v\": 2, \"o\": {\"id\": \"$one_org\", \"rol\": \"member\"}}"

# form name|USING expression
forms=(
  "organization_ids (the example)|org_id = ANY (ARRAY(SELECT clerk.organization_ids()))"
  "IN (SELECT clerk.organization_ids())|org_id IN (SELECT clerk.organization_ids())"
  "is_member per row|clerk.is_member(org_id)"
  "active organization|org_id = (SELECT clerk.org_id()) AND (SELECT clerk.is_member(clerk.org_id()))"
  "EXISTS, (select clerk.user_id())|EXISTS (SELECT 1 FROM clerk.organization_memberships m WHERE m.organization_id = documents.org_id AND m.user_id = (SELECT clerk.user_id()) AND m.deleted_at IS NULL)"
  "EXISTS, clerk.user_id() per row|EXISTS (SELECT 1 FROM clerk.organization_memberships m WHERE m.organization_id = documents.org_id AND m.user_id = clerk.user_id() AND m.deleted_at IS NULL)"
  "owner_id = (select clerk.user_id())|owner_id = (SELECT clerk.user_id())"
  "owner_id = clerk.user_id() per row|owner_id = clerk.user_id()"
)
queries=(
  "all readable|SELECT count(*) FROM public.documents"
  "one organization|SELECT count(*) FROM public.documents WHERE org_id = '$one_org'"
)

# $RUNS EXPLAIN ANALYZEs of $2 as user_42 under a SELECT policy using $1, on one connection
# (as PostgREST keeps its connections), each in a transaction that swaps the example's
# policy for this one and rolls back.
explain() {
  for ((r = 0; r < runs; r++)); do
    cat <<SQL
BEGIN;
DROP POLICY "members read their organizations' documents" ON public.documents;
CREATE POLICY bench ON public.documents FOR SELECT TO authenticated USING ($1);
SET LOCAL ROLE authenticated;
SELECT set_config('request.jwt.claims', '$claims', true) \\g /dev/null
EXPLAIN (ANALYZE, BUFFERS) $2;
$( ((r == 0)) && echo "SELECT 'rows: ' || ($2);" )
ROLLBACK;
SQL
  done | sql -At
}

echo "| policy (USING) | query | rows | execution time, median of $runs (ms) | plan |"
echo "| --- | --- | --- | --- | --- |"
for f in "${forms[@]}"; do
  name=${f%%|*}; using=${f#*|}
  for q in "${queries[@]}"; do
    qname=${q%%|*}; query=${q#*|}
    plans=$(explain "$using" "$query")
    first=$(sed -n '1,/^Execution Time/p' <<<"$plans")
    printf -- '-- %s / %s: USING (%s)\n%s\n\n' "$name" "$qname" "$using" "$first" >> "$out/plans.txt"
    median=$(sed -n 's/^Execution Time: \([0-9.]*\) ms$/\1/p' <<<"$plans" | sort -n | sed -n "$(((runs + 1) / 2))p")
    rows=$(sed -n 's/^rows: //p' <<<"$plans" | head -n 1)
    scan=$(grep -o -m 1 -E '(Seq Scan|Index Scan using [a-z_]+|Index Only Scan using [a-z_]+|Bitmap Heap Scan) on documents' <<<"$first" || true)
    echo "| $name | $qname | $rows | $median | $scan |"
  done
done
echo
echo "plans: $out/plans.txt; load average: $(cut -d" " -f1-3 /proc/loadavg)" >&2
