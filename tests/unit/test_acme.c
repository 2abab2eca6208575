/*
 * test_acme.c - tests of the acme/ module.
 *
 * Always: the pure helpers (ARI cert id against the RFC 9773 example, key
 * authorizations, DNS-01 records, Retry-After, problem documents and their
 * reasons; the classification table of errors.c, one case per row, every
 * row covered) and the client's error paths against a small mock CA served by
 * libmicrohttpd on a random loopback port (badNonce retries, rateLimited with
 * Retry-After, oversized answers, a chain holding a private key, a CA that is
 * not there, ARI present).
 *
 * With ACME_DIRECTORY_URL set (source the testbed's env: tests/testbed/
 * acme-testbed start /tmp/cp-testbed): real issuance from Pebble over HTTP-01
 * (answered by a responder in this process on 127.0.0.1:5002) and DNS-01
 * (TXT published through challtestsrv), a failing challenge, a forgotten
 * account, and the CNAME checks through the mock DNS. Without it the test
 * FAILS: a test that cannot run must not pass (CI always sets it, through
 * deploy/quickstart.sh or /work/wt/nsrun).
 *
 * Exit status: 0 when every check passed.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "acme/acme.h"
#include "crypto/crypto.h"
#include "tests/unit/acme_issue.h"
#include "tests/unit/check.h"

static bool streq(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

/* ==== unit tests: pure helpers ==== */

/* A PEM certificate with the given serial and (optional) AKI key id. */
static char *make_cert(const uint8_t *serial, size_t serial_len, const uint8_t *kid, size_t kid_len)
{
	EVP_PKEY *pk = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	BIGNUM *bn = BN_bin2bn(serial, (int)serial_len, NULL);
	ASN1_INTEGER *sn = BN_to_ASN1_INTEGER(bn, NULL);
	AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
	BIO *bio = BIO_new(BIO_s_mem());
	char *out = NULL, *data;
	long n;

	X509_set_version(x, 2);
	X509_set_serialNumber(x, sn);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
				   (const unsigned char *)"ari.test", -1, -1, 0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pk);
	if (kid) {
		akid->keyid = ASN1_OCTET_STRING_new();
		ASN1_OCTET_STRING_set(akid->keyid, kid, (int)kid_len);
		X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, X509V3_ADD_DEFAULT);
	}
	if (X509_sign(x, pk, EVP_sha256()) > 0 && PEM_write_bio_X509(bio, x)) {
		n = BIO_get_mem_data(bio, &data);
		out = cp_strndup(data, (size_t)n);
	}
	BIO_free(bio);
	AUTHORITY_KEYID_free(akid);
	ASN1_INTEGER_free(sn);
	BN_free(bn);
	X509_free(x);
	EVP_PKEY_free(pk);
	return out;
}

