/*
 * lifecycle.h - the rules of a certificate's life, in one place: when a
 * version is due for renewal (the lifetime rule and ACME Renewal
 * Information), the status the API and the metrics show, and which expiry
 * reminder is due. Pure functions of their arguments (no clock, no
 * randomness, no I/O), so that every caller - the API, the order engine,
 * the scheduler, the database layer - applies the same rule and the unit
 * tests can assert exact moments.
 *
 * The renewal window (product.md, issue 10):
 *   - a bootstrap version (uploaded or self-signed) renews when its time
 *     left is at most renew_before_days: the seed products' "if the initial
 *     certificate expires within 25 days, it is renewed within one hour";
 *   - a version certplane obtained from a CA renews when its time left is
 *     at most min(renew_before_days, lifetime / 3), lifetime / 2 for
 *     certificates shorter than 10 days (Let's Encrypt's advice: a 6-day
 *     certificate with 3 days left, a 90-day one with 25), so a fresh
 *     renewal is never due again the moment it is issued;
 *   - with an ARI window (RFC 9773), at a uniformly random moment inside
 *     it, chosen once and stored; a window already past means due now.
 * The chosen moment is stored as the certificate's renew_after: the API
 * shows it and the scheduler acts on it, so the two cannot disagree.
 *
 * The SQL fragments below are the same rules for queries that filter or
 * group on them; tests/unit/test_lifecycle.c checks that each fragment and
 * its C function agree on every row of their tables.
 */
#ifndef CP_LIFECYCLE_H
#define CP_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Certificates shorter than this renew at half their lifetime. */
#define LIFECYCLE_SHORT_SECONDS (10 * 86400)

/* Where a version came from: it decides the renewal window. */
enum lifecycle_origin {
	LIFECYCLE_BOOTSTRAP = 0, /* uploaded or self-signed */
	LIFECYCLE_CA,		 /* obtained by certplane from a CA (an order) */
};

/* The facts of one certificate version the rules need (unix seconds). */
struct lifecycle_version {
	int64_t not_before;
	int64_t not_after;
	enum lifecycle_origin origin;
};

/*
 * The lifetime rule: the moment v becomes due for renewal, never before
 * v->not_before (a bootstrap version already inside its window is due at
 * once). renew_before_days >= 0 (config: 1..365). A version with no
 * lifetime (not_after <= not_before) is due at not_before.
 */
int64_t lifecycle_renew_at(const struct lifecycle_version *v, int renew_before_days);

/*
 * ARI: the moment to renew inside the CA's suggested window [start, end)
 * (end > start), given now and rnd, a uniformly random 64-bit value (the
 * caller draws it, so that tests choose it). Uniform over the part of the
 * window that is not past: [max(start, now), end). A window already past
 * (end <= now) answers now: due at once.
 */
int64_t lifecycle_ari_at(int64_t start, int64_t end, int64_t now, uint64_t rnd);

/*
 * True when a stored renew_after already is a moment chosen inside this ARI
 * window (so it is kept: chosen once per window, not redrawn on every
 * check). A window that moved makes this false and a new moment is drawn.
 */
bool lifecycle_ari_kept(int64_t renew_after, int64_t start, int64_t end);

/*
 * The moment the scheduler acts on: the stored renew_after when there is
 * one (> 0: the lifetime rule or an ARI moment, chosen when stored), else
 * the lifetime rule (rows stored without one).
 */
int64_t lifecycle_due_at(int64_t renew_after, const struct lifecycle_version *v,
			 int renew_before_days);

/* ---- derived status ---- */

/*
 * The status the API and GET /metrics show. Stored statuses are pending,
 * active, renewing and failed; "expired" is derived: a current version
 * past its not_after (now > not_after), unless the certificate failed.
 */
enum lifecycle_status {
	LIFECYCLE_PENDING = 0,
	LIFECYCLE_ACTIVE,
	LIFECYCLE_RENEWING,
	LIFECYCLE_EXPIRED,
	LIFECYCLE_FAILED,
};

/* Static name of s ("pending", ...). */
const char *lifecycle_status_name(enum lifecycle_status s);

/*
 * The derived status from the stored one (a name; an unknown name is
 * treated as pending), whether there is a current version and its
 * not_after.
 */
enum lifecycle_status lifecycle_status(const char *stored, bool has_version, int64_t not_after,
				       int64_t now);

/* The same rule in SQL: stored and not_after are column expressions (a
 * missing version gives a NULL not_after); the statement binds ?1 = now. */
/* clang-format off */
#define LIFECYCLE_STATUS_SQL(stored, not_after)                                                    \
	"(CASE WHEN " stored " = 'failed' THEN 'failed' WHEN " not_after                           \
	" IS NOT NULL AND ?1 > " not_after " THEN 'expired' ELSE " stored " END)"
/* clang-format on */

/* ---- expiry reminders ---- */

/*
 * certificate.expiring is sent when 1/3, 1/6 and 1/30 of a version's
 * lifetime is left, certificate.expired once after not_after; at most once
 * per version and threshold, and only the tightest threshold crossed (a
 * version first seen with 1/10 left gets the 1/6 one, not the 1/3).
 * Thresholds are named by their denominator (3, 6, 30) and 0 = expired,
 * as stored in certificate_reminders.days.
 */
