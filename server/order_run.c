/*
 * order_run.c - the ACME order engine: the "acme_order" job that drives one
 * order from "pending" to a stored certificate version, step by step.
 *
 * The CA is the source of truth for where an order stands; the orders row
 * is our durable memory of the URLs it gave us. Every run of the job starts
 * from what is stored: no order_url -> hostname checks, key, new CA order;
 * certificate_url -> just download; otherwise POST-as-GET the order and act
 * on its status (pending: authorizations; ready: finalize; processing: poll;
 * valid: download; invalid: fail). Each URL, key and state is committed
 * before the next CA request, so a process killed at any instant resumes
 * the same CA order with the same key, and never stores a certificate twice
 * (the version and the order's "valid" commit together).
 *
 * Failures: the CA unreachable or rate limiting -> the order keeps its
 * state and the job is retried later with jittered backoff (attempts and
 * next_attempt_at stored); the CA forgot our account (Pebble restart) ->
 * register again and place a fresh CA order; anything the CA or the checks
 * refuse -> the order fails with a reason and a detail, and events tell the
 * tenant (order.failed, and certificate.renewal_failed for renewals, which
 * also schedules the certificate's next attempt).
 *
 * DNS-01 never holds a worker while the tenant publishes its TXT record: the
 * job re-queues itself every couple of seconds (POST /verify makes it due at
 * once) until the records are visible through the resolver or the deadline.
 *
 * This file holds the step machine (advance: place the order, answer the
 * authorizations, finalize, download) and the job; order_authz.c the
 * authorizations, order_complete.c storing the issued version,
 * order_failure.c classifying and recording failures, acme_accounts.c the
 * accounts and clients, order_fallback.c the order's CA list, its CAA check
 * before every new CA order and the move to the next CA.
 */
#include "acme/acme.h"
#include "claims/claims.h"
#include "crypto/crypto.h"
#include "server/order_internal.h"
#include "server/server_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RESETS 3		       /* fresh CA orders after the CA forgot one, per run */
#define HOSTNAME_CHECK_BUDGET_MS 30000 /* every DNS lookup of the pre-order checks together */

/* Keep our lease while a long step runs. false: the lease is lost. */
bool order_keep_lease(struct order_run *run)
{
	int64_t now = cp_mono_ms();

	int lease = run->ctx->cfg->job_lease_seconds;

	/* a sixth of the lease apart: with a wait of at most a quarter of it
	 * (ORDER_WAIT_MAX_MS) the lease never lapses under a live worker */
	if (now - run->last_extend_ms < (int64_t)lease * 1000 / 6)
		return true;
	run->last_extend_ms = now;
	return db_job_extend(run->db, run->job->id, run->job->owner, lease) == CP_OK;
}

enum order_step order_wait_poll(struct order_run *run, int64_t delay_ms)
{
	int64_t ms = run->r.retry_after > 0 ? run->r.retry_after * 1000 : delay_ms;

	if (ms > ORDER_WAIT_MAX_MS(run->ctx->cfg)) {
		/* Longer than a worker may hold its job: back to the queue, due
		 * when the CA said (the next run polls from what is stored). */
		run->run_at = cp_now() + (ms + 999) / 1000;
		cp_log_json(CP_LOG_INFO, "acme.order_requeued",
			    json_pack("{s:s,s:I}", "order_id", run->id, "retry_in",
				      (json_int_t)((ms + 999) / 1000)));
		return ORDER_STEP_WAIT;
	}
	if (!order_keep_lease(run))
		return order_fail_db(run, CP_ERR_BUSY, "extending the job lease");
	if (!server_workers_wait(ms)) {
		run->run_at = cp_now(); /* shutting down: the next process goes on */
		return ORDER_STEP_WAIT;
	}
	return ORDER_STEP_DONE;
}

/* Save a patch (stolen) to the order inside its own transaction. */
cp_rc order_save(struct order_run *run, json_t *patch)
{
	cp_rc rc = patch ? db_order_save(run->db, run->id, patch) : CP_ERR_NOMEM;

	json_decref(patch);
	return rc;
}

cp_rc order_save_authz(struct order_run *run, int position, json_t *patch)
{
	cp_rc rc = patch ? db_order_authz_save(run->db, run->id, position, patch) : CP_ERR_NOMEM;

	json_decref(patch);
	return rc;
}

