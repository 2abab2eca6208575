/*
 * hostname_claims.c - who may have a hostname: the claim rules (verify,
 * take over, release, demote, expire) and the issuance scope.
 *
 * A row of property_hostnames is one tenant's claim of a hostname for one
 * property (migration 005). It is pending until a DNS check (made by
 * claims/claims.c, never here) proves the tenant controls the name; the
 * first tenant whose claim verifies takes the hostname, and every other
 * tenant's pending claim of it is released. A pending claim that never
 * verifies is released after the TTL.
 *
 * Re-checks, so that a verified claim is neither kept for ever after its
 * DNS moved away nor lost to one bad lookup: verified claims are re-checked
 * every verified_recheck_seconds (a day by default); a check that ANSWERS and
 * proves nothing counts a failure and
 * brings the next check forward to recheck_seconds; the third such check in
 * a row demotes the claim to pending (a fresh TTL to fix its DNS), and the
 * hostname can then be taken by a tenant that proves it. A DNS error or
 * timeout counts nothing.
 */
#include "db/db_internal.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CLAIM_DEMOTE_AFTER 3

cp_rc db_hostname_verified_elsewhere(struct db *db, const char *tenant_id, const char *hostname,
				     bool *other)
{
	static const char sql[] = "SELECT 1 FROM property_hostnames WHERE hostname = ?1 AND "
				  "status = 'verified' AND tenant_id != ?2";
	/* A wildcard covers the names one label below its base: the
	 * expression is the one of index property_hostnames_verified_parent
	 * (migration 009), written the same so that SQLite uses it. */
	static const char sql_wild[] =
		"SELECT 1 FROM property_hostnames WHERE "
		"substr(hostname, instr(hostname, '.') + 1) = ?1 AND status = 'verified' AND "
		"tenant_id != ?2 LIMIT 1";
	cp_rc rc;

	assert(db && tenant_id && hostname && other);
	rc = db_probe(db, db_stmt_keyed(db, sql, hostname, tenant_id));
	if (rc == CP_ERR_NOT_FOUND && cp_hostname_is_wildcard(hostname))
		rc = db_probe(db, db_stmt_keyed(db, sql_wild, hostname + 2, tenant_id));
	*other = rc == CP_OK;
	return rc == CP_ERR_NOT_FOUND ? CP_OK : rc;
}

/* Remove one claim (tenant, hostname), bump its property's version and tell
 * the tenant why (reason). Inside the caller's transaction. A claim that is
 * gone already (another instance released it between our read and this
 * DELETE, under PostgreSQL's READ COMMITTED) is left to that release: no
 * second bump, no second event. */
static cp_rc claim_release(struct db *db, const char *tenant_id, const char *property_id,
			   const char *hostname, const char *reason)
{
	static const char sql_del[] =
		"DELETE FROM property_hostnames WHERE tenant_id = ? AND hostname = ?";
	static const char sql_bump[] = "UPDATE properties SET version = version + 1, "
				       "updated_at = ?2 WHERE id = ?1";
	struct db_stmt *st = db_stmt_keyed(db, sql_del, tenant_id, hostname);
	json_t *data = NULL;
	cp_rc rc;

	if (!st)
		return CP_ERR_INTERNAL;
	rc = db_exec_stmt(db, st);
	if (rc != CP_OK || db_changes(db) == 0)
		return rc;
	rc = db_edge_feed_withdraw(db, tenant_id, property_id, hostname); /* edge.c */
	if (rc == CP_OK)
		rc = db_exec_at(db, sql_bump, property_id, cp_now());
	if (rc != CP_OK)
		return rc;
	data = json_pack("{s:s,s:s,s:s}", "property_id", property_id, "hostname", hostname,
			 "reason", reason);
	rc = data ? db_event_add(db, tenant_id, "property.hostname_released", data, NULL)
		  : CP_ERR_NOMEM;
	json_decref(data);
	return rc;
}

/* Release every other tenant's claim of hostname (they are all pending:
 * the verified one is tenant_id's). */
