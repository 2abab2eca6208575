/*
 * secrets.c - master-key rotation: every encrypted column of every table is
 * listed here, and db_secrets_reseal re-encrypts each value that is not yet
 * under the current master key, in one transaction; db_secrets_rotate is the
 * whole rotation (new key, re-seal, count what is left, prune). The authenticated data
 * of a sealed value is always "<table>:<row id>", so a ciphertext copied into
 * another row no longer opens.
 */
#include "crypto/crypto.h"
#include "db/db_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Every sealed column: table, id column, sealed column. */
static const struct {
	const char *table, *id_col, *col;
} sealed_columns[] = {
	{ "certificate_versions", "id", "private_key" },
	{ "acme_accounts", "id", "key" },
	{ "orders", "id", "key" },
	{ "webhooks", "id", "secret" },
	{ "webhooks", "id", "previous_secret" }, /* during a rotation's overlap */
	/* Idempotent replays of responses that carried a secret. */
	{ "idempotency", "actor || ':' || tenant_id || ':' || method || ':' || path || ':' || key",
	  "response" },
	/* SEALED COLUMNS: { "table", "id", "column" }, */
	{ NULL, NULL, NULL },
};

/* Re-seal one column's stale values (inside the caller's transaction).
 * Every SQLite call is checked: a failed step of the SELECT must not look
 * like the end of the rows, or a half-done rotation would be committed and
 * its old key pruned. CP_OK only when every stale value was re-sealed. */
static cp_rc reseal_column(struct db *db, const struct crypto_keyring *ring, const char *table,
			   const char *id_col, const char *col, int *count)
{
	/* substr, not LIKE: exact on both engines (LIKE ignores ASCII case on
	 * SQLite only). */
	char *sel = cp_aprintf("SELECT %s, %s FROM %s WHERE substr(%s, 1, 5) = 'cpk1:'", id_col,
			       col, table, col);
	char *upd = cp_aprintf("UPDATE %s SET %s = ? WHERE %s = ?", table, col, id_col);
	struct db_stmt *st = NULL, *up = NULL;
	cp_rc rc = CP_ERR_NOMEM;
	int r = DB_DONE;

	if (!sel || !upd)
		goto out;
	if ((r = db_prepare(db, sel, &st)) != DB_DONE ||
	    (r = db_prepare(db, upd, &up)) != DB_DONE) {
		rc = db_rc(db, r);
		if (rc == CP_OK)
			rc = CP_ERR_INTERNAL;
		goto out;
	}
	rc = CP_OK;
	while (rc == CP_OK && (r = db_step(st)) == DB_ROW) {
		const char *id = db_col_text(st, 0);
		const char *sealed = db_col_text(st, 1);
		char *aad = NULL, *pt = NULL, *resealed = NULL;
		size_t n = 0;
		if (!id || !sealed) {
			rc = CP_ERR_NOMEM; /* NULL text of a non-NULL column: out of memory */
			break;
		}
		if (crypto_sealed_is_current(ring, sealed))
			continue;
		aad = cp_aprintf("%s:%s", table, id);
		rc = aad ? crypto_open(ring, aad, sealed, &pt, &n) : CP_ERR_NOMEM;
		if (rc == CP_OK)
			rc = crypto_seal(ring, aad, pt, n, &resealed);
		if (rc == CP_OK) {
			db_reset(up);
			db_bind_text(up, 1, resealed);
			db_bind_text(up, 2, id);
		}
		if (rc == CP_OK) {
			int u = db_step(up);
			rc = u == DB_DONE ? CP_OK : db_rc(db, u);
			if (rc == CP_OK)
				rc = db_changes(db) == 1 ? CP_OK : CP_ERR_INTERNAL;
			if (rc == CP_OK)
				(*count)++;
		}
		if (rc != CP_OK)
			cp_logf(CP_LOG_ERROR, "secrets.reseal",
				"cannot re-seal %s.%s of row %.200s: %s", table, col, id,
				cp_rc_str(rc));
		free(aad);
		free(resealed);
		crypto_wipe_free_buf(pt, n);
	}
	/* The loop ends on a failed row (rc), on DB_DONE, or on an error of
	 * the SELECT itself (busy, interrupt, I/O, corruption): that is a failure. */
	if (rc == CP_OK && r != DB_DONE) {
		rc = db_rc(db, r);
		if (rc == CP_OK)
			rc = CP_ERR_INTERNAL;
		cp_logf(CP_LOG_ERROR, "secrets.reseal", "reading %s.%s failed: %s", table, col,
			db->drv->errmsg(db->conn));
	}
out:
	db_finalize(db, st);
	db_finalize(db, up);
	free(sel);
	free(upd);
	return rc;
}

