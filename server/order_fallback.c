/*
 * order_fallback.c - which CA an order asks, the one home of that rule:
 *
 *   - the CA list: an order works through an ordered list of CA names, the
 *     certificate's "cas", else its tenant's default_cas, else its one CA.
 *     The list is taken at the order's first run and stored on the order
 *     (orders.cas), and the order starts at its head: every new order,
 *     renewals included, goes back to the first CA;
 *   - CAA (RFC 8659, RFC 8657): before a new CA order, every name's
 *     relevant CAA RRset (acme_dns_caa, through dns_resolver) must allow the
 *     current CA (its cas.<name>.caa_identities, or acme_caa_identities for
 *     the default CA; its account URL; the order's challenge type), the rule
 *     itself being caa/caa.h's. A forbidding RRset is "caa_forbids" naming
 *     the record, before any newOrder reaches that CA;
 *   - the fallback: a CA that is unreachable (ca_unreachable), rate limits
 *     (ca_rate_limited) or is forbidden by CAA (caa_forbids) hands the
 *     order to the next CA of its list, as a fresh CA order with that CA's
 *     own account. The last CA's outcome is the order's: a backoff (it
 *     waits for that CA) or the failure, caa_forbids when CAA allowed none.
 */
#include "acme/acme.h"
#include "caa/caa.h"
#include "server/order_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define CAA_CHECK_BUDGET_MS 20000 /* every CAA lookup of one check together */
#define CAA_MAX_IDENTITIES 16

cp_rc order_cas_begin(struct order_run *run)
{
	const char *cert_id = cp_json_str(run->order, "certificate_id");
	json_t *plan = NULL, *cas = NULL;
	cp_rc rc = CP_OK;

	if (json_is_array(json_object_get(run->order, "cas")))
		return CP_OK; /* taken at an earlier run */
	/* An order already at its CA (placed before migration 020) stays
	 * there: its list is that CA alone. */
	if (cert_id && !cp_json_str(run->order, "order_url")) {
		rc = db_certificate_order_plan(run->db, run->tenant_id, cert_id, &plan);
		if (rc == CP_ERR_NOT_FOUND)
			rc = CP_OK; /* certificate gone meanwhile: the order's one CA */
		if (rc != CP_OK)
			goto out;
	}
	cas = json_object_get(plan, "cas");
	if (json_is_array(cas) && json_array_size(cas) > 0)
		cas = json_incref(cas);
	else
		cas = json_pack("[s]", cp_json_str(run->order, "ca"));
	if (!cas) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	rc = order_save(run, json_pack("{s:O,s:O}", "cas", cas, "ca", json_array_get(cas, 0)));
	if (rc == CP_OK)
		rc = order_reload(run);
out:
	json_decref(cas);
	json_decref(plan);
	return rc;
}

/* The CAA issuer domain names of ca (NULL-terminated into ids): borrowed
 * from the configuration. */
static void ca_identities(const struct cp_config *cfg, const char *ca,
			  const char *ids[CAA_MAX_IDENTITIES + 1])
{
	const json_t *list =
		!strcmp(ca, "letsencrypt")
			? cfg->acme_caa_identities
			: json_object_get(json_object_get(cfg->cas, ca), "caa_identities");
	size_t i, n = 0;
	json_t *v;

	json_array_foreach(list, i, v) if (json_is_string(v) && n < CAA_MAX_IDENTITIES) ids[n++] =
		json_string_value(v);
	ids[n] = NULL;
}

enum order_step order_caa_check(struct order_run *run)
{
	const char *ca = cp_json_str(run->order, "ca"), *ids[CAA_MAX_IDENTITIES + 1];
	json_t *names = json_object_get(run->order, "identifiers"), *v, *recs = NULL;
	struct acme_resolver *res = NULL;
	enum order_step step = ORDER_STEP_DONE;
	char at[256], why[384];
	size_t i;
	cp_rc rc;

	assert(run && ca);
	ca_identities(run->ctx->cfg, ca, ids);
	if (acme_resolver_new(run->ctx->cfg->dns_resolver, &res) != CP_OK)
		return order_fail(run, "internal", "bad dns_resolver setting");
	acme_resolver_set_deadline(res, cp_mono_ms() + CAA_CHECK_BUDGET_MS);
	json_array_foreach(names, i, v)
	{
		const char *name = json_string_value(v);
		struct caa_request req = { .identities = ids,
					   .account_uri = acme_client_account_url(run->c),
					   .method = cp_json_str(run->order, "challenge"),
					   .wildcard = cp_hostname_is_wildcard(name) };

		rc = acme_dns_caa(res, name, &recs, at, sizeof(at));
		if (rc == CP_ERR_UPSTREAM) {
			snprintf(run->reason, sizeof(run->reason), "dns_lookup_failed");
			snprintf(run->detail, sizeof(run->detail),
				 "the CAA lookup of %s failed: a CA may not issue without it",
				 name);
			step = ORDER_STEP_BACKOFF;
		} else if (rc != CP_OK) {
			step = order_fail(run, "invalid_hostname", "%s is not a valid hostname",
					  name);
		} else if (!caa_allows(recs, &req, why, sizeof(why))) {
			step = order_fail(run, "caa_forbids",
					  "CAA of %s (the RRset at %s) forbids CA \"%s\": %s", name,
					  at, ca, why);
		}
		json_decref(recs);
		recs = NULL;
		if (step != ORDER_STEP_DONE)
			break;
	}
	acme_resolver_free(res);
	return step;
}

