/*
 * test_db_scale.c - migration 012 (issue 10, memory and queries at scale):
 * every path of db_certificate_list (hostname through certificate_names,
 * expiring_within as a sorted range and as the seq walk past
 * LIST_RANGE_MAX matches, status expired and stored, no filter) returns
 * exactly what the one-statement rule it replaced returned, page by page;
 * the counts of GET /metrics (metric_counts kept by triggers, expired by an
 * index range) equal a GROUP BY over the tables; both stay right after
 * status changes, new versions with other SANs, and deletes.
 */
#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

#include "lifecycle/lifecycle.h"

static struct fx fx;
static char ta[CP_UUID_LEN + 1], tb[CP_UUID_LEN + 1];
static int64_t now;

/* The filter rule as db/certificates.c stated it before migration 012: the
 * current version joined, SANs read with json_each, every filter a
 * NULL-switched condition. The reference the index paths must match. %s is
 * the engine's json_each (PostgreSQL's schema has cp_json_each, with
 * SQLite's columns); the casts type the NULL-switched parameters for
 * PostgreSQL. */
static const char reference[] =
	"SELECT c.id FROM certificates c LEFT JOIN certificate_versions v "
	"ON v.certificate_id = c.id AND v.version = c.version "
	"WHERE c.tenant_id = ?2 "
	"AND (CAST(?4 AS TEXT) IS NULL OR " LIFECYCLE_STATUS_SQL(
		"c.status",
		"v.not_after") " = CAST(?4 AS TEXT)) "
			       "AND (CAST(?5 AS BIGINT) IS NULL OR (v.not_after IS NOT NULL AND v.not_after >= ?1 "
			       "AND v.not_after <= CAST(?1 AS BIGINT) + CAST(?5 AS BIGINT))) "
			       "AND (CAST(?6 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM %s(coalesce(v.sans, "
			       "c.hostnames)) j WHERE j.value = CAST(?6 AS TEXT) OR j.value = '*.' || "
			       "substr(CAST(?6 AS TEXT), instr(CAST(?6 AS TEXT), '.') + 1))) "
			       "ORDER BY c.seq";

static const char *json_each_fn(void)
{
	return fx_pg() ? "cp_json_each" : "json_each";
}

/* The ids of the reference rule, as a JSON array. */
static json_t *expected(const char *tenant, const struct db_cert_filter *f)
{
	struct db_stmt *st = NULL;
	json_t *ids = json_array();
	char *sql = cp_aprintf(reference, json_each_fn());

	if (!sql || db_prepare(fx.db, sql, &st) != DB_DONE) {
		free(sql);
		return ids;
	}
	/* the clock of the list that runs next (the seeding took a while on
	 * PostgreSQL: an expiry may have passed since now) */
	db_bind_int64(st, 1, cp_now());
	db_bind_text(st, 2, tenant);
	db_bind_text(st, 4, f->status);
	if (f->expiring_within >= 0)
		db_bind_int64(st, 5, f->expiring_within);
	else
		db_bind_null(st, 5);
	db_bind_text(st, 6, f->hostname);
	while (db_step(st) == DB_ROW)
		json_array_append_new(ids, json_string(db_col_text(st, 0)));
	db_finalize(fx.db, st);
	free(sql);
	return ids;
}

/* Every page of db_certificate_list (limit per page), ids in order. */
static json_t *listed(const char *tenant, const struct db_cert_filter *f, int limit)
{
	json_t *ids = json_array(), *row;
	struct db_list l = { 0 };
	struct db_page pg = { .after = 0, .limit = limit };
	size_t i;

	for (int pages = 0; pages < 1000; pages++) {
		if (db_certificate_list(fx.db, tenant, f, pg, &l) != CP_OK) {
			json_array_append_new(ids, json_string("(error)"));
			break;
		}
		json_array_foreach(l.data, i, row)
			json_array_append_new(ids, json_string(fx_str(row, "id")));
		pg.after = l.next;
		fx_list_clear(&l);
		if (!pg.after)
			break;
	}
	return ids;
}

