/*
 * tenants.c - tenants and their API keys. Keys are stored only as the hex
 * SHA-256 of the key text; the key itself is shown once by the API.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

/* A tenant as the API shows it (openapi.yaml, Tenant): the columns of
 * TENANT_COLS, seq first, rendered by tenant_render (create, get, list). */
#define TENANT_COLS "seq, id, name, created_at, default_cas"

/* db_row_render_fn of a tenant: st's row is (TENANT_COLS). */
static cp_rc tenant_render(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	(void)db;
	assert(db_col_count(st) >= 5);
	cp_jw_open(w, '{');
	cp_jw_key(w, "id");
	db_jw_text(w, st, 1);
	cp_jw_key(w, "name");
	db_jw_text(w, st, 2);
	cp_jw_key(w, "created_at");
	db_jw_time(w, st, 3);
	cp_jw_key(w, "default_cas");
	db_jw_json(w, st, 4);
	cp_jw_close(w, '}');
	return CP_OK;
}

/* An API key as the API shows it (openapi.yaml, ApiKey; never its hash):
 * the columns of APIKEY_COLS, seq first, rendered by apikey_render. */
#define APIKEY_COLS "seq, id, tenant_id, name, prefix, scope, expires_at, created_at"

/* db_row_render_fn of an API key: st's row is (APIKEY_COLS). */
static cp_rc apikey_render(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	(void)db;
	assert(db_col_count(st) >= 8);
	cp_jw_open(w, '{');
	cp_jw_key(w, "id");
	db_jw_text(w, st, 1);
	cp_jw_key(w, "tenant_id");
	db_jw_text(w, st, 2);
	cp_jw_key(w, "name");
	db_jw_text(w, st, 3);
	cp_jw_key(w, "prefix");
	db_jw_text(w, st, 4);
	cp_jw_key(w, "scope");
	db_jw_text(w, st, 5);
	cp_jw_key(w, "expires_at");
	db_jw_time(w, st, 6);
	cp_jw_key(w, "created_at");
	db_jw_time(w, st, 7);
	cp_jw_close(w, '}');
	return CP_OK;
}

/* ------------------------------------------------------------ auth cache
 *
 * Every API request authenticates, so the answers of db_apikey_lookup
 * (key hash -> tenant, key id) and db_tenant_exists (the operator's
 * X-Tenant-ID) are kept in a small process-wide table instead of costing a
 * read transaction each. Only hits are kept (a wrong key always asks the
 * database, so a flood of bad keys cannot evict good ones and a new key or
 * tenant needs no invalidation).
 *
 * Invalidation: a generation counter. db_auth_changed() (called by every
 * write that can revoke an answer: API key delete, tenant delete) bumps it
 * once the change is committed (db_commit; at once outside a transaction),
 * and an entry is valid only for the generation it was read in. The
 * generation is read BEFORE the database, so an answer read just before a
 * revoking commit is stored under the old generation and dies with it; the
 * revoked key fails on the very next request.
 *
 * Single process only: another instance's deletion bumps nothing here, so
 * with several instances on one database the TTL below bounds how long a
 * deleted key keeps working (keep it short, or replace the counter with a
 * generation row read from the database).
 *
 * A key's scope and expiry are part of its entry, so a cached answer says
 * all authorization needs; expiry is compared with the clock by the caller
 * on every request (an entry outliving its key's expires_at changes
 * nothing).
 */
#define AUTH_SLOTS 1024 /* power of two; ~150 KiB */
#define AUTH_WAYS 4	/* a key lives in one of 4 slots of its group */
#define AUTH_LOCKS 64
#define AUTH_TTL_MS 10000

struct auth_entry {
	char key[72]; /* "k" + key hash hex, or "t" + tenant id; "" = free */
	char tenant[CP_UUID_LEN + 1];
	char key_id[CP_UUID_LEN + 1];
	struct db_apikey_grant grant; /* zero for tenant entries */
	uint64_t gen;
	int64_t at_ms;
};

static struct auth_entry auth_cache[AUTH_SLOTS];
/* Readers share a stripe (every request of one key reads the same one). */
static pthread_rwlock_t auth_locks[AUTH_LOCKS];
static pthread_once_t auth_once = PTHREAD_ONCE_INIT;
static _Atomic uint64_t auth_gen = 1;

static void auth_init(void)
{
	for (size_t i = 0; i < AUTH_LOCKS; i++)
		pthread_rwlock_init(&auth_locks[i], NULL);
}

