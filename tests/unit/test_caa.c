/*
 * test_caa.c - the CAA rule (caa/caa.h) over tables: issue/issuewild value
 * parsing (RFC 8659 4.2) and the decision for one CA (issuer domain names,
 * RFC 8657 accounturi and validationmethods, wildcards, critical unknown
 * tags), each row asserting the exact verdict and, when refused, the
 * record named.
 *
 * Exit status: 0 when every check passed.
 */
#include <stdio.h>
#include <string.h>

#include "caa/caa.h"
#include "common/common.h"
#include "tests/unit/check.h"

struct parse_row {
	const char *value;
	bool ok;
	const char *domain, *accounturi, *methods; /* NULL: absent */
};

static const struct parse_row parse_rows[] = {
	{ "letsencrypt.org", true, "letsencrypt.org", NULL, NULL },
	{ "  letsencrypt.org  ", true, "letsencrypt.org", NULL, NULL },
	{ ";", true, "", NULL, NULL },
	{ "", true, "", NULL, NULL },
	{ "ca.example; accounturi=https://ca.example/acct/1", true, "ca.example",
	  "https://ca.example/acct/1", NULL },
	{ "ca.example;validationmethods=dns-01,http-01", true, "ca.example", NULL,
	  "dns-01,http-01" },
	{ "ca.example; foo=bar; validationmethods = dns-01 ;", true, "ca.example", NULL, "dns-01" },
	{ "ca.example; =bar", false, NULL, NULL, NULL },
	{ "ca.example; foo", false, NULL, NULL, NULL },
	{ "ca..example", false, NULL, NULL, NULL },
	{ "ca.example.", false, NULL, NULL, NULL },
	{ "-ca.example", false, NULL, NULL, NULL },
	{ "ca.example bar", false, NULL, NULL, NULL },
};

#define ACCT "https://127.0.0.1:14000/my-account/1"
static const char *const le[] = { "letsencrypt.org", NULL };
static const char *const two[] = { "pebble.example", "Second.Example", NULL };

struct eval_row {
	const char *what;
	const char *records; /* JSON array */
	const char *const *ids;
	const char *acct, *method;
	bool wildcard;
	bool allowed;
	const char *why; /* exact, when refused */
};

