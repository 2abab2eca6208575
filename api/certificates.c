/*
 * certificates.c - /v1/certificates: upload a certificate with its key,
 * create a self-signed one, read, filter, rename, delete, download the
 * chain, list versions, and the one audited endpoint the private key ever
 * leaves through.
 *
 * Every fact shown for a certificate is read from the certificate itself
 * (db_certificate_add_version parses it); clients only choose the name,
 * auto_renew and metadata. Keys are normalised to unencrypted PKCS#8 and
 * sealed by the db layer before they touch SQL. Error messages never echo
 * the uploaded PEM, so a key pasted into the wrong field cannot reach a
 * response or a log.
 *
 * source "acme" is validated here and handed to the ACME engine
 * (api/certificates_acme.c): a pending certificate without a version and
 * its first order.
 */
#include "api/api.h"
#include "crypto/crypto.h"
#include "lifecycle/lifecycle.h"

#include <stdlib.h>
#include <string.h>

/* Bounds of client input. */
#define CERT_NAME_MAX 200
#define CERT_HOSTNAMES_MAX 100
#define CERT_METADATA_MAX 4096
#define CERT_PASSPHRASE_MAX 1024

static const char *const sources[] = { "upload", "self_signed", "acme", NULL };
static const char *const types[] = { "server", "ca", NULL };
static const char *const key_types[] = { "ecdsa-p256", "ecdsa-p384", "rsa-2048",
					 "rsa-3072",   "rsa-4096",   NULL };
static const char *const challenges[] = { "http-01", "dns-01", NULL };
static const char *const statuses[] = {
	"pending", "active", "renewing", "expired", "failed", NULL
};

/* ------------------------------------------------------------ validation */

/* True if name is "letsencrypt" or a CA configured in cas. */
static bool ca_known(const struct cp_config *cfg, const char *name)
{
	return api_ca_known(cfg, name);
}

/* cas (NULL: none): the CA list the orders fall back along
 * (api_ca_list_or_reply); ca, when given, must be its head, and defaults to
 * it (*ca set). */
static bool cas_or_reply(struct api_req *req, struct api_resp *resp, const json_t *cas,
			 const char **ca)
{
	if (!cas)
		return true;
	if (!api_ca_list_or_reply(req, resp, "cas", cas, false))
		return false;
	if (*ca && strcmp(*ca, json_string_value(json_array_get(cas, 0)))) {
		api_problem_field(resp, "cas", "must start with the certificate's ca");
		return false;
	}
	*ca = json_string_value(json_array_get(cas, 0));
	return true;
}

/* auto_renew is "none", "letsencrypt" or a configured CA; a CA certificate
 * never renews itself (nothing could issue it). */
static bool auto_renew_or_reply(struct api_req *req, struct api_resp *resp, const char *type,
				const char *auto_renew)
{
	if (!auto_renew)
		return true;
	if (strcmp(auto_renew, "none") != 0 && !ca_known(req->ctx->cfg, auto_renew)) {
		api_problem_field(resp, "auto_renew",
				  "must be \"none\", \"letsencrypt\" or a configured CA name");
		return false;
	}
	if (type && strcmp(type, "ca") == 0 && strcmp(auto_renew, "none") != 0) {
		api_problem_field(resp, "auto_renew",
				  "must be \"none\" for a CA certificate: CA certificates never "
				  "auto-renew");
		return false;
	}
	return true;
}

/*
 * profile (an ACME profile, migration 010): letters, digits, ".", "_", "-",
 * and offered in meta.profiles by each CA that will order the certificate:
 * ca (its first order; NULL: none) and renew_ca (auto_renew; NULL or
 * "none": none). Not offered -> 422 on "profile". A CA that cannot be asked
 * -> 503 with Retry-After: a profile is never stored unchecked (the order
 * checks again before newOrder: profile_not_offered). Asks the CA, so call
 * it outside a transaction. True if the profile may be stored.
 */
