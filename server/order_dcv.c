/*
 * order_dcv.c - delegated DNS-01 in the order engine (the rules are
 * dcv/dcv.h's): when the tenant's _acme-challenge.<hostname> CNAME reaches
 * this tenant's label in dcv_zone, certplane writes the authorization's TXT
 * record at the label itself (RFC 2136 UPDATE + TSIG) instead of announcing
 * order.dns_challenge_required, and removes it once the authorization is
 * valid. Every record is noted in dcv_records before it is written and
 * forgotten only once its removal succeeded, so the cleanup tick
 * (server_tick_dcv_cleanup) removes whatever a failed or canceled order, a
 * crash or an unreachable server left behind. Names without the
 * delegation keep the webhook path of order_authz.c.
 */
#include "dcv/dcv.h"
#include "server/order_internal.h"

#include <stdlib.h>
#include <string.h>

#define DCV_CHECK_BUDGET_MS 8000 /* the delegation lookup of one authorization */
#define DCV_CLEANUP_BATCH 16	 /* records removed per tick at most */

cp_rc order_dcv_publish(struct order_run *run, json_t *a, bool *published)
{
	const struct cp_config *cfg = run->ctx->cfg;
	const char *ident = cp_json_str(a, "identifier");
	const char *value = cp_json_str(a, "txt_record_value");
	struct acme_resolver *res = NULL;
	struct dcv_record r = { 0 };
	char *detail = NULL;
	bool in_place = false;
	cp_rc rc;

	*published = false;
	if (!dcv_enabled(cfg) || !ident || !value)
		return CP_OK;
	rc = acme_resolver_new(cfg->dns_resolver, &res);
	if (rc != CP_OK)
		goto out;
	acme_resolver_set_deadline(res, cp_mono_ms() + DCV_CHECK_BUDGET_MS);
	rc = dcv_check(cfg, res, run->tenant_id, ident, &in_place, &detail);
	if (rc == CP_ERR_UPSTREAM) {
		/* Cannot tell: the webhook path decides nothing either; look
		 * again at the next run rather than announce to the tenant. */
		snprintf(run->reason, sizeof(run->reason), "dns_lookup_failed");
		snprintf(run->detail, sizeof(run->detail), "%.400s",
			 detail ? detail : "the DCV delegation lookup failed");
		goto out;
	}
	if (rc != CP_OK)
		goto out;
	rc = db_dcv_delegation_set(run->db, run->tenant_id,
				   cp_hostname_is_wildcard(ident) ? ident + 2 : ident, in_place,
				   detail);
	if (rc != CP_OK)
		goto out;
	if (!in_place)
		goto out;
	if ((rc = dcv_record_of(cfg, run->tenant_id, ident, &r)) != CP_OK)
		goto out;
	/* Journal first: a crash after the UPDATE leaves a row to clean. */
	rc = db_dcv_record_add(run->db, run->tenant_id, run->id, r.target, value);
	if (rc != CP_OK)
		goto out;
	rc = dcv_txt_add(cfg, r.target, value);
	if (rc != CP_OK) {
		snprintf(run->reason, sizeof(run->reason), "dcv_update_failed");
		snprintf(run->detail, sizeof(run->detail),
			 "the DNS UPDATE of the DCV delegation record %.200s on %.100s failed",
			 r.target, cfg->dcv_server);
		rc = CP_ERR_UPSTREAM;
		goto out;
	}
	rc = order_save_authz(run, (int)cp_json_int(a, "position"),
			      json_pack("{s:i}", "delegated", 1));
	if (rc != CP_OK)
		goto out;
	cp_log_json(CP_LOG_INFO, "dcv.published",
		    json_pack("{s:s,s:s,s:s}", "order_id", run->id, "identifier", ident, "name",
			      r.target));
	*published = true;
out:
	acme_resolver_free(res);
	dcv_record_clear(&r);
	free(detail);
	return rc;
}

/* Remove one written record and forget it; a failed removal keeps the
 * journal row for the tick. CP_OK when it is gone. */
static cp_rc dcv_remove(const struct cp_config *cfg, struct db *db, const char *tenant_id,
			const char *order_id, const char *name, const char *value)
{
	cp_rc rc = dcv_txt_delete(cfg, name, value);

	if (rc == CP_OK)
		rc = db_dcv_record_remove(db, tenant_id, order_id, name, value);
	return rc;
}

cp_rc order_dcv_release(struct order_run *run, json_t *a)
{
	const char *ident = cp_json_str(a, "identifier");
	struct dcv_record r = { 0 };
	cp_rc rc;

	if (dcv_record_of(run->ctx->cfg, run->tenant_id, ident, &r) == CP_OK &&
	    dcv_remove(run->ctx->cfg, run->db, run->tenant_id, run->id, r.target,
		       cp_json_str(a, "txt_record_value")) != CP_OK)
		cp_logf(CP_LOG_WARN, "dcv.release",
			"the DCV record of order %s stays for the cleanup tick", run->id);
	dcv_record_clear(&r);
	rc = order_save_authz(run, (int)cp_json_int(a, "position"),
			      json_pack("{s:i}", "completed", 1));
	return rc;
}

void server_tick_dcv_cleanup(const struct api_ctx *ctx, struct db *db)
{
	json_t *stale = NULL, *s;
	size_t i;
	int removed = 0;

	if (!dcv_enabled(ctx->cfg))
		return;
	if (db_dcv_records_stale(db, DCV_CLEANUP_BATCH, &stale) != CP_OK) {
		cp_logf(CP_LOG_WARN, "dcv.cleanup", "listing leftover DCV records failed");
		return;
	}
	/* A few UPDATEs of a few seconds at most each: the one exception to
	 * "a tick only writes rows", bounded by DCV_CLEANUP_BATCH. */
	json_array_foreach(stale, i, s)
	{
		if (dcv_remove(ctx->cfg, db, cp_json_str(s, "tenant_id"),
			       cp_json_str(s, "order_id"), cp_json_str(s, "name"),
			       cp_json_str(s, "value")) == CP_OK)
			removed++;
	}
	if (removed)
		cp_logf(CP_LOG_INFO, "dcv.cleanup", "removed %d leftover DCV records", removed);
	json_decref(stale);
}
