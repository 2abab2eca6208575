#!/usr/bin/env bash
# tests/bench/run.sh - certplane's benchmarks (not part of CTest; see README.md
# in this folder for what each measures and the last numbers).
#
#   bash tests/bench/run.sh [reads|writes|memory|issuance|all]   (default all)
#
# Builds a Release binary into build-bench/, runs it on a temporary data
# directory on loopback with rate limiting off, and drives it with wrk.
# Knobs: DURATION (s, default 10), CONNECTIONS (default 32), THREADS (wrk,
# default 2), READ_THREADS / READ_CONNECTIONS (the reads benchmark, default
# 1 / 64) and READ_HTTP_THREADS (its server's http_threads, default 1),
# CERTS (memory benchmark, default 100000), CERTPLANE_BIN (skip
# the build and use this binary). `reads` exits nonzero when an endpoint is
# below 0.7x nginx or its p99 is 3 ms or more.
set -euo pipefail

WHAT=${1:-all}
cd "$(dirname "$0")/../.."
SRC=$PWD
BENCH=$SRC/tests/bench
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
CERTS=${CERTS:-100000}
# The reads benchmark's own wrk shape (issue 10: one wrk thread, 64
# connections), for both certplane and nginx.
READ_THREADS=${READ_THREADS:-1}
READ_CONNECTIONS=${READ_CONNECTIONS:-64}
# The reads benchmark's server: one HTTP thread (READ_HTTP_THREADS; the
# server's default is 4). wrk takes one of this box's two cores; one
# thread keeps the server on the other without being preempted by its own
# threads, which is what the p99 target measures (at 4 threads the
# throughput holds, 0.87-1.06x nginx, but the p99 is 2.9-5.4 ms, at
# nginx's own 3.3-4.5 ms). The cache the reads answer from is per thread.
READ_HTTP_THREADS=${READ_HTTP_THREADS:-1}

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx-light)
command -v jq >/dev/null || need+=(jq)
command -v curl >/dev/null || need+=(curl)
if [ ${#need[@]} -gt 0 ]; then
	SUDO=
	[ "$(id -u)" -eq 0 ] || SUDO=sudo
	$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

. "$BENCH/lib.sh"
bench_release

WORK=$(mktemp -d /tmp/certplane-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_certplane NAME: a fresh server; sets URL, TOKEN, CP_PID.
start_certplane() {
	local dir=$WORK/$1 port
	port=$(free_port)
	mkdir -p "$dir"
	CERTPLANE_LISTEN=127.0.0.1:$port CERTPLANE_DATA_DIR=$dir CERTPLANE_HTTP01_LISTEN= \
		CERTPLANE_RATE_LIMIT_PER_SECOND=0 CERTPLANE_SCHEDULER_INTERVAL_SECONDS=300 \
		CERTPLANE_QUOTA_PROPERTIES=1000000000 CERTPLANE_QUOTA_HOSTNAMES=1000000000 \
		CERTPLANE_QUOTA_CERTIFICATES=1000000000 \
		"$CERTPLANE_BIN" serve 2>"$dir/server.log" &
	CP_PID=$!
	PIDS+=("$CP_PID")
	URL=http://127.0.0.1:$port
	for _ in $(seq 1 100); do
		curl -fsS "$URL/healthz" >/dev/null 2>&1 && break
		sleep 0.05
	done
	TOKEN=$(cat "$dir/operator.token")
}

api() { # METHOD PATH [BODY] [KEY]
	curl -fsS -X "$1" -H "Authorization: Bearer ${4:-$TOKEN}" \
		${3:+-H 'Content-Type: application/json' --data-binary "$3"} "$URL$2"
}

# wrk_rps LOG: the Requests/sec of a wrk run; fails on socket errors or
# non-2xx answers, which would make the number meaningless.
wrk_rps() {
	if grep -q 'Non-2xx or 3xx responses' "$1"; then
		cat "$1" >&2
		die "non-2xx responses during the run"
	fi
	awk '/Requests\/sec:/ {print $2}' "$1"
}

tenant_key() { # -> "tenant_id key"
	local t k
	t=$(api POST /v1/tenants '{"name":"bench"}' | jq -r .id)
	k=$(api POST "/v1/tenants/$t/api-keys" '{"name":"bench"}' | jq -r .key)
	echo "$t $k"
}

# ------------------------------------------------------------- (a) reads

# wrk_p99_ms LOG: the 99th percentile latency of a wrk --latency run, in ms.
wrk_p99_ms() {
	awk '$1 == "99%" {
		v = $2; u = v; sub(/^[0-9.]+/, "", u); sub(/[a-z]+$/, "", v)
		f = (u == "us") ? 0.001 : (u == "ms") ? 1 : (u == "s") ? 1000 : (u == "m") ? 60000 : -1
		if (f < 0) { print "unit?"; exit }
		printf "%.3f\n", v * f }' "$1"
}

# cpu_ticks PID...: the summed user and system CPU ticks of the processes.
cpu_ticks() {
	local p
	for p in "$@"; do awk '{print $14, $15}' "/proc/$p/stat"; done |
		awk '{u += $1; s += $2} END {print u + 0, s + 0}'
}

# cpu_per_request BEFORE AFTER LOG: "user U sys S us/request" of the server
# between two cpu_ticks readings, over the requests of the wrk LOG. Steadier
# than req/s on a shared machine (the server's own cost, not its share).
cpu_per_request() {
	local n
	n=$(awk '/requests in/ {print $1}' "$3")
	echo "$1 $2" | awk -v n="$n" -v hz="$(getconf CLK_TCK)" '{
		printf "user %.1f sys %.1f us/request", ($3 - $1) * 1e6 / hz / n, ($4 - $2) * 1e6 / hz / n }'
}

# cpu_steal: the machine's stolen and total CPU ticks so far (/proc/stat).
# On a VM the hypervisor's steal stalls whichever process runs there for
# milliseconds: the tail of both servers' latency follows it.
cpu_steal() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print $9, t}' /proc/stat; }

