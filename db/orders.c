/*
 * orders.c - ACME orders and their authorizations, the lookups the ACME
 * engine makes around them (HTTP-01 key authorizations by token, the edge
 * hostname a hostname must point at), and waking an order's job early.
 *
 * An order row is the durable memory of one CA order: the worker stores
 * every URL and state it reaches with db_order_save() before it takes the
 * next step, so that a process killed at any instant resumes the same CA
 * order. Patches are JSON objects: a member present sets the column (null
 * clears it), a member absent keeps it; one static statement serves every
 * step. A terminal status (valid, failed, canceled) is never changed
 * again, so a worker racing a cancel cannot revive the order.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/*
 * An order row, read by both views: the columns of ORDER_COLS in the order
 * of enum order_col. The worker's view (order_full_fields, db_order_load)
 * is the first OC_FULL_COUNT of them, member by member, as stored (times
 * as unix seconds, the CA's URLs, the sealed key); the API's view
 * (order_render_api) shapes them (no URLs of the CA, no key).
 */
/* clang-format off */
#define ORDER_COLS                                                                          \
	"o.id, o.tenant_id, o.certificate_id, o.kind, o.status, o.challenge, o.identifiers, " \
	"o.ca, o.key_type, coalesce(o.metadata, '{}'), o.account_url, o.order_url, "         \
	"o.finalize_url, o.certificate_url, o.key, o.error_reason, o.attempts, "            \
	"o.dns_deadline, o.verify_at, o.created_at, o.cas, o.error_detail, "                \
	"o.next_attempt_at, o.updated_at, o.completed_at"
/* clang-format on */

enum order_col {
	OC_ID,
	OC_TENANT_ID,
	OC_CERTIFICATE_ID,
	OC_KIND,
	OC_STATUS,
	OC_CHALLENGE,
	OC_IDENTIFIERS,
	OC_CA,
	OC_KEY_TYPE,
	OC_METADATA,
	OC_ACCOUNT_URL,
	OC_ORDER_URL,
	OC_FINALIZE_URL,
	OC_CERTIFICATE_URL,
	OC_KEY,
	OC_ERROR_REASON,
	OC_ATTEMPTS,
	OC_DNS_DEADLINE,
	OC_VERIFY_AT,
	OC_CREATED_AT,
	OC_CAS,
	OC_FULL_COUNT, /* the columns above are the worker's view */
	OC_ERROR_DETAIL = OC_FULL_COUNT,
	OC_NEXT_ATTEMPT_AT,
	OC_UPDATED_AT,
	OC_COMPLETED_AT,
	OC_COUNT
};

/* clang-format off */
static const struct db_jw_field order_full_fields[OC_FULL_COUNT] = {
	[OC_ID] = { "id", DB_JW_TEXT },
	[OC_TENANT_ID] = { "tenant_id", DB_JW_TEXT },
	[OC_CERTIFICATE_ID] = { "certificate_id", DB_JW_TEXT },
	[OC_KIND] = { "kind", DB_JW_TEXT },
	[OC_STATUS] = { "status", DB_JW_TEXT },
	[OC_CHALLENGE] = { "challenge", DB_JW_TEXT },
	[OC_IDENTIFIERS] = { "identifiers", DB_JW_JSON },
	[OC_CA] = { "ca", DB_JW_TEXT },
	[OC_KEY_TYPE] = { "key_type", DB_JW_TEXT },
	[OC_METADATA] = { "metadata", DB_JW_JSON },
	[OC_ACCOUNT_URL] = { "account_url", DB_JW_TEXT },
	[OC_ORDER_URL] = { "order_url", DB_JW_TEXT },
	[OC_FINALIZE_URL] = { "finalize_url", DB_JW_TEXT },
	[OC_CERTIFICATE_URL] = { "certificate_url", DB_JW_TEXT },
	[OC_KEY] = { "key", DB_JW_TEXT },
	[OC_ERROR_REASON] = { "error_reason", DB_JW_TEXT },
	[OC_ATTEMPTS] = { "attempts", DB_JW_INT },
	[OC_DNS_DEADLINE] = { "dns_deadline", DB_JW_INT },
	[OC_VERIFY_AT] = { "verify_at", DB_JW_INT },
	[OC_CREATED_AT] = { "created_at", DB_JW_INT },
	[OC_CAS] = { "cas", DB_JW_JSON },
};
/* clang-format on */

/* An order's authorizations in order (?1 = the order id): the columns of
 * enum authz_col, which are also the worker's view, member by member. */
static const char AUTHZ_SQL[] =
	"SELECT position, url, identifier, status, challenge_type, challenge_url, token, "
	"key_authorization, txt_record_name, txt_record_value, expires_at, notified, responded, "
	"completed, delegated FROM order_authorizations WHERE order_id = ?1 ORDER BY position";

enum authz_col {
	AC_POSITION,
	AC_URL,
	AC_IDENTIFIER,
	AC_STATUS,
	AC_CHALLENGE_TYPE,
	AC_CHALLENGE_URL,
	AC_TOKEN,
	AC_KEY_AUTHORIZATION,
	AC_TXT_RECORD_NAME,
	AC_TXT_RECORD_VALUE,
	AC_EXPIRES_AT,
	AC_NOTIFIED,
	AC_RESPONDED,
	AC_COMPLETED,
	AC_DELEGATED,
	AC_COUNT
};

