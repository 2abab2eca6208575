/*
 * order_internal.h - shared between the files of the ACME order engine
 * (order_run.c, order_authz.c, order_complete.c, order_failure.c) only.
 * One run of the "acme_order" job is a struct order_run; every step returns
 * an enum order_step saying how the run goes on. See order_run.c for the
 * engine as a whole.
 */
#ifndef CP_ORDER_INTERNAL_H
#define CP_ORDER_INTERNAL_H

#include "acme/acme.h"
#include "server/server_internal.h"

#include <stdbool.h>
#include <stdint.h>

#define ORDER_POLL_FIRST_MS 50
#define ORDER_POLL_MAX_MS 1000
#define ORDER_POLL_BUDGET_MS 90000 /* one job run polls a CA object at most this long */
/* The longest wait a worker sleeps through holding its job: a quarter of
 * the lease (order_keep_lease extends it before each wait). */
#define ORDER_WAIT_MAX_MS(cfg) ((int64_t)(cfg)->job_lease_seconds * 1000 / 4)

/* How a run ended. */
enum order_step {
	ORDER_STEP_DONE,    /* terminal state committed (valid, failed, canceled) */
	ORDER_STEP_WAIT,    /* come back at run_at (DNS-01 polling) */
	ORDER_STEP_BACKOFF, /* transient failure: reason/detail, retry with backoff */
	ORDER_STEP_FAIL,    /* permanent failure: reason/detail */
	ORDER_STEP_RESET,   /* the CA forgot the order or account: start a fresh one */
	ORDER_STEP_GONE,    /* the order row was deleted meanwhile: record nothing */
};

/* One run of the job for one order; lives on the worker's stack. */
struct order_run {
	const struct api_ctx *ctx;
	struct db *db;
	struct db_job *job;
	json_t *order; /* db_order_load view (refreshed after saves) */
	const char *id, *tenant_id;
	struct acme_client *c;
	struct acme_result r;
	char reason[64];
	char detail[512];
	int64_t run_at;
	int64_t retry_after; /* CA's Retry-After for a backoff, -1 none */
	int64_t last_extend_ms;
	char fallback[256]; /* the CAs this run left behind and why (order_fallback.c) */
};

/* ---- the run's state (order_run.c) ---- */

/* Keep our lease while a long step runs (extends it at most every 20 s).
 * false: the lease is lost. */
bool order_keep_lease(struct order_run *run);
/* Wait before polling the CA again: delay_ms, or the CA's Retry-After
 * (run->r.retry_after) when it gave one. DONE: poll again. A wait longer
 * than ORDER_WAIT_MAX_MS(cfg) never holds the worker: WAIT with run->run_at
 * then (the job is re-queued, its lease given back). Workers stopping end
 * the wait at once: WAIT, due now. A lost lease: as order_fail_db. */
enum order_step order_wait_poll(struct order_run *run, int64_t delay_ms);
/* Save a patch (stolen, NULL = CP_ERR_NOMEM) to the order inside its own
 * transaction; db_order_save's codes. Not CP_WUR: storing a backoff may
 * fail without harm (the job's own run_at still holds). */
cp_rc order_save(struct order_run *run, json_t *patch);
/* As order_save for the authorization at position. */
cp_rc order_save_authz(struct order_run *run, int position, json_t *patch) CP_WUR;
/* Read the order again into run->order; db_order_load's codes (run->order
 * unchanged on failure). */
cp_rc order_reload(struct order_run *run) CP_WUR;
/* valid, failed and canceled: no run changes such an order. */
bool order_is_terminal(const char *status);
/* The event payload base every order event carries (new reference, NULL
 * when out of memory). */
json_t *order_event_base(struct order_run *run);
/* The order's certificate key, generated and stored once (before any CSR);
 * *key owned by the caller. Reloads run->order when it stores a new key.
 * CP_ERR_CRYPTO / CP_ERR_INVALID: the stored key does not open. */
cp_rc order_get_key(struct order_run *run, struct crypto_key **key) CP_WUR;

/* ---- authorizations (order_authz.c) ---- */

