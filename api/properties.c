/*
 * properties.c - properties (the sites a tenant accelerates) and their
 * deployments.
 *
 * A property holds 1..100 hostnames, each a claim of its tenant (pending
 * until DNS verifies it, see db/hostname_claims.c and claims/claims.c): a
 * hostname another tenant has verified is a 409, a name of the edge zone a
 * 422, another tenant's pending claim blocks nothing. Every write queues the
 * property's verification job (never DNS on the API thread). It points at
 * one of its tenant's edge hostnames
 * and may use one of its tenant's certificates. With
 * certificate_renew_automation the certificate is renewed over HTTP-01,
 * which cannot validate wildcards, so wildcards are refused then, unless
 * the certificate renews by DNS-01 (its challenge; DCV delegation lets
 * certplane answer it alone). The
 * version counts changes of what a deployment freezes (hostnames and
 * certificate); a deployment marks the current version live in staging or
 * production.
 */
#include "api/api.h"
#include "claims/claims.h"

#include <stdlib.h>
#include <string.h>

#define PROPERTY_HOSTNAMES_MAX 100
#define PROPERTY_NAME_MAX 200

/* ---------------------------------------------------------- validation */

/*
 * Check a hostnames array: 1..100 valid hostnames, no duplicates, no
 * wildcard when automation is on (renewals by HTTP-01) unless the
 * property's certificate renews by DNS-01 (dns01: its challenge is dns-01,
 * answered by the tenant's automation or, delegated, by certplane itself).
 * Appends one error per bad item to errors (field "hostnames[i]"); true if
 * there were none.
 */
static bool hostnames_valid(json_t *hostnames, bool automation, bool dns01, json_t *errors)
{
	size_t before = json_array_size(errors), i, j;
	char field[32], msg[96];
	const char *why;
	json_t *h;

	if (json_array_size(hostnames) == 0) {
		cp_spec_error(errors, "hostnames", "must have at least 1 item");
		return false;
	}
	json_array_foreach(hostnames, i, h)
	{
		const char *s = json_string_value(h);
		snprintf(field, sizeof(field), "hostnames[%zu]", i);
		if (!s || strlen(s) != json_string_length(h)) {
			cp_spec_error(errors, field, "must be a hostname string");
			continue;
		}
		if (automation && !dns01 && cp_hostname_is_wildcard(s)) {
			cp_spec_error(
				errors, field,
				"is a wildcard; HTTP-01 cannot validate wildcards, so they are "
				"not allowed with certificate_renew_automation");
			continue;
		}
		if (!cp_hostname_valid(s, true, &why)) {
			cp_spec_error(errors, field, why);
			continue;
		}
		for (j = 0; j < i; j++) {
			if (json_equal(h, json_array_get(hostnames, j))) {
				snprintf(msg, sizeof(msg), "duplicates hostnames[%zu]", j);
				cp_spec_error(errors, field, msg);
				break;
			}
		}
	}
	return json_array_size(errors) == before;
}

/* True if certificate_id (NULL: none) is tenant_id's and renews by DNS-01. */
static bool cert_renews_dns01(struct db *db, const char *tenant_id, const char *certificate_id)
{
	json_t *cert = NULL;
	bool yes = certificate_id && cp_uuid_valid(certificate_id) &&
		   db_certificate_get(db, tenant_id, certificate_id, &cert) == CP_OK &&
		   cp_json_str(cert, "challenge") &&
		   !strcmp(cp_json_str(cert, "challenge"), "dns-01");

	json_decref(cert);
	return yes;
}

/* True if a and b (arrays of distinct strings) hold the same hostnames. */
static bool same_hostnames(json_t *a, json_t *b)
{
	size_t i, j;
	json_t *x;

	if (json_array_size(a) != json_array_size(b))
		return false;
	json_array_foreach(a, i, x)
	{
		for (j = 0; j < json_array_size(b); j++)
			if (json_equal(x, json_array_get(b, j)))
				break;
		if (j == json_array_size(b))
			return false;
	}
	return true;
}

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* 422 with every error collected (errors stolen). */
static void reply_errors(struct api_resp *resp, json_t *errors)
{
	api_problem(resp, 422, "the body has invalid fields", errors);
}

/* -------------------------------------------------------------- writes */

/* A property is represented as GET /v1/properties/{id} renders it. */
static const struct api_repr property_repr = { .render = db_property_render };

