/*
 * webhooks.c - callback URL endpoints ("webhooks"), their deliveries and the
 * record of every delivery attempt.
 *
 * Fan-out is part of the outbox: db_event_add() calls db_webhook_fanout() in
 * the caller's transaction, which inserts one delivery row and queues one
 * durable "webhook_delivery" job per enabled endpoint subscribed to the
 * event's type. Either the change, its event, its deliveries and their jobs
 * all commit, or none does; a crash after commit loses nothing because the
 * job queue is a table.
 *
 * The worker side (server/webhook_delivery.c) loads what one attempt needs
 * with db_webhook_delivery_load() and writes the attempt's outcome with
 * db_webhook_attempt_record(), which also keeps the endpoint's failure
 * counters and disables an endpoint (emitting webhook.disabled) when the
 * policy says so. A delivery that is no longer pending is never sent again,
 * which makes a job that is re-run after a crash harmless.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/*
 * An endpoint as the API shows it (openapi.yaml, Webhook; the secret is
 * never part of it): seq and the columns of WEBHOOK_COLS, in the order of
 * enum webhook_col, rendered by webhook_render, the one renderer of an
 * endpoint (create, get, list, update, rotate).
 */
#define WEBHOOK_COLS                                                                               \
	"seq, id, url, events, description, enabled, disabled_reason, created_at, updated_at"

enum webhook_col {
	WC_SEQ,
	WC_ID,
	WC_URL,
	WC_EVENTS,
	WC_DESCRIPTION,
	WC_ENABLED,
	WC_DISABLED_REASON,
	WC_CREATED_AT,
	WC_UPDATED_AT,
	WC_COUNT
};

/* db_row_render_fn of an endpoint: st's row is (WEBHOOK_COLS). */
static cp_rc webhook_render(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	(void)db;
	assert(db_col_count(st) >= WC_COUNT);
	cp_jw_open(w, '{');
	cp_jw_key(w, "id");
	db_jw_text(w, st, WC_ID);
	cp_jw_key(w, "url");
	db_jw_text(w, st, WC_URL);
	cp_jw_key(w, "events");
	db_jw_json(w, st, WC_EVENTS);
	cp_jw_key(w, "description");
	db_jw_text(w, st, WC_DESCRIPTION);
	cp_jw_key(w, "enabled");
	cp_jw_bool(w, db_col_int64(st, WC_ENABLED) != 0);
	cp_jw_key(w, "disabled_reason");
	db_jw_text(w, st, WC_DISABLED_REASON);
	cp_jw_key(w, "created_at");
	db_jw_time(w, st, WC_CREATED_AT);
	cp_jw_key(w, "updated_at");
	db_jw_time(w, st, WC_UPDATED_AT);
	cp_jw_close(w, '}');
	return CP_OK;
}

/* The attempts of one delivery, oldest first (few: the retry schedule's
 * length). */
static const char ATTEMPTS_SQL[] =
	"SELECT attempt, status_code, latency_ms, error, created_at FROM webhook_attempts "
	"WHERE delivery_id = ?1 ORDER BY seq";

/* A delivery as the API shows it (openapi.yaml, WebhookDelivery): seq and
 * the columns of DELIVERY_COLS (enum delivery_col) and its attempts. */
#define DELIVERY_COLS                                                                              \
	"d.seq, d.id, d.webhook_id, d.event_id, d.event_type, d.state, d.next_attempt_at, "        \
	"d.last_error, d.created_at, d.updated_at"

enum delivery_col {
	DC_SEQ,
	DC_ID,
	DC_WEBHOOK_ID,
	DC_EVENT_ID,
	DC_EVENT_TYPE,
	DC_STATE,
	DC_NEXT_ATTEMPT_AT,
	DC_LAST_ERROR,
	DC_CREATED_AT,
	DC_UPDATED_AT,
	DC_COUNT
};

