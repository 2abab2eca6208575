/*
 * test_driver_pg.c - the PostgreSQL driver (db/driver_pg.c) against a real
 * server: the placeholder rewrite and the target rule (no server needed),
 * then prepare/bind/step/columns, NULLs, int64 limits, quotes and '?' in
 * literals, RETURNING, changes(), each SQLSTATE class the driver maps
 * (unique and NOT NULL violations, too long, NOWAIT, statement timeout, a
 * serialization failure and a deadlock between two connections), in_tx,
 * exec of several statements, a lost connection, bind failures and errmsg.
 *
 * The server: CERTPLANE_PG_URL from the environment, else the env file that
 * tests/testbed/pg-server writes (CP_TEST_PG_ENV, /tmp/cp-pg-<hash>/env, where the
 * CTest fixture "pg" starts one). With neither the test FAILS: a driver test
 * that did not run has proven nothing. Its tables live in the schema
 * cp_test_driver_pg, dropped and made afresh each run.
 */
#include "db/driver.h"
#include "db/driver_pg_internal.h"
#include "tests/unit/check.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct db_driver *drv = &db_driver_pg;
static char url[4096];

/* ---------------------------------------------------------------- no server */

static void test_rewrite(void)
{
	static const struct {
		const char *in, *out;
		int nparams;
		const char *used; /* '1' per used number, "" for none */
	} ok[] = {
		{ "", "", 0, "" },
		{ "SELECT 1", "SELECT 1", 0, "" },
		{ "SELECT ?1, ?2", "SELECT $1, $2", 2, "11" },
		{ "SELECT ?, ?", "SELECT $1, $2", 2, "11" },
		/* SQLite's rule: a bare ? is one more than the highest so far. */
		{ "?3 ?", "$3 $4", 4, "0011" },
		{ "? ?1 ?", "$1 $1 $2", 2, "11" },
		{ "?2", "$2", 2, "01" },
		{ "?007", "$7", 7, "0000001" },
		{ "?32766", "$32766", 32766, NULL },
		{ "a=?1||'?'", "a=$1||'?'", 1, "1" },
		{ "'it''s ?1' ?", "'it''s ?1' $1", 1, "1" },
		{ "\"col?\" = ?", "\"col?\" = $1", 1, "1" },
		{ "\"a\"\"?\" ?", "\"a\"\"?\" $1", 1, "1" },
		/* An apostrophe in a comment opens no literal. */
		{ "-- don't ?\nSELECT ?", "-- don't ?\nSELECT $1", 1, "1" },
		{ "/* it's ? */ ?", "/* it's ? */ $1", 1, "1" },
		{ "-- ? at the end", "-- ? at the end", 0, "" },
		{ "x - ?1 / ?2", "x - $1 / $2", 2, "11" },
		{ "'open ?", "'open ?", 0, "" },
		{ "/* open ?", "/* open ?", 0, "" },
	};
	static const struct {
		const char *in;
		int rc;
	} bad[] = {
		{ "SELECT ?0", DB_E_OTHER },
		{ "SELECT ?32767", DB_E_TOOBIG },
		{ "SELECT ?99999999999999999999", DB_E_TOOBIG },
		{ "SELECT ?32766, ?", DB_E_TOOBIG },
	};
	size_t i, k;
	char *out, *big;
	bool *used;
	int n;

	for (i = 0; i < CP_ARRAY_LEN(ok); i++) {
		CHECK(db_pg_rewrite(ok[i].in, &out, &n, &used) == DB_DONE);
		if (!out) {
			fprintf(stderr, "rewrite of \"%s\" failed\n", ok[i].in);
			continue;
		}
		if (strcmp(out, ok[i].out) != 0 || n != ok[i].nparams)
			fprintf(stderr, "rewrite \"%s\": \"%s\" %d, want \"%s\" %d\n", ok[i].in,
				out, n, ok[i].out, ok[i].nparams);
		CHECK(strcmp(out, ok[i].out) == 0);
		CHECK(n == ok[i].nparams);
		CHECK((used == NULL) == (n == 0));
		for (k = 0; ok[i].used && k < strlen(ok[i].used) && used; k++)
			CHECK(used[k] == (ok[i].used[k] == '1'));
		free(out);
		free(used);
	}
	for (i = 0; i < CP_ARRAY_LEN(bad); i++) {
		out = (char *)"x";
		CHECK(db_pg_rewrite(bad[i].in, &out, &n, &used) == bad[i].rc);
		CHECK(out == NULL && n == 0 && used == NULL);
	}
	/* Text at the cap: the input is refused over it, and an output that
	 * grows past it (each bare ? becomes $1, $2, ...) too. */
	big = malloc(DB_PG_MAX_SQL + 2);
	CHECK(big != NULL);
	if (!big)
		return;
	memset(big, ' ', DB_PG_MAX_SQL + 1);
	big[DB_PG_MAX_SQL + 1] = '\0';
	CHECK(db_pg_rewrite(big, &out, &n, &used) == DB_E_TOOBIG);
	big[DB_PG_MAX_SQL] = '\0';
	CHECK(db_pg_rewrite(big, &out, &n, &used) == DB_DONE);
	CHECK(out && strlen(out) == DB_PG_MAX_SQL);
	free(out);
	memset(big, '?', 20000);
	CHECK(db_pg_rewrite(big, &out, &n, &used) == DB_E_TOOBIG);
	free(big);
}