/* The CA order is "pending": get every authorization answered and valid
 * (DONE), or a WAIT for DNS-01 records not yet visible, or a failure. */
enum order_step order_answer_authorizations(struct order_run *run);
/* The CA order is ready (every authorization valid): send
 * order.dns_challenge_completed for each DNS-01 authorization that was
 * announced and not yet released. CP_OK or a database error. */
cp_rc order_dns_release_all(struct order_run *run);
/* An authorization the CA did not make valid (a: its row, authz: the CA's
 * object), as a failure classified by acme_classify(). */
enum order_step order_fail_authz(struct order_run *run, json_t *a, json_t *authz);

/* ---- delegated DNS-01 (order_dcv.c) ---- */

/* DNS-01 authorization a (learned, not yet published): when the tenant's
 * DCV delegation of its name is in place, write its TXT record in the
 * delegation zone (journaled first) and mark it delegated: *published
 * true. *published false and CP_OK: no delegation (the feature off, or not
 * in place): announce it to the tenant as before. CP_ERR_UPSTREAM: the
 * lookup or the UPDATE failed, run->reason/detail say which (back off);
 * a database error otherwise. */
cp_rc order_dcv_publish(struct order_run *run, json_t *a, bool *published) CP_WUR;
/* Remove the delegated record of valid authorization a and mark it
 * completed; a removal that fails is left to the cleanup tick. CP_OK or a
 * database error. */
cp_rc order_dcv_release(struct order_run *run, json_t *a) CP_WUR;

/* ---- storing the issued certificate (order_complete.c) ---- */

/* Store the downloaded chain pem as the certificate's new version; the
 * order turns valid and the event is written in the same transaction. */
enum order_step order_store_certificate(struct order_run *run, const char *pem);

/* ---- failures (order_failure.c) ---- */

/* A permanent failure: fills run->reason and run->detail, returns FAIL. */
enum order_step order_fail(struct order_run *run, const char *reason, const char *fmt, ...)
	CP_PRINTF(3, 4);
/* A failed database call of the run (rc != CP_OK): GONE or BACKOFF. */
enum order_step order_fail_db(struct order_run *run, cp_rc rc, const char *what);
/* order_get_key() failed (rc != CP_OK): FAIL or as order_fail_db. */
enum order_step order_fail_key(struct order_run *run, cp_rc rc, const char *what);
/* A failed CA exchange (rc != CP_OK, run->r filled): BACKOFF, RESET or FAIL. */
enum order_step order_fail_ca(struct order_run *run, cp_rc rc, const char *what);
/* Commit a failure: order failed, events, certificate state. */
cp_rc order_record_failure(struct order_run *run) CP_WUR;
/* A transient failure: count it and store when to try again (*run_at);
 * false when the order's deadline has passed (record the failure). */
bool order_record_backoff(struct order_run *run, int64_t *run_at);

/* ---- the CA list, CAA and the fallback (order_fallback.c) ---- */

/* At the order's first run (no "cas" stored): store its CA list (the
 * certificate's, else its tenant's default, else its one CA) and start at
 * the list's head; reloads run->order. CP_OK or a database error. */
cp_rc order_cas_begin(struct order_run *run) CP_WUR;
/* CAA of every identifier for the run's current CA and client (before a
 * new CA order): DONE when allowed, FAIL "caa_forbids" naming the record,
 * BACKOFF "dns_lookup_failed" when a lookup failed. */
enum order_step order_caa_check(struct order_run *run);
/* The fallback rule: when *step (run->reason) is one that moves on
 * (ca_unreachable, ca_rate_limited, caa_forbids) and the order's list has
 * a next CA, the order is reset onto it: true, *step RESET. Otherwise
 * false, *step unchanged (or as order_fail_db when the switch could not be
 * stored, DONE when the order finished meanwhile). */
bool order_ca_fallback(struct order_run *run, enum order_step *step);
/* A final caa_forbids after fallbacks: its detail also names what the CAs
 * left behind said. */
void order_ca_fallback_detail(struct order_run *run);

#endif