cp_rc order_reload(struct order_run *run)
{
	json_t *o = NULL;
	cp_rc rc = db_order_load(run->db, run->tenant_id, run->id, &o);

	if (rc != CP_OK)
		return rc;
	json_decref(run->order);
	run->order = o;
	run->id = cp_json_str(o, "id");
	return CP_OK;
}

bool order_is_terminal(const char *status)
{
	return !strcmp(status, "valid") || !strcmp(status, "failed") || !strcmp(status, "canceled");
}

/* The event payload base every order event carries (new reference). */
json_t *order_event_base(struct order_run *run)
{
	return json_pack("{s:s,s:s,s:s,s:O}", "order_id", run->id, "certificate_id",
			 cp_json_str(run->order, "certificate_id"), "kind",
			 cp_json_str(run->order, "kind"), "metadata",
			 json_object_get(run->order, "metadata"));
}

/* ---- step 0: checks, key, new CA order ---- */

/*
 * The checks before any CA request. Every challenge: the issuance scope
 * (db_issuance_scope: no edge name, no name another tenant verified). HTTP-01
 * also: no wildcard, and every identifier a hostname claimed by this tenant
 * whose CNAME chain reaches one of its edge hostnames, checked live here.
 * That live check is a verification too: it is recorded, so a claim still
 * pending whose CNAME is now in place verifies here (the renewal triggers
 * the verification instead of failing), and one another tenant holds stops
 * the order.
 */
static enum order_step hostname_checks(struct order_run *run)
{
	json_t *ids = json_object_get(run->order, "identifiers"), *v;
	struct acme_resolver *res = NULL;
	struct db_scope_verdict scope;
	enum order_step step = ORDER_STEP_DONE;
	size_t i;
	cp_rc rc;

	rc = db_issuance_scope(run->db, run->ctx->cfg->edge_zone, run->tenant_id, ids, &scope);
	if (rc != CP_OK)
		return order_fail_db(run, rc, "checking the order's hostnames");
	if (scope.reason)
		return order_fail(run, scope.reason, "%s", scope.detail);
	if (strcmp(cp_json_str(run->order, "challenge"), "http-01") != 0)
		return ORDER_STEP_DONE; /* DNS-01 proves control of each name by itself */

	json_array_foreach(ids, i, v)
	{
		const char *name = json_string_value(v), *status = NULL, *method = NULL;
		json_t *check = NULL, *claim = NULL;
		const char *edge;
		bool reaches;

		if (cp_hostname_is_wildcard(name)) {
			step = order_fail(
				run, "wildcard_needs_dns01",
				"%s is a wildcard: HTTP-01 cannot validate it, use dns-01", name);
			break;
		}
		rc = db_claim_get(run->db, run->tenant_id, name, &claim);
		if (rc == CP_ERR_NOT_FOUND) {
			step = order_fail(
				run, "hostname_not_verified",
				"%s is on no property of this tenant: HTTP-01 needs it on a "
				"property, CNAMEd to the property's edge hostname",
				name);
			break;
		}
		if (rc != CP_OK) {
			step = order_fail_db(run, rc, "checking a hostname's claim");
			break;
		}
		edge = cp_json_str(claim, "edge_hostname");
		if (!res) {
			if (acme_resolver_new(run->ctx->cfg->dns_resolver, &res) != CP_OK) {
				json_decref(claim);
				step = order_fail(run, "internal", "bad dns_resolver setting");
				break;
			}
			acme_resolver_set_deadline(res, cp_mono_ms() + HOSTNAME_CHECK_BUDGET_MS);
		}
		rc = acme_check_hostname(res, name, edge, &check);
		if (rc == CP_ERR_UPSTREAM) {
			snprintf(run->reason, sizeof(run->reason), "dns_lookup_failed");
			snprintf(run->detail, sizeof(run->detail), "%s",
				 cp_json_str(check, "detail") ? cp_json_str(check, "detail")
							      : "DNS lookup failed");
			step = ORDER_STEP_BACKOFF;
		} else if (rc != CP_OK) {
			step = order_fail(run, "invalid_hostname", "%s is not a valid hostname",
					  name);
		} else {
			reaches = json_is_true(json_object_get(check, "ready")) ||
				  db_edge_in_chain(run->db, run->tenant_id,
						   json_object_get(check, "cname_chain")) == CP_OK;
			rc = claims_verify(run->ctx->cfg, run->db, res, run->tenant_id, name, check,
					   CP_OK, &status, &method);
			if (rc != CP_OK && rc != CP_ERR_NOT_FOUND)
				step = order_fail_db(run, rc,
						     "recording a hostname's verification");
			else if (status && !strcmp(status, "owned_by_another_tenant"))
				step = order_fail(run, "hostname_owned_by_another_tenant",
						  "%s is verified by another tenant", name);
			else if (!reaches)
				step = order_fail(run, "dns_not_pointed_to_edge", "%s",
						  cp_json_str(check, "detail")
							  ? cp_json_str(check, "detail")
							  : "does not point at the edge");
		}
		json_decref(check);
		json_decref(claim);
		if (step != ORDER_STEP_DONE)
			break;
	}
	acme_resolver_free(res);
	return step;
}

