/*
 * core.c - SQLite connections, the statement cache, transactions, the
 * migration runner and maintenance (backup, integrity check).
 *
 * Every connection runs in WAL mode with foreign keys on and a busy timeout,
 * so readers never block the writer and a writer waits its turn instead of
 * failing. synchronous=NORMAL in WAL mode keeps every committed transaction
 * across a process crash (kill -9); only an OS crash or power loss can lose
 * the last transactions, which is the trade SQLite recommends for WAL.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *db_path;
static pthread_key_t thread_key;
static pthread_once_t thread_once = PTHREAD_ONCE_INIT;

cp_rc db_rc(struct db *db, int rc)
{
	switch (rc) {
	case DB_DONE:
	case DB_ROW:
		return CP_OK;
	case DB_E_BUSY:
	case DB_E_RETRY:
		return CP_ERR_BUSY;
	case DB_E_CONSTRAINT:
		return CP_ERR_CONFLICT;
	case DB_E_NOMEM:
		return CP_ERR_NOMEM;
	case DB_E_TOOBIG:
		return CP_ERR_TOO_LARGE;
	default:
		cp_logf(CP_LOG_ERROR, "db.error", "%s %d: %s", db ? db->drv->name : "db", rc,
			db && db->conn ? db->drv->errmsg(db->conn) : "?");
		return CP_ERR_INTERNAL;
	}
}

cp_rc db_exec(struct db *db, const char *sql)
{
	int rc;

	assert(db && sql);
	rc = db->drv->exec(db->conn, sql);
	if (rc != DB_DONE && rc != DB_E_BUSY && rc != DB_E_RETRY)
		cp_logf(CP_LOG_ERROR, "db.exec", "%s", db->drv->errmsg(db->conn));
	return db_rc(db, rc);
}

cp_rc db_open(const char *target, struct db **out)
{
	struct db *db;
	cp_rc rc = CP_ERR_NOMEM;

	assert(out && target);
	db = calloc(1, sizeof(*db));
	if (!db)
		goto out;
	db->drv = db_driver_for(target);
	rc = db->drv->open(target, &db->conn);
	if (rc != CP_OK)
		goto out;
	*out = db;
	db = NULL;
out:
	db_close(db);
	return rc;
}

void db_close(struct db *db)
{
	if (!db)
		return;
	for (size_t i = 0; i < CP_ARRAY_LEN(db->cache); i++)
		db->drv->finalize(db->cache[i].stmt);
	if (db->conn)
		db->drv->close(db->conn);
	free(db);
}

static void thread_db_free(void *p)
{
	db_close(p);
}

static void thread_key_init(void)
{
	pthread_key_create(&thread_key, thread_db_free);
}

void db_set_path(const char *path)
{
	free(db_path);
	db_path = cp_strdup(path);
	pthread_once(&thread_once, thread_key_init);
}

struct db *db_thread(void)
{
	struct db *db;

	pthread_once(&thread_once, thread_key_init);
	db = pthread_getspecific(thread_key);
	if (db || !db_path)
		return db;
	if (db_open(db_path, &db) != CP_OK)
		return NULL;
	pthread_setspecific(thread_key, db);
	return db;
}

void db_thread_close(void)
{
	struct db *db;

	pthread_once(&thread_once, thread_key_init);
	db = pthread_getspecific(thread_key);
	pthread_setspecific(thread_key, NULL);
	db_close(db);
}

struct db_stmt *db_stmt(struct db *db, const char *sql)
{
	size_t n = CP_ARRAY_LEN(db->cache);
	size_t h = ((uintptr_t)sql >> 3) % n;

	assert(db && sql);
	for (size_t i = 0; i < n; i++) {
		size_t j = (h + i) % n;
		if (db->cache[j].sql == sql) {
			db_reset(db->cache[j].stmt);
			db->cache[j].stmt->drv->clear(db->cache[j].stmt);
			return db->cache[j].stmt;
		}
		if (!db->cache[j].sql) {
			struct db_stmt *st = NULL;
			if (db_prepare(db, sql, &st) != DB_DONE)
				return NULL;
			db->cache[j].sql = sql;
			db->cache[j].stmt = st;
			return st;
		}
	}
	/* The cache is sized above the number of queries in the program. */
	cp_logf(CP_LOG_ERROR, "db.prepare", "statement cache full");
	return NULL;
}

