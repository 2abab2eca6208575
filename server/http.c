/*
 * http.c - the API listener. libmicrohttpd runs a thread pool; each request
 * is collected (body capped at max_body_bytes), routed through the static
 * table, authenticated, rate limited, checked for an Idempotency-Key replay,
 * handed to its handler with this thread's database connection, and answered
 * with one JSON log line. CORS preflights for configured origins are
 * answered here so that no handler has to know about browsers.
 */
#include "server/server_internal.h"
#include "crypto/crypto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

/* Per-connection request state between the access handler's calls. */
struct req_state {
	char *body;        /* collected upload */
	size_t len, cap;
	bool too_large;    /* over max_body_bytes: discard, answer 413 */
	/* Identity of the caller; api_req points here, and the request log
	 * reads it after dispatch, so it lives as long as the request. */
	char tenant[CP_UUID_LEN + 1];
	char key_id[CP_UUID_LEN + 1];
	int64_t start_ms;
};

struct server_http {
	struct MHD_Daemon *daemon;
	const struct api_ctx *ctx;
};

/* ------------------------------------------------------------ rate limit */

/* Token buckets by actor, in a small open-addressed table. Buckets of keys
 * that stop calling are simply overwritten when the table fills. */
#define BUCKETS 4096
static struct bucket {
	char actor[CP_UUID_LEN + 1];
	double tokens;
	int64_t at_ms;
} buckets[BUCKETS];
static pthread_mutex_t bucket_lock = PTHREAD_MUTEX_INITIALIZER;

/* Take a token for actor; false (and *retry seconds) if it has none. */
static bool rate_take(const struct cp_config *cfg, const char *actor, int *retry)
{
	uint64_t h = 1469598103934665603ull;
	struct bucket *b = NULL;
	int64_t now = cp_mono_ms();
	bool ok;

	if (cfg->rate_limit_per_second <= 0)
		return true;
	for (const char *p = actor; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	pthread_mutex_lock(&bucket_lock);
	for (size_t i = 0; i < 8; i++) {
		struct bucket *c = &buckets[(h + i) % BUCKETS];
		if (strcmp(c->actor, actor) == 0) {
			b = c;
			break;
		}
		if (!b || c->at_ms < b->at_ms)
			b = c; /* the stalest slot, in case actor is new */
	}
	if (strcmp(b->actor, actor) != 0) {
		snprintf(b->actor, sizeof(b->actor), "%s", actor);
		b->tokens = cfg->rate_limit_burst;
		b->at_ms = now;
	}
	b->tokens += (double)(now - b->at_ms) * cfg->rate_limit_per_second / 1000.0;
	if (b->tokens > cfg->rate_limit_burst)
		b->tokens = cfg->rate_limit_burst;
	b->at_ms = now;
	ok = b->tokens >= 1.0;
	if (ok)
		b->tokens -= 1.0;
	else
		*retry = 1 + (int)((1.0 - b->tokens) / cfg->rate_limit_per_second);
	pthread_mutex_unlock(&bucket_lock);
	return ok;
}

/* ----------------------------------------------------------------- CORS */

static const char *cors_origin(const struct cp_config *cfg, struct MHD_Connection *c)
{
	const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
	size_t i;
	json_t *v;

	if (!origin)
		return NULL;
	json_array_foreach(cfg->cors_origins, i, v) {
		const char *allowed = json_string_value(v);
		if (strcmp(allowed, "*") == 0 || strcmp(allowed, origin) == 0)
			return origin;
	}
	return NULL;
}

/* --------------------------------------------------------------- answer */

static enum MHD_Result query_collect(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	(void)kind;
	/* The first occurrence wins; values must be UTF-8 to be used at all. */
	if (value && !json_object_get(cls, key) && cp_utf8_valid(key, strlen(key)) &&
	    cp_utf8_valid(value, strlen(value)))
		json_object_set_new(cls, key, json_string(value));
	return MHD_YES;
}

/* Authenticate the bearer token: operator or a tenant key. */
static cp_rc authenticate(struct api_req *req, struct MHD_Connection *c,
			  char tenant[CP_UUID_LEN + 1], char key_id[CP_UUID_LEN + 1])
{
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	const char *xt = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Tenant-ID");
	char hash[65];
	json_t *t = NULL;
	cp_rc rc;

	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 || !auth[7])
		return CP_ERR_UNAUTHORIZED;
	cp_sha256_hex(auth + 7, strlen(auth + 7), hash);
	if (CRYPTO_memcmp(hash, req->ctx->operator_token_hash, 64) == 0) {
		req->is_operator = true;
		req->actor = "operator";
		if (!xt)
			return CP_OK;
		if (!cp_uuid_valid(xt))
			return CP_ERR_NOT_FOUND;
		rc = db_tenant_get(req->db, xt, &t);
		json_decref(t);
		if (rc != CP_OK)
			return rc;
		snprintf(tenant, CP_UUID_LEN + 1, "%s", xt);
		req->tenant_id = tenant;
		return CP_OK;
	}
	/* The lookup is by the hash of a 256-bit random key: timing reveals
	 * nothing usable about any stored key. */
	rc = db_apikey_lookup(req->db, hash, tenant, key_id);
	if (rc == CP_ERR_NOT_FOUND)
		return CP_ERR_UNAUTHORIZED;
	if (rc != CP_OK)
		return rc;
	if (xt && strcmp(xt, tenant) != 0)
		return CP_ERR_NOT_FOUND;
	req->tenant_id = tenant;
	req->actor = key_id;
	return CP_OK;
}

