/*
 * renew.c - the auto-renew scheduler tick. Each tick reads the certificates
 * whose stored next_attention_at has come (db_renewal_attention: one index
 * range scan, migration 008, whatever the number of certificates that are
 * not due), re-checks each one by id (db_renewal_candidate: backoff passed,
 * no order in flight, carried by a production property with renew
 * automation, not expired) and starts a renewal order when it is due:
 *
 *   - at the certificate's stored renew_after: the lifecycle rule
 *     (lifecycle/lifecycle.h) chosen when its version was stored, the same
 *     moment the API shows as renewal.renew_after;
 *   - or, when the CA offers ACME Renewal Information (RFC 9773), a moment
 *     inside its suggested window (lifecycle_ari_at), chosen once per
 *     window and stored as renew_after in its place. The CA is asked about
 *     certificates coming due within renew_before_days, a bounded batch
 *     per tick taken in turn (a cursor over next_attention_at).
 *
 * The order is built from the certificate's renewal plan (lifecycle_plan,
 * api_renewal_plan_load): the previous version's SAN set while the carried
 * hostnames are that set (so the CA counts it as a renewal), the carried
 * hostnames when a production property gained or lost one (migration 011
 * makes such a certificate due at once: a re-order, not a wait for the
 * window), and the certificate's CA, challenge and key type. Each
 * certificate is re-checked, planned and started or deferred in one
 * transaction (renew_one). The hostname checks run in the order job; a failure there is reported as
 * certificate.renewal_failed and the certificate backs off (renew_backoff_
 * seconds, ±10 %). No fixed number of orders per tick: each CA has an order
 * budget (sched/sched.h; ca_orders_per_hour and ca_order_burst, per CA in
 * cas.<name>, Let's Encrypt's directories a lower default), and each order
 * starts at its own slot of that budget with jitter, so a fleet that comes
 * due at once reaches the CA at its rate. A certificate the budget refuses
 * is deferred to the slot it can have. While due work remains the
 * scheduler ticks again within a second (server_renew_backlog).
 */
#include "acme/acme.h"
#include "lifecycle/lifecycle.h"
#include "sched/sched.h"
#include "server/server_internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define RENEW_SCAN 500		  /* due certificates read per tick */
#define ARI_SCAN 50		  /* upcoming certificates asked about per tick */
#define BUDGET_CAS 64		  /* CAs with a budget of their own */
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
	/* Read-modify-write of the renewal state in one transaction, so that a
	 * renewal finishing meanwhile (a new version, a failure) is not undone
	 * with the fields read before it. */
	if (cp_random(&rnd, sizeof(rnd)) != CP_OK || db_begin(db) != CP_OK)
		goto out;
	if (db_certificate_get(db, tenant, id, &cert) == CP_OK) {
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
		if (db_certificate_set_renewal(db, tenant, id, &rn) == CP_OK &&
		    db_commit(db) == CP_OK)
			goto out;
		cp_logf(CP_LOG_WARN, "renew.ari", "cannot store the ARI moment of %s", id);
	}
	db_rollback(db);
out:
	json_decref(cert);
	json_decref(info);
	free(cert_id);
	free(pem);
}

/* Start the renewal order of c (a candidate, re-read in the caller's
 * transaction) from its plan: CP_OK (order id in order_id), CP_ERR_NOT_FOUND
 * when the plan has no name to order, or another error. Call inside the
 * transaction that read c. */
static cp_rc start_renewal(struct db *db, const json_t *c, const json_t *cert,
			   const struct api_renewal_plan *p, int64_t run_at,
			   char order_id[CP_UUID_LEN + 1])
{
	if (json_array_size(p->sans) == 0)
		return CP_ERR_NOT_FOUND;
	/* The plan keeps the certificate's CA, challenge and key type; its
	 * SANs are the previous version's (a renewal at the CA) unless the
	 * carried hostnames changed (then the new set: a re-order). An
	 * oversized set reaches the CA and fails there with its reason. */
	return db_order_start(db, jstr(c, "tenant_id"), jstr(c, "id"), "renew", p->plan->challenge,
			      p->sans, p->plan->ca, p->plan->key_type,
			      json_object_get(cert, "metadata"), run_at, order_id);
}

/* Each CA's order budget (scheduler thread only). */
static struct {
	char ca[64];
	struct sched_budget b;
} budgets[BUDGET_CAS];
static atomic_bool renew_backlog;
static int64_t ari_cursor; /* next_attention_at the ARI batch resumes after */

/* The budget of ca: cas.<ca>.orders_per_hour / order_burst when set, else
 * Let's Encrypt's safe default for its directories, else the global keys. */
