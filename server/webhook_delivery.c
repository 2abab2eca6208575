/*
 * webhook_delivery.c - sending events to callback URLs.
 *
 * One "webhook_delivery" job is one delivery (one event for one endpoint).
 * Each run makes at most one HTTP attempt, records it, and either finishes
 * the job or re-queues it for the next step of the retry schedule
 * (webhook_retry_schedule, default: at once, 5 s, 5 min, 30 min, 2 h, 5 h,
 * then 10 h until about 3 days have passed, each with +-10% jitter). The
 * delivery's state in the database is the truth: a job re-run after a crash
 * finds a delivery that is already delivered (done) or whose next attempt is
 * not due yet (re-queued for then), so nothing is sent twice by mistake and
 * nothing is lost (at-least-once: a crash between the receiver's 2xx and our
 * commit sends it again, with the same webhook-id).
 *
 * Each attempt follows the Standard Webhooks spec: POST of the event JSON
 * with webhook-id (the event id, identical on every retry, redelivery and
 * endpoint), webhook-timestamp and webhook-signature "v1,<base64 HMAC>";
 * during a secret rotation's overlap the header carries two signatures,
 * "v1,<new> v1,<previous>" (the spec's space-separated list).
 * Only 2xx is success; redirects are not followed (3xx is a failure); 410
 * disables the endpoint; 429/502/504 push the next attempt to at least
 * Retry-After. The answer's body is read up to 64 KiB and discarded.
 *
 * SSRF: unless webhook_allow_private_networks, the address libcurl is about
 * to connect to is checked in CURLOPT_OPENSOCKETFUNCTION; a refused address
 * gets no socket, so it is never connected to. Proxies from the environment
 * are ignored (a proxy would hide the real destination).
 */
#include "crypto/crypto.h"
#include "netpolicy/netpolicy.h"
#include "server/server_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <curl/curl.h>

/* Most response body bytes read from a receiver. */
#define RESPONSE_MAX (64 * 1024)
/* An endpoint is disabled after this many consecutive failed deliveries... */
#define DISABLE_AFTER_FAILED_DELIVERIES 5
/* ...or after failing every attempt for this long. */
#define DISABLE_AFTER_SECONDS (3 * 86400)
/* Longest Retry-After honoured. */
#define RETRY_AFTER_MAX 86400

/* State shared with the libcurl callbacks of one attempt. */
struct send_ctx {
	bool allow_private;
	bool refused;
	size_t received;
};

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct send_ctx *c = userdata;
	size_t n = size * nmemb;

	(void)ptr;
	c->received += n;
	/* Returning less than n makes libcurl stop reading (CURLE_WRITE_ERROR);
	 * the status line was already read. */
	return c->received > RESPONSE_MAX ? 0 : n;
}

/* Called for every socket libcurl opens: the last point to refuse an
 * address, whatever the name resolved to this time. */
static curl_socket_t on_open_socket(void *clientp, curlsocktype purpose,
				    struct curl_sockaddr *address)
{
	struct send_ctx *c = clientp;

	if (purpose != CURLSOCKTYPE_IPCXN)
		return CURL_SOCKET_BAD;
	if (!c->allow_private &&
	    !netpolicy_addr_allowed(&address->addr, (size_t)address->addrlen)) {
		c->refused = true;
		return CURL_SOCKET_BAD;
	}
	return socket(address->family, address->socktype, address->protocol);
}

/* POST the JSON body to url once, with the extra headers (NULL-terminated,
 * may be NULL); fills r. */
static void send_once(const struct api_ctx *ctx, const char *url, const char *const *extra,
		      const char *body, struct server_send_result *r)
{
	struct send_ctx c = { .allow_private = ctx->cfg->webhook_allow_private_networks };
	struct curl_slist *hdrs = NULL;
	CURL *curl = NULL;
	CURLcode code;
	curl_off_t retry_after = 0;
	int64_t t0 = cp_mono_ms();
	int timeout = ctx->cfg->webhook_timeout_seconds;

	memset(r, 0, sizeof(*r));
	curl = curl_easy_init();
	hdrs = curl_slist_append(hdrs, "Content-Type: application/json");
	for (size_t i = 0; extra && extra[i] && hdrs; i++)
		hdrs = curl_slist_append(hdrs, extra[i]);
	/* No "Expect: 100-continue" round trip for bodies over 1 KiB. */
	hdrs = hdrs ? curl_slist_append(hdrs, "Expect:") : NULL;
	if (!curl || !hdrs) {
		snprintf(r->error, sizeof(r->error), "out of memory");
		goto out;
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_PROXY, "");
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, (long)timeout);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, (long)(timeout < 10 ? timeout : 10));
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "certplane-webhooks/1");
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &c);
	curl_easy_setopt(curl, CURLOPT_OPENSOCKETFUNCTION, on_open_socket);
	curl_easy_setopt(curl, CURLOPT_OPENSOCKETDATA, &c);
	code = curl_easy_perform(curl);
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r->status);
	if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK &&
	    retry_after > 0)
		r->retry_after = retry_after > RETRY_AFTER_MAX ? RETRY_AFTER_MAX : retry_after;
	r->refused = c.refused;
	if (c.refused) {
		r->status = 0;
		snprintf(r->error, sizeof(r->error),
			 "refused to connect: the address is loopback, private or reserved");
	} else if (code != CURLE_OK && !(code == CURLE_WRITE_ERROR && r->status > 0)) {
		/* A body over the cap is not an error: the status was read. */
		r->status = 0;
		snprintf(r->error, sizeof(r->error), "%s", curl_easy_strerror(code));
	} else if (r->status < 200 || r->status > 299) {
		snprintf(r->error, sizeof(r->error), "HTTP %ld", r->status);
	}