static void test_target(void)
{
	CHECK(db_pg_target("postgresql://u@/db?host=/tmp"));
	CHECK(db_pg_target("postgres://host/db"));
	CHECK(db_pg_target("host=/tmp dbname=x"));
	CHECK(db_pg_target("dbname=certplane"));
	CHECK(db_pg_target("user=u dbname=certplane"));
	CHECK(!db_pg_target("/var/lib/certplane/certplane.db"));
	CHECK(!db_pg_target("certplane.db"));
	CHECK(!db_pg_target("file:certplane.db?mode=ro"));
	CHECK(!db_pg_target("/srv/dbname=x/certplane.db"));
	CHECK(!db_pg_target("postgresql:/not-a-url"));
	CHECK(!db_pg_target(""));
}

/* ---------------------------------------------------------------- helpers */

/* The server's URL: the environment, else the fixture's env file. */
static bool find_url(void)
{
	const char *env = getenv("CERTPLANE_PG_URL");
	char line[sizeof url + 32];
	FILE *f;
	size_t n;

	if (env && *env) {
		snprintf(url, sizeof url, "%s", env);
		return true;
	}
	f = fopen(CP_TEST_PG_ENV, "r");
	if (!f)
		return false;
	while (fgets(line, sizeof line, f))
		if (strncmp(line, "CERTPLANE_PG_URL=", 17) == 0) {
			n = strcspn(line + 17, "\r\n");
			snprintf(url, sizeof url, "%.*s", (int)n, line + 17);
		}
	fclose(f);
	return url[0] != '\0';
}

/* A connection in the test's schema, or NULL (counted as a failure). The
 * statement timeout keeps a driver bug from hanging the test. */
static struct db_conn *open_conn(void)
{
	struct db_conn *c = NULL;

	CHECK_RC(drv->open(url, &c), CP_OK);
	if (!c)
		return NULL;
	CHECK(drv->exec(c, "SET search_path = cp_test_driver_pg; SET statement_timeout = '30s'") ==
	      DB_DONE);
	return c;
}

/* Prepare sql (counted: a failure prints errmsg). */
static struct db_stmt *prep(struct db_conn *c, const char *sql)
{
	struct db_stmt *st = NULL;
	int rc = drv->prepare(c, sql, &st);

	CHECK(rc == DB_DONE && st);
	if (rc != DB_DONE)
		fprintf(stderr, "prepare \"%s\": %d %s\n", sql, rc, drv->errmsg(c));
	return st;
}

/* Run sql with exec, printing errmsg when it is not want. */
static void exec_want(struct db_conn *c, const char *sql, int want)
{
	int rc = drv->exec(c, sql);

	CHECK(rc == want);
	if (rc != want)
		fprintf(stderr, "exec \"%s\": %d, want %d: %s\n", sql, rc, want, drv->errmsg(c));
}

/* One statement with no parameters run to its end: its result (DB_DONE
 * once every row is stepped past, or the error). */
static int run_once(struct db_conn *c, const char *sql)
{
	struct db_stmt *st = prep(c, sql);
	int rc;

	if (!st)
		return DB_E_OTHER;
	while ((rc = db_step(st)) == DB_ROW)
		;
	drv->finalize(st);
	return rc;
}

/* ---------------------------------------------------------------- with a server */