static void check_filter(const char *what, const char *tenant, struct db_cert_filter f,
			 size_t min_rows)
{
	json_t *want = NULL, *got = NULL;
	bool same = false;

	/* The reference and the pages each read the clock: a row whose expiry
	 * falls in a second between them is rightly in one and not the other.
	 * Compare a run that stayed inside one second (the last try in any
	 * case). */
	for (int attempt = 0; attempt < 5; attempt++) {
		int64_t t0 = cp_now();

		json_decref(want);
		json_decref(got);
		want = expected(tenant, &f);
		got = listed(tenant, &f, 100);
		same = json_equal(want, got);
		if (same || cp_now() == t0)
			break;
	}

	if (!same || json_array_size(want) < min_rows)
		fprintf(stderr, "filter %s: want %zu rows, got %zu (%s)\n", what,
			json_array_size(want), json_array_size(got), same ? "same" : "differ");
	CHECK(same);
	CHECK(json_array_size(want) >= min_rows);
	json_decref(want);
	json_decref(got);
}

static void check_filters(const char *when)
{
	static const char *statuses[] = { "pending", "active", "renewing", "failed", "expired" };

	fprintf(stderr, "filters %s\n", when);
	check_filter("none", ta, (struct db_cert_filter){ .expiring_within = -1 }, 3000);
	for (size_t i = 0; i < CP_ARRAY_LEN(statuses); i++)
		check_filter(
			statuses[i], ta,
			(struct db_cert_filter){ .status = statuses[i], .expiring_within = -1 }, 1);
	/* A few hundred rows: the sorted range. */
	check_filter("expiring 5d", ta, (struct db_cert_filter){ .expiring_within = 5 * 86400 },
		     100);
	/* Thousands: the seq walk. */
	check_filter("expiring 80d", ta, (struct db_cert_filter){ .expiring_within = 80 * 86400 },
		     2000);
	check_filter("expiring 80d active", ta,
		     (struct db_cert_filter){ .status = "active", .expiring_within = 80 * 86400 },
		     1000);
	check_filter("expiring 0", ta, (struct db_cert_filter){ .expiring_within = 0 }, 0);
	check_filter("hostname", ta,
		     (struct db_cert_filter){ .hostname = "h7.a.test", .expiring_within = -1 }, 10);
	check_filter("hostname wildcard", ta,
		     (struct db_cert_filter){ .hostname = "x.w.a.test", .expiring_within = -1 },
		     10);
	check_filter("hostname requested", ta,
		     (struct db_cert_filter){ .hostname = "req30.a.test", .expiring_within = -1 },
		     0);
	check_filter("hostname failed", ta,
		     (struct db_cert_filter){
			     .hostname = "h7.a.test", .status = "failed", .expiring_within = -1 },
		     1);
	check_filter(
		"hostname expiring", ta,
		(struct db_cert_filter){ .hostname = "h7.a.test", .expiring_within = 30 * 86400 },
		1);
	check_filter("hostname absent", ta,
		     (struct db_cert_filter){ .hostname = "nope.a.test", .expiring_within = -1 },
		     0);
	/* The other tenant's rows never show. */
	check_filter("tenant b", tb, (struct db_cert_filter){ .expiring_within = -1 }, 50);
	check_filter("tenant b hostname", tb,
		     (struct db_cert_filter){ .hostname = "h7.a.test", .expiring_within = -1 }, 1);
}

/* db_metrics_certificates equals the derived status grouped over the
 * tables; the other families equal their GROUP BY. */
