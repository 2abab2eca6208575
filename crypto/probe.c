/*
 * probe.c - what a TLS server serves: one handshake with SNI to a chosen
 * address, and the SHA-256 of the leaf certificate it presented (the edge
 * served check, server/edge_check.c). Nothing is verified or trusted here:
 * the caller compares the fingerprint with the one it deployed.
 */
#include "crypto/crypto_internal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

/* Split "host:port" / "[v6]:port" into host and port (NUL-terminated). */
static bool split_address(const char *address, char *host, size_t hcap, char *port, size_t pcap)
{
	const char *colon = strrchr(address, ':');
	const char *h = address;
	size_t hl;

	if (!colon || !colon[1] || strlen(colon + 1) >= pcap)
		return false;
	hl = (size_t)(colon - address);
	if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	if (hl == 0 || hl >= hcap)
		return false;
	memcpy(host, h, hl);
	host[hl] = '\0';
	snprintf(port, pcap, "%s", colon + 1);
	return true;
}

/* A connected blocking socket to host:port within timeout_ms, with the
 * same timeout on its reads and writes; -1 with why on failure. */
static int connect_to(const char *host, const char *port, int timeout_ms, char *why, size_t why_len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	int fd = -1, err;

	err = getaddrinfo(host, port, &hints, &res);
	if (err != 0) {
		snprintf(why, why_len, "cannot resolve %s: %s", host, gai_strerror(err));
		return -1;
	}
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		struct pollfd pfd;
		int soerr = 0;
		socklen_t sl = sizeof(soerr);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)
			goto next;
		pfd = (struct pollfd){ .fd = fd, .events = POLLOUT };
		if (poll(&pfd, 1, timeout_ms) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0)
			goto next;
		if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0 ||
		    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
		    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
			goto next;
		break;
	next:
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(why, why_len, "cannot connect to %s port %s", host, port);
	return fd;
}

cp_rc crypto_tls_probe(const char *address, const char *servername, int timeout_ms, char fp[65],
		       char *why, size_t why_len)
{
	char host[256], port[16];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	X509 *leaf = NULL;
	int fd = -1;
	cp_rc rc = CP_ERR_UPSTREAM;

	assert(address && servername && fp && why && why_len > 0 && timeout_ms > 0);
	fp[0] = '\0';
	why[0] = '\0';
	if (!split_address(address, host, sizeof(host), port, sizeof(port))) {
		snprintf(why, why_len, "edge address must be host:port");
		return CP_ERR_INVALID;
	}
	fd = connect_to(host, port, timeout_ms, why, why_len);
	if (fd < 0)
		goto out;
	ctx = SSL_CTX_new(TLS_client_method());
	ssl = ctx ? SSL_new(ctx) : NULL;
	if (!ssl) {
		rc = CP_ERR_CRYPTO;
		snprintf(why, why_len, "cannot set up TLS");
		goto out;
	}
	SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
	if (SSL_set_tlsext_host_name(ssl, servername) != 1 || SSL_set_fd(ssl, fd) != 1) {
		snprintf(why, why_len, "cannot set up TLS for %s", servername);
		goto out;
	}
	if (SSL_connect(ssl) != 1) {
		snprintf(why, why_len, "TLS handshake with %s for %s failed", address, servername);
		goto out;
	}
	leaf = SSL_get1_peer_certificate(ssl);
	if (!leaf) {
		snprintf(why, why_len, "%s served no certificate for %s", address, servername);
		goto out;
	}
	if (X509_digest(leaf, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32) {
		rc = CP_ERR_CRYPTO;
		goto out;
	}
	cp_hex(md, mdlen, fp);
	rc = CP_OK;
out:
	/* No close_notify (SSL_shutdown): a write to a peer that already
	 * closed would raise SIGPIPE, and only the certificate was wanted. */
	X509_free(leaf);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	if (fd >= 0)
		close(fd);
	ERR_clear_error();
	return rc;
}
