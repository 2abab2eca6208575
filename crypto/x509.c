/*
 * x509.c - certificates: facts read from an uploaded or issued certificate,
 * PEM chain validation and leaf/chain splitting, key/certificate matching,
 * and the two things certplane builds itself: self-signed placeholder
 * server certificates and PKCS#10 CSRs for ACME.
 *
 * PEM input is walked block by block with PEM_read_bio so that a stray
 * PRIVATE KEY inside a chain is noticed and refused rather than skipped.
 */
#include <arpa/inet.h>
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "crypto/crypto_internal.h"

#define MAX_HOSTNAMES 100
#define CN_MAX 64 /* ub-common-name, RFC 5280 */

/* ---------------------------------------------------------- PEM blocks */

/*
 * Read the next PEM block from bio. Returns CP_OK with *x set (caller frees),
 * CP_OK with *x NULL at end of input, or CP_ERR_INVALID with *why.
 */
static cp_rc next_cert(BIO *bio, X509 **x, const char **why)
{
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	const unsigned char *p;
	long dlen = 0;
	unsigned long e;
	cp_rc rc = CP_ERR_INVALID;

	*x = NULL;
	ERR_clear_error();
	if (PEM_read_bio(bio, &name, &header, &data, &dlen) != 1) {
		e = ERR_peek_last_error();
		/* "no start line" is how PEM_read_bio reports a clean end. */
		if (ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE)
			rc = CP_OK;
		else
			*why = "malformed PEM block";
		goto out;
	}
	if (strcmp(name, "CERTIFICATE") != 0) {
		*why = "PEM block is not a CERTIFICATE";
		goto out;
	}
	p = data;
	*x = d2i_X509(NULL, &p, dlen);
	if (!*x || p != data + dlen) {
		X509_free(*x);
		*x = NULL;
		*why = "certificate does not parse";
		goto out;
	}
	rc = CP_OK;
out:
	ERR_clear_error();
	OPENSSL_free(name);
	OPENSSL_free(header);
	/* A tenant may paste a PRIVATE KEY block where a certificate belongs. */
	OPENSSL_clear_free(data, dlen > 0 ? (size_t)dlen : 0);
	return rc;
}

/* The first PEM block of pem, which must be a certificate. */
static cp_rc first_cert(const char *pem, size_t len, X509 **x, const char **why)
{
	BIO *bio = NULL;
	cp_rc rc;

	*x = NULL;
	if (len > CRYPTO_PEM_MAX)
		return CP_ERR_TOO_LARGE;
	if (!pem || len == 0) {
		*why = "no certificate found";
		return CP_ERR_INVALID;
	}
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return CP_ERR_NOMEM;
	rc = next_cert(bio, x, why);
	if (rc == CP_OK && !*x) {
		*why = "no certificate found";
		rc = CP_ERR_INVALID;
	}
	BIO_free(bio);
	return rc;
}

/*
 * Walk every block of a chain; append re-encoded PEM of the first to leaf
 * and of the rest to chain (either BIO may be NULL). *count = certificates.
 */
static cp_rc walk_chain(const char *pem, size_t len, BIO *leaf, BIO *chain, int *count,
			const char **why)
{
	BIO *bio = NULL;
	X509 *x = NULL;
	BIO *dst;
	int n = 0;
	cp_rc rc = CP_ERR_INVALID;

	if (len > CRYPTO_PEM_MAX)
		return CP_ERR_TOO_LARGE;
	if (!pem || len == 0) {
		*why = "no certificate found";
		return CP_ERR_INVALID;
	}
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return CP_ERR_NOMEM;
	for (;;) {
		rc = next_cert(bio, &x, why);
		if (rc != CP_OK || !x)
			break;
		dst = n == 0 ? leaf : chain;
		if (dst && PEM_write_bio_X509(dst, x) != 1) {
			rc = CP_ERR_NOMEM;
			break;
		}
		X509_free(x);
		x = NULL;
		n++;
	}
	if (rc == CP_OK && n == 0) {
		*why = "no certificate found";
		rc = CP_ERR_INVALID;
	}
	if (rc == CP_OK && count)
		*count = n;
	ERR_clear_error();
	X509_free(x);
	BIO_free(bio);
	return rc;
}

