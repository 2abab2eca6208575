/*
 * test_sched.c - unit tests of the renewal scheduler's parts that scale:
 *
 *   - the per-CA order budget (sched/sched.h): a burst of due certificates
 *     is spread one slot apart at the CA's rate, with jitter inside each
 *     slot, never more than `burst` ahead, and refused ones learn when a
 *     slot frees;
 *   - the stored next_attention_at (migration 008) on a temporary database:
 *     after each change it depends on (version added, auto_renew off/on,
 *     failure backoff, order started/finished, attach to / detach from a
 *     property by a production deployment, renew automation toggled,
 *     property deleted) it equals what the rule says, and the attention
 *     scan (db_renewal_attention) and re-check (db_renewal_candidate) find
 *     exactly the due certificate;
 *   - pruning of finished jobs and webhook deliveries in bounded batches.
 *
 * White-box: includes db/db_internal.h to write and read the tables.
 * Exit status is the number of failed checks (capped), 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/common.h"
#include "db/db_internal.h"

#include "sched/sched.h"
#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

static void test_budget(void)
{
	struct sched_budget b = { 0 };
	int64_t now = 1000000, at = 0, prev = 0, t;
	int admitted = 0;

	/* 3600 an hour = one slot a second; burst 5. 20 due at once. */
	CHECK(sched_slot_ms(3600) == 1000);
	CHECK(sched_slot_ms(90) == 40000);
	for (int i = 0; i < 20; i++) {
		if (sched_budget_take(&b, now, 3600, 5, (uint64_t)i * 7919u, &at)) {
			/* Order k starts inside slot k: [now + k s, now + (k+1) s). */
			CHECK(at >= now + admitted * 1000 && at < now + (admitted + 1) * 1000);
			CHECK(at >= prev);
			prev = at;
			admitted++;
		} else {
			/* Refused: a slot frees later, never now. */
			CHECK(at > now);
			CHECK(at == now + 1);
		}
	}
	CHECK(admitted == 5); /* never more than burst ahead */
	/* 2.5 s later, 2.5 slots have passed: 3 more fit (slots at now + 5,
	 * 6 and 7 s are within 5 s of now + 2.5 s, the one at 8 s is not). */
	t = now + 2500;
	admitted = 0;
	for (int i = 0; i < 10; i++)
		if (sched_budget_take(&b, t, 3600, 5, 0, &at)) {
			CHECK(at == now + (5 + admitted) * 1000);
			admitted++;
		}
	CHECK(admitted == 3);
	/* Over a long run the rate holds: 100 s of 1 s ticks admit ~100. */
	admitted = 0;
	for (int s = 0; s < 100; s++)
		for (int i = 0; i < 50; i++)
			if (sched_budget_take(&b, t + s * 1000, 3600, 5, 1, &at))
				admitted++;
	CHECK(admitted >= 98 && admitted <= 102);
	/* An idle budget does not bank the past: after an hour, still at most
	 * burst, spread from now. */
	b.tat_ms = 0;
	admitted = 0;
	for (int i = 0; i < 1000; i++)
		if (sched_budget_take(&b, now + 3600000, 3600, 5, 999, &at)) {
			CHECK(at == now + 3600000 + admitted * 1000 + 999);
			admitted++;
		}
	CHECK(admitted == 5);
	/* Let's Encrypt: recognised directories, and the default stays below
	 * its published 300 new orders per 3 h (100 an hour). */
	CHECK(sched_is_letsencrypt("https://acme-v02.api.letsencrypt.org/directory"));
	CHECK(sched_is_letsencrypt("https://acme-staging-v02.api.letsencrypt.org/directory"));
	CHECK(!sched_is_letsencrypt("https://localhost:14000/dir"));
	CHECK(!sched_is_letsencrypt("https://acme-v02.api.letsencrypt.org.evil/directory"));
	CHECK(!sched_is_letsencrypt(NULL));
	CHECK(SCHED_LE_ORDERS_PER_HOUR < 100 && SCHED_LE_ORDER_BURST <= 300);
}

static int64_t qint(struct db *db, const char *sql)
{
	struct db_stmt *st = NULL;
	int64_t n = -999;

	if (db_prepare(db, sql, &st) == DB_DONE && db_step(st) == DB_ROW)
		n = db_col_null(st, 0) ? -1 : db_col_int64(st, 0);
	if (st)
		db_finalize(db, st);
	return n;
}

