/*
 * webhooks.c - callback URL endpoints of a tenant: create (the signing
 * secret is shown once, then stored only sealed under the master key with
 * aad "webhooks:<id>"), list, read, update, delete, send a test event,
 * list an endpoint's deliveries with every attempt, redeliver one, and
 * rotate the secret with an overlap (both signatures sent meanwhile).
 *
 * A callback URL is user input that makes certplane open connections, so it
 * goes through the SSRF guard (netpolicy_url_check) at registration and
 * on every change; delivery checks the connected address again.
 */
#include "api/api.h"
#include "crypto/crypto.h"
#include "netpolicy/netpolicy.h"

#include <stdlib.h>
#include <string.h>

/* Reply 422 naming field; returns false for the *_or_reply helpers. */
static bool field_problem(struct api_resp *resp, const char *field, const char *message)
{
	api_problem_field(resp, field, message);
	return false;
}

bool api_events_or_reply(json_t *events, struct api_resp *resp)
{
	size_t i, j;
	json_t *v;

	if (json_array_size(events) == 0)
		return field_problem(resp, "events", "must list at least one event type");
	json_array_foreach(events, i, v)
	{
		const char *t = json_string_value(v);
		if (!t)
			return field_problem(resp, "events", "must be an array of strings");
		if (strcmp(t, "*") == 0) {
			if (json_array_size(events) != 1)
				return field_problem(resp, "events",
						     "\"*\" must be the only entry");
			continue;
		}
		if (!db_event_type_known(t))
			return field_problem(resp, "events", "lists an unknown event type");
		for (j = 0; j < i; j++)
			if (strcmp(json_string_value(json_array_get(events, j)), t) == 0)
				return field_problem(resp, "events", "lists a type twice");
	}
	return true;
}

bool api_callback_url_or_reply(struct api_req *req, struct api_resp *resp, const char *url)
{
	const struct cp_config *cfg = req->ctx->cfg;
	const struct netpolicy_dns dns = { .resolver = cfg->dns_resolver,
					   .timeout_ms = cfg->webhook_dns_timeout_ms };
	char why[NETPOLICY_WHY_MAX];
	cp_rc rc = netpolicy_url_check(url, cfg->webhook_allow_private_networks, &dns, why);

	if (rc == CP_OK)
		return true;
	if (rc == CP_ERR_INVALID)
		api_problem_field(resp, "url", why[0] ? why : "is not an allowed callback URL");
	else
		api_reply_rc(resp, rc, "webhook");
	return false;
}

void api_webhooks_create(struct api_req *req, struct api_resp *resp)
{
	const char *url = NULL, *description = "";
	json_t *events = NULL, *row = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_STR("url", true, &url, 1, 2048),
		CP_SPEC_ARR("events", true, &events, DB_EVENT_TYPES_COUNT + 1),
		CP_SPEC_STR("description", false, &description, 0, 500),
		CP_SPEC_DONE,
	};
	char id[CP_UUID_LEN + 1], *aad = NULL, *secret = NULL, *sealed = NULL;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_body_or_reply(req, resp, spec) ||
	    !api_events_or_reply(events, resp) || !api_callback_url_or_reply(req, resp, url))
		return;
	cp_uuid(id);
	aad = cp_aprintf("webhooks:%s", id);
	rc = aad ? crypto_webhook_secret_new(&secret) : CP_ERR_NOMEM;
	if (rc == CP_OK)
		rc = crypto_seal(req->ctx->keyring, aad, secret, strlen(secret), &sealed);
	if (rc == CP_OK)
		rc = db_begin(req->db);
	if (rc != CP_OK)
		goto out;
	if (!api_quota_or_reply(req, resp, &(struct db_quota_change){ .webhooks = 1 }))
		goto out;
	rc = db_webhook_create(req->db, req->tenant_id, id, url, events, description, sealed, &row);
	if (rc == CP_OK)
		rc = api_audit(req, "webhook.create", "webhook", id, NULL);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK)
		db_rollback(req->db);
out:
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "webhook");
	} else if (row) {
		json_object_set_new(row, "secret", json_string(secret));
		api_reply(resp, 201, row);
		resp->no_store = true;
		row = NULL;
	}
	json_decref(row);
	free(aad);
	free(sealed);
	crypto_wipe_free(secret);
}

void api_webhooks_list(struct api_req *req, struct api_resp *resp)
{
	api_list_resource(req, resp, db_webhook_list, "webhook");
}

/* A webhook is represented as GET /v1/webhooks/{id} answers it. */
static const struct api_repr webhook_repr = { .get = db_webhook_get };