/* The CA after the order's current one in its list, or NULL (borrowed). */
static const char *next_ca(const json_t *order)
{
	const json_t *cas = json_object_get(order, "cas");
	const char *ca = cp_json_str(order, "ca");
	size_t i;
	json_t *v;

	json_array_foreach(cas, i,
			   v) if (ca &&
				  !strcmp(json_string_value(v),
					  ca)) return json_string_value(json_array_get(cas, i + 1));
	return NULL;
}

/* Whether a run that ended in step (run->reason) moves on to the next CA. */
static bool moves_on(enum order_step step, const char *reason)
{
	if (step == ORDER_STEP_BACKOFF)
		return !strcmp(reason, "ca_unreachable") || !strcmp(reason, "ca_rate_limited");
	return step == ORDER_STEP_FAIL && !strcmp(reason, "caa_forbids");
}

/* Move the order to CA `to` and tell its tenant (order.ca_fallback: a
 * certificate from another CA than the first of its list matters to a
 * tenant that pins or audits its issuers), in one transaction: the event
 * exists exactly when the move does. CP_ERR_CONFLICT when the order
 * finished meanwhile. */
static cp_rc fallback_commit(struct order_run *run, const char *from, const char *to)
{
	json_t *data = order_event_base(run);
	cp_rc rc;

	if (!data)
		return CP_ERR_NOMEM;
	json_object_set_new(data, "from", json_string(from));
	json_object_set_new(data, "to", json_string(to));
	json_object_set_new(data, "reason", json_string(run->reason));
	json_object_set_new(data, "detail", json_string(run->detail));
	rc = db_begin(run->db);
	if (rc != CP_OK)
		goto out;
	rc = db_order_reset(run->db, run->id);
	if (rc == CP_OK)
		rc = order_save(run, json_pack("{s:s}", "ca", to));
	if (rc == CP_OK)
		rc = db_event_add(run->db, run->tenant_id, "order.ca_fallback", data, NULL);
	if (rc == CP_OK)
		rc = db_commit(run->db);
	else
		db_rollback(run->db);
out:
	json_decref(data);
	return rc;
}

bool order_ca_fallback(struct order_run *run, enum order_step *step)
{
	char from[64], to[64];
	const char *next;
	cp_rc rc;

	assert(run && step);
	if (!moves_on(*step, run->reason) || !(next = next_ca(run->order)))
		return false;
	snprintf(from, sizeof(from), "%s", cp_json_str(run->order, "ca"));
	snprintf(to, sizeof(to), "%s", next);
	/* The CA left behind, for the order's final detail should every CA
	 * refuse (the last one's detail names only its own record). */
	snprintf(run->fallback + strlen(run->fallback),
		 sizeof(run->fallback) - strlen(run->fallback), "%s%.60s: %.200s",
		 run->fallback[0] ? "; " : "", from, run->detail);
	cp_log_json(CP_LOG_WARN, "acme.ca_fallback",
		    json_pack("{s:s,s:s,s:s,s:s,s:s}", "order_id", run->id, "from", from, "to", to,
			      "reason", run->reason, "detail", run->detail));
	rc = fallback_commit(run, from, to);
	if (rc == CP_OK)
		rc = order_reload(run);
	if (rc == CP_ERR_CONFLICT) {
		*step = ORDER_STEP_DONE; /* finished meanwhile (canceled): stays so */
		return false;
	}
	if (rc != CP_OK) {
		*step = order_fail_db(run, rc, "moving the order to the next CA");
		return false;
	}
	run->reason[0] = run->detail[0] = '\0';
	*step = ORDER_STEP_RESET;
	return true;
}

void order_ca_fallback_detail(struct order_run *run)
{
	char d[sizeof(run->detail)];

	if (!run->fallback[0] || strcmp(run->reason, "caa_forbids"))
		return;
	snprintf(d, sizeof(d), "%s", run->detail);
	snprintf(run->detail, sizeof(run->detail), "%.300s; before: %.200s", d, run->fallback);
}
