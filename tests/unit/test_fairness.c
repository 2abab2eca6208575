/*
 * test_fairness.c - unit tests of the fair job claim (db/jobs.c, migration
 * 006) on a temporary database: lanes keep their jobs apart, tenants are
 * served round robin, a tenant never runs more than the cap at once, an
 * expired lease is claimed again first, and the per-(lane, tenant) counts
 * that the triggers keep match the jobs table after every kind of change
 * (claim, done, retry, fail, release, orphan recovery, delete), and so does
 * the earliest due time of each one's queued jobs. Then the
 * quota check (db/quotas.c): defaults, overrides, growth-only refusal.
 *
 * With an argument (a database path) it is the claim benchmark instead:
 * tests/bench/job_claim.sh seeds that database and reads the output.
 *
 * White-box: includes db/db_internal.h to read the tables directly.
 * Exit status is the number of failed checks (capped), 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "db/db_internal.h"

#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"
#include <sqlite3.h>

static const char *test_lane(const char *kind)
{
	if (strcmp(kind, "acme_order") == 0)
		return "acme";
	if (strcmp(kind, "webhook_delivery") == 0)
		return "webhook";
	return NULL;
}

/* The counts kept by the triggers equal the ones computed from jobs. */
static bool counts_consistent(struct db *db)
{
	/* portable SQL: coalesce, a sum of CASEs, IS DISTINCT FROM */
	return fx_int(db, "SELECT count(*) FROM (SELECT lane, coalesce(tenant_id, '') t, "
			  "sum(CASE WHEN state = 'queued' THEN 1 ELSE 0 END) q, "
			  "sum(CASE WHEN state = 'running' THEN 1 ELSE 0 END) r FROM jobs "
			  "GROUP BY 1, 2) j LEFT JOIN job_tenants k ON k.lane = j.lane AND "
			  "k.tenant_id = j.t WHERE coalesce(k.queued, 0) != j.q OR "
			  "coalesce(k.running, 0) != j.r") == 0 &&
	       fx_int(db,
		      "SELECT count(*) FROM job_tenants k WHERE (queued != 0 OR running != 0) "
		      "AND NOT EXISTS (SELECT 1 FROM jobs WHERE lane = k.lane AND "
		      "coalesce(tenant_id, '') = k.tenant_id AND state IN ('queued', 'running'))") ==
		       0 &&
	       fx_int(db, "SELECT count(*) FROM job_tenants k WHERE next_run_at IS DISTINCT FROM "
			  "(SELECT min(run_at) FROM jobs WHERE lane = k.lane AND "
			  "coalesce(tenant_id, '') = k.tenant_id AND state = 'queued')") == 0;
}

static void enqueue(struct db *db, const char *kind, const char *tenant, int n)
{
	CHECK(db_begin(db) == CP_OK);
	for (int i = 0; i < n; i++)
		CHECK(db_job_enqueue(db, kind, tenant, NULL, cp_now() - 10 + i, NULL) == CP_OK);
	CHECK(db_commit(db) == CP_OK);
}

