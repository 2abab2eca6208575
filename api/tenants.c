/*
 * tenants.c - operator endpoints: tenants and their API keys, and a
 * tenant's own keys (/v1/api-keys). A tenant key is shown exactly once, in
 * the response that creates it; only its SHA-256 is stored.
 */
#include "api/api.h"
#include "crypto/crypto.h"

#include <stdlib.h>
#include <string.h>

void api_tenants_create(struct api_req *req, struct api_resp *resp)
{
	const char *name = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_STR("name", true, &name, 1, 200),
		CP_SPEC_DONE,
	};
	json_t *tenant = NULL;
	cp_rc rc;

	if (!api_operator_or_reply(req, resp) || !api_body_or_reply(req, resp, spec))
		return;
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_tenant_create(req->db, name, &tenant);
	rc = db_audit_commit(req->db, rc, json_string_value(json_object_get(tenant, "id")),
			     req->actor, "tenant.create", "tenant",
			     json_string_value(json_object_get(tenant, "id")), NULL);
	if (rc != CP_OK) {
		json_decref(tenant);
		api_reply_rc(resp, rc, "tenant");
		return;
	}
	api_reply(resp, 201, tenant);
}

void api_tenants_patch(struct api_req *req, struct api_resp *resp)
{
	json_t *cas = NULL, *tenant = NULL, *detail = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_ARR("default_cas", true, &cas, 8),
		CP_SPEC_DONE,
	};
	cp_rc rc;

	if (!api_operator_or_reply(req, resp) || !api_id_or_reply(req, resp, 0) ||
	    !api_body_or_reply(req, resp, spec) ||
	    !api_ca_list_or_reply(req, resp, "default_cas", cas, true))
		return;
	detail = json_pack("{s:O}", "default_cas", cas);
	rc = detail ? db_begin(req->db) : CP_ERR_NOMEM;
	if (rc == CP_OK)
		rc = db_tenant_set_default_cas(req->db, req->params[0], cas);
	if (rc == CP_OK)
		rc = db_audit_add(req->db, req->params[0], req->actor, "tenant.update", "tenant",
				  req->params[0], detail);
	if (rc == CP_OK)
		rc = db_tenant_get(req->db, req->params[0], &tenant);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	json_decref(detail);
	if (rc != CP_OK) {
		db_rollback(req->db);
		json_decref(tenant);
		api_reply_rc(resp, rc, "tenant");
		return;
	}
	api_reply(resp, 200, tenant);
}

void api_tenants_list(struct api_req *req, struct api_resp *resp)
{
	struct db_page pg;
	struct db_list list;
	cp_rc rc;

	if (!api_operator_or_reply(req, resp) || !api_page_or_reply(req, resp, &pg))
		return;
	rc = db_tenant_list(req->db, pg, &list);
	api_reply_list_rc(resp, rc, &list, "tenant");
}

void api_tenants_get(struct api_req *req, struct api_resp *resp)
{
	json_t *tenant = NULL;
	cp_rc rc;

	if (!api_operator_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	rc = db_tenant_get(req->db, req->params[0], &tenant);
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "tenant");
		return;
	}
	api_reply_entity(req, resp, tenant);
}

void api_tenants_delete(struct api_req *req, struct api_resp *resp)
{
	cp_rc rc;

	if (!api_operator_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_tenant_delete(req->db, req->params[0]);
	rc = db_audit_commit(req->db, rc, req->params[0], req->actor, "tenant.delete", "tenant",
			     req->params[0], NULL);
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "tenant");
		return;
	}
	resp->status = 204;
}

/* Longest lifetime a key may be given (expires_at); a bound, not a policy. */
#define KEY_LIFETIME_MAX (10LL * 366 * 86400)

/* Create a key of tenant_id from the body {name, scope?, expires_at?}:
 * 201 with the key shown once, 404 if the tenant does not exist, 422 on
 * a bad field. */
