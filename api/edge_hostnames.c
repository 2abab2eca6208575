/*
 * edge_hostnames.c - the CNAME targets on the CDN. An edge hostname is
 * "<label>.<edge_zone>"; the label is the client's or a generated short
 * random one. The edge zone is shared by every tenant, so a hostname is
 * unique across all of them and a taken label is a 409.
 */
#include "api/api.h"

#include <stdlib.h>
#include <string.h>

/* Generated labels: a letter then digits/letters, 10 characters, ~50 bits. */
#define GEN_LABEL_LEN 10
#define GEN_ATTEMPTS 5

static void gen_label(char out[GEN_LABEL_LEN + 1])
{
	static const char alnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";

	out[0] = alnum[cp_random_below(26)];
	for (size_t i = 1; i < GEN_LABEL_LEN; i++)
		out[i] = alnum[cp_random_below(sizeof(alnum) - 1)];
	out[GEN_LABEL_LEN] = '\0';
}

/* Insert label.zone with its audit record in one transaction. *refused:
 * the tenant's quota is used up, the reply is written (rc is then CP_OK
 * and *out NULL). */
static cp_rc create_one(struct api_req *req, struct api_resp *resp, const char *label,
			const char *hostname, json_t **out, bool *refused)
{
	json_t *row = NULL, *detail = NULL;
	cp_rc rc = db_begin(req->db);

	*out = NULL;
	*refused = rc == CP_OK &&
		   !api_quota_or_reply(req, resp, &(struct db_quota_change){ .edge_hostnames = 1 });
	if (*refused)
		return CP_OK;
	if (rc == CP_OK)
		rc = db_edge_hostname_create(req->db, req->tenant_id, label, hostname, &row);
	if (rc == CP_OK) {
		detail = json_pack("{s:s}", "hostname", hostname);
		rc = api_audit(req, "edge_hostname.create", "edge_hostname",
			       json_string_value(json_object_get(row, "id")), detail);
	}
	if (rc == CP_OK)
		rc = db_commit(req->db);
	if (rc != CP_OK) {
		db_rollback(req->db);
		json_decref(row);
		row = NULL;
	}
	json_decref(detail);
	*out = row;
	return rc;
}

void api_edge_hostnames_create(struct api_req *req, struct api_resp *resp)
{
	const char *label = NULL, *why = NULL;
	const struct cp_spec spec[] = {
		CP_SPEC_STR("label", false, &label, 1, 63),
		CP_SPEC_DONE,
	};
	const char *zone = req->ctx->cfg->edge_zone;
	char gen[GEN_LABEL_LEN + 1], *hostname = NULL, detail[400];
	json_t *row = NULL;
	bool refused = false;
	cp_rc rc = CP_ERR_CONFLICT;

	if (!api_tenant_or_reply(req, resp))
		return;
	/* The body is optional: no body asks for a generated label. */
	if (req->body && !api_body_or_reply(req, resp, spec))
		return;
	if (label) {
		if (strchr(label, '.')) {
			api_problem_field(resp, "label", "must be a single DNS label (no dots)");
			return;
		}
		hostname = cp_aprintf("%s.%s", label, zone);
		if (!hostname) {
			api_reply_rc(resp, CP_ERR_NOMEM, NULL);
			return;
		}
		if (!cp_hostname_valid(hostname, false, &why)) {
			api_problem_field(resp, "label", why);
			goto out;
		}
		rc = create_one(req, resp, label, hostname, &row, &refused);
		if (rc == CP_ERR_CONFLICT) {
			json_t *errors = json_array();
			cp_spec_error(errors, "label", "is already taken in the edge zone");
			snprintf(detail, sizeof(detail), "edge hostname %s is already taken",
				 hostname);
			api_problem(resp, 409, detail, errors);
			goto out;
		}
	} else {
		/* A generated label collides only by bad luck: draw again. */
		for (int i = 0; i < GEN_ATTEMPTS && rc == CP_ERR_CONFLICT; i++) {
			free(hostname);
			gen_label(gen);
			hostname = cp_aprintf("%s.%s", gen, zone);
			if (!hostname) {
				rc = CP_ERR_NOMEM;
				break;
			}
			rc = create_one(req, resp, gen, hostname, &row, &refused);
		}
	}
	if (refused)
		goto out;
	if (rc != CP_OK) {
		api_reply_rc(resp, rc, "edge hostname");
		goto out;
	}
	api_reply(resp, 201, row);
out:
	free(hostname);
}

void api_edge_hostnames_list(struct api_req *req, struct api_resp *resp)
{
	api_list_resource(req, resp, db_edge_hostname_list, "edge hostname");
}

void api_edge_hostnames_get(struct api_req *req, struct api_resp *resp)
{
	api_get_resource(req, resp, db_edge_hostname_get, "edge hostname");
}

void api_edge_hostnames_delete(struct api_req *req, struct api_resp *resp)
{
	static const struct api_repr repr = { .get = db_edge_hostname_get };

	api_delete_resource_if(req, resp, db_edge_hostname_delete, &repr, "edge_hostname",
			       "edge hostname",
			       "the edge hostname is used by a property; move or delete the "
			       "property first");
}
