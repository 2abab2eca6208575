#!/usr/bin/env bash
# renewals.sh - sustained renewals against Pebble (issue 10), one command:
#
#   bash tests/bench/renewals.sh            # 700 certificates of 120 s, 600 s run
#   DURATION=60 bash tests/bench/renewals.sh
#
# Builds a Release certplane into build-bench/ (unless CERTPLANE_BIN is set),
# makes the network namespace NETNS (default cp-bench-renewals) with its own
# loopback, starts its own ACME test bed there (tests/testbed/acme-testbed in
# /tmp/NETNS-testbed, certificateValidityPeriod = VALIDITY seconds,
# PEBBLE_VA_NOSLEEP=1), runs tests/bench/renewals.py inside it and stops the
# test bed afterwards. The exit status is the driver's: 1 when the renewal
# rate is below MIN_RATE, the backlog grows or a certificate renews more (or
# less) than once per window. Knobs: see renewals.py (CERTS, VALIDITY,
# DURATION, TENANTS, WORKERS, SAMPLE, MIN_RATE, KEEP) and NETNS. Needs root
# (ip netns), pebble, openssl, curl, python3.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
NETNS=${NETNS:-cp-bench-renewals}
export VALIDITY=${VALIDITY:-120}

. "$SRC/tests/bench/lib.sh"
bench_enter_netns RENEWALS_IN_NETNS "$0" "$@"

TB=/tmp/$NETNS-testbed
"$SRC/tests/testbed/acme-testbed" stop "$TB" >/dev/null 2>&1 || true
# PEBBLE_AUTHZREUSE=0: every renewal validates afresh. Pebble 2.4's
# authorization reuse (default 50 %) deadlocks under concurrent new orders:
# at ~25 orders/s every request hung within two minutes, its goroutine dump
# (SIGQUIT) all new-order handlers waiting on MemoryStore locks, one inside
# FindValidAuthorization (the reuse lookup), others in AddChallenge and
# GetAccountByID. See tests/bench/README.md: the cycle needs three requests
# overlapping inside Pebble; GOMAXPROCS=1 (Pebble needs < 10 % of a core
# here) makes that rarer, and certplane polls challenges, not authorizations.
ACME_TESTBED_CERT_VALIDITY_SECONDS=$VALIDITY PEBBLE_VA_NOSLEEP=1 \
	PEBBLE_AUTHZREUSE=${PEBBLE_AUTHZREUSE:-0} GOMAXPROCS=${PEBBLE_GOMAXPROCS:-1} \
	"$SRC/tests/testbed/acme-testbed" start "$TB" >&2
trap '"$SRC/tests/testbed/acme-testbed" stop "$TB" >/dev/null 2>&1 || true' EXIT
set -a
. "$TB/env"
set +a
export CERTPLANE_TESTBED_DIR=$TB CERTPLANE_SRC=$SRC
rc=0
python3 "$SRC/tests/bench/renewals.py" || rc=$?
exit $rc
