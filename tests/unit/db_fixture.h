/*
 * db_fixture.h - what the storage unit tests (test_db*.c) share besides the
 * CHECK harness: a migrated database in a fresh mkdtemp directory that is
 * removed again, raw SQL on the connection to set up or break a table, and
 * a switch that makes every statement of the connection fail (a database
 * failure, as a full disk or an I/O error would give). Header-only: each
 * test file is its own program and includes this once, after check.h.
 */
#ifndef CP_TEST_DB_FIXTURE_H
#define CP_TEST_DB_FIXTURE_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db/db_internal.h"

#include <sqlite3.h>

struct fx {
	char dir[64];
	char path[512]; /* the database setting: a file, or a PostgreSQL URL */
	char pg_name[64];
	struct db *db;
};

/*
 * The backend under test: SQLite files by default; PostgreSQL when
 * CERTPLANE_TEST_DB=pg, on the server whose URL CERTPLANE_PG_URL names
 * (tests/testbed/pg-server's env), each fixture in a database of its own
 * (created here, dropped by fx_close).
 */
static inline bool fx_pg(void)
{
	const char *b = getenv("CERTPLANE_TEST_DB");
	return b && strcmp(b, "pg") == 0;
}

/* Run sql on the PostgreSQL server's maintenance database. */
static inline bool fx_pg_admin(const char *sql)
{
	const char *base = getenv("CERTPLANE_PG_URL");
	struct db *admin = NULL;
	bool ok;

	if (!base || !*base) {
		fprintf(stderr, "fixture: CERTPLANE_TEST_DB=pg needs CERTPLANE_PG_URL "
				"(tests/testbed/pg-server start DIR; . DIR/env)\n");
		return false;
	}
	ok = db_open(base, &admin) == CP_OK && db_exec(admin, sql) == CP_OK;
	db_close(admin);
	return ok;
}

/* The URL of database name on the server of CERTPLANE_PG_URL (whose path
 * names the maintenance database: postgresql://user@/postgres?host=...). */
static inline bool fx_pg_url(char *out, size_t cap, const char *name)
{
	const char *base = getenv("CERTPLANE_PG_URL");
	const char *slash = base ? strstr(base, "://") : NULL;
	const char *db = slash ? strchr(slash + 3, '/') : NULL;
	const char *rest = db ? db + strcspn(db, "?") : NULL;
	int n;

	if (!db)
		return false;
	n = snprintf(out, cap, "%.*s/%s%s", (int)(db - base), base, name, rest);
	return n > 0 && (size_t)n < cap;
}

/* Make f->dir, open and migrate the database (a file in f->dir, or a fresh
 * PostgreSQL database). false on any failure. */
static inline bool fx_open(struct fx *f, const char *name)
{
	static int seq;

	cp_log_set_level(CP_LOG_ERROR); /* the error paths below log on purpose */
	snprintf(f->dir, sizeof(f->dir), "/tmp/cp-%s-XXXXXX", name);
	if (!mkdtemp(f->dir))
		return false;
	f->db = NULL;
	f->pg_name[0] = '\0';
	if (fx_pg()) {
		char sql[160];
		snprintf(f->pg_name, sizeof(f->pg_name), "cpt_%d_%d", (int)getpid(), seq++);
		/* one at a time: DROP/CREATE DATABASE refuse a transaction block */
		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s", f->pg_name);
		if (!fx_pg_admin(sql))
			return false;
		snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->pg_name);
		if (!fx_pg_admin(sql) || !fx_pg_url(f->path, sizeof(f->path), f->pg_name))
			return false;
	} else {
		snprintf(f->path, sizeof(f->path), "%s/certplane.db", f->dir);
	}
	if (db_open(f->path, &f->db) != CP_OK)
		return false;
	return db_migrate(f->db, NULL, NULL) == CP_OK;
}

/* Close the database and remove f->dir with every file in it (and the
 * PostgreSQL database). */
static inline void fx_close(struct fx *f)
{
	DIR *d;
	struct dirent *e;
	char p[384];

	db_close(f->db);
	f->db = NULL;
	if (f->pg_name[0]) {
		snprintf(p, sizeof(p), "DROP DATABASE IF EXISTS %s", f->pg_name);
		(void)fx_pg_admin(p);
	}
	d = opendir(f->dir);
	while (d && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", f->dir, e->d_name);
		unlink(p);
	}
	if (d)
		closedir(d);
	rmdir(f->dir);
}

/* Raw SQL (several statements) on the test's connection; true when it ran. */
static inline bool fx_sql(struct db *db, const char *sql)
{
	bool ok = db_exec(db, sql) == CP_OK;

	if (!ok)
		fprintf(stderr, "fixture sql failed: %s\n", sql);
	return ok;
}

/* The integer of the first column of sql's first row (-1 if none). */
static inline int64_t fx_int(struct db *db, const char *sql)
{
	struct db_stmt *st = NULL;
	int64_t v = -1;

	if (db_prepare(db, sql, &st) == DB_DONE && db_step(st) == DB_ROW)
		v = db_col_int64(st, 0);
	if (st)
		db_finalize(db, st);
	return v;
}

static inline int fx_interrupt(void *arg)
{
	(void)arg;
	return 1;
}

/* on: every statement of db fails as it runs, as a full disk or an I/O
 * error would make it. SQLite: interrupted (SQLITE_INTERRUPT) by a
 * progress handler. PostgreSQL: the tables are looked up in a schema that
 * does not exist (a changed search_path re-plans even prepared statements). */
