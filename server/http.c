/*
 * http.c - the API listener, and the libmicrohttpd daemon setup it shares
 * with the HTTP-01 responder (server_listener_*).
 *
 * A request is collected (body capped at max_body_bytes, an over-long
 * declared Content-Length refused before the body is read), routed through
 * the static table, authenticated (an expired key is a 401), rate limited,
 * checked against the key's scope (a "read" key: GET/HEAD only, else 403)
 * and the route's operator-only flag, its Idempotency-Key reserved, and handed to
 * its handler with this thread's database connection; routes flagged
 * offload run on a net thread (netpool.c) with the connection suspended.
 * Each answer is one JSON log line. CORS preflights for configured origins
 * are answered here so that no handler has to know about browsers.
 *
 * Limits (both listeners): libmicrohttpd's own per-IP connection limit,
 * idle timeout, memory limit and strict client mode; on top of them, ours
 * (marked "OUR CHECK" below): an absolute deadline to receive a request,
 * and the framing/header rules of server_listener_check.
 */
#include "common/buf.h"
#include "crypto/crypto.h"
#include "server/server_internal.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

/* An Idempotency-Key reservation lasts this long if its holder dies; longer
 * than any handler's own network budget, so a live holder never loses it. */
#define IDEM_LEASE_SECONDS 300
/* Idempotency records are replayed for 24 hours. */
#define IDEM_MAX_AGE 86400

enum rs_phase { RS_LOCAL, RS_NET, RS_NET_DONE };

/* Per-request state between the access handler's calls. Everything a
 * handler borrows (api_req's strings, params, query, body) lives here, so
 * the request stays valid while it runs on a net thread. */
struct req_state {
	struct server_http *h;
	struct MHD_Connection *c;
	struct cp_buf body; /* collected upload, capped at max_body_bytes; wiped */
	bool too_large;	    /* over max_body_bytes while reading: answer 413 */
	bool early;	    /* answered at the first call (framing): discard */
	enum rs_phase phase;
	/* Identity of the caller; req points here, and the request log reads
	 * it after dispatch, so it lives as long as the request. */
	char tenant[CP_UUID_LEN + 1];
	char key_id[CP_UUID_LEN + 1];
	char request_id[CP_UUID_LEN + 1];
	char method[16];
	char *path;
	char params_buf[512];
	int64_t start_us;
	struct api_req req;
	struct api_resp resp;
	const struct server_route *route;
	bool replayed;
	/* Idempotency-Key held by this request (idem_held). */
	bool idem_held;
	char idem_key[256];
	char body_hash[65];
	struct db_idem_scope scope;
	char slot_tenant[CP_UUID_LEN + 1]; /* net pool slot owner */
	struct server_sse_stream *sse;	   /* an admitted event stream (sse.c) */
};

struct server_http {
	struct server_listener *listener;
	struct server_netpool *net;
	struct server_sse *sse;
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
	/* this instance's share of the limit (instances behind one balancer
	 * see about 1/N of each key's requests) */
	double rate = (double)cfg->rate_limit_per_second / server_instances_live();
	double burst = (double)cfg->rate_limit_burst / server_instances_live();
	bool ok;

	if (cfg->rate_limit_per_second <= 0)
		return true;
	burst = burst < 1.0 ? 1.0 : burst;
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
		b->tokens = burst;
		b->at_ms = now;
	}
	b->tokens += (double)(now - b->at_ms) * rate / 1000.0;
	if (b->tokens > burst)
		b->tokens = burst;
	b->at_ms = now;
	ok = b->tokens >= 1.0;
	if (ok)
		b->tokens -= 1.0;
	else
		*retry = 1 + (int)((1.0 - b->tokens) / rate);
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
	json_array_foreach(cfg->cors_origins, i, v)
	{
		const char *allowed = json_string_value(v);
		if (strcmp(allowed, "*") == 0 || strcmp(allowed, origin) == 0)
			return origin;
	}
	return NULL;
}

/* --------------------------------------------------------------- answer */

static enum MHD_Result query_collect(void *cls, enum MHD_ValueKind kind, const char *key,
				     const char *value)
{
	(void)kind;
	/* The first occurrence wins; values must be UTF-8 to be used at all. */
	if (value && !json_object_get(cls, key) && cp_utf8_valid(key, strlen(key)) &&
	    cp_utf8_valid(value, strlen(value)))
		json_object_set_new(cls, key, json_string(value));
	return MHD_YES;
}

/* Authenticate the bearer token: operator or a tenant key (its scope and
 * expiry in grant; the operator's grant is all-zero: admin, no expiry). */
static cp_rc authenticate(struct api_req *req, struct MHD_Connection *c,
			  char tenant[CP_UUID_LEN + 1], char key_id[CP_UUID_LEN + 1],
			  struct db_apikey_grant *grant)
{
	const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	const char *xt = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Tenant-ID");
	char hash[65];
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
		rc = db_tenant_exists(req->db, xt); /* cached: db/tenants.c */
		if (rc != CP_OK)
			return rc;
		snprintf(tenant, CP_UUID_LEN + 1, "%s", xt);
		req->tenant_id = tenant;
		return CP_OK;
	}
	/* The lookup is by the hash of a 256-bit random key: timing reveals
	 * nothing usable about any stored key. Found keys are cached and
	 * revoked by key or tenant deletion (db/tenants.c). */
	rc = db_apikey_lookup(req->db, hash, tenant, key_id, grant);
	if (rc == CP_ERR_NOT_FOUND) {
		/* An edge key (db/edge.c): no tenant, read-only, and only the
		 * edge routes (the gate in prepare). */
		rc = db_edge_key_lookup(req->db, hash, key_id);
		if (rc == CP_OK && xt)
			return CP_ERR_NOT_FOUND;
		if (rc == CP_OK) {
			req->is_edge = true;
			req->actor = key_id;
			grant->read_only = true;
			return CP_OK;
		}
	}
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

/* ---------------------------------------------------------- idempotency */