/* clang-format off */
static const struct db_jw_field authz_full_fields[AC_COUNT] = {
	[AC_POSITION] = { "position", DB_JW_INT },
	[AC_URL] = { "url", DB_JW_TEXT },
	[AC_IDENTIFIER] = { "identifier", DB_JW_TEXT },
	[AC_STATUS] = { "status", DB_JW_TEXT },
	[AC_CHALLENGE_TYPE] = { "challenge_type", DB_JW_TEXT },
	[AC_CHALLENGE_URL] = { "challenge_url", DB_JW_TEXT },
	[AC_TOKEN] = { "token", DB_JW_TEXT },
	[AC_KEY_AUTHORIZATION] = { "key_authorization", DB_JW_TEXT },
	[AC_TXT_RECORD_NAME] = { "txt_record_name", DB_JW_TEXT },
	[AC_TXT_RECORD_VALUE] = { "txt_record_value", DB_JW_TEXT },
	[AC_EXPIRES_AT] = { "expires_at", DB_JW_INT },
	[AC_NOTIFIED] = { "notified", DB_JW_INT },
	[AC_RESPONDED] = { "responded", DB_JW_INT },
	[AC_COMPLETED] = { "completed", DB_JW_INT },
	[AC_DELEGATED] = { "delegated", DB_JW_INT },
};
/* clang-format on */

/* The API's view of the authorization of st's current row (AUTHZ_SQL):
 * its challenge as the tenant acts on it, the DNS record to publish or
 * the HTTP-01 URL and body; null before the worker chose one. CP_OK or
 * CP_ERR_NOMEM. */
static cp_rc authz_render_api(struct cp_jw *w, struct db_stmt *st)
{
	const char *type = db_col_text(st, AC_CHALLENGE_TYPE);

	cp_jw_open(w, '{');
	cp_jw_key(w, "identifier");
	db_jw_text(w, st, AC_IDENTIFIER);
	cp_jw_key(w, "status");
	db_jw_text(w, st, AC_STATUS);
	cp_jw_key(w, "expires_at");
	db_jw_time(w, st, AC_EXPIRES_AT);
	cp_jw_key(w, "challenge");
	if (!type) {
		cp_jw_null(w);
	} else if (strcmp(type, "dns-01") == 0) {
		cp_jw_open(w, '{');
		cp_jw_key(w, "type");
		db_jw_text(w, st, AC_CHALLENGE_TYPE);
		cp_jw_key(w, "token");
		db_jw_text(w, st, AC_TOKEN);
		cp_jw_key(w, "txt_record_name");
		db_jw_text(w, st, AC_TXT_RECORD_NAME);
		cp_jw_key(w, "txt_record_value");
		db_jw_text(w, st, AC_TXT_RECORD_VALUE);
		cp_jw_key(w, "delegated");
		db_jw_bool(w, st, AC_DELEGATED);
		cp_jw_close(w, '}');
	} else {
		const char *ident = db_col_text(st, AC_IDENTIFIER);
		const char *token = db_col_text(st, AC_TOKEN);
		/* Both are bounded where they are written (a hostname, the CA's
		 * token); null when either is unknown yet. */
		char *url = ident && token ? cp_aprintf("http://%s/.well-known/acme-challenge/%s",
							ident, token)
					   : NULL;

		cp_jw_open(w, '{');
		cp_jw_key(w, "type");
		db_jw_text(w, st, AC_CHALLENGE_TYPE);
		cp_jw_key(w, "token");
		db_jw_text(w, st, AC_TOKEN);
		if (ident && token && !url)
			return CP_ERR_NOMEM;
		cp_jw_key(w, "url");
		cp_jw_cstr(w, url);
		cp_jw_key(w, "body");
		db_jw_text(w, st, AC_KEY_AUTHORIZATION);
		cp_jw_close(w, '}');
		free(url);
	}
	cp_jw_close(w, '}');
	return CP_OK;
}

/* The authorizations of order id as a JSON array into w, each in the
 * worker's view (full) or the API's. */
static cp_rc authz_render_all(struct db *db, const char *id, bool full, struct cp_jw *w)
{
	struct db_stmt *st = db_stmt_keyed(db, AUTHZ_SQL, id, NULL);
	cp_rc rc = CP_OK;
	int r = DB_DONE;

	if (!st)
		return CP_ERR_INTERNAL;
	cp_jw_open(w, '[');
	while (rc == CP_OK && (r = db_step(st)) == DB_ROW) {
		if (full) {
			cp_jw_open(w, '{');
			db_jw_fields(w, st, 0, authz_full_fields, AC_COUNT);
			cp_jw_close(w, '}');
		} else {
			rc = authz_render_api(w, st);
		}
	}
	db_reset(st);
	cp_jw_close(w, ']');
	if (rc == CP_OK && r != DB_DONE)
		rc = db_rc(db, r);
	return rc;
}

/* The opening both views of an order share: st's current row is (seq,
 * ORDER_COLS); *id = its order id (column text of st, borrowed while st
 * stays on its row) and the order's object opened in w. CP_ERR_INTERNAL,
 * with nothing written, for a row without an id. */
static cp_rc order_render_head(struct db_stmt *st, struct cp_jw *w, const char **id)
{
	const int c0 = 1;

	assert(db_col_count(st) >= c0 + OC_COUNT);
	*id = db_col_text(st, c0 + OC_ID);
	if (!*id)
		return CP_ERR_INTERNAL;
	cp_jw_open(w, '{');
	return CP_OK;
}

