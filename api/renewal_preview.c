/*
 * renewal_preview.c - the renewal plan of a certificate as the scheduler
 * builds it (api_renewal_plan_load: the lifecycle rules of
 * lifecycle/lifecycle.h over the stored facts), and GET
 * /v1/certificates/{id}/renewal-preview: when the next renewal happens and
 * why, what it requests, and what blocks it now, per hostname.
 *
 * The blockers are the checks the order engine makes when the order runs
 * (server/orders.c: issuance scope, wildcard with HTTP-01, the tenant's
 * claim, the CNAME to the edge through the configured resolver), made
 * without recording anything: a preview is a read. The DNS lookups run on a
 * net thread (the route is .offload) under one hard deadline for the whole
 * request, and the names checked are bounded by the plan
 * (LIFECYCLE_PLAN_NAMES), so one request does bounded work.
 */
#include "acme/acme.h"
#include "api/api.h"
#include "lifecycle/lifecycle.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Every DNS lookup of one preview ends by then; later names are reported
 * as not checked. */
#define PREVIEW_DNS_BUDGET_MS 10000

void api_renewal_plan_free(struct api_renewal_plan *p)
{
	if (!p)
		return;
	json_decref(p->deployed);
	json_decref(p->sans);
	json_decref(p->order_plan);
	free(p->names);
	free(p->plan);
	memset(p, 0, sizeof(*p));
}

cp_rc api_renewal_plan_load(struct db *db, const char *tenant_id, const json_t *cert,
			    const char *key_type, bool carried, struct api_renewal_plan *out)
{
	const json_t *vsans = json_object_get(cert, "sans");
	const char *ca;
	size_t nv, nd, i, n = 0;
	json_t *h;
	cp_rc rc;

	assert(db && tenant_id && cert && out);
	memset(out, 0, sizeof(*out));
	rc = db_renewal_hostnames(db, tenant_id, cp_json_str(cert, "id"), &out->deployed);
	if (rc == CP_OK)
		rc = db_certificate_order_plan(db, tenant_id, cp_json_str(cert, "id"),
					       &out->order_plan);
	if (rc != CP_OK)
		goto out;
	ca = json_string_value(json_array_get(json_object_get(out->order_plan, "cas"), 0));
	nv = json_array_size(vsans);
	nd = json_array_size(out->deployed);
	out->names = calloc(nv + nd + 1, sizeof(*out->names));
	out->plan = calloc(1, sizeof(*out->plan));
	out->sans = json_array();
	rc = CP_ERR_NOMEM;
	if (!out->names || !out->plan || !out->sans)
		goto out;
	json_array_foreach(vsans, i, h) out->names[n++] = json_string_value(h);
	json_array_foreach(out->deployed, i, h) out->names[nv + i] = json_string_value(h);
	lifecycle_plan(
		&(struct lifecycle_plan_in){
			.version_sans = out->names,
			.n_version_sans = nv,
			.deployed = out->names + nv,
			.n_deployed = nd,
			.carried = carried || nd > 0,
			.ca = ca ? ca : cp_json_str(cert, "auto_renew"),
			.profile = cp_json_str(cert, "profile"), /* absent: NULL */
			.challenge = cp_json_str(cert, "challenge"),
			.key_type = key_type,
			.version_key_type = cp_json_str(cert, "key_type"),
		},
		out->plan);
	for (i = 0; i < out->plan->n_sans; i++)
		if (json_array_append_new(out->sans, json_string(out->plan->sans[i])) != 0)
			goto out;
	rc = CP_OK;
out:
	if (rc != CP_OK)
		api_renewal_plan_free(out);
	return rc;
}

/* Append {hostname (null for the certificate), reason, detail}. */
static void blocker(json_t *list, const char *hostname, const char *reason, const char *detail)
{
	json_array_append_new(list, json_pack("{s:s?,s:s,s:s}", "hostname", hostname, "reason",
					      reason, "detail", detail));
}

