/*
 * workers.c - the worker pool and the scheduler.
 *
 * Workers claim due jobs from the jobs table with a lease and run the
 * handler registered for the job's kind. Each lane (job_kinds says which
 * kind runs where) has its own workers, and a claim serves the lane's
 * tenants round robin with a cap on each one's running jobs (db/jobs.c).
 * The handler's outcome (done, retry at a time, failed) is written back
 * under the same lease. The scheduler
 * thread runs periodic tasks (renewals due, expiry reminders, housekeeping)
 * every scheduler_interval_seconds; those tasks only enqueue jobs, so every
 * piece of real work is durable and survives a crash.
 */
#include "claims/claims.h"
#include "server/server_internal.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How long a claim is valid; long jobs extend it with db_job_extend. */

/* The waits of running jobs (server_workers_wait): a condition, so that
 * server_workers_stop ends every one at once rather than after its sleep.
 * On the monotonic clock: a wall-clock step never stretches a wait past
 * the lease. */
static pthread_mutex_t wait_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wait_cond;
static pthread_once_t wait_once = PTHREAD_ONCE_INIT;
static bool wait_stopping;

static void wait_init(void)
{
	pthread_condattr_t a;

	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(&wait_cond, &a);
	pthread_condattr_destroy(&a);
}

static void wait_set_stopping(bool stopping)
{
	pthread_once(&wait_once, wait_init);
	pthread_mutex_lock(&wait_lock);
	wait_stopping = stopping;
	pthread_cond_broadcast(&wait_cond);
	pthread_mutex_unlock(&wait_lock);
}

bool server_workers_wait(int64_t ms)
{
	struct timespec until;
	bool stopping;

	pthread_once(&wait_once, wait_init);
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)(ms / 1000);
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&wait_lock);
	while (!wait_stopping && ms > 0)
		if (pthread_cond_timedwait(&wait_cond, &wait_lock, &until) != 0)
			break; /* the time is up (ETIMEDOUT) */
	stopping = wait_stopping;
	pthread_mutex_unlock(&wait_lock);
	return !stopping;
}

/* Housekeeping: idempotency records live 24 hours. */
static void tick_purge_idempotency(const struct api_ctx *ctx, struct db *db)
{
	(void)ctx;
	if (db_idem_purge(db, cp_now() - 86400) != CP_OK)
		cp_logf(CP_LOG_WARN, "scheduler.purge", "idempotency purge failed");
}

/* Housekeeping: finished jobs and webhook deliveries (with their attempts)
 * older than job_retention_days go, a bounded batch a tick on an index. */
#define PRUNE_BATCH 5000
static void tick_prune_jobs(const struct api_ctx *ctx, struct db *db)
{
	int64_t cutoff = cp_now() - (int64_t)ctx->cfg->job_retention_days * 86400;
	int n = 0;

	if (db_job_prune(db, cutoff, PRUNE_BATCH, &n) != CP_OK ||
	    db_webhook_prune(db, cutoff, PRUNE_BATCH, &n) != CP_OK)
		cp_logf(CP_LOG_WARN, "scheduler.prune", "job or delivery prune failed");
}

/* Housekeeping: the edge feed keeps each hostname's last row; an older one
 * goes once the row that superseded it is an hour old, so a reader less
 * than an hour behind still sees every change, and one further behind
 * each hostname's state now (db_edge_feed_compact). The sweep's cursor is
 * this process's: only the scheduler thread of the lease holder runs it. */
#define FEED_COMPACT_AGE 3600
static void tick_compact_edge_feed(const struct api_ctx *ctx, struct db *db)
{
	static int64_t cursor;
	int n = 0;

	(void)ctx;
	if (db_edge_feed_compact(db, cp_now() - FEED_COMPACT_AGE, PRUNE_BATCH, &cursor, &n) !=
	    CP_OK)
		cp_logf(CP_LOG_WARN, "scheduler.prune", "edge feed compaction failed");
}

/*
 * Job kinds, their handlers and their lanes: the one table that decides
 * which pool of workers runs a kind. Webhook deliveries wait on receivers
 * the tenant controls, so they get a lane of their own and never hold the
 * workers that run ACME orders. A kind listed without a lane (NULL) runs in
 * the general lane.
 */
#define LANE_ACME "acme"
#define LANE_WEBHOOK "webhook"
static const struct {
	const char *kind;
	server_job_fn fn;
	const char *lane;
} job_kinds[] = {
	{ "webhook_delivery", server_job_webhook_delivery, LANE_WEBHOOK },
	{ "acme_order", server_job_acme_order, LANE_ACME },
	{ CLAIMS_JOB_KIND, server_job_hostname_verify, LANE_ACME },
	{ DB_REVOKE_JOB_KIND, server_job_certificate_revoke, LANE_ACME },
	{ DB_EDGE_CHECK_JOB, server_job_edge_check, NULL },
	/* JOB KINDS: { "kind", handler, lane (NULL = general) }, */
	{ NULL, NULL, NULL },
};