/* Replay a stored response for (scope, Idempotency-Key), or note mismatch.
 * Returns true if resp was filled. */
static bool idem_replay(struct api_req *req, struct api_resp *resp, const char *scope,
			const char *key, const char *body_hash, bool *replayed)
{
	struct db_idem rec;
	cp_rc rc = db_idem_get(req->db, scope, key, 86400, &rec);

	if (rc == CP_ERR_NOT_FOUND)
		return false;
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, NULL);
		return true;
	}
	if (strcmp(rec.body_hash, body_hash) != 0 || strcmp(rec.method, req->method) != 0 ||
	    strcmp(rec.path, req->path) != 0) {
		api_problem_field(resp, "Idempotency-Key",
				  "was already used with a different request in the last 24 hours");
	} else if (strncmp(rec.response, "cpk1:", 5) == 0) {
		/* A sealed response (it holds a secret): open it for the replay. */
		char *aad = cp_aprintf("idempotency:%s:%s", scope, key), *pt = NULL;
		size_t n = 0;
		if (aad && crypto_open(req->ctx->keyring, aad, rec.response, &pt, &n) == CP_OK) {
			api_reply_text(resp, rec.status, "application/json", pt, n);
			resp->no_store = true;
			*replayed = true;
		} else {
			api_problem(resp, 500, "a stored idempotent response cannot be opened", NULL);
		}
		crypto_wipe_free(pt);
		free(aad);
	} else {
		api_reply_text(resp, rec.status, NULL, rec.response, rec.response_len);
		/* content types are static strings in responses; map the stored one */
		resp->content_type = strcmp(rec.content_type, "application/problem+json") == 0
					     ? "application/problem+json"
					     : "application/json";
		*replayed = true;
	}
	db_idem_clear(&rec);
	return true;
}

/* Record the response to (scope, Idempotency-Key) for replay. A response
 * carrying a secret (no_store: an API key, a webhook secret) is sealed
 * under the master key, with the record's identity as authenticated data,
 * so the idempotency table never holds a secret in clear. */
static void idem_store(struct api_req *req, struct api_resp *resp, const char *scope,
		       const char *key, const char *body_hash)
{
	struct db_idem rec = { .status = resp->status };
	char *text = resp->json ? json_dumps(resp->json, JSON_COMPACT) : NULL;
	char *aad = NULL, *sealed = NULL;

	snprintf(rec.body_hash, sizeof(rec.body_hash), "%s", body_hash);
	snprintf(rec.method, sizeof(rec.method), "%s", req->method);
	rec.path = (char *)req->path;
	rec.content_type = (char *)(resp->content_type ? resp->content_type : "application/json");
	rec.response = text ? text : resp->text ? resp->text : "";
	if (resp->no_store) {
		aad = cp_aprintf("idempotency:%s:%s", scope, key);
		if (!aad || crypto_seal(req->ctx->keyring, aad, rec.response, strlen(rec.response),
					&sealed) != CP_OK)
			goto out;
		rec.response = sealed;
	}
	rec.response_len = strlen(rec.response);
	if (db_idem_put(req->db, scope, key, &rec) != CP_OK)
		cp_logf(CP_LOG_WARN, "http.idempotency", "could not store record");
out:
	if (resp->no_store)
		crypto_wipe_free(text);
	else
		free(text);
	free(aad);
	free(sealed);
}