/* The order's certificate key, generated and stored once (before any CSR). */
cp_rc order_get_key(struct order_run *run, struct crypto_key **key)
{
	const char *sealed = cp_json_str(run->order, "key");
	char *aad = cp_aprintf("orders:%s", run->id), *pem = NULL, *nsealed = NULL;
	enum crypto_key_type kt;
	size_t n = 0;
	cp_rc rc = aad ? CP_OK : CP_ERR_NOMEM;

	*key = NULL;
	if (rc == CP_OK && sealed) {
		rc = crypto_open(run->ctx->keyring, aad, sealed, &pem, &n);
		if (rc == CP_OK)
			rc = crypto_key_from_pem(pem, n, NULL, key, NULL);
		goto out;
	}
	if (rc == CP_OK && crypto_key_type_parse(cp_json_str(run->order, "key_type"), &kt) != CP_OK)
		kt = CRYPTO_KEY_ECDSA_P256;
	if (rc == CP_OK)
		rc = crypto_key_generate(kt, key);
	if (rc == CP_OK)
		rc = crypto_key_to_pem(*key, &pem);
	if (rc == CP_OK) {
		n = strlen(pem);
		rc = crypto_seal(run->ctx->keyring, aad, pem, n, &nsealed);
	}
	if (rc == CP_OK)
		rc = order_save(run, json_pack("{s:s}", "key", nsealed));
	if (rc == CP_OK)
		rc = order_reload(run);
out:
	if (rc != CP_OK) {
		crypto_key_free(*key);
		*key = NULL;
	}
	free(aad);
	free(nsealed);
	crypto_wipe_free_buf(pem, n);
	return rc;
}

static enum order_step place_order(struct order_run *run)
{
	json_t *ids = json_object_get(run->order, "identifiers"), *ca_order = NULL, *authzs;
	const char *names[100];
	struct crypto_key *key = NULL;
	char *order_url = NULL;
	size_t n = json_array_size(ids), i;
	bool profile_refused = false;
	enum order_step step;
	cp_rc rc;