/* Render the order of st's current row, (seq, ORDER_COLS), in the API's
 * view (openapi.yaml, Order) into w. db_row_render_fn. */
static cp_rc order_render_api(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	const int c0 = 1;
	const char *id = NULL;
	cp_rc rc = order_render_head(st, w, &id);

	if (rc != CP_OK)
		return rc;
	cp_jw_key(w, "id");
	db_jw_text(w, st, c0 + OC_ID);
	cp_jw_key(w, "certificate_id");
	db_jw_text(w, st, c0 + OC_CERTIFICATE_ID);
	cp_jw_key(w, "kind");
	db_jw_text(w, st, c0 + OC_KIND);
	cp_jw_key(w, "status");
	db_jw_text(w, st, c0 + OC_STATUS);
	cp_jw_key(w, "challenge");
	db_jw_text(w, st, c0 + OC_CHALLENGE);
	cp_jw_key(w, "identifiers");
	db_jw_json(w, st, c0 + OC_IDENTIFIERS);
	cp_jw_key(w, "ca");
	db_jw_text(w, st, c0 + OC_CA);
	cp_jw_key(w, "cas"); /* the CA list it works through; null until its first run */
	db_jw_json(w, st, c0 + OC_CAS);
	cp_jw_key(w, "key_type");
	db_jw_text(w, st, c0 + OC_KEY_TYPE);
	cp_jw_key(w, "authorizations");
	/* id is column text of st, which stays on its row meanwhile. */
	rc = authz_render_all(db, id, false, w);
	if (rc != CP_OK)
		return rc;
	cp_jw_key(w, "error");
	if (db_col_null(st, c0 + OC_ERROR_REASON)) {
		cp_jw_null(w);
	} else {
		cp_jw_open(w, '{');
		cp_jw_key(w, "reason");
		db_jw_text(w, st, c0 + OC_ERROR_REASON);
		cp_jw_key(w, "detail");
		db_jw_text(w, st, c0 + OC_ERROR_DETAIL);
		cp_jw_close(w, '}');
	}
	cp_jw_key(w, "attempts");
	db_jw_int(w, st, c0 + OC_ATTEMPTS);
	cp_jw_key(w, "next_attempt_at");
	db_jw_time(w, st, c0 + OC_NEXT_ATTEMPT_AT);
	cp_jw_key(w, "dns01_deadline");
	db_jw_time(w, st, c0 + OC_DNS_DEADLINE);
	cp_jw_key(w, "metadata");
	db_jw_json(w, st, c0 + OC_METADATA);
	cp_jw_key(w, "created_at");
	db_jw_time(w, st, c0 + OC_CREATED_AT);
	cp_jw_key(w, "updated_at");
	db_jw_time(w, st, c0 + OC_UPDATED_AT);
	cp_jw_key(w, "completed_at");
	db_jw_time(w, st, c0 + OC_COMPLETED_AT);
	cp_jw_close(w, '}');
	return CP_OK;
}

/* The worker's view of the order of st's current row, (seq, ORDER_COLS).
 * db_row_render_fn. */
static cp_rc order_render_full(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	const int c0 = 1;
	const char *id = NULL;
	cp_rc rc = order_render_head(st, w, &id);

	if (rc != CP_OK)
		return rc;
	db_jw_fields(w, st, c0, order_full_fields, OC_FULL_COUNT);
	cp_jw_key(w, "authorizations");
	rc = authz_render_all(db, id, true, w);
	cp_jw_close(w, '}');
	return rc;
}

/* The one order row of st (bound by the caller) rendered by render into
 * *out, its row and its authorizations read in one snapshot. */
static cp_rc order_fetch(struct db *db, struct db_stmt *st, db_row_render_fn render, json_t **out)
{
	bool began = false;
	cp_rc rc;

	*out = NULL;
	if (!st)
		return CP_ERR_INTERNAL;
	rc = db_read_begin(db, &began);
	if (rc == CP_OK)
		rc = db_fetch_render(db, st, render, out);
	db_read_end(db, began);
	return rc;
}

cp_rc db_order_create(struct db *db, const char *tenant_id, const char *id,
		      const char *certificate_id, const char *kind, const char *challenge,
		      const json_t *identifiers, const char *ca, const char *key_type,
		      const json_t *metadata)
{
	static const char sql[] =
		"INSERT INTO orders (id, tenant_id, certificate_id, kind, challenge, identifiers, "
		"ca, key_type, metadata, created_at, updated_at) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10) ON CONFLICT (certificate_id) "
		"WHERE status IN " DB_ORDER_IN_FLIGHT_SQL " DO NOTHING";
	struct db_stmt *st = db_stmt_keyed(db, sql, id, tenant_id);
	cp_rc rc;

	assert(db && tenant_id);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, certificate_id);
	db_bind_text(st, 4, kind);
	db_bind_text(st, 5, challenge);
	db_bind_json(st, 6, identifiers);
	db_bind_text(st, 7, ca);
	db_bind_text(st, 8, key_type);
	db_bind_json(st, 9, metadata);
	db_bind_int64(st, 10, cp_now());
	/* No row: orders_in_flight says one is already running. Said by ON
	 * CONFLICT, not by the constraint's error, which in PostgreSQL would
	 * abort the caller's transaction (the scheduler goes on in it). */
	rc = db_exec_stmt(db, st);
	if (rc == CP_OK && db_changes(db) == 0)
		rc = CP_ERR_CONFLICT;
	return rc;
}