/*
 * Create (id NULL) or update property id with in, inside the transaction
 * the caller opened: check the references (edge hostname and certificate of
 * this tenant), write, audit, commit (or roll back). check_cert: whether
 * certificate_id must be looked up (it is new). Replies in every case.
 */
static void property_write(struct api_req *req, struct api_resp *resp, const char *id,
			   const struct db_property_in *in, bool check_cert, bool bump)
{
	json_t *prop = NULL, *edge = NULL, *detail = NULL, *errors;
	const char *bad_field = NULL, *bad_msg = NULL, *pid;
	struct db_hostname_taken taken = { 0 };
	struct db_scope_verdict scope = { 0 };
	struct db_property_in w = *in;
	char detail_msg[400], field[32];
	bool verify_queued = false;
	cp_rc rc;

	if (!api_quota_or_reply(
		    req, resp,
		    &(struct db_quota_change){ .properties = !id,
					       .hostnames = (int)json_array_size(in->hostnames),
					       .property_id = id }))
		return;
	/* A foreign tenant's edge hostname is not found, exactly like a missing one. */
	rc = db_edge_hostname_get(req->db, req->tenant_id, in->edge_hostname_id, &edge);
	if (rc == CP_ERR_NOT_FOUND) {
		bad_field = "edge_hostname_id";
		bad_msg = "is not an edge hostname of this tenant";
		goto out;
	}
	if (rc != CP_OK)
		goto out;
	if (check_cert && in->certificate_id) {
		rc = db_certificate_exists(req->db, req->tenant_id, in->certificate_id);
		if (rc == CP_ERR_NOT_FOUND) {
			bad_field = "certificate_id";
			bad_msg = "is not a certificate of this tenant";
			goto out;
		}
		if (rc != CP_OK)
			goto out;
	}
	/* Edge names are the service's; another tenant's verified name is the
	 * 409 below (set_hostnames refuses it inside this transaction). */
	rc = db_issuance_scope(req->db, req->ctx->cfg->edge_zone, req->tenant_id, in->hostnames,
			       &scope);
	if (rc != CP_OK)
		goto out;
	if (scope.reason && strcmp(scope.reason, "hostname_in_edge_zone") == 0)
		goto out;
	scope.reason = NULL;
	w.claim_ttl_seconds = claims_policy(req->ctx->cfg).ttl_seconds;
	if (id)
		rc = db_property_update(req->db, req->tenant_id, id, &w, bump, &taken, &prop);
	else
		rc = db_property_create(req->db, req->tenant_id, &w, &taken, &prop);
	if (rc != CP_OK)
		goto out;
	pid = json_string_value(json_object_get(prop, "id"));
	rc = claims_enqueue(req->db, req->tenant_id, pid);
	verify_queued = rc == CP_OK;
	if (rc != CP_OK)
		goto out;
	detail = json_pack("{s:O,s:O,s:O}", "name", json_object_get(prop, "name"), "hostnames",
			   json_object_get(prop, "hostnames"), "version",
			   json_object_get(prop, "version"));
	rc = api_audit(req, id ? "property.update" : "property.create", "property",
		       json_string_value(json_object_get(prop, "id")), detail);
	if (rc == CP_OK)
		api_etag_set(req, resp, &property_repr, pid);
	if (rc == CP_OK)
		rc = db_commit(req->db);
out:
	if (rc != CP_OK || scope.reason)
		db_rollback(req->db);
	else if (verify_queued)
		cp_kick();
	if (bad_field) {
		api_problem_field(resp, bad_field, bad_msg);
	} else if (rc == CP_OK && scope.reason) {
		api_scope_problem(resp, &scope, "hostnames");
	} else if (rc == CP_ERR_CONFLICT) {
		const char *why = taken.other_tenant ? "is verified by another tenant"
						     : "is already used by another property";
		errors = json_array();
		snprintf(field, sizeof(field), "hostnames[%zu]", taken.index);
		cp_spec_error(errors, field, why);
		snprintf(detail_msg, sizeof(detail_msg), "hostname %s %s",
			 json_string_value(json_array_get(in->hostnames, taken.index)), why);
		api_problem(resp, 409, detail_msg, errors);
		if (resp->json && taken.other_tenant)
			json_object_set_new(resp->json, "reason",
					    json_string("hostname_owned_by_another_tenant"));
	} else if (rc != CP_OK) {
		api_reply_rc(resp, rc, "property");
	} else {
		api_reply(resp, id ? 200 : 201, prop);
		prop = NULL;
	}
	json_decref(prop);
	json_decref(edge);
	json_decref(detail);
}