static void test_open(void)
{
	struct db_conn *c = NULL;
	struct db_stmt *st;
	char other[sizeof url + 64];

	/* No server behind that socket directory: an I/O error, no handle. */
	CHECK_RC(drv->open("postgresql://certplane@/x?host=/nonexistent-cp-dir", &c), CP_ERR_IO);
	CHECK(c == NULL);
	drv->close(NULL);
	drv->finalize(NULL);

	c = open_conn();
	if (!c)
		return;
	CHECK(strcmp(drv->errmsg(c), "") == 0);
	st = prep(c, "SELECT current_setting('TimeZone'), current_setting('client_min_messages'), "
		     "current_setting('application_name')");
	if (st) {
		CHECK(db_col_count(st) == 3); /* before the first step, too */
		CHECK(db_step(st) == DB_ROW);
		CHECK(strcmp(db_col_text(st, 0), "UTC") == 0);
		CHECK(strcmp(db_col_text(st, 1), "warning") == 0);
		CHECK(strcmp(db_col_text(st, 2), "certplane") == 0);
		CHECK(db_step(st) == DB_DONE);
		drv->finalize(st);
	}
	drv->close(c);

	/* The setting's own keywords win over the driver's defaults. */
	if (strncmp(url, "postgres", 8) != 0)
		return;
	snprintf(other, sizeof other, "%s%sapplication_name=cp_own", url,
		 strchr(url, '?') ? "&" : "?");
	c = NULL;
	CHECK_RC(drv->open(other, &c), CP_OK);
	if (!c)
		return;
	st = prep(c, "SELECT current_setting('application_name')");
	if (st) {
		CHECK(db_step(st) == DB_ROW && strcmp(db_col_text(st, 0), "cp_own") == 0);
		drv->finalize(st);
	}
	drv->close(c);
}

static void test_rows(struct db_conn *c)
{
	struct db_stmt *ins, *sel;
	const char *quoted = "it's a \"?\" ?1 $1 'x'";
	int64_t lims[] = { INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX };
	size_t i;

	ins = prep(c, "INSERT INTO t (id, name, n, flag) VALUES (?1, ?2, ?3, ?4)");
	sel = prep(c, "SELECT id, name, n, flag, 'lit''s ?' FROM t WHERE id >= ? ORDER BY id");
	if (!ins || !sel)
		goto out;
	/* The int64 limits go in and come back exactly. */
	for (i = 0; i < CP_ARRAY_LEN(lims); i++) {
		db_bind_int64(ins, 1, (int64_t)i + 1);
		drv->bind_text(ins, 2, "n", 1);
		db_bind_int64(ins, 3, lims[i]);
		db_bind_int64(ins, 4, (int64_t)(i % 2));
		CHECK(db_step(ins) == DB_DONE);
		CHECK(db_step(ins) == DB_DONE); /* the same until reset */
		CHECK(drv->changes(c) == 1);
		db_reset(ins);
		drv->clear(ins); /* reset keeps the bindings */
	}
	/* NULLs three ways: bind_null, bind_text(NULL), and never bound. */
	db_bind_int64(ins, 1, 100);
	drv->bind_text(ins, 2, NULL, 0);
	db_bind_null(ins, 3);
	CHECK(db_step(ins) == DB_DONE);
	db_reset(ins);
	drv->clear(ins); /* reset keeps the bindings */
	/* Quotes and placeholders inside a bound value are just text. */
	db_bind_int64(ins, 1, 101);
	drv->bind_text(ins, 2, quoted, strlen(quoted));
	db_bind_int64(ins, 3, 7);
	db_bind_int64(ins, 4, 1);
	/* An index the SQL lacks is ignored, as SQLite does. */
	db_bind_int64(ins, 5, 1);
	db_bind_int64(ins, 0, 1);
	CHECK(db_step(ins) == DB_DONE);
	db_reset(ins);
	drv->clear(ins); /* reset keeps the bindings */
	/* bind_text copies exactly len bytes: the rest of the buffer is not sent. */
	db_bind_int64(ins, 1, 102);
	drv->bind_text(ins, 2, "héllo world", 6);
	CHECK(db_step(ins) == DB_DONE);
	db_reset(ins);
	drv->clear(ins); /* reset keeps the bindings */

	db_bind_int64(sel, 1, 1);
	CHECK(db_col_count(sel) == 5);
	for (i = 0; i < CP_ARRAY_LEN(lims); i++) {
		CHECK(db_step(sel) == DB_ROW);
		CHECK(db_col_int64(sel, 0) == (int64_t)i + 1);
		CHECK(db_col_int64(sel, 2) == lims[i]);
		CHECK(db_col_int64(sel, 3) == (int64_t)(i % 2)); /* boolean 't'/'f' */
		CHECK(strcmp(db_col_text(sel, 4), "lit's ?") == 0);
		CHECK(!db_col_null(sel, 2));
	}
	CHECK(db_step(sel) == DB_ROW); /* id 100: the NULLs */
	CHECK(db_col_int64(sel, 0) == 100);
	CHECK(db_col_null(sel, 1) && db_col_null(sel, 2) && db_col_null(sel, 3));
	CHECK(db_col_text(sel, 1) == NULL && db_col_bytes(sel, 1) == 0 &&
	      db_col_int64(sel, 2) == 0);
	CHECK(db_step(sel) == DB_ROW); /* id 101 */
	CHECK(db_col_text(sel, 1) && strcmp(db_col_text(sel, 1), quoted) == 0);
	CHECK(db_col_bytes(sel, 1) == strlen(quoted));
	CHECK(db_step(sel) == DB_ROW); /* id 102: "héllo" is 6 bytes */
	CHECK(db_col_text(sel, 1) && strcmp(db_col_text(sel, 1), "héllo") == 0);
	CHECK(db_col_bytes(sel, 1) == 6);
	CHECK(db_col_null(sel, 2) && db_col_null(sel, 3));
	CHECK(db_step(sel) == DB_DONE);
	CHECK(db_col_text(sel, 0) == NULL); /* past the end: no row */
	CHECK(db_step(sel) == DB_DONE);
	CHECK(drv->changes(c) == 1); /* a SELECT changes nothing */
	db_reset(sel);
	/* The same statement again, with another parameter. */
	db_bind_int64(sel, 1, 101);
	CHECK(db_step(sel) == DB_ROW && db_col_int64(sel, 0) == 101);
	db_reset(sel);
	/* Reset keeps the binding (as SQLite's): the same row again. */
	CHECK(db_step(sel) == DB_ROW && db_col_int64(sel, 0) == 101);
	db_reset(sel);
	/* Clear drops it: WHERE id >= NULL matches nothing. */
	drv->clear(sel);
	CHECK(db_step(sel) == DB_DONE);
	db_reset(sel);
out:
	drv->finalize(ins);
	drv->finalize(sel);
}

