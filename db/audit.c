/*
 * audit.c - the audit log (every change, who made it) and the idempotency
 * records that let a client retry a POST without creating twice.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* An audit record as the API shows it: AUDIT_COLS, member by member. */
#define AUDIT_COLS "id, tenant_id, actor, action, resource_type, resource_id, detail, created_at"
/* clang-format off */
static const struct db_jw_field audit_fields[] = {
	{ "id", DB_JW_TEXT },
	{ "tenant_id", DB_JW_TEXT },
	{ "actor", DB_JW_TEXT },
	{ "action", DB_JW_TEXT },
	{ "resource_type", DB_JW_TEXT },
	{ "resource_id", DB_JW_TEXT },
	{ "detail", DB_JW_JSON }, /* NULL: null */
	{ "created_at", DB_JW_TIME },
};
/* clang-format on */

/* db_row_render_fn for (seq, AUDIT_COLS) rows. */
static cp_rc audit_render_listed(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	(void)db;
	cp_jw_open(w, '{');
	db_jw_fields(w, st, 1, audit_fields, CP_ARRAY_LEN(audit_fields));
	cp_jw_close(w, '}');
	return CP_OK;
}

cp_rc db_audit_add(struct db *db, const char *tenant_id, const char *actor, const char *action,
		   const char *resource_type, const char *resource_id, json_t *detail)
{
	static const char sql[] =
		"INSERT INTO audit_log (id, tenant_id, actor, action, resource_type, resource_id, "
		"detail, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
	char id[CP_UUID_LEN + 1];
	struct db_stmt *st = db_stmt_new_row(db, sql, id, tenant_id);

	assert(db);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, actor);
	db_bind_text(st, 4, action);
	db_bind_text(st, 5, resource_type);
	db_bind_text(st, 6, resource_id);
	db_bind_json(st, 7, detail);
	db_bind_int64(st, 8, cp_now());
	return db_exec_stmt(db, st);
}

cp_rc db_audit_commit(struct db *db, cp_rc rc_so_far, const char *tenant_id, const char *actor,
		      const char *action, const char *resource_type, const char *resource_id,
		      json_t *detail)
{
	cp_rc rc = rc_so_far;

	if (rc == CP_OK)
		rc = db_audit_add(db, tenant_id, actor, action, resource_type, resource_id, detail);
	if (rc == CP_OK)
		rc = db_commit(db);
	if (rc != CP_OK)
		db_rollback(db);
	return rc;
}

cp_rc db_audit_list(struct db *db, const char *tenant_id, struct db_page pg, struct db_list *out)
{
	/* Two statements (each in both orders), so that each is one index
	 * range scan. */
#define SQL_ALL(cmp, dir)                                                                          \
	"SELECT seq, " AUDIT_COLS " FROM audit_log WHERE seq " cmp " ?3 ORDER BY seq" dir          \
	" LIMIT ?4"
#define SQL_TENANT(cmp, dir)                                                                       \
	"SELECT seq, " AUDIT_COLS " FROM audit_log WHERE tenant_id = ?1 AND seq " cmp " ?3 "       \
	"ORDER BY seq" dir " LIMIT ?4"
	static const char *const sql_all[2] = DB_LIST_BOTH(SQL_ALL);
	static const char *const sql_tenant[2] = DB_LIST_BOTH(SQL_TENANT);
#undef SQL_ALL
#undef SQL_TENANT
	struct db_stmt *st =
		db_stmt_page(db, tenant_id ? sql_tenant : sql_all, tenant_id, NULL, pg);

	return db_fetch_page_render(db, st, pg.limit, audit_render_listed, out);
}

void db_idem_clear(struct db_idem *r)
{
	if (!r)
		return;
	free(r->content_type);
	free(r->response);
	memset(r, 0, sizeof(*r));
}

/* The cached statement sql with scope bound at ?1..?5 and owner at ?6
 * (NULL: left unbound). Borrowed; NULL on error. */
static struct db_stmt *idem_stmt(struct db *db, const char *sql, const struct db_idem_scope *s,
				 const char *owner)
{
	struct db_stmt *st = db_stmt(db, sql);

	if (!st)
		return NULL;
	db_bind_text(st, 1, s->actor);
	db_bind_text(st, 2, s->tenant_id ? s->tenant_id : "");
	db_bind_text(st, 3, s->method);
	db_bind_text(st, 4, s->path);
	db_bind_text(st, 5, s->key);
	if (owner)
		db_bind_text(st, 6, owner);
	return st;
}

/* Read the row of scope into out; *claim PENDING or DONE. */
static cp_rc idem_read(struct db *db, const struct db_idem_scope *scope, enum db_idem_claim *claim,
		       struct db_idem *out)
{
	static const char sql[] = "SELECT state, body_hash, status, content_type, response "
				  "FROM idempotency WHERE actor = ?1 AND tenant_id = ?2 AND "
				  "method = ?3 AND path = ?4 AND key = ?5";
	struct db_stmt *st = idem_stmt(db, sql, scope, NULL);
	cp_rc rc = db_step_row(db, st);