/* The lanes and the config key that sizes each one's pool. */
static const struct lane_def {
	const char *name;
	size_t workers_offset; /* offsetof(struct cp_config, <int>) */
} lanes[] = {
	{ LANE_ACME, offsetof(struct cp_config, workers) },
	{ LANE_WEBHOOK, offsetof(struct cp_config, webhook_workers) },
	{ DB_JOB_LANE_GENERAL, offsetof(struct cp_config, general_workers) },
};

static int lane_workers(const struct cp_config *cfg, const struct lane_def *l)
{
	return *(const int *)((const char *)cfg + l->workers_offset);
}

/* At most tenant_max_running_jobs of one tenant at once, and never more
 * than half the lane's workers, so that a second tenant always finds one. */
static int lane_tenant_cap(const struct cp_config *cfg, const struct lane_def *l)
{
	int half = lane_workers(cfg, l) / 2;

	if (half < 1)
		half = 1;
	return cfg->tenant_max_running_jobs < half ? cfg->tenant_max_running_jobs : half;
}

/* db_job_lane_fn over job_kinds. */
static const char *job_lane(const char *kind)
{
	for (size_t i = 0; job_kinds[i].kind; i++)
		if (strcmp(job_kinds[i].kind, kind) == 0)
			return job_kinds[i].lane;
	return NULL;
}

/* Periodic housekeeping: run by the one instance that holds the
 * housekeeping lease (issue 11), so that N instances do not send N
 * reminders. Renewals (server_tick_renew) are leaderless: any instance
 * claims due certificates. */
static const server_tick_fn ticks[] = {
	tick_purge_idempotency,	     tick_prune_jobs,	      server_tick_cert_reminders,
	server_tick_hostname_claims, server_tick_dcv_cleanup, tick_compact_edge_feed,
	/* TICKS */
};

#define HOUSEKEEPING_LEASE "housekeeping"

struct server_workers {
	const struct api_ctx *ctx;
	pthread_t *threads;
	int n;
	pthread_t scheduler;
	bool scheduler_started;
	atomic_bool stop;
	char owner_base[48];
	bool leading; /* holds the housekeeping lease (scheduler thread only) */
};

/* Instances that beat within the lease's time, this one included. */
static atomic_int instances_live = 1;

int server_instances_live(void)
{
	int n = atomic_load(&instances_live);

	return n > 1 ? n : 1;
}

/* Heartbeats and the housekeeping lease are renewed every BEAT_SECONDS,
 * whatever the scheduler's interval; an instance is live, and a lease held,
 * for LIVE_SECONDS after its last beat, so a dead leader hands over within
 * that (one that stops cleanly at once: scheduler_leave). */
#define BEAT_SECONDS 5
#define LIVE_SECONDS 15

/* Beat for this instance and take or keep the housekeeping lease: whether
 * this instance leads housekeeping until the next beat. */
static bool scheduler_lead(struct server_workers *w, struct db *db)
{
	const int ttl = LIVE_SECONDS;
	char host[64] = "?";
	bool held = false;
	int live = 1;

	if (gethostname(host, sizeof(host) - 1) != 0)
		snprintf(host, sizeof(host), "?");
	if (db_instance_beat(db, w->owner_base, host, (int)getpid()) != CP_OK)
		cp_logf(CP_LOG_WARN, "instance.beat", "could not record this instance's heartbeat");
	/* A file has one process by construction (the data-dir lock): a row
	 * left by a killed predecessor must not halve this one's limits. */
	if (db_target_is_file(w->ctx->cfg->database))
		atomic_store(&instances_live, 1);
	else if (db_instances_live(db, ttl, &live) == CP_OK)
		atomic_store(&instances_live, live > 1 ? live : 1);
	if (db_lease_hold(db, HOUSEKEEPING_LEASE, w->owner_base, ttl, &held) != CP_OK)
		cp_logf(CP_LOG_WARN, "housekeeping.lease", "could not take or renew the lease");
	if (held != w->leading)
		cp_log_json(CP_LOG_INFO, "housekeeping.lease",
			    json_pack("{s:s,s:s}", "instance", w->owner_base, "now",
				      held ? "leading" : "following"));
	w->leading = held;
	return held;
}

