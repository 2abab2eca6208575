/*
 * errors.c - the one classification of every CA outcome: transient (not
 * the CA's final word: the order keeps its state and is tried again, until
 * its own deadline), reset (the CA forgot the account or the order) or
 * definitive (the CA said no: the order fails, and its reason says which).
 *
 * The rule is RFC 8555's and the CA operators': a badNonce is retried at once
 * with the nonce of the error (6.5); rateLimited, 429 and 503 come with or
 * without Retry-After and mean "later" (6.6, Let's Encrypt's integration
 * guide); serverInternal and other 5xx, transport failures and answers we
 * cannot use are the CA (or the path to it) failing, never a verdict about
 * the certificate. Only a problem about the request or the names
 * (unauthorized, rejectedIdentifier, caa, badCSR, malformed, ...) or an
 * invalid order or authorization is final.
 *
 * The table is ordered: the first row that matches wins, so specific rows
 * (404 before malformed: Pebble answers an unknown order with a malformed
 * 404) come before general ones. tests/unit/test_acme.c holds one case per
 * row and checks that every row is exercised.
 */
#include "acme/acme.h"

#include <stdlib.h>
#include <string.h>

/* One row: what it matches, and the verdict. */
struct row {
	const char *name;
	enum acme_fail fail;	   /* kind of outcome */
	enum acme_net net;	   /* UNREACHABLE only: ACME_NET_NONE = any */
	const char *type;	   /* short ACME problem type; NULL = any, "*" = any ACME one */
	long status_lo, status_hi; /* HTTP status range; 0, 0 = any */
	enum acme_outcome outcome;
	const char *reason;
	bool retry_now;
};

#define T ACME_OUTCOME_TRANSIENT
#define R ACME_OUTCOME_RESET
#define D ACME_OUTCOME_DEFINITIVE
#define NET ACME_FAIL_UNREACHABLE
#define PB ACME_FAIL_PROBLEM
#define AZ ACME_FAIL_AUTHZ_INVALID
#define OR ACME_FAIL_ORDER_INVALID

/* One row a line reads as a table. */
/* clang-format off */
static const struct row table[] = {
	/* The path to the CA failed: nothing was decided. */
	{ "connection refused", NET, ACME_NET_REFUSED, NULL, 0, 0, T, "ca_unreachable", false },
	{ "connection reset", NET, ACME_NET_RESET, NULL, 0, 0, T, "ca_unreachable", false },
	{ "timeout", NET, ACME_NET_TIMEOUT, NULL, 0, 0, T, "ca_unreachable", false },
	{ "TLS error", NET, ACME_NET_TLS, NULL, 0, 0, T, "ca_unreachable", false },
	{ "name resolution", NET, ACME_NET_RESOLVE, NULL, 0, 0, T, "ca_unreachable", false },
	{ "transport error", NET, ACME_NET_NONE, NULL, 0, 0, T, "ca_unreachable", false },
	/* Not JSON, too large, a missing field or Location: a broken answer
	 * (a proxy's error page, a cut transfer) is no verdict either. */
	{ "unusable answer", ACME_FAIL_PROTOCOL, ACME_NET_NONE, NULL, 0, 0, T, "ca_protocol_error",
	  false },
	/* Our side (out of memory, signing): try again, it is no CA answer. */
	{ "local failure", ACME_FAIL_LOCAL, ACME_NET_NONE, NULL, 0, 0, T, "internal", false },

	/* Problems that mean "not now". */
	{ "badNonce", PB, ACME_NET_NONE, "badNonce", 0, 0, T, "ca_bad_nonce", true },
	{ "rateLimited", PB, ACME_NET_NONE, "rateLimited", 0, 0, T, "ca_rate_limited", false },
	{ "HTTP 429", PB, ACME_NET_NONE, NULL, 429, 429, T, "ca_rate_limited", false },
	{ "serverInternal", PB, ACME_NET_NONE, "serverInternal", 0, 0, T, "ca_server_error", false },
	{ "HTTP 502-504", PB, ACME_NET_NONE, NULL, 502, 504, T, "ca_unreachable", false },
	{ "HTTP 5xx", PB, ACME_NET_NONE, NULL, 500, 599, T, "ca_server_error", false },
	{ "HTTP 408", PB, ACME_NET_NONE, NULL, 408, 408, T, "ca_unreachable", false },
	/* finalize raced a state change (a retried request after a crash):
	 * read the order again. */
	{ "orderNotReady", PB, ACME_NET_NONE, "orderNotReady", 0, 0, T, "ca_order_not_ready", false },

	/* The CA forgot what we stored (a CA restart, an expired order). */
	{ "accountDoesNotExist", PB, ACME_NET_NONE, "accountDoesNotExist", 0, 0, R,
	  "ca_account_missing", false },
	{ "HTTP 404", PB, ACME_NET_NONE, NULL, 404, 404, R, "ca_order_missing", false },

	/* The CA's final word about the request or the names. */
	{ "unauthorized", PB, ACME_NET_NONE, "unauthorized", 0, 0, D, "ca_unauthorized", false },
	{ "rejectedIdentifier", PB, ACME_NET_NONE, "rejectedIdentifier", 0, 0, D,
	  "ca_rejected_identifier", false },
	{ "unsupportedIdentifier", PB, ACME_NET_NONE, "unsupportedIdentifier", 0, 0, D,
	  "ca_rejected_identifier", false },
	{ "caa", PB, ACME_NET_NONE, "caa", 0, 0, D, "caa_forbids", false },
	{ "badCSR", PB, ACME_NET_NONE, "badCSR", 0, 0, D, "ca_bad_csr", false },
	{ "malformed", PB, ACME_NET_NONE, "malformed", 0, 0, D, "ca_malformed", false },
	{ "other ACME problem", PB, ACME_NET_NONE, "*", 400, 499, D, "ca_refused", false },
	/* A 4xx without an ACME problem document is no ACME answer: a proxy's
	 * page, or a HEAD newNonce (which cannot carry a body). Try again. */
	{ "HTTP 4xx without ACME problem", PB, ACME_NET_NONE, NULL, 400, 499, T, "ca_protocol_error",
	  false },
	/* A 1xx/3xx "problem" (we follow no redirects): a broken answer. */
	{ "other status", PB, ACME_NET_NONE, NULL, 0, 0, T, "ca_protocol_error", false },

	/* Validation: the authorization is invalid, so is the CA order. */
	{ "validation: caa", AZ, ACME_NET_NONE, "caa", 0, 0, D, "caa_forbids", false },
	{ "validation: rejectedIdentifier", AZ, ACME_NET_NONE, "rejectedIdentifier", 0, 0, D,
	  "ca_rejected_identifier", false },
	{ "validation: connection", AZ, ACME_NET_NONE, "connection", 0, 0, D, "challenge_failed",
	  false },
	{ "validation: dns", AZ, ACME_NET_NONE, "dns", 0, 0, D, "challenge_failed", false },
	{ "validation: unauthorized", AZ, ACME_NET_NONE, "unauthorized", 0, 0, D,
	  "challenge_failed", false },
	{ "validation: incorrectResponse", AZ, ACME_NET_NONE, "incorrectResponse", 0, 0, D,
	  "challenge_failed", false },
	{ "validation: tls", AZ, ACME_NET_NONE, "tls", 0, 0, D, "challenge_failed", false },
	{ "validation: other", AZ, ACME_NET_NONE, NULL, 0, 0, D, "challenge_failed", false },
	{ "invalid order", OR, ACME_NET_NONE, NULL, 0, 0, D, "ca_order_invalid", false },
};
/* clang-format on */

