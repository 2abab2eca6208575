/*
 * test_db_leases.c - leases and instance heartbeats (db/leases.c), on
 * either backend (CERTPLANE_TEST_DB=pg: PostgreSQL). A lease has one
 * holder until it lapses, is renewed by its holder, taken over by anyone
 * once lapsed, and released only by its holder; of two connections after
 * a lapsed lease only the first wins. Exit status is the number of failed checks
 * (capped), 0 on success.
 */
#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

static struct fx fx;

static bool holds(struct db *db, const char *holder, int ttl)
{
	bool held = true;

	CHECK(db_lease_hold(db, "housekeeping", holder, ttl, &held) == CP_OK);
	return held;
}

/* Move the lease's expiry into the past, as time passing would. */
static void lapse(void)
{
	CHECK(fx_sql(fx.db, "UPDATE leases SET expires_at = unixepoch() - 1 "
			    "WHERE name = 'housekeeping'"));
}

static void test_lease(void)
{
	CHECK(holds(fx.db, "a", 30));  /* free: a takes it */
	CHECK(!holds(fx.db, "b", 30)); /* a's, not lapsed */
	CHECK(holds(fx.db, "a", 30));  /* a renews */
	CHECK(fx_int(fx.db, "SELECT count(*) FROM leases WHERE holder = 'a' AND "
			    "expires_at BETWEEN unixepoch() + 28 AND unixepoch() + 31") == 1);
	lapse();
	CHECK(holds(fx.db, "b", 30));  /* lapsed: b takes over */
	CHECK(!holds(fx.db, "a", 30)); /* and a no longer has it */
	CHECK(db_lease_release(fx.db, "housekeeping", "a") == CP_OK);
	CHECK(!holds(fx.db, "c", 30)); /* a's release was a no-op */
	CHECK(db_lease_release(fx.db, "housekeeping", "b") == CP_OK);
	CHECK(holds(fx.db, "c", 30)); /* released: free at once */
	/* Another name is another lease. */
	{
		bool held = false;
		CHECK(db_lease_hold(fx.db, "other", "b", 30, &held) == CP_OK && held);
	}
	/* A database failure is an error, not "held". */
	fx_fail(fx.db, true);
	{
		bool held = true;
		CHECK(db_lease_hold(fx.db, "housekeeping", "c", 30, &held) != CP_OK);
		CHECK(!held);
	}
	fx_fail(fx.db, false);
}

/* Two connections after one lapsed lease: the one that writes first takes
 * it, the other sees it held (the upsert re-checks the row it conflicts
 * with as it is then, not as it was when its statement began). */
static void test_lease_race(void)
{
	struct db *other = NULL;
	bool a = false, b = false;

	CHECK(db_open(fx.path, &other) == CP_OK);
	if (!other)
		return;
	lapse();
	CHECK(db_begin(fx.db) == CP_OK);
	CHECK(db_lease_hold(fx.db, "housekeeping", "x", 30, &a) == CP_OK);
	CHECK(db_commit(fx.db) == CP_OK);
	CHECK(db_lease_hold(other, "housekeeping", "y", 30, &b) == CP_OK);
	CHECK(a && !b);
	db_close(other);
}

static void test_instances(void)
{
	int n = -1;

	CHECK(db_instance_beat(fx.db, "i1", "host-a", 11) == CP_OK);
	CHECK(db_instance_beat(fx.db, "i2", "host-b", 22) == CP_OK);
	CHECK(db_instance_beat(fx.db, "i1", "host-a", 11) == CP_OK); /* a beat, not a new row */
	CHECK(db_instances_live(fx.db, 30, &n) == CP_OK && n == 2);
	CHECK(fx_sql(fx.db, "UPDATE instances SET heartbeat_at = unixepoch() - 100 "
			    "WHERE id = 'i2'"));
	CHECK(db_instances_live(fx.db, 30, &n) == CP_OK && n == 1); /* i2 went quiet */
	CHECK(db_instance_gone(fx.db, "i1") == CP_OK);
	CHECK(db_instances_live(fx.db, 30, &n) == CP_OK && n == 0);
}

int main(void)
{
	if (!fx_open(&fx, "leases")) {
		fprintf(stderr, "test_db_leases: setup failed\n");
		return 1;
	}
	test_lease();
	test_lease_race();
	test_instances();
	fx_close(&fx);
	return check_exit("test_db_leases");
}
