/*
 * channels.c - a tenant's notification channels beyond webhooks (issue 14):
 * email addresses and Slack-compatible incoming webhooks, for the same
 * lifecycle events a webhook subscribes to, delivered by the same outbox
 * (db/channels.c says how; server/channel_send.c sends).
 *
 * An email address gets lifecycle mail only once verified: creating it
 * sends one verification mail (event notification_channel.verification,
 * delivered to that channel alone) with a one-time token, and POST
 * .../verify with that token marks it verified. The token is stored only
 * sealed (aad "webhooks:<id>") and never returned. A Slack URL goes through
 * the webhooks' SSRF rules and is shown masked, since its path is what
 * lets anyone post. At most quota_notification_channels channels a tenant.
 */
#include "api/api.h"
#include "crypto/crypto.h"

#include <stdlib.h>
#include <string.h>

/* Random bytes of a verification token (shown as hex). */
#define TOKEN_BYTES 16

/* The channel's token as it is sealed and mailed: 32 lowercase hex. */
static cp_rc token_new(char out[2 * TOKEN_BYTES + 1])
{
	uint8_t raw[TOKEN_BYTES];
	cp_rc rc = cp_random(raw, sizeof(raw));

	if (rc == CP_OK)
		cp_hex(raw, sizeof(raw), out);
	crypto_wipe(raw, sizeof(raw));
	return rc;
}

/* The type-specific part of a create: target (address or URL) valid for
 * type; false after a 422 naming the field (or another reply). */
static bool target_or_reply(struct api_req *req, struct api_resp *resp, const char *type,
			    const char *address, const char *url)
{
	const char *why = NULL;

	if (strcmp(type, "email") == 0) {
		if (url) {
			api_problem_field(resp, "url",
					  "is for slack channels; email takes address");
			return false;
		}
		if (!address) {
			api_problem_field(resp, "address", "is required for an email channel");
			return false;
		}
		if (!cp_email_valid(address, &why)) {
			api_problem_field(resp, "address", why);
			return false;
		}
		if (!req->ctx->cfg->smtp_url[0] || !req->ctx->cfg->smtp_from[0]) {
			api_problem_field(resp, "type",
					  "email channels need smtp_url and smtp_from, which the "
					  "operator has not configured");
			return false;
		}
		return true;
	}
	if (strcmp(type, "slack") == 0) {
		if (address) {
			api_problem_field(resp, "address",
					  "is for email channels; slack takes url");
			return false;
		}
		if (!url) {
			api_problem_field(resp, "url", "is required for a slack channel");
			return false;
		}
		return api_callback_url_or_reply(req, resp, url);
	}
	api_problem_field(resp, "type", "must be email or slack");
	return false;
}

/* Inside the create's transaction: the channel count stays within the
 * tenant's quota (409 naming quota.notification_channels, rolled back).
 * The tenant's quota lock first, so that on PostgreSQL two creates at
 * once cannot both count one short of the limit. */
static bool channel_quota_or_reply(struct api_req *req, struct api_resp *resp, cp_rc *rc)
{
	int n = 0;

	*rc = db_quota_lock(req->db, req->tenant_id);
	if (*rc == CP_OK)
		*rc = db_channel_count(req->db, req->tenant_id, &n);
	if (*rc != CP_OK || n < req->ctx->cfg->quota_notification_channels)
		return true;
	db_rollback(req->db);
	api_problem(resp, 409, "quota exceeded: notification_channels",
		    json_pack("[{s:s,s:s}]", "field", "quota.notification_channels", "message",
			      "the tenant has as many notification channels as its quota allows"));
	return false;
}

/* Verification mails a tenant may have sent in a day: they go to
 * addresses nobody confirmed yet, so a loop of create and delete must not
 * make certplane a mailer to arbitrary addresses. */
#define VERIFICATIONS_PER_DAY 20

/* Inside the create's transaction: the tenant has verification mails left
 * today (else rolled back and 429 with Retry-After). */
static bool verification_budget_or_reply(struct api_req *req, struct api_resp *resp, cp_rc *rc)
{
	bool over = false;

	*rc = db_channel_verification_recent(req->db, req->tenant_id, VERIFICATIONS_PER_DAY,
					     cp_now() - 86400, &over);
	if (*rc != CP_OK || !over)
		return true;
	db_rollback(req->db);
	resp->retry_after = 3600;
	api_problem(resp, 429,
		    "too many verification mails: at most 20 email channels a day may be "
		    "registered",
		    NULL);
	return false;
}