static void check_counts(void)
{
	json_t *got = NULL, *v;
	const char *k;
	struct db_stmt *st = NULL;
	int64_t total = 0;

	CHECK_RC(db_metrics_certificates(fx.db, &got), CP_OK);
	CHECK(db_prepare(
		      fx.db,
		      "SELECT " LIFECYCLE_STATUS_SQL(
			      "c.status",
			      "v.not_after") " AS s, "
					     "count(*) FROM certificates c LEFT JOIN certificate_versions v "
					     "ON v.certificate_id = c.id AND v.version = c.version GROUP BY s",
		      &st) == DB_DONE);
	if (st)
		db_bind_int64(st, 1, cp_now());
	while (st && db_step(st) == DB_ROW) {
		const char *s = db_col_text(st, 0);
		int64_t n = db_col_int64(st, 1);
		if (json_integer_value(json_object_get(got, s)) != n)
			fprintf(stderr, "certificates %s: want %lld, got %lld\n", s, (long long)n,
				(long long)json_integer_value(json_object_get(got, s)));
		CHECK(json_integer_value(json_object_get(got, s)) == n);
		total += n;
	}
	if (st)
		db_finalize(fx.db, st);
	json_object_foreach(got, k, v) total -= json_integer_value(v);
	CHECK(total == 0);
	json_decref(got);
	CHECK(fx_int(fx.db, "SELECT count(*) FROM (SELECT k1, k2, n FROM metric_counts "
			    "WHERE family = 'jobs' AND n > 0 EXCEPT SELECT kind, state, count(*) "
			    "FROM jobs GROUP BY kind, state) d") == 0);
	CHECK(fx_int(fx.db, "SELECT count(*) FROM (SELECT kind, state, count(*) FROM jobs "
			    "GROUP BY kind, state EXCEPT SELECT k1, k2, n FROM metric_counts "
			    "WHERE family = 'jobs') d") == 0);
	CHECK(fx_int(fx.db, "SELECT count(*) FROM (SELECT status, count(*) FROM certificates "
			    "GROUP BY status EXCEPT SELECT k1, n FROM metric_counts "
			    "WHERE family = 'certificates') d") == 0);
}

/* certificate_names holds exactly coalesce(v.sans, c.hostnames) of every
 * certificate. */
static void check_names(void)
{
	char truth[512], sql[1024];

	snprintf(truth, sizeof(truth),
		 "SELECT c.tenant_id, j.value, c.seq FROM certificates c LEFT JOIN "
		 "certificate_versions v ON v.certificate_id = c.id AND v.version = c.version, "
		 "%s(coalesce(v.sans, c.hostnames)) j",
		 json_each_fn());
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM (%s EXCEPT SELECT tenant_id, name, cert_seq FROM "
		 "certificate_names) d",
		 truth);
	CHECK(fx_int(fx.db, sql) == 0);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM (SELECT tenant_id, name, cert_seq FROM certificate_names "
		 "EXCEPT %s) d",
		 truth);
	CHECK(fx_int(fx.db, sql) == 0);
	CHECK(fx_int(fx.db, "SELECT count(*) FROM certificates c LEFT JOIN certificate_versions v "
			    "ON v.certificate_id = c.id AND v.version = c.version "
			    "WHERE c.not_after IS DISTINCT FROM v.not_after") == 0);
}

/* rows certificates of tenant (seq order), shaped by their number i:
 * i % 10 == 0 pending without a version (requested names req<i>.a.test),
 * else a version with not_after spread over [-10, 90) days, SANs
 * h<i % 50>.a.test (and *.w.a.test every 7th), status renewing every 13th,
 * failed every 17th, else active. */
static bool seed(const char *tenant, int rows, int64_t base)
{
	char sql[4096];

	snprintf(
		sql, sizeof(sql),
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
		"INSERT INTO certificates (id, tenant_id, name, source, status, auto_renew, "
		"hostnames, created_at, updated_at) SELECT '%s-' || i, '%s', 'c' || i, 'upload', "
		"CASE WHEN i %% 10 = 0 THEN 'pending' WHEN i %% 17 = 0 THEN 'failed' "
		"WHEN i %% 13 = 0 THEN 'renewing' ELSE 'active' END, 'none', "
		"'[\"req' || i || '.a.test\"]', %lld, %lld FROM n;"
		"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < %d) "
		"INSERT INTO certificate_versions (id, certificate_id, tenant_id, version, cert_pem, "
		"private_key, key_type, sans, issuer, serial, not_before, not_after, "
		"fingerprint_sha256, created_at) SELECT 'v-%s-' || i, '%s-' || i, '%s', 1, 'x', "
		"'x', 'ec-p256', CASE WHEN i %% 7 = 0 THEN '[\"h' || (i %% 50) || "
		"'.a.test\",\"*.w.a.test\"]' ELSE '[\"h' || (i %% 50) || '.a.test\"]' END, "
		"'i', 's', %lld, %lld + (i * 7919 %% (100 * 86400)) - 10 * 86400, 'f', %lld "
		"FROM n WHERE i %% 10 != 0;"
		"UPDATE certificates SET version = 1 WHERE tenant_id = '%s' AND status != 'pending';",
		rows, tenant, tenant, (long long)base, (long long)base, rows, tenant, tenant,
		tenant, (long long)(base - 90 * 86400), (long long)base, (long long)base, tenant);
	return fx_sql(fx.db, sql);
}

