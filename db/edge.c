/*
 * edge.c - certificates to the edge (migration 021): the operator's keys
 * of role "edge", the change feed of what production serves, and what the
 * edge was last seen serving.
 *
 * The feed (edge_feed) is an append-only log: one row per production
 * hostname and change, in seq order, read by a range scan on its primary
 * key from the reader's cursor. A row names the certificate version the
 * hostname serves from now on, or none (a removal). The writers below run
 * inside the caller's transaction, so a feed row commits with the change
 * that caused it: a production deployment (its hostnames, and removals for
 * those the previous production deployment had and this one has not), a
 * new version of a certificate that production deployments carry, and the
 * deletion of a deployed property or of its tenant, and a claim verified,
 * released or demoted. What a hostname serves is its last row; older rows
 * are only history. Every tenant is hostile: a serving row is written only
 * for a hostname the property holds verified, and a removal only by the
 * property whose row is the hostname's last (feed_add).
 *
 * When the served check is on (db_edge_check_set), each writer of a
 * serving row also queues one "edge_check" job per property (deduplicated
 * while queued): server/edge_check.c then compares what the edge serves.
 */
#include "crypto/crypto.h"
#include "db/db_internal.h"

#include <assert.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static atomic_bool edge_check_on;

void db_edge_check_set(bool on)
{
	atomic_store(&edge_check_on, on);
}

/* ------------------------------------------------------------ edge keys */

#define EKEY_COLS "seq, id, name, prefix, created_at"

/* db_row_render_fn of an edge key: st's row is (EKEY_COLS). Never the hash. */
static cp_rc ekey_render(struct db *db, struct db_stmt *st, struct cp_jw *w)
{
	(void)db;
	assert(db_col_count(st) >= 5);
	cp_jw_open(w, '{');
	cp_jw_key(w, "id");
	db_jw_text(w, st, 1);
	cp_jw_key(w, "name");
	db_jw_text(w, st, 2);
	cp_jw_key(w, "role");
	cp_jw_cstr(w, "edge");
	cp_jw_key(w, "prefix");
	db_jw_text(w, st, 3);
	cp_jw_key(w, "created_at");
	db_jw_time(w, st, 4);
	cp_jw_close(w, '}');
	return CP_OK;
}

cp_rc db_edge_key_create(struct db *db, const char *name, const char *key_hash, const char *prefix,
			 json_t **out)
{
	static const char sql[] = "INSERT INTO edge_keys (id, name, key_hash, prefix, created_at) "
				  "VALUES (?1, ?2, ?3, ?4, ?5) RETURNING " EKEY_COLS;
	char id[CP_UUID_LEN + 1];
	struct db_stmt *st = db_stmt_new_row(db, sql, id, name);

	assert(db && name && key_hash && prefix && out);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, key_hash);
	db_bind_text(st, 4, prefix);
	db_bind_int64(st, 5, cp_now());
	return db_fetch_render(db, st, ekey_render, out);
}

cp_rc db_edge_key_list(struct db *db, struct db_page pg, struct db_list *out)
{
#define SQL(cmp, dir)                                                                              \
	"SELECT " EKEY_COLS " FROM edge_keys WHERE seq " cmp " ?3 ORDER BY seq" dir " LIMIT ?4"
	static const char *const sql[2] = DB_LIST_BOTH(SQL);
#undef SQL
	return db_fetch_page_render(db, db_stmt_page(db, sql, NULL, NULL, pg), pg.limit,
				    ekey_render, out);
}

cp_rc db_edge_key_delete(struct db *db, const char *id)
{
	static const char sql[] = "DELETE FROM edge_keys WHERE id = ?2";
	return db_delete_scoped(db, sql, NULL, id);
}

cp_rc db_edge_key_lookup(struct db *db, const char *key_hash, char key_id[CP_UUID_LEN + 1])
{
	static const char sql[] = "SELECT id FROM edge_keys WHERE key_hash = ?1";

	assert(db && key_hash && key_id);
	return db_fetch_text(db, db_stmt_keyed(db, sql, key_hash, NULL), key_id, CP_UUID_LEN + 1);
}

