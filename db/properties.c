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
#include <string.h>

/* The hostnames of property p in their given order, as a JSON array. */
/* clang-format off */
#define PROP_HOSTNAMES                                                                    \
	"(SELECT json_group_array(hostname) FROM (SELECT hostname FROM property_hostnames " \
	"h WHERE h.property_id = p.id ORDER BY h.position))"
/* clang-format on */

/* The claim of each hostname of property pid, in order: what verifies it
 * (TXT name and token) and where it stands. */
/* clang-format off */
#define DB_CLAIMS_JSON(pid)                                                                  \
	"(SELECT json_group_array(json_object('hostname', hostname, 'status', status, "     \
	"'method', method, 'token', token, 'txt_record_name', '_certplane-verify.' || "     \
	"(CASE WHEN hostname LIKE '*.%' THEN substr(hostname, 3) ELSE hostname END), "      \
	"'checked_at', " DB_TS("checked_at") ", 'expires_at', " DB_TS("expires_at") ", "    \
	"'verified_at', " DB_TS("verified_at") ", 'detail', detail)) FROM (SELECT * FROM "  \
	"property_hostnames c WHERE c.property_id = " pid " ORDER BY c.position))"
/* clang-format on */

/* {version, deployed_at} of the latest deployment of p to env, or null. */
/* clang-format off */
#define PROP_DEPLOYED(env)                                                              \
	"json((SELECT json_object('version', d.version, 'deployed_at', " DB_TS(         \
		"d.created_at") ") FROM deployments d WHERE d.property_id = p.id "      \
				"AND d.environment = '" env "' ORDER BY d.seq DESC LIMIT 1))"
/* clang-format on */

/* clang-format off */
#define PROP_JSON                                                                          \
	"json_object('id', p.id, 'name', p.name, 'hostnames', json(" PROP_HOSTNAMES "), "  \
	"'edge_hostname_id', p.edge_hostname_id, "                                         \
	"'edge_hostname', (SELECT e.hostname FROM edge_hostnames e "                       \
	"WHERE e.id = p.edge_hostname_id), "                                               \
	"'certificate_id', p.certificate_id, "                                             \
	"'hostname_verification', json(" DB_CLAIMS_JSON("p.id") "), "                     \
	"'certificate_renew_automation', "                                                 \
	"json(CASE WHEN p.certificate_renew_automation THEN 'true' ELSE 'false' END), "    \
	"'version', p.version, 'staging', " PROP_DEPLOYED("staging") ", "                  \
	"'production', " PROP_DEPLOYED("production") ", "                                  \
	"'created_at', " DB_TS("p.created_at") ", 'updated_at', " DB_TS("p.updated_at") ")"
/* clang-format on */

/* clang-format off */
#define DEPLOY_JSON                                                                        \
	"json_object('id', id, 'property_id', property_id, 'environment', environment, "   \
	"'version', version, 'hostnames', json(hostnames), 'certificate_id', certificate_id, " \
	"'created_at', " DB_TS("created_at") ")"
/* clang-format on */

/* Make in's hostnames the property's hostnames, in order: claims of
 * hostnames no longer listed are dropped, kept ones move to their new
 * position with their status, new ones are pending claims expiring after
 * in->claim_ttl_seconds. A hostname verified by another tenant, or held by
 * another property of this tenant, is CP_ERR_CONFLICT with *taken set. */
static cp_rc set_hostnames(struct db *db, const char *tenant_id, const char *property_id,
			   const struct db_property_in *in, struct db_hostname_taken *taken)
{
	static const char sql_drop[] =
		"DELETE FROM property_hostnames WHERE property_id = ?1 AND hostname NOT IN "
		"(SELECT value FROM json_each(?2))";
	static const char sql_add[] =
		"INSERT INTO property_hostnames (property_id, tenant_id, hostname, position, token, "
		"claimed_at, expires_at, next_check_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?6) "
		"ON CONFLICT (tenant_id, hostname) DO UPDATE SET position = excluded.position "
		"WHERE property_id = excluded.property_id";
	int64_t now = cp_now();
	sqlite3_stmt *st = db_stmt(db, sql_drop);
	json_t *h;
	size_t i;
	cp_rc rc;

	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 1, property_id);
	db_bind_json(st, 2, in->hostnames);
	rc = db_exec_stmt(db, st);
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
			sqlite3_bind_int64(st, 4, (sqlite3_int64)i);
			db_bind_text(st, 5, token);
			sqlite3_bind_int64(st, 6, now);
			sqlite3_bind_int64(st, 7, now + in->claim_ttl_seconds);
			rc = db_exec_stmt(db, st);
			if (rc != CP_OK)
				return rc;
		}
		/* No row changed: another property of this tenant holds it. */
		if (other || sqlite3_changes(db->h) == 0) {
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
	sqlite3_stmt *st = db_stmt_new_row(db, sql, id, tenant_id);

	assert(db && tenant_id && out && in);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, in->name);
	db_bind_text(st, 4, in->edge_hostname_id);
	db_bind_text(st, 5, in->certificate_id);
	sqlite3_bind_int(st, 6, in->renew_automation ? 1 : 0);
	sqlite3_bind_int64(st, 7, cp_now());
	rc = db_exec_stmt(db, st);
	if (rc == CP_OK)
		rc = set_hostnames(db, tenant_id, id, in, taken);
	if (rc == CP_OK)
		rc = db_property_get(db, tenant_id, id, out);
	return rc;
}

