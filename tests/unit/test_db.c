/*
 * test_db.c - the storage layer's contracts (db/db.h), part one:
 * connections, migrations, transactions, backup/integrity/ping, tenants and
 * API keys, audit, idempotency records, the job queue and its lanes, events
 * and quotas. Each function is checked for the data it returns and for at
 * least one error path (not found, another tenant's id, conflict, or a
 * database failure: a table renamed away, or every statement interrupted).
 * The other families are in test_db_*.c. Exit status is the number of
 * failed checks (capped), 0 on success.
 */
#include <pthread.h>
#include <sys/stat.h>

#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

static struct fx fx;
static char ta[CP_UUID_LEN + 1], tb[CP_UUID_LEN + 1];

/* Migrations on a file: a fresh file migrates from 0, a failing one does
 * not, and a schema newer than the binary is refused, not downgraded. */
static void core_migrate_file(void)
{
	struct db *other = NULL;
	char dest[192];
	int from = -1, to = -1;

	CHECK(fx_int(fx.db, "PRAGMA user_version") == db_schema_version());
	snprintf(dest, sizeof(dest), "%s/fresh.db", fx.dir);
	CHECK_RC(db_open(dest, &other), CP_OK);
	fx_fail(other, true);
	CHECK(db_migrate(other, NULL, NULL) != CP_OK);
	fx_fail(other, false);
	CHECK(fx_int(other, "PRAGMA user_version") == 0);
	CHECK_RC(db_migrate(other, &from, &to), CP_OK);
	CHECK(from == 0 && to == db_schema_version());
	{
		char *sql = cp_aprintf("PRAGMA user_version = %d", db_schema_version() + 1);
		CHECK(sql && fx_sql(other, sql));
		free(sql);
		CHECK_RC(db_migrate(other, &from, &to), CP_ERR_INVALID);
		CHECK(from == db_schema_version() + 1);
	}
	db_close(other);
}

/* Migrations on PostgreSQL: the version rows, and a newer schema refused
 * by migrate and by serve's check alike. */
static void core_migrate_pg(void)
{
	int from = -1, to = -1;
	char *sql;

	CHECK(fx_int(fx.db, "SELECT max(version) FROM schema_migrations") == db_schema_version());
	sql = cp_aprintf("INSERT INTO schema_migrations (version, name, applied_at) "
			 "VALUES (%d, 'future', 0)",
			 db_schema_version() + 1);
	CHECK(sql && fx_sql(fx.db, sql));
	free(sql);
	CHECK_RC(db_migrate(fx.db, &from, &to), CP_ERR_INVALID);
	CHECK(from == db_schema_version() + 1);
	CHECK_RC(db_schema_check(fx.db, &from), CP_ERR_INVALID);
	CHECK(fx_sql(fx.db, "DELETE FROM schema_migrations WHERE name = 'future'"));
	CHECK_RC(db_schema_check(fx.db, &from), CP_OK);
}

/* Backup of a file: a consistent copy holding the committed tenant t,
 * 0600; refused over an existing file and into a missing directory. */
static void core_backup_file(const json_t *t)
{
	struct db *db = fx.db, *other = NULL;
	char dest[192];

	snprintf(dest, sizeof(dest), "%s/backup.db", fx.dir);
	CHECK_RC(db_backup(db, dest), CP_OK);
	CHECK(access(dest, F_OK) == 0);
	CHECK_RC(db_open(dest, &other), CP_OK);
	if (other) {
		json_t *back = NULL;
		CHECK_RC(db_tenant_get(other, fx_str(t, "id"), &back), CP_OK);
		CHECK(!strcmp(fx_str(back, "name"), "committed"));
		json_decref(back);
		db_close(other);
		other = NULL;
	}
	CHECK_RC(db_backup(db, dest), CP_ERR_CONFLICT);
	{
		/* A symlink at dest is refused and the file behind it is untouched. */
		char link[192];
		snprintf(link, sizeof(link), "%s/link.db", fx.dir);
		CHECK(symlink(dest, link) == 0);
		CHECK_RC(db_backup(db, link), CP_ERR_CONFLICT);
		snprintf(link, sizeof(link), "%s/dangling.db", fx.dir);
		CHECK(symlink("/nonexistent-cp/target.db", link) == 0);
		CHECK_RC(db_backup(db, link), CP_ERR_CONFLICT);
		CHECK(access("/nonexistent-cp/target.db", F_OK) != 0);
	}
	snprintf(dest, sizeof(dest), "%s/missing/backup.db", fx.dir);
	CHECK(db_backup(db, dest) != CP_OK);
	CHECK(access(dest, F_OK) != 0);
	snprintf(dest, sizeof(dest), "%s/backup2.db", fx.dir);
	fx_fail(db, true);
	CHECK(db_backup(db, dest) != CP_OK);
	fx_fail(db, false);
	CHECK(access(dest, F_OK) != 0); /* a failed backup leaves no file */
}

