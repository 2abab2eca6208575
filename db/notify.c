/*
 * notify.c - wake-ups between instances that share a database server
 * (issue 11): PostgreSQL's LISTEN/NOTIFY under the driver's listen/wait.
 * A wake-up carries no data that matters: whoever wakes re-reads the
 * database, and polling stays the fallback (workers every second, streams
 * at their keepalive), so a lost notification only costs latency.
 */
#include "db/db_internal.h"

#include <assert.h>

bool db_has_notify(const struct db *db)
{
	assert(db);
	return db->drv->listen && db->drv->wait;
}

cp_rc db_notify(struct db *db, const char *channel, const char *payload)
{
	const char *sql = db_dialect(db)->notify;
	struct db_stmt *st;

	assert(db && channel && payload);
	if (!sql)
		return CP_OK; /* one process: its own wake-ups (cp_kick, the hook) suffice */
	st = db_stmt_keyed(db, sql, channel, payload);
	return st ? db_exec_stmt(db, st) : CP_ERR_INTERNAL;
}

cp_rc db_listen(struct db *db, const char *channel)
{
	assert(db && channel);
	if (!db_has_notify(db))
		return CP_ERR_INVALID;
	return db_rc(db, db->drv->listen(db->conn, channel));
}

cp_rc db_notify_wait(struct db *db, int timeout_ms, bool *woke, char *channel, char *payload,
		     size_t cap)
{
	int r;

	assert(db && woke && channel && payload && cap > 0 && timeout_ms >= 0);
	*woke = false;
	channel[0] = payload[0] = '\0';
	if (!db_has_notify(db))
		return CP_ERR_INVALID;
	r = db->drv->wait(db->conn, timeout_ms, channel, payload, cap);
	*woke = r == DB_ROW;
	return r == DB_ROW || r == DB_DONE ? CP_OK : db_rc(db, r);
}