int db_prepare(struct db *db, const char *sql, struct db_stmt **out)
{
	int rc;

	assert(db && sql && out);
	*out = NULL;
	rc = db->drv->prepare(db->conn, sql, out);
	if (rc != DB_DONE)
		cp_logf(CP_LOG_ERROR, "db.prepare", "%s", db->drv->errmsg(db->conn));
	return rc;
}

void db_finalize(struct db *db, struct db_stmt *st)
{
	assert(db);
	db->drv->finalize(st);
}

uint64_t db_commits(const struct db *db)
{
	assert(db);
	return db->commits;
}

int64_t db_changes(struct db *db)
{
	assert(db);
	return db->drv->changes(db->conn);
}

bool db_write_gen(struct db *db, uint64_t *gen)
{
	assert(db && gen);
	return db->drv->write_gen && db->drv->write_gen(gen);
}

bool db_in_tx(struct db *db)
{
	assert(db);
	return db->drv->in_tx(db->conn);
}

void db_bind_textn(struct db_stmt *st, int idx, const char *s, size_t len)
{
	st->drv->bind_text(st, idx, s, len);
}

void db_bind_text(struct db_stmt *st, int idx, const char *s)
{
	st->drv->bind_text(st, idx, s, s ? strlen(s) : 0);
}

void db_bind_json(struct db_stmt *st, int idx, const json_t *v)
{
	char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

	db_bind_text(st, idx, s);
	free(s);
}

cp_rc db_exec_stmt(struct db *db, struct db_stmt *st)
{
	int rc;

	assert(db);
	if (!st)
		return CP_ERR_INTERNAL;
	rc = db_step(st);
	db_reset(st);
	/* a statement run outside a transaction is its own (db_commits) */
	if ((rc == DB_DONE || rc == DB_ROW) && !db_in_tx(db))
		db->commits++;
	return rc == DB_DONE || rc == DB_ROW ? CP_OK : db_rc(db, rc);
}

cp_rc db_exec_one(struct db *db, struct db_stmt *st)
{
	cp_rc rc = db_exec_stmt(db, st);

	if (rc == CP_OK && db_changes(db) == 0)
		rc = CP_ERR_NOT_FOUND;
	return rc;
}

cp_rc db_fetch_json(struct db *db, struct db_stmt *st, json_t **out)
{
	cp_rc rc;
	int r;

	assert(db && out);
	if (!st)
		return CP_ERR_INTERNAL;
	r = db_step(st);
	if (r == DB_DONE) {
		rc = CP_ERR_NOT_FOUND;
	} else if (r == DB_ROW) {
		*out = json_loadb(db_col_text(st, 0), (size_t)db_col_bytes(st, 0), 0, NULL);
		rc = *out ? CP_OK : CP_ERR_INTERNAL;
	} else {
		rc = db_rc(db, r);
	}
	db_reset(st);
	return rc;
}

void db_jw_text(struct cp_jw *w, struct db_stmt *st, int col)
{
	const char *s = db_col_text(st, col);

	cp_jw_str(w, s, s ? (size_t)db_col_bytes(st, col) : 0);
}

void db_jw_int(struct cp_jw *w, struct db_stmt *st, int col)
{
	if (db_col_null(st, col))
		cp_jw_null(w);
	else
		cp_jw_int(w, db_col_int64(st, col));
}

void db_jw_bool(struct cp_jw *w, struct db_stmt *st, int col)
{
	if (db_col_null(st, col))
		cp_jw_null(w);
	else
		cp_jw_bool(w, db_col_int64(st, col) != 0);
}

