/*
 * audit.c - the audit log (every change, who made it) and the idempotency
 * records that let a client retry a POST without creating twice.
 */
#include "db/db_internal.h"

#include <stdlib.h>
#include <string.h>

#define AUDIT_JSON                                                                       \
	"json_object('id', id, 'tenant_id', tenant_id, 'actor', actor, 'action', action, " \
	"'resource_type', resource_type, 'resource_id', resource_id, "                     \
	"'detail', json(coalesce(detail, 'null')), 'created_at', " DB_TS("created_at") ")"

cp_rc db_audit_add(struct db *db, const char *tenant_id, const char *actor, const char *action,
		   const char *resource_type, const char *resource_id, json_t *detail)
{
	static const char sql[] =
		"INSERT INTO audit_log (id, tenant_id, actor, action, resource_type, resource_id, "
		"detail, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)";
	sqlite3_stmt *st = db_stmt(db, sql);
	char id[CP_UUID_LEN + 1];

	if (!st)
		return CP_ERR_INTERNAL;
	cp_uuid(id);
	db_bind_text(st, 1, id);
	db_bind_text(st, 2, tenant_id);
	db_bind_text(st, 3, actor);
	db_bind_text(st, 4, action);
	db_bind_text(st, 5, resource_type);
	db_bind_text(st, 6, resource_id);
	db_bind_json(st, 7, detail);
	sqlite3_bind_int64(st, 8, cp_now());
	return db_exec_stmt(db, st);
}

cp_rc db_audit_list(struct db *db, const char *tenant_id, struct db_page pg, struct db_list *out)
{
	static const char sql_all[] = "SELECT seq, " AUDIT_JSON " FROM audit_log "
				      "WHERE seq > ? ORDER BY seq LIMIT ?";
	static const char sql_tenant[] = "SELECT seq, " AUDIT_JSON " FROM audit_log "
					 "WHERE tenant_id = ?3 AND seq > ?1 ORDER BY seq LIMIT ?2";
	sqlite3_stmt *st = db_stmt(db, tenant_id ? sql_tenant : sql_all);

	if (!st)
		return CP_ERR_INTERNAL;
	sqlite3_bind_int64(st, 1, pg.after);
	sqlite3_bind_int(st, 2, pg.limit + 1);
	if (tenant_id)
		db_bind_text(st, 3, tenant_id);
	return db_fetch_page(db, st, pg.limit, out);
}

void db_idem_clear(struct db_idem *r)
{
	if (!r)
		return;
	free(r->path);
	free(r->content_type);
	free(r->response);
	memset(r, 0, sizeof(*r));
}

cp_rc db_idem_get(struct db *db, const char *scope, const char *key, int64_t max_age,
		  struct db_idem *out)
{
	static const char sql[] = "SELECT body_hash, method, path, status, content_type, response "
				  "FROM idempotency WHERE scope = ? AND key = ? AND created_at >= ?";
	sqlite3_stmt *st = db_stmt(db, sql);
	cp_rc rc = CP_ERR_NOT_FOUND;
	int r;

	memset(out, 0, sizeof(*out));
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, scope);
	db_bind_text(st, 2, key);
	sqlite3_bind_int64(st, 3, cp_now() - max_age);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		snprintf(out->body_hash, sizeof(out->body_hash), "%s",
			 (const char *)sqlite3_column_text(st, 0));
		snprintf(out->method, sizeof(out->method), "%s",
			 (const char *)sqlite3_column_text(st, 1));
		out->path = cp_strdup((const char *)sqlite3_column_text(st, 2));
		out->status = sqlite3_column_int(st, 3);
		out->content_type = cp_strdup((const char *)sqlite3_column_text(st, 4));
		out->response_len = (size_t)sqlite3_column_bytes(st, 5);
		out->response = malloc(out->response_len + 1);
		if (out->response) {
			memcpy(out->response, sqlite3_column_blob(st, 5), out->response_len);
			out->response[out->response_len] = '\0';
		}
		rc = out->path && out->content_type && out->response ? CP_OK : CP_ERR_NOMEM;
		if (rc != CP_OK)
			db_idem_clear(out);
	} else if (r != SQLITE_DONE) {
		rc = db_rc(db, r);
	}
	sqlite3_reset(st);
	return rc;
}

cp_rc db_idem_put(struct db *db, const char *scope, const char *key, const struct db_idem *r)
{
	static const char sql[] =
		"INSERT INTO idempotency (scope, key, method, path, body_hash, status, "
		"content_type, response, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
		"ON CONFLICT (scope, key) DO UPDATE SET method = excluded.method, "
		"path = excluded.path, body_hash = excluded.body_hash, status = excluded.status, "
		"content_type = excluded.content_type, response = excluded.response, "
		"created_at = excluded.created_at WHERE idempotency.created_at < ?10";
	sqlite3_stmt *st = db_stmt(db, sql);

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, scope);
	db_bind_text(st, 2, key);
	db_bind_text(st, 3, r->method);
	db_bind_text(st, 4, r->path);
	db_bind_text(st, 5, r->body_hash);
	sqlite3_bind_int(st, 6, r->status);
	db_bind_text(st, 7, r->content_type);
	sqlite3_bind_blob(st, 8, r->response, (int)r->response_len, SQLITE_TRANSIENT);
	sqlite3_bind_int64(st, 9, cp_now());
	/* An expired record (older than 24 h) may be replaced by a new one. */
	sqlite3_bind_int64(st, 10, cp_now() - 86400);
	return db_exec_stmt(db, st);
}

cp_rc db_idem_purge(struct db *db, int64_t cutoff)
{
	static const char sql[] = "DELETE FROM idempotency WHERE created_at < ?";
	sqlite3_stmt *st = db_stmt(db, sql);

	if (!st)
		return CP_ERR_INTERNAL;
	sqlite3_bind_int64(st, 1, cutoff);
	return db_exec_stmt(db, st);
}