#undef T
#undef R
#undef D
#undef NET
#undef PB
#undef AZ
#undef OR

/* Short ACME type of r ("badNonce"), "" when none or not in the namespace. */
static const char *short_type(const struct acme_result *r)
{
	size_t n = strlen(ACME_PROBLEM_NS);

	return strncmp(r->type, ACME_PROBLEM_NS, n) == 0 ? r->type + n : "";
}

static bool row_matches(const struct row *w, const struct acme_result *r, const char *type)
{
	if (w->fail != r->fail)
		return false;
	if (w->net != ACME_NET_NONE && w->net != r->net)
		return false;
	if (w->type && strcmp(w->type, "*") == 0 && !*type)
		return false;
	if (w->type && strcmp(w->type, "*") != 0 && strcmp(w->type, type) != 0)
		return false;
	if (w->status_lo && (r->status < w->status_lo || r->status > w->status_hi))
		return false;
	return true;
}

struct acme_verdict acme_classify(const struct acme_result *r)
{
	struct acme_verdict v = { ACME_OUTCOME_OK, NULL, false, "success" };
	const char *type;

	if (!r || r->fail == ACME_FAIL_NONE)
		return v;
	type = short_type(r);
	for (size_t i = 0; i < CP_ARRAY_LEN(table); i++) {
		if (!row_matches(&table[i], r, type))
			continue;
		v.outcome = table[i].outcome;
		v.reason = table[i].reason;
		v.retry_now = table[i].retry_now;
		v.row = table[i].name;
		return v;
	}
	/* Unreachable while the table ends in catch-all rows for every kind;
	 * should one be missing, "try again" is the safe answer. */
	v.outcome = ACME_OUTCOME_TRANSIENT;
	v.reason = "ca_protocol_error";
	v.row = "unclassified";
	return v;
}

size_t acme_classify_rows(void)
{
	return CP_ARRAY_LEN(table);
}

const char *acme_classify_row_name(size_t i)
{
	return i < CP_ARRAY_LEN(table) ? table[i].name : NULL;
}

const char *acme_result_reason(const struct acme_result *r)
{
	return acme_classify(r).reason;
}

/* Fill r from a problem object (may be NULL), keeping r->fail. */
static void from_error(const json_t *err, struct acme_result *r)
{
	enum acme_fail kind = r->fail;
	char *s = err ? json_dumps(err, JSON_COMPACT) : NULL;

	if (s) {
		acme_parse_problem(s, strlen(s), 0, r);
		r->status = 0;
	}
	free(s);
	r->fail = kind;
}

void acme_authz_problem(const json_t *authz, const char *challenge_type, struct acme_result *r)
{
	const json_t *ch = acme_authz_challenge(authz, challenge_type ? challenge_type : "");
	const json_t *err = json_object_get(ch, "error");
	const char *ident =
		json_string_value(json_object_get(json_object_get(authz, "identifier"), "value"));
	const char *st = json_string_value(json_object_get(authz, "status"));

	memset(r, 0, sizeof(*r));
	r->retry_after = -1;
	r->fail = ACME_FAIL_AUTHZ_INVALID;
	if (json_is_object(err))
		from_error(err, r);
	if (!r->detail[0])
		snprintf(r->detail, sizeof(r->detail), "the authorization for %.200s is %.40s",
			 ident ? ident : "?", st ? st : "invalid");
}

void acme_order_problem(const json_t *order, struct acme_result *r)
{
	const json_t *err = json_object_get(order, "error");

	memset(r, 0, sizeof(*r));
	r->retry_after = -1;
	r->fail = ACME_FAIL_ORDER_INVALID;
	if (json_is_object(err))
		from_error(err, r);
	if (!r->detail[0])
		snprintf(r->detail, sizeof(r->detail), "the CA marked the order invalid");
}