static bool exec(struct db *db, const char *sql)
{
	bool ok = db_exec(db, sql) == CP_OK;

	if (!ok)
		fprintf(stderr, "sql failed: %s\n", sql);
	return ok;
}

/* next_attention_at of certificate c1 (-1 = NULL). */
static int64_t attention(struct db *db)
{
	return qint(db, "SELECT next_attention_at FROM certificates WHERE id = 'c1'");
}

/* Every row's stored value equals the rule (the view). */
static bool consistent(struct db *db)
{
	return qint(db,
		    "SELECT count(*) FROM certificates c WHERE next_attention_at IS DISTINCT FROM "
		    "(SELECT at FROM certificate_attention a WHERE a.id = c.id)") == 0;
}

/* Ids the scheduler's scan + re-check find due now. */
static int due_found(struct db *db)
{
	json_t *list = NULL, *row, *c = NULL;
	size_t i;
	int n = 0;

	if (db_renewal_attention(db, INT64_MIN, cp_now(), 100, &list) != CP_OK)
		return -1;
	json_array_foreach(list, i, row)
	{
		if (db_renewal_candidate(db, json_string_value(json_object_get(row, "id")), &c) ==
		    CP_OK)
			n++;
		json_decref(c);
		c = NULL;
	}
	json_decref(list);
	return n;
}

