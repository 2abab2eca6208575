/*
 * driver_pg.c - the PostgreSQL driver of db/driver.h, over libpq.
 *
 * The interface is SQLite's model (prepare once, bind by index, step rows,
 * reset), so this file maps it onto PostgreSQL's extended query protocol:
 * a statement is prepared server-side under a name unique to its
 * connection ("s1", "s2", ...), with the SQLite placeholders rewritten to
 * $N and the parameter types left to the server to infer. Parameter values
 * are kept as text in the statement and sent with the first step, which
 * runs the whole statement (PQexecPrepared, text in and text out) and keeps
 * its result; the steps then hand out its rows one by one. Results are
 * small by construction (every list query is paged), so holding one whole
 * result is simpler than single-row mode and costs no round trips.
 *
 * Errors are classed by SQLSTATE (class 23 -> constraint, 40001/40P01 ->
 * retry, ...) and their text kept on the connection for errmsg. A lost
 * connection is not reopened here: every call on it fails with DB_E_OTHER
 * and a message saying so, and in_tx reports true (libpq's transaction
 * status is "unknown"), so the pool discards it and opens a new one. A
 * silent reconnect could run the rest of a transaction's statements in
 * autocommit on a fresh session.
 *
 * Each connection is set to client_min_messages=warning (the NOTICEs of
 * "IF NOT EXISTS" DDL are noise) and TimeZone=UTC (timestamps the server
 * renders are never in the machine's zone); what is still sent (warnings)
 * goes to the JSON log instead of raw stderr.
 */
#include "common/buf.h"
#include "db/driver.h"
#include "db/driver_pg_internal.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

/* A bound text value: PostgreSQL's text type holds up to 1 GiB, but
 * nothing certplane stores comes near this (a PEM chain is kilobytes). */
#define PG_MAX_PARAM_LEN (64u * 1024 * 1024)
/* The OID of type text (pg_type.h, stable since forever), given to the
 * parameters a statement never names so that the server can prepare it. */
#define PG_TEXTOID 25

struct pg_conn {
	PGconn *pg;	     /* owned: PQfinish */
	int64_t changes;     /* rows changed by the last INSERT/UPDATE/DELETE */
	unsigned long names; /* statements prepared so far: the next is "s<names+1>" */
	char errmsg[1024];   /* the last error's text, "" before any */
};

struct pg_stmt {
	struct db_stmt base;  /* first: the dispatchers of driver.h read base.drv */
	struct pg_conn *conn; /* borrowed: statements are finalized before close */
	char name[24];	      /* the server-side name, "s" and a decimal */
	int nparams;	      /* the highest parameter number in the SQL */
	char **vals;	      /* nparams values, owned; NULL sends SQL NULL */
	int bind_err;	      /* a bind that failed (DB_E_NOMEM/...), 0 if none */
	const char *bind_why; /* static text of that failure, for errmsg */
	int bind_idx;	      /* the parameter whose bind failed */
	bool ran;	      /* stepped since the last reset */
	int rc;		      /* the first step's outcome, returned again after */
	PGresult *res;	      /* owned: the rows of the run, NULL if none */
	int row;	      /* the current row of res, -1 before the first */
	int ncols;	      /* column count from a describe, -1 unknown */
};

static struct pg_conn *conn_of(struct db_conn *c)
{
	return (struct pg_conn *)c;
}

static struct pg_stmt *stmt_of(struct db_stmt *s)
{
	assert(s && s->drv == &db_driver_pg);
	return (struct pg_stmt *)s;
}

/* ---------------------------------------------------------------- targets, rewrite */