static inline void fx_fail(struct db *db, bool on)
{
	if (!fx_pg()) {
		sqlite3_progress_handler(db_sqlite_handle(db), 1, on ? fx_interrupt : NULL, NULL);
		return;
	}
	if (db_exec(db, on ? "SET search_path TO cp_fixture_nowhere"
			   : "SET search_path TO DEFAULT") != CP_OK)
		fprintf(stderr, "fixture: cannot switch failures %s\n", on ? "on" : "off");
}

/* SQLite: the texts of the statements a connection runs between
 * fx_trace_start and fx_trace_stop (at most 8; with prefixes, a
 * NULL-terminated list, only those starting with one of them). The caller
 * frees sql[0..n). */
struct fx_trace {
	const char *const *prefixes;
	char *sql[8];
	int n;
};

static inline int fx_trace_cb(unsigned type, void *ctx, void *p, void *x)
{
	struct fx_trace *t = ctx;
	const char *sql = sqlite3_sql(p);
	bool want = t->prefixes == NULL;

	(void)x;
	for (size_t i = 0; sql && !want && t->prefixes[i]; i++)
		want = strncmp(sql, t->prefixes[i], strlen(t->prefixes[i])) == 0;
	if (type == SQLITE_TRACE_STMT && sql && want && t->n < (int)CP_ARRAY_LEN(t->sql))
		t->sql[t->n++] = strdup(sql);
	return 0;
}

static inline void fx_trace_start(struct db *db, struct fx_trace *t)
{
	t->n = 0;
	sqlite3_trace_v2(db_sqlite_handle(db), SQLITE_TRACE_STMT, fx_trace_cb, t);
}

static inline void fx_trace_stop(struct db *db)
{
	sqlite3_trace_v2(db_sqlite_handle(db), 0, NULL, NULL);
}

/* SQLite: the EXPLAIN QUERY PLAN details of sql, one a line, into buf. */
static inline void fx_sqlite_plan(struct db *db, const char *sql, char *buf, size_t cap)
{
	sqlite3 *h = db_sqlite_handle(db);
	sqlite3_stmt *st = NULL;
	char *q = cp_aprintf("EXPLAIN QUERY PLAN %s", sql);
	size_t n = 0;

	buf[0] = '\0';
	if (q && sqlite3_prepare_v2(h, q, -1, &st, NULL) == SQLITE_OK)
		while (sqlite3_step(st) == SQLITE_ROW && n < cap)
			n += (size_t)snprintf(buf + n, cap - n, "%s\n",
					      (const char *)sqlite3_column_text(st, 3));
	sqlite3_finalize(st);
	free(q);
}

/* Print the node types and index names of a JSON plan, one a line. */
static inline void fx_pg_plan_print(const char *sql, const char *plan)
{
	fprintf(stderr, "plan of %s:\n", sql);
	for (const char *p = strstr(plan, "\"Node Type\""), *next; p; p = next) {
		const char *idx = strstr(p, "\"Index Name\"");

		next = strstr(p + 1, "\"Node Type\"");
		fprintf(stderr, "  %.*s", (int)strcspn(p, "\n"), p);
		if (idx && (!next || idx < next))
			fprintf(stderr, " %.*s", (int)strcspn(idx, "\n"), idx);
		fprintf(stderr, "\n");
	}
}

/* PostgreSQL: whether the plan of sql (no parameters) reads index by an
 * index scan (Index Scan, Index Only Scan or Bitmap Index Scan: the node
 * types EXPLAIN names an "Index Name" in). sql may be an EXECUTE of a
 * prepared statement. A fixture's tables are small, and the planner rightly
 * reads a few pages whole, so seq scans are off while it plans: the plan is
 * the one it takes for the tables at scale, and a query no index serves
 * still shows a Seq Scan. */
static inline bool fx_pg_plan_uses(struct db *db, const char *sql, const char *index)
{
	struct db_stmt *st = NULL;
	char *q = cp_aprintf("EXPLAIN (FORMAT JSON) %s", sql);
	char *want = cp_aprintf("\"Index Name\": \"%s\"", index);
	bool found = false;

	if (q && want && fx_sql(db, "SET enable_seqscan = off") &&
	    db_prepare(db, q, &st) == DB_DONE) {
		while (db_step(st) == DB_ROW) {
			const char *plan = db_col_text(st, 0);
			found |= plan && strstr(plan, want);
			if (!found && plan)
				fx_pg_plan_print(sql, plan);
		}
	}
	if (st)
		db_finalize(db, st);
	(void)fx_sql(db, "RESET enable_seqscan");
	free(q);
	free(want);
	return found;
}

/* The string member key of o, "" when absent or not a string. */
static inline const char *fx_str(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

/* A new tenant's id copied into id; the tenant JSON is not kept. */
static inline bool fx_tenant(struct db *db, const char *name, char id[CP_UUID_LEN + 1])
{
	json_t *t = NULL;
	bool ok = db_tenant_create(db, name, &t) == CP_OK;

	if (ok)
		snprintf(id, CP_UUID_LEN + 1, "%s", fx_str(t, "id"));
	json_decref(t);
	return ok;
}

static inline void fx_list_clear(struct db_list *l)
{
	json_decref(l->data);
	l->data = NULL;
	l->next = 0;
}

#endif
