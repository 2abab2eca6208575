/*
 * order_failure.c - the failures of an order run: classify them (database,
 * key, CA) into the step they lead to, record a permanent one (order
 * failed, events, the certificate's next attempt), or store the backoff of
 * a transient one.
 */
#include "acme/acme.h"
#include "server/order_internal.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define BACKOFF_MAX_SECONDS 600 /* transient CA failures: 2 s doubling up to this */

enum order_step order_fail(struct order_run *run, const char *reason, const char *fmt, ...)
{
	va_list ap;

	snprintf(run->reason, sizeof(run->reason), "%s", reason);
	va_start(ap, fmt);
	vsnprintf(run->detail, sizeof(run->detail), fmt, ap);
	va_end(ap);
	return ORDER_STEP_FAIL;
}

/* Classify a failed database call of the run (rc != CP_OK). Only
 * CP_ERR_NOT_FOUND means the order is gone (deleted with its tenant); any
 * other error (busy, I/O, out of memory, a failed statement) says nothing
 * about the order, so the job runs again later with backoff and the order
 * keeps its state: a database hiccup never fails or drops an order. */
enum order_step order_fail_db(struct order_run *run, cp_rc rc, const char *what)
{
	assert(rc != CP_OK);
	if (rc == CP_ERR_NOT_FOUND)
		return ORDER_STEP_GONE;
	snprintf(run->reason, sizeof(run->reason), "internal");
	snprintf(run->detail, sizeof(run->detail), "database error %.200s: %s", what,
		 cp_rc_str(rc));
	return ORDER_STEP_BACKOFF;
}

/* order_get_key() failed: a key that does not open (or cannot be built) is
 * the order's problem; a database error storing it is transient. */
enum order_step order_fail_key(struct order_run *run, cp_rc rc, const char *what)
{
	if (rc == CP_ERR_CRYPTO || rc == CP_ERR_INVALID)
		return order_fail(run, "internal", "%s: %s", what, cp_rc_str(rc));
	return order_fail_db(run, rc, what);
}

/*
 * A failed CA exchange (rc != CP_OK, run->r filled) as the step it leads
 * to, by acme_classify()'s table (the one place that decides): transient ->
 * ORDER_STEP_BACKOFF (the order keeps its state; its deadline bounds the
 * retries), reset -> ORDER_STEP_RESET, definitive -> ORDER_STEP_FAIL. run->reason and
 * run->detail say what, run->retry_after what the CA asked for.
 */
enum order_step order_fail_ca(struct order_run *run, cp_rc rc, const char *what)
{
	struct acme_verdict v = acme_classify(&run->r);
	const char *reason = v.reason ? v.reason : "internal";

	snprintf(run->reason, sizeof(run->reason), "%s", reason);
	snprintf(run->detail, sizeof(run->detail), "%.40s: %.360s%s%.100s", what,
		 run->r.detail[0] ? run->r.detail : cp_rc_str(rc), run->r.type[0] ? " " : "",
		 run->r.type);
	run->retry_after = run->r.retry_after;
	switch (v.outcome) {
	case ACME_OUTCOME_DEFINITIVE:
		return ORDER_STEP_FAIL;
	case ACME_OUTCOME_RESET:
		return ORDER_STEP_RESET;
	case ACME_OUTCOME_TRANSIENT:
	case ACME_OUTCOME_OK: /* rc said failure without a CA outcome: ours */
	default:
		return ORDER_STEP_BACKOFF;
	}
}

/* ---- outcomes ---- */

/* Renewal retry delay after failure number n (1-based), ±10 % jitter. */
int64_t server_renew_backoff(const struct cp_config *cfg, int n)
{
	int64_t sched[CP_SCHEDULE_MAX], d;
	size_t cnt = 0;

	if (cp_config_schedule(cfg->renew_backoff_seconds, sched, CP_SCHEDULE_MAX, &cnt) != CP_OK ||
	    cnt == 0) {
		sched[0] = 60;
		cnt = 1;
	}
	if (n < 1)
		n = 1;
	d = sched[(size_t)n - 1 < cnt ? (size_t)n - 1 : cnt - 1];
	if (d >= 10)
		d = d - d / 10 + (int64_t)cp_random_below((uint64_t)(d / 5) + 1);
	return d;
}

