/*
 * order_plan.c - what a new CA order carries beyond its names (the renewal
 * plan), and the one newOrder exchange that carries it:
 *
 *   - profile: the certificate's ACME profile (draft-ietf-acme-profiles),
 *     sent while the CA's directory still offers it in meta.profiles; kept
 *     across renewals because it is read from the certificate, not from the
 *     order that issued the previous version;
 *   - replaces: for a renewal of a version that this same CA issued, its
 *     ARI certificate id (RFC 9773 section 5), so the CA can link the two
 *     and exempt the renewal from rate limits. A CA that answers
 *     alreadyReplaced (another order already names that certificate) gets
 *     the newOrder once more without it: the renewal must not be lost over
 *     a hint.
 *
 * Also the profile check of the API (server_ca_profile_check), so the rule
 * "a profile is accepted only if the certificate's CA offers it" is asked
 * of the same directory the orders use (fetched once per thread's client
 * and kept: a CA that adds a profile is seen after a restart). A CA that
 * cannot be asked is remembered for DOWN_SECONDS, during which the check
 * answers at once (503 upstream) without another attempt.
 */
#include "acme/acme.h"
#include "lifecycle/lifecycle.h"
#include "server/server_internal.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The ARI id of the version an order of kind on ca replaces, or NULL (new
 * string); lifecycle_plan_replaces says when there is one. */
static char *replaced_cert_id(const json_t *plan, const char *kind, const char *ca)
{
	const char *pem = cp_json_str(plan, "cert_pem");
	const char *vca = cp_json_str(plan, "version_ca");
	char *id = NULL;

	if (!pem || !lifecycle_plan_replaces(kind && strcmp(kind, "renew") == 0, vca, ca))
		return NULL;
	if (acme_ari_cert_id(pem, strlen(pem), &id) != CP_OK)
		return NULL; /* no AKI: nothing to name, the order goes without */
	return id;
}

cp_rc server_order_place(struct acme_client *c, struct db *db, const char *tenant_id,
			 const json_t *order, const char *const *names, size_t n, char **order_url,
			 json_t **ca_order, bool *profile_refused, struct acme_result *r)
{
	const char *cert_id = cp_json_str(order, "certificate_id"), *profile;
	json_t *plan = NULL;
	char *replaces = NULL;
	cp_rc rc;

	assert(c && db && tenant_id && order && order_url && ca_order && profile_refused && r);
	*order_url = NULL;
	*ca_order = NULL;
	*profile_refused = false;
	memset(r, 0, sizeof(*r));
	r->retry_after = -1; /* a database failure below is no CA outcome */
	rc = cert_id ? db_certificate_order_plan(db, tenant_id, cert_id, &plan) : CP_ERR_NOT_FOUND;
	if (rc != CP_OK)
		goto out;
	profile = cp_json_str(plan, "profile");
	if (profile) {
		rc = acme_profile_offered(c, profile, r);
		if (rc == CP_ERR_NOT_FOUND)
			*profile_refused = true; /* r->detail names it */
		if (rc != CP_OK)
			goto out;
	}
	replaces = replaced_cert_id(plan, cp_json_str(order, "kind"), cp_json_str(order, "ca"));
	rc = acme_order_new_profile(c, names, n, replaces, profile, order_url, ca_order, r);
	if (rc != CP_OK && replaces && acme_result_is(r, "alreadyReplaced")) {
		cp_logf(CP_LOG_INFO, "acme.already_replaced",
			"certificate %s: the CA says %s is already replaced; ordering without "
			"replaces",
			cert_id, replaces);
		rc = acme_order_new_profile(c, names, n, NULL, profile, order_url, ca_order, r);
	}
out:
	free(replaces);
	json_decref(plan);
	return rc;
}

/* CAs the API found unreachable lately: while one is in here, a profile
 * check answers at once instead of holding an HTTP worker for the CA's
 * connect timeout on every request during an outage. */
#define DOWN_CAS 16
#define DOWN_SECONDS 30
static struct {
	char ca[64];
	int64_t until;
} down_cas[DOWN_CAS];
static pthread_mutex_t down_lock = PTHREAD_MUTEX_INITIALIZER;

/* True if ca failed less than DOWN_SECONDS ago. */
static bool ca_down(const char *ca)
{
	bool down = false;

	pthread_mutex_lock(&down_lock);
	for (int i = 0; i < DOWN_CAS; i++)
		if (!strcmp(down_cas[i].ca, ca) && down_cas[i].until > cp_now())
			down = true;
	pthread_mutex_unlock(&down_lock);
	return down;
}

/* Remember (failed) or forget (!failed) that ca could not be asked. */
static void ca_mark(const char *ca, bool failed)
{
	int slot = -1;

	pthread_mutex_lock(&down_lock);
	for (int i = 0; i < DOWN_CAS && slot < 0; i++)
		if (!strcmp(down_cas[i].ca, ca))
			slot = i;
	for (int i = 0; i < DOWN_CAS && slot < 0 && failed; i++)
		if (down_cas[i].until <= cp_now())
			slot = i; /* a free or expired entry */
	if (slot >= 0) {
		snprintf(down_cas[slot].ca, sizeof(down_cas[slot].ca), "%s", ca);
		down_cas[slot].until = failed ? cp_now() + DOWN_SECONDS : 0;
	}
	pthread_mutex_unlock(&down_lock);
}

cp_rc server_ca_profile_check(const struct api_ctx *ctx, struct db *db, const char *ca,
			      const char *profile, char *detail, size_t detail_len)
{
	struct acme_client *c = NULL;
	struct acme_result r;
	cp_rc rc;

	assert(ctx && db && ca && profile && detail && detail_len);
	memset(&r, 0, sizeof(r));
	detail[0] = '\0';
	if (ca_down(ca)) {
		snprintf(detail, detail_len,
			 "CA \"%s\" could not be asked which profiles it offers less than %d s ago",
			 ca, DOWN_SECONDS);
		return CP_ERR_UPSTREAM;
	}
	rc = server_acme_client(ctx, db, ca, &c, &r);
	if (rc == CP_ERR_INVALID) {
		/* Not configured (or a directory URL that is no URL): it offers
		 * nothing, whatever the network says. */
		snprintf(detail, detail_len, "CA \"%s\" is not a usable configured CA", ca);
		return CP_ERR_NOT_FOUND;
	}
	if (rc == CP_OK)
		rc = acme_profile_offered(c, profile, &r);
	ca_mark(ca, rc != CP_OK && rc != CP_ERR_NOT_FOUND);
	if (rc == CP_ERR_NOT_FOUND)
		snprintf(detail, detail_len, "CA \"%s\" does not offer profile \"%.64s\"", ca,
			 profile);
	else if (rc != CP_OK)
		snprintf(detail, detail_len,
			 "CA \"%s\" cannot be asked which profiles it offers: %s", ca,
			 r.detail[0] ? r.detail : cp_rc_str(rc));
	return rc == CP_OK || rc == CP_ERR_NOT_FOUND ? rc : CP_ERR_UPSTREAM;
}