/* The verification mail of new email channel id: its event, delivered to
 * that channel alone, inside the caller's transaction. */
static cp_rc verification_send(struct api_req *req, const char *id, const char *address)
{
	char event_id[CP_UUID_LEN + 1];
	json_t *data = json_pack("{s:s,s:s}", "channel_id", id, "address", address);
	cp_rc rc = data ? db_event_add(req->db, req->tenant_id, DB_EVENT_CHANNEL_VERIFICATION, data,
				       event_id)
			: CP_ERR_NOMEM;

	if (rc == CP_OK)
		rc = db_webhook_deliver_to(req->db, req->tenant_id, id, event_id,
					   DB_EVENT_CHANNEL_VERIFICATION, NULL);
	json_decref(data);
	return rc;
}

void api_channels_create(struct api_req *req, struct api_resp *resp)
{
	const char *type = NULL, *address = NULL, *url = NULL;
	json_t *events = NULL, *row = NULL, *detail = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_STR("type", true, &type, 1, 16),
		CP_SPEC_STR("address", false, &address, 1, 254),
		CP_SPEC_STR("url", false, &url, 1, 2048),
		CP_SPEC_ARR("events", true, &events, DB_EVENT_TYPES_COUNT + 1),
		CP_SPEC_DONE,
	};
	char id[CP_UUID_LEN + 1], token[2 * TOKEN_BYTES + 1] = "", *aad = NULL, *sealed = NULL;
	bool email;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_body_or_reply(req, resp, spec) ||
	    !target_or_reply(req, resp, type, address, url) || !api_events_or_reply(events, resp))
		return;
	email = strcmp(type, "email") == 0;
	cp_uuid(id);
	aad = cp_aprintf("webhooks:%s", id);
	detail = json_pack("{s:s}", "type", type);
	/* A Slack channel has no token: its secret column holds a random one
	 * that nothing reads. */
	rc = aad && detail ? token_new(token) : CP_ERR_NOMEM;
	if (rc == CP_OK)
		rc = crypto_seal(req->ctx->keyring, aad, token, strlen(token), &sealed);
	if (rc == CP_OK)
		rc = db_begin(req->db);
	if (rc != CP_OK)
		goto out;
	if (!channel_quota_or_reply(req, resp, &rc))
		goto out_answered;
	if (rc == CP_OK && email && !verification_budget_or_reply(req, resp, &rc))
		goto out_answered;
	if (rc == CP_OK)
		rc = db_channel_create(req->db, req->tenant_id, id, type, email ? address : url,
				       events, sealed, &row);
	if (rc == CP_OK && email)
		rc = verification_send(req, id, address);
	if (rc == CP_OK)
		rc = api_audit(req, "notification_channel.create", "notification_channel", id,
			       detail);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK)
		db_rollback(req->db);
out:
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "notification channel");
	} else {
		api_reply(resp, 201, row);
		row = NULL;
	}
out_answered:
	json_decref(row);
	json_decref(detail);
	free(aad);
	free(sealed);
	crypto_wipe(token, sizeof(token));
}

void api_channels_list(struct api_req *req, struct api_resp *resp)
{
	api_list_resource(req, resp, db_channel_list, "notification channel");
}

void api_channels_get(struct api_req *req, struct api_resp *resp)
{
	api_get_resource(req, resp, db_channel_get, "notification channel");
}

/* The end of a change to channel params[0] (rc so far, row its new state,
 * owned here): audited and committed, then 200 with row, or rolled back
 * and rc's problem. */
static void channel_commit_reply(struct api_req *req, struct api_resp *resp, cp_rc rc,
				 const char *action, json_t *detail, json_t *row)
{
	rc = db_audit_commit(req->db, rc, req->tenant_id, req->actor, action,
			     "notification_channel", req->params[0], detail);
	if (rc == CP_OK) {
		api_reply(resp, 200, row);
		return;
	}
	json_decref(row);
	api_reply_rc(resp, rc, "notification channel");
}

