/*
 * kick.c - the worker wake-up: whoever queues a job calls cp_kick, idle
 * workers sleep in cp_kick_wait until it or their timeout.
 */
#include "common/common.h"

#include <assert.h>
#include <pthread.h>
#include <time.h>

static pthread_mutex_t kick_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t kick_cond = PTHREAD_COND_INITIALIZER;
static uint64_t kick_gen;

void cp_kick(void)
{
	pthread_mutex_lock(&kick_lock);
	kick_gen++;
	pthread_cond_broadcast(&kick_cond);
	pthread_mutex_unlock(&kick_lock);
}

void cp_kick_wait(int ms)
{
	struct timespec until;
	uint64_t gen;

	assert(ms >= 0);
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&kick_lock);
	gen = kick_gen;
	while (gen == kick_gen)
		if (pthread_cond_timedwait(&kick_cond, &kick_lock, &until) != 0)
			break;
	pthread_mutex_unlock(&kick_lock);
}
