/*
 * helpers.c - what every handler shares: problem+json replies, the one map
 * from cp_rc to HTTP status, tenant/operator checks, body validation through
 * the JSON spec helper, pagination cursors and audit records.
 */
#include "api/api.h"
#include "common/buf.h"
#include "crypto/crypto.h"

#include <assert.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void api_reply(struct api_resp *resp, int status, json_t *body)
{
	assert(resp && status >= 100 && status <= 599);

	json_decref(resp->json);
	resp->status = status;
	resp->json = body;
	resp->content_type = "application/json";
}

void api_reply_text(struct api_resp *resp, int status, const char *content_type, const char *text,
		    size_t len)
{
	assert(resp && (text || len == 0) && status >= 100 && status <= 599);

	free(resp->text);
	resp->status = status;
	resp->text = malloc(len + 1);
	if (resp->text) {
		memcpy(resp->text, text, len);
		resp->text[len] = '\0';
	}
	resp->text_len = resp->text ? len : 0;
	resp->content_type = content_type;
}

void api_reply_buf(struct api_resp *resp, int status, struct cp_buf *b)
{
	assert(resp && b && status >= 100 && status <= 599);

	json_decref(resp->json);
	resp->json = NULL;
	free(resp->text);
	resp->status = status;
	resp->text = cp_buf_take(b, &resp->text_len);
	resp->content_type = "application/json";
}

static const char *status_title(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 412:
		return "Precondition Failed";
	case 413:
		return "Content Too Large";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	default:
		return "Error";
	}
}

void api_problem(struct api_resp *resp, int status, const char *detail, json_t *errors)
{
	char type[96];
	json_t *p;

	assert(resp && status >= 400 && status <= 599);
	snprintf(type, sizeof(type), "https://certplane.dev/problems/%d", status);
	p = json_pack("{s:s,s:s,s:i,s:s}", "type", type, "title", status_title(status), "status",
		      status, "detail", detail ? detail : status_title(status));
	if (p)
		json_object_set_new(p, "errors", errors ? errors : json_array());
	else
		json_decref(errors);
	api_reply(resp, status, p);
	resp->content_type = "application/problem+json";
}

void api_problem_field(struct api_resp *resp, const char *field, const char *message)
{
	json_t *errors = json_array();
	char detail[256];

	assert(resp && field && message);
	cp_spec_error(errors, field, message);
	snprintf(detail, sizeof(detail), "%s %s", field, message);
	api_problem(resp, 422, detail, errors);
}

void api_scope_problem(struct api_resp *resp, const struct db_scope_verdict *v, const char *array)
{
	json_t *errors = NULL;
	char field[48];
	bool owned;

	assert(resp && v && v->reason && array);
	owned = strcmp(v->reason, "hostname_owned_by_another_tenant") == 0;
	errors = json_array();
	snprintf(field, sizeof(field), "%s[%zu]", array, v->index);
	cp_spec_error(errors, field,
		      owned ? "is verified by another tenant" : "is an edge name of the service");
	api_problem(resp, owned ? 409 : 422, v->detail, errors);
	if (resp->json)
		json_object_set_new(resp->json, "reason", json_string(v->reason));
}

void api_reply_rc(struct api_resp *resp, cp_rc rc, const char *what)
{
	char detail[160];

	assert(resp);
	switch (rc) {
	case CP_OK:
		return;
	case CP_ERR_NOT_FOUND:
		snprintf(detail, sizeof(detail), "no such %s", what ? what : "object");
		api_problem(resp, 404, detail, NULL);
		return;
	case CP_ERR_CONFLICT:
		snprintf(detail, sizeof(detail), "the %s conflicts with existing state",
			 what ? what : "request");
		api_problem(resp, 409, detail, NULL);
		return;
	case CP_ERR_INVALID:
		api_problem(resp, 422, "the request breaks a rule", NULL);
		return;
	case CP_ERR_TOO_LARGE:
		api_problem(resp, 413, "the request is too large", NULL);
		return;
	case CP_ERR_UNAUTHORIZED:
		api_problem(resp, 401, "missing or invalid API key", NULL);
		return;
	case CP_ERR_RATE_LIMITED:
		api_problem(resp, 429, "rate limit exceeded", NULL);
		if (resp->retry_after <= 0)
			resp->retry_after = 1;
		return;
	case CP_ERR_BUSY:
		api_problem(resp, 503, "the database is busy; retry shortly", NULL);
		resp->retry_after = 1;
		resp->retryable = true;
		return;
	case CP_ERR_UPSTREAM:
		api_problem(resp, 502, "an upstream service failed", NULL);
		return;
	default:
		api_problem(resp, 500, "internal error", NULL);
		return;
	}
}