void api_properties_create(struct api_req *req, struct api_resp *resp)
{
	struct db_property_in in = { 0 };
	int automation = 0;
	const struct cp_spec spec[] = {
		CP_SPEC_STR("name", true, &in.name, 1, PROPERTY_NAME_MAX),
		CP_SPEC_ARR("hostnames", true, &in.hostnames, PROPERTY_HOSTNAMES_MAX),
		CP_SPEC_STR("edge_hostname_id", true, &in.edge_hostname_id, 1, 64),
		CP_SPEC_STR("certificate_id", false, &in.certificate_id, 1, 64),
		CP_SPEC_BOOLEAN("certificate_renew_automation", false, &automation),
		CP_SPEC_DONE,
	};
	json_t *errors;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_body_or_reply(req, resp, spec))
		return;
	in.renew_automation = automation;
	errors = json_array();
	hostnames_valid(in.hostnames, in.renew_automation,
			in.renew_automation &&
				cert_renews_dns01(req->db, req->tenant_id, in.certificate_id),
			errors);
	if (!cp_uuid_valid(in.edge_hostname_id))
		cp_spec_error(errors, "edge_hostname_id", "is not an edge hostname of this tenant");
	if (in.certificate_id && !cp_uuid_valid(in.certificate_id))
		cp_spec_error(errors, "certificate_id", "must be a certificate id (UUID)");
	if (json_array_size(errors)) {
		reply_errors(resp, errors);
		return;
	}
	json_decref(errors);
	rc = db_begin(req->db);
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "property");
		return;
	}
	property_write(req, resp, NULL, &in, true, false);
}

void api_properties_list(struct api_req *req, struct api_resp *resp)
{
	const char *hostname = api_query(req, "hostname"), *why;
	const char *cert = api_query(req, "certificate_id");
	struct db_page pg;
	struct db_list list;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_page_or_reply(req, resp, &pg))
		return;
	if (hostname && !cp_hostname_valid(hostname, true, &why)) {
		api_problem_field(resp, "hostname", why);
		return;
	}
	if (cert && !cp_uuid_valid(cert)) {
		api_problem_field(resp, "certificate_id", "must be a certificate id (UUID)");
		return;
	}
	rc = db_property_list(req->db, req->tenant_id, hostname, cert, pg, &list);
	api_reply_list_rc(resp, rc, &list, "property");
}

void api_properties_get(struct api_req *req, struct api_resp *resp)
{
	api_render_resource(req, resp, db_property_render, "property");
}

/*
 * PATCH: any of the writable fields; absent fields keep their value,
 * certificate_id null detaches the certificate. The merged property is
 * validated as a whole (turning automation on with a wildcard hostname is
 * refused like creating it so).
 */
