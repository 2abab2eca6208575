/*
 * test_db_events.c - the storage layer's event filters and the event hook
 * (db/db.h, migration 013): events are found by the certificate_id and
 * property_id of their data, alone, together and with a type, only the
 * tenant's own, page by page; each filter is one index range scan (EXPLAIN
 * QUERY PLAN); the hook runs after a COMMIT that wrote an event (not
 * before, not after a ROLLBACK, not for a transaction without events) and
 * at once for an event written outside a transaction. Exit status is the
 * number of failed checks (capped), 0 on success.
 */
#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

#define C1 "11111111-1111-4111-8111-111111111111"
#define C2 "22222222-2222-4222-8222-222222222222"
#define P1 "33333333-3333-4333-8333-333333333333"

static struct fx fx;
static char ta[CP_UUID_LEN + 1], tb[CP_UUID_LEN + 1];
static int hook_calls;
static char hook_tenant[CP_UUID_LEN + 1];

static void on_hook(void *cls, const char *tenant_id)
{
	CHECK(cls == &hook_calls);
	snprintf(hook_tenant, sizeof(hook_tenant), "%s", tenant_id ? tenant_id : "many");
	hook_calls++;
}

/* Add an event with data {certificate_id?, property_id?}. */
static void add(const char *tenant, const char *type, const char *cert, const char *prop,
		char id[CP_UUID_LEN + 1])
{
	json_t *data = json_pack("{s:s?,s:s?}", "certificate_id", cert, "property_id", prop);

	CHECK_RC(db_event_add(fx.db, tenant, type, data, id), CP_OK);
	json_decref(data);
}

/* The ids the filter lists, joined by ',' into out. */
static void ids_of(const char *tenant, struct db_event_filter f, int limit, int64_t after,
		   char *out, size_t n)
{
	struct db_list l = { 0 };
	size_t i, len = 0;
	json_t *e;

	out[0] = '\0';
	CHECK_RC(db_event_list_filtered(fx.db, tenant, &f,
					(struct db_page){ .after = after, .limit = limit }, &l),
		 CP_OK);
	json_array_foreach(l.data, i, e) len +=
		(size_t)snprintf(out + len, n - len, "%s%.8s", i ? "," : "", fx_str(e, "id"));
	fx_list_clear(&l);
}

/* Whether sql's plan is a range scan (SEARCH) of index: SQLite's EXPLAIN
 * QUERY PLAN, or PostgreSQL's index scan (fx_pg_plan_uses). */
static bool plan_uses(const char *sql, const char *index)
{
	struct db_stmt *st = NULL;
	char *q = NULL;
	bool found = false;

	if (fx_pg())
		return fx_pg_plan_uses(fx.db, sql, index);
	q = cp_aprintf("EXPLAIN QUERY PLAN %s", sql);
	if (q && db_prepare(fx.db, q, &st) == DB_DONE) {
		while (db_step(st) == DB_ROW) {
			const char *d = db_col_text(st, 3);
			found |= d && strstr(d, index) && strstr(d, "SEARCH");
		}
	}
	if (st)
		db_finalize(fx.db, st);
	free(q);
	return found;
}