static cp_rc release_others(struct db *db, const char *tenant_id, const char *hostname)
{
	static const char sql[] = "SELECT tenant_id, property_id FROM property_hostnames "
				  "WHERE hostname = ?1 AND tenant_id != ?2";
	struct db_stmt *st = db_stmt(db, sql);
	json_t *others = json_array(), *o;
	size_t i;
	cp_rc rc = CP_OK;
	int r;

	if (!st || !others) {
		json_decref(others);
		return st ? CP_ERR_NOMEM : CP_ERR_INTERNAL;
	}
	db_bind_text(st, 1, hostname);
	db_bind_text(st, 2, tenant_id);
	/* Collect first: releasing writes the table being read. */
	while ((r = db_step(st)) == DB_ROW)
		json_array_append_new(others,
				      json_pack("[s,s]", db_col_text(st, 0), db_col_text(st, 1)));
	db_reset(st);
	if (r != DB_DONE)
		rc = db_rc(db, r);
	json_array_foreach(others, i, o)
	{
		if (rc != CP_OK)
			break;
		rc = claim_release(db, json_string_value(json_array_get(o, 0)),
				   json_string_value(json_array_get(o, 1)), hostname,
				   "verified_by_another_tenant");
	}
	json_decref(others);
	return rc;
}

cp_rc db_hostname_withdraw(struct db *db, const char *tenant_id, const char *hostname,
			   bool *released, int *revoked)
{
	static const char sql[] =
		"SELECT property_id FROM property_hostnames WHERE tenant_id = ?1 AND hostname = ?2";
	char pid[CP_UUID_LEN + 1] = "";
	cp_rc rc;

	assert(db && tenant_id && hostname && released && revoked);
	*released = false;
	*revoked = 0;
	rc = db_fetch_text(db, db_stmt_keyed(db, sql, tenant_id, hostname), pid, sizeof(pid));
	if (rc == CP_OK) {
		rc = claim_release(db, tenant_id, pid, hostname, "withdrawn_by_operator");
		*released = rc == CP_OK;
	} else if (rc == CP_ERR_NOT_FOUND) {
		rc = CP_OK;
	}
	if (rc == CP_OK)
		rc = db_revoke_lost(db, tenant_id, hostname, NULL, "withdrawn_by_operator",
				    revoked);
	if (rc == CP_OK && !*released && *revoked == 0)
		rc = CP_ERR_NOT_FOUND;
	return rc;
}

