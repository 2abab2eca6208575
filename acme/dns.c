/*
 * dns.c - the DNS checks certplane makes before and during an ACME order:
 * TXT lookups (is the tenant's DNS-01 record visible yet?) and the hostname
 * check (is the name a wildcard, and does its CNAME chain reach the
 * property's edge hostname?); and the address lookup of the webhook SSRF
 * guard (acme_dns_addresses). All of them share one c-ares loop (dns_wait).
 *
 * Queries go through c-ares to a configured "host:port" resolver, because
 * glibc's resolv.conf cannot name a port and treats the empty, non-recursive
 * answers of test servers as lame referrals. Each lookup builds its own
 * channel and destroys it before returning, so one struct acme_resolver (which
 * only holds configuration) can be shared by any number of threads at once.
 * Waiting uses ares_getsock + poll + ares_process_fd, never select(), because
 * a busy server may own descriptors above FD_SETSIZE.
 *
 * Deadline: a resolver may carry an overall deadline (monotonic ms). Every
 * query's c-ares timeout is then min(DNS_TIMEOUT_MS, time left), every poll
 * waits at most the time left, and a query still unanswered at the deadline
 * is abandoned (ARES_ETIMEOUT): a caller's budget is a bound, not a hope
 * (per-query timeouts * tries * hops used to add up past it).
 */
#include "acme/acme.h"
#include "common/buf.h"

#include <ares.h>
#include <arpa/nameser.h>
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define DNS_TIMEOUT_MS 3000 /* per try, per server */
#define DNS_TRIES 2
#define DNS_MAX_HOPS 8	 /* CNAME hops followed before giving up */
#define DNS_NAME_MAX 256 /* 253 + trailing dot + NUL, rounded */

struct acme_resolver {
	char *servers;	     /* "host:port[,host:port]" for c-ares, or NULL = system */
	int64_t deadline_ms; /* cp_mono_ms() after which no query runs; 0 = none */
};

/* One query's outcome, filled by the c-ares callback. */
struct dns_answer {
	bool done;	     /* callback ran */
	int status;	     /* ARES_* status of the query */
	unsigned char *abuf; /* copy of the raw answer (owned), on ARES_SUCCESS */
	int alen;
};

static pthread_once_t dns_once = PTHREAD_ONCE_INIT;
static int dns_init_status = ARES_SUCCESS;

/* ares_library_init is not thread-safe and is refcounted; do it exactly once. */
static void dns_global_init(void)
{
	dns_init_status = ares_library_init(ARES_LIB_INIT_ALL);
}

cp_rc acme_resolver_new(const char *hostport, struct acme_resolver **out)
{
	struct acme_resolver *res = NULL;
	cp_rc rc = CP_ERR_NOMEM;

	*out = NULL;
	pthread_once(&dns_once, dns_global_init);
	if (dns_init_status != ARES_SUCCESS)
		return CP_ERR_INTERNAL;
	res = calloc(1, sizeof(*res));
	if (!res)
		goto out;
	if (hostport && *hostport) {
		ares_channel ch = NULL;
		struct ares_options opts = { 0 };
		int st;

		res->servers = cp_strdup(hostport);
		if (!res->servers)
			goto out;
		/* Validate now, so a bad config fails at start-up, not mid-order. */
		if (ares_init_options(&ch, &opts, 0) != ARES_SUCCESS) {
			rc = CP_ERR_INTERNAL;
			goto out;
		}
		st = ares_set_servers_ports_csv(ch, hostport);
		ares_destroy(ch);
		if (st != ARES_SUCCESS) {
			rc = CP_ERR_INVALID;
			goto out;
		}
	}
	*out = res;
	res = NULL;
	rc = CP_OK;
out:
	acme_resolver_free(res);
	return rc;
}

void acme_resolver_set_deadline(struct acme_resolver *res, int64_t deadline_ms)
{
	assert(res);
	res->deadline_ms = deadline_ms;
}

/* Milliseconds left before res's deadline (INT32_MAX-ish when none); <= 0
 * when it has passed. */
