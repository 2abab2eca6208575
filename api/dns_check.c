/*
 * dns_check.c - GET /v1/properties/{id}/dns-check: for every hostname of a
 * property, the CNAME chain found through the configured resolver, whether
 * it reaches the property's edge hostname, whether it is a wildcard, and
 * whether HTTP-01 renewal can work (ready). The same check the order
 * engine makes before an HTTP-01 order (acme_check_hostname), so the portal
 * shows exactly what renewal will find. Each result is also a verification
 * of the tenant's claim (claims_verify: CNAME to one of its edges, or
 * its TXT token), recorded, and shown as "verification" per hostname. The
 * budget is a hard deadline on the resolver.
 */
#include "acme/acme.h"
#include "api/api.h"
#include "claims/claims.h"

#include <stdlib.h>
#include <string.h>

/* Lookups stop after this long; the rest is reported as not checked. */
#define DNS_CHECK_BUDGET_MS 20000

/* Give each result its claim's verification (as the property shows it). */
static void attach_verification(struct api_req *req, json_t *results)
{
	json_t *prop = NULL, *r, *v;
	size_t i, j;

	if (db_property_get(req->db, req->tenant_id, req->params[0], &prop) != CP_OK)
		return;
	json_array_foreach(results, i, r)
	{
		json_array_foreach(json_object_get(prop, "hostname_verification"), j, v)
		{
			if (json_equal(json_object_get(v, "hostname"),
				       json_object_get(r, "hostname"))) {
				json_object_set(r, "verification", v);
				break;
			}
		}
	}
	json_decref(prop);
}

void api_properties_dns_check(struct api_req *req, struct api_resp *resp)
{
	struct acme_resolver *res = NULL;
	json_t *targets = NULL, *results = NULL, *h;
	const char *edge;
	int64_t deadline = cp_mono_ms() + DNS_CHECK_BUDGET_MS;
	bool all_ready = true;
	size_t i;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	rc = db_property_dns_targets(req->db, req->tenant_id, req->params[0], &targets);
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "property");
		return;
	}
	if (acme_resolver_new(req->ctx->cfg->dns_resolver, &res) != CP_OK) {
		json_decref(targets);
		api_problem(resp, 500, "the dns_resolver setting is unusable", NULL);
		return;
	}
	acme_resolver_set_deadline(res, deadline);
	edge = json_string_value(json_object_get(targets, "edge_hostname"));
	results = json_array();
	json_array_foreach(json_object_get(targets, "hostnames"), i, h)
	{
		const char *name = json_string_value(h);
		json_t *check = NULL;
		if (cp_mono_ms() > deadline) {
			check = json_pack("{s:s,s:[],s:b,s:b,s:b,s:s}", "hostname", name,
					  "cname_chain", "points_to_edge", 0, "wildcard",
					  cp_hostname_is_wildcard(name), "ready", 0, "detail",
					  "not checked: the DNS check ran out of time");
		} else {
			rc = acme_check_hostname(res, name, edge, &check);
			if (rc == CP_OK || rc == CP_ERR_UPSTREAM) {
				const char *status, *method;
				/* Best effort: the check's answer stands even if recording fails.
				 */
				if (claims_verify(req->ctx->cfg, req->db, res, req->tenant_id, name,
						  check, rc, &status, &method) != CP_OK)
					cp_logf(CP_LOG_WARN, "dns_check.verify",
						"cannot record the verification of %s", name);
			}
			if (rc != CP_OK && rc != CP_ERR_UPSTREAM) {
				json_decref(check);
				check = json_pack("{s:s,s:[],s:b,s:b,s:b,s:s}", "hostname", name,
						  "cname_chain", "points_to_edge", 0, "wildcard",
						  cp_hostname_is_wildcard(name), "ready", 0,
						  "detail", "the hostname cannot be looked up");
			}
		}
		if (!check)
			continue;
		all_ready = all_ready && json_is_true(json_object_get(check, "ready"));
		json_array_append_new(results, check);
	}
	acme_resolver_free(res);
	attach_verification(req, results);
	api_reply(resp, 200,
		  json_pack("{s:s,s:s,s:b,s:o}", "property_id", req->params[0], "edge_hostname",
			    edge ? edge : "", "ready", all_ready, "hostnames", results));
	json_decref(targets);
}
