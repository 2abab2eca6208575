#!/bin/sh
# scheduler.sh - the renewal scheduler at scale (issue 10; README "Scheduler at
# scale"): seeds CERTS certificates (default 100,000; a fraction DUE of them
# due, default 0.01) with tests/bench/seed into a fresh data directory, then
#   1. times finding the due set as server/renew.c does it (seed --measure:
#      the attention scan, limit 500, and the re-check of each row by id),
#      and prints the EXPLAIN QUERY PLAN of both queries;
#   2. adds a backlog of BACKLOG queued, due acme_order jobs (default
#      100,000, over 1,000 tenants) and times the fair claim with it
#      (test_fairness in bench mode: claim + done, CLAIMS times);
#   3. adds PRUNE finished jobs past the retention (default 200,000) and
#      times one prune batch (5,000 rows, the statement of db_job_prune);
#   4. times migration 008's backfill statement over every certificate (as
#      an upgrade of an existing database runs it).
# The data directory is deleted afterwards (KEEP=1 keeps it; DIR picks it).
#
# Usage: sh tests/bench/scheduler.sh [build-dir]   (Release build advised:
#   cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=Release; needs sqlite3, bc)
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-$root/build-rel}
CERTS=${CERTS:-100000}
TENANTS=${TENANTS:-$((CERTS / 1000 > 100 ? CERTS / 1000 : 100))}
DUE=${DUE:-0.01}
BACKLOG=${BACKLOG:-100000}
CLAIMS=${CLAIMS:-2000}
PRUNE=${PRUNE:-200000}
command -v sqlite3 >/dev/null || { echo "sqlite3 is needed" >&2; exit 1; }
[ -x "$BUILD/bench_seed" ] && [ -x "$BUILD/test_fairness" ] || { echo "build $BUILD first" >&2; exit 1; }
D=${DIR:-$(mktemp -d /tmp/cp-bench-sched-XXXXXX)}
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$D"' EXIT
export CERTPLANE_BUILD="$BUILD"
DB="$D/certplane.db"
echo "== seed $CERTS certificates ($TENANTS tenants, due fraction $DUE) into $D"
sh "$root/tests/bench/seed" --data-dir "$D" --certificates "$CERTS" --tenants "$TENANTS" \
	--due-fraction "$DUE" | tail -1
NOW=$(date +%s)
echo "== certificates with a next attention time, due now"
sqlite3 "$DB" "SELECT count(next_attention_at), sum(next_attention_at <= $NOW) FROM certificates"
echo "== finding the due set (limit 500), 5 runs"
sh "$root/tests/bench/seed" --data-dir "$D" --measure --repeat 5
echo "== EXPLAIN QUERY PLAN: attention scan (db_renewal_attention)"
sqlite3 "$DB" "EXPLAIN QUERY PLAN SELECT id, tenant_id, next_attention_at FROM certificates
 WHERE next_attention_at > -9223372036854775808 AND next_attention_at <= $NOW
 ORDER BY next_attention_at LIMIT 500"
echo "== EXPLAIN QUERY PLAN: re-check by id (db_renewal_candidate)"
sqlite3 "$DB" "EXPLAIN QUERY PLAN SELECT c.id FROM certificates c JOIN certificate_versions v
 ON v.certificate_id = c.id AND v.version = c.version WHERE c.id = 'x' AND c.type = 'server'
 AND c.auto_renew != 'none' AND v.not_after > $NOW AND (c.next_attempt_at IS NULL OR
 c.next_attempt_at <= $NOW) AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.certificate_id = c.id
 AND o.status IN ('pending', 'validating', 'issuing')) AND EXISTS (SELECT 1 FROM deployments d
 JOIN properties p ON p.id = d.property_id WHERE d.certificate_id = c.id AND
 p.tenant_id = c.tenant_id AND p.certificate_renew_automation = 1 AND d.environment =
 'production' AND d.seq = (SELECT max(seq) FROM deployments d2 WHERE d2.property_id =
 d.property_id AND d2.environment = 'production'))"
echo "== claim with a backlog of $BACKLOG queued due jobs (1,000 tenants)"
sqlite3 "$DB" <<SQL
PRAGMA journal_mode = WAL;
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $BACKLOG)
INSERT INTO jobs (kind, tenant_id, payload, run_at, created_at, updated_at, lane)
SELECT 'acme_order', printf('tenant-%05d', i % 1000), '{}', $NOW - 60 + i % 60, $NOW, $NOW,
       'acme' FROM n;
COMMIT;
SQL
"$BUILD/test_fairness" "$DB" "$CLAIMS" | grep -v '"db.migrate"'
echo "== prune: $PRUNE finished jobs past the retention, one batch of 5,000"
sqlite3 "$DB" <<SQL
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $PRUNE)
INSERT INTO jobs (kind, tenant_id, payload, state, run_at, created_at, updated_at, lane)
SELECT 'acme_order', printf('tenant-%05d', i % 1000), '{}', 'done', 0, 0,
       $NOW - 8 * 86400 - i, 'acme' FROM n;
COMMIT;
EXPLAIN QUERY PLAN DELETE FROM jobs WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_finished WHERE state IN ('done',
 'failed') AND updated_at < $NOW - 7 * 86400 ORDER BY updated_at LIMIT 5000);
.timer on
DELETE FROM jobs WHERE id IN (SELECT id FROM jobs INDEXED BY jobs_finished WHERE state IN ('done',
 'failed') AND updated_at < $NOW - 7 * 86400 ORDER BY updated_at LIMIT 5000);
SQL
echo "== backfill of next_attention_at over every certificate (migration 008)"
sqlite3 "$DB" <<SQL
.timer on
UPDATE certificates SET next_attention_at =
    (SELECT a.at FROM certificate_attention a WHERE a.id = certificates.id);
SQL
ls -l "$DB" | awk '{print "database bytes:", $5}'
