/*
 * buf.c - the bounded growable buffer of buf.h.
 */
#include "common/buf.h"

#include <assert.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* The first allocation: small enough for a short body, one doubling away
 * from most responses. */
#define BUF_MIN_CAP 256

/* The invariants every function checks on entry and exit. */
static void buf_check(const struct cp_buf *b)
{
	assert(b);
	assert(b->max > 0);
	assert(b->p ? b->len < b->cap : b->len == 0 && b->cap == 0);
	assert(b->len <= b->max);
	assert(!b->p || b->p[b->len] == '\0');
	(void)b;
}

void cp_buf_init(struct cp_buf *b, size_t max)
{
	assert(b);
	assert(max > 0 && max < SIZE_MAX / 2);
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
	b->wipe = false;
	buf_check(b);
}

/* Make room for n more bytes and the NUL. The content is unchanged on
 * failure. */
static cp_rc buf_grow(struct cp_buf *b, size_t n)
{
	size_t need, cap;
	char *np;

	buf_check(b);
	if (n > b->max - b->len)
		return CP_ERR_TOO_LARGE;
	need = b->len + n + 1; /* <= max + 1, cannot overflow (max < SIZE_MAX / 2) */
	if (need <= b->cap)
		return CP_OK;
	cap = b->cap ? b->cap : BUF_MIN_CAP;
	while (cap < need)
		cap *= 2;
	if (cap > b->max + 1)
		cap = b->max + 1; /* never allocate past the cap */
	if (b->wipe) {
		/* Not realloc: the old block holds a secret and is wiped, not
		 * left behind in the heap. */
		np = malloc(cap);
		if (!np)
			return CP_ERR_NOMEM;
		if (b->p) {
			memcpy(np, b->p, b->len + 1);
			OPENSSL_cleanse(b->p, b->cap);
			free(b->p);
		}
	} else {
		np = realloc(b->p, cap);
		if (!np)
			return CP_ERR_NOMEM;
	}
	if (!b->p)
		np[0] = '\0';
	b->p = np;
	b->cap = cap;
	buf_check(b);
	return CP_OK;
}

cp_rc cp_buf_add(struct cp_buf *b, const void *data, size_t n)
{
	cp_rc rc;

	buf_check(b);
	assert(data || n == 0);
	rc = buf_grow(b, n);
	if (rc != CP_OK)
		return rc;
	if (n)
		memcpy(b->p + b->len, data, n);
	b->len += n;
	b->p[b->len] = '\0';
	buf_check(b);
	return CP_OK;
}

cp_rc cp_buf_reserve(struct cp_buf *b, size_t n)
{
	return buf_grow(b, n);
}

cp_rc cp_buf_addc(struct cp_buf *b, char c)
{
	return cp_buf_add(b, &c, 1);
}

cp_rc cp_buf_vaddf(struct cp_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;
	cp_rc rc;

	buf_check(b);
	assert(fmt);
	/* First try in the room there is; measure and grow only when short. */
	va_copy(ap2, ap);
	n = vsnprintf(b->p ? b->p + b->len : NULL, b->p ? b->cap - b->len : 0, fmt, ap);
	if (n < 0) {
		rc = CP_ERR_INVALID;
		goto out;
	}
	if (b->p && (size_t)n < b->cap - b->len) {
		/* cap <= max + 1, so what fits the block fits the cap. */
		b->len += (size_t)n;
		rc = CP_OK;
		goto out;
	}
	if (b->p)
		b->p[b->len] = '\0'; /* drop the truncated tail before growing */
	rc = buf_grow(b, (size_t)n);
	if (rc != CP_OK)
		goto out;
	n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap2);
	if (n < 0 || (size_t)n >= b->cap - b->len) {
		rc = CP_ERR_INVALID; /* the arguments changed under us: refuse */
		goto out;
	}
	b->len += (size_t)n;
out:
	va_end(ap2);
	if (b->p)
		b->p[b->len] = '\0'; /* drop any truncated tail of a failed try */
	buf_check(b);
	return rc;
}

cp_rc cp_buf_addf(struct cp_buf *b, const char *fmt, ...)
{
	va_list ap;
	cp_rc rc;

	va_start(ap, fmt);
	rc = cp_buf_vaddf(b, fmt, ap);
	va_end(ap);
	return rc;
}

const char *cp_buf_str(const struct cp_buf *b)
{
	buf_check(b);
	return b->p ? b->p : "";
}

char *cp_buf_take(struct cp_buf *b, size_t *len)
{
	char *p;

	buf_check(b);
	p = b->p;
	if (len)
		*len = b->len;
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	buf_check(b);
	return p;
}

void cp_buf_reset(struct cp_buf *b)
{
	buf_check(b);
	if (b->p) {
		if (b->wipe)
			OPENSSL_cleanse(b->p, b->cap);
		b->p[0] = '\0';
	}
	b->len = 0;
	buf_check(b);
}

void cp_buf_free(struct cp_buf *b)
{
	if (!b)
		return;
	buf_check(b);
	if (b->p && b->wipe)
		OPENSSL_cleanse(b->p, b->cap);
	free(b->p);
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	buf_check(b);
}

