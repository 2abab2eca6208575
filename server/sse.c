/*
 * sse.c - GET /v1/events/stream: a tenant's events as server-sent events,
 * without a thread per client.
 *
 * Each stream is a libmicrohttpd callback response. Its reader sends what
 * it has buffered (one page of events at most, so memory per stream is
 * bounded), reads the next page from the outbox when that is sent, and
 * suspends the connection when it is caught up. libmicrohttpd only calls
 * the reader when the socket can take more, so a client that reads slowly
 * holds back its own stream and nothing else (back-pressure; one that
 * never reads is closed by the idle timeout once its socket buffer is
 * full). A COMMIT that wrote events of a tenant marks and resumes every
 * suspended stream of that tenant (db_event_hook_set); a tick thread resumes a
 * stream that has been quiet for event_stream_keepalive_seconds to send a
 * keepalive comment, and one whose client hung up while it slept (libmicrohttpd does
 * not poll a suspended connection) to end it and free its slot. Suspending
 * (in the reader) and resuming both happen under s->lock, so a wake-up is
 * never lost between a stream's last read and its
 * suspension, and a connection is never resumed twice.
 *
 * Limits: SSE_TENANT_MAX streams a tenant (429), event_streams_max in all
 * (503). server_sse_stop ends every stream (the readers answer end of
 * stream) before the daemon stops, so shutdown does not wait on clients.
 */
#include "common/buf.h"
#include "server/server_internal.h"

#include <assert.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SSE_TENANT_MAX 4
#define SSE_TICK_MS 500
/* Events read and buffered at once (the per-stream memory bound). */
#define SSE_PAGE 16
#define SSE_BUF_MAX (1024 * 1024)

struct server_sse_stream {
	struct server_sse_stream *prev, *next;
	struct server_sse *s;
	struct MHD_Connection *c; /* set by server_sse_response */
	int fd;			  /* c's socket (libmicrohttpd's), -1 until then */
	char tenant[CP_UUID_LEN + 1];
	char key_hash[65]; /* the caller's API key; "" for the operator */
	struct api_stream want;
	bool fresh; /* nothing sent yet: send the retry hint first */
	bool more;  /* the last page was full: read again at once */
	/* Under s->lock: */
	bool suspended;
	bool pending; /* events were committed since the last read began */
	bool keepalive;
	bool gone;	 /* the client hung up while we slept */
	int64_t last_ms; /* last write */
	struct cp_buf out;
	size_t off; /* sent bytes of out */
};

struct server_sse {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct server_sse_stream head; /* sentinel */
	int count, max;
	int64_t keepalive_ms;
	bool stopping;
	pthread_t tick;
	bool tick_started;
	/* The tick's poll set: the sockets of suspended streams (max of them). */
	struct pollfd *pfd;
	struct server_sse_stream **pst;
};

/* Resume st if it is suspended; s->lock held. */
static void stream_wake(struct server_sse_stream *st)
{
	if (st->suspended && st->c) {
		st->suspended = false;
		MHD_resume_connection(st->c);
	}
}

/* The db event hook: after a COMMIT with events, on the committing thread. */
static void sse_on_commit(void *cls, const char *tenant_id)
{
	struct server_sse *s = cls;

	pthread_mutex_lock(&s->lock);
	for (struct server_sse_stream *st = s->head.next; st != &s->head; st = st->next)
		if (!tenant_id || strcmp(st->tenant, tenant_id) == 0) {
			st->pending = true;
			stream_wake(st);
		}
	pthread_mutex_unlock(&s->lock);
}

static void *tick_main(void *arg)
{
	struct server_sse *s = arg;

	pthread_mutex_lock(&s->lock);
	while (!s->stopping) {
		struct timespec ts;
		int64_t now = cp_mono_ms();
		nfds_t n = 0;
		for (struct server_sse_stream *st = s->head.next; st != &s->head; st = st->next) {
			if (!st->suspended || st->fd < 0)
				continue;
			if (now - st->last_ms >= s->keepalive_ms) {
				st->keepalive = true;
				stream_wake(st);
				continue;
			}
			assert(n < (nfds_t)s->max);
			s->pfd[n] = (struct pollfd){ .fd = st->fd, .events = POLLRDHUP };
			s->pst[n++] = st;
		}
		/* A suspended connection is not polled by libmicrohttpd: a client
		 * that hung up would hold its slot until the next keepalive. Its
		 * socket stays open while it is suspended (and it stays suspended
		 * while we hold the lock), so looking at it here is safe. */
		if (n > 0 && poll(s->pfd, n, 0) > 0)
			for (nfds_t i = 0; i < n; i++)
				if (s->pfd[i].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
					s->pst[i]->gone = true;
					stream_wake(s->pst[i]);
				}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += SSE_TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&s->cv, &s->lock, &ts);
	}
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

