/*
 * driver_sqlite.c - the embedded SQLite engine behind db/driver.h, the
 * default backend (one process on one file).
 *
 * Every connection runs in WAL mode with foreign keys on and a busy timeout,
 * so readers never block the writer and a writer waits its turn instead of
 * failing. synchronous=NORMAL in WAL mode keeps every committed transaction
 * across a process crash (kill -9); only an OS crash or power loss can lose
 * the last transactions, which is the trade SQLite recommends for WAL.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Page cache per connection: cache_size in KiB when negative (1 MiB). */
#define SQ_CACHE_SIZE "-1024"

struct sq_conn {
	sqlite3 *h;
	int autocheckpoint; /* WAL pages that start a checkpoint (sq_wal_hook) */
};

/*
 * The write generation (driver.h write_gen; the read cache of
 * api/read_cache.c trusts it instead of reading the database).
 *
 * sqlite3_wal_hook's callback runs after every commit of a connection in
 * WAL mode, once the commit is in the WAL index (visible to any read
 * transaction that begins from then on) and the write lock is released:
 * autocommit statements, API handlers, workers and the scheduler alike,
 * since every connection of the process is opened here. It bumps
 * sq_write_gen with release order, so a reader that loads the generation
 * (acquire) and then begins its read either loaded the old value (and what
 * it renders is stored under a generation that is already stale) or the
 * new one, and then its snapshot began after the commit was visible and
 * includes it. The hook runs inside the sqlite3_step that commits, so a
 * writer's db_commit (or autocommit statement) returns only after the bump:
 * any request that begins after a write was answered finds the generation
 * moved and never meets an entry rendered before it (read-your-writes). An
 * entry rendered in the instant between a commit's visibility and its bump
 * is stored under the old generation and dies with it. A rolled-back or
 * empty transaction writes no frame and calls no hook: nothing changed.
 *
 * The hook replaces SQLite's own auto-checkpoint hook (sqlite3_wal_hook and
 * wal_autocheckpoint share one slot), so it does what that one does: a
 * PASSIVE checkpoint once the WAL holds at least the connection's configured
 * wal_autocheckpoint pages (read before the hook is installed; 0 = off).
 *
 * Other processes' writes call no hook here. On a file that is only
 * certplane serve's (its data_dir lock, server/main.c) there are none; the
 * caller decides whether to trust that (api_ctx.read_cache). A connection
 * that could not enter WAL mode (it would write without the hook) turns the
 * generation off for the whole process: sq_write_gen_ok.
 */
static _Atomic uint64_t sq_write_gen = 1;
static _Atomic bool sq_write_gen_ok = true;

