/*
 * orders.c - /v1/orders: the ACME orders of a tenant. Orders are created by
 * POST /v1/certificates (source "acme"), POST /v1/certificates/{id}/renew
 * and the auto-renew scheduler; here they are read, nudged (verify: "my
 * TXT records are published, check now") and canceled. The engine that
 * advances them is the "acme_order" job (server/order_run.c).
 */
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
	const char *hostname = api_query(req, "hostname"), *why;
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
	/* An identifier as the order names it: a wildcard is allowed. */
	if (hostname && !cp_hostname_valid(hostname, true, &why)) {
		api_problem_field(resp, "hostname", why);
		return;
	}
	rc = db_order_list(req->db, req->tenant_id,
			   &(struct db_order_filter){
				   .certificate_id = cert, .status = status, .hostname = hostname },
			   pg, &list);
	api_reply_list_rc(resp, rc, &list, "order");
}

void api_orders_get(struct api_req *req, struct api_resp *resp)
{
	api_get_resource(req, resp, db_order_get, "order");
}

/* verify: a DNS-01 order in flight is checked at once instead of at its
 * next poll; the TXT lookup itself stays the engine's job. */
void api_orders_verify(struct api_req *req, struct api_resp *resp)
{
	json_t *order = NULL, *patch = NULL;
	char key[64];
	cp_rc rc;

	if (!order_change_begin(req, resp, dns_in_flight,
				"only a dns-01 order in flight can be verified (see its status "
				"and challenge)",
				&order))
		return;
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
	api_reply(resp, 202, order);
	json_decref(patch);
	return;
fail:
	db_rollback(req->db);
	json_decref(order);
	json_decref(patch);
	api_reply_rc(resp, rc, "order");
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
