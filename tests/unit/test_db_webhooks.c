/*
 * test_db_webhooks.c - the storage layer's contracts (db/db.h), part four:
 * webhook endpoints, their deliveries (fan-out from events, delivery to one
 * endpoint, the worker's load, attempts and the disabling policy) and the
 * secrets at rest (count of stale values, re-seal, rotation). Each function
 * is checked for the data it returns and for at least one error path (not
 * found, another tenant's id, conflict, a database failure). Exit status is
 * the number of failed checks (capped), 0 on success.
 */
#include "crypto/crypto.h"
#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

#define NOID "00000000-0000-4000-8000-000000000000"

static struct fx fx;
static struct crypto_keyring *ring;
static char ta[CP_UUID_LEN + 1], tb[CP_UUID_LEN + 1];
static char w1[CP_UUID_LEN + 1], w2[CP_UUID_LEN + 1];

/* Create webhook id of tenant subscribed to events (taken), secret sealed. */
static cp_rc hook_create(const char *tenant, char id[CP_UUID_LEN + 1], const char *url,
			 json_t *events, json_t **out)
{
	char aad[64], *sealed = NULL;
	cp_rc rc;

	cp_uuid(id);
	snprintf(aad, sizeof(aad), "webhooks:%s", id);
	rc = crypto_seal(ring, aad, "whsec_x", 7, &sealed);
	if (rc == CP_OK)
		rc = db_webhook_create(fx.db, tenant, id, url, events, "desc", sealed, out);
	free(sealed);
	json_decref(events);
	return rc;
}

static int64_t deliveries_of(const char *webhook_id)
{
	char *sql = cp_aprintf("SELECT count(*) FROM webhook_deliveries WHERE webhook_id = '%s'",
			       webhook_id);
	int64_t n = sql ? fx_int(fx.db, sql) : -1;

	free(sql);
	return n;
}

