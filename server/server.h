/*
 * server.h - the running process: the API listener and its route table, the
 * HTTP-01 challenge responder, the worker pool that runs durable jobs and
 * the scheduler that enqueues due work.
 *
 * The rule for what is declared where: server.h is what the outside of
 * server/ uses - main.c (start, stop, wiring api_ctx, `certplane routes`)
 * and the tests that drive the process as a whole. What the files of
 * server/ share among themselves (job handlers, ticks, counters, listener
 * and net-pool plumbing) is in server/server_internal.h, which white-box
 * unit tests of server/ may include too. api/ includes neither: what api/
 * and server/ both need lives in a module below them (netpolicy/, claims/)
 * or reaches api/ through struct api_ctx.
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
	/* Only an edge key may call it (403 for every other caller), and an
	 * edge key may call nothing else (server/http.c). */
	bool edge_only;
};

/* The whole table (for `certplane routes` and the route/spec test). */
const struct server_route *server_routes(size_t *count);

/* ---- API listener (http.c) ---- */

struct server_http;
cp_rc server_http_start(const struct api_ctx *ctx, struct server_http **out) CP_WUR;
void server_http_stop(struct server_http *h);

/* ---- metrics (metrics.c) ---- */

/* Prometheus text for GET /metrics: the request and delivery counters, the
 * database's counts (db may be NULL: left out) and the process's (ctx may
 * be NULL: left out); new string (NULL on OOM). main.c puts it in
 * api_ctx.metrics_render for the handler (api/metrics.c). */
char *server_metrics_render(struct db *db, const struct api_ctx *ctx);
/*
 * api_ctx.ca_profile_check: CP_OK if CA ca offers profile (its directory's
 * meta.profiles), CP_ERR_NOT_FOUND if not, CP_ERR_UPSTREAM if the CA cannot
 * be asked; detail (detail_len bytes) says which. May register this
 * thread's account at the CA (server_acme_client): call outside a
 * transaction.
 */
cp_rc server_ca_profile_check(const struct api_ctx *ctx, struct db *db, const char *ca,
			      const char *profile, char *detail, size_t detail_len) CP_WUR;

/* ---- worker pool and scheduler (workers.c) ---- */

struct server_workers;
cp_rc server_workers_start(const struct api_ctx *ctx, struct server_workers **out) CP_WUR;
/* Stop claiming, let running jobs finish (or release their leases). */
void server_workers_stop(struct server_workers *w);
/* This process's name among the instances sharing the database: the holder
 * of its leases and its row in the instance table. Fixed for the process. */
const char *server_instance_id(void);
/* How many instances share the database, this one included (>= 1), as the
 * scheduler last counted them: limits kept in each process's memory (the
 * API rate limit, a CA's order budget) take their share of the configured
 * total, so N instances together stay within it. */
int server_instances_live(void);

/* ---- wake-ups from other instances on a database server (notify.c) ---- */

struct server_notify;
/* Start the listener thread when the database has notifications (else
 * *out stays NULL: nothing to do). CP_OK, or CP_ERR_NOMEM/INTERNAL. */
cp_rc server_notify_start(const struct cp_config *cfg, struct server_notify **out) CP_WUR;
/* Stop and free it; NULL-safe. */
void server_notify_stop(struct server_notify *n);

/* ---- HTTP-01 challenge responder (http01.c) ---- */

struct server_http01;
/* Listen on cfg->http01_listen and answer /.well-known/acme-challenge/
 * tokens of orders in flight. *out is NULL (and CP_OK) when the setting
 * is "" (off); CP_ERR_IO when it cannot bind (the caller logs and goes on). */
cp_rc server_http01_start(const struct api_ctx *ctx, struct server_http01 **out) CP_WUR;
/* Stop and free; NULL-safe. */
void server_http01_stop(struct server_http01 *h);

#endif
