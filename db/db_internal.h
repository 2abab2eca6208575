/*
 * db_internal.h - helpers shared by the files of the db module only. Never
 * included outside db/.
 */
#ifndef CP_DB_INTERNAL_H
#define CP_DB_INTERNAL_H

#include "db/db.h"

#include <sqlite3.h>

struct db {
	sqlite3 *h;
	/* Prepared statements cached by their SQL text's address: every query
	 * is a string literal, so the pointer identifies it. */
	struct {
		const char *sql;
		sqlite3_stmt *stmt;
	} cache[512];
};

/* Map a SQLite result code to cp_rc (BUSY, CONFLICT for constraints...). */
cp_rc db_rc(struct db *db, int rc);
/* Cached prepared statement for a string-literal sql, reset and unbound.
 * Borrowed: do not finalize. NULL on error (logged). */
sqlite3_stmt *db_stmt(struct db *db, const char *sql);
/* Bind text or NULL. */
void db_bind_text(sqlite3_stmt *st, int idx, const char *s);
/* Bind a JSON value encoded compactly (NULL -> SQL NULL). */
void db_bind_json(sqlite3_stmt *st, int idx, const json_t *v);
/* Step a statement that returns no rows; CP_ERR_CONFLICT on constraint. */
cp_rc db_exec_stmt(struct db *db, sqlite3_stmt *st) CP_WUR;
/* db_exec_stmt for a statement that must change a row (UPDATE/DELETE of
 * one tenant's object): CP_ERR_NOT_FOUND when it changed none. */
cp_rc db_exec_one(struct db *db, sqlite3_stmt *st) CP_WUR;
/* Execute a statement whose first column is a JSON object text; one row
 * -> *out, no row -> CP_ERR_NOT_FOUND. */
cp_rc db_fetch_json(struct db *db, sqlite3_stmt *st, json_t **out) CP_WUR;
/* Execute a statement returning (seq, json) rows with LIMIT pg.limit + 1;
 * fills out->data and out->next. */
cp_rc db_fetch_page(struct db *db, sqlite3_stmt *st, int limit, struct db_list *out) CP_WUR;
/* Raw SQL (multiple statements), for migrations and maintenance. */
cp_rc db_exec(struct db *db, const char *sql) CP_WUR;

/* *other = whether a tenant other than tenant_id holds hostname verified
 * (hostname_claims.c). */
cp_rc db_hostname_verified_elsewhere(struct db *db, const char *tenant_id, const char *hostname,
				     bool *other) CP_WUR;

/* SQL fragment rendering a unix-seconds column as RFC 3339 text. */
#define DB_TS(col) "strftime('%Y-%m-%dT%H:%M:%SZ', " col ", 'unixepoch')"

#endif
