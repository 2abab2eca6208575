/*
 * acme.h - certplane's ACME side: the RFC 8555 client that talks to a CA,
 * the challenge helpers (HTTP-01 key authorizations, DNS-01 records), the
 * RFC 9773 renewal-information (ARI) helpers, and the DNS checks made before
 * an order (CNAME chain to the edge hostname, TXT visibility) through a
 * configurable resolver.
 *
 * The client is deliberately a set of single steps that take URLs as inputs
 * (new order -> authorization -> challenge -> finalize -> download): the
 * durable order state machine above it persists every URL it reaches and can
 * resume at any step after a restart. The unit tests chain the steps in
 * one blocking call (tests/unit/acme_issue.h).
 *
 * Threads: a struct acme_client is used by one thread at a time; separate
 * clients may run on separate threads in parallel. The program's main must
 * call curl_global_init(CURL_GLOBAL_DEFAULT) once before any client is made
 * (libcurl's global init is not thread-safe). A struct acme_resolver is
 * immutable after creation (unless given a deadline) and may be shared by
 * all threads.
 *
 * Bounds: every CA request has a 10 s connect and 30 s total timeout and a
 * 1 MiB response cap; every DNS query 3 s per try, 2 tries.
 */
#ifndef CP_ACME_H
#define CP_ACME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "common/common.h"

struct crypto_key;

/* ==== DNS checks ==== */

struct acme_resolver; /* opaque: resolver configuration only */

/*
 * Make a resolver that queries hostport ("127.0.0.1:8053", "[::1]:53",
 * comma-separated list allowed) or, when hostport is NULL or "", the system
 * resolvers of /etc/resolv.conf. *out is new (acme_resolver_free()).
 * CP_ERR_INVALID for an unparsable hostport.
 */
cp_rc acme_resolver_new(const char *hostport, struct acme_resolver **out) CP_WUR;
/* Release res; NULL-safe. */
void acme_resolver_free(struct acme_resolver *res);
/*
 * Give res a hard overall deadline, deadline_ms on cp_mono_ms()'s clock (0 =
 * none): each query's timeout becomes min(its own, time left), and lookups
 * still running at the deadline fail as timeouts (CP_ERR_UPSTREAM). This
 * mutates res: set it only on a resolver one caller owns (one per check
 * run), never on one shared between threads.
 */
void acme_resolver_set_deadline(struct acme_resolver *res, int64_t deadline_ms);
/*
 * TXT values of name (each record's strings concatenated), as a new JSON
 * array of strings in *values; empty when the name has no TXT record (or
 * does not exist). CNAMEs are followed by the resolver (delegated DNS-01).
 * CP_ERR_UPSTREAM on timeout/SERVFAIL/refusal, CP_ERR_INVALID for a bad name.
 */
cp_rc acme_dns_txt(struct acme_resolver *res, const char *name, json_t **values) CP_WUR;
/*
 * Check that hostname can be validated with HTTP-01 through the edge:
 * *result is a new object
 *   {"hostname", "cname_chain": [targets followed, in order],
 *    "points_to_edge": bool, "wildcard": bool, "ready": bool, "detail": "..."}
 * Names are compared lowercased without trailing dots. CNAMEs are followed
 * hop by hop (one CNAME query per hop, at most 8 hops) until the edge
 * hostname or a name without CNAME; a "*." name is never ready. detail is a
 * sentence naming the hostname and what it points at.
 * CP_OK: the lookups answered (ready says the verdict). CP_ERR_UPSTREAM: a
 * lookup failed (timeout, SERVFAIL, loop, > 8 hops) - *result is still set,
 * ready=false, detail says what failed; callers treat it as transient.
 * CP_ERR_INVALID for a bad name (nothing set).
 */
cp_rc acme_check_hostname(struct acme_resolver *res, const char *hostname,
			  const char *edge_hostname, json_t **result) CP_WUR;

/*
 * The relevant CAA RRset of name (RFC 8659 section 3): CAA asked for the
 * name (a leading "*." dropped), then for each parent in turn, up to the
 * first one with a non-empty RRset; the top-level label is not asked.
 * CNAMEs are followed by the resolver, as the RFC requires. *records is a
 * new JSON array of {"flags": int, "tag": str, "value": str} (empty: no
 * CAA anywhere up the tree) and at (at_len bytes) the name it was found at
 * ("" when none). CP_ERR_UPSTREAM when a lookup failed (a CA must not
 * issue then: callers retry), CP_ERR_INVALID for a bad name.
 */
