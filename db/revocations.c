/*
 * revocations.c - revoking certificate versions at their CA, and the one
 * home of the rule that no valid certificate for a hostname stays with a
 * tenant that no longer holds the hostname (the "BygoneSSL" problem).
 *
 * A revocation is decided here, in the caller's transaction: each version
 * it covers gets its RFC 5280 reason and the time it was asked
 * (revocation_requested_at), a durable job DB_REVOKE_JOB_KIND carries what
 * the CA needs (the leaf PEM, the CA's name, the reason code, how to sign),
 * and a certificate whose current version is revoked drops it at once
 * (version 0, status "failed", last_error_reason "revoked"), so nothing
 * serves or deploys it from that commit on. The job (server/revoke.c) sends
 * the revokeCert; db_revocation_done records the CA's answer and emits
 * certificate.revoked. The job's payload outlives the tenant, so a tenant
 * deleted while the CA is down still has its certificates revoked.
 *
 * Only versions a CA issued (order_id set) can be revoked; uploaded and
 * self-signed ones cannot (the caller gets CP_ERR_INVALID). Expired and
 * already revoked versions are left alone.
 *
 * The hostname rule, db_revoke_lost: a tenant loses a hostname when another
 * tenant's claim of it verifies (db_revoke_for_new_holder, called by
 * db_claim_record) or when the tenant is deleted (db_tenant_delete); its
 * CA-issued versions that name the hostname are revoked with reason
 * cessationOfOperation (the CA/Browser Forum's reason for a subscriber that
 * no longer controls a name), with events to both tenants that name no id
 * of the other.
 */
#include "crypto/crypto.h"
#include "db/db_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* The reason names the API takes, and their RFC 5280 CRLReason codes. */
static const struct {
	const char *name;
	int code;
} reasons[] = {
	{ "unspecified", 0 },	       { "keyCompromise", 1 },	    { "superseded", 4 },
	{ "cessationOfOperation", 5 }, { "affiliationChanged", 3 }, { "privilegeWithdrawn", 9 },
};

const char *const db_revocation_reasons[] = {
	"unspecified",	      "keyCompromise",	    "superseded", "cessationOfOperation",
	"affiliationChanged", "privilegeWithdrawn", NULL,
};

int db_revocation_reason_code(const char *name)
{
	for (size_t i = 0; name && i < CP_ARRAY_LEN(reasons); i++)
		if (strcmp(reasons[i].name, name) == 0)
			return reasons[i].code;
	return -1;
}

/* True if the JSON array text sans covers hostname: names it, or names the
 * wildcard that covers it (a *.a.test certificate is valid for www.a.test,
 * so it goes when www.a.test does). */
static bool sans_cover(const char *sans, const char *hostname)
{
	json_t *arr = sans ? json_loads(sans, 0, NULL) : NULL, *v;
	char wild[CP_HOSTNAME_MAX + 3];
	bool found = false, has_wild = cp_hostname_covering_wildcard(hostname, wild, sizeof(wild));
	size_t i;

	json_array_foreach(arr, i, v)
	{
		const char *san = json_string_value(v);

		if (san && (strcmp(san, hostname) == 0 || (has_wild && strcmp(san, wild) == 0)))
			found = true;
	}
	json_decref(arr);
	return found;
}

/* Mark version vid revoked-as-asked and queue its revokeCert job; row is
 * the version as version_rows read it ({id, version, serial, cert_pem, ca}).
 * *marked: false when a concurrent writer marked it first (its job runs). */
static cp_rc revoke_version(struct db *db, const char *tenant_id, const char *cert_id, json_t *row,
			    const struct db_revoke_ask *ask, int64_t now, bool *marked)
{
	static const char sql[] =
		"UPDATE certificate_versions SET revocation_reason = ?3, revocation_requested_at = ?4 "
		"WHERE tenant_id = ?1 AND id = ?2 AND revocation_reason IS NULL";
	const char *vid = json_string_value(json_object_get(row, "id"));
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, vid);
	json_t *payload = NULL;
	char *key = NULL;
	cp_rc rc;

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, ask->reason);
	db_bind_int64(st, 4, now);
	*marked = false;
	rc = db_exec_stmt(db, st);
	if (rc != CP_OK || db_changes(db) == 0)
		return rc; /* another writer asked first: its job does it */
	*marked = true;
	payload = json_pack(
		"{s:s, s:s, s:s, s:O, s:O, s:O, s:O, s:s, s:i, s:s, s:s?, s:s?, s:b}", "tenant_id",
		tenant_id, "certificate_id", cert_id, "version_id", vid, "version",
		json_object_get(row, "version"), "serial", json_object_get(row, "serial"),
		"cert_pem", json_object_get(row, "cert_pem"), "ca", json_object_get(row, "ca"),
		"reason", ask->reason, "reason_code", db_revocation_reason_code(ask->reason),
		"cause", ask->cause, "hostname", ask->hostname, "new_holder", ask->new_holder,
		"with_cert_key", ask->with_cert_key);
	key = cp_aprintf("revoke:%s", vid);
	rc = payload && key ? db_job_enqueue(db, DB_REVOKE_JOB_KIND, tenant_id, payload, now, key)
			    : CP_ERR_NOMEM;
	json_decref(payload);
	free(key);
	return rc;
}

