/*
 * key.c - private keys: the supported key types, generation, PEM import
 * (plain, traditional and encrypted, with precise refusal reasons for the
 * API) and PKCS#8 export, plus small primitives shared by the module
 * (wiping frees, constant-time compare, HMAC-SHA256).
 *
 * Only EC P-256/P-384 and RSA 2048..8192 are accepted: those are what ACME
 * CAs issue for and what every TLS terminator we deploy to understands.
 */
#include <assert.h>
#include <limits.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "crypto/crypto_internal.h"

static const char *const key_type_names[] = {
	[CRYPTO_KEY_ECDSA_P256] = "ecdsa-p256", [CRYPTO_KEY_ECDSA_P384] = "ecdsa-p384",
	[CRYPTO_KEY_RSA_2048] = "rsa-2048",	[CRYPTO_KEY_RSA_3072] = "rsa-3072",
	[CRYPTO_KEY_RSA_4096] = "rsa-4096",
};

cp_rc crypto_key_type_parse(const char *s, enum crypto_key_type *out)
{
	if (!s)
		return CP_ERR_INVALID;
	for (size_t i = 0; i < CP_ARRAY_LEN(key_type_names); i++) {
		if (strcmp(s, key_type_names[i]) == 0) {
			*out = (enum crypto_key_type)i;
			return CP_OK;
		}
	}
	return CP_ERR_INVALID;
}

const char *crypto_key_type_name(enum crypto_key_type t)
{
	if ((unsigned)t >= CP_ARRAY_LEN(key_type_names))
		return "unknown";
	return key_type_names[t];
}

bool crypto_pkey_classify(const EVP_PKEY *p, char kind[16], int *ec_size)
{
	char group[64];
	int nid, bits;

	if (ec_size)
		*ec_size = 0;
	snprintf(kind, 16, "unsupported");
	if (!p)
		return false;
	/* "RSA" only: RSA-PSS keys cannot do the PKCS#1 v1.5 RS256 ACME needs. */
	if (EVP_PKEY_is_a(p, "RSA")) {
		bits = EVP_PKEY_get_bits(p);
		snprintf(kind, 16, "rsa-%d", bits);
		return bits >= 2048 && bits <= 8192;
	}
	if (!EVP_PKEY_is_a(p, "EC"))
		return false;
	if (EVP_PKEY_get_group_name(p, group, sizeof(group), NULL) != 1) {
		ERR_clear_error();
		return false;
	}
	nid = OBJ_sn2nid(group);
	if (nid == NID_undef)
		nid = EC_curve_nist2nid(group);
	if (nid == NID_X9_62_prime256v1) {
		snprintf(kind, 16, "ecdsa-p256");
		if (ec_size)
			*ec_size = 32;
		return true;
	}
	if (nid == NID_secp384r1) {
		snprintf(kind, 16, "ecdsa-p384");
		if (ec_size)
			*ec_size = 48;
		return true;
	}
	if (nid == NID_secp521r1)
		snprintf(kind, 16, "ecdsa-p521");
	return false;
}

cp_rc crypto_key_wrap(EVP_PKEY *p, struct crypto_key **out)
{
	struct crypto_key *k = NULL;

	assert(p && out);
	k = calloc(1, sizeof(*k));
	if (!k)
		return CP_ERR_NOMEM;
	if (!crypto_pkey_classify(p, k->kind, &k->ec_size)) {
		free(k);
		return CP_ERR_INVALID;
	}
	if (EVP_PKEY_up_ref(p) != 1) {
		free(k);
		return CP_ERR_CRYPTO;
	}
	k->pkey = p;
	*out = k;
	return CP_OK;
}

cp_rc crypto_key_generate(enum crypto_key_type t, struct crypto_key **out)
{
	EVP_PKEY *p = NULL;
	cp_rc rc;

	assert(out);
	switch (t) {
	case CRYPTO_KEY_ECDSA_P256:
		p = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
		break;
	case CRYPTO_KEY_ECDSA_P384:
		p = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
		break;
	case CRYPTO_KEY_RSA_2048:
		p = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		break;
	case CRYPTO_KEY_RSA_3072:
		p = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)3072);
		break;
	case CRYPTO_KEY_RSA_4096:
		p = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)4096);
		break;
	default:
		return CP_ERR_INVALID;
	}
	if (!p) {
		ERR_clear_error();
		return CP_ERR_CRYPTO;
	}
	rc = crypto_key_wrap(p, out);
	EVP_PKEY_free(p); /* the wrapper holds its own reference */
	return rc;
}

/*
 * Passphrase callback state. OpenSSL only asks for a passphrase when the
 * key is actually encrypted, so "asked" tells a missing passphrase apart
 * from input that is not a key at all; it also stops OpenSSL's default
 * callback from prompting on the terminal.
 */