/* ------------------------------------------------------------ feed writes */

/* Whether the tenant's claim of hostname is verified and on property_id:
 * only then may the property put a certificate for it on the edge. */
static cp_rc feed_holds(struct db *db, const char *tenant_id, const char *property_id,
			const char *hostname, bool *holds)
{
	static const char sql[] = "SELECT 1 FROM property_hostnames WHERE tenant_id = ?1 "
				  "AND hostname = ?2 AND property_id = ?3 AND status = 'verified'";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, hostname);
	cp_rc rc;

	*holds = false;
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, property_id);
	rc = db_probe(db, st);
	*holds = rc == CP_OK;
	return rc == CP_ERR_NOT_FOUND ? CP_OK : rc;
}

/* Whether the edge serves hostname for property_id now: its last feed row
 * is this property's and not a removal. A removal is written only then, so
 * a property never takes a hostname off the edge that another property (of
 * any tenant) put there since. */
static cp_rc feed_serving(struct db *db, const char *property_id, const char *hostname,
			  bool *serving)
{
	static const char sql[] = "SELECT property_id, version_id FROM edge_feed "
				  "WHERE hostname = ?1 ORDER BY seq DESC LIMIT 1";
	struct db_stmt *st = db_stmt_keyed(db, sql, hostname, NULL);
	char pid[CP_UUID_LEN + 1];
	cp_rc rc = db_step_row(db, st);

	*serving = false;
	if (rc == CP_ERR_NOT_FOUND)
		return CP_OK;
	if (rc != CP_OK)
		return rc;
	db_column_copy(st, 0, pid, sizeof(pid));
	*serving = strcmp(pid, property_id) == 0 && !db_col_null(st, 1);
	db_reset(st);
	return CP_OK;
}

/* Append one feed row: hostname serves version_id of certificate_id from
 * now on, or (version_id NULL) is no longer served. A serving row is
 * written only for a hostname whose claim the property holds verified (an
 * unverified one is withdrawn instead); a removal only when the property
 * is what the edge serves for it. *served (may be NULL) is set when a
 * serving row was written. */
static cp_rc feed_add(struct db *db, const char *tenant_id, const char *property_id,
		      const char *hostname, const char *certificate_id, const char *version_id,
		      bool *served)
{
	static const char sql[] = "INSERT INTO edge_feed (tenant_id, property_id, hostname, "
				  "certificate_id, version_id, created_at) "
				  "VALUES (?1, ?2, ?3, ?4, ?5, ?6)";
	struct db_stmt *st;
	bool ok = false;
	cp_rc rc;

	assert(tenant_id && property_id && hostname);
	if (version_id) {
		rc = feed_holds(db, tenant_id, property_id, hostname, &ok);
		if (rc != CP_OK)
			return rc;
		if (!ok)
			version_id = NULL;
	}
	if (!version_id) {
		rc = feed_serving(db, property_id, hostname, &ok);
		if (rc != CP_OK || !ok)
			return rc;
	}
	if (served && version_id)
		*served = true;
	st = db_stmt_keyed(db, sql, tenant_id, property_id);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, hostname);
	db_bind_text(st, 4, version_id ? certificate_id : NULL);
	db_bind_text(st, 5, version_id);
	db_bind_int64(st, 6, cp_now());
	return db_exec_stmt(db, st);
}

/* Queue the served check of property_id (when it is on). */
static cp_rc feed_check(struct db *db, const char *tenant_id, const char *property_id)
{
	char dedupe[64 + CP_UUID_LEN];
	json_t *payload = NULL;
	cp_rc rc;

	if (!atomic_load(&edge_check_on))
		return CP_OK;
	payload = json_pack("{s:s}", "property_id", property_id);
	if (!payload)
		return CP_ERR_NOMEM;
	snprintf(dedupe, sizeof(dedupe), "edge_check:%s", property_id);
	rc = db_job_enqueue(db, DB_EDGE_CHECK_JOB, tenant_id, payload, cp_now() + 1, dedupe);
	json_decref(payload);
	return rc;
}

