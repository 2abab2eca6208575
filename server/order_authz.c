/*
 * order_authz.c - the authorizations of an order: learn what each needs,
 * answer its challenge (DNS-01: write the TXT record ourselves when the
 * tenant delegated the name, order_dcv.c, else tell the tenant; wait until
 * the TXT record is visible), poll until the CA decides.
 */
#include "acme/acme.h"
#include "server/order_internal.h"

#include <string.h>

#define DNS01_RECHECK_SECONDS 2 /* TXT visibility polling */

/* ---- authorizations ---- */

/* Fill an authorization row from the CA's authz object (first sight). */
static enum order_step authz_learn(struct order_run *run, json_t *a, json_t *authz)
{
	const char *type = cp_json_str(run->order, "challenge");
	const char *ident = cp_json_str(json_object_get(authz, "identifier"), "value");
	const char *status = cp_json_str(authz, "status");
	const json_t *ch = acme_authz_challenge(authz, type);
	const char *token = cp_json_str(ch, "token"), *ch_url = cp_json_str(ch, "url");
	bool wildcard = json_is_true(json_object_get(authz, "wildcard"));
	char *shown = NULL, *ka = NULL, *txt_name = NULL, *txt_value = NULL;
	int64_t expires = 0;
	int pos = (int)cp_json_int(a, "position");
	cp_rc rc;

	if (!ident || !status)
		return order_fail(run, "ca_protocol_error",
				  "authorization %s lacks identifier or status",
				  cp_json_str(a, "url"));
	shown = wildcard ? cp_aprintf("*.%s", ident) : cp_strdup(ident);
	if (cp_json_str(authz, "expires"))
		if (cp_time_parse(cp_json_str(authz, "expires"), &expires) != CP_OK)
			expires = 0;
	if (strcmp(status, "pending") == 0) {
		if (!token || !ch_url) {
			free(shown);
			return order_fail(run, "challenge_failed",
					  "the CA offers no %s challenge for %s", type, ident);
		}
		if (!strcmp(type, "dns-01"))
			rc = acme_dns01_record(acme_client_key(run->c), ident, token, &txt_name,
					       &txt_value);
		else
			rc = acme_key_authorization(acme_client_key(run->c), token, &ka);
		if (rc != CP_OK) {
			free(shown);
			return order_fail(run, "ca_protocol_error",
					  "unusable challenge token for %s", ident);
		}
	}
	rc = order_save_authz(run, pos,
			      json_pack("{s:s?,s:s,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:o}",
					"identifier", shown, "status", status, "challenge_type",
					token ? type : NULL, "challenge_url", ch_url, "token",
					token, "key_authorization", ka, "txt_record_name", txt_name,
					"txt_record_value", txt_value, "expires_at",
					expires ? json_integer(expires) : json_null()));
	free(shown);
	free(ka);
	free(txt_name);
	free(txt_value);
	return rc == CP_OK ? ORDER_STEP_DONE : order_fail_db(run, rc, "storing an authorization");
}

/*
 * An authorization the CA did not make valid (a: its row, authz: the CA's
 * object), as a failure classified by acme_classify().
 */
enum order_step order_fail_authz(struct order_run *run, json_t *a, json_t *authz)
{
	const char *ident =
		cp_json_str(a, "identifier") ? cp_json_str(a, "identifier") : cp_json_str(a, "url");
	int64_t responded = cp_json_int(a, "responded");
	struct acme_result pr;
	struct acme_verdict v;

	acme_authz_problem(authz, cp_json_str(run->order, "challenge"), &pr);
	v = acme_classify(&pr);
	/* The CA could not connect to us. If we answered the challenge in an
	 * earlier life of this process (responded is when; 0: killed before it
	 * was stored), our own process died while the CA was validating (kill
	 * -9, deploy): our fault, not the tenant's - place a fresh CA order.
	 * With this process up the whole time, the name does not reach us. */
	if (acme_result_is(&pr, "connection") && responded <= run->ctx->started_at) {
		snprintf(run->reason, sizeof(run->reason), "challenge_retry");
		snprintf(run->detail, sizeof(run->detail), "validation of %.200s: %.280s", ident,
			 pr.detail);
		return ORDER_STEP_RESET;
	}
	snprintf(run->reason, sizeof(run->reason), "%s", v.reason ? v.reason : "challenge_failed");
	snprintf(run->detail, sizeof(run->detail), "validation of %.150s failed: %.250s%s%.60s",
		 ident, pr.detail, pr.type[0] ? " " : "", pr.type);
	return v.outcome == ACME_OUTCOME_TRANSIENT ? ORDER_STEP_BACKOFF : ORDER_STEP_FAIL;
}