/* The attempts of delivery id as a JSON array into w. */
static cp_rc delivery_render_attempts(struct db *db, const char *id, struct cp_jw *w)
{
	struct db_stmt *st = db_stmt_keyed(db, ATTEMPTS_SQL, id, NULL);
	int r;

	if (!st)
		return CP_ERR_INTERNAL;
	cp_jw_open(w, '[');
	while ((r = db_step(st)) == DB_ROW) {
		cp_jw_open(w, '{');
		cp_jw_key(w, "attempt");
		db_jw_int(w, st, 0);
		cp_jw_key(w, "status_code");
		db_jw_int(w, st, 1);
		cp_jw_key(w, "latency_ms");
		db_jw_int(w, st, 2);
		cp_jw_key(w, "error");
		db_jw_text(w, st, 3);
		cp_jw_key(w, "at");
		db_jw_time(w, st, 4);
		cp_jw_close(w, '}');
	}
	db_reset(st);
	if (r != DB_DONE)
		return db_rc(db, r);
	cp_jw_close(w, ']');
	return CP_OK;
}

/* db_row_render_fn of a delivery: st's row is (DELIVERY_COLS). */
static cp_rc delivery_render(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	/* The id outlives the attempts statement's steps: st is another
	 * statement, left on its row. */
	const char *id = db_col_text(st, DC_ID);
	bool pending =
		db_col_text(st, DC_STATE) && strcmp(db_col_text(st, DC_STATE), "pending") == 0;
	cp_rc rc;

	assert(db_col_count(st) >= DC_COUNT);
	if (!id)
		return CP_ERR_INTERNAL;
	cp_jw_open(w, '{');
	cp_jw_key(w, "id");
	db_jw_text(w, st, DC_ID);
	cp_jw_key(w, "webhook_id");
	db_jw_text(w, st, DC_WEBHOOK_ID);
	cp_jw_key(w, "event_id");
	db_jw_text(w, st, DC_EVENT_ID);
	cp_jw_key(w, "event_type");
	db_jw_text(w, st, DC_EVENT_TYPE);
	cp_jw_key(w, "state");
	db_jw_text(w, st, DC_STATE);
	/* Only a pending delivery has a next attempt. */
	cp_jw_key(w, "next_attempt_at");
	if (pending)
		db_jw_time(w, st, DC_NEXT_ATTEMPT_AT);
	else
		cp_jw_null(w);
	cp_jw_key(w, "last_error");
	db_jw_text(w, st, DC_LAST_ERROR);
	cp_jw_key(w, "attempts");
	rc = delivery_render_attempts(db, id, w);
	if (rc != CP_OK)
		return rc;
	cp_jw_key(w, "created_at");
	db_jw_time(w, st, DC_CREATED_AT);
	cp_jw_key(w, "updated_at");
	db_jw_time(w, st, DC_UPDATED_AT);
	cp_jw_close(w, '}');
	return CP_OK;
}

/* Most endpoints one event fans out to (the API caps endpoints per tenant
 * lower than this). */
#define FANOUT_MAX 64

cp_rc db_webhook_create(struct db *db, const char *tenant_id, const char *id, const char *url,
			json_t *events, const char *description, const char *sealed_secret,
			json_t **out)
{
	static const char sql[] =
		"INSERT INTO webhooks (id, tenant_id, url, events, description, secret, "
		"created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) "
		"RETURNING " WEBHOOK_COLS;
	struct db_stmt *st = db_stmt_keyed(db, sql, id, tenant_id);

	assert(db && tenant_id && out);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, url);
	db_bind_json(st, 4, events);
	db_bind_text(st, 5, description ? description : "");
	db_bind_text(st, 6, sealed_secret);
	db_bind_int64(st, 7, cp_now());
	return db_fetch_render(db, st, webhook_render, out);
}

cp_rc db_webhook_count(struct db *db, const char *tenant_id, int *count)
{
	static const char sql[] =
		"SELECT count(*) FROM webhooks WHERE tenant_id = ?1 AND kind = 'webhook'";
	int64_t n = 0;
	cp_rc rc = db_fetch_int64(db, db_stmt_keyed(db, sql, tenant_id, NULL), &n);

	*count = rc == CP_OK ? (int)n : 0;
	return rc;
}

