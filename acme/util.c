/*
 * util.c - the pure parts of the ACME module, with no network: problem
 * documents (their classification is errors.c), Retry-After
 * parsing, challenge lookup in an authorization, HTTP-01 key authorizations,
 * DNS-01 records and the RFC 9773 certificate identifier.
 *
 * The ARI identifier needs the certificate's Authority Key Identifier, which
 * crypto.h does not expose, so this file reads it with OpenSSL directly; it
 * is the only place in acme/ that does (a candidate to move into crypto/).
 */
#include "acme/acme.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>


#include "crypto/crypto.h"

/* Short type of a problem ("badNonce") or NULL if not in the ACME namespace. */
static const char *short_type(const struct acme_result *r)
{
	size_t n = strlen(ACME_PROBLEM_NS);

	if (strncmp(r->type, ACME_PROBLEM_NS, n) != 0)
		return NULL;
	return r->type + n;
}

bool acme_result_is(const struct acme_result *r, const char *short_name)
{
	const char *t;

	/* Invalid orders and authorizations carry the CA's problem type too. */
	if (!r || (r->fail != ACME_FAIL_PROBLEM && r->fail != ACME_FAIL_AUTHZ_INVALID &&
		   r->fail != ACME_FAIL_ORDER_INVALID) ||
	    !(t = short_type(r)))
		return false;
	return strcmp(t, short_name) == 0;
}

cp_rc acme_parse_retry_after(const char *value, int64_t now, int64_t *secs)
{
	/* HTTP-date forms (RFC 9110 5.6.7): IMF-fixdate, RFC 850, asctime. */
	static const char *const formats[] = { "%a, %d %b %Y %H:%M:%S GMT",
					       "%A, %d-%b-%y %H:%M:%S GMT",
					       "%a %b %e %H:%M:%S %Y", NULL };
	const char *p = value;
	int64_t v = 0;

	if (!value)
		return CP_ERR_INVALID;
	while (*p == ' ' || *p == '\t')
		p++;
	if (*p >= '0' && *p <= '9') {
		for (; *p >= '0' && *p <= '9'; p++) {
			/* Cap absurd values at ~100 years instead of overflowing. */
			if (v < 3155760000LL)
				v = v * 10 + (*p - '0');
		}
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p)
			return CP_ERR_INVALID;
		*secs = v;
		return CP_OK;
	}
	for (int i = 0; formats[i]; i++) {
		struct tm tm;
		const char *end;
		time_t t;

		memset(&tm, 0, sizeof(tm));
		end = strptime(p, formats[i], &tm);
		if (!end)
			continue;
		while (*end == ' ' || *end == '\t')
			end++;
		if (*end)
			continue;
		t = timegm(&tm);
		if (t == (time_t)-1)
			return CP_ERR_INVALID;
		*secs = (int64_t)t > now ? (int64_t)t - now : 0;
		return CP_OK;
	}
	return CP_ERR_INVALID;
}

void acme_parse_problem(const char *body, size_t len, long status, struct acme_result *r)
{
	json_t *o = NULL, *sub;
	const char *type, *detail;

	r->fail = ACME_FAIL_PROBLEM;
	r->status = status;
	r->type[0] = '\0';
	o = body && len ? json_loadb(body, len, 0, NULL) : NULL;
	if (!json_is_object(o)) {
		snprintf(r->detail, sizeof(r->detail), "CA answered HTTP %ld without a problem document",
			 status);
		goto out;
	}
	type = json_string_value(json_object_get(o, "type"));
	detail = json_string_value(json_object_get(o, "detail"));
	snprintf(r->type, sizeof(r->type), "%s", type ? type : "");
	snprintf(r->detail, sizeof(r->detail), "%s", detail ? detail : "");
	if (!detail)
		snprintf(r->detail, sizeof(r->detail), "CA answered HTTP %ld (%s)", status,
			 type ? type : "no type");
	/* RFC 8555 6.7.1: the first subproblem usually names the identifier at fault. */
	sub = json_array_get(json_object_get(o, "subproblems"), 0);
	if (json_is_object(sub)) {
		const char *sd = json_string_value(json_object_get(sub, "detail"));
		const char *sv = json_string_value(json_object_get(json_object_get(sub, "identifier"), "value"));
		size_t used = strlen(r->detail);

		if (sd)
			snprintf(r->detail + used, sizeof(r->detail) - used, "; %s%s%s", sv ? sv : "",
				 sv ? ": " : "", sd);
	}
out:
	json_decref(o);
}

const json_t *acme_authz_challenge(const json_t *authz, const char *type)
{
	json_t *chs = json_object_get(authz, "challenges");
	size_t i;
	json_t *ch;

	json_array_foreach(chs, i, ch) {
		const char *t = json_string_value(json_object_get(ch, "type"));

		if (t && strcmp(t, type) == 0)
			return ch;
	}
	return NULL;
}

/* True if s is non-empty and only base64url characters (ACME tokens are). */
static bool b64url_token(const char *s)
{
	if (!s || !*s || strlen(s) > 512)
		return false;
	for (; *s; s++)
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		      *s == '-' || *s == '_'))
			return false;
	return true;
}

cp_rc acme_key_authorization(const struct crypto_key *key, const char *token, char **out)
{
	char thumb[44];
	cp_rc rc;

	*out = NULL;
	/* The token ends up in a URL path and a file name: refuse anything odd. */
	if (!b64url_token(token))
		return CP_ERR_INVALID;
	if ((rc = crypto_jwk_thumbprint(key, thumb)) != CP_OK)
		return rc;
	*out = cp_aprintf("%s.%s", token, thumb);
	return *out ? CP_OK : CP_ERR_NOMEM;
}

cp_rc acme_dns01_record(const struct crypto_key *key, const char *identifier,
			const char *token, char **name, char **value)
{
	char *ka = NULL;
	char digest[44];
	cp_rc rc;

	*name = *value = NULL;
	if (!identifier || !*identifier)
		return CP_ERR_INVALID;
	/* RFC 8555 8.4: a wildcard's TXT lives at the base domain's name. */
	if (strncmp(identifier, "*.", 2) == 0)
		identifier += 2;
	if ((rc = acme_key_authorization(key, token, &ka)) != CP_OK)
		return rc;
	crypto_dns01_value(ka, digest);
	free(ka);
	*name = cp_aprintf("_acme-challenge.%s", identifier);
	*value = cp_strdup(digest);
	if (!*name || !*value) {
		free(*name);
		free(*value);
		*name = *value = NULL;
		return CP_ERR_NOMEM;
	}
	return CP_OK;
}

cp_rc acme_ari_cert_id(const char *cert_pem, size_t len, char **out)
{
	/* X.509 parsing stays inside crypto/, the one module that uses OpenSSL. */
	return crypto_cert_ari_id(cert_pem, len, out);
}
