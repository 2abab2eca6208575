#!/usr/bin/env bash
# quickstart.sh - build certplane from this checkout and run it, or test it.
#
#   bash deploy/quickstart.sh serve   install what is missing, build (Release)
#                                     into build/ and the portal into
#                                     portal/dist, run `certplane serve` on the
#                                     embedded SQLite database under ./data
#                                     (the portal at http://LISTEN/portal/)
#   bash deploy/quickstart.sh test    install build + test dependencies, build
#                                     build/ and build-asan/ (ASan+UBSan), start
#                                     a PostgreSQL server (tests/testbed/pg-server),
#                                     run the whole CTest suite on SQLite, then
#                                     the whole suite again under the sanitizers
#                                     on PostgreSQL (CERTPLANE_TEST_DB=pg), the
#                                     libFuzzer targets (build-fuzz/, 20 s
#                                     each), and the unit tests under
#                                     valgrind; exits non-zero on any failure
#
# Made for a fresh Debian 12 machine as root with apt reachable (sudo is used
# when not root). apt-get runs only when a package is missing.
#
# Knobs (environment): CERTPLANE_LISTEN (serve; default 127.0.0.1:8080),
# CERTPLANE_HTTP01_LISTEN (serve; default: port 80 when root, else
# 127.0.0.1:8081), JOBS (parallel make, valgrind runs), CTEST_JOBS (tests
# CTest runs at once; default 4: the e2e tests mostly wait, see
# CMakeLists.txt), CERTPLANE_VALGRIND=0 (skip valgrind).
set -euo pipefail

MODE=${1:-}
cd "$(dirname "$0")/.."
SRC=$PWD
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
CTEST_JOBS=${CTEST_JOBS:-4}
export DEBIAN_FRONTEND=noninteractive

say() { printf '\n==> %s\n' "$*"; }
die() { printf 'quickstart: %s\n' "$*" >&2; exit 1; }

case "$MODE" in
serve | test) ;;
*)
	echo "usage: bash deploy/quickstart.sh serve|test" >&2
	exit 2
	;;
esac

SUDO=
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null || die "not root and no sudo: install the packages listed in README.md by hand"
	SUDO=sudo
fi

# ---------------------------------------------------------------- packages

BUILD_PKGS=(build-essential cmake pkg-config libmicrohttpd-dev libssl-dev
	libcurl4-openssl-dev libsqlite3-dev libjansson-dev uuid-dev libc-ares-dev curl)
# libpq-dev: the PostgreSQL driver (db/driver_pg.c).
BUILD_PKGS+=(libpq-dev)
# libldns-dev: RFC 2136 UPDATE + TSIG of DCV delegation (dcv/dnsupdate.c).
BUILD_PKGS+=(libldns-dev)
# pebble + lego: the ACME test CA and a reference client; bind9-dnsutils: dig;
# valgrind: memory checks of the unit tests; jq: the operator scripts.
# Node.js runs the OpenAPI linter.
TEST_PKGS=(pebble lego bind9-dnsutils python3 openssl valgrind jq)
# clang + libclang-rt-14-dev (libclang_rt.fuzzer): the libFuzzer targets.
TEST_PKGS+=(clang libclang-rt-14-dev)
# clang-format: the style check (tests/style/check-format.sh, CTest style_clang_format).
TEST_PKGS+=(clang-format)
# chromium: the portal's browser test (CTest e2e_portal, driven by playwright-core).
TEST_PKGS+=(chromium)
# postgresql: the server tests/testbed/pg-server runs for the PostgreSQL tests.
TEST_PKGS+=(postgresql)
# iproute2 (ip): each e2e test bed user gets a network namespace of its own
# (unshare -n, CMakeLists.txt CERTPLANE_E2E_NETNS), so they run side by side.
TEST_PKGS+=(iproute2)
# knot (knotd) + knot-dnsutils (kdig) + unbound: the authoritative server and the
# resolver of tests/testbed/dns-testbed (delegated DNS-01, test_dcv_delegation).
TEST_PKGS+=(knot knot-dnsutils unbound)
# nginx: the edge that certplane edge-sync feeds (tests/e2e/test_edge_sync.py).
TEST_PKGS+=(nginx)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