static bool profile_or_reply(struct api_req *req, struct api_resp *resp, const char *ca,
			     const char *renew_ca, const char *profile)
{
	const char *cas[2] = { ca, renew_ca };
	char detail[600];

	for (const char *p = profile; *p; p++) {
		if (!(*p >= 'a' && *p <= 'z') && !(*p >= 'A' && *p <= 'Z') &&
		    !(*p >= '0' && *p <= '9') && !strchr("._-", *p)) {
			api_problem_field(
				resp, "profile",
				"may only contain letters, digits, \".\", \"_\" and \"-\"");
			return false;
		}
	}
	if (!cas[0] && (!cas[1] || !strcmp(cas[1], "none"))) {
		api_problem_field(resp, "profile",
				  "needs a CA to order with: set auto_renew to a CA");
		return false;
	}
	for (int i = 0; i < 2; i++) {
		cp_rc rc = CP_ERR_NOT_FOUND;
		if (!cas[i] || !strcmp(cas[i], "none") ||
		    (i == 1 && cas[0] && !strcmp(cas[0], cas[1])))
			continue;
		snprintf(detail, sizeof(detail), "CA \"%s\" does not offer profile \"%s\"", cas[i],
			 profile);
		if (req->ctx->ca_profile_check)
			rc = req->ctx->ca_profile_check(req->ctx, req->db, cas[i], profile, detail,
							sizeof(detail));
		if (rc == CP_ERR_NOT_FOUND) {
			api_problem_field(resp, "profile", detail);
			return false;
		}
		if (rc != CP_OK) {
			api_problem(resp, 503, detail, NULL);
			resp->retry_after = 30;
			return false;
		}
	}
	return true;
}

/* hostnames: 1..100 distinct valid names; wildcards only if allowed. */
static bool hostnames_or_reply(struct api_resp *resp, json_t *hostnames, bool allow_wildcard,
			       const char *wildcard_why)
{
	char msg[200];
	size_t i, j;
	json_t *h;

	if (json_array_size(hostnames) == 0) {
		api_problem_field(resp, "hostnames", "must hold at least one hostname");
		return false;
	}
	json_array_foreach(hostnames, i, h)
	{
		const char *why = NULL, *s = json_string_value(h);
		if (!s) {
			snprintf(msg, sizeof(msg), "item %zu must be a string", i);
			api_problem_field(resp, "hostnames", msg);
			return false;
		}
		if (!cp_hostname_valid(s, true, &why)) {
			snprintf(msg, sizeof(msg), "item %zu is not a valid hostname: %s", i,
				 why ? why : "invalid");
			api_problem_field(resp, "hostnames", msg);
			return false;
		}
		if (!allow_wildcard && cp_hostname_is_wildcard(s)) {
			snprintf(msg, sizeof(msg), "item %zu: %s", i, wildcard_why);
			api_problem_field(resp, "hostnames", msg);
			return false;
		}
		for (j = 0; j < i; j++) {
			if (strcmp(s, json_string_value(json_array_get(hostnames, j))) == 0) {
				snprintf(msg, sizeof(msg), "item %zu repeats item %zu", i, j);
				api_problem_field(resp, "hostnames", msg);
				return false;
			}
		}
	}
	return true;
}

/* ------------------------------------------------------------ creation */

/* Everything a new certificate is made of; owned strings. */
struct new_cert {
	struct db_cert_new row;
	char *cert_pem;	 /* leaf */
	char *chain_pem; /* "" or intermediates */
	char *key_pem;	 /* PKCS#8, wipe on free */
};

static void new_cert_clear(struct new_cert *nc)
{
	free(nc->cert_pem);
	free(nc->chain_pem);
	crypto_wipe_free(nc->key_pem);
	memset(nc, 0, sizeof(*nc));
}

/* Append the normalised CERTIFICATE blocks of pem to *acc. */
static cp_rc chain_append(char **acc, const char *pem, const char **why)
{
	char *leaf = NULL, *rest = NULL, *joined = NULL;
	cp_rc rc = crypto_chain_split(pem, strlen(pem), &leaf, &rest, why);

	if (rc != CP_OK)
		return rc;
	joined = cp_aprintf("%s%s%s", *acc ? *acc : "", leaf, rest);
	free(leaf);
	free(rest);
	if (!joined)
		return CP_ERR_NOMEM;
	free(*acc);
	*acc = joined;
	return CP_OK;
}

