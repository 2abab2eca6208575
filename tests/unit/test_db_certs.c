/*
 * test_db_certs.c - the storage layer's contracts (db/db.h), part three:
 * certificates and their versions (real self-signed certificates and keys
 * from crypto/), renewal bookkeeping, certificate and order events, expiry
 * reminders, metrics, ACME accounts, orders and their authorizations, the
 * HTTP-01 answer, job wake-up and the renewal queries (their contract only).
 * Each function is checked for the data it returns and for at least one
 * error path (not found, another tenant's id, conflict, invalid input, a
 * database failure). Exit status is the number of failed checks (capped),
 * 0 on success.
 */
#include <sys/stat.h>

#include "crypto/crypto.h"
#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

#define NOID "00000000-0000-4000-8000-000000000000"

static struct fx fx;
static struct crypto_keyring *ring;
static char ta[CP_UUID_LEN + 1], tb[CP_UUID_LEN + 1];
static struct crypto_key *key, *key2;
static char *key_pem, *cert_pem, *cert2_pem;
static int64_t not_after;

/* A pending ACME-style certificate (no version) of tenant; id into id. */
static cp_rc cert_create(const char *tenant, const char *name, const char *status,
			 char id[CP_UUID_LEN + 1])
{
	json_t *hosts = json_pack("[s]", "www.a.test"), *meta = json_pack("{s:s}", "team", "web");
	struct db_cert_new in = { .name = name,
				  .type = "server",
				  .source = "acme",
				  .status = status,
				  .auto_renew = "letsencrypt",
				  .key_type = "ecdsa-p256",
				  .hostnames = hosts,
				  .challenge = "http-01",
				  .ca = "letsencrypt",
				  .metadata = meta };
	cp_rc rc = db_certificate_create(fx.db, tenant, &in, id);

	json_decref(hosts);
	json_decref(meta);
	return rc;
}

static bool make_material(void)
{
	json_t *h = json_pack("[ss]", "www.a.test", "*.a.test");
	int64_t now = cp_now();
	bool ok = crypto_key_generate(CRYPTO_KEY_ECDSA_P256, &key) == CP_OK &&
		  crypto_key_generate(CRYPTO_KEY_ECDSA_P256, &key2) == CP_OK &&
		  crypto_key_to_pem(key, &key_pem) == CP_OK &&
		  crypto_self_signed_window(key, h, now - 3600, now + 30 * 86400, &cert_pem) ==
			  CP_OK &&
		  crypto_self_signed_window(key2, h, now - 3600, now + 60 * 86400, &cert2_pem) ==
			  CP_OK;

	not_after = now + 30 * 86400;
	json_decref(h);
	return ok;
}

