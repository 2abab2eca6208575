/*
 * properties.c - properties (the sites a tenant accelerates), their
 * hostnames and their deployments.
 *
 * A property's hostnames live in property_hostnames, one row per claim
 * (migration 005): a tenant holds a hostname at most once, and a hostname
 * that another tenant has VERIFIED cannot be added (its pending claims never
 * block anyone). The claim rules themselves are in hostname_claims.c; here
 * a write only adds new claims as pending and keeps the kept ones (with
 * their status and token) in their new order. A deployment
 * copies the property's version, hostnames and certificate at that moment;
 * the property shows the latest deployment of each environment.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/*
 * A property as the API shows it (openapi.yaml, Property): the plain columns
 * of PROP_COLS (enum prop_col) and its claims (CLAIMS_SQL), rendered by
 * prop_render_row, the one renderer of a property (get, list, and the JSON
 * every other caller reads).
 */
/* The latest deployment of p to env: col is d.version or d.created_at. */
#define PROP_DEPLOYED(col, env)                                                                    \
	"(SELECT " col " FROM deployments d WHERE d.property_id = p.id "                           \
	"AND d.environment = '" env "' ORDER BY d.seq DESC LIMIT 1)"
/* clang-format off */
#define PROP_COLS                                                                          \
	"p.id, p.name, p.edge_hostname_id, (SELECT e.hostname FROM edge_hostnames e "      \
	"WHERE e.id = p.edge_hostname_id), p.certificate_id, "                             \
	"p.certificate_renew_automation, p.version, "                                      \
	PROP_DEPLOYED("d.version", "staging") ", " PROP_DEPLOYED("d.created_at", "staging") \
	", " PROP_DEPLOYED("d.version", "production") ", "                                \
	PROP_DEPLOYED("d.created_at", "production") ", p.created_at, p.updated_at"
/* clang-format on */

enum prop_col {
	PC_ID,
	PC_NAME,
	PC_EDGE_ID,
	PC_EDGE_HOSTNAME,
	PC_CERTIFICATE_ID,
	PC_RENEW_AUTOMATION,
	PC_VERSION,
	PC_STAGING_VERSION,
	PC_STAGING_AT,
	PC_PRODUCTION_VERSION,
	PC_PRODUCTION_AT,
	PC_CREATED_AT,
	PC_UPDATED_AT,
	PC_COUNT
};

/* The claim of each hostname of property ?1 in order: what verifies it and
 * where it stands. */
static const char CLAIMS_SQL[] =
	"SELECT hostname, status, method, token, checked_at, expires_at, verified_at, detail "
	"FROM property_hostnames WHERE property_id = ?1 ORDER BY position";

/* {version, deployed_at} of a deployment, or null when there is none. */
static void prop_render_deployed(struct cp_jw *w, struct db_stmt *st, int vcol, int atcol)
{
	if (db_col_null(st, vcol)) {
		cp_jw_null(w);
		return;
	}
	cp_jw_open(w, '{');
	cp_jw_key(w, "version");
	db_jw_int(w, st, vcol);
	cp_jw_key(w, "deployed_at");
	db_jw_time(w, st, atcol);
	cp_jw_close(w, '}');
}

/* The property's hostnames as a JSON array into w and, in the same pass
 * over its claims, their verification objects as a JSON array into v. */
static cp_rc prop_render_claims(struct db *db, const char *id, struct cp_jw *w, struct cp_jw *v)
{
	struct db_stmt *st = db_stmt_keyed(db, CLAIMS_SQL, id, NULL);
	int r;

	if (!st)
		return CP_ERR_INTERNAL;
	cp_jw_open(w, '[');
	cp_jw_open(v, '[');
	while ((r = db_step(st)) == DB_ROW) {
		const char *h = db_col_text(st, 0);
		char txt[320];
		int n;

		h = h ? h : "";
		n = snprintf(txt, sizeof(txt), "_certplane-verify.%s",
			     strncmp(h, "*.", 2) == 0 ? h + 2 : h);
		if (n < 0 || (size_t)n >= sizeof(txt)) {
			db_reset(st);
			return CP_ERR_INTERNAL; /* hostnames are bounded to 253 */
		}
		db_jw_text(w, st, 0);
		cp_jw_open(v, '{');
		cp_jw_key(v, "hostname");
		db_jw_text(v, st, 0);
		cp_jw_key(v, "status");
		db_jw_text(v, st, 1);
		cp_jw_key(v, "method");
		db_jw_text(v, st, 2);
		cp_jw_key(v, "token");
		db_jw_text(v, st, 3);
		cp_jw_key(v, "txt_record_name");
		cp_jw_str(v, txt, (size_t)n);
		cp_jw_key(v, "checked_at");
		db_jw_time(v, st, 4);
		cp_jw_key(v, "expires_at");
		db_jw_time(v, st, 5);
		cp_jw_key(v, "verified_at");
		db_jw_time(v, st, 6);
		cp_jw_key(v, "detail");
		db_jw_text(v, st, 7);
		cp_jw_close(v, '}');
	}
	db_reset(st);
	if (r != DB_DONE)
		return db_rc(db, r);
	cp_jw_close(w, ']');
	cp_jw_close(v, ']');
	return CP_OK;
}