ensure_packages() {
	local missing=() p
	for p in "$@"; do
		installed "$p" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	say "installing ${missing[*]}"
	$SUDO apt-get update -qq
	$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Node.js >= 18.17 with npm, from Debian unless one is already installed
# (another Node.js packaging may carry npm inside its nodejs package).
ensure_node() {
	if command -v node >/dev/null && command -v npm >/dev/null; then
		return 0
	fi
	ensure_packages nodejs npm
}

# ------------------------------------------------------------------- build

# The tenant portal (portal/): npm ci when the lockfile changed, then the
# types from openapi.yaml, tsc and vite build into portal/dist, which the
# server's portal_dir defaults to. Vite and playwright-core need Node >= 20.19.
build_portal() {
	ensure_node
	node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>20||(a===20&&b>=19)?0:1)' ||
		die "the portal needs Node.js >= 20.19 (found $(node --version))"
	say "building the portal (portal/, npm ci + vite build)"
	local log="$SRC/portal/quickstart-build.log"
	if ! {
		# npm ci again only when the lockfile changed since the last one.
		if ! cmp -s portal/package-lock.json portal/node_modules/.certplane-lock 2>/dev/null; then
			(cd portal && npm ci --no-audit --no-fund --loglevel=error &&
				cp package-lock.json node_modules/.certplane-lock)
		fi &&
			(cd portal && npm run build)
	} >"$log" 2>&1; then
		tail -40 "$log" >&2
		die "the portal build failed (full log: $log)"
	fi
	grep -E 'gzip' "$log" | sed 's/^/  /' || true
}

build() { # DIR TYPE [cmake args...]
	local dir=$1 type=$2
	shift 2
	say "building $dir ($type${*:+ $*})"
	local log="$SRC/$dir/quickstart-build.log"
	mkdir -p "$SRC/$dir"
	if ! { cmake -S "$SRC" -B "$SRC/$dir" -DCMAKE_BUILD_TYPE="$type" "$@" &&
		cmake --build "$SRC/$dir" -j "$JOBS"; } >"$log" 2>&1; then
		tail -40 "$log" >&2
		die "build of $dir failed (full log: $log)"
	fi
}

# ------------------------------------------------------------------- serve

