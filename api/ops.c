/*
 * ops.c - operational endpoints: liveness, readiness, the OpenAPI document,
 * the audit log and the tenant's event list.
 */
#include "api/api.h"

#include <string.h>

/* Generated from openapi.yaml by cmake/embed_file.cmake. */
extern const unsigned char cp_openapi_yaml[];
extern const size_t cp_openapi_yaml_len;

void api_healthz(struct api_req *req, struct api_resp *resp)
{
	(void)req;
	api_reply(resp, 200, json_pack("{s:s}", "status", "ok"));
}

void api_readyz(struct api_req *req, struct api_resp *resp)
{
	if (!req->db || db_ping(req->db) != CP_OK) {
		api_problem(resp, 503, "the database is not reachable", NULL);
		return;
	}
	api_reply(resp, 200,
		  json_pack("{s:s,s:i}", "status", "ready", "schema_version", db_schema_version()));
}

void api_openapi(struct api_req *req, struct api_resp *resp)
{
	(void)req;
	api_reply_text(resp, 200, "application/yaml", (const char *)cp_openapi_yaml,
		       cp_openapi_yaml_len);
}

void api_audit_list(struct api_req *req, struct api_resp *resp)
{
	struct db_page pg;
	struct db_list list;
	cp_rc rc;

	if (!api_page_or_reply(req, resp, &pg))
		return;
	/* The operator without X-Tenant-ID sees every tenant's entries. */
	rc = db_audit_list(req->db, req->tenant_id, pg, &list);
	api_reply_list_rc(resp, rc, &list, "audit entry");
}

void api_events_list(struct api_req *req, struct api_resp *resp)
{
	const char *type = api_query(req, "type"), *after = api_query(req, "after");
	struct db_page pg;
	struct db_list list;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_page_or_reply(req, resp, &pg))
		return;
	if (type && !db_event_type_known(type)) {
		api_problem_field(resp, "type", "is not a known event type");
		return;
	}
	/* ?after=<event id> resumes after that event (what a consumer stored). */
	if (after) {
		if (!cp_uuid_valid(after)) {
			api_problem_field(resp, "after", "must be an event id");
			return;
		}
		rc = db_event_seq(req->db, req->tenant_id, after, &pg.after);
		if (rc == CP_ERR_NOT_FOUND) {
			api_problem_field(resp, "after", "is not an event of this tenant");
			return;
		}
		if (rc != CP_OK) {
			api_reply_rc(resp, rc, "event");
			return;
		}
	}
	rc = db_event_list(req->db, req->tenant_id, type, pg, &list);
	api_reply_list_rc(resp, rc, &list, "event");
}