/* The payload of a DNS-01 event for authorization a: the order's base,
 * the domain and its TXT record (new reference, NULL out of memory). */
static json_t *dns_event_data(struct order_run *run, json_t *a)
{
	json_t *data = order_event_base(run);

	if (!data)
		return NULL;
	json_object_set_new(data, "domain", json_string(cp_json_str(a, "identifier")));
	json_object_set_new(data, "txt_record_name",
			    json_string(cp_json_str(a, "txt_record_name")));
	json_object_set_new(data, "txt_record_value",
			    json_string(cp_json_str(a, "txt_record_value")));
	return data;
}

/* DNS-01: tell the tenant what to publish (once per authorization). */
static cp_rc dns_notify(struct order_run *run, json_t *a)
{
	json_t *data = dns_event_data(run, a);
	char exp[CP_TIME_LEN + 1];
	int64_t deadline = cp_json_int(run->order, "dns_deadline");
	cp_rc rc;

	if (!deadline)
		deadline = cp_now() + run->ctx->cfg->dns01_timeout_seconds;
	cp_time_fmt(deadline, exp);
	if (!data)
		return CP_ERR_NOMEM;
	json_object_set_new(data, "expires_at", json_string(exp));
	rc = db_begin(run->db);
	if (rc == CP_OK)
		rc = db_event_add(run->db, run->tenant_id, "order.dns_challenge_required", data,
				  NULL);
	if (rc == CP_OK)
		rc = order_save_authz(run, (int)cp_json_int(a, "position"),
				      json_pack("{s:i}", "notified", 1));
	if (rc == CP_OK && !cp_json_int(run->order, "dns_deadline"))
		rc = order_save(run, json_pack("{s:I}", "dns_deadline", (json_int_t)deadline));
	if (rc == CP_OK)
		rc = db_commit(run->db);
	else
		db_rollback(run->db);
	json_decref(data);
	return rc;
}

/* DNS-01: is the authorization's TXT value visible through our resolver? */
static bool txt_visible(struct order_run *run, struct acme_resolver **res, json_t *a)
{
	json_t *values = NULL, *v;
	bool found = false;
	size_t i;

	if (!*res && acme_resolver_new(run->ctx->cfg->dns_resolver, res) != CP_OK)
		return false;
	if (acme_dns_txt(*res, cp_json_str(a, "txt_record_name"), &values) != CP_OK)
		return false;
	json_array_foreach(values, i,
			   v) if (json_string_value(v) &&
				  !strcmp(json_string_value(v), cp_json_str(a, "txt_record_value")))
		found = true;
	json_decref(values);
	return found;
}

/* A challenge or authorization status the CA has decided (not pending or
 * processing). */
static bool decided(const char *st)
{
	return st && strcmp(st, "pending") != 0 && strcmp(st, "processing") != 0;
}

/* Poll one answered authorization until the CA decides. */
static enum order_step authz_poll(struct order_run *run, json_t *a)
{
	int64_t delay = ORDER_POLL_FIRST_MS, deadline = cp_mono_ms() + ORDER_POLL_BUDGET_MS;
	json_t *authz = NULL;
	enum order_step step = ORDER_STEP_DONE;
	const char *st;
	cp_rc rc;

	for (;;) {
		json_decref(authz);
		authz = NULL;
		rc = acme_authz_get(run->c, cp_json_str(a, "url"), &authz, &run->r);
		if (rc != CP_OK) {
			step = order_fail_ca(run, rc, "authorization");
			goto out;
		}
		if (decided(st = cp_json_str(authz, "status")))
			break;
		if (cp_mono_ms() > deadline) {
			/* Come back later rather than hold the worker. */
			run->run_at = cp_now() + 5;
			step = ORDER_STEP_WAIT;
			goto out;
		}
		if ((step = order_wait_poll(run, delay)) != ORDER_STEP_DONE)
			goto out;
		delay = delay * 2 > ORDER_POLL_MAX_MS ? ORDER_POLL_MAX_MS : delay * 2;
	}
	if (strcmp(st, "valid") == 0) {
		rc = order_save_authz(run, (int)cp_json_int(a, "position"),
				      json_pack("{s:s}", "status", "valid"));
		if (rc != CP_OK)
			step = order_fail_db(run, rc, "storing an authorization");
		goto out;
	}
	step = order_fail_authz(run, a, authz);
out:
	json_decref(authz);
	return step;
}