static struct sched_budget *ca_budget(const struct cp_config *cfg, struct db *db, const char *ca,
				      int *per_hour, int *burst)
{
	int64_t last = 0;
	const json_t *entry = json_object_get(cfg->cas, ca);
	const char *dir = NULL, *bundle = NULL;
	size_t i;

	*per_hour = cfg->ca_orders_per_hour;
	*burst = cfg->ca_order_burst;
	if (server_acme_ca(cfg, ca, &dir, &bundle) == CP_OK && sched_is_letsencrypt(dir)) {
		*per_hour = SCHED_LE_ORDERS_PER_HOUR;
		*burst = SCHED_LE_ORDER_BURST;
	}
	if (json_integer_value(json_object_get(entry, "orders_per_hour")) >= 1)
		*per_hour = (int)json_integer_value(json_object_get(entry, "orders_per_hour"));
	if (json_integer_value(json_object_get(entry, "order_burst")) >= 1)
		*burst = (int)json_integer_value(json_object_get(entry, "order_burst"));
	if (*per_hour > 3600000)
		*per_hour = 3600000;
	/* this instance's share: every instance renews (issue 11) */
	{
		int live = server_instances_live();
		*per_hour = *per_hour / live > 0 ? *per_hour / live : 1;
		*burst = *burst / live > 0 ? *burst / live : 1;
	}
	for (i = 0; i < BUDGET_CAS - 1 && budgets[i].ca[0]; i++)
		if (strcmp(budgets[i].ca, ca) == 0)
			return &budgets[i].b;
	/* A new CA takes a free entry; past BUDGET_CAS the rest share the
	 * last one (stricter, never looser). */
	if (!budgets[i].ca[0]) {
		snprintf(budgets[i].ca, sizeof(budgets[i].ca), "%s", ca);
		/* After a restart, resume after the orders already scheduled,
		 * so that they and the new ones never double the rate. */
		if (db_renewal_last_run_at(db, ca, &last) == CP_OK && last > 0)
			budgets[i].b.tat_ms = (last + 1) * 1000;
	}
	return &budgets[i].b;
}

enum renew_outcome { RENEW_STARTED, RENEW_LATER, RENEW_ERROR };

/*
 * One certificate the attention scan gave, read, decided and written in one
 * transaction (the renewal read-modify-write): re-check it
 * (db_renewal_candidate), build its plan (api_renewal_plan_load), and start
 * its order when it is due and its CA's budget has a slot, or move its
 * next_attention_at to when to look again. A renewal finishing, an order
 * started by the API or a deployment changing meanwhile is seen or waits
 * for the commit: no decision on stale facts. *deferred counts refusals of
 * this tick (spreads the deferred slots).
 */
