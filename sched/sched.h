/*
 * sched.h - the renewal scheduler's order budget: a token bucket per CA,
 * kept as a schedule (GCRA, the "generic cell rate algorithm"), so that
 * admitted orders are not only counted but spread: order k of a backlog
 * starts at its own slot, one every 3600 / per_hour seconds, plus a random
 * jitter inside its slot. A fleet that comes due at once (after an outage
 * or a restart) therefore reaches the CA at the CA's rate, never in a
 * burst, and the budget admits at most `burst` orders ahead of their slot
 * (so a tick never schedules unbounded work into the future).
 *
 * Pure functions of their arguments (the caller passes the clock and the
 * randomness), so the unit tests assert exact schedules.
 *
 * Let's Encrypt publishes "New Orders per Account: 300 per 3 hours"
 * (a bucket of 300 refilled at one order per 36 s, about 0.028/s);
 * renewals that send ARI `replaces` are exempt, others are not. The
 * default budget for its directories stays below that:
 * SCHED_LE_ORDERS_PER_HOUR = 90 (0.025/s) with a burst of 100, leaving room
 * for the orders the API starts outside the scheduler.
 */
#ifndef CP_SCHED_H
#define CP_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#define SCHED_LE_ORDERS_PER_HOUR 90
#define SCHED_LE_ORDER_BURST 100

/* One CA's budget: a value the caller keeps per CA (zero = fresh). */
struct sched_budget {
	int64_t tat_ms; /* theoretical arrival time of the next slot */
};

/*
 * Take one order slot at now_ms for a budget of per_hour (>= 1) orders an
 * hour, at most burst (>= 1) admitted ahead of their slot. rnd is a
 * uniformly random value (jitter inside the slot).
 * Admitted: returns true, *at_ms = when the order should start (>= now_ms,
 * inside its slot). Refused: returns false, *at_ms = the earliest moment a
 * slot is free again (> now_ms); the budget is unchanged.
 */
bool sched_budget_take(struct sched_budget *b, int64_t now_ms, int per_hour, int burst,
		       uint64_t rnd, int64_t *at_ms);

/* The slot length of a budget of per_hour orders an hour, in ms (>= 1). */
int64_t sched_slot_ms(int per_hour);

/* True when directory_url is one of Let's Encrypt's (production or staging
 * API host), whose published limits the default budget must respect. */
bool sched_is_letsencrypt(const char *directory_url);

#endif
