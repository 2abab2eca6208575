/*
 * dcv.c - the rows of DCV delegation (migration 019): the last check of
 * each tenant's delegation of a hostname, and the TXT records certplane
 * has written into the delegation zone and not yet removed (the journal
 * that makes the removal crash-safe). The rules are dcv/dcv.h's.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

cp_rc db_dcv_delegation_set(struct db *db, const char *tenant_id, const char *hostname,
			    bool in_place, const char *detail)
{
	static const char sql[] =
		"INSERT INTO dcv_delegations (tenant_id, hostname, in_place, checked_at, detail) "
		"VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant_id, hostname) DO UPDATE SET "
		"in_place = excluded.in_place, checked_at = excluded.checked_at, "
		"detail = excluded.detail";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, hostname);

	assert(db && tenant_id && hostname);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 3, in_place ? 1 : 0);
	db_bind_int64(st, 4, cp_now());
	db_bind_text(st, 5, detail);
	return db_exec_stmt(db, st);
}

/* clang-format off */
static const struct db_jw_field delegation_fields[] = {
	{ "in_place", DB_JW_BOOL },
	{ "checked_at", DB_JW_TIME },
	{ "detail", DB_JW_TEXT },
};
/* clang-format on */

cp_rc db_dcv_delegation_get(struct db *db, const char *tenant_id, const char *hostname,
			    json_t **out)
{
	static const char sql[] = "SELECT in_place, checked_at, detail FROM dcv_delegations "
				  "WHERE tenant_id = ?1 AND hostname = ?2";

	assert(db && tenant_id && hostname && out);
	return db_fetch_fields(db, db_stmt_keyed(db, sql, tenant_id, hostname), delegation_fields,
			       CP_ARRAY_LEN(delegation_fields), out);
}

cp_rc db_dcv_record_add(struct db *db, const char *tenant_id, const char *order_id,
			const char *name, const char *value)
{
	static const char sql[] =
		"INSERT INTO dcv_records (tenant_id, order_id, name, value, created_at) "
		"VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (order_id, name, value) DO NOTHING";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, order_id);

	assert(db && tenant_id && order_id && name && value);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, name);
	db_bind_text(st, 4, value);
	db_bind_int64(st, 5, cp_now());
	return db_exec_stmt(db, st);
}

cp_rc db_dcv_record_remove(struct db *db, const char *tenant_id, const char *order_id,
			   const char *name, const char *value)
{
	static const char sql[] = "DELETE FROM dcv_records WHERE tenant_id = ?1 AND order_id = ?2 "
				  "AND name = ?3 AND value = ?4";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, order_id);

	assert(db && tenant_id && order_id && name && value);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, name);
	db_bind_text(st, 4, value);
	return db_exec_stmt(db, st);
}

cp_rc db_dcv_records_stale(struct db *db, int limit, json_t **out)
{
	/* dcv_records holds only the records in flight (a few per order
	 * validating): its scan is short; each row finds its order by the
	 * orders.id unique index. */
	static const char sql[] =
		"SELECT r.tenant_id, r.order_id, r.name, r.value FROM dcv_records r "
		"LEFT JOIN orders o ON o.id = r.order_id "
		"WHERE o.id IS NULL OR o.status IN ('valid', 'failed', 'canceled') "
		"ORDER BY r.created_at LIMIT ?1";
	struct db_stmt *st = db_stmt(db, sql);
	json_t *arr = json_array();
	cp_rc rc = CP_OK;
	int r;

	assert(db && out && limit > 0);
	*out = NULL;
	if (!st || !arr) {
		json_decref(arr);
		return st ? CP_ERR_NOMEM : CP_ERR_INTERNAL;
	}
	db_bind_int64(st, 1, limit);
	while ((r = db_step(st)) == DB_ROW)
		json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s}", "tenant_id",
						     db_col_text(st, 0), "order_id",
						     db_col_text(st, 1), "name", db_col_text(st, 2),
						     "value", db_col_text(st, 3)));
	db_reset(st);
	if (r != DB_DONE) {
		rc = db_rc(db, r);
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return CP_OK;
}
