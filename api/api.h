/*
 * api.h - the REST API's handlers and the request/response shapes they share
 * with the HTTP layer in server/. A handler parses and validates the request
 * (with the JSON spec helper), calls db/ (and crypto/, acme/) domain
 * functions, and fills the response; it never touches sockets. Helpers named
 * api_*_or_reply() have already written an error response when they return
 * false, so a handler just returns.
 */
#ifndef CP_API_H
#define CP_API_H

#include "common/common.h"
#include "common/config.h"
#include "db/db.h"

#include <signal.h>

struct crypto_keyring;
struct cp_buf;

/* Process-wide services handed to every handler (read-only after start). */
struct api_ctx {
	const struct cp_config *cfg;
	struct crypto_keyring *keyring;	 /* master keys for secrets at rest */
	const char *operator_token_hash; /* hex SHA-256 of the operator token */
	int64_t started_at;
	/* The Prometheus text of GET /metrics (server_metrics_render, set by
	 * main.c), so that api/ renders it without including server/; a new
	 * string, NULL on OOM. */
	char *(*metrics_render)(struct db *db, const struct api_ctx *ctx);
	/* Whether CA ca offers ACME profile (server_ca_profile_check, set by
	 * main.c): CP_OK, CP_ERR_NOT_FOUND (not offered) or CP_ERR_UPSTREAM
	 * (the CA cannot be asked); detail says which. NULL: no CA reachable
	 * (unit tests), every profile is refused as not offered. */
	cp_rc (*ca_profile_check)(const struct api_ctx *ctx, struct db *db, const char *ca,
				  const char *profile, char *detail, size_t detail_len);
	/* Set (non-zero) once the server is stopping (main.c), so that a
	 * long-poll (GET /v1/edge/deployments) answers at once. NULL: never. */
	const volatile sig_atomic_t *stopping;
	/* Whether single-object GETs may answer from the per-thread read
	 * cache (api/read_cache.c): config read_cache, and only where this
	 * process sees every write of the database (set by main.c). */
	bool read_cache;
};

/* One request, as the HTTP layer parsed it. All fields borrowed. */
struct api_req {
	const struct api_ctx *ctx;
	struct db *db; /* this thread's connection */
	const char *method;
	const char *path;
	const char *params[3]; /* path parameters ({id}...) in order */
	json_t *query;	       /* query string as an object of strings */
	json_t *body;	       /* parsed JSON body, or NULL when empty */
	bool is_operator;      /* called with the operator token */
	bool is_edge;	       /* called with an edge key (tenant_id NULL) */
	const char *tenant_id; /* effective tenant; NULL for the operator
				  without X-Tenant-ID */
	const char *actor;     /* "operator" or the API key id (audit) */
	const char *request_id;
	const char *if_match;	   /* If-Match header, or NULL */
	const char *if_none_match; /* If-None-Match header, or NULL */
	const char *last_event_id; /* Last-Event-ID header, or NULL */
};

/* What GET /v1/events/stream streams when its handler accepted it (on):
 * the HTTP layer answers with the stream, or 429/503 when the stream
 * limits are reached. */
struct api_stream {
	bool on;
	int64_t after;			      /* seq of the last event the client has */
	char certificate_id[CP_UUID_LEN + 1]; /* "" = any */
	char property_id[CP_UUID_LEN + 1];    /* "" = any */
};

/* The response a handler fills. Owned fields are freed by the HTTP layer. */
struct api_resp {
	int status;
	json_t *json; /* JSON body (owned) or NULL */
	char *text;   /* raw body (owned) when json is NULL */
	size_t text_len;
	const char *content_type; /* static; default application/json */
	char allow[64];		  /* Allow header for 405 */
	int retry_after;	  /* Retry-After seconds when > 0 */
	bool no_store;		  /* Cache-Control: no-store (secrets) */
	char etag[24];		  /* ETag header ("\"<16 hex>\"") when set */
	struct api_stream stream; /* an event stream instead of a body */
	/* The answer is a database conflict the same request may not meet
	 * again (busy, a serialization failure or deadlock, all rolled back):
	 * the dispatcher runs the handler again before answering it. */
	bool retryable;
};

