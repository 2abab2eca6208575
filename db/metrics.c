/*
 * metrics.c - the aggregate counts behind GET /metrics: orders by status,
 * certificates by status, the soonest certificate expiry and webhook
 * deliveries by state. These read across every tenant on purpose (only the
 * operator, or an unauthenticated scraper when metrics_public is set, sees
 * them) and return counts, never a row.
 *
 * The tables they read belong to other capabilities and arrive in their own
 * migrations; a binary may run against a schema that lacks one of them (and
 * the metrics must not fail because of it). So these statements are
 * prepared here, uncached and silently: a table or column that does not
 * exist makes the function answer CP_ERR_NOT_FOUND instead of logging a
 * database error on every scrape. A scrape every 15 s can afford a prepare.
 */
#include "db/db_internal.h"

#include <assert.h>

#include "lifecycle/lifecycle.h"

/* Prepare sql without logging; NULL if the schema has no such table. */
static sqlite3_stmt *prepare_quiet(struct db *db, const char *sql)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(db->h, sql, -1, &st, NULL) != SQLITE_OK) {
		sqlite3_finalize(st);
		return NULL;
	}
	return st;
}

/* Run a (label TEXT, count INTEGER) statement into {label: count}. Takes st. */
static cp_rc fetch_counts(struct db *db, sqlite3_stmt *st, json_t **out)
{
	json_t *o = json_object();
	cp_rc rc = CP_OK;
	int r;

	if (!o) {
		sqlite3_finalize(st);
		return CP_ERR_NOMEM;
	}
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		const char *label = (const char *)sqlite3_column_text(st, 0);
		if (label)
			json_object_set_new(o, label, json_integer(sqlite3_column_int64(st, 1)));
	}
	if (r != SQLITE_DONE)
		rc = db_rc(db, r);
	sqlite3_finalize(st);
	if (rc != CP_OK) {
		json_decref(o);
		return rc;
	}
	*out = o;
	return CP_OK;
}

cp_rc db_metrics_orders(struct db *db, json_t **out)
{
	sqlite3_stmt *st = prepare_quiet(db, "SELECT status, count(*) FROM orders GROUP BY status");

	assert(db && out);
	if (!st)
		return CP_ERR_NOT_FOUND;
	return fetch_counts(db, st, out);
}

/* The derived status is the lifecycle rule the API shows too
 * (LIFECYCLE_STATUS_SQL: "expired" is not stored, "failed" wins over it). */
cp_rc db_metrics_certificates(struct db *db, json_t **out)
{
	sqlite3_stmt *st = prepare_quiet(
		db,
		"SELECT " LIFECYCLE_STATUS_SQL(
			"c.status",
			"v.not_after") " AS s, count(*) "
				       "FROM certificates c "
				       "LEFT JOIN certificate_versions v ON v.certificate_id = c.id "
				       "AND v.version = c.version GROUP BY s");

	assert(db && out);
	if (!st)
		return CP_ERR_NOT_FOUND;
	sqlite3_bind_int64(st, 1, cp_now());
	return fetch_counts(db, st, out);
}

cp_rc db_metrics_soonest_expiry(struct db *db, int64_t *not_after)
{
	assert(db && not_after);

	/* The current version of every certificate that is in service; expired
	 * ones count too (a negative "seconds to expiry" is what alerts). */
	sqlite3_stmt *st = prepare_quiet(
		db, "SELECT min(v.not_after) FROM certificates c JOIN certificate_versions v "
		    "ON v.certificate_id = c.id AND v.version = c.version "
		    "WHERE c.status IN ('active', 'renewing')");
	cp_rc rc = CP_ERR_NOT_FOUND;
	int r;

	if (!st)
		return CP_ERR_NOT_FOUND;
	r = sqlite3_step(st);
	if (r == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
		*not_after = sqlite3_column_int64(st, 0);
		rc = CP_OK;
	} else if (r != SQLITE_ROW && r != SQLITE_DONE) {
		rc = db_rc(db, r);
	}
	sqlite3_finalize(st);
	return rc;
}

cp_rc db_metrics_webhook_deliveries(struct db *db, json_t **out)
{
	sqlite3_stmt *st =
		prepare_quiet(db, "SELECT state, count(*) FROM webhook_deliveries GROUP BY state");

	assert(db && out);
	if (!st)
		return CP_ERR_NOT_FOUND;
	return fetch_counts(db, st, out);
}