/* Render the property of st's current row, whose PROP_COLS start at column
 * c0, as one JSON object appended to w. */
static cp_rc prop_render_row(struct db *db, struct db_stmt *st, int c0, struct cp_jw *w)
{
	/* The id outlives the claims statement's steps: st is another
	 * statement, left on its row. */
	const char *id = db_col_text(st, c0 + PC_ID);
	struct cp_buf vb;
	struct cp_jw v;
	cp_rc rc;

	assert(db_col_count(st) >= c0 + PC_COUNT);
	if (!id)
		return CP_ERR_INTERNAL;
	cp_buf_init(&vb, DB_RENDER_MAX);
	cp_jw_init(&v, &vb);
	cp_jw_open(w, '{');
	cp_jw_key(w, "id");
	db_jw_text(w, st, c0 + PC_ID);
	cp_jw_key(w, "name");
	db_jw_text(w, st, c0 + PC_NAME);
	cp_jw_key(w, "hostnames");
	rc = prop_render_claims(db, id, w, &v);
	if (rc == CP_OK)
		rc = cp_jw_rc(&v);
	if (rc != CP_OK)
		goto out;
	cp_jw_key(w, "edge_hostname_id");
	db_jw_text(w, st, c0 + PC_EDGE_ID);
	cp_jw_key(w, "edge_hostname");
	db_jw_text(w, st, c0 + PC_EDGE_HOSTNAME);
	cp_jw_key(w, "certificate_id");
	db_jw_text(w, st, c0 + PC_CERTIFICATE_ID);
	cp_jw_key(w, "hostname_verification");
	cp_jw_raw(w, cp_buf_str(&vb), vb.len);
	cp_jw_key(w, "certificate_renew_automation");
	cp_jw_bool(w, db_col_int64(st, c0 + PC_RENEW_AUTOMATION) != 0);
	cp_jw_key(w, "version");
	db_jw_int(w, st, c0 + PC_VERSION);
	cp_jw_key(w, "staging");
	prop_render_deployed(w, st, c0 + PC_STAGING_VERSION, c0 + PC_STAGING_AT);
	cp_jw_key(w, "production");
	prop_render_deployed(w, st, c0 + PC_PRODUCTION_VERSION, c0 + PC_PRODUCTION_AT);
	cp_jw_key(w, "served");
	rc = db_edge_served_render(db, id, w);
	if (rc != CP_OK)
		goto out;
	cp_jw_key(w, "created_at");
	db_jw_time(w, st, c0 + PC_CREATED_AT);
	cp_jw_key(w, "updated_at");
	db_jw_time(w, st, c0 + PC_UPDATED_AT);
	cp_jw_close(w, '}');
out:
	cp_buf_free(&vb);
	return rc;
}

/* db_row_render_fn over prop_render_row for (seq, PROP_COLS) rows. */
static cp_rc prop_render_listed(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	return prop_render_row(db, st, 1, w);
}

/*
 * A deployment as the API shows it (openapi.yaml, Deployment): the columns
 * of DEPLOY_COLS (enum deploy_col), rendered by deploy_render_row (create,
 * get, list).
 */
#define DEPLOY_COLS "id, property_id, environment, version, hostnames, certificate_id, created_at"

enum deploy_col {
	DC_ID,
	DC_PROPERTY_ID,
	DC_ENVIRONMENT,
	DC_VERSION,
	DC_HOSTNAMES,
	DC_CERTIFICATE_ID,
	DC_CREATED_AT,
	DC_COUNT
};