/* Build, route and run one complete request. Fills resp; *matched is the
 * route (for logs and metrics), left NULL when none matched. */
static void dispatch(struct server_http *h, struct MHD_Connection *c, const char *method,
		     const char *url, struct req_state *rs, struct api_req *req,
		     struct api_resp *resp, const struct server_route **matched, bool *replayed)
{
	char params_buf[512], allow[64];
	const char *idem = NULL;
	char body_hash[65], scope[CP_UUID_LEN + 1];
	const struct server_route *route;
	bool known;
	int retry = 0;
	cp_rc rc;

	route = server_route_match(method, url, req->params, params_buf, sizeof(params_buf),
				   &known, allow, sizeof(allow));
	if (!route) {
		if (known && strcmp(method, "OPTIONS") == 0) {
			resp->status = 204;
			snprintf(resp->allow, sizeof(resp->allow), "%s", allow);
			return;
		}
		if (known) {
			api_problem(resp, 405, "this path does not accept that method", NULL);
			snprintf(resp->allow, sizeof(resp->allow), "%s", allow);
		} else {
			api_problem(resp, 404, "no such route", NULL);
		}
		return;
	}
	*matched = route;
	if (rs->too_large) {
		api_problem(resp, 413, "the request body is larger than max_body_bytes", NULL);
		return;
	}
	req->db = db_thread();
	if (!req->db) {
		api_problem(resp, 503, "the database cannot be opened", NULL);
		return;
	}
	if (route->auth == SERVER_AUTH_KEY ||
	    (route->auth == SERVER_AUTH_METRICS && !h->ctx->cfg->metrics_public)) {
		rc = authenticate(req, c, rs->tenant, rs->key_id);
		if (rc == CP_ERR_NOT_FOUND) {
			api_problem(resp, 404, "no such tenant (X-Tenant-ID)", NULL);
			return;
		}
		if (rc != CP_OK) {
			api_reply_rc(resp, rc, NULL);
			return;
		}
		if (!rate_take(h->ctx->cfg, req->actor, &retry)) {
			api_problem(resp, 429, "rate limit exceeded for this API key", NULL);
			resp->retry_after = retry;
			return;
		}
	}
	if (rs->len > 0) {
		const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
		json_error_t err;
		if (ct && strncasecmp(ct, "application/json", 16) != 0 &&
		    strncasecmp(ct, "application/merge-patch+json", 28) != 0) {
			api_problem(resp, 415, "the body must be application/json", NULL);
			return;
		}
		/* Any JSON text parses (RFC 8259): a well-formed scalar body is then a
		 * 422 from the handler's spec, not a 400. */
		req->body = json_loadb(rs->body, rs->len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
				       &err);
		if (!req->body) {
			char detail[256];
			snprintf(detail, sizeof(detail), "malformed JSON at line %d column %d: %s",
				 err.line, err.column, err.text);
			api_problem(resp, 400, detail, NULL);
			return;
		}
	}
	if (strcmp(method, "POST") == 0)
		idem = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
	if (idem) {
		if (!*idem || strlen(idem) > 255) {
			api_problem_field(resp, "Idempotency-Key", "must be 1 to 255 characters");
			return;
		}
		snprintf(scope, sizeof(scope), "%s", req->tenant_id ? req->tenant_id : "operator");
		cp_sha256_hex(rs->body ? rs->body : "", rs->len, body_hash);
		if (idem_replay(req, resp, scope, idem, body_hash, replayed))
			return;
	}
	route->handler(req, resp);
	if (idem && resp->status < 500)
		idem_store(req, resp, scope, idem, body_hash);
}

static void wipe_free(void *p)
{
	crypto_wipe_free(p);
}

