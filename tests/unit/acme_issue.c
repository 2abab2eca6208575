/*
 * acme_issue.c - acme_issue_simple(): every ACME step chained in one
 * blocking call, for the unit tests (tests/unit/acme_issue.h). The service
 * does not use it: its order state machine persists each URL between the
 * single steps of acme/client.c so that a restart resumes an order instead
 * of starting another.
 *
 * Polling starts after 250 ms and grows by half up to 2 s, unless the CA
 * sends Retry-After: Pebble never does, and a fixed multi-second sleep (as
 * some clients use) would make every certificate take seconds.
 */
#include "tests/unit/acme_issue.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_FIRST_MS 250
#define POLL_MAX_MS 2000
#define ISSUE_MAX_AUTHZ 100 /* identifiers per order, as Let's Encrypt */

/* A challenge answer published through the caller's solve callback. */
struct published {
	char *name;
	char *value;
};

/* The "status" member of an ACME object, "" when missing. */
static const char *status_of(const json_t *obj)
{
	const char *s = json_string_value(json_object_get(obj, "status"));

	return s ? s : "";
}

/* Next poll delay: Retry-After when given (capped at what is left), else ours. */
static int64_t poll_delay(const struct acme_result *r, int64_t *ours, int64_t deadline_ms)
{
	int64_t d = *ours, left = deadline_ms - cp_mono_ms();

	if (r->retry_after >= 0)
		d = r->retry_after * 1000;
	*ours = *ours * 3 / 2 > POLL_MAX_MS ? POLL_MAX_MS : *ours * 3 / 2;
	if (d > left)
		d = left > 0 ? left : 0;
	return d;
}

/* Poll url until its "status" leaves the given waiting states. */
static cp_rc poll_until(struct acme_client *c, const char *url, const char *const *waiting,
			int64_t deadline_ms, json_t **obj, struct acme_result *r)
{
	int64_t ours = POLL_FIRST_MS;
	cp_rc rc;

	for (;;) {
		const char *st;
		bool wait = false;

		json_decref(*obj);
		*obj = NULL;
		if ((rc = acme_get_object(c, url, obj, r)) != CP_OK)
			return rc;
		st = json_string_value(json_object_get(*obj, "status"));
		for (int i = 0; st && waiting[i]; i++)
			if (strcmp(st, waiting[i]) == 0)
				wait = true;
		if (!wait)
			return CP_OK;
		if (cp_mono_ms() >= deadline_ms) {
			r->fail = ACME_FAIL_PROTOCOL;
			snprintf(r->detail, sizeof(r->detail), "%s still %s at the deadline", url,
				 st);
			return CP_ERR_UPSTREAM;
		}
		cp_sleep_ms(poll_delay(r, &ours, deadline_ms));
	}
}

