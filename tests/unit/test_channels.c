/*
 * test_channels.c - unit tests for notification channels beyond webhooks
 * (issue 14): the email address rule (cp_email_valid) over a table of
 * addresses, the message text (server_channel_message: no CR or LF from
 * event data in the subject or inside a body line, the reason and the
 * hostnames named), and the db side on the fixture's database (either
 * backend): the fan-out skips an unverified address and reaches it once
 * verified, a Slack channel at once, tenant B's events reach none of A's
 * channels, and the /v1/webhooks reads never show a channel.
 * Exit status is the number of failed checks (capped), 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/common.h"
#include "db/db_internal.h"
#include "server/server_internal.h"

#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

/* ---- the address rule ---- */

static void test_email_rule(void)
{
	static const struct {
		const char *addr;
		bool ok;
	} cases[] = {
		{ "ops@example.com", true },
		{ "first.last+tag@sub.example.co.uk", true },
		{ "o'neil!#$%&*/=?^_`{|}~-@example.test", true },
		{ "x@xn--bcher-kva.example", true },
		{ "", false },
		{ "no-at-sign", false },
		{ "@example.com", false },
		{ "a@", false },
		{ "a@b", false }, /* one label */
		{ "a@@example.com", false },
		{ "a@b@example.com", false },
		{ ".a@example.com", false },
		{ "a.@example.com", false },
		{ "a..b@example.com", false },
		{ "a b@example.com", false },
		{ "\"quoted\"@example.com", false }, /* no quoted local parts */
		{ "a@Example.com", false },	     /* the domain as a lowercase hostname */
		{ "a@example.com\r\nBcc: victim@example.com", false },
		{ "a\n@example.com", false },
		{ "<a@example.com>", false },
		{ "a@example.com>", false },
		{ "a@*.example.com", false },
		{ "a@192.168.1.1", false },
	};
	char long_local[80], long_addr[300];
	const char *why;

	for (size_t i = 0; i < CP_ARRAY_LEN(cases); i++) {
		why = "unset";
		bool got = cp_email_valid(cases[i].addr, &why);
		if (got != cases[i].ok)
			fprintf(stderr, "cp_email_valid(\"%s\") = %d\n", cases[i].addr, got);
		CHECK(got == cases[i].ok);
		CHECK(got ? why == NULL : why != NULL && *why);
	}
	CHECK(!cp_email_valid(NULL, &why));
	memset(long_local, 'a', 65);
	snprintf(long_local + 65, sizeof(long_local) - 65, "@example.com");
	CHECK(!cp_email_valid(long_local, &why)); /* 65-byte local part */
	memset(long_addr, 'b', 64);
	snprintf(long_addr + 64, sizeof(long_addr) - 64, "@%s.example.com",
		 "c123456789012345678901234567890123456789012345678901234567890."
		 "c123456789012345678901234567890123456789012345678901234567890."
		 "c123456789012345678901234567890123456789012345678901234567890");
	CHECK(strlen(long_addr) > 254 && !cp_email_valid(long_addr, &why));
}

/* ---- the message text ---- */

/* No CR or LF inside any line of text, every line ends in CRLF. */
static bool lines_clean(const char *text)
{
	for (const char *p = text; *p; p++) {
		if (*p == '\r' && p[1] != '\n')
			return false;
		if (*p == '\n' && (p == text || p[-1] != '\r'))
			return false;
	}
	return strlen(text) >= 2 && strcmp(text + strlen(text) - 2, "\r\n") == 0;
}