cp_rc db_webhook_get(struct db *db, const char *tenant_id, const char *id, json_t **out)
{
	static const char sql[] = "SELECT " WEBHOOK_COLS " FROM webhooks "
				  "WHERE tenant_id = ?1 AND id = ?2 AND kind = 'webhook'";
	return db_fetch_render(db, db_stmt_keyed(db, sql, tenant_id, id), webhook_render, out);
}

cp_rc db_webhook_list(struct db *db, const char *tenant_id, struct db_page pg, struct db_list *out)
{
#define SQL(cmp, dir)                                                                              \
	"SELECT " WEBHOOK_COLS " FROM webhooks WHERE tenant_id = ?1 AND kind = 'webhook' AND "     \
	"seq " cmp " ?3 ORDER BY seq" dir " LIMIT ?4"
	static const char *const sql[2] = DB_LIST_BOTH(SQL);
#undef SQL
	return db_fetch_page_render(db, db_stmt_page(db, sql, tenant_id, NULL, pg), pg.limit,
				    webhook_render, out);
}

cp_rc db_webhook_update(struct db *db, const char *tenant_id, const char *id,
			const struct db_webhook_patch *p, json_t **out)
{
	assert(db && tenant_id && out);

#define SET_ENABLED DB_OUTBOX_ENABLED_SET("?6")
	static const char sql[] =
		"UPDATE webhooks SET url = coalesce(?3, url), events = coalesce(?4, events), "
		"description = coalesce(?5, description), " SET_ENABLED
		"updated_at = ?7 WHERE tenant_id = ?1 AND id = ?2 AND kind = 'webhook' "
		"RETURNING " WEBHOOK_COLS;
#undef SET_ENABLED
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, id);

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, p->url);
	db_bind_json(st, 4, p->events);
	db_bind_text(st, 5, p->description);
	db_bind_int64(st, 6, p->enabled);
	db_bind_int64(st, 7, cp_now());
	return db_fetch_render(db, st, webhook_render, out);
}

cp_rc db_webhook_delete(struct db *db, const char *tenant_id, const char *id)
{
	static const char sql[] =
		"DELETE FROM webhooks WHERE tenant_id = ?1 AND id = ?2 AND kind = 'webhook'";
	return db_delete_scoped(db, sql, tenant_id, id);
}

cp_rc db_webhook_deliveries(struct db *db, const char *tenant_id, const char *webhook_id,
			    const char *state, struct db_page pg, struct db_list *out)
{
	assert(db && tenant_id && out);

	/* The optional state filter at ?5, typed for PostgreSQL at each use. */
#define SQL(cmp, dir)                                                                              \
	"SELECT " DELIVERY_COLS " FROM webhook_deliveries d WHERE d.tenant_id = ?1 AND "           \
	"d.webhook_id = ?2 AND d.seq " cmp " ?3 AND (CAST(?5 AS TEXT) IS NULL OR "                 \
	"d.state = CAST(?5 AS TEXT)) ORDER BY d.seq" dir " LIMIT ?4"
	static const char *const sql[2] = DB_LIST_BOTH(SQL);
#undef SQL
	struct db_stmt *st = db_stmt_page(db, sql, tenant_id, webhook_id, pg);

	if (st)
		db_bind_text(st, 5, state);
	return db_fetch_page_render(db, st, pg.limit, delivery_render, out);
}

