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

#include <assert.h>
#include <curl/curl.h>
#include <stdbool.h>
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
	if (!r ||
	    (r->fail != ACME_FAIL_PROBLEM && r->fail != ACME_FAIL_AUTHZ_INVALID &&
	     r->fail != ACME_FAIL_ORDER_INVALID) ||
	    !(t = short_type(r)))
		return false;
	return strcmp(t, short_name) == 0;
}

/* Retry-After values above this (about 100 years) are read as this: a bound,
 * not an overflow, whatever the CA sends. */
#define RETRY_AFTER_MAX 3155760000LL
/* The longest HTTP-date (RFC 850 with "Wednesday") is 37 characters. */
#define HTTP_DATE_MAX 40

static bool ows(char c)
{
	return c == ' ' || c == '\t';
}

/* The HTTP-date (RFC 9110 5.6.7) in s[0..n) as unix seconds, or -1.
 * libcurl's curl_getdate does the conversion; it is lenient (trailing words,
 * 31 February rolled into March, any weekday), so the result is formatted
 * back in each of the three forms and must give s exactly: strict by
 * construction, with no calendar code of ours. */
static int64_t http_date(const char *s, size_t n)
{
	/* IMF-fixdate, then the obsolete RFC 850 and asctime forms. */
	static const char *const forms[] = { "%a, %d %b %Y %H:%M:%S GMT",
					     "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y" };
	char in[HTTP_DATE_MAX + 1], out[HTTP_DATE_MAX + 1];
	struct tm tm;
	time_t t;

	if (n > HTTP_DATE_MAX)
		return -1;
	memcpy(in, s, n);
	in[n] = '\0';
	t = curl_getdate(in, NULL);
	if (t < 0 || !gmtime_r(&t, &tm))
		return -1;
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		size_t m = strftime(out, sizeof(out), forms[i], &tm);

		if (m == n && memcmp(out, in, n) == 0)
			return (int64_t)t;
	}
	return -1;
}

cp_rc acme_parse_retry_after(const char *value, int64_t now, int64_t *secs)
{
	const char *p, *end;
	int64_t v = 0, t;

	assert(secs);
	if (!value)
		return CP_ERR_INVALID;
	/* Optional whitespace around the value (RFC 9110 5.6.3). */
	for (p = value; ows(*p); p++)
		;
	for (end = p + strlen(p); end > p && ows(end[-1]); end--)
		;
	if (p == end)
		return CP_ERR_INVALID;
	if (*p >= '0' && *p <= '9') {
		/* delay-seconds = 1*DIGIT, nothing else; saturating, so any
		 * number of digits is bounded rather than overflowing. */
		for (; p < end; p++) {
			if (*p < '0' || *p > '9')
				return CP_ERR_INVALID;
			v = v * 10 + (*p - '0');
			if (v > RETRY_AFTER_MAX)
				v = RETRY_AFTER_MAX;
		}
		*secs = v;
		return CP_OK;
	}
	t = http_date(p, (size_t)(end - p));
	if (t < 0)
		return CP_ERR_INVALID;
	v = t > now ? t - now : 0; /* a date in the past: go now */
	*secs = v > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : v;
	return CP_OK;
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
		snprintf(r->detail, sizeof(r->detail),
			 "CA answered HTTP %ld without a problem document", status);
		goto out;
	}
	type = json_string_value(json_object_get(o, "type"));
	detail = json_string_value(json_object_get(o, "detail"));
	snprintf(r->type, sizeof(r->type), "%s", type ? type : "");
	snprintf(r->detail, sizeof(r->detail), "%s", detail ? detail : "");
	/* An empty detail explains as little as none: a failure must say something. */
	if (!detail || !*detail)
		snprintf(r->detail, sizeof(r->detail), "CA answered HTTP %ld (%s)", status,
			 type ? type : "no type");
	/* RFC 8555 6.7.1: the first subproblem usually names the identifier at fault. */
	sub = json_array_get(json_object_get(o, "subproblems"), 0);
	if (json_is_object(sub)) {
		const char *sd = json_string_value(json_object_get(sub, "detail"));
		const char *sv = json_string_value(
			json_object_get(json_object_get(sub, "identifier"), "value"));
		size_t used = strlen(r->detail);

		if (sd)
			snprintf(r->detail + used, sizeof(r->detail) - used, "; %s%s%s",
				 sv ? sv : "", sv ? ": " : "", sd);
	}