bool db_pg_target(const char *target)
{
	static const char *const keys[] = { "host=", "dbname=" };
	const char *p;
	size_t i;

	assert(target);
	if (strncmp(target, "postgresql://", 13) == 0 || strncmp(target, "postgres://", 11) == 0)
		return true;
	/* A keyword only at a word's start: "/srv/dbname=x.db" stays a path. */
	for (i = 0; i < CP_ARRAY_LEN(keys); i++)
		for (p = strstr(target, keys[i]); p; p = strstr(p + 1, keys[i]))
			if (p == target || p[-1] == ' ')
				return true;
	return false;
}

/* The index just past the quoted run that starts at sql[i] (a ' or "),
 * or the end of sql when it is not closed (the server reports that). A
 * doubled quote inside is the end of one run and the start of the next,
 * which the caller's loop copies the same way. */
static size_t skip_quoted(const char *sql, size_t i)
{
	const char *end = strchr(sql + i + 1, sql[i]);

	return end ? (size_t)(end - sql) + 1 : strlen(sql);
}

/* The index just past the comment at sql[i], or i when there is none. */
static size_t skip_comment(const char *sql, size_t i)
{
	const char *end;

	if (sql[i] == '-' && sql[i + 1] == '-') {
		end = strchr(sql + i, '\n');
		return end ? (size_t)(end - sql) + 1 : strlen(sql);
	}
	if (sql[i] == '/' && sql[i + 1] == '*') {
		end = strstr(sql + i + 2, "*/");
		return end ? (size_t)(end - sql) + 2 : strlen(sql);
	}
	return i;
}

/* Grow *used to n flags (the new ones false). false on NOMEM. */
static bool used_grow(bool **used, int *cap, int n)
{
	bool *nu;
	int ncap;

	if (n <= *cap)
		return true;
	ncap = *cap ? *cap : 16;
	while (ncap < n)
		ncap *= 2;
	nu = realloc(*used, (size_t)ncap * sizeof *nu);
	if (!nu)
		return false;
	memset(nu + *cap, 0, (size_t)(ncap - *cap) * sizeof *nu);
	*used = nu;
	*cap = ncap;
	return true;
}

int db_pg_rewrite(const char *sql, char **out, int *nparams, bool **used)
{
	struct cp_buf b;
	bool *flags = NULL;
	int cap = 0, highest = 0, rc = DB_E_NOMEM;
	cp_rc brc = CP_OK;
	size_t i = 0, j, len;
	long n;

	assert(sql && out && nparams && used);
	*out = NULL;
	*nparams = 0;
	*used = NULL;
	len = strlen(sql);
	cp_buf_init(&b, DB_PG_MAX_SQL);
	if (len > DB_PG_MAX_SQL) {
		rc = DB_E_TOOBIG;
		goto out;
	}
	/* Even "" comes back as an allocated string. */
	if ((brc = cp_buf_reserve(&b, len)) != CP_OK)
		goto out;
	while (i < len) {
		if (sql[i] == '\'' || sql[i] == '"')
			j = skip_quoted(sql, i);
		else
			j = skip_comment(sql, i);
		if (j > i || sql[i] != '?') {
			if (j == i)
				j = i + 1;
			if ((brc = cp_buf_add(&b, sql + i, j - i)) != CP_OK)
				goto out;
			i = j;
			continue;
		}
		/* ?NNN: its number (bounded digit by digit, so no overflow);
		 * a bare ?: the next after the highest. */
		for (j = i + 1, n = 0; sql[j] >= '0' && sql[j] <= '9'; j++) {
			n = n * 10 + (sql[j] - '0');
			if (n > DB_PG_MAX_PARAMS) {
				rc = DB_E_TOOBIG;
				goto out;
			}
		}
		if (j == i + 1)
			n = highest + 1;
		else if (n == 0) {
			rc = DB_E_OTHER;
			goto out;
		}
		if (n > DB_PG_MAX_PARAMS) {
			rc = DB_E_TOOBIG;
			goto out;
		}
		if (!used_grow(&flags, &cap, (int)n))
			goto out;
		flags[n - 1] = true;
		if (n > highest)
			highest = (int)n;
		if ((brc = cp_buf_addf(&b, "$%ld", n)) != CP_OK)
			goto out;
		i = j;
	}
	*out = cp_buf_take(&b, NULL);
	*nparams = highest;
	*used = highest ? flags : NULL;
	if (highest)
		flags = NULL;
	rc = DB_DONE;
out:
	/* A bare ? grows into $k: the output may pass the cap the input met. */
	if (brc == CP_ERR_TOO_LARGE)
		rc = DB_E_TOOBIG;
	free(flags);
	cp_buf_free(&b);
	return rc;
}