/* A channel is represented as GET /v1/notification-channels/{id} answers it. */
static const struct api_repr channel_repr = { .get = db_channel_get };

/* PATCH: its events and enabled. The target (address, URL) does not
 * change: a new one is a new channel, with its own verification. */
void api_channels_update(struct api_req *req, struct api_resp *resp)
{
	json_t *events = NULL, *row = NULL, *detail = NULL;
	int enabled = -1;
	const struct cp_spec spec[] = {
		CP_SPEC_ARR("events", false, &events, DB_EVENT_TYPES_COUNT + 1),
		CP_SPEC_BOOLEAN("enabled", false, &enabled),
		CP_SPEC_DONE,
	};
	cp_rc rc;

	if (!api_change_or_reply(req, resp, spec))
		return;
	if (events && !api_events_or_reply(events, resp))
		return;
	detail = json_pack("{s:b,s:O}", "events", events != NULL, "enabled",
			   enabled < 0 ? json_null() : json_boolean(enabled));
	rc = detail ? db_begin_rmw(req->db) : CP_ERR_NOMEM;
	if (rc == CP_OK && !api_if_match_or_reply(req, resp, &channel_repr, req->params[0]))
		goto out;
	if (rc == CP_OK)
		rc = db_channel_update(req->db, req->tenant_id, req->params[0], events, enabled,
				       &row);
	if (rc == CP_OK)
		api_etag_set(req, resp, &channel_repr, req->params[0]);
	channel_commit_reply(req, resp, rc, "notification_channel.update", detail, row);
	row = NULL;
out:
	json_decref(row);
	json_decref(detail);
}

void api_channels_delete(struct api_req *req, struct api_resp *resp)
{
	api_delete_resource(req, resp, db_channel_delete, "notification_channel",
			    "notification channel", NULL);
}

/* Whether token (the body's) is the one sealed for channel id. */
static cp_rc token_matches(struct api_req *req, const char *sealed, const char *token, bool *match)
{
	char *aad = cp_aprintf("webhooks:%s", req->params[0]), *want = NULL;
	size_t n = 0;
	cp_rc rc = aad ? crypto_open(req->ctx->keyring, aad, sealed, &want, &n) : CP_ERR_NOMEM;

	*match = rc == CP_OK && n == strlen(token) && crypto_equal(want, token, n);
	crypto_wipe_free_buf(want, n);
	free(aad);
	return rc;
}

void api_channels_verify(struct api_req *req, struct api_resp *resp)
{
	const char *token = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_STR("token", true, &token, 1, 128),
		CP_SPEC_DONE,
	};
	char *sealed = NULL;
	json_t *row = NULL;
	bool verified = false, match = false;
	cp_rc rc;

	if (!api_change_or_reply(req, resp, spec))
		return;
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_channel_token(req->db, req->tenant_id, req->params[0], &sealed, &verified);
	if (rc == CP_OK && verified) {
		db_rollback(req->db);
		api_problem(resp, 409, "the address is verified already", NULL);
		goto out;
	}
	if (rc == CP_OK)
		rc = token_matches(req, sealed, token, &match);
	if (rc == CP_OK && !match) {
		db_rollback(req->db);
		api_problem_field(resp, "token",
				  "is not the token of this channel's verification mail");
		goto out;
	}
	if (rc == CP_OK)
		rc = db_channel_set_verified(req->db, req->tenant_id, req->params[0], &row);
	channel_commit_reply(req, resp, rc, "notification_channel.verify", NULL, row);
	row = NULL;
out:
	json_decref(row);
	free(sealed);
}

/* api_exists_fn of a channel. */
static cp_rc channel_exists(struct db *db, const char *tenant_id, const char *id)
{
	json_t *row = NULL;
	cp_rc rc = db_channel_get(db, tenant_id, id, &row);

	json_decref(row);
	return rc;
}

/* api_children_fn: a channel's deliveries, as a webhook's are listed. */
static cp_rc channel_deliveries(struct db *db, const char *tenant_id, const char *id,
				struct db_page pg, struct db_list *out)
{
	return db_webhook_deliveries(db, tenant_id, id, NULL, pg, out);
}

void api_channels_deliveries(struct api_req *req, struct api_resp *resp)
{
	api_list_children(req, resp, channel_exists, channel_deliveries, "notification channel");
}
