/*
 * common.c - result names, JSON-line logging, ids, time, randomness and the
 * small encoding and file helpers every module uses. Kept free of any
 * knowledge of HTTP, SQL or ACME so that it can be unit-tested on its own.
 */
#include "common/common.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <uuid/uuid.h>

const char *cp_rc_str(cp_rc rc)
{
	static const char *const names[] = {
		[CP_OK] = "ok",
		[CP_ERR_INVALID] = "invalid",
		[CP_ERR_NOT_FOUND] = "not_found",
		[CP_ERR_CONFLICT] = "conflict",
		[CP_ERR_BUSY] = "busy",
		[CP_ERR_UPSTREAM] = "upstream",
		[CP_ERR_NOMEM] = "nomem",
		[CP_ERR_IO] = "io",
		[CP_ERR_TOO_LARGE] = "too_large",
		[CP_ERR_UNAUTHORIZED] = "unauthorized",
		[CP_ERR_RATE_LIMITED] = "rate_limited",
		[CP_ERR_CRYPTO] = "crypto",
		[CP_ERR_INTERNAL] = "internal",
	};
	if ((unsigned)rc >= CP_ARRAY_LEN(names) || !names[rc])
		return "unknown";
	return names[rc];
}

/* ---------------------------------------------------------------- logging */

static enum cp_log_level log_min = CP_LOG_INFO;
/* Serialises the rare line that one write() could not take whole. */
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

/* Write text + "\n" to stderr. One write(2) per line: the kernel keeps
 * concurrent writes of whole lines apart (pipes up to PIPE_BUF, files and
 * journald streams in practice), so the request log on the hot path takes
 * no lock and no stdio flush; only a partial write falls back to the lock. */
