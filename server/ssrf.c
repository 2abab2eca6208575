/*
 * ssrf.c - the guard that keeps callback URLs (user input) from reaching
 * addresses inside our own network: loopback, RFC 1918 and the other
 * special-purpose ranges, link-local (169.254.169.254 is the cloud metadata
 * service), unique-local IPv6 and every IPv6 form that embeds an IPv4
 * address (mapped, compatible, 6to4, NAT64).
 *
 * Decisions are made on resolved numeric addresses only, never on the text
 * of the URL: getaddrinfo() turns odd spellings ("2130706433", "0x7f.1",
 * "0177.0.0.1") into the address they mean, and a hostname may resolve to
 * anything. The same classifier runs at registration (every address the
 * name resolves to) and again on the address each delivery actually
 * connects to (CURLOPT_OPENSOCKETFUNCTION in webhook_delivery.c), so DNS
 * rebinding between the two checks gains nothing.
 *
 * The URL is parsed with libcurl's own parser (CURLU) so that the host we
 * check is the host libcurl will connect to.
 */
#include "server/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <curl/curl.h>

/* Longest callback URL accepted. */
#define SSRF_URL_MAX 2048

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

bool server_ssrf_addr_allowed(const struct sockaddr *sa, size_t len)
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

cp_rc server_ssrf_host_check(const char *host, bool allow_private, const char **why)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	cp_rc rc = CP_OK;
	int n = 0;

	*why = NULL;
	if (!host || !*host || strlen(host) > CP_HOSTNAME_MAX) {
		*why = "must name a host";
		return CP_ERR_INVALID;
	}
	if (getaddrinfo(host, NULL, &hints, &res) != 0 || !res) {
		*why = "host does not resolve";
		return CP_ERR_INVALID;
	}
	for (const struct addrinfo *ai = res; ai; ai = ai->ai_next, n++) {
		if (!allow_private && !server_ssrf_addr_allowed(ai->ai_addr, ai->ai_addrlen)) {
			*why = "host resolves to a loopback, private, link-local or reserved address";
			rc = CP_ERR_INVALID;
			break;
		}
	}
	freeaddrinfo(res);
	return rc;
}

cp_rc server_ssrf_url_check(const char *url, bool allow_private, bool resolve, const char **why)
{
	CURLU *u = NULL;
	char *scheme = NULL, *host = NULL, *user = NULL, *zone = NULL;
	cp_rc rc = CP_ERR_INVALID;
	size_t hl;

	*why = NULL;
	if (!url || strlen(url) > SSRF_URL_MAX) {
		*why = "must be at most 2048 characters";
		return CP_ERR_INVALID;
	}
	for (const char *p = url; *p; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			*why = "must not contain spaces, control or non-ASCII characters";
			return CP_ERR_INVALID;
		}
	}
	/* libcurl also takes "http:/host" and "http:host"; a stored URL must
	 * mean the same host to every other parser that reads it (dashboards,
	 * the tenant's tools), so the text itself must spell the authority. */
	if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0) {
		*why = "must be an absolute http or https URL";
		return CP_ERR_INVALID;
	}
	u = curl_url();
	if (!u) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	/* No guessing of a missing scheme: "example.com/x" is not a URL here. */
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
		*why = "must be an absolute http or https URL";
		goto out;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0)) {
		*why = "must use http or https";
		goto out;
	}
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
		*why = "must not contain credentials";
		goto out;
	}
	if (curl_url_get(u, CURLUPART_ZONEID, &zone, 0) == CURLUE_OK) {
		*why = "must not contain an IPv6 zone id";
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || !host[0]) {
		*why = "must name a host";
		goto out;
	}
	/* CURLU keeps the brackets of an IPv6 literal. */
	hl = strlen(host);
	if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	rc = resolve ? server_ssrf_host_check(host, allow_private, why) : CP_OK;
out:
	curl_free(scheme);
	curl_free(host);
	curl_free(user);
	curl_free(zone);
	curl_url_cleanup(u);
	return rc;
}