static enum MHD_Result send_response(struct server_http *h, struct MHD_Connection *c,
				     struct api_resp *resp, const char *request_id,
				     const char *method, bool replayed)
{
	struct MHD_Response *r;
	char *body = NULL;
	size_t len = 0;
	const char *origin = cors_origin(h->ctx->cfg, c);
	enum MHD_Result ret;

	if (resp->json) {
		body = json_dumps(resp->json, JSON_COMPACT);
		len = body ? strlen(body) : 0;
	} else if (resp->text) {
		body = resp->text;
		len = resp->text_len;
		resp->text = NULL;
	}
	if (body && resp->no_store)
		/* A secret (private key, API key, webhook secret): wiped, not just
		 * freed, once libmicrohttpd has sent it. */
		r = MHD_create_response_from_buffer_with_free_callback_cls(len, body, wipe_free, body);
	else
		r = MHD_create_response_from_buffer(len, body ? body : (char *)"",
						    body ? MHD_RESPMEM_MUST_FREE
							 : MHD_RESPMEM_PERSISTENT);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	if (len || resp->json)
		MHD_add_response_header(r, "Content-Type",
					resp->content_type ? resp->content_type : "application/json");
	MHD_add_response_header(r, "X-Request-Id", request_id);
	if (resp->allow[0])
		MHD_add_response_header(r, "Allow", resp->allow);
	if (resp->retry_after > 0) {
		char ra[16];
		snprintf(ra, sizeof(ra), "%d", resp->retry_after);
		MHD_add_response_header(r, "Retry-After", ra);
	}
	if (resp->no_store)
		MHD_add_response_header(r, "Cache-Control", "no-store");
	if (replayed)
		MHD_add_response_header(r, "Idempotent-Replayed", "true");
	if (origin) {
		MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
		MHD_add_response_header(r, "Vary", "Origin");
		MHD_add_response_header(r, "Access-Control-Expose-Headers",
					"X-Request-Id, Retry-After, Location, Idempotent-Replayed");
		if (strcmp(method, "OPTIONS") == 0) {
			MHD_add_response_header(r, "Access-Control-Allow-Methods",
						resp->allow[0] ? resp->allow : "GET");
			MHD_add_response_header(r, "Access-Control-Allow-Headers",
						"Authorization, Content-Type, Idempotency-Key, X-Tenant-ID");
			MHD_add_response_header(r, "Access-Control-Max-Age", "600");
		}
	}
	ret = MHD_queue_response(c, (unsigned)resp->status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version,
				  const char *upload, size_t *upload_size, void **con_cls)
{
	struct server_http *h = cls;
	struct req_state *rs = *con_cls;
	struct api_req req = { 0 };
	struct api_resp resp = { .status = 500 };
	const struct server_route *route = NULL;
	const char *route_name;
	char request_id[CP_UUID_LEN + 1];
	bool replayed = false;
	enum MHD_Result ret;
	struct cp_logline log;
	double secs;

	(void)version;
	if (!rs) {
		const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
		rs = calloc(1, sizeof(*rs));
		if (!rs)
			return MHD_NO;
		rs->start_ms = cp_mono_ms();
		if (cl && strtoull(cl, NULL, 10) > (unsigned long long)h->ctx->cfg->max_body_bytes)
			rs->too_large = true;
		*con_cls = rs;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!rs->too_large && rs->len + *upload_size > (size_t)h->ctx->cfg->max_body_bytes)
			rs->too_large = true;
		if (!rs->too_large) {
			if (rs->len + *upload_size + 1 > rs->cap) {
				/* Not realloc: the old buffer may hold a private key or a
				 * passphrase and is wiped, not left in the heap. */
				size_t cap = (rs->len + *upload_size + 1) * 2;
				char *nb = malloc(cap);
				if (!nb)
					return MHD_NO;
				if (rs->len)
					memcpy(nb, rs->body, rs->len);
				crypto_wipe_free_buf(rs->body, rs->cap);
				rs->body = nb;
				rs->cap = cap;
			}
			memcpy(rs->body + rs->len, upload, *upload_size);
			rs->len += *upload_size;
			rs->body[rs->len] = '\0';
		}
		*upload_size = 0;
		return MHD_YES;
	}

	cp_uuid(request_id);
	req.ctx = h->ctx;
	req.method = method;
	req.path = url;
	req.request_id = request_id;
	req.query = json_object();
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, query_collect, req.query);
	dispatch(h, c, method, url, rs, &req, &resp, &route, &replayed);
	ret = send_response(h, c, &resp, request_id, method, replayed);

	secs = (double)(cp_mono_ms() - rs->start_ms) / 1000.0;
	server_metrics_request(route, method, resp.status, secs);
	route_name = route ? route->pattern : "unmatched";
	/* One line a request. The URL path carries ids only; query strings,
	 * headers and bodies (keys, PEM) never reach the log. */
	cp_logline_begin(&log, CP_LOG_INFO, "http.request");
	cp_logline_str(&log, "request_id", request_id);
	cp_logline_str(&log, "method", method);
	cp_logline_str(&log, "path", url);
	cp_logline_str(&log, "route", route_name);
	cp_logline_int(&log, "status", resp.status);
	cp_logline_num(&log, "duration_ms", secs * 1000.0);
	cp_logline_str(&log, "tenant_id", req.tenant_id);
	cp_logline_str(&log, "actor", req.actor);
	cp_logline_end(&log);

	json_decref(req.query);
	json_decref(req.body);
	json_decref(resp.json);
	if (resp.no_store)
		crypto_wipe_free_buf(resp.text, resp.text_len);
	else
		free(resp.text);
	return ret;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct req_state *rs = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (rs) {
		crypto_wipe_free_buf(rs->body, rs->cap); /* uploads carry keys and passphrases */
		free(rs);
	}
	*con_cls = NULL;
}

