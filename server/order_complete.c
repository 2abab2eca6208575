/*
 * order_complete.c - the end of a successful order: the downloaded chain
 * stored as the certificate's new version, the order valid and the event,
 * in one transaction.
 */
#include "crypto/crypto.h"
#include "lifecycle/lifecycle.h"
#include "server/order_internal.h"

#include <stdlib.h>
#include <string.h>

/* Store the downloaded chain as the certificate's new version; the order
 * turns valid and the event is written in the same transaction. */
enum order_step order_store_certificate(struct order_run *run, const char *pem)
{
	struct crypto_key *key = NULL;
	struct crypto_cert_info ci;
	char *leaf = NULL, *chain = NULL, *key_pem = NULL, nowts[CP_TIME_LEN + 1];
	const char *why = NULL, *cert_id = cp_json_str(run->order, "certificate_id");
	const char *kind = cp_json_str(run->order, "kind");
	json_t *fresh = NULL, *data = NULL;
	int version = 0;
	int64_t renew_after;
	cp_rc rc, load_rc = CP_OK;

	memset(&ci, 0, sizeof(ci));
	rc = crypto_chain_split(pem, strlen(pem), &leaf, &chain, &why);
	if (rc != CP_OK)
		return order_fail(run, "ca_protocol_error", "unusable certificate chain: %s",
				  why ? why : cp_rc_str(rc));
	rc = crypto_cert_info_parse(leaf, strlen(leaf), &ci, &why);
	if (rc == CP_OK)
		rc = order_get_key(run, &key);
	if (rc == CP_OK)
		rc = crypto_key_to_pem(key, &key_pem);
	if (rc != CP_OK) {
		free(leaf);
		free(chain);
		crypto_key_free(key);
		crypto_cert_info_clear(&ci);
		return order_fail(run, "internal", "cannot prepare the new version");
	}
	/* A version from the CA: the lifecycle rule for CA-issued ones. */
	renew_after = lifecycle_renew_at(
		&(struct lifecycle_version){ ci.not_before, ci.not_after, LIFECYCLE_CA },
		run->ctx->cfg->renew_before_days);
	struct db_cert_material m = { .cert_pem = leaf,
				      .chain_pem = chain,
				      .key_pem = key_pem,
				      .order_id = run->id,
				      .renew_after = renew_after };
	cp_time_fmt(cp_now(), nowts);
	rc = db_begin(run->db);
	if (rc == CP_OK)
		rc = load_rc = db_order_load(run->db, run->tenant_id, run->id, &fresh);
	if (rc == CP_OK && order_is_terminal(cp_json_str(fresh, "status"))) {
		/* Canceled (or finished elsewhere) meanwhile: store nothing. */
		db_rollback(run->db);
		goto out;
	}
	if (rc == CP_OK)
		rc = db_certificate_add_version(run->db, run->ctx->keyring, run->tenant_id, cert_id,
						&m, &version);
	if (rc == CP_OK)
		rc = order_save(run, json_pack("{s:s,s:I,s:n,s:n,s:i,s:n}", "status", "valid",
					       "completed_at", (json_int_t)cp_now(), "error_reason",
					       "error_detail", "attempts", 0, "next_attempt_at"));
	if (rc == CP_OK) {
		char nb[CP_TIME_LEN + 1], na[CP_TIME_LEN + 1];
		cp_time_fmt(ci.not_before, nb);
		cp_time_fmt(ci.not_after, na);
		data = json_pack("{s:s,s:s,s:i,s:s,s:O,s:s,s:s,s:s,s:O}", "certificate_id", cert_id,
				 "order_id", run->id, "version", version, "serial",
				 ci.serial ? ci.serial : "", "sans", ci.sans, "not_before", nb,
				 "not_after", na, "issuer", ci.issuer ? ci.issuer : "", "metadata",
				 json_object_get(run->order, "metadata"));
		rc = data ? db_event_add(run->db, run->tenant_id,
					 !strcmp(kind, "renew") ? "certificate.renewed"
								: "certificate.issued",
					 data, NULL)
			  : CP_ERR_NOMEM;
	}
	if (rc == CP_OK)
		rc = db_commit(run->db);
	else
		db_rollback(run->db);
	if (rc == CP_OK)
		cp_log_json(CP_LOG_INFO, "acme.issued",
			    json_pack("{s:s,s:s,s:s,s:i,s:s}", "order_id", run->id,
				      "certificate_id", cert_id, "kind", kind, "version", version,
				      "serial", ci.serial ? ci.serial : ""));
out:
	json_decref(fresh);
	json_decref(data);
	free(leaf);
	free(chain);
	crypto_wipe_free(key_pem);
	crypto_key_free(key);
	crypto_cert_info_clear(&ci);
	/* The order could not be read back (gone, or a database error), or
	 * the database was busy: nothing was stored, try again or stop. */
	if (load_rc != CP_OK)
		return order_fail_db(run, load_rc, "reloading the order");
	/* The chain or key refused, or the certificate deleted meanwhile: the
	 * order fails. Busy, I/O and other database errors: try again. */
	if (rc == CP_ERR_INVALID || rc == CP_ERR_NOT_FOUND || rc == CP_ERR_CONFLICT)
		return order_fail(run, rc == CP_ERR_INVALID ? "ca_protocol_error" : "internal",
				  "cannot store the certificate: %s", cp_rc_str(rc));
	if (rc != CP_OK)
		return order_fail_db(run, rc, "storing the certificate");
	return ORDER_STEP_DONE;
}
