/*
 * metrics.c - the numbers of GET /metrics (handler: api/metrics.c) in the
 * Prometheus text format (version 0.0.4).
 *
 * Two kinds of numbers:
 * - counters kept in this process: requests by route, method and status,
 *   a latency histogram by route and method, webhook delivery attempts by
 *   outcome. They are plain atomics in fixed arrays indexed by the route's
 *   position in the static route table, so the hot path (every API request)
 *   takes no lock and allocates nothing; they start from zero at each start,
 *   as Prometheus counters may.
 * - gauges read from the database at scrape time: jobs by kind and state,
 *   orders by status, certificates by status, the soonest certificate expiry,
 *   webhook deliveries by state. A table that this schema lacks yields no
 *   samples, never an error.
 *
 * Who may scrape: the operator key, or anyone on the API listener when
 * metrics_public is true (checked in api/metrics.c; scrapers usually carry
 * no bearer token; the numbers are counts, never tenant data, but they do
 * reveal the fleet's size, so it is off by default).
 */
#include "common/buf.h"
#include "server/server_internal.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------ the arrays */

/* Slots: one per row of the route table (up to MAX_ROUTES; later rows share
 * the "unmatched" slots, which a test would notice), then one per method
 * for requests that matched no route. */
#define MAX_ROUTES 256
static const char *const methods[] = { "GET",	 "POST",    "PUT",  "PATCH",
				       "DELETE", "OPTIONS", "HEAD", "OTHER" };
#define N_METHODS CP_ARRAY_LEN(methods)
#define N_SLOTS (MAX_ROUTES + N_METHODS)

/* Status codes counted exactly; any other is counted by class ("4xx"). */
static const int statuses[] = { 200, 201, 202, 204, 301, 302, 304, 400, 401, 403, 404, 405,
				406, 409, 410, 413, 415, 422, 429, 500, 501, 502, 503, 504 };
#define N_EXACT CP_ARRAY_LEN(statuses)
#define N_STATUS (N_EXACT + 5)

/* Upper bounds (seconds) of the latency buckets; +Inf is the count. */
static const double bounds[] = { 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
				 0.1,	 0.25,	0.5,	1,     2.5,  5,	    10 };
#define N_BOUNDS CP_ARRAY_LEN(bounds)

static atomic_ulong req_total[N_SLOTS][N_STATUS];
/* Per bucket, not cumulative: one increment a request; summed at render. */
static atomic_ulong lat_bucket[N_SLOTS][N_BOUNDS + 1];
static atomic_ullong lat_sum_us[N_SLOTS];

/* Delivery outcomes are few static strings chosen by the webhook sender; a
 * slot is claimed once with a compare-and-swap and never released. */
#define N_OUTCOMES 16
static struct {
	_Atomic(const char *) name;
	atomic_ulong n;
} outcomes[N_OUTCOMES];
static atomic_ulong outcomes_other;

static size_t method_index(const char *method)
{
	for (size_t i = 0; i + 1 < N_METHODS; i++)
		if (strcmp(methods[i], method) == 0)
			return i;
	return N_METHODS - 1;
}

static size_t status_index(int status)
{
	for (size_t i = 0; i < N_EXACT; i++)
		if (statuses[i] == status)
			return i;
	if (status < 100 || status > 599)
		status = 500;
	return N_EXACT + (size_t)(status / 100 - 1);
}