static int sq_wal_hook(void *arg, sqlite3 *h, const char *schema, int pages)
{
	const struct sq_conn *c = arg;

	atomic_fetch_add_explicit(&sq_write_gen, 1, memory_order_release);
	if (c->autocheckpoint > 0 && pages >= c->autocheckpoint)
		(void)sqlite3_wal_checkpoint_v2(h, schema, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
	return SQLITE_OK;
}

static bool sq_write_gen_get(uint64_t *gen)
{
	assert(gen);
	if (!atomic_load_explicit(&sq_write_gen_ok, memory_order_acquire))
		return false;
	*gen = atomic_load_explicit(&sq_write_gen, memory_order_acquire);
	return true;
}

/* The answer of a one-row PRAGMA as text into out (cap bytes) and as an
 * integer into *num; false when it gives none. */
static bool sq_pragma(sqlite3 *h, const char *sql, char *out, size_t cap, int *num)
{
	sqlite3_stmt *st = NULL;
	bool ok = false;

	if (sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
		snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
		*num = sqlite3_column_int(st, 0);
		ok = true;
	}
	sqlite3_finalize(st);
	return ok;
}

/* Install the write generation's hook on c (in WAL mode, else the
 * generation is off for good). */
static void sq_hook_install(struct sq_conn *c)
{
	char v[32];
	int n = 0;

	if (!sq_pragma(c->h, "PRAGMA journal_mode", v, sizeof(v), &n) || strcmp(v, "wal") != 0) {
		atomic_store(&sq_write_gen_ok, false);
		return;
	}
	if (!sq_pragma(c->h, "PRAGMA wal_autocheckpoint", v, sizeof(v), &n))
		n = 0;
	c->autocheckpoint = n;
	sqlite3_wal_hook(c->h, sq_wal_hook, c);
}

struct sq_stmt {
	struct db_stmt base; /* first: the dispatchers in driver.h read it */
	sqlite3_stmt *h;
};

static struct sq_conn *sq_conn(struct db_conn *c)
{
	return (struct sq_conn *)c;
}

static sqlite3_stmt *sq_h(struct db_stmt *st)
{
	assert(st && st->drv == &db_driver_sqlite);
	return ((struct sq_stmt *)st)->h;
}

/* SQLite's result codes in the engine-neutral classes. */
static int sq_result(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
		return DB_DONE;
	case SQLITE_ROW:
		return DB_ROW;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return DB_E_BUSY;
	case SQLITE_CONSTRAINT:
		return DB_E_CONSTRAINT;
	case SQLITE_NOMEM:
		return DB_E_NOMEM;
	case SQLITE_TOOBIG:
		return DB_E_TOOBIG;
	default:
		return DB_E_OTHER;
	}
}

static pthread_once_t library_once = PTHREAD_ONCE_INIT;

/* Library-wide settings, before SQLite initialises itself. Memory statistics
 * off: they take one process-wide mutex on every allocation, which every
 * request thread would queue on. Multi-thread mode: a connection is never
 * used by two threads at once (one per thread), so no per-connection lock. */
static void library_init(void)
{
	sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	sqlite3_config(SQLITE_CONFIG_MULTITHREAD);
}

static void sq_close(struct db_conn *c)
{
	if (!c)
		return;
	sqlite3_close_v2(sq_conn(c)->h);
	free(c);
}

static cp_rc sq_open(const char *path, struct db_conn **out)
{
	struct sq_conn *c;
	char *msg = NULL;
	cp_rc rc = CP_ERR_NOMEM;

	assert(path && out);
	pthread_once(&library_once, library_init);
	c = calloc(1, sizeof(*c));
	if (!c)
		goto out;
	if (sqlite3_open_v2(path, &c->h,
			    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
			    NULL) != SQLITE_OK) {
		cp_logf(CP_LOG_ERROR, "db.open", "cannot open %s: %s", path,
			c->h ? sqlite3_errmsg(c->h) : "out of memory");
		rc = CP_ERR_IO;
		goto out;
	}
	sqlite3_busy_timeout(c->h, 5000);
	/* Memory stays flat whatever the database's size (issue 10): a page
	 * cache of SQ_CACHE_SIZE KiB per connection (one connection per thread,
	 * the threads fixed by config), temporary B-trees on disk rather than in
	 * RAM, and no memory map (mapped pages of a 6 GB file would count in
	 * the resident size). The OS page cache keeps the hot pages anyway. */
	if (sqlite3_exec(c->h,
			 "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
			 "PRAGMA foreign_keys=ON; PRAGMA temp_store=FILE;"
			 "PRAGMA cache_size=" SQ_CACHE_SIZE "; PRAGMA mmap_size=0;",
			 NULL, NULL, &msg) != SQLITE_OK) {
		cp_logf(CP_LOG_ERROR, "db.open", "%s: %s", path, msg ? msg : "?");
		rc = CP_ERR_IO;
		goto out;
	}
	sq_hook_install(c);
	*out = (struct db_conn *)c;
	c = NULL;
	rc = CP_OK;
out:
	sqlite3_free(msg);
	sq_close((struct db_conn *)c);
	return rc;
}

