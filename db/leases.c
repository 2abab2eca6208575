/*
 * leases.c - named leases and instance heartbeats (issue 11): what lets
 * several certplane instances share one database with no leader elected
 * outside it. A lease row names its holder and when it lapses; the holder
 * renews it while it runs, and anyone takes it over once it lapsed. Every
 * time here is the database's clock (unixepoch()), so instances whose clocks
 * disagree still agree on who holds what.
 */
#include "db/db_internal.h"

#include <assert.h>

cp_rc db_lease_hold(struct db *db, const char *name, const char *holder, int ttl_seconds,
		    bool *held)
{
	/* One statement, so two instances racing for a lapsed lease cannot
	 * both win: the upsert's WHERE is checked on the row as it is when
	 * the write happens (SQLite: the one writer; PostgreSQL: the row
	 * lock the conflict takes, re-checked after a wait). */
	static const char sql[] =
		"INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, unixepoch() + ?3) "
		"ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, "
		"expires_at = excluded.expires_at "
		"WHERE leases.holder = excluded.holder OR leases.expires_at < unixepoch()";
	struct db_stmt *st = db_stmt_keyed(db, sql, name, holder);
	cp_rc rc;

	assert(db && name && holder && held && ttl_seconds > 0);
	*held = false;
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 3, ttl_seconds);
	rc = db_exec_stmt(db, st);
	if (rc == CP_OK)
		*held = db_changes(db) == 1;
	return rc;
}

cp_rc db_lease_release(struct db *db, const char *name, const char *holder)
{
	static const char sql[] = "DELETE FROM leases WHERE name = ?1 AND holder = ?2";

	assert(db && name && holder);
	return db_exec_stmt(db, db_stmt_keyed(db, sql, name, holder));
}

cp_rc db_instance_beat(struct db *db, const char *id, const char *host, int pid)
{
	static const char sql[] =
		"INSERT INTO instances (id, host, pid, started_at, heartbeat_at) "
		"VALUES (?1, ?2, ?3, unixepoch(), unixepoch()) "
		"ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at";
	struct db_stmt *st = db_stmt_keyed(db, sql, id, host);

	assert(db && id && host);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 3, pid);
	return db_exec_stmt(db, st);
}

cp_rc db_instance_gone(struct db *db, const char *id)
{
	static const char sql[] = "DELETE FROM instances WHERE id = ?1";

	assert(db && id);
	return db_exec_stmt(db, db_stmt_keyed(db, sql, id, NULL));
}

cp_rc db_instances_live(struct db *db, int within_seconds, int *count)
{
	static const char sql[] =
		"SELECT count(*) FROM instances WHERE heartbeat_at >= unixepoch() - ?1";
	struct db_stmt *st = db_stmt(db, sql);
	int64_t n = 0;
	cp_rc rc;

	assert(db && count && within_seconds > 0);
	*count = 0;
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 1, within_seconds);
	rc = db_fetch_int64(db, st, &n);
	*count = (int)n;
	return rc;
}