cp_rc db_secrets_reseal(struct db *db, const struct crypto_keyring *ring, int *count)
{
	cp_rc rc;

	assert(db && ring && count);
	*count = 0;
	rc = db_begin(db);
	for (size_t i = 0; rc == CP_OK && sealed_columns[i].table; i++)
		rc = reseal_column(db, ring, sealed_columns[i].table, sealed_columns[i].id_col,
				   sealed_columns[i].col, count);
	if (rc == CP_OK)
		return db_commit(db);
	db_rollback(db);
	*count = 0;
	return rc;
}

cp_rc db_secrets_count_stale(struct db *db, const struct crypto_keyring *ring, int64_t *stale)
{
	char cur[33], *prefix = NULL;
	cp_rc rc = CP_ERR_NOMEM;

	assert(db && ring && stale);
	*stale = 0;
	crypto_keyring_current_id(ring, cur);
	prefix = cp_aprintf("cpk1:%s:", cur);
	if (!prefix)
		return CP_ERR_NOMEM;
	rc = CP_OK;
	for (size_t i = 0; rc == CP_OK && sealed_columns[i].table; i++) {
		/* substr, not LIKE: exact and case-sensitive on the key id, in
		 * both engines. The column is not NULL where the first test
		 * holds, so <> is IS NOT; ?2 is the prefix's length, bound
		 * rather than length(?1), whose type PostgreSQL cannot infer. */
		char *sql = cp_aprintf("SELECT count(*) FROM %s WHERE substr(%s, 1, 5) = 'cpk1:' "
				       "AND substr(%s, 1, ?2) <> ?1",
				       sealed_columns[i].table, sealed_columns[i].col,
				       sealed_columns[i].col);
		struct db_stmt *st = NULL;
		int r;
		if (!sql) {
			rc = CP_ERR_NOMEM;
			break;
		}
		if ((r = db_prepare(db, sql, &st)) == DB_DONE) {
			db_bind_text(st, 1, prefix);
			db_bind_int64(st, 2, (int64_t)strlen(prefix));
			r = db_step(st);
		}
		if (r == DB_ROW) {
			*stale += db_col_int64(st, 0);
		} else {
			rc = db_rc(db, r);
			if (rc == CP_OK)
				rc = CP_ERR_INTERNAL;
		}
		db_finalize(db, st);
		free(sql);
	}
	free(prefix);
	return rc;
}

cp_rc db_secrets_rotate(struct db *db, struct crypto_keyring *ring, const char *data_dir,
			int *count, int64_t *stale)
{
	cp_rc rc;

	assert(db && ring && data_dir && count && stale);
	*count = 0;
	*stale = -1;
	rc = crypto_keyring_rotate(ring, data_dir);
	if (rc == CP_OK)
		rc = db_secrets_reseal(db, ring, count);
	/* Count what the committed database really holds: prune only when no
	 * value is left under any older key, whatever the re-seal reported. */
	if (rc == CP_OK)
		rc = db_secrets_count_stale(db, ring, stale);
	if (rc == CP_OK && *stale != 0) {
		cp_logf(CP_LOG_ERROR, "secrets.rotate",
			"%lld sealed values are still under an older key; older keys kept",
			(long long)*stale);
		rc = CP_ERR_INTERNAL;
	}
	if (rc == CP_OK)
		rc = crypto_keyring_prune(ring, data_dir);
	return rc;
}