bool api_tenant_or_reply(struct api_req *req, struct api_resp *resp)
{
	assert(req && resp);

	if (req->tenant_id)
		return true;
	api_problem(resp, 400,
		    "this endpoint acts within a tenant: the operator must send X-Tenant-ID", NULL);
	return false;
}

bool api_operator_or_reply(struct api_req *req, struct api_resp *resp)
{
	assert(req && resp);

	if (req->is_operator)
		return true;
	api_problem(resp, 403, "this endpoint needs the operator key", NULL);
	return false;
}

bool api_object_body_or_reply(struct api_req *req, struct api_resp *resp)
{
	assert(req && resp);
	if (!json_is_object(req->body)) {
		api_problem(resp, req->body ? 422 : 400,
			    req->body ? "the body must be a JSON object"
				      : "a JSON body is required",
			    NULL);
		return false;
	}
	return true;
}

bool api_body_or_reply(struct api_req *req, struct api_resp *resp, const struct cp_spec *spec)
{
	json_t *errors;

	assert(req && resp && spec);
	if (!api_object_body_or_reply(req, resp))
		return false;
	errors = json_array();
	if (cp_spec_parse(req->body, spec, errors) == CP_OK) {
		json_decref(errors);
		return true;
	}
	api_problem(resp, 422, "the body has invalid fields", errors);
	return false;
}

bool api_change_or_reply(struct api_req *req, struct api_resp *resp, const struct cp_spec *spec)
{
	return api_tenant_or_reply(req, resp) && api_id_or_reply(req, resp, 0) &&
	       api_body_or_reply(req, resp, spec);
}

bool api_id_or_reply(struct api_req *req, struct api_resp *resp, int i)
{
	assert(req && resp && i >= 0 && (size_t)i < CP_ARRAY_LEN(req->params));

	if (cp_uuid_valid(req->params[i]))
		return true;
	api_problem(resp, 404, "no such object", NULL);
	return false;
}

const char *api_query(struct api_req *req, const char *name)
{
	assert(req && name);

	return json_string_value(json_object_get(req->query, name));
}

/* Cursors are opaque to clients: "c" + decimal sequence number. */
bool api_page_or_reply(struct api_req *req, struct api_resp *resp, struct db_page *pg)
{
	const char *limit = api_query(req, "limit"), *cursor = api_query(req, "cursor");
	const char *order = api_query(req, "order");
	char *end;

	assert(req && resp && pg);
	pg->after = 0;
	pg->limit = 50;
	pg->desc = false;
	/* ?order=desc lists newest first; a cursor walks on in the order of
	 * the page that returned it (the client repeats ?order). */
	if (order) {
		if (strcmp(order, "desc") != 0 && strcmp(order, "asc") != 0) {
			api_problem_field(resp, "order", "must be asc or desc");
			return false;
		}
		pg->desc = order[0] == 'd';
	}
	if (limit) {
		long v = strtol(limit, &end, 10);
		if (!*limit || *end || v < 1 || v > 500) {
			api_problem_field(resp, "limit", "must be an integer from 1 to 500");
			return false;
		}
		pg->limit = (int)v;
	}
	if (cursor) {
		long long v;
		if (cursor[0] != 'c' || !cursor[1])
			goto bad_cursor;
		v = strtoll(cursor + 1, &end, 10);
		if (*end || v < 0)
			goto bad_cursor;
		pg->after = v;
	}
	return true;
bad_cursor:
	api_problem_field(resp, "cursor", "is not a cursor this API returned");
	return false;
}

void api_reply_list(struct api_resp *resp, struct db_list *list)
{
	char cursor[32];
	json_t *body;

	assert(resp && list && list->data);
	snprintf(cursor, sizeof(cursor), "c%lld", (long long)list->next);
	body = json_pack("{s:o,s:o}", "data", list->data, "next_cursor",
			 list->next ? json_string(cursor) : json_null());
	list->data = NULL;
	api_reply(resp, 200, body);
}