static void test_message(void)
{
	struct api_ctx ctx = { 0 };
	char *subject = NULL, *body = NULL;
	json_t *d = json_pack(
		"{s:s,s:s,s:s,s:{s:s,s:s,s:s,s:{s:s,s:[s,s],s:s,s:s,s:s}}}", "delivery_id", "d1",
		"webhook_id", "c1", "event_type", "certificate.renewal_failed", "body", "id", "e1",
		"type", "certificate.renewal_failed", "timestamp", "2026-12-02T06:00:00Z", "data",
		"certificate_id", "cert-1", "identifiers", "shop.example.com",
		"evil.example.com\r\nBcc: victim@example.com", "reason", "dns_not_pointed_to_edge",
		"detail", "line one\r\n.\r\nRCPT TO:<x@example.com>\nend", "next_attempt_at",
		"2026-12-02T06:10:00Z");

	CHECK(d != NULL);
	CHECK_RC(server_channel_message(&ctx, d, &subject, &body), CP_OK);
	if (subject && body) {
		CHECK(!strchr(subject, '\r') && !strchr(subject, '\n'));
		CHECK(strstr(subject, "certificate.renewal_failed") != NULL);
		CHECK(strstr(subject, "shop.example.com") != NULL);
		for (const unsigned char *p = (const unsigned char *)subject; *p; p++)
			CHECK(*p >= 0x20 && *p < 0x7f);
		CHECK(lines_clean(body));
		CHECK(strstr(body, "\r\nReason: dns_not_pointed_to_edge\r\n") != NULL);
		CHECK(strstr(body, "\r\nCertificate: cert-1\r\n") != NULL);
		CHECK(strstr(body, "\r\nNext attempt: 2026-12-02T06:10:00Z\r\n") != NULL);
		/* The injected line breaks became spaces, inside their lines. */
		CHECK(strstr(body, "\r\nBcc:") == NULL && strstr(body, "\r\nRCPT") == NULL);
		CHECK(strstr(body, "\r\n.\r\n") == NULL);
	}
	free(subject);
	free(body);
	json_decref(d);
}

/* ---- the db side ---- */

static int deliveries_of(struct db *db, const char *id)
{
	char sql[200];

	snprintf(sql, sizeof(sql),
		 "SELECT count(*) FROM webhook_deliveries WHERE webhook_id = '%s'", id);
	return fx_int(db, sql);
}

/* The first pending delivery of endpoint w; new string or NULL. */
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

