/*
 * caa.c - the CAA rule of caa.h: parsing issue/issuewild values (RFC 8659
 * section 4.2, RFC 8657 parameters) and deciding whether one CA may issue
 * for a name given its relevant RRset. No I/O: the records come from the
 * resolver (acme_dns_caa) through the order engine.
 */
#include "caa/caa.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool is_wsp(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_alnum(char c)
{
	return isalnum((unsigned char)c) != 0;
}

/* label *("." label), label = alnum *(*"-" alnum): the length of the name
 * at s (0: none). */
static size_t scan_domain(const char *s, size_t n)
{
	size_t i = 0, end = 0;

	for (;;) {
		if (i >= n || !is_alnum(s[i]))
			return end;
		while (i < n && (is_alnum(s[i]) || s[i] == '-'))
			i++;
		if (s[i - 1] == '-')
			return end; /* a label ends with a letter or digit */
		end = i;
		if (i >= n || s[i] != '.')
			return end;
		i++;
	}
}

/* Copy s[0..n) into out (size cap); false when it does not fit. */
static bool copy_str(char *out, size_t cap, const char *s, size_t n)
{
	if (n >= cap)
		return false;
	memcpy(out, s, n);
	out[n] = '\0';
	return true;
}

bool caa_parse_issuer(const char *value, size_t len, struct caa_issuer *out)
{
	size_t i = 0, d;

	assert(value && out);
	memset(out, 0, sizeof(*out));
	while (i < len && is_wsp(value[i]))
		i++;
	d = scan_domain(value + i, len - i);
	if (d && !copy_str(out->domain, sizeof(out->domain), value + i, d))
		return false;
	i += d;
	while (i < len && is_wsp(value[i]))
		i++;
	if (i == len)
		return true;
	if (value[i] != ';')
		return false;
	i++;
	for (;;) {
		size_t ts, tl, vs;

		while (i < len && is_wsp(value[i]))
			i++;
		if (i == len)
			return true; /* "ca.example;" and "ca.example; " */
		ts = i;
		tl = scan_domain(value + i, len - i); /* tag: a label, no dots */
		if (!tl || memchr(value + ts, '.', tl))
			return false;
		i += tl;
		while (i < len && is_wsp(value[i]))
			i++;
		if (i == len || value[i] != '=')
			return false;
		i++;
		while (i < len && is_wsp(value[i]))
			i++;
		vs = i;
		while (i < len && value[i] >= 0x21 && value[i] <= 0x7e && value[i] != ';')
			i++;
		if (tl == 10 && !strncasecmp(value + ts, "accounturi", 10)) {
			if (!copy_str(out->accounturi, sizeof(out->accounturi), value + vs, i - vs))
				return false;
			out->has_accounturi = true;
		} else if (tl == 17 && !strncasecmp(value + ts, "validationmethods", 17)) {
			if (!copy_str(out->methods, sizeof(out->methods), value + vs, i - vs))
				return false;
			out->has_methods = true;
		}
		while (i < len && is_wsp(value[i]))
			i++;
		if (i == len)
			return true;
		if (value[i] != ';')
			return false;
		i++;
	}
}

/* Whether the comma-separated list has item exactly. */
static bool list_has(const char *list, const char *item)
{
	size_t n = strlen(item);

	for (const char *p = list; *p;) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);

		if (l == n && !strncmp(p, item, n))
			return true;
		if (!e)
			break;
		p = e + 1;
	}
	return false;
}

/* Whether the record value authorizes req's CA. */
static bool issuer_matches(const char *value, const struct caa_request *req)
{
	struct caa_issuer is;
	bool named = false;

	if (!caa_parse_issuer(value, strlen(value), &is) || !is.domain[0])
		return false;
	for (size_t i = 0; req->identities && req->identities[i]; i++)
		if (!strcasecmp(is.domain, req->identities[i]))
			named = true;
	if (!named)
		return false;
	if (is.has_accounturi && (!req->account_uri || strcmp(is.accounturi, req->account_uri)))
		return false;
	if (is.has_methods && (!req->method || !list_has(is.methods, req->method)))
		return false;
	return true;
}

static bool known_tag(const char *tag)
{
	static const char *const tags[] = { "issue",	    "issuewild",    "iodef",
					    "contactemail", "contactphone", NULL };

	for (size_t i = 0; tags[i]; i++)
		if (!strcasecmp(tag, tags[i]))
			return true;
	return false;
}

/* The record as `flags tag "value"` into why. */
static void name_record(const json_t *rec, char *why, size_t why_len)
{
	snprintf(why, why_len, "%d %s \"%.300s\"",
		 (int)json_integer_value(json_object_get(rec, "flags")),
		 json_string_value(json_object_get(rec, "tag")),
		 json_string_value(json_object_get(rec, "value")));
}

bool caa_allows(const json_t *records, const struct caa_request *req, char *why, size_t why_len)
{
	const char *want = "issue";
	bool any = false;
	size_t i, used = 0;
	json_t *rec;

	assert(req && why && why_len);
	why[0] = '\0';
	if (!json_is_array(records) || json_array_size(records) == 0)
		return true;
	json_array_foreach(records, i, rec)
	{
		const char *tag = json_string_value(json_object_get(rec, "tag"));
		int flags = (int)json_integer_value(json_object_get(rec, "flags"));

		if (!tag || !json_string_value(json_object_get(rec, "value")))
			continue;
		if ((flags & CAA_FLAG_CRITICAL) && !known_tag(tag)) {
			name_record(rec, why, why_len);
			return false;
		}
		if (req->wildcard && !strcasecmp(tag, "issuewild"))
			want = "issuewild";
	}
	json_array_foreach(records, i, rec)
	{
		const char *tag = json_string_value(json_object_get(rec, "tag"));
		const char *value = json_string_value(json_object_get(rec, "value"));

		if (!tag || !value || strcasecmp(tag, want))
			continue;
		any = true;
		if (issuer_matches(value, req)) {
			why[0] = '\0';
			return true;
		}
		/* Name the records looked at, "; "-separated, as far as they fit. */
		if (used + 4 < why_len) {
			if (used)
				used += (size_t)snprintf(why + used, why_len - used, "; ");
			if (used < why_len)
				name_record(rec, why + used, why_len - used);
			used = strlen(why);
		}
	}
	if (!any)
		why[0] = '\0';
	return !any;
}
