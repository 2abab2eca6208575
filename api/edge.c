/*
 * edge.c - certificates to the edge (issue 14): the operator's keys of
 * role "edge" (/v1/edge-keys) and the change feed those keys read,
 * GET /v1/edge/deployments?after=<cursor>&wait=<seconds>&limit=<n>.
 *
 * The feed lists, across tenants (the edge serves everyone), what each
 * production hostname serves from now on - the certificate chain and its
 * private key, opened from the key ring only here - or that it is no longer
 * served. It is a long-poll: with nothing after the cursor it waits up to
 * `wait` seconds (at most EDGE_WAIT_MAX) for an entry, looking again every
 * EDGE_POLL_MS, so it costs one index range scan a poll and works the same
 * with several instances on one database. Auditing: one audit record per
 * answer that carried entries (actor the edge key, detail the cursor range),
 * none for an empty poll, so a following edge costs one row per change
 * batch, not one per request. The route gate (server/http.c) lets only edge
 * keys in here and keeps edge keys out of everything else.
 */
#include "api/api.h"
#include "common/buf.h"
#include "crypto/crypto.h"

#include <stdlib.h>
#include <string.h>

#define EDGE_WAIT_MAX 25   /* seconds a poll may wait */
#define EDGE_POLL_MS 200   /* between looks at the feed while waiting */
#define EDGE_LIMIT_MAX 500 /* entries an answer carries at most */
#define EDGE_LIMIT_DEFAULT 100
/* An answer with keys and chains of EDGE_LIMIT_MAX entries fits. */
#define EDGE_BODY_MAX (64u << 20)

void api_edge_keys_create(struct api_req *req, struct api_resp *resp)
{
	const char *name = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_STR("name", true, &name, 1, 200),
		CP_SPEC_DONE,
	};
	char *key = NULL, hash[65], prefix[13];
	json_t *row = NULL;
	cp_rc rc;

	if (!api_operator_or_reply(req, resp) || !api_body_or_reply(req, resp, spec))
		return;
	rc = api_key_mint(&key, hash, prefix);
	if (rc != CP_OK)
		goto out;
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_edge_key_create(req->db, name, hash, prefix, &row);
	rc = db_audit_commit(req->db, rc, NULL, req->actor, "edge_key.create", "edge_key",
			     json_string_value(json_object_get(row, "id")), NULL);
	if (rc != CP_OK)
		goto out;
	api_reply_key_created(resp, row, key);
	row = NULL;
out:
	if (rc != CP_OK)
		api_reply_rc(resp, rc, "edge key");
	json_decref(row);
	/* The key exists in clear only here and in the response. */
	crypto_wipe_free(key);
}

void api_edge_keys_list(struct api_req *req, struct api_resp *resp)
{
	struct db_page pg;
	struct db_list list;
	cp_rc rc;

	if (!api_operator_or_reply(req, resp) || !api_page_or_reply(req, resp, &pg))
		return;
	rc = db_edge_key_list(req->db, pg, &list);
	api_reply_list_rc(resp, rc, &list, "edge key");
}

void api_edge_keys_delete(struct api_req *req, struct api_resp *resp)
{
	cp_rc rc;

	if (!api_operator_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	rc = db_begin(req->db);
	if (rc == CP_OK)
		rc = db_edge_key_delete(req->db, req->params[0]);
	rc = db_audit_commit(req->db, rc, NULL, req->actor, "edge_key.delete", "edge_key",
			     req->params[0], NULL);
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "edge key");
		return;
	}
	resp->status = 204;
}

/* Query parameter name as an integer in [min, max] into *out (left as is
 * when absent); false after a 422 naming it. */
static bool query_int_or_reply(struct api_req *req, struct api_resp *resp, const char *name,
			       long long min, long long max, long long *out)
{
	const char *v = api_query(req, name);
	char *end, msg[96];
	long long n;

	if (!v)
		return true;
	n = strtoll(v, &end, 10);
	if (*v && !*end && n >= min && n <= max) {
		*out = n;
		return true;
	}
	snprintf(msg, sizeof(msg), "must be an integer from %lld to %lld", min, max);
	api_problem_field(resp, name, msg);
	return false;
}

void api_edge_deployments(struct api_req *req, struct api_resp *resp)
{
	long long after = 0, wait = 0, limit = EDGE_LIMIT_DEFAULT;
	struct cp_buf b;
	int64_t last = 0, deadline;
	int count = 0;
	json_t *detail = NULL;
	cp_rc rc;

	if (!req->is_edge) { /* the route gate's job; never a tenant's data */
		api_problem(resp, 403, "this endpoint needs an edge key", NULL);
		return;
	}
	if (!query_int_or_reply(req, resp, "after", 0, INT64_MAX, &after) ||
	    !query_int_or_reply(req, resp, "wait", 0, EDGE_WAIT_MAX, &wait) ||
	    !query_int_or_reply(req, resp, "limit", 1, EDGE_LIMIT_MAX, &limit))
		return;
	cp_buf_init(&b, EDGE_BODY_MAX);
	b.wipe = true; /* private keys */
	deadline = cp_mono_ms() + wait * 1000;
	for (;;) {
		cp_buf_reset(&b);
		rc = db_edge_feed_read(req->db, req->ctx->keyring, after, (int)limit, &b, &count,
				       &last);
		if (rc != CP_OK || count > 0 || cp_mono_ms() >= deadline ||
		    (req->ctx->stopping && *req->ctx->stopping))
			break;
		cp_sleep_ms(EDGE_POLL_MS);
	}
	if (rc == CP_OK && count > 0) {
		detail = json_pack("{s:I,s:I,s:i}", "after", (json_int_t)after, "last",
				   (json_int_t)last, "entries", count);
		rc = detail ? db_audit_add(req->db, NULL, req->actor, "edge_feed.read", "edge_feed",
					   NULL, detail)
			    : CP_ERR_NOMEM;
	}
	if (rc == CP_OK) {
		/* {"data": [...], "cursor": <last>} around the rendered array. */
		struct cp_buf out;
		cp_buf_init(&out, EDGE_BODY_MAX + 64);
		out.wipe = true;
		rc = cp_buf_addf(&out, "{\"cursor\":%lld,\"data\":", (long long)last);
		if (rc == CP_OK)
			rc = cp_buf_add(&out, cp_buf_str(&b), b.len);
		if (rc == CP_OK)
			rc = cp_buf_addc(&out, '}');
		if (rc == CP_OK) {
			api_reply_buf(resp, 200, &out);
			resp->no_store = true;
		}
		cp_buf_free(&out);
	}
	if (rc != CP_OK)
		api_reply_rc(resp, rc, "edge feed");
	json_decref(detail);
	cp_buf_free(&b);
}