/* The authenticated data that binds a sealed stored response to its key:
 * "<table>:<row id>" as db/secrets.c re-seals it on key rotation. */
static char *idem_aad(const struct req_state *rs)
{
	return cp_aprintf("idempotency:%s:%s:%s:%s:%s", rs->scope.actor,
			  rs->scope.tenant_id ? rs->scope.tenant_id : "", rs->scope.method,
			  rs->scope.path, rs->scope.key);
}

/* Reserve the request's Idempotency-Key before its handler runs. Returns
 * true when resp was filled (a replay, a 409 for a twin in progress, a 422
 * for a key reused with another body, an error); false to run the handler
 * (rs->idem_held says whether a reservation is held). */
static bool idem_begin(struct req_state *rs, const char *key)
{
	struct api_req *req = &rs->req;
	struct api_resp *resp = &rs->resp;
	struct db_idem rec = { 0 };
	enum db_idem_claim claim;
	cp_rc rc;

	if (!*key || strlen(key) >= sizeof(rs->idem_key)) {
		api_problem_field(resp, "Idempotency-Key", "must be 1 to 255 characters");
		return true;
	}
	snprintf(rs->idem_key, sizeof(rs->idem_key), "%s", key);
	/* The key's scope is (actor, tenant, method, path): only the caller
	 * that made the first request, authenticated and past the route's
	 * role gate, can ever get its replay. */
	rs->scope = (struct db_idem_scope){ .actor = req->actor,
					    .tenant_id = req->tenant_id,
					    .method = rs->method,
					    .path = rs->path,
					    .key = rs->idem_key };
	cp_sha256_hex(cp_buf_str(&rs->body), rs->body.len, rs->body_hash);
	rc = db_idem_reserve(req->db, &rs->scope, rs->request_id, rs->body_hash, IDEM_LEASE_SECONDS,
			     IDEM_MAX_AGE, &claim, &rec);
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, NULL);
		return true;
	}
	if (claim == DB_IDEM_RESERVED) {
		rs->idem_held = true;
		db_idem_clear(&rec);
		return false;
	}
	if (strcmp(rec.body_hash, rs->body_hash) != 0) {
		api_problem_field(
			resp, "Idempotency-Key",
			"was already used with a different request body in the last 24 hours");
	} else if (claim == DB_IDEM_PENDING) {
		api_problem(resp, 409,
			    "a request with this Idempotency-Key is still in progress; retry later",
			    NULL);
		resp->retry_after = 1;
	} else if (strncmp(rec.response, "cpk1:", 5) == 0) {
		/* A sealed response (it holds a secret): open it for the replay. */
		char *aad = idem_aad(rs), *pt = NULL;
		size_t n = 0;
		if (aad && crypto_open(req->ctx->keyring, aad, rec.response, &pt, &n) == CP_OK) {
			api_reply_text(resp, rec.status, "application/json", pt, n);
			resp->no_store = true;
			rs->replayed = true;
		} else {
			api_problem(resp, 500, "a stored idempotent response cannot be opened",
				    NULL);
		}
		crypto_wipe_free(pt);
		free(aad);
	} else {
		api_reply_text(resp, rec.status, NULL, rec.response, rec.response_len);
		/* content types are static strings in responses; map the stored one */
		resp->content_type = strcmp(rec.content_type, "application/problem+json") == 0
					     ? "application/problem+json"
					     : "application/json";
		rs->replayed = true;
	}
	db_idem_clear(&rec);
	return true;
}

/* Record the handler's response in the held reservation for replay, or
 * release it when the outcome is retryable (5xx, 429) so that a retry runs
 * again. A response carrying a secret (no_store: an API key, a webhook
 * secret) is sealed under the master key, with the record's identity as
 * authenticated data, so the idempotency table never holds a secret in
 * clear. */
static void idem_end(struct req_state *rs)
{
	struct api_req *req = &rs->req;
	struct api_resp *resp = &rs->resp;
	struct db_idem rec = { .status = resp->status };
	char *text = NULL, *aad = NULL, *sealed = NULL;
	bool stored = false;

	if (!rs->idem_held)
		return;
	rs->idem_held = false;
	if (resp->status >= 500 || resp->status == 429)
		goto out;
	text = resp->json ? json_dumps(resp->json, JSON_COMPACT) : NULL;
	snprintf(rec.body_hash, sizeof(rec.body_hash), "%s", rs->body_hash);
	rec.content_type = (char *)(resp->content_type ? resp->content_type : "application/json");
	rec.response = text ? text : resp->text ? resp->text : "";
	if (resp->no_store) {
		aad = idem_aad(rs);
		if (!aad || crypto_seal(req->ctx->keyring, aad, rec.response, strlen(rec.response),
					&sealed) != CP_OK)
			goto out;
		rec.response = sealed;
	}
	rec.response_len = strlen(rec.response);
	stored = db_idem_finish(req->db, &rs->scope, rs->request_id, &rec) == CP_OK;
	if (!stored)
		cp_logf(CP_LOG_WARN, "http.idempotency", "could not store a record");
out:
	/* Not recorded: free the key, so that a retry runs again. */
	if (!stored && db_idem_release(req->db, &rs->scope, rs->request_id) != CP_OK)
		cp_logf(CP_LOG_WARN, "http.idempotency", "could not release a reservation");
	if (resp->no_store)
		crypto_wipe_free(text);
	else
		free(text);
	free(aad);
	free(sealed);
}

/* ------------------------------------------------------------- dispatch */

/* A handler met a database conflict (api_resp.retryable): how often the
 * request runs again before the client gets the 503. */
#define HANDLER_ATTEMPTS 4

/* A transaction is never left open on a thread's connection: it would hold
 * locks (and, on PostgreSQL, a snapshot) for whatever runs next on it. A
 * handler that leaves one is a bug: rolled back here, loudly. */
static void handler_tx_check(struct req_state *rs)
{
	if (!db_in_tx(rs->req.db))
		return;
	cp_logf(CP_LOG_ERROR, "http.tx_left_open", "%s %s left a transaction open",
		rs->route->method, rs->route->pattern);
	db_rollback(rs->req.db);
	assert(!"a handler left a transaction open");
}