static int64_t dns_left_ms(const struct acme_resolver *res)
{
	if (res->deadline_ms == 0)
		return INT32_MAX;
	return res->deadline_ms - cp_mono_ms();
}

void acme_resolver_free(struct acme_resolver *res)
{
	if (!res)
		return;
	free(res->servers);
	free(res);
}

static void dns_on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_answer *ans = arg;

	(void)timeouts;
	ans->done = true;
	ans->status = status;
	if (status == ARES_SUCCESS && abuf && alen > 0) {
		ans->abuf = malloc((size_t)alen);
		if (!ans->abuf) {
			ans->status = ARES_ENOMEM;
			return;
		}
		memcpy(ans->abuf, abuf, (size_t)alen);
		ans->alen = alen;
	}
}

/*
 * A new channel for one lookup on res (*out; ares_destroy() it): c-ares'
 * per-try timeout min(DNS_TIMEOUT_MS, time left), DNS_TRIES tries, EDNS,
 * and res's servers (else /etc/resolv.conf). ARES_ETIMEOUT without a
 * channel once res's deadline has passed.
 */
static int dns_channel(const struct acme_resolver *res, ares_channel *out)
{
	ares_channel ch = NULL;
	struct ares_options opts = { 0 };
	int64_t left = dns_left_ms(res);
	int st;

	*out = NULL;
	if (left <= 0)
		return ARES_ETIMEOUT;
	opts.timeout = left < DNS_TIMEOUT_MS ? (int)left : DNS_TIMEOUT_MS;
	opts.tries = DNS_TRIES;
	/* EDNS lets long TXT sets arrive over UDP; TCP fallback stays on. */
	opts.flags = ARES_FLAG_EDNS;
	opts.ednspsz = 1232;
	st = ares_init_options(&ch, &opts,
			       ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS |
				       ARES_OPT_EDNSPSZ);
	if (st != ARES_SUCCESS)
		return st;
	if (res->servers) {
		st = ares_set_servers_ports_csv(ch, res->servers);
		if (st != ARES_SUCCESS) {
			ares_destroy(ch);
			return st;
		}
	}
	*out = ch;
	return ARES_SUCCESS;
}

/*
 * The one c-ares event loop of certplane: drive ch until *done (set by the
 * callback of the lookup started on it) or res's deadline. ARES_SUCCESS
 * once *done (the callback's own status says how the lookup went),
 * ARES_ETIMEOUT at the deadline (the lookup is still pending; the caller's
 * ares_destroy cancels it), ARES_ECONNREFUSED if poll fails.
 */
static int dns_wait(const struct acme_resolver *res, ares_channel ch, const bool *done)
{
	while (!*done) {
		ares_socket_t socks[ARES_GETSOCK_MAXNUM];
		struct pollfd pfd[ARES_GETSOCK_MAXNUM];
		struct timeval tv, *tvp;
		int64_t left;
		nfds_t n = 0;
		unsigned bits;
		int ms, i;

		/* Unsigned bit tests: ARES_GETSOCK_WRITABLE(bits, 15) shifts into the sign bit. */
		bits = (unsigned)ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
		for (i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
			short ev = 0;

			if (bits & (1u << i))
				ev |= POLLIN;
			if (bits & (1u << (i + ARES_GETSOCK_MAXNUM)))
				ev |= POLLOUT;
			if (!ev)
				continue;
			pfd[n].fd = socks[i];
			pfd[n].events = ev;
			pfd[n].revents = 0;
			n++;
		}
		left = dns_left_ms(res);
		if (left <= 0)
			return ARES_ETIMEOUT;
		tvp = ares_timeout(ch, NULL, &tv);
		ms = tvp ? (int)(tvp->tv_sec * 1000 + tvp->tv_usec / 1000) + 1 : DNS_TIMEOUT_MS;
		if (ms > left)
			ms = (int)left;
		if (poll(pfd, n, ms) < 0 && errno != EINTR)
			return ARES_ECONNREFUSED;
		if (n == 0) {
			/* No sockets: let c-ares run its timers (it may give up). */
			ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
			continue;
		}
		for (nfds_t k = 0; k < n; k++) {
			ares_socket_t rfd = (pfd[k].revents & (POLLIN | POLLERR | POLLHUP))
						    ? pfd[k].fd
						    : ARES_SOCKET_BAD;
			ares_socket_t wfd =
				(pfd[k].revents & POLLOUT) ? pfd[k].fd : ARES_SOCKET_BAD;

			ares_process_fd(ch, rfd, wfd);
		}
		/* Timers (retries, give-up) also advance with no ready socket. */
		ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	}
	return ARES_SUCCESS;
}

