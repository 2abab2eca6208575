#!/usr/bin/env bash
# create-tenant.sh NAME - create a tenant and a first API key for it, and
# print both. The key is shown only here: hand it to the tenant now.
# Needs the operator token in CERTPLANE_TOKEN; CERTPLANE_URL is the API.
USAGE='usage: create-tenant.sh [--] NAME
Create a tenant named NAME and a first API key for it; print the tenant id,
its name, the key id and the key (shown only here: hand it to the tenant now).
A NAME that starts with "-" goes after "--".
Environment: CERTPLANE_TOKEN (the operator token), CERTPLANE_URL.
Exit: 0 created, 2 usage, 3 API unreachable, 4 API error.'
. "$(dirname "$0")/lib.sh"
cli_parse "$@"
set -- "${ARGS[@]}"

{ [ $# -eq 1 ] && [ -n "$1" ]; } || die "one NAME is needed"
api POST /v1/tenants "$(jq -n --arg name "$1" '{name: $name}')"
tenant=$API_BODY
tid=$(jq -r .id <<<"$tenant")
api_try POST "/v1/tenants/$tid/api-keys" "$(jq -n --arg name "$1 (first key)" '{name: $name}')" || {
	printf '%s: tenant %s was created, but its API key was not:\n' "$(basename "$0")" "$tid" >&2
	api_fail
}
key=$API_BODY
printf 'tenant_id  %s\n' "$tid"
printf 'name       %s\n' "$(jq -r .name <<<"$tenant")"
printf 'key_id     %s\n' "$(jq -r .id <<<"$key")"
printf 'api_key    %s\n' "$(jq -r .key <<<"$key")"
echo "(the API key is shown once; it is stored only as a hash)" >&2