/* Run the route's handler on this thread's database connection; a
 * conflict rolled back (busy, serialization failure, deadlock) before any
 * commit (db_commits: a statement outside a transaction counts as one)
 * runs the whole handler again after a short random pause, so the client
 * sees a 503 only when it keeps losing. */
static void run_handler(struct req_state *rs)
{
	for (int attempt = 1;; attempt++) {
		uint64_t commits = db_commits(rs->req.db);
		uint8_t r = 0;

		rs->route->handler(&rs->req, &rs->resp);
		handler_tx_check(rs);
		/* again only when nothing of this attempt is durable: a handler
		 * that committed a first transaction before the conflict would
		 * apply it twice */
		if (!rs->resp.retryable || attempt == HANDLER_ATTEMPTS || rs->resp.stream.on ||
		    db_commits(rs->req.db) != commits)
			break;
		cp_log_json(CP_LOG_INFO, "http.retry",
			    json_pack("{s:s,s:s,s:i}", "method", rs->route->method, "route",
				      rs->route->pattern, "attempt", attempt));
		json_decref(rs->resp.json);
		if (rs->resp.no_store)
			crypto_wipe_free_buf(rs->resp.text, rs->resp.text_len);
		else
			free(rs->resp.text);
		memset(&rs->resp, 0, sizeof(rs->resp));
		if (cp_random(&r, 1) != CP_OK)
			r = (uint8_t)attempt; /* the jitter only spreads retries */
		usleep((useconds_t)(1000 * attempt * (5 + r % 20)));
	}
	idem_end(rs);
	/* An event stream the handler accepted: within the stream limits, or
	 * 429/503 (sse.c). */
	if (rs->resp.stream.on) {
		const char *auth =
			MHD_lookup_connection_value(rs->c, MHD_HEADER_KIND, "Authorization");
		char hash[65];
		assert(auth && strlen(auth) > 7); /* authenticate() passed */
		cp_sha256_hex(auth + 7, strlen(auth + 7), hash);
		(void)server_sse_admit(rs->h->sse, rs->req.tenant_id,
				       rs->req.is_operator ? NULL : hash, &rs->resp, &rs->sse);
	}
}

/* A net thread's turn (netpool.c): run the handler with that thread's own
 * database connection. */
static void net_run(void *arg, bool run)
{
	struct req_state *rs = arg;

	rs->req.db = db_thread();
	if (!run) {
		api_problem(&rs->resp, 503, "the server is stopping", NULL);
		if (rs->req.db)
			idem_end(rs);
	} else if (!rs->req.db) {
		api_problem(&rs->resp, 503, "the database cannot be opened", NULL);
		rs->idem_held = false; /* the lease expires it */
	} else {
		run_handler(rs);
	}
}

/* After net_run, with the tenant's slot free: hand the connection back to
 * libmicrohttpd, which calls the access handler again to answer. */
static void net_done(void *arg)
{
	struct req_state *rs = arg;

	rs->phase = RS_NET_DONE;
	MHD_resume_connection(rs->c);
}

/* Build, route and run one complete request into rs->resp. Returns true
 * when the request went to the net pool (the connection is suspended and
 * the access handler is called again when it is done). */
static bool dispatch(struct req_state *rs)
{
	struct server_http *h = rs->h;
	struct MHD_Connection *c = rs->c;
	struct api_req *req = &rs->req;
	struct api_resp *resp = &rs->resp;
	const char *method = rs->method, *idem = NULL;
	char allow[64];
	const struct server_route *route;
	bool known;
	int retry = 0;
	cp_rc rc;

	route = server_route_match(method, rs->path, req->params, rs->params_buf,
				   sizeof(rs->params_buf), &known, allow, sizeof(allow));
	if (!route) {
		if (known && strcmp(method, "OPTIONS") == 0) {
			resp->status = 204;
			snprintf(resp->allow, sizeof(resp->allow), "%s", allow);
			return false;
		}
		if (known) {
			api_problem(resp, 405, "this path does not accept that method", NULL);
			snprintf(resp->allow, sizeof(resp->allow), "%s", allow);
		} else {
			api_problem(resp, 404, "no such route", NULL);
		}
		return false;
	}
	rs->route = route;
	if (rs->too_large) {
		api_problem(resp, 413, "the request body is larger than max_body_bytes", NULL);
		return false;
	}
	req->db = db_thread();
	if (!req->db) {
		api_problem(resp, 503, "the database cannot be opened", NULL);
		return false;
	}
	if (route->auth == SERVER_AUTH_KEY ||
	    (route->auth == SERVER_AUTH_METRICS && !h->ctx->cfg->metrics_public)) {
		struct db_apikey_grant grant = { 0 };
		rc = authenticate(req, c, rs->tenant, rs->key_id, &grant);
		if (rc == CP_ERR_NOT_FOUND) {
			api_problem(resp, 404, "no such tenant (X-Tenant-ID)", NULL);
			return false;
		}
		if (rc != CP_OK) {
			api_reply_rc(resp, rc, NULL);
			return false;
		}
		/* The one place a key's grant is enforced. The grant may come from
		 * the auth cache, so the clock is read here on every request. */
		if (grant.expires_at > 0 && cp_now() >= grant.expires_at) {
			api_problem(resp, 401, "this API key has expired", NULL);
			return false;
		}
		if (!rate_take(h->ctx->cfg, req->actor, &retry)) {
			api_problem(resp, 429, "rate limit exceeded for this API key", NULL);
			resp->retry_after = retry;
			return false;
		}
		/* After the rate limit: a valid key's refused writes count too. */
		if (grant.read_only && strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
			api_problem(resp, 403,
				    "this API key has scope \"read\": it may only make GET and "
				    "HEAD requests",
				    NULL);
			return false;
		}
	}
	/* The role gate comes before any replay: a caller the route refuses
	 * never sees what another caller's request answered. */
	if (route->operator_only && !api_operator_or_reply(req, resp))
		return false;
	/* Edge keys and the edge routes belong to each other only. */
	if (route->edge_only != req->is_edge) {
		api_problem(resp, 403,
			    route->edge_only ? "this endpoint needs an edge key (role edge)"
					     : "an edge key may only read GET /v1/edge/deployments",
			    NULL);
		return false;
	}
	if (rs->body.len > 0) {
		const char *ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Type");
		json_error_t err;
		if (ct && strncasecmp(ct, "application/json", 16) != 0 &&
		    strncasecmp(ct, "application/merge-patch+json", 28) != 0) {
			api_problem(resp, 415, "the body must be application/json", NULL);
			return false;
		}
		/* Any JSON text parses (RFC 8259): a well-formed scalar body is then a
		 * 422 from the handler's spec, not a 400. */
		req->body = json_loadb(rs->body.p, rs->body.len,
				       JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &err);
		if (!req->body) {
			char detail[256];
			snprintf(detail, sizeof(detail), "malformed JSON at line %d column %d: %s",
				 err.line, err.column, err.text);
			api_problem(resp, 400, detail, NULL);
			return false;
		}
	}
	if (strcmp(method, "POST") == 0)
		idem = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Idempotency-Key");
	if (idem && idem_begin(rs, idem))
		return false;
	if (!route->offload) {
		run_handler(rs);
		return false;
	}
	/* It may wait on the network: a net thread runs it, within the
	 * tenant's share of the pool. */
	snprintf(rs->slot_tenant, sizeof(rs->slot_tenant), "%s",
		 req->tenant_id ? req->tenant_id
		 : req->is_edge ? req->actor
				: "operator");
	rc = server_netpool_acquire(h->net, rs->slot_tenant);
	if (rc != CP_OK) {
		if (rc == CP_ERR_RATE_LIMITED) {
			char detail[160];
			snprintf(detail, sizeof(detail),
				 "this tenant already has net_tenant_concurrency (%d) requests "
				 "waiting on the network",
				 h->ctx->cfg->net_tenant_concurrency);
			api_problem(resp, 429, detail, NULL);
			resp->retry_after = 1;
		} else {
			api_problem(resp, 503, "no capacity for requests that wait on the network",
				    NULL);
			resp->retry_after = 1;
		}
		idem_end(rs);
		return false;
	}
	rs->phase = RS_NET;
	/* Suspend before the job can possibly finish and resume. */
	MHD_suspend_connection(c);
	server_netpool_submit(h->net, rs->slot_tenant, net_run, net_done, rs);
	return true;
}

