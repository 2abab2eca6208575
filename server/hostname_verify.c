/*
 * hostname_verify.c - the job kind "hostname_verify": re-check every claim
 * of one property (claims/claims.c does the DNS and the recording), with
 * one DNS budget for the whole job.
 */
#include "acme/acme.h"
#include "claims/claims.h"
#include "server/server_internal.h"

#include <stdio.h>

#define VERIFY_JOB_BUDGET_MS 20000 /* one job's DNS lookups, all hostnames together */

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
		rc = claims_verify(ctx->cfg, db, res, job->tenant_id, name, check, crc, &status,
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
