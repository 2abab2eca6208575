/*
 * claims.c - hostname verification: the DNS side of hostname claims (the
 * rules of what a result does are db/hostname_claims.c's). Shared by the
 * API (property writes, dns-check) and the engine (server/: the
 * "hostname_verify" job in server/hostname_verify.c, the re-check tick in
 * server/ticks.c, the order engine), so that neither includes the other.
 *
 * A claim of tenant T verifies when the hostname's CNAME chain reaches one
 * of T's edge hostnames (method "cname"), when T's DCV delegation of the
 * hostname is in place (dcv/dcv.h: _acme-challenge.<hostname> reaches T's
 * label; stored as method "cname" too, the schema's two methods, with a
 * detail that names the delegation), or when TXT
 * _certplane-verify.<hostname> holds the claim's token (method "txt").
 * Checks run off the API threads: a property write enqueues the durable job
 * "hostname_verify" (one per property, deduplicated); the scheduler tick
 * releases expired pending claims and enqueues the same job for claims due
 * a re-check; dns-check and the order engine record what their own lookups
 * found through claims_verify(). Every run has a hard DNS deadline.
 */
#include "claims/claims.h"
#include "acme/acme.h"
#include "dcv/dcv.h"

#include <stdlib.h>
#include <string.h>

struct db_claim_policy claims_policy(const struct cp_config *cfg)
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

cp_rc claims_enqueue(struct db *db, const char *tenant_id, const char *property_id)
{
	json_t *payload = json_pack("{s:s}", "property_id", property_id);
	char *key = cp_aprintf("hostname_verify:%s", property_id);
	cp_rc rc = payload && key
			   ? db_job_enqueue(db, CLAIMS_JOB_KIND, tenant_id, payload, cp_now(), key)
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

/*
 * The DCV delegation as proof: when the feature is on, check tenant_id's
 * delegation of base (hostname without "*.") through res, record the
 * outcome (db_dcv_delegation_set, what the API shows), and when it is in
 * place set chk verified with *detail a new sentence (caller frees). A
 * failed lookup proves nothing (CP_OK, chk untouched). Database errors.
 */
static cp_rc delegation_verify(const struct cp_config *cfg, struct db *db,
			       struct acme_resolver *res, const char *tenant_id, const char *base,
			       struct db_claim_check *chk, char **detail)
{
	char *found = NULL;
	bool in_place = false;
	cp_rc rc;

	if (!dcv_enabled(cfg) || !res)
		return CP_OK;
	rc = dcv_check(cfg, res, tenant_id, base, &in_place, &found);
	if (rc == CP_ERR_UPSTREAM || rc == CP_ERR_INVALID) {
		free(found);
		return CP_OK;
	}
	if (rc == CP_OK)
		rc = db_dcv_delegation_set(db, tenant_id, base, in_place, found);
	if (rc == CP_OK && in_place) {
		chk->outcome = DB_CLAIM_VERIFIED;
		chk->method = "cname";
		*detail = cp_aprintf("the DCV delegation is in place: %s", found ? found : base);
		chk->detail = *detail;
		rc = *detail ? CP_OK : CP_ERR_NOMEM;
	}
	free(found);
	return rc;
}

cp_rc claims_verify(const struct cp_config *cfg, struct db *db, struct acme_resolver *res,
		    const char *tenant_id, const char *hostname, json_t *check, cp_rc check_rc,
		    const char **status, const char **method)
{
	struct db_claim_policy pol = claims_policy(cfg);
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
	} else if ((rc = delegation_verify(cfg, db, res, tenant_id, base, &chk, &detail)) !=
		   CP_OK) {
		goto out;
	} else if (chk.outcome != DB_CLAIM_VERIFIED) {
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
