/*
 * read_cache.c - the rendered-answer cache of the hot single-object reads
 * (GET /v1/certificates/{id}, GET /v1/properties/{id}; issue 10's read
 * path): per thread, so no lock is taken on a hit, and bounded.
 *
 * An entry is the exact bytes and ETag api_render_resource answered for
 * (kind, tenant, id), where kind is the render function, so a certificate
 * and a property never share an entry and one tenant's entry is never
 * another's. Nothing else a rendered object depends on varies by request:
 * no Accept negotiation, and a key's scope only decides which methods it
 * may call (server/http.c), never what a GET returns. Authorization is not
 * cached here: the caller has authenticated the request and checked its
 * tenant before it asks.
 *
 * Validity, without reading the database: an entry is a hit only while
 *   - the process's write generation (db_write_gen: bumped after every
 *     commit has become visible, on every connection) equals the one the
 *     caller loaded BEFORE it began the read that rendered the entry, and
 *   - the wall-clock second (cp_now) is the one read before that render.
 * The render binds cp_now() as "now" for every time-derived field (a
 * certificate's "expired" status), so within one second the bytes depend
 * on the database alone; a render whose clock already moved on stores an
 * entry that can never hit. An entry therefore lives at most one second and
 * serves only what a read at that moment would have answered.
 *
 * Memory: RC_SLOTS entries a thread (direct-mapped, a colliding put evicts),
 * bodies up to RC_BODY_MAX bytes (a larger answer is not kept), each slot's
 * buffer sized to the largest body it held, freed when the thread exits: at
 * most ~2.1 MiB a thread whatever the number of objects (~0.8 MiB with
 * every slot holding a certificate of ~1 KiB).
 */
#include "api/api.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define RC_SLOTS 512 /* power of two */
#define RC_BODY_MAX 4096

struct rc_entry {
	api_render_fn kind; /* NULL: free */
	uint64_t gen;	    /* write generation loaded before the render */
	int64_t second;	    /* cp_now() read before the render */
	char tenant[CP_UUID_LEN + 1];
	char id[CP_UUID_LEN + 1];
	char etag[24];
	size_t len;
	size_t cap; /* bytes allocated at body, <= RC_BODY_MAX */
	char *body; /* owned; grows to the largest body the slot held */
};

struct rc_table {
	struct rc_entry e[RC_SLOTS];
};

static _Thread_local struct rc_table *rc_tls;
static pthread_key_t rc_key;
static pthread_once_t rc_once = PTHREAD_ONCE_INIT;

/* Thread exit: free this thread's table (the key's destructor). */
static void rc_table_free(void *p)
{
	struct rc_table *t = p;

	if (!t)
		return;
	for (size_t i = 0; i < RC_SLOTS; i++)
		free(t->e[i].body);
	free(t);
}

static void rc_key_init(void)
{
	pthread_key_create(&rc_key, rc_table_free);
}

/* This thread's table, created on first use; NULL on OOM. */
static struct rc_table *rc_table(void)
{
	if (rc_tls)
		return rc_tls;
	pthread_once(&rc_once, rc_key_init);
	rc_tls = calloc(1, sizeof(*rc_tls));
	if (rc_tls && pthread_setspecific(rc_key, rc_tls) != 0) {
		free(rc_tls);
		rc_tls = NULL;
	}
	return rc_tls;
}

/* The one slot of (kind, tenant, id); the id (a random UUID) spreads. */
static struct rc_entry *rc_slot(struct rc_table *t, api_render_fn kind, const char *tenant,
				const char *id)
{
	uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)kind;

	for (const char *p = id; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	for (const char *p = tenant; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	return &t->e[(h ^ (h >> 29)) & (RC_SLOTS - 1)];
}

static bool rc_same(const struct rc_entry *e, api_render_fn kind, const char *tenant,
		    const char *id)
{
	return e->kind == kind && strcmp(e->id, id) == 0 && strcmp(e->tenant, tenant) == 0;
}

bool api_read_cache_get(api_render_fn kind, const char *tenant, const char *id, uint64_t gen,
			int64_t second, struct api_cached *out)
{
	struct rc_table *t = rc_tls;
	const struct rc_entry *e;

	assert(kind && tenant && id && out);
	if (!t)
		return false;
	e = rc_slot(t, kind, tenant, id);
	if (!rc_same(e, kind, tenant, id) || e->gen != gen || e->second != second)
		return false;
	assert(e->body && e->len > 0 && e->len <= e->cap && e->cap <= RC_BODY_MAX);
	out->body = e->body;
	out->len = e->len;
	out->etag = e->etag;
	return true;
}

void api_read_cache_put(api_render_fn kind, const char *tenant, const char *id, uint64_t gen,
			int64_t second, const char *body, size_t len, const char etag[24])
{
	struct rc_table *t;
	struct rc_entry *e;

	assert(kind && tenant && id && body && etag);
	if (len == 0 || len > RC_BODY_MAX || strlen(tenant) > CP_UUID_LEN ||
	    strlen(id) > CP_UUID_LEN || strlen(etag) >= sizeof(e->etag))
		return; /* not kept: the next request renders again */
	t = rc_table();
	if (!t)
		return;
	e = rc_slot(t, kind, tenant, id);
	if (e->cap < len) {
		/* In steps of 512 bytes, so a slot seldom grows twice. */
		size_t cap = (len + 511) & ~(size_t)511;
		char *p = realloc(e->body, cap);
		if (!p)
			return; /* the slot keeps its old entry, still valid for it */
		e->body = p;
		e->cap = cap;
	}
	e->kind = kind;
	e->gen = gen;
	e->second = second;
	memcpy(e->tenant, tenant, strlen(tenant) + 1);
	memcpy(e->id, id, strlen(id) + 1);
	memcpy(e->etag, etag, strlen(etag) + 1);
	memcpy(e->body, body, len);
	e->len = len;
}
