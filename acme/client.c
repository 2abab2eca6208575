/*
 * client.c - the RFC 8555 ACME client over libcurl: directory (fetched once),
 * nonce pool, JWS-signed POSTs (jwk until the account exists, kid after),
 * badNonce retries, POST-as-GET, and one function per protocol step.
 *
 * Every exchange goes through http_exchange(), which bounds it (10 s connect,
 * 30 s total, 1 MiB response, http/https only, no redirects), collects the
 * headers ACME cares about (Replay-Nonce from every response into the pool,
 * Location, Retry-After, Content-Type), and turns transport failures and
 * problem documents into a struct acme_result the caller can map to a
 * reason. One curl easy handle per client keeps the connection (HTTP/2 with
 * Pebble and Let's Encrypt) warm across steps; that is also why a client is
 * used by one thread at a time.
 */
#include "acme/acme.h"

#include <assert.h>
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/buf.h"
#include "crypto/crypto.h"

#define ACME_RESP_MAX (1024 * 1024) /* response body cap */
#define ACME_CONNECT_TIMEOUT_S 10L
#define ACME_TOTAL_TIMEOUT_S 30L
#define ACME_NONCE_POOL 8  /* nonces kept for later requests */
#define ACME_NONCE_MAX 160 /* longest nonce accepted */
/* Extra attempts after badNonce, each with the nonce of the error. At
 * Pebble's 50 % rejection ten give a 1/2048 chance that one request still
 * ends in badNonce; the order engine then backs off and tries again. */
#define ACME_BADNONCE_RETRIES 10
#define ACME_USER_AGENT "certplane-acme/1 (+libcurl)"

struct acme_client {
	char *directory_url;	/* where the directory is fetched */
	char *ca_bundle;	/* CAINFO, or NULL for the system store */
	struct crypto_key *key; /* borrowed account key */
	char *account_url;	/* kid, or NULL until registered */
	char *eab_kid;		/* EAB key id, or NULL */
	uint8_t *eab_key;	/* EAB HMAC key (decoded), or NULL */
	size_t eab_key_len;
	json_t *dir;					  /* cached directory, NULL until fetched */
	CURL *curl;					  /* reused for connection reuse */
	char nonces[ACME_NONCE_POOL][ACME_NONCE_MAX + 1]; /* unused nonces, newest last */
	int n_nonces;
};

/* One HTTP response as http_exchange() saw it. Strings owned. */
struct http_resp {
	long status;
	char *body; /* NUL-terminated, len bytes */
	size_t len;
	bool too_large;	       /* body exceeded ACME_RESP_MAX */
	struct cp_buf acc;     /* collects the body, inside http_exchange only */
	char *location;	       /* Location header */
	char *content_type;    /* Content-Type header */
	int64_t retry_after;   /* parsed Retry-After, -1 if none */
	struct acme_client *c; /* for the nonce pool, during the transfer */
};

static void resp_clear(struct http_resp *h)
{
	free(h->body);
	free(h->location);
	free(h->content_type);
	memset(h, 0, sizeof(*h));
	h->retry_after = -1;
}

static void result_reset(struct acme_result *r)
{
	memset(r, 0, sizeof(*r));
	r->retry_after = -1;
}

/* Record a failure that is ours (bad input, OOM, signing). */
static cp_rc result_local(struct acme_result *r, cp_rc rc, const char *what)
{
	r->fail = ACME_FAIL_LOCAL;
	snprintf(r->detail, sizeof(r->detail), "%s", what);
	return rc;
}

/* Record an answer we cannot use. */
static cp_rc result_protocol(struct acme_result *r, const char *what, const char *url)
{
	r->fail = ACME_FAIL_PROTOCOL;
	snprintf(r->detail, sizeof(r->detail), "%s (%s)", what, url ? url : "");
	return CP_ERR_UPSTREAM;
}

/* ---- nonce pool ---- */

/* Keep a nonce for a later request; the oldest is dropped when full. */
static void nonce_push(struct acme_client *c, const char *v, size_t n)
{
	if (n == 0 || n > ACME_NONCE_MAX)
		return;
	for (size_t i = 0; i < n; i++) {
		char ch = v[i];

		/* RFC 8555 6.5.1: base64url alphabet only; anything else is junk. */
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '-' || ch == '_'))
			return;
	}
	if (c->n_nonces == ACME_NONCE_POOL) {
		memmove(c->nonces[0], c->nonces[1], sizeof(c->nonces[0]) * (ACME_NONCE_POOL - 1));
		c->n_nonces--;
	}
	memcpy(c->nonces[c->n_nonces], v, n);
	c->nonces[c->n_nonces][n] = '\0';
	c->n_nonces++;
}

