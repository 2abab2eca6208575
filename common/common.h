/*
 * common.h - the few things every certplane module shares: the result code
 * enum that every fallible function returns, JSON-line logging, ids, time,
 * randomness and small string/encoding helpers, and the declarative JSON
 * body validator ("spec") used by every API handler. The configuration has
 * its own header, common/config.h.
 *
 * One source file a concern: common.c (result names), log.c, time.c (ids
 * and time), encode.c (random, hex, base64, UTF-8, strings), files.c,
 * kick.c (worker wake-ups), hostname.c, spec.c (body spec, JSON getters).
 * Nothing here knows about HTTP, SQL or ACME.
 */
#ifndef CP_COMMON_H
#define CP_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define CP_WUR __attribute__((warn_unused_result))
#define CP_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define CP_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* One result enum for every fallible function; mapped to HTTP in api/. */
typedef enum cp_rc {
	CP_OK = 0,
	CP_ERR_INVALID,	     /* input breaks a rule (-> 422 / 400) */
	CP_ERR_NOT_FOUND,    /* no such object in this tenant (-> 404) */
	CP_ERR_CONFLICT,     /* uniqueness or state conflict (-> 409) */
	CP_ERR_BUSY,	     /* database busy past busy_timeout; retryable */
	CP_ERR_UPSTREAM,     /* CA, DNS or webhook receiver failed */
	CP_ERR_NOMEM,	     /* allocation failed */
	CP_ERR_IO,	     /* file or socket error */
	CP_ERR_TOO_LARGE,    /* input or response over its cap (-> 413) */
	CP_ERR_UNAUTHORIZED, /* bad credentials (-> 401) */
	CP_ERR_RATE_LIMITED, /* slow down (-> 429) */
	CP_ERR_CRYPTO,	     /* key/cipher/signature failure */
	CP_ERR_INTERNAL,     /* programmer or database error (-> 500) */
} cp_rc;

/* Static name of a result code ("ok", "invalid", ...). */
const char *cp_rc_str(cp_rc rc);

/* ---- logging: one JSON object per line on stderr ---- */

enum cp_log_level { CP_LOG_DEBUG, CP_LOG_INFO, CP_LOG_WARN, CP_LOG_ERROR };

/* Set the minimum level written (default INFO). */
void cp_log_set_level(enum cp_log_level level);
/*
 * Write {"ts","level","event", ...fields}. Takes ownership of fields (a JSON
 * object or NULL). Never pass secrets in fields.
 */
void cp_log_json(enum cp_log_level level, const char *event, json_t *fields);
/* Write {"ts","level","event","msg"} with a printf-formatted message. */
void cp_logf(enum cp_log_level level, const char *event, const char *fmt, ...) CP_PRINTF(3, 4);

/*
 * A log line built in place, for the hot path (one line per request): no
 * JSON tree, no allocation. Values are escaped as JSON; bytes outside
 * printable ASCII become \u00XX, so a line is always valid JSON even for an
 * invalid-UTF-8 URL. A line longer than the buffer is cut and marked.
 */
struct cp_logline {
	char buf[2048];
	size_t len;
	bool on;  /* false when the level is filtered out: every call is a no-op */
	bool cut; /* ran out of room: the rest is dropped, the line marked */
};
void cp_logline_begin(struct cp_logline *l, enum cp_log_level level, const char *event);
/* "key": "val" (NULL val writes null). */
void cp_logline_str(struct cp_logline *l, const char *key, const char *val);
void cp_logline_int(struct cp_logline *l, const char *key, long long val);
void cp_logline_num(struct cp_logline *l, const char *key, double val);
/* Close the object and write the line. */
void cp_logline_end(struct cp_logline *l);
/* Close the object and queue the line for the flusher thread (written
 * within 100 ms; at once when no flusher runs or its buffer is full). */
void cp_logline_end_deferred(struct cp_logline *l);
/* Start / stop the flusher of deferred lines (the server's request log).
 * Stop writes out what is queued. Start once; stop is idempotent. */
cp_rc cp_log_defer_start(void);
void cp_log_defer_stop(void);

/* ---- ids, time, randomness ---- */

#define CP_UUID_LEN 36
/* Fill out with a new random lowercase UUID (37 bytes incl. NUL). */
void cp_uuid(char out[CP_UUID_LEN + 1]);
/* True if s is a lowercase canonical UUID. */
bool cp_uuid_valid(const char *s);

/* Seconds since the epoch (UTC wall clock). */
int64_t cp_now(void);
/* Monotonic milliseconds, for deadlines and timeouts. */
int64_t cp_mono_ms(void);
/* Monotonic microseconds, for latency measurements (a request's duration:
 * most take well under a millisecond). */