static void test_db(void)
{
	struct fx fx = { 0 };
	json_t *ta = NULL, *tb = NULL, *row = NULL, *events = json_pack("[s]", "*");
	const char *a, *b;
	char email[CP_UUID_LEN + 1], slack[CP_UUID_LEN + 1], *sealed = NULL;
	bool verified = true;
	int n = -1;

	CHECK(fx_open(&fx, "channels"));
	CHECK(fx.db && db_tenant_create(fx.db, "a", &ta) == CP_OK);
	CHECK(fx.db && db_tenant_create(fx.db, "b", &tb) == CP_OK);
	a = json_string_value(json_object_get(ta, "id"));
	b = json_string_value(json_object_get(tb, "id"));
	if (!a || !b)
		goto out;
	cp_uuid(email);
	cp_uuid(slack);
	CHECK_RC(db_channel_create(fx.db, a, email, "email", "ops@example.com", events, "sealed",
				   &row),
		 CP_OK);
	CHECK(json_is_false(json_object_get(row, "verified")));
	CHECK(!json_object_get(row, "secret") && !json_object_get(row, "url"));
	json_decref(row);
	row = NULL;
	CHECK_RC(db_channel_create(fx.db, a, slack, "slack",
				   "https://hooks.example.com/services/T0/B0/abcdefgh", events,
				   "sealed2", &row),
		 CP_OK);
	CHECK(json_is_true(json_object_get(row, "verified")));
	CHECK(!strcmp(cp_json_str(row, "url") ? cp_json_str(row, "url") : "",
		      "https://hooks.example.com/****efgh"));
	json_decref(row);
	row = NULL;

	emit(fx.db, a, "certificate.renewal_failed");
	CHECK(deliveries_of(fx.db, email) == 0); /* not verified */
	CHECK(deliveries_of(fx.db, slack) == 1);
	emit(fx.db, b, "certificate.renewal_failed");
	CHECK(deliveries_of(fx.db, slack) == 1); /* B's events are B's */

	/* Another tenant can neither read nor verify A's channel. */
	CHECK_RC(db_channel_get(fx.db, b, email, &row), CP_ERR_NOT_FOUND);
	CHECK_RC(db_channel_token(fx.db, b, email, &sealed, &verified), CP_ERR_NOT_FOUND);
	CHECK_RC(db_channel_set_verified(fx.db, b, email, &row), CP_ERR_NOT_FOUND);
	CHECK_RC(db_channel_delete(fx.db, b, email), CP_ERR_NOT_FOUND);
	CHECK_RC(db_channel_token(fx.db, a, slack, &sealed, &verified), CP_ERR_NOT_FOUND);
	CHECK_RC(db_channel_token(fx.db, a, email, &sealed, &verified), CP_OK);
	CHECK(sealed && !strcmp(sealed, "sealed") && !verified);
	free(sealed);
	CHECK_RC(db_channel_set_verified(fx.db, a, email, &row), CP_OK);
	CHECK(json_is_true(json_object_get(row, "verified")));
	json_decref(row);
	row = NULL;
	CHECK_RC(db_channel_set_verified(fx.db, a, email, &row), CP_ERR_NOT_FOUND); /* once */
	emit(fx.db, a, "certificate.renewal_failed");
	CHECK(deliveries_of(fx.db, email) == 1);
	CHECK(deliveries_of(fx.db, slack) == 2);
	/* The verification event is never fanned out. */
	emit(fx.db, a, DB_EVENT_CHANNEL_VERIFICATION);
	CHECK(deliveries_of(fx.db, email) == 1 && deliveries_of(fx.db, slack) == 2);
	/* The verification budget counts those events, per tenant, in a window. */
	CHECK_RC(db_channel_verification_recent(fx.db, a, 1, cp_now() - 86400, &verified), CP_OK);
	CHECK(verified);
	CHECK_RC(db_channel_verification_recent(fx.db, a, 2, cp_now() - 86400, &verified), CP_OK);
	CHECK(!verified);
	CHECK_RC(db_channel_verification_recent(fx.db, a, 1, cp_now() + 60, &verified), CP_OK);
	CHECK(!verified);
	CHECK_RC(db_channel_verification_recent(fx.db, b, 1, cp_now() - 86400, &verified), CP_OK);
	CHECK(!verified);

	/* A Slack channel disabled by the webhooks' rules (410 here): its
	 * webhook.disabled event shows the URL masked, never its path. */
	{
		struct db_webhook_attempt at = { .outcome = DB_WEBHOOK_GONE,
						 .status_code = 410,
						 .error = "HTTP 410" };
		char *d = pending_delivery(fx.db, slack);
		bool disabled = false;

		CHECK(d != NULL);
		if (d)
			CHECK(db_webhook_attempt_record(fx.db, d, &at, &disabled) == CP_OK &&
			      disabled);
		free(d);
		CHECK(fx_int(fx.db,
			     "SELECT count(*) FROM events WHERE type = 'webhook.disabled' AND "
			     "payload LIKE '%hooks.example.com/****efgh%'") == 1);
		CHECK(fx_int(fx.db, "SELECT count(*) FROM events WHERE payload LIKE '%T0/B0%'") ==
		      0);
	}
	/* Channels are not webhooks, and count apart. */
	CHECK_RC(db_webhook_get(fx.db, a, email, &row), CP_ERR_NOT_FOUND);
	CHECK_RC(db_webhook_delete(fx.db, a, slack), CP_ERR_NOT_FOUND);
	CHECK_RC(db_webhook_count(fx.db, a, &n), CP_OK);
	CHECK(n == 0);
	CHECK_RC(db_channel_count(fx.db, a, &n), CP_OK);
	CHECK(n == 2);
	CHECK_RC(db_channel_count(fx.db, b, &n), CP_OK);
	CHECK(n == 0);
	CHECK_RC(db_channel_delete(fx.db, a, email), CP_OK);
	CHECK(deliveries_of(fx.db, email) == 0); /* its deliveries with it */
out:
	json_decref(ta);
	json_decref(tb);
	json_decref(events);
	fx_close(&fx);
}

int main(void)
{
	cp_log_set_level(CP_LOG_ERROR);
	test_email_rule();
	test_message();
	test_db();
	return check_exit("test_channels");
}
