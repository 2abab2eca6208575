/*
 * jws.c - signatures that leave the process: JWK/JWS for talking to ACME
 * CAs (RFC 7515, 7518, 7638, 8555), the DNS-01 TXT value, and Standard
 * Webhooks signatures and secrets for outbound event deliveries.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/sha.h>

#include "crypto/crypto_internal.h"

#define WHSEC_PREFIX "whsec_"

/* base64url (no padding) of a 32-byte digest: exactly 43 chars + NUL. */
static void b64url32(const uint8_t in[32], char out[44])
{
	unsigned char tmp[48]; /* EVP_EncodeBlock writes 44 chars + NUL */

	EVP_EncodeBlock(tmp, in, 32);
	for (int i = 0; i < 43; i++)
		out[i] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
	out[43] = '\0';
}

/* New base64url string of big-endian bn, left-padded to width (0 = minimal). */
static char *bn_b64url(const BIGNUM *bn, int width)
{
	uint8_t buf[1024]; /* RSA-8192 modulus */
	int n = width ? width : BN_num_bytes(bn);

	if (n <= 0 || n > (int)sizeof(buf) || BN_bn2binpad(bn, buf, n) != n)
		return NULL;
	return cp_b64url(buf, (size_t)n);
}

cp_rc crypto_jwk(const struct crypto_key *k, json_t **out)
{
	BIGNUM *a = NULL, *b = NULL;
	char *s1 = NULL, *s2 = NULL;
	json_t *jwk = NULL;
	cp_rc rc = CP_ERR_CRYPTO;

	assert(k && out);
	if (!k)
		return CP_ERR_INVALID;
	if (k->ec_size) {
		if (!EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_EC_PUB_X, &a) ||
		    !EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &b))
			goto out;
		/* RFC 7518 6.2.1.2: coordinates are full field width. */
		s1 = bn_b64url(a, k->ec_size);
		s2 = bn_b64url(b, k->ec_size);
		if (!s1 || !s2)
			goto out;
		/* Inserted in lexicographic order; jansson keeps insertion order. */
		jwk = json_pack("{s:s, s:s, s:s, s:s}", "crv", k->ec_size == 32 ? "P-256" : "P-384",
				"kty", "EC", "x", s1, "y", s2);
	} else {
		if (!EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_E, &a) ||
		    !EVP_PKEY_get_bn_param(k->pkey, OSSL_PKEY_PARAM_RSA_N, &b))
			goto out;
		/* RFC 7518 6.3.1: unsigned big-endian, no leading zero octets. */
		s1 = bn_b64url(a, 0);
		s2 = bn_b64url(b, 0);
		if (!s1 || !s2)
			goto out;
		jwk = json_pack("{s:s, s:s, s:s}", "e", s1, "kty", "RSA", "n", s2);
	}
	if (!jwk) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	*out = jwk;
	rc = CP_OK;
out:
	ERR_clear_error();
	free(s1);
	free(s2);
	BN_free(a);
	BN_free(b);
	return rc;
}

cp_rc crypto_jwk_thumbprint(const struct crypto_key *k, char out[44])
{
	json_t *jwk = NULL;
	char *canon = NULL;
	uint8_t md[32];
	cp_rc rc;

	assert(k && out);
	rc = crypto_jwk(k, &jwk);
	if (rc != CP_OK)
		return rc;
	/* RFC 7638 3.2: required members only, sorted, no whitespace. */
	canon = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
	if (!canon) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	SHA256((const unsigned char *)canon, strlen(canon), md);
	b64url32(md, out);
out:
	free(canon);
	json_decref(jwk);
	return rc;
}

/* ECDSA DER signature -> fixed-width r||s (RFC 7518 3.4). */
static cp_rc ecdsa_der_to_raw(const uint8_t *der, size_t len, int width, uint8_t *raw)
{
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
	const BIGNUM *r, *s;
	cp_rc rc = CP_ERR_CRYPTO;

	if (!sig)
		return CP_ERR_CRYPTO;
	ECDSA_SIG_get0(sig, &r, &s);
	if (BN_bn2binpad(r, raw, width) == width && BN_bn2binpad(s, raw + width, width) == width)
		rc = CP_OK;
	ECDSA_SIG_free(sig);
	return rc;
}

