/*
 * accounts.c - ACME accounts, one per configured CA. The account key is
 * stored sealed (aad "acme_accounts:<id>"); the account URL (kid) is kept
 * once the CA registered it and forgotten when the CA says it no longer
 * exists, so the next order registers again with the same key.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* An account as the worker reads it: ACCOUNT_COLS, member by member. */
#define ACCOUNT_COLS "id, ca, directory_url, key, account_url"
/* clang-format off */
static const struct db_jw_field account_fields[] = {
	{ "id", DB_JW_TEXT },
	{ "ca", DB_JW_TEXT },
	{ "directory_url", DB_JW_TEXT },
	{ "key", DB_JW_TEXT },
	{ "account_url", DB_JW_TEXT },
};
/* clang-format on */

cp_rc db_acme_account_get(struct db *db, const char *ca, json_t **out)
{
	static const char sql[] = "SELECT " ACCOUNT_COLS " FROM acme_accounts WHERE ca = ?1";
	struct db_stmt *st = db_stmt_keyed(db, sql, ca, NULL);

	assert(db && out);
	return db_fetch_fields(db, st, account_fields, CP_ARRAY_LEN(account_fields), out);
}

cp_rc db_acme_account_create(struct db *db, const char *id, const char *ca,
			     const char *directory_url, const char *sealed_key)
{
	assert(db);

	/* Two workers may race to create the first account of a CA: the
	 * first insert wins, the loser reads the winner's row. */
	static const char sql[] =
		"INSERT INTO acme_accounts (id, ca, directory_url, key, created_at, updated_at) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (ca) DO NOTHING";
	struct db_stmt *st = db_stmt_keyed(db, sql, id, ca);

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, directory_url);
	db_bind_text(st, 4, sealed_key);
	db_bind_int64(st, 5, cp_now());
	return db_exec_stmt(db, st);
}

cp_rc db_acme_account_set_url(struct db *db, const char *ca, const char *account_url)
{
	static const char sql[] =
		"UPDATE acme_accounts SET account_url = ?2, updated_at = ?3 WHERE ca = ?1";
	struct db_stmt *st = db_stmt_keyed(db, sql, ca, account_url);

	assert(db);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 3, cp_now());
	return db_exec_stmt(db, st);
}