typedef void (*api_handler)(struct api_req *req, struct api_resp *resp);

/* ---- response helpers ---- */

/* Reply with status and a JSON body (stolen). */
void api_reply(struct api_resp *resp, int status, json_t *body);
/* Reply with a raw body (copied) and a static content type. */
void api_reply_text(struct api_resp *resp, int status, const char *content_type, const char *text,
		    size_t len);
/* Reply with a JSON text body taken from b (b is left empty). */
void api_reply_buf(struct api_resp *resp, int status, struct cp_buf *b);
/* RFC 9457 problem: {"type","title","status","detail","errors"}; errors
 * (stolen, may be NULL) is an array of {"field","message"}. */
void api_problem(struct api_resp *resp, int status, const char *detail, json_t *errors);
/* 422 naming one field. */
void api_problem_field(struct api_resp *resp, const char *field, const char *message);
/* The problem for a name outside the issuance scope (v->reason set):
 * 422 hostname_in_edge_zone, 409 hostname_owned_by_another_tenant, with
 * "reason" and the field "<array>[index]" named. */
void api_scope_problem(struct api_resp *resp, const struct db_scope_verdict *v, const char *array);
/* Map a cp_rc from the domain to the one HTTP answer for it; what names the
 * object for 404/409 details ("property", "certificate"...). */
void api_reply_rc(struct api_resp *resp, cp_rc rc, const char *what);

/* ---- request helpers (false = an error reply is already written) ---- */

/* The request must be made within one tenant (tenant key, or the operator
 * with X-Tenant-ID). */
bool api_tenant_or_reply(struct api_req *req, struct api_resp *resp);
/* The request must come from the operator. */
bool api_operator_or_reply(struct api_req *req, struct api_resp *resp);
/* The body must be a JSON object: 400 when there is none, 422 when it is
 * another JSON value. */
bool api_object_body_or_reply(struct api_req *req, struct api_resp *resp);
/* Validate the JSON body against spec; 400 if there is no body object, 422
 * with every field error otherwise. */
bool api_body_or_reply(struct api_req *req, struct api_resp *resp, const struct cp_spec *spec);
/* A change to one object of the tenant: api_tenant_or_reply, path
 * parameter 0 a UUID (api_id_or_reply) and the body valid against spec
 * (api_body_or_reply), checked in that order. */
bool api_change_or_reply(struct api_req *req, struct api_resp *resp, const struct cp_spec *spec);
/* Path parameter i must be a UUID; 404 otherwise (a malformed id names no
 * object, exactly as a missing one). */
bool api_id_or_reply(struct api_req *req, struct api_resp *resp, int i);
/* Parse ?limit=&cursor=&order= into pg (limit 1..500, default 50; order
 * asc, the default, or desc). */
bool api_page_or_reply(struct api_req *req, struct api_resp *resp, struct db_page *pg);
/* Query parameter as a string (NULL if absent). */
const char *api_query(struct api_req *req, const char *name);
/* Reply 200 {"data": [...], "next_cursor": "..."|null}; takes list->data. */
void api_reply_list(struct api_resp *resp, struct db_list *list);
/* Audit a change inside the current transaction. detail borrowed. */
cp_rc api_audit(struct api_req *req, const char *action, const char *resource_type,
		const char *resource_id, json_t *detail) CP_WUR;

/* A domain delete: CP_ERR_NOT_FOUND, CP_ERR_CONFLICT (still in use), ... */
typedef cp_rc (*api_delete_fn)(struct db *db, const char *tenant_id, const char *id);
/* The tenant-scoped DELETE /{id} every resource shares: del and the audit
 * record "<resource_type>.delete" in one transaction, then 204; 404 naming
 * what; 409 with conflict_detail when the object is still in use. */
void api_delete_resource(struct api_req *req, struct api_resp *resp, api_delete_fn del,
			 const char *resource_type, const char *what, const char *conflict_detail);