/* The group (first slot) of key. */
static size_t auth_group(const char *key)
{
	uint64_t h = 1469598103934665603ull;

	for (const char *p = key; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	return (size_t)(h % (AUTH_SLOTS / AUTH_WAYS)) * AUTH_WAYS;
}

static pthread_rwlock_t *auth_lock(size_t group)
{
	pthread_once(&auth_once, auth_init);
	return &auth_locks[(group / AUTH_WAYS) % AUTH_LOCKS];
}

/* Copy a valid entry for key into tenant / key_id / grant (may be NULL);
 * false if none. */
static bool auth_get(const char *key, char tenant[CP_UUID_LEN + 1], char key_id[CP_UUID_LEN + 1],
		     struct db_apikey_grant *grant)
{
	size_t g = auth_group(key);
	uint64_t gen = atomic_load(&auth_gen);
	int64_t now = cp_mono_ms();
	bool hit = false;

	pthread_rwlock_rdlock(auth_lock(g));
	for (size_t i = g; i < g + AUTH_WAYS; i++) {
		struct auth_entry *e = &auth_cache[i];
		if (strcmp(e->key, key) != 0)
			continue;
		if (e->gen == gen && now - e->at_ms < AUTH_TTL_MS) {
			memcpy(tenant, e->tenant, CP_UUID_LEN + 1);
			memcpy(key_id, e->key_id, CP_UUID_LEN + 1);
			if (grant)
				*grant = e->grant;
			hit = true;
		}
		break;
	}
	pthread_rwlock_unlock(auth_lock(g));
	return hit;
}

/* Keep an answer read from the database in generation gen (read before the
 * query). Replaces the entry of key, a free or stale slot, or the oldest. */
static void auth_put(const char *key, uint64_t gen, const char *tenant, const char *key_id,
		     const struct db_apikey_grant *grant)
{
	size_t g = auth_group(key);
	uint64_t cur = atomic_load(&auth_gen);
	struct auth_entry *victim = NULL;

	assert(strlen(key) < sizeof(victim->key));
	pthread_rwlock_wrlock(auth_lock(g));
	for (size_t i = g; i < g + AUTH_WAYS; i++) {
		struct auth_entry *e = &auth_cache[i];
		if (strcmp(e->key, key) == 0 || !e->key[0] || e->gen != cur) {
			victim = e;
			break;
		}
		if (!victim || e->at_ms < victim->at_ms)
			victim = e;
	}
	snprintf(victim->key, sizeof(victim->key), "%s", key);
	snprintf(victim->tenant, sizeof(victim->tenant), "%s", tenant);
	snprintf(victim->key_id, sizeof(victim->key_id), "%s", key_id);
	victim->grant = grant ? *grant : (struct db_apikey_grant){ 0 };
	victim->gen = gen;
	victim->at_ms = cp_mono_ms();
	pthread_rwlock_unlock(auth_lock(g));
}

void db_auth_changed(struct db *db)
{
	assert(db);
	if (!db_in_tx(db))
		atomic_fetch_add(&auth_gen, 1);
	else
		db->auth_dirty = true; /* db_commit bumps once it is durable */
}

void db_auth_committed(struct db *db)
{
	assert(db);
	/* Also after a rollback: a needless bump only costs a lookup. */
	if (db->auth_dirty)
		atomic_fetch_add(&auth_gen, 1);
	db->auth_dirty = false;
}

cp_rc db_tenant_create(struct db *db, const char *name, json_t **out)
{
	static const char sql[] = "INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?) "
				  "RETURNING " TENANT_COLS;
	char id[CP_UUID_LEN + 1];
	struct db_stmt *st = db_stmt_new_row(db, sql, id, name);

	assert(db && out);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 3, cp_now());
	return db_fetch_render(db, st, tenant_render, out);
}

cp_rc db_tenant_set_default_cas(struct db *db, const char *id, const json_t *cas)
{
	static const char sql[] = "UPDATE tenants SET default_cas = ?1 WHERE id = ?2";
	struct db_stmt *st = db_stmt_keyed(db, sql, NULL, id);

	assert(db && id);
	if (st && json_array_size(cas) > 0)
		db_bind_json(st, 1, cas);
	else if (st)
		db_bind_null(st, 1);
	return db_exec_one(db, st);
}

cp_rc db_tenant_get(struct db *db, const char *id, json_t **out)
{
	static const char sql[] = "SELECT " TENANT_COLS " FROM tenants WHERE id = ?2";
	return db_fetch_render(db, db_stmt_keyed(db, sql, NULL, id), tenant_render, out);
}

cp_rc db_tenant_exists(struct db *db, const char *id)
{
	static const char sql[] = "SELECT 1 FROM tenants WHERE id = ?2";
	char key[72], t[CP_UUID_LEN + 1], k[CP_UUID_LEN + 1];
	uint64_t gen = atomic_load(&auth_gen);
	cp_rc rc;

	assert(db && id);
	if (strlen(id) > CP_UUID_LEN)
		return CP_ERR_NOT_FOUND; /* not an id: not cached, never found */
	snprintf(key, sizeof(key), "t%s", id);
	if (auth_get(key, t, k, NULL))
		return CP_OK;
	rc = db_probe(db, db_stmt_keyed(db, sql, NULL, id));
	if (rc == CP_OK)
		auth_put(key, gen, id, "", NULL);
	return rc;
}

