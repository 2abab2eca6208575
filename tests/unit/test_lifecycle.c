/*
 * test_lifecycle.c - the certificate lifecycle rules (lifecycle/lifecycle.h)
 * over tables, each row asserting an exact moment or value:
 *
 *   - the renewal window: lifetimes of 6 h, 6 d, 25 d, 45 d, 90 d and 398 d,
 *     bootstrap and CA-issued, without ARI, with an ARI window ahead, one
 *     already started and one in the past; a CA-issued version is never due
 *     at issuance (the bug of issue 10: any CA certificate of 25 days or less
 *     was due the moment it was issued);
 *   - the derived status, in C and through the database with
 *     LIFECYCLE_STATUS_SQL, which must agree on every row;
 *   - the expiry reminders (1/3, 1/6, 1/30 of the lifetime left, expired), in
 *     C and through the database with LIFECYCLE_REMINDER_SQL: a 6-day
 *     certificate gets no reminder at issuance.
 * The database is the db fixture's (SQLite, or PostgreSQL with
 * CERTPLANE_TEST_DB=pg): the SQL must say the same as the C on both.
 *
 * Exit status: 0 when every check passed.
 */
#include <stdio.h>
#include <string.h>

#include "lifecycle/lifecycle.h"
#include "tests/unit/check.h"
#include "tests/unit/db_fixture.h"

#define H 3600LL
#define D 86400LL
#define NB 1800000000LL /* not_before of every row */
#define NONE 0		/* no ARI window */

/* One row: a version, an optional ARI window (relative to NB), the moment
 * the check runs, the random draw, and the exact moment expected. */
struct renew_row {
	const char *what;
	int64_t life;
	enum lifecycle_origin origin;
	int64_t ari_start, ari_end; /* NONE: no window */
	int64_t now;		    /* relative to NB */
	uint64_t rnd;
	int64_t due; /* relative to NB */
};

static const struct renew_row renew_rows[] = {
	/* Lifetime rule, renew_before_days = 25. */
	{ "6 h CA: half the lifetime", 6 * H, LIFECYCLE_CA, NONE, NONE, 0, 0, 3 * H },
	{ "6 h bootstrap: inside 25 d, due at once", 6 * H, LIFECYCLE_BOOTSTRAP, NONE, NONE, 0, 0,
	  0 },
	{ "6 d CA: 3 d left", 6 * D, LIFECYCLE_CA, NONE, NONE, 0, 0, 3 * D },
	{ "6 d bootstrap: due at once", 6 * D, LIFECYCLE_BOOTSTRAP, NONE, NONE, 0, 0, 0 },
	{ "25 d CA: a third left, not at issuance", 25 * D, LIFECYCLE_CA, NONE, NONE, 0, 0,
	  25 * D - (25 * D) / 3 },
	{ "25 d bootstrap: due at once", 25 * D, LIFECYCLE_BOOTSTRAP, NONE, NONE, 0, 0, 0 },
	{ "45 d CA: 15 d left", 45 * D, LIFECYCLE_CA, NONE, NONE, 0, 0, 30 * D },
	{ "45 d bootstrap: 25 d left", 45 * D, LIFECYCLE_BOOTSTRAP, NONE, NONE, 0, 0, 20 * D },
	{ "90 d CA: 25 d left", 90 * D, LIFECYCLE_CA, NONE, NONE, 0, 0, 65 * D },
	{ "90 d bootstrap: 25 d left", 90 * D, LIFECYCLE_BOOTSTRAP, NONE, NONE, 0, 0, 65 * D },
	{ "398 d CA: 25 d left", 398 * D, LIFECYCLE_CA, NONE, NONE, 0, 0, 373 * D },
	{ "398 d bootstrap: 25 d left", 398 * D, LIFECYCLE_BOOTSTRAP, NONE, NONE, 0, 0, 373 * D },
	/* ARI window ahead: its start + rnd mod its span. */
	{ "6 h CA, ARI [2 h, 3 h)", 6 * H, LIFECYCLE_CA, 2 * H, 3 * H, 0, UINT64_MAX,
	  2 * H + 15 /* (2^64 - 1) mod 3600 */ },
	{ "6 d CA, ARI [4 d, 5 d)", 6 * D, LIFECYCLE_CA, 4 * D, 5 * D, 1 * H, 1000, 4 * D + 1000 },
	{ "45 d CA, ARI [28 d, 30 d)", 45 * D, LIFECYCLE_CA, 28 * D, 30 * D, 1 * D, 0, 28 * D },
	{ "90 d CA, ARI [60 d, 62 d)", 90 * D, LIFECYCLE_CA, 60 * D, 62 * D, 1 * D, 12345,
	  60 * D + 12345 },
	{ "90 d bootstrap, ARI [60 d, 62 d)", 90 * D, LIFECYCLE_BOOTSTRAP, 60 * D, 62 * D, 1 * D,
	  2 * D + 7, 60 * D + 7 },
	{ "398 d CA, ARI [300 d, 301 d)", 398 * D, LIFECYCLE_CA, 300 * D, 301 * D, 0, 86399,
	  300 * D + 86399 },
	/* ARI window already started: uniform over what is left of it. */
	{ "90 d CA, ARI [60 d, 62 d) at 61 d", 90 * D, LIFECYCLE_CA, 60 * D, 62 * D, 61 * D, 99,
	  61 * D + 99 },
	/* ARI window in the past: due now. */
	{ "90 d CA, ARI [10 d, 11 d) at 20 d", 90 * D, LIFECYCLE_CA, 10 * D, 11 * D, 20 * D, 5,
	  20 * D },
	{ "6 h CA, ARI [1 h, 2 h) at 2 h", 6 * H, LIFECYCLE_CA, 1 * H, 2 * H, 2 * H, 5, 2 * H },
};