/* True while another authorization of the order that publishes at a's TXT
 * name is not valid yet: a wildcard and its apex share
 * _acme-challenge.<name>, and telling the tenant to remove the record
 * after the first would take the second's value away before the CA saw
 * it (a tenant deletes the whole record set). */
static bool txt_name_needed(struct order_run *run, json_t *a)
{
	const char *name = cp_json_str(a, "txt_record_name");
	json_t *b;
	size_t i;

	json_array_foreach(json_object_get(run->order, "authorizations"), i, b)
	{
		const char *other = cp_json_str(b, "txt_record_name");
		if (b != a && name && other && !strcmp(name, other) &&
		    strcmp(cp_json_str(b, "status"), "valid") != 0)
			return true;
	}
	return false;
}

/* DNS-01: was a's record published, by the tenant (announced) or by us
 * (delegated)? */
static bool dns_published(json_t *a)
{
	return cp_json_int(a, "notified") || cp_json_int(a, "delegated");
}

/* DNS-01: the challenge is done; remove our delegated record, or tell the
 * tenant to remove its own. */
static cp_rc dns_completed(struct order_run *run, json_t *a)
{
	json_t *data;
	cp_rc rc;

	if (cp_json_int(a, "delegated"))
		return order_dcv_release(run, a);
	data = dns_event_data(run, a);
	if (!data)
		return CP_ERR_NOMEM;
	rc = db_begin(run->db);
	if (rc == CP_OK)
		rc = db_event_add(run->db, run->tenant_id, "order.dns_challenge_completed", data,
				  NULL);
	if (rc == CP_OK)
		rc = order_save_authz(run, (int)cp_json_int(a, "position"),
				      json_pack("{s:i}", "completed", 1));
	if (rc == CP_OK)
		rc = db_commit(run->db);
	else
		db_rollback(run->db);
	json_decref(data);
	return rc;
}

cp_rc order_dns_release_all(struct order_run *run)
{
	json_t *a;
	size_t i;
	cp_rc rc = CP_OK;

	if (strcmp(cp_json_str(run->order, "challenge"), "dns-01") != 0)
		return CP_OK;
	json_array_foreach(json_object_get(run->order, "authorizations"), i, a)
	{
		if (rc == CP_OK && dns_published(a) && !cp_json_int(a, "completed"))
			rc = dns_completed(run, a);
	}
	return rc;
}

/*
 * A challenge POST was refused: had an earlier run already answered it (the
 * CA's reply lost to a crash or a dropped connection, so "responded" was
 * never stored)? Then the refusal is about a second answer, not the name.
 */
static bool already_answered(struct order_run *run, json_t *a)
{
	json_t *authz = NULL;
	struct acme_result keep = run->r;
	const char *st, *cst;
	bool yes = false;

	if (acme_authz_get(run->c, cp_json_str(a, "url"), &authz, &run->r) == CP_OK) {
		st = cp_json_str(authz, "status");
		cst = cp_json_str(acme_authz_challenge(authz, cp_json_str(run->order, "challenge")),
				  "status");
		yes = (st && strcmp(st, "pending") != 0) || (cst && strcmp(cst, "pending") != 0);
	}
	run->r = keep;
	json_decref(authz);
	return yes;
}

/* The CA order is "pending": get every authorization answered and valid. */
enum order_step order_answer_authorizations(struct order_run *run)
{
	bool dns = !strcmp(cp_json_str(run->order, "challenge"), "dns-01");
	struct acme_resolver *res = NULL;
	enum order_step step = ORDER_STEP_DONE;
	bool waiting = false;
	json_t *a;
	size_t i;
	cp_rc rc;

	/* Learn what each authorization needs. */
	json_array_foreach(json_object_get(run->order, "authorizations"), i, a)
	{
		json_t *authz = NULL;
		if (cp_json_str(a, "identifier"))
			continue;
		/* Up to 100 CA requests: the lease must outlast them. */
		if (!order_keep_lease(run))
			return order_fail_db(run, CP_ERR_BUSY, "extending the job lease");
		rc = acme_authz_get(run->c, cp_json_str(a, "url"), &authz, &run->r);
		step = rc == CP_OK ? authz_learn(run, a, authz)
				   : order_fail_ca(run, rc, "authorization");
		json_decref(authz);
		if (step != ORDER_STEP_DONE)
			return step;
	}
	if ((rc = order_reload(run)) != CP_OK)
		return order_fail_db(run, rc, "reloading the order");
	if (!strcmp(cp_json_str(run->order, "status"), "pending") &&
	    (rc = order_save(run, json_pack("{s:s}", "status", "validating"))) != CP_OK)
		return order_fail_db(run, rc, "storing the order");