# steal_pct BEFORE AFTER: the share of CPU time stolen in between.
steal_pct() { echo "$1 $2" | awk '{ d = $4 - $2; printf "%.1f", (d > 0 ? ($3 - $1) * 100 / d : 0) }'; }

# handler_ms LOG FROM PATH: p50/p99/max of the server's own duration_ms
# (request read to answer queued) in the http.request lines of LOG after
# line FROM for PATH: time inside certplane, apart from the time a request
# waits for the HTTP thread or the network (what wrk's p99 adds on top).
handler_ms() {
	sleep 0.3 # the request log is written within 100 ms
	tail -n +"$(($2 + 1))" "$1" | grep -F "\"path\":\"$3\"" |
		sed -n 's/.*"duration_ms":\([0-9.]*\).*/\1/p' | sort -n |
		awk '{v[NR] = $1} END { if (NR == 0) { print "handler: no log lines"; exit }
			printf "handler p50 %.3f p99 %.3f max %.3f ms (%d requests)", v[int(NR * 0.5) + 1],
				v[int(NR * 0.99) + 1], v[NR], NR }'
}

# read_pair NAME CP_PATH NGINX_PATH: the same wrk run against certplane and
# against nginx serving the saved bytes; prints one line each and the
# verdict, and returns 1 when the target is missed.
read_pair() {
	local name=$1 cpath=$2 npath=$3 cp_rps ng_rps cp_p99 ng_p99 verdict a b
	local w=(wrk -t"$READ_THREADS" -c"$READ_CONNECTIONS") ngw cp_cpu ng_cpu from handler
	local sa cp_steal ng_steal
	mapfile -t ngw < <(pgrep -P "$NGINX_PID")
	"${w[@]}" -d2s -s "$BENCH/get_auth.lua" "$URL" -- "$key" "$cpath" >/dev/null
	sleep 0.3
	from=$(wc -l <"$WORK/reads/server.log")
	a=$(cpu_ticks "$CP_PID")
	sa=$(cpu_steal)
	"${w[@]}" -d"${DURATION}s" --latency -s "$BENCH/get_auth.lua" "$URL" -- "$key" "$cpath" \
		>"$WORK/wrk-cp-$name.log"
	cp_steal=$(steal_pct "$sa" "$(cpu_steal)")
	b=$(cpu_ticks "$CP_PID")
	cp_cpu=$(cpu_per_request "$a" "$b" "$WORK/wrk-cp-$name.log")
	handler=$(handler_ms "$WORK/reads/server.log" "$from" "$cpath")
	"${w[@]}" -d2s -s "$BENCH/get_auth.lua" "$NGINX" -- "$key" "$npath" >/dev/null
	a=$(cpu_ticks "${ngw[@]}")
	sa=$(cpu_steal)
	"${w[@]}" -d"${DURATION}s" --latency -s "$BENCH/get_auth.lua" "$NGINX" -- "$key" "$npath" \
		>"$WORK/wrk-nginx-$name.log"
	ng_steal=$(steal_pct "$sa" "$(cpu_steal)")
	b=$(cpu_ticks "${ngw[@]}")
	ng_cpu=$(cpu_per_request "$a" "$b" "$WORK/wrk-nginx-$name.log")
	cp_rps=$(wrk_rps "$WORK/wrk-cp-$name.log")
	ng_rps=$(wrk_rps "$WORK/wrk-nginx-$name.log")
	cp_p99=$(wrk_p99_ms "$WORK/wrk-cp-$name.log")
	ng_p99=$(wrk_p99_ms "$WORK/wrk-nginx-$name.log")
	printf '%s (%d bytes)\n' "$cpath" "$(wc -c <"$WORK/www$npath")"
	printf '  certplane  %10.0f req/s  p50 %s  p99 %s ms  %s  steal %s%%\n' "$cp_rps" \
		"$(awk '$1=="50%" {print $2}' "$WORK/wrk-cp-$name.log")" "$cp_p99" "$cp_cpu" "$cp_steal"
	printf '             %s\n' "$handler"
	printf '  nginx      %10.0f req/s  p50 %s  p99 %s ms  %s  steal %s%%\n' "$ng_rps" \
		"$(awk '$1=="50%" {print $2}' "$WORK/wrk-nginx-$name.log")" "$ng_p99" "$ng_cpu" "$ng_steal"
	verdict=$(awk -v a="$cp_rps" -v b="$ng_rps" -v p="$cp_p99" 'BEGIN {
		r = a / b; ok = (r >= 0.70 && p + 0 < 3.0)
		printf "%s ratio %.2f x nginx (target >= 0.70), p99 %.2f ms (target < 3)\n",
			ok ? "PASS" : "FAIL", r, p }')
	printf '  %s\n' "$verdict"
	[ "${verdict%% *}" = PASS ]
}