struct api_repr;
/* api_delete_resource honouring If-Match against repr's current tag, checked
 * inside the delete's transaction (412 on a mismatch, nothing deleted). */
void api_delete_resource_if(struct api_req *req, struct api_resp *resp, api_delete_fn del,
			    const struct api_repr *repr, const char *resource_type,
			    const char *what, const char *conflict_detail);

/* A domain read of one tenant's object: CP_ERR_NOT_FOUND, ... */
typedef cp_rc (*api_get_fn)(struct db *db, const char *tenant_id, const char *id, json_t **out);
/* The tenant-scoped GET /{id} every resource shares: 200 with get's object
 * (req->params[0] the id), 404 naming what. */
void api_get_resource(struct api_req *req, struct api_resp *resp, api_get_fn get, const char *what);
/* A domain render of one tenant's object as JSON text appended to out. */
typedef cp_rc (*api_render_fn)(struct db *db, const char *tenant_id, const char *id,
			       struct cp_buf *out);
/* api_get_resource for an object rendered straight to text (the hot
 * reads): no JSON tree is built or dumped. */
void api_render_resource(struct api_req *req, struct api_resp *resp, api_render_fn render,
			 const char *what);
/* ---- read cache (api/read_cache.c) ----
 * This thread's rendered answers of api_render_resource, keyed by (kind:
 * the render function, tenant, id) and valid for the write generation gen
 * (db_write_gen, loaded before the render) and the wall-clock second
 * second (cp_now, read before the render). */
struct api_cached {
	const char *body; /* borrowed until this thread's next put */
	size_t len;
	const char *etag;
};
/* A hit for exactly (kind, tenant, id, gen, second) into out; false if none. */
bool api_read_cache_get(api_render_fn kind, const char *tenant, const char *id, uint64_t gen,
			int64_t second, struct api_cached *out);
/* Keep body[0..len) and its etag (copied) for (kind, tenant, id), rendered
 * under gen and second; evicts what held its slot. Best effort (a body too
 * large or no memory: nothing kept). */
void api_read_cache_put(api_render_fn kind, const char *tenant, const char *id, uint64_t gen,
			int64_t second, const char *body, size_t len, const char etag[24]);
/* ---- entity tags (RFC 9110 8.8.3, 13.1) ----
 * A strong ETag is a 64-bit hash of the bytes GET answers for the object, so
 * whatever changes the representation changes the tag. A resource names how
 * it is represented (exactly one of render/get set) once, and reads, writes
 * and deletes all derive its tag from that. */
struct api_repr {
	api_render_fn render; /* the GET renders straight to text, or */
	api_get_fn get;	      /* the GET answers this JSON (compact dump) */
};
/* The ETag of bytes p[0..n) into out ("\"<16 hex>\"", NUL-terminated). */
void api_etag_of(const char *p, size_t n, char out[24]);
/* Set resp->etag to object id's current tag, rendered inside the caller's
 * open transaction (so the tag belongs to what it commits). Best effort: a
 * failure leaves no ETag, never fails the write. */
void api_etag_set(struct api_req *req, struct api_resp *resp, const struct api_repr *repr,
		  const char *id);
/* The If-Match precondition of a PATCH or DELETE of id, inside the caller's
 * open write transaction and before it writes: true when there is no
 * If-Match, it is "*", it lists the object's current tag, or the object does
 * not exist (the handler's write answers 404); false after rolling the
 * transaction back and replying 412 (or the problem of a failed render). */
bool api_if_match_or_reply(struct api_req *req, struct api_resp *resp, const struct api_repr *repr,
			   const char *id);
/* Reply 200 with body text b (taken) and its ETag; 304 without a body when
 * If-None-Match lists that tag or is "*". */
void api_reply_entity_buf(struct api_req *req, struct api_resp *resp, struct cp_buf *b);
/* api_reply_entity_buf for a JSON object (stolen), dumped compact. */
void api_reply_entity(struct api_req *req, struct api_resp *resp, json_t *obj);
/* A domain page of one tenant's objects. */
typedef cp_rc (*api_list_fn)(struct db *db, const char *tenant_id, struct db_page pg,
			     struct db_list *out);
