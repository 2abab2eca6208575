/*
 * test_webhooks.c - unit tests for webhooks: the Standard Webhooks test
 * vector (sign, and verify by recomputing the HMAC independently), the
 * retry schedule parser, and the db side on a temporary database: fan-out
 * by subscription, the disabling policy (consecutive failed deliveries,
 * 410) with its webhook.disabled event, and expiry reminders driven by a
 * fake clock (relative to the lifetime: 1/3, 1/6, 1/30 left; the tightest
 * threshold only, once per version and threshold, expired once).
 *
 * The SSRF guard's tests are test_netpolicy.c's.
 *
 * White-box where it helps: includes db/db_internal.h to insert certificate
 * rows and count rows directly.
 * Exit status is the number of failed checks (capped), 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/hmac.h>

#include "common/common.h"
#include "common/config.h"
#include "crypto/crypto.h"
#include "db/db_internal.h"

#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"
#include <sqlite3.h>

/* ---- Standard Webhooks ---- */

static void test_signature_vector(void)
{
	static const char secret[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
	static const char body[] = "{\"test\": 2432232314}";
	static const char expected[] = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
	char *sig = NULL, *b64 = NULL, *msg = NULL;
	uint8_t *key = NULL, mac[32];
	size_t keylen = 0;
	unsigned int maclen = 0;

	CHECK(crypto_webhook_sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body,
				  strlen(body), &sig) == CP_OK);
	CHECK(sig && strcmp(sig, expected) == 0);
	/* Verify as a receiver would, with OpenSSL directly. */
	CHECK(cp_b64_decode(secret + 6, &key, &keylen) == CP_OK);
	msg = cp_aprintf("%s.%d.%s", "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
	CHECK(key && msg &&
	      HMAC(EVP_sha256(), key, (int)keylen, (const uint8_t *)msg, strlen(msg), mac,
		   &maclen));
	b64 = cp_b64(mac, maclen);
	CHECK(b64 && sig && strlen(sig) > 3 && strcmp(sig + 3, b64) == 0);
	/* A changed body or timestamp no longer verifies. */
	free(sig);
	sig = NULL;
	CHECK(crypto_webhook_sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265331, body,
				  strlen(body), &sig) == CP_OK);
	CHECK(sig && strcmp(sig, expected) != 0);
	free(sig);
	free(b64);
	free(msg);
	free(key);
}

static void test_schedule_parse(void)
{
	int64_t s[CP_SCHEDULE_MAX];
	size_t n;

	CHECK(cp_config_schedule("[0,5,300]", s, CP_SCHEDULE_MAX, &n) == CP_OK && n == 3 &&
	      s[0] == 0 && s[1] == 5 && s[2] == 300);
	CHECK(cp_config_schedule(" 0, 1 ,1 ", s, CP_SCHEDULE_MAX, &n) == CP_OK && n == 3);
	CHECK(cp_config_schedule("[]", s, CP_SCHEDULE_MAX, &n) == CP_ERR_INVALID);
	CHECK(cp_config_schedule("[0,1", s, CP_SCHEDULE_MAX, &n) == CP_ERR_INVALID);
	CHECK(cp_config_schedule("[0,-1]", s, CP_SCHEDULE_MAX, &n) == CP_ERR_INVALID);
	CHECK(cp_config_schedule("[0,604801]", s, CP_SCHEDULE_MAX, &n) == CP_ERR_INVALID);
	CHECK(cp_config_schedule("0,x", s, CP_SCHEDULE_MAX, &n) == CP_ERR_INVALID);
	CHECK(cp_config_schedule("1,2,3", s, 2, &n) == CP_ERR_INVALID);
}

/* ---- db: fan-out, disabling policy, reminders ---- */

static char *make_webhook(struct db *db, const char *tenant, const char *events_json)
{
	char id[CP_UUID_LEN + 1];
	json_t *events = json_loads(events_json, 0, NULL), *row = NULL;
	cp_rc rc;

	cp_uuid(id);
	rc = db_webhook_create(db, tenant, id, "http://127.0.0.1:9/", events, "", "sealed", &row);
	CHECK(rc == CP_OK);
	json_decref(events);
	json_decref(row);
	return cp_strdup(id);
}