static void log_write_line(const char *text)
{
	char stackbuf[2048], *buf = stackbuf;
	size_t len = strlen(text), off = 0;
	ssize_t n;

	if (len + 1 > sizeof(stackbuf)) {
		buf = malloc(len + 1);
		if (!buf)
			return;
	}
	memcpy(buf, text, len);
	buf[len++] = '\n';
	n = write(STDERR_FILENO, buf, len);
	if (n >= 0 && (size_t)n < len) {
		off = (size_t)n;
		pthread_mutex_lock(&log_lock);
		while (off < len) {
			n = write(STDERR_FILENO, buf + off, len - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				break;
			off += (size_t)n;
		}
		pthread_mutex_unlock(&log_lock);
	}
	if (buf != stackbuf)
		free(buf);
}

void cp_log_set_level(enum cp_log_level level)
{
	log_min = level;
}

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void cp_log_json(enum cp_log_level level, const char *event, json_t *fields)
{
	char ts[CP_TIME_LEN + 1];
	json_t *line = NULL;
	char *text = NULL;

	assert(level >= CP_LOG_DEBUG && level <= CP_LOG_ERROR && event);
	if (level < log_min)
		goto out;
	line = json_object();
	if (!line)
		goto out;
	cp_time_fmt(cp_now(), ts);
	json_object_set_new(line, "ts", json_string(ts));
	json_object_set_new(line, "level", json_string(level_names[level]));
	json_object_set_new(line, "event", json_string(event));
	if (json_is_object(fields))
		json_object_update(line, fields);
	text = json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (!text)
		goto out;
	log_write_line(text);
out:
	free(text);
	json_decref(line);
	json_decref(fields);
}

/*
 * Append raw bytes. 16 bytes stay reserved for the end of the line; a chunk
 * that does not fit cuts the line: the field being written is taken back
 * whole (see the cp_logline_* functions) and nothing more is appended, so
 * the line stays valid JSON.
 */
static void line_raw(struct cp_logline *l, const char *s, size_t n)
{
	if (l->cut || n > sizeof(l->buf) - 16 - l->len) {
		l->cut = true;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void line_escaped(struct cp_logline *l, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	char esc[6] = { '\\', 'u', '0', '0', 0, 0 };

	line_raw(l, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		const unsigned char *run = p;
		while (*p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\')
			p++;
		line_raw(l, (const char *)run, (size_t)(p - run));
		if (!*p)
			break;
		if (*p == '"' || *p == '\\') {
			char two[2] = { '\\', (char)*p };
			line_raw(l, two, 2);
		} else {
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 15];
			line_raw(l, esc, 6);
		}
	}
	line_raw(l, "\"", 1);
}

static void line_key(struct cp_logline *l, const char *key)
{
	line_raw(l, ",", 1);
	line_escaped(l, key);
	line_raw(l, ":", 1);
}

void cp_logline_begin(struct cp_logline *l, enum cp_log_level level, const char *event)
{
	char ts[CP_TIME_LEN + 1];

	assert(l && level >= CP_LOG_DEBUG && level <= CP_LOG_ERROR && event);
	l->len = 0;
	l->cut = false;
	l->on = level >= log_min;
	if (!l->on)
		return;
	cp_time_fmt(cp_now(), ts);
	line_raw(l, "{\"ts\":\"", 7);
	line_raw(l, ts, strlen(ts));
	line_raw(l, "\",\"level\":\"", 11);
	line_raw(l, level_names[level], strlen(level_names[level]));
	line_raw(l, "\"", 1);
	cp_logline_str(l, "event", event);
}

/* A field is all or nothing: take back a half-written one. */
static void line_field_done(struct cp_logline *l, size_t start)
{
	if (l->cut)
		l->len = start;
}

void cp_logline_str(struct cp_logline *l, const char *key, const char *val)
{
	size_t start;

	assert(l && key && l->len <= sizeof(l->buf) - 16);
	if (!l->on)
		return;
	start = l->len;
	line_key(l, key);
	if (val)
		line_escaped(l, val);
	else
		line_raw(l, "null", 4);
	line_field_done(l, start);
}

void cp_logline_int(struct cp_logline *l, const char *key, long long val)
{
	char num[24];

	assert(l && key && l->len <= sizeof(l->buf) - 16);
	if (!l->on)
		return;
	size_t start = l->len;

	line_key(l, key);
	line_raw(l, num, (size_t)snprintf(num, sizeof(num), "%lld", val));
	line_field_done(l, start);
}

void cp_logline_num(struct cp_logline *l, const char *key, double val)
{
	char num[32];

	assert(l && key && l->len <= sizeof(l->buf) - 16);
	if (!l->on)
		return;
	size_t start = l->len;

	line_key(l, key);
	line_raw(l, num, (size_t)snprintf(num, sizeof(num), "%.3f", val));
	line_field_done(l, start);
}

void cp_logline_end(struct cp_logline *l)
{
	assert(l && l->len <= sizeof(l->buf) - 16);

	if (!l->on)
		return;
	if (l->cut) {
		/* end the object validly and say that it was cut */
		memcpy(l->buf + l->len, ",\"cut\":true", 11);
		l->len += 11;
	}
	l->buf[l->len++] = '}';
	l->buf[l->len] = '\0';
	log_write_line(l->buf);
}

void cp_logf(enum cp_log_level level, const char *event, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	assert(level >= CP_LOG_DEBUG && level <= CP_LOG_ERROR && event && fmt);
	if (level < log_min)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	cp_log_json(level, event, json_pack("{s:s}", "msg", msg));
}

/* ------------------------------------------------------ ids, time, random */

void cp_uuid(char out[CP_UUID_LEN + 1])
{
	static const char digits[] = "0123456789abcdef";
	uint8_t u[16];
	size_t j = 0;

	assert(out);
	/* OpenSSL's DRBG is per thread; libuuid's uuid_generate_random also
	 * cranks libc random() under its global lock on every call, which
	 * serialised the API's threads on the request id alone. */
	if (RAND_bytes(u, sizeof(u)) != 1) {
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
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cp_sleep_ms(int64_t ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };

	if (ms <= 0)
		return;
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void cp_time_fmt(int64_t t, char out[CP_TIME_LEN + 1])
{
	assert(out);

	/* CP_TIME_MIN .. CP_TIME_MAX is what four year digits hold. Clamped, so
	 * a corrupt or far-future value still gives 20 characters (gmtime_r
	 * fails past int years, strftime's %Y does not pad). */
	time_t tt = (time_t)(t < CP_TIME_MIN ? CP_TIME_MIN : t > CP_TIME_MAX ? CP_TIME_MAX : t);
	struct tm tm;
	char buf[80]; /* room for any int fields, so the compiler sees no truncation */

	if (!gmtime_r(&tt, &tm))
		memset(&tm, 0, sizeof(tm));
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
	memcpy(out, buf, CP_TIME_LEN);
	out[CP_TIME_LEN] = '\0';
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
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
	t = days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + se -
	    sign * (oh * 3600 + om * 60);
	/* An offset must not carry the instant outside what cp_time_fmt writes. */
	if (t < CP_TIME_MIN || t > CP_TIME_MAX)
		return CP_ERR_INVALID;
	*out = t;
	return CP_OK;
}

cp_rc cp_random(void *buf, size_t n)
{
	assert((buf || n == 0) && n <= INT_MAX);

	return RAND_bytes(buf, (int)n) == 1 ? CP_OK : CP_ERR_CRYPTO;
}

uint64_t cp_random_below(uint64_t bound)
{
	uint64_t v = 0, limit;

	if (bound <= 1)
		return 0;
	/* Rejection sampling keeps the distribution uniform. */
	limit = UINT64_MAX - UINT64_MAX % bound;
	do {
		if (cp_random(&v, sizeof(v)) != CP_OK)
			v = (uint64_t)cp_mono_ms() * 2654435761u;
	} while (v >= limit);
	return v % bound;
}

/* -------------------------------------------------------------- encodings */

void cp_hex(const uint8_t *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	assert((in || n == 0) && out);
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

void cp_sha256_hex(const void *data, size_t n, char out[65])
{
	uint8_t md[SHA256_DIGEST_LENGTH];

	assert((data || n == 0) && out);
	SHA256(data, n, md);
	cp_hex(md, sizeof(md), out);
}

char *cp_b64(const uint8_t *in, size_t n)
{
	size_t cap = 4 * ((n + 2) / 3) + 1;
	char *out = malloc(cap);

	assert((in || n == 0) && n <= (size_t)INT_MAX / 4 * 3);
	if (!out)
		return NULL;
	EVP_EncodeBlock((unsigned char *)out, in, (int)n);
	return out;
}

char *cp_b64url(const uint8_t *in, size_t n)
{
	char *out = cp_b64(in, n);
	size_t len;

	if (!out)
		return NULL;
	len = strlen(out);
	while (len > 0 && out[len - 1] == '=')
		out[--len] = '\0';
	for (size_t i = 0; i < len; i++) {
		if (out[i] == '+')
			out[i] = '-';
		else if (out[i] == '/')
			out[i] = '_';
	}
	return out;
}

cp_rc cp_b64_decode(const char *in, uint8_t **out, size_t *outlen)
{
	size_t len, pad = 0;
	uint8_t *buf = NULL;
	int n;

	assert(in && out && outlen);
	len = strlen(in);
	if (len % 4 != 0)
		return CP_ERR_INVALID;
	buf = malloc(len / 4 * 3 + 1);
	if (!buf)
		return CP_ERR_NOMEM;
	n = EVP_DecodeBlock(buf, (const unsigned char *)in, (int)len);
	if (n < 0) {
		free(buf);
		return CP_ERR_INVALID;
	}
	/* EVP_DecodeBlock counts padding as zero bytes; take them back off. */
	while (pad < 2 && len > pad && in[len - 1 - pad] == '=')
		pad++;
	*out = buf;
	*outlen = (size_t)n - pad;
	return CP_OK;
}

cp_rc cp_b64url_decode(const char *in, uint8_t **out, size_t *outlen)
{
	size_t len;
	char *tmp = NULL;
	cp_rc rc;

	assert(in && out && outlen);
	len = strlen(in);
	tmp = malloc(len + 4);
	if (!tmp)
		return CP_ERR_NOMEM;
	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		if (c == '-')
			c = '+';
		else if (c == '_')
			c = '/';
		else if (c == '+' || c == '/')
			c = '!'; /* not part of the url alphabet */
		tmp[i] = c;
	}
	while (len % 4)
		tmp[len++] = '=';
	tmp[len] = '\0';
	rc = cp_b64_decode(tmp, out, outlen);
	free(tmp);
	return rc;
}

char *cp_strdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

char *cp_strndup(const char *s, size_t n)
{
	return s ? strndup(s, n) : NULL;
}

char *cp_aprintf(const char *fmt, ...)
{
	va_list ap;
	char *out = NULL;
	int n;

	assert(fmt);
	va_start(ap, fmt);
	n = vasprintf(&out, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : out;
}

bool cp_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;

	assert(s || len == 0);
	while (p < end) {
		unsigned c = *p, need;
		uint32_t cp;
		if (c == 0)
			return false;
		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if ((size_t)(end - p) <= need)
			return false;
		for (unsigned i = 1; i <= need; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		/* overlong, surrogate and out-of-range forms */
		if ((need == 2 && cp < 0x800) || (need == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		p += need + 1;
	}
	return true;
}

cp_rc cp_file_read(const char *path, size_t max, char **out, size_t *len)
{
	struct stat st;
	FILE *f = NULL;
	char *buf = NULL;
	size_t n = 0, cap = 4096;
	cp_rc rc = CP_ERR_IO;
	int fd;

	assert(path && max > 0 && out && len);
	/* O_NONBLOCK: a FIFO in the file's place must not hang the open; the
	 * fstat below then refuses anything but a regular file. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return errno == ENOENT ? CP_ERR_NOT_FOUND : CP_ERR_IO;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0 || !(f = fdopen(fd, "rb"))) {
		close(fd);
		goto out;
	}
	buf = malloc(cap + 1);
	if (!buf) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	for (;;) {
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (n > max) {
			rc = CP_ERR_TOO_LARGE;
			goto out;
		}
		if (got == 0)
			break;
		if (n == cap) {
			char *nb = realloc(buf, cap * 2 + 1);
			if (!nb) {
				rc = CP_ERR_NOMEM;
				goto out;
			}
			buf = nb;
			cap *= 2;
		}
	}
	if (ferror(f))
		goto out;
	buf[n] = '\0';
	*out = buf;
	buf = NULL;
	if (len)
		*len = n;
	rc = CP_OK;
out:
	if (f)
		fclose(f);
	/* The caller may read a secret (operator token): wipe what we drop. */
	if (buf) {
		OPENSSL_cleanse(buf, cap + 1);
		free(buf);
	}
	return rc;
}

/*
 * Write a new private temporary file next to path and return its fd; *tmp is
 * its new name (caller frees). The name is random and the file is created
 * with O_EXCL | O_NOFOLLOW, so nothing planted in the directory (a symlink,
 * a file of another user) is ever opened or truncated: an existing name is
 * skipped, as mkstemp() does. -1 on failure (*tmp NULL).
 */
static int tmp_create(const char *path, int mode, char **tmp)
{
	uint8_t rnd[8];
	char hex[17];
	int fd = -1;

	*tmp = NULL;
	for (int tries = 0; fd < 0 && tries < 16; tries++) {
		if (cp_random(rnd, sizeof(rnd)) != CP_OK)
			return -1;
		cp_hex(rnd, sizeof(rnd), hex);
		free(*tmp);
		*tmp = cp_aprintf("%s.tmp.%s", path, hex);
		if (!*tmp)
			return -1;
		fd = open(*tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		free(*tmp);
		*tmp = NULL;
	}
	return fd;
}

/* fsync the directory holding path, so that a rename into it is durable. */
static cp_rc dir_sync(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? cp_strndup(path, slash == path ? 1 : (size_t)(slash - path))
			  : cp_strdup(".");
	int fd;
	cp_rc rc = CP_ERR_IO;

	if (!dir)
		return CP_ERR_NOMEM;
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		if (fsync(fd) == 0)
			rc = CP_OK;
		close(fd);
	}
	free(dir);
	return rc;
}

cp_rc cp_file_write(const char *path, const void *data, size_t len, int mode)
{
	const char *p = data;
	char *tmp = NULL;
	int fd;
	bool renamed = false;
	cp_rc rc = CP_ERR_IO;

	assert(path && (data || len == 0));
	fd = tmp_create(path, mode, &tmp);
	if (fd < 0)
		goto out;
	/* Explicit mode: the umask may only have narrowed it. */
	if (fchmod(fd, (mode_t)mode) != 0)
		goto out;
	for (size_t off = 0; off < len;) {
		ssize_t put = write(fd, p + off, len - off);
		if (put < 0 && errno == EINTR)
			continue;
		if (put <= 0)
			goto out;
		off += (size_t)put;
	}
	if (fsync(fd) != 0)
		goto out;
	if (close(fd) != 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto out;
	renamed = true;
	rc = dir_sync(path);
out:
	if (fd >= 0)
		close(fd);
	if (tmp && !renamed)
		unlink(tmp);
	free(tmp);
	return rc;
}

/* -------------------------------------------------------------- hostnames */

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

/* ------------------------------------------------------------- JSON spec */

/* Unknown fields named one by one before a single summary error. */
#define CP_SPEC_UNKNOWN_MAX 20

void cp_spec_error(json_t *errors, const char *field, const char *msg)
{
	assert(errors && field && msg);

	json_array_append_new(errors, json_pack("{s:s,s:s}", "field", field, "message", msg));
}

static bool spec_known(const struct cp_spec *spec, const char *key)
{
	for (const struct cp_spec *s = spec; s->type != CP_SPEC_END; s++)
		if (strcmp(s->name, key) == 0)
			return true;
	return false;
}

/* Check one present, non-null value against its spec entry and store it. */
static void spec_field(const struct cp_spec *s, json_t *v, json_t *errors)
{
	char msg[160];

	switch (s->type) {
	case CP_SPEC_STRING: {
		size_t len;
		if (!json_is_string(v)) {
			cp_spec_error(errors, s->name, "must be a string");
			return;
		}
		len = json_string_length(v);
		if (strlen(json_string_value(v)) != len) {
			cp_spec_error(errors, s->name, "must not contain NUL characters");
			return;
		}
		if ((json_int_t)len < s->min || (s->max > 0 && (json_int_t)len > s->max)) {
			snprintf(msg, sizeof(msg), "must be %lld to %lld characters long",
				 (long long)s->min, (long long)s->max);
			cp_spec_error(errors, s->name, msg);
			return;
		}
		*(const char **)s->out = json_string_value(v);
		break;
	}
	case CP_SPEC_BOOL:
		if (!json_is_boolean(v)) {
			cp_spec_error(errors, s->name, "must be true or false");
			return;
		}
		*(int *)s->out = json_is_true(v);
		break;
	case CP_SPEC_INT:
		if (!json_is_integer(v) || json_integer_value(v) < s->min ||
		    json_integer_value(v) > s->max) {
			snprintf(msg, sizeof(msg), "must be an integer from %lld to %lld",
				 (long long)s->min, (long long)s->max);
			cp_spec_error(errors, s->name, msg);
			return;
		}
		*(json_int_t *)s->out = json_integer_value(v);
		break;
	case CP_SPEC_ENUM: {
		size_t off = 0;
		if (json_is_string(v)) {
			for (const char *const *c = s->choices; *c; c++) {
				if (strcmp(*c, json_string_value(v)) == 0) {
					*(const char **)s->out = *c;
					return;
				}
			}
		}
		off += (size_t)snprintf(msg, sizeof(msg), "must be one of:");
		for (const char *const *c = s->choices; *c && off < sizeof(msg); c++)
			off += (size_t)snprintf(msg + off, sizeof(msg) - off, "%s \"%s\"",
						c == s->choices ? "" : ",", *c);
		cp_spec_error(errors, s->name, msg);
		break;
	}
	case CP_SPEC_ARRAY:
		if (!json_is_array(v)) {
			cp_spec_error(errors, s->name, "must be an array");
			return;
		}
		if ((json_int_t)json_array_size(v) > s->max) {
			snprintf(msg, sizeof(msg), "must have at most %lld items",
				 (long long)s->max);
			cp_spec_error(errors, s->name, msg);
			return;
		}
		*(json_t **)s->out = v;
		break;
	case CP_SPEC_OBJECT: {
		char *enc;
		size_t elen;
		if (!json_is_object(v)) {
			cp_spec_error(errors, s->name, "must be an object");
			return;
		}
		enc = json_dumps(v, JSON_COMPACT);
		elen = enc ? strlen(enc) : 0;
		free(enc);
		if (s->max > 0 && (json_int_t)elen > s->max) {
			snprintf(msg, sizeof(msg), "must encode to at most %lld bytes",
				 (long long)s->max);
			cp_spec_error(errors, s->name, msg);
			return;
		}
		*(json_t **)s->out = v;
		break;
	}
	case CP_SPEC_ANY:
		*(json_t **)s->out = v;
		break;
	case CP_SPEC_END:
		break;
	}
}

cp_rc cp_spec_parse(json_t *body, const struct cp_spec *spec, json_t *errors)
{
	size_t before = json_array_size(errors), unknown = 0;
	const char *key;
	json_t *v;

	assert(spec && errors);
	if (!json_is_object(body)) {
		cp_spec_error(errors, "body", "must be a JSON object");
		return CP_ERR_INVALID;
	}
	json_object_foreach(body, key, v)
	{
		if (spec_known(spec, key))
			continue;
		/* Name a few, then stop: a body of a million unknown keys must
		 * not become a response of a million errors. */
		if (unknown++ == CP_SPEC_UNKNOWN_MAX) {
			cp_spec_error(errors, "body", "has more unknown fields than these");
			break;
		}
		cp_spec_error(errors, key, "is not a known field");
	}
	for (const struct cp_spec *s = spec; s->type != CP_SPEC_END; s++) {
		v = json_object_get(body, s->name);
		if (!v || json_is_null(v)) {
			if (s->required)
				cp_spec_error(errors, s->name, "is required");
			continue;
		}
		if (s->present)
			*s->present = true;
		spec_field(s, v, errors);
	}
	return json_array_size(errors) == before ? CP_OK : CP_ERR_INVALID;
}

/* ---------------------------------------------------------------- wake-ups */

static pthread_mutex_t kick_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t kick_cond = PTHREAD_COND_INITIALIZER;
static uint64_t kick_gen;

void cp_kick(void)
{
	pthread_mutex_lock(&kick_lock);
	kick_gen++;
	pthread_cond_broadcast(&kick_cond);
	pthread_mutex_unlock(&kick_lock);
}

void cp_kick_wait(int ms)
{
	struct timespec until;
	uint64_t gen;

	assert(ms >= 0);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&kick_lock);
	gen = kick_gen;
	while (gen == kick_gen)
		if (pthread_cond_timedwait(&kick_cond, &kick_lock, &until) != 0)
			break;
	pthread_mutex_unlock(&kick_lock);
}

const char *cp_json_str(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

int64_t cp_json_int(const json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}