static void test_claim(struct db *db)
{
	struct db_job j[8];
	char seen[8][CP_UUID_LEN + 1];

	db_job_set_lanes(test_lane);
	/* Tenant A floods: 10 orders and 10 webhook deliveries; B and C have 2
	 * and 1 orders. A job of no tenant runs in the general lane. */
	enqueue(db, "acme_order", "A", 10);
	enqueue(db, "webhook_delivery", "A", 10);
	enqueue(db, "acme_order", "B", 2);
	enqueue(db, "acme_order", "C", 1);
	enqueue(db, "some_new_kind", NULL, 1);
	CHECK(fx_int(db, "SELECT count(*) FROM jobs WHERE lane = 'acme'") == 13);
	CHECK(fx_int(db, "SELECT count(*) FROM jobs WHERE lane = 'webhook'") == 10);
	CHECK(fx_int(db, "SELECT count(*) FROM jobs WHERE lane = 'general'") == 1);
	CHECK(counts_consistent(db));

	/* Round robin: the first three claims serve three different tenants,
	 * although A's jobs are the oldest. */
	for (int i = 0; i < 3; i++) {
		CHECK(db_job_claim(db, "acme", 2, "w1", 60, &j[i]) == CP_OK);
		CHECK(strcmp(j[i].kind, "acme_order") == 0);
		snprintf(seen[i], sizeof(seen[i]), "%s", j[i].tenant_id);
	}
	CHECK(strcmp(seen[0], seen[1]) && strcmp(seen[1], seen[2]) && strcmp(seen[0], seen[2]));
	/* C has nothing left; A and B are served in turn, one each. */
	CHECK(db_job_claim(db, "acme", 2, "w1", 60, &j[3]) == CP_OK);
	CHECK(db_job_claim(db, "acme", 2, "w1", 60, &j[4]) == CP_OK);
	CHECK(strcmp(j[3].tenant_id, j[4].tenant_id) != 0);
	CHECK(strcmp(j[3].tenant_id, "C") && strcmp(j[4].tenant_id, "C"));
	/* The cap: A and B both run 2, so nothing more may run in the lane. */
	CHECK(db_job_claim(db, "acme", 2, "w1", 60, &j[5]) == CP_ERR_NOT_FOUND);
	CHECK(fx_int(db,
		     "SELECT running FROM job_tenants WHERE lane = 'acme' AND tenant_id = 'A'") ==
	      2);
	CHECK(counts_consistent(db));
	/* The webhook lane is not held by the acme lane's work. */
	CHECK(db_job_claim(db, "webhook", 2, "h1", 60, &j[5]) == CP_OK);
	CHECK(strcmp(j[5].kind, "webhook_delivery") == 0 && strcmp(j[5].tenant_id, "A") == 0);
	CHECK(db_job_done(db, j[5].id, "h1") == CP_OK);
	db_job_clear(&j[5]);
	CHECK(db_job_claim(db, "general", 1, "g1", 60, &j[5]) == CP_OK);
	CHECK(strcmp(j[5].kind, "some_new_kind") == 0 && j[5].tenant_id[0] == '\0');
	CHECK(db_job_done(db, j[5].id, "g1") == CP_OK);
	db_job_clear(&j[5]);

	/* Finishing one of A's jobs frees one place for A. */
	for (int i = 0; i < 5; i++) {
		if (strcmp(j[i].tenant_id, "A") == 0) {
			CHECK(db_job_done(db, j[i].id, "w1") == CP_OK);
			CHECK(db_job_claim(db, "acme", 2, "w1", 60, &j[5]) == CP_OK);
			CHECK(strcmp(j[5].tenant_id, "A") == 0);
			db_job_clear(&j[i]);
			j[i] = j[5];
			break;
		}
	}
	CHECK(db_job_claim(db, "acme", 2, "w1", 60, &j[6]) == CP_ERR_NOT_FOUND);
	/* Retry later and fail keep the counts. */
	for (int i = 0; i < 5; i++) {
		if (strcmp(j[i].tenant_id, "B") == 0) {
			CHECK(db_job_retry(db, j[i].id, "w1", cp_now() + 3600, "later") == CP_OK);
			break;
		}
	}
	CHECK(counts_consistent(db));
	/* An expired lease is claimed again before any queued job. */
	CHECK(db_exec(db, "UPDATE jobs SET lease_until = 1 WHERE id = (SELECT min(id) FROM jobs "
			  "WHERE state = 'running' AND lane = 'acme')") == CP_OK);
	CHECK(db_job_claim(db, "acme", 2, "w2", 60, &j[6]) == CP_OK);
	CHECK(fx_int(db, "SELECT count(*) FROM jobs WHERE lease_owner = 'w2'") == 1);
	CHECK(counts_consistent(db));
	db_job_clear(&j[6]);
	/* Clean shutdown and crash recovery requeue and keep the counts. */
	CHECK(db_job_release_owner(db, "w2") == CP_OK);
	CHECK(counts_consistent(db));
	CHECK(db_job_recover_orphans(db) == CP_OK);
	CHECK(fx_int(db, "SELECT count(*) FROM jobs WHERE state = 'running'") == 0);
	CHECK(fx_int(db, "SELECT sum(running) FROM job_tenants") == 0);
	CHECK(counts_consistent(db));
	/* Re-laning moves queued jobs and their counts. */
	CHECK(db_job_relane(db, "webhook_delivery", "general") == CP_OK);
	CHECK(fx_int(db, "SELECT queued FROM job_tenants WHERE lane = 'general' AND tenant_id = "
			 "'A'") == 9);
	CHECK(db_job_relane(db, "webhook_delivery", "webhook") == CP_OK);
	CHECK(counts_consistent(db));
	CHECK(db_exec(db, "DELETE FROM jobs WHERE tenant_id = 'C'") == CP_OK);
	CHECK(counts_consistent(db));
	/* Drain everything: every job runs exactly once, never over the cap. */
	for (int n = 0; n < 100; n++) {
		struct db_job k;
		if (db_job_claim(db, "acme", 2, "w3", 60, &k) != CP_OK)
			break;
		CHECK(fx_int(db, "SELECT max(running) FROM job_tenants WHERE lane = 'acme'") <= 2);
		CHECK(db_job_done(db, k.id, "w3") == CP_OK);
		db_job_clear(&k);
	}
	CHECK(fx_int(db, "SELECT count(*) FROM jobs WHERE lane = 'acme' AND state = 'queued' AND "
			 "run_at <= unixepoch()") == 0);
	CHECK(counts_consistent(db));
	for (int i = 0; i < 5; i++)
		db_job_clear(&j[i]);
}

