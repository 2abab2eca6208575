#!/usr/bin/env bash
# follow-order.sh [--tenant TENANT_ID] [--timeout SECONDS] ORDER_ID - poll an
# order (GET /v1/orders/{id}) until it ends, printing each change: its
# status, its error, and each authorization's record to publish.
USAGE='usage: follow-order.sh [--tenant TENANT_ID] [--timeout SECONDS] ORDER_ID
Follow an order until it ends: poll GET /v1/orders/{id} (1 s, doubling to
15 s while nothing changes) and print each change, tab-separated:
  TIME  status  STATUS  [REASON: DETAIL]
  TIME  record  IDENTIFIER  TXT   NAME  VALUE    (dns-01: publish this TXT)
  TIME  record  IDENTIFIER  HTTP  URL   BODY     (http-01: certplane serves it)
Each record is printed once, when the CA has handed it out.
--tenant     the tenant of the order (the operator token needs it; a tenant
             API key does not)
--timeout    give up after SECONDS (default: wait as long as the order runs)
Environment: CERTPLANE_TOKEN, CERTPLANE_URL.
Exit: 0 the order is valid, 1 it failed or was canceled, 2 usage,
3 API unreachable, 4 API error, 5 still running at --timeout.'
OPTIONS="tenant timeout"
. "$(dirname "$0")/lib.sh"
cli_parse "$@"
set -- "${ARGS[@]}"

[ $# -eq 1 ] || die "one ORDER_ID is needed"
uuid_ok "$1" || die "ORDER_ID must be a UUID"
order=$1
tenant=${OPT_tenant:-}
[ -z "$tenant" ] || uuid_ok "$tenant" || die "--tenant must be a UUID"
timeout=${OPT_timeout:-0}
[[ $timeout =~ ^[0-9]{1,7}$ ]] || die "--timeout must be a whole number of seconds"

deadline=0
[ "$timeout" -eq 0 ] || deadline=$((SECONDS + timeout))
interval=1
last_status='' last_error=''
declare -A seen=()
while :; do
	if ! api_try GET "/v1/orders/$order" "" "$tenant"; then
		# A busy or rate-limited server is waited out; anything else ends it.
		case $API_STATUS in 429 | 502 | 503) ;; *) api_fail ;; esac
	else
		now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
		changed=
		{
			IFS= read -r status
			IFS= read -r error
			mapfile -t records
		} < <(jq -r '.status, (if .error then "\(.error.reason): \(.error.detail)" else "" end),
			(.authorizations[] | select(.challenge != null) | .identifier as $i | .challenge |
			 if .type == "dns-01" and .txt_record_name then
				[($i // "-"), "TXT", .txt_record_name, .txt_record_value] | @tsv
			 elif .type == "http-01" and .url then
				[($i // "-"), "HTTP", .url, (.body // "")] | @tsv
			 else empty end)' <<<"$API_BODY")
		if [ "$status" != "$last_status" ] || [ "$error" != "$last_error" ]; then
			printf '%s\tstatus\t%s%s\n' "$now" "$status" "${error:+$'\t'$error}"
			last_status=$status last_error=$error changed=1
		fi
		for r in "${records[@]}"; do
			[ -n "${seen[$r]:-}" ] && continue
			seen[$r]=1 changed=1
			printf '%s\trecord\t%s\n' "$now" "$r"
		done
		case $status in
		valid) exit 0 ;;
		failed | canceled | invalid) exit "$EXIT_NO" ;;
		esac
		[ -z "$changed" ] || interval=1
	fi
	if [ "$deadline" -gt 0 ] && [ $((SECONDS + interval)) -gt "$deadline" ]; then
		fail 5 "order $order is still $last_status after ${timeout}s"
	fi
	sleep "$interval"
	interval=$((interval * 2 > 15 ? 15 : interval * 2))
done