static void test_values(struct db_conn *c)
{
	struct db_stmt *st;

	/* Conversions as SQLite makes them: reals truncate, out-of-range
	 * numbers clamp, booleans are 1/0, text is its leading digits. */
	st = prep(c, "SELECT 2.9::float8, -2.9::numeric, 1e30::float8, -1e30::float8, "
		     "99999999999999999999::numeric, true, false, 'abc', '12abc', count(*) FROM t");
	if (!st)
		return;
	CHECK(db_step(st) == DB_ROW);
	CHECK(db_col_int64(st, 0) == 2);
	CHECK(db_col_int64(st, 1) == -2);
	CHECK(db_col_int64(st, 2) == INT64_MAX);
	CHECK(db_col_int64(st, 3) == INT64_MIN);
	CHECK(db_col_int64(st, 4) == INT64_MAX);
	CHECK(db_col_int64(st, 5) == 1);
	CHECK(db_col_int64(st, 6) == 0);
	CHECK(db_col_int64(st, 7) == 0);
	CHECK(db_col_int64(st, 8) == 12);
	CHECK(db_col_int64(st, 9) == 9);
	CHECK(strcmp(db_col_text(st, 5), "t") == 0);
	CHECK(db_step(st) == DB_DONE);
	drv->finalize(st);

	/* A parameter the SQL never names (?1 here) still prepares: the
	 * shared helpers bind ?1 = tenant for queries that do not use it. */
	st = prep(c, "SELECT CAST(?2 AS BIGINT) + 1, CAST(?3 AS TEXT)");
	if (!st)
		return;
	drv->bind_text(st, 1, "ignored", 7);
	db_bind_int64(st, 2, 41);
	CHECK(db_step(st) == DB_ROW);
	CHECK(db_col_int64(st, 0) == 42);
	CHECK(db_col_null(st, 1));
	drv->finalize(st);
}