/* ---------------------------------------------------------------- errors */

/* Format the connection's errmsg, without libpq's final newline (bounded:
 * a longer message is cut). */
static void conn_set_msg(struct pg_conn *c, const char *fmt, ...) CP_PRINTF(2, 3);
static void conn_set_msg(struct pg_conn *c, const char *fmt, ...)
{
	va_list ap;
	size_t n;

	va_start(ap, fmt);
	if (vsnprintf(c->errmsg, sizeof c->errmsg, fmt, ap) < 0)
		c->errmsg[0] = '\0';
	va_end(ap);
	n = strlen(c->errmsg);
	while (n && (c->errmsg[n - 1] == '\n' || c->errmsg[n - 1] == ' '))
		c->errmsg[--n] = '\0';
}

/* The connection is gone (server restart, pg_terminate_backend, network):
 * DB_E_OTHER with a message that says what the caller must do. */
static int conn_lost(struct pg_conn *c)
{
	const char *why = PQerrorMessage(c->pg);
	size_t n = strlen(why);

	/* libpq's text ends in a newline, and here sits inside a sentence. */
	while (n && why[n - 1] == '\n')
		n--;
	conn_set_msg(c, "PostgreSQL connection lost (%.*s); close it and open a new one",
		     (int)(n > 512 ? 512 : n), why);
	return DB_E_OTHER;
}

/* The class of a SQLSTATE (five characters, or NULL when libpq made the
 * error up itself, e.g. out of memory). */
static int class_of(const char *state)
{
	static const struct {
		const char *state;
		int rc;
	} map[] = {
		{ "40001", DB_E_RETRY },  /* serialization_failure */
		{ "40P01", DB_E_RETRY },  /* deadlock_detected */
		{ "55P03", DB_E_BUSY },	  /* lock_not_available (NOWAIT, lock_timeout) */
		{ "57014", DB_E_BUSY },	  /* query_canceled (statement_timeout) */
		{ "54000", DB_E_TOOBIG }, /* program_limit_exceeded */
		{ "22001", DB_E_TOOBIG }, /* string_data_right_truncation */
		{ "53200", DB_E_NOMEM },  /* out_of_memory */
	};
	size_t i;

	if (!state)
		return DB_E_OTHER;
	if (strncmp(state, "23", 2) == 0) /* integrity_constraint_violation */
		return DB_E_CONSTRAINT;
	for (i = 0; i < CP_ARRAY_LEN(map); i++)
		if (strcmp(state, map[i].state) == 0)
			return map[i].rc;
	return DB_E_OTHER;
}

/* Class a failed result (res may be NULL: libpq could not even build one)
 * and keep its message. Does not clear res. */
static int conn_error(struct pg_conn *c, const PGresult *res)
{
	const char *state, *primary, *detail;

	if (PQstatus(c->pg) != CONNECTION_OK)
		return conn_lost(c);
	if (!res) {
		/* NULL on a live connection: libpq ran out of memory or could
		 * not send the command; its text says which. */
		conn_set_msg(c, "%s", PQerrorMessage(c->pg));
		return strstr(c->errmsg, "out of memory") ? DB_E_NOMEM : DB_E_OTHER;
	}
	if (PQresultStatus(res) != PGRES_FATAL_ERROR &&
	    PQresultStatus(res) != PGRES_NONFATAL_ERROR) {
		conn_set_msg(c, "unexpected PostgreSQL result %s",
			     PQresStatus(PQresultStatus(res)));
		return DB_E_OTHER;
	}
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
	if (!primary) {
		conn_set_msg(c, "%s", PQresultErrorMessage(res));
		return class_of(state);
	}
	/* "23505: duplicate key value violates ... (Key (id)=(1) already exists.)" */
	if (detail)
		conn_set_msg(c, "%s: %s (%s)", state ? state : "?????", primary, detail);
	else
		conn_set_msg(c, "%s: %s", state ? state : "?????", primary);
	return class_of(state);
}