cp_rc crypto_cert_der(const char *pem, size_t len, uint8_t **der, size_t *der_len)
{
	BIO *bio = NULL;
	X509 *x = NULL;
	const char *why = NULL;
	unsigned char *p = NULL;
	int n;
	cp_rc rc;

	assert(pem && der && der_len);
	*der = NULL;
	*der_len = 0;
	if (len == 0 || len > CRYPTO_PEM_MAX || len > INT32_MAX)
		return CP_ERR_INVALID;
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return CP_ERR_NOMEM;
	rc = next_cert(bio, &x, &why);
	if (rc == CP_OK && !x)
		rc = CP_ERR_INVALID; /* no block at all */
	if (rc != CP_OK)
		goto out;
	n = i2d_X509(x, NULL);
	if (n <= 0) {
		rc = CP_ERR_INVALID;
		goto out;
	}
	p = malloc((size_t)n);
	if (!p) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	*der = p;
	if (i2d_X509(x, &p) != n) {
		free(*der);
		*der = NULL;
		rc = CP_ERR_CRYPTO;
		goto out;
	}
	*der_len = (size_t)n;
out:
	X509_free(x);
	BIO_free(bio);
	return rc;
}

cp_rc crypto_chain_check(const char *pem, size_t len, int *count, const char **why)
{
	const char *dummy;

	return walk_chain(pem, len, NULL, NULL, count, why ? why : &dummy);
}

cp_rc crypto_chain_split(const char *pem, size_t len, char **leaf, char **chain, const char **why)
{
	const char *dummy;
	BIO *lb = NULL, *cb = NULL;
	char *l = NULL, *c = NULL;
	cp_rc rc = CP_ERR_NOMEM;

	assert(pem && leaf && chain);
	lb = BIO_new(BIO_s_mem());
	cb = BIO_new(BIO_s_mem());
	if (!lb || !cb)
		goto out;
	rc = walk_chain(pem, len, lb, cb, NULL, why ? why : &dummy);
	if (rc != CP_OK)
		goto out;
	l = crypto_bio_string(lb);
	c = crypto_bio_string(cb);
	if (!l || !c) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	*leaf = l;
	*chain = c;
	l = c = NULL;
out:
	free(l);
	free(c);
	BIO_free(lb);
	BIO_free(cb);
	return rc;
}

/* ---------------------------------------------------------- cert facts */

static bool asn1_time_unix(const ASN1_TIME *t, int64_t *out)
{
	struct tm tm;

	if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
		return false;
	*out = cp_days_from_civil(tm.tm_year + 1900, (unsigned)tm.tm_mon + 1,
				  (unsigned)tm.tm_mday) *
		       86400 +
	       tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
	return true;
}

/* New NUL-terminated copy of an ASN.1 string as UTF-8; NULL if it has NULs. */
static char *asn1_utf8(const ASN1_STRING *s)
{
	unsigned char *u = NULL;
	char *r = NULL;
	int n = ASN1_STRING_to_UTF8(&u, s);

	/* An embedded NUL would make "a.com\0.evil" read as "a.com". */
	if (n >= 0 && memchr(u, '\0', (size_t)n) == NULL)
		r = cp_strndup((const char *)u, (size_t)n);
	OPENSSL_free(u);
	return r;
}