static void test_filters(void)
{
	char e1[CP_UUID_LEN + 1], e2[CP_UUID_LEN + 1], e3[CP_UUID_LEN + 1], e4[CP_UUID_LEN + 1];
	char want[128], got[128];
	int64_t seq1 = 0;

	add(ta, "certificate.expired", C1, NULL, e1);
	add(ta, "certificate.renewed", C1, P1, e2);
	add(ta, "property.hostname_released", NULL, P1, e3);
	add(ta, "certificate.expired", C2, NULL, e4);
	add(tb, "certificate.expired", C1, P1, NULL); /* another tenant's, same ids */

	ids_of(ta, (struct db_event_filter){ .certificate_id = C1 }, 10, 0, got, sizeof(got));
	snprintf(want, sizeof(want), "%.8s,%.8s", e1, e2);
	CHECK(strcmp(got, want) == 0);
	ids_of(ta, (struct db_event_filter){ .property_id = P1 }, 10, 0, got, sizeof(got));
	snprintf(want, sizeof(want), "%.8s,%.8s", e2, e3);
	CHECK(strcmp(got, want) == 0);
	ids_of(ta, (struct db_event_filter){ .certificate_id = C1, .property_id = P1 }, 10, 0, got,
	       sizeof(got));
	snprintf(want, sizeof(want), "%.8s", e2);
	CHECK(strcmp(got, want) == 0);
	ids_of(ta, (struct db_event_filter){ .certificate_id = C1, .type = "certificate.expired" },
	       10, 0, got, sizeof(got));
	snprintf(want, sizeof(want), "%.8s", e1);
	CHECK(strcmp(got, want) == 0);
	ids_of(ta, (struct db_event_filter){ .property_id = P1, .type = "certificate.expired" }, 10,
	       0, got, sizeof(got));
	CHECK(strcmp(got, "") == 0);
	ids_of(ta, (struct db_event_filter){ .type = "certificate.expired" }, 10, 0, got,
	       sizeof(got));
	snprintf(want, sizeof(want), "%.8s,%.8s", e1, e4);
	CHECK(strcmp(got, want) == 0);
	ids_of(ta, (struct db_event_filter){ 0 }, 10, 0, got, sizeof(got));
	snprintf(want, sizeof(want), "%.8s,%.8s,%.8s,%.8s", e1, e2, e3, e4);
	CHECK(strcmp(got, want) == 0);
	/* paged: after the first of C1's events, then one at a time */
	CHECK_RC(db_event_seq(fx.db, ta, e1, &seq1), CP_OK);
	ids_of(ta, (struct db_event_filter){ .certificate_id = C1 }, 1, seq1, got, sizeof(got));
	snprintf(want, sizeof(want), "%.8s", e2);
	CHECK(strcmp(got, want) == 0);
	/* the newest seq: where a stream without a cursor starts */
	{
		int64_t last = -1, seq4 = 0;
		CHECK_RC(db_event_seq(fx.db, ta, e4, &seq4), CP_OK);
		CHECK_RC(db_event_last_seq(fx.db, ta, &last), CP_OK);
		CHECK(last == seq4);
		CHECK_RC(db_event_last_seq(fx.db, "no-such-tenant", &last), CP_OK);
		CHECK(last == 0);
	}
	/* tenant b sees only its own */
	ids_of(tb, (struct db_event_filter){ .certificate_id = C2 }, 10, 0, got, sizeof(got));
	CHECK(strcmp(got, "") == 0);
	ids_of(tb, (struct db_event_filter){ .certificate_id = C1 }, 10, 0, got, sizeof(got));
	CHECK(strlen(got) == 8);
	/* a database failure is an error, not an empty page */
	{
		struct db_list l = { 0 };
		struct db_event_filter f = { .property_id = P1 };
		fx_fail(fx.db, true);
		CHECK_RC(db_event_list_filtered(fx.db, ta, &f, (struct db_page){ .limit = 5 }, &l),
			 CP_ERR_INTERNAL);
		fx_fail(fx.db, false);
		fx_list_clear(&l);
	}
}

static void test_plans(void)
{
	CHECK(plan_uses("SELECT seq FROM events WHERE tenant_id = 'a' AND "
			"certificate_id = 'c' AND seq > 0 AND ('x' IS NULL OR type = 'x') "
			"ORDER BY seq LIMIT 5",
			"events_tenant_certificate"));
	CHECK(plan_uses("SELECT seq FROM events WHERE tenant_id = 'a' AND "
			"property_id = 'p' AND seq > 0 ORDER BY seq LIMIT 5",
			"events_tenant_property"));
	CHECK(plan_uses("SELECT seq FROM events WHERE tenant_id = 'a' "
			"ORDER BY seq DESC LIMIT 1",
			"events_tenant"));
}

static void test_hook(void)
{
	db_event_hook_set(on_hook, &hook_calls);
	hook_calls = 0;
	CHECK_RC(db_begin(fx.db), CP_OK);
	add(ta, "webhook.test", NULL, NULL, NULL);
	add(ta, "webhook.test", NULL, NULL, NULL);
	CHECK(hook_calls == 0); /* not visible yet */
	CHECK_RC(db_commit(fx.db), CP_OK);
	CHECK(hook_calls == 1); /* once a commit, naming the tenant */
	CHECK(strcmp(hook_tenant, ta) == 0);
	CHECK_RC(db_begin(fx.db), CP_OK);
	add(ta, "webhook.test", NULL, NULL, NULL);
	add(tb, "webhook.test", NULL, NULL, NULL);
	CHECK_RC(db_commit(fx.db), CP_OK);
	CHECK(hook_calls == 2 && strcmp(hook_tenant, "many") == 0); /* two tenants' events */
	CHECK_RC(db_begin(fx.db), CP_OK);
	add(tb, "webhook.test", NULL, NULL, NULL);
	CHECK_RC(db_commit(fx.db), CP_OK);
	CHECK(hook_calls == 3 && strcmp(hook_tenant, tb) == 0);
	hook_calls = 1;
	CHECK_RC(db_begin(fx.db), CP_OK);
	add(ta, "webhook.test", NULL, NULL, NULL);
	db_rollback(fx.db);
	CHECK(hook_calls == 1);
	CHECK_RC(db_begin(fx.db), CP_OK);
	CHECK_RC(db_commit(fx.db), CP_OK);
	CHECK(hook_calls == 1);			   /* no event, no call */
	add(ta, "webhook.test", NULL, NULL, NULL); /* autocommit */
	CHECK(hook_calls == 2);
	db_event_hook_set(NULL, NULL);
	add(ta, "webhook.test", NULL, NULL, NULL);
	CHECK(hook_calls == 2);
}

int main(void)
{
	if (!fx_open(&fx, "test-db-events") || !fx_tenant(fx.db, "a", ta) ||
	    !fx_tenant(fx.db, "b", tb)) {
		fprintf(stderr, "test_db_events: setup failed\n");
		return 1;
	}
	test_filters();
	test_plans();
	test_hook();
	fx_close(&fx);
	return check_exit("test_db_events");
}
