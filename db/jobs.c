/*
 * jobs.c - the durable job queue. A job is claimed in one write statement
 * that sets a lease; a worker that dies leaves a lease that expires, after
 * which another worker claims the job again. Because the claim is a single
 * UPDATE ... RETURNING under SQLite's one-writer lock (and would be
 * FOR UPDATE SKIP LOCKED on PostgreSQL), no job is ever run by two workers
 * at once while its lease is held.
 */
#include "db/db_internal.h"

#include <string.h>

void db_job_clear(struct db_job *job)
{
	if (!job)
		return;
	json_decref(job->payload);
	memset(job, 0, sizeof(*job));
}

cp_rc db_job_enqueue(struct db *db, const char *kind, const char *tenant_id, json_t *payload,
		     int64_t run_at, const char *dedupe_key)
{
	static const char sql[] =
		"INSERT INTO jobs (kind, tenant_id, payload, dedupe_key, run_at, created_at, "
		"updated_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING";
	sqlite3_stmt *st = db_stmt(db, sql);
	int64_t now = cp_now();

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, kind);
	db_bind_text(st, 2, tenant_id);
	if (payload)
		db_bind_json(st, 3, payload);
	else
		db_bind_text(st, 3, "{}");
	db_bind_text(st, 4, dedupe_key);
	sqlite3_bind_int64(st, 5, run_at);
	sqlite3_bind_int64(st, 6, now);
	sqlite3_bind_int64(st, 7, now);
	return db_exec_stmt(db, st);
}

cp_rc db_job_claim(struct db *db, const char *owner, int lease_seconds, struct db_job *out)
{
	static const char sql[] =
		"UPDATE jobs SET state = 'running', lease_owner = ?1, lease_until = ?2 + ?3, "
		"attempts = attempts + 1, updated_at = ?2 "
		"WHERE id = (SELECT id FROM jobs WHERE (state = 'queued' AND run_at <= ?2) "
		"OR (state = 'running' AND lease_until < ?2) ORDER BY run_at, id LIMIT 1) "
		"RETURNING id, kind, coalesce(tenant_id, ''), payload, attempts";
	sqlite3_stmt *st = db_stmt(db, sql);
	cp_rc rc = CP_ERR_NOT_FOUND;
	int r;

	memset(out, 0, sizeof(*out));
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, owner);
	sqlite3_bind_int64(st, 2, cp_now());
	sqlite3_bind_int(st, 3, lease_seconds);
	r = sqlite3_step(st);
	if (r == SQLITE_ROW) {
		out->id = sqlite3_column_int64(st, 0);
		snprintf(out->kind, sizeof(out->kind), "%s", (const char *)sqlite3_column_text(st, 1));
		snprintf(out->tenant_id, sizeof(out->tenant_id), "%s",
			 (const char *)sqlite3_column_text(st, 2));
		out->payload = json_loads((const char *)sqlite3_column_text(st, 3), 0, NULL);
		out->attempts = sqlite3_column_int(st, 4);
		snprintf(out->owner, sizeof(out->owner), "%s", owner);
		rc = out->payload ? CP_OK : CP_ERR_INTERNAL;
		/* Step to completion so the UPDATE is finished (and, outside a
		 * transaction, committed) before reset: an error there means
		 * the claim did not happen, whatever the first row said. */
		while ((r = sqlite3_step(st)) == SQLITE_ROW)
			;
		if (r != SQLITE_DONE) {
			rc = db_rc(db, r);
			if (rc == CP_OK)
				rc = CP_ERR_INTERNAL;
		}
		if (rc != CP_OK) {
			json_decref(out->payload);
			out->payload = NULL;
		}
	} else if (r != SQLITE_DONE) {
		rc = db_rc(db, r);
	}
	sqlite3_reset(st);
	return rc;
}

/* Run one of the owner-checked state changes below: ?1 id, ?2 owner,
 * ?3 a time or duration, ?4 an error text, ?5 now (unused ones are ignored). */
static cp_rc job_update(struct db *db, const char *sql, int64_t id, const char *owner,
			int64_t t, const char *error)
{
	sqlite3_stmt *st = db_stmt(db, sql);
	cp_rc rc;

	if (!st)
		return CP_ERR_INTERNAL;
	sqlite3_bind_int64(st, 1, id);
	db_bind_text(st, 2, owner);
	sqlite3_bind_int64(st, 3, t);
	db_bind_text(st, 4, error);
	sqlite3_bind_int64(st, 5, cp_now());
	rc = db_exec_stmt(db, st);
	if (rc == CP_OK && sqlite3_changes(db->h) == 0)
		rc = CP_ERR_CONFLICT; /* the lease was lost to another worker */
	return rc;
}

