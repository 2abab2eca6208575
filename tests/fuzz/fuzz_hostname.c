/*
 * fuzz_hostname.c - libFuzzer target for cp_hostname_valid (common/), the
 * validator every hostname from a tenant goes through (certificates,
 * properties, edge hostnames, orders).
 *
 * Differential: the input is also judged by a slow, obviously-correct
 * reference written from the contract in common.h; any disagreement, a
 * "valid" name breaking an invariant, or a refusal without a reason aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"

/* The contract of cp_hostname_valid, label by label, without cleverness. */
static bool reference(const char *s, bool allow_wildcard)
{
	size_t len = strlen(s), labels = 0, start;
	bool numeric = true;

	if (len == 0 || len > CP_HOSTNAME_MAX)
		return false;
	if (s[0] == '*' && s[1] == '.') {
		if (!allow_wildcard)
			return false;
		s += 2;
		len -= 2;
	}
	start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && s[i] != '.')
			continue;
		size_t n = i - start;
		const char *l = s + start;

		if (n == 0 || n > 63 || l[0] == '-' || l[n - 1] == '-')
			return false;
		numeric = true;
		for (size_t j = 0; j < n; j++) {
			char c = l[j];
			if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'))
				return false;
			if (c < '0' || c > '9')
				numeric = false;
		}
		if (n >= 4 && l[2] == '-' && l[3] == '-' && !(l[0] == 'x' && l[1] == 'n'))
			return false;
		labels++;
		start = i + 1;
	}
	return labels >= 2 && !numeric;
}

static void check(const char *s, bool wild)
{
	const char *why = (const char *)1;
	bool ok = cp_hostname_valid(s, wild, &why);

	if (ok != reference(s, wild)) {
		fprintf(stderr, "hostname \"%s\" (wildcard %d): validator %d, reference %d\n", s,
			wild, ok, !ok);
		abort();
	}
	if (ok ? why != NULL : (why == NULL || !*why))
		abort(); /* a refusal always says why; an acceptance never does */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0'; /* embedded NULs just end the name early, as in C callers */
	check(s, false);
	check(s, true);
	if (cp_hostname_valid(s, false, &(const char *){ NULL }) && cp_hostname_is_wildcard(s))
		abort(); /* "*.x" is never valid without allow_wildcard */
	free(s);
	return 0;
}
