/*
 * renew.c - the auto-renew scheduler tick. Every scheduler_interval it
 * looks at auto-renewing server certificates that production properties
 * with renew automation carry (db_renewal_candidates: backoff passed, no
 * order in flight) and starts a renewal order for each one that is due:
 *
 *   - at the certificate's stored renew_after: the lifecycle rule
 *     (lifecycle/lifecycle.h) chosen when its version was stored, the same
 *     moment the API shows as renewal.renew_after;
 *   - or, when the CA offers ACME Renewal Information (RFC 9773), a moment
 *     inside its suggested window (lifecycle_ari_at), chosen once per
 *     window and stored as renew_after in its place.
 *
 * The order's SAN is every hostname of those production deployments. The
 * hostname checks run in the order job; a failure there is reported as
 * certificate.renewal_failed and the certificate backs off (renew_backoff_
 * seconds, ±10 %). A fleet never renews in one burst: each tick starts at
 * most RENEW_PER_TICK orders and spreads their start over the interval.
 */
#include "acme/acme.h"
#include "lifecycle/lifecycle.h"
#include "server/server_internal.h"

#include <stdlib.h>
#include <string.h>

#define RENEW_PER_TICK 50
#define RENEW_SPREAD_MAX 30	  /* seconds over which one tick's orders start */
#define ARI_RECHECK_SECONDS 21600 /* ask the CA again after 6 h unless it says */
#define ARI_CACHE 1024

/* When the CA was last asked about a certificate (scheduler thread only). */
static struct {
	char id[CP_UUID_LEN + 1];
	int64_t next_check;
} ari_cache[ARI_CACHE];

