/*
 * edge_check.c - the job kind "edge_check" {property_id}: does the edge
 * serve what production deployed? For each production hostname of the
 * property, one TLS handshake with SNI at edge_check_address
 * (crypto_tls_probe), comparing the leaf's SHA-256 with the fingerprint of
 * the version the deployment serves. db/edge.c queues the job whenever the
 * feed gives a hostname a new version (a deployment or a renewal), so this
 * runs after each of them.
 *
 * The edge needs a moment (edge-sync follows the feed, then reloads): a
 * mismatch is retried EDGE_CHECK_ATTEMPTS times, 1, 2, 4, 8 s apart, before
 * it is declared. The outcome is recorded per hostname on the property
 * (`served`: fingerprint, matches, checked_at) and announced with one event,
 * deployment.verified (every hostname matches) or deployment.mismatch,
 * in the same transaction. Wildcard names cannot be asked for by SNI and
 * are not checked.
 */
#include "crypto/crypto.h"
#include "server/server_internal.h"

#include <stdio.h>
#include <string.h>

#define EDGE_CHECK_ATTEMPTS 5
#define EDGE_CHECK_TIMEOUT_MS 3000 /* connect, then handshake, per hostname */
/* All handshakes of one job together, well inside the shortest job lease
 * (12 s): hostnames left when it is spent count as not served. */
#define EDGE_CHECK_BUDGET_MS 8000

/* Probe every hostname of exp; results[] gets {hostname, fingerprint,
 * matches, error?}; *all true when each one matched. */
static cp_rc probe_all(const char *address, const struct db_edge_expected *exp, json_t *results,
		       bool *all)
{
	size_t i;
	int64_t deadline = cp_mono_ms() + EDGE_CHECK_BUDGET_MS;
	json_t *h;

	*all = true;
	json_array_foreach(exp->hostnames, i, h)
	{
		const char *name = json_string_value(h);
		int64_t left = deadline - cp_mono_ms();
		char fp[65], why[256];
		bool match;
		cp_rc rc;

		if (!name || name[0] == '*')
			continue;
		if (left < 100) {
			rc = CP_ERR_UPSTREAM;
			snprintf(why, sizeof(why), "not checked: the check's time budget ran out");
		} else {
			rc = crypto_tls_probe(address, name,
					      left < EDGE_CHECK_TIMEOUT_MS ? (int)left
									   : EDGE_CHECK_TIMEOUT_MS,
					      fp, why, sizeof(why));
		}
		if (rc == CP_ERR_INVALID)
			return rc;
		match = rc == CP_OK && strcmp(fp, exp->fingerprint) == 0;
		*all = *all && match;
		if (json_array_append_new(
			    results, json_pack("{s:s,s:s?,s:b,s:s?}", "hostname", name,
					       "fingerprint", rc == CP_OK ? fp : NULL, "matches",
					       match, "error", rc == CP_OK ? NULL : why)) != 0)
			return CP_ERR_NOMEM;
	}
	return CP_OK;
}

/* Record results on the property and announce them, in one transaction. */
static cp_rc record(struct db *db, const char *tenant_id, const char *property_id,
		    const struct db_edge_expected *exp, json_t *results, bool all)
{
	json_t *data = NULL, *r;
	size_t i;
	cp_rc rc = db_begin(db);

	json_array_foreach(results, i, r)
	{
		if (rc == CP_OK)
			rc = db_edge_served_set(
				db, tenant_id, property_id,
				json_string_value(json_object_get(r, "hostname")),
				json_string_value(json_object_get(r, "fingerprint")),
				json_is_true(json_object_get(r, "matches")));
	}
	if (rc == CP_OK) {
		data = json_pack("{s:s,s:s,s:i,s:s,s:O}", "property_id", property_id,
				 "certificate_id", exp->certificate_id, "version", exp->version,
				 "fingerprint", exp->fingerprint, "hostnames", results);
		rc = data ? db_event_add(db, tenant_id,
					 all ? "deployment.verified" : "deployment.mismatch", data,
					 NULL)
			  : CP_ERR_NOMEM;
	}
	if (rc == CP_OK)
		rc = db_commit(db);
	else
		db_rollback(db);
	json_decref(data);
	return rc;
}

void server_job_edge_check(const struct api_ctx *ctx, struct db *db, struct db_job *job,
			   struct server_job_outcome *out)
{
	const char *pid = json_string_value(json_object_get(job->payload, "property_id"));
	const char *address = ctx->cfg->edge_check_address;
	struct db_edge_expected exp = { 0 };
	json_t *results = NULL;
	bool all = false;
	cp_rc rc;

	out->result = SERVER_JOB_DONE;
	if (!pid || !address || !address[0])
		return; /* the check is off */
	rc = db_edge_expected(db, job->tenant_id, pid, &exp);
	if (rc == CP_ERR_NOT_FOUND)
		return; /* gone, or nothing to serve */
	results = json_array();
	if (rc == CP_OK)
		rc = results ? probe_all(address, &exp, results, &all) : CP_ERR_NOMEM;
	if (rc == CP_OK && json_array_size(results) == 0)
		goto out; /* only wildcards */
	if (rc == CP_OK && !all && job->attempts < EDGE_CHECK_ATTEMPTS) {
		out->result = SERVER_JOB_RETRY;
		out->run_at = cp_now() + (1 << (job->attempts - 1));
		snprintf(out->error, sizeof(out->error),
			 "the edge does not serve version %d yet (attempt %d of %d)", exp.version,
			 job->attempts, EDGE_CHECK_ATTEMPTS);
		goto out;
	}
	if (rc == CP_OK)
		rc = record(db, job->tenant_id, pid, &exp, results, all);
	if (rc == CP_OK && !all)
		cp_log_json(CP_LOG_WARN, "edge.mismatch",
			    json_pack("{s:s,s:s,s:i}", "property_id", pid, "certificate_id",
				      exp.certificate_id, "version", exp.version));
	if (rc == CP_ERR_INVALID) {
		out->result = SERVER_JOB_FAIL;
		snprintf(out->error, sizeof(out->error), "edge_check_address is not host:port");
	} else if (rc != CP_OK) {
		out->result = SERVER_JOB_RETRY;
		out->run_at = cp_now() + 5;
		snprintf(out->error, sizeof(out->error), "edge check: %s", cp_rc_str(rc));
	}
out:
	json_decref(results);
	json_decref(exp.hostnames);
}
