/*
 * crypto.h - every cryptographic operation certplane performs, behind one
 * small interface so that no other module includes OpenSSL: private keys
 * (generate, PEM in/out), certificate facts and chain checks, self-signed
 * certificates and CSRs, JWS/JWK for ACME (RFC 7515/7638/8555), HMAC and
 * Standard Webhooks signatures, and AES-256-GCM sealing of secrets at rest
 * under a rotatable master key ring.
 *
 * Everything here is thread-safe: there is no global mutable state beyond
 * what OpenSSL 3 manages itself. A struct crypto_key may be used by many
 * threads at once for read-only operations (sign, export, compare). A
 * keyring serialises rotate/prune against seal/open internally.
 *
 * Key material is never logged. Strings that hold key material (PEM
 * private keys, opened secrets) must be released with crypto_wipe_free().
 *
 * PEM inputs larger than CRYPTO_PEM_MAX bytes are refused with
 * CP_ERR_TOO_LARGE before any parsing, so hostile uploads cost nothing.
 */
#ifndef CP_CRYPTO_H
#define CP_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/common.h"

/* Largest PEM input (key, certificate, chain) any function here accepts. */
#define CRYPTO_PEM_MAX (256 * 1024)
/* Largest plaintext crypto_seal() accepts. */
#define CRYPTO_SEAL_MAX (16 * 1024 * 1024)

/* ---- key types ---- */

enum crypto_key_type {
	CRYPTO_KEY_ECDSA_P256 = 0,
	CRYPTO_KEY_ECDSA_P384,
	CRYPTO_KEY_RSA_2048,
	CRYPTO_KEY_RSA_3072,
	CRYPTO_KEY_RSA_4096
};

/*
 * Parse "ecdsa-p256" | "ecdsa-p384" | "rsa-2048" | "rsa-3072" | "rsa-4096"
 * (exact, case-sensitive). CP_OK and *out set, or CP_ERR_INVALID.
 */
cp_rc crypto_key_type_parse(const char *s, enum crypto_key_type *out) CP_WUR;
/* Static name of t (the strings above); "unknown" for out-of-range values. */
const char *crypto_key_type_name(enum crypto_key_type t);

/* ---- private keys ---- */

struct crypto_key; /* opaque, wraps EVP_PKEY */

/*
 * Generate a fresh key of type t. *out is a new key the caller frees with
 * crypto_key_free(). CP_ERR_INVALID for a bad t, CP_ERR_CRYPTO otherwise.
 */
cp_rc crypto_key_generate(enum crypto_key_type t, struct crypto_key **out) CP_WUR;
/*
 * Parse a PEM private key (PKCS#8, traditional RSA/EC, or encrypted PKCS#8 /
 * traditional when passphrase != NULL). pem need not be NUL-terminated.
 * On success *out is a new key (caller frees). On failure returns
 * CP_ERR_TOO_LARGE (len > CRYPTO_PEM_MAX) or CP_ERR_INVALID with *why set to
 * a static reason: "not a PEM private key", "encrypted private key needs a
 * passphrase", "wrong passphrase", "unsupported key type" (anything but EC
 * P-256/P-384 or RSA 2048..8192 bits), or, before any decryption, that an
 * encrypted key's derivation costs too much (over 1000000 PBKDF2/PBE
 * iterations, scrypt N*r*p over 2^22). why may be NULL.
 */
cp_rc crypto_key_from_pem(const char *pem, size_t len, const char *passphrase,
			  struct crypto_key **out, const char **why) CP_WUR;
/*
 * Unencrypted PKCS#8 PEM of k. *out is a new string; free it with
 * crypto_wipe_free(). CP_ERR_CRYPTO / CP_ERR_NOMEM on failure.
 */
cp_rc crypto_key_to_pem(const struct crypto_key *k, char **out) CP_WUR;
/*
 * Static-lifetime (as long as k) type name of k: "ecdsa-p256",
 * "ecdsa-p384", or "rsa-<bits>" (e.g. "rsa-2048", "rsa-8192").
 */
