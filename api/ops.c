/*
 * ops.c - operational endpoints: liveness, readiness, the OpenAPI document,
 * the audit log, the tenant's event list and its event stream (the stream
 * itself is server/sse.c; this is its request's validation).
 */
#include "api/api.h"

#include <stdio.h>
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

/* The event filters of GET /v1/events and its stream, into f (borrowing
 * the query's strings); false with a 422 naming the field. */
static bool events_filter_or_reply(struct api_req *req, struct api_resp *resp,
				   struct db_event_filter *f)
{
	static const char *const ids[] = { "certificate_id", "property_id" };

	f->type = api_query(req, "type");
	f->certificate_id = api_query(req, "certificate_id");
	f->property_id = api_query(req, "property_id");
	if (f->type && !db_event_type_known(f->type)) {
		api_problem_field(resp, "type", "is not a known event type");
		return false;
	}
	for (size_t i = 0; i < 2; i++) {
		const char *v = i == 0 ? f->certificate_id : f->property_id;
		if (v && !cp_uuid_valid(v)) {
			api_problem_field(resp, ids[i], "must be a UUID");
			return false;
		}
	}
	return true;
}

/* The seq after event id `after` of this tenant (what a consumer stored),
 * into *seq; field names the parameter for the 422. false = replied. */
static bool events_after_or_reply(struct api_req *req, struct api_resp *resp, const char *after,
				  const char *field, int64_t *seq)
{
	cp_rc rc;

	if (!cp_uuid_valid(after)) {
		api_problem_field(resp, field, "must be an event id");
		return false;
	}
	rc = db_event_seq(req->db, req->tenant_id, after, seq);
	if (rc == CP_ERR_NOT_FOUND) {
		api_problem_field(resp, field, "is not an event of this tenant");
		return false;
	}
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "event");
		return false;
	}
	return true;
}

void api_events_list(struct api_req *req, struct api_resp *resp)
{
	const char *after = api_query(req, "after");
	struct db_event_filter f;
	struct db_page pg;
	struct db_list list;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp) || !api_page_or_reply(req, resp, &pg) ||
	    !events_filter_or_reply(req, resp, &f))
		return;
	/* ?after=<event id> resumes after that event (what a consumer stored). */
	if (after && !events_after_or_reply(req, resp, after, "after", &pg.after))
		return;
	rc = db_event_list_filtered(req->db, req->tenant_id, &f, pg, &list);
	api_reply_list_rc(resp, rc, &list, "event");
}

void api_events_stream(struct api_req *req, struct api_resp *resp)
{
	const char *after = api_query(req, "after"), *field = "after";
	struct db_event_filter f;

	if (!api_tenant_or_reply(req, resp) || !events_filter_or_reply(req, resp, &f))
		return;
	if (f.type) {
		api_problem_field(resp, "type", "is not a filter of the stream");
		return;
	}
	/* A reconnecting browser sends Last-Event-ID: it wins over the
	 * ?after= of the URL it first opened. Empty is none (the spec's
	 * "no last event ID"). */
	if (req->last_event_id && req->last_event_id[0]) {
		after = req->last_event_id;
		field = "Last-Event-ID";
	}
	resp->stream = (struct api_stream){ .on = true };
	if (after && !events_after_or_reply(req, resp, after, field, &resp->stream.after)) {
		resp->stream.on = false;
		return;
	}
	/* Without a cursor the stream starts now: the history is GET
	 * /v1/events, whose last id a client passes as ?after= for no gap. */
	if (!after) {
		cp_rc rc = db_event_last_seq(req->db, req->tenant_id, &resp->stream.after);
		if (rc != CP_OK) {
			resp->stream.on = false;
			api_reply_rc(resp, rc, "event");
			return;
		}
	}
	if (f.certificate_id)
		snprintf(resp->stream.certificate_id, sizeof(resp->stream.certificate_id), "%s",
			 f.certificate_id);
	if (f.property_id)
		snprintf(resp->stream.property_id, sizeof(resp->stream.property_id), "%s",
			 f.property_id);
	resp->status = 200;
	resp->content_type = "text/event-stream";
}
