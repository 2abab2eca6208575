/*
 * orders.c - ACME orders and their authorizations, the lookups the ACME
 * engine makes around them (HTTP-01 key authorizations by token, the edge
 * hostname a hostname must point at), and waking an order's job early.
 *
 * An order row is the durable memory of one CA order: the worker stores
 * every URL and state it reaches with db_order_save() before it takes the
 * next step, so that a process killed at any instant resumes the same CA
 * order. Patches are JSON objects: a member present sets the column (null
 * clears it), a member absent keeps it; one static statement serves every
 * step. A terminal status (valid, failed, canceled) is never changed
 * again, so a worker racing a cancel cannot revive the order.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* The API's view of an order (no URLs of the CA, no key). */
/* clang-format off */
#define AUTHZ_JSON                                                                        \
	"json_object('identifier', identifier, 'status', status, 'expires_at', "          \
	DB_TS("expires_at") ", 'challenge', CASE WHEN challenge_type IS NULL THEN NULL "  \
	"WHEN challenge_type = 'dns-01' THEN json_object('type', challenge_type, "         \
	"'token', token, 'txt_record_name', txt_record_name, 'txt_record_value', "         \
	"txt_record_value) ELSE json_object('type', challenge_type, 'token', token, "      \
	"'url', 'http://' || identifier || '/.well-known/acme-challenge/' || token, "      \
	"'body', key_authorization) END)"
/* clang-format on */
/* clang-format off */
#define ORDER_JSON                                                                          \
	"json_object('id', o.id, 'certificate_id', o.certificate_id, 'kind', o.kind, "      \
	"'status', o.status, 'challenge', o.challenge, 'identifiers', json(o.identifiers), " \
	"'ca', o.ca, 'key_type', o.key_type, 'authorizations', coalesce(json((SELECT "       \
	"json_group_array(json(j)) FROM (SELECT " AUTHZ_JSON " AS j FROM "                  \
	"order_authorizations WHERE order_id = o.id ORDER BY position))), json('[]')), "    \
	"'error', CASE WHEN o.error_reason IS NULL THEN NULL ELSE json_object('reason', "   \
	"o.error_reason, 'detail', o.error_detail) END, 'attempts', o.attempts, "           \
	"'next_attempt_at', " DB_TS("o.next_attempt_at") ", 'dns01_deadline', "             \
	DB_TS("o.dns_deadline") ", 'metadata', json(coalesce(o.metadata, '{}')), "          \
	"'created_at', " DB_TS("o.created_at") ", 'updated_at', " DB_TS("o.updated_at")     \
	", 'completed_at', " DB_TS("o.completed_at") ")"
/* clang-format on */

/* The worker's view: everything, times as unix seconds, CA URLs, sealed key. */
/* clang-format off */
#define AUTHZ_FULL_JSON                                                                     \
	"json_object('position', position, 'url', url, 'identifier', identifier, 'status', " \
	"status, 'challenge_type', challenge_type, 'challenge_url', challenge_url, 'token', " \
	"token, 'key_authorization', key_authorization, 'txt_record_name', txt_record_name, " \
	"'txt_record_value', txt_record_value, 'expires_at', expires_at, 'notified', "        \
	"notified, 'responded', responded, 'completed', completed)"
/* clang-format on */
/* clang-format off */
#define ORDER_FULL_JSON                                                                      \
	"json_object('id', o.id, 'tenant_id', o.tenant_id, 'certificate_id', o.certificate_id, " \
	"'kind', o.kind, 'status', o.status, 'challenge', o.challenge, 'identifiers', "      \
	"json(o.identifiers), 'ca', o.ca, 'key_type', o.key_type, 'metadata', "             \
	"json(coalesce(o.metadata, '{}')), 'account_url', o.account_url, 'order_url', "      \
	"o.order_url, 'finalize_url', o.finalize_url, 'certificate_url', o.certificate_url, " \
	"'key', o.key, 'error_reason', o.error_reason, 'attempts', o.attempts, "            \
	"'dns_deadline', o.dns_deadline, 'verify_at', o.verify_at, 'created_at', "           \
	"o.created_at, 'authorizations', coalesce(json((SELECT json_group_array(json(j)) "   \
	"FROM (SELECT " AUTHZ_FULL_JSON " AS j FROM order_authorizations WHERE order_id = "  \
	"o.id ORDER BY position))), json('[]')))"