/* ----------------------------------------------------------- JSON writer */

void cp_jw_init(struct cp_jw *w, struct cp_buf *b)
{
	assert(w && b);
	w->b = b;
	w->rc = CP_OK;
}

cp_rc cp_jw_rc(const struct cp_jw *w)
{
	assert(w);
	return w->rc;
}

static void jw_add(struct cp_jw *w, const char *s, size_t n)
{
	struct cp_buf *b = w->b;

	if (w->rc != CP_OK)
		return;
	/* The common case, inline: it fits the block (and so the cap). */
	if (b->p && n < b->cap - b->len) {
		memcpy(b->p + b->len, s, n);
		b->len += n;
		b->p[b->len] = '\0';
		return;
	}
	w->rc = cp_buf_add(b, s, n);
}

/* The ',' before a value or key that follows another one. */
static void jw_sep(struct cp_jw *w)
{
	char last;

	if (w->rc != CP_OK || w->b->len == 0)
		return;
	last = w->b->p[w->b->len - 1];
	if (last != '{' && last != '[' && last != ':')
		jw_add(w, ",", 1);
}

void cp_jw_open(struct cp_jw *w, char c)
{
	assert(c == '{' || c == '[');
	jw_sep(w);
	jw_add(w, &c, 1);
}

void cp_jw_close(struct cp_jw *w, char c)
{
	assert(c == '}' || c == ']');
	jw_add(w, &c, 1);
}

void cp_jw_key(struct cp_jw *w, const char *key)
{
	assert(key);
	jw_sep(w);
	jw_add(w, "\"", 1);
	jw_add(w, key, strlen(key));
	jw_add(w, "\":", 2);
}

/* The length of the UTF-8 sequence at s (< end) if it is valid
 * (cp_utf8_valid's rules, the one definition), else 0. */
static size_t utf8_seq(const char *s, const char *end)
{
	unsigned char c = (unsigned char)*s;
	size_t n = c >= 0xc2 && c <= 0xdf   ? 2
		   : c >= 0xe0 && c <= 0xef ? 3
		   : c >= 0xf0 && c <= 0xf4 ? 4
					    : 0;

	if (!n || (size_t)(end - s) < n || !cp_utf8_valid(s, n))
		return 0;
	return n;
}

void cp_jw_str(struct cp_jw *w, const char *s, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const char *end = s + n, *run;

	if (!s) {
		cp_jw_null(w);
		return;
	}
	jw_sep(w);
	jw_add(w, "\"", 1);
	/* One pass: copy runs that need no escape, validating UTF-8 as it
	 * goes; a NUL or a broken sequence fails the whole value. */
	while (s < end && w->rc == CP_OK) {
		char esc[6] = { '\\', 'u', '0', '0', 0, 0 };
		unsigned char c = 0;

		for (run = s; s < end; s++) {
			size_t k;
			c = (unsigned char)*s;
			if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\')
				continue;
			if (c < 0x80)
				break;
			k = utf8_seq(s, end);
			if (!k)
				break;
			s += k - 1;
		}
		jw_add(w, run, (size_t)(s - run));
		if (s == end)
			break;
		if (c == 0 || c >= 0x80) {
			w->rc = CP_ERR_INVALID;
			return;
		}
		s++;
		esc[1] = c == '"'    ? '"'
			 : c == '\\' ? '\\'
			 : c == '\b' ? 'b'
			 : c == '\f' ? 'f'
			 : c == '\n' ? 'n'
			 : c == '\r' ? 'r'
			 : c == '\t' ? 't'
				     : 'u';
		if (esc[1] != 'u') {
			jw_add(w, esc, 2);
			continue;
		}
		esc[4] = hex[c >> 4];
		esc[5] = hex[c & 15];
		jw_add(w, esc, 6);
	}
	jw_add(w, "\"", 1);
}

void cp_jw_cstr(struct cp_jw *w, const char *s)
{
	cp_jw_str(w, s, s ? strlen(s) : 0);
}

void cp_jw_int(struct cp_jw *w, long long v)
{
	/* By hand, not snprintf: a few per object on the hot read path. */
	char num[24];
	size_t i = sizeof(num);
	unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;

	do {
		num[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u);
	if (v < 0)
		num[--i] = '-';
	jw_sep(w);
	jw_add(w, num + i, sizeof(num) - i);
}

void cp_jw_bool(struct cp_jw *w, bool v)
{
	jw_sep(w);
	jw_add(w, v ? "true" : "false", v ? 4 : 5);
}

void cp_jw_null(struct cp_jw *w)
{
	jw_sep(w);
	jw_add(w, "null", 4);
}

void cp_jw_time(struct cp_jw *w, int64_t t)
{
	char ts[CP_TIME_LEN + 3];

	cp_time_fmt(t, ts + 1);
	ts[0] = '"';
	ts[CP_TIME_LEN + 1] = '"';
	jw_sep(w);
	jw_add(w, ts, CP_TIME_LEN + 2);
}

void cp_jw_raw(struct cp_jw *w, const char *json, size_t n)
{
	if (!json) {
		cp_jw_null(w);
		return;
	}
	jw_sep(w);
	jw_add(w, json, n);
}
