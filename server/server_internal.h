/*
 * server_internal.h - shared between the files of server/ only (and the
 * white-box unit tests of server/). The rule: a declaration is here when
 * only server/ calls it; it is in server/server.h when main.c or a test of
 * the whole process does (see there).
 */
#ifndef CP_SERVER_INTERNAL_H
#define CP_SERVER_INTERNAL_H

#include "server/server.h"

#include <microhttpd.h>

/* A libmicrohttpd daemon with certplane's limits, shared by the API
 * listener and the HTTP-01 responder (http.c): per-client-address
 * connection limit, idle timeout, and an absolute deadline for receiving a
 * request (a reaper thread shuts down connections past it). */
struct server_listener;
/* Listen on listen ("host:port") with threads; cb/cls/done as for
 * MHD_start_daemon (done may be NULL). *out owned by the caller
 * (server_listener_stop). share_port: other processes may listen on the
 * same address too (SO_REUSEPORT; the kernel spreads the connections), as
 * instances on one host share the HTTP-01 port. CP_ERR_INVALID for a bad
 * address, CP_ERR_IO when it cannot listen. */
cp_rc server_listener_start(const struct cp_config *cfg, const char *listen, int threads,
			    MHD_AccessHandlerCallback cb, void *cls,
			    MHD_RequestCompletedCallback done, bool share_port,
			    struct server_listener **out) CP_WUR;
/* Stop the daemon and the reaper; NULL-safe. */
void server_listener_stop(struct server_listener *l);
/* The access handler has the whole request (headers and body): from now
 * on it is the server's turn, and the receive deadline no longer applies. */
void server_listener_received(struct MHD_Connection *c);
/* The access handler answers before the body is read (and closes): as
 * server_listener_received, and after the close the rest of what the
 * client sends is read and dropped for a moment, so that it gets the
 * answer rather than a reset. */
void server_listener_answer_early(struct MHD_Connection *c);
/* Framing and header checks libmicrohttpd 0.9.75 does not make, for the
 * first call of an access handler (headers received, body not read). 0 if
 * the request may go on; else the status to answer and close with (400,
 * 413, 501) and a static *why. */
int server_listener_check(struct MHD_Connection *c, long long max_body, const char **why);

/* ---- route matching (routes.c) ---- */

/* Find the route for method+path; fills params (up to 3). Returns the
 * route, or NULL with *path_known telling 405 (true) from 404 (false) and
 * allow listing the methods the path accepts. */
const struct server_route *server_route_match(const char *method, const char *path,
					      const char *params[3], char *params_buf,
					      size_t params_buf_len, bool *path_known, char *allow,
					      size_t allow_len);

/* ---- metrics counters (metrics.c) ---- */

/* Count one answered request: the matched route (NULL = none matched), the
 * request method, the status sent and the time taken. Lock-free; safe from
 * every listener thread. */
void server_metrics_request(const struct server_route *route, const char *method, int status,
			    double seconds);
/* Count one webhook delivery attempt by outcome ("success", "failure", ...). */
void server_metrics_delivery(const char *outcome);

/* ---- jobs and scheduler ticks (workers.c runs them) ---- */

/* How long a job's claim is valid is the config's job_lease_seconds; a
 * handler that works longer extends it (db_job_extend) and never waits past
 * it (server_workers_wait). A dead instance's jobs are claimed again when it
 * lapses. */
/* Wait up to ms on a worker thread, or less when the workers stop: true
 * after the whole wait, false at once (or as soon as it happens) when
 * server_workers_stop has begun - the handler then gives its job back
 * (SERVER_JOB_RETRY, due now) instead of holding the shutdown. */
bool server_workers_wait(int64_t ms);

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

/* What one delivery attempt produced (webhook_delivery.c and the channel
 * send functions of channel_send.c). */
struct server_send_result {
	long status; /* HTTP status, or the SMTP reply code; 0: no answer */
	int64_t latency_ms;
	int64_t retry_after; /* seconds, 0 if none */
	bool refused;	     /* SSRF guard refused the address */
	char error[256];     /* empty on 2xx */
};

/* ---- notification channels beyond webhooks (channel_send.c) ---- */