static void wipe_free(void *p)
{
	crypto_wipe_free(p);
}

/* The URL of what a 201 created, into out (empty when there is none): every
 * creation is a POST to its collection answering the new object with its
 * "id", so it is the request path and that id. A replayed 201 carries its
 * body as text and gets the same Location. Only [0-9a-z-] ids are used, so
 * nothing a body holds can reach a header. */
static void created_location(const char *method, const char *path, const struct api_resp *resp,
			     char *out, size_t n)
{
	json_t *parsed = NULL;
	const char *id;
	size_t len;

	assert(method && resp && out && n > 0);
	out[0] = '\0';
	if (resp->status != 201 || strcmp(method, "POST") != 0 || !path || path[0] != '/')
		return;
	if (!resp->json && resp->text)
		parsed = json_loadb(resp->text, resp->text_len, 0, NULL);
	id = json_string_value(json_object_get(resp->json ? resp->json : parsed, "id"));
	len = id ? strlen(id) : 0;
	if (len > 0 && len <= CP_UUID_LEN &&
	    strspn(id, "0123456789abcdefghijklmnopqrstuvwxyz-") == len)
		snprintf(out, n, "%s/%s", path, id);
	json_decref(parsed);
}

static enum MHD_Result send_response(struct server_http *h, struct MHD_Connection *c,
				     struct api_resp *resp, const char *request_id,
				     const char *method, const char *path, bool replayed,
				     bool close, struct server_sse_stream **sse)
{
	char location[512];
	struct MHD_Response *r;
	char *body = NULL;
	size_t len = 0;
	const char *origin = cors_origin(h->ctx->cfg, c);
	bool streaming = *sse != NULL;
	enum MHD_Result ret;

	/* before the body below takes resp->text */
	created_location(method, path, resp, location, sizeof(location));
	if (resp->json) {
		body = json_dumps(resp->json, JSON_COMPACT);
		len = body ? strlen(body) : 0;
	} else if (resp->text) {
		body = resp->text;
		len = resp->text_len;
		resp->text = NULL;
	}
	if (*sse) {
		/* The response owns the stream from here (freed with it). */
		r = server_sse_response(*sse, c);
		*sse = NULL;
	} else if (body && resp->no_store)
		/* A secret (private key, API key, webhook secret): wiped, not just
		 * freed, once libmicrohttpd has sent it. */
		r = MHD_create_response_from_buffer_with_free_callback_cls(len, body, wipe_free,
									   body);
	else
		r = MHD_create_response_from_buffer(len, body ? body : (char *)"",
						    body ? MHD_RESPMEM_MUST_FREE
							 : MHD_RESPMEM_PERSISTENT);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	if (len || resp->json || streaming)
		MHD_add_response_header(r, "Content-Type",
					resp->content_type ? resp->content_type
							   : "application/json");
	MHD_add_response_header(r, "X-Request-Id", request_id);
	if (resp->allow[0])
		MHD_add_response_header(r, "Allow", resp->allow);
	if (resp->retry_after > 0) {
		char ra[16];
		snprintf(ra, sizeof(ra), "%d", resp->retry_after);
		MHD_add_response_header(r, "Retry-After", ra);
	}
	if (resp->no_store || streaming)
		MHD_add_response_header(r, "Cache-Control", "no-store");
	if (streaming)
		MHD_add_response_header(r, "X-Accel-Buffering", "no"); /* proxies: no buffering */
	/* RFC 9110 15.5.2: a 401 names its scheme (RFC 6750: Bearer). */
	if (resp->status == 401)
		MHD_add_response_header(r, "WWW-Authenticate", "Bearer realm=\"certplane\"");
	if (location[0])
		MHD_add_response_header(r, "Location", location);
	if (resp->etag[0])
		MHD_add_response_header(r, "ETag", resp->etag);
	if (replayed)
		MHD_add_response_header(r, "Idempotent-Replayed", "true");
	if (close)
		MHD_add_response_header(r, "Connection", "close");
	if (origin) {
		MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
		MHD_add_response_header(r, "Vary", "Origin");
		MHD_add_response_header(r, "Access-Control-Expose-Headers",
					"X-Request-Id, Retry-After, Location, Idempotent-Replayed, "
					"WWW-Authenticate, ETag");
		if (strcmp(method, "OPTIONS") == 0) {
			MHD_add_response_header(r, "Access-Control-Allow-Methods",
						resp->allow[0] ? resp->allow : "GET");
			MHD_add_response_header(
				r, "Access-Control-Allow-Headers",
				"Authorization, Content-Type, Idempotency-Key, X-Tenant-ID, "
				"If-Match, If-None-Match");
			MHD_add_response_header(r, "Access-Control-Max-Age", "600");
		}
	}
	ret = MHD_queue_response(c, (unsigned)resp->status, r);
	MHD_destroy_response(r);
	return ret;
}