cp_rc db_order_get(struct db *db, const char *tenant_id, const char *id, json_t **out)
{
	static const char sql[] =
		"SELECT o.seq, " ORDER_COLS " FROM orders o WHERE o.tenant_id = ?1 AND o.id = ?2";
	return order_fetch(db, db_stmt_keyed(db, sql, tenant_id, id), order_render_api, out);
}

cp_rc db_order_in_flight(struct db *db, const char *tenant_id, const char *certificate_id,
			 json_t **out)
{
	static const char sql[] =
		"SELECT o.seq, " ORDER_COLS " FROM orders o WHERE o.tenant_id = ?1 "
		"AND o.certificate_id = ?2 AND o.status IN " DB_ORDER_IN_FLIGHT_SQL;
	return order_fetch(db, db_stmt_keyed(db, sql, tenant_id, certificate_id), order_render_api,
			   out);
}

cp_rc db_order_list(struct db *db, const char *tenant_id, const struct db_order_filter *f,
		    struct db_page pg, struct db_list *out)
{
	/* ?5 certificate, ?6 status (NULL: no condition), ?7 hostname. Without
	 * a hostname the tenant's seq range (orders_tenant) drives; with one,
	 * its range of order_names (migration 017), joined by seq, so either
	 * is one index range scan in either order. CROSS JOIN keeps
	 * order_names the outer loop in SQLite; the join's condition is in
	 * WHERE, as PostgreSQL takes no ON after CROSS JOIN. */
#define SQL_IF                                                                                     \
	" AND (CAST(?5 AS TEXT) IS NULL OR o.certificate_id = CAST(?5 AS TEXT)) "                  \
	"AND (CAST(?6 AS TEXT) IS NULL OR o.status = CAST(?6 AS TEXT)) "
#define SQL_ALL(cmp, dir)                                                                          \
	"SELECT o.seq, " ORDER_COLS " FROM orders o WHERE o.tenant_id = ?1 AND o.seq " cmp         \
	" ?3" SQL_IF "ORDER BY o.seq" dir " LIMIT ?4"
#define SQL_NAME(cmp, dir)                                                                         \
	"SELECT o.seq, " ORDER_COLS " FROM order_names n CROSS JOIN orders o "                     \
	"WHERE o.seq = n.order_seq AND n.tenant_id = ?1 AND n.name = ?7 AND n.order_seq " cmp      \
	" ?3 AND o.tenant_id = ?1" SQL_IF "ORDER BY n.order_seq" dir " LIMIT ?4"
	static const char *const sql_all[2] = DB_LIST_BOTH(SQL_ALL);
	static const char *const sql_name[2] = DB_LIST_BOTH(SQL_NAME);
#undef SQL_IF
#undef SQL_ALL
#undef SQL_NAME
	struct db_stmt *st;
	bool began = false;
	cp_rc rc;

	assert(db && tenant_id && f && out);
	st = db_stmt_page(db, f->hostname ? sql_name : sql_all, tenant_id, NULL, pg);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 5, f->certificate_id);
	db_bind_text(st, 6, f->status);
	db_bind_text(st, 7, f->hostname);
	/* The page and its orders' authorizations: one snapshot. */
	rc = db_read_begin(db, &began);
	if (rc == CP_OK) {
		rc = db_fetch_page_render(db, st, pg.limit, order_render_api, out);
	} else {
		out->data = NULL;
		out->next = 0;
	}
	db_read_end(db, began);
	return rc;
}

bool db_order_status_in_flight(const char *status)
{
	char quoted[32];

	/* The set is spelled once, in DB_ORDER_IN_FLIGHT_SQL: look the quoted
	 * status up in that list. */
	if (!status || strlen(status) + 3 > sizeof(quoted) || strchr(status, '\'') != NULL)
		return false;
	snprintf(quoted, sizeof(quoted), "'%s'", status);
	return strstr(DB_ORDER_IN_FLIGHT_SQL, quoted) != NULL;
}

cp_rc db_order_load(struct db *db, const char *tenant_id, const char *id, json_t **out)
{
	static const char sql[] =
		"SELECT o.seq, " ORDER_COLS " FROM orders o WHERE o.tenant_id = ?1 AND o.id = ?2";
	return order_fetch(db, db_stmt_keyed(db, sql, tenant_id, id), order_render_full, out);
}

/*
 * A patch sets a column when it has the member (null clears it) and keeps
 * it otherwise: each column a patch may set is a pair of parameters, ?f
 * (1: the member is present, 0: absent) and ?v (its value, cast to the
 * column's type), in a list X(column, SQL type, f, v) that writes both the
 * SET clause (PATCH_SET) and the binding table (PATCH_COL), so the two
 * cannot disagree. ?1 is the row's key, ?2 the statement's own value.
 */
struct patch_col {
	const char *name; /* the column, and the patch's member */
	int flag, value;  /* its parameters */
};
#define PATCH_COL(col, type, f, v) { col, f, v },
#define PATCH_SET(col, type, f, v)                                                                 \
	", " col " = CASE WHEN ?" #f " = 1 THEN CAST(?" #v " AS " type ") ELSE " col " END"

/* Bind the n columns of cols from patch (a JSON object; anything else is
 * an empty patch): a string as text, an integer (or true/false as 1/0) as
 * an integer, null as NULL, anything else as its JSON text. */
