/*
 * jobs.c - the durable job queue. A job is claimed in one write transaction
 * that sets a lease; a worker that dies leaves a lease that expires, after
 * which another worker claims the job again. Because the claim runs under
 * SQLite's one-writer lock, or takes its row FOR UPDATE SKIP LOCKED on
 * PostgreSQL (the two claim statements are the dialect's, db/dialect.c),
 * no job is ever run by two workers at once while its lease is held.
 *
 * Capacity is shared fairly (migration 006): each job belongs to a lane
 * with its own workers, and within a lane the claim serves tenants round
 * robin, never more than the cap of one tenant's jobs at once. The queued
 * and running counts per (lane, tenant) are kept by triggers, so every
 * state change below (and any other) keeps them right by itself.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>

void db_job_clear(struct db_job *job)
{
	if (!job)
		return;
	json_decref(job->payload);
	memset(job, 0, sizeof(*job));
}

/* The lane of each kind, decided by server/workers.c (db_job_set_lanes). */
static _Atomic(db_job_lane_fn) lane_of;

void db_job_set_lanes(db_job_lane_fn fn)
{
	atomic_store(&lane_of, fn);
}

/* Lane of kind: the registered table's answer, else the general lane. */
static const char *job_lane(const char *kind)
{
	db_job_lane_fn fn = atomic_load(&lane_of);
	const char *lane = fn ? fn(kind) : NULL;

	return lane ? lane : DB_JOB_LANE_GENERAL;
}

cp_rc db_job_enqueue(struct db *db, const char *kind, const char *tenant_id, json_t *payload,
		     int64_t run_at, const char *dedupe_key)
{
	static const char sql[] =
		"INSERT INTO jobs (kind, tenant_id, payload, dedupe_key, run_at, created_at, "
		"updated_at, lane) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
		"ON CONFLICT (dedupe_key) DO NOTHING";
	struct db_stmt *st = db_stmt_keyed(db, sql, kind, tenant_id);
	int64_t now = cp_now();
	cp_rc rc;

	assert(db && kind);
	if (!st)
		return CP_ERR_INTERNAL;
	if (payload)
		db_bind_json(st, 3, payload);
	else
		db_bind_text(st, 3, "{}");
	db_bind_text(st, 4, dedupe_key);
	db_bind_int64(st, 5, run_at);
	db_bind_int64(st, 6, now);
	db_bind_int64(st, 7, now);
	db_bind_text(st, 8, job_lane(kind));
	rc = db_exec_stmt(db, st);
	/* Due now: wake the other instances' workers too (at our COMMIT). */
	if (rc == CP_OK && run_at <= now && db_changes(db) == 1)
		rc = db_notify(db, DB_CHANNEL_JOBS, "");
	return rc;
}

cp_rc db_job_relane(struct db *db, const char *kind, const char *lane)
{
	static const char sql[] = "UPDATE jobs SET lane = ?2 WHERE state IN ('queued', 'running') "
				  "AND kind = ?1 AND lane != ?2";
	struct db_stmt *st = db_stmt_keyed(db, sql, kind, lane);

	assert(db && kind && lane);
	if (!st)
		return CP_ERR_INTERNAL;
	return db_exec_stmt(db, st);
}

/* Fill out from a row (id, kind, tenant, payload, attempts) of st. */
static cp_rc job_from_row(struct db_stmt *st, const char *owner, struct db_job *out)
{
	out->id = db_col_int64(st, 0);
	snprintf(out->kind, sizeof(out->kind), "%s", db_col_text(st, 1));
	snprintf(out->tenant_id, sizeof(out->tenant_id), "%s", db_col_text(st, 2));
	out->payload = json_loads(db_col_text(st, 3), 0, NULL);
	out->attempts = db_col_int64(st, 4);
	snprintf(out->owner, sizeof(out->owner), "%s", owner);
	return out->payload ? CP_OK : CP_ERR_INTERNAL;
}

/* Run an UPDATE ... RETURNING job row; CP_ERR_NOT_FOUND when it changed none. */
static cp_rc job_take(struct db *db, struct db_stmt *st, const char *owner, struct db_job *out)
{
	cp_rc rc = CP_ERR_NOT_FOUND;
	int r;

	if (!st)
		return CP_ERR_INTERNAL;
	r = db_step(st);

	if (r == DB_ROW) {
		rc = job_from_row(st, owner, out);
		/* Step to completion so the UPDATE is finished (and, outside a
		 * transaction, committed) before reset: an error there means
		 * the claim did not happen, whatever the first row said. */
		while ((r = db_step(st)) == DB_ROW)
			;
		if (r != DB_DONE) {
			rc = db_rc(db, r);
			if (rc == CP_OK)
				rc = CP_ERR_INTERNAL;
		}
		if (rc != CP_OK) {
			json_decref(out->payload);
			out->payload = NULL;
		}
	} else if (r != DB_DONE) {
		rc = db_rc(db, r);
	}
	db_reset(st);
	return rc;
}

