/*
 * dcv_delegation.c - GET /v1/properties/{id}/dcv-delegation: the DCV
 * delegation record of each hostname of a property (dcv/dcv.h), the CNAME
 * the tenant sets once so that certplane answers every DNS-01 challenge of
 * the name itself, and whether the last check found it in place. No DNS
 * lookup here: the checks run where hostname claims are verified (the
 * hostname_verify job, dns-check, the order engine) and are read back.
 * 404 when the server has no dcv_zone configured.
 */
#include "api/api.h"
#include "dcv/dcv.h"

#include <stdlib.h>
#include <string.h>

/* One hostname's entry (new reference; NULL out of memory). */
static json_t *entry(struct api_req *req, const char *hostname, cp_rc *rc)
{
	struct dcv_record r = { 0 };
	const char *base = cp_hostname_is_wildcard(hostname) ? hostname + 2 : hostname;
	json_t *state = NULL, *e = NULL;

	*rc = dcv_record_of(req->ctx->cfg, req->tenant_id, hostname, &r);
	if (*rc != CP_OK)
		return NULL;
	*rc = db_dcv_delegation_get(req->db, req->tenant_id, base, &state);
	if (*rc == CP_ERR_NOT_FOUND)
		*rc = CP_OK;
	if (*rc == CP_OK) {
		e = json_pack("{s:s,s:s,s:s,s:s,s:b,s:O?}", "hostname", hostname, "record_name",
			      r.record_name, "type", "CNAME", "target", r.target, "in_place",
			      json_is_true(json_object_get(state, "in_place")), "checked_at",
			      json_object_get(state, "checked_at"));
		if (e && !json_object_get(e, "checked_at"))
			json_object_set_new(e, "checked_at", json_null());
		if (!e)
			*rc = CP_ERR_NOMEM;
	}
	json_decref(state);
	dcv_record_clear(&r);
	return e;
}

void api_properties_dcv_delegation(struct api_req *req, struct api_resp *resp)
{
	json_t *prop = NULL, *list = NULL, *h, *body = NULL;
	size_t i;
	cp_rc rc = CP_OK;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	if (!dcv_enabled(req->ctx->cfg)) {
		api_problem(resp, 404, "DCV delegation is not enabled on this server (no dcv_zone)",
			    NULL);
		return;
	}
	rc = db_property_get(req->db, req->tenant_id, req->params[0], &prop);
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "property");
		return;
	}
	list = json_array();
	if (!list)
		rc = CP_ERR_NOMEM;
	json_array_foreach(json_object_get(prop, "hostnames"), i, h)
	{
		json_t *e;
		if (rc != CP_OK || !json_string_value(h))
			continue;
		e = entry(req, json_string_value(h), &rc);
		if (e)
			json_array_append_new(list, e);
	}
	if (rc == CP_OK)
		body = json_pack("{s:s,s:s,s:O}", "property_id", req->params[0], "zone",
				 req->ctx->cfg->dcv_zone, "hostnames", list);
	if (!body) {
		api_reply_rc(resp, rc != CP_OK ? rc : CP_ERR_NOMEM, "property");
		goto out;
	}
	api_reply(resp, 200, body);
out:
	json_decref(prop);
	json_decref(list);
}