void db_jw_time(struct cp_jw *w, struct db_stmt *st, int col)
{
	if (db_col_null(st, col))
		cp_jw_null(w);
	else
		cp_jw_time(w, db_col_int64(st, col));
}

void db_jw_json(struct cp_jw *w, struct db_stmt *st, int col)
{
	const char *s = db_col_text(st, col);

	cp_jw_raw(w, s, s ? (size_t)db_col_bytes(st, col) : 0);
}

cp_rc db_json_from_buf(const struct cp_buf *b, json_t **out)
{
	assert(b && out);
	*out = json_loadb(cp_buf_str(b), b->len, 0, NULL);
	return *out ? CP_OK : CP_ERR_INTERNAL;
}

cp_rc db_fetch_page_render(struct db *db, struct db_stmt *st, int limit, db_row_render_fn render,
			   struct db_list *out)
{
	struct cp_buf b;
	cp_rc rc = CP_OK;
	int r = DB_DONE, n = 0;
	int64_t last = 0;

	assert(db && out && render && limit >= 1 && limit <= 500);
	cp_buf_init(&b, DB_RENDER_MAX);
	out->data = json_array();
	out->next = 0;
	if (!st || !out->data) {
		rc = CP_ERR_INTERNAL;
		goto out;
	}
	while ((r = db_step(st)) == DB_ROW) {
		struct cp_jw w;
		json_t *row = NULL;
		if (n == limit) {
			/* One more row exists: the page ends at the last one kept. */
			out->next = last;
			break;
		}
		last = db_col_int64(st, 0);
		cp_buf_reset(&b);
		cp_jw_init(&w, &b);
		rc = render(db, st, &w);
		if (rc == CP_OK)
			rc = cp_jw_rc(&w);
		if (rc == CP_OK)
			rc = db_json_from_buf(&b, &row);
		if (rc != CP_OK)
			goto out;
		json_array_append_new(out->data, row);
		n++;
	}
	if (r != DB_ROW && r != DB_DONE)
		rc = db_rc(db, r);
out:
	if (st)
		db_reset(st);
	cp_buf_free(&b);
	if (rc != CP_OK) {
		json_decref(out->data);
		out->data = NULL;
	}
	return rc;
}

cp_rc db_fetch_page(struct db *db, struct db_stmt *st, int limit, struct db_list *out)
{
	cp_rc rc = CP_OK;
	int r, n = 0;
	int64_t last = 0;

	assert(db && out && limit >= 1 && limit <= 500);
	out->data = json_array();
	out->next = 0;
	if (!st || !out->data) {
		rc = CP_ERR_INTERNAL;
		goto out;
	}
	while ((r = db_step(st)) == DB_ROW) {
		json_t *row;
		if (n == limit) {
			/* One more row exists: the page ends at the last one kept. */
			out->next = last;
			break;
		}
		last = db_col_int64(st, 0);
		row = json_loadb(db_col_text(st, 1), (size_t)db_col_bytes(st, 1), 0, NULL);
		if (!row) {
			rc = CP_ERR_INTERNAL;
			goto out;
		}
		json_array_append_new(out->data, row);
		n++;
	}
	if (r != DB_ROW && r != DB_DONE)
		rc = db_rc(db, r);
out:
	if (st)
		db_reset(st);
	if (rc != CP_OK) {
		json_decref(out->data);
		out->data = NULL;
	}
	return rc;
}

struct db_stmt *db_stmt_keyed(struct db *db, const char *sql, const char *k1, const char *k2)
{
	struct db_stmt *st = db_stmt(db, sql);

	if (st) {
		db_bind_text(st, 1, k1);
		db_bind_text(st, 2, k2);
	}
	return st;
}

struct db_stmt *db_stmt_new_row(struct db *db, const char *sql, char id[CP_UUID_LEN + 1],
				const char *k2)
{
	cp_uuid(id);
	return db_stmt_keyed(db, sql, id, k2);
}

