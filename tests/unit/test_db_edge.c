/*
 * test_db_edge.c - the storage layer's contracts for the edge (db/edge.c,
 * migration 021): edge keys (stored by hash, looked up, listed without
 * secrets, deleted), the change feed's writers (production only, verified
 * hostnames only, renewals, removals on redeploy, property and tenant
 * deletion, claims verified later or released; no tenant withdrawing
 * another's hostname), the feed read (cursor, limit, the key opened), the
 * served-check queue and what a check records on the property (never on
 * another tenant's). Runs on SQLite and, with CERTPLANE_TEST_DB=pg, on
 * PostgreSQL. Exit status is the number of failed checks (capped).
 */
#include "crypto/crypto.h"
#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

#include "common/buf.h"

static struct fx fx;
static struct crypto_keyring *ring;
static char ta[CP_UUID_LEN + 1], tb[CP_UUID_LEN + 1];
static char *key_pem, *cert_pem, *cert2_pem;
static struct crypto_key *key;

static const struct db_claim_policy pol = { 3600, 60, 86400 };
static const struct db_claim_check ok = { DB_CLAIM_VERIFIED, "cname", "CNAME ok" };

static bool make_material(void)
{
	json_t *h = json_pack("[ss]", "a1.edge-test", "a2.edge-test");
	int64_t now = cp_now();
	bool good = crypto_key_generate(CRYPTO_KEY_ECDSA_P256, &key) == CP_OK &&
		    crypto_key_to_pem(key, &key_pem) == CP_OK &&
		    crypto_self_signed_window(key, h, now - 3600, now + 30 * 86400, &cert_pem) ==
			    CP_OK &&
		    crypto_self_signed_window(key, h, now - 3600, now + 40 * 86400, &cert2_pem) ==
			    CP_OK;
	json_decref(h);
	return good;
}

/* The feed after cursor after, parsed; *last its cursor. */
static json_t *feed(int64_t after, int limit, int64_t *last)
{
	struct cp_buf b;
	int n = 0;
	json_t *out = NULL;

	cp_buf_init(&b, 1u << 24);
	if (db_edge_feed_read(fx.db, ring, after, limit, &b, &n, last) == CP_OK)
		out = json_loadb(cp_buf_str(&b), b.len, 0, NULL);
	cp_buf_free(&b);
	CHECK(json_is_array(out) && json_array_size(out) == (size_t)n);
	return out;
}

static int64_t feed_rows(void)
{
	return fx_int(fx.db, "SELECT count(*) FROM edge_feed");
}

