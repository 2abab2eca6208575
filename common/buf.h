/*
 * buf.h - the one bounded growable buffer (after curl's dynbuf): a byte
 * string that grows by doubling up to a cap set at init and is always
 * NUL-terminated once anything was added. Every add fails closed: on
 * CP_ERR_TOO_LARGE or CP_ERR_NOMEM the content is unchanged, so a caller
 * may stop at the first error and still free the buffer normally.
 *
 * A buffer that held a secret (a request body carrying a private key) sets
 * wipe: then every regrowth copies into a fresh allocation and wipes the old
 * one, and cp_buf_free wipes before freeing, so no copy is left in the heap.
 */
#ifndef CP_BUF_H
#define CP_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "common/common.h"

/* Fields are read-only outside buf.c; use the functions to change them.
 * p is NULL until the first add; len excludes the NUL. */
struct cp_buf {
	char *p;
	size_t len; /* bytes held, < cap when p != NULL */
	size_t cap; /* bytes allocated, 0 when p == NULL */
	size_t max; /* cap on len, set at init, > 0 */
	bool wipe;  /* the content is secret: wipe on regrowth and on free */
};

/* Set up an empty buffer holding at most max bytes (max > 0). Allocates
 * nothing. */
void cp_buf_init(struct cp_buf *b, size_t max);

/* Append n bytes of data (data may be NULL only when n is 0). CP_OK;
 * CP_ERR_TOO_LARGE when len + n would exceed max; CP_ERR_NOMEM. */
cp_rc cp_buf_add(struct cp_buf *b, const void *data, size_t n) CP_WUR;

/* Append one byte; as cp_buf_add. */
cp_rc cp_buf_addc(struct cp_buf *b, char c) CP_WUR;

/* Append printf-formatted text; as cp_buf_add, and CP_ERR_INVALID when the
 * format fails (vsnprintf < 0). */
cp_rc cp_buf_addf(struct cp_buf *b, const char *fmt, ...) CP_WUR CP_PRINTF(2, 3);

/* cp_buf_addf with a va_list (ap is consumed: va_end it after). */
cp_rc cp_buf_vaddf(struct cp_buf *b, const char *fmt, va_list ap) CP_WUR CP_PRINTF(2, 0);

/* The content, NUL-terminated ("" when nothing was added). Borrowed: valid
 * until the next add, take or free. */
const char *cp_buf_str(const struct cp_buf *b);

/* Hand the content over (caller frees; NULL when nothing was added) and
 * reset b to empty with the same max and wipe. *len (if given) gets the
 * length. A wiping buffer's caller becomes responsible for wiping. */
char *cp_buf_take(struct cp_buf *b, size_t *len);

/* Drop the content back to empty, keeping the allocation (wiped first when
 * b->wipe). */
void cp_buf_reset(struct cp_buf *b);

/* Free the content (wiped first when b->wipe) and leave b empty and
 * reusable with the same max. NULL-safe. */
void cp_buf_free(struct cp_buf *b);

#endif