/* What an INSERT/UPDATE/DELETE result changed goes to changes(); every
 * other command (a SELECT, BEGIN) leaves it as SQLite does. */
static void conn_count(struct pg_conn *c, const PGresult *res)
{
	static const char *const verbs[] = { "INSERT ", "UPDATE ", "DELETE ", "MERGE " };
	const char *status = PQcmdStatus((PGresult *)res);
	size_t i;

	for (i = 0; i < CP_ARRAY_LEN(verbs); i++)
		if (strncmp(status, verbs[i], strlen(verbs[i])) == 0) {
			c->changes = strtoll(PQcmdTuples((PGresult *)res), NULL, 10);
			return;
		}
}

/* Take res (owned; NULL allowed): DB_DONE for a command or rows, keeping
 * the rows in *keep when keep is given, else an error class. res is
 * cleared unless kept. */
static int conn_result(struct pg_conn *c, PGresult *res, PGresult **keep)
{
	int rc = DB_DONE;

	switch (res ? PQresultStatus(res) : PGRES_FATAL_ERROR) {
	case PGRES_TUPLES_OK:
		conn_count(c, res);
		if (keep) {
			*keep = res;
			return DB_DONE;
		}
		break;
	case PGRES_COMMAND_OK:
		conn_count(c, res);
		break;
	default:
		rc = conn_error(c, res);
		break;
	}
	PQclear(res);
	return rc;
}

/* ---------------------------------------------------------------- connections */

/* Server warnings into the JSON log (libpq's default prints raw stderr). */
static void conn_notice(void *arg, const char *message)
{
	size_t n = strlen(message);

	(void)arg;
	while (n && message[n - 1] == '\n')
		n--;
	cp_logf(CP_LOG_WARN, "db.pg.notice", "%.*s", (int)(n > 4096 ? 4096 : n), message);
}

static void pg_close(struct db_conn *dc)
{
	struct pg_conn *c = conn_of(dc);

	if (!c)
		return;
	PQfinish(c->pg);
	free(c);
}

static cp_rc pg_open(const char *target, struct db_conn **out)
{
	/* target goes in as dbname with expand_dbname set, so that libpq
	 * parses it as a URL or conninfo. The keywords before it are defaults
	 * the setting may override (libpq applies them in order): a connect
	 * that cannot hang forever on an unreachable host. The fallback name
	 * never overrides an application_name the setting gives. */
	const char *const keys[] = { "connect_timeout", "dbname", "fallback_application_name",
				     NULL };
	const char *const vals[] = { "10", target, "certplane", NULL };
	struct pg_conn *c = NULL;
	cp_rc rc = CP_ERR_NOMEM;

	assert(target && out);
	*out = NULL;
	c = calloc(1, sizeof *c);
	if (!c)
		goto out;
	c->pg = PQconnectdbParams(keys, vals, 1);
	if (!c->pg)
		goto out;
	if (PQstatus(c->pg) != CONNECTION_OK) {
		/* The setting itself is not logged: a URL may hold a password. */
		conn_set_msg(c, "%s", PQerrorMessage(c->pg));
		cp_logf(CP_LOG_ERROR, "db.pg.connect", "%s", c->errmsg);
		rc = CP_ERR_IO;
		goto out;
	}
	PQsetNoticeProcessor(c->pg, conn_notice, NULL);
	/* SET, not options in the conninfo: options the setting carries
	 * stay as they are. */
	if (conn_result(c, PQexec(c->pg, "SET client_min_messages = warning; SET TimeZone = 'UTC'"),
			NULL) != DB_DONE) {
		cp_logf(CP_LOG_ERROR, "db.pg.connect", "%s", c->errmsg);
		rc = CP_ERR_IO;
		goto out;
	}
	c->errmsg[0] = '\0';
	*out = (struct db_conn *)c;
	c = NULL;
	rc = CP_OK;
out:
	pg_close((struct db_conn *)c);
	return rc;
}

