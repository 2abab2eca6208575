/*
 * quotas.c - per-tenant quotas: the operator's overrides (tenant_quotas,
 * NULL = the configured default) and the one check every create runs
 * inside its own write transaction, before it writes. Usage is counted from
 * the tables themselves, by tenant, each with an index (migration 006), so
 * it can never drift from what exists.
 *
 * The check and the insert share the transaction: under SQLite's single
 * writer two concurrent creates cannot both see room for one. On
 * PostgreSQL (READ COMMITTED) the check first locks the tenant's row (the
 * dialect's quota_lock), so a second check waits for the first's commit
 * and then counts what it inserted.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <string.h>

static const char *const quota_names[DB_QUOTA_COUNT] = {
	[DB_QUOTA_PROPERTIES] = "properties",	  [DB_QUOTA_HOSTNAMES] = "hostnames",
	[DB_QUOTA_CERTIFICATES] = "certificates", [DB_QUOTA_ORDERS_IN_FLIGHT] = "orders_in_flight",
	[DB_QUOTA_WEBHOOKS] = "webhooks",	  [DB_QUOTA_EDGE_HOSTNAMES] = "edge_hostnames",
};

/* Usage of each quota: ?1 tenant; the hostnames query also answers how many
 * belong to ?2 (the property being changed, or NULL). */
static const char *const usage_sql[DB_QUOTA_COUNT] = {
	[DB_QUOTA_PROPERTIES] = "SELECT count(*), 0 FROM properties WHERE tenant_id = ?1",
	[DB_QUOTA_HOSTNAMES] = "SELECT count(*), CAST(coalesce(sum(CASE WHEN property_id = ?2 "
			       "THEN 1 ELSE 0 END), 0) AS BIGINT) FROM property_hostnames "
			       "WHERE tenant_id = ?1",
	[DB_QUOTA_CERTIFICATES] = "SELECT count(*), 0 FROM certificates WHERE tenant_id = ?1",
	[DB_QUOTA_ORDERS_IN_FLIGHT] = "SELECT count(*), 0 FROM orders WHERE tenant_id = ?1 "
				      "AND status IN " DB_ORDER_IN_FLIGHT_SQL,
	[DB_QUOTA_WEBHOOKS] =
		"SELECT count(*), 0 FROM webhooks WHERE tenant_id = ?1 AND kind = 'webhook'",
	[DB_QUOTA_EDGE_HOSTNAMES] = "SELECT count(*), 0 FROM edge_hostnames WHERE tenant_id = ?1",
};

const char *db_quota_name(enum db_quota q)
{
	assert(q >= 0 && q < DB_QUOTA_COUNT);
	return quota_names[q];
}

int db_quota_find(const char *name)
{
	for (int q = 0; q < DB_QUOTA_COUNT; q++)
		if (strcmp(quota_names[q], name) == 0)
			return q;
	return -1;
}

/* Count quota q of tenant_id; *own gets the part of it that belongs to
 * property_id (hostnames only, else 0). */
static cp_rc quota_usage(struct db *db, const char *tenant_id, enum db_quota q,
			 const char *property_id, int64_t *used, int64_t *own)
{
	struct db_stmt *st = db_stmt(db, usage_sql[q]);
	cp_rc rc = CP_OK;
	int r;

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, tenant_id);
	if (q == DB_QUOTA_HOSTNAMES)
		db_bind_text(st, 2, property_id);
	r = db_step(st);
	if (r == DB_ROW) {
		*used = db_col_int64(st, 0);
		*own = db_col_int64(st, 1);
	} else {
		rc = db_rc(db, r);
	}
	db_reset(st);
	return rc;
}

cp_rc db_quota_limits(struct db *db, const char *tenant_id, const int64_t defaults[DB_QUOTA_COUNT],
		      int64_t limits[DB_QUOTA_COUNT], bool overridden[DB_QUOTA_COUNT])
{
	static const char sql[] = "SELECT properties, hostnames, certificates, orders_in_flight, "
				  "webhooks, edge_hostnames FROM tenant_quotas WHERE tenant_id = ?";
	struct db_stmt *st = db_stmt(db, sql);
	cp_rc rc = CP_OK;
	int r;

	assert(db && tenant_id && defaults && limits && overridden);
	if (!st)
		return CP_ERR_INTERNAL;
	for (int q = 0; q < DB_QUOTA_COUNT; q++) {
		limits[q] = defaults[q];
		overridden[q] = false;
	}
	db_bind_text(st, 1, tenant_id);
	r = db_step(st);
	if (r == DB_ROW) {
		for (int q = 0; q < DB_QUOTA_COUNT; q++) {
			if (db_col_null(st, q))
				continue;
			limits[q] = db_col_int64(st, q);
			overridden[q] = true;
		}
	} else if (r != DB_DONE) {
		rc = db_rc(db, r);
	}
	db_reset(st);
	return rc;
}

cp_rc db_quota_lock(struct db *db, const char *tenant_id)
{
	cp_rc rc;

	assert(db && tenant_id);
	rc = db_probe(db, db_stmt_keyed(db, db_dialect(db)->quota_lock, tenant_id, NULL));
	return rc == CP_ERR_NOT_FOUND ? CP_OK : rc; /* no tenant: nothing to lock */
}