cp_rc db_claim_record(struct db *db, const char *tenant_id, const char *hostname,
		      const struct db_claim_check *chk, const struct db_claim_policy *pol,
		      const char **status_out)
{
	static const char sql_get[] = "SELECT status, failures, property_id FROM "
				      "property_hostnames WHERE tenant_id = ? AND hostname = ?";
	static const char sql_verify[] =
		"UPDATE property_hostnames SET status = 'verified', method = ?3, checked_at = ?4, "
		"verified_at = CASE WHEN status = 'verified' THEN verified_at ELSE ?4 END, "
		"expires_at = NULL, failures = 0, next_check_at = ?5, detail = ?6 "
		"WHERE tenant_id = ?1 AND hostname = ?2";
	/* Pending (or verified and not yet demoted): note the check only. */
	static const char sql_note[] =
		"UPDATE property_hostnames SET checked_at = ?3, next_check_at = ?4, detail = ?5, "
		"failures = ?6 WHERE tenant_id = ?1 AND hostname = ?2";
	static const char sql_demote[] =
		"UPDATE property_hostnames SET status = 'pending', method = NULL, claimed_at = ?3, "
		"expires_at = ?4, checked_at = ?3, next_check_at = ?5, failures = 0, detail = ?6 "
		"WHERE tenant_id = ?1 AND hostname = ?2";
	struct db_stmt *st = db_stmt_keyed(db, sql_get, tenant_id, hostname);
	int64_t now = cp_now();
	char status[16] = "", property_id[CP_UUID_LEN + 1] = "";
	const char *result = "pending";
	bool other = false, verified;
	json_t *data = NULL;
	int failures = 0;
	cp_rc rc;

	assert(db && tenant_id);
	assert(chk && pol);
	if (status_out)
		*status_out = NULL;
	rc = db_step_row(db, st);
	if (rc != CP_OK)
		return rc;
	db_column_copy(st, 0, status, sizeof(status));
	failures = db_col_int64(st, 1);
	db_column_copy(st, 2, property_id, sizeof(property_id));
	db_reset(st);
	verified = strcmp(status, "verified") == 0;

	if (chk->outcome == DB_CLAIM_VERIFIED) {
		rc = db_hostname_verified_elsewhere(db, tenant_id, hostname, &other);
		if (rc != CP_OK)
			return rc;
	}
	if (chk->outcome == DB_CLAIM_VERIFIED && !other) {
		st = db_stmt_keyed(db, sql_verify, tenant_id, hostname);
		if (!st)
			return CP_ERR_INTERNAL;
		db_bind_text(st, 3, chk->method);
		db_bind_int64(st, 4, now);
		db_bind_int64(st, 5, now + pol->verified_recheck_seconds);
		db_bind_text(st, 6, chk->detail);
		rc = db_exec_stmt(db, st);
		if (rc == CP_OK)
			rc = release_others(db, tenant_id, hostname);
		/* BygoneSSL: no other tenant keeps a valid certificate for it. */
		if (rc == CP_OK)
			rc = db_revoke_for_new_holder(db, tenant_id, hostname);
		/* Newly verified: a production deployment may serve it now. */
		if (rc == CP_OK && !verified)
			rc = db_edge_feed_deployed(db, tenant_id, property_id);
		result = "verified";
		goto out;
	}
	if (chk->outcome == DB_CLAIM_NOT_VERIFIED && verified &&
	    failures + 1 >= CLAIM_DEMOTE_AFTER) {
		st = db_stmt_keyed(db, sql_demote, tenant_id, hostname);
		if (!st)
			return CP_ERR_INTERNAL;
		db_bind_int64(st, 3, now);
		db_bind_int64(st, 4, now + pol->ttl_seconds);
		db_bind_int64(st, 5, now + pol->recheck_seconds);
		db_bind_text(st, 6, chk->detail);
		rc = db_exec_stmt(db, st);
		if (rc == CP_OK) /* off the edge until verified again (edge.c) */
			rc = db_edge_feed_withdraw(db, tenant_id, property_id, hostname);
		data = json_pack("{s:s,s:s,s:s?}", "property_id", property_id, "hostname", hostname,
				 "detail", chk->detail);
		if (rc == CP_OK)
			rc = data ? db_event_add(db, tenant_id, "property.hostname_unverified",
						 data, NULL)
				  : CP_ERR_NOMEM;
		goto out;
	}
	/* A claim another tenant holds verified, a negative check, or a DNS error. */
	if (verified && chk->outcome == DB_CLAIM_NOT_VERIFIED)
		failures++;
	st = db_stmt_keyed(db, sql_note, tenant_id, hostname);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 3, now);
	/* A verified claim answering "not verified" is re-checked soon; one
	 * that only failed to resolve keeps its daily cadence. */
	db_bind_int64(st, 4,
		      now + (verified && !failures ? pol->verified_recheck_seconds
						   : pol->recheck_seconds));
	if (other) {
		char *d =
			cp_aprintf("%s: but another tenant holds %s verified",
				   chk->detail ? chk->detail : "DNS verifies the claim", hostname);
		db_bind_text(st, 5, d);
		free(d);
	} else {
		db_bind_text(st, 5, chk->detail);
	}
	db_bind_int64(st, 6, failures);
	rc = db_exec_stmt(db, st);
	result = other ? "owned_by_another_tenant" : verified ? "verified" : "pending";
out:
	json_decref(data);
	if (rc == CP_OK && status_out)
		*status_out = result;
	return rc;
}

cp_rc db_claim_get(struct db *db, const char *tenant_id, const char *hostname, json_t **out)
{
	static const char sql[] =
		"SELECT c.property_id, c.status, c.method, c.token, e.hostname FROM "
		"property_hostnames c JOIN properties p ON p.id = c.property_id JOIN edge_hostnames "
		"e ON e.id = p.edge_hostname_id WHERE c.tenant_id = ?1 AND c.hostname = ?2";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, hostname);
	cp_rc rc;

	assert(db && tenant_id && out);
	*out = NULL;
	rc = db_step_row(db, st);
	if (rc != CP_OK)
		return rc;
	*out = json_pack("{s:s?,s:s?,s:s?,s:s?,s:s?}", "property_id", db_col_text(st, 0), "status",
			 db_col_text(st, 1), "method", db_col_text(st, 2), "token",
			 db_col_text(st, 3), "edge_hostname", db_col_text(st, 4));
	db_reset(st);
	return *out ? CP_OK : CP_ERR_NOMEM;
}