cp_rc db_webhook_deliver_to(struct db *db, const char *tenant_id, const char *webhook_id,
			    const char *event_id, const char *type,
			    char delivery_id_out[CP_UUID_LEN + 1])
{
	assert(db && tenant_id);

	/* The SELECT scopes the endpoint by tenant: another tenant's id
	 * inserts nothing and reads as not found. */
	static const char sql[] =
		"INSERT INTO webhook_deliveries (id, tenant_id, webhook_id, event_id, event_type, "
		"next_attempt_at, created_at, updated_at) "
		"SELECT ?1, tenant_id, id, ?4, ?5, ?6, ?6, ?6 FROM webhooks "
		"WHERE tenant_id = ?2 AND id = ?3";
	char id[CP_UUID_LEN + 1], dedupe[64];
	json_t *payload = NULL;
	int64_t now = cp_now();
	cp_rc rc;
	struct db_stmt *st = db_stmt_new_row(db, sql, id, tenant_id);

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, webhook_id);
	db_bind_text(st, 4, event_id);
	db_bind_text(st, 5, type);
	db_bind_int64(st, 6, now);
	rc = db_exec_one(db, st);
	if (rc != CP_OK)
		return rc;
	payload = json_pack("{s:s}", "delivery_id", id);
	if (!payload)
		return CP_ERR_NOMEM;
	snprintf(dedupe, sizeof(dedupe), "webhook_delivery:%s", id);
	rc = db_job_enqueue(db, "webhook_delivery", tenant_id, payload, now, dedupe);
	json_decref(payload);
	if (rc != CP_OK)
		return rc;
	if (delivery_id_out)
		memcpy(delivery_id_out, id, sizeof(id));
	/* Workers that wake before our commit find nothing and look again
	 * within a second; the common case is a prompt pick-up. */
	cp_kick();
	return CP_OK;
}

cp_rc db_webhook_redeliver(struct db *db, const char *tenant_id, const char *webhook_id,
			   const char *delivery_id, char event_id_out[CP_UUID_LEN + 1])
{
	assert(db && tenant_id && webhook_id && delivery_id && event_id_out);

	/* Re-open a settled delivery: its next attempt is due now and is
	 * appended to its attempts (same event, so the same webhook-id). A
	 * pending one is left to its schedule, so one delivery never has two
	 * attempts racing. */
	static const char upd[] =
		"UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ?4, "
		"last_error = NULL, updated_at = ?4 WHERE tenant_id = ?1 AND webhook_id = ?2 "
		"AND id = ?3 AND state <> 'pending' RETURNING event_id";
	static const char probe[] = "SELECT 1 FROM webhook_deliveries WHERE tenant_id = ?1 "
				    "AND webhook_id = ?2 AND id = ?3";
	struct db_stmt *st = db_stmt_keyed(db, upd, tenant_id, webhook_id);
	json_t *payload = NULL;
	int64_t now = cp_now();
	cp_rc rc;

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, delivery_id);
	db_bind_int64(st, 4, now);
	rc = db_fetch_text(db, st, event_id_out, CP_UUID_LEN + 1);
	if (rc == CP_ERR_NOT_FOUND) {
		st = db_stmt_keyed(db, probe, tenant_id, webhook_id);
		if (!st)
			return CP_ERR_INTERNAL;
		db_bind_text(st, 3, delivery_id);
		rc = db_probe(db, st);
		return rc == CP_OK ? CP_ERR_CONFLICT : rc; /* still pending */
	}
	if (rc != CP_OK)
		return rc;
	payload = json_pack("{s:s}", "delivery_id", delivery_id);
	if (!payload)
		return CP_ERR_NOMEM;
	/* No dedupe key: the state guard above already admits one job per
	 * re-opening, and an extra run finds the delivery settled. */
	rc = db_job_enqueue(db, "webhook_delivery", tenant_id, payload, now, NULL);
	json_decref(payload);
	if (rc == CP_OK)
		cp_kick();
	return rc;
}

