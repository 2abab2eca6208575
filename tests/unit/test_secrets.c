/*
 * test_secrets.c - master-key rotation (db/secrets.c) under failure. A
 * rotation that fails at any point must leave every sealed value readable
 * and the old key in data_dir/master.keys; only a rotation that re-sealed
 * every value may prune.
 *
 * White-box: the test includes db/db_internal.h to plant rows in every
 * sealed column through the driver, on the fixture's backend (SQLite, or
 * PostgreSQL with CERTPLANE_TEST_DB=pg), and on SQLite to inject faults
 * with a progress handler on the connection's sqlite3 handle that
 * interrupts the Nth virtual-machine step of whatever statement runs then
 * (the SELECT that walks a column, an UPDATE, the COMMIT); PostgreSQL has
 * no such hook, so there the rotation runs once without a fault. Before the fix an interrupted
 * SELECT looked like the end of the rows: the half-done rotation was committed and the old key
 * pruned, and the values still under it never opened again.
 * Exit status is the number of failed checks (capped), 0 on success.
 */
#include <assert.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/crypto.h"
#include "db/db_internal.h"

#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

#define ROWS 3 /* per sealed column */

/* One planted sealed value: its table, the id its aad uses, the plaintext. */
struct planted {
	const char *table, *id_sql, *col;
	char id[64];
	char plain[64];
};

static struct planted planted[5 * ROWS];
static size_t nplanted;

/* The sealed columns of db/secrets.c, each with an INSERT of one row. */
static const struct {
	const char *table, *id_sql, *col, *insert;
} tables[] = {
	{ "certificate_versions", "id", "private_key",
	  "INSERT INTO certificate_versions (id, certificate_id, tenant_id, version, cert_pem, "
	  "private_key, key_type, issuer, serial, not_before, not_after, fingerprint_sha256, "
	  "created_at) VALUES (CAST(?1 AS TEXT), 'c-' || CAST(?1 AS TEXT), 't', 1, 'pem', ?2, "
	  "'ecdsa-p256', 'i', 's', 0, 1, "
	  "'f', 0)" },
	{ "acme_accounts", "id", "key",
	  "INSERT INTO acme_accounts (id, ca, directory_url, key, created_at, updated_at) "
	  "VALUES (CAST(?1 AS TEXT), 'ca-' || CAST(?1 AS TEXT), 'https://ca.test/dir', ?2, 0, 0)" },
	{ "orders", "id", "key",
	  "INSERT INTO orders (id, tenant_id, certificate_id, kind, challenge, identifiers, ca, "
	  "key_type, key, created_at, updated_at) VALUES (CAST(?1 AS TEXT), 't', "
	  "'c-' || CAST(?1 AS TEXT), 'issue', "
	  "'http-01', '[\"a.test\"]', 'letsencrypt', 'ecdsa-p256', ?2, 0, 0)" },
	{ "webhooks", "id", "secret",
	  "INSERT INTO webhooks (id, tenant_id, url, secret, created_at, updated_at) "
	  "VALUES (?1, 't', 'https://hook.test/', ?2, 0, 0)" },
	{ "idempotency", "actor || ':' || tenant_id || ':' || method || ':' || path || ':' || key",
	  "response",
	  "INSERT INTO idempotency (actor, tenant_id, method, path, key, state, owner, lease_until, "
	  "body_hash, status, content_type, response, created_at) VALUES ('operator', '', 'POST', "
	  "'/v1/x', ?1, 'done', 'r', 0, 'h', 201, 'application/json', ?2, 0)" },
};

static bool exec_ok(struct db *db, const char *sql)
{
	return fx_sql(db, sql);
}

/* A fresh data_dir (f->dir) with the fixture's database holding ROWS sealed
 * values per column, all under the first key of a new master.keys. */