static void test_attention(struct db *db)
{
	char sql[2048];
	int64_t now = cp_now(), nb = now - 80 * 86400, na = now + 10 * 86400,
		ra = now - 3600; /* renew_after: due an hour ago */

	snprintf(
		sql, sizeof(sql),
		"INSERT INTO tenants (id, name, created_at) VALUES ('t1', 't1', 0), "
		"('t2', 't2', 0);"
		"INSERT INTO edge_hostnames (id, tenant_id, hostname, label, created_at) VALUES "
		"('e1', 't1', 'e1.edge', 'e1', 0);"
		"INSERT INTO properties (id, tenant_id, name, edge_hostname_id, "
		"certificate_renew_automation, created_at, updated_at) VALUES "
		"('p1', 't1', 'p1', 'e1', 1, 0, 0), ('p2', 't1', 'p2', 'e1', 1, 0, 0);"
		"INSERT INTO certificates (id, tenant_id, name, source, status, auto_renew, "
		"created_at, updated_at) VALUES ('c1', 't1', 'c1', 'upload', 'active', "
		"'letsencrypt', 0, 0), ('c2', 't1', 'c2', 'upload', 'active', 'letsencrypt', 0, 0);");
	CHECK(exec(db, sql));
	CHECK(attention(db) == -1); /* no version yet */
	/* A version added (renew_after stored with it). */
	snprintf(sql, sizeof(sql),
		 "INSERT INTO certificate_versions (id, certificate_id, tenant_id, version, "
		 "cert_pem, private_key, key_type, issuer, serial, not_before, not_after, "
		 "fingerprint_sha256, sans, created_at) VALUES ('v1', 'c1', 't1', 1, 'x', 'k', "
		 "'ecdsa-p256', 'i', '01', %lld, %lld, 'f', '[\"a.example\"]', 0), ('v2', 'c2', "
		 "'t1', 1, 'x', 'k', 'ecdsa-p256', 'i', '02', %lld, %lld, 'f', "
		 "'[\"a.example\"]', 0);"
		 "UPDATE certificates SET version = 1, renew_after = %lld;",
		 (long long)nb, (long long)na, (long long)nb, (long long)na, (long long)ra);
	CHECK(exec(db, sql));
	CHECK(attention(db) == -1); /* not deployed anywhere */
	CHECK(due_found(db) == 0);
	/* Attach: a production deployment of p1 carries c1. */
	CHECK(exec(db, "INSERT INTO deployments (id, tenant_id, property_id, environment, "
		       "version, hostnames, certificate_id, created_at) VALUES ('d1', 't1', "
		       "'p1', 'production', 1, '[\"a.example\"]', 'c1', 0)"));
	CHECK(attention(db) == ra);
	CHECK(due_found(db) == 1);
	CHECK(consistent(db));
	/* A staging deployment changes nothing. */
	CHECK(exec(db, "INSERT INTO deployments (id, tenant_id, property_id, environment, "
		       "version, hostnames, certificate_id, created_at) VALUES ('d0', 't1', "
		       "'p1', 'staging', 2, '[]', 'c2', 0)"));
	CHECK(attention(db) == ra);
	CHECK(qint(db, "SELECT next_attention_at FROM certificates WHERE id = 'c2'") == -1);
	/* auto_renew off, then on. */
	CHECK(exec(db, "UPDATE certificates SET auto_renew = 'none' WHERE id = 'c1'"));
	CHECK(attention(db) == -1);
	CHECK(due_found(db) == 0);
	CHECK(exec(db, "UPDATE certificates SET auto_renew = 'letsencrypt' WHERE id = 'c1'"));
	CHECK(attention(db) == ra);
	/* Failure backoff: the later of renew_after and next_attempt_at. */
	snprintf(sql, sizeof(sql),
		 "UPDATE certificates SET next_attempt_at = %lld, failure_count = 1 WHERE id = "
		 "'c1'",
		 (long long)(now + 600));
	CHECK(exec(db, sql));
	CHECK(attention(db) == now + 600);
	CHECK(due_found(db) == 0); /* not in the due range */
	/* A backoff past expiry: nothing to do (the give-up marks it failed). */
	snprintf(sql, sizeof(sql), "UPDATE certificates SET next_attempt_at = %lld WHERE id = 'c1'",
		 (long long)(na + 1));
	CHECK(exec(db, sql));
	CHECK(attention(db) == -1);
	CHECK(exec(db, "UPDATE certificates SET next_attempt_at = NULL, failure_count = 0"));
	CHECK(attention(db) == ra);
	/* An order started, then finished. */
	CHECK(exec(db, "INSERT INTO orders (id, tenant_id, certificate_id, kind, challenge, "
		       "identifiers, ca, key_type, created_at, updated_at) VALUES ('o1', 't1', "
		       "'c1', 'renew', 'http-01', '[]', 'letsencrypt', 'ecdsa-p256', 0, 0)"));
	CHECK(attention(db) == -1);
	CHECK(due_found(db) == 0);
	CHECK(exec(db, "UPDATE orders SET status = 'validating' WHERE id = 'o1'"));
	CHECK(attention(db) == -1);
	CHECK(exec(db, "UPDATE orders SET status = 'failed' WHERE id = 'o1'"));
	CHECK(attention(db) == ra);
	/* A new version (renewed): renew_after moves with it. */
	snprintf(sql, sizeof(sql),
		 "INSERT INTO certificate_versions (id, certificate_id, tenant_id, version, "
		 "cert_pem, private_key, key_type, issuer, serial, not_before, not_after, "
		 "fingerprint_sha256, order_id, sans, created_at) VALUES ('v3', 'c1', 't1', 2, "
		 "'x', 'k', 'ecdsa-p256', 'i', '03', %lld, %lld, 'f', 'o1', "
		 "'[\"a.example\"]', 0);"
		 "UPDATE certificates SET version = 2, renew_after = %lld WHERE id = 'c1';",
		 (long long)now, (long long)(now + 90 * 86400), (long long)(now + 60 * 86400));
	CHECK(exec(db, sql));
	CHECK(attention(db) == now + 60 * 86400);
	CHECK(due_found(db) == 0);
	snprintf(sql, sizeof(sql), "UPDATE certificates SET renew_after = %lld WHERE id = 'c1'",
		 (long long)ra);
	CHECK(exec(db, sql));
	CHECK(attention(db) == ra);
	/* Renew automation toggled on the property. */
	CHECK(exec(db, "UPDATE properties SET certificate_renew_automation = 0 WHERE id = 'p1'"));
	CHECK(attention(db) == -1);
	CHECK(exec(db, "UPDATE properties SET certificate_renew_automation = 1 WHERE id = 'p1'"));
	CHECK(attention(db) == ra);
	/* Detach: p1's next production deployment carries c2 instead. */
	CHECK(exec(db, "INSERT INTO deployments (id, tenant_id, property_id, environment, "
		       "version, hostnames, certificate_id, created_at) VALUES ('d2', 't1', "
		       "'p1', 'production', 3, '[\"a.example\"]', 'c2', 0)"));
	CHECK(attention(db) == -1);
	CHECK(qint(db, "SELECT next_attention_at FROM certificates WHERE id = 'c2'") == ra);
	CHECK(consistent(db));
	/* p2 carries c1: attached again; deleting p2 detaches it. */
	CHECK(exec(db, "INSERT INTO deployments (id, tenant_id, property_id, environment, "
		       "version, hostnames, certificate_id, created_at) VALUES ('d3', 't1', "
		       "'p2', 'production', 1, '[\"b.example\"]', 'c1', 0)"));
	/* ... and its b.example is not in c1's SANs: a SAN change, due at once
	 * (migration 011). */
	CHECK(attention(db) == 1);
	CHECK(due_found(db) == 2);
	CHECK(exec(db, "DELETE FROM properties WHERE id = 'p2'"));
	CHECK(attention(db) == -1);
	/* A property of another tenant never carries it. */
	CHECK(exec(db, "INSERT INTO edge_hostnames (id, tenant_id, hostname, label, created_at) "
		       "VALUES ('e2', 't2', 'e2.edge', 'e2', 0); INSERT INTO properties (id, "
		       "tenant_id, name, edge_hostname_id, certificate_renew_automation, "
		       "created_at, updated_at) VALUES ('p3', 't2', 'p3', 'e2', 1, 0, 0); INSERT "
		       "INTO deployments (id, tenant_id, property_id, environment, version, "
		       "hostnames, certificate_id, created_at) VALUES ('d4', 't2', 'p3', "
		       "'production', 1, '[\"c.example\"]', 'c1', 0)"));
	CHECK(attention(db) == -1);
	CHECK(consistent(db));
	/* The scheduler's defer: moves it, and a later change recomputes it. */
	CHECK(exec(db, "INSERT INTO deployments (id, tenant_id, property_id, environment, "
		       "version, hostnames, certificate_id, created_at) VALUES ('d5', 't1', "
		       "'p1', 'production', 4, '[\"a.example\"]', 'c1', 0)"));
	CHECK(attention(db) == ra);
	CHECK_RC(db_renewal_defer(db, "c1", now + 40), CP_OK);
	CHECK(attention(db) == now + 40);
	CHECK(due_found(db) == 0);
	CHECK(exec(db, "UPDATE certificates SET auto_renew = 'letsencrypt' WHERE id = 'c1'"));
	CHECK(attention(db) == ra);
	/* SAN change (migration 011): p1 gains n.example -> due at once (1, the
	 * past), after a failure backoff if later; the same set again (any
	 * order, duplicates) -> back to renew_after. */
	CHECK(exec(db, "INSERT INTO deployments (id, tenant_id, property_id, environment, "
		       "version, hostnames, certificate_id, created_at) VALUES ('d6', 't1', "
		       "'p1', 'production', 5, '[\"n.example\", \"a.example\"]', 'c1', 0)"));
	CHECK(attention(db) == 1);
	CHECK(due_found(db) == 1);
	CHECK(consistent(db));
	snprintf(sql, sizeof(sql), "UPDATE certificates SET next_attempt_at = %lld WHERE id = 'c1'",
		 (long long)(now + 600));
	CHECK(exec(db, sql));
	CHECK(attention(db) == now + 600);
	CHECK(exec(db, "UPDATE certificates SET next_attempt_at = NULL WHERE id = 'c1'"));
	CHECK(attention(db) == 1);
	CHECK(exec(db, "INSERT INTO deployments (id, tenant_id, property_id, environment, "
		       "version, hostnames, certificate_id, created_at) VALUES ('d7', 't1', "
		       "'p1', 'production', 6, '[\"a.example\", \"a.example\"]', 'c1', 0)"));
	CHECK(attention(db) == ra);
	/* Lost every name: a change too. */
	CHECK(exec(db, "INSERT INTO deployments (id, tenant_id, property_id, environment, "
		       "version, hostnames, certificate_id, created_at) VALUES ('d8', 't1', "
		       "'p1', 'production', 7, '[]', 'c1', 0)"));
	CHECK(attention(db) == 1);
	CHECK(exec(db, "INSERT INTO deployments (id, tenant_id, property_id, environment, "
		       "version, hostnames, certificate_id, created_at) VALUES ('d9', 't1', "
		       "'p1', 'production', 8, '[\"a.example\"]', 'c1', 0)"));
	CHECK(attention(db) == ra);
	CHECK(consistent(db));
	/* The preview's facts: the tenant's own certificate only. */
	{
		json_t *f = NULL;
		CHECK_RC(db_renewal_facts(db, "t1", "c1", &f), CP_OK);
		CHECK(json_integer_value(json_object_get(f, "renew_after")) == ra);
		CHECK(json_integer_value(json_object_get(f, "version")) == 2);
		CHECK(json_is_true(json_object_get(f, "ca_issued")));
		CHECK(json_is_null(json_object_get(f, "order_in_flight")));
		json_decref(f);
		f = NULL;
		CHECK_RC(db_renewal_facts(db, "t2", "c1", &f), CP_ERR_NOT_FOUND);
		CHECK(f == NULL);
	}
	/* An expired version: nothing to do (stored NULL at the next change). */
	snprintf(sql, sizeof(sql),
		 "UPDATE certificate_versions SET not_after = %lld WHERE id = 'v3'; UPDATE "
		 "certificates SET renew_after = %lld WHERE id = 'c1'",
		 (long long)(now - 10), (long long)(now - 20));
	CHECK(exec(db, sql));
	CHECK(attention(db) == now - 20); /* before not_after: the rule keeps it */
	CHECK(due_found(db) == 0);	  /* the re-check sees it expired */
	CHECK(consistent(db));
}

