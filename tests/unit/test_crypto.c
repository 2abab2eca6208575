/*
 * test_crypto.c - unit tests for the crypto module: key generation and PEM
 * round trips, certificate facts, self-signed certificates and CSRs checked
 * independently with OpenSSL, PEM chain handling, JWS/JWK against RFC 7638
 * and an independent ECDSA verification, the Standard Webhooks test vector,
 * and the sealing key ring (file mode, rotation, pruning, tampering).
 *
 * White-box where it helps: includes crypto_internal.h to reach the
 * EVP_PKEY inside a struct crypto_key for independent verification.
 * Exit status is the number of failed checks (capped), 0 on success.
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include "common/common.h"
#include "crypto/crypto.h"
#include "crypto/crypto_internal.h"
#include "tests/unit/check.h"

static const char *const type_names[] = { "ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072",
					  "rsa-4096" };
static struct crypto_key *keys[5];

static X509 *pem_x509(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);

	BIO_free(b);
	return x;
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static json_t *hosts(void)
{
	return json_pack("[s,s,s]", "a.example.com", "b.example.com", "192.0.2.7");
}

static void test_types(void)
{
	enum crypto_key_type t;

	for (int i = 0; i < 5; i++) {
		CHECK(crypto_key_type_parse(type_names[i], &t) == CP_OK && (int)t == i);
		CHECK(strcmp(crypto_key_type_name((enum crypto_key_type)i), type_names[i]) == 0);
	}
	CHECK(crypto_key_type_parse("rsa-1024", &t) == CP_ERR_INVALID);
	CHECK(crypto_key_type_parse("ECDSA-P256", &t) == CP_ERR_INVALID);
	CHECK(crypto_key_type_parse(NULL, &t) == CP_ERR_INVALID);
	CHECK(strcmp(crypto_key_type_name((enum crypto_key_type)99), "unknown") == 0);
}

static void test_keys(void)
{
	for (int i = 0; i < 5; i++) {
		struct crypto_key *back = NULL;
		const char *why = NULL;
		char *pem = NULL;

		CHECK(crypto_key_generate((enum crypto_key_type)i, &keys[i]) == CP_OK);
		if (!keys[i])
			continue;
		CHECK(strcmp(crypto_key_kind(keys[i]), type_names[i]) == 0);
		CHECK(crypto_key_to_pem(keys[i], &pem) == CP_OK);
		CHECK(pem && strncmp(pem, "-----BEGIN PRIVATE KEY-----", 27) == 0);
		CHECK(crypto_key_from_pem(pem, strlen(pem), NULL, &back, &why) == CP_OK);
		CHECK(back && strcmp(crypto_key_kind(back), type_names[i]) == 0);
		CHECK(back && EVP_PKEY_eq(back->pkey, keys[i]->pkey) == 1);
		crypto_key_free(back);
		crypto_wipe_free(pem);
	}
	CHECK(crypto_key_generate((enum crypto_key_type)42, &(struct crypto_key *){ NULL }) ==
	      CP_ERR_INVALID);
}

static void test_self_signed(void)
{
	json_t *h = hosts();
	int64_t now = cp_now();

	for (int i = 0; i < 5; i++) {
		struct crypto_cert_info ci;
		const char *why = NULL;
		char *cert = NULL;
		uint8_t *der = NULL;
		const uint8_t *p;
		size_t derlen = 0;
		X509 *x = NULL;
		X509_REQ *req = NULL;

		if (!keys[i])
			continue;
		CHECK(crypto_self_signed(keys[i], h, 30, &cert) == CP_OK);
		if (!cert)
			continue;
		CHECK(crypto_cert_info_parse(cert, strlen(cert), &ci, &why) == CP_OK);
		CHECK(ci.subject_cn && strcmp(ci.subject_cn, "a.example.com") == 0);
		CHECK(json_array_size(ci.sans) == 3);
		CHECK(strcmp(json_string_value(json_array_get(ci.sans, 0)), "a.example.com") == 0);
		CHECK(strcmp(json_string_value(json_array_get(ci.sans, 1)), "b.example.com") == 0);
		CHECK(strcmp(json_string_value(json_array_get(ci.sans, 2)), "192.0.2.7") == 0);
		CHECK(ci.issuer && strcmp(ci.issuer, "CN=a.example.com") == 0);
		CHECK(ci.not_before >= now - 62 && ci.not_before <= now - 58);
		CHECK(ci.not_after - ci.not_before == 30 * 86400 + 60);
		CHECK(!ci.is_ca);
		CHECK(strcmp(ci.key_kind, type_names[i]) == 0);
		CHECK(ci.serial && strlen(ci.serial) == 32 &&
		      strspn(ci.serial, "0123456789abcdef") == 32);
		CHECK(strlen(ci.fingerprint_sha256) == 64);
		crypto_cert_info_clear(&ci);
		crypto_cert_info_clear(&ci); /* idempotent */

		CHECK(crypto_key_matches_cert(keys[i], cert, strlen(cert)));
		CHECK(!crypto_key_matches_cert(keys[(i + 1) % 5], cert, strlen(cert)));

		/* Independent checks with OpenSSL itself. */
		x = pem_x509(cert);
		CHECK(x && X509_verify(x, keys[i]->pkey) == 1);
		if (x) {
			uint32_t ku = X509_get_key_usage(x);
			CHECK((ku & KU_DIGITAL_SIGNATURE) != 0);
			CHECK(((ku & KU_KEY_ENCIPHERMENT) != 0) == (i >= 2));
			CHECK((X509_get_extended_key_usage(x) & XKU_SSL_SERVER) != 0);
			CHECK(X509_get_version(x) == X509_VERSION_3);
		}
		X509_free(x);

		CHECK(crypto_csr_der(keys[i], h, &der, &derlen) == CP_OK);
		p = der;
		req = der ? d2i_X509_REQ(NULL, &p, (long)derlen) : NULL;
		CHECK(req && X509_REQ_verify(req, keys[i]->pkey) == 1);
		if (req) {
			STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
			CHECK(exts && X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1) >= 0);
			sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
		}
		X509_REQ_free(req);
		free(der);
		free(cert);
	}

	/* Bad arguments. */
	{
		char *cert = NULL;
		json_t *empty = json_array(), *bad = json_pack("[i]", 3);

		CHECK(crypto_self_signed(keys[0], empty, 30, &cert) == CP_ERR_INVALID);
		CHECK(crypto_self_signed(keys[0], bad, 30, &cert) == CP_ERR_INVALID);
		CHECK(crypto_self_signed(keys[0], h, 0, &cert) == CP_ERR_INVALID);
		CHECK(crypto_self_signed_window(keys[0], h, 100, 100, &cert) == CP_ERR_INVALID);
		json_decref(empty);
		json_decref(bad);
	}
	json_decref(h);
}

