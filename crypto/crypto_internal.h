/*
 * crypto_internal.h - what the crypto module sources share with each other (and
 * with white-box unit tests) but nobody else: the definition of struct
 * crypto_key and a few OpenSSL-typed helpers. Other modules must include
 * only crypto/crypto.h, which keeps OpenSSL out of their translation units.
 */
#ifndef CP_CRYPTO_INTERNAL_H
#define CP_CRYPTO_INTERNAL_H

#include <openssl/bio.h>
#include <openssl/evp.h>

#include "crypto/crypto.h"

struct crypto_key {
	EVP_PKEY *pkey;
	int ec_size;   /* coordinate/scalar bytes: 32 (P-256), 48 (P-384); 0 = RSA */
	char kind[16]; /* crypto_key_kind() */
};

/*
 * Describe p: kind (16 bytes) gets its name ("ecdsa-p256", "rsa-3072",
 * "unsupported", ...), *ec_size (may be NULL) its ECDSA width or 0.
 * Returns true only for key types certplane signs with: EC P-256/P-384 and
 * RSA 2048..8192 bits.
 */
bool crypto_pkey_classify(const EVP_PKEY *p, char kind[16], int *ec_size);
/*
 * Wrap p (public or private) in a new struct crypto_key taking an extra
 * reference; the caller keeps its own. CP_ERR_INVALID if p is an
 * unsupported type.
 */
cp_rc crypto_key_wrap(EVP_PKEY *p, struct crypto_key **out) CP_WUR;
/*
 * Copy the contents of memory BIO b into a new NUL-terminated string
 * (caller frees), or NULL on OOM.
 */
char *crypto_bio_string(BIO *b);

#endif