/*
 * Run one query (class IN, type qtype) for name and wait for it, bounded by
 * c-ares' own timeout * tries and by res's deadline (ARES_ETIMEOUT once it
 * has passed, without sending anything). Returns the ARES_* status; on ARES_SUCCESS
 * ans->abuf holds the raw answer (caller frees).
 */
static int dns_query(const struct acme_resolver *res, const char *name, int qtype,
		     struct dns_answer *ans)
{
	ares_channel ch = NULL;
	int st;

	memset(ans, 0, sizeof(*ans));
	st = dns_channel(res, &ch);
	if (st != ARES_SUCCESS)
		return st;
	ares_query(ch, name, ns_c_in, qtype, dns_on_answer, ans);
	st = dns_wait(res, ch, &ans->done);
	if (st == ARES_SUCCESS)
		st = ans->status;
	/* Destroying runs the callback with ARES_EDESTRUCTION if still pending. */
	ares_destroy(ch);
	if (st != ARES_SUCCESS) {
		free(ans->abuf);
		ans->abuf = NULL;
	}
	return st;
}

/* True for "no such record" outcomes, which are answers, not failures. */
static bool dns_no_data(int st)
{
	return st == ARES_ENODATA || st == ARES_ENOTFOUND;
}

/*
 * Copy name into out lowercased without a trailing dot: test DNS servers
 * match case-sensitively and resolvers return names in either form.
 */