static void test_quotas(struct db *db)
{
	const int64_t defaults[DB_QUOTA_COUNT] = { 2, 3, 5, 1, 1, 1 };
	int64_t values[DB_QUOTA_COUNT] = { -1, -1, -1, -1, -1, -1 };
	bool present[DB_QUOTA_COUNT] = { false };
	struct db_quota_refusal why;
	json_t *t = NULL, *q = NULL;
	const char *tid;

	CHECK(db_tenant_create(db, "quota", &t) == CP_OK);
	tid = json_string_value(json_object_get(t, "id"));
	CHECK(db_quota_check(db, tid, defaults,
			     &(struct db_quota_change){ .properties = 1, .hostnames = 3 },
			     &why) == CP_OK);
	CHECK(db_quota_check(db, tid, defaults, &(struct db_quota_change){ .hostnames = 4 },
			     &why) == CP_ERR_CONFLICT);
	CHECK(why.quota == DB_QUOTA_HOSTNAMES && why.limit == 3 && why.used == 0);
	values[DB_QUOTA_HOSTNAMES] = 10;
	present[DB_QUOTA_HOSTNAMES] = true;
	CHECK(db_quota_set(db, tid, values, present) == CP_OK);
	CHECK(db_quota_check(db, tid, defaults, &(struct db_quota_change){ .hostnames = 4 },
			     &why) == CP_OK);
	CHECK(db_quota_set(db, "no-such-tenant", values, present) == CP_ERR_NOT_FOUND);
	CHECK(db_quota_get(db, tid, defaults, &q) == CP_OK);
	CHECK(json_integer_value(json_object_get(
		      json_object_get(json_object_get(q, "quotas"), "hostnames"), "limit")) == 10);
	CHECK(json_is_false(json_object_get(
		json_object_get(json_object_get(q, "quotas"), "properties"), "overridden")));
	/* Back to the default. */
	values[DB_QUOTA_HOSTNAMES] = -1;
	CHECK(db_quota_set(db, tid, values, present) == CP_OK);
	CHECK(db_quota_check(db, tid, defaults, &(struct db_quota_change){ .hostnames = 4 },
			     &why) == CP_ERR_CONFLICT);
	/* A limit of 0 refuses the first one. */
	values[DB_QUOTA_WEBHOOKS] = 0;
	present[DB_QUOTA_WEBHOOKS] = true;
	CHECK(db_quota_set(db, tid, values, present) == CP_OK);
	CHECK(db_quota_check(db, tid, defaults, &(struct db_quota_change){ .webhooks = 1 }, &why) ==
	      CP_ERR_CONFLICT);
	CHECK(why.quota == DB_QUOTA_WEBHOOKS && why.limit == 0);
	CHECK(db_quota_find("orders_in_flight") == DB_QUOTA_ORDERS_IN_FLIGHT);
	CHECK(db_quota_find("nope") == -1);
	json_decref(q);
	json_decref(t);
}

/* Print EXPLAIN QUERY PLAN of sql (the claim's pick) with its binds. */
static void explain(struct db *db, const char *sql)
{
	char *q = cp_aprintf("EXPLAIN QUERY PLAN %s", sql);
	sqlite3_stmt *st = NULL;

	if (q && sqlite3_prepare_v2(db_sqlite_handle(db), q, -1, &st, NULL) == SQLITE_OK) {
		sqlite3_bind_text(st, 1, "acme", -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, cp_now());
		sqlite3_bind_int(st, 3, 2);
		while (sqlite3_step(st) == SQLITE_ROW)
			printf("  plan: %s\n", (const char *)sqlite3_column_text(st, 3));
	}
	sqlite3_finalize(st);
	free(q);
}

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

