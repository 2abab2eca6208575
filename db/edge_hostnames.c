/*
 * edge_hostnames.c - the CNAME targets tenants point their sites at. The
 * hostname column is UNIQUE across every tenant (the edge zone is shared),
 * so a taken name is a conflict, whoever owns it. An edge hostname cannot
 * be deleted while a property uses it.
 */
#include "db/db_internal.h"

#include <assert.h>

/* clang-format off */
#define EDGE_JSON                                                          \
	"json_object('id', id, 'hostname', hostname, 'label', label, " \
	"'created_at', " DB_TS("created_at") ")"
/* clang-format on */

cp_rc db_edge_hostname_create(struct db *db, const char *tenant_id, const char *label,
			      const char *hostname, json_t **out)
{
	static const char sql[] = "INSERT INTO edge_hostnames (id, tenant_id, hostname, label, "
				  "created_at) VALUES (?, ?, ?, ?, ?) RETURNING " EDGE_JSON;
	sqlite3_stmt *st = db_stmt(db, sql);
	char id[CP_UUID_LEN + 1];

	assert(db && tenant_id && out);
	if (!st)
		return CP_ERR_INTERNAL;
	cp_uuid(id);
	db_bind_text(st, 1, id);
	db_bind_text(st, 2, tenant_id);
	db_bind_text(st, 3, hostname);
	db_bind_text(st, 4, label);
	sqlite3_bind_int64(st, 5, cp_now());
	return db_fetch_json(db, st, out);
}

cp_rc db_edge_hostname_get(struct db *db, const char *tenant_id, const char *id, json_t **out)
{
	static const char sql[] = "SELECT " EDGE_JSON " FROM edge_hostnames "
				  "WHERE tenant_id = ? AND id = ?";
	sqlite3_stmt *st = db_stmt(db, sql);

	assert(db && tenant_id && out);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, tenant_id);
	db_bind_text(st, 2, id);
	return db_fetch_json(db, st, out);
}

cp_rc db_edge_hostname_list(struct db *db, const char *tenant_id, struct db_page pg,
			    struct db_list *out)
{
	static const char sql[] = "SELECT seq, " EDGE_JSON " FROM edge_hostnames "
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

cp_rc db_edge_hostname_delete(struct db *db, const char *tenant_id, const char *id)
{
	assert(db && tenant_id);

	/* The foreign key would refuse too, but only with a generic constraint
	 * error; asking first gives the caller a precise CP_ERR_CONFLICT. */
	static const char sql_used[] = "SELECT 1 FROM properties WHERE edge_hostname_id = ? "
				       "AND tenant_id = ? LIMIT 1";
	static const char sql[] = "DELETE FROM edge_hostnames WHERE tenant_id = ? AND id = ?";
	sqlite3_stmt *st = db_stmt(db, sql_used);
	cp_rc rc;
	int r;

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, id);
	db_bind_text(st, 2, tenant_id);
	r = sqlite3_step(st);
	sqlite3_reset(st);
	if (r == SQLITE_ROW)
		return CP_ERR_CONFLICT;
	if (r != SQLITE_DONE)
		return db_rc(db, r);
	st = db_stmt(db, sql);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, tenant_id);
	db_bind_text(st, 2, id);
	rc = db_exec_one(db, st);
	return rc;
}
