/*
 * certificates_revoke.c - POST /v1/certificates/{id}/revoke: revoke one
 * version (version_id) or every valid CA-issued version of a certificate
 * at its CA, with an RFC 5280 reason (RFC 8555 7.6).
 *
 * The decision is taken here, in one transaction with its audit row
 * (db_revocation_request: the versions are marked, a durable job per
 * version is queued, a revoked current version stops being served at
 * once); the revokeCert is the job's (server/revoke.c), retried while the
 * CA is down, and certificate.revoked follows the CA's answer. So the
 * answer is 202 with the versions asked, whose revoked_at appears on
 * GET .../versions once the CA has revoked them. keyCompromise is signed
 * with the certificate's own key, every other reason with the account's.
 *
 * DELETE /v1/tenants/{id}/hostnames/{hostname} (operator): the operator
 * takes a hostname away from a tenant, which loses its claim and has its
 * certificates naming it revoked the same way (db_hostname_withdraw).
 */
#include "api/api.h"
#include "db/db.h"

#include <stdbool.h>
#include <string.h>

void api_certificates_revoke(struct api_req *req, struct api_resp *resp)
{
	const char *reason = NULL, *version_id = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_CHOICE("reason", true, &reason, db_revocation_reasons),
		CP_SPEC_STR("version_id", false, &version_id, 1, 64),
		CP_SPEC_DONE,
	};
	struct db_revoke_ask ask = { .cause = "requested" };
	json_t *versions = NULL, *detail = NULL, *out = NULL;
	const char *id;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0) ||
	    !api_body_or_reply(req, resp, spec))
		return;
	id = req->params[0];
	ask.reason = reason;
	ask.with_cert_key = strcmp(reason, "keyCompromise") == 0;
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_revocation_request(req->db, req->tenant_id, id, version_id, &ask,
					   &versions);
	if (rc == CP_ERR_NOT_FOUND && version_id &&
	    db_certificate_exists(req->db, req->tenant_id, id) == CP_OK) {
		db_rollback(req->db);
		api_problem_field(resp, "version_id", "is not a version of this certificate");
		return;
	}
	if (rc == CP_ERR_INVALID) {
		db_rollback(req->db);
		api_problem(
			resp, 409,
			"only a CA-issued version can be revoked at a CA: this one was uploaded "
			"or self-signed",
			NULL);
		return;
	}
	if (rc == CP_ERR_CONFLICT) {
		db_rollback(req->db);
		api_problem(resp, 409,
			    "nothing left to revoke: the version is revoked already or expired",
			    NULL);
		return;
	}
	if (rc != CP_OK)
		goto fail;
	detail = json_pack("{s:s, s:O}", "reason", reason, "versions", versions);
	rc = detail ? api_audit(req, "certificate.revoke", "certificate", id, detail)
		    : CP_ERR_NOMEM;
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK)
		goto fail;
	cp_kick();
	out = json_pack("{s:s, s:s, s:O}", "certificate_id", id, "reason", reason, "versions",
			versions);
	if (out)
		api_reply(resp, 202, out);
	else
		api_reply_rc(resp, CP_ERR_NOMEM, "certificate");
	goto out;
fail:
	db_rollback(req->db);
	api_reply_rc(resp, rc, "certificate");
out:
	json_decref(versions);
	json_decref(detail);
}

void api_tenants_hostname_withdraw(struct api_req *req, struct api_resp *resp)
{
	const char *tenant_id, *hostname, *why = NULL;
	json_t *tenant = NULL, *detail = NULL;
	bool released = false;
	int revoked = 0;
	cp_rc rc;

	if (!api_operator_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	tenant_id = req->params[0];
	hostname = req->params[1];
	if (!hostname || !cp_hostname_valid(hostname, true, &why)) {
		api_problem_field(resp, "hostname", why ? why : "is not a hostname");
		return;
	}
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_tenant_get(req->db, tenant_id, &tenant);
	if (rc == CP_ERR_NOT_FOUND) {
		db_rollback(req->db);
		api_reply_rc(resp, rc, "tenant");
		return;
	}
	if (rc == CP_OK)
		rc = db_hostname_withdraw(req->db, tenant_id, hostname, &released, &revoked);
	if (rc == CP_OK) {
		detail = json_pack("{s:s, s:b, s:i}", "hostname", hostname, "claim_released",
				   released, "versions_revoked", revoked);
		rc = detail ? db_audit_add(req->db, tenant_id, req->actor, "hostname.withdraw",
					   "hostname", hostname, detail)
			    : CP_ERR_NOMEM;
	}
	if (rc == CP_OK)
		rc = db_commit(req->db);
	json_decref(tenant);
	json_decref(detail);
	if (rc != CP_OK) {
		db_rollback(req->db);
		api_reply_rc(resp, rc, "claim or certificate of this hostname");
		return;
	}
	cp_kick();
	resp->status = 204;
}