cp_rc db_webhook_rotate_secret(struct db *db, const char *tenant_id, const char *id,
			       const char *sealed_secret, int64_t previous_until, json_t **out)
{
	assert(db && tenant_id && id && sealed_secret && out);

	/* The current secret signs alongside the new one until previous_until
	 * (none when that is not in the future); an older previous secret is
	 * dropped, so at most two are ever valid. */
	static const char sql[] =
		"UPDATE webhooks SET previous_secret = CASE WHEN CAST(?4 AS BIGINT) IS NULL THEN "
		"NULL ELSE secret END, previous_secret_until = CAST(?4 AS BIGINT), secret = ?3, "
		"updated_at = ?5 WHERE tenant_id = ?1 AND id = ?2 AND kind = 'webhook' "
		"RETURNING " WEBHOOK_COLS;
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, id);
	int64_t now = cp_now();

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, sealed_secret);
	if (previous_until > now)
		db_bind_int64(st, 4, previous_until); /* else NULL: no overlap */
	db_bind_int64(st, 5, now);
	return db_fetch_render(db, st, webhook_render, out);
}

/* Whether an endpoint subscribed to events (its stored JSON array of n
 * bytes) receives events of type: "*" or the type itself is listed. */
static bool webhook_subscribed(const char *events, size_t n, const char *type)
{
	json_t *arr = events ? json_loadb(events, n, 0, NULL) : NULL, *v;
	bool hit = false;
	size_t i;

	json_array_foreach(arr, i, v)
	{
		const char *e = json_string_value(v);

		if (e && (strcmp(e, "*") == 0 || strcmp(e, type) == 0)) {
			hit = true;
			break;
		}
	}
	json_decref(arr);
	return hit;
}

cp_rc db_webhook_fanout(struct db *db, const char *tenant_id, const char *event_id,
			const char *type)
{
	/* The tenant's enabled endpoints and notification channels (few: the
	 * webhooks and channel quotas), their subscriptions matched here; an
	 * email address only once it is verified (migration 023). */
	static const char sql[] = "SELECT id, events FROM webhooks WHERE tenant_id = ?1 AND "
				  "enabled = 1 AND (kind <> 'email' OR verified_at IS NOT NULL) "
				  "ORDER BY seq";
	struct db_stmt *st;
	char ids[FANOUT_MAX][CP_UUID_LEN + 1];
	int n = 0, r = DB_DONE;
	cp_rc rc = CP_OK;

	assert(db && tenant_id);
	/* A test event goes only to the endpoint it was sent for
	 * (db_webhook_deliver_to), never to every "*" subscriber. */
	if (strcmp(type, "webhook.test") == 0 || strcmp(type, DB_EVENT_CHANNEL_VERIFICATION) == 0)
		return CP_OK;
	st = db_stmt_keyed(db, sql, tenant_id, NULL);
	if (!st)
		return CP_ERR_INTERNAL;
	/* Collect first: deliver_to runs other statements on this connection. */
	while (n < FANOUT_MAX && (r = db_step(st)) == DB_ROW)
		if (webhook_subscribed(db_col_text(st, 1), db_col_bytes(st, 1), type))
			db_column_copy(st, 0, ids[n++], sizeof(ids[0]));
	db_reset(st);
	if (r != DB_ROW && r != DB_DONE)
		return db_rc(db, r);
	for (int i = 0; i < n && rc == CP_OK; i++)
		rc = db_webhook_deliver_to(db, tenant_id, ids[i], event_id, type, NULL);
	return rc;
}