cp_rc db_tenant_list(struct db *db, struct db_page pg, struct db_list *out)
{
#define SQL(cmp, dir)                                                                              \
	"SELECT " TENANT_COLS " FROM tenants WHERE seq " cmp " ?3 ORDER BY seq" dir " LIMIT ?4"
	static const char *const sql[2] = DB_LIST_BOTH(SQL);
#undef SQL
	return db_fetch_page_render(db, db_stmt_page(db, sql, NULL, NULL, pg), pg.limit,
				    tenant_render, out);
}

cp_rc db_tenant_delete(struct db *db, const char *id)
{
	static const char sql[] = "DELETE FROM tenants WHERE id = ?2";
	/* Its CA-issued certificates are revoked first: the jobs' payloads
	 * outlive the rows the DELETE cascades to. */
	cp_rc rc = db_revoke_lost(db, id, NULL, NULL, "tenant_deleted", NULL);
	/* The edge stops serving its production hostnames (edge.c). */
	if (rc == CP_OK)
		rc = db_edge_feed_removed(db, id, NULL);

	if (rc == CP_OK)
		rc = db_delete_scoped(db, sql, NULL, id);

	if (rc == CP_OK)
		db_auth_changed(db); /* its keys went with it (ON DELETE CASCADE) */
	return rc;
}

cp_rc db_apikey_create(struct db *db, const char *tenant_id, const char *name, const char *key_hash,
		       const char *prefix, const struct db_apikey_grant *grant, json_t **out)
{
	static const char sql[] =
		"INSERT INTO api_keys (id, tenant_id, name, key_hash, prefix, created_at, scope, "
		"expires_at) SELECT ?, id, ?, ?, ?, ?, ?, ? FROM tenants WHERE id = ? "
		"RETURNING " APIKEY_COLS;
	char id[CP_UUID_LEN + 1];
	struct db_stmt *st = db_stmt_new_row(db, sql, id, name);

	assert(db && tenant_id && grant && out);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, key_hash);
	db_bind_text(st, 4, prefix);
	db_bind_int64(st, 5, cp_now());
	db_bind_text(st, 6, grant->read_only ? "read" : "admin");
	if (grant->expires_at > 0)
		db_bind_int64(st, 7, grant->expires_at);
	db_bind_text(st, 8, tenant_id);
	return db_fetch_render(db, st, apikey_render, out);
}

cp_rc db_apikey_list(struct db *db, const char *tenant_id, struct db_page pg, struct db_list *out)
{
#define SQL(cmp, dir)                                                                              \
	"SELECT " APIKEY_COLS " FROM api_keys WHERE tenant_id = ?1 AND seq " cmp " ?3 "            \
	"ORDER BY seq" dir " LIMIT ?4"
	static const char *const sql[2] = DB_LIST_BOTH(SQL);
#undef SQL
	return db_fetch_page_render(db, db_stmt_page(db, sql, tenant_id, NULL, pg), pg.limit,
				    apikey_render, out);
}

cp_rc db_apikey_delete(struct db *db, const char *tenant_id, const char *id)
{
	static const char sql[] = "DELETE FROM api_keys WHERE tenant_id = ?1 AND id = ?2";
	cp_rc rc = db_delete_scoped(db, sql, tenant_id, id);

	if (rc == CP_OK)
		db_auth_changed(db);
	return rc;
}

cp_rc db_apikey_lookup(struct db *db, const char *key_hash, char tenant_id[CP_UUID_LEN + 1],
		       char key_id[CP_UUID_LEN + 1], struct db_apikey_grant *grant)
{
	static const char sql[] = "SELECT tenant_id, id, scope = 'read', coalesce(expires_at, 0) "
				  "FROM api_keys WHERE key_hash = ?";
	struct db_apikey_grant g;
	uint64_t gen = atomic_load(&auth_gen); /* before the read: see auth cache */
	char key[72];
	bool cacheable;
	struct db_stmt *st;
	cp_rc rc;

	assert(db && key_hash && tenant_id && key_id);
	/* A SHA-256 hex always fits; anything longer just is not cached. */
	cacheable = strlen(key_hash) < sizeof(key) - 1;
	if (cacheable) {
		snprintf(key, sizeof(key), "k%s", key_hash);
		if (auth_get(key, tenant_id, key_id, grant))
			return CP_OK;
	}
	st = db_stmt_keyed(db, sql, key_hash, NULL);
	rc = db_step_row(db, st);
	if (rc != CP_OK)
		return rc;
	db_column_copy(st, 0, tenant_id, CP_UUID_LEN + 1);
	db_column_copy(st, 1, key_id, CP_UUID_LEN + 1);
	g.read_only = db_col_int64(st, 2) != 0;
	g.expires_at = db_col_int64(st, 3);
	db_reset(st);
	if (grant)
		*grant = g;
	if (cacheable)
		auth_put(key, gen, tenant_id, key_id, &g);
	return CP_OK;
}
