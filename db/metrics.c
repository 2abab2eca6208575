/*
 * metrics.c - the aggregate counts behind GET /metrics: orders by status,
 * certificates by status, the soonest certificate expiry and webhook
 * deliveries by state. At a million certificates none of them may read a
 * table whole (issue 10): the counts come from metric_counts, kept by
 * triggers (migration 012), and the time-derived parts (expired, soonest
 * expiry) from index ranges on certificates(status, not_after). These read across every tenant on
 * purpose (only the operator, or an unauthenticated scraper when metrics_public is set, sees them)
 * and return counts, never a row.
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
static struct db_stmt *prepare_quiet(struct db *db, const char *sql)
{
	struct db_stmt *st = NULL;

	if (db_prepare(db, sql, &st) != DB_DONE) {
		return NULL;
	}
	return st;
}

/* Run a (label TEXT, count INTEGER) statement into {label: count}. Takes st. */
static cp_rc fetch_counts(struct db *db, struct db_stmt *st, json_t **out)
{
	json_t *o = json_object();
	cp_rc rc = CP_OK;
	int r;

	if (!o) {
		db_finalize(db, st);
		return CP_ERR_NOMEM;
	}
	while ((r = db_step(st)) == DB_ROW) {
		const char *label = db_col_text(st, 0);
		if (label)
			json_object_set_new(o, label, json_integer(db_col_int64(st, 1)));
	}
	if (r != DB_DONE)
		rc = db_rc(db, r);
	db_finalize(db, st);
	if (rc != CP_OK) {
		json_decref(o);
		return rc;
	}
	*out = o;
	return CP_OK;
}

/* {k1: n} of one family of the maintained counts (migration 012). */
static cp_rc family_counts(struct db *db, const char *family, json_t **out)
{
	struct db_stmt *st =
		prepare_quiet(db, "SELECT k1, n FROM metric_counts WHERE family = ?1 AND k2 = ''");

	if (!st)
		return CP_ERR_NOT_FOUND;
	db_bind_text(st, 1, family);
	return fetch_counts(db, st, out);
}

cp_rc db_metrics_orders(struct db *db, json_t **out)
{
	assert(db && out);
	return family_counts(db, "orders", out);
}

/* Add n to counts[name]. */
static cp_rc count_add(json_t *counts, const char *name, json_int_t n)
{
	json_t *v = json_object_get(counts, name);

	if (v)
		return json_integer_set(v, json_integer_value(v) + n) == 0 ? CP_OK : CP_ERR_NOMEM;
	return json_object_set_new(counts, name, json_integer(n)) == 0 ? CP_OK : CP_ERR_NOMEM;
}

/* How many certificates of a stored status have a current version past its
 * not_after: a range of certificates_status_expiry (status, not_after), so
 * the cost is the number of such rows, never the table. */
static cp_rc count_past(struct db *db, const char *stored, int64_t now, json_int_t *n)
{
	/* Pinned on SQLite (DB_PINNED): without the index the statement is
	 * refused (CP_ERR_NOT_FOUND here) rather than a scan. */
#define COUNT_PAST(pin)                                                                            \
	"SELECT count(*) FROM certificates" pin " WHERE status = ?1 AND not_after < ?2"
	static const char *const sql[2] = DB_PINNED(COUNT_PAST, "certificates_status_expiry");
	struct db_stmt *st = prepare_quiet(db, db_pinned(db, sql));
	int r;

	if (!st)
		return CP_ERR_NOT_FOUND;
	db_bind_text(st, 1, stored);
	db_bind_int64(st, 2, now);
	r = db_step(st);
	*n = r == DB_ROW ? db_col_int64(st, 0) : 0;
	db_finalize(db, st);
	return r == DB_ROW ? CP_OK : db_rc(db, r);
}

/*
 * Certificates by derived status, by the lifecycle rule the API shows too
 * (lifecycle_status: "expired" is not stored, "failed" wins over it), from
 * the maintained counts by stored status and, for each stored status that
 * the rule turns into another one once not_after has passed, an index
 * range count of those rows. No scan of the certificates.
 */
cp_rc db_metrics_certificates(struct db *db, json_t **out)
{
	json_t *stored = NULL, *counts = json_object(), *v;
	const char *name;
	int64_t now = cp_now();
	cp_rc rc;

	assert(db && out);
	if (!counts)
		return CP_ERR_NOMEM;
	rc = family_counts(db, "certificates", &stored);
	if (rc != CP_OK)
		goto out;
	json_object_foreach(stored, name, v)
	{
		json_int_t total = json_integer_value(v), past = 0;
		/* The rule for a row of this stored status before and after its
		 * not_after (a row without a version is never past). */
		enum lifecycle_status live = lifecycle_status(name, true, now + 1, now);
		enum lifecycle_status gone = lifecycle_status(name, true, now - 1, now);

		if (live != gone) {
			rc = count_past(db, name, now, &past);
			if (rc != CP_OK)
				goto out;
			if (past > 0)
				rc = count_add(counts, lifecycle_status_name(gone), past);
		}
		if (rc == CP_OK)
			rc = count_add(counts, lifecycle_status_name(live), total - past);
		if (rc != CP_OK)
			goto out;
	}
	*out = counts;
	counts = NULL;
out:
	json_decref(stored);
	json_decref(counts);
	return rc;
}

cp_rc db_metrics_soonest_expiry(struct db *db, int64_t *not_after)
{
	assert(db && not_after);

	/* The current version of every certificate that is in service; expired
	 * ones count too (a negative "seconds to expiry" is what alerts). One
	 * index seek per status (certificates_status_expiry). The derived
	 * table's alias is required by PostgreSQL 15. */
	struct db_stmt *st = prepare_quiet(
		db, "SELECT min(m) FROM (SELECT min(not_after) AS m FROM certificates "
		    "WHERE status = 'active' UNION ALL SELECT min(not_after) FROM certificates "
		    "WHERE status = 'renewing') AS s");
	cp_rc rc = CP_ERR_NOT_FOUND;
	int r;

	if (!st)
		return CP_ERR_NOT_FOUND;
	r = db_step(st);
	if (r == DB_ROW && !db_col_null(st, 0)) {
		*not_after = db_col_int64(st, 0);
		rc = CP_OK;
	} else if (r != DB_ROW && r != DB_DONE) {
		rc = db_rc(db, r);
	}
	db_finalize(db, st);
	return rc;
}

cp_rc db_metrics_webhook_deliveries(struct db *db, json_t **out)
{
	assert(db && out);
	return family_counts(db, "webhook_deliveries", out);
}