static void test_returning_changes(struct db_conn *c)
{
	struct db_stmt *st, *st2;

	st = prep(c, "INSERT INTO t (id, name) VALUES (?, ?) RETURNING id, name");
	if (!st)
		return;
	db_bind_int64(st, 1, 200);
	drv->bind_text(st, 2, "ret", 3);
	CHECK(db_step(st) == DB_ROW);
	CHECK(db_col_int64(st, 0) == 200 && strcmp(db_col_text(st, 1), "ret") == 0);
	CHECK(drv->changes(c) == 1);
	CHECK(db_step(st) == DB_DONE);
	drv->finalize(st);

	/* Two statements of the same SQL are two server-side statements. */
	st = prep(c, "UPDATE t SET n = ?1 WHERE id >= 100");
	st2 = prep(c, "UPDATE t SET n = ?1 WHERE id >= 100");
	if (st && st2) {
		db_bind_int64(st, 1, 5);
		CHECK(db_step(st) == DB_DONE);
		CHECK(drv->changes(c) == 4); /* 100, 101, 102, 200 */
		db_bind_int64(st2, 1, 6);
		CHECK(db_step(st2) == DB_DONE);
		CHECK(drv->changes(c) == 4);
	}
	drv->finalize(st);
	drv->finalize(st2);
	CHECK(run_once(c, "DELETE FROM t WHERE id = 200 RETURNING id") == DB_DONE);
	CHECK(drv->changes(c) == 1);
	CHECK(run_once(c, "DELETE FROM t WHERE id = 99999") == DB_DONE);
	CHECK(drv->changes(c) == 0);
	/* exec counts too, and BEGIN/COMMIT leave the count alone. */
	exec_want(c, "BEGIN; UPDATE t SET n = 1 WHERE id IN (100, 101); COMMIT", DB_DONE);
	CHECK(drv->changes(c) == 2);
}

static void test_errors(struct db_conn *c)
{
	struct db_stmt *st = NULL;
	char nul[] = "a\0b";

	/* Unique violation: the constraint class, SQLSTATE and text kept. */
	st = prep(c, "INSERT INTO t (id) VALUES (?1)");
	if (st) {
		db_bind_int64(st, 1, 1);
		CHECK(db_step(st) == DB_E_CONSTRAINT);
		CHECK(db_step(st) == DB_E_CONSTRAINT); /* the same until reset */
		CHECK(strstr(drv->errmsg(c), "23505") && strstr(drv->errmsg(c), "duplicate key") &&
		      strstr(drv->errmsg(c), "Key (id)=(1)"));
		db_reset(st);
		/* The statement still works after its error. */
		db_bind_int64(st, 1, 300);
		CHECK(db_step(st) == DB_DONE);
		db_reset(st);
		/* Bind failures surface at the step, naming the parameter. */
		drv->bind_text(st, 1, nul, 3);
		CHECK(db_step(st) == DB_E_OTHER);
		CHECK(strstr(drv->errmsg(c), "parameter 1") && strstr(drv->errmsg(c), "NUL"));
		db_reset(st);
		db_bind_int64(st, 1, 301);
		CHECK(db_step(st) == DB_DONE); /* reset forgot the failure */
		drv->finalize(st);
	}
	CHECK(run_once(c, "INSERT INTO t (id) VALUES (NULL)") == DB_E_CONSTRAINT); /* 23502 */
	CHECK(strstr(drv->errmsg(c), "23502") != NULL);
	CHECK(run_once(c, "INSERT INTO short (s) VALUES ('abcd')") == DB_E_TOOBIG); /* 22001 */
	CHECK(strstr(drv->errmsg(c), "22001") != NULL);
	CHECK(run_once(c, "SELECT 1/0") == DB_E_OTHER);
	CHECK(strstr(drv->errmsg(c), "22012") && strstr(drv->errmsg(c), "division by zero"));
	/* Statement timeout (57014): busy, the caller may try again. */
	exec_want(c, "SET statement_timeout = '50ms'", DB_DONE);
	CHECK(run_once(c, "SELECT pg_sleep(5)") == DB_E_BUSY);
	CHECK(strstr(drv->errmsg(c), "57014") != NULL);
	exec_want(c, "SET statement_timeout = '30s'", DB_DONE);

	/* A prepare error: no statement, the text says why. */
	st = (struct db_stmt *)1;
	CHECK(drv->prepare(c, "SELEC 1", &st) == DB_E_OTHER && st == NULL);
	CHECK(strstr(drv->errmsg(c), "42601") && strstr(drv->errmsg(c), "syntax error"));
	CHECK(drv->prepare(c, "SELECT ?0", &st) == DB_E_OTHER && st == NULL);
	CHECK(strstr(drv->errmsg(c), "?0") != NULL);
	CHECK(drv->prepare(c, "SELECT * FROM no_such_table", &st) == DB_E_OTHER && st == NULL);
	CHECK(strstr(drv->errmsg(c), "42P01") != NULL);
	/* An exec error. */
	exec_want(c, "SELECT 1; SELEC 2", DB_E_OTHER);
	CHECK(strstr(drv->errmsg(c), "syntax error") != NULL);
}