cp_rc api_audit(struct api_req *req, const char *action, const char *resource_type,
		const char *resource_id, json_t *detail)
{
	assert(req && req->db && action && resource_type);

	return db_audit_add(req->db, req->tenant_id, req->actor, action, resource_type, resource_id,
			    detail);
}

void api_delete_resource(struct api_req *req, struct api_resp *resp, api_delete_fn del,
			 const char *resource_type, const char *what, const char *conflict_detail)
{
	api_delete_resource_if(req, resp, del, NULL, resource_type, what, conflict_detail);
}

void api_delete_resource_if(struct api_req *req, struct api_resp *resp, api_delete_fn del,
			    const struct api_repr *repr, const char *resource_type,
			    const char *what, const char *conflict_detail)
{
	char action[64];
	cp_rc rc;

	assert(req && resp && del && resource_type);
	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	snprintf(action, sizeof(action), "%s.delete", resource_type);
	rc = repr ? db_begin_rmw(req->db) : db_begin(req->db);
	if (rc == CP_OK && repr && !api_if_match_or_reply(req, resp, repr, req->params[0]))
		return;
	if (rc == CP_OK)
		rc = del(req->db, req->tenant_id, req->params[0]);
	if (rc == CP_OK)
		rc = api_audit(req, action, resource_type, req->params[0], NULL);
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc == CP_OK) {
		resp->status = 204;
		return;
	}
	db_rollback(req->db);
	if (rc == CP_ERR_CONFLICT && conflict_detail) {
		api_problem(resp, 409, conflict_detail, NULL);
		return;
	}
	api_reply_rc(resp, rc, what);
}

/* ------------------------------------------------------------ entity tags */

void api_etag_of(const char *p, size_t n, char out[24])
{
	/* A word at a time (multiply-xorshift, as in MurmurHash3's finaliser):
	 * every GET of one object hashes its bytes, so this is on the read
	 * path; a 64-bit tag makes two versions of one object colliding
	 * negligible. The tag depends on the host's byte order, which is
	 * fine: it only has to be stable for one representation. */
	uint64_t h = 0x9e3779b97f4a7c15ull ^ n, w;

	assert(p || n == 0);
	for (; n >= 8; p += 8, n -= 8) {
		memcpy(&w, p, 8);
		h = (h ^ w) * 0xff51afd7ed558ccdull;
		h ^= h >> 32;
	}
	w = 0;
	if (n)
		memcpy(&w, p, n);
	h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
	h ^= h >> 29;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 32;
	/* "%016llx" in quotes, by hand: snprintf was ~2% of a cached GET. */
	out[0] = '"';
	for (int i = 16; i >= 1; i--, h >>= 4)
		out[i] = "0123456789abcdef"[h & 0xf];
	out[17] = '"';
	out[18] = '\0';
}

/* The current tag of id as repr represents it, into out. */
static cp_rc etag_current(struct api_req *req, const struct api_repr *repr, const char *id,
			  char out[24])
{
	struct cp_buf b;
	json_t *obj = NULL;
	char *text = NULL;
	cp_rc rc;

	assert(req && repr && (repr->render != NULL) != (repr->get != NULL) && id);
	if (repr->render) {
		cp_buf_init(&b, 16u << 20);
		rc = repr->render(req->db, req->tenant_id, id, &b);
		if (rc == CP_OK)
			api_etag_of(b.p, b.len, out);
		cp_buf_free(&b);
		return rc;
	}
	rc = repr->get(req->db, req->tenant_id, id, &obj);
	if (rc != CP_OK)
		return rc;
	text = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	if (!text)
		return CP_ERR_NOMEM;
	api_etag_of(text, strlen(text), out);
	free(text);
	return CP_OK;
}

/* Whether the If-Match / If-None-Match list hdr names tag (or is "*").
 * Only strong tags compare (weak "W/" entries never match, RFC 9110 8.8.3.2). */
static bool etag_listed(const char *hdr, const char *tag)
{
	size_t tl = strlen(tag);
	const char *p = hdr;

	assert(hdr && tag);
	while (*p) {
		size_t n;
		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		n = strcspn(p, ",");
		while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
			n--;
		if ((n == 1 && p[0] == '*') || (n == tl && memcmp(p, tag, tl) == 0))
			return true;
		p += strcspn(p, ",");
	}
	return false;
}

