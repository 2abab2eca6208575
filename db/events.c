/*
 * events.c - the event outbox. An event row is written in the same
 * transaction as the change that caused it, so an event exists exactly when
 * its change does; delivery to callback URLs happens later from the queue.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <string.h>

#define EVENT_JSON "json_insert(payload, '$.id', id)"

/* Hook for webhook fan-out, defined in webhooks.c of this module. */
cp_rc db_webhook_fanout(struct db *db, const char *tenant_id, const char *event_id,
			const char *type);

cp_rc db_event_add(struct db *db, const char *tenant_id, const char *type, json_t *data,
		   char id_out[CP_UUID_LEN + 1])
{
	static const char sql[] = "INSERT INTO events (id, tenant_id, type, payload, created_at) "
				  "VALUES (?, ?, ?, ?, ?)";
	sqlite3_stmt *st = db_stmt(db, sql);
	char id[CP_UUID_LEN + 1], ts[CP_TIME_LEN + 1];
	int64_t now = cp_now();
	json_t *payload = NULL;
	cp_rc rc = CP_ERR_INTERNAL;

	assert(db && tenant_id && type);
	if (!st)
		goto out;
	cp_uuid(id);
	cp_time_fmt(now, ts);
	/* "o" takes the reference: ours of a new {}, or a new one of data. */
	payload = json_pack("{s:s,s:s,s:o}", "type", type, "timestamp", ts, "data",
			    data ? json_incref(data) : json_object());
	if (!payload)
		goto out;
	db_bind_text(st, 1, id);
	db_bind_text(st, 2, tenant_id);
	db_bind_text(st, 3, type);
	db_bind_json(st, 4, payload);
	sqlite3_bind_int64(st, 5, now);
	rc = db_exec_stmt(db, st);
	if (rc != CP_OK)
		goto out;
	rc = db_webhook_fanout(db, tenant_id, id, type);
	if (rc == CP_OK && id_out)
		memcpy(id_out, id, sizeof(id));
out:
	json_decref(payload);
	return rc;
}

cp_rc db_event_list(struct db *db, const char *tenant_id, const char *type, struct db_page pg,
		    struct db_list *out)
{
	static const char sql_all[] = "SELECT seq, " EVENT_JSON " FROM events "
				      "WHERE tenant_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";
	static const char sql_type[] = "SELECT seq, " EVENT_JSON " FROM events "
				       "WHERE tenant_id = ?1 AND seq > ?2 AND type = ?4 "
				       "ORDER BY seq LIMIT ?3";
	sqlite3_stmt *st = db_stmt(db, type ? sql_type : sql_all);

	assert(db && tenant_id && out);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, tenant_id);
	sqlite3_bind_int64(st, 2, pg.after);
	sqlite3_bind_int(st, 3, pg.limit + 1);
	if (type)
		db_bind_text(st, 4, type);
	return db_fetch_page(db, st, pg.limit, out);
}

cp_rc db_event_seq(struct db *db, const char *tenant_id, const char *id, int64_t *seq)
{
	static const char sql[] = "SELECT seq FROM events WHERE tenant_id = ? AND id = ?";
	sqlite3_stmt *st = db_stmt(db, sql);
	cp_rc rc = CP_ERR_NOT_FOUND;
	int r;

	assert(db && tenant_id && seq);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, tenant_id);
	db_bind_text(st, 2, id);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		*seq = sqlite3_column_int64(st, 0);
		rc = CP_OK;
	} else if (r != SQLITE_DONE) {
		rc = db_rc(db, r);
	}
	sqlite3_reset(st);
	return rc;
}
