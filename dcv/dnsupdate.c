/*
 * dnsupdate.c - RFC 2136 dynamic updates of the delegation zone, signed
 * with TSIG (RFC 8945), through ldns (Debian's libldns-dev): the packet,
 * its TSIG record and the verification of the reply's are ldns's, not a
 * hand-written encoder. One UPDATE a call, over UDP to dcv_server, each
 * with its own ldns resolver (so any number of threads may call at once),
 * a 3 s timeout and one retry. The TSIG secret goes only into that
 * resolver and is never part of a log line or an error text.
 */
#include "dcv/dcv.h"

#include <arpa/inet.h>
#include <assert.h>
#include <ldns/ldns.h>
#include <stdlib.h>
#include <string.h>

#define DNSUPDATE_TIMEOUT_S 3
#define DNSUPDATE_TTL 1 /* the challenge records live seconds */

/* Split "IPv4:port" or "[IPv6]:port" into an address rdf (new) and port. */
static cp_rc server_addr(const char *hostport, ldns_rdf **addr, uint16_t *port)
{
	char host[64];
	const char *colon, *h = hostport;
	size_t n;
	long p;
	char *end;
	bool v6 = false;

	*addr = NULL;
	if (*h == '[') {
		const char *close = strchr(h, ']');
		if (!close || close[1] != ':')
			return CP_ERR_INVALID;
		h++;
		n = (size_t)(close - h);
		colon = close + 1;
		v6 = true;
	} else {
		colon = strrchr(h, ':');
		if (!colon)
			return CP_ERR_INVALID;
		n = (size_t)(colon - h);
	}
	if (n == 0 || n >= sizeof(host))
		return CP_ERR_INVALID;
	memcpy(host, h, n);
	host[n] = '\0';
	p = strtol(colon + 1, &end, 10);
	if (*end || p < 1 || p > 65535)
		return CP_ERR_INVALID;
	*port = (uint16_t)p;
	*addr = ldns_rdf_new_frm_str(v6 ? LDNS_RDF_TYPE_AAAA : LDNS_RDF_TYPE_A, host);
	return *addr ? CP_OK : CP_ERR_INVALID;
}

/* A DNS-01 value is base64url (43 characters); refuse anything else, so
 * nothing in it can be read as zone-file syntax. */
