/*
 * tenants.c - operator endpoints: tenants and their API keys. A tenant key
 * is shown exactly once, in the response that creates it; only its SHA-256
 * is stored.
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
	if (rc == CP_OK)
		rc = db_audit_add(req->db, json_string_value(json_object_get(tenant, "id")),
				  req->actor, "tenant.create", "tenant",
				  json_string_value(json_object_get(tenant, "id")), NULL);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK) {
		db_rollback(req->db);
		json_decref(tenant);
		api_reply_rc(resp, rc, "tenant");
		return;
	}
	api_reply(resp, 201, tenant);
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
	if (rc == CP_OK)
		rc = db_audit_add(req->db, req->params[0], req->actor, "tenant.delete", "tenant",
				  req->params[0], NULL);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK) {
		db_rollback(req->db);
		api_reply_rc(resp, rc, "tenant");
		return;
	}
	resp->status = 204;
}

void api_apikeys_create(struct api_req *req, struct api_resp *resp)
{
	const char *name = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_STR("name", true, &name, 1, 200),
		CP_SPEC_DONE,
	};
	uint8_t raw[32];
	char *secret = NULL, *key = NULL, hash[65], prefix[13];
	json_t *row = NULL;
	cp_rc rc;

	if (!api_operator_or_reply(req, resp) || !api_id_or_reply(req, resp, 0) ||
	    !api_body_or_reply(req, resp, spec))
		return;
	rc = cp_random(raw, sizeof(raw));
	if (rc != CP_OK)
		goto out;
	secret = cp_b64url(raw, sizeof(raw));
	crypto_wipe(raw, sizeof(raw));
	key = secret ? cp_aprintf(API_KEY_PREFIX "%s", secret) : NULL;
	if (!key) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	cp_sha256_hex(key, strlen(key), hash);
	snprintf(prefix, sizeof(prefix), "%s", key);
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_apikey_create(req->db, req->params[0], name, hash, prefix, &row);
	if (rc == CP_OK)
		rc = db_audit_add(req->db, req->params[0], req->actor, "api_key.create", "api_key",
				  json_string_value(json_object_get(row, "id")), NULL);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK) {
		db_rollback(req->db);
		goto out;
	}
	json_object_set_new(row, "key", json_string(key));
	api_reply(resp, 201, row);
	resp->no_store = true;
	row = NULL;
out:
	if (rc != CP_OK)
		api_reply_rc(resp, rc, "tenant");
	json_decref(row);
	/* The key exists in clear only here and in the response (wiped when sent). */
	crypto_wipe_free(secret);
	crypto_wipe_free(key);
}

void api_apikeys_list(struct api_req *req, struct api_resp *resp)
{
	struct db_page pg;
	struct db_list list;
	json_t *tenant = NULL;
	cp_rc rc;

	if (!api_operator_or_reply(req, resp) || !api_id_or_reply(req, resp, 0) ||
	    !api_page_or_reply(req, resp, &pg))
		return;
	rc = db_tenant_get(req->db, req->params[0], &tenant);
	json_decref(tenant);
	if (rc == CP_OK)
		rc = db_apikey_list(req->db, req->params[0], pg, &list);
	api_reply_list_rc(resp, rc, &list, "tenant");
}

void api_apikeys_delete(struct api_req *req, struct api_resp *resp)
{
	cp_rc rc;

	if (!api_operator_or_reply(req, resp) || !api_id_or_reply(req, resp, 0) ||
	    !api_id_or_reply(req, resp, 1))
		return;
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_apikey_delete(req->db, req->params[0], req->params[1]);
	if (rc == CP_OK)
		rc = db_audit_add(req->db, req->params[0], req->actor, "api_key.delete", "api_key",
				  req->params[1], NULL);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK) {
		db_rollback(req->db);
		api_reply_rc(resp, rc, "API key");
		return;
	}
	resp->status = 204;
}