	if (n == 0 || n > CP_ARRAY_LEN(names))
		return order_fail(run, "invalid_identifiers", "an order needs 1 to 100 hostnames");
	if ((step = hostname_checks(run)) != ORDER_STEP_DONE)
		return step;
	if ((step = order_caa_check(run)) != ORDER_STEP_DONE)
		return step; /* CAA forbids this CA: no newOrder reaches it */
	/* order_get_key() reloads run->order: take the names from the new copy. */
	if ((rc = order_get_key(run, &key)) != CP_OK)
		return order_fail_key(run, rc, "preparing the certificate key");
	crypto_key_free(key);
	ids = json_object_get(run->order, "identifiers");
	for (i = 0; i < n; i++)
		names[i] = json_string_value(json_array_get(ids, i));
	rc = server_order_place(run->c, run->db, run->tenant_id, run->order, names, n, &order_url,
				&ca_order, &profile_refused, &run->r);
	if (profile_refused)
		return order_fail(run, "profile_not_offered", "%s", run->r.detail);
	if (rc != CP_OK)
		return order_fail_ca(run, rc, "new order");
	/* Persist every URL of the new order before anything else happens. */
	authzs = json_object_get(ca_order, "authorizations");
	rc = db_begin(run->db);
	if (rc == CP_OK)
		rc = order_save(run,
				json_pack("{s:s,s:s,s:s?}", "account_url",
					  acme_client_account_url(run->c), "order_url", order_url,
					  "finalize_url", cp_json_str(ca_order, "finalize")));
	for (i = 0; rc == CP_OK && i < json_array_size(authzs) && i < 100; i++)
		rc = db_order_authz_add(run->db, run->id, (int)i,
					json_string_value(json_array_get(authzs, i)));
	if (rc == CP_OK)
		rc = db_commit(run->db);
	else
		db_rollback(run->db);
	cp_log_json(CP_LOG_INFO, "acme.order_placed",
		    json_pack("{s:s,s:s,s:i}", "order_id", run->id, "order_url", order_url,
			      "authorizations", (int)json_array_size(authzs)));
	free(order_url);
	json_decref(ca_order);
	if (rc == CP_OK)
		rc = order_reload(run);
	return rc == CP_OK ? ORDER_STEP_DONE : order_fail_db(run, rc, "storing the new CA order");
}

/* ---- finalize, download, store ---- */

static enum order_step finalize(struct order_run *run)
{
	struct crypto_key *key = NULL;
	uint8_t *csr = NULL;
	size_t csr_len = 0;
	json_t *o = NULL;
	cp_rc rc;

	if ((rc = order_save(run, json_pack("{s:s}", "status", "issuing"))) != CP_OK)
		return order_fail_db(run, rc, "storing the order");
	if ((rc = order_get_key(run, &key)) != CP_OK)
		return order_fail_key(run, rc, "opening the certificate key");
	rc = crypto_csr_der(key, json_object_get(run->order, "identifiers"), &csr, &csr_len);
	crypto_key_free(key);
	if (rc != CP_OK)
		return order_fail(run, "internal", "cannot build the CSR");
	rc = acme_order_finalize(run->c, cp_json_str(run->order, "finalize_url"), csr, csr_len, &o,
				 &run->r);
	free(csr);
	json_decref(o);
	if (rc != CP_OK)
		return order_fail_ca(run, rc, "finalize");
	return ORDER_STEP_DONE;
}

static enum order_step download(struct order_run *run)
{
	char *pem = NULL;
	enum order_step step;
	cp_rc rc = acme_cert_download(run->c, cp_json_str(run->order, "certificate_url"), &pem,
				      &run->r);

	if (rc != CP_OK)
		return order_fail_ca(run, rc, "certificate download");
	step = order_store_certificate(run, pem);
	free(pem);
	return step;
}

/* Drive the CA order to the end (or to a wait) from whatever is stored. */
static enum order_step advance(struct order_run *run)
{
	int64_t delay = ORDER_POLL_FIRST_MS, deadline = cp_mono_ms() + ORDER_POLL_BUDGET_MS;
	const char *acct = cp_json_str(run->order, "account_url");
	enum order_step step;
	cp_rc rc;

