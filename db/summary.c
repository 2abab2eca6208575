/*
 * summary.c - the dashboard of one tenant (GET /v1/summary): certificates
 * by derived status, the soonest expiries, the failing renewals and the
 * hostname claims still pending. At a million certificates nothing here
 * reads a tenant's rows one by one: the counts come from tenant_counts
 * (kept by triggers, migration 014), the time-derived "expired" from an
 * index-only range count of the rows past not_after
 * (certificates_tenant_status_expiry), the lists from index ranges that stop at 5.
 * Everything is read in one read transaction (one snapshot). The SQL is
 * portable (SQLite and PostgreSQL, issue 11), the indexes pinned on SQLite
 * only (DB_PINNED), and the JSON is built here.
 */
#include "db/db_internal.h"

#include <assert.h>

#include "lifecycle/lifecycle.h"

/* How many rows the summary's lists hold. */
#define SUMMARY_TOP 5

/* {k: n} of one family of tenant_id's counts into *out (new object). */
static cp_rc family_counts(struct db *db, const char *tenant_id, const char *family, json_t **out)
{
	struct db_stmt *st =
		db_stmt(db, "SELECT k, n FROM tenant_counts WHERE tenant_id = ?1 AND family = ?2");
	json_t *o = json_object();
	cp_rc rc = CP_OK;
	int r;

	if (!o || !st) {
		json_decref(o);
		return o ? CP_ERR_INTERNAL : CP_ERR_NOMEM;
	}
	db_bind_text(st, 1, tenant_id);
	db_bind_text(st, 2, family);
	while ((r = db_step(st)) == DB_ROW) {
		const char *k = db_col_text(st, 0);
		if (k && json_object_set_new(o, k, json_integer(db_col_int64(st, 1))) != 0)
			rc = CP_ERR_NOMEM;
	}
	if (r != DB_DONE)
		rc = db_rc(db, r);
	db_reset(st);
	if (rc != CP_OK) {
		json_decref(o);
		return rc;
	}
	*out = o;
	return CP_OK;
}

/* Add n to counts[name] (an integer member, created at n). */
static cp_rc count_add(json_t *counts, const char *name, json_int_t n)
{
	json_t *v = json_object_get(counts, name);

	if (v)
		return json_integer_set(v, json_integer_value(v) + n) == 0 ? CP_OK : CP_ERR_NOMEM;
	return json_object_set_new(counts, name, json_integer(n)) == 0 ? CP_OK : CP_ERR_NOMEM;
}

/* How many of tenant_id's certificates of stored status have their current
 * version past not_after: an index-only range count of
 * certificates_tenant_status_expiry (migration 014). */
static cp_rc count_past(struct db *db, const char *tenant_id, const char *stored, int64_t now,
			int64_t *n)
{
#define COUNT_PAST(pin)                                                                            \
	"SELECT count(*) FROM certificates" pin                                                    \
	" WHERE tenant_id = ?1 AND status = ?3 AND not_after < ?2"
	static const char *const sql[2] =
		DB_PINNED(COUNT_PAST, "certificates_tenant_status_expiry");
	struct db_stmt *st = db_stmt(db, db_pinned(db, sql));

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, tenant_id);
	db_bind_int64(st, 2, now);
	db_bind_text(st, 3, stored);
	return db_fetch_int64(db, st, n);
}

/* {"total", "by_status": {every lifecycle status: n}} into *out, by the
 * lifecycle rule the API shows (lifecycle_status): the maintained counts by
 * stored status, less the rows that rule turns into another status past
 * their not_after, which count there. */
static cp_rc certificate_counts(struct db *db, const char *tenant_id, int64_t now, json_t **out)
{
	json_t *stored = NULL, *by = json_object(), *v;
	const char *name;
	json_int_t total = 0;
	cp_rc rc = by ? CP_OK : CP_ERR_NOMEM;

	for (int s = LIFECYCLE_PENDING; rc == CP_OK && s <= LIFECYCLE_FAILED; s++)
		rc = count_add(by, lifecycle_status_name((enum lifecycle_status)s), 0);
	if (rc == CP_OK)
		rc = family_counts(db, tenant_id, "certificates", &stored);
	if (rc != CP_OK)
		goto out;
	json_object_foreach(stored, name, v)
	{
		int64_t past = 0;
		enum lifecycle_status live = lifecycle_status(name, true, now + 1, now);
		enum lifecycle_status gone = lifecycle_status(name, true, now - 1, now);

		if (live != gone) {
			rc = count_past(db, tenant_id, name, now, &past);
			if (rc == CP_OK && past > 0)
				rc = count_add(by, lifecycle_status_name(gone), past);
		}
		if (rc == CP_OK)
			rc = count_add(by, lifecycle_status_name(live),
				       json_integer_value(v) - past);
		if (rc != CP_OK)
			goto out;
		total += json_integer_value(v);
	}
	*out = json_pack("{s:I,s:O}", "total", (json_int_t)total, "by_status", by);
	rc = *out ? CP_OK : CP_ERR_NOMEM;
out:
	json_decref(stored);
	json_decref(by);
	return rc;
}

/* The rows of st (id, name, not_after, failure_count, last_error_reason,
 * last_error, last_attempt_at; the failing columns only when failing) as
 * an array into *out. Resets st. */