static cp_rc read_sans(X509 *x, json_t *sans, const char **why)
{
	GENERAL_NAMES *gens = NULL;
	char ip[INET6_ADDRSTRLEN];
	char *s = NULL;
	cp_rc rc = CP_OK;
	int crit = -1;

	gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
	if (!gens) {
		/* -1: absent (fine); otherwise duplicated or undecodable. */
		if (crit != -1) {
			*why = "malformed subjectAltName";
			return CP_ERR_INVALID;
		}
		return CP_OK;
	}
	for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

		if (g->type == GEN_DNS) {
			s = asn1_utf8(g->d.dNSName);
			if (!s) {
				*why = "malformed DNS name in subjectAltName";
				rc = CP_ERR_INVALID;
				goto out;
			}
			if (json_array_append_new(sans, json_string(s)) != 0) {
				rc = CP_ERR_NOMEM;
				goto out;
			}
			free(s);
			s = NULL;
		} else if (g->type == GEN_IPADD) {
			int len = ASN1_STRING_length(g->d.iPAddress);
			const unsigned char *d = ASN1_STRING_get0_data(g->d.iPAddress);
			int af = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;

			if (!af || !inet_ntop(af, d, ip, sizeof(ip))) {
				*why = "malformed IP address in subjectAltName";
				rc = CP_ERR_INVALID;
				goto out;
			}
			if (json_array_append_new(sans, json_string(ip)) != 0) {
				rc = CP_ERR_NOMEM;
				goto out;
			}
		}
		/* Other name types (email, URI, ...) are irrelevant to TLS servers. */
	}
out:
	free(s);
	GENERAL_NAMES_free(gens);
	return rc;
}

void crypto_cert_info_clear(struct crypto_cert_info *ci)
{
	if (!ci)
		return;
	free(ci->subject_cn);
	json_decref(ci->sans);
	free(ci->issuer);
	free(ci->serial);
	memset(ci, 0, sizeof(*ci));
}

cp_rc crypto_cert_info_parse(const char *pem, size_t len, struct crypto_cert_info *out,
			     const char **why)
{
	const char *dummy;
	X509 *x = NULL;
	BIO *bio = NULL;
	BIGNUM *bn = NULL;
	char *hex = NULL;
	const X509_NAME *subj;
	BASIC_CONSTRAINTS *bc = NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	int idx;
	cp_rc rc;

	assert(pem && out);
	if (!why)
		why = &dummy;
	memset(out, 0, sizeof(*out));
	rc = first_cert(pem, len, &x, why);
	if (rc != CP_OK)
		goto out;
	rc = CP_ERR_NOMEM;

	subj = X509_get_subject_name(x);
	idx = X509_NAME_get_index_by_NID(subj, NID_commonName, -1);
	if (idx >= 0) {
		out->subject_cn =
			asn1_utf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)));
		if (!out->subject_cn) {
			*why = "malformed subject common name";
			rc = CP_ERR_INVALID;
			goto out;
		}
	}

	out->sans = json_array();
	if (!out->sans)
		goto out;
	rc = read_sans(x, out->sans, why);
	if (rc != CP_OK)
		goto out;
	rc = CP_ERR_NOMEM;

	bio = BIO_new(BIO_s_mem());
	/* RFC 2253 order and escaping, but keep UTF-8 instead of \XX escapes. */
	if (!bio || X509_NAME_print_ex(bio, X509_get_issuer_name(x), 0,
				       XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0)
		goto out;
	out->issuer = crypto_bio_string(bio);
	if (!out->issuer)
		goto out;

	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	hex = bn ? BN_bn2hex(bn) : NULL;
	if (!hex)
		goto out;
	for (char *p = hex; *p; p++)
		if (*p >= 'A' && *p <= 'F')
			*p = (char)(*p - 'A' + 'a');
	out->serial = cp_strdup(hex);
	if (!out->serial)
		goto out;

	if (!asn1_time_unix(X509_get0_notBefore(x), &out->not_before) ||
	    !asn1_time_unix(X509_get0_notAfter(x), &out->not_after)) {
		*why = "malformed validity period";
		rc = CP_ERR_INVALID;
		goto out;
	}

	if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32) {
		rc = CP_ERR_CRYPTO;
		goto out;
	}
	cp_hex(md, mdlen, out->fingerprint_sha256);

	bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
	out->is_ca = bc && bc->ca;

	/* Unsupported public keys are reported, not refused: the cert is still a fact. */
	(void)crypto_pkey_classify(X509_get0_pubkey(x), out->key_kind, NULL);
	rc = CP_OK;