/* The id of the oldest pending delivery of webhook w. */
static char *pending_delivery(struct db *db, const char *w)
{
	char *sql = cp_aprintf("SELECT id FROM webhook_deliveries WHERE webhook_id = '%s' "
			       "AND state = 'pending' ORDER BY seq LIMIT 1",
			       w);
	struct db_stmt *st = NULL;
	char *id = NULL;

	if (sql && db_prepare(db, sql, &st) == DB_DONE && db_step(st) == DB_ROW)
		id = cp_strdup(db_col_text(st, 0));
	if (st)
		db_finalize(db, st);
	free(sql);
	return id;
}

static void emit(struct db *db, const char *tenant, const char *type)
{
	json_t *data = json_object();

	CHECK(db_begin(db) == CP_OK);
	CHECK(db_event_add(db, tenant, type, data, NULL) == CP_OK);
	CHECK(db_commit(db) == CP_OK);
	json_decref(data);
}

static void test_fanout_and_policy(struct db *db, const char *tenant)
{
	char *all = make_webhook(db, tenant, "[\"*\"]");
	char *issued = make_webhook(db, tenant, "[\"certificate.issued\"]");
	char *other = make_webhook(db, tenant, "[\"order.failed\"]");
	struct db_webhook_attempt a = { .disable_after_failed = 5,
					.disable_after_seconds = 3 * 86400 };
	bool disabled = false;
	char sql[256];

	emit(db, tenant, "certificate.issued");
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = '%s'", all);
	CHECK(fx_int(db, sql) == 1);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = '%s'", issued);
	CHECK(fx_int(db, sql) == 1);
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = '%s'", other);
	CHECK(fx_int(db, sql) == 0);
	CHECK(fx_int(db, "SELECT count(*) FROM jobs WHERE kind = 'webhook_delivery'") == 2);
	/* Test events are never fanned out. */
	emit(db, tenant, "webhook.test");
	CHECK(fx_int(db, "SELECT count(*) FROM webhook_deliveries") == 2);

	/* Five deliveries to "issued" fail for good: it is disabled on the
	 * fifth, with a webhook.disabled event fanned out to "*" only. */
	for (int i = 0; i < 5; i++) {
		char *d;
		if (i > 0)
			emit(db, tenant, "certificate.issued");
		d = pending_delivery(db, issued);
		CHECK(d != NULL);
		a.outcome = DB_WEBHOOK_RETRY;
		a.error = "HTTP 500";
		a.status_code = 500;
		a.next_attempt_at = cp_now() + 5;
		CHECK(db_webhook_attempt_record(db, d, &a, &disabled) == CP_OK && !disabled);
		a.outcome = DB_WEBHOOK_FAILED;
		CHECK(db_webhook_attempt_record(db, d, &a, &disabled) == CP_OK);
		CHECK(disabled == (i == 4));
		/* A settled delivery is never recorded again. */
		a.outcome = DB_WEBHOOK_DELIVERED;
		CHECK(db_webhook_attempt_record(db, d, &a, &disabled) == CP_OK && !disabled);
		free(d);
	}
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM webhooks WHERE id = '%s' AND enabled = 0 "
		 "AND disabled_reason LIKE '5 consecutive deliveries failed%%'",
		 issued);
	CHECK(fx_int(db, sql) == 1);
	CHECK(fx_int(db, "SELECT count(*) FROM events WHERE type = 'webhook.disabled'") == 1);
	CHECK(fx_int(db, "SELECT count(*) FROM webhook_deliveries WHERE event_type = "
			 "'webhook.disabled'") == 1);
	CHECK(fx_int(db, "SELECT count(*) FROM webhook_attempts") == 10);

	/* 410 disables at once. */
	{
		char *d = pending_delivery(db, all);
		CHECK(d != NULL);
		a.outcome = DB_WEBHOOK_GONE;
		a.status_code = 410;
		a.error = "HTTP 410";
		CHECK(db_webhook_attempt_record(db, d, &a, &disabled) == CP_OK && disabled);
		free(d);
	}
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM webhooks WHERE id = '%s' AND enabled = 0 "
		 "AND disabled_reason LIKE '%%410%%'",
		 all);
	CHECK(fx_int(db, sql) == 1);

	/* Re-enabling clears the reason and the counters. */
	{
		struct db_webhook_patch p = { .enabled = 1 };
		json_t *row = NULL;
		CHECK(db_webhook_update(db, tenant, issued, &p, &row) == CP_OK);
		CHECK(json_is_true(json_object_get(row, "enabled")) &&
		      json_is_null(json_object_get(row, "disabled_reason")));
		json_decref(row);
	}
	free(all);
	free(issued);
	free(other);
}