/* The tenant-scoped GET of a collection without filters: ?limit and
 * ?cursor, then 200 {data, next_cursor}. */
void api_list_resource(struct api_req *req, struct api_resp *resp, api_list_fn list,
		       const char *what);
/* Whether a tenant's object exists: CP_OK, CP_ERR_NOT_FOUND, ... */
typedef cp_rc (*api_exists_fn)(struct db *db, const char *tenant_id, const char *id);
/* A domain page of the children of one tenant's object parent_id. */
typedef cp_rc (*api_children_fn)(struct db *db, const char *tenant_id, const char *parent_id,
				 struct db_page pg, struct db_list *out);
/* The tenant-scoped GET /{id}/<children>: 404 naming what when parent
 * req->params[0] does not exist (an empty page would hide that), else the
 * page of its children. */
void api_list_children(struct api_req *req, struct api_resp *resp, api_exists_fn exists,
		       api_children_fn list, const char *what);
/* Reply a page fetched with result rc: 200 {data, next_cursor} (list's data
 * is taken), or the problem for rc naming what. */
void api_reply_list_rc(struct api_resp *resp, cp_rc rc, struct db_list *list, const char *what);

/* ---- handlers (one file per resource) ---- */

/* tenants.c: operator endpoints */
void api_tenants_create(struct api_req *, struct api_resp *);
void api_tenants_list(struct api_req *, struct api_resp *);
void api_tenants_get(struct api_req *, struct api_resp *);
void api_tenants_delete(struct api_req *, struct api_resp *);
void api_apikeys_create(struct api_req *, struct api_resp *);
void api_apikeys_list(struct api_req *, struct api_resp *);
void api_apikeys_delete(struct api_req *, struct api_resp *);
/* A tenant's own keys: /v1/api-keys (scope admin to change them). */
void api_keys_create(struct api_req *, struct api_resp *);
void api_keys_list(struct api_req *, struct api_resp *);
void api_keys_delete(struct api_req *, struct api_resp *);

/* ops.c: health, readiness, audit log, events, openapi */
void api_healthz(struct api_req *, struct api_resp *);
void api_readyz(struct api_req *, struct api_resp *);
void api_openapi(struct api_req *, struct api_resp *);
void api_audit_list(struct api_req *, struct api_resp *);
void api_events_list(struct api_req *, struct api_resp *);
/* Validates GET /v1/events/stream and fills resp->stream (server/sse.c
 * streams it). */
void api_events_stream(struct api_req *, struct api_resp *);

/* metrics.c: GET /metrics, the operator key unless metrics_public */
void api_metrics(struct api_req *, struct api_resp *);

/* edge_hostnames.c */
void api_edge_hostnames_create(struct api_req *, struct api_resp *);
void api_edge_hostnames_list(struct api_req *, struct api_resp *);
void api_edge_hostnames_get(struct api_req *, struct api_resp *);
void api_edge_hostnames_delete(struct api_req *, struct api_resp *);

/* properties.c: properties and their deployments */
void api_properties_create(struct api_req *, struct api_resp *);
void api_properties_list(struct api_req *, struct api_resp *);
void api_properties_get(struct api_req *, struct api_resp *);
/* GET /v1/properties/{id}/dcv-delegation (api/dcv_delegation.c) */
void api_properties_dcv_delegation(struct api_req *, struct api_resp *);
void api_properties_update(struct api_req *, struct api_resp *);
void api_properties_delete(struct api_req *, struct api_resp *);
void api_deployments_create(struct api_req *, struct api_resp *);
void api_deployments_list(struct api_req *, struct api_resp *);
void api_deployments_get(struct api_req *, struct api_resp *);

/* certificates.c */
void api_certificates_create(struct api_req *, struct api_resp *);
void api_certificates_list(struct api_req *, struct api_resp *);
void api_certificates_get(struct api_req *, struct api_resp *);
void api_certificates_update(struct api_req *, struct api_resp *);
void api_certificates_delete(struct api_req *, struct api_resp *);
void api_certificates_pem(struct api_req *, struct api_resp *);
void api_certificates_private_key(struct api_req *, struct api_resp *);
void api_certificates_versions(struct api_req *, struct api_resp *);