static void test_expired(void)
{
	json_t *h = json_pack("[s]", "old.example.org");
	int64_t now = cp_now();
	struct crypto_cert_info ci;
	char *cert = NULL;
	const char *why;

	CHECK(crypto_self_signed_window(keys[0], h, now - 90 * 86400, now - 86400, &cert) == CP_OK);
	CHECK(cert && crypto_cert_info_parse(cert, strlen(cert), &ci, &why) == CP_OK);
	if (cert) {
		CHECK(ci.not_before == now - 90 * 86400);
		CHECK(ci.not_after == now - 86400 && ci.not_after < now);
		crypto_cert_info_clear(&ci);
	}
	free(cert);
	json_decref(h);
}

static char *pkey_pem(EVP_PKEY *p, int pkcs8, const EVP_CIPHER *enc, const char *pass)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *s = NULL;
	int ok;

	if (pkcs8)
		ok = PEM_write_bio_PKCS8PrivateKey(b, p, enc, pass, pass ? (int)strlen(pass) : 0,
						   NULL, NULL);
	else
		ok = PEM_write_bio_PrivateKey_traditional(b, p, enc, (unsigned char *)pass,
							  pass ? (int)strlen(pass) : 0, NULL, NULL);
	if (ok == 1)
		s = crypto_bio_string(b);
	BIO_free(b);
	return s;
}

static void test_pem_import(void)
{
	struct crypto_key *k = NULL;
	const char *why = NULL;
	char *enc8 = pkey_pem(keys[0]->pkey, 1, EVP_aes_256_cbc(), "s3cret");
	char *trad = pkey_pem(keys[2]->pkey, 0, NULL, NULL);
	char *trad_enc = pkey_pem(keys[1]->pkey, 0, EVP_aes_128_cbc(), "pw-trad");
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
	char *ed_pem = pkey_pem(ed, 1, NULL, NULL), *small_pem = pkey_pem(small, 1, NULL, NULL);
	json_t *h = json_pack("[s]", "x.example.com");
	char *cert = NULL, *big = NULL;
	static const char fake[] = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";

	CHECK(enc8 && strstr(enc8, "BEGIN ENCRYPTED PRIVATE KEY"));
	CHECK(crypto_key_from_pem(enc8, strlen(enc8), NULL, &k, &why) == CP_ERR_INVALID);
	CHECK(why && strcmp(why, "encrypted private key needs a passphrase") == 0);
	CHECK(crypto_key_from_pem(enc8, strlen(enc8), "nope", &k, &why) == CP_ERR_INVALID);
	CHECK(why && strcmp(why, "wrong passphrase") == 0);
	CHECK(crypto_key_from_pem(enc8, strlen(enc8), "s3cret", &k, &why) == CP_OK);
	CHECK(k && EVP_PKEY_eq(k->pkey, keys[0]->pkey) == 1);
	crypto_key_free(k);
	k = NULL;

	CHECK(trad && strstr(trad, "BEGIN RSA PRIVATE KEY"));
	CHECK(crypto_key_from_pem(trad, strlen(trad), NULL, &k, &why) == CP_OK);
	CHECK(k && strcmp(crypto_key_kind(k), "rsa-2048") == 0);
	crypto_key_free(k);
	k = NULL;

	CHECK(trad_enc && strstr(trad_enc, "Proc-Type: 4,ENCRYPTED"));
	CHECK(crypto_key_from_pem(trad_enc, strlen(trad_enc), NULL, &k, &why) == CP_ERR_INVALID);
	CHECK(why && strcmp(why, "encrypted private key needs a passphrase") == 0);
	CHECK(crypto_key_from_pem(trad_enc, strlen(trad_enc), "pw-trad", &k, &why) == CP_OK);
	CHECK(k && strcmp(crypto_key_kind(k), "ecdsa-p384") == 0);
	crypto_key_free(k);
	k = NULL;

	CHECK(crypto_key_from_pem("hello", 5, NULL, &k, &why) == CP_ERR_INVALID);
	CHECK(why && strcmp(why, "not a PEM private key") == 0);
	CHECK(crypto_key_from_pem(fake, strlen(fake), NULL, &k, &why) == CP_ERR_INVALID);
	CHECK(why && strcmp(why, "not a PEM private key") == 0);
	CHECK(crypto_key_from_pem("", 0, NULL, &k, &why) == CP_ERR_INVALID);
	CHECK(crypto_self_signed(keys[0], h, 1, &cert) == CP_OK);
	CHECK(cert && crypto_key_from_pem(cert, strlen(cert), NULL, &k, &why) == CP_ERR_INVALID);
	CHECK(why && strcmp(why, "not a PEM private key") == 0);

	CHECK(ed_pem &&
	      crypto_key_from_pem(ed_pem, strlen(ed_pem), NULL, &k, &why) == CP_ERR_INVALID);
	CHECK(why && strcmp(why, "unsupported key type") == 0);
	CHECK(small_pem &&
	      crypto_key_from_pem(small_pem, strlen(small_pem), NULL, &k, &why) == CP_ERR_INVALID);
	CHECK(why && strcmp(why, "unsupported key type") == 0);

	big = calloc(1, CRYPTO_PEM_MAX + 2);
	if (big) {
		memset(big, 'A', CRYPTO_PEM_MAX + 1);
		CHECK(crypto_key_from_pem(big, CRYPTO_PEM_MAX + 1, NULL, &k, &why) ==
		      CP_ERR_TOO_LARGE);
		CHECK(crypto_chain_check(big, CRYPTO_PEM_MAX + 1, NULL, &why) == CP_ERR_TOO_LARGE);
	}
	CHECK(k == NULL);

	free(big);
	free(cert);
	json_decref(h);
	crypto_wipe_free(ed_pem);
	crypto_wipe_free(small_pem);
	EVP_PKEY_free(ed);
	EVP_PKEY_free(small);
	crypto_wipe_free(enc8);
	crypto_wipe_free(trad);
	crypto_wipe_free(trad_enc);
}

