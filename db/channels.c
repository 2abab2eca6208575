/*
 * channels.c - a tenant's notification channels beyond webhooks (issue 14):
 * email addresses and Slack-compatible incoming webhooks.
 *
 * A channel is a row of the webhooks table with kind 'email' or 'slack'
 * (migration 023), so the outbox of webhooks.c serves it unchanged: the
 * fan-out of every event, one delivery and one durable job per channel,
 * the attempts, the retry schedule, disabling and pruning. What is its own
 * is here: the API's shape of a channel, its count (the channel quota),
 * and an email address's verification. For an email channel the url column
 * holds the address and the secret column the one-time verification token,
 * sealed like a webhook secret (aad "webhooks:<id>", so a key-ring rotation
 * re-seals it too); the fan-out skips an address until verified_at is set.
 * The /v1/webhooks functions of webhooks.c see kind 'webhook' only, and
 * these see the other kinds only.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* A channel as the API shows it (openapi.yaml, NotificationChannel): seq
 * and the columns of CHANNEL_COLS, in the order of enum channel_col,
 * rendered by channel_render, the one renderer of a channel. */
#define CHANNEL_COLS                                                                               \
	"seq, id, kind, url, events, enabled, disabled_reason, verified_at, created_at, "          \
	"updated_at"

enum channel_col {
	CC_SEQ,
	CC_ID,
	CC_KIND,
	CC_URL,
	CC_EVENTS,
	CC_ENABLED,
	CC_DISABLED_REASON,
	CC_VERIFIED_AT,
	CC_CREATED_AT,
	CC_UPDATED_AT,
	CC_COUNT
};

/* The bytes of a Slack URL shown after the mask: enough to tell two
 * channels apart, too few to post with. */
#define URL_TAIL_SHOWN 4

void db_channel_url_mask(const char *url, char *out, size_t cap)
{
	const char *host = strstr(url, "://");
	const char *path = host ? strchr(host + 3, '/') : NULL;
	size_t n = strlen(url), head = (size_t)((path ? path : url + n) - url);

	assert(url && out && cap > 0);
	snprintf(out, cap, "%.*s/****%s", (int)(head < 2048 ? head : 2048), url,
		 n - head > 2 * URL_TAIL_SHOWN ? url + n - URL_TAIL_SHOWN : "");
}

/* db_row_render_fn of a channel: st's row is (CHANNEL_COLS). */
static cp_rc channel_render(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	const char *kind = db_col_text(st, CC_KIND);
	bool email = kind && strcmp(kind, "email") == 0;

	(void)db;
	assert(db_col_count(st) >= CC_COUNT);
	cp_jw_open(w, '{');
	cp_jw_key(w, "id");
	db_jw_text(w, st, CC_ID);
	cp_jw_key(w, "type");
	db_jw_text(w, st, CC_KIND);
	if (email) {
		cp_jw_key(w, "address");
		db_jw_text(w, st, CC_URL);
	} else {
		char shown[2100];
		cp_jw_key(w, "url");
		db_channel_url_mask(db_col_text(st, CC_URL) ? db_col_text(st, CC_URL) : "", shown,
				    sizeof(shown));
		cp_jw_cstr(w, shown);
	}
	cp_jw_key(w, "events");
	db_jw_json(w, st, CC_EVENTS);
	/* A Slack channel needs no verification: it is verified by being
	 * created with its URL. */
	cp_jw_key(w, "verified");
	cp_jw_bool(w, !email || !db_col_null(st, CC_VERIFIED_AT));
	cp_jw_key(w, "verified_at");
	if (db_col_null(st, CC_VERIFIED_AT))
		cp_jw_null(w);
	else
		db_jw_time(w, st, CC_VERIFIED_AT);
	cp_jw_key(w, "enabled");
	cp_jw_bool(w, db_col_int64(st, CC_ENABLED) != 0);
	cp_jw_key(w, "disabled_reason");
	db_jw_text(w, st, CC_DISABLED_REASON);
	cp_jw_key(w, "created_at");
	db_jw_time(w, st, CC_CREATED_AT);
	cp_jw_key(w, "updated_at");
	db_jw_time(w, st, CC_UPDATED_AT);
	cp_jw_close(w, '}');
	return CP_OK;
}

cp_rc db_channel_create(struct db *db, const char *tenant_id, const char *id, const char *kind,
			const char *target, json_t *events, const char *sealed_secret, json_t **out)
{
	/* A Slack channel is verified when it is created. */
	static const char sql[] =
		"INSERT INTO webhooks (id, tenant_id, kind, url, events, secret, verified_at, "
		"created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?8, ?7, ?7) "
		"RETURNING " CHANNEL_COLS;
	struct db_stmt *st = db_stmt_keyed(db, sql, id, tenant_id);

	assert(db && tenant_id && kind && target && sealed_secret && out);
	assert(strcmp(kind, "email") == 0 || strcmp(kind, "slack") == 0);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, kind);
	db_bind_text(st, 4, target);
	db_bind_json(st, 5, events);
	db_bind_text(st, 6, sealed_secret);
	db_bind_int64(st, 7, cp_now());
	if (strcmp(kind, "slack") == 0)
		db_bind_int64(st, 8, cp_now()); /* else NULL: not verified yet */
	return db_fetch_render(db, st, channel_render, out);
}