/* Parse "host:port" / "[v6]:port" into a socket address. */
static cp_rc parse_listen(const char *s, struct sockaddr_storage *ss)
{
	char host[128];
	const char *colon = strrchr(s, ':');
	size_t hl;
	long port;
	char *end;

	memset(ss, 0, sizeof(*ss));
	if (!colon)
		return CP_ERR_INVALID;
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535)
		return CP_ERR_INVALID;
	hl = (size_t)(colon - s);
	if (hl >= sizeof(host))
		return CP_ERR_INVALID;
	memcpy(host, s, hl);
	host[hl] = '\0';
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
		host[hl - 1] = '\0';
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		return inet_pton(AF_INET6, host + 1, &a6->sin6_addr) == 1 ? CP_OK : CP_ERR_INVALID;
	} else {
		struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		if (strcmp(host, "localhost") == 0)
			snprintf(host, sizeof(host), "127.0.0.1");
		return inet_pton(AF_INET, host, &a4->sin_addr) == 1 ? CP_OK : CP_ERR_INVALID;
	}
}

/* Start a libmicrohttpd daemon on listen ("host:port") with a thread pool.
 * Shared by the API listener and the HTTP-01 responder. */
cp_rc server_listen_daemon(const char *listen, int threads, MHD_AccessHandlerCallback cb,
			   void *cls, MHD_RequestCompletedCallback done, struct MHD_Daemon **out)
{
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG;

	if (parse_listen(listen, &ss) != CP_OK) {
		cp_logf(CP_LOG_ERROR, "http.listen", "bad listen address \"%s\"", listen);
		return CP_ERR_INVALID;
	}
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	*out = MHD_start_daemon(flags, 0, NULL, NULL, cb, cls,
				MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads,
				MHD_OPTION_NOTIFY_COMPLETED, done, NULL,
				MHD_OPTION_CONNECTION_TIMEOUT, 30u,
				MHD_OPTION_CONNECTION_LIMIT, 4096u,
				MHD_OPTION_END);
	if (!*out) {
		cp_logf(CP_LOG_ERROR, "http.listen", "cannot listen on %s", listen);
		return CP_ERR_IO;
	}
	return CP_OK;
}

cp_rc server_http_start(const struct api_ctx *ctx, struct server_http **out)
{
	struct server_http *h = calloc(1, sizeof(*h));
	cp_rc rc;

	if (!h)
		return CP_ERR_NOMEM;
	h->ctx = ctx;
	rc = server_listen_daemon(ctx->cfg->listen, ctx->cfg->http_threads, on_request, h,
				  on_completed, &h->daemon);
	if (rc != CP_OK) {
		free(h);
		return rc;
	}
	cp_log_json(CP_LOG_INFO, "http.listening", json_pack("{s:s}", "listen", ctx->cfg->listen));
	*out = h;
	return CP_OK;
}

void server_http_stop(struct server_http *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->daemon);
	free(h);
}
