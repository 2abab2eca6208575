/*
 * revoke.c - the job kind DB_REVOKE_JOB_KIND ("certificate_revoke"): send
 * one version's RFC 8555 7.6 revokeCert to the CA that issued it, and
 * record the answer (db_revocation_done: revoked_at, certificate.revoked).
 *
 * The payload (db/revocations.c) holds the leaf, the CA and the reason, so
 * the job works after the tenant or the certificate is gone. It signs with
 * the CA account's key (kid: the account ordered every certificate of the
 * CA), or with the certificate's own key (jwk) for keyCompromise; when the
 * CA refuses the account (a CA that forgot it) and the key is still
 * stored, it tries the certificate's key. A CA that is down or rate limits
 * is retried with a growing delay, never given up on: a certificate that
 * should be revoked stays a job until the CA has answered.
 */
#include "acme/acme.h"
#include "crypto/crypto.h"
#include "server/server_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Retry delay after attempt n (1, 2, ...): 5 s doubling up to an hour. */
static int64_t revoke_backoff(int n)
{
	int64_t d = 5;

	while (n-- > 1 && d < 3600)
		d *= 2;
	return d < 3600 ? d : 3600;
}

/* The certificate's own key of the payload's version into *key (NULL when
 * the version is gone, e.g. its tenant was deleted). */
static cp_rc version_key(const struct api_ctx *ctx, struct db *db, json_t *p,
			 struct crypto_key **key)
{
	char *pem = NULL;
	cp_rc rc;

	*key = NULL;
	rc = db_certificate_version_key_pem(
		db, ctx->keyring, json_string_value(json_object_get(p, "tenant_id")),
		json_string_value(json_object_get(p, "version_id")), &pem);
	if (rc == CP_ERR_NOT_FOUND)
		return CP_OK;
	if (rc == CP_OK)
		rc = crypto_key_from_pem(pem, strlen(pem), NULL, key, NULL);
	crypto_wipe_free(pem);
	return rc;
}

void server_job_certificate_revoke(const struct api_ctx *ctx, struct db *db, struct db_job *job,
				   struct server_job_outcome *out)
{
	json_t *p = job->payload;
	const char *ca = json_string_value(json_object_get(p, "ca"));
	const char *pem = json_string_value(json_object_get(p, "cert_pem"));
	int reason = (int)json_integer_value(json_object_get(p, "reason_code"));
	struct acme_client *client = NULL;
	struct crypto_key *key = NULL;
	struct acme_result r = { 0 };
	struct acme_verdict v;
	uint8_t *der = NULL;
	size_t der_len = 0;
	bool by_key = false;
	cp_rc rc;

	out->result = SERVER_JOB_FAIL;
	if (!ca || !pem) {
		snprintf(out->error, sizeof(out->error), "revocation job without a CA or leaf");
		return;
	}
	rc = crypto_cert_der(pem, strlen(pem), &der, &der_len);
	if (rc != CP_OK) {
		snprintf(out->error, sizeof(out->error), "the stored leaf does not parse");
		goto out;
	}
	rc = version_key(ctx, db, p, &key);
	if (rc != CP_OK) {
		snprintf(out->error, sizeof(out->error), "the version's key: %s", cp_rc_str(rc));
		goto retry;
	}
	rc = server_acme_client(ctx, db, ca, &client, &r);
	if (rc == CP_ERR_INVALID && !r.status) {
		snprintf(out->error, sizeof(out->error), "CA %s is not configured", ca);
		goto out;
	}
	if (rc == CP_OK) {
		by_key = key && json_is_true(json_object_get(p, "with_cert_key"));
		rc = acme_revoke_cert(client, der, der_len, reason, by_key ? key : NULL, &r);
		v = acme_classify(&r);
		if (rc != CP_OK && !by_key && key && v.outcome != ACME_OUTCOME_TRANSIENT) {
			by_key = true;
			rc = acme_revoke_cert(client, der, der_len, reason, key, &r);
		}
	}
	if (rc == CP_OK) {
		rc = db_begin(db);
		if (rc == CP_OK)
			rc = db_revocation_done(db, p, cp_now());
		if (rc == CP_OK)
			rc = db_commit(db);
		if (rc != CP_OK) {
			db_rollback(db);
			snprintf(out->error, sizeof(out->error), "recording the revocation: %s",
				 cp_rc_str(rc));
			goto retry;
		}
		cp_log_json(CP_LOG_INFO, "certificate.revoked",
			    json_pack("{s:O, s:O, s:s, s:i, s:s}", "certificate_id",
				      json_object_get(p, "certificate_id"), "serial",
				      json_object_get(p, "serial"), "ca", ca, "reason", reason,
				      "signed_with", by_key ? "certificate_key" : "account_key"));
		out->result = SERVER_JOB_DONE;
		goto out;
	}
	v = acme_classify(&r);
	snprintf(out->error, sizeof(out->error), "revokeCert at %.32s: %.400s", ca,
		 r.detail[0] ? r.detail : cp_rc_str(rc));
	if (v.outcome == ACME_OUTCOME_DEFINITIVE && r.status >= 400 && r.status < 500 &&
	    r.status != 429)
		goto out; /* the CA's final word (unauthorized, malformed): logged by the job */
retry:
	out->result = SERVER_JOB_RETRY;
	out->run_at =
		cp_now() + (r.retry_after > 0 ? r.retry_after : revoke_backoff(job->attempts));
out:
	free(der);
	crypto_key_free(key);
}
