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
	char path[128];
	struct db *db;
};

/* Make f->dir, open and migrate f->path in it. false on any failure. */
static inline bool fx_open(struct fx *f, const char *name)
{
	cp_log_set_level(CP_LOG_ERROR); /* the error paths below log on purpose */
	snprintf(f->dir, sizeof(f->dir), "/tmp/cp-%s-XXXXXX", name);
	if (!mkdtemp(f->dir))
		return false;
	snprintf(f->path, sizeof(f->path), "%s/certplane.db", f->dir);
	f->db = NULL;
	if (db_open(f->path, &f->db) != CP_OK)
		return false;
	return db_migrate(f->db, NULL, NULL) == CP_OK;
}

/* Close the database and remove f->dir with every file in it. */
static inline void fx_close(struct fx *f)
{
	DIR *d;
	struct dirent *e;
	char p[384];

	db_close(f->db);
	f->db = NULL;
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

/* Raw SQL on the test's connection; true when it ran. */
static inline bool fx_sql(struct db *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db_sqlite_handle(db), sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK)
		fprintf(stderr, "fixture sql: %s: %s\n", sql, msg ? msg : "?");
	sqlite3_free(msg);
	return rc == SQLITE_OK;
}

/* The integer of the first column of sql's first row (-1 if none). */
static inline int64_t fx_int(struct db *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	int64_t v = -1;

	if (sqlite3_prepare_v2(db_sqlite_handle(db), sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static inline int fx_interrupt(void *arg)
{
	(void)arg;
	return 1;
}

/* on: every statement of db is interrupted (SQLITE_INTERRUPT) as it runs. */
static inline void fx_fail(struct db *db, bool on)
{
	sqlite3_progress_handler(db_sqlite_handle(db), 1, on ? fx_interrupt : NULL, NULL);
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