static void test_ari_cert_id(void)
{
	/* RFC 9773 section 4.1 example. */
	static const uint8_t kid[] = { 0x69, 0x88, 0x5B, 0x6B, 0x87, 0x46, 0x40, 0x41, 0xE1, 0xB3,
				       0x7B, 0x84, 0x7B, 0xA0, 0xAE, 0x2C, 0xDE, 0x01, 0xC8, 0xD4 };
	static const uint8_t serial[] = { 0x87, 0x65, 0x43, 0x21 };
	static const uint8_t small[] = { 0x01, 0x02 };
	char *pem = make_cert(serial, sizeof(serial), kid, sizeof(kid));
	char *id = NULL;

	CHECK(pem);
	CHECK_RC(acme_ari_cert_id(pem, strlen(pem), &id), CP_OK);
	CHECK(streq(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"));
	free(id);
	id = NULL;
	free(pem);
	/* High bit clear: no leading zero octet. */
	pem = make_cert(small, sizeof(small), kid, sizeof(kid));
	CHECK_RC(acme_ari_cert_id(pem, strlen(pem), &id), CP_OK);
	CHECK(streq(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AQI"));
	free(id);
	id = NULL;
	free(pem);
	/* No AKI: cannot name the certificate to the CA. */
	pem = make_cert(serial, sizeof(serial), NULL, 0);
	CHECK_RC(acme_ari_cert_id(pem, strlen(pem), &id), CP_ERR_INVALID);
	CHECK(id == NULL);
	free(pem);
	CHECK_RC(acme_ari_cert_id("not a pem", 9, &id), CP_ERR_INVALID);
}

static void test_challenge_helpers(void)
{
	struct crypto_key *k = NULL;
	char thumb[44], digest[44];
	char *ka = NULL, *name = NULL, *value = NULL, *want = NULL;
	json_t *authz;

	CHECK_RC(crypto_key_generate(CRYPTO_KEY_ECDSA_P256, &k), CP_OK);
	CHECK_RC(crypto_jwk_thumbprint(k, thumb), CP_OK);
	CHECK_RC(acme_key_authorization(k, "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA", &ka),
		 CP_OK);
	want = cp_aprintf("evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.%s", thumb);
	CHECK(streq(ka, want));
	CHECK(strlen(thumb) == 43);
	/* Tokens go into URLs and TXT names: only base64url passes. */
	char *bad = NULL;
	CHECK_RC(acme_key_authorization(k, "../etc/passwd", &bad), CP_ERR_INVALID);
	CHECK_RC(acme_key_authorization(k, "", &bad), CP_ERR_INVALID);
	CHECK(bad == NULL);

	CHECK_RC(acme_dns01_record(k, "*.wild.test", "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA",
				   &name, &value),
		 CP_OK);
	crypto_dns01_value(ka, digest);
	CHECK(streq(name, "_acme-challenge.wild.test"));
	CHECK(streq(value, digest));

	authz = json_loads("{\"challenges\":[{\"type\":\"http-01\",\"token\":\"a\"},"
			   "{\"type\":\"dns-01\",\"token\":\"b\"}]}",
			   0, NULL);
	CHECK(streq(
		json_string_value(json_object_get(acme_authz_challenge(authz, "dns-01"), "token")),
		"b"));
	CHECK(acme_authz_challenge(authz, "tls-alpn-01") == NULL);
	CHECK(acme_authz_challenge(NULL, "http-01") == NULL);
	json_decref(authz);
	free(ka);
	free(want);
	free(name);
	free(value);
	crypto_key_free(k);
}

static void test_retry_after(void)
{
	int64_t s = -1;
	/* 2015-10-21T07:28:00Z */
	const int64_t t = 1445412480;

	CHECK_RC(acme_parse_retry_after("120", t, &s), CP_OK);
	CHECK(s == 120);
	CHECK_RC(acme_parse_retry_after(" 0 ", t, &s), CP_OK);
	CHECK(s == 0);
	CHECK_RC(acme_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", t - 60, &s), CP_OK);
	CHECK(s == 60);
	CHECK_RC(acme_parse_retry_after("Wednesday, 21-Oct-15 07:28:00 GMT", t - 5, &s), CP_OK);
	CHECK(s == 5);
	CHECK_RC(acme_parse_retry_after("Wed Oct 21 07:28:00 2015", t - 7, &s), CP_OK);
	CHECK(s == 7);
	CHECK_RC(acme_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", t + 100, &s), CP_OK);
	CHECK(s == 0); /* in the past: go now */
	CHECK_RC(acme_parse_retry_after("99999999999999999999999", t, &s), CP_OK);
	CHECK(s > 0); /* capped, not overflowed */
	CHECK_RC(acme_parse_retry_after("soon", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("12abc", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("-5", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after(NULL, t, &s), CP_ERR_INVALID);
	/* Past dates in every form give 0, the epoch itself too. */
	CHECK_RC(acme_parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", t, &s), CP_OK);
	CHECK(s == 0);
	CHECK_RC(acme_parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", t, &s), CP_OK);
	CHECK(s == 0);
	CHECK_RC(acme_parse_retry_after("Sun Nov  6 08:49:37 1994", t, &s), CP_OK);
	CHECK(s == 0);
	/* Whitespace around a date; a one-digit asctime day is space-padded. */
	CHECK_RC(acme_parse_retry_after("\tWed, 21 Oct 2015 07:29:00 GMT  ", t, &s), CP_OK);
	CHECK(s == 60);
	CHECK_RC(acme_parse_retry_after("Thu Oct  1 00:00:00 2015", t - 86400 * 30, &s), CP_OK);
	CHECK(s == 1443657600 - (t - 86400 * 30));
	/* Huge values are bounded, in both forms, never negative. */
	CHECK_RC(acme_parse_retry_after("3155760001", t, &s), CP_OK);
	CHECK(s == 3155760000LL);
	CHECK_RC(acme_parse_retry_after("18446744073709551617", t, &s), CP_OK);
	CHECK(s == 3155760000LL);
	CHECK_RC(acme_parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", t, &s), CP_OK);
	CHECK(s == 3155760000LL);
	CHECK_RC(acme_parse_retry_after("3155759999", t, &s), CP_OK);
	CHECK(s == 3155759999LL);
	/* Garbage: what curl_getdate alone would accept is refused. */
	s = 7;
	CHECK_RC(acme_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT xyz", t, &s),
		 CP_ERR_INVALID);
	CHECK(s == 7); /* untouched on error */
	CHECK_RC(acme_parse_retry_after("Wed, 31 Feb 2015 07:28:00 GMT", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("Mon, 21 Oct 2015 07:28:00 GMT", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("Wed, 21 Oct 2015 07:28:00 +0100", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("Wed, 21 Oct 2015 07:28:00 PST", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("Wed, 21 Oct 2015", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("wed, 21 oct 2015 07:28:00 gmt", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("Wed, 21 Oct 2015 25:28:00 GMT", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("Wed, 31 Dec 1969 23:59:59 GMT", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("12 0", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("+5", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("1.5", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("0x10", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after(" \t ", t, &s), CP_ERR_INVALID);
	CHECK_RC(acme_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT and then some more text", t,
					&s),
		 CP_ERR_INVALID);
}

static void test_problems(void)
{
	struct acme_result r;
	const char *rl = "{\"type\":\"urn:ietf:params:acme:error:rateLimited\","
			 "\"detail\":\"too many certificates\",\"status\":429}";
	const char *sub = "{\"type\":\"urn:ietf:params:acme:error:rejectedIdentifier\","
			  "\"detail\":\"some names rejected\",\"subproblems\":[{\"type\":"
			  "\"urn:ietf:params:acme:error:caa\",\"detail\":\"CAA forbids\","
			  "\"identifier\":{\"type\":\"dns\",\"value\":\"shop.test\"}}]}";

	memset(&r, 0, sizeof(r));
	CHECK(acme_result_reason(&r) == NULL);
	acme_parse_problem(rl, strlen(rl), 429, &r);
	CHECK(r.fail == ACME_FAIL_PROBLEM && r.status == 429);
	CHECK(streq(r.type, "urn:ietf:params:acme:error:rateLimited"));
	CHECK(streq(r.detail, "too many certificates"));
	CHECK(acme_result_is(&r, "rateLimited"));
	CHECK(!acme_result_is(&r, "rate"));
	CHECK(streq(acme_result_reason(&r), "ca_rate_limited"));

	acme_parse_problem(sub, strlen(sub), 400, &r);
	CHECK(streq(acme_result_reason(&r), "ca_rejected_identifier"));
	CHECK(strstr(r.detail, "shop.test: CAA forbids") != NULL);

	acme_parse_problem("<html>bad gateway</html>", 24, 502, &r);
	CHECK(r.fail == ACME_FAIL_PROBLEM && r.type[0] == '\0');
	CHECK(strstr(r.detail, "502") != NULL);
	CHECK(streq(acme_result_reason(&r), "ca_unreachable"));

	acme_parse_problem(
		"{\"type\":\"urn:ietf:params:acme:error:unauthorized\",\"detail\":\"x\"}", 63, 403,
		&r);
	CHECK(streq(acme_result_reason(&r), "ca_unauthorized"));
	acme_parse_problem("{\"type\":\"urn:ietf:params:acme:error:serverInternal\"}", 52, 500, &r);
	CHECK(streq(acme_result_reason(&r), "ca_server_error"));
	CHECK(strstr(r.detail, "serverInternal") != NULL);

	/* An empty detail is as good as none: the failure still says something
	 * (found by fuzz_acme, corpus bug_empty_detail). */
	acme_parse_problem("{\"type\":\"urn:ietf:params:acme:error:rateLimited\",\"detail\":\"\"}",
			   61, 429, &r);
	CHECK(r.detail[0] && strstr(r.detail, "429") && strstr(r.detail, "rateLimited"));

	r.fail = ACME_FAIL_UNREACHABLE;
	CHECK(streq(acme_result_reason(&r), "ca_unreachable"));
	r.fail = ACME_FAIL_PROTOCOL;
	CHECK(streq(acme_result_reason(&r), "ca_protocol_error"));
}

/* ==== the classification table: one case per row ==== */

/* One outcome and the verdict acme_classify() must give it. */
struct cls_case {
	const char *row; /* the table row that must match */
	enum acme_fail fail;
	enum acme_net net;
	const char *type; /* short ACME type, NULL none, "x:" prefix = not ACME */
	long status;
	enum acme_outcome outcome;
	const char *reason;
};

#define TR ACME_OUTCOME_TRANSIENT
#define RS ACME_OUTCOME_RESET
#define DF ACME_OUTCOME_DEFINITIVE

/* clang-format off */
static const struct cls_case cls_cases[] = {
	{ "connection refused", ACME_FAIL_UNREACHABLE, ACME_NET_REFUSED, NULL, 0, TR, "ca_unreachable" },
	{ "connection reset", ACME_FAIL_UNREACHABLE, ACME_NET_RESET, NULL, 0, TR, "ca_unreachable" },
	{ "timeout", ACME_FAIL_UNREACHABLE, ACME_NET_TIMEOUT, NULL, 0, TR, "ca_unreachable" },
	{ "TLS error", ACME_FAIL_UNREACHABLE, ACME_NET_TLS, NULL, 0, TR, "ca_unreachable" },
	{ "name resolution", ACME_FAIL_UNREACHABLE, ACME_NET_RESOLVE, NULL, 0, TR, "ca_unreachable" },
	{ "transport error", ACME_FAIL_UNREACHABLE, ACME_NET_OTHER, NULL, 0, TR, "ca_unreachable" },
	{ "unusable answer", ACME_FAIL_PROTOCOL, 0, NULL, 200, TR, "ca_protocol_error" },
	{ "local failure", ACME_FAIL_LOCAL, 0, NULL, 0, TR, "internal" },
	{ "badNonce", ACME_FAIL_PROBLEM, 0, "badNonce", 400, TR, "ca_bad_nonce" },
	{ "rateLimited", ACME_FAIL_PROBLEM, 0, "rateLimited", 429, TR, "ca_rate_limited" },
	{ "rateLimited", ACME_FAIL_PROBLEM, 0, "rateLimited", 403, TR, "ca_rate_limited" },
	{ "HTTP 429", ACME_FAIL_PROBLEM, 0, NULL, 429, TR, "ca_rate_limited" },
	{ "HTTP 429", ACME_FAIL_PROBLEM, 0, "x:throttled", 429, TR, "ca_rate_limited" },
	{ "serverInternal", ACME_FAIL_PROBLEM, 0, "serverInternal", 500, TR, "ca_server_error" },
	{ "serverInternal", ACME_FAIL_PROBLEM, 0, "serverInternal", 503, TR, "ca_server_error" },
	{ "HTTP 502-504", ACME_FAIL_PROBLEM, 0, NULL, 503, TR, "ca_unreachable" },
	{ "HTTP 502-504", ACME_FAIL_PROBLEM, 0, NULL, 502, TR, "ca_unreachable" },
	{ "HTTP 502-504", ACME_FAIL_PROBLEM, 0, NULL, 504, TR, "ca_unreachable" },
	{ "HTTP 5xx", ACME_FAIL_PROBLEM, 0, NULL, 500, TR, "ca_server_error" },
	{ "HTTP 5xx", ACME_FAIL_PROBLEM, 0, "malformed", 501, TR, "ca_server_error" },
	{ "HTTP 408", ACME_FAIL_PROBLEM, 0, NULL, 408, TR, "ca_unreachable" },
	{ "orderNotReady", ACME_FAIL_PROBLEM, 0, "orderNotReady", 403, TR, "ca_order_not_ready" },
	{ "accountDoesNotExist", ACME_FAIL_PROBLEM, 0, "accountDoesNotExist", 400, RS,
	  "ca_account_missing" },
	{ "HTTP 404", ACME_FAIL_PROBLEM, 0, "malformed", 404, RS, "ca_order_missing" },
	{ "unauthorized", ACME_FAIL_PROBLEM, 0, "unauthorized", 403, DF, "ca_unauthorized" },
	{ "rejectedIdentifier", ACME_FAIL_PROBLEM, 0, "rejectedIdentifier", 400, DF,
	  "ca_rejected_identifier" },
	{ "unsupportedIdentifier", ACME_FAIL_PROBLEM, 0, "unsupportedIdentifier", 400, DF,
	  "ca_rejected_identifier" },
	{ "caa", ACME_FAIL_PROBLEM, 0, "caa", 403, DF, "caa_forbids" },
	{ "badCSR", ACME_FAIL_PROBLEM, 0, "badCSR", 400, DF, "ca_bad_csr" },
	{ "malformed", ACME_FAIL_PROBLEM, 0, "malformed", 400, DF, "ca_malformed" },
	{ "other ACME problem", ACME_FAIL_PROBLEM, 0, "userActionRequired", 403, DF, "ca_refused" },
	{ "other ACME problem", ACME_FAIL_PROBLEM, 0, "externalAccountRequired", 401, DF, "ca_refused" },
	{ "HTTP 4xx without ACME problem", ACME_FAIL_PROBLEM, 0, NULL, 403, TR, "ca_protocol_error" },
	{ "HTTP 4xx without ACME problem", ACME_FAIL_PROBLEM, 0, "x:blocked", 400, TR,
	  "ca_protocol_error" },
	{ "other status", ACME_FAIL_PROBLEM, 0, NULL, 301, TR, "ca_protocol_error" },
	{ "validation: caa", ACME_FAIL_AUTHZ_INVALID, 0, "caa", 0, DF, "caa_forbids" },
	{ "validation: rejectedIdentifier", ACME_FAIL_AUTHZ_INVALID, 0, "rejectedIdentifier", 0, DF,
	  "ca_rejected_identifier" },
	{ "validation: connection", ACME_FAIL_AUTHZ_INVALID, 0, "connection", 0, DF,
	  "challenge_failed" },
	{ "validation: dns", ACME_FAIL_AUTHZ_INVALID, 0, "dns", 0, DF, "challenge_failed" },
	{ "validation: unauthorized", ACME_FAIL_AUTHZ_INVALID, 0, "unauthorized", 0, DF,
	  "challenge_failed" },
	{ "validation: incorrectResponse", ACME_FAIL_AUTHZ_INVALID, 0, "incorrectResponse", 0, DF,
	  "challenge_failed" },
	{ "validation: tls", ACME_FAIL_AUTHZ_INVALID, 0, "tls", 0, DF, "challenge_failed" },
	{ "validation: other", ACME_FAIL_AUTHZ_INVALID, 0, NULL, 0, DF, "challenge_failed" },
	{ "validation: other", ACME_FAIL_AUTHZ_INVALID, 0, "serverInternal", 0, DF,
	  "challenge_failed" },
	{ "invalid order", ACME_FAIL_ORDER_INVALID, 0, NULL, 0, DF, "ca_order_invalid" },
	{ "invalid order", ACME_FAIL_ORDER_INVALID, 0, "badCSR", 0, DF, "ca_order_invalid" },
};
/* clang-format on */

static void test_classify(void)
{
	struct acme_result r;
	struct acme_verdict v;
	json_t *authz, *order;

	memset(&r, 0, sizeof(r));
	v = acme_classify(&r);
	CHECK(v.outcome == ACME_OUTCOME_OK && v.reason == NULL);
	v = acme_classify(NULL);
	CHECK(v.outcome == ACME_OUTCOME_OK);
	for (size_t i = 0; i < CP_ARRAY_LEN(cls_cases); i++) {
		const struct cls_case *k = &cls_cases[i];

		memset(&r, 0, sizeof(r));
		r.fail = k->fail;
		r.net = k->net;
		r.status = k->status;
		r.retry_after = -1;
		if (k->type && strncmp(k->type, "x:", 2) == 0)
			snprintf(r.type, sizeof(r.type), "about:%s", k->type + 2);
		else if (k->type)
			snprintf(r.type, sizeof(r.type), "%s%s", ACME_PROBLEM_NS, k->type);
		v = acme_classify(&r);
		if (!streq(v.row, k->row) || v.outcome != k->outcome ||
		    !streq(v.reason, k->reason) || v.retry_now != streq(k->row, "badNonce")) {
			failures++;
			fprintf(stderr,
				"FAIL classify case %zu (%s): row %s outcome %d reason %s\n", i,
				k->row, v.row, (int)v.outcome, v.reason ? v.reason : "(null)");
		}
		checks++;
		/* Never the old catch-all for something that is not the CA's final word. */
		CHECK(!streq(v.reason, "ca_error"));
	}
	/* Every row of the table has a case above. */
	for (size_t i = 0; i < acme_classify_rows(); i++) {
		const char *name = acme_classify_row_name(i);
		bool seen = false;

		for (size_t j = 0; j < CP_ARRAY_LEN(cls_cases) && !seen; j++)
			seen = streq(cls_cases[j].row, name);
		if (!seen) {
			failures++;
			fprintf(stderr, "FAIL classify: row \"%s\" has no test case\n", name);
		}
		checks++;
	}
	CHECK(acme_classify_row_name(acme_classify_rows()) == NULL);

	/* Real documents: an invalid authorization's challenge error, an
	 * invalid order without one, a 503 page with Retry-After. */
	authz = json_loads("{\"status\":\"invalid\",\"identifier\":{\"type\":\"dns\",\"value\":"
			   "\"a.test\"},\"challenges\":[{\"type\":\"http-01\",\"url\":\"u\","
			   "\"token\":\"t\",\"error\":{\"type\":\"urn:ietf:params:acme:error:"
			   "connection\",\"detail\":\"refused\"}}]}",
			   0, NULL);
	acme_authz_problem(authz, "http-01", &r);
	CHECK(r.fail == ACME_FAIL_AUTHZ_INVALID && acme_result_is(&r, "connection"));
	CHECK(streq(r.detail, "refused"));
	CHECK(streq(acme_result_reason(&r), "challenge_failed"));
	acme_authz_problem(authz, "dns-01", &r); /* no such challenge: no error to quote */
	CHECK(strstr(r.detail, "a.test") && strstr(r.detail, "invalid"));
	CHECK(streq(acme_classify(&r).row, "validation: other"));
	json_decref(authz);
	order = json_loads("{\"status\":\"invalid\"}", 0, NULL);
	acme_order_problem(order, &r);
	CHECK(streq(acme_result_reason(&r), "ca_order_invalid"));
	CHECK(streq(r.detail, "the CA marked the order invalid"));
	json_decref(order);
	acme_parse_problem("<html>maintenance</html>", 24, 503, &r);
	r.retry_after = 120;
	v = acme_classify(&r);
	CHECK(v.outcome == ACME_OUTCOME_TRANSIENT && streq(v.reason, "ca_unreachable"));
}

#undef TR
#undef RS
#undef DF

/* Shape checks of directory, order and authorization objects. */
#define ID_A "\"identifier\":{\"type\":\"dns\",\"value\":\"a.example.com\"}"
static void test_shape_checks(void)
{
	static const char *const good_authz =
		"{\"status\":\"pending\"," ID_A ","
		"\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca.test/c/1\","
		"\"token\":\"abc_-1\"}]}";
	static const char *const bad_authzs[] = {
		"{\"status\":\"pending\",\"identifier\":{\"type\":\"ip\",\"value\":\"1.2.3.4\"},"
		"\"challenges\":[]}",
		"{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\",\"value\":\"A.example.com\"},"
		"\"challenges\":[]}",
		"{\"status\":\"weird\"," ID_A ","
		"\"challenges\":[]}",
		"{\"status\":\"pending\"," ID_A "}",
		"{\"status\":\"pending\"," ID_A ","
		"\"challenges\":[{\"type\":\"http-01\",\"url\":\"https://ca.test/c\","
		"\"token\":\"../x\"}]}",
		"{\"status\":\"pending\"," ID_A ","
		"\"challenges\":[{\"type\":\"http-01\",\"url\":\"ftp://ca.test/c\"}]}",
		"{\"status\":\"pending\"," ID_A ","
		"\"challenges\":[],\"wildcard\":\"yes\"}",
	};
	static const char *const good_order =
		"{\"status\":\"valid\",\"authorizations\":[\"https://ca.test/a/1\"],"
		"\"finalize\":\"https://ca.test/f/1\",\"certificate\":\"https://ca.test/cert/1\"}";
	static const char *const bad_orders[] = {
		"{\"status\":\"valid\",\"authorizations\":[],\"finalize\":\"https://ca.test/f\"}",
		"{\"status\":\"valid\",\"authorizations\":[\"https://ca.test/a b\"],"
		"\"finalize\":\"https://ca.test/f\"}",
		"{\"status\":\"valid\",\"authorizations\":[\"https://ca.test/a\"]}",
		"{\"status\":7,\"authorizations\":[\"https://ca.test/a\"],"
		"\"finalize\":\"https://ca.test/f\"}",
		"{\"status\":\"valid\",\"authorizations\":[\"https://ca.test/a\"],"
		"\"finalize\":\"https://ca.test/f\",\"certificate\":\"javascript:x\"}",
	};
	const char *why = NULL;
	json_t *o;

	o = json_loads(good_authz, 0, NULL);
	CHECK_RC(acme_authz_check(o, &why), CP_OK);
	json_decref(o);
	for (size_t i = 0; i < sizeof(bad_authzs) / sizeof(bad_authzs[0]); i++) {
		o = json_loads(bad_authzs[i], 0, NULL);
		CHECK(o != NULL);
		CHECK_RC(acme_authz_check(o, &why), CP_ERR_INVALID);
		CHECK(why != NULL);
		json_decref(o);
	}
	o = json_loads(good_order, 0, NULL);
	CHECK_RC(acme_order_check(o, &why), CP_OK);
	json_decref(o);
	for (size_t i = 0; i < sizeof(bad_orders) / sizeof(bad_orders[0]); i++) {
		o = json_loads(bad_orders[i], 0, NULL);
		CHECK(o != NULL);
		CHECK_RC(acme_order_check(o, &why), CP_ERR_INVALID);
		json_decref(o);
	}
	o = json_loads("{\"newNonce\":\"https://ca.test/n\",\"newAccount\":\"https://ca.test/a\","
		       "\"newOrder\":\"https://ca.test/o\"}",
		       0, NULL);
	CHECK_RC(acme_directory_check(o, &why), CP_OK);
	/* meta.profiles: an object of names; anything else is refused. */
	json_object_set_new(o, "meta", json_pack("{s:{s:s}}", "profiles", "shortlived", "6 days"));
	CHECK_RC(acme_directory_check(o, &why), CP_OK);
	json_object_set_new(o, "meta", json_pack("{s:[s]}", "profiles", "shortlived"));
	CHECK_RC(acme_directory_check(o, &why), CP_ERR_INVALID);
	CHECK(why && strstr(why, "profiles"));
	json_object_set_new(o, "meta", json_pack("{s:{s:s}}", "profiles", "", "empty name"));
	CHECK_RC(acme_directory_check(o, &why), CP_ERR_INVALID);
	json_object_del(o, "meta");
	json_object_set_new(o, "renewalInfo", json_integer(3));
	CHECK_RC(acme_directory_check(o, &why), CP_ERR_INVALID);
	json_decref(o);
	CHECK_RC(acme_directory_check(NULL, &why), CP_ERR_INVALID);
	CHECK(!acme_chain_pem_valid("", 0, &why) && why);
	CHECK(!acme_chain_pem_valid("-----BEGIN CERTIFICATE-----\nMIIB\n", 32, &why));
}

/* ==== mock CA: error paths of the client ==== */

struct mock {
	struct MHD_Daemon *d;
	int port;
	pthread_mutex_t mu;
	int nonce_seq;	   /* next nonce number */
	int badnonce_hits; /* POSTs to /badnonce */
	int head_nonce;	   /* HEAD /nonce requests */
};

static enum MHD_Result mock_reply(struct MHD_Connection *conn, struct mock *m, unsigned code,
				  const char *ctype, const char *body, size_t len,
				  const char *retry_after, const char *location)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;
	char nonce[32];

	resp = MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
	pthread_mutex_lock(&m->mu);
	snprintf(nonce, sizeof(nonce), "mockNonce%d", m->nonce_seq++);
	pthread_mutex_unlock(&m->mu);
	MHD_add_response_header(resp, "Replay-Nonce", nonce);
	if (ctype)
		MHD_add_response_header(resp, "Content-Type", ctype);
	if (retry_after)
		MHD_add_response_header(resp, "Retry-After", retry_after);
	if (location)
		MHD_add_response_header(resp, "Location", location);
	ret = MHD_queue_response(conn, code, resp);
	MHD_destroy_response(resp);
	return ret;
}

static enum MHD_Result mock_handler(void *cls, struct MHD_Connection *conn, const char *url,
				    const char *method, const char *version, const char *upload,
				    size_t *upload_size, void **con_cls)
{
	static int marker;
	struct mock *m = cls;
	char buf[1024];
	const char *problem = "application/problem+json";

	(void)version;
	(void)upload;
	if (!*con_cls) {
		*con_cls = &marker;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0; /* the mock does not verify JWS */
		return MHD_YES;
	}
	if (strcmp(url, "/dir") == 0) {
		snprintf(
			buf, sizeof(buf),
			"{\"newNonce\":\"http://127.0.0.1:%d/nonce\",\"newAccount\":\"http://127.0.0.1:%d/acct\","
			"\"newOrder\":\"http://127.0.0.1:%d/order\",\"renewalInfo\":\"http://127.0.0.1:%d/ari\","
			"\"meta\":{\"profiles\":{\"shortlived\":\"6-day certificates\"}}}",
			m->port, m->port, m->port, m->port);
		return mock_reply(conn, m, 200, "application/json", buf, strlen(buf), NULL, NULL);
	}
	if (strcmp(url, "/nonce") == 0) {
		if (strcmp(method, "HEAD") == 0) {
			pthread_mutex_lock(&m->mu);
			m->head_nonce++;
			pthread_mutex_unlock(&m->mu);
		}
		return mock_reply(conn, m, 200, NULL, "", 0, NULL, NULL);
	}
	if (strcmp(url, "/acct") == 0) {
		snprintf(buf, sizeof(buf), "http://127.0.0.1:%d/acct/1", m->port);
		return mock_reply(conn, m, 201, "application/json", "{\"status\":\"valid\"}", 18,
				  NULL, buf);
	}
	if (strcmp(url, "/order") == 0) {
		const char *b =
			"{\"type\":\"urn:ietf:params:acme:error:rateLimited\",\"detail\":\"slow down\"}";

		return mock_reply(conn, m, 429, problem, b, strlen(b), "30", NULL);
	}
	if (strcmp(url, "/badnonce") == 0) {
		const char *b =
			"{\"type\":\"urn:ietf:params:acme:error:badNonce\",\"detail\":\"nope\"}";

		pthread_mutex_lock(&m->mu);
		m->badnonce_hits++;
		pthread_mutex_unlock(&m->mu);
		return mock_reply(conn, m, 400, problem, b, strlen(b), NULL, NULL);
	}
	if (strcmp(url, "/notjson") == 0)
		return mock_reply(conn, m, 200, "application/json", "[1,2]", 5, NULL, NULL);
	if (strcmp(url, "/big") == 0) {
		size_t n = 2 * 1024 * 1024;
		char *big = malloc(n);
		enum MHD_Result ret;

		memset(big, ' ', n);
		ret = mock_reply(conn, m, 200, "application/json", big, n, NULL, NULL);
		free(big);
		return ret;
	}
	if (strcmp(url, "/cert-with-key") == 0) {
		const char *b = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
				"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";

		return mock_reply(conn, m, 200, "application/pem-certificate-chain", b, strlen(b),
				  NULL, NULL);
	}
	if (strcmp(url, "/cert-html") == 0)
		return mock_reply(conn, m, 200, "application/pem-certificate-chain",
				  "<html></html>", 13, NULL, NULL);
	if (strcmp(url, "/authz-hostile") == 0) {
		/* The identifier ends up in "_acme-challenge.<value>" and in events. */
		const char *b = "{\"status\":\"pending\",\"identifier\":{\"type\":\"dns\","
				"\"value\":\"a.test/../x\"},\"challenges\":[]}";

		return mock_reply(conn, m, 200, "application/json", b, strlen(b), NULL, NULL);
	}
	if (strcmp(url, "/order-hostile") == 0) {
		const char *b = "{\"status\":\"pending\",\"authorizations\":[1],"
				"\"finalize\":\"file:///etc/passwd\"}";

		return mock_reply(conn, m, 200, "application/json", b, strlen(b), NULL, NULL);
	}
	if (strncmp(url, "/ari/", 5) == 0) {
		const char *b = "{\"suggestedWindow\":{\"start\":\"2025-01-02T04:00:00Z\","
				"\"end\":\"2025-01-03T04:00:00Z\"}}";

		return mock_reply(conn, m, 200, "application/json", b, strlen(b), "21600", NULL);
	}
	return mock_reply(conn, m, 404, problem, "{}", 2, NULL, NULL);
}

static bool mock_start(struct mock *m)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = 0 };
	const union MHD_DaemonInfo *info;

	memset(m, 0, sizeof(*m));
	pthread_mutex_init(&m->mu, NULL);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	m->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL, mock_handler, m,
				MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_END);
	if (!m->d)
		return false;
	info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
	m->port = info ? info->port : 0;
	return m->port > 0;
}

static void test_client_mock(void)
{
	struct mock m;
	struct crypto_key *k = NULL;
	struct acme_client *c = NULL;
	struct acme_config cfg = { 0 };
	struct acme_result r;
	const char *acct = NULL;
	const json_t *dir = NULL;
	json_t *obj = NULL;
	char *url = NULL, *pem = NULL, *order_url = NULL;
	const char *names[] = { "shop.test" };

	CHECK(mock_start(&m));
	CHECK_RC(crypto_key_generate(CRYPTO_KEY_ECDSA_P256, &k), CP_OK);

	/* Bad configs are refused before any traffic. */
	cfg.directory_url = "file:///etc/passwd";
	cfg.account_key = k;
	CHECK_RC(acme_client_new(&cfg, &c), CP_ERR_INVALID);
	cfg.directory_url = NULL;
	CHECK_RC(acme_client_new(&cfg, &c), CP_ERR_INVALID);

	/* Nothing listens on port 9 (discard): ca_unreachable, quickly. */
	cfg.directory_url = "http://127.0.0.1:9/dir";
	CHECK_RC(acme_client_new(&cfg, &c), CP_OK);
	CHECK_RC(acme_directory(c, &dir, &r), CP_ERR_UPSTREAM);
	CHECK(r.fail == ACME_FAIL_UNREACHABLE && r.net == ACME_NET_REFUSED);
	CHECK(streq(acme_result_reason(&r), "ca_unreachable"));
	acme_client_free(c);
	c = NULL;

	url = cp_aprintf("http://127.0.0.1:%d/dir", m.port);
	cfg.directory_url = url;
	CHECK_RC(acme_client_new(&cfg, &c), CP_OK);
	CHECK_RC(acme_directory(c, &dir, &r), CP_OK);
	CHECK(json_is_string(json_object_get(dir, "newOrder")));
	/* Profiles: only the names the directory's meta.profiles lists. */
	CHECK_RC(acme_profile_offered(c, "shortlived", &r), CP_OK);
	CHECK_RC(acme_profile_offered(c, "tlsserver", &r), CP_ERR_NOT_FOUND);
	CHECK(strstr(r.detail, "tlsserver") != NULL);

	/* Kid-signed requests need an account first. */
	CHECK_RC(acme_order_get(c, "http://127.0.0.1:1/x", &obj, &r), CP_ERR_INVALID);
	CHECK(r.fail == ACME_FAIL_LOCAL);

	CHECK_RC(acme_account_ensure(c, "admin@example.com", &acct, &r), CP_OK);
	CHECK(r.status == 201);
	CHECK(acct && strstr(acct, "/acct/1"));
	CHECK(streq(acme_client_account_url(c), acct));

	/* rateLimited: mapped, Retry-After returned. */
	CHECK_RC(acme_order_new(c, names, 1, NULL, &order_url, &obj, &r), CP_ERR_RATE_LIMITED);
	CHECK(r.status == 429 && r.retry_after == 30);
	CHECK(streq(acme_result_reason(&r), "ca_rate_limited"));
	CHECK(order_url == NULL && obj == NULL);

	/* badNonce: the first try plus ten retries, each with the error's nonce;
	 * what still fails is transient, never a failed order. */
	free(url);
	url = cp_aprintf("http://127.0.0.1:%d/badnonce", m.port);
	int heads_before = m.head_nonce;
	CHECK_RC(acme_get_object(c, url, &obj, &r), CP_ERR_UPSTREAM);
	CHECK(m.badnonce_hits == 11);
	CHECK(m.head_nonce == heads_before); /* pooled nonces used, no extra HEADs */
	CHECK(acme_result_is(&r, "badNonce"));
	CHECK(acme_classify(&r).outcome == ACME_OUTCOME_TRANSIENT);

	/* An order needs identifiers. */
	CHECK_RC(acme_order_new(c, names, 0, NULL, &order_url, &obj, &r), CP_ERR_INVALID);

	free(url);
	url = cp_aprintf("http://127.0.0.1:%d/notjson", m.port);
	CHECK_RC(acme_get_object(c, url, &obj, &r), CP_ERR_UPSTREAM);
	CHECK(r.fail == ACME_FAIL_PROTOCOL);

	/* Objects that break their shape are refused before anyone reads them. */
	free(url);
	url = cp_aprintf("http://127.0.0.1:%d/authz-hostile", m.port);
	CHECK_RC(acme_authz_get(c, url, &obj, &r), CP_ERR_UPSTREAM);
	CHECK(obj == NULL && r.fail == ACME_FAIL_PROTOCOL && strstr(r.detail, "identifier"));
	CHECK(streq(acme_result_reason(&r), "ca_protocol_error"));
	free(url);
	url = cp_aprintf("http://127.0.0.1:%d/order-hostile", m.port);
	CHECK_RC(acme_order_get(c, url, &obj, &r), CP_ERR_UPSTREAM);
	CHECK(obj == NULL && r.fail == ACME_FAIL_PROTOCOL && strstr(r.detail, "authorizations"));
	/* The same body through the generic call is just an object. */
	CHECK_RC(acme_get_object(c, url, &obj, &r), CP_OK);
	json_decref(obj);
	obj = NULL;

	/* Response cap. */
	free(url);
	url = cp_aprintf("http://127.0.0.1:%d/big", m.port);
	CHECK_RC(acme_get_object(c, url, &obj, &r), CP_ERR_TOO_LARGE);
	CHECK(r.fail == ACME_FAIL_PROTOCOL);

	/* A chain with anything but CERTIFICATE blocks is refused. */
	free(url);
	url = cp_aprintf("http://127.0.0.1:%d/cert-with-key", m.port);
	CHECK_RC(acme_cert_download(c, url, &pem, &r), CP_ERR_UPSTREAM);
	CHECK(pem == NULL && r.fail == ACME_FAIL_PROTOCOL);
	free(url);
	url = cp_aprintf("http://127.0.0.1:%d/cert-html", m.port);
	CHECK_RC(acme_cert_download(c, url, &pem, &r), CP_ERR_UPSTREAM);
	CHECK(pem == NULL);

	/* ARI offered: window and Retry-After come back. */
	CHECK_RC(acme_renewal_info(c, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE", &obj, &r), CP_OK);
	CHECK(json_is_object(json_object_get(obj, "suggestedWindow")));
	CHECK(r.retry_after == 21600);
	json_decref(obj);
	obj = NULL;
	CHECK_RC(acme_renewal_info(c, "../x", &obj, &r), CP_ERR_INVALID);

	/* Forgetting the account makes the next ensure register again. */
	CHECK_RC(acme_client_set_account_url(c, NULL), CP_OK);
	CHECK(acme_client_account_url(c) == NULL);
	CHECK_RC(acme_account_ensure(c, NULL, &acct, &r), CP_OK);
	CHECK(acct != NULL);

	acme_client_free(c);
	crypto_key_free(k);
	free(url);
	MHD_stop_daemon(m.d);
	pthread_mutex_destroy(&m.mu);
}

/* ==== integration against the testbed ==== */

/* HTTP-01 responder: token -> key authorization, served on 127.0.0.1:5002. */
#define MAX_TOKENS 16
struct responder {
	pthread_mutex_t mu;
	char *token[MAX_TOKENS];
	char *ka[MAX_TOKENS];
	int hits;
};

static struct responder http01 = { .mu = PTHREAD_MUTEX_INITIALIZER };

static enum MHD_Result http01_handler(void *cls, struct MHD_Connection *conn, const char *url,
				      const char *method, const char *version, const char *upload,
				      size_t *upload_size, void **con_cls)
{
	static const char prefix[] = "/.well-known/acme-challenge/";
	struct MHD_Response *resp;
	enum MHD_Result ret;
	const char *body = "not found";
	char *copy = NULL;
	unsigned code = 404;

	(void)cls;
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)con_cls;
	/* Pebble sends Host: name:5002; we answer by token alone, as certplane does. */
	pthread_mutex_lock(&http01.mu);
	if (strcmp(method, "GET") == 0 && strncmp(url, prefix, sizeof(prefix) - 1) == 0) {
		const char *tok = url + sizeof(prefix) - 1;

		for (int i = 0; i < MAX_TOKENS; i++)
			if (http01.token[i] && strcmp(http01.token[i], tok) == 0) {
				copy = cp_strdup(http01.ka[i]);
				code = 200;
				http01.hits++;
			}
	}
	pthread_mutex_unlock(&http01.mu);
	if (copy)
		body = copy;
	resp = MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	MHD_add_response_header(resp, "Content-Type", "text/plain");
	ret = MHD_queue_response(conn, code, resp);
	MHD_destroy_response(resp);
	free(copy);
	return ret;
}

static cp_rc http01_solve(void *arg, bool publish, const char *type, const char *name,
			  const char *value)
{
	(void)arg;
	if (strcmp(type, "http-01") != 0)
		return CP_ERR_INVALID;
	pthread_mutex_lock(&http01.mu);
	for (int i = 0; i < MAX_TOKENS; i++) {
		if (publish && !http01.token[i]) {
			http01.token[i] = cp_strdup(name);
			http01.ka[i] = cp_strdup(value);
			break;
		}
		if (!publish && http01.token[i] && strcmp(http01.token[i], name) == 0) {
			free(http01.token[i]);
			free(http01.ka[i]);
			http01.token[i] = http01.ka[i] = NULL;
		}
	}
	pthread_mutex_unlock(&http01.mu);
	return CP_OK;
}

/* A solver that publishes nothing: the CA must fail the challenge. */
static cp_rc lazy_solve(void *arg, bool publish, const char *type, const char *name,
			const char *value)
{
	(void)arg, (void)publish, (void)type, (void)name, (void)value;
	return CP_OK;
}

/* POST a JSON body to challtestsrv's management API. */
static bool cts_post(const char *path, const char *body)
{
	const char *base = getenv("CHALLTESTSRV_URL");
	char *url = cp_aprintf("%s%s", base, path);
	CURL *h = curl_easy_init();
	long code = 0;
	CURLcode cc;

	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, 10L);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
	curl_easy_cleanup(h);
	free(url);
	if (cc != CURLE_OK || code != 200)
		fprintf(stderr, "challtestsrv %s failed (%d, HTTP %ld)\n", path, (int)cc, code);
	return cc == CURLE_OK && code == 200;
}

/* DNS-01 solver: publish via /set-txt, then wait until our resolver sees it. */
static cp_rc dns01_solve(void *arg, bool publish, const char *type, const char *name,
			 const char *value)
{
	struct acme_resolver *res = arg;
	char *body;
	bool ok;

	if (strcmp(type, "dns-01") != 0)
		return CP_ERR_INVALID;
	if (publish)
		body = cp_aprintf("{\"host\":\"%s.\",\"value\":\"%s\"}", name, value);
	else
		body = cp_aprintf("{\"host\":\"%s.\"}", name);
	ok = cts_post(publish ? "/set-txt" : "/clear-txt", body);
	free(body);
	if (!ok)
		return CP_ERR_UPSTREAM;
	if (!publish)
		return CP_OK;
	/* As the service does: ask the CA only once the record is visible. */
	for (int i = 0; i < 50; i++) {
		json_t *vals = NULL;
		bool seen = false;
		size_t j;
		json_t *v;

		if (acme_dns_txt(res, name, &vals) == CP_OK)
			json_array_foreach(vals, j, v) if (streq(json_string_value(v), value))
				seen = true;
		json_decref(vals);
		if (seen)
			return CP_OK;
		usleep(100000);
	}
	return CP_ERR_UPSTREAM;
}

/* A fresh random label so every run orders new names (no authz reuse). */
static void rand_label(char out[17])
{
	uint8_t b[8];

	if (cp_random(b, sizeof(b)) != CP_OK)
		memset(b, 7, sizeof(b));
	cp_hex(b, sizeof(b), out);
}

/* Issue for names with the given solver; check the chain. Returns the PEM. */
static char *issue(struct acme_client *c, const char *const *names, size_t n, const char *type,
		   acme_solve_fn solve, void *arg, struct acme_result *r)
{
	struct crypto_key *ck = NULL;
	json_t *hn = json_array();
	uint8_t *csr = NULL;
	size_t csr_len = 0;
	char *pem = NULL;
	int count = 0;
	const char *why = NULL;
	cp_rc rc;

	for (size_t i = 0; i < n; i++)
		json_array_append_new(hn, json_string(names[i]));
	CHECK_RC(crypto_key_generate(CRYPTO_KEY_ECDSA_P256, &ck), CP_OK);
	CHECK_RC(crypto_csr_der(ck, hn, &csr, &csr_len), CP_OK);
	int64_t t0 = cp_mono_ms();
	rc = acme_issue_simple(c, names, n, type, solve, arg, csr, csr_len, 60, &pem, r);
	printf("  issue %s %s: %s in %lld ms%s%s\n", type, names[0], cp_rc_str(rc),
	       (long long)(cp_mono_ms() - t0), rc ? " - " : "", rc ? r->detail : "");
	if (pem) {
		struct crypto_cert_info ci;

		CHECK_RC(crypto_chain_check(pem, strlen(pem), &count, &why), CP_OK);
		CHECK(count >= 2);
		CHECK(crypto_key_matches_cert(ck, pem, strlen(pem)));
		CHECK_RC(crypto_cert_info_parse(pem, strlen(pem), &ci, &why), CP_OK);
		CHECK(json_array_size(ci.sans) == n);
		crypto_cert_info_clear(&ci);
	}
	free(csr);
	json_decref(hn);
	crypto_key_free(ck);
	return pem;
}

/* Field helpers for hostname-check results. */
static bool res_bool(const json_t *o, const char *k)
{
	return json_is_true(json_object_get(o, k));
}

static const char *res_str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

static void test_dns(struct acme_resolver *res)
{
	char lab[17], edge[128], shop[128], mid[128], other[128], wild[128], bare[128], body[512];
	json_t *out = NULL;

	rand_label(lab);
	snprintf(edge, sizeof(edge), "e1-%s.edge.certplane.localhost", lab);
	snprintf(shop, sizeof(shop), "shop-%s.tenant-a.test", lab);
	snprintf(mid, sizeof(mid), "mid-%s.tenant-a.test", lab);
	snprintf(other, sizeof(other), "other-%s.tenant-a.test", lab);
	snprintf(wild, sizeof(wild), "*.wild-%s.tenant-a.test", lab);
	snprintf(bare, sizeof(bare), "bare-%s.tenant-a.test", lab);

	snprintf(body, sizeof(body), "{\"host\":\"%s\",\"addresses\":[\"127.0.0.1\"]}", edge);
	CHECK(cts_post("/add-a", body));
	snprintf(body, sizeof(body), "{\"host\":\"%s\",\"target\":\"%s\"}", shop, edge);
	CHECK(cts_post("/set-cname", body));
	/* other -> mid -> edge: two hops, walked one query at a time. */
	snprintf(body, sizeof(body), "{\"host\":\"%s\",\"target\":\"%s\"}", other, mid);
	CHECK(cts_post("/set-cname", body));
	snprintf(body, sizeof(body), "{\"host\":\"%s\",\"target\":\"%s\"}", mid, edge);
	CHECK(cts_post("/set-cname", body));
	snprintf(body, sizeof(body), "{\"host\":\"%s\",\"target\":\"%s\"}", wild, edge);
	CHECK(cts_post("/set-cname", body));

	/* Pointed directly; the input's case and trailing dot do not matter. */
	char upper[140];
	snprintf(upper, sizeof(upper), "SHOP-%s.tenant-a.test.", lab);
	CHECK_RC(acme_check_hostname(res, upper, edge, &out), CP_OK);
	CHECK(res_bool(out, "ready") && res_bool(out, "points_to_edge") &&
	      !res_bool(out, "wildcard"));
	CHECK(streq(res_str(out, "hostname"), shop));
	CHECK(json_array_size(json_object_get(out, "cname_chain")) == 1);
	CHECK(streq(json_string_value(json_array_get(json_object_get(out, "cname_chain"), 0)),
		    edge));
	printf("  dns: %s\n", res_str(out, "detail"));
	json_decref(out);

	CHECK_RC(acme_check_hostname(res, other, edge, &out), CP_OK);
	CHECK(res_bool(out, "ready"));
	CHECK(json_array_size(json_object_get(out, "cname_chain")) == 2);
	printf("  dns: %s\n", res_str(out, "detail"));
	json_decref(out);

	/* Pointed at the wrong target. */
	CHECK_RC(acme_check_hostname(res, other, "e2.edge.certplane.localhost", &out), CP_OK);
	CHECK(!res_bool(out, "ready") && !res_bool(out, "points_to_edge"));
	CHECK(strstr(res_str(out, "detail"), "not at e2.edge.certplane.localhost") != NULL);
	printf("  dns: %s\n", res_str(out, "detail"));
	json_decref(out);
	CHECK_RC(acme_check_hostname(res, mid, "e2.edge.certplane.localhost", &out), CP_OK);
	CHECK(strstr(res_str(out, "detail"), "is a CNAME to e1-") != NULL);
	CHECK(strstr(res_str(out, "detail"), "not to e2.edge.certplane.localhost") != NULL);
	json_decref(out);

	/* Unmocked: no CNAME at all. */
	CHECK_RC(acme_check_hostname(res, bare, edge, &out), CP_OK);
	CHECK(!res_bool(out, "ready") && !res_bool(out, "points_to_edge"));
	CHECK(json_array_size(json_object_get(out, "cname_chain")) == 0);
	CHECK(strstr(res_str(out, "detail"), "has no CNAME record") != NULL);
	printf("  dns: %s\n", res_str(out, "detail"));
	json_decref(out);

	/* Wildcard pointed at the edge: still never ready for HTTP-01. */
	CHECK_RC(acme_check_hostname(res, wild, edge, &out), CP_OK);
	CHECK(res_bool(out, "wildcard") && res_bool(out, "points_to_edge") &&
	      !res_bool(out, "ready"));
	printf("  dns: %s\n", res_str(out, "detail"));
	json_decref(out);

	/* SERVFAIL: reported as a failure with a result, not as "not pointed". */
	snprintf(body, sizeof(body), "{\"host\":\"%s\"}", bare);
	CHECK(cts_post("/set-servfail", body));
	CHECK_RC(acme_check_hostname(res, bare, edge, &out), CP_ERR_UPSTREAM);
	CHECK(out && !res_bool(out, "ready"));
	CHECK(out && strstr(res_str(out, "detail"), "failed") != NULL);
	json_decref(out);
	out = NULL;
	CHECK(cts_post("/clear-servfail", body));

	CHECK_RC(acme_check_hostname(res, "", edge, &out), CP_ERR_INVALID);

	/* TXT: nothing, then two values. */
	char txt[160];
	snprintf(txt, sizeof(txt), "_acme-challenge.%s", bare);
	CHECK_RC(acme_dns_txt(res, txt, &out), CP_OK);
	CHECK(json_is_array(out) && json_array_size(out) == 0);
	json_decref(out);
	snprintf(body, sizeof(body), "{\"host\":\"%s.\",\"value\":\"v1\"}", txt);
	CHECK(cts_post("/set-txt", body));
	snprintf(body, sizeof(body), "{\"host\":\"%s.\",\"value\":\"v2\"}", txt);
	CHECK(cts_post("/set-txt", body));
	CHECK_RC(acme_dns_txt(res, txt, &out), CP_OK);
	CHECK(json_array_size(out) == 2);
	json_decref(out);
	snprintf(body, sizeof(body), "{\"host\":\"%s.\"}", txt);
	CHECK(cts_post("/clear-txt", body));

	/* Leave the shared mock DNS as we found it. */
	const char *hosts[] = { shop, other, mid, wild };
	for (size_t i = 0; i < CP_ARRAY_LEN(hosts); i++) {
		snprintf(body, sizeof(body), "{\"host\":\"%s\"}", hosts[i]);
		CHECK(cts_post("/clear-cname", body));
	}
	snprintf(body, sizeof(body), "{\"host\":\"%s\"}", edge);
	CHECK(cts_post("/clear-a", body));
}

/* Start the HTTP-01 responder; port 5002 may be briefly held by another test. */
static struct MHD_Daemon *http01_start(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(5002) };
	struct MHD_Daemon *d = NULL;

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (int i = 0; i < 50 && !d; i++) {
		d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
					     MHD_USE_THREAD_PER_CONNECTION,
				     0, NULL, NULL, http01_handler, NULL, MHD_OPTION_SOCK_ADDR,
				     (struct sockaddr *)&sa, MHD_OPTION_END);
		if (!d)
			usleep(200000);
	}
	return d;
}

/* One thread's work in the parallel test: its own key, client and order. */
struct par_job {
	struct acme_resolver *res; /* shared: resolvers are immutable */
	char name[96];
	cp_rc rc;
	char *pem;
};

static void *par_issue(void *arg)
{
	struct par_job *j = arg;
	struct crypto_key *k = NULL, *ck = NULL;
	struct acme_client *c = NULL;
	struct acme_config cfg = { 0 };
	struct acme_result r;
	json_t *hn = json_pack("[s]", j->name);
	const char *names[] = { j->name };
	uint8_t *csr = NULL;
	size_t csr_len = 0;

	j->rc = crypto_key_generate(CRYPTO_KEY_ECDSA_P256, &k);
	if (j->rc == CP_OK)
		j->rc = crypto_key_generate(CRYPTO_KEY_ECDSA_P256, &ck);
	if (j->rc == CP_OK)
		j->rc = crypto_csr_der(ck, hn, &csr, &csr_len);
	cfg.directory_url = getenv("ACME_DIRECTORY_URL");
	cfg.ca_bundle = getenv("ACME_CA_BUNDLE");
	cfg.account_key = k;
	if (j->rc == CP_OK)
		j->rc = acme_client_new(&cfg, &c);
	if (j->rc == CP_OK)
		j->rc = acme_issue_simple(c, names, 1, "dns-01", dns01_solve, j->res, csr, csr_len,
					  60, &j->pem, &r);
	acme_client_free(c);
	crypto_key_free(k);
	crypto_key_free(ck);
	free(csr);
	json_decref(hn);
	return NULL;
}

/* Separate clients on separate threads at once (the worker pool's pattern). */
static void test_parallel(struct acme_resolver *res, const char *lab)
{
	struct par_job jobs[4];
	pthread_t th[4];

	for (int i = 0; i < 4; i++) {
		memset(&jobs[i], 0, sizeof(jobs[i]));
		jobs[i].res = res;
		snprintf(jobs[i].name, sizeof(jobs[i].name), "p%d-%s.acme-unit.test", i, lab);
		CHECK(pthread_create(&th[i], NULL, par_issue, &jobs[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_RC(jobs[i].rc, CP_OK);
		CHECK(jobs[i].pem &&
		      crypto_chain_check(jobs[i].pem, strlen(jobs[i].pem), NULL, NULL) == CP_OK);
		free(jobs[i].pem);
	}
	printf("  parallel: 4 clients on 4 threads done\n");
}

static void test_integration(void)
{
	const char *dir_url = getenv("ACME_DIRECTORY_URL");
	struct acme_resolver *res = NULL;
	struct crypto_key *k = NULL;
	struct acme_client *c = NULL;
	struct acme_config cfg = { 0 };
	struct acme_result r;
	struct MHD_Daemon *d = NULL;
	const char *acct = NULL;
	char lab[17], n1[96], n2[96], n3[96], n4[96], *pem = NULL, *id = NULL;
	json_t *info = NULL, *order = NULL;
	char *order_url = NULL;

	if (!dir_url || !*dir_url) {
		/* Not a pass: the integration part is half of this test. */
		printf("FAIL integration: ACME_DIRECTORY_URL not set (start the test bed and "
		       "source its env)\n");
		failures++;
		return;
	}
	printf("integration against %s\n", dir_url);
	CHECK_RC(acme_resolver_new(getenv("DNS_RESOLVER"), &res), CP_OK);
	if (!res)
		return;
	test_dns(res);

	CHECK_RC(crypto_key_generate(CRYPTO_KEY_ECDSA_P256, &k), CP_OK);
	cfg.directory_url = dir_url;
	cfg.ca_bundle = getenv("ACME_CA_BUNDLE");
	cfg.account_key = k;
	CHECK_RC(acme_client_new(&cfg, &c), CP_OK);
	CHECK_RC(acme_account_ensure(c, "admin@example.com", &acct, &r), CP_OK);
	CHECK(acct && strncmp(acct, "https://", 8) == 0);
	printf("  account %s\n", acct ? acct : "(none)");

	d = http01_start();
	CHECK(d != NULL);
	if (!d)
		fprintf(stderr, "cannot listen on 127.0.0.1:5002 (someone else holds it)\n");

	/* HTTP-01, two names in one order. */
	rand_label(lab);
	snprintf(n1, sizeof(n1), "h-%s.acme-unit.test", lab);
	snprintf(n2, sizeof(n2), "www.h-%s.acme-unit.test", lab);
	const char *http_names[] = { n1, n2 };
	pem = issue(c, http_names, 2, "http-01", http01_solve, NULL, &r);
	CHECK(pem != NULL);
	CHECK(http01.hits >= 3); /* Pebble validates each challenge three times */

	/* ARI: Pebble 2.4 does not offer it; the id of a real leaf still computes. */
	if (pem) {
		CHECK_RC(acme_ari_cert_id(pem, strlen(pem), &id), CP_OK);
		CHECK(id && strchr(id, '.'));
		CHECK_RC(acme_renewal_info(c, id, &info, &r), CP_ERR_NOT_FOUND);
		printf("  ari: %s (cert id %s)\n", r.detail, id ? id : "-");
	}
	free(pem);
	pem = NULL;

	/* DNS-01 with a wildcard and its apex: two TXT values at one name. */
	snprintf(n3, sizeof(n3), "d-%s.acme-unit.test", lab);
	snprintf(n4, sizeof(n4), "*.d-%s.acme-unit.test", lab);
	const char *dns_names[] = { n3, n4 };
	pem = issue(c, dns_names, 2, "dns-01", dns01_solve, res, &r);
	CHECK(pem != NULL);
	free(pem);
	pem = NULL;

	test_parallel(res, lab);

	/* Nobody answers the token: the authorization fails as challenge_failed. */
	snprintf(n1, sizeof(n1), "fail-%s.acme-unit.test", lab);
	const char *fail_names[] = { n1 };
	pem = issue(c, fail_names, 1, "http-01", lazy_solve, NULL, &r);
	CHECK(pem == NULL);
	CHECK(streq(acme_result_reason(&r), "challenge_failed"));
	printf("  failed as expected: %s / %s\n", r.type, r.detail);

	/* The step functions on their own: order, then read it back by URL. */
	snprintf(n1, sizeof(n1), "s-%s.acme-unit.test", lab);
	CHECK_RC(acme_order_new(c, fail_names, 1, NULL, &order_url, &order, &r), CP_OK);
	CHECK(r.status == 201 && order_url);
	json_decref(order);
	order = NULL;
	CHECK_RC(acme_order_get(c, order_url, &order, &r), CP_OK);
	CHECK(streq(res_str(order, "status"), "pending") ||
	      streq(res_str(order, "status"), "invalid"));
	json_decref(order);
	order = NULL;

	/* A kid the CA does not know (as after a Pebble restart). */
	char *bogus = cp_aprintf("%s-nope", acct);
	free(order_url);
	order_url = NULL;
	CHECK_RC(acme_client_set_account_url(c, bogus), CP_OK);
	CHECK_RC(acme_order_new(c, fail_names, 1, NULL, &order_url, &order, &r), CP_ERR_UPSTREAM);
	printf("  unknown account: %s %s (%s)\n", r.type, r.detail, acme_result_reason(&r));
	CHECK(streq(acme_result_reason(&r), "ca_account_missing"));
	free(bogus);

	free(order_url);
	free(id);
	json_decref(info);
	if (d)
		MHD_stop_daemon(d);
	acme_client_free(c);
	crypto_key_free(k);
	acme_resolver_free(res);
}

/*
 * A resolver that never answers (a bound UDP socket nobody reads): a check
 * given a 700 ms deadline returns within it plus slack, as a lookup failure,
 * although c-ares alone would wait 3 s x 2 tries per hop; a deadline already
 * passed sends nothing at all.
 */
static void test_dns_deadline(void)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct acme_resolver *res = NULL;
	socklen_t len = sizeof(sa);
	json_t *out = NULL, *txt = NULL;
	char hostport[32];
	int64_t t0, took;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	      getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
	snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", ntohs(sa.sin_port));
	CHECK_RC(acme_resolver_new(hostport, &res), CP_OK);
	if (!res) {
		close(fd);
		return;
	}
	acme_resolver_set_deadline(res, cp_mono_ms() + 700);
	t0 = cp_mono_ms();
	CHECK_RC(acme_check_hostname(res, "www.silent.test", "e.edge.test", &out), CP_ERR_UPSTREAM);
	took = cp_mono_ms() - t0;
	CHECK(took >= 650 && took < 1000);
	CHECK(out && !json_is_true(json_object_get(out, "ready")));
	json_decref(out);
	t0 = cp_mono_ms();
	/* past the deadline: refused at once, not after a query timeout
	 * (seconds); 250 ms leaves room for a loaded machine's scheduling */
	CHECK_RC(acme_dns_txt(res, "_x.silent.test", &txt), CP_ERR_UPSTREAM);
	CHECK(cp_mono_ms() - t0 < 250);
	printf("  dns deadline: check stopped after %lld ms (deadline 700 ms)\n", (long long)took);
	acme_resolver_free(res);
	close(fd);
}

int main(void)
{
	/* Per acme.h: libcurl's global init is the program's job, once. */
	curl_global_init(CURL_GLOBAL_DEFAULT);
	/* TEST_ACME_DEBUG=1 shows the client's debug events (badNonce retries...). */
	cp_log_set_level(getenv("TEST_ACME_DEBUG") ? CP_LOG_DEBUG : CP_LOG_WARN);

	test_ari_cert_id();
	test_challenge_helpers();
	test_retry_after();
	test_problems();
	test_classify();
	test_shape_checks();
	test_client_mock();
	test_dns_deadline();
	test_integration();

	curl_global_cleanup();
	return check_exit("test_acme");
}
