#!/usr/bin/env bash
# failed-deliveries.sh TENANT_ID - webhook deliveries of a tenant that gave
# up (state "failed"), oldest first, with the last error. Tab-separated:
#   created_at  webhook_id  url  delivery_id  event_type  attempts  last_error
USAGE='usage: failed-deliveries.sh TENANT_ID
The webhook deliveries of a tenant that gave up (state "failed"), oldest
first, with the last error. Tab-separated, with a header line:
  created_at  webhook_id  url  delivery_id  event_type  attempts  last_error
Environment: CERTPLANE_TOKEN (the operator token), CERTPLANE_URL.
Exit: 0 listed (maybe none), 2 usage, 3 API unreachable, 4 API error.'
. "$(dirname "$0")/lib.sh"
cli_parse "$@"
set -- "${ARGS[@]}"

[ $# -eq 1 ] || die "one TENANT_ID is needed"
uuid_ok "$1" || die "TENANT_ID must be a UUID"
tenant=$1
api_all /v1/webhooks "$tenant"
hooks=$API_ITEMS
rows=
while IFS= read -r hook; do
	[ -n "$hook" ] || continue
	id=$(jq -r .id <<<"$hook")
	url=$(jq -r .url <<<"$hook")
	api_all "/v1/webhooks/$id/deliveries?state=failed" "$tenant"
	[ -n "$API_ITEMS" ] || continue
	rows+=$(jq -r --arg w "$id" --arg u "$url" '[.created_at, $w, $u, .id, .event_type,
		((.attempts // []) | length), (.last_error // "")] | @tsv' <<<"$API_ITEMS")$'\n'
done <<<"$hooks"
printf 'created_at\twebhook_id\turl\tdelivery_id\tevent_type\tattempts\tlast_error\n'
printf '%s' "$rows" | sed '/^$/d' | sort