/* clang-format on */

cp_rc db_order_create(struct db *db, const char *tenant_id, const char *id,
		      const char *certificate_id, const char *kind, const char *challenge,
		      const json_t *identifiers, const char *ca, const char *key_type,
		      const json_t *metadata)
{
	static const char sql[] =
		"INSERT INTO orders (id, tenant_id, certificate_id, kind, challenge, identifiers, "
		"ca, key_type, metadata, created_at, updated_at) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10)";
	struct db_stmt *st = db_stmt_keyed(db, sql, id, tenant_id);

	assert(db && tenant_id);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, certificate_id);
	db_bind_text(st, 4, kind);
	db_bind_text(st, 5, challenge);
	db_bind_json(st, 6, identifiers);
	db_bind_text(st, 7, ca);
	db_bind_text(st, 8, key_type);
	db_bind_json(st, 9, metadata);
	db_bind_int64(st, 10, cp_now());
	/* CP_ERR_CONFLICT: orders_in_flight says one is already running. */
	return db_exec_stmt(db, st);
}

cp_rc db_order_get(struct db *db, const char *tenant_id, const char *id, json_t **out)
{
	static const char sql[] =
		"SELECT " ORDER_JSON " FROM orders o WHERE o.tenant_id = ?1 AND o.id = ?2";
	return db_get_scoped(db, sql, tenant_id, id, out);
}

cp_rc db_order_in_flight(struct db *db, const char *tenant_id, const char *certificate_id,
			 json_t **out)
{
	static const char sql[] = "SELECT " ORDER_JSON " FROM orders o WHERE o.tenant_id = ?1 AND "
				  "o.certificate_id = ?2 AND o.status IN " DB_ORDER_IN_FLIGHT_SQL;
	return db_get_scoped(db, sql, tenant_id, certificate_id, out);
}

cp_rc db_order_list(struct db *db, const char *tenant_id, const struct db_order_filter *f,
		    struct db_page pg, struct db_list *out)
{
	/* ?5 certificate, ?6 status (NULL: no condition), ?7 hostname. Without
	 * a hostname the tenant's seq range (orders_tenant) drives; with one,
	 * its range of order_names (migration 017), joined by seq, so either
	 * is one index range scan in either order. */
#define SQL_IF " AND (?5 IS NULL OR o.certificate_id = ?5) AND (?6 IS NULL OR o.status = ?6) "
#define SQL_ALL(cmp, dir)                                                                          \
	"SELECT o.seq, " ORDER_JSON " FROM orders o WHERE o.tenant_id = ?1 AND o.seq " cmp         \
	" ?3" SQL_IF "ORDER BY o.seq" dir " LIMIT ?4"
#define SQL_NAME(cmp, dir)                                                                         \
	"SELECT o.seq, " ORDER_JSON " FROM order_names n CROSS JOIN orders o "                     \
	"ON o.seq = n.order_seq WHERE n.tenant_id = ?1 AND n.name = ?7 AND n.order_seq " cmp       \
	" ?3 AND o.tenant_id = ?1" SQL_IF "ORDER BY n.order_seq" dir " LIMIT ?4"
	static const char *const sql_all[2] = DB_LIST_BOTH(SQL_ALL);
	static const char *const sql_name[2] = DB_LIST_BOTH(SQL_NAME);
#undef SQL_IF
#undef SQL_ALL
#undef SQL_NAME
	struct db_stmt *st;

	assert(db && tenant_id && f && out);
	st = db_stmt_page(db, f->hostname ? sql_name : sql_all, tenant_id, NULL, pg);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 5, f->certificate_id);
	db_bind_text(st, 6, f->status);
	db_bind_text(st, 7, f->hostname);
	return db_fetch_page(db, st, pg.limit, out);
}

bool db_order_status_in_flight(const char *status)
{
	char quoted[32];

	/* The set is spelled once, in DB_ORDER_IN_FLIGHT_SQL: look the quoted
	 * status up in that list. */
	if (!status || strlen(status) + 3 > sizeof(quoted) || strchr(status, '\'') != NULL)
		return false;
	snprintf(quoted, sizeof(quoted), "'%s'", status);
	return strstr(DB_ORDER_IN_FLIGHT_SQL, quoted) != NULL;
}