static bool fixture(struct fx *f)
{
	struct db *db = NULL;
	struct crypto_keyring *ring = NULL;
	bool ok = false;

	nplanted = 0;
	if (!fx_open(f, "secrets") || crypto_keyring_load(f->dir, NULL, &ring) != CP_OK)
		goto out;
	db = f->db;
	cp_log_set_level((enum cp_log_level)(CP_LOG_ERROR + 1)); /* the faults log on purpose */
	/* Rows without their parents: this test is about the sealed columns.
	 * (PostgreSQL's foreign keys are triggers, which the replica role
	 * skips, with the other triggers: none matters to sealed columns.) */
	if (!exec_ok(db, fx_pg() ? "SET session_replication_role = replica"
				 : "PRAGMA foreign_keys=OFF"))
		goto out;
	for (size_t t = 0; t < sizeof(tables) / sizeof(tables[0]); t++) {
		for (int i = 0; i < ROWS; i++) {
			struct planted *p = &planted[nplanted++];
			char *aad = NULL, *sealed = NULL;
			struct db_stmt *st = NULL;
			bool row_ok;
			p->table = tables[t].table;
			p->id_sql = tables[t].id_sql;
			p->col = tables[t].col;
			snprintf(p->id, sizeof(p->id), "%s-%d", tables[t].table, i);
			snprintf(p->plain, sizeof(p->plain), "secret of %s row %d", tables[t].table,
				 i);
			/* The idempotency aad is "actor:tenant:method:path:key". */
			aad = !strcmp(p->table, "idempotency")
				      ? cp_aprintf("idempotency:operator::POST:/v1/x:%s", p->id)
				      : cp_aprintf("%s:%s", p->table, p->id);
			row_ok = aad &&
				 crypto_seal(ring, aad, p->plain, strlen(p->plain), &sealed) ==
					 CP_OK &&
				 db_prepare(db, tables[t].insert, &st) == DB_DONE;
			if (row_ok) {
				db_bind_text(st, 1, p->id);
				db_bind_text(st, 2, sealed);
				row_ok = db_step(st) == DB_DONE;
			}
			if (!row_ok)
				fprintf(stderr, "fixture %s: %s\n", p->table,
					db->drv->errmsg(db->conn));
			if (st)
				db_finalize(db, st);
			free(aad);
			free(sealed);
			if (!row_ok)
				goto out;
			if (!strcmp(p->table, "idempotency"))
				snprintf(p->id, sizeof(p->id), "operator::POST:/v1/x:%s-%d",
					 tables[t].table, i);
		}
	}
	ok = exec_ok(db,
		     fx_pg() ? "SET session_replication_role = DEFAULT" : "PRAGMA foreign_keys=ON");
out:
	crypto_keyring_free(ring);
	return ok;
}

/* The first line of dir/master.keys (the original key), or "" */
static void first_key_line(const char *dir, char *out, size_t n)
{
	char path[256];
	FILE *f;

	out[0] = '\0';
	snprintf(path, sizeof(path), "%s/master.keys", dir);
	f = fopen(path, "r");
	if (f) {
		if (!fgets(out, (int)n, f))
			out[0] = '\0';
		fclose(f);
	}
}

static int key_lines(const char *dir, const char *want_line, bool *has)
{
	char path[256], line[256];
	FILE *f;
	int n = 0;

	*has = false;
	snprintf(path, sizeof(path), "%s/master.keys", dir);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		n++;
		if (!strcmp(line, want_line))
			*has = true;
	}
	fclose(f);
	return n;
}

/* With the ring read back from the file, every planted value opens to its
 * plaintext. *current counts those under the ring's current key. */