/* The subject (one line, ASCII, no CR/LF) and plain body (CRLF lines) of
 * delivery d (db_webhook_delivery_load): the event's type, hostnames,
 * certificate, reason, detail and next attempt, or an email channel's
 * verification mail with its token. New strings, caller frees. */
cp_rc server_channel_message(const struct api_ctx *ctx, json_t *d, char **subject,
			     char **body) CP_WUR;
/* Send delivery d of an email channel once through smtp_url; fills r
 * (status 250 on success). */
void server_channel_email_send(const struct api_ctx *ctx, json_t *d, struct server_send_result *r);
/* The Slack-compatible body {"text": "..."} of delivery d; new string. */
cp_rc server_channel_slack_body(const struct api_ctx *ctx, json_t *d, char **out) CP_WUR;

/* Job kind "webhook_delivery": one attempt at sending one delivery
 * (webhook_delivery.c). */
void server_job_webhook_delivery(const struct api_ctx *ctx, struct db *db, struct db_job *job,
				 struct server_job_outcome *out);
/* Job kind "edge_check" (DB_EDGE_CHECK_JOB): does the edge serve what
 * production deployed (edge_check.c). */
void server_job_edge_check(const struct api_ctx *ctx, struct db *db, struct db_job *job,
			   struct server_job_outcome *out);
/* Scheduler tick (ticks.c): certificate.expiring / certificate.expired
 * reminders. */
void server_tick_cert_reminders(const struct api_ctx *ctx, struct db *db);

/* ---- event streams: GET /v1/events/stream (sse.c) ---- */

struct server_sse;
struct server_sse_stream;
/* Start the stream registry (at most max streams in all) and its keepalive
 * tick, and hook it to event commits (db_event_hook_set). *out owned by the
 * caller (server_sse_free). */
cp_rc server_sse_start(int max, int keepalive_seconds, struct server_sse **out) CP_WUR;
/* Admit the stream resp->stream describes for tenant, called with the API
 * key of SHA-256 hex key_hash (NULL: the operator): true with a new *out
 * (owned by the caller until server_sse_response) and resp 200
 * text/event-stream; false with a 429 (the tenant has its 4) or 503 (all
 * event_streams_max are open, or stopping) problem in resp. The stream
 * ends when the key is revoked or the tenant deleted. */
bool server_sse_admit(struct server_sse *s, const char *tenant, const char *key_hash,
		      struct api_resp *resp, struct server_sse_stream **out);
/* The response that streams st on connection c; it owns st from now on
 * (freed with it). NULL when out of memory (st is freed). */
struct MHD_Response *server_sse_response(struct server_sse_stream *st, struct MHD_Connection *c);
/* Free a stream never handed to server_sse_response; NULL-safe. */
void server_sse_stream_free(struct server_sse_stream *st);
/* End every stream (each answers end of stream when libmicrohttpd next
 * runs it) and refuse new ones; before the daemon stops. NULL-safe. */
void server_sse_stop(struct server_sse *s);
/* Free the registry after the daemon stopped (no stream left). NULL-safe. */
void server_sse_free(struct server_sse *s);

/* ---- net pool (netpool.c): API requests that wait on the network ---- */

struct server_netpool;
/* A request to run on a net thread: run is false when the pool is stopping
 * (answer without running). */
typedef void (*server_net_fn)(void *arg, bool run);
/* Called after fn, once the tenant's slot is free again (resumes the
 * connection). */
typedef void (*server_net_done)(void *arg);
/* Start threads net threads; a tenant holds at most cap slots. */
cp_rc server_netpool_start(int threads, int cap, struct server_netpool **out) CP_WUR;
/* Take a slot for tenant (a tenant id or "operator"): CP_OK, or
 * CP_ERR_RATE_LIMITED when the tenant already holds cap slots (answer 429),
 * CP_ERR_BUSY when the pool stops or its tenant table is full (503). */
cp_rc server_netpool_acquire(struct server_netpool *p, const char *tenant) CP_WUR;
/* Queue fn(arg) on the slot acquired for tenant; the slot is given back
 * after fn returns, then done(arg) runs. Never fails: when it cannot queue,
 * fn(arg, false) and done(arg) run at once on this thread. */
void server_netpool_submit(struct server_netpool *p, const char *tenant, server_net_fn fn,
			   server_net_done done, void *arg);