/* Pop the newest nonce into out; false when the pool is empty. */
static bool nonce_pop(struct acme_client *c, char out[ACME_NONCE_MAX + 1])
{
	if (c->n_nonces == 0)
		return false;
	c->n_nonces--;
	memcpy(out, c->nonces[c->n_nonces], ACME_NONCE_MAX + 1);
	return true;
}

/* ---- libcurl plumbing ---- */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct http_resp *h = arg;
	size_t n = size * nmemb;
	cp_rc rc;

	rc = cp_buf_add(&h->acc, ptr, n); /* capped at ACME_RESP_MAX */
	if (rc == CP_ERR_TOO_LARGE)
		h->too_large = true;
	/* A short count aborts the transfer with CURLE_WRITE_ERROR. */
	return rc == CP_OK ? n : 0;
}

/* Trimmed value of header line "name: value" if name matches, else NULL. */
static const char *header_value(const char *line, size_t n, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);
	const char *v, *end = line + n;

	if (n <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
		return NULL;
	v = line + nl + 1;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	*vlen = (size_t)(end - v);
	return v;
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *arg)
{
	struct http_resp *h = arg;
	size_t n = size * nmemb, vl;
	const char *v;

	/* A new status line (after 100 Continue, say) starts a new header set. */
	if (n >= 5 && strncmp(line, "HTTP/", 5) == 0) {
		free(h->location);
		free(h->content_type);
		h->location = h->content_type = NULL;
		h->retry_after = -1;
		return n;
	}
	if ((v = header_value(line, n, "Replay-Nonce", &vl))) {
		nonce_push(h->c, v, vl);
	} else if ((v = header_value(line, n, "Location", &vl))) {
		free(h->location);
		h->location = cp_strndup(v, vl);
	} else if ((v = header_value(line, n, "Content-Type", &vl))) {
		free(h->content_type);
		h->content_type = cp_strndup(v, vl);
	} else if ((v = header_value(line, n, "Retry-After", &vl))) {
		/* Not CURLINFO_RETRY_AFTER: it answers 0 alike for no header, "0"
		 * and a value it could not parse (so "absent, use our backoff"
		 * is lost), and libcurl 7.88 reads "12abc" as 12 with strtoofft. */
		char buf[128];
		int64_t secs;

		if (vl < sizeof(buf)) {
			memcpy(buf, v, vl);
			buf[vl] = '\0';
			if (acme_parse_retry_after(buf, cp_now(), &secs) == CP_OK)
				h->retry_after = secs;
		}
	}
	return n;
}

/* True if the response's media type (parameters ignored) is mt. */
static bool content_type_is(const struct http_resp *h, const char *mt)
{
	size_t n = strlen(mt);

	return h->content_type && strncasecmp(h->content_type, mt, n) == 0 &&
	       (h->content_type[n] == '\0' || h->content_type[n] == ';' ||
		h->content_type[n] == ' ');
}

/* Which transport failure a libcurl code is (for acme_classify's table). */
static enum acme_net net_kind(CURLcode cc)
{
	switch (cc) {
	case CURLE_COULDNT_CONNECT:
		return ACME_NET_REFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return ACME_NET_TIMEOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return ACME_NET_RESOLVE;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
		return ACME_NET_RESET;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CRL_BADFILE:
		return ACME_NET_TLS;
	default:
		return ACME_NET_OTHER;
	}
}

/*
 * One bounded HTTP exchange. method is "GET", "HEAD" or "POST" (body sent
 * as application/jose+json). Fills resp (caller clears it) and r->status,
 * r->retry_after. Transport failures set r (UNREACHABLE or PROTOCOL for an
 * oversized body) and return CP_ERR_UPSTREAM / CP_ERR_TOO_LARGE; any HTTP
 * status is CP_OK here - callers judge it.
 */
static cp_rc http_exchange(struct acme_client *c, const char *method, const char *url,
			   const char *body, const char *accept, struct http_resp *resp,
			   struct acme_result *r)
{
	struct curl_slist *hdrs = NULL, *tmp;
	char errbuf[CURL_ERROR_SIZE] = "";
	char *accept_hdr = NULL;
	CURL *h = c->curl;
	CURLcode cc;
	cp_rc rc = CP_ERR_NOMEM;

