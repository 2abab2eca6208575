/*
 * fuzz_ssrf.c - libFuzzer target for the callback URL guard (netpolicy/netpolicy.c):
 * netpolicy_url_check with dns NULL (the URL syntax rules; no DNS in
 * a fuzzer) and netpolicy_addr_allowed on arbitrary sockaddr bytes (the
 * classifier every delivery's connect goes through).
 *
 * The first input byte picks the mode. Properties: a refusal always has a
 * reason; without resolving, allow_private cannot change the verdict; an
 * accepted URL is http(s) and printable ASCII; an IPv4 address gets the
 * same verdict as its IPv4-mapped, NAT64 and 6to4 IPv6 forms, and
 * loopback/private/link-local addresses are never allowed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "netpolicy/netpolicy.h"

static void url_mode(const uint8_t *data, size_t size)
{
	char *url = malloc(size + 1);
	char why[NETPOLICY_WHY_MAX], why2[NETPOLICY_WHY_MAX];
	cp_rc rc, rc2;

	if (!url)
		return;
	memcpy(url, data, size);
	url[size] = '\0';
	rc = netpolicy_url_check(url, false, NULL, why);
	rc2 = netpolicy_url_check(url, true, NULL, why2);
	if (rc != rc2 || (rc != CP_OK && !why[0]) || (rc == CP_OK && why[0]))
		abort();
	if (rc == CP_OK) {
		if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
			abort();
		for (const char *p = url; *p; p++)
			if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
				abort();
	}
	free(url);
}

static bool v6_verdict(const uint8_t a[16])
{
	struct sockaddr_in6 in6;

	memset(&in6, 0, sizeof(in6));
	in6.sin6_family = AF_INET6;
	memcpy(in6.sin6_addr.s6_addr, a, 16);
	return netpolicy_addr_allowed((const struct sockaddr *)&in6, sizeof(in6));
}

static void v4_forms(const uint8_t v4[4])
{
	struct sockaddr_in in;
	uint8_t a[16];
	bool ok;

	memset(&in, 0, sizeof(in));
	in.sin_family = AF_INET;
	memcpy(&in.sin_addr.s_addr, v4, 4);
	ok = netpolicy_addr_allowed((const struct sockaddr *)&in, sizeof(in));
	/* Refused ranges the classifier must always know. */
	if (ok && (v4[0] == 127 || v4[0] == 10 || v4[0] == 0 || (v4[0] == 169 && v4[1] == 254) ||
		   (v4[0] == 192 && v4[1] == 168) || (v4[0] == 172 && (v4[1] & 0xf0) == 16) ||
		   v4[0] >= 224))
		abort();
	memset(a, 0, sizeof(a)); /* ::ffff:a.b.c.d */
	a[10] = a[11] = 0xff;
	memcpy(a + 12, v4, 4);
	if (v6_verdict(a) != ok)
		abort();
	memset(a, 0, sizeof(a)); /* 64:ff9b::a.b.c.d */
	a[1] = 0x64, a[2] = 0xff, a[3] = 0x9b;
	memcpy(a + 12, v4, 4);
	if (v6_verdict(a) != ok)
		abort();
	memset(a, 0, sizeof(a)); /* 2002:a.b.c.d::/48 */
	a[0] = 0x20, a[1] = 0x02;
	memcpy(a + 2, v4, 4);
	if (ok ? 0 : v6_verdict(a))
		abort();	 /* a refused IPv4 stays refused behind 6to4 */
	memset(a, 0, sizeof(a)); /* ::a.b.c.d, deprecated compatible form */
	memcpy(a + 12, v4, 4);
	if (v6_verdict(a))
		abort();
}

static void addr_mode(const uint8_t *data, size_t size)
{
	struct sockaddr_storage ss;
	size_t n = size < sizeof(ss) ? size : sizeof(ss);

	/* Raw bytes, any family and length: must not read past len. */
	memset(&ss, 0, sizeof(ss));
	memcpy(&ss, data, n);
	{
		uint8_t *copy = malloc(n ? n : 1);

		if (!copy)
			return;
		memcpy(copy, &ss, n);
		(void)netpolicy_addr_allowed((const struct sockaddr *)copy, n);
		free(copy);
	}
	if (size >= 4)
		v4_forms(data);
	if (size >= 16) {
		uint8_t a[16];

		memcpy(a, data, 16);
		/* ::1, fe80::/10, fc00::/7 and multicast are never allowed. */
		if (v6_verdict(a) && ((a[0] & 0xfe) == 0xfc ||
				      (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) || a[0] == 0xff))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	if (data[0] & 1)
		addr_mode(data + 1, size - 1);
	else
		url_mode(data + 1, size - 1);
	return 0;
}
