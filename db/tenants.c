/*
 * tenants.c - tenants and their API keys. Keys are stored only as the hex
 * SHA-256 of the key text; the key itself is shown once by the API.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <string.h>

/* clang-format off */
#define TENANT_JSON \
	"json_object('id', id, 'name', name, 'created_at', " DB_TS("created_at") ")"
/* clang-format on */
/* clang-format off */
#define APIKEY_JSON                                                                        \
	"json_object('id', id, 'tenant_id', tenant_id, 'name', name, 'prefix', prefix, " \
	"'created_at', " DB_TS("created_at") ")"
/* clang-format on */

cp_rc db_tenant_create(struct db *db, const char *name, json_t **out)
{
	static const char sql[] = "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?) "
				  "RETURNING " TENANT_JSON;
	sqlite3_stmt *st = db_stmt(db, sql);
	char id[CP_UUID_LEN + 1];

	assert(db && out);
	if (!st)
		return CP_ERR_INTERNAL;
	cp_uuid(id);
	db_bind_text(st, 1, id);
	db_bind_text(st, 2, name);
	sqlite3_bind_int64(st, 3, cp_now());
	return db_fetch_json(db, st, out);
}

cp_rc db_tenant_get(struct db *db, const char *id, json_t **out)
{
	static const char sql[] = "SELECT " TENANT_JSON " FROM tenants WHERE id = ?";
	sqlite3_stmt *st = db_stmt(db, sql);

	assert(db && out);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, id);
	return db_fetch_json(db, st, out);
}

cp_rc db_tenant_list(struct db *db, struct db_page pg, struct db_list *out)
{
	static const char sql[] =
		"SELECT seq, " TENANT_JSON " FROM tenants WHERE seq > ? ORDER BY seq LIMIT ?";
	sqlite3_stmt *st = db_stmt(db, sql);

	assert(db && out);
	if (!st)
		return CP_ERR_INTERNAL;
	sqlite3_bind_int64(st, 1, pg.after);
	sqlite3_bind_int(st, 2, pg.limit + 1);
	return db_fetch_page(db, st, pg.limit, out);
}

cp_rc db_tenant_delete(struct db *db, const char *id)
{
	static const char sql[] = "DELETE FROM tenants WHERE id = ?";
	sqlite3_stmt *st = db_stmt(db, sql);
	cp_rc rc;

	assert(db);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, id);
	rc = db_exec_one(db, st);
	return rc;
}

cp_rc db_apikey_create(struct db *db, const char *tenant_id, const char *name, const char *key_hash,
		       const char *prefix, json_t **out)
{
	static const char sql[] =
		"INSERT INTO api_keys (id, tenant_id, name, key_hash, prefix, created_at) "
		"SELECT ?, id, ?, ?, ?, ? FROM tenants WHERE id = ? RETURNING " APIKEY_JSON;
	sqlite3_stmt *st = db_stmt(db, sql);
	char id[CP_UUID_LEN + 1];

	assert(db && tenant_id && out);
	if (!st)
		return CP_ERR_INTERNAL;
	cp_uuid(id);
	db_bind_text(st, 1, id);
	db_bind_text(st, 2, name);
	db_bind_text(st, 3, key_hash);
	db_bind_text(st, 4, prefix);
	sqlite3_bind_int64(st, 5, cp_now());
	db_bind_text(st, 6, tenant_id);
	return db_fetch_json(db, st, out);
}

cp_rc db_apikey_list(struct db *db, const char *tenant_id, struct db_page pg, struct db_list *out)
{
	static const char sql[] = "SELECT seq, " APIKEY_JSON " FROM api_keys "
				  "WHERE tenant_id = ? AND seq > ? ORDER BY seq LIMIT ?";
	sqlite3_stmt *st = db_stmt(db, sql);

	assert(db && tenant_id && out);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, tenant_id);
	sqlite3_bind_int64(st, 2, pg.after);
	sqlite3_bind_int(st, 3, pg.limit + 1);
	return db_fetch_page(db, st, pg.limit, out);
}

cp_rc db_apikey_delete(struct db *db, const char *tenant_id, const char *id)
{
	static const char sql[] = "DELETE FROM api_keys WHERE tenant_id = ? AND id = ?";
	sqlite3_stmt *st = db_stmt(db, sql);
	cp_rc rc;

	assert(db && tenant_id);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, tenant_id);
	db_bind_text(st, 2, id);
	rc = db_exec_one(db, st);
	return rc;
}

cp_rc db_apikey_lookup(struct db *db, const char *key_hash, char tenant_id[CP_UUID_LEN + 1],
		       char key_id[CP_UUID_LEN + 1])
{
	static const char sql[] = "SELECT tenant_id, id FROM api_keys WHERE key_hash = ?";
	sqlite3_stmt *st = db_stmt(db, sql);
	cp_rc rc = CP_ERR_NOT_FOUND;
	int r;

	assert(db && key_hash);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, key_hash);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		snprintf(tenant_id, CP_UUID_LEN + 1, "%s",
			 (const char *)sqlite3_column_text(st, 0));
		snprintf(key_id, CP_UUID_LEN + 1, "%s", (const char *)sqlite3_column_text(st, 1));
		rc = CP_OK;
	} else if (r != SQLITE_DONE) {
		rc = db_rc(db, r);
	}
	sqlite3_reset(st);
	return rc;
}