out:
	r->latency_ms = cp_mono_ms() - t0;
	curl_slist_free_all(hdrs);
	curl_easy_cleanup(curl);
}

/* delay scaled by a random factor in [0.9, 1.1]. */
static int64_t jitter(int64_t delay)
{
	return delay * (int64_t)(900 + cp_random_below(201)) / 1000;
}

/* The signature of body under the sealed secret (aad); new string in *sig. */
static cp_rc sign_sealed(const struct api_ctx *ctx, const char *aad, const char *sealed,
			 const char *event_id, int64_t ts, const char *body, char **sig)
{
	char *secret = NULL;
	size_t secret_len = 0;
	cp_rc rc = crypto_open(ctx->keyring, aad, sealed, &secret, &secret_len);

	if (rc == CP_OK)
		rc = crypto_webhook_sign(secret, event_id, ts, body, strlen(body), sig);
	crypto_wipe_free_buf(secret, secret_len);
	return rc;
}

/* Sign and send one attempt of delivery d (from db_webhook_delivery_load)
 * to a webhook. */
static cp_rc webhook_send(const struct api_ctx *ctx, json_t *d, struct server_send_result *r)
{
	const char *webhook_id = json_string_value(json_object_get(d, "webhook_id"));
	const char *event_id = json_string_value(json_object_get(d, "event_id"));
	const char *sealed = json_string_value(json_object_get(d, "secret"));
	const char *previous = json_string_value(json_object_get(d, "previous_secret"));
	char *aad = NULL, *body = NULL, *sig = NULL, *old = NULL, *both = NULL;
	char h_id[128], h_ts[64], h_sig[320];
	const char *const hdrs[] = { h_id, h_ts, h_sig, NULL };
	int64_t ts = cp_now();
	cp_rc rc = CP_ERR_NOMEM;

	aad = cp_aprintf("webhooks:%s", webhook_id);
	body = json_dumps(json_object_get(d, "body"), JSON_COMPACT);
	if (!aad || !body)
		goto out;
	rc = sign_sealed(ctx, aad, sealed, event_id, ts, body, &sig);
	/* A rotation's overlap: the new signature first, then the previous
	 * one, so receivers still holding the old secret verify too. */
	if (rc == CP_OK && previous) {
		rc = sign_sealed(ctx, aad, previous, event_id, ts, body, &old);
		both = rc == CP_OK ? cp_aprintf("%s %s", sig, old) : NULL;
		if (rc == CP_OK && !both)
			rc = CP_ERR_NOMEM;
	}
	if (rc != CP_OK)
		goto out;
	snprintf(h_id, sizeof(h_id), "webhook-id: %s", event_id);
	snprintf(h_ts, sizeof(h_ts), "webhook-timestamp: %lld", (long long)ts);
	snprintf(h_sig, sizeof(h_sig), "webhook-signature: %s", both ? both : sig);
	send_once(ctx, json_string_value(json_object_get(d, "url")), hdrs, body, r);
out:
	free(aad);
	free(body);
	free(sig);
	free(old);
	free(both);
	return rc;
}

/* One attempt of delivery d to a Slack-compatible incoming webhook: the
 * event's text as {"text": ...}, through the same guarded POST. */
static cp_rc slack_send(const struct api_ctx *ctx, json_t *d, struct server_send_result *r)
{
	char *body = NULL;
	cp_rc rc = server_channel_slack_body(ctx, d, &body);

	if (rc == CP_OK)
		send_once(ctx, json_string_value(json_object_get(d, "url")), NULL, body, r);
	free(body);
	return rc;
}

/* One attempt of delivery d to an email channel (channel_send.c). */
static cp_rc email_send(const struct api_ctx *ctx, json_t *d, struct server_send_result *r)
{
	server_channel_email_send(ctx, d, r);
	return CP_OK;
}

/* The send function of each kind of endpoint (webhooks.kind, migration
 * 023): the one thing that differs between a webhook, a Slack channel and
 * an email channel; the schedule, the records and the disabling below are
 * shared. */
static const struct {
	const char *kind;
	cp_rc (*send)(const struct api_ctx *ctx, json_t *d, struct server_send_result *r);
} senders[] = {
	{ "webhook", webhook_send },
	{ "slack", slack_send },
	{ "email", email_send },
};

