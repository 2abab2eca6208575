/*
 * events.c - the event outbox. An event row is written in the same
 * transaction as the change that caused it, so an event exists exactly when
 * its change does; delivery to callback URLs happens later from the queue.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

/* An event as the API shows it is its stored payload with its id added
 * (db_event_render): the columns EVENT_COLS. */
#define EVENT_COLS "payload, id"

const char *const db_event_types[DB_EVENT_TYPES_COUNT + 1] = {
	"certificate.issued",
	"certificate.renewed",
	"certificate.renewal_failed",
	"certificate.expiring",
	"certificate.expired",
	"order.dns_challenge_required",
	"order.dns_challenge_completed",
	"order.failed",
	"order.ca_fallback", /* issue 14: the order moved to the next CA */
	"webhook.test",
	"webhook.disabled",
	"property.hostname_released",
	"property.hostname_unverified",
	"notification_channel.verification", /* issue 14: to its own channel only */
	/* revocation (issue 14) */
	"certificate.revoked",
	"certificate.hostname_lost",
	"hostname.prior_certificate_revoked",
	"deployment.verified",
	"deployment.mismatch",
	NULL,
};

bool db_event_type_known(const char *type)
{
	for (size_t i = 0; type && db_event_types[i]; i++)
		if (strcmp(db_event_types[i], type) == 0)
			return true;
	return false;
}

/* Hook for webhook fan-out, defined in webhooks.c of this module. */
cp_rc db_webhook_fanout(struct db *db, const char *tenant_id, const char *event_id,
			const char *type);

/* The stream's wake-up (db_event_hook_set): set once before any thread
 * writes an event. */
static void (*event_hook)(void *cls, const char *tenant_id);
static void *event_hook_cls;

void db_event_hook_set(void (*fn)(void *cls, const char *tenant_id), void *cls)
{
	event_hook = fn;
	event_hook_cls = cls;
}

void db_event_committed(struct db *db, bool committed)
{
	assert(db);
	if (db->event_dirty && committed && event_hook)
		event_hook(event_hook_cls, db->event_tenants_many ? NULL : db->event_tenant);
	db->event_dirty = false;
	db->event_tenants_many = false;
}

cp_rc db_event_render(struct cp_jw *w, struct db_stmt *st, int c0)
{
	const char *p = db_col_text(st, c0);
	size_t n = p ? (size_t)db_col_bytes(st, c0) : 0;

	/* The payload is an object written compact by jansson
	 * (db_event_add): its text up to the closing brace, then the id as
	 * its last member, as json_insert(payload, '$.id', id) did. */
	while (n > 0 && p[n - 1] != '}')
		n--;
	if (n < 2 || p[0] != '{')
		return CP_ERR_INTERNAL; /* never stored: db_event_add writes an object */
	cp_jw_raw(w, p, n - 1);
	cp_jw_key(w, "id");
	db_jw_text(w, st, c0 + 1);
	cp_jw_close(w, '}');
	return CP_OK;
}

/* db_row_render_fn over db_event_render for (seq, EVENT_COLS) rows. */
static cp_rc event_render_listed(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	(void)db;
	return db_event_render(w, st, 1);
}

/* data's "key" when it is a string that fits an id (the filter columns);
 * NULL otherwise. */
static const char *event_key(const json_t *data, const char *key)
{
	const char *s = json_string_value(json_object_get(data, key));

	return s && strlen(s) <= CP_UUID_LEN ? s : NULL;
}

cp_rc db_event_add(struct db *db, const char *tenant_id, const char *type, json_t *data,
		   char id_out[CP_UUID_LEN + 1])
{
	static const char sql[] = "INSERT INTO events (id, tenant_id, type, payload, created_at, "
				  "certificate_id, property_id) VALUES (?, ?, ?, ?, ?, ?, ?)";
	char id[CP_UUID_LEN + 1], ts[CP_TIME_LEN + 1];
	struct db_stmt *st = db_stmt_new_row(db, sql, id, tenant_id);
	int64_t now = cp_now();
	json_t *payload = NULL;
	cp_rc rc = CP_ERR_INTERNAL;

	assert(db && tenant_id && type);
	if (!st)
		goto out;
	cp_time_fmt(now, ts);
	/* "o" takes the reference: ours of a new {}, or a new one of data. */
	payload = json_pack("{s:s,s:s,s:o}", "type", type, "timestamp", ts, "data",
			    data ? json_incref(data) : json_object());
	if (!payload)
		goto out;
	db_bind_text(st, 3, type);
	db_bind_json(st, 4, payload);
	db_bind_int64(st, 5, now);
	db_bind_text(st, 6, event_key(data, "certificate_id"));
	db_bind_text(st, 7, event_key(data, "property_id"));
	rc = db_exec_stmt(db, st);
	if (rc != CP_OK)
		goto out;
	rc = db_webhook_fanout(db, tenant_id, id, type);
	/* and the other instances' streams (delivered at our COMMIT) */
	if (rc == CP_OK)
		rc = db_notify(db, DB_CHANNEL_EVENTS, tenant_id);
	if (rc == CP_OK && id_out)
		memcpy(id_out, id, sizeof(id));
	/* Streams wake once the event is visible: at the COMMIT of the
	 * caller's transaction (db_commit), or now when there is none. */
	if (rc == CP_OK) {
		if (!db->event_dirty)
			snprintf(db->event_tenant, sizeof(db->event_tenant), "%s", tenant_id);
		else if (strcmp(db->event_tenant, tenant_id) != 0)
			db->event_tenants_many = true;
		db->event_dirty = true;
		if (!db_in_tx(db))
			db_event_committed(db, true);
	}
out:
	json_decref(payload);
	return rc;
}

