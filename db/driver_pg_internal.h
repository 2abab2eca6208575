/*
 * driver_pg_internal.h - the parts of db/driver_pg.c that need no server,
 * exposed so that tests/unit/test_driver_pg.c can test them directly and
 * db/driver.c can pick a driver. Never included outside db/ and the tests.
 */
#ifndef CP_DB_DRIVER_PG_INTERNAL_H
#define CP_DB_DRIVER_PG_INTERNAL_H

#include <stdbool.h>

/* SQLite's default SQLITE_MAX_VARIABLE_NUMBER: SQL that names a higher
 * parameter would not run on SQLite either, so it is refused here too. */
#define DB_PG_MAX_PARAMS 32766
/* SQL text of a prepared statement, before and after the rewrite: the
 * domain's statements are a few KiB; this only stops a runaway string. */
#define DB_PG_MAX_SQL (1024 * 1024)

/*
 * Rewrite sql's SQLite placeholders for PostgreSQL: ?N becomes $N and a bare
 * ? becomes $k, k one more than the highest number assigned so far (SQLite's
 * own numbering rule), except inside '...' string literals, "..."
 * identifiers, -- line comments and block comments, which are copied as
 * they are. On DB_DONE, *out is the new text (owned: free it), *nparams the
 * highest parameter number (0 for none) and *used (owned: free it; NULL
 * when *nparams is 0) has *nparams flags, used[i] true when $i+1 occurs: a
 * number below the highest that the SQL never names must still be given a
 * type when it is prepared, or PostgreSQL refuses the statement.
 * DB_E_OTHER for ?0; DB_E_TOOBIG for a number over DB_PG_MAX_PARAMS or text
 * over DB_PG_MAX_SQL; DB_E_NOMEM. On error the outputs are NULL and 0.
 */
int db_pg_rewrite(const char *sql, char **out, int *nparams, bool **used);

/* Whether a database setting names a PostgreSQL server: a postgresql:// or
 * postgres:// URL, or a libpq key=value string (a "host=" or "dbname="
 * keyword at the start or after a space). Anything else is a SQLite path. */
bool db_pg_target(const char *target);

#endif