/* At a clean stop: hand the lease over now rather than when it lapses. */
static void scheduler_leave(struct server_workers *w, struct db *db)
{
	if (w->leading && db_lease_release(db, HOUSEKEEPING_LEASE, w->owner_base) != CP_OK)
		cp_logf(CP_LOG_WARN, "housekeeping.lease", "could not release the lease");
	if (db_instance_gone(db, w->owner_base) != CP_OK)
		cp_logf(CP_LOG_WARN, "instance.beat", "could not remove this instance");
}

struct worker_arg {
	struct server_workers *w;
	const struct lane_def *lane;
	int index;
};

static server_job_fn job_handler(const char *kind)
{
	for (size_t i = 0; job_kinds[i].kind; i++)
		if (strcmp(job_kinds[i].kind, kind) == 0)
			return job_kinds[i].fn;
	return NULL;
}

/* Run one claimed job and record its outcome under its lease. */
static void run_job(struct server_workers *w, struct db *db, struct db_job *job)
{
	struct server_job_outcome out = { .result = SERVER_JOB_FAIL };
	server_job_fn fn = job_handler(job->kind);
	int64_t t0 = cp_mono_ms();
	cp_rc rc;

	if (fn)
		fn(w->ctx, db, job, &out);
	else
		snprintf(out.error, sizeof(out.error), "no handler for job kind %s", job->kind);
	switch (out.result) {
	case SERVER_JOB_DONE:
		rc = db_job_done(db, job->id, job->owner);
		break;
	case SERVER_JOB_RETRY:
		rc = db_job_retry(db, job->id, job->owner, out.run_at, out.error);
		break;
	default:
		rc = db_job_fail(db, job->id, job->owner, out.error);
		break;
	}
	cp_log_json(CP_LOG_INFO, "job.run",
		    json_pack("{s:I,s:s,s:i,s:s,s:I,s:s?}", "job_id", (json_int_t)job->id, "kind",
			      job->kind, "attempt", job->attempts, "result",
			      out.result == SERVER_JOB_DONE    ? "done"
			      : out.result == SERVER_JOB_RETRY ? "retry"
							       : "failed",
			      "duration_ms", (json_int_t)(cp_mono_ms() - t0), "error",
			      out.error[0] ? out.error : NULL));
	if (rc != CP_OK)
		cp_logf(CP_LOG_WARN, "job.lease", "job %lld outcome not recorded: %s",
			(long long)job->id, cp_rc_str(rc));
}

static void *worker_main(void *p)
{
	struct worker_arg *arg = p;
	struct server_workers *w = arg->w;
	const char *lane = arg->lane->name;
	int cap = lane_tenant_cap(w->ctx->cfg, arg->lane);
	char owner[64];
	struct db *db;

	snprintf(owner, sizeof(owner), "%s/%s/%d", w->owner_base, lane, arg->index);
	free(arg);
	while (!atomic_load(&w->stop)) {
		struct db_job job;
		cp_rc rc;
		db = db_thread();
		if (!db) {
			cp_kick_wait(1000);
			continue;
		}
		rc = db_job_claim(db, lane, cap, owner, w->ctx->cfg->job_lease_seconds, &job);
		if (rc == CP_OK) {
			run_job(w, db, &job);
			/* Never leave a transaction open on the thread's
			 * connection for the next job: a handler that did is a
			 * bug, rolled back loudly. */
			if (db_in_tx(db)) {
				cp_logf(CP_LOG_ERROR, "job.tx_left_open",
					"a %s job left a transaction open", job.kind);
				db_rollback(db);
				assert(!"a job left a transaction open");
			}
			db_job_clear(&job);
			continue;
		}
		if (rc != CP_ERR_NOT_FOUND && rc != CP_ERR_BUSY)
			cp_logf(CP_LOG_WARN, "job.claim", "claim failed: %s", cp_rc_str(rc));
		/* Nothing may run now (none due, or only tenants at their cap,
		 * whose own workers claim again as they finish): sleep until
		 * kicked (a job was queued) or for a second. */
		cp_kick_wait(rc == CP_ERR_BUSY ? 50 : 1000);
	}
	db = db_thread();
	if (db && db_job_release_owner(db, owner) != CP_OK)
		cp_logf(CP_LOG_WARN, "job.release", "could not release leases of %s", owner);
	db_thread_close();
	return NULL;
}

/* Jobs queued before the lanes were set (by an older binary, or by the API
 * between its start and ours) move to the lane of their kind. */
