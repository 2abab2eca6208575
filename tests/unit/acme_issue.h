/*
 * acme_issue.h - acme_issue_simple(): every ACME step of acme/acme.h chained
 * in one blocking call, for the unit tests only (tests/unit/acme_issue.c is
 * compiled into the tests that include this header, never into the product).
 */
#ifndef CP_TESTS_ACME_ISSUE_H
#define CP_TESTS_ACME_ISSUE_H

#include "acme/acme.h"

/*
 * Callback that publishes (publish=true) or withdraws a challenge answer for
 * acme_issue_simple: for http-01 name=token, value=key authorization; for
 * dns-01 name=TXT record name, value=TXT value. Return CP_OK when done.
 */
typedef cp_rc (*acme_solve_fn)(void *arg, bool publish, const char *type, const char *name,
			       const char *value);

/*
 * Issue a certificate for names in one blocking call: ensure account, new
 * order, solve every pending authorization with challenge type via solve,
 * poll (short growing delay, honouring Retry-After, up to timeout_s),
 * finalize with csr_der, download. *pem (new string) is the chain.
 * Not for the service: it keeps no state across a restart.
 */
cp_rc acme_issue_simple(struct acme_client *c, const char *const *names, size_t n, const char *type,
			acme_solve_fn solve, void *arg, const uint8_t *csr_der, size_t csr_len,
			int timeout_s, char **pem, struct acme_result *r) CP_WUR;

#endif
