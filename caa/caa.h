/*
 * caa.h - the CAA rule (RFC 8659, with RFC 8657's accounturi and
 * validationmethods), in one place: given the relevant CAA RRset of a name
 * (the first non-empty one climbing from the name towards the root, which
 * the resolver found: acme_dns_caa), may a CA with these issuer domain
 * names, this account URL and this challenge type issue for it?
 *
 * Pure functions of their arguments (no DNS, no clock), so the order engine
 * and the unit test (tests/unit/test_caa.c) apply the same rule.
 *
 * The rule (RFC 8659 section 4):
 *   - an empty RRset: any CA may issue;
 *   - a record with the issuer-critical flag (128) and a tag we do not know
 *     (issue, issuewild, iodef, contactemail, contactphone): no CA may;
 *   - a wildcard name looks at the issuewild records when there are any,
 *     else at the issue records; any other name at the issue records only;
 *     none of the kind looked at: any CA may issue;
 *   - otherwise the CA may issue when one of those records names one of its
 *     issuer domain names (case-insensitive; ";" alone names no CA) and its
 *     parameters allow it: accounturi, when present, equal to the account
 *     URL; validationmethods, when present, a comma-separated list that
 *     contains the challenge type. Unknown parameters are ignored; a value
 *     that does not parse (RFC 8659 4.2 grammar) authorizes nobody.
 */
#ifndef CP_CAA_H
#define CP_CAA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CAA_FLAG_CRITICAL 128

/* One issue/issuewild value, parsed: the issuer domain name ("" for ";")
 * and the RFC 8657 parameters we know (NULL when absent). Pointers borrow
 * the struct's own storage. */
struct caa_issuer {
	char domain[256];
	char accounturi[512];
	char methods[256];
	bool has_accounturi, has_methods;
};

/* Parse an issue/issuewild value (RFC 8659 4.2: [domain] *(";" key=value)).
 * false: the value does not follow the grammar (then it authorizes no CA). */
bool caa_parse_issuer(const char *value, size_t len, struct caa_issuer *out);

/* What one CA wants to do. identities: NULL-terminated issuer domain names
 * of the CA (e.g. "letsencrypt.org"); account_uri: its ACME account URL
 * (NULL: not known yet, then a record with accounturi does not match);
 * method: the challenge type ("dns-01", "http-01"). */
struct caa_request {
	const char *const *identities;
	const char *account_uri;
	const char *method;
	bool wildcard;
};

/*
 * Evaluate the RRset records (a JSON array of {"flags": int, "tag": str,
 * "value": str}, as acme_dns_caa gives it; NULL or empty: no CAA) for req.
 * true: the CA may issue. false: it may not, and why (at most why_len
 * bytes, NUL-terminated) names the deciding record, e.g.
 * `0 issue "ca.example; accounturi=https://..."`, or the records looked at.
 */
bool caa_allows(const json_t *records, const struct caa_request *req, char *why, size_t why_len);

#endif