static void test_renewal_window(void)
{
	for (size_t i = 0; i < sizeof(renew_rows) / sizeof(renew_rows[0]); i++) {
		const struct renew_row *r = &renew_rows[i];
		struct lifecycle_version v = { NB, NB + r->life, r->origin };
		int64_t stored, due;

		/* What the order engine / the API store with the version. */
		stored = lifecycle_renew_at(&v, 25);
		if (r->ari_end != NONE) {
			/* What the scheduler stores from the CA's window. */
			stored = lifecycle_ari_at(NB + r->ari_start, NB + r->ari_end, NB + r->now,
						  r->rnd);
			CHECK(lifecycle_ari_kept(stored, NB + r->ari_start, NB + r->ari_end) ||
			      r->ari_end <= r->now);
		}
		/* What the scheduler acts on is what was stored (= the API's
		 * renewal.renew_after). */
		due = lifecycle_due_at(stored, &v, 25);
		if (due != NB + r->due)
			fprintf(stderr, "row %zu (%s): due at NB%+lld, expected NB%+lld\n", i,
				r->what, (long long)(due - NB), (long long)r->due);
		CHECK(due == NB + r->due);
		CHECK(due == stored);
		/* A CA-issued version is never due at issuance (no renewal loop). */
		if (r->origin == LIFECYCLE_CA && r->ari_end == NONE)
			CHECK(due > NB && due < NB + r->life);
		/* Nothing stored: the lifetime rule. */
		CHECK(lifecycle_due_at(0, &v, 25) == lifecycle_renew_at(&v, 25));
	}
	/* renew_before_days shorter than the cap wins for CA versions too. */
	CHECK(lifecycle_renew_at(&(struct lifecycle_version){ NB, NB + 90 * D, LIFECYCLE_CA }, 7) ==
	      NB + 83 * D);
	CHECK(lifecycle_renew_at(&(struct lifecycle_version){ NB, NB + 6 * D, LIFECYCLE_CA }, 1) ==
	      NB + 5 * D);
	/* A version with no lifetime is due at its start. */
	CHECK(lifecycle_renew_at(&(struct lifecycle_version){ NB, NB, LIFECYCLE_CA }, 25) == NB);
	/* A stored moment outside a (moved) window is redrawn. */
	CHECK(!lifecycle_ari_kept(NB + 10, NB + 20, NB + 30));
	CHECK(!lifecycle_ari_kept(NB + 30, NB + 20, NB + 30));
	CHECK(lifecycle_ari_kept(NB + 20, NB + 20, NB + 30));
}

/* ---- derived status ---- */

struct status_row {
	const char *stored;
	int has_version;
	int64_t not_after; /* relative to now */
	enum lifecycle_status want;
};

static const struct status_row status_rows[] = {
	{ "pending", 0, 0, LIFECYCLE_PENDING },	  { "active", 1, 10, LIFECYCLE_ACTIVE },
	{ "active", 1, 0, LIFECYCLE_ACTIVE },	  { "active", 1, -1, LIFECYCLE_EXPIRED },
	{ "renewing", 1, 5, LIFECYCLE_RENEWING }, { "renewing", 1, -5, LIFECYCLE_EXPIRED },
	{ "failed", 1, -5, LIFECYCLE_FAILED },	  { "failed", 1, 5, LIFECYCLE_FAILED },
	{ "failed", 0, 0, LIFECYCLE_FAILED },	  { "pending", 1, -5, LIFECYCLE_EXPIRED },
};