static void test_core(void)
{
	struct db *db = fx.db, *other = NULL;
	int from = -1, to = -1;
	bool ok = false;
	json_t *t = NULL;

	/* Open: a path in a missing directory cannot be opened. */
	CHECK(db_open("/nonexistent-dir-cp/x.db", &other) != CP_OK);
	CHECK(other == NULL);

	/* Migrations ran once; again they are a no-op at the same version. */
	CHECK(db_schema_version() > 0);
	CHECK_RC(db_migrate(db, &from, &to), CP_OK);
	CHECK(from == db_schema_version() && to == db_schema_version());
	CHECK_RC(db_schema_check(db, &from), CP_OK);
	CHECK(from == db_schema_version());
	/* Both folders end at the same version: one schema number per binary. */
	{
		extern const struct db_migration db_pg_migrations[];
		extern const size_t db_pg_migrations_count;
		CHECK(db_pg_migrations_count > 0 &&
		      strtol(db_pg_migrations[db_pg_migrations_count - 1].name, NULL, 10) ==
			      db_schema_version());
	}
	if (fx_pg())
		core_migrate_pg();
	else
		core_migrate_file();

	/* Transactions: a rolled-back write is gone, a committed one stays. */
	CHECK_RC(db_begin(db), CP_OK);
	CHECK(db_begin(db) != CP_OK); /* no nesting */
	CHECK_RC(db_tenant_create(db, "rolled-back", &t), CP_OK);
	db_rollback(db);
	db_rollback(db); /* safe in any state */
	CHECK_RC(db_tenant_get(db, fx_str(t, "id"), &(json_t *){ NULL }), CP_ERR_NOT_FOUND);
	json_decref(t);
	t = NULL;
	CHECK(db_commit(db) != CP_OK); /* nothing to commit */
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_tenant_create(db, "committed", &t), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);

	/* Backup: the file engine's own (VACUUM INTO); a server's is its
	 * tools' (pg_dump), and certplane says so rather than pretend. */
	if (fx_pg()) {
		char dest[192];
		snprintf(dest, sizeof(dest), "%s/backup.db", fx.dir);
		CHECK_RC(db_backup(db, dest), CP_ERR_INVALID);
		CHECK(access(dest, F_OK) != 0);
	} else {
		core_backup_file(t);
	}
	json_decref(t);

	/* Integrity and ping, and both when the database fails. */
	CHECK_RC(db_integrity_check(db, &ok), CP_OK);
	CHECK(ok);
	CHECK_RC(db_ping(db), CP_OK);
	fx_fail(db, true);
	CHECK(db_integrity_check(db, &ok) != CP_OK);
	CHECK(!ok);
	CHECK(db_ping(db) != CP_OK);
	fx_fail(db, false);
	CHECK_RC(db_ping(db), CP_OK);
}

static void *thread_conn(void *arg)
{
	struct db **seen = arg;
	seen[0] = db_thread();
	seen[1] = db_thread();
	if (seen[0])
		seen[2] = db_ping(seen[0]) == CP_OK ? seen[0] : NULL;
	db_thread_close();
	return NULL;
}

static void test_thread(void)
{
	struct db *seen[3] = { NULL, NULL, NULL };
	pthread_t th;
	char bad[192];

	/* Before a path is set, no connection. */
	CHECK(db_thread() == NULL);
	db_set_path(fx.path);
	CHECK(pthread_create(&th, NULL, thread_conn, seen) == 0);
	pthread_join(th, NULL);
	CHECK(seen[0] != NULL && seen[0] == seen[1] && seen[2] == seen[0]);
	/* A path that cannot be opened: NULL, not a crash. */
	snprintf(bad, sizeof(bad), "%s/missing/x.db", fx.dir);
	db_set_path(bad);
	CHECK(db_thread() == NULL);
	db_thread_close();
	db_set_path(fx.path);
}