const char *crypto_key_kind(const struct crypto_key *k);
/* Release k; NULL-safe. */
void crypto_key_free(struct crypto_key *k);
/* Zero the NUL-terminated string s, then free it; NULL-safe. */
void crypto_wipe_free(char *s);
/* Zero n bytes at p, then free p; NULL-safe. For binary secrets. */
void crypto_wipe_free_buf(void *p, size_t n);
/* Zero n bytes at p in a way the compiler cannot drop (a stack buffer that
 * held a secret); NULL-safe. */
void crypto_wipe(void *p, size_t n);
/* Make jansson zero every buffer it frees (parsed request bodies holding a
 * private key or a passphrase, the lexer's copies of them, API keys in
 * response objects). Call once, before the first JSON allocation. */
void crypto_json_wipe_on_free(void);

/* ---- certificates ---- */

/* Facts read from a certificate itself. All strings owned by the struct. */
struct crypto_cert_info {
	char *subject_cn;	       /* may be NULL */
	json_t *sans;		       /* JSON array of strings: DNS names (and IPs as text) */
	char *issuer;		       /* RFC 2253-ish one-line issuer DN */
	char *serial;		       /* lowercase hex, no leading zeros beyond one byte */
	int64_t not_before, not_after; /* unix seconds */
	char fingerprint_sha256[65];   /* lowercase hex of SHA-256 over DER */
	bool is_ca;		       /* basicConstraints CA:TRUE */
	char key_kind[16];	       /* crypto_key_kind of the public key, or "unsupported" */
};

/*
 * Parse the first PEM block of pem, which must be a CERTIFICATE (later
 * blocks are ignored). On success fills *out (release with
 * crypto_cert_info_clear()). CP_ERR_TOO_LARGE, or CP_ERR_INVALID + *why
 * (static) on failure, in which case *out is left cleared.
 */
cp_rc crypto_cert_info_parse(const char *pem, size_t len, struct crypto_cert_info *out,
			     const char **why) CP_WUR;
/* Free what ci owns and zero it; NULL-safe and idempotent. */
void crypto_cert_info_clear(struct crypto_cert_info *ci);
/*
 * Validate a PEM chain: one or more blocks, every block must be
 * "CERTIFICATE" and parse as X.509. *count = number of certificates (may be
 * NULL). Empty/whitespace-only input, or any other block type, is
 * CP_ERR_INVALID with *why (static). Text outside PEM blocks is ignored.
 */
cp_rc crypto_chain_check(const char *pem, size_t len, int *count, const char **why) CP_WUR;
/*
 * The DER encoding of the first PEM block of pem, which must be a
 * CERTIFICATE (an ACME revokeCert names the certificate so). *der is new
 * (caller frees), *der_len its length. CP_ERR_INVALID if there is no
 * certificate to read.
 */
cp_rc crypto_cert_der(const char *pem, size_t len, uint8_t **der, size_t *der_len) CP_WUR;
/*
 * Split a PEM bundle (leaf first) into the leaf PEM and the rest (chain PEM,
 * "" when there is none); both are new re-encoded strings the caller frees.
 * Same validation as crypto_chain_check(); on failure nothing is allocated.
 */
cp_rc crypto_chain_split(const char *pem, size_t len, char **leaf, char **chain,
			 const char **why) CP_WUR;
/* Upload limits (POST /v1/certificates, source "upload"). */
#define CRYPTO_UPLOAD_SANS_MAX 100 /* subjectAltName entries of an uploaded certificate */
#define CRYPTO_UPLOAD_CHAIN_MAX 10 /* certificates besides the leaf */
/*
 * The upload rules for the certificate in the first PEM block of pem,
 * uploaded as a server certificate (server) or as a CA certificate: at
 * most CRYPTO_UPLOAD_SANS_MAX subjectAltName entries, not signed with MD5
 * or SHA-1 (nor MD2/MD4), and, when server, not a CA (basicConstraints
 * CA:TRUE). CP_OK, CP_ERR_TOO_LARGE, or CP_ERR_INVALID with *why (static).
 */
cp_rc crypto_cert_upload_check(const char *pem, size_t len, bool server, const char **why) CP_WUR;
/*
 * The upload rules for a chain (the certificates after the leaf; "" or
 * whitespace is an empty chain): at most CRYPTO_UPLOAD_CHAIN_MAX
 * certificates, none signed with MD5 or SHA-1 (nor MD2/MD4). Same
 * validation as crypto_chain_check otherwise.
 */
