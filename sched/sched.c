/*
 * sched.c - the per-CA order budget of the renewal scheduler (sched.h).
 */
#include "sched/sched.h"

#include <assert.h>
#include <string.h>

int64_t sched_slot_ms(int per_hour)
{
	assert(per_hour >= 1);
	int64_t t = 3600000 / per_hour;
	return t > 0 ? t : 1;
}

bool sched_budget_take(struct sched_budget *b, int64_t now_ms, int per_hour, int burst,
		       uint64_t rnd, int64_t *at_ms)
{
	int64_t slot = sched_slot_ms(per_hour), tat;

	assert(b && at_ms && burst >= 1);
	/* A budget idle for a while does not bank slots in the past: the
	 * schedule restarts at now. */
	tat = b->tat_ms > now_ms ? b->tat_ms : now_ms;
	if (tat - now_ms >= (int64_t)burst * slot) {
		*at_ms = tat - (int64_t)burst * slot + 1;
		return false;
	}
	*at_ms = tat + (int64_t)(rnd % (uint64_t)slot);
	b->tat_ms = tat + slot;
	return true;
}

bool sched_is_letsencrypt(const char *directory_url)
{
	static const char *const hosts[] = { "https://acme-v02.api.letsencrypt.org/",
					     "https://acme-staging-v02.api.letsencrypt.org/" };

	if (!directory_url)
		return false;
	for (size_t i = 0; i < sizeof(hosts) / sizeof(hosts[0]); i++)
		if (strncmp(directory_url, hosts[i], strlen(hosts[i])) == 0)
			return true;
	return false;
}
