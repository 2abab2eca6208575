/*
 * netpolicy.c - the guard that keeps callback URLs (user input) from reaching
 * addresses inside our own network: loopback, RFC 1918 and the other
 * special-purpose ranges, link-local (169.254.169.254 is the cloud metadata
 * service), unique-local IPv6 and every IPv6 form that embeds an IPv4
 * address (mapped, compatible, 6to4, NAT64).
 *
 * Decisions are made on resolved numeric addresses only, never on the text
 * of the URL: inet_aton/inet_pton turn odd spellings ("2130706433",
 * "0x7f.1", "0177.0.0.1") into the address they mean, exactly as the
 * system resolver libcurl uses does, and a hostname may resolve to
 * anything. Names are resolved with c-ares (acme_dns_addresses) under a
 * hard deadline: the check runs on a net thread (server/routes.c .offload), and a
 * callback host whose DNS never answers must cost that thread the deadline,
 * not the system resolver's 5 s x attempts x servers. The same classifier
 * runs at registration (every address the name resolves to) and again on
 * the address each delivery actually connects to (CURLOPT_OPENSOCKETFUNCTION
 * in server/webhook_delivery.c), so DNS rebinding between the two checks gains
 * nothing. Names go to dns_resolver when it is set (the resolver of the
 * CNAME/TXT checks and of the test bed), else to /etc/resolv.conf, which is
 * what libcurl uses at delivery.
 *
 * The URL is parsed with libcurl's own parser (CURLU) so that the host we
 * check is the host libcurl will connect to.
 */
#include "netpolicy/netpolicy.h"
#include "acme/acme.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>

/* Longest callback URL accepted. */
#define SSRF_URL_MAX 2048
/* Most addresses a callback host may resolve to (each one is checked). */
#define SSRF_ADDRS_MAX 32

/* An IPv4 prefix (host byte order) and its length. */
struct v4_net {
	uint32_t net;
	int bits;
};

/* Every IPv4 range that is not global unicast (IANA special-purpose
 * registry), plus multicast and reserved space. */
static const struct v4_net v4_refused[] = {
	{ 0x00000000, 8 },  /* 0.0.0.0/8 "this network" */
	{ 0x0a000000, 8 },  /* 10/8 private */
	{ 0x64400000, 10 }, /* 100.64/10 carrier-grade NAT */
	{ 0x7f000000, 8 },  /* 127/8 loopback */
	{ 0xa9fe0000, 16 }, /* 169.254/16 link-local, cloud metadata */
	{ 0xac100000, 12 }, /* 172.16/12 private */
	{ 0xc0000000, 24 }, /* 192.0.0/24 IETF protocol assignments */
	{ 0xc0000200, 24 }, /* 192.0.2/24 TEST-NET-1 */
	{ 0xc0586300, 24 }, /* 192.88.99/24 6to4 relay anycast */
	{ 0xc0a80000, 16 }, /* 192.168/16 private */
	{ 0xc6120000, 15 }, /* 198.18/15 benchmarking */
	{ 0xc6336400, 24 }, /* 198.51.100/24 TEST-NET-2 */
	{ 0xcb007100, 24 }, /* 203.0.113/24 TEST-NET-3 */
	{ 0xe0000000, 4 },  /* 224/4 multicast */
	{ 0xf0000000, 4 },  /* 240/4 reserved, broadcast */
};

/* a is the IPv4 address in host byte order. */
static bool v4_allowed(uint32_t a)
{
	for (size_t i = 0; i < CP_ARRAY_LEN(v4_refused); i++) {
		uint32_t mask = 0xffffffffu << (32 - v4_refused[i].bits);
		if ((a & mask) == v4_refused[i].net)
			return false;
	}
	return true;
}

