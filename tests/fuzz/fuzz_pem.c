/*
 * fuzz_pem.c - libFuzzer target for PEM import (crypto/x509.c, crypto/key.c):
 * everything POST /v1/certificates with source "upload" runs on the
 * tenant's certificate, chain and private key - crypto_chain_split,
 * crypto_chain_check, crypto_cert_info_parse, crypto_cert_upload_check,
 * crypto_key_from_pem (with and without a passphrase),
 * crypto_key_matches_cert - plus crypto_cert_ari_id.
 *
 * The first input byte picks the mode: odd = the rest is PEM text as
 * uploaded; even = the rest is DER, armoured here as the block type that
 * byte selects, so mutations reach the ASN.1 parsers instead of dying in
 * base64. Properties: a split re-checks to the same certificate count;
 * parsed facts are well-formed; a key that loads exports again.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "crypto/crypto.h"

static const char *const block_types[] = { "CERTIFICATE", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY",
					   "EC PRIVATE KEY", "RSA PRIVATE KEY" };

/* "-----BEGIN t-----\n<base64 of der, 64 a line>\n-----END t-----\n" */
static char *armour(const char *t, const uint8_t *der, size_t n)
{
	char *b64 = cp_b64(der, n), *out = NULL, *p;
	size_t bl, cap;

	if (!b64)
		return NULL;
	bl = strlen(b64);
	cap = bl + bl / 64 + 2 * strlen(t) + 64;
	out = malloc(cap);
	if (out) {
		p = out + snprintf(out, cap, "-----BEGIN %s-----\n", t);
		for (size_t i = 0; i < bl; i += 64) {
			size_t k = bl - i < 64 ? bl - i : 64;
			memcpy(p, b64 + i, k);
			p += k;
			*p++ = '\n';
		}
		snprintf(p, cap - (size_t)(p - out), "-----END %s-----\n", t);
	}
	free(b64);
	return out;
}

static void facts(const char *pem, size_t len)
{
	struct crypto_cert_info ci;
	const char *why = NULL;
	char *ari = NULL;

	if (crypto_cert_info_parse(pem, len, &ci, &why) == CP_OK) {
		if (!json_is_array(ci.sans) || !ci.issuer || !ci.serial ||
		    strlen(ci.fingerprint_sha256) != 64 || !ci.key_kind[0])
			abort();
		(void)crypto_cert_upload_check(pem, len, false, &why);
		(void)crypto_cert_upload_check(pem, len, true, &why);
		crypto_cert_info_clear(&ci);
	} else if (ci.sans || ci.issuer || ci.serial || ci.subject_cn) {
		abort(); /* a failed parse leaves *out cleared */
	}
	if (crypto_cert_ari_id(pem, len, &ari) == CP_OK && (!ari || !strchr(ari, '.')))
		abort();
	free(ari);
}

static void chain(const char *pem, size_t len)
{
	char *leaf = NULL, *rest = NULL;
	const char *why = NULL;
	int count = -1, again = -1, n_rest = 0;

	if (crypto_chain_check(pem, len, &count, &why) != CP_OK) {
		if (crypto_chain_split(pem, len, &leaf, &rest, &why) == CP_OK)
			abort(); /* split validates exactly as check does */
		return;
	}
	if (count < 1 || crypto_chain_split(pem, len, &leaf, &rest, &why) != CP_OK)
		abort();
	/* The re-encoded parts hold the same certificates. */
	if (crypto_chain_check(leaf, strlen(leaf), &again, &why) != CP_OK || again != 1)
		abort();
	if (*rest && (crypto_chain_check(rest, strlen(rest), &n_rest, &why) != CP_OK))
		abort();
	if (1 + n_rest != count)
		abort();
	(void)crypto_chain_upload_check(rest, strlen(rest), &why);
	facts(leaf, strlen(leaf));
	free(leaf);
	free(rest);
}

static void key(const char *pem, size_t len, const char *cert)
{
	struct crypto_key *k = NULL;
	const char *why = NULL;
	char *out = NULL;

	for (int i = 0; i < 2; i++) {
		if (crypto_key_from_pem(pem, len, i ? "fuzz-passphrase" : NULL, &k, &why) !=
		    CP_OK) {
			if (!why)
				abort(); /* a refusal names its reason */
			continue;
		}
		if (crypto_key_to_pem(k, &out) != CP_OK || !strstr(out, "PRIVATE KEY"))
			abort();
		(void)crypto_key_matches_cert(k, cert, strlen(cert));
		crypto_wipe_free(out);
		out = NULL;
		crypto_key_free(k);
		k = NULL;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = NULL;
	size_t len;

	if (size == 0 || size > 64 * 1024)
		return 0;
	if (data[0] & 1) {
		text = malloc(size);
		if (!text)
			return 0;
		memcpy(text, data + 1, size - 1);
		text[size - 1] = '\0';
	} else {
		text = armour(block_types[(data[0] >> 1) % CP_ARRAY_LEN(block_types)], data + 1,
			      size - 1);
		if (!text)
			return 0;
	}
	/* Uploads are JSON strings: C strings, so stop at an embedded NUL. */
	len = strlen(text);
	chain(text, len);
	facts(text, len);
	/* OpenSSL's key decoders are slow; spend them only on key-looking input. */
	if (strstr(text, "PRIVATE KEY"))
		key(text, len, text);
	free(text);
	return 0;
}