	resp_clear(resp);
	resp->c = c;
	cp_buf_init(&resp->acc, ACME_RESP_MAX);
	/* Reset drops the previous request's options but keeps the connection. */
	curl_easy_reset(h);
	if (strcmp(method, "POST") == 0) {
		if (!(tmp = curl_slist_append(hdrs, "Content-Type: application/jose+json")))
			goto out;
		hdrs = tmp;
	}
	if (accept) {
		accept_hdr = cp_aprintf("Accept: %s", accept);
		if (!accept_hdr || !(tmp = curl_slist_append(hdrs, accept_hdr)))
			goto out;
		hdrs = tmp;
	}
	if (curl_easy_setopt(h, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http") != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, ACME_CONNECT_TIMEOUT_S) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_TIMEOUT, ACME_TOTAL_TIMEOUT_S) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)ACME_RESP_MAX) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_USERAGENT, ACME_USER_AGENT) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_WRITEDATA, resp) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_HEADERDATA, resp) != CURLE_OK ||
	    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs) != CURLE_OK ||
	    (c->ca_bundle && curl_easy_setopt(h, CURLOPT_CAINFO, c->ca_bundle) != CURLE_OK)) {
		rc = result_local(r, CP_ERR_INTERNAL, "curl_easy_setopt failed");
		goto out;
	}
	if (strcmp(method, "HEAD") == 0) {
		curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
	} else if (strcmp(method, "POST") == 0) {
		curl_easy_setopt(h, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
				 (curl_off_t)(body ? strlen(body) : 0));
	}
	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
	r->status = resp->status;
	r->retry_after = resp->retry_after;
	if (cc != CURLE_OK) {
		if (resp->too_large || cc == CURLE_FILESIZE_EXCEEDED) {
			r->fail = ACME_FAIL_PROTOCOL;
			snprintf(r->detail, sizeof(r->detail), "response from %s exceeds %d bytes",
				 url, ACME_RESP_MAX);
			rc = CP_ERR_TOO_LARGE;
		} else if (cc == CURLE_OUT_OF_MEMORY) {
			rc = result_local(r, CP_ERR_NOMEM, "out of memory");
		} else {
			r->fail = ACME_FAIL_UNREACHABLE;
			r->net = net_kind(cc);
			snprintf(r->detail, sizeof(r->detail), "%s %s: %s", method, url,
				 errbuf[0] ? errbuf : curl_easy_strerror(cc));
			rc = CP_ERR_UPSTREAM;
		}
		goto out;
	}
	/* An empty body allocates nothing: add "" so there is one to take. */
	if (cp_buf_add(&resp->acc, "", 0) != CP_OK) {
		rc = result_local(r, CP_ERR_NOMEM, "out of memory");
		goto out;
	}
	resp->body = cp_buf_take(&resp->acc, &resp->len);
	rc = CP_OK;
out:
	cp_buf_free(&resp->acc);
	/* Never leave pointers to this stack frame inside the reused handle. */
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_slist_free_all(hdrs);
	free(accept_hdr);
	return rc;
}

/*
 * Judge a response: 2xx is CP_OK; otherwise fill r from the problem
 * document and return CP_ERR_RATE_LIMITED (rateLimited) or CP_ERR_UPSTREAM.
 */
static cp_rc judge_status(const struct http_resp *h, struct acme_result *r)
{
	int64_t ra = r->retry_after;

	if (h->status >= 200 && h->status < 300)
		return CP_OK;
	acme_parse_problem(h->body, h->len, h->status, r);
	r->retry_after = ra;
	return acme_result_is(r, "rateLimited") ? CP_ERR_RATE_LIMITED : CP_ERR_UPSTREAM;
}

/* Parse a 2xx JSON-object body into *obj (new reference). */
static cp_rc parse_object(const struct http_resp *h, const char *url, json_t **obj,
			  struct acme_result *r)
{
	json_t *o = json_loadb(h->body, h->len, JSON_REJECT_DUPLICATES, NULL);

	if (!json_is_object(o)) {
		json_decref(o);
		return result_protocol(r, "CA answered with something that is not a JSON object",
				       url);
	}
	*obj = o;
	return CP_OK;
}

/* ---- client lifecycle ---- */