cp_rc crypto_chain_upload_check(const char *pem, size_t len, const char **why) CP_WUR;
/*
 * True if k's public part equals the public key of the first certificate in
 * cert_pem. False on any parse failure.
 */
bool crypto_key_matches_cert(const struct crypto_key *k, const char *cert_pem, size_t len);
/*
 * Self-signed X.509 v3 server certificate for hostnames (non-empty JSON
 * array of strings, at most 100): CN = first hostname (omitted if longer
 * than 64 chars, then SAN is critical), SAN = all hostnames (DNS; IP
 * literals become IP SANs), validity now-60s .. now+validity_days (1..3650),
 * random positive 16-byte serial, SHA-256 signature, basicConstraints
 * CA:FALSE, keyUsage digitalSignature (+keyEncipherment for RSA), EKU
 * serverAuth. *cert_pem is a new string (caller frees).
 * CP_ERR_INVALID for bad arguments, CP_ERR_CRYPTO / CP_ERR_NOMEM otherwise.
 */
cp_rc crypto_self_signed(const struct crypto_key *k, const json_t *hostnames, int validity_days,
			 char **cert_pem) CP_WUR;
/*
 * Same, with an explicit validity window in unix seconds
 * (0 <= not_before < not_after). Used by tests for expired/expiring certs.
 */
cp_rc crypto_self_signed_window(const struct crypto_key *k, const json_t *hostnames,
				int64_t not_before, int64_t not_after, char **cert_pem) CP_WUR;
/*
 * PKCS#10 CSR (DER) with CN = first hostname (same 64-char rule) and a SAN
 * extension request for all hostnames, signed with SHA-256. *der is a new
 * buffer (caller frees with free()), *len its size.
 */
cp_rc crypto_csr_der(const struct crypto_key *k, const json_t *hostnames, uint8_t **der,
		     size_t *len) CP_WUR;

/* ---- JWS for ACME (RFC 7515/8555) ---- */

/*
 * Public JWK of k as a JSON object with members in lexicographic order
 * (EC: crv,kty,x,y ; RSA: e,kty,n). *out is a new reference.
 */
cp_rc crypto_jwk(const struct crypto_key *k, json_t **out) CP_WUR;
/* RFC 7638 thumbprint: base64url SHA-256 of the canonical JWK; 43 chars + NUL. */
cp_rc crypto_jwk_thumbprint(const struct crypto_key *k, char out[44]) CP_WUR;
/*
 * JWS flattened JSON serialization {"protected","payload","signature"}.
 * protected_hdr is not modified: a copy gets "alg" (ES256 for P-256, ES384
 * for P-384, RS256 for RSA) set. payload may be "" (POST-as-GET). ECDSA
 * signatures are raw r||s (fixed width), not DER. *out is a new string
 * (caller frees).
 */
cp_rc crypto_jws(const struct crypto_key *k, json_t *protected_hdr, const char *payload,
		 char **out) CP_WUR;
/* ACME DNS-01 TXT value: base64url(SHA-256(key_authorization)); 43 chars + NUL. */
void crypto_dns01_value(const char *key_authorization, char out[44]);

/* ---- HMAC / Standard Webhooks ---- */

/*
 * HMAC-SHA256 of msg under key. Cannot fail short of memory exhaustion; in
 * that case mac is filled with random bytes so it never verifies.
 */
void crypto_hmac_sha256(const uint8_t *key, size_t keylen, const void *msg, size_t n,
			uint8_t mac[32]);
/*
 * Standard Webhooks signature "v1,<base64 HMAC-SHA256(key, id "." ts "." body)>"
 * where secret is "whsec_<base64>" and key is the decoded base64 part.
 * *sig is a new string (caller frees). CP_ERR_INVALID for a malformed secret.
 */
cp_rc crypto_webhook_sign(const char *secret, const char *msg_id, int64_t ts, const char *body,
			  size_t body_len, char **sig) CP_WUR;
/* New webhook secret "whsec_" + base64 of 32 random bytes; new string (wipe-free it). */
cp_rc crypto_webhook_secret_new(char **out) CP_WUR;
/* Constant-time comparison of n bytes; true if equal. */
bool crypto_equal(const void *a, const void *b, size_t n);

/* ---- secrets at rest: AES-256-GCM under a master key ring ---- */

struct crypto_keyring; /* opaque: one current key + older keys by id */

