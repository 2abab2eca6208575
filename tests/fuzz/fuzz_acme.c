/*
 * fuzz_acme.c - libFuzzer target for what certplane reads from an ACME CA
 * (acme/util.c): problem documents (acme_parse_problem, acme_result_reason),
 * the shape checks of directory, order and authorization objects
 * (acme_directory_check, acme_order_check, acme_authz_check) with the
 * challenge lookup the order machine does next (acme_authz_challenge), and
 * the certificate chain body check (acme_chain_pem_valid).
 *
 * The first input byte picks the parser and the HTTP status; the rest is
 * the response body. Properties: problem fields stay NUL-terminated inside
 * their buffers and every failure maps to a reason; an object that passes
 * its check really has the members the callers then read unchecked.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme/acme.h"
#include "common/common.h"

static bool is_url(const json_t *v)
{
	const char *s = json_string_value(v);

	return s && (!strncmp(s, "https://", 8) || !strncmp(s, "http://", 7));
}

static void problem(const char *body, size_t len, long status)
{
	struct acme_result r;

	memset(&r, 0x41, sizeof(r)); /* the parser must terminate what it writes */
	r.retry_after = 17;
	acme_parse_problem(body, len, status, &r);
	if (r.fail != ACME_FAIL_PROBLEM || r.status != status || r.retry_after != 17 ||
	    !memchr(r.type, '\0', sizeof(r.type)) || !memchr(r.detail, '\0', sizeof(r.detail)) ||
	    !r.detail[0] || !acme_result_reason(&r))
		abort();
	(void)acme_result_is(&r, "rateLimited");
}

static void order(const json_t *o)
{
	const char *why = NULL;
	size_t i;
	json_t *v;

	if (acme_order_check(o, &why) != CP_OK) {
		if (!why)
			abort();
		return;
	}
	if (!json_is_string(json_object_get(o, "status")) ||
	    !is_url(json_object_get(o, "finalize")))
		abort();
	json_array_foreach(json_object_get(o, "authorizations"), i, v) if (!is_url(v)) abort();
}

static void authz(const json_t *a)
{
	const char *why = NULL, *hwhy = NULL;
	const json_t *ch;

	if (acme_authz_check(a, &why) != CP_OK) {
		if (!why)
			abort();
		return;
	}
	if (!cp_hostname_valid(
		    json_string_value(json_object_get(json_object_get(a, "identifier"), "value")),
		    false, &hwhy) ||
	    !json_is_string(json_object_get(a, "status")))
		abort();
	for (int i = 0; i < 2; i++) {
		ch = acme_authz_challenge(a, i ? "dns-01" : "http-01");
		if (ch && (!is_url(json_object_get(ch, "url")) ||
			   strcmp(json_string_value(json_object_get(ch, "type")),
				  i ? "dns-01" : "http-01")))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = { 400, 403, 404, 429, 500, 503, 200, 201 };
	const char *body = (const char *)data + 1, *why = NULL;
	size_t len;
	json_t *o = NULL;

	if (size == 0)
		return 0;
	len = size - 1;
	switch (data[0] % 5) {
	case 0:
		problem(body, len, statuses[(data[0] / 5) % CP_ARRAY_LEN(statuses)]);
		break;
	case 1:
		o = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
		if (acme_directory_check(o, &why) == CP_OK &&
		    (!is_url(json_object_get(o, "newNonce")) ||
		     !is_url(json_object_get(o, "newOrder"))))
			abort();
		break;
	case 2:
		o = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
		order(o);
		break;
	case 3:
		o = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
		authz(o);
		break;
	case 4:
		if (acme_chain_pem_valid(body, len, &why) ? why != NULL : why == NULL)
			abort();
		break;
	}
	json_decref(o);
	return 0;
}
