/*
 * encode.c - randomness and the byte and string encodings: secure random
 * bytes, hex, SHA-256 hex, base64 and base64url, UTF-8 validation, and the
 * NULL-on-OOM string duplication helpers.
 */
#include "common/common.h"

#include <assert.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

cp_rc cp_random(void *buf, size_t n)
{
	assert((buf || n == 0) && n <= INT_MAX);

	return RAND_bytes(buf, (int)n) == 1 ? CP_OK : CP_ERR_CRYPTO;
}

uint64_t cp_random_below(uint64_t bound)
{
	uint64_t v = 0, limit;

	if (bound <= 1)
		return 0;
	/* Rejection sampling keeps the distribution uniform. */
	limit = UINT64_MAX - UINT64_MAX % bound;
	do {
		if (cp_random(&v, sizeof(v)) != CP_OK)
			v = (uint64_t)cp_mono_ms() * 2654435761u;
	} while (v >= limit);
	return v % bound;
}

void cp_hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	assert((in || n == 0) && out);
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

static EVP_MD *sha256_md; /* NULL if the fetch failed: SHA256() then */
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void cp_sha256_hex(const void *data, size_t n, char out[65])
{
	uint8_t md[SHA256_DIGEST_LENGTH];

	assert((data || n == 0) && out);
	/* Fetched once: the one-shot SHA256() looks the algorithm up in the
	 * provider tables (locks, hashing) on every call, and every API request
	 * hashes its key. */
	pthread_once(&sha256_once, sha256_fetch);
	if (!sha256_md || EVP_Digest(data, n, md, NULL, sha256_md, NULL) != 1)
		SHA256(data, n, md);
	cp_hex(md, sizeof(md), out);
}

char *cp_b64(const uint8_t *in, size_t n)
{
	size_t cap = 4 * ((n + 2) / 3) + 1;
	char *out = malloc(cap);

	assert((in || n == 0) && n <= (size_t)INT_MAX / 4 * 3);
	if (!out)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

char *cp_b64url(const uint8_t *in, size_t n)
{
	char *out = cp_b64(in, n);
	size_t len;

	if (!out)
		return NULL;
	len = strlen(out);
	while (len > 0 && out[len - 1] == '=')
		out[--len] = '\0';
	for (size_t i = 0; i < len; i++) {
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	return out;
}

cp_rc cp_b64_decode(const char *in, uint8_t **out, size_t *outlen)
{
	size_t len, pad = 0;
	uint8_t *buf = NULL;
	int n;

	assert(in && out && outlen);
	len = strlen(in);
	if (len % 4 != 0)
		return CP_ERR_INVALID;
	buf = malloc(len / 4 * 3 + 1);
	if (!buf)
		return CP_ERR_NOMEM;
	n = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)len);
	if (n < 0) {
		free(buf);
		return CP_ERR_INVALID;
	}
	/* EVP_DecodeBlock counts padding as zero bytes; take them back off. */
	while (pad < 2 && len > pad && in[len - 1 - pad] == '=')
		pad++;
	*out = buf;
	*outlen = (size_t)n - pad;
	return CP_OK;
}

cp_rc cp_b64url_decode(const char *in, uint8_t **out, size_t *outlen)
{
	size_t len;
	char *tmp = NULL;
	cp_rc rc;

	assert(in && out && outlen);
	len = strlen(in);
	tmp = malloc(len + 4);
	if (!tmp)
		return CP_ERR_NOMEM;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (c == '+' || c == '/')
			c = '!'; /* not part of the url alphabet */
		tmp[i] = c;
	}
	while (len % 4)
		tmp[len++] = '=';
	tmp[len] = '\0';
	rc = cp_b64_decode(tmp, out, outlen);
	free(tmp);
	return rc;
}

char *cp_strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

char *cp_strndup(const char *s, size_t n)
{
	return s ? strndup(s, n) : NULL;
}

char *cp_aprintf(const char *fmt, ...)
{
	va_list ap;
	char *out = NULL;
	int n;

	assert(fmt);
	va_start(ap, fmt);
	n = vasprintf(&out, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : out;
}

bool cp_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	assert(s || len == 0);
	while (p < end) {
		unsigned c = *p, need;
		uint32_t cp;
		if (c == 0)
			return false;
		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if ((size_t)(end - p) <= need)
			return false;
		for (unsigned i = 1; i <= need; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		/* overlong, surrogate and out-of-range forms */
		if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += need + 1;
	}
	return true;
}
