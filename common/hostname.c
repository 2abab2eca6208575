/*
 * hostname.c - the hostname policy: which DNS names certplane accepts for
 * properties, claims and certificates (the one place that rule lives).
 */
#include "common/common.h"

#include <assert.h>
#include <string.h>

bool cp_hostname_is_wildcard(const char *name)
{
	return name && name[0] == '*' && name[1] == '.';
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
