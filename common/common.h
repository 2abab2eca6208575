/*
 * common.h - the few things every certplane module shares: the result code
 * enum that every fallible function returns, JSON-line logging, ids, time,
 * randomness and small string/encoding helpers, and the declarative JSON
 * body validator ("spec") used by every API handler.
 *
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

/* ---- ids, time, randomness ---- */

#define CP_UUID_LEN 36
/* Fill out with a new random lowercase UUID (37 bytes incl. NUL). */
void cp_uuid(char out[CP_UUID_LEN + 1]);
/* True if s is a lowercase canonical UUID. */
bool cp_uuid_valid(const char *s);

/* Seconds since the epoch (UTC wall clock). */
int64_t cp_now(void);
/* Monotonic milliseconds, for latency measurements. */
int64_t cp_mono_ms(void);
#define CP_TIME_LEN 20
#define CP_TIME_MIN (-62167219200LL) /* 0000-01-01T00:00:00Z */
#define CP_TIME_MAX 253402300799LL   /* 9999-12-31T23:59:59Z */
/* Format t as RFC 3339 UTC "YYYY-MM-DDTHH:MM:SSZ" (21 bytes incl. NUL);
 * t is clamped to CP_TIME_MIN..CP_TIME_MAX, so the text is always 20 chars. */
void cp_time_fmt(int64_t t, char out[CP_TIME_LEN + 1]);
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

#endif

/* ---- configuration: defaults < JSON file < CERTPLANE_<KEY> environment ---- */

#ifndef CP_CONFIG_DEFINED
#define CP_CONFIG_DEFINED
/* Every setting certplane reads; filled by cp_config_load, then read-only. */
struct cp_config {
	char *listen;		  /* API listener host:port */
	char *http01_listen;	  /* HTTP-01 responder host:port ("" = off) */
	char *data_dir;		  /* database, master key ring, operator token */
	char *database;		  /* SQLite file (default data_dir/certplane.db) */
	char *operator_token;	  /* operator API key (generated if unset) */
	char *master_key;	  /* base64 32-byte master key (else key ring file) */
	char *edge_zone;	  /* zone for edge hostnames */
	char *acme_directory_url; /* default CA ("letsencrypt") directory */
	char *acme_ca_bundle;	  /* trust for the ACME server ("" = system) */
	char *acme_contact_email; /* account contact ("" = none) */
	json_t *cas;		  /* object: name -> {directory_url, ca_bundle} */
	char *dns_resolver;	  /* host:port for CNAME/TXT checks ("" = system) */
	int renew_before_days;	  /* renewal window */
	int scheduler_interval_seconds;
	int workers;	  /* job worker threads */
	int http_threads; /* libmicrohttpd thread pool size */
	int dns01_timeout_seconds;
	int order_deadline_hours; /* an order meeting only transient CA errors fails after this */
	bool webhook_allow_private_networks;
	json_t *cors_origins;	   /* array of allowed origins */
	int max_body_bytes;	   /* request body cap (413 above) */
	int rate_limit_per_second; /* per API key; 0 = off */
	int rate_limit_burst;
	int webhook_timeout_seconds;  /* per delivery attempt */
	int webhook_dns_timeout_ms;   /* callback host lookup at registration, hard deadline */
	char *webhook_retry_schedule; /* seconds before each attempt ("[0,5,300,...]") */
	char *renew_backoff_seconds;  /* renewal retry delays after failures ("[60,600,6000,86400]")
				       */
	char *log_level;	      /* debug|info|warn|error */
	bool metrics_public;	      /* GET /metrics without a key (else operator key) */
	int hostname_claim_ttl_days;  /* pending hostname claims are released after this */
	int hostname_claim_ttl_seconds; /* the same TTL in seconds, when > 0 (overrides days) */
	int hostname_recheck_seconds;	/* pending claims re-checked this often */
	int hostname_verified_recheck_seconds; /* verified claims re-checked this often */
	int http_client_connection_limit;      /* open connections per client address */
	int http_request_deadline_seconds;     /* to receive a request's headers and body */
	int http_idle_timeout_seconds;	       /* keep-alive / inactivity timeout */
	int net_threads;		       /* threads for requests that wait on the network */
	int net_tenant_concurrency;	       /* such requests in flight per tenant (429 above) */
	int webhook_workers;		       /* worker threads of the webhook lane */
	int general_workers;		       /* worker threads of the general lane */
	int tenant_max_running_jobs; /* one tenant's running jobs per lane (<= half its workers) */
	int quota_properties;	     /* per-tenant quota defaults (operator overrides per tenant) */
	int quota_hostnames;	     /* property hostnames, over all the tenant's properties */
	int quota_certificates;
	int quota_orders_in_flight; /* ACME orders pending, validating or issuing */
	int quota_webhooks;
	int quota_edge_hostnames;
	int ca_orders_per_hour; /* scheduler's renewal order budget per CA (cas.<name> overrides) */
	int ca_order_burst;	/* orders a CA's budget admits ahead of its rate */
	int job_retention_days; /* finished jobs and webhook deliveries kept this long */
};
#endif

/*
 * Load the configuration: defaults, then the JSON file at path (NULL = none),
 * then CERTPLANE_<KEY> environment variables (lists comma-separated or JSON,
 * objects as JSON). Unknown keys and wrongly typed values are errors: *err
 * gets a new message (caller frees). *out is a new config (cp_config_free).
 */
cp_rc cp_config_load(const char *path, struct cp_config **out, char **err) CP_WUR;
void cp_config_free(struct cp_config *cfg);
/* The effective configuration as JSON, secrets redacted. New reference. */
json_t *cp_config_json(const struct cp_config *cfg);
/* Parse a webhook retry schedule ("[0,5,300]" or "0,5,300": seconds to wait
 * before attempt 1, 2, ...) into out (at most max entries), *n entries.
 * CP_ERR_INVALID if empty, malformed, longer than max or an entry is
 * outside 0..604800. */
cp_rc cp_config_schedule(const char *s, int64_t *out, size_t max, size_t *n) CP_WUR;
#define CP_SCHEDULE_MAX 64
