/*
 * orders.c - the ACME order engine: the "acme_order" job that drives one
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
 */
#include "acme/acme.h"
#include "claims/claims.h"
#include "crypto/crypto.h"
#include "lifecycle/lifecycle.h"
#include "server/server_internal.h"

#include <assert.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ORDER_LEASE_SECONDS 120
#define POLL_FIRST_MS 50
#define POLL_MAX_MS 1000
#define POLL_BUDGET_MS 90000	       /* one job run polls a CA object at most this long */
#define DNS01_RECHECK_SECONDS 2	       /* TXT visibility polling */
#define BACKOFF_MAX_SECONDS 600	       /* transient CA failures: 2 s doubling up to this */
#define MAX_RESETS 3		       /* fresh CA orders after the CA forgot one, per run */
#define HOSTNAME_CHECK_BUDGET_MS 30000 /* every DNS lookup of the pre-order checks together */

/* ==== ACME clients: one per CA per worker thread, kept across jobs ==== */

/* A thread's client for one CA (the directory and nonces stay warm). */
struct ca_client {
	char ca[64];
	char account_id[CP_UUID_LEN + 1];
	struct crypto_key *key;
	struct acme_client *c;
};

#define THREAD_CLIENTS 8
struct thread_clients {
	struct ca_client slot[THREAD_CLIENTS];
};

static pthread_key_t clients_key;
static pthread_mutex_t register_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t clients_once = PTHREAD_ONCE_INIT;

static void clients_free(void *p)
{
	struct thread_clients *tc = p;

	for (int i = 0; tc && i < THREAD_CLIENTS; i++) {
		acme_client_free(tc->slot[i].c);
		crypto_key_free(tc->slot[i].key);
	}
	free(tc);
}

static void clients_init(void)
{
	(void)pthread_key_create(&clients_key, clients_free);
}

cp_rc server_acme_ca(const struct cp_config *cfg, const char *ca, const char **directory_url,
		     const char **ca_bundle)
{
	json_t *entry;

	if (strcmp(ca, "letsencrypt") == 0) {
		*directory_url = cfg->acme_directory_url;
		*ca_bundle = cfg->acme_ca_bundle;
	} else {
		entry = json_object_get(cfg->cas, ca);
		*directory_url = json_string_value(json_object_get(entry, "directory_url"));
		*ca_bundle = json_string_value(json_object_get(entry, "ca_bundle"));
	}
	if (!*directory_url || !**directory_url)
		return CP_ERR_NOT_FOUND;
	if (*ca_bundle && !**ca_bundle)
		*ca_bundle = NULL;
	return CP_OK;
}

/* Create the CA's account row (key sealed) unless it exists; read it. */
static cp_rc account_row(const struct api_ctx *ctx, struct db *db, const char *ca,
			 const char *directory_url, json_t **row)
{
	struct crypto_key *k = NULL;
	char id[CP_UUID_LEN + 1], *pem = NULL, *aad = NULL, *sealed = NULL;
	cp_rc rc = db_acme_account_get(db, ca, row);

	if (rc != CP_ERR_NOT_FOUND)
		return rc;
	cp_uuid(id);
	aad = cp_aprintf("acme_accounts:%s", id);
	rc = aad ? crypto_key_generate(CRYPTO_KEY_ECDSA_P256, &k) : CP_ERR_NOMEM;
	if (rc == CP_OK)
		rc = crypto_key_to_pem(k, &pem);
	if (rc == CP_OK)
		rc = crypto_seal(ctx->keyring, aad, pem, strlen(pem), &sealed);
	if (rc == CP_OK)
		rc = db_acme_account_create(db, id, ca, directory_url, sealed);
	/* Another worker created the CA's row first (ca is unique): use theirs. */
	if (rc == CP_ERR_CONFLICT)
		rc = CP_OK;
	if (rc == CP_OK)
		rc = db_acme_account_get(db, ca, row);
	crypto_key_free(k);
	crypto_wipe_free(pem);
	free(aad);
	free(sealed);
	return rc;
}

cp_rc server_acme_client(const struct api_ctx *ctx, struct db *db, const char *ca,
			 struct acme_client **client, struct acme_result *r)
{
	struct thread_clients *tc;
	struct ca_client *slot = NULL;
	const char *dir_url, *bundle, *acct_url, *url;
	json_t *row = NULL;
	char *aad = NULL, *pem = NULL;
	size_t n = 0;
	cp_rc rc;

	pthread_once(&clients_once, clients_init);
	tc = pthread_getspecific(clients_key);
	if (!tc) {
		tc = calloc(1, sizeof(*tc));
		if (!tc || pthread_setspecific(clients_key, tc) != 0) {
			free(tc);
			return CP_ERR_NOMEM;
		}
	}
	if ((rc = server_acme_ca(ctx->cfg, ca, &dir_url, &bundle)) != CP_OK)
		return CP_ERR_INVALID;
	if ((rc = account_row(ctx, db, ca, dir_url, &row)) != CP_OK)
		goto out;
	acct_url = json_string_value(json_object_get(row, "account_url"));
	for (int i = 0; i < THREAD_CLIENTS && !slot; i++)
		if (strcmp(tc->slot[i].ca, ca) == 0)
			slot = &tc->slot[i];
	if (slot && strcmp(slot->account_id, json_string_value(json_object_get(row, "id"))) != 0) {
		acme_client_free(slot->c);
		crypto_key_free(slot->key);
		memset(slot, 0, sizeof(*slot));
		slot = NULL;
	}
	if (!slot) {
		for (int i = 0; i < THREAD_CLIENTS && !slot; i++)
			if (!tc->slot[i].c)
				slot = &tc->slot[i];
		if (!slot) { /* more CAs than slots: recycle the first */
			slot = &tc->slot[0];
			acme_client_free(slot->c);
			crypto_key_free(slot->key);
			memset(slot, 0, sizeof(*slot));
		}
		struct acme_config ac = { .directory_url = dir_url, .ca_bundle = bundle };
		const char *id = json_string_value(json_object_get(row, "id"));
		aad = cp_aprintf("acme_accounts:%s", id);
		rc = aad ? crypto_open(ctx->keyring, aad,
				       json_string_value(json_object_get(row, "key")), &pem, &n)
			 : CP_ERR_NOMEM;
		if (rc == CP_OK)
			rc = crypto_key_from_pem(pem, n, NULL, &slot->key, NULL);
		ac.account_key = slot->key;
		ac.account_url = acct_url;
		if (rc == CP_OK)
			rc = acme_client_new(&ac, &slot->c);
		if (rc != CP_OK) {
			crypto_key_free(slot->key);
			memset(slot, 0, sizeof(*slot));
			goto out;
		}
		snprintf(slot->ca, sizeof(slot->ca), "%s", ca);
		snprintf(slot->account_id, sizeof(slot->account_id), "%s", id);
	}
	/* Another thread may have re-registered (or forgotten) the account. */
	url = acme_client_account_url(slot->c);
	if ((acct_url == NULL) != (url == NULL) || (acct_url && strcmp(acct_url, url) != 0))
		if ((rc = acme_client_set_account_url(slot->c, acct_url)) != CP_OK)
			goto out;
	if (!acct_url) {
		/* One registration at a time per process: concurrent newAccount
		 * requests for one key hang Pebble, and one is all we need. The
		 * winner stores the URL; the others find it under the lock. */
		const char *email = ctx->cfg->acme_contact_email;
		json_t *again = NULL;
		pthread_mutex_lock(&register_lock);
		rc = db_acme_account_get(db, ca, &again);
		acct_url = json_string_value(json_object_get(again, "account_url"));
		if (rc == CP_OK && acct_url) {
			rc = acme_client_set_account_url(slot->c, acct_url);
		} else if (rc == CP_OK) {
			rc = acme_account_ensure(slot->c, email && *email ? email : NULL, &url, r);
			if (rc == CP_OK)
				rc = db_acme_account_set_url(db, ca, url);
			if (rc == CP_OK)
				cp_log_json(CP_LOG_INFO, "acme.account",
					    json_pack("{s:s,s:s}", "ca", ca, "account_url", url));
		}
		pthread_mutex_unlock(&register_lock);
		json_decref(again);
		if (rc != CP_OK)
			goto out;
	}
	*client = slot->c;
out:
	json_decref(row);
	free(aad);
	crypto_wipe_free_buf(pem, n);
	return rc;
}