static void relane_jobs(struct db *db)
{
	for (size_t i = 0; job_kinds[i].kind; i++)
		if (db_job_relane(db, job_kinds[i].kind,
				  job_kinds[i].lane ? job_kinds[i].lane : DB_JOB_LANE_GENERAL) !=
		    CP_OK)
			cp_logf(CP_LOG_WARN, "job.lane", "could not re-lane %s jobs",
				job_kinds[i].kind);
}

static void *scheduler_main(void *p)
{
	struct server_workers *w = p;
	int interval_ms = w->ctx->cfg->scheduler_interval_seconds * 1000;
	int64_t next_all = 0, next_beat = 0;

	if (db_thread())
		relane_jobs(db_thread());
	while (!atomic_load(&w->stop)) {
		struct db *db = db_thread();
		if (db && cp_now() >= next_beat) {
			scheduler_lead(w, db);
			next_beat = cp_now() + BEAT_SECONDS;
		}
		if (db && cp_now() >= next_all) {
			if (w->leading)
				for (size_t i = 0; i < CP_ARRAY_LEN(ticks); i++)
					ticks[i](w->ctx, db);
			server_tick_renew(w->ctx, db);
			next_all = cp_now() + w->ctx->cfg->scheduler_interval_seconds;
		} else if (db && server_renew_backlog()) {
			server_tick_renew(w->ctx, db); /* a backlog: renewals only */
		}
		/* Wake in small steps so that shutdown is prompt; within a second
		 * while due renewals remain unread. */
		int wait_ms = server_renew_backlog() && interval_ms > 1000 ? 1000 : interval_ms;
		if (wait_ms > BEAT_SECONDS * 1000)
			wait_ms = BEAT_SECONDS * 1000; /* the next beat is due by then */
		for (int slept = 0; slept < wait_ms && !atomic_load(&w->stop); slept += 200)
			usleep(200 * 1000);
	}
	if (db_thread())
		scheduler_leave(w, db_thread());
	db_thread_close();
	return NULL;
}

static char instance_id[48];
static pthread_once_t instance_once = PTHREAD_ONCE_INIT;

/* A fresh name per process: leases of a crashed process are never mistaken
 * for ours, they simply lapse. */
static void instance_id_init(void)
{
	uint8_t b[4] = { 0 };
	char rnd[9];

	if (cp_random(b, sizeof(b)) != CP_OK) {
		/* the pid and the time still tell processes apart on one host */
		uint32_t t = (uint32_t)cp_now();
		memcpy(b, &t, sizeof(b));
	}
	cp_hex(b, sizeof(b), rnd);
	snprintf(instance_id, sizeof(instance_id), "pid%d-%s", (int)getpid(), rnd);
}

const char *server_instance_id(void)
{
	pthread_once(&instance_once, instance_id_init);
	return instance_id;
}

cp_rc server_workers_start(const struct api_ctx *ctx, struct server_workers **out)
{
	struct server_workers *w = calloc(1, sizeof(*w));
	int total = 0;

	if (!w)
		return CP_ERR_NOMEM;
	w->ctx = ctx;
	atomic_init(&w->stop, false);
	wait_set_stopping(false);
	snprintf(w->owner_base, sizeof(w->owner_base), "%s", server_instance_id());
	db_job_set_lanes(job_lane);
	for (size_t l = 0; l < CP_ARRAY_LEN(lanes); l++)
		total += lane_workers(ctx->cfg, &lanes[l]);
	w->threads = calloc((size_t)total, sizeof(pthread_t));
	if (!w->threads) {
		free(w);
		return CP_ERR_NOMEM;
	}
	for (size_t l = 0; l < CP_ARRAY_LEN(lanes); l++) {
		for (int i = 0; i < lane_workers(ctx->cfg, &lanes[l]); i++) {
			struct worker_arg *arg = malloc(sizeof(*arg));
			if (!arg)
				break;
			arg->w = w;
			arg->lane = &lanes[l];
			arg->index = i;
			if (pthread_create(&w->threads[w->n], NULL, worker_main, arg) != 0) {
				free(arg);
				break;
			}
			w->n++;
		}
	}
	w->scheduler_started = pthread_create(&w->scheduler, NULL, scheduler_main, w) == 0;
	*out = w;
	return CP_OK;
}

void server_workers_stop(struct server_workers *w)
{
	if (!w)
		return;
	atomic_store(&w->stop, true);
	wait_set_stopping(true); /* jobs waiting on a CA give their job back now */
	cp_kick();
	for (int i = 0; i < w->n; i++)
		pthread_join(w->threads[i], NULL);
	if (w->scheduler_started)
		pthread_join(w->scheduler, NULL);
	cp_logf(CP_LOG_INFO, "workers.stopped", "%d workers stopped", w->n);
	free(w->threads);
	free(w);
}