struct pw_state {
	const char *pass;
	bool asked;
};

static int pw_cb(char *buf, int size, int rwflag, void *u)
{
	struct pw_state *st = u;
	size_t n;

	(void)rwflag;
	st->asked = true;
	if (!st->pass)
		return -1;
	n = strlen(st->pass);
	if (n > (size_t)size)
		return -1; /* longer than OpenSSL can take: cannot be right */
	memcpy(buf, st->pass, n);
	return (int)n;
}

/* What decrypting one uploaded key may cost: OpenSSL writes 2048 PBKDF2
 * iterations, careful tools up to 600000; 2^31 would pin a thread for
 * minutes. scrypt: N*r*p bounds the work (OpenSSL's default is 2^17). */
#define KDF_PBKDF2_ITER_MAX 1000000L
#define KDF_SCRYPT_WORK_MAX (1L << 22)

/* An ASN.1 INTEGER as a long in 0..max, or -1 (absent, negative, larger). */
static long asn1_small(const ASN1_INTEGER *i, long max)
{
	long v;

	if (!i)
		return -1;
	v = ASN1_INTEGER_get(i);
	ERR_clear_error();
	return v >= 0 && v <= max ? v : -1;
}

/* False if alg (an EncryptedPrivateKeyInfo's algorithm) asks for more work
 * than the limits above; unknown schemes are left to OpenSSL to refuse. */
static bool kdf_cost_ok(const X509_ALGOR *alg)
{
	const ASN1_OBJECT *oid;
	int ptype, nid;
	bool ok = true;

	X509_ALGOR_get0(&oid, &ptype, NULL, alg);
	nid = OBJ_obj2nid(oid);
	if (nid == NID_pbes2) {
		PBE2PARAM *pbe2 =
			ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBE2PARAM), alg->parameter);
		const ASN1_OBJECT *kdf_oid = NULL;

		if (!pbe2)
			return true; /* unparsable: OpenSSL refuses it without deriving */
		X509_ALGOR_get0(&kdf_oid, NULL, NULL, pbe2->keyfunc);
		if (OBJ_obj2nid(kdf_oid) == NID_id_pbkdf2) {
			PBKDF2PARAM *kdf = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBKDF2PARAM),
								     pbe2->keyfunc->parameter);
			ok = !kdf || asn1_small(kdf->iter, KDF_PBKDF2_ITER_MAX) >= 0;
			PBKDF2PARAM_free(kdf);
		} else if (OBJ_obj2nid(kdf_oid) == NID_id_scrypt) {
			SCRYPT_PARAMS *sp = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(SCRYPT_PARAMS),
								      pbe2->keyfunc->parameter);
			long n = sp ? asn1_small(sp->costParameter, KDF_SCRYPT_WORK_MAX) : 0;
			long r = sp ? asn1_small(sp->blockSize, KDF_SCRYPT_WORK_MAX) : 0;
			long q = sp ? asn1_small(sp->parallelizationParameter, KDF_SCRYPT_WORK_MAX)
				    : 0;

			ok = !sp ||
			     (n >= 0 && r >= 0 && q >= 0 &&
			      (double)n * (double)r * (double)q <= (double)KDF_SCRYPT_WORK_MAX);
			SCRYPT_PARAMS_free(sp);
		}
		PBE2PARAM_free(pbe2);
	} else if (ptype == V_ASN1_SEQUENCE) {
		/* PKCS#5 v1 / PKCS#12 PBE: PBEParameter { salt, iterationCount }. */
		PBEPARAM *pbe = ASN1_TYPE_unpack_sequence(ASN1_ITEM_rptr(PBEPARAM), alg->parameter);

		ok = !pbe || asn1_small(pbe->iter, KDF_PBKDF2_ITER_MAX) >= 0;
		PBEPARAM_free(pbe);
	}
	ERR_clear_error();
	return ok;
}

/* False if any ENCRYPTED PRIVATE KEY block of pem is too costly to decrypt. */
static bool encrypted_keys_affordable(const char *pem, size_t len)
{
	BIO *bio = BIO_new_mem_buf(pem, (int)len);
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	long dlen = 0;
	bool ok = true;

	if (!bio)
		return false;
	while (ok && PEM_read_bio(bio, &name, &header, &data, &dlen) == 1) {
		if (strcmp(name, PEM_STRING_PKCS8) == 0) {
			const unsigned char *p = data;
			X509_SIG *sig = d2i_X509_SIG(NULL, &p, dlen);
			const X509_ALGOR *alg = NULL;

			if (sig) {
				X509_SIG_get0(sig, &alg, NULL);
				ok = kdf_cost_ok(alg);
			}
			X509_SIG_free(sig);
		}
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_free(data);
		name = header = NULL;
		data = NULL;
	}
	ERR_clear_error();
	BIO_free(bio);
	return ok;
}