/* Evaluate one SQL fragment on one row of t(stored, nb, na) with ?1 = now. */
static struct db_stmt *prepare(struct db *h, const char *expr)
{
	char sql[1024];
	struct db_stmt *st = NULL;

	snprintf(sql, sizeof(sql), "SELECT %s FROM t", expr);
	CHECK(db_prepare(h, sql, &st) == DB_DONE);
	return st;
}

static void set_row(struct db *h, const char *stored, int has_version, int64_t nb, int64_t na)
{
	char sql[256];

	if (has_version)
		snprintf(sql, sizeof(sql), "DELETE FROM t; INSERT INTO t VALUES ('%s', %lld, %lld)",
			 stored, (long long)nb, (long long)na);
	else
		snprintf(sql, sizeof(sql), "DELETE FROM t; INSERT INTO t VALUES ('%s', NULL, NULL)",
			 stored);
	CHECK(fx_sql(h, sql));
}

static void test_status(struct db *h)
{
	int64_t now = NB + 5 * D;
	struct db_stmt *st = prepare(h, LIFECYCLE_STATUS_SQL("stored", "na"));

	for (size_t i = 0; i < sizeof(status_rows) / sizeof(status_rows[0]) && st; i++) {
		const struct status_row *r = &status_rows[i];
		enum lifecycle_status s =
			lifecycle_status(r->stored, r->has_version, now + r->not_after, now);
		CHECK(s == r->want);
		set_row(h, r->stored, r->has_version, NB, now + r->not_after);
		db_bind_int64(st, 1, now);
		CHECK(db_step(st) == DB_ROW);
		CHECK(db_col_text(st, 0) && !strcmp(db_col_text(st, 0), lifecycle_status_name(s)));
		db_reset(st);
	}
	if (st)
		db_finalize(h, st);
}

/* ---- reminders ---- */

struct reminder_row {
	const char *what;
	int64_t life;
	int64_t left; /* time left at the check */
	int want;
	int64_t threshold_seconds;
};

static const struct reminder_row reminder_rows[] = {
	{ "6 d at issuance: nothing (no 30-day warning)", 6 * D, 6 * D, LIFECYCLE_REMINDER_NONE,
	  0 },
	{ "6 d, 2 d + 1 s left: nothing yet", 6 * D, 2 * D + 1, LIFECYCLE_REMINDER_NONE, 0 },
	{ "6 d, 2 d left: 1/3", 6 * D, 2 * D, 3, 2 * D },
	{ "6 d, 1 d left: 1/6", 6 * D, 1 * D, 6, 1 * D },
	{ "6 d, 4.8 h left: 1/30", 6 * D, 6 * D / 30, 30, 6 * D / 30 },
	{ "6 d, 0 s left: 1/30", 6 * D, 0, 30, 6 * D / 30 },
	{ "6 d, expired", 6 * D, -1, LIFECYCLE_REMINDER_EXPIRED, 0 },
	{ "6 h, 1 h left: 1/6", 6 * H, 1 * H, 6, 1 * H },
	{ "6 h, 3 h left: nothing", 6 * H, 3 * H, LIFECYCLE_REMINDER_NONE, 0 },
	{ "45 d, 30 d left: nothing (no 30-day warning)", 45 * D, 30 * D, LIFECYCLE_REMINDER_NONE,
	  0 },
	{ "45 d, 15 d left: 1/3", 45 * D, 15 * D, 3, 15 * D },
	{ "90 d, 29 d left: 1/3", 90 * D, 29 * D, 3, 30 * D },
	{ "90 d, 3 d left: 1/30", 90 * D, 3 * D, 30, 3 * D },
	{ "398 d, 100 d left: 1/3", 398 * D, 100 * D, 3, 398 * D / 3 },
	{ "398 d, 60 d left: 1/6", 398 * D, 60 * D, 6, 398 * D / 6 },
};