cp_rc db_order_load(struct db *db, const char *tenant_id, const char *id, json_t **out)
{
	static const char sql[] =
		"SELECT " ORDER_FULL_JSON " FROM orders o WHERE o.tenant_id = ?1 AND o.id = ?2";
	return db_get_scoped(db, sql, tenant_id, id, out);
}

/* SET col = the patch member if present (null clears), else keep it. */
#define PATCH(col)                                                                                 \
	col " = iif(json_type(?2, '$." col "') IS NULL, " col ", json_extract(?2, '$." col "'))"

/* The cached patch statement sql with ?1 = key, ?2 = the patch, ?3 = n. */
static struct db_stmt *patch_stmt(struct db *db, const char *sql, const char *key,
				  const json_t *patch, int64_t n)
{
	struct db_stmt *st = db_stmt_keyed(db, sql, key, NULL);

	if (st) {
		db_bind_json(st, 2, patch);
		db_bind_int64(st, 3, n);
	}
	return st;
}

cp_rc db_order_save(struct db *db, const char *id, const json_t *patch)
{
	/* clang-format off */
	static const char sql[] =
		"UPDATE orders SET status = iif(status IN ('valid', 'failed', 'canceled') OR "
		"json_type(?2, '$.status') IS NULL, status, json_extract(?2, '$.status')), "
		PATCH("account_url") ", " PATCH("order_url") ", " PATCH("finalize_url") ", "
		PATCH("certificate_url") ", " PATCH("key") ", " PATCH("error_reason") ", "
		PATCH("error_detail") ", " PATCH("attempts") ", " PATCH("next_attempt_at") ", "
		PATCH("dns_deadline") ", " PATCH("verify_at") ", " PATCH("completed_at") ", "
		"updated_at = ?3 WHERE id = ?1";
	/* clang-format on */
	return db_exec_one(db, patch_stmt(db, sql, id, patch, cp_now()));
}

cp_rc db_order_authz_add(struct db *db, const char *order_id, int position, const char *url)
{
	static const char sql[] =
		"INSERT INTO order_authorizations (order_id, position, url) VALUES (?, ?, ?) "
		"ON CONFLICT (order_id, position) DO UPDATE SET url = excluded.url";
	struct db_stmt *st = db_stmt(db, sql);

	assert(db);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, order_id);
	db_bind_int64(st, 2, position);
	db_bind_text(st, 3, url);
	return db_exec_stmt(db, st);
}

cp_rc db_order_authz_save(struct db *db, const char *order_id, int position, const json_t *patch)
{
	/* clang-format off */
	static const char sql[] =
		"UPDATE order_authorizations SET "
		PATCH("identifier") ", " PATCH("status") ", " PATCH("challenge_type") ", "
		PATCH("challenge_url") ", " PATCH("token") ", " PATCH("key_authorization") ", "
		PATCH("txt_record_name") ", " PATCH("txt_record_value") ", " PATCH("expires_at") ", "
		PATCH("notified") ", " PATCH("responded") ", " PATCH("completed") " "
		"WHERE order_id = ?1 AND position = ?3";
	/* clang-format on */
	return db_exec_stmt(db, patch_stmt(db, sql, order_id, patch, position));
}
#undef PATCH

cp_rc db_order_reset(struct db *db, const char *id)
{
	assert(db);

	/* The CA forgot the order (restart, new account): start a fresh one,
	 * keeping the key (it never left us) and the attempt count. Only an
	 * order in flight: one canceled by its tenant while a run talked to
	 * the CA (or valid, or failed) never comes back to pending, so both
	 * statements carry the guard, in SQL, where the row is. */
	static const char del[] =
		"DELETE FROM order_authorizations WHERE order_id = ?1 AND EXISTS (SELECT 1 FROM "
		"orders WHERE id = ?1 AND status IN " DB_ORDER_IN_FLIGHT_SQL ")";
	static const char upd[] =
		"UPDATE orders SET status = 'pending', account_url = NULL, order_url = NULL, "
		"finalize_url = NULL, certificate_url = NULL, dns_deadline = NULL, updated_at = ?2 "
		"WHERE id = ?1 AND status IN " DB_ORDER_IN_FLIGHT_SQL;
	static const char exists[] = "SELECT 1 FROM orders WHERE id = ?";
	cp_rc rc = db_exec_stmt(db, db_stmt_keyed(db, del, id, NULL));

	if (rc == CP_OK)
		rc = db_exec_at(db, upd, id, cp_now());
	if (rc != CP_OK || db_changes(db) > 0)
		return rc;
	/* Nothing changed: a finished order, or none at all. */
	rc = db_probe(db, db_stmt_keyed(db, exists, id, NULL));
	return rc == CP_OK ? CP_ERR_CONFLICT : rc;
}

