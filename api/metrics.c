/*
 * metrics.c - GET /metrics: the Prometheus text. The counters and their
 * rendering belong to the running process (server/metrics.c); the handler
 * reaches them through api_ctx.metrics_render so that api/ does not
 * include server/.
 */
#include "api/api.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

void api_metrics(struct api_req *req, struct api_resp *resp)
{
	char *text = NULL;

	/* The route's SERVER_AUTH_METRICS let any valid key (or none, when
	 * metrics_public) through; without metrics_public it is the operator's. */
	if (!req->ctx->cfg->metrics_public && !api_operator_or_reply(req, resp))
		return;
	assert(req->ctx->metrics_render);
	text = req->ctx->metrics_render ? req->ctx->metrics_render(req->db, req->ctx) : NULL;
	if (!text) {
		api_problem(resp, 500, "out of memory rendering metrics", NULL);
		return;
	}
	api_reply_text(resp, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
	free(text);
}