static int64_t jint(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static const char *jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/*
 * ARI: if the CA suggests a window for this certificate, pick a random
 * moment in it and store it as renew_after. At most one request per
 * certificate per ARI_RECHECK_SECONDS (or the CA's Retry-After).
 */
static void ari_check(const struct api_ctx *ctx, struct db *db, const json_t *c)
{
	const char *id = jstr(c, "id"), *tenant = jstr(c, "tenant_id"), *window_s, *window_e;
	size_t h = 0;
	char *pem = NULL, *cert_id = NULL;
	json_t *info = NULL, *cert = NULL;
	struct acme_client *client = NULL;
	struct acme_result r;
	int64_t now = cp_now(), start = 0, end = 0;
	uint64_t rnd = 0;

	for (const char *p = id; *p; p++)
		h = h * 31 + (unsigned char)*p;
	h %= ARI_CACHE;
	if (strcmp(ari_cache[h].id, id) == 0 && ari_cache[h].next_check > now)
		return;
	snprintf(ari_cache[h].id, sizeof(ari_cache[h].id), "%s", id);
	ari_cache[h].next_check = now + ARI_RECHECK_SECONDS;
	memset(&r, 0, sizeof(r));
	if (server_acme_client(ctx, db, jstr(c, "auto_renew"), &client, &r) != CP_OK)
		return;
	if (db_certificate_pem(db, tenant, id, &pem) != CP_OK ||
	    acme_ari_cert_id(pem, strlen(pem), &cert_id) != CP_OK)
		goto out; /* e.g. self-signed without an AKI: the lifetime rule applies */
	if (acme_renewal_info(client, cert_id, &info, &r) != CP_OK) {
		/* Not offered (CP_ERR_NOT_FOUND) or failed: the lifetime rule
		 * stands. A transient failure (acme_classify) asks again sooner,
		 * never before the CA's Retry-After. */
		if (acme_classify(&r).outcome == ACME_OUTCOME_TRANSIENT)
			ari_cache[h].next_check = now + (r.retry_after > 0 ? r.retry_after : 600);
		goto out;
	}
	if (r.retry_after > 0)
		ari_cache[h].next_check = now + r.retry_after;
	window_s = jstr(json_object_get(info, "suggestedWindow"), "start");
	window_e = jstr(json_object_get(info, "suggestedWindow"), "end");
	if (!window_s || !window_e || cp_time_parse(window_s, &start) != CP_OK ||
	    cp_time_parse(window_e, &end) != CP_OK || end <= start)
		goto out;
	if (lifecycle_ari_kept(jint(c, "renew_after"), start, end))
		goto out; /* a moment in this window is already chosen */
	if (cp_random(&rnd, sizeof(rnd)) == CP_OK &&
	    db_certificate_get(db, tenant, id, &cert) == CP_OK) {
		json_t *ren = json_object_get(cert, "renewal");
		struct db_cert_renewal rn = {
			.renew_after = lifecycle_ari_at(start, end, now, rnd),
			.last_error = jstr(ren, "last_error"),
			.last_error_reason = jstr(ren, "last_error_reason"),
			.failure_count = (int)jint(ren, "failure_count"),
		};
		int64_t t;
		if (jstr(ren, "next_attempt_at") &&
		    cp_time_parse(jstr(ren, "next_attempt_at"), &t) == CP_OK)
			rn.next_attempt_at = t;
		if (jstr(ren, "last_attempt_at") &&
		    cp_time_parse(jstr(ren, "last_attempt_at"), &t) == CP_OK)
			rn.last_attempt_at = t;
		if (db_certificate_set_renewal(db, tenant, id, &rn) != CP_OK)
			cp_logf(CP_LOG_WARN, "renew.ari", "cannot store the ARI moment of %s", id);
	}
out:
	json_decref(cert);
	json_decref(info);
	free(cert_id);
	free(pem);
}

/* Start the renewal order of one due certificate. */
static bool start_renewal(struct db *db, const json_t *c, int64_t run_at)
{
	const char *id = jstr(c, "id"), *tenant = jstr(c, "tenant_id");
	json_t *names = NULL, *cert = NULL;
	char order_id[CP_UUID_LEN + 1];
	cp_rc rc;

	rc = db_renewal_hostnames(db, tenant, id, &names);
	if (rc != CP_OK || json_array_size(names) == 0)
		goto out;
	if (json_array_size(names) > 100) {
		/* Bound: Let's Encrypt accepts 100 names per certificate. The
		 * order fails with a clear reason instead of silently shrinking. */
		while (json_array_size(names) > 101)
			json_array_remove(names, json_array_size(names) - 1);
	}
	rc = db_begin(db);
	if (rc == CP_OK)
		rc = db_certificate_get(db, tenant, id, &cert);
	if (rc == CP_OK)
		rc = db_order_start(db, tenant, id, "renew", "http-01", names,
				    jstr(c, "auto_renew"),
				    jstr(c, "key_type") ? jstr(c, "key_type") : "ecdsa-p256",
				    json_object_get(cert, "metadata"), run_at, order_id);
	if (rc == CP_OK)
		rc = db_commit(db);
	else
		db_rollback(db);
	if (rc == CP_OK)
		cp_log_json(CP_LOG_INFO, "renew.started",
			    json_pack("{s:s,s:s,s:O,s:I}", "certificate_id", id, "order_id",
				      order_id, "hostnames", names, "run_at", (json_int_t)run_at));
	else if (rc != CP_ERR_CONFLICT)
		cp_logf(CP_LOG_WARN, "renew.start", "cannot start the renewal of %s: %s", id,
			cp_rc_str(rc));
out:
	json_decref(names);
	json_decref(cert);
	return rc == CP_OK;
}

void server_tick_renew(const struct api_ctx *ctx, struct db *db)
{
	json_t *list = NULL, *c;
	int64_t now = cp_now(), spread;
	int started = 0;
	size_t i;

	if (db_renewal_give_up_expired(db, &started) == CP_OK && started)
		cp_logf(CP_LOG_WARN, "renew.expired",
			"%d certificate(s) expired while renewal failed", started);
	started = 0;
	if (db_renewal_candidates(db, 500, &list) != CP_OK)
		return;
	spread = ctx->cfg->scheduler_interval_seconds < RENEW_SPREAD_MAX
			 ? ctx->cfg->scheduler_interval_seconds
			 : RENEW_SPREAD_MAX;
	json_array_foreach(list, i, c)
	{
		struct lifecycle_version v = {
			jint(c, "not_before"),
			jint(c, "not_after"),
			json_is_true(json_object_get(c, "ca_issued")) ? LIFECYCLE_CA
								      : LIFECYCLE_BOOTSTRAP,
		};
		int64_t due =
			lifecycle_due_at(jint(c, "renew_after"), &v, ctx->cfg->renew_before_days);
		if (now < due) {
			ari_check(ctx, db, c);
			continue;
		}
		if (started >= RENEW_PER_TICK)
			continue; /* the next tick takes the rest */
		if (start_renewal(db, c, now + (int64_t)cp_random_below((uint64_t)spread + 1)))
			started++;
	}
	if (started)
		cp_kick();
	json_decref(list);
}
