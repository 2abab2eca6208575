/*
 * common.c - the names of the result codes that every fallible function in
 * certplane returns (the core types of common.h). The other helpers of
 * common/ live one concern a file: log.c, time.c, encode.c, files.c,
 * hostname.c, spec.c, kick.c, config.c.
 */
#include "common/common.h"

const char *cp_rc_str(cp_rc rc)
{
	static const char *const names[] = {
		[CP_OK] = "ok",
		[CP_ERR_INVALID] = "invalid",
		[CP_ERR_NOT_FOUND] = "not_found",
		[CP_ERR_CONFLICT] = "conflict",
		[CP_ERR_BUSY] = "busy",
		[CP_ERR_UPSTREAM] = "upstream",
		[CP_ERR_NOMEM] = "nomem",
		[CP_ERR_IO] = "io",
		[CP_ERR_TOO_LARGE] = "too_large",
		[CP_ERR_UNAUTHORIZED] = "unauthorized",
		[CP_ERR_RATE_LIMITED] = "rate_limited",
		[CP_ERR_CRYPTO] = "crypto",
		[CP_ERR_INTERNAL] = "internal",
	};
	if ((unsigned)rc >= CP_ARRAY_LEN(names) || !names[rc])
		return "unknown";
	return names[rc];
}