void api_properties_update(struct api_req *req, struct api_resp *resp)
{
	static const char *const not_null[] = {
		"name", "hostnames", "edge_hostname_id", "certificate_renew_automation", NULL,
	};
	const char *name = NULL, *edge_id = NULL, *cert_id = NULL, *cur_cert;
	json_t *hostnames = NULL, *cur = NULL, *errors = NULL;
	int automation = -1;
	const struct cp_spec spec[] = {
		CP_SPEC_STR("name", false, &name, 1, PROPERTY_NAME_MAX),
		CP_SPEC_ARR("hostnames", false, &hostnames, PROPERTY_HOSTNAMES_MAX),
		CP_SPEC_STR("edge_hostname_id", false, &edge_id, 1, 64),
		CP_SPEC_STR("certificate_id", false, &cert_id, 1, 64),
		CP_SPEC_BOOLEAN("certificate_renew_automation", false, &automation),
		CP_SPEC_DONE,
	};
	struct db_property_in in;
	bool detach, bump;
	cp_rc rc;

	if (!api_change_or_reply(req, resp, spec))
		return;
	errors = json_array();
	for (const char *const *f = not_null; *f; f++)
		if (json_is_null(json_object_get(req->body, *f)))
			cp_spec_error(errors, *f, "must not be null");
	detach = json_is_null(json_object_get(req->body, "certificate_id"));
	if (cert_id && !cp_uuid_valid(cert_id))
		cp_spec_error(errors, "certificate_id", "must be a certificate id (UUID) or null");
	if (edge_id && !cp_uuid_valid(edge_id))
		cp_spec_error(errors, "edge_hostname_id", "is not an edge hostname of this tenant");
	if (json_array_size(errors)) {
		reply_errors(resp, errors);
		return;
	}
	/* Read and merge inside the write transaction: two concurrent PATCHes
	 * then apply one after the other instead of losing one. */
	rc = db_begin_rmw(req->db);
	if (rc == CP_OK)
		rc = db_property_get(req->db, req->tenant_id, req->params[0], &cur);
	if (rc != CP_OK) {
		db_rollback(req->db);
		json_decref(errors);
		api_reply_rc(resp, rc, "property");
		return;
	}
	if (!api_if_match_or_reply(req, resp, &property_repr, req->params[0])) {
		json_decref(errors);
		json_decref(cur);
		return;
	}
	cur_cert = json_string_value(json_object_get(cur, "certificate_id"));
	in.name = name ? name : json_string_value(json_object_get(cur, "name"));
	in.hostnames = hostnames ? hostnames : json_object_get(cur, "hostnames");
	in.edge_hostname_id =
		edge_id ? edge_id : json_string_value(json_object_get(cur, "edge_hostname_id"));
	in.certificate_id = detach ? NULL : cert_id ? cert_id : cur_cert;
	in.renew_automation =
		automation >= 0
			? automation
			: json_is_true(json_object_get(cur, "certificate_renew_automation"));
	if (!hostnames_valid(in.hostnames, in.renew_automation,
			     in.renew_automation &&
				     cert_renews_dns01(req->db, req->tenant_id, in.certificate_id),
			     errors)) {
		db_rollback(req->db);
		reply_errors(resp, errors);
		json_decref(cur);
		return;
	}
	json_decref(errors);
	bump = !same_hostnames(in.hostnames, json_object_get(cur, "hostnames")) ||
	       !str_eq(in.certificate_id, cur_cert);
	property_write(req, resp, req->params[0], &in, !str_eq(in.certificate_id, cur_cert), bump);
	json_decref(cur);
}

void api_properties_delete(struct api_req *req, struct api_resp *resp)
{
	api_delete_resource_if(req, resp, db_property_delete, &property_repr, "property",
			       "property", NULL);
}

/* --------------------------------------------------------- deployments */

void api_deployments_create(struct api_req *req, struct api_resp *resp)
{
	static const char *const envs[] = { "staging", "production", NULL };
	const char *env = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_CHOICE("environment", true, &env, envs),
		CP_SPEC_DONE,
	};
	json_t *dep = NULL, *detail = NULL;
	cp_rc rc;

	if (!api_change_or_reply(req, resp, spec))
		return;
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_deployment_create(req->db, req->tenant_id, req->params[0], env, &dep);
	if (rc == CP_OK) {
		detail = json_pack("{s:O,s:s,s:O}", "deployment_id", json_object_get(dep, "id"),
				   "environment", env, "version", json_object_get(dep, "version"));
		rc = api_audit(req, "property.deploy", "property", req->params[0], detail);
	}
	if (rc == CP_OK)
		rc = db_commit(req->db);
	json_decref(detail);
	if (rc != CP_OK) {
		db_rollback(req->db);
		json_decref(dep);
		api_reply_rc(resp, rc, "property");
		return;
	}
	api_reply(resp, 201, dep);
}

/* api_exists_fn for a property. */
static cp_rc property_exists(struct db *db, const char *tenant_id, const char *id)
{
	json_t *prop = NULL;
	cp_rc rc = db_property_get(db, tenant_id, id, &prop);

	json_decref(prop);
	return rc;
}

void api_deployments_list(struct api_req *req, struct api_resp *resp)
{
	api_list_children(req, resp, property_exists, db_deployment_list, "property");
}

/* GET one deployment (the Location of its 201): params[0] the property,
 * params[1] the deployment; 404 unless both are the tenant's. */
void api_deployments_get(struct api_req *req, struct api_resp *resp)
{
	json_t *dep = NULL;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0) ||
	    !api_id_or_reply(req, resp, 1))
		return;
	rc = db_deployment_get(req->db, req->tenant_id, req->params[0], req->params[1], &dep);
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "deployment");
		return;
	}
	api_reply_entity(req, resp, dep);
}