static void patch_bind(struct db_stmt *st, const json_t *patch, const struct patch_col *cols,
		       size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const json_t *v =
			json_is_object(patch) ? json_object_get(patch, cols[i].name) : NULL;
		db_bind_int64(st, cols[i].flag, v != NULL);
		if (!v || json_is_null(v))
			db_bind_null(st, cols[i].value);
		else if (json_is_string(v))
			db_bind_textn(st, cols[i].value, json_string_value(v),
				      json_string_length(v));
		else if (json_is_integer(v))
			db_bind_int64(st, cols[i].value, json_integer_value(v));
		else if (json_is_boolean(v))
			db_bind_int64(st, cols[i].value, json_is_true(v));
		else
			db_bind_json(st, cols[i].value, v);
	}
}

/* The order's columns a worker's patch sets (?3/?4: status, below). */
/* clang-format off */
#define ORDER_PATCH(X)                                                                       \
	X("account_url", "TEXT", 5, 6) X("order_url", "TEXT", 7, 8)                          \
	X("finalize_url", "TEXT", 9, 10) X("certificate_url", "TEXT", 11, 12)                \
	X("key", "TEXT", 13, 14) X("error_reason", "TEXT", 15, 16)                           \
	X("error_detail", "TEXT", 17, 18) X("attempts", "BIGINT", 19, 20)                    \
	X("next_attempt_at", "BIGINT", 21, 22) X("dns_deadline", "BIGINT", 23, 24)           \
	X("verify_at", "BIGINT", 25, 26) X("completed_at", "BIGINT", 27, 28)                \
	X("ca", "TEXT", 29, 30) X("cas", "TEXT", 31, 32)
/* clang-format on */

cp_rc db_order_save(struct db *db, const char *id, const json_t *patch)
{
	/* A terminal status is never changed (see the top of the file). */
	static const char sql[] =
		"UPDATE orders SET updated_at = ?2, status = CASE WHEN status IN ('valid', "
		"'failed', 'canceled') OR ?3 = 0 THEN status ELSE CAST(?4 AS TEXT) END" ORDER_PATCH(
			PATCH_SET) " WHERE id = ?1";
	static const struct patch_col cols[] = { { "status", 3, 4 }, ORDER_PATCH(PATCH_COL) };
	struct db_stmt *st = db_stmt_keyed(db, sql, id, NULL);

	if (st) {
		db_bind_int64(st, 2, cp_now());
		patch_bind(st, patch, cols, CP_ARRAY_LEN(cols));
	}
	return db_exec_one(db, st);
}

cp_rc db_order_authz_add(struct db *db, const char *order_id, int position, const char *url)
{
	static const char sql[] =
		"INSERT INTO order_authorizations (order_id, position, url) VALUES (?, ?, ?) "
		"ON CONFLICT (order_id, position) DO UPDATE SET url = excluded.url";
	struct db_stmt *st = db_stmt(db, sql);

	assert(db);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, order_id);
	db_bind_int64(st, 2, position);
	db_bind_text(st, 3, url);
	return db_exec_stmt(db, st);
}

/* The authorization's columns a worker's patch sets. */
/* clang-format off */
#define AUTHZ_PATCH(X)                                                                       \
	X("identifier", "TEXT", 3, 4) X("status", "TEXT", 5, 6)                              \
	X("challenge_type", "TEXT", 7, 8) X("challenge_url", "TEXT", 9, 10)                  \
	X("token", "TEXT", 11, 12) X("key_authorization", "TEXT", 13, 14)                    \
	X("txt_record_name", "TEXT", 15, 16) X("txt_record_value", "TEXT", 17, 18)           \
	X("expires_at", "BIGINT", 19, 20) X("notified", "BIGINT", 21, 22)                    \
	X("responded", "BIGINT", 23, 24) X("completed", "BIGINT", 25, 26)                    \
	X("delegated", "BIGINT", 27, 28)
/* clang-format on */

cp_rc db_order_authz_save(struct db *db, const char *order_id, int position, const json_t *patch)
{
	/* position = ?2 sets the position it matched: the first SET clause
	 * the list's ", col = ..." clauses follow. */
	static const char sql[] = "UPDATE order_authorizations SET position = ?2" AUTHZ_PATCH(
		PATCH_SET) " WHERE order_id = ?1 AND position = ?2";
	static const struct patch_col cols[] = { AUTHZ_PATCH(PATCH_COL) };
	struct db_stmt *st = db_stmt_keyed(db, sql, order_id, NULL);

	if (st) {
		db_bind_int64(st, 2, position);
		patch_bind(st, patch, cols, CP_ARRAY_LEN(cols));
	}
	return db_exec_stmt(db, st);
}
#undef ORDER_PATCH
#undef AUTHZ_PATCH
#undef PATCH_COL
#undef PATCH_SET

cp_rc db_order_reset(struct db *db, const char *id)
{
	assert(db);

	/* The CA forgot the order (restart, new account): start a fresh one,
	 * keeping the key (it never left us) and the attempt count. Only an
	 * order in flight: one canceled by its tenant while a run talked to
	 * the CA (or valid, or failed) never comes back to pending, so both
	 * statements carry the guard, in SQL, where the row is. */
	static const char del[] =
		"DELETE FROM order_authorizations WHERE order_id = ?1 AND EXISTS (SELECT 1 FROM "
		"orders WHERE id = ?1 AND status IN " DB_ORDER_IN_FLIGHT_SQL ")";
	static const char upd[] =
		"UPDATE orders SET status = 'pending', account_url = NULL, order_url = NULL, "
		"finalize_url = NULL, certificate_url = NULL, dns_deadline = NULL, updated_at = ?2 "
		"WHERE id = ?1 AND status IN " DB_ORDER_IN_FLIGHT_SQL;
	static const char exists[] = "SELECT 1 FROM orders WHERE id = ?";
	cp_rc rc = db_exec_stmt(db, db_stmt_keyed(db, del, id, NULL));

	if (rc == CP_OK)
		rc = db_exec_at(db, upd, id, cp_now());
	if (rc != CP_OK || db_changes(db) > 0)
		return rc;
	/* Nothing changed: a finished order, or none at all. */
	rc = db_probe(db, db_stmt_keyed(db, exists, id, NULL));
	return rc == CP_OK ? CP_ERR_CONFLICT : rc;
}