cp_rc acme_dns_caa(struct acme_resolver *res, const char *name, json_t **records, char *at,
		   size_t at_len) CP_WUR;

struct sockaddr_storage;
/*
 * The addresses of host (A and AAAA; CNAMEs followed by the resolver;
 * /etc/hosts consulted first as nsswitch says), bounded by res's deadline
 * like every lookup here. Numeric spellings are not this function's job:
 * callers that must understand "2130706433" parse them first. Copies up to
 * max addresses (sockaddr_in / sockaddr_in6, port 0) into out, *n their
 * count. CP_OK with *n >= 1; CP_ERR_NOT_FOUND when the name has no
 * address (NXDOMAIN, no data); CP_ERR_TOO_LARGE when it has more than max
 * (nothing usable: a caller checking every address must refuse);
 * CP_ERR_UPSTREAM when the resolver failed or the deadline passed (no
 * lookup is left running: the channel is destroyed before returning);
 * CP_ERR_INVALID for a bad name.
 */
cp_rc acme_dns_addresses(struct acme_resolver *res, const char *host, struct sockaddr_storage *out,
			 size_t max, size_t *n) CP_WUR;

/* ==== results of CA exchanges ==== */

/* Why a CA exchange did not succeed. */
enum acme_fail {
	ACME_FAIL_NONE = 0,	 /* success */
	ACME_FAIL_UNREACHABLE,	 /* connect/TLS/timeout/transport error: ca_unreachable */
	ACME_FAIL_PROBLEM,	 /* the CA answered with an RFC 7807 problem document */
	ACME_FAIL_PROTOCOL,	 /* an answer we cannot use: bad JSON, missing field, too large */
	ACME_FAIL_LOCAL,	 /* out of memory, signing failure, bad argument */
	ACME_FAIL_AUTHZ_INVALID, /* the CA marked an authorization invalid: type/detail its error */
	ACME_FAIL_ORDER_INVALID, /* the CA marked the order invalid: type/detail its error */
};

/* What kind of transport failure an ACME_FAIL_UNREACHABLE was (from libcurl). */
enum acme_net {
	ACME_NET_NONE = 0, /* not a transport failure */
	ACME_NET_REFUSED,  /* connection refused / could not connect */
	ACME_NET_RESET,	   /* connection reset, dropped, or closed without an answer */
	ACME_NET_TIMEOUT,  /* connect or total timeout */
	ACME_NET_TLS,	   /* TLS handshake or certificate verification */
	ACME_NET_RESOLVE,  /* the CA's host name did not resolve */
	ACME_NET_OTHER,	   /* any other transport error */
};

#define ACME_PROBLEM_NS "urn:ietf:params:acme:error:"

/*
 * What the CA said in the last exchange of a call. Every client call takes an
 * optional (NULL ok) struct acme_result * and fills it on success too: status
 * and retry_after matter for polling. No heap memory: nothing to free.
 */
struct acme_result {
	enum acme_fail fail; /* ACME_FAIL_NONE on success */
	long status;	     /* HTTP status of the last response, 0 if none */
	int64_t retry_after; /* seconds to wait per Retry-After, -1 if absent */
	char type[128];	     /* problem type (full URN), "" if none */
	char detail[512];    /* problem detail (+ first subproblem), or transport error text */
	enum acme_net net;   /* which transport failure, for ACME_FAIL_UNREACHABLE */
};

/* ==== classification of CA outcomes (errors.c) ==== */

/* What an outcome means for the order that met it. */
enum acme_outcome {
	ACME_OUTCOME_OK = 0,	 /* success */
	ACME_OUTCOME_TRANSIENT,	 /* not the CA's final word: keep the order's state, try later */
	ACME_OUTCOME_RESET,	 /* the CA forgot the account or the order: register/place again */
	ACME_OUTCOME_DEFINITIVE, /* the CA's final word: the order fails with the reason */
};

/* The verdict of the one classification table. Static strings. */
struct acme_verdict {
	enum acme_outcome outcome;
	const char *reason; /* the order's failure reason; for TRANSIENT the one shown while it
			       backs off and the final one if its deadline passes; NULL for OK */
	bool retry_now;	    /* the protocol says retry at once (badNonce, with the error's nonce) */
	const char *row;    /* name of the table row that matched ("badNonce", "HTTP 429") */
};