cp_rc db_get_scoped(struct db *db, const char *sql, const char *tenant_id, const char *id,
		    json_t **out)
{
	return db_fetch_json(db, db_stmt_keyed(db, sql, tenant_id, id), out);
}

cp_rc db_delete_scoped(struct db *db, const char *sql, const char *tenant_id, const char *id)
{
	return db_exec_one(db, db_stmt_keyed(db, sql, tenant_id, id));
}

int64_t db_page_from(struct db_page pg)
{
	assert(pg.after >= 0);
	return pg.desc && pg.after == 0 ? INT64_MAX : pg.after;
}

void db_list_bind(struct db_stmt *st, int from, int limit, struct db_page pg)
{
	assert(st && from > 0 && limit > 0 && from != limit);
	assert(pg.limit > 0);
	db_bind_int64(st, from, db_page_from(pg));
	db_bind_int64(st, limit, pg.limit + 1);
}

struct db_stmt *db_stmt_page(struct db *db, const char *const sql[2], const char *tenant_id,
			     const char *parent, struct db_page pg)
{
	struct db_stmt *st = db_stmt_keyed(db, sql[pg.desc ? 1 : 0], tenant_id, parent);

	assert(pg.limit > 0);
	if (st)
		db_list_bind(st, 3, 4, pg);
	return st;
}

cp_rc db_list_scoped(struct db *db, const char *const sql[2], const char *tenant_id,
		     const char *parent, struct db_page pg, struct db_list *out)
{
	return db_fetch_page(db, db_stmt_page(db, sql, tenant_id, parent, pg), pg.limit, out);
}

cp_rc db_exec_at(struct db *db, const char *sql, const char *key, int64_t t)
{
	struct db_stmt *st = db_stmt_keyed(db, sql, key, NULL);

	if (st)
		db_bind_int64(st, 2, t);
	return db_exec_stmt(db, st);
}

cp_rc db_list_filtered(struct db *db, const char *const sql[2], const char *tenant_id,
		       const char *parent, const char *filter, struct db_page pg,
		       struct db_list *out)
{
	struct db_stmt *st = db_stmt_page(db, sql, tenant_id, parent, pg);

	if (st)
		db_bind_text(st, 5, filter);
	return db_fetch_page(db, st, pg.limit, out);
}

cp_rc db_step_row(struct db *db, struct db_stmt *st)
{
	int r;

	if (!st)
		return CP_ERR_INTERNAL;
	r = db_step(st);
	if (r == DB_ROW)
		return CP_OK;
	db_reset(st);
	return r == DB_DONE ? CP_ERR_NOT_FOUND : db_rc(db, r);
}

cp_rc db_probe(struct db *db, struct db_stmt *st)
{
	cp_rc rc = db_step_row(db, st);

	if (rc == CP_OK)
		db_reset(st);
	return rc;
}

cp_rc db_unused_or_conflict(struct db *db, const char *sql, const char *tenant_id, const char *id)
{
	cp_rc rc = db_probe(db, db_stmt_keyed(db, sql, tenant_id, id));

	if (rc == CP_OK)
		return CP_ERR_CONFLICT;
	return rc == CP_ERR_NOT_FOUND ? CP_OK : rc;
}

void db_column_copy(struct db_stmt *st, int col, char *buf, size_t cap)
{
	const char *s = db_col_text(st, col);

	assert(buf && cap > 0);
	snprintf(buf, cap, "%s", s ? s : "");
}

cp_rc db_fetch_text(struct db *db, struct db_stmt *st, char *buf, size_t cap)
{
	cp_rc rc = db_step_row(db, st);

	if (rc == CP_OK) {
		db_column_copy(st, 0, buf, cap);
		db_reset(st);
	}
	return rc;
}

cp_rc db_fetch_int64(struct db *db, struct db_stmt *st, int64_t *out)
{
	cp_rc rc = db_step_row(db, st);

	if (rc == CP_OK) {
		*out = db_col_int64(st, 0);
		db_reset(st);
	}
	return rc;
}

