/*
 * time.c - ids and time: random UUIDs, the wall and monotonic clocks, sleep,
 * and RFC 3339 formatting and strict parsing. cp_days_from_civil is the one
 * civil-date conversion of the tree (crypto/x509.c uses it too).
 */
#include "common/common.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>
#include <uuid/uuid.h>

#define UUID_POOL 512 /* 32 ids per DRBG call */

/* Copy 16 fresh random bytes out of this thread's pool into u, refilling
 * it from the DRBG when it runs out; CP_ERR_CRYPTO if the DRBG fails. Each
 * byte is handed out once and then wiped from the pool. */
static cp_rc uuid_pool_take(uint8_t u[16])
{
	static _Thread_local uint8_t pool[UUID_POOL];
	static _Thread_local size_t used = UUID_POOL;

	if (used + 16 > UUID_POOL) {
		if (RAND_bytes(pool, sizeof(pool)) != 1)
			return CP_ERR_CRYPTO;
		used = 0;
	}
	memcpy(u, pool + used, 16);
	memset(pool + used, 0, 16);
	used += 16;
	return CP_OK;
}

void cp_uuid(char out[CP_UUID_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	uint8_t u[16];
	size_t j = 0;

	assert(out);
	/* OpenSSL's DRBG is per thread; libuuid's uuid_generate_random also
	 * cranks libc random() under its global lock on every call, which
	 * serialised the API's threads on the request id alone. The DRBG's
	 * bytes are drawn UUID_POOL at a time into a per-thread pool: a
	 * generate call costs ~1 us whatever its size, and every request takes
	 * an id. Ids are not secrets (tokens and keys use cp_random), and the
	 * process never forks, so no two processes share a pool. */
	if (uuid_pool_take(u) != CP_OK) {
		uuid_t v;
		uuid_generate_random(v);
		uuid_unparse_lower(v, out);
		return;
	}
	u[6] = (uint8_t)((u[6] & 0x0f) | 0x40); /* version 4 */
	u[8] = (uint8_t)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
	for (size_t i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[j++] = '-';
		out[j++] = digits[u[i] >> 4];
		out[j++] = digits[u[i] & 15];
	}
	out[j] = '\0';
}

bool cp_uuid_valid(const char *s)
{
	size_t i;

	if (!s || strlen(s) != CP_UUID_LEN)
		return false;
	for (i = 0; i < CP_UUID_LEN; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
			return false;
		}
	}
	return true;
}

int64_t cp_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec;
}

int64_t cp_mono_ms(void)
{
	return cp_mono_us() / 1000;
}

int64_t cp_mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void cp_sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	if (ms <= 0)
		return;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* Write v (0 <= v < 10^width) as width digits at p. */
static void put_digits(char *p, int64_t v, int width)
{
	assert(v >= 0);
	for (int i = width - 1; i >= 0; i--) {
		p[i] = (char)('0' + v % 10);
		v /= 10;
	}
}

void cp_time_fmt(int64_t t, char out[CP_TIME_LEN + 1])
{
	int64_t z, era, doe, yoe, doy, mp, y, m, d, secs;

	assert(out);

	/* CP_TIME_MIN .. CP_TIME_MAX is what four year digits hold. Clamped, so
	 * a corrupt or far-future value still gives 20 characters. Computed by
	 * hand (Howard Hinnant's civil_from_days, the inverse of
	 * cp_days_from_civil) rather than gmtime_r + snprintf: every response
	 * and log line formats several times, and glibc's gmtime_r takes the
	 * process-wide timezone lock. */
	t = t < CP_TIME_MIN ? CP_TIME_MIN : t > CP_TIME_MAX ? CP_TIME_MAX : t;
	z = (t >= 0 ? t : t - 86399) / 86400; /* floor division: days since 1970 */
	secs = t - z * 86400;
	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	y = yoe + era * 400 + (m <= 2);
	put_digits(out, y, 4);
	out[4] = '-';
	put_digits(out + 5, m, 2);
	out[7] = '-';
	put_digits(out + 8, d, 2);
	out[10] = 'T';
	put_digits(out + 11, secs / 3600, 2);
	out[13] = ':';
	put_digits(out + 14, secs / 60 % 60, 2);
	out[16] = ':';
	put_digits(out + 17, secs % 60, 2);
	out[19] = 'Z';
	out[CP_TIME_LEN] = '\0';
}

/* Howard Hinnant's days_from_civil: portable where timegm() is not C11. */
int64_t cp_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	assert(m >= 1 && m <= 12 && d >= 1 && d <= 31);

	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool parse_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return false;
		v = v * 10 + ((*p)[i] - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/* Days in month mo (1..12) of year y, proleptic Gregorian. */
static int days_in_month(int y, int mo)
{
	static const int days[12] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;

	return mo == 2 && leap ? 29 : days[mo - 1];
}

cp_rc cp_time_parse(const char *s, int64_t *out)
{
	int y, mo, d, h, mi, se, oh = 0, om = 0, sign = 0;
	int64_t t;
	const char *p = s;

	assert(out);
	if (!s)
		return CP_ERR_INVALID;
	if (!parse_digits(&p, 4, &y) || *p++ != '-' || !parse_digits(&p, 2, &mo) || *p++ != '-' ||
	    !parse_digits(&p, 2, &d) || (*p != 'T' && *p != 't'))
		return CP_ERR_INVALID;
	p++;
	if (!parse_digits(&p, 2, &h) || *p++ != ':' || !parse_digits(&p, 2, &mi) || *p++ != ':' ||
	    !parse_digits(&p, 2, &se))
		return CP_ERR_INVALID;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return CP_ERR_INVALID;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '+' ? 1 : -1;
		p++;
		if (!parse_digits(&p, 2, &oh) || *p++ != ':' || !parse_digits(&p, 2, &om))
			return CP_ERR_INVALID;
	} else {
		return CP_ERR_INVALID;
	}
	if (*p || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 ||
	    se > 60 || oh > 23 || om > 59)
		return CP_ERR_INVALID;
	t = cp_days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se -
	    sign * (oh * 3600 + om * 60);
	/* An offset must not carry the instant outside what cp_time_fmt writes. */
	if (t < CP_TIME_MIN || t > CP_TIME_MAX)
		return CP_ERR_INVALID;
	*out = t;
	return CP_OK;
}