/* The claim statement sql with the lease bound: ?1 owner, ?2 now, ?3 lease
 * seconds. Borrowed; NULL on error (job_take answers CP_ERR_INTERNAL). */
static struct db_stmt *lease_stmt(struct db *db, const char *sql, const char *owner,
				  int lease_seconds, int64_t now)
{
	struct db_stmt *st = db_stmt_keyed(db, sql, owner, NULL);

	if (st) {
		db_bind_int64(st, 2, now);
		db_bind_int64(st, 3, lease_seconds);
	}
	return st;
}

/* A job of lane whose lease expired (its worker died or hung): claim it
 * again. It is still counted as running for its tenant, so the cap does not
 * apply. ?1 owner, ?2 now, ?3 lease seconds, ?4 lane (the dialect's
 * job_claim_expired). */
static cp_rc claim_expired(struct db *db, const char *lane, const char *owner, int lease_seconds,
			   int64_t now, struct db_job *out)
{
	struct db_stmt *st =
		lease_stmt(db, db_dialect(db)->job_claim_expired, owner, lease_seconds, now);

	if (st)
		db_bind_text(st, 4, lane);
	return job_take(db, st, owner, out);
}

/* Run the one-column tenant query sql (?1 lane, ?2 now, ?3 cap) into
 * tenant; CP_ERR_NOT_FOUND when it has no row. */
static cp_rc pick_tenant(struct db *db, const char *sql, const char *lane, int cap, int64_t now,
			 char tenant[CP_UUID_LEN + 1])
{
	struct db_stmt *st = db_stmt_keyed(db, sql, lane, NULL);

	if (st) {
		db_bind_int64(st, 2, now);
		db_bind_int64(st, 3, cap);
	}
	return db_fetch_text(db, st, tenant, CP_UUID_LEN + 1);
}

/*
 * The round-robin pick: the least recently served tenant of the lane that
 * has a job due by now and fewer than cap running (its earliest due job is
 * then claim_queued's). Two index ranges find the tenant, idle tenants
 * being in neither:
 * - the PICK_WINDOW least recently served tenants with queued work
 *   (job_tenants_rr): usually the first of them is due and under the cap;
 * - if none of those is, every tenant with work due by now
 *   (job_tenants_due), sorted by last_served.
 * The answer is the same either way (a qualifying tenant served earlier
 * than the window's end would be in the window), and the cost is bounded
 * by the window or by the tenants with due work, never by the jobs.
 * INDEXED BY pins the plans measured by tests/bench/job_claim.sh on SQLite,
 * which refuses the statement rather than scan if an index is gone
 * (DB_PINNED; PostgreSQL plans by itself). Both engines require the derived
 * table's alias.
 */
#define PICK_WINDOW "64"
/* clang-format off */
#define PICK_LRU(pin)                                                                         \
	"SELECT tenant_id FROM (SELECT tenant_id, next_run_at, running, last_served "         \
	"FROM job_tenants" pin " WHERE lane = ?1 AND queued > 0 "                             \
	"ORDER BY last_served LIMIT " PICK_WINDOW ") AS w "                                   \
	"WHERE next_run_at <= ?2 AND running < ?3 ORDER BY last_served LIMIT 1"
#define PICK_DUE(pin)                                                                         \
	"SELECT tenant_id FROM job_tenants" pin " "                                           \
	"WHERE lane = ?1 AND queued > 0 AND next_run_at <= ?2 AND running < ?3 "              \
	"ORDER BY last_served LIMIT 1"
/* clang-format on */
static cp_rc claim_pick(struct db *db, const char *lane, int cap, int64_t now,
			char tenant[CP_UUID_LEN + 1])
{
	static const char *const lru[2] = DB_PINNED(PICK_LRU, "job_tenants_rr");
	static const char *const due[2] = DB_PINNED(PICK_DUE, "job_tenants_due");
	cp_rc rc = pick_tenant(db, db_pinned(db, lru), lane, cap, now, tenant);

	if (rc == CP_ERR_NOT_FOUND)
		rc = pick_tenant(db, db_pinned(db, due), lane, cap, now, tenant);
	return rc;
}