void server_metrics_request(const struct server_route *route, const char *method, int status,
			    double seconds)
{
	size_t n, slot, b;
	const struct server_route *table = server_routes(&n);

	if (route && route >= table && route < table + n && (size_t)(route - table) < MAX_ROUTES)
		slot = (size_t)(route - table);
	else
		slot = MAX_ROUTES + method_index(method ? method : "OTHER");
	if (seconds < 0)
		seconds = 0;
	for (b = 0; b < N_BOUNDS && seconds > bounds[b]; b++)
		;
	atomic_fetch_add_explicit(&req_total[slot][status_index(status)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&lat_bucket[slot][b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&lat_sum_us[slot], (unsigned long long)(seconds * 1e6),
				  memory_order_relaxed);
}

/* Label values we accept from callers: short, [a-z0-9_]. */
static bool label_ok(const char *s)
{
	size_t n = 0;

	if (!s || !*s)
		return false;
	for (; s[n]; n++)
		if (n >= 32 ||
		    !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
			return false;
	return true;
}

void server_metrics_delivery(const char *outcome)
{
	if (!label_ok(outcome)) {
		atomic_fetch_add(&outcomes_other, 1);
		return;
	}
	for (size_t i = 0; i < N_OUTCOMES; i++) {
		const char *cur = atomic_load(&outcomes[i].name);
		if (!cur) {
			const char *expected = NULL;
			cur = atomic_compare_exchange_strong(&outcomes[i].name, &expected, outcome)
				      ? outcome
				      : expected;
		}
		if (strcmp(cur, outcome) == 0) {
			atomic_fetch_add(&outcomes[i].n, 1);
			return;
		}
	}
	atomic_fetch_add(&outcomes_other, 1);
}

/* ------------------------------------------------------------ rendering */

/* The text under construction and a sticky failure: after the first failed
 * append every later one is a no-op and render() answers NULL. */
struct out {
	struct cp_buf b;
	bool failed;
};
#define OUT_MAX (8u << 20)

static void out_add(struct out *o, const char *fmt, ...) CP_PRINTF(2, 3);
static void out_add(struct out *o, const char *fmt, ...)
{
	va_list ap;

	if (o->failed)
		return;
	va_start(ap, fmt);
	if (cp_buf_vaddf(&o->b, fmt, ap) != CP_OK)
		o->failed = true;
	va_end(ap);
}

/* Escape a label value (\, " and newline) into buf. */
static const char *esc(const char *s, char *buf, size_t len)
{
	size_t j = 0;

	for (; *s && j + 3 < len; s++) {
		if (*s == '\\' || *s == '"') {
			buf[j++] = '\\';
			buf[j++] = *s;
		} else if (*s == '\n') {
			buf[j++] = '\\';
			buf[j++] = 'n';
		} else {
			buf[j++] = *s;
		}
	}
	buf[j] = '\0';
	return buf;
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
	out_add(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The route and method labels of a slot. */
static void slot_labels(size_t slot, const struct server_route *table, size_t n, const char **route,
			const char **method)
{
	if (slot < MAX_ROUTES) {
		*route = slot < n ? table[slot].pattern : "unmatched";
		*method = slot < n ? table[slot].method : "OTHER";
	} else {
		*route = "unmatched";
		*method = methods[slot - MAX_ROUTES];
	}
}

static void render_http(struct out *o)
{
	size_t n;
	const struct server_route *table = server_routes(&n);
	const char *route, *method;
	char code[8];

	family(o, "certplane_http_requests_total", "counter",
	       "API requests answered, by route pattern, method and status.");
	for (size_t slot = 0; slot < N_SLOTS; slot++) {
		for (size_t s = 0; s < N_STATUS; s++) {
			unsigned long v =
				atomic_load_explicit(&req_total[slot][s], memory_order_relaxed);
			if (!v)
				continue;
			slot_labels(slot, table, n, &route, &method);
			if (s < N_EXACT)
				snprintf(code, sizeof(code), "%d", statuses[s]);
			else
				snprintf(code, sizeof(code), "%zuxx", s - N_EXACT + 1);
			out_add(o,
				"certplane_http_requests_total{route=\"%s\",method=\"%s\",status=\"%s\"} %lu\n",
				route, method, code, v);
		}
	}
	family(o, "certplane_http_request_duration_seconds", "histogram",
	       "Time from the first byte of a request to its queued response.");
	for (size_t slot = 0; slot < N_SLOTS; slot++) {
		unsigned long counts[N_BOUNDS + 1], cum = 0;
		for (size_t b = 0; b <= N_BOUNDS; b++) {
			counts[b] =
				atomic_load_explicit(&lat_bucket[slot][b], memory_order_relaxed);
			cum += counts[b];
		}
		if (!cum)
			continue;
		slot_labels(slot, table, n, &route, &method);
		cum = 0;
		for (size_t b = 0; b < N_BOUNDS; b++) {
			cum += counts[b];
			out_add(o,
				"certplane_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\",le=\"%g\"} %lu\n",
				route, method, bounds[b], cum);
		}
		cum += counts[N_BOUNDS];
		out_add(o,
			"certplane_http_request_duration_seconds_bucket{route=\"%s\",method=\"%s\",le=\"+Inf\"} %lu\n"
			"certplane_http_request_duration_seconds_sum{route=\"%s\",method=\"%s\"} %.6f\n"
			"certplane_http_request_duration_seconds_count{route=\"%s\",method=\"%s\"} %lu\n",
			route, method, cum, route, method,
			(double)atomic_load_explicit(&lat_sum_us[slot], memory_order_relaxed) / 1e6,
			route, method, cum);
	}
}

static void render_deliveries(struct out *o)
{
	family(o, "certplane_webhook_delivery_attempts_total", "counter",
	       "Webhook delivery attempts made by this process, by outcome.");
	for (size_t i = 0; i < N_OUTCOMES; i++) {
		const char *name = atomic_load(&outcomes[i].name);
		if (name)
			out_add(o,
				"certplane_webhook_delivery_attempts_total{outcome=\"%s\"} %lu\n",
				name, atomic_load(&outcomes[i].n));
	}
	if (atomic_load(&outcomes_other))
		out_add(o, "certplane_webhook_delivery_attempts_total{outcome=\"other\"} %lu\n",
			atomic_load(&outcomes_other));
}

/* One gauge family {label: n} from the database; absent tables print only
 * the HELP/TYPE lines. */
static void render_counts(struct out *o, struct db *db, const char *name, const char *label,
			  const char *help, cp_rc (*fetch)(struct db *, json_t **))
{
	json_t *counts = NULL, *v;
	const char *key;
	char buf[256];
	cp_rc rc = fetch(db, &counts);

	family(o, name, "gauge", help);
	if (rc != CP_OK) {
		if (rc != CP_ERR_NOT_FOUND)
			cp_logf(CP_LOG_WARN, "metrics.db", "%s: %s", name, cp_rc_str(rc));
		return;
	}
	json_object_foreach(counts, key, v)
		out_add(o, "%s{%s=\"%s\"} %lld\n", name, label, esc(key, buf, sizeof(buf)),
			(long long)json_integer_value(v));
	json_decref(counts);
}

static void render_db(struct out *o, struct db *db)
{
	json_t *jobs = NULL, *states, *v;
	const char *kind, *state;
	char kbuf[128], sbuf[64];
	int64_t not_after;
	cp_rc rc;

	family(o, "certplane_jobs", "gauge", "Durable jobs not yet done, by kind and state.");
	rc = db_job_stats(db, &jobs);
	if (rc == CP_OK) {
		json_object_foreach(jobs, kind, states)
		{
			json_object_foreach(states, state, v) out_add(
				o, "certplane_jobs{kind=\"%s\",state=\"%s\"} %lld\n",
				esc(kind, kbuf, sizeof(kbuf)), esc(state, sbuf, sizeof(sbuf)),
				(long long)json_integer_value(v));
		}
		json_decref(jobs);
	} else {
		cp_logf(CP_LOG_WARN, "metrics.db", "jobs: %s", cp_rc_str(rc));
	}
	render_counts(o, db, "certplane_orders", "status", "ACME orders by status.",
		      db_metrics_orders);
	render_counts(o, db, "certplane_certificates", "status",
		      "Certificates by status (expired derived from not_after).",
		      db_metrics_certificates);
	render_counts(o, db, "certplane_webhook_deliveries", "state",
		      "Webhook deliveries (one per event and endpoint) by state.",
		      db_metrics_webhook_deliveries);
	family(o, "certplane_certificate_soonest_expiry_seconds", "gauge",
	       "Seconds until the earliest not_after of an active or renewing certificate "
	       "(negative once it has passed); absent when there is none.");
	rc = db_metrics_soonest_expiry(db, &not_after);
	if (rc == CP_OK)
		out_add(o, "certplane_certificate_soonest_expiry_seconds %lld\n",
			(long long)(not_after - cp_now()));
	else if (rc != CP_ERR_NOT_FOUND)
		cp_logf(CP_LOG_WARN, "metrics.db", "soonest expiry: %s", cp_rc_str(rc));
}

static void render_process(struct out *o, const struct api_ctx *ctx)
{
	char *statm = NULL;
	size_t len;
	unsigned long long pages_total, pages_rss;

	family(o, "certplane_schema_version", "gauge", "Database schema version of this binary.");
	out_add(o, "certplane_schema_version %d\n", db_schema_version());
	if (ctx) {
		family(o, "process_start_time_seconds", "gauge",
		       "Start time of the process since the Unix epoch.");
		out_add(o, "process_start_time_seconds %lld\n", (long long)ctx->started_at);
	}
	/* /proc/self/statm: size resident ... in pages. */
	if (cp_file_read("/proc/self/statm", 4096, &statm, &len) == CP_OK) {
		char *end;
		pages_total = strtoull(statm, &end, 10);
		pages_rss = strtoull(end, NULL, 10);
		family(o, "process_resident_memory_bytes", "gauge",
		       "Resident memory size in bytes.");
		out_add(o, "process_resident_memory_bytes %llu\n",
			pages_rss * (unsigned long long)sysconf(_SC_PAGESIZE));
		family(o, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
		out_add(o, "process_virtual_memory_bytes %llu\n",
			pages_total * (unsigned long long)sysconf(_SC_PAGESIZE));
		free(statm);
	}
}

static char *render(struct db *db, const struct api_ctx *ctx)
{
	struct out o = { .failed = false };

	cp_buf_init(&o.b, OUT_MAX);
	render_http(&o);
	render_deliveries(&o);
	if (db)
		render_db(&o, db);
	render_process(&o, ctx);
	if (o.failed) {
		cp_buf_free(&o.b);
		return NULL;
	}
	return cp_buf_take(&o.b, NULL);
}

char *server_metrics_render(struct db *db, const struct api_ctx *ctx)
{
	return render(db, ctx);
}