/* One production deployment as the writers read it: the property, its
 * hostnames (a JSON array, owned) and what it serves. */
struct feed_dep {
	char property_id[CP_UUID_LEN + 1];
	char certificate_id[CP_UUID_LEN + 1]; /* "" = none */
	char version_id[CP_UUID_LEN + 1];     /* "" = no current version */
	json_t *hostnames;
};

/* Read up to max rows (property_id, hostnames, certificate_id, version_id)
 * of st into deps; *n the count. Resets st. */
static cp_rc feed_deps_read(struct db *db, struct db_stmt *st, struct feed_dep *deps, size_t max,
			    size_t *n)
{
	int r;

	*n = 0;
	if (!st)
		return CP_ERR_INTERNAL;
	while ((r = db_step(st)) == DB_ROW && *n < max) {
		struct feed_dep *d = &deps[*n];
		const char *h = db_col_text(st, 1);
		db_column_copy(st, 0, d->property_id, sizeof(d->property_id));
		db_column_copy(st, 2, d->certificate_id, sizeof(d->certificate_id));
		db_column_copy(st, 3, d->version_id, sizeof(d->version_id));
		d->hostnames = h ? json_loads(h, 0, NULL) : json_array();
		if (!json_is_array(d->hostnames)) {
			json_decref(d->hostnames);
			d->hostnames = NULL;
			db_reset(st);
			return CP_ERR_INTERNAL;
		}
		(*n)++;
	}
	db_reset(st);
	return r == DB_ROW || r == DB_DONE ? CP_OK : db_rc(db, r);
}

static void feed_deps_clear(struct feed_dep *deps, size_t n)
{
	for (size_t i = 0; i < n; i++)
		json_decref(deps[i].hostnames);
}

static bool listed(const json_t *list, const char *h)
{
	size_t i;
	json_t *v;

	json_array_foreach(list, i, v) if (json_is_string(v) &&
					   strcmp(json_string_value(v), h) == 0) return true;
	return false;
}

/* Serving rows for every hostname of d (removals when it serves nothing)
 * and removals for the hostnames of prev (may be NULL) d does not list. */
static cp_rc feed_serve(struct db *db, const char *tenant_id, const struct feed_dep *d,
			const struct feed_dep *prev)
{
	const char *vid = d->version_id[0] ? d->version_id : NULL;
	bool served = false;
	cp_rc rc = CP_OK;
	size_t i;
	json_t *v;

	json_array_foreach(d->hostnames, i, v)
	{
		if (rc == CP_OK && json_is_string(v))
			rc = feed_add(db, tenant_id, d->property_id, json_string_value(v),
				      d->certificate_id, vid, &served);
	}
	if (prev)
		json_array_foreach(prev->hostnames, i, v)
		{
			if (rc == CP_OK && json_is_string(v) &&
			    !listed(d->hostnames, json_string_value(v)))
				rc = feed_add(db, tenant_id, d->property_id, json_string_value(v),
					      NULL, NULL, NULL);
		}
	if (rc == CP_OK && served)
		rc = feed_check(db, tenant_id, d->property_id);
	return rc;
}

/* The columns feed_deps_read reads, of deployment d. */
#define DEP_COLS                                                                                   \
	"d.property_id, d.hostnames, d.certificate_id, (SELECT v.id FROM certificates c "          \
	"JOIN certificate_versions v ON v.certificate_id = c.id AND v.version = c.version "        \
	"WHERE c.id = d.certificate_id AND c.tenant_id = d.tenant_id)"
/* d is the latest production deployment of its property. */
#define DEP_LATEST                                                                                 \
	"d.environment = 'production' AND d.seq = (SELECT max(d2.seq) FROM deployments d2 "        \
	"WHERE d2.property_id = d.property_id AND d2.environment = 'production')"