/* Lease the picked tenant's earliest due queued job (jobs_lane_tenant_due,
 * one probe; the trigger moves it from queued to running in job_tenants):
 * the dialect's job_claim_queued, ?4 lane, ?5 tenant. No row, although
 * next_run_at promised one, is CP_ERR_BUSY: on SQLite it cannot happen
 * (the counts are kept by triggers under the one writer), on PostgreSQL
 * the due jobs were taken by claims of other workers after the pick (or
 * are locked by them, SKIP LOCKED), and the claim is worth trying again at
 * once. */
static cp_rc claim_queued(struct db *db, const char *lane, const char *tenant, const char *owner,
			  int lease_seconds, int64_t now, struct db_job *out)
{
	struct db_stmt *st =
		lease_stmt(db, db_dialect(db)->job_claim_queued, owner, lease_seconds, now);
	cp_rc rc;

	if (st) {
		db_bind_text(st, 4, lane);
		db_bind_text(st, 5, tenant);
	}
	rc = job_take(db, st, owner, out);
	return rc == CP_ERR_NOT_FOUND ? CP_ERR_BUSY : rc;
}

/* Stamp tenant as served last in lane: the next claim in the lane looks
 * at every other waiting tenant first. */
static cp_rc claim_mark_served(struct db *db, const char *lane, const char *tenant)
{
	/* job_lanes.served: unqualified, PostgreSQL finds it ambiguous with
	 * the excluded row's. */
	static const char bump[] = "INSERT INTO job_lanes (lane, served) VALUES (?1, 1) "
				   "ON CONFLICT (lane) DO UPDATE SET served = job_lanes.served + 1 "
				   "RETURNING served";
	static const char mark[] = "UPDATE job_tenants SET last_served = ?3 "
				   "WHERE lane = ?1 AND tenant_id = ?2";
	struct db_stmt *st = db_stmt(db, bump);
	int64_t served = 0;
	int r;

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, lane);
	r = db_step(st);
	if (r == DB_ROW)
		served = db_col_int64(st, 0);
	while (r == DB_ROW)
		r = db_step(st);
	db_reset(st);
	if (r != DB_DONE)
		return db_rc(db, r);
	st = db_stmt(db, mark);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, lane);
	db_bind_text(st, 2, tenant);
	db_bind_int64(st, 3, served);
	return db_exec_stmt(db, st);
}

cp_rc db_job_claim(struct db *db, const char *lane, int tenant_cap, const char *owner,
		   int lease_seconds, struct db_job *out)
{
	char tenant[CP_UUID_LEN + 1] = "";
	int64_t now = cp_now();
	cp_rc rc;

	assert(db && out);
	assert(lane && owner && tenant_cap > 0);
	memset(out, 0, sizeof(*out));
	/* One write transaction. On PostgreSQL the tenant pick reads without
	 * locks (READ COMMITTED), and the job row is taken FOR UPDATE SKIP
	 * LOCKED: concurrent claims never take one job twice, but two of them
	 * may both pass one tenant's cap check (the cap is exact only under
	 * SQLite's one writer). */
	rc = db_begin(db);
	if (rc != CP_OK)
		return rc;
	rc = claim_expired(db, lane, owner, lease_seconds, now, out);
	if (rc == CP_ERR_NOT_FOUND) {
		rc = claim_pick(db, lane, tenant_cap, now, tenant);
		if (rc == CP_OK)
			rc = claim_queued(db, lane, tenant, owner, lease_seconds, now, out);
	} else if (rc == CP_OK) {
		snprintf(tenant, sizeof(tenant), "%s", out->tenant_id);
	}
	if (rc == CP_OK)
		rc = claim_mark_served(db, lane, tenant);
	if (rc == CP_OK)
		rc = db_commit(db);
	if (rc != CP_OK) {
		db_rollback(db);
		db_job_clear(out);
	}
	return rc;
}

/* Run one of the owner-checked state changes below: ?1 id, ?2 owner,
 * ?3 a time or duration, ?4 an error text, ?5 now (unused ones are ignored). */
static cp_rc job_update(struct db *db, const char *sql, int64_t id, const char *owner, int64_t t,
			const char *error)
{
	struct db_stmt *st = db_stmt(db, sql);
	cp_rc rc;

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 1, id);
	db_bind_text(st, 2, owner);
	db_bind_int64(st, 3, t);
	db_bind_text(st, 4, error);
	db_bind_int64(st, 5, cp_now());
	rc = db_exec_stmt(db, st);
	if (rc == CP_OK && db_changes(db) == 0)
		rc = CP_ERR_CONFLICT; /* the lease was lost to another worker */
	return rc;
}