cp_rc acme_client_new(const struct acme_config *cfg, struct acme_client **out)
{
	struct acme_client *c = NULL;
	cp_rc rc = CP_ERR_NOMEM;

	assert(out);
	*out = NULL;
	if (!cfg || !cfg->directory_url || !cfg->account_key ||
	    (strncmp(cfg->directory_url, "https://", 8) != 0 &&
	     strncmp(cfg->directory_url, "http://", 7) != 0))
		return CP_ERR_INVALID;
	c = calloc(1, sizeof(*c));
	if (!c)
		goto out;
	c->key = cfg->account_key;
	c->directory_url = cp_strdup(cfg->directory_url);
	if (!c->directory_url)
		goto out;
	if (cfg->ca_bundle && !(c->ca_bundle = cp_strdup(cfg->ca_bundle)))
		goto out;
	if (cfg->account_url && !(c->account_url = cp_strdup(cfg->account_url)))
		goto out;
	if (!cfg->eab_kid != !cfg->eab_hmac_key) {
		rc = CP_ERR_INVALID;
		goto out;
	}
	if (cfg->eab_kid) {
		if (!(c->eab_kid = cp_strdup(cfg->eab_kid)))
			goto out;
		rc = cp_b64url_decode(cfg->eab_hmac_key, &c->eab_key, &c->eab_key_len);
		if (rc != CP_OK || c->eab_key_len == 0) {
			rc = rc == CP_ERR_NOMEM ? rc : CP_ERR_INVALID;
			goto out;
		}
		rc = CP_ERR_NOMEM;
	}
	c->curl = curl_easy_init();
	if (!c->curl)
		goto out;
	*out = c;
	c = NULL;
	rc = CP_OK;
out:
	acme_client_free(c);
	return rc;
}

void acme_client_free(struct acme_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	json_decref(c->dir);
	free(c->directory_url);
	free(c->ca_bundle);
	free(c->account_url);
	free(c->eab_kid);
	crypto_wipe_free_buf(c->eab_key, c->eab_key_len);
	free(c);
}

const char *acme_client_account_url(const struct acme_client *c)
{
	return c ? c->account_url : NULL;
}

const struct crypto_key *acme_client_key(const struct acme_client *c)
{
	assert(c);

	return c->key;
}

cp_rc acme_client_set_account_url(struct acme_client *c, const char *account_url)
{
	char *u = NULL;

	assert(c);
	if (account_url && !(u = cp_strdup(account_url)))
		return CP_ERR_NOMEM;
	free(c->account_url);
	c->account_url = u;
	return CP_OK;
}

cp_rc acme_directory(struct acme_client *c, const json_t **dir, struct acme_result *r)
{
	struct acme_result tmp;
	struct http_resp h = { 0 };
	json_t *d = NULL;
	const char *why = NULL;
	cp_rc rc;

	assert(c);
	if (!r)
		r = &tmp;
	result_reset(r);
	if (c->dir)
		goto done;
	rc = http_exchange(c, "GET", c->directory_url, NULL, "application/json", &h, r);
	if (rc != CP_OK)
		goto out;
	if ((rc = judge_status(&h, r)) != CP_OK)
		goto out;
	if ((rc = parse_object(&h, c->directory_url, &d, r)) != CP_OK)
		goto out;
	if (acme_directory_check(d, &why) != CP_OK) {
		rc = result_protocol(r, why, c->directory_url);
		goto out;
	}
	c->dir = d;
	d = NULL;
done:
	if (dir)
		*dir = c->dir;
	rc = CP_OK;
out:
	json_decref(d);
	resp_clear(&h);
	return rc;
}

/* A directory URL by name, or NULL (directory must be loaded). */
static const char *dir_url(const struct acme_client *c, const char *name)
{
	return json_string_value(json_object_get(c->dir, name));
}

/* Fill the pool from newNonce when it is empty. */
static cp_rc nonce_fetch(struct acme_client *c, struct acme_result *r)
{
	struct http_resp h = { 0 };
	const char *url = dir_url(c, "newNonce");
	cp_rc rc;

	rc = http_exchange(c, "HEAD", url, NULL, NULL, &h, r);
	if (rc == CP_OK)
		rc = judge_status(&h, r);
	if (rc == CP_OK && c->n_nonces == 0)
		rc = result_protocol(r, "newNonce gave no Replay-Nonce", url);
	resp_clear(&h);
	return rc;
}

/*
 * Signed POST of payload ("" for POST-as-GET) to url under key (the
 * account's, or a certificate's for revokeCert), with jwk when use_jwk
 * (newAccount, revokeCert by the certificate key) and kid otherwise. On badNonce the same request
 * is signed again at once with the nonce the error carried (RFC 8555 6.5), up to
 * ACME_BADNONCE_RETRIES times; what still fails is the caller's to classify (acme_classify:
 * transient). Returns the judged status; *resp holds the last response (caller clears).
 */
static cp_rc signed_post_as(struct acme_client *c, const struct crypto_key *key, const char *url,
			    const char *payload, bool use_jwk, const char *accept,
			    struct http_resp *resp, struct acme_result *r)
{
	json_t *prot = NULL, *jwk = NULL;
	char *jws = NULL;
	char nonce[ACME_NONCE_MAX + 1];
	cp_rc rc;
	int attempt;

