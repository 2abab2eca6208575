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
	char id[CP_UUID_LEN + 1];
	struct db_stmt *st = db_stmt_new_row(db, sql, id, tenant_id);

	assert(db && tenant_id && out);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, hostname);
	db_bind_text(st, 4, label);
	db_bind_int64(st, 5, cp_now());
	return db_fetch_json(db, st, out);
}

cp_rc db_edge_hostname_get(struct db *db, const char *tenant_id, const char *id, json_t **out)
{
	static const char sql[] = "SELECT " EDGE_JSON " FROM edge_hostnames "
				  "WHERE tenant_id = ?1 AND id = ?2";
	return db_get_scoped(db, sql, tenant_id, id, out);
}

cp_rc db_edge_hostname_list(struct db *db, const char *tenant_id, struct db_page pg,
			    struct db_list *out)
{
#define SQL(cmp, dir)                                                                              \
	"SELECT seq, " EDGE_JSON " FROM edge_hostnames WHERE tenant_id = ?1 AND seq " cmp " ?3 "   \
	"ORDER BY seq" dir " LIMIT ?4"
	static const char *const sql[2] = DB_LIST_BOTH(SQL);
#undef SQL
	return db_list_scoped(db, sql, tenant_id, NULL, pg, out);
}

cp_rc db_edge_hostname_delete(struct db *db, const char *tenant_id, const char *id)
{
	static const char sql_used[] = "SELECT 1 FROM properties WHERE edge_hostname_id = ?2 "
				       "AND tenant_id = ?1 LIMIT 1";
	static const char sql[] = "DELETE FROM edge_hostnames WHERE tenant_id = ?1 AND id = ?2";
	cp_rc rc = db_unused_or_conflict(db, sql_used, tenant_id, id);

	return rc == CP_OK ? db_delete_scoped(db, sql, tenant_id, id) : rc;
}
