/*
 * log.c - JSON-line logging on stderr: cp_log_json for structured events,
 * cp_logf for a formatted message, and the in-place cp_logline builder for
 * the hot path (one line per request, no allocation).
 */
#include "common/common.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	if (val >= 0 && val < 1e12) {
		/* "%.3f" by hand: this runs once a request (duration_ms), and
		 * snprintf's float path was ~2% of a cached GET. */
		uint64_t v = (uint64_t)(val * 1000.0 + 0.5);
		char *p = num + sizeof(num);
		*--p = (char)('0' + v % 10);
		*--p = (char)('0' + v / 10 % 10);
		*--p = (char)('0' + v / 100 % 10);
		*--p = '.';
		v /= 1000;
		do
			*--p = (char)('0' + v % 10);
		while (v /= 10);
		line_raw(l, p, (size_t)(num + sizeof(num) - p));
	} else {
		line_raw(l, num, (size_t)snprintf(num, sizeof(num), "%.3f", val));
	}
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