cp_rc server_sse_start(int max, int keepalive_seconds, struct server_sse **out)
{
	struct server_sse *s = calloc(1, sizeof(*s));

	assert(out && max > 0 && keepalive_seconds > 0);
	*out = NULL;
	if (!s)
		return CP_ERR_NOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cv, NULL);
	s->head.next = s->head.prev = &s->head;
	s->max = max;
	s->keepalive_ms = (int64_t)keepalive_seconds * 1000;
	s->pfd = calloc((size_t)max, sizeof(*s->pfd));
	s->pst = calloc((size_t)max, sizeof(*s->pst));
	if (!s->pfd || !s->pst) {
		server_sse_free(s);
		return CP_ERR_NOMEM;
	}
	if (pthread_create(&s->tick, NULL, tick_main, s) != 0) {
		server_sse_free(s);
		return CP_ERR_INTERNAL;
	}
	s->tick_started = true;
	db_event_hook_set(sse_on_commit, s);
	*out = s;
	return CP_OK;
}

void server_sse_stop(struct server_sse *s)
{
	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stopping = true;
	for (struct server_sse_stream *st = s->head.next; st != &s->head; st = st->next)
		stream_wake(st);
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->lock);
	if (s->tick_started)
		pthread_join(s->tick, NULL);
	s->tick_started = false;
}

void server_sse_free(struct server_sse *s)
{
	if (!s)
		return;
	server_sse_stop(s);
	/* Called after the daemon stopped: every response (stream) is gone. */
	assert(s->count == 0);
	db_event_hook_set(NULL, NULL);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->lock);
	free(s->pfd);
	free(s->pst);
	free(s);
}

bool server_sse_admit(struct server_sse *s, const char *tenant, const char *key_hash,
		      struct api_resp *resp, struct server_sse_stream **out)
{
	struct server_sse_stream *st = NULL;
	int mine = 0;
	bool ok = false;

	assert(s && tenant && resp && resp->stream.on && out);
	*out = NULL;
	resp->stream.on = false;
	resp->content_type = NULL;
	pthread_mutex_lock(&s->lock);
	for (struct server_sse_stream *p = s->head.next; p != &s->head; p = p->next)
		mine += strcmp(p->tenant, tenant) == 0;
	if (s->stopping) {
		api_problem(resp, 503, "the server is stopping", NULL);
	} else if (mine >= SSE_TENANT_MAX) {
		char detail[96];
		snprintf(detail, sizeof(detail), "this tenant already has %d event streams open",
			 SSE_TENANT_MAX);
		api_problem(resp, 429, detail, NULL);
	} else if (s->count >= s->max) {
		api_problem(resp, 503, "no capacity for more event streams (event_streams_max)",
			    NULL);
	} else if (!(st = calloc(1, sizeof(*st)))) {
		api_problem(resp, 503, "out of memory", NULL);
	} else {
		st->s = s;
		snprintf(st->tenant, sizeof(st->tenant), "%s", tenant);
		snprintf(st->key_hash, sizeof(st->key_hash), "%s", key_hash ? key_hash : "");
		st->want = resp->stream;
		st->want.on = true;
		st->fresh = true;
		st->fd = -1;
		st->pending = true; /* read at once */
		st->last_ms = cp_mono_ms();
		cp_buf_init(&st->out, SSE_BUF_MAX);
		st->next = s->head.next;
		st->prev = &s->head;
		s->head.next->prev = st;
		s->head.next = st;
		s->count++;
		ok = true;
	}
	pthread_mutex_unlock(&s->lock);
	if (!ok) {
		resp->retry_after = 1;
		return false;
	}
	resp->status = 200;
	resp->content_type = "text/event-stream";
	*out = st;
	return true;
}

void server_sse_stream_free(struct server_sse_stream *st)
{
	struct server_sse *s;

	if (!st)
		return;
	s = st->s;
	pthread_mutex_lock(&s->lock);
	st->prev->next = st->next;
	st->next->prev = st->prev;
	s->count--;
	pthread_mutex_unlock(&s->lock);
	cp_buf_free(&st->out);
	free(st);
}

/* Append one event of the page as an SSE frame: id, event, data (the
 * Event object on one line: compact JSON escapes every newline). */
static cp_rc frame_add(struct cp_buf *b, const json_t *ev)
{
	const char *id = json_string_value(json_object_get(ev, "id"));
	const char *type = json_string_value(json_object_get(ev, "type"));
	char *data = json_dumps(ev, JSON_COMPACT);
	cp_rc rc = CP_ERR_NOMEM;

	if (data && id && type)
		rc = cp_buf_addf(b, "id: %s\nevent: %s\ndata: %s\n\n", id, type, data);
	free(data);
	return rc;
}

/* The caller may still read the tenant's events: its key is not revoked
 * (nor expired) and the tenant not deleted. Both lookups are cached
 * (db/tenants.c) and revoked when the deletion commits. CP_ERR_NOT_FOUND
 * when it may not. */
