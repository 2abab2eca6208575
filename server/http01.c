/*
 * http01.c - the HTTP-01 challenge responder: its own listener (port 80 in
 * production; edge servers forward /.well-known/acme-challenge/ to it)
 * answering GET /.well-known/acme-challenge/{token} with the key
 * authorization of an order in flight, read from the database so that any
 * process, after any restart, answers for every order. Any Host header is
 * accepted (the CA sends "name:port"); the token alone identifies the
 * challenge. Everything else is 404. Bodies are ignored and never read.
 */
#include "server/server_internal.h"

#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#define CHALLENGE_PREFIX "/.well-known/acme-challenge/"
#define TOKEN_MAX 256

struct server_http01 {
	struct MHD_Daemon *daemon;
};

static bool token_valid(const char *t)
{
	size_t n = strlen(t);

	if (n == 0 || n > TOKEN_MAX)
		return false;
	for (; *t; t++)
		if (!((*t >= 'A' && *t <= 'Z') || (*t >= 'a' && *t <= 'z') ||
		      (*t >= '0' && *t <= '9') || *t == '-' || *t == '_'))
			return false;
	return true;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/plain");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	static int marker;
	const char *token;
	char *ka = NULL;
	struct db *db;
	enum MHD_Result ret;
	cp_rc rc;

	(void)cls;
	(void)version;
	(void)upload;
	if (!*con_cls) {
		*con_cls = &marker;
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0; /* discard any body */
		return MHD_YES;
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(c, MHD_HTTP_NOT_FOUND, "not found\n");
	if (strncmp(url, CHALLENGE_PREFIX, strlen(CHALLENGE_PREFIX)) != 0)
		return reply(c, MHD_HTTP_NOT_FOUND, "not found\n");
	token = url + strlen(CHALLENGE_PREFIX);
	if (!token_valid(token))
		return reply(c, MHD_HTTP_NOT_FOUND, "not found\n");
	db = db_thread();
	if (!db)
		return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable\n");
	rc = db_http01_key_authorization(db, token, &ka);
	if (rc == CP_ERR_NOT_FOUND)
		ret = reply(c, MHD_HTTP_NOT_FOUND, "not found\n");
	else if (rc != CP_OK)
		ret = reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable\n");
	else
		ret = reply(c, MHD_HTTP_OK, ka);
	cp_log_json(CP_LOG_DEBUG, "http01.request",
		    json_pack("{s:s,s:i}", "token", token,
			      "status", rc == CP_OK ? 200 : rc == CP_ERR_NOT_FOUND ? 404 : 503));
	free(ka);
	return ret;
}

cp_rc server_http01_start(const struct api_ctx *ctx, struct server_http01 **out)
{
	struct server_http01 *h;
	cp_rc rc;

	*out = NULL;
	if (!ctx->cfg->http01_listen || !ctx->cfg->http01_listen[0])
		return CP_OK; /* turned off */
	h = calloc(1, sizeof(*h));
	if (!h)
		return CP_ERR_NOMEM;
	rc = server_listen_daemon(ctx->cfg->http01_listen, 4, on_request, h, NULL, &h->daemon);
	if (rc != CP_OK) {
		free(h);
		return rc;
	}
	cp_log_json(CP_LOG_INFO, "http01.listening",
		    json_pack("{s:s}", "listen", ctx->cfg->http01_listen));
	*out = h;
	return CP_OK;
}

void server_http01_stop(struct server_http01 *h)
{
	if (!h)
		return;
	MHD_stop_daemon(h->daemon);
	free(h);
}