/* ==== one run of an order ==== */

/* How a run ended. */
enum step {
	STEP_DONE,    /* terminal state committed (valid, failed, canceled) */
	STEP_WAIT,    /* come back at run_at (DNS-01 polling) */
	STEP_BACKOFF, /* transient failure: reason/detail, retry with backoff */
	STEP_FAIL,    /* permanent failure: reason/detail */
	STEP_RESET,   /* the CA forgot the order or account: start a fresh one */
	STEP_GONE,    /* the order row was deleted meanwhile: record nothing */
};

struct run {
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
};

/* Keep our lease while a long step runs. false: the lease is lost. */
static bool keep_lease(struct run *run)
{
	int64_t now = cp_mono_ms();

	if (now - run->last_extend_ms < 20000)
		return true;
	run->last_extend_ms = now;
	return db_job_extend(run->db, run->job->id, run->job->owner, ORDER_LEASE_SECONDS) == CP_OK;
}

static enum step fail(struct run *run, const char *reason, const char *fmt, ...) CP_PRINTF(3, 4);
static enum step fail(struct run *run, const char *reason, const char *fmt, ...)
{
	va_list ap;

	snprintf(run->reason, sizeof(run->reason), "%s", reason);
	va_start(ap, fmt);
	vsnprintf(run->detail, sizeof(run->detail), fmt, ap);
	va_end(ap);
	return STEP_FAIL;
}

/* Classify a failed database call of the run (rc != CP_OK). Only
 * CP_ERR_NOT_FOUND means the order is gone (deleted with its tenant); any
 * other error (busy, I/O, out of memory, a failed statement) says nothing
 * about the order, so the job runs again later with backoff and the order
 * keeps its state: a database hiccup never fails or drops an order. */
static enum step db_failure(struct run *run, cp_rc rc, const char *what)
{
	assert(rc != CP_OK);
	if (rc == CP_ERR_NOT_FOUND)
		return STEP_GONE;
	snprintf(run->reason, sizeof(run->reason), "internal");
	snprintf(run->detail, sizeof(run->detail), "database error %.200s: %s", what,
		 cp_rc_str(rc));
	return STEP_BACKOFF;
}

/* order_key() failed: a key that does not open (or cannot be built) is
 * the order's problem; a database error storing it is transient. */
static enum step key_failure(struct run *run, cp_rc rc, const char *what)
{
	if (rc == CP_ERR_CRYPTO || rc == CP_ERR_INVALID)
		return fail(run, "internal", "%s: %s", what, cp_rc_str(rc));
	return db_failure(run, rc, what);
}

/*
 * A failed CA exchange (rc != CP_OK, run->r filled) as the step it leads
 * to, by acme_classify()'s table (the one place that decides): transient ->
 * STEP_BACKOFF (the order keeps its state; its deadline bounds the
 * retries), reset -> STEP_RESET, definitive -> STEP_FAIL. run->reason and
 * run->detail say what, run->retry_after what the CA asked for.
 */
static enum step ca_failure(struct run *run, cp_rc rc, const char *what)
{
	struct acme_verdict v = acme_classify(&run->r);
	const char *reason = v.reason ? v.reason : "internal";

	snprintf(run->reason, sizeof(run->reason), "%s", reason);
	snprintf(run->detail, sizeof(run->detail), "%.40s: %.360s%s%.100s", what,
		 run->r.detail[0] ? run->r.detail : cp_rc_str(rc), run->r.type[0] ? " " : "",
		 run->r.type);
	run->retry_after = run->r.retry_after;
	switch (v.outcome) {
	case ACME_OUTCOME_DEFINITIVE:
		return STEP_FAIL;
	case ACME_OUTCOME_RESET:
		return STEP_RESET;
	case ACME_OUTCOME_TRANSIENT:
	case ACME_OUTCOME_OK: /* rc said failure without a CA outcome: ours */
	default:
		return STEP_BACKOFF;
	}
}

/* Save a patch (stolen) to the order inside its own transaction. */
static cp_rc save(struct run *run, json_t *patch)
{
	cp_rc rc = patch ? db_order_save(run->db, run->id, patch) : CP_ERR_NOMEM;

	json_decref(patch);
	return rc;
}

static cp_rc authz_save(struct run *run, int position, json_t *patch)
{
	cp_rc rc = patch ? db_order_authz_save(run->db, run->id, position, patch) : CP_ERR_NOMEM;

	json_decref(patch);
	return rc;
}

static cp_rc reload(struct run *run)
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

static bool terminal(const char *status)
{
	return !strcmp(status, "valid") || !strcmp(status, "failed") || !strcmp(status, "canceled");
}