port_busy() { # host:port -> true if something accepts connections there
	local host=${1%:*} port=${1##*:}
	[ "$host" = "0.0.0.0" ] && host=127.0.0.1
	(exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

serve() {
	ensure_packages "${BUILD_PKGS[@]}"
	build_portal
	build build Release
	export CERTPLANE_LISTEN=${CERTPLANE_LISTEN:-127.0.0.1:8080}
	if [ -z "${CERTPLANE_HTTP01_LISTEN+x}" ]; then
		# Port 80 needs root (or CAP_NET_BIND_SERVICE). Elsewhere a high
		# loopback port keeps HTTP-01 testable with a local CA; a public CA
		# needs port 80 reachable from the Internet.
		if [ "$(id -u)" -eq 0 ] && ! port_busy 127.0.0.1:80; then
			export CERTPLANE_HTTP01_LISTEN=0.0.0.0:80
		else
			export CERTPLANE_HTTP01_LISTEN=127.0.0.1:8081
		fi
	fi
	port_busy "$CERTPLANE_LISTEN" &&
		die "something already listens on $CERTPLANE_LISTEN (set CERTPLANE_LISTEN=host:port)"
	mkdir -p data
	say "starting certplane serve (data in $SRC/data, API on $CERTPLANE_LISTEN, HTTP-01 on $CERTPLANE_HTTP01_LISTEN)"
	./build/certplane serve &
	local pid=$! i
	trap 'kill -TERM $pid 2>/dev/null; wait $pid' INT TERM
	for i in $(seq 1 100); do
		curl -fsS "http://$CERTPLANE_LISTEN/healthz" >/dev/null 2>&1 && break
		kill -0 $pid 2>/dev/null || die "certplane exited; see the log above"
		sleep 0.1
	done
	local token=${CERTPLANE_OPERATOR_TOKEN:-$(cat data/operator.token)}
	cat <<EOF

certplane is running (pid $pid). Ctrl-C stops it.

Portal (sign in with a tenant API key):
  http://$CERTPLANE_LISTEN/portal/

Operator token (also in data/operator.token, mode 0600):
  $token

Try it:
  export CERTPLANE_URL=http://$CERTPLANE_LISTEN CERTPLANE_TOKEN=$token
  curl -s -H "Authorization: Bearer \$CERTPLANE_TOKEN" \\
       -H 'Content-Type: application/json' -d '{"name": "first tenant"}' \\
       \$CERTPLANE_URL/v1/tenants
  deploy/scripts/create-tenant.sh "Example Shop"     # a tenant and its API key
  deploy/scripts/follow-order.sh --help              # follow an order until it ends
  curl -s \$CERTPLANE_URL/openapi.yaml | head          # the API contract

EOF
	wait $pid
}

# -------------------------------------------------------------------- test

test_all() {
	local t0=$SECONDS failed=0 testbed_was_up=1 asan_dir
	ensure_packages "${BUILD_PKGS[@]}" "${TEST_PKGS[@]}"
	ensure_node
	say "installing the pinned OpenAPI linter (tests/openapi, npm ci)"
	# npm ci again only when the lockfile changed since the last one (npm's
	# own node_modules/.package-lock.json never equals package-lock.json).
	if ! cmp -s tests/openapi/package-lock.json tests/openapi/node_modules/.certplane-lock 2>/dev/null ||
		[ ! -x tests/openapi/node_modules/.bin/redocly ]; then
		(cd tests/openapi && npm ci --no-audit --no-fund --loglevel=error >/dev/null &&
			cp package-lock.json node_modules/.certplane-lock)
	fi
	# The e2e tests share one ACME test bed in /tmp/cp-testbed; stop it at
	# the end only if this run started it.
	tests/testbed/acme-testbed status /tmp/cp-testbed >/dev/null 2>&1 || testbed_was_up=0
	[ $testbed_was_up -eq 1 ] || trap 'tests/testbed/acme-testbed stop /tmp/cp-testbed >/dev/null 2>&1 || true' EXIT

	# The portal (npm ci: mostly network; vite: seconds) builds while the C
	# builds compile; its own log, its failure fails the run.
	build_portal &
	local portal_pid=$!
	build build Debug
	build build-asan Debug -DCERTPLANE_SANITIZE=ON
	wait $portal_pid || die "the portal build failed"

	# Start the test bed here and export its settings, so that the unit
	# tests' Pebble integration (test_acme) runs too instead of skipping.
	tests/testbed/acme-testbed status /tmp/cp-testbed >/dev/null 2>&1 ||
		tests/testbed/acme-testbed start /tmp/cp-testbed
	set -a
	. /tmp/cp-testbed/env
	set +a

	# One PostgreSQL server for the run (a socket in /tmp/cp-pg-run, no
	# TCP): the second pass of the suite runs on it, each e2e server and
	# each unit fixture in a database of its own; the PostgreSQL-only tests
	# (ctest's "pg" fixture) start their own.
	tests/testbed/pg-server start /tmp/cp-pg-run
	local stop_tb=""
	[ $testbed_was_up -eq 1 ] || stop_tb="tests/testbed/acme-testbed stop /tmp/cp-testbed >/dev/null 2>&1 || true"
	# shellcheck disable=SC2064 # expanded now: the function's locals are gone at EXIT
	trap "tests/testbed/pg-server stop /tmp/cp-pg-run >/dev/null 2>&1 || true; $stop_tb" EXIT
	export CERTPLANE_PG_URL="postgresql://certplane@/postgres?host=/tmp/cp-pg-run"

	say "CTest: the whole suite on build/, storage on SQLite"
	ctest --test-dir build --output-on-failure -j "$CTEST_JOBS" || failed=1

	# Sanitizers: every report (ASan, LSan, UBSan) from any process, the
	# server under e2e tests included, goes to a file in asan_dir; a report
	# fails the run even when the process that wrote it was not checked.
	asan_dir=$(mktemp -d /tmp/certplane-asan.XXXXXX)
	export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:log_path=$asan_dir/asan"
	export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$asan_dir/ubsan"
	say "ASan+UBSan: the whole suite again on build-asan/, storage on PostgreSQL"
	# pg_unit_* are the unit_* fixture programs on PostgreSQL: with
	# CERTPLANE_TEST_DB=pg the unit_* ones run there already in this pass.
	CERTPLANE_TEST_DB=pg ctest --test-dir build-asan --output-on-failure -j "$CTEST_JOBS" \
		-E '^pg_unit_' || failed=1
	unset ASAN_OPTIONS UBSAN_OPTIONS
	if compgen -G "$asan_dir/*" >/dev/null; then
		echo "sanitizer reports:" >&2
		cat "$asan_dir"/* >&2
		failed=1
	else
		echo "no sanitizer reports"
	fi
	rm -rf "$asan_dir"

	# libFuzzer: each target of tests/fuzz/ for 20 s on a copy of its seed
	# corpus (clang build in build-fuzz/); any crash, leak or timeout fails.
	say "libFuzzer: tests/fuzz/run.sh (build-fuzz/)"
	JOBS=$JOBS FUZZ_SECONDS=${CERTPLANE_FUZZ_SECONDS:-20} tests/fuzz/run.sh || failed=1

	if [ "${CERTPLANE_VALGRIND:-1}" != 0 ]; then
		say "valgrind: unit tests on build/ ($JOBS at once)"
		# Each unit test is one single-threaded valgrind: JOBS of them at
		# once, each with its own log, reported in order. Only test_acme
		# serves HTTP-01 on the test bed's port, so none collide; it gets
		# a fresh test bed of its own in a network namespace where it can
		# (build/e2e-netns.sh, as in CTest), else the shared one.
		local t n vdir wrap
		vdir=$(mktemp -d /tmp/certplane-valgrind.XXXXXX)
		for t in build/test_*; do
			[ -x "$t" ] || continue
			while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
			n=$(basename "$t")
			wrap=()
			if [ "$n" = test_acme ] && unshare -n true 2>/dev/null; then
				wrap=(unshare -n bash build/e2e-netns.sh --env)
			fi
			(
				rc=0
				timeout 600 "${wrap[@]}" valgrind -q --error-exitcode=99 --leak-check=full \
					--errors-for-leak-kinds=definite --show-leak-kinds=definite "$t" >"$vdir/$n.log" 2>&1 || rc=$?
				echo $rc >"$vdir/$n.rc"
			) &
		done
		wait
		for t in build/test_*; do
			[ -x "$t" ] || continue
			n=$(basename "$t")
			if [ "$(cat "$vdir/$n.rc" 2>/dev/null)" != 0 ]; then
				echo "valgrind: $t failed:" >&2
				tail -50 "$vdir/$n.log" >&2
				failed=1
			else
				echo "valgrind: $n clean"
			fi
		done
		rm -rf "$vdir"
	fi

	say "done in $((SECONDS - t0)) s"
	if [ $failed -ne 0 ]; then
		echo "quickstart test: FAILED" >&2
		return 1
	fi
	echo "quickstart test: all passed"
}

case "$MODE" in
serve) serve ;;
test) test_all ;;
esac