/* webhooks.c: callback URL endpoints, test events, deliveries */
void api_webhooks_create(struct api_req *, struct api_resp *);
void api_webhooks_list(struct api_req *, struct api_resp *);
void api_webhooks_get(struct api_req *, struct api_resp *);
void api_webhooks_update(struct api_req *, struct api_resp *);
void api_webhooks_delete(struct api_req *, struct api_resp *);
void api_webhooks_test(struct api_req *, struct api_resp *);
void api_webhooks_deliveries(struct api_req *, struct api_resp *);
void api_webhooks_redeliver(struct api_req *, struct api_resp *);
void api_webhooks_rotate_secret(struct api_req *, struct api_resp *);
/* The subscription list of a webhook or channel: ["*"] or distinct known
 * event types; false after a 422 on "events". */
bool api_events_or_reply(json_t *events, struct api_resp *resp);
/* A URL certplane will POST to (a webhook's, a Slack channel's): syntax and
 * the SSRF rules of netpolicy; false after a 422 on "url" (also when its
 * host does not resolve within webhook_dns_timeout_ms) or another reply. */
bool api_callback_url_or_reply(struct api_req *req, struct api_resp *resp, const char *url);

/* channels.c: notification channels beyond webhooks (email, Slack) */
void api_channels_create(struct api_req *, struct api_resp *);
void api_channels_list(struct api_req *, struct api_resp *);
void api_channels_get(struct api_req *, struct api_resp *);
void api_channels_update(struct api_req *, struct api_resp *);
void api_channels_delete(struct api_req *, struct api_resp *);
void api_channels_verify(struct api_req *, struct api_resp *);
void api_channels_deliveries(struct api_req *, struct api_resp *);

/* orders.c: ACME orders */
void api_orders_list(struct api_req *, struct api_resp *);
void api_orders_get(struct api_req *, struct api_resp *);
void api_orders_verify(struct api_req *, struct api_resp *);
void api_orders_cancel(struct api_req *, struct api_resp *);

/* certificates_acme.c: source "acme" and renew-now */
/* A validated source "acme" request; strings and JSON borrowed, NULL = default. */
struct api_acme_new {
	const char *name;
	json_t *hostnames;	/* 1..100 valid names */
	const char *challenge;	/* "http-01" (default) | "dns-01" */
	const char *key_type;	/* default "ecdsa-p256" */
	const char *ca;		/* default "letsencrypt" */
	const char *auto_renew; /* default "none" */
	json_t *metadata;	/* object or NULL */
	const char *profile;	/* ACME profile, checked with the CA; NULL: none */
	json_t *cas;		/* ordered CA names to fall back along, or NULL */
};
/* Create the pending certificate and its first order; 202 {certificate...,
 * "order": {...}}. Wildcards with http-01 are 422 on "challenge". */
void api_certificates_acme_create(struct api_req *, struct api_resp *,
				  const struct api_acme_new *in);
/* POST /v1/certificates/{id}/renew: 202 with the order it started. */
void api_certificates_renew(struct api_req *, struct api_resp *);
/* POST /v1/certificates/{id}/revoke (certificates_revoke.c). */
void api_certificates_revoke(struct api_req *, struct api_resp *);
/* DELETE /v1/tenants/{id}/hostnames/{hostname} (operator; certificates_revoke.c). */
void api_tenants_hostname_withdraw(struct api_req *, struct api_resp *);

/* quotas.c: per-tenant quotas */
/* The quota check of a create or update, inside its open write transaction
 * and before it writes: true if c fits the tenant's quotas; false after
 * rolling the transaction back and replying 409 (429 + Retry-After for
 * orders_in_flight) naming "quota.<name>". Needs req->tenant_id. */
bool api_quota_or_reply(struct api_req *req, struct api_resp *resp,
			const struct db_quota_change *c);