/* Render the deployment of st's current row, whose DEPLOY_COLS start at
 * column c0, as one JSON object appended to w. */
static void deploy_render_row(struct cp_jw *w, struct db_stmt *st, int c0)
{
	assert(db_col_count(st) >= c0 + DC_COUNT);
	cp_jw_open(w, '{');
	cp_jw_key(w, "id");
	db_jw_text(w, st, c0 + DC_ID);
	cp_jw_key(w, "property_id");
	db_jw_text(w, st, c0 + DC_PROPERTY_ID);
	cp_jw_key(w, "environment");
	db_jw_text(w, st, c0 + DC_ENVIRONMENT);
	cp_jw_key(w, "version");
	db_jw_int(w, st, c0 + DC_VERSION);
	cp_jw_key(w, "hostnames");
	db_jw_json(w, st, c0 + DC_HOSTNAMES);
	cp_jw_key(w, "certificate_id");
	db_jw_text(w, st, c0 + DC_CERTIFICATE_ID);
	cp_jw_key(w, "created_at");
	db_jw_time(w, st, c0 + DC_CREATED_AT);
	cp_jw_close(w, '}');
}

/* db_row_render_fn over deploy_render_row for (seq, DEPLOY_COLS) rows. */
static cp_rc deploy_render_listed(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	(void)db;
	deploy_render_row(w, st, 1);
	return CP_OK;
}

/* Step st, a statement returning DEPLOY_COLS, once: its row as a JSON
 * object into *out (owned by the caller), CP_ERR_NOT_FOUND without one, or
 * an error. Resets st. */
static cp_rc deploy_fetch(struct db *db, struct db_stmt *st, json_t **out)
{
	struct cp_buf b;
	struct cp_jw w;
	cp_rc rc = db_step_row(db, st);

	if (rc != CP_OK)
		return rc;
	cp_buf_init(&b, DB_RENDER_MAX);
	cp_jw_init(&w, &b);
	deploy_render_row(&w, st, 0);
	db_reset(st);
	rc = cp_jw_rc(&w);
	if (rc == CP_OK)
		rc = db_json_from_buf(&b, out);
	cp_buf_free(&b);
	return rc;
}

/* Whether hostname h is one of the strings of the JSON array list (NULL:
 * none). */
static bool hostname_listed(const json_t *list, const char *h)
{
	const json_t *v;
	size_t i;

	json_array_foreach(list, i, v)
	{
		const char *s = json_string_value(v);
		if (s && strcmp(s, h) == 0)
			return true;
	}
	return false;
}

/* Drop the claims of the tenant's property_id whose hostname is not in the
 * JSON array list (NULL: drop them all). The names are read first, then
 * deleted one by one by their unique (tenant, hostname), so no statement
 * writes the table while another still reads it. CP_OK or an error. */
static cp_rc drop_unlisted(struct db *db, const char *tenant_id, const char *property_id,
			   const json_t *list)
{
	static const char sql_have[] =
		"SELECT hostname FROM property_hostnames WHERE property_id = ?1";
	static const char sql_drop[] =
		"DELETE FROM property_hostnames WHERE tenant_id = ?1 AND hostname = ?2 "
		"AND property_id = ?3";
	struct db_stmt *st = db_stmt_keyed(db, sql_have, property_id, NULL);
	json_t *gone = json_array(), *v;
	cp_rc rc = CP_OK;
	size_t i;
	int r = DB_DONE;

	if (!st || !gone) {
		rc = st ? CP_ERR_NOMEM : CP_ERR_INTERNAL;
		goto out;
	}
	while ((r = db_step(st)) == DB_ROW) {
		const char *h = db_col_text(st, 0);
		if (h && !hostname_listed(list, h) && json_array_append_new(gone, json_string(h))) {
			rc = CP_ERR_NOMEM;
			goto out;
		}
	}
	db_reset(st);
	st = NULL;
	if (r != DB_DONE) {
		rc = db_rc(db, r);
		goto out;
	}
	json_array_foreach(gone, i, v)
	{
		st = db_stmt_keyed(db, sql_drop, tenant_id, json_string_value(v));
		if (st)
			db_bind_text(st, 3, property_id);
		rc = db_exec_stmt(db, st);
		st = NULL;
		if (rc != CP_OK)
			goto out;
	}
out:
	if (st)
		db_reset(st);
	json_decref(gone);
	return rc;
}

