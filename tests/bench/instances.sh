#!/usr/bin/env bash
# instances.sh - certificates per second with 1, 2 and 3 certplane
# instances on one PostgreSQL (issue 11), one command:
#
#   bash tests/bench/instances.sh             # 180 certificates per run
#   CERTS=60 SLEEP=4 bash tests/bench/instances.sh
#
# Builds a Release certplane into build-bench/ (unless CERTPLANE_BIN is set),
# makes the network namespace NETNS (default cp-bench-instances), starts its
# own ACME test bed there with Pebble's VA sleeping up to SLEEP seconds
# before each validation (PEBBLE_VA_NOSLEEP=0, PEBBLE_VA_SLEEPTIME=SLEEP: the
# work is latency-bound, as against a real CA, not CPU-bound on this box)
# and its own PostgreSQL (tests/testbed/pg-server), then runs
# tests/bench/instances.py. The exit status is the driver's: 1 when 3
# instances are below MIN_SPEEDUP (2.7) times 1 instance. Needs root (ip
# netns), pebble, postgresql, openssl, curl, python3.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
NETNS=${NETNS:-cp-bench-instances}
export SLEEP=${SLEEP:-4}

. "$SRC/tests/bench/lib.sh"
bench_enter_netns INSTANCES_IN_NETNS "$0" "$@"

TB=/tmp/$NETNS-testbed
PG=/tmp/$NETNS-pg
"$SRC/tests/testbed/acme-testbed" stop "$TB" >/dev/null 2>&1 || true
PEBBLE_VA_NOSLEEP=0 PEBBLE_VA_SLEEPTIME=$SLEEP PEBBLE_AUTHZREUSE=0 \
	"$SRC/tests/testbed/acme-testbed" start "$TB" >&2
"$SRC/tests/testbed/pg-server" start "$PG" >&2
trap '"$SRC/tests/testbed/acme-testbed" stop "$TB" >/dev/null 2>&1 || true;
      "$SRC/tests/testbed/pg-server" stop "$PG" >/dev/null 2>&1 || true' EXIT
set -a
. "$TB/env"
. "$PG/env"
set +a
export CERTPLANE_TESTBED_DIR=$TB CERTPLANE_SRC=$SRC PG_DIR=$PG
python3 "$SRC/tests/bench/instances.py"