/* The versions of certificate cert_id of tenant_id as an array of
 * {id, version, serial, cert_pem, sans, ca (null: not CA-issued),
 * not_after, revoked (bool), current (bool)}, oldest first. */
static cp_rc version_rows(struct db *db, const char *tenant_id, const char *cert_id, json_t **out)
{
	/* certificate_versions(certificate_id, version): one range. */
	static const char sql[] =
		"SELECT v.id, v.version, v.serial, v.cert_pem, v.sans, "
		"(SELECT o.ca FROM orders o WHERE o.id = v.order_id), v.not_after, "
		"CASE WHEN v.revocation_reason IS NULL THEN 0 ELSE 1 END, "
		"CASE WHEN v.version = c.version THEN 1 ELSE 0 END "
		"FROM certificates c JOIN certificate_versions v ON v.certificate_id = c.id "
		"WHERE c.tenant_id = ?1 AND c.id = ?2 AND v.tenant_id = ?1 ORDER BY v.version";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, cert_id);
	json_t *arr = json_array();
	cp_rc rc = CP_OK;
	int r;

	*out = NULL;
	if (!st || !arr) {
		json_decref(arr);
		return st ? CP_ERR_NOMEM : CP_ERR_INTERNAL;
	}
	while ((r = db_step(st)) == DB_ROW)
		if (json_array_append_new(
			    arr, json_pack("{s:s, s:I, s:s, s:s, s:s, s:s?, s:I, s:b, s:b}", "id",
					   db_col_text(st, 0), "version",
					   (json_int_t)db_col_int64(st, 1), "serial",
					   db_col_text(st, 2), "cert_pem", db_col_text(st, 3),
					   "sans", db_col_text(st, 4), "ca", db_col_text(st, 5),
					   "not_after", (json_int_t)db_col_int64(st, 6), "revoked",
					   db_col_int64(st, 7) != 0, "current",
					   db_col_int64(st, 8) != 0)) != 0)
			rc = CP_ERR_NOMEM;
	db_reset(st);
	if (rc == CP_OK && r != DB_DONE)
		rc = db_rc(db, r);
	if (rc != CP_OK) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return CP_OK;
}

/* The certificate drops its current version (revoked): nothing serves it. */
static cp_rc drop_current(struct db *db, const char *tenant_id, const char *cert_id,
			  json_int_t version, const char *reason, int64_t now)
{
	static const char sql[] =
		"UPDATE certificates SET version = 0, status = 'failed', last_error = ?3, "
		"last_error_reason = 'revoked', next_attempt_at = NULL, updated_at = ?4 "
		"WHERE tenant_id = ?1 AND id = ?2";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, cert_id);
	char *why = cp_aprintf("version %lld was revoked (%s)", (long long)version, reason);
	cp_rc rc = CP_ERR_NOMEM;

	if (!st) {
		free(why);
		return CP_ERR_INTERNAL;
	}
	if (why) {
		db_bind_text(st, 3, why);
		db_bind_int64(st, 4, now);
		rc = db_exec_one(db, st);
	}
	free(why);
	return rc;
}