cp_rc db_edge_feed_deployed(struct db *db, const char *tenant_id, const char *property_id)
{
	static const char sql[] = "SELECT " DEP_COLS " FROM deployments d WHERE d.tenant_id = ?1 "
				  "AND d.property_id = ?2 AND d.environment = 'production' "
				  "ORDER BY d.seq DESC LIMIT 2";
	struct feed_dep deps[2] = { 0 };
	size_t n = 0;
	cp_rc rc;

	assert(db && tenant_id && property_id);
	rc = feed_deps_read(db, db_stmt_keyed(db, sql, tenant_id, property_id), deps, 2, &n);
	if (rc == CP_OK && n > 0)
		rc = feed_serve(db, tenant_id, &deps[0], n > 1 ? &deps[1] : NULL);
	feed_deps_clear(deps, n);
	return rc;
}

/* Bound on the properties one certificate change feeds in one pass. */
#define FEED_PROPS_MAX 4096

/* The properties whose production deployment carries certificate_id:
 * feed what each serves now (gone: its removals). */
static cp_rc feed_carriers(struct db *db, const char *tenant_id, const char *certificate_id,
			   bool gone)
{
	static const char sql[] = "SELECT " DEP_COLS " FROM deployments d WHERE d.tenant_id = ?1 "
				  "AND d.certificate_id = ?2 AND " DEP_LATEST;
	struct feed_dep *deps = calloc(FEED_PROPS_MAX, sizeof(*deps));
	size_t n = 0;
	cp_rc rc;

	assert(db && tenant_id && certificate_id);
	if (!deps)
		return CP_ERR_NOMEM;
	rc = feed_deps_read(db, db_stmt_keyed(db, sql, tenant_id, certificate_id), deps,
			    FEED_PROPS_MAX, &n);
	for (size_t i = 0; rc == CP_OK && i < n; i++) {
		if (gone)
			deps[i].version_id[0] = '\0'; /* serves nothing: withdrawn */
		rc = feed_serve(db, tenant_id, &deps[i], NULL);
	}
	feed_deps_clear(deps, n);
	free(deps);
	return rc;
}

cp_rc db_edge_feed_renewed(struct db *db, const char *tenant_id, const char *certificate_id)
{
	return feed_carriers(db, tenant_id, certificate_id, false);
}

cp_rc db_edge_feed_cert_deleted(struct db *db, const char *tenant_id, const char *certificate_id)
{
	return feed_carriers(db, tenant_id, certificate_id, true);
}

cp_rc db_edge_feed_removed(struct db *db, const char *tenant_id, const char *property_id)
{
	static const char sql_one[] =
		"SELECT " DEP_COLS " FROM deployments d "
		"WHERE d.tenant_id = ?1 AND d.property_id = ?2 AND " DEP_LATEST;
	static const char sql_all[] = "SELECT " DEP_COLS " FROM deployments d "
				      "WHERE d.tenant_id = ?1 AND " DEP_LATEST;
	struct feed_dep *deps = calloc(FEED_PROPS_MAX, sizeof(*deps));
	size_t n = 0, i;
	cp_rc rc;
	json_t *v;

	assert(db && tenant_id);
	if (!deps)
		return CP_ERR_NOMEM;
	rc = feed_deps_read(db,
			    property_id ? db_stmt_keyed(db, sql_one, tenant_id, property_id)
					: db_stmt_keyed(db, sql_all, tenant_id, NULL),
			    deps, FEED_PROPS_MAX, &n);
	for (size_t k = 0; rc == CP_OK && k < n; k++)
		json_array_foreach(deps[k].hostnames, i, v)
		{
			if (rc == CP_OK && json_is_string(v))
				rc = feed_add(db, tenant_id, deps[k].property_id,
					      json_string_value(v), NULL, NULL, NULL);
		}
	feed_deps_clear(deps, n);
	free(deps);
	return rc;
}