static int sq_prepare(struct db_conn *c, const char *sql, struct db_stmt **out)
{
	struct sq_stmt *st = calloc(1, sizeof(*st));
	int rc;

	assert(c && sql && out);
	if (!st)
		return DB_E_NOMEM;
	rc = sqlite3_prepare_v3(sq_conn(c)->h, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->h, NULL);
	if (rc != SQLITE_OK) {
		sqlite3_finalize(st->h);
		free(st);
		return sq_result(rc) == DB_DONE ? DB_E_OTHER : sq_result(rc);
	}
	st->base.drv = &db_driver_sqlite;
	*out = &st->base;
	return DB_DONE;
}

static void sq_finalize(struct db_stmt *st)
{
	if (!st)
		return;
	sqlite3_finalize(sq_h(st));
	free(st);
}

static void sq_bind_int64(struct db_stmt *st, int idx, int64_t v)
{
	sqlite3_bind_int64(sq_h(st), idx, v);
}

static void sq_bind_text(struct db_stmt *st, int idx, const char *s, size_t len)
{
	if (s && len <= INT32_MAX)
		sqlite3_bind_text(sq_h(st), idx, s, (int)len, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(sq_h(st), idx);
}

static void sq_bind_null(struct db_stmt *st, int idx)
{
	sqlite3_bind_null(sq_h(st), idx);
}

static int sq_step(struct db_stmt *st)
{
	return sq_result(sqlite3_step(sq_h(st)));
}

static void sq_reset(struct db_stmt *st)
{
	sqlite3_reset(sq_h(st));
}

static void sq_clear(struct db_stmt *st)
{
	sqlite3_clear_bindings(sq_h(st));
}

static int sq_col_count(struct db_stmt *st)
{
	return sqlite3_column_count(sq_h(st));
}

static bool sq_col_null(struct db_stmt *st, int col)
{
	return sqlite3_column_type(sq_h(st), col) == SQLITE_NULL;
}

static int64_t sq_col_int64(struct db_stmt *st, int col)
{
	return sqlite3_column_int64(sq_h(st), col);
}

static const char *sq_col_text(struct db_stmt *st, int col)
{
	return (const char *)sqlite3_column_text(sq_h(st), col);
}

static size_t sq_col_bytes(struct db_stmt *st, int col)
{
	/* after col_text, as SQLite documents: the length of the text form */
	return (size_t)sqlite3_column_bytes(sq_h(st), col);
}

static int64_t sq_changes(struct db_conn *c)
{
	return sqlite3_changes64(sq_conn(c)->h);
}

static int sq_exec(struct db_conn *c, const char *sql)
{
	int rc = sqlite3_exec(sq_conn(c)->h, sql, NULL, NULL, NULL);

	return sq_result(rc) == DB_ROW ? DB_DONE : sq_result(rc);
}

static bool sq_in_tx(struct db_conn *c)
{
	return !sqlite3_get_autocommit(sq_conn(c)->h);
}

static const char *sq_errmsg(struct db_conn *c)
{
	const char *m = c ? sqlite3_errmsg(sq_conn(c)->h) : NULL;

	return m ? m : "?";
}

const struct db_driver db_driver_sqlite = {
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.prepare = sq_prepare,
	.finalize = sq_finalize,
	.bind_int64 = sq_bind_int64,
	.bind_text = sq_bind_text,
	.bind_null = sq_bind_null,
	.step = sq_step,
	.reset = sq_reset,
	.clear = sq_clear,
	.col_count = sq_col_count,
	.col_null = sq_col_null,
	.col_int64 = sq_col_int64,
	.col_text = sq_col_text,
	.col_bytes = sq_col_bytes,
	.changes = sq_changes,
	.exec = sq_exec,
	.in_tx = sq_in_tx,
	.errmsg = sq_errmsg,
	/* no notifications: one process, which wakes its own workers */
	.listen = NULL,
	.wait = NULL,
	.write_gen = sq_write_gen_get,
};

sqlite3 *db_sqlite_handle(struct db *db)
{
	assert(db && db->drv == &db_driver_sqlite);
	return sq_conn(db->conn)->h;
}