/* The names of a not in b (a new array). */
static json_t *names_minus(const json_t *a, const json_t *b)
{
	json_t *out = json_array(), *x, *y;
	size_t i, j;

	json_array_foreach(a, i, x)
	{
		bool found = false;
		json_array_foreach(b, j, y) found = found || json_equal(x, y);
		if (!found)
			json_array_append(out, x);
	}
	return out;
}

/*
 * The blockers of one hostname of the plan, as the order engine would find
 * them now (server/orders.c, hostname checks), appended to list. *res is
 * created on first use with the preview's deadline.
 */
static void hostname_blockers(struct api_req *req, const char *name, bool http01, bool carried,
			      struct acme_resolver **res, int64_t deadline, json_t *list)
{
	struct db_scope_verdict scope;
	json_t *one = json_pack("[s]", name), *claim = NULL, *check = NULL;
	const char *status;
	char detail[700];
	cp_rc rc;

	if (!carried)
		blocker(list, name, "no_production_property",
			"no production deployment of a property with renew automation carries "
			"the certificate for this hostname");
	if (http01 && cp_hostname_is_wildcard(name))
		blocker(list, name, "wildcard",
			"HTTP-01 cannot validate a wildcard: the certificate needs challenge "
			"dns-01");
	memset(&scope, 0, sizeof(scope));
	if (one &&
	    db_issuance_scope(req->db, req->ctx->cfg->edge_zone, req->tenant_id, one, &scope) ==
		    CP_OK &&
	    scope.reason) {
		if (strcmp(scope.reason, "hostname_owned_by_another_tenant") == 0)
			blocker(list, name, "owned_by_another_tenant", scope.detail);
		else
			blocker(list, name, "in_edge_zone", scope.detail);
	}
	json_decref(one);
	if (!http01 || cp_hostname_is_wildcard(name))
		return; /* DNS-01 proves control by itself; a wildcard is reported */
	rc = db_claim_get(req->db, req->tenant_id, name, &claim);
	if (rc != CP_OK) {
		blocker(list, name, "not_verified",
			"the hostname is on no property of this tenant: HTTP-01 needs it on a "
			"property, CNAMEd to the property's edge hostname");
		return;
	}
	status = cp_json_str(claim, "status");
	if (cp_mono_ms() >= deadline) {
		blocker(list, name, "not_checked", "not checked: the preview ran out of time");
		goto out;
	}
	if (!*res) {
		if (acme_resolver_new(req->ctx->cfg->dns_resolver, res) != CP_OK) {
			blocker(list, name, "not_checked", "the dns_resolver setting is unusable");
			goto out;
		}
		acme_resolver_set_deadline(*res, deadline);
	}
	rc = acme_check_hostname(*res, name, cp_json_str(claim, "edge_hostname"), &check);
	if (rc == CP_ERR_UPSTREAM) {
		blocker(list, name, "dns_lookup_failed",
			cp_json_str(check, "detail") ? cp_json_str(check, "detail")
						     : "the DNS lookup failed");
	} else if (rc != CP_OK) {
		blocker(list, name, "not_pointed", "the hostname cannot be looked up");
	} else if (!json_is_true(json_object_get(check, "ready")) &&
		   db_edge_in_chain(req->db, req->tenant_id,
				    json_object_get(check, "cname_chain")) != CP_OK) {
		blocker(list, name, "not_pointed",
			cp_json_str(check, "detail") ? cp_json_str(check, "detail")
						     : "does not point at the edge");
		/* A pending claim verifies when its CNAME reaches the edge. */
		if (status && strcmp(status, "verified") != 0) {
			snprintf(detail, sizeof(detail),
				 "the claim of %s is %s: it is verified when its CNAME reaches "
				 "the edge (or its TXT token is published)",
				 name, status);
			blocker(list, name, "not_verified", detail);
		}
	}
out:
	json_decref(check);
	json_decref(claim);
}

/* A time as the API spells it, or JSON null for 0. */
static json_t *ts(int64_t t)
{
	char buf[CP_TIME_LEN + 1];

	if (t <= 0)
		return json_null();
	cp_time_fmt(t, buf);
	return json_string(buf);
}

