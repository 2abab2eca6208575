/*
 * routes.c - the one static route table of the API. Each entry names a
 * method, a path pattern ({name} matches one path segment), the handler,
 * whether a key is needed, whether only the operator may call it and
 * whether it may wait on the network (run off the listener threads). openapi.yaml must describe
 * exactly these routes; tests/e2e/test_openapi.py checks that they agree.
 */
#include "server/server_internal.h"

#include <string.h>

/* The flags (operator_only, offload) are named where set and false
 * elsewhere; positional rows leave them out on purpose. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
static const struct server_route routes[] = {
	{ "GET", "/healthz", api_healthz, SERVER_AUTH_NONE },
	{ "GET", "/readyz", api_readyz, SERVER_AUTH_NONE },
	{ "GET", "/openapi.yaml", api_openapi, SERVER_AUTH_NONE },
	{ "GET", "/metrics", api_metrics, SERVER_AUTH_METRICS },

	{ "POST", "/v1/tenants", api_tenants_create, SERVER_AUTH_KEY, .operator_only = true },
	{ "GET", "/v1/tenants", api_tenants_list, SERVER_AUTH_KEY, .operator_only = true },
	{ "GET", "/v1/tenants/{id}", api_tenants_get, SERVER_AUTH_KEY, .operator_only = true },
	{ "PATCH", "/v1/tenants/{id}", api_tenants_patch, SERVER_AUTH_KEY, .operator_only = true },
	{ "DELETE", "/v1/tenants/{id}", api_tenants_delete, SERVER_AUTH_KEY,
	  .operator_only = true },
	{ "POST", "/v1/tenants/{id}/api-keys", api_apikeys_create, SERVER_AUTH_KEY,
	  .operator_only = true },
	{ "GET", "/v1/tenants/{id}/api-keys", api_apikeys_list, SERVER_AUTH_KEY,
	  .operator_only = true },
	{ "DELETE", "/v1/tenants/{id}/api-keys/{key_id}", api_apikeys_delete, SERVER_AUTH_KEY,
	  .operator_only = true },
	{ "POST", "/v1/api-keys", api_keys_create, SERVER_AUTH_KEY },
	{ "GET", "/v1/api-keys", api_keys_list, SERVER_AUTH_KEY },
	{ "DELETE", "/v1/api-keys/{id}", api_keys_delete, SERVER_AUTH_KEY },
	{ "GET", "/v1/tenants/{id}/quotas", api_tenants_quotas_get, SERVER_AUTH_KEY },
	{ "PUT", "/v1/tenants/{id}/quotas", api_tenants_quotas_put, SERVER_AUTH_KEY,
	  .operator_only = true },
	{ "PATCH", "/v1/tenants/{id}/quotas", api_tenants_quotas_patch, SERVER_AUTH_KEY,
	  .operator_only = true },

	{ "GET", "/v1/audit-log", api_audit_list, SERVER_AUTH_KEY },
	{ "GET", "/v1/events", api_events_list, SERVER_AUTH_KEY },
	{ "GET", "/v1/summary", api_summary_get, SERVER_AUTH_KEY },
	{ "GET", "/v1/events/stream", api_events_stream, SERVER_AUTH_KEY },
	{ "POST", "/v1/edge-hostnames", api_edge_hostnames_create, SERVER_AUTH_KEY },
	{ "GET", "/v1/edge-hostnames", api_edge_hostnames_list, SERVER_AUTH_KEY },
	{ "GET", "/v1/edge-hostnames/{id}", api_edge_hostnames_get, SERVER_AUTH_KEY },
	{ "DELETE", "/v1/edge-hostnames/{id}", api_edge_hostnames_delete, SERVER_AUTH_KEY },

	{ "POST", "/v1/properties", api_properties_create, SERVER_AUTH_KEY },
	{ "GET", "/v1/properties", api_properties_list, SERVER_AUTH_KEY },
	{ "GET", "/v1/properties/{id}", api_properties_get, SERVER_AUTH_KEY },
	{ "PATCH", "/v1/properties/{id}", api_properties_update, SERVER_AUTH_KEY },
	{ "DELETE", "/v1/properties/{id}", api_properties_delete, SERVER_AUTH_KEY },
	{ "POST", "/v1/properties/{id}/deployments", api_deployments_create, SERVER_AUTH_KEY },
	{ "GET", "/v1/properties/{id}/deployments", api_deployments_list, SERVER_AUTH_KEY },
	{ "GET", "/v1/properties/{id}/deployments/{deployment_id}", api_deployments_get,
	  SERVER_AUTH_KEY },

	{ "POST", "/v1/certificates", api_certificates_create, SERVER_AUTH_KEY },
	{ "GET", "/v1/certificates", api_certificates_list, SERVER_AUTH_KEY },
	{ "GET", "/v1/certificates/{id}", api_certificates_get, SERVER_AUTH_KEY },
	{ "PATCH", "/v1/certificates/{id}", api_certificates_update, SERVER_AUTH_KEY },
	{ "DELETE", "/v1/certificates/{id}", api_certificates_delete, SERVER_AUTH_KEY },
	{ "GET", "/v1/certificates/{id}/pem", api_certificates_pem, SERVER_AUTH_KEY },
	{ "GET", "/v1/certificates/{id}/private-key", api_certificates_private_key,
	  SERVER_AUTH_KEY },
	{ "GET", "/v1/certificates/{id}/versions", api_certificates_versions, SERVER_AUTH_KEY },
	{ "GET", "/v1/certificates/{id}/renewal-preview", api_certificates_renewal_preview,
	  SERVER_AUTH_KEY, .offload = true },

	{ "POST", "/v1/webhooks", api_webhooks_create, SERVER_AUTH_KEY, .offload = true },
	{ "GET", "/v1/webhooks", api_webhooks_list, SERVER_AUTH_KEY },
	{ "GET", "/v1/webhooks/{id}", api_webhooks_get, SERVER_AUTH_KEY },
	{ "PATCH", "/v1/webhooks/{id}", api_webhooks_update, SERVER_AUTH_KEY, .offload = true },
	{ "DELETE", "/v1/webhooks/{id}", api_webhooks_delete, SERVER_AUTH_KEY },
	{ "POST", "/v1/webhooks/{id}/test", api_webhooks_test, SERVER_AUTH_KEY, .offload = true },
	{ "GET", "/v1/webhooks/{id}/deliveries", api_webhooks_deliveries, SERVER_AUTH_KEY },
	{ "POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver", api_webhooks_redeliver,
	  SERVER_AUTH_KEY },
	{ "POST", "/v1/webhooks/{id}/rotate-secret", api_webhooks_rotate_secret, SERVER_AUTH_KEY },

	/* notification channels beyond webhooks (issue 14): email, Slack */
	{ "POST", "/v1/notification-channels", api_channels_create, SERVER_AUTH_KEY,
	  .offload = true },
	{ "GET", "/v1/notification-channels", api_channels_list, SERVER_AUTH_KEY },
	{ "GET", "/v1/notification-channels/{id}", api_channels_get, SERVER_AUTH_KEY },
	{ "PATCH", "/v1/notification-channels/{id}", api_channels_update, SERVER_AUTH_KEY },
	{ "DELETE", "/v1/notification-channels/{id}", api_channels_delete, SERVER_AUTH_KEY },
	{ "POST", "/v1/notification-channels/{id}/verify", api_channels_verify, SERVER_AUTH_KEY },
	{ "GET", "/v1/notification-channels/{id}/deliveries", api_channels_deliveries,
	  SERVER_AUTH_KEY },

	{ "GET", "/v1/orders", api_orders_list, SERVER_AUTH_KEY },
	{ "GET", "/v1/orders/{id}", api_orders_get, SERVER_AUTH_KEY },
	{ "POST", "/v1/orders/{id}/verify", api_orders_verify, SERVER_AUTH_KEY, .offload = true },
	{ "POST", "/v1/orders/{id}/cancel", api_orders_cancel, SERVER_AUTH_KEY },
	{ "POST", "/v1/certificates/{id}/renew", api_certificates_renew, SERVER_AUTH_KEY },
	{ "POST", "/v1/certificates/{id}/revoke", api_certificates_revoke, SERVER_AUTH_KEY },
	{ "DELETE", "/v1/tenants/{id}/hostnames/{hostname}", api_tenants_hostname_withdraw,
	  SERVER_AUTH_KEY, .operator_only = true },
	{ "GET", "/v1/properties/{id}/dns-check", api_properties_dns_check, SERVER_AUTH_KEY,
	  .offload = true },
	/* DCV delegation (issue 14) */
	{ "GET", "/v1/properties/{id}/dcv-delegation", api_properties_dcv_delegation,
	  SERVER_AUTH_KEY },
	{ "POST", "/v1/edge-keys", api_edge_keys_create, SERVER_AUTH_KEY, .operator_only = true },
	{ "GET", "/v1/edge-keys", api_edge_keys_list, SERVER_AUTH_KEY, .operator_only = true },
	{ "DELETE", "/v1/edge-keys/{id}", api_edge_keys_delete, SERVER_AUTH_KEY,
	  .operator_only = true },
	{ "GET", "/v1/edge/deployments", api_edge_deployments, SERVER_AUTH_KEY, .edge_only = true,
	  .offload = true },
	/* ROUTES: new entries go above this line, grouped by resource. */
};
#pragma GCC diagnostic pop