static int64_t pg_changes(struct db_conn *dc)
{
	return conn_of(dc)->changes;
}

static int pg_exec(struct db_conn *dc, const char *sql)
{
	struct pg_conn *c = conn_of(dc);
	PGresult *res;
	int rc = DB_DONE, one;

	assert(c && sql);
	if (PQstatus(c->pg) != CONNECTION_OK)
		return conn_lost(c);
	/* The simple query protocol: several statements in one string, run
	 * as one implicit transaction unless they hold their own BEGIN.
	 * Not PQexec: it keeps only the last result, and changes() must see
	 * the UPDATE in "BEGIN; UPDATE ...; COMMIT". The server stops at the
	 * first error, which is the one reported. */
	if (!PQsendQuery(c->pg, sql))
		return conn_error(c, NULL);
	while ((res = PQgetResult(c->pg))) {
		one = conn_result(c, res, NULL);
		if (rc == DB_DONE)
			rc = one;
	}
	return rc;
}

static bool pg_in_tx(struct db_conn *dc)
{
	/* IDLE is the only state with no transaction; a lost connection is
	 * UNKNOWN, so it is never taken for a clean one. */
	return PQtransactionStatus(conn_of(dc)->pg) != PQTRANS_IDLE;
}

static const char *pg_errmsg(struct db_conn *dc)
{
	return conn_of(dc)->errmsg;
}

/* ---------------------------------------------------------------- statements */

/* Drop the bound values (all back to NULL) and any bind failure. */
static void stmt_clear_binds(struct pg_stmt *st)
{
	int i;

	for (i = 0; i < st->nparams; i++) {
		free(st->vals[i]);
		st->vals[i] = NULL;
	}
	st->bind_err = 0;
	st->bind_why = NULL;
	st->bind_idx = 0;
}

/* Free st and what it owns (not the server-side statement). NULL-safe. */
static void stmt_free(struct pg_stmt *st)
{
	if (!st)
		return;
	PQclear(st->res);
	if (st->vals)
		stmt_clear_binds(st);
	free(st->vals);
	free(st);
}

static int pg_prepare(struct db_conn *dc, const char *sql, struct db_stmt **out)
{
	struct pg_conn *c = conn_of(dc);
	struct pg_stmt *st = NULL;
	char *text = NULL;
	bool *used = NULL;
	Oid *types = NULL;
	int nparams = 0, i, rc;

	assert(c && sql && out);
	*out = NULL;
	if (PQstatus(c->pg) != CONNECTION_OK) {
		rc = conn_lost(c);
		goto out;
	}
	rc = db_pg_rewrite(sql, &text, &nparams, &used);
	if (rc != DB_DONE) {
		conn_set_msg(c, "%s",
			     rc == DB_E_NOMEM	 ? "out of memory"
			     : rc == DB_E_TOOBIG ? "SQL text or a parameter number over the limit"
						 : "?0 is not a parameter");
		goto out;
	}
	rc = DB_E_NOMEM;
	st = calloc(1, sizeof *st);
	if (!st)
		goto out;
	st->base.drv = &db_driver_pg;
	st->conn = c;
	st->row = -1;
	st->ncols = -1;
	st->nparams = nparams;
	if (nparams) {
		st->vals = calloc((size_t)nparams, sizeof *st->vals);
		types = calloc((size_t)nparams, sizeof *types);
		if (!st->vals || !types) {
			conn_set_msg(c, "out of memory");
			goto out;
		}
		/* 0 lets the server infer a type from the use; one the SQL
		 * never names has no use, so it is sent (and ignored) as text. */
		for (i = 0; i < nparams; i++)
			types[i] = used[i] ? 0 : PG_TEXTOID;
	}
	snprintf(st->name, sizeof st->name, "s%lu", ++c->names);
	rc = conn_result(c, PQprepare(c->pg, st->name, text, nparams, types), NULL);
	if (rc != DB_DONE)
		goto out;
	*out = &st->base;
	st = NULL;
out:
	stmt_free(st);
	free(types);
	free(used);
	free(text);
	return rc;
}