cp_rc db_http01_key_authorization(struct db *db, const char *token, const char *host, char **out)
{
	assert(db && out);

	/* Only a pending authorization of an order still in flight answers,
	 * and only to its own name: a token is no licence to answer for any
	 * Host (another tenant's name would validate through this responder).
	 * The CA shows identifiers in lower case; lower() keeps the compare
	 * exact for any other spelling. Range scan on the token index. */
	static const char sql[] =
		"SELECT a.key_authorization FROM order_authorizations a JOIN orders o ON "
		"o.id = a.order_id WHERE a.token = ? AND a.challenge_type = 'http-01' AND "
		"a.key_authorization IS NOT NULL AND a.status = 'pending' AND "
		"lower(a.identifier) = ? AND o.status IN ('pending', 'validating') LIMIT 1";
	struct db_stmt *st = db_stmt_keyed(db, sql, token, host);
	cp_rc rc = db_step_row(db, st);

	*out = NULL;
	if (rc != CP_OK)
		return rc;
	*out = cp_strdup(db_col_text(st, 0));
	db_reset(st);
	return *out ? CP_OK : CP_ERR_NOMEM;
}

cp_rc db_property_dns_targets(struct db *db, const char *tenant_id, const char *property_id,
			      json_t **out)
{
	static const char sql[] =
		"SELECT json_object('edge_hostname', e.hostname, 'hostnames', coalesce(json(("
		"SELECT json_group_array(hostname) FROM (SELECT hostname FROM property_hostnames "
		"WHERE property_id = p.id ORDER BY position))), json('[]'))) FROM properties p "
		"JOIN edge_hostnames e ON e.id = p.edge_hostname_id WHERE p.tenant_id = ? AND "
		"p.id = ?";
	return db_get_scoped(db, sql, tenant_id, property_id, out);
}

cp_rc db_job_wake(struct db *db, const char *dedupe_key)
{
	static const char sql[] = "UPDATE jobs SET run_at = ?2, updated_at = ?2 "
				  "WHERE dedupe_key = ?1 AND state = 'queued' AND run_at > ?2";
	return db_exec_at(db, sql, dedupe_key, cp_now());
}

cp_rc db_renewal_attention(struct db *db, int64_t after, int64_t until, int limit, json_t **out)
{
	/* One range scan of certificates_attention (migration 008): the cost
	 * is the rows returned, never the certificates that are not due. */
	static const char sql[] = "SELECT id, tenant_id, next_attention_at FROM certificates "
				  "WHERE next_attention_at > ?1 AND next_attention_at <= ?2 "
				  "ORDER BY next_attention_at LIMIT ?3";
	struct db_stmt *st = db_stmt(db, sql);
	json_t *arr = json_array();
	int r;

	assert(limit > 0);
	*out = NULL;
	if (!st || !arr) {
		json_decref(arr);
		return CP_ERR_INTERNAL;
	}
	db_bind_int64(st, 1, after);
	db_bind_int64(st, 2, until);
	db_bind_int64(st, 3, limit);
	while ((r = db_step(st)) == DB_ROW) {
		json_t *row = json_pack("{s:s,s:s,s:I}", "id", db_col_text(st, 0), "tenant_id",
					db_col_text(st, 1), "at", (json_int_t)db_col_int64(st, 2));
		if (!row || json_array_append_new(arr, row) != 0) {
			r = DB_E_NOMEM;
			break;
		}
	}
	db_reset(st);
	if (r != DB_DONE) {
		json_decref(arr);
		return r == DB_E_NOMEM ? CP_ERR_NOMEM : db_rc(db, r);
	}
	*out = arr;
	return CP_OK;
}

