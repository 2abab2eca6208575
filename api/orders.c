/*
 * orders.c - /v1/orders: the ACME orders of a tenant. Orders are created by
 * POST /v1/certificates (source "acme"), POST /v1/certificates/{id}/renew
 * and the auto-renew scheduler; here they are read, nudged (verify: "my
 * TXT records are published, check now") and canceled. The engine that
 * advances them is the "acme_order" job (server/order_run.c).
 */
#include "acme/acme.h"
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

static const char *const order_statuses[] = { "pending", "validating", "issuing", "valid",
					      "failed",	 "canceled",   NULL };

static bool in_flight(const json_t *order)
{
	return db_order_status_in_flight(json_string_value(json_object_get(order, "status")));
}

static bool dns_in_flight(const json_t *order)
{
	const char *challenge = json_string_value(json_object_get(order, "challenge"));

	return challenge && strcmp(challenge, "dns-01") == 0 && in_flight(order);
}

/* Begin the transaction of a change to order params[0] and load it into
 * *order (owned by the caller on true). false: the reply is made (404, the
 * error, or 409 with conflict when allowed() refuses the order) and the
 * transaction is rolled back. */
static bool order_change_begin(struct api_req *req, struct api_resp *resp,
			       bool (*allowed)(const json_t *order), const char *conflict,
			       json_t **order)
{
	cp_rc rc;

	*order = NULL;
	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return false;
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_order_get(req->db, req->tenant_id, req->params[0], order);
	if (rc == CP_OK && allowed(*order))
		return true;
	db_rollback(req->db);
	json_decref(*order);
	*order = NULL;
	if (rc == CP_OK)
		api_problem(resp, 409, conflict, NULL);
	else
		api_reply_rc(resp, rc, "order");
	return false;
}

void api_orders_list(struct api_req *req, struct api_resp *resp)
{
	const char *cert = api_query(req, "certificate_id"), *status = api_query(req, "status");
	struct db_page pg;
	struct db_list list;
	bool ok = false;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_page_or_reply(req, resp, &pg))
		return;
	if (cert && !cp_uuid_valid(cert)) {
		api_problem_field(resp, "certificate_id", "must be a certificate id (UUID)");
		return;
	}
	for (int i = 0; status && order_statuses[i]; i++)
		ok = ok || strcmp(status, order_statuses[i]) == 0;
	if (status && !ok) {
		api_problem_field(resp, "status",
				  "must be one of pending, validating, issuing, valid, "
				  "failed, canceled");
		return;
	}
	rc = db_order_list(req->db, req->tenant_id, cert, status, pg, &list);
	api_reply_list_rc(resp, rc, &list, "order");
}

void api_orders_get(struct api_req *req, struct api_resp *resp)
{
	api_get_resource(req, resp, db_order_get, "order");
}

/* TXT lookups of verify stop after this long; later records are reported
 * as not looked up. */
#define VERIFY_DNS_BUDGET_MS 5000

/*
 * What the configured resolver sees for each pending dns-01 authorization
 * of order: a new array of {name, type "TXT", value, visible, seen, detail}
 * (visible: value is among the TXT values seen at name; detail says why a
 * record could not be looked up, else null). NULL on OOM. Called outside
 * any transaction: it waits on the network.
 */
static json_t *txt_visibility(struct api_req *req, const json_t *order)
{
	struct acme_resolver *res = NULL;
	int64_t deadline = cp_mono_ms() + VERIFY_DNS_BUDGET_MS;
	json_t *records = json_array(), *a;
	size_t i;

	if (!records)
		return NULL;
	if (acme_resolver_new(req->ctx->cfg->dns_resolver, &res) != CP_OK)
		res = NULL;
	else
		acme_resolver_set_deadline(res, deadline);
	json_array_foreach(json_object_get(order, "authorizations"), i, a)
	{
		const json_t *ch = json_object_get(a, "challenge");
		const char *name = cp_json_str(ch, "txt_record_name");
		const char *value = cp_json_str(ch, "txt_record_value");
		const char *detail = NULL;
		json_t *seen = NULL;
		bool visible = false;

		if (!name || !value || !cp_json_str(a, "status") ||
		    strcmp(cp_json_str(a, "status"), "pending") != 0)
			continue;
		if (!res)
			detail = "the dns_resolver setting is unusable";
		else if (cp_mono_ms() > deadline)
			detail = "not looked up: the check ran out of time";
		else if (acme_dns_txt(res, name, &seen) != CP_OK)
			detail = "the TXT lookup failed (timeout, SERVFAIL or refused)";
		if (!seen)
			seen = json_array();
		for (size_t j = 0; seen && j < json_array_size(seen); j++)
			visible = visible ||
				  strcmp(json_string_value(json_array_get(seen, j)), value) == 0;
		json_array_append_new(records,
				      json_pack("{s:s,s:s,s:s,s:b,s:o*,s:s?}", "name", name, "type",
						"TXT", "value", value, "visible", visible, "seen",
						seen, "detail", detail));
	}
	acme_resolver_free(res);
	return records;
}