const struct server_route *server_routes(size_t *count)
{
	*count = CP_ARRAY_LEN(routes);
	return routes;
}

/* Match path against pattern; on success copy parameters into buf. */
static bool pattern_match(const char *pattern, const char *path, const char *params[3], char *buf,
			  size_t buflen)
{
	const char *p = pattern, *s = path;
	size_t used = 0;
	int n = 0;

	while (*p && *s) {
		if (*p == '{') {
			const char *end = strchr(s, '/');
			size_t len = end ? (size_t)(end - s) : strlen(s);
			if (len == 0 || n == 3 || used + len + 1 > buflen)
				return false;
			memcpy(buf + used, s, len);
			buf[used + len] = '\0';
			params[n++] = buf + used;
			used += len + 1;
			s += len;
			p = strchr(p, '}');
			if (!p)
				return false;
			p++;
			continue;
		}
		if (*p != *s)
			return false;
		p++;
		s++;
	}
	return *p == '\0' && *s == '\0';
}

const struct server_route *server_route_match(const char *method, const char *path,
					      const char *params[3], char *params_buf,
					      size_t params_buf_len, bool *path_known, char *allow,
					      size_t allow_len)
{
	size_t off = 0;

	*path_known = false;
	allow[0] = '\0';
	for (size_t i = 0; i < CP_ARRAY_LEN(routes); i++) {
		const char *tmp[3] = { NULL, NULL, NULL };
		if (!pattern_match(routes[i].pattern, path, tmp, params_buf, params_buf_len))
			continue;
		if (strcmp(routes[i].method, method) == 0) {
			memcpy(params, tmp, sizeof(tmp));
			return &routes[i];
		}
		*path_known = true;
		if (off < allow_len)
			off += (size_t)snprintf(allow + off, allow_len - off, "%s%s",
						off ? ", " : "", routes[i].method);
	}
	/* Every known path answers preflight and HEAD-less OPTIONS too. */
	if (*path_known && off < allow_len)
		snprintf(allow + off, allow_len - off, ", OPTIONS");
	return NULL;
}