/* Free what rs owns; rs itself too. */
static void rs_free(struct req_state *rs)
{
	if (!rs)
		return;
	cp_buf_free(&rs->body); /* wiping: uploads carry keys and passphrases */
	/* an event stream admitted but never sent */
	server_sse_stream_free(rs->sse);
	free(rs->path);
	json_decref(rs->req.query);
	json_decref(rs->req.body);
	json_decref(rs->resp.json);
	if (rs->resp.no_store)
		crypto_wipe_free_buf(rs->resp.text, rs->resp.text_len);
	else
		free(rs->resp.text);
	free(rs);
}

/* Write the request's log line (route_name: its route pattern). */
static void request_log(const struct req_state *rs, const char *method, const char *url,
			const char *route_name, double secs)
{
	struct cp_logline log;

	/* One line a request. The URL path carries ids only; query strings,
	 * headers and bodies (keys, PEM) never reach the log. */
	cp_logline_begin(&log, CP_LOG_INFO, "http.request");
	cp_logline_str(&log, "request_id", rs->request_id);
	cp_logline_str(&log, "method", method);
	cp_logline_str(&log, "path", url);
	cp_logline_str(&log, "route", route_name);
	cp_logline_int(&log, "status", rs->resp.status);
	cp_logline_num(&log, "duration_ms", secs * 1000.0);
	cp_logline_str(&log, "tenant_id", rs->req.tenant_id);
	cp_logline_str(&log, "actor", rs->req.actor);
	/* Queued for the log's flusher (cmd_serve starts it): a request never
	 * waits on the log's write(2). */
	cp_logline_end_deferred(&log);
}

/* Send rs->resp and write the request's log line and metrics. */
static enum MHD_Result finish(struct req_state *rs, const char *method, const char *url)
{
	enum MHD_Result ret;
	double secs;

	ret = send_response(rs->h, rs->c, &rs->resp, rs->request_id, method, rs->path, rs->replayed,
			    rs->early, &rs->sse);
	secs = (double)(cp_mono_us() - rs->start_us) / 1e6;
	server_metrics_request(rs->route, method, rs->resp.status, secs);
	request_log(rs, method, url, rs->route ? rs->route->pattern : "unmatched", secs);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	struct server_http *h = cls;
	struct req_state *rs = *con_cls;
	const char *why = NULL;
	int bad;

