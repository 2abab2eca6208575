#!/usr/bin/env bash
# create-tenant.sh NAME - create a tenant and a first API key for it, and
# print both. The key is shown only here: hand it to the tenant now.
# Needs the operator token in CERTPLANE_TOKEN; CERTPLANE_URL is the API.
. "$(dirname "$0")/lib.sh"

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: create-tenant.sh NAME"
tenant=$(api POST /v1/tenants "$(jq -n --arg name "$1" '{name: $name}')") || exit 1
tid=$(jq -r .id <<<"$tenant")
key=$(api POST "/v1/tenants/$tid/api-keys" "$(jq -n --arg name "$1 (first key)" '{name: $name}')") ||
	die "tenant $tid was created, but its API key was not"
printf 'tenant_id  %s\n' "$tid"
printf 'name       %s\n' "$(jq -r .name <<<"$tenant")"
printf 'key_id     %s\n' "$(jq -r .id <<<"$key")"
printf 'api_key    %s\n' "$(jq -r .key <<<"$key")"
echo "(the API key is shown once; it is stored only as a hash)" >&2