cp_rc db_renewal_candidate(struct db *db, const char *certificate_id, json_t **out)
{
	/* The scheduler's re-check of one certificate the attention scan gave:
	 * an auto-renewing server certificate with a current version, not
	 * expired, whose backoff has passed, with no order in flight, used by
	 * a property with renew automation whose latest production deployment
	 * carries it. Every lookup is by id or by an index. Whether it is due
	 * is decided by the caller (lifetime rule, ARI). */
	static const char sql[] =
		"SELECT json_object('id', c.id, 'tenant_id', c.tenant_id, 'auto_renew', "
		"c.auto_renew, 'key_type', coalesce(c.key_type, v.key_type), 'not_before', "
		"v.not_before, 'not_after', v.not_after, 'serial', v.serial, 'renew_after', "
		"coalesce(c.renew_after, 0), 'failure_count', c.failure_count, 'ca_issued', "
		"json(CASE WHEN v.order_id IS NULL THEN 'false' ELSE 'true' END)) "
		"FROM certificates c JOIN certificate_versions v ON v.certificate_id = c.id AND "
		"v.version = c.version WHERE c.id = ?2 AND c.type = 'server' AND "
		"c.auto_renew != 'none' AND v.not_after > ?1 AND (c.next_attempt_at IS NULL OR "
		"c.next_attempt_at <= ?1) AND NOT EXISTS (SELECT 1 FROM orders o WHERE "
		"o.certificate_id = c.id AND o.status IN ('pending', 'validating', 'issuing')) AND "
		"EXISTS (SELECT 1 FROM deployments d JOIN properties p ON p.id = d.property_id "
		"WHERE d.certificate_id = c.id AND p.tenant_id = c.tenant_id AND "
		"p.certificate_renew_automation = 1 AND d.environment = 'production' AND d.seq = "
		"(SELECT max(seq) FROM deployments d2 WHERE d2.property_id = d.property_id AND "
		"d2.environment = 'production'))";
	struct db_stmt *st = db_stmt(db, sql);

	*out = NULL;
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 1, cp_now());
	db_bind_text(st, 2, certificate_id);
	return db_fetch_json(db, st, out);
}

cp_rc db_renewal_facts(struct db *db, const char *tenant_id, const char *certificate_id,
		       json_t **out)
{
	/* The renewal preview's view of one certificate of the tenant: by id
	 * (unique index), its current version by (certificate_id, version)
	 * and its order in flight by orders_in_flight. */
	static const char sql[] =
		"SELECT json_object('type', c.type, 'auto_renew', c.auto_renew, 'version', "
		"c.version, 'key_type', c.key_type, 'version_key_type', v.key_type, "
		"'not_before', v.not_before, 'not_after', v.not_after, 'renew_after', "
		"coalesce(c.renew_after, 0), 'next_attempt_at', coalesce(c.next_attempt_at, 0), "
		"'next_attention_at', c.next_attention_at, 'ca_issued', json(CASE WHEN "
		"v.order_id IS NULL THEN 'false' ELSE 'true' END), 'order_in_flight', (SELECT "
		"o.id FROM orders o WHERE o.certificate_id = c.id AND o.status IN ('pending', "
		"'validating', 'issuing'))) FROM certificates c LEFT JOIN certificate_versions v "
		"ON v.certificate_id = c.id AND v.version = c.version WHERE c.tenant_id = ? AND "
		"c.id = ?";
	return db_get_scoped(db, sql, tenant_id, certificate_id, out);
}

cp_rc db_renewal_defer(struct db *db, const char *certificate_id, int64_t at)
{
	/* Only the scheduler writes next_attention_at directly, and only to
	 * move a candidate it re-checked: any later change of what the value
	 * depends on recomputes it (the triggers of migration 008). */
	static const char sql[] = "UPDATE certificates SET next_attention_at = ?2 WHERE id = ?1";
	struct db_stmt *st = db_stmt(db, sql);

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, certificate_id);
	if (at > 0)
		db_bind_int64(st, 2, at);
	else
		db_bind_null(st, 2);
	return db_exec_stmt(db, st);
}