/* Answer the queued requests (run = false) and wait for the running ones;
 * afterwards acquire says CP_ERR_BUSY. NULL-safe, may be called twice. */
void server_netpool_stop(struct server_netpool *p);
/* Stop (if not yet) and free; NULL-safe. */
void server_netpool_free(struct server_netpool *p);

/* ---- ACME engine (acme_accounts.c, order_*.c, renew.c, http01.c) ---- */

struct acme_client;
struct acme_result;
/* Directory URL and CA bundle (NULL = system trust) of the CA named ca
 * ("letsencrypt" or a key of cfg->cas); borrowed from cfg.
 * CP_ERR_NOT_FOUND if no such CA is configured. */
cp_rc server_acme_ca(const struct cp_config *cfg, const char *ca, const char **directory_url,
		     const char **ca_bundle) CP_WUR;
/* This thread's ACME client for ca with its account registered (the key is
 * created and sealed on first use, the account URL stored at once).
 * *client is borrowed from a per-thread cache (freed at thread exit).
 * CP_ERR_INVALID for an unknown CA; r says what the CA answered. */
cp_rc server_acme_client(const struct api_ctx *ctx, struct db *db, const char *ca,
			 struct acme_client **client, struct acme_result *r) CP_WUR;
/*
 * newOrder for the order row (its certificate_id, kind, ca) and names, with
 * the certificate's renewal plan (order_plan.c): its profile, and for a
 * renewal of a version this CA issued, RFC 9773 "replaces" (retried once
 * without it on alreadyReplaced). *order_url (new string) and *ca_order (new
 * reference) as acme_order_new. *profile_refused is true (rc
 * CP_ERR_NOT_FOUND, r->detail says why) when the CA no longer offers the
 * certificate's profile. Other codes as acme_order_new, or a database error.
 */
cp_rc server_order_place(struct acme_client *c, struct db *db, const char *tenant_id,
			 const json_t *order, const char *const *names, size_t n, char **order_url,
			 json_t **ca_order, bool *profile_refused, struct acme_result *r) CP_WUR;
/* Job kind "acme_order": advance one order (payload {"order_id"}). */
void server_job_acme_order(const struct api_ctx *ctx, struct db *db, struct db_job *job,
			   struct server_job_outcome *out);
/* Renewal retry delay after the n-th failure in a row (renew_backoff_seconds,
 * the last entry repeating), with ±10 % jitter. */
int64_t server_renew_backoff(const struct cp_config *cfg, int n);
/* Scheduler tick: start the renewal orders that are due. */
void server_tick_renew(const struct api_ctx *ctx, struct db *db);
/* True when the last renewal tick left due certificates unread (the
 * scheduler then ticks again within a second). */
bool server_renew_backlog(void);
/* Job kind "hostname_verify": check every claim of a property ({"property_id"}). */
void server_job_hostname_verify(const struct api_ctx *ctx, struct db *db, struct db_job *job,
				struct server_job_outcome *out);
/* Job kind DB_REVOKE_JOB_KIND: one version's revokeCert at its CA (revoke.c). */
void server_job_certificate_revoke(const struct api_ctx *ctx, struct db *db, struct db_job *job,
				   struct server_job_outcome *out);
/* Scheduler tick: release expired pending claims, queue the re-checks due. */
void server_tick_hostname_claims(const struct api_ctx *ctx, struct db *db);
/* Remove the DCV delegation records of orders that are over (order_dcv.c). */
void server_tick_dcv_cleanup(const struct api_ctx *ctx, struct db *db);

/* ---- portal.c: the tenant portal's static files ---- */
/* True if url is the portal's ("/", "/portal", "/portal/..."). */
bool server_portal_path(const char *url);
/* Answer a portal url (server_portal_path) from cfg->portal_dir: `/` and
 * `/portal` redirect to `/portal/`, index.html for pages, files with their
 * Content-Type, cache and security headers; 404 for anything outside the
 * directory's plain names, 405 for a method other than GET/HEAD. *status
 * gets the status queued (for the log line). */
enum MHD_Result server_portal_answer(const struct cp_config *cfg, struct MHD_Connection *c,
				     const char *url, const char *method, int *status);

#endif
