/*
 * check.h - the one harness of the unit tests: CHECK(cond) and
 * CHECK_RC(expr, want) count every check and every failure, printing each
 * failure with its file and line; check_exit(name) prints the tally and
 * returns the process exit status (the failures, capped at 100; 0 = all
 * passed). Header-only on purpose: each unit test is its own program and
 * includes this once.
 */
#ifndef CP_TEST_CHECK_H
#define CP_TEST_CHECK_H

#include <stdio.h>

static int checks, failures;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		checks++;                                                                          \
		if (!(cond)) {                                                                     \
			failures++;                                                                \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
		}                                                                                  \
	} while (0)

/* expr must give the cp_rc want (names both on failure). */
#define CHECK_RC(expr, want)                                                                       \
	do {                                                                                       \
		cp_rc rc_ = (expr);                                                                \
		checks++;                                                                          \
		if (rc_ != (want)) {                                                               \
			failures++;                                                                \
			fprintf(stderr, "%s:%d: CHECK failed: %s = %s, want %s\n", __FILE__,       \
				__LINE__, #expr, cp_rc_str(rc_), cp_rc_str(want));                 \
		}                                                                                  \
	} while (0)

/* The tally line and the exit status of test program name. */
static inline int check_exit(const char *name)
{
	if (failures) {
		fprintf(stderr, "%s: %d of %d checks failed\n", name, failures, checks);
		return failures > 100 ? 100 : failures;
	}
	printf("%s: %d checks, ok\n", name, checks);
	return 0;
}

#endif
