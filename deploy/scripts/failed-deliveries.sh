#!/usr/bin/env bash
# failed-deliveries.sh TENANT_ID - webhook deliveries of a tenant that gave
# up (state "failed"), oldest first, with the last error. Tab-separated:
#   created_at  webhook_id  url  delivery_id  event_type  attempts  last_error
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] || die "usage: failed-deliveries.sh TENANT_ID"
uuid_ok "$1" || die "TENANT_ID must be a UUID"
tenant=$1
hooks=$(api_all /v1/webhooks "$tenant") || exit 1
printf 'created_at\twebhook_id\turl\tdelivery_id\tevent_type\tattempts\tlast_error\n'
while IFS= read -r hook; do
	[ -n "$hook" ] || continue
	id=$(jq -r .id <<<"$hook")
	url=$(jq -r .url <<<"$hook")
	api_all "/v1/webhooks/$id/deliveries?state=failed" "$tenant" |
		jq -r --arg w "$id" --arg u "$url" '[.created_at, $w, $u, .id, .event_type,
			((.attempts // []) | length), (.last_error // "")] | @tsv'
done <<<"$hooks" | sort