/* Commit a failure: order failed, events, certificate state. */
cp_rc order_record_failure(struct order_run *run)
{
	const char *cert_id = cp_json_str(run->order, "certificate_id");
	bool renew = !strcmp(cp_json_str(run->order, "kind"), "renew");
	json_t *data = order_event_base(run), *cert = NULL, *rdata = NULL;
	cp_rc rc;

	if (!data)
		return CP_ERR_NOMEM;
	json_object_set_new(data, "reason", json_string(run->reason));
	json_object_set_new(data, "detail", json_string(run->detail));
	json_object_set_new(data, "identifiers",
			    json_deep_copy(json_object_get(run->order, "identifiers")));
	rc = db_begin(run->db);
	if (rc == CP_OK)
		rc = order_save(run,
				json_pack("{s:s,s:s,s:s,s:I,s:n}", "status", "failed",
					  "error_reason", run->reason, "error_detail", run->detail,
					  "completed_at", (json_int_t)cp_now(), "next_attempt_at"));
	if (rc == CP_OK)
		rc = db_event_add(run->db, run->tenant_id, "order.failed", data, NULL);
	if (rc == CP_OK) {
		rc = db_certificate_get(run->db, run->tenant_id, cert_id, &cert);
		if (rc == CP_ERR_NOT_FOUND)
			rc = CP_OK; /* deleted meanwhile: only the order remains */
	}
	if (rc == CP_OK && cert) {
		json_t *ren = json_object_get(cert, "renewal");
		struct db_cert_renewal r = { .last_attempt_at = cp_now(),
					     .last_error = run->detail,
					     .last_error_reason = run->reason };
		int64_t t = 0;
		if (cp_json_str(ren, "renew_after") &&
		    cp_time_parse(cp_json_str(ren, "renew_after"), &t) == CP_OK)
			r.renew_after = t;
		r.failure_count = (int)cp_json_int(ren, "failure_count") + 1;
		r.next_attempt_at = cp_now() + server_renew_backoff(run->ctx->cfg, r.failure_count);
		rc = db_certificate_set_renewal(run->db, run->tenant_id, cert_id, &r);
		if (rc == CP_OK)
			rc = db_certificate_set_status(run->db, run->tenant_id, cert_id,
						       cp_json_int(cert, "version") > 0 ? "active"
											: "failed");
		if (rc == CP_OK && renew) {
			char next[CP_TIME_LEN + 1];
			cp_time_fmt(r.next_attempt_at, next);
			rdata = json_deep_copy(data);
			json_object_set_new(rdata, "failure_count", json_integer(r.failure_count));
			json_object_set_new(rdata, "next_attempt_at", json_string(next));
			rc = rdata ? db_event_add(run->db, run->tenant_id,
						  "certificate.renewal_failed", rdata, NULL)
				   : CP_ERR_NOMEM;
		}
	}
	if (rc == CP_OK)
		rc = db_commit(run->db);
	else
		db_rollback(run->db);
	cp_log_json(CP_LOG_WARN, "acme.order_failed",
		    json_pack("{s:s,s:s,s:s,s:s}", "order_id", run->id, "certificate_id", cert_id,
			      "reason", run->reason, "detail", run->detail));
	json_decref(data);
	json_decref(rdata);
	json_decref(cert);
	return rc;
}

/*
 * A transient failure: count it and store when we try again (2 s doubling
 * to BACKOFF_MAX_SECONDS, jittered to [d/2, d], never before the CA's
 * Retry-After). The order's own deadline (created_at + order_deadline_hours)
 * bounds the retries in time, not in attempts: the last try is at the
 * deadline, and a Retry-After beyond it ends the order now. Returns true and
 * *run_at when the order goes on; false when its deadline has passed - then
 * run->detail says so, run->reason keeps the transient reason
 * (ca_unreachable, ca_rate_limited, ...) and the caller records the failure.
 */
bool order_record_backoff(struct order_run *run, int64_t *run_at)
{
	int attempts = (int)cp_json_int(run->order, "attempts") + 1;
	int64_t d = 2, now = cp_now();
	int64_t deadline = cp_json_int(run->order, "created_at") +
			   (int64_t)run->ctx->cfg->order_deadline_hours * 3600;
	char last[sizeof(run->detail)];

	if (!run->reason[0]) /* a busy database, say: ours, not the CA's */
		snprintf(run->reason, sizeof(run->reason), "internal");
	for (int i = 1; i < attempts && d < BACKOFF_MAX_SECONDS; i++)
		d *= 2;
	if (d > BACKOFF_MAX_SECONDS)
		d = BACKOFF_MAX_SECONDS;
	d = d / 2 + (int64_t)cp_random_below((uint64_t)d / 2 + 1); /* jitter: [d/2, d] */
	if (run->retry_after > d)
		d = run->retry_after;
	if (now >= deadline || (run->retry_after > 0 && now + run->retry_after > deadline)) {
		snprintf(last, sizeof(last), "%s", run->detail);
		snprintf(run->detail, sizeof(run->detail),
			 "the CA kept failing for %d h (order_deadline_hours), %d attempts; last: "
			 "%.400s",
			 run->ctx->cfg->order_deadline_hours, attempts, last);
		return false;
	}
	if (now + d > deadline)
		d = deadline - now;
	(void)order_save(run, json_pack("{s:i,s:I,s:s,s:s}", "attempts", attempts,
					"next_attempt_at", (json_int_t)(now + d), "error_reason",
					run->reason, "error_detail", run->detail));
	cp_log_json(CP_LOG_WARN, "acme.order_backoff",
		    json_pack("{s:s,s:i,s:I,s:s,s:s}", "order_id", run->id, "attempts", attempts,
			      "retry_in", (json_int_t)d, "reason", run->reason, "detail",
			      run->detail));
	*run_at = now + d;
	return true;
}
