/*
 * test_db_summary.c - migration 014 and db_summary (GET /v1/summary): the
 * per-tenant counts kept by triggers (tenant_counts) equal a GROUP BY over
 * the tables after inserts, status and failure changes and deletes; the
 * summary's derived status counts, soonest expiries and failing renewals
 * equal the one-statement rule over the tables, for each tenant apart.
 */
#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

#include "lifecycle/lifecycle.h"

static struct fx fx;
static char ta[CP_UUID_LEN + 1], tb[CP_UUID_LEN + 1];
static int64_t now;

/* rows certificates of tenant: every 10th pending without a version, the
 * others with not_after spread over [-10, 90) days around base; statuses
 * renewing (13th), failed (17th), else active; every 9th failing with
 * last_attempt_at spread. */
static bool seed(const char *tenant, int rows, int64_t base)
{
	char sql[4096];

	snprintf(sql, sizeof(sql),
		 "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
		 "INSERT INTO certificates (id, tenant_id, name, source, status, auto_renew, "
		 "hostnames, failure_count, last_attempt_at, last_error_reason, created_at, "
		 "updated_at) SELECT '%s-' || i, '%s', 'c' || i, 'upload', "
		 "CASE WHEN i %% 10 = 0 THEN 'pending' WHEN i %% 17 = 0 THEN 'failed' "
		 "WHEN i %% 13 = 0 THEN 'renewing' ELSE 'active' END, 'none', "
		 "'[\"req' || i || '.a.test\"]', CASE WHEN i %% 9 = 0 THEN i %% 4 + 1 ELSE 0 "
		 "END, %lld - i * 37, 'r' || i, %lld, %lld FROM n;"
		 "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
		 "INSERT INTO certificate_versions (id, certificate_id, tenant_id, version, "
		 "cert_pem, private_key, key_type, sans, issuer, serial, not_before, not_after, "
		 "fingerprint_sha256, created_at) SELECT 'v-%s-' || i, '%s-' || i, '%s', 1, 'x', "
		 "'x', 'ec-p256', '[\"h.a.test\"]', 'i', 's', %lld, "
		 "%lld + (i * 7919 %% (100 * 86400)) - 10 * 86400, 'f', %lld FROM n "
		 "WHERE i %% 10 != 0;"
		 "UPDATE certificates SET version = 1 WHERE tenant_id = '%s' AND status != "
		 "'pending';",
		 rows, tenant, tenant, (long long)base, (long long)base, (long long)base, rows,
		 tenant, tenant, tenant, (long long)(base - 90 * 86400), (long long)base,
		 (long long)base, tenant);
	return fx_sql(fx.db, sql);
}

/* tenant_counts equals the tables, both ways (rows at 0 aside). */
static void check_counts(void)
{
	CHECK(fx_int(fx.db,
		     "SELECT count(*) FROM (SELECT tenant_id, k, n FROM tenant_counts "
		     "WHERE family = 'certificates' AND n != 0 EXCEPT SELECT tenant_id, "
		     "status, count(*) FROM certificates GROUP BY tenant_id, status) d") == 0);
	CHECK(fx_int(fx.db, "SELECT count(*) FROM (SELECT tenant_id, status, count(*) FROM "
			    "certificates GROUP BY tenant_id, status EXCEPT SELECT tenant_id, k, n "
			    "FROM tenant_counts WHERE family = 'certificates') d") == 0);
	CHECK(fx_int(fx.db,
		     "SELECT count(*) FROM (SELECT tenant_id, n FROM tenant_counts "
		     "WHERE family = 'failing' AND n != 0 EXCEPT SELECT tenant_id, count(*) "
		     "FROM certificates WHERE failure_count > 0 GROUP BY tenant_id) d") == 0);
	CHECK(fx_int(fx.db, "SELECT count(*) FROM (SELECT tenant_id, count(*) FROM certificates "
			    "WHERE failure_count > 0 GROUP BY tenant_id EXCEPT SELECT tenant_id, n "
			    "FROM tenant_counts WHERE family = 'failing') d") == 0);
	CHECK(fx_int(fx.db,
		     "SELECT count(*) FROM (SELECT tenant_id, k, n FROM tenant_counts "
		     "WHERE family = 'hostnames' AND n != 0 EXCEPT SELECT tenant_id, status, "
		     "count(*) FROM property_hostnames GROUP BY tenant_id, status) d") == 0);
	CHECK(fx_int(fx.db,
		     "SELECT count(*) FROM (SELECT tenant_id, status, count(*) FROM "
		     "property_hostnames GROUP BY tenant_id, status EXCEPT SELECT tenant_id, "
		     "k, n FROM tenant_counts WHERE family = 'hostnames') d") == 0);
}

/* The column col (text) of every row of sql with ?1 = now, ?2 = tenant, as
 * a JSON array of strings (integers formatted as RFC 3339). */
static json_t *column(const char *sql, const char *tenant, bool time)
{
	struct db_stmt *st = NULL;
	json_t *a = json_array();

	CHECK(db_prepare(fx.db, sql, &st) == DB_DONE);
	if (!st)
		return a;
	db_bind_int64(st, 1, now);
	db_bind_text(st, 2, tenant);
	while (db_step(st) == DB_ROW) {
		char t[CP_TIME_LEN + 1];
		if (time) {
			cp_time_fmt(db_col_int64(st, 0), t);
			json_array_append_new(a, json_string(t));
		} else {
			json_array_append_new(a, json_string(db_col_text(st, 0)));
		}
	}
	db_finalize(fx.db, st);
	return a;
}