static void test_reminders(struct db *h)
{
	struct db_stmt *st = prepare(h, LIFECYCLE_REMINDER_SQL("nb", "na"));

	for (size_t i = 0; i < sizeof(reminder_rows) / sizeof(reminder_rows[0]) && st; i++) {
		const struct reminder_row *r = &reminder_rows[i];
		int64_t na = NB + r->life, now = na - r->left;
		int got = lifecycle_reminder(NB, na, now);
		if (got != r->want)
			fprintf(stderr, "reminder row %zu (%s): %d, expected %d\n", i, r->what, got,
				r->want);
		CHECK(got == r->want);
		CHECK(lifecycle_reminder_seconds(NB, na, got) == r->threshold_seconds);
		set_row(h, "active", 1, NB, na);
		db_bind_int64(st, 1, now);
		CHECK(db_step(st) == DB_ROW && db_col_int64(st, 0) == r->want);
		db_reset(st);
		/* Inside the scan horizon whenever a reminder is due. */
		if (r->want > 0)
			CHECK(r->left <= LIFECYCLE_REMINDER_HORIZON);
	}
	if (st)
		db_finalize(h, st);
}

/* ---- the renewal plan ---- */

#define L(...) ((const char *const[]){ __VA_ARGS__ })

/* One row: the version's SANs, the carried hostnames (carried = 0: no
 * production property with automation), the SANs expected (a
 * comma-separated sorted list) and whether it is a SAN change. */
struct plan_row {
	const char *what;
	const char *const *version;
	size_t nv;
	const char *const *deployed;
	size_t nd;
	int carried;
	const char *want;
	int changed;
};

static const struct plan_row plan_rows[] = {
	{ "same set: the version's SANs", L("a.test", "b.test"), 2, L("a.test", "b.test"), 2, 1,
	  "a.test,b.test", 0 },
	{ "same set in another order: no change, order normalised", L("b.test", "a.test"), 2,
	  L("a.test", "b.test"), 2, 1, "a.test,b.test", 0 },
	{ "duplicates across properties: no change", L("a.test", "b.test"), 2,
	  L("b.test", "a.test", "b.test"), 3, 1, "a.test,b.test", 0 },
	{ "a hostname gained: the new set", L("a.test"), 1, L("c.test", "a.test"), 2, 1,
	  "a.test,c.test", 1 },
	{ "a hostname lost: the new set", L("a.test", "b.test"), 2, L("a.test"), 1, 1, "a.test",
	  1 },
	{ "one swapped for another: the new set", L("a.test", "b.test"), 2, L("a.test", "z.test"),
	  2, 1, "a.test,z.test", 1 },
	{ "wildcard kept", L("*.a.test", "a.test"), 2, L("a.test", "*.a.test"), 2, 1,
	  "*.a.test,a.test", 0 },
	{ "not carried: the version's SANs, no change", L("b.test", "a.test"), 2, NULL, 0, 0,
	  "a.test,b.test", 0 },
	{ "carried with no hostname: a change to nothing", L("a.test"), 1, NULL, 0, 1, "", 1 },
};

static void plan_join(const struct lifecycle_plan *p, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < p->n_sans && off < len; i++)
		off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? "," : "", p->sans[i]);
}

static void test_plan(void)
{
	struct lifecycle_plan p;
	char got[512];

	for (size_t i = 0; i < sizeof(plan_rows) / sizeof(plan_rows[0]); i++) {
		const struct plan_row *r = &plan_rows[i];
		struct lifecycle_plan_in in = {
			.version_sans = r->version,
			.n_version_sans = r->nv,
			.deployed = r->deployed,
			.n_deployed = r->nd,
			.carried = r->carried,
			.ca = "letsencrypt",
		};
		lifecycle_plan(&in, &p);
		plan_join(&p, got, sizeof(got));
		if (strcmp(got, r->want) != 0 || p.san_changed != (bool)r->changed)
			fprintf(stderr, "plan row %zu (%s): [%s] changed=%d\n", i, r->what, got,
				p.san_changed);
		CHECK(strcmp(got, r->want) == 0);
		CHECK(p.san_changed == (bool)r->changed);
		CHECK(!p.truncated);
		/* Defaults: http-01, the version's key type else ecdsa-p256. */
		CHECK(strcmp(p.challenge, "http-01") == 0);
		CHECK(strcmp(p.key_type, "ecdsa-p256") == 0);
		CHECK(strcmp(p.ca, "letsencrypt") == 0 && p.profile == NULL);
	}
	/* The certificate's choices are kept across renewals. */
	lifecycle_plan(&(struct lifecycle_plan_in){ .version_sans = L("a.test"),
						    .n_version_sans = 1,
						    .ca = "pebble",
						    .profile = "shortlived",
						    .challenge = "dns-01",
						    .key_type = NULL,
						    .version_key_type = "rsa-2048" },
		       &p);
	CHECK(strcmp(p.challenge, "dns-01") == 0 && strcmp(p.key_type, "rsa-2048") == 0);
	CHECK(strcmp(p.profile, "shortlived") == 0 && strcmp(p.ca, "pebble") == 0);
	lifecycle_plan(&(struct lifecycle_plan_in){ .key_type = "ecdsa-p384",
						    .version_key_type = "rsa-2048" },
		       &p);
	CHECK(strcmp(p.key_type, "ecdsa-p384") == 0 && p.n_sans == 0 && !p.san_changed);
	/* More names than the plan holds: flagged, never silently dropped. */
	{
		static char names[LIFECYCLE_PLAN_NAMES + 5][16];
		const char *ptrs[LIFECYCLE_PLAN_NAMES + 5];
		for (size_t i = 0; i < LIFECYCLE_PLAN_NAMES + 5; i++) {
			snprintf(names[i], sizeof(names[i]), "h%03zu.test", i);
			ptrs[i] = names[i];
		}
		lifecycle_plan(&(struct lifecycle_plan_in){ .version_sans = ptrs,
							    .n_version_sans = 1,
							    .deployed = ptrs,
							    .n_deployed = LIFECYCLE_PLAN_NAMES + 5,
							    .carried = true },
			       &p);
		CHECK(p.san_changed && p.truncated && p.n_sans == LIFECYCLE_PLAN_NAMES);
	}
}