void api_webhooks_get(struct api_req *req, struct api_resp *resp)
{
	api_get_resource(req, resp, db_webhook_get, "webhook");
}

void api_webhooks_update(struct api_req *req, struct api_resp *resp)
{
	struct db_webhook_patch p = { .enabled = -1 };
	int enabled = -1;
	json_t *row = NULL, *detail = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_STR("url", false, &p.url, 1, 2048),
		CP_SPEC_ARR("events", false, &p.events, DB_EVENT_TYPES_COUNT + 1),
		CP_SPEC_STR("description", false, &p.description, 0, 500),
		CP_SPEC_BOOLEAN("enabled", false, &enabled),
		CP_SPEC_DONE,
	};
	cp_rc rc;

	if (!api_change_or_reply(req, resp, spec))
		return;
	if (p.events && !api_events_or_reply(p.events, resp))
		return;
	if (p.url && !api_callback_url_or_reply(req, resp, p.url))
		return;
	p.enabled = enabled;
	/* What changed, without values that could be sensitive (URLs may
	 * carry tokens in their query). */
	detail = json_pack("{s:b,s:b,s:b,s:O}", "url", p.url != NULL, "events", p.events != NULL,
			   "description", p.description != NULL, "enabled",
			   enabled < 0 ? json_null() : json_boolean(enabled));
	rc = db_begin_rmw(req->db);
	if (rc == CP_OK && !api_if_match_or_reply(req, resp, &webhook_repr, req->params[0])) {
		json_decref(detail);
		return;
	}
	if (rc == CP_OK)
		rc = db_webhook_update(req->db, req->tenant_id, req->params[0], &p, &row);
	if (rc == CP_OK)
		rc = api_audit(req, "webhook.update", "webhook", req->params[0], detail);
	if (rc == CP_OK)
		api_etag_set(req, resp, &webhook_repr, req->params[0]);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	json_decref(detail);
	if (rc != CP_OK) {
		db_rollback(req->db);
		json_decref(row);
		api_reply_rc(resp, rc, "webhook");
		return;
	}
	api_reply(resp, 200, row);
}

void api_webhooks_delete(struct api_req *req, struct api_resp *resp)
{
	api_delete_resource_if(req, resp, db_webhook_delete, &webhook_repr, "webhook", "webhook",
			       NULL);
}

/* The checks before an action on the tenant's webhook params[0] that
 * delivers something (test, redeliver): no body (or an empty one), then a
 * transaction holding the webhook, which must be enabled. CP_OK: inside
 * the transaction; otherwise rolled back, and *answered when the answer
 * is already made (400, 409); else the caller answers rc. */
static cp_rc deliverable_begin(struct api_req *req, struct api_resp *resp, bool *answered)
{
	json_t *row = NULL;
	cp_rc rc;

	*answered = true;
	if (req->body && (!json_is_object(req->body) || json_object_size(req->body) != 0)) {
		api_problem_field(resp, "body", "this request takes no body");
		return CP_ERR_INVALID;
	}
	*answered = false;
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_webhook_get(req->db, req->tenant_id, req->params[0], &row);
	if (rc == CP_OK && !json_is_true(json_object_get(row, "enabled"))) {
		api_problem(resp, 409, "the webhook is disabled; enable it first", NULL);
		*answered = true;
		rc = CP_ERR_CONFLICT;
	}
	json_decref(row);
	if (rc != CP_OK)
		db_rollback(req->db);
	return rc;
}

void api_webhooks_test(struct api_req *req, struct api_resp *resp)
{
	char event_id[CP_UUID_LEN + 1], delivery_id[CP_UUID_LEN + 1];
	json_t *data = NULL;
	bool answered;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	rc = deliverable_begin(req, resp, &answered);
	if (answered)
		return;
	if (rc == CP_OK) {
		data = json_pack("{s:s,s:s}", "webhook_id", req->params[0], "message",
				 "test event sent from certplane");
		rc = data ? db_event_add(req->db, req->tenant_id, "webhook.test", data, event_id)
			  : CP_ERR_NOMEM;
	}
	if (rc == CP_OK)
		rc = db_webhook_deliver_to(req->db, req->tenant_id, req->params[0], event_id,
					   "webhook.test", delivery_id);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	json_decref(data);
	if (rc != CP_OK) {
		db_rollback(req->db);
		api_reply_rc(resp, rc, "webhook");
		return;
	}
	api_reply(resp, 202,
		  json_pack("{s:s,s:s,s:s}", "event_id", event_id, "delivery_id", delivery_id,
			    "webhook_id", req->params[0]));
}