/* Validate an upload into nc; false = a 422 is written. */
static bool upload_or_reply(struct api_req *req, struct api_resp *resp, struct new_cert *nc)
{
	const char *source = NULL, *name = NULL, *type = "server", *cert = NULL, *key = NULL,
		   *chain = NULL, *passphrase = NULL, *auto_renew = "none", *why = NULL;
	json_t *metadata = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_CHOICE("source", true, &source, sources),
		CP_SPEC_STR("name", true, &name, 1, CERT_NAME_MAX),
		CP_SPEC_CHOICE("type", false, &type, types),
		CP_SPEC_STR("certificate", true, &cert, 1, CRYPTO_PEM_MAX),
		CP_SPEC_STR("private_key", true, &key, 1, CRYPTO_PEM_MAX),
		CP_SPEC_STR("chain", false, &chain, 0, CRYPTO_PEM_MAX),
		CP_SPEC_STR("passphrase", false, &passphrase, 1, CERT_PASSPHRASE_MAX),
		CP_SPEC_STR("auto_renew", false, &auto_renew, 1, 64),
		CP_SPEC_OBJ("metadata", false, &metadata, CERT_METADATA_MAX),
		CP_SPEC_DONE,
	};
	struct crypto_cert_info ci;
	struct crypto_key *k = NULL;
	char *extra = NULL;
	bool ok = false;
	cp_rc rc;

	memset(&ci, 0, sizeof(ci));
	if (!api_body_or_reply(req, resp, spec) ||
	    !auto_renew_or_reply(req, resp, type, auto_renew))
		return false;
	/* The certificate field may be a bundle (leaf first): the rest joins
	 * the chain, ahead of anything given in chain. */
	rc = crypto_chain_split(cert, strlen(cert), &nc->cert_pem, &extra, &why);
	if (rc != CP_OK) {
		api_problem_field(resp, "certificate",
				  why ? why : "must be PEM CERTIFICATE blocks (leaf first)");
		goto out;
	}
	if (crypto_cert_info_parse(nc->cert_pem, strlen(nc->cert_pem), &ci, &why) != CP_OK) {
		api_problem_field(resp, "certificate", why ? why : "is not a valid certificate");
		goto out;
	}
	if (strcmp(type, "ca") == 0 && !ci.is_ca) {
		api_problem_field(resp, "type",
				  "is \"ca\" but the certificate is not a CA certificate "
				  "(basicConstraints CA:TRUE)");
		goto out;
	}
	/* Upload limits (SANs, weak signatures, a CA posing as a server). */
	if (crypto_cert_upload_check(nc->cert_pem, strlen(nc->cert_pem),
				     strcmp(type, "server") == 0, &why) != CP_OK) {
		api_problem_field(resp, "certificate", why ? why : "breaks the upload limits");
		goto out;
	}
	nc->chain_pem = extra;
	extra = NULL;
	if (chain && chain[strspn(chain, " \t\r\n")] != '\0') {
		rc = chain_append(&nc->chain_pem, chain, &why);
		if (rc != CP_OK) {
			api_problem_field(resp, "chain",
					  rc == CP_ERR_NOMEM ? "could not be stored"
					  : why		     ? why
							     : "must hold CERTIFICATE blocks only");
			goto out;
		}
	}
	/* The chain is what the certificate field carried after the leaf plus
	 * the chain field: at most 10 certificates, none signed with MD5/SHA-1. */
	if (nc->chain_pem &&
	    crypto_chain_upload_check(nc->chain_pem, strlen(nc->chain_pem), &why) != CP_OK) {
		api_problem_field(resp, "chain", why ? why : "breaks the upload limits");
		goto out;
	}
	rc = crypto_key_from_pem(key, strlen(key), passphrase, &k, &why);
	if (rc != CP_OK) {
		if (why && strcmp(why, "wrong passphrase") == 0)
			api_problem_field(resp, "passphrase", "does not decrypt the private key");
		else if (why && strcmp(why, "encrypted private key needs a passphrase") == 0)
			api_problem_field(resp, "private_key",
					  "is encrypted: give its passphrase in \"passphrase\"");
		else
			api_problem_field(resp, "private_key",
					  why ? why : "is not a PEM private key");
		goto out;
	}
	if (!crypto_key_matches_cert(k, nc->cert_pem, strlen(nc->cert_pem))) {
		api_problem_field(resp, "private_key", "does not match the certificate");
		goto out;
	}
	if (crypto_key_to_pem(k, &nc->key_pem) != CP_OK) {
		api_problem(resp, 500, "could not encode the private key", NULL);
		goto out;
	}
	nc->row.name = name;
	nc->row.type = type;
	nc->row.source = source;
	nc->row.status = "active";
	nc->row.auto_renew = auto_renew;
	nc->row.metadata = metadata;
	ok = true;