/* When and why: rows of (renew_after stored, backoff, origin, SAN change). */
static void test_next_renewal(void)
{
	struct lifecycle_version ca = { NB, NB + 90 * D, LIFECYCLE_CA };
	struct lifecycle_version boot = { NB, NB + 90 * D, LIFECYCLE_BOOTSTRAP };
	int64_t rule = lifecycle_renew_at(&ca, 25), now = NB + 1 * D;
	enum lifecycle_why why;

	CHECK(lifecycle_next_renewal(rule, 0, &ca, 25, false, now, &why) == rule);
	CHECK(why == LIFECYCLE_WHY_LIFETIME);
	CHECK(lifecycle_next_renewal(0, 0, &ca, 25, false, now, &why) == rule);
	CHECK(why == LIFECYCLE_WHY_LIFETIME);
	CHECK(lifecycle_next_renewal(rule + 7, 0, &ca, 25, false, now, &why) == rule + 7);
	CHECK(why == LIFECYCLE_WHY_ARI);
	CHECK(lifecycle_next_renewal(lifecycle_renew_at(&boot, 25), 0, &boot, 25, false, now,
				     &why) == NB + 65 * D);
	CHECK(why == LIFECYCLE_WHY_BOOTSTRAP);
	/* A SAN change is due now, not at the window. */
	CHECK(lifecycle_next_renewal(rule, 0, &ca, 25, true, now, &why) == now);
	CHECK(why == LIFECYCLE_WHY_SAN_CHANGE);
	/* A backoff postpones either. */
	CHECK(lifecycle_next_renewal(rule, now + 600, &ca, 25, true, now, &why) == now + 600);
	CHECK(lifecycle_next_renewal(rule, rule + 60, &ca, 25, false, now, &why) == rule + 60);
	CHECK(lifecycle_next_renewal(rule, rule - 60, &ca, 25, false, now, &why) == rule);
	CHECK(strcmp(lifecycle_why_name(LIFECYCLE_WHY_SAN_CHANGE), "san_change") == 0);
	CHECK(strcmp(lifecycle_why_name(LIFECYCLE_WHY_ARI), "ari") == 0);
}

static void test_plan_replaces(void)
{
	CHECK(lifecycle_plan_replaces(true, "letsencrypt", "letsencrypt"));
	CHECK(!lifecycle_plan_replaces(false, "letsencrypt", "letsencrypt")); /* first order */
	CHECK(!lifecycle_plan_replaces(true, NULL, "letsencrypt"));	 /* self-signed bootstrap */
	CHECK(!lifecycle_plan_replaces(true, "zerossl", "letsencrypt")); /* another CA */
	CHECK(!lifecycle_plan_replaces(true, "letsencrypt", NULL));
}

int main(void)
{
	struct fx fx = { 0 };

	test_renewal_window();
	test_plan();
	test_next_renewal();
	test_plan_replaces();
	CHECK(fx_open(&fx, "lifecycle"));
	CHECK(fx.db && fx_sql(fx.db, "CREATE TABLE t (stored TEXT, nb BIGINT, na BIGINT)"));
	if (fx.db) {
		test_status(fx.db);
		test_reminders(fx.db);
	}
	fx_close(&fx);
	return check_exit("test_lifecycle");
}