cp_rc db_channel_count(struct db *db, const char *tenant_id, int *count)
{
	static const char sql[] =
		"SELECT count(*) FROM webhooks WHERE tenant_id = ?1 AND kind <> 'webhook'";
	int64_t n = 0;
	cp_rc rc = db_fetch_int64(db, db_stmt_keyed(db, sql, tenant_id, NULL), &n);

	*count = rc == CP_OK ? (int)n : 0;
	return rc;
}

cp_rc db_channel_get(struct db *db, const char *tenant_id, const char *id, json_t **out)
{
	static const char sql[] = "SELECT " CHANNEL_COLS " FROM webhooks "
				  "WHERE tenant_id = ?1 AND id = ?2 AND kind <> 'webhook'";
	return db_fetch_render(db, db_stmt_keyed(db, sql, tenant_id, id), channel_render, out);
}

cp_rc db_channel_list(struct db *db, const char *tenant_id, struct db_page pg, struct db_list *out)
{
#define SQL(cmp, dir)                                                                              \
	"SELECT " CHANNEL_COLS " FROM webhooks WHERE tenant_id = ?1 AND kind <> 'webhook' AND "    \
	"seq " cmp " ?3 ORDER BY seq" dir " LIMIT ?4"
	static const char *const sql[2] = DB_LIST_BOTH(SQL);
#undef SQL
	return db_fetch_page_render(db, db_stmt_page(db, sql, tenant_id, NULL, pg), pg.limit,
				    channel_render, out);
}

cp_rc db_channel_update(struct db *db, const char *tenant_id, const char *id, json_t *events,
			int enabled, json_t **out)
{
#define SET_ENABLED DB_OUTBOX_ENABLED_SET("?4")
	static const char sql[] = "UPDATE webhooks SET events = coalesce(?3, events), " SET_ENABLED
				  "updated_at = ?5 WHERE tenant_id = ?1 AND id = ?2 "
				  "AND kind <> 'webhook' RETURNING " CHANNEL_COLS;
#undef SET_ENABLED
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, id);

	assert(db && tenant_id && out && enabled >= -1 && enabled <= 1);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_json(st, 3, events);
	db_bind_int64(st, 4, enabled);
	db_bind_int64(st, 5, cp_now());
	return db_fetch_render(db, st, channel_render, out);
}

cp_rc db_channel_delete(struct db *db, const char *tenant_id, const char *id)
{
	static const char sql[] =
		"DELETE FROM webhooks WHERE tenant_id = ?1 AND id = ?2 AND kind <> 'webhook'";
	return db_delete_scoped(db, sql, tenant_id, id);
}

cp_rc db_channel_token(struct db *db, const char *tenant_id, const char *id, char **sealed,
		       bool *verified)
{
	static const char sql[] = "SELECT secret, verified_at FROM webhooks WHERE tenant_id = ?1 "
				  "AND id = ?2 AND kind = 'email'";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, id);
	cp_rc rc;

	assert(db && tenant_id && id && sealed && verified);
	*sealed = NULL;
	*verified = false;
	rc = db_step_row(db, st);
	if (rc != CP_OK)
		return rc;
	*sealed = cp_strdup(db_col_text(st, 0));
	*verified = !db_col_null(st, 1);
	db_reset(st);
	return *sealed ? CP_OK : CP_ERR_NOMEM;
}

cp_rc db_channel_set_verified(struct db *db, const char *tenant_id, const char *id, json_t **out)
{
	/* Only once: a verified address keeps its first verified_at. */
	static const char sql[] =
		"UPDATE webhooks SET verified_at = ?3, updated_at = ?3 WHERE tenant_id = ?1 AND "
		"id = ?2 AND kind = 'email' AND verified_at IS NULL RETURNING " CHANNEL_COLS;
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, id);

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 3, cp_now());
	return db_fetch_render(db, st, channel_render, out);
}

cp_rc db_channel_verification_recent(struct db *db, const char *tenant_id, int n, int64_t since,
				     bool *over)
{
	/* The tenant's nth newest verification event: a range scan of
	 * events_tenant_type that reads n rows, however long the history. */
	static const char sql[] = "SELECT created_at FROM events WHERE tenant_id = ?1 AND "
				  "type = ?2 ORDER BY seq DESC LIMIT 1 OFFSET ?3";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, DB_EVENT_CHANNEL_VERIFICATION);
	int64_t at = 0;
	cp_rc rc;

	assert(db && tenant_id && n >= 1 && over);
	*over = false;
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 3, n - 1);
	rc = db_fetch_int64(db, st, &at);
	if (rc == CP_ERR_NOT_FOUND)
		return CP_OK;
	*over = rc == CP_OK && at >= since;
	return rc;
}