static cp_rc rows_array(struct db *db, struct db_stmt *st, bool failing, json_t **out)
{
	json_t *a = json_array();
	cp_rc rc = CP_OK;
	int r;

	if (!a) {
		db_reset(st);
		return CP_ERR_NOMEM;
	}
	while (rc == CP_OK && (r = db_step(st)) == DB_ROW) {
		char na[CP_TIME_LEN + 1] = "";
		json_t *o;

		if (!db_col_null(st, 2))
			cp_time_fmt(db_col_int64(st, 2), na);
		o = json_pack("{s:s,s:s,s:o}", "id", db_col_text(st, 0), "name", db_col_text(st, 1),
			      "not_after", na[0] ? json_string(na) : json_null());
		if (o && failing) {
			char at[CP_TIME_LEN + 1] = "";
			const char *reason = db_col_text(st, 4);
			const char *err = db_col_text(st, 5);

			if (!db_col_null(st, 6))
				cp_time_fmt(db_col_int64(st, 6), at);
			json_object_set_new(o, "failure_count", json_integer(db_col_int64(st, 3)));
			json_object_set_new(o, "last_error_reason",
					    reason ? json_string(reason) : json_null());
			json_object_set_new(o, "last_error", err ? json_string(err) : json_null());
			json_object_set_new(o, "last_attempt_at",
					    at[0] ? json_string(at) : json_null());
		}
		if (!o || json_array_append_new(a, o) != 0)
			rc = CP_ERR_NOMEM;
	}
	if (rc == CP_OK && r != DB_DONE)
		rc = db_rc(db, r);
	db_reset(st);
	if (rc != CP_OK) {
		json_decref(a);
		return rc;
	}
	*out = a;
	return CP_OK;
}

cp_rc db_summary(struct db *db, const char *tenant_id, int64_t now, json_t **out)
{
	/* In service and not yet expired, soonest first: the
	 * certificates_tenant_expiry range from now, stopped at 5. */
#define SOONEST(pin)                                                                               \
	"SELECT id, name, not_after FROM certificates" pin                                         \
	" WHERE tenant_id = ?1 AND not_after >= ?2 ORDER BY not_after LIMIT ?3"
	static const char *const soonest_sql[2] = DB_PINNED(SOONEST, "certificates_tenant_expiry");
	/* The latest attempts first (certificates_tenant_failing); NULLS LAST
	 * is SQLite's order, said for PostgreSQL (which puts them first). */
#define FAILING(pin)                                                                               \
	"SELECT id, name, not_after, failure_count, last_error_reason, last_error, "               \
	"last_attempt_at FROM certificates" pin " WHERE tenant_id = ?1 AND failure_count > 0 "     \
	"ORDER BY last_attempt_at DESC NULLS LAST LIMIT ?3"
	static const char *const failing_sql[2] = DB_PINNED(FAILING, "certificates_tenant_failing");
	json_t *certs = NULL, *soonest = NULL, *failing = NULL, *failing_n = NULL,
	       *hostnames = NULL;
	struct db_stmt *st;
	bool began = false;
	cp_rc rc;

	assert(db && tenant_id && out);
	*out = NULL;
	rc = db_read_begin(db, &began);
	if (rc == CP_OK)
		rc = certificate_counts(db, tenant_id, now, &certs);
	if (rc == CP_OK) {
		st = db_stmt(db, db_pinned(db, soonest_sql));
		rc = st ? CP_OK : CP_ERR_INTERNAL;
		if (st) {
			db_bind_text(st, 1, tenant_id);
			db_bind_int64(st, 2, now);
			db_bind_int64(st, 3, SUMMARY_TOP);
			rc = rows_array(db, st, false, &soonest);
		}
	}
	if (rc == CP_OK) {
		st = db_stmt(db, db_pinned(db, failing_sql));
		rc = st ? CP_OK : CP_ERR_INTERNAL;
		if (st) {
			db_bind_text(st, 1, tenant_id);
			db_bind_int64(st, 3, SUMMARY_TOP);
			rc = rows_array(db, st, true, &failing);
		}
	}
	if (rc == CP_OK)
		rc = family_counts(db, tenant_id, "failing", &failing_n);
	if (rc == CP_OK)
		rc = family_counts(db, tenant_id, "hostnames", &hostnames);
	if (rc != CP_OK)
		goto out;
	*out = json_pack("{s:o,s:o,s:{s:I,s:O},s:{s:I,s:I}}", "certificates", certs,
			 "expiring_soonest", soonest, "failing_renewals", "count",
			 json_integer_value(json_object_get(failing_n, "")), "top", failing,
			 "hostname_verifications", "pending",
			 json_integer_value(json_object_get(hostnames, "pending")), "verified",
			 json_integer_value(json_object_get(hostnames, "verified")));
	certs = soonest = NULL; /* stolen by "o" (even on failure) */
	rc = *out ? CP_OK : CP_ERR_NOMEM;
out:
	db_read_end(db, began);
	json_decref(certs);
	json_decref(soonest);
	json_decref(failing);
	json_decref(failing_n);
	json_decref(hostnames);
	return rc;
}