cp_rc db_claims_of_property(struct db *db, const char *tenant_id, const char *property_id,
			    json_t **out)
{
	/* One row with a NULL hostname for a property without hostnames, none
	 * for a property that is not the tenant's. */
	static const char sql[] =
		"SELECT h.hostname, h.token FROM properties p LEFT JOIN property_hostnames h "
		"ON h.property_id = p.id AND h.tenant_id = p.tenant_id "
		"WHERE p.tenant_id = ?1 AND p.id = ?2 ORDER BY h.position";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, property_id);
	json_t *arr = NULL;
	bool found = false;
	cp_rc rc = CP_OK;
	int r;

	assert(db && tenant_id && out);
	*out = NULL;
	if (!st)
		return CP_ERR_INTERNAL;
	arr = json_array();
	if (!arr) {
		db_reset(st);
		return CP_ERR_NOMEM;
	}
	while ((r = db_step(st)) == DB_ROW) {
		found = true;
		if (db_col_null(st, 0))
			continue;
		if (json_array_append_new(arr,
					  json_pack("{s:s,s:s?}", "hostname", db_col_text(st, 0),
						    "token", db_col_text(st, 1))) != 0) {
			rc = CP_ERR_NOMEM;
			break;
		}
	}
	db_reset(st);
	if (rc == CP_OK && r != DB_DONE && r != DB_ROW)
		rc = db_rc(db, r);
	if (rc == CP_OK && !found)
		rc = CP_ERR_NOT_FOUND;
	if (rc != CP_OK) {
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return CP_OK;
}

cp_rc db_edge_in_chain(struct db *db, const char *tenant_id, json_t *chain)
{
	/* One lookup in the unique hostname index per name of the chain (at
	 * most 8 CNAME hops, acme/dns.c), the tenant checked on the row. */
	static const char sql[] =
		"SELECT 1 FROM edge_hostnames WHERE hostname = ?2 AND tenant_id = ?1";
	json_t *name;
	size_t i;

	assert(db && tenant_id);
	json_array_foreach(chain, i, name)
	{
		cp_rc rc;

		if (!json_is_string(name))
			continue;
		rc = db_probe(db, db_stmt_keyed(db, sql, tenant_id, json_string_value(name)));
		if (rc != CP_ERR_NOT_FOUND)
			return rc;
	}
	return CP_ERR_NOT_FOUND;
}

cp_rc db_claims_due(struct db *db, int limit, int64_t lease_seconds, json_t **out)
{
	/* Rows are named by their unique key (the table has no other). The
	 * outer next_check_at test repeats the inner one for PostgreSQL: an
	 * instance that waited for another's lease of a row re-reads it and
	 * skips it, instead of leasing it a second time. */
	static const char sql[] =
		"UPDATE property_hostnames SET next_check_at = CAST(?1 AS BIGINT) + CAST(?3 AS BIGINT) "
		"WHERE (tenant_id, hostname) IN (SELECT tenant_id, hostname FROM property_hostnames "
		"WHERE next_check_at <= CAST(?1 AS BIGINT) ORDER BY next_check_at LIMIT ?2) "
		"AND next_check_at <= CAST(?1 AS BIGINT) RETURNING tenant_id, property_id";
	struct db_stmt *st = db_stmt(db, sql);
	json_t *arr = json_array(), *seen = json_object();
	cp_rc rc = CP_OK;
	int r;

	assert(db && out && limit > 0);
	*out = NULL;
	if (!st || !arr || !seen) {
		json_decref(arr);
		json_decref(seen);
		return st ? CP_ERR_NOMEM : CP_ERR_INTERNAL;
	}
	db_bind_int64(st, 1, cp_now());
	db_bind_int64(st, 2, limit);
	db_bind_int64(st, 3, lease_seconds);
	while ((r = db_step(st)) == DB_ROW) {
		const char *pid = db_col_text(st, 1);

		if (json_object_get(seen, pid))
			continue;
		json_object_set_new(seen, pid, json_true());
		json_array_append_new(arr, json_pack("{s:s,s:s}", "tenant_id", db_col_text(st, 0),
						     "property_id", pid));
	}
	db_reset(st);
	json_decref(seen);
	if (r != DB_DONE) {
		rc = db_rc(db, r);
		json_decref(arr);
		return rc;
	}
	*out = arr;
	return CP_OK;
}