static void test_chain(void)
{
	json_t *h1 = json_pack("[s]", "leaf.example.com"), *h2 = json_pack("[s]", "ca.example.com");
	char *c1 = NULL, *c2 = NULL, *kp = NULL, *bundle = NULL, *bad = NULL, *leaf = NULL,
	     *chain = NULL;
	const char *why = NULL;
	int count = 0;

	CHECK(crypto_self_signed(keys[0], h1, 10, &c1) == CP_OK);
	CHECK(crypto_self_signed(keys[1], h2, 10, &c2) == CP_OK);
	CHECK(crypto_key_to_pem(keys[0], &kp) == CP_OK);
	if (!c1 || !c2 || !kp)
		goto out;
	bundle = cp_aprintf("some text\n%s\n%s", c1, c2);
	bad = cp_aprintf("%s%s", c1, kp);
	if (!bundle || !bad)
		goto out;

	CHECK(crypto_chain_check(bundle, strlen(bundle), &count, &why) == CP_OK && count == 2);
	CHECK(crypto_chain_check(c1, strlen(c1), &count, &why) == CP_OK && count == 1);
	CHECK(crypto_chain_check(bad, strlen(bad), &count, &why) == CP_ERR_INVALID);
	CHECK(why && strcmp(why, "PEM block is not a CERTIFICATE") == 0);
	CHECK(crypto_chain_check("", 0, &count, &why) == CP_ERR_INVALID);
	CHECK(crypto_chain_check(" \n\t\n", 4, &count, &why) == CP_ERR_INVALID);
	/* Truncated: BEGIN line without END. */
	CHECK(crypto_chain_check(c1, strlen(c1) - 30, &count, &why) == CP_ERR_INVALID);

	CHECK(crypto_chain_split(bundle, strlen(bundle), &leaf, &chain, &why) == CP_OK);
	CHECK(leaf && strcmp(leaf, c1) == 0);
	CHECK(chain && strcmp(chain, c2) == 0);
	free(leaf);
	free(chain);
	leaf = chain = NULL;
	CHECK(crypto_chain_split(c1, strlen(c1), &leaf, &chain, &why) == CP_OK);
	CHECK(leaf && strcmp(leaf, c1) == 0 && chain && chain[0] == '\0');
	free(leaf);
	free(chain);
	leaf = chain = NULL;
	CHECK(crypto_chain_split(bad, strlen(bad), &leaf, &chain, &why) == CP_ERR_INVALID);
	CHECK(leaf == NULL && chain == NULL);

	/* cert_info takes the first block only, and it must be a certificate. */
	{
		struct crypto_cert_info ci;

		CHECK(crypto_cert_info_parse(bundle, strlen(bundle), &ci, &why) == CP_OK);
		CHECK(ci.subject_cn && strcmp(ci.subject_cn, "leaf.example.com") == 0);
		crypto_cert_info_clear(&ci);
		CHECK(crypto_cert_info_parse(kp, strlen(kp), &ci, &why) == CP_ERR_INVALID);
		CHECK(ci.sans == NULL && ci.subject_cn == NULL);
	}
out:
	free(bundle);
	free(bad);
	free(c1);
	free(c2);
	crypto_wipe_free(kp);
	json_decref(h1);
	json_decref(h2);
}

/*
 * A self-signed certificate built here with OpenSSL directly (crypto.h
 * refuses to make the bad ones): nsans DNS names, signed with md, CA:TRUE
 * when ca. New PEM string or NULL.
 */
