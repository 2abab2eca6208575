/*
 * secrets.c - master-key rotation: every encrypted column of every table is
 * listed here, and db_secrets_reseal re-encrypts each value that is not yet
 * under the current master key, in one transaction. The authenticated data
 * of a sealed value is always "<table>:<row id>", so a ciphertext copied into
 * another row no longer opens.
 */
#include "db/db_internal.h"
#include "crypto/crypto.h"

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
	/* Idempotent replays of responses that carried a secret. */
	{ "idempotency",
	  "actor || ':' || tenant_id || ':' || method || ':' || path || ':' || key", "response" },
	/* SEALED COLUMNS: { "table", "id", "column" }, */
	{ NULL, NULL, NULL },
};

/* Re-seal one column's stale values. */
static cp_rc reseal_column(struct db *db, const struct crypto_keyring *ring, const char *table,
			   const char *id_col, const char *col, int *count)
{
	char *sel = cp_aprintf("SELECT %s, %s FROM %s WHERE %s LIKE 'cpk1:%%'", id_col, col, table, col);
	char *upd = cp_aprintf("UPDATE %s SET %s = ? WHERE %s = ?", table, col, id_col);
	sqlite3_stmt *st = NULL, *up = NULL;
	cp_rc rc = CP_ERR_NOMEM;
	int r;

	if (!sel || !upd)
		goto out;
	rc = CP_ERR_INTERNAL;
	if (sqlite3_prepare_v2(db->h, sel, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_prepare_v2(db->h, upd, -1, &up, NULL) != SQLITE_OK)
		goto out;
	rc = CP_OK;
	while (rc == CP_OK && (r = sqlite3_step(st)) == SQLITE_ROW) {
		const char *id = (const char *)sqlite3_column_text(st, 0);
		const char *sealed = (const char *)sqlite3_column_text(st, 1);
		char *aad = NULL, *pt = NULL, *resealed = NULL;
		size_t n = 0;
		if (crypto_sealed_is_current(ring, sealed))
			continue;
		aad = cp_aprintf("%s:%s", table, id);
		rc = aad ? crypto_open(ring, aad, sealed, &pt, &n) : CP_ERR_NOMEM;
		if (rc == CP_OK)
			rc = crypto_seal(ring, aad, pt, n, &resealed);
		if (rc == CP_OK) {
			sqlite3_reset(up);
			sqlite3_bind_text(up, 1, resealed, -1, SQLITE_TRANSIENT);
			sqlite3_bind_text(up, 2, id, -1, SQLITE_TRANSIENT);
			rc = db_rc(db, sqlite3_step(up));
			(*count)++;
		}
		free(aad);
		free(resealed);
		crypto_wipe_free(pt);
	}
out:
	sqlite3_finalize(st);
	sqlite3_finalize(up);
	free(sel);
	free(upd);
	return rc;
}

cp_rc db_secrets_reseal(struct db *db, const struct crypto_keyring *ring, int *count)
{
	cp_rc rc;

	*count = 0;
	rc = db_begin(db);
	for (size_t i = 0; rc == CP_OK && sealed_columns[i].table; i++)
		rc = reseal_column(db, ring, sealed_columns[i].table, sealed_columns[i].id_col,
				   sealed_columns[i].col, count);
	if (rc == CP_OK)
		return db_commit(db);
	db_rollback(db);
	return rc;
}