/* verify: a DNS-01 order in flight is checked at once instead of at its
 * next poll (the CA is asked by the engine, as before); the answer also
 * says, per pending TXT record, whether the configured resolver sees it
 * now, so the portal can show "not visible yet" before the CA says no. */
void api_orders_verify(struct api_req *req, struct api_resp *resp)
{
	json_t *order = NULL, *patch = NULL, *records = NULL;
	char key[64];
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	/* Look first, outside the write transaction (it waits on DNS); a
	 * missing or finished order is answered by order_change_begin. */
	if (db_order_get(req->db, req->tenant_id, req->params[0], &order) == CP_OK &&
	    dns_in_flight(order))
		records = txt_visibility(req, order);
	json_decref(order);
	order = NULL;
	if (!order_change_begin(req, resp, dns_in_flight,
				"only a dns-01 order in flight can be verified (see its status "
				"and challenge)",
				&order))
		goto out;
	patch = json_pack("{s:I}", "verify_at", (json_int_t)cp_now());
	snprintf(key, sizeof(key), "acme_order:%s", req->params[0]);
	rc = patch ? db_order_save(req->db, req->params[0], patch) : CP_ERR_NOMEM;
	if (rc == CP_OK)
		rc = db_job_wake(req->db, key);
	if (rc == CP_OK)
		rc = api_audit(req, "order.verify", "order", req->params[0], NULL);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK)
		goto fail;
	cp_kick();
	json_object_set_new(order, "records", records ? records : json_array());
	records = NULL;
	api_reply(resp, 202, order);
	order = NULL;
	goto out;
fail:
	db_rollback(req->db);
	api_reply_rc(resp, rc, "order");
out:
	json_decref(order);
	json_decref(patch);
	json_decref(records);
}

void api_orders_cancel(struct api_req *req, struct api_resp *resp)
{
	json_t *order = NULL, *patch = NULL, *cert = NULL;
	const char *cert_id;
	cp_rc rc;

	if (!order_change_begin(req, resp, in_flight, "the order is already finished", &order))
		return;
	cert_id = json_string_value(json_object_get(order, "certificate_id"));
	patch = json_pack("{s:s,s:I,s:n}", "status", "canceled", "completed_at",
			  (json_int_t)cp_now(), "next_attempt_at");
	rc = patch ? db_order_save(req->db, req->params[0], patch) : CP_ERR_NOMEM;
	/* The certificate goes back to what it was before the order: active
	 * with its current version, or failed when it never had one. */
	if (rc == CP_OK)
		rc = db_certificate_get(req->db, req->tenant_id, cert_id, &cert);
	if (rc == CP_OK)
		rc = db_certificate_set_status(
			req->db, req->tenant_id, cert_id,
			json_integer_value(json_object_get(cert, "version")) > 0 ? "active"
										 : "failed");
	if (rc == CP_ERR_NOT_FOUND)
		rc = CP_OK;
	if (rc == CP_OK)
		rc = api_audit(req, "order.cancel", "order", req->params[0], NULL);
	json_decref(order);
	order = NULL;
	if (rc == CP_OK)
		rc = db_order_get(req->db, req->tenant_id, req->params[0], &order);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK)
		goto fail;
	api_reply(resp, 200, order);
	json_decref(patch);
	json_decref(cert);
	return;
fail:
	db_rollback(req->db);
	json_decref(order);
	json_decref(patch);
	json_decref(cert);
	api_reply_rc(resp, rc, "order");
}
