# shellcheck shell=bash
# lib.sh - shared by the operator scripts in this folder (sourced, not run).
# Reads CERTPLANE_URL (default http://127.0.0.1:8080) and CERTPLANE_TOKEN
# (the operator token, or a tenant's API key where a script allows it).
# Needs curl and jq.
#
# A script sets USAGE (its first line "usage: NAME ARGS", then what it does)
# and, if it takes options with a value, OPTIONS ("tenant timeout": --tenant
# X or --tenant=X lands in OPT_tenant); then it sources this file and calls
# `cli_parse "$@"; set -- "${ARGS[@]}"`. Every script exits with:
#   0  done (for follow-order.sh: the order is valid)
#   1  the script's own "no" (follow-order.sh: the order failed or was canceled)
#   2  usage: a bad argument, an unknown option, CERTPLANE_TOKEN unset,
#      curl or jq missing (nothing was sent to the API)
#   3  the API cannot be reached (connection refused, DNS, TLS, timeout)
#   4  the API answered with an error (its problem's title and detail printed)
# Each error is printed once, on stderr, prefixed with the script's name.
set -euo pipefail

: "${CERTPLANE_URL:=http://127.0.0.1:8080}"
CERTPLANE_URL=${CERTPLANE_URL%/}
: "${USAGE:=usage: $(basename "$0")}"
: "${OPTIONS:=}"
# shellcheck disable=SC2034 # EXIT_NO is for the scripts
readonly EXIT_NO=1 EXIT_USAGE=2 EXIT_UNREACHABLE=3 EXIT_API=4

# fail CODE MESSAGE...: print the message once and exit with CODE.
fail() {
	local code=$1
	shift
	printf '%s: %s\n' "$(basename "$0")" "$*" >&2
	exit "$code"
}

# die MESSAGE...: a usage error (exit 2), with the usage line as a reminder.
die() { fail "$EXIT_USAGE" "$*"$'\n'"${USAGE%%$'\n'*}"; }

# cli_parse "$@": --help/-h prints USAGE and exits 0; an option named in
# OPTIONS sets OPT_<name>; `--` ends options; any other option is refused
# (exit 2) before anything reaches the API. The positional arguments are
# left in ARGS. Then checks the environment (token, curl, jq).
ARGS=()
cli_parse() {
	local name value
	while [ $# -gt 0 ]; do
		case $1 in
		-h | --help)
			printf '%s\n' "$USAGE"
			exit 0
			;;
		--)
			shift
			ARGS+=("$@")
			break
			;;
		--?*)
			name=${1#--}
			value=
			if [[ $name == *=* ]]; then
				value=${name#*=}
				name=${name%%=*}
			elif [ $# -ge 2 ]; then
				value=$2
				shift
			else
				value=$'\x01' # marks "no value given"
			fi
			[[ $name =~ ^[a-z][a-z-]*$ && " $OPTIONS " == *" $name "* ]] ||
				die "unknown option --$name"
			{ [ "$value" != $'\x01' ] && [ -n "$value" ]; } || die "--$name needs a value"
			printf -v "OPT_${name//-/_}" '%s' "$value"
			;;
		-?*) die "unknown option $1" ;;
		*) ARGS+=("$1") ;;
		esac
		shift
	done
	command -v curl >/dev/null || fail "$EXIT_USAGE" "curl is required"
	command -v jq >/dev/null || fail "$EXIT_USAGE" "jq is required (apt-get install jq)"
	[ -n "${CERTPLANE_TOKEN:-}" ] ||
		fail "$EXIT_USAGE" "set CERTPLANE_TOKEN (the operator token: data_dir/operator.token)"
}

# api_try METHOD PATH [BODY] [TENANT_ID]: one request, in this shell (never
# in $(...)), so that API_STATUS and API_BODY stay set for the caller.
# Returns 0 on a 2xx, 1 on any other answer; an unreachable API exits 3.
API_STATUS=
API_BODY=
API_WHAT=
api_try() {
	local method=$1 path=$2 body=${3:-} tenant=${4:-} out rc=0 why
	local -a args
	args=(-s -X "$method" --connect-timeout 10 --max-time 60
		-H "Authorization: Bearer $CERTPLANE_TOKEN" -w '\n%{http_code}')
	[ -n "$tenant" ] && args+=(-H "X-Tenant-ID: $tenant")
	[ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
	API_WHAT="$method $path"
	out=$(curl "${args[@]}" "$CERTPLANE_URL$path") || rc=$?
	if [ "$rc" -ne 0 ]; then
		case $rc in
		6) why="cannot resolve the host" ;;
		7) why="connection refused" ;;
		28) why="timed out" ;;
		35 | 51 | 53 | 54 | 58 | 59 | 60 | 77 | 80 | 82 | 83 | 90 | 91) why="TLS failed" ;;
		52) why="empty reply" ;;
		56) why="connection reset" ;;
		*) why="curl exit $rc" ;;
		esac
		fail "$EXIT_UNREACHABLE" "cannot reach the API at $CERTPLANE_URL ($why)"
	fi
	API_STATUS=${out##*$'\n'}
	API_BODY=${out%$'\n'*}
	[[ $API_STATUS =~ ^2[0-9][0-9]$ ]]
}

# api_fail: print the last answer's problem (status, title: detail, field
# errors) once and exit 4.
api_fail() {
	local msg
	msg=$(jq -r '[(.title // empty) + ": " + (.detail // "")] +
		[(.errors // [])[] | "\(.field) \(.message)"] | join("; ")' \
		<<<"$API_BODY" 2>/dev/null) || msg=
	[ -n "$msg" ] || msg=$(head -c 300 <<<"$API_BODY")
	fail "$EXIT_API" "$API_WHAT: $API_STATUS $msg"
}

# api METHOD PATH [BODY] [TENANT_ID]: api_try, exiting on any error.
api() { api_try "$@" || api_fail; }

# api_all PATH [TENANT_ID]: every item of a list into API_ITEMS, one compact
# JSON object a line, following next_cursor to the end.
API_ITEMS=
api_all() {
	local path=$1 tenant=${2:-} sep='?' cursor=
	case "$path" in *\?*) sep='&' ;; esac
	API_ITEMS=
	while :; do
		api GET "$path${sep}limit=500${cursor:+&cursor=$cursor}" "" "$tenant"
		API_ITEMS+=$(jq -c '.data[]' <<<"$API_BODY")$'\n'
		cursor=$(jq -r '.next_cursor // empty' <<<"$API_BODY")
		[ -n "$cursor" ] || break
	done
	API_ITEMS=$(sed '/^$/d' <<<"$API_ITEMS")
}

uuid_ok() { [[ $1 =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]]; }