static void add_cert(struct db *db, const char *tenant, const char *id, int64_t not_before,
		     int64_t not_after, int version)
{
	char vid[CP_UUID_LEN + 1];
	char *sql;

	cp_uuid(vid);
	sql = cp_aprintf(
		"INSERT INTO certificates (id, tenant_id, name, source, status, version, "
		"metadata, created_at, updated_at) VALUES ('%s', '%s', 'c-%s', 'upload', 'active', "
		"%d, '{\"team\":\"x\"}', 0, 0) ON CONFLICT (id) DO NOTHING;"
		"UPDATE certificates SET version = %d WHERE id = '%s';"
		"INSERT INTO certificate_versions (id, certificate_id, tenant_id, version, cert_pem, "
		"private_key, key_type, sans, issuer, serial, not_before, not_after, "
		"fingerprint_sha256, created_at) VALUES ('%s', '%s', '%s', %d, "
		"'pem', 'sealed', 'ecdsa-p256', '[\"a.example\"]', 'CN=x', '01', %lld, %lld, 'fp', "
		"0);",
		id, tenant, id, version, version, id, vid, id, tenant, version,
		(long long)not_before, (long long)not_after);

	CHECK(sql && db_exec(db, sql) == CP_OK);
	free(sql);
}

/* Events about cert: threshold 1/den (den > 0), expired (0) or all (-1). */
static int64_t reminders(struct db *db, const char *cert, int den)
{
	char sql[320];

	/* The event's certificate_id column (its data's); the threshold in
	 * the payload's compact text (no json_extract on PostgreSQL). */
	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM events WHERE certificate_id = '%s' AND (%d < 0 OR "
		 "payload LIKE '%%\"threshold\":\"1/%d\"%%' "
		 "OR (%d = 0 AND type = 'certificate.expired'))",
		 cert, den, den, den);
	return fx_int(db, sql);
}

/* The certificate.expiring events whose data echo the metadata and SANs
 * (team x, a.example first) and, with threshold, the 1/3 of a 90-day
 * lifetime (30 days), parsed here (no json_extract on PostgreSQL). */
static int64_t expiring_count(struct db *db, bool threshold)
{
	static const char sql[] = "SELECT payload FROM events WHERE type = 'certificate.expiring'";
	struct db_stmt *st = NULL;
	int64_t n = 0;

	if (db_prepare(db, sql, &st) != DB_DONE)
		return -1;
	while (db_step(st) == DB_ROW) {
		json_t *p = json_loads(db_col_text(st, 0), 0, NULL);
		json_t *d = json_object_get(p, "data");
		const char *san = json_string_value(json_array_get(json_object_get(d, "sans"), 0));
		bool echoed = !strcmp(fx_str(json_object_get(d, "metadata"), "team"), "x") && san &&
			      !strcmp(san, "a.example");
		bool third =
			!strcmp(fx_str(d, "threshold"), "1/3") &&
			json_integer_value(json_object_get(d, "threshold_seconds")) == 30 * 86400 &&
			json_integer_value(json_object_get(d, "threshold_days")) == 30;
		n += threshold ? third : echoed;
		json_decref(p);
	}
	db_finalize(db, st);
	return n;
}

/* Reminders relative to the lifetime (lifecycle_reminder): 1/3, 1/6, 1/30
 * of it left, then expired; the tightest crossed only, once each. */
