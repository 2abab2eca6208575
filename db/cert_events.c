/*
 * cert_events.c - lifecycle events about certificates and orders, and the
 * expiry reminders.
 *
 * db_event_certificate() and db_event_order() build an event's data from the
 * certificate's current row and version (so every event about a
 * certificate carries the same facts and the tenant's metadata) and write it
 * with db_event_add() in the caller's transaction, which also fans it out to
 * the tenant's callback URLs.
 *
 * Reminders (the rule is lifecycle_reminder, lifecycle/lifecycle.h):
 * certificate.expiring is sent when 1/3, 1/6 and 1/30 of the version's
 * lifetime is left, at most once per certificate version and threshold;
 * when several thresholds are due at once only the tightest one is sent.
 * certificate.expired is sent once per version after not_after. The row in
 * certificate_reminders and the event commit together,
 * so a crash never sends a reminder twice nor loses one.
 */
#include "db/db_internal.h"
#include "lifecycle/lifecycle.h"

#include <assert.h>
#include <string.h>

/* The facts every certificate event carries (certificate + current
 * version, which may not exist yet for a pending ACME certificate): the
 * columns of cert_sql, member by member. */
static const char cert_sql[] =
	"SELECT c.id, c.name, c.type, c.source, c.status, c.hostnames, coalesce(v.sans, '[]'), "
	"v.subject_cn, v.serial, v.issuer, v.fingerprint_sha256, v.not_before, v.not_after, "
	"c.version, c.auto_renew, c.metadata FROM certificates c LEFT JOIN certificate_versions v "
	"ON v.certificate_id = c.id AND v.version = c.version WHERE c.tenant_id = ?1 AND c.id = ?2";
/* clang-format off */
static const struct db_jw_field cert_fields[] = {
	{ "certificate_id", DB_JW_TEXT },
	{ "name", DB_JW_TEXT },
	{ "type", DB_JW_TEXT },
	{ "source", DB_JW_TEXT },
	{ "status", DB_JW_TEXT },
	{ "hostnames", DB_JW_JSON },
	{ "sans", DB_JW_JSON },
	{ "subject_cn", DB_JW_TEXT },
	{ "serial", DB_JW_TEXT },
	{ "issuer", DB_JW_TEXT },
	{ "fingerprint_sha256", DB_JW_TEXT },
	{ "not_before", DB_JW_TIME },
	{ "not_after", DB_JW_TIME },
	{ "version", DB_JW_INT },
	{ "auto_renew", DB_JW_TEXT },
	{ "metadata", DB_JW_JSON },
};
/* clang-format on */

static cp_rc cert_facts(struct db *db, const char *tenant_id, const char *certificate_id,
			json_t **out)
{
	return db_fetch_fields(db, db_stmt_keyed(db, cert_sql, tenant_id, certificate_id),
			       cert_fields, CP_ARRAY_LEN(cert_fields), out);
}

cp_rc db_event_certificate(struct db *db, const char *tenant_id, const char *type,
			   const char *certificate_id, json_t *extra, char id_out[CP_UUID_LEN + 1])
{
	json_t *data = NULL;
	cp_rc rc;

	assert(db && tenant_id);
	rc = cert_facts(db, tenant_id, certificate_id, &data);
	if (rc != CP_OK)
		return rc;
	if (extra && json_object_update(data, extra) != 0)
		rc = CP_ERR_NOMEM;
	if (rc == CP_OK)
		rc = db_event_add(db, tenant_id, type, data, id_out);
	json_decref(data);
	return rc;
}

cp_rc db_event_order(struct db *db, const char *tenant_id, const char *type, const char *order_id,
		     const char *certificate_id, json_t *extra, char id_out[CP_UUID_LEN + 1])
{
	json_t *cert = NULL, *data = NULL;
	cp_rc rc = CP_OK;

	assert(db && tenant_id);
	if (certificate_id) {
		rc = cert_facts(db, tenant_id, certificate_id, &cert);
		if (rc != CP_OK)
			return rc;
	}
	data = json_pack("{s:s?,s:s?,s:O?,s:O?,s:O?}", "order_id", order_id, "certificate_id",
			 certificate_id, "certificate_name", json_object_get(cert, "name"),
			 "hostnames", json_object_get(cert, "hostnames"), "metadata",
			 json_object_get(cert, "metadata"));
	if (!data)
		rc = CP_ERR_NOMEM;
	else if (extra && json_object_update(data, extra) != 0)
		rc = CP_ERR_NOMEM;
	if (rc == CP_OK)
		rc = db_event_add(db, tenant_id, type, data, id_out);
	json_decref(data);
	json_decref(cert);
	return rc;
}

/* The tightest reminder threshold crossed at ?1 (now): 0 = expired, else
 * the denominator of the fraction of the lifetime left (30, 6, 3); -1 none. */
#define REMINDER_DAYS LIFECYCLE_REMINDER_SQL("v.not_before", "v.not_after")