static void test_tx(struct db_conn *c)
{
	struct db_stmt *st;

	CHECK(!drv->in_tx(c));
	exec_want(c, "BEGIN", DB_DONE);
	CHECK(drv->in_tx(c));
	CHECK(run_once(c, "INSERT INTO t (id) VALUES (1)") == DB_E_CONSTRAINT);
	CHECK(drv->in_tx(c)); /* a failed transaction is still open */
	CHECK(drv->prepare(c, "SELECT 1", &st) == DB_E_OTHER && st == NULL);
	CHECK(strstr(drv->errmsg(c), "25P02") != NULL); /* in_failed_sql_transaction */
	exec_want(c, "ROLLBACK", DB_DONE);
	CHECK(!drv->in_tx(c));
	/* Several statements in one exec, one transaction of their own. */
	exec_want(c, "BEGIN; INSERT INTO t (id) VALUES (400); INSERT INTO t (id) VALUES (401)",
		  DB_DONE);
	CHECK(drv->in_tx(c));
	exec_want(c, "ROLLBACK", DB_DONE);
	CHECK(run_once(c, "SELECT 1 FROM t WHERE id = 400") == DB_DONE);
	st = prep(c, "SELECT count(*) FROM t WHERE id IN (400, 401)");
	if (st) {
		CHECK(db_step(st) == DB_ROW && db_col_int64(st, 0) == 0);
		drv->finalize(st);
	}
	/* Without BEGIN an exec is one implicit transaction: all or nothing. */
	exec_want(c, "INSERT INTO t (id) VALUES (402); INSERT INTO t (id) VALUES (1)",
		  DB_E_CONSTRAINT);
	CHECK(!drv->in_tx(c));
	st = prep(c, "SELECT count(*) FROM t WHERE id = 402");
	if (st) {
		CHECK(db_step(st) == DB_ROW && db_col_int64(st, 0) == 0);
		drv->finalize(st);
	}
	/* A statement prepared inside a rolled-back transaction survives. */
	exec_want(c, "BEGIN", DB_DONE);
	st = prep(c, "SELECT ?1 || 'x'");
	exec_want(c, "ROLLBACK", DB_DONE);
	if (st) {
		drv->bind_text(st, 1, "a", 1);
		CHECK(db_step(st) == DB_ROW && strcmp(db_col_text(st, 0), "ax") == 0);
		drv->finalize(st);
	}
}

/* Two transactions that both read a row and then both write it: under
 * SERIALIZABLE the second writer must fail with 40001 -> DB_E_RETRY. */
static void test_serialization(struct db_conn *a, struct db_conn *b)
{
	exec_want(a, "BEGIN ISOLATION LEVEL SERIALIZABLE", DB_DONE);
	exec_want(b, "BEGIN ISOLATION LEVEL SERIALIZABLE", DB_DONE);
	CHECK(run_once(a, "SELECT n FROM t WHERE id = 1") == DB_DONE);
	CHECK(run_once(b, "SELECT n FROM t WHERE id = 1") == DB_DONE);
	CHECK(run_once(a, "UPDATE t SET n = n + 1 WHERE id = 1") == DB_DONE);
	exec_want(a, "COMMIT", DB_DONE);
	CHECK(run_once(b, "UPDATE t SET n = n + 1 WHERE id = 1") == DB_E_RETRY);
	CHECK(strstr(drv->errmsg(b), "40001") != NULL);
	CHECK(drv->in_tx(b));
	exec_want(b, "ROLLBACK", DB_DONE);
	CHECK(!drv->in_tx(a) && !drv->in_tx(b));
}

struct waiter {
	struct db_conn *c;
	const char *sql;
	int rc;
};

static void *waiter_run(void *arg)
{
	struct waiter *w = arg;

	w->rc = run_once(w->c, w->sql);
	return NULL;
}

/* Wait until n sessions wait on a lock (watched from watch). */
static bool wait_for_lock_waiters(struct db_conn *watch, int64_t n)
{
	struct timespec ms10 = { 0, 10 * 1000 * 1000 };
	struct db_stmt *st =
		prep(watch, "SELECT count(*) FROM pg_stat_activity "
			    "WHERE wait_event_type = 'Lock' AND datname = current_database()");
	int i;
	bool ok = false;

	for (i = 0; st && i < 1000 && !ok; i++) {
		ok = db_step(st) == DB_ROW && db_col_int64(st, 0) >= n;
		db_reset(st);
		if (!ok)
			nanosleep(&ms10, NULL);
	}
	drv->finalize(st);
	return ok;
}