int64_t cp_mono_us(void);
/* Sleep ms milliseconds, resuming after a signal; nothing for ms <= 0. */
void cp_sleep_ms(int64_t ms);
#define CP_TIME_LEN 20
#define CP_TIME_MIN (-62167219200LL) /* 0000-01-01T00:00:00Z */
#define CP_TIME_MAX 253402300799LL   /* 9999-12-31T23:59:59Z */
/* Format t as RFC 3339 UTC "YYYY-MM-DDTHH:MM:SSZ" (21 bytes incl. NUL);
 * t is clamped to CP_TIME_MIN..CP_TIME_MAX, so the text is always 20 chars. */
void cp_time_fmt(int64_t t, char out[CP_TIME_LEN + 1]);
/* Days from 1970-01-01 to y-m-d (m 1..12, d 1..31) in the proleptic
 * Gregorian calendar, negative before; the tree's one civil-date conversion. */
int64_t cp_days_from_civil(int64_t y, unsigned m, unsigned d);
/* Parse RFC 3339 (Z or offset; fractional seconds ignored). Refuses days a
 * month does not have and instants outside CP_TIME_MIN..CP_TIME_MAX. */
cp_rc cp_time_parse(const char *s, int64_t *out) CP_WUR;

/* Fill buf with n cryptographically secure random bytes. */
cp_rc cp_random(void *buf, size_t n) CP_WUR;
/* Uniform random integer in [0, bound) (bound > 0). */
uint64_t cp_random_below(uint64_t bound);

/* Lowercase hex of n bytes into out (2n+1 bytes). */
void cp_hex(const uint8_t *in, size_t n, char *out);
/* SHA-256 of data as 64 lowercase hex chars + NUL. */
void cp_sha256_hex(const void *data, size_t n, char out[65]);
/* base64url without padding; returns a new string (caller frees) or NULL. */
char *cp_b64url(const uint8_t *in, size_t n);
/* Decode base64url (padding optional); *out new buffer (caller frees). */
cp_rc cp_b64url_decode(const char *in, uint8_t **out, size_t *outlen) CP_WUR;
/* Standard base64 with padding; returns a new string (caller frees) or NULL. */
char *cp_b64(const uint8_t *in, size_t n);
/* Decode standard base64; *out new buffer (caller frees). */
cp_rc cp_b64_decode(const char *in, uint8_t **out, size_t *outlen) CP_WUR;

/* strdup that aborts on OOM is not allowed; these return NULL on OOM. */
char *cp_strdup(const char *s);
char *cp_strndup(const char *s, size_t n);
/* asprintf-style; returns new string or NULL. */
char *cp_aprintf(const char *fmt, ...) CP_PRINTF(1, 2);
/* True if s (len bytes) is valid UTF-8 without NUL bytes. */
bool cp_utf8_valid(const char *s, size_t len);
/* Read a whole regular file (at most max bytes) into a new NUL-terminated
 * buffer (caller frees). CP_ERR_NOT_FOUND only when path does not exist;
 * CP_ERR_IO for any other failure (not a regular file, permission, read
 * error), CP_ERR_TOO_LARGE above max. */
cp_rc cp_file_read(const char *path, size_t max, char **out, size_t *len) CP_WUR;
/* Atomically replace path with data, mode `mode`: a new temporary file with a
 * random name (O_CREAT | O_EXCL | O_NOFOLLOW, never a planted file or
 * symlink), fsync, rename over path, fsync of the directory. */
cp_rc cp_file_write(const char *path, const void *data, size_t len, int mode) CP_WUR;

/* ---- wake-ups: tell idle workers that a job was just queued ---- */

/* Wake every thread waiting in cp_kick_wait. Safe from any thread. */
void cp_kick(void);
/* Sleep up to ms milliseconds or until cp_kick is called. */
void cp_kick_wait(int ms);

/* ---- hostnames ---- */

#define CP_HOSTNAME_MAX 253
/*
 * Validate a DNS hostname as certplane accepts it: lowercase ASCII, RFC 1123
 * labels (1..63 chars, letters/digits/hyphen, no leading/trailing hyphen),
 * at least two labels, total <= 253, IDN only as punycode ("xn--"), no
 * trailing dot, no all-numeric TLD. A leading "*." is accepted only if
 * allow_wildcard. On failure *why (static string) says what is wrong.
 */
bool cp_hostname_valid(const char *name, bool allow_wildcard, const char **why);
/* True if name starts with "*.". */
bool cp_hostname_is_wildcard(const char *name);
/* The wildcard that covers name ("*." and what follows its first label:
 * www.a.test -> *.a.test) into out (cap bytes); false, with out "", when
 * none does (name a wildcard itself, one label, or too long for out). */
