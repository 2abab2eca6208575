/*
 * server_internal.h - shared between the files of server/ only.
 */
#ifndef CP_SERVER_INTERNAL_H
#define CP_SERVER_INTERNAL_H

#include "server/server.h"

#include <microhttpd.h>

/* Start a libmicrohttpd daemon on listen ("host:port") with a thread pool;
 * shared by the API listener and the HTTP-01 responder. */
cp_rc server_listen_daemon(const char *listen, int threads, MHD_AccessHandlerCallback cb,
			   void *cls, MHD_RequestCompletedCallback done,
			   struct MHD_Daemon **out) CP_WUR;

/* ---- ACME engine (orders.c, renew.c, http01.c) ---- */

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
/* Job kind "acme_order": advance one order (payload {"order_id"}). */
void server_job_acme_order(const struct api_ctx *ctx, struct db *db, struct db_job *job,
			   struct server_job_outcome *out);
/* Renewal retry delay after the n-th failure in a row (renew_backoff_seconds,
 * the last entry repeating), with ±10 % jitter. */
int64_t server_renew_backoff(const struct cp_config *cfg, int n);
/* Scheduler tick: start the renewal orders that are due. */
void server_tick_renew(const struct api_ctx *ctx, struct db *db);

#endif
