/*
 * claims.c - hostname verification: the DNS side of hostname claims (the
 * rules of what a result does are db/hostname_claims.c's).
 *
 * A claim of tenant T verifies when the hostname's CNAME chain reaches one
 * of T's edge hostnames (method "cname"), or when TXT
 * _certplane-verify.<hostname> holds the claim's token (method "txt").
 * Checks run off the API threads: a property write enqueues the durable job
 * "hostname_verify" (one per property, deduplicated); the scheduler tick
 * releases expired pending claims and enqueues the same job for claims due
 * a re-check; dns-check and the order engine record what their own lookups
 * found through server_claim_verify(). Every run has a hard DNS deadline.
 */
#include "acme/acme.h"
#include "server/server_internal.h"

#include <stdlib.h>
#include <string.h>

#define VERIFY_JOB_BUDGET_MS 20000 /* one job's DNS lookups, all hostnames together */
#define TICK_EXPIRE_LIMIT 500	   /* expired claims released per tick */
#define TICK_DUE_LIMIT 1000	   /* claims re-checked per tick */

struct db_claim_policy server_claim_policy(const struct cp_config *cfg)
{
	struct db_claim_policy p = {
		.ttl_seconds = cfg->hostname_claim_ttl_seconds > 0
				       ? cfg->hostname_claim_ttl_seconds
				       : (int64_t)cfg->hostname_claim_ttl_days * 86400,
		.recheck_seconds = cfg->hostname_recheck_seconds,
		.verified_recheck_seconds = cfg->hostname_verified_recheck_seconds,
	};
	return p;
}

cp_rc server_claims_enqueue(struct db *db, const char *tenant_id, const char *property_id)
{
	json_t *payload = json_pack("{s:s}", "property_id", property_id);
	char *key = cp_aprintf("hostname_verify:%s", property_id);
	cp_rc rc = payload && key ? db_job_enqueue(db, "hostname_verify", tenant_id, payload,
						   cp_now(), key)
				  : CP_ERR_NOMEM;

	json_decref(payload);
	free(key);
	return rc;
}

/* True if values (JSON array of strings) holds token. */
static bool txt_holds(json_t *values, const char *token)
{
	json_t *v;
	size_t i;

	json_array_foreach(values, i, v) if (json_string_value(v) &&
					     strcmp(json_string_value(v), token) == 0) return true;
	return false;
}

cp_rc server_claim_verify(const struct api_ctx *ctx, struct db *db, struct acme_resolver *res,
			  const char *tenant_id, const char *hostname, json_t *check,
			  cp_rc check_rc, const char **status, const char **method)
{
	struct db_claim_policy pol = server_claim_policy(ctx->cfg);
	struct db_claim_check chk = { .outcome = DB_CLAIM_NOT_VERIFIED };
	json_t *claim = NULL, *values = NULL;
	const char *cdetail = check ? json_string_value(json_object_get(check, "detail")) : NULL;
	const char *base = cp_hostname_is_wildcard(hostname) ? hostname + 2 : hostname;
	char *txt_name = NULL, *detail = NULL;
	cp_rc rc, trc;

	*status = NULL;
	*method = NULL;
	rc = db_claim_get(db, tenant_id, hostname, &claim);
	if (rc != CP_OK)
		goto out;
	rc = check ? db_edge_in_chain(db, tenant_id, json_object_get(check, "cname_chain"))
		   : CP_ERR_NOT_FOUND;
	if (rc == CP_OK) {
		chk.outcome = DB_CLAIM_VERIFIED;
		chk.method = "cname";
		chk.detail = cdetail;
	} else if (rc != CP_ERR_NOT_FOUND) {
		goto out;
	} else {
		txt_name = cp_aprintf("_certplane-verify.%s", base);
		if (!txt_name) {
			rc = CP_ERR_NOMEM;
			goto out;
		}
		trc = acme_dns_txt(res, txt_name, &values);
		if (trc == CP_OK &&
		    txt_holds(values, json_string_value(json_object_get(claim, "token")))) {
			chk.outcome = DB_CLAIM_VERIFIED;
			chk.method = "txt";
			detail = cp_aprintf("TXT %s holds this tenant's token", txt_name);
		} else if (trc != CP_OK || check_rc != CP_OK) {
			chk.outcome = DB_CLAIM_DNS_ERROR;
			detail = cp_aprintf("%s%s", cdetail ? cdetail : "the CNAME lookup failed",
					    trc != CP_OK ? "; the TXT lookup failed too" : "");
		} else {
			detail = cp_aprintf("%s; and TXT %s does not hold this tenant's token",
					    cdetail ? cdetail : hostname, txt_name);
		}
		chk.detail = detail;
	}
	rc = db_begin(db);
	if (rc == CP_OK)
		rc = db_claim_record(db, tenant_id, hostname, &chk, &pol, status);
	if (rc == CP_OK)
		rc = db_commit(db);
	if (rc != CP_OK)
		db_rollback(db);
	if (rc == CP_OK && chk.outcome == DB_CLAIM_VERIFIED && !strcmp(*status, "verified"))
		*method = chk.method;
out:
	json_decref(claim);
	json_decref(values);
	free(txt_name);
	free(detail);
	return rc;
}