static void pg_finalize(struct db_stmt *s)
{
	struct pg_stmt *st;
	char sql[sizeof st->name + 16];

	if (!s)
		return;
	st = stmt_of(s);
	/* Free the server-side statement while the session can run a
	 * command; when it cannot (lost, or a failed transaction) it is left
	 * to die with the session: names are never reused, so a leftover is
	 * harmless. No error is reported: finalize cannot fail. */
	if (PQstatus(st->conn->pg) == CONNECTION_OK &&
	    PQtransactionStatus(st->conn->pg) != PQTRANS_INERROR) {
		snprintf(sql, sizeof sql, "DEALLOCATE %s", st->name);
		PQclear(PQexec(st->conn->pg, sql));
	}
	stmt_free(st);
}

/* Record a failed bind: the next step reports it (the binds are void, as
 * SQLite's are mostly ignored, so the failure must not be lost). */
static void stmt_bind_fail(struct pg_stmt *st, int idx, int rc, const char *why)
{
	if (st->bind_err)
		return; /* the first failure is the one reported */
	st->bind_err = rc;
	st->bind_why = why;
	st->bind_idx = idx;
}

/* Store v (owned, NULL for SQL NULL) as parameter idx. An index the SQL
 * does not have is ignored, as SQLite ignores it (SQLITE_RANGE): the
 * shared helpers bind ?1 and ?2 whether or not a statement names them. */
static void stmt_bind(struct pg_stmt *st, int idx, char *v)
{
	/* Binding while a run's rows are out would not change that run. */
	assert(!st->ran);
	if (idx < 1 || idx > st->nparams) {
		free(v);
		return;
	}
	free(st->vals[idx - 1]);
	st->vals[idx - 1] = v;
}

static void pg_bind_int64(struct db_stmt *s, int idx, int64_t v)
{
	struct pg_stmt *st = stmt_of(s);
	char num[24], *copy;
	int n;

	n = snprintf(num, sizeof num, "%" PRId64, v);
	assert(n > 0 && (size_t)n < sizeof num);
	copy = malloc((size_t)n + 1);
	if (!copy) {
		stmt_bind_fail(st, idx, DB_E_NOMEM, "out of memory");
		return;
	}
	memcpy(copy, num, (size_t)n + 1);
	stmt_bind(st, idx, copy);
}

static void pg_bind_null(struct db_stmt *s, int idx)
{
	stmt_bind(stmt_of(s), idx, NULL);
}

static void pg_bind_text(struct db_stmt *s, int idx, const char *v, size_t len)
{
	struct pg_stmt *st = stmt_of(s);
	char *copy;

	if (!v) {
		stmt_bind(st, idx, NULL);
		return;
	}
	if (len > PG_MAX_PARAM_LEN) {
		stmt_bind_fail(st, idx, DB_E_TOOBIG, "text parameter over 64 MiB");
		return;
	}
	/* Text parameters travel NUL-terminated, and PostgreSQL's text
	 * cannot hold a NUL: refuse rather than cut the value short. */
	if (memchr(v, '\0', len)) {
		stmt_bind_fail(st, idx, DB_E_OTHER, "text parameter holds a NUL byte");
		return;
	}
	copy = malloc(len + 1);
	if (!copy) {
		stmt_bind_fail(st, idx, DB_E_NOMEM, "out of memory");
		return;
	}
	memcpy(copy, v, len);
	copy[len] = '\0';
	stmt_bind(st, idx, copy);
}

