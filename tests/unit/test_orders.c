/*
 * test_orders.c - the acme_order job (server/order_run.c) when the database
 * fails. Only a missing order ends the job; a busy or failing database
 * (a statement that cannot run, a row the query fails on; busy is handled
 * the same way, as every error but CP_ERR_NOT_FOUND) must retry the job later and leave the order
 * exactly as it was. Before the fix any error of db_order_load was taken for "the order is gone":
 * the job was marked done and the order stayed pending for ever. Exit status is the number of
 * failed checks (capped), 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "db/db.h"
#include "server/server_internal.h"
#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

#define ORDER_ID "0b9e7c52-5f7e-4a51-9d0e-3a1f00000001"

/* Run the job once for order_id; returns its outcome. */
static struct server_job_outcome run_job(const struct api_ctx *ctx, struct db *db,
					 const char *tenant_id, const char *order_id)
{
	struct server_job_outcome out = { .result = SERVER_JOB_FAIL };
	struct db_job job = { .id = 1, .kind = "acme_order", .attempts = 1, .owner = "test" };

	snprintf(job.tenant_id, sizeof(job.tenant_id), "%s", tenant_id);
	job.payload = json_pack("{s:s}", "order_id", order_id);
	server_job_acme_order(ctx, db, &job, &out);
	json_decref(job.payload);
	return out;
}

/* The order row as a string "status|attempts|error_reason|updated_at". */
static void order_state(struct db *h, char *out, size_t n)
{
	static const char sql[] =
		"SELECT status, attempts, coalesce(error_reason, '-'), updated_at FROM orders "
		"WHERE id = ?1";
	struct db_stmt *st = NULL;

	snprintf(out, n, "(none)");
	if (db_prepare(h, sql, &st) == DB_DONE) {
		db_bind_text(st, 1, ORDER_ID);
		if (db_step(st) == DB_ROW)
			snprintf(out, n, "%s|%lld|%s|%lld", db_col_text(st, 0),
				 (long long)db_col_int64(st, 1), db_col_text(st, 2),
				 (long long)db_col_int64(st, 3));
	}
	if (st)
		db_finalize(h, st);
}

static bool exec_ok(struct db *h, const char *sql)
{
	return fx_sql(h, sql);
}

int main(void)
{
	char before[128], after[128];
	struct fx fx = { 0 };
	struct cp_config *cfg = NULL;
	struct crypto_keyring *ring = NULL;
	struct db *db = NULL;
	/* A second connection to the fixture's database (a file, or
	 * PostgreSQL: CERTPLANE_TEST_DB) breaks and mends the table under the
	 * job's connection. */
	struct db *other = NULL;
	json_t *tenant = NULL;
	struct server_job_outcome out;
	char *err = NULL, *sql = NULL;
	const char *tid;
	int64_t t0;

	if (!fx_open(&fx, "orders") || cp_config_load(NULL, &cfg, &err) != CP_OK ||
	    crypto_keyring_load(fx.dir, NULL, &ring) != CP_OK ||
	    db_tenant_create(fx.db, "t", &tenant) != CP_OK || db_open(fx.path, &other) != CP_OK) {
		fprintf(stderr, "test_orders: setup failed: %s\n", err ? err : "");
		return 1;
	}
	cp_log_set_level(CP_LOG_ERROR); /* the faults below log on purpose */
	db = fx.db;
	struct api_ctx ctx = { .cfg = cfg, .keyring = ring };
	tid = json_string_value(json_object_get(tenant, "id"));
	sql = cp_aprintf("INSERT INTO orders (id, tenant_id, certificate_id, kind, challenge, "
			 "identifiers, ca, key_type, created_at, updated_at) VALUES ('" ORDER_ID
			 "', '%s', 'c1', 'issue', 'http-01', '[\"a.test\"]', 'letsencrypt', "
			 "'ecdsa-p256', 1, 1)",
			 tid);
	CHECK(sql && exec_ok(other, sql));
	order_state(other, before, sizeof(before));
	CHECK(!strcmp(before, "pending|0|-|1"));

	/* 1. A statement that cannot run (its table is away): CP_ERR_INTERNAL. */
	CHECK(exec_ok(other, "ALTER TABLE orders RENAME TO orders_away"));
	t0 = cp_now();
	out = run_job(&ctx, db, tid, ORDER_ID);
	CHECK(out.result == SERVER_JOB_RETRY);
	CHECK(out.run_at > t0 && out.run_at <= t0 + 61);
	CHECK(strstr(out.error, "database") != NULL);
	CHECK(exec_ok(other, "ALTER TABLE orders_away RENAME TO orders"));
	order_state(other, after, sizeof(after));
	CHECK(!strcmp(before, after));

	/* 2. A row the query cannot render (its JSON column damaged): the
	 * statement fails mid-step. Still not "gone". */
	CHECK(exec_ok(other, "UPDATE orders SET metadata = '{broken' WHERE id = '" ORDER_ID "'"));
	t0 = cp_now();
	out = run_job(&ctx, db, tid, ORDER_ID);
	CHECK(out.result == SERVER_JOB_RETRY);
	CHECK(out.run_at > t0);
	CHECK(strstr(out.error, "database") != NULL);
	CHECK(exec_ok(other, "UPDATE orders SET metadata = NULL WHERE id = '" ORDER_ID "'"));
	order_state(other, after, sizeof(after));
	CHECK(!strcmp(before, after));

	/* 3. Really gone (deleted, or another tenant's id): the job is done. */
	out = run_job(&ctx, db, tid, "0b9e7c52-5f7e-4a51-9d0e-3a1f0000ffff");
	CHECK(out.result == SERVER_JOB_DONE);
	out = run_job(&ctx, db, "00000000-0000-4000-8000-000000000000", ORDER_ID);
	CHECK(out.result == SERVER_JOB_DONE);
	order_state(other, after, sizeof(after));
	CHECK(!strcmp(before, after));

	db_close(other);
	json_decref(tenant);
	free(sql);
	crypto_keyring_free(ring);
	cp_config_free(cfg);
	fx_close(&fx); /* the keyring's files with the rest of fx.dir */
	return check_exit("test_orders");
}