	if (rc != CP_OK)
		return rc;
	*claim = strcmp(db_col_text(st, 0), "done") == 0 ? DB_IDEM_DONE : DB_IDEM_PENDING;
	db_column_copy(st, 1, out->body_hash, sizeof(out->body_hash));
	out->status = db_col_int64(st, 2);
	out->content_type = cp_strdup(db_col_text(st, 3));
	out->response_len = (size_t)db_col_bytes(st, 4);
	out->response = malloc(out->response_len + 1);
	if (out->response) {
		if (out->response_len)
			memcpy(out->response, db_col_text(st, 4), out->response_len);
		out->response[out->response_len] = '\0';
	}
	db_reset(st);
	rc = out->content_type && out->response ? CP_OK : CP_ERR_NOMEM;
	if (rc != CP_OK)
		db_idem_clear(out);
	return rc;
}

cp_rc db_idem_reserve(struct db *db, const struct db_idem_scope *scope, const char *owner,
		      const char *body_hash, int64_t lease_seconds, int64_t max_age,
		      enum db_idem_claim *claim, struct db_idem *out)
{
	assert(db && scope && owner && body_hash && claim);

	/* One statement (under SQLite's write lock; in PostgreSQL a twin
	 * waits on the key's row and re-checks the WHERE): of any number of
	 * twins, exactly one inserts (or takes over an expired row); the
	 * others see no change and read what holds the key. */
	static const char sql[] =
		"INSERT INTO idempotency (actor, tenant_id, method, path, key, state, owner, "
		"lease_until, body_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6, "
		"?7, ?8, ?9) ON CONFLICT (actor, tenant_id, method, path, key) DO UPDATE SET "
		"state = 'pending', owner = excluded.owner, lease_until = excluded.lease_until, "
		"body_hash = excluded.body_hash, status = 0, content_type = '', response = '', "
		"created_at = excluded.created_at WHERE (idempotency.state = 'pending' AND "
		"idempotency.lease_until < ?9) OR idempotency.created_at < ?10";
	int64_t now = cp_now();
	cp_rc rc = CP_ERR_BUSY;

	memset(out, 0, sizeof(*out));
	for (int attempt = 0; attempt < 3; attempt++) {
		struct db_stmt *st = idem_stmt(db, sql, scope, owner);
		if (!st)
			return CP_ERR_INTERNAL;
		db_bind_int64(st, 7, now + lease_seconds);
		db_bind_text(st, 8, body_hash);
		db_bind_int64(st, 9, now);
		db_bind_int64(st, 10, now - max_age);
		rc = db_exec_stmt(db, st);
		if (rc != CP_OK)
			return rc;
		if (db_changes(db) == 1) {
			*claim = DB_IDEM_RESERVED;
			snprintf(out->body_hash, sizeof(out->body_hash), "%s", body_hash);
			return CP_OK;
		}
		rc = idem_read(db, scope, claim, out);
		if (rc != CP_ERR_NOT_FOUND)
			return rc;
		/* Released or purged between the two statements: try again. */
		rc = CP_ERR_BUSY;
	}
	return rc;
}

cp_rc db_idem_finish(struct db *db, const struct db_idem_scope *scope, const char *owner,
		     const struct db_idem *r)
{
	static const char sql[] =
		"UPDATE idempotency SET state = 'done', status = ?7, content_type = ?8, "
		"response = ?9 WHERE actor = ?1 AND tenant_id = ?2 AND method = ?3 AND "
		"path = ?4 AND key = ?5 AND owner = ?6 AND state = 'pending'";
	struct db_stmt *st = idem_stmt(db, sql, scope, owner);

	assert(db && scope && owner && r);
	/* A response is text (JSON, or a sealed value): PostgreSQL's text
	 * cannot hold a NUL, so none is stored on any engine. */
	if (r->response && memchr(r->response, '\0', r->response_len))
		return CP_ERR_INVALID;
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 7, r->status);
	db_bind_text(st, 8, r->content_type);
	/* As text, not a blob: key rotation (db/secrets.c) finds sealed values
	 * with LIKE 'cpk1:%', which never matches a blob. */
	db_bind_textn(st, 9, r->response ? r->response : "", r->response ? r->response_len : 0);
	return db_exec_one(db, st);
}

cp_rc db_idem_release(struct db *db, const struct db_idem_scope *scope, const char *owner)
{
	static const char sql[] = "DELETE FROM idempotency WHERE actor = ?1 AND tenant_id = ?2 AND "
				  "method = ?3 AND path = ?4 AND key = ?5 AND owner = ?6 AND "
				  "state = 'pending'";
	return db_exec_one(db, idem_stmt(db, sql, scope, owner));
}

cp_rc db_idem_purge(struct db *db, int64_t cutoff)
{
	static const char sql[] = "DELETE FROM idempotency WHERE created_at < ?";
	struct db_stmt *st = db_stmt(db, sql);

	assert(db);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 1, cutoff);
	return db_exec_stmt(db, st);
}