static void test_tenants(void)
{
	struct db *db = fx.db;
	json_t *t = NULL, *k = NULL;
	struct db_list l = { 0 };
	char ids[3][CP_UUID_LEN + 1], tid[CP_UUID_LEN + 1], kid[CP_UUID_LEN + 1];
	struct db_apikey_grant grant = { 0 }, got = { 0 };
	int64_t next;

	CHECK_RC(db_tenant_create(db, "acme corp", &t), CP_OK);
	CHECK(cp_uuid_valid(fx_str(t, "id")));
	CHECK(!strcmp(fx_str(t, "name"), "acme corp"));
	CHECK(strlen(fx_str(t, "created_at")) == 20);
	snprintf(ids[0], sizeof(ids[0]), "%s", fx_str(t, "id"));
	json_decref(t);
	t = NULL;
	CHECK(fx_tenant(db, "t1", ids[1]) && fx_tenant(db, "t2", ids[2]));

	CHECK_RC(db_tenant_get(db, ids[0], &t), CP_OK);
	CHECK(!strcmp(fx_str(t, "id"), ids[0]) && !strcmp(fx_str(t, "name"), "acme corp"));
	json_decref(t);
	t = NULL;
	CHECK_RC(db_tenant_get(db, "00000000-0000-4000-8000-000000000000", &t), CP_ERR_NOT_FOUND);

	/* Keyset pages: the three newest tenants two at a time. */
	next = fx_int(db, "SELECT seq FROM tenants WHERE name = 'acme corp'") - 1;
	CHECK_RC(db_tenant_list(db, (struct db_page){ .after = next, .limit = 2 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 2 && l.next > 0);
	CHECK(!strcmp(fx_str(json_array_get(l.data, 0), "id"), ids[0]));
	next = l.next;
	fx_list_clear(&l);
	CHECK_RC(db_tenant_list(db, (struct db_page){ .after = next, .limit = 2 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 1 && l.next == 0);
	CHECK(!strcmp(fx_str(json_array_get(l.data, 0), "id"), ids[2]));
	fx_list_clear(&l);
	/* Newest first (desc): the same keyset walked down, from the top
	 * (after 0) and then below the cursor, down to the oldest. */
	CHECK_RC(db_tenant_list(db, (struct db_page){ .limit = 2, .desc = true }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 2 && l.next > 0);
	CHECK(!strcmp(fx_str(json_array_get(l.data, 0), "id"), ids[2]));
	CHECK(!strcmp(fx_str(json_array_get(l.data, 1), "id"), ids[1]));
	next = l.next;
	fx_list_clear(&l);
	CHECK_RC(
		db_tenant_list(db, (struct db_page){ .after = next, .limit = 2, .desc = true }, &l),
		CP_OK);
	CHECK(json_array_size(l.data) >= 1);
	CHECK(!strcmp(fx_str(json_array_get(l.data, 0), "id"), ids[0]));
	fx_list_clear(&l);

	/* API keys: stored by hash, found by hash, scoped by tenant. */
	CHECK_RC(db_apikey_create(db, ids[0], "ci", "aa11", "cpk_aa", &grant, &k), CP_OK);
	CHECK(cp_uuid_valid(fx_str(k, "id")) && !strcmp(fx_str(k, "name"), "ci"));
	CHECK(!strcmp(fx_str(k, "prefix"), "cpk_aa"));
	CHECK(!strcmp(fx_str(k, "scope"), "admin") &&
	      json_is_null(json_object_get(k, "expires_at")));
	CHECK(json_object_get(k, "key_hash") == NULL);
	CHECK_RC(db_apikey_create(db, ids[1], "dup", "aa11", "cpk_aa", &grant, &t),
		 CP_ERR_CONFLICT);
	CHECK_RC(db_apikey_create(db, "00000000-0000-4000-8000-000000000000", "x", "bb22", "cpk_bb",
				  &grant, &t),
		 CP_ERR_NOT_FOUND);
	CHECK_RC(db_apikey_lookup(db, "aa11", tid, kid, NULL), CP_OK);
	CHECK(!strcmp(tid, ids[0]) && !strcmp(kid, fx_str(k, "id")));
	CHECK_RC(db_apikey_lookup(db, "ffff", tid, kid, NULL), CP_ERR_NOT_FOUND);
	CHECK_RC(db_apikey_list(db, ids[0], (struct db_page){ .limit = 10 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 1 && l.next == 0);
	CHECK(!strcmp(fx_str(json_array_get(l.data, 0), "id"), fx_str(k, "id")));
	fx_list_clear(&l);
	CHECK_RC(db_apikey_list(db, ids[1], (struct db_page){ .limit = 10 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 0);
	fx_list_clear(&l);
	CHECK_RC(db_apikey_delete(db, ids[1], fx_str(k, "id")), CP_ERR_NOT_FOUND);
	CHECK_RC(db_apikey_lookup(db, "aa11", tid, kid, NULL), CP_OK); /* still there */
	CHECK_RC(db_apikey_delete(db, ids[0], fx_str(k, "id")), CP_OK);
	CHECK_RC(db_apikey_delete(db, ids[0], fx_str(k, "id")), CP_ERR_NOT_FOUND);
	CHECK_RC(db_apikey_lookup(db, "aa11", tid, kid, NULL), CP_ERR_NOT_FOUND);
	json_decref(k);
	k = NULL;

	/* Scope and expiry are stored, rendered and answered (cached too). */
	grant = (struct db_apikey_grant){ .read_only = true, .expires_at = 4102444800 };
	CHECK_RC(db_apikey_create(db, ids[0], "ro", "ee55", "cpk_ee", &grant, &k), CP_OK);
	CHECK(!strcmp(fx_str(k, "scope"), "read"));
	CHECK(!strcmp(fx_str(k, "expires_at"), "2100-01-01T00:00:00Z"));
	for (int i = 0; i < 2; i++) { /* the database, then the cache */
		got = (struct db_apikey_grant){ 0 };
		CHECK_RC(db_apikey_lookup(db, "ee55", tid, kid, &got), CP_OK);
		CHECK(got.read_only && got.expires_at == 4102444800);
	}
	json_decref(k);
	k = NULL;
	grant = (struct db_apikey_grant){ 0 };

	/* Deleting a tenant takes its keys with it. */
	CHECK_RC(db_apikey_create(db, ids[2], "k", "cc33", "cpk_cc", &grant, &k), CP_OK);
	json_decref(k);
	CHECK_RC(db_tenant_delete(db, ids[2]), CP_OK);
	CHECK_RC(db_tenant_delete(db, ids[2]), CP_ERR_NOT_FOUND);
	CHECK_RC(db_tenant_get(db, ids[2], &t), CP_ERR_NOT_FOUND);
	CHECK_RC(db_apikey_lookup(db, "cc33", tid, kid, NULL), CP_ERR_NOT_FOUND);

	/* The database failing. */
	fx_fail(db, true);
	CHECK_RC(db_tenant_create(db, "x", &t), CP_ERR_INTERNAL);
	CHECK_RC(db_tenant_get(db, ids[0], &t), CP_ERR_INTERNAL);
	CHECK_RC(db_tenant_list(db, (struct db_page){ .limit = 2 }, &l), CP_ERR_INTERNAL);
	CHECK_RC(db_tenant_delete(db, ids[1]), CP_ERR_INTERNAL);
	CHECK_RC(db_apikey_create(db, ids[0], "x", "dd44", "p", &grant, &t), CP_ERR_INTERNAL);
	CHECK_RC(db_apikey_list(db, ids[0], (struct db_page){ .limit = 2 }, &l), CP_ERR_INTERNAL);
	CHECK_RC(db_apikey_delete(db, ids[0], "x"), CP_ERR_INTERNAL);
	CHECK_RC(db_apikey_lookup(db, "aa11", tid, kid, NULL), CP_ERR_INTERNAL);
	fx_fail(db, false);
	CHECK(l.data == NULL);
}

static void test_audit(void)
{
	struct db *db = fx.db;
	struct db_list l = { 0 };
	json_t *detail = json_pack("{s:s}", "name", "www");
	const json_t *e;
	int64_t before = fx_int(db, "SELECT count(*) FROM audit_log");

	CHECK_RC(db_audit_add(db, ta, "key:1", "property.create", "property", "p1", detail), CP_OK);
	CHECK_RC(db_audit_add(db, NULL, "operator", "tenant.create", "tenant", ta, NULL), CP_OK);
	json_decref(detail);

	CHECK_RC(db_audit_list(db, ta, (struct db_page){ .limit = 10 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 1);
	e = json_array_get(l.data, 0);
	CHECK(!strcmp(fx_str(e, "tenant_id"), ta) && !strcmp(fx_str(e, "actor"), "key:1"));
	CHECK(!strcmp(fx_str(e, "action"), "property.create"));
	CHECK(!strcmp(fx_str(e, "resource_type"), "property"));
	CHECK(!strcmp(fx_str(e, "resource_id"), "p1"));
	CHECK(!strcmp(fx_str(json_object_get(e, "detail"), "name"), "www"));
	fx_list_clear(&l);
	CHECK_RC(db_audit_list(db, tb, (struct db_page){ .limit = 10 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 0);
	fx_list_clear(&l);
	/* Operator-wide: every tenant's entries and the tenantless one. */
	CHECK_RC(db_audit_list(db, NULL, (struct db_page){ .limit = 500 }, &l), CP_OK);
	CHECK((int64_t)json_array_size(l.data) == before + 2);
	CHECK(json_is_null(
		json_object_get(json_array_get(l.data, json_array_size(l.data) - 1), "tenant_id")));
	fx_list_clear(&l);
	CHECK_RC(db_audit_list(db, NULL, (struct db_page){ .limit = 1 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 1 && l.next > 0);
	fx_list_clear(&l);

	CHECK(fx_sql(db, "ALTER TABLE audit_log RENAME TO audit_log_away"));
	CHECK_RC(db_audit_add(db, ta, "a", "b", "c", "d", NULL), CP_ERR_INTERNAL);
	CHECK_RC(db_audit_list(db, ta, (struct db_page){ .limit = 10 }, &l), CP_ERR_INTERNAL);
	CHECK(fx_sql(db, "ALTER TABLE audit_log_away RENAME TO audit_log"));
}

static void test_idem(void)
{
	struct db *db = fx.db;
	struct db_idem_scope s = { "key:1", ta, "POST", "/v1/properties", "k1" };
	struct db_idem out = { 0 };
	struct db_idem resp = { .status = 201 };
	enum db_idem_claim claim = DB_IDEM_DONE;

	resp.content_type = "application/json";
	resp.response = "{\"id\":1}";
	resp.response_len = strlen(resp.response);

	CHECK_RC(db_idem_reserve(db, &s, "req-1", "h1", 60, 86400, &claim, &out), CP_OK);
	CHECK(claim == DB_IDEM_RESERVED && !strcmp(out.body_hash, "h1"));
	db_idem_clear(&out);
	/* A twin sees it pending, with the first body's hash. */
	CHECK_RC(db_idem_reserve(db, &s, "req-2", "h2", 60, 86400, &claim, &out), CP_OK);
	CHECK(claim == DB_IDEM_PENDING && !strcmp(out.body_hash, "h1"));
	db_idem_clear(&out);
	/* Only the holder may finish or release. */
	CHECK_RC(db_idem_finish(db, &s, "req-2", &resp), CP_ERR_NOT_FOUND);
	CHECK_RC(db_idem_release(db, &s, "req-2"), CP_ERR_NOT_FOUND);
	CHECK_RC(db_idem_finish(db, &s, "req-1", &resp), CP_OK);
	CHECK_RC(db_idem_reserve(db, &s, "req-3", "h1", 60, 86400, &claim, &out), CP_OK);
	CHECK(claim == DB_IDEM_DONE && out.status == 201);
	CHECK(out.content_type && !strcmp(out.content_type, "application/json"));
	CHECK(out.response_len == resp.response_len && out.response &&
	      !memcmp(out.response, resp.response, resp.response_len));
	db_idem_clear(&out);
	db_idem_clear(&out);					      /* idempotent */
	CHECK_RC(db_idem_release(db, &s, "req-1"), CP_ERR_NOT_FOUND); /* done, not pending */

	/* Scoped: another tenant, and no tenant, are other keys. */
	s.tenant_id = tb;
	CHECK_RC(db_idem_reserve(db, &s, "req-4", "h1", 60, 86400, &claim, &out), CP_OK);
	CHECK(claim == DB_IDEM_RESERVED);
	db_idem_clear(&out);
	s.tenant_id = NULL;
	CHECK_RC(db_idem_reserve(db, &s, "req-5", "h1", 60, 86400, &claim, &out), CP_OK);
	CHECK(claim == DB_IDEM_RESERVED);
	db_idem_clear(&out);
	/* Released: the retry runs again. */
	CHECK_RC(db_idem_release(db, &s, "req-5"), CP_OK);
	CHECK_RC(db_idem_reserve(db, &s, "req-6", "h1", 60, 86400, &claim, &out), CP_OK);
	CHECK(claim == DB_IDEM_RESERVED);
	db_idem_clear(&out);
	/* A lease run out is taken over; the old holder lost it. */
	s.key = "k2";
	CHECK_RC(db_idem_reserve(db, &s, "req-7", "h1", -10, 86400, &claim, &out), CP_OK);
	CHECK(claim == DB_IDEM_RESERVED);
	db_idem_clear(&out);
	CHECK_RC(db_idem_reserve(db, &s, "req-8", "h9", 60, 86400, &claim, &out), CP_OK);
	CHECK(claim == DB_IDEM_RESERVED && !strcmp(out.body_hash, "h9"));
	db_idem_clear(&out);
	CHECK_RC(db_idem_finish(db, &s, "req-7", &resp), CP_ERR_NOT_FOUND);
	/* A record older than max_age is reserved anew. */
	s.key = "k1";
	s.tenant_id = ta;
	CHECK_RC(db_idem_reserve(db, &s, "req-9", "h1", 60, -10, &claim, &out), CP_OK);
	CHECK(claim == DB_IDEM_RESERVED);
	db_idem_clear(&out);

	/* A response is text (PostgreSQL's cannot hold a NUL): one with a NUL
	 * byte is refused on every engine, the reservation still held, and
	 * its text response is stored and replayed whole. */
	s.key = "k3";
	CHECK_RC(db_idem_reserve(db, &s, "req-11", "h1", 60, 86400, &claim, &out), CP_OK);
	CHECK(claim == DB_IDEM_RESERVED);
	db_idem_clear(&out);
	resp.response = "a\0b";
	resp.response_len = 3;
	CHECK_RC(db_idem_finish(db, &s, "req-11", &resp), CP_ERR_INVALID);
	CHECK_RC(db_idem_reserve(db, &s, "req-12", "h1", 60, 86400, &claim, &out), CP_OK);
	CHECK(claim == DB_IDEM_PENDING);
	db_idem_clear(&out);
	resp.response = "{\"a\":\"b\"}";
	resp.response_len = strlen(resp.response);
	CHECK_RC(db_idem_finish(db, &s, "req-11", &resp), CP_OK);
	CHECK_RC(db_idem_reserve(db, &s, "req-12", "h1", 60, 86400, &claim, &out), CP_OK);
	CHECK(claim == DB_IDEM_DONE && out.response_len == resp.response_len && out.response &&
	      !memcmp(out.response, resp.response, resp.response_len));
	db_idem_clear(&out);

	/* Purge: everything older than the cutoff. */
	CHECK(fx_int(db, "SELECT count(*) FROM idempotency") == 5);
	CHECK_RC(db_idem_purge(db, cp_now() - 3600), CP_OK);
	CHECK(fx_int(db, "SELECT count(*) FROM idempotency") == 5);
	CHECK_RC(db_idem_purge(db, cp_now() + 10), CP_OK);
	CHECK(fx_int(db, "SELECT count(*) FROM idempotency") == 0);

	fx_fail(db, true);
	CHECK_RC(db_idem_reserve(db, &s, "req-10", "h1", 60, 86400, &claim, &out), CP_ERR_INTERNAL);
	CHECK_RC(db_idem_finish(db, &s, "req-10", &resp), CP_ERR_INTERNAL);
	CHECK_RC(db_idem_release(db, &s, "req-10"), CP_ERR_INTERNAL);
	CHECK_RC(db_idem_purge(db, cp_now()), CP_ERR_INTERNAL);
	fx_fail(db, false);
	db_idem_clear(&out);
}

static const char *lane_of(const char *kind)
{
	return !strcmp(kind, "acme_order") ? "acme" : NULL;
}

/* stats[kind][state], 0 when absent. */
static int64_t job_count(struct db *db, const char *kind, const char *state)
{
	json_t *st = NULL;
	int64_t n = -1;

	if (db_job_stats(db, &st) == CP_OK)
		n = json_integer_value(json_object_get(json_object_get(st, kind), state));
	json_decref(st);
	return n;
}

static void test_jobs(void)
{
	struct db *db = fx.db;
	struct db_job j = { 0 }, j2 = { 0 };
	json_t *payload = json_pack("{s:i}", "x", 7), *stats = NULL;
	int64_t now = cp_now(), id;

	db_job_set_lanes(lane_of);
	/* Enqueue with a dedupe key: the twin adds nothing. */
	CHECK_RC(db_job_enqueue(db, "k1", ta, payload, now - 1, "d1"), CP_OK);
	CHECK_RC(db_job_enqueue(db, "k1", ta, payload, now - 1, "d1"), CP_OK);
	CHECK(job_count(db, "k1", "queued") == 1);
	json_decref(payload);

	/* Claim: the fields, the lease; then nothing more may run. */
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 4, "w1", 30, &j), CP_OK);
	CHECK(j.id > 0 && !strcmp(j.kind, "k1") && !strcmp(j.tenant_id, ta));
	CHECK(json_integer_value(json_object_get(j.payload, "x")) == 7);
	CHECK(j.attempts == 1 && !strcmp(j.owner, "w1"));
	CHECK(job_count(db, "k1", "running") == 1);
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 4, "w2", 30, &j2), CP_ERR_NOT_FOUND);
	/* The lease belongs to w1. */
	CHECK_RC(db_job_extend(db, j.id, "w1", 60), CP_OK);
	CHECK_RC(db_job_extend(db, j.id, "w2", 60), CP_ERR_CONFLICT);
	CHECK_RC(db_job_done(db, j.id, "w2"), CP_ERR_CONFLICT);
	CHECK_RC(db_job_retry(db, j.id, "w2", now, "e"), CP_ERR_CONFLICT);
	CHECK_RC(db_job_fail(db, j.id, "w2", "e"), CP_ERR_CONFLICT);
	/* Retry: queued again with its attempt counted. */
	CHECK_RC(db_job_retry(db, j.id, "w1", now - 1, "temporary"), CP_OK);
	CHECK_RC(db_job_extend(db, j.id, "w1", 60), CP_ERR_CONFLICT); /* no longer running */
	id = j.id;
	db_job_clear(&j);
	CHECK(j.payload == NULL);
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 4, "w1", 30, &j), CP_OK);
	CHECK(j.id == id && j.attempts == 2);
	CHECK_RC(db_job_done(db, j.id, "w1"), CP_OK);
	CHECK_RC(db_job_done(db, j.id, "w1"), CP_ERR_CONFLICT);
	db_job_clear(&j);
	/* Done frees the dedupe key. */
	CHECK_RC(db_job_enqueue(db, "k1", ta, NULL, now - 1, "d1"), CP_OK);
	CHECK(job_count(db, "k1", "queued") == 1);
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 4, "w1", 30, &j), CP_OK);
	CHECK(json_is_object(j.payload) && json_object_size(j.payload) == 0);
	CHECK_RC(db_job_fail(db, j.id, "w1", "permanent"), CP_OK);
	CHECK(job_count(db, "k1", "failed") == 1);
	db_job_clear(&j);

	/* Not yet due: not claimed. */
	CHECK_RC(db_job_enqueue(db, "later", ta, NULL, now + 3600, NULL), CP_OK);
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 4, "w1", 30, &j), CP_ERR_NOT_FOUND);

	/* Tenant cap: one running job of ta holds its second back, tb runs. */
	CHECK_RC(db_job_enqueue(db, "k2", ta, NULL, now - 5, NULL), CP_OK);
	CHECK_RC(db_job_enqueue(db, "k2", ta, NULL, now - 5, NULL), CP_OK);
	CHECK_RC(db_job_enqueue(db, "k2", tb, NULL, now - 1, NULL), CP_OK);
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 1, "w1", 30, &j), CP_OK);
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 1, "w2", 30, &j2), CP_OK);
	CHECK(strcmp(j.tenant_id, j2.tenant_id) != 0);
	db_job_clear(&j2);
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 1, "w3", 30, &j2), CP_ERR_NOT_FOUND);
	/* Release by owner: w1's job runs again, its attempt not counted. */
	CHECK_RC(db_job_release_owner(db, "w1"), CP_OK);
	CHECK_RC(db_job_done(db, j.id, "w1"), CP_ERR_CONFLICT);
	db_job_clear(&j);
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 1, "w4", 30, &j), CP_OK);
	CHECK(j.attempts == 1);
	db_job_clear(&j);
	/* Recover orphans: every running job is queued again. */
	CHECK(job_count(db, "k2", "running") == 2);
	CHECK_RC(db_job_recover_orphans(db), CP_OK);
	CHECK(job_count(db, "k2", "running") == 0 && job_count(db, "k2", "queued") == 3);
	CHECK(fx_sql(db, "UPDATE jobs SET state = 'done' WHERE kind = 'k2'"));

	/* A lease run out is taken over; its old owner lost it. */
	CHECK_RC(db_job_enqueue(db, "k3", NULL, NULL, now - 1, NULL), CP_OK);
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 4, "w1", -10, &j), CP_OK);
	CHECK(j.tenant_id[0] == '\0');
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 4, "w2", 30, &j2), CP_OK);
	CHECK(j2.id == j.id && !strcmp(j2.owner, "w2"));
	CHECK_RC(db_job_done(db, j.id, "w1"), CP_ERR_CONFLICT);
	CHECK_RC(db_job_done(db, j2.id, "w2"), CP_OK);
	db_job_clear(&j);
	db_job_clear(&j2);

	/* Lanes: acme_order runs only in "acme"; relane moves a kind. */
	CHECK_RC(db_job_enqueue(db, "acme_order", ta, NULL, now - 1, NULL), CP_OK);
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 4, "w1", 30, &j), CP_ERR_NOT_FOUND);
	CHECK_RC(db_job_claim(db, "acme", 4, "w1", 30, &j), CP_OK);
	CHECK(!strcmp(j.kind, "acme_order"));
	CHECK_RC(db_job_done(db, j.id, "w1"), CP_OK);
	db_job_clear(&j);
	CHECK_RC(db_job_enqueue(db, "k4", ta, NULL, now - 1, NULL), CP_OK);
	CHECK_RC(db_job_relane(db, "k4", "webhook"), CP_OK);
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 4, "w1", 30, &j), CP_ERR_NOT_FOUND);
	CHECK_RC(db_job_claim(db, "webhook", 4, "w1", 30, &j), CP_OK);
	CHECK(!strcmp(j.kind, "k4"));
	db_job_clear(&j);

	/* Stats: every kind with its three states. */
	CHECK_RC(db_job_stats(db, &stats), CP_OK);
	CHECK(json_is_object(json_object_get(stats, "k1")));
	CHECK(json_integer_value(json_object_get(json_object_get(stats, "k4"), "running")) == 1);
	json_decref(stats);
	stats = NULL;

	/* The database failing. */
	fx_fail(db, true);
	CHECK_RC(db_job_enqueue(db, "k5", ta, NULL, now, NULL), CP_ERR_INTERNAL);
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 4, "w1", 30, &j), CP_ERR_INTERNAL);
	CHECK_RC(db_job_extend(db, 1, "w1", 30), CP_ERR_INTERNAL);
	CHECK_RC(db_job_done(db, 1, "w1"), CP_ERR_INTERNAL);
	CHECK_RC(db_job_retry(db, 1, "w1", now, "e"), CP_ERR_INTERNAL);
	CHECK_RC(db_job_fail(db, 1, "w1", "e"), CP_ERR_INTERNAL);
	CHECK_RC(db_job_release_owner(db, "w1"), CP_ERR_INTERNAL);
	CHECK_RC(db_job_recover_orphans(db), CP_ERR_INTERNAL);
	CHECK_RC(db_job_relane(db, "k4", "general"), CP_ERR_INTERNAL);
	CHECK_RC(db_job_stats(db, &stats), CP_ERR_INTERNAL);
	fx_fail(db, false);
	CHECK(stats == NULL && j.payload == NULL);
	db_job_set_lanes(NULL);
}