static enum renew_outcome renew_one(const struct api_ctx *ctx, struct db *db, const char *id,
				    int64_t now, int *deferred)
{
	struct api_renewal_plan p = { 0 };
	json_t *c = NULL, *cert = NULL;
	char order_id[CP_UUID_LEN + 1];
	enum renew_outcome outcome = RENEW_ERROR;
	enum lifecycle_why why = LIFECYCLE_WHY_LIFETIME;
	int64_t due, at_ms = 0, later = 0;
	struct sched_budget *b;
	int per_hour, burst;
	uint64_t rnd = 0;
	cp_rc rc;

	if (db_begin(db) != CP_OK)
		return RENEW_ERROR;
	rc = db_renewal_candidate(db, id, &c);
	if (rc == CP_ERR_NOT_FOUND) {
		/* Stale (expired meanwhile, or a change that will recompute
		 * it): nothing to do until something changes. */
		rc = db_renewal_defer(db, id, 0);
		outcome = RENEW_LATER;
		goto out;
	}
	if (rc == CP_OK)
		rc = db_certificate_get(db, jstr(c, "tenant_id"), id, &cert);
	if (rc == CP_OK)
		rc = api_renewal_plan_load(db, jstr(c, "tenant_id"), cert, jstr(c, "key_type"),
					   true, &p);
	if (rc != CP_OK)
		goto out;
	struct lifecycle_version v = {
		jint(c, "not_before"),
		jint(c, "not_after"),
		json_is_true(json_object_get(c, "ca_issued")) ? LIFECYCLE_CA : LIFECYCLE_BOOTSTRAP,
	};
	/* The candidate's backoff has passed: only the plan's moment counts. */
	due = lifecycle_next_renewal(jint(c, "renew_after"), 0, &v, ctx->cfg->renew_before_days,
				     p.plan->san_changed, now, &why);
	outcome = RENEW_LATER;
	if (now < due) {
		later = due; /* a row stored without renew_after */
	} else {
		b = ca_budget(ctx->cfg, db, jstr(c, "auto_renew"), &per_hour, &burst);
		if (cp_random(&rnd, sizeof(rnd)) != CP_OK)
			rnd = 0; /* no jitter rather than no renewal */
		if (!sched_budget_take(b, now * 1000, per_hour, burst, rnd, &at_ms)) {
			/* Refused: defer to the slots after the free one, in
			 * order, so the head of the scan is never clogged. */
			later = at_ms / 1000 + 1 +
				(int64_t)(*deferred)++ * sched_slot_ms(per_hour) / 1000;
		} else if ((rc = start_renewal(db, c, cert, &p, at_ms / 1000, order_id)) == CP_OK) {
			outcome = RENEW_STARTED;
		} else if (rc == CP_ERR_NOT_FOUND || rc == CP_ERR_CONFLICT) {
			/* No hostname to order (look again later, not on every
			 * tick), or an order in flight (its end recomputes). */
			if (rc == CP_ERR_NOT_FOUND)
				later = now + ctx->cfg->scheduler_interval_seconds;
			rc = CP_OK;
		}
	}
	if (rc == CP_OK && later)
		rc = db_renewal_defer(db, id, later);
out:
	if (rc == CP_OK)
		rc = db_commit(db);
	else
		db_rollback(db);
	if (rc != CP_OK)
		outcome = RENEW_ERROR;
	if (outcome == RENEW_STARTED) /* committed */
		cp_log_json(CP_LOG_INFO, "renew.started",
			    json_pack("{s:s,s:s,s:O,s:s,s:I}", "certificate_id", id, "order_id",
				      order_id, "hostnames", p.sans, "reason",
				      lifecycle_why_name(why), "run_at",
				      (json_int_t)(at_ms / 1000)));
	api_renewal_plan_free(&p);
	json_decref(cert);
	json_decref(c);
	return outcome;
}

bool server_renew_backlog(void)
{
	return atomic_load(&renew_backlog);
}

/* Ask the CA about certificates coming due (ARI), a batch per tick. */
static void tick_ari(const struct api_ctx *ctx, struct db *db, int64_t now)
{
	json_t *list = NULL, *row, *c = NULL;
	size_t i;

	if (ari_cursor < now)
		ari_cursor = now;
	if (db_renewal_attention(db, ari_cursor, now + (int64_t)ctx->cfg->renew_before_days * 86400,
				 ARI_SCAN, &list) != CP_OK)
		return;
	json_array_foreach(list, i, row)
	{
		ari_cursor = jint(row, "at");
		if (db_renewal_candidate(db, jstr(row, "id"), &c) == CP_OK)
			ari_check(ctx, db, c);
		json_decref(c);
		c = NULL;
	}
	if (json_array_size(list) < ARI_SCAN)
		ari_cursor = now; /* the end of the horizon: start again */
	json_decref(list);
}

void server_tick_renew(const struct api_ctx *ctx, struct db *db)
{
	json_t *list = NULL, *row;
	int64_t now = cp_now();
	int started = 0, deferred = 0;
	size_t i;

	if (db_renewal_give_up_expired(db, &started) == CP_OK && started)
		cp_logf(CP_LOG_WARN, "renew.expired",
			"%d certificate(s) expired while renewal failed", started);
	started = 0;
	atomic_store(&renew_backlog, false);
	if (db_renewal_attention(db, INT64_MIN, now, RENEW_SCAN, &list) != CP_OK)
		return;
	json_array_foreach(list, i, row)
	{
		switch (renew_one(ctx, db, jstr(row, "id"), now, &deferred)) {
		case RENEW_STARTED:
			started++;
			break;
		case RENEW_ERROR:
			/* Rolled back: look again next interval, not on every tick. */
			cp_logf(CP_LOG_WARN, "renew.start", "cannot renew %s", jstr(row, "id"));
			if (db_renewal_defer(db, jstr(row, "id"),
					     now + ctx->cfg->scheduler_interval_seconds) != CP_OK)
				cp_logf(CP_LOG_WARN, "renew.defer", "cannot defer %s",
					jstr(row, "id"));
			break;
		case RENEW_LATER:
			break;
		}
	}
	/* Every row read left the due range (an order in flight, deferred or
	 * nothing to do), so a full batch means more may be waiting. */
	if (json_array_size(list) == RENEW_SCAN)
		atomic_store(&renew_backlog, true);
	if (started)
		cp_kick();
	json_decref(list);
	tick_ari(ctx, db, now);
}
