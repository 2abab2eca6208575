/*
 * http01.c - the HTTP-01 challenge responder: its own listener (port 80 in
 * production; edge servers forward /.well-known/acme-challenge/ to it)
 * answering GET /.well-known/acme-challenge/{token} with the key
 * authorization of an order in flight, read from the database so that any
 * process, after any restart, answers for every order. A token is answered
 * only to the Host its authorization is for (case-folded, port and trailing
 * dot removed; the CA sends "name:port") and only while that authorization
 * is pending: a token is no licence to validate some other name through
 * this responder. Everything else is 404. Bodies are ignored and never
 * read. The listener has the API's limits (server_listener_*).
 */
#include "server/server_internal.h"

#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#define CHALLENGE_PREFIX "/.well-known/acme-challenge/"
#define TOKEN_MAX 256

#define HOST_MAX 253

struct server_http01 {
	struct server_listener *listener;
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

/* The Host header as an identifier: lower case, without port and trailing
 * dot, into out. False when absent, empty or too long. */
static bool host_normalize(const char *host, char out[HOST_MAX + 2])
{
	const char *end;
	size_t n;

	if (!host)
		return false;
	if (host[0] == '[') {
		/* An IPv6 literal: the name is inside the brackets. */
		host++;
		end = strchr(host, ']');
		if (!end)
			return false;
	} else {
		end = strrchr(host, ':');
		if (!end)
			end = host + strlen(host);
	}
	n = (size_t)(end - host);
	if (n > 0 && host[n - 1] == '.')
		n--;
	if (n == 0 || n > HOST_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		out[i] = (host[i] >= 'A' && host[i] <= 'Z') ? (char)(host[i] - 'A' + 'a') : host[i];
	out[n] = '\0';
	return true;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *body,
			     bool close)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_MUST_COPY);
	enum MHD_Result ret;

	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/plain");
	MHD_add_response_header(r, "Cache-Control", "no-store");
	if (close)
		MHD_add_response_header(r, "Connection", "close");
	ret = MHD_queue_response(c, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *upload,
				  size_t *upload_size, void **con_cls)
{
	static int marker;
	const char *token, *why = NULL;
	char host[HOST_MAX + 2];
	char *ka = NULL;
	struct db *db;
	enum MHD_Result ret;
	int bad;
	cp_rc rc;

	(void)cls;
	(void)version;
	(void)upload;
	if (!*con_cls) {
		*con_cls = &marker;
		/* No body is ever read here, so the limit is 0 bytes. */
		bad = server_listener_check(c, 0, &why);
		if (bad && bad != 413) {
			server_listener_answer_early(c);
			return reply(c, (unsigned)bad,
				     bad == 501 ? "not implemented\n" : "bad request\n", true);
		}
		return MHD_YES;
	}
	if (*upload_size) {
		*upload_size = 0; /* discard any body */
		return MHD_YES;
	}
	server_listener_received(c);
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return reply(c, MHD_HTTP_NOT_FOUND, "not found\n", false);
	if (strncmp(url, CHALLENGE_PREFIX, strlen(CHALLENGE_PREFIX)) != 0)
		return reply(c, MHD_HTTP_NOT_FOUND, "not found\n", false);
	token = url + strlen(CHALLENGE_PREFIX);
	if (!token_valid(token) ||
	    !host_normalize(MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host"), host))
		return reply(c, MHD_HTTP_NOT_FOUND, "not found\n", false);
	db = db_thread();
	if (!db)
		return reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable\n", false);
	rc = db_http01_key_authorization(db, token, host, &ka);
	if (rc == CP_ERR_NOT_FOUND)
		ret = reply(c, MHD_HTTP_NOT_FOUND, "not found\n", false);
	else if (rc != CP_OK)
		ret = reply(c, MHD_HTTP_SERVICE_UNAVAILABLE, "unavailable\n", false);
	else
		ret = reply(c, MHD_HTTP_OK, ka, false);
	cp_log_json(CP_LOG_DEBUG, "http01.request",
		    json_pack("{s:s,s:s,s:i}", "token", token, "host", host, "status",
			      rc == CP_OK	       ? 200
			      : rc == CP_ERR_NOT_FOUND ? 404
						       : 503));
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
	/* Shared: instances on one host answer the CA on one port, each from
	 * the database (any of them knows every token). */
	rc = server_listener_start(ctx->cfg, ctx->cfg->http01_listen, 4, on_request, h, NULL, true,
				   &h->listener);
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
	server_listener_stop(h->listener);
	free(h);
	cp_logf(CP_LOG_INFO, "http01.stopped", "HTTP-01 responder stopped");
}