cp_rc acme_issue_simple(struct acme_client *c, const char *const *names, size_t n, const char *type,
			acme_solve_fn solve, void *arg, const uint8_t *csr_der, size_t csr_len,
			int timeout_s, char **pem, struct acme_result *r)
{
	static const char *const authz_waiting[] = { "pending", NULL };
	static const char *const order_waiting[] = { "pending", "processing", NULL };
	struct acme_result tmp;
	struct published pub[ISSUE_MAX_AUTHZ];
	size_t n_pub = 0, i;
	json_t *order = NULL, *authz = NULL, *done = NULL, *authzs;
	char *order_url = NULL;
	const char *url;
	int64_t deadline = cp_mono_ms() + (int64_t)timeout_s * 1000;
	cp_rc rc;

	if (!r)
		r = &tmp;
	*pem = NULL;
	memset(pub, 0, sizeof(pub));
	if (n == 0 || n > ISSUE_MAX_AUTHZ || !type || !solve)
		return CP_ERR_INVALID;
	if ((rc = acme_account_ensure(c, NULL, NULL, r)) != CP_OK)
		goto out;
	if ((rc = acme_order_new(c, names, n, NULL, &order_url, &order, r)) != CP_OK)
		goto out;

	/* Publish every pending authorization's answer, then tell the CA. */
	authzs = json_object_get(order, "authorizations");
	for (i = 0; i < json_array_size(authzs) && i < ISSUE_MAX_AUTHZ; i++) {
		const json_t *ch;
		const char *token, *ident, *ch_url;
		char *ka = NULL;

		url = json_string_value(json_array_get(authzs, i));
		json_decref(authz);
		authz = NULL;
		if ((rc = acme_authz_get(c, url, &authz, r)) != CP_OK)
			goto out;
		if (strcmp(status_of(authz), "valid") == 0)
			continue; /* reused authorization: nothing to solve */
		ch = acme_authz_challenge(authz, type);
		token = json_string_value(json_object_get(ch, "token"));
		ch_url = json_string_value(json_object_get(ch, "url"));
		ident = json_string_value(
			json_object_get(json_object_get(authz, "identifier"), "value"));
		if (!ch || !token || !ch_url || !ident) {
			r->fail = ACME_FAIL_PROTOCOL;
			snprintf(r->detail, sizeof(r->detail),
				 "authorization %s offers no usable %s challenge", url, type);
			rc = CP_ERR_UPSTREAM;
			goto out;
		}
		if (strcmp(type, "dns-01") == 0) {
			rc = acme_dns01_record(acme_client_key(c), ident, token, &pub[n_pub].name,
					       &pub[n_pub].value);
		} else {
			rc = acme_key_authorization(acme_client_key(c), token, &ka);
			pub[n_pub].name = ka ? cp_strdup(token) : NULL;
			pub[n_pub].value = ka;
			if (rc == CP_OK && !pub[n_pub].name)
				rc = CP_ERR_NOMEM;
		}
		if (rc != CP_OK)
			goto out;
		n_pub++;
		if ((rc = solve(arg, true, type, pub[n_pub - 1].name, pub[n_pub - 1].value)) !=
		    CP_OK)
			goto out;
		if ((rc = acme_challenge_respond(c, ch_url, NULL, r)) != CP_OK)
			goto out;
	}
	for (i = 0; i < json_array_size(authzs); i++) {
		url = json_string_value(json_array_get(authzs, i));
		if ((rc = poll_until(c, url, authz_waiting, deadline, &authz, r)) != CP_OK)
			goto out;
		if (strcmp(status_of(authz), "valid") != 0) {
			acme_authz_problem(authz, type, r);
			rc = CP_ERR_UPSTREAM;
			goto out;
		}
	}

	/* The order turns "ready" once every authorization is valid. */
	if ((rc = poll_until(c, order_url, order_waiting, deadline, &done, r)) != CP_OK)
		goto out;
	url = json_string_value(json_object_get(done, "finalize"));
	json_decref(order);
	order = NULL;
	if ((rc = acme_order_finalize(c, url, csr_der, csr_len, &order, r)) != CP_OK)
		goto out;
	if ((rc = poll_until(c, order_url, order_waiting, deadline, &done, r)) != CP_OK)
		goto out;
	url = json_string_value(json_object_get(done, "certificate"));
	if (!url) {
		acme_order_problem(done, r);
		if (!r->type[0])
			snprintf(r->detail, sizeof(r->detail),
				 "order %s ended %s without a certificate", order_url,
				 status_of(done));
		rc = CP_ERR_UPSTREAM;
		goto out;
	}
	rc = acme_cert_download(c, url, pem, r);
out:
	for (i = 0; i < n_pub; i++) {
		/* Withdrawal is best effort: the certificate outcome stands either way. */
		if (pub[i].name && pub[i].value)
			(void)solve(arg, false, type, pub[i].name, pub[i].value);
		free(pub[i].name);
		free(pub[i].value);
	}
	json_decref(order);
	json_decref(authz);
	json_decref(done);
	free(order_url);
	return rc;
}