cp_rc db_claims_expire(struct db *db, int limit, int *removed)
{
	static const char sql[] = "SELECT tenant_id, property_id, hostname FROM property_hostnames "
				  "WHERE status = 'pending' AND expires_at <= ? "
				  "ORDER BY expires_at LIMIT ?";
	struct db_stmt *st = NULL;
	json_t *rows = json_array(), *o;
	size_t i;
	cp_rc rc;
	int r;

	assert(db && limit > 0 && removed);
	*removed = 0;
	if (!rows)
		return CP_ERR_NOMEM;
	rc = db_begin(db);
	if (rc != CP_OK)
		goto out;
	st = db_stmt(db, sql);
	if (!st) {
		rc = CP_ERR_INTERNAL;
		goto out;
	}
	db_bind_int64(st, 1, cp_now());
	db_bind_int64(st, 2, limit);
	while ((r = db_step(st)) == DB_ROW)
		json_array_append_new(rows, json_pack("[s,s,s]", db_col_text(st, 0),
						      db_col_text(st, 1), db_col_text(st, 2)));
	db_reset(st);
	if (r != DB_DONE) {
		rc = db_rc(db, r);
		goto out;
	}
	json_array_foreach(rows, i, o)
	{
		rc = claim_release(db, json_string_value(json_array_get(o, 0)),
				   json_string_value(json_array_get(o, 1)),
				   json_string_value(json_array_get(o, 2)), "claim_expired");
		if (rc != CP_OK)
			goto out;
	}
	rc = db_commit(db);
	if (rc == CP_OK)
		*removed = (int)json_array_size(rows);
out:
	if (rc != CP_OK)
		db_rollback(db);
	json_decref(rows);
	return rc;
}

/* True if name is zone or a name under zone. */
static bool name_under(const char *name, const char *zone)
{
	size_t n = strlen(name), z = strlen(zone);

	if (z == 0 || n < z)
		return false;
	return strcmp(name + n - z, zone) == 0 && (n == z || name[n - z - 1] == '.');
}

/* The edge hostname (of any tenant) equal to name or a parent of it, copied
 * to found; CP_ERR_NOT_FOUND if none. One unique-index lookup per label. */
static cp_rc edge_above(struct db *db, const char *name, char *found, size_t cap)
{
	static const char sql[] = "SELECT hostname FROM edge_hostnames WHERE hostname = ?";
	const char *p = name;

	while (p && *p) {
		cp_rc rc = db_fetch_text(db, db_stmt_keyed(db, sql, p, NULL), found, cap);

		if (rc != CP_ERR_NOT_FOUND)
			return rc;
		p = strchr(p, '.');
		if (p)
			p++;
	}
	return CP_ERR_NOT_FOUND;
}

/* Refuse name in v as one of the service's edge names: it relation edge. */
static void refuse_edge(struct db_scope_verdict *v, const char *name, const char *relation,
			const char *edge)
{
	v->reason = "hostname_in_edge_zone";
	snprintf(v->detail, sizeof(v->detail),
		 "%s %s %s: edge names are the service's, not a tenant's", name, relation, edge);
}

cp_rc db_issuance_scope(struct db *db, const char *edge_zone, const char *tenant_id, json_t *names,
			struct db_scope_verdict *v)
{
	char edge[CP_HOSTNAME_MAX + 2];
	json_t *h;
	size_t i;
	cp_rc rc;

	assert(db && tenant_id && names && v);
	memset(v, 0, sizeof(*v));
	json_array_foreach(names, i, h)
	{
		const char *name = json_string_value(h), *base;
		bool other = false;

		if (!name)
			continue; /* callers validated the names; nothing to scope */
		base = cp_hostname_is_wildcard(name) ? name + 2 : name;
		v->index = i;
		if (edge_zone && name_under(base, edge_zone)) {
			refuse_edge(v, name, "is in the edge zone", edge_zone);
			return CP_OK;
		}
		rc = edge_above(db, base, edge, sizeof(edge));
		if (rc == CP_OK) {
			refuse_edge(v, name, "is (or is under) the edge hostname", edge);
			return CP_OK;
		}
		if (rc != CP_ERR_NOT_FOUND)
			return rc;
		rc = db_hostname_verified_elsewhere(db, tenant_id, name, &other);
		if (rc != CP_OK)
			return rc;
		if (other) {
			v->reason = "hostname_owned_by_another_tenant";
			snprintf(v->detail, sizeof(v->detail),
				 "%s is verified by another tenant; it cannot be in this tenant's "
				 "certificates",
				 name);
			return CP_OK;
		}
	}
	v->index = 0;
	return CP_OK;
}
