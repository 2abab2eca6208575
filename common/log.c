/*
 * log.c - JSON-line logging on stderr: cp_log_json for structured events,
 * cp_logf for a formatted message, and the in-place cp_logline builder for
 * the hot path (one line per request, no allocation).
 */
#include "common/common.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

/*
 * The deferred lines: the request log (a line per request) is appended to
 * a buffer that one flusher thread writes out every DEFER_PERIOD_MS, or
 * sooner when the buffer is half full. A request never waits on write(2),
 * which on a file stalls for milliseconds while the filesystem writes back
 * (the read benchmark's p99: with the log off or deferred it is gone).
 * Two buffers: requests fill one while the flusher writes the other out of
 * the lock. A line that finds its buffer full (the flusher is behind) is
 * written at once instead: nothing is dropped, only its order may differ
 * from the buffered lines (each line has its own ts). A kill -9 loses at
 * most the lines of the last DEFER_PERIOD_MS; other log lines (events,
 * errors) stay synchronous.
 */
#define DEFER_CAP (256 * 1024)
#define DEFER_PERIOD_MS 100

static struct {
	pthread_mutex_t mu;
	pthread_cond_t wake;
	pthread_t thread;
	bool running;  /* cp_log_defer_start succeeded, stop not yet called */
	bool stopping; /* the flusher writes what is left and exits */
	char *fill;    /* lines are appended here, under mu */
	size_t fill_len;
	char *spare; /* the flusher's: written out of the lock */
} defer = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* Write buf whole, in chunks that end at a line's end and fit in PIPE_BUF:
 * on a pipe (journald, a supervisor) a write of at most PIPE_BUF bytes is
 * atomic, so another thread's synchronous line never lands inside one. */
static void defer_write_out(const char *buf, size_t len)
{
	size_t off = 0;

	while (off < len) {
		size_t n = len - off;
		ssize_t w;

		if (n > PIPE_BUF) {
			const char *nl = memrchr(buf + off, '\n', PIPE_BUF);

			n = nl ? (size_t)(nl - (buf + off)) + 1 : PIPE_BUF;
		}
		w = write(STDERR_FILENO, buf + off, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* stderr is gone: nothing else to do with the lines */
		off += (size_t)w;
	}
}

static void *defer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&defer.mu);
	for (;;) {
		bool last = defer.stopping;

		if (!last && defer.fill_len < DEFER_CAP / 2) {
			struct timespec until;

			clock_gettime(CLOCK_MONOTONIC, &until);
			until.tv_nsec += DEFER_PERIOD_MS * 1000000L;
			if (until.tv_nsec >= 1000000000L) {
				until.tv_sec++;
				until.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&defer.wake, &defer.mu, &until);
			last = defer.stopping;
		}
		if (defer.fill_len > 0) {
			char *full = defer.fill;
			size_t len = defer.fill_len;

			defer.fill = defer.spare;
			defer.fill_len = 0;
			defer.spare = full;
			pthread_mutex_unlock(&defer.mu);
			defer_write_out(full, len);
			pthread_mutex_lock(&defer.mu);
		}
		if (last && defer.fill_len == 0)
			break;
	}
	pthread_mutex_unlock(&defer.mu);
	return NULL;
}

cp_rc cp_log_defer_start(void)
{
	pthread_condattr_t ca;
	cp_rc rc = CP_ERR_NOMEM;

	assert(!defer.running);
	defer.fill = malloc(DEFER_CAP);
	defer.spare = malloc(DEFER_CAP);
	if (!defer.fill || !defer.spare)
		goto out;
	defer.fill_len = 0;
	defer.stopping = false;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&defer.wake, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&defer.thread, NULL, defer_main, NULL) != 0) {
		pthread_cond_destroy(&defer.wake);
		rc = CP_ERR_INTERNAL;
		goto out;
	}
	pthread_mutex_lock(&defer.mu);
	defer.running = true;
	pthread_mutex_unlock(&defer.mu);
	rc = CP_OK;
out:
	if (rc != CP_OK) {
		free(defer.fill);
		free(defer.spare);
		defer.fill = defer.spare = NULL;
	}
	return rc;
}

void cp_log_defer_stop(void)
{
	pthread_mutex_lock(&defer.mu);
	if (!defer.running) {
		pthread_mutex_unlock(&defer.mu);
		return;
	}
	/* From here lines are written at once again; the flusher empties the
	 * buffer and exits. */
	defer.running = false;
	defer.stopping = true;
	pthread_cond_signal(&defer.wake);
	pthread_mutex_unlock(&defer.mu);
	pthread_join(defer.thread, NULL);
	pthread_cond_destroy(&defer.wake);
	free(defer.fill);
	free(defer.spare);
	defer.fill = defer.spare = NULL;
}

/* Close the line into l->buf (shared by both ends); false if filtered out. */
static bool logline_close(struct cp_logline *l)
{
	assert(l && l->len <= sizeof(l->buf) - 16);

	if (!l->on)
		return false;
	if (l->cut) {
		/* end the object validly and say that it was cut */
		memcpy(l->buf + l->len, ",\"cut\":true", 11);
		l->len += 11;
	}
	l->buf[l->len++] = '}';
	l->buf[l->len] = '\0';
	return true;
}

void cp_logline_end(struct cp_logline *l)
{
	if (logline_close(l))
		log_write_line(l->buf);
}

void cp_logline_end_deferred(struct cp_logline *l)
{
	bool queued = false;

	if (!logline_close(l))
		return;
	pthread_mutex_lock(&defer.mu);
	if (defer.running && defer.fill_len + l->len + 1 <= DEFER_CAP) {
		memcpy(defer.fill + defer.fill_len, l->buf, l->len);
		defer.fill_len += l->len;
		defer.fill[defer.fill_len++] = '\n';
		queued = true;
		if (defer.fill_len >= DEFER_CAP / 2)
			pthread_cond_signal(&defer.wake);
	}
	pthread_mutex_unlock(&defer.mu);
	if (!queued)
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