/* Job "hostname_verify" {property_id}: check every claim of the property. */
void server_job_hostname_verify(const struct api_ctx *ctx, struct db *db, struct db_job *job,
				struct server_job_outcome *out)
{
	const char *pid = json_string_value(json_object_get(job->payload, "property_id"));
	struct acme_resolver *res = NULL;
	json_t *claims = NULL, *c;
	size_t i;
	cp_rc rc;

	out->result = SERVER_JOB_DONE;
	if (!pid)
		return;
	rc = db_claims_of_property(db, job->tenant_id, pid, &claims);
	if (rc == CP_ERR_NOT_FOUND)
		return; /* the property is gone */
	if (rc == CP_OK && acme_resolver_new(ctx->cfg->dns_resolver, &res) != CP_OK)
		rc = CP_ERR_INVALID;
	if (rc != CP_OK)
		goto out;
	acme_resolver_set_deadline(res, cp_mono_ms() + VERIFY_JOB_BUDGET_MS);
	json_array_foreach(claims, i, c)
	{
		const char *name = json_string_value(json_object_get(c, "hostname"));
		const char *status, *method;
		json_t *claim = NULL, *check = NULL;
		cp_rc crc;

		rc = db_claim_get(db, job->tenant_id, name, &claim);
		if (rc == CP_ERR_NOT_FOUND) {
			rc = CP_OK; /* removed meanwhile */
			continue;
		}
		if (rc != CP_OK)
			break;
		crc = acme_check_hostname(
			res, name, json_string_value(json_object_get(claim, "edge_hostname")),
			&check);
		json_decref(claim);
		rc = server_claim_verify(ctx, db, res, job->tenant_id, name, check, crc, &status,
					 &method);
		json_decref(check);
		if (rc == CP_ERR_NOT_FOUND)
			rc = CP_OK;
		if (rc != CP_OK)
			break;
	}
out:
	if (rc != CP_OK) {
		out->result = SERVER_JOB_RETRY;
		out->run_at = cp_now() + 30;
		snprintf(out->error, sizeof(out->error), "hostname verification: %s",
			 cp_rc_str(rc));
	}
	acme_resolver_free(res);
	json_decref(claims);
}

void server_tick_hostname_claims(const struct api_ctx *ctx, struct db *db)
{
	struct db_claim_policy pol = server_claim_policy(ctx->cfg);
	json_t *due = NULL, *d;
	int removed = 0, queued = 0;
	size_t i;

	if (db_claims_expire(db, TICK_EXPIRE_LIMIT, &removed) != CP_OK)
		cp_logf(CP_LOG_WARN, "claims.expire", "releasing expired hostname claims failed");
	else if (removed)
		cp_logf(CP_LOG_INFO, "claims.expire", "released %d expired hostname claims",
			removed);
	/* The lease: a claim picked now is picked again only if its job never
	 * recorded a result by then. */
	if (db_claims_due(db, TICK_DUE_LIMIT, pol.recheck_seconds, &due) != CP_OK) {
		cp_logf(CP_LOG_WARN, "claims.due", "listing hostname claims due failed");
		return;
	}
	json_array_foreach(due, i, d)
	{
		if (server_claims_enqueue(db, json_string_value(json_object_get(d, "tenant_id")),
					  json_string_value(json_object_get(d, "property_id"))) ==
		    CP_OK)
			queued++;
	}
	json_decref(due);
	if (queued)
		cp_kick();
}