cp_rc db_revocation_request(struct db *db, const char *tenant_id, const char *cert_id,
			    const char *version_id, const struct db_revoke_ask *ask,
			    json_t **versions)
{
	json_t *rows = NULL, *row, *picked = json_array();
	json_int_t dropped = 0;
	bool found = !version_id, ca_issued = false, marked = false;
	int64_t now = cp_now();
	size_t i;
	cp_rc rc;

	assert(db && tenant_id && cert_id && ask && ask->reason && ask->cause);
	assert(db_revocation_reason_code(ask->reason) >= 0);
	if (versions)
		*versions = NULL;
	if (!picked)
		return CP_ERR_NOMEM;
	rc = db_certificate_exists(db, tenant_id, cert_id);
	if (rc == CP_OK)
		rc = version_rows(db, tenant_id, cert_id, &rows);
	if (rc != CP_OK)
		goto out;
	json_array_foreach(rows, i, row)
	{
		const char *vid = json_string_value(json_object_get(row, "id"));

		if (version_id && strcmp(vid, version_id) != 0)
			continue;
		found = true;
		if (!json_is_string(json_object_get(row, "ca")))
			continue; /* uploaded or self-signed: no CA to ask */
		ca_issued = true;
		if (json_is_true(json_object_get(row, "revoked")) ||
		    json_integer_value(json_object_get(row, "not_after")) <= now)
			continue;
		if (ask->hostname &&
		    !sans_cover(json_string_value(json_object_get(row, "sans")), ask->hostname))
			continue;
		rc = revoke_version(db, tenant_id, cert_id, row, ask, now, &marked);
		if (rc != CP_OK)
			goto out;
		if (!marked)
			continue;
		if (json_is_true(json_object_get(row, "current")))
			dropped = json_integer_value(json_object_get(row, "version"));
		json_array_append_new(picked,
				      json_pack("{s:O, s:O, s:O}", "id", json_object_get(row, "id"),
						"version", json_object_get(row, "version"),
						"serial", json_object_get(row, "serial")));
	}
	if (!found) {
		rc = CP_ERR_NOT_FOUND;
		goto out;
	}
	if (!ca_issued) {
		rc = CP_ERR_INVALID;
		goto out;
	}
	if (json_array_size(picked) == 0) {
		rc = CP_ERR_CONFLICT;
		goto out;
	}
	if (dropped)
		rc = drop_current(db, tenant_id, cert_id, dropped, ask->reason, now);
	if (rc == CP_OK && versions) {
		*versions = picked;
		picked = NULL;
	}
out:
	json_decref(rows);
	json_decref(picked);
	return rc;
}

cp_rc db_revoke_lost(struct db *db, const char *tenant_id, const char *hostname,
		     const char *new_holder, const char *cause, int *count)
{
	/* certificate_names' primary key (tenant_id, name, ...): a range for
	 * the name and one for the wildcard that covers it (?3; NULL: none). */
	static const char by_name[] = "SELECT DISTINCT c.id FROM certificate_names n "
				      "JOIN certificates c ON c.seq = n.cert_seq "
				      "WHERE n.tenant_id = ?1 AND n.name IN (?2, ?3) "
				      "AND c.tenant_id = ?1";
	/* certificates_tenant_seq: the tenant's certificates. */
	static const char all[] = "SELECT id FROM certificates WHERE tenant_id = ?1";
	const struct db_revoke_ask ask = { .reason = "cessationOfOperation",
					   .cause = cause,
					   .hostname = hostname,
					   .new_holder = new_holder };
	struct db_stmt *st = db_stmt_keyed(db, hostname ? by_name : all, tenant_id, hostname);
	json_t *ids = json_array(), *id, *vs = NULL, *data = NULL;
	char wild[CP_HOSTNAME_MAX + 3];
	size_t i;
	cp_rc rc = CP_OK;
	int r;

	assert(db && tenant_id && cause);
	if (count)
		*count = 0;
	if (!st || !ids) {
		json_decref(ids);
		return st ? CP_ERR_NOMEM : CP_ERR_INTERNAL;
	}
	if (hostname)
		db_bind_text(st, 3,
			     cp_hostname_covering_wildcard(hostname, wild, sizeof(wild)) ? wild
											 : NULL);
	/* Collect first: revoking writes the tables being read. */
	while ((r = db_step(st)) == DB_ROW)
		json_array_append_new(ids, json_string(db_col_text(st, 0)));
	db_reset(st);
	if (r != DB_DONE)
		rc = db_rc(db, r);
	json_array_foreach(ids, i, id)
	{
		const char *cid = json_string_value(id);

		if (rc != CP_OK)
			break;
		rc = db_revocation_request(db, tenant_id, cid, NULL, &ask, &vs);
		if (rc == CP_ERR_INVALID || rc == CP_ERR_CONFLICT || rc == CP_ERR_NOT_FOUND) {
			rc = CP_OK; /* nothing of it a CA can revoke, or nothing left */
			continue;
		}
		if (rc != CP_OK)
			break;
		if (count)
			*count += (int)json_array_size(vs);
		/* The old holder hears now that it lost the name (the CA's
		 * answer follows as certificate.revoked); a deleted tenant
		 * hears nothing. */
		if (hostname) {
			data = json_pack("{s:s, s:s, s:s, s:O}", "certificate_id", cid, "hostname",
					 hostname, "reason", cause, "versions", vs);
			rc = data ? db_event_add(db, tenant_id, "certificate.hostname_lost", data,
						 NULL)
				  : CP_ERR_NOMEM;
			if (rc == CP_OK)
				rc = db_audit_add(db, tenant_id, "system", "certificate.revoke",
						  "certificate", cid, data);
			json_decref(data);
			data = NULL;
		}
		json_decref(vs);
		vs = NULL;
	}
	json_decref(ids);
	return rc;
}