/* a locks row 1, b row 2, then a wants 2 (in a thread: it blocks) and b
 * wants 1: the server breaks the deadlock by failing one of them with
 * 40P01 -> DB_E_RETRY, and the other goes through. */
static void test_deadlock(struct db_conn *a, struct db_conn *b, struct db_conn *watch)
{
	struct waiter w = { a, "UPDATE t SET n = 10 WHERE id = 2", 99 };
	pthread_t th;
	int rc, retries;

	exec_want(a, "BEGIN", DB_DONE);
	exec_want(b, "BEGIN", DB_DONE);
	CHECK(run_once(a, "UPDATE t SET n = 1 WHERE id = 1") == DB_DONE);
	CHECK(run_once(b, "UPDATE t SET n = 2 WHERE id = 2") == DB_DONE);
	CHECK(pthread_create(&th, NULL, waiter_run, &w) == 0);
	CHECK(wait_for_lock_waiters(watch, 1));
	rc = run_once(b, "UPDATE t SET n = 20 WHERE id = 1");
	if (rc != DB_DONE) {
		CHECK(strstr(drv->errmsg(b), "40P01") != NULL);
		/* b is the victim: its locks are gone, so a goes on. */
	}
	CHECK(pthread_join(th, NULL) == 0);
	if (w.rc != DB_DONE)
		CHECK(strstr(drv->errmsg(a), "40P01") != NULL);
	retries = (rc == DB_E_RETRY) + (w.rc == DB_E_RETRY);
	CHECK(retries == 1);
	CHECK((rc == DB_DONE) + (w.rc == DB_DONE) == 1);
	exec_want(a, "ROLLBACK", DB_DONE);
	exec_want(b, "ROLLBACK", DB_DONE);
}

/* A row locked by a, taken by b with NOWAIT: 55P03 -> DB_E_BUSY. */
static void test_nowait(struct db_conn *a, struct db_conn *b)
{
	exec_want(a, "BEGIN", DB_DONE);
	exec_want(b, "BEGIN", DB_DONE);
	CHECK(run_once(a, "SELECT id FROM t WHERE id = 1 FOR UPDATE") == DB_DONE);
	CHECK(run_once(b, "SELECT id FROM t WHERE id = 1 FOR UPDATE NOWAIT") == DB_E_BUSY);
	CHECK(strstr(drv->errmsg(b), "55P03") != NULL);
	exec_want(a, "ROLLBACK", DB_DONE);
	exec_want(b, "ROLLBACK", DB_DONE);
}

/* Wait until the session with process id pid has ended. */
static bool wait_for_gone(struct db_conn *watch, const char *pid)
{
	struct timespec ms10 = { 0, 10 * 1000 * 1000 };
	struct db_stmt *st = prep(watch, "SELECT count(*) FROM pg_stat_activity "
					 "WHERE pid = CAST(?1 AS INTEGER)");
	int i;
	bool ok = false;

	for (i = 0; st && i < 1000 && !ok; i++) {
		drv->bind_text(st, 1, pid, strlen(pid));
		ok = db_step(st) == DB_ROW && db_col_int64(st, 0) == 0;
		db_reset(st);
		if (!ok)
			nanosleep(&ms10, NULL);
	}
	drv->finalize(st);
	return ok;
}

/* The server ends a's session (as a restart or a network cut would): every
 * call on it fails, saying so; in_tx is true, so a pool drops it; a new
 * connection works. */
