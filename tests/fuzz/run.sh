#!/usr/bin/env bash
# tests/fuzz/run.sh - build the libFuzzer targets (clang, build-fuzz/) and run
# each for a fixed time on a scratch copy of its seed corpus
# (tests/fuzz/corpus/<target>/ is never written to). Fails on any crash,
# sanitizer report, leak, timeout (-timeout) or out-of-memory (-rss_limit_mb);
# the input that did it is kept in build-fuzz/fuzz-artifacts/.
#
#   tests/fuzz/run.sh                      # CI: every target, 20 s each
#   FUZZ_SECONDS=600 tests/fuzz/run.sh     # a longer run
#   tests/fuzz/run.sh fuzz_pem fuzz_acme   # only these targets
#
# Prints one line per target: executions, CPU seconds (user+sys), result.
set -uo pipefail

src=$(cd "$(dirname "$0")/../.." && pwd)
build=${FUZZ_BUILD:-$src/build-fuzz}
secs=${FUZZ_SECONDS:-20}
jobs=${JOBS:-2}

cmake -S "$src" -B "$build" -DCMAKE_C_COMPILER=clang -DCERTPLANE_FUZZ=ON \
	-DCMAKE_BUILD_TYPE=Debug >/dev/null || exit 1
cmake --build "$build" -j "$jobs" --target fuzz >/dev/null || {
	cmake --build "$build" -j 1 --target fuzz # show the error
	exit 1
}

if [ $# -gt 0 ]; then
	targets=("$@")
else
	targets=()
	for f in "$src"/tests/fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi

# Our own sanitizer settings: reports to stderr (the log below), not to
# whatever log_path a caller exported for its own suite.
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
mkdir -p "$build/fuzz-artifacts"
failed=0
printf '%-14s %12s %8s  %s\n' target executions cpu_s result
for t in "${targets[@]}"; do
	work=$(mktemp -d "/tmp/certplane-fuzz-$t.XXXXXX")
	mkdir -p "$work/corpus"
	cp "$src/tests/fuzz/corpus/$t/"* "$work/corpus/" 2>/dev/null
	TIMEFORMAT='%U %S'
	{ time "$build/tests/fuzz/$t" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
		-max_len=65536 -print_final_stats=1 -artifact_prefix="$work/" \
		"$work/corpus" >"$work/log" 2>&1; } 2>"$work/time"
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
	cpu=$(awk '{ printf "%.1f", $1 + $2 }' "$work/time")
	if [ $rc -eq 0 ]; then
		result=ok
	else
		result="FAILED (exit $rc)"
		failed=1
		for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-* "$work"/oom-* "$work"/slow-unit-*; do
			[ -e "$a" ] && cp "$a" "$build/fuzz-artifacts/$t-$(basename "$a")"
		done
	fi
	printf '%-14s %12s %8s  %s\n' "$t" "${execs:-?}" "$cpu" "$result"
	if [ $rc -ne 0 ]; then
		grep -E 'ERROR|SUMMARY|runtime error|abort|#[0-9]+ 0x' "$work/log" | head -30 >&2
		echo "artifacts: $build/fuzz-artifacts/$t-*" >&2
	fi
	rm -rf "$work"
done
exit $failed