static char *odd_cert(EVP_PKEY *k, int nsans, const EVP_MD *md, bool ca)
{
	X509 *x = X509_new();
	X509V3_CTX ctx;
	X509_EXTENSION *ext = NULL;
	GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
	BIO *b = BIO_new(BIO_s_mem());
	char *pem = NULL, *data = NULL, name[64];
	long n;
	bool ok = x && gens && b;

	for (int i = 0; ok && i < nsans; i++) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();

		snprintf(name, sizeof(name), "n%d.example.com", i);
		ok = g && s && ASN1_STRING_set(s, name, -1) == 1;
		if (ok) {
			GENERAL_NAME_set0_value(g, GEN_DNS, s);
			s = NULL;
			ok = sk_GENERAL_NAME_push(gens, g) > 0;
			if (ok)
				g = NULL;
		}
		ASN1_IA5STRING_free(s);
		GENERAL_NAME_free(g);
	}
	ok = ok && X509_set_version(x, X509_VERSION_3) == 1 &&
	     ASN1_INTEGER_set(X509_get_serialNumber(x), 7) == 1 &&
	     X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
					(const unsigned char *)"odd.example.com", -1, -1, 0) == 1 &&
	     X509_set_issuer_name(x, X509_get_subject_name(x)) == 1 &&
	     X509_gmtime_adj(X509_getm_notBefore(x), 0) &&
	     X509_gmtime_adj(X509_getm_notAfter(x), 86400) && X509_set_pubkey(x, k) == 1 &&
	     (nsans == 0 || X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0) == 1);
	if (ok) {
		X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
		ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
					  ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
		ok = ext && X509_add_ext(x, ext, -1) == 1 && X509_sign(x, k, md) > 0 &&
		     PEM_write_bio_X509(b, x) == 1;
	}
	if (ok && (n = BIO_get_mem_data(b, &data)) > 0)
		pem = cp_strndup(data, (size_t)n);
	X509_EXTENSION_free(ext);
	GENERAL_NAMES_free(gens);
	BIO_free(b);
	X509_free(x);
	return pem;
}

static void test_upload_limits(void)
{
	char *ok100 = odd_cert(keys[0]->pkey, 100, EVP_sha256(), false);
	char *sans101 = odd_cert(keys[0]->pkey, 101, EVP_sha256(), false);
	char *sha1 = odd_cert(keys[0]->pkey, 1, EVP_sha1(), false);
	char *md5 = odd_cert(keys[2]->pkey, 1, EVP_md5(), false);
	char *ca = odd_cert(keys[1]->pkey, 0, EVP_sha384(), true);
	char *chain10 = NULL, *chain11 = NULL, *weak = NULL;
	const char *why = NULL;

	CHECK(ok100 && sans101 && sha1 && md5 && ca);
	if (!ok100 || !sans101 || !sha1 || !md5 || !ca)
		goto out;
	CHECK(crypto_cert_upload_check(ok100, strlen(ok100), true, &why) == CP_OK && !why);
	CHECK(crypto_cert_upload_check(sans101, strlen(sans101), true, &why) == CP_ERR_INVALID);
	CHECK(why && strstr(why, "100 subjectAltName"));
	CHECK(crypto_cert_upload_check(sha1, strlen(sha1), true, &why) == CP_ERR_INVALID);
	CHECK(why && strstr(why, "MD5 or SHA-1"));
	CHECK(crypto_cert_upload_check(md5, strlen(md5), false, &why) == CP_ERR_INVALID);
	CHECK(why && strstr(why, "MD5 or SHA-1"));
	/* A CA certificate: refused as a server certificate, fine as a CA. */
	CHECK(crypto_cert_upload_check(ca, strlen(ca), true, &why) == CP_ERR_INVALID);
	CHECK(why && strstr(why, "CA certificate"));
	CHECK(crypto_cert_upload_check(ca, strlen(ca), false, &why) == CP_OK);
	CHECK(crypto_cert_upload_check("nope", 4, true, &why) == CP_ERR_INVALID);

	/* Chains: empty is fine, ten is the most, a weak signature anywhere is not. */
	chain10 = cp_aprintf("%s%s%s%s%s%s%s%s%s%s", ca, ca, ca, ca, ca, ca, ca, ca, ca, ca);
	chain11 = chain10 ? cp_aprintf("%s\n%s", chain10, ca) : NULL;
	weak = cp_aprintf("%s%s", ca, sha1);
	CHECK(chain10 && chain11 && weak);
	if (!chain10 || !chain11 || !weak)
		goto out;
	CHECK(crypto_chain_upload_check("", 0, &why) == CP_OK);
	CHECK(crypto_chain_upload_check(" \r\n", 3, &why) == CP_OK);
	CHECK(crypto_chain_upload_check(chain10, strlen(chain10), &why) == CP_OK);
	CHECK(crypto_chain_upload_check(chain11, strlen(chain11), &why) == CP_ERR_INVALID);
	CHECK(why && strstr(why, "more than 10"));
	CHECK(crypto_chain_upload_check(weak, strlen(weak), &why) == CP_ERR_INVALID);
	CHECK(why && strstr(why, "MD5 or SHA-1"));
	CHECK(crypto_chain_upload_check(md5, strlen(md5), &why) == CP_ERR_INVALID);
out:
	free(ok100);
	free(sans101);
	free(sha1);
	free(md5);
	free(ca);
	free(chain10);
	free(chain11);
	free(weak);
}

/*
 * An ENCRYPTED PRIVATE KEY whose PBKDF2 asks for iter iterations. Only the
 * parameters are built (no derivation runs here); the ciphertext is junk,
 * which is fine: the cost check must refuse it before any decryption.
 */