cp_rc db_renewal_last_run_at(struct db *db, const char *ca, int64_t *out)
{
	/* The latest start of a renewal order of this CA queued and never run
	 * (a retry's run_at is no budget slot): where the scheduler's budget
	 * for it resumes after a restart. Reads only the
	 * orders in flight (the partial index orders_in_flight) and their job
	 * by its unique dedupe key. */
	static const char sql[] =
		"SELECT coalesce(max(j.run_at), 0) FROM orders o INDEXED BY orders_in_flight "
		"JOIN jobs j ON j.dedupe_key = 'acme_order:' || o.id WHERE o.status IN "
		"('pending', 'validating', 'issuing') AND o.kind = 'renew' AND o.ca = ?1 AND "
		"j.state = 'queued' AND j.attempts = 0";
	struct db_stmt *st = db_stmt(db, sql);
	int r;

	*out = 0;
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, ca);
	r = db_step(st);
	if (r == DB_ROW)
		*out = db_col_int64(st, 0);
	db_reset(st);
	return r == DB_ROW ? CP_OK : db_rc(db, r);
}

cp_rc db_renewal_hostnames(struct db *db, const char *tenant_id, const char *certificate_id,
			   json_t **out)
{
	assert(db && tenant_id && out);

	/* Every hostname of the production deployments (latest per property,
	 * renew automation on) that carry the certificate, deduplicated. */
	static const char sql[] =
		"SELECT coalesce(json_group_array(h), json('[]')) FROM (SELECT DISTINCT "
		"j.value AS h FROM deployments d JOIN properties p ON p.id = d.property_id, "
		"json_each(d.hostnames) j WHERE p.tenant_id = ?1 AND "
		"p.certificate_renew_automation = 1 AND d.environment = 'production' AND "
		"d.certificate_id = ?2 AND d.seq = (SELECT max(seq) FROM deployments d2 WHERE "
		"d2.property_id = d.property_id AND d2.environment = 'production') ORDER BY "
		"p.seq, j.key)";
	struct db_stmt *st = db_stmt(db, sql);
	int r;

	*out = NULL;
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, tenant_id);
	db_bind_text(st, 2, certificate_id);
	r = db_step(st);
	if (r == DB_ROW)
		*out = json_loads(db_col_text(st, 0), 0, NULL);
	db_reset(st);
	if (r != DB_ROW)
		return db_rc(db, r);
	return *out ? CP_OK : CP_ERR_INTERNAL;
}

cp_rc db_order_start(struct db *db, const char *tenant_id, const char *certificate_id,
		     const char *kind, const char *challenge, const json_t *identifiers,
		     const char *ca, const char *key_type, const json_t *metadata, int64_t run_at,
		     char id_out[CP_UUID_LEN + 1])
{
	char id[CP_UUID_LEN + 1], dedupe[64];
	json_t *payload = NULL;
	cp_rc rc;

	assert(db && tenant_id);
	cp_uuid(id);
	rc = db_order_create(db, tenant_id, id, certificate_id, kind, challenge, identifiers, ca,
			     key_type, metadata);
	if (rc != CP_OK)
		return rc;
	payload = json_pack("{s:s}", "order_id", id);
	snprintf(dedupe, sizeof(dedupe), "acme_order:%s", id);
	rc = payload ? db_job_enqueue(db, "acme_order", tenant_id, payload, run_at, dedupe)
		     : CP_ERR_NOMEM;
	json_decref(payload);
	if (rc == CP_OK && strcmp(kind, "renew") == 0)
		rc = db_certificate_set_status(db, tenant_id, certificate_id, "renewing");
	if (rc == CP_OK && id_out)
		memcpy(id_out, id, sizeof(id));
	return rc;
}

cp_rc db_renewal_give_up_expired(struct db *db, int *count)
{
	assert(db && count);

	/* Auto-renewal retries until the certificate expires; an expired
	 * certificate whose last attempt failed is then "failed". A later
	 * successful renewal (POST .../renew) makes it active again. */
	static const char sql[] =
		"UPDATE certificates SET status = 'failed', updated_at = ?1 WHERE type = 'server' "
		"AND auto_renew != 'none' AND failure_count > 0 AND status != 'failed' AND "
		"EXISTS (SELECT 1 FROM certificate_versions v WHERE v.certificate_id = "
		"certificates.id AND v.version = certificates.version AND v.not_after < ?1)";
	struct db_stmt *st = db_stmt(db, sql);
	cp_rc rc;

	*count = 0;
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 1, cp_now());
	rc = db_exec_stmt(db, st);
	if (rc == CP_OK)
		*count = db_changes(db);
	return rc;
}
