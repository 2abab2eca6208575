/*
 * test_db_properties.c - the storage layer's contracts (db/db.h), part two:
 * edge hostnames, properties and their deployments, hostname claims (verify,
 * take over, demote, expire, re-check), the edge check of a CNAME chain, the
 * issuance scope and a property's DNS targets. Each function is checked for
 * the data it returns and for at least one error path (not found, another
 * tenant's id, conflict, a database failure). Exit status is the number of
 * failed checks (capped), 0 on success.
 */
#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

#define NOID "00000000-0000-4000-8000-000000000000"

static struct fx fx;
static char ta[CP_UUID_LEN + 1], tb[CP_UUID_LEN + 1];
static char edge_a[CP_UUID_LEN + 1], edge_b[CP_UUID_LEN + 1];

static const struct db_claim_policy pol = { 3600, 60, 86400 };

/* Events of type for tenant (count). */
static int64_t event_count(const char *tenant, const char *type)
{
	char *sql = cp_aprintf("SELECT count(*) FROM events WHERE tenant_id = '%s' AND type = '%s'",
			       tenant, type);
	int64_t n = sql ? fx_int(fx.db, sql) : -1;

	free(sql);
	return n;
}

static void test_edges(void)
{
	struct db *db = fx.db;
	json_t *e = NULL;
	struct db_list l = { 0 };

	CHECK_RC(db_edge_hostname_create(db, ta, "main", "edge.a-cdn.test", &e), CP_OK);
	CHECK(cp_uuid_valid(fx_str(e, "id")));
	CHECK(!strcmp(fx_str(e, "hostname"), "edge.a-cdn.test"));
	CHECK(!strcmp(fx_str(e, "label"), "main"));
	CHECK(strlen(fx_str(e, "created_at")) == 20);
	snprintf(edge_a, sizeof(edge_a), "%s", fx_str(e, "id"));
	json_decref(e);
	e = NULL;
	CHECK_RC(db_edge_hostname_create(db, tb, "b", "edge.b-cdn.test", &e), CP_OK);
	snprintf(edge_b, sizeof(edge_b), "%s", fx_str(e, "id"));
	json_decref(e);
	e = NULL;
	/* Unique across tenants. */
	CHECK_RC(db_edge_hostname_create(db, tb, "steal", "edge.a-cdn.test", &e), CP_ERR_CONFLICT);
	CHECK(e == NULL);

	CHECK_RC(db_edge_hostname_get(db, ta, edge_a, &e), CP_OK);
	CHECK(!strcmp(fx_str(e, "id"), edge_a) &&
	      !strcmp(fx_str(e, "hostname"), "edge.a-cdn.test"));
	json_decref(e);
	e = NULL;
	CHECK_RC(db_edge_hostname_get(db, tb, edge_a, &e), CP_ERR_NOT_FOUND);
	CHECK_RC(db_edge_hostname_get(db, ta, NOID, &e), CP_ERR_NOT_FOUND);

	CHECK_RC(db_edge_hostname_create(db, ta, "spare", "spare.a-cdn.test", &e), CP_OK);
	CHECK_RC(db_edge_hostname_list(db, ta, (struct db_page){ .limit = 1 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 1 && l.next > 0);
	CHECK(!strcmp(fx_str(json_array_get(l.data, 0), "id"), edge_a));
	{
		int64_t next = l.next;
		fx_list_clear(&l);
		CHECK_RC(db_edge_hostname_list(db, ta,
					       (struct db_page){ .after = next, .limit = 1 }, &l),
			 CP_OK);
		CHECK(json_array_size(l.data) == 1 && l.next == 0);
		CHECK(!strcmp(fx_str(json_array_get(l.data, 0), "id"), fx_str(e, "id")));
		fx_list_clear(&l);
	}
	CHECK_RC(db_edge_hostname_delete(db, tb, fx_str(e, "id")), CP_ERR_NOT_FOUND);
	CHECK_RC(db_edge_hostname_delete(db, ta, fx_str(e, "id")), CP_OK);
	CHECK_RC(db_edge_hostname_delete(db, ta, fx_str(e, "id")), CP_ERR_NOT_FOUND);
	json_decref(e);
	e = NULL;

	fx_fail(db, true);
	CHECK_RC(db_edge_hostname_create(db, ta, "x", "x.a-cdn.test", &e), CP_ERR_INTERNAL);
	CHECK_RC(db_edge_hostname_get(db, ta, edge_a, &e), CP_ERR_INTERNAL);
	CHECK_RC(db_edge_hostname_list(db, ta, (struct db_page){ .limit = 1 }, &l),
		 CP_ERR_INTERNAL);
	CHECK_RC(db_edge_hostname_delete(db, ta, edge_a), CP_ERR_INTERNAL);
	fx_fail(db, false);
	CHECK(e == NULL && l.data == NULL);
}

/* Create a property of tenant (in a transaction); its id into id. */
static cp_rc prop_create(const char *tenant, const char *edge, const char *name, json_t *hosts,
			 int64_t ttl, struct db_hostname_taken *taken, char id[CP_UUID_LEN + 1])
{
	struct db_property_in in = { .name = name,
				     .hostnames = hosts,
				     .edge_hostname_id = edge,
				     .renew_automation = true,
				     .claim_ttl_seconds = ttl };
	json_t *p = NULL;
	cp_rc rc = db_begin(fx.db);

	if (rc == CP_OK)
		rc = db_property_create(fx.db, tenant, &in, taken, &p);
	if (rc == CP_OK)
		rc = db_commit(fx.db);
	if (rc != CP_OK)
		db_rollback(fx.db);
	else if (id)
		snprintf(id, CP_UUID_LEN + 1, "%s", fx_str(p, "id"));
	json_decref(p);
	json_decref(hosts);
	return rc;
}

static void test_properties(void)
{
	struct db *db = fx.db;
	json_t *hosts = json_pack("[ss]", "www.a.test", "api.a.test"), *p = NULL, *d = NULL;
	struct db_property_in in = { .name = "site",
				     .hostnames = hosts,
				     .edge_hostname_id = edge_a,
				     .renew_automation = true,
				     .claim_ttl_seconds = 3600 };
	struct db_hostname_taken taken = { 99, true };
	struct db_list l = { 0 };
	char pid[CP_UUID_LEN + 1], pid2[CP_UUID_LEN + 1];

	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_property_create(db, ta, &in, &taken, &p), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	json_decref(hosts);
	CHECK(cp_uuid_valid(fx_str(p, "id")) && !strcmp(fx_str(p, "name"), "site"));
	CHECK(json_array_size(json_object_get(p, "hostnames")) == 2);
	CHECK(!strcmp(json_string_value(json_array_get(json_object_get(p, "hostnames"), 1)),
		      "api.a.test"));
	CHECK(!strcmp(fx_str(p, "edge_hostname_id"), edge_a));
	CHECK(!strcmp(fx_str(p, "edge_hostname"), "edge.a-cdn.test"));
	CHECK(json_is_null(json_object_get(p, "certificate_id")));
	CHECK(json_is_true(json_object_get(p, "certificate_renew_automation")));
	CHECK(json_integer_value(json_object_get(p, "version")) == 1);
	CHECK(json_is_null(json_object_get(p, "staging")));
	CHECK(json_is_null(json_object_get(p, "production")));
	snprintf(pid, sizeof(pid), "%s", fx_str(p, "id"));
	json_decref(p);
	p = NULL;

	/* Another property of the same tenant may not take a hostname. */
	CHECK_RC(prop_create(ta, edge_a, "dup", json_pack("[ss]", "new.a.test", "www.a.test"), 3600,
			     &taken, NULL),
		 CP_ERR_CONFLICT);
	CHECK(taken.index == 1 && !taken.other_tenant);
	/* Another tenant may claim it while nobody has verified it. */
	CHECK_RC(prop_create(tb, edge_b, "b-site", json_pack("[ss]", "b.test", "www.a.test"), 3600,
			     NULL, pid2),
		 CP_OK);

	CHECK_RC(db_property_get(db, ta, pid, &p), CP_OK);
	CHECK(!strcmp(fx_str(p, "id"), pid) && !strcmp(fx_str(p, "name"), "site"));
	json_decref(p);
	p = NULL;
	CHECK_RC(db_property_get(db, tb, pid, &p), CP_ERR_NOT_FOUND);
	CHECK_RC(db_property_get(db, ta, NOID, &p), CP_ERR_NOT_FOUND);

	CHECK_RC(db_property_list(db, ta, NULL, NULL, (struct db_page){ .limit = 10 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 1 &&
	      !strcmp(fx_str(json_array_get(l.data, 0), "id"), pid));
	fx_list_clear(&l);
	CHECK_RC(db_property_list(db, tb, "www.a.test", NULL, (struct db_page){ .limit = 10 }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 1 &&
	      !strcmp(fx_str(json_array_get(l.data, 0), "id"), pid2));
	fx_list_clear(&l);
	CHECK_RC(db_property_list(db, ta, "b.test", NULL, (struct db_page){ .limit = 10 }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 0);
	fx_list_clear(&l);

	/* Update: new hostname list, version bumped; scoped by tenant. */
	hosts = json_pack("[ss]", "api.a.test", "shop.a.test");
	in.hostnames = hosts;
	in.name = "site2";
	in.renew_automation = false;
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_property_update(db, ta, pid, &in, true, &taken, &p), CP_OK);
	CHECK_RC(db_property_update(db, tb, pid, &in, true, &taken, &d), CP_ERR_NOT_FOUND);
	CHECK_RC(db_property_update(db, ta, NOID, &in, true, &taken, &d), CP_ERR_NOT_FOUND);
	CHECK_RC(db_commit(db), CP_OK);
	CHECK(!strcmp(fx_str(p, "name"), "site2"));
	CHECK(json_integer_value(json_object_get(p, "version")) == 2);
	CHECK(json_is_false(json_object_get(p, "certificate_renew_automation")));
	CHECK(!strcmp(json_string_value(json_array_get(json_object_get(p, "hostnames"), 0)),
		      "api.a.test"));
	CHECK(!strcmp(json_string_value(json_array_get(json_object_get(p, "hostnames"), 1)),
		      "shop.a.test"));
	json_decref(p);
	p = NULL;
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_property_update(db, ta, pid, &in, false, &taken, &p), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	CHECK(json_integer_value(json_object_get(p, "version")) == 2);
	json_decref(p);
	p = NULL;
	json_decref(hosts);
	hosts = json_pack("[ss]", "www.a.test", "api.a.test");
	in.hostnames = hosts;
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_property_update(db, ta, pid, &in, true, &taken, &p), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	json_decref(p);
	p = NULL;

	/* Deployments freeze the version and hostnames. */
	CHECK_RC(db_deployment_create(db, ta, pid, "staging", &d), CP_OK);
	CHECK(cp_uuid_valid(fx_str(d, "id")) && !strcmp(fx_str(d, "property_id"), pid));
	CHECK(!strcmp(fx_str(d, "environment"), "staging"));
	CHECK(json_integer_value(json_object_get(d, "version")) == 3);
	CHECK(json_array_size(json_object_get(d, "hostnames")) == 2);
	CHECK(json_is_null(json_object_get(d, "certificate_id")));
	json_decref(d);
	d = NULL;
	CHECK_RC(db_deployment_create(db, tb, pid, "production", &d), CP_ERR_NOT_FOUND);
	CHECK_RC(db_deployment_create(db, ta, pid, "qa", &d), CP_ERR_CONFLICT);
	CHECK_RC(db_deployment_create(db, ta, pid, "production", &d), CP_OK);
	json_decref(d);
	d = NULL;
	CHECK_RC(db_property_get(db, ta, pid, &p), CP_OK);
	CHECK(json_integer_value(json_object_get(json_object_get(p, "staging"), "version")) == 3);
	CHECK(json_integer_value(json_object_get(json_object_get(p, "production"), "version")) ==
	      3);
	json_decref(p);
	p = NULL;
	CHECK_RC(db_deployment_list(db, ta, pid, (struct db_page){ .limit = 10 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 2);
	CHECK(!strcmp(fx_str(json_array_get(l.data, 0), "environment"), "staging"));
	fx_list_clear(&l);
	CHECK_RC(db_deployment_list(db, tb, pid, (struct db_page){ .limit = 10 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 0);
	fx_list_clear(&l);
	/* One deployment: only in its tenant and property. */
	CHECK_RC(db_deployment_list(db, ta, pid, (struct db_page){ .limit = 1 }, &l), CP_OK);
	{
		char dep_id[CP_UUID_LEN + 1];
		snprintf(dep_id, sizeof(dep_id), "%s", fx_str(json_array_get(l.data, 0), "id"));
		fx_list_clear(&l);
		CHECK_RC(db_deployment_get(db, ta, pid, dep_id, &d), CP_OK);
		CHECK(!strcmp(fx_str(d, "id"), dep_id) &&
		      !strcmp(fx_str(d, "environment"), "staging"));
		json_decref(d);
		d = NULL;
		CHECK_RC(db_deployment_get(db, tb, pid, dep_id, &d), CP_ERR_NOT_FOUND);
		CHECK_RC(db_deployment_get(db, ta, tb, dep_id, &d), CP_ERR_NOT_FOUND);
		CHECK(d == NULL);
	}

	/* DNS targets of the property. */
	CHECK_RC(db_property_dns_targets(db, ta, pid, &d), CP_OK);
	CHECK(!strcmp(fx_str(d, "edge_hostname"), "edge.a-cdn.test"));
	CHECK(json_array_size(json_object_get(d, "hostnames")) == 2);
	json_decref(d);
	d = NULL;
	CHECK_RC(db_property_dns_targets(db, tb, pid, &d), CP_ERR_NOT_FOUND);

	/* An edge hostname in use may not be deleted. */
	CHECK_RC(db_edge_hostname_delete(db, ta, edge_a), CP_ERR_CONFLICT);

	fx_fail(db, true);
	CHECK_RC(db_property_create(db, ta, &in, &taken, &p), CP_ERR_INTERNAL);
	CHECK_RC(db_property_get(db, ta, pid, &p), CP_ERR_INTERNAL);
	CHECK_RC(db_property_list(db, ta, NULL, NULL, (struct db_page){ .limit = 10 }, &l),
		 CP_ERR_INTERNAL);
	CHECK_RC(db_property_update(db, ta, pid, &in, true, &taken, &p), CP_ERR_INTERNAL);
	CHECK_RC(db_property_delete(db, ta, pid), CP_ERR_INTERNAL);
	CHECK_RC(db_deployment_create(db, ta, pid, "staging", &d), CP_ERR_INTERNAL);
	CHECK_RC(db_deployment_list(db, ta, pid, (struct db_page){ .limit = 10 }, &l),
		 CP_ERR_INTERNAL);
	CHECK_RC(db_property_dns_targets(db, ta, pid, &d), CP_ERR_INTERNAL);
	fx_fail(db, false);
	CHECK(p == NULL && d == NULL && l.data == NULL);
	json_decref(hosts);

	/* Delete: scoped, then gone with its deployments. */
	CHECK_RC(db_property_delete(db, tb, pid), CP_ERR_NOT_FOUND);
	CHECK_RC(db_property_delete(db, ta, pid2), CP_ERR_NOT_FOUND);
	CHECK_RC(db_property_delete(db, ta, pid), CP_OK);
	CHECK_RC(db_property_get(db, ta, pid, &p), CP_ERR_NOT_FOUND);
	CHECK_RC(db_property_delete(db, ta, pid), CP_ERR_NOT_FOUND);
	CHECK(fx_int(db, "SELECT count(*) FROM deployments") == 0);
	CHECK_RC(db_property_delete(db, tb, pid2), CP_OK);
}

static void test_claims(void)
{
	struct db *db = fx.db;
	char pa[CP_UUID_LEN + 1], pb[CP_UUID_LEN + 1], px[CP_UUID_LEN + 1];
	struct db_claim_check ok = { DB_CLAIM_VERIFIED, "cname", "CNAME to the edge" };
	struct db_claim_check no = { DB_CLAIM_NOT_VERIFIED, NULL, "no CNAME" };
	struct db_claim_check dnserr = { DB_CLAIM_DNS_ERROR, NULL, "timeout" };
	struct db_hostname_taken taken = { 0 };
	const char *status = NULL;
	json_t *c = NULL, *names;
	struct db_scope_verdict v;
	int removed = -1;

	/* Both tenants claim shared.test; b claims it first. */
	CHECK_RC(prop_create(tb, edge_b, "b", json_pack("[ss]", "b-only.test", "shared.test"), 3600,
			     NULL, pb),
		 CP_OK);
	CHECK_RC(prop_create(ta, edge_a, "a", json_pack("[ss]", "shared.test", "a-only.test"), 3600,
			     NULL, pa),
		 CP_OK);

	CHECK_RC(db_claim_get(db, ta, "shared.test", &c), CP_OK);
	CHECK(!strcmp(fx_str(c, "property_id"), pa) && !strcmp(fx_str(c, "status"), "pending"));
	CHECK(strlen(fx_str(c, "token")) == 32 && json_is_null(json_object_get(c, "method")));
	CHECK(!strcmp(fx_str(c, "edge_hostname"), "edge.a-cdn.test"));
	json_decref(c);
	c = NULL;
	CHECK_RC(db_claim_get(db, ta, "b-only.test", &c), CP_ERR_NOT_FOUND);

	CHECK_RC(db_claims_of_property(db, ta, pa, &c), CP_OK);
	CHECK(json_array_size(c) == 2);
	CHECK(!strcmp(fx_str(json_array_get(c, 0), "hostname"), "shared.test"));
	CHECK(strlen(fx_str(json_array_get(c, 1), "token")) == 32);
	json_decref(c);
	c = NULL;
	CHECK_RC(db_claims_of_property(db, tb, pa, &c), CP_ERR_NOT_FOUND);
	CHECK(c == NULL);

	/* Not verified / DNS error: a pending claim stays pending. */
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_claim_record(db, ta, "shared.test", &no, &pol, &status), CP_OK);
	CHECK(status && !strcmp(status, "pending"));
	CHECK_RC(db_claim_record(db, ta, "shared.test", &dnserr, &pol, &status), CP_OK);
	CHECK(status && !strcmp(status, "pending"));
	CHECK_RC(db_claim_record(db, ta, "b-only.test", &ok, &pol, &status), CP_ERR_NOT_FOUND);
	/* Verified: a's claim wins, b's claim is released with an event. */
	CHECK_RC(db_claim_record(db, ta, "shared.test", &ok, &pol, &status), CP_OK);
	CHECK(status && !strcmp(status, "verified"));
	CHECK_RC(db_commit(db), CP_OK);
	CHECK_RC(db_claim_get(db, ta, "shared.test", &c), CP_OK);
	CHECK(!strcmp(fx_str(c, "status"), "verified") && !strcmp(fx_str(c, "method"), "cname"));
	json_decref(c);
	c = NULL;
	CHECK_RC(db_claim_get(db, tb, "shared.test", &c), CP_ERR_NOT_FOUND);
	CHECK(event_count(tb, "property.hostname_released") == 1);
	CHECK_RC(db_property_get(db, tb, pb, &c), CP_OK);
	CHECK(json_integer_value(json_object_get(c, "version")) == 2);
	CHECK(json_array_size(json_object_get(c, "hostnames")) == 1);
	json_decref(c);
	c = NULL;
	/* Now b may not claim it at all. */
	CHECK_RC(prop_create(tb, edge_b, "b2", json_pack("[ss]", "b2.test", "shared.test"), 3600,
			     &taken, NULL),
		 CP_ERR_CONFLICT);
	CHECK(taken.index == 1 && taken.other_tenant);

	/* b's claim of a name a holds verified stays pending. */
	CHECK_RC(prop_create(tb, edge_b, "b3", json_pack("[s]", "a-only.test"), 3600, NULL, px),
		 CP_OK);
	CHECK(fx_sql(db, "UPDATE property_hostnames SET status = 'verified', method = 'txt' "
			 "WHERE hostname = 'a-only.test' AND property_id IN "
			 "(SELECT id FROM properties WHERE name = 'a')"));
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_claim_record(db, tb, "a-only.test", &ok, &pol, &status), CP_OK);
	CHECK(status && !strcmp(status, "owned_by_another_tenant"));
	CHECK_RC(db_commit(db), CP_OK);
	CHECK_RC(db_claim_get(db, tb, "a-only.test", &c), CP_OK);
	CHECK(!strcmp(fx_str(c, "status"), "pending"));
	json_decref(c);
	c = NULL;

	/* Demotion: the third negative check in a row; DNS errors count nothing. */
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_claim_record(db, ta, "shared.test", &no, &pol, &status), CP_OK);
	CHECK(status && !strcmp(status, "verified"));
	CHECK_RC(db_claim_record(db, ta, "shared.test", &dnserr, &pol, &status), CP_OK);
	CHECK(status && !strcmp(status, "verified"));
	CHECK_RC(db_claim_record(db, ta, "shared.test", &no, &pol, &status), CP_OK);
	CHECK(status && !strcmp(status, "verified"));
	CHECK_RC(db_claim_record(db, ta, "shared.test", &no, &pol, &status), CP_OK);
	CHECK(status && !strcmp(status, "pending"));
	CHECK_RC(db_commit(db), CP_OK);
	CHECK(event_count(ta, "property.hostname_unverified") == 1);

	/* Edge in a CNAME chain: only the tenant's own edges count. */
	names = json_pack("[ss]", "www.a.test", "edge.a-cdn.test");
	CHECK_RC(db_edge_in_chain(db, ta, names), CP_OK);
	CHECK_RC(db_edge_in_chain(db, tb, names), CP_ERR_NOT_FOUND);
	json_decref(names);
	names = json_pack("[s]", "elsewhere.test");
	CHECK_RC(db_edge_in_chain(db, ta, names), CP_ERR_NOT_FOUND);

	/* Issuance scope. */
	CHECK_RC(db_issuance_scope(db, "edge.example.net", ta, names, &v), CP_OK);
	CHECK(v.reason == NULL);
	json_decref(names);
	names = json_pack("[ss]", "ok.test", "*.x.edge.example.net");
	CHECK_RC(db_issuance_scope(db, "edge.example.net", ta, names, &v), CP_OK);
	CHECK(v.reason && !strcmp(v.reason, "hostname_in_edge_zone") && v.index == 1);
	CHECK(strstr(v.detail, "x.edge.example.net") != NULL);
	json_decref(names);
	names = json_pack("[ss]", "ok.test", "edge.b-cdn.test"); /* any tenant's edge */
	CHECK_RC(db_issuance_scope(db, NULL, ta, names, &v), CP_OK);
	CHECK(v.reason && !strcmp(v.reason, "hostname_in_edge_zone") && v.index == 1);
	json_decref(names);
	names = json_pack("[s]", "a-only.test"); /* verified by a */
	CHECK_RC(db_issuance_scope(db, "edge.example.net", tb, names, &v), CP_OK);
	CHECK(v.reason && !strcmp(v.reason, "hostname_owned_by_another_tenant") && v.index == 0);
	CHECK(strstr(v.detail, "a-only.test") != NULL);
	CHECK_RC(db_issuance_scope(db, "edge.example.net", ta, names, &v), CP_OK);
	CHECK(v.reason == NULL);
	json_decref(names);
	/* A wildcard covering a's verified name is a's too; one that covers
	 * nothing of a's is not. */
	names = json_pack("[ss]", "ok.test", "*.test");
	CHECK_RC(db_issuance_scope(db, "edge.example.net", tb, names, &v), CP_OK);
	CHECK(v.reason && !strcmp(v.reason, "hostname_owned_by_another_tenant") && v.index == 1);
	CHECK_RC(db_issuance_scope(db, "edge.example.net", ta, names, &v), CP_OK);
	CHECK(v.reason == NULL);
	json_decref(names);
	names = json_pack("[s]", "*.a-only.test");
	CHECK_RC(db_issuance_scope(db, "edge.example.net", tb, names, &v), CP_OK);
	CHECK(v.reason == NULL);

	/* Due re-checks: each claim's property once, then pushed back. */
	CHECK(fx_sql(db, "UPDATE property_hostnames SET next_check_at = 0"));
	CHECK_RC(db_claims_due(db, 100, 300, &c), CP_OK);
	CHECK(json_array_size(c) == 3); /* pa, pb, px */
	CHECK(cp_uuid_valid(fx_str(json_array_get(c, 0), "tenant_id")));
	CHECK(cp_uuid_valid(fx_str(json_array_get(c, 0), "property_id")));
	json_decref(c);
	c = NULL;
	CHECK_RC(db_claims_due(db, 100, 300, &c), CP_OK);
	CHECK(json_array_size(c) == 0);
	json_decref(c);
	c = NULL;

	/* Expiry: pending claims past their TTL are released. */
	CHECK(fx_int(db, "SELECT count(*) FROM property_hostnames WHERE status = 'pending'") == 3);
	CHECK_RC(db_claims_expire(db, 100, &removed), CP_OK);
	CHECK(removed == 0);
	CHECK(fx_sql(db, "UPDATE property_hostnames SET expires_at = 1 WHERE hostname = "
			 "'b-only.test'"));
	CHECK_RC(db_claims_expire(db, 100, &removed), CP_OK);
	CHECK(removed == 1);
	CHECK_RC(db_claim_get(db, tb, "b-only.test", &c), CP_ERR_NOT_FOUND);
	CHECK(event_count(tb, "property.hostname_released") == 2);

	fx_fail(db, true);
	CHECK_RC(db_claim_record(db, ta, "shared.test", &ok, &pol, &status), CP_ERR_INTERNAL);
	CHECK_RC(db_claim_get(db, ta, "shared.test", &c), CP_ERR_INTERNAL);
	CHECK_RC(db_claims_of_property(db, ta, pa, &c), CP_ERR_INTERNAL);
	CHECK_RC(db_edge_in_chain(db, ta, names), CP_ERR_INTERNAL);
	CHECK_RC(db_issuance_scope(db, "edge.example.net", tb, names, &v), CP_ERR_INTERNAL);
	CHECK_RC(db_claims_due(db, 100, 300, &c), CP_ERR_INTERNAL);
	CHECK_RC(db_claims_expire(db, 100, &removed), CP_ERR_INTERNAL);
	fx_fail(db, false);
	CHECK(c == NULL);
	json_decref(names);
}

/* The usage the quotas count: hostnames over every property of a tenant,
 * an update replacing what its property holds. */
static void test_quota_usage(void)
{
	struct db *db = fx.db;
	const int64_t defaults[DB_QUOTA_COUNT] = { 5, 3, 5, 5, 5, 5 };
	struct db_quota_refusal ref = { 0 };
	char tc[CP_UUID_LEN + 1], pid[CP_UUID_LEN + 1], edge[CP_UUID_LEN + 1];
	json_t *e = NULL, *q = NULL;

	CHECK(fx_tenant(db, "c", tc));
	CHECK_RC(db_edge_hostname_create(db, tc, "c", "edge.c-cdn.test", &e), CP_OK);
	snprintf(edge, sizeof(edge), "%s", fx_str(e, "id"));
	json_decref(e);
	CHECK_RC(prop_create(tc, edge, "c", json_pack("[ss]", "one.c.test", "two.c.test"), 3600,
			     NULL, pid),
		 CP_OK);
	CHECK_RC(db_quota_get(db, tc, defaults, &q), CP_OK);
	CHECK(json_integer_value(json_object_get(
		      json_object_get(json_object_get(q, "quotas"), "hostnames"), "used")) == 2);
	CHECK(json_integer_value(json_object_get(
		      json_object_get(json_object_get(q, "quotas"), "properties"), "used")) == 1);
	CHECK(json_integer_value(json_object_get(
		      json_object_get(json_object_get(q, "quotas"), "edge_hostnames"), "used")) ==
	      1);
	json_decref(q);
	/* A new property of 2 more: 4 > 3. */
	CHECK_RC(
		db_quota_check(db, tc, defaults, &(struct db_quota_change){ .hostnames = 2 }, &ref),
		CP_ERR_CONFLICT);
	CHECK(ref.quota == DB_QUOTA_HOSTNAMES && ref.limit == 3 && ref.used == 2);
	/* The same property going from 2 to 3: fits. */
	CHECK_RC(db_quota_check(db, tc, defaults,
				&(struct db_quota_change){ .hostnames = 3, .property_id = pid },
				&ref),
		 CP_OK);
	CHECK_RC(db_quota_check(db, tc, defaults,
				&(struct db_quota_change){ .hostnames = 4, .property_id = pid },
				&ref),
		 CP_ERR_CONFLICT);
	CHECK(ref.quota == DB_QUOTA_HOSTNAMES);
}

int main(void)
{
	if (!fx_open(&fx, "test-db-properties") || !fx_tenant(fx.db, "a", ta) ||
	    !fx_tenant(fx.db, "b", tb)) {
		fprintf(stderr, "test_db_properties: setup failed\n");
		return 1;
	}
	test_edges();
	test_properties();
	test_claims();
	test_quota_usage();
	fx_close(&fx);
	return check_exit("test_db_properties");
}
