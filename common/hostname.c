/*
 * hostname.c - the hostname policy: which DNS names certplane accepts for
 * properties, claims and certificates (the one place that rule lives).
 */
#include "common/common.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

bool cp_hostname_is_wildcard(const char *name)
{
	return name && name[0] == '*' && name[1] == '.';
}

bool cp_hostname_covering_wildcard(const char *name, char *out, size_t cap)
{
	const char *dot = name ? strchr(name, '.') : NULL;
	int n;

	assert(out && cap > 0);
	out[0] = '\0';
	if (!dot || cp_hostname_is_wildcard(name) || !dot[1])
		return false;
	n = snprintf(out, cap, "*.%s", dot + 1);
	if (n < 0 || (size_t)n >= cap) {
		out[0] = '\0';
		return false;
	}
	return true;
}

bool cp_hostname_valid(const char *name, bool allow_wildcard, const char **why)
{
	const char *p, *label;
	size_t len, labels = 0;
	bool tld_numeric = true;

	assert(why);
	*why = NULL;
	if (!name || !*name) {
		*why = "must not be empty";
		return false;
	}
	len = strlen(name);
	if (len > CP_HOSTNAME_MAX) {
		*why = "must be at most 253 characters";
		return false;
	}
	p = name;
	if (cp_hostname_is_wildcard(name)) {
		if (!allow_wildcard) {
			*why = "wildcard hostnames are not allowed here";
			return false;
		}
		p += 2;
	}
	while (*p) {
		size_t n = 0;
		label = p;
		tld_numeric = true;
		while (*p && *p != '.') {
			char c = *p;
			if (c >= 'A' && c <= 'Z') {
				*why = "must be lowercase";
				return false;
			}
			if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) {
				*why = "may contain only letters, digits, hyphens and dots (IDN as punycode)";
				return false;
			}
			if (c < '0' || c > '9')
				tld_numeric = false;
			p++;
			n++;
		}
		if (n == 0) {
			*why = "has an empty label";
			return false;
		}
		if (n > 63) {
			*why = "has a label longer than 63 characters";
			return false;
		}
		if (label[0] == '-' || label[n - 1] == '-') {
			*why = "has a label that starts or ends with a hyphen";
			return false;
		}
		if (n >= 4 && label[2] == '-' && label[3] == '-' &&
		    !(label[0] == 'x' && label[1] == 'n')) {
			*why = "has a label with '--' in positions 3-4 that is not punycode (xn--)";
			return false;
		}
		labels++;
		if (*p == '.') {
			p++;
			if (!*p) {
				*why = "must not end with a dot";
				return false;
			}
		}
	}
	if (labels < 2) {
		*why = "must be a fully qualified name with at least two labels";
		return false;
	}
	if (tld_numeric) {
		*why = "must not have an all-numeric top-level label";
		return false;
	}
	return true;
}

/* Bytes of a local part (RFC 5321 4.5.3.1.1) and of an address (RFC 5321
 * 4.5.3.1.3 allows 256 in a path, less its angle brackets). */
#define EMAIL_LOCAL_MAX 64
#define EMAIL_MAX 254

/* RFC 5322 atext: the bytes of a dot-atom local part besides '.'. */
static bool email_atext(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

bool cp_email_valid(const char *addr, const char **why)
{
	const char *at, *p;
	size_t local;

	assert(why);
	*why = NULL;
	if (!addr || !*addr || strlen(addr) > EMAIL_MAX) {
		*why = "must be an email address of at most 254 bytes";
		return false;
	}
	at = strchr(addr, '@');
	if (!at || strchr(at + 1, '@')) {
		*why = "must be one local part, '@' and a domain";
		return false;
	}
	local = (size_t)(at - addr);
	if (local == 0 || local > EMAIL_LOCAL_MAX) {
		*why = "must have a local part of 1 to 64 bytes";
		return false;
	}
	/* A dot-atom: no quoted strings, no spaces, no CR or LF, no '<' '>'
	 * (the address goes into MAIL, RCPT and the To header as it is). */
	for (p = addr; p < at; p++) {
		if (*p == '.' ? p == addr || p + 1 == at || p[1] == '.' : !email_atext(*p)) {
			*why = "has a local part that is not a dot-atom (letters, digits, "
			       "!#$%&'*+-/=?^_`{|}~ and single inner dots)";
			return false;
		}
	}
	if (!cp_hostname_valid(at + 1, false, why)) {
		*why = "must have a domain that is a lowercase, fully qualified hostname";
		return false;
	}
	return true;
}