/* The benchmark: claim + done n times on a seeded database. */
static int bench(const char *path, int n)
{
	struct db *db = NULL;
	double t0, total = 0, worst = 0;
	int claimed = 0;

	if (db_open(path, &db) != CP_OK || db_migrate(db, NULL, NULL) != CP_OK)
		return 1;
	db_job_set_lanes(test_lane);
	printf("jobs %lld (queued %lld, running %lld), tenants in job_tenants %lld\n",
	       (long long)fx_int(db, "SELECT count(*) FROM jobs"),
	       (long long)fx_int(db, "SELECT count(*) FROM jobs WHERE state = 'queued'"),
	       (long long)fx_int(db, "SELECT count(*) FROM jobs WHERE state = 'running'"),
	       (long long)fx_int(db, "SELECT count(*) FROM job_tenants"));
	explain(db, "SELECT tenant_id FROM (SELECT tenant_id, next_run_at, running, last_served "
		    "FROM job_tenants INDEXED BY job_tenants_rr WHERE lane = ?1 AND queued > 0 "
		    "ORDER BY last_served LIMIT 64) "
		    "WHERE next_run_at <= ?2 AND running < ?3 ORDER BY last_served LIMIT 1");
	explain(db, "SELECT tenant_id FROM job_tenants INDEXED BY job_tenants_due "
		    "WHERE lane = ?1 AND queued > 0 AND next_run_at <= ?2 AND running < ?3 "
		    "ORDER BY last_served LIMIT 1");
	explain(db, "SELECT id FROM jobs INDEXED BY jobs_lane_tenant_due WHERE state = 'queued' "
		    "AND lane = ?1 AND ifnull(tenant_id, '') = 'tenant-00001' AND run_at <= ?2 "
		    "ORDER BY run_at, id LIMIT 1");
	explain(db, "SELECT min(run_at) FROM jobs WHERE state = 'queued' AND lane = ?1 "
		    "AND ifnull(tenant_id, '') = 'tenant-00001'");
	explain(db, "UPDATE jobs SET lease_owner = 'x' WHERE id = (SELECT id FROM jobs WHERE "
		    "lane = ?1 AND state = 'running' AND lease_until < ?2 ORDER BY lease_until "
		    "LIMIT 1)");
	for (int i = 0; i < n; i++) {
		struct db_job j;
		double d;
		cp_rc rc;
		t0 = now_us();
		rc = db_job_claim(db, "acme", 2, "bench", 60, &j);
		d = now_us() - t0;
		if (rc != CP_OK)
			break;
		total += d;
		worst = d > worst ? d : worst;
		claimed++;
		if (db_job_done(db, j.id, "bench") != CP_OK)
			break;
		db_job_clear(&j);
	}
	t0 = now_us();
	{
		struct db_job j;
		cp_rc rc = db_job_claim(db, "webhook", 2, "bench", 60, &j);
		printf("webhook lane (10k tenants, nothing due) claim: %.1f us (%s)\n",
		       now_us() - t0, cp_rc_str(rc));
		db_job_clear(&j);
	}
	printf("claims %d: mean %.1f us, worst %.1f us (claim transaction incl. commit)\n", claimed,
	       claimed ? total / claimed : 0, worst);
	db_close(db);
	return claimed == n ? 0 : 1;
}

int main(int argc, char **argv)
{
	struct fx fx = { 0 };
	struct db *db = NULL;

	cp_log_set_level(CP_LOG_ERROR);
	if (argc > 1) {
		long n = 1000;
		char *end = NULL;

		if (argc > 2) {
			n = strtol(argv[2], &end, 10);
			if (end == argv[2] || *end || n < 1 || n > 10000000) {
				fprintf(stderr, "usage: %s DB [CLAIMS 1..10000000]\n", argv[0]);
				return 2;
			}
		}
		return bench(argv[1], (int)n);
	}
	/* the fixture's database: a file, or PostgreSQL (CERTPLANE_TEST_DB) */
	CHECK(fx_open(&fx, "fair"));
	db = fx.db;
	if (db) {
		test_claim(db);
		test_quotas(db);
	}
	fx_close(&fx);
	return check_exit("test_fairness");
}