#define LIFECYCLE_REMINDER_NONE (-1)
#define LIFECYCLE_REMINDER_EXPIRED 0
/*
 * How far ahead of not_after the reminder scan looks, so that it stays an
 * index range on not_after: a third of the longest public lifetime (398
 * days). A longer (uploaded) certificate is first reminded when it enters
 * the horizon, with the tightest threshold crossed by then.
 */
#define LIFECYCLE_REMINDER_HORIZON (133 * 86400)

/* The tightest reminder threshold crossed at now: 30, 6, 3,
 * LIFECYCLE_REMINDER_EXPIRED or LIFECYCLE_REMINDER_NONE. */
int lifecycle_reminder(int64_t not_before, int64_t not_after, int64_t now);

/* Seconds left at a threshold (lifetime / den); 0 for expired or none. */
int64_t lifecycle_reminder_seconds(int64_t not_before, int64_t not_after, int threshold);

/* The same rule in SQL (column expressions; binds ?1 = now). */
/* clang-format off */
#define LIFECYCLE_REMINDER_SQL(nb, na)                                                             \
	"(CASE WHEN ?1 > " na " THEN 0 WHEN (" na " - ?1) * 30 <= (" na " - " nb ") THEN 30 "      \
	"WHEN (" na " - ?1) * 6 <= (" na " - " nb ") THEN 6 WHEN (" na " - ?1) * 3 <= (" na        \
	" - " nb ") THEN 3 ELSE -1 END)"
/* clang-format on */

/* ---- the renewal plan ---- */

/*
 * What the next renewal of a certificate requests, and why and when it
 * happens (issue 10: "SAN changes are orders of their own"):
 *   - SANs: while no production property with renew automation carries the
 *     certificate, or their hostnames are the current version's SAN set,
 *     exactly the version's SAN set (a renewal at the CA); when they gained
 *     or lost a hostname, their hostnames (a new order, due at once, not at
 *     the next renewal window). Names are compared exactly (both sides are
 *     lower case: the API normalises hostnames, CAs issue lower case) and
 *     the plan's list is sorted and without duplicates;
 *   - CA: the certificate's auto_renew CA; profile: the certificate's (NULL
 *     = the CA's default); challenge: the certificate's (http-01 when it has
 *     none: uploaded and self-signed versions); key type: the requested one,
 *     else the version's, else ecdsa-p256.
 * Migration 011's view certificate_attention states the same SAN-change
 * test in SQL (the scheduler's stored next_attention_at).
 */

/* Names a plan holds: Let's Encrypt's 100 and one more, so that an
 * oversized set reaches the CA and fails there with its reason instead of
 * being silently shrunk. */
#define LIFECYCLE_PLAN_NAMES 101

struct lifecycle_plan_in {
	const char *const *version_sans; /* the current version's SANs */
	size_t n_version_sans;
	const char *const *deployed; /* hostnames of the production deployments */
	size_t n_deployed;	     /* (renew automation on) carrying it */
	bool carried;		     /* at least one such deployment */
	const char *ca;		     /* auto_renew */
	const char *profile;	     /* NULL: none */
	const char *challenge;	     /* NULL: http-01 */
	const char *key_type;	     /* requested; NULL: version_key_type */
	const char *version_key_type;
};

struct lifecycle_plan {
	const char *sans[LIFECYCLE_PLAN_NAMES]; /* borrowed from the input, sorted */
	size_t n_sans;
	bool truncated; /* more names than LIFECYCLE_PLAN_NAMES */
	bool san_changed;
	const char *ca, *profile, *challenge, *key_type; /* borrowed or static */
};

/* Fill *out from *in (see above). Pointers in *out borrow from *in. */
void lifecycle_plan(const struct lifecycle_plan_in *in, struct lifecycle_plan *out);

/*
 * Whether a new order names the version it replaces (ARI `replaces`, RFC
 * 9773 section 5): only a renewal (is_renewal) of a version that was
 * ordered from the same CA as the new order (version_ca, NULL for an
 * uploaded or self-signed version); another CA does not know that
 * certificate. The id itself is the version's AKI and serial
 * (acme_ari_cert_id).
 */
bool lifecycle_plan_replaces(bool is_renewal, const char *version_ca, const char *order_ca);

/* Why the next renewal happens. */
enum lifecycle_why {
	LIFECYCLE_WHY_LIFETIME = 0, /* the lifetime rule of a CA-issued version */
	LIFECYCLE_WHY_ARI,	    /* a moment in the CA's ARI window */
	LIFECYCLE_WHY_SAN_CHANGE,   /* the carried hostnames changed */
	LIFECYCLE_WHY_BOOTSTRAP,    /* the lifetime rule of an uploaded/self-signed one */
};

/* Static name of w ("lifetime", "ari", "san_change", "bootstrap"). */
const char *lifecycle_why_name(enum lifecycle_why w);

/*
 * The moment the scheduler starts the next renewal and why: a SAN change
 * is due at now; otherwise lifecycle_due_at (a stored renew_after other
 * than the lifetime rule's moment was chosen in an ARI window). A failure
 * backoff (next_attempt_at, 0 = none) later than that moment postpones it.
 */
int64_t lifecycle_next_renewal(int64_t renew_after, int64_t next_attempt_at,
			       const struct lifecycle_version *v, int renew_before_days,
			       bool san_changed, int64_t now, enum lifecycle_why *why);

#endif