cp_rc crypto_jws(const struct crypto_key *k, json_t *protected_hdr, const char *payload, char **out)
{
	json_t *hdr = NULL, *jws = NULL;
	char *hdr_json = NULL, *b64_hdr = NULL, *b64_payload = NULL, *input = NULL;
	char *b64_sig = NULL;
	uint8_t *sig = NULL, raw[96];
	size_t siglen = 0;
	EVP_MD_CTX *md = NULL;
	const char *alg;
	cp_rc rc = CP_ERR_NOMEM;

	assert(k && out);
	if (!k || !json_is_object(protected_hdr) || !payload)
		return CP_ERR_INVALID;
	alg = k->ec_size == 32 ? "ES256" : k->ec_size == 48 ? "ES384" : "RS256";
	/* Shallow copy: the caller's header stays untouched and reusable. */
	hdr = json_copy(protected_hdr);
	if (!hdr || json_object_set_new(hdr, "alg", json_string(alg)) != 0)
		goto out;
	hdr_json = json_dumps(hdr, JSON_COMPACT);
	if (!hdr_json)
		goto out;
	b64_hdr = cp_b64url((const uint8_t *)hdr_json, strlen(hdr_json));
	b64_payload = cp_b64url((const uint8_t *)payload, strlen(payload));
	if (!b64_hdr || !b64_payload)
		goto out;
	input = cp_aprintf("%s.%s", b64_hdr, b64_payload);
	md = EVP_MD_CTX_new();
	if (!input || !md)
		goto out;

	rc = CP_ERR_CRYPTO;
	/* Signing does not modify the key; the API just is not const-correct. */
	if (EVP_DigestSignInit(md, NULL, k->ec_size == 48 ? EVP_sha384() : EVP_sha256(), NULL,
			       k->pkey) != 1 ||
	    EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input, strlen(input)) != 1)
		goto out;
	sig = malloc(siglen);
	if (!sig) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	if (EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input, strlen(input)) != 1)
		goto out;
	if (k->ec_size) {
		rc = ecdsa_der_to_raw(sig, siglen, k->ec_size, raw);
		if (rc != CP_OK)
			goto out;
		b64_sig = cp_b64url(raw, 2 * (size_t)k->ec_size);
	} else {
		b64_sig = cp_b64url(sig, siglen);
	}
	rc = CP_ERR_NOMEM;
	if (!b64_sig)
		goto out;
	jws = json_pack("{s:s, s:s, s:s}", "protected", b64_hdr, "payload", b64_payload,
			"signature", b64_sig);
	if (!jws)
		goto out;
	*out = json_dumps(jws, JSON_COMPACT);
	if (*out)
		rc = CP_OK;
out:
	ERR_clear_error();
	json_decref(jws);
	json_decref(hdr);
	EVP_MD_CTX_free(md);
	free(b64_sig);
	free(sig);
	free(input);
	free(b64_payload);
	free(b64_hdr);
	free(hdr_json);
	return rc;
}

void crypto_dns01_value(const char *key_authorization, char out[44])
{
	uint8_t md[32];

	assert(key_authorization && out);
	SHA256((const unsigned char *)key_authorization, strlen(key_authorization), md);
	b64url32(md, out);
}

cp_rc crypto_webhook_sign(const char *secret, const char *msg_id, int64_t ts, const char *body,
			  size_t body_len, char **sig)
{
	uint8_t *key = NULL, *msg = NULL, mac[32];
	size_t keylen = 0, idlen, msglen;
	char tsbuf[24], *b64 = NULL;
	int tslen;
	cp_rc rc;

	assert(secret && msg_id && (body || body_len == 0) && sig);
	if (!secret || !msg_id || (!body && body_len))
		return CP_ERR_INVALID;
	if (strncmp(secret, WHSEC_PREFIX, strlen(WHSEC_PREFIX)) != 0)
		return CP_ERR_INVALID;
	rc = cp_b64_decode(secret + strlen(WHSEC_PREFIX), &key, &keylen);
	if (rc != CP_OK)
		return rc;
	if (keylen == 0) {
		rc = CP_ERR_INVALID;
		goto out;
	}
	/* Signed content is exactly "<id>.<ts>.<body>" (Standard Webhooks). */
	tslen = snprintf(tsbuf, sizeof(tsbuf), "%" PRId64, ts);
	idlen = strlen(msg_id);
	msglen = idlen + 1 + (size_t)tslen + 1 + body_len;
	msg = malloc(msglen ? msglen : 1);
	rc = CP_ERR_NOMEM;
	if (!msg)
		goto out;
	memcpy(msg, msg_id, idlen);
	msg[idlen] = '.';
	memcpy(msg + idlen + 1, tsbuf, (size_t)tslen);
	msg[idlen + 1 + (size_t)tslen] = '.';
	if (body_len)
		memcpy(msg + idlen + 2 + (size_t)tslen, body, body_len);
	crypto_hmac_sha256(key, keylen, msg, msglen, mac);
	b64 = cp_b64(mac, sizeof(mac));
	if (!b64)
		goto out;
	*sig = cp_aprintf("v1,%s", b64);
	if (*sig)
		rc = CP_OK;
out:
	OPENSSL_cleanse(mac, sizeof(mac));
	crypto_wipe_free_buf(key, keylen);
	free(msg);
	free(b64);
	return rc;
}

cp_rc crypto_webhook_secret_new(char **out)
{
	uint8_t raw[32];
	char *b64 = NULL;
	cp_rc rc;

	assert(out);
	rc = cp_random(raw, sizeof(raw));
	if (rc != CP_OK)
		return rc;
	rc = CP_ERR_NOMEM;
	b64 = cp_b64(raw, sizeof(raw));
	if (!b64)
		goto out;
	*out = cp_aprintf(WHSEC_PREFIX "%s", b64);
	if (*out)
		rc = CP_OK;
out:
	OPENSSL_cleanse(raw, sizeof(raw));
	crypto_wipe_free(b64);
	return rc;
}