out:
	if (rc != CP_OK)
		crypto_cert_info_clear(out);
	ERR_clear_error();
	BASIC_CONSTRAINTS_free(bc);
	OPENSSL_free(hex);
	BN_free(bn);
	BIO_free(bio);
	X509_free(x);
	return rc;
}

/* ---------------------------------------------------------- upload rules */

/* True if x is signed with a broken digest (MD2, MD4, MD5, MD5+SHA-1, SHA-1). */
static bool weak_signature(const X509 *x)
{
	int md = NID_undef, pk = NID_undef;

	if (!OBJ_find_sigid_algs(X509_get_signature_nid(x), &md, &pk))
		return false; /* RSA-PSS, Ed25519...: no separate weak digest to name */
	return md == NID_md2 || md == NID_md4 || md == NID_md5 || md == NID_md5_sha1 ||
	       md == NID_sha1;
}

cp_rc crypto_cert_upload_check(const char *pem, size_t len, bool server, const char **why)
{
	const char *dummy;
	GENERAL_NAMES *gens = NULL;
	BASIC_CONSTRAINTS *bc = NULL;
	X509 *x = NULL;
	cp_rc rc;

	if (!why)
		why = &dummy;
	*why = NULL;
	rc = first_cert(pem, len, &x, why);
	if (rc != CP_OK)
		goto out;
	rc = CP_ERR_INVALID;
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	if (gens && sk_GENERAL_NAME_num(gens) > CRYPTO_UPLOAD_SANS_MAX) {
		*why = "has more than 100 subjectAltName entries";
		goto out;
	}
	if (weak_signature(x)) {
		*why = "is signed with MD5 or SHA-1, which are broken";
		goto out;
	}
	bc = X509_get_ext_d2i(x, NID_basic_constraints, NULL, NULL);
	if (server && bc && bc->ca) {
		*why = "is a CA certificate (basicConstraints CA:TRUE): upload it with type \"ca\"";
		goto out;
	}
	rc = CP_OK;
out:
	ERR_clear_error();
	BASIC_CONSTRAINTS_free(bc);
	GENERAL_NAMES_free(gens);
	X509_free(x);
	return rc;
}

cp_rc crypto_chain_upload_check(const char *pem, size_t len, const char **why)
{
	const char *dummy;
	BIO *bio = NULL;
	X509 *x = NULL;
	size_t ws = 0;
	int n = 0;
	cp_rc rc;

	if (!why)
		why = &dummy;
	*why = NULL;
	if (len > CRYPTO_PEM_MAX)
		return CP_ERR_TOO_LARGE;
	while (pem && ws < len &&
	       (pem[ws] == ' ' || pem[ws] == '\t' || pem[ws] == '\r' || pem[ws] == '\n'))
		ws++;
	if (!pem || ws == len)
		return CP_OK; /* no chain */
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio)
		return CP_ERR_NOMEM;
	for (;;) {
		rc = next_cert(bio, &x, why);
		if (rc != CP_OK || !x)
			break;
		rc = CP_ERR_INVALID;
		if (++n > CRYPTO_UPLOAD_CHAIN_MAX) {
			*why = "holds more than 10 certificates";
			break;
		}
		if (weak_signature(x)) {
			*why = "holds a certificate signed with MD5 or SHA-1, which are broken";
			break;
		}
		X509_free(x);
		x = NULL;
	}
	ERR_clear_error();
	X509_free(x);
	BIO_free(bio);
	return rc;
}