/* Open a write transaction with begin, one of the dialect's BEGIN
 * statements: db_begin's and db_begin_rmw's one worker. */
static cp_rc begin_with(struct db *db, const char *begin)
{
	assert(db && begin);
	/* No nesting: a programmer error, refused here on every engine, since
	 * PostgreSQL only warns about a BEGIN inside a transaction (SQLite
	 * refuses it), and a caller would go on thinking it began its own. */
	if (db_in_tx(db)) {
		cp_logf(CP_LOG_ERROR, "db.begin", "a transaction is already open");
		return CP_ERR_INTERNAL;
	}
	return db_exec_stmt(db, db_stmt(db, begin));
}

cp_rc db_begin(struct db *db)
{
	assert(db);
	return begin_with(db, db_dialect(db)->begin_write);
}

cp_rc db_begin_rmw(struct db *db)
{
	assert(db);
	return begin_with(db, db_dialect(db)->begin_rmw);
}

cp_rc db_read_begin(struct db *db, bool *began)
{
	cp_rc rc;

	assert(db && began);
	*began = false;
	if (db_in_tx(db))
		return CP_OK; /* inside the caller's transaction already */
	rc = db_exec_stmt(db, db_stmt(db, db_dialect(db)->begin_read));
	*began = rc == CP_OK;
	return rc;
}

void db_read_end(struct db *db, bool began)
{
	static const char sql[] = "COMMIT";

	assert(db);
	/* A read-only transaction: COMMIT only releases the snapshot. */
	if (began && db_exec_stmt(db, db_stmt(db, sql)) != CP_OK)
		db_rollback(db);
}

cp_rc db_commit(struct db *db)
{
	static const char sql[] = "COMMIT";
	cp_rc rc;

	assert(db);
	/* Nothing to commit is a programmer error (the caller lost track of
	 * its transaction): PostgreSQL only warns, SQLite refuses; refuse on
	 * both. */
	if (!db_in_tx(db)) {
		cp_logf(CP_LOG_ERROR, "db.commit", "no transaction is open");
		return CP_ERR_INTERNAL;
	}
	rc = db_exec_stmt(db, db_stmt(db, sql));
	if (rc != CP_OK)
		db_rollback(db);
	else
		db->commits++;
	db_auth_committed(db); /* after COMMIT: see the auth cache (tenants.c) */
	/* and wake the event streams (events.c) */
	db_event_committed(db, rc == CP_OK);
	return rc;
}

void db_rollback(struct db *db)
{
	if (db && db_in_tx(db))
		(void)db->drv->exec(db->conn, "ROLLBACK");
	if (db)
		db_auth_committed(db);
	if (db)
		db_event_committed(db, false);
}

/* A migration's version is the number its file name starts with: the two
 * folders share one numbering (PostgreSQL's first file brings a database
 * at once to the version SQLite reaches in many steps). */
static int migration_version(const struct db_migration *m)
{
	long v = strtol(m->name, NULL, 10);

	assert(v > 0 && v < 100000); /* the embedded names are ours: NNN_what.sql */
	return (int)v;
}

int db_schema_version(void)
{
	extern const struct db_migration db_migrations[];
	extern const size_t db_migrations_count;

	assert(db_migrations_count > 0);
	return migration_version(&db_migrations[db_migrations_count - 1]);
}

/* The schema version recorded in db, inside the caller's transaction; 0
 * for an empty database. */
static cp_rc schema_version_read(struct db *db, int *version)
{
	struct db_stmt *st = db_stmt(db, db_dialect(db)->version_get);
	int r;

	*version = 0;
	if (!st)
		return CP_ERR_INTERNAL;
	r = db_step(st);
	if (r == DB_ROW)
		*version = (int)db_col_int64(st, 0);
	db_reset(st);
	return r == DB_ROW || r == DB_DONE ? CP_OK : db_rc(db, r);
}

/* Apply the first migration past the recorded version, in one transaction
 * that holds the dialect's migration lock, so instances started together
 * apply each migration once. *done when none was left. */