static uint32_t v4_at(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* a is a 16-byte IPv6 address. */
static bool v6_allowed(const uint8_t *a)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	static const uint8_t nat64[12] = { 0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0 };

	/* ::ffff:a.b.c.d (mapped) and 64:ff9b::a.b.c.d (NAT64) reach a.b.c.d. */
	if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0)
		return v4_allowed(v4_at(a + 12));
	/* ::a.b.c.d (IPv4-compatible, deprecated) and ::, ::1. */
	if (all_zero(a, 12))
		return false;
	/* 2002:a.b.c.d::/48 (6to4) reaches a.b.c.d. */
	if (a[0] == 0x20 && a[1] == 0x02)
		return v4_allowed(v4_at(a + 2));
	/* Global unicast is 2000::/3; everything else (fc00::/7 unique-local,
	 * fe80::/10 link-local, ff00::/8 multicast, 64:ff9b:1::/48 local NAT64,
	 * 100::/64 discard ...) is refused. */
	if ((a[0] & 0xe0) != 0x20)
		return false;
	/* 2001::/23 IETF protocol assignments (Teredo 2001::/32 embeds an
	 * obfuscated IPv4), 2001:db8::/32 documentation. */
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] < 0x02)
		return false;
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8)
		return false;
	/* 3fff::/20 documentation (RFC 9637). */
	if (a[0] == 0x3f && a[1] == 0xff && a[2] < 0x10)
		return false;
	return true;
}

bool netpolicy_addr_allowed(const struct sockaddr *sa, size_t len)
{
	/* len may be anything a caller was handed: not even a family is there. */
	if (!sa || len < sizeof(sa->sa_family))
		return false;
	if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
		return v4_allowed(ntohl(in->sin_addr.s_addr));
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
		return v6_allowed(in6->sin6_addr.s6_addr);
	}
	return false; /* AF_UNIX and anything else */
}

/* Set why (printf-style) and return CP_ERR_INVALID, for a 422 on the URL. */
static cp_rc ssrf_refuse(char why[NETPOLICY_WHY_MAX], const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static cp_rc ssrf_refuse(char why[NETPOLICY_WHY_MAX], const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, NETPOLICY_WHY_MAX, fmt, ap);
	va_end(ap);
	return CP_ERR_INVALID;
}

/*
 * If host is a numeric address in any spelling the system resolver (and so
 * libcurl) accepts, store it in *ss and return true. Never touches the
 * network. inet_aton takes what getaddrinfo took: "2130706433", "0x7f.1",
 * "0177.0.0.1", "127.1"; it also ignores anything after a space, so it only
 * sees strings made of the characters a numeric IPv4 can have.
 */
static bool ssrf_numeric(const char *host, struct sockaddr_storage *ss)
{
	struct sockaddr_in *in = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (strspn(host, "0123456789abcdefABCDEFxX.") == strlen(host) &&
	    inet_aton(host, &in->sin_addr)) {
		in->sin_family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		return true;
	}
	return false;
}

/* RFC 6761: "localhost" and every name under it are loopback (libcurl
 * answers them itself, without DNS). */
static bool ssrf_localhost(const char *host)
{
	size_t n = strlen(host);

	if (n && host[n - 1] == '.')
		n--;
	return (n == 9 && strncasecmp(host, "localhost", 9) == 0) ||
	       (n > 10 && strncasecmp(host + n - 10, ".localhost", 10) == 0);
}