bool crypto_key_matches_cert(const struct crypto_key *k, const char *cert_pem, size_t len)
{
	const char *why;
	X509 *x = NULL;
	bool ok;

	assert(cert_pem);
	if (!k || first_cert(cert_pem, len, &x, &why) != CP_OK)
		return false;
	ok = EVP_PKEY_eq(k->pkey, X509_get0_pubkey(x)) == 1;
	ERR_clear_error();
	X509_free(x);
	return ok;
}

/* ---------------------------------------------------------- building */

/*
 * SAN GENERAL_NAMES from a hostname array, built as structures rather than
 * via a "DNS:a,DNS:b" config string so that no hostname can inject extra
 * names. IP literals become iPAddress entries.
 */
static cp_rc build_sans(const json_t *hostnames, GENERAL_NAMES **out)
{
	GENERAL_NAMES *gens = NULL;
	GENERAL_NAME *g = NULL;
	ASN1_IA5STRING *ia5 = NULL;
	ASN1_OCTET_STRING *ipo = NULL;
	unsigned char ipbuf[16];
	size_t i;
	json_t *v;
	cp_rc rc = CP_ERR_NOMEM;

	gens = sk_GENERAL_NAME_new_null();
	if (!gens)
		goto out;
	json_array_foreach(hostnames, i, v)
	{
		const char *h = json_string_value(v);
		int iplen = 0;

		if (inet_pton(AF_INET, h, ipbuf) == 1)
			iplen = 4;
		else if (inet_pton(AF_INET6, h, ipbuf) == 1)
			iplen = 16;
		g = GENERAL_NAME_new();
		if (!g)
			goto out;
		if (iplen) {
			ipo = ASN1_OCTET_STRING_new();
			if (!ipo || ASN1_OCTET_STRING_set(ipo, ipbuf, iplen) != 1)
				goto out;
			GENERAL_NAME_set0_value(g, GEN_IPADD, ipo);
			ipo = NULL;
		} else {
			ia5 = ASN1_IA5STRING_new();
			if (!ia5 || ASN1_STRING_set(ia5, h, (int)strlen(h)) != 1)
				goto out;
			GENERAL_NAME_set0_value(g, GEN_DNS, ia5);
			ia5 = NULL;
		}
		if (!sk_GENERAL_NAME_push(gens, g))
			goto out;
		g = NULL;
	}
	*out = gens;
	gens = NULL;
	rc = CP_OK;
out:
	ASN1_OCTET_STRING_free(ipo);
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(g);
	GENERAL_NAMES_free(gens);
	return rc;
}

/* Non-empty array of at most MAX_HOSTNAMES non-empty, NUL-free strings. */
static bool hostnames_ok(const json_t *hostnames)
{
	size_t i, n = json_array_size(hostnames);
	json_t *v;

	if (!json_is_array(hostnames) || n == 0 || n > MAX_HOSTNAMES)
		return false;
	json_array_foreach(hostnames, i, v)
	{
		const char *s = json_string_value(v);

		if (!s || !*s || strlen(s) != json_string_length(v) || strlen(s) > CP_HOSTNAME_MAX)
			return false;
	}
	return true;
}

/* Subject "CN=<first hostname>", or empty when it exceeds ub-common-name. */
static cp_rc build_subject(const json_t *hostnames, X509_NAME **out, bool *empty)
{
	const char *cn = json_string_value(json_array_get(hostnames, 0));
	X509_NAME *name = X509_NAME_new();

	if (!name)
		return CP_ERR_NOMEM;
	*empty = strlen(cn) > CN_MAX;
	if (!*empty && X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_UTF8,
						  (const unsigned char *)cn, -1, -1, 0) != 1) {
		X509_NAME_free(name);
		return CP_ERR_CRYPTO;
	}
	*out = name;
	return CP_OK;
}

