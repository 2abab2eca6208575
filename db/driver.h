/*
 * driver.h - the SQL engine under the db module (issue 11). The domain code
 * of db/ (one file per table family) is written once against this small
 * interface; db/driver_sqlite.c and db/driver_pg.c implement it. Never
 * included outside db/.
 *
 * The model is SQLite's, because the domain code was written that way: a
 * connection prepares statements once (the statement cache in core.c keys
 * them by their SQL text's address), binds parameters by 1-based index,
 * steps through rows and resets. SQL text uses SQLite's placeholders (?N or
 * a bare ?); the PostgreSQL driver rewrites them to $N when it prepares.
 * What SQL genuinely differs between the engines (the job claim, FOR UPDATE,
 * the schema version, backup) is not written here but in the per-dialect
 * table struct db_dialect.
 *
 * Ownership: a connection owns its statements; a statement's column values
 * are borrowed until the next step or reset of that statement.
 * A connection is used by one thread at a time.
 */
#ifndef CP_DB_DRIVER_H
#define CP_DB_DRIVER_H

#include "common/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct db_conn;
/* Every driver's statement starts with this header, so the inline
 * dispatchers below reach the driver from the statement alone. */
struct db_stmt {
	const struct db_driver *drv;
};

/* What a step (or an exec) returns: a row, done, or an engine error mapped
 * to one of the engine-neutral classes (db_rc in core.c maps them to cp_rc). */
enum db_result {
	DB_DONE = 0,
	DB_ROW = 1,
	DB_E_BUSY = -1,	      /* locked/busy: retry the transaction */
	DB_E_RETRY = -2,      /* serialization failure or deadlock (40001/40P01) */
	DB_E_CONSTRAINT = -3, /* unique/foreign-key/check violation */
	DB_E_NOMEM = -4,
	DB_E_TOOBIG = -5,
	DB_E_OTHER = -6, /* anything else: logged with the driver's message */
};

struct db_driver {
	const char *name; /* "sqlite" or "postgresql" */
	/* Open one connection to target (a file path or a postgresql:// URL).
	 * CP_OK with *out (owned: close with close), CP_ERR_IO, CP_ERR_NOMEM. */
	cp_rc (*open)(const char *target, struct db_conn **out);
	void (*close)(struct db_conn *c); /* NULL is a no-op; finalizes nothing */
	/* Prepare sql (kept for the connection's life). DB_DONE with *out, or
	 * an error class (the message in errmsg). */
	int (*prepare)(struct db_conn *c, const char *sql, struct db_stmt **out);
	void (*finalize)(struct db_stmt *st); /* NULL is a no-op */
	/* Binds copy their value. idx is 1-based. bind_text with s NULL binds
	 * NULL. */
	void (*bind_int64)(struct db_stmt *st, int idx, int64_t v);
	void (*bind_text)(struct db_stmt *st, int idx, const char *s, size_t len);
	void (*bind_null)(struct db_stmt *st, int idx);
	/* Run (first call) or advance: DB_ROW, DB_DONE or an error class. */
	int (*step)(struct db_stmt *st);
	/* Back to before the first step; the bindings stay (as SQLite's
	 * reset), so a loop may rebind only what changes. */
	void (*reset)(struct db_stmt *st);
	/* Every parameter back to NULL (the statement cache does it when it
	 * hands a cached statement out). */
	void (*clear)(struct db_stmt *st);
	int (*col_count)(struct db_stmt *st);
	bool (*col_null)(struct db_stmt *st, int col);
	int64_t (*col_int64)(struct db_stmt *st, int col);
	/* NULL for SQL NULL; borrowed until the next step/reset. */
	const char *(*col_text)(struct db_stmt *st, int col);
	size_t (*col_bytes)(struct db_stmt *st, int col);
	/* Rows changed by the last INSERT/UPDATE/DELETE of this connection. */
	int64_t (*changes)(struct db_conn *c);
	/* Run sql (several statements, no parameters): DB_DONE or an error. */
	int (*exec)(struct db_conn *c, const char *sql);
	/* Whether a transaction is open on c. */
	bool (*in_tx)(struct db_conn *c);
	/* The last error's text (never NULL). */
	const char *(*errmsg)(struct db_conn *c);
	/* Notifications between instances (PostgreSQL's LISTEN/NOTIFY); NULL
	 * for an engine without them. listen subscribes c to channel (an SQL
	 * identifier): DB_DONE or an error. wait blocks up to timeout_ms for
	 * a notification on c's channels: DB_ROW when one (or more) arrived,
	 * copying the first one's channel and payload into channel/payload
	 * (cap bytes each, truncated, NUL-terminated), DB_DONE on timeout, or
	 * an error (a lost connection: the caller reopens). */
	int (*listen)(struct db_conn *c, const char *channel);
	int (*wait)(struct db_conn *c, int timeout_ms, char *channel, char *payload, size_t cap);
	/* The write generation (the read cache's validity, api/read_cache.c):
	 * a process-wide count bumped after each commit of any of this
	 * process's connections has become visible to new readers. true with
	 * *gen (read with acquire order) when the engine can tell, false when
	 * it cannot; NULL for an engine whose writers may be other processes
	 * (PostgreSQL: many instances). */
	bool (*write_gen)(uint64_t *gen);
};

extern const struct db_driver db_driver_sqlite;
extern const struct db_driver db_driver_pg;

/* The driver for a database setting: postgresql:// or postgres:// URLs
 * (and libpq "key=value" conninfo strings) are PostgreSQL, anything else a
 * SQLite file path. */
const struct db_driver *db_driver_for(const char *target);

/* The statement-level calls the domain code makes. */
static inline void db_bind_int64(struct db_stmt *st, int idx, int64_t v)
{
	st->drv->bind_int64(st, idx, v);
}
static inline void db_bind_null(struct db_stmt *st, int idx)
{
	st->drv->bind_null(st, idx);
}
static inline int db_step(struct db_stmt *st)
{
	return st->drv->step(st);
}
static inline void db_reset(struct db_stmt *st)
{
	st->drv->reset(st);
}
static inline bool db_col_null(struct db_stmt *st, int col)
{
	return st->drv->col_null(st, col);
}
static inline int64_t db_col_int64(struct db_stmt *st, int col)
{
	return st->drv->col_int64(st, col);
}
static inline const char *db_col_text(struct db_stmt *st, int col)
{
	return st->drv->col_text(st, col);
}
static inline size_t db_col_bytes(struct db_stmt *st, int col)
{
	return st->drv->col_bytes(st, col);
}
static inline int db_col_count(struct db_stmt *st)
{
	return st->drv->col_count(st);
}

#endif