out:
	crypto_cert_info_clear(&ci);
	crypto_key_free(k);
	free(extra);
	return ok;
}

/* Validate and generate a self-signed certificate into nc. */
static bool self_signed_or_reply(struct api_req *req, struct api_resp *resp, struct new_cert *nc)
{
	const char *source = NULL, *name = NULL, *key_type = "ecdsa-p256", *auto_renew = "none";
	json_t *hostnames = NULL, *metadata = NULL;
	json_int_t days = 90;
	const struct cp_spec spec[] = {
		CP_SPEC_CHOICE("source", true, &source, sources),
		CP_SPEC_STR("name", true, &name, 1, CERT_NAME_MAX),
		CP_SPEC_ARR("hostnames", true, &hostnames, CERT_HOSTNAMES_MAX),
		CP_SPEC_CHOICE("key_type", false, &key_type, key_types),
		CP_SPEC_INTEGER("validity_days", false, &days, 1, 3650),
		CP_SPEC_STR("auto_renew", false, &auto_renew, 1, 64),
		CP_SPEC_OBJ("metadata", false, &metadata, CERT_METADATA_MAX),
		CP_SPEC_DONE,
	};
	enum crypto_key_type kt;
	struct crypto_key *k = NULL;
	bool ok = false;

	if (!api_body_or_reply(req, resp, spec) ||
	    !auto_renew_or_reply(req, resp, "server", auto_renew) ||
	    !hostnames_or_reply(resp, hostnames, true, NULL))
		return false;
	if (crypto_key_type_parse(key_type, &kt) != CP_OK || crypto_key_generate(kt, &k) != CP_OK ||
	    crypto_self_signed(k, hostnames, (int)days, &nc->cert_pem) != CP_OK ||
	    crypto_key_to_pem(k, &nc->key_pem) != CP_OK) {
		api_problem(resp, 500, "could not generate the certificate", NULL);
		goto out;
	}
	nc->chain_pem = cp_strdup("");
	if (!nc->chain_pem) {
		api_reply_rc(resp, CP_ERR_NOMEM, NULL);
		goto out;
	}
	nc->row.name = name;
	nc->row.type = "server";
	nc->row.source = source;
	nc->row.status = "active";
	nc->row.auto_renew = auto_renew;
	nc->row.key_type = key_type;
	nc->row.hostnames = hostnames;
	nc->row.metadata = metadata;
	ok = true;
out:
	crypto_key_free(k);
	return ok;
}

/* source "acme": the whole request is checked here, then the ACME side
 * (certificates_acme.c) creates the pending certificate and its order. */