static void test_prune(struct db *db)
{
	char sql[1024];
	int64_t now = cp_now();
	int n = -1;

	snprintf(sql, sizeof(sql),
		 "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < 25) "
		 "INSERT INTO jobs (kind, payload, state, run_at, created_at, updated_at) SELECT "
		 "'x', '{}', CASE i %% 5 WHEN 0 THEN 'queued' WHEN 1 THEN 'failed' ELSE 'done' "
		 "END, 0, 0, CASE WHEN i <= 20 THEN %lld ELSE %lld END FROM k",
		 (long long)(now - 8 * 86400), (long long)now);
	CHECK(exec(db, sql));
	/* 20 old rows: 4 queued (kept), 16 finished; 5 recent ones kept. */
	CHECK_RC(db_job_prune(db, now - 7 * 86400, 10, &n), CP_OK);
	CHECK(n == 10);
	CHECK_RC(db_job_prune(db, now - 7 * 86400, 10, &n), CP_OK);
	CHECK(n == 6);
	CHECK_RC(db_job_prune(db, now - 7 * 86400, 10, &n), CP_OK);
	CHECK(n == 0);
	CHECK(qint(db, "SELECT count(*) FROM jobs") == 9);
	CHECK(qint(db, "SELECT count(*) FROM jobs WHERE state = 'queued'") == 5);
	snprintf(
		sql, sizeof(sql),
		"INSERT INTO webhooks (id, tenant_id, url, secret, events, created_at, "
		"updated_at) VALUES ('w1', 't1', 'https://x.example/', 's', '[]', 0, 0);"
		"INSERT INTO webhook_deliveries (id, tenant_id, webhook_id, event_id, event_type, "
		"state, created_at, updated_at) VALUES ('wd1', 't1', 'w1', 'e1', 'x', 'delivered', "
		"0, %lld), ('wd2', 't1', 'w1', 'e2', 'x', 'pending', 0, %lld), ('wd3', 't1', 'w1', "
		"'e3', 'x', 'failed', 0, %lld);"
		"INSERT INTO webhook_attempts (delivery_id, attempt, latency_ms, created_at) "
		"VALUES ('wd1', 1, 1, 0), ('wd2', 1, 1, 0), ('wd3', 1, 1, 0);",
		(long long)(now - 8 * 86400), (long long)(now - 8 * 86400), (long long)now);
	CHECK(exec(db, sql));
	CHECK_RC(db_webhook_prune(db, now - 7 * 86400, 100, &n), CP_OK);
	CHECK(n == 1);
	CHECK(qint(db, "SELECT count(*) FROM webhook_deliveries") == 2);
	CHECK(qint(db, "SELECT count(*) FROM webhook_attempts WHERE delivery_id = 'wd1'") == 0);
	CHECK(qint(db, "SELECT count(*) FROM webhook_attempts") == 2);
}

int main(void)
{
	/* the fixture's database: a file, or PostgreSQL (CERTPLANE_TEST_DB) */
	struct fx fx = { 0 };

	test_budget();
	CHECK(fx_open(&fx, "sched"));
	if (fx.db) {
		test_attention(fx.db);
		test_prune(fx.db);
	}
	fx_close(&fx);
	return check_exit("test_sched");
}