/* The constant lists of db.h: one place each, and their lookups. */
static void test_constant_lists(void)
{
	CHECK(db_event_types[DB_EVENT_TYPES_COUNT] == NULL);
	for (size_t i = 0; i < DB_EVENT_TYPES_COUNT; i++)
		CHECK(db_event_types[i] && db_event_type_known(db_event_types[i]));
	CHECK(db_event_type_known("certificate.issued"));
	CHECK(!db_event_type_known("certificate.issue"));
	CHECK(!db_event_type_known(""));
	CHECK(!db_event_type_known(NULL));
	CHECK(db_order_status_in_flight("pending"));
	CHECK(db_order_status_in_flight("validating"));
	CHECK(db_order_status_in_flight("issuing"));
	CHECK(!db_order_status_in_flight("valid"));
	CHECK(!db_order_status_in_flight("pend"));	/* a prefix of a member */
	CHECK(!db_order_status_in_flight("'pending'")); /* the SQL spelling */
	CHECK(!db_order_status_in_flight(""));
	CHECK(!db_order_status_in_flight(NULL));
}

static void test_events(void)
{
	struct db *db = fx.db;
	char id1[CP_UUID_LEN + 1], id2[CP_UUID_LEN + 1];
	json_t *data = json_pack("{s:s}", "property_id", "p1");
	struct db_list l = { 0 };
	const json_t *e;
	int64_t seq1 = 0, seq2 = 0;

	CHECK_RC(db_event_add(db, ta, "property.created", data, id1), CP_OK);
	CHECK_RC(db_event_add(db, ta, "property.deleted", data, id2), CP_OK);
	CHECK_RC(db_event_add(db, tb, "property.created", data, NULL), CP_OK);
	json_decref(data);
	CHECK(cp_uuid_valid(id1) && strcmp(id1, id2) != 0);

	CHECK_RC(db_event_seq(db, ta, id1, &seq1), CP_OK);
	CHECK_RC(db_event_seq(db, ta, id2, &seq2), CP_OK);
	CHECK(seq1 > 0 && seq2 > seq1);
	CHECK_RC(db_event_seq(db, tb, id1, &seq1), CP_ERR_NOT_FOUND); /* another tenant's */
	CHECK_RC(db_event_seq(db, ta, "00000000-0000-4000-8000-000000000000", &seq1),
		 CP_ERR_NOT_FOUND);

	CHECK_RC(db_event_list(db, ta, NULL, (struct db_page){ .limit = 10 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 2 && l.next == 0);
	e = json_array_get(l.data, 0);
	CHECK(!strcmp(fx_str(e, "id"), id1) && !strcmp(fx_str(e, "type"), "property.created"));
	CHECK(strlen(fx_str(e, "timestamp")) > 0);
	CHECK(!strcmp(fx_str(json_object_get(e, "data"), "property_id"), "p1"));
	fx_list_clear(&l);
	CHECK_RC(db_event_list(db, ta, "property.deleted", (struct db_page){ .limit = 10 }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 1 &&
	      !strcmp(fx_str(json_array_get(l.data, 0), "id"), id2));
	fx_list_clear(&l);
	CHECK_RC(db_event_list(db, ta, NULL, (struct db_page){ .after = seq2, .limit = 10 }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 0);
	fx_list_clear(&l);
	CHECK_RC(db_event_list(db, ta, NULL, (struct db_page){ .limit = 1 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 1 && l.next > 0);
	fx_list_clear(&l);

	CHECK(fx_sql(db, "ALTER TABLE events RENAME TO events_away"));
	CHECK_RC(db_event_add(db, ta, "x", NULL, id1), CP_ERR_INTERNAL);
	CHECK_RC(db_event_seq(db, ta, id2, &seq1), CP_ERR_INTERNAL);
	CHECK_RC(db_event_list(db, ta, NULL, (struct db_page){ .limit = 1 }, &l), CP_ERR_INTERNAL);
	CHECK(fx_sql(db, "ALTER TABLE events_away RENAME TO events"));
}

static void test_quotas(void)
{
	struct db *db = fx.db;
	const int64_t defaults[DB_QUOTA_COUNT] = { 2, 10, 5, 3, 4, 1 };
	int64_t limits[DB_QUOTA_COUNT], values[DB_QUOTA_COUNT] = { 0 };
	bool over[DB_QUOTA_COUNT], present[DB_QUOTA_COUNT] = { false };
	struct db_quota_refusal ref = { 0 };
	json_t *q = NULL, *p;

	CHECK(!strcmp(db_quota_name(DB_QUOTA_PROPERTIES), "properties"));
	CHECK(!strcmp(db_quota_name(DB_QUOTA_EDGE_HOSTNAMES), "edge_hostnames"));
	for (int i = 0; i < DB_QUOTA_COUNT; i++)
		CHECK(db_quota_find(db_quota_name((enum db_quota)i)) == i);
	CHECK(db_quota_find("nope") == -1);
	CHECK(db_quota_find("") == -1);

	CHECK_RC(db_quota_limits(db, ta, defaults, limits, over), CP_OK);
	for (int i = 0; i < DB_QUOTA_COUNT; i++)
		CHECK(limits[i] == defaults[i] && !over[i]);

	/* Override webhooks to 0 and properties to 7. */
	present[DB_QUOTA_WEBHOOKS] = present[DB_QUOTA_PROPERTIES] = true;
	values[DB_QUOTA_WEBHOOKS] = 0;
	values[DB_QUOTA_PROPERTIES] = 7;
	CHECK_RC(db_quota_set(db, ta, values, present), CP_OK);
	CHECK_RC(db_quota_limits(db, ta, defaults, limits, over), CP_OK);
	CHECK(limits[DB_QUOTA_WEBHOOKS] == 0 && over[DB_QUOTA_WEBHOOKS]);
	CHECK(limits[DB_QUOTA_PROPERTIES] == 7 && over[DB_QUOTA_PROPERTIES]);
	CHECK(limits[DB_QUOTA_CERTIFICATES] == 5 && !over[DB_QUOTA_CERTIFICATES]);
	CHECK_RC(db_quota_limits(db, tb, defaults, limits, over), CP_OK); /* not tb's */
	CHECK(limits[DB_QUOTA_WEBHOOKS] == 4 && !over[DB_QUOTA_WEBHOOKS]);

	/* Check: growth past a limit is refused and says which. */
	CHECK_RC(db_quota_check(db, ta, defaults, &(struct db_quota_change){ .properties = 1 },
				&ref),
		 CP_OK);
	CHECK_RC(db_quota_check(db, ta, defaults, &(struct db_quota_change){ .webhooks = 1 }, &ref),
		 CP_ERR_CONFLICT);
	CHECK(ref.quota == DB_QUOTA_WEBHOOKS && ref.limit == 0 && ref.requested == 1);
	CHECK(ref.used == 0);
	CHECK_RC(db_quota_check(db, tb, defaults, &(struct db_quota_change){ .edge_hostnames = 2 },
				&ref),
		 CP_ERR_CONFLICT);
	CHECK(ref.quota == DB_QUOTA_EDGE_HOSTNAMES && ref.limit == 1 && ref.requested == 2);
	CHECK_RC(db_quota_check(db, tb, defaults, &(struct db_quota_change){ 0 }, &ref), CP_OK);

	CHECK_RC(db_quota_get(db, ta, defaults, &q), CP_OK);
	CHECK(!strcmp(fx_str(q, "tenant_id"), ta));
	p = json_object_get(json_object_get(q, "quotas"), "properties");
	CHECK(json_integer_value(json_object_get(p, "limit")) == 7);
	CHECK(json_integer_value(json_object_get(p, "default")) == 2);
	CHECK(json_is_true(json_object_get(p, "overridden")));
	CHECK(json_integer_value(json_object_get(p, "used")) == 0);
	json_decref(q);
	q = NULL;

	/* A negative value goes back to the default; others are kept. */
	memset(present, 0, sizeof(present));
	present[DB_QUOTA_WEBHOOKS] = true;
	values[DB_QUOTA_WEBHOOKS] = -1;
	CHECK_RC(db_quota_set(db, ta, values, present), CP_OK);
	CHECK_RC(db_quota_limits(db, ta, defaults, limits, over), CP_OK);
	CHECK(limits[DB_QUOTA_WEBHOOKS] == 4 && !over[DB_QUOTA_WEBHOOKS]);
	CHECK(limits[DB_QUOTA_PROPERTIES] == 7 && over[DB_QUOTA_PROPERTIES]);
	CHECK_RC(db_quota_set(db, "00000000-0000-4000-8000-000000000000", values, present),
		 CP_ERR_NOT_FOUND);

	fx_fail(db, true);
	CHECK_RC(db_quota_limits(db, ta, defaults, limits, over), CP_ERR_INTERNAL);
	CHECK_RC(db_quota_check(db, ta, defaults, &(struct db_quota_change){ .webhooks = 1 }, &ref),
		 CP_ERR_INTERNAL);
	CHECK_RC(db_quota_get(db, ta, defaults, &q), CP_ERR_INTERNAL);
	CHECK_RC(db_quota_set(db, ta, values, present), CP_ERR_INTERNAL);
	fx_fail(db, false);
	CHECK(q == NULL);
}

/* The write generation (db_write_gen, db/driver_sqlite.c): on SQLite it
 * moves after every commit of any connection (an autocommit statement, a
 * transaction, another thread's connection) and not for a read or a
 * rollback; the WAL hook behind it still checkpoints, so the WAL stays
 * bounded under many commits. PostgreSQL keeps none. */
static void test_write_gen(void)
{
	struct db *db = fx.db, *other = NULL;
	uint64_t g0 = 0, g1 = 0, g2 = 0;
	char wal[600];
	struct stat st;

	if (fx_pg()) {
		CHECK(!db_write_gen(db, &g0));
		return;
	}
	CHECK(db_write_gen(db, &g0));
	CHECK(fx_sql(db, "CREATE TABLE IF NOT EXISTS wg (n INTEGER, pad TEXT)"));
	CHECK(db_write_gen(db, &g1) && g1 != g0);
	(void)fx_int(db, "SELECT count(*) FROM wg");
	CHECK_RC(db_begin(db), CP_OK);
	CHECK(fx_sql(db, "INSERT INTO wg VALUES (1, 'x')"));
	CHECK(db_write_gen(db, &g2) && g2 == g1); /* not before the commit */
	db_rollback(db);
	CHECK(db_write_gen(db, &g2) && g2 == g1); /* a read, a rollback: no change */
	CHECK_RC(db_open(fx.path, &other), CP_OK);
	CHECK(other && fx_sql(other, "INSERT INTO wg VALUES (2, 'y')"));
	CHECK(db_write_gen(db, &g2) && g2 != g1); /* another connection's commit */
	/* ~4,000 pages in 400 commits: without checkpoints the WAL would hold
	 * them all (16 MiB); with wal_autocheckpoint's 1,000 pages it is
	 * reused from its start. */
	for (int i = 0; i < 400 && other; i++)
		CHECK(fx_sql(other,
			     "INSERT INTO wg SELECT 3, zeroblob(4000) "
			     "FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL "
			     "SELECT 4 UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 "
			     "UNION ALL SELECT 8 UNION ALL SELECT 9 UNION ALL SELECT 10)"));
	snprintf(wal, sizeof(wal), "%s-wal", fx.path);
	CHECK(stat(wal, &st) == 0 && st.st_size < 8 * 1024 * 1024);
	CHECK(fx_sql(other ? other : db, "DROP TABLE wg"));
	db_close(other);
}

int main(void)
{
	if (!fx_open(&fx, "test-db")) {
		fprintf(stderr, "test_db: setup failed\n");
		return 1;
	}
	if (!fx_tenant(fx.db, "a", ta) || !fx_tenant(fx.db, "b", tb)) {
		fprintf(stderr, "test_db: tenants failed\n");
		fx_close(&fx);
		return 1;
	}
	test_core();
	test_write_gen();
	test_thread();
	test_tenants();
	test_audit();
	test_idem();
	test_jobs();
	test_constant_lists();
	test_events();
	test_quotas();
	fx_close(&fx);
	return check_exit("test_db");
}