static void acme_reply(struct api_req *req, struct api_resp *resp)
{
	const char *source = NULL, *name = NULL, *key_type = NULL, *challenge = "http-01",
		   *ca = NULL, *auto_renew = NULL, *profile = NULL;
	json_t *hostnames = NULL, *metadata = NULL, *cas = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_CHOICE("source", true, &source, sources),
		CP_SPEC_STR("name", true, &name, 1, CERT_NAME_MAX),
		CP_SPEC_ARR("hostnames", true, &hostnames, CERT_HOSTNAMES_MAX),
		CP_SPEC_CHOICE("challenge", false, &challenge, challenges),
		CP_SPEC_CHOICE("key_type", false, &key_type, key_types),
		CP_SPEC_STR("ca", false, &ca, 1, 64),
		CP_SPEC_STR("auto_renew", false, &auto_renew, 1, 64),
		CP_SPEC_OBJ("metadata", false, &metadata, CERT_METADATA_MAX),
		CP_SPEC_STR("profile", false, &profile, 1, 64),
		CP_SPEC_ARR("cas", false, &cas, 8),
		CP_SPEC_DONE,
	};

	if (!api_body_or_reply(req, resp, spec) || !cas_or_reply(req, resp, cas, &ca) ||
	    !auto_renew_or_reply(req, resp, "server", auto_renew) ||
	    !hostnames_or_reply(resp, hostnames, strcmp(challenge, "dns-01") == 0,
				"a wildcard needs challenge \"dns-01\""))
		return;
	if (ca && !ca_known(req->ctx->cfg, ca)) {
		api_problem_field(resp, "ca", "must be \"letsencrypt\" or a configured CA name");
		return;
	}
	if (profile && !profile_or_reply(req, resp, ca ? ca : "letsencrypt", auto_renew, profile))
		return;
	/* ACME engine (api/certificates_acme.c) takes over from here. */
	const struct api_acme_new in = { .name = name,
					 .hostnames = hostnames,
					 .challenge = challenge,
					 .key_type = key_type,
					 .ca = ca,
					 .auto_renew = auto_renew,
					 .metadata = metadata,
					 .profile = profile,
					 .cas = cas };
	api_certificates_acme_create(req, resp, &in);
}

/* A certificate is represented as GET /v1/certificates/{id} renders it. */
static const struct api_repr cert_repr = { .render = db_certificate_render };

/* End the write transaction of certificate id with its result rc: on CP_OK
 * the audit record action (detail borrowed), the commit and a reply of
 * status with the certificate as it now is; otherwise (or when one of those
 * fails) a rollback and the problem for the error. */
static void cert_write_end(struct api_req *req, struct api_resp *resp, cp_rc rc, const char *action,
			   const char *id, json_t *detail, int status)
{
	json_t *cert = NULL;

	if (rc == CP_OK)
		rc = api_audit(req, action, "certificate", id, detail);
	if (rc == CP_OK)
		rc = db_certificate_get(req->db, req->tenant_id, id, &cert);
	if (rc == CP_OK)
		api_etag_set(req, resp, &cert_repr, id);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc == CP_OK) {
		api_reply(resp, status, cert);
		return;
	}
	db_rollback(req->db);
	json_decref(cert);
	api_reply_rc(resp, rc, "certificate");
}

void api_certificates_create(struct api_req *req, struct api_resp *resp)
{
	struct new_cert nc;
	char id[CP_UUID_LEN + 1];
	struct db_cert_material m;
	struct crypto_cert_info ci;
	json_t *detail = NULL;
	const char *source;
	cp_rc rc;

	memset(&nc, 0, sizeof(nc));
	memset(&ci, 0, sizeof(ci));
	if (!api_tenant_or_reply(req, resp))
		return;
	if (!api_object_body_or_reply(req, resp))
		return;
	source = json_string_value(json_object_get(req->body, "source"));
	if (!source || !(strcmp(source, "upload") == 0 || strcmp(source, "self_signed") == 0 ||
			 strcmp(source, "acme") == 0)) {
		api_problem_field(resp, "source",
				  "is required: one of \"upload\", \"self_signed\", \"acme\"");
		return;
	}
	if (strcmp(source, "acme") == 0) {
		acme_reply(req, resp);
		return;
	}
	if (strcmp(source, "upload") == 0 ? !upload_or_reply(req, resp, &nc)
					  : !self_signed_or_reply(req, resp, &nc))
		goto out;

	memset(&m, 0, sizeof(m));
	m.cert_pem = nc.cert_pem;
	m.chain_pem = nc.chain_pem;
	m.key_pem = nc.key_pem;
	rc = crypto_cert_info_parse(nc.cert_pem, strlen(nc.cert_pem), &ci, NULL);
	if (rc != CP_OK)
		goto fail;
	/* An upload or a self-signed certificate is a bootstrap version. */
	m.renew_after = lifecycle_renew_at(
		&(struct lifecycle_version){ ci.not_before, ci.not_after, LIFECYCLE_BOOTSTRAP },
		req->ctx->cfg->renew_before_days);
	detail = json_pack("{s:s,s:s}", "source", nc.row.source, "name", nc.row.name);
	rc = db_begin(req->db);
	if (rc == CP_OK &&
	    !api_quota_or_reply(req, resp, &(struct db_quota_change){ .certificates = 1 }))
		goto out;
	if (rc == CP_OK)
		rc = db_certificate_create(req->db, req->tenant_id, &nc.row, id);
	if (rc == CP_OK)
		rc = db_certificate_add_version(req->db, req->ctx->keyring, req->tenant_id, id, &m,
						NULL);
	cert_write_end(req, resp, rc, "certificate.create", id, detail, 201);
	goto out;
fail:
	db_rollback(req->db);
	api_reply_rc(resp, rc, "certificate");
out:
	crypto_cert_info_clear(&ci);
	json_decref(detail);
	new_cert_clear(&nc);
}

