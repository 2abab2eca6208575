/*
 * ticks.c - the scheduler's periodic tasks outside the ACME engine:
 * certificate expiry reminders, hostname-claim expiry and re-checks (the
 * renewal tick is renew.c's, next to the engine it feeds; housekeeping
 * purges are workers.c's own). workers.c runs every server_tick_fn of its
 * table each scheduler_interval_seconds. A tick only writes rows and enqueues jobs,
 * in bounded batches, so a pass is short and its work is durable.
 */
#include "claims/claims.h"
#include "server/server_internal.h"

/* Reminders sent per scheduler pass at most (each batch is up to 64). */
#define REMINDER_BATCHES 16
#define TICK_EXPIRE_LIMIT 500 /* expired claims released per tick */
#define TICK_DUE_LIMIT 1000   /* claims re-checked per tick */

void server_tick_cert_reminders(const struct api_ctx *ctx, struct db *db)
{
	int sent = 0, total = 0;
	cp_rc rc = CP_OK;

	(void)ctx;
	for (int i = 0; i < REMINDER_BATCHES && rc == CP_OK; i++) {
		rc = db_cert_reminders_run(db, cp_now(), 64, &sent);
		total += sent;
		if (sent < 64)
			break;
	}
	if (rc != CP_OK)
		cp_logf(CP_LOG_WARN, "scheduler.reminders", "expiry reminders: %s", cp_rc_str(rc));
	if (total > 0)
		cp_log_json(CP_LOG_INFO, "scheduler.reminders", json_pack("{s:i}", "sent", total));
}

/* Release expired pending claims and queue the re-checks due. */
void server_tick_hostname_claims(const struct api_ctx *ctx, struct db *db)
{
	struct db_claim_policy pol = claims_policy(ctx->cfg);
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
		if (claims_enqueue(db, json_string_value(json_object_get(d, "tenant_id")),
				   json_string_value(json_object_get(d, "property_id"))) == CP_OK)
			queued++;
	}
	json_decref(due);
	if (queued)
		cp_kick();
}