/*
 * Classify r (NULL or a success: outcome OK) with the table in errors.c,
 * first matching row wins. Every CA request and every invalid order or
 * authorization goes through this one function; nothing else decides
 * whether a CA outcome is transient.
 */
struct acme_verdict acme_classify(const struct acme_result *r);
/* Rows of the table, for tests that prove each row is exercised. */
size_t acme_classify_rows(void);
/* Name of row i (< acme_classify_rows()), NULL beyond. */
const char *acme_classify_row_name(size_t i);
/*
 * Fill r (reset first) from an authorization the CA did not make valid:
 * fail=ACME_FAIL_AUTHZ_INVALID, type/detail from the error of its
 * challenge of challenge_type (first subproblem appended), or a detail
 * naming the identifier and its status when it carries none.
 */
void acme_authz_problem(const json_t *authz, const char *challenge_type, struct acme_result *r);
/*
 * Fill r (reset first) from an order the CA marked invalid:
 * fail=ACME_FAIL_ORDER_INVALID, type/detail from its "error" if any.
 */
void acme_order_problem(const json_t *order, struct acme_result *r);

/* acme_classify(r).reason: the product's failure reason, NULL on success. */
const char *acme_result_reason(const struct acme_result *r);
/* True if r carries a problem of the given short type ("badNonce", "rateLimited"):
 * an answered problem, or the error of an invalid order or authorization. */
bool acme_result_is(const struct acme_result *r, const char *short_type);
/*
 * Parse a Retry-After value: delta-seconds (digits only) or an HTTP-date
 * (IMF-fixdate, RFC 850 or asctime form, exactly as RFC 9110 spells them; a
 * date that does not exist, such as 31 February, is refused), relative to
 * now (unix seconds), optional whitespace around it. *secs >= 0 (dates in
 * the past give 0) and at most about 100 years (larger values are bounded to
 * that). CP_ERR_INVALID if value is neither (or NULL); *secs is then unset.
 */
cp_rc acme_parse_retry_after(const char *value, int64_t now, int64_t *secs) CP_WUR;
/*
 * Fill r from a problem document body (len bytes, need not be
 * NUL-terminated) received with HTTP status: fail=ACME_FAIL_PROBLEM, type,
 * detail (the first subproblem's identifier and detail appended). A body that
 * is not a JSON object still gives a problem with type "" and a detail
 * naming the status. r->retry_after is left as is.
 */
void acme_parse_problem(const char *body, size_t len, long status, struct acme_result *r);

/* ==== checks of what a CA answers (pure; fuzzed in tests/fuzz/fuzz_acme.c) ==== */

/*
 * Shape checks of RFC 8555 objects received from a CA, made by the client
 * before anything is stored or acted on, so a broken or hostile CA gets a
 * ca_protocol_error instead of NULL strings and unbounded arrays further
 * on. Every URL must be an http(s) URL of at most 2048 printable ASCII
 * characters. CP_OK, or CP_ERR_INVALID with *why (static) naming the field.
 *
 * directory: newNonce, newAccount, newOrder URLs; renewalInfo a URL if given;
 *   meta.profiles, if given, an object of at most 64 names of 1..64 chars.
 * order: status one of pending|ready|processing|valid|invalid,
 *   authorizations an array of 1..100 URLs, finalize a URL, certificate a
 *   URL if given, expires a string if given.
 * authorization: identifier {type "dns", value a hostname}, status one of
 *   pending|valid|invalid|deactivated|expired|revoked, expires a string if
 *   given, wildcard a boolean if given, challenges an array of at most 16
 *   objects each with a string type, a URL and, if given, a string status
 *   and a base64url token of at most 512 characters.
 */
cp_rc acme_directory_check(const json_t *dir, const char **why) CP_WUR;
cp_rc acme_order_check(const json_t *order, const char **why) CP_WUR;
cp_rc acme_authz_check(const json_t *authz, const char **why) CP_WUR;
/*
 * True if body (len bytes, need not be NUL-terminated) is valid UTF-8 made
 * only of CERTIFICATE PEM blocks separated by whitespace, every one parsing
 * as X.509 (a CA that slips a key, a CRL or HTML into the chain is
 * refused). *why (static) says what is wrong.
 */
