/*
 * dcv.c - the rules of DCV delegation (see dcv.h): the label of a tenant's
 * hostname, the record the tenant sets, and whether it is in place.
 *
 * label = base32 (RFC 4648 alphabet, lower case, no padding) of the first
 * 15 bytes of HMAC-SHA256(K, tenant_id || 0x00 || hostname), 24 characters;
 * hostname is lower-cased without "*." and trailing dot. K is
 * dcv_label_secret (base64) or, when unset, HMAC-SHA256(TSIG secret,
 * "certplane dcv label"), so a deployment needs no second secret; setting
 * dcv_label_secret keeps the labels across a TSIG key rotation.
 */
#include "dcv/dcv.h"
#include "acme/acme.h"
#include "crypto/crypto.h"

#include <assert.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define DCV_LABEL_BYTES 15 /* 120 bits: 24 base32 characters */

bool dcv_enabled(const struct cp_config *cfg)
{
	return cfg && cfg->dcv_zone && cfg->dcv_zone[0];
}

void dcv_record_clear(struct dcv_record *r)
{
	if (!r)
		return;
	free(r->record_name);
	free(r->target);
	r->record_name = r->target = NULL;
}

/* K, the key of the labels (see the head comment), into key. */
static cp_rc label_key(const struct cp_config *cfg, uint8_t key[32])
{
	static const char info[] = "certplane dcv label";
	const char *b64 = cfg->dcv_label_secret[0] ? cfg->dcv_label_secret : cfg->dcv_tsig_secret;
	uint8_t *raw = NULL;
	size_t n = 0;
	cp_rc rc;

	rc = cp_b64_decode(b64, &raw, &n);
	if (rc != CP_OK || n == 0) {
		rc = rc == CP_ERR_NOMEM ? rc : CP_ERR_INVALID;
		goto out;
	}
	if (cfg->dcv_label_secret[0] && n >= 32)
		memcpy(key, raw, 32);
	else
		crypto_hmac_sha256(raw, n, info, sizeof(info) - 1, key);
out:
	crypto_wipe_free_buf(raw, n);
	return rc;
}

/* hostname lower-cased, without "*." and a trailing dot (new string). */
static char *base_name(const char *hostname)
{
	const char *h = cp_hostname_is_wildcard(hostname) ? hostname + 2 : hostname;
	size_t n = strlen(h);
	char *out;

	if (n && h[n - 1] == '.')
		n--;
	out = cp_strndup(h, n);
	for (size_t i = 0; out && out[i]; i++)
		out[i] = (char)tolower((unsigned char)out[i]);
	return out;
}

cp_rc dcv_record_of(const struct cp_config *cfg, const char *tenant_id, const char *hostname,
		    struct dcv_record *out)
{
	static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";
	uint8_t key[32], mac[32];
	char label[DCV_LABEL_BYTES * 8 / 5 + 1], *base = NULL, *zone = NULL, *msg = NULL;
	size_t bits = 0, j = 0, mlen;
	uint32_t acc = 0;
	cp_rc rc;

	assert(cfg && tenant_id && hostname && out);
	out->record_name = out->target = NULL;
	if (!dcv_enabled(cfg))
		return CP_ERR_INVALID;
	if ((rc = label_key(cfg, key)) != CP_OK)
		return rc;
	rc = CP_ERR_NOMEM;
	base = base_name(hostname);
	zone = base_name(cfg->dcv_zone);
	mlen = strlen(tenant_id) + 1 + (base ? strlen(base) : 0);
	msg = malloc(mlen + 1);
	if (!base || !zone || !msg)
		goto out;
	memcpy(msg, tenant_id, strlen(tenant_id) + 1); /* the NUL is the separator */
	memcpy(msg + strlen(tenant_id) + 1, base, strlen(base) + 1);
	crypto_hmac_sha256(key, sizeof(key), msg, mlen, mac);
	for (size_t i = 0; i < DCV_LABEL_BYTES; i++) {
		acc = (acc << 8) | mac[i];
		bits += 8;
		while (bits >= 5) {
			label[j++] = b32[(acc >> (bits - 5)) & 31];
			bits -= 5;
		}
	}
	assert(bits == 0 && j == sizeof(label) - 1);
	label[j] = '\0';
	out->record_name = cp_aprintf("_acme-challenge.%s", base);
	out->target = cp_aprintf("%s.%s", label, zone);
	if (!out->record_name || !out->target) {
		dcv_record_clear(out);
		goto out;
	}
	rc = CP_OK;
out:
	crypto_wipe(key, sizeof(key));
	free(base);
	free(zone);
	free(msg);
	return rc;
}

cp_rc dcv_check(const struct cp_config *cfg, struct acme_resolver *res, const char *tenant_id,
		const char *hostname, bool *in_place, char **detail)
{
	struct dcv_record r = { 0 };
	json_t *check = NULL;
	cp_rc rc;

	assert(res && in_place);
	*in_place = false;
	if (detail)
		*detail = NULL;
	rc = dcv_record_of(cfg, tenant_id, hostname, &r);
	if (rc != CP_OK)
		return rc;
	/* The hostname check walks the CNAME chain hop by hop and says
	 * whether it reaches the name given as the "edge": our target. */
	rc = acme_check_hostname(res, r.record_name, r.target, &check);
	if (rc == CP_OK || rc == CP_ERR_UPSTREAM) {
		*in_place = rc == CP_OK && json_is_true(json_object_get(check, "points_to_edge"));
		if (detail && cp_json_str(check, "detail"))
			*detail = cp_strdup(cp_json_str(check, "detail"));
	}
	json_decref(check);
	dcv_record_clear(&r);
	return rc;
}