static bool value_ok(const char *v)
{
	size_t n = strlen(v);

	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(v[i] == '-' || v[i] == '_' || (v[i] >= '0' && v[i] <= '9') ||
		      (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z')))
			return false;
	return true;
}

/* The TSIG algorithm's name in ldns's spelling. */
static const char *tsig_alg(const char *cfg_alg)
{
	if (!strcmp(cfg_alg, "hmac-sha384"))
		return "hmac-sha384.";
	if (!strcmp(cfg_alg, "hmac-sha512"))
		return "hmac-sha512.";
	return "hmac-sha256.";
}

/* One UPDATE: add (del false) or delete (del true) TXT value at name. */
static cp_rc txt_update(const struct cp_config *cfg, const char *name, const char *value, bool del)
{
	ldns_resolver *r = NULL;
	ldns_rdf *zone = NULL, *owner = NULL, *addr = NULL, *txt = NULL;
	ldns_rr *rr = NULL;
	ldns_rr_list *up = NULL;
	ldns_pkt *pkt = NULL, *reply = NULL;
	ldns_status st;
	uint16_t port = 0;
	char *keyname = NULL;
	struct timeval tv = { .tv_sec = DNSUPDATE_TIMEOUT_S };
	cp_rc rc = CP_ERR_INVALID;

	assert(cfg && name && value);
	if (!dcv_enabled(cfg) || !value_ok(value))
		return CP_ERR_INVALID;
	zone = ldns_dname_new_frm_str(cfg->dcv_zone);
	owner = ldns_dname_new_frm_str(name);
	if (!zone || !owner || !ldns_dname_is_subdomain(owner, zone) ||
	    server_addr(cfg->dcv_server, &addr, &port) != CP_OK)
		goto out;
	rc = CP_ERR_NOMEM;
	txt = ldns_rdf_new_frm_str(LDNS_RDF_TYPE_STR, value);
	rr = ldns_rr_new();
	up = ldns_rr_list_new();
	r = ldns_resolver_new();
	keyname = cp_aprintf("%s%s", cfg->dcv_tsig_name,
			     cfg->dcv_tsig_name[strlen(cfg->dcv_tsig_name) - 1] == '.' ? "" : ".");
	if (!txt || !rr || !up || !r || !keyname)
		goto out;
	/* RFC 2136 2.5.1 (add to an RRset): class IN, the TTL; 2.5.4 (delete
	 * an RR from an RRset): class NONE, TTL 0. */
	ldns_rr_set_owner(rr, owner);
	owner = NULL;
	ldns_rr_set_type(rr, LDNS_RR_TYPE_TXT);
	ldns_rr_set_class(rr, del ? LDNS_RR_CLASS_NONE : LDNS_RR_CLASS_IN);
	ldns_rr_set_ttl(rr, del ? 0 : DNSUPDATE_TTL);
	if (!ldns_rr_push_rdf(rr, txt))
		goto out;
	txt = NULL;
	if (!ldns_rr_list_push_rr(up, rr))
		goto out;
	rr = NULL;
	/* ldns_update_pkt_new takes zone and copies the list. */
	pkt = ldns_update_pkt_new(zone, LDNS_RR_CLASS_IN, NULL, up, NULL);
	zone = NULL;
	if (!pkt)
		goto out;
	ldns_pkt_set_rd(pkt, false);
	ldns_pkt_set_random_id(pkt);
	if (ldns_resolver_push_nameserver(r, addr) != LDNS_STATUS_OK)
		goto out;
	ldns_resolver_set_port(r, port);
	ldns_resolver_set_timeout(r, tv);
	ldns_resolver_set_retry(r, 2);
	ldns_resolver_set_recursive(r, false);
	ldns_resolver_set_tsig_keyname(r, keyname);
	ldns_resolver_set_tsig_algorithm(r, tsig_alg(cfg->dcv_tsig_algorithm));
	ldns_resolver_set_tsig_keydata(r, cfg->dcv_tsig_secret);
	rc = CP_ERR_UPSTREAM;
	if ((st = ldns_update_pkt_tsig_add(pkt, r)) != LDNS_STATUS_OK) {
		cp_logf(CP_LOG_WARN, "dcv.update", "signing the UPDATE for %s failed: %s", name,
			ldns_get_errorstr_by_id(st));
		rc = CP_ERR_INVALID;
		goto out;
	}
	/* ldns_send verifies the reply's TSIG against the request's MAC
	 * (LDNS_STATUS_CRYPTO_TSIG_BOGUS otherwise). */
	st = ldns_resolver_send_pkt(&reply, r, pkt);
	if (st != LDNS_STATUS_OK || !reply) {
		cp_logf(CP_LOG_WARN, "dcv.update", "UPDATE %s TXT at %s on %s failed: %s",
			del ? "delete" : "add", name, cfg->dcv_server, ldns_get_errorstr_by_id(st));
		goto out;
	}
	if (ldns_pkt_get_rcode(reply) != LDNS_RCODE_NOERROR) {
		char *rcode = ldns_pkt_rcode2str(ldns_pkt_get_rcode(reply));
		cp_logf(CP_LOG_WARN, "dcv.update", "UPDATE %s TXT at %s refused by %s: %s",
			del ? "delete" : "add", name, cfg->dcv_server, rcode ? rcode : "?");
		free(rcode);
		goto out;
	}
	rc = CP_OK;
out:
	ldns_rdf_deep_free(zone);
	ldns_rdf_deep_free(owner);
	ldns_rdf_deep_free(addr);
	ldns_rdf_deep_free(txt);
	ldns_rr_free(rr);
	ldns_rr_list_deep_free(up);
	ldns_pkt_free(pkt);
	ldns_pkt_free(reply);
	ldns_resolver_deep_free(r);
	free(keyname);
	return rc;
}

cp_rc dcv_txt_add(const struct cp_config *cfg, const char *name, const char *value)
{
	return txt_update(cfg, name, value, false);
}

cp_rc dcv_txt_delete(const struct cp_config *cfg, const char *name, const char *value)
{
	return txt_update(cfg, name, value, true);
}
