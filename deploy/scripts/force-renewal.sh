#!/usr/bin/env bash
# force-renewal.sh TENANT_ID CERT_ID - renew a certificate now (POST
# /v1/certificates/{id}/renew) as the operator acting in that tenant, and
# print the order it started. Follow it with follow-order.sh.
USAGE='usage: force-renewal.sh TENANT_ID CERT_ID
Renew a certificate now (POST /v1/certificates/{id}/renew) as the operator
acting in that tenant, and print the order it started (order_id, status,
kind). Follow it with: follow-order.sh --tenant TENANT_ID ORDER_ID
Environment: CERTPLANE_TOKEN (the operator token), CERTPLANE_URL.
Exit: 0 started, 2 usage, 3 API unreachable, 4 API error.'
. "$(dirname "$0")/lib.sh"
cli_parse "$@"
set -- "${ARGS[@]}"

[ $# -eq 2 ] || die "TENANT_ID and CERT_ID are needed"
uuid_ok "$1" || die "TENANT_ID must be a UUID"
uuid_ok "$2" || die "CERT_ID must be a UUID"
api POST "/v1/certificates/$2/renew" "" "$1"
jq -r '"order_id   \(.id // .order.id // "-")",
       "status     \(.status // .order.status // "-")",
       "kind       \(.kind // .order.kind // "-")"' <<<"$API_BODY"