cp_rc netpolicy_host_check(const char *host, bool allow_private, const struct netpolicy_dns *dns,
			   char why[NETPOLICY_WHY_MAX])
{
	struct sockaddr_storage addrs[SSRF_ADDRS_MAX];
	struct acme_resolver *res = NULL;
	int64_t deadline;
	size_t n = 0;
	cp_rc rc;

	assert(dns && dns->timeout_ms > 0);
	why[0] = '\0';
	if (!host || !*host || strlen(host) > CP_HOSTNAME_MAX)
		return ssrf_refuse(why, "must name a host");
	if (ssrf_numeric(host, &addrs[0])) {
		n = 1;
	} else if (ssrf_localhost(host)) {
		struct sockaddr_in *in = (struct sockaddr_in *)&addrs[0];

		memset(addrs, 0, 2 * sizeof(addrs[0]));
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		((struct sockaddr_in6 *)&addrs[1])->sin6_family = AF_INET6;
		((struct sockaddr_in6 *)&addrs[1])->sin6_addr = in6addr_loopback;
		n = 2;
	} else {
		/* A name: c-ares under a hard deadline, never the blocking
		 * getaddrinfo(), so a resolver that never answers costs this
		 * thread timeout_ms and not a second more. */
		rc = acme_resolver_new(dns->resolver, &res);
		if (rc != CP_OK)
			return rc == CP_ERR_NOMEM ? rc : CP_ERR_INTERNAL;
		deadline = cp_mono_ms() + dns->timeout_ms;
		acme_resolver_set_deadline(res, deadline);
		rc = acme_dns_addresses(res, host, addrs, SSRF_ADDRS_MAX, &n);
		acme_resolver_free(res);
		if (rc == CP_ERR_NOMEM)
			return rc;
		if (rc == CP_ERR_UPSTREAM && cp_mono_ms() >= deadline)
			return ssrf_refuse(why, "host did not resolve within %d ms",
					   dns->timeout_ms);
		if (rc == CP_ERR_TOO_LARGE)
			return ssrf_refuse(why, "host resolves to more than %d addresses",
					   SSRF_ADDRS_MAX);
		if (rc != CP_OK)
			return ssrf_refuse(why, "host does not resolve");
	}
	assert(n >= 1 && n <= SSRF_ADDRS_MAX);
	for (size_t i = 0; i < n && !allow_private; i++) {
		socklen_t len = addrs[i].ss_family == AF_INET ? sizeof(struct sockaddr_in)
							      : sizeof(struct sockaddr_in6);

		if (!netpolicy_addr_allowed((const struct sockaddr *)&addrs[i], len))
			return ssrf_refuse(
				why,
				"host resolves to a loopback, private, link-local or reserved address");
	}
	return CP_OK;
}

cp_rc netpolicy_url_check(const char *url, bool allow_private, const struct netpolicy_dns *dns,
			  char why[NETPOLICY_WHY_MAX])
{
	CURLU *u = NULL;
	char *scheme = NULL, *host = NULL, *user = NULL, *zone = NULL;
	cp_rc rc = CP_ERR_INVALID;
	size_t hl;

	why[0] = '\0';
	if (!url || strlen(url) > SSRF_URL_MAX) {
		return ssrf_refuse(why, "must be at most 2048 characters");
	}
	for (const char *p = url; *p; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			return ssrf_refuse(
				why, "must not contain spaces, control or non-ASCII characters");
		}
	}
	/* libcurl also takes "http:/host" and "http:host"; a stored URL must
	 * mean the same host to every other parser that reads it (dashboards,
	 * the tenant's tools), so the text itself must spell the authority. */
	if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
		return ssrf_refuse(why, "must be an absolute http or https URL");
	}
	u = curl_url();
	if (!u) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	/* No guessing of a missing scheme: "example.com/x" is not a URL here. */
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
		ssrf_refuse(why, "must be an absolute http or https URL");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		ssrf_refuse(why, "must use http or https");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
		ssrf_refuse(why, "must not contain credentials");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_ZONEID, &zone, 0) == CURLUE_OK) {
		ssrf_refuse(why, "must not contain an IPv6 zone id");
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0]) {
		ssrf_refuse(why, "must name a host");
		goto out;
	}
	/* CURLU keeps the brackets of an IPv6 literal. */
	hl = strlen(host);
	if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	rc = dns ? netpolicy_host_check(host, allow_private, dns, why) : CP_OK;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(zone);
	curl_url_cleanup(u);
	return rc;
}
