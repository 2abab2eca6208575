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

/* Make room for n more bytes now (one allocation instead of doublings),
 * adding nothing. CP_OK; CP_ERR_TOO_LARGE past max; CP_ERR_NOMEM. */
cp_rc cp_buf_reserve(struct cp_buf *b, size_t n) CP_WUR;

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

/*
 * JSON writer: responses rendered straight from columns (the db_*_render functions), with
 * the one JSON string escaper. Output is byte-for-byte what jansson's
 * json_dumps(JSON_COMPACT) writes for the same values, so a resource reads
 * the same whichever path rendered it: '"' and '\\' escaped, \b \f \n \r
 * \t short, other bytes below 0x20 as \u00XX (upper-case hex), everything
 * else (UTF-8, '/', DEL) as is.
 *
 * Errors are sticky: the first failing add is kept in w->rc and every later
 * call is a no-op, so a renderer writes a whole object and checks once
 * (cp_jw_rc). Separators are automatic: a value or key after a value gets
 * its ',' (decided by the last byte written, so the writer keeps no stack).
 */
struct cp_jw {
	struct cp_buf *b; /* borrowed */
	cp_rc rc;	  /* CP_OK until an add fails */
};

/* Start writing at the end of b (borrowed, must outlive w). */
void cp_jw_init(struct cp_jw *w, struct cp_buf *b);
/* The first error of any call so far (CP_OK, CP_ERR_TOO_LARGE, CP_ERR_NOMEM,
 * CP_ERR_INVALID for a string that is not UTF-8). */
cp_rc cp_jw_rc(const struct cp_jw *w) CP_WUR;
/* Open / close an object ('{' / '}') or array ('[' / ']'). */
void cp_jw_open(struct cp_jw *w, char c);
void cp_jw_close(struct cp_jw *w, char c);
/* An object key: key is a literal of safe ASCII (not escaped). */
void cp_jw_key(struct cp_jw *w, const char *key);
/* A string value of n bytes (NULL writes null). Not UTF-8: CP_ERR_INVALID. */
void cp_jw_str(struct cp_jw *w, const char *s, size_t n);
/* A NUL-terminated string value (NULL writes null). */
void cp_jw_cstr(struct cp_jw *w, const char *s);
void cp_jw_int(struct cp_jw *w, long long v);
void cp_jw_bool(struct cp_jw *w, bool v);
void cp_jw_null(struct cp_jw *w);
/* A timestamp as RFC 3339 UTC text (cp_time_fmt). */
void cp_jw_time(struct cp_jw *w, int64_t t);
/* Text that is already JSON (a stored JSON column, written compact by
 * jansson), copied as is; NULL writes null. */
void cp_jw_raw(struct cp_jw *w, const char *json, size_t n);

#endif