	(void)version;
	if (!rs) {
		/* First call: the headers are in, the body is not read yet. */
		rs = calloc(1, sizeof(*rs));
		if (!rs)
			return MHD_NO;
		rs->h = h;
		rs->c = c;
		rs->start_us = cp_mono_us();
		cp_buf_init(&rs->body, (size_t)h->ctx->cfg->max_body_bytes);
		rs->body.wipe = true; /* uploads carry keys and passphrases */
		rs->resp.status = 500;
		cp_uuid(rs->request_id);
		*con_cls = rs;
		bad = server_listener_check(c, h->ctx->cfg->max_body_bytes, &why);
		if (!bad)
			return MHD_YES;
		/* Refused on its framing or headers: answer before reading any
		 * body, and close (what follows on the connection cannot be
		 * trusted to start a request). */
		rs->early = true;
		server_listener_answer_early(c);
		api_problem(&rs->resp, bad, why, NULL);
		return finish(rs, method, url);
	}
	if (rs->early) {
		*upload_size = 0;
		return MHD_YES;
	}
	if (*upload_size) {
		if (!rs->too_large) {
			/* The buffer's cap is max_body_bytes: past it, answer 413
			 * and discard the rest. */
			cp_rc rc = cp_buf_add(&rs->body, upload, *upload_size);
			if (rc == CP_ERR_TOO_LARGE)
				rs->too_large = true;
			else if (rc != CP_OK)
				return MHD_NO;
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (rs->phase == RS_NET_DONE)
		return finish(rs, method, url);
	assert(rs->phase == RS_LOCAL);
	server_listener_received(c);
	if (server_portal_path(url)) { /* static files, no API handling */
		enum MHD_Result ret =
			server_portal_answer(h->ctx->cfg, c, url, method, &rs->resp.status);
		request_log(rs, method, url, "portal", (double)(cp_mono_us() - rs->start_us) / 1e6);
		return ret;
	}
	snprintf(rs->method, sizeof(rs->method), "%s", method);
	rs->path = cp_strdup(url);
	rs->req.query = json_object();
	if (!rs->path || !rs->req.query)
		return MHD_NO;
	rs->req.ctx = h->ctx;
	rs->req.method = rs->method;
	rs->req.path = rs->path;
	rs->req.request_id = rs->request_id;
	/* Borrowed: libmicrohttpd keeps header values until the request ends. */
	rs->req.if_match = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-Match");
	rs->req.if_none_match = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "If-None-Match");
	rs->req.last_event_id = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Last-Event-ID");
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, query_collect, rs->req.query);
	if (dispatch(rs))
		return MHD_YES; /* suspended; called again when the net thread is done */
	return finish(rs, method, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct req_state *rs = *con_cls;

	(void)cls;
	(void)c;
	(void)toe;
	if (rs) {
		/* Only the daemon's stop can end a request still on a net thread,
		 * and server_http_stop drains the pool first. */
		assert(rs->phase != RS_NET);
		rs_free(rs);
	}
	*con_cls = NULL;
}

/* ------------------------------------------------------------- listener */

/* One TCP connection, from libmicrohttpd's NOTIFY_CONNECTION STARTED to
 * CLOSED, on its listener's list. */
struct conn_track {
	struct conn_track *prev, *next;
	struct server_listener *l;
	int fd;		  /* our own dup() of the socket, or -1 */
	int64_t since_ms; /* start of the current request's receive window */
	bool received;	  /* the whole request is in: the server's turn */
	bool bad_uri;	  /* %2f or %00 inside the path, %00 in the query */
	bool reaped;
	bool linger; /* answered early: drain what the client still sends */
	int64_t linger_until;
};

/* Connections answered before their body was read linger this long after
 * libmicrohttpd closed them, at most LINGER_MAX at once. */
#define LINGER_MS 2000
#define LINGER_MAX 256

struct server_listener {
	struct MHD_Daemon *daemon;
	MHD_RequestCompletedCallback done;
	void *done_cls;
	int64_t deadline_ms;
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct conn_track head; /* sentinel of the connection list */
	struct conn_track *lingering[LINGER_MAX];
	int n_lingering;
	pthread_t reaper;
	bool reaper_started;
	bool stop;
};

static struct conn_track *track_of(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci ? ci->socket_context : NULL;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context,
			  enum MHD_ConnectionNotificationCode toe)
{
	struct server_listener *l = cls;
	struct conn_track *t;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
		t = calloc(1, sizeof(*t));
		*socket_context = t;
		if (!t)
			return; /* untracked: only MHD's own idle timeout applies */
		/* OUR CHECK (deadline): the reaper shuts the socket down through a
		 * descriptor of its own, so that it can never hit a number
		 * libmicrohttpd has closed and the kernel given to a new
		 * connection; ours is closed only at CLOSED, after MHD is done. */
		t->fd = ci ? fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0) : -1;
		t->since_ms = cp_mono_ms();
		t->l = l;
		pthread_mutex_lock(&l->lock);
		t->next = l->head.next;
		t->prev = &l->head;
		l->head.next->prev = t;
		l->head.next = t;
		pthread_mutex_unlock(&l->lock);
		return;
	}
	t = *socket_context;
	*socket_context = NULL;
	if (!t)
		return;
	pthread_mutex_lock(&l->lock);
	t->prev->next = t->next;
	t->next->prev = t->prev;
	if (t->linger && t->fd >= 0 && l->n_lingering < LINGER_MAX) {
		/* OUR CHECK (lingering close): the client may still be sending
		 * the body we refused; closing on unread data would reset the
		 * connection and lose our answer. Our descriptor keeps the
		 * socket open: no more writes (FIN after the answer), and the
		 * reaper reads and drops the rest for LINGER_MS. */
		shutdown(t->fd, SHUT_WR);
		t->linger_until = cp_mono_ms() + LINGER_MS;
		l->lingering[l->n_lingering++] = t;
		t = NULL;
	}
	pthread_mutex_unlock(&l->lock);
	if (!t)
		return;
	if (t->fd >= 0)
		close(t->fd);
	free(t);
}

/* OUR CHECK (path): libmicrohttpd hands the access handler the decoded
 * path, where "a%2fb" and "a/b" (or a NUL) are one string; the raw URI is
 * only seen here. An encoded '/' or NUL inside a path segment is refused
 * (400), as is a NUL anywhere in the query. */
static void *on_uri(void *cls, const char *uri, struct MHD_Connection *c)
{
	struct conn_track *t = track_of(c);
	bool in_query = false;

	(void)cls;
	if (!t)
		return NULL;
	t->bad_uri = false;
	for (const char *p = uri; *p; p++) {
		if (*p == '?')
			in_query = true;
		if (*p != '%' || !p[1] || !p[2])
			continue;
		if (p[1] == '0' && p[2] == '0')
			t->bad_uri = true;
		if (!in_query && p[1] == '2' && (p[2] == 'f' || p[2] == 'F'))
			t->bad_uri = true;
	}
	return NULL;
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls,
		    enum MHD_RequestTerminationCode toe)
{
	struct server_listener *l = cls;
	struct conn_track *t = track_of(c);

	if (l->done)
		l->done(l->done_cls, c, con_cls, toe);
	if (!t)
		return;
	/* The next request on this connection starts its own window. */
	pthread_mutex_lock(&l->lock);
	t->received = false;
	t->since_ms = cp_mono_ms();
	pthread_mutex_unlock(&l->lock);
}

void server_listener_received(struct MHD_Connection *c)
{
	struct conn_track *t = track_of(c);

	if (!t)
		return;
	pthread_mutex_lock(&t->l->lock);
	t->received = true;
	pthread_mutex_unlock(&t->l->lock);
}

void server_listener_answer_early(struct MHD_Connection *c)
{
	struct conn_track *t = track_of(c);

	if (!t)
		return;
	pthread_mutex_lock(&t->l->lock);
	t->received = true;
	t->linger = true;
	pthread_mutex_unlock(&t->l->lock);
}

/* Read and drop what a lingering connection sends; true when it is done
 * (end of stream, error, or its time is up). */