static cp_rc migrate_step(struct db *db, int *from, bool *done)
{
	const struct db_dialect *d = db_dialect(db);
	const struct db_migration *m = NULL;
	char *set = NULL;
	int version;
	cp_rc rc;

	rc = db_exec(db, d->begin_write);
	if (rc != CP_OK)
		return rc;
	if (d->migrate_lock)
		rc = db_exec(db, d->migrate_lock);
	if (rc == CP_OK)
		rc = schema_version_read(db, &version);
	if (rc != CP_OK)
		goto out;
	if (from && *from < 0)
		*from = version;
	for (size_t i = 0; i < *d->migrations_count && !m; i++)
		if (migration_version(&d->migrations[i]) > version)
			m = &d->migrations[i];
	if (!m) {
		*done = true;
		if (version > db_schema_version()) {
			cp_logf(CP_LOG_ERROR, "db.migrate",
				"database schema %d is newer than this binary (%d)", version,
				db_schema_version());
			rc = CP_ERR_INVALID;
		}
		goto out;
	}
	set = cp_aprintf(d->version_set, migration_version(m));
	rc = set ? db_exec(db, (const char *)m->sql) : CP_ERR_NOMEM;
	if (rc == CP_OK)
		rc = db_exec(db, set);
	if (rc != CP_OK)
		cp_logf(CP_LOG_ERROR, "db.migrate", "migration %s failed", m->name);
out:
	if (rc == CP_OK)
		rc = db_exec(db, "COMMIT");
	if (rc != CP_OK)
		db_rollback(db);
	else if (m)
		cp_logf(CP_LOG_INFO, "db.migrate", "applied %s", m->name);
	free(set);
	return rc;
}

cp_rc db_migrate(struct db *db, int *from, int *to)
{
	bool done = false;
	int first = -1;
	cp_rc rc = CP_OK;

	assert(db);
	while (rc == CP_OK && !done)
		rc = migrate_step(db, &first, &done);
	if (from)
		*from = first < 0 ? 0 : first;
	if (rc == CP_OK && to)
		*to = db_schema_version();
	return rc;
}

cp_rc db_schema_check(struct db *db, int *have)
{
	bool began = false;
	cp_rc rc;

	assert(db && have);
	rc = db_read_begin(db, &began);
	if (rc == CP_OK)
		rc = schema_version_read(db, have);
	db_read_end(db, began);
	if (rc == CP_OK && *have != db_schema_version())
		rc = CP_ERR_INVALID;
	return rc;
}