bench_reads() {
	echo "== (a) API reads: GET /v1/certificates/{id} and /v1/properties/{id} vs nginx, same bytes, same wrk settings"
	CERTPLANE_HTTP_THREADS=$READ_HTTP_THREADS start_certplane reads
	local tk edge cert prop nport ncfg fail=0
	tk=$(tenant_key)
	key=${tk#* }
	edge=$(api POST /v1/edge-hostnames '{"label":"reads"}' "$key" | jq -r .id)
	cert=$(api POST /v1/certificates '{"source":"self_signed","name":"reads","hostnames":["www.reads.example.com","reads.example.com"],"metadata":{"team":"web"}}' "$key" | jq -r .id)
	prop=$(api POST /v1/properties "{\"name\":\"reads\",\"hostnames\":[\"www.reads.example.com\",\"reads.example.com\"],\"edge_hostname_id\":\"$edge\",\"certificate_id\":\"$cert\",\"certificate_renew_automation\":false}" "$key" | jq -r .id)
	api POST "/v1/properties/$prop/deployments" '{"environment":"production"}' "$key" >/dev/null
	# nginx serves exactly the bytes certplane answers.
	mkdir -p "$WORK/www"
	api GET "/v1/certificates/$cert" "" "$key" >"$WORK/www/certificate.json"
	api GET "/v1/properties/$prop" "" "$key" >"$WORK/www/property.json"
	chmod -R a+rX "$WORK/www"
	nport=$(free_port)
	NGINX=http://127.0.0.1:$nport
	ncfg=$WORK/nginx.conf
	cat >"$ncfg" <<EOF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log;
events { worker_connections 4096; }
http {
	access_log $WORK/nginx-access.log;
	default_type application/json;
	keepalive_requests 1000000;
	server { listen 127.0.0.1:$nport; root $WORK/www; }
}
EOF
	nginx -p "$WORK" -c "$ncfg" -g 'daemon off;' &
	NGINX_PID=$!
	PIDS+=("$NGINX_PID")
	sleep 0.5
	for f in certificate property; do
		curl -fsS "$NGINX/$f.json" | cmp -s - "$WORK/www/$f.json" ||
			die "nginx does not serve $f.json"
	done
	printf 'wrk -t%d -c%d -d%ss each, certplane (http_threads %s) then nginx\n' "$READ_THREADS" "$READ_CONNECTIONS" "$DURATION" "$READ_HTTP_THREADS"
	read_pair certificate "/v1/certificates/$cert" /certificate.json || fail=1
	read_pair property "/v1/properties/$prop" /property.json || fail=1
	kill "$CP_PID"
	wait "$CP_PID" 2>/dev/null || true
	if [ "$fail" -ne 0 ]; then
		printf 'bench: reads below target (ratio >= 0.7 x nginx and p99 < 3 ms per endpoint)\n' >&2
		return 1
	fi
}

# ------------------------------------------------------------ (b) writes

bench_writes() {
	echo "== (b) API writes: POST /v1/properties, a unique hostname each"
	start_certplane writes
	local tk key edge rps n
	tk=$(tenant_key)
	key=${tk#* }
	edge=$(api POST /v1/edge-hostnames '{"label":"writes"}' "$key" | jq -r .id)
	wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$BENCH/post_property.lua" "$URL" -- \
		"$key" "$edge" >"$WORK/wrk-writes.log"
	rps=$(wrk_rps "$WORK/wrk-writes.log")
	n=$(curl -fsS -H "Authorization: Bearer $TOKEN" "$URL/metrics" |
		awk -F'} ' '/^certplane_http_requests_total\{route="\/v1\/properties",method="POST",status="201"\}/ {print $2}')
	printf 'certplane  %10.0f properties/s  p50 %s  p99 %s  (%s created, each its own transaction + audit row)\n' \
		"$rps" "$(awk '$1=="50%" {print $2}' "$WORK/wrk-writes.log")" \
		"$(awk '$1=="99%" {print $2}' "$WORK/wrk-writes.log")" "${n:-?}"
	kill "$CP_PID"
	wait "$CP_PID" 2>/dev/null || true
}

# ------------------------------------------------------------ (c) memory

bench_memory() {
	echo "== (c) memory: peak RSS with $CERTS certificates while serving list/get traffic"
	start_certplane memory
	local tk key t0 have ids hwm rss dbsize rps
	tk=$(tenant_key)
	key=${tk#* }
	# Filled through the real API (self-signed ECDSA P-256, sealed private
	# key, version row, audit row each), so the database is what production
	# would hold; see README.md.
	t0=$SECONDS
	have=0
	while [ "$have" -lt "$CERTS" ]; do
		timeout 120 wrk -t"$THREADS" -c"$CONNECTIONS" -d5s -s "$BENCH/post_certificate.lua" "$URL" -- "$key" >"$WORK/wrk-fill.log" || true
		have=$(curl -fsS -H "Authorization: Bearer $TOKEN" "$URL/metrics" |
			awk '/^certplane_certificates\{/ {n += $2} END {print n + 0}')
	done
	echo "filled: $have certificates in $((SECONDS - t0)) s through POST /v1/certificates"
	ids=$(api GET '/v1/certificates?limit=500' "" "$key" | jq -r '.data[].id' | head -50)
	# shellcheck disable=SC2086
	wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" -s "$BENCH/get_auth.lua" "$URL" -- "$key" \
		'/v1/certificates?limit=100' '/v1/certificates?limit=500' '/v1/certificates?expiring_within_days=30&limit=100' \
		$(printf '/v1/certificates/%s ' $ids) >"$WORK/wrk-mem.log"
	rps=$(wrk_rps "$WORK/wrk-mem.log")
	hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$CP_PID/status")
	rss=$(awk '/^VmRSS/ {print $2}' "/proc/$CP_PID/status")
	dbsize=$(du -k "$WORK/memory/certplane.db" | cut -f1)
	printf 'list/get traffic: %.0f req/s\n' "$rps"
	printf 'VmHWM %d MiB (peak, including the fill), VmRSS %d MiB after, database %d MiB\n' \
		$((hwm / 1024)) $((rss / 1024)) $((dbsize / 1024))
	kill "$CP_PID"
	wait "$CP_PID" 2>/dev/null || true
}

# ---------------------------------------------------------- (d) issuance

bench_issuance() {
	echo "== (d) issuance vs lego against Pebble"
	if [ -f "$BENCH/issuance.py" ]; then
		CERTPLANE_BIN=$CERTPLANE_BIN python3 "$BENCH/issuance.py" 100
	else
		echo "not measured: tests/bench/issuance.py is missing"
	fi
}

case "$WHAT" in
reads) bench_reads ;;
writes) bench_writes ;;
memory) bench_memory ;;
issuance) bench_issuance ;;
all)
	# A missed read target fails the run, after the other benchmarks.
	reads_rc=0
	bench_reads || reads_rc=$?
	bench_writes
	bench_memory
	bench_issuance
	exit "$reads_rc"
	;;
*) die "usage: run.sh [reads|writes|memory|issuance|all]" ;;
esac