cp_rc db_job_extend(struct db *db, int64_t id, const char *owner, int lease_seconds)
{
	/* The casts type ?5 and ?3 for PostgreSQL (unknown + unknown). */
	static const char sql[] =
		"UPDATE jobs SET lease_until = CAST(?5 AS BIGINT) + CAST(?3 AS BIGINT), "
		"updated_at = ?5 WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'";

	assert(db && owner);
	return job_update(db, sql, id, owner, lease_seconds, NULL);
}

cp_rc db_job_done(struct db *db, int64_t id, const char *owner)
{
	assert(db && owner);

	/* dedupe_key is dropped so that a later job with the same key can run. */
	static const char sql[] = "UPDATE jobs SET state = 'done', lease_owner = NULL, "
				  "lease_until = NULL, dedupe_key = NULL, updated_at = ?5 "
				  "WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'";
	return job_update(db, sql, id, owner, 0, NULL);
}

cp_rc db_job_retry(struct db *db, int64_t id, const char *owner, int64_t run_at, const char *error)
{
	static const char sql[] =
		"UPDATE jobs SET state = 'queued', lease_owner = NULL, "
		"lease_until = NULL, run_at = ?3, last_error = ?4, updated_at = ?5 "
		"WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'";

	assert(db && owner);
	return job_update(db, sql, id, owner, run_at, error);
}

cp_rc db_job_fail(struct db *db, int64_t id, const char *owner, const char *error)
{
	static const char sql[] = "UPDATE jobs SET state = 'failed', lease_owner = NULL, "
				  "lease_until = NULL, dedupe_key = NULL, last_error = ?4, "
				  "updated_at = ?5 "
				  "WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'";

	assert(db && owner);
	return job_update(db, sql, id, owner, 0, error);
}

cp_rc db_job_release_owner(struct db *db, const char *owner)
{
	static const char sql[] = "UPDATE jobs SET state = 'queued', lease_owner = NULL, "
				  "lease_until = NULL, "
				  "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END "
				  "WHERE lease_owner = ? AND state = 'running'";
	struct db_stmt *st = db_stmt(db, sql);

	assert(db && owner);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, owner);
	return db_exec_stmt(db, st);
}

cp_rc db_job_stats(struct db *db, json_t **out)
{
	/* Maintained counts (migration 012), not a GROUP BY over every job. */
	static const char sql[] = "SELECT k1, k2, n FROM metric_counts "
				  "WHERE family = 'jobs' AND k2 != 'done'";
	struct db_stmt *st = db_stmt(db, sql);
	json_t *o = json_object();
	int r;

	assert(db && out);
	if (!st || !o) {
		json_decref(o);
		return CP_ERR_INTERNAL;
	}
	while ((r = db_step(st)) == DB_ROW) {
		const char *kind = db_col_text(st, 0);
		json_t *k = json_object_get(o, kind);
		if (!k) {
			k = json_pack("{s:i,s:i,s:i}", "queued", 0, "running", 0, "failed", 0);
			json_object_set_new(o, kind, k);
		}
		json_object_set_new(k, db_col_text(st, 1), json_integer(db_col_int64(st, 2)));
	}
	db_reset(st);
	if (r != DB_DONE) {
		json_decref(o);
		return db_rc(db, r);
	}
	*out = o;
	return CP_OK;
}

cp_rc db_job_recover_orphans(struct db *db)
{
	static const char sql[] = "UPDATE jobs SET state = 'queued', lease_owner = NULL, "
				  "lease_until = NULL WHERE state = 'running'";
	struct db_stmt *st = db_stmt(db, sql);
	cp_rc rc;

	assert(db);
	if (!st)
		return CP_ERR_INTERNAL;
	rc = db_exec_stmt(db, st);
	if (rc == CP_OK && db_changes(db) > 0)
		cp_logf(CP_LOG_INFO, "job.recover",
			"requeued %" PRId64 " jobs of a previous process", db_changes(db));
	return rc;
}

cp_rc db_job_prune(struct db *db, int64_t cutoff, int limit, int *deleted)
{
	/* A bounded batch on the partial index jobs_finished (migration 008):
	 * a tick never holds the write lock for long, whatever the backlog.
	 * Pinned on SQLite (DB_PINNED): left to itself, its planner takes
	 * jobs_due and sorts. */
#define JOB_PRUNE(pin)                                                                             \
	"DELETE FROM jobs WHERE id IN (SELECT id FROM jobs" pin " WHERE "                          \
	"state IN ('done', 'failed') AND updated_at < ?1 ORDER BY updated_at LIMIT ?2)"
	static const char *const sql[2] = DB_PINNED(JOB_PRUNE, "jobs_finished");

	return db_delete_batch(db, db_pinned(db, sql), cutoff, limit, deleted);
}