/* GET (operator, or the tenant's own key), PUT and PATCH (operator)
 * /v1/tenants/{id}/quotas. */
void api_tenants_quotas_get(struct api_req *, struct api_resp *);
void api_tenants_quotas_put(struct api_req *, struct api_resp *);
void api_tenants_quotas_patch(struct api_req *, struct api_resp *);

/* summary.c: GET /v1/summary, one tenant's dashboard */
void api_summary_get(struct api_req *, struct api_resp *);

/* dns_check.c */
void api_properties_dns_check(struct api_req *, struct api_resp *);

/* renewal_preview.c: the renewal plan of a certificate, as the scheduler
 * (server/renew.c) and GET /v1/certificates/{id}/renewal-preview use it. */
struct lifecycle_plan;
struct api_renewal_plan {
	json_t *deployed;	     /* owned: hostnames of the carrying deployments */
	const char **names;	     /* owned: pointers into cert's sans, then deployed */
	struct lifecycle_plan *plan; /* owned */
	json_t *sans;		     /* owned: the plan's SANs, a JSON array */
	json_t *order_plan;	     /* owned: db_certificate_order_plan (its "cas") */
};
/*
 * Load the plan of cert (a db_certificate_get object of tenant_id, borrowed
 * and kept alive by the caller while *out is used): the carried hostnames
 * (db_renewal_hostnames), then lifecycle_plan with ca = the head of its CA
 * list (the certificate's cas, else its tenant's default_cas: the CA its
 * order starts at, server/order_fallback.c), else cert's auto_renew,
 * its profile, challenge and key type (key_type, when not NULL, is the
 * requested one). carried: true when the caller knows a production
 * deployment with automation carries cert (the scheduler's candidate); else
 * it is true when the carried hostnames are not empty. *out is zeroed
 * first; free it with api_renewal_plan_free on every path. CP_ERR_NOMEM or
 * a db error.
 */
cp_rc api_renewal_plan_load(struct db *db, const char *tenant_id, const json_t *cert,
			    const char *key_type, bool carried,
			    struct api_renewal_plan *out) CP_WUR;
void api_renewal_plan_free(struct api_renewal_plan *p);
void api_certificates_renewal_preview(struct api_req *, struct api_resp *);

/* ---- CA lists (issue 14: CA fallback) ---- */

/* Whether name is "letsencrypt" (the default CA) or a configured cas.<name>. */
bool api_ca_known(const struct cp_config *cfg, const char *name);
/* cas must be an array of at most 8 distinct known CA names (field names
 * it in the 422), at least one unless allow_empty. */
bool api_ca_list_or_reply(struct api_req *req, struct api_resp *resp, const char *field,
			  const json_t *cas, bool allow_empty);
/* PATCH /v1/tenants/{id} (operator): {"default_cas": [...]}, the CA list of
 * the tenant's certificates that name none ([] clears it). */
void api_tenants_patch(struct api_req *, struct api_resp *);
/* edge.c: keys of role edge (operator) and the edge's change feed */
void api_edge_keys_create(struct api_req *, struct api_resp *);
void api_edge_keys_list(struct api_req *, struct api_resp *);
void api_edge_keys_delete(struct api_req *, struct api_resp *);
/* GET /v1/edge/deployments: edge keys only (long-poll). */
void api_edge_deployments(struct api_req *, struct api_resp *);

/* API-KEY FORMAT: "cpk_" + base64url(32 random bytes). */
#define API_KEY_PREFIX "cpk_"
/* Mint a new key of that format (tenant and edge keys alike): *key the key
 * in clear (a new string: the caller shows it once and frees it with
 * crypto_wipe_free), hash its SHA-256 in hex (what the database keeps),
 * prefix its first 12 characters (what lists show). CP_ERR_NOMEM, or the
 * random source's error. */
cp_rc api_key_mint(char **key, char hash[65], char prefix[13]) CP_WUR;
/* 201 with the new key's row (taken) and, this once, the key in clear;
 * no-store, so no cache keeps the answer. */
void api_reply_key_created(struct api_resp *resp, json_t *row, const char *key);

#endif