void api_etag_set(struct api_req *req, struct api_resp *resp, const struct api_repr *repr,
		  const char *id)
{
	char tag[24];

	assert(req && resp && repr && id);
	if (etag_current(req, repr, id, tag) == CP_OK)
		memcpy(resp->etag, tag, sizeof(tag));
}

bool api_if_match_or_reply(struct api_req *req, struct api_resp *resp, const struct api_repr *repr,
			   const char *id)
{
	char tag[24];
	cp_rc rc;

	assert(req && resp && repr && id);
	if (!req->if_match)
		return true;
	if (strlen(req->if_match) > 4096) {
		db_rollback(req->db);
		api_problem_field(resp, "If-Match", "must be at most 4096 characters");
		return false;
	}
	rc = etag_current(req, repr, id, tag);
	if (rc == CP_ERR_NOT_FOUND)
		return true;
	if (rc != CP_OK) {
		db_rollback(req->db);
		api_reply_rc(resp, rc, NULL);
		return false;
	}
	if (etag_listed(req->if_match, tag))
		return true;
	db_rollback(req->db);
	api_problem(resp, 412,
		    "If-Match does not name the current ETag: the object changed since it was "
		    "read; GET it again and retry",
		    NULL);
	memcpy(resp->etag, tag, sizeof(tag));
	return false;
}

/* Reply 200 with body[0..len) and tag, or 304 when If-None-Match lists the
 * tag. b: the buffer holding body, taken (NULL: body is copied). */
static void reply_entity(struct api_req *req, struct api_resp *resp, const char *body, size_t len,
			 const char tag[24], struct cp_buf *b)
{
	assert(req && resp && body && tag);
	if (req->if_none_match && strlen(req->if_none_match) <= 4096 &&
	    etag_listed(req->if_none_match, tag)) {
		json_decref(resp->json);
		resp->json = NULL;
		free(resp->text);
		resp->text = NULL;
		resp->text_len = 0;
		resp->status = 304;
	} else if (b) {
		api_reply_buf(resp, 200, b);
	} else {
		api_reply_text(resp, 200, "application/json", body, len);
	}
	memcpy(resp->etag, tag, 24);
}

void api_reply_entity_buf(struct api_req *req, struct api_resp *resp, struct cp_buf *b)
{
	char tag[24];

	assert(req && resp && b);
	api_etag_of(b->p, b->len, tag);
	reply_entity(req, resp, b->p, b->len, tag, b);
}

void api_reply_entity(struct api_req *req, struct api_resp *resp, json_t *obj)
{
	struct cp_buf b;
	char *text;

	assert(req && resp && obj);
	text = json_dumps(obj, JSON_COMPACT);
	json_decref(obj);
	cp_buf_init(&b, 64u << 20);
	if (!text || cp_buf_add(&b, text, strlen(text)) != CP_OK) {
		free(text);
		cp_buf_free(&b);
		api_reply_rc(resp, CP_ERR_NOMEM, NULL);
		return;
	}
	free(text);
	api_reply_entity_buf(req, resp, &b);
	cp_buf_free(&b);
}

void api_get_resource(struct api_req *req, struct api_resp *resp, api_get_fn get, const char *what)
{
	json_t *obj = NULL;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	rc = get(req->db, req->tenant_id, req->params[0], &obj);
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, what);
		return;
	}
	api_reply_entity(req, resp, obj);
}

/*
 * With the read cache on (api_ctx.read_cache, and an engine that keeps a
 * write generation), a hit answers the bytes and tag rendered earlier in
 * this second under the current generation; the caller's authentication
 * and the tenant check above have run for this request, as on a miss. The
 * generation and the second are read BEFORE the render begins its read
 * transaction (see api/read_cache.c and db/driver_sqlite.c for the race).
 */