static void test_endpoints(void)
{
	struct db *db = fx.db;
	json_t *w = NULL, *ev;
	struct db_list l = { 0 };
	int count = -1;
	char w3[CP_UUID_LEN + 1];

	CHECK_RC(hook_create(ta, w1, "https://hooks.a.test/1", json_pack("[s]", "*"), &w), CP_OK);
	CHECK(!strcmp(fx_str(w, "id"), w1) && !strcmp(fx_str(w, "url"), "https://hooks.a.test/1"));
	CHECK(!strcmp(fx_str(w, "description"), "desc") &&
	      json_is_true(json_object_get(w, "enabled")));
	CHECK(json_is_null(json_object_get(w, "disabled_reason")));
	CHECK(json_object_get(w, "secret") == NULL);
	json_decref(w);
	w = NULL;
	CHECK_RC(hook_create(ta, w2, "https://hooks.a.test/2", json_pack("[s]", "property.created"),
			     &w),
		 CP_OK);
	json_decref(w);
	w = NULL;
	/* The same id again breaks the primary key. */
	ev = json_array();
	CHECK_RC(db_webhook_create(db, tb, w1, "https://b.test/", ev, NULL, "s", &w),
		 CP_ERR_CONFLICT);
	json_decref(ev);
	CHECK(w == NULL);

	CHECK_RC(db_webhook_count(db, ta, &count), CP_OK);
	CHECK(count == 2);
	CHECK_RC(db_webhook_count(db, tb, &count), CP_OK);
	CHECK(count == 0);

	CHECK_RC(db_webhook_get(db, ta, w2, &w), CP_OK);
	CHECK(!strcmp(fx_str(w, "id"), w2));
	CHECK(!strcmp(json_string_value(json_array_get(json_object_get(w, "events"), 0)),
		      "property.created"));
	json_decref(w);
	w = NULL;
	CHECK_RC(db_webhook_get(db, tb, w2, &w), CP_ERR_NOT_FOUND);

	CHECK_RC(db_webhook_list(db, ta, (struct db_page){ .limit = 1 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 1 && l.next > 0);
	CHECK(!strcmp(fx_str(json_array_get(l.data, 0), "id"), w1));
	fx_list_clear(&l);
	CHECK_RC(db_webhook_list(db, tb, (struct db_page){ .limit = 10 }, &l), CP_OK);
	CHECK(json_array_size(l.data) == 0);
	fx_list_clear(&l);

	/* Update: NULL / -1 keep a field; disabling gives a reason, enabling clears it. */
	ev = json_pack("[ss]", "property.created", "property.deleted");
	CHECK_RC(db_webhook_update(db, ta, w2,
				   &(struct db_webhook_patch){ .events = ev, .enabled = 0 }, &w),
		 CP_OK);
	CHECK(json_array_size(json_object_get(w, "events")) == 2);
	CHECK(!strcmp(fx_str(w, "url"), "https://hooks.a.test/2"));
	CHECK(json_is_false(json_object_get(w, "enabled")));
	CHECK(strlen(fx_str(w, "disabled_reason")) > 0);
	json_decref(w);
	w = NULL;
	CHECK_RC(db_webhook_update(db, ta, w2,
				   &(struct db_webhook_patch){ .url = "https://hooks.a.test/2b",
							       .description = "new",
							       .enabled = 1 },
				   &w),
		 CP_OK);
	CHECK(!strcmp(fx_str(w, "url"), "https://hooks.a.test/2b"));
	CHECK(!strcmp(fx_str(w, "description"), "new"));
	CHECK(json_is_true(json_object_get(w, "enabled")));
	CHECK(json_is_null(json_object_get(w, "disabled_reason")));
	CHECK(json_array_size(json_object_get(w, "events")) == 2);
	json_decref(w);
	w = NULL;
	CHECK_RC(db_webhook_update(db, tb, w2, &(struct db_webhook_patch){ .enabled = 0 }, &w),
		 CP_ERR_NOT_FOUND);
	json_decref(ev);

	/* Delete: scoped; takes deliveries with it. */
	CHECK_RC(hook_create(ta, w3, "https://hooks.a.test/3", json_pack("[s]", "*"), &w), CP_OK);
	json_decref(w);
	w = NULL;
	CHECK_RC(db_event_add(db, ta, "cert.x", NULL, NULL), CP_OK);
	CHECK(deliveries_of(w3) == 1);
	CHECK_RC(db_webhook_delete(db, tb, w3), CP_ERR_NOT_FOUND);
	CHECK_RC(db_webhook_delete(db, ta, w3), CP_OK);
	CHECK_RC(db_webhook_delete(db, ta, w3), CP_ERR_NOT_FOUND);
	CHECK(deliveries_of(w3) == 0);
	CHECK(fx_sql(db, "DELETE FROM webhook_deliveries; DELETE FROM jobs"));

	fx_fail(db, true);
	CHECK_RC(db_webhook_create(db, ta, w3, "https://x.test/", NULL, NULL, "s", &w),
		 CP_ERR_INTERNAL);
	CHECK_RC(db_webhook_count(db, ta, &count), CP_ERR_INTERNAL);
	CHECK_RC(db_webhook_get(db, ta, w1, &w), CP_ERR_INTERNAL);
	CHECK_RC(db_webhook_list(db, ta, (struct db_page){ .limit = 1 }, &l), CP_ERR_INTERNAL);
	CHECK_RC(db_webhook_update(db, ta, w1, &(struct db_webhook_patch){ .enabled = -1 }, &w),
		 CP_ERR_INTERNAL);
	CHECK_RC(db_webhook_delete(db, ta, w1), CP_ERR_INTERNAL);
	fx_fail(db, false);
	CHECK(w == NULL && l.data == NULL);
}

static void test_deliveries(void)
{
	struct db *db = fx.db;
	char eid[CP_UUID_LEN + 1], did[CP_UUID_LEN + 1];
	json_t *data = json_pack("{s:s}", "k", "v"), *d = NULL;
	struct db_list l = { 0 };
	struct db_webhook_attempt a = { .outcome = DB_WEBHOOK_RETRY,
					.status_code = 500,
					.latency_ms = 12,
					.error = "HTTP 500" };
	bool disabled = true;
	const json_t *row;

	/* Fan-out: w1 ("*") and w2 (property.created) get property.created;
	 * only w1 gets another type; webhook.test goes nowhere. */
	CHECK_RC(db_event_add(db, ta, "property.created", data, eid), CP_OK);
	CHECK(deliveries_of(w1) == 1 && deliveries_of(w2) == 1);
	CHECK_RC(db_event_add(db, ta, "certificate.issued", data, NULL), CP_OK);
	CHECK(deliveries_of(w1) == 2 && deliveries_of(w2) == 1);
	CHECK_RC(db_webhook_fanout(db, ta, eid, "webhook.test"), CP_OK);
	CHECK(deliveries_of(w1) == 2);
	CHECK_RC(db_event_add(db, tb, "property.created", data, NULL), CP_OK); /* not ta's hooks */
	CHECK(deliveries_of(w1) == 2 && deliveries_of(w2) == 1);
	json_decref(data);

	/* Deliver to one endpoint (a test event, never fanned out); only the
	 * tenant's own, once per event. */
	CHECK_RC(db_webhook_deliver_to(db, ta, w1, eid, "property.created", did), CP_ERR_CONFLICT);
	CHECK_RC(db_event_add(db, ta, "webhook.test", NULL, eid), CP_OK);
	CHECK(deliveries_of(w1) == 2);
	CHECK_RC(db_webhook_deliver_to(db, ta, w1, eid, "webhook.test", did), CP_OK);
	CHECK(cp_uuid_valid(did) && deliveries_of(w1) == 3);
	CHECK_RC(db_webhook_deliver_to(db, tb, w1, eid, "property.created", NULL),
		 CP_ERR_NOT_FOUND);
	CHECK_RC(db_webhook_deliver_to(db, ta, NOID, eid, "property.created", NULL),
		 CP_ERR_NOT_FOUND);

	CHECK_RC(db_webhook_delivery_load(db, did, &d), CP_OK);
	CHECK(!strcmp(fx_str(d, "delivery_id"), did) && !strcmp(fx_str(d, "webhook_id"), w1));
	CHECK(!strcmp(fx_str(d, "tenant_id"), ta) && !strcmp(fx_str(d, "event_id"), eid));
	CHECK(!strcmp(fx_str(d, "state"), "pending"));
	CHECK(!strcmp(fx_str(d, "url"), "https://hooks.a.test/1"));
	CHECK(json_is_true(json_object_get(d, "enabled")));
	CHECK(!strncmp(fx_str(d, "secret"), "cpk1:", 5));
	CHECK(!strcmp(fx_str(json_object_get(d, "body"), "type"), "webhook.test"));
	CHECK(!strcmp(fx_str(json_object_get(d, "body"), "id"), eid));
	json_decref(d);
	d = NULL;
	CHECK_RC(db_webhook_delivery_load(db, NOID, &d), CP_ERR_NOT_FOUND);

	/* A retry, then delivered; a settled delivery is left alone. */
	a.next_attempt_at = cp_now() + 60;
	CHECK_RC(db_webhook_attempt_record(db, did, &a, &disabled), CP_OK);
	CHECK(!disabled);
	CHECK_RC(db_webhook_deliveries(db, ta, w1, "pending", (struct db_page){ .limit = 10 }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 3);
	row = json_array_get(l.data, 2);
	CHECK(!strcmp(fx_str(row, "id"), did) && !strcmp(fx_str(row, "last_error"), "HTTP 500"));
	CHECK(json_array_size(json_object_get(row, "attempts")) == 1);
	CHECK(json_integer_value(json_object_get(
		      json_array_get(json_object_get(row, "attempts"), 0), "status_code")) == 500);
	fx_list_clear(&l);
	a = (struct db_webhook_attempt){ .outcome = DB_WEBHOOK_DELIVERED, .status_code = 204 };
	CHECK_RC(db_webhook_attempt_record(db, did, &a, &disabled), CP_OK);
	CHECK_RC(db_webhook_attempt_record(db, did, &a, &disabled), CP_OK);  /* settled: no-op */
	CHECK_RC(db_webhook_attempt_record(db, NOID, &a, &disabled), CP_OK); /* gone: no-op */
	CHECK_RC(
		db_webhook_deliveries(db, ta, w1, "delivered", (struct db_page){ .limit = 10 }, &l),
		CP_OK);
	CHECK(json_array_size(l.data) == 1);
	CHECK(json_array_size(json_object_get(json_array_get(l.data, 0), "attempts")) == 2);
	fx_list_clear(&l);
	CHECK_RC(db_webhook_deliveries(db, tb, w1, NULL, (struct db_page){ .limit = 10 }, &l),
		 CP_OK);
	CHECK(json_array_size(l.data) == 0);
	fx_list_clear(&l);

	/* Disabling: the second failed delivery in a row with a policy of 2. */
	CHECK(fx_sql(db, "UPDATE webhook_deliveries SET state = 'pending'"));
	a = (struct db_webhook_attempt){ .outcome = DB_WEBHOOK_FAILED,
					 .error = "refused",
					 .disable_after_failed = 2 };
	{
		struct db_list p = { 0 };
		CHECK_RC(db_webhook_deliveries(db, ta, w1, "pending",
					       (struct db_page){ .limit = 10 }, &p),
			 CP_OK);
		CHECK(json_array_size(p.data) == 3);
		CHECK_RC(db_webhook_attempt_record(db, fx_str(json_array_get(p.data, 0), "id"), &a,
						   &disabled),
			 CP_OK);
		CHECK(!disabled);
		CHECK_RC(db_webhook_attempt_record(db, fx_str(json_array_get(p.data, 1), "id"), &a,
						   &disabled),
			 CP_OK);
		CHECK(disabled);
		fx_list_clear(&p);
	}
	CHECK_RC(db_webhook_get(db, ta, w1, &d), CP_OK);
	CHECK(json_is_false(json_object_get(d, "enabled")));
	CHECK(strstr(fx_str(d, "disabled_reason"), "refused") != NULL);
	json_decref(d);
	d = NULL;
	CHECK(fx_int(db, "SELECT count(*) FROM events WHERE type = 'webhook.disabled'") == 1);
	/* Disabled: no longer fanned out to. */
	CHECK_RC(db_event_add(db, ta, "certificate.issued", NULL, NULL), CP_OK);
	CHECK(deliveries_of(w1) == 3);

	/* 410 Gone disables at once. */
	CHECK_RC(db_webhook_deliver_to(db, ta, w2, eid, "webhook.test", did), CP_OK);
	a = (struct db_webhook_attempt){ .outcome = DB_WEBHOOK_GONE, .status_code = 410 };
	CHECK_RC(db_webhook_attempt_record(db, did, &a, &disabled), CP_OK);
	CHECK(disabled);
	CHECK_RC(db_webhook_get(db, ta, w2, &d), CP_OK);
	CHECK(json_is_false(json_object_get(d, "enabled")));
	json_decref(d);
	d = NULL;

	fx_fail(db, true);
	CHECK_RC(db_webhook_deliver_to(db, ta, w1, eid, "x", NULL), CP_ERR_INTERNAL);
	CHECK_RC(db_webhook_fanout(db, ta, eid, "x"), CP_ERR_INTERNAL);
	CHECK_RC(db_webhook_delivery_load(db, did, &d), CP_ERR_INTERNAL);
	CHECK_RC(db_webhook_deliveries(db, ta, w1, NULL, (struct db_page){ .limit = 10 }, &l),
		 CP_ERR_INTERNAL);
	CHECK(db_webhook_attempt_record(db, did, &a, &disabled) != CP_OK);
	CHECK(!disabled);
	fx_fail(db, false);
	CHECK(d == NULL && l.data == NULL);
}

static void test_secrets(void)
{
	struct db *db = fx.db;
	int64_t stale = -1;
	int count = -1;

	/* Everything under the current key: nothing stale. */
	CHECK_RC(db_secrets_count_stale(db, ring, &stale), CP_OK);
	CHECK(stale == 0);
	CHECK_RC(db_secrets_reseal(db, ring, &count), CP_OK);
	CHECK(count == 0);
	/* A new current key: the two webhook secrets are stale until re-sealed. */
	CHECK_RC(crypto_keyring_rotate(ring, fx.dir), CP_OK);
	CHECK_RC(db_secrets_count_stale(db, ring, &stale), CP_OK);
	CHECK(stale == 2);
	fx_fail(db, true);
	CHECK(db_secrets_reseal(db, ring, &count) != CP_OK);
	CHECK(db_secrets_count_stale(db, ring, &stale) != CP_OK);
	fx_fail(db, false);
	CHECK_RC(db_secrets_count_stale(db, ring, &stale), CP_OK);
	CHECK(stale == 2); /* the failed re-seal changed nothing */
	CHECK_RC(db_secrets_reseal(db, ring, &count), CP_OK);
	CHECK(count == 2);
	CHECK_RC(db_secrets_count_stale(db, ring, &stale), CP_OK);
	CHECK(stale == 0);
	{
		json_t *d = NULL;
		struct db_list l = { 0 };
		char *pt = NULL, aad[64];
		size_t n = 0;
		CHECK_RC(
			db_webhook_deliveries(db, ta, w2, NULL, (struct db_page){ .limit = 1 }, &l),
			CP_OK);
		CHECK_RC(db_webhook_delivery_load(db, fx_str(json_array_get(l.data, 0), "id"), &d),
			 CP_OK);
		snprintf(aad, sizeof(aad), "webhooks:%s", w2);
		CHECK_RC(crypto_open(ring, aad, fx_str(d, "secret"), &pt, &n), CP_OK);
		CHECK(pt && n == 7 && !memcmp(pt, "whsec_x", 7));
		crypto_wipe_free(pt);
		json_decref(d);
		fx_list_clear(&l);
	}
	/* The whole rotation: re-sealed, nothing left, old keys pruned. */
	CHECK_RC(db_secrets_rotate(db, ring, fx.dir, &count, &stale), CP_OK);
	CHECK(count == 2 && stale == 0);
	fx_fail(db, true);
	CHECK(db_secrets_rotate(db, ring, fx.dir, &count, &stale) != CP_OK);
	fx_fail(db, false);
	CHECK(stale != 0); /* not counted, or some left: the old keys are kept */
	CHECK_RC(db_secrets_count_stale(db, ring, &stale), CP_OK);
	CHECK(stale == 2); /* under the key before the failed rotation, which still opens them */
	CHECK_RC(db_secrets_reseal(db, ring, &count), CP_OK);
	CHECK(count == 2);
}

/* Redelivery re-opens a settled delivery of the tenant's endpoint (a new
 * attempt of the same event); rotation keeps the old secret signing during
 * the overlap, sealed like the current one and re-sealed with it. */
static void test_redeliver_rotate(void)
{
	struct db *db = fx.db;
	char eid[CP_UUID_LEN + 1], did[CP_UUID_LEN + 1], got[CP_UUID_LEN + 1], aad[64];
	struct db_webhook_attempt a = { .outcome = DB_WEBHOOK_DELIVERED, .status_code = 200 };
	json_t *d = NULL, *w = NULL;
	char *sealed = NULL, *pt = NULL, *sql = NULL;
	size_t n = 0;
	bool disabled = false;
	int count = -1;
	int64_t stale = -1, jobs;

	CHECK_RC(db_event_add(db, ta, "webhook.test", NULL, eid), CP_OK);
	CHECK_RC(db_webhook_deliver_to(db, ta, w1, eid, "webhook.test", did), CP_OK);
	CHECK_RC(db_webhook_redeliver(db, ta, w1, did, got), CP_ERR_CONFLICT); /* pending */
	CHECK_RC(db_webhook_attempt_record(db, did, &a, &disabled), CP_OK);
	CHECK_RC(db_webhook_redeliver(db, tb, w1, did, got), CP_ERR_NOT_FOUND);
	CHECK_RC(db_webhook_redeliver(db, ta, w2, did, got), CP_ERR_NOT_FOUND);
	CHECK_RC(db_webhook_redeliver(db, ta, w1, NOID, got), CP_ERR_NOT_FOUND);
	/* The payload's text holds the delivery id (a UUID: no other job's
	 * does); no json_extract, which PostgreSQL lacks. */
	sql = cp_aprintf("SELECT count(*) FROM jobs WHERE kind = 'webhook_delivery' AND "
			 "payload LIKE '%%\"%s\"%%'",
			 did);
	jobs = sql ? fx_int(db, sql) : -1;
	CHECK_RC(db_webhook_redeliver(db, ta, w1, did, got), CP_OK);
	CHECK(!strcmp(got, eid));
	CHECK(sql && fx_int(db, sql) == jobs + 1);
	free(sql);
	CHECK_RC(db_webhook_delivery_load(db, did, &d), CP_OK);
	CHECK(!strcmp(fx_str(d, "state"), "pending") && !strcmp(fx_str(d, "event_id"), eid));
	CHECK(json_integer_value(json_object_get(d, "attempts")) == 1);
	CHECK(json_integer_value(json_object_get(d, "next_attempt_at")) <= cp_now());
	CHECK(json_is_null(json_object_get(d, "previous_secret")));
	json_decref(d);
	d = NULL;
	CHECK_RC(db_webhook_redeliver(db, ta, w1, did, got), CP_ERR_CONFLICT); /* once */

	/* Rotate w1 with an overlap: both secrets load; another tenant: 404. */
	snprintf(aad, sizeof(aad), "webhooks:%s", w1);
	CHECK_RC(crypto_seal(ring, aad, "whsec_new", 9, &sealed), CP_OK);
	CHECK_RC(db_webhook_rotate_secret(db, tb, w1, sealed, cp_now() + 60, &w), CP_ERR_NOT_FOUND);
	CHECK_RC(db_webhook_rotate_secret(db, ta, w1, sealed, cp_now() + 60, &w), CP_OK);
	CHECK(!strcmp(fx_str(w, "id"), w1) && json_object_get(w, "secret") == NULL);
	json_decref(w);
	w = NULL;
	CHECK_RC(db_webhook_delivery_load(db, did, &d), CP_OK);
	CHECK_RC(crypto_open(ring, aad, fx_str(d, "secret"), &pt, &n), CP_OK);
	CHECK(pt && n == 9 && !memcmp(pt, "whsec_new", 9));
	crypto_wipe_free(pt);
	pt = NULL;
	CHECK_RC(crypto_open(ring, aad, fx_str(d, "previous_secret"), &pt, &n), CP_OK);
	CHECK(pt && n == 7 && !memcmp(pt, "whsec_x", 7));
	crypto_wipe_free(pt);
	pt = NULL;
	json_decref(d);
	d = NULL;
	/* A master-key rotation re-seals the previous secret too (3 = w1's two
	 * and w2's), and it still opens. */
	CHECK_RC(crypto_keyring_rotate(ring, fx.dir), CP_OK);
	CHECK_RC(db_secrets_count_stale(db, ring, &stale), CP_OK);
	CHECK(stale == 3);
	CHECK_RC(db_secrets_reseal(db, ring, &count), CP_OK);
	CHECK(count == 3);
	CHECK_RC(db_webhook_delivery_load(db, did, &d), CP_OK);
	CHECK(crypto_sealed_is_current(ring, fx_str(d, "previous_secret")));
	CHECK_RC(crypto_open(ring, aad, fx_str(d, "previous_secret"), &pt, &n), CP_OK);
	crypto_wipe_free(pt);
	pt = NULL;
	json_decref(d);
	d = NULL;
	/* Past the overlap (or none): only the current secret loads. */
	CHECK(fx_sql(
		db,
		"UPDATE webhooks SET previous_secret_until = 1 WHERE previous_secret IS NOT NULL"));
	CHECK_RC(db_webhook_delivery_load(db, did, &d), CP_OK);
	CHECK(json_is_null(json_object_get(d, "previous_secret")));
	json_decref(d);
	d = NULL;
	CHECK_RC(db_webhook_rotate_secret(db, ta, w1, sealed, 0, &w), CP_OK);
	json_decref(w);
	w = NULL;
	CHECK(fx_int(db, "SELECT count(*) FROM webhooks WHERE previous_secret IS NOT NULL OR "
			 "previous_secret_until IS NOT NULL") == 0);
	fx_fail(db, true);
	CHECK(db_webhook_redeliver(db, ta, w1, did, got) != CP_OK);
	CHECK(db_webhook_rotate_secret(db, ta, w1, sealed, 0, &w) != CP_OK);
	fx_fail(db, false);
	CHECK(w == NULL);
	free(sealed);
}

int main(void)
{
	if (!fx_open(&fx, "test-db-webhooks") || !fx_tenant(fx.db, "a", ta) ||
	    !fx_tenant(fx.db, "b", tb) || crypto_keyring_load(fx.dir, NULL, &ring) != CP_OK) {
		fprintf(stderr, "test_db_webhooks: setup failed\n");
		return 1;
	}
	test_endpoints();
	test_deliveries();
	test_secrets();
	test_redeliver_rotate();
	crypto_keyring_free(ring);
	fx_close(&fx);
	return check_exit("test_db_webhooks");
}