cp_rc db_backup(struct db *db, const char *dest)
{
	const char *sql = db_dialect(db)->backup;
	struct db_stmt *st = NULL;
	cp_rc rc = CP_ERR_IO;
	int fd, r;

	assert(db && dest);
	if (!sql) {
		cp_logf(CP_LOG_ERROR, "db.backup",
			"%s has no online backup here: use its own tools", db->drv->name);
		return CP_ERR_INVALID;
	}
	/* The copy holds every sealed secret and hash: create it here, empty,
	 * exclusively and 0600 (VACUUM INTO accepts an empty file), so it is
	 * never an existing file or a symlink's target nor readable by others,
	 * whatever the umask. */
	fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno == EEXIST ? CP_ERR_CONFLICT : CP_ERR_IO;
	if (fchmod(fd, 0600) != 0 || close(fd) != 0)
		goto out;
	fd = -1;
	if ((r = db_prepare(db, sql, &st)) != DB_DONE) {
		rc = db_rc(db, r);
		goto out;
	}
	db_bind_text(st, 1, dest);
	rc = db_rc(db, db_step(st));
	/* Durable before we say "written". */
	if (rc == CP_OK) {
		fd = open(dest, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		rc = fd >= 0 && fsync(fd) == 0 ? CP_OK : CP_ERR_IO;
	}
out:
	if (fd >= 0)
		close(fd);
	if (st)
		db_finalize(db, st);
	if (rc != CP_OK)
		unlink(dest); /* ours: created above */
	return rc;
}

cp_rc db_integrity_check(struct db *db, bool *ok)
{
	const char *sql = db_dialect(db)->integrity_check;
	struct db_stmt *st = NULL;
	cp_rc rc;
	int r;

	assert(db && ok);
	*ok = false;
	if (!sql) {
		*ok = true; /* nothing we can check from here */
		return CP_OK;
	}
	if ((r = db_prepare(db, sql, &st)) != DB_DONE)
		return db_rc(db, r);
	r = db_step(st);
	if (r == DB_ROW) {
		const char *v = db_col_text(st, 0);
		*ok = v && strcmp(v, "ok") == 0;
		rc = CP_OK;
	} else {
		rc = r == DB_DONE ? CP_ERR_INTERNAL : db_rc(db, r);
	}
	db_finalize(db, st);
	return rc;
}

cp_rc db_ping(struct db *db)
{
	assert(db);
	return db_exec_stmt(db, db_stmt(db, db_dialect(db)->ping));
}

cp_rc db_delete_batch(struct db *db, const char *sql, int64_t cutoff, int limit, int *deleted)
{
	struct db_stmt *st;
	cp_rc rc;

	assert(db && sql && deleted && limit > 0);
	*deleted = 0;
	st = db_stmt(db, sql);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 1, cutoff);
	db_bind_int64(st, 2, limit);
	rc = db_exec_stmt(db, st);
	if (rc == CP_OK)
		*deleted = (int)db_changes(db);
	return rc;
}

void db_jw_fields(struct cp_jw *w, struct db_stmt *st, int c0, const struct db_jw_field *f,
		  size_t n)
{
	assert(w && st && f && db_col_count(st) >= c0 + (int)n);
	for (size_t i = 0; i < n; i++) {
		int col = c0 + (int)i;
		cp_jw_key(w, f[i].key);
		switch (f[i].kind) {
		case DB_JW_TEXT:
			db_jw_text(w, st, col);
			break;
		case DB_JW_INT:
			db_jw_int(w, st, col);
			break;
		case DB_JW_TIME:
			db_jw_time(w, st, col);
			break;
		case DB_JW_JSON:
			db_jw_json(w, st, col);
			break;
		case DB_JW_BOOL:
			if (db_col_null(st, col))
				cp_jw_null(w);
			else
				cp_jw_bool(w, db_col_int64(st, col) != 0);
			break;
		}
	}
}

/* The one-row worker of db_fetch_fields and db_fetch_render: render
 * (fields f when render is NULL) st's row into a JSON value. */
static cp_rc fetch_one(struct db *db, struct db_stmt *st, db_row_render_fn render,
		       const struct db_jw_field *f, size_t n, json_t **out)
{
	struct cp_buf b;
	struct cp_jw w;
	cp_rc rc;

	assert(db && out);
	*out = NULL;
	rc = db_step_row(db, st);
	if (rc != CP_OK)
		return rc;
	cp_buf_init(&b, DB_RENDER_MAX);
	cp_jw_init(&w, &b);
	if (render) {
		rc = render(db, st, &w);
	} else {
		cp_jw_open(&w, '{');
		db_jw_fields(&w, st, 0, f, n);
		cp_jw_close(&w, '}');
	}
	db_reset(st);
	if (rc == CP_OK)
		rc = cp_jw_rc(&w);
	if (rc == CP_OK)
		rc = db_json_from_buf(&b, out);
	cp_buf_free(&b);
	return rc;
}

cp_rc db_fetch_fields(struct db *db, struct db_stmt *st, const struct db_jw_field *f, size_t n,
		      json_t **out)
{
	assert(f);
	return fetch_one(db, st, NULL, f, n, out);
}

cp_rc db_fetch_render(struct db *db, struct db_stmt *st, db_row_render_fn render, json_t **out)
{
	assert(render);
	return fetch_one(db, st, render, NULL, 0, out);
}