	/* An order of an account the CA no longer has is gone with it. */
	if (cp_json_str(run->order, "order_url") &&
	    (!acct || strcmp(acct, acme_client_account_url(run->c)) != 0))
		return ORDER_STEP_RESET;
	if (!cp_json_str(run->order, "order_url") && (step = place_order(run)) != ORDER_STEP_DONE)
		return step;
	for (;;) {
		json_t *o = NULL;
		char st[32];
		const char *cert_url;

		if (cp_json_str(run->order, "certificate_url"))
			return download(run);
		rc = acme_order_get(run->c, cp_json_str(run->order, "order_url"), &o, &run->r);
		if (rc != CP_OK)
			return order_fail_ca(run, rc, "order");
		snprintf(st, sizeof(st), "%s",
			 cp_json_str(o, "status") ? cp_json_str(o, "status") : "");
		cert_url = cp_json_str(o, "certificate");
		if (!strcmp(st, "valid") && cert_url) {
			rc = order_save(run, json_pack("{s:s,s:s}", "status", "issuing",
						       "certificate_url", cert_url));
			json_decref(o);
			if (rc == CP_OK)
				rc = order_reload(run);
			if (rc != CP_OK)
				return order_fail_db(run, rc, "storing the certificate URL");
			continue;
		}
		if (!strcmp(st, "pending")) {
			json_decref(o);
			if ((step = order_answer_authorizations(run)) != ORDER_STEP_DONE)
				return step;
			delay = ORDER_POLL_FIRST_MS;
			continue;
		}
		if (!strcmp(st, "ready")) {
			json_decref(o);
			/* Every authorization is valid now: any DNS-01 record not yet
			 * released (the run that saw it turn valid ended first) can go. */
			if ((rc = order_dns_release_all(run)) != CP_OK)
				return order_fail_db(run, rc, "recording the DNS challenge");
			if ((step = finalize(run)) != ORDER_STEP_DONE)
				return step;
			continue;
		}
		if (!strcmp(st, "invalid")) {
			/* Find which authorization broke it, for the reason. */
			json_t *a, *authz = NULL;
			size_t i;
			json_array_foreach(json_object_get(run->order, "authorizations"), i, a)
			{
				rc = acme_authz_get(run->c, cp_json_str(a, "url"), &authz, &run->r);
				if (rc != CP_OK) {
					json_decref(o);
					return order_fail_ca(run, rc, "authorization");
				}
				if (strcmp(cp_json_str(authz, "status")
						   ? cp_json_str(authz, "status")
						   : "",
					   "valid")) {
					step = order_fail_authz(run, a, authz);
					json_decref(authz);
					json_decref(o);
					return step;
				}
				json_decref(authz);
				authz = NULL;
			}
			acme_order_problem(o, &run->r);
			json_decref(o);
			return order_fail_ca(run, CP_ERR_UPSTREAM, "order");
		}
		json_decref(o);
		/* processing (or valid without the URL yet): poll. */
		if (cp_mono_ms() > deadline) {
			run->run_at = cp_now() + 5;
			return ORDER_STEP_WAIT;
		}
		if ((step = order_wait_poll(run, delay)) != ORDER_STEP_DONE)
			return step;
		delay = delay * 2 > ORDER_POLL_MAX_MS ? ORDER_POLL_MAX_MS : delay * 2;
		if ((rc = order_reload(run)) != CP_OK)
			return order_fail_db(run, rc, "reloading the order");
		if (order_is_terminal(cp_json_str(run->order, "status")))
			return ORDER_STEP_DONE;
	}
}

void server_job_acme_order(const struct api_ctx *ctx, struct db *db, struct db_job *job,
			   struct server_job_outcome *out)
{
	struct order_run run = { .ctx = ctx,
				 .db = db,
				 .job = job,
				 .tenant_id = job->tenant_id,
				 .retry_after = -1,
				 .last_extend_ms = cp_mono_ms() };
	const char *order_id = cp_json_str(job->payload, "order_id");
	enum order_step step = ORDER_STEP_RESET;
	int resets = 0;
	cp_rc rc;