	json_array_foreach(json_object_get(run->order, "authorizations"), i, a)
	{
		const char *st = cp_json_str(a, "status");
		if (strcmp(st, "valid") == 0) {
			if (dns && dns_published(a) && !cp_json_int(a, "completed") &&
			    !txt_name_needed(run, a))
				(void)dns_completed(run, a);
			continue;
		}
		if (strcmp(st, "pending") != 0) {
			step = order_fail(run, "challenge_failed", "authorization for %s is %s",
					  cp_json_str(a, "identifier"), st);
			break;
		}
		if (!cp_json_int(a, "responded")) {
			if (!order_keep_lease(run)) {
				step = order_fail_db(run, CP_ERR_BUSY, "extending the job lease");
				break;
			}
			if (dns && !dns_published(a)) {
				bool delegated = false;
				rc = order_dcv_publish(run, a, &delegated);
				if (rc == CP_ERR_UPSTREAM) {
					step = ORDER_STEP_BACKOFF; /* reason/detail set */
					break;
				}
				if (rc == CP_OK && !delegated)
					rc = dns_notify(run, a);
				if (rc != CP_OK) {
					step = order_fail_db(run, rc,
							     "recording the DNS challenge");
					break;
				}
			}
			if (dns) {
				if (!txt_visible(run, &res, a)) {
					waiting = true;
					continue;
				}
			}
			rc = acme_challenge_respond(run->c, cp_json_str(a, "challenge_url"), NULL,
						    &run->r);
			if (rc != CP_OK) {
				step = order_fail_ca(run, rc, "challenge");
				if (step != ORDER_STEP_FAIL || !already_answered(run, a))
					break;
				step = ORDER_STEP_DONE; /* our earlier answer's reply was lost */
			}
			/* When, not just whether: order_fail_authz() tells a CA that
			 * found us down (our crash) from one that could not reach
			 * the name. */
			if ((rc = order_save_authz(run, (int)cp_json_int(a, "position"),
						   json_pack("{s:I}", "responded",
							     (json_int_t)cp_now()))) != CP_OK) {
				step = order_fail_db(run, rc, "storing an authorization");
				break;
			}
		}
	}
	acme_resolver_free(res);
	if (step != ORDER_STEP_DONE)
		return step;
	if ((rc = order_reload(run)) != CP_OK)
		return order_fail_db(run, rc, "reloading the order");
	/* Poll what was answered. */
	json_array_foreach(json_object_get(run->order, "authorizations"), i, a)
	{
		if (strcmp(cp_json_str(a, "status"), "pending") != 0 ||
		    !cp_json_int(a, "responded"))
			continue;
		if ((step = authz_poll(run, a)) != ORDER_STEP_DONE)
			return step;
	}
	/* The records of what is now valid can go, unless an authorization
	 * still waiting publishes at the same name. */
	if (dns && (rc = order_reload(run)) != CP_OK)
		return order_fail_db(run, rc, "reloading the order");
	json_array_foreach(json_object_get(run->order, "authorizations"), i, a)
	{
		if (!dns || strcmp(cp_json_str(a, "status"), "valid") != 0 || !dns_published(a) ||
		    cp_json_int(a, "completed") || txt_name_needed(run, a))
			continue;
		if ((rc = dns_completed(run, a)) != CP_OK)
			return order_fail_db(run, rc, "recording the DNS challenge");
	}
	if (waiting) {
		int64_t deadline = cp_json_int(run->order, "dns_deadline");
		if (order_reload(run) == CP_OK)
			deadline = cp_json_int(run->order, "dns_deadline");
		if (deadline && cp_now() >= deadline)
			return order_fail(
				run, "dns01_timeout",
				"the DNS-01 TXT records were not visible within %d seconds",
				run->ctx->cfg->dns01_timeout_seconds);
		run->run_at = cp_now() + DNS01_RECHECK_SECONDS;
		return ORDER_STEP_WAIT;
	}
	return ORDER_STEP_DONE;
}