static bool linger_drain(struct conn_track *t, int64_t now)
{
	char buf[16384];
	ssize_t n;

	for (int i = 0; i < 64; i++) {
		n = recv(t->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
			return true;
		if (n < 0)
			break;
	}
	return now >= t->linger_until;
}

/* OUR CHECK (deadline): libmicrohttpd's timeout is an idle timeout, which a
 * client sending a byte every few seconds never reaches. The reaper shuts
 * down connections still receiving a request after
 * http_request_deadline_seconds (checked every 250 ms); libmicrohttpd then
 * sees the socket fail and closes the connection itself. It also drains
 * the lingering connections. */
static void *reaper_main(void *arg)
{
	struct server_listener *l = arg;
	int64_t next_scan = 0;

	pthread_mutex_lock(&l->lock);
	while (!l->stop) {
		struct pollfd pfd[LINGER_MAX];
		int64_t now = cp_mono_ms();
		int n = l->n_lingering;

		if (now >= next_scan) {
			for (struct conn_track *t = l->head.next; t != &l->head; t = t->next) {
				if (t->received || t->reaped || t->fd < 0 ||
				    now - t->since_ms < l->deadline_ms)
					continue;
				shutdown(t->fd, SHUT_RDWR);
				t->reaped = true;
			}
			next_scan = now + 250;
		}
		for (int i = 0; i < n; i++)
			pfd[i] = (struct pollfd){ .fd = l->lingering[i]->fd, .events = POLLIN };
		pthread_mutex_unlock(&l->lock);
		/* Only this thread removes lingering entries: pfd stays valid. */
		poll(pfd, (nfds_t)n, n ? 20 : 100);
		now = cp_mono_ms();
		pthread_mutex_lock(&l->lock);
		for (int i = 0; i < l->n_lingering;) {
			struct conn_track *t = l->lingering[i];
			if (!linger_drain(t, now)) {
				i++;
				continue;
			}
			close(t->fd);
			free(t);
			l->lingering[i] = l->lingering[--l->n_lingering];
		}
	}
	for (int i = 0; i < l->n_lingering; i++) {
		close(l->lingering[i]->fd);
		free(l->lingering[i]);
	}
	l->n_lingering = 0;
	pthread_mutex_unlock(&l->lock);
	return NULL;
}

/* What the header walk found. */
struct header_scan {
	bool ctl;	 /* a control character or NUL in a header */
	bool cl_bad;	 /* a Content-Length that is not digits */
	bool cl_differ;	 /* two Content-Length headers that differ */
	bool te_unknown; /* a transfer coding other than "chunked" */
	int te_count;
	const char *cl; /* the first Content-Length */
	size_t cl_len;
	const char *end; /* the NUL after the previous header's value */
};

/* Bytes libmicrohttpd leaves between a value's end and the next header:
 * the NULs it writes over CR/LF and trailing blanks it cuts off. */
static bool header_gap_ok(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != '\0' && p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
			return false;
	return true;
}

/* NUL inside a header value. libmicrohttpd 0.9.75 parses the header block
 * in place and measures values with strlen, so "token\0junk" is handed on
 * as "token" (value_size included): the only trace is "junk" left between
 * the cut value and the next header's name (or, after the last header,
 * before the NULs of the line end). A normal line end leaves only NULs and
 * blanks there. The scan stays inside the header block (bounded). */
static bool header_nul_hidden(const char *end, const char *next_key)
{
	size_t n = 0;

	if (!end)
		return false;
	if (next_key)
		return next_key > end && next_key - end <= 256 &&
		       !header_gap_ok(end, (size_t)(next_key - end));
	/* The last header: blanks, then the NUL of its line end. */
	end++;
	while (n < 256 && (end[n] == ' ' || end[n] == '\t'))
		n++;
	return n < 256 && end[n] != '\0';
}

static bool header_bytes_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return false;
	}
	return true;
}

static enum MHD_Result header_walk(void *cls, enum MHD_ValueKind kind, const char *key,
				   size_t key_size, const char *value, size_t value_size)
{
	struct header_scan *hs = cls;

	(void)kind;
	if (header_nul_hidden(hs->end, key))
		hs->ctl = true;
	hs->end = value ? value + value_size : NULL;
	if (!value)
		value = "", value_size = 0;
	/* A size past the first NUL is a NUL inside the header: strlen-based
	 * lookups would see a different (truncated) value than was sent. */
	if (strlen(key) != key_size || strlen(value) != value_size ||
	    !header_bytes_ok(key, key_size) || !header_bytes_ok(value, value_size))
		hs->ctl = true;
	if (strcasecmp(key, "Content-Length") == 0) {
		if (value_size == 0 || value_size > 19 || strspn(value, "0123456789") != value_size)
			hs->cl_bad = true;
		if (hs->cl && (hs->cl_len != value_size || memcmp(hs->cl, value, value_size) != 0))
			hs->cl_differ = true;
		if (!hs->cl) {
			hs->cl = value;
			hs->cl_len = value_size;
		}
	} else if (strcasecmp(key, "Transfer-Encoding") == 0) {
		hs->te_count++;
		if (strcasecmp(value, "chunked") != 0)
			hs->te_unknown = true;
	}
	return MHD_YES;
}

int server_listener_check(struct MHD_Connection *c, long long max_body, const char **why)
{
	struct conn_track *t = track_of(c);
	struct header_scan hs = { 0 };

	/* OUR CHECK (framing and headers): libmicrohttpd 0.9.75 takes the first
	 * of two Content-Length headers, lets Transfer-Encoding and
	 * Content-Length coexist, keeps control characters in values and cuts
	 * a value at a NUL; each is how a request is smuggled past a proxy
	 * that reads it the other way. */
	MHD_get_connection_values_n(c, MHD_HEADER_KIND, header_walk, &hs);
	if (header_nul_hidden(hs.end, NULL))
		hs.ctl = true;
	*why = NULL;
	if (t && t->bad_uri)
		*why = "an encoded '/' or NUL inside a path segment (or a NUL in the query)";
	else if (hs.ctl)
		*why = "a header holds a control character or NUL";
	else if (hs.cl_differ)
		*why = "differing Content-Length headers";
	else if (hs.cl && hs.te_count)
		*why = "Content-Length together with Transfer-Encoding";
	else if (hs.cl_bad)
		*why = "Content-Length is not a decimal number";
	else if (hs.te_count > 1)
		*why = "more than one Transfer-Encoding header";
	if (*why)
		return 400;
	if (hs.te_unknown) {
		*why = "unknown transfer coding (only chunked is implemented)";
		return 501;
	}
	if (hs.cl && strtoull(hs.cl, NULL, 10) > (unsigned long long)max_body) {
		*why = "the declared Content-Length is larger than max_body_bytes";
		return 413;
	}
	return 0;
}