bool cp_hostname_covering_wildcard(const char *name, char *out, size_t cap);
/* Validate an email address as certplane sends to it (notification
 * channels): a dot-atom local part of 1..64 bytes, '@', a domain that
 * cp_hostname_valid accepts (no wildcard), at most 254 bytes; so no byte of
 * it can break out of an SMTP command or a header. On failure *why (static
 * string) says what is wrong. */
bool cp_email_valid(const char *addr, const char **why);

/* ---- JSON body spec: declarative validation of request bodies ---- */

enum cp_spec_type {
	CP_SPEC_END = 0,
	CP_SPEC_STRING, /* out: const char ** (borrowed from the body) */
	CP_SPEC_BOOL,	/* out: int * (0/1) */
	CP_SPEC_INT,	/* out: json_int_t *, within [min, max] */
	CP_SPEC_ENUM,	/* out: const char **, one of choices (NULL-ended) */
	CP_SPEC_ARRAY,	/* out: json_t ** (borrowed), at most max items */
	CP_SPEC_OBJECT, /* out: json_t ** (borrowed), encoded <= max bytes */
	CP_SPEC_ANY,	/* out: json_t ** (borrowed), any JSON type */
};

/*
 * One field of a body spec. Build specs with the CP_SPEC_* macros, end
 * with CP_SPEC_DONE. Optional fields absent from the body leave *out as is
 * (so callers preset defaults). A field given as JSON null is treated as
 * absent for optional fields.
 */
struct cp_spec {
	enum cp_spec_type type;
	const char *name;	    /* field name in the JSON object */
	bool required;		    /* missing -> "is required" */
	void *out;		    /* where the value goes (see type) */
	json_int_t min, max;	    /* INT: range; STRING: length; ARRAY: items */
	const char *const *choices; /* ENUM: allowed values, NULL-ended */
	bool *present;		    /* optional: set true if field given */
};

#define CP_SPEC_STR(n, req, o, minlen, maxlen)                                                     \
	{                                                                                          \
		.type = CP_SPEC_STRING, .name = (n), .required = (req), .out = (o),                \
		.min = (minlen), .max = (maxlen)                                                   \
	}
#define CP_SPEC_BOOLEAN(n, req, o)                                                                 \
	{                                                                                          \
		.type = CP_SPEC_BOOL, .name = (n), .required = (req), .out = (o)                   \
	}
#define CP_SPEC_INTEGER(n, req, o, lo, hi)                                                         \
	{                                                                                          \
		.type = CP_SPEC_INT, .name = (n), .required = (req), .out = (o), .min = (lo),      \
		.max = (hi)                                                                        \
	}
#define CP_SPEC_CHOICE(n, req, o, ch)                                                              \
	{                                                                                          \
		.type = CP_SPEC_ENUM, .name = (n), .required = (req), .out = (o), .choices = (ch)  \
	}
#define CP_SPEC_ARR(n, req, o, maxitems)                                                           \
	{                                                                                          \
		.type = CP_SPEC_ARRAY, .name = (n), .required = (req), .out = (o), .min = 0,       \
		.max = (maxitems)                                                                  \
	}
#define CP_SPEC_OBJ(n, req, o, maxbytes)                                                           \
	{                                                                                          \
		.type = CP_SPEC_OBJECT, .name = (n), .required = (req), .out = (o),                \
		.max = (maxbytes)                                                                  \
	}
#define CP_SPEC_JSON(n, req, o)                                                                    \
	{                                                                                          \
		.type = CP_SPEC_ANY, .name = (n), .required = (req), .out = (o)                    \
	}
#define CP_SPEC_DONE                                                                               \
	{                                                                                          \
		.type = CP_SPEC_END                                                                \
	}

/*
 * Validate body (must be a JSON object) against spec. Every problem found is
 * appended to errors (a JSON array) as {"field","message"}; unknown fields
 * are errors too, so typos never pass silently. Returns CP_OK when every
 * field was filled, CP_ERR_INVALID otherwise.
 */
cp_rc cp_spec_parse(json_t *body, const struct cp_spec *spec, json_t *errors) CP_WUR;
/* Append {"field": field, "message": msg} to errors. */
void cp_spec_error(json_t *errors, const char *field, const char *msg);
/* Member k of object o as a string (borrowed) or an integer: NULL / 0 when
 * o is not an object, lacks k or holds another type there. */
const char *cp_json_str(const json_t *o, const char *k);
int64_t cp_json_int(const json_t *o, const char *k);

#endif