cp_rc db_property_get(struct db *db, const char *tenant_id, const char *id, json_t **out)
{
	static const char sql[] = "SELECT " PROP_JSON " FROM properties p "
				  "WHERE p.tenant_id = ?1 AND p.id = ?2";
	return db_get_scoped(db, sql, tenant_id, id, out);
}

cp_rc db_property_list(struct db *db, const char *tenant_id, const char *hostname,
		       struct db_page pg, struct db_list *out)
{
	static const char sql[] =
		"SELECT p.seq, " PROP_JSON " FROM properties p "
		"WHERE p.tenant_id = ?1 AND p.seq > ?3 AND (?5 IS NULL OR p.id IN "
		"(SELECT property_id FROM property_hostnames WHERE hostname = ?5)) "
		"ORDER BY p.seq LIMIT ?4";
	return db_list_filtered(db, sql, tenant_id, NULL, hostname, pg, out);
}

cp_rc db_property_update(struct db *db, const char *tenant_id, const char *id,
			 const struct db_property_in *in, bool bump_version,
			 struct db_hostname_taken *taken, json_t **out)
{
	static const char sql[] =
		"UPDATE properties SET name = ?, edge_hostname_id = ?, certificate_id = ?, "
		"certificate_renew_automation = ?, version = version + ?, updated_at = ? "
		"WHERE tenant_id = ? AND id = ?";
	sqlite3_stmt *st = db_stmt_keyed(db, sql, in->name, in->edge_hostname_id);
	cp_rc rc;

	assert(db && tenant_id && out && in);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, in->certificate_id);
	sqlite3_bind_int(st, 4, in->renew_automation ? 1 : 0);
	sqlite3_bind_int(st, 5, bump_version ? 1 : 0);
	sqlite3_bind_int64(st, 6, cp_now());
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
	return db_delete_scoped(db, sql, tenant_id, id);
}

cp_rc db_deployment_create(struct db *db, const char *tenant_id, const char *property_id,
			   const char *environment, json_t **out)
{
	static const char sql[] =
		"INSERT INTO deployments (id, tenant_id, property_id, environment, version, "
		"hostnames, certificate_id, created_at) "
		"SELECT ?1, p.tenant_id, p.id, ?2, p.version, " PROP_HOSTNAMES
		", p.certificate_id, ?3 "
		"FROM properties p WHERE p.tenant_id = ?4 AND p.id = ?5 RETURNING " DEPLOY_JSON;
	char id[CP_UUID_LEN + 1];
	sqlite3_stmt *st = db_stmt_new_row(db, sql, id, environment);

	assert(db && tenant_id && out);
	if (!st)
		return CP_ERR_INTERNAL;
	sqlite3_bind_int64(st, 3, cp_now());
	db_bind_text(st, 4, tenant_id);
	db_bind_text(st, 5, property_id);
	return db_fetch_json(db, st, out);
}

cp_rc db_deployment_get(struct db *db, const char *tenant_id, const char *property_id,
			const char *id, json_t **out)
{
	/* by the unique id; tenant and property only filter the one row */
	static const char sql[] = "SELECT " DEPLOY_JSON " FROM deployments "
				  "WHERE tenant_id = ?1 AND property_id = ?2 AND id = ?3";
	sqlite3_stmt *st = db_stmt_keyed(db, sql, tenant_id, property_id);

	assert(db && tenant_id && property_id && id && out);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, id);
	return db_fetch_json(db, st, out);
}

cp_rc db_deployment_list(struct db *db, const char *tenant_id, const char *property_id,
			 struct db_page pg, struct db_list *out)
{
	static const char sql[] = "SELECT seq, " DEPLOY_JSON " FROM deployments "
				  "WHERE tenant_id = ?1 AND property_id = ?2 AND seq > ?3 "
				  "ORDER BY seq LIMIT ?4";
	return db_list_scoped(db, sql, tenant_id, property_id, pg, out);
}
