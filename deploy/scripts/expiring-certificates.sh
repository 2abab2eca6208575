#!/usr/bin/env bash
# expiring-certificates.sh DAYS - every certificate that expires within DAYS
# days, soonest first, across all tenants (with the operator token) or of
# one tenant (with its API key). Tab-separated:
#   not_after  tenant_id  certificate_id  status  auto_renew  name  sans
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] && [[ $1 =~ ^[0-9]+$ ]] || die "usage: expiring-certificates.sh DAYS"
days=$1

# The operator lists every tenant; a tenant key gets 403 here and sees its own.
if api GET '/v1/tenants?limit=1' >/dev/null 2>&1; then
	tenants=$(api_all /v1/tenants | jq -r .id) || exit 1
elif [ "$API_STATUS" = 403 ]; then
	tenants=self
else
	api GET '/v1/tenants?limit=1' >/dev/null # prints the error
	exit 1
fi

rows=
for t in $tenants; do
	[ "$t" = self ] && t=
	certs=$(api_all "/v1/certificates?expiring_within_days=$days" "$t") || exit 1
	[ -n "$certs" ] || continue
	rows+=$(jq -r --arg t "$t" '[.not_after, (if $t == "" then .tenant_id // "-" else $t end),
		.id, .status, .auto_renew, .name, ((.sans // []) | join(","))] | @tsv' <<<"$certs")$'\n'
done
printf 'not_after\ttenant_id\tcertificate_id\tstatus\tauto_renew\tname\tsans\n'
printf '%s' "$rows" | sed '/^$/d' | sort