/*
 * The plans of the statements db_certificate_list runs (issue 11): the
 * portable SQL steers SQLite's planner with unary + instead of INDEXED BY,
 * so each path's inner query is checked to be the index range it was
 * written for, in both orders: the texts are the ones the list ran
 * (fx_trace), planned by EXPLAIN QUERY PLAN.
 */
static const char *const list_sql[] = { "SELECT c.seq, ", "SELECT count(*) ", NULL };

/* List with f in both orders; each statement run (the expiry count first
 * when there is one) must plan as want[i] (a printf format of the keyset
 * comparison, "<" or ">"), with no table SCAN but the page's own rows. */
static void check_plan(const char *what, struct db_cert_filter f, const char *const want[],
		       int nwant)
{
	for (int desc = 0; desc < 2; desc++) {
		struct db_list l = { 0 };
		struct db_page pg = { .limit = 50, .desc = desc };
		struct fx_trace t = { .prefixes = list_sql };

		fx_trace_start(fx.db, &t);
		CHECK_RC(db_certificate_list(fx.db, ta, &f, pg, &l), CP_OK);
		fx_trace_stop(fx.db);
		fx_list_clear(&l);
		CHECK(t.n == nwant);
		for (int i = 0; i < t.n; i++) {
			char plan[8192], w[256];
			bool ok;

			snprintf(w, sizeof(w), want[i < nwant ? i : 0], desc ? "<" : ">");
			fx_sqlite_plan(fx.db, t.sql[i], plan, sizeof(plan));
			ok = strstr(plan, w) && !strstr(plan, "SCAN c\n") &&
			     !strstr(plan, "SCAN n\n");
			if (!ok)
				fprintf(stderr, "plan %s %s: want %s, got:\n%s", what,
					desc ? "desc" : "asc", w, plan);
			CHECK(ok);
			free(t.sql[i]);
		}
	}
}

/*
 * PostgreSQL: the same statements, read from pg_prepared_statements of a
 * connection of their own (the PostgreSQL driver prepares each statement by
 * name on first use, so a fresh connection's list is what this one list
 * ran, in the order of their names s1, s2...), each planned generically
 * (plan_cache_mode force_generic_plan: EXPLAIN EXECUTE with NULLs plans
 * for any value) by fx_pg_plan_uses: the index scan of want[i].
 */
static void check_plan_pg(const char *what, struct db_cert_filter f, const char *const want[],
			  int nwant)
{
	static const char names[] =
		"SELECT name, coalesce(array_length(parameter_types, 1), 0) FROM "
		"pg_prepared_statements WHERE statement LIKE 'SELECT c.seq, %' OR "
		"statement LIKE 'SELECT count(*) %' ORDER BY length(name), name";

	for (int desc = 0; desc < 2; desc++) {
		struct db_list l = { 0 };
		struct db_page pg = { .limit = 50, .desc = desc };
		struct db *db = NULL;
		struct db_stmt *st = NULL;
		int n = 0;

		CHECK_RC(db_open(fx.path, &db), CP_OK);
		if (!db)
			continue;
		CHECK_RC(db_certificate_list(db, ta, &f, pg, &l), CP_OK);
		fx_list_clear(&l);
		CHECK(fx_sql(db, "SET plan_cache_mode = force_generic_plan"));
		CHECK(db_prepare(db, names, &st) == DB_DONE);
		while (st && db_step(st) == DB_ROW) {
			char exec[256];
			size_t len;
			bool ok;

			len = (size_t)snprintf(exec, sizeof(exec), "EXECUTE %s(",
					       db_col_text(st, 0));
			for (int64_t i = 0, np = db_col_int64(st, 1); i < np && len < sizeof(exec);
			     i++)
				len += (size_t)snprintf(exec + len, sizeof(exec) - len, "%sNULL",
							i ? ", " : "");
			if (len < sizeof(exec))
				snprintf(exec + len, sizeof(exec) - len, ")");
			ok = n < nwant && fx_pg_plan_uses(db, exec, want[n]);
			if (!ok)
				fprintf(stderr, "plan %s %s: statement %d is not a scan of %s\n",
					what, desc ? "desc" : "asc", n,
					n < nwant ? want[n] : "(none)");
			CHECK(ok);
			n++;
		}
		if (st)
			db_finalize(db, st);
		CHECK(n == nwant);
		db_close(db);
	}
}