/* ------------------------------------------------------------ reading */

void api_certificates_list(struct api_req *req, struct api_resp *resp)
{
	struct db_cert_filter f = { .status = NULL, .expiring_within = -1, .hostname = NULL };
	const char *status = api_query(req, "status"),
		   *days = api_query(req, "expiring_within_days");
	const char *host = api_query(req, "hostname"), *why = NULL;
	struct db_page pg;
	struct db_list list;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_page_or_reply(req, resp, &pg))
		return;
	if (status) {
		for (const char *const *s = statuses; *s; s++)
			if (strcmp(*s, status) == 0)
				f.status = *s;
		if (!f.status) {
			api_problem_field(resp, "status",
					  "must be one of: pending, active, renewing, "
					  "expired, failed");
			return;
		}
	}
	if (days) {
		char *end;
		long v = strtol(days, &end, 10);
		if (!*days || *end || v < 0 || v > 3650) {
			api_problem_field(resp, "expiring_within_days",
					  "must be an integer from 0 to 3650");
			return;
		}
		f.expiring_within = (int64_t)v * 86400;
	}
	if (host) {
		if (!cp_hostname_valid(host, true, &why)) {
			api_problem_field(resp, "hostname", why ? why : "is not a hostname");
			return;
		}
		f.hostname = host;
	}
	rc = db_certificate_list(req->db, req->tenant_id, &f, pg, &list);
	api_reply_list_rc(resp, rc, &list, "certificate");
}

void api_certificates_get(struct api_req *req, struct api_resp *resp)
{
	api_render_resource(req, resp, db_certificate_render, "certificate");
}

void api_certificates_versions(struct api_req *req, struct api_resp *resp)
{
	api_list_children(req, resp, db_certificate_exists, db_certificate_versions, "certificate");
}

void api_certificates_pem(struct api_req *req, struct api_resp *resp)
{
	char *pem = NULL;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	rc = db_certificate_pem(req->db, req->tenant_id, req->params[0], &pem);
	if (rc == CP_ERR_CONFLICT) {
		api_problem(resp, 409, "the certificate has not been issued yet", NULL);
		return;
	}
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "certificate");
		return;
	}
	api_reply_text(resp, 200, "application/pem-certificate-chain", pem, strlen(pem));
	free(pem);
}

/* The only way a private key leaves certplane: audited, never cached. */
void api_certificates_private_key(struct api_req *req, struct api_resp *resp)
{
	char *pem = NULL;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_certificate_key_pem(req->db, req->ctx->keyring, req->tenant_id,
					    req->params[0], &pem);
	if (rc == CP_OK)
		rc = api_audit(req, "certificate.private_key_read", "certificate", req->params[0],
			       NULL);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK) {
		db_rollback(req->db);
		crypto_wipe_free(pem);
		if (rc == CP_ERR_CONFLICT) {
			api_problem(resp, 409, "the certificate has not been issued yet", NULL);
			return;
		}
		if (rc == CP_ERR_CRYPTO)
			cp_logf(CP_LOG_ERROR, "certificate.key_open",
				"cannot open the private key of certificate %s", req->params[0]);
		api_reply_rc(resp, rc, "certificate");
		return;
	}
	api_reply_text(resp, 200, "application/x-pem-file", pem, strlen(pem));
	resp->no_store = true;
	crypto_wipe_free(pem);
}