void api_render_resource(struct api_req *req, struct api_resp *resp, api_render_fn render,
			 const char *what)
{
	struct api_cached hit;
	struct cp_buf b;
	uint64_t gen = 0;
	int64_t second = 0;
	bool cache;
	char tag[24];
	cp_rc rc;

	assert(req && resp && render);
	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0))
		return;
	cache = req->ctx->read_cache && db_write_gen(req->db, &gen);
	if (cache) {
		second = cp_now();
		if (api_read_cache_get(render, req->tenant_id, req->params[0], gen, second, &hit)) {
			reply_entity(req, resp, hit.body, hit.len, hit.etag, NULL);
			return;
		}
	}
	cp_buf_init(&b, 16u << 20);
	/* One allocation for a typical object (a certificate is ~1 KiB). */
	rc = cp_buf_reserve(&b, 2048);
	if (rc == CP_OK)
		rc = render(req->db, req->tenant_id, req->params[0], &b);
	if (rc == CP_OK && b.len == 0)
		rc = CP_ERR_INTERNAL;
	if (rc == CP_OK) {
		api_etag_of(b.p, b.len, tag);
		if (cache)
			api_read_cache_put(render, req->tenant_id, req->params[0], gen, second, b.p,
					   b.len, tag);
		reply_entity(req, resp, b.p, b.len, tag, &b);
	} else {
		api_reply_rc(resp, rc, what);
	}
	cp_buf_free(&b);
}

void api_reply_list_rc(struct api_resp *resp, cp_rc rc, struct db_list *list, const char *what)
{
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, what);
		return;
	}
	api_reply_list(resp, list);
}

void api_list_resource(struct api_req *req, struct api_resp *resp, api_list_fn list,
		       const char *what)
{
	struct db_page pg;
	struct db_list page;

	if (!api_tenant_or_reply(req, resp) || !api_page_or_reply(req, resp, &pg))
		return;
	api_reply_list_rc(resp, list(req->db, req->tenant_id, pg, &page), &page, what);
}

void api_list_children(struct api_req *req, struct api_resp *resp, api_exists_fn exists,
		       api_children_fn list, const char *what)
{
	struct db_page pg;
	struct db_list page;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_id_or_reply(req, resp, 0) ||
	    !api_page_or_reply(req, resp, &pg))
		return;
	rc = exists(req->db, req->tenant_id, req->params[0]);
	if (rc == CP_OK)
		rc = list(req->db, req->tenant_id, req->params[0], pg, &page);
	api_reply_list_rc(resp, rc, &page, what);
}

/* ---- CA lists ---- */

bool api_ca_known(const struct cp_config *cfg, const char *name)
{
	return strcmp(name, "letsencrypt") == 0 ||
	       (json_is_object(cfg->cas) && json_object_get(cfg->cas, name) != NULL);
}

#define API_CAS_MAX 8

bool api_ca_list_or_reply(struct api_req *req, struct api_resp *resp, const char *field,
			  const json_t *cas, bool allow_empty)
{
	size_t i, j, n = json_array_size(cas);
	json_t *v;

	assert(req && resp && field);
	if (!json_is_array(cas) || n > API_CAS_MAX || (n == 0 && !allow_empty)) {
		api_problem_field(resp, field, "must be a list of 1 to 8 CA names");
		return false;
	}
	json_array_foreach(cas, i, v)
	{
		const char *name = json_string_value(v);
		if (!name || !api_ca_known(req->ctx->cfg, name)) {
			api_problem_field(resp, field,
					  "each must be \"letsencrypt\" or a configured CA name");
			return false;
		}
		for (j = 0; j < i; j++)
			if (!strcmp(json_string_value(json_array_get(cas, j)), name)) {
				api_problem_field(resp, field, "names a CA twice");
				return false;
			}
	}
	return true;
}

/* ------------------------------------------------------------ API keys */

void api_reply_key_created(struct api_resp *resp, json_t *row, const char *key)
{
	assert(row && key);
	json_object_set_new(row, "key", json_string(key));
	api_reply(resp, 201, row);
	resp->no_store = true;
}

cp_rc api_key_mint(char **key, char hash[65], char prefix[13])
{
	uint8_t raw[32];
	char *secret = NULL;
	cp_rc rc;

	assert(key && !*key);
	rc = cp_random(raw, sizeof(raw));
	if (rc != CP_OK)
		goto out;
	secret = cp_b64url(raw, sizeof(raw));
	*key = secret ? cp_aprintf(API_KEY_PREFIX "%s", secret) : NULL;
	if (!*key) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	cp_sha256_hex(*key, strlen(*key), hash);
	snprintf(prefix, 13, "%s", *key);
out:
	crypto_wipe(raw, sizeof(raw));
	crypto_wipe_free(secret);
	return rc;
}