static void test_certificates(void)
{
	struct db *db = fx.db;
	char cid[CP_UUID_LEN + 1], cid2[CP_UUID_LEN + 1];
	struct db_cert_material m = { .cert_pem = cert_pem,
				      .key_pem = key_pem,
				      .renew_after = not_after - 10 * 86400 };
	struct db_cert_prepared *prep = NULL;
	struct db_list l = { 0 };
	json_t *c = NULL, *meta;
	char *pem = NULL;
	int version = 0;

	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(cert_create(ta, "site", "pending", cid), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	CHECK(cp_uuid_valid(cid));
	CHECK_RC(db_certificate_exists(db, ta, cid), CP_OK);
	CHECK_RC(db_certificate_exists(db, tb, cid), CP_ERR_NOT_FOUND);
	CHECK_RC(db_certificate_exists(db, ta, NOID), CP_ERR_NOT_FOUND);
	/* A bad status breaks the table's rule. */
	CHECK_RC(cert_create(ta, "bad", "sleeping", cid2), CP_ERR_CONFLICT);

	/* Pending: no PEM, no key yet. */
	CHECK_RC(db_certificate_get(db, ta, cid, &c), CP_OK);
	CHECK(!strcmp(fx_str(c, "status"), "pending") && !strcmp(fx_str(c, "name"), "site"));
	CHECK(!strcmp(fx_str(c, "source"), "acme") &&
	      !strcmp(fx_str(c, "auto_renew"), "letsencrypt"));
	CHECK(json_is_null(json_object_get(c, "serial")));
	CHECK(!strcmp(fx_str(json_object_get(c, "metadata"), "team"), "web"));
	json_decref(c);
	c = NULL;
	CHECK_RC(db_certificate_get(db, tb, cid, &c), CP_ERR_NOT_FOUND);
	CHECK_RC(db_certificate_pem(db, ta, cid, &pem), CP_ERR_CONFLICT);
	CHECK_RC(db_certificate_key_pem(db, ring, ta, cid, &pem), CP_ERR_CONFLICT);
	CHECK_RC(db_certificate_pem(db, tb, cid, &pem), CP_ERR_NOT_FOUND);
	CHECK(pem == NULL);

	/* A version: facts read from the certificate, key sealed. */
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_certificate_add_version(db, ring, ta, cid, &m, &version), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	CHECK(version == 1);
	CHECK(fx_int(db, "SELECT count(*) FROM certificate_versions WHERE private_key LIKE "
			 "'%PRIVATE KEY%'") == 0);
	CHECK(fx_int(db, "SELECT count(*) FROM certificate_versions WHERE private_key LIKE "
			 "'cpk1:%'") == 1);
	CHECK_RC(db_certificate_get(db, ta, cid, &c), CP_OK);
	CHECK(!strcmp(fx_str(c, "status"), "active"));
	CHECK(json_integer_value(json_object_get(c, "version")) == 1);
	CHECK(strlen(fx_str(c, "serial")) > 0 && strlen(fx_str(c, "fingerprint_sha256")) == 64);
	CHECK(json_array_size(json_object_get(c, "sans")) == 2);
	CHECK(!strcmp(fx_str(c, "key_type"), "ecdsa-p256"));
	CHECK(json_integer_value(json_object_get(json_object_get(c, "renewal"), "failure_count")) ==
	      0);
	CHECK(strlen(fx_str(json_object_get(c, "renewal"), "renew_after")) == 20);
	json_decref(c);
	c = NULL;
	CHECK_RC(db_certificate_pem(db, ta, cid, &pem), CP_OK);
	CHECK(pem && !strncmp(pem, cert_pem, strlen(cert_pem) - 1));
	free(pem);
	pem = NULL;
	CHECK_RC(db_certificate_key_pem(db, ring, ta, cid, &pem), CP_OK);
	CHECK(pem && !strcmp(pem, key_pem));
	crypto_wipe_free(pem);
	pem = NULL;
	CHECK_RC(db_certificate_key_pem(db, ring, tb, cid, &pem), CP_ERR_NOT_FOUND);

	/* Refused material: a key of another certificate, garbage, no such cert. */
	m.cert_pem = cert2_pem;
	CHECK_RC(db_certificate_add_version(db, ring, ta, cid, &m, &version), CP_ERR_INVALID);
	m.cert_pem = "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n";
	CHECK_RC(db_certificate_add_version(db, ring, ta, cid, &m, &version), CP_ERR_INVALID);
	CHECK_RC(db_cert_prepare(&m, &prep), CP_ERR_INVALID);
	CHECK(prep == NULL);
	m.cert_pem = cert_pem;
	CHECK_RC(db_certificate_add_version(db, ring, tb, cid, &m, &version), CP_ERR_NOT_FOUND);
	CHECK_RC(db_certificate_add_version(db, ring, ta, NOID, &m, &version), CP_ERR_NOT_FOUND);

	/* Two-step: prepared once, added as version 2. */
	CHECK_RC(db_cert_prepare(&m, &prep), CP_OK);
	CHECK_RC(db_certificate_add_prepared(db, ring, ta, cid, prep, NULL, 0, &version), CP_OK);
	CHECK(version == 2);
	CHECK_RC(db_certificate_add_prepared(db, ring, tb, cid, prep, NULL, 0, &version),
		 CP_ERR_NOT_FOUND);
	db_cert_prepared_free(prep);
	prep = NULL;
	db_cert_prepared_free(NULL);
	CHECK_RC(db_certificate_versions(db, ta, cid, (struct db_page){ .limit = 10 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 2);
	CHECK(json_is_false(json_object_get(json_array_get(l.data, 0), "current")));
	CHECK(json_is_true(json_object_get(json_array_get(l.data, 1), "current")));
	CHECK(json_integer_value(json_object_get(json_array_get(l.data, 1), "version")) == 2);
	CHECK(json_object_get(json_array_get(l.data, 0), "key") == NULL);
	CHECK(!strncmp(fx_str(json_array_get(l.data, 0), "certificate"), "-----BEGIN", 10));
	fx_list_clear(&l);
	CHECK_RC(db_certificate_versions(db, tb, cid, (struct db_page){ .limit = 10 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 0);
	fx_list_clear(&l);

	/* A key that no longer opens (sealed under a ring we do not hold). */
	{
		struct crypto_keyring *other = NULL;
		char d2[96];
		snprintf(d2, sizeof(d2), "%s/ring2", fx.dir);
		CHECK(mkdir(d2, 0700) == 0);
		CHECK_RC(crypto_keyring_load(d2, NULL, &other), CP_OK);
		CHECK_RC(db_certificate_key_pem(db, other, ta, cid, &pem), CP_ERR_CRYPTO);
		crypto_keyring_free(other);
		snprintf(d2, sizeof(d2), "%s/ring2/master.keys", fx.dir);
		unlink(d2);
		snprintf(d2, sizeof(d2), "%s/ring2/master.keys.lock", fx.dir);
		unlink(d2);
		snprintf(d2, sizeof(d2), "%s/ring2", fx.dir);
		rmdir(d2);
	}

	/* List and its filters. */
	CHECK_RC(cert_create(ta, "other", "pending", cid2), CP_OK);
	CHECK_RC(db_certificate_list(db, ta, NULL, (struct db_page){ .limit = 10 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 2);
	fx_list_clear(&l);
	CHECK_RC(db_certificate_list(
			 db, ta,
			 &(struct db_cert_filter){ .status = "active", .expiring_within = -1 },
			 (struct db_page){ .limit = 10 }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 1 &&
	      !strcmp(fx_str(json_array_get(l.data, 0), "id"), cid));
	fx_list_clear(&l);
	CHECK_RC(db_certificate_list(db, ta,
				     &(struct db_cert_filter){ .expiring_within = 31 * 86400 },
				     (struct db_page){ .limit = 10 }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 1);
	fx_list_clear(&l);
	CHECK_RC(db_certificate_list(db, ta, &(struct db_cert_filter){ .expiring_within = 86400 },
				     (struct db_page){ .limit = 10 }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 0);
	fx_list_clear(&l);
	CHECK_RC(db_certificate_list(db, ta,
				     &(struct db_cert_filter){ .hostname = "shop.a.test",
							       .expiring_within = -1 },
				     (struct db_page){ .limit = 10 }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 1 &&
	      !strcmp(fx_str(json_array_get(l.data, 0), "id"), cid));
	fx_list_clear(&l);
	CHECK_RC(db_certificate_list(db, tb, NULL, (struct db_page){ .limit = 10 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 0);
	fx_list_clear(&l);

	/* Update: NULL keeps a field. */
	meta = json_pack("{s:s}", "team", "ops");
	CHECK_RC(db_certificate_update(db, ta, cid, "renamed", NULL, meta), CP_OK);
	CHECK_RC(db_certificate_update(db, tb, cid, "stolen", NULL, NULL), CP_ERR_NOT_FOUND);
	json_decref(meta);
	CHECK_RC(db_certificate_get(db, ta, cid, &c), CP_OK);
	CHECK(!strcmp(fx_str(c, "name"), "renamed") &&
	      !strcmp(fx_str(c, "auto_renew"), "letsencrypt"));
	CHECK(!strcmp(fx_str(json_object_get(c, "metadata"), "team"), "ops"));
	json_decref(c);
	c = NULL;

	/* Status and renewal bookkeeping. */
	CHECK_RC(db_certificate_set_status(db, ta, cid, "renewing"), CP_OK);
	CHECK_RC(db_certificate_set_status(db, ta, cid, "asleep"), CP_ERR_CONFLICT);
	CHECK_RC(db_certificate_set_status(db, tb, cid, "failed"), CP_ERR_NOT_FOUND);
	{
		struct db_cert_renewal r = { .renew_after = 1700000000,
					     .next_attempt_at = 1700003600,
					     .last_attempt_at = 1700000060,
					     .last_error = "the CA said no",
					     .last_error_reason = "acme_error",
					     .failure_count = 2 };
		const json_t *rn;
		CHECK_RC(db_certificate_set_renewal(db, ta, cid, &r), CP_OK);
		CHECK_RC(db_certificate_set_renewal(db, tb, cid, &r), CP_ERR_NOT_FOUND);
		CHECK_RC(db_certificate_get(db, ta, cid, &c), CP_OK);
		CHECK(!strcmp(fx_str(c, "status"), "renewing"));
		rn = json_object_get(c, "renewal");
		CHECK(!strcmp(fx_str(rn, "renew_after"), "2023-11-14T22:13:20Z"));
		CHECK(!strcmp(fx_str(rn, "next_attempt_at"), "2023-11-14T23:13:20Z"));
		CHECK(!strcmp(fx_str(rn, "last_error"), "the CA said no"));
		CHECK(!strcmp(fx_str(rn, "last_error_reason"), "acme_error"));
		CHECK(json_integer_value(json_object_get(rn, "failure_count")) == 2);
		json_decref(c);
		c = NULL;
		r = (struct db_cert_renewal){ 0 };
		CHECK_RC(db_certificate_set_renewal(db, ta, cid, &r), CP_OK);
		CHECK_RC(db_certificate_get(db, ta, cid, &c), CP_OK);
		rn = json_object_get(c, "renewal");
		CHECK(json_is_null(json_object_get(rn, "next_attempt_at")));
		CHECK(json_is_null(json_object_get(rn, "last_error")));
		json_decref(c);
		c = NULL;
	}

	/* The database failing. */
	fx_fail(db, true);
	CHECK_RC(db_certificate_exists(db, ta, cid), CP_ERR_INTERNAL);
	CHECK_RC(cert_create(ta, "x", "pending", (char[CP_UUID_LEN + 1]){ 0 }), CP_ERR_INTERNAL);
	CHECK_RC(db_certificate_add_version(db, ring, ta, cid, &m, &version), CP_ERR_INTERNAL);
	CHECK_RC(db_certificate_get(db, ta, cid, &c), CP_ERR_INTERNAL);
	CHECK_RC(db_certificate_list(db, ta, NULL, (struct db_page){ .limit = 10 }, &l),
		 CP_ERR_INTERNAL);
	CHECK_RC(db_certificate_update(db, ta, cid, "n", NULL, NULL), CP_ERR_INTERNAL);
	CHECK_RC(db_certificate_delete(db, ta, cid), CP_ERR_INTERNAL);
	CHECK_RC(db_certificate_versions(db, ta, cid, (struct db_page){ .limit = 10 }, &l),
		 CP_ERR_INTERNAL);
	CHECK_RC(db_certificate_pem(db, ta, cid, &pem), CP_ERR_INTERNAL);
	CHECK_RC(db_certificate_key_pem(db, ring, ta, cid, &pem), CP_ERR_INTERNAL);
	CHECK_RC(db_certificate_set_status(db, ta, cid, "active"), CP_ERR_INTERNAL);
	CHECK_RC(db_certificate_set_renewal(db, ta, cid, &(struct db_cert_renewal){ 0 }),
		 CP_ERR_INTERNAL);
	fx_fail(db, false);
	CHECK(c == NULL && pem == NULL && l.data == NULL);
	CHECK_RC(db_certificate_set_status(db, ta, cid, "active"), CP_OK);

	/* Delete: refused while a property carries it; scoped; with versions. */
	{
		json_t *e = NULL, *p = NULL, *hosts = json_pack("[s]", "www.a.test");
		struct db_property_in in = { .name = "p",
					     .hostnames = hosts,
					     .certificate_id = cid2,
					     .claim_ttl_seconds = 3600 };
		CHECK_RC(db_edge_hostname_create(db, ta, "e", "edge.a-cdn.test", &e), CP_OK);
		in.edge_hostname_id = fx_str(e, "id");
		CHECK_RC(db_property_create(db, ta, &in, NULL, &p), CP_OK);
		CHECK_RC(db_certificate_delete(db, ta, cid2), CP_ERR_CONFLICT);
		CHECK_RC(db_property_delete(db, ta, fx_str(p, "id")), CP_OK);
		json_decref(p);
		json_decref(e);
		json_decref(hosts);
	}
	CHECK_RC(db_certificate_delete(db, tb, cid2), CP_ERR_NOT_FOUND);
	CHECK_RC(db_certificate_delete(db, ta, cid2), CP_OK);
	CHECK_RC(db_certificate_delete(db, ta, cid2), CP_ERR_NOT_FOUND);
	CHECK_RC(db_certificate_exists(db, ta, cid2), CP_ERR_NOT_FOUND);
}

/* The id of tenant ta's only "active" certificate, into id. */
static void active_cert(char id[CP_UUID_LEN + 1])
{
	struct db_list l = { 0 };

	id[0] = '\0';
	if (db_certificate_list(
		    fx.db, ta,
		    &(struct db_cert_filter){ .status = "active", .expiring_within = -1 },
		    (struct db_page){ .limit = 10 }, &l) == CP_OK &&
	    json_array_size(l.data) == 1)
		snprintf(id, CP_UUID_LEN + 1, "%s", fx_str(json_array_get(l.data, 0), "id"));
	fx_list_clear(&l);
}

/* The data of the newest event of tenant of type (new reference) or NULL. */
static json_t *last_event(const char *tenant, const char *type)
{
	struct db_list l = { 0 };
	json_t *d = NULL;

	if (db_event_list(fx.db, tenant, type, (struct db_page){ .limit = 500 }, &l) == CP_OK &&
	    json_array_size(l.data) > 0)
		d = json_incref(json_object_get(json_array_get(l.data, json_array_size(l.data) - 1),
						"data"));
	fx_list_clear(&l);
	return d;
}

/* The ACME profile (migration 010) and what a new CA order of the
 * certificate carries (db_certificate_order_plan). */
static void test_profile_plan(void)
{
	struct db *db = fx.db;
	struct db_cert_material m = { .cert_pem = cert_pem, .key_pem = key_pem };
	char cid[CP_UUID_LEN + 1], oid[CP_UUID_LEN + 1], sql[256];
	json_t *plan = NULL, *c = NULL, *names = json_pack("[s]", "www.a.test");
	char tc[CP_UUID_LEN + 1];
	const char *long_name = "p1234567890123456789012345678901234567890123456789012345678901234";

	CHECK(strlen(long_name) == 65);
	/* A tenant of its own: the other tests count what ta and tb hold. */
	CHECK(fx_tenant(db, "c", tc));
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(cert_create(tc, "profiled", "pending", cid), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	/* No profile, no version yet. */
	CHECK_RC(db_certificate_order_plan(db, tc, cid, &plan), CP_OK);
	CHECK(json_is_null(json_object_get(plan, "profile")) &&
	      json_is_null(json_object_get(plan, "cert_pem")) &&
	      json_is_null(json_object_get(plan, "version_ca")));
	json_decref(plan);
	plan = NULL;
	/* Set: shown in the certificate and in the plan; another tenant's id
	 * is not found. */
	CHECK_RC(db_certificate_set_profile(db, tc, cid, "shortlived"), CP_OK);
	CHECK_RC(db_certificate_get(db, tc, cid, &c), CP_OK);
	CHECK(!strcmp(fx_str(c, "profile"), "shortlived"));
	json_decref(c);
	c = NULL;
	CHECK_RC(db_certificate_set_profile(db, tb, cid, "x"), CP_ERR_NOT_FOUND);
	CHECK_RC(db_certificate_order_plan(db, tb, cid, &plan), CP_ERR_NOT_FOUND);
	CHECK(plan == NULL);
	/* The table bounds it: 1..64 characters. */
	CHECK_RC(db_certificate_set_profile(db, tc, cid, long_name), CP_ERR_CONFLICT);
	CHECK_RC(db_certificate_set_profile(db, tc, cid, ""), CP_ERR_CONFLICT);
	/* A version stored without an order (uploaded, self-signed): no CA. */
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_certificate_add_version(db, ring, tc, cid, &m, NULL), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	CHECK_RC(db_certificate_order_plan(db, tc, cid, &plan), CP_OK);
	CHECK(!strcmp(fx_str(plan, "profile"), "shortlived"));
	CHECK(fx_str(plan, "cert_pem") && strstr(fx_str(plan, "cert_pem"), "BEGIN CERTIFICATE"));
	CHECK(json_is_null(json_object_get(plan, "version_ca")));
	json_decref(plan);
	plan = NULL;
	/* A version an order stored: the plan names that order's CA. */
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_order_start(db, tc, cid, "renew", "http-01", names, "letsencrypt", "ecdsa-p256",
				NULL, cp_now(), oid),
		 CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	snprintf(sql, sizeof(sql),
		 "UPDATE certificate_versions SET order_id = '%s' WHERE certificate_id = '%s'", oid,
		 cid);
	CHECK(fx_sql(db, sql));
	CHECK_RC(db_certificate_order_plan(db, tc, cid, &plan), CP_OK);
	CHECK(!strcmp(fx_str(plan, "version_ca"), "letsencrypt"));
	json_decref(plan);
	plan = NULL;
	/* Cleared. */
	CHECK_RC(db_certificate_set_profile(db, tc, cid, NULL), CP_OK);
	CHECK_RC(db_certificate_order_plan(db, tc, cid, &plan), CP_OK);
	CHECK(json_is_null(json_object_get(plan, "profile")));
	json_decref(plan);
	plan = NULL;
	/* The database failing. */
	fx_fail(db, true);
	CHECK_RC(db_certificate_set_profile(db, tc, cid, "x"), CP_ERR_INTERNAL);
	CHECK_RC(db_certificate_order_plan(db, tc, cid, &plan), CP_ERR_INTERNAL);
	fx_fail(db, false);
	CHECK(plan == NULL);
	json_decref(names);
}

static void test_cert_events(void)
{
	struct db *db = fx.db;
	char cid[CP_UUID_LEN + 1], eid[CP_UUID_LEN + 1];
	json_t *extra = json_pack("{s:s,s:s}", "order_id", "o-1", "serial", "overridden"), *d;
	int sent = -1;

	active_cert(cid);
	CHECK(cp_uuid_valid(cid));
	CHECK_RC(db_event_certificate(db, ta, "certificate.issued", cid, extra, eid), CP_OK);
	CHECK(cp_uuid_valid(eid));
	d = last_event(ta, "certificate.issued");
	CHECK(!strcmp(fx_str(d, "certificate_id"), cid) && !strcmp(fx_str(d, "name"), "renamed"));
	CHECK(!strcmp(fx_str(d, "order_id"), "o-1") && !strcmp(fx_str(d, "serial"), "overridden"));
	CHECK(json_integer_value(json_object_get(d, "version")) == 2);
	CHECK(json_array_size(json_object_get(d, "sans")) == 2);
	json_decref(d);
	CHECK_RC(db_event_certificate(db, tb, "certificate.issued", cid, NULL, NULL),
		 CP_ERR_NOT_FOUND);
	CHECK_RC(db_event_certificate(db, ta, "certificate.issued", NOID, NULL, NULL),
		 CP_ERR_NOT_FOUND);
	json_decref(extra);

	extra = json_pack("{s:s,s:s}", "reason", "dns_timeout", "detail", "no TXT");
	CHECK_RC(db_event_order(db, ta, "order.failed", "o-1", cid, extra, eid), CP_OK);
	d = last_event(ta, "order.failed");
	CHECK(!strcmp(fx_str(d, "order_id"), "o-1") && !strcmp(fx_str(d, "certificate_id"), cid));
	CHECK(!strcmp(fx_str(d, "certificate_name"), "renamed"));
	CHECK(!strcmp(fx_str(d, "reason"), "dns_timeout"));
	json_decref(d);
	CHECK_RC(db_event_order(db, ta, "order.failed", "o-2", NULL, NULL, NULL), CP_OK);
	d = last_event(ta, "order.failed");
	CHECK(!strcmp(fx_str(d, "order_id"), "o-2") &&
	      json_is_null(json_object_get(d, "certificate_id")));
	json_decref(d);

	/* Reminders: one before expiry, none again; expired once. */
	CHECK_RC(db_cert_reminders_run(db, cp_now(), 10, &sent), CP_OK);
	CHECK(sent == 0);
	CHECK_RC(db_cert_reminders_run(db, not_after - 60, 10, &sent), CP_OK);
	CHECK(sent == 1);
	CHECK_RC(db_cert_reminders_run(db, not_after - 60, 10, &sent), CP_OK);
	CHECK(sent == 0);
	d = last_event(ta, "certificate.expiring");
	CHECK(!strcmp(fx_str(d, "certificate_id"), cid));
	json_decref(d);
	CHECK_RC(db_cert_reminders_run(db, not_after + 60, 10, &sent), CP_OK);
	CHECK(sent == 1);
	CHECK_RC(db_cert_reminders_run(db, not_after + 60, 10, &sent), CP_OK);
	CHECK(sent == 0);
	d = last_event(ta, "certificate.expired");
	CHECK(!strcmp(fx_str(d, "certificate_id"), cid));
	json_decref(d);

	fx_fail(db, true);
	CHECK_RC(db_event_certificate(db, ta, "certificate.issued", cid, NULL, NULL),
		 CP_ERR_INTERNAL);
	CHECK_RC(db_event_order(db, ta, "order.failed", "o-1", cid, extra, NULL), CP_ERR_INTERNAL);
	CHECK_RC(db_cert_reminders_run(db, not_after + 60, 10, &sent), CP_ERR_INTERNAL);
	fx_fail(db, false);
	json_decref(extra);
}

static void test_accounts(void)
{
	struct db *db = fx.db;
	json_t *a = NULL;

	CHECK_RC(db_acme_account_get(db, "letsencrypt", &a), CP_ERR_NOT_FOUND);
	CHECK_RC(db_acme_account_create(db, "acc-1", "letsencrypt", "https://ca.test/dir",
					"sealed1"),
		 CP_OK);
	/* A second create for the CA changes nothing. */
	CHECK_RC(
		db_acme_account_create(db, "acc-2", "letsencrypt", "https://x.test/dir", "sealed2"),
		CP_OK);
	CHECK_RC(db_acme_account_get(db, "letsencrypt", &a), CP_OK);
	CHECK(!strcmp(fx_str(a, "id"), "acc-1") && !strcmp(fx_str(a, "ca"), "letsencrypt"));
	CHECK(!strcmp(fx_str(a, "directory_url"), "https://ca.test/dir"));
	CHECK(!strcmp(fx_str(a, "key"), "sealed1"));
	CHECK(json_is_null(json_object_get(a, "account_url")));
	json_decref(a);
	a = NULL;
	CHECK_RC(db_acme_account_set_url(db, "letsencrypt", "https://ca.test/acct/1"), CP_OK);
	CHECK_RC(db_acme_account_get(db, "letsencrypt", &a), CP_OK);
	CHECK(!strcmp(fx_str(a, "account_url"), "https://ca.test/acct/1"));
	json_decref(a);
	a = NULL;
	CHECK_RC(db_acme_account_set_url(db, "letsencrypt", NULL), CP_OK);
	CHECK_RC(db_acme_account_get(db, "letsencrypt", &a), CP_OK);
	CHECK(json_is_null(json_object_get(a, "account_url")));
	json_decref(a);
	a = NULL;
	/* The same id for another CA breaks the primary key. */
	CHECK_RC(db_acme_account_create(db, "acc-1", "other", "https://o.test/dir", "s"),
		 CP_ERR_CONFLICT);

	fx_fail(db, true);
	CHECK_RC(db_acme_account_get(db, "letsencrypt", &a), CP_ERR_INTERNAL);
	CHECK_RC(db_acme_account_create(db, "acc-3", "c3", "https://c.test/", "s"),
		 CP_ERR_INTERNAL);
	CHECK_RC(db_acme_account_set_url(db, "letsencrypt", "u"), CP_ERR_INTERNAL);
	fx_fail(db, false);
	CHECK(a == NULL);
}

static void test_orders(void)
{
	struct db *db = fx.db;
	char cid[CP_UUID_LEN + 1], oid[CP_UUID_LEN + 1], oid2[CP_UUID_LEN + 1];
	json_t *ids = json_pack("[s]", "www.a.test"), *meta = json_pack("{s:s}", "ticket", "T-1");
	json_t *o = NULL, *patch;
	struct db_list l = { 0 };
	struct db_job j = { 0 };
	char *ka = NULL;
	int64_t now = cp_now();

	CHECK_RC(cert_create(ta, "acme", "pending", cid), CP_OK);
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_order_start(db, ta, cid, "issue", "http-01", ids, "letsencrypt", "ecdsa-p256",
				meta, now + 3600, oid),
		 CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	CHECK(cp_uuid_valid(oid));
	/* One order in flight per certificate. */
	CHECK_RC(db_order_start(db, ta, cid, "issue", "http-01", ids, "letsencrypt", "ecdsa-p256",
				NULL, now, oid2),
		 CP_ERR_CONFLICT);
	cp_uuid(oid2);
	CHECK_RC(db_order_create(db, ta, oid2, cid, "issue", "http-01", ids, "letsencrypt",
				 "ecdsa-p256", NULL),
		 CP_ERR_CONFLICT);

	CHECK_RC(db_order_get(db, ta, oid, &o), CP_OK);
	CHECK(!strcmp(fx_str(o, "id"), oid) && !strcmp(fx_str(o, "certificate_id"), cid));
	CHECK(!strcmp(fx_str(o, "status"), "pending") && !strcmp(fx_str(o, "kind"), "issue"));
	CHECK(!strcmp(fx_str(o, "challenge"), "http-01") &&
	      !strcmp(fx_str(o, "ca"), "letsencrypt"));
	CHECK(json_array_size(json_object_get(o, "authorizations")) == 0);
	CHECK(json_is_null(json_object_get(o, "error")));
	CHECK(!strcmp(fx_str(json_object_get(o, "metadata"), "ticket"), "T-1"));
	json_decref(o);
	o = NULL;
	CHECK_RC(db_order_get(db, tb, oid, &o), CP_ERR_NOT_FOUND);
	CHECK_RC(db_order_in_flight(db, ta, cid, &o), CP_OK);
	CHECK(!strcmp(fx_str(o, "id"), oid));
	json_decref(o);
	o = NULL;
	CHECK_RC(db_order_in_flight(db, tb, cid, &o), CP_ERR_NOT_FOUND);

	/* Its job: queued at run_at with the order's dedupe key; wake makes it due. */
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 4, "w", 30, &j), CP_ERR_NOT_FOUND);
	{
		char dk[64];
		snprintf(dk, sizeof(dk), "acme_order:%s", oid);
		CHECK_RC(db_job_wake(db, dk), CP_OK);
		CHECK_RC(db_job_wake(db, "acme_order:none"), CP_OK);
	}
	CHECK_RC(db_job_claim(db, DB_JOB_LANE_GENERAL, 4, "w", 30, &j), CP_OK);
	CHECK(!strcmp(j.kind, "acme_order") && !strcmp(fx_str(j.payload, "order_id"), oid));
	CHECK_RC(db_job_done(db, j.id, "w"), CP_OK);
	db_job_clear(&j);

	CHECK_RC(db_order_list(db, ta, &(struct db_order_filter){ 0 },
			       (struct db_page){ .limit = 10 }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 1);
	fx_list_clear(&l);
	CHECK_RC(
		db_order_list(db, ta,
			      &(struct db_order_filter){ .certificate_id = cid, .status = "valid" },
			      (struct db_page){ .limit = 10 }, &l),
		CP_OK);
	CHECK(json_array_size(l.data) == 0);
	fx_list_clear(&l);
	CHECK_RC(db_order_list(db, tb, &(struct db_order_filter){ 0 },
			       (struct db_page){ .limit = 10 }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 0);
	fx_list_clear(&l);
	/* By identifier (order_names, migration 017), in both orders, only
	 * in the order's tenant. */
	CHECK_RC(db_order_list(db, ta, &(struct db_order_filter){ .hostname = "www.a.test" },
			       (struct db_page){ .limit = 10, .desc = true }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 1 &&
	      !strcmp(fx_str(json_array_get(l.data, 0), "id"), oid));
	fx_list_clear(&l);
	CHECK_RC(db_order_list(db, ta, &(struct db_order_filter){ .hostname = "api.a.test" },
			       (struct db_page){ .limit = 10 }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 0);
	fx_list_clear(&l);
	CHECK_RC(db_order_list(db, tb, &(struct db_order_filter){ .hostname = "www.a.test" },
			       (struct db_page){ .limit = 10 }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 0);
	fx_list_clear(&l);

	/* Save: present members set, absent kept. */
	patch = json_pack("{s:s,s:s,s:i,s:s}", "status", "validating", "order_url",
			  "https://ca.test/order/1", "attempts", 1, "key", "sealed-key");
	CHECK_RC(db_order_save(db, oid, patch), CP_OK);
	CHECK_RC(db_order_save(db, NOID, patch), CP_ERR_NOT_FOUND);
	json_decref(patch);
	CHECK_RC(db_order_authz_add(db, oid, 0, "https://ca.test/authz/1"), CP_OK);
	CHECK_RC(db_order_authz_add(db, oid, 0, "https://ca.test/authz/1"), CP_OK); /* idempotent */
	CHECK_RC(db_order_authz_add(db, NOID, 0, "https://ca.test/authz/x"), CP_ERR_CONFLICT);
	patch = json_pack("{s:s,s:s,s:s,s:s,s:s}", "identifier", "www.a.test", "status", "pending",
			  "challenge_type", "http-01", "token", "tok1", "key_authorization",
			  "tok1.thumb");
	CHECK_RC(db_order_authz_save(db, oid, 0, patch), CP_OK);
	json_decref(patch);
	CHECK_RC(db_order_load(db, ta, oid, &o), CP_OK);
	CHECK(!strcmp(fx_str(o, "tenant_id"), ta) && !strcmp(fx_str(o, "status"), "validating"));
	CHECK(!strcmp(fx_str(o, "order_url"), "https://ca.test/order/1"));
	CHECK(!strcmp(fx_str(o, "key"), "sealed-key"));
	CHECK(json_integer_value(json_object_get(o, "attempts")) == 1);
	CHECK(json_array_size(json_object_get(o, "authorizations")) == 1);
	CHECK(!strcmp(fx_str(json_array_get(json_object_get(o, "authorizations"), 0), "url"),
		      "https://ca.test/authz/1"));
	CHECK(!strcmp(fx_str(json_array_get(json_object_get(o, "authorizations"), 0), "token"),
		      "tok1"));
	json_decref(o);
	o = NULL;
	CHECK_RC(db_order_load(db, tb, oid, &o), CP_ERR_NOT_FOUND);
	CHECK_RC(db_order_get(db, ta, oid, &o), CP_OK); /* the API view of the same */
	CHECK(json_object_get(o, "key") == NULL);
	CHECK(!strcmp(
		fx_str(json_object_get(json_array_get(json_object_get(o, "authorizations"), 0),
				       "challenge"),
		       "body"),
		"tok1.thumb"));
	json_decref(o);
	o = NULL;

	/* HTTP-01: only the token's own host, only while pending. */
	CHECK_RC(db_http01_key_authorization(db, "tok1", "www.a.test", &ka), CP_OK);
	CHECK(ka && !strcmp(ka, "tok1.thumb"));
	free(ka);
	ka = NULL;
	CHECK_RC(db_http01_key_authorization(db, "tok1", "evil.test", &ka), CP_ERR_NOT_FOUND);
	CHECK_RC(db_http01_key_authorization(db, "nope", "www.a.test", &ka), CP_ERR_NOT_FOUND);
	CHECK(ka == NULL);
	/* The CA's spelling of the identifier does not matter; the status does. */
	CHECK_RC(db_order_authz_add(db, oid, 1, "https://ca.test/authz/2"), CP_OK);
	patch = json_pack("{s:s,s:s,s:s,s:s,s:s}", "identifier", "Shop.A.test", "status", "pending",
			  "challenge_type", "http-01", "token", "tok2", "key_authorization",
			  "tok2.thumb");
	CHECK_RC(db_order_authz_save(db, oid, 1, patch), CP_OK);
	json_decref(patch);
	CHECK_RC(db_http01_key_authorization(db, "tok2", "shop.a.test", &ka), CP_OK);
	CHECK(ka && !strcmp(ka, "tok2.thumb"));
	free(ka);
	ka = NULL;
	patch = json_pack("{s:s}", "status", "valid");
	CHECK_RC(db_order_authz_save(db, oid, 1, patch), CP_OK);
	json_decref(patch);
	CHECK_RC(db_http01_key_authorization(db, "tok2", "shop.a.test", &ka), CP_ERR_NOT_FOUND);

	/* Reset: the CA side forgotten, the key and attempts kept. */
	CHECK_RC(db_order_reset(db, oid), CP_OK);
	CHECK_RC(db_order_load(db, ta, oid, &o), CP_OK);
	CHECK(!strcmp(fx_str(o, "status"), "pending") &&
	      json_is_null(json_object_get(o, "order_url")));
	CHECK(!strcmp(fx_str(o, "key"), "sealed-key"));
	CHECK(json_integer_value(json_object_get(o, "attempts")) == 1);
	CHECK(json_array_size(json_object_get(o, "authorizations")) == 0);
	json_decref(o);
	o = NULL;
	CHECK_RC(db_http01_key_authorization(db, "tok1", "www.a.test", &ka), CP_ERR_NOT_FOUND);

	/* A final status stays: a later save cannot move it back. */
	patch = json_pack("{s:s,s:s,s:s}", "status", "failed", "error_reason", "rejected",
			  "error_detail", "the CA refused");
	CHECK_RC(db_order_save(db, oid, patch), CP_OK);
	json_decref(patch);
	patch = json_pack("{s:s}", "status", "pending");
	CHECK_RC(db_order_save(db, oid, patch), CP_OK);
	json_decref(patch);
	CHECK_RC(db_order_get(db, ta, oid, &o), CP_OK);
	CHECK(!strcmp(fx_str(o, "status"), "failed"));
	CHECK(!strcmp(fx_str(json_object_get(o, "error"), "reason"), "rejected"));
	json_decref(o);
	o = NULL;
	CHECK_RC(db_order_in_flight(db, ta, cid, &o), CP_ERR_NOT_FOUND);

	/* A renewal order marks the certificate renewing. */
	active_cert(cid);
	CHECK_RC(db_order_start(db, ta, cid, "renew", "http-01", ids, "letsencrypt", "ecdsa-p256",
				NULL, now, NULL),
		 CP_OK);
	CHECK_RC(db_certificate_get(db, ta, cid, &o), CP_OK);
	CHECK(!strcmp(fx_str(o, "status"), "renewing"));
	json_decref(o);
	o = NULL;

	/* A second order in flight is refused without an error that would
	 * end the caller's transaction (PostgreSQL aborts one on a constraint
	 * error): the transaction reads and commits after it. */
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_order_create(db, ta, oid2, cid, "issue", "http-01", ids, "letsencrypt",
				 "ecdsa-p256", NULL),
		 CP_ERR_CONFLICT);
	CHECK_RC(db_order_in_flight(db, ta, cid, &o), CP_OK);
	CHECK(strcmp(fx_str(o, "id"), oid2) != 0 && !strcmp(fx_str(o, "kind"), "renew"));
	json_decref(o);
	o = NULL;
	CHECK_RC(db_commit(db), CP_OK);
	CHECK_RC(db_order_get(db, ta, oid2, &o), CP_ERR_NOT_FOUND);

	fx_fail(db, true);
	CHECK_RC(db_order_start(db, ta, cid, "issue", "http-01", ids, "letsencrypt", "ecdsa-p256",
				NULL, now, oid2),
		 CP_ERR_INTERNAL);
	CHECK_RC(db_order_create(db, ta, oid2, cid, "issue", "http-01", ids, "le", "k", NULL),
		 CP_ERR_INTERNAL);
	CHECK_RC(db_order_get(db, ta, oid, &o), CP_ERR_INTERNAL);
	CHECK_RC(db_order_in_flight(db, ta, cid, &o), CP_ERR_INTERNAL);
	CHECK_RC(db_order_list(db, ta, &(struct db_order_filter){ 0 },
			       (struct db_page){ .limit = 10 }, &l),
		 CP_ERR_INTERNAL);
	CHECK_RC(db_order_load(db, ta, oid, &o), CP_ERR_INTERNAL);
	CHECK_RC(db_order_save(db, oid, ids), CP_ERR_INTERNAL);
	CHECK_RC(db_order_authz_add(db, oid, 1, "u"), CP_ERR_INTERNAL);
	CHECK_RC(db_order_authz_save(db, oid, 0, ids), CP_ERR_INTERNAL);
	CHECK_RC(db_order_reset(db, oid), CP_ERR_INTERNAL);
	CHECK_RC(db_http01_key_authorization(db, "tok1", "www.a.test", &ka), CP_ERR_INTERNAL);
	CHECK_RC(db_job_wake(db, "acme_order:x"), CP_ERR_INTERNAL);
	fx_fail(db, false);
	CHECK(o == NULL && ka == NULL && l.data == NULL);
	json_decref(ids);
	json_decref(meta);
}

static void test_renewal_and_metrics(void)
{
	struct db *db = fx.db;
	char cid[CP_UUID_LEN + 1];
	json_t *out = NULL, *e = NULL, *p = NULL, *d = NULL, *hosts;
	int count = -1;
	int64_t na = 0;

	active_cert(cid);
	if (!cid[0]) { /* renewing after test_orders: find it by name */
		struct db_list l = { 0 };
		CHECK_RC(db_certificate_list(db, ta,
					     &(struct db_cert_filter){ .status = "renewing",
								       .expiring_within = -1 },
					     (struct db_page){ .limit = 10 }, &l),
			 CP_OK);
		CHECK(json_array_size(l.data) == 1);
		snprintf(cid, sizeof(cid), "%s", fx_str(json_array_get(l.data, 0), "id"));
		fx_list_clear(&l);
	}
	/* Settle the renewal order so the certificate is a candidate. */
	CHECK(fx_sql(db, "UPDATE orders SET status = 'valid' WHERE status = 'pending'"));
	CHECK_RC(db_certificate_set_status(db, ta, cid, "active"), CP_OK);

	/* Not deployed anywhere yet: no SAN to renew, no candidate. */
	CHECK_RC(db_renewal_hostnames(db, ta, cid, &out), CP_OK);
	CHECK(json_is_array(out) && json_array_size(out) == 0);
	json_decref(out);
	out = NULL;
	CHECK_RC(db_renewal_candidate(db, cid, &out), CP_ERR_NOT_FOUND);
	CHECK(out == NULL);

	/* Deployed to production on a renew-automated property. */
	hosts = json_pack("[ss]", "www.a.test", "shop.a.test");
	CHECK_RC(db_edge_hostname_create(db, ta, "e2", "edge2.a-cdn.test", &e), CP_OK);
	{
		struct db_property_in in = { .name = "live",
					     .hostnames = hosts,
					     .edge_hostname_id = fx_str(e, "id"),
					     .certificate_id = cid,
					     .renew_automation = true,
					     .claim_ttl_seconds = 3600 };
		CHECK_RC(db_property_create(db, ta, &in, NULL, &p), CP_OK);
	}
	CHECK_RC(db_deployment_create(db, ta, fx_str(p, "id"), "production", &d), CP_OK);
	json_decref(d);
	CHECK_RC(db_renewal_hostnames(db, ta, cid, &out), CP_OK);
	CHECK(json_array_size(out) == 2 &&
	      !strcmp(json_string_value(json_array_get(out, 0)), "www.a.test"));
	json_decref(out);
	out = NULL;
	CHECK_RC(db_renewal_hostnames(db, tb, cid, &out), CP_OK); /* not tb's */
	CHECK(json_array_size(out) == 0);
	json_decref(out);
	out = NULL;
	CHECK_RC(db_renewal_candidate(db, cid, &out), CP_OK);
	CHECK(!strcmp(fx_str(out, "id"), cid));
	CHECK(!strcmp(fx_str(out, "tenant_id"), ta));
	CHECK(json_integer_value(json_object_get(out, "not_after")) == not_after);
	json_decref(out);
	out = NULL;
	/* The attention scan finds it (its next_attention_at is set). */
	CHECK_RC(db_renewal_attention(db, 0, cp_now() + 86400 * 400, 10, &out), CP_OK);
	CHECK(json_array_size(out) == 1 && !strcmp(fx_str(json_array_get(out, 0), "id"), cid));
	json_decref(out);
	out = NULL;
	/* Deferred by the scheduler: found at the new moment only. */
	CHECK_RC(db_renewal_defer(db, cid, 1234567), CP_OK);
	CHECK_RC(db_renewal_attention(db, 1234566, 1234567, 10, &out), CP_OK);
	CHECK(json_array_size(out) == 1 && !strcmp(fx_str(json_array_get(out, 0), "id"), cid));
	json_decref(out);
	out = NULL;
	CHECK_RC(db_renewal_attention(db, 1234567, 1234999, 10, &out), CP_OK);
	CHECK(json_array_size(out) == 0);
	json_decref(out);
	out = NULL;
	/* No renewal order in flight: the budget resumes at no queued slot. */
	na = -1;
	CHECK_RC(db_renewal_last_run_at(db, "letsencrypt", &na), CP_OK);
	CHECK(na == 0);
	/* Backing off (next attempt later): not a candidate. */
	CHECK_RC(db_certificate_set_renewal(
			 db, ta, cid,
			 &(struct db_cert_renewal){ .next_attempt_at = cp_now() + 3600,
						    .failure_count = 1 }),
		 CP_OK);
	CHECK_RC(db_renewal_candidate(db, cid, &out), CP_ERR_NOT_FOUND);
	CHECK(out == NULL);

	/* Give up: only a failed auto-renewing certificate past its expiry. */
	CHECK_RC(db_renewal_give_up_expired(db, &count), CP_OK);
	CHECK(count == 0);
	CHECK(fx_sql(db, "UPDATE certificate_versions SET not_after = 1000"));
	CHECK_RC(db_renewal_give_up_expired(db, &count), CP_OK);
	CHECK(count == 1);
	CHECK_RC(db_renewal_give_up_expired(db, &count), CP_OK);
	CHECK(count == 0);
	CHECK_RC(db_certificate_get(db, ta, cid, &out), CP_OK);
	CHECK(!strcmp(fx_str(out, "status"), "failed"));
	json_decref(out);
	out = NULL;

	/* Metrics: counts over every tenant. */
	CHECK_RC(db_metrics_orders(db, &out), CP_OK);
	CHECK(json_integer_value(json_object_get(out, "failed")) == 1);
	CHECK(json_integer_value(json_object_get(out, "valid")) == 1);
	json_decref(out);
	out = NULL;
	CHECK_RC(db_metrics_certificates(db, &out), CP_OK);
	CHECK(json_integer_value(json_object_get(out, "failed")) == 1);
	CHECK(json_integer_value(json_object_get(out, "pending")) == 1);
	json_decref(out);
	out = NULL;
	CHECK_RC(db_metrics_soonest_expiry(db, &na), CP_ERR_NOT_FOUND); /* none active */
	CHECK(fx_sql(db, "UPDATE certificate_versions SET not_after = 2000000000"));
	CHECK_RC(db_certificate_set_status(db, ta, cid, "active"), CP_OK);
	CHECK_RC(db_metrics_soonest_expiry(db, &na), CP_OK);
	CHECK(na == 2000000000);
	CHECK_RC(db_metrics_webhook_deliveries(db, &out), CP_OK);
	CHECK(json_is_object(out) && json_object_size(out) == 0);
	json_decref(out);
	out = NULL;

	/* A schema without the counts or the index: NOT_FOUND, so a scrape
	 * never fails. */
	CHECK(fx_sql(db, "ALTER TABLE metric_counts RENAME TO mc_away"));
	CHECK_RC(db_metrics_webhook_deliveries(db, &out), CP_ERR_NOT_FOUND);
	CHECK_RC(db_metrics_orders(db, &out), CP_ERR_NOT_FOUND);
	CHECK_RC(db_metrics_certificates(db, &out), CP_ERR_NOT_FOUND);
	CHECK(fx_sql(db, "ALTER TABLE mc_away RENAME TO metric_counts"));
	CHECK(fx_sql(db, "ALTER TABLE orders RENAME TO orders_away"));
	CHECK_RC(db_renewal_candidate(db, cid, &out), CP_ERR_INTERNAL);
	CHECK(fx_sql(db, "ALTER TABLE orders_away RENAME TO orders"));
	CHECK(fx_sql(db, "DROP INDEX certificates_status_expiry"));
	/* SQLite only: its INDEXED BY pin refuses the statement without the
	 * index; PostgreSQL has no pin, its planner plans without it (the
	 * plan is checked where the schema is whole, test_db_scale). */
	if (!fx_pg())
		CHECK_RC(db_metrics_certificates(db, &out), CP_ERR_NOT_FOUND);
	CHECK(fx_sql(db,
		     "CREATE INDEX certificates_status_expiry ON certificates(status, not_after)"));
	CHECK(fx_sql(db, "ALTER TABLE certificates RENAME COLUMN not_after TO na_away"));
	CHECK_RC(db_metrics_soonest_expiry(db, &na), CP_ERR_NOT_FOUND);
	CHECK(fx_sql(db, "ALTER TABLE certificates RENAME COLUMN na_away TO not_after"));
	fx_fail(db, true);
	/* PostgreSQL's failure here is the tables missing from the
	 * search_path, which fails the metrics' quiet prepare: exactly the
	 * "schema without the counts" answer above (SQLite fails the step). */
	CHECK_RC(db_metrics_orders(db, &out), fx_pg() ? CP_ERR_NOT_FOUND : CP_ERR_INTERNAL);
	CHECK_RC(db_renewal_hostnames(db, ta, cid, &out), CP_ERR_INTERNAL);
	CHECK_RC(db_renewal_candidate(db, cid, &out), CP_ERR_INTERNAL);
	CHECK_RC(db_renewal_attention(db, 0, cp_now(), 10, &out), CP_ERR_INTERNAL);
	CHECK_RC(db_renewal_defer(db, cid, cp_now() + 60), CP_ERR_INTERNAL);
	CHECK_RC(db_renewal_last_run_at(db, "letsencrypt", &na), CP_ERR_INTERNAL);
	CHECK_RC(db_job_prune(db, cp_now(), 10, &count), CP_ERR_INTERNAL);
	CHECK_RC(db_webhook_prune(db, cp_now(), 10, &count), CP_ERR_INTERNAL);
	CHECK_RC(db_renewal_give_up_expired(db, &count), CP_ERR_INTERNAL);
	fx_fail(db, false);
	CHECK(out == NULL);
	json_decref(hosts);
	json_decref(e);
	json_decref(p);
}

/* Deleting tenant ta takes every row it owns with it (and leaves tb's). */
static void test_tenant_delete(void)
{
	static const char *const owned[] = { "certificates", "certificate_versions",
					     "orders",	     "order_authorizations",
					     "properties",   "property_hostnames",
					     "deployments",  "edge_hostnames" };
	struct db *db = fx.db;
	char sql[256], cid[CP_UUID_LEN + 1];

	CHECK_RC(cert_create(tb, "b's", "pending", cid), CP_OK);
	/* There is something to delete in each table. */
	CHECK(fx_sql(db, "INSERT INTO order_authorizations (order_id, position, url) "
			 "SELECT id, 0, 'https://ca.test/authz/z' FROM orders LIMIT 1"));
	for (size_t i = 0; i < CP_ARRAY_LEN(owned); i++) {
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", owned[i]);
		CHECK(fx_int(db, sql) > 0);
	}
	CHECK_RC(db_tenant_delete(db, ta), CP_OK);
	for (size_t i = 0; i < CP_ARRAY_LEN(owned); i++) {
		/* order_authorizations and certificate_versions go by their parent */
		if (!strcmp(owned[i], "order_authorizations"))
			snprintf(sql, sizeof(sql),
				 "SELECT count(*) FROM order_authorizations a WHERE NOT EXISTS "
				 "(SELECT 1 FROM orders o WHERE o.id = a.order_id)");
		else if (!strcmp(owned[i], "certificate_versions"))
			snprintf(sql, sizeof(sql),
				 "SELECT count(*) FROM certificate_versions v WHERE NOT EXISTS "
				 "(SELECT 1 FROM certificates c WHERE c.id = v.certificate_id)");
		else
			snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE tenant_id = '%s'",
				 owned[i], ta);
		if (fx_int(db, sql) != 0)
			fprintf(stderr, "tenant delete left rows in %s\n", owned[i]);
		CHECK(fx_int(db, sql) == 0);
	}
	CHECK_RC(db_certificate_exists(db, tb, cid), CP_OK);
}

/* Revocation (revocations.c): the reason table, what can be revoked, the
 * current version dropped at once, its job, the CA's answer recorded once,
 * and the hostname rule across tenants. Own tenants: runs last. */
static void test_revocation(void)
{
	static const struct {
		const char *name;
		int code;
	} table[] = { { "unspecified", 0 },
		      { "keyCompromise", 1 },
		      { "affiliationChanged", 3 },
		      { "superseded", 4 },
		      { "cessationOfOperation", 5 },
		      { "privilegeWithdrawn", 9 },
		      { "removeFromCRL", -1 },
		      { "KeyCompromise", -1 },
		      { "", -1 },
		      { NULL, -1 } };
	struct db *db = fx.db;
	struct db_cert_material m = { .cert_pem = cert_pem, .key_pem = key_pem };
	struct db_revoke_ask ask = { .reason = "superseded", .cause = "requested" };
	char td[CP_UUID_LEN + 1], te[CP_UUID_LEN + 1], cid[CP_UUID_LEN + 1];
	char oid[CP_UUID_LEN + 1], vid[CP_UUID_LEN + 1] = "", sql[320];
	json_t *vs = NULL, *c = NULL, *names = json_pack("[s]", "www.a.test"), *payload = NULL;

	for (size_t i = 0; i < CP_ARRAY_LEN(table); i++)
		CHECK(db_revocation_reason_code(table[i].name) == table[i].code);
	for (size_t i = 0; db_revocation_reasons[i]; i++)
		CHECK(db_revocation_reason_code(db_revocation_reasons[i]) >= 0);
	CHECK(fx_tenant(db, "d", td) && fx_tenant(db, "e", te));
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(cert_create(td, "rv", "pending", cid), CP_OK);
	CHECK_RC(db_certificate_add_version(db, ring, td, cid, &m, NULL), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	/* Self-signed (no order): no CA can revoke it. */
	CHECK_RC(db_revocation_request(db, td, cid, NULL, &ask, &vs), CP_ERR_INVALID);
	CHECK(vs == NULL);
	/* Issued by an order. */
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_order_start(db, td, cid, "renew", "http-01", names, "letsencrypt", "ecdsa-p256",
				NULL, cp_now(), oid),
		 CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	snprintf(sql, sizeof(sql),
		 "UPDATE certificate_versions SET order_id = '%s' WHERE certificate_id = '%s'", oid,
		 cid);
	CHECK(fx_sql(db, sql));
	/* Another tenant's certificate; a version that is not its. */
	CHECK_RC(db_revocation_request(db, te, cid, NULL, &ask, &vs), CP_ERR_NOT_FOUND);
	CHECK_RC(db_revocation_request(db, td, cid, NOID, &ask, &vs), CP_ERR_NOT_FOUND);
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_revocation_request(db, td, cid, NULL, &ask, &vs), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	CHECK(json_array_size(vs) == 1);
	if (fx_str(json_array_get(vs, 0), "id"))
		snprintf(vid, sizeof(vid), "%s", fx_str(json_array_get(vs, 0), "id"));
	json_decref(vs);
	vs = NULL;
	/* Never served again: no current version, failed with reason revoked. */
	CHECK_RC(db_certificate_get(db, td, cid, &c), CP_OK);
	CHECK(json_integer_value(json_object_get(c, "version")) == 0);
	CHECK(!strcmp(fx_str(c, "status"), "failed"));
	CHECK(!strcmp(fx_str(json_object_get(c, "renewal"), "last_error_reason"), "revoked"));
	json_decref(c);
	c = NULL;
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM certificate_versions WHERE id = '%s' AND "
		 "revocation_reason = 'superseded' AND revocation_requested_at IS NOT NULL AND "
		 "revoked_at IS NULL",
		 vid);
	CHECK(fx_int(db, sql) == 1);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM jobs WHERE kind = '" DB_REVOKE_JOB_KIND "' AND "
		 "dedupe_key = 'revoke:%s' AND payload LIKE '%%\"reason_code\":4%%'",
		 vid);
	CHECK(fx_int(db, sql) == 1);
	/* Nothing left to revoke. */
	CHECK_RC(db_revocation_request(db, td, cid, NULL, &ask, &vs), CP_ERR_CONFLICT);
	/* The CA's answer: recorded once, one event (a job run again adds none). */
	payload = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:s}", "tenant_id", td,
			    "certificate_id", cid, "version_id", vid, "version", 1, "serial", "01",
			    "reason", "superseded", "cause", "requested");
	for (int run = 0; run < 2; run++) {
		CHECK_RC(db_begin(db), CP_OK);
		CHECK_RC(db_revocation_done(db, payload, cp_now()), CP_OK);
		CHECK_RC(db_commit(db), CP_OK);
	}
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM events WHERE tenant_id = '%s' AND type = "
		 "'certificate.revoked'",
		 td);
	CHECK(fx_int(db, sql) == 1);
	json_decref(payload);
	/* The hostname rule: e's claim of www.a.test verified; d's next
	 * CA-issued version naming it is revoked, with d's event; e's own
	 * certificates are not touched. */
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_certificate_add_version(db, ring, td, cid, &m, NULL), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	snprintf(sql, sizeof(sql),
		 "UPDATE certificate_versions SET order_id = '%s' WHERE certificate_id = '%s'", oid,
		 cid);
	CHECK(fx_sql(db, sql));
	CHECK_RC(db_begin(db), CP_OK);
	CHECK_RC(db_revoke_for_new_holder(db, te, "www.a.test"), CP_OK);
	CHECK_RC(db_commit(db), CP_OK);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM certificate_versions WHERE certificate_id = '%s' AND "
		 "revocation_reason = 'cessationOfOperation'",
		 cid);
	CHECK(fx_int(db, sql) == 1);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM events WHERE tenant_id = '%s' AND type = "
		 "'certificate.hostname_lost'",
		 td);
	CHECK(fx_int(db, sql) == 1);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM events WHERE tenant_id = '%s' AND type = "
		 "'certificate.hostname_lost'",
		 te);
	CHECK(fx_int(db, sql) == 0);
	/* The database failing. */
	fx_fail(db, true);
	CHECK_RC(db_revocation_request(db, td, cid, NULL, &ask, &vs), CP_ERR_INTERNAL);
	fx_fail(db, false);
	CHECK(vs == NULL);
	json_decref(names);
}

int main(void)
{
	int rc;

	if (!fx_open(&fx, "test-db-certs") || !fx_tenant(fx.db, "a", ta) ||
	    !fx_tenant(fx.db, "b", tb) || crypto_keyring_load(fx.dir, NULL, &ring) != CP_OK ||
	    !make_material()) {
		fprintf(stderr, "test_db_certs: setup failed\n");
		return 1;
	}
	test_certificates();
	test_cert_events();
	test_accounts();
	test_orders();
	test_renewal_and_metrics();
	test_tenant_delete();
	test_profile_plan();
	test_revocation();
	crypto_keyring_free(ring);
	crypto_key_free(key);
	crypto_key_free(key2);
	crypto_wipe_free(key_pem);
	free(cert_pem);
	free(cert2_pem);
	fx_close(&fx);
	rc = check_exit("test_db_certs");
	return rc;
}