static void check_plans_pg(void)
{
	static const char *const seq[] = { "certificates_tenant_seq" };
	static const char *const status[] = { "certificates_tenant_status" };
	static const char *const expired[] = { "certificates_tenant_expiry" };
	static const char *const range[] = { "certificates_tenant_expiry",
					     "certificates_tenant_expiry" };
	static const char *const walk[] = { "certificates_tenant_expiry",
					    "certificates_tenant_seq" };
	static const char *const name[] = { "certificate_names_pkey" };
	check_plan_pg("none", (struct db_cert_filter){ .expiring_within = -1 }, seq, 1);
	check_plan_pg("active",
		      (struct db_cert_filter){ .status = "active", .expiring_within = -1 }, status,
		      1);
	check_plan_pg("expired",
		      (struct db_cert_filter){ .status = "expired", .expiring_within = -1 },
		      expired, 1);
	check_plan_pg("expiring 5d", (struct db_cert_filter){ .expiring_within = 5 * 86400 }, range,
		      2);
	check_plan_pg("expiring 80d", (struct db_cert_filter){ .expiring_within = 80 * 86400 },
		      walk, 2);
	check_plan_pg("hostname",
		      (struct db_cert_filter){ .hostname = "h7.a.test", .expiring_within = -1 },
		      name, 1);
}

static void check_plans(void)
{
	static const char *const seq[] = {
		"INDEX certificates_tenant_seq (tenant_id=? AND seq%s?)"
	};
	static const char *const status[] = {
		"INDEX certificates_tenant_status (tenant_id=? AND status=? AND rowid%s?)"
	};
	static const char *const expired[] = {
		"INDEX certificates_tenant_expiry (tenant_id=? AND not_after<?)"
	};
	static const char *const range[] = {
		"INDEX certificates_tenant_expiry (tenant_id=? AND not_after>? AND not_after<?)",
		"INDEX certificates_tenant_expiry (tenant_id=? AND not_after>? AND not_after<?)"
	};
	static const char *const walk[] = {
		"INDEX certificates_tenant_expiry (tenant_id=? AND not_after>? AND not_after<?)",
		"INDEX certificates_tenant_seq (tenant_id=? AND seq%s?)"
	};
	static const char *const name[] = {
		"SEARCH n USING PRIMARY KEY (tenant_id=? AND name=? AND cert_seq%s?)"
	};

	check_plan("none", (struct db_cert_filter){ .expiring_within = -1 }, seq, 1);
	check_plan("active", (struct db_cert_filter){ .status = "active", .expiring_within = -1 },
		   status, 1);
	check_plan("expired", (struct db_cert_filter){ .status = "expired", .expiring_within = -1 },
		   expired, 1);
	check_plan("expiring 5d", (struct db_cert_filter){ .expiring_within = 5 * 86400 }, range,
		   2);
	check_plan("expiring 80d", (struct db_cert_filter){ .expiring_within = 80 * 86400 }, walk,
		   2);
	check_plan("hostname",
		   (struct db_cert_filter){ .hostname = "h7.a.test", .expiring_within = -1 }, name,
		   1);
}