cp_rc db_quota_check(struct db *db, const char *tenant_id, const int64_t defaults[DB_QUOTA_COUNT],
		     const struct db_quota_change *c, struct db_quota_refusal *refused)
{
	int64_t limits[DB_QUOTA_COUNT];
	bool overridden[DB_QUOTA_COUNT];
	const int add[DB_QUOTA_COUNT] = {
		[DB_QUOTA_PROPERTIES] = c->properties,
		[DB_QUOTA_HOSTNAMES] = c->hostnames,
		[DB_QUOTA_CERTIFICATES] = c->certificates,
		[DB_QUOTA_ORDERS_IN_FLIGHT] = c->orders_in_flight,
		[DB_QUOTA_WEBHOOKS] = c->webhooks,
		[DB_QUOTA_EDGE_HOSTNAMES] = c->edge_hostnames,
	};
	cp_rc rc;

	assert(db && tenant_id && defaults && c && refused);
	rc = db_quota_lock(db, tenant_id);
	if (rc == CP_OK)
		rc = db_quota_limits(db, tenant_id, defaults, limits, overridden);
	memset(refused, 0, sizeof(*refused));
	for (int q = 0; rc == CP_OK && q < DB_QUOTA_COUNT; q++) {
		int64_t used = 0, own = 0, after;
		if (add[q] <= 0)
			continue;
		rc = quota_usage(db, tenant_id, q, c->property_id, &used, &own);
		if (rc != CP_OK)
			break;
		/* An update replaces what the property held. Only growth is
		 * refused: a tenant over a lowered quota may still shrink. */
		after = used - own + add[q];
		if (after > limits[q] && after > used) {
			refused->quota = q;
			refused->limit = limits[q];
			refused->used = used;
			refused->requested = after - used;
			return CP_ERR_CONFLICT;
		}
	}
	return rc;
}

cp_rc db_quota_get(struct db *db, const char *tenant_id, const int64_t defaults[DB_QUOTA_COUNT],
		   json_t **out)
{
	int64_t limits[DB_QUOTA_COUNT];
	bool overridden[DB_QUOTA_COUNT];
	json_t *o = NULL, *quotas;
	cp_rc rc = db_quota_limits(db, tenant_id, defaults, limits, overridden);

	assert(db && tenant_id && out && defaults);
	if (rc != CP_OK)
		return rc;
	o = json_pack("{s:s,s:{}}", "tenant_id", tenant_id, "quotas");
	if (!o)
		return CP_ERR_NOMEM;
	quotas = json_object_get(o, "quotas");
	for (int q = 0; q < DB_QUOTA_COUNT; q++) {
		int64_t used = 0, own = 0;
		rc = quota_usage(db, tenant_id, q, NULL, &used, &own);
		if (rc != CP_OK)
			break;
		json_object_set_new(quotas, quota_names[q],
				    json_pack("{s:I,s:I,s:I,s:b}", "limit", (json_int_t)limits[q],
					      "used", (json_int_t)used, "default",
					      (json_int_t)defaults[q], "overridden",
					      overridden[q]));
	}
	if (rc != CP_OK) {
		json_decref(o);
		return rc;
	}
	*out = o;
	return CP_OK;
}

cp_rc db_quota_set(struct db *db, const char *tenant_id, const int64_t values[DB_QUOTA_COUNT],
		   const bool present[DB_QUOTA_COUNT])
{
	/* ?2..?7: a value, NULL (back to the default); ?8..?13: 1 = set that
	 * column, 0 = keep it. A new row starts from every default (NULL). The
	 * kept value is named with its table: PostgreSQL would otherwise not
	 * know it from excluded's. */
	static const char sql[] =
		"INSERT INTO tenant_quotas (tenant_id, properties, hostnames, certificates, "
		"orders_in_flight, webhooks, edge_hostnames, updated_at) "
		"SELECT id, ?2, ?3, ?4, ?5, ?6, ?7, ?14 FROM tenants WHERE id = ?1 "
		"ON CONFLICT (tenant_id) DO UPDATE SET "
		"properties = CASE WHEN ?8 = 1 THEN ?2 ELSE tenant_quotas.properties END, "
		"hostnames = CASE WHEN ?9 = 1 THEN ?3 ELSE tenant_quotas.hostnames END, "
		"certificates = CASE WHEN ?10 = 1 THEN ?4 ELSE tenant_quotas.certificates END, "
		"orders_in_flight = CASE WHEN ?11 = 1 THEN ?5 ELSE tenant_quotas.orders_in_flight END, "
		"webhooks = CASE WHEN ?12 = 1 THEN ?6 ELSE tenant_quotas.webhooks END, "
		"edge_hostnames = CASE WHEN ?13 = 1 THEN ?7 ELSE tenant_quotas.edge_hostnames END, "
		"updated_at = ?14";
	struct db_stmt *st = db_stmt(db, sql);

	assert(db && tenant_id && values && present);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, tenant_id);
	for (int q = 0; q < DB_QUOTA_COUNT; q++) {
		if (present[q] && values[q] >= 0)
			db_bind_int64(st, 2 + q, values[q]);
		else
			db_bind_null(st, 2 + q);
		db_bind_int64(st, 8 + q, present[q]);
	}
	db_bind_int64(st, 14, cp_now());
	return db_exec_one(db, st);
}