cp_rc db_revoke_for_new_holder(struct db *db, const char *new_holder, const char *hostname)
{
	/* certificate_names_name (migration 022): a range of the name and one
	 * of the wildcard that covers it (?3; NULL: none). */
	static const char sql[] = "SELECT DISTINCT tenant_id FROM certificate_names "
				  "WHERE name IN (?1, ?3) AND tenant_id != ?2";
	struct db_stmt *st = db_stmt_keyed(db, sql, hostname, new_holder);
	json_t *tenants = json_array(), *t;
	char wild[CP_HOSTNAME_MAX + 3];
	size_t i;
	cp_rc rc = CP_OK;
	int r;

	assert(db && new_holder && hostname);
	if (!st || !tenants) {
		json_decref(tenants);
		return st ? CP_ERR_NOMEM : CP_ERR_INTERNAL;
	}
	db_bind_text(st, 3,
		     cp_hostname_covering_wildcard(hostname, wild, sizeof(wild)) ? wild : NULL);
	while ((r = db_step(st)) == DB_ROW)
		json_array_append_new(tenants, json_string(db_col_text(st, 0)));
	db_reset(st);
	if (r != DB_DONE)
		rc = db_rc(db, r);
	json_array_foreach(tenants, i, t)
	{
		if (rc != CP_OK)
			break;
		rc = db_revoke_lost(db, json_string_value(t), hostname, new_holder,
				    "hostname_verified_by_another_tenant", NULL);
	}
	json_decref(tenants);
	return rc;
}

cp_rc db_revocation_done(struct db *db, json_t *payload, int64_t revoked_at)
{
	static const char sql[] = "UPDATE certificate_versions SET revoked_at = ?3 "
				  "WHERE tenant_id = ?1 AND id = ?2 AND revoked_at IS NULL";
	const char *tenant_id = json_string_value(json_object_get(payload, "tenant_id"));
	const char *vid = json_string_value(json_object_get(payload, "version_id"));
	const char *new_holder = json_string_value(json_object_get(payload, "new_holder"));
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, vid);
	json_t *data = NULL;
	cp_rc rc;

	assert(db && payload);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 3, revoked_at);
	rc = db_exec_stmt(db, st);
	if (rc != CP_OK || db_changes(db) == 0)
		return rc; /* recorded already, or the tenant is gone */
	data = json_pack(
		"{s:O, s:O, s:O, s:O, s:O, s:O, s:O?, s:I}", "certificate_id",
		json_object_get(payload, "certificate_id"), "version_id",
		json_object_get(payload, "version_id"), "version",
		json_object_get(payload, "version"), "serial", json_object_get(payload, "serial"),
		"reason", json_object_get(payload, "reason"), "cause",
		json_object_get(payload, "cause"), "hostname", json_object_get(payload, "hostname"),
		"revoked_at", (json_int_t)revoked_at);
	rc = data ? db_event_add(db, tenant_id, "certificate.revoked", data, NULL) : CP_ERR_NOMEM;
	json_decref(data);
	if (rc != CP_OK || !new_holder)
		return rc;
	/* The tenant that took the name over: the name and the (public)
	 * serial, never the other tenant's ids. */
	data = json_pack("{s:O, s:O, s:O, s:I}", "hostname", json_object_get(payload, "hostname"),
			 "serial", json_object_get(payload, "serial"), "reason",
			 json_object_get(payload, "reason"), "revoked_at", (json_int_t)revoked_at);
	rc = data ? db_event_add(db, new_holder, "hostname.prior_certificate_revoked", data, NULL)
		  : CP_ERR_NOMEM;
	json_decref(data);
	return rc;
}

cp_rc db_certificate_version_key_pem(struct db *db, const struct crypto_keyring *ring,
				     const char *tenant_id, const char *version_id, char **out)
{
	static const char sql[] = "SELECT private_key FROM certificate_versions "
				  "WHERE id = ?2 AND tenant_id = ?1";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, version_id);
	char *sealed = NULL, *aad = NULL, *pt = NULL;
	size_t n = 0;
	cp_rc rc;

	assert(db && ring && out);
	*out = NULL;
	rc = db_step_row(db, st);
	if (rc != CP_OK)
		return rc;
	sealed = cp_strdup(db_col_text(st, 0));
	db_reset(st);
	aad = cp_aprintf("certificate_versions:%s", version_id);
	rc = sealed && aad ? crypto_open(ring, aad, sealed, &pt, &n) : CP_ERR_NOMEM;
	if (rc == CP_ERR_INVALID)
		rc = CP_ERR_CRYPTO; /* stored text that is not sealed is corruption */
	if (rc == CP_OK)
		*out = pt;
	free(sealed);
	free(aad);
	return rc;
}
