#!/bin/sh
# job_claim.sh - benchmark of the fair job claim (db/jobs.c) at scale.
#
# Seeds a database with JOBS job rows (default 1,000,000; all but a few
# thousand done) over TENANTS tenants (default 10,000), then runs the claim
# through the real code (the test_fairness binary in bench mode): prints the
# EXPLAIN QUERY PLAN of the claim's queries and the time of CLAIMS claims
# (each claim + done, in the lane "acme", cap 2).
#
# The live rows are a hostile mix: every tenant has a webhook retry queued an
# hour ahead (webhook lane), one tenant floods the acme lane with 5,000 due
# orders, 1,000 other tenants have 3 due orders each, and 4 jobs are running.
#
# Usage: sh tests/bench/job_claim.sh [build-dir]   (needs sqlite3)
set -eu
BUILD=${1:-build}
JOBS=${JOBS:-1000000}
TENANTS=${TENANTS:-10000}
CLAIMS=${CLAIMS:-2000}
BIN="$BUILD/test_fairness"
[ -x "$BIN" ] || { echo "no $BIN: build first" >&2; exit 1; }
command -v sqlite3 >/dev/null || { echo "sqlite3 is needed" >&2; exit 1; }
D=${BENCH_DIR:-$(mktemp -d)}
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$D"' EXIT
DB="$D/bench.db"
"$BIN" "$DB" 0 >/dev/null          # creates the schema (every migration)
NOW=$(date +%s)
t0=$(date +%s.%N)
sqlite3 "$DB" <<SQL
PRAGMA journal_mode = WAL;
PRAGMA synchronous = OFF;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $JOBS)
INSERT INTO jobs (kind, tenant_id, payload, state, run_at, attempts, created_at, updated_at, lane)
SELECT CASE i % 3 WHEN 0 THEN 'webhook_delivery' ELSE 'acme_order' END,
       printf('tenant-%05d', i % $TENANTS), '{}', 'done', $NOW - 86400 + i % 86400, 1,
       $NOW - 86400, $NOW - 86400, CASE i % 3 WHEN 0 THEN 'webhook' ELSE 'acme' END
FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < $TENANTS)
INSERT INTO jobs (kind, tenant_id, payload, run_at, created_at, updated_at, lane)
SELECT 'webhook_delivery', printf('tenant-%05d', i), '{}', $NOW + 3600, $NOW, $NOW, 'webhook' FROM n;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i + 1 < 5000)
INSERT INTO jobs (kind, tenant_id, payload, run_at, created_at, updated_at, lane)
SELECT 'acme_order', 'tenant-00000', '{}', $NOW - 60, $NOW, $NOW, 'acme' FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000)
INSERT INTO jobs (kind, tenant_id, payload, run_at, created_at, updated_at, lane)
SELECT 'acme_order', printf('tenant-%05d', 1 + i % 1000), '{}', $NOW - 30 + i % 20, $NOW, $NOW, 'acme' FROM n;
UPDATE jobs SET state = 'running', lease_owner = 'other', lease_until = $NOW + 600
WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND lane = 'acme' LIMIT 4);
COMMIT;
ANALYZE;
SQL
t1=$(date +%s.%N)
echo "seeded $JOBS done + live jobs over $TENANTS tenants in $(echo "$t1 - $t0" | bc) s; $(du -h "$DB" | cut -f1)"
"$BIN" "$DB" "$CLAIMS"
