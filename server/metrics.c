/*
 * metrics.c - Prometheus counters. (Minimal until the operations work
 * lands: request counts only.)
 */
#include "server/server.h"

#include <stdatomic.h>

static atomic_ulong requests_total;

void server_metrics_request(const char *route, int status, double seconds)
{
	(void)route;
	(void)status;
	(void)seconds;
	atomic_fetch_add(&requests_total, 1);
}

void server_metrics_delivery(const char *outcome)
{
	(void)outcome;
}

char *server_metrics_render(struct db *db)
{
	(void)db;
	return cp_aprintf("certplane_http_requests_total %lu\n", atomic_load(&requests_total));
}
