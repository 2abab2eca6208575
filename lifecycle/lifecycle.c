/*
 * lifecycle.c - the certificate lifecycle rules (see lifecycle.h).
 */
#include "lifecycle/lifecycle.h"

#include <assert.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

int64_t lifecycle_renew_at(const struct lifecycle_version *v, int renew_before_days)
{
	int64_t life, before, due;

	assert(v && renew_before_days >= 0);
	life = v->not_after - v->not_before;
	if (life <= 0)
		return v->not_before;
	before = (int64_t)renew_before_days * 86400;
	if (v->origin == LIFECYCLE_CA) {
		/* Never due at issuance: at most a third (half when short) of
		 * the lifetime is spent waiting for the renewal. */
		int64_t cap = life < LIFECYCLE_SHORT_SECONDS ? life / 2 : life / 3;
		if (cap < before)
			before = cap;
	}
	due = v->not_after - before;
	return due < v->not_before ? v->not_before : due;
}

int64_t lifecycle_ari_at(int64_t start, int64_t end, int64_t now, uint64_t rnd)
{
	int64_t from = start > now ? start : now;

	assert(end > start);
	if (end <= from)
		return now; /* the window is past: due at once */
	/* rnd % span is uniform to within span / 2^64: negligible. */
	return from + (int64_t)(rnd % (uint64_t)(end - from));
}

bool lifecycle_ari_kept(int64_t renew_after, int64_t start, int64_t end)
{
	return renew_after >= start && renew_after < end;
}

int64_t lifecycle_due_at(int64_t renew_after, const struct lifecycle_version *v,
			 int renew_before_days)
{
	assert(renew_before_days >= 0); /* on either path, not only when renew_at runs */
	return renew_after > 0 ? renew_after : lifecycle_renew_at(v, renew_before_days);
}

static const char *const status_names[] = {
	[LIFECYCLE_PENDING] = "pending",   [LIFECYCLE_ACTIVE] = "active",
	[LIFECYCLE_RENEWING] = "renewing", [LIFECYCLE_EXPIRED] = "expired",
	[LIFECYCLE_FAILED] = "failed",
};

const char *lifecycle_status_name(enum lifecycle_status s)
{
	assert((size_t)s < sizeof(status_names) / sizeof(status_names[0]));
	return status_names[s];
}

enum lifecycle_status lifecycle_status(const char *stored, bool has_version, int64_t not_after,
				       int64_t now)
{
	if (stored && strcmp(stored, "failed") == 0)
		return LIFECYCLE_FAILED;
	if (has_version && now > not_after)
		return LIFECYCLE_EXPIRED;
	if (stored && strcmp(stored, "active") == 0)
		return LIFECYCLE_ACTIVE;
	if (stored && strcmp(stored, "renewing") == 0)
		return LIFECYCLE_RENEWING;
	return LIFECYCLE_PENDING;
}

/* Denominators of the expiring thresholds, tightest first. */
static const int thresholds[] = { 30, 6, 3 };

int lifecycle_reminder(int64_t not_before, int64_t not_after, int64_t now)
{
	int64_t life = not_after - not_before, left = not_after - now;

	if (now > not_after)
		return LIFECYCLE_REMINDER_EXPIRED;
	for (size_t i = 0; i < sizeof(thresholds) / sizeof(thresholds[0]); i++)
		if (left * thresholds[i] <= life)
			return thresholds[i];
	return LIFECYCLE_REMINDER_NONE;
}

int64_t lifecycle_reminder_seconds(int64_t not_before, int64_t not_after, int threshold)
{
	if (threshold <= 0)
		return 0;
	return (not_after - not_before) / threshold;
}

/* ---- the renewal plan ---- */

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* True when name is one of list[0..n). */
static bool name_in(const char *name, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (list[i] && strcmp(list[i], name) == 0)
			return true;
	return false;
}

/* Copy list into out sorted and without duplicates (or NULLs). */
static void names_set(const char *const *list, size_t n, struct lifecycle_plan *out)
{
	out->n_sans = 0;
	out->truncated = false;
	for (size_t i = 0; i < n; i++) {
		if (!list[i] || name_in(list[i], out->sans, out->n_sans))
			continue;
		if (out->n_sans == LIFECYCLE_PLAN_NAMES) {
			out->truncated = true;
			continue;
		}
		out->sans[out->n_sans++] = list[i];
	}
	qsort(out->sans, out->n_sans, sizeof(out->sans[0]), name_cmp);
}

/* True when every name of a is in b. */
static bool names_within(const char *const *a, size_t na, const char *const *b, size_t nb)
{
	for (size_t i = 0; i < na; i++)
		if (a[i] && !name_in(a[i], b, nb))
			return false;
	return true;
}

void lifecycle_plan(const struct lifecycle_plan_in *in, struct lifecycle_plan *out)
{
	assert(in && out);
	assert(in->n_version_sans == 0 || in->version_sans);
	assert(in->n_deployed == 0 || in->deployed);
	memset(out, 0, sizeof(*out));
	/* Set equality, whatever the order or duplicates of either side. */
	out->san_changed = in->carried && !(names_within(in->version_sans, in->n_version_sans,
							 in->deployed, in->n_deployed) &&
					    names_within(in->deployed, in->n_deployed,
							 in->version_sans, in->n_version_sans));
	if (out->san_changed)
		names_set(in->deployed, in->n_deployed, out);
	else
		names_set(in->version_sans, in->n_version_sans, out);
	out->ca = in->ca;
	out->profile = in->profile;
	out->challenge = in->challenge ? in->challenge : "http-01";
	out->key_type = in->key_type	       ? in->key_type
			: in->version_key_type ? in->version_key_type
					       : "ecdsa-p256";
}

static const char *const why_names[] = {
	[LIFECYCLE_WHY_LIFETIME] = "lifetime",
	[LIFECYCLE_WHY_ARI] = "ari",
	[LIFECYCLE_WHY_SAN_CHANGE] = "san_change",
	[LIFECYCLE_WHY_BOOTSTRAP] = "bootstrap",
};

const char *lifecycle_why_name(enum lifecycle_why w)
{
	assert((size_t)w < sizeof(why_names) / sizeof(why_names[0]));
	return why_names[w];
}

int64_t lifecycle_next_renewal(int64_t renew_after, int64_t next_attempt_at,
			       const struct lifecycle_version *v, int renew_before_days,
			       bool san_changed, int64_t now, enum lifecycle_why *why)
{
	int64_t at, rule;

	assert(v && why);
	rule = lifecycle_renew_at(v, renew_before_days);
	if (san_changed) {
		*why = LIFECYCLE_WHY_SAN_CHANGE;
		at = now;
	} else {
		at = lifecycle_due_at(renew_after, v, renew_before_days);
		if (renew_after > 0 && renew_after != rule)
			*why = LIFECYCLE_WHY_ARI;
		else
			*why = v->origin == LIFECYCLE_CA ? LIFECYCLE_WHY_LIFETIME
							 : LIFECYCLE_WHY_BOOTSTRAP;
	}
	return next_attempt_at > at ? next_attempt_at : at;
}

bool lifecycle_plan_replaces(bool is_renewal, const char *version_ca, const char *order_ca)
{
	return is_renewal && version_ca && order_ca && strcmp(version_ca, order_ca) == 0;
}
