/*
 * certificates_acme.c - the ACME side of /v1/certificates: creating a
 * certificate with source "acme" (a pending certificate and its first
 * order, answered 202) and POST /v1/certificates/{id}/renew (a renewal
 * order now, whatever the backoff says). certificates.c validates the
 * acme body and hands over here; the order engine is server/order_run.c.
 */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

/* The certificate (API shape) with "order" set to its order; new reference. */
static cp_rc cert_with_order(struct api_req *req, const char *cert_id, const char *order_id,
			     json_t **out)
{
	json_t *cert = NULL, *order = NULL;
	cp_rc rc = db_certificate_get(req->db, req->tenant_id, cert_id, &cert);

	if (rc == CP_OK)
		rc = db_order_get(req->db, req->tenant_id, order_id, &order);
	if (rc == CP_OK) {
		json_object_set_new(cert, "order", order);
		*out = cert;
		return CP_OK;
	}
	json_decref(cert);
	return rc;
}

void api_certificates_acme_create(struct api_req *req, struct api_resp *resp,
				  const struct api_acme_new *in)
{
	const char *challenge = in->challenge ? in->challenge : "http-01";
	const char *ca = in->ca ? in->ca : "letsencrypt";
	const char *key_type = in->key_type ? in->key_type : "ecdsa-p256";
	struct db_cert_new row = {
		.name = in->name,
		.type = "server",
		.source = "acme",
		.status = "pending",
		.auto_renew = in->auto_renew ? in->auto_renew : "none",
		.key_type = key_type,
		.hostnames = in->hostnames,
		.challenge = challenge,
		.ca = ca,
		.metadata = in->metadata,
		.cas = in->cas,
	};
	char cert_id[CP_UUID_LEN + 1], order_id[CP_UUID_LEN + 1];
	json_t *out = NULL, *detail = NULL, *meta = in->metadata;
	struct db_scope_verdict scope;
	size_t i;
	json_t *h;
	cp_rc rc;

	/* Wildcards cannot be validated over HTTP-01. */
	json_array_foreach(in->hostnames, i, h)
	{
		if (strcmp(challenge, "http-01") == 0 &&
		    cp_hostname_is_wildcard(json_string_value(h))) {
			api_problem_field(
				resp, "challenge",
				"must be \"dns-01\" for a wildcard hostname: HTTP-01 cannot "
				"validate wildcards");
			return;
		}
	}
	detail = json_pack("{s:s,s:s,s:s}", "source", "acme", "name", in->name, "challenge",
			   challenge);
	rc = db_begin(req->db);
	/* Refused here already; the order engine checks again before the CA. */
	if (rc == CP_OK)
		rc = db_issuance_scope(req->db, req->ctx->cfg->edge_zone, req->tenant_id,
				       in->hostnames, &scope);
	if (rc == CP_OK && scope.reason) {
		db_rollback(req->db);
		json_decref(detail);
		api_scope_problem(resp, &scope, "hostnames");
		return;
	}
	if (rc == CP_OK &&
	    !api_quota_or_reply(
		    req, resp,
		    &(struct db_quota_change){ .certificates = 1, .orders_in_flight = 1 })) {
		json_decref(detail);
		return;
	}
	if (rc == CP_OK)
		rc = db_certificate_create(req->db, req->tenant_id, &row, cert_id);
	if (rc == CP_OK && in->profile)
		rc = db_certificate_set_profile(req->db, req->tenant_id, cert_id, in->profile);
	if (rc == CP_OK)
		rc = db_order_start(req->db, req->tenant_id, cert_id, "issue", challenge,
				    in->hostnames, ca, key_type, meta, cp_now(), order_id);
	if (rc == CP_OK)
		rc = api_audit(req, "certificate.create", "certificate", cert_id, detail);
	if (rc == CP_OK)
		rc = cert_with_order(req, cert_id, order_id, &out);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	json_decref(detail);
	if (rc != CP_OK) {
		db_rollback(req->db);
		json_decref(out);
		api_reply_rc(resp, rc, "certificate");
		return;
	}
	cp_kick();
	api_reply(resp, 202, out);
}