/* The event payload base every order event carries (new reference). */
static json_t *event_base(struct run *run)
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
static enum step hostname_checks(struct run *run)
{
	json_t *ids = json_object_get(run->order, "identifiers"), *v;
	struct acme_resolver *res = NULL;
	struct db_scope_verdict scope;
	enum step step = STEP_DONE;
	size_t i;
	cp_rc rc;

	rc = db_issuance_scope(run->db, run->ctx->cfg->edge_zone, run->tenant_id, ids, &scope);
	if (rc != CP_OK)
		return db_failure(run, rc, "checking the order's hostnames");
	if (scope.reason)
		return fail(run, scope.reason, "%s", scope.detail);
	if (strcmp(cp_json_str(run->order, "challenge"), "http-01") != 0)
		return STEP_DONE; /* DNS-01 proves control of each name by itself */

	json_array_foreach(ids, i, v)
	{
		const char *name = json_string_value(v), *status = NULL, *method = NULL;
		json_t *check = NULL, *claim = NULL;
		const char *edge;
		bool reaches;

		if (cp_hostname_is_wildcard(name)) {
			step = fail(run, "wildcard_needs_dns01",
				    "%s is a wildcard: HTTP-01 cannot validate it, use dns-01",
				    name);
			break;
		}
		rc = db_claim_get(run->db, run->tenant_id, name, &claim);
		if (rc == CP_ERR_NOT_FOUND) {
			step = fail(run, "hostname_not_verified",
				    "%s is on no property of this tenant: HTTP-01 needs it on a "
				    "property, CNAMEd to the property's edge hostname",
				    name);
			break;
		}
		if (rc != CP_OK) {
			step = db_failure(run, rc, "checking a hostname's claim");
			break;
		}
		edge = cp_json_str(claim, "edge_hostname");
		if (!res) {
			if (acme_resolver_new(run->ctx->cfg->dns_resolver, &res) != CP_OK) {
				json_decref(claim);
				step = fail(run, "internal", "bad dns_resolver setting");
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
			step = STEP_BACKOFF;
		} else if (rc != CP_OK) {
			step = fail(run, "invalid_hostname", "%s is not a valid hostname", name);
		} else {
			reaches = json_is_true(json_object_get(check, "ready")) ||
				  db_edge_in_chain(run->db, run->tenant_id,
						   json_object_get(check, "cname_chain")) == CP_OK;
			rc = claims_verify(run->ctx->cfg, run->db, res, run->tenant_id, name, check,
					   CP_OK, &status, &method);
			if (rc != CP_OK && rc != CP_ERR_NOT_FOUND)
				step = db_failure(run, rc, "recording a hostname's verification");
			else if (status && !strcmp(status, "owned_by_another_tenant"))
				step = fail(run, "hostname_owned_by_another_tenant",
					    "%s is verified by another tenant", name);
			else if (!reaches)
				step = fail(run, "dns_not_pointed_to_edge", "%s",
					    cp_json_str(check, "detail")
						    ? cp_json_str(check, "detail")
						    : "does not point at the edge");
		}
		json_decref(check);
		json_decref(claim);
		if (step != STEP_DONE)
			break;
	}
	acme_resolver_free(res);
	return step;
}

/* The order's certificate key, generated and stored once (before any CSR). */
static cp_rc order_key(struct run *run, struct crypto_key **key)
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
		rc = save(run, json_pack("{s:s}", "key", nsealed));
	if (rc == CP_OK)
		rc = reload(run);
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

static enum step place_order(struct run *run)
{
	json_t *ids = json_object_get(run->order, "identifiers"), *ca_order = NULL, *authzs;
	const char *names[100];
	struct crypto_key *key = NULL;
	char *order_url = NULL;
	size_t n = json_array_size(ids), i;
	enum step step;
	cp_rc rc;