cp_rc db_edge_feed_withdraw(struct db *db, const char *tenant_id, const char *property_id,
			    const char *hostname)
{
	assert(db && tenant_id && property_id && hostname);
	return feed_add(db, tenant_id, property_id, hostname, NULL, NULL, NULL);
}

/* ------------------------------------------------------------ feed read */

/* Seconds after which a gap in the feed's seqs is taken for a rollback. */
#define FEED_GAP_GRACE 5

enum feed_col {
	FC_SEQ,
	FC_TENANT,
	FC_PROPERTY,
	FC_HOSTNAME,
	FC_CERT,
	FC_VID,
	FC_VERSION,
	FC_FP,
	FC_LEAF,
	FC_CHAIN,
	FC_KEY,
	FC_AT,
	FC_COUNT
};

/* Render the feed row of st as one entry into w; the key is opened with
 * ring (in clear only in w and wiped here). */
static cp_rc feed_render(const struct crypto_keyring *ring, struct db_stmt *st, struct cp_jw *w)
{
	char *aad = NULL, *pt = NULL, *chain = NULL;
	const char *leaf;
	size_t n = 0, ll;
	bool removed = db_col_null(st, FC_VID);
	cp_rc rc = CP_OK;

	assert(db_col_count(st) >= FC_COUNT);
	cp_jw_open(w, '{');
	cp_jw_key(w, "cursor");
	cp_jw_int(w, db_col_int64(st, FC_SEQ));
	cp_jw_key(w, "hostname");
	db_jw_text(w, st, FC_HOSTNAME);
	cp_jw_key(w, "tenant_id");
	db_jw_text(w, st, FC_TENANT);
	cp_jw_key(w, "property_id");
	db_jw_text(w, st, FC_PROPERTY);
	cp_jw_key(w, "deployed_at");
	db_jw_time(w, st, FC_AT);
	cp_jw_key(w, "removed");
	cp_jw_bool(w, removed);
	if (removed)
		goto close;
	cp_jw_key(w, "certificate_id");
	db_jw_text(w, st, FC_CERT);
	cp_jw_key(w, "version");
	db_jw_int(w, st, FC_VERSION);
	cp_jw_key(w, "fingerprint_sha256");
	db_jw_text(w, st, FC_FP);
	leaf = db_col_text(st, FC_LEAF);
	ll = leaf ? strlen(leaf) : 0;
	chain = cp_aprintf("%s%s%s", leaf ? leaf : "", ll && leaf[ll - 1] != '\n' ? "\n" : "",
			   db_col_text(st, FC_CHAIN) ? db_col_text(st, FC_CHAIN) : "");
	aad = cp_aprintf("certificate_versions:%s", db_col_text(st, FC_VID));
	if (!chain || !aad) {
		rc = CP_ERR_NOMEM;
		goto out;
	}
	rc = crypto_open(ring, aad, db_col_text(st, FC_KEY), &pt, &n);
	if (rc == CP_ERR_INVALID)
		rc = CP_ERR_CRYPTO; /* stored text that is not sealed is corruption */
	if (rc != CP_OK)
		goto out;
	cp_jw_key(w, "chain_pem");
	cp_jw_cstr(w, chain);
	cp_jw_key(w, "key_pem");
	cp_jw_str(w, pt, n);
close:
	cp_jw_close(w, '}');
out:
	free(aad);
	free(chain);
	if (pt)
		crypto_wipe_free_buf(pt, n);
	return rc;
}

cp_rc db_edge_feed_read(struct db *db, const struct crypto_keyring *ring, int64_t after, int limit,
			struct cp_buf *out, int *count, int64_t *last)
{
	static const char sql[] =
		"SELECT f.seq, f.tenant_id, f.property_id, f.hostname, f.certificate_id, v.id, "
		"v.version, v.fingerprint_sha256, v.cert_pem, v.chain_pem, v.private_key, "
		"f.created_at FROM edge_feed f LEFT JOIN certificate_versions v "
		"ON v.id = f.version_id WHERE f.seq > ?1 ORDER BY f.seq LIMIT ?2";
	struct db_stmt *st = db_stmt(db, sql);
	int64_t next = after + 1, now = cp_now();
	struct cp_jw w;
	cp_rc rc = CP_OK;
	int r;