cp_rc db_webhook_delivery_load(struct db *db, const char *delivery_id, json_t **out)
{
	static const char sql[] =
		"SELECT d.id, d.tenant_id, w.id, d.event_id, d.state, d.attempts, d.created_at, "
		"d.next_attempt_at, w.url, w.enabled, w.secret, CASE WHEN "
		"w.previous_secret_until > ?2 THEN w.previous_secret END, e.payload, e.id, w.kind, "
		"e.type "
		"FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id "
		"JOIN events e ON e.id = d.event_id WHERE d.id = ?1";
	struct db_stmt *st = db_stmt_keyed(db, sql, delivery_id, NULL);
	json_t *o = NULL, *body = NULL;
	cp_rc rc;

	assert(db && out);
	*out = NULL;
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 2, cp_now());
	rc = db_step_row(db, st);
	if (rc != CP_OK)
		return rc;
	/* The event's payload with its id, unless the payload has one. */
	body = db_col_text(st, 12) ? json_loadb(db_col_text(st, 12), db_col_bytes(st, 12), 0, NULL)
				   : NULL;
	if (json_is_object(body) && !json_object_get(body, "id"))
		json_object_set_new(body, "id", json_string(db_col_text(st, 13)));
	o = body ? json_pack(
			   "{s:s?,s:s?,s:s?,s:s?,s:s?,s:I,s:I,s:o,s:s?,s:b,s:s?,s:s?,s:o,s:s?,"
			   "s:s?}",
			   "delivery_id", db_col_text(st, 0), "tenant_id", db_col_text(st, 1),
			   "webhook_id", db_col_text(st, 2), "event_id", db_col_text(st, 3),
			   "state", db_col_text(st, 4), "attempts", (json_int_t)db_col_int64(st, 5),
			   "created_at", (json_int_t)db_col_int64(st, 6), "next_attempt_at",
			   db_col_null(st, 7) ? json_null() : json_integer(db_col_int64(st, 7)),
			   "url", db_col_text(st, 8), "enabled", db_col_int64(st, 9) != 0, "secret",
			   db_col_text(st, 10), "previous_secret", db_col_text(st, 11), "body",
			   body, "kind", db_col_text(st, 14), "event_type", db_col_text(st, 15))
		 : NULL;
	db_reset(st);
	if (!o)
		return body ? CP_ERR_NOMEM : CP_ERR_INTERNAL;
	*out = o;
	return CP_OK;
}

/* Disable endpoint webhook_id with reason and tell the tenant with a
 * webhook.disabled event (delivered to its other endpoints). */
static cp_rc webhook_disable(struct db *db, const char *tenant_id, const char *webhook_id,
			     const char *url, const char *reason)
{
	static const char sql[] = "UPDATE webhooks SET enabled = 0, disabled_reason = ?3, "
				  "updated_at = ?4 WHERE tenant_id = ?1 AND id = ?2";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, webhook_id);
	json_t *data = NULL;
	cp_rc rc;

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, reason);
	db_bind_int64(st, 4, cp_now());
	rc = db_exec_stmt(db, st);
	if (rc != CP_OK)
		return rc;
	data = json_pack("{s:s,s:s,s:s}", "webhook_id", webhook_id, "url", url, "reason", reason);
	if (!data)
		return CP_ERR_NOMEM;
	rc = db_event_add(db, tenant_id, "webhook.disabled", data, NULL);
	json_decref(data);
	if (rc == CP_OK)
		cp_logf(CP_LOG_WARN, "webhook.disabled", "webhook %s of tenant %s disabled: %s",
			webhook_id, tenant_id, reason);
	return rc;
}

/* The delivery facts record_attempt needs. The endpoint's counters are not
 * among them: they are read back from the UPDATE that changes them, so a
 * concurrent attempt on the same endpoint (another delivery, another
 * instance) is never decided on a stale count. */
struct attempt_ctx {
	char state[16];
	int attempts;
	char tenant_id[CP_UUID_LEN + 1];
	char webhook_id[CP_UUID_LEN + 1];
	char url[2049]; /* a Slack channel's masked (db_channel_url_mask) */
};

static cp_rc attempt_ctx_load(struct db *db, const char *delivery_id, struct attempt_ctx *c)
{
	static const char sql[] =
		"SELECT d.state, d.attempts, d.tenant_id, w.id, w.url, w.kind FROM webhook_deliveries d "
		"JOIN webhooks w ON w.id = d.webhook_id WHERE d.id = ?";
	struct db_stmt *st = db_stmt_keyed(db, sql, delivery_id, NULL);
	cp_rc rc = db_step_row(db, st);

	if (rc != CP_OK)
		return rc;
	db_column_copy(st, 0, c->state, sizeof(c->state));
	c->attempts = db_col_int64(st, 1);
	db_column_copy(st, 2, c->tenant_id, sizeof(c->tenant_id));
	db_column_copy(st, 3, c->webhook_id, sizeof(c->webhook_id));
	db_column_copy(st, 4, c->url, sizeof(c->url));
	/* The webhook.disabled event names the URL: a Slack channel's only
	 * masked, as the API shows it. */
	if (db_col_text(st, 5) && strcmp(db_col_text(st, 5), "slack") == 0) {
		char url[sizeof(c->url)];
		memcpy(url, c->url, sizeof(url));
		db_channel_url_mask(url, c->url, sizeof(c->url));
	}
	db_reset(st);
	return CP_OK;
}