cp_rc crypto_key_from_pem(const char *pem, size_t len, const char *passphrase,
			  struct crypto_key **out, const char **why)
{
	struct pw_state st = { .pass = passphrase, .asked = false };
	const char *dummy;
	BIO *bio = NULL;
	EVP_PKEY *p = NULL;
	cp_rc rc = CP_ERR_INVALID;

	assert(pem && out);
	if (!why)
		why = &dummy;
	*why = "not a PEM private key";
	if (len > CRYPTO_PEM_MAX)
		return CP_ERR_TOO_LARGE;
	if (!pem || len == 0)
		return CP_ERR_INVALID;
	/* Only a passphrase makes OpenSSL run the key derivation: bound it first. */
	if (passphrase && !encrypted_keys_affordable(pem, len)) {
		*why = "encrypted private key's key derivation is too costly "
		       "(more than 1000000 PBKDF2 iterations or scrypt N*r*p above 2^22)";
		return CP_ERR_INVALID;
	}
	bio = BIO_new_mem_buf(pem, (int)len);
	if (!bio) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	p = PEM_read_bio_PrivateKey_ex(bio, NULL, pw_cb, &st, NULL, NULL);
	if (!p) {
		if (st.asked)
			*why = passphrase ? "wrong passphrase"
					  : "encrypted private key needs a passphrase";
		goto out;
	}
	rc = crypto_key_wrap(p, out);
	if (rc == CP_ERR_INVALID)
		*why = "unsupported key type";
out:
	/* Leave no stale errors on this thread's queue for the next caller. */
	ERR_clear_error();
	EVP_PKEY_free(p);
	BIO_free(bio);
	return rc;
}

char *crypto_bio_string(BIO *b)
{
	char *data = NULL, *s = NULL;
	long n = BIO_get_mem_data(b, &data);

	if (n < 0)
		return NULL;
	s = malloc((size_t)n + 1);
	if (!s)
		return NULL;
	if (n > 0)
		memcpy(s, data, (size_t)n); /* an empty BIO has no data pointer */
	s[n] = '\0';
	return s;
}

cp_rc crypto_key_to_pem(const struct crypto_key *k, char **out)
{
	BIO *bio = NULL;
	cp_rc rc = CP_ERR_CRYPTO;

	assert(k && out);
	/*
	 * A secure-heap BIO where available; memory BIOs clear their buffers
	 * on free either way, so the only copy left is the caller's.
	 */
	bio = BIO_new(BIO_s_secmem());
	if (!bio)
		goto out;
	/* OpenSSL 3 writes PKCS#8 ("PRIVATE KEY") for every key type. */
	if (PEM_write_bio_PrivateKey(bio, k->pkey, NULL, NULL, 0, NULL, NULL) != 1)
		goto out;
	*out = crypto_bio_string(bio);
	rc = *out ? CP_OK : CP_ERR_NOMEM;
out:
	ERR_clear_error();
	BIO_free(bio);
	return rc;
}

const char *crypto_key_kind(const struct crypto_key *k)
{
	return k ? k->kind : "unknown";
}

void crypto_key_free(struct crypto_key *k)
{
	if (!k)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

void crypto_wipe_free(char *s)
{
	if (!s)
		return;
	OPENSSL_cleanse(s, strlen(s));
	free(s);
}

void crypto_wipe(void *p, size_t n)
{
	if (p && n)
		OPENSSL_cleanse(p, n);
}

/* jansson's free: wipe the whole allocation (its size is not passed). */
static void json_wipe_free(void *p)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, malloc_usable_size(p));
	free(p);
}

void crypto_json_wipe_on_free(void)
{
	json_set_alloc_funcs(malloc, json_wipe_free);
}

void crypto_wipe_free_buf(void *p, size_t n)
{
	if (!p)
		return;
	OPENSSL_cleanse(p, n);
	free(p);
}

bool crypto_equal(const void *a, const void *b, size_t n)
{
	assert((a && b) || n == 0);

	return CRYPTO_memcmp(a, b, n) == 0;
}

void crypto_hmac_sha256(const uint8_t *key, size_t keylen, const void *msg, size_t n,
			uint8_t mac[32])
{
	static const uint8_t empty;
	size_t maclen = 0;

	assert((key || keylen == 0) && (msg || n == 0) && mac);
	/* OpenSSL 3.0 refuses a NULL key even with length 0. */
	if (!key) {
		key = &empty;
		keylen = 0;
	}
	if (!msg)
		msg = &empty;
	if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, key, keylen, msg, n, mac, 32, &maclen) ||
	    maclen != 32) {
		/* Only OOM gets here; a random MAC can never match a real one. */
		ERR_clear_error();
		if (RAND_bytes(mac, 32) != 1)
			memset(mac, 0xa5, 32); /* unreachable in practice */
	}
}
