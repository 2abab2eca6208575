/*
 * fuzz_time.c - libFuzzer target for the time parsers: cp_time_parse
 * (RFC 3339, common/; CA expiry dates, ARI windows, stored timestamps),
 * acme_parse_retry_after (delta-seconds or HTTP-date from a CA header,
 * acme/) and cp_time_fmt on arbitrary 64-bit times.
 *
 * Properties: a parsed time formats and parses back to itself; a canonical
 * "YYYY-MM-DDTHH:MM:SSZ" input (seconds < 60) formats back to the same
 * text, so an impossible date like February 31 cannot be accepted as a
 * different day; Retry-After is never negative nor above its bound; cp_time_fmt always writes
 * 20 characters.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acme/acme.h"
#include "common/common.h"

static bool canonical(const char *s)
{
	static const char shape[] = "dddd-dd-ddTdd:dd:ddZ";

	if (strlen(s) != sizeof(shape) - 1)
		return false;
	for (size_t i = 0; shape[i]; i++)
		if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
			return false;
	return s[17] < '6'; /* a leap second ":60" legitimately formats as the next minute */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1), out[CP_TIME_LEN + 1];
	int64_t t = 0, t2 = 0, secs = -1, raw = 0;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	if (cp_time_parse(s, &t) == CP_OK) {
		cp_time_fmt(t, out);
		if (strlen(out) != CP_TIME_LEN || cp_time_parse(out, &t2) != CP_OK || t2 != t) {
			fprintf(stderr, "\"%s\" -> %lld -> \"%s\" does not round-trip\n", s,
				(long long)t, out);
			abort();
		}
		if (canonical(s) && strcmp(out, s) != 0) {
			fprintf(stderr, "\"%s\" was read as \"%s\"\n", s, out);
			abort();
		}
	}
	/* Never negative, never past the ~100-year bound of its contract. */
	if (acme_parse_retry_after(s, 1767225600, &secs) == CP_OK &&
	    (secs < 0 || secs > 3155760000LL))
		abort();

	/* Any 64-bit value (a corrupt row, a far-future notAfter) formats. */
	memcpy(&raw, data, size < sizeof(raw) ? size : sizeof(raw));
	memset(out, 'x', sizeof(out));
	cp_time_fmt(raw, out);
	if (strlen(out) != CP_TIME_LEN)
		abort();
	free(s);
	return 0;
}
