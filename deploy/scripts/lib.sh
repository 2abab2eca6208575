# lib.sh - shared by the operator scripts in this folder (sourced, not run).
# Reads CERTPLANE_URL (default http://127.0.0.1:8080) and CERTPLANE_TOKEN
# (the operator token, or a tenant's API key where a script allows it).
# Needs curl and jq.
set -euo pipefail

: "${CERTPLANE_URL:=http://127.0.0.1:8080}"
CERTPLANE_URL=${CERTPLANE_URL%/}

die() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

command -v curl >/dev/null || die "curl is required"
command -v jq >/dev/null || die "jq is required (apt-get install jq)"
[ -n "${CERTPLANE_TOKEN:-}" ] || die "set CERTPLANE_TOKEN (the operator token: data_dir/operator.token)"

# api METHOD PATH [BODY] [TENANT_ID]: print the response body; on an HTTP
# error print the problem's detail (and field errors) and return 1.
# API_STATUS is set to the HTTP status either way.
API_STATUS=
api() {
	local method=$1 path=$2 body=${3:-} tenant=${4:-} out args
	args=(-sS -X "$method" -H "Authorization: Bearer $CERTPLANE_TOKEN" -w '\n%{http_code}')
	[ -n "$tenant" ] && args+=(-H "X-Tenant-ID: $tenant")
	[ -n "$body" ] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
	out=$(curl "${args[@]}" "$CERTPLANE_URL$path") || die "cannot reach $CERTPLANE_URL"
	API_STATUS=${out##*$'\n'}
	out=${out%$'\n'*}
	if [ "$API_STATUS" -ge 400 ]; then
		printf '%s %s: %s %s\n' "$method" "$path" "$API_STATUS" \
			"$(jq -r '[.detail] + [(.errors // [])[] | "\(.field) \(.message)"] | join("; ")' \
				<<<"$out" 2>/dev/null || printf '%s' "$out")" >&2
		return 1
	fi
	printf '%s' "$out"
}

# api_all PATH [TENANT_ID]: every item of a list, one compact JSON object a
# line, following next_cursor to the end.
api_all() {
	local path=$1 tenant=${2:-} sep='?' cursor= page
	case "$path" in *\?*) sep='&' ;; esac
	while :; do
		page=$(api GET "$path${sep}limit=500${cursor:+&cursor=$cursor}" "" "$tenant") || return 1
		jq -c '.data[]' <<<"$page"
		cursor=$(jq -r '.next_cursor // empty' <<<"$page")
		[ -n "$cursor" ] || return 0
	done
}

uuid_ok() { [[ $1 =~ ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$ ]]; }