void api_certificates_renew(struct api_req *req, struct api_resp *resp)
{
	const char *id, *auto_renew, *ca, *challenge, *key_type;
	json_t *cert = NULL, *names = NULL, *out = NULL, *h;
	char order_id[CP_UUID_LEN + 1];
	bool has_version, wildcard = false;
	struct db_scope_verdict scope;
	size_t i;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	id = req->params[0];
	rc = db_begin(req->db);
	if (rc == CP_OK &&
	    !api_quota_or_reply(req, resp, &(struct db_quota_change){ .orders_in_flight = 1 }))
		return;
	if (rc == CP_OK)
		rc = db_certificate_get(req->db, req->tenant_id, id, &cert);
	if (rc != CP_OK)
		goto fail;
	if (!strcmp(json_string_value(json_object_get(cert, "type")), "ca")) {
		db_rollback(req->db);
		json_decref(cert);
		api_problem_field(resp, "type", "a CA certificate cannot be renewed here");
		return;
	}
	has_version = json_integer_value(json_object_get(cert, "version")) > 0;
	/* The SAN of a renewal: its plan (lifecycle_plan: the version's SAN
	 * set unless the production properties' hostnames changed). Never
	 * issued: the production properties' hostnames. Either empty: what
	 * the certificate holds (or asked for). */
	if (has_version) {
		struct api_renewal_plan plan;
		rc = api_renewal_plan_load(req->db, req->tenant_id, cert, NULL, false, &plan);
		names = rc == CP_OK ? json_incref(plan.sans) : NULL;
		api_renewal_plan_free(&plan);
	} else {
		rc = db_renewal_hostnames(req->db, req->tenant_id, id, &names);
	}
	if (rc == CP_OK && json_array_size(names) == 0) {
		json_decref(names);
		names = json_deep_copy(json_object_get(cert, has_version ? "sans" : "hostnames"));
		rc = names ? CP_OK : CP_ERR_NOMEM;
	}
	if (rc != CP_OK)
		goto fail;
	if (json_array_size(names) == 0 || json_array_size(names) > 100) {
		db_rollback(req->db);
		json_decref(cert);
		json_decref(names);
		api_problem(resp, 422, "the certificate needs 1 to 100 hostnames to be renewed",
			    NULL);
		return;
	}
	rc = db_issuance_scope(req->db, req->ctx->cfg->edge_zone, req->tenant_id, names, &scope);
	if (rc != CP_OK)
		goto fail;
	if (scope.reason) {
		db_rollback(req->db);
		json_decref(cert);
		json_decref(names);
		api_scope_problem(resp, &scope, "hostnames");
		return;
	}
	json_array_foreach(names, i, h) wildcard =
		wildcard || cp_hostname_is_wildcard(json_string_value(h));
	auto_renew = json_string_value(json_object_get(cert, "auto_renew"));
	ca = json_string_value(json_object_get(cert, "ca"));
	if (auto_renew && strcmp(auto_renew, "none") != 0)
		ca = auto_renew;
	if (!ca)
		ca = "letsencrypt";
	challenge = json_string_value(json_object_get(cert, "challenge"));
	if (!challenge || wildcard)
		challenge = wildcard ? "dns-01" : "http-01";
	key_type = json_string_value(json_object_get(cert, "key_type"));
	rc = db_order_start(req->db, req->tenant_id, id, has_version ? "renew" : "issue", challenge,
			    names, ca, key_type ? key_type : "ecdsa-p256",
			    json_object_get(cert, "metadata"), cp_now(), order_id);
	if (rc == CP_ERR_CONFLICT) {
		db_rollback(req->db);
		json_decref(cert);
		json_decref(names);
		api_problem(resp, 409, "the certificate already has an order in flight", NULL);
		return;
	}
	if (rc == CP_OK)
		rc = api_audit(req, "certificate.renew", "certificate", id, NULL);
	if (rc == CP_OK)
		rc = db_order_get(req->db, req->tenant_id, order_id, &out);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK)
		goto fail;
	cp_kick();
	json_decref(cert);
	json_decref(names);
	api_reply(resp, 202, out);
	return;
fail:
	db_rollback(req->db);
	json_decref(cert);
	json_decref(names);
	json_decref(out);
	api_reply_rc(resp, rc, "certificate");
}