static const struct eval_row eval_rows[] = {
	{ "no records", "[]", le, ACCT, "dns-01", false, true, "" },
	{ "issue names the CA", "[{\"flags\":0,\"tag\":\"issue\",\"value\":\"letsencrypt.org\"}]",
	  le, ACCT, "dns-01", false, true, "" },
	{ "case-insensitive", "[{\"flags\":0,\"tag\":\"ISSUE\",\"value\":\"second.example\"}]", two,
	  ACCT, "dns-01", false, true, "" },
	{ "issue names another CA", "[{\"flags\":0,\"tag\":\"issue\",\"value\":\"other.example\"}]",
	  le, ACCT, "dns-01", false, false, "0 issue \"other.example\"" },
	{ "one of two records matches",
	  "[{\"flags\":0,\"tag\":\"issue\",\"value\":\"other.example\"},"
	  "{\"flags\":0,\"tag\":\"issue\",\"value\":\"letsencrypt.org\"}]",
	  le, ACCT, "dns-01", false, true, "" },
	{ "both named when refused",
	  "[{\"flags\":0,\"tag\":\"issue\",\"value\":\"a.example\"},"
	  "{\"flags\":0,\"tag\":\"issue\",\"value\":\";\"}]",
	  le, ACCT, "dns-01", false, false, "0 issue \"a.example\"; 0 issue \";\"" },
	{ "only iodef: anyone",
	  "[{\"flags\":0,\"tag\":\"iodef\",\"value\":\"mailto:x@y.example\"}]", le, ACCT, "dns-01",
	  false, true, "" },
	{ "critical unknown tag",
	  "[{\"flags\":128,\"tag\":\"tbs\",\"value\":\"x\"},"
	  "{\"flags\":0,\"tag\":\"issue\",\"value\":\"letsencrypt.org\"}]",
	  le, ACCT, "dns-01", false, false, "128 tbs \"x\"" },
	{ "non-critical unknown tag",
	  "[{\"flags\":0,\"tag\":\"tbs\",\"value\":\"x\"},"
	  "{\"flags\":0,\"tag\":\"issue\",\"value\":\"letsencrypt.org\"}]",
	  le, ACCT, "dns-01", false, true, "" },
	{ "accounturi matches",
	  "[{\"flags\":0,\"tag\":\"issue\",\"value\":\"letsencrypt.org; accounturi=" ACCT "\"}]",
	  le, ACCT, "dns-01", false, true, "" },
	{ "accounturi differs",
	  "[{\"flags\":0,\"tag\":\"issue\",\"value\":\"letsencrypt.org; accounturi=" ACCT "2\"}]",
	  le, ACCT, "dns-01", false, false, "0 issue \"letsencrypt.org; accounturi=" ACCT "2\"" },
	{ "accounturi, account unknown",
	  "[{\"flags\":0,\"tag\":\"issue\",\"value\":\"letsencrypt.org; accounturi=" ACCT "\"}]",
	  le, NULL, "dns-01", false, false, "0 issue \"letsencrypt.org; accounturi=" ACCT "\"" },
	{ "validationmethods has it",
	  "[{\"flags\":0,\"tag\":\"issue\",\"value\":\"letsencrypt.org; "
	  "validationmethods=http-01,dns-01\"}]",
	  le, ACCT, "dns-01", false, true, "" },
	{ "validationmethods lacks it",
	  "[{\"flags\":0,\"tag\":\"issue\",\"value\":\"letsencrypt.org; "
	  "validationmethods=http-01\"}]",
	  le, ACCT, "dns-01", false, false,
	  "0 issue \"letsencrypt.org; validationmethods=http-01\"" },
	{ "validationmethods: no prefix match",
	  "[{\"flags\":0,\"tag\":\"issue\",\"value\":\"letsencrypt.org; "
	  "validationmethods=dns-01-account\"}]",
	  le, ACCT, "dns-01", false, false,
	  "0 issue \"letsencrypt.org; validationmethods=dns-01-account\"" },
	{ "a malformed value authorizes nobody",
	  "[{\"flags\":0,\"tag\":\"issue\",\"value\":\"letsencrypt.org bad\"}]", le, ACCT, "dns-01",
	  false, false, "0 issue \"letsencrypt.org bad\"" },
	{ "wildcard: issuewild decides",
	  "[{\"flags\":0,\"tag\":\"issue\",\"value\":\"letsencrypt.org\"},"
	  "{\"flags\":0,\"tag\":\"issuewild\",\"value\":\";\"}]",
	  le, ACCT, "dns-01", true, false, "0 issuewild \";\"" },
	{ "wildcard: issue when no issuewild",
	  "[{\"flags\":0,\"tag\":\"issue\",\"value\":\"letsencrypt.org\"}]", le, ACCT, "dns-01",
	  true, true, "" },
	{ "non-wildcard ignores issuewild",
	  "[{\"flags\":0,\"tag\":\"issuewild\",\"value\":\"letsencrypt.org\"},"
	  "{\"flags\":0,\"tag\":\"issue\",\"value\":\";\"}]",
	  le, ACCT, "dns-01", false, false, "0 issue \";\"" },
	{ "only issuewild, non-wildcard: anyone",
	  "[{\"flags\":0,\"tag\":\"issuewild\",\"value\":\";\"}]", le, ACCT, "dns-01", false, true,
	  "" },
	{ "no identities configured",
	  "[{\"flags\":0,\"tag\":\"issue\",\"value\":\"letsencrypt.org\"}]", NULL, ACCT, "dns-01",
	  false, false, "0 issue \"letsencrypt.org\"" },
};

int main(void)
{
	for (size_t i = 0; i < CP_ARRAY_LEN(parse_rows); i++) {
		const struct parse_row *r = &parse_rows[i];
		struct caa_issuer is;
		bool ok = caa_parse_issuer(r->value, strlen(r->value), &is);

		CHECK(ok == r->ok);
		if (ok != r->ok) {
			fprintf(stderr, "  parse row %zu: \"%s\"\n", i, r->value);
			continue;
		}
		if (!ok)
			continue;
		CHECK(!strcmp(is.domain, r->domain));
		CHECK(is.has_accounturi == (r->accounturi != NULL));
		CHECK(!r->accounturi || !strcmp(is.accounturi, r->accounturi));
		CHECK(is.has_methods == (r->methods != NULL));
		CHECK(!r->methods || !strcmp(is.methods, r->methods));
	}
	for (size_t i = 0; i < CP_ARRAY_LEN(eval_rows); i++) {
		const struct eval_row *r = &eval_rows[i];
		json_t *recs = json_loads(r->records, 0, NULL);
		struct caa_request req = { .identities = r->ids,
					   .account_uri = r->acct,
					   .method = r->method,
					   .wildcard = r->wildcard };
		char why[512];
		bool allowed;

		CHECK(recs != NULL);
		allowed = caa_allows(recs, &req, why, sizeof(why));
		CHECK(allowed == r->allowed);
		CHECK(!strcmp(why, r->why));
		if (allowed != r->allowed || strcmp(why, r->why))
			fprintf(stderr, "  eval row \"%s\": allowed=%d why=[%s]\n", r->what,
				allowed, why);
		json_decref(recs);
	}
	/* A NULL RRset is no CAA at all. */
	{
		struct caa_request req = { .identities = le, .method = "dns-01" };
		char why[8];
		CHECK(caa_allows(NULL, &req, why, sizeof(why)));
	}
	return check_exit("test_caa");
}