static bool dns_norm(const char *name, char out[DNS_NAME_MAX])
{
	size_t n = strlen(name);

	if (n && name[n - 1] == '.')
		n--;
	if (n == 0 || n >= DNS_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		out[i] = (char)tolower((unsigned char)name[i]);
	out[n] = '\0';
	return true;
}

cp_rc acme_dns_txt(struct acme_resolver *res, const char *name, json_t **values)
{
	struct dns_answer ans = { 0 };
	struct ares_txt_ext *txt = NULL;
	json_t *arr = NULL;
	struct cp_buf val; /* the record being joined */
	bool in_record = false;
	char qname[DNS_NAME_MAX];
	cp_rc rc = CP_ERR_NOMEM;
	int st;

	*values = NULL;
	/* A DNS message is at most 65535 bytes, and so is any record in it. */
	cp_buf_init(&val, 65535);
	if (!res || !name || !dns_norm(name, qname))
		return CP_ERR_INVALID;
	arr = json_array();
	if (!arr)
		goto out;
	st = dns_query(res, qname, ns_t_txt, &ans);
	if (dns_no_data(st))
		goto done;
	if (st != ARES_SUCCESS) {
		cp_logf(CP_LOG_WARN, "dns_txt_failed", "TXT %s: %s", qname, ares_strerror(st));
		rc = st == ARES_ENOMEM ? CP_ERR_NOMEM : CP_ERR_UPSTREAM;
		goto out;
	}
	st = ares_parse_txt_reply_ext(ans.abuf, ans.alen, &txt);
	if (dns_no_data(st))
		goto done;
	if (st != ARES_SUCCESS) {
		rc = CP_ERR_UPSTREAM;
		goto out;
	}
	/* A TXT record may hold several strings; its value is their concatenation. */
	for (struct ares_txt_ext *t = txt; t; t = t->next) {
		if (t->record_start && in_record) {
			if (json_array_append_new(arr, json_stringn(cp_buf_str(&val), val.len)))
				goto out;
			cp_buf_reset(&val);
		}
		in_record = true;
		cp_rc brc = cp_buf_add(&val, t->txt, t->length);

		if (brc != CP_OK) {
			rc = brc == CP_ERR_TOO_LARGE ? CP_ERR_UPSTREAM : brc;
			goto out;
		}
	}
	if (in_record && json_array_append_new(arr, json_stringn(cp_buf_str(&val), val.len)))
		goto out;
done:
	*values = arr;
	arr = NULL;
	rc = CP_OK;
out:
	if (txt)
		ares_free_data(txt);
	cp_buf_free(&val);
	free(ans.abuf);
	json_decref(arr);
	return rc;
}

/* The CAA records of exactly qname: ARES_SUCCESS with *out (new array,
 * empty when none) or a failure status. */
static int dns_caa_at(const struct acme_resolver *res, const char *qname, json_t **out)
{
	struct dns_answer ans = { 0 };
	struct ares_caa_reply *caa = NULL;
	json_t *arr = json_array();
	int st;

	*out = NULL;
	if (!arr)
		return ARES_ENOMEM;
	st = dns_query(res, qname, ns_t_caa, &ans);
	if (st == ARES_SUCCESS)
		st = ares_parse_caa_reply(ans.abuf, ans.alen, &caa);
	if (dns_no_data(st))
		st = ARES_SUCCESS;
	for (struct ares_caa_reply *c = caa; st == ARES_SUCCESS && c; c = c->next) {
		json_t *rec = json_pack("{s:i,s:s%,s:s%}", "flags", c->critical, "tag",
					(const char *)c->property, c->plength, "value",
					(const char *)c->value, c->length);
		if (!rec || json_array_append_new(arr, rec))
			st = ARES_ENOMEM;
	}
	if (caa)
		ares_free_data(caa);
	free(ans.abuf);
	if (st == ARES_SUCCESS) {
		*out = arr;
		arr = NULL;
	}
	json_decref(arr);
	return st;
}

cp_rc acme_dns_caa(struct acme_resolver *res, const char *name, json_t **records, char *at,
		   size_t at_len)
{
	char qname[DNS_NAME_MAX];
	const char *p;
	json_t *arr = NULL;
	int st;

	assert(records && at && at_len);
	*records = NULL;
	at[0] = '\0';
	if (!res || !name)
		return CP_ERR_INVALID;
	if (!strncmp(name, "*.", 2))
		name += 2;
	if (!dns_norm(name, qname))
		return CP_ERR_INVALID;
	for (p = qname; p && strchr(p, '.'); p = strchr(p, '.') ? strchr(p, '.') + 1 : NULL) {
		st = dns_caa_at(res, p, &arr);
		if (st != ARES_SUCCESS) {
			cp_logf(CP_LOG_WARN, "dns_caa_failed", "CAA %s: %s", p, ares_strerror(st));
			return st == ARES_ENOMEM ? CP_ERR_NOMEM : CP_ERR_UPSTREAM;
		}
		if (json_array_size(arr) > 0) {
			snprintf(at, at_len, "%s", p);
			break;
		}
		json_decref(arr);
		arr = NULL;
	}
	*records = arr ? arr : json_array();
	return *records ? CP_OK : CP_ERR_NOMEM;
}

/*
 * Ask for name's CNAME. Returns ARES_SUCCESS with next filled (normalised
 * target), ARES_ENODATA when name has no CNAME, or another ARES_* failure.
 */
static int dns_cname(const struct acme_resolver *res, const char *name, char next[DNS_NAME_MAX])
{
	struct dns_answer ans = { 0 };
	struct hostent *h = NULL;
	const char *target;
	int st;

	st = dns_query(res, name, ns_t_cname, &ans);
	if (st != ARES_SUCCESS)
		goto out;
	/*
	 * ares_parse_a_reply follows every CNAME in the answer: h_aliases lists
	 * the owner names in order and h_name is the end of the chain. A server
	 * may include more than our one hop; take only the hop for name.
	 */
	st = ares_parse_a_reply(ans.abuf, ans.alen, &h, NULL, NULL);
	if (st != ARES_SUCCESS)
		goto out;
	if (!h->h_aliases || !h->h_aliases[0]) {
		st = ARES_ENODATA;
		goto out;
	}
	target = h->h_aliases[1] ? h->h_aliases[1] : h->h_name;
	if (!target || !dns_norm(target, next))
		st = ARES_EBADRESP;
out:
	if (h)
		ares_free_hostent(h);
	free(ans.abuf);
	return st;
}

/* Append a string to a JSON array; false on OOM. */
static bool dns_push(json_t *arr, const char *s)
{
	return json_array_append_new(arr, json_string(s)) == 0;
}

cp_rc acme_check_hostname(struct acme_resolver *res, const char *hostname,
			  const char *edge_hostname, json_t **result)
{
	json_t *obj = NULL, *chain = NULL;
	char *detail = NULL;
	char host[DNS_NAME_MAX], edge[DNS_NAME_MAX], cur[DNS_NAME_MAX], next[DNS_NAME_MAX];
	bool wildcard, points = false;
	const char *failure = NULL; /* ares_strerror of a lookup that failed */
	cp_rc rc = CP_ERR_NOMEM;
	int hops = 0, st = ARES_SUCCESS;

	*result = NULL;
	if (!res || !hostname || !edge_hostname || !dns_norm(hostname, host) ||
	    !dns_norm(edge_hostname, edge))
		return CP_ERR_INVALID;
	wildcard = strncmp(host, "*.", 2) == 0;
	chain = json_array();
	if (!chain)
		goto out;

	/*
	 * Walk hop by hop with CNAME queries: some servers (challtestsrv) follow
	 * only one level inside an answer, and a loop or an over-long chain must
	 * be caught here, not by the resolver.
	 */
	memcpy(cur, host, sizeof(cur));
	for (;;) {
		bool seen = false;

		if (hops == DNS_MAX_HOPS) {
			st = ARES_ESERVFAIL;
			failure = "CNAME chain longer than 8 hops";
			break;
		}
		if (dns_left_ms(res) <= 0) {
			st = ARES_ETIMEOUT;
			failure = "the DNS check ran out of time";
			break;
		}
		st = dns_cname(res, cur, next);
		if (dns_no_data(st)) {
			st = ARES_SUCCESS;
			break;
		}
		if (st != ARES_SUCCESS) {
			failure = ares_strerror(st);
			break;
		}
		hops++;
		for (size_t i = 0; i < json_array_size(chain); i++)
			if (strcmp(json_string_value(json_array_get(chain, i)), next) == 0)
				seen = true;
		if (seen || strcmp(next, host) == 0) {
			st = ARES_ESERVFAIL;
			failure = "CNAME loop";
			break;
		}
		if (!dns_push(chain, next))
			goto out;
		if (strcmp(next, edge) == 0) {
			points = true;
			break;
		}
		memcpy(cur, next, sizeof(cur));
	}

	/* The sentence a tenant reads: name the hostname and what it points at. */
	if (failure)
		detail = cp_aprintf(
			"DNS lookup for %s failed (%s) after %d CNAME hop(s); cannot tell whether it points to %s",
			host, failure, hops, edge);
	else if (hops == 0)
		detail = cp_aprintf("%s has no CNAME record; it must be a CNAME to %s", host, edge);
	else if (points && hops == 1)
		detail = cp_aprintf("%s is a CNAME to %s", host, edge);
	else if (points)
		detail = cp_aprintf("%s reaches %s through a chain of %d CNAMEs", host, edge, hops);
	else if (hops == 1)
		detail = cp_aprintf("%s is a CNAME to %s, not to %s", host,
				    json_string_value(json_array_get(chain, 0)), edge);
	else
		detail = cp_aprintf(
			"%s is a CNAME to %s, whose chain ends at %s, not at %s", host,
			json_string_value(json_array_get(chain, 0)),
			json_string_value(json_array_get(chain, json_array_size(chain) - 1)), edge);
	if (detail && wildcard) {
		char *w = cp_aprintf("%s is a wildcard and cannot be validated with HTTP-01 (%s)",
				     host, detail);

		free(detail);
		detail = w;
	}
	if (!detail)
		goto out;
	obj = json_pack("{s:s, s:O, s:b, s:b, s:b, s:s}", "hostname", host, "cname_chain", chain,
			"points_to_edge", points, "wildcard", wildcard, "ready",
			points && !wildcard, "detail", detail);
	if (!obj)
		goto out;
	*result = obj;
	obj = NULL;
	rc = failure ? CP_ERR_UPSTREAM : CP_OK;
out:
	free(detail);
	json_decref(chain);
	json_decref(obj);
	return rc;
}

/* The outcome of one ares_getaddrinfo, filled by its callback. */
struct dns_addrs {
	bool done;		      /* callback ran */
	int status;		      /* ARES_* status of the lookup */
	struct sockaddr_storage *out; /* caller's array of max entries */
	size_t max, n;
	bool too_many; /* the name had more than max addresses */
};

/* ares_getaddrinfo callback: copy the IPv4/IPv6 addresses of ai (owned
 * here, freed) into arg's array, noting an overflow. */
static void dns_on_addrinfo(void *arg, int status, int timeouts, struct ares_addrinfo *ai)
{
	struct dns_addrs *a = arg;

	(void)timeouts;
	a->done = true;
	a->status = status;
	for (const struct ares_addrinfo_node *nd = ai && status == ARES_SUCCESS ? ai->nodes : NULL;
	     nd; nd = nd->ai_next) {
		size_t len = (size_t)nd->ai_addrlen;

		if ((nd->ai_family != AF_INET && nd->ai_family != AF_INET6) || !nd->ai_addr ||
		    len > sizeof(*a->out))
			continue;
		if (a->n == a->max) {
			a->too_many = true;
			break;
		}
		memset(&a->out[a->n], 0, sizeof(*a->out));
		memcpy(&a->out[a->n], nd->ai_addr, len);
		a->n++;
	}
	if (ai)
		ares_freeaddrinfo(ai);
}

cp_rc acme_dns_addresses(struct acme_resolver *res, const char *host, struct sockaddr_storage *out,
			 size_t max, size_t *n)
{
	struct ares_addrinfo_hints hints = { .ai_family = AF_UNSPEC,
					     .ai_socktype = SOCK_STREAM,
					     /* No RFC 6724 sorting: it connect()s probe
					      * sockets, and every address is checked anyway. */
					     .ai_flags = ARES_AI_NOSORT };
	struct dns_addrs a = { .out = out, .max = max };
	char name[DNS_NAME_MAX];
	ares_channel ch = NULL;
	int st;

	*n = 0;
	if (!res || !host || !out || max == 0 || !dns_norm(host, name))
		return CP_ERR_INVALID;
	st = dns_channel(res, &ch);
	if (st != ARES_SUCCESS)
		return st == ARES_ENOMEM ? CP_ERR_NOMEM : CP_ERR_UPSTREAM;
	/* name only bounds host; host goes as given, so that "x." stays
	 * absolute (no search list), as for libcurl's resolver. May call back
	 * at once (numeric names, /etc/hosts). */
	ares_getaddrinfo(ch, host, NULL, &hints, dns_on_addrinfo, &a);
	st = dns_wait(res, ch, &a.done);
	if (st == ARES_SUCCESS)
		st = a.status;
	/* Cancels a lookup still pending at the deadline: its callback runs now
	 * with ARES_EDESTRUCTION, and nothing of it outlives this call. */
	ares_destroy(ch);
	if (st == ARES_SUCCESS && a.too_many)
		return CP_ERR_TOO_LARGE;
	if (st == ARES_SUCCESS && a.n > 0) {
		*n = a.n;
		return CP_OK;
	}
	if (st == ARES_SUCCESS || dns_no_data(st))
		return CP_ERR_NOT_FOUND;
	return st == ARES_ENOMEM ? CP_ERR_NOMEM : CP_ERR_UPSTREAM;
}