/* ------------------------------------------------------------ changes */

/* The profile check of a PATCH: against the CAs the certificate will order
 * from after the change (auto_renew if the PATCH sets it). Reads the
 * certificate outside a transaction; the order checks again before the CA. */
static bool profile_change_or_reply(struct api_req *req, struct api_resp *resp,
				    const char *auto_renew, const char *profile)
{
	json_t *cert = NULL;
	cp_rc rc = db_certificate_get(req->db, req->tenant_id, req->params[0], &cert);
	bool ok = false;

	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "certificate");
		return false;
	}
	/* A bad auto_renew is its own 422, before any CA is asked. */
	if (!auto_renew_or_reply(req, resp, cp_json_str(cert, "type"), auto_renew)) {
		json_decref(cert);
		return false;
	}
	if (!auto_renew)
		auto_renew = cp_json_str(cert, "auto_renew");
	/* The CA of its next order, as api_certificates_renew picks it. */
	if (!strcmp(json_string_value(json_object_get(cert, "type")), "ca"))
		api_problem_field(resp, "profile", "a CA certificate is never ordered");
	else if (auto_renew && strcmp(auto_renew, "none") != 0)
		ok = profile_or_reply(req, resp, NULL, auto_renew, profile);
	else
		ok = profile_or_reply(req, resp, cp_json_str(cert, "ca"), NULL, profile);
	json_decref(cert);
	return ok;
}

void api_certificates_update(struct api_req *req, struct api_resp *resp)
{
	const char *name = NULL, *auto_renew = NULL, *profile = NULL;
	json_t *metadata = NULL, *cert = NULL, *cas = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_STR("name", false, &name, 1, CERT_NAME_MAX),
		CP_SPEC_STR("auto_renew", false, &auto_renew, 1, 64),
		CP_SPEC_OBJ("metadata", false, &metadata, CERT_METADATA_MAX),
		CP_SPEC_STR("profile", false, &profile, 1, 64),
		CP_SPEC_ARR("cas", false, &cas, 8),
		CP_SPEC_DONE,
	};
	bool set_profile, set_cas;
	cp_rc rc;

	if (!api_change_or_reply(req, resp, spec))
		return;
	/* "cas": a new CA list for the next orders; null or [] clears it */
	set_cas = cas || json_is_null(json_object_get(req->body, "cas"));
	if (cas && !api_ca_list_or_reply(req, resp, "cas", cas, true))
		return;
	/* "profile": null clears it; a name is checked with the CA first,
	 * outside the transaction (profile_or_reply asks the CA). */
	set_profile = profile || json_is_null(json_object_get(req->body, "profile"));
	if (profile && !profile_change_or_reply(req, resp, auto_renew, profile))
		return;
	rc = db_begin_rmw(req->db);
	if (rc == CP_OK)
		rc = db_certificate_get(req->db, req->tenant_id, req->params[0], &cert);
	if (rc != CP_OK)
		goto fail;
	if (!api_if_match_or_reply(req, resp, &cert_repr, req->params[0]))
		goto out;
	if (!auto_renew_or_reply(req, resp, json_string_value(json_object_get(cert, "type")),
				 auto_renew)) {
		db_rollback(req->db);
		goto out;
	}
	json_decref(cert);
	cert = NULL;
	rc = db_certificate_update(req->db, req->tenant_id, req->params[0], name, auto_renew,
				   metadata);
	if (rc == CP_OK && set_profile)
		rc = db_certificate_set_profile(req->db, req->tenant_id, req->params[0], profile);
	if (rc == CP_OK && set_cas)
		rc = db_certificate_set_cas(req->db, req->tenant_id, req->params[0], cas);
	cert_write_end(req, resp, rc, "certificate.update", req->params[0], NULL, 200);
	goto out;
fail:
	db_rollback(req->db);
	api_reply_rc(resp, rc, "certificate");
out:
	json_decref(cert);
}

void api_certificates_delete(struct api_req *req, struct api_resp *resp)
{
	api_delete_resource_if(req, resp, db_certificate_delete, &cert_repr, "certificate",
			       "certificate",
			       "the certificate is attached to a property: detach it first");
}