cp_rc db_event_list(struct db *db, const char *tenant_id, const char *type, struct db_page pg,
		    struct db_list *out)
{
	struct db_event_filter f = { .type = type };

	return db_event_list_filtered(db, tenant_id, &f, pg, out);
}

cp_rc db_event_list_filtered(struct db *db, const char *tenant_id, const struct db_event_filter *f,
			     struct db_page pg, struct db_list *out)
{
#define SQL_ALL(cmp, dir)                                                                          \
	"SELECT seq, " EVENT_COLS " FROM events WHERE tenant_id = ?1 AND seq " cmp " ?3 "          \
	"ORDER BY seq" dir " LIMIT ?4"
#define SQL_TYPE(cmp, dir)                                                                         \
	"SELECT seq, " EVENT_COLS " FROM events WHERE tenant_id = ?1 AND seq " cmp " ?3 "          \
	"AND type = ?5 ORDER BY seq" dir " LIMIT ?4"
	/* By certificate (and maybe property and type), or by property (and
	 * maybe type): the id's partial index (migration 013) is the range,
	 * the other filters are checked on its rows. SQLite picks it with no
	 * hint (INDEXED BY is SQLite's alone): the equality on the id implies
	 * the index's "IS NOT NULL" and covers (tenant_id, id, seq). A NULL
	 * ?5 or ?7 is no condition. */
#define SQL_CERT(cmp, dir)                                                                         \
	"SELECT seq, " EVENT_COLS " FROM events "                                                  \
	"WHERE tenant_id = ?1 AND certificate_id = ?6 AND seq " cmp " ?3 "                         \
	"AND (CAST(?5 AS TEXT) IS NULL OR type = CAST(?5 AS TEXT)) "                               \
	"AND (CAST(?7 AS TEXT) IS NULL OR property_id = CAST(?7 AS TEXT)) "                        \
	"ORDER BY seq" dir " LIMIT ?4"
#define SQL_PROP(cmp, dir)                                                                         \
	"SELECT seq, " EVENT_COLS " FROM events "                                                  \
	"WHERE tenant_id = ?1 AND property_id = ?7 AND seq " cmp " ?3 "                            \
	"AND (CAST(?5 AS TEXT) IS NULL OR type = CAST(?5 AS TEXT)) ORDER BY seq" dir " LIMIT ?4"
	static const char *const sql_all[2] = DB_LIST_BOTH(SQL_ALL);
	static const char *const sql_type[2] = DB_LIST_BOTH(SQL_TYPE);
	static const char *const sql_cert[2] = DB_LIST_BOTH(SQL_CERT);
	static const char *const sql_prop[2] = DB_LIST_BOTH(SQL_PROP);
#undef SQL_ALL
#undef SQL_TYPE
#undef SQL_CERT
#undef SQL_PROP
	const char *const *sql = sql_all;
	struct db_stmt *st;

	assert(db && tenant_id && f);
	if (f->certificate_id)
		sql = sql_cert;
	else if (f->property_id)
		sql = sql_prop;
	else if (f->type)
		sql = sql_type;
	st = db_stmt_page(db, sql, tenant_id, NULL, pg);
	if (st && sql != sql_all)
		db_bind_text(st, 5, f->type);
	if (st && sql == sql_cert)
		db_bind_text(st, 6, f->certificate_id);
	if (st && (sql == sql_cert || sql == sql_prop))
		db_bind_text(st, 7, f->property_id);
	return db_fetch_page_render(db, st, pg.limit, event_render_listed, out);
}

cp_rc db_event_last_seq(struct db *db, const char *tenant_id, int64_t *seq)
{
	/* One step down the (tenant_id, seq) index from its end. */
	static const char sql[] =
		"SELECT seq FROM events WHERE tenant_id = ?1 ORDER BY seq DESC LIMIT 1";
	cp_rc rc = db_fetch_int64(db, db_stmt_keyed(db, sql, tenant_id, NULL), seq);

	if (rc == CP_ERR_NOT_FOUND) {
		*seq = 0;
		rc = CP_OK;
	}
	return rc;
}

cp_rc db_event_seq(struct db *db, const char *tenant_id, const char *id, int64_t *seq)
{
	static const char sql[] = "SELECT seq FROM events WHERE tenant_id = ?1 AND id = ?2";
	return db_fetch_int64(db, db_stmt_keyed(db, sql, tenant_id, id), seq);
}

void db_event_hook_run(const char *tenant_id)
{
	/* another instance's commit, as if it were ours (notify.c's listener) */
	if (event_hook)
		event_hook(event_hook_cls, tenant_id && *tenant_id ? tenant_id : NULL);
}