static void test_reminders(struct db *db, const char *tenant)
{
	int64_t now = 1800000000, day = 86400;
	const char *c29 = "00000000-0000-4000-8000-000000000029";
	const char *c13 = "00000000-0000-4000-8000-000000000013";
	const char *c2 = "00000000-0000-4000-8000-000000000002";
	const char *c6 = "00000000-0000-4000-8000-000000000006";
	const char *c90 = "00000000-0000-4000-8000-000000000090";
	int sent = 0;

	/* 90-day certificates with 29, 13, 2 and 60 days left; a fresh 6-day one. */
	add_cert(db, tenant, c29, now - 61 * day, now + 29 * day, 1);
	add_cert(db, tenant, c13, now - 77 * day, now + 13 * day, 1);
	add_cert(db, tenant, c2, now - 88 * day, now + 2 * day, 1);
	add_cert(db, tenant, c90, now - 30 * day, now + 60 * day, 1);
	add_cert(db, tenant, c6, now, now + 6 * day, 1);
	for (int i = 0; i < 3; i++)
		CHECK(db_cert_reminders_run(db, now + i * 60, 64, &sent) == CP_OK &&
		      sent == (i == 0 ? 3 : 0));
	CHECK(reminders(db, c29, 3) == 1 && reminders(db, c29, -1) == 1);
	CHECK(reminders(db, c13, 6) == 1 && reminders(db, c13, -1) == 1);
	CHECK(reminders(db, c2, 30) == 1 && reminders(db, c2, -1) == 1);
	CHECK(reminders(db, c90, -1) == 0);
	/* No 30-day warning for a 6-day certificate at issuance. */
	CHECK(reminders(db, c6, -1) == 0);
	/* Metadata, facts and the threshold are echoed. */
	CHECK(expiring_count(db, false) == 3);
	CHECK(expiring_count(db, true) == 1);

	/* The 6-day certificate: 1/3 at 2 days left (c2 has expired by then),
	 * 1/6 at 1 day, 1/30 at 4.8 hours, then expired. */
	CHECK(db_cert_reminders_run(db, now + 4 * day, 64, &sent) == CP_OK && sent == 2);
	CHECK(reminders(db, c6, 3) == 1 && reminders(db, c2, 0) == 1);
	CHECK(db_cert_reminders_run(db, now + 5 * day, 64, &sent) == CP_OK && sent == 1);
	CHECK(reminders(db, c6, 6) == 1);
	CHECK(db_cert_reminders_run(db, now + 5 * day + 19 * 3600, 64, &sent) == CP_OK &&
	      sent == 0);
	CHECK(db_cert_reminders_run(db, now + 5 * day + 20 * 3600, 64, &sent) == CP_OK &&
	      sent == 1);
	CHECK(reminders(db, c6, 30) == 1);
	CHECK(db_cert_reminders_run(db, now + 6 * day + 1, 64, &sent) == CP_OK && sent == 1);
	CHECK(reminders(db, c6, 0) == 1 && reminders(db, c6, -1) == 4);
	CHECK(db_cert_reminders_run(db, now + 6 * day + 2, 64, &sent) == CP_OK && sent == 0);
	CHECK(reminders(db, c29, -1) == 1 && reminders(db, c13, -1) == 1);

	/* A renewal (version 2) starts the reminders afresh. */
	add_cert(db, tenant, c6, now + 6 * day, now + 12 * day, 2);
	CHECK(db_cert_reminders_run(db, now + 6 * day + 3, 64, &sent) == CP_OK && sent == 0);
	/* ... and c13, with 3 days of 90 left, crosses 1/30. */
	CHECK(db_cert_reminders_run(db, now + 10 * day, 64, &sent) == CP_OK && sent == 2);
	CHECK(reminders(db, c6, 3) == 2 && reminders(db, c13, 30) == 1);
}

static void test_db(void)
{
	/* the fixture's database: a file, or PostgreSQL (CERTPLANE_TEST_DB) */
	struct fx fx = { 0 };
	json_t *tenant = NULL;
	const char *tid;

	CHECK(fx_open(&fx, "webhooks"));
	CHECK(fx.db && db_tenant_create(fx.db, "t", &tenant) == CP_OK);
	tid = json_string_value(json_object_get(tenant, "id"));
	if (tid) {
		test_fanout_and_policy(fx.db, tid);
		test_reminders(fx.db, tid);
	}
	json_decref(tenant);
	fx_close(&fx);
}

int main(void)
{
	cp_log_set_level(CP_LOG_ERROR);
	test_signature_vector();
	test_schedule_parse();
	test_db();
	return check_exit("test_webhooks");
}
