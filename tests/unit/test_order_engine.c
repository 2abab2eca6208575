/*
 * test_order_engine.c - robustness rules of the ACME order engine that need
 * no CA (issue 10):
 *
 * 1. A finished order never comes back: db_order_reset (the CA forgot the
 *    order, start a fresh one) on a canceled, valid or failed order changes
 *    nothing - not the row, not its authorizations - and says
 *    CP_ERR_CONFLICT; a status patch to pending does not reopen it either,
 *    and the job run again (re-queued, woken) leaves it as it is. An order
 *    in flight is reset (the control), a missing one is CP_ERR_NOT_FOUND.
 * 2. A worker never sleeps past its lease on a CA's Retry-After
 *    (order_wait_poll): a Retry-After longer than ORDER_WAIT_MAX_MS
 *    re-queues the job for then at once; a short wait is slept through,
 *    with the lease extended first; a lost lease stops the run; and the
 *    workers stopping end a wait at once (the job given back, due now).
 *
 * Exit status is the number of failed checks (capped), 0 on success.
 */
#include <pthread.h>

#include "crypto/crypto.h"
#include "server/order_internal.h"
#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

static struct fx fx;
static char tid[CP_UUID_LEN + 1];

#define JOB_OWNER "test-owner"

/* Everything db_order_reset could touch of order id, as one string (new,
 * NULL when there is no such order): the row and its authorizations. */