	assert(db && ring && out && count && last && limit > 0);
	*count = 0;
	*last = after;
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 1, after);
	db_bind_int64(st, 2, limit);
	cp_jw_init(&w, out);
	cp_jw_open(&w, '[');
	while (rc == CP_OK && (r = db_step(st)) == DB_ROW) {
		int64_t seq = db_col_int64(st, FC_SEQ);
		/* A gap before seq: on PostgreSQL a seq is taken at insert and
		 * the row seen at commit, so a lower one may still commit. Stop
		 * before it (the reader polls again) unless seq's row is older
		 * than FEED_GAP_GRACE: then the gap is a rolled-back insert. */
		if (seq != next && db_col_int64(st, FC_AT) > now - FEED_GAP_GRACE)
			break;
		rc = feed_render(ring, st, &w);
		*last = seq;
		next = seq + 1;
		(*count)++;
	}
	db_reset(st);
	if (rc == CP_OK && r != DB_DONE)
		rc = db_rc(db, r);
	cp_jw_close(&w, ']');
	if (rc == CP_OK)
		rc = cp_jw_rc(&w);
	return rc;
}

/* ------------------------------------------------------------ compaction */

/*
 * The feed grows by one row per hostname and change (every renewal), but a
 * reader needs only each hostname's last row: an older one is followed by
 * a later row of its hostname, which the reader meets after it. So a row
 * goes once a later row of its hostname is older than cutoff. The gap it
 * leaves is then followed by rows at least as old as that later one, so
 * the read's gap rule (FEED_GAP_GRACE) passes it at once; cutoff must be
 * further back than the grace (the caller's FEED_COMPACT_AGE). Removals
 * that are a hostname's last row stay: a reader that is behind must see
 * them.
 *
 * One call looks at the next `limit` rows after *cursor (a range scan on
 * seq, each probing edge_feed_hostname) and moves *cursor past them, back
 * to 0 at the end: bounded work per call whatever the size of the feed.
 */
cp_rc db_edge_feed_compact(struct db *db, int64_t cutoff, int limit, int64_t *cursor, int *deleted)
{
	static const char window[] =
		"SELECT seq FROM edge_feed WHERE seq > ?1 ORDER BY seq LIMIT 1 OFFSET ?2";
	static const char sql[] =
		"DELETE FROM edge_feed WHERE seq > ?1 AND seq <= ?2 AND EXISTS (SELECT 1 "
		"FROM edge_feed g WHERE g.hostname = edge_feed.hostname AND g.seq > edge_feed.seq "
		"AND g.created_at < ?3)";
	struct db_stmt *st;
	int64_t hi = INT64_MAX;
	cp_rc rc;

	assert(db && cursor && deleted && limit > 0 && *cursor >= 0);
	assert(cutoff < cp_now() - FEED_GAP_GRACE);
	*deleted = 0;
	st = db_stmt(db, window);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 1, *cursor);
	db_bind_int64(st, 2, limit - 1);
	rc = db_fetch_int64(db, st, &hi);
	if (rc == CP_ERR_NOT_FOUND)
		hi = INT64_MAX; /* fewer than limit rows left: this pass ends the sweep */
	else if (rc != CP_OK)
		return rc;
	st = db_stmt(db, sql);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_int64(st, 1, *cursor);
	db_bind_int64(st, 2, hi);
	db_bind_int64(st, 3, cutoff);
	rc = db_exec_stmt(db, st);
	if (rc != CP_OK)
		return rc;
	*deleted = (int)db_changes(db);
	*cursor = hi == INT64_MAX ? 0 : hi;
	return CP_OK;
}

/* ------------------------------------------------------------ served */