static void test_lost(struct db_conn *killer)
{
	struct db_conn *a = open_conn();
	struct db_stmt *pid = NULL, *kill = NULL, *st = NULL;
	char pidtext[32] = "";

	if (!a)
		return;
	pid = prep(a, "SELECT pg_backend_pid()");
	st = prep(a, "SELECT 1");
	kill = prep(killer, "SELECT pg_terminate_backend(CAST(?1 AS INTEGER))");
	if (!pid || !st || !kill)
		goto out;
	CHECK(db_step(pid) == DB_ROW);
	snprintf(pidtext, sizeof pidtext, "%s", db_col_text(pid, 0));
	db_reset(pid);
	drv->bind_text(kill, 1, pidtext, strlen(pidtext));
	CHECK(db_step(kill) == DB_ROW && db_col_int64(kill, 0) == 1);
	/* The backend may take a moment to go: wait until it has. */
	CHECK(wait_for_gone(killer, pidtext));
	CHECK(db_step(st) == DB_E_OTHER);
	CHECK(strstr(drv->errmsg(a), "connection lost") != NULL);
	CHECK(drv->exec(a, "SELECT 1") == DB_E_OTHER);
	CHECK(strstr(drv->errmsg(a), "connection lost") != NULL);
	CHECK(drv->prepare(a, "SELECT 2", &(struct db_stmt *){ NULL }) == DB_E_OTHER);
	CHECK(drv->in_tx(a));
out:
	drv->finalize(pid);
	drv->finalize(st);
	drv->finalize(kill);
	drv->close(a);
	a = open_conn();
	CHECK(a && run_once(a, "SELECT 1") == DB_DONE);
	drv->close(a);
}

/* LISTEN/NOTIFY: a notification sent by one connection wakes the other's
 * wait with its channel and payload, only after the sender commits; with
 * none, wait returns DB_DONE after its timeout. */
static void test_notify(struct db_conn *a, struct db_conn *b)
{
	char channel[64], payload[64];
	int64_t t0;

	CHECK(drv->listen(a, "cp_test_wake") == DB_DONE);
	t0 = cp_mono_ms();
	CHECK(drv->wait(a, 100, channel, payload, sizeof(channel)) == DB_DONE);
	CHECK(cp_mono_ms() - t0 >= 90);
	CHECK(drv->exec(b, "BEGIN; NOTIFY cp_test_wake, 'tenant-1'") == DB_DONE);
	CHECK(drv->wait(a, 100, channel, payload, sizeof(channel)) == DB_DONE); /* not yet */
	CHECK(drv->exec(b, "COMMIT") == DB_DONE);
	CHECK(drv->wait(a, 2000, channel, payload, sizeof(channel)) == DB_ROW);
	CHECK(strcmp(channel, "cp_test_wake") == 0 && strcmp(payload, "tenant-1") == 0);
	/* Several pending ones are one wake-up. */
	CHECK(drv->exec(b, "NOTIFY cp_test_wake, 'x'; NOTIFY cp_test_wake, 'y'") == DB_DONE);
	CHECK(drv->wait(a, 2000, channel, payload, sizeof(channel)) == DB_ROW);
	CHECK(drv->wait(a, 50, channel, payload, sizeof(channel)) == DB_DONE);
	/* Another channel does not wake it. */
	CHECK(drv->exec(b, "NOTIFY cp_test_other, 'z'") == DB_DONE);
	CHECK(drv->wait(a, 100, channel, payload, sizeof(channel)) == DB_DONE);
	CHECK(drv->exec(a, "UNLISTEN *") == DB_DONE);
}

int main(void)
{
	struct db_conn *c = NULL, *b = NULL, *w = NULL;

	test_rewrite();
	test_target();
	if (!find_url()) {
		fprintf(stderr,
			"test_driver_pg: FAILED: no PostgreSQL to test against: set "
			"CERTPLANE_PG_URL or start one with tests/testbed/pg-server start "
			"/tmp/cp-pg-<hash of the build dir> (ctest's fixture \"pg\" does; read %s)\n",
			CP_TEST_PG_ENV);
		return 1;
	}
	/* The schema made afresh; NOTICEs of the DROP are not shown. */
	CHECK_RC(drv->open(url, &c), CP_OK);
	if (!c)
		return check_exit("test_driver_pg");
	exec_want(
		c,
		"DROP SCHEMA IF EXISTS cp_test_driver_pg CASCADE; CREATE SCHEMA cp_test_driver_pg; "
		"CREATE TABLE cp_test_driver_pg.t (id BIGINT PRIMARY KEY, name TEXT, n BIGINT, "
		"flag BOOLEAN); CREATE TABLE cp_test_driver_pg.short (s VARCHAR(3))",
		DB_DONE);
	drv->close(c);

	test_open();
	c = open_conn();
	b = open_conn();
	w = open_conn();
	if (c && b && w) {
		test_rows(c);
		test_values(c);
		test_returning_changes(c);
		test_errors(c);
		test_tx(c);
		test_serialization(c, b);
		test_nowait(c, b);
		test_deadlock(c, b, w);
		test_notify(c, b);
		test_lost(w);
	}
	drv->close(c);
	drv->close(b);
	drv->close(w);
	return check_exit("test_driver_pg");
}