static void test_keys(void)
{
	char id[CP_UUID_LEN + 1];
	struct db_list l = { 0 };
	json_t *k = NULL, *dup = NULL;

	CHECK_RC(db_edge_key_create(fx.db, "pop", "ab12", "cpk_ab12", &k), CP_OK);
	CHECK(!strcmp(fx_str(k, "role"), "edge") && !strcmp(fx_str(k, "name"), "pop"));
	CHECK(json_object_get(k, "key_hash") == NULL);
	CHECK_RC(db_edge_key_create(fx.db, "dup", "ab12", "cpk_ab12", &dup), CP_ERR_CONFLICT);
	CHECK(dup == NULL);
	CHECK_RC(db_edge_key_lookup(fx.db, "ab12", id), CP_OK);
	CHECK(!strcmp(id, fx_str(k, "id")));
	CHECK_RC(db_edge_key_lookup(fx.db, "ffff", id), CP_ERR_NOT_FOUND);
	CHECK_RC(db_edge_key_list(fx.db, (struct db_page){ .limit = 10 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 1);
	fx_list_clear(&l);
	CHECK_RC(db_edge_key_delete(fx.db, fx_str(k, "id")), CP_OK);
	CHECK_RC(db_edge_key_lookup(fx.db, "ab12", id), CP_ERR_NOT_FOUND);
	CHECK_RC(db_edge_key_delete(fx.db, fx_str(k, "id")), CP_ERR_NOT_FOUND);
	json_decref(k);
}

/* A property of tenant on a new edge hostname with hosts (stolen); its
 * first hostname's claim verified when verify. */
static cp_rc prop(const char *tenant, const char *label, const char *cert, json_t *hosts,
		  bool verify, char id[CP_UUID_LEN + 1])
{
	char ename[96];
	json_t *e = NULL, *p = NULL;
	const char *status = NULL;
	cp_rc rc;

	snprintf(ename, sizeof(ename), "%s.cdn-edge.test", label);
	rc = db_begin(fx.db);
	if (rc == CP_OK)
		rc = db_edge_hostname_create(fx.db, tenant, label, ename, &e);
	if (rc == CP_OK) {
		struct db_property_in in = { .name = label,
					     .hostnames = hosts,
					     .edge_hostname_id = fx_str(e, "id"),
					     .certificate_id = cert,
					     .claim_ttl_seconds = 3600 };
		rc = db_property_create(fx.db, tenant, &in, NULL, &p);
	}
	if (rc == CP_OK && verify)
		rc = db_claim_record(fx.db, tenant, json_string_value(json_array_get(hosts, 0)),
				     &ok, &pol, &status);
	if (rc == CP_OK)
		rc = db_commit(fx.db);
	if (rc != CP_OK)
		db_rollback(fx.db);
	else
		snprintf(id, CP_UUID_LEN + 1, "%s", fx_str(p, "id"));
	json_decref(e);
	json_decref(p);
	json_decref(hosts);
	return rc;
}

static cp_rc deploy(const char *tenant, const char *pid, const char *env)
{
	json_t *d = NULL;
	cp_rc rc = db_begin(fx.db);

	if (rc == CP_OK)
		rc = db_deployment_create(fx.db, tenant, pid, env, &d);
	if (rc == CP_OK)
		rc = db_commit(fx.db);
	else
		db_rollback(fx.db);
	json_decref(d);
	return rc;
}

static void test_feed(void)
{
	struct db *db = fx.db;
	char cid[CP_UUID_LEN + 1], pa[CP_UUID_LEN + 1], pb[CP_UUID_LEN + 1];
	struct db_cert_material m = { .cert_pem = cert_pem, .key_pem = key_pem };
	json_t *hosts = json_pack("[s]", "a1.edge-test"), *f = NULL, *e, *p = NULL, *served;
	struct db_cert_new in = { .name = "a",
				  .type = "server",
				  .source = "upload",
				  .status = "active",
				  .auto_renew = "none",
				  .hostnames = hosts };
	struct db_edge_expected exp = { 0 };
	const char *status = NULL;
	int64_t last = -1, mark;
	int version = 0;

	db_edge_check_set(true);
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_certificate_create(db, ta, &in, cid), CP_OK);
	CHECK_RC(db_certificate_add_version(db, ring, ta, cid, &m, &version), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	json_decref(hosts);
	CHECK_RC(prop(ta, "a", cid, json_pack("[ss]", "a1.edge-test", "a2.edge-test"), true, pa),
		 CP_OK);

	/* Staging never feeds the edge. */
	CHECK_RC(deploy(ta, pa, "staging"), CP_OK);
	CHECK(feed_rows() == 0);
	/* Production: the verified hostname only, with chain and key. */
	CHECK_RC(deploy(ta, pa, "production"), CP_OK);
	f = feed(0, 100, &last);
	CHECK(json_array_size(f) == 1);
	e = json_array_get(f, 0);
	CHECK(!strcmp(fx_str(e, "hostname"), "a1.edge-test") &&
	      !strcmp(fx_str(e, "tenant_id"), ta));
	CHECK(!strcmp(fx_str(e, "property_id"), pa) && !strcmp(fx_str(e, "certificate_id"), cid));
	CHECK(json_is_false(json_object_get(e, "removed")));
	CHECK(strstr(fx_str(e, "chain_pem"), "BEGIN CERTIFICATE") != NULL);
	CHECK(!strcmp(fx_str(e, "key_pem"), key_pem));
	CHECK(last == json_integer_value(json_object_get(e, "cursor")) && last > 0);
	json_decref(f);
	CHECK(fx_int(db, "SELECT count(*) FROM jobs WHERE kind = 'edge_check'") == 1);
	/* After the cursor: nothing; a bad cursor far ahead: nothing. */
	f = feed(last, 100, &mark);
	CHECK(json_array_size(f) == 0 && mark == last);
	json_decref(f);

	/* The second hostname verified later: it joins the edge then. */
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_claim_record(db, ta, "a2.edge-test", &ok, &pol, &status), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	f = feed(last, 100, &mark);
	CHECK(json_array_size(f) >= 1);
	CHECK(!strcmp(fx_str(json_array_get(f, json_array_size(f) - 1), "hostname"),
		      "a2.edge-test"));
	json_decref(f);

	/* A renewal (a new version) feeds both hostnames again. */
	last = mark;
	m.cert_pem = cert2_pem;
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_certificate_add_version(db, ring, ta, cid, &m, &version), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	f = feed(last, 100, &mark);
	CHECK(json_array_size(f) == 2);
	CHECK(json_integer_value(json_object_get(json_array_get(f, 0), "version")) == version);
	json_decref(f);
	/* limit bounds an answer. */
	f = feed(0, 1, &last);
	CHECK(json_array_size(f) == 1);
	json_decref(f);

	/* What the check compares: the verified hostnames, the current version. */
	CHECK_RC(db_edge_expected(db, ta, pa, &exp), CP_OK);
	CHECK(json_array_size(exp.hostnames) == 2 && exp.version == version);
	CHECK(strlen(exp.fingerprint) == 64);
	json_decref(exp.hostnames);
	CHECK_RC(db_edge_expected(db, tb, pa, &exp), CP_ERR_NOT_FOUND);

	/* Tenant B: an unverified production hostname never reaches the edge,
	 * and B cannot withdraw A's hostname nor record on A's property. */
	mark = feed_rows();
	CHECK_RC(prop(tb, "b", NULL, json_pack("[s]", "b1.edge-test"), false, pb), CP_OK);
	CHECK_RC(deploy(tb, pb, "production"), CP_OK);
	CHECK(feed_rows() == mark);
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_edge_feed_withdraw(db, tb, pb, "a1.edge-test"), CP_OK);
	CHECK_RC(db_edge_feed_withdraw(db, ta, pb, "a1.edge-test"), CP_OK);
	CHECK_RC(db_edge_served_set(db, tb, pa, "a1.edge-test", "00", false), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	CHECK(feed_rows() == mark);
	CHECK(fx_int(db, "SELECT count(*) FROM edge_served") == 0);

	/* A check's record shows on the property. */
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_edge_served_set(db, ta, pa, "a1.edge-test", "abcd", true), CP_OK);
	CHECK_RC(db_edge_served_set(db, ta, pa, "a1.edge-test", "beef", false), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	CHECK_RC(db_property_get(db, ta, pa, &p), CP_OK);
	served = json_object_get(json_object_get(p, "served"), "a1.edge-test");
	CHECK(served && !strcmp(fx_str(served, "fingerprint"), "beef"));
	CHECK(json_is_false(json_object_get(served, "matches")));
	CHECK(strlen(fx_str(served, "checked_at")) == 20);
	json_decref(p);

	/* Redeploy without a2 (released claim): a2 removed; delete: a1 removed. */
	CHECK_RC(db_begin(db), CP_OK);
	{
		struct db_property_in up = { .name = "a",
					     .hostnames = json_pack("[s]", "a1.edge-test"),
					     .certificate_id = cid,
					     .claim_ttl_seconds = 3600 };
		json_t *cur = NULL;
		CHECK_RC(db_property_get(db, ta, pa, &cur), CP_OK);
		up.edge_hostname_id = fx_str(cur, "edge_hostname_id");
		CHECK_RC(db_property_update(db, ta, pa, &up, true, NULL, &p), CP_OK);
		json_decref(p);
		json_decref(cur);
		json_decref(up.hostnames);
	}
	CHECK_RC(db_commit(db), CP_OK);
	last = fx_int(db, "SELECT max(seq) FROM edge_feed");
	CHECK_RC(deploy(ta, pa, "production"), CP_OK);
	f = feed(last, 100, &mark);
	CHECK(json_array_size(f) == 2);
	e = json_array_get(f, 1);
	CHECK(!strcmp(fx_str(e, "hostname"), "a2.edge-test"));
	CHECK(json_is_true(json_object_get(e, "removed")) && !json_object_get(e, "key_pem"));
	json_decref(f);
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_property_delete(db, ta, pa), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	f = feed(mark, 100, &last);
	CHECK(json_array_size(f) == 1 &&
	      !strcmp(fx_str(json_array_get(f, 0), "hostname"), "a1.edge-test") &&
	      json_is_true(json_object_get(json_array_get(f, 0), "removed")));
	json_decref(f);
	/* A certificate deleted while a production deployment still carries
	 * it (the property moved on, not redeployed): off the edge. */
	{
		char c2[CP_UUID_LEN + 1], pc[CP_UUID_LEN + 1];
		json_t *h2 = json_pack("[s]", "c1.edge-test"), *cur = NULL, *upd = NULL;
		struct db_cert_new in2 = in;
		struct db_property_in up = { .name = "c", .claim_ttl_seconds = 3600 };

		in2.hostnames = h2;
		m.cert_pem = cert_pem;
		CHECK_RC(db_begin(db), CP_OK);
		CHECK_RC(db_certificate_create(db, ta, &in2, c2), CP_OK);
		CHECK_RC(db_certificate_add_version(db, ring, ta, c2, &m, &version), CP_OK);
		CHECK_RC(db_commit(db), CP_OK);
		CHECK_RC(prop(ta, "c", c2, json_pack("[s]", "c1.edge-test"), true, pc), CP_OK);
		CHECK_RC(deploy(ta, pc, "production"), CP_OK);
		mark = fx_int(db, "SELECT max(seq) FROM edge_feed");
		CHECK_RC(db_begin(db), CP_OK);
		CHECK_RC(db_property_get(db, ta, pc, &cur), CP_OK);
		up.edge_hostname_id = fx_str(cur, "edge_hostname_id");
		up.hostnames = h2;
		CHECK_RC(db_property_update(db, ta, pc, &up, true, NULL, &upd), CP_OK);
		CHECK_RC(db_certificate_delete(db, ta, c2), CP_OK);
		CHECK_RC(db_commit(db), CP_OK);
		f = feed(mark, 100, &last);
		CHECK(json_array_size(f) == 1 &&
		      !strcmp(fx_str(json_array_get(f, 0), "hostname"), "c1.edge-test") &&
		      json_is_true(json_object_get(json_array_get(f, 0), "removed")));
		json_decref(f);
		json_decref(cur);
		json_decref(upd);
		json_decref(h2);
	}
	/* Deleting it again, or B's tenant: nothing more is fed. */
	mark = feed_rows();
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_tenant_delete(db, tb), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	CHECK(feed_rows() == mark);

	/* A gap (a seq taken by a writer not committed yet): the read stops
	 * before it while it is young, and passes it once it is old. */
	last = fx_int(db, "SELECT max(seq) FROM edge_feed");
	{
		char *sql =
			cp_aprintf("INSERT INTO edge_feed (seq, tenant_id, property_id, hostname, "
				   "created_at) VALUES (%lld, '%s', '%s', 'gap.edge-test', %lld)",
				   (long long)last + 3, ta, pa, (long long)cp_now());
		CHECK(sql && fx_sql(db, sql));
		free(sql);
	}
	f = feed(last, 100, &mark);
	CHECK(json_array_size(f) == 0 && mark == last);
	json_decref(f);
	CHECK(fx_sql(db, "UPDATE edge_feed SET created_at = created_at - 10 "
			 "WHERE hostname = 'gap.edge-test'"));
	f = feed(last, 100, &mark);
	CHECK(json_array_size(f) == 1 && mark == last + 3);
	json_decref(f);
	db_edge_check_set(false);
}

/* One feed row for hostname h made `age` seconds ago (a removal: the
 * compaction looks only at hostnames, seqs and times). */
static bool feed_row(const char *h, int64_t age)
{
	/* seq given: test_feed's gap row took one past PostgreSQL's sequence */
	char *sql = cp_aprintf("INSERT INTO edge_feed (seq, tenant_id, property_id, hostname, "
			       "created_at) SELECT max(seq) + 1, '%s', 'p', '%s', %lld "
			       "FROM edge_feed",
			       ta, h, (long long)(cp_now() - age));
	bool ok = sql && fx_sql(fx.db, sql);

	free(sql);
	return ok;
}

static int64_t rows_of(const char *h)
{
	char *sql = cp_aprintf("SELECT count(*) FROM edge_feed WHERE hostname = '%s'", h);
	int64_t n = sql ? fx_int(fx.db, sql) : -1;

	free(sql);
	return n;
}

/* SQLite: the statements one compaction ran, each planned as a range scan
 * of the feed's primary key (probing edge_feed_hostname), never a SCAN. */
static void check_compact_plans(int64_t from)
{
	struct fx_trace t = { 0 };
	int64_t cursor = from;
	int n = 0;

	fx_trace_start(fx.db, &t);
	CHECK_RC(db_edge_feed_compact(fx.db, cp_now() - 3600, 100, &cursor, &n), CP_OK);
	fx_trace_stop(fx.db);
	CHECK(t.n == 2);
	for (int i = 0; i < t.n; i++) {
		char plan[2048];

		fx_sqlite_plan(fx.db, t.sql[i], plan, sizeof(plan));
		if (strstr(plan, "SCAN ") || !strstr(plan, "USING INTEGER PRIMARY KEY (rowid>?") ||
		    (i == 1 &&
		     !strstr(plan, "USING INDEX edge_feed_hostname (hostname=? AND seq>?)"))) {
			fprintf(stderr, "compaction plan of %s:\n%s", t.sql[i], plan);
			CHECK(false);
		}
		free(t.sql[i]);
	}
}

/* PostgreSQL: the same, from the prepared statements of a connection of
 * its own, planned generically for any cursor. */
static void check_compact_plans_pg(void)
{
	static const char names[] = "SELECT name, statement FROM pg_prepared_statements "
				    "WHERE statement LIKE '% edge_feed %' AND statement NOT LIKE "
				    "'%pg_prepared_statements%' ORDER BY length(name), name";
	static const char *const want[] = { "edge_feed_pkey", "edge_feed_hostname" };
	struct db *db = NULL;
	struct db_stmt *st = NULL;
	int64_t cursor = 0;
	int n = 0, i = 0;

	CHECK_RC(db_open(fx.path, &db), CP_OK);
	if (!db)
		return;
	CHECK_RC(db_edge_feed_compact(db, cp_now() - 3600, 100, &cursor, &n), CP_OK);
	CHECK(fx_sql(db, "SET plan_cache_mode = force_generic_plan"));
	CHECK(db_prepare(db, names, &st) == DB_DONE);
	while (st && db_step(st) == DB_ROW) {
		bool del = strncmp(db_col_text(st, 1), "DELETE", 6) == 0;
		char *exec = cp_aprintf("EXECUTE %s(%s)", db_col_text(st, 0),
					del ? "NULL, NULL, NULL" : "NULL, NULL");

		CHECK(exec && fx_pg_plan_uses(db, exec, want[0]));
		if (del)
			CHECK(exec && fx_pg_plan_uses(db, exec, want[1]));
		free(exec);
		i++;
	}
	if (st)
		db_finalize(db, st);
	CHECK(i == 2);
	db_close(db);
}

/*
 * Compaction (db_edge_feed_compact): a row goes once a later row of its
 * hostname is older than the cutoff; a hostname's last row stays, and so
 * does a row whose successor is young. One call looks at `limit` rows
 * after its cursor and no further. A reader from before the compacted rows
 * reads through the gaps they leave at once, to each hostname's last row.
 */
static void test_compact(void)
{
	int64_t from = fx_int(fx.db, "SELECT max(seq) FROM edge_feed"), cursor = from, mark = 0;
	int64_t cutoff = cp_now() - 3600;
	int n = -1;
	json_t *f;

	CHECK(feed_row("k1.compact", 9000) && feed_row("k1.compact", 8000) &&
	      feed_row("k1.compact", 7200) && feed_row("k2.compact", 7200) &&
	      feed_row("k2.compact", 10) && feed_row("k3.compact", 7200));
	/* the first row only: it goes (k1's second row superseded it long ago) */
	CHECK_RC(db_edge_feed_compact(fx.db, cutoff, 1, &cursor, &n), CP_OK);
	CHECK(n == 1 && cursor == from + 1 && rows_of("k1.compact") == 2);
	/* the rest: k1's second goes, k2's first stays (its successor is 10 s
	 * old), each last row stays; the sweep is at the end, back to 0 */
	CHECK_RC(db_edge_feed_compact(fx.db, cutoff, 100, &cursor, &n), CP_OK);
	CHECK(n == 1 && cursor == 0);
	CHECK(rows_of("k1.compact") == 1 && rows_of("k2.compact") == 2 &&
	      rows_of("k3.compact") == 1);
	/* again from 0: nothing more of these goes, and nothing of test_feed's
	 * hostnames whose successors are young */
	CHECK_RC(db_edge_feed_compact(fx.db, cutoff, 100000, &cursor, &n), CP_OK);
	CHECK(cursor == 0 && rows_of("k1.compact") == 1 && rows_of("k2.compact") == 2);
	/* a reader from before them reads all four left, through the gaps */
	f = feed(from, 100, &mark);
	CHECK(json_array_size(f) == 4 && mark == fx_int(fx.db, "SELECT max(seq) FROM edge_feed"));
	CHECK(!strcmp(fx_str(json_array_get(f, 0), "hostname"), "k1.compact"));
	json_decref(f);
	if (fx_pg())
		check_compact_plans_pg();
	else
		check_compact_plans(from);
}

int main(void)
{
	if (!fx_open(&fx, "test-db-edge") || !fx_tenant(fx.db, "a", ta) ||
	    !fx_tenant(fx.db, "b", tb) || crypto_keyring_load(fx.dir, NULL, &ring) != CP_OK ||
	    !make_material()) {
		fprintf(stderr, "test_db_edge: setup failed\n");
		return 1;
	}
	test_keys();
	test_feed();
	test_compact();
	crypto_keyring_free(ring);
	crypto_key_free(key);
	crypto_wipe_free(key_pem);
	free(cert_pem);
	free(cert2_pem);
	fx_close(&fx);
	return check_exit("test_db_edge");
}