void api_certificates_renewal_preview(struct api_req *req, struct api_resp *resp)
{
	struct api_renewal_plan p = { 0 };
	struct acme_resolver *res = NULL;
	json_t *cert = NULL, *facts = NULL, *blockers = NULL, *h, *request;
	int64_t deadline = cp_mono_ms() + PREVIEW_DNS_BUDGET_MS, at;
	enum lifecycle_why why;
	bool carried, http01;
	size_t i;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	rc = db_certificate_get(req->db, req->tenant_id, req->params[0], &cert);
	if (rc == CP_OK)
		rc = db_renewal_facts(req->db, req->tenant_id, req->params[0], &facts);
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "certificate");
		goto out;
	}
	if (strcmp(cp_json_str(facts, "type"), "server") != 0) {
		api_problem(resp, 409, "a CA certificate is not renewed", NULL);
		goto out;
	}
	if (cp_json_int(facts, "version") == 0) {
		api_problem(resp, 409,
			    "the certificate has not been issued yet: its first order is not a "
			    "renewal",
			    NULL);
		goto out;
	}
	rc = api_renewal_plan_load(req->db, req->tenant_id, cert, cp_json_str(facts, "key_type"),
				   false, &p);
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "certificate");
		goto out;
	}
	carried = json_array_size(p.deployed) > 0;
	struct lifecycle_version v = {
		cp_json_int(facts, "not_before"),
		cp_json_int(facts, "not_after"),
		json_is_true(json_object_get(facts, "ca_issued")) ? LIFECYCLE_CA
								  : LIFECYCLE_BOOTSTRAP,
	};
	at = lifecycle_next_renewal(
		cp_json_int(facts, "renew_after"), cp_json_int(facts, "next_attempt_at"), &v,
		req->ctx->cfg->renew_before_days, p.plan->san_changed, cp_now(), &why);
	blockers = json_array();
	if (!blockers) {
		api_reply_rc(resp, CP_ERR_NOMEM, NULL);
		goto out;
	}
	if (strcmp(cp_json_str(facts, "auto_renew"), "none") == 0)
		blocker(blockers, NULL, "auto_renew_off",
			"auto_renew is \"none\": nothing renews this certificate");
	if (p.plan->truncated)
		blocker(blockers, NULL, "too_many_names",
			"the carried hostnames are more than a certificate can hold");
	if (p.plan->n_sans == 0)
		blocker(blockers, NULL, "no_production_property",
			"the carrying production deployments list no hostname");
	http01 = strcmp(p.plan->challenge, "http-01") == 0;
	json_array_foreach(p.sans, i, h) hostname_blockers(req, json_string_value(h), http01,
							   carried, &res, deadline, blockers);
	acme_resolver_free(res);
	request = json_pack("{s:O,s:s?,s:s?,s:s,s:s,s:b,s:o,s:o}", "sans", p.sans, "ca", p.plan->ca,
			    "profile", p.plan->profile, "challenge", p.plan->challenge, "key_type",
			    p.plan->key_type, "san_changed", p.plan->san_changed, "added",
			    names_minus(p.sans, json_object_get(cert, "sans")), "removed",
			    names_minus(json_object_get(cert, "sans"), p.sans));
	api_reply(
		resp, 200,
		json_pack("{s:s,s:o,s:s,s:o,s:O?,s:o,s:b,s:O}", "certificate_id", req->params[0],
			  "renew_after", ts(at), "reason", lifecycle_why_name(why), "backoff_until",
			  ts(cp_json_int(facts, "next_attempt_at") > cp_now()
				     ? cp_json_int(facts, "next_attempt_at")
				     : 0),
			  "order_in_flight", json_object_get(facts, "order_in_flight"), "request",
			  request, "ready", json_array_size(blockers) == 0, "blockers", blockers));
out:
	api_renewal_plan_free(&p);
	json_decref(blockers);
	json_decref(facts);
	json_decref(cert);
}