cp_rc db_http01_key_authorization(struct db *db, const char *token, const char *host, char **out)
{
	assert(db && out);

	/* Only a pending authorization of an order still in flight answers,
	 * and only to its own name: a token is no licence to answer for any
	 * Host (another tenant's name would validate through this responder).
	 * The CA shows identifiers in lower case; lower() keeps the compare
	 * exact for any other spelling. Range scan on the token index. */
	static const char sql[] =
		"SELECT a.key_authorization FROM order_authorizations a JOIN orders o ON "
		"o.id = a.order_id WHERE a.token = ? AND a.challenge_type = 'http-01' AND "
		"a.key_authorization IS NOT NULL AND a.status = 'pending' AND "
		"lower(a.identifier) = ? AND o.status IN ('pending', 'validating') LIMIT 1";
	struct db_stmt *st = db_stmt_keyed(db, sql, token, host);
	cp_rc rc = db_step_row(db, st);

	*out = NULL;
	if (rc != CP_OK)
		return rc;
	*out = cp_strdup(db_col_text(st, 0));
	db_reset(st);
	return *out ? CP_OK : CP_ERR_NOMEM;
}

cp_rc db_property_dns_targets(struct db *db, const char *tenant_id, const char *property_id,
			      json_t **out)
{
	/* The property's edge hostname, then its hostnames in order: one
	 * snapshot for both. */
	static const char sql_edge[] =
		"SELECT e.hostname FROM properties p JOIN edge_hostnames e ON "
		"e.id = p.edge_hostname_id WHERE p.tenant_id = ?1 AND p.id = ?2";
	static const char sql_names[] = "SELECT hostname FROM property_hostnames WHERE "
					"property_id = ?1 ORDER BY position";
	struct db_stmt *st;
	json_t *names = NULL;
	bool began = false;
	cp_rc rc;
	int r = DB_DONE;

	assert(db && out);
	*out = NULL;
	rc = db_read_begin(db, &began);
	if (rc != CP_OK)
		goto out;
	st = db_stmt_keyed(db, sql_edge, tenant_id, property_id);
	rc = db_step_row(db, st);
	if (rc != CP_OK)
		goto out;
	*out = json_pack("{s:s?}", "edge_hostname", db_col_text(st, 0));
	db_reset(st);
	names = json_array();
	st = db_stmt_keyed(db, sql_names, property_id, NULL);
	if (!*out || !names || !st) {
		rc = !st ? CP_ERR_INTERNAL : CP_ERR_NOMEM;
		goto out;
	}
	while ((r = db_step(st)) == DB_ROW)
		if (json_array_append_new(names, json_string(db_col_text(st, 0))) != 0) {
			r = DB_E_NOMEM;
			break;
		}
	db_reset(st);
	rc = r == DB_DONE ? CP_OK : r == DB_E_NOMEM ? CP_ERR_NOMEM : db_rc(db, r);
	if (rc == CP_OK) {
		rc = json_object_set_new(*out, "hostnames", names) == 0 ? CP_OK : CP_ERR_NOMEM;
		names = NULL; /* the set took it, or dropped it */
	}
out:
	db_read_end(db, began);
	json_decref(names);
	if (rc != CP_OK) {
		json_decref(*out);
		*out = NULL;
	}
	return rc;
}

cp_rc db_job_wake(struct db *db, const char *dedupe_key)
{
	static const char sql[] = "UPDATE jobs SET run_at = ?2, updated_at = ?2 "
				  "WHERE dedupe_key = ?1 AND state = 'queued' AND run_at > ?2";
	return db_exec_at(db, sql, dedupe_key, cp_now());
}

cp_rc db_renewal_attention(struct db *db, int64_t after, int64_t until, int limit, json_t **out)
{
	/* One range scan of certificates_attention (migration 008): the cost
	 * is the rows returned, never the certificates that are not due. */
	static const char sql[] = "SELECT id, tenant_id, next_attention_at FROM certificates "
				  "WHERE next_attention_at > ?1 AND next_attention_at <= ?2 "
				  "ORDER BY next_attention_at LIMIT ?3";
	struct db_stmt *st = db_stmt(db, sql);
	json_t *arr = json_array();
	int r;

	assert(limit > 0);
	*out = NULL;
	if (!st || !arr) {
		json_decref(arr);
		return CP_ERR_INTERNAL;
	}
	db_bind_int64(st, 1, after);
	db_bind_int64(st, 2, until);
	db_bind_int64(st, 3, limit);
	while ((r = db_step(st)) == DB_ROW) {
		json_t *row = json_pack("{s:s,s:s,s:I}", "id", db_col_text(st, 0), "tenant_id",
					db_col_text(st, 1), "at", (json_int_t)db_col_int64(st, 2));
		if (!row || json_array_append_new(arr, row) != 0) {
			r = DB_E_NOMEM;
			break;
		}
	}
	db_reset(st);
	if (r != DB_DONE) {
		json_decref(arr);
		return r == DB_E_NOMEM ? CP_ERR_NOMEM : db_rc(db, r);
	}
	*out = arr;
	return CP_OK;
}

