# lib.sh - what the bench scripts share, sourced (not run) by them after
# they have set SRC (the checkout's root) and, for bench_enter_netns, NETNS:
#
#   bench_release             CERTPLANE_BIN, exported: the caller's, else a
#                             Release certplane built into build-bench/
#   bench_enter_netns GUARD "$0" "$@"
#                             unless the variable GUARD is set (we are inside
#                             already): bench_release, make the network
#                             namespace NETNS with its loopback up (when
#                             missing) and re-exec the script in it with
#                             GUARD=1. Needs root (ip netns).

bench_release() {
	if [ -z "${CERTPLANE_BIN:-}" ]; then
		echo "building build-bench (Release)"
		cmake -S "$SRC" -B "$SRC/build-bench" -DCMAKE_BUILD_TYPE=Release >/dev/null
		cmake --build "$SRC/build-bench" -j "$(nproc)" --target certplane >/dev/null
		CERTPLANE_BIN=$SRC/build-bench/certplane
	fi
	export CERTPLANE_BIN
}

bench_enter_netns() {
	local guard=$1
	shift
	[ -z "${!guard:-}" ] || return 0
	bench_release
	ip netns list | awk '{print $1}' | grep -qxF "$NETNS" || {
		ip netns add "$NETNS"
		ip netns exec "$NETNS" ip link set lo up
	}
	exec ip netns exec "$NETNS" env "$guard=1" bash "$@"
}
