/*
 * quotas.c - per-tenant quotas in the API: the one check every create
 * handler calls inside its write transaction (api_quota_or_reply), and the
 * operator's GET / PUT / PATCH /v1/tenants/{id}/quotas. A tenant key may
 * read its own tenant's quotas (to see how much room it has), never set
 * them, and never see another tenant's (404, as for any foreign object).
 *
 * Over quota is 409 (the tenant must delete something or ask the
 * operator), except in-flight orders: those finish by themselves, so it is
 * 429 with Retry-After. Either way the problem names the quota in errors[]
 * as "quota.<name>" and carries {name, limit, used} in "quota".
 */
#include "api/api.h"

#include <assert.h>
#include <string.h>

/* Seconds a client waits before asking again for an order slot. */
#define ORDERS_RETRY_AFTER 5
/* Largest quota the API accepts (the config keys have the same bound). */
#define QUOTA_MAX 1000000000

static void quota_defaults(const struct cp_config *cfg, int64_t out[DB_QUOTA_COUNT])
{
	out[DB_QUOTA_PROPERTIES] = cfg->quota_properties;
	out[DB_QUOTA_HOSTNAMES] = cfg->quota_hostnames;
	out[DB_QUOTA_CERTIFICATES] = cfg->quota_certificates;
	out[DB_QUOTA_ORDERS_IN_FLIGHT] = cfg->quota_orders_in_flight;
	out[DB_QUOTA_WEBHOOKS] = cfg->quota_webhooks;
	out[DB_QUOTA_EDGE_HOSTNAMES] = cfg->quota_edge_hostnames;
}

bool api_quota_or_reply(struct api_req *req, struct api_resp *resp, const struct db_quota_change *c)
{
	int64_t defaults[DB_QUOTA_COUNT];
	struct db_quota_refusal why;
	char field[64], detail[256];
	const char *name;
	json_t *errors, *quota;
	bool orders;
	cp_rc rc;

	assert(req->tenant_id);
	quota_defaults(req->ctx->cfg, defaults);
	rc = db_quota_check(req->db, req->tenant_id, defaults, c, &why);
	if (rc == CP_OK)
		return true;
	db_rollback(req->db);
	if (rc != CP_ERR_CONFLICT) {
		api_reply_rc(resp, rc, NULL);
		return false;
	}
	name = db_quota_name(why.quota);
	orders = why.quota == DB_QUOTA_ORDERS_IN_FLIGHT;
	snprintf(field, sizeof(field), "quota.%s", name);
	snprintf(detail, sizeof(detail),
		 "quota %s exceeded: the tenant has %lld of %lld and this needs %lld more%s", name,
		 (long long)why.used, (long long)why.limit, (long long)why.requested,
		 orders ? "; retry when an order finishes" : "; delete some or ask the operator");
	errors = json_array();
	cp_spec_error(errors, field, "is exhausted");
	api_problem(resp, orders ? 429 : 409, detail, errors);
	quota = json_pack("{s:s,s:I,s:I}", "name", name, "limit", (json_int_t)why.limit, "used",
			  (json_int_t)why.used);
	if (resp->json && quota)
		json_object_set_new(resp->json, "quota", quota);
	else
		json_decref(quota);
	if (orders)
		resp->retry_after = ORDERS_RETRY_AFTER;
	return false;
}

/* The tenant named by the path may be read by the operator or by its own
 * key; 404 otherwise (a foreign tenant is not shown to exist). */
static bool tenant_readable_or_reply(struct api_req *req, struct api_resp *resp)
{
	if (!api_id_or_reply(req, resp, 0))
		return false;
	if (req->is_operator || (req->tenant_id && strcmp(req->tenant_id, req->params[0]) == 0))
		return true;
	api_problem(resp, 404, "no such tenant", NULL);
	return false;
}

void api_tenants_quotas_get(struct api_req *req, struct api_resp *resp)
{
	int64_t defaults[DB_QUOTA_COUNT];
	json_t *tenant = NULL, *out = NULL;
	cp_rc rc;

	if (!tenant_readable_or_reply(req, resp))
		return;
	quota_defaults(req->ctx->cfg, defaults);
	rc = db_tenant_get(req->db, req->params[0], &tenant);
	json_decref(tenant);
	if (rc == CP_OK)
		rc = db_quota_get(req->db, req->params[0], defaults, &out);
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "tenant");
		return;
	}
	api_reply_entity(req, resp, out);
}

/*
 * PUT (replace: a quota absent or null goes back to the default) and PATCH
 * (merge: absent keeps, null goes back to the default). Every member must
 * name a quota and be an integer from 0 to QUOTA_MAX, or null.
 */
static void quotas_write(struct api_req *req, struct api_resp *resp, bool replace)
{
	int64_t values[DB_QUOTA_COUNT], defaults[DB_QUOTA_COUNT];
	bool present[DB_QUOTA_COUNT];
	json_t *errors, *v, *out = NULL;
	const char *key;
	cp_rc rc;

	if (!api_operator_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	if (!api_object_body_or_reply(req, resp))
		return;
	errors = json_array();
	for (int q = 0; q < DB_QUOTA_COUNT; q++) {
		values[q] = -1;
		present[q] = replace;
	}
	json_object_foreach(req->body, key, v)
	{
		int q = db_quota_find(key);
		if (q < 0) {
			cp_spec_error(errors, key, "is not a quota");
			continue;
		}
		if (!json_is_null(v) && (!json_is_integer(v) || json_integer_value(v) < 0 ||
					 json_integer_value(v) > QUOTA_MAX)) {
			cp_spec_error(errors, key,
				      "must be an integer from 0 to 1000000000, or null");
			continue;
		}
		present[q] = true;
		values[q] = json_is_null(v) ? -1 : json_integer_value(v);
	}
	if (json_array_size(errors)) {
		api_problem(resp, 422, "the body has invalid fields", errors);
		return;
	}
	json_decref(errors);
	quota_defaults(req->ctx->cfg, defaults);
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_quota_set(req->db, req->params[0], values, present);
	if (rc == CP_OK)
		rc = db_audit_add(req->db, req->params[0], req->actor, "tenant.quotas.update",
				  "tenant", req->params[0], req->body);
	if (rc == CP_OK)
		rc = db_quota_get(req->db, req->params[0], defaults, &out);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK) {
		db_rollback(req->db);
		json_decref(out);
		api_reply_rc(resp, rc, "tenant");
		return;
	}
	api_reply(resp, 200, out);
}

void api_tenants_quotas_put(struct api_req *req, struct api_resp *resp)
{
	quotas_write(req, resp, true);
}

void api_tenants_quotas_patch(struct api_req *req, struct api_resp *resp)
{
	quotas_write(req, resp, false);
}
