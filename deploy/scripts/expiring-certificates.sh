#!/usr/bin/env bash
# expiring-certificates.sh DAYS - every certificate that expires within DAYS
# days, soonest first, across all tenants (with the operator token) or of
# one tenant (with its API key). Tab-separated:
#   not_after  tenant_id  certificate_id  status  auto_renew  name  sans
USAGE='usage: expiring-certificates.sh DAYS
Every certificate that expires within DAYS days, soonest first: of every
tenant with the operator token, of its own tenant with a tenant API key.
Tab-separated, with a header line:
  not_after  tenant_id  certificate_id  status  auto_renew  name  sans
Environment: CERTPLANE_TOKEN, CERTPLANE_URL.
Exit: 0 listed (maybe none), 2 usage, 3 API unreachable, 4 API error.'
. "$(dirname "$0")/lib.sh"
cli_parse "$@"
set -- "${ARGS[@]}"

{ [ $# -eq 1 ] && [[ $1 =~ ^[0-9]{1,5}$ ]]; } || die "DAYS must be a whole number of days"
days=$1

# The operator lists every tenant; a tenant key gets 403 here and sees its own.
if api_try GET '/v1/tenants?limit=1'; then
	api_all /v1/tenants
	tenants=$(jq -r .id <<<"$API_ITEMS")
elif [ "$API_STATUS" = 403 ]; then
	tenants=self
else
	api_fail
fi

rows=
for t in $tenants; do
	[ "$t" = self ] && t=
	api_all "/v1/certificates?expiring_within_days=$days" "$t"
	[ -n "$API_ITEMS" ] || continue
	rows+=$(jq -r --arg t "$t" '[.not_after, (if $t == "" then .tenant_id // "-" else $t end),
		.id, .status, .auto_renew, .name, ((.sans // []) | join(","))] | @tsv' <<<"$API_ITEMS")$'\n'
done
printf 'not_after\ttenant_id\tcertificate_id\tstatus\tauto_renew\tname\tsans\n'
printf '%s' "$rows" | sed '/^$/d' | sort