	if ((rc = acme_directory(c, NULL, r)) != CP_OK)
		return rc;
	if (!use_jwk && !c->account_url)
		return result_local(r, CP_ERR_INVALID,
				    "no account URL: call acme_account_ensure first");
	for (attempt = 0;; attempt++) {
		if (c->n_nonces == 0 && (rc = nonce_fetch(c, r)) != CP_OK)
			goto out;
		nonce_pop(c, nonce);
		json_decref(prot);
		prot = json_pack("{s:s, s:s}", "nonce", nonce, "url", url);
		if (!prot) {
			rc = result_local(r, CP_ERR_NOMEM, "out of memory");
			goto out;
		}
		if (use_jwk) {
			if (!jwk && crypto_jwk(key, &jwk) != CP_OK) {
				rc = result_local(r, CP_ERR_CRYPTO, "cannot export the JWK");
				goto out;
			}
			rc = json_object_set(prot, "jwk", jwk) ? CP_ERR_NOMEM : CP_OK;
		} else {
			rc = json_object_set_new(prot, "kid", json_string(c->account_url))
				     ? CP_ERR_NOMEM
				     : CP_OK;
		}
		if (rc != CP_OK) {
			rc = result_local(r, rc, "out of memory");
			goto out;
		}
		free(jws);
		jws = NULL;
		if (crypto_jws(key, prot, payload, &jws) != CP_OK) {
			rc = result_local(r, CP_ERR_CRYPTO, "JWS signing failed");
			goto out;
		}
		result_reset(r);
		if ((rc = http_exchange(c, "POST", url, jws, accept, resp, r)) != CP_OK)
			goto out;
		rc = judge_status(resp, r);
		if (rc != CP_OK && acme_classify(r).retry_now && attempt < ACME_BADNONCE_RETRIES) {
			cp_logf(CP_LOG_DEBUG, "acme_bad_nonce", "badNonce from %s, retrying (%d)",
				url, attempt + 1);
			continue;
		}
		goto out;
	}
out:
	json_decref(prot);
	json_decref(jwk);
	free(jws);
	return rc;
}

/* signed_post_as with the account key. */
static cp_rc signed_post(struct acme_client *c, const char *url, const char *payload, bool use_jwk,
			 const char *accept, struct http_resp *resp, struct acme_result *r)
{
	return signed_post_as(c, c->key, url, payload, use_jwk, accept, resp, r);
}

/* Signed POST whose 2xx answer is a JSON object (*obj new, may be NULL). */
static cp_rc post_object(struct acme_client *c, const char *url, const char *payload, bool use_jwk,
			 json_t **obj, char **location, struct acme_result *r)
{
	struct http_resp h = { 0 };
	json_t *o = NULL;
	cp_rc rc;

	if (!url || !*url)
		return result_local(r, CP_ERR_INVALID, "missing URL");
	if ((rc = signed_post(c, url, payload, use_jwk, NULL, &h, r)) != CP_OK)
		goto out;
	if ((rc = parse_object(&h, url, &o, r)) != CP_OK)
		goto out;
	if (location) {
		if (!h.location) {
			rc = result_protocol(r, "CA answered without a Location header", url);
			goto out;
		}
		*location = h.location;
		h.location = NULL;
	}
	if (obj) {
		*obj = o;
		o = NULL;
	}
out:
	json_decref(o);
	resp_clear(&h);
	return rc;
}

/* ---- protocol steps ---- */

/*
 * Shape-check an object a step returned (acme_order_check and friends); a
 * failing one is dropped (*obj NULL) and the step fails with a protocol error.
 */
static cp_rc checked(cp_rc rc, json_t **obj, cp_rc (*check)(const json_t *, const char **),
		     const char *url, struct acme_result *r)
{
	const char *why = NULL;

	if (rc != CP_OK || !*obj || check(*obj, &why) == CP_OK)
		return rc;
	json_decref(*obj);
	*obj = NULL;
	return result_protocol(r, why, url);
}

/*
 * The externalAccountBinding of a newAccount to url (RFC 8555 7.3.4): a
 * flattened JWS, HS256 under the CA's EAB key, with kid the CA's key id and
 * the account's public JWK as payload. New object, NULL on failure.
 */