/* The first step: send the statement with its parameters and keep the
 * rows. DB_DONE (st->res holds the rows, or NULL for a command) or an
 * error class. */
static int stmt_run(struct pg_stmt *st)
{
	struct pg_conn *c = st->conn;
	if (st->bind_err) {
		conn_set_msg(c, "parameter %d: %s", st->bind_idx, st->bind_why);
		return st->bind_err;
	}
	if (PQstatus(c->pg) != CONNECTION_OK)
		return conn_lost(c);
	return conn_result(c,
			   PQexecPrepared(c->pg, st->name, st->nparams,
					  (const char *const *)st->vals, NULL, NULL, 0),
			   &st->res);
}

static int pg_step(struct db_stmt *s)
{
	struct pg_stmt *st = stmt_of(s);

	if (!st->ran) {
		st->ran = true;
		st->rc = stmt_run(st);
	}
	/* After an error or the last row, the same answer until reset. */
	if (st->rc != DB_DONE)
		return st->rc;
	if (st->res && st->row + 1 < PQntuples(st->res)) {
		st->row++;
		return DB_ROW;
	}
	if (st->res)
		st->row = PQntuples(st->res);
	return DB_DONE;
}

static void pg_reset(struct db_stmt *s)
{
	struct pg_stmt *st = stmt_of(s);

	PQclear(st->res);
	st->res = NULL;
	st->row = -1;
	st->ran = false;
	st->rc = DB_DONE;
	/* The bindings stay, as SQLite's reset (pg_clear drops them); a bind
	 * failure was reported by the step and is forgotten. */
	st->bind_err = 0;
	st->bind_why = NULL;
	st->bind_idx = 0;
}

static void pg_clear(struct db_stmt *s)
{
	stmt_clear_binds(stmt_of(s));
}

static int pg_col_count(struct db_stmt *s)
{
	struct pg_stmt *st = stmt_of(s);
	PGresult *d;

	if (st->res)
		return PQnfields(st->res);
	/* Before a run (or after a command): ask the server once. */
	if (st->ncols < 0) {
		d = PQdescribePrepared(st->conn->pg, st->name);
		if (d && PQresultStatus(d) == PGRES_COMMAND_OK)
			st->ncols = PQnfields(d);
		else
			(void)conn_error(st->conn, d);
		PQclear(d);
	}
	return st->ncols < 0 ? 0 : st->ncols;
}

/* Whether st is on a row and col is one of its columns. */
static bool stmt_on_row(struct pg_stmt *st, int col)
{
	if (!st->res || st->row < 0 || st->row >= PQntuples(st->res))
		return false;
	assert(col >= 0 && col < PQnfields(st->res));
	return col >= 0 && col < PQnfields(st->res);
}

static bool pg_col_null(struct db_stmt *s, int col)
{
	struct pg_stmt *st = stmt_of(s);

	return !stmt_on_row(st, col) || PQgetisnull(st->res, st->row, col);
}

static const char *pg_col_text(struct db_stmt *s, int col)
{
	struct pg_stmt *st = stmt_of(s);

	if (pg_col_null(s, col))
		return NULL;
	return PQgetvalue(st->res, st->row, col);
}

static size_t pg_col_bytes(struct db_stmt *s, int col)
{
	struct pg_stmt *st = stmt_of(s);

	if (pg_col_null(s, col))
		return 0;
	return (size_t)PQgetlength(st->res, st->row, col);
}