/* Send one attempt of delivery d with its kind's function. */
static cp_rc attempt(const struct api_ctx *ctx, json_t *d, struct server_send_result *r)
{
	const char *kind = json_string_value(json_object_get(d, "kind"));

	for (size_t i = 0; i < CP_ARRAY_LEN(senders); i++)
		if (kind && strcmp(kind, senders[i].kind) == 0)
			return senders[i].send(ctx, d, r);
	return CP_ERR_INTERNAL;
}

void server_job_webhook_delivery(const struct api_ctx *ctx, struct db *db, struct db_job *job,
				 struct server_job_outcome *out)
{
	const char *delivery_id = json_string_value(json_object_get(job->payload, "delivery_id"));
	struct db_webhook_attempt a = {
		.disable_after_failed = DISABLE_AFTER_FAILED_DELIVERIES,
		.disable_after_seconds = DISABLE_AFTER_SECONDS,
	};
	struct server_send_result r;
	int64_t sched[CP_SCHEDULE_MAX], now = cp_now(), due;
	size_t nsched = 0;
	json_t *d = NULL;
	bool disabled = false;
	int attempts;
	cp_rc rc;

	out->result = SERVER_JOB_DONE;
	if (!delivery_id)
		return;
	rc = db_webhook_delivery_load(db, delivery_id, &d);
	if (rc == CP_ERR_NOT_FOUND)
		return; /* the endpoint (and its deliveries) were deleted */
	if (rc != CP_OK)
		goto retry_soon;
	if (strcmp(json_string_value(json_object_get(d, "state")), "pending") != 0)
		goto out; /* settled by an earlier run */
	if (!json_is_true(json_object_get(d, "enabled"))) {
		a.outcome = DB_WEBHOOK_SKIPPED;
		a.error = "the webhook is disabled";
		rc = db_webhook_attempt_record(db, delivery_id, &a, &disabled);
		if (rc != CP_OK)
			goto retry_soon;
		server_metrics_delivery("skipped");
		goto out;
	}
	if (cp_config_schedule(ctx->cfg->webhook_retry_schedule, sched, CP_SCHEDULE_MAX, &nsched) !=
	    CP_OK) {
		sched[0] = 0;
		nsched = 1;
	}
	attempts = (int)json_integer_value(json_object_get(d, "attempts"));
	/* Not due yet: a re-run after a crash, or the first attempt's delay. */
	due = json_integer_value(json_object_get(d, "next_attempt_at"));
	if (attempts == 0)
		due = json_integer_value(json_object_get(d, "created_at")) + sched[0];
	if (due > now) {
		out->result = SERVER_JOB_RETRY;
		out->run_at = due;
		goto out;
	}
	rc = attempt(ctx, d, &r);
	if (rc != CP_OK) {
		/* The secret does not open (master key missing?): retrying
		 * cannot help until an operator acts, so keep to the schedule. */
		r = (struct server_send_result){ .status = 0 };
		snprintf(r.error, sizeof(r.error), "cannot sign: the secret does not open (%s)",
			 cp_rc_str(rc));
	}
	a.status_code = (int)r.status;
	a.latency_ms = r.latency_ms;
	a.error = r.error[0] ? r.error : NULL;
	if (r.status >= 200 && r.status <= 299) {
		a.outcome = DB_WEBHOOK_DELIVERED;
	} else if (r.status == 410) {
		a.outcome = DB_WEBHOOK_GONE;
	} else if ((size_t)attempts + 1 >= nsched) {
		a.outcome = DB_WEBHOOK_FAILED;
	} else {
		a.outcome = DB_WEBHOOK_RETRY;
		a.next_attempt_at = now + jitter(sched[attempts + 1]);
		/* Retry-After counts from the answer, and times are whole
		 * seconds: the second it came in is rounded up, so the next
		 * attempt is never sooner than asked (now + 2 taken before a
		 * slow send could come 1.01 s after the answer). */
		int64_t asked = cp_now() + 1 + r.retry_after;

		if ((r.status == 429 || r.status == 502 || r.status == 504) && r.retry_after > 0 &&
		    asked > a.next_attempt_at)
			a.next_attempt_at = asked;
	}
	rc = db_webhook_attempt_record(db, delivery_id, &a, &disabled);
	if (rc != CP_OK) {
		/* Sent but not recorded: the next run sends it again (same id). */
		goto retry_soon;
	}
	server_metrics_delivery(a.outcome == DB_WEBHOOK_DELIVERED ? "success"
				: a.outcome == DB_WEBHOOK_RETRY	  ? "retry"
				: a.outcome == DB_WEBHOOK_GONE	  ? "gone"
								  : "failed");
	if (disabled)
		server_metrics_delivery("endpoint_disabled");
	if (a.outcome == DB_WEBHOOK_RETRY) {
		out->result = SERVER_JOB_RETRY;
		out->run_at = a.next_attempt_at;
		snprintf(out->error, sizeof(out->error), "%s", r.error);
	}
	goto out;
retry_soon:
	out->result = SERVER_JOB_RETRY;
	out->run_at = cp_now() + 5;
	snprintf(out->error, sizeof(out->error), "delivery bookkeeping failed: %s", cp_rc_str(rc));
out:
	json_decref(d);
}