static bool add_conf_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value)
{
	X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, ctx, nid, value);
	bool ok = ext && X509_add_ext(x, ext, -1) == 1;

	X509_EXTENSION_free(ext);
	return ok;
}

cp_rc crypto_self_signed_window(const struct crypto_key *k, const json_t *hostnames,
				int64_t not_before, int64_t not_after, char **cert_pem)
{
	X509 *x = NULL;
	X509_NAME *name = NULL;
	GENERAL_NAMES *gens = NULL;
	BIGNUM *bn = NULL;
	BIO *bio = NULL;
	X509V3_CTX ctx;
	uint8_t serial[16];
	bool no_cn = false;
	cp_rc rc;

	assert(k && cert_pem);
	if (!k || !hostnames_ok(hostnames) || not_before < 0 || not_after <= not_before)
		return CP_ERR_INVALID;
	rc = cp_random(serial, sizeof(serial));
	if (rc != CP_OK)
		return rc;
	serial[0] &= 0x7f; /* DER INTEGER must stay positive (RFC 5280 4.1.2.2) */
	serial[0] |= 0x01; /* ...and keep its full 16 bytes */

	rc = build_subject(hostnames, &name, &no_cn);
	if (rc != CP_OK)
		goto out;
	rc = build_sans(hostnames, &gens);
	if (rc != CP_OK)
		goto out;
	rc = CP_ERR_CRYPTO;
	x = X509_new();
	bn = BN_bin2bn(serial, sizeof(serial), NULL);
	if (!x || !bn || X509_set_version(x, X509_VERSION_3) != 1 ||
	    !BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) ||
	    X509_set_subject_name(x, name) != 1 || X509_set_issuer_name(x, name) != 1 ||
	    !ASN1_TIME_set(X509_getm_notBefore(x), (time_t)not_before) ||
	    !ASN1_TIME_set(X509_getm_notAfter(x), (time_t)not_after) ||
	    X509_set_pubkey(x, k->pkey) != 1)
		goto out;

	X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
	if (!add_conf_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") ||
	    !add_conf_ext(x, &ctx, NID_key_usage,
			  k->ec_size ? "critical,digitalSignature"
				     : "critical,digitalSignature,keyEncipherment") ||
	    !add_conf_ext(x, &ctx, NID_ext_key_usage, "serverAuth") ||
	    !add_conf_ext(x, &ctx, NID_subject_key_identifier, "hash") ||
	    /* RFC 5280 4.2.1.6: SAN is critical when the subject is empty. */
	    X509_add1_ext_i2d(x, NID_subject_alt_name, gens, no_cn ? 1 : 0, X509V3_ADD_DEFAULT) !=
		    1)
		goto out;
	/* X509_sign wants a non-const key; signing does not modify it. */
	if (X509_sign(x, k->pkey, EVP_sha256()) <= 0)
		goto out;
	bio = BIO_new(BIO_s_mem());
	if (!bio || PEM_write_bio_X509(bio, x) != 1)
		goto out;
	*cert_pem = crypto_bio_string(bio);
	rc = *cert_pem ? CP_OK : CP_ERR_NOMEM;
out:
	ERR_clear_error();
	BIO_free(bio);
	BN_free(bn);
	GENERAL_NAMES_free(gens);
	X509_NAME_free(name);
	X509_free(x);
	return rc;
}

cp_rc crypto_self_signed(const struct crypto_key *k, const json_t *hostnames, int validity_days,
			 char **cert_pem)
{
	int64_t now = cp_now();

	assert(k && cert_pem);
	if (validity_days < 1 || validity_days > 3650)
		return CP_ERR_INVALID;
	/* Backdate a minute so slightly slow client clocks accept it at once. */
	return crypto_self_signed_window(k, hostnames, now - 60,
					 now + (int64_t)validity_days * 86400, cert_pem);
}