cp_rc db_job_extend(struct db *db, int64_t id, const char *owner, int lease_seconds)
{
	static const char sql[] = "UPDATE jobs SET lease_until = ?5 + ?3, updated_at = ?5 "
				  "WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'";
	return job_update(db, sql, id, owner, lease_seconds, NULL);
}

cp_rc db_job_done(struct db *db, int64_t id, const char *owner)
{
	/* dedupe_key is dropped so that a later job with the same key can run. */
	static const char sql[] = "UPDATE jobs SET state = 'done', lease_owner = NULL, "
				  "lease_until = NULL, dedupe_key = NULL, updated_at = ?5 "
				  "WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'";
	return job_update(db, sql, id, owner, 0, NULL);
}

cp_rc db_job_retry(struct db *db, int64_t id, const char *owner, int64_t run_at, const char *error)
{
	static const char sql[] = "UPDATE jobs SET state = 'queued', lease_owner = NULL, "
				  "lease_until = NULL, run_at = ?3, last_error = ?4, updated_at = ?5 "
				  "WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'";
	return job_update(db, sql, id, owner, run_at, error);
}

cp_rc db_job_fail(struct db *db, int64_t id, const char *owner, const char *error)
{
	static const char sql[] = "UPDATE jobs SET state = 'failed', lease_owner = NULL, "
				  "lease_until = NULL, dedupe_key = NULL, last_error = ?4, "
				  "updated_at = ?5 "
				  "WHERE id = ?1 AND lease_owner = ?2 AND state = 'running'";
	return job_update(db, sql, id, owner, 0, error);
}

cp_rc db_job_release_owner(struct db *db, const char *owner)
{
	static const char sql[] = "UPDATE jobs SET state = 'queued', lease_owner = NULL, "
				  "lease_until = NULL, attempts = max(attempts - 1, 0) "
				  "WHERE lease_owner = ? AND state = 'running'";
	sqlite3_stmt *st = db_stmt(db, sql);

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, owner);
	return db_exec_stmt(db, st);
}

int64_t db_job_next_due(struct db *db)
{
	static const char sql[] =
		"SELECT min(CASE state WHEN 'queued' THEN run_at ELSE lease_until END) FROM jobs "
		"WHERE state IN ('queued', 'running')";
	sqlite3_stmt *st = db_stmt(db, sql);
	int64_t when = -1, now = cp_now();

	if (!st)
		return -1;
	if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
		when = sqlite3_column_int64(st, 0);
	sqlite3_reset(st);
	if (when < 0)
		return -1;
	return when <= now ? 0 : when - now;
}

cp_rc db_job_stats(struct db *db, json_t **out)
{
	static const char sql[] = "SELECT kind, state, count(*) FROM jobs "
				  "WHERE state != 'done' GROUP BY kind, state";
	sqlite3_stmt *st = db_stmt(db, sql);
	json_t *o = json_object();
	int r;

	if (!st || !o) {
		json_decref(o);
		return CP_ERR_INTERNAL;
	}
	while ((r = sqlite3_step(st)) == SQLITE_ROW) {
		const char *kind = (const char *)sqlite3_column_text(st, 0);
		json_t *k = json_object_get(o, kind);
		if (!k) {
			k = json_pack("{s:i,s:i,s:i}", "queued", 0, "running", 0, "failed", 0);
			json_object_set_new(o, kind, k);
		}
		json_object_set_new(k, (const char *)sqlite3_column_text(st, 1),
				    json_integer(sqlite3_column_int64(st, 2)));
	}
	sqlite3_reset(st);
	if (r != SQLITE_DONE) {
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
	sqlite3_stmt *st = db_stmt(db, sql);
	cp_rc rc;

	if (!st)
		return CP_ERR_INTERNAL;
	rc = db_exec_stmt(db, st);
	if (rc == CP_OK && sqlite3_changes(db->h) > 0)
		cp_logf(CP_LOG_INFO, "job.recover", "requeued %d jobs of a previous process",
			sqlite3_changes(db->h));
	return rc;
}
