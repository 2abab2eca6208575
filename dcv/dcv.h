/*
 * dcv.h - DCV delegation (delegated DNS-01, issue 14): a tenant points
 * _acme-challenge.<hostname> once, by CNAME, at <label>.<dcv_zone>, a name
 * in certplane's own zone; certplane then answers the hostname's DNS-01
 * challenges (wildcard included) by writing the TXT record there through
 * RFC 2136 UPDATE signed with TSIG (dnsupdate.c, ldns), and removes it
 * afterwards. The label is HMAC(server secret, tenant || hostname): stable,
 * unguessable, and another tenant's label never matches, so a tenant that
 * points its name at someone else's label gets no delegation. This header
 * is the one home of those rules; used by claims/ (the delegation as proof
 * of ownership), api/ (showing the record) and server/ (the order engine,
 * the cleanup tick).
 */
#ifndef CP_DCV_H
#define CP_DCV_H

#include "common/common.h"
#include "common/config.h"

struct acme_resolver;

/* The record a tenant sets for one hostname. */
struct dcv_record {
	char *record_name; /* "_acme-challenge.<hostname without *.>" (owned) */
	char *target;	   /* "<label>.<dcv_zone>" (owned) */
};

/* True when the feature is configured (dcv_zone set; config.c checked the rest). */
bool dcv_enabled(const struct cp_config *cfg);
/*
 * The delegation record of tenant_id's hostname ("*.x" and "x" share one:
 * both publish at _acme-challenge.x). Fills *out (dcv_record_clear()).
 * CP_ERR_INVALID when the feature is off or a secret is not base64;
 * CP_ERR_NOMEM.
 */
cp_rc dcv_record_of(const struct cp_config *cfg, const char *tenant_id, const char *hostname,
		    struct dcv_record *out) CP_WUR;
/* Free the strings of r and zero it; NULL-safe. */
void dcv_record_clear(struct dcv_record *r);
/*
 * Is tenant_id's delegation of hostname in place: does the CNAME chain of
 * its record_name, through res, reach exactly this tenant's target?
 * *in_place the verdict, *detail (may be NULL) a new sentence saying what
 * the lookup found (caller frees). CP_ERR_UPSTREAM when the lookup failed
 * (*in_place false), dcv_record_of's codes.
 */
cp_rc dcv_check(const struct cp_config *cfg, struct acme_resolver *res, const char *tenant_id,
		const char *hostname, bool *in_place, char **detail) CP_WUR;

/* ---- dnsupdate.c: RFC 2136 UPDATE with TSIG on dcv_server ---- */

/*
 * Add the TXT record value at name (a name inside dcv_zone, TTL 1) on the
 * configured server: one UPDATE signed with the TSIG key, the reply's
 * TSIG verified. Adding a record that exists is a no-op for the server.
 * CP_ERR_INVALID for a name outside the zone or bad settings,
 * CP_ERR_UPSTREAM when the server is unreachable, refuses (REFUSED,
 * NOTAUTH, BADKEY...) or the reply's signature does not verify.
 * The secret appears in no message.
 */
cp_rc dcv_txt_add(const struct cp_config *cfg, const char *name, const char *value) CP_WUR;
/* Remove that one TXT record (RFC 2136 2.5.4, class NONE); codes as above;
 * removing a record that is gone is CP_OK. */
cp_rc dcv_txt_delete(const struct cp_config *cfg, const char *name, const char *value) CP_WUR;

#endif