cp_rc db_edge_expected(struct db *db, const char *tenant_id, const char *property_id,
		       struct db_edge_expected *out)
{
	static const char sql[] =
		"SELECT d.hostnames, d.certificate_id, v.version, v.fingerprint_sha256 "
		"FROM deployments d JOIN certificates c ON c.id = d.certificate_id "
		"AND c.tenant_id = d.tenant_id JOIN certificate_versions v "
		"ON v.certificate_id = c.id AND v.version = c.version "
		"WHERE d.tenant_id = ?1 AND d.property_id = ?2 AND d.environment = 'production' "
		"ORDER BY d.seq DESC LIMIT 1";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, property_id);
	const char *h;
	cp_rc rc;

	assert(db && tenant_id && property_id && out);
	memset(out, 0, sizeof(*out));
	rc = db_step_row(db, st);
	if (rc != CP_OK)
		return rc;
	h = db_col_text(st, 0);
	out->hostnames = h ? json_loads(h, 0, NULL) : NULL;
	db_column_copy(st, 1, out->certificate_id, sizeof(out->certificate_id));
	out->version = (int)db_col_int64(st, 2);
	db_column_copy(st, 3, out->fingerprint, sizeof(out->fingerprint));
	db_reset(st);
	if (!json_is_array(out->hostnames)) {
		json_decref(out->hostnames);
		out->hostnames = NULL;
		return CP_ERR_INTERNAL;
	}
	/* Only what the feed put on the edge: the verified hostnames. */
	for (size_t i = json_array_size(out->hostnames); rc == CP_OK && i-- > 0;) {
		const char *h = json_string_value(json_array_get(out->hostnames, i));
		bool holds = false;
		rc = h ? feed_holds(db, tenant_id, property_id, h, &holds) : CP_OK;
		if (rc == CP_OK && !holds)
			json_array_remove(out->hostnames, i);
	}
	if (rc != CP_OK) {
		json_decref(out->hostnames);
		out->hostnames = NULL;
	}
	return rc;
}

cp_rc db_edge_served_set(struct db *db, const char *tenant_id, const char *property_id,
			 const char *hostname, const char *fingerprint, bool matches)
{
	static const char sql[] =
		"INSERT INTO edge_served (tenant_id, property_id, hostname, fingerprint, matches, "
		"checked_at) SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM properties "
		"WHERE tenant_id = ?1 AND id = ?2) ON CONFLICT (property_id, hostname) DO UPDATE "
		"SET fingerprint = excluded.fingerprint, matches = excluded.matches, "
		"checked_at = excluded.checked_at";
	struct db_stmt *st = db_stmt_keyed(db, sql, tenant_id, property_id);

	assert(db && tenant_id && property_id && hostname);
	if (!st)
		return CP_ERR_INTERNAL;
	db_bind_text(st, 3, hostname);
	db_bind_text(st, 4, fingerprint);
	db_bind_int64(st, 5, matches ? 1 : 0);
	db_bind_int64(st, 6, cp_now());
	return db_exec_stmt(db, st);
}

cp_rc db_edge_served_render(struct db *db, const char *property_id, struct cp_jw *w)
{
	static const char sql[] = "SELECT hostname, fingerprint, matches, checked_at "
				  "FROM edge_served WHERE property_id = ?1 ORDER BY hostname";
	struct db_stmt *st = db_stmt_keyed(db, sql, property_id, NULL);
	int r;

	if (!st)
		return CP_ERR_INTERNAL;
	cp_jw_open(w, '{');
	while ((r = db_step(st)) == DB_ROW) {
		const char *h = db_col_text(st, 0);
		cp_jw_key(w, h ? h : "");
		cp_jw_open(w, '{');
		cp_jw_key(w, "fingerprint");
		db_jw_text(w, st, 1);
		cp_jw_key(w, "matches");
		db_jw_bool(w, st, 2);
		cp_jw_key(w, "checked_at");
		db_jw_time(w, st, 3);
		cp_jw_close(w, '}');
	}
	db_reset(st);
	cp_jw_close(w, '}');
	return r == DB_DONE ? CP_OK : db_rc(db, r);
}