	if (n == 0 || n > CP_ARRAY_LEN(names))
		return fail(run, "invalid_identifiers", "an order needs 1 to 100 hostnames");
	if ((step = hostname_checks(run)) != STEP_DONE)
		return step;
	/* order_key() reloads run->order: take the names from the new copy. */
	if ((rc = order_key(run, &key)) != CP_OK)
		return key_failure(run, rc, "preparing the certificate key");
	crypto_key_free(key);
	ids = json_object_get(run->order, "identifiers");
	for (i = 0; i < n; i++)
		names[i] = json_string_value(json_array_get(ids, i));
	rc = acme_order_new(run->c, names, n, NULL, &order_url, &ca_order, &run->r);
	if (rc != CP_OK)
		return ca_failure(run, rc, "new order");
	/* Persist every URL of the new order before anything else happens. */
	authzs = json_object_get(ca_order, "authorizations");
	rc = db_begin(run->db);
	if (rc == CP_OK)
		rc = save(run, json_pack("{s:s,s:s,s:s?}", "account_url",
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
		rc = reload(run);
	return rc == CP_OK ? STEP_DONE : db_failure(run, rc, "storing the new CA order");
}

/* ---- authorizations ---- */

/* Fill an authorization row from the CA's authz object (first sight). */
static enum step authz_learn(struct run *run, json_t *a, json_t *authz)
{
	const char *type = cp_json_str(run->order, "challenge");
	const char *ident = cp_json_str(json_object_get(authz, "identifier"), "value");
	const char *status = cp_json_str(authz, "status");
	const json_t *ch = acme_authz_challenge(authz, type);
	const char *token = cp_json_str(ch, "token"), *ch_url = cp_json_str(ch, "url");
	bool wildcard = json_is_true(json_object_get(authz, "wildcard"));
	char *shown = NULL, *ka = NULL, *txt_name = NULL, *txt_value = NULL;
	int64_t expires = 0;
	int pos = (int)cp_json_int(a, "position");
	cp_rc rc;

	if (!ident || !status)
		return fail(run, "ca_protocol_error", "authorization %s lacks identifier or status",
			    cp_json_str(a, "url"));
	shown = wildcard ? cp_aprintf("*.%s", ident) : cp_strdup(ident);
	if (cp_json_str(authz, "expires"))
		if (cp_time_parse(cp_json_str(authz, "expires"), &expires) != CP_OK)
			expires = 0;
	if (strcmp(status, "pending") == 0) {
		if (!token || !ch_url) {
			free(shown);
			return fail(run, "challenge_failed", "the CA offers no %s challenge for %s",
				    type, ident);
		}
		if (!strcmp(type, "dns-01"))
			rc = acme_dns01_record(acme_client_key(run->c), ident, token, &txt_name,
					       &txt_value);
		else
			rc = acme_key_authorization(acme_client_key(run->c), token, &ka);
		if (rc != CP_OK) {
			free(shown);
			return fail(run, "ca_protocol_error", "unusable challenge token for %s",
				    ident);
		}
	}
	rc = authz_save(run, pos,
			json_pack("{s:s?,s:s,s:s?,s:s?,s:s?,s:s?,s:s?,s:s?,s:o}", "identifier",
				  shown, "status", status, "challenge_type", token ? type : NULL,
				  "challenge_url", ch_url, "token", token, "key_authorization", ka,
				  "txt_record_name", txt_name, "txt_record_value", txt_value,
				  "expires_at", expires ? json_integer(expires) : json_null()));
	free(shown);
	free(ka);
	free(txt_name);
	free(txt_value);
	return rc == CP_OK ? STEP_DONE : db_failure(run, rc, "storing an authorization");
}

/*
 * An authorization the CA did not make valid (a: its row, authz: the CA's
 * object), as a failure classified by acme_classify().
 */
static enum step authz_failed(struct run *run, json_t *a, json_t *authz)
{
	const char *ident =
		cp_json_str(a, "identifier") ? cp_json_str(a, "identifier") : cp_json_str(a, "url");
	int64_t responded = cp_json_int(a, "responded");
	struct acme_result pr;
	struct acme_verdict v;

	acme_authz_problem(authz, cp_json_str(run->order, "challenge"), &pr);
	v = acme_classify(&pr);
	/* The CA could not connect to us. If we answered the challenge in an
	 * earlier life of this process (responded is when; 0: killed before it
	 * was stored), our own process died while the CA was validating (kill
	 * -9, deploy): our fault, not the tenant's - place a fresh CA order.
	 * With this process up the whole time, the name does not reach us. */
	if (acme_result_is(&pr, "connection") && responded <= run->ctx->started_at) {
		snprintf(run->reason, sizeof(run->reason), "challenge_retry");
		snprintf(run->detail, sizeof(run->detail), "validation of %.200s: %.280s", ident,
			 pr.detail);
		return STEP_RESET;
	}
	snprintf(run->reason, sizeof(run->reason), "%s", v.reason ? v.reason : "challenge_failed");
	snprintf(run->detail, sizeof(run->detail), "validation of %.150s failed: %.250s%s%.60s",
		 ident, pr.detail, pr.type[0] ? " " : "", pr.type);
	return v.outcome == ACME_OUTCOME_TRANSIENT ? STEP_BACKOFF : STEP_FAIL;
}

/* DNS-01: tell the tenant what to publish (once per authorization). */
static cp_rc dns_notify(struct run *run, json_t *a)
{
	json_t *data = event_base(run);
	char exp[CP_TIME_LEN + 1];
	int64_t deadline = cp_json_int(run->order, "dns_deadline");
	cp_rc rc;

	if (!deadline)
		deadline = cp_now() + run->ctx->cfg->dns01_timeout_seconds;
	cp_time_fmt(deadline, exp);
	if (!data)
		return CP_ERR_NOMEM;
	json_object_set_new(data, "domain", json_string(cp_json_str(a, "identifier")));
	json_object_set_new(data, "txt_record_name",
			    json_string(cp_json_str(a, "txt_record_name")));
	json_object_set_new(data, "txt_record_value",
			    json_string(cp_json_str(a, "txt_record_value")));
	json_object_set_new(data, "expires_at", json_string(exp));
	rc = db_begin(run->db);
	if (rc == CP_OK)
		rc = db_event_add(run->db, run->tenant_id, "order.dns_challenge_required", data,
				  NULL);
	if (rc == CP_OK)
		rc = authz_save(run, (int)cp_json_int(a, "position"),
				json_pack("{s:i}", "notified", 1));
	if (rc == CP_OK && !cp_json_int(run->order, "dns_deadline"))
		rc = save(run, json_pack("{s:I}", "dns_deadline", (json_int_t)deadline));
	if (rc == CP_OK)
		rc = db_commit(run->db);
	else
		db_rollback(run->db);
	json_decref(data);
	return rc;
}

/* DNS-01: is the authorization's TXT value visible through our resolver? */
static bool txt_visible(struct run *run, struct acme_resolver **res, json_t *a)
{
	json_t *values = NULL, *v;
	bool found = false;
	size_t i;

	if (!*res && acme_resolver_new(run->ctx->cfg->dns_resolver, res) != CP_OK)
		return false;
	if (acme_dns_txt(*res, cp_json_str(a, "txt_record_name"), &values) != CP_OK)
		return false;
	json_array_foreach(values, i,
			   v) if (json_string_value(v) &&
				  !strcmp(json_string_value(v), cp_json_str(a, "txt_record_value")))
		found = true;
	json_decref(values);
	return found;
}

/* Poll one answered authorization until the CA decides. The answered
 * challenge is what is polled (RFC 8555 7.5.1 allows either): its
 * authorization becomes valid with it (7.1.6), and Pebble's authorization
 * handler holds the authorization's lock while it takes its store's, the
 * half of a lock cycle with new orders that hangs Pebble under load
 * (tests/bench/README.md); the authorization is read once at the end,
 * unless the challenge is valid. */
static enum step authz_poll(struct run *run, json_t *a)
{
	int64_t delay = POLL_FIRST_MS, deadline = cp_mono_ms() + POLL_BUDGET_MS;
	json_t *authz = NULL;
	enum step step = STEP_DONE;
	cp_rc rc;

	for (;;) {
		const char *st;
		json_decref(authz);
		authz = NULL;
		rc = acme_challenge_get(run->c, cp_json_str(a, "challenge_url"), &authz, &run->r);
		if (rc != CP_OK) {
			step = ca_failure(run, rc, "challenge");
			break;
		}
		st = cp_json_str(authz, "status");
		if (st && strcmp(st, "pending") != 0 && strcmp(st, "processing") != 0 &&
		    strcmp(st, "valid") != 0) {
			/* Decided, not valid: the authorization says why. */
			json_decref(authz);
			authz = NULL;
			rc = acme_authz_get(run->c, cp_json_str(a, "url"), &authz, &run->r);
			if (rc != CP_OK) {
				step = ca_failure(run, rc, "authorization");
				break;
			}
			st = cp_json_str(authz, "status");
		}
		if (st && strcmp(st, "pending") != 0 && strcmp(st, "processing") != 0) {
			if (strcmp(st, "valid") != 0) {
				step = authz_failed(run, a, authz);
				break;
			}
			rc = authz_save(run, (int)cp_json_int(a, "position"),
					json_pack("{s:s}", "status", "valid"));
			if (rc != CP_OK)
				step = db_failure(run, rc, "storing an authorization");
			break;
		}
		if (cp_mono_ms() > deadline) {
			/* Come back later rather than hold the worker. */
			run->run_at = cp_now() + 5;
			step = STEP_WAIT;
			break;
		}
		if (!keep_lease(run)) {
			step = db_failure(run, CP_ERR_BUSY, "extending the job lease");
			break;
		}
		cp_sleep_ms(run->r.retry_after > 0 ? run->r.retry_after * 1000 : delay);
		delay = delay * 2 > POLL_MAX_MS ? POLL_MAX_MS : delay * 2;
	}
	json_decref(authz);
	return step;
}

/* DNS-01: the challenge is done; tell the tenant to remove its record. */
static cp_rc dns_completed(struct run *run, json_t *a)
{
	json_t *data = event_base(run);
	cp_rc rc;

	if (!data)
		return CP_ERR_NOMEM;
	json_object_set_new(data, "domain", json_string(cp_json_str(a, "identifier")));
	json_object_set_new(data, "txt_record_name",
			    json_string(cp_json_str(a, "txt_record_name")));
	json_object_set_new(data, "txt_record_value",
			    json_string(cp_json_str(a, "txt_record_value")));
	rc = db_begin(run->db);
	if (rc == CP_OK)
		rc = db_event_add(run->db, run->tenant_id, "order.dns_challenge_completed", data,
				  NULL);
	if (rc == CP_OK)
		rc = authz_save(run, (int)cp_json_int(a, "position"),
				json_pack("{s:i}", "completed", 1));
	if (rc == CP_OK)
		rc = db_commit(run->db);
	else
		db_rollback(run->db);
	json_decref(data);
	return rc;
}

/*
 * A challenge POST was refused: had an earlier run already answered it (the
 * CA's reply lost to a crash or a dropped connection, so "responded" was
 * never stored)? Then the refusal is about a second answer, not the name.
 */
static bool already_answered(struct run *run, json_t *a)
{
	json_t *authz = NULL;
	struct acme_result keep = run->r;
	const char *st, *cst;
	bool yes = false;

	if (acme_authz_get(run->c, cp_json_str(a, "url"), &authz, &run->r) == CP_OK) {
		st = cp_json_str(authz, "status");
		cst = cp_json_str(acme_authz_challenge(authz, cp_json_str(run->order, "challenge")),
				  "status");
		yes = (st && strcmp(st, "pending") != 0) || (cst && strcmp(cst, "pending") != 0);
	}
	run->r = keep;
	json_decref(authz);
	return yes;
}

/* The CA order is "pending": get every authorization answered and valid. */
static enum step authorizations(struct run *run)
{
	bool dns = !strcmp(cp_json_str(run->order, "challenge"), "dns-01");
	struct acme_resolver *res = NULL;
	enum step step = STEP_DONE;
	bool waiting = false;
	json_t *a;
	size_t i;
	cp_rc rc;

	/* Learn what each authorization needs. */
	json_array_foreach(json_object_get(run->order, "authorizations"), i, a)
	{
		json_t *authz = NULL;
		if (cp_json_str(a, "identifier"))
			continue;
		rc = acme_authz_get(run->c, cp_json_str(a, "url"), &authz, &run->r);
		step = rc == CP_OK ? authz_learn(run, a, authz)
				   : ca_failure(run, rc, "authorization");
		json_decref(authz);
		if (step != STEP_DONE)
			return step;
	}
	if ((rc = reload(run)) != CP_OK)
		return db_failure(run, rc, "reloading the order");
	if (!strcmp(cp_json_str(run->order, "status"), "pending") &&
	    (rc = save(run, json_pack("{s:s}", "status", "validating"))) != CP_OK)
		return db_failure(run, rc, "storing the order");

	json_array_foreach(json_object_get(run->order, "authorizations"), i, a)
	{
		const char *st = cp_json_str(a, "status");
		if (strcmp(st, "valid") == 0) {
			if (dns && cp_json_int(a, "notified") && !cp_json_int(a, "completed"))
				(void)dns_completed(run, a);
			continue;
		}
		if (strcmp(st, "pending") != 0) {
			step = fail(run, "challenge_failed", "authorization for %s is %s",
				    cp_json_str(a, "identifier"), st);
			break;
		}
		if (!cp_json_int(a, "responded")) {
			if (dns) {
				if (!cp_json_int(a, "notified") &&
				    (rc = dns_notify(run, a)) != CP_OK) {
					step = db_failure(run, rc, "recording the DNS challenge");
					break;
				}
				if (!txt_visible(run, &res, a)) {
					waiting = true;
					continue;
				}
			}
			rc = acme_challenge_respond(run->c, cp_json_str(a, "challenge_url"), NULL,
						    &run->r);
			if (rc != CP_OK) {
				step = ca_failure(run, rc, "challenge");
				if (step != STEP_FAIL || !already_answered(run, a))
					break;
				step = STEP_DONE; /* our earlier answer's reply was lost */
			}
			/* When, not just whether: authz_failed() tells a CA that
			 * found us down (our crash) from one that could not reach
			 * the name. */
			if ((rc = authz_save(run, (int)cp_json_int(a, "position"),
					     json_pack("{s:I}", "responded",
						       (json_int_t)cp_now()))) != CP_OK) {
				step = db_failure(run, rc, "storing an authorization");
				break;
			}
		}
	}
	acme_resolver_free(res);
	if (step != STEP_DONE)
		return step;
	if ((rc = reload(run)) != CP_OK)
		return db_failure(run, rc, "reloading the order");
	/* Poll what was answered. */
	json_array_foreach(json_object_get(run->order, "authorizations"), i, a)
	{
		if (strcmp(cp_json_str(a, "status"), "pending") != 0 ||
		    !cp_json_int(a, "responded"))
			continue;
		if ((step = authz_poll(run, a)) != STEP_DONE)
			return step;
		if (dns && (rc = dns_completed(run, a)) != CP_OK)
			return db_failure(run, rc, "recording the DNS challenge");
	}
	if (waiting) {
		int64_t deadline = cp_json_int(run->order, "dns_deadline");
		if (reload(run) == CP_OK)
			deadline = cp_json_int(run->order, "dns_deadline");
		if (deadline && cp_now() >= deadline)
			return fail(run, "dns01_timeout",
				    "the DNS-01 TXT records were not visible within %d seconds",
				    run->ctx->cfg->dns01_timeout_seconds);
		run->run_at = cp_now() + DNS01_RECHECK_SECONDS;
		return STEP_WAIT;
	}
	return STEP_DONE;
}

/* ---- finalize, download, store ---- */

static enum step finalize(struct run *run)
{
	struct crypto_key *key = NULL;
	uint8_t *csr = NULL;
	size_t csr_len = 0;
	json_t *o = NULL;
	cp_rc rc;

	if ((rc = save(run, json_pack("{s:s}", "status", "issuing"))) != CP_OK)
		return db_failure(run, rc, "storing the order");
	if ((rc = order_key(run, &key)) != CP_OK)
		return key_failure(run, rc, "opening the certificate key");
	rc = crypto_csr_der(key, json_object_get(run->order, "identifiers"), &csr, &csr_len);
	crypto_key_free(key);
	if (rc != CP_OK)
		return fail(run, "internal", "cannot build the CSR");
	rc = acme_order_finalize(run->c, cp_json_str(run->order, "finalize_url"), csr, csr_len, &o,
				 &run->r);
	free(csr);
	json_decref(o);
	if (rc != CP_OK)
		return ca_failure(run, rc, "finalize");
	return STEP_DONE;
}

/* Store the downloaded chain as the certificate's new version; the order
 * turns valid and the event is written in the same transaction. */
static enum step complete(struct run *run, const char *pem)
{
	struct crypto_key *key = NULL;
	struct crypto_cert_info ci;
	char *leaf = NULL, *chain = NULL, *key_pem = NULL, nowts[CP_TIME_LEN + 1];
	const char *why = NULL, *cert_id = cp_json_str(run->order, "certificate_id");
	const char *kind = cp_json_str(run->order, "kind");
	json_t *fresh = NULL, *data = NULL;
	int version = 0;
	int64_t renew_after;
	cp_rc rc, load_rc = CP_OK;

	memset(&ci, 0, sizeof(ci));
	rc = crypto_chain_split(pem, strlen(pem), &leaf, &chain, &why);
	if (rc != CP_OK)
		return fail(run, "ca_protocol_error", "unusable certificate chain: %s",
			    why ? why : cp_rc_str(rc));
	rc = crypto_cert_info_parse(leaf, strlen(leaf), &ci, &why);
	if (rc == CP_OK)
		rc = order_key(run, &key);
	if (rc == CP_OK)
		rc = crypto_key_to_pem(key, &key_pem);
	if (rc != CP_OK) {
		free(leaf);
		free(chain);
		crypto_key_free(key);
		crypto_cert_info_clear(&ci);
		return fail(run, "internal", "cannot prepare the new version");
	}
	/* A version from the CA: the lifecycle rule for CA-issued ones. */
	renew_after = lifecycle_renew_at(
		&(struct lifecycle_version){ ci.not_before, ci.not_after, LIFECYCLE_CA },
		run->ctx->cfg->renew_before_days);
	struct db_cert_material m = { .cert_pem = leaf,
				      .chain_pem = chain,
				      .key_pem = key_pem,
				      .order_id = run->id,
				      .renew_after = renew_after };
	cp_time_fmt(cp_now(), nowts);
	rc = db_begin(run->db);
	if (rc == CP_OK)
		rc = load_rc = db_order_load(run->db, run->tenant_id, run->id, &fresh);
	if (rc == CP_OK && terminal(cp_json_str(fresh, "status"))) {
		/* Canceled (or finished elsewhere) meanwhile: store nothing. */
		db_rollback(run->db);
		goto out;
	}
	if (rc == CP_OK)
		rc = db_certificate_add_version(run->db, run->ctx->keyring, run->tenant_id, cert_id,
						&m, &version);
	if (rc == CP_OK)
		rc = save(run, json_pack("{s:s,s:I,s:n,s:n,s:i,s:n}", "status", "valid",
					 "completed_at", (json_int_t)cp_now(), "error_reason",
					 "error_detail", "attempts", 0, "next_attempt_at"));
	if (rc == CP_OK) {
		char nb[CP_TIME_LEN + 1], na[CP_TIME_LEN + 1];
		cp_time_fmt(ci.not_before, nb);
		cp_time_fmt(ci.not_after, na);
		data = json_pack("{s:s,s:s,s:i,s:s,s:O,s:s,s:s,s:s,s:O}", "certificate_id", cert_id,
				 "order_id", run->id, "version", version, "serial",
				 ci.serial ? ci.serial : "", "sans", ci.sans, "not_before", nb,
				 "not_after", na, "issuer", ci.issuer ? ci.issuer : "", "metadata",
				 json_object_get(run->order, "metadata"));
		rc = data ? db_event_add(run->db, run->tenant_id,
					 !strcmp(kind, "renew") ? "certificate.renewed"
								: "certificate.issued",
					 data, NULL)
			  : CP_ERR_NOMEM;
	}
	if (rc == CP_OK)
		rc = db_commit(run->db);
	else
		db_rollback(run->db);
	if (rc == CP_OK)
		cp_log_json(CP_LOG_INFO, "acme.issued",
			    json_pack("{s:s,s:s,s:s,s:i,s:s}", "order_id", run->id,
				      "certificate_id", cert_id, "kind", kind, "version", version,
				      "serial", ci.serial ? ci.serial : ""));
out:
	json_decref(fresh);
	json_decref(data);
	free(leaf);
	free(chain);
	crypto_wipe_free(key_pem);
	crypto_key_free(key);
	crypto_cert_info_clear(&ci);
	/* The order could not be read back (gone, or a database error), or
	 * the database was busy: nothing was stored, try again or stop. */
	if (load_rc != CP_OK)
		return db_failure(run, load_rc, "reloading the order");
	/* The chain or key refused, or the certificate deleted meanwhile: the
	 * order fails. Busy, I/O and other database errors: try again. */
	if (rc == CP_ERR_INVALID || rc == CP_ERR_NOT_FOUND || rc == CP_ERR_CONFLICT)
		return fail(run, rc == CP_ERR_INVALID ? "ca_protocol_error" : "internal",
			    "cannot store the certificate: %s", cp_rc_str(rc));
	if (rc != CP_OK)
		return db_failure(run, rc, "storing the certificate");
	return STEP_DONE;
}

static enum step download(struct run *run)
{
	char *pem = NULL;
	enum step step;
	cp_rc rc = acme_cert_download(run->c, cp_json_str(run->order, "certificate_url"), &pem,
				      &run->r);

	if (rc != CP_OK)
		return ca_failure(run, rc, "certificate download");
	step = complete(run, pem);
	free(pem);
	return step;
}

/* Drive the CA order to the end (or to a wait) from whatever is stored. */
static enum step advance(struct run *run)
{
	int64_t delay = POLL_FIRST_MS, deadline = cp_mono_ms() + POLL_BUDGET_MS;
	const char *acct = cp_json_str(run->order, "account_url");
	enum step step;
	cp_rc rc;

	/* An order of an account the CA no longer has is gone with it. */
	if (cp_json_str(run->order, "order_url") &&
	    (!acct || strcmp(acct, acme_client_account_url(run->c)) != 0))
		return STEP_RESET;
	if (!cp_json_str(run->order, "order_url") && (step = place_order(run)) != STEP_DONE)
		return step;
	for (;;) {
		json_t *o = NULL;
		char st[32];
		const char *cert_url;

		if (cp_json_str(run->order, "certificate_url"))
			return download(run);
		rc = acme_order_get(run->c, cp_json_str(run->order, "order_url"), &o, &run->r);
		if (rc != CP_OK)
			return ca_failure(run, rc, "order");
		snprintf(st, sizeof(st), "%s",
			 cp_json_str(o, "status") ? cp_json_str(o, "status") : "");
		cert_url = cp_json_str(o, "certificate");
		if (!strcmp(st, "valid") && cert_url) {
			rc = save(run, json_pack("{s:s,s:s}", "status", "issuing",
						 "certificate_url", cert_url));
			json_decref(o);
			if (rc == CP_OK)
				rc = reload(run);
			if (rc != CP_OK)
				return db_failure(run, rc, "storing the certificate URL");
			continue;
		}
		if (!strcmp(st, "pending")) {
			json_decref(o);
			if ((step = authorizations(run)) != STEP_DONE)
				return step;
			delay = POLL_FIRST_MS;
			continue;
		}
		if (!strcmp(st, "ready")) {
			json_decref(o);
			if ((step = finalize(run)) != STEP_DONE)
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
					return ca_failure(run, rc, "authorization");
				}
				if (strcmp(cp_json_str(authz, "status")
						   ? cp_json_str(authz, "status")
						   : "",
					   "valid")) {
					step = authz_failed(run, a, authz);
					json_decref(authz);
					json_decref(o);
					return step;
				}
				json_decref(authz);
				authz = NULL;
			}
			acme_order_problem(o, &run->r);
			json_decref(o);
			return ca_failure(run, CP_ERR_UPSTREAM, "order");
		}
		json_decref(o);
		/* processing (or valid without the URL yet): poll. */
		if (cp_mono_ms() > deadline) {
			run->run_at = cp_now() + 5;
			return STEP_WAIT;
		}
		if (!keep_lease(run))
			return db_failure(run, CP_ERR_BUSY, "extending the job lease");
		cp_sleep_ms(run->r.retry_after > 0 ? run->r.retry_after * 1000 : delay);
		delay = delay * 2 > POLL_MAX_MS ? POLL_MAX_MS : delay * 2;
		if ((rc = reload(run)) != CP_OK)
			return db_failure(run, rc, "reloading the order");
		if (terminal(cp_json_str(run->order, "status")))
			return STEP_DONE;
	}
}

/* ---- outcomes ---- */

/* Renewal retry delay after failure number n (1-based), ±10 % jitter. */
int64_t server_renew_backoff(const struct cp_config *cfg, int n)
{
	int64_t sched[CP_SCHEDULE_MAX], d;
	size_t cnt = 0;

	if (cp_config_schedule(cfg->renew_backoff_seconds, sched, CP_SCHEDULE_MAX, &cnt) != CP_OK ||
	    cnt == 0) {
		sched[0] = 60;
		cnt = 1;
	}
	if (n < 1)
		n = 1;
	d = sched[(size_t)n - 1 < cnt ? (size_t)n - 1 : cnt - 1];
	if (d >= 10)
		d = d - d / 10 + (int64_t)cp_random_below((uint64_t)(d / 5) + 1);
	return d;
}

/* Commit a failure: order failed, events, certificate state. */
static cp_rc record_failure(struct run *run)
{
	const char *cert_id = cp_json_str(run->order, "certificate_id");
	bool renew = !strcmp(cp_json_str(run->order, "kind"), "renew");
	json_t *data = event_base(run), *cert = NULL, *rdata = NULL;
	cp_rc rc;

	if (!data)
		return CP_ERR_NOMEM;
	json_object_set_new(data, "reason", json_string(run->reason));
	json_object_set_new(data, "detail", json_string(run->detail));
	json_object_set_new(data, "identifiers",
			    json_deep_copy(json_object_get(run->order, "identifiers")));
	rc = db_begin(run->db);
	if (rc == CP_OK)
		rc = save(run, json_pack("{s:s,s:s,s:s,s:I,s:n}", "status", "failed",
					 "error_reason", run->reason, "error_detail", run->detail,
					 "completed_at", (json_int_t)cp_now(), "next_attempt_at"));
	if (rc == CP_OK)
		rc = db_event_add(run->db, run->tenant_id, "order.failed", data, NULL);
	if (rc == CP_OK) {
		rc = db_certificate_get(run->db, run->tenant_id, cert_id, &cert);
		if (rc == CP_ERR_NOT_FOUND)
			rc = CP_OK; /* deleted meanwhile: only the order remains */
	}
	if (rc == CP_OK && cert) {
		json_t *ren = json_object_get(cert, "renewal");
		struct db_cert_renewal r = { .last_attempt_at = cp_now(),
					     .last_error = run->detail,
					     .last_error_reason = run->reason };
		int64_t t = 0;
		if (cp_json_str(ren, "renew_after") &&
		    cp_time_parse(cp_json_str(ren, "renew_after"), &t) == CP_OK)
			r.renew_after = t;
		r.failure_count = (int)cp_json_int(ren, "failure_count") + 1;
		r.next_attempt_at = cp_now() + server_renew_backoff(run->ctx->cfg, r.failure_count);
		rc = db_certificate_set_renewal(run->db, run->tenant_id, cert_id, &r);
		if (rc == CP_OK)
			rc = db_certificate_set_status(run->db, run->tenant_id, cert_id,
						       cp_json_int(cert, "version") > 0 ? "active"
											: "failed");
		if (rc == CP_OK && renew) {
			char next[CP_TIME_LEN + 1];
			cp_time_fmt(r.next_attempt_at, next);
			rdata = json_deep_copy(data);
			json_object_set_new(rdata, "failure_count", json_integer(r.failure_count));
			json_object_set_new(rdata, "next_attempt_at", json_string(next));
			rc = rdata ? db_event_add(run->db, run->tenant_id,
						  "certificate.renewal_failed", rdata, NULL)
				   : CP_ERR_NOMEM;
		}
	}
	if (rc == CP_OK)
		rc = db_commit(run->db);
	else
		db_rollback(run->db);
	cp_log_json(CP_LOG_WARN, "acme.order_failed",
		    json_pack("{s:s,s:s,s:s,s:s}", "order_id", run->id, "certificate_id", cert_id,
			      "reason", run->reason, "detail", run->detail));
	json_decref(data);
	json_decref(rdata);
	json_decref(cert);
	return rc;
}

/*
 * A transient failure: count it and store when we try again (2 s doubling
 * to BACKOFF_MAX_SECONDS, jittered to [d/2, d], never before the CA's
 * Retry-After). The order's own deadline (created_at + order_deadline_hours)
 * bounds the retries in time, not in attempts: the last try is at the
 * deadline, and a Retry-After beyond it ends the order now. Returns true and
 * *run_at when the order goes on; false when its deadline has passed - then
 * run->detail says so, run->reason keeps the transient reason
 * (ca_unreachable, ca_rate_limited, ...) and the caller records the failure.
 */
static bool record_backoff(struct run *run, int64_t *run_at)
{
	int attempts = (int)cp_json_int(run->order, "attempts") + 1;
	int64_t d = 2, now = cp_now();
	int64_t deadline = cp_json_int(run->order, "created_at") +
			   (int64_t)run->ctx->cfg->order_deadline_hours * 3600;
	char last[sizeof(run->detail)];

	if (!run->reason[0]) /* a busy database, say: ours, not the CA's */
		snprintf(run->reason, sizeof(run->reason), "internal");
	for (int i = 1; i < attempts && d < BACKOFF_MAX_SECONDS; i++)
		d *= 2;
	if (d > BACKOFF_MAX_SECONDS)
		d = BACKOFF_MAX_SECONDS;
	d = d / 2 + (int64_t)cp_random_below((uint64_t)d / 2 + 1); /* jitter: [d/2, d] */
	if (run->retry_after > d)
		d = run->retry_after;
	if (now >= deadline || (run->retry_after > 0 && now + run->retry_after > deadline)) {
		snprintf(last, sizeof(last), "%s", run->detail);
		snprintf(run->detail, sizeof(run->detail),
			 "the CA kept failing for %d h (order_deadline_hours), %d attempts; last: "
			 "%.400s",
			 run->ctx->cfg->order_deadline_hours, attempts, last);
		return false;
	}
	if (now + d > deadline)
		d = deadline - now;
	(void)save(run, json_pack("{s:i,s:I,s:s,s:s}", "attempts", attempts, "next_attempt_at",
				  (json_int_t)(now + d), "error_reason", run->reason,
				  "error_detail", run->detail));
	cp_log_json(CP_LOG_WARN, "acme.order_backoff",
		    json_pack("{s:s,s:i,s:I,s:s,s:s}", "order_id", run->id, "attempts", attempts,
			      "retry_in", (json_int_t)d, "reason", run->reason, "detail",
			      run->detail));
	*run_at = now + d;
	return true;
}

void server_job_acme_order(const struct api_ctx *ctx, struct db *db, struct db_job *job,
			   struct server_job_outcome *out)
{
	struct run run = { .ctx = ctx,
			   .db = db,
			   .job = job,
			   .tenant_id = job->tenant_id,
			   .retry_after = -1,
			   .last_extend_ms = cp_mono_ms() };
	const char *order_id = cp_json_str(job->payload, "order_id");
	enum step step = STEP_RESET;
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
	if (terminal(cp_json_str(run.order, "status")))
		goto out;
	while (step == STEP_RESET && resets <= MAX_RESETS) {
		memset(&run.r, 0, sizeof(run.r));
		rc = server_acme_client(ctx, db, cp_json_str(run.order, "ca"), &run.c, &run.r);
		if (rc == CP_ERR_INVALID) {
			step = fail(&run, "ca_unknown", "no CA named %s is configured",
				    cp_json_str(run.order, "ca"));
			break;
		}
		if (rc != CP_OK) {
			/* A busy or failing database while reading or storing the
			 * account is transient like any other database error. */
			bool db_err = rc == CP_ERR_BUSY || rc == CP_ERR_IO || rc == CP_ERR_NOMEM ||
				      rc == CP_ERR_INTERNAL;
			step = run.r.fail != ACME_FAIL_NONE ? ca_failure(&run, rc, "account")
			       : db_err
				       ? db_failure(&run, rc, "account setup")
				       : fail(&run, "internal", "account setup: %s", cp_rc_str(rc));
			if (step == STEP_RESET)
				step = STEP_BACKOFF; /* registration itself said no account */
			break;
		}
		step = advance(&run);
		if (step != STEP_RESET)
			break;
		/* The CA forgot our account or the order: register again (if the
		 * account is what it forgot) and place a fresh CA order. */
		resets++;
		cp_log_json(CP_LOG_WARN, "acme.order_reset",
			    json_pack("{s:s,s:s,s:s}", "order_id", run.id, "reason", run.reason,
				      "detail", run.detail));
		if (!strcmp(run.reason, "challenge_retry") &&
		    (rc = save(&run, json_pack("{s:I}", "attempts",
					       (json_int_t)cp_json_int(run.order, "attempts") +
						       1))) != CP_OK) {
			step = db_failure(&run, rc, "storing the order");
			break;
		}
		if (acme_result_is(&run.r, "accountDoesNotExist"))
			if (db_acme_account_set_url(db, cp_json_str(run.order, "ca"), NULL) !=
			    CP_OK)
				cp_logf(CP_LOG_WARN, "acme.account",
					"cannot forget the account URL");
		rc = db_order_reset(db, run.id);
		if (rc == CP_OK)
			rc = reload(&run);
		if (rc != CP_OK) {
			step = db_failure(&run, rc, "resetting the order");
			break;
		}
	}
	if (step == STEP_RESET)
		step = STEP_BACKOFF;
	if (step == STEP_BACKOFF && !record_backoff(&run, &out->run_at))
		step = STEP_FAIL; /* the order's deadline passed: the CA kept failing */
	switch (step) {
	case STEP_DONE:
		break;
	case STEP_GONE:
		/* Deleted while we ran (tenant deleted): nothing left to record. */
		cp_log_json(CP_LOG_INFO, "acme.order_gone",
			    json_pack("{s:s}", "order_id", order_id));
		break;
	case STEP_WAIT:
		out->result = SERVER_JOB_RETRY;
		out->run_at = run.run_at;
		break;
	case STEP_BACKOFF:
		out->result = SERVER_JOB_RETRY;
		snprintf(out->error, sizeof(out->error), "%.60s: %.440s", run.reason, run.detail);
		break;
	case STEP_FAIL:
	default:
		if (record_failure(&run) != CP_OK) {
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