/*
 * Load the ring. If master_key_b64 (config; base64 of 32 bytes) is non-NULL
 * it is the only and current key (id = first 8 hex chars of SHA-256(key)).
 * Otherwise read data_dir/master.keys, creating it with one fresh random
 * key (mode 0600) if missing. File format: one line per key
 * "<id> <base64 key>", the LAST line is current; blank lines and lines
 * starting with '#' are ignored. A file readable/writable by group or
 * others, or not a regular file, is refused with CP_ERR_IO; a malformed one
 * with CP_ERR_INVALID. *out is new (crypto_keyring_free()).
 */
cp_rc crypto_keyring_load(const char *data_dir, const char *master_key_b64,
			  struct crypto_keyring **out) CP_WUR;
/* Release r, wiping its keys; NULL-safe. */
void crypto_keyring_free(struct crypto_keyring *r);
/*
 * Append a new random current key to data_dir/master.keys (atomic replace,
 * 0600); older keys stay for decryption. r is reloaded from the file.
 * CP_ERR_INVALID if r came from a configured master key (rotate it there).
 */
cp_rc crypto_keyring_rotate(struct crypto_keyring *r, const char *data_dir) CP_WUR;
/*
 * After every row was re-sealed: rewrite data_dir/master.keys with only the
 * current key and drop the others from r. CP_ERR_CONFLICT if the file's
 * current key is not r's (another process rotated; reload first).
 * CP_ERR_INVALID if r came from a configured master key.
 */
cp_rc crypto_keyring_prune(struct crypto_keyring *r, const char *data_dir) CP_WUR;
/*
 * Seal n bytes of pt with the current key; aad (the row's identity, e.g.
 * "certificate_keys:<id>"; NULL means "") is authenticated, not stored.
 * *out = "cpk1:<keyid>:<base64(12-byte nonce || ciphertext || 16-byte tag)>",
 * new string (caller frees). CP_ERR_TOO_LARGE above CRYPTO_SEAL_MAX.
 */
cp_rc crypto_seal(const struct crypto_keyring *r, const char *aad, const void *pt, size_t n,
		  char **out) CP_WUR;
/*
 * Open sealed text. CP_ERR_INVALID if it is not "cpk1:" text at all;
 * CP_ERR_CRYPTO if the key id is unknown, the encoding is broken, the tag
 * fails or aad differs. On success *pt is a new NUL-terminated buffer of *n
 * bytes (release with crypto_wipe_free_buf(*pt, *n) or crypto_wipe_free()).
 */
cp_rc crypto_open(const struct crypto_keyring *r, const char *aad, const char *sealed, char **pt,
		  size_t *n) CP_WUR;
/* True if sealed was made under r's current key (false: re-seal it). */
bool crypto_sealed_is_current(const struct crypto_keyring *r, const char *sealed);
/*
 * Copy the key id of sealed text into id (up to 32 chars + NUL).
 * CP_ERR_INVALID if sealed is not "cpk1:<id>:..." text.
 */
cp_rc crypto_sealed_key_id(const char *sealed, char id[33]) CP_WUR;
/* Copy r's current key id into id (up to 32 chars + NUL). */
void crypto_keyring_current_id(const struct crypto_keyring *r, char id[33]);

/*
 * RFC 9773 (ARI) certificate identifier of the first certificate in pem:
 * base64url(AuthorityKeyIdentifier keyIdentifier) "." base64url(serial DER
 * content octets). *out new string. CP_ERR_INVALID without an AKI.
 */
cp_rc crypto_cert_ari_id(const char *cert_pem, size_t len, char **out) CP_WUR;

/*
 * TLS served check (probe.c): connect to address ("host:port", an IPv6
 * host in brackets), hand-shake TLS with SNI servername and copy the
 * lowercase hex SHA-256 of the leaf certificate's DER the server presented
 * into fp. The certificate is not verified: only what is served is wanted.
 * timeout_ms bounds the connect and the handshake each. CP_ERR_INVALID for
 * a bad address, CP_ERR_UPSTREAM when nothing or no certificate was served
 * (why says what, no secrets).
 */
cp_rc crypto_tls_probe(const char *address, const char *servername, int timeout_ms, char fp[65],
		       char *why, size_t why_len) CP_WUR;

#endif