/* Let the process hold as many sockets as the hard limit allows: the
 * connection limits, not the descriptor limit, must decide who is refused
 * (each tracked connection also holds our dup of its socket). */
static void raise_nofile(void)
{
	struct rlimit rl;
	char buf[128];

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		/* strerror is banned (not thread-safe); _GNU_SOURCE gives the
		 * GNU strerror_r, which returns the message (not always buf). */
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
			cp_logf(CP_LOG_WARN, "http.listen", "cannot raise the descriptor limit: %s",
				strerror_r(errno, buf, sizeof(buf)));
	}
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

cp_rc server_listener_start(const struct cp_config *cfg, const char *listen, int threads,
			    MHD_AccessHandlerCallback cb, void *cls,
			    MHD_RequestCompletedCallback done, bool share_port,
			    struct server_listener **out)
{
	struct sockaddr_storage ss;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ERROR_LOG |
			 MHD_ALLOW_SUSPEND_RESUME;
	struct server_listener *l = NULL;

	*out = NULL;
	if (parse_listen(listen, &ss) != CP_OK) {
		cp_logf(CP_LOG_ERROR, "http.listen", "bad listen address \"%s\"", listen);
		return CP_ERR_INVALID;
	}
	if (ss.ss_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	l = calloc(1, sizeof(*l));
	if (!l)
		return CP_ERR_NOMEM;
	l->done = done;
	l->done_cls = cls;
	l->deadline_ms = (int64_t)cfg->http_request_deadline_seconds * 1000;
	l->head.next = l->head.prev = &l->head;
	pthread_mutex_init(&l->lock, NULL);
	pthread_cond_init(&l->cv, NULL);
	raise_nofile();
	if (pthread_create(&l->reaper, NULL, reaper_main, l) != 0) {
		server_listener_stop(l);
		return CP_ERR_INTERNAL;
	}
	l->reaper_started = true;
	/* libmicrohttpd's own limits: connections per client address (a flood
	 * from one address cannot take the others' sockets), the idle
	 * (keep-alive) timeout, memory per connection (bounds the header
	 * block; larger is 431), and strict client mode (HTTP/1.1 needs Host;
	 * no spaces in the URL). The memory is libmicrohttpd's default 32 KiB:
	 * it zeroes the whole pool between keep-alive requests, and at 64 KiB
	 * that memset was ~7% of a GET's CPU. */
	/* Only when asked: passing the option at all, even as 0, would drop
	 * libmicrohttpd's default SO_REUSEADDR (a restart then fails to bind
	 * while old connections linger in TIME_WAIT). */
	struct MHD_OptionItem reuse[] = {
		{ share_port ? MHD_OPTION_LISTENING_ADDRESS_REUSE : MHD_OPTION_END, 1, NULL },
		{ MHD_OPTION_END, 0, NULL },
	};
	l->daemon = MHD_start_daemon(
		flags, 0, NULL, NULL, cb, cls, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
		MHD_OPTION_THREAD_POOL_SIZE, (unsigned)threads, MHD_OPTION_NOTIFY_COMPLETED,
		on_done, l, MHD_OPTION_NOTIFY_CONNECTION, on_connection, l,
		MHD_OPTION_URI_LOG_CALLBACK, on_uri, l, MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)cfg->http_idle_timeout_seconds, MHD_OPTION_CONNECTION_LIMIT, 4096u,
		MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)cfg->http_client_connection_limit,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(32 * 1024),
		MHD_OPTION_STRICT_FOR_CLIENT, 1, MHD_OPTION_ARRAY, reuse, MHD_OPTION_END);
	if (!l->daemon) {
		cp_logf(CP_LOG_ERROR, "http.listen", "cannot listen on %s", listen);
		server_listener_stop(l);
		return CP_ERR_IO;
	}
	*out = l;
	return CP_OK;
}

void server_listener_stop(struct server_listener *l)
{
	if (!l)
		return;
	if (l->daemon)
		MHD_stop_daemon(l->daemon);
	if (l->reaper_started) {
		pthread_mutex_lock(&l->lock);
		l->stop = true;
		pthread_cond_signal(&l->cv);
		pthread_mutex_unlock(&l->lock);
		pthread_join(l->reaper, NULL);
	}
	assert(l->head.next == &l->head);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->lock);
	free(l);
}

cp_rc server_http_start(const struct api_ctx *ctx, struct server_http **out)
{
	struct server_http *h = calloc(1, sizeof(*h));
	cp_rc rc;

	*out = NULL;
	if (!h)
		return CP_ERR_NOMEM;
	h->ctx = ctx;
	rc = server_netpool_start(ctx->cfg->net_threads, ctx->cfg->net_tenant_concurrency, &h->net);
	if (rc == CP_OK)
		rc = server_sse_start(ctx->cfg->event_streams_max,
				      ctx->cfg->event_stream_keepalive_seconds, &h->sse);
	if (rc == CP_OK)
		rc = server_listener_start(ctx->cfg, ctx->cfg->listen, ctx->cfg->http_threads,
					   on_request, h, on_completed, false, &h->listener);
	if (rc != CP_OK) {
		server_sse_free(h->sse);
		server_netpool_free(h->net);
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
	/* The net pool first: every suspended request is answered and its
	 * connection resumed before the daemon stops. */
	server_sse_stop(h->sse); /* every stream ends instead of waiting */
	server_netpool_stop(h->net);
	server_listener_stop(h->listener);
	server_sse_free(h->sse); /* after the daemon freed the streams */
	server_netpool_free(h->net);
	free(h);
}