int main(void)
{
	struct db_job j = { 0 };

	CHECK(fx_open(&fx, "dbscale"));
	CHECK(fx_tenant(fx.db, "a", ta));
	CHECK(fx_tenant(fx.db, "b", tb));
	/* PostgreSQL: the generic plans are read without statistics, the same
	 * in every run. Left to autovacuum, a run analyzed the tables or not
	 * by timing, and with this fixture's statistics (tenant a holds 99% of
	 * the rows) the planner rightly walks another index than a CDN's
	 * thousands of tenants get. */
	if (fx_pg())
		CHECK(fx_sql(fx.db,
			     "ALTER TABLE certificates SET (autovacuum_enabled = false); "
			     "ALTER TABLE certificate_names SET (autovacuum_enabled = false); "
			     "ALTER TABLE certificate_versions SET (autovacuum_enabled = false)"));
	now = cp_now();
	CHECK(seed(ta, 5000, now));
	CHECK(seed(tb, 60, now));
	check_names();
	check_counts();
	check_filters("after seeding");
	if (fx_pg())
		check_plans_pg();
	else
		check_plans();
	check_filter("hostname requested, pending", ta,
		     (struct db_cert_filter){ .hostname = "req30.a.test", .expiring_within = -1 },
		     1);

	/* Changes: statuses, a new version with other SANs and expiry, deletes. */
	CHECK(fx_sql(fx.db, "UPDATE certificates SET status = 'failed' WHERE seq % 11 = 0"));
	CHECK(fx_sql(fx.db, "UPDATE certificates SET status = 'active' WHERE seq % 19 = 0 "
			    "AND version = 1"));
	CHECK(fx_sql(fx.db, "INSERT INTO certificate_versions (id, certificate_id, tenant_id, "
			    "version, cert_pem, private_key, key_type, sans, issuer, serial, "
			    "not_before, not_after, fingerprint_sha256, created_at) "
			    "SELECT 'v2-' || id, id, tenant_id, 2, 'x', 'x', 'ec-p256', "
			    "'[\"h7.a.test\",\"new.a.test\"]', 'i', 's', 0, "
			    "unixepoch() + 3 * 86400, 'f', 0 FROM certificates "
			    "WHERE seq % 5 = 1"));
	CHECK(fx_sql(fx.db, "UPDATE certificates SET version = 2 WHERE seq % 5 = 1"));
	CHECK(fx_sql(fx.db, "UPDATE certificates SET hostnames = '[\"moved.a.test\"]' "
			    "WHERE status = 'pending'"));
	CHECK(fx_sql(fx.db, "DELETE FROM certificates WHERE seq % 23 = 0"));
	check_names();
	check_counts();
	check_filters("after changes");
	check_filter("hostname of new versions", ta,
		     (struct db_cert_filter){ .hostname = "new.a.test", .expiring_within = -1 },
		     500);
	check_filter("requested names moved", ta,
		     (struct db_cert_filter){ .hostname = "moved.a.test", .expiring_within = -1 },
		     100);

	/* Jobs through the storage layer: enqueue, claim, done, fail. */
	for (int i = 0; i < 5; i++)
		CHECK_RC(db_job_enqueue(fx.db, i % 2 ? "k_odd" : "k_even", ta, NULL, now - 1, NULL),
			 CP_OK);
	CHECK_RC(db_job_claim(fx.db, DB_JOB_LANE_GENERAL, 4, "w", 30, &j), CP_OK);
	CHECK_RC(db_job_done(fx.db, j.id, "w"), CP_OK);
	db_job_clear(&j);
	CHECK_RC(db_job_claim(fx.db, DB_JOB_LANE_GENERAL, 4, "w", 30, &j), CP_OK);
	CHECK_RC(db_job_fail(fx.db, j.id, "w", "e"), CP_OK);
	db_job_clear(&j);
	CHECK_RC(db_job_claim(fx.db, DB_JOB_LANE_GENERAL, 4, "w", 30, &j), CP_OK);
	db_job_clear(&j);
	check_counts();
	CHECK(fx_sql(fx.db, "DELETE FROM jobs WHERE state = 'done'"));
	check_counts();
	fx_close(&fx);
	return check_exit("test_db_scale");
}