/* Move the delivery on and write the attempt's row. The UPDATE changes the
 * delivery only if it is still pending with the attempts c read: under
 * PostgreSQL's READ COMMITTED a second run of the same delivery waits for
 * the first's row lock and then finds it moved on (CP_ERR_NOT_FOUND: the
 * caller records nothing); SQLite's single writer never gets there. */
static cp_rc attempt_write(struct db *db, const char *delivery_id, const struct attempt_ctx *c,
			   const struct db_webhook_attempt *a, int64_t now)
{
	static const char ins[] =
		"INSERT INTO webhook_attempts (delivery_id, attempt, status_code, latency_ms, "
		"error, created_at) VALUES (?, ?, ?, ?, ?, ?)";
	static const char upd[] =
		"UPDATE webhook_deliveries SET attempts = ?2, state = ?3, next_attempt_at = ?4, "
		"last_error = ?5, updated_at = ?6 WHERE id = ?1 AND state = 'pending' AND "
		"attempts = ?7";
	const char *state = a->outcome == DB_WEBHOOK_DELIVERED ? "delivered"
			    : a->outcome == DB_WEBHOOK_RETRY   ? "pending"
							       : "failed";
	bool attempted = a->outcome != DB_WEBHOOK_SKIPPED;
	struct db_stmt *st = db_stmt(db, upd);
	cp_rc rc;

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, delivery_id);
	db_bind_int64(st, 2, c->attempts + (attempted ? 1 : 0));
	db_bind_text(st, 3, state);
	if (a->outcome == DB_WEBHOOK_RETRY)
		db_bind_int64(st, 4, a->next_attempt_at);
	db_bind_text(st, 5, a->error);
	db_bind_int64(st, 6, now);
	db_bind_int64(st, 7, c->attempts);
	rc = db_exec_one(db, st);
	if (rc != CP_OK || !attempted)
		return rc;
	st = db_stmt(db, ins);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, delivery_id);
	db_bind_int64(st, 2, c->attempts + 1);
	if (a->status_code > 0)
		db_bind_int64(st, 3, a->status_code);
	db_bind_int64(st, 4, a->latency_ms);
	db_bind_text(st, 5, a->error);
	db_bind_int64(st, 6, now);
	return db_exec_stmt(db, st);
}

/* Keep the endpoint's failure counters; returns the reason to disable it
 * (static or in buf), or NULL. The decision reads the counters as the
 * UPDATE left them (RETURNING): the row is locked until the transaction
 * ends, so of two failing attempts racing on one endpoint the second sees
 * the first's count and, once it disabled the endpoint, enabled = 0. */