cp_rc db_renewal_candidate(struct db *db, const char *certificate_id, json_t **out)
{
	/* The scheduler's re-check of one certificate the attention scan gave:
	 * an auto-renewing server certificate with a current version, not
	 * expired, whose backoff has passed, with no order in flight, used by
	 * a property with renew automation whose latest production deployment
	 * carries it. Every lookup is by id or by an index. Whether it is due
	 * is decided by the caller (lifetime rule, ARI). */
	static const char sql[] =
		"SELECT c.id, c.tenant_id, c.auto_renew, coalesce(c.key_type, v.key_type), "
		"v.not_before, v.not_after, v.serial, coalesce(c.renew_after, 0), c.failure_count, "
		"CASE WHEN v.order_id IS NULL THEN 0 ELSE 1 END "
		"FROM certificates c JOIN certificate_versions v ON v.certificate_id = c.id AND "
		"v.version = c.version WHERE c.id = ?2 AND c.type = 'server' AND "
		"c.auto_renew != 'none' AND v.not_after > ?1 AND (c.next_attempt_at IS NULL OR "
		"c.next_attempt_at <= ?1) AND NOT EXISTS (SELECT 1 FROM orders o WHERE "
		"o.certificate_id = c.id AND o.status IN ('pending', 'validating', 'issuing')) AND "
		"EXISTS (SELECT 1 FROM deployments d JOIN properties p ON p.id = d.property_id "
		"WHERE d.certificate_id = c.id AND p.tenant_id = c.tenant_id AND "
		"p.certificate_renew_automation = 1 AND d.environment = 'production' AND d.seq = "
		"(SELECT max(seq) FROM deployments d2 WHERE d2.property_id = d.property_id AND "
		"d2.environment = 'production'))";
	/* clang-format off */
	static const struct db_jw_field fields[] = {
		{ "id", DB_JW_TEXT },
		{ "tenant_id", DB_JW_TEXT },
		{ "auto_renew", DB_JW_TEXT },
		{ "key_type", DB_JW_TEXT },
		{ "not_before", DB_JW_INT },
		{ "not_after", DB_JW_INT },
		{ "serial", DB_JW_TEXT },
		{ "renew_after", DB_JW_INT },
		{ "failure_count", DB_JW_INT },
		{ "ca_issued", DB_JW_BOOL },
	};
	/* clang-format on */
	struct db_stmt *st = db_stmt(db, sql);

	*out = NULL;
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 1, cp_now());
	db_bind_text(st, 2, certificate_id);
	return db_fetch_fields(db, st, fields, CP_ARRAY_LEN(fields), out);
}

cp_rc db_renewal_facts(struct db *db, const char *tenant_id, const char *certificate_id,
		       json_t **out)
{
	/* The renewal preview's view of one certificate of the tenant: by id
	 * (unique index), its current version by (certificate_id, version)
	 * and its order in flight by orders_in_flight. */
	static const char sql[] =
		"SELECT c.type, c.auto_renew, c.version, c.key_type, v.key_type, v.not_before, "
		"v.not_after, coalesce(c.renew_after, 0), coalesce(c.next_attempt_at, 0), "
		"c.next_attention_at, CASE WHEN v.order_id IS NULL THEN 0 ELSE 1 END, (SELECT "
		"o.id FROM orders o WHERE o.certificate_id = c.id AND o.status IN ('pending', "
		"'validating', 'issuing')) FROM certificates c LEFT JOIN certificate_versions v "
		"ON v.certificate_id = c.id AND v.version = c.version WHERE c.tenant_id = ?1 AND "
		"c.id = ?2";
	/* clang-format off */
	static const struct db_jw_field fields[] = {
		{ "type", DB_JW_TEXT },
		{ "auto_renew", DB_JW_TEXT },
		{ "version", DB_JW_INT },
		{ "key_type", DB_JW_TEXT },
		{ "version_key_type", DB_JW_TEXT },
		{ "not_before", DB_JW_INT },
		{ "not_after", DB_JW_INT },
		{ "renew_after", DB_JW_INT },
		{ "next_attempt_at", DB_JW_INT },
		{ "next_attention_at", DB_JW_INT },
		{ "ca_issued", DB_JW_BOOL },
		{ "order_in_flight", DB_JW_TEXT },
	};
	/* clang-format on */

	return db_fetch_fields(db, db_stmt_keyed(db, sql, tenant_id, certificate_id), fields,
			       CP_ARRAY_LEN(fields), out);
}

cp_rc db_renewal_defer(struct db *db, const char *certificate_id, int64_t at)
{
	/* Only the scheduler writes next_attention_at directly, and only to
	 * move a candidate it re-checked: any later change of what the value
	 * depends on recomputes it (the triggers of migration 008). */
	static const char sql[] = "UPDATE certificates SET next_attention_at = ?2 WHERE id = ?1";
	struct db_stmt *st = db_stmt(db, sql);

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, certificate_id);
	if (at > 0)
		db_bind_int64(st, 2, at);
	else
		db_bind_null(st, 2);
	return db_exec_stmt(db, st);
}