out:
	json_decref(o);
}

const json_t *acme_authz_challenge(const json_t *authz, const char *type)
{
	json_t *chs = json_object_get(authz, "challenges");
	size_t i;
	json_t *ch;

	json_array_foreach(chs, i, ch)
	{
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
		if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
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

cp_rc acme_dns01_record(const struct crypto_key *key, const char *identifier, const char *token,
			char **name, char **value)
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

/* ---- shape checks of CA answers ---- */

#define ACME_URL_MAX 2048
#define ACME_AUTHZ_MAX 100     /* an order names at most 100 identifiers */
#define ACME_CHALLENGES_MAX 16 /* CAs offer three or four */

/* True if v is an http(s) URL string of printable ASCII, bounded. */
static bool url_ok(const json_t *v)
{
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);

	if (!s || n == 0 || n > ACME_URL_MAX || strlen(s) != n)
		return false;
	if (strncmp(s, "https://", 8) != 0 && strncmp(s, "http://", 7) != 0)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

/* True if v is a string equal to one of choices (NULL-ended). */
static bool one_of(const json_t *v, const char *const *choices)
{
	const char *s = json_string_value(v);

	for (; s && *choices; choices++)
		if (strcmp(s, *choices) == 0)
			return true;
	return false;
}

/* An optional member: absent is fine, present must satisfy ok. */
static bool opt_url(const json_t *o, const char *k)
{
	const json_t *v = json_object_get(o, k);

	return !v || url_ok(v);
}

/* meta.profiles, if given: an object of 1..64 names of 1..64 characters
 * (the values are descriptions for humans, not read). */
static bool profiles_ok(const json_t *profiles)
{
	const char *name;
	const json_t *v;

	if (!profiles)
		return true;
	if (!json_is_object(profiles) || json_object_size(profiles) > 64)
		return false;
	json_object_foreach((json_t *)profiles, name, v)
	{
		if (!*name || strlen(name) > 64)
			return false;
	}
	return true;
}

cp_rc acme_directory_check(const json_t *dir, const char **why)
{
	static const char *const required[] = { "newNonce", "newAccount", "newOrder", NULL };

	*why = NULL;
	if (!json_is_object(dir)) {
		*why = "directory is not a JSON object";
		return CP_ERR_INVALID;
	}
	for (int i = 0; required[i]; i++) {
		if (!url_ok(json_object_get(dir, required[i]))) {
			*why = "directory lacks newNonce/newAccount/newOrder URLs";
			return CP_ERR_INVALID;
		}
	}
	if (!opt_url(dir, "renewalInfo")) {
		*why = "directory renewalInfo is not a URL";
		return CP_ERR_INVALID;
	}
	if (!profiles_ok(json_object_get(json_object_get(dir, "meta"), "profiles"))) {
		*why = "directory meta.profiles is not an object of at most 64 names";
		return CP_ERR_INVALID;
	}
	return CP_OK;
}

cp_rc acme_order_check(const json_t *order, const char **why)
{
	static const char *const statuses[] = { "pending", "ready",   "processing",
						"valid",   "invalid", NULL };
	const json_t *authzs = json_object_get(order, "authorizations"), *v;
	const json_t *expires = json_object_get(order, "expires");
	size_t i;

	*why = NULL;
	if (!json_is_object(order)) {
		*why = "order is not a JSON object";
		return CP_ERR_INVALID;
	}
	if (!one_of(json_object_get(order, "status"), statuses)) {
		*why = "order status is missing or unknown";
		return CP_ERR_INVALID;
	}
	if (!json_is_array(authzs) || json_array_size(authzs) == 0 ||
	    json_array_size(authzs) > ACME_AUTHZ_MAX) {
		*why = "order authorizations is not an array of 1 to 100 URLs";
		return CP_ERR_INVALID;
	}
	json_array_foreach(authzs, i, v)
	{
		if (!url_ok(v)) {
			*why = "order authorizations holds something else than a URL";
			return CP_ERR_INVALID;
		}
	}
	if (!url_ok(json_object_get(order, "finalize"))) {
		*why = "order finalize is not a URL";
		return CP_ERR_INVALID;
	}
	if (!opt_url(order, "certificate")) {
		*why = "order certificate is not a URL";
		return CP_ERR_INVALID;
	}
	if (expires && !json_is_string(expires)) {
		*why = "order expires is not a string";
		return CP_ERR_INVALID;
	}
	return CP_OK;
}

/* One challenge object of an authorization. */
static bool challenge_ok(const json_t *ch)
{
	const json_t *st = json_object_get(ch, "status"), *tok = json_object_get(ch, "token");

	if (!json_is_object(ch) || !json_is_string(json_object_get(ch, "type")) ||
	    !url_ok(json_object_get(ch, "url")))
		return false;
	if (st && !json_is_string(st))
		return false;
	/* The token ends up in a URL path and a DNS record: base64url only. */
	return !tok || b64url_token(json_string_value(tok));
}

cp_rc acme_authz_check(const json_t *authz, const char **why)
{
	static const char *const statuses[] = { "pending", "valid",   "invalid", "deactivated",
						"expired", "revoked", NULL };
	const json_t *id = json_object_get(authz, "identifier");
	const json_t *chs = json_object_get(authz, "challenges"), *v;
	const json_t *expires = json_object_get(authz, "expires");
	const json_t *wildcard = json_object_get(authz, "wildcard");
	const char *value = json_string_value(json_object_get(id, "value")), *hwhy;
	size_t i;

	*why = NULL;
	if (!json_is_object(authz)) {
		*why = "authorization is not a JSON object";
		return CP_ERR_INVALID;
	}
	if (!one_of(json_object_get(id, "type"), (const char *const[]){ "dns", NULL }) || !value ||
	    strlen(value) != json_string_length(json_object_get(id, "value")) ||
	    !cp_hostname_valid(value, false, &hwhy)) {
		*why = "authorization identifier is not a DNS hostname";
		return CP_ERR_INVALID;
	}
	if (!one_of(json_object_get(authz, "status"), statuses)) {
		*why = "authorization status is missing or unknown";
		return CP_ERR_INVALID;
	}
	if ((expires && !json_is_string(expires)) || (wildcard && !json_is_boolean(wildcard))) {
		*why = "authorization expires or wildcard has the wrong type";
		return CP_ERR_INVALID;
	}
	if (!json_is_array(chs) || json_array_size(chs) > ACME_CHALLENGES_MAX) {
		*why = "authorization challenges is not an array of at most 16";
		return CP_ERR_INVALID;
	}
	json_array_foreach(chs, i, v)
	{
		if (!challenge_ok(v)) {
			*why = "authorization holds a malformed challenge";
			return CP_ERR_INVALID;
		}
	}
	return CP_OK;
}

bool acme_chain_pem_valid(const char *body, size_t len, const char **why)
{
	static const char begin[] = "-----BEGIN CERTIFICATE-----";
	static const char end[] = "-----END CERTIFICATE-----";
	const size_t bl = sizeof(begin) - 1, el = sizeof(end) - 1;
	const char *p = body, *stop = body + len;
	int blocks = 0, count = 0;

	*why = "certificate chain holds something else than CERTIFICATE blocks";
	if (!body || !cp_utf8_valid(body, len))
		return false;
	for (;;) {
		const char *e;

		while (p < stop && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
			p++;
		if (p == stop)
			break;
		if ((size_t)(stop - p) < bl || memcmp(p, begin, bl) != 0)
			return false;
		p += bl;
		e = memmem(p, (size_t)(stop - p), end, el);
		if (!e)
			return false;
		/* The base64 body may not contain another armour line. */
		if (memchr(p, '-', (size_t)(e - p)))
			return false;
		p = e + el;
		blocks++;
	}
	if (blocks == 0)
		return false;
	if (crypto_chain_check(body, len, &count, why) != CP_OK)
		return false;
	/* Text between blocks is skipped by the PEM reader: counts must agree. */
	if (count != blocks) {
		*why = "certificate chain does not parse";
		return false;
	}
	*why = NULL;
	return true;
}
