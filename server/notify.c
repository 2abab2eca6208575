/*
 * notify.c - the listener thread of an instance on a database server
 * (issue 11): one connection of its own LISTENs for the other instances'
 * wake-ups and turns them into this process's (cp_kick for workers, the
 * event hook for streams). Without it an instance still sees the others'
 * work by polling; with it, within milliseconds. A lost connection is
 * reopened after a pause, whatever the server does meanwhile.
 */
#include "server/server_internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOTIFY_WAIT_MS 500    /* how soon a stop request is seen */
#define NOTIFY_REOPEN_MS 1000 /* between attempts to reconnect */

struct server_notify {
	char *database;
	pthread_t thread;
	atomic_bool stop;
};

/* One connection's life: open, LISTEN, wait until stop or an error. */
static void listen_once(struct server_notify *n)
{
	struct db *db = NULL;
	char channel[64], payload[64];
	bool woke;

	if (db_open(n->database, &db) != CP_OK || db_listen(db, DB_CHANNEL_JOBS) != CP_OK ||
	    db_listen(db, DB_CHANNEL_EVENTS) != CP_OK) {
		cp_logf(CP_LOG_WARN, "notify.listen",
			"cannot listen for other instances' wake-ups");
		goto out;
	}
	while (!atomic_load(&n->stop)) {
		if (db_notify_wait(db, NOTIFY_WAIT_MS, &woke, channel, payload, sizeof(channel)) !=
		    CP_OK) {
			cp_logf(CP_LOG_WARN, "notify.listen",
				"listener connection lost; reopening");
			break;
		}
		if (!woke)
			continue;
		if (strcmp(channel, DB_CHANNEL_JOBS) == 0)
			cp_kick();
		else if (strcmp(channel, DB_CHANNEL_EVENTS) == 0)
			db_event_hook_run(payload);
	}
out:
	db_close(db);
}

static void *notify_main(void *arg)
{
	struct server_notify *n = arg;

	while (!atomic_load(&n->stop)) {
		listen_once(n);
		for (int slept = 0; slept < NOTIFY_REOPEN_MS && !atomic_load(&n->stop);
		     slept += 100)
			usleep(100 * 1000);
	}
	return NULL;
}

cp_rc server_notify_start(const struct cp_config *cfg, struct server_notify **out)
{
	struct server_notify *n;
	struct db *probe = db_thread();

	*out = NULL;
	if (!probe || !db_has_notify(probe))
		return CP_OK; /* one process on a file: its own wake-ups suffice */
	n = calloc(1, sizeof(*n));
	if (!n || !(n->database = cp_strdup(cfg->database))) {
		free(n);
		return CP_ERR_NOMEM;
	}
	atomic_init(&n->stop, false);
	if (pthread_create(&n->thread, NULL, notify_main, n) != 0) {
		free(n->database);
		free(n);
		return CP_ERR_INTERNAL;
	}
	*out = n;
	return CP_OK;
}

void server_notify_stop(struct server_notify *n)
{
	if (!n)
		return;
	atomic_store(&n->stop, true);
	pthread_join(n->thread, NULL);
	free(n->database);
	free(n);
}