cp_rc db_renewal_last_run_at(struct db *db, const char *ca, int64_t *out)
{
	/* The latest start of a renewal order of this CA queued and never run
	 * (a retry's run_at is no budget slot): where the scheduler's budget
	 * for it resumes after a restart. Reads only the orders in flight (a
	 * partial index over the in-flight statuses, orders_in_flight or
	 * orders_tenant_in_flight, as the planner likes: no INDEXED BY, which
	 * is SQLite's alone) and their job by its unique dedupe key. */
	static const char sql[] =
		"SELECT coalesce(max(j.run_at), 0) FROM orders o "
		"JOIN jobs j ON j.dedupe_key = 'acme_order:' || o.id WHERE o.status IN "
		"('pending', 'validating', 'issuing') AND o.kind = 'renew' AND o.ca = ?1 AND "
		"j.state = 'queued' AND j.attempts = 0";
	struct db_stmt *st = db_stmt(db, sql);
	int r;

	*out = 0;
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, ca);
	r = db_step(st);
	if (r == DB_ROW)
		*out = db_col_int64(st, 0);
	db_reset(st);
	return r == DB_ROW ? CP_OK : db_rc(db, r);
}

cp_rc db_renewal_hostnames(struct db *db, const char *tenant_id, const char *certificate_id,
			   json_t **out)
{
	assert(db && tenant_id && out);

	/* Every hostname of the production deployments (latest per property,
	 * renew automation on) that carry the certificate, deduplicated: the
	 * deployments' stored arrays, in property order, each name where it
	 * first appears (a set of the names seen keeps that linear). */
	static const char sql[] =
		"SELECT d.hostnames FROM deployments d JOIN properties p ON p.id = d.property_id "
		"WHERE p.tenant_id = ?1 AND p.certificate_renew_automation = 1 AND "
		"d.environment = 'production' AND d.certificate_id = ?2 AND d.seq = (SELECT "
		"max(seq) FROM deployments d2 WHERE d2.property_id = d.property_id AND "
		"d2.environment = 'production') ORDER BY p.seq";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, certificate_id);
	json_t *names = json_array(), *seen = json_object();
	cp_rc rc = CP_OK;
	int r = DB_DONE;

	*out = NULL;
	if (!st || !names || !seen) {
		rc = !st ? CP_ERR_INTERNAL : CP_ERR_NOMEM;
		goto out;
	}
	while (rc == CP_OK && (r = db_step(st)) == DB_ROW) {
		json_t *arr = json_loadb(db_col_text(st, 0), db_col_bytes(st, 0), 0, NULL), *h;
		size_t i;

		if (!json_is_array(arr))
			rc = CP_ERR_INTERNAL; /* stored by db_bind_json: an array */
		json_array_foreach(arr, i, h)
		{
			const char *name = json_string_value(h);
			if (rc != CP_OK || !name || json_object_get(seen, name))
				continue;
			if (json_object_set_new(seen, name, json_true()) != 0 ||
			    json_array_append(names, h) != 0)
				rc = CP_ERR_NOMEM;
		}
		json_decref(arr);
	}
	db_reset(st);
	if (rc == CP_OK && r != DB_DONE)
		rc = db_rc(db, r);
	if (rc == CP_OK) {
		*out = names;
		names = NULL;
	}
out:
	json_decref(names);
	json_decref(seen);
	return rc;
}

cp_rc db_order_start(struct db *db, const char *tenant_id, const char *certificate_id,
		     const char *kind, const char *challenge, const json_t *identifiers,
		     const char *ca, const char *key_type, const json_t *metadata, int64_t run_at,
		     char id_out[CP_UUID_LEN + 1])
{
	char id[CP_UUID_LEN + 1], dedupe[64];
	json_t *payload = NULL;
	cp_rc rc;

	assert(db && tenant_id);
	cp_uuid(id);
	rc = db_order_create(db, tenant_id, id, certificate_id, kind, challenge, identifiers, ca,
			     key_type, metadata);
	if (rc != CP_OK)
		return rc;
	payload = json_pack("{s:s}", "order_id", id);
	snprintf(dedupe, sizeof(dedupe), "acme_order:%s", id);
	rc = payload ? db_job_enqueue(db, "acme_order", tenant_id, payload, run_at, dedupe)
		     : CP_ERR_NOMEM;
	json_decref(payload);
	if (rc == CP_OK && strcmp(kind, "renew") == 0)
		rc = db_certificate_set_status(db, tenant_id, certificate_id, "renewing");
	if (rc == CP_OK && id_out)
		memcpy(id_out, id, sizeof(id));
	return rc;
}

cp_rc db_renewal_give_up_expired(struct db *db, int *count)
{
	assert(db && count);

	/* Auto-renewal retries until the certificate expires; an expired
	 * certificate whose last attempt failed is then "failed". A later
	 * successful renewal (POST .../renew) makes it active again. */
	static const char sql[] =
		"UPDATE certificates SET status = 'failed', updated_at = ?1 WHERE type = 'server' "
		"AND auto_renew != 'none' AND failure_count > 0 AND status != 'failed' AND "
		"EXISTS (SELECT 1 FROM certificate_versions v WHERE v.certificate_id = "
		"certificates.id AND v.version = certificates.version AND v.not_after < ?1)";
	struct db_stmt *st = db_stmt(db, sql);
	cp_rc rc;

	*count = 0;
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 1, cp_now());
	rc = db_exec_stmt(db, st);
	if (rc == CP_OK)
		*count = db_changes(db);
	return rc;
}
