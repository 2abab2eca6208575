/*
 * netpolicy.h - outbound-network policy: which addresses and URLs a
 * connection made on a user's behalf (webhook callbacks) may reach. Used at
 * registration (api/webhooks.c) and again at delivery on the address
 * actually connected to (server/webhook_delivery.c), so that api/ and
 * server/ share the rule without including each other.
 */
#ifndef CP_NETPOLICY_H
#define CP_NETPOLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "common/common.h"

struct sockaddr;
/* True if sa is a global unicast address a callback may reach: false for
 * loopback, private, CGNAT, link-local, documentation, multicast, reserved,
 * unique-local/link-local IPv6 and IPv6 forms embedding such an IPv4. */
bool netpolicy_addr_allowed(const struct sockaddr *sa, size_t len);
/* Room for the sentence netpolicy_*_check leave in why. */
#define NETPOLICY_WHY_MAX 128
/* How the policy resolves names. */
struct netpolicy_dns {
	const char *resolver; /* dns_resolver "host:port[,...]", or NULL/"" = /etc/resolv.conf */
	int timeout_ms;	      /* hard deadline for the whole lookup (> 0) */
};
/* Resolve host (numeric spellings parsed locally, never sent to DNS; a name
 * through dns, within dns->timeout_ms) and require every address to be
 * allowed (unless allow_private). CP_ERR_INVALID with a sentence in why
 * (also "host did not resolve within N ms" at the deadline); CP_ERR_NOMEM;
 * CP_ERR_INTERNAL for an unusable dns->resolver. */
cp_rc netpolicy_host_check(const char *host, bool allow_private, const struct netpolicy_dns *dns,
			   char why[NETPOLICY_WHY_MAX]) CP_WUR;
/* Check a callback URL: absolute http/https, a host, no credentials, at
 * most 2048 printable ASCII characters; with dns (NULL: syntax only),
 * netpolicy_host_check on its host. CP_ERR_INVALID with a sentence in
 * why (for a 422 on "url"). */
cp_rc netpolicy_url_check(const char *url, bool allow_private, const struct netpolicy_dns *dns,
			  char why[NETPOLICY_WHY_MAX]) CP_WUR;

#endif