static char *order_snapshot(const char *id)
{
	static const char sql[] =
		"SELECT json_array(o.status, o.account_url, o.order_url, o.finalize_url, "
		"o.certificate_url, o.dns_deadline, o.attempts, o.updated_at, o.completed_at, "
		"o.error_reason, (SELECT json_group_array(json_array(a.position, a.url, a.status, "
		"a.token, a.responded)) FROM order_authorizations a WHERE a.order_id = o.id)) "
		"FROM orders o WHERE o.id = ?";
	sqlite3_stmt *st = NULL;
	char *out = NULL;

	if (sqlite3_prepare_v2(db_sqlite_handle(fx.db), sql, -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		out = cp_strdup((const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
	return out;
}

/* An order of the test tenant in status, with its CA URLs and two
 * authorizations stored, updated long ago (so that any write shows); its
 * own certificate id (one order in flight per certificate). */
static bool order_add(const char *id, const char *status)
{
	char *sql = cp_aprintf(
		"INSERT INTO orders (id, tenant_id, certificate_id, kind, status, challenge, "
		"identifiers, ca, key_type, account_url, order_url, finalize_url, certificate_url, "
		"dns_deadline, created_at, updated_at, completed_at) VALUES ('%s', '%s', '%s', "
		"'issue', '%s', 'http-01', '[\"a.test\",\"b.test\"]', 'letsencrypt', 'ecdsa-p256', "
		"'https://ca/acct/1', 'https://ca/order/1', 'https://ca/finalize/1', "
		"'https://ca/cert/1', 99, 1, 1, 2);"
		"INSERT INTO order_authorizations (order_id, position, url, identifier, status, "
		"token, responded) VALUES ('%s', 0, 'https://ca/authz/0', 'a.test', 'valid', 't0', "
		"5), ('%s', 1, 'https://ca/authz/1', 'b.test', 'pending', 't1', 6)",
		id, tid, id, status, id, id);
	bool ok = sql && fx_sql(fx.db, sql);

	free(sql);
	return ok;
}

/* Run the acme_order job once for order id (no CA is reachable: a run
 * that talked to one would fail or back off, and the checks see it). */
static struct server_job_outcome job_run(const struct api_ctx *ctx, const char *id)
{
	struct server_job_outcome out = { .result = SERVER_JOB_FAIL };
	struct db_job job = { .id = 1, .kind = "acme_order", .attempts = 1, .owner = JOB_OWNER };

	snprintf(job.tenant_id, sizeof(job.tenant_id), "%s", tid);
	job.payload = json_pack("{s:s}", "order_id", id);
	server_job_acme_order(ctx, fx.db, &job, &out);
	json_decref(job.payload);
	return out;
}

static void test_finished_orders_stay_finished(const struct api_ctx *ctx)
{
	static const char *const finished[] = { "canceled", "valid", "failed" };
	char id[CP_UUID_LEN + 1], *before = NULL, *after = NULL;
	struct server_job_outcome out;

	for (size_t i = 0; i < CP_ARRAY_LEN(finished); i++) {
		cp_uuid(id);
		CHECK(order_add(id, finished[i]));
		before = order_snapshot(id);
		CHECK(before && strstr(before, finished[i]) && strstr(before, "ca/order/1"));

		/* The reset the engine does when the CA forgot the order. */
		CHECK_RC(db_order_reset(fx.db, id), CP_ERR_CONFLICT);
		after = order_snapshot(id);
		CHECK(after && before && !strcmp(before, after));
		if (after && before && strcmp(before, after))
			fprintf(stderr, "  %s order changed:\n  %s\n  %s\n", finished[i], before,
				after);
		free(after);

		/* A status patch back to pending (a stale run's save). */
		json_t *patch = json_pack("{s:s}", "status", "pending");
		CHECK_RC(db_order_save(fx.db, id, patch), CP_OK);
		json_decref(patch);
		after = order_snapshot(id);
		CHECK(after && strstr(after, finished[i]) && !strstr(after, "\"pending\",\"https"));
		free(after);

		/* The job run again (re-queued, or woken by POST /verify). */
		out = job_run(ctx, id);
		CHECK(out.result == SERVER_JOB_DONE && !out.error[0]);
		after = order_snapshot(id);
		CHECK(after && strstr(after, finished[i]) && strstr(after, "ca/order/1") &&
		      strstr(after, "ca/authz/1"));
		free(after);
		free(before);
		before = NULL;
	}

	/* The control: an order in flight is reset (URLs and authorizations
	 * gone, the key and the attempt count kept). */
	cp_uuid(id);
	CHECK(order_add(id, "validating"));
	CHECK_RC(db_order_reset(fx.db, id), CP_OK);
	after = order_snapshot(id);
	CHECK(after && !strncmp(after, "[\"pending\",null,null,null,null,null,0,", 38));
	CHECK(after && strstr(after, ",[]]") != NULL); /* no authorization left */
	free(after);

	/* No such order: nothing to reset. */
	CHECK_RC(db_order_reset(fx.db, "00000000-0000-4000-8000-00000000dead"), CP_ERR_NOT_FOUND);

	/* A database failure is reported as one, not as a finished order. */
	cp_uuid(id);
	CHECK(order_add(id, "issuing"));
	fx_fail(fx.db, true);
	CHECK(db_order_reset(fx.db, id) != CP_OK);
	CHECK(db_order_reset(fx.db, id) != CP_ERR_CONFLICT);
	fx_fail(fx.db, false);
}

/* A running job leased to JOB_OWNER until lease_until; its id. */
static int64_t job_add(int64_t lease_until)
{
	char *sql = cp_aprintf("INSERT INTO jobs (kind, tenant_id, payload, state, run_at, "
			       "lease_owner, lease_until, created_at, updated_at) VALUES "
			       "('acme_order', '%s', '{}', 'running', 1, '" JOB_OWNER "', %lld, 1, "
			       "1)",
			       tid, (long long)lease_until);
	bool ok = sql && fx_sql(fx.db, sql);

	free(sql);
	return ok ? fx_int(fx.db, "SELECT max(id) FROM jobs") : -1;
}

static int64_t job_lease_until(int64_t id)
{
	char sql[96];

	snprintf(sql, sizeof(sql), "SELECT lease_until FROM jobs WHERE id = %lld", (long long)id);
	return fx_int(fx.db, sql);
}

struct wait_case {
	struct order_run run;
	struct db_job job;
	int64_t delay_ms;
	enum order_step step;
	int64_t took_ms;
};

static void wait_case_init(struct wait_case *w, const struct api_ctx *ctx, int64_t job_id,
			   int64_t retry_after, int64_t delay_ms)
{
	memset(w, 0, sizeof(*w));
	w->job.id = job_id;
	snprintf(w->job.owner, sizeof(w->job.owner), "%s", JOB_OWNER);
	w->run.ctx = ctx;
	w->run.db = fx.db;
	w->run.job = &w->job;
	w->run.id = "order-under-test";
	w->run.tenant_id = tid;
	w->run.r.retry_after = retry_after;
	w->run.retry_after = -1;
	w->run.last_extend_ms = cp_mono_ms() - 25000; /* due for an extension */
	w->delay_ms = delay_ms;
}

static void *wait_case_run(void *p)
{
	struct wait_case *w = p;
	int64_t t0 = cp_mono_ms();

	w->step = order_wait_poll(&w->run, w->delay_ms);
	w->took_ms = cp_mono_ms() - t0;
	return NULL;
}

static void test_wait_never_outlasts_the_lease(const struct api_ctx *ctx)
{
	struct server_workers *workers = NULL;
	struct wait_case w;
	int64_t now, job, t0;
	pthread_t th;

	CHECK(ORDER_WAIT_MAX_MS(ctx->cfg) < (int64_t)ctx->cfg->job_lease_seconds * 1000 / 2);
	now = cp_now();
	job = job_add(now + 5);
	CHECK(job > 0);

	/* Retry-After far past the lease: re-queued for then, at once, not
	 * slept through (the lease is not even touched). */
	wait_case_init(&w, ctx, job, 600, 50);
	wait_case_run(&w);
	CHECK(w.step == ORDER_STEP_WAIT);
	CHECK(w.took_ms < 200);
	CHECK(w.run.run_at >= now + 600 && w.run.run_at <= cp_now() + 601);
	CHECK(job_lease_until(job) == now + 5);

	/* Just over the cap: re-queued too. */
	wait_case_init(&w, ctx, job, ORDER_WAIT_MAX_MS(ctx->cfg) / 1000 + 1, 50);
	wait_case_run(&w);
	CHECK(w.step == ORDER_STEP_WAIT && w.took_ms < 200);
	CHECK(w.run.run_at >= now + ORDER_WAIT_MAX_MS(ctx->cfg) / 1000 + 1);

	/* A short Retry-After is waited out, holding the job, lease extended. */
	wait_case_init(&w, ctx, job, 1, 50);
	wait_case_run(&w);
	CHECK(w.step == ORDER_STEP_DONE);
	CHECK(w.took_ms >= 990 && w.took_ms < 3000);
	CHECK(job_lease_until(job) >= now + ctx->cfg->job_lease_seconds);

	/* No Retry-After: the poll delay. */
	wait_case_init(&w, ctx, job, -1, 120);
	wait_case_run(&w);
	CHECK(w.step == ORDER_STEP_DONE && w.took_ms >= 115 && w.took_ms < 1500);

	/* The lease lost (another worker took the job): the run stops, as a
	 * database failure (retried later), without waiting. */
	CHECK(fx_sql(fx.db, "UPDATE jobs SET lease_owner = 'someone-else'"));
	wait_case_init(&w, ctx, job, -1, 2000);
	wait_case_run(&w);
	CHECK(w.step == ORDER_STEP_BACKOFF && w.took_ms < 1000);
	CHECK(!strcmp(w.run.reason, "internal") && strstr(w.run.detail, "lease"));
	CHECK(fx_sql(fx.db, "UPDATE jobs SET lease_owner = '" JOB_OWNER "'"));

	/* Shutdown: a worker in a 20 s wait gives its job back (due now) as
	 * soon as the workers stop, not after the wait. No db_set_path: the
	 * pool's threads find no database and only idle. */
	CHECK_RC(server_workers_start(ctx, &workers), CP_OK);
	wait_case_init(&w, ctx, job, 20, 50);
	CHECK(pthread_create(&th, NULL, wait_case_run, &w) == 0);
	cp_sleep_ms(300);
	t0 = cp_mono_ms();
	server_workers_stop(workers);
	pthread_join(th, NULL);
	CHECK(cp_mono_ms() - t0 < 2000);
	CHECK(w.step == ORDER_STEP_WAIT);
	CHECK(w.took_ms >= 250 && w.took_ms < 2500);
	CHECK(w.run.run_at <= cp_now());
	/* After the stop no wait begins any more. */
	CHECK(!server_workers_wait(5000));
}

int main(void)
{
	struct cp_config *cfg = NULL;
	struct crypto_keyring *ring = NULL;
	char *err = NULL;

	if (!fx_open(&fx, "order-engine") || !fx_tenant(fx.db, "t", tid) ||
	    cp_config_load(NULL, &cfg, &err) != CP_OK ||
	    crypto_keyring_load(fx.dir, NULL, &ring) != CP_OK) {
		fprintf(stderr, "test_order_engine: setup failed: %s\n", err ? err : "");
		return 1;
	}
	struct api_ctx ctx = { .cfg = cfg, .keyring = ring };

	test_finished_orders_stay_finished(&ctx);
	test_wait_never_outlasts_the_lease(&ctx);

	crypto_keyring_free(ring);
	cp_config_free(cfg);
	free(err);
	fx_close(&fx);
	return check_exit("test_order_engine");
}