bool acme_chain_pem_valid(const char *body, size_t len, const char **why);

/* ==== ACME client ==== */

/* What a client is made from. Strings are copied; the key is borrowed. */
struct acme_config {
	const char *directory_url;	/* e.g. https://acme-v02.api.letsencrypt.org/directory */
	const char *ca_bundle;		/* CA file for the CA's HTTPS; NULL = system trust */
	struct crypto_key *account_key; /* borrowed: must outlive the client */
	const char *account_url;	/* kid, or NULL until registered */
	/* External Account Binding (RFC 8555 7.3.4) for newAccount, both or
	 * neither: the CA's key id and its base64url HMAC key (secret: copied,
	 * wiped on free, never logged). */
	const char *eab_kid;
	const char *eab_hmac_key;
};

struct acme_client; /* opaque; one thread at a time */

/*
 * Make a client (no network traffic yet). *out is new (acme_client_free()).
 * CP_ERR_INVALID if directory_url or account_key is missing or the URL is
 * not http(s).
 */
cp_rc acme_client_new(const struct acme_config *cfg, struct acme_client **out) CP_WUR;
/* Release c; NULL-safe. Does not free the account key. */
void acme_client_free(struct acme_client *c);
/* The account URL (kid) known to c, or NULL; borrowed, valid until changed. */
const char *acme_client_account_url(const struct acme_client *c);
/* The account key c signs with (borrowed from the config). */
const struct crypto_key *acme_client_key(const struct acme_client *c);
/*
 * Set or forget (NULL) the account URL, e.g. after accountDoesNotExist so
 * that the next acme_account_ensure() registers again.
 */
cp_rc acme_client_set_account_url(struct acme_client *c, const char *account_url) CP_WUR;

/*
 * The CA's directory, fetched once and cached for the client's lifetime.
 * *dir is borrowed (valid until acme_client_free()).
 */
cp_rc acme_directory(struct acme_client *c, const json_t **dir, struct acme_result *r) CP_WUR;

/*
 * Make sure the account exists: if c already knows its URL, return it
 * without any request; otherwise POST newAccount {termsOfServiceAgreed:true,
 * contact:["mailto:<email>"] if contact_email} signed with the jwk, and
 * remember the Location (an existing account for the key is returned as
 * is by the CA). *account_url is borrowed from c (may be NULL).
 */
cp_rc acme_account_ensure(struct acme_client *c, const char *contact_email,
			  const char **account_url, struct acme_result *r) CP_WUR;

/*
 * POST newOrder for the DNS identifiers names (n >= 1, "*.x" allowed).
 * replaces: an ARI cert id (acme_ari_cert_id) of the certificate this order
 * renews, or NULL; a CA without ARI ignores it, and on a 409 alreadyReplaced
 * the caller retries with NULL. *order_url (new string, caller frees) and
 * *order (new reference) on success. Rate limits: CP_ERR_RATE_LIMITED.
 */
cp_rc acme_order_new(struct acme_client *c, const char *const *names, size_t n,
		     const char *replaces, char **order_url, json_t **order,
		     struct acme_result *r) CP_WUR;
/*
 * acme_order_new with an ACME profile (draft-ietf-acme-profiles): profile
 * (NULL: none) is sent as newOrder "profile". The caller checks first that
 * the CA offers it (acme_profile_offered): a CA that does not know the
 * field may ignore it or refuse the order (invalidProfile).
 */
cp_rc acme_order_new_profile(struct acme_client *c, const char *const *names, size_t n,
			     const char *replaces, const char *profile, char **order_url,
			     json_t **order, struct acme_result *r) CP_WUR;
/*
 * Whether the CA's directory (fetched once, acme_directory) names profile
 * in meta.profiles. CP_OK: offered. CP_ERR_NOT_FOUND: not offered (also when
 * the directory has no meta.profiles at all), r->detail says so. Any other
 * code: the directory could not be read (r says why, as acme_directory).
 */
cp_rc acme_profile_offered(struct acme_client *c, const char *profile,
			   struct acme_result *r) CP_WUR;
/*
 * POST-as-GET url and return the JSON object it answers with (*obj new
 * reference). acme_order_get / acme_authz_get / acme_challenge_get are the
 * same call, named for readability at the call site.
 */