static cp_rc stream_allowed(struct db *db, const struct server_sse_stream *st)
{
	char tenant[CP_UUID_LEN + 1], key_id[CP_UUID_LEN + 1];
	struct db_apikey_grant grant = { 0 };
	cp_rc rc;

	if (!st->key_hash[0])
		return db_tenant_exists(db, st->tenant);
	rc = db_apikey_lookup(db, st->key_hash, tenant, key_id, &grant);
	if (rc == CP_OK &&
	    (strcmp(tenant, st->tenant) != 0 || (grant.expires_at && grant.expires_at <= cp_now())))
		rc = CP_ERR_NOT_FOUND;
	return rc;
}

/* Read the next page after st->want.after into st->out (empty when there
 * is nothing new). */
static cp_rc stream_read(struct server_sse_stream *st)
{
	struct db *db = db_thread();
	struct db_event_filter f = {
		.certificate_id = st->want.certificate_id[0] ? st->want.certificate_id : NULL,
		.property_id = st->want.property_id[0] ? st->want.property_id : NULL,
	};
	struct db_list list = { 0 };
	size_t i, n;
	json_t *ev;
	cp_rc rc;

	if (!db)
		return CP_ERR_INTERNAL;
	rc = stream_allowed(db, st);
	if (rc != CP_OK)
		return rc;
	rc = db_event_list_filtered(db, st->tenant, &f,
				    (struct db_page){ .after = st->want.after, .limit = SSE_PAGE },
				    &list);
	if (rc != CP_OK)
		goto out;
	n = json_array_size(list.data);
	json_array_foreach(list.data, i, ev)
	{
		rc = frame_add(&st->out, ev);
		if (rc != CP_OK)
			goto out;
	}
	st->more = list.next != 0;
	if (list.next)
		st->want.after = list.next;
	else if (n > 0)
		rc = db_event_seq(
			db, st->tenant,
			json_string_value(json_object_get(json_array_get(list.data, n - 1), "id")),
			&st->want.after);
out:
	json_decref(list.data);
	return rc;
}

/* Copy what is buffered into buf (up to max); 0 when nothing is. */
static size_t stream_copy(struct server_sse_stream *st, char *buf, size_t max)
{
	size_t n = st->out.len - st->off;

	if (n > max)
		n = max;
	memcpy(buf, st->out.p + st->off, n);
	st->off += n;
	if (st->off == st->out.len) {
		cp_buf_reset(&st->out);
		st->off = 0;
	}
	st->last_ms = cp_mono_ms();
	return n;
}

/* libmicrohttpd's content reader: on a listener thread, whenever the
 * socket can take more. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct server_sse_stream *st = cls;
	struct server_sse *s = st->s;
	static const char keepalive[] = ": keepalive\n\n";
	cp_rc rc;

	(void)pos;
	if (max == 0)
		return 0;
	if (st->off < st->out.len)
		return (ssize_t)stream_copy(st, buf, max);
	if (st->fresh) {
		/* Something at once, so the client sees the stream open. */
		st->fresh = false;
		if (cp_buf_addf(&st->out, "retry: 2000\n\n") != CP_OK)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		return (ssize_t)stream_copy(st, buf, max);
	}
	for (;;) {
		pthread_mutex_lock(&s->lock);
		if (s->stopping) {
			pthread_mutex_unlock(&s->lock);
			return MHD_CONTENT_READER_END_OF_STREAM;
		}
		if (st->gone) {
			pthread_mutex_unlock(&s->lock);
			return MHD_CONTENT_READER_END_WITH_ERROR;
		}
		if (!st->pending && !st->more) {
			if (st->keepalive) {
				struct db *db = db_thread();
				st->keepalive = false;
				pthread_mutex_unlock(&s->lock);
				if (!db || stream_allowed(db, st) != CP_OK)
					return MHD_CONTENT_READER_END_OF_STREAM;
				if (cp_buf_add(&st->out, keepalive, sizeof(keepalive) - 1) != CP_OK)
					return MHD_CONTENT_READER_END_WITH_ERROR;
				return (ssize_t)stream_copy(st, buf, max);
			}
			/* Caught up: sleep until a commit or the tick resumes us. */
			st->suspended = true;
			MHD_suspend_connection(st->c);
			pthread_mutex_unlock(&s->lock);
			return 0;
		}
		st->pending = false; /* a commit from now on sets it again */
		pthread_mutex_unlock(&s->lock);
		rc = stream_read(st);
		if (rc == CP_ERR_NOT_FOUND) /* revoked: a clean end, not an error */
			return MHD_CONTENT_READER_END_OF_STREAM;
		if (rc != CP_OK)
			return MHD_CONTENT_READER_END_WITH_ERROR;
		if (st->out.len > 0)
			return (ssize_t)stream_copy(st, buf, max);
	}
}

static void stream_done(void *cls)
{
	server_sse_stream_free(cls);
}

struct MHD_Response *server_sse_response(struct server_sse_stream *st, struct MHD_Connection *c)
{
	struct MHD_Response *r;

	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

	assert(st && c);
	pthread_mutex_lock(&st->s->lock);
	st->c = c;
	st->fd = ci ? ci->connect_fd : -1;
	pthread_mutex_unlock(&st->s->lock);
	r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, st,
					      stream_done);
	if (!r)
		server_sse_stream_free(st);
	return r;
}