/* The values of member k of every object of a, as a JSON array. */
static json_t *pluck(const json_t *a, const char *k)
{
	json_t *out = json_array(), *v;
	size_t i;

	json_array_foreach(a, i, v) json_array_append(out, json_object_get(v, k));
	return out;
}

static void check_summary(const char *tenant)
{
	json_t *s = NULL, *by, *want, *got;
	struct db_stmt *st = NULL;
	int64_t total = 0;
	char sql[256];

	CHECK_RC(db_summary(fx.db, tenant, now, &s), CP_OK);
	by = json_object_get(json_object_get(s, "certificates"), "by_status");
	CHECK(json_object_size(by) == 5);
	CHECK(db_prepare(
		      fx.db,
		      "SELECT " LIFECYCLE_STATUS_SQL(
			      "c.status",
			      "v.not_after") " AS s, "
					     "count(*) FROM certificates c LEFT JOIN certificate_versions v "
					     "ON v.certificate_id = c.id AND v.version = c.version "
					     "WHERE c.tenant_id = ?2 GROUP BY s",
		      &st) == DB_DONE);
	if (!st)
		return;
	db_bind_int64(st, 1, now);
	db_bind_text(st, 2, tenant);
	while (db_step(st) == DB_ROW) {
		const char *name = db_col_text(st, 0);
		int64_t n = db_col_int64(st, 1);
		if (json_integer_value(json_object_get(by, name)) != n)
			fprintf(stderr, "%s: want %lld, got %lld\n", name, (long long)n,
				(long long)json_integer_value(json_object_get(by, name)));
		CHECK(json_integer_value(json_object_get(by, name)) == n);
		total += n;
	}
	db_finalize(fx.db, st);
	CHECK(json_integer_value(json_object_get(json_object_get(s, "certificates"), "total")) ==
	      total);
	/* soonest: the not_after values (ties may come in any order) */
	want = column("SELECT v.not_after FROM certificates c JOIN certificate_versions v ON "
		      "v.certificate_id = c.id AND v.version = c.version WHERE c.tenant_id = ?2 "
		      "AND v.not_after >= ?1 ORDER BY v.not_after LIMIT 5",
		      tenant, true);
	got = pluck(json_object_get(s, "expiring_soonest"), "not_after");
	CHECK(json_array_size(want) == 5 && json_equal(want, got));
	json_decref(want);
	json_decref(got);
	/* failing: count and the latest attempts */
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM certificates WHERE tenant_id = '%s' AND failure_count > 0",
		 tenant);
	CHECK(json_integer_value(json_object_get(json_object_get(s, "failing_renewals"),
						 "count")) == fx_int(fx.db, sql));
	want = column("SELECT last_error_reason FROM certificates WHERE tenant_id = ?2 AND "
		      "failure_count > 0 ORDER BY last_attempt_at DESC LIMIT 5",
		      tenant, false);
	got = pluck(json_object_get(json_object_get(s, "failing_renewals"), "top"),
		    "last_error_reason");
	CHECK(json_array_size(want) > 0 && json_equal(want, got));
	json_decref(want);
	json_decref(got);
	json_decref(s);
}

int main(void)
{
	CHECK(fx_open(&fx, "dbsummary"));
	CHECK(fx_tenant(fx.db, "a", ta));
	CHECK(fx_tenant(fx.db, "b", tb));
	now = cp_now();
	CHECK(seed(ta, 3000, now));
	CHECK(seed(tb, 400, now));
	/* hostname claims: the table's own rows (no properties needed here) */
	/* (SQLite's foreign keys are per connection, PostgreSQL's a
	 * constraint of the table.) */
	CHECK(fx_sql(fx.db, fx_pg() ? "ALTER TABLE property_hostnames DROP CONSTRAINT "
				      "property_hostnames_property_id_fkey"
				    : "PRAGMA foreign_keys = OFF"));
	/* position: the certificate's seq, which picks the rows changed below
	 * (no rowid on PostgreSQL) */
	CHECK(fx_sql(fx.db, "INSERT INTO property_hostnames (property_id, tenant_id, hostname, "
			    "position, token, claimed_at) SELECT 'p', tenant_id, id || '.h.test', "
			    "seq, 't', 0 FROM certificates WHERE seq % 3 = 0"));
	check_counts();
	check_summary(ta);
	check_summary(tb);

	/* Changes: statuses, failures starting and ending, verified claims,
	 * deletes. */
	CHECK(fx_sql(fx.db, "UPDATE certificates SET status = 'failed' WHERE seq % 11 = 0"));
	CHECK(fx_sql(fx.db, "UPDATE certificates SET status = 'active' WHERE seq % 19 = 0 "
			    "AND version = 1"));
	CHECK(fx_sql(fx.db, "UPDATE certificates SET failure_count = failure_count + 1 "
			    "WHERE seq % 7 = 0"));
	CHECK(fx_sql(fx.db, "UPDATE certificates SET failure_count = 0 WHERE seq % 5 = 0"));
	CHECK(fx_sql(fx.db, "UPDATE property_hostnames SET status = 'verified' "
			    "WHERE position % 2 = 0"));
	CHECK(fx_sql(fx.db, "DELETE FROM property_hostnames WHERE position % 5 = 0"));
	CHECK(fx_sql(fx.db, "DELETE FROM certificates WHERE seq % 23 = 0"));
	check_counts();
	check_summary(ta);
	check_summary(tb);
	fx_close(&fx);
	return check_exit("test_db_summary");
}
