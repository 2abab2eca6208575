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
	char id[CP_UUID_LEN + 1];
	sqlite3_stmt *st = db_stmt_new_row(db, sql, id, name);

	assert(db && out);
	if (!st)
		return CP_ERR_INTERNAL;
	sqlite3_bind_int64(st, 3, cp_now());
	return db_fetch_json(db, st, out);
}

cp_rc db_tenant_get(struct db *db, const char *id, json_t **out)
{
	static const char sql[] = "SELECT " TENANT_JSON " FROM tenants WHERE id = ?2";
	return db_get_scoped(db, sql, NULL, id, out);
}

cp_rc db_tenant_list(struct db *db, struct db_page pg, struct db_list *out)
{
	static const char sql[] =
		"SELECT seq, " TENANT_JSON " FROM tenants WHERE seq > ?3 ORDER BY seq LIMIT ?4";
	return db_list_scoped(db, sql, NULL, NULL, pg, out);
}

cp_rc db_tenant_delete(struct db *db, const char *id)
{
	static const char sql[] = "DELETE FROM tenants WHERE id = ?2";
	return db_delete_scoped(db, sql, NULL, id);
}

cp_rc db_apikey_create(struct db *db, const char *tenant_id, const char *name, const char *key_hash,
		       const char *prefix, json_t **out)
{
	static const char sql[] =
		"INSERT INTO api_keys (id, tenant_id, name, key_hash, prefix, created_at) "
		"SELECT ?, id, ?, ?, ?, ? FROM tenants WHERE id = ? RETURNING " APIKEY_JSON;
	char id[CP_UUID_LEN + 1];
	sqlite3_stmt *st = db_stmt_new_row(db, sql, id, name);

	assert(db && tenant_id && out);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, key_hash);
	db_bind_text(st, 4, prefix);
	sqlite3_bind_int64(st, 5, cp_now());
	db_bind_text(st, 6, tenant_id);
	return db_fetch_json(db, st, out);
}

cp_rc db_apikey_list(struct db *db, const char *tenant_id, struct db_page pg, struct db_list *out)
{
	static const char sql[] = "SELECT seq, " APIKEY_JSON " FROM api_keys "
				  "WHERE tenant_id = ?1 AND seq > ?3 ORDER BY seq LIMIT ?4";
	return db_list_scoped(db, sql, tenant_id, NULL, pg, out);
}

cp_rc db_apikey_delete(struct db *db, const char *tenant_id, const char *id)
{
	static const char sql[] = "DELETE FROM api_keys WHERE tenant_id = ?1 AND id = ?2";
	return db_delete_scoped(db, sql, tenant_id, id);
}

cp_rc db_apikey_lookup(struct db *db, const char *key_hash, char tenant_id[CP_UUID_LEN + 1],
		       char key_id[CP_UUID_LEN + 1])
{
	static const char sql[] = "SELECT tenant_id, id FROM api_keys WHERE key_hash = ?";
	sqlite3_stmt *st = db_stmt_keyed(db, sql, key_hash, NULL);
	cp_rc rc = db_step_row(db, st);

	if (rc != CP_OK)
		return rc;
	db_column_copy(st, 0, tenant_id, CP_UUID_LEN + 1);
	db_column_copy(st, 1, key_id, CP_UUID_LEN + 1);
	sqlite3_reset(st);
	return CP_OK;
}
