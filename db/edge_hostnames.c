/*
 * edge_hostnames.c - the CNAME targets tenants point their sites at. The
 * hostname column is UNIQUE across every tenant (the edge zone is shared),
 * so a taken name is a conflict, whoever owns it. An edge hostname cannot
 * be deleted while a property uses it.
 */
#include "db/db_internal.h"

#include <assert.h>

/* An edge hostname as the API shows it (openapi.yaml, EdgeHostname): the
 * columns of EDGE_COLS, seq first, rendered by edge_render (create, get,
 * list). */
#define EDGE_COLS "seq, id, hostname, label, created_at"

/* db_row_render_fn of an edge hostname: st's row is (EDGE_COLS). */
static cp_rc edge_render(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	(void)db;
	assert(db_col_count(st) >= 5);
	cp_jw_open(w, '{');
	cp_jw_key(w, "id");
	db_jw_text(w, st, 1);
	cp_jw_key(w, "hostname");
	db_jw_text(w, st, 2);
	cp_jw_key(w, "label");
	db_jw_text(w, st, 3);
	cp_jw_key(w, "created_at");
	db_jw_time(w, st, 4);
	cp_jw_close(w, '}');
	return CP_OK;
}

cp_rc db_edge_hostname_create(struct db *db, const char *tenant_id, const char *label,
			      const char *hostname, json_t **out)
{
	static const char sql[] = "INSERT INTO edge_hostnames (id, tenant_id, hostname, label, "
				  "created_at) VALUES (?, ?, ?, ?, ?) RETURNING " EDGE_COLS;
	char id[CP_UUID_LEN + 1];
	struct db_stmt *st = db_stmt_new_row(db, sql, id, tenant_id);

	assert(db && tenant_id && out);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, hostname);
	db_bind_text(st, 4, label);
	db_bind_int64(st, 5, cp_now());
	return db_fetch_render(db, st, edge_render, out);
}

cp_rc db_edge_hostname_get(struct db *db, const char *tenant_id, const char *id, json_t **out)
{
	static const char sql[] = "SELECT " EDGE_COLS " FROM edge_hostnames "
				  "WHERE tenant_id = ?1 AND id = ?2";
	return db_fetch_render(db, db_stmt_keyed(db, sql, tenant_id, id), edge_render, out);
}

cp_rc db_edge_hostname_list(struct db *db, const char *tenant_id, struct db_page pg,
			    struct db_list *out)
{
#define SQL(cmp, dir)                                                                              \
	"SELECT " EDGE_COLS " FROM edge_hostnames WHERE tenant_id = ?1 AND seq " cmp " ?3 "        \
	"ORDER BY seq" dir " LIMIT ?4"
	static const char *const sql[2] = DB_LIST_BOTH(SQL);
#undef SQL
	return db_fetch_page_render(db, db_stmt_page(db, sql, tenant_id, NULL, pg), pg.limit,
				    edge_render, out);
}

cp_rc db_edge_hostname_delete(struct db *db, const char *tenant_id, const char *id)
{
	static const char sql_used[] = "SELECT 1 FROM properties WHERE edge_hostname_id = ?2 "
				       "AND tenant_id = ?1 LIMIT 1";
	static const char sql[] = "DELETE FROM edge_hostnames WHERE tenant_id = ?1 AND id = ?2";
	cp_rc rc = db_unused_or_conflict(db, sql_used, tenant_id, id);

	return rc == CP_OK ? db_delete_scoped(db, sql, tenant_id, id) : rc;
}