static bool all_readable(struct db *db, const char *dir, int *current)
{
	struct crypto_keyring *ring = NULL;
	bool ok = true;

	*current = 0;
	if (crypto_keyring_load(dir, NULL, &ring) != CP_OK)
		return false;
	for (size_t i = 0; i < nplanted; i++) {
		const struct planted *p = &planted[i];
		char *sql =
			cp_aprintf("SELECT %s FROM %s WHERE %s = ?", p->col, p->table, p->id_sql);
		char *aad = cp_aprintf("%s:%s", p->table, p->id), *pt = NULL;
		struct db_stmt *st = NULL;
		size_t n = 0;
		bool one = sql && aad && db_prepare(db, sql, &st) == DB_DONE;
		const char *sealed = NULL;

		if (one) {
			db_bind_text(st, 1, p->id);
			one = db_step(st) == DB_ROW;
		}
		sealed = one ? db_col_text(st, 0) : NULL;
		one = one && sealed && crypto_open(ring, aad, sealed, &pt, &n) == CP_OK &&
		      n == strlen(p->plain) && memcmp(pt, p->plain, n) == 0;
		if (one && crypto_sealed_is_current(ring, sealed))
			(*current)++;
		if (!one) {
			fprintf(stderr, "unreadable after rotation: %s %s\n", p->table, p->id);
			ok = false;
		}
		crypto_wipe_free_buf(pt, n);
		if (st)
			db_finalize(db, st);
		free(sql);
		free(aad);
	}
	crypto_keyring_free(ring);
	return ok;
}

/* Progress handler: interrupt exactly once, at call number `at` (0: never). */
struct fault {
	long calls, at;
	bool fired;
};

static int progress(void *arg)
{
	struct fault *f = arg;

	if (++f->calls == f->at) {
		f->fired = true;
		return 1;
	}
	return 0;
}

/*
 * One rotation with a fault at progress call `at` (0 = none). Returns the
 * number of progress calls the rotation made; *rc_out its result.
 * Checks the invariant: every value opens with the ring in the file; a
 * failure keeps the original key; a success re-sealed everything and left
 * one key.
 */
static long trial(long at, cp_rc *rc_out, bool *fired)
{
	char orig[256];
	struct fx fx = { 0 };
	const char *dir = fx.dir;
	struct db *db = NULL;
	struct crypto_keyring *ring = NULL;
	struct fault f = { .at = at };
	int count = 0, current = 0, lines;
	int64_t stale = 0;
	bool has_orig = false;
	cp_rc rc;

	assert(at == 0 || !fx_pg()); /* faults are SQLite's progress handler */
	*rc_out = CP_ERR_INTERNAL;
	*fired = false;
	if (!fixture(&fx)) {
		CHECK(!"fixture");
		goto out;
	}
	first_key_line(dir, orig, sizeof(orig));
	CHECK(orig[0] != '\0');
	/* A connection of its own, as the rotation command opens. */
	if (db_open(fx.path, &db) != CP_OK || crypto_keyring_load(dir, NULL, &ring) != CP_OK) {
		CHECK(!"open");
		goto out;
	}
	if (!fx_pg())
		sqlite3_progress_handler(db_sqlite_handle(db), 1, progress, &f);
	rc = db_secrets_rotate(db, ring, dir, &count, &stale);
	if (!fx_pg())
		sqlite3_progress_handler(db_sqlite_handle(db), 0, NULL, NULL);
	*rc_out = rc;
	*fired = f.fired;
	CHECK(all_readable(db, dir, &current));
	lines = key_lines(dir, orig, &has_orig);
	if (rc == CP_OK) {
		/* Done: everything under the new key, the old key gone. */
		CHECK(count == (int)nplanted);
		CHECK(current == (int)nplanted);
		CHECK(stale == 0);
		CHECK(lines == 1 && !has_orig);
	} else {
		/* Failed anywhere: the original key is still there. */
		if (!has_orig)
			fprintf(stderr, "fault at %ld: %s, original key pruned\n", at,
				cp_rc_str(rc));
		CHECK(has_orig);
		CHECK(lines >= 1);
	}
	if (!f.fired)
		CHECK(rc == CP_OK); /* no fault: the rotation must succeed */
out:
	crypto_keyring_free(ring);
	db_close(db);
	fx_close(&fx);
	return f.calls;
}

