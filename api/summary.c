/*
 * summary.c - GET /v1/summary: the dashboard of the caller's tenant (the
 * operator names one with X-Tenant-ID). What it counts and how it stays
 * fast at a million certificates is db_summary's (db/summary.c).
 */
#include "api/api.h"

void api_summary_get(struct api_req *req, struct api_resp *resp)
{
	json_t *out = NULL;
	cp_rc rc;

	if (!api_tenant_or_reply(req, resp))
		return;
	rc = db_summary(req->db, req->tenant_id, cp_now(), &out);
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, NULL);
		return;
	}
	api_reply(resp, 200, out);
}