	out->result = SERVER_JOB_DONE;
	if (!order_id)
		return; /* not an order job anyone can run */
	rc = db_order_load(db, job->tenant_id, order_id, &run.order);
	if (rc == CP_ERR_NOT_FOUND)
		return; /* the order (or its tenant) is gone: nothing to do */
	if (rc != CP_OK) {
		/* Busy or failing database: the order is still there, untouched;
		 * run the job again soon (2..60 s, growing with the attempts). */
		int64_t d = job->attempts < 6 ? (int64_t)1 << job->attempts : 60;
		out->result = SERVER_JOB_RETRY;
		out->run_at = cp_now() + d / 2 + (int64_t)cp_random_below((uint64_t)d / 2 + 1);
		snprintf(out->error, sizeof(out->error),
			 "internal: database error loading the order: %s", cp_rc_str(rc));
		cp_log_json(CP_LOG_WARN, "acme.order_backoff",
			    json_pack("{s:s,s:s,s:s}", "order_id", order_id, "reason", "internal",
				      "detail", out->error));
		return;
	}
	run.id = cp_json_str(run.order, "id");
	if (order_is_terminal(cp_json_str(run.order, "status")))
		goto out;
	if ((rc = order_cas_begin(&run)) != CP_OK)
		step = order_fail_db(&run, rc, "taking the order's CA list");
	while (step == ORDER_STEP_RESET && resets <= MAX_RESETS) {
		memset(&run.r, 0, sizeof(run.r));
		rc = server_acme_client(ctx, db, cp_json_str(run.order, "ca"), &run.c, &run.r);
		if (rc == CP_ERR_INVALID) {
			step = order_fail(&run, "ca_unknown", "no CA named %s is configured",
					  cp_json_str(run.order, "ca"));
			break;
		}
		if (rc != CP_OK) {
			/* A busy or failing database while reading or storing the
			 * account is transient like any other database error. */
			bool db_err = rc == CP_ERR_BUSY || rc == CP_ERR_IO || rc == CP_ERR_NOMEM ||
				      rc == CP_ERR_INTERNAL;
			step = run.r.fail != ACME_FAIL_NONE ? order_fail_ca(&run, rc, "account")
			       : db_err ? order_fail_db(&run, rc, "account setup")
					: order_fail(&run, "internal", "account setup: %s",
						     cp_rc_str(rc));
			if (step == ORDER_STEP_RESET)
				step = ORDER_STEP_BACKOFF; /* registration itself said no account */
			if (order_ca_fallback(&run, &step))
				continue; /* the next CA of the order's list */
			break;
		}
		step = advance(&run);
		if (order_ca_fallback(&run, &step))
			continue;
		if (step != ORDER_STEP_RESET)
			break;
		/* The CA forgot our account or the order: register again (if the
		 * account is what it forgot) and place a fresh CA order. */
		resets++;
		cp_log_json(CP_LOG_WARN, "acme.order_reset",
			    json_pack("{s:s,s:s,s:s}", "order_id", run.id, "reason", run.reason,
				      "detail", run.detail));
		if (!strcmp(run.reason, "challenge_retry") &&
		    (rc = order_save(&run,
				     json_pack("{s:I}", "attempts",
					       (json_int_t)cp_json_int(run.order, "attempts") +
						       1))) != CP_OK) {
			step = order_fail_db(&run, rc, "storing the order");
			break;
		}
		if (acme_result_is(&run.r, "accountDoesNotExist"))
			if (db_acme_account_set_url(db, cp_json_str(run.order, "ca"), NULL) !=
			    CP_OK)
				cp_logf(CP_LOG_WARN, "acme.account",
					"cannot forget the account URL");
		rc = db_order_reset(db, run.id);
		if (rc == CP_ERR_CONFLICT) {
			/* Finished meanwhile (its tenant canceled it while we
			 * talked to the CA): it stays so, nothing to record. */
			step = ORDER_STEP_DONE;
			break;
		}
		if (rc == CP_OK)
			rc = order_reload(&run);
		if (rc != CP_OK) {
			step = order_fail_db(&run, rc, "resetting the order");
			break;
		}
	}
	if (step == ORDER_STEP_RESET)
		step = ORDER_STEP_BACKOFF;
	if (step == ORDER_STEP_BACKOFF && !order_record_backoff(&run, &out->run_at))
		step = ORDER_STEP_FAIL; /* the order's deadline passed: the CA kept failing */
	switch (step) {
	case ORDER_STEP_DONE:
		break;
	case ORDER_STEP_GONE:
		/* Deleted while we ran (tenant deleted): nothing left to record. */
		cp_log_json(CP_LOG_INFO, "acme.order_gone",
			    json_pack("{s:s}", "order_id", order_id));
		break;
	case ORDER_STEP_WAIT:
		out->result = SERVER_JOB_RETRY;
		out->run_at = run.run_at;
		break;
	case ORDER_STEP_BACKOFF:
		out->result = SERVER_JOB_RETRY;
		snprintf(out->error, sizeof(out->error), "%.60s: %.440s", run.reason, run.detail);
		break;
	case ORDER_STEP_FAIL:
	default:
		order_ca_fallback_detail(&run);
		if (order_record_failure(&run) != CP_OK) {
			/* Not recorded (busy database): run again shortly. */
			out->result = SERVER_JOB_RETRY;
			out->run_at = cp_now() + 1;
		}
		snprintf(out->error, sizeof(out->error), "%.60s: %.440s", run.reason, run.detail);
		break;
	}
out:
	json_decref(run.order);
}