void api_webhooks_deliveries(struct api_req *req, struct api_resp *resp)
{
	static const char *const states[] = { "pending", "delivered", "failed", NULL };
	const char *state = api_query(req, "state");
	struct db_page pg;
	struct db_list list;
	json_t *row = NULL;
	bool known = false;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0) ||
	    !api_page_or_reply(req, resp, &pg))
		return;
	if (state) {
		for (const char *const *s = states; *s; s++)
			known |= strcmp(*s, state) == 0;
		if (!known) {
			api_problem_field(resp, "state", "must be pending, delivered or failed");
			return;
		}
	}
	rc = db_webhook_get(req->db, req->tenant_id, req->params[0], &row);
	json_decref(row);
	if (rc == CP_OK)
		rc = db_webhook_deliveries(req->db, req->tenant_id, req->params[0], state, pg,
					   &list);
	api_reply_list_rc(resp, rc, &list, "webhook");
}

void api_webhooks_redeliver(struct api_req *req, struct api_resp *resp)
{
	char event_id[CP_UUID_LEN + 1];
	bool answered;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0) ||
	    !api_id_or_reply(req, resp, 1))
		return;
	rc = deliverable_begin(req, resp, &answered);
	if (answered)
		return;
	if (rc == CP_OK) {
		rc = db_webhook_redeliver(req->db, req->tenant_id, req->params[0], req->params[1],
					  event_id);
		if (rc == CP_ERR_CONFLICT) {
			db_rollback(req->db);
			api_problem(resp, 409,
				    "the delivery is still pending: it is retried on its schedule",
				    NULL);
			return;
		}
		if (rc == CP_ERR_NOT_FOUND) {
			db_rollback(req->db);
			api_reply_rc(resp, rc, "delivery");
			return;
		}
	}
	if (rc == CP_OK)
		rc = api_audit(req, "webhook.redeliver", "webhook_delivery", req->params[1], NULL);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK) {
		db_rollback(req->db);
		api_reply_rc(resp, rc, "webhook");
		return;
	}
	api_reply(resp, 202,
		  json_pack("{s:s,s:s,s:s}", "event_id", event_id, "delivery_id", req->params[1],
			    "webhook_id", req->params[0]));
}

/* Longest overlap of a secret rotation: a week covers any deploy cycle of
 * a receiver; longer would keep a leaked secret valid for too long. */
#define ROTATE_OVERLAP_MAX (7 * 86400)
#define ROTATE_OVERLAP_DEFAULT 86400

void api_webhooks_rotate_secret(struct api_req *req, struct api_resp *resp)
{
	json_int_t overlap = ROTATE_OVERLAP_DEFAULT;
	const struct cp_spec spec[] = {
		CP_SPEC_INTEGER("overlap_seconds", false, &overlap, 0, ROTATE_OVERLAP_MAX),
		CP_SPEC_DONE,
	};
	char *aad = NULL, *secret = NULL, *sealed = NULL;
	json_t *row = NULL, *detail = NULL;
	int64_t until = 0;
	char until_s[CP_TIME_LEN + 1];
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	/* The body is optional: none means the default overlap. */
	if (req->body && !api_body_or_reply(req, resp, spec))
		return;
	until = overlap > 0 ? cp_now() + (int64_t)overlap : 0;
	aad = cp_aprintf("webhooks:%s", req->params[0]);
	detail = json_pack("{s:I}", "overlap_seconds", overlap);
	rc = aad && detail ? crypto_webhook_secret_new(&secret) : CP_ERR_NOMEM;
	if (rc == CP_OK)
		rc = crypto_seal(req->ctx->keyring, aad, secret, strlen(secret), &sealed);
	if (rc == CP_OK)
		rc = db_begin(req->db);
	if (rc != CP_OK)
		goto out;
	rc = db_webhook_rotate_secret(req->db, req->tenant_id, req->params[0], sealed, until, &row);
	if (rc == CP_OK)
		rc = api_audit(req, "webhook.rotate_secret", "webhook", req->params[0], detail);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK)
		db_rollback(req->db);
out:
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "webhook");
	} else {
		/* The new secret is shown here once, like at creation. */
		json_object_set_new(row, "secret", json_string(secret));
		cp_time_fmt(until, until_s);
		json_object_set_new(row, "previous_secret_expires_at",
				    until ? json_string(until_s) : json_null());
		api_reply(resp, 200, row);
		resp->no_store = true;
		row = NULL;
	}
	json_decref(row);
	json_decref(detail);
	free(aad);
	free(sealed);
	crypto_wipe_free(secret);
}