/* Make in's hostnames the property's hostnames, in order: claims of
 * hostnames no longer listed are dropped, kept ones move to their new
 * position with their status, new ones are pending claims expiring after
 * in->claim_ttl_seconds. A hostname verified by another tenant, or held by
 * another property of this tenant, is CP_ERR_CONFLICT with *taken set. */
static cp_rc set_hostnames(struct db *db, const char *tenant_id, const char *property_id,
			   const struct db_property_in *in, struct db_hostname_taken *taken)
{
	static const char sql_add[] =
		"INSERT INTO property_hostnames (property_id, tenant_id, hostname, position, token, "
		"claimed_at, expires_at, next_check_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6) "
		"ON CONFLICT (tenant_id, hostname) DO UPDATE SET position = excluded.position "
		"WHERE property_hostnames.property_id = excluded.property_id";
	int64_t now = cp_now();
	struct db_stmt *st;
	json_t *h;
	size_t i;
	cp_rc rc;

	rc = drop_unlisted(db, tenant_id, property_id, in->hostnames);
	if (rc != CP_OK)
		return rc;
	json_array_foreach(in->hostnames, i, h)
	{
		uint8_t rnd[16];
		char token[33];
		bool other = false;

		rc = db_hostname_verified_elsewhere(db, tenant_id, json_string_value(h), &other);
		if (rc != CP_OK)
			return rc;
		if (!other && cp_random(rnd, sizeof(rnd)) != CP_OK)
			return CP_ERR_CRYPTO;
		st = other ? NULL : db_stmt(db, sql_add);
		if (!other && !st)
			return CP_ERR_INTERNAL;
		if (st) {
			cp_hex(rnd, sizeof(rnd), token);
			db_bind_text(st, 1, property_id);
			db_bind_text(st, 2, tenant_id);
			db_bind_text(st, 3, json_string_value(h));
			db_bind_int64(st, 4, (int64_t)i);
			db_bind_text(st, 5, token);
			db_bind_int64(st, 6, now);
			db_bind_int64(st, 7, now + in->claim_ttl_seconds);
			rc = db_exec_stmt(db, st);
			if (rc != CP_OK)
				return rc;
		}
		/* No row changed: another property of this tenant holds it. */
		if (other || db_changes(db) == 0) {
			if (taken) {
				taken->index = i;
				taken->other_tenant = other;
			}
			return CP_ERR_CONFLICT;
		}
	}
	return CP_OK;
}

cp_rc db_property_create(struct db *db, const char *tenant_id, const struct db_property_in *in,
			 struct db_hostname_taken *taken, json_t **out)
{
	static const char sql[] =
		"INSERT INTO properties (id, tenant_id, name, edge_hostname_id, certificate_id, "
		"certificate_renew_automation, version, created_at, updated_at) "
		"VALUES (?, ?, ?, ?, ?, ?, 1, ?7, ?7)";
	char id[CP_UUID_LEN + 1];
	cp_rc rc;
	struct db_stmt *st = db_stmt_new_row(db, sql, id, tenant_id);

	assert(db && tenant_id && out && in);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, in->name);
	db_bind_text(st, 4, in->edge_hostname_id);
	db_bind_text(st, 5, in->certificate_id);
	db_bind_int64(st, 6, in->renew_automation ? 1 : 0);
	db_bind_int64(st, 7, cp_now());
	rc = db_exec_stmt(db, st);
	if (rc == CP_OK)
		rc = set_hostnames(db, tenant_id, id, in, taken);
	if (rc == CP_OK)
		rc = db_property_get(db, tenant_id, id, out);
	return rc;
}

cp_rc db_property_render(struct db *db, const char *tenant_id, const char *id, struct cp_buf *out)
{
	static const char sql[] = "SELECT " PROP_COLS " FROM properties p "
				  "WHERE p.tenant_id = ?1 AND p.id = ?2";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, id);
	bool began = false;
	struct cp_jw w;
	cp_rc rc;

	assert(db && tenant_id && id && out);
	/* The row and its claims are two statements: one read transaction for
	 * both (one snapshot, and one WAL read lock instead of two). */
	rc = db_read_begin(db, &began);
	if (rc != CP_OK)
		return rc;
	rc = db_step_row(db, st);
	if (rc != CP_OK)
		goto out;
	cp_jw_init(&w, out);
	rc = prop_render_row(db, st, 0, &w);
	db_reset(st);
	if (rc == CP_OK)
		rc = cp_jw_rc(&w);
