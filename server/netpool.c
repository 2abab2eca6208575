/*
 * netpool.c - the small pool of "net" threads that run the API requests
 * which may wait on the network (DNS lookups, webhook URL checks, test
 * deliveries), so that no such wait ever holds a libmicrohttpd thread.
 *
 * Fairness: each tenant may hold at most cap slots (queued or running);
 * a slot is taken with server_netpool_acquire before the request is
 * suspended, so a tenant whose resolver never answers fills at most its own
 * slots and every other tenant's request still finds a free thread when
 * threads > cap. The queue is bounded by the slot table (tenants x cap).
 * Each thread opens its own database connection (db_thread) and closes it
 * when it exits.
 */
#include "server/server_internal.h"

#include <assert.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Distinct tenants that may hold slots at once; beyond it, acquire fails. */
#define SLOT_TENANTS 256

struct net_job {
	struct net_job *next;
	server_net_fn fn;
	server_net_done done;
	void *arg;
	char tenant[CP_UUID_LEN + 1];
};

struct server_netpool {
	pthread_mutex_t lock;
	pthread_cond_t cv;
	struct net_job *head, *tail; /* FIFO */
	bool stopping;
	int cap;
	pthread_t *threads;
	int n;
	struct {
		char tenant[CP_UUID_LEN + 1];
		int used;
	} slots[SLOT_TENANTS];
};

/* The slot entry of tenant (creating it when create), or NULL. Lock held. */
static int slot_find(struct server_netpool *p, const char *tenant, bool create)
{
	int free_i = -1;

	for (int i = 0; i < SLOT_TENANTS; i++) {
		if (p->slots[i].used > 0 && strcmp(p->slots[i].tenant, tenant) == 0)
			return i;
		if (p->slots[i].used == 0 && free_i < 0)
			free_i = i;
	}
	if (!create || free_i < 0)
		return -1;
	snprintf(p->slots[free_i].tenant, sizeof(p->slots[free_i].tenant), "%s", tenant);
	return free_i;
}

cp_rc server_netpool_acquire(struct server_netpool *p, const char *tenant)
{
	cp_rc rc = CP_ERR_BUSY;
	int i;

	assert(p && tenant && strlen(tenant) < sizeof(p->slots[0].tenant));
	pthread_mutex_lock(&p->lock);
	i = p->stopping ? -1 : slot_find(p, tenant, true);
	if (i >= 0 && p->slots[i].used >= p->cap) {
		rc = CP_ERR_RATE_LIMITED;
	} else if (i >= 0) {
		p->slots[i].used++;
		rc = CP_OK;
	}
	pthread_mutex_unlock(&p->lock);
	return rc;
}

/* Give back one slot of tenant. Lock held. */
static void slot_release(struct server_netpool *p, const char *tenant)
{
	int i = slot_find(p, tenant, false);

	assert(i >= 0 && p->slots[i].used > 0);
	if (i >= 0)
		p->slots[i].used--;
}

void server_netpool_submit(struct server_netpool *p, const char *tenant, server_net_fn fn,
			   server_net_done done, void *arg)
{
	struct net_job *j = calloc(1, sizeof(*j));
	bool run_now = false;

	assert(p && tenant && strlen(tenant) < sizeof(p->slots[0].tenant) && fn && done);
	pthread_mutex_lock(&p->lock);
	if (!j || p->stopping) {
		/* No thread will take it: the caller's callbacks answer at once
		 * (run = false) and the slot goes back. */
		slot_release(p, tenant);
		run_now = true;
	} else {
		j->fn = fn;
		j->done = done;
		j->arg = arg;
		snprintf(j->tenant, sizeof(j->tenant), "%s", tenant);
		if (p->tail)
			p->tail->next = j;
		else
			p->head = j;
		p->tail = j;
		pthread_cond_signal(&p->cv);
	}
	pthread_mutex_unlock(&p->lock);
	if (run_now) {
		free(j);
		fn(arg, false);
		done(arg);
	}
}

static void *net_main(void *arg)
{
	struct server_netpool *p = arg;

	for (;;) {
		struct net_job *j;
		bool run;

		pthread_mutex_lock(&p->lock);
		while (!p->head && !p->stopping)
			pthread_cond_wait(&p->cv, &p->lock);
		j = p->head;
		if (!j) {
			pthread_mutex_unlock(&p->lock);
			break; /* stopping and nothing queued */
		}
		p->head = j->next;
		if (!p->head)
			p->tail = NULL;
		/* Queued work at shutdown is answered, not run: a handler may
		 * wait for its whole network budget. */
		run = !p->stopping;
		pthread_mutex_unlock(&p->lock);
		j->fn(j->arg, run);
		/* The slot goes back before done answers the client, so that
		 * its next request finds it free. */
		pthread_mutex_lock(&p->lock);
		slot_release(p, j->tenant);
		pthread_mutex_unlock(&p->lock);
		j->done(j->arg);
		free(j);
	}
	db_thread_close();
	return NULL;
}

cp_rc server_netpool_start(int threads, int cap, struct server_netpool **out)
{
	struct server_netpool *p = calloc(1, sizeof(*p));

	assert(out && threads > 0 && cap > 0);
	*out = NULL;
	if (!p)
		return CP_ERR_NOMEM;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->cap = cap;
	p->threads = calloc((size_t)threads, sizeof(*p->threads));
	if (!p->threads) {
		server_netpool_free(p);
		return CP_ERR_NOMEM;
	}
	for (int i = 0; i < threads; i++) {
		if (pthread_create(&p->threads[i], NULL, net_main, p) != 0) {
			server_netpool_free(p);
			return CP_ERR_INTERNAL;
		}
		p->n++;
	}
	*out = p;
	return CP_OK;
}

void server_netpool_stop(struct server_netpool *p)
{
	int n;

	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cv);
	n = p->n;
	p->n = 0; /* a second stop joins nothing */
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < n; i++)
		pthread_join(p->threads[i], NULL);
	assert(!p->head);
}

void server_netpool_free(struct server_netpool *p)
{
	if (!p)
		return;
	server_netpool_stop(p);
	free(p->threads);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->lock);
	free(p);
}