cp_rc acme_get_object(struct acme_client *c, const char *url, json_t **obj,
		      struct acme_result *r) CP_WUR;
cp_rc acme_order_get(struct acme_client *c, const char *order_url, json_t **order,
		     struct acme_result *r) CP_WUR;
cp_rc acme_authz_get(struct acme_client *c, const char *authz_url, json_t **authz,
		     struct acme_result *r) CP_WUR;
cp_rc acme_challenge_get(struct acme_client *c, const char *challenge_url, json_t **challenge,
			 struct acme_result *r) CP_WUR;
/*
 * Tell the CA the challenge is ready: POST {} to challenge_url. *challenge
 * (may be NULL) receives the updated challenge object.
 */
cp_rc acme_challenge_respond(struct acme_client *c, const char *challenge_url, json_t **challenge,
			     struct acme_result *r) CP_WUR;
/*
 * Finalize: POST {"csr": base64url(csr_der)} to finalize_url. *order is the
 * order as returned (often "processing": poll acme_order_get, honouring
 * r->retry_after, until "valid" and "certificate" appears).
 */
cp_rc acme_order_finalize(struct acme_client *c, const char *finalize_url, const uint8_t *csr_der,
			  size_t csr_len, json_t **order, struct acme_result *r) CP_WUR;
/*
 * Download the certificate chain (POST-as-GET, Accept:
 * application/pem-certificate-chain). The body must consist of CERTIFICATE
 * PEM blocks only (leaf first) and fit the 1 MiB cap; anything else is
 * CP_ERR_UPSTREAM with fail=ACME_FAIL_PROTOCOL. *pem is a new string.
 */
cp_rc acme_cert_download(struct acme_client *c, const char *cert_url, char **pem,
			 struct acme_result *r) CP_WUR;

/*
 * RFC 8555 7.6 revokeCert: revoke the certificate cert_der (DER) with the
 * RFC 5280 reason code (0..10 but 7), signed with the account key (kid:
 * the account must have ordered it; acme_account_ensure first), or, when
 * cert_key is not NULL, with the certificate's own key (jwk; keyCompromise).
 * A certificate the CA says is revoked already (alreadyRevoked) is CP_OK.
 * Errors as the other steps (classify r with acme_classify).
 */
cp_rc acme_revoke_cert(struct acme_client *c, const uint8_t *cert_der, size_t der_len, int reason,
		       const struct crypto_key *cert_key, struct acme_result *r) CP_WUR;

/* ==== challenges ==== */

/*
 * The challenge of the given type ("http-01", "dns-01") inside an authz
 * object, borrowed from authz; NULL if it offers none.
 */
const json_t *acme_authz_challenge(const json_t *authz, const char *type);
/*
 * HTTP-01 key authorization token "." base64url(JWK thumbprint of key).
 * *out is a new string. CP_ERR_INVALID for a token that is not base64url.
 */
cp_rc acme_key_authorization(const struct crypto_key *key, const char *token, char **out) CP_WUR;
/*
 * DNS-01 record for identifier (a "*.x" identifier uses "x"): *name =
 * "_acme-challenge.<domain>" (no trailing dot) and *value =
 * base64url(SHA-256(key authorization)); both new strings.
 */
cp_rc acme_dns01_record(const struct crypto_key *key, const char *identifier, const char *token,
			char **name, char **value) CP_WUR;

/* ==== ACME Renewal Information (RFC 9773) ==== */

/*
 * ARI certificate identifier of the leaf (first block of cert_pem):
 * base64url(AKI keyIdentifier) "." base64url(serial number DER content
 * octets). *out is a new string. CP_ERR_INVALID if the certificate cannot be
 * parsed or has no authority key identifier.
 */
cp_rc acme_ari_cert_id(const char *cert_pem, size_t len, char **out) CP_WUR;
/*
 * GET <renewalInfo>/<cert_id> (unauthenticated). *info is the new object
 * {"suggestedWindow": {"start","end"}, "explanationURL"?}; r->retry_after says
 * when to ask again. CP_ERR_NOT_FOUND when the directory offers no
 * renewalInfo ("not offered": fall back to the lifetime rule), without any
 * request beyond the directory.
 */
cp_rc acme_renewal_info(struct acme_client *c, const char *cert_id, json_t **info,
			struct acme_result *r) CP_WUR;

#endif