/* A fault at every point of a rotation (sampled) keeps every value readable. */
static void test_rotation_faults(void)
{
	cp_rc rc;
	bool fired;
	long total = trial(0, &rc, &fired), step, failed = 0, ok = 0;

	CHECK(rc == CP_OK && total > 0);
	step = total / 120 > 0 ? total / 120 : 1;
	for (long at = 1; at <= total; at += step) {
		(void)trial(at, &rc, &fired);
		CHECK(fired);
		if (rc == CP_OK)
			ok++;
		else
			failed++;
	}
	/* The sweep really hit failures (and not only before the first row). */
	CHECK(failed > 10);
	printf("test_secrets: %ld progress steps per rotation; of the faults, %ld failed it "
	       "(old key kept) and %ld let it complete\n",
	       total, failed, ok);
}

/* A sealed value that no longer opens (corrupted row) stops the rotation:
 * nothing is committed, the old key stays, every other value opens. */
static void test_rotation_corrupted_row(void)
{
	char orig[256];
	struct fx fx = { 0 };
	const char *dir = fx.dir;
	struct db *db = NULL;
	struct crypto_keyring *ring = NULL;
	int count = 0, current = 0;
	int64_t stale = 0;
	bool has_orig = false;
	cp_rc rc;

	if (!fixture(&fx)) {
		CHECK(!"fixture");
		goto out;
	}
	first_key_line(dir, orig, sizeof(orig));
	if (db_open(fx.path, &db) != CP_OK || crypto_keyring_load(dir, NULL, &ring) != CP_OK) {
		CHECK(!"open");
		goto out;
	}
	/* Change one base64 character of the last webhook's secret (in its
	 * tag). Not one of the last four: in a final group with padding, the
	 * low bits of a character are padding and a lenient decoder ignores
	 * them (A <-> B there changed nothing, one run in four). */
	CHECK(exec_ok(db, "UPDATE webhooks SET secret = substr(secret, 1, length(secret) - 6) || "
			  "CASE WHEN substr(secret, length(secret) - 5, 1) = 'A' THEN 'g' ELSE 'A' "
			  "END || substr(secret, length(secret) - 4) WHERE id = 'webhooks-2'"));
	rc = db_secrets_rotate(db, ring, dir, &count, &stale);
	CHECK(rc == CP_ERR_CRYPTO);
	CHECK(count == 0);
	CHECK(key_lines(dir, orig, &has_orig) == 2 && has_orig);
	/* Every value but the corrupted one opens, none was re-sealed. */
	nplanted--; /* webhooks-2 is planted[3 * ROWS + 2]: move it out of the check */
	{
		struct planted bad = planted[3 * ROWS + 2];
		planted[3 * ROWS + 2] = planted[nplanted];
		planted[nplanted] = bad;
	}
	CHECK(all_readable(db, dir, &current));
	CHECK(current == 0);
	/* Repaired (here: the row removed), the next rotation completes. */
	CHECK(exec_ok(db, "DELETE FROM webhooks WHERE id = 'webhooks-2'"));
	crypto_keyring_free(ring);
	ring = NULL;
	CHECK(crypto_keyring_load(dir, NULL, &ring) == CP_OK);
	CHECK(db_secrets_rotate(db, ring, dir, &count, &stale) == CP_OK);
	CHECK(count == (int)nplanted && stale == 0);
	CHECK(all_readable(db, dir, &current) && current == (int)nplanted);
	CHECK(key_lines(dir, orig, &has_orig) == 1 && !has_orig);
out:
	crypto_keyring_free(ring);
	db_close(db);
	fx_close(&fx);
}

int main(void)
{
	test_rotation_corrupted_row();
	if (fx_pg()) {
		/* No fault injection on PostgreSQL: one rotation, which must
		 * re-seal everything and prune the old key (trial's checks). */
		cp_rc rc;
		bool fired;
		(void)trial(0, &rc, &fired);
		CHECK(rc == CP_OK && !fired);
	} else {
		test_rotation_faults();
	}
	return check_exit("test_secrets");
}