out:
	db_read_end(db, began);
	return rc;
}

cp_rc db_property_get(struct db *db, const char *tenant_id, const char *id, json_t **out)
{
	struct cp_buf b;
	cp_rc rc;

	assert(db && tenant_id && out);
	cp_buf_init(&b, DB_RENDER_MAX);
	rc = db_property_render(db, tenant_id, id, &b);
	if (rc == CP_OK)
		rc = db_json_from_buf(&b, out);
	cp_buf_free(&b);
	return rc;
}

cp_rc db_property_list(struct db *db, const char *tenant_id, const char *hostname,
		       const char *certificate_id, struct db_page pg, struct db_list *out)
{
	/* ?5 hostname (NULL: no condition), ?6 certificate. With a certificate
	 * its range of properties_tenant_certificate (migration 017) drives,
	 * otherwise the tenant's seq range; both in either order. SQLite's
	 * planner picks each without INDEXED BY (not portable): the equality
	 * on (tenant, certificate) and the seq range and order match it. */
#define SQL_IF_HOST                                                                                \
	" AND (CAST(?5 AS TEXT) IS NULL OR p.id IN (SELECT property_id FROM "                      \
	"property_hostnames WHERE hostname = CAST(?5 AS TEXT))) "
#define SQL_ALL(cmp, dir)                                                                          \
	"SELECT p.seq, " PROP_COLS " FROM properties p WHERE p.tenant_id = ?1 AND p.seq " cmp      \
	" ?3" SQL_IF_HOST "ORDER BY p.seq" dir " LIMIT ?4"
#define SQL_CERT(cmp, dir)                                                                         \
	"SELECT p.seq, " PROP_COLS " FROM properties p "                                           \
	"WHERE p.tenant_id = ?1 AND p.certificate_id = ?6 AND p.seq " cmp " ?3" SQL_IF_HOST        \
	"ORDER BY p.seq" dir " LIMIT ?4"
	static const char *const sql_all[2] = DB_LIST_BOTH(SQL_ALL);
	static const char *const sql_cert[2] = DB_LIST_BOTH(SQL_CERT);
#undef SQL_IF_HOST
#undef SQL_ALL
#undef SQL_CERT
	struct db_stmt *st =
		db_stmt_page(db, certificate_id ? sql_cert : sql_all, tenant_id, NULL, pg);

	if (st) {
		db_bind_text(st, 5, hostname);
		db_bind_text(st, 6, certificate_id);
	}
	return db_fetch_page_render(db, st, pg.limit, prop_render_listed, out);
}

cp_rc db_property_update(struct db *db, const char *tenant_id, const char *id,
			 const struct db_property_in *in, bool bump_version,
			 struct db_hostname_taken *taken, json_t **out)
{
	static const char sql[] =
		"UPDATE properties SET name = ?, edge_hostname_id = ?, certificate_id = ?, "
		"certificate_renew_automation = ?, version = version + ?, updated_at = ? "
		"WHERE tenant_id = ? AND id = ?";
	struct db_stmt *st = db_stmt_keyed(db, sql, in->name, in->edge_hostname_id);
	cp_rc rc;

	assert(db && tenant_id && out && in);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, in->certificate_id);
	db_bind_int64(st, 4, in->renew_automation ? 1 : 0);
	db_bind_int64(st, 5, bump_version ? 1 : 0);
	db_bind_int64(st, 6, cp_now());
	db_bind_text(st, 7, tenant_id);
	db_bind_text(st, 8, id);
	rc = db_exec_one(db, st);
	if (rc == CP_OK)
		rc = set_hostnames(db, tenant_id, id, in, taken);
	if (rc == CP_OK)
		rc = db_property_get(db, tenant_id, id, out);
	return rc;
}

