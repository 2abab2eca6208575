#!/usr/bin/env bash
# force-renewal.sh TENANT_ID CERT_ID - renew a certificate now (POST
# /v1/certificates/{id}/renew) as the operator acting in that tenant, and
# print the order it started. Follow it with GET /v1/orders/{id}.
. "$(dirname "$0")/lib.sh"

[ $# -eq 2 ] || die "usage: force-renewal.sh TENANT_ID CERT_ID"
uuid_ok "$1" || die "TENANT_ID must be a UUID"
uuid_ok "$2" || die "CERT_ID must be a UUID"
order=$(api POST "/v1/certificates/$2/renew" "" "$1") || exit 1
jq -r '"order_id   \(.id // .order.id // "-")",
       "status     \(.status // .order.status // "-")",
       "kind       \(.kind // .order.kind // "-")"' <<<"$order"