static char *costly_key_pem(int iter)
{
	X509_SIG *sig = X509_SIG_new();
	X509_ALGOR *alg = NULL, *pbe = NULL;
	ASN1_OCTET_STRING *ct = NULL;
	BIO *b = BIO_new(BIO_s_mem());
	char *pem = NULL, *data = NULL;
	long n;

	pbe = PKCS5_pbe2_set_iv(EVP_aes_256_cbc(), iter, NULL, 0, NULL, NID_hmacWithSHA256);
	if (sig && b && pbe) {
		X509_SIG_getm(sig, &alg, &ct);
		if (X509_ALGOR_copy(alg, pbe) == 1 &&
		    ASN1_OCTET_STRING_set(ct, (const unsigned char *)"0123456789abcdef", 16) == 1 &&
		    PEM_write_bio_PKCS8(b, sig) == 1 && (n = BIO_get_mem_data(b, &data)) > 0)
			pem = cp_strndup(data, (size_t)n);
	}
	X509_ALGOR_free(pbe);
	X509_SIG_free(sig);
	BIO_free(b);
	return pem;
}

static void test_kdf_cost(void)
{
	char *huge = costly_key_pem(2147483647), *fine = costly_key_pem(2048), *enc = NULL;
	struct crypto_key *k = NULL;
	const char *why = NULL;
	int64_t t0;

	CHECK(huge && fine);
	if (!huge || !fine)
		goto out;
	t0 = cp_mono_ms();
	CHECK(crypto_key_from_pem(huge, strlen(huge), "pw", &k, &why) == CP_ERR_INVALID);
	CHECK(why && strstr(why, "too costly"));
	CHECK(cp_mono_ms() - t0 < 1000); /* refused before 2^31 iterations ran */
	/* Affordable parameters reach the decryption (and fail it: junk data). */
	CHECK(crypto_key_from_pem(fine, strlen(fine), "pw", &k, &why) == CP_ERR_INVALID);
	CHECK(why && strcmp(why, "wrong passphrase") == 0);
	/* Without a passphrase nothing is derived, so the usual reason. */
	CHECK(crypto_key_from_pem(huge, strlen(huge), NULL, &k, &why) == CP_ERR_INVALID);
	CHECK(why && strstr(why, "needs a passphrase"));
	/* A real encrypted key (OpenSSL's default 2048 iterations) still loads. */
	enc = pkey_pem(keys[0]->pkey, 1, EVP_aes_128_cbc(), "s3cret");
	CHECK(enc && crypto_key_from_pem(enc, strlen(enc), "s3cret", &k, &why) == CP_OK);
	crypto_key_free(k);
out:
	free(huge);
	free(fine);
	free(enc);
}

static uint8_t *b64u_dec(const char *s, size_t *n)
{
	uint8_t *out = NULL;

	if (cp_b64url_decode(s, &out, n) != CP_OK)
		return NULL;
	return out;
}

/* Verify a JWS we produced with OpenSSL directly (r||s re-wrapped as DER). */
static bool jws_verify(const struct crypto_key *k, const char *jws, const char *alg)
{
	json_t *j = json_loads(jws, 0, NULL), *hdr = NULL;
	const char *prot = json_string_value(json_object_get(j, "protected"));
	const char *pay = json_string_value(json_object_get(j, "payload"));
	const char *sigs = json_string_value(json_object_get(j, "signature"));
	uint8_t *sig = NULL, *hdrraw = NULL, *der = NULL;
	size_t siglen = 0, hdrlen = 0;
	char *input = NULL;
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	ECDSA_SIG *es = NULL;
	bool ok = false;
	int derlen = 0;

	if (!prot || !pay || !sigs || !md)
		goto out;
	hdrraw = b64u_dec(prot, &hdrlen);
	hdr = hdrraw ? json_loadb((const char *)hdrraw, hdrlen, 0, NULL) : NULL;
	if (!hdr || strcmp(json_string_value(json_object_get(hdr, "alg")), alg) != 0)
		goto out;
	sig = b64u_dec(sigs, &siglen);
	input = cp_aprintf("%s.%s", prot, pay);
	if (!sig || !input)
		goto out;
	if (k->ec_size) {
		if (siglen != 2 * (size_t)k->ec_size)
			goto out;
		es = ECDSA_SIG_new();
		ECDSA_SIG_set0(es, BN_bin2bn(sig, k->ec_size, NULL),
			       BN_bin2bn(sig + k->ec_size, k->ec_size, NULL));
		derlen = i2d_ECDSA_SIG(es, &der);
		if (derlen <= 0)
			goto out;
	}
	ok = EVP_DigestVerifyInit(md, NULL, k->ec_size == 48 ? EVP_sha384() : EVP_sha256(), NULL,
				  k->pkey) == 1 &&
	     EVP_DigestVerify(md, k->ec_size ? der : sig, k->ec_size ? (size_t)derlen : siglen,
			      (const uint8_t *)input, strlen(input)) == 1;
out:
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	EVP_MD_CTX_free(md);
	free(input);
	free(sig);
	free(hdrraw);
	json_decref(hdr);
	json_decref(j);
	return ok;
}

static void test_jws(void)
{
	json_t *hdr = json_pack("{s:s, s:s}", "nonce", "n0nce", "url", "https://ca.test/new-order");
	const char *algs[] = { "ES256", "ES384", "RS256" };
	const int which[] = { 0, 1, 2 };
	char *jws = NULL, *dump = NULL;
	json_t *jwk = NULL, *j = NULL;

	for (int i = 0; i < 3; i++) {
		CHECK(crypto_jws(keys[which[i]], hdr, "{\"a\":1}", &jws) == CP_OK);
		CHECK(jws && jws_verify(keys[which[i]], jws, algs[i]));
		free(jws);
		jws = NULL;
	}
	CHECK(json_object_get(hdr, "alg") == NULL); /* caller's header untouched */

	/* POST-as-GET: empty payload stays empty. */
	CHECK(crypto_jws(keys[0], hdr, "", &jws) == CP_OK);
	j = jws ? json_loads(jws, 0, NULL) : NULL;
	CHECK(j && strcmp(json_string_value(json_object_get(j, "payload")), "") == 0);
	CHECK(jws && jws_verify(keys[0], jws, "ES256"));
	json_decref(j);
	free(jws);

	CHECK(crypto_jwk(keys[0], &jwk) == CP_OK);
	dump = jwk ? json_dumps(jwk, JSON_COMPACT) : NULL;
	CHECK(dump && starts_with(dump, "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\""));
	CHECK(dump && strstr(dump, "\",\"y\":\""));
	free(dump);
	json_decref(jwk);
	CHECK(crypto_jwk(keys[2], &jwk) == CP_OK);
	dump = jwk ? json_dumps(jwk, JSON_COMPACT) : NULL;
	CHECK(dump && starts_with(dump, "{\"e\":\"AQAB\",\"kty\":\"RSA\",\"n\":\""));
	free(dump);
	json_decref(jwk);
	json_decref(hdr);
}