static json_t *eab_binding(struct acme_client *c, const char *url)
{
	json_t *jwk = NULL, *prot = NULL, *out = NULL;
	char *prot_s = NULL, *jwk_s = NULL, *p64 = NULL, *j64 = NULL, *input = NULL, *sig = NULL;
	uint8_t mac[32];

	if (!url || crypto_jwk(c->key, &jwk) != CP_OK)
		goto out;
	prot = json_pack("{s:s,s:s,s:s}", "alg", "HS256", "kid", c->eab_kid, "url", url);
	prot_s = prot ? json_dumps(prot, JSON_COMPACT) : NULL;
	jwk_s = json_dumps(jwk, JSON_COMPACT);
	if (!prot_s || !jwk_s)
		goto out;
	p64 = cp_b64url((const uint8_t *)prot_s, strlen(prot_s));
	j64 = cp_b64url((const uint8_t *)jwk_s, strlen(jwk_s));
	input = p64 && j64 ? cp_aprintf("%s.%s", p64, j64) : NULL;
	if (!input)
		goto out;
	crypto_hmac_sha256(c->eab_key, c->eab_key_len, input, strlen(input), mac);
	sig = cp_b64url(mac, sizeof(mac));
	if (sig)
		out = json_pack("{s:s,s:s,s:s}", "protected", p64, "payload", j64, "signature",
				sig);
out:
	json_decref(jwk);
	json_decref(prot);
	free(prot_s);
	free(jwk_s);
	free(p64);
	free(j64);
	free(input);
	free(sig);
	return out;
}

cp_rc acme_account_ensure(struct acme_client *c, const char *contact_email,
			  const char **account_url, struct acme_result *r)
{
	struct acme_result tmp;
	json_t *payload = NULL, *contact = NULL;
	char *body = NULL, *loc = NULL, *mailto = NULL;
	cp_rc rc;

	assert(c);
	if (!r)
		r = &tmp;
	result_reset(r);
	if (account_url)
		*account_url = NULL;
	if (c->account_url)
		goto done;
	if ((rc = acme_directory(c, NULL, r)) != CP_OK)
		return rc;
	rc = CP_ERR_NOMEM;
	payload = json_pack("{s:b}", "termsOfServiceAgreed", 1);
	if (!payload)
		goto oom;
	if (contact_email && *contact_email) {
		mailto = cp_aprintf("mailto:%s", contact_email);
		contact = json_array();
		if (!mailto || !contact || json_array_append_new(contact, json_string(mailto)) ||
		    json_object_set(payload, "contact", contact))
			goto oom;
	}
	if (c->eab_kid) {
		json_t *eab = eab_binding(c, dir_url(c, "newAccount"));
		if (!eab || json_object_set_new(payload, "externalAccountBinding", eab))
			goto oom;
	}
	body = json_dumps(payload, JSON_COMPACT);
	if (!body)
		goto oom;
	rc = post_object(c, dir_url(c, "newAccount"), body, true, NULL, &loc, r);
	if (rc != CP_OK)
		goto out;
	c->account_url = loc;
	loc = NULL;
	cp_logf(CP_LOG_INFO, "acme_account", "account %s (HTTP %ld)", c->account_url, r->status);
done:
	if (account_url)
		*account_url = c->account_url;
	rc = CP_OK;
	goto out;
oom:
	rc = result_local(r, CP_ERR_NOMEM, "out of memory");
out:
	json_decref(payload);
	json_decref(contact);
	free(body);
	free(loc);
	free(mailto);
	return rc;
}

cp_rc acme_order_new(struct acme_client *c, const char *const *names, size_t n,
		     const char *replaces, char **order_url, json_t **order, struct acme_result *r)
{
	return acme_order_new_profile(c, names, n, replaces, NULL, order_url, order, r);
}

cp_rc acme_profile_offered(struct acme_client *c, const char *profile, struct acme_result *r)
{
	struct acme_result tmp;
	const json_t *profiles;
	cp_rc rc;

	assert(c && profile);
	if (!r)
		r = &tmp;
	result_reset(r);
	if ((rc = acme_directory(c, NULL, r)) != CP_OK)
		return rc;
	/* draft-ietf-acme-profiles: meta.profiles maps each name to a
	 * description; only the names matter here. */
	profiles = json_object_get(json_object_get(c->dir, "meta"), "profiles");
	if (json_is_object(profiles) && json_object_get(profiles, profile))
		return CP_OK;
	snprintf(r->detail, sizeof(r->detail),
		 "the CA's directory does not offer profile \"%.64s\"", profile);
	return CP_ERR_NOT_FOUND;
}