static void key_create(struct api_req *req, struct api_resp *resp, const char *tenant_id)
{
	static const char *const scopes[] = { "admin", "read", NULL };
	const char *name = NULL, *scope = "admin", *expires = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_STR("name", true, &name, 1, 200),
		CP_SPEC_CHOICE("scope", false, &scope, scopes),
		CP_SPEC_STR("expires_at", false, &expires, 1, 64),
		CP_SPEC_DONE,
	};
	struct db_apikey_grant grant = { 0 };
	char *key = NULL, hash[65], prefix[13];
	json_t *row = NULL, *detail = NULL;
	int64_t now = cp_now();
	cp_rc rc;

	if (!api_body_or_reply(req, resp, spec))
		return;
	if (expires && (cp_time_parse(expires, &grant.expires_at) != CP_OK ||
			grant.expires_at <= now || grant.expires_at - now > KEY_LIFETIME_MAX)) {
		api_problem_field(resp, "expires_at",
				  "must be an RFC 3339 time in the future, at most 10 years away");
		return;
	}
	grant.read_only = strcmp(scope, "read") == 0;
	rc = api_key_mint(&key, hash, prefix);
	if (rc != CP_OK)
		goto out;
	detail = json_pack("{s:s,s:b}", "scope", scope, "expires", expires != NULL);
	if (!detail) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_apikey_create(req->db, tenant_id, name, hash, prefix, &grant, &row);
	rc = db_audit_commit(req->db, rc, tenant_id, req->actor, "api_key.create", "api_key",
			     json_string_value(json_object_get(row, "id")), detail);
	if (rc != CP_OK)
		goto out;
	api_reply_key_created(resp, row, key);
	row = NULL;
out:
	if (rc != CP_OK)
		api_reply_rc(resp, rc, "tenant");
	json_decref(row);
	json_decref(detail);
	/* The key exists in clear only here and in the response (wiped when sent). */
	crypto_wipe_free(key);
}

/* List tenant_id's keys (never their hashes); 404 if no such tenant. */
static void key_list(struct api_req *req, struct api_resp *resp, const char *tenant_id)
{
	struct db_page pg;
	struct db_list list;
	json_t *tenant = NULL;
	cp_rc rc;

	if (!api_page_or_reply(req, resp, &pg))
		return;
	rc = db_tenant_get(req->db, tenant_id, &tenant);
	json_decref(tenant);
	if (rc == CP_OK)
		rc = db_apikey_list(req->db, tenant_id, pg, &list);
	api_reply_list_rc(resp, rc, &list, "tenant");
}

/* Delete key key_id of tenant_id: 204, or 404 when tenant_id has no such
 * key (another tenant's key included). The key in use may be deleted; the
 * auth cache is revoked on commit (db_apikey_delete), so the next request
 * with it is a 401. */
static void key_delete(struct api_req *req, struct api_resp *resp, const char *tenant_id,
		       const char *key_id)
{
	cp_rc rc = db_begin(req->db);

	if (rc == CP_OK)
		rc = db_apikey_delete(req->db, tenant_id, key_id);
	rc = db_audit_commit(req->db, rc, tenant_id, req->actor, "api_key.delete", "api_key",
			     key_id, NULL);
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "API key");
		return;
	}
	resp->status = 204;
}

void api_apikeys_create(struct api_req *req, struct api_resp *resp)
{
	if (api_operator_or_reply(req, resp) && api_id_or_reply(req, resp, 0))
		key_create(req, resp, req->params[0]);
}

void api_apikeys_list(struct api_req *req, struct api_resp *resp)
{
	if (api_operator_or_reply(req, resp) && api_id_or_reply(req, resp, 0))
		key_list(req, resp, req->params[0]);
}

void api_apikeys_delete(struct api_req *req, struct api_resp *resp)
{
	if (api_operator_or_reply(req, resp) && api_id_or_reply(req, resp, 0) &&
	    api_id_or_reply(req, resp, 1))
		key_delete(req, resp, req->params[0], req->params[1]);
}

/* The tenant's own keys (/v1/api-keys): a tenant key, or the operator with
 * X-Tenant-ID. A read key never gets here for POST/DELETE (server/http.c). */
void api_keys_create(struct api_req *req, struct api_resp *resp)
{
	if (api_tenant_or_reply(req, resp))
		key_create(req, resp, req->tenant_id);
}

void api_keys_list(struct api_req *req, struct api_resp *resp)
{
	if (api_tenant_or_reply(req, resp))
		key_list(req, resp, req->tenant_id);
}

void api_keys_delete(struct api_req *req, struct api_resp *resp)
{
	if (api_tenant_or_reply(req, resp) && api_id_or_reply(req, resp, 0))
		key_delete(req, resp, req->tenant_id, req->params[0]);
}