static const char *endpoint_track(struct db *db, const struct attempt_ctx *c,
				  const struct db_webhook_attempt *a, int64_t now, cp_rc *rc,
				  char *buf, size_t buflen)
{
#define TRACKED " WHERE id = ?1 RETURNING enabled, failed_deliveries, failing_since"
	static const char ok[] =
		"UPDATE webhooks SET failed_deliveries = 0, failing_since = NULL" TRACKED;
	static const char failing[] =
		"UPDATE webhooks SET failing_since = coalesce(failing_since, ?2)" TRACKED;
	static const char failed[] = "UPDATE webhooks SET failed_deliveries = failed_deliveries + "
				     "1, failing_since = coalesce(failing_since, ?2)" TRACKED;
#undef TRACKED
	const char *sql = a->outcome == DB_WEBHOOK_DELIVERED ? ok
			  : a->outcome == DB_WEBHOOK_RETRY   ? failing
							     : failed;
	struct db_stmt *st;
	int64_t failed_n, since;
	bool enabled;

	*rc = CP_OK;
	if (a->outcome == DB_WEBHOOK_SKIPPED)
		return NULL;
	st = db_stmt(db, sql);
	if (!st) {
		*rc = CP_ERR_INTERNAL;
		return NULL;
	}
	db_bind_text(st, 1, c->webhook_id);
	db_bind_int64(st, 2, now);
	*rc = db_step_row(db, st);
	if (*rc != CP_OK)
		return NULL;
	enabled = db_col_int64(st, 0) != 0;
	failed_n = db_col_int64(st, 1);
	since = db_col_null(st, 2) ? now : db_col_int64(st, 2);
	db_reset(st);
	if (!enabled || a->outcome == DB_WEBHOOK_DELIVERED)
		return NULL;
	if (a->outcome == DB_WEBHOOK_GONE)
		return "the receiver answered 410 Gone";
	if (a->outcome == DB_WEBHOOK_FAILED && a->disable_after_failed > 0 &&
	    failed_n >= a->disable_after_failed) {
		snprintf(buf, buflen, "%lld consecutive deliveries failed; last error: %s",
			 (long long)failed_n, a->error ? a->error : "unknown");
		return buf;
	}
	if (a->disable_after_seconds > 0 && now - since >= a->disable_after_seconds) {
		snprintf(buf, buflen,
			 "every delivery attempt failed for %lld hours; last error: %s",
			 (long long)((now - since) / 3600), a->error ? a->error : "unknown");
		return buf;
	}
	return NULL;
}

cp_rc db_webhook_attempt_record(struct db *db, const char *delivery_id,
				const struct db_webhook_attempt *a, bool *disabled)
{
	struct attempt_ctx c;
	char reason[512];
	const char *disable;
	int64_t now = cp_now();
	cp_rc rc;

	assert(db && delivery_id && a && disabled);
	*disabled = false;
	memset(&c, 0, sizeof(c));
	rc = db_begin(db);
	if (rc != CP_OK)
		return rc;
	rc = attempt_ctx_load(db, delivery_id, &c);
	/* Already settled (or gone with its endpoint): nothing to record. */
	if (rc != CP_OK || strcmp(c.state, "pending") != 0)
		goto out;
	rc = attempt_write(db, delivery_id, &c, a, now);
	if (rc != CP_OK)
		goto out;
	disable = endpoint_track(db, &c, a, now, &rc, reason, sizeof(reason));
	if (rc == CP_OK && disable) {
		rc = webhook_disable(db, c.tenant_id, c.webhook_id, c.url, disable);
		*disabled = rc == CP_OK;
	}
out:
	if (rc == CP_OK)
		return db_commit(db);
	db_rollback(db);
	return rc == CP_ERR_NOT_FOUND ? CP_OK : rc;
}

cp_rc db_webhook_prune(struct db *db, int64_t cutoff, int limit, int *deleted)
{
	/* Finished deliveries older than the cutoff, a bounded batch on the
	 * partial index webhook_deliveries_finished (migration 008); their
	 * attempts go with them (ON DELETE CASCADE, by delivery index). The
	 * WHERE implies the index's predicate, so SQLite picks it (no ANALYZE
	 * statistics here, so the plan does not change with the table's size)
	 * without SQLite's INDEXED BY, which PostgreSQL does not have. */
	static const char sql[] =
		"DELETE FROM webhook_deliveries WHERE seq IN (SELECT seq FROM webhook_deliveries "
		"WHERE state IN ('delivered', 'failed') AND updated_at < ?1 ORDER BY updated_at "
		"LIMIT ?2)";

	return db_delete_batch(db, sql, cutoff, limit, deleted);
}