cp_rc acme_order_new_profile(struct acme_client *c, const char *const *names, size_t n,
			     const char *replaces, const char *profile, char **order_url,
			     json_t **order, struct acme_result *r)
{
	struct acme_result tmp;
	json_t *payload = NULL, *ids = NULL, *o = NULL;
	char *body = NULL;
	cp_rc rc;

	assert(c && (names || n == 0) && order_url);
	if (!r)
		r = &tmp;
	result_reset(r);
	*order_url = NULL;
	if (order)
		*order = NULL;
	if (!names || n == 0)
		return result_local(r, CP_ERR_INVALID, "no identifiers");
	if ((rc = acme_directory(c, NULL, r)) != CP_OK)
		return rc;
	ids = json_array();
	if (!ids)
		goto oom;
	for (size_t i = 0; i < n; i++) {
		if (!names[i] || !*names[i]) {
			rc = result_local(r, CP_ERR_INVALID, "empty identifier");
			goto out;
		}
		if (json_array_append_new(
			    ids, json_pack("{s:s, s:s}", "type", "dns", "value", names[i])))
			goto oom;
	}
	payload = json_pack("{s:O}", "identifiers", ids);
	if (!payload)
		goto oom;
	if (replaces && json_object_set_new(payload, "replaces", json_string(replaces)))
		goto oom;
	if (profile && json_object_set_new(payload, "profile", json_string(profile)))
		goto oom;
	body = json_dumps(payload, JSON_COMPACT);
	if (!body)
		goto oom;
	rc = post_object(c, dir_url(c, "newOrder"), body, false, &o, order_url, r);
	rc = checked(rc, &o, acme_order_check, *order_url, r);
	if (rc != CP_OK) {
		free(*order_url);
		*order_url = NULL;
	} else if (order) {
		*order = o;
		o = NULL;
	}
	goto out;
oom:
	rc = result_local(r, CP_ERR_NOMEM, "out of memory");
out:
	json_decref(o);
	json_decref(ids);
	json_decref(payload);
	free(body);
	return rc;
}

cp_rc acme_get_object(struct acme_client *c, const char *url, json_t **obj, struct acme_result *r)
{
	struct acme_result tmp;

	assert(c && obj);
	if (!r)
		r = &tmp;
	result_reset(r);
	*obj = NULL;
	return post_object(c, url, "", false, obj, NULL, r);
}

cp_rc acme_order_get(struct acme_client *c, const char *order_url, json_t **order,
		     struct acme_result *r)
{
	struct acme_result tmp;

	assert(c && order);
	if (!r)
		r = &tmp;
	return checked(acme_get_object(c, order_url, order, r), order, acme_order_check, order_url,
		       r);
}

cp_rc acme_authz_get(struct acme_client *c, const char *authz_url, json_t **authz,
		     struct acme_result *r)
{
	struct acme_result tmp;

	assert(c && authz);
	if (!r)
		r = &tmp;
	return checked(acme_get_object(c, authz_url, authz, r), authz, acme_authz_check, authz_url,
		       r);
}

cp_rc acme_challenge_get(struct acme_client *c, const char *challenge_url, json_t **challenge,
			 struct acme_result *r)
{
	assert(c && challenge);

	return acme_get_object(c, challenge_url, challenge, r);
}

cp_rc acme_challenge_respond(struct acme_client *c, const char *challenge_url, json_t **challenge,
			     struct acme_result *r)
{
	struct acme_result tmp;

	assert(c);
	if (!r)
		r = &tmp;
	result_reset(r);
	if (challenge)
		*challenge = NULL;
	return post_object(c, challenge_url, "{}", false, challenge, NULL, r);
}

cp_rc acme_order_finalize(struct acme_client *c, const char *finalize_url, const uint8_t *csr_der,
			  size_t csr_len, json_t **order, struct acme_result *r)
{
	struct acme_result tmp;
	json_t *payload = NULL, *o = NULL;
	char *csr = NULL, *body = NULL;
	cp_rc rc;

	assert(c);
	if (!r)
		r = &tmp;
	result_reset(r);
	if (order)
		*order = NULL;
	if (!csr_der || csr_len == 0)
		return result_local(r, CP_ERR_INVALID, "empty CSR");
	csr = cp_b64url(csr_der, csr_len);
	payload = csr ? json_pack("{s:s}", "csr", csr) : NULL;
	body = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
	if (!body)
		rc = result_local(r, CP_ERR_NOMEM, "out of memory");
	else
		rc = post_object(c, finalize_url, body, false, &o, NULL, r);
	rc = checked(rc, &o, acme_order_check, finalize_url, r);
	if (rc == CP_OK && order) {
		*order = o;
		o = NULL;
	}
	json_decref(o);
	json_decref(payload);
	free(csr);
	free(body);
	return rc;
}

