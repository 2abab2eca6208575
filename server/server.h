/*
 * server.h - the running process: the API listener and its route table, the
 * HTTP-01 challenge responder, the worker pool that runs durable jobs and
 * the scheduler that enqueues due work.
 */
#ifndef CP_SERVER_H
#define CP_SERVER_H

#include <stdio.h>

#include "api/api.h"
#include "common/common.h"
#include "db/db.h"

/* ---- route table (routes.c) ---- */

enum server_auth {
	SERVER_AUTH_NONE,    /* public: health, readiness, OpenAPI */
	SERVER_AUTH_KEY,     /* any valid key; handlers check the role */
	SERVER_AUTH_METRICS, /* public when metrics_public, else like KEY
				(the handler then wants the operator) */
};

struct server_route {
	const char *method;  /* "GET", "POST", ... */
	const char *pattern; /* "/v1/properties/{id}"; {x} matches one segment */
	api_handler handler;
	enum server_auth auth;
	/* Only the operator may call it: a tenant key gets 403 before any
	 * idempotent replay is looked up. */
	bool operator_only;
	/* May wait on the network (DNS, a webhook receiver): run on a net
	 * thread (netpool.c) with the connection suspended, at most
	 * net_tenant_concurrency at once per tenant. */
	bool offload;
};

/* Find the route for method+path; fills params (up to 3). Returns the
 * route, or NULL with *path_known telling 405 (true) from 404 (false) and
 * allow listing the methods the path accepts. */
const struct server_route *server_route_match(const char *method, const char *path,
					      const char *params[3], char *params_buf,
					      size_t params_buf_len, bool *path_known, char *allow,
					      size_t allow_len);
/* The whole table (for `certplane routes` and the route/spec test). */
const struct server_route *server_routes(size_t *count);

/* ---- API listener (http.c) ---- */

struct server_http;
cp_rc server_http_start(const struct api_ctx *ctx, struct server_http **out) CP_WUR;
void server_http_stop(struct server_http *h);

/* ---- metrics (metrics.c) ---- */

/* Count one answered request: the matched route (NULL = none matched), the
 * request method, the status sent and the time taken. Lock-free; safe from
 * every listener thread. */
void server_metrics_request(const struct server_route *route, const char *method, int status,
			    double seconds);
/* Count one webhook delivery attempt by outcome ("success", "failure", ...). */
void server_metrics_delivery(const char *outcome);
/* Prometheus text for GET /metrics: the request and delivery counters, the
 * database's counts (db may be NULL: left out) and the process's (ctx may
 * be NULL: left out); new string (NULL on OOM). main.c puts it in
 * api_ctx.metrics_render for the handler (api/metrics.c). */
char *server_metrics_render(struct db *db, const struct api_ctx *ctx);

/* ---- hostname verification (claims.c) ---- */

struct acme_resolver;
/* The claim timing configured (hostname_claim_ttl_*, hostname_recheck_seconds). */
struct db_claim_policy server_claim_policy(const struct cp_config *cfg);
/* Queue the "hostname_verify" job of a property (deduplicated), inside the
 * caller's transaction; the caller cp_kick()s after committing. */
cp_rc server_claims_enqueue(struct db *db, const char *tenant_id, const char *property_id) CP_WUR;
/*
 * Verify tenant_id's claim of hostname from check, the acme_check_hostname
 * result for it (NULL if none; check_rc its return code): CNAME chain to one
 * of the tenant's edges, else TXT _certplane-verify.<hostname> through res;
 * records the outcome in its own transaction (db_claim_record). *status:
 * "verified" | "pending" | "owned_by_another_tenant"; *method: "cname" |
 * "txt" when this check verified it, else NULL (both static).
 * CP_ERR_NOT_FOUND if the tenant has no claim of hostname.
 */
cp_rc server_claim_verify(const struct api_ctx *ctx, struct db *db, struct acme_resolver *res,
			  const char *tenant_id, const char *hostname, json_t *check,
			  cp_rc check_rc, const char **status, const char **method) CP_WUR;

/* ---- worker pool and scheduler (workers.c) ---- */

/* What a job handler decided. */
enum server_job_result { SERVER_JOB_DONE, SERVER_JOB_RETRY, SERVER_JOB_FAIL };
struct server_job_outcome {
	enum server_job_result result;
	int64_t run_at;	 /* RETRY: when to run again */
	char error[512]; /* RETRY/FAIL: why (no secrets) */
};
/* A job kind's handler. Runs on a worker thread with that thread's db. It
 * must be idempotent per step: a job may be run again after a crash. */
typedef void (*server_job_fn)(const struct api_ctx *ctx, struct db *db, struct db_job *job,
			      struct server_job_outcome *out);
/* A periodic task run by the scheduler every scheduler_interval_seconds. */
typedef void (*server_tick_fn)(const struct api_ctx *ctx, struct db *db);

struct server_workers;
cp_rc server_workers_start(const struct api_ctx *ctx, struct server_workers **out) CP_WUR;
/* Stop claiming, let running jobs finish (or release their leases). */
void server_workers_stop(struct server_workers *w);

/* ---- webhooks: delivery (webhook_delivery.c) ---- */

/* Job kind "webhook_delivery": one attempt at sending one delivery. */
void server_job_webhook_delivery(const struct api_ctx *ctx, struct db *db, struct db_job *job,
				 struct server_job_outcome *out);
/* Scheduler tick: certificate.expiring / certificate.expired reminders. */
void server_tick_cert_reminders(const struct api_ctx *ctx, struct db *db);

/* ---- HTTP-01 challenge responder (http01.c) ---- */

struct server_http01;
/* Listen on cfg->http01_listen and answer /.well-known/acme-challenge/
 * tokens of orders in flight. *out is NULL (and CP_OK) when the setting
 * is "" (off); CP_ERR_IO when it cannot bind (the caller logs and goes on). */
cp_rc server_http01_start(const struct api_ctx *ctx, struct server_http01 **out) CP_WUR;
/* Stop and free; NULL-safe. */
void server_http01_stop(struct server_http01 *h);

#endif