cp_rc crypto_csr_der(const struct crypto_key *k, const json_t *hostnames, uint8_t **der,
		     size_t *len)
{
	X509_REQ *req = NULL;
	X509_NAME *name = NULL;
	GENERAL_NAMES *gens = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	uint8_t *buf = NULL, *p;
	bool no_cn = false;
	int n;
	cp_rc rc;

	assert(k && der && len);
	if (!k || !hostnames_ok(hostnames))
		return CP_ERR_INVALID;
	rc = build_subject(hostnames, &name, &no_cn);
	if (rc != CP_OK)
		goto out;
	rc = build_sans(hostnames, &gens);
	if (rc != CP_OK)
		goto out;
	rc = CP_ERR_CRYPTO;
	req = X509_REQ_new();
	if (!req || X509_REQ_set_version(req, X509_REQ_VERSION_1) != 1 ||
	    X509_REQ_set_subject_name(req, name) != 1 || X509_REQ_set_pubkey(req, k->pkey) != 1 ||
	    X509V3_add1_i2d(&exts, NID_subject_alt_name, gens, no_cn ? 1 : 0, X509V3_ADD_DEFAULT) !=
		    1 ||
	    X509_REQ_add_extensions(req, exts) != 1 ||
	    X509_REQ_sign(req, k->pkey, EVP_sha256()) <= 0)
		goto out;
	n = i2d_X509_REQ(req, NULL);
	if (n <= 0)
		goto out;
	buf = malloc((size_t)n);
	if (!buf) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	p = buf;
	if (i2d_X509_REQ(req, &p) != n)
		goto out;
	*der = buf;
	*len = (size_t)n;
	buf = NULL;
	rc = CP_OK;
out:
	ERR_clear_error();
	free(buf);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	GENERAL_NAMES_free(gens);
	X509_NAME_free(name);
	X509_REQ_free(req);
	return rc;
}

cp_rc crypto_cert_ari_id(const char *cert_pem, size_t len, char **out)
{
	BIO *bio = NULL;
	X509 *x = NULL;
	const ASN1_OCTET_STRING *kid;
	const ASN1_INTEGER *serial;
	unsigned char *sder = NULL;
	char *a = NULL, *b = NULL;
	int slen, hdr;
	cp_rc rc = CP_ERR_INVALID;

	assert(cert_pem && out);
	*out = NULL;
	if (!cert_pem || len == 0 || len > CRYPTO_PEM_MAX || len > INT32_MAX)
		return CP_ERR_INVALID;
	bio = BIO_new_mem_buf(cert_pem, (int)len);
	if (!bio)
		return CP_ERR_NOMEM;
	x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
	if (!x)
		goto out;
	kid = X509_get0_authority_key_id(x);
	serial = X509_get0_serialNumber(x);
	if (!kid || ASN1_STRING_length(kid) <= 0 || !serial)
		goto out;
	/*
	 * RFC 9773 4.1: the serial's DER encoding without tag and length, i.e.
	 * the INTEGER's content octets (with a leading 0x00 when the high bit is
	 * set). OpenSSL 3 only exports the full TLV, so skip tag and length.
	 */
	slen = i2d_ASN1_INTEGER(serial, &sder);
	if (slen < 3 || sder[0] != 0x02)
		goto out;
	hdr = 2;
	if (sder[1] & 0x80)
		hdr += sder[1] & 0x7f;
	if (slen <= hdr)
		goto out;
	rc = CP_ERR_NOMEM;
	a = cp_b64url(ASN1_STRING_get0_data(kid), (size_t)ASN1_STRING_length(kid));
	b = cp_b64url(sder + hdr, (size_t)(slen - hdr));
	if (!a || !b)
		goto out;
	*out = cp_aprintf("%s.%s", a, b);
	rc = *out ? CP_OK : CP_ERR_NOMEM;
out:
	free(a);
	free(b);
	OPENSSL_free(sder);
	X509_free(x);
	BIO_free(bio);
	return rc;
}