cp_rc acme_cert_download(struct acme_client *c, const char *cert_url, char **pem,
			 struct acme_result *r)
{
	struct acme_result tmp;
	struct http_resp h = { 0 };
	const char *why = NULL;
	cp_rc rc;

	assert(c && pem);
	if (!r)
		r = &tmp;
	result_reset(r);
	*pem = NULL;
	if (!cert_url || !*cert_url)
		return result_local(r, CP_ERR_INVALID, "missing URL");
	rc = signed_post(c, cert_url, "", false, "application/pem-certificate-chain", &h, r);
	if (rc != CP_OK)
		goto out;
	if (h.content_type && !content_type_is(&h, "application/pem-certificate-chain")) {
		rc = result_protocol(r, "certificate has an unexpected Content-Type", cert_url);
		goto out;
	}
	if (!acme_chain_pem_valid(h.body, h.len, &why)) {
		rc = result_protocol(r, why, cert_url);
		goto out;
	}
	*pem = h.body;
	h.body = NULL;
out:
	resp_clear(&h);
	return rc;
}

cp_rc acme_renewal_info(struct acme_client *c, const char *cert_id, json_t **info,
			struct acme_result *r)
{
	struct acme_result tmp;
	struct http_resp h = { 0 };
	const char *base;
	char *url = NULL;
	json_t *o = NULL;
	cp_rc rc;

	assert(c && info);
	if (!r)
		r = &tmp;
	result_reset(r);
	*info = NULL;
	if (!cert_id || !*cert_id || strchr(cert_id, '/'))
		return result_local(r, CP_ERR_INVALID, "bad ARI cert id");
	if ((rc = acme_directory(c, NULL, r)) != CP_OK)
		return rc;
	base = dir_url(c, "renewalInfo");
	if (!base) {
		snprintf(r->detail, sizeof(r->detail), "the CA offers no renewalInfo (ARI)");
		return CP_ERR_NOT_FOUND;
	}
	/* RFC 9773 4.1: the path is the base URL, a slash, then the cert id. */
	url = cp_aprintf("%s%s%s", base, base[strlen(base) - 1] == '/' ? "" : "/", cert_id);
	if (!url)
		return result_local(r, CP_ERR_NOMEM, "out of memory");
	if ((rc = http_exchange(c, "GET", url, NULL, "application/json", &h, r)) != CP_OK)
		goto out;
	if ((rc = judge_status(&h, r)) != CP_OK)
		goto out;
	if ((rc = parse_object(&h, url, &o, r)) != CP_OK)
		goto out;
	if (!json_is_object(json_object_get(o, "suggestedWindow"))) {
		rc = result_protocol(r, "renewalInfo without suggestedWindow", url);
		goto out;
	}
	*info = o;
	o = NULL;
out:
	json_decref(o);
	free(url);
	resp_clear(&h);
	return rc;
}

cp_rc acme_revoke_cert(struct acme_client *c, const uint8_t *cert_der, size_t der_len, int reason,
		       const struct crypto_key *cert_key, struct acme_result *r)
{
	struct acme_result tmp;
	struct http_resp h = { 0 };
	json_t *payload = NULL;
	char *cert = NULL, *body = NULL;
	const char *url;
	cp_rc rc;

	assert(c);
	if (!r)
		r = &tmp;
	result_reset(r);
	if (!cert_der || der_len == 0)
		return result_local(r, CP_ERR_INVALID, "no certificate to revoke");
	if (reason < 0 || reason > 10 || reason == 7)
		return result_local(r, CP_ERR_INVALID, "not an RFC 5280 reason code");
	if ((rc = acme_directory(c, NULL, r)) != CP_OK)
		return rc;
	url = dir_url(c, "revokeCert");
	if (!url || !*url)
		return result_local(r, CP_ERR_INVALID, "the CA offers no revokeCert");
	cert = cp_b64url(cert_der, der_len);
	payload = cert ? json_pack("{s:s, s:i}", "certificate", cert, "reason", reason) : NULL;
	body = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
	if (!body) {
		rc = result_local(r, CP_ERR_NOMEM, "out of memory");
		goto out;
	}
	/* RFC 8555 7.6: kid of the account that ordered it, or jwk of the
	 * certificate's own key. */
	rc = cert_key ? signed_post_as(c, cert_key, url, body, true, NULL, &h, r)
		      : signed_post(c, url, body, false, NULL, &h, r);
	if (rc != CP_OK && strcmp(r->type, ACME_PROBLEM_NS "alreadyRevoked") == 0)
		rc = CP_OK; /* the outcome asked for: idempotent */
out:
	json_decref(payload);
	free(cert);
	free(body);
	resp_clear(&h);
	return rc;
}
