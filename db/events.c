/*
 * events.c - the event outbox. An event row is written in the same
 * transaction as the change that caused it, so an event exists exactly when
 * its change does; delivery to callback URLs happens later from the queue.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <string.h>

#define EVENT_JSON "json_insert(payload, '$.id', id)"

const char *const db_event_types[DB_EVENT_TYPES_COUNT + 1] = {
	"certificate.issued",
	"certificate.renewed",
	"certificate.renewal_failed",
	"certificate.expiring",
	"certificate.expired",
	"order.dns_challenge_required",
	"order.dns_challenge_completed",
	"order.failed",
	"webhook.test",
	"webhook.disabled",
	"property.hostname_released",
	"property.hostname_unverified",
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

cp_rc db_event_add(struct db *db, const char *tenant_id, const char *type, json_t *data,
		   char id_out[CP_UUID_LEN + 1])
{
	static const char sql[] = "INSERT INTO events (id, tenant_id, type, payload, created_at) "
				  "VALUES (?, ?, ?, ?, ?)";
	char id[CP_UUID_LEN + 1], ts[CP_TIME_LEN + 1];
	sqlite3_stmt *st = db_stmt_new_row(db, sql, id, tenant_id);
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
#define SQL_ALL(cmp, dir)                                                                          \
	"SELECT seq, " EVENT_JSON " FROM events WHERE tenant_id = ?1 AND seq " cmp " ?3 "          \
	"ORDER BY seq" dir " LIMIT ?4"
#define SQL_TYPE(cmp, dir)                                                                         \
	"SELECT seq, " EVENT_JSON " FROM events WHERE tenant_id = ?1 AND seq " cmp " ?3 "          \
	"AND type = ?5 ORDER BY seq" dir " LIMIT ?4"
	static const char *const sql_all[2] = DB_LIST_BOTH(SQL_ALL);
	static const char *const sql_type[2] = DB_LIST_BOTH(SQL_TYPE);
#undef SQL_ALL
#undef SQL_TYPE
	/* Two statements, so that each is one index range scan. */
	return db_list_filtered(db, type ? sql_type : sql_all, tenant_id, NULL, type, pg, out);
}

cp_rc db_event_seq(struct db *db, const char *tenant_id, const char *id, int64_t *seq)
{
	static const char sql[] = "SELECT seq FROM events WHERE tenant_id = ?1 AND id = ?2";
	return db_fetch_int64(db, db_stmt_keyed(db, sql, tenant_id, id), seq);
}