cp_rc db_property_delete(struct db *db, const char *tenant_id, const char *id)
{
	static const char sql[] = "DELETE FROM properties WHERE tenant_id = ?1 AND id = ?2";
	/* The edge stops serving its production hostnames (edge.c). */
	cp_rc rc = db_edge_feed_removed(db, tenant_id, id);

	return rc == CP_OK ? db_delete_scoped(db, sql, tenant_id, id) : rc;
}

cp_rc db_deployment_create(struct db *db, const char *tenant_id, const char *property_id,
			   const char *environment, json_t **out)
{
	/* The property's version, certificate and hostnames in order, read by
	 * one statement (one snapshot), then copied into the deployment. */
	static const char sql_read[] =
		"SELECT p.version, p.certificate_id, h.hostname FROM properties p "
		"LEFT JOIN property_hostnames h ON h.property_id = p.id "
		"WHERE p.tenant_id = ?1 AND p.id = ?2 ORDER BY h.position";
	static const char sql_ins[] =
		"INSERT INTO deployments (id, tenant_id, property_id, environment, version, "
		"hostnames, certificate_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
		"RETURNING " DEPLOY_COLS;
	char id[CP_UUID_LEN + 1], *cert = NULL;
	struct db_stmt *st = db_stmt_keyed(db, sql_read, tenant_id, property_id);
	struct cp_buf hb;
	struct cp_jw hw;
	int64_t version = 0;
	bool found = false;
	cp_rc rc = CP_OK;
	int r;

	assert(db && tenant_id && out);
	*out = NULL;
	if (!st)
		return CP_ERR_INTERNAL;
	cp_buf_init(&hb, DB_RENDER_MAX);
	cp_jw_init(&hw, &hb);
	cp_jw_open(&hw, '[');
	while ((r = db_step(st)) == DB_ROW) {
		if (!found) {
			found = true;
			version = db_col_int64(st, 0);
			if (!db_col_null(st, 1) && !(cert = cp_strdup(db_col_text(st, 1)))) {
				rc = CP_ERR_NOMEM;
				break;
			}
		}
		if (!db_col_null(st, 2))
			db_jw_text(&hw, st, 2);
	}
	db_reset(st);
	cp_jw_close(&hw, ']');
	if (rc == CP_OK && r != DB_ROW && r != DB_DONE)
		rc = db_rc(db, r);
	if (rc == CP_OK && !found)
		rc = CP_ERR_NOT_FOUND;
	if (rc == CP_OK)
		rc = cp_jw_rc(&hw);
	if (rc != CP_OK)
		goto out;
	st = db_stmt_new_row(db, sql_ins, id, tenant_id);
	if (!st) {
		rc = CP_ERR_INTERNAL;
		goto out;
	}
	db_bind_text(st, 3, property_id);
	db_bind_text(st, 4, environment);
	db_bind_int64(st, 5, version);
	db_bind_textn(st, 6, cp_buf_str(&hb), hb.len);
	db_bind_text(st, 7, cert);
	db_bind_int64(st, 8, cp_now());
	rc = deploy_fetch(db, st, out);
	if (rc == CP_OK && strcmp(environment, "production") == 0)
		rc = db_edge_feed_deployed(db, tenant_id, property_id); /* edge.c */
out:
	free(cert);
	cp_buf_free(&hb);
	return rc;
}

cp_rc db_deployment_get(struct db *db, const char *tenant_id, const char *property_id,
			const char *id, json_t **out)
{
	/* by the unique id; tenant and property only filter the one row */
	static const char sql[] = "SELECT " DEPLOY_COLS " FROM deployments "
				  "WHERE tenant_id = ?1 AND property_id = ?2 AND id = ?3";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, property_id);

	assert(db && tenant_id && property_id && id && out);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, id);
	return deploy_fetch(db, st, out);
}

cp_rc db_deployment_list(struct db *db, const char *tenant_id, const char *property_id,
			 struct db_page pg, struct db_list *out)
{
#define SQL(cmp, dir)                                                                              \
	"SELECT seq, " DEPLOY_COLS " FROM deployments WHERE tenant_id = ?1 AND property_id = ?2 "  \
	"AND seq " cmp " ?3 ORDER BY seq" dir " LIMIT ?4"
	static const char *const sql[2] = DB_LIST_BOTH(SQL);
#undef SQL
	return db_fetch_page_render(db, db_stmt_page(db, sql, tenant_id, property_id, pg), pg.limit,
				    deploy_render_listed, out);
}