/* One reminder that is due. */
struct reminder {
	char certificate_id[CP_UUID_LEN + 1];
	char tenant_id[CP_UUID_LEN + 1];
	int64_t version;
	int64_t not_before;
	int64_t not_after;
	int days; /* the threshold: 30, 6, 3 or 0 (expired) */
};

/* Record and announce one reminder in its own transaction. */
static cp_rc reminder_send(struct db *db, const struct reminder *r, int64_t now, bool *sent)
{
	static const char sql[] =
		"INSERT INTO certificate_reminders (certificate_id, version, days, tenant_id, "
		"event_id, created_at) VALUES (?, ?, ?, ?, ?, ?) "
		"ON CONFLICT (certificate_id, version, days) DO NOTHING";
	struct db_stmt *st;
	char event_id[CP_UUID_LEN + 1] = "";
	json_t *extra = NULL;
	cp_rc rc;

	*sent = false;
	rc = db_begin(db);
	if (rc != CP_OK)
		return rc;
	if (r->days > 0) {
		/* threshold "1/6": a sixth of the lifetime left, i.e.
		 * threshold_seconds (threshold_days, rounded down) before expiry. */
		int64_t at = lifecycle_reminder_seconds(r->not_before, r->not_after, r->days);
		char frac[8];
		snprintf(frac, sizeof(frac), "1/%d", r->days);
		extra = json_pack("{s:s,s:I,s:I,s:I}", "threshold", frac, "threshold_seconds",
				  (json_int_t)at, "threshold_days", (json_int_t)(at / 86400),
				  "expires_in_seconds", (json_int_t)(r->not_after - now));
	}
	rc = db_event_certificate(db, r->tenant_id,
				  r->days > 0 ? "certificate.expiring" : "certificate.expired",
				  r->certificate_id, extra, event_id);
	st = rc == CP_OK ? db_stmt(db, sql) : NULL;
	if (rc == CP_OK && !st)
		rc = CP_ERR_INTERNAL;
	if (rc == CP_OK) {
		db_bind_text(st, 1, r->certificate_id);
		db_bind_int64(st, 2, r->version);
		db_bind_int64(st, 3, r->days);
		db_bind_text(st, 4, r->tenant_id);
		db_bind_text(st, 5, event_id);
		db_bind_int64(st, 6, now);
		rc = db_exec_stmt(db, st);
	}
	/* Another scheduler got there first: drop our event with the rest. */
	if (rc == CP_OK && db_changes(db) == 0)
		rc = CP_ERR_CONFLICT;
	json_decref(extra);
	if (rc != CP_OK) {
		db_rollback(db);
		/* Deleted meanwhile (NOT_FOUND) or already sent (CONFLICT). */
		return rc == CP_ERR_CONFLICT || rc == CP_ERR_NOT_FOUND ? CP_OK : rc;
	}
	rc = db_commit(db);
	*sent = rc == CP_OK;
	return rc;
}

cp_rc db_cert_reminders_run(struct db *db, int64_t now, int max, int *sent)
{
	assert(db && max > 0 && sent);

	/* Versions expired more than 90 days ago are not announced any more:
	 * it bounds the scan and such news is stale anyway. */
	static const char sql[] =
		"SELECT c.id, c.tenant_id, c.version, v.not_before, v.not_after, " REMINDER_DAYS
		" AS days FROM certificate_versions v JOIN certificates c "
		"ON c.id = v.certificate_id AND c.version = v.version "
		"WHERE v.not_after <= ?1 + CAST(?3 AS BIGINT) AND v.not_after > ?1 - 90 * 86400 "
		"AND " REMINDER_DAYS
		" >= 0 AND NOT EXISTS (SELECT 1 FROM certificate_reminders r WHERE "
		"r.certificate_id = c.id AND r.version = c.version AND r.days = " REMINDER_DAYS ") "
		"ORDER BY v.not_after LIMIT ?2";
	struct reminder due[64];
	struct db_stmt *st;
	int n = 0, r;
	cp_rc rc = CP_OK;

	*sent = 0;
	if (max > (int)CP_ARRAY_LEN(due))
		max = (int)CP_ARRAY_LEN(due);
	st = db_stmt(db, sql);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 1, now);
	db_bind_int64(st, 2, max);
	db_bind_int64(st, 3, LIFECYCLE_REMINDER_HORIZON);
	while ((r = db_step(st)) == DB_ROW) {
		struct reminder *d = &due[n++];
		snprintf(d->certificate_id, sizeof(d->certificate_id), "%s", db_col_text(st, 0));
		snprintf(d->tenant_id, sizeof(d->tenant_id), "%s", db_col_text(st, 1));
		d->version = db_col_int64(st, 2);
		d->not_before = db_col_int64(st, 3);
		d->not_after = db_col_int64(st, 4);
		d->days = db_col_int64(st, 5);
	}
	db_reset(st);
	if (r != DB_DONE)
		return db_rc(db, r);
	for (int i = 0; i < n && rc == CP_OK; i++) {
		bool ok = false;
		rc = reminder_send(db, &due[i], now, &ok);
		*sent += ok;
	}
	return rc;
}