/* A column's text as an integer, as SQLite converts: booleans 't'/'f' are
 * 1/0, a number in range is itself, one out of range the nearest limit,
 * a real (numeric, double) is truncated, anything else its leading digits
 * or 0. NULL is 0. */
static int64_t pg_col_int64(struct db_stmt *s, int col)
{
	const char *v = pg_col_text(s, col);
	char *end;
	double d;
	long long n;

	if (!v)
		return 0;
	if (strcmp(v, "t") == 0)
		return 1;
	if (strcmp(v, "f") == 0)
		return 0;
	errno = 0;
	n = strtoll(v, &end, 10);
	if (*end != '.' && *end != 'e' && *end != 'E')
		return n; /* ERANGE already clamped it to the limit */
	d = strtod(v, NULL);
	if (isnan(d))
		return 0;
	if (d >= 9223372036854775807.0)
		return INT64_MAX;
	if (d <= -9223372036854775808.0)
		return INT64_MIN;
	return (int64_t)d;
}

static int pg_listen(struct db_conn *dc, const char *channel)
{
	struct pg_conn *c = conn_of(dc);
	char *id, *sql;
	int rc;

	assert(c && channel);
	id = PQescapeIdentifier(c->pg, channel, strlen(channel));
	if (!id)
		return conn_lost(c);
	sql = cp_aprintf("LISTEN %s", id);
	PQfreemem(id);
	if (!sql)
		return DB_E_NOMEM;
	rc = pg_exec(dc, sql);
	free(sql);
	return rc;
}

/* Copy the first pending notification out (and free every pending one:
 * a wake-up is a wake-up, the caller re-reads what changed). */
static bool take_notify(struct pg_conn *c, char *channel, char *payload, size_t cap)
{
	PGnotify *n, *first = PQnotifies(c->pg);

	if (!first)
		return false;
	snprintf(channel, cap, "%s", first->relname ? first->relname : "");
	snprintf(payload, cap, "%s", first->extra ? first->extra : "");
	PQfreemem(first);
	while ((n = PQnotifies(c->pg)))
		PQfreemem(n);
	return true;
}

static int pg_wait(struct db_conn *dc, int timeout_ms, char *channel, char *payload, size_t cap)
{
	struct pg_conn *c = conn_of(dc);
	struct pollfd pfd;
	int r;

	assert(c && channel && payload && cap > 0);
	if (PQstatus(c->pg) != CONNECTION_OK)
		return conn_lost(c);
	if (take_notify(c, channel, payload, cap))
		return DB_ROW;
	pfd.fd = PQsocket(c->pg);
	pfd.events = POLLIN;
	pfd.revents = 0;
	if (pfd.fd < 0)
		return conn_lost(c);
	r = poll(&pfd, 1, timeout_ms);
	if (r < 0)
		return errno == EINTR ? DB_DONE : DB_E_OTHER;
	if (r == 0)
		return DB_DONE;
	if (!PQconsumeInput(c->pg))
		return conn_lost(c);
	return take_notify(c, channel, payload, cap) ? DB_ROW : DB_DONE;
}

const struct db_driver db_driver_pg = {
	.name = "postgresql",
	.open = pg_open,
	.close = pg_close,
	.prepare = pg_prepare,
	.finalize = pg_finalize,
	.bind_int64 = pg_bind_int64,
	.bind_text = pg_bind_text,
	.bind_null = pg_bind_null,
	.step = pg_step,
	.reset = pg_reset,
	.clear = pg_clear,
	.col_count = pg_col_count,
	.col_null = pg_col_null,
	.col_int64 = pg_col_int64,
	.col_text = pg_col_text,
	.col_bytes = pg_col_bytes,
	.changes = pg_changes,
	.exec = pg_exec,
	.in_tx = pg_in_tx,
	.errmsg = pg_errmsg,
	.listen = pg_listen,
	.wait = pg_wait,
};