static void test_thumbprint(void)
{
	/* RFC 7638 section 3.1 example key. */
	static const char n_b64[] =
		"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSo"
		"c_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGj"
		"QR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-b"
		"FTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
	uint8_t *nraw = NULL;
	size_t nlen = 0;
	BIGNUM *n = NULL, *e = NULL;
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY *pkey = NULL;
	struct crypto_key *k = NULL;
	char tp[44];
	char dns[44], *ref = NULL;
	uint8_t md[32];

	nraw = b64u_dec(n_b64, &nlen);
	n = nraw ? BN_bin2bn(nraw, (int)nlen, NULL) : NULL;
	e = BN_new();
	if (!n || !e || !bld || !ctx || !BN_set_word(e, 65537) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
	    !(params = OSSL_PARAM_BLD_to_param(bld)) || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1) {
		CHECK(!"could not build the RFC 7638 key");
		goto out;
	}
	CHECK(crypto_key_wrap(pkey, &k) == CP_OK);
	CHECK(k && crypto_jwk_thumbprint(k, tp) == CP_OK &&
	      strcmp(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs") == 0);

	/* DNS-01 value: base64url(SHA-256(key authorization)). */
	crypto_dns01_value("tok.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", dns);
	SHA256((const uint8_t *)"tok.NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs", 47, md);
	ref = cp_b64url(md, 32);
	CHECK(ref && strcmp(ref, dns) == 0 && strlen(dns) == 43);
out:
	free(ref);
	crypto_key_free(k);
	EVP_PKEY_free(pkey);
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
	free(nraw);
}

static void test_hmac_webhooks(void)
{
	static const char body[] = "{\"test\": 2432232314}";
	static const uint8_t rfc4231_2[32] = {
		0x5b, 0xdc, 0xc1, 0x46, 0xbf, 0x60, 0x75, 0x4e, 0x6a, 0x04, 0x24,
		0x26, 0x08, 0x95, 0x75, 0xc7, 0x5a, 0x00, 0x3f, 0x08, 0x9d, 0x27,
		0x39, 0x83, 0x9d, 0xec, 0x58, 0xb9, 0x64, 0xec, 0x38, 0x43,
	};
	uint8_t mac[32], *raw = NULL;
	size_t rawlen = 0;
	char *sig = NULL, *secret = NULL;

	crypto_hmac_sha256((const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28, mac);
	CHECK(memcmp(mac, rfc4231_2, 32) == 0);
	CHECK(crypto_equal(mac, rfc4231_2, 32));
	mac[31] ^= 1;
	CHECK(!crypto_equal(mac, rfc4231_2, 32));

	CHECK(crypto_webhook_sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
				  "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body, strlen(body),
				  &sig) == CP_OK);
	CHECK(sig && strcmp(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=") == 0);
	free(sig);
	sig = NULL;
	CHECK(crypto_webhook_sign("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "m", 1, "", 0, &sig) ==
	      CP_ERR_INVALID);
	CHECK(crypto_webhook_sign("whsec_!!!!", "m", 1, "", 0, &sig) == CP_ERR_INVALID);

	CHECK(crypto_webhook_secret_new(&secret) == CP_OK);
	CHECK(secret && strncmp(secret, "whsec_", 6) == 0);
	CHECK(secret && cp_b64_decode(secret + 6, &raw, &rawlen) == CP_OK && rawlen == 32);
	CHECK(secret && crypto_webhook_sign(secret, "m", 1, "", 0, &sig) == CP_OK);
	free(sig);
	free(raw);
	crypto_wipe_free(secret);
}

static int mode_of(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 ? (int)(st.st_mode & 0777) : -1;
}

static int count_lines(const char *path)
{
	FILE *f = fopen(path, "r");
	int c, n = 0;

	if (!f)
		return -1;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

struct thread_arg {
	struct crypto_keyring *r;
	int errors;
};

static void *seal_loop(void *p)
{
	struct thread_arg *a = p;

	for (int i = 0; i < 200; i++) {
		char *s = NULL, *pt = NULL;
		size_t n = 0;

		if (crypto_seal(a->r, "t:1", "abc", 3, &s) != CP_OK ||
		    crypto_open(a->r, "t:1", s, &pt, &n) != CP_OK || n != 3 ||
		    strcmp(pt, "abc") != 0)
			a->errors++;
		free(s);
		crypto_wipe_free(pt);
	}
	return NULL;
}

static void test_keyring(void)
{
	char dir[] = "/tmp/test_crypto.XXXXXX";
	char *path = NULL, *lock = NULL, *s1 = NULL, *s2 = NULL, *s3 = NULL, *pt = NULL;
	char id1[33], id2[33], cur[33];
	struct crypto_keyring *r = NULL, *r2 = NULL;
	size_t n = 0;

	if (!mkdtemp(dir)) {
		CHECK(!"mkdtemp");
		return;
	}
	path = cp_aprintf("%s/master.keys", dir);
	lock = cp_aprintf("%s/master.keys.lock", dir);

	CHECK(crypto_keyring_load(dir, NULL, &r) == CP_OK);
	CHECK(mode_of(path) == 0600);
	CHECK(count_lines(path) == 1);
	if (!r)
		goto out;

	CHECK(crypto_seal(r, "certificate_keys:1", "top secret", 10, &s1) == CP_OK);
	CHECK(s1 && strncmp(s1, "cpk1:", 5) == 0 && !strstr(s1, "top secret"));
	CHECK(crypto_open(r, "certificate_keys:1", s1, &pt, &n) == CP_OK);
	CHECK(pt && n == 10 && strcmp(pt, "top secret") == 0);
	crypto_wipe_free_buf(pt, n);
	pt = NULL;
	CHECK(crypto_open(r, "certificate_keys:2", s1, &pt, &n) == CP_ERR_CRYPTO);
	CHECK(crypto_sealed_is_current(r, s1));

	/* Tamper with one base64 char of the ciphertext. */
	{
		char *t = cp_strdup(s1);
		size_t at = strlen(t) - 10;

		t[at] = t[at] == 'A' ? 'B' : 'A';
		CHECK(crypto_open(r, "certificate_keys:1", t, &pt, &n) == CP_ERR_CRYPTO);
		memcpy(t + 5, "zzzzzzzz", 8); /* unknown key id */
		CHECK(crypto_open(r, "certificate_keys:1", t, &pt, &n) == CP_ERR_CRYPTO);
		CHECK(crypto_open(r, "certificate_keys:1", "plaintext", &pt, &n) == CP_ERR_INVALID);
		CHECK(crypto_open(r, "x", "cpk1:abc:!!", &pt, &n) == CP_ERR_CRYPTO);
		free(t);
	}
	/* Empty plaintext round-trips too. */
	{
		char *e = NULL;

		CHECK(crypto_seal(r, NULL, "", 0, &e) == CP_OK);
		CHECK(e && crypto_open(r, NULL, e, &pt, &n) == CP_OK && n == 0 && pt &&
		      pt[0] == '\0');
		free(pt);
		pt = NULL;
		free(e);
	}

	/* Rotate: old text opens, new seals use the new id. */
	CHECK(crypto_sealed_key_id(s1, id1) == CP_OK);
	CHECK(crypto_keyring_rotate(r, dir) == CP_OK);
	CHECK(mode_of(path) == 0600);
	CHECK(count_lines(path) == 2);
	CHECK(!crypto_sealed_is_current(r, s1));
	CHECK(crypto_open(r, "certificate_keys:1", s1, &pt, &n) == CP_OK && n == 10);
	crypto_wipe_free(pt);
	pt = NULL;
	CHECK(crypto_seal(r, "certificate_keys:1", "top secret", 10, &s2) == CP_OK);
	CHECK(s2 && crypto_sealed_key_id(s2, id2) == CP_OK && strcmp(id1, id2) != 0);
	crypto_keyring_current_id(r, cur);
	CHECK(strcmp(cur, id2) == 0);
	CHECK(crypto_sealed_is_current(r, s2));

	/* A second process loading the file sees the same ring. */
	CHECK(crypto_keyring_load(dir, NULL, &r2) == CP_OK);
	CHECK(r2 && crypto_open(r2, "certificate_keys:1", s1, &pt, &n) == CP_OK);
	crypto_wipe_free(pt);
	pt = NULL;

	/* Concurrent seal/open while rotating. */
	{
		struct thread_arg args[4];
		pthread_t th[4];

		for (int i = 0; i < 4; i++) {
			args[i] = (struct thread_arg){ .r = r2, .errors = 0 };
			pthread_create(&th[i], NULL, seal_loop, &args[i]);
		}
		CHECK(crypto_keyring_rotate(r2, dir) == CP_OK);
		for (int i = 0; i < 4; i++) {
			pthread_join(th[i], NULL);
			CHECK(args[i].errors == 0);
		}
	}
	/* r is now behind the file: pruning from it must refuse. */
	CHECK(crypto_keyring_prune(r, dir) == CP_ERR_CONFLICT);
	CHECK(count_lines(path) == 3);

	/* Re-seal with the newest ring, then prune. */
	CHECK(crypto_open(r2, "certificate_keys:1", s1, &pt, &n) == CP_OK);
	CHECK(pt && crypto_seal(r2, "certificate_keys:1", pt, n, &s3) == CP_OK);
	crypto_wipe_free(pt);
	pt = NULL;
	CHECK(crypto_keyring_prune(r2, dir) == CP_OK);
	CHECK(count_lines(path) == 1);
	CHECK(mode_of(path) == 0600);
	CHECK(crypto_open(r2, "certificate_keys:1", s1, &pt, &n) == CP_ERR_CRYPTO);
	CHECK(crypto_open(r2, "certificate_keys:1", s3, &pt, &n) == CP_OK && n == 10);
	crypto_wipe_free(pt);
	pt = NULL;
	crypto_keyring_free(r2);
	r2 = NULL;

	/* Group-readable file is refused. */
	CHECK(chmod(path, 0640) == 0);
	CHECK(crypto_keyring_load(dir, NULL, &r2) == CP_ERR_IO);
	CHECK(r2 == NULL);
	CHECK(chmod(path, 0600) == 0);

	/* Malformed file. */
	{
		FILE *f = fopen(path, "w");

		if (f) {
			fputs("abc not-base64!\n", f);
			fclose(f);
		}
		CHECK(chmod(path, 0600) == 0);
		CHECK(crypto_keyring_load(dir, NULL, &r2) == CP_ERR_INVALID);
	}

	/* Configured master key: id derived from the key; no rotation. */
	{
		uint8_t raw[32];
		char hex[65], *b64;

		memset(raw, 7, sizeof(raw));
		b64 = cp_b64(raw, sizeof(raw));
		cp_sha256_hex(raw, sizeof(raw), hex);
		CHECK(crypto_keyring_load(NULL, b64, &r2) == CP_OK);
		if (r2) {
			crypto_keyring_current_id(r2, cur);
			CHECK(strlen(cur) == 8 && strncmp(cur, hex, 8) == 0);
			CHECK(crypto_keyring_rotate(r2, dir) == CP_ERR_INVALID);
		}
		crypto_keyring_free(r2);
		r2 = NULL;
		CHECK(crypto_keyring_load(NULL, "c2hvcnQ=", &r2) == CP_ERR_INVALID);
		free(b64);
	}
out:
	crypto_keyring_free(r);
	crypto_keyring_free(r2);
	free(s1);
	free(s2);
	free(s3);
	if (path)
		unlink(path);
	if (lock)
		unlink(lock);
	rmdir(dir);
	free(path);
	free(lock);
}

/* A one-shot TLS server on a loopback port for test_tls_probe: serves
 * cert/key to one client and records the SNI it asked for. */
struct probe_srv {
	int fd;
	SSL_CTX *ctx;
	char sni[256];
};

static void *probe_serve(void *arg)
{
	struct probe_srv *ps = arg;
	int c = accept(ps->fd, NULL, NULL);
	SSL *ssl;

	if (c < 0)
		return NULL;
	ssl = SSL_new(ps->ctx);
	if (ssl && SSL_set_fd(ssl, c) == 1 && SSL_accept(ssl) == 1) {
		const char *n = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
		snprintf(ps->sni, sizeof(ps->sni), "%s", n ? n : "");
	}
	SSL_free(ssl);
	close(c);
	return NULL;
}

/* crypto_tls_probe: the served leaf's SHA-256 with SNI, and its errors. */
static void test_tls_probe(void)
{
	json_t *h = hosts();
	struct crypto_cert_info ci;
	struct probe_srv ps = { .fd = -1 };
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t sl = sizeof(sa);
	const char *why = NULL;
	char *cert = NULL, *key = NULL, addr[64], fp[65], msg[256];
	pthread_t th;
	BIO *b = NULL;
	X509 *x = NULL;
	EVP_PKEY *pk = NULL;

	/* As certplane serve does: a peer closing first must not kill us. */
	signal(SIGPIPE, SIG_IGN);
	CHECK(crypto_tls_probe("no-port", "a.test", 500, fp, msg, sizeof(msg)) == CP_ERR_INVALID);
	CHECK(crypto_tls_probe(":443", "a.test", 500, fp, msg, sizeof(msg)) == CP_ERR_INVALID);
	if (!keys[0] || crypto_self_signed(keys[0], h, 30, &cert) != CP_OK ||
	    crypto_key_to_pem(keys[0], &key) != CP_OK) {
		CHECK(!"probe material");
		goto out;
	}
	CHECK(crypto_cert_info_parse(cert, strlen(cert), &ci, &why) == CP_OK);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ps.fd = socket(AF_INET, SOCK_STREAM, 0);
	CHECK(ps.fd >= 0 && bind(ps.fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	      getsockname(ps.fd, (struct sockaddr *)&sa, &sl) == 0);
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", ntohs(sa.sin_port));
	/* Bound, not listening: refused, an upstream failure with a reason. */
	CHECK(crypto_tls_probe(addr, "a.test", 500, fp, msg, sizeof(msg)) == CP_ERR_UPSTREAM);
	CHECK(msg[0] != '\0' && fp[0] == '\0');
	CHECK(listen(ps.fd, 4) == 0);
	ps.ctx = SSL_CTX_new(TLS_server_method());
	b = BIO_new_mem_buf(cert, -1);
	x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	b = BIO_new_mem_buf(key, -1);
	pk = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	CHECK(ps.ctx && x && pk && SSL_CTX_use_certificate(ps.ctx, x) == 1 &&
	      SSL_CTX_use_PrivateKey(ps.ctx, pk) == 1);
	CHECK(pthread_create(&th, NULL, probe_serve, &ps) == 0);
	CHECK(crypto_tls_probe(addr, "www.a.example.com", 2000, fp, msg, sizeof(msg)) == CP_OK);
	pthread_join(th, NULL);
	CHECK(strcmp(fp, ci.fingerprint_sha256) == 0);
	CHECK(strcmp(ps.sni, "www.a.example.com") == 0);
	crypto_cert_info_clear(&ci);
out:
	if (ps.fd >= 0)
		close(ps.fd);
	X509_free(x);
	EVP_PKEY_free(pk);
	SSL_CTX_free(ps.ctx);
	free(cert);
	crypto_wipe_free(key);
	json_decref(h);
}

int main(void)
{
	test_types();
	test_keys();
	test_self_signed();
	test_expired();
	test_pem_import();
	test_chain();
	test_upload_limits();
	test_kdf_cost();
	test_jws();
	test_thumbprint();
	test_hmac_webhooks();
	test_keyring();
	test_tls_probe();
	for (int i = 0; i < 5; i++)
		crypto_key_free(keys[i]);
	return check_exit("test_crypto");
}
